/* text — a bounded copy of a C string (see text.h). */
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
