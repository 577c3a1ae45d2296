/*
 * mbr_client — the member's side of membership.
 *
 * One connection at a time, to a coordinator whose certificate must carry
 * the expected name (checked by TLS during the handshake, before HELLO
 * says anything). Two timers: `beat` paces HEARTBEAT (and, while
 * draining, polls for the last transfer to end); `retry` waits out the
 * backoff before the next dial. Backoff doubles from retry_base_ms up to
 * retry_max_ms and waits a random time in [d/2, d] ("equal jitter"), so a
 * cluster of servers that lost their coordinator together does not come back
 * in lockstep; it resets after each WELCOME.
 *
 * The connection runs on a mux: heartbeats pass between the chunks of a
 * body the owner streams (a catalog), and frames of types membership does
 * not know go to the owner's handlers. The owner may send only while
 * registered or draining, before BYE: the coordinator refuses anything else.
 */
#include "convoy/mbr_client.h"

#include "convoy/conn.h"
#include "convoy/ctl.h"
#include "convoy/log.h"
#include "convoy/membership.h"
#include "convoy/mux.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define DRAIN_POLL_MS 100u

struct mbrc {
    struct mbrc_opts o;
    enum mbrc_state state;
    conn_t *c; /* NULL while disconnected */
    mux_t *mx; /* from on_open until on_close */
    struct mbr_welcome welcome;
    struct ring_timer beat, retry;
    unsigned attempt; /* dials since the last WELCOME */
    uint64_t drain_since;
    bool bye_sent;
    uint32_t owner_streams[FRAME_STREAMS_MAX]; /* streams handed to the owner; 0: free */
    void (*done)(void *arg);
    char addr[64];
};

static const char *const state_names[] = {"disconnected", "connecting", "registered", "draining",
                                          "left"};

const char *mbrc_state_str(enum mbrc_state s)
{
    return (unsigned)s < sizeof state_names / sizeof state_names[0] ? state_names[s] : "invalid";
}

enum mbrc_state mbrc_state(const mbrc_t *m)
{
    return m->state;
}

static void mbrc_dial(mbrc_t *m);

static uint32_t mbrc_backoff(mbrc_t *m)
{
    uint64_t d = m->o.retry_base_ms;
    for (unsigned i = 0; i < m->attempt && d < m->o.retry_max_ms; i++)
        d *= 2;
    if (d > m->o.retry_max_ms)
        d = m->o.retry_max_ms;
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
        r = (uint32_t)ring_now_ms() * 2654435761u; /* jitter need not be secret */
    return (uint32_t)(d / 2 + r % (d / 2 + 1));
}

static void handle_retry(struct ring_timer *t)
{
    mbrc_t *m = container_of(t, mbrc_t, retry);
    if (m->state == MBRC_DISCONNECTED)
        mbrc_dial(m);
}

static void mbrc_schedule_retry(mbrc_t *m)
{
    uint32_t ms = mbrc_backoff(m);
    m->attempt++;
    log_info("member", "event=retry coordinator=%s in_ms=%u attempt=%u", m->addr, ms, m->attempt);
    ring_timer_start(m->o.ring, &m->retry, ms, handle_retry);
}

static void mbrc_send_bye(mbrc_t *m)
{
    m->bye_sent = true;
    mux_send(m->mx, FRAME_BYE, NULL);
    conn_close(m->c);
    log_info("member", "event=bye coordinator=%s", m->addr);
}

/* While draining: the last transfer ended, or the wait ran out. */
static void mbrc_drain_check(mbrc_t *m)
{
    struct reg_load l = {0};
    m->o.load(m->o.arg, &l);
    bool late = ring_now_ms() - m->drain_since >= m->o.drain_timeout_ms;
    if (l.active == 0 || late) {
        if (late)
            log_warn("member", "event=drain_timeout active=%u", l.active);
        mbrc_send_bye(m);
    }
}

static void handle_beat(struct ring_timer *t);

static void beat_arm(mbrc_t *m, uint32_t ms)
{
    ring_timer_start(m->o.ring, &m->beat, ms, handle_beat);
}

static void handle_beat(struct ring_timer *t)
{
    mbrc_t *m = container_of(t, mbrc_t, beat);
    if (m->c == NULL || (m->state != MBRC_REGISTERED && m->state != MBRC_DRAINING) || m->bye_sent)
        return;
    struct reg_load l = {0};
    m->o.load(m->o.arg, &l);
    cJSON *meta = mbr_heartbeat_json(&l);
    if (meta)
        mux_send(m->mx, FRAME_HEARTBEAT, meta);
    cJSON_Delete(meta);
    if (m->state == MBRC_DRAINING)
        mbrc_drain_check(m);
    if (!m->bye_sent) {
        uint32_t every = m->welcome.heartbeat_ms;
        beat_arm(m, m->state == MBRC_DRAINING && every > DRAIN_POLL_MS ? DRAIN_POLL_MS : every);
    }
}

static int mbrc_on_welcome(mbrc_t *m, const cJSON *meta)
{
    char why[256];
    int rc = mbr_welcome_parse(meta, m->o.welcome_fields, m->o.nwelcome_fields, &m->welcome, why,
                               sizeof why);
    if (rc == 0 && m->welcome.heartbeat_ms == 0) {
        snprintf(why, sizeof why, "no heartbeat");
        rc = FRAME_ESCHEMA;
    }
    if (rc < 0) {
        ctl_refuse(m->c, "schema", "WELCOME: %s", why);
        return -EPROTO;
    }
    if (m->o.welcome && (rc = m->o.welcome(m->o.arg, meta)) < 0) {
        ctl_refuse(m->c, "refused", "WELCOME: %s", strerror(-rc));
        return -EPROTO;
    }
    m->state = MBRC_REGISTERED;
    m->attempt = 0;
    log_info("member", "event=registered coordinator=%s session=%llu heartbeat_ms=%u", m->addr,
             (unsigned long long)m->welcome.session, m->welcome.heartbeat_ms);
    if (!m->beat.active)
        beat_arm(m, m->welcome.heartbeat_ms);
    if (m->o.registered)
        m->o.registered(m->o.arg);
    return 0;
}

static uint32_t *owner_slot(mbrc_t *m, uint32_t stream)
{
    for (unsigned i = 0; i < FRAME_STREAMS_MAX; i++)
        if (m->owner_streams[i] == stream)
            return &m->owner_streams[i];
    return NULL;
}

/* A frame of a type membership does not know: the owner's, once registered. */
static int mbrc_owner_frame(mbrc_t *m, const struct frame_hdr *h, const cJSON *meta,
                            uint32_t stream)
{
    if (m->o.on_frame == NULL || m->state == MBRC_CONNECTING) {
        ctl_refuse(m->c, "unexpected", "%s is not part of the membership protocol",
                   frame_type_str(h->type));
        return -EPROTO;
    }
    int rc = m->o.on_frame(m->o.arg, h, meta, stream);
    if (rc == 0 && stream != 0)
        *owner_slot(m, 0) = stream; /* the mux opens at most FRAME_STREAMS_MAX */
    return rc;
}

static int mbrc_on_frame(mux_t *mx, const struct frame_hdr *h, const cJSON *meta, uint32_t stream)
{
    mbrc_t *m = mux_udata(mx);
    const char *code, *reason;
    if ((h->type == FRAME_WELCOME || h->type == FRAME_ERROR) && stream != 0) {
        ctl_refuse(m->c, "body_len", "%s carries no body", frame_type_str(h->type));
        return -EPROTO;
    }
    switch (h->type) {
    case FRAME_WELCOME:
        if (m->state != MBRC_CONNECTING) {
            ctl_refuse(m->c, "order", "unexpected WELCOME");
            return -EPROTO;
        }
        return mbrc_on_welcome(m, meta);
    case FRAME_ERROR:
        ctl_error_fields(meta, &code, &reason);
        log_warn("member", "event=refused coordinator=%s code=%s reason=\"%s\"", m->addr, code,
                 reason);
        return 0; /* the coordinator closes; we dial again after the backoff */
    case FRAME_HELLO:
    case FRAME_HEARTBEAT:
    case FRAME_DRAIN:
    case FRAME_BYE:
        ctl_refuse(m->c, "unexpected", "%s is not a coordinator's message",
                   frame_type_str(h->type));
        return -EPROTO;
    default:
        return mbrc_owner_frame(m, h, meta, stream);
    }
}

static int mbrc_on_body(mux_t *mx, uint32_t stream, const uint8_t *data, size_t len)
{
    mbrc_t *m = mux_udata(mx);
    return owner_slot(m, stream) ? m->o.on_body(m->o.arg, stream, data, len) : 0;
}

static int mbrc_on_end(mux_t *mx, uint32_t stream, int err)
{
    mbrc_t *m = mux_udata(mx);
    uint32_t *slot = owner_slot(m, stream);
    if (slot != NULL) {
        *slot = 0;
        m->o.on_end(m->o.arg, stream, err);
    }
    return 0;
}

static const struct mux_handlers mbrc_mux = {mbrc_on_frame, mbrc_on_body, mbrc_on_end};

static void mbrc_open(conn_t *c)
{
    mbrc_t *m = conn_udata(c);
    struct reg_hello h = {0};
    m->o.hello(m->o.arg, &h);
    cJSON *meta = mbr_hello_json(&h);
    int rc = meta ? mux_new(&m->mx, c, MUX_DIALLER, m->o.body_max, &mbrc_mux, m) : -ENOMEM;
    if (rc == 0)
        rc = mux_send(m->mx, FRAME_HELLO, meta);
    if (rc < 0)
        conn_abort(c, rc);
    cJSON_Delete(meta);
}

static ssize_t mbrc_data(conn_t *c, const uint8_t *data, size_t len)
{
    mbrc_t *m = conn_udata(c);
    return mux_feed(m->mx, data, len);
}

static void mbrc_drain(conn_t *c)
{
    mbrc_t *m = conn_udata(c);
    mux_drain(m->mx);
}

static void mbrc_closed(conn_t *c, int reason)
{
    mbrc_t *m = conn_udata(c);
    mux_free(m->mx); /* the owner's streams end here, both ways */
    m->mx = NULL;
    m->c = NULL;
    if (m->state == MBRC_DRAINING || m->state == MBRC_LEFT) {
        m->state = MBRC_LEFT;
        if (m->done)
            m->done(m->o.arg);
        m->done = NULL;
        return;
    }
    log_info("member", "event=disconnected coordinator=%s reason=\"%s\"", m->addr,
             conn_reason_str(reason));
    m->state = MBRC_DISCONNECTED;
    mbrc_schedule_retry(m);
}

static const struct conn_handlers mbrc_handlers = {
    .on_open = mbrc_open,
    .on_data = mbrc_data,
    .on_drain = mbrc_drain,
    .on_close = mbrc_closed,
};

static void mbrc_dial(mbrc_t *m)
{
    m->state = MBRC_CONNECTING;
    m->bye_sent = false;
    struct conn_opts co = {.tls = m->o.tls,
                           .expect_peer = m->o.expect_name,
                           .expect_role = m->o.expect_role,
                           .handshake_ms = 5000};
    int rc = conn_connect(&m->c, m->o.ring, &m->o.server, &co, &mbrc_handlers, m);
    if (rc < 0) {
        log_warn("member", "event=dial_failed coordinator=%s err=\"%s\"", m->addr, strerror(-rc));
        m->c = NULL;
        m->state = MBRC_DISCONNECTED;
        mbrc_schedule_retry(m);
    }
}

int mbrc_start(mbrc_t **out, const struct mbrc_opts *o)
{
    mbrc_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return -ENOMEM;
    m->o = *o;
    if (m->o.retry_base_ms == 0)
        m->o.retry_base_ms = 100;
    if (m->o.retry_max_ms < m->o.retry_base_ms)
        m->o.retry_max_ms = m->o.retry_base_ms > 2000 ? m->o.retry_base_ms : 2000;
    if (m->o.drain_timeout_ms == 0)
        m->o.drain_timeout_ms = 30000;
    net_addr_str(&o->server, m->addr, sizeof m->addr);
    mbrc_dial(m);
    *out = m;
    return 0;
}

void mbrc_leave(mbrc_t *m, void (*done)(void *arg))
{
    if (m->state == MBRC_REGISTERED) {
        m->done = done;
        m->state = MBRC_DRAINING;
        m->drain_since = ring_now_ms();
        mux_send(m->mx, FRAME_DRAIN, NULL);
        log_info("member", "event=draining coordinator=%s", m->addr);
        mbrc_drain_check(m);
        return;
    }
    if (m->state == MBRC_DRAINING) {
        m->done = done;
        return;
    }
    m->state = MBRC_LEFT;
    if (m->c == NULL) {
        done(m->o.arg);
        return;
    }
    m->done = done; /* called from mbrc_closed, which finds LEFT and does not retry */
    conn_abort(m->c, -ESHUTDOWN);
}

void mbrc_free(mbrc_t *m)
{
    free(m);
}

/* The owner may speak while the coordinator listens: registered or
 * draining, and not after BYE. */
static bool mbrc_can_send(const mbrc_t *m)
{
    return m->mx != NULL && !m->bye_sent &&
           (m->state == MBRC_REGISTERED || m->state == MBRC_DRAINING);
}

int mbrc_send(mbrc_t *m, enum frame_type type, const cJSON *meta)
{
    return mbrc_can_send(m) ? mux_send(m->mx, type, meta) : -ENOTCONN;
}

/* mux_done_fn to the owner's: the stream's own arg carries both. */
struct send_done {
    void (*done)(void *arg, int err);
    void *arg;
};

static void mbrc_sent(mux_t *mx, void *arg, int err)
{
    (void)mx;
    struct send_done d = *(struct send_done *)arg;
    free(arg);
    d.done(d.arg, err);
}

int mbrc_send_buf(mbrc_t *m, enum frame_type type, const cJSON *meta, const void *body,
                  uint64_t len, void (*done)(void *arg, int err), void *arg)
{
    if (!mbrc_can_send(m))
        return -ENOTCONN;
    struct send_done *d = malloc(sizeof *d);
    if (d == NULL)
        return -ENOMEM;
    *d = (struct send_done){done, arg};
    int rc = mux_send_buf(m->mx, type, meta, body, len, mbrc_sent, d, NULL);
    if (rc < 0)
        free(d);
    return rc;
}

void mbrc_refuse(mbrc_t *m, const char *code, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    ctl_refuse(m->c, code, "%s", reason);
}
