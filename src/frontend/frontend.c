/*
 * frontend — the chain half of the front-end (see frontend.h, fe.h).
 *
 * Members: a compute server that joins (on_join) is appended to the chain
 * order; one that drains or whose session ends is unlinked, and every
 * server whose neighbours changed hears CHAIN_SET_NEXT. The front-end
 * itself dials the head, with the same chain link the servers use.
 *
 * Delegation is one pump: while the head's link is up and fewer items
 * than the window are on the chain, the oldest running job's lowest
 * unsent items go out in one WORK (their matrices read from the spooled
 * input with pread, none for a generated job). The window is counted in
 * items sent or accepted and not yet done, so a chain that computes
 * slowly is fed slowly, and the input is read no faster than the chain
 * drains it: a job of any size costs its window in memory.
 *
 * Results: ACCEPTED and RESULT come on each server's own control
 * session; the job's ledger (fejob.h) counts the first result of every
 * item and stores exactly those. A session that ends, for whatever
 * reason, sends every item neither done nor accepted by a live server
 * back to unsent, and the pump delegates them again.
 */
#include "fe.h"

#include "convoy/cshare.h"
#include "convoy/dio.h"
#include "convoy/gj.h"
#include "convoy/log.h"
#include "convoy/membership.h"
#include "convoy/npy.h"
#include "convoy/pki.h"
#include "convoy/proc.h"
#include "convoy/shmbuf.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FE_BATCH_BYTES     (1u << 20)  /* a WORK's matrices */
#define FE_BATCH_MAX       64u         /* items in a WORK */
#define FE_WINDOW_BYTES    (64u << 20) /* matrices on the chain at once */
#define FE_WINDOW_LANE     64u         /* items on the chain per lane at most */
#define FE_KEEP_FREED      (64u << 20) /* freed buffers kept for reuse (proc_keep_freed) */
#define FE_REDIAL_MS       200u
#define FE_RESULT_MAX      (64u << 20) /* a RESULT's body */
#define FE_JOB_SLOTS       4096u
#define FE_STALL_MS        3000u /* a job with items sent and no answer this long */
#define FE_WATCH_MS        1000u
#define FE_MEASURE_MIN_MS  5u          /* a batch shorter than this says little of a speed */
#define FE_MEASURE_ALPHA   0.3         /* the moving average's weight of a new batch */
#define FE_MEASURE_SAMPLES 3u          /* batches before a measured speed counts */
#define FE_REWEIGH         0.2         /* relative drift that changes a weight */
#define FE_LANE_BYTES      (32u << 20) /* the lane to a head on this host: half the window */

static void fe_maybe_stop(struct fe *fe);
static struct fmember *fe_member(struct fe *fe, const char *name);
static void fe_lane_unref(struct fe_lane *ln);

/* Whether a peer announcing host id host shares this host, and lanes may
 * carry the matrices between us. */
static bool fe_same_host(const struct fe *fe, const char *host)
{
    return !fe->o->edge_tls && host[0] != '\0' && strcmp(host, shmbuf_host_id()) == 0;
}
static void fe_chain_publish(struct fe *fe);
static void fe_relink(struct fe *fe);
static void fe_reweigh(struct fe *fe);

/* ---- jobs ---- */

static uint64_t fe_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct fjob *fe_job_find(struct fe *fe, uint64_t id)
{
    for (struct fjob *j = fe->jobs; j; j = j->next)
        if (j->id == id)
            return j;
    return NULL;
}

void fe_job_free(struct fjob *j)
{
    if (j == NULL)
        return;
    fejob_close(j->fj);
    dio_close(j->input);
    free(j);
}

void fe_job_publish(struct fe *fe, struct fjob *j)
{
    if (j->slot == UINT32_MAX)
        return;
    struct fejob_counts c;
    fejob_counts(j->fj, &c);
    struct jobtab_row r = {.id = j->id,
                           .state = j->state,
                           .n = j->n,
                           .items = j->items,
                           .done = c.ok + c.singular + c.invalid,
                           .ok = c.ok,
                           .singular = c.singular,
                           .invalid = c.invalid,
                           .redelegated = c.l.redelegated,
                           .submitted_ms = j->submitted_ms,
                           .finished_ms = j->finished_ms};
    snprintf(r.user, sizeof r.user, "%s", j->user);
    snprintf(r.op, sizeof r.op, "%s", j->op->name);
    int rc = jobtab_put(fe->tab, j->slot, &r);
    if (rc < 0)
        log_warn("frontend", "event=jobtab_failed job=%llu err=\"%s\"", (unsigned long long)j->id,
                 strerror(-rc));
}

int fe_npy_header(const struct fjob *j, uint8_t *hdr, size_t cap)
{
    return npy_write_header_aligned(j->items, j->n, DIO_ALIGN, hdr, cap);
}

int fe_job_open(struct fe *fe, struct fjob *j)
{
    uint8_t hdr[FE_NPY_HDR];
    int hlen = fe_npy_header(j, hdr, sizeof hdr);
    if (hlen < 0)
        return hlen;
    return fejob_open(fe->spool, j->id, j->items, j->n, j->output != JOB_OUT_NONE, hdr,
                      (size_t)hlen, &j->fj);
}

/* A job's state once something changed: done when every item is. */
static void fe_job_settle(struct fe *fe, struct fjob *j)
{
    if (j->state == JOBTAB_DONE || j->state == JOBTAB_CANCELLED) {
        fe_job_publish(fe, j);
        return;
    }
    if (ledger_complete(fejob_ledger(j->fj)) && j->writes == 0) {
        j->state = JOBTAB_DONE;
        j->finished_ms = fe_wall_ms();
        struct fejob_counts c;
        fejob_counts(j->fj, &c);
        log_info("frontend",
                 "event=job_done job=%llu items=%llu ok=%llu singular=%llu invalid=%llu "
                 "redelegated=%llu",
                 (unsigned long long)j->id, (unsigned long long)j->items, (unsigned long long)c.ok,
                 (unsigned long long)c.singular, (unsigned long long)c.invalid,
                 (unsigned long long)c.l.redelegated);
    } else {
        j->state = fe->head_up ? JOBTAB_RUNNING : JOBTAB_WAITING;
    }
    fe_job_publish(fe, j);
}

/* A slot of the job table: the first free, or the oldest finished job's. */
static uint32_t fe_slot(struct fe *fe)
{
    if (fe->slots_given < jobtab_capacity(fe->tab))
        return fe->slots_given++;
    for (struct fjob *j = fe->jobs; j; j = j->next)
        if ((j->state == JOBTAB_DONE || j->state == JOBTAB_CANCELLED) && j->slot != UINT32_MAX) {
            uint32_t s = j->slot;
            j->slot = UINT32_MAX; /* still served by the API, no longer shown */
            return s;
        }
    return UINT32_MAX; /* every slot holds a live job: this one is not shown */
}

static void fe_send_all(struct fe *fe, enum frame_type type, const cJSON *meta)
{
    for (size_t i = 0; i < fe->nmembers; i++)
        mbrs_send(fe->members[i].s, type, meta);
}

static struct fjob **fe_job_link(struct fe *fe, const struct fjob *j)
{
    struct fjob **pp = &fe->jobs;
    while (*pp && (*pp)->id < j->id)
        pp = &(*pp)->next;
    return pp;
}

/* Puts j in the list (once) with slot, and starts delegating it. */
static void fe_job_go(struct fe *fe, struct fjob *j, uint32_t slot)
{
    struct fjob **pp = fe_job_link(fe, j);
    if (*pp != j) {
        j->next = *pp;
        *pp = j;
    }
    j->slot = slot;
    fe_job_settle(fe, j);
    fe_pump(fe);
}

void fe_job_start(struct fe *fe, struct fjob *j)
{
    fe_job_go(fe, j, UINT32_MAX);
}

void fe_job_added(struct fe *fe, struct fjob *j)
{
    fe_job_go(fe, j, fe_slot(fe));
}

void fe_job_discard(struct fe *fe, struct fjob *j)
{
    struct chain_span s = {j->id, 0, 0};
    cJSON *meta = chain_span_json(&s);
    if (meta)
        fe_send_all(fe, FRAME_CANCEL, meta);
    cJSON_Delete(meta);
    struct fjob **pp = fe_job_link(fe, j);
    if (*pp == j)
        *pp = j->next;
    log_info("frontend", "event=job_discarded job=%llu", (unsigned long long)j->id);
    fe_job_free(j);
}

void fe_job_cancel(struct fe *fe, struct fjob *j)
{
    if (j->state == JOBTAB_DONE || j->state == JOBTAB_CANCELLED)
        return;
    j->state = JOBTAB_CANCELLED;
    j->finished_ms = fe_wall_ms();
    struct chain_span s = {j->id, 0, 0};
    cJSON *meta = chain_span_json(&s);
    if (meta)
        fe_send_all(fe, FRAME_CANCEL, meta);
    cJSON_Delete(meta);
    log_info("frontend", "event=job_cancelled job=%llu", (unsigned long long)j->id);
    fe_api_meta(fe, j, true); /* a restarted front-end keeps it cancelled */
    fe_job_publish(fe, j);
}

/* ---- delegation ---- */

/* Items of order n in one WORK. */
static uint32_t fe_batch(uint32_t n)
{
    uint64_t item = chain_items_len(1, n);
    uint64_t b = FE_BATCH_BYTES / item;
    return b < 1 ? 1 : b > FE_BATCH_MAX ? FE_BATCH_MAX : (uint32_t)b;
}

/* Items of order n the chain may hold at once. */
static uint64_t fe_window(const struct fe *fe, uint32_t n)
{
    uint64_t lanes = 0;
    for (size_t i = 0; i < fe->nmembers; i++)
        lanes += fe->members[i].threads;
    uint64_t by_bytes = FE_WINDOW_BYTES / chain_items_len(1, n);
    uint64_t w = lanes * FE_WINDOW_LANE < by_bytes ? lanes * FE_WINDOW_LANE : by_bytes;
    return w < 2 * lanes ? 2 * lanes : w;
}

/* Items of j on the chain: sent or accepted, not done. */
static uint64_t fe_inflight(const struct fjob *j)
{
    struct ledger_counts c;
    ledger_counts(fejob_ledger(j->fj), &c);
    return c.sent + c.accepted;
}

/* A WORK on its way: its items read from the input (a dio transfer on
 * the ring, so the loop never waits for the disk), then sent. To a head
 * with a lane they are read straight into room taken in its lane first,
 * and such WORKs wait in fe->ready, in the order their rooms were taken,
 * until they are read and all before them sent. */
struct fe_send {
    struct fe *fe;
    uint64_t job;
    struct chain_work w;
    struct dio_op rd;
    struct clink_room room; /* room.lane NULL when not read into a lane */
    bool read;              /* the items are in (or failed: failed) */
    bool failed;
    struct fe_send *next; /* fe->ready */
};

static void fe_send_free(struct fe_send *s)
{
    s->fe->sends--;
    if (s->room.lane)
        clink_room_put(&s->room);
    free(s->rd.range.raw);
    free(s);
}

static void fe_work_sent(void *arg, int err)
{
    struct fe_send *s = arg;
    struct fe *fe = s->fe;
    (void)err; /* a WORK lost with the link is sent again once its server is down */
    fe_send_free(s);
    fe_pump(fe);
}

/* Sends s->w with what s->rd read (nothing for a generated job). A WORK
 * that cannot leave (its job ended, the head went away) is dropped: its
 * items stay sent, and the stall watch sends them again if the job still
 * wants them. 0 (sent or dropped), or -EAGAIN: the head's lane is full, s
 * is still the caller's. */
static int fe_work_try(struct fe_send *s)
{
    struct fe *fe = s->fe;
    struct fjob *j = fe_job_find(fe, s->job);
    int rc = s->failed ? -EIO : -ENOTCONN;
    if (!s->failed && j && j->state == JOBTAB_RUNNING && fe->head_up)
        rc = s->room.lane ? clink_send_room(fe->head, &s->w, &s->room, fe_work_sent, s)
                          : clink_send_work(fe->head, &s->w, s->rd.range.data,
                                            chain_work_body_len(&s->w), fe_work_sent, s);
    if (rc == -EAGAIN && clink_has_lane(fe->head))
        return rc; /* fe->head is set: only a send answers -EAGAIN */
    if (rc < 0) {
        log_debug("frontend", "event=work_dropped job=%llu first=%llu err=\"%s\"",
                  (unsigned long long)s->job, (unsigned long long)s->w.first, strerror(-rc));
        fe_send_free(s);
    }
    return 0;
}

static void fe_ready_add(struct fe *fe, struct fe_send *s)
{
    struct fe_send **pp = &fe->ready;
    while (*pp)
        pp = &(*pp)->next;
    *pp = s;
}

/* As fe_work_try; what the lane has no room for waits in fe->ready, in
 * order, for fe_head_room. */
static void fe_work_go(struct fe_send *s)
{
    struct fe *fe = s->fe;
    if (fe->ready == NULL && fe_work_try(s) == 0)
        return;
    fe_ready_add(fe, s);
}

/* Sends what waits, in order, while the head takes it and up to a WORK
 * still being read into its room. */
static void fe_ready_flush(struct fe *fe)
{
    while (fe->ready && fe->ready->read) {
        struct fe_send *s = fe->ready;
        struct fe_send *next = s->next;
        if (fe_work_try(s) == -EAGAIN)
            return;
        fe->ready = next;
    }
}

/* The head's lane has room again. */
static void fe_head_room(void *arg, clink_t *l)
{
    struct fe *fe = arg;
    (void)l;
    fe_ready_flush(fe);
    fe_pump(fe);
}

static void fe_items_read(struct dio_op *op, int err)
{
    struct fe_send *s = container_of(op, struct fe_send, rd);
    struct fe *fe = s->fe;
    fe->ios--;
    if (err < 0 && !fe->mbr_stopped)
        log_error("frontend", "event=input_read_failed job=%llu first=%llu err=\"%s\"",
                  (unsigned long long)s->job, (unsigned long long)s->w.first,
                  err == -EIO ? "short file" : strerror(-err));
    s->read = true;
    s->failed = err < 0 || fe->mbr_stopped;
    if (s->room.lane) /* waiting in fe->ready since its room was taken */
        fe_ready_flush(fe);
    else if (s->failed)
        fe_send_free(s);
    else
        fe_work_go(s);
    if (fe->mbr_stopped)
        fe_maybe_stop(fe);
}

/* Starts reading s's items: into room in the head's lane when it has one
 * (-EAGAIN while it is full: on_room follows), else into a buffer. 0
 * (nothing to read for a generated job), or -errno. */
static int fe_send_read(struct fe *fe, const struct fjob *j, struct fe_send *s)
{
    uint64_t off = j->data_off + s->w.first * chain_items_len(1, j->n);
    uint64_t len = chain_work_body_len(&s->w);
    s->read = s->w.gen;
    if (s->w.gen)
        return 0;
    if (!clink_has_lane(fe->head))
        return dio_read_start(fe->ring, j->input, &s->rd, off, len, fe_items_read);
    int rc = clink_room(fe->head, len, &s->room);
    if (rc < 0)
        return rc;
    rc = dio_read_into_start(fe->ring, j->input, &s->rd, off, len, s->room.at, fe_items_read);
    if (rc < 0)
        clink_room_put(&s->room); /* given back with the next room sent */
    return rc;
}

/* One WORK of j, if its window and the head's streams allow: the head's
 * link is used by these sends alone, so fewer than FRAME_STREAMS_MAX under
 * way leaves it a stream by the time the items are read. 1 started, 0
 * nothing to send now. */
static int fe_send_one(struct fe *fe, struct fjob *j)
{
    uint64_t first;
    uint32_t count;
    if (fe->sends >= FRAME_STREAMS_MAX || fe_inflight(j) >= fe_window(fe, j->n) ||
        ledger_next_unsent(fejob_ledger(j->fj), fe_batch(j->n), &first, &count) != 1 ||
        first >= j->avail)
        return 0;
    if (count > j->avail - first) /* the rest is still being uploaded */
        count = (uint32_t)(j->avail - first);
    struct fe_send *s = calloc(1, sizeof *s);
    if (s == NULL)
        return 0;
    *s = (struct fe_send){.fe = fe,
                          .job = j->id,
                          .w = {.job = j->id,
                                .first = first,
                                .count = count,
                                .n = j->n,
                                .residual = j->residuals,
                                .output = j->output != JOB_OUT_NONE,
                                .gen = j->source == JOB_GENERATE,
                                .seed = j->seed}};
    snprintf(s->w.kind, sizeof s->w.kind, "%s", j->kind);
    if (fe_send_read(fe, j, s) < 0) {
        free(s);
        return 0;
    }
    fe->sends++;
    fe->ios += !s->w.gen;
    ledger_sent(fejob_ledger(j->fj), first, count);
    j->moved_ms = ring_now_ms();
    if (s->w.gen)
        fe_work_go(s);
    else if (s->room.lane)
        fe_ready_add(fe, s);
    return 1;
}

void fe_pump(struct fe *fe)
{
    if (fe->pumping || !fe->head_up)
        return;
    fe->pumping = true;
    unsigned prios = 0; /* the priorities of the jobs to feed: a pass for each */
    for (struct fjob *j = fe->jobs; j; j = j->next)
        if (j->state == JOBTAB_RUNNING || j->state == JOBTAB_WAITING)
            prios |= 1u << j->priority;
    for (int prio = 9; prio >= 0; prio--) /* higher priorities first, then oldest first */
        for (struct fjob *j = fe->jobs; (prios & (1u << prio)) && j; j = j->next) {
            if ((j->state != JOBTAB_RUNNING && j->state != JOBTAB_WAITING) ||
                j->priority != (uint32_t)prio)
                continue;
            if (j->state == JOBTAB_WAITING)
                fe_job_settle(fe, j);
            while (fe->head_up && fe_send_one(fe, j) == 1)
                ;
        }
    fe->pumping = false;
}

/* ---- the stall watch ---- */

/*
 * A WORK can be lost without any server going down: a link that closes
 * before its peer took the body (a successor that had not yet heard it
 * was ours, a relink). Its items would stay sent for ever, so a job that
 * has items sent and has heard nothing for FE_STALL_MS sends them again;
 * the ledger counts whichever answer comes first.
 */
static void fe_watch(struct ring_timer *t)
{
    struct fe *fe = container_of(t, struct fe, watch);
    uint64_t now = ring_now_ms();
    uint64_t wall = fe_wall_ms();
    for (struct fjob *j = fe->jobs; j; j = j->next) {
        if ((j->state == JOBTAB_RUNNING || j->state == JOBTAB_WAITING) && j->deadline_s > 0 &&
            (double)(wall - j->submitted_ms) > j->deadline_s * 1000) {
            log_info("frontend", "event=deadline job=%llu deadline_s=%g", (unsigned long long)j->id,
                     j->deadline_s);
            fe_job_cancel(fe, j);
            continue;
        }
        if (j->state != JOBTAB_RUNNING || now - j->moved_ms < FE_STALL_MS)
            continue;
        long back = ledger_unsend(fejob_ledger(j->fj));
        if (back > 0)
            log_warn("frontend", "event=stalled job=%llu resent=%ld quiet_ms=%llu",
                     (unsigned long long)j->id, back, (unsigned long long)(now - j->moved_ms));
        j->moved_ms = now;
    }
    fe_reweigh(fe);
    fe_chain_publish(fe); /* the servers' loads, as their heartbeats said */
    fe_pump(fe);
    ring_timer_start(fe->ring, &fe->watch, FE_WATCH_MS, fe_watch);
}

/* ---- the head ---- */

static void fe_dial_head(struct fe *fe);

static void fe_head_up(void *arg, clink_t *l)
{
    struct fe *fe = arg;
    if (l != fe->head)
        return;
    fe->head_up = true;
    log_info("frontend", "event=head_up head=%s", fe->head_name);
    fe_ready_flush(fe);
    fe_pump(fe);
}

static void fe_redial(struct ring_timer *t)
{
    fe_dial_head(container_of(t, struct fe, redial));
}

static void fe_head_down(void *arg, clink_t *l, int reason)
{
    struct fe *fe = arg;
    if (l != fe->head)
        return;
    fe->head = NULL;
    fe->head_up = false;
    fe_ready_flush(fe); /* with no head, every WORK waiting is dropped */
    log_info("frontend", "event=head_down head=%s reason=\"%s\"", fe->head_name,
             reason ? strerror(reason < 0 ? -reason : reason) : "closed");
    if (!fe->stopping && fe->head_name[0]) /* still the head: it may not know us yet */
        ring_timer_start(fe->ring, &fe->redial, FE_REDIAL_MS, fe_redial);
}

static void fe_dial_head(struct fe *fe)
{
    const struct corder_server *h = corder_head(fe->chain);
    if (h == NULL || fe->head)
        return;
    struct net_addr a;
    int rc = net_addr_parse_err(h->addr, NET_DIAL, &a, NULL, 0);
    struct clink_handlers hh = {
        .on_up = fe_head_up, .on_down = fe_head_down, .on_room = fe_head_room, .arg = fe};
    if (rc == 0)
        rc = clink_dial(&fe->head, fe->ring, fe->cli_tls, &a, h->name, &hh);
    const struct fmember *m = rc == 0 ? fe_member(fe, h->name) : NULL;
    if (m && fe_same_host(fe, m->host)) {
        int lr = clink_use_lane(fe->head, FE_LANE_BYTES);
        log_info("frontend", "event=head_edge head=%s edge=%s err=\"%s\"", h->name,
                 lr == 0 ? "shm" : "tls", lr == 0 ? "" : strerror(-lr));
    }
    if (rc < 0) {
        log_warn("frontend", "event=head_dial_failed head=%s addr=%s err=\"%s\"", h->name, h->addr,
                 strerror(-rc));
        ring_timer_start(fe->ring, &fe->redial, FE_REDIAL_MS, fe_redial);
    }
}

/* ---- the chain ---- */

static struct fmember *fe_member(struct fe *fe, const char *name)
{
    for (size_t i = 0; i < fe->nmembers; i++)
        if (strcmp(fe->members[i].name, name) == 0)
            return &fe->members[i];
    return NULL;
}

static void fe_chain_publish(struct fe *fe)
{
    struct jobtab_server rows[CORDER_SERVERS];
    size_t n = corder_count(fe->chain);
    for (size_t i = 0; i < n; i++) {
        const struct corder_server *s = corder_at(fe->chain, i);
        const struct fmember *m = fe_member(fe, s->name);
        const struct reg_server *r = reg_find(&fe->reg, s->name); /* its last heartbeat */
        rows[i] = (struct jobtab_server){
            .weight = s->weight, .capacity = m ? m->threads : 0, .active = r ? r->load.active : 0};
        snprintf(rows[i].name, sizeof rows[i].name, "%s", s->name);
        snprintf(rows[i].addr, sizeof rows[i].addr, "%s", s->addr);
    }
    jobtab_chain_put(fe->tab, rows, n);
}

/* Tells every server whose link changed, and follows a new head. */
static void fe_relink(struct fe *fe)
{
    struct corder_link links[CORDER_SERVERS];
    size_t n = corder_links(fe->chain, links, CORDER_SERVERS);
    for (size_t i = 0; i < n; i++) {
        struct fmember *m = fe_member(fe, links[i].name);
        const struct fmember *next = fe_member(fe, links[i].next);
        struct chain_next cn = {links[i].epoch,        links[i].prev,   links[i].next,
                                links[i].next_addr,    links[i].behind, links[i].weight,
                                next ? next->host : ""};
        cJSON *meta = chain_next_json(&cn);
        if (m && meta)
            mbrs_send(m->s, FRAME_CHAIN_SET_NEXT, meta);
        cJSON_Delete(meta);
    }
    const struct corder_server *h = corder_head(fe->chain);
    if (strcmp(h ? h->name : "", fe->head_name) != 0) {
        snprintf(fe->head_name, sizeof fe->head_name, "%s", h ? h->name : "");
        ring_timer_stop(fe->ring, &fe->redial);
        if (fe->head) {
            clink_t *old = fe->head;
            fe->head = NULL;
            fe->head_up = false;
            clink_close(old);
        }
        fe_dial_head(fe);
    }
    fe_chain_publish(fe);
}

static void fe_on_join(void *arg, mbrs_session_t *s, const struct reg_hello *h)
{
    struct fe *fe = arg;
    if (fe->nmembers == REG_SERVERS)
        return;
    struct fmember *m = &fe->members[fe->nmembers++];
    *m = (struct fmember){.s = s,
                          .sid = mbrs_session_id(s),
                          .weight = h->weight ? h->weight : 1,
                          .threads = h->capacity ? h->capacity : 1};
    snprintf(m->name, sizeof m->name, "%s", mbrs_session_name(s));
    snprintf(m->addr, sizeof m->addr, "%s", h->addr);
    snprintf(m->host, sizeof m->host, "%s", h->host ? h->host : "");
    mbrs_session_set_udata(s, m);
    int rc = corder_add(fe->chain, m->name, m->addr, m->weight);
    if (rc < 0)
        log_warn("frontend", "event=chain_add_failed name=%s err=\"%s\"", m->name, strerror(-rc));
    fe_relink(fe);
}

/* The server takes nothing new: out of the chain (its session lives on
 * until BYE, and what it accepted still counts). */
static void fe_on_drain(void *arg, mbrs_session_t *s)
{
    struct fe *fe = arg;
    if (corder_remove(fe->chain, mbrs_session_name(s)) == 0)
        fe_relink(fe);
}

static void fe_on_gone(void *arg, mbrs_session_t *s)
{
    struct fe *fe = arg;
    struct fmember *m = mbrs_session_udata(s);
    if (m == NULL)
        return;
    uint64_t sid = m->sid;
    log_info("frontend", "event=server_gone name=%s session=%llu", m->name,
             (unsigned long long)sid);
    corder_remove(fe->chain, m->name);
    if (m->lane) {
        m->lane->s = NULL;
        fe_lane_unref(m->lane);
    }
    *m = fe->members[--fe->nmembers]; /* the last one moves into its place */
    if (m != &fe->members[fe->nmembers])
        mbrs_session_set_udata(m->s, m);
    for (struct fjob *j = fe->jobs; j; j = j->next) {
        if (j->state != JOBTAB_RUNNING && j->state != JOBTAB_WAITING)
            continue;
        long back = ledger_server_down(fejob_ledger(j->fj), sid);
        if (back > 0)
            log_info("frontend", "event=redelegate job=%llu items=%ld", (unsigned long long)j->id,
                     back);
        fe_job_settle(fe, j);
    }
    fe_relink(fe);
    fe_pump(fe);
}

/* ---- what servers send ---- */

/* A RESULT, its inverses streaming in when it has a body. */
struct fe_result {
    struct fe *fe;
    struct chain_result r;
    mbrs_session_t *s;
    uint32_t stream;
    uint8_t *body;        /* streamed in, or NULL … */
    const uint8_t *data;  /* … the matrices: body, or a region of lane */
    struct fe_lane *lane; /* a reference, when they are in the server's */
    uint64_t len, got;
    struct fe_result *next; /* fe->results */
    /* a RESULT answers part of one WORK, so FE_BATCH_MAX items at most */
    uint8_t status[FE_BATCH_MAX];
    double resid[FE_BATCH_MAX];
    uint64_t sum[FE_BATCH_MAX];
};

static void fe_lane_unref(struct fe_lane *ln)
{
    if (--ln->refs > 0)
        return;
    shmlane_r_free(ln->r);
    free(ln);
}

/* A RESULT is done with: the room its matrices took in their lane goes
 * back to the server (as far as every earlier RESULT's has). */
static void fe_result_free(struct fe_result *fr)
{
    struct fe_lane *ln = fr->lane;
    int64_t upto = ln ? shmlane_r_done(ln->r, fr->r.shm.pos) : 0;
    if (upto > 0 && ln->s) {
        struct chain_release rel = {shmlane_r_name(ln->r), (uint64_t)upto};
        cJSON *meta = chain_release_json(&rel);
        if (meta)
            mbrs_send(ln->s, FRAME_RELEASED, meta);
        cJSON_Delete(meta);
    }
    if (ln)
        fe_lane_unref(ln);
    free(fr->body);
    free(fr);
}

/* The matrices of fr, in server s's lane: fr takes their region. 0, or
 * -EPROTO after refusing s. */
static int fe_result_lane(struct fe_result *fr, mbrs_session_t *s)
{
    struct fmember *m = mbrs_session_udata(s);
    char why[200];
    if (m == NULL)
        return -EPROTO;
    if (m->lane && strcmp(shmlane_r_name(m->lane->r), fr->r.shm.lane) != 0) {
        mbrs_refuse(s, "shm", "RESULT: a second lane on one session");
        return -EPROTO;
    }
    if (m->lane == NULL) {
        struct fe_lane *ln = calloc(1, sizeof *ln);
        int rc = ln ? shmlane_r_open(&ln->r, fr->r.shm.lane, fr->r.shm.size, why, sizeof why)
                    : (snprintf(why, sizeof why, "out of memory"), -ENOMEM);
        if (rc < 0) {
            free(ln);
            log_warn("frontend", "event=lane_refused name=%s why=\"%s\"", m->name, why);
            mbrs_refuse(s, "shm", "%s", why);
            return -EPROTO;
        }
        ln->s = s;
        ln->refs = 1;
        m->lane = ln;
    }
    uint64_t len = chain_items_len(fr->r.count, fr->r.n);
    fr->data = shmlane_r_take(m->lane->r, fr->r.shm.pos, len);
    if (fr->data == NULL) {
        mbrs_refuse(s, "shm", "RESULT: %llu bytes at %llu are not a region of the lane",
                    (unsigned long long)len, (unsigned long long)fr->r.shm.pos);
        return -EPROTO;
    }
    fr->lane = m->lane;
    fr->lane->refs++;
    return 0;
}

/* Checks a RESULT against its job: 1 to count, 0 to drop (late), or
 * -EPROTO after refusing the server. */
static int fe_result_check(struct fe *fe, mbrs_session_t *s, const struct chain_result *r,
                           bool body)
{
    struct fjob *j = fe_job_find(fe, r->job);
    if (j == NULL || (j->state != JOBTAB_RUNNING && j->state != JOBTAB_WAITING))
        return 0; /* late: nothing to count (not the server's fault) */
    if (r->n != j->n || r->first + r->count > j->items || r->count == 0 ||
        body != (j->output != JOB_OUT_NONE)) {
        mbrs_refuse(s, "schema", "RESULT for job %llu does not fit it", (unsigned long long)r->job);
        return -EPROTO;
    }
    return 1;
}

/* The server's speed while it computes, from each RESULT's batch time:
 * GFLOP/s, the unit of the calibrated weights, so one job's n or another's
 * weigh the same. A moving average over the last few batches. */
static void fe_measure(const struct fe_result *fr)
{
    struct fmember *m = mbrs_session_udata(fr->s);
    if (m == NULL || fr->r.ms < FE_MEASURE_MIN_MS)
        return;
    double n = fr->r.n, gf = 2.0 * n * n * n * fr->r.count / (fr->r.ms * 1e6);
    m->gflops = m->samples++ ? m->gflops + FE_MEASURE_ALPHA * (gf - m->gflops) : gf;
}

/* The chain's weights follow the measured speeds once they are known and
 * drift past FE_REWEIGH from what the servers were told: each share then
 * follows what its server really does on this machine, not a calibration
 * taken while the others were starting. */
static void fe_reweigh(struct fe *fe)
{
    bool changed = false;
    for (size_t i = 0; i < fe->nmembers; i++) {
        struct fmember *m = &fe->members[i];
        uint32_t w = cshare_weight(m->gflops);
        if (m->samples < FE_MEASURE_SAMPLES ||
            fabs((double)w - m->weight) <= FE_REWEIGH * (double)m->weight)
            continue;
        log_info("frontend", "event=reweigh name=%s weight=%u measured=%u", m->name, m->weight, w);
        m->weight = w;
        changed = corder_set_weight(fe->chain, m->name, w) == 0 || changed;
    }
    if (changed)
        fe_relink(fe);
}

/* fr's items are on disk (or could not be written). */
static void fe_stored(void *arg, int err)
{
    struct fe_result *fr = arg;
    struct fe *fe = fr->fe;
    struct fjob *j = fe_job_find(fe, fr->r.job); /* it may have gone meanwhile */
    if (err < 0)
        log_error("frontend", "event=result_failed job=%llu first=%llu err=\"%s\"",
                  (unsigned long long)fr->r.job, (unsigned long long)fr->r.first, strerror(-err));
    if (j) {
        j->writes--;
        fe_job_settle(fe, j);
    }
    fe_result_free(fr);
    fe->ios--;
    fe_maybe_stop(fe);
}

/* Counts fr and stores what counted; fr is the callee's. */
static void fe_count(struct fe *fe, struct fe_result *fr)
{
    struct fjob *j = fe_job_find(fe, fr->r.job); /* it may have ended meanwhile */
    if (j == NULL || (j->state != JOBTAB_RUNNING && j->state != JOBTAB_WAITING)) {
        fe_result_free(fr);
        return;
    }
    for (uint32_t i = 0; i < fr->r.count; i++)
        fr->status[i] = fr->status[i] <= GJ_INVALID ? (uint8_t)(fr->status[i] + FEJOB_OK)
                                                    : (uint8_t)FEJOB_INVALID;
    struct fejob_result res = {.first = fr->r.first,
                               .count = fr->r.count,
                               .status = fr->status,
                               .resid = fr->r.has_resid ? fr->resid : NULL,
                               .ms = fr->r.ms,
                               .data = (const double *)fr->data,
                               .sid = mbrs_session_id(fr->s),
                               .server = mbrs_session_name(fr->s),
                               .sum = fr->r.has_sum ? fr->sum : NULL};
    j->moved_ms = ring_now_ms();
    fe_measure(fr);
    long rc = fejob_result(j->fj, &res, fe->ring, fe_stored, fr);
    if (rc < 0)
        log_error("frontend", "event=result_failed job=%llu err=\"%s\"", (unsigned long long)j->id,
                  strerror((int)-rc));
    if (rc > 0) {
        j->writes++;
        fe->ios++;
    } else {
        fe_result_free(fr);
    }
    fe_job_settle(fe, j);
    fe_pump(fe);
}

static int fe_on_result(struct fe *fe, mbrs_session_t *s, const cJSON *meta, uint32_t stream)
{
    char why[160];
    struct fe_result *fr = calloc(1, sizeof *fr);
    if (fr == NULL)
        return 0;
    fr->r.status = fr->status;
    fr->r.resid = fr->resid;
    fr->r.sum = fr->sum;
    fr->fe = fe;
    fr->s = s;
    fr->stream = stream;
    if (chain_result_parse(meta, &fr->r, FE_BATCH_MAX, why, sizeof why) < 0) {
        fe_result_free(fr);
        mbrs_refuse(s, "schema", "RESULT: %s", why);
        return -EPROTO;
    }
    if (fr->r.shm.lane && (stream != 0 || fe_result_lane(fr, s) < 0)) {
        if (stream != 0)
            mbrs_refuse(s, "shm", "RESULT: matrices both in a lane and in the body");
        fe_result_free(fr);
        return -EPROTO;
    }
    int rc = fe_result_check(fe, s, &fr->r, stream != 0 || fr->data != NULL);
    if (rc <= 0 || stream == 0) {
        if (rc == 1)
            fe_count(fe, fr);
        else
            fe_result_free(fr);
        return rc < 0 ? rc : 0; /* a late RESULT's body is dropped as it comes */
    }
    fr->len = chain_items_len(fr->r.count, fr->r.n);
    if (fr->len > FE_RESULT_MAX || (fr->data = fr->body = dio_alloc(fr->len)) == NULL) {
        mbrs_refuse(s, "body_len", "RESULT body of %llu bytes", (unsigned long long)fr->len);
        fe_result_free(fr);
        return -EPROTO;
    }
    fr->next = fe->results;
    fe->results = fr;
    return 0;
}

static struct fe_result **fe_result_of(struct fe *fe, mbrs_session_t *s, uint32_t stream)
{
    struct fe_result **pp = &fe->results;
    while (*pp && ((*pp)->s != s || (*pp)->stream != stream))
        pp = &(*pp)->next;
    return pp;
}

static int fe_on_body(void *arg, mbrs_session_t *s, uint32_t stream, const uint8_t *p, size_t len)
{
    struct fe_result *fr = *fe_result_of(arg, s, stream);
    if (fr == NULL)
        return 0;
    if (len > fr->len - fr->got) {
        mbrs_refuse(s, "body_len", "RESULT body longer than its items");
        return -EPROTO;
    }
    if (p != fr->body + fr->got) /* else read there (mbrs_body_into) */
        memcpy(fr->body + fr->got, p, len);
    fr->got += len;
    if (fr->got < fr->len) /* the rest of the chunk goes straight in */
        (void)mbrs_body_into(s, stream, fr->body + fr->got, fr->len - fr->got);
    return 0;
}

static void fe_on_end(void *arg, mbrs_session_t *s, uint32_t stream, int err)
{
    struct fe *fe = arg;
    struct fe_result **pp = fe_result_of(fe, s, stream), *fr = *pp;
    if (fr == NULL)
        return;
    *pp = fr->next;
    if (err == 0 && fr->got == fr->len)
        fe_count(fe, fr);
    else
        fe_result_free(fr);
}

static int fe_on_frame(void *arg, mbrs_session_t *s, const struct frame_hdr *h, const cJSON *meta,
                       uint32_t stream)
{
    struct fe *fe = arg;
    char why[160];
    if (h->type == FRAME_RESULT)
        return fe_on_result(fe, s, meta, stream);
    if (h->type != FRAME_ACCEPTED) {
        mbrs_refuse(s, "unexpected", "%s from a compute server", frame_type_str(h->type));
        return -EPROTO;
    }
    struct chain_span sp;
    if (chain_span_parse(meta, &sp, why, sizeof why) < 0) {
        mbrs_refuse(s, "schema", "ACCEPTED: %s", why);
        return -EPROTO;
    }
    struct fjob *j = fe_job_find(fe, sp.job);
    if (j)
        j->moved_ms = ring_now_ms();
    if (j && j->state == JOBTAB_RUNNING &&
        ledger_accepted(fejob_ledger(j->fj), sp.first, sp.count, mbrs_session_id(s)) == -ERANGE) {
        mbrs_refuse(s, "schema", "ACCEPTED past job %llu's items", (unsigned long long)sp.job);
        return -EPROTO;
    }
    return 0;
}
/* ---- the daemon ---- */

static struct reg_table *fe_lock(void *arg)
{
    return &((struct fe *)arg)->reg;
}

static void fe_unlock(void *arg)
{
    (void)arg; /* one thread */
}

static void fe_maybe_stop(struct fe *fe)
{
    if (fe->mbr_stopped && fe->ios == 0)
        ring_stop(fe->ring);
}

static void fe_mbr_stopped(void *arg)
{
    struct fe *fe = arg;
    fe->mbr_stopped = true;
    fe_maybe_stop(fe); /* once the spool's transfers under way have ended */
}

static void fe_signal(void *arg, int signo)
{
    struct fe *fe = arg;
    if (fe->stopping) {
        ring_stop(fe->ring);
        return;
    }
    fe->stopping = true;
    log_info("frontend", "event=stopping signal=%s", strsignal(signo));
    ring_timer_stop(fe->ring, &fe->redial);
    ring_timer_stop(fe->ring, &fe->watch);
    if (fe->head)
        clink_close(fe->head);
    fe->head = NULL;
    fe->head_up = false;
    if (fe->api)
        hapi_stop(fe->api, NULL, NULL);
    fe->api = NULL;
    mbrs_stop(fe->mbr, fe_mbr_stopped, fe);
}

/* TLS contexts: the head's client, the control server, the API. */
static int fe_tls(struct fe *fe)
{
    const struct fe_opts *o = fe->o;
    char err[512];
    if (tls_ctx_new(&fe->cli_tls, TLS_CLIENT, o->pki, o->name, false, err, sizeof err) < 0 ||
        tls_ctx_new(&fe->ctl_tls, TLS_SERVER, o->pki, o->name, true, err, sizeof err) < 0 ||
        (!o->insecure_http &&
         tls_ctx_new(&fe->http_tls, TLS_SERVER, o->pki, o->name, false, err, sizeof err) < 0)) {
        log_error("frontend", "event=tls_failed err=\"%s\"", err);
        return -EPROTO;
    }
    return 0;
}

static int fe_users(struct fe *fe)
{
    char err[512];
    int rc = fe->o->users ? users_load(&fe->users, fe->o->users, err, sizeof err)
                          : users_new(&fe->users);
    if (rc < 0)
        log_error("frontend", "event=users_failed err=\"%s\"", fe->o->users ? err : strerror(-rc));
    return rc;
}

/* WELCOME names this host, so that a server on it sends its RESULTs
 * through a lane (unless --edge tls). */
static int fe_welcome(void *arg, const char *name, cJSON *meta)
{
    struct fe *fe = arg;
    (void)name;
    if (fe->o->edge_tls || shmbuf_host_id()[0] == '\0')
        return 0;
    return cJSON_AddStringToObject(meta, "host", shmbuf_host_id()) ? 0 : -ENOMEM;
}

static int fe_start_members(struct fe *fe, const struct net_addr *control)
{
    struct mbrs_opts mo = {.ring = fe->ring,
                           .tls = fe->ctl_tls,
                           .addr = *control,
                           .role = PKI_ROLE_COMPUTE,
                           .heartbeat_ms = fe->o->heartbeat_ms,
                           .dead_after_ms = fe->o->dead_after_ms,
                           .lock = fe_lock,
                           .unlock = fe_unlock,
                           .on_frame = fe_on_frame,
                           .on_body = fe_on_body,
                           .on_end = fe_on_end,
                           .welcome = fe_welcome,
                           .on_join = fe_on_join,
                           .on_drain = fe_on_drain,
                           .on_gone = fe_on_gone,
                           .body_max = FE_RESULT_MAX,
                           .arg = fe};
    return mbrs_start(&fe->mbr, &mo);
}

static int fe_start(struct fe *fe)
{
    const struct fe_opts *o = fe->o;
    struct net_addr control;
    char err[256];
    int rc;
    if (net_addr_parse_err(o->control, NET_LISTEN, &control, err, sizeof err) < 0) {
        log_error("frontend", "event=bad_option option=--control value=\"%s\" err=\"%s\"",
                  o->control, err);
        return -EINVAL;
    }
    if ((rc = fe_tls(fe)) < 0 || (rc = fe_users(fe)) < 0)
        return rc;
    if ((rc = spool_open(o->data, &fe->spool)) < 0) {
        log_error("frontend", "event=spool_failed data=%s err=\"%s\"", o->data, strerror(-rc));
        return rc;
    }
    if ((rc = jobtab_own(o->state, FE_JOB_SLOTS, &fe->tab)) < 0) {
        log_error("frontend", "event=state_failed state=%s err=\"%s\"", o->state, strerror(-rc));
        return rc;
    }
    if ((fe->chain = corder_new(o->name)) == NULL || (rc = pool_create(&fe->pool, 0, 256)) < 0)
        return fe->chain ? rc : -ENOMEM;
    reg_restart(&fe->reg, ring_now_ms());
    if ((rc = fe_api_recover(fe)) < 0 || (rc = fe_start_members(fe, &control)) < 0 ||
        (rc = fe_api_start(fe)) < 0)
        return rc;
    ring_timer_start(fe->ring, &fe->watch, FE_WATCH_MS, fe_watch);
    char a[64];
    log_info("frontend", "event=started name=%s control=%s http=%s tls=%d jobs=%llu", o->name,
             net_addr_str(mbrs_addr(fe->mbr), a, sizeof a), o->http, !o->insecure_http,
             (unsigned long long)(fe->next_id - 1));
    return 0;
}

int fe_run(const struct fe_opts *o)
{
    if (!mbr_name_valid(o->name)) {
        log_error("frontend", "event=bad_option err=\"--name takes 1-63 of A-Z a-z 0-9 . _ -\"");
        return 2;
    }
    struct fe *fe = calloc(1, sizeof *fe);
    if (fe == NULL)
        return 1;
    fe->o = o;
    fe->next_id = 1;
    int status = 1;
    long nofile = proc_raise_nofile();
    if (nofile < 0)
        log_warn("frontend", "event=nofile_failed err=\"%s\"", strerror((int)-nofile));
    if (proc_keep_freed(FE_KEEP_FREED) < 0)
        log_warn("frontend", "event=malloc_tuning_refused");
    shmbuf_sweep(); /* lanes that dead processes left */
    int rc = ring_create(&fe->ring, 256);
    if (rc < 0) {
        log_error("frontend", "event=io_uring_unavailable err=\"%s\"", strerror(-rc));
        goto out;
    }
    if ((rc = ring_watch_signals(fe->ring, fe_signal, fe)) < 0 || (rc = fe_start(fe)) < 0) {
        log_error("frontend", "event=start_failed err=\"%s\"", strerror(-rc));
        goto out;
    }
    ring_run(fe->ring);
    status = 0;
    log_info("frontend", "event=stopped name=%s", o->name);
out:
    pool_destroy(fe->pool);
    if (fe->mbr)
        mbrs_free(fe->mbr);
    ring_destroy(fe->ring);
    for (size_t i = 0; i < fe->nmembers; i++)
        if (fe->members[i].lane)
            fe->members[i].lane->s = NULL; /* the sessions went with mbrs_free */
    while (fe->ready) {
        struct fe_send *s = fe->ready;
        fe->ready = s->next;
        free(s->rd.range.raw);
        free(s);
    }
    while (fe->jobs) {
        struct fjob *j = fe->jobs;
        fe->jobs = j->next;
        fe_job_free(j);
    }
    while (fe->results) {
        struct fe_result *fr = fe->results;
        fe->results = fr->next;
        fe_result_free(fr);
    }
    for (size_t i = 0; i < fe->nmembers; i++)
        if (fe->members[i].lane)
            fe_lane_unref(fe->members[i].lane);
    corder_free(fe->chain);
    jobtab_close(fe->tab);
    spool_close(fe->spool);
    users_free(fe->users);
    tls_ctx_free(fe->cli_tls);
    tls_ctx_free(fe->ctl_tls);
    tls_ctx_free(fe->http_tls);
    free(fe);
    return status;
}
