/*
 * gj: inverses are right (exactly where the arithmetic is exact, within
 * LAPACK's residual threshold otherwise), bad inputs get the right status,
 * and every instruction set and lane count agrees.
 */
#include "convoy/gj.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RESID_MAX 30.0 /* LAPACK's test threshold */

static uint64_t rng = 88172645463325252ull;

/* Uniform in [-1, 1): xorshift64, deterministic across runs. */
static double rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / (double)(1ull << 52) - 1.0;
}

static double *random_matrix(size_t n)
{
    double *a = malloc(n * n * sizeof(double));
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    for (size_t i = 0; i < n * n; i++)
        a[i] = rnd();
    return a;
}

static double *copy_of(const double *a, size_t n)
{
    double *c = malloc(n * n * sizeof(double));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    memcpy(c, a, n * n * sizeof(double));
    return c;
}

/* Inverts a copy of a on one lane; checks ok and the residual. Returns the copy. */
static double *invert_checked(const double *a, size_t n, const struct gj_opts *o)
{
    double *x = copy_of(a, n);
    double res = NAN;
    struct gj_opts def = {.residual = 1};
    int st = gj_invert(x, n, o != NULL ? o : &def, &res);
    CU_ASSERT_EQUAL(st, GJ_OK);
    if (o == NULL) {
        CU_ASSERT(res < RESID_MAX);
        CU_ASSERT(gj_residual(a, x, n) == res);
    }
    return x;
}

static void test_names(void)
{
    CU_ASSERT_STRING_EQUAL(gj_status_str(GJ_OK), "ok");
    CU_ASSERT_STRING_EQUAL(gj_status_str(GJ_SINGULAR), "singular");
    CU_ASSERT_STRING_EQUAL(gj_status_str(GJ_INVALID), "invalid");
    CU_ASSERT_STRING_EQUAL(gj_isa_str(GJ_ISA_AVX512), "avx512");
}

static void test_identity(void)
{
    for (size_t n = 1; n <= 300; n += 299 / 3) {
        double *a = calloc(n * n, sizeof(double));
        CU_ASSERT_PTR_NOT_NULL_FATAL(a);
        for (size_t i = 0; i < n; i++)
            a[i * n + i] = 1.0;
        double *x = invert_checked(a, n, NULL);
        CU_ASSERT_EQUAL(memcmp(a, x, n * n * sizeof(double)), 0);
        free(x);
        free(a);
    }
}

/* Matrices whose elimination is exact in binary floating point. */
static void test_known_exact(void)
{
    const double a2[] = {2, 1, 1, 1}, x2[] = {1, -1, -1, 2};
    const double a3[] = {0, 2, 0, 1, 0, 0, 0, 0, 4}, x3[] = {0, 1, 0, 0.5, 0, 0, 0, 0, 0.25};
    const double u3[] = {1, 1, 1, 0, 1, 1, 0, 0, 1}, v3[] = {1, -1, 0, 0, 1, -1, 0, 0, 1};
    double *x = invert_checked(a2, 2, NULL);
    CU_ASSERT_EQUAL(memcmp(x, x2, sizeof x2), 0);
    free(x);
    x = invert_checked(a3, 3, NULL);
    CU_ASSERT_EQUAL(memcmp(x, x3, sizeof x3), 0);
    free(x);
    x = invert_checked(u3, 3, NULL);
    CU_ASSERT_EQUAL(memcmp(x, v3, sizeof v3), 0);
    free(x);
}

/* The textbook [[4,7],[2,6]]: 1/10 is not exact, so within an ulp or two. */
static void test_known_2x2(void)
{
    const double a[] = {4, 7, 2, 6}, want[] = {0.6, -0.7, -0.2, 0.4};
    double *x = invert_checked(a, 2, NULL);
    for (int i = 0; i < 4; i++)
        CU_ASSERT(fabs(x[i] - want[i]) <= 4 * DBL_EPSILON * fabs(want[i]));
    free(x);
}

/* Every n from 1 to 130: every remainder of tile, leaf and panel. */
static void test_every_small_n(void)
{
    for (size_t n = 1; n <= 130; n++) {
        double *a = random_matrix(n);
        free(invert_checked(a, n, NULL));
        free(a);
    }
}

static void test_large(void)
{
    static const size_t sizes[] = {512, 1000};
    for (size_t s = 0; s < 2; s++) {
        double *a = random_matrix(sizes[s]);
        free(invert_checked(a, sizes[s], NULL));
        free(a);
    }
}

/* A random permutation: a pivot search at every step; the inverse is exactly Pᵀ. */
static double *permutation_matrix(size_t n)
{
    size_t *perm = malloc(n * sizeof(size_t));
    double *a = calloc(n * n, sizeof(double));
    CU_ASSERT_FATAL(perm != NULL && a != NULL);
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    for (size_t i = n; i-- > 1;) {
        size_t j = (size_t)((rnd() + 1.0) / 2.0 * (double)(i + 1)) % (i + 1);
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < n; i++)
        a[i * n + perm[i]] = 1.0;
    free(perm);
    return a;
}

/* Whether x is exactly the transpose of a. */
static bool is_transpose(const double *x, const double *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (x[j * n + i] != a[i * n + j])
                return false;
    return true;
}

static void test_permutation(void)
{
    static const size_t sizes[] = {5, 9, 16, 32, 61, 333};
    for (size_t s = 0; s < 6; s++) {
        size_t n = sizes[s];
        double *a = permutation_matrix(n);
        double *x = invert_checked(a, n, NULL);
        CU_ASSERT(is_transpose(x, a, n));
        free(x);
        free(a);
    }
}

/* Zero diagonal: without row interchanges the first pivot would be 0. */
static void test_zero_diagonal(void)
{
    static const size_t sizes[] = {2, 15, 40, 300};
    for (size_t s = 0; s < 4; s++) {
        double *a = random_matrix(sizes[s]);
        for (size_t i = 0; i < sizes[s]; i++)
            a[i * sizes[s] + i] = 0.0;
        free(invert_checked(a, sizes[s], NULL));
        free(a);
    }
}

static double binom(unsigned n, unsigned k)
{
    double r = 1.0;
    for (unsigned i = 1; i <= k; i++)
        r = r * (double)(n - k + i) / (double)i;
    return r;
}

/* The exact inverse of the Hilbert matrix, entries are integers. */
static double hilbert_inv(unsigned n, unsigned i, unsigned j)
{
    double s = (i + j) % 2 ? -1.0 : 1.0;
    double c = binom(i + j, i);
    return s * (double)(i + j + 1) * binom(n + i, n - j - 1) * binom(n + j, n - i - 1) * c * c;
}

static double norm1(const double *a, size_t n)
{
    double big = 0.0;
    for (size_t j = 0; j < n; j++) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++)
            s += fabs(a[i * n + j]);
        big = s > big ? s : big;
    }
    return big;
}

/*
 * Hilbert n = 6..12 (κ₁ from 3e7 to 4e16). Forward error ‖X − H⁻¹‖₁/‖H⁻¹‖₁ is
 * bounded by a modest multiple of n·κ·ε; past κ·n·ε ≈ 1 the matrix is
 * singular to working precision and "singular" is the honest answer.
 */
static void test_hilbert(void)
{
    for (unsigned n = 6; n <= 12; n++) {
        double h[144], exact[144], diff[144];
        for (unsigned i = 0; i < n; i++)
            for (unsigned j = 0; j < n; j++) {
                h[i * n + j] = 1.0 / (double)(i + j + 1);
                exact[i * n + j] = hilbert_inv(n, i, j);
            }
        double kappa = norm1(h, n) * norm1(exact, n);
        double x[144], res = NAN;
        memcpy(x, h, sizeof(double) * n * n);
        int st = gj_invert(x, n, &(struct gj_opts){.residual = 1}, &res);
        if (kappa * n * DBL_EPSILON >= 1.0 && st == GJ_SINGULAR)
            continue;
        CU_ASSERT_EQUAL_FATAL(st, GJ_OK);
        CU_ASSERT(res < RESID_MAX);
        for (unsigned k = 0; k < n * n; k++)
            diff[k] = x[k] - exact[k];
        CU_ASSERT(norm1(diff, n) / norm1(exact, n) <= 10.0 * n * kappa * DBL_EPSILON);
    }
}

/* On one lane, and on two (which check the first panel's pivots late). */
static void expect_singular(const double *a, size_t n)
{
    pool_t *pool;
    CU_ASSERT_EQUAL_FATAL(pool_create(&pool, 2, 16), 0);
    for (unsigned lanes = 1; lanes <= 2; lanes++) {
        struct gj_opts o = {.pool = pool, .threads = lanes};
        double *x = copy_of(a, n);
        CU_ASSERT_EQUAL(gj_invert(x, n, &o, NULL), GJ_SINGULAR);
        free(x);
    }
    pool_destroy(pool);
}

/*
 * Zero row, duplicated column, rank n−1, a first column far below the
 * tolerance but not zero: on the small and the blocked path.
 */
static void test_singular(void)
{
    static const size_t sizes[] = {8, 64, 300};
    for (size_t s = 0; s < 3; s++) {
        size_t n = sizes[s];
        double *a = random_matrix(n);
        memset(a + (n / 2) * n, 0, n * sizeof(double));
        expect_singular(a, n);
        free(a);
        a = random_matrix(n);
        for (size_t i = 0; i < n; i++)
            a[i * n + n - 1] = a[i * n + 1];
        expect_singular(a, n);
        free(a);
        /* Small integers: the last row is exactly the sum of two others. */
        a = random_matrix(n);
        for (size_t i = 0; i < n * n; i++)
            a[i] = floor(a[i] * 8.0);
        for (size_t j = 0; j < n; j++)
            a[(n - 1) * n + j] = a[j] + a[n + j];
        expect_singular(a, n);
        free(a);
        a = random_matrix(n);
        for (size_t i = 0; i < n; i++)
            a[i * n] *= 1e-20;
        expect_singular(a, n);
        free(a);
    }
}

static void test_invalid(void)
{
    double a[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    CU_ASSERT_EQUAL(gj_invert(a, 0, NULL, NULL), GJ_INVALID);
    CU_ASSERT_EQUAL(gj_invert(NULL, 3, NULL, NULL), GJ_INVALID);
    CU_ASSERT_EQUAL(gj_invert(a, 3, &(struct gj_opts){.n_max = 2}, NULL), GJ_INVALID);
    a[4] = NAN;
    CU_ASSERT_EQUAL(gj_invert(a, 3, NULL, NULL), GJ_INVALID);
    CU_ASSERT(isnan(a[4]) && a[0] == 1.0); /* untouched */
    a[4] = -INFINITY;
    CU_ASSERT_EQUAL(gj_invert(a, 3, NULL, NULL), GJ_INVALID);
    /* The blocked path on one lane and on two, where the first panel is
     * factored before the check for NaN ends: still given back untouched. */
    pool_t *pool;
    CU_ASSERT_EQUAL_FATAL(pool_create(&pool, 2, 16), 0);
    for (unsigned lanes = 1; lanes <= 2; lanes++) {
        struct gj_opts o = {.pool = pool, .threads = lanes};
        double *big = random_matrix(300), *orig = copy_of(big, 300);
        big[300 * 300 - 1] = orig[300 * 300 - 1] = lanes == 1 ? INFINITY : NAN;
        CU_ASSERT_EQUAL(gj_invert(big, 300, &o, NULL), GJ_INVALID);
        CU_ASSERT_EQUAL(memcmp(big, orig, 300 * 300 * sizeof(double)), 0);
        free(big);
        free(orig);
    }
    pool_destroy(pool);
}

static double max_abs_diff(const double *x, const double *y, size_t len, double *scale)
{
    double d = 0.0, s = 0.0;
    for (size_t i = 0; i < len; i++) {
        d = fmax(d, fabs(x[i] - y[i]));
        s = fmax(s, fabs(x[i]));
    }
    *scale = s;
    return d;
}

/* Forces each instruction set in turn; all must match the C path to rounding. */
static void test_dispatch(void)
{
    static const enum gj_isa isas[] = {GJ_ISA_AVX2, GJ_ISA_AVX512};
    static const size_t sizes[] = {13, 250};
    for (size_t s = 0; s < 2; s++) {
        size_t n = sizes[s];
        double *a = random_matrix(n);
        CU_ASSERT_EQUAL_FATAL(gj_set_isa(GJ_ISA_C), 0);
        CU_ASSERT_EQUAL(gj_active_isa(), GJ_ISA_C);
        double *ref = invert_checked(a, n, NULL);
        for (size_t i = 0; i < 2; i++) {
            int rc = gj_set_isa(isas[i]);
            CU_ASSERT(rc == 0 || rc == -ENOTSUP);
            if (rc < 0)
                continue;
            CU_ASSERT_EQUAL(gj_active_isa(), isas[i]);
            double *x = invert_checked(a, n, NULL), scale;
            CU_ASSERT(max_abs_diff(x, ref, n * n, &scale) <= 1e-11 * scale);
            free(x);
        }
        free(ref);
        free(a);
    }
    CU_ASSERT_EQUAL(setenv("CONVOY_GJ_ISA", "c", 1), 0);
    CU_ASSERT_EQUAL(gj_set_isa(GJ_ISA_AUTO), 0);
    CU_ASSERT_EQUAL(gj_active_isa(), GJ_ISA_C);
    unsetenv("CONVOY_GJ_ISA");
    CU_ASSERT_EQUAL(gj_set_isa(GJ_ISA_AUTO), 0);
    CU_ASSERT_EQUAL(gj_set_isa((enum gj_isa)99), -EINVAL);
}

/* Inverts a copy of a on every instruction set; each agrees with the first to rounding. */
static void invert_every_isa(const double *a, size_t n)
{
    static const enum gj_isa isas[] = {GJ_ISA_C, GJ_ISA_AVX2, GJ_ISA_AVX512};
    double *ref = NULL;
    for (size_t i = 0; i < 3; i++) {
        if (gj_set_isa(isas[i]) != 0)
            continue;
        double *x = invert_checked(a, n, NULL), scale;
        if (ref == NULL) {
            ref = x;
            continue;
        }
        CU_ASSERT(max_abs_diff(x, ref, n * n, &scale) <= 1e-11 * scale);
        free(x);
    }
    free(ref);
}

/* Every instruction set reports a singular a; the small path leaves it as it was. */
static void singular_every_isa(const double *a, size_t n)
{
    static const enum gj_isa isas[] = {GJ_ISA_C, GJ_ISA_AVX2, GJ_ISA_AVX512};
    for (size_t i = 0; i < 3; i++) {
        if (gj_set_isa(isas[i]) != 0)
            continue;
        double *x = copy_of(a, n);
        CU_ASSERT_EQUAL(gj_invert(x, n, NULL, NULL), GJ_SINGULAR);
        CU_ASSERT(n > GJ_SMALL_N || memcmp(x, a, n * n * sizeof(double)) == 0);
        free(x);
    }
}

/*
 * The small path (n ≤ GJ_SMALL_N: one vector per column up to three or
 * more, partial last vectors) on every instruction set: random and
 * zero-diagonal inputs (a pivot search at every step), a duplicated row
 * and a zero column (singular), and the first blocked size.
 */
static void test_small_sizes(void)
{
    for (size_t n = 1; n <= GJ_SMALL_N + 1; n++) {
        double *a = random_matrix(n);
        invert_every_isa(a, n);
        for (size_t i = 0; i < n && n > 1; i++)
            a[i * n + i] = 0.0;
        if (n > 1) {
            invert_every_isa(a, n);
            memcpy(a + (n - 1) * n, a, n * sizeof(double));
            singular_every_isa(a, n);
        }
        free(a);
        a = random_matrix(n);
        for (size_t i = 0; i < n; i++)
            a[i * n + n / 2] = 0.0;
        singular_every_isa(a, n);
        free(a);
    }
    CU_ASSERT_EQUAL(gj_set_isa(GJ_ISA_AUTO), 0);
}

/* Lanes change who does a column block, never its arithmetic. */
static void test_threads_equal(void)
{
    pool_t *pool;
    CU_ASSERT_EQUAL_FATAL(pool_create(&pool, 2, 16), 0);
    static const size_t sizes[] = {300, 700};
    for (size_t s = 0; s < 2; s++) {
        size_t n = sizes[s];
        double *a = random_matrix(n);
        double *one = invert_checked(a, n, NULL);
        for (unsigned lanes = 2; lanes <= 3; lanes++) {
            struct gj_opts o = {.pool = pool, .threads = lanes};
            double *x = invert_checked(a, n, &o);
            CU_ASSERT_EQUAL(memcmp(x, one, n * n * sizeof(double)), 0);
            free(x);
        }
        free(one);
        free(a);
    }
    pool_destroy(pool);
}

struct fresh {
    const double *a;
    size_t n;
    double *x; /* out: its inverse, or NULL */
};

static void *invert_fresh(void *arg)
{
    struct fresh *f = arg;
    f->x = malloc(f->n * f->n * sizeof(double));
    if (f->x == NULL)
        return NULL;
    memcpy(f->x, f->a, f->n * f->n * sizeof(double));
    if (gj_invert(f->x, f->n, NULL, NULL) != GJ_OK) {
        free(f->x);
        f->x = NULL;
    }
    return NULL;
}

/*
 * A thread keeps a large workspace for its next call: one left by a larger
 * inversion, full of its data, gives the same bits as a new thread's.
 */
static void test_kept_workspace(void)
{
    double *big = random_matrix(900), *a = random_matrix(650);
    struct fresh f = {.a = a, .n = 650};
    pthread_t t;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, invert_fresh, &f), 0);
    pthread_join(t, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f.x);
    CU_ASSERT_EQUAL(gj_invert(big, 900, NULL, NULL), GJ_OK);
    double *x = copy_of(a, 650);
    CU_ASSERT_EQUAL(gj_invert(x, 650, NULL, NULL), GJ_OK);
    CU_ASSERT_EQUAL(memcmp(x, f.x, 650 * 650 * sizeof(double)), 0);
    free(x);
    free(f.x);
    free(a);
    free(big);
}

/* Mixed sizes and bad items: each gets its own status, the rest are inverted. */
static void test_batch(void)
{
    enum { COUNT = 300 };
    static const size_t sizes[] = {1, 3, 8, 16, 17, 32, 45, 128};
    struct gj_item items[COUNT];
    double *orig[COUNT];
    pool_t *pool;
    CU_ASSERT_EQUAL_FATAL(pool_create(&pool, 2, 16), 0);
    for (size_t i = 0; i < COUNT; i++) {
        size_t n = sizes[i % 8];
        items[i] = (struct gj_item){.a = random_matrix(n), .n = n};
        orig[i] = copy_of(items[i].a, n);
    }
    memset(items[2].a, 0, 8 * sizeof(double));             /* 8×8, zero row: singular */
    items[5].a[0] = NAN;                                   /* invalid */
    memset(items[7].a + 128 * 5, 0, 128 * sizeof(double)); /* blocked path, singular */
    items[8].n = 0;                                        /* invalid */
    items[15].n = 2000;                                    /* over n_max: invalid */
    struct gj_opts o = {.pool = pool, .n_max = 1000, .residual = 1};
    CU_ASSERT_EQUAL(gj_invert_batch(items, COUNT, &o), COUNT - 5);
    for (size_t i = 0; i < COUNT; i++) {
        bool bad = i == 2 || i == 5 || i == 7 || i == 8 || i == 15;
        enum gj_status want = i == 2 || i == 7 ? GJ_SINGULAR : bad ? GJ_INVALID : GJ_OK;
        CU_ASSERT_EQUAL(items[i].status, want);
        if (!bad) {
            CU_ASSERT(items[i].resid < RESID_MAX);
            CU_ASSERT(gj_residual(orig[i], items[i].a, items[i].n) < RESID_MAX);
        } else {
            CU_ASSERT(isnan(items[i].resid));
        }
        free(items[i].a);
        free(orig[i]);
    }
    CU_ASSERT_EQUAL(gj_invert_batch(items, 0, &o), 0);
    pool_destroy(pool);
}

/*
 * A batch for the grouped kernel: orders it takes (and one above), mixed so
 * that groups form across the list, partial groups, and bad items inside
 * the groups. Item i's kind is i % 9.
 */
enum { GB_COUNT = 44 };
enum gb_kind {
    GB_RANDOM,
    GB_PERM,
    GB_ZERO_DIAG,
    GB_ZERO_ROW,
    GB_RANDOM2,
    GB_NAN,
    GB_DUP_ROW,
    GB_INF
};

static const size_t gb_sizes[] = {33, 40, 64, 97, 128, 192, 193};

static enum gb_kind gb_kind(size_t i)
{
    return (enum gb_kind)(i % 9 % 8);
}

static size_t gb_order(size_t i)
{
    return i < 16 ? 128 : gb_sizes[i * 5 % 7];
}

static enum gj_status gb_want(size_t i)
{
    switch (gb_kind(i)) {
    case GB_ZERO_ROW:
    case GB_DUP_ROW:
        return GJ_SINGULAR;
    case GB_NAN:
    case GB_INF:
        return GJ_INVALID;
    default:
        return GJ_OK;
    }
}

static double *gb_matrix(size_t i)
{
    size_t n = gb_order(i);
    double *a = gb_kind(i) == GB_PERM ? permutation_matrix(n) : random_matrix(n);
    switch (gb_kind(i)) {
    case GB_ZERO_DIAG:
        for (size_t r = 0; r < n; r++)
            a[r * n + r] = 0.0;
        break;
    case GB_ZERO_ROW:
        memset(a + n / 3 * n, 0, n * sizeof(double));
        break;
    case GB_NAN:
        a[n * n / 2] = NAN;
        break;
    case GB_DUP_ROW:
        memcpy(a + (n - 1) * n, a + 2 * n, n * sizeof(double));
        break;
    case GB_INF:
        a[n * n - 1] = -INFINITY;
        break;
    default:
        break;
    }
    return a;
}

/* Runs items [first, first + count) as a batch (on fresh copies) with opts. */
static struct gj_item *gb_run(double *const *orig, size_t first, size_t count,
                              const struct gj_opts *o)
{
    struct gj_item *it = calloc(count, sizeof *it);
    CU_ASSERT_PTR_NOT_NULL_FATAL(it);
    int ok = 0;
    for (size_t i = 0; i < count; i++) {
        size_t n = gb_order(first + i);
        it[i] = (struct gj_item){.a = copy_of(orig[first + i], n), .n = n};
        ok += gb_want(first + i) == GJ_OK;
    }
    CU_ASSERT_EQUAL(gj_invert_batch(it, count, o), ok);
    return it;
}

static void gb_free(struct gj_item *it, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(it[i].a);
    free(it);
}

/* Statuses, residuals, exact permutation inverses, bad items untouched. */
static void gb_check(double *const *orig, const struct gj_item *it)
{
    for (size_t i = 0; i < GB_COUNT; i++) {
        size_t n = gb_order(i);
        CU_ASSERT_EQUAL(it[i].status, gb_want(i));
        if (gb_want(i) != GJ_OK) {
            CU_ASSERT(isnan(it[i].resid));
            /* The blocked path may leave a singular matrix garbled. */
            if (n <= GJ_GROUP_N_MAX || gb_want(i) == GJ_INVALID)
                CU_ASSERT_EQUAL(memcmp(it[i].a, orig[i], n * n * sizeof(double)), 0);
            continue;
        }
        CU_ASSERT(it[i].resid < RESID_MAX);
        CU_ASSERT(gj_residual(orig[i], it[i].a, n) == it[i].resid);
        if (gb_kind(i) == GB_PERM)
            CU_ASSERT(is_transpose(it[i].a, orig[i], n));
    }
}

/* Whether two runs gave the same bits for every item. */
static bool gb_same(const struct gj_item *x, const struct gj_item *y, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        size_t n = x[i].n;
        if (n != y[i].n || memcmp(x[i].a, y[i].a, n * n * sizeof(double)) != 0)
            return false;
    }
    return true;
}

/*
 * On every instruction set: the grouped batch is right, and each item's
 * bits depend neither on the lane count nor on its group-mates (each item
 * alone in a batch of one gives the same).
 */
static void test_batch_grouped(void)
{
    static const enum gj_isa isas[] = {GJ_ISA_C, GJ_ISA_AVX2, GJ_ISA_AVX512};
    double *orig[GB_COUNT];
    pool_t *pool;
    CU_ASSERT_EQUAL_FATAL(pool_create(&pool, 2, 16), 0);
    for (size_t i = 0; i < GB_COUNT; i++)
        orig[i] = gb_matrix(i);
    for (size_t s = 0; s < 3; s++) {
        if (gj_set_isa(isas[s]) != 0)
            continue;
        struct gj_opts o = {.pool = pool, .threads = 1, .residual = 1};
        struct gj_item *one = gb_run(orig, 0, GB_COUNT, &o);
        gb_check(orig, one);
        for (o.threads = 2; o.threads <= 3; o.threads++) {
            struct gj_item *x = gb_run(orig, 0, GB_COUNT, &o);
            CU_ASSERT(gb_same(x, one, GB_COUNT));
            gb_free(x, GB_COUNT);
        }
        for (size_t i = 0; i < GB_COUNT; i += 3) {
            struct gj_item *x = gb_run(orig, i, 1, NULL);
            CU_ASSERT(gb_same(x, one + i, 1));
            gb_free(x, 1);
        }
        gb_free(one, GB_COUNT);
    }
    CU_ASSERT_EQUAL(gj_set_isa(GJ_ISA_AUTO), 0);
    for (size_t i = 0; i < GB_COUNT; i++)
        free(orig[i]);
    pool_destroy(pool);
}

void suite_gj(void)
{
    CU_pSuite s = CU_add_suite("gj", NULL, NULL);
    CU_add_test(s, "status and isa names", test_names);
    CU_add_test(s, "identity", test_identity);
    CU_add_test(s, "exact 2x2 and 3x3 inverses", test_known_exact);
    CU_add_test(s, "[[4,7],[2,6]] to an ulp", test_known_2x2);
    CU_add_test(s, "random n = 1..130, residual < 30", test_every_small_n);
    CU_add_test(s, "random n = 512 and 1000", test_large);
    CU_add_test(s, "permutations invert to their transpose", test_permutation);
    CU_add_test(s, "zero diagonal needs pivoting", test_zero_diagonal);
    CU_add_test(s, "Hilbert 6..12 within a condition-aware bound", test_hilbert);
    CU_add_test(s, "zero row, duplicated column, rank n-1 are singular", test_singular);
    CU_add_test(s, "NaN, Inf, n = 0, n > n_max are invalid", test_invalid);
    CU_add_test(s, "c, avx2 and avx512 agree", test_dispatch);
    CU_add_test(s, "n = 1..33 on every instruction set, pivoting, singular", test_small_sizes);
    CU_add_test(s, "lanes give bit-identical results", test_threads_equal);
    CU_add_test(s, "a kept workspace gives the same bits as a fresh one", test_kept_workspace);
    CU_add_test(s, "batch with bad items", test_batch);
    CU_add_test(s,
                "grouped batches: every isa, bad items in groups, bits independent of "
                "lanes and group-mates",
                test_batch_grouped);
}
