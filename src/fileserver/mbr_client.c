/*
 * mbr_client — the server side of membership.
 *
 * One connection at a time. Two timers: `beat` paces HEARTBEAT (and, while
 * draining, polls for the last transfer to end); `retry` waits out the
 * backoff before the next dial. Backoff doubles from retry_base_ms up to
 * retry_max_ms and waits a random time in [d/2, d] ("equal jitter"), so a
 * cluster of servers that lost their balancer together does not come back
 * in lockstep; it resets after each WELCOME.
 */
#include "convoy/mbr_client.h"

#include "convoy/conn.h"
#include "convoy/ctl.h"
#include "convoy/log.h"
#include "convoy/membership.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define DRAIN_POLL_MS 100u

struct mbrc {
    struct mbrc_opts o;
    enum mbrc_state state;
    conn_t *c; /* NULL while disconnected */
    frame_decoder_t *dec;
    struct mbr_welcome welcome;
    struct ring_timer beat, retry;
    unsigned attempt; /* dials since the last WELCOME */
    uint64_t drain_since;
    bool bye_sent;
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
    log_info("member", "event=retry balancer=%s in_ms=%u attempt=%u", m->addr, ms, m->attempt);
    ring_timer_start(m->o.ring, &m->retry, ms, handle_retry);
}

static void mbrc_send_bye(mbrc_t *m)
{
    m->bye_sent = true;
    ctl_send(m->c, FRAME_BYE, NULL);
    conn_close(m->c);
    log_info("member", "event=bye balancer=%s", m->addr);
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
        ctl_send(m->c, FRAME_HEARTBEAT, meta);
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
    if (mbr_welcome_parse(meta, &m->welcome, why, sizeof why) < 0 || m->welcome.heartbeat_ms == 0) {
        ctl_refuse(m->c, "schema", "WELCOME: %s", m->welcome.heartbeat_ms ? why : "no heartbeat");
        return -EPROTO;
    }
    m->state = MBRC_REGISTERED;
    m->attempt = 0;
    log_info("member", "event=registered balancer=%s session=%llu heartbeat_ms=%u", m->addr,
             (unsigned long long)m->welcome.session, m->welcome.heartbeat_ms);
    if (!m->beat.active)
        beat_arm(m, m->welcome.heartbeat_ms);
    return 0;
}

static int mbrc_on_frame(void *ctx, const struct frame_hdr *h, const cJSON *meta)
{
    mbrc_t *m = ctx;
    const char *code, *reason;
    switch (h->type) {
    case FRAME_WELCOME:
        if (m->state != MBRC_CONNECTING) {
            ctl_refuse(m->c, "order", "unexpected WELCOME");
            return -EPROTO;
        }
        return mbrc_on_welcome(m, meta);
    case FRAME_ERROR:
        ctl_error_fields(meta, &code, &reason);
        log_warn("member", "event=refused balancer=%s code=%s reason=\"%s\"", m->addr, code,
                 reason);
        return 0; /* the balancer closes; we dial again after the backoff */
    default:
        ctl_refuse(m->c, "unexpected", "%s is not part of the membership protocol",
                   frame_type_str(h->type));
        return -EPROTO;
    }
}

static int mbrc_on_end(void *ctx)
{
    (void)ctx;
    return 0;
}

static const struct frame_sink mbrc_sink = {.on_frame = mbrc_on_frame, .on_end = mbrc_on_end};
static const struct frame_limits mbrc_limits = {.meta_max = FRAME_META_MAX, .body_max = 0};

static void mbrc_open(conn_t *c)
{
    mbrc_t *m = conn_udata(c);
    struct reg_hello h = {0};
    m->o.hello(m->o.arg, &h);
    cJSON *meta = mbr_hello_json(&h);
    if (meta == NULL || ctl_send(c, FRAME_HELLO, meta) < 0)
        conn_abort(c, -ENOMEM);
    cJSON_Delete(meta);
}

static ssize_t mbrc_data(conn_t *c, const uint8_t *data, size_t len)
{
    mbrc_t *m = conn_udata(c);
    return ctl_feed(c, m->dec, data, len);
}

static void mbrc_closed(conn_t *c, int reason)
{
    mbrc_t *m = conn_udata(c);
    m->c = NULL;
    frame_decoder_free(m->dec);
    m->dec = NULL;
    if (m->state == MBRC_DRAINING || m->state == MBRC_LEFT) {
        m->state = MBRC_LEFT;
        if (m->done)
            m->done(m->o.arg);
        m->done = NULL;
        return;
    }
    log_info("member", "event=disconnected balancer=%s reason=\"%s\"", m->addr,
             conn_reason_str(reason));
    m->state = MBRC_DISCONNECTED;
    mbrc_schedule_retry(m);
}

static const struct conn_handlers mbrc_handlers = {
    .on_open = mbrc_open,
    .on_data = mbrc_data,
    .on_close = mbrc_closed,
};

static void mbrc_dial(mbrc_t *m)
{
    m->state = MBRC_CONNECTING;
    m->bye_sent = false;
    struct conn_opts co = {.tls = m->o.tls, .handshake_ms = 5000};
    int rc = frame_decoder_new(&m->dec, &mbrc_limits, &mbrc_sink, m);
    if (rc == 0)
        rc = conn_connect(&m->c, m->o.ring, &m->o.server, &co, &mbrc_handlers, m);
    if (rc < 0) {
        log_warn("member", "event=dial_failed balancer=%s err=\"%s\"", m->addr, strerror(-rc));
        frame_decoder_free(m->dec);
        m->dec = NULL;
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
        ctl_send(m->c, FRAME_DRAIN, NULL);
        log_info("member", "event=draining balancer=%s", m->addr);
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
    if (m == NULL)
        return;
    frame_decoder_free(m->dec);
    free(m);
}
