/*
 * fsxfer — transfer reports, sent at once or kept in order while the
 * balancer is away (see fsxfer.h).
 *
 * A report is kept as the meta it will carry (built when the event
 * happened, so a late delivery says what was true then). A leg points at
 * its PROGRESS while one waits, which is how a newer PROGRESS replaces it
 * and an END removes it without a search.
 */
#include "convoy/fsxfer.h"

#include "convoy/log.h"
#include "convoy/ring.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

struct ev {
    enum frame_type type;
    cJSON *meta;
    struct fsxfer_leg *leg; /* PROGRESS: the leg whose report this is */
    struct ev *prev, *next;
};

struct fsxfer_leg {
    uint64_t id;
    uint64_t last_ms;    /* ring_now_ms() of the last report */
    uint64_t last_bytes; /* bytes in that report */
    struct ev *waiting;  /* its PROGRESS in the queue, or NULL */
    struct fsxfer_leg *prev, *next;
};

struct fsxfer {
    fsxfer_send_fn send;
    void *arg;
    uint32_t keep_max;
    struct ev *head, *tail;
    uint32_t queued, nprogress, nstart;
    uint64_t dropped;
    struct fsxfer_leg *legs; /* running */
    uint32_t active;
};

int fsxfer_new(fsxfer_t **out, fsxfer_send_fn send, void *arg, uint32_t keep_max)
{
    fsxfer_t *x = calloc(1, sizeof *x);
    if (x == NULL)
        return -ENOMEM;
    x->send = send;
    x->arg = arg;
    x->keep_max = keep_max ? keep_max : FSXFER_KEEP_MAX;
    *out = x;
    return 0;
}

static void ev_unlink(fsxfer_t *x, struct ev *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        x->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        x->tail = e->prev;
    x->queued--;
    x->nprogress -= e->type == FRAME_XFER_PROGRESS;
    x->nstart -= e->type == FRAME_XFER_START;
    if (e->leg)
        e->leg->waiting = NULL;
}

static void ev_free(struct ev *e)
{
    cJSON_Delete(e->meta);
    free(e);
}

/* The oldest report of type, or NULL. */
static struct ev *oldest(fsxfer_t *x, enum frame_type type)
{
    for (struct ev *e = x->head; e; e = e->next)
        if (e->type == type)
            return e;
    return NULL;
}

/* Drops one report to make room: a PROGRESS, else a START, else an END. */
static void make_room(fsxfer_t *x)
{
    struct ev *e = x->nprogress ? oldest(x, FRAME_XFER_PROGRESS)
                   : x->nstart  ? oldest(x, FRAME_XFER_START)
                                : x->head;
    if (e->type == FRAME_XFER_END)
        log_warn_limited("fsxfer", "event=end_dropped kept=%u err=\"queue full\"", x->queued);
    ev_unlink(x, e);
    ev_free(e);
    x->dropped++;
}

/* Sends meta now, or keeps it; takes meta. */
static void report(fsxfer_t *x, enum frame_type type, cJSON *meta, struct fsxfer_leg *leg)
{
    if (meta == NULL) {
        x->dropped++;
        log_warn_limited("fsxfer", "event=report_dropped type=%s err=\"no memory\"",
                         frame_type_str(type));
        return;
    }
    int rc = x->head ? -ENOTCONN : x->send(x->arg, type, meta);
    if (rc == 0 || rc != -ENOTCONN) {
        if (rc < 0) {
            x->dropped++;
            log_warn_limited("fsxfer", "event=report_dropped type=%s err=%d", frame_type_str(type),
                             rc);
        }
        cJSON_Delete(meta);
        return;
    }
    if (leg && leg->waiting) { /* a newer PROGRESS of the same leg */
        cJSON_Delete(leg->waiting->meta);
        leg->waiting->meta = meta;
        return;
    }
    struct ev *e = calloc(1, sizeof *e);
    if (e == NULL) {
        x->dropped++;
        cJSON_Delete(meta);
        return;
    }
    if (x->queued >= x->keep_max)
        make_room(x);
    *e = (struct ev){.type = type, .meta = meta, .leg = leg, .prev = x->tail};
    *(x->tail ? &x->tail->next : &x->head) = e;
    x->tail = e;
    x->queued++;
    x->nprogress += type == FRAME_XFER_PROGRESS;
    x->nstart += type == FRAME_XFER_START;
    if (leg)
        leg->waiting = e;
}

fsxfer_leg_t *fsxfer_start(fsxfer_t *x, const struct xfer_msg *m)
{
    struct fsxfer_leg *leg = calloc(1, sizeof *leg);
    if (leg == NULL)
        return NULL;
    struct xfer_msg s = *m;
    s.type = FRAME_XFER_START;
    leg->id = m->id;
    leg->last_ms = ring_now_ms();
    leg->next = x->legs;
    if (x->legs)
        x->legs->prev = leg;
    x->legs = leg;
    x->active++;
    report(x, FRAME_XFER_START, xfer_msg_json(&s), NULL);
    return leg;
}

void fsxfer_progress(fsxfer_t *x, fsxfer_leg_t *leg, uint64_t bytes, uint64_t now_ms)
{
    if (now_ms < leg->last_ms + FSXFER_PROGRESS_MS || bytes == leg->last_bytes)
        return;
    struct xfer_msg m = {.type = FRAME_XFER_PROGRESS, .id = leg->id, .bytes = bytes};
    leg->last_ms = now_ms;
    leg->last_bytes = bytes;
    report(x, FRAME_XFER_PROGRESS, xfer_msg_json(&m), leg);
}

void fsxfer_end(fsxfer_t *x, fsxfer_leg_t *leg, uint64_t bytes, enum xfer_outcome outcome)
{
    struct xfer_msg m = {.type = FRAME_XFER_END, .id = leg->id, .bytes = bytes, .outcome = outcome};
    if (leg->waiting) { /* the END says more */
        struct ev *e = leg->waiting;
        ev_unlink(x, e);
        ev_free(e);
    }
    if (leg->prev)
        leg->prev->next = leg->next;
    else
        x->legs = leg->next;
    if (leg->next)
        leg->next->prev = leg->prev;
    x->active--;
    free(leg);
    report(x, FRAME_XFER_END, xfer_msg_json(&m), NULL);
}

void fsxfer_flush(fsxfer_t *x)
{
    while (x->head) {
        struct ev *e = x->head;
        int rc = x->send(x->arg, e->type, e->meta);
        if (rc == -ENOTCONN)
            return;
        if (rc < 0) {
            x->dropped++;
            log_warn_limited("fsxfer", "event=report_dropped type=%s err=%d",
                             frame_type_str(e->type), rc);
        }
        ev_unlink(x, e);
        ev_free(e);
    }
}

uint32_t fsxfer_active(const fsxfer_t *x)
{
    return x->active;
}

uint32_t fsxfer_queued(const fsxfer_t *x)
{
    return x->queued;
}

uint64_t fsxfer_dropped(const fsxfer_t *x)
{
    return x->dropped;
}

void fsxfer_free(fsxfer_t *x)
{
    if (x == NULL)
        return;
    while (x->head) {
        struct ev *e = x->head;
        ev_unlink(x, e);
        ev_free(e);
    }
    while (x->legs) {
        struct fsxfer_leg *leg = x->legs;
        x->legs = leg->next;
        free(leg);
    }
    free(x);
}
