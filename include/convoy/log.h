/*
 * log — key=value lines on stderr.
 *
 * Every line reads "ts=<UTC ISO-8601 ms> level=<level> mod=<module> <fields>",
 * where <fields> are the caller's own "key=value" pairs, so that a daemon's
 * log can be grepped and parsed by scripts. Lines are written with one
 * write(2) each and so never interleave between threads or processes.
 *
 * Fields often carry what a peer sent (a name, an address), so the
 * formatted fields are escaped with log_escape() before they are written:
 * one call is always exactly one line, and no byte reaching a terminal
 * through a log can drive it.
 */
#ifndef CONVOY_LOG_H
#define CONVOY_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Lines below this level are dropped. Default LOG_INFO. */
void log_set_level(enum log_level level);

/* Parses "debug", "info", "warn" or "error". Returns 0, or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);

const char *log_level_str(enum log_level level);

void log_msg(enum log_level level, const char *mod, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(mod, ...) log_msg(LOG_DEBUG, mod, __VA_ARGS__)
#define log_info(mod, ...)  log_msg(LOG_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...)  log_msg(LOG_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_msg(LOG_ERROR, mod, __VA_ARGS__)

/*
 * Copies the len bytes of src into dst (size bytes, NUL-terminated when size
 * > 0) so that they are safe on one line of a log or a terminal, and valid
 * UTF-8: "\n", "\r" and "\t" for those controls, "\\" for a backslash, and
 * "\xHH" for every other control byte (C0, DEL, and C1 in its UTF-8 form)
 * and every byte that is not part of a valid UTF-8 sequence. Other bytes are
 * copied as they are. An escape is never cut: when dst is too small the copy
 * stops before the escape that does not fit. Returns the length written,
 * without the NUL. Needs at most 4 * len + 1 bytes.
 */
size_t log_escape(char *dst, size_t size, const char *src, size_t len);

/*
 * Rate limiting for lines a peer can make repeat at wire speed (an accept
 * loop out of descriptors, a flood of bad frames). Each call site owns one
 * struct log_limit (log_warn_limited() declares a static one): the first
 * LOG_LIMIT_PER_S lines of each second are written, the rest counted, and
 * the next line written from that site ends with "suppressed=N", the count
 * of lines dropped since the one before it. Thread-safe and lock-free: a
 * suppressed line costs a clock read and two atomic additions, and is never
 * formatted.
 */
#define LOG_LIMIT_PER_S 10

struct log_limit {
    _Atomic uint64_t second;     /* the window (CLOCK_MONOTONIC seconds) */
    _Atomic uint32_t lines;      /* calls in that window */
    _Atomic uint64_t suppressed; /* dropped since the last line written */
};

/* Whether a line may be written at time now_ms (any monotonic clock in ms);
 * if so *suppressed gets (and the limit forgets) the count to report. */
bool log_limit_pass(struct log_limit *l, uint64_t now_ms, uint64_t *suppressed);

/* log_msg() through the limit l (see above). */
void log_msg_limited(struct log_limit *l, enum log_level level, const char *mod, const char *fmt,
                     ...) __attribute__((format(printf, 4, 5)));

/* Limited per call site: each expansion has its own static limit. */
#define log_limited_at_(level, mod, ...)                                                           \
    do {                                                                                           \
        static struct log_limit log_site_;                                                         \
        log_msg_limited(&log_site_, level, mod, __VA_ARGS__);                                      \
    } while (0)
#define log_info_limited(mod, ...)  log_limited_at_(LOG_INFO, mod, __VA_ARGS__)
#define log_warn_limited(mod, ...)  log_limited_at_(LOG_WARN, mod, __VA_ARGS__)
#define log_error_limited(mod, ...) log_limited_at_(LOG_ERROR, mod, __VA_ARGS__)

#endif
