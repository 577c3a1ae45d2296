/*
 * mbr_server: the coordinator's side and the member's (mbr_client) on one
 * ring over loopback TLS, with the table in plain memory: what the owner
 * sees through its lock, its WELCOME fields reaching the member, and the
 * HELLO deadline holding after the handshake. A watchdog ends any scene
 * that does not finish.
 */
#include "convoy/mbr_server.h"

#include "convoy/conn.h"
#include "convoy/log.h"
#include "convoy/mbr_client.h"
#include "../common/fixture.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define WATCHDOG_MS 5000
#define HELLO_MS    200

static char dir[64], err[512];
static tls_ctx_t *srv_tls, *cli_tls;

static struct {
    ring_t *ring;
    mbrs_t *srv;
    mbrc_t *cli;
    struct reg_table table;
    struct ring_timer watchdog, leave;
    bool timed_out;
    int locks;           /* lock calls not yet unlocked */
    char key[32];        /* ticket_key as the member read it */
    char state_seen[16]; /* fs1's row when WELCOME arrived */
    uint64_t t_open, t_close;
    int close_reason;
} sc;

static int suite_init(void)
{
    static const char *const names[] = {"balancer", "fs1", NULL};
    char pki[96];
    if (fx_tmpdir(dir, sizeof dir) < 0)
        return -1;
    snprintf(pki, sizeof pki, "%s/pki", dir);
    log_set_level(LOG_WARN);
    return fx_pki(pki, names) ||
           tls_ctx_new(&srv_tls, TLS_SERVER, pki, "balancer", true, err, sizeof err) ||
           tls_ctx_new(&cli_tls, TLS_CLIENT, pki, "fs1", false, err, sizeof err);
}

static int suite_clean(void)
{
    tls_ctx_free(srv_tls);
    tls_ctx_free(cli_tls);
    log_set_level(LOG_INFO);
    fx_rmtree(dir);
    return 0;
}

static struct reg_table *table_lock(void *arg)
{
    (void)arg;
    sc.locks++;
    return &sc.table;
}

static void table_unlock(void *arg)
{
    (void)arg;
    sc.locks--;
}

static int add_key(void *arg, const char *name, cJSON *meta)
{
    (void)arg;
    CU_ASSERT_STRING_EQUAL(name, "fs1");
    return cJSON_AddStringToObject(meta, "ticket_key", "k-for-fs1") ? 0 : -ENOMEM;
}

static void handle_watchdog(struct ring_timer *t)
{
    (void)t;
    sc.timed_out = true;
    ring_stop(sc.ring);
}

static void srv_stopped(void *arg)
{
    (void)arg;
    ring_timer_stop(sc.ring, &sc.watchdog);
    ring_stop(sc.ring);
}

/* A scene: a ring, a server on 127.0.0.1:0 (its options changed by tweak,
 * if not NULL) and a watchdog. */
static void scene_start_with(void (*tweak)(struct mbrs_opts *o))
{
    memset(&sc, 0, sizeof sc);
    struct mbrs_opts o = {.tls = srv_tls,
                          .role = "fileserver",
                          .heartbeat_ms = 50,
                          .dead_after_ms = 1000,
                          .hello_timeout_ms = HELLO_MS,
                          .lock = table_lock,
                          .unlock = table_unlock,
                          .welcome = add_key};
    CU_ASSERT_FATAL(net_addr_parse("127.0.0.1:0", &o.addr) == 0);
    CU_ASSERT_FATAL(ring_create(&sc.ring, 64) == 0);
    o.ring = sc.ring;
    if (tweak)
        tweak(&o);
    CU_ASSERT_FATAL(mbrs_start(&sc.srv, &o) == 0);
    ring_timer_start(sc.ring, &sc.watchdog, WATCHDOG_MS, handle_watchdog);
}

static void scene_start(void)
{
    scene_start_with(NULL);
}

static void scene_end(void)
{
    mbrc_free(sc.cli);
    mbrs_free(sc.srv);
    ring_destroy(sc.ring);
    CU_ASSERT_EQUAL(sc.locks, 0);
}

/* ---- a member joins and leaves ---- */

static void fs_hello(void *arg, struct reg_hello *h)
{
    (void)arg;
    h->addr = "127.0.0.1:8080";
    h->weight = 3;
    h->capacity = 9;
}

static void fs_load(void *arg, struct reg_load *l)
{
    (void)arg;
    memset(l, 0, sizeof *l);
}

static void fs_left(void *arg)
{
    (void)arg;
    mbrs_stop(sc.srv, srv_stopped, NULL);
}

/* Registered: drain, BYE, and the scene ends. */
static void leave_now(struct ring_timer *t)
{
    (void)t;
    CU_ASSERT_EQUAL(mbrc_state(sc.cli), MBRC_REGISTERED);
    mbrc_leave(sc.cli, fs_left);
}

static int read_key(void *arg, const cJSON *meta)
{
    (void)arg;
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(meta, "ticket_key");
    snprintf(sc.key, sizeof sc.key, "%s", k->valuestring);
    const struct reg_server *r = reg_find(&sc.table, "fs1");
    snprintf(sc.state_seen, sizeof sc.state_seen, "%s", r ? reg_state_str(r->state) : "gone");
    ring_timer_start(sc.ring, &sc.leave, 0, leave_now); /* once registered */
    return 0;
}

static void test_join_welcome_fields_leave(void)
{
    static const struct frame_field key_field[] = {{"ticket_key", FF_STRING, true}};
    scene_start();
    struct mbrc_opts co = {.ring = sc.ring,
                           .tls = cli_tls,
                           .server = *mbrs_addr(sc.srv),
                           .expect_name = "balancer",
                           .expect_role = "balancer",
                           .hello = fs_hello,
                           .load = fs_load,
                           .welcome_fields = key_field,
                           .nwelcome_fields = 1,
                           .welcome = read_key};
    CU_ASSERT_FATAL(mbrc_start(&sc.cli, &co) == 0);
    ring_run(sc.ring);
    CU_ASSERT_FALSE(sc.timed_out);
    CU_ASSERT_STRING_EQUAL(sc.key, "k-for-fs1");
    CU_ASSERT_STRING_EQUAL(sc.state_seen, "up");
    CU_ASSERT_PTR_NULL(reg_find(&sc.table, "fs1")); /* BYE removed the row */
    CU_ASSERT_EQUAL(mbrc_state(sc.cli), MBRC_LEFT);
    scene_end();
}

/* ---- the owners' own frames, both ways, beside membership's ---- */

#define BODY_LEN (3u << 20) /* three windows: credit must flow */

static struct {
    uint8_t *body;     /* what the member streams */
    uint64_t got, sum; /* body bytes the owner received, and their sum */
    uint64_t sum_sent; /* the sum it should be */
    int frames, ends;  /* owner frames (XFER_START, CATALOG) and on_end(0) seen */
    int sent_done;     /* the member's done(0) */
    int answers, gone; /* frames the member's owner got; on_gone */
    int joins, drains; /* on_join (with the HELLO's fields), on_drain */
    char name[32];     /* the session's name as the owner saw it */
} of;

static int own_frame(void *arg, mbrs_session_t *s, const struct frame_hdr *h, const cJSON *meta,
                     uint32_t stream)
{
    (void)arg;
    (void)meta;
    snprintf(of.name, sizeof of.name, "%s", mbrs_session_name(s));
    CU_ASSERT(mbrs_session_id(s) > 0);
    CU_ASSERT((h->type == FRAME_CATALOG) == (stream != 0));
    of.frames++;
    return 0;
}

static int own_body(void *arg, mbrs_session_t *s, uint32_t stream, const uint8_t *data, size_t len)
{
    (void)arg;
    (void)s;
    (void)stream;
    for (size_t i = 0; i < len; i++)
        of.sum += data[i];
    of.got += len;
    return 0;
}

static void own_end(void *arg, mbrs_session_t *s, uint32_t stream, int err)
{
    (void)arg;
    (void)stream;
    CU_ASSERT_EQUAL(err, 0);
    of.ends++;
    cJSON *meta = cJSON_CreateObject();
    CU_ASSERT(mbrs_send(s, FRAME_XFER_END, meta) == 0); /* an answer to the member */
    cJSON_Delete(meta);
}

static void own_join(void *arg, mbrs_session_t *s, const struct reg_hello *h)
{
    (void)arg;
    CU_ASSERT_STRING_EQUAL(mbrs_session_name(s), "fs1");
    of.joins += strcmp(h->addr, "127.0.0.1:8080") == 0 && h->weight == 3 && h->capacity == 9;
}

static void own_drain(void *arg, mbrs_session_t *s)
{
    (void)arg;
    CU_ASSERT_STRING_EQUAL(mbrs_session_name(s), "fs1");
    of.drains++;
}

static void own_gone(void *arg, mbrs_session_t *s)
{
    (void)arg;
    CU_ASSERT_STRING_EQUAL(mbrs_session_name(s), "fs1");
    of.gone++;
}

static void member_sent(void *arg, int err)
{
    (void)arg;
    CU_ASSERT_EQUAL(err, 0);
    of.sent_done++;
}

static void member_registered(void *arg)
{
    (void)arg;
    cJSON *meta = cJSON_CreateObject();
    CU_ASSERT(mbrc_send(sc.cli, FRAME_XFER_START, meta) == 0);
    CU_ASSERT(mbrc_send_buf(sc.cli, FRAME_CATALOG, meta, of.body, BODY_LEN, member_sent, NULL) ==
              0);
    cJSON_Delete(meta);
}

static int member_frame(void *arg, const struct frame_hdr *h, const cJSON *meta, uint32_t stream)
{
    (void)arg;
    (void)meta;
    CU_ASSERT_EQUAL(h->type, FRAME_XFER_END);
    CU_ASSERT_EQUAL(stream, 0);
    of.answers++;
    ring_timer_start(sc.ring, &sc.leave, 0, leave_now);
    return 0;
}

static void owner_handlers(struct mbrs_opts *o)
{
    o->on_frame = own_frame;
    o->on_body = own_body;
    o->on_end = own_end;
    o->on_gone = own_gone;
    o->on_join = own_join;
    o->on_drain = own_drain;
    o->body_max = BODY_LEN;
    o->welcome = NULL;
}

static void test_owner_frames(void)
{
    memset(&of, 0, sizeof of);
    of.body = malloc(BODY_LEN);
    CU_ASSERT_FATAL(of.body != NULL);
    for (size_t i = 0; i < BODY_LEN; i++) {
        of.body[i] = (uint8_t)(i * 7);
        of.sum_sent += of.body[i];
    }
    scene_start_with(owner_handlers);
    struct mbrc_opts co = {.ring = sc.ring,
                           .tls = cli_tls,
                           .server = *mbrs_addr(sc.srv),
                           .expect_name = "balancer",
                           .hello = fs_hello,
                           .load = fs_load,
                           .registered = member_registered,
                           .on_frame = member_frame};
    CU_ASSERT_FATAL(mbrc_start(&sc.cli, &co) == 0);
    CU_ASSERT_EQUAL(mbrc_send(sc.cli, FRAME_XFER_START, NULL), -ENOTCONN); /* not yet in */
    ring_run(sc.ring);
    CU_ASSERT_FALSE(sc.timed_out);
    CU_ASSERT_STRING_EQUAL(of.name, "fs1");
    CU_ASSERT_EQUAL(of.frames, 2);
    CU_ASSERT_EQUAL(of.got, BODY_LEN);
    CU_ASSERT_EQUAL(of.sum, of.sum_sent);
    CU_ASSERT_EQUAL(of.ends, 1);
    CU_ASSERT_EQUAL(of.sent_done, 1);
    CU_ASSERT_EQUAL(of.answers, 1);
    CU_ASSERT_EQUAL(of.gone, 1);
    CU_ASSERT_EQUAL(of.joins, 1);
    CU_ASSERT_EQUAL(of.drains, 1);
    scene_end();
    free(of.body);
}

/* ---- a peer that completes TLS and never says HELLO ---- */

static void silent_open(conn_t *c)
{
    (void)c;
    sc.t_open = ring_now_ms();
}

static ssize_t silent_data(conn_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    return (ssize_t)len;
}

static void silent_close(conn_t *c, int reason)
{
    (void)c;
    sc.t_close = ring_now_ms();
    sc.close_reason = reason;
    mbrs_stop(sc.srv, srv_stopped, NULL);
}

static const struct conn_handlers silent = {
    .on_open = silent_open, .on_data = silent_data, .on_close = silent_close};

static void test_hello_deadline_after_handshake(void)
{
    scene_start();
    struct conn_opts co = {.tls = cli_tls, .expect_peer = "balancer"};
    conn_t *c;
    uint64_t start = ring_now_ms();
    CU_ASSERT_FATAL(conn_connect(&c, sc.ring, mbrs_addr(sc.srv), &co, &silent, NULL) == 0);
    ring_run(sc.ring);
    CU_ASSERT_FALSE(sc.timed_out);
    CU_ASSERT(sc.t_open > 0); /* the handshake did complete */
    CU_ASSERT(sc.t_close - start >= HELLO_MS);
    CU_ASSERT(sc.t_close - start < 3 * HELLO_MS);
    CU_ASSERT_PTR_NULL(reg_find(&sc.table, "fs1"));
    scene_end();
}

void suite_mbr_server(void)
{
    CU_pSuite s = CU_add_suite("mbr_server", suite_init, suite_clean);
    CU_add_test(s, "a member joins, gets the owner's WELCOME fields, leaves",
                test_join_welcome_fields_leave);
    CU_add_test(s, "the owners' frames and a 3 MiB body, both ways; join and drain heard",
                test_owner_frames);
    CU_add_test(s, "TLS done, no HELLO: closed at the HELLO deadline",
                test_hello_deadline_after_handshake);
}
