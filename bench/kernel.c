/*
 * bench/kernel — convoy's Gauss-Jordan inversion against OpenBLAS, same run.
 *
 * The design is simple: for each row, convoy and the reference are timed in
 * alternation, several times, and the median of each is kept, so that the
 * load other processes put on a shared machine hits both sides alike and
 * the ratio stays meaningful. One key=value line per row:
 *
 *   kernel openblas_core=… openblas_config=… convoy_isa=… cpus=…
 *   kernel dgemm n=N threads=T openblas_gflops=…
 *   kernel n=N threads=T convoy_gflops=… openblas_gflops=… ratio=…
 *          convoy_resid=… openblas_resid=… dgemm_frac=…
 *   kernel batch=COUNTxN threads=T convoy_mps=… openblas_mps=… ratio=…
 *          convoy_resid=… openblas_resid=…
 *   kernel speedup n=N threads=T convoy_1t_gflops=… convoy_gflops=…
 *          speedup=… openblas_1t_gflops=… openblas_gflops=… openblas_speedup=…
 *
 * GF/s is 2n³/t for both. dgemm_frac is convoy's GF/s over OpenBLAS DGEMM's
 * at n = 2048 with the same threads, the ceiling of any inversion. The
 * OpenBLAS single-matrix reference is LAPACKE_dgetrf + LAPACKE_dgetri; the
 * batch reference calls dgetrf_/dgetri_ with one workspace per thread, so it
 * is not charged for LAPACKE's per-call allocation. Row-major data is handed
 * to the column-major routines as is: that inverts Aᵀ, whose inverse is A⁻¹
 * transposed, i.e. A⁻¹ in row-major order, so no transposition is timed.
 * Before each multithreaded sample the bench sleeps 150 ms (see settle()).
 * The speedup row times each library on one thread and on all of them in
 * alternation, back to back, and gives the median of the pairs' ratios:
 * the 1- and 2-thread rows are measured tens of seconds apart, often in
 * different moods of a shared host; OpenBLAS's own speed-up, measured the
 * same way just after, shows what the host allowed (docs/benchmarks.md).
 * Residuals (‖I − A·X‖₁/(n‖A‖₁‖X‖₁ε), convoy's code for both) are of one
 * inversion, or the largest over the first items of a batch.
 *
 * Options: -q (quick: fewer sizes and repetitions, for a smoke test), -b
 * (the batch rows only), -s (the speedup row only).
 */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "convoy/gj.h"
#include "convoy/pool.h"

void dgetrf_(const int *m, const int *n, double *a, const int *lda, int *ipiv, int *info);
void dgetri_(const int *n, double *a, const int *lda, const int *ipiv, double *work,
             const int *lwork, int *info);

#define REPS_MAX 9

struct bench {
    pool_t *pool;
    unsigned cpus;
    int reps;
    double ceiling[2]; /* DGEMM GF/s at the largest n: one thread, all */
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/*
 * OpenBLAS's threads spin for a while (about 2^28 cycles) after a call
 * before they sleep, and would steal the second core from whatever runs next.
 * Before each multithreaded sample, either side's, let them go to sleep.
 */
static void settle(unsigned threads)
{
    struct timespec ts = {0, 150 * 1000 * 1000};
    if (threads > 1)
        nanosleep(&ts, NULL);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static void *xmalloc(size_t size)
{
    void *p = malloc(size);
    if (p == NULL) {
        fprintf(stderr, "kernel: out of memory (%zu bytes)\n", size);
        exit(1);
    }
    return p;
}

/* Uniform in [-1, 1), deterministic. */
static void fill_random(double *a, size_t len, uint64_t seed)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < len; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        a[i] = (double)(s >> 11) / (double)(1ull << 52) - 1.0;
    }
}

/* ---- single matrices ---------------------------------------------------- */

static double time_convoy(struct bench *b, double *x, const double *a, size_t n, unsigned threads)
{
    struct gj_opts o = {.pool = threads > 1 ? b->pool : NULL, .threads = threads};
    memcpy(x, a, n * n * sizeof(double));
    double t = now();
    int st = gj_invert(x, n, &o, NULL);
    t = now() - t;
    if (st != GJ_OK)
        fprintf(stderr, "kernel: convoy n=%zu status=%d\n", n, st);
    return t;
}

static double time_openblas(double *x, const double *a, size_t n, lapack_int *ipiv)
{
    memcpy(x, a, n * n * sizeof(double));
    double t = now();
    lapack_int info =
        LAPACKE_dgetrf(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)n, x, (lapack_int)n, ipiv);
    if (info == 0)
        info = LAPACKE_dgetri(LAPACK_COL_MAJOR, (lapack_int)n, x, (lapack_int)n, ipiv);
    t = now() - t;
    if (info != 0)
        fprintf(stderr, "kernel: openblas n=%zu info=%d\n", n, (int)info);
    return t;
}

static double time_dgemm(const double *a, double *c, size_t n)
{
    double t = now();
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0, a, (int)n,
                a, (int)n, 0.0, c, (int)n);
    return now() - t;
}

static int reps_for(const struct bench *b, size_t n)
{
    return n >= 1024 ? (b->reps + 1) / 2 | 1 : b->reps;
}

static double dgemm_row(struct bench *b, size_t n, unsigned threads)
{
    double *a = xmalloc(n * n * sizeof(double)), *c = xmalloc(n * n * sizeof(double));
    double t[REPS_MAX];
    int reps = reps_for(b, n);
    fill_random(a, n * n, n);
    openblas_set_num_threads((int)threads);
    time_dgemm(a, c, n); /* warm-up: threads started, pages touched */
    for (int r = 0; r < reps; r++)
        t[r] = time_dgemm(a, c, n);
    double gf = 2.0 * (double)n * (double)n * (double)n / median(t, reps) / 1e9;
    printf("kernel dgemm n=%zu threads=%u openblas_gflops=%.1f\n", n, threads, gf);
    fflush(stdout);
    free(c);
    free(a);
    return gf;
}

static void inverse_row(struct bench *b, size_t n, unsigned threads)
{
    double *a = xmalloc(n * n * sizeof(double)), *x = xmalloc(n * n * sizeof(double));
    lapack_int *ipiv = xmalloc(n * sizeof(lapack_int));
    double tc[REPS_MAX], to[REPS_MAX];
    int reps = reps_for(b, n);
    fill_random(a, n * n, n);
    openblas_set_num_threads((int)threads);
    time_convoy(b, x, a, n, threads);
    time_openblas(x, a, n, ipiv);
    /* Small n: time many inversions per sample, so that a sample is ~10 ms. */
    size_t inner = n >= 256 ? 1 : (size_t)(1.0e7 / ((double)n * n * n)) + 1;
    for (int r = 0; r < reps; r++) {
        tc[r] = to[r] = 0.0;
        settle(threads);
        for (size_t i = 0; i < inner; i++)
            tc[r] += time_convoy(b, x, a, n, threads);
        settle(threads);
        for (size_t i = 0; i < inner; i++)
            to[r] += time_openblas(x, a, n, ipiv);
    }
    double flop = 2.0 * (double)n * (double)n * (double)n * (double)inner;
    double gc = flop / median(tc, reps) / 1e9, go = flop / median(to, reps) / 1e9;
    time_convoy(b, x, a, n, threads);
    double rc = gj_residual(a, x, n);
    time_openblas(x, a, n, ipiv);
    double ro = gj_residual(a, x, n);
    printf("kernel n=%zu threads=%u convoy_gflops=%.1f openblas_gflops=%.1f ratio=%.2f "
           "convoy_resid=%.3f openblas_resid=%.3f dgemm_frac=%.2f\n",
           n, threads, gc, go, gc / go, rc, ro, gc / b->ceiling[threads > 1]);
    fflush(stdout);
    free(ipiv);
    free(x);
    free(a);
}

/*
 * Speed-up from one thread to all at order n, each library alternating
 * between the two back to back. A 2-thread OpenBLAS call leaves its
 * threads spinning; they sit on the other core, which the 1-thread call
 * that follows does not use.
 */
static void speedup_row(struct bench *b, size_t n)
{
    double *a = xmalloc(n * n * sizeof(double)), *x = xmalloc(n * n * sizeof(double));
    lapack_int *ipiv = xmalloc(n * sizeof(lapack_int));
    double c1[REPS_MAX], c2[REPS_MAX], o1[REPS_MAX], o2[REPS_MAX], c_ratio[REPS_MAX],
        o_ratio[REPS_MAX];
    int reps = b->reps;
    unsigned all = b->cpus;
    fill_random(a, n * n, n);
    time_convoy(b, x, a, n, all);
    for (int r = 0; r < reps; r++) {
        c1[r] = time_convoy(b, x, a, n, 1);
        c2[r] = time_convoy(b, x, a, n, all);
        c_ratio[r] = c1[r] / c2[r];
    }
    openblas_set_num_threads((int)all);
    time_openblas(x, a, n, ipiv);
    for (int r = 0; r < reps; r++) {
        openblas_set_num_threads(1);
        o1[r] = time_openblas(x, a, n, ipiv);
        openblas_set_num_threads((int)all);
        o2[r] = time_openblas(x, a, n, ipiv);
        o_ratio[r] = o1[r] / o2[r];
    }
    double flop = 2.0 * (double)n * (double)n * (double)n;
    printf("kernel speedup n=%zu threads=%u convoy_1t_gflops=%.1f convoy_gflops=%.1f speedup=%.2f "
           "openblas_1t_gflops=%.1f openblas_gflops=%.1f openblas_speedup=%.2f\n",
           n, all, flop / median(c1, reps) / 1e9, flop / median(c2, reps) / 1e9,
           median(c_ratio, reps), flop / median(o1, reps) / 1e9, flop / median(o2, reps) / 1e9,
           median(o_ratio, reps));
    fflush(stdout);
    free(ipiv);
    free(x);
    free(a);
}

/* ---- batches ------------------------------------------------------------ */

/* One thread's share of the OpenBLAS batch reference. */
struct ob_share {
    double *x;
    size_t count, n;
    int *ipiv;
    double *work;
    int lwork;
    int failed;
};

static void *ob_share_run(void *arg)
{
    struct ob_share *s = arg;
    int n = (int)s->n, info;
    for (size_t i = 0; i < s->count; i++) {
        double *m = s->x + i * s->n * s->n;
        dgetrf_(&n, &n, m, &n, s->ipiv, &info);
        if (info == 0)
            dgetri_(&n, m, &n, s->ipiv, s->work, &s->lwork, &info);
        s->failed += info != 0;
    }
    return NULL;
}

/* OpenBLAS single-threaded per matrix, items split across threads. */
static double time_openblas_batch(double *x, const double *a, size_t count, size_t n,
                                  unsigned threads)
{
    struct ob_share *sh = xmalloc(threads * sizeof(*sh));
    pthread_t *tid = xmalloc(threads * sizeof(*tid));
    size_t per = (count + threads - 1) / threads;
    memcpy(x, a, count * n * n * sizeof(double));
    for (unsigned t = 0; t < threads; t++) {
        size_t first = per * t;
        sh[t] = (struct ob_share){
            .x = x + first * n * n,
            .count = first < count ? (count - first < per ? count - first : per) : 0,
            .n = n,
            .ipiv = xmalloc(n * sizeof(int)),
            .lwork = (int)(n * 64),
            .work = xmalloc(n * 64 * sizeof(double))};
    }
    openblas_set_num_threads(1);
    double t0 = now();
    for (unsigned t = 1; t < threads; t++)
        if (pthread_create(&tid[t], NULL, ob_share_run, &sh[t]) != 0)
            ob_share_run(&sh[t]);
    ob_share_run(&sh[0]);
    for (unsigned t = 1; t < threads; t++)
        pthread_join(tid[t], NULL);
    double el = now() - t0;
    for (unsigned t = 0; t < threads; t++) {
        if (sh[t].failed)
            fprintf(stderr, "kernel: openblas batch failures=%d\n", sh[t].failed);
        free(sh[t].work);
        free(sh[t].ipiv);
    }
    free(tid);
    free(sh);
    return el;
}

static double time_convoy_batch(struct bench *b, double *x, const double *a, struct gj_item *it,
                                size_t count, size_t n, unsigned threads)
{
    struct gj_opts o = {.pool = threads > 1 ? b->pool : NULL, .threads = threads};
    memcpy(x, a, count * n * n * sizeof(double));
    for (size_t i = 0; i < count; i++)
        it[i] = (struct gj_item){.a = x + i * n * n, .n = n};
    double t = now();
    int ok = gj_invert_batch(it, count, &o);
    t = now() - t;
    if (ok != (int)count)
        fprintf(stderr, "kernel: convoy batch ok=%d of %zu\n", ok, count);
    return t;
}

/* The largest residual over the first items of x. */
static double batch_resid(const double *a, const double *x, size_t count, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < count && i < 100; i++)
        worst = fmax(worst, gj_residual(a + i * n * n, x + i * n * n, n));
    return worst;
}

static void batch_row(struct bench *b, size_t count, size_t n, unsigned threads)
{
    size_t len = count * n * n;
    double *a = xmalloc(len * sizeof(double)), *x = xmalloc(len * sizeof(double));
    struct gj_item *it = xmalloc(count * sizeof(struct gj_item));
    double tc[REPS_MAX], to[REPS_MAX];
    fill_random(a, len, count + n);
    time_convoy_batch(b, x, a, it, count, n, threads);
    time_openblas_batch(x, a, count, n, threads);
    for (int r = 0; r < b->reps; r++) {
        settle(threads);
        tc[r] = time_convoy_batch(b, x, a, it, count, n, threads);
        settle(threads);
        to[r] = time_openblas_batch(x, a, count, n, threads);
    }
    double mc = (double)count / median(tc, b->reps), mo = (double)count / median(to, b->reps);
    time_convoy_batch(b, x, a, it, count, n, threads);
    double rc = batch_resid(a, x, count, n);
    time_openblas_batch(x, a, count, n, threads);
    double ro = batch_resid(a, x, count, n);
    printf("kernel batch=%zux%zu threads=%u convoy_mps=%.0f openblas_mps=%.0f ratio=%.2f "
           "convoy_resid=%.3f openblas_resid=%.3f\n",
           count, n, threads, mc, mo, mc / mo, rc, ro);
    fflush(stdout);
    free(it);
    free(x);
    free(a);
}

static void print_config(const struct bench *b)
{
    char cfg[256];
    snprintf(cfg, sizeof cfg, "%s", openblas_get_config());
    for (char *p = cfg; *p != '\0'; p++)
        if (*p == ' ')
            *p = ',';
    printf("kernel openblas_core=%s openblas_config=%s convoy_isa=%s cpus=%u\n",
           openblas_get_corename(), cfg, gj_isa_str(gj_active_isa()), b->cpus);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static const size_t sizes[] = {64, 128, 256, 512, 1024, 2048};
    static const size_t batches[][2] = {{100000, 8}, {20000, 32}, {2000, 128}};
    struct bench b = {.reps = 7};
    bool quick = argc > 1 && strcmp(argv[1], "-q") == 0;
    bool batch_only = argc > 1 && strcmp(argv[1], "-b") == 0;
    bool speedup_only = argc > 1 && strcmp(argv[1], "-s") == 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    b.cpus = cpus > 1 ? (unsigned)cpus : 1;
    if (quick)
        b.reps = 3;
    if (pool_create(&b.pool, b.cpus, 64) < 0) {
        fprintf(stderr, "kernel: pool_create failed\n");
        return 1;
    }
    print_config(&b);
    size_t top = quick ? 512 : 2048;
    for (unsigned all = 0; !speedup_only && all <= (b.cpus > 1); all++) {
        unsigned t = all ? b.cpus : 1;
        for (size_t i = 0; !batch_only && i < sizeof sizes / sizeof sizes[0] && sizes[i] <= top;
             i++) {
            double gf = dgemm_row(&b, sizes[i], t);
            if (sizes[i] == top)
                b.ceiling[all] = gf;
        }
        for (size_t i = 0; !batch_only && i < sizeof sizes / sizeof sizes[0] && sizes[i] <= top;
             i++)
            inverse_row(&b, sizes[i], t);
        for (size_t i = 0; i < 3; i++)
            batch_row(&b, quick ? batches[i][0] / 20 : batches[i][0], batches[i][1], t);
    }
    if (b.cpus > 1 && !batch_only)
        speedup_row(&b, top);
    pool_destroy(b.pool);
    return 0;
}
