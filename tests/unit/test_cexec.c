/*
 * cexec: batches through the executor on a real ring: the inverses are
 * gj's, bit for bit; a generated batch is made from its seed; a job's
 * queued batches are withdrawn on cancel; held counts what is inside.
 */
#include "convoy/cexec.h"
#include "convoy/gj.h"
#include "convoy/jgen.h"
#include "convoy/ring.h"

#include <CUnit/CUnit.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N 48

static struct {
    ring_t *ring;
    cexec_t *ex;
    struct cexec_batch *got[16];
    int ngot, want;
} g;

static void done(void *arg, struct cexec_batch *b)
{
    (void)arg;
    g.got[g.ngot++] = b;
    if (g.ngot == g.want)
        ring_stop(g.ring);
}

static struct cexec_batch *batch(uint64_t job, uint64_t first, uint32_t count, bool gen)
{
    struct chain_work w = {.job = job,
                           .first = first,
                           .count = count,
                           .n = N,
                           .residual = true,
                           .output = true,
                           .gen = gen,
                           .seed = 77};
    strcpy(w.kind, "uniform");
    struct cexec_batch *b = cexec_batch_new(&w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    for (uint32_t i = 0; !gen && i < count; i++)
        jgen_item("uniform", 5, first + i, N, b->data + (size_t)i * N * N);
    return b;
}

static void start(unsigned threads)
{
    memset(&g, 0, sizeof g);
    CU_ASSERT_FATAL(ring_create(&g.ring, 64) == 0);
    CU_ASSERT_FATAL(cexec_create(&g.ex, g.ring, threads, done, NULL) == 0);
}

static void finish(void)
{
    for (int i = 0; i < g.ngot; i++)
        cexec_batch_free(g.got[i]);
    cexec_destroy(g.ex);
    ring_destroy(g.ring);
}

/* Item i of a batch against gj run here on its input. */
static bool same_as_gj(const struct cexec_batch *b, uint32_t i, uint64_t seed)
{
    double a[N * N];
    jgen_item("uniform", seed, b->w.first + i, N, a);
    struct gj_item it = {.a = a, .n = N};
    gj_invert_batch(&it, 1, NULL);
    return b->status[i] == GJ_OK && memcmp(a, b->data + (size_t)i * N * N, sizeof a) == 0 &&
           b->resid[i] >= 0 && b->resid[i] < 30;
}

static void test_batches(void)
{
    start(2);
    CU_ASSERT_EQUAL(cexec_threads(g.ex), 2);
    g.want = 2;
    cexec_submit(g.ex, batch(1, 10, 5, false));
    cexec_submit(g.ex, batch(1, 100, 3, true));
    CU_ASSERT(cexec_held(g.ex) <= 8);
    ring_run(g.ring);
    CU_ASSERT_EQUAL_FATAL(g.ngot, 2);
    CU_ASSERT_EQUAL(cexec_held(g.ex), 0);
    CU_ASSERT_EQUAL(g.got[0]->w.first, 10); /* in the order they came */
    for (uint32_t i = 0; i < 5; i++)
        CU_ASSERT_TRUE(same_as_gj(g.got[0], i, 5));
    for (uint32_t i = 0; i < 3; i++)
        CU_ASSERT_TRUE(same_as_gj(g.got[1], i, 77)); /* generated from the WORK's seed */
    finish();
}

static void test_cancel(void)
{
    start(1);
    g.want = 2;
    cexec_submit(g.ex, batch(1, 0, 1024, false)); /* runs while the rest waits */
    cexec_submit(g.ex, batch(2, 0, 4, false));
    cexec_submit(g.ex, batch(2, 4, 4, false));
    cexec_submit(g.ex, batch(3, 0, 1, false));
    uint64_t dropped = cexec_cancel(g.ex, 2);
    ring_run(g.ring);
    CU_ASSERT_EQUAL(dropped, 8);
    CU_ASSERT_EQUAL_FATAL(g.ngot, 2);
    CU_ASSERT_EQUAL(g.got[0]->w.job, 1);
    CU_ASSERT_EQUAL(g.got[1]->w.job, 3);
    CU_ASSERT_EQUAL(cexec_held(g.ex), 0);
    finish();
}

static void test_bad_items(void)
{
    start(2);
    g.want = 1;
    struct cexec_batch *b = batch(1, 0, 3, false);
    memset(b->data + N * N, 0, sizeof(double) * N * N); /* item 1: zero, singular */
    b->data[2 * N * N + 7] = NAN;                       /* item 2: invalid */
    cexec_submit(g.ex, b);
    ring_run(g.ring);
    CU_ASSERT_EQUAL_FATAL(g.ngot, 1);
    CU_ASSERT_EQUAL(g.got[0]->status[0], GJ_OK);
    CU_ASSERT_EQUAL(g.got[0]->status[1], GJ_SINGULAR);
    CU_ASSERT_EQUAL(g.got[0]->status[2], GJ_INVALID);
    CU_ASSERT_TRUE(isnan(g.got[0]->resid[2]));
    finish();
}

/* Without output, each ok item's checksum is that of the kernel's inverse. */
static void test_sums(void)
{
    start(2);
    g.want = 1;
    struct cexec_batch *b = batch(1, 20, 4, true);
    b->w.output = false;
    free(b->sum);
    b->sum = calloc(4, sizeof *b->sum);
    cexec_submit(g.ex, b);
    ring_run(g.ring);
    CU_ASSERT_EQUAL_FATAL(g.ngot, 1);
    for (uint32_t i = 0; i < 4; i++) {
        double a[N * N];
        jgen_item("uniform", 77, 20 + i, N, a);
        struct gj_item it = {.a = a, .n = N};
        gj_invert_batch(&it, 1, NULL);
        CU_ASSERT_EQUAL(g.got[0]->sum[i], chain_sum(a, N));
    }
    finish();
}

static void test_calibrate(void)
{
    start(1);
    double gf = cexec_calibrate(g.ex);
    CU_ASSERT(gf > 0.1 && gf < 10000);
    finish();
}

void suite_cexec(void)
{
    CU_pSuite s = CU_add_suite("cexec", NULL, NULL);
    CU_add_test(s, "batches in order, the kernel's bits, generated from the seed", test_batches);
    CU_add_test(s, "cancel withdraws a job's queued batches", test_cancel);
    CU_add_test(s, "singular and NaN items, each its own status", test_bad_items);
    CU_add_test(s, "without output: each inverse's checksum", test_sums);
    CU_add_test(s, "calibration gives a plausible GFLOP/s", test_calibrate);
}
