/* jobtab: job rows and the chain through shared memory, rows checked. */
#include "convoy/jobtab.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char name[64];

static int setup(void)
{
    snprintf(name, sizeof name, "unit-%d-jobtab", (int)getpid());
    return 0;
}

static int teardown(void)
{
    shm_remove(name);
    return 0;
}

static struct jobtab_row job(uint64_t id, uint64_t items, uint64_t ok)
{
    struct jobtab_row r = {
        .id = id, .state = JOBTAB_RUNNING, .n = 64, .items = items, .done = ok, .ok = ok};
    strcpy(r.user, "alice");
    strcpy(r.op, "invert");
    return r;
}

static void test_names(void)
{
    CU_ASSERT_STRING_EQUAL(jobtab_state_str(JOBTAB_WAITING), "waiting");
    CU_ASSERT_STRING_EQUAL(jobtab_state_str(JOBTAB_RUNNING), "running");
    CU_ASSERT_STRING_EQUAL(jobtab_state_str(JOBTAB_DONE), "done");
    CU_ASSERT_STRING_EQUAL(jobtab_state_str(JOBTAB_CANCELLED), "cancelled");
    CU_ASSERT_STRING_EQUAL(jobtab_state_str((enum jobtab_state)7), "unknown");
}

static void test_checks(void)
{
    char why[64];
    struct jobtab_row r = job(1, 10, 4);
    CU_ASSERT_EQUAL(jobtab_row_check(&r, why, sizeof why), 0);
    r.singular = 1;
    CU_ASSERT_EQUAL(jobtab_row_check(&r, why, sizeof why), -EPROTO);
    CU_ASSERT_STRING_EQUAL(why, "counts do not add up");
    r = job(1, 10, 11);
    CU_ASSERT_EQUAL(jobtab_row_check(&r, NULL, 0), -EPROTO);
    r = job(0, 10, 0);
    CU_ASSERT_EQUAL(jobtab_row_check(&r, NULL, 0), -EPROTO);
    r = job(1, 10, 0);
    r.state = 9;
    CU_ASSERT_EQUAL(jobtab_row_check(&r, why, sizeof why), -EPROTO);
    CU_ASSERT_STRING_EQUAL(why, "unknown state");
    r = job(1, 10, 0);
    memset(r.op, 'x', sizeof r.op);
    CU_ASSERT_EQUAL(jobtab_row_check(&r, NULL, 0), -EPROTO);
}

/* The owner writes jobs and the chain; a reader sees them; a bad row is
 * hidden from readers and cleared by the next owner. */
static void test_share(void)
{
    struct jobtab *own, *rd;
    CU_ASSERT_EQUAL_FATAL(jobtab_own(name, 16, &own), 0);
    CU_ASSERT_EQUAL(jobtab_capacity(own), 16);
    struct jobtab_row r = job(5, 100, 40), bad = job(6, 10, 0);
    bad.done = 3;
    CU_ASSERT_EQUAL(jobtab_put(own, 0, &r), 0);
    CU_ASSERT_EQUAL(jobtab_put(own, 1, &bad), 0);
    struct jobtab_server chain[2] = {{"c1", "127.0.0.1:7001", 10, 2, 5, 0},
                                     {"c2", "127.0.0.1:7002", 20, 4, 0, 0}};
    CU_ASSERT_EQUAL(jobtab_chain_put(own, chain, 2), 0);

    CU_ASSERT_EQUAL_FATAL(jobtab_attach(name, &rd), 0);
    CU_ASSERT_EQUAL(jobtab_capacity(rd), 16);
    struct jobtab_row got;
    CU_ASSERT_EQUAL(jobtab_get(rd, 0, &got), 1);
    CU_ASSERT_EQUAL(got.id, 5);
    CU_ASSERT_EQUAL(got.ok, 40);
    CU_ASSERT_STRING_EQUAL(got.user, "alice");
    CU_ASSERT_EQUAL(jobtab_get(rd, 1, &got), 0);
    CU_ASSERT_EQUAL(jobtab_get(rd, 2, &got), 0);
    struct jobtab_server back[4];
    CU_ASSERT_EQUAL(jobtab_chain(rd, back, 4), 2);
    CU_ASSERT_STRING_EQUAL(back[1].name, "c2");
    CU_ASSERT_EQUAL(back[1].weight, 20);
    CU_ASSERT_EQUAL(jobtab_put(rd, 0, &r), -EPERM);

    /* the middle server unlinked: the chain shrinks, in order */
    CU_ASSERT_EQUAL(jobtab_chain_put(own, &chain[1], 1), 0);
    CU_ASSERT_EQUAL(jobtab_chain(rd, back, 4), 1);
    CU_ASSERT_STRING_EQUAL(back[0].name, "c2");
    jobtab_close(rd);
    jobtab_close(own);

    /* a new owner keeps the good job, clears the bad one, starts the
     * chain empty */
    CU_ASSERT_EQUAL_FATAL(jobtab_own(name, 16, &own), 0);
    CU_ASSERT_EQUAL(jobtab_get(own, 0, &got), 1);
    CU_ASSERT_EQUAL(got.id, 5);
    CU_ASSERT_EQUAL(jobtab_get(own, 1, &got), 0);
    CU_ASSERT_EQUAL(jobtab_chain(own, back, 4), 0);
    jobtab_close(own);
}

static void test_not_a_frontend(void)
{
    struct jobtab *rd;
    CU_ASSERT_EQUAL(jobtab_attach("unit-jobtab-missing", &rd), -ENOENT);
}

void suite_jobtab(void)
{
    CU_pSuite s = CU_add_suite("jobtab", setup, teardown);
    CU_add_test(s, "state names", test_names);
    CU_add_test(s, "rows checked: counts, state, strings", test_checks);
    CU_add_test(s, "jobs and chain shared; bad rows hidden, then cleared", test_share);
    CU_add_test(s, "a missing segment", test_not_a_frontend);
}
