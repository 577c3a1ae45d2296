/*
 * mux: streams and frames through a real ring on loopback, one process
 * playing both ends (the client dials and sends, the server receives). Each
 * test builds a scene as test_conn.c does, runs the ring until both ends
 * have closed (a watchdog fails a scene that does not finish), and asserts
 * on what the callbacks recorded.
 *
 * Bodies follow a pattern in which every aligned 32-bit word differs, so a
 * lost, repeated or misplaced chunk shows as a bad byte. A hostile client
 * writes raw frames without a mux of its own, and must get the ERROR frame
 * that names the rule it broke.
 */
#include "convoy/ctl.h"
#include "convoy/log.h"
#include "convoy/mux.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WATCHDOG_MS  10000
#define DRAIN_MS     20
#define BIG_SIZE     (64u << 20)
#define SMALL_SIZE   (4u << 20)
#define TICK_MS      2
#define TICK_BOUND   100 /* ms: the most a small frame may wait behind the body */
#define HOLD_MS      30  /* how long the held stream is watched while stalled */
#define STREAMS_TEST 2

struct peer { /* one stream's bytes as the server sees them */
    uint32_t id;
    uint64_t got, bad;
    int ends, end_err;
};

struct mscene {
    ring_t *ring;
    conn_listener_t *l;
    struct ring_timer watchdog, drain, tick, release;
    bool timed_out;
    conn_t *srv, *cli;
    mux_t *srv_mux, *cli_mux;
    int closes;
    /* sender */
    uint64_t size;        /* bytes of each body */
    int nbodies;          /* bodies the client sends, 1 or 2 */
    bool first_from_file; /* the first body comes from file_fd */
    uint64_t file_extra;  /* asked of the file beyond its end */
    int dones, done_err;  /* done callbacks, and the last err */
    int refused, resent;  /* sends refused with -EAGAIN, and sent again from a done */
    uint32_t seq_sent;    /* small frames sent */
    /* receiver */
    struct peer peer[STREAMS_TEST];
    int npeers;
    uint32_t seq_got, seq_bad; /* small frames received, and those out of order */
    uint32_t seq_during;       /* received while a body was in flight */
    uint64_t tick_max_ms;      /* their longest delay */
    uint32_t last_stream;      /* the stream of the last body piece */
    int switches;              /* body pieces whose stream differs from the last */
    bool hold_second;          /* the server holds the second stream */
    uint64_t held_at_end;      /* its bytes when the first stream ended */
    uint64_t held_later;       /* and HOLD_MS later, just before the release */
    bool into;                 /* bodies into buffers of the server's, room offered */
    uint8_t *dst[STREAMS_TEST];
    uint64_t in_room; /* bytes that came read into the room */
    int misplaced;    /* pieces that came inside another stream's buffer */
    bool first_only;  /* only the first stream offers room */
    /* hostile client */
    const uint8_t *raw;
    size_t raw_len;
    char err_code[32]; /* what the ERROR frame said */
    frame_decoder_t *dec;
};

static struct mscene ms;
static uint8_t *big;
static int file_fd = -1; /* SMALL_SIZE bytes: the pattern's first */

static uint8_t pattern(uint64_t i)
{
    uint32_t w = (uint32_t)(i / 4) * 2654435761u;
    return (uint8_t)(w >> (8 * (i % 4)));
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int suite_init(void)
{
    if ((big = malloc(BIG_SIZE)) == NULL)
        return -1;
    for (uint64_t i = 0; i < BIG_SIZE; i++)
        big[i] = pattern(i);
    char path[] = "/tmp/convoy-mux-XXXXXX";
    if ((file_fd = mkstemp(path)) < 0)
        return -1;
    unlink(path);
    if (write(file_fd, big, SMALL_SIZE) != (ssize_t)SMALL_SIZE)
        return -1;
    log_set_level(LOG_ERROR); /* the refusals are expected */
    return 0;
}

static int suite_clean(void)
{
    free(big);
    big = NULL;
    if (file_fd >= 0)
        close(file_fd);
    file_fd = -1;
    log_set_level(LOG_INFO);
    return 0;
}

/* ---- the server: a mux that records ---- */

static struct peer *peer_of(uint32_t stream)
{
    for (int i = 0; i < ms.npeers; i++) {
        if (ms.peer[i].id == stream)
            return &ms.peer[i];
    }
    return NULL;
}

static bool body_in_flight(void)
{
    for (int i = 0; i < ms.npeers; i++) {
        if (ms.peer[i].ends == 0)
            return true;
    }
    return false;
}

static void tick_got(const cJSON *meta)
{
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(meta, "seq");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(meta, "t");
    if (!cJSON_IsNumber(seq) || !cJSON_IsNumber(t) || (uint32_t)seq->valuedouble != ms.seq_got)
        ms.seq_bad++;
    uint64_t delay = (now_us() - (uint64_t)t->valuedouble) / 1000;
    if (delay > ms.tick_max_ms)
        ms.tick_max_ms = delay;
    ms.seq_got++;
    if (ms.npeers > 0 && body_in_flight())
        ms.seq_during++;
}

static int srv_frame(mux_t *m, const struct frame_hdr *h, const cJSON *meta, uint32_t stream)
{
    if (h->type == FRAME_HEARTBEAT) {
        tick_got(meta);
    } else if (h->type == FRAME_BYE) {
        conn_close(mux_conn(m));
    } else if (stream != 0 && ms.npeers < ms.nbodies && ms.npeers < STREAMS_TEST) {
        ms.peer[ms.npeers++] = (struct peer){.id = stream};
        CU_ASSERT_EQUAL(h->body_len, ms.size + (ms.npeers == 1 ? ms.file_extra : 0));
    } else if (stream != 0) { /* the hostile client's: no credit beyond the window */
        CU_ASSERT_EQUAL(mux_hold(m, stream), 0);
    }
    return 0;
}

static int srv_body(mux_t *m, uint32_t stream, const uint8_t *data, size_t len)
{
    struct peer *p = peer_of(stream);
    if (p == NULL) /* a hostile client's stream */
        return 0;
    if (p->got == 0 && ms.hold_second && p == &ms.peer[1])
        CU_ASSERT_EQUAL(mux_hold(m, stream), 0);
    for (int i = 0; ms.into && i < STREAMS_TEST; i++)
        ms.misplaced += i != p - ms.peer && data >= ms.dst[i] && data < ms.dst[i] + ms.size;
    uint8_t *at = ms.into && (p == ms.peer || !ms.first_only) ? ms.dst[p - ms.peer] + p->got : NULL;
    if (at != NULL && data != at)
        memcpy(at, data, len);
    ms.in_room += at != NULL && data == at ? len : 0;
    if (memcmp(at ? at : data, big + p->got, len) != 0)
        p->bad++;
    p->got += len;
    if (at != NULL && p->got < ms.size)
        CU_ASSERT_EQUAL(mux_body_into(m, stream, at + len, (size_t)(ms.size - p->got)), 0);
    ms.switches += stream != ms.last_stream;
    ms.last_stream = stream;
    return 0;
}

static void release_fired(struct ring_timer *t)
{
    (void)t;
    ms.held_later = ms.peer[1].got;
    if (ms.srv_mux != NULL)
        CU_ASSERT_EQUAL(mux_release(ms.srv_mux, ms.peer[1].id), 0);
}

static int srv_end(mux_t *m, uint32_t stream, int err)
{
    (void)m;
    struct peer *p = peer_of(stream);
    if (p == NULL)
        return 0;
    p->ends++;
    p->end_err = err;
    if (ms.hold_second && p == &ms.peer[0]) {
        ms.held_at_end = ms.peer[1].got;
        ring_timer_start(ms.ring, &ms.release, HOLD_MS, release_fired);
    }
    return 0;
}

static const struct mux_handlers srv_handlers = {srv_frame, srv_body, srv_end};

static void srv_open(conn_t *c)
{
    CU_ASSERT_EQUAL(mux_new(&ms.srv_mux, c, MUX_ACCEPTOR, BIG_SIZE, &srv_handlers, NULL), 0);
}

static ssize_t srv_data(conn_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    return mux_feed(ms.srv_mux, data, len);
}

static void srv_drain(conn_t *c)
{
    (void)c;
    mux_drain(ms.srv_mux);
}

static void scene_closed(void)
{
    if (++ms.closes == 2)
        ring_stop(ms.ring);
}

static void srv_close(conn_t *c, int reason)
{
    (void)c, (void)reason;
    mux_free(ms.srv_mux);
    ms.srv_mux = NULL;
    ms.srv = NULL;
    scene_closed();
}

static const struct conn_handlers h_srv = {
    .on_open = srv_open, .on_data = srv_data, .on_drain = srv_drain, .on_close = srv_close};

/* ---- the client: bodies and a small frame every TICK_MS ---- */

static void send_tick(void)
{
    cJSON *meta = cJSON_CreateObject();
    CU_ASSERT_PTR_NOT_NULL_FATAL(meta);
    cJSON_AddNumberToObject(meta, "seq", ms.seq_sent++);
    cJSON_AddNumberToObject(meta, "t", (double)now_us());
    CU_ASSERT_EQUAL(mux_send(ms.cli_mux, FRAME_HEARTBEAT, meta), 0);
    cJSON_Delete(meta);
}

static void tick_fired(struct ring_timer *t)
{
    (void)t;
    if (ms.cli_mux == NULL || ms.dones == ms.nbodies)
        return;
    send_tick();
    ring_timer_start(ms.ring, &ms.tick, TICK_MS, tick_fired);
}

static void body_done(mux_t *m, void *arg, int err)
{
    (void)arg;
    ms.dones++;
    ms.done_err = err;
    if (ms.resent < ms.refused) { /* this done freed a slot */
        ms.resent++;
        CU_ASSERT_EQUAL(mux_send_buf(m, FRAME_WORK, NULL, big, ms.size, body_done, NULL, NULL), 0);
    }
    if (ms.dones == ms.nbodies && err == 0) {
        send_tick(); /* one behind the last chunk, so that the check sees it */
        CU_ASSERT_EQUAL(mux_send(m, FRAME_BYE, NULL), 0);
    }
}

static void cli_open(conn_t *c)
{
    CU_ASSERT_EQUAL(mux_new(&ms.cli_mux, c, MUX_DIALLER, 0, &srv_handlers, NULL), 0);
    for (int i = 0; i < ms.nbodies; i++) {
        uint32_t id = 0;
        int rc;
        if (i == 0 && ms.first_from_file)
            rc = mux_send_file(ms.cli_mux, FRAME_XFER_START, NULL, file_fd, 0,
                               ms.size + ms.file_extra, body_done, NULL, &id);
        else
            rc = mux_send_buf(ms.cli_mux, FRAME_WORK, NULL, big, ms.size, body_done, NULL, &id);
        if (rc == -EAGAIN) {
            ms.refused++;
            continue;
        }
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT_EQUAL(id, 1u + 2u * (uint32_t)i);
    }
    CU_ASSERT_EQUAL(ms.dones, 0); /* never inside the call */
    send_tick();
    ring_timer_start(ms.ring, &ms.tick, TICK_MS, tick_fired);
}

static ssize_t cli_data(conn_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    return mux_feed(ms.cli_mux, data, len);
}

static void cli_drain(conn_t *c)
{
    (void)c;
    mux_drain(ms.cli_mux);
}

static void cli_close(conn_t *c, int reason)
{
    (void)c, (void)reason;
    mux_free(ms.cli_mux);
    ms.cli_mux = NULL;
    ms.cli = NULL;
    scene_closed();
}

static const struct conn_handlers h_cli = {
    .on_open = cli_open, .on_data = cli_data, .on_drain = cli_drain, .on_close = cli_close};

/* ---- the hostile client: raw bytes, then reads the ERROR frame ---- */

static int raw_frame(void *ctx, const struct frame_hdr *h, const cJSON *meta)
{
    (void)ctx;
    if (h->type == FRAME_ERROR) {
        const char *code, *reason;
        ctl_error_fields(meta, &code, &reason);
        snprintf(ms.err_code, sizeof ms.err_code, "%s", code);
    }
    return 0;
}

static const struct frame_sink raw_sink = {raw_frame, NULL, NULL};
static const struct frame_limits raw_limits = {.meta_max = FRAME_META_MAX, .body_max = 0};

static void raw_open(conn_t *c)
{
    CU_ASSERT_EQUAL(frame_decoder_new(&ms.dec, &raw_limits, &raw_sink, NULL), 0);
    CU_ASSERT_EQUAL(conn_write(c, ms.raw, ms.raw_len), 0);
}

static ssize_t raw_data(conn_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    CU_ASSERT_EQUAL(frame_decoder_feed(ms.dec, data, len), 0);
    return (ssize_t)len;
}

static void raw_close(conn_t *c, int reason)
{
    (void)c, (void)reason;
    frame_decoder_free(ms.dec);
    ms.dec = NULL;
    ms.cli = NULL;
    scene_closed();
}

static const struct conn_handlers h_raw = {
    .on_open = raw_open, .on_data = raw_data, .on_close = raw_close};

/* ---- scenes ---- */

static void watchdog_fired(struct ring_timer *t)
{
    (void)t;
    ms.timed_out = true;
    if (ms.srv != NULL)
        conn_abort(ms.srv, -ETIME);
    if (ms.cli != NULL)
        conn_abort(ms.cli, -ETIME);
}

static void drain_fired(struct ring_timer *t)
{
    (void)t;
    ring_stop(ms.ring);
}

static void on_accept(conn_t *c, void *arg)
{
    (void)arg;
    ms.srv = c;
}

/* Listens, dials with the client's handlers h, and runs until both close. */
static void scene_run(const struct conn_handlers *h)
{
    CU_ASSERT_EQUAL_FATAL(ring_create(&ms.ring, 64), 0);
    struct net_addr any;
    CU_ASSERT_EQUAL_FATAL(net_addr_parse("127.0.0.1:0", &any), 0);
    struct conn_opts o = {0};
    CU_ASSERT_EQUAL_FATAL(conn_listen(&ms.l, ms.ring, &any, &o, &h_srv, on_accept, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(conn_connect(&ms.cli, ms.ring, conn_listener_addr(ms.l), &o, h, NULL), 0);
    ring_timer_start(ms.ring, &ms.watchdog, WATCHDOG_MS, watchdog_fired);
    CU_ASSERT_EQUAL(ring_run(ms.ring), 0);
    CU_ASSERT_FALSE(ms.timed_out);
    conn_listener_close(ms.l);
    ring_timer_stop(ms.ring, &ms.watchdog);
    ring_timer_stop(ms.ring, &ms.tick);
    ring_timer_stop(ms.ring, &ms.release);
    ring_timer_start(ms.ring, &ms.drain, DRAIN_MS, drain_fired);
    CU_ASSERT_EQUAL(ring_run(ms.ring), 0);
    ring_destroy(ms.ring);
}

static void scene_bodies(int n, uint64_t size, bool hold_second, bool from_file)
{
    memset(&ms, 0, sizeof ms);
    ms.nbodies = n;
    ms.size = size;
    ms.hold_second = hold_second;
    ms.first_from_file = from_file;
    scene_run(&h_cli);
    CU_ASSERT_EQUAL(ms.dones, n);
    CU_ASSERT_EQUAL(ms.done_err, 0);
    CU_ASSERT_EQUAL_FATAL(ms.npeers, n);
    for (int i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(ms.peer[i].got, size);
        CU_ASSERT_EQUAL(ms.peer[i].bad, 0);
        CU_ASSERT_EQUAL(ms.peer[i].ends, 1);
        CU_ASSERT_EQUAL(ms.peer[i].end_err, 0);
    }
    CU_ASSERT_EQUAL(ms.seq_got, ms.seq_sent);
    CU_ASSERT_EQUAL(ms.seq_bad, 0);
}

/* Two interleaved bodies into buffers of the receiver's, with room
 * offered after every piece; with first_only, the second offers none. */
static void bodies_into(bool first_only)
{
    memset(&ms, 0, sizeof ms);
    ms.into = true;
    ms.first_only = first_only;
    for (int i = 0; i < STREAMS_TEST; i++)
        CU_ASSERT_PTR_NOT_NULL_FATAL(ms.dst[i] = malloc(SMALL_SIZE));
    ms.nbodies = STREAMS_TEST;
    ms.size = SMALL_SIZE;
    scene_run(&h_cli);
    for (int i = 0; i < STREAMS_TEST; i++) {
        CU_ASSERT_EQUAL(ms.peer[i].got, SMALL_SIZE);
        CU_ASSERT_EQUAL(ms.peer[i].bad, 0);
        CU_ASSERT_EQUAL(ms.peer[i].ends, 1);
        free(ms.dst[i]);
    }
    CU_ASSERT_EQUAL(ms.misplaced, 0);
}

/* Both offer: most bytes are read in place, all of them right. */
static void test_body_into(void)
{
    bodies_into(false);
    fprintf(stderr, "[%llu of %llu bytes read into the room] ", (unsigned long long)ms.in_room,
            (unsigned long long)(STREAMS_TEST * SMALL_SIZE));
    CU_ASSERT(ms.in_room >= SMALL_SIZE / 2);
}

/* Only the first offers: no byte of the second's ever lands in its room
 * (a room is for the DATA frame of the stream that offered it). */
static void test_body_into_one(void)
{
    bodies_into(true);
}

static void test_small_frames_pass_a_body(void)
{
    scene_bodies(1, BIG_SIZE, false, false);
    fprintf(stderr, "[%u small frames, %u during the body, longest wait %llu ms] ", ms.seq_got,
            ms.seq_during, (unsigned long long)ms.tick_max_ms);
    CU_ASSERT(ms.seq_during >= 3);
    CU_ASSERT(ms.tick_max_ms <= TICK_BOUND);
}

static void test_streams_interleave(void)
{
    scene_bodies(2, SMALL_SIZE, false, false);
    /* Round-robin: the two bodies alternate chunk by chunk. */
    CU_ASSERT(ms.switches >= (int)(SMALL_SIZE / FRAME_CHUNK_MAX / 2));
}

static void test_held_stream_stalls_alone(void)
{
    scene_bodies(2, SMALL_SIZE, true, false);
    /* While held, the second stream got its first window and no more. */
    CU_ASSERT_EQUAL(ms.held_at_end, FRAME_WINDOW);
    CU_ASSERT_EQUAL(ms.held_later, FRAME_WINDOW);
}

static void test_file_beside_buffer(void)
{
    scene_bodies(2, SMALL_SIZE, false, true);
    CU_ASSERT(ms.switches >= 2); /* the two were in flight together */
}

/* Past FRAME_STREAMS_MAX a send is refused until a done frees a slot. */
static void test_streams_limit(void)
{
    memset(&ms, 0, sizeof ms);
    ms.nbodies = FRAME_STREAMS_MAX + 1;
    ms.size = 1000;
    scene_run(&h_cli);
    CU_ASSERT_EQUAL(ms.refused, 1);
    CU_ASSERT_EQUAL(ms.resent, 1);
    CU_ASSERT_EQUAL(ms.dones, FRAME_STREAMS_MAX + 1);
    CU_ASSERT_EQUAL(ms.done_err, 0);
}

/* A file shorter than announced: its sender learns why, the connection
 * ends (what was queued is dropped), and the receiver's stream ends with it. */
static void test_short_file(void)
{
    memset(&ms, 0, sizeof ms);
    ms.nbodies = 1;
    ms.size = SMALL_SIZE;
    ms.file_extra = 1000;
    ms.first_from_file = true;
    scene_run(&h_cli);
    CU_ASSERT_EQUAL(ms.dones, 1);
    CU_ASSERT_EQUAL(ms.done_err, -EIO);
    CU_ASSERT_EQUAL_FATAL(ms.npeers, 1);
    CU_ASSERT(ms.peer[0].got <= SMALL_SIZE);
    CU_ASSERT_EQUAL(ms.peer[0].bad, 0);
    CU_ASSERT_EQUAL(ms.peer[0].ends, 1);
    CU_ASSERT_EQUAL(ms.peer[0].end_err, -EPIPE);
}

/* ---- protocol violations ---- */

static size_t put(uint8_t *p, uint8_t type, uint16_t flags, uint32_t stream, uint64_t n)
{
    struct frame_hdr h = {
        .version = FRAME_VERSION, .type = type, .flags = flags, .stream = stream, .body_len = n};
    frame_hdr_encode(p, &h);
    return FRAME_HDR_LEN;
}

/* A STREAMED WORK with no meta: a bare header too. */
static size_t put_open(uint8_t *p, uint32_t stream, uint64_t len)
{
    return put(p, FRAME_WORK, FRAME_F_STREAMED, stream, len);
}

/* DATA of n zero bytes. */
static size_t put_data(uint8_t *p, uint32_t stream, size_t n)
{
    put(p, FRAME_DATA, 0, stream, n);
    memset(p + FRAME_HDR_LEN, 0, n);
    return FRAME_HDR_LEN + n;
}

static void expect_refusal(const uint8_t *raw, size_t len, const char *code)
{
    memset(&ms, 0, sizeof ms);
    ms.raw = raw;
    ms.raw_len = len;
    scene_run(&h_raw);
    if (strcmp(ms.err_code, code) != 0 || ms.timed_out)
        fprintf(stderr, "\n  want '%s', got '%s'\n", code, ms.err_code);
    CU_ASSERT_STRING_EQUAL(ms.err_code, code);
}

static void test_violations(void)
{
    static uint8_t buf[FRAME_WINDOW + 64 * FRAME_HDR_LEN];
    size_t n;

    expect_refusal(buf, put_data(buf, 1, 10), "stream_gone");
    expect_refusal(buf, put(buf, FRAME_CREDIT, 0, 2, 10), "stream_gone");
    expect_refusal(buf, put_open(buf, 2, 10), "stream_id"); /* the acceptor's parity */
    n = put_open(buf, 5, 10);
    expect_refusal(buf, n + put_open(buf + n, 3, 10), "stream_id"); /* not above the last */
    n = put_open(buf, 1, 10);
    n += put_data(buf + n, 1, 10);
    expect_refusal(buf, n + put_data(buf + n, 1, 1), "stream_gone"); /* finished */
    n = 0;
    for (uint32_t i = 0; i <= FRAME_STREAMS_MAX; i++)
        n += put_open(buf + n, 1 + 2 * i, 10);
    expect_refusal(buf, n, "streams");
    n = put_open(buf, 1, 2 * FRAME_WINDOW);
    for (uint32_t i = 0; i < FRAME_WINDOW / FRAME_CHUNK_MAX; i++)
        n += put_data(buf + n, 1, FRAME_CHUNK_MAX);
    expect_refusal(buf, n + put_data(buf + n, 1, 1), "flow"); /* past the window */
    n = put_open(buf, 1, 10);
    expect_refusal(buf, n + put_data(buf + n, 1, 11), "flow"); /* past the body */
    n = put(buf, FRAME_RESULT, 0, 0, 4);
    expect_refusal(buf, n + 4, "body_len"); /* inline bodies are not ours */
    expect_refusal(buf, put_open(buf, 1, BIG_SIZE + 1), "body_len");
}

void suite_mux(void)
{
    CU_pSuite s = CU_add_suite("mux", suite_init, suite_clean);
    CU_add_test(s, "small frames pass a 64 MiB body", test_small_frames_pass_a_body);
    CU_add_test(s, "two bodies interleave", test_streams_interleave);
    CU_add_test(s, "a held stream stalls alone", test_held_stream_stalls_alone);
    CU_add_test(s, "a file body beside a buffer", test_file_beside_buffer);
    CU_add_test(s, "past 16 streams a send waits for a done", test_streams_limit);
    CU_add_test(s, "a file shorter than announced", test_short_file);
    CU_add_test(s, "stream rules broken are refused", test_violations);
    CU_add_test(s, "bodies read into the receiver's room", test_body_into);
    CU_add_test(s, "a room is its stream's alone", test_body_into_one);
}
