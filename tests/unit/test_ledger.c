/* ledger: exactly-once accounting under crafted failure sequences. */
#include "convoy/ledger.h"
#include "convoy/corder.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Every item a done_fn heard, counted per item: exactly once means 1. */
struct seen {
    uint8_t hits[1000];
};

static int count_done(void *arg, uint64_t first, uint32_t count)
{
    struct seen *s = arg;
    for (uint64_t i = first; i < first + count; i++)
        s->hits[i]++;
    return 0;
}

static void check_once(const struct seen *s, uint64_t items)
{
    for (uint64_t i = 0; i < items; i++)
        CU_ASSERT_EQUAL(s->hits[i], 1);
}

static struct ledger_counts counts(const struct ledger *l)
{
    struct ledger_counts c;
    ledger_counts(l, &c);
    return c;
}

/* Sends every unsent item in WORKs of at most batch; the items sent. */
static uint64_t send_all(struct ledger *l, uint32_t batch)
{
    uint64_t first, sent = 0;
    uint32_t count;
    while (ledger_next_unsent(l, batch, &first, &count) == 1) {
        CU_ASSERT_EQUAL_FATAL(ledger_sent(l, first, count), 0);
        sent += count;
    }
    return sent;
}

static void test_names(void)
{
    CU_ASSERT_STRING_EQUAL(ledger_state_str(LEDGER_UNSENT), "unsent");
    CU_ASSERT_STRING_EQUAL(ledger_state_str(LEDGER_SENT), "sent");
    CU_ASSERT_STRING_EQUAL(ledger_state_str(LEDGER_ACCEPTED), "accepted");
    CU_ASSERT_STRING_EQUAL(ledger_state_str(LEDGER_DONE), "done");
    CU_ASSERT_STRING_EQUAL(ledger_state_str((enum ledger_state)9), "unknown");
}

/* The plain path: sent, accepted by two servers, all results: one run. */
static void test_plain(void)
{
    struct seen s = {0};
    struct ledger *l = ledger_new(100);
    CU_ASSERT_FATAL(l != NULL);
    CU_ASSERT_PTR_NULL(ledger_new(0));
    CU_ASSERT_EQUAL(send_all(l, 40), 100);
    CU_ASSERT_EQUAL(counts(l).sent, 100);
    CU_ASSERT_EQUAL(ledger_accepted(l, 0, 60, 1), 0);
    CU_ASSERT_EQUAL(ledger_accepted(l, 60, 40, 2), 0);
    uint64_t sid;
    CU_ASSERT_EQUAL(ledger_item(l, 59, &sid), LEDGER_ACCEPTED);
    CU_ASSERT_EQUAL(sid, 1);
    CU_ASSERT_EQUAL(ledger_item(l, 60, &sid), LEDGER_ACCEPTED);
    CU_ASSERT_EQUAL(sid, 2);
    CU_ASSERT_EQUAL(ledger_result(l, 0, 60, 1, "c1", count_done, &s), 60);
    CU_ASSERT_FALSE(ledger_complete(l));
    CU_ASSERT_EQUAL(ledger_result(l, 60, 40, 2, "c2", count_done, &s), 40);
    CU_ASSERT_TRUE(ledger_complete(l));
    struct ledger_counts c = counts(l);
    CU_ASSERT_EQUAL(c.done, 100);
    CU_ASSERT_EQUAL(c.runs, 1);
    CU_ASSERT_EQUAL(c.redelegated, 0);
    CU_ASSERT_EQUAL(c.nservers, 2);
    CU_ASSERT_STRING_EQUAL(c.servers[0].name, "c1");
    CU_ASSERT_EQUAL(c.servers[0].done, 60);
    CU_ASSERT_EQUAL(c.servers[1].done, 40);
    CU_ASSERT_EQUAL(ledger_next_unsent(l, 10, &(uint64_t){0}, &(uint32_t){0}), 0);
    check_once(&s, 100);
    ledger_free(l);
}

static void test_ranges_refused(void)
{
    struct ledger *l = ledger_new(10);
    CU_ASSERT_EQUAL(ledger_sent(l, 10, 1), -ERANGE);
    CU_ASSERT_EQUAL(ledger_sent(l, 5, 6), -ERANGE);
    CU_ASSERT_EQUAL(ledger_sent(l, 0, 0), -ERANGE);
    CU_ASSERT_EQUAL(ledger_accepted(l, 0, 1, 0), -EINVAL);
    CU_ASSERT_EQUAL(ledger_result(l, UINT64_MAX, 2, 1, "c1", NULL, NULL), -ERANGE);
    CU_ASSERT_EQUAL(counts(l).unsent, 10);
    CU_ASSERT_EQUAL(counts(l).runs, 1);
    ledger_free(l);
}

/* The head dies before anyone said ACCEPTED: everything goes back. */
static void test_death_before_accepted(void)
{
    struct seen s = {0};
    struct ledger *l = ledger_new(50);
    send_all(l, 50);
    CU_ASSERT_EQUAL(ledger_server_down(l, 1), 50);
    CU_ASSERT_EQUAL(counts(l).unsent, 50);
    CU_ASSERT_EQUAL(counts(l).redelegated, 50);
    CU_ASSERT_EQUAL(send_all(l, 50), 50);
    CU_ASSERT_EQUAL(ledger_accepted(l, 0, 50, 2), 0);
    CU_ASSERT_EQUAL(ledger_result(l, 0, 50, 2, "c2", count_done, &s), 50);
    CU_ASSERT_TRUE(ledger_complete(l));
    check_once(&s, 50);
    ledger_free(l);
}

/* A WORK lost on a link that closed (no server down): its items are sent
 * again; the accepted and done ones stay, and a late answer for a lost
 * one still counts once. */
static void test_unsend(void)
{
    struct seen s = {0};
    struct ledger *l = ledger_new(30);
    send_all(l, 10);
    CU_ASSERT_EQUAL(ledger_accepted(l, 0, 10, 1), 0);
    CU_ASSERT_EQUAL(ledger_result(l, 0, 5, 1, "c1", count_done, &s), 5);
    CU_ASSERT_EQUAL(ledger_unsend(l), 20); /* 10 … 29 were only sent */
    CU_ASSERT_EQUAL(counts(l).unsent, 20);
    CU_ASSERT_EQUAL(counts(l).accepted, 5);
    CU_ASSERT_EQUAL(counts(l).redelegated, 20);
    CU_ASSERT_FALSE(ledger_session_dead(l, 1));
    CU_ASSERT_EQUAL(ledger_result(l, 10, 10, 2, "c2", count_done, &s), 10); /* the late copy */
    CU_ASSERT_EQUAL(send_all(l, 10), 10);
    CU_ASSERT_EQUAL(ledger_result(l, 0, 30, 1, "c1", count_done, &s), 15);
    CU_ASSERT_TRUE(ledger_complete(l));
    check_once(&s, 30);
    ledger_free(l);
}

/* c2 dies after ACCEPTED: only its items go back; c1's and c3's stay. */
static void test_death_after_accepted(void)
{
    struct seen s = {0};
    struct ledger *l = ledger_new(90);
    send_all(l, 90);
    ledger_accepted(l, 0, 30, 1);
    ledger_accepted(l, 30, 30, 2);
    ledger_accepted(l, 60, 30, 3);
    CU_ASSERT_EQUAL(ledger_server_down(l, 2), 30);
    struct ledger_counts c = counts(l);
    CU_ASSERT_EQUAL(c.unsent, 30);
    CU_ASSERT_EQUAL(c.accepted, 60);
    uint64_t first;
    uint32_t count;
    CU_ASSERT_EQUAL(ledger_next_unsent(l, 100, &first, &count), 1);
    CU_ASSERT_EQUAL(first, 30);
    CU_ASSERT_EQUAL(count, 30);
    ledger_sent(l, first, count);
    ledger_accepted(l, 30, 30, 3);
    ledger_result(l, 0, 30, 1, "c1", count_done, &s);
    ledger_result(l, 30, 30, 3, "c3", count_done, &s);
    ledger_result(l, 60, 30, 3, "c3", count_done, &s);
    CU_ASSERT_TRUE(ledger_complete(l));
    c = counts(l);
    CU_ASSERT_EQUAL(c.redelegated, 30);
    CU_ASSERT_EQUAL(c.servers[0].done, 30);
    CU_ASSERT_EQUAL(c.servers[1].done, 60);
    check_once(&s, 90);
    ledger_free(l);
}

/* c1 answered part of its share, then died: the rest goes back, the part
 * answered stays done and is not counted again when resent copies answer. */
static void test_death_after_partial_result(void)
{
    struct seen s = {0};
    struct ledger *l = ledger_new(40);
    send_all(l, 40);
    ledger_accepted(l, 0, 40, 1);
    CU_ASSERT_EQUAL(ledger_result(l, 0, 8, 1, "c1", count_done, &s), 8);
    CU_ASSERT_EQUAL(ledger_result(l, 20, 4, 1, "c1", count_done, &s), 4);
    CU_ASSERT_EQUAL(ledger_server_down(l, 1), 28);
    struct ledger_counts c = counts(l);
    CU_ASSERT_EQUAL(c.done, 12);
    CU_ASSERT_EQUAL(c.unsent, 28);
    /* the gaps come back in order: 8…19, then 24…39 */
    uint64_t first;
    uint32_t count;
    CU_ASSERT_EQUAL(ledger_next_unsent(l, 100, &first, &count), 1);
    CU_ASSERT_EQUAL(first, 8);
    CU_ASSERT_EQUAL(count, 12);
    CU_ASSERT_EQUAL(send_all(l, 100), 28);
    ledger_accepted(l, 0, 40, 2); /* a resend of everything: done items stay */
    CU_ASSERT_EQUAL(counts(l).accepted, 28);
    CU_ASSERT_EQUAL(ledger_result(l, 0, 40, 2, "c2", count_done, &s), 28);
    CU_ASSERT_TRUE(ledger_complete(l));
    check_once(&s, 40);
    ledger_free(l);
}

/* A duplicate RESULT, and a late one from a session presumed dead. */
static void test_late_duplicate(void)
{
    struct seen s = {0};
    struct ledger *l = ledger_new(20);
    send_all(l, 20);
    ledger_accepted(l, 0, 20, 1);
    CU_ASSERT_EQUAL(ledger_result(l, 0, 10, 1, "c1", count_done, &s), 10);
    CU_ASSERT_EQUAL(ledger_result(l, 0, 10, 1, "c1", count_done, &s), 0);
    CU_ASSERT_EQUAL(ledger_server_down(l, 1), 10);
    CU_ASSERT_TRUE(ledger_session_dead(l, 1));
    /* presumed dead, it answers late: nothing counts, its ACCEPTED neither */
    CU_ASSERT_EQUAL(ledger_result(l, 10, 10, 1, "c1", count_done, &s), 0);
    CU_ASSERT_EQUAL(ledger_accepted(l, 10, 10, 1), 0);
    CU_ASSERT_EQUAL(counts(l).unsent, 10);
    send_all(l, 10);
    ledger_accepted(l, 10, 10, 2);
    CU_ASSERT_EQUAL(ledger_result(l, 10, 10, 2, "c2", count_done, &s), 10);
    CU_ASSERT_EQUAL(ledger_result(l, 10, 10, 2, "c2", count_done, &s), 0);
    CU_ASSERT_TRUE(ledger_complete(l));
    struct ledger_counts c = counts(l);
    CU_ASSERT_EQUAL(c.servers[0].done, 10);
    CU_ASSERT_EQUAL(c.servers[1].done, 10);
    check_once(&s, 20);
    ledger_free(l);
}

/* A forwarded copy in flight when the head died: a live server accepts it
 * after the items were reset; the resent copy and the old one both answer. */
static void test_copy_in_flight(void)
{
    struct seen s = {0};
    struct ledger *l = ledger_new(10);
    send_all(l, 10);
    ledger_server_down(l, 1);
    ledger_accepted(l, 0, 10, 3); /* the old copy, kept by c3 */
    CU_ASSERT_EQUAL(counts(l).accepted, 10);
    CU_ASSERT_EQUAL(ledger_next_unsent(l, 10, &(uint64_t){0}, &(uint32_t){0}), 0);
    CU_ASSERT_EQUAL(ledger_result(l, 0, 10, 3, "c3", count_done, &s), 10);
    CU_ASSERT_EQUAL(ledger_result(l, 0, 10, 2, "c2", count_done, &s), 0);
    check_once(&s, 10);
    ledger_free(l);
}

/* 10^6 items in batches of 64, results out of order: runs stay few. */
static void test_compact(void)
{
    struct ledger *l = ledger_new(1000000);
    uint32_t max_runs = 0;
    for (uint64_t b = 0; b < 1000000 / 64; b += 4) {
        for (int k = 0; k < 4 && b + k < 1000000 / 64; k++)
            ledger_sent(l, (b + k) * 64, 64);
        for (int k = 0; k < 4 && b + k < 1000000 / 64; k++)
            ledger_accepted(l, (b + k) * 64, 64, 1 + k % 2);
        for (int k = 3; k >= 0; k--)
            if (b + k < 1000000 / 64)
                ledger_result(l, (b + k) * 64, 64, 1 + k % 2, "c", NULL, NULL);
        struct ledger_counts c = counts(l);
        if (c.runs > max_runs)
            max_runs = c.runs;
    }
    ledger_result(l, 999936, 64, 1, "c", NULL, NULL);
    CU_ASSERT_TRUE(ledger_complete(l));
    CU_ASSERT(max_runs <= 4);
    ledger_free(l);
}

/* Random interleavings of sends, accepts, results and deaths: every item
 * counted exactly once when the job completes. */
static void test_random(void)
{
    unsigned seed = 7;
    for (int round = 0; round < 50; round++) {
        struct seen s = {0};
        struct ledger *l = ledger_new(1000);
        uint64_t next_sid = 1, live[3] = {next_sid++, next_sid++, next_sid++};
        for (int step = 0; step < 100000 && !ledger_complete(l); step++) {
            uint64_t first = (uint64_t)(rand_r(&seed) % 1000);
            uint32_t count = 1 + (uint32_t)(rand_r(&seed) % 50);
            if (first + count > 1000)
                count = (uint32_t)(1000 - first);
            uint64_t sid = live[rand_r(&seed) % 3];
            switch (rand_r(&seed) % 8) {
            case 0:
            case 1:
                send_all(l, 50);
                break;
            case 2:
            case 3:
                ledger_accepted(l, first, count, sid);
                break;
            case 4:
            case 5:
            case 6:
                ledger_result(l, first, count, sid, "c", count_done, &s);
                break;
            default:
                if (rand_r(&seed) % 8 == 0) {
                    int k = rand_r(&seed) % 3;
                    ledger_server_down(l, live[k]);
                    live[k] = next_sid++;
                }
            }
        }
        CU_ASSERT_TRUE(ledger_complete(l));
        check_once(&s, 1000);
        ledger_free(l);
    }
}

/* A chain of three simulated servers behind corder's links: each WORK
 * reaches a server one step after it was sent, the server keeps its share
 * (weight against the weight behind it, as CHAIN_SET_NEXT says), accepts
 * it and forwards the rest; each step a server answers one batch. The
 * middle server dies mid-job: its queue and the WORK on its way to it are
 * lost, a WORK it had forwarded still arrives. The job completes, every
 * item counted once, some redelegated. */
struct sim_server {
    const char *name;
    uint64_t sid;
    bool dead;
    uint64_t q_first[512];
    uint32_t q_count[512];
    size_t qn;
};

struct sim_work {
    int to;
    uint64_t first;
    uint32_t count;
};

static struct sim_server sim[3];
static struct sim_work wire[4096];
static size_t nwire;

static int sim_index(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(sim[i].name, name) == 0)
            return i;
    return -1;
}

/* Server i takes a WORK: keeps its share, forwards the rest per link. */
static void sim_arrive(struct ledger *l, struct corder *co, int i, uint64_t first, uint32_t count)
{
    struct sim_server *s = &sim[i];
    size_t pos = 0;
    while (strcmp(corder_at(co, pos)->name, s->name) != 0)
        pos++;
    const struct corder_server *me = corder_at(co, pos), *next = corder_at(co, pos + 1);
    uint32_t behind = 0;
    for (size_t k = pos + 1; k < corder_count(co); k++)
        behind += corder_at(co, k)->weight;
    uint32_t keep = (uint32_t)((uint64_t)count * me->weight / (me->weight + behind));
    if (keep == 0 || !next)
        keep = count;
    ledger_accepted(l, first, keep, s->sid);
    s->q_first[s->qn] = first;
    s->q_count[s->qn++] = keep;
    if (keep < count)
        wire[nwire++] = (struct sim_work){sim_index(next->name), first + keep, count - keep};
}

static void test_chain_middle_killed(void)
{
    struct seen s = {0};
    struct ledger *l = ledger_new(1000);
    struct corder *co = corder_new("frontend");
    const char *names[3] = {"c1", "c2", "c3"};
    for (int i = 0; i < 3; i++) {
        sim[i] = (struct sim_server){.name = names[i], .sid = 10 + (uint64_t)i};
        corder_add(co, names[i], "127.0.0.1:1", 1);
    }
    nwire = 0;
    for (int step = 0; step < 2000 && !ledger_complete(l); step++) {
        /* the WORKs sent last step arrive (to a live server) */
        struct sim_work arriving[4096];
        size_t n = nwire;
        memcpy(arriving, wire, n * sizeof *wire);
        nwire = 0;
        for (size_t k = 0; k < n; k++)
            if (!sim[arriving[k].to].dead)
                sim_arrive(l, co, arriving[k].to, arriving[k].first, arriving[k].count);
        /* the front-end sends one WORK to the head while the window allows */
        uint64_t first;
        uint32_t count;
        if (corder_count(co) && ledger_next_unsent(l, 30, &first, &count) == 1) {
            ledger_sent(l, first, count);
            wire[nwire++] = (struct sim_work){sim_index(corder_head(co)->name), first, count};
        }
        for (int i = 0; i < 3; i++) {
            struct sim_server *v = &sim[i];
            if (v->dead || v->qn == 0)
                continue;
            ledger_result(l, v->q_first[0], v->q_count[0], v->sid, v->name, count_done, &s);
            memmove(v->q_first, v->q_first + 1, --v->qn * sizeof v->q_first[0]);
            memmove(v->q_count, v->q_count + 1, v->qn * sizeof v->q_count[0]);
        }
        if (step == 12) { /* c2 SIGKILLed: its queue lost, the chain relinked */
            sim[1].dead = true;
            corder_remove(co, "c2");
            CU_ASSERT(ledger_server_down(l, sim[1].sid) > 0);
        }
    }
    CU_ASSERT_TRUE(ledger_complete(l));
    check_once(&s, 1000);
    struct ledger_counts c = counts(l);
    CU_ASSERT(c.redelegated >= 1);
    uint64_t total = 0;
    for (uint32_t i = 0; i < c.nservers; i++)
        total += c.servers[i].done;
    CU_ASSERT_EQUAL(total, 1000);
    corder_free(co);
    ledger_free(l);
}

void suite_ledger(void)
{
    CU_pSuite s = CU_add_suite("ledger", NULL, NULL);
    CU_add_test(s, "state names", test_names);
    CU_add_test(s, "plain job: two servers, one run at the end", test_plain);
    CU_add_test(s, "ranges outside the job refused", test_ranges_refused);
    CU_add_test(s, "death before ACCEPTED: all resent", test_death_before_accepted);
    CU_add_test(s, "death after ACCEPTED: only its items resent", test_death_after_accepted);
    CU_add_test(s, "death after a partial RESULT: the gaps resent",
                test_death_after_partial_result);
    CU_add_test(s, "late duplicate and a dead session's answer ignored", test_late_duplicate);
    CU_add_test(s, "a copy in flight kept by a live server", test_copy_in_flight);
    CU_add_test(s, "a WORK lost on a link: its items sent again", test_unsend);
    CU_add_test(s, "10^6 items stay a few runs", test_compact);
    CU_add_test(s, "random interleavings: exactly once", test_random);
    CU_add_test(s, "a chain of three, the middle one killed mid-job", test_chain_middle_killed);
}
