/* policy: each policy's choice on crafted server tables. */
#include "convoy/policy.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static struct reg_table *reg;
static struct policy_state *ps;

static int setup(void)
{
    reg = calloc(1, sizeof *reg);
    ps = calloc(1, sizeof *ps);
    return reg && ps ? 0 : -1;
}

static int teardown(void)
{
    free(reg);
    free(ps);
    return 0;
}

/* A fresh table of n servers "fs1".."fsN", up, weight 1, as row 0..n-1. */
static void table(enum policy_kind kind, size_t n)
{
    memset(reg, 0, sizeof *reg);
    for (size_t i = 0; i < n; i++) {
        struct reg_server *r = &reg->rows[i];
        snprintf(r->name, sizeof r->name, "fs%zu", i + 1);
        strcpy(r->addr, "127.0.0.1:8080");
        r->state = REG_UP;
        r->weight = 1;
        r->load.load1 = 0.5;
    }
    policy_init(ps, kind, 42);
}

static struct reg_server *row(const char *name)
{
    return (struct reg_server *)reg_find(reg, name);
}

/* The server chosen, or "none". */
static const char *choose_req(const struct policy_request *req, struct policy_decision *d)
{
    int rc = policy_choose(ps, reg, req, d);
    return rc >= 0 ? reg->rows[rc].name : "none";
}

static const char *choose(void)
{
    struct policy_request req = {0};
    struct policy_decision d;
    return choose_req(&req, &d);
}

/* Chooses and counts the redirect, as the transfer table does. */
static const char *redirect(uint64_t bytes)
{
    const char *s = choose();
    if (strcmp(s, "none") != 0)
        policy_count(ps, reg, s, 1, 0, (int64_t)bytes);
    return s;
}

static void test_names(void)
{
    enum policy_kind k;
    for (int i = POLICY_LEAST_CONN; i <= POLICY_ROUND_ROBIN; i++) {
        CU_ASSERT_EQUAL(policy_parse(policy_str(i), &k), 0);
        CU_ASSERT_EQUAL(k, i);
    }
    CU_ASSERT_STRING_EQUAL(policy_str(POLICY_LEAST_CONN), "least-conn");
    CU_ASSERT_STRING_EQUAL(policy_str(POLICY_P2C), "p2c");
    CU_ASSERT_EQUAL(policy_parse("least_conn", &k), -EINVAL);
    CU_ASSERT_EQUAL(policy_parse("", &k), -EINVAL);
}

static void test_least_conn(void)
{
    table(POLICY_LEAST_CONN, 3);
    policy_count(ps, reg, "fs1", 0, 2, 0);
    policy_count(ps, reg, "fs2", 1, 0, 0); /* a pending redirect counts */
    policy_count(ps, reg, "fs3", 0, 1, 0);
    policy_count(ps, reg, "fs3", 0, 1, 0);
    struct policy_request req = {0};
    struct policy_decision d;
    char text[POLICY_DECISION_MAX];
    CU_ASSERT_STRING_EQUAL(choose_req(&req, &d), "fs2");
    policy_decision_str(&d, text, sizeof text);
    CU_ASSERT_STRING_EQUAL(text, "policy=least-conn server=fs2 active=1 weight=1 candidates=3");
    /* Per unit of weight: 2 of 4 beats 1 of 1. */
    row("fs1")->weight = 4;
    CU_ASSERT_STRING_EQUAL(choose_req(&req, &d), "fs1");
    policy_decision_str(&d, text, sizeof text);
    CU_ASSERT_STRING_EQUAL(text, "policy=least-conn server=fs1 active=2 weight=4 candidates=3");
    /* A weight of 0 counts as 1. */
    row("fs1")->weight = 0;
    CU_ASSERT_STRING_EQUAL(choose_req(&req, &d), "fs2");
    /* Counts never go below zero. */
    policy_count(ps, reg, "fs2", -5, -5, -100);
    CU_ASSERT_EQUAL(ps->rows[1].pending, 0);
    CU_ASSERT_EQUAL(ps->rows[1].active, 0);
    CU_ASSERT_EQUAL(ps->rows[1].outstanding, 0);
}

static void test_ties(void)
{
    table(POLICY_LEAST_CONN, 3);
    row("fs3")->load.load1 = 0.1; /* equal counts: the lighter load wins */
    CU_ASSERT_STRING_EQUAL(choose(), "fs3");
    CU_ASSERT_STRING_EQUAL(choose(), "fs3");
    row("fs3")->load.load1 = 0.5; /* all equal: they take turns */
    CU_ASSERT_STRING_EQUAL(choose(), "fs1");
    CU_ASSERT_STRING_EQUAL(choose(), "fs2");
    CU_ASSERT_STRING_EQUAL(choose(), "fs3");
    CU_ASSERT_STRING_EQUAL(choose(), "fs1");
}

static void test_excluded(void)
{
    for (int k = POLICY_LEAST_CONN; k <= POLICY_ROUND_ROBIN; k++) {
        table(k, 3);
        row("fs1")->state = REG_DRAINING;
        row("fs2")->state = REG_DOWN;
        policy_count(ps, reg, "fs3", 0, 50, 1 << 20);
        struct policy_request req = {0};
        struct policy_decision d;
        for (int i = 0; i < 10; i++) {
            CU_ASSERT_STRING_EQUAL(choose_req(&req, &d), "fs3");
            CU_ASSERT_EQUAL(d.candidates, 1);
        }
        row("fs3")->state = REG_DRAINING;
        CU_ASSERT_EQUAL(policy_choose(ps, reg, &req, &d), -EAGAIN);
        memset(reg, 0, sizeof *reg);
        CU_ASSERT_EQUAL(policy_choose(ps, reg, &req, &d), -EAGAIN);
    }
}

/* The catalog's answer: bit i set when row i holds the version. */
static bool has_version(const struct reg_server *r, size_t i, void *arg)
{
    (void)r;
    return (*(const uint32_t *)arg >> i) & 1;
}

static void test_filter_and_avoid(void)
{
    table(POLICY_LEAST_CONN, 3);
    policy_count(ps, reg, "fs2", 0, 9, 0);
    uint32_t holders = 1u << 1 | 1u << 2; /* fs2 and fs3 */
    struct policy_request req = {.filter = has_version, .arg = &holders};
    struct policy_decision d;
    CU_ASSERT_STRING_EQUAL(choose_req(&req, &d), "fs3");
    CU_ASSERT_EQUAL(d.candidates, 2);
    req.avoid = "fs3"; /* a resume away from fs3 */
    CU_ASSERT_STRING_EQUAL(choose_req(&req, &d), "fs2");
    CU_ASSERT_EQUAL(d.candidates, 1);
    holders = 1u << 2;
    CU_ASSERT_STRING_EQUAL(choose_req(&req, &d), "none");
    req.avoid = NULL;
    holders = 0;
    CU_ASSERT_EQUAL(policy_choose(ps, reg, &req, &d), -EAGAIN);
}

/* 30 redirects at once, none started yet: pending counts spread them. */
static void test_burst(void)
{
    for (int k = POLICY_LEAST_CONN; k <= POLICY_ROUND_ROBIN; k++) {
        table(k, 3);
        row("fs1")->load.load1 = 0.1; /* no tie between idle servers to take turns on */
        row("fs2")->load.load1 = 0.2;
        int per[3] = {0};
        for (int i = 0; i < 30; i++)
            per[redirect(1000)[2] - '1']++;
        int spread = k == POLICY_P2C ? 2 : 0; /* p2c only stays near even */
        for (int s = 0; s < 3; s++) {
            CU_ASSERT(abs(per[s] - 10) <= spread);
            CU_ASSERT(abs((int)ps->rows[s].pending - 10) <= spread);
        }
    }
}

static void test_least_bytes(void)
{
    table(POLICY_LEAST_BYTES, 3);
    policy_count(ps, reg, "fs1", 0, 1, 1000);
    policy_count(ps, reg, "fs2", 0, 3, 10);
    policy_count(ps, reg, "fs3", 0, 1, 5000);
    struct policy_request req = {0};
    struct policy_decision d;
    char text[POLICY_DECISION_MAX];
    CU_ASSERT_STRING_EQUAL(choose_req(&req, &d), "fs2");
    policy_decision_str(&d, text, sizeof text);
    CU_ASSERT_STRING_EQUAL(
        text, "policy=least-bytes server=fs2 active=3 weight=1 candidates=3 outstanding=10");
    row("fs3")->weight = 1000; /* 5 bytes per unit of weight */
    CU_ASSERT_STRING_EQUAL(choose(), "fs3");
    row("fs3")->weight = 1;
    policy_count(ps, reg, "fs1", 0, 0, -990); /* progress: 10 bytes left, as fs2 */
    CU_ASSERT_STRING_EQUAL(choose(), "fs1");  /* equal bytes: fewer transfers */
}

static void test_weighted(void)
{
    table(POLICY_WEIGHTED, 3);
    row("fs1")->weight = 5;
    const char *want[] = {"fs1", "fs1", "fs2", "fs1", "fs3", "fs1", "fs1"};
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
            CU_ASSERT_STRING_EQUAL(choose(), want[i]);
}

static void test_round_robin(void)
{
    table(POLICY_ROUND_ROBIN, 4);
    row("fs3")->state = REG_DRAINING;
    policy_count(ps, reg, "fs1", 0, 100, 0); /* load does not matter */
    const char *want[] = {"fs1", "fs2", "fs4", "fs1", "fs2", "fs4"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CU_ASSERT_STRING_EQUAL(choose(), want[i]);
}

static void test_p2c(void)
{
    table(POLICY_P2C, 3);
    policy_count(ps, reg, "fs1", 0, 9, 0);
    policy_count(ps, reg, "fs2", 0, 1, 0);
    policy_count(ps, reg, "fs3", 0, 1, 0);
    int per[3] = {0};
    for (int i = 0; i < 100; i++)
        per[choose()[2] - '1']++;
    CU_ASSERT_EQUAL(per[0], 0); /* the heaviest always loses its draw */
    CU_ASSERT(per[1] > 20 && per[2] > 20);
    /* The same seed draws the same sequence. */
    char first[50][REG_NAME_MAX];
    table(POLICY_P2C, 5);
    for (int i = 0; i < 50; i++)
        strcpy(first[i], redirect(1));
    table(POLICY_P2C, 5);
    for (int i = 0; i < 50; i++)
        CU_ASSERT_STRING_EQUAL(redirect(1), first[i]);
}

/* A resume names the server that failed: it is skipped until heard again. */
static void test_suspect(void)
{
    table(POLICY_LEAST_CONN, 2);
    row("fs1")->last_seen_ms = 1000;
    policy_count(ps, reg, "fs2", 0, 5, 0);
    policy_suspect(ps, reg, "fs1");
    policy_suspect(ps, reg, "nosuch");
    CU_ASSERT_STRING_EQUAL(choose(), "fs2");
    CU_ASSERT_STRING_EQUAL(choose(), "fs2");
    row("fs1")->last_seen_ms = 1500; /* its next heartbeat */
    CU_ASSERT_STRING_EQUAL(choose(), "fs1");
    CU_ASSERT_FALSE(ps->rows[0].suspect);
    CU_ASSERT_STRING_EQUAL(choose(), "fs1");
}

/* A server with as many transfers as its capacity is passed over, under
 * every policy, and takes work again once one ends. */
static void test_capacity(void)
{
    for (int k = POLICY_LEAST_CONN; k <= POLICY_ROUND_ROBIN; k++) {
        table((enum policy_kind)k, 2);
        row("fs1")->capacity = 1;
        row("fs2")->capacity = 2;
        int fs1 = 0, fs2 = 0;
        for (int i = 0; i < 3; i++) {
            const char *s = redirect(100);
            fs1 += strcmp(s, "fs1") == 0;
            fs2 += strcmp(s, "fs2") == 0;
        }
        CU_ASSERT_EQUAL(fs1, 1);
        CU_ASSERT_EQUAL(fs2, 2);
        CU_ASSERT_STRING_EQUAL(choose(), "none"); /* every server full: 503 */
        policy_count(ps, reg, "fs1", -1, 0, -100);
        CU_ASSERT_STRING_EQUAL(choose(), "fs1");
    }
}

static void test_row_reused(void)
{
    table(POLICY_LEAST_CONN, 2);
    policy_count(ps, reg, "fs1", 3, 4, 500);
    policy_count(ps, reg, "nosuch", 1, 1, 1); /* no row: nothing */
    CU_ASSERT_STRING_EQUAL(choose(), "fs2");
    strcpy(row("fs1")->name, "fs9"); /* fs1 left (BYE), fs9 took its row */
    policy_count(ps, reg, "fs2", 0, 1, 0);
    CU_ASSERT_STRING_EQUAL(choose(), "fs9");
    CU_ASSERT_EQUAL(ps->rows[0].active, 0);
    CU_ASSERT_STRING_EQUAL(ps->rows[0].name, "fs9");
}

/* 300 transfers arriving one per tick, lasting 1-60 ticks each: the
 * least-conn counts give each of 3 servers a share within 20% of equal. */
static void test_least_conn_spread(void)
{
    table(POLICY_LEAST_CONN, 3);
    struct {
        int server;
        int ends;
    } live[300];
    int nlive = 0, per[3] = {0};
    unsigned seed = 7;
    for (int tick = 0; tick < 300; tick++) {
        for (int i = 0; i < nlive; i++)
            if (live[i].ends == tick) {
                policy_count(ps, reg, reg->rows[live[i].server].name, 0, -1, 0);
                live[i--] = live[--nlive];
            }
        int s = policy_choose(ps, reg, &(struct policy_request){0}, &(struct policy_decision){0});
        CU_ASSERT_FATAL(s >= 0 && s < 3);
        policy_count(ps, reg, reg->rows[s].name, 1, 0, 0);  /* redirected */
        policy_count(ps, reg, reg->rows[s].name, -1, 1, 0); /* started */
        live[nlive].server = s;
        live[nlive++].ends = tick + 1 + rand_r(&seed) % 60;
        per[s]++;
    }
    for (int s = 0; s < 3; s++)
        CU_ASSERT(per[s] >= 80 && per[s] <= 120);
}

void suite_policy(void)
{
    CU_pSuite s = CU_add_suite("policy", setup, teardown);
    CU_add_test(s, "names", test_names);
    CU_add_test(s, "least-conn: per weight, pending counted, decision", test_least_conn);
    CU_add_test(s, "least-conn ties: load, then turns", test_ties);
    CU_add_test(s, "draining and down never chosen; none left", test_excluded);
    CU_add_test(s, "catalog filter and the failed server avoided", test_filter_and_avoid);
    CU_add_test(s, "a burst of 30 redirects spreads evenly", test_burst);
    CU_add_test(s, "least-bytes: outstanding per weight", test_least_bytes);
    CU_add_test(s, "weighted: smooth round-robin as nginx", test_weighted);
    CU_add_test(s, "round-robin skips draining", test_round_robin);
    CU_add_test(s, "p2c: the lighter of two, seeded", test_p2c);
    CU_add_test(s, "a suspect server waits for its next heartbeat", test_suspect);
    CU_add_test(s, "a server at its capacity is passed over", test_capacity);
    CU_add_test(s, "a reused row counts afresh", test_row_reused);
    CU_add_test(s, "least-conn over 300 transfers within 20% of equal", test_least_conn_spread);
}
