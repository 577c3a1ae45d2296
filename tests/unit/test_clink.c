/* clink: chain links on loopback with a test PKI: a WORK with a 4 MiB body
 * arrives whole and in order, a gen WORK and a CANCEL arrive, a peer that
 * is not the named predecessor is refused, hold stops the sender until
 * release. */
#include "../common/fixture.h"
#include "convoy/clink.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY (4u << 20)

static struct {
    char dir[64];
    ring_t *ring;
    tls_ctx_t *srv_tls, *c1_tls, *rogue_tls;
    clink_srv_t *srv;
    /* what the acceptor saw */
    unsigned works, cancels, ends;
    uint64_t got, sum;
    struct chain_work last;
    uint32_t stream;
    clink_t *acc; /* the accepted side of the newest link */
    bool hold;
    /* what the dialler saw */
    bool up, down, sent, room;
    int down_reason;
} g;

static int on_work(void *arg, clink_t *l, const struct chain_work *w, uint32_t stream)
{
    (void)arg;
    g.works++;
    g.acc = l;
    g.last = *w;
    g.stream = stream;
    if (g.hold && stream)
        clink_hold(l, stream);
    if (stream == 0)
        ring_stop(g.ring);
    return 0;
}

static int on_body(void *arg, clink_t *l, uint32_t stream, const uint8_t *p, size_t len)
{
    (void)arg, (void)l, (void)stream;
    for (size_t i = 0; i < len; i++)
        g.sum = g.sum * 31 + p[i];
    g.got += len;
    return 0;
}

static void on_end(void *arg, clink_t *l, uint32_t stream, int err)
{
    (void)arg, (void)l, (void)stream;
    if (err == 0)
        g.ends++;
    ring_stop(g.ring);
}

static void on_cancel(void *arg, clink_t *l, const struct chain_span *s)
{
    (void)arg, (void)l;
    g.cancels += s->job == 5;
    ring_stop(g.ring);
}

static void on_up(void *arg, clink_t *l)
{
    (void)arg, (void)l;
    g.up = true;
    ring_stop(g.ring);
}

static void on_down(void *arg, clink_t *l, int reason)
{
    (void)l;
    if (arg == &g) { /* the dialler's */
        g.down = true;
        g.down_reason = reason;
        ring_stop(g.ring);
    }
}

static const struct clink_handlers acceptor = {
    .on_work = on_work, .on_body = on_body, .on_end = on_end, .on_cancel = on_cancel};
static void on_room(void *arg, clink_t *l)
{
    (void)arg, (void)l;
    g.room = true;
    ring_stop(g.ring);
}

static const struct clink_handlers dialler = {
    .on_up = on_up, .on_down = on_down, .on_room = on_room, .arg = &g};

static struct ring_timer tick;

static void tick_fired(struct ring_timer *t)
{
    (void)t;
    ring_stop(g.ring);
}

/* Runs the ring for about ms. */
static void run_ms(uint32_t ms)
{
    ring_timer_start(g.ring, &tick, ms, tick_fired);
    ring_run(g.ring);
    ring_timer_stop(g.ring, &tick);
}

static int setup(void)
{
    char err[256];
    static const char *const names[] = {"c2:compute", "c1:compute", "frontend", "fs1", NULL};
    struct net_addr a;
    if (fx_tmpdir(g.dir, sizeof g.dir) < 0 || fx_pki(g.dir, names) < 0 ||
        ring_create(&g.ring, 64) < 0 ||
        tls_ctx_new(&g.srv_tls, TLS_SERVER, g.dir, "c2", true, err, sizeof err) < 0 ||
        tls_ctx_new(&g.c1_tls, TLS_CLIENT, g.dir, "c1", false, err, sizeof err) < 0 ||
        tls_ctx_new(&g.rogue_tls, TLS_CLIENT, g.dir, "fs1", false, err, sizeof err) < 0 ||
        net_addr_parse("127.0.0.1:0", &a) < 0)
        return -1;
    return clink_listen(&g.srv, g.ring, g.srv_tls, &a, &acceptor);
}

static int teardown(void)
{
    clink_srv_stop(g.srv);
    run_ms(100);
    ring_destroy(g.ring);
    tls_ctx_free(g.srv_tls);
    tls_ctx_free(g.c1_tls);
    tls_ctx_free(g.rogue_tls);
    fx_rmtree(g.dir);
    return 0;
}

static void sent(void *arg, int err)
{
    (void)arg;
    g.sent = err == 0;
}

static clink_t *dial(tls_ctx_t *tls)
{
    clink_t *l;
    g.up = g.down = false;
    CU_ASSERT_EQUAL_FATAL(clink_dial(&l, g.ring, tls, clink_srv_addr(g.srv), "c2", &dialler), 0);
    while (!g.up && !g.down) /* a stop left by an earlier test's events may come first */
        CU_ASSERT_EQUAL_FATAL(ring_run(g.ring), 0);
    return l;
}

/* Closes the dialled link and runs the ring until its on_down. */
static void close_and_wait(clink_t *l)
{
    clink_close(l);
    while (!g.down)
        CU_ASSERT_EQUAL_FATAL(ring_run(g.ring), 0);
}

static void test_work_with_body(void)
{
    clink_srv_set_prev(g.srv, "c1");
    clink_t *l = dial(g.c1_tls);
    CU_ASSERT_FATAL(g.up);
    static uint8_t body[BODY];
    uint64_t want = 0;
    for (size_t i = 0; i < BODY; i++)
        want = want * 31 + (body[i] = (uint8_t)(i * 13 + (i >> 12)));
    struct chain_work w = {.job = 1, .first = 0, .count = 128, .n = 64, .output = true};
    CU_ASSERT_EQUAL(chain_work_body_len(&w), BODY);
    CU_ASSERT_EQUAL(clink_send_work(l, &w, body, BODY - 1, sent, NULL), -EINVAL);
    CU_ASSERT_EQUAL_FATAL(clink_send_work(l, &w, body, BODY, sent, NULL), 0);
    while (g.ends == 0)
        CU_ASSERT_EQUAL_FATAL(ring_run(g.ring), 0);
    CU_ASSERT(g.sent);
    CU_ASSERT_EQUAL(g.works, 1);
    CU_ASSERT_EQUAL(g.got, BODY);
    CU_ASSERT_EQUAL(g.sum, want);
    CU_ASSERT_EQUAL(g.last.count, 128);

    /* A generated WORK has no body; a CANCEL follows it in order. */
    struct chain_work gw = {
        .job = 5, .first = 10, .count = 3, .n = 8, .gen = true, .seed = 9, .kind = "spd"};
    g.sent = false;
    CU_ASSERT_EQUAL(clink_send_work(l, &gw, NULL, 0, sent, NULL), 0);
    CU_ASSERT_EQUAL(clink_send_cancel(l, &(struct chain_span){5, 0, 0}), 0);
    while (g.cancels == 0)
        CU_ASSERT_EQUAL_FATAL(ring_run(g.ring), 0);
    CU_ASSERT(g.sent);
    CU_ASSERT_EQUAL(g.works, 2);
    CU_ASSERT(g.last.gen && g.last.seed == 9 && g.stream == 0);

    /* A new predecessor: this link is closed. */
    clink_srv_set_prev(g.srv, "frontend");
    while (!g.down)
        CU_ASSERT_EQUAL_FATAL(ring_run(g.ring), 0);
}

static void test_not_the_predecessor(void)
{
    clink_srv_set_prev(g.srv, "c1");
    dial(g.rogue_tls); /* a file server's certificate: wrong name and role */
    while (!g.down)
        CU_ASSERT_EQUAL_FATAL(ring_run(g.ring), 0);
    CU_ASSERT_FALSE(g.up && g.works > 2);
    clink_srv_set_prev(g.srv, "frontend");
    clink_t *l = dial(g.c1_tls); /* the right role, but not the named one */
    (void)l;
    while (!g.down)
        CU_ASSERT_EQUAL_FATAL(ring_run(g.ring), 0);
    CU_ASSERT_EQUAL(g.works, 2);
}

static void test_hold(void)
{
    clink_srv_set_prev(g.srv, "c1");
    clink_t *l = dial(g.c1_tls);
    CU_ASSERT_FATAL(g.up);
    static uint8_t body[BODY];
    struct chain_work w = {.job = 2, .count = 128, .n = 64};
    g.hold = true;
    g.got = 0;
    unsigned ends = g.ends;
    CU_ASSERT_EQUAL_FATAL(clink_send_work(l, &w, body, BODY, NULL, NULL), 0);
    run_ms(500);                                   /* far longer than the body needs on loopback */
    CU_ASSERT(g.got > 0 && g.got <= FRAME_WINDOW); /* no credit went back */
    CU_ASSERT_EQUAL(g.ends, ends);
    g.hold = false;
    CU_ASSERT_EQUAL_FATAL(clink_release(g.acc, g.stream), 0);
    while (g.ends == ends)
        CU_ASSERT_EQUAL_FATAL(ring_run(g.ring), 0);
    CU_ASSERT_EQUAL(g.got, BODY);
    close_and_wait(l);
}

/* Through a lane: the same bytes as a streamed body; room comes back only
 * once the receiver stops holding what it took. */
static void test_lane(void)
{
    clink_srv_set_prev(g.srv, "c1");
    clink_t *l = dial(g.c1_tls);
    CU_ASSERT_FATAL(g.up);
    CU_ASSERT_FALSE(clink_has_lane(l));
    CU_ASSERT_EQUAL_FATAL(clink_use_lane(l, 2 * BODY), 0);
    CU_ASSERT(clink_has_lane(l));
    static uint8_t body[BODY];
    uint64_t want = 0;
    for (size_t i = 0; i < BODY; i++)
        want = want * 31 + (body[i] = (uint8_t)(i * 7 + (i >> 10)));
    struct chain_work w = {.job = 3, .count = 128, .n = 64, .output = true};
    uint32_t streams[2];
    g.hold = true;
    g.room = false;
    for (int k = 0; k < 2; k++) {
        unsigned ends = g.ends;
        g.got = g.sum = 0;
        g.sent = false;
        w.first = (uint64_t)k * 128;
        CU_ASSERT_EQUAL_FATAL(clink_send_work(l, &w, body, BODY, sent, NULL), 0);
        while (g.ends == ends)
            CU_ASSERT_EQUAL_FATAL(ring_run(g.ring), 0);
        CU_ASSERT_EQUAL(g.got, BODY);
        CU_ASSERT_EQUAL(g.sum, want);
        CU_ASSERT(g.last.first == w.first && g.last.shm.lane == NULL);
        streams[k] = g.stream;
    }
    run_ms(50);
    CU_ASSERT(g.sent);
    /* both held: the lane is full until the receiver lets go */
    w.first = 256;
    CU_ASSERT_EQUAL(clink_send_work(l, &w, body, BODY, sent, NULL), -EAGAIN);
    run_ms(200);
    CU_ASSERT_FALSE(g.room);
    g.hold = false;
    CU_ASSERT_EQUAL(clink_release(g.acc, streams[0]), 0);
    CU_ASSERT_EQUAL(clink_release(g.acc, streams[1]), 0);
    CU_ASSERT_EQUAL(clink_release(g.acc, streams[1]), -ENOENT);
    while (!g.room)
        CU_ASSERT_EQUAL_FATAL(ring_run(g.ring), 0);
    unsigned ends = g.ends;
    g.got = 0;
    CU_ASSERT_EQUAL_FATAL(clink_send_work(l, &w, body, BODY, sent, NULL), 0);
    while (g.ends == ends)
        CU_ASSERT_EQUAL_FATAL(ring_run(g.ring), 0);
    CU_ASSERT_EQUAL(g.got, BODY);
    close_and_wait(l);
}

/* Rooms: taken in order, filled after, sent in order; a room of another
 * link is refused, and one held past its link's end stays writable. */
static void test_rooms(void)
{
    clink_srv_set_prev(g.srv, "c1");
    clink_t *l = dial(g.c1_tls);
    CU_ASSERT_FATAL(g.up);
    struct clink_room room[2], other;
    CU_ASSERT_EQUAL(clink_room(l, BODY, &room[0]), -ENOTCONN); /* no lane yet */
    CU_ASSERT_EQUAL_FATAL(clink_use_lane(l, 2 * BODY), 0);
    CU_ASSERT_EQUAL(clink_room(l, 0, &room[0]), -EINVAL);
    for (int k = 0; k < 2; k++)
        CU_ASSERT_EQUAL_FATAL(clink_room(l, BODY, &room[k]), 0);
    CU_ASSERT_EQUAL(clink_room(l, BODY, &other), -EAGAIN); /* both rooms out: full */
    struct chain_work w = {.job = 4, .count = 128, .n = 64, .output = true};
    for (int k = 0; k < 2; k++) {
        uint64_t want = 0;
        for (size_t i = 0; i < BODY; i++)
            want = want * 31 + (room[k].at[i] = (uint8_t)(i * 5 + (uint64_t)k));
        unsigned ends = g.ends;
        g.got = g.sum = 0;
        w.first = (uint64_t)k * 128;
        CU_ASSERT_EQUAL(
            clink_send_room(l, &(struct chain_work){.count = 1, .n = 64}, &room[k], sent, NULL),
            -EINVAL); /* not the room's length */
        CU_ASSERT_EQUAL_FATAL(clink_send_room(l, &w, &room[k], sent, NULL), 0);
        clink_room_put(&room[k]);
        while (g.ends == ends)
            CU_ASSERT_EQUAL_FATAL(ring_run(g.ring), 0);
        CU_ASSERT(g.got == BODY && g.sum == want && g.last.first == w.first);
    }
    while (!g.room) /* released: room again */
        CU_ASSERT_EQUAL_FATAL(ring_run(g.ring), 0);
    CU_ASSERT_EQUAL_FATAL(clink_room(l, BODY, &other), 0);
    close_and_wait(l);
    memset(other.at, 1, BODY); /* the link is gone; the room is still ours */
    clink_t *l2 = dial(g.c1_tls);
    CU_ASSERT_FATAL(g.up);
    CU_ASSERT_EQUAL_FATAL(clink_use_lane(l2, 2 * BODY), 0);
    CU_ASSERT_EQUAL(clink_send_room(l2, &w, &other, sent, NULL), -ESTALE);
    clink_room_put(&other);
    close_and_wait(l2);
}

void suite_clink(void)
{
    CU_pSuite s = CU_add_suite("clink", setup, teardown);
    CU_add_test(s, "WORK with a 4 MiB body, a gen WORK, CANCEL, relink", test_work_with_body);
    CU_add_test(s, "a peer not the named predecessor is refused", test_not_the_predecessor);
    CU_add_test(s, "hold stops the sender at the window", test_hold);
    CU_add_test(s, "through a lane: same bytes, room back once let go", test_lane);
    CU_add_test(s, "rooms in a lane: filled after, sent in order, kept past the link", test_rooms);
}
