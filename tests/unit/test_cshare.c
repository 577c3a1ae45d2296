/* cshare: the share a compute server keeps, however WORKs are cut. */
#include "convoy/cshare.h"

#include <CUnit/CUnit.h>
#include <math.h>
#include <stdbool.h>

#define ANY ((struct cshare_room){UINT32_MAX, false}) /* a window that never fills */

/* Over many WORKs of irregular sizes, a server keeps its weight's share,
 * never more than one item off at any point. */
static void test_proportional(void)
{
    static const struct {
        uint32_t weight, behind;
    } cases[] = {{1, 2}, {3, 1}, {30, 7}, {1, 1000}, {1000, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct cshare s = {0};
        double want = (double)cases[c].weight / (cases[c].weight + cases[c].behind);
        uint64_t seen = 0, kept = 0;
        bool close = true;
        for (uint32_t i = 0; i < 5000; i++) {
            uint32_t count = 1 + (i * 37) % 64;
            uint32_t k = cshare_keep(&s, count, cases[c].weight, cases[c].behind, ANY);
            CU_ASSERT(k <= count);
            seen += count;
            kept += k;
            close = close && fabs((double)kept - want * (double)seen) <= 1.0;
        }
        CU_ASSERT_TRUE(close);
    }
}

/* One item at a time still splits: 1 of 3 kept for weight 1 before 2. */
static void test_single_items(void)
{
    struct cshare s = {0};
    uint32_t kept = 0;
    for (int i = 0; i < 300; i++)
        kept += cshare_keep(&s, 1, 1, 2, ANY);
    CU_ASSERT_EQUAL(kept, 100);
}

static void test_tail_keeps_all(void)
{
    struct cshare s = {0};
    CU_ASSERT_EQUAL(cshare_keep(&s, 64, 5, 0, ANY), 64);
    CU_ASSERT_EQUAL(cshare_keep(&s, 1, 1, 0, ANY), 1);
    CU_ASSERT_EQUAL(cshare_keep(&s, 64, 5, 0, (struct cshare_room){0, false}), 64); /* full */
    CU_ASSERT_EQUAL(cshare_keep(&s, 10, 0, 10, ANY), 0); /* weight 0 counts as 1: 10/11 < 1 */
}

/* The share bends to the window: a full server forwards everything, one
 * with little room keeps only that, an idle one takes what fits. */
static void test_room(void)
{
    struct cshare s = {0};
    CU_ASSERT_EQUAL(cshare_keep(&s, 60, 1, 1, (struct cshare_room){0, false}), 0);
    s.credit = 0;
    CU_ASSERT_EQUAL(cshare_keep(&s, 60, 1, 1, (struct cshare_room){10, false}), 10);
    s.credit = 0;
    CU_ASSERT_EQUAL(cshare_keep(&s, 60, 1, 1, (struct cshare_room){100, false}), 30);
    s.credit = 0;
    CU_ASSERT_EQUAL(cshare_keep(&s, 60, 1, 1, (struct cshare_room){100, true}), 60);
    s.credit = 0;
    CU_ASSERT_EQUAL(cshare_keep(&s, 60, 1, 1, (struct cshare_room){40, true}), 40);
}

/* What an idle server takes beyond its share comes out of the next
 * WORKs, at most one WORK ahead: single items at a half share, ten taken
 * idle, then ten with room: the second ten keep their half but one. */
static void test_idle_borrows(void)
{
    struct cshare s = {0};
    unsigned kept = 0;
    for (int i = 0; i < 10; i++)
        kept += cshare_keep(&s, 1, 1, 1, (struct cshare_room){8, true});
    CU_ASSERT_EQUAL(kept, 10);
    kept = 0;
    for (int i = 0; i < 10; i++)
        kept += cshare_keep(&s, 1, 1, 1, (struct cshare_room){8, false});
    CU_ASSERT_EQUAL(kept, 4);
    /* idle every other WORK: the share holds, a half */
    s.credit = 0;
    kept = 0;
    for (int i = 0; i < 100; i++)
        kept += cshare_keep(&s, 1, 1, 1, (struct cshare_room){8, i % 2 == 0});
    CU_ASSERT(kept >= 50 && kept <= 51);
}

static void test_weight(void)
{
    CU_ASSERT_EQUAL(cshare_weight(31.26), 313);
    CU_ASSERT_EQUAL(cshare_weight(0.01), 1);
    CU_ASSERT_EQUAL(cshare_weight(-5), 1);
    CU_ASSERT_EQUAL(cshare_weight(1e12), 1000000000u);
}

void suite_cshare(void)
{
    CU_pSuite s = CU_add_suite("cshare", NULL, NULL);
    CU_add_test(s, "kept share follows the weights over irregular WORKs", test_proportional);
    CU_add_test(s, "one item per WORK still splits", test_single_items);
    CU_add_test(s, "the tail keeps everything", test_tail_keeps_all);
    CU_add_test(s, "the share bends to the window's room", test_room);
    CU_add_test(s, "weights in tenths of GFLOP/s", test_weight);
    CU_add_test(s, "an idle server borrows from its share, one WORK ahead at most",
                test_idle_borrows);
}
