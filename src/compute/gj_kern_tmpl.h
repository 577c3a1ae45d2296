/*
 * The gj kernels, written once for any vector width (internal; included by
 * gj_kern_<isa>.c only).
 *
 * The includer defines GJ_VW (doubles per vector), GJ_MR (tile rows), GJ_NV
 * (vectors per tile row), GJ_ISA (enum gj_isa) and GJ_TABLE (the table's
 * name). GCC vector types lower to whatever the file is compiled for, and
 * a*b+c contracts to FMA where the target has it, so the same lines give an
 * 8×24 AVX-512 tile, a 4×12 AVX2 tile and a 4×6 SSE2 (or scalar) tile.
 *
 * The includer may also define GJ_IMAX(a, b), a lane-wise int64 maximum in
 * one instruction, which generic vectors cannot express.
 *
 * The tile keeps GJ_MR·GJ_NV accumulators in registers, loads GJ_NV vectors
 * of B and broadcasts GJ_MR values of A per step: with 24 accumulators there
 * are enough independent FMA chains to cover the FMA latency on two pipes.
 * The row leaf factors the panels of the blocked path; small() inverts a
 * whole matrix of up to GJ_SMALL_N on the stack (see docs/kernel.md, "Small
 * matrices").
 */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "gj_kern.h"

#define GJ_NR (GJ_VW * GJ_NV)

/* Unaligned and alias-safe: C rows start anywhere, packed slivers too. */
typedef double gj_vec __attribute__((vector_size(GJ_VW * sizeof(double)), aligned(8), may_alias));

static inline gj_vec vec_load(const double *p)
{
    return *(const gj_vec *)p;
}

static inline void vec_store(double *p, gj_vec v)
{
    *(gj_vec *)p = v;
}

static void tile(size_t k, const double *restrict ap, const double *restrict bp, double *restrict c,
                 size_t ldc)
{
    gj_vec acc[GJ_MR][GJ_NV];
    /* C is read only after the k loop: ask for it now, so that its lines,
     * often in memory rather than cache, arrive while the FMAs run. */
#pragma GCC unroll 8
    for (int i = 0; i < GJ_MR; i++)
        for (int b = 0; b < GJ_NR * 8; b += 64)
            __builtin_prefetch((const char *)(c + i * ldc) + b, 1);
#pragma GCC unroll 8
    for (int i = 0; i < GJ_MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < GJ_NV; v++)
            acc[i][v] = (gj_vec){0};
    for (size_t p = 0; p < k; p++) {
        gj_vec b[GJ_NV];
#pragma GCC unroll 4
        for (int v = 0; v < GJ_NV; v++)
            b[v] = vec_load(bp + v * GJ_VW);
#pragma GCC unroll 8
        for (int i = 0; i < GJ_MR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < GJ_NV; v++)
                acc[i][v] += ap[i] * b[v];
        ap += GJ_MR;
        bp += GJ_NR;
    }
#pragma GCC unroll 8
    for (int i = 0; i < GJ_MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < GJ_NV; v++)
            vec_store(c + i * ldc + v * GJ_VW, vec_load(c + i * ldc + v * GJ_VW) + acc[i][v]);
}

/* y -= f·x over w doubles. */
static inline void row_axpy(double *restrict y, const double *restrict x, double f, size_t w)
{
    size_t j = 0;
    for (; j + GJ_VW <= w; j += GJ_VW)
        vec_store(y + j, vec_load(y + j) - f * vec_load(x + j));
    for (; j < w; j++)
        y[j] -= f * x[j];
}

static inline void row_scale(double *x, double f, size_t w)
{
    size_t j = 0;
    for (; j + GJ_VW <= w; j += GJ_VW)
        vec_store(x + j, f * vec_load(x + j));
    for (; j < w; j++)
        x[j] *= f;
}

static inline void row_swap(double *restrict x, double *restrict y, size_t w)
{
    size_t j = 0;
    for (; j + GJ_VW <= w; j += GJ_VW) {
        gj_vec t = vec_load(x + j);
        vec_store(x + j, vec_load(y + j));
        vec_store(y + j, t);
    }
    for (; j < w; j++) {
        double t = x[j];
        x[j] = y[j];
        y[j] = t;
    }
}

/* The row in [from, nrows) whose column-j entry is largest in magnitude. */
static size_t pivot_row(const double *p, size_t nrows, size_t w, size_t j, size_t from)
{
    size_t best = from;
    double big = fabs(p[from * w + j]);
    for (size_t i = from + 1; i < nrows; i++) {
        double v = fabs(p[i * w + j]);
        if (v > big) {
            big = v;
            best = i;
        }
    }
    return best;
}

/*
 * One Gauss-Jordan step on column j, pivot row r: the pivot row is divided
 * by the pivot and every other row loses its multiple of it; column j itself
 * becomes the matching column of the inverse (1/pivot on the pivot row,
 * -a[i][j]/pivot elsewhere), which is what makes the method in place.
 * Returns the pivot row for column j+1 (the largest |a[i][j+1]| of rows
 * below r, the first on a tie), found in the same pass while each row is
 * at hand, instead of in a second walk down the panel; 0 if j+1 = w.
 */
static size_t eliminate(double *p, size_t nrows, size_t w, size_t j, size_t r)
{
    double *pr = p + r * w;
    double inv = 1.0 / pr[j], big = -1.0;
    size_t next = j + 1 < w ? r + 1 : 0;
    /* Column j is written after each row's vector update, not before: a
     * scalar store followed by a wide load of the same row cannot be
     * store-forwarded and stalls. */
    row_scale(pr, inv, w);
    pr[j] = inv;
    for (size_t i = 0; i < nrows; i++) {
        double *row = p + i * w;
        double f = row[j];
        if (i != r && f != 0.0) {
            row_axpy(row, pr, f, w);
            row[j] = -f * inv;
        }
        if (i > r && j + 1 < w) {
            double v = fabs(row[j + 1]);
            next = v > big ? i : next;
            big = v > big ? v : big;
        }
    }
    return next;
}

static double leaf(double *p, size_t nrows, size_t w, size_t r0, size_t *piv, double tol)
{
    size_t best = pivot_row(p, nrows, w, 0, r0);
    double small = INFINITY;
    for (size_t j = 0; j < w; j++) {
        size_t r = r0 + j;
        double mag = fabs(p[best * w + j]);
        if (!(mag > tol))
            return mag;
        small = mag < small ? mag : small;
        piv[j] = best;
        if (best != r)
            row_swap(p + best * w, p + r * w, w);
        best = eliminate(p, nrows, w, j, r);
    }
    return small;
}

static inline gj_vec vec_abs(gj_vec x)
{
    typedef int64_t bits __attribute__((vector_size(sizeof(gj_vec))));
    return (gj_vec)((bits)x & INT64_MAX);
}

/* See the table. */
static void col_sums(const double *a, size_t rows, size_t cols, size_t lda, double *colsum)
{
    memset(colsum, 0, cols * sizeof(double));
    for (size_t i = 0; i < rows; i++) {
        const double *row = a + i * lda;
        size_t j = 0;
        for (; j + GJ_VW <= cols; j += GJ_VW)
            vec_store(colsum + j, vec_load(colsum + j) + vec_abs(vec_load(row + j)));
        for (; j < cols; j++)
            colsum[j] += fabs(row[j]);
    }
}

/* Lane masks and shuffles (all ones or zero per lane), same width as gj_vec. */
typedef int64_t gj_ivec __attribute__((vector_size(GJ_VW * sizeof(double)), aligned(8), may_alias));

#if GJ_VW == 8
#define GJ_IOTA                                                                                    \
    {                                                                                              \
        0, 1, 2, 3, 4, 5, 6, 7                                                                     \
    }
#define GJ_SWAP4                                                                                   \
    {                                                                                              \
        4, 5, 6, 7, 0, 1, 2, 3                                                                     \
    }
#define GJ_SWAP2                                                                                   \
    {                                                                                              \
        2, 3, 0, 1, 6, 7, 4, 5                                                                     \
    }
#define GJ_SWAP1                                                                                   \
    {                                                                                              \
        1, 0, 3, 2, 5, 4, 7, 6                                                                     \
    }
#elif GJ_VW == 4
#define GJ_IOTA                                                                                    \
    {                                                                                              \
        0, 1, 2, 3                                                                                 \
    }
#define GJ_SWAP2                                                                                   \
    {                                                                                              \
        2, 3, 0, 1                                                                                 \
    }
#define GJ_SWAP1                                                                                   \
    {                                                                                              \
        1, 0, 3, 2                                                                                 \
    }
#elif GJ_VW == 2
#define GJ_IOTA                                                                                    \
    {                                                                                              \
        0, 1                                                                                       \
    }
#define GJ_SWAP1                                                                                   \
    {                                                                                              \
        1, 0                                                                                       \
    }
#else
#error "GJ_VW must be 2, 4 or 8"
#endif

static inline gj_ivec sel(gj_ivec m, gj_ivec a, gj_ivec b)
{
    return (a & m) | (b & ~m);
}

/* Lane-wise signed maximum; the includer may name a single instruction. */
static inline gj_ivec imax(gj_ivec a, gj_ivec b)
{
#ifdef GJ_IMAX
    return GJ_IMAX(a, b);
#else
    return sel(a > b, a, b);
#endif
}

static inline gj_vec splat(double x)
{
    return (gj_vec){0} + x;
}

/*
 * Pivot search by integer keys: a finite |x| orders like its bit pattern,
 * so key = (bits of |x| with the low lbits cleared) | (2^lbits − 1 − lane)
 * makes one integer maximum pick the largest magnitude (to 52 − lbits
 * bits of mantissa, far finer than stability needs) and, among equals, the
 * lowest lane, with no branch on the data. Dead lanes get key 0. The
 * butterfly leaves the best key in every lane.
 */
static inline gj_ivec key_max_all(gj_ivec k)
{
#ifdef GJ_SWAP4
    k = imax(k, __builtin_shuffle(k, (gj_ivec)GJ_SWAP4));
#endif
#ifdef GJ_SWAP2
    k = imax(k, __builtin_shuffle(k, (gj_ivec)GJ_SWAP2));
#endif
    return imax(k, __builtin_shuffle(k, (gj_ivec)GJ_SWAP1));
}

/* The pivot lane of column x (nv vectors), live lanes lv, 2^lbits ≥ lanes. */
static inline size_t pivot_lane(const double *x, const gj_ivec *lv, size_t nv, unsigned lbits)
{
    int64_t low = ((int64_t)1 << lbits) - 1;
    gj_ivec best = {0}, tag = low - (gj_ivec)GJ_IOTA;
    for (size_t v = 0; v < nv; v++, tag -= GJ_VW) {
        gj_ivec mag = (gj_ivec)vec_load(x + v * GJ_VW) & INT64_MAX;
        best = imax(best, ((mag & ~low) | tag) & lv[v]);
    }
    return (size_t)(low - (key_max_all(best)[0] & low));
}

/* All ones but in lane r, for vector v of a column. */
static inline gj_ivec keep_mask(size_t v, size_t r)
{
    return (gj_ivec)GJ_IOTA + (int64_t)(v * GJ_VW) != (int64_t)r;
}

/* Vectors in a column of the small path, at most. */
#define GJ_NV_MAX (GJ_SMALL_N / GJ_VW)

/* Every column but j (nv vectors) loses h·t, lane r zeroed first. */
static inline __attribute__((always_inline)) void update_short(double *m, size_t ld, size_t w,
                                                               size_t nv, size_t j, size_t r,
                                                               const gj_vec *h, const gj_ivec *keep,
                                                               gj_vec inv)
{
    for (size_t c = 0; c < w; c++) {
        double *x = m + c * ld;
        if (c == j)
            continue;
        gj_vec t = splat(x[r]) * inv;
#pragma GCC unroll 4
        for (size_t v = 0; v < nv; v++) {
            gj_vec y = (gj_vec)((gj_ivec)vec_load(x + v * GJ_VW) & keep[v]);
            vec_store(x + v * GJ_VW, y - h[v] * t);
        }
    }
}

/*
 * One Gauss-Jordan step in the transposed layout (see small_gj()): column
 * j pivots on lane r, inv = 1/pivot in every lane. Let h be column j with
 * lane r set to −1. With t = c[r]·inv, every other column c becomes (c
 * with lane r zeroed) − h·t, and column j becomes 0 − h·inv. That is the
 * same arithmetic, operation for operation, as scaling the pivot row and
 * subtracting its multiples from the other rows: the zeroed lane comes out
 * as exactly t, and "0 −" keeps a zero a positive zero.
 */
static inline __attribute__((always_inline)) void step(double *m, size_t nv, size_t w, size_t j,
                                                       size_t r, gj_vec inv)
{
    size_t ld = nv * GJ_VW;
    double *hp = m + j * ld;
    gj_vec h[GJ_NV_MAX];
    gj_ivec keep[GJ_NV_MAX];
#pragma GCC unroll 4
    for (size_t v = 0; v < nv; v++) {
        keep[v] = keep_mask(v, r);
        h[v] = (gj_vec)sel(keep[v], (gj_ivec)vec_load(hp + v * GJ_VW), (gj_ivec)splat(-1.0));
    }
    update_short(m, ld, w, nv, j, r, h, keep, inv);
#pragma GCC unroll 4
    for (size_t v = 0; v < nv; v++)
        vec_store(hp + v * GJ_VW, 0.0 - h[v] * inv);
}

/*
 * 1/x[r] in every lane. A column of one vector divides all its lanes while
 * the pivot search runs, and then only picks one: the division is off the
 * step's critical path (same quotient, division is correctly rounded).
 */
static inline gj_vec inverse_of(const double *x, size_t nv, size_t r, gj_vec rec)
{
    if (nv == 1)
        return __builtin_shuffle(rec, (gj_ivec){0} + (int64_t)r);
    return splat(1.0 / x[r]);
}

/*
 * Unblocked Gauss-Jordan on n columns of n rows stored transposed: column c
 * is the nv vectors at m + c·nv·GJ_VW, one lane per row, lanes n and up
 * zero. Column j pivots on the lane not yet used of largest magnitude, the
 * lowest on a tie, without moving any row: lane[j] gets it. Returns 0, or
 * -1 when a pivot's magnitude is not above tol (m is then garbled).
 * Inlined with nv constant for the common sizes, so that the mask of
 * unused lanes stays in registers and the loops over vectors unroll.
 */
static inline __attribute__((always_inline)) int small_gj(double *m, size_t nv, size_t n,
                                                          size_t *lane, double tol)
{
    size_t ld = nv * GJ_VW;
    unsigned lbits = 64 - (unsigned)__builtin_clzll((ld - 1) | 1);
    gj_ivec live[GJ_NV_MAX];
#pragma GCC unroll 4
    for (size_t v = 0; v < nv; v++)
        live[v] = (gj_ivec)GJ_IOTA + (int64_t)(v * GJ_VW) < (int64_t)n;
    for (size_t j = 0; j < n; j++) {
        double *x = m + j * ld;
        gj_vec rec = splat(1.0);
        if (nv == 1)
            rec /= vec_load(x);
        size_t r = pivot_lane(x, live, nv, lbits);
        if (!(fabs(x[r]) > tol))
            return -1;
        /* A vector update: a scalar store and then a wide load of the same
         * mask could not be forwarded. */
        live[r / GJ_VW] &= keep_mask(r / GJ_VW, r);
        lane[j] = r;
        step(m, nv, n, j, r, inverse_of(x, nv, r, rec));
    }
    return 0;
}

static int small_gj_any(double *m, size_t nv, size_t n, size_t *lane, double tol)
{
    switch (nv) {
    case 1:
        return small_gj(m, 1, n, lane, tol);
    case 2:
        return small_gj(m, 2, n, lane, tol);
    case 3:
        return small_gj(m, 3, n, lane, tol);
    case 4:
        return small_gj(m, 4, n, lane, tol);
    default:
        return small_gj(m, nv, n, lane, tol);
    }
}

/*
 * ‖A‖₁ of the padded copy m (n rows of nv vectors): the largest lane of the
 * column sums. NaN or Inf anywhere makes it NaN or Inf.
 */
static double copy_norm(const double *m, size_t n, size_t nv)
{
    gj_vec sum[GJ_SMALL_N / GJ_VW] = {0};
    for (size_t i = 0; i < n; i++)
        for (size_t v = 0; v < nv; v++)
            sum[v] += (gj_vec)((gj_ivec)vec_load(m + (i * nv + v) * GJ_VW) & INT64_MAX);
    double big = 0.0;
    for (size_t v = 0; v < nv; v++)
        for (size_t l = 0; l < GJ_VW; l++)
            big = sum[v][l] > big || isnan(sum[v][l]) ? sum[v][l] : big;
    return big;
}

/* n doubles from src to dst, zeros after them up to a whole vector. */
static inline void copy_row(double *dst, const double *src, size_t n)
{
    size_t j = 0;
    for (; j + GJ_VW <= n; j += GJ_VW)
        vec_store(dst + j, vec_load(src + j));
    if (j == n)
        return;
    vec_store(dst + j, splat(0.0));
    for (; j < n; j++)
        dst[j] = src[j];
}

/*
 * The small path (see the table's contract). The rows of A, copied with a
 * padded stride, are the columns of Aᵀ, so small_gj() inverts Aᵀ with
 * partial pivoting (A with column pivoting), and the columns of (Aᵀ)⁻¹ are
 * the rows of A⁻¹. Pivoting on lanes without moving them leaves that
 * result permuted on both sides: row lane[j] of A⁻¹ is row j of the copy
 * read in lane order.
 */
static int small(double *a, size_t n)
{
    size_t nv = (n + GJ_VW - 1) / GJ_VW, ld = nv * GJ_VW;
    double m[GJ_SMALL_N * GJ_SMALL_N] __attribute__((aligned(64)));
    size_t lane[GJ_SMALL_N];
    for (size_t i = 0; i < n; i++)
        copy_row(m + i * ld, a + i * n, n);
    double norm = copy_norm(m, n, nv);
    if (!isfinite(norm))
        return GJ_INVALID;
    if (small_gj_any(m, nv, n, lane, (double)n * DBL_EPSILON * norm) < 0)
        return GJ_SINGULAR;
    if (n == GJ_VW) {
        gj_ivec perm;
        for (size_t i = 0; i < n; i++)
            perm[i] = (int64_t)lane[i];
        for (size_t j = 0; j < n; j++)
            vec_store(a + lane[j] * n, __builtin_shuffle(vec_load(m + j * ld), perm));
        return GJ_OK;
    }
    for (size_t j = 0; j < n; j++) {
        double *out = a + lane[j] * n;
        for (size_t i = 0; i < n; i++)
            out[i] = m[j * ld + lane[i]];
    }
    return GJ_OK;
}

/* One butterfly stage's lane choice: lanes of a (from) and b (from + GJ_VW). */
static inline gj_ivec tr_mask(int h, bool hi)
{
    gj_ivec m;
    for (int p = 0; p < GJ_VW; p++)
        m[p] = (p & h) ? GJ_VW + p - (hi ? 0 : h) : p + (hi ? h : 0);
    return m;
}

/* Transposes the GJ_VW × GJ_VW block x in log2(GJ_VW) butterfly stages. */
static inline __attribute__((always_inline)) void transpose(gj_vec *x)
{
#pragma GCC unroll 3
    for (int h = 1; h < GJ_VW; h *= 2)
#pragma GCC unroll 8
        for (int i = 0; i < GJ_VW; i++) {
            if (i & h)
                continue;
            gj_vec lo = __builtin_shuffle(x[i], x[i + h], tr_mask(h, false));
            x[i + h] = __builtin_shuffle(x[i], x[i + h], tr_mask(h, true));
            x[i] = lo;
        }
}

/*
 * See the table. With one vector per tile row (GJ_MR = GJ_VW), each
 * GJ_VW × GJ_VW block is GJ_VW loads, a transposition in registers and
 * GJ_VW stores, where element by element it was a load and a store each.
 */
static void pack_a(size_t rows, size_t kk, const double *a, size_t lda, double *dst)
{
    for (size_t i0 = 0; i0 < rows; i0 += GJ_MR, dst += GJ_MR * kk) {
        const double *src = a + i0 * lda;
        size_t p = 0, h = rows - i0 < GJ_MR ? rows - i0 : GJ_MR;
        if (h < GJ_MR)
            memset(dst, 0, GJ_MR * kk * sizeof(double));
#if GJ_MR == GJ_VW
        for (; h == GJ_MR && p + GJ_VW <= kk; p += GJ_VW) {
            gj_vec x[GJ_VW];
#pragma GCC unroll 8
            for (int i = 0; i < GJ_VW; i++)
                x[i] = vec_load(src + i * lda + p);
            transpose(x);
#pragma GCC unroll 8
            for (int c = 0; c < GJ_VW; c++)
                vec_store(dst + (p + c) * GJ_MR, x[c]);
        }
#endif
        for (; p < kk; p++)
            for (size_t i = 0; i < h; i++)
                dst[p * GJ_MR + i] = src[i * lda + p];
    }
}

#include "gj_group_tmpl.h"

const struct gj_kern GJ_TABLE = {
    .isa = GJ_ISA,
    .mr = GJ_MR,
    .nr = GJ_NR,
    .tile = tile,
    .pack_a = pack_a,
    .leaf = leaf,
    .small = small,
    .col_sums = col_sums,
    .vw = GJ_VW,
    .group_size = group_size,
    .group = group,
};
