/*
 * compute — the compute server (see compute.h).
 *
 * Everything runs on one ring but the kernel (cexec's threads). A WORK
 * from the predecessor is split the moment its meta arrives: the first k
 * items are kept, the rest forwarded, k chosen so that over many WORKs
 * this server keeps weight / (weight + behind) of what reaches it (a
 * running remainder carries the fractions from one WORK to the next).
 * The body is routed as it streams in, the kept part into a cexec batch,
 * the rest into the buffer it is forwarded from, so nothing is copied
 * twice. The kept items are ACCEPTED only once their bytes are all here:
 * a link lost mid-body leaves them sent, and the front-end sends them
 * again when it hears a server went down.
 *
 * Flow control: while the executor holds window items or more, every
 * incoming body stream is held (its credit withheld), which stalls the
 * predecessor's sends and, link by link, the front-end's.
 *
 * A server without a successor (the tail, or one whose link is down)
 * keeps everything it gets: an item is never dropped for want of a place
 * to forward it.
 *
 * Same host: a successor, or a front-end, that announced this host's id
 * (and --edge auto) gets the matrices through a lane (shmlane.h): the
 * link's (clink.h) for forwards, the control session's for RESULTs, which
 * wait in order while the lane is full, until the front-end's RELEASED.
 */
#include "convoy/compute.h"

#include "convoy/cexec.h"
#include "convoy/clink.h"
#include "convoy/cshare.h"
#include "convoy/gj.h"
#include "convoy/log.h"
#include "convoy/mbr_client.h"
#include "convoy/membership.h"
#include "convoy/pki.h"
#include "convoy/proc.h"
#include "convoy/shmbuf.h"
#include "convoy/shmlane.h"

#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW_PER_LANE 64u
#define HELD_MAX        FRAME_STREAMS_MAX
#define REDIAL_MS       200u
#define STOP_LINGER_MS  100u
/* Lanes to neighbours on this host: a successor's carries what the front-
 * end's window lets through (half of it reaches a second server); the
 * RESULT lane is mapped by the front-end too, so it is kept small: a
 * RESULT answers one WORK, about 1 MiB, and is released once on disk. */
#define KEEP_FREED        (64u << 20) /* freed matrices kept for reuse (proc_keep_freed) */
#define LANE_BYTES        (32u << 20)
#define RESULT_LANE_BYTES (16u << 20)

/* A WORK whose body is streaming in. */
struct inwork {
    clink_t *from;
    uint32_t stream;
    struct chain_work w;   /* as received */
    uint32_t keep;         /* items kept: the first keep of w */
    struct cexec_batch *b; /* the kept items (NULL when none) */
    uint8_t *fwd;          /* the forwarded items' bytes, kept (NULL when none yet) */
    bool forwarded;        /* the forwarded items went straight on (cs_forward_now) */
    uint64_t got;          /* body bytes so far */
    struct inwork *next;
};

/* A WORK to forward, waiting for a free stream. */
struct outwork {
    struct chain_work w;
    uint8_t *body; /* owned; NULL with gen */
    struct cs *cs;
    struct outwork *next;
};

struct cs {
    const struct cs_opts *o;
    ring_t *ring;
    cexec_t *ex;
    mbrc_t *member;
    tls_ctx_t *cli_tls, *srv_tls;
    clink_srv_t *in;
    clink_t *out; /* to the successor, NULL when none */
    bool out_up;
    char next[REG_NAME_MAX], next_addr[REG_ADDR_MAX], listen[REG_ADDR_MAX];
    char next_host[REG_HOST_MAX];
    shmlane_w_t *res_lane; /* RESULT matrices to a front-end on this host, or NULL */
    uint64_t epoch;
    uint32_t behind, weight, window;
    struct cshare share;
    uint64_t incoming; /* kept items whose bytes are still streaming in */
    struct inwork *ins;
    struct outwork *queue, *queue_tail;         /* forwards waiting for a stream */
    struct cexec_batch *results, *results_tail; /* RESULTs waiting for a stream */
    unsigned results_busy;                      /* RESULT bodies being sent */
    uint64_t results_items;                     /* items of both: still held */
    uint64_t queued_items;
    struct {
        clink_t *l;
        uint32_t stream;
    } held[HELD_MAX];
    unsigned nheld;
    struct ring_timer redial; /* the successor refused or lost: try again */
    struct ring_timer linger; /* after BYE, for the links' closes */
    bool leaving;
};

static void cs_forward_flush(struct cs *cs);

static const struct frame_field cs_welcome_fields[] = {{"host", FF_STRING, false}};

/* Whether a peer announcing host id host shares this host, and a lane may
 * carry the matrices to it. */
static bool cs_same_host(const struct cs *cs, const char *host)
{
    return !cs->o->edge_tls && host[0] != '\0' && strcmp(host, shmbuf_host_id()) == 0;
}

/* ---- the share ---- */

/* How many of count items this server keeps: its share, bent to what its
 * window can take (cshare.h), or all of them without a successor. */
static uint32_t cs_keep(struct cs *cs, uint32_t count)
{
    uint64_t held = cexec_held(cs->ex) + cs->incoming;
    struct cshare_room r = {.room = held >= cs->window ? 0 : (uint32_t)(cs->window - held),
                            .idle = held == 0};
    return cshare_keep(&cs->share, count, cs->weight, cs->out_up ? cs->behind : 0, r);
}

/* ---- results and acceptances, to the front-end ---- */

static void cs_results_flush(struct cs *cs);

static void cs_result_gone(struct cs *cs, struct cexec_batch *b)
{
    cs->results_items -= b->w.count;
    cexec_batch_free(b);
}

static void cs_result_sent(void *arg, int err)
{
    struct cexec_batch *b = arg;
    struct cs *cs = b->udata;
    (void)err; /* a result lost with the connection is computed again elsewhere */
    cs_result_gone(cs, b);
    cs->results_busy--;
    cs_results_flush(cs);
}

/* Sends b's RESULT: 0 (b is gone), or -EAGAIN when every stream of the
 * control connection carries a body (b stays the caller's). */
static int cs_send_result(struct cs *cs, struct cexec_batch *b)
{
    struct chain_result r = {.job = b->w.job,
                             .first = b->w.first,
                             .count = b->w.count,
                             .n = b->w.n,
                             .ms = b->ms,
                             .has_resid = b->w.residual,
                             .has_sum = b->sum != NULL && b->err == 0,
                             .status = b->status,
                             .resid = b->resid,
                             .sum = b->sum};
    if (b->err < 0) /* nothing computed: every item invalid, never lost */
        memset(b->status, GJ_INVALID, b->w.count);
    uint64_t len = chain_items_len(b->w.count, b->w.n);
    bool matrices = b->w.output && b->err == 0;
    if (matrices && cs->res_lane && len <= shmlane_w_size(cs->res_lane)) {
        void *at = shmlane_w_alloc(cs->res_lane, len, &r.shm.pos);
        if (at == NULL)
            return -EAGAIN; /* the front-end's RELEASED flushes again */
        memcpy(at, b->data, len);
        r.shm.lane = shmlane_w_name(cs->res_lane);
        r.shm.size = shmlane_w_size(cs->res_lane);
        matrices = false;
    }
    cJSON *meta = chain_result_json(&r);
    int rc = meta ? 0 : -ENOMEM;
    bool body = rc == 0 && matrices;
    b->udata = cs;
    if (body)
        rc = mbrc_send_buf(cs->member, FRAME_RESULT, meta, b->data, len, cs_result_sent, b);
    else if (rc == 0)
        rc = mbrc_send(cs->member, FRAME_RESULT, meta);
    cJSON_Delete(meta);
    if (rc == -EAGAIN)
        return rc;
    if (rc < 0)
        log_warn("compute", "event=result_lost job=%llu first=%llu count=%u err=\"%s\"",
                 (unsigned long long)b->w.job, (unsigned long long)b->w.first, b->w.count,
                 strerror(-rc));
    if (body && rc == 0)
        cs->results_busy++;
    else
        cs_result_gone(cs, b);
    return 0;
}

/* Sends the results waiting for a stream, in order. */
static void cs_results_flush(struct cs *cs)
{
    while (cs->results) {
        struct cexec_batch *b = cs->results, *next = b->next;
        if (cs_send_result(cs, b) == -EAGAIN)
            return;
        cs->results = next;
        if (next == NULL)
            cs->results_tail = NULL;
    }
}

static void cs_send_span(struct cs *cs, enum frame_type type, uint64_t job, uint64_t first,
                         uint32_t count)
{
    struct chain_span s = {job, first, count};
    cJSON *meta = chain_span_json(&s);
    int rc = meta ? mbrc_send(cs->member, type, meta) : -ENOMEM;
    cJSON_Delete(meta);
    if (rc < 0)
        log_debug("compute", "event=span_lost type=%s job=%llu err=\"%s\"", frame_type_str(type),
                  (unsigned long long)job, strerror(-rc));
}

/* ---- flow control ---- */

static bool cs_full(const struct cs *cs)
{
    return cexec_held(cs->ex) >= cs->window;
}

static void cs_hold(struct cs *cs, clink_t *l, uint32_t stream)
{
    if (cs->nheld < HELD_MAX && clink_hold(l, stream) == 0) {
        cs->held[cs->nheld].l = l;
        cs->held[cs->nheld].stream = stream;
        cs->nheld++;
    }
}

static void cs_release_all(struct cs *cs)
{
    for (unsigned i = 0; i < cs->nheld; i++)
        clink_release(cs->held[i].l, cs->held[i].stream);
    cs->nheld = 0;
}

/* Forgets the held streams of link l (it is going). */
static void cs_forget_held(struct cs *cs, clink_t *l)
{
    unsigned j = 0;
    for (unsigned i = 0; i < cs->nheld; i++)
        if (cs->held[i].l != l)
            cs->held[j++] = cs->held[i];
    cs->nheld = j;
}

static void cs_batch_done(void *arg, struct cexec_batch *b)
{
    struct cs *cs = arg;
    b->next = NULL;
    if (cs->results_tail)
        cs->results_tail->next = b;
    else
        cs->results = b;
    cs->results_tail = b;
    cs->results_items += b->w.count;
    cs_results_flush(cs);
    if (!cs_full(cs))
        cs_release_all(cs);
}

/* ---- forwarding ---- */

static void cs_out_free(struct outwork *ow)
{
    free(ow->body);
    free(ow);
}

static void cs_forward_done(void *arg, int err)
{
    struct outwork *ow = arg;
    struct cs *cs = ow->cs;
    if (err < 0)
        log_debug("compute", "event=forward_lost job=%llu first=%llu count=%u err=\"%s\"",
                  (unsigned long long)ow->w.job, (unsigned long long)ow->w.first, ow->w.count,
                  strerror(-err));
    cs_out_free(ow);
    cs_forward_flush(cs);
}

/* Sends the queued forwards while the link has streams free. */
static void cs_forward_flush(struct cs *cs)
{
    while (cs->queue && cs->out_up) {
        struct outwork *ow = cs->queue;
        int rc = clink_send_work(cs->out, &ow->w, ow->body, chain_work_body_len(&ow->w),
                                 cs_forward_done, ow);
        if (rc == -EAGAIN)
            return;
        cs->queue = ow->next;
        if (cs->queue == NULL)
            cs->queue_tail = NULL;
        cs->queued_items -= ow->w.count;
        if (rc < 0) {
            log_warn("compute", "event=forward_failed job=%llu first=%llu err=\"%s\"",
                     (unsigned long long)ow->w.job, (unsigned long long)ow->w.first, strerror(-rc));
            cs_out_free(ow);
        }
    }
}

/* Items [first, first + count) of w to forward, with their bytes (owned,
 * NULL for none): NULL without memory. */
static struct outwork *cs_outwork(struct cs *cs, const struct chain_work *w, uint64_t first,
                                  uint32_t count, uint8_t *body)
{
    struct outwork *ow = calloc(1, sizeof *ow);
    if (ow == NULL)
        return NULL;
    ow->w = *w;
    ow->w.first = first;
    ow->w.count = count;
    ow->body = body;
    ow->cs = cs;
    return ow;
}

/* Sends items [first, first + count) of w with their bytes at body, at
 * once and without a copy of ours: only into the successor's lane (which
 * copies them before this returns, so body may be a region of the
 * predecessor's lane), and only when no forward waits before it. false
 * when it cannot go now: the caller keeps the bytes and queues them. */
static bool cs_forward_now(struct cs *cs, const struct chain_work *w, uint64_t first,
                           uint32_t count, const uint8_t *body)
{
    if (cs->queue || !cs->out_up || !clink_has_lane(cs->out))
        return false;
    struct outwork *ow = cs_outwork(cs, w, first, count, NULL);
    if (ow == NULL)
        return false;
    int rc =
        clink_send_work(cs->out, &ow->w, body, chain_work_body_len(&ow->w), cs_forward_done, ow);
    if (rc == -EAGAIN) {
        free(ow);
        return false;
    }
    if (rc < 0) { /* sent, not accepted: the front-end sends them again */
        log_warn("compute", "event=forward_failed job=%llu first=%llu err=\"%s\"",
                 (unsigned long long)w->job, (unsigned long long)first, strerror(-rc));
        free(ow);
    }
    return true;
}

/* Queues items [first, first + count) of w, with their bytes (owned). */
static void cs_forward(struct cs *cs, const struct chain_work *w, uint64_t first, uint32_t count,
                       uint8_t *body)
{
    struct outwork *ow = cs_outwork(cs, w, first, count, body);
    if (ow == NULL) {
        free(body);
        return; /* sent, not accepted: the front-end sends them again */
    }
    if (cs->queue_tail)
        cs->queue_tail->next = ow;
    else
        cs->queue = ow;
    cs->queue_tail = ow;
    cs->queued_items += count;
    cs_forward_flush(cs);
}

/* ---- WORK from the predecessor ---- */

static void cs_keep_batch(struct cs *cs, struct cexec_batch *b)
{
    cs_send_span(cs, FRAME_ACCEPTED, b->w.job, b->w.first, b->w.count);
    cexec_submit(cs->ex, b);
}

static void cs_in_free(struct inwork *iw)
{
    cexec_batch_free(iw->b);
    free(iw->fwd);
    free(iw);
}

static struct inwork **cs_in_find(struct cs *cs, clink_t *l, uint32_t stream)
{
    struct inwork **pp = &cs->ins;
    while (*pp && ((*pp)->from != l || (*pp)->stream != stream))
        pp = &(*pp)->next;
    return pp;
}

/* The split of w: iw->keep kept (batch b), the rest forwarded. */
static struct inwork *cs_split(struct cs *cs, const struct chain_work *w)
{
    struct inwork *iw = calloc(1, sizeof *iw);
    if (iw == NULL)
        return NULL;
    iw->w = *w;
    iw->keep = cs_keep(cs, w->count);
    struct chain_work kw = *w;
    kw.count = iw->keep;
    if (iw->keep > 0 && (iw->b = cexec_batch_new(&kw)) == NULL) {
        free(iw);
        return NULL;
    }
    return iw;
}

/* A whole WORK is here: keep, forward, answer. iw is consumed. */
static void cs_work_whole(struct cs *cs, struct inwork *iw)
{
    uint32_t rest = iw->w.count - iw->keep;
    if (iw->b)
        cs_keep_batch(cs, iw->b);
    if (rest > 0 && !iw->forwarded)
        cs_forward(cs, &iw->w, iw->w.first + iw->keep, rest, iw->fwd);
    iw->b = NULL;
    iw->fwd = NULL;
    cs_in_free(iw);
}

static int cs_on_work(void *arg, clink_t *l, const struct chain_work *w, uint32_t stream)
{
    struct cs *cs = arg;
    struct inwork *iw = cs_split(cs, w);
    if (iw == NULL) {
        log_warn("compute", "event=work_dropped job=%llu first=%llu count=%u err=\"no memory\"",
                 (unsigned long long)w->job, (unsigned long long)w->first, w->count);
        return stream ? -ENOMEM : 0;
    }
    log_debug("compute", "event=work job=%llu first=%llu count=%u keep=%u",
              (unsigned long long)w->job, (unsigned long long)w->first, w->count, iw->keep);
    if (stream == 0) {
        cs_work_whole(cs, iw);
        return 0;
    }
    iw->from = l;
    iw->stream = stream;
    iw->next = cs->ins;
    cs->ins = iw;
    cs->incoming += iw->keep;
    if (cs_full(cs))
        cs_hold(cs, l, stream);
    return 0;
}

/* Where the next byte of iw's body goes, and *room the bytes that may
 * follow it there: among the items kept (the first kept bytes), then
 * among those forwarded. */
static uint8_t *cs_in_at(struct inwork *iw, uint64_t kept, uint64_t total, size_t *room)
{
    bool in_keep = iw->got < kept;
    *room = (size_t)((in_keep ? kept : total) - iw->got);
    return in_keep ? (uint8_t *)iw->b->data + iw->got : iw->fwd + (iw->got - kept);
}

static int cs_on_body(void *arg, clink_t *l, uint32_t stream, const uint8_t *p, size_t len)
{
    struct cs *cs = arg;
    struct inwork *iw = *cs_in_find(cs, l, stream);
    if (iw == NULL)
        return 0;
    uint64_t kept = chain_items_len(iw->keep, iw->w.n), total = chain_work_body_len(&iw->w);
    if (len > total - iw->got)
        return -EPROTO;
    /* The whole body at once (a lane's region): what is not kept may go
     * straight on; else it is kept until the body ends. */
    uint64_t gone = 0;
    if (iw->got == 0 && len == total && total > kept &&
        cs_forward_now(cs, &iw->w, iw->w.first + iw->keep, iw->w.count - iw->keep, p + kept)) {
        iw->forwarded = true;
        gone = total - kept;
        len = (size_t)kept;
    }
    if (!iw->forwarded && total > kept && iw->got + len >= kept && iw->fwd == NULL &&
        (iw->fwd = malloc(total - kept)) == NULL) /* also before room is offered in it */
        return -ENOMEM;
    while (len > 0) {
        size_t room;
        uint8_t *at = cs_in_at(iw, kept, total, &room);
        size_t take = len < room ? len : room;
        if (p != at) /* else read there (clink_body_into) */
            memcpy(at, p, take);
        iw->got += take;
        p += take;
        len -= take;
    }
    if (iw->got < total && !iw->forwarded) { /* the rest of the chunk goes straight in */
        size_t room;
        uint8_t *at = cs_in_at(iw, kept, total, &room);
        (void)clink_body_into(l, stream, at, room);
    }
    iw->got += gone;
    return 0;
}

static void cs_on_end(void *arg, clink_t *l, uint32_t stream, int err)
{
    struct cs *cs = arg;
    struct inwork **pp = cs_in_find(cs, l, stream), *iw = *pp;
    if (iw == NULL)
        return;
    *pp = iw->next;
    cs->incoming -= iw->keep;
    if (err < 0 || iw->got != chain_work_body_len(&iw->w)) {
        log_info("compute", "event=work_broken job=%llu first=%llu count=%u err=\"%s\"",
                 (unsigned long long)iw->w.job, (unsigned long long)iw->w.first, iw->w.count,
                 err < 0 ? strerror(-err) : "short body");
        cs_in_free(iw);
        return;
    }
    cs_work_whole(cs, iw);
}

static void cs_in_down(void *arg, clink_t *l, int reason)
{
    struct cs *cs = arg;
    log_info("compute", "event=prev_down peer=%s reason=\"%s\"", clink_peer(l),
             reason ? strerror(reason < 0 ? -reason : reason) : "closed");
    cs_forget_held(cs, l);
    for (struct inwork **pp = &cs->ins; *pp;) {
        struct inwork *iw = *pp;
        if (iw->from == l) {
            *pp = iw->next;
            cs->incoming -= iw->keep;
            cs_in_free(iw);
        } else {
            pp = &iw->next;
        }
    }
}

/* ---- the successor ---- */

static void cs_out_up(void *arg, clink_t *l)
{
    struct cs *cs = arg;
    if (l != cs->out)
        return;
    cs->out_up = true;
    log_info("compute", "event=next_up next=%s", cs->next);
    cs_forward_flush(cs);
}

/* What was queued for a successor that is gone stays here: kept. */
static void cs_keep_queue(struct cs *cs)
{
    while (cs->queue) {
        struct outwork *ow = cs->queue;
        cs->queue = ow->next;
        cs->queued_items -= ow->w.count;
        struct cexec_batch *b = cexec_batch_new(&ow->w);
        if (b && !ow->w.gen)
            memcpy(b->data, ow->body, chain_work_body_len(&ow->w));
        if (b)
            cs_keep_batch(cs, b);
        cs_out_free(ow);
    }
    cs->queue_tail = NULL;
}

static void cs_dial_next(struct cs *cs);

static void cs_redial(struct ring_timer *t)
{
    struct cs *cs = container_of(t, struct cs, redial);
    if (cs->out == NULL)
        cs_dial_next(cs);
}

static void cs_out_down(void *arg, clink_t *l, int reason)
{
    struct cs *cs = arg;
    if (l != cs->out)
        return;
    log_info("compute", "event=next_down next=%s reason=\"%s\"", cs->next,
             reason ? strerror(reason < 0 ? -reason : reason) : "closed");
    cs->out = NULL;
    cs->out_up = false;
    cs_keep_queue(cs);
    /* It may only not know us yet (its CHAIN_SET_NEXT still on its way):
     * the front-end relinks us if it is gone. */
    if (!cs->leaving && cs->next[0] != '\0')
        ring_timer_start(cs->ring, &cs->redial, REDIAL_MS, cs_redial);
}

/* The successor's lane has room again. */
static void cs_out_room(void *arg, clink_t *l)
{
    (void)l;
    cs_forward_flush(arg);
}

/* Dials the successor cs->next at cs->next_addr (none when ""). */
static void cs_dial_next(struct cs *cs)
{
    ring_timer_stop(cs->ring, &cs->redial);
    if (cs->out) {
        clink_t *old = cs->out;
        cs->out = NULL;
        cs->out_up = false;
        clink_close(old);
    }
    if (cs->next[0] == '\0')
        return;
    struct net_addr a;
    char err[160];
    int rc = net_addr_parse_err(cs->next_addr, NET_DIAL, &a, err, sizeof err);
    struct clink_handlers h = {
        .on_up = cs_out_up, .on_down = cs_out_down, .on_room = cs_out_room, .arg = cs};
    if (rc == 0)
        rc = clink_dial(&cs->out, cs->ring, cs->cli_tls, &a, cs->next, &h);
    if (rc < 0) {
        log_warn("compute", "event=next_dial_failed next=%s addr=%s err=\"%s\"", cs->next,
                 cs->next_addr, rc == -EINVAL ? err : strerror(-rc));
        return;
    }
    if (cs_same_host(cs, cs->next_host)) {
        int lr = clink_use_lane(cs->out, LANE_BYTES);
        log_info("compute", "event=next_edge next=%s edge=%s err=\"%s\"", cs->next,
                 lr == 0 ? "shm" : "tls", lr == 0 ? "" : strerror(-lr));
    }
}

/* ---- the front-end's messages ---- */

static int cs_set_next(struct cs *cs, const cJSON *meta)
{
    struct chain_next m;
    char why[160];
    if (chain_next_parse(meta, &m, why, sizeof why) < 0) {
        mbrc_refuse(cs->member, "schema", "CHAIN_SET_NEXT: %s", why);
        return -EPROTO;
    }
    if (m.epoch <= cs->epoch)
        return 0; /* an older one, overtaken */
    cs->epoch = m.epoch;
    cs->behind = m.behind;
    if (m.weight > 0) /* as the front-end measures it: the same unit as behind */
        cs->weight = m.weight;
    if (cs->in)
        clink_srv_set_prev(cs->in, m.prev);
    log_info("compute", "event=chain epoch=%llu prev=%s next=%s weight=%u behind=%u",
             (unsigned long long)m.epoch, m.prev, m.next[0] ? m.next : "-", cs->weight, m.behind);
    if (strcmp(m.next, cs->next) != 0 || strcmp(m.next_addr, cs->next_addr) != 0 ||
        strcmp(m.next_host, cs->next_host) != 0) {
        snprintf(cs->next, sizeof cs->next, "%s", m.next);
        snprintf(cs->next_addr, sizeof cs->next_addr, "%s", m.next_addr);
        snprintf(cs->next_host, sizeof cs->next_host, "%s", m.next_host);
        cs_dial_next(cs);
    }
    return 0;
}

static void cs_cancel(struct cs *cs, const struct chain_span *s)
{
    uint64_t dropped = cexec_cancel(cs->ex, s->job);
    for (struct outwork **pp = &cs->queue; *pp;) {
        struct outwork *ow = *pp;
        if (ow->w.job == s->job) {
            *pp = ow->next;
            cs->queued_items -= ow->w.count;
            dropped += ow->w.count;
            cs_out_free(ow);
        } else {
            cs->queue_tail = ow;
            pp = &ow->next;
        }
    }
    if (cs->queue == NULL)
        cs->queue_tail = NULL;
    log_info("compute", "event=cancel job=%llu dropped=%llu", (unsigned long long)s->job,
             (unsigned long long)dropped);
    if (!cs_full(cs))
        cs_release_all(cs);
}

/* The front-end is done with our RESULT lane up to a position. */
static int cs_released(struct cs *cs, const cJSON *meta)
{
    struct chain_release rel;
    char why[160];
    if (chain_release_parse(meta, &rel, why, sizeof why) < 0) {
        mbrc_refuse(cs->member, "schema", "RELEASED: %s", why);
        return -EPROTO;
    }
    if (cs->res_lane == NULL || strcmp(rel.lane, shmlane_w_name(cs->res_lane)) != 0)
        return 0; /* a lane of a session before this one */
    if (shmlane_w_released(cs->res_lane, rel.upto) < 0) {
        mbrc_refuse(cs->member, "shm", "RELEASED: not a position of the lane");
        return -EPROTO;
    }
    cs_results_flush(cs);
    return 0;
}

static int cs_on_frame(void *arg, const struct frame_hdr *h, const cJSON *meta, uint32_t stream)
{
    struct cs *cs = arg;
    (void)stream;
    if (h->type == FRAME_CHAIN_SET_NEXT)
        return cs_set_next(cs, meta);
    if (h->type == FRAME_RELEASED)
        return cs_released(cs, meta);
    if (h->type == FRAME_CANCEL) {
        struct chain_span s;
        char why[160];
        if (chain_span_parse(meta, &s, why, sizeof why) < 0) {
            mbrc_refuse(cs->member, "schema", "CANCEL: %s", why);
            return -EPROTO;
        }
        cs_cancel(cs, &s);
        return 0;
    }
    mbrc_refuse(cs->member, "unexpected", "%s from the front-end", frame_type_str(h->type));
    return -EPROTO;
}

static void cs_prev_cancel(void *arg, clink_t *l, const struct chain_span *s)
{
    (void)l;
    cs_cancel(arg, s);
}

/* ---- membership ---- */

static void cs_load(void *arg, struct reg_load *l)
{
    struct cs *cs = arg;
    double avg[1] = {0};
    memset(l, 0, sizeof *l);
    uint64_t held = cexec_held(cs->ex) + cs->queued_items + cs->results_items;
    l->active = held > UINT32_MAX ? UINT32_MAX : (uint32_t)held;
    if (getloadavg(avg, 1) == 1)
        l->load1 = avg[0];
}

static void cs_hello(void *arg, struct reg_hello *h)
{
    struct cs *cs = arg;
    h->name = cs->o->name;
    h->addr = cs->listen;
    h->weight = cs->weight;
    h->capacity = cexec_threads(cs->ex);
    h->host = cs->o->edge_tls ? "" : shmbuf_host_id();
    cs_load(cs, &h->load);
}

/* WELCOME's host: a front-end on this host gets RESULT matrices through a
 * new lane (each session its own: the front-end maps it on first use). */
static int cs_welcome(void *arg, const cJSON *meta)
{
    struct cs *cs = arg;
    const cJSON *host = cJSON_GetObjectItemCaseSensitive(meta, "host");
    shmlane_w_free(cs->res_lane);
    cs->res_lane = NULL;
    if (host == NULL || !cs_same_host(cs, host->valuestring))
        return 0;
    int rc = shmlane_w_new(&cs->res_lane, RESULT_LANE_BYTES);
    log_info("compute", "event=result_edge edge=%s err=\"%s\"", rc == 0 ? "shm" : "tls",
             rc == 0 ? "" : strerror(-rc));
    return 0;
}

/* A new session with the front-end (maybe a new front-end): its epochs
 * start again. */
static void cs_registered(void *arg)
{
    struct cs *cs = arg;
    cs->epoch = 0;
}

static void cs_linger_done(struct ring_timer *t)
{
    ring_stop(container_of(t, struct cs, linger)->ring);
}

/* BYE is said: the chain links close (their closes complete on the ring,
 * which runs a little longer for them), then the ring stops. */
static void cs_left(void *arg)
{
    struct cs *cs = arg;
    ring_timer_stop(cs->ring, &cs->redial);
    clink_srv_stop(cs->in);
    cs->in = NULL;
    if (cs->out) {
        clink_t *out = cs->out;
        cs->out = NULL;
        cs->out_up = false;
        clink_close(out);
    }
    ring_timer_start(cs->ring, &cs->linger, STOP_LINGER_MS, cs_linger_done);
}

static void cs_signal(void *arg, int signo)
{
    struct cs *cs = arg;
    if (cs->leaving) {
        log_warn("compute", "event=stop_now signal=%s", strsignal(signo));
        ring_stop(cs->ring);
        return;
    }
    cs->leaving = true;
    log_info("compute", "event=stopping signal=%s held=%llu", strsignal(signo),
             (unsigned long long)cexec_held(cs->ex));
    mbrc_leave(cs->member, cs_left);
}

/* ---- start ---- */

/* The chain address: --listen, or the front-end's host with port 0. */
static int cs_listen_addr(const struct cs_opts *o, const struct net_addr *front,
                          struct net_addr *out)
{
    if (o->listen)
        return net_addr_parse_err(o->listen, NET_LISTEN, out, NULL, 0);
    *out = *front;
    if (out->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&out->ss)->sin_port = 0;
    else
        ((struct sockaddr_in6 *)&out->ss)->sin6_port = 0;
    return 0;
}

static int cs_start(struct cs *cs, struct mbrc_opts *mo)
{
    const struct cs_opts *o = cs->o;
    char err[512];
    struct net_addr la;
    int rc = cexec_create(&cs->ex, cs->ring, o->threads, cs_batch_done, cs);
    if (rc < 0)
        return rc;
    cs->window = o->window ? o->window : WINDOW_PER_LANE * cexec_threads(cs->ex);
    double gf = cexec_calibrate(cs->ex);
    cs->weight = o->weight ? o->weight : cshare_weight(gf);
    if (tls_ctx_new(&cs->srv_tls, TLS_SERVER, o->pki, o->name, true, err, sizeof err) < 0) {
        log_error("compute", "event=tls_failed err=\"%s\"", err);
        return -EPROTO;
    }
    if ((rc = cs_listen_addr(o, &mo->server, &la)) < 0 ||
        (rc = clink_listen(&cs->in, cs->ring, cs->srv_tls, &la,
                           &(struct clink_handlers){.on_work = cs_on_work,
                                                    .on_body = cs_on_body,
                                                    .on_end = cs_on_end,
                                                    .on_cancel = cs_prev_cancel,
                                                    .on_down = cs_in_down,
                                                    .arg = cs})) < 0) {
        log_error("compute", "event=listen_failed listen=%s err=\"%s\"",
                  o->listen ? o->listen : "auto", strerror(-rc));
        return rc;
    }
    clink_srv_set_prev(cs->in, NULL); /* nobody until the front-end says */
    net_addr_str(clink_srv_addr(cs->in), cs->listen, sizeof cs->listen);
    log_info("compute",
             "event=started name=%s listen=%s threads=%u weight=%u gflops=%.1f window=%u", o->name,
             cs->listen, cexec_threads(cs->ex), cs->weight, gf, cs->window);
    return mbrc_start(&cs->member, mo);
}

int cs_run(const struct cs_opts *o)
{
    struct cs cs = {.o = o};
    struct mbrc_opts mo = {.expect_name = o->frontend_name,
                           .expect_role = PKI_ROLE_FRONTEND,
                           .retry_max_ms = o->retry_max_ms,
                           .hello = cs_hello,
                           .load = cs_load,
                           .registered = cs_registered,
                           .welcome_fields = cs_welcome_fields,
                           .nwelcome_fields = 1,
                           .welcome = cs_welcome,
                           .on_frame = cs_on_frame,
                           .arg = &cs};
    char err[512];
    if (proc_keep_freed(KEEP_FREED) < 0)
        log_warn("compute", "event=malloc_tuning_refused");
    if (net_addr_parse_err(o->frontend, NET_DIAL, &mo.server, err, sizeof err) < 0) {
        log_error("compute", "event=bad_option option=--frontend value=\"%s\" err=\"%s\"",
                  o->frontend, err);
        return 2;
    }
    if (!mbr_name_valid(o->name)) {
        log_error("compute", "event=bad_option err=\"--name takes 1-63 of A-Z a-z 0-9 . _ -\"");
        return 2;
    }
    int status = 1;
    shmbuf_sweep(); /* lanes that dead processes left */
    if (tls_ctx_new(&cs.cli_tls, TLS_CLIENT, o->pki, o->name, false, err, sizeof err) < 0) {
        log_error("compute", "event=tls_failed err=\"%s\"", err);
        return 1;
    }
    mo.tls = cs.cli_tls;
    int rc = ring_create(&cs.ring, 256);
    if (rc < 0) {
        log_error("compute", "event=io_uring_unavailable err=\"%s\"", strerror(-rc));
        goto out;
    }
    mo.ring = cs.ring;
    if ((rc = ring_watch_signals(cs.ring, cs_signal, &cs)) < 0 || (rc = cs_start(&cs, &mo)) < 0) {
        log_error("compute", "event=start_failed err=\"%s\"", strerror(-rc));
        goto out;
    }
    ring_run(cs.ring);
    status = 0;
    log_info("compute", "event=stopped name=%s", o->name);
out:
    cexec_destroy(cs.ex);
    while (cs.ins) {
        struct inwork *iw = cs.ins;
        cs.ins = iw->next;
        cs_in_free(iw);
    }
    while (cs.queue) {
        struct outwork *ow = cs.queue;
        cs.queue = ow->next;
        cs_out_free(ow);
    }
    while (cs.results) {
        struct cexec_batch *b = cs.results;
        cs.results = b->next;
        cexec_batch_free(b);
    }
    mbrc_free(cs.member);
    ring_destroy(cs.ring);
    shmlane_w_free(cs.res_lane);
    tls_ctx_free(cs.srv_tls);
    tls_ctx_free(cs.cli_tls);
    return status;
}
