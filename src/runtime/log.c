/*
 * log — key=value lines on stderr.
 *
 * The caller's fields are formatted into one stack buffer, escaped into a
 * second one behind the line's prefix, and written with a single write(2):
 * stderr is shared by threads and, in tests and the demo, by several
 * processes, and one write per line keeps lines whole. Escaping the whole
 * formatted text, not chosen arguments, means no call site can forget it.
 *
 * The rate limit keeps one counter per one-second window per call site:
 * cheap enough to sit in an accept loop, and a flood from one site cannot
 * hide the lines of another.
 */
#include "convoy/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level)
{
    min_level = level;
}

const char *log_level_str(enum log_level level)
{
    if ((unsigned)level >= sizeof level_names / sizeof level_names[0])
        return "unknown";
    return level_names[level];
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (unsigned i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* The length of the valid UTF-8 sequence starting p (n bytes left) when it
 * encodes a printable character, else 0: controls (C0, DEL, C1), stray or
 * missing continuation bytes, overlong forms, surrogates, > U+10FFFF. */
static size_t utf8_printable(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80)
        return c >= 0x20 && c != 0x7f ? 1 : 0;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
        len = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp <= 0x9f)
        return 0;
    return len;
}

/* The escape for one byte that may not be copied: writes it to esc (at
 * least 4 bytes, not NUL-terminated) and returns its length. */
static size_t escape_byte(unsigned char c, char *esc)
{
    static const char hex[] = "0123456789abcdef";
    static const char named[][2] = {{'\n', 'n'}, {'\r', 'r'}, {'\t', 't'}, {'\\', '\\'}};
    esc[0] = '\\';
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        if (c == (unsigned char)named[i][0]) {
            esc[1] = named[i][1];
            return 2;
        }
    }
    esc[1] = 'x';
    esc[2] = hex[c >> 4];
    esc[3] = hex[c & 0xf];
    return 4;
}

size_t log_escape(char *dst, size_t size, const char *src, size_t len)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t o = 0;
    if (size == 0)
        return 0;
    for (size_t i = 0; i < len;) {
        char esc[4];
        const char *out = src + i;
        size_t n = s[i] == '\\' ? 0 : utf8_printable(s + i, len - i);
        size_t step = n;
        if (n == 0) {
            n = escape_byte(s[i], esc);
            out = esc;
            step = 1;
        }
        if (o + n >= size)
            break;
        memcpy(dst + o, out, n);
        o += n;
        i += step;
    }
    dst[o] = '\0';
    return o;
}

/* Formats, escapes and writes one line; suppressed > 0 is appended as a
 * field of its own. */
static void log_vwrite(enum log_level level, const char *mod, uint64_t suppressed, const char *fmt,
                       va_list ap)
{
    char fields[2048], line[4096];
    struct timespec ts;
    struct tm tm;
    int saved = errno; /* callers log errno-derived text and then test errno */
    int m = vsnprintf(fields, sizeof fields, fmt, ap);
    size_t flen = m < 0 ? 0 : (size_t)m < sizeof fields ? (size_t)m : sizeof fields - 1;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s mod=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, log_level_str(level), mod);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof line / 2 ? (size_t)n : sizeof line / 2;
    /* Room kept for " suppressed=<20 digits>\n". */
    len += log_escape(line + len, sizeof line - len - 34, fields, flen);
    if (suppressed > 0)
        len += (size_t)snprintf(line + len, sizeof line - len, " suppressed=%llu",
                                (unsigned long long)suppressed);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nowhere left to report a failed log write */
    errno = saved;
}

void log_msg(enum log_level level, const char *mod, const char *fmt, ...)
{
    if (level < min_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, mod, 0, fmt, ap);
    va_end(ap);
}

bool log_limit_pass(struct log_limit *l, uint64_t now_ms, uint64_t *suppressed)
{
    uint64_t second = now_ms / 1000;
    uint64_t seen = atomic_load_explicit(&l->second, memory_order_relaxed);
    /* Only forward: a thread whose clock read is a moment old must not
     * reopen a window that another has already moved past. */
    if (seen < second && atomic_compare_exchange_strong(&l->second, &seen, second))
        atomic_store_explicit(&l->lines, 0, memory_order_relaxed);
    if (atomic_fetch_add_explicit(&l->lines, 1, memory_order_relaxed) >= LOG_LIMIT_PER_S) {
        atomic_fetch_add_explicit(&l->suppressed, 1, memory_order_relaxed);
        return false;
    }
    *suppressed = atomic_exchange_explicit(&l->suppressed, 0, memory_order_relaxed);
    return true;
}

void log_msg_limited(struct log_limit *l, enum log_level level, const char *mod, const char *fmt,
                     ...)
{
    if (level < min_level)
        return;
    struct timespec ts;
    uint64_t suppressed;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* a vDSO read, no system call */
    if (!log_limit_pass(l, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000,
                        &suppressed))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, mod, suppressed, fmt, ap);
    va_end(ap);
}
