/*
 * chain: the compute chain as a user runs it: a front-end and compute
 * servers as real processes on loopback, jobs submitted with `convoy
 * submit` or curl, servers killed, joining and restarted while jobs run.
 * What is asserted is what a user checks: every item accounted for once,
 * the inverses right (bit for bit what the kernel gives locally, and by
 * residual), per-item statuses, the per-server counts, refusals with the
 * JSON path, and a front-end that comes back with its jobs.
 */
#include "convoy/chain_msg.h"
#include "convoy/gj.h"
#include "convoy/jgen.h"
#include "convoy/npy.h"
#include "harness.h"

#include <CUnit/CUnit.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define JOB_MS 60000u /* the longest a job here may take */

static const char *const three[] = {"c1", "c2", "c3", NULL};

/* The scene: a front-end and servers (NULL-terminated), joined in order,
 * each daemon with the options in extra (NULL: none). */
static int scene_with(struct cluster *c, const char *const *servers, pid_t *pids,
                      const char *const *extra)
{
    if (h_chain_init(c, three) < 0 || h_frontend(c, extra) < 0)
        return -1;
    for (size_t i = 0; servers[i]; i++) {
        pid_t pid = h_compute(c, servers[i], extra);
        if (pid < 0)
            return -1;
        if (pids)
            pids[i] = pid;
    }
    return 0;
}

static int scene(struct cluster *c, const char *const *servers, pid_t *pids)
{
    return scene_with(c, servers, pids, NULL);
}

/* A seeded uniform value in [-1, 1), for test inputs. */
static double rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / (double)(1ull << 52) - 1.0;
}

/* Writes count n×n matrices to path as .npy (item i from seed + i); the
 * data (count·n·n) is also left in *out when out is not NULL. 0 or -1. */
static int write_npy(const char *path, uint64_t count, uint32_t n, double **out)
{
    uint8_t hdr[128];
    int hlen = npy_write_header(count, n, hdr, sizeof hdr);
    size_t nn = (size_t)n * n;
    double *a = malloc(sizeof(double) * nn * (out ? count : 1));
    FILE *f = fopen(path, "w");
    int rc = hlen > 0 && a && f && fwrite(hdr, 1, (size_t)hlen, f) == (size_t)hlen ? 0 : -1;
    uint64_t s = 12345;
    for (uint64_t i = 0; rc == 0 && i < count; i++) {
        double *m = out ? a + i * nn : a;
        for (size_t k = 0; k < nn; k++)
            m[k] = rnd(&s);
        if (fwrite(m, sizeof(double), nn, f) != nn)
            rc = -1;
    }
    if (f && fclose(f) != 0)
        rc = -1;
    if (out && rc == 0)
        *out = a;
    else
        free(a);
    return rc;
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    int rc = f && fputs(text, f) >= 0 ? 0 : -1;
    if (f && fclose(f) != 0)
        rc = -1;
    return rc;
}

/* Runs `convoy submit --json JOB [-o OUT]` as process name. pid or -1. */
static pid_t submit(struct cluster *c, const char *name, const char *job, const char *out)
{
    char url[64], ca[320];
    snprintf(url, sizeof url, "https://%s", c->http);
    snprintf(ca, sizeof ca, "%s/ca.crt", c->pki);
    const char *args[] = {"submit", "--frontend", url, "--cacert",        ca,  "--user",
                          "alice",  "--json",     job, out ? "-o" : NULL, out, NULL};
    return h_convoy(c, name, args);
}

/* Posts a job file with curl: the job's id, or 0 (status in *status). */
static uint64_t post_job(struct cluster *c, const char *file, int *status)
{
    cJSON *doc = h_api(c, "POST", "/v1/jobs", "application/json", file, status);
    uint64_t id = doc && h_num(doc, "id") > 0 ? (uint64_t)h_num(doc, "id") : 0;
    cJSON_Delete(doc);
    return id;
}

/* Waits until job id has at least done items done. */
static bool wait_done_at_least(struct cluster *c, uint64_t id, double done)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%llu", (unsigned long long)id);
    for (int waited = 0; waited < 20000; waited += 20) {
        int st;
        cJSON *doc = h_api(c, "GET", path, NULL, NULL, &st);
        double d = h_num(doc, "done");
        cJSON_Delete(doc);
        if (d >= done)
            return true;
        usleep(20 * 1000);
    }
    return false;
}

/* Posts the job json (as job.json in the cluster's folder) and waits
 * until it has done items done: its id, or 0 (the failure asserted). */
static uint64_t running_job(struct cluster *c, const char *json, double done)
{
    char job[512];
    int st = 0;
    snprintf(job, sizeof job, "%s/job.json", c->dir);
    CU_ASSERT_EQUAL(write_text(job, json), 0);
    uint64_t id = post_job(c, job, &st);
    CU_ASSERT_EQUAL(st, 201);
    if (id == 0 || !wait_done_at_least(c, id, done)) {
        CU_FAIL("the job did not start");
        return 0;
    }
    return id;
}

/* Sum of a job's per-server counts. */
static double servers_sum(const cJSON *job)
{
    double sum = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(job, "servers")) sum += s->valuedouble;
    return sum;
}

/* Reads out.npy: its info and data, or NULL. */
static double *read_result(const char *path, struct npy_info *info)
{
    char err[256];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || npy_read_fd(fd, 1u << 24, 8192, info, err, sizeof err) < 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    double *d = malloc(info->data_len);
    if (d && pread(fd, d, info->data_len, (off_t)info->data_off) != (ssize_t)info->data_len) {
        free(d);
        d = NULL;
    }
    close(fd);
    return d;
}

/* Writes count matrices of order n into in.npy (kept at *a) and submits
 * an invert job of them with `convoy submit`, its result to out (its
 * path, outlen bytes): the submitter's pid. */
static pid_t submit_npy(struct cluster *c, uint64_t count, uint32_t n, double **a, char *out,
                        size_t outlen)
{
    char job[512], in[512];
    snprintf(in, sizeof in, "%s/in.npy", c->dir);
    snprintf(job, sizeof job, "%s/job.json", c->dir);
    snprintf(out, outlen, "%s/out.npy", c->dir);
    CU_ASSERT_FATAL(write_npy(in, count, n, a) == 0);
    CU_ASSERT_FATAL(write_text(job, "{\"op\":\"invert\",\"input\":\"in.npy\"}") == 0);
    return submit(c, "submit", job, out);
}

/* out.npy holds count inverses of order n of the matrices at a, each
 * the kernel's bit for bit, and a good one. */
static void expect_inverses(const char *out, const double *a, uint64_t count, uint32_t n)
{
    struct npy_info info;
    double *x = read_result(out, &info);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT_EQUAL(info.count, count);
    CU_ASSERT_EQUAL(info.n, n);
    size_t nn = (size_t)n * n, same = 0, good = 0;
    double *m = malloc(sizeof(double) * nn);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    for (size_t i = 0; i < count; i++) {
        memcpy(m, a + i * nn, sizeof(double) * nn);
        struct gj_item it = {.a = m, .n = n};
        gj_invert_batch(&it, 1, NULL);
        same += memcmp(m, x + i * nn, sizeof(double) * nn) == 0;
        good += gj_residual(a + i * nn, x + i * nn, n) < 30;
    }
    CU_ASSERT_EQUAL(same, count);
    CU_ASSERT_EQUAL(good, count);
    free(m);
    free(x);
}

/* 1000 items of 64 from a .npy through 3 servers whose edges are as
 * extra says; shm: whether they went through lanes. */
static void three_servers(const char *const *extra, bool shm)
{
    struct cluster c;
    char out[512];
    double *a = NULL;
    CU_ASSERT_FATAL(scene_with(&c, three, NULL, extra) == 0);
    pid_t p = submit_npy(&c, 1000, 64, &a, out, sizeof out);
    CU_ASSERT_EQUAL(h_wait_exit(&c, p, JOB_MS), 0);

    cJSON *sum = h_log_json(&c, "submit");
    CU_ASSERT_EQUAL(h_num(sum, "items"), 1000);
    CU_ASSERT_EQUAL(h_num(sum, "ok"), 1000);
    const cJSON *servers = cJSON_GetObjectItemCaseSensitive(sum, "servers");
    for (size_t i = 0; three[i]; i++)
        CU_ASSERT(h_num(servers, three[i]) > 0);
    CU_ASSERT_EQUAL(servers_sum(sum), 1000);
    cJSON_Delete(sum);

    expect_inverses(out, a, 1000, 64);
    /* on one host the matrices took the lanes, unless told not to */
    CU_ASSERT_EQUAL(h_log_has(&c, "frontend", "event=head_edge"), shm);
    CU_ASSERT_EQUAL(h_log_has(&c, "c1", "event=next_edge next=c2 edge=shm"), shm);
    CU_ASSERT_EQUAL(h_log_has(&c, "c3", "event=result_edge edge=shm"), shm);
    CU_ASSERT_FALSE(h_log_has(&c, "frontend", "lane_refused"));
    free(a);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

static void test_three_servers(void)
{
    three_servers(NULL, true);
}

static void test_three_servers_tls(void)
{
    static const char *const tls[] = {"--edge", "tls", NULL};
    three_servers(tls, false);
}

/* The jobs a server dies in or joins have 10,000 items, a second or more
 * here, so that the event lands mid-job on a faster machine too. */
static void test_middle_killed(void)
{
    struct cluster c;
    pid_t pids[3];
    int st;
    CU_ASSERT_FATAL(scene(&c, three, pids) == 0);
    uint64_t id = running_job(&c,
                              "{\"op\":\"invert\",\"residuals\":true,\"output\":\"none\","
                              "\"generate\":{\"count\":10000,\"n\":128,\"seed\":5,"
                              "\"kind\":\"uniform\"}}",
                              300);
    CU_ASSERT_FATAL(id > 0);
    CU_ASSERT_EQUAL(h_signal(&c, pids[1], SIGKILL, true), 128 + SIGKILL); /* c2, the middle */

    cJSON *j = h_job_wait(&c, id, "done", JOB_MS);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(h_num(j, "ok"), 10000);
    CU_ASSERT_EQUAL(h_num(j, "done"), 10000);
    CU_ASSERT_EQUAL(servers_sum(j), 10000); /* every item counted once */
    CU_ASSERT(h_num(j, "redelegated") >= 1);
    cJSON_Delete(j);

    /* the chain closed over the gap */
    cJSON *s = h_api(&c, "GET", "/v1/servers", NULL, NULL, &st);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(s, "servers");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(arr), 2);
    CU_ASSERT_STRING_EQUAL(h_str(cJSON_GetArrayItem(arr, 0), "name"), "c1");
    CU_ASSERT_STRING_EQUAL(h_str(cJSON_GetArrayItem(arr, 1), "name"), "c3");
    cJSON_Delete(s);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

/* The head killed while the front-end reads a .npy's items into its
 * lane: the rooms of the dead lane are dropped, the items go again
 * through the new head's, and every inverse is still the kernel's. */
static void test_head_killed_lanes(void)
{
    struct cluster c;
    pid_t pids[3];
    char out[512];
    double *a = NULL;
    CU_ASSERT_FATAL(scene(&c, three, pids) == 0);
    pid_t p = submit_npy(&c, 600, 256, &a, out, sizeof out);
    CU_ASSERT_FATAL(wait_done_at_least(&c, 1, 60));                       /* the first job is 1 */
    CU_ASSERT_EQUAL(h_signal(&c, pids[0], SIGKILL, true), 128 + SIGKILL); /* c1, the head */
    CU_ASSERT_EQUAL(h_wait_exit(&c, p, JOB_MS), 0);
    cJSON *sum = h_log_json(&c, "submit");
    CU_ASSERT_EQUAL(h_num(sum, "ok"), 600);
    CU_ASSERT_EQUAL(servers_sum(sum), 600); /* every item counted once */
    cJSON_Delete(sum);
    cJSON *j = h_job_wait(&c, 1, "done", JOB_MS);
    CU_ASSERT(h_num(j, "redelegated") >= 1); /* the head died holding items */
    cJSON_Delete(j);
    expect_inverses(out, a, 600, 256);
    CU_ASSERT(h_log_has(&c, "frontend", "event=head_edge head=c2 edge=shm"));
    CU_ASSERT_FALSE(h_log_has(&c, "frontend", "lane_refused"));
    CU_ASSERT_FALSE(h_log_has(&c, "c2", "lane_refused"));
    free(a);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

static void test_join_mid_job(void)
{
    struct cluster c;
    const char *const one[] = {"c1", NULL};
    CU_ASSERT_FATAL(scene(&c, one, NULL) == 0);
    uint64_t id = running_job(&c,
                              "{\"op\":\"invert\",\"output\":\"none\",\"generate\":"
                              "{\"count\":10000,\"n\":128,\"seed\":9,\"kind\":\"spd\"}}",
                              100);
    CU_ASSERT_FATAL(id > 0);
    CU_ASSERT_FATAL(h_compute(&c, "c2", NULL) > 0);

    cJSON *j = h_job_wait(&c, id, "done", JOB_MS);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(h_num(j, "ok"), 10000);
    const cJSON *servers = cJSON_GetObjectItemCaseSensitive(j, "servers");
    CU_ASSERT(h_num(servers, "c2") > 0);
    CU_ASSERT_EQUAL(servers_sum(j), 10000);
    cJSON_Delete(j);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

/* A singular item and one holding NaN are reported as such; the others
 * are computed; the job completes and the client's exit says not all ok. */
static void test_bad_items(void)
{
    struct cluster c;
    const char *const two[] = {"c1", "c2", NULL};
    char job[512], in[512];
    double *a = NULL;
    CU_ASSERT_FATAL(scene(&c, two, NULL) == 0);
    snprintf(in, sizeof in, "%s/in.npy", c.dir);
    snprintf(job, sizeof job, "%s/job.json", c.dir);
    CU_ASSERT_FATAL(write_npy(in, 40, 16, &a) == 0);
    size_t nn = 16 * 16;
    for (size_t k = 0; k < nn; k++) /* item 3: rank one; item 7: a NaN */
        a[3 * nn + k] = (double)(k / 16 + 1) * (double)(k % 16 + 1);
    a[7 * nn + 5] = NAN;
    FILE *f = fopen(in, "r+");
    uint8_t hdr[128];
    int hlen = npy_write_header(40, 16, hdr, sizeof hdr);
    CU_ASSERT_FATAL(f != NULL && fseek(f, hlen, SEEK_SET) == 0 &&
                    fwrite(a, sizeof(double), 40 * nn, f) == 40 * nn);
    fclose(f);
    CU_ASSERT_FATAL(
        write_text(job, "{\"op\":\"invert\",\"input\":\"in.npy\",\"residuals\":true}") == 0);
    pid_t p = submit(&c, "submit", job, NULL);
    CU_ASSERT_EQUAL(h_wait_exit(&c, p, JOB_MS), 1);
    cJSON *sum = h_log_json(&c, "submit");
    uint64_t id = (uint64_t)h_num(sum, "job");
    CU_ASSERT_EQUAL(h_num(sum, "ok"), 38);
    CU_ASSERT_EQUAL(h_num(sum, "singular"), 1);
    CU_ASSERT_EQUAL(h_num(sum, "invalid"), 1);
    cJSON_Delete(sum);

    char path[64];
    int st;
    snprintf(path, sizeof path, "/v1/jobs/%llu/result", (unsigned long long)id);
    cJSON *r = h_api(&c, "GET", path, NULL, NULL, &st);
    CU_ASSERT_EQUAL(st, 200);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(r, "results");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(items), 40);
    CU_ASSERT_STRING_EQUAL(h_str(cJSON_GetArrayItem(items, 3), "status"), "singular");
    CU_ASSERT_STRING_EQUAL(h_str(cJSON_GetArrayItem(items, 7), "status"), "invalid");
    CU_ASSERT_STRING_EQUAL(h_str(cJSON_GetArrayItem(items, 0), "status"), "ok");
    CU_ASSERT(h_num(cJSON_GetArrayItem(items, 0), "residual") >= 0);
    CU_ASSERT(h_num(cJSON_GetArrayItem(items, 0), "residual") < 30);
    cJSON_Delete(r);
    snprintf(path, sizeof path, "/v1/jobs/%llu/result?first=6&count=3", (unsigned long long)id);
    r = h_api(&c, "GET", path, NULL, NULL, &st); /* a page */
    items = cJSON_GetObjectItemCaseSensitive(r, "results");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(items), 3);
    CU_ASSERT_EQUAL(h_num(cJSON_GetArrayItem(items, 0), "i"), 6);
    CU_ASSERT_STRING_EQUAL(h_str(cJSON_GetArrayItem(items, 1), "status"), "invalid");
    CU_ASSERT_EQUAL(h_num(r, "next"), 9);
    cJSON_Delete(r);
    free(a);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

/* A job without output still lets the user check every item: its
 * checksum is that of the inverse the kernel gives here. */
static void test_checksums(void)
{
    struct cluster c;
    const char *const two[] = {"c1", "c2", NULL};
    char job[512], path[96];
    int st;
    CU_ASSERT_FATAL(scene(&c, two, NULL) == 0);
    snprintf(job, sizeof job, "%s/job.json", c.dir);
    CU_ASSERT_FATAL(write_text(job,
                               "{\"op\":\"invert\",\"output\":\"none\",\"generate\":"
                               "{\"count\":100,\"n\":40,\"seed\":3,\"kind\":\"uniform\"}}") == 0);
    uint64_t id = post_job(&c, job, &st);
    CU_ASSERT_EQUAL_FATAL(st, 201);
    cJSON_Delete(h_job_wait(&c, id, "done", JOB_MS));
    snprintf(path, sizeof path, "/v1/jobs/%llu/result", (unsigned long long)id);
    cJSON *r = h_api(&c, "GET", path, NULL, NULL, &st);
    const cJSON *item;
    int same = 0;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(r, "results"))
    {
        double a[40 * 40];
        char hex[17];
        jgen_item("uniform", 3, (uint64_t)h_num(item, "i"), 40, a);
        struct gj_item it = {.a = a, .n = 40};
        gj_invert_batch(&it, 1, NULL);
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)chain_sum(a, 40));
        same += strcmp(h_str(item, "checksum"), hex) == 0;
    }
    CU_ASSERT_EQUAL(same, 100);
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

/* A malformed job is refused with its JSON path; nothing is spooled. */
static void test_malformed(void)
{
    struct cluster c;
    const char *const one[] = {"c1", NULL};
    char job[512];
    int st;
    CU_ASSERT_FATAL(scene(&c, one, NULL) == 0);
    snprintf(job, sizeof job, "%s/bad.json", c.dir);
    CU_ASSERT_FATAL(write_text(job, "{\"op\":\"invert\",\"generate\":{\"count\":10,\"n\":0,"
                                    "\"seed\":1,\"kind\":\"uniform\"}}") == 0);
    cJSON *doc = h_api(&c, "POST", "/v1/jobs", "application/json", job, &st);
    CU_ASSERT_EQUAL(st, 400);
    CU_ASSERT_PTR_NOT_NULL(strstr(h_str(doc, "error"), "$.generate.n"));
    cJSON_Delete(doc);
    CU_ASSERT_FATAL(write_text(job, "{\"op\":\"invert\",\"matrices\":[[[1,2],[3]]]}") == 0);
    doc = h_api(&c, "POST", "/v1/jobs", "application/json", job, &st);
    CU_ASSERT_EQUAL(st, 400);
    CU_ASSERT_PTR_NOT_NULL(strstr(h_str(doc, "error"), "$.matrices[0][1]"));
    cJSON_Delete(doc);
    CU_ASSERT_FATAL(write_text(job, "not json") == 0);
    doc = h_api(&c, "POST", "/v1/jobs", "application/json", job, &st);
    CU_ASSERT_EQUAL(st, 400);
    CU_ASSERT_PTR_NOT_NULL(strstr(h_str(doc, "error"), "$"));
    cJSON_Delete(doc);
    doc = h_api(&c, "GET", "/v1/jobs", NULL, NULL, &st);
    CU_ASSERT_EQUAL(st, 200);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "jobs")), 0);
    cJSON_Delete(doc);
    cJSON_Delete(h_api(&c, "DELETE", "/v1/servers", NULL, NULL, &st));
    CU_ASSERT_EQUAL(st, 405);
    cJSON_Delete(h_api(&c, "GET", "/v1/jobs/12345", NULL, NULL, &st));
    CU_ASSERT_EQUAL(st, 404);
    CU_ASSERT_FATAL(write_text(job, "{\"op\":\"invert\",\"input\":\"x.npy\"}") == 0);
    doc = h_api(&c, "POST", "/v1/jobs", "application/json", job, &st);
    CU_ASSERT_EQUAL(st, 400); /* an input job comes with its .npy */
    CU_ASSERT_PTR_NOT_NULL(strstr(h_str(doc, "error"), "$.input"));
    cJSON_Delete(doc);
    doc = h_api(&c, "POST", "/v1/jobs", "text/plain", job, &st);
    CU_ASSERT_EQUAL(st, 415);
    cJSON_Delete(doc);
    /* A .npy shorter than its header says: its items were already being
     * delegated as they came, and still the job is refused and gone. */
    char in[512];
    double *a = NULL;
    snprintf(in, sizeof in, "%s/short.npy", c.dir);
    CU_ASSERT_FATAL(write_npy(in, 400, 64, &a) == 0);
    free(a);
    CU_ASSERT_EQUAL_FATAL(truncate(in, 128 + 300 * 64 * 64 * 8 + 100), 0);
    CU_ASSERT_FATAL(write_text(job, "{\"op\":\"invert\",\"input\":\"short.npy\"}") == 0);
    CU_ASSERT_EQUAL(h_wait_exit(&c, submit(&c, "short", job, NULL), JOB_MS), 4);
    CU_ASSERT(h_log_has(&c, "short", "where its header says"));
    CU_ASSERT(h_log_has(&c, "frontend", "event=job_discarded"));
    doc = h_api(&c, "GET", "/v1/jobs", NULL, NULL, &st);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "jobs")), 0);
    cJSON_Delete(doc);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "test \"$(curl -s -o /dev/null -w '%%{http_code}' --cacert %s/ca.crt "
             "https://%s/v1/jobs)\" = 401",
             c.pki, c.http);
    CU_ASSERT_EQUAL(system(cmd), 0); /* no credentials */
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

/* An upload cut mid-.npy (the client killed while its matrices stream
 * into the spool's block): the job is refused and gone, and the next one
 * runs. */
static void test_upload_cut(void)
{
    struct cluster c;
    const char *const one[] = {"c1", NULL};
    CU_ASSERT_FATAL(scene(&c, one, NULL) == 0);
    char npy[512], body[512], url[128], ca[320];
    snprintf(npy, sizeof npy, "%s/cut.npy", c.dir);
    snprintf(body, sizeof body, "@%s/cut.body", c.dir);
    CU_ASSERT_FATAL(write_npy(npy, 400, 64, NULL) == 0);
    const char *json = "{\"op\":\"invert\",\"input\":\"cut.npy\"}";
    uint32_t jl = (uint32_t)strlen(json);
    uint8_t len4[4] = {(uint8_t)(jl >> 24), (uint8_t)(jl >> 16), (uint8_t)(jl >> 8), (uint8_t)jl};
    FILE *out = fopen(body + 1, "w"), *in = fopen(npy, "r");
    CU_ASSERT_FATAL(out != NULL && in != NULL);
    fwrite(len4, 1, 4, out);
    fputs(json, out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        CU_ASSERT_EQUAL(fwrite(buf, 1, n, out), n);
    fclose(in);
    CU_ASSERT_EQUAL_FATAL(fclose(out), 0);
    snprintf(url, sizeof url, "https://%s/v1/jobs", c.http);
    snprintf(ca, sizeof ca, "%s/ca.crt", c.pki);
    pid_t curl = fork();
    CU_ASSERT_FATAL(curl >= 0);
    if (curl == 0) { /* 12.8 MB at 4 MB/s: killed a fifth of the way */
        execlp("curl", "curl", "-s", "-o", "/dev/null", "--cacert", ca, "-u", "alice:secret",
               "--limit-rate", "4M", "-H", "Content-Type: application/x-convoy-job",
               "--data-binary", body, url, (char *)NULL);
        _exit(127);
    }
    usleep(700 * 1000);
    kill(curl, SIGKILL);
    waitpid(curl, NULL, 0);
    bool refused = false;
    for (int i = 0; i < 250 && !refused; i++, usleep(20 * 1000))
        refused = h_log_has(&c, "frontend", "the upload broke");
    CU_ASSERT_TRUE(refused);
    int st;
    cJSON *doc = h_api(&c, "GET", "/v1/jobs", NULL, NULL, &st);
    CU_ASSERT_EQUAL(st, 200);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "jobs")), 0);
    cJSON_Delete(doc);
    char job[512];
    snprintf(job, sizeof job, "%s/gen.json", c.dir);
    CU_ASSERT_FATAL(write_text(job, "{\"op\":\"invert\",\"generate\":{\"count\":50,"
                                    "\"n\":32,\"seed\":3,\"kind\":\"uniform\"}}") == 0);
    CU_ASSERT_EQUAL(h_wait_exit(&c, submit(&c, "after", job, NULL), JOB_MS), 0);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

static void test_frontend_restarted(void)
{
    struct cluster c;
    CU_ASSERT_FATAL(scene(&c, three, NULL) == 0);
    uint64_t id = running_job(&c,
                              "{\"op\":\"invert\",\"generate\":{\"count\":3000,\"n\":128,"
                              "\"seed\":11,\"kind\":\"uniform\"}}",
                              300);
    CU_ASSERT_FATAL(id > 0);
    pid_t fe = c.procs[0].pid; /* the front-end is the first process started */
    CU_ASSERT_EQUAL(h_signal(&c, fe, SIGKILL, true), 128 + SIGKILL);
    CU_ASSERT_FATAL(h_frontend(&c, NULL) > 0);

    cJSON *j = h_job_wait(&c, id, "done", JOB_MS);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(h_num(j, "ok"), 3000);
    CU_ASSERT_EQUAL(servers_sum(j), 3000);
    cJSON_Delete(j);

    /* its results are served from the spool, whole */
    char path[64], out[512], cmd[2048];
    snprintf(path, sizeof path, "/v1/jobs/%llu/result.npy", (unsigned long long)id);
    snprintf(cmd, sizeof cmd,
             "curl -s -f --cacert %s/ca.crt -u alice:secret -o %s/r.npy "
             "https://%s%s",
             c.pki, c.dir, c.http, path);
    CU_ASSERT_EQUAL(system(cmd), 0);
    snprintf(out, sizeof out, "%s/r.npy", c.dir);
    struct npy_info info;
    double *x = read_result(out, &info);
    CU_ASSERT_PTR_NOT_NULL(x);
    CU_ASSERT_EQUAL(info.count, 3000);
    free(x);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

/* The peak resident size of process pid, in KiB (-1 if unknown). */
static long peak_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kib = atol(line + 6);
    if (f)
        fclose(f);
    return kib;
}

/* A 512 MiB job costs the front-end its window, not its size. */
static void test_big_npy(void)
{
    struct cluster c;
    const char *const two[] = {"c1", "c2", NULL};
    char job[512], in[512];
    CU_ASSERT_FATAL(scene(&c, two, NULL) == 0);
    snprintf(in, sizeof in, "%s/big.npy", c.dir);
    snprintf(job, sizeof job, "%s/job.json", c.dir);
    CU_ASSERT_FATAL(write_npy(in, 4096, 128, NULL) == 0); /* 4096 · 128 KiB */
    struct stat sb;
    CU_ASSERT_FATAL(stat(in, &sb) == 0 && sb.st_size > 512ll << 20);
    CU_ASSERT_FATAL(
        write_text(job, "{\"op\":\"invert\",\"input\":\"big.npy\",\"output\":\"none\"}") == 0);
    pid_t p = submit(&c, "submit", job, NULL);
    CU_ASSERT_EQUAL(h_wait_exit(&c, p, JOB_MS), 0);
    cJSON *sum = h_log_json(&c, "submit");
    CU_ASSERT_EQUAL(h_num(sum, "ok"), 4096);
    cJSON_Delete(sum);
    long kib = peak_kib(c.procs[0].pid);
    if (kib > 160 * 1024)
        fprintf(stderr, "chain: front-end peak RSS %ld KiB for a %lld MiB job\n", kib,
                (long long)(sb.st_size >> 20));
#ifndef __SANITIZE_ADDRESS__ /* ASan keeps freed memory in quarantine: no RSS to read */
    CU_ASSERT(kib > 0 && kib < 160 * 1024); /* 64 MiB + the window */
#endif
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

/* A server stopped with SIGTERM mid-job drains: it finishes what it
 * accepted, says BYE and exits 0; the job completes, every item once. */
static void test_drain(void)
{
    struct cluster c;
    pid_t pids[3];
    CU_ASSERT_FATAL(scene(&c, three, pids) == 0);
    uint64_t id = running_job(&c,
                              "{\"op\":\"invert\",\"output\":\"none\",\"generate\":"
                              "{\"count\":3000,\"n\":128,\"seed\":2,\"kind\":\"uniform\"}}",
                              300);
    CU_ASSERT_FATAL(id > 0);
    CU_ASSERT_EQUAL(h_signal(&c, pids[1], SIGTERM, false), 0);
    CU_ASSERT_EQUAL(h_wait_exit(&c, pids[1], 10000), 0);
    CU_ASSERT(h_log_has(&c, "c2", "event=stopped"));

    cJSON *j = h_job_wait(&c, id, "done", JOB_MS);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(h_num(j, "ok"), 3000);
    CU_ASSERT_EQUAL(servers_sum(j), 3000);
    CU_ASSERT(h_num(cJSON_GetObjectItemCaseSensitive(j, "servers"), "c2") > 0);
    cJSON_Delete(j);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

/* With no compute server a job waits, and says why; the first server to
 * join runs it. A job past its deadline is cancelled. */
static void test_waiting_and_deadline(void)
{
    struct cluster c;
    char job[512], path[64];
    int st;
    CU_ASSERT_FATAL(h_chain_init(&c, three) == 0 && h_frontend(&c, NULL) > 0);
    snprintf(job, sizeof job, "%s/job.json", c.dir);
    CU_ASSERT_FATAL(write_text(job, "{\"op\":\"invert\",\"generate\":{\"count\":50,\"n\":32,"
                                    "\"seed\":4,\"kind\":\"spd\"}}") == 0);
    uint64_t id = post_job(&c, job, &st);
    CU_ASSERT_EQUAL_FATAL(st, 201);
    snprintf(path, sizeof path, "/v1/jobs/%llu", (unsigned long long)id);
    usleep(300 * 1000);
    cJSON *j = h_api(&c, "GET", path, NULL, NULL, &st);
    CU_ASSERT_STRING_EQUAL(h_str(j, "state"), "waiting");
    CU_ASSERT_PTR_NOT_NULL(strstr(h_str(j, "waiting"), "no compute server"));
    cJSON_Delete(j);
    CU_ASSERT_FATAL(h_compute(&c, "c1", NULL) > 0);
    j = h_job_wait(&c, id, "done", JOB_MS);
    CU_ASSERT_EQUAL(h_num(j, "ok"), 50);
    cJSON_Delete(j);

    /* far more than a second's work, with one second to do it */
    CU_ASSERT_FATAL(write_text(job, "{\"op\":\"invert\",\"output\":\"none\",\"deadline_s\":1,"
                                    "\"generate\":{\"count\":200000,\"n\":128,\"seed\":4,"
                                    "\"kind\":\"uniform\"}}") == 0);
    id = post_job(&c, job, &st);
    CU_ASSERT_EQUAL_FATAL(st, 201);
    j = h_job_wait(&c, id, "cancelled", 10000);
    CU_ASSERT_PTR_NOT_NULL(j);
    CU_ASSERT(h_num(j, "done") < 200000);
    cJSON_Delete(j);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

/* Many jobs at once from convoy loadgen submit: every one done, all ok. */
static void test_loadgen(void)
{
    struct cluster c;
    const char *const two[] = {"c1", "c2", NULL};
    char job[512], url[64], ca[320];
    CU_ASSERT_FATAL(scene(&c, two, NULL) == 0);
    snprintf(job, sizeof job, "%s/job.json", c.dir);
    CU_ASSERT_FATAL(write_text(job,
                               "{\"op\":\"invert\",\"output\":\"none\",\"generate\":"
                               "{\"count\":200,\"n\":64,\"seed\":1,\"kind\":\"uniform\"}}") == 0);
    snprintf(url, sizeof url, "https://%s", c.http);
    snprintf(ca, sizeof ca, "%s/ca.crt", c.pki);
    const char *const args[] = {"loadgen",       "submit", "--frontend", url, "--cacert", ca,
                                "--user",        "alice",  "--clients",  "4", "--jobs",   "20",
                                "--max-seconds", "60",     "--json",     job, NULL};
    pid_t p = h_convoy(&c, "loadgen", args);
    CU_ASSERT_EQUAL(h_wait_exit(&c, p, JOB_MS), 0);
    cJSON *r = h_log_json(&c, "loadgen");
    CU_ASSERT_EQUAL(h_num(r, "jobs"), 20);
    CU_ASSERT_EQUAL(h_num(r, "ok"), 20);
    CU_ASSERT_EQUAL(h_num(r, "errors"), 0);
    CU_ASSERT_EQUAL(h_num(r, "items"), 4000);
    cJSON_Delete(r);
    int st;
    cJSON *doc = h_api(&c, "GET", "/v1/jobs", NULL, NULL, &st);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "jobs")), 20);
    cJSON_Delete(doc);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

void suite_chain(void)
{
    CU_pSuite s = CU_add_suite("chain", NULL, NULL);
    CU_add_test(s, "3 servers on one host, 1000 64x64 from a .npy through lanes: the kernel's bits",
                test_three_servers);
    CU_add_test(s, "the same with --edge tls: no lane, the same bits", test_three_servers_tls);
    CU_add_test(s, "the middle server killed mid-job: done, every item once, redelegated",
                test_middle_killed);
    CU_add_test(s, "the head killed mid-job of a .npy through lanes: the kernel's bits",
                test_head_killed_lanes);
    CU_add_test(s, "a server joining mid-job gets items", test_join_mid_job);
    CU_add_test(s, "singular and NaN items reported per item, the others ok", test_bad_items);
    CU_add_test(s, "output none: every item's checksum is the local kernel's", test_checksums);
    CU_add_test(s, "malformed jobs: 400 with the JSON path, nothing kept", test_malformed);
    CU_add_test(s, "an upload cut mid-.npy: refused and gone, the next job runs", test_upload_cut);
    CU_add_test(s, "the front-end killed and restarted mid-job: the job completes",
                test_frontend_restarted);
    CU_add_test(s, "a 512 MiB .npy job: front-end RSS bounded", test_big_npy);
    CU_add_test(s, "convoy loadgen submit: 4 clients x 20 jobs, all done", test_loadgen);
    CU_add_test(s, "a server drained mid-job finishes its part and exits 0", test_drain);
    CU_add_test(s, "no server: the job waits, then runs; past its deadline: cancelled",
                test_waiting_and_deadline);
}
