/*
 * fuzz_xget — libFuzzer target for what `convoy get` reads from the wire
 * and from its command line: Repr-Digest values and URLs (a Location).
 *
 * Input layout: the first byte picks the parser (even: Repr-Digest, odd:
 * URL), the rest is the value. The checks abort when a digest that parsed
 * does not format back to a value that parses to the same bytes, and when
 * a URL that parsed has a port of 0, an empty host or a path not starting
 * with '/'.
 */
#include "convoy/xget.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_xget: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void digest(const char *v, size_t len)
{
    uint8_t d[32], back[32];
    char text[64];
    int rc = xget_digest_parse(v, len, d);
    CHECK(rc == 0 || rc == -ENOENT || rc == -EINVAL);
    if (rc != 0)
        return;
    xget_digest_format(d, text, sizeof text);
    CHECK(xget_digest_parse(text, strlen(text), back) == 0);
    CHECK(memcmp(d, back, 32) == 0);
}

static void url(const char *v)
{
    struct xget_url u;
    char err[256];
    if (xget_url_parse(v, &u, err, sizeof err) != 0)
        return;
    CHECK(u.port != 0);
    CHECK(u.host[0] != '\0');
    CHECK(u.path[0] == '/');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    char *v = malloc(size);
    if (v == NULL)
        return 0;
    memcpy(v, data + 1, size - 1);
    v[size - 1] = '\0';
    if (data[0] % 2 == 0)
        digest(v, size - 1); /* the length, not the NUL: a value may hold NUL bytes */
    else
        url(v);
    free(v);
    return 0;
}
