/*
 * gj — blocked Gauss-Jordan inversion.
 *
 * The design is simple: the matrix is swept by panels of nb columns. A panel
 * K is factored (partial pivoting over its n rows, the Gauss-Jordan
 * transform of its own columns), then every other column j gets one rank-nb
 * update, a matrix multiply:
 *
 *     A[:, j] = (A[:, j] with the pivot rows P zeroed) + A[:, K] · A_old[P, j]
 *
 * where A[:, K] now holds the panel's part of the inverse. The same identity
 * splits a panel into halves recursively, so the panel's own work is also
 * done by the multiply, down to a leaf of GJ_LEAF columns that the unblocked
 * kernel does on a contiguous copy. Row interchanges are applied to the
 * other columns lazily, just before their update, and the column
 * interchanges they imply on the inverse are undone at the end.
 *
 * The multiply is BLIS-shaped: the panel A[:, K] is packed once into
 * mr-row slivers, each lane packs the nb×NCB block of B it updates, and a
 * register tile (gj_kern.h) runs over sliver pairs, A's sliver staying in L1
 * and B's block in L2. With several lanes, the first lane of each step takes
 * the next panel: its columns are updated first and it is factored and
 * packed while the other lanes update the rest (look-ahead). The rest is
 * shared out by owner (each lane keeps the same columns at every step, so
 * they stay in its caches) with stealing from the back of a share. Every
 * column block's arithmetic is the same whichever lane does it, so results
 * do not depend on the lane count. The short panel, if any, is the first,
 * and it is factored while the other lanes take the 1-norm (start()).
 *
 * Matrices up to GJ_SMALL_N skip all of this: the kernel table's small path
 * inverts them on a stack copy (gj_kern_tmpl.h). In a batch, items of one
 * order up to GJ_GROUP_N_MAX go through the grouped kernel instead, a
 * vector's worth at a time, one matrix per lane (gj_group_tmpl.h).
 */
#include "convoy/gj.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gj_kern.h"

enum {
    GJ_NB = 192,       /* panel width cap: the multiply's depth */
    GJ_NCB = 240,      /* columns of B per block: nb×NCB doubles fill half of L2 */
    GJ_NCB_MIN = 48,   /* smallest work item, the last ones of a step */
    GJ_LEAF = 32,      /* panel width done by the unblocked kernel */
    GJ_RB = 256,       /* rows of A·X formed at once by the residual */
    GJ_FB = 64,        /* rows per work item of the last step: 1 MiB at n = 2048 */
    GJ_NORM_PARTS = 8, /* row blocks of the 1-norm: work items of the start */
    GJ_ALIGN = 64,     /* one cache line, one zmm */
};

/* Scratch for inverting matrices up to ncap on lanes lanes; one block. */
struct gj_ws {
    size_t ncap;
    unsigned lanes;
    size_t *piv;              /* ncap: pivot row of each step */
    size_t *src;              /* ncap: column order that undoes the interchanges */
    double *colsum;           /* ncap: column sums for 1-norms */
    double *wp[2];            /* packed panels, current and look-ahead */
    double *wr;               /* packed half panels inside the recursion */
    double *leafp;            /* ncap × GJ_LEAF: a leaf panel, contiguous */
    double *rblk;             /* GJ_RB × ncap: rows of A·X; the 1-norm's partial sums */
    double *orig;             /* ncap²: A kept for the residual (only then) */
    double *gorig;            /* vw × gcap²: a group's inputs, likewise */
    void *grp;                /* the grouped kernel's workspace for gcap, or NULL */
    double *bp[GJ_LANES_MAX]; /* per lane: packed B block */
    void *mem;
    size_t mapped; /* mem's length when it is a mapping of its own, else 0 */
};

/*
 * A lane's share of a step's columns, [front, back) in span coordinates
 * (front in the low half of the word, back in the high half): its owner
 * claims from the front, other lanes steal from the back. One cache line.
 */
struct gj_share {
    _Atomic uint64_t fb;
    char pad[GJ_ALIGN - sizeof(uint64_t)];
};

/* One inversion in progress, and the parallel step it is in. */
struct gj_run {
    const struct gj_kern *k;
    struct gj_ws *ws;
    double *a;
    size_t n;
    size_t nb;          /* panel width */
    double tol;         /* pivots at or below it are singular */
    pool_t *pool;       /* NULL: one lane */
    unsigned lanes;     /* lanes to run a step on */
    size_t c0, c1;      /* the pivot block K = [c0, c1) */
    size_t c2;          /* the look-ahead panel is [c1, c2) (last_step() has none) */
    int cur;            /* wp[cur] holds K packed */
    size_t span;        /* columns this step updates: [0, c0), then [c2, n) */
    unsigned nshare;    /* lanes the span is shared out to */
    size_t nwork;       /* work items of this step, at most */
    atomic_size_t next; /* work items claimed (those that count them) */
    atomic_int ahead;   /* the look-ahead panel is not claimed yet */
    atomic_int bad;     /* a panel was singular */
    double pmin;        /* smallest pivot magnitude so far */
    struct gj_share share[GJ_LANES_MAX];
};

static _Atomic(const struct gj_kern *) active;

const char *gj_isa_str(enum gj_isa isa)
{
    switch (isa) {
    case GJ_ISA_AUTO:
        return "auto";
    case GJ_ISA_C:
        return "c";
    case GJ_ISA_AVX2:
        return "avx2";
    case GJ_ISA_AVX512:
        return "avx512";
    default:
        return "?";
    }
}

/* The table for isa, or NULL when this CPU or build cannot run it. */
static const struct gj_kern *kern_for(enum gj_isa isa)
{
    switch (isa) {
    case GJ_ISA_C:
        return &gj_kern_c;
#if defined(__x86_64__)
    case GJ_ISA_AVX2:
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            return &gj_kern_avx2;
        return NULL;
    case GJ_ISA_AVX512:
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
            return &gj_kern_avx512;
        return NULL;
#endif
    default:
        return NULL;
    }
}

static const struct gj_kern *kern_best(void)
{
    static const enum gj_isa order[] = {GJ_ISA_AVX512, GJ_ISA_AVX2, GJ_ISA_C};
    const char *env = getenv("CONVOY_GJ_ISA");
    for (size_t i = 0; env != NULL && i < sizeof order / sizeof order[0]; i++) {
        if (strcmp(env, gj_isa_str(order[i])) == 0 && kern_for(order[i]) != NULL)
            return kern_for(order[i]);
    }
    for (size_t i = 0;; i++) {
        if (kern_for(order[i]) != NULL)
            return kern_for(order[i]);
    }
}

static const struct gj_kern *kern(void)
{
    const struct gj_kern *k = atomic_load(&active);
    if (k == NULL) {
        k = kern_best();
        atomic_store(&active, k);
    }
    return k;
}

int gj_set_isa(enum gj_isa isa)
{
    if (isa == GJ_ISA_AUTO) {
        atomic_store(&active, kern_best());
        return 0;
    }
    if (isa != GJ_ISA_C && isa != GJ_ISA_AVX2 && isa != GJ_ISA_AVX512)
        return -EINVAL;
    const struct gj_kern *k = kern_for(isa);
    if (k == NULL)
        return -ENOTSUP;
    atomic_store(&active, k);
    return 0;
}

enum gj_isa gj_active_isa(void)
{
    return kern()->isa;
}

/* ---- workspace ---------------------------------------------------------- */

static size_t round_up(size_t x, size_t m)
{
    return (x + m - 1) / m * m;
}

static size_t min_sz(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Rows of a packed panel: n rounded up to every tile height. */
static size_t rows_padded(size_t n)
{
    return round_up(n, GJ_MR_MAX);
}

/*
 * Lays the buffers out in one block (or, with base NULL, only measures it).
 * Every buffer starts on a cache line. gcap: the largest order the grouped
 * kernel will see (0: none).
 */
static size_t ws_layout(struct gj_ws *ws, char *base, size_t n, unsigned lanes, bool resid,
                        size_t gcap)
{
    const struct gj_kern *k = kern();
    size_t nb = min_sz(GJ_NB, round_up(n, GJ_LEAF));
    size_t np = rows_padded(n);
    size_t off = 0;
#define CARVE(field, count)                                                                        \
    do {                                                                                           \
        ws->field = base ? (void *)(base + off) : NULL;                                            \
        off += round_up((count) * sizeof(*ws->field), GJ_ALIGN);                                   \
    } while (0)
    CARVE(piv, n);
    CARVE(src, n);
    CARVE(colsum, n);
    CARVE(wp[0], np * nb);
    CARVE(wp[1], np * nb);
    CARVE(wr, np * nb);
    CARVE(leafp, n * GJ_LEAF);
    CARVE(rblk, (size_t)GJ_RB * n);
    for (unsigned l = 0; l < lanes; l++) /* also a row's worth for the last step */
        CARVE(bp[l], nb * GJ_NCB > n ? (size_t)nb * GJ_NCB : n);
    CARVE(orig, resid ? n * n : 0);
    CARVE(gorig, resid ? k->vw * gcap * gcap : 0);
    ws->grp = NULL;
    if (gcap > 0) {
        ws->grp = base ? (void *)(base + off) : NULL;
        off += k->group_size(gcap);
    }
#undef CARVE
    return off;
}

/*
 * Workspaces from GJ_WS_HUGE up are mappings of their own with transparent
 * huge pages asked for: a fresh 10 MiB workspace (n = 2048) otherwise takes
 * 2,500 page faults on first touch, a millisecond before the first panel
 * that no other lane can share, and its packed panels are streamed through
 * the multiply, where 4 KiB pages cost TLB misses.
 */
#define GJ_WS_HUGE   (4u << 20)
#define GJ_HUGE_PAGE (2u << 20)

/*
 * Each thread keeps its last mapped workspace (up to GJ_WS_KEEP) for its
 * next call. Inverting order 2048 again and again otherwise maps 10 MiB
 * and takes its page faults on every call: a millisecond of zeroing, and
 * on two lanes whichever touches a page first pays for it, which on these
 * hosts sometimes costs the second vCPU 5 ms in the first step. Freed at
 * thread exit.
 */
#define GJ_WS_KEEP (64u << 20)

struct ws_kept {
    void *mem;
    size_t len; /* 0: none */
};

static _Thread_local struct ws_kept kept;
static pthread_key_t kept_key; /* its destructor unmaps a thread's kept one */
static bool kept_key_ok;
static pthread_once_t kept_once = PTHREAD_ONCE_INIT;

static void kept_free(void *arg)
{
    struct ws_kept *k = arg;
    if (k->len > 0)
        munmap(k->mem, k->len);
    k->len = 0;
}

static void kept_key_init(void)
{
    kept_key_ok = pthread_key_create(&kept_key, kept_free) == 0;
}

static void *ws_map(size_t size, size_t *mapped)
{
    if (kept.len >= size) {
        *mapped = kept.len;
        kept.len = 0;
        return kept.mem;
    }

    size_t len = (size + GJ_HUGE_PAGE - 1) / GJ_HUGE_PAGE * GJ_HUGE_PAGE + GJ_HUGE_PAGE;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    /* Keep one huge-page-aligned stretch; give back the ends. */
    size_t head = (GJ_HUGE_PAGE - (uintptr_t)p % GJ_HUGE_PAGE) % GJ_HUGE_PAGE;
    size_t body = len - GJ_HUGE_PAGE;
    if (head > 0)
        munmap(p, head);
    if (len - head - body > 0)
        munmap(p + head + body, len - head - body);
    (void)madvise(p + head, body, MADV_HUGEPAGE); /* advice: the kernel may not have any */
    *mapped = body;
    return p + head;
}

/*
 * Returns 0, or -ENOMEM (also when n² doubles would not fit a size_t).
 * gcap ≤ GJ_GROUP_N_MAX: see ws_layout().
 */
static int ws_init(struct gj_ws *ws, size_t n, unsigned lanes, bool resid, size_t gcap)
{
    if (n == 0 || n > SIZE_MAX / 4 / sizeof(double) / n)
        return -ENOMEM;
    size_t size = ws_layout(ws, NULL, n, lanes, resid, gcap);
    void *mem = NULL;
    ws->mapped = 0;
    if (size >= GJ_WS_HUGE)
        mem = ws_map(size, &ws->mapped);
    else if (posix_memalign(&mem, GJ_ALIGN, size) != 0)
        mem = NULL;
    if (mem == NULL)
        return -ENOMEM;
    ws_layout(ws, mem, n, lanes, resid, gcap);
    ws->mem = mem;
    ws->ncap = n;
    ws->lanes = lanes;
    return 0;
}

/* Keeps the mapping mem (len bytes) for the thread's next call, or unmaps it. */
static void ws_unmap(void *mem, size_t len)
{
    pthread_once(&kept_once, kept_key_init);
    if (len > GJ_WS_KEEP || len <= kept.len || !kept_key_ok ||
        pthread_setspecific(kept_key, &kept) != 0) {
        munmap(mem, len);
        return;
    }
    if (kept.len > 0)
        munmap(kept.mem, kept.len); /* the larger one stays */
    kept = (struct ws_kept){mem, len};
}

static void ws_free(struct gj_ws *ws)
{
    if (ws->mapped > 0)
        ws_unmap(ws->mem, ws->mapped);
    else
        free(ws->mem);
    ws->mem = NULL;
}

/* ---- packing and the multiply ------------------------------------------- */

/* Row p (of kk) of a packed B block: cols values of src into its nr-column slivers, zero-padded. */
static void pack_b_row(const struct gj_kern *k, size_t p, size_t kk, size_t cols, const double *src,
                       double *dst)
{
    size_t nr = k->nr;
    for (size_t j0 = 0; j0 < cols; j0 += nr, dst += nr * kk) {
        size_t w = min_sz(nr, cols - j0);
        memcpy(dst + p * nr, src + j0, w * sizeof(double));
        memset(dst + p * nr + w, 0, (nr - w) * sizeof(double));
    }
}

/* kk×cols block of b (row stride ldb) into nr-column slivers, zero-padded. */
static void pack_b(const struct gj_kern *k, size_t kk, size_t cols, const double *b, size_t ldb,
                   double *dst)
{
    for (size_t p = 0; p < kk; p++)
        pack_b_row(k, p, kk, cols, b + p * ldb, dst);
}

/* c (rows×cols, row stride ldc) += packed A (rows×kk) · packed B (kk×cols). */
static void gemm_packed(const struct gj_kern *k, size_t rows, size_t cols, size_t kk,
                        const double *ap, const double *bp, double *c, size_t ldc)
{
    size_t mr = k->mr, nr = k->nr;
    for (size_t i0 = 0; i0 < rows; i0 += mr) {
        const double *as = ap + i0 * kk;
        size_t h = min_sz(mr, rows - i0);
        for (size_t j0 = 0; j0 < cols; j0 += nr) {
            size_t w = min_sz(nr, cols - j0);
            double *ct = c + i0 * ldc + j0;
            if (h == mr && w == nr) {
                k->tile(kk, as, bp + j0 * kk, ct, ldc);
                continue;
            }
            double tmp[GJ_MR_MAX * GJ_NR_MAX] = {0};
            k->tile(kk, as, bp + j0 * kk, tmp, nr);
            for (size_t i = 0; i < h; i++)
                for (size_t j = 0; j < w; j++)
                    ct[i * ldc + j] += tmp[i * nr + j];
        }
    }
}

/* ---- Gauss-Jordan ------------------------------------------------------- */

static void pack_panel(struct gj_run *r, size_t k0, size_t k1, double *dst)
{
    r->k->pack_a(r->n, k1 - k0, r->a + k0, r->n, dst);
}

/*
 * Takes the pivot rows of block [k0, k1) out of columns [j0, j1): one pass
 * per pivot row, the interchange (row t is final once its own is done,
 * later ones only touch rows below it), packing its old values into bp as
 * B of the update, and zeroing it.
 */
static void take_pivot_rows(struct gj_run *r, size_t k0, size_t k1, size_t j0, size_t j1,
                            double *bp)
{
    size_t n = r->n, w = j1 - j0, kk = k1 - k0;
    const size_t *piv = r->ws->piv;
    for (size_t t = k0; t < k1; t++) {
        double *x = r->a + t * n + j0, *y = r->a + piv[t] * n + j0;
        pack_b_row(r->k, t - k0, kk, w, y, bp);
        if (y != x)
            memcpy(y, x, w * sizeof(double));
        memset(x, 0, w * sizeof(double));
    }
}

/*
 * Applies pivot block [k0, k1) (packed in wpk) to columns [j0, j1), at most
 * GJ_NCB of them: its row interchanges, then the rank-(k1-k0) update
 * described at the top.
 */
static void update_block(struct gj_run *r, unsigned lane, size_t k0, size_t k1, const double *wpk,
                         size_t j0, size_t j1)
{
    double *bp = r->ws->bp[lane];
    take_pivot_rows(r, k0, k1, j0, j1, bp);
    gemm_packed(r->k, r->n, j1 - j0, k1 - k0, wpk, bp, r->a + j0, r->n);
}

/* update_block() over any column range, one B block at a time. */
static void update_cols(struct gj_run *r, unsigned lane, size_t k0, size_t k1, const double *wpk,
                        size_t j0, size_t j1)
{
    for (; j0 < j1; j0 += GJ_NCB)
        update_block(r, lane, k0, k1, wpk, j0, min_sz(j0 + GJ_NCB, j1));
}

/* Unblocked kernel on columns [k0, k1) through a contiguous copy. */
static int factor_leaf(struct gj_run *r, size_t k0, size_t k1)
{
    size_t n = r->n, w = k1 - k0;
    double *p = r->ws->leafp;
    for (size_t i = 0; i < n; i++)
        memcpy(p + i * w, r->a + i * n + k0, w * sizeof(double));
    double mag = r->k->leaf(p, n, w, k0, r->ws->piv + k0, r->tol);
    if (!(mag > r->tol))
        return -1;
    r->pmin = mag < r->pmin ? mag : r->pmin;
    for (size_t i = 0; i < n; i++)
        memcpy(r->a + i * n + k0, p + i * w, w * sizeof(double));
    return 0;
}

/*
 * Factors panel [k0, k1) over all n rows: each half is factored and then
 * updates the other half, so most of the work is the multiply. Returns 0,
 * or -1 on a singular pivot.
 */
static int factor(struct gj_run *r, unsigned lane, size_t k0, size_t k1)
{
    if (k1 - k0 <= GJ_LEAF)
        return factor_leaf(r, k0, k1);
    size_t m = k0 + round_up((k1 - k0) / 2, GJ_LEAF);
    if (factor(r, lane, k0, m) < 0)
        return -1;
    pack_panel(r, k0, m, r->ws->wr);
    update_cols(r, lane, k0, m, r->ws->wr, m, k1);
    if (factor(r, lane, m, k1) < 0)
        return -1;
    pack_panel(r, m, k1, r->ws->wr);
    update_cols(r, lane, m, k1, r->ws->wr, k0, m);
    return 0;
}

/* Work item 0 with a next panel: update it, factor it, pack it. */
static void look_ahead(struct gj_run *r, unsigned lane)
{
    update_cols(r, lane, r->c0, r->c1, r->ws->wp[r->cur], r->c1, r->c2);
    if (factor(r, lane, r->c1, r->c2) < 0) {
        atomic_store(&r->bad, 1);
        return;
    }
    pack_panel(r, r->c1, r->c2, r->ws->wp[!r->cur]);
}

/* Position of column j in the span (columns of K and the look-ahead panel removed). */
static size_t span_pos(const struct gj_run *r, size_t j)
{
    return j <= r->c0 ? j : j < r->c2 ? r->c0 : j - (r->c2 - r->c0);
}

/*
 * Shares the span out: lane l owns the columns of [l·n/L, (l+1)·n/L), the
 * same ones at every step, so that they stay in that lane's caches (two
 * vCPUs need not share a last-level cache); stealing evens out the rest.
 */
static void share_span(struct gj_run *r, unsigned lanes)
{
    r->nshare = lanes;
    for (unsigned l = 0; l < lanes; l++) {
        size_t lo = span_pos(r, round_up(r->n * l / lanes, GJ_NR_MAX));
        size_t hi =
            l + 1 == lanes ? r->span : span_pos(r, round_up(r->n * (l + 1) / lanes, GJ_NR_MAX));
        atomic_store(&r->share[l].fb, (uint64_t)hi << 32 | lo);
    }
}

/* Columns to take from a share of rem: a part, in whole tiles, within [GJ_NCB_MIN, GJ_NCB]. */
static size_t chunk(size_t rem)
{
    size_t len = rem / 4;
    len = len < GJ_NCB_MIN ? GJ_NCB_MIN : len > GJ_NCB ? GJ_NCB : len / GJ_NR_MAX * GJ_NR_MAX;
    return min_sz(len, rem);
}

/*
 * Takes columns from the front (own share) or the back (another's) of share
 * l, not across span position cut: there the span jumps over the panels,
 * and a piece on each side that is not whole tiles would cost a partial
 * tile per sliver.
 */
static bool take(struct gj_share *sh, bool front, size_t cut, size_t *v0, size_t *v1)
{
    uint64_t fb = atomic_load(&sh->fb);
    for (;;) {
        size_t f = (uint32_t)fb, b = fb >> 32;
        if (f >= b)
            return false;
        size_t len = chunk(b - f);
        if (front && f < cut && cut < f + len)
            len = cut - f;
        else if (!front && b - len < cut && cut < b)
            len = b - cut;
        *v0 = front ? f : b - len;
        *v1 = *v0 + len;
        uint64_t nfb = front ? (uint64_t)b << 32 | (f + len) : (uint64_t)(b - len) << 32 | f;
        if (atomic_compare_exchange_weak(&sh->fb, &fb, nfb))
            return true;
    }
}

/*
 * Claims the next columns [*v0, *v1) for lane: from its own share while it
 * lasts, then from the others'. Returns false when nothing is left.
 */
static bool claim(struct gj_run *r, unsigned lane, size_t *v0, size_t *v1)
{
    for (unsigned k = 0; k < r->nshare; k++) {
        unsigned l = (lane + k) % r->nshare;
        if (take(&r->share[l], k == 0, r->c0, v0, v1))
            return true;
    }
    return false;
}

/* Updates span columns [v0, v1): those left of K, then those right of the look-ahead panel. */
static void update_span(struct gj_run *r, unsigned lane, size_t v0, size_t v1)
{
    const double *wpk = r->ws->wp[r->cur];
    if (v0 < r->c0)
        update_cols(r, lane, r->c0, r->c1, wpk, v0, min_sz(v1, r->c0));
    if (v1 > r->c0) {
        size_t from = v0 > r->c0 ? v0 - r->c0 : 0;
        update_cols(r, lane, r->c0, r->c1, wpk, r->c2 + from, r->c2 + (v1 - r->c0));
    }
}

/* Whoever comes first takes the look-ahead; then all claim columns. */
static void step_lane(void *arg, size_t lane)
{
    struct gj_run *r = arg;
    size_t v0, v1;
    if (atomic_exchange(&r->ahead, 0))
        look_ahead(r, (unsigned)lane);
    while (claim(r, (unsigned)lane, &v0, &v1))
        update_span(r, (unsigned)lane, v0, v1);
}

/* The lanes a step of nwork items runs on. */
static unsigned step_lanes(const struct gj_run *r)
{
    return r->pool == NULL ? 1 : (unsigned)min_sz(r->lanes, r->nwork);
}

/* Runs fn on the step's lanes; they take its nwork items. */
static void run_step(struct gj_run *r, void (*fn)(void *, size_t))
{
    atomic_store(&r->next, 0);
    unsigned lanes = step_lanes(r);
    if (lanes <= 1) {
        fn(r, 0);
        return;
    }
    /* A failure to queue helpers leaves every item to the caller: still done. */
    (void)pool_parallel(r->pool, lanes, fn, r);
}

/*
 * The column order that undoing the interchanges, last step first, gives:
 * row[c] takes row[src[c]]. Computed once, so that each row is one gather
 * instead of n dependent swaps.
 */
static void unswap_order(struct gj_run *r)
{
    const size_t *piv = r->ws->piv;
    size_t *src = r->ws->src;
    for (size_t c = 0; c < r->n; c++)
        src[c] = c;
    for (size_t c = r->n; c-- > 0;) {
        size_t v = src[c];
        src[c] = src[piv[c]];
        src[piv[c]] = v;
    }
}

/* Undoes the column interchanges on rows [i0, i1), through tmp (n doubles). */
static void unswap_rows(struct gj_run *r, size_t i0, size_t i1, double *tmp)
{
    const size_t *src = r->ws->src;
    for (size_t i = i0; i < i1; i++) {
        double *row = r->a + i * r->n;
        for (size_t c = 0; c < r->n; c++)
            tmp[c] = row[src[c]];
        memcpy(row, tmp, r->n * sizeof(double));
    }
}

/*
 * Item w of the last step's first part: the pivot rows taken out of span
 * block w, packed into wr at that block's place in B for the whole span.
 */
static void last_rows_lane(void *arg, size_t lane)
{
    struct gj_run *r = arg;
    size_t w, kk = r->n - r->c0;
    (void)lane;
    while ((w = atomic_fetch_add(&r->next, 1)) < r->nwork) {
        size_t j0 = w * GJ_NCB;
        take_pivot_rows(r, r->c0, r->n, j0, min_sz(j0 + GJ_NCB, r->c0), r->ws->wr + j0 * kk);
    }
}

/*
 * Item w of its second part: rows [w·GJ_FB, (w+1)·GJ_FB) updated across the
 * span, then their column interchanges undone while they are in cache
 * (through the lane's B block, idle now).
 */
static void last_update_lane(void *arg, size_t lane)
{
    struct gj_run *r = arg;
    size_t w, n = r->n, kk = n - r->c0;
    const double *ap = r->ws->wp[r->cur];
    while ((w = atomic_fetch_add(&r->next, 1)) < r->nwork) {
        size_t i0 = w * GJ_FB, i1 = min_sz(i0 + GJ_FB, n);
        for (size_t j0 = 0; j0 < r->c0; j0 += GJ_NCB)
            gemm_packed(r->k, i1 - i0, min_sz(GJ_NCB, r->c0 - j0), kk, ap + i0 * kk,
                        r->ws->wr + j0 * kk, r->a + i0 * n + j0, n);
        unswap_rows(r, i0, i1, r->ws->bp[lane]);
    }
}

/*
 * The last step, panel [c0, n), which has no next panel: its update is
 * done by rows, so that each block of rows has its column interchanges
 * undone straight after, in cache, instead of in one more pass through
 * the whole matrix from memory (3 % of a one-thread inversion at n = 2048).
 * Any block of rows may hold pivot rows, so B is first packed for the whole
 * span (into wr, idle since the last factorisation: nb × n doubles).
 */
static void last_step(struct gj_run *r)
{
    unswap_order(r);
    r->nwork = (r->c0 + GJ_NCB - 1) / GJ_NCB;
    run_step(r, last_rows_lane);
    r->nwork = (r->n + GJ_FB - 1) / GJ_FB;
    run_step(r, last_update_lane);
}

/* The panel width for order n: depends on n only, so lanes agree bit for bit. */
static size_t panel_width(size_t n)
{
    if (n >= 4 * GJ_NB)
        return GJ_NB;
    return round_up((n + 3) / 4, GJ_LEAF);
}

/*
 * Where the panel starting at c0 ends. The short panel, when nb does not
 * divide n, comes first: the first panel is factored before any lane has
 * anything else to do, so a narrow one shortens the serial start; every
 * later one is factored under the update of the step before. The work
 * over all panels is the same either way.
 */
static size_t panel_end(const struct gj_run *r, size_t c0)
{
    if (c0 >= r->n)
        return r->n;
    if (c0 == 0)
        return r->n - (r->n - 1) / r->nb * r->nb;
    return c0 + r->nb;
}

/* The largest of n column sums, or NaN when one is not finite. */
static double col_max(const double *colsum, size_t n)
{
    double big = 0.0;
    for (size_t j = 0; j < n; j++) {
        if (!isfinite(colsum[j]))
            return NAN;
        big = colsum[j] > big ? colsum[j] : big;
    }
    return big;
}

/* ‖a‖₁ (largest column sum), or NaN when a holds a NaN or an infinity. */
static double norm1(const double *a, size_t n, double *colsum)
{
    kern()->col_sums(a, n, n, n, colsum);
    return col_max(colsum, n);
}

/*
 * Column sums of row block p of the matrix into row p of rblk: those of
 * the first panel (c1 columns) from panel, row stride ldp (the matrix, or
 * the copy kept while the panel is factored), the others from the matrix.
 */
static void norm_part(struct gj_run *r, size_t p, const double *panel, size_t ldp)
{
    size_t n = r->n, c1 = panel_end(r, 0);
    size_t i0 = n * p / GJ_NORM_PARTS, i1 = n * (p + 1) / GJ_NORM_PARTS;
    double *sum = r->ws->rblk + p * n;
    if (panel == r->a) {
        r->k->col_sums(r->a + i0 * n, i1 - i0, n, n, sum); /* whole rows: one stream */
        return;
    }
    r->k->col_sums(panel + i0 * ldp, i1 - i0, c1, ldp, sum);
    r->k->col_sums(r->a + i0 * n + c1, i1 - i0, n - c1, n, sum + c1);
}

/*
 * ‖A‖₁ from the parts, added in order: the same sums on any lanes. NaN
 * when A holds NaN or Inf.
 */
static double norm_sum(struct gj_run *r)
{
    size_t n = r->n;
    double *sum = r->ws->colsum;
    const double *part = r->ws->rblk;
    memcpy(sum, part, n * sizeof(double));
    for (size_t p = 1; p < GJ_NORM_PARTS; p++)
        for (size_t j = 0; j < n; j++)
            sum[j] += part[p * n + j];
    return col_max(sum, n);
}

/* Factors the first panel and packs it into wp[0]; 0, or -1 when singular. */
static int first_panel(struct gj_run *r, unsigned lane)
{
    size_t c1 = panel_end(r, 0);
    if (factor(r, lane, 0, c1) < 0)
        return -1;
    pack_panel(r, 0, c1, r->ws->wp[0]);
    return 0;
}

/*
 * Item 0 of the start is the first panel, the others the parts of the
 * 1-norm, which read the panel's columns from the copy in wp[1]: the
 * matrix's are being factored meanwhile.
 */
static void start_lane(void *arg, size_t lane)
{
    struct gj_run *r = arg;
    size_t w;
    while ((w = atomic_fetch_add(&r->next, 1)) < r->nwork) {
        if (w == 0 && first_panel(r, (unsigned)lane) < 0)
            atomic_store(&r->bad, 1);
        else if (w > 0)
            norm_part(r, w - 1, r->ws->wp[1], panel_end(r, 0));
    }
}

/* Copies columns [0, c) of the matrix into buf (n×c), or back. */
static void keep_cols(struct gj_run *r, size_t c, double *buf, bool back)
{
    for (size_t i = 0; i < r->n; i++) {
        double *row = r->a + i * r->n;
        memcpy(back ? row : buf + i * c, back ? buf + i * c : row, c * sizeof(double));
    }
}

/*
 * The 1-norm (the tolerance, and the check for NaN and Inf) and the first
 * panel, which nothing else can start before. On one lane, in that order.
 * On several, side by side: the norm streams through the whole matrix
 * while the panel is factored in cache, in parts that the panel's lane
 * joins when it is done (a second vCPU woken from idle can run slowly for
 * milliseconds). The panel's columns are first copied to wp[1], idle until
 * the first look-ahead: the norm reads them there, and an input found to
 * hold NaN or Inf is given back untouched. The panel refuses only zero
 * pivots meanwhile; its smallest one is held to the tolerance afterwards.
 */
static int start(struct gj_run *r)
{
    size_t c1 = panel_end(r, 0);
    r->nwork = 1 + GJ_NORM_PARTS;
    r->pmin = INFINITY;
    atomic_store(&r->bad, 0);
    bool together = step_lanes(r) > 1;
    if (together) {
        keep_cols(r, c1, r->ws->wp[1], false);
        r->tol = 0.0;
        run_step(r, start_lane);
    } else {
        for (size_t p = 0; p < GJ_NORM_PARTS; p++)
            norm_part(r, p, r->a, r->n);
    }
    double norm = norm_sum(r);
    if (isnan(norm)) {
        if (together)
            keep_cols(r, c1, r->ws->wp[1], true);
        return GJ_INVALID;
    }
    r->tol = (double)r->n * DBL_EPSILON * norm;
    if (!together && first_panel(r, 0) < 0)
        return GJ_SINGULAR;
    return atomic_load(&r->bad) || !(r->pmin > r->tol) ? GJ_SINGULAR : GJ_OK;
}

static int invert_blocked(struct gj_run *r)
{
    size_t n = r->n;
    r->nb = panel_width(n);
    r->cur = 0;
    int st = start(r);
    if (st != GJ_OK)
        return st;
    for (r->c0 = 0;; r->c0 = r->c1, r->cur = !r->cur) {
        r->c1 = panel_end(r, r->c0);
        if (r->c1 == n)
            break;
        r->c2 = panel_end(r, r->c1);
        /* Splitting the columns differently changes no column's arithmetic. */
        r->span = r->c0 + (n - r->c2);
        atomic_store(&r->ahead, 1);
        r->nwork = 1 + (r->span + GJ_NCB_MIN - 1) / GJ_NCB_MIN;
        share_span(r, step_lanes(r));
        run_step(r, step_lane);
        if (atomic_load(&r->bad))
            return GJ_SINGULAR;
    }
    last_step(r);
    return GJ_OK;
}

/* ---- norms and the residual --------------------------------------------- */

/* Adds |δ − r| of rows [i0, i0+h) of R = A·X (in rblk) to colsum. */
static void add_identity_error(const double *rblk, size_t i0, size_t h, size_t n, double *colsum)
{
    for (size_t i = 0; i < h; i++)
        for (size_t j = 0; j < n; j++)
            colsum[j] += fabs((i0 + i == j ? 1.0 : 0.0) - rblk[i * n + j]);
}

/* rblk (h×n) = rows [i0, i0+h) of A·X, by the packed multiply. */
static void product_rows(const struct gj_kern *k, struct gj_ws *ws, const double *a,
                         const double *x, size_t n, size_t i0, size_t h)
{
    size_t kb = min_sz(GJ_NB, round_up(n, GJ_LEAF));
    memset(ws->rblk, 0, h * n * sizeof(double));
    for (size_t p0 = 0; p0 < n; p0 += kb) {
        size_t kk = min_sz(kb, n - p0);
        k->pack_a(h, kk, a + i0 * n + p0, n, ws->wp[0]);
        for (size_t j0 = 0; j0 < n; j0 += GJ_NCB) {
            size_t w = min_sz(GJ_NCB, n - j0);
            pack_b(k, kk, w, x + p0 * n + j0, n, ws->bp[0]);
            gemm_packed(k, h, w, kk, ws->wp[0], ws->bp[0], ws->rblk + j0, n);
        }
    }
}

static double residual_ws(struct gj_ws *ws, const double *a, const double *x, size_t n)
{
    const struct gj_kern *k = kern();
    double na = norm1(a, n, ws->colsum);
    double nx = norm1(x, n, ws->colsum);
    memset(ws->colsum, 0, n * sizeof(double));
    for (size_t i0 = 0; i0 < n; i0 += GJ_RB) {
        size_t h = min_sz(GJ_RB, n - i0);
        product_rows(k, ws, a, x, n, i0, h);
        add_identity_error(ws->rblk, i0, h, n, ws->colsum);
    }
    double big = 0.0;
    for (size_t j = 0; j < n; j++)
        big = ws->colsum[j] > big ? ws->colsum[j] : big;
    return big / ((double)n * na * nx * DBL_EPSILON);
}

double gj_residual(const double *a, const double *x, size_t n)
{
    struct gj_ws ws;
    if (ws_init(&ws, n, 1, false, 0) < 0)
        return -ENOMEM;
    double res = residual_ws(&ws, a, x, n);
    ws_free(&ws);
    return res;
}

/* ---- entry points ------------------------------------------------------- */

static size_t n_limit(const struct gj_opts *o)
{
    return o != NULL && o->n_max != 0 ? o->n_max : GJ_N_MAX_DEFAULT;
}

static bool shape_ok(const double *a, size_t n, const struct gj_opts *o)
{
    return a != NULL && n != 0 && n <= n_limit(o);
}

/* The blocked path: checks the input, then inverts a on the given lanes. */
static int invert_large(struct gj_ws *ws, double *a, size_t n, pool_t *pool, unsigned lanes)
{
    struct gj_run r = {.k = kern(), .ws = ws, .a = a, .n = n, .pool = pool, .lanes = lanes};
    return invert_blocked(&r);
}

/*
 * Inverts a (shape already checked) with workspace ws on the given lanes.
 * Returns a gj_status; *resid gets the residual or NaN.
 */
static int invert_one(struct gj_ws *ws, double *a, size_t n, pool_t *pool, unsigned lanes,
                      bool want_resid, double *resid)
{
    *resid = NAN;
    if (want_resid)
        memcpy(ws->orig, a, n * n * sizeof(double));
    int st = n <= GJ_SMALL_N ? kern()->small(a, n) : invert_large(ws, a, n, pool, lanes);
    if (st == GJ_OK && want_resid)
        *resid = residual_ws(ws, ws->orig, a, n);
    return st;
}

#define GJ_LANES_MIN_N 256 /* smallest order worth several lanes */

static unsigned lanes_of(const struct gj_opts *o)
{
    if (o == NULL || o->pool == NULL)
        return 1;
    unsigned l = o->threads != 0 ? o->threads : pool_threads(o->pool);
    return l == 0 ? 1 : l > GJ_LANES_MAX ? GJ_LANES_MAX : l;
}

int gj_invert(double *a, size_t n, const struct gj_opts *opts, double *resid)
{
    double dummy;
    double *res = resid != NULL ? resid : &dummy;
    *res = NAN;
    if (!shape_ok(a, n, opts))
        return GJ_INVALID;
    bool want = opts != NULL && opts->residual && resid != NULL;
    /* Below GJ_LANES_MIN_N a step is too short to share: on two threads
     * n = 128 ran at 31 GF/s against 47 on one. Results do not depend on
     * the lanes, so this changes speed only. */
    unsigned lanes = n < GJ_LANES_MIN_N ? 1 : lanes_of(opts);
    struct gj_ws ws;
    int rc = ws_init(&ws, n, lanes, want, 0);
    if (rc < 0)
        return rc;
    rc = invert_one(&ws, a, n, opts != NULL ? opts->pool : NULL, lanes, want, res);
    ws_free(&ws);
    return rc;
}

/* A batch in progress: lanes claim chunks of items. */
struct gj_batch {
    const struct gj_kern *k;
    struct gj_item *items;
    size_t count;
    size_t chunk; /* at most 64: a chunk's grouped items fit one mask */
    const struct gj_opts *opts;
    struct gj_ws *ws; /* one per lane */
    atomic_size_t next;
    atomic_size_t ok;
};

static void batch_item(struct gj_batch *b, struct gj_ws *ws, struct gj_item *it)
{
    it->resid = NAN;
    if (!shape_ok(it->a, it->n, b->opts)) {
        it->status = GJ_INVALID;
        return;
    }
    bool want = b->opts != NULL && b->opts->residual;
    it->status = invert_one(ws, it->a, it->n, NULL, 1, want, &it->resid);
    if (it->status == GJ_OK)
        atomic_fetch_add(&b->ok, 1);
}

/*
 * Whether the grouped kernel inverts it. Every item of such an order
 * goes through it, whoever its group-mates are (they do not change its
 * result), so results do not depend on the lanes or the chunks.
 */
static bool grouped(const struct gj_item *it, const struct gj_opts *o)
{
    return shape_ok(it->a, it->n, o) && it->n > GJ_SMALL_N && it->n <= GJ_GROUP_N_MAX;
}

/* Inverts cnt (≤ vw) items of order n through the grouped kernel. */
static void batch_group(struct gj_batch *b, struct gj_ws *ws, struct gj_item *const *grp,
                        unsigned cnt, size_t n)
{
    double *a[GJ_VW_MAX] = {0};
    int st[GJ_VW_MAX];
    bool want = b->opts != NULL && b->opts->residual;
    for (unsigned l = 0; l < cnt; l++) {
        a[l] = grp[l]->a;
        if (want)
            memcpy(ws->gorig + l * n * n, a[l], n * n * sizeof(double));
    }
    b->k->group(a, n, ws->grp, st);
    for (unsigned l = 0; l < cnt; l++) {
        struct gj_item *it = grp[l];
        it->status = st[l];
        it->resid = NAN;
        if (st[l] != GJ_OK)
            continue;
        atomic_fetch_add(&b->ok, 1);
        if (want)
            it->resid = residual_ws(ws, ws->gorig + l * n * n, it->a, n);
    }
}

/*
 * Items [i0, i1): those the grouped kernel takes in groups of one order (in
 * item order), the others one by one.
 */
static void batch_chunk(struct gj_batch *b, struct gj_ws *ws, size_t i0, size_t i1)
{
    struct gj_item *items = b->items;
    uint64_t done = 0;
    for (size_t i = i0; i < i1; i++) {
        if (done >> (i - i0) & 1)
            continue;
        if (!grouped(&items[i], b->opts)) {
            batch_item(b, ws, &items[i]);
            continue;
        }
        struct gj_item *grp[GJ_VW_MAX];
        unsigned cnt = 0;
        for (size_t j = i; j < i1 && cnt < b->k->vw; j++) {
            if (done >> (j - i0) & 1 || !grouped(&items[j], b->opts) || items[j].n != items[i].n)
                continue;
            grp[cnt++] = &items[j];
            done |= 1ull << (j - i0);
        }
        batch_group(b, ws, grp, cnt, items[i].n);
    }
}

static void batch_lane(void *arg, size_t lane)
{
    struct gj_batch *b = arg;
    size_t i0;
    while ((i0 = atomic_fetch_add(&b->next, b->chunk)) < b->count)
        batch_chunk(b, &b->ws[lane], i0, min_sz(i0 + b->chunk, b->count));
}

/* The largest valid order in the batch, and the largest grouped one (0: none). */
static size_t batch_ncap(const struct gj_item *items, size_t count, const struct gj_opts *o,
                         size_t *gcap)
{
    size_t cap = 0;
    *gcap = 0;
    for (size_t i = 0; i < count; i++) {
        if (shape_ok(items[i].a, items[i].n, o) && items[i].n > cap)
            cap = items[i].n;
        if (grouped(&items[i], o) && items[i].n > *gcap)
            *gcap = items[i].n;
    }
    return cap;
}

int gj_invert_batch(struct gj_item *items, size_t count, const struct gj_opts *opts)
{
    struct gj_ws ws[GJ_LANES_MAX];
    unsigned lanes = lanes_of(opts), made = 0;
    size_t gcap, cap = batch_ncap(items, count, opts, &gcap);
    bool want = opts != NULL && opts->residual;
    int rc = -ENOMEM;
    if (lanes > count)
        lanes = count == 0 ? 1 : (unsigned)count;
    for (; cap > 0 && made < lanes; made++)
        if (ws_init(&ws[made], cap, 1, want, gcap) < 0)
            goto fail;
    struct gj_batch b = {.k = kern(), .items = items, .count = count, .opts = opts, .ws = ws};
    b.chunk = round_up(min_sz(64, count / (lanes * 32u) + 1), GJ_VW_MAX); /* whole groups */
    atomic_init(&b.next, 0);
    atomic_init(&b.ok, 0);
    if (lanes > 1)
        (void)pool_parallel(opts->pool, lanes, batch_lane, &b); /* see run_step */
    else
        batch_lane(&b, 0);
    rc = (int)atomic_load(&b.ok);
fail:
    while (made > 0)
        ws_free(&ws[--made]);
    return rc;
}
