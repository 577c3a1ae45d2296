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

#include <stddef.h>

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

#endif
