/*
 * fuzz_http_range — libFuzzer target for the Range parser.
 *
 * Input layout: the first 8 bytes are the representation's size (little
 * endian; only the low bits of byte 7 are used, so that both tiny and huge
 * sizes come up), the rest the Range value. The checks abort when a
 * satisfiable range is not inside the representation, when the
 * Content-Range text does not read back as the range, or when a value
 * that does not start with "bytes=" is not ignored.
 */
#include "convoy/http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_http_range: %s:%d: check failed: %s\n", __FILE__, __LINE__,      \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | data[i];
    n >>= (data[7] & 0x3f); /* spread sizes over every magnitude */
    char *v = malloc(size - 8 + 1);
    CHECK(v != NULL);
    memcpy(v, data + 8, size - 8);
    v[size - 8] = '\0';
    struct http_range r = {0, 0};
    enum http_range_result res = http_range_parse(v, n, &r);
    char cr[96];
    int k = http_content_range(cr, sizeof cr, res, &r, n);
    if (strncasecmp(v, "bytes=", 6) != 0)
        CHECK(res == HTTP_RANGE_NONE);
    if (res == HTTP_RANGE_PARTIAL) {
        CHECK(r.first <= r.last && r.last < n);
        unsigned long long a, b, c;
        CHECK(k > 0 && sscanf(cr, "bytes %llu-%llu/%llu", &a, &b, &c) == 3);
        CHECK(a == r.first && b == r.last && c == n);
    } else if (res == HTTP_RANGE_UNSATISFIABLE) {
        unsigned long long c;
        CHECK(k > 0 && sscanf(cr, "bytes */%llu", &c) == 1 && c == n);
    } else {
        CHECK(res == HTTP_RANGE_NONE && k == -EINVAL);
    }
    free(v);
    return 0;
}
