/*
 * hex — bytes as lowercase hexadecimal: the SHA-256 digests the catalog,
 * the transfer records and the users file write.
 */
#ifndef CONVOY_HEX_H
#define CONVOY_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Writes the 2n lowercase hex digits of the n bytes of in and a NUL into
 * out, which holds 2n + 1 bytes. Returns out. */
char *hex_encode(const uint8_t *in, size_t n, char *out);

#endif
