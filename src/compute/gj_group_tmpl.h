/*
 * The grouped kernel: GJ_VW matrices of one order inverted at once, lane l
 * of every vector holding matrix l (internal; included by gj_kern_tmpl.h,
 * which defines the vector types and GJ_VW).
 *
 * The design is simple: the matrices are interleaved element by element,
 * so the blocked Gauss-Jordan of gj.c becomes vertical arithmetic, one
 * instruction for all of them, and the multiply needs no broadcast: a
 * register tile of GJ_GMR rows × GJ_GNC columns loads GJ_GMR + GJ_GNC
 * vectors per step for GJ_GMR·GJ_GNC FMAs. Every lane pivots on its own
 * rows, so rows are not moved (the lanes would disagree on where to): each
 * lane records the row it pivoted on at each step, a multiply's B rows (the
 * panel's pivot rows) are gathered lane by lane, and the two permutations
 * this leaves on each inverse are undone as it is written back. Nothing
 * crosses lanes, so a matrix's result does not depend on its group-mates;
 * a lane that turns out singular, or holds NaN or Inf, is computed on as
 * garbage in its own lane and not written back.
 *
 * Row i, column c of the group is the vector at m + (i·ld + c)·GJ_VW with
 * ld = n + 1, so that a column's consecutive rows do not share cache sets.
 * Rows are padded to a multiple of GJ_GMR with zero rows that never pivot.
 */

#define GJ_GMR (GJ_MR / 2) /* grouped tile rows */
#ifndef GJ_GNC
#define GJ_GNC (2 * GJ_NV) /* grouped tile columns (vectors); the includer may choose */
#endif

enum {
    GJ_GNB = 64,  /* panel width */
    GJ_GLEAF = 4, /* columns factored by the unblocked step */
};

/* One group in progress: views into the caller's workspace. */
struct group {
    size_t n, np, ld;    /* order, rows padded, row stride in vectors */
    double *m;           /* np × ld vectors: the interleaved matrices */
    gj_ivec *piv;        /* n: the row each lane pivoted on at step k */
    gj_ivec *used;       /* np: all ones in the lanes where row i has pivoted */
    gj_ivec *keep;       /* np: zero in the lanes where row i is a pivot row of the panel */
    gj_vec *bp;          /* GJ_GNB × n: a panel's pivot rows, gathered and packed */
    gj_vec *colsum;      /* n: column sums for the 1-norms */
    double *ident;       /* 2n: row i of the identity is ident + n − i (empty lanes) */
    const gj_vec **prow; /* GJ_GNB × GJ_VW: a panel's pivot rows, lane by lane */
    uint32_t *rk;        /* GJ_VW × n: lane l's pivot row of step k */
    uint32_t *jinv;      /* GJ_VW × n: the step that pivoted on row i in lane l */
    double *rows;        /* GJ_VW × n: one row of the group, lane by lane */
    gj_vec tol;          /* pivots at or below it are singular */
    gj_ivec bad, inval;  /* lanes found singular; lanes with NaN or Inf */
};

static inline size_t grp_round(size_t x, size_t m)
{
    return (x + m - 1) / m * m;
}

/* Lays the group out at base (or, with base NULL, only measures it). */
static size_t grp_carve(struct group *g, char *base, size_t n)
{
    size_t off = 0;
    g->n = n;
    g->np = grp_round(n, GJ_GMR);
    g->ld = n + 1;
#define GCARVE(field, count)                                                                       \
    do {                                                                                           \
        g->field = base ? (void *)(base + off) : NULL;                                             \
        off += grp_round((count) * sizeof(*g->field), 64);                                         \
    } while (0)
    GCARVE(m, g->np * g->ld * GJ_VW);
    GCARVE(piv, n);
    GCARVE(used, g->np);
    GCARVE(keep, g->np);
    GCARVE(bp, (size_t)GJ_GNB * n);
    GCARVE(colsum, n);
    GCARVE(ident, 2 * n);
    GCARVE(prow, (size_t)GJ_GNB * GJ_VW);
    GCARVE(rk, GJ_VW * n);
    GCARVE(jinv, GJ_VW * n);
    GCARVE(rows, GJ_VW * n);
#undef GCARVE
    return off;
}

static size_t group_size(size_t n)
{
    struct group g;
    return grp_carve(&g, NULL, n);
}

static inline gj_vec *gv(const struct group *g, size_t i, size_t c)
{
    return (gj_vec *)(g->m + (i * g->ld + c) * GJ_VW);
}

/* Row i of lane l's input: its matrix, or the identity for an empty lane. */
static inline const double *src_row(const struct group *g, double *const *a, int l, size_t i)
{
    return a[l] != NULL ? a[l] + i * g->n : g->ident + g->n - i;
}

/* Row i of every lane into the group, and its magnitudes into the column sums. */
static void grp_load_row(struct group *g, double *const *a, size_t i)
{
    size_t n = g->n, c0 = 0;
    gj_vec *d = gv(g, i, 0);
    for (; c0 + GJ_VW <= n; c0 += GJ_VW) {
        gj_vec x[GJ_VW];
#pragma GCC unroll 8
        for (int l = 0; l < GJ_VW; l++)
            x[l] = vec_load(src_row(g, a, l, i) + c0);
        transpose(x);
#pragma GCC unroll 8
        for (int c = 0; c < GJ_VW; c++) {
            d[c0 + c] = x[c];
            g->colsum[c0 + c] += vec_abs(x[c]);
        }
    }
    for (; c0 < n; c0++) {
        for (int l = 0; l < GJ_VW; l++)
            d[c0][l] = src_row(g, a, l, i)[c0];
        g->colsum[c0] += vec_abs(d[c0]);
    }
}

/* Interleaves the inputs; sets tol and the lanes with NaN or Inf. */
static void grp_load(struct group *g, double *const *a)
{
    size_t n = g->n;
    memset(g->ident, 0, 2 * n * sizeof(double));
    g->ident[n] = 1.0;
    memset(g->colsum, 0, n * sizeof(gj_vec));
    for (size_t i = 0; i < n; i++)
        grp_load_row(g, a, i);
    for (size_t i = n; i < g->np; i++)
        memset(gv(g, i, 0), 0, g->ld * sizeof(gj_vec));
    gj_vec big = splat(0.0);
    g->inval = (gj_ivec){0};
    for (size_t c = 0; c < n; c++) {
        g->inval |= ~(g->colsum[c] <= DBL_MAX);
        big = (gj_vec)sel(g->colsum[c] > big, (gj_ivec)g->colsum[c], (gj_ivec)big);
    }
    g->tol = (double)n * DBL_EPSILON * big;
    for (size_t i = 0; i < g->np; i++)
        g->used[i] = (gj_ivec){0} - (int64_t)(i >= n);
}

/* Lanes p with p & h set: all ones there. */
static inline gj_ivec hi_lanes(int h)
{
    gj_ivec m;
    for (int p = 0; p < GJ_VW; p++)
        m[p] = (p & h) ? -1 : 0;
    return m;
}

/*
 * Lane l of the result is lane l of row[l][c]: a whole-vector load per lane
 * and a tree of blends, ~2.5 cycles on Zen 5 where a hardware gather of
 * the same eight values takes ~9.
 */
static inline __attribute__((always_inline)) gj_vec diag(const gj_vec *const *row, size_t c)
{
    gj_ivec x[GJ_VW];
#pragma GCC unroll 8
    for (int l = 0; l < GJ_VW; l++)
        x[l] = (gj_ivec)row[l][c];
#pragma GCC unroll 3
    for (int h = 1; h < GJ_VW; h *= 2)
#pragma GCC unroll 8
        for (int i = 0; i < GJ_VW; i += 2 * h)
            x[i] = sel(hi_lanes(h), x[i + h], x[i]);
    return (gj_vec)x[0];
}

/*
 * Pivot search by integer keys, as in small() of gj_kern_tmpl.h: a finite
 * |x| orders like its bit pattern, so (|x| with the low byte replaced by
 * 255 − i) picks the largest magnitude, to 44 bits of mantissa, and among
 * equals the first row, with one integer maximum per row and no compare
 * in the loop-carried chain. Rows already pivoted on get key 0, below any
 * other (every key of a row not pivoted on has 255 − i > 0).
 */
#define GRP_TAG 0xff

_Static_assert(GJ_GROUP_N_MAX <= GRP_TAG, "row numbers fit a pivot key's tag");

static inline gj_ivec grp_key(gj_vec x, gj_ivec used, size_t i)
{
    return (((gj_ivec)vec_abs(x) & ~(int64_t)GRP_TAG) | (int64_t)(GRP_TAG - i)) & ~used;
}

static inline gj_ivec grp_key_row(gj_ivec key)
{
    return GRP_TAG - (key & GRP_TAG);
}

/* Lane-wise: the row not pivoted on yet whose column-j entry is largest. */
static gj_ivec grp_pivots(const struct group *g, size_t j)
{
    gj_ivec best = {0};
    for (size_t i = 0; i < g->n; i++)
        best = imax(best, grp_key(*gv(g, i, j), g->used[i], i));
    return grp_key_row(best);
}

/*
 * Row i of the panel [k0, k0 + w) loses f·p: f is its column-jj entry, or
 * −1 on the lane's pivot row (keep zero there), whose old value is zeroed
 * first, so one formula gives the scaled pivot row there and the
 * elimination everywhere else, lane by lane.
 */
static inline __attribute__((always_inline)) void grp_row(gj_vec *row, size_t w, size_t jj,
                                                          gj_ivec keep, const gj_vec *p)
{
    gj_vec f = (gj_vec)sel(keep, (gj_ivec)row[jj], (gj_ivec)splat(-1.0));
#pragma GCC unroll 8
    for (size_t c = 0; c < w; c++) {
        gj_vec x = c == jj ? splat(0.0) : (gj_vec)((gj_ivec)row[c] & keep);
        row[c] = x - f * p[c];
    }
}

/*
 * The elimination of one step over all rows, with the pivot rows of the
 * next column found in the same pass (w and jj constants where it counts,
 * so that the row's loop unrolls without a branch).
 */
static inline __attribute__((always_inline)) gj_ivec grp_elim(struct group *g, size_t k0, size_t w,
                                                              size_t jj, gj_ivec r, const gj_vec *p)
{
    size_t n = g->n, ld = g->ld;
    const gj_ivec *used = g->used;
    gj_vec *row = gv(g, 0, k0);
    gj_ivec best = {0};
    for (size_t i = 0; i < n; i++, row += ld) {
        grp_row(row, w, jj, r != (int64_t)i, p);
        if (jj + 1 < w)
            best = imax(best, grp_key(row[jj + 1], used[i], i));
    }
    return grp_key_row(best);
}

/*
 * One Gauss-Jordan step on column j of the panel [k0, k1), pivoting on
 * rows r, as gj_kern_tmpl.h's eliminate() with rows as vectors. Returns
 * the pivot rows of column j + 1; anything if j + 1 = k1.
 */
static gj_ivec grp_step(struct group *g, size_t k0, size_t k1, size_t j, gj_ivec r)
{
    size_t w = k1 - k0, jj = j - k0;
    gj_vec p[GJ_GLEAF] = {0};
    g->piv[j] = r;
    for (int l = 0; l < GJ_VW; l++)
        g->used[r[l]][l] = -1;
    const gj_vec *rows[GJ_VW];
    for (int l = 0; l < GJ_VW; l++)
        rows[l] = gv(g, (size_t)r[l], k0);
    for (size_t c = 0; c < w; c++)
        p[c] = diag(rows, c);
    g->bad |= ~(vec_abs(p[jj]) > g->tol);
    gj_vec inv = 1.0 / p[jj];
    for (size_t c = 0; c < w; c++)
        p[c] *= inv;
    p[jj] = inv;
    _Static_assert(GJ_GLEAF == 4, "one case per column of a leaf");
    if (w == GJ_GLEAF)
        switch (jj) {
        case 0:
            return grp_elim(g, k0, GJ_GLEAF, 0, r, p);
        case 1:
            return grp_elim(g, k0, GJ_GLEAF, 1, r, p);
        case 2:
            return grp_elim(g, k0, GJ_GLEAF, 2, r, p);
        default:
            return grp_elim(g, k0, GJ_GLEAF, 3, r, p);
        }
    return grp_elim(g, k0, w, jj, r, p);
}

/*
 * B (kk × w, GJ_GNC-column slivers) = the panel's pivot rows of columns
 * [j0, j0 + w), lane by lane. Each line of the group holds one column of
 * a row for every lane, and each lane wants it at a different k: walking
 * a column down all kk rows before the next reads each line into L1 once,
 * where going along the rows would come back for it once per lane.
 */
static void grp_pack(struct group *g, size_t k0, size_t kk, size_t j0, size_t w)
{
    const gj_vec **rows = g->prow;
    for (size_t k = 0; k < kk; k++)
        for (int l = 0; l < GJ_VW; l++)
            rows[k * GJ_VW + l] = gv(g, (size_t)g->piv[k0 + k][l], j0);
    for (size_t c0 = 0; c0 < w; c0 += GJ_GNC) {
        size_t nc = w - c0 < GJ_GNC ? w - c0 : GJ_GNC;
        for (size_t c = c0; c < c0 + nc; c++) {
            gj_vec *dst = g->bp + c0 * kk + c - c0;
            for (size_t k = 0; k < kk; k++)
                dst[k * nc] = diag(rows + k * GJ_VW, c);
        }
    }
}

/*
 * Rows [i0, i0 + GJ_GMR), columns [j0, j0 + nc) of the group: (the old
 * value where keep says so, else 0) + panel columns [k0, k0 + kk) · b.
 */
static inline __attribute__((always_inline)) void
grp_tile(struct group *g, size_t i0, size_t j0, size_t k0, size_t kk, const gj_vec *b, int nc)
{
    gj_vec acc[GJ_GMR][GJ_GNC];
    const gj_vec *a[GJ_GMR];
#pragma GCC unroll 8
    for (int i = 0; i < GJ_GMR; i++) {
        a[i] = gv(g, i0 + i, k0);
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++)
            acc[i][c] = splat(0.0);
    }
    for (size_t k = 0; k < kk; k++, b += nc) {
        gj_vec bv[GJ_GNC];
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) {
            bv[c] = b[c];
#if GJ_VW == 8 && defined(__x86_64__)
            /* Keeps B in registers: GCC would fold it into every FMA,
             * GJ_GMR loads per vector instead of one. */
            __asm__("" : "+v"(bv[c]));
#endif
        }
#pragma GCC unroll 8
        for (int i = 0; i < GJ_GMR; i++) {
            gj_vec av = a[i][k];
#pragma GCC unroll 8
            for (int c = 0; c < nc; c++)
                acc[i][c] += av * bv[c];
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < GJ_GMR; i++) {
        gj_vec *cp = gv(g, i0 + i, j0);
        gj_ivec keep = g->keep[i0 + i];
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++)
            cp[c] = (gj_vec)sel(keep, (gj_ivec)(cp[c] + acc[i][c]), (gj_ivec)acc[i][c]);
    }
}

/* grp_tile() with nc a constant, so that its loops unroll. */
static void grp_tile_any(struct group *g, size_t i0, size_t j0, size_t k0, size_t kk,
                         const gj_vec *b, size_t nc)
{
    switch (nc) {
#if GJ_GNC > 4
    case 6:
        grp_tile(g, i0, j0, k0, kk, b, 6);
        return;
    case 5:
        grp_tile(g, i0, j0, k0, kk, b, 5);
        return;
#endif
    case 4:
        grp_tile(g, i0, j0, k0, kk, b, 4);
        return;
    case 3:
        grp_tile(g, i0, j0, k0, kk, b, 3);
        return;
    case 2:
        grp_tile(g, i0, j0, k0, kk, b, 2);
        return;
    default:
        grp_tile(g, i0, j0, k0, kk, b, 1);
        return;
    }
}

/*
 * Applies panel [k0, k1) to columns [j0, j1): each lane's pivot rows of
 * the panel are gathered into B and count as zero in the old values, then
 * A[:, j] = A[:, j] + A[:, K] · B, as in gj.c.
 */
static void grp_update(struct group *g, size_t k0, size_t k1, size_t j0, size_t j1)
{
    size_t kk = k1 - k0, w = j1 - j0;
    if (j0 >= j1)
        return;
    for (size_t i = 0; i < g->np; i++)
        g->keep[i] = (gj_ivec){0} - 1;
    for (size_t k = k0; k < k1; k++)
        for (int l = 0; l < GJ_VW; l++)
            g->keep[g->piv[k][l]][l] = 0;
    grp_pack(g, k0, kk, j0, w);
    for (size_t i0 = 0; i0 < g->np; i0 += GJ_GMR)
        for (size_t c0 = 0; c0 < w; c0 += GJ_GNC) {
            size_t nc = w - c0 < GJ_GNC ? w - c0 : GJ_GNC;
            grp_tile_any(g, i0, j0 + c0, k0, kk, g->bp + c0 * kk, nc);
        }
}

/* Factors panel [k0, k1) by halves, as factor() in gj.c. */
static void grp_factor(struct group *g, size_t k0, size_t k1)
{
    if (k1 - k0 <= GJ_GLEAF) {
        gj_ivec r = grp_pivots(g, k0);
        for (size_t j = k0; j < k1; j++)
            r = grp_step(g, k0, k1, j, r);
        return;
    }
    size_t m = k0 + grp_round((k1 - k0) / 2, GJ_GLEAF);
    grp_factor(g, k0, m);
    grp_update(g, k0, m, m, k1);
    grp_factor(g, m, k1);
    grp_update(g, m, k1, k0, m);
}

/* Row i of the group into rows, lane l's part at rows + l·n. */
static void grp_split_row(struct group *g, size_t i)
{
    size_t n = g->n, c0 = 0;
    const gj_vec *y = gv(g, i, 0);
    for (; c0 + GJ_VW <= n; c0 += GJ_VW) {
        gj_vec x[GJ_VW];
#pragma GCC unroll 8
        for (int c = 0; c < GJ_VW; c++)
            x[c] = y[c0 + c];
        transpose(x);
#pragma GCC unroll 8
        for (int l = 0; l < GJ_VW; l++)
            vec_store(g->rows + l * n + c0, x[l]);
    }
    for (; c0 < n; c0++)
        for (int l = 0; l < GJ_VW; l++)
            g->rows[l * n + c0] = y[c0][l];
}

/*
 * Writes each ok lane's inverse back. Lane l pivoted on row r_k at step k,
 * which leaves A⁻¹[j][r_k] at row r_j, column k: each row of the group is
 * split into its lanes once, and each lane's part is scattered within one
 * output row.
 */
static void grp_store(struct group *g, double *const *a, const int *st)
{
    size_t n = g->n;
    for (size_t k = 0; k < n; k++)
        for (int l = 0; l < GJ_VW; l++) {
            g->rk[l * n + k] = (uint32_t)g->piv[k][l];
            g->jinv[l * n + g->piv[k][l]] = (uint32_t)k;
        }
    for (size_t i = 0; i < n; i++) {
        grp_split_row(g, i);
        for (int l = 0; l < GJ_VW; l++) {
            if (a[l] == NULL || st[l] != GJ_OK)
                continue;
            /* The output left the caches long ago: ask for the next row's now. */
            if (i + 1 < n)
                for (size_t b = 0; b < n * sizeof(double); b += 64)
                    __builtin_prefetch((char *)(a[l] + g->jinv[l * n + i + 1] * n) + b, 1);
            double *o = a[l] + g->jinv[l * n + i] * n;
            const uint32_t *rk = g->rk + l * n;
            const double *y = g->rows + l * n;
            for (size_t k = 0; k < n; k++)
                o[rk[k]] = y[k];
        }
    }
}

/* See the table. */
static void group(double *const *a, size_t n, void *ws, int *st)
{
    struct group g;
    grp_carve(&g, ws, n);
    grp_load(&g, a);
    g.bad = (gj_ivec){0};
    for (size_t k0 = 0; k0 < n; k0 += GJ_GNB) {
        size_t k1 = k0 + GJ_GNB < n ? k0 + GJ_GNB : n;
        grp_factor(&g, k0, k1);
        grp_update(&g, k0, k1, 0, k0);
        grp_update(&g, k0, k1, k1, n);
    }
    for (int l = 0; l < GJ_VW; l++)
        st[l] = g.inval[l] ? GJ_INVALID : g.bad[l] ? GJ_SINGULAR : GJ_OK;
    grp_store(&g, a, st);
}
