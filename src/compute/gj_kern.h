/*
 * gj_kern — the per-instruction-set kernels of the gj module (internal).
 *
 * Each instruction set contributes one table: a register-tile matrix
 * multiply over packed panels (the BLIS micro-kernel), the unblocked
 * Gauss-Jordan leaf that factors a narrow panel, the whole inversion of a
 * small matrix, the column sums behind every 1-norm, and the grouped
 * inversion of one vector's worth of matrices of a batch (gj_group_tmpl.h). The code is
 * written once, in gj_kern_tmpl.h, with GCC vector
 * types; each gj_kern_<isa>.c instantiates it with its vector width and
 * tile shape and is compiled with that instruction set's flags.
 */
#ifndef CONVOY_GJ_KERN_H
#define CONVOY_GJ_KERN_H

#include <stddef.h>

#include "convoy/gj.h"

#define GJ_MR_MAX 8  /* largest register tile, rows */
#define GJ_NR_MAX 24 /* largest register tile, columns */
#define GJ_VW_MAX 8  /* largest group of the grouped kernel */

struct gj_kern {
    enum gj_isa isa;
    unsigned mr; /* tile rows: broadcast from the packed A sliver */
    unsigned nr; /* tile columns: vectors of the packed B sliver */
    /*
     * c[mr×nr] (row stride ldc) += ap·bp, where ap is an mr×k sliver stored
     * column by column (mr values per step) and bp a k×nr sliver stored row
     * by row. Every element is c + (a sum formed in registers), so a tile
     * computed into a zeroed buffer and added later rounds the same way.
     */
    void (*tile)(size_t k, const double *ap, const double *bp, double *c, size_t ldc);
    /*
     * The rows×k block of a (row stride lda) into mr-row slivers for tile(),
     * each mr×k, column by column, the last one zero-padded.
     */
    void (*pack_a)(size_t rows, size_t k, const double *a, size_t lda, double *dst);
    /*
     * Unblocked Gauss-Jordan on an nrows×w panel stored contiguously (row
     * stride w): column j pivots on a row chosen among rows r0+j..nrows-1,
     * swapped within the panel; piv[j] gets that row. Returns the smallest
     * pivot magnitude, or stops at the first one not above tol (or NaN) and
     * returns it, the panel then garbled.
     */
    double (*leaf)(double *p, size_t nrows, size_t w, size_t r0, size_t *piv, double tol);
    /*
     * colsum[j] = Σ_i |a[i·lda + j]| over the rows×cols block a, in row
     * order: a column's sum does not depend on the block it is taken in.
     */
    void (*col_sums)(const double *a, size_t rows, size_t cols, size_t lda, double *colsum);
    /*
     * Inverts the n×n row-major a in place, 1 ≤ n ≤ GJ_SMALL_N, without
     * blocking, on a copy on the stack. Returns GJ_OK, GJ_SINGULAR (a pivot
     * not above n·ε·‖A‖₁) or GJ_INVALID (NaN or Inf); a is untouched unless
     * GJ_OK.
     */
    int (*small)(double *a, size_t n);
    unsigned vw; /* matrices in a group: doubles per vector */
    /* Bytes of workspace group() needs for order n (a multiple of 64). */
    size_t (*group_size)(size_t n);
    /*
     * Inverts the vw n×n row-major matrices a[0..vw-1] together,
     * GJ_SMALL_N < n ≤ GJ_GROUP_N_MAX, in ws (group_size(n) bytes, 64-byte
     * aligned); a[l] NULL is an empty lane. st[l] gets GJ_OK (a[l] now holds
     * its inverse), GJ_SINGULAR or GJ_INVALID (NaN or Inf; a[l] untouched
     * either way). Each result is independent of the other lanes, bit for bit.
     */
    void (*group)(double *const *a, size_t n, void *ws, int *st);
};

extern const struct gj_kern gj_kern_c;
#if defined(__x86_64__)
extern const struct gj_kern gj_kern_avx2;
extern const struct gj_kern gj_kern_avx512;
#endif

#endif
