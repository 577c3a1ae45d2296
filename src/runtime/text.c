/* text — bounded copies of C strings and numbers (see text.h). */
#include "convoy/text.h"

#include <string.h>

size_t text_copy(char *dst, size_t size, const char *src)
{
    size_t n = src ? strnlen(src, size - 1) : 0;
    if (n > 0)
        memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

void text_cat(char *dst, size_t size, size_t *len, const char *src)
{
    *len += text_copy(dst + *len, size - *len, src);
}

void text_cat_u64(char *dst, size_t size, size_t *len, uint64_t v)
{
    char digits[21];
    size_t at = sizeof digits - 1;
    digits[at] = '\0';
    do
        digits[--at] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    text_cat(dst, size, len, digits + at);
}
