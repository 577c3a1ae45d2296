/* npy: writer → parser round trips, both versions, headers as numpy
 * writes them, every refusal, truncation at every byte, a real file. */
#include "convoy/npy.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMAX (1ull << 24)
#define NMAX 8192u

static char why[256];
static uint8_t hdr[NPY_HEADER_MAX + 64];

/* A header of version ver around dict, padded to 64 with a newline. */
static size_t make(int ver, const char *dict)
{
    size_t pre = ver == 1 ? 10 : 12, dl = strlen(dict);
    size_t total = (pre + dl + 1 + 63) / 64 * 64, hl = total - pre;
    memcpy(hdr, "\x93NUMPY", 6);
    hdr[6] = (uint8_t)ver;
    hdr[7] = 0;
    for (size_t i = 0; i < pre - 8; i++)
        hdr[8 + i] = (uint8_t)(hl >> (8 * i));
    memcpy(hdr + pre, dict, dl);
    memset(hdr + pre + dl, ' ', hl - dl - 1);
    hdr[total - 1] = '\n';
    return total;
}

static int parse(size_t len, struct npy_info *info)
{
    why[0] = '\0';
    return npy_parse_header(hdr, len, CMAX, NMAX, info, why, sizeof why);
}

static void test_round_trip(void)
{
    static const uint64_t shapes[][2] = {{0, 1}, {1, 1}, {3, 4}, {1000, 256}, {CMAX, NMAX}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int len = npy_write_header(shapes[s][0], (uint32_t)shapes[s][1], hdr, 128);
        CU_ASSERT_FATAL(len > 0);
        CU_ASSERT_EQUAL(len % 64, 0);
        CU_ASSERT_EQUAL(hdr[len - 1], '\n');
        struct npy_info info;
        CU_ASSERT_EQUAL_FATAL(parse((size_t)len, &info), 0);
        CU_ASSERT_EQUAL(info.count, shapes[s][0]);
        CU_ASSERT_EQUAL(info.n, shapes[s][1]);
        CU_ASSERT_EQUAL(info.data_off, (uint64_t)len);
        CU_ASSERT_EQUAL(info.data_len, shapes[s][0] * shapes[s][1] * shapes[s][1] * 8);
        /* More than the header in the buffer is fine. */
        CU_ASSERT_EQUAL(parse(sizeof hdr, &info), 0);
    }
    CU_ASSERT_EQUAL(npy_write_header(3, 4, hdr, 128), 128); /* as numpy writes it */
    const char *dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4, 4), }";
    CU_ASSERT_EQUAL(memcmp(hdr + 10, dict, strlen(dict)), 0);
    CU_ASSERT_EQUAL(hdr[10 + strlen(dict)], ' ');
    CU_ASSERT_EQUAL(npy_write_header(3, 4, hdr, 127), -ENOSPC);
    CU_ASSERT_EQUAL(npy_write_header(CMAX, NMAX, hdr, 127), -ENOSPC);
}

/* A header padded to the block of direct I/O is still one numpy reads. */
static void test_aligned(void)
{
    struct npy_info info;
    CU_ASSERT_EQUAL_FATAL(npy_write_header_aligned(1000, 256, 4096, hdr, sizeof hdr), 4096);
    CU_ASSERT_EQUAL_FATAL(parse(4096, &info), 0);
    CU_ASSERT_EQUAL(info.data_off, 4096);
    CU_ASSERT_EQUAL(info.count, 1000);
    CU_ASSERT_EQUAL(hdr[4095], '\n');
    CU_ASSERT_EQUAL(npy_write_header_aligned(1, 2, 4096, hdr, 4095), -ENOSPC);
    CU_ASSERT_EQUAL(npy_write_header_aligned(1, 2, 100, hdr, sizeof hdr), -ENOSPC);
    CU_ASSERT_EQUAL(npy_write_header_aligned(1, 2, 131072, hdr, sizeof hdr), -ENOSPC);
}

static void test_numpy_variants(void)
{
    static const char *const ok[] = {
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4, 4), }",
        "{'shape': (3, 4, 4), 'fortran_order': False, 'descr': '<f8'}",
        "{\"descr\":\"<f8\",\"fortran_order\":False,\"shape\":(3,4,4,)}",
        "{ 'descr' : '<f8' , 'fortran_order' : False , 'shape' : ( 3 , 4 , 4 , ) , }",
    };
    for (int ver = 1; ver <= 2; ver++)
        for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
            struct npy_info info;
            size_t len = make(ver, ok[i]);
            int rc = parse(len, &info);
            if (rc != 0)
                fprintf(stderr, "npy: v%d %s -> %d (%s)\n", ver, ok[i], rc, why);
            CU_ASSERT_EQUAL(rc, 0);
            CU_ASSERT(info.count == 3 && info.n == 4 && info.data_off == len);
        }
}

/* Each dict refused with a reason containing want. */
static void test_refusals(void)
{
    static const char *const bad[][2] = {
        {"{'descr': '<f8', 'fortran_order': True, 'shape': (3, 4, 4), }", "Fortran"},
        {"{'descr': '>f8', 'fortran_order': False, 'shape': (3, 4, 4), }", "big-endian"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4, 4), }", "dtype '<f4'"},
        {"{'descr': '<d', 'fortran_order': False, 'shape': (3, 4, 4), }", "dtype '<d'"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (4, 4), }", "2 dimensions"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 4, 4, 1), }", "4 dimensions"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (), }", "0 dimensions"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4, 5), }", "not square"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (3, 0, 0), }", "n 0 out of range"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (3, 8193, 8193), }", "n 8193"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (16777217, 1, 1), }", "count"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4, 99999999999999999999), }",
         "64 bits"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (3, -4, 4), }", "integers"},
        {"{'descr': '<f8', 'fortran_order': False, }", "'shape' missing"},
        {"{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1)}", "twice"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1), 'x': 1}", "unknown key"},
        {"{'descr': '<f8', 'fortran_order': 0, 'shape': (1, 1, 1)}", "True or False"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1)} x", "after the dict"},
        {"{'descr': '<f8' 'fortran_order': False, 'shape': (1, 1, 1)}", "expected ','"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (1 1, 1)}", "malformed"},
        {"['descr']", "not a dict"},
        {"{'descr': '<f8", "'descr' too long or not plain ASCII"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct npy_info info;
        int rc = parse(make(1, bad[i][0]), &info);
        if (rc != -EINVAL || strstr(why, bad[i][1]) == NULL)
            fprintf(stderr, "npy: %s -> %d (%s)\n", bad[i][0], rc, why);
        CU_ASSERT_EQUAL(rc, -EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(why, bad[i][1]));
    }
}

static void test_prefix(void)
{
    struct npy_info info;
    size_t len = make(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1), }");
    hdr[0] = 'x';
    CU_ASSERT_EQUAL(parse(len, &info), -EINVAL);
    CU_ASSERT_EQUAL(parse(1, &info), -EINVAL); /* refused from its first byte */
    hdr[0] = 0x93;
    hdr[6] = 3;
    CU_ASSERT_EQUAL(parse(len, &info), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "version 3.0"));
    hdr[6] = 1;
    hdr[7] = 1;
    CU_ASSERT_EQUAL(parse(len, &info), -EINVAL);
    /* Version 1.0 can say 65535 + 10 bytes, 2.0 much more: both too long. */
    hdr[7] = 0;
    hdr[8] = hdr[9] = 0xff;
    CU_ASSERT_EQUAL(parse(sizeof hdr, &info), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "65545 bytes over 65536"));
    make(2, "{}");
    hdr[8] = 0xf5, hdr[9] = 0xff, hdr[10] = 0, hdr[11] = 0; /* 12 + 65525 = 65537 */
    CU_ASSERT_EQUAL(parse(sizeof hdr, &info), -EINVAL);
    hdr[8] = 0xf4; /* exactly NPY_HEADER_MAX: not refused for its length */
    CU_ASSERT_EQUAL(parse(12, &info), -EAGAIN);
    hdr[11] = 0x80;
    CU_ASSERT_EQUAL(parse(12, &info), -EINVAL);
}

/* Every prefix of a valid header asks for more; the whole is accepted. */
static void test_truncated(void)
{
    for (int ver = 1; ver <= 2; ver++) {
        size_t len = make(ver, "{'descr': '<f8', 'fortran_order': False, 'shape': (5, 7, 7), }");
        struct npy_info info;
        for (size_t k = 0; k < len; k++) {
            int rc = parse(k, &info);
            if (rc != -EAGAIN)
                fprintf(stderr, "npy: v%d cut at %zu -> %d (%s)\n", ver, k, rc, why);
            CU_ASSERT_EQUAL(rc, -EAGAIN);
        }
        CU_ASSERT_EQUAL(parse(len, &info), 0);
    }
}

/* A temporary file holding the header of (count, n, n) then data bytes. */
static int temp_file(uint64_t count, uint32_t n, size_t data)
{
    char path[] = "/tmp/convoy-npy-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    unlink(path);
    uint8_t h[128];
    int len = npy_write_header(count, n, h, sizeof h);
    char *zero = calloc(1, data + 1);
    bool ok = len > 0 && zero && write(fd, h, (size_t)len) == len &&
              write(fd, zero, data) == (ssize_t)data;
    free(zero);
    if (!ok) {
        close(fd);
        return -1;
    }
    return fd;
}

static void test_read_fd(void)
{
    struct npy_info info;
    int fd = temp_file(3, 4, 3 * 4 * 4 * 8);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(npy_read_fd(fd, CMAX, NMAX, &info, why, sizeof why), 0);
    CU_ASSERT(info.count == 3 && info.n == 4 && info.data_off == 128 && info.data_len == 384);
    CU_ASSERT_EQUAL(npy_read_fd(fd, 2, NMAX, &info, why, sizeof why), -EINVAL); /* max_count */
    close(fd);
    fd = temp_file(3, 4, 3 * 4 * 4 * 8 - 1); /* one byte short */
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(npy_read_fd(fd, CMAX, NMAX, &info, why, sizeof why), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "511 bytes, its header says 512"));
    CU_ASSERT_EQUAL(ftruncate(fd, 40), 0); /* inside the header */
    CU_ASSERT_EQUAL(npy_read_fd(fd, CMAX, NMAX, &info, why, sizeof why), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "ends inside its header"));
    close(fd);
    fd = temp_file(0, 2, 0); /* no items: the header alone is whole */
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(npy_read_fd(fd, CMAX, NMAX, &info, why, sizeof why), 0);
    close(fd);
    CU_ASSERT_EQUAL(npy_read_fd(-1, CMAX, NMAX, &info, why, sizeof why), -EBADF);
}

void suite_npy(void)
{
    CU_pSuite s = CU_add_suite("npy", NULL, NULL);
    CU_add_test(s, "writer -> parser for several shapes, padded to 64", test_round_trip);
    CU_add_test(s, "padded to 4096: data_off 4096, still parsed", test_aligned);
    CU_add_test(s, "numpy's spellings, versions 1.0 and 2.0", test_numpy_variants);
    CU_add_test(s, "dtype, order, shape and syntax refusals", test_refusals);
    CU_add_test(s, "magic, version, header length bounds", test_prefix);
    CU_add_test(s, "truncated at every byte of the header", test_truncated);
    CU_add_test(s, "npy_read_fd on a real file, short files refused", test_read_fd);
}
