/* shmlane: bodies written in place arrive whole, room comes back only as
 * the reader releases it (in order, whatever order its regions end in),
 * and a reader refuses positions no writer hands out. */
#include "convoy/shmlane.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define LANE (16 * SHMLANE_ALIGN)

static shmlane_w_t *w;
static shmlane_r_t *r;

static void lane_open(void)
{
    char why[160];
    CU_ASSERT_EQUAL_FATAL(shmlane_w_new(&w, LANE), 0);
    CU_ASSERT_EQUAL_FATAL(shmlane_r_open(&r, shmlane_w_name(w), LANE, why, sizeof why), 0);
}

static void lane_close(void)
{
    shmlane_r_free(r);
    shmlane_w_free(w);
}

static void test_bodies(void)
{
    lane_open();
    uint64_t pos[3];
    for (int i = 0; i < 3; i++) {
        uint8_t *p = shmlane_w_alloc(w, 3 * SHMLANE_ALIGN + 5, &pos[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        CU_ASSERT_EQUAL(pos[i] % SHMLANE_ALIGN, 0);
        memset(p, 'a' + i, 3 * SHMLANE_ALIGN + 5);
    }
    for (int i = 0; i < 3; i++) {
        const uint8_t *p = shmlane_r_take(r, pos[i], 3 * SHMLANE_ALIGN + 5);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        CU_ASSERT(p[0] == 'a' + i && p[3 * SHMLANE_ALIGN + 4] == 'a' + i);
    }
    /* 12 of 16 pages held (each body rounds up to 4): no room for 8 more */
    uint64_t more;
    CU_ASSERT_PTR_NULL(shmlane_w_alloc(w, 8 * SHMLANE_ALIGN, &more));
    /* the second ends first: nothing can be released before the first */
    CU_ASSERT_EQUAL(shmlane_r_done(r, pos[1]), 0);
    int64_t upto = shmlane_r_done(r, pos[0]);
    CU_ASSERT_EQUAL(upto, (int64_t)(pos[1] + 3 * SHMLANE_ALIGN + 5));
    CU_ASSERT_EQUAL(shmlane_r_done(r, pos[0]), -ENOENT);
    CU_ASSERT_EQUAL(shmlane_w_released(w, (uint64_t)upto), 0);
    CU_ASSERT_EQUAL(shmlane_w_released(w, (uint64_t)upto - 1), -ERANGE); /* backwards */
    /* a body that would run past the end starts the next lap instead, in
     * the room released at the start (7 pages: the first 7 are free) */
    uint8_t *p = shmlane_w_alloc(w, 7 * SHMLANE_ALIGN, &more);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(more, LANE);
    CU_ASSERT_PTR_NOT_NULL(shmlane_r_take(r, more, 7 * SHMLANE_ALIGN));
    CU_ASSERT_EQUAL(shmlane_r_done(r, pos[2]), (int64_t)(pos[2] + 3 * SHMLANE_ALIGN + 5));
    CU_ASSERT_EQUAL(shmlane_r_done(r, more), (int64_t)(more + 7 * SHMLANE_ALIGN));
    CU_ASSERT_EQUAL(shmlane_w_released(w, more + 7 * SHMLANE_ALIGN), 0);
    CU_ASSERT_EQUAL(shmlane_w_held(w), 0);
    CU_ASSERT_EQUAL(shmlane_w_released(w, more + 7 * SHMLANE_ALIGN + 1), -ERANGE); /* ahead */
    lane_close();
}

static void test_forged_positions(void)
{
    lane_open();
    uint64_t pos;
    CU_ASSERT_PTR_NOT_NULL_FATAL(shmlane_w_alloc(w, SHMLANE_ALIGN, &pos));
    CU_ASSERT_PTR_NULL(shmlane_r_take(r, LANE - 10, 20)); /* across the end */
    CU_ASSERT_PTR_NULL(shmlane_r_take(r, 0, LANE + 1));   /* bigger than the lane */
    CU_ASSERT_PTR_NULL(shmlane_r_take(r, 0, 0));          /* empty */
    CU_ASSERT_PTR_NULL(shmlane_r_take(r, 2 * LANE, 10));  /* a lap ahead of the reader */
    CU_ASSERT_PTR_NOT_NULL(shmlane_r_take(r, pos, SHMLANE_ALIGN));
    CU_ASSERT_PTR_NULL(shmlane_r_take(r, pos, SHMLANE_ALIGN)); /* taken again */
    CU_ASSERT_PTR_NULL(shmlane_w_alloc(w, LANE + 1, &pos));
    lane_close();
}

static void test_open_checks(void)
{
    char why[160];
    CU_ASSERT_EQUAL_FATAL(shmlane_w_new(&w, LANE), 0);
    CU_ASSERT_EQUAL(shmlane_r_open(&r, shmlane_w_name(w), LANE / 2, why, sizeof why), -EBADMSG);
    CU_ASSERT_EQUAL(shmlane_r_open(&r, shmlane_w_name(w), 100, why, sizeof why), -EINVAL);
    CU_ASSERT_EQUAL(shmlane_r_open(&r, "/etc-passwd", LANE, why, sizeof why), -EINVAL);
    CU_ASSERT_EQUAL(shmlane_r_open(&r, shmlane_w_name(w), LANE, why, sizeof why), 0);
    char again[64];
    snprintf(again, sizeof again, "%s", shmlane_w_name(w));
    shmlane_r_t *r2;
    CU_ASSERT_EQUAL(shmlane_r_open(&r2, again, LANE, why, sizeof why), -ENOENT); /* unlinked */
    shmlane_r_free(r);
    shmlane_w_free(w);
    CU_ASSERT_EQUAL(shmlane_w_new(&w, 0), -EINVAL);
    CU_ASSERT_EQUAL(shmlane_w_new(&w, LANE + 1), -EINVAL);
}

void suite_shmlane(void)
{
    CU_pSuite s = CU_add_suite("shmlane", NULL, NULL);
    CU_add_test(s, "bodies in place; room back in order only", test_bodies);
    CU_add_test(s, "positions no writer hands out are refused", test_forged_positions);
    CU_add_test(s, "open: size, name, once", test_open_checks);
}
