/* corder: the CHAIN_SET_NEXT messages joins and departures call for. */
#include "convoy/corder.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static struct corder_link out[CORDER_SERVERS];

/* The chain's names in order, joined by spaces. */
static const char *order(const struct corder *co)
{
    static char buf[256];
    buf[0] = 0;
    for (size_t i = 0; i < corder_count(co); i++) {
        if (i)
            strcat(buf, " ");
        strcat(buf, corder_at(co, i)->name);
    }
    return buf;
}

static void check_link(const struct corder_link *l, const char *name, const char *prev,
                       const char *next, const char *next_addr, uint32_t behind)
{
    CU_ASSERT_STRING_EQUAL(l->name, name);
    CU_ASSERT_STRING_EQUAL(l->prev, prev);
    CU_ASSERT_STRING_EQUAL(l->next, next);
    CU_ASSERT_STRING_EQUAL(l->next_addr, next_addr);
    CU_ASSERT_EQUAL(l->behind, behind);
}

static void test_joins(void)
{
    struct corder *co = corder_new("frontend");
    CU_ASSERT_FATAL(co != NULL);
    CU_ASSERT_PTR_NULL(corder_head(co));
    CU_ASSERT_EQUAL(corder_links(co, out, CORDER_SERVERS), 0);
    CU_ASSERT_EQUAL(corder_epoch(co), 0);

    CU_ASSERT_EQUAL(corder_add(co, "c1", "127.0.0.1:7001", 10), 0);
    CU_ASSERT_EQUAL(corder_links(co, out, CORDER_SERVERS), 1);
    check_link(&out[0], "c1", "frontend", "", "", 0);
    CU_ASSERT_EQUAL(out[0].epoch, 1);

    /* c2 at the tail: c1 gets a next and a weight behind, c2 its first link */
    CU_ASSERT_EQUAL(corder_add(co, "c2", "127.0.0.1:7002", 20), 0);
    CU_ASSERT_EQUAL(corder_links(co, out, CORDER_SERVERS), 2);
    check_link(&out[0], "c1", "frontend", "c2", "127.0.0.1:7002", 20);
    check_link(&out[1], "c2", "c1", "", "", 0);
    CU_ASSERT_EQUAL(out[0].epoch, 2);
    CU_ASSERT_EQUAL(out[1].epoch, 2);

    CU_ASSERT_EQUAL(corder_add(co, "c3", "127.0.0.1:7003", 5), 0);
    CU_ASSERT_EQUAL(corder_links(co, out, CORDER_SERVERS), 3);
    check_link(&out[0], "c1", "frontend", "c2", "127.0.0.1:7002", 25);
    check_link(&out[1], "c2", "c1", "c3", "127.0.0.1:7003", 5);
    check_link(&out[2], "c3", "c2", "", "", 0);
    CU_ASSERT_STRING_EQUAL(order(co), "c1 c2 c3");
    CU_ASSERT_STRING_EQUAL(corder_head(co)->name, "c1");

    /* nothing changed: nothing to send, the epoch stays */
    CU_ASSERT_EQUAL(corder_links(co, out, CORDER_SERVERS), 0);
    CU_ASSERT_EQUAL(corder_epoch(co), 3);
    corder_free(co);
}

/* A measured weight: the server hears its own, everyone before it the new
 * weight behind; the servers after it hear nothing. */
static void test_weight_changes(void)
{
    struct corder *co = corder_new("frontend");
    CU_ASSERT_EQUAL(corder_add(co, "c1", "127.0.0.1:7001", 10), 0);
    CU_ASSERT_EQUAL(corder_add(co, "c2", "127.0.0.1:7002", 10), 0);
    CU_ASSERT_EQUAL(corder_add(co, "c3", "127.0.0.1:7003", 10), 0);
    CU_ASSERT_EQUAL(corder_links(co, out, CORDER_SERVERS), 3);
    CU_ASSERT_EQUAL(out[1].weight, 10);
    CU_ASSERT_EQUAL(corder_set_weight(co, "c2", 4), 0);
    CU_ASSERT_EQUAL(corder_links(co, out, CORDER_SERVERS), 2);
    check_link(&out[0], "c1", "frontend", "c2", "127.0.0.1:7002", 14);
    check_link(&out[1], "c2", "c1", "c3", "127.0.0.1:7003", 10);
    CU_ASSERT_EQUAL(out[1].weight, 4);
    CU_ASSERT_EQUAL(corder_set_weight(co, "c2", 4), 0); /* the same: nothing to say */
    CU_ASSERT_EQUAL(corder_links(co, out, CORDER_SERVERS), 0);
    CU_ASSERT_EQUAL(corder_set_weight(co, "c9", 4), -ENOENT);
    CU_ASSERT_EQUAL(corder_set_weight(co, "c1", 0), -EINVAL);
    corder_free(co);
}

static void test_refusals(void)
{
    struct corder *co = corder_new("frontend");
    CU_ASSERT_EQUAL(corder_add(co, "c1", "127.0.0.1:7001", 1), 0);
    CU_ASSERT_EQUAL(corder_add(co, "c1", "127.0.0.1:7009", 1), -EEXIST);
    CU_ASSERT_EQUAL(corder_add(co, "c2", "127.0.0.1:7002", 0), -EINVAL);
    CU_ASSERT_EQUAL(corder_add(co, "", "127.0.0.1:7002", 1), -EINVAL);
    CU_ASSERT_EQUAL(corder_remove(co, "c9"), -ENOENT);
    char name[8];
    for (int i = 2; i <= CORDER_SERVERS; i++) {
        snprintf(name, sizeof name, "c%d", i);
        CU_ASSERT_EQUAL(corder_add(co, name, "127.0.0.1:1", 1), 0);
    }
    CU_ASSERT_EQUAL(corder_add(co, "cx", "127.0.0.1:1", 1), -ENOSPC);
    corder_free(co);
}

static struct corder *three(void)
{
    struct corder *co = corder_new("frontend");
    corder_add(co, "c1", "127.0.0.1:7001", 1);
    corder_add(co, "c2", "127.0.0.1:7002", 2);
    corder_add(co, "c3", "127.0.0.1:7003", 4);
    corder_links(co, out, CORDER_SERVERS);
    return co;
}

/* The middle one dies: c1 is relinked to c3; c3 hears its new prev. */
static void test_middle_dies(void)
{
    struct corder *co = three();
    CU_ASSERT_EQUAL(corder_remove(co, "c2"), 0);
    CU_ASSERT_EQUAL(corder_links(co, out, CORDER_SERVERS), 2);
    check_link(&out[0], "c1", "frontend", "c3", "127.0.0.1:7003", 4);
    check_link(&out[1], "c3", "c1", "", "", 0);
    CU_ASSERT_EQUAL(out[0].epoch, 2);
    CU_ASSERT_STRING_EQUAL(order(co), "c1 c3");
    corder_free(co);
}

/* The head dies: c2 is the head, the front-end its prev. */
static void test_head_dies(void)
{
    struct corder *co = three();
    corder_remove(co, "c1");
    CU_ASSERT_EQUAL(corder_links(co, out, CORDER_SERVERS), 1);
    check_link(&out[0], "c2", "frontend", "c3", "127.0.0.1:7003", 4);
    CU_ASSERT_STRING_EQUAL(corder_head(co)->name, "c2");
    corder_free(co);
}

/* The tail leaves: c2 becomes the tail, c1's behind shrinks. */
static void test_tail_leaves(void)
{
    struct corder *co = three();
    corder_remove(co, "c3");
    CU_ASSERT_EQUAL(corder_links(co, out, CORDER_SERVERS), 2);
    check_link(&out[0], "c1", "frontend", "c2", "127.0.0.1:7002", 2);
    check_link(&out[1], "c2", "c1", "", "", 0);
    corder_free(co);
}

/* c2 dies and comes back (a new session): it rejoins at the tail. */
static void test_rejoin(void)
{
    struct corder *co = three();
    corder_remove(co, "c2");
    corder_add(co, "c2", "127.0.0.1:7012", 2);
    CU_ASSERT_EQUAL(corder_links(co, out, CORDER_SERVERS), 3);
    check_link(&out[0], "c1", "frontend", "c3", "127.0.0.1:7003", 6);
    check_link(&out[1], "c3", "c1", "c2", "127.0.0.1:7012", 2);
    check_link(&out[2], "c2", "c3", "", "", 0);
    CU_ASSERT_STRING_EQUAL(order(co), "c1 c3 c2");
    /* links handed out in parts: the rest on the next call, a new epoch */
    corder_remove(co, "c1");
    corder_remove(co, "c3");
    corder_add(co, "c4", "127.0.0.1:7004", 1);
    CU_ASSERT_EQUAL(corder_links(co, out, 1), 1);
    check_link(&out[0], "c2", "frontend", "c4", "127.0.0.1:7004", 1);
    uint64_t e = out[0].epoch;
    CU_ASSERT_EQUAL(corder_links(co, out, 1), 1);
    check_link(&out[0], "c4", "c2", "", "", 0);
    CU_ASSERT(out[0].epoch > e);
    corder_free(co);
}

void suite_corder(void)
{
    CU_pSuite s = CU_add_suite("corder", NULL, NULL);
    CU_add_test(s, "joins append at the tail, behind summed", test_joins);
    CU_add_test(s, "duplicates, weight 0, a full chain refused", test_refusals);
    CU_add_test(s, "a measured weight relinks the server and those before it", test_weight_changes);
    CU_add_test(s, "the middle server dies: predecessor relinked", test_middle_dies);
    CU_add_test(s, "the head dies: the next one is the head", test_head_dies);
    CU_add_test(s, "the tail leaves", test_tail_leaves);
    CU_add_test(s, "a rejoin goes to the tail; links in parts", test_rejoin);
}
