/*
 * hex — bytes as lowercase hexadecimal.
 *
 * A table lookup per nibble: snprintf("%02x") once per byte was a few
 * percent of a redirect (the catalog's digest goes into every record).
 */
#include "convoy/hex.h"

char *hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * n] = '\0';
    return out;
}
