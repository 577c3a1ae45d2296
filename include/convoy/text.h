/*
 * text — bounded copies of C strings and numbers, without printf.
 *
 * snprintf(dst, size, "%s", src) parses its format and runs a string
 * stream to copy; on a path taken for every request (a redirect copies
 * five names and paths, and writes why it chose its server) that costs
 * several times the copy itself.
 */
#ifndef CONVOY_TEXT_H
#define CONVOY_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* src (NULL for "") into dst, cut to size - 1 bytes (size ≥ 1), always
 * terminated. Returns the bytes copied. */
size_t text_copy(char *dst, size_t size, const char *src);

/* Appends src, or v in decimal, after the first *len bytes of dst (size
 * bytes; *len 0 starts a string), cut as text_copy cuts and terminated;
 * *len moves to the new NUL. */
void text_cat(char *dst, size_t size, size_t *len, const char *src);
void text_cat_u64(char *dst, size_t size, size_t *len, uint64_t v);

#endif
