/* spool: jobs on disk, results at their place, records read back after a
 * restart. */
#include "convoy/spool.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[] = "/tmp/convoy-spool-XXXXXX";
static ring_t *put_ring;

static int setup(void)
{
    return mkdtemp(root) && ring_create(&put_ring, 16) == 0 ? 0 : -1;
}

static int teardown(void)
{
    ring_destroy(put_ring);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    return system(cmd) == 0 ? 0 : -1;
}

static struct spool_rec rec(uint32_t status, const char *server)
{
    struct spool_rec r = {.status = status, .ms = 3, .resid = NAN};
    snprintf(r.server, sizeof r.server, "%s", server);
    return r;
}

static void on_put(void *arg, int err)
{
    int *res = arg;
    *res = err;
    ring_stop(put_ring);
}

/* spool_job_put_start, waited for: its start's error, or done's. */
static int put(struct spool_job *j, uint64_t first, uint32_t count, const struct spool_rec *recs,
               const void *data)
{
    int res = 1;
    int rc = spool_job_put_start(j, put_ring, first, count, recs, data, on_put, &res);
    if (rc < 0)
        return rc;
    CU_ASSERT_EQUAL(ring_run(put_ring), 0);
    CU_ASSERT_NOT_EQUAL(res, 1);
    return res;
}

static int collect_ids(void *arg, uint64_t id)
{
    char *buf = arg;
    sprintf(buf + strlen(buf), "%llu ", (unsigned long long)id);
    return 0;
}

struct runs {
    char text[256];
};

static int collect_runs(void *arg, uint64_t first, uint32_t count, const struct spool_rec *recs)
{
    struct runs *r = arg;
    sprintf(r->text + strlen(r->text), "%llu+%u:%s ", (unsigned long long)first, count,
            recs[0].server);
    return 0;
}

static void test_jobs(void)
{
    struct spool *sp;
    CU_ASSERT_EQUAL_FATAL(spool_open(root, &sp), 0);
    CU_ASSERT_EQUAL(spool_job_create(sp, 12, "{\"op\":\"invert\"}", 15), 0);
    CU_ASSERT_EQUAL(spool_job_create(sp, 3, "{}", 2), 0);
    CU_ASSERT_EQUAL(spool_job_create(sp, 12, "{}", 2), -EEXIST);
    char ids[64] = "";
    CU_ASSERT_EQUAL(spool_list(sp, collect_ids, ids), 0);
    CU_ASSERT_STRING_EQUAL(ids, "3 12 ");
    char path[256], text[32] = "";
    CU_ASSERT_EQUAL(spool_path(sp, 12, "job.json", path, sizeof path), 0);
    FILE *f = fopen(path, "r");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_PTR_NOT_NULL(fgets(text, sizeof text, f));
    fclose(f);
    CU_ASSERT_STRING_EQUAL(text, "{\"op\":\"invert\"}");
    CU_ASSERT_EQUAL(spool_path(sp, 12, "x", path, 8), -ENAMETOOLONG);
    CU_ASSERT_EQUAL(spool_job_remove(sp, 3), 0);
    CU_ASSERT_EQUAL(spool_job_remove(sp, 12), 0);
    ids[0] = 0;
    CU_ASSERT_EQUAL(spool_list(sp, collect_ids, ids), 0);
    CU_ASSERT_STRING_EQUAL(ids, "");
    spool_close(sp);
}

/* Results land at their place; a reopened job (a restarted front-end)
 * finds its done items and their bytes. */
static void test_results_survive(void)
{
    struct spool *sp;
    CU_ASSERT_EQUAL_FATAL(spool_open(root, &sp), 0);
    CU_ASSERT_EQUAL_FATAL(spool_job_create(sp, 7, "{}", 2), 0);
    struct spool_job *j;
    const char hdr[16] = "HEADER-16-BYTES";
    CU_ASSERT_EQUAL_FATAL(spool_job_open(sp, 7, 3000, 32, hdr, sizeof hdr, &j), 0);
    struct spool_rec recs[10];
    double data[10 * 4];
    for (int i = 0; i < 10; i++) {
        recs[i] = rec(1, "c2");
        for (int k = 0; k < 4; k++)
            data[i * 4 + k] = 1000 + i;
    }
    CU_ASSERT_EQUAL(put(j, 2000, 10, recs, data), 0);
    recs[0] = rec(2, "c1");
    CU_ASSERT_EQUAL(put(j, 5, 1, recs, data), 0);
    CU_ASSERT_EQUAL(put(j, 2995, 10, recs, data), -ERANGE);
    spool_job_close(j);

    /* the same sizes reopen it; other sizes are refused */
    CU_ASSERT_EQUAL(spool_job_open(sp, 7, 3001, 32, hdr, sizeof hdr, &j), -EINVAL);
    CU_ASSERT_EQUAL_FATAL(spool_job_open(sp, 7, 3000, 32, hdr, sizeof hdr, &j), 0);
    struct runs r = {""};
    CU_ASSERT_EQUAL(spool_job_records(j, collect_runs, &r), 0);
    CU_ASSERT_STRING_EQUAL(r.text, "5+1:c1 2000+10:c2 ");
    struct spool_rec back;
    CU_ASSERT_EQUAL(spool_job_get(j, 2009, 1, &back), 0);
    CU_ASSERT_EQUAL(back.status, 1);
    CU_ASSERT_STRING_EQUAL(back.server, "c2");
    spool_job_close(j);

    char path[256];
    spool_path(sp, 7, "result.npy", path, sizeof path);
    struct stat st;
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL(st.st_size, 16 + 3000 * 32);
    FILE *f = fopen(path, "rb");
    char h[16];
    double v[4];
    CU_ASSERT_EQUAL(fread(h, 1, 16, f), 16);
    CU_ASSERT_EQUAL(memcmp(h, hdr, 16), 0);
    fseek(f, 16 + 2009 * 32, SEEK_SET);
    CU_ASSERT_EQUAL(fread(v, sizeof v[0], 4, f), 4);
    CU_ASSERT_EQUAL(v[3], 1009);
    fclose(f);
    CU_ASSERT_EQUAL(spool_job_remove(sp, 7), 0);
    spool_close(sp);
}

/* A job with no result bytes (output none) keeps records only. */
static void test_records_only(void)
{
    struct spool *sp;
    CU_ASSERT_EQUAL_FATAL(spool_open(root, &sp), 0);
    spool_job_create(sp, 1, "{}", 2);
    struct spool_job *j;
    CU_ASSERT_EQUAL_FATAL(spool_job_open(sp, 1, 2500, 0, NULL, 0, &j), 0);
    struct spool_rec all[2500];
    for (int i = 0; i < 2500; i++)
        all[i] = rec(1, "c3");
    CU_ASSERT_EQUAL(put(j, 0, 2500, all, NULL), 0);
    struct runs r = {""};
    CU_ASSERT_EQUAL(spool_job_records(j, collect_runs, &r), 0);
    /* read in chunks: runs end at chunk edges, which the caller joins */
    CU_ASSERT_STRING_EQUAL(r.text, "0+1024:c3 1024+1024:c3 2048+452:c3 ");
    char path[256];
    spool_path(sp, 1, "result.npy", path, sizeof path);
    CU_ASSERT_NOT_EQUAL(access(path, F_OK), 0);
    spool_job_close(j);
    spool_close(sp);
}

void suite_spool(void)
{
    CU_pSuite s = CU_add_suite("spool", setup, teardown);
    CU_add_test(s, "jobs created, listed in order, removed", test_jobs);
    CU_add_test(s, "results at their place survive a reopen", test_results_survive);
    CU_add_test(s, "records only for output none, read in chunks", test_records_only);
}
