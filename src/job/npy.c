/*
 * npy — the .npy header of a stack of square float64 matrices (see npy.h).
 *
 * The header is a Python dict literal, but only the subset numpy's own
 * writer produces is read: quoted keys without escapes, the values a
 * quoted string, True/False and a tuple of decimal integers, spaces
 * anywhere between tokens and trailing commas where numpy puts them
 * ("(3,)", "..., }"). A small cursor walks it once; every key must appear
 * exactly once and nothing else may. The header is bounded by
 * NPY_HEADER_MAX before anything is looked at past the length field, and
 * the data's size count·n·n·8 is checked for overflow, so a caller can
 * size a pread from data_off and data_len as they are.
 */
#include "convoy/npy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC       "\x93NUMPY"
#define MAGIC_LEN   6
#define V1_PREFIX   10 /* magic, version, 2-byte length */
#define V2_PREFIX   12 /* magic, version, 4-byte length */
#define ALIGN       64 /* the writer's data alignment */
#define DIMS_MAX    8  /* tuple entries read before giving up */
#define DESCR_MAX   16 /* a dtype string with its NUL */
#define KEY_MAX     16 /* a dict key with its NUL */
#define DICT_PREFIX "{'descr': '<f8', 'fortran_order': False, 'shape': ("

enum npy_key { KEY_DESCR, KEY_FORTRAN, KEY_SHAPE, KEY_COUNT };

static const char *const key_names[KEY_COUNT] = {"descr", "fortran_order", "shape"};

/* The dict being read: text left, what was found, where refusals go. */
struct cur {
    const char *p, *end;
    char *err;
    size_t errlen;
    unsigned seen;           /* bit per enum npy_key */
    char descr[DESCR_MAX];   /* 'descr' as written */
    bool fortran;            /* 'fortran_order' */
    uint64_t dims[DIMS_MAX]; /* 'shape' */
    unsigned ndim;
};

__attribute__((format(printf, 3, 4))) static int refuse(char *err, size_t errlen, const char *fmt,
                                                        ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

#define CUR_REFUSE(c, ...) refuse((c)->err, (c)->errlen, __VA_ARGS__)

static void skip_ws(struct cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* Skips spaces, then the character ch if it is next. */
static bool eat(struct cur *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* A quoted string without escapes into out (cap bytes with its NUL). */
static int read_str(struct cur *c, char *out, size_t cap, const char *what)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return CUR_REFUSE(c, "header: expected a quoted %s", what);
    char q = *c->p++;
    size_t len = 0;
    for (; c->p < c->end && *c->p != q; c->p++, len++) {
        if (len + 1 >= cap || *c->p == '\\' || (unsigned char)*c->p < 0x20 ||
            (unsigned char)*c->p > 0x7e)
            return CUR_REFUSE(c, "header: %s too long or not plain ASCII", what);
        out[len] = *c->p;
    }
    if (c->p >= c->end)
        return CUR_REFUSE(c, "header: unterminated %s", what);
    c->p++;
    out[len] = '\0';
    return 0;
}

/* A decimal integer that fits in 64 bits. */
static int read_uint(struct cur *c, uint64_t *v)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return CUR_REFUSE(c, "header: 'shape' holds something other than integers");
    for (*v = 0; c->p < c->end && *c->p >= '0' && *c->p <= '9'; c->p++) {
        unsigned d = (unsigned)(*c->p - '0');
        if (*v > (UINT64_MAX - d) / 10)
            return CUR_REFUSE(c, "header: a 'shape' entry past 64 bits");
        *v = *v * 10 + d;
    }
    return 0;
}

/* '(' [int {',' int} [',']] ')' */
static int read_shape(struct cur *c)
{
    if (!eat(c, '('))
        return CUR_REFUSE(c, "header: 'shape' is not a tuple");
    c->ndim = 0;
    while (!eat(c, ')')) {
        uint64_t v = 0;
        int rc = read_uint(c, &v);
        if (rc < 0)
            return rc;
        if (c->ndim == DIMS_MAX)
            return CUR_REFUSE(c, "shape has more than %d dimensions, not 3 (count, n, n)",
                              DIMS_MAX);
        c->dims[c->ndim++] = v;
        if (!eat(c, ',')) {
            if (!eat(c, ')'))
                return CUR_REFUSE(c, "header: 'shape' tuple malformed");
            break;
        }
    }
    return 0;
}

static int read_bool(struct cur *c, bool *b)
{
    skip_ws(c);
    size_t left = (size_t)(c->end - c->p);
    if (left >= 4 && memcmp(c->p, "True", 4) == 0) {
        *b = true;
        c->p += 4;
    } else if (left >= 5 && memcmp(c->p, "False", 5) == 0) {
        *b = false;
        c->p += 5;
    } else
        return CUR_REFUSE(c, "header: 'fortran_order' is not True or False");
    return 0;
}

/* One "key: value" of the dict. */
static int read_entry(struct cur *c)
{
    char key[KEY_MAX];
    int rc = read_str(c, key, sizeof key, "key");
    if (rc < 0)
        return rc;
    unsigned k = 0;
    while (k < KEY_COUNT && strcmp(key, key_names[k]) != 0)
        k++;
    if (k == KEY_COUNT)
        return CUR_REFUSE(c, "header: unknown key '%s'", key);
    if (c->seen & (1u << k))
        return CUR_REFUSE(c, "header: key '%s' twice", key);
    c->seen |= 1u << k;
    if (!eat(c, ':'))
        return CUR_REFUSE(c, "header: expected ':' after '%s'", key);
    switch (k) {
    case KEY_DESCR:
        return read_str(c, c->descr, sizeof c->descr, "'descr'");
    case KEY_FORTRAN:
        return read_bool(c, &c->fortran);
    default:
        return read_shape(c);
    }
}

/* '{' entry {',' entry} [','] '}' then only spaces and newlines. */
static int read_dict(struct cur *c)
{
    if (!eat(c, '{'))
        return CUR_REFUSE(c, "header: not a dict");
    while (!eat(c, '}')) {
        int rc = read_entry(c);
        if (rc < 0)
            return rc;
        if (!eat(c, ',')) {
            if (!eat(c, '}'))
                return CUR_REFUSE(c, "header: expected ',' or '}'");
            break;
        }
    }
    skip_ws(c);
    if (c->p != c->end)
        return CUR_REFUSE(c, "header: text after the dict");
    for (unsigned k = 0; k < KEY_COUNT; k++)
        if (!(c->seen & (1u << k)))
            return CUR_REFUSE(c, "header: '%s' missing", key_names[k]);
    return 0;
}

/* What the dict said, against what a stack of square float64 matrices is. */
static int check_dict(const struct cur *c, uint64_t max_count, uint32_t max_n,
                      struct npy_info *info)
{
    if (strcmp(c->descr, "<f8") != 0)
        return CUR_REFUSE(c, "dtype '%s'%s: only '<f8' (little-endian float64)", c->descr,
                          c->descr[0] == '>' ? " is big-endian" : "");
    if (c->fortran)
        return CUR_REFUSE(c, "Fortran order: only C order");
    if (c->ndim != 3)
        return CUR_REFUSE(c, "shape has %u dimensions, not 3 (count, n, n)", c->ndim);
    if (c->dims[1] != c->dims[2])
        return CUR_REFUSE(c, "shape (%" PRIu64 ", %" PRIu64 ", %" PRIu64 ") is not square",
                          c->dims[0], c->dims[1], c->dims[2]);
    if (c->dims[1] == 0 || c->dims[1] > max_n)
        return CUR_REFUSE(c, "n %" PRIu64 " out of range (1 to %" PRIu32 ")", c->dims[1], max_n);
    if (c->dims[0] > max_count)
        return CUR_REFUSE(c, "count %" PRIu64 " over %" PRIu64, c->dims[0], max_count);
    uint64_t len;
    if (__builtin_mul_overflow(c->dims[1], c->dims[2], &len) ||
        __builtin_mul_overflow(len, sizeof(double), &len) ||
        __builtin_mul_overflow(len, c->dims[0], &len))
        return CUR_REFUSE(c, "count·n·n·8 past 64 bits");
    info->count = c->dims[0];
    info->n = (uint32_t)c->dims[1];
    info->data_len = len;
    return 0;
}

/* Magic, version and length: the header's whole size into *total. */
static int read_prefix(const uint8_t *buf, size_t len, size_t *prefix, uint64_t *total, char *err,
                       size_t errlen)
{
    if (memcmp(buf, MAGIC, len < MAGIC_LEN ? len : MAGIC_LEN) != 0)
        return refuse(err, errlen, "not a .npy file (no \\x93NUMPY magic)");
    if (len < MAGIC_LEN + 2)
        return -EAGAIN;
    if ((buf[6] != 1 && buf[6] != 2) || buf[7] != 0)
        return refuse(err, errlen, "format version %u.%u: only 1.0 and 2.0", buf[6], buf[7]);
    *prefix = buf[6] == 1 ? V1_PREFIX : V2_PREFIX;
    if (len < *prefix)
        return -EAGAIN;
    uint64_t hlen = (uint64_t)buf[8] | (uint64_t)buf[9] << 8;
    if (*prefix == V2_PREFIX)
        hlen |= (uint64_t)buf[10] << 16 | (uint64_t)buf[11] << 24;
    *total = *prefix + hlen;
    if (*total > NPY_HEADER_MAX)
        return refuse(err, errlen, "header of %" PRIu64 " bytes over %u", *total, NPY_HEADER_MAX);
    return len < *total ? -EAGAIN : 0;
}

int npy_parse_header(const uint8_t *buf, size_t len, uint64_t max_count, uint32_t max_n,
                     struct npy_info *info, char *err, size_t errlen)
{
    size_t prefix = 0;
    uint64_t total = 0;
    if (errlen)
        err[0] = '\0';
    int rc = read_prefix(buf, len, &prefix, &total, err, errlen);
    if (rc < 0)
        return rc;
    struct cur c = {.p = (const char *)buf + prefix,
                    .end = (const char *)buf + total,
                    .err = err,
                    .errlen = errlen};
    if ((rc = read_dict(&c)) < 0 || (rc = check_dict(&c, max_count, max_n, info)) < 0)
        return rc;
    info->data_off = total;
    return 0;
}

int npy_write_header(uint64_t count, uint32_t n, uint8_t *buf, size_t cap)
{
    return npy_write_header_aligned(count, n, ALIGN, buf, cap);
}

int npy_write_header_aligned(uint64_t count, uint32_t n, size_t align, uint8_t *buf, size_t cap)
{
    char dict[128];
    int len = snprintf(dict, sizeof dict, DICT_PREFIX "%" PRIu64 ", %" PRIu32 ", %" PRIu32 "), }",
                       count, n, n);
    if (len < 0 || (size_t)len >= sizeof dict || align == 0 || align % ALIGN != 0)
        return -ENOSPC;
    /* Spaces, then the newline numpy ends with, up to the alignment. */
    size_t total = ((size_t)V1_PREFIX + (size_t)len + 1 + align - 1) / align * align;
    if (total > cap || total - V1_PREFIX > 0xffff)
        return -ENOSPC;
    size_t hlen = total - V1_PREFIX;
    memcpy(buf, MAGIC "\x01\x00", MAGIC_LEN + 2);
    buf[8] = (uint8_t)hlen;
    buf[9] = (uint8_t)(hlen >> 8);
    memcpy(buf + V1_PREFIX, dict, (size_t)len);
    memset(buf + V1_PREFIX + len, ' ', hlen - (size_t)len - 1);
    buf[total - 1] = '\n';
    return (int)total;
}

/* Up to cap bytes from the file's start (fewer at its end) into buf. */
static ssize_t read_start(int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    while (got < cap) {
        ssize_t r = pread(fd, buf + got, cap - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int npy_read_fd(int fd, uint64_t max_count, uint32_t max_n, struct npy_info *info, char *err,
                size_t errlen)
{
    int rc;
    struct stat st;
    uint8_t *buf = malloc(NPY_HEADER_MAX);
    if (errlen)
        err[0] = '\0';
    if (buf == NULL)
        return -ENOMEM;
    ssize_t got = read_start(fd, buf, NPY_HEADER_MAX);
    if ((rc = (int)(got < 0 ? got : 0)) < 0)
        goto fail;
    rc = npy_parse_header(buf, (size_t)got, max_count, max_n, info, err, errlen);
    if (rc == -EAGAIN)
        rc = refuse(err, errlen, "truncated: the file of %zd bytes ends inside its header", got);
    if (rc < 0)
        goto fail;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto fail;
    }
    uint64_t need;
    if (__builtin_add_overflow(info->data_off, info->data_len, &need) ||
        (uint64_t)st.st_size < need)
        rc = refuse(err, errlen,
                    "truncated: the file has %" PRIu64 " bytes, its header says %" PRIu64,
                    (uint64_t)st.st_size, need);
fail:
    free(buf);
    return rc;
}
