/*
 * fuzz_npy — libFuzzer target for the .npy header parser.
 *
 * The input is the start of a file. An accepted header must lie inside the
 * input and NPY_HEADER_MAX, give a shape within the bounds asked for with
 * data_len = count·n·n·8, ask for more when cut one byte short, and the
 * writer's header for the same shape must read back as that shape. A
 * refusal must say why.
 */
#include "convoy/npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_npy: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_COUNT (1ull << 24)
#define MAX_N     8192u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct npy_info info, back;
    char err[256];
    int rc = npy_parse_header(data, size, MAX_COUNT, MAX_N, &info, err, sizeof err);
    if (rc == -EINVAL)
        CHECK(err[0] != '\0');
    if (rc != 0) {
        CHECK(rc == -EINVAL || (rc == -EAGAIN && size < NPY_HEADER_MAX));
        return 0;
    }
    CHECK(info.data_off <= size && info.data_off <= NPY_HEADER_MAX && info.data_off >= 10);
    CHECK(info.count <= MAX_COUNT && info.n >= 1 && info.n <= MAX_N);
    CHECK(info.data_len == info.count * info.n * info.n * 8);
    CHECK(npy_parse_header(data, info.data_off - 1, MAX_COUNT, MAX_N, &back, err, sizeof err) ==
          -EAGAIN);
    uint8_t hdr[128];
    int len = npy_write_header(info.count, info.n, hdr, sizeof hdr);
    CHECK(len > 0 && len % 64 == 0);
    CHECK(npy_parse_header(hdr, (size_t)len, MAX_COUNT, MAX_N, &back, err, sizeof err) == 0);
    CHECK(back.count == info.count && back.n == info.n && back.data_off == (uint64_t)len);
    return 0;
}
