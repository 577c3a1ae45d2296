/*
 * clink — the compute chain's links (see clink.h). A link is a conn with a
 * mux, created in on_open as the mux wants; the dialling side only sends
 * (its mux takes no body), the accepting side only receives WORK and
 * CANCEL. The listener keeps its links in a list so that a new prev closes
 * the others and stopping closes them all; each link unlinks itself in
 * on_close, the one place a link ends.
 *
 * A WORK through a lane is delivered to the handlers under a stream id of
 * its own (CLINK_LANE_BIT set, which no mux stream has), so holding it is
 * holding back the RELEASED that would give its room back.
 */
#include "convoy/clink.h"

#include "convoy/conn.h"
#include "convoy/ctl.h"
#include "convoy/log.h"
#include "convoy/mux.h"
#include "convoy/pki.h"
#include "convoy/shmlane.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLINK_IDLE_MS  0 /* a link may wait as long as the chain does */
#define CLINK_LANE_BIT (1u << 31)

struct clink {
    ring_t *ring;
    conn_t *c;
    mux_t *mx;
    clink_srv_t *srv; /* NULL when dialled */
    struct clink_handlers h;
    char peer[64];
    clink_t *prev_l, *next_l; /* the listener's links */
    shmlane_w_t *wlane;       /* dialled: where its matrices go, or NULL */
    bool want_room;           /* a send found wlane full */
    shmlane_r_t *rlane;       /* accepting: the predecessor's lane, once named */
    uint64_t rel_upto;        /* accepting: done up to here … */
    uint64_t rel_told;        /* … and told up to here */
    unsigned rel_holds;       /* lane WORKs held: RELEASED waits for them */
    uint32_t lane_seq;
};

struct clink_srv {
    ring_t *ring;
    conn_listener_t *l;
    struct clink_handlers h;
    char prev[64];
    clink_t *links;
};

/* One send's completion, as the caller asked for it. */
struct clink_send {
    struct ring_defer d; /* a WORK without body: done from the loop all the same */
    void (*done)(void *arg, int err);
    void *arg;
};

const char *clink_peer(const clink_t *l)
{
    return l->peer;
}

/* ---- receiving ---- */

/* Tells the predecessor the room it may reuse, unless a WORK is held. */
static void clink_tell_released(clink_t *l)
{
    if (l->rel_holds > 0 || l->rel_upto <= l->rel_told || l->mx == NULL)
        return;
    struct chain_release rel = {shmlane_r_name(l->rlane), l->rel_upto};
    cJSON *meta = chain_release_json(&rel);
    if (meta && mux_send(l->mx, FRAME_RELEASED, meta) == 0)
        l->rel_told = l->rel_upto;
    cJSON_Delete(meta);
}

/* A WORK whose matrices are in the predecessor's lane: delivered as if
 * they had streamed in, then their room given back. */
static int clink_lane_work(clink_t *l, const struct chain_work *w)
{
    char why[200];
    if (l->rlane && strcmp(shmlane_r_name(l->rlane), w->shm.lane) != 0) {
        ctl_refuse(l->c, "shm", "WORK: a second lane on one link");
        return -EPROTO;
    }
    if (l->rlane == NULL && shmlane_r_open(&l->rlane, w->shm.lane, w->shm.size, why, sizeof why)) {
        log_warn("clink", "event=lane_refused peer=%s why=\"%s\"", l->peer, why);
        ctl_refuse(l->c, "shm", "%s", why);
        return -EPROTO;
    }
    uint64_t len = chain_work_body_len(w);
    const uint8_t *p = shmlane_r_take(l->rlane, w->shm.pos, len);
    if (p == NULL) {
        ctl_refuse(l->c, "shm", "WORK: %llu bytes at %llu are not a region of the lane",
                   (unsigned long long)len, (unsigned long long)w->shm.pos);
        return -EPROTO;
    }
    uint32_t stream = CLINK_LANE_BIT | (l->lane_seq++ & ~CLINK_LANE_BIT);
    struct chain_work as_streamed = *w; /* the lane is this link's business */
    as_streamed.shm = (struct chain_shm){0};
    int rc = l->h.on_work(l->h.arg, l, &as_streamed, stream);
    if (rc == 0) {
        rc = l->h.on_body(l->h.arg, l, stream, p, len);
        l->h.on_end(l->h.arg, l, stream, rc);
    }
    int64_t upto = shmlane_r_done(l->rlane, w->shm.pos);
    if (upto > 0)
        l->rel_upto = (uint64_t)upto;
    clink_tell_released(l);
    return rc;
}

/* What a successor sends on a chain link: RELEASED, for the lane. */
static int clink_on_released(clink_t *l, const cJSON *meta)
{
    char why[160];
    struct chain_release rel;
    if (chain_release_parse(meta, &rel, why, sizeof why) != 0) {
        ctl_refuse(l->c, "schema", "RELEASED: %s", why);
        return -EPROTO;
    }
    if (l->wlane == NULL || strcmp(rel.lane, shmlane_w_name(l->wlane)) != 0 ||
        shmlane_w_released(l->wlane, rel.upto) < 0) {
        ctl_refuse(l->c, "shm", "RELEASED: not a position of this link's lane");
        return -EPROTO;
    }
    if (l->want_room && l->h.on_room) {
        l->want_room = false;
        l->h.on_room(l->h.arg, l);
    }
    return 0;
}

static int clink_on_frame(mux_t *m, const struct frame_hdr *hd, const cJSON *meta, uint32_t stream)
{
    clink_t *l = mux_udata(m);
    char why[160];
    if (l->srv == NULL && hd->type == FRAME_RELEASED && stream == 0)
        return clink_on_released(l, meta);
    if (l->srv == NULL) {
        ctl_refuse(l->c, "unexpected", "a successor sends only RELEASED on a chain link");
        return -EPROTO;
    }
    if (hd->type == FRAME_CANCEL) {
        struct chain_span s;
        if (chain_span_parse(meta, &s, why, sizeof why) != 0) {
            ctl_refuse(l->c, "schema", "CANCEL: %s", why);
            return -EPROTO;
        }
        if (l->h.on_cancel)
            l->h.on_cancel(l->h.arg, l, &s);
        return 0;
    }
    if (hd->type != FRAME_WORK) {
        ctl_refuse(l->c, "unexpected", "%s on a chain link", frame_type_str(hd->type));
        return -EPROTO;
    }
    struct chain_work w;
    if (chain_work_parse(meta, &w, why, sizeof why) != 0) {
        ctl_refuse(l->c, "schema", "WORK: %s", why);
        return -EPROTO;
    }
    uint64_t want = chain_work_body_len(&w), got = stream ? hd->body_len : 0;
    if (w.shm.lane && stream == 0)
        return clink_lane_work(l, &w);
    if (want != got || w.shm.lane) {
        ctl_refuse(l->c, "body_len", "WORK of %u items n=%u: %llu bytes of body, want %llu",
                   w.count, w.n, (unsigned long long)got, (unsigned long long)want);
        return -EPROTO;
    }
    return l->h.on_work(l->h.arg, l, &w, stream);
}

static int clink_on_body(mux_t *m, uint32_t stream, const uint8_t *p, size_t len)
{
    clink_t *l = mux_udata(m);
    return l->h.on_body(l->h.arg, l, stream, p, len);
}

int clink_body_into(clink_t *l, uint32_t stream, void *dst, size_t len)
{
    return l->mx && !(stream & CLINK_LANE_BIT) ? mux_body_into(l->mx, stream, dst, len) : -ENOENT;
}

static int clink_on_end(mux_t *m, uint32_t stream, int err)
{
    clink_t *l = mux_udata(m);
    l->h.on_end(l->h.arg, l, stream, err);
    return 0;
}

static const struct mux_handlers clink_mux = {clink_on_frame, clink_on_body, clink_on_end};

/* ---- the connection ---- */

/* Whether an accepted peer is the predecessor this listener takes. */
static bool clink_welcome(const clink_t *l)
{
    const char *role = conn_peer_role(l->c);
    bool role_ok =
        role && (strcmp(role, PKI_ROLE_COMPUTE) == 0 || strcmp(role, PKI_ROLE_FRONTEND) == 0);
    return role_ok && l->srv->prev[0] != '\0' && strcmp(l->peer, l->srv->prev) == 0;
}

static void clink_on_open(conn_t *c)
{
    clink_t *l = conn_udata(c);
    snprintf(l->peer, sizeof l->peer, "%s", conn_peer_name(c) ? conn_peer_name(c) : "");
    if (l->srv && !clink_welcome(l)) {
        log_warn("clink", "event=refused peer=%s role=%s prev=%s", l->peer,
                 conn_peer_role(c) ? conn_peer_role(c) : "-", l->srv->prev);
        ctl_refuse(c, "peer", "not this server's predecessor");
        return;
    }
    int rc = mux_new(&l->mx, c, l->srv ? MUX_ACCEPTOR : MUX_DIALLER, l->srv ? CHAIN_BODY_MAX : 0,
                     &clink_mux, l);
    if (rc < 0) {
        conn_abort(c, rc);
        return;
    }
    conn_trust(c);
    if (l->srv == NULL && l->h.on_up)
        l->h.on_up(l->h.arg, l);
}

static ssize_t clink_on_data(conn_t *c, const uint8_t *data, size_t len)
{
    clink_t *l = conn_udata(c);
    return l->mx ? mux_feed(l->mx, data, len) : (ssize_t)len;
}

static void clink_on_drain(conn_t *c)
{
    clink_t *l = conn_udata(c);
    if (l->mx)
        mux_drain(l->mx);
}

static void clink_on_close(conn_t *c, int reason)
{
    clink_t *l = conn_udata(c);
    if (l == NULL)
        return; /* accepted without memory for it */
    mux_free(l->mx);
    l->mx = NULL;
    shmlane_w_free(l->wlane);
    shmlane_r_free(l->rlane);
    if (l->srv) {
        if (l->prev_l)
            l->prev_l->next_l = l->next_l;
        else
            l->srv->links = l->next_l;
        if (l->next_l)
            l->next_l->prev_l = l->prev_l;
    }
    if (l->h.on_down)
        l->h.on_down(l->h.arg, l, reason);
    free(l);
}

static const struct conn_handlers clink_conn = {
    .on_open = clink_on_open,
    .on_data = clink_on_data,
    .on_drain = clink_on_drain,
    .on_close = clink_on_close,
};

int clink_dial(clink_t **out, ring_t *r, tls_ctx_t *tls, const struct net_addr *addr,
               const char *expect_name, const struct clink_handlers *h)
{
    clink_t *l = calloc(1, sizeof *l);
    if (l == NULL)
        return -ENOMEM;
    l->h = *h;
    l->ring = r;
    struct conn_opts co = {.tls = tls,
                           .expect_peer = expect_name,
                           .expect_role = PKI_ROLE_COMPUTE,
                           .idle_ms = CLINK_IDLE_MS};
    int rc = conn_connect(&l->c, r, addr, &co, &clink_conn, l);
    if (rc < 0) {
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

/* ---- sending ---- */

static void clink_sent(mux_t *m, void *arg, int err)
{
    (void)m;
    struct clink_send *s = arg;
    if (s->done)
        s->done(s->arg, err);
    free(s);
}

static void clink_sent_later(struct ring_defer *d)
{
    struct clink_send *s = container_of(d, struct clink_send, d);
    clink_sent(NULL, s, 0);
}

int clink_room(clink_t *l, uint64_t len, struct clink_room *out)
{
    if (l->mx == NULL || l->wlane == NULL)
        return -ENOTCONN;
    if (len == 0)
        return -EINVAL;
    uint8_t *at = shmlane_w_alloc(l->wlane, len, &out->pos);
    if (at == NULL) {
        l->want_room = true;
        return -EAGAIN;
    }
    out->at = at;
    out->len = len;
    out->lane = shmlane_w_ref(l->wlane);
    return 0;
}

void clink_room_put(struct clink_room *room)
{
    shmlane_w_free(room->lane);
    room->lane = NULL;
}

int clink_send_room(clink_t *l, const struct chain_work *w, const struct clink_room *room,
                    void (*done)(void *arg, int err), void *arg)
{
    if (l->mx == NULL)
        return -ENOTCONN;
    if (room->lane == NULL || room->lane != l->wlane)
        return -ESTALE;
    if (room->len != chain_work_body_len(w) || w->shm.lane)
        return -EINVAL;
    struct chain_work lw = *w;
    lw.shm.pos = room->pos;
    lw.shm.lane = shmlane_w_name(l->wlane);
    lw.shm.size = shmlane_w_size(l->wlane);
    cJSON *meta = chain_work_json(&lw);
    struct clink_send *s = meta ? calloc(1, sizeof *s) : NULL;
    int rc = s ? mux_send(l->mx, FRAME_WORK, meta) : -ENOMEM;
    cJSON_Delete(meta);
    if (rc != 0) {
        free(s); /* its room stays taken: the link is going */
        return rc;
    }
    s->done = done;
    s->arg = arg;
    ring_defer(l->ring, &s->d, clink_sent_later);
    return 0;
}

/* WORK through the lane: the matrices copied in, their position sent. */
static int clink_send_lane(clink_t *l, const struct chain_work *w, const void *body, uint64_t len,
                           void (*done)(void *arg, int err), void *arg)
{
    struct clink_room room;
    int rc = clink_room(l, len, &room);
    if (rc < 0)
        return rc;
    memcpy(room.at, body, len);
    rc = clink_send_room(l, w, &room, done, arg);
    clink_room_put(&room);
    return rc;
}

int clink_send_work(clink_t *l, const struct chain_work *w, const void *body, uint64_t len,
                    void (*done)(void *arg, int err), void *arg)
{
    if (l->mx == NULL)
        return -ENOTCONN;
    if (len != chain_work_body_len(w) || w->shm.lane)
        return -EINVAL; /* where the matrices go is the link's to say */
    if (l->wlane && len > 0)
        return clink_send_lane(l, w, body, len, done, arg);
    cJSON *meta = chain_work_json(w);
    if (meta == NULL)
        return -ENOMEM;
    struct clink_send *s = calloc(1, sizeof *s);
    if (s == NULL) {
        cJSON_Delete(meta);
        return -ENOMEM;
    }
    s->done = done;
    s->arg = arg;
    int rc = len ? mux_send_buf(l->mx, FRAME_WORK, meta, body, len, clink_sent, s, NULL)
                 : mux_send(l->mx, FRAME_WORK, meta);
    cJSON_Delete(meta);
    if (rc != 0)
        free(s);
    else if (len == 0)
        ring_defer(l->ring, &s->d, clink_sent_later);
    return rc;
}

int clink_use_lane(clink_t *l, size_t size)
{
    if (l->srv || l->wlane)
        return -EINVAL;
    return shmlane_w_new(&l->wlane, size);
}

bool clink_has_lane(const clink_t *l)
{
    return l->wlane != NULL;
}

int clink_send_cancel(clink_t *l, const struct chain_span *sp)
{
    if (l->mx == NULL)
        return -ENOTCONN;
    cJSON *meta = chain_span_json(sp);
    int rc = meta ? mux_send(l->mx, FRAME_CANCEL, meta) : -ENOMEM;
    cJSON_Delete(meta);
    return rc;
}

int clink_hold(clink_t *l, uint32_t stream)
{
    if (stream & CLINK_LANE_BIT) {
        l->rel_holds++;
        return 0;
    }
    return l->mx ? mux_hold(l->mx, stream) : -ENOENT;
}

int clink_release(clink_t *l, uint32_t stream)
{
    if (stream & CLINK_LANE_BIT) {
        if (l->rel_holds == 0)
            return -ENOENT;
        l->rel_holds--;
        clink_tell_released(l);
        return 0;
    }
    return l->mx ? mux_release(l->mx, stream) : -ENOENT;
}

void clink_close(clink_t *l)
{
    conn_close(l->c);
}

/* ---- the listener ---- */

static void clink_accept(conn_t *c, void *arg)
{
    clink_srv_t *s = arg;
    clink_t *l = calloc(1, sizeof *l);
    if (l == NULL) {
        conn_abort(c, -ENOMEM); /* on_close sees no udata */
        return;
    }
    l->c = c;
    l->ring = s->ring;
    l->srv = s;
    l->h = s->h;
    l->next_l = s->links;
    if (s->links)
        s->links->prev_l = l;
    s->links = l;
    conn_set_udata(c, l);
}

int clink_listen(clink_srv_t **out, ring_t *r, tls_ctx_t *tls, const struct net_addr *addr,
                 const struct clink_handlers *h)
{
    clink_srv_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->ring = r;
    s->h = *h;
    struct conn_opts co = {.tls = tls, .idle_ms = CLINK_IDLE_MS};
    int rc = conn_listen(&s->l, r, addr, &co, &clink_conn, clink_accept, s);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

const struct net_addr *clink_srv_addr(const clink_srv_t *s)
{
    return conn_listener_addr(s->l);
}

void clink_srv_set_prev(clink_srv_t *s, const char *prev)
{
    snprintf(s->prev, sizeof s->prev, "%s", prev ? prev : "");
    for (clink_t *l = s->links; l; l = l->next_l)
        if (l->mx && strcmp(l->peer, s->prev) != 0)
            conn_close(l->c);
}

void clink_srv_stop(clink_srv_t *s)
{
    conn_listener_close(s->l);
    for (clink_t *l = s->links; l; l = l->next_l) {
        l->srv = NULL; /* unlinked here: the list goes with the listener */
        conn_close(l->c);
    }
    free(s);
}
