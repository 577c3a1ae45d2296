/*
 * convoy loadgen submit: N clients on one ring, each submitting the job
 * file, polling it until it ends (a ring timer, so a waiting client costs
 * nothing), then submitting the next, until M jobs have ended or the time
 * is up. Latency runs from the POST to the poll that sees the job done;
 * items/s counts the items of the jobs done. Requests are hreq's, many in
 * flight on the one ring.
 */
#include "cli.h"
#include "client.h"

#include "convoy/hreq.h"
#include "convoy/lgstat.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LGS_POLL_MS 100
#define LGS_JOB_MAX (16u << 20)
#define LGS_ANSWER  (64u * 1024) /* a job's state document */

struct lgs;

struct lgs_client {
    struct lgs *lg;
    hreq_t *q; /* NULL between requests */
    uint64_t id, t0_ms;
    char answer[LGS_ANSWER];
    size_t alen;
    struct ring_timer poll;
    bool waiting; /* poll armed */
};

struct lgs {
    ring_t *ring;
    struct cli_client cl;
    char headers[XGET_AUTH_MAX + 64];
    char *job;
    size_t job_len;
    uint64_t jobs, started, ended, items;
    unsigned running;
    bool stopping;
    lgstat_t *stat;
    struct lgs_client *c;
    uint32_t nclients;
    struct ring_timer hard;
    uint64_t t0_ms;
};

static void lgs_next(struct lgs_client *c);
static void lgs_ask(struct lgs_client *c);

static int lgs_body(void *arg, const uint8_t *p, size_t len)
{
    struct lgs_client *c = arg;
    if (c->alen + len >= sizeof c->answer)
        return -EMSGSIZE;
    memcpy(c->answer + c->alen, p, len);
    c->alen += len;
    c->answer[c->alen] = '\0';
    return 0;
}

/* One job ended (ok, or failed with kind e). */
static void lgs_end(struct lgs_client *c, bool ok, enum lgstat_err e, double items)
{
    struct lgs *lg = c->lg;
    lg->ended++;
    if (ok) {
        lgstat_ok(lg->stat, (ring_now_ms() - c->t0_ms) * 1000, (uint64_t)items, NULL);
        lg->items += (uint64_t)items;
    } else
        lgstat_fail(lg->stat, e);
    lg->running--;
    lgs_next(c);
}

static enum lgstat_err lgs_kind(int err, int status)
{
    if (err != 0)
        return LGSTAT_E_NETWORK;
    return status == 401 || status == 403 || status == 429 ? LGSTAT_E_AUTH
           : status == 404                                 ? LGSTAT_E_NOTFOUND
           : status == 503                                 ? LGSTAT_E_NOSERVER
                                                           : LGSTAT_E_OTHER;
}

static double lgs_num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static void lgs_poll_fired(struct ring_timer *t)
{
    struct lgs_client *c = container_of(t, struct lgs_client, poll);
    c->waiting = false;
    lgs_ask(c);
}

/* An answer: the POST's (the id) or a poll's (the state). */
static void lgs_done(void *arg, int err, int status, const char *why)
{
    struct lgs_client *c = arg;
    c->q = NULL;
    if (err != 0 || status < 200 || status >= 300) {
        fprintf(stderr, "convoy loadgen: job %llu: %d %s\n", (unsigned long long)c->id, status,
                err ? why : c->answer);
        lgs_end(c, false, lgs_kind(err, status), 0);
        return;
    }
    cJSON *doc = cJSON_Parse(c->answer);
    const char *state = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "state"));
    if (c->id == 0) {
        double id = lgs_num(doc, "id");
        c->id = id >= 1 ? (uint64_t)id : 0;
    }
    if (c->id == 0 || state == NULL) {
        lgs_end(c, false, LGSTAT_E_OTHER, 0);
    } else if (strcmp(state, "done") == 0) {
        double items = lgs_num(doc, "items");
        lgs_end(c, lgs_num(doc, "ok") == items, LGSTAT_E_OTHER, items);
    } else if (strcmp(state, "cancelled") == 0 || strcmp(state, "failed") == 0) {
        lgs_end(c, false, LGSTAT_E_OTHER, 0);
    } else if (c->lg->stopping) {
        lgs_end(c, false, LGSTAT_E_TIMEOUT, 0);
    } else {
        c->waiting = true;
        ring_timer_start(c->lg->ring, &c->poll, LGS_POLL_MS, lgs_poll_fired);
    }
    cJSON_Delete(doc);
}

static void lgs_send(struct lgs_client *c, enum http_method m, const char *target)
{
    struct lgs *lg = c->lg;
    struct hreq_opts o = {.url = &lg->cl.url,
                          .tls = lg->cl.tls,
                          .method = m,
                          .target = target,
                          .headers = lg->headers,
                          .body = m == HTTP_POST ? lg->job : NULL,
                          .body_len = m == HTTP_POST ? lg->job_len : 0,
                          .body_fd = -1};
    const struct hreq_sink s = {.body = lgs_body, .done = lgs_done, .arg = c};
    c->alen = 0;
    c->answer[0] = '\0';
    int rc = hreq_start(&c->q, lg->ring, &o, &s);
    if (rc < 0) {
        c->q = NULL;
        fprintf(stderr, "convoy loadgen: request: %s\n", strerror(-rc));
        lgs_end(c, false, LGSTAT_E_OTHER, 0);
    }
}

static void lgs_ask(struct lgs_client *c)
{
    char target[64];
    snprintf(target, sizeof target, "/v1/jobs/%llu", (unsigned long long)c->id);
    lgs_send(c, HTTP_GET, target);
}

static void lgs_next(struct lgs_client *c)
{
    struct lgs *lg = c->lg;
    if (!lg->stopping && lg->started < lg->jobs) {
        lg->started++;
        lg->running++;
        c->id = 0;
        c->t0_ms = ring_now_ms();
        lgs_send(c, HTTP_POST, "/v1/jobs");
        return;
    }
    if (lg->running == 0)
        ring_stop(lg->ring);
}

/* Time is up: requests in flight are cancelled, waits end at their next poll. */
static void lgs_hard_fired(struct ring_timer *t)
{
    struct lgs *lg = container_of(t, struct lgs, hard);
    lg->stopping = true;
    for (uint32_t i = 0; i < lg->nclients; i++) {
        struct lgs_client *c = &lg->c[i];
        if (c->q)
            hreq_cancel(c->q);
        else if (c->waiting) {
            ring_timer_stop(lg->ring, &c->poll);
            c->waiting = false;
            lgs_end(c, false, LGSTAT_E_TIMEOUT, 0);
        }
    }
}

static void lgs_report(struct lgs *lg, bool json)
{
    struct lgstat_summary m;
    double secs = (double)(ring_now_ms() - lg->t0_ms) / 1000.0;
    lgstat_summary(lg->stat, secs, &m);
    double ips = secs > 0 ? (double)lg->items / secs : 0;
    if (json) {
        printf("{\"jobs\": %llu, \"ok\": %llu, \"errors\": %llu, \"seconds\": %.2f, "
               "\"jobs_per_s\": %.2f, \"items\": %llu, \"items_per_s\": %.1f, "
               "\"latency_ms\": {\"p50\": %.2f, \"p99\": %.2f, \"max\": %.2f}}\n",
               (unsigned long long)m.requests, (unsigned long long)m.ok,
               (unsigned long long)m.errors, secs, m.rps, (unsigned long long)lg->items, ips,
               m.p50_ms, m.p99_ms, m.max_ms);
        return;
    }
    printf("jobs           %llu (%llu ok, %llu failed) in %.2f s\n", (unsigned long long)m.requests,
           (unsigned long long)m.ok, (unsigned long long)m.errors, secs);
    printf("jobs/s         %.2f\nitems/s        %.1f (%llu items)\n", m.rps, ips,
           (unsigned long long)lg->items);
    printf("latency ms     p50 %.2f  p99 %.2f  max %.2f\n", m.p50_ms, m.p99_ms, m.max_ms);
    for (int e = 0; e < LGSTAT_E_COUNT; e++)
        if (m.err[e])
            printf("errors %-7s %llu\n", lgstat_err_str(e), (unsigned long long)m.err[e]);
}

static int lgs_load(struct lgs *lg, const char *path)
{
    FILE *f = fopen(path, "re");
    lg->job = f ? malloc(LGS_JOB_MAX + 1) : NULL;
    lg->job_len = lg->job ? fread(lg->job, 1, LGS_JOB_MAX + 1, f) : 0;
    bool bad = lg->job == NULL || ferror(f) || lg->job_len == 0 || lg->job_len > LGS_JOB_MAX;
    if (f)
        fclose(f);
    if (bad)
        fprintf(stderr, "convoy loadgen: %s: unreadable, empty or over %u MiB\n", path,
                LGS_JOB_MAX >> 20);
    return bad ? -1 : 0;
}

int cmd_loadgen_submit(int argc, char **argv)
{
    const char *url = NULL, *cacert = NULL, *user = NULL;
    uint32_t clients = 1, jobs = 1, max_s = 600;
    bool json = false, plain = false;
    const struct cli_opt opts[] = {
        CLI_OPT_STR("frontend", &url, "URL", "https://HOST:PORT of the front-end", true),
        CLI_OPT_STR("cacert", &cacert, "FILE", "the cluster's CA certificate (for https)", false),
        CLI_OPT_STR("user", &user, "NAME",
                    "HTTP Basic user; password from CONVOY_PASSWORD or asked", false),
        CLI_OPT_U32("clients", &clients, "N", "jobs in flight at once (default 1)", 1, 10000),
        CLI_OPT_U32("jobs", &jobs, "M", "jobs in all, over every client (default 1)", 1, 10000000),
        CLI_OPT_U32("max-seconds", &max_s, "S", "give up on what still runs after S (default 600)",
                    1, 86400),
        CLI_OPT_FLAG("plain-auth", &plain, "allow credentials over http://"),
        CLI_OPT_FLAG("json", &json, "one JSON object instead of the table"),
    };
    const struct cli_cmd cmd = {
        "loadgen", "submit --frontend URL --clients N --jobs M JOB.json",
        "Submits JOB.json (JSON only: inline or generated matrices) M times with N\n"
        "clients on one io_uring loop, each waiting for its job to end before the\n"
        "next, and prints jobs/s, items/s, latency p50/p99/max and errors by kind.\n"
        "Exit status: 0 when every job ended done with every item ok, 1 otherwise.",
        opts, sizeof opts / sizeof opts[0]};
    char **args;
    int nargs;
    int rc = cli_parse_args(&cmd, argc, argv, &args, &nargs, 1);
    if (rc >= 0)
        return rc;
    struct lgs lg = {.jobs = jobs, .nclients = clients};
    if (lgs_load(&lg, args[0]) < 0) {
        free(lg.job);
        return 1;
    }
    if ((rc = cli_client_setup(&lg.cl, "loadgen", url, cacert, user, plain)) != XGET_OK) {
        free(lg.job);
        return rc;
    }
    snprintf(lg.headers, sizeof lg.headers, "Content-Type: application/json\r\n%s%s%s",
             lg.cl.auth[0] ? "Authorization: " : "", lg.cl.auth, lg.cl.auth[0] ? "\r\n" : "");
    struct ring_opts ro = {.entries = 256, .cq_entries = 1024 + 4 * clients};
    rc = ring_create_opts(&lg.ring, &ro);
    if (rc == 0 && (rc = lgstat_new(&lg.stat)) == 0 &&
        (lg.c = calloc(clients, sizeof *lg.c)) == NULL)
        rc = -ENOMEM;
    if (rc == 0) {
        lg.t0_ms = ring_now_ms();
        ring_timer_start(lg.ring, &lg.hard, (uint64_t)max_s * 1000, lgs_hard_fired);
        for (uint32_t i = 0; i < clients; i++) {
            lg.c[i].lg = &lg;
            lgs_next(&lg.c[i]);
        }
        rc = lg.running ? ring_run(lg.ring) : 0;
        ring_timer_stop(lg.ring, &lg.hard);
    }
    int code = 1;
    if (rc == 0) {
        lgs_report(&lg, json);
        struct lgstat_summary m;
        lgstat_summary(lg.stat, 1, &m);
        code = m.errors == 0 && m.ok == jobs ? 0 : 1;
    } else
        fprintf(stderr, "convoy loadgen: %s\n", strerror(-rc));
    if (lg.ring)
        ring_destroy(lg.ring);
    free(lg.c);
    lgstat_free(lg.stat);
    free(lg.job);
    cli_client_free(&lg.cl);
    return code;
}
