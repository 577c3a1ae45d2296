/*
 * ctl: frames on a real connection (plain TCP on loopback, one ring playing
 * both ends). What is checked is how a connection ends when its decoder
 * or its sink fails: never left open with a dead decoder.
 */
#include "convoy/ctl.h"
#include "convoy/log.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <string.h>

#define WATCHDOG_MS 3000

static struct {
    ring_t *ring;
    conn_listener_t *l;
    frame_decoder_t *dec;
    struct ring_timer watchdog, drain;
    int closes, srv_reason, frames;
    bool timed_out;
} sc;

static const struct frame_limits limits = {.meta_max = FRAME_META_MAX, .body_max = 0};

/* A sink that fails on its own, without refusing the peer. */
static int failing_frame(void *ctx, const struct frame_hdr *h, const cJSON *meta)
{
    (void)ctx;
    (void)h;
    (void)meta;
    sc.frames++;
    return -ENOMEM;
}

static const struct frame_sink failing_sink = {.on_frame = failing_frame};

static ssize_t srv_data(conn_t *c, const uint8_t *data, size_t len)
{
    return ctl_feed(c, sc.dec, data, len);
}

static void closed(conn_t *c, int reason)
{
    if (conn_udata(c) == &sc)
        sc.srv_reason = reason;
    if (++sc.closes == 2) {
        ring_timer_stop(sc.ring, &sc.watchdog);
        ring_stop(sc.ring);
    }
}

static const struct conn_handlers srv_handlers = {.on_data = srv_data, .on_close = closed};

static void cli_open(conn_t *c)
{
    CU_ASSERT_EQUAL(ctl_send(c, FRAME_HEARTBEAT, NULL), 0);
}

static ssize_t cli_data(conn_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    return (ssize_t)len;
}

static const struct conn_handlers cli_handlers = {
    .on_open = cli_open, .on_data = cli_data, .on_close = closed};

static void srv_accept(conn_t *c, void *arg)
{
    conn_set_udata(c, arg);
}

static void handle_watchdog(struct ring_timer *t)
{
    (void)t;
    sc.timed_out = true;
    ring_stop(sc.ring);
}

static void handle_drain(struct ring_timer *t)
{
    (void)t;
    ring_stop(sc.ring);
}

static void test_sink_error_closes(void)
{
    memset(&sc, 0, sizeof sc);
    struct net_addr any;
    struct conn_opts plain = {0};
    conn_t *cli;
    CU_ASSERT_FATAL(net_addr_parse("127.0.0.1:0", &any) == 0);
    CU_ASSERT_FATAL(ring_create(&sc.ring, 64) == 0);
    CU_ASSERT_FATAL(frame_decoder_new(&sc.dec, &limits, &failing_sink, NULL) == 0);
    CU_ASSERT_FATAL(conn_listen(&sc.l, sc.ring, &any, &plain, &srv_handlers, srv_accept, &sc) == 0);
    CU_ASSERT_FATAL(
        conn_connect(&cli, sc.ring, conn_listener_addr(sc.l), &plain, &cli_handlers, NULL) == 0);
    ring_timer_start(sc.ring, &sc.watchdog, WATCHDOG_MS, handle_watchdog);
    ring_run(sc.ring);
    CU_ASSERT_FALSE(sc.timed_out);
    CU_ASSERT_EQUAL(sc.frames, 1);
    CU_ASSERT_EQUAL(sc.srv_reason, -ENOMEM);
    conn_listener_close(sc.l);
    if (!sc.timed_out) { /* let the cancellations complete before the ring goes */
        ring_timer_start(sc.ring, &sc.drain, 20, handle_drain);
        ring_run(sc.ring);
    }
    frame_decoder_free(sc.dec);
    ring_destroy(sc.ring);
}

void suite_ctl(void)
{
    CU_pSuite s = CU_add_suite("ctl", NULL, NULL);
    CU_add_test(s, "a sink's own error closes the connection", test_sink_error_closes);
}
