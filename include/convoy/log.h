/*
 * log — key=value lines on stderr.
 *
 * Every line reads "ts=<UTC ISO-8601 ms> level=<level> mod=<module> <fields>",
 * where <fields> are the caller's own "key=value" pairs, so that a daemon's
 * log can be grepped and parsed by scripts. Lines are written with one
 * write(2) each and so never interleave between threads or processes.
 */
#ifndef CONVOY_LOG_H
#define CONVOY_LOG_H

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

#endif
