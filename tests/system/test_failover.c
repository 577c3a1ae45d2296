/*
 * failover: what a user of the file-transfer slice counts on when servers
 * come and go, each scene with a real balancer, real file servers and the
 * real `convoy get` / `convoy loadgen get`:
 *
 *   - the file server sending a 256 MiB download is SIGKILLed mid-way: the
 *     download finishes on another server with the right digest, and the
 *     record holds two legs, the second starting where the first stopped;
 *   - the balancer is SIGKILLed and restarted mid-download: the download
 *     finishes and its record, kept across the restart, ends done;
 *   - 20 clients make 300 downloads of mixed sizes from 3 servers: every
 *     digest matches, every record is done with one leg, and least-conn
 *     spreads them within ±20 % of equal;
 *   - a draining server gets no new transfer and finishes its active one
 *     before it leaves.
 *
 * Downloads are slowed with --limit-rate so that "mid-way" is a moment a
 * test can find by polling the table; every wait is bounded.
 */
#include "harness.h"

#include <CUnit/CUnit.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MiB       (1024u * 1024)
#define GET_MS    60000u /* the longest a download here may take */
#define RECORD_MS 5000u  /* from a download's end to its record's */

static const char *const three[] = {"fs1", "fs2", "fs3", NULL};
static const char *const two[] = {"fs1", "fs2", NULL};

/* The scene: servers, each file put before they start (so their first
 * catalogs hold it), the balancer. */
static int scene(struct cluster *c, const char *const *servers, const char *const *files,
                 const size_t *sizes, unsigned char (*sha)[32], pid_t *pids)
{
    if (h_front_init(c, servers) < 0)
        return -1;
    for (size_t i = 0; files[i]; i++)
        if (h_put_pattern(c, files[i], sizes[i], sha[i]) < 0)
            return -1;
    return h_front_balancer(c, NULL) < 0 || h_front_servers(c, servers, pids) < 0 ? -1 : 0;
}

/* `convoy get PATH -o OUT` in the background, at most rate bytes/s. */
static pid_t start_get(struct cluster *c, const char *path, const char *out, const char *rate)
{
    char url[64], ca[320];
    snprintf(url, sizeof url, "https://%s", c->http);
    snprintf(ca, sizeof ca, "%s/ca.crt", c->pki);
    const char *const args[] = {
        "get",          "--balancer", url,  "--cacert", ca,  "--user",     "alice", "--quiet",
        "--limit-rate", rate,         path, "-o",       out, "--stall-ms", "1000",  NULL};
    return h_convoy(c, "get", args);
}

/* Waits until path's newest record is active with at least `bytes` sent on
 * its last leg; that leg's server into server. 0 or -1 after 20 s. */
static int wait_sent(struct cluster *c, const char *path, double bytes, char *server, size_t len)
{
    for (int waited = 0; waited < 20000; waited += 50) {
        cJSON *doc = h_transfers(c);
        const cJSON *t = h_transfer(doc, path);
        const cJSON *legs = cJSON_GetObjectItemCaseSensitive(t, "legs");
        const cJSON *leg = cJSON_GetArrayItem(legs, cJSON_GetArraySize(legs) - 1);
        int got = strcmp(h_str(t, "state"), "active") == 0 && h_num(leg, "bytes") >= bytes;
        if (got)
            snprintf(server, len, "%s", h_str(leg, "server"));
        cJSON_Delete(doc);
        if (got)
            return 0;
        usleep(50 * 1000);
    }
    fprintf(stderr, "failover: %s never had %.0f bytes sent\n", path, bytes);
    return -1;
}

/* The newest record of path once it is done: a copy (caller frees), or NULL
 * after RECORD_MS (said on stderr with the state last seen). */
static cJSON *done_record(struct cluster *c, const char *path)
{
    char last[32] = "none";
    for (unsigned waited = 0; waited < RECORD_MS; waited += 50) {
        cJSON *doc = h_transfers(c);
        const cJSON *t = h_transfer(doc, path);
        snprintf(last, sizeof last, "%s", t ? h_str(t, "state") : "none");
        cJSON *copy = strcmp(last, "done") == 0 ? cJSON_Duplicate(t, 1) : NULL;
        cJSON_Delete(doc);
        if (copy)
            return copy;
        usleep(50 * 1000);
    }
    fprintf(stderr, "failover: %s: record %s, not done\n", path, last);
    return NULL;
}

/* Whether file out has the digest sha. */
static int same_digest(const char *out, const unsigned char sha[32])
{
    unsigned char got[32];
    return h_sha256_file(out, got) == 0 && memcmp(got, sha, 32) == 0;
}

static pid_t pid_of(const char *const *names, const pid_t *pids, const char *name)
{
    for (size_t i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0)
            return pids[i];
    return -1;
}

/* A download under way: the scene, the `convoy get` of file, and the server
 * sending it once `at` bytes are out. */
struct under_way {
    struct cluster c;
    const char *const *servers;
    const char *file;
    pid_t pids[3], get;
    unsigned char sha[2][32];
    char out[512], server[64];
};

/* Starts the scene with file (size bytes, and small.bin beside it) and
 * its download at rate; returns once `at` bytes are sent. 0 or -1. */
static int under_way(struct under_way *u, const char *const *servers, const char *file, size_t size,
                     const char *rate, double at)
{
    const char *const files[] = {file, "small.bin", NULL};
    const size_t sizes[] = {size, 4096};
    u->servers = servers;
    u->file = file;
    if (scene(&u->c, servers, files, sizes, u->sha, u->pids) < 0)
        return -1;
    snprintf(u->out, sizeof u->out, "%s/%s.out", u->c.dir, file);
    if ((u->get = start_get(&u->c, file, u->out, rate)) < 0)
        return -1;
    return wait_sent(&u->c, file, at, u->server, sizeof u->server);
}

/* The download ended well: exit 0, the file's digest, its record done
 * with nlegs legs (a copy, which the caller frees), or NULL. */
static cJSON *finished(struct under_way *u, int nlegs)
{
    CU_ASSERT_EQUAL(h_wait_exit(&u->c, u->get, GET_MS), 0);
    CU_ASSERT(same_digest(u->out, u->sha[0]));
    cJSON *t = done_record(&u->c, u->file);
    CU_ASSERT_PTR_NOT_NULL(t);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t, "legs")), nlegs);
    return t;
}

static const cJSON *leg_of(const cJSON *t, int i)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(t, "legs"), i);
}

static void test_server_killed(void)
{
    struct under_way u;
    CU_ASSERT_FATAL(under_way(&u, three, "big.bin", 256 * MiB, "96M", 48.0 * MiB) == 0);
    pid_t victim = pid_of(three, u.pids, u.server);
    CU_ASSERT_EQUAL(h_signal(&u.c, victim, SIGKILL, true), 128 + SIGKILL);

    cJSON *t = finished(&u, 2);
    const cJSON *first = leg_of(t, 0), *second = leg_of(t, 1);
    CU_ASSERT_STRING_EQUAL(h_str(first, "server"), u.server);
    CU_ASSERT_STRING_EQUAL(h_str(first, "outcome"), "interrupted");
    CU_ASSERT_STRING_NOT_EQUAL(h_str(second, "server"), u.server);
    CU_ASSERT_STRING_EQUAL(h_str(second, "outcome"), "complete");
    CU_ASSERT(h_num(second, "first_byte") >= 48.0 * MiB);
    CU_ASSERT_EQUAL(h_num(second, "first_byte") + h_num(second, "bytes"), 256.0 * MiB);
    cJSON_Delete(t);
    CU_ASSERT_EQUAL(h_cluster_free(&u.c), 0);
}

static void test_balancer_restarted(void)
{
    struct under_way u;
    CU_ASSERT_FATAL(under_way(&u, two, "mid.bin", 96 * MiB, "32M", 16.0 * MiB) == 0);
    pid_t bal = u.c.procs[0].pid; /* the balancer is the first process started */
    CU_ASSERT_EQUAL(h_signal(&u.c, bal, SIGKILL, true), 128 + SIGKILL);
    CU_ASSERT_FATAL(h_front_balancer(&u.c, NULL) > 0);

    cJSON *t = finished(&u, 1);
    CU_ASSERT_STRING_EQUAL(h_str(leg_of(t, 0), "server"), u.server);
    CU_ASSERT_STRING_EQUAL(h_str(leg_of(t, 0), "outcome"), "complete");
    CU_ASSERT_EQUAL(h_num(leg_of(t, 0), "bytes"), 96.0 * MiB);
    cJSON_Delete(t);
    CU_ASSERT_EQUAL(h_cluster_free(&u.c), 0);
}

static void test_loadgen_spread(void)
{
    struct cluster c;
    const char *const files[] = {"s4k.bin", "s64k.bin", "s1m.bin", "s4m.bin", NULL};
    const size_t sizes[] = {4096, 64 * 1024, MiB, 4 * MiB};
    unsigned char sha[4][32];
    char url[64], ca[320];
    CU_ASSERT_FATAL(scene(&c, three, files, sizes, sha, NULL) == 0);
    snprintf(url, sizeof url, "https://%s", c.http);
    snprintf(ca, sizeof ca, "%s/ca.crt", c.pki);
    const char *const args[] = {"loadgen",    "get",    "--balancer",    url,         "--cacert",
                                ca,           "--user", "alice",         "--clients", "20",
                                "--requests", "300",    "--max-seconds", "60",        "--json",
                                files[0],     files[1], files[2],        files[3],    NULL};
    pid_t lg = h_convoy(&c, "loadgen", args);
    CU_ASSERT_FATAL(lg > 0);
    CU_ASSERT_EQUAL(h_wait_exit(&c, lg, 90000), 0);

    cJSON *r = h_log_json(&c, "loadgen");
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(h_num(r, "ok"), 300);
    CU_ASSERT_EQUAL(h_num(r, "errors"), 0);
    const cJSON *servers = cJSON_GetObjectItemCaseSensitive(r, "servers");
    for (size_t i = 0; three[i]; i++) {
        double n = h_num(servers, three[i]);
        if (n < 80 || n > 120)
            fprintf(stderr, "failover: %s served %.0f of 300\n", three[i], n);
        CU_ASSERT(n >= 80 && n <= 120);
    }
    cJSON_Delete(r);

    /* Every record ends done with one complete leg of the file's size. */
    unsigned done = 0;
    for (unsigned waited = 0; waited < RECORD_MS && done < 300; waited += 100) {
        cJSON *doc = h_transfers(&c);
        const cJSON *t;
        done = 0;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(doc, "transfers"))
        {
            const cJSON *legs = cJSON_GetObjectItemCaseSensitive(t, "legs");
            const cJSON *leg = cJSON_GetArrayItem(legs, 0);
            done += strcmp(h_str(t, "state"), "done") == 0 && cJSON_GetArraySize(legs) == 1 &&
                    strcmp(h_str(leg, "outcome"), "complete") == 0 &&
                    h_num(leg, "bytes") == h_num(t, "size");
        }
        cJSON_Delete(doc);
        if (done < 300)
            usleep(100 * 1000);
    }
    CU_ASSERT_EQUAL(done, 300);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

static void test_drain(void)
{
    struct under_way u;
    char cmd[1024];
    CU_ASSERT_FATAL(under_way(&u, two, "long.bin", 48 * MiB, "16M", 4.0 * MiB) == 0);
    pid_t busy = pid_of(two, u.pids, u.server);
    const char *other = strcmp(u.server, "fs1") == 0 ? "fs2" : "fs1";
    CU_ASSERT_EQUAL(h_signal(&u.c, busy, SIGTERM, false), 0);
    CU_ASSERT(h_wait_state(&u.c, u.server, "draining", 3000) >= 0);

    /* New transfers while it drains all go to the other server. */
    for (int i = 0; i < 5; i++) {
        snprintf(cmd, sizeof cmd,
                 "curl -sS -f --max-time 10 --cacert %s/ca.crt -L -u alice:secret "
                 "-o /dev/null https://%s/f/small.bin",
                 u.c.pki, u.c.http);
        CU_ASSERT_EQUAL(system(cmd), 0);
        cJSON *t = done_record(&u.c, "small.bin");
        CU_ASSERT_STRING_EQUAL(h_str(leg_of(t, 0), "server"), other);
        cJSON_Delete(t);
    }

    /* The active one finishes where it started, then the server leaves. */
    cJSON *t = finished(&u, 1);
    CU_ASSERT_STRING_EQUAL(h_str(leg_of(t, 0), "server"), u.server);
    cJSON_Delete(t);
    CU_ASSERT_EQUAL(h_wait_exit(&u.c, busy, 10000), 0);
    CU_ASSERT(h_wait_state(&u.c, u.server, "gone", 3000) >= 0);
    CU_ASSERT_EQUAL(h_cluster_free(&u.c), 0);
}

void suite_failover(void)
{
    CU_pSuite s = CU_add_suite("failover", NULL, NULL);
    CU_add_test(s, "file server killed mid-download: resumed elsewhere, digest ok, two legs",
                test_server_killed);
    CU_add_test(s, "balancer killed and restarted mid-download: the record ends done",
                test_balancer_restarted);
    CU_add_test(s, "loadgen 20 clients x 300 downloads: digests, one leg each, spread +-20%",
                test_loadgen_spread);
    CU_add_test(s, "a draining server gets nothing new and finishes its active transfer",
                test_drain);
}
