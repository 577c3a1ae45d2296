/* fejob: what the ledger counts is what the spool stores, and a reopened
 * job (a restarted front-end) has exactly its stored items done. */
#include "convoy/fejob.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char root[] = "/tmp/convoy-fejob-XXXXXX";
static struct spool *sp;
static ring_t *ring;

static int setup(void)
{
    return mkdtemp(root) && spool_open(root, &sp) == 0 && ring_create(&ring, 16) == 0 ? 0 : -1;
}

static int teardown(void)
{
    ring_destroy(ring);
    spool_close(sp);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    return system(cmd) == 0 ? 0 : -1;
}

#define N 2 /* matrix order in these jobs */

/* A RESULT of count items from first, every inverse filled with tag. */
struct answer {
    uint8_t status[64];
    double resid[64];
    double data[64 * N * N];
    struct fejob_result r;
};

static const struct fejob_result *answer(struct answer *a, uint64_t first, uint32_t count,
                                         uint64_t sid, const char *server, double tag)
{
    for (uint32_t i = 0; i < count; i++) {
        a->status[i] = (first + i) % 10 == 9 ? FEJOB_SINGULAR : FEJOB_OK;
        a->resid[i] = 1.5;
        for (int k = 0; k < N * N; k++)
            a->data[i * N * N + k] = tag;
    }
    a->r = (struct fejob_result){first, count, a->status, a->resid, 7, a->data, sid, server, NULL};
    return &a->r;
}

struct stored {
    int calls, err;
};

static void on_stored(void *arg, int err)
{
    struct stored *st = arg;
    st->calls++;
    st->err = err;
    ring_stop(ring);
}

/* fejob_result, and the writes it started waited for: done ran once,
 * with no error, exactly when it said it would. */
static long result(struct fejob *j, const struct fejob_result *r)
{
    struct stored st = {0};
    long n = fejob_result(j, r, ring, on_stored, &st);
    if (n > 0)
        CU_ASSERT_EQUAL(ring_run(ring), 0);
    CU_ASSERT_EQUAL(st.calls, n > 0);
    CU_ASSERT_EQUAL(st.err, 0);
    return n;
}

/* The inverse stored for item i (its first double). */
static double stored(uint64_t id, uint64_t i)
{
    char path[256];
    spool_path(sp, id, "result.npy", path, sizeof path);
    FILE *f = fopen(path, "rb");
    double v = -1;
    if (f && fseek(f, (long)(16 + i * N * N * sizeof(double)), SEEK_SET) == 0 &&
        fread(&v, sizeof v, 1, f) != 1)
        v = -1;
    if (f)
        fclose(f);
    return v;
}

static void test_names(void)
{
    enum fejob_status s;
    CU_ASSERT_STRING_EQUAL(fejob_status_str(FEJOB_OK), "ok");
    CU_ASSERT_STRING_EQUAL(fejob_status_str(FEJOB_INVALID), "invalid");
    CU_ASSERT_STRING_EQUAL(fejob_status_str((enum fejob_status)0), "unknown");
    CU_ASSERT_EQUAL(fejob_status_parse("singular", &s), 0);
    CU_ASSERT_EQUAL(s, FEJOB_SINGULAR);
    CU_ASSERT_EQUAL(fejob_status_parse("fine", &s), -EINVAL);
}

/* The first answer is the one stored; a duplicate's bytes never land. */
static void test_first_answer_stored(void)
{
    static struct answer a;
    const char hdr[16] = "0123456789abcde";
    struct fejob *j;
    CU_ASSERT_EQUAL_FATAL(spool_job_create(sp, 1, "{}", 2), 0);
    CU_ASSERT_EQUAL_FATAL(fejob_open(sp, 1, 40, N, true, hdr, sizeof hdr, &j), 0);
    struct ledger *l = fejob_ledger(j);
    ledger_sent(l, 0, 40);
    ledger_accepted(l, 0, 40, 1);
    CU_ASSERT_EQUAL(result(j, answer(&a, 0, 20, 1, "c1", 11.0)), 20);
    /* the same items again, from a forwarded copy: nothing stored */
    CU_ASSERT_EQUAL(result(j, answer(&a, 10, 20, 2, "c2", 22.0)), 10);
    CU_ASSERT_EQUAL(stored(1, 10), 11.0);
    CU_ASSERT_EQUAL(stored(1, 25), 22.0);
    a.status[0] = 9;
    CU_ASSERT_EQUAL(result(j, &a.r), -EINVAL);
    struct fejob_counts c;
    fejob_counts(j, &c);
    CU_ASSERT_EQUAL(c.ok + c.singular, 30);
    CU_ASSERT_EQUAL(c.singular, 3); /* items 9, 19, 29 */
    CU_ASSERT_EQUAL(c.l.done, 30);
    fejob_close(j);
}

/* A front-end killed mid-job: the reopened job has exactly the stored
 * items done, the rest to delegate again, and finishes. */
static void test_restart(void)
{
    static struct answer a;
    struct fejob *j;
    CU_ASSERT_EQUAL_FATAL(spool_job_create(sp, 2, "{}", 2), 0);
    CU_ASSERT_EQUAL_FATAL(fejob_open(sp, 2, 3000, N, false, NULL, 0, &j), 0);
    ledger_sent(fejob_ledger(j), 0, 3000);
    for (uint64_t first = 0; first < 2000; first += 64) {
        uint32_t count = first + 64 > 2000 ? (uint32_t)(2000 - first) : 64;
        CU_ASSERT_EQUAL(result(j, answer(&a, first, count, 1, first < 1000 ? "c1" : "c2", 0)),
                        count);
    }
    a.r.data = NULL;
    fejob_close(j); /* killed: nothing else written */

    CU_ASSERT_EQUAL_FATAL(fejob_open(sp, 2, 3000, N, false, NULL, 0, &j), 0);
    struct fejob_counts c;
    fejob_counts(j, &c);
    CU_ASSERT_EQUAL(c.l.done, 2000);
    CU_ASSERT_EQUAL(c.l.unsent, 1000);
    CU_ASSERT_EQUAL(c.singular, 200);
    CU_ASSERT_EQUAL(c.l.nservers, 2);
    CU_ASSERT_EQUAL(c.l.servers[0].done + c.l.servers[1].done, 2000);
    uint64_t first;
    uint32_t count;
    CU_ASSERT_EQUAL(ledger_next_unsent(fejob_ledger(j), 5000, &first, &count), 1);
    CU_ASSERT_EQUAL(first, 2000);
    CU_ASSERT_EQUAL(count, 1000);
    ledger_sent(fejob_ledger(j), 2000, 1000);
    for (uint64_t f = 2000; f < 3000; f += 50)
        result(j, answer(&a, f, 50, 5, "c3", 0));
    CU_ASSERT_TRUE(ledger_complete(fejob_ledger(j)));
    fejob_counts(j, &c);
    CU_ASSERT_EQUAL(c.ok + c.singular + c.invalid, 3000);
    fejob_close(j);
    /* a different size is a different job: refused */
    CU_ASSERT_EQUAL(fejob_open(sp, 2, 3001, N, false, NULL, 0, &j), -EINVAL);
}

void suite_fejob(void)
{
    CU_pSuite s = CU_add_suite("fejob", setup, teardown);
    CU_add_test(s, "status names", test_names);
    CU_add_test(s, "the first answer is stored, a duplicate's bytes never",
                test_first_answer_stored);
    CU_add_test(s, "restart: stored items done, the rest delegated again", test_restart);
}
