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
 * The tile keeps GJ_MR·GJ_NV accumulators in registers, loads GJ_NV vectors
 * of B and broadcasts GJ_MR values of A per step: with 24 accumulators there
 * are enough independent FMA chains to cover the FMA latency on two pipes.
 */
#include <math.h>
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
 */
static void eliminate(double *p, size_t nrows, size_t w, size_t j, size_t r)
{
    double *pr = p + r * w;
    double inv = 1.0 / pr[j];
    /* Column j is written after each row's vector update, not before: a
     * scalar store followed by a wide load of the same row cannot be
     * store-forwarded and stalls. */
    row_scale(pr, inv, w);
    pr[j] = inv;
    for (size_t i = 0; i < nrows; i++) {
        double *row = p + i * w;
        double f = row[j];
        if (i == r || f == 0.0)
            continue;
        row_axpy(row, pr, f, w);
        row[j] = -f * inv;
    }
}

static int leaf(double *p, size_t nrows, size_t w, size_t r0, size_t *piv, double tol)
{
    for (size_t j = 0; j < w; j++) {
        size_t r = r0 + j;
        size_t best = pivot_row(p, nrows, w, j, r);
        if (!(fabs(p[best * w + j]) > tol))
            return -1;
        piv[j] = best;
        if (best != r)
            row_swap(p + best * w, p + r * w, w);
        eliminate(p, nrows, w, j, r);
    }
    return 0;
}

const struct gj_kern GJ_TABLE = {
    .isa = GJ_ISA,
    .mr = GJ_MR,
    .nr = GJ_NR,
    .tile = tile,
    .leaf = leaf,
};
