/*
 * mbr_server — the coordinator's side of membership.
 *
 * The design is simple: a session per control connection, on a list the
 * server owns; a frame is checked (order, schema, the certificate's name)
 * before the table is touched, and the table is touched only between the
 * owner's lock and unlock. One timer sweeps the list: a session with no
 * HELLO past its deadline is closed (its own deadline, not conn's, which
 * ends with the TLS handshake), and a member silent past dead-after is
 * marked down and closed. Stopping closes the listener and every session
 * and tells the owner from the loop once the last on_close has run.
 *
 * Each connection runs on a mux, so a member may stream bodies (up to
 * body_max) beside its heartbeats. Membership's own messages never carry
 * one (refused "body_len", as before); the others go to the owner, which
 * gets on_end only for the streams it was handed.
 */
#include "convoy/mbr_server.h"

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

#define SWEEP_MIN_MS 50u
#define CTL_IN_MAX   (FRAME_HDR_LEN + FRAME_META_MAX) /* one whole frame, no body */

struct mbrs {
    struct mbrs_opts o;
    conn_listener_t *listener; /* NULL once stopping */
    struct net_addr addr;      /* bound, with the real port */
    struct ring_timer sweep;   /* HELLO deadlines and silence */
    struct ring_defer stopped; /* runs done from the loop once stopping */
    bool stopping;
    void (*done)(void *arg); /* mbrs_stop's */
    void *done_arg;
    struct mbrs_session *sessions;
};

/* One member's control connection. */
struct mbrs_session {
    mbrs_t *m;
    conn_t *c;
    mux_t *mx; /* from on_open */
    void *udata;
    uint32_t owner_streams[FRAME_STREAMS_MAX]; /* streams handed to the owner; 0: free */
    char name[REG_NAME_MAX];                   /* the certificate's, once HELLO is taken */
    uint64_t id;                               /* registry session; 0 before WELCOME */
    uint64_t hello_by;                         /* ring_now_ms() by which HELLO must have come */
    uint64_t last_seen;                        /* ring_now_ms() of the last frame */
    bool gone;                                 /* BYE or timeout already recorded */
    struct mbrs_session *prev, *next;
};

/* ---- the table, under the owner's lock ---- */

static int session_event(struct mbrs_session *s, enum reg_event e, const struct reg_load *l)
{
    struct reg_table *t = s->m->o.lock(s->m->o.arg);
    if (t == NULL)
        return -EIO;
    int rc = reg_event(t, s->name, s->id, e, l, ring_now_ms());
    s->m->o.unlock(s->m->o.arg);
    return rc;
}

static int session_register(struct mbrs_session *s, const struct reg_hello *h, char *why,
                            size_t whylen)
{
    struct reg_table *t = s->m->o.lock(s->m->o.arg);
    if (t == NULL) {
        snprintf(why, whylen, "member table unavailable");
        return -EIO;
    }
    int rc = reg_hello(t, h, ring_now_ms(), &s->id, why, whylen);
    s->m->o.unlock(s->m->o.arg);
    return rc;
}

/* ---- frames from a member ---- */

static int send_welcome(struct mbrs_session *s)
{
    const struct mbrs_opts *o = &s->m->o;
    struct mbr_welcome w = {s->id, o->heartbeat_ms, o->dead_after_ms};
    cJSON *reply = mbr_welcome_json(&w);
    int rc = reply ? 0 : -ENOMEM;
    if (rc == 0 && o->welcome)
        rc = o->welcome(o->arg, s->name, reply);
    if (rc == 0)
        rc = mux_send(s->mx, FRAME_WELCOME, reply);
    cJSON_Delete(reply);
    return rc;
}

/* The certificate names the member; a HELLO may repeat the name, never
 * change it. A certificate without a readable, valid name is refused
 * here, before anything compares or logs it. */
static int check_name(struct mbrs_session *s, const struct reg_hello *h, const char **cn)
{
    *cn = conn_peer_name(s->c);
    if (!mbr_name_valid(*cn)) {
        ctl_refuse(s->c, "name", "the certificate's name is missing or not a valid member name");
        return -EPROTO;
    }
    if (h->name && strcmp(h->name, *cn) != 0) {
        ctl_refuse(s->c, "name", "HELLO names '%s' but the certificate is '%s'", h->name, *cn);
        return -EPROTO;
    }
    return 0;
}

static int on_hello(struct mbrs_session *s, const cJSON *meta)
{
    struct reg_hello h;
    const char *cn;
    char why[256];
    if (mbr_hello_parse(meta, &h, why, sizeof why) < 0) {
        ctl_refuse(s->c, "schema", "HELLO: %s", why);
        return -EPROTO;
    }
    if (check_name(s, &h, &cn) < 0)
        return -EPROTO;
    h.name = cn;
    int rc = session_register(s, &h, why, sizeof why);
    if (rc < 0) {
        ctl_refuse(s->c, rc == -EEXIST ? "duplicate" : "refused", "%s", why);
        return -EPROTO;
    }
    snprintf(s->name, sizeof s->name, "%s", cn);
    conn_trust(s->c); /* a member: never evicted to make room for strangers */
    if ((rc = send_welcome(s)) < 0) {
        ctl_refuse(s->c, "refused", "WELCOME: %s", strerror(-rc));
        return -EPROTO;
    }
    log_info("mbr_server", "event=up name=%s http=%s weight=%u capacity=%u files=%llu session=%llu",
             s->name, h.addr, h.weight, h.capacity, (unsigned long long)h.files,
             (unsigned long long)s->id);
    if (s->m->o.on_join)
        s->m->o.on_join(s->m->o.arg, s, &h);
    return 0;
}

static enum reg_event event_of(enum frame_type type)
{
    return type == FRAME_HEARTBEAT ? REG_EV_HEARTBEAT
           : type == FRAME_DRAIN   ? REG_EV_DRAIN
                                   : REG_EV_BYE;
}

static int on_membership(struct mbrs_session *s, enum frame_type type, const cJSON *meta)
{
    struct reg_load load;
    char why[256];
    int rc = type == FRAME_HEARTBEAT ? mbr_heartbeat_parse(meta, &load, why, sizeof why)
                                     : mbr_empty_parse(meta, why, sizeof why);
    if (rc < 0) {
        ctl_refuse(s->c, "schema", "%s: %s", frame_type_str(type), why);
        return -EPROTO;
    }
    enum reg_event e = event_of(type);
    rc = session_event(s, e, &load);
    if (rc == -ESTALE) {
        ctl_refuse(s->c, "stale", "session %llu no longer holds '%s'", (unsigned long long)s->id,
                   s->name);
        return -EPROTO;
    }
    if (rc < 0) {
        ctl_refuse(s->c, "state", "%s not allowed now", frame_type_str(type));
        return -EPROTO;
    }
    if (e == REG_EV_DRAIN) {
        log_info("mbr_server", "event=draining name=%s", s->name);
        if (s->m->o.on_drain)
            s->m->o.on_drain(s->m->o.arg, s);
    }
    if (e == REG_EV_BYE) {
        log_info("mbr_server", "event=left name=%s", s->name);
        s->gone = true;
        conn_close(s->c);
    }
    return 0;
}

/* ---- the owner's frames ---- */

static uint32_t *owner_slot(struct mbrs_session *s, uint32_t stream)
{
    for (unsigned i = 0; i < FRAME_STREAMS_MAX; i++)
        if (s->owner_streams[i] == stream)
            return &s->owner_streams[i];
    return NULL;
}

/* A type membership does not handle, from a registered member. */
static int on_owner_frame(struct mbrs_session *s, const struct frame_hdr *h, const cJSON *meta,
                          uint32_t stream)
{
    const struct mbrs_opts *o = &s->m->o;
    if (o->on_frame == NULL) {
        ctl_refuse(s->c, "unexpected", "%s is not part of the membership protocol",
                   frame_type_str(h->type));
        return -EPROTO;
    }
    int rc = o->on_frame(o->arg, s, h, meta, stream);
    if (rc == 0 && stream != 0)
        *owner_slot(s, 0) = stream; /* the mux opens at most FRAME_STREAMS_MAX */
    return rc;
}

static int mux_frame(mux_t *mx, const struct frame_hdr *h, const cJSON *meta, uint32_t stream)
{
    struct mbrs_session *s = mux_udata(mx);
    const char *code, *reason;
    s->last_seen = ring_now_ms();
    if (s->gone)
        return 0;
    if (s->id == 0 && h->type != FRAME_HELLO && h->type != FRAME_ERROR) {
        ctl_refuse(s->c, "order", "expected HELLO, got %s", frame_type_str(h->type));
        return -EPROTO;
    }
    bool ours = h->type <= FRAME_BYE || h->type == FRAME_ERROR;
    if (ours && stream != 0) {
        ctl_refuse(s->c, "body_len", "%s carries no body", frame_type_str(h->type));
        return -EPROTO;
    }
    switch (h->type) {
    case FRAME_HELLO:
        if (s->id != 0) {
            ctl_refuse(s->c, "order", "HELLO twice");
            return -EPROTO;
        }
        return on_hello(s, meta);
    case FRAME_HEARTBEAT:
    case FRAME_DRAIN:
    case FRAME_BYE:
        return on_membership(s, h->type, meta);
    case FRAME_ERROR: /* the member is closing: no ERROR answers an ERROR */
        ctl_error_fields(meta, &code, &reason);
        log_warn("mbr_server", "event=member_error name=%s code=%s reason=\"%s\"",
                 s->id ? s->name : "-", code, reason);
        conn_close(s->c);
        return -EPROTO;
    case FRAME_WELCOME:
        ctl_refuse(s->c, "unexpected", "%s is not a member's message", frame_type_str(h->type));
        return -EPROTO;
    default:
        return on_owner_frame(s, h, meta, stream);
    }
}

static int mux_body(mux_t *mx, uint32_t stream, const uint8_t *data, size_t len)
{
    struct mbrs_session *s = mux_udata(mx);
    s->last_seen = ring_now_ms(); /* a long body is a sign of life too */
    if (s->gone || owner_slot(s, stream) == NULL)
        return 0;
    return s->m->o.on_body(s->m->o.arg, s, stream, data, len);
}

int mbrs_body_into(mbrs_session_t *s, uint32_t stream, void *dst, size_t len)
{
    return mux_body_into(s->mx, stream, dst, len);
}

static int mux_end(mux_t *mx, uint32_t stream, int err)
{
    struct mbrs_session *s = mux_udata(mx);
    uint32_t *slot = owner_slot(s, stream);
    if (slot == NULL)
        return 0;
    *slot = 0;
    s->m->o.on_end(s->m->o.arg, s, stream, err);
    return 0;
}

static const struct mux_handlers session_mux = {mux_frame, mux_body, mux_end};

/* ---- connections ---- */

static ssize_t session_data(conn_t *c, const uint8_t *data, size_t len)
{
    struct mbrs_session *s = conn_udata(c);
    return mux_feed(s->mx, data, len);
}

static void session_drain(conn_t *c)
{
    struct mbrs_session *s = conn_udata(c);
    mux_drain(s->mx);
}

static void session_open(conn_t *c)
{
    struct mbrs_session *s = conn_udata(c);
    const char *cn = conn_peer_name(c);
    log_debug("mbr_server", "event=connected peer=%s name=%s", conn_peer_addr(c),
              mbr_name_valid(cn) ? cn : "-");
    int rc = mux_new(&s->mx, c, MUX_ACCEPTOR, s->m->o.body_max, &session_mux, s);
    if (rc < 0) {
        log_error("mbr_server", "event=accept_failed err=\"%s\"", strerror(-rc));
        conn_abort(c, rc);
    }
}

static void run_done(struct ring_defer *d)
{
    mbrs_t *m = container_of(d, mbrs_t, stopped);
    void (*done)(void *) = m->done;
    m->done = NULL;
    if (done)
        done(m->done_arg);
}

/* Once stopping and the last session is gone, done runs from the loop. */
static void maybe_done(mbrs_t *m)
{
    if (m->stopping && m->sessions == NULL)
        ring_defer(m->o.ring, &m->stopped, run_done);
}

static void session_close(conn_t *c, int reason)
{
    struct mbrs_session *s = conn_udata(c);
    if (s == NULL)
        return;
    if (s->id != 0 && !s->gone && session_event(s, REG_EV_DISCONNECT, NULL) == REG_DOWN)
        log_info("mbr_server", "event=down name=%s reason=\"%s\"", s->name,
                 conn_reason_str(reason));
    mux_free(s->mx); /* the owner's streams end here */
    if (s->id != 0 && s->m->o.on_gone)
        s->m->o.on_gone(s->m->o.arg, s);
    mbrs_t *m = s->m;
    if (s->prev)
        s->prev->next = s->next;
    else
        m->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
    maybe_done(m);
}

static const struct conn_handlers session_handlers = {
    .on_open = session_open,
    .on_data = session_data,
    .on_drain = session_drain,
    .on_close = session_close,
};

static void session_accept(conn_t *c, void *arg)
{
    mbrs_t *m = arg;
    struct mbrs_session *s = calloc(1, sizeof *s);
    if (s == NULL) {
        log_error("mbr_server", "event=accept_failed err=\"%s\"", strerror(ENOMEM));
        conn_abort(c, -ENOMEM);
        return;
    }
    s->m = m;
    s->c = c;
    s->last_seen = ring_now_ms();
    s->hello_by = s->last_seen + m->o.hello_timeout_ms;
    s->next = m->sessions;
    if (m->sessions)
        m->sessions->prev = s;
    m->sessions = s;
    conn_set_udata(c, s);
}

/* ---- the sweep ---- */

/* A session past its deadline: no HELLO in time, or a member gone silent. */
static void sweep_one(struct mbrs_session *s, uint64_t now)
{
    if (s->gone)
        return;
    if (s->id == 0 && now >= s->hello_by) {
        log_info("mbr_server", "event=hello_timeout peer=%s waited_ms=%u", conn_peer_addr(s->c),
                 s->m->o.hello_timeout_ms);
        s->gone = true;
        conn_abort(s->c, -ETIMEDOUT);
        return;
    }
    if (s->id == 0 || now - s->last_seen <= s->m->o.dead_after_ms)
        return;
    if (session_event(s, REG_EV_TIMEOUT, NULL) == REG_DOWN)
        log_info("mbr_server", "event=down name=%s reason=timeout silent_ms=%llu", s->name,
                 (unsigned long long)(now - s->last_seen));
    s->gone = true;
    conn_abort(s->c, -ETIMEDOUT);
}

static void sweep_arm(mbrs_t *m);

/* on_close runs from the loop, never inside conn_abort, so the list holds
 * still while it is walked. */
static void handle_sweep(struct ring_timer *timer)
{
    mbrs_t *m = container_of(timer, mbrs_t, sweep);
    uint64_t now = ring_now_ms();
    for (struct mbrs_session *s = m->sessions; s; s = s->next)
        sweep_one(s, now);
    sweep_arm(m);
}

/* Often enough that neither deadline is overshot by more than a quarter. */
static void sweep_arm(mbrs_t *m)
{
    uint32_t every =
        m->o.dead_after_ms < m->o.hello_timeout_ms ? m->o.dead_after_ms : m->o.hello_timeout_ms;
    every /= 4;
    ring_timer_start(m->o.ring, &m->sweep, every < SWEEP_MIN_MS ? SWEEP_MIN_MS : every,
                     handle_sweep);
}

/* ---- lifetime ---- */

int mbrs_start(mbrs_t **out, const struct mbrs_opts *o)
{
    mbrs_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return -ENOMEM;
    m->o = *o;
    if (m->o.hello_timeout_ms == 0)
        m->o.hello_timeout_ms = MBRS_HELLO_TIMEOUT_MS;
    struct conn_opts co = {.tls = o->tls,
                           .expect_role = o->role,
                           .handshake_ms = m->o.hello_timeout_ms,
                           .in_max = CTL_IN_MAX,
                           .max_conns = o->max_conns};
    int rc =
        conn_listen(&m->listener, o->ring, &o->addr, &co, &session_handlers, session_accept, m);
    if (rc < 0) {
        char a[64];
        log_error("mbr_server", "event=listen_failed addr=%s err=\"%s\"",
                  net_addr_str(&o->addr, a, sizeof a), strerror(-rc));
        free(m);
        return rc;
    }
    m->addr = *conn_listener_addr(m->listener);
    sweep_arm(m);
    *out = m;
    return 0;
}

const struct net_addr *mbrs_addr(const mbrs_t *m)
{
    return &m->addr;
}

void mbrs_stop(mbrs_t *m, void (*done)(void *arg), void *arg)
{
    if (m->stopping)
        return;
    m->stopping = true;
    m->done = done;
    m->done_arg = arg;
    conn_listener_close(m->listener);
    m->listener = NULL;
    ring_timer_stop(m->o.ring, &m->sweep);
    for (struct mbrs_session *s = m->sessions; s; s = s->next)
        conn_abort(s->c, -ESHUTDOWN);
    maybe_done(m);
}

void mbrs_free(mbrs_t *m)
{
    free(m);
}

const char *mbrs_session_name(const mbrs_session_t *s)
{
    return s->name;
}

uint64_t mbrs_session_id(const mbrs_session_t *s)
{
    return s->id;
}

void mbrs_session_set_udata(mbrs_session_t *s, void *udata)
{
    s->udata = udata;
}

void *mbrs_session_udata(const mbrs_session_t *s)
{
    return s->udata;
}

int mbrs_send(mbrs_session_t *s, enum frame_type type, const cJSON *meta)
{
    return mux_send(s->mx, type, meta);
}

void mbrs_refuse(mbrs_session_t *s, const char *code, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    ctl_refuse(s->c, code, "%s", reason);
}
