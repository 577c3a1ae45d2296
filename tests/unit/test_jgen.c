/* jgen: pinned bits, reproducibility, independence of call order, each
 * kind's shape. The pinned values were computed from the formula in
 * docs/jobs.md by a separate implementation (Python, exact integers). */
#include "convoy/jgen.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N 16

static void test_pinned(void)
{
    double a[N * N], big[1];
    CU_ASSERT_EQUAL_FATAL(jgen_item("uniform", 0, 0, N, a), 0);
    CU_ASSERT_EQUAL(a[0], -0x1.71f6290f1c0d2p-1);
    CU_ASSERT_EQUAL_FATAL(jgen_item("uniform", 7, 0, 1, big), 0);
    CU_ASSERT_EQUAL(big[0], 0x1.c01479161bc58p-3);
    CU_ASSERT_EQUAL_FATAL(jgen_item("uniform", 7, 3, 4, a), 0);
    CU_ASSERT_EQUAL(a[5], 0x1.c68b5c4c98bfcp-2); /* row 1, column 1 */
    double s[9], want[9] = {0x1.62f4bbc9631fcp+0,  0x1.787c9a1497787p-4,  -0x1.30cc3830dfc69p-2,
                            0x1.787c9a1497787p-4,  0x1.46cd777c2e4efp+0,  -0x1.24ffe8152820bp-5,
                            -0x1.30cc3830dfc69p-2, -0x1.24ffe8152820bp-5, 0x1.5cd0301a097aep+0};
    CU_ASSERT_EQUAL_FATAL(jgen_item("spd", 7, 1, 3, s), 0);
    CU_ASSERT_EQUAL(memcmp(s, want, sizeof s), 0);
}

static void test_reproducible(void)
{
    static const char *const kinds[] = {"uniform", "spd", "hilbert"};
    double a[N * N], b[N * N];
    for (size_t k = 0; k < 3; k++) {
        CU_ASSERT_EQUAL_FATAL(jgen_item(kinds[k], 42, 9, N, a), 0);
        memset(b, 0, sizeof b);
        CU_ASSERT_EQUAL_FATAL(jgen_item(kinds[k], 42, 9, N, b), 0);
        CU_ASSERT_EQUAL(memcmp(a, b, sizeof a), 0);
    }
    /* Another seed, another index: other matrices. */
    CU_ASSERT_EQUAL(jgen_item("uniform", 42, 9, N, a), 0);
    CU_ASSERT_EQUAL(jgen_item("uniform", 43, 9, N, b), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(a, b, sizeof a), 0);
    CU_ASSERT_EQUAL(jgen_item("uniform", 42, 10, N, b), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(a, b, sizeof a), 0);
    CU_ASSERT_EQUAL(jgen_item("spd", 42, 9, N, a), 0);
    CU_ASSERT_EQUAL(jgen_item("spd", 1, 9, N, b), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(a, b, sizeof a), 0);
}

/* Item 5 alone, then after items 0 … 4 and a smaller and larger n. */
static void test_order(void)
{
    double alone[N * N], after[N * N], other[(N + 3) * (N + 3)];
    CU_ASSERT_EQUAL_FATAL(jgen_item("spd", 3, 5, N, alone), 0);
    for (uint64_t i = 0; i < 5; i++) {
        CU_ASSERT_EQUAL(jgen_item("spd", 3, i, N, after), 0);
        CU_ASSERT_EQUAL(jgen_item("uniform", 3, i, N + 3, other), 0);
    }
    CU_ASSERT_EQUAL_FATAL(jgen_item("spd", 3, 5, N, after), 0);
    CU_ASSERT_EQUAL(memcmp(alone, after, sizeof alone), 0);
}

static void test_uniform_range(void)
{
    enum { M = 256 };
    double *a = malloc(M * M * sizeof *a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_EQUAL_FATAL(jgen_item("uniform", 11, 2, M, a), 0);
    double sum = 0, lo = 1, hi = -1;
    for (size_t i = 0; i < M * M; i++) {
        sum += a[i];
        lo = a[i] < lo ? a[i] : lo;
        hi = a[i] > hi ? a[i] : hi;
    }
    CU_ASSERT(lo >= -1.0 && hi < 1.0);
    CU_ASSERT(lo < -0.999 && hi > 0.999);
    CU_ASSERT(fabs(sum / (M * M)) < 0.01); /* mean 0, sd 1/sqrt(3·65536) */
    free(a);
}

/* spd is exactly symmetric, its diagonal ≥ 1, and equals B·Bᵀ/n + I for B
 * the uniform item of the same seed and index, up to rounding. */
static void test_spd(void)
{
    enum { M = 40 };
    static double s[M * M], b[M * M];
    CU_ASSERT_EQUAL_FATAL(jgen_item("spd", 5, 77, M, s), 0);
    CU_ASSERT_EQUAL_FATAL(jgen_item("uniform", 5, 77, M, b), 0);
    for (int i = 0; i < M; i++) {
        CU_ASSERT(s[i * M + i] >= 1.0);
        for (int j = 0; j < M; j++) {
            CU_ASSERT_EQUAL(s[i * M + j], s[j * M + i]);
            double ref = 0;
            for (int k = 0; k < M; k++)
                ref += b[i * M + k] * b[j * M + k];
            ref = ref / M + (i == j);
            CU_ASSERT_DOUBLE_EQUAL(s[i * M + j], ref, 1e-13);
        }
    }
}

static void test_hilbert(void)
{
    double h[N * N], h2[N * N];
    CU_ASSERT_EQUAL_FATAL(jgen_item("hilbert", 1, 2, N, h), 0);
    CU_ASSERT_EQUAL(h[0], 1.0);
    CU_ASSERT_EQUAL(h[1], 0.5);
    CU_ASSERT_EQUAL(h[N], 0.5);
    CU_ASSERT_EQUAL(h[2 * N + 3], 1.0 / 6);
    CU_ASSERT_EQUAL(h[N * N - 1], 1.0 / (2 * N - 1));
    CU_ASSERT_EQUAL_FATAL(jgen_item("hilbert", 99, 1000, N, h2), 0); /* seed ignored */
    CU_ASSERT_EQUAL(memcmp(h, h2, sizeof h), 0);
}

static void test_errors(void)
{
    double a[4];
    CU_ASSERT(jgen_kind_valid("uniform") && jgen_kind_valid("spd") && jgen_kind_valid("hilbert"));
    CU_ASSERT_FALSE(jgen_kind_valid("Uniform"));
    CU_ASSERT_FALSE(jgen_kind_valid(""));
    CU_ASSERT_FALSE(jgen_kind_valid(NULL));
    CU_ASSERT_EQUAL(jgen_item("normal", 1, 0, 2, a), -EINVAL);
    CU_ASSERT_EQUAL(jgen_item(NULL, 1, 0, 2, a), -EINVAL);
    CU_ASSERT_EQUAL(jgen_item("uniform", 1, 0, 0, a), -EINVAL);
    CU_ASSERT_EQUAL(jgen_item("spd", 1, 0, 1u << 24, a), -EINVAL);
}

void suite_jgen(void)
{
    CU_pSuite s = CU_add_suite("jgen", NULL, NULL);
    CU_add_test(s, "pinned bits of uniform and spd", test_pinned);
    CU_add_test(s, "same bits twice; other seeds and indices differ", test_reproducible);
    CU_add_test(s, "an item does not depend on what was generated before", test_order);
    CU_add_test(s, "uniform in [-1, 1), mean near 0", test_uniform_range);
    CU_add_test(s, "spd symmetric, diagonal >= 1, equal to B·Bᵀ/n + I", test_spd);
    CU_add_test(s, "hilbert 1/(i+j+1), seed ignored", test_hilbert);
    CU_add_test(s, "unknown kinds, n 0, spd too large", test_errors);
}
