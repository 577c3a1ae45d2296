/*
 * b64 — strict base64 encoding and decoding.
 *
 * The design is simple: one table per alphabet for encoding, and a reverse
 * lookup built from the same table, so the two directions cannot disagree.
 * Decoding is strict because every text we decode comes from a peer (a
 * ticket in a URL, credentials in a header) or from a file we wrote: a
 * lenient decoder would give one ticket several spellings, and a parser
 * that skips characters is one more thing to fuzz.
 */
#include "convoy/b64.h"

#include <errno.h>
#include <string.h>

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static const char *b64_table(enum b64_alphabet a)
{
    return a == B64_URL ? b64_url : b64_std;
}

size_t b64_encoded_len(size_t n, enum b64_alphabet a)
{
    if (a == B64_STD)
        return (n + 2) / 3 * 4;
    return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

int b64_encode(const void *src, size_t n, enum b64_alphabet a, char *dst, size_t cap)
{
    const uint8_t *s = src;
    const char *t = b64_table(a);
    size_t len = b64_encoded_len(n, a), o = 0;
    if (cap < len + 1)
        return -ENOSPC;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        size_t left = n - i;
        if (left > 1)
            v |= (uint32_t)s[i + 1] << 8;
        if (left > 2)
            v |= s[i + 2];
        dst[o++] = t[v >> 18];
        dst[o++] = t[(v >> 12) & 63];
        if (left > 1)
            dst[o++] = t[(v >> 6) & 63];
        if (left > 2)
            dst[o++] = t[v & 63];
    }
    while (o < len)
        dst[o++] = '=';
    dst[o] = '\0';
    return (int)o;
}

/* The value of character c in alphabet a, or -1. */
static int b64_value(enum b64_alphabet a, char c)
{
    const char *p = c == '\0' ? NULL : strchr(b64_table(a), c);
    return p == NULL ? -1 : (int)(p - b64_table(a));
}

/* Strips the padding B64_STD requires: len must be a multiple of 4, with at
 * most two '=' at the end. Returns the unpadded length, or -1. */
static long b64_unpad(const char *src, size_t len)
{
    if (len % 4 != 0)
        return -1;
    size_t pad = 0;
    while (pad < 2 && pad < len && src[len - 1 - pad] == '=')
        pad++;
    return (long)(len - pad);
}

int b64_decode(const char *src, size_t len, enum b64_alphabet a, uint8_t *dst, size_t cap)
{
    if (a == B64_STD) {
        long l = b64_unpad(src, len);
        if (l < 0)
            return -EINVAL;
        len = (size_t)l;
    }
    if (len % 4 == 1)
        return -EINVAL;
    size_t n = len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1), o = 0;
    if (n > cap)
        return -ENOSPC;
    uint32_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(a, src[i]);
        if (v < 0)
            return -EINVAL;
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            dst[o++] = (uint8_t)(acc >> 16);
            dst[o++] = (uint8_t)(acc >> 8);
            dst[o++] = (uint8_t)acc;
            acc = 0;
        }
    }
    /* The tail: 2 characters carry one byte (4 spare bits), 3 carry two
     * (2 spare bits); spare bits must be zero to be canonical. */
    if (len % 4 == 2) {
        if (acc & 0xf)
            return -EINVAL;
        dst[o++] = (uint8_t)(acc >> 4);
    } else if (len % 4 == 3) {
        if (acc & 0x3)
            return -EINVAL;
        dst[o++] = (uint8_t)(acc >> 10);
        dst[o++] = (uint8_t)(acc >> 2);
    }
    return (int)o;
}
