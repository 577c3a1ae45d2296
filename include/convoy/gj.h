/*
 * gj — in-place matrix inversion by blocked Gauss-Jordan elimination.
 *
 * The compute servers' engine. A matrix is n×n float64, row-major, and is
 * replaced by its inverse. Partial (row) pivoting; the column interchanges
 * it implies are undone at the end. Cost 2n³ flops, nearly all of them in one
 * packed, register-blocked matrix multiply per panel of columns (see
 * docs/kernel.md). No BLAS or LAPACK is involved.
 *
 * One large matrix is split by column blocks across the lanes of a pool;
 * a batch is split by item. Instruction sets are chosen at run time
 * (AVX-512, AVX2+FMA, portable C); CONVOY_GJ_ISA=c|avx2|avx512 or
 * gj_set_isa() forces one.
 */
#ifndef CONVOY_GJ_H
#define CONVOY_GJ_H

#include <stddef.h>

#include "convoy/pool.h"

#define GJ_N_MAX_DEFAULT 16384 /* n above this (or opts.n_max) is invalid */
#define GJ_SMALL_N       32    /* n up to this skips the blocked machinery */
#define GJ_GROUP_N_MAX   192   /* a batch's n up to this is inverted in groups */
#define GJ_LANES_MAX     64    /* parallel lanes used for one inversion */

/* Outcome of one matrix. */
enum gj_status {
    GJ_OK = 0,
    GJ_SINGULAR, /* a pivot at or below n·ε·‖A‖₁ (or zero): the matrix is left garbled
                    (untouched when n ≤ GJ_SMALL_N, or in a batch n ≤ GJ_GROUP_N_MAX) */
    GJ_INVALID,  /* n = 0, n > n_max, NULL, or NaN/Inf in the input: left untouched */
};

/* "ok", "singular", "invalid" ("?" otherwise). */
const char *gj_status_str(enum gj_status s);

enum gj_isa {
    GJ_ISA_AUTO = 0, /* the best this CPU runs (or CONVOY_GJ_ISA) */
    GJ_ISA_C,        /* portable C, any gcc target */
    GJ_ISA_AVX2,     /* AVX2 + FMA */
    GJ_ISA_AVX512,   /* AVX-512 F/VL/DQ + FMA */
};

/* "auto", "c", "avx2", "avx512". */
const char *gj_isa_str(enum gj_isa isa);

/*
 * Selects the micro-kernels used from now on, process-wide. Call it while no
 * inversion runs. Returns 0, or -ENOTSUP when the CPU (or the build target)
 * lacks that instruction set, or -EINVAL; the selection is then unchanged.
 */
int gj_set_isa(enum gj_isa isa);

/* The instruction set in use (never GJ_ISA_AUTO). */
enum gj_isa gj_active_isa(void);

struct gj_opts {
    pool_t *pool;     /* NULL: everything on the calling thread */
    unsigned threads; /* lanes on pool, the caller included; 0: pool_threads(pool) */
    size_t n_max;     /* 0: GJ_N_MAX_DEFAULT */
    int residual;     /* nonzero: compute the residual (keeps a copy of A) */
};

/*
 * Inverts the n×n row-major matrix a in place. opts may be NULL (one thread,
 * defaults). When opts->residual is set and resid is not NULL, *resid gets
 * ‖I − A·A⁻¹‖₁ / (n ‖A‖₁ ‖A⁻¹‖₁ ε) for an ok result (NaN otherwise).
 * Returns GJ_OK, GJ_SINGULAR or GJ_INVALID, or -ENOMEM (a is then untouched).
 * The result does not depend on the number of lanes, bit for bit. A large
 * workspace (4 to 64 MiB: n from about 600 to 9000) is kept by the calling
 * thread for its next call and unmapped when the thread exits.
 */
int gj_invert(double *a, size_t n, const struct gj_opts *opts, double *resid);

/* One matrix of a batch. */
struct gj_item {
    double *a;             /* n×n row-major; replaced by its inverse when ok */
    size_t n;              /* sizes may differ between items */
    enum gj_status status; /* out */
    double resid;          /* out: the residual as in gj_invert(), or NaN */
};

/*
 * Inverts count independent matrices in place, items split across the lanes
 * of opts->pool (one item is one lane's work). Items with GJ_SMALL_N < n ≤
 * GJ_GROUP_N_MAX are inverted a vector's worth at a time (8 with AVX-512), one matrix
 * per vector lane, grouped with items of the same n near them; a singular
 * one is left untouched, and no result depends on its group-mates or on the
 * lane count, bit for bit (it may differ from gj_invert()'s in the last
 * bits). Workspace is allocated once per lane, sized for the largest item,
 * never per item. A bad item only sets its own status. Returns the number
 * of ok items, or -ENOMEM (then no item was touched).
 */
int gj_invert_batch(struct gj_item *items, size_t count, const struct gj_opts *opts);

/*
 * ‖I − A·X‖₁ / (n ‖A‖₁ ‖X‖₁ ε) for n×n row-major A and X, computed with the
 * kernel's own matrix multiply. Returns it (≥ 0, or NaN/Inf when an input
 * holds them), or -ENOMEM.
 */
double gj_residual(const double *a, const double *x, size_t n);

#endif
