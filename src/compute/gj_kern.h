/*
 * gj_kern — the per-instruction-set kernels of the gj module (internal).
 *
 * Each instruction set contributes one table: a register-tile matrix
 * multiply over packed panels (the BLIS micro-kernel) and the unblocked
 * Gauss-Jordan leaf that factors a narrow panel or a whole small matrix,
 * both stored transposed so that a column is a run of vectors.
 * The code of both is written once, in gj_kern_tmpl.h, with GCC vector
 * types; each gj_kern_<isa>.c instantiates it with its vector width and
 * tile shape and is compiled with that instruction set's flags.
 */
#ifndef CONVOY_GJ_KERN_H
#define CONVOY_GJ_KERN_H

#include <stddef.h>
#include <stdint.h>

#include "convoy/gj.h"

#define GJ_MR_MAX     8  /* largest register tile, rows */
#define GJ_NR_MAX     24 /* largest register tile, columns */
#define GJ_LANE_ALIGN 8  /* lanes of a transposed leaf: a multiple of every vector width */

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
     * Unblocked Gauss-Jordan on w columns stored transposed: column c is the
     * ld doubles at m + c·ld (ld a multiple of GJ_LANE_ALIGN), one lane per
     * row. Column j pivots on the live lane (live[l] = -1; 0 for the others)
     * of largest magnitude, the lowest on a tie, without moving any row:
     * lane[j] gets it. The lanes end as the rows of the eliminated matrix in
     * that order of pivots. live is clobbered. Returns 0, or -1 when a
     * pivot's magnitude is not above tol (m is then garbled).
     */
    int (*leaf)(double *m, size_t ld, size_t w, int64_t *live, size_t *lane, double tol);
    /*
     * Inverts the n×n row-major a in place, 1 ≤ n ≤ GJ_SMALL_N, on a copy
     * on the stack with the leaf alone. Returns GJ_OK, GJ_SINGULAR (a pivot
     * not above n·ε·‖A‖₁) or GJ_INVALID (NaN or Inf); a is untouched unless
     * GJ_OK.
     */
    int (*small)(double *a, size_t n);
};

extern const struct gj_kern gj_kern_c;
#if defined(__x86_64__)
extern const struct gj_kern gj_kern_avx2;
extern const struct gj_kern gj_kern_avx512;
#endif

#endif
