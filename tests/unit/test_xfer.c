/* xfer: the transfer state machine, the table, the log, the XFER messages. */
#include "convoy/xfer.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TTL  60000u
#define T0   1700000000000ull /* CLOCK_REALTIME ms */
#define SIZE 1000000u

static struct reg_table *reg;
static struct policy_state *ps;
static xfer_table_t *tab;
static struct xfer_rec finished[16]; /* what on_finish saw */
static int nfinished;

static void on_finish(const struct xfer_rec *r, void *arg)
{
    (void)arg;
    if (nfinished < 16)
        finished[nfinished] = *r;
    nfinished++;
}

static int setup(void)
{
    reg = calloc(1, sizeof *reg);
    ps = calloc(1, sizeof *ps);
    return reg && ps ? 0 : -1;
}

static int teardown(void)
{
    xfer_table_free(tab);
    free(reg);
    free(ps);
    return 0;
}

static xfer_table_t *new_table(uint32_t capacity, uint64_t next_id)
{
    struct xfer_table_opts o = {.capacity = capacity,
                                .ttl_ms = TTL,
                                .next_id = next_id,
                                .policy = ps,
                                .reg = reg,
                                .on_finish = on_finish};
    xfer_table_t *t = NULL;
    CU_ASSERT_EQUAL(xfer_table_new(&t, &o), 0);
    return t;
}

/* Three servers up, counts zero, a table of capacity slots. */
static void fresh(uint32_t capacity)
{
    memset(reg, 0, sizeof *reg);
    for (int i = 0; i < 3; i++) {
        snprintf(reg->rows[i].name, REG_NAME_MAX, "fs%d", i + 1);
        strcpy(reg->rows[i].addr, "127.0.0.1:1");
        reg->rows[i].state = REG_UP;
        reg->rows[i].weight = 1;
    }
    policy_init(ps, POLICY_LEAST_CONN, 1);
    xfer_table_free(tab);
    tab = new_table(capacity, 0);
    nfinished = 0;
}

static const struct policy_count *count(const char *server)
{
    return &ps->rows[reg_find(reg, server) - reg->rows];
}

static struct policy_decision decide(const char *server)
{
    struct policy_decision d = {.kind = POLICY_LEAST_CONN, .weight = 1, .candidates = 3};
    strcpy(d.server, server);
    return d;
}

static uint64_t redirect(const char *server, uint64_t now)
{
    struct policy_decision d = decide(server);
    struct xfer_new n = {
        .user = "alice", .path = "/big.bin", .size = SIZE, .etag = "\"e1\"", .decision = &d};
    uint64_t id = 0;
    CU_ASSERT_EQUAL(xfer_redirect(tab, &n, now, &id), 0);
    return id;
}

static int start(const char *server, uint64_t id, uint64_t first, uint64_t now)
{
    struct xfer_msg m = {.type = FRAME_XFER_START,
                         .id = id,
                         .path = "/big.bin",
                         .first_byte = first,
                         .length = SIZE - first,
                         .size = SIZE};
    return xfer_apply(tab, server, &m, now);
}

static int report(const char *server, uint64_t id, uint64_t bytes, enum xfer_outcome o,
                  uint64_t now)
{
    struct xfer_msg m = {.type = o == XFER_OUT_NONE ? FRAME_XFER_PROGRESS : FRAME_XFER_END,
                         .id = id,
                         .bytes = bytes,
                         .outcome = o};
    return xfer_apply(tab, server, &m, now);
}

static const char *state_of(uint64_t id)
{
    const struct xfer_rec *r = xfer_find(tab, id);
    return r ? xfer_state_str(r->state) : "gone";
}

static void test_transitions(void)
{
    CU_ASSERT_EQUAL(xfer_next(XFER_NONE, XFER_EV_REDIRECT, 0), XFER_REDIRECTED);
    CU_ASSERT_EQUAL(xfer_next(XFER_REDIRECTED, XFER_EV_START, 0), XFER_ACTIVE);
    CU_ASSERT_EQUAL(xfer_next(XFER_ACTIVE, XFER_EV_PROGRESS, 0), XFER_ACTIVE);
    CU_ASSERT_EQUAL(xfer_next(XFER_ACTIVE, XFER_EV_END, XFER_OUT_COMPLETE), XFER_DONE);
    CU_ASSERT_EQUAL(xfer_next(XFER_ACTIVE, XFER_EV_END, XFER_OUT_ERROR), XFER_INTERRUPTED);
    CU_ASSERT_EQUAL(xfer_next(XFER_ACTIVE, XFER_EV_END, XFER_OUT_CLIENT_ABORTED), XFER_INTERRUPTED);
    CU_ASSERT_EQUAL(xfer_next(XFER_ACTIVE, XFER_EV_END, XFER_OUT_NONE), -EINVAL);
    CU_ASSERT_EQUAL(xfer_next(XFER_ACTIVE, XFER_EV_SERVER_DOWN, 0), XFER_INTERRUPTED);
    CU_ASSERT_EQUAL(xfer_next(XFER_INTERRUPTED, XFER_EV_RESUME, 0), XFER_REDIRECTED);
    CU_ASSERT_EQUAL(xfer_next(XFER_INTERRUPTED, XFER_EV_PROGRESS, 0), XFER_ACTIVE);
    CU_ASSERT_EQUAL(xfer_next(XFER_INTERRUPTED, XFER_EV_EXPIRE, 0), XFER_FAILED);
    CU_ASSERT_EQUAL(xfer_next(XFER_REDIRECTED, XFER_EV_EXPIRE, 0), XFER_FAILED);
    CU_ASSERT_EQUAL(xfer_next(XFER_REDIRECTED, XFER_EV_RESUME, 0), XFER_REDIRECTED);
    CU_ASSERT_EQUAL(xfer_next(XFER_ACTIVE, XFER_EV_RESUME, 0), XFER_REDIRECTED);
    CU_ASSERT_EQUAL(xfer_next(XFER_ACTIVE, XFER_EV_EXPIRE, 0), -EINVAL);
    CU_ASSERT_EQUAL(xfer_next(XFER_REDIRECTED, XFER_EV_PROGRESS, 0), -EINVAL);
    CU_ASSERT_EQUAL(xfer_next(XFER_REDIRECTED, XFER_EV_SERVER_DOWN, 0), -EINVAL);
    for (int e = XFER_EV_REDIRECT; e <= XFER_EV_EXPIRE; e++) {
        CU_ASSERT_EQUAL(xfer_next(XFER_DONE, e, XFER_OUT_COMPLETE), -EINVAL);
        CU_ASSERT_EQUAL(xfer_next(XFER_FAILED, e, XFER_OUT_COMPLETE), -EINVAL);
    }
    const char *names[] = {"none", "redirected", "active", "done", "failed", "interrupted"};
    enum xfer_state s;
    for (int i = 0; i <= XFER_INTERRUPTED; i++) {
        CU_ASSERT_STRING_EQUAL(xfer_state_str(i), names[i]);
        CU_ASSERT_EQUAL(xfer_state_parse(names[i], &s), i ? 0 : -EINVAL);
    }
    CU_ASSERT_STRING_EQUAL(xfer_state_str(99), "unknown");
    CU_ASSERT_STRING_EQUAL(xfer_event_str(XFER_EV_SERVER_DOWN), "server-down");
    CU_ASSERT_STRING_EQUAL(xfer_outcome_str(XFER_OUT_CLIENT_ABORTED), "client-aborted");
}

static void test_one_leg(void)
{
    fresh(8);
    uint64_t id = redirect("fs2", T0);
    CU_ASSERT_EQUAL(id, 1);
    CU_ASSERT_STRING_EQUAL(state_of(id), "redirected");
    CU_ASSERT_EQUAL(count("fs2")->pending, 1);
    CU_ASSERT_EQUAL(count("fs2")->outstanding, SIZE);
    const struct xfer_rec *r = xfer_find(tab, id);
    CU_ASSERT_STRING_EQUAL(r->decision,
                           "policy=least-conn server=fs2 active=0 weight=1 candidates=3");
    CU_ASSERT_EQUAL(r->expires_ms, T0 + TTL);
    uint32_t dirty[8];
    CU_ASSERT_EQUAL(xfer_table_dirty(tab, dirty, 8), 1);
    CU_ASSERT_PTR_EQUAL(xfer_table_slot(tab, dirty[0]), r);
    CU_ASSERT_EQUAL(xfer_table_dirty(tab, dirty, 8), 0);

    CU_ASSERT_EQUAL(start("fs2", id, 0, T0 + 5), 0);
    CU_ASSERT_STRING_EQUAL(state_of(id), "active");
    CU_ASSERT_EQUAL(r->expires_ms, 0);
    CU_ASSERT_EQUAL(count("fs2")->pending, 0);
    CU_ASSERT_EQUAL(count("fs2")->active, 1);
    CU_ASSERT_EQUAL(report("fs2", id, 400000, XFER_OUT_NONE, T0 + 300), 0);
    CU_ASSERT_EQUAL(count("fs2")->outstanding, SIZE - 400000);
    CU_ASSERT_EQUAL(xfer_table_dirty(tab, dirty, 8), 1);
    CU_ASSERT_EQUAL(report("fs2", id, SIZE, XFER_OUT_COMPLETE, T0 + 900), 0);
    CU_ASSERT_STRING_EQUAL(state_of(id), "done");
    CU_ASSERT_EQUAL(count("fs2")->active, 0);
    CU_ASSERT_EQUAL(count("fs2")->outstanding, 0);
    CU_ASSERT_EQUAL(nfinished, 1);
    CU_ASSERT_EQUAL(finished[0].id, id);
    CU_ASSERT_EQUAL(finished[0].ended_ms, T0 + 900);
    CU_ASSERT_EQUAL(finished[0].nlegs, 1);
    CU_ASSERT_EQUAL(finished[0].legs[0].bytes, SIZE);
    CU_ASSERT_EQUAL(finished[0].legs[0].outcome, XFER_OUT_COMPLETE);
    CU_ASSERT_EQUAL(finished[0].legs[0].start_ms, T0 + 5);
    /* Finished: nothing more applies. */
    CU_ASSERT_EQUAL(report("fs2", id, SIZE, XFER_OUT_NONE, T0 + 901), -EINVAL);
    struct policy_decision d = decide("fs1");
    CU_ASSERT_EQUAL(xfer_resume(tab, id, &d, T0 + 902), -EINVAL);
}

static const cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* The server is SIGKILLed mid-transfer: the client resumes on another. */
static void test_server_down_resume(void)
{
    fresh(8);
    uint64_t id = redirect("fs1", T0);
    CU_ASSERT_EQUAL(start("fs1", id, 0, T0 + 1), 0);
    CU_ASSERT_EQUAL(report("fs1", id, 300000, XFER_OUT_NONE, T0 + 250), 0);
    CU_ASSERT_EQUAL(xfer_server_down(tab, "fs2", T0 + 300), 0);
    CU_ASSERT_EQUAL(xfer_server_down(tab, "fs1", T0 + 300), 1);
    CU_ASSERT_STRING_EQUAL(state_of(id), "interrupted");
    CU_ASSERT_EQUAL(xfer_find(tab, id)->expires_ms, T0 + 300 + TTL);
    CU_ASSERT_EQUAL(count("fs1")->active, 0);
    CU_ASSERT_EQUAL(count("fs1")->outstanding, 0);

    struct policy_decision d = decide("fs3");
    CU_ASSERT_EQUAL(xfer_resume(tab, id, &d, T0 + 400), 0);
    CU_ASSERT_STRING_EQUAL(state_of(id), "redirected");
    const struct xfer_rec *r = xfer_find(tab, id);
    CU_ASSERT_EQUAL(r->nlegs, 2);
    CU_ASSERT_EQUAL(r->legs[1].first_byte, 300000);
    CU_ASSERT_EQUAL(count("fs3")->pending, 1);
    CU_ASSERT_EQUAL(count("fs3")->outstanding, SIZE - 300000);
    CU_ASSERT_EQUAL(start("fs1", id, 0, T0 + 401), -ESRCH); /* no leg of fs1 waits */
    CU_ASSERT_EQUAL(start("fs3", id, 300000, T0 + 410), 0);
    CU_ASSERT_EQUAL(report("fs3", id, SIZE - 300000, XFER_OUT_COMPLETE, T0 + 800), 0);
    CU_ASSERT_STRING_EQUAL(state_of(id), "done");
    CU_ASSERT_EQUAL(count("fs3")->active, 0);

    cJSON *j = xfer_table_json(tab, XFER_DONE);
    const cJSON *t0 = cJSON_GetArrayItem(get(j, "transfers"), 0);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(get(j, "transfers")), 1);
    CU_ASSERT_EQUAL(get(t0, "id")->valuedouble, (double)id);
    CU_ASSERT_STRING_EQUAL(get(t0, "user")->valuestring, "alice");
    CU_ASSERT_STRING_EQUAL(get(t0, "path")->valuestring, "/big.bin");
    CU_ASSERT_EQUAL(get(t0, "size")->valuedouble, SIZE);
    CU_ASSERT_STRING_EQUAL(get(t0, "state")->valuestring, "done");
    CU_ASSERT_STRING_EQUAL(get(t0, "etag")->valuestring, "\"e1\"");
    CU_ASSERT(cJSON_IsNull(get(t0, "digest")));
    CU_ASSERT_STRING_EQUAL(get(t0, "decision")->valuestring,
                           "policy=least-conn server=fs3 active=0 weight=1 candidates=3");
    const cJSON *legs = get(t0, "legs");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(legs), 2);
    const cJSON *l0 = cJSON_GetArrayItem(legs, 0), *l1 = cJSON_GetArrayItem(legs, 1);
    CU_ASSERT_STRING_EQUAL(get(l0, "server")->valuestring, "fs1");
    CU_ASSERT_EQUAL(get(l0, "first_byte")->valuedouble, 0);
    CU_ASSERT_EQUAL(get(l0, "bytes")->valuedouble, 300000);
    CU_ASSERT_STRING_EQUAL(get(l0, "outcome")->valuestring, "interrupted");
    CU_ASSERT_STRING_EQUAL(get(l1, "server")->valuestring, "fs3");
    CU_ASSERT_EQUAL(get(l1, "first_byte")->valuedouble, 300000);
    CU_ASSERT_EQUAL(get(l1, "bytes")->valuedouble, SIZE - 300000);
    CU_ASSERT_STRING_EQUAL(get(l1, "outcome")->valuestring, "complete");
    cJSON_Delete(j);
    j = xfer_table_json(tab, XFER_ACTIVE);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(get(j, "transfers")), 0);
    cJSON_Delete(j);
}

/* A server marked down that was only slow: its next report revives the leg. */
static void test_revived(void)
{
    fresh(8);
    uint64_t id = redirect("fs1", T0);
    CU_ASSERT_EQUAL(start("fs1", id, 0, T0 + 1), 0);
    CU_ASSERT_EQUAL(xfer_server_down(tab, "fs1", T0 + 2), 1);
    CU_ASSERT_EQUAL(report("fs1", id, 10, XFER_OUT_NONE, T0 + 3), 0);
    CU_ASSERT_STRING_EQUAL(state_of(id), "active");
    CU_ASSERT_EQUAL(xfer_find(tab, id)->legs[0].outcome, XFER_OUT_NONE);
    CU_ASSERT_EQUAL(count("fs1")->active, 1);
    CU_ASSERT_EQUAL(xfer_server_down(tab, "fs1", T0 + 4), 1);
    CU_ASSERT_EQUAL(report("fs1", id, SIZE, XFER_OUT_COMPLETE, T0 + 5), 0);
    CU_ASSERT_STRING_EQUAL(state_of(id), "done");
    CU_ASSERT_EQUAL(count("fs1")->active, 0);
}

/* The client stalls and resumes while the old leg still runs; the old
 * server's end arrives later and changes that leg only. */
static void test_resume_while_running(void)
{
    fresh(8);
    uint64_t id = redirect("fs1", T0);
    CU_ASSERT_EQUAL(start("fs1", id, 0, T0 + 1), 0);
    CU_ASSERT_EQUAL(report("fs1", id, 5000, XFER_OUT_NONE, T0 + 2), 0);
    struct policy_decision d = decide("fs2");
    CU_ASSERT_EQUAL(xfer_resume(tab, id, &d, T0 + 3), 0);
    CU_ASSERT_EQUAL(xfer_find(tab, id)->legs[1].first_byte, 5000);
    CU_ASSERT_EQUAL(count("fs1")->active, 1);
    CU_ASSERT_EQUAL(start("fs2", id, 5000, T0 + 4), 0);
    CU_ASSERT_EQUAL(report("fs1", id, 6000, XFER_OUT_CLIENT_ABORTED, T0 + 5), 0);
    CU_ASSERT_STRING_EQUAL(state_of(id), "active");
    CU_ASSERT_EQUAL(count("fs1")->active, 0);
    /* An old leg still running when the transfer finishes is closed. */
    uint64_t id2 = redirect("fs1", T0);
    CU_ASSERT_EQUAL(start("fs1", id2, 0, T0 + 1), 0);
    CU_ASSERT_EQUAL(xfer_resume(tab, id2, &d, T0 + 3), 0);
    CU_ASSERT_EQUAL(start("fs2", id2, 0, T0 + 4), 0);
    CU_ASSERT_EQUAL(report("fs2", id2, SIZE, XFER_OUT_COMPLETE, T0 + 5), 0);
    CU_ASSERT_EQUAL(xfer_find(tab, id2)->legs[0].outcome, XFER_OUT_CLIENT_ABORTED);
    CU_ASSERT_EQUAL(count("fs1")->active, 0);
    CU_ASSERT_EQUAL(count("fs2")->active, 1); /* id's second leg */
    /* A resume of a redirect not followed closes it; four legs at most. */
    CU_ASSERT_EQUAL(xfer_resume(tab, id, &d, T0 + 6), 0);
    CU_ASSERT_EQUAL(xfer_resume(tab, id, &d, T0 + 7), 0);
    CU_ASSERT_EQUAL(count("fs2")->pending, 1);
    CU_ASSERT_EQUAL(xfer_resume(tab, id, &d, T0 + 8), -E2BIG);
    CU_ASSERT_EQUAL(xfer_resume(tab, 999, &d, T0 + 8), -ENOENT);
}

static void test_expire(void)
{
    fresh(8);
    uint64_t a = redirect("fs1", T0); /* never followed */
    uint64_t b = redirect("fs2", T0); /* the client gives up */
    CU_ASSERT_EQUAL(start("fs2", b, 0, T0 + 10), 0);
    CU_ASSERT_EQUAL(report("fs2", b, 7, XFER_OUT_CLIENT_ABORTED, T0 + 20), 0);
    CU_ASSERT_STRING_EQUAL(state_of(b), "interrupted");
    CU_ASSERT_EQUAL(xfer_expire(tab, T0 + TTL - 1, XFER_SWEEP_ALL), 0);
    CU_ASSERT_EQUAL(xfer_expire(tab, T0 + TTL, XFER_SWEEP_ALL), 1);
    CU_ASSERT_STRING_EQUAL(state_of(a), "failed");
    CU_ASSERT_STRING_EQUAL(state_of(b), "interrupted");
    CU_ASSERT_EQUAL(xfer_find(tab, a)->legs[0].outcome, XFER_OUT_NONE);
    CU_ASSERT_EQUAL(count("fs1")->pending, 0);
    CU_ASSERT_EQUAL(count("fs1")->outstanding, 0);
    CU_ASSERT_EQUAL(xfer_expire(tab, T0 + 20 + TTL, XFER_SWEEP_ALL), 1);
    CU_ASSERT_STRING_EQUAL(state_of(b), "failed");
    CU_ASSERT_EQUAL(nfinished, 2);
    CU_ASSERT_EQUAL(xfer_expire(tab, T0 + 10 * TTL, XFER_SWEEP_ALL), 0);
}

/* A part of the table per call, from where the last one stopped: every
 * slot once per round, whatever the parts. */
static void test_expire_parts(void)
{
    fresh(8);
    for (int i = 0; i < 4; i++) /* slots 0 to 3 */
        redirect("fs1", T0);
    CU_ASSERT_EQUAL(xfer_expire(tab, T0 + TTL, 2), 2); /* slots 0, 1 */
    CU_ASSERT_EQUAL(xfer_expire(tab, T0 + TTL, 2), 2); /* 2, 3 */
    CU_ASSERT_EQUAL(xfer_expire(tab, T0 + TTL, 4), 0); /* 4 to 7, then back to 0 */
    uint64_t e = redirect("fs1", T0 + 1);              /* slot 4: the first free one */
    CU_ASSERT_EQUAL(xfer_expire(tab, T0 + 1 + TTL, 4), 0);
    CU_ASSERT_STRING_EQUAL(state_of(e), "redirected");
    CU_ASSERT_EQUAL(xfer_expire(tab, T0 + 1 + TTL, 4), 1);
    CU_ASSERT_STRING_EQUAL(state_of(e), "failed");
    CU_ASSERT_EQUAL(xfer_expire(tab, T0 + 10 * TTL, 100), 0); /* one round at most */
    CU_ASSERT_EQUAL(nfinished, 5);
}

static void test_errors(void)
{
    fresh(8);
    uint64_t id = redirect("fs1", T0);
    CU_ASSERT_EQUAL(start("fs1", 77, 0, T0), -ENOENT);
    CU_ASSERT_EQUAL(start("fs2", id, 0, T0), -ESRCH);
    CU_ASSERT_EQUAL(report("fs1", id, 1, XFER_OUT_NONE, T0), -ESRCH); /* not started */
    struct xfer_msg m = {
        .type = FRAME_XFER_START, .id = id, .path = "/other", .length = SIZE, .size = SIZE};
    CU_ASSERT_EQUAL(xfer_apply(tab, "fs1", &m, T0), -EPROTO);
    CU_ASSERT_EQUAL(start("fs1", id, 0, T0), 0);
    CU_ASSERT_EQUAL(report("fs1", id, SIZE + 1, XFER_OUT_NONE, T0), -EPROTO);
    m = (struct xfer_msg){.type = FRAME_XFER_END, .id = id, .outcome = XFER_OUT_INTERRUPTED};
    CU_ASSERT_EQUAL(xfer_apply(tab, "fs1", &m, T0), -EINVAL);
    CU_ASSERT_STRING_EQUAL(state_of(id), "active");

    struct policy_decision d = decide("fs1");
    uint64_t out;
    struct xfer_new bad[] = {
        {.user = "alice", .path = "no-slash", .decision = &d},
        {.user = "", .path = "/x", .decision = &d},
        {.user = "alice", .path = "/x\n", .decision = &d},
        {.user = "alice", .path = "/x", .digest = "ABC", .decision = &d},
        {.user = "alice", .path = "/x", .etag = "a b", .decision = &d},
        {.user = "alice", .path = "/x"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_EQUAL(xfer_redirect(tab, &bad[i], T0, &out), -EINVAL);
    struct xfer_table_opts o = {.capacity = 0};
    xfer_table_t *t;
    CU_ASSERT_EQUAL(xfer_table_new(&t, &o), -EINVAL);
    o.capacity = 4;
    o.policy = ps; /* counts need the server table */
    CU_ASSERT_EQUAL(xfer_table_new(&t, &o), -EINVAL);
}

/* Full of live transfers: -ENOSPC; finished ones make room, oldest first. */
static void test_capacity(void)
{
    fresh(4);
    uint64_t ids[4];
    for (int i = 0; i < 4; i++)
        ids[i] = redirect("fs1", T0 + (uint64_t)i);
    struct policy_decision d = decide("fs1");
    struct xfer_new n = {.user = "bob", .path = "/y", .size = 1, .decision = &d};
    uint64_t id;
    CU_ASSERT_EQUAL(xfer_redirect(tab, &n, T0 + 5, &id), -ENOSPC);
    for (int i = 2; i >= 1; i--) { /* 3 finishes before 2 */
        CU_ASSERT_EQUAL(start("fs1", ids[i], 0, T0 + 6), 0);
        CU_ASSERT_EQUAL(report("fs1", ids[i], SIZE, XFER_OUT_COMPLETE, T0 + 10 - (uint64_t)i), 0);
    }
    CU_ASSERT_EQUAL(xfer_redirect(tab, &n, T0 + 11, &id), 0);
    CU_ASSERT_EQUAL(id, 5);
    CU_ASSERT_STRING_EQUAL(state_of(ids[2]), "gone");
    CU_ASSERT_STRING_EQUAL(state_of(ids[1]), "done");
    CU_ASSERT_EQUAL(xfer_redirect(tab, &n, T0 + 12, &id), 0);
    CU_ASSERT_STRING_EQUAL(state_of(ids[1]), "gone");
    CU_ASSERT_EQUAL(xfer_redirect(tab, &n, T0 + 13, &id), -ENOSPC);
    CU_ASSERT_STRING_EQUAL(state_of(ids[0]), "redirected");
    CU_ASSERT_EQUAL(count("fs1")->pending, 4);
    /* Every change was reported for publishing, each slot once. */
    uint32_t dirty[8];
    CU_ASSERT_EQUAL(xfer_table_dirty(tab, dirty, 8), 4);
}

/* Many transfers through a small table: every id still held is found in
 * its own record, every id given up is gone (the id index under churn). */
static void test_churn(void)
{
    fresh(64);
    static uint64_t held[2000];
    unsigned seed = 3;
    for (int i = 0; i < 2000; i++) {
        uint64_t id = redirect(reg->rows[i % 3].name, T0);
        held[i] = id;
        if (rand_r(&seed) % 4 != 0) { /* most finish at once, the rest expire later */
            CU_ASSERT_EQUAL(start(reg->rows[i % 3].name, id, 0, T0), 0);
            CU_ASSERT_EQUAL(report(reg->rows[i % 3].name, id, SIZE, XFER_OUT_COMPLETE, T0), 0);
        }
        if (i % 50 == 49)
            xfer_expire(tab, T0 + TTL, XFER_SWEEP_ALL);
        for (int j = i; j >= 0 && j > i - 100; j--) {
            const struct xfer_rec *r = xfer_find(tab, held[j]);
            CU_ASSERT(r == NULL || r->id == held[j]);
        }
    }
    int live = 0;
    for (uint32_t s = 0; s < 64; s++) {
        const struct xfer_rec *r = xfer_table_slot(tab, s);
        if (r) {
            CU_ASSERT_PTR_EQUAL(xfer_find(tab, r->id), r);
            live++;
        }
    }
    CU_ASSERT_EQUAL(live, 64);
    CU_ASSERT_PTR_NULL(xfer_find(tab, held[0]));
    CU_ASSERT_PTR_NOT_NULL(xfer_find(tab, held[1999]));
    int found = 0;
    for (int i = 0; i < 2000; i++)
        found += xfer_find(tab, held[i]) != NULL;
    CU_ASSERT_EQUAL(found, 64);
    xfer_expire(tab, T0 + TTL, XFER_SWEEP_ALL);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(count(reg->rows[i].name)->active, 0);
        CU_ASSERT_EQUAL(count(reg->rows[i].name)->pending, 0);
        CU_ASSERT_EQUAL(count(reg->rows[i].name)->outstanding, 0);
    }
}

/* The balancer restarts: the rows come back from the segment. */
static void test_reload(void)
{
    fresh(8);
    uint64_t a = redirect("fs1", T0);
    uint64_t b = redirect("fs2", T0);
    uint64_t c = redirect("fs3", T0);
    CU_ASSERT_EQUAL(start("fs2", b, 0, T0 + 1), 0);
    CU_ASSERT_EQUAL(report("fs2", b, 100, XFER_OUT_NONE, T0 + 2), 0);
    CU_ASSERT_EQUAL(start("fs3", c, 0, T0 + 1), 0);
    CU_ASSERT_EQUAL(report("fs3", c, SIZE, XFER_OUT_COMPLETE, T0 + 2), 0);
    struct policy_count before[3];
    memcpy(before, ps->rows, sizeof before);
    struct xfer_rec rows[8];
    for (uint32_t i = 0; i < 8; i++) {
        const struct xfer_rec *r = xfer_table_slot(tab, i);
        memset(&rows[i], 0, sizeof rows[i]);
        if (r)
            rows[i] = *r;
    }
    xfer_table_t *t2 = new_table(8, 2); /* the meta table's counter lags */
    policy_init(ps, POLICY_LEAST_CONN, 1);
    char why[128];
    for (uint32_t i = 0; i < 8; i++)
        if (rows[i].state != XFER_NONE)
            CU_ASSERT_EQUAL(xfer_table_load(t2, i, &rows[i], why, sizeof why), 0);
    CU_ASSERT_EQUAL(xfer_table_load(t2, 7, &rows[0], why, sizeof why), -EEXIST);
    CU_ASSERT_EQUAL(xfer_table_load(t2, 8, &rows[0], why, sizeof why), -ERANGE);
    xfer_table_loaded(t2);
    xfer_table_free(tab);
    tab = t2;
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(ps->rows[i].pending, before[i].pending);
        CU_ASSERT_EQUAL(ps->rows[i].active, before[i].active);
        CU_ASSERT_EQUAL(ps->rows[i].outstanding, before[i].outstanding);
    }
    CU_ASSERT_EQUAL(count("fs1")->pending, 1);
    CU_ASSERT_EQUAL(count("fs2")->outstanding, SIZE - 100);
    CU_ASSERT_EQUAL(xfer_table_next_id(tab), 4); /* ids are not reused */
    CU_ASSERT_STRING_EQUAL(state_of(a), "redirected");
    CU_ASSERT_EQUAL(report("fs2", b, SIZE, XFER_OUT_COMPLETE, T0 + 3), 0);
    CU_ASSERT_STRING_EQUAL(state_of(b), "done");
    CU_ASSERT_EQUAL(xfer_expire(tab, T0 + TTL, XFER_SWEEP_ALL), 1);
    CU_ASSERT_EQUAL(redirect("fs1", T0 + 4), 4);
}

static void test_row_check(void)
{
    fresh(8);
    struct xfer_rec r = *xfer_find(tab, redirect("fs1", T0));
    char why[128];
    CU_ASSERT_EQUAL(xfer_rec_check(&r, why, sizeof why), 0);
    struct xfer_rec x = r;
    x.state = 9;
    CU_ASSERT_EQUAL(xfer_rec_check(&x, why, sizeof why), -EINVAL);
    x = r;
    x.nlegs = XFER_LEGS_MAX + 1;
    CU_ASSERT_EQUAL(xfer_rec_check(&x, why, sizeof why), -EINVAL);
    x = r;
    memset(x.path, 'a', sizeof x.path);
    x.path[0] = '/';
    CU_ASSERT_EQUAL(xfer_rec_check(&x, why, sizeof why), -EINVAL);
    x = r;
    strcpy(x.digest, "zz");
    CU_ASSERT_EQUAL(xfer_rec_check(&x, why, sizeof why), -EINVAL);
    x = r;
    x.user[0] = '\033';
    CU_ASSERT_EQUAL(xfer_rec_check(&x, why, sizeof why), -EINVAL);
    x = r;
    x.legs[0].outcome = 17;
    CU_ASSERT_EQUAL(xfer_rec_check(&x, why, sizeof why), -EINVAL);
    x = r;
    x.legs[0].bytes = x.legs[0].length + 1;
    CU_ASSERT_EQUAL(xfer_rec_check(&x, why, sizeof why), -EINVAL);
    xfer_table_t *t2 = new_table(2, 0);
    x.id = 0;
    CU_ASSERT_EQUAL(xfer_table_load(t2, 0, &x, why, sizeof why), -EINVAL);
    xfer_table_free(t2);
}

static void test_log(void)
{
    fresh(8);
    char path[] = "/tmp/convoy-xfer-log-XXXXXX";
    int tmp = mkstemp(path);
    CU_ASSERT_FATAL(tmp >= 0);
    close(tmp);
    unlink(path);
    int fd = xfer_log_open(path);
    CU_ASSERT_FATAL(fd >= 0);
    struct stat st;
    CU_ASSERT_EQUAL(fstat(fd, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    CU_ASSERT(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    CU_ASSERT(fcntl(fd, F_GETFL) & O_APPEND);
    uint64_t a = redirect("fs1", T0), b = redirect("fs2", T0);
    CU_ASSERT_EQUAL(xfer_log_append(fd, xfer_find(tab, a)), 0);
    CU_ASSERT_EQUAL(xfer_log_append(fd, xfer_find(tab, b)), 0);
    close(fd);
    FILE *f = fopen(path, "r");
    CU_ASSERT_FATAL(f != NULL);
    char line[8192];
    for (uint64_t id = a; id <= b; id++) {
        CU_ASSERT_PTR_NOT_NULL_FATAL(fgets(line, sizeof line, f));
        CU_ASSERT_EQUAL(line[strlen(line) - 1], '\n');
        cJSON *j = cJSON_Parse(line);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT_EQUAL(get(j, "id")->valuedouble, (double)id);
        cJSON_Delete(j);
    }
    CU_ASSERT_PTR_NULL(fgets(line, sizeof line, f));
    fclose(f);
    unlink(path);
    /* A failing write is reported, not fatal. */
    CU_ASSERT_EQUAL(xfer_log_append(-1, xfer_find(tab, a)), -EBADF);
    CU_ASSERT_EQUAL(xfer_log_open("/nonexistent-dir/log"), -ENOENT);
}

void suite_xfer(void)
{
    CU_pSuite s = CU_add_suite("xfer", setup, teardown);
    CU_add_test(s, "transition function and names", test_transitions);
    CU_add_test(s, "one leg: redirected, active, done; counts", test_one_leg);
    CU_add_test(s, "server down mid-transfer, resume, two legs in JSON", test_server_down_resume);
    CU_add_test(s, "a leg marked interrupted revives on a report", test_revived);
    CU_add_test(s, "resume while the old leg runs; four legs at most", test_resume_while_running);
    CU_add_test(s, "redirects and interruptions expire", test_expire);
    CU_add_test(s, "expiry swept a part of the table at a time", test_expire_parts);
    CU_add_test(s, "reports that do not fit are refused", test_errors);
    CU_add_test(s, "capacity: finished make room oldest first, else ENOSPC", test_capacity);
    CU_add_test(s, "the id index under churn", test_churn);
    CU_add_test(s, "reload after a restart: counts, ids", test_reload);
    CU_add_test(s, "rows from the segment are checked", test_row_check);
    CU_add_test(s, "the transfer log", test_log);
}

/* ---- the messages ---- */

static cJSON *parse_json(const char *s)
{
    cJSON *j = cJSON_Parse(s);
    CU_ASSERT_PTR_NOT_NULL(j);
    return j;
}

static int parse(enum frame_type type, const char *json, struct xfer_msg *m)
{
    cJSON *j = parse_json(json);
    char why[128];
    int rc = xfer_msg_parse(type, j, m, why, sizeof why);
    cJSON_Delete(j);
    return rc;
}

static void round_trip(const struct xfer_msg *in)
{
    cJSON *j = xfer_msg_json(in);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    struct xfer_msg out;
    char why[128];
    CU_ASSERT_EQUAL(xfer_msg_parse(in->type, j, &out, why, sizeof why), 0);
    CU_ASSERT_EQUAL(out.type, in->type);
    CU_ASSERT_EQUAL(out.id, in->id);
    CU_ASSERT_EQUAL(out.first_byte, in->first_byte);
    CU_ASSERT_EQUAL(out.length, in->length);
    CU_ASSERT_EQUAL(out.size, in->size);
    CU_ASSERT_EQUAL(out.bytes, in->bytes);
    CU_ASSERT_EQUAL(out.outcome, in->outcome);
    CU_ASSERT((out.path == NULL) == (in->path == NULL));
    if (in->path)
        CU_ASSERT_STRING_EQUAL(out.path, in->path);
    CU_ASSERT((out.etag == NULL) == (in->etag == NULL));
    if (in->etag)
        CU_ASSERT_STRING_EQUAL(out.etag, in->etag);
    CU_ASSERT((out.digest == NULL) == (in->digest == NULL));
    if (in->digest)
        CU_ASSERT_STRING_EQUAL(out.digest, in->digest);
    cJSON_Delete(j);
}

#define DIGEST "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void test_msg_round_trips(void)
{
    const uint64_t big = 1ull << 53;
    round_trip(&(struct xfer_msg){.type = FRAME_XFER_START,
                                  .id = big,
                                  .path = "/a/b c.bin",
                                  .first_byte = 10,
                                  .length = big - 10,
                                  .size = big,
                                  .etag = "\"5-3e8-65\"",
                                  .digest = DIGEST});
    round_trip(&(struct xfer_msg){
        .type = FRAME_XFER_START, .id = 1, .path = "/", .first_byte = 0, .length = 0, .size = 0});
    round_trip(&(struct xfer_msg){.type = FRAME_XFER_PROGRESS, .id = 7, .bytes = big});
    for (enum xfer_outcome o = XFER_OUT_COMPLETE; o <= XFER_OUT_ERROR; o++)
        round_trip(&(struct xfer_msg){.type = FRAME_XFER_END, .id = 7, .bytes = 3, .outcome = o});
    CU_ASSERT_PTR_NULL(xfer_msg_json(&(struct xfer_msg){.type = FRAME_HELLO, .id = 1}));
}

static void test_msg_refused(void)
{
    struct xfer_msg m;
    const char *bad_start[] = {
        "{\"id\":-1,\"path\":\"/a\",\"first_byte\":0,\"length\":1,\"size\":1}",
        "{\"id\":18014398509481984,\"path\":\"/a\",\"first_byte\":0,\"length\":1,\"size\":1}",
        "{\"id\":1.5,\"path\":\"/a\",\"first_byte\":0,\"length\":1,\"size\":1}",
        "{\"id\":0,\"path\":\"/a\",\"first_byte\":0,\"length\":1,\"size\":1}",
        "{\"id\":1,\"path\":\"/a\",\"first_byte\":-1,\"length\":1,\"size\":1}",
        "{\"id\":1,\"path\":\"/a\",\"first_byte\":0,\"length\":1e300,\"size\":1}",
        "{\"id\":1,\"path\":\"/a\",\"first_byte\":0,\"length\":1,\"size\":\"1\"}",
        "{\"id\":1,\"path\":\"/a\",\"first_byte\":1,\"length\":1,\"size\":1}",
        "{\"id\":1,\"path\":\"a\",\"first_byte\":0,\"length\":1,\"size\":1}",
        "{\"id\":1,\"path\":\"/a\\u0001\",\"first_byte\":0,\"length\":1,\"size\":1}",
        "{\"id\":1,\"path\":7,\"first_byte\":0,\"length\":1,\"size\":1}",
        "{\"id\":1,\"path\":\"/a\",\"first_byte\":0,\"length\":1,\"size\":1,\"etag\":\"\"}",
        "{\"id\":1,\"path\":\"/a\",\"first_byte\":0,\"length\":1,\"size\":1,\"digest\":\"ab\"}",
        "{\"id\":1,\"path\":\"/a\",\"first_byte\":0,\"length\":1,\"size\":1,\"digest\":"
        "\"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855\"}",
        "{\"id\":1,\"path\":\"/a\",\"first_byte\":0,\"length\":1,\"size\":1,\"server\":\"fs1\"}",
        "{\"id\":1,\"path\":\"/a\",\"first_byte\":0,\"length\":1}",
        "[]",
    };
    for (size_t i = 0; i < sizeof bad_start / sizeof bad_start[0]; i++)
        CU_ASSERT_EQUAL(parse(FRAME_XFER_START, bad_start[i], &m), FRAME_ESCHEMA);
    char longpath[XFER_PATH_MAX + 128];
    snprintf(longpath, sizeof longpath,
             "{\"id\":1,\"path\":\"/%0*d\",\"first_byte\":0,\"length\":1,\"size\":1}",
             XFER_PATH_MAX - 1, 0);
    CU_ASSERT_EQUAL(parse(FRAME_XFER_START, longpath, &m), FRAME_ESCHEMA);
    snprintf(longpath, sizeof longpath,
             "{\"id\":1,\"path\":\"/%0*d\",\"first_byte\":0,\"length\":1,\"size\":1}",
             XFER_PATH_MAX - 2, 0);
    CU_ASSERT_EQUAL(parse(FRAME_XFER_START, longpath, &m), 0);

    CU_ASSERT_EQUAL(parse(FRAME_XFER_PROGRESS, "{\"id\":1,\"bytes\":-5}", &m), FRAME_ESCHEMA);
    CU_ASSERT_EQUAL(parse(FRAME_XFER_PROGRESS, "{\"id\":1}", &m), FRAME_ESCHEMA);
    CU_ASSERT_EQUAL(parse(FRAME_XFER_PROGRESS, "{\"id\":1,\"bytes\":1,\"x\":1}", &m),
                    FRAME_ESCHEMA);
    CU_ASSERT_EQUAL(parse(FRAME_XFER_PROGRESS, "{\"id\":1,\"bytes\":1,\"bytes\":2}", &m),
                    FRAME_ESCHEMA);
    const char *bad_outcomes[] = {"none", "interrupted", "Complete", "", "bogus"};
    for (size_t i = 0; i < sizeof bad_outcomes / sizeof bad_outcomes[0]; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"id\":1,\"bytes\":1,\"outcome\":\"%s\"}", bad_outcomes[i]);
        CU_ASSERT_EQUAL(parse(FRAME_XFER_END, json, &m), FRAME_ESCHEMA);
    }
    CU_ASSERT_EQUAL(parse(FRAME_XFER_END, "{\"id\":1,\"bytes\":1,\"outcome\":1}", &m),
                    FRAME_ESCHEMA);
    CU_ASSERT_EQUAL(parse(FRAME_XFER_END, "{\"id\":1,\"bytes\":1}", &m), FRAME_ESCHEMA);
    CU_ASSERT_EQUAL(parse(FRAME_XFER_END, "{\"id\":1,\"bytes\":1,\"outcome\":\"error\"}", &m), 0);
    CU_ASSERT_EQUAL(m.outcome, XFER_OUT_ERROR);
    CU_ASSERT_EQUAL(parse(FRAME_HEARTBEAT, "{\"id\":1,\"bytes\":1}", &m), FRAME_ETYPE);
}

void suite_xfer_msg(void)
{
    CU_pSuite s = CU_add_suite("xfer_msg", NULL, NULL);
    CU_add_test(s, "round trips", test_msg_round_trips);
    CU_add_test(s, "out of range, unknown, missing and bad fields refused", test_msg_refused);
}
