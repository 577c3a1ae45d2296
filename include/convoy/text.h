/*
 * text — a bounded copy of a C string.
 *
 * snprintf(dst, size, "%s", src) parses its format and runs a string
 * stream to copy; on a path taken for every request (a redirect copies
 * five names and paths) that costs several times the copy itself.
 */
#ifndef CONVOY_TEXT_H
#define CONVOY_TEXT_H

#include <stddef.h>

/* src (NULL for "") into dst, cut to size - 1 bytes (size ≥ 1), always
 * terminated. Returns the bytes copied. */
size_t text_copy(char *dst, size_t size, const char *src);

#endif
