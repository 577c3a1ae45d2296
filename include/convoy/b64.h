/*
 * b64 — strict base64 (RFC 4648): the standard alphabet with padding (HTTP
 * Basic credentials), without padding (PHC password strings), and base64url
 * without padding (tickets, API tokens).
 *
 * Decoding accepts only the canonical encoding of some bytes: no
 * whitespace, no stray or missing '=', no non-zero bits left over in the
 * last character, so one byte string has exactly one text form.
 */
#ifndef CONVOY_B64_H
#define CONVOY_B64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum b64_alphabet {
    B64_STD,     /* A-Z a-z 0-9 + /, padded with '=' */
    B64_STD_RAW, /* A-Z a-z 0-9 + /, no padding */
    B64_URL,     /* A-Z a-z 0-9 - _, no padding */
};

/* Length of the text for n bytes, without the NUL. */
size_t b64_encoded_len(size_t n, enum b64_alphabet a);

/* Writes the text of the n bytes of src and a NUL into dst (cap bytes).
 * Returns its length, or -ENOSPC when cap < b64_encoded_len + 1. */
int b64_encode(const void *src, size_t n, enum b64_alphabet a, char *dst, size_t cap);

/* Decodes the len characters of src into dst (cap bytes). Returns the byte
 * count, -EINVAL when src is not canonical, -ENOSPC when cap is too small
 * (len * 3 / 4 always suffices). */
int b64_decode(const char *src, size_t len, enum b64_alphabet a, uint8_t *dst, size_t cap);

#endif
