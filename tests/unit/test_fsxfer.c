/*
 * fsxfer: reports leave at once while the balancer is there, are kept in
 * order while it is away and delivered by a flush, a leg keeps at most one
 * PROGRESS waiting, and the bound drops PROGRESS first, then START, never
 * an END while anything else can go. The sender is a fake that records.
 */
#include "convoy/fsxfer.h"

#include "convoy/ring.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <string.h>

#define SENT_MAX 64

struct fake {
    bool away;
    int n;
    enum frame_type type[SENT_MAX];
    uint64_t id[SENT_MAX], bytes[SENT_MAX];
    char outcome[SENT_MAX][32];
};

static uint64_t num(const cJSON *meta, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, name);
    return cJSON_IsNumber(v) ? (uint64_t)v->valuedouble : UINT64_MAX;
}

static int fake_send(void *arg, enum frame_type type, const cJSON *meta)
{
    struct fake *f = arg;
    if (f->away)
        return -ENOTCONN;
    CU_ASSERT_FATAL(f->n < SENT_MAX);
    f->type[f->n] = type;
    f->id[f->n] = num(meta, "id");
    f->bytes[f->n] = num(meta, "bytes");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(meta, "outcome");
    snprintf(f->outcome[f->n], sizeof f->outcome[0], "%s", cJSON_IsString(o) ? o->valuestring : "");
    f->n++;
    return 0;
}

static fsxfer_leg_t *start(fsxfer_t *x, uint64_t id)
{
    struct xfer_msg m = {.id = id, .path = "/a.bin", .first_byte = 0, .length = 100, .size = 100};
    fsxfer_leg_t *leg = fsxfer_start(x, &m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(leg);
    return leg;
}

static void test_connected(void)
{
    struct fake f = {0};
    fsxfer_t *x;
    CU_ASSERT_EQUAL_FATAL(fsxfer_new(&x, fake_send, &f, 0), 0);
    uint64_t now = ring_now_ms();
    fsxfer_leg_t *leg = start(x, 7);
    CU_ASSERT_EQUAL(fsxfer_active(x), 1);
    fsxfer_progress(x, leg, 10, now + 10);                      /* too soon */
    fsxfer_progress(x, leg, 40, now + FSXFER_PROGRESS_MS + 5);  /* sent */
    fsxfer_progress(x, leg, 40, now + FSXFER_PROGRESS_MS * 3);  /* nothing moved */
    fsxfer_progress(x, leg, 50, now + FSXFER_PROGRESS_MS + 50); /* too soon again */
    fsxfer_end(x, leg, 100, XFER_OUT_COMPLETE);
    CU_ASSERT_EQUAL(fsxfer_active(x), 0);
    CU_ASSERT_EQUAL_FATAL(f.n, 3);
    CU_ASSERT_EQUAL(f.type[0], FRAME_XFER_START);
    CU_ASSERT_EQUAL(f.id[0], 7);
    CU_ASSERT_EQUAL(f.type[1], FRAME_XFER_PROGRESS);
    CU_ASSERT_EQUAL(f.bytes[1], 40);
    CU_ASSERT_EQUAL(f.type[2], FRAME_XFER_END);
    CU_ASSERT_EQUAL(f.bytes[2], 100);
    CU_ASSERT_STRING_EQUAL(f.outcome[2], "complete");
    CU_ASSERT_EQUAL(fsxfer_queued(x), 0);
    fsxfer_free(x);
}

static void test_away_kept_in_order(void)
{
    struct fake f = {.away = true};
    fsxfer_t *x;
    CU_ASSERT_EQUAL_FATAL(fsxfer_new(&x, fake_send, &f, 0), 0);
    uint64_t now = ring_now_ms();
    fsxfer_leg_t *a = start(x, 1);
    for (int i = 1; i <= 3; i++) /* one PROGRESS waits, the newest */
        fsxfer_progress(x, a, (uint64_t)i * 10, now + (uint64_t)i * FSXFER_PROGRESS_MS);
    fsxfer_leg_t *b = start(x, 2);
    fsxfer_progress(x, b, 5, now + 10 * FSXFER_PROGRESS_MS);
    CU_ASSERT_EQUAL(fsxfer_queued(x), 4);          /* START 1, PROGRESS 1, START 2, PROGRESS 2 */
    fsxfer_end(x, a, 77, XFER_OUT_CLIENT_ABORTED); /* replaces PROGRESS 1 */
    CU_ASSERT_EQUAL(fsxfer_queued(x), 4);
    fsxfer_flush(x); /* still away: nothing goes */
    CU_ASSERT_EQUAL(f.n, 0);
    f.away = false;
    fsxfer_flush(x);
    CU_ASSERT_EQUAL_FATAL(f.n, 4);
    CU_ASSERT(f.type[0] == FRAME_XFER_START && f.id[0] == 1);
    CU_ASSERT(f.type[1] == FRAME_XFER_START && f.id[1] == 2);
    CU_ASSERT(f.type[2] == FRAME_XFER_PROGRESS && f.id[2] == 2 && f.bytes[2] == 5);
    CU_ASSERT(f.type[3] == FRAME_XFER_END && f.id[3] == 1 && f.bytes[3] == 77);
    CU_ASSERT_STRING_EQUAL(f.outcome[3], "client-aborted");
    CU_ASSERT_EQUAL(fsxfer_active(x), 1);
    fsxfer_end(x, b, 5, XFER_OUT_ERROR); /* there again: at once */
    CU_ASSERT_EQUAL(f.n, 5);
    CU_ASSERT_STRING_EQUAL(f.outcome[4], "error");
    CU_ASSERT_EQUAL(fsxfer_dropped(x), 0);
    fsxfer_free(x);
}

static void test_bound(void)
{
    struct fake f = {.away = true};
    fsxfer_t *x;
    CU_ASSERT_EQUAL_FATAL(fsxfer_new(&x, fake_send, &f, 4), 0);
    uint64_t now = ring_now_ms();
    fsxfer_leg_t *leg[4];
    for (int i = 0; i < 2; i++) {
        leg[i] = start(x, (uint64_t)i + 1);
        fsxfer_progress(x, leg[i], 10, now + FSXFER_PROGRESS_MS);
    }
    CU_ASSERT_EQUAL(fsxfer_queued(x), 4); /* S1 P1 S2 P2 */
    leg[2] = start(x, 3);                 /* drops P1 */
    CU_ASSERT_EQUAL(fsxfer_queued(x), 4);
    CU_ASSERT_EQUAL(fsxfer_dropped(x), 1);
    fsxfer_end(x, leg[0], 10, XFER_OUT_COMPLETE); /* full: drops P2 */
    fsxfer_end(x, leg[1], 10, XFER_OUT_COMPLETE); /* full: drops S1 */
    fsxfer_end(x, leg[2], 0, XFER_OUT_COMPLETE);  /* full: drops S2 */
    CU_ASSERT_EQUAL(fsxfer_dropped(x), 4);
    CU_ASSERT_EQUAL(fsxfer_queued(x), 4); /* S3 E1 E2 E3 */
    f.away = false;
    fsxfer_flush(x);
    CU_ASSERT_EQUAL_FATAL(f.n, 4);
    CU_ASSERT(f.type[0] == FRAME_XFER_START && f.id[0] == 3);
    for (int i = 1; i < 4; i++)
        CU_ASSERT(f.type[i] == FRAME_XFER_END && f.id[i] == (uint64_t)i);
    CU_ASSERT_EQUAL(fsxfer_active(x), 0);
    leg[3] = start(x, 9);
    fsxfer_free(x); /* a running leg is forgotten, not leaked */
}

void suite_fsxfer(void)
{
    CU_pSuite s = CU_add_suite("fsxfer", NULL, NULL);
    CU_add_test(s, "reports leave at once, PROGRESS rate-limited", test_connected);
    CU_add_test(s, "kept in order while away, one PROGRESS per leg", test_away_kept_in_order);
    CU_add_test(s, "the bound drops PROGRESS, then START, not END", test_bound);
}
