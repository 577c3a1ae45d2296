/*
 * balancer — the daemon that tracks file servers.
 *
 * The design is simple: N I/O threads, each with its own ring and its own
 * SO_REUSEPORT listener on the control address, so the kernel spreads file
 * servers over them. A thread owns the sessions it accepted and sweeps them
 * for silence on its own timer; the only state threads share is the server
 * table in shared memory, changed under its robust mutex. Nothing crosses
 * threads but ring_post() at shutdown.
 */
#include "convoy/balancer.h"

#include "convoy/conn.h"
#include "convoy/ctl.h"
#include "convoy/log.h"
#include "convoy/membership.h"
#include "convoy/net.h"
#include "convoy/proc.h"
#include "convoy/ring.h"
#include "convoy/shm.h"
#include "convoy/tls.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HELLO_DEADLINE_MS 5000u                            /* from accept to HELLO */
#define CTL_IN_MAX        (FRAME_HDR_LEN + FRAME_META_MAX) /* one whole frame, no body */
#define NOFILE_RESERVE    64u /* descriptors kept for everything but connections */

struct balancer;

/* One I/O thread. */
struct bal_thread {
    struct balancer *b;
    ring_t *ring;              /* this thread's loop */
    conn_listener_t *listener; /* its own socket on the control port */
    struct ring_timer sweep;   /* the silence sweep */
    bool stopping;             /* shutdown posted: no new work */
    struct session *sessions;  /* this thread's control connections */
    pthread_t tid;             /* 0 for the main thread */
};

/* One file server's control connection. */
struct session {
    struct bal_thread *t;
    conn_t *c;
    frame_decoder_t *dec;
    char name[REG_NAME_MAX];
    uint64_t id;        /* registry session; 0 before WELCOME */
    uint64_t last_seen; /* ring_now_ms() of the last frame */
    bool gone;          /* BYE or timeout already recorded */
    struct session *prev, *next;
};

struct balancer {
    const struct bal_opts *o;
    tls_ctx_t *tls;            /* server context, client certificates required */
    shm_t *shm;                /* the state segment */
    struct bal_shared *shared; /* its data: change only under shm_lock */
    struct net_addr control;   /* with the real port once the first thread bound it */
    unsigned nthreads;
    unsigned max_conns; /* over all threads */
    struct bal_thread *threads;
};

static const struct frame_limits ctl_limits = {.meta_max = FRAME_META_MAX, .body_max = 0};

/* ---- registry access (under the segment's mutex) ---- */

static int bal_lock(struct balancer *b)
{
    int rc = shm_lock(b->shm);
    if (rc < 0)
        log_error("balancer", "event=lock_failed err=\"%s\"", strerror(-rc));
    return rc;
}

static int bal_event(struct session *s, enum reg_event e, const struct reg_load *l)
{
    struct balancer *b = s->t->b;
    if (bal_lock(b) < 0)
        return -EIO;
    int rc = reg_event(&b->shared->reg, s->name, s->id, e, l, ring_now_ms());
    shm_unlock(b->shm);
    return rc;
}

/* ---- frames from a file server ---- */

static int on_hello(struct session *s, const cJSON *meta)
{
    struct balancer *b = s->t->b;
    struct reg_hello h;
    char why[256];
    if (mbr_hello_parse(meta, &h, why, sizeof why) < 0) {
        ctl_refuse(s->c, "schema", "HELLO: %s", why);
        return -EPROTO;
    }
    const char *cn = conn_peer_name(s->c);
    if (h.name && strcmp(h.name, cn) != 0) {
        ctl_refuse(s->c, "name", "HELLO names '%s' but the certificate is '%s'", h.name, cn);
        return -EPROTO;
    }
    h.name = cn;
    if (bal_lock(b) < 0)
        return -EIO;
    int rc = reg_hello(&b->shared->reg, &h, ring_now_ms(), &s->id, why, sizeof why);
    shm_unlock(b->shm);
    if (rc < 0) {
        ctl_refuse(s->c, rc == -EEXIST ? "duplicate" : "refused", "%s", why);
        return -EPROTO;
    }
    snprintf(s->name, sizeof s->name, "%s", cn);
    conn_set_deadline(s->c, 0);
    conn_trust(s->c); /* a member: never evicted to make room for strangers */
    struct mbr_welcome w = {s->id, b->o->heartbeat_ms, b->o->dead_after_ms};
    cJSON *reply = mbr_welcome_json(&w);
    rc = reply ? ctl_send(s->c, FRAME_WELCOME, reply) : -ENOMEM;
    cJSON_Delete(reply);
    log_info("balancer", "event=up name=%s http=%s weight=%u capacity=%u files=%llu session=%llu",
             s->name, h.addr, h.weight, h.capacity, (unsigned long long)h.files,
             (unsigned long long)s->id);
    return rc;
}

static int on_membership(struct session *s, enum frame_type type, const cJSON *meta)
{
    struct reg_load load;
    char why[256];
    int rc = type == FRAME_HEARTBEAT ? mbr_heartbeat_parse(meta, &load, why, sizeof why)
                                     : mbr_empty_parse(meta, why, sizeof why);
    if (rc < 0) {
        ctl_refuse(s->c, "schema", "%s: %s", frame_type_str(type), why);
        return -EPROTO;
    }
    enum reg_event e = type == FRAME_HEARTBEAT ? REG_EV_HEARTBEAT
                       : type == FRAME_DRAIN   ? REG_EV_DRAIN
                                               : REG_EV_BYE;
    rc = bal_event(s, e, &load);
    if (rc == -ESTALE) {
        ctl_refuse(s->c, "stale", "session %llu no longer holds '%s'", (unsigned long long)s->id,
                   s->name);
        return -EPROTO;
    }
    if (rc < 0) {
        ctl_refuse(s->c, "state", "%s not allowed now", frame_type_str(type));
        return -EPROTO;
    }
    if (e == REG_EV_DRAIN)
        log_info("balancer", "event=draining name=%s", s->name);
    if (e == REG_EV_BYE) {
        log_info("balancer", "event=left name=%s", s->name);
        s->gone = true;
        conn_close(s->c);
    }
    return 0;
}

static int on_frame(void *ctx, const struct frame_hdr *h, const cJSON *meta)
{
    struct session *s = ctx;
    s->last_seen = ring_now_ms();
    if (s->gone)
        return 0;
    if (s->id == 0 && h->type != FRAME_HELLO) {
        ctl_refuse(s->c, "order", "expected HELLO, got %s", frame_type_str(h->type));
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
    default:
        ctl_refuse(s->c, "unexpected", "%s is not part of the membership protocol",
                   frame_type_str(h->type));
        return -EPROTO;
    }
}

static int on_frame_end(void *ctx)
{
    (void)ctx;
    return 0;
}

static const struct frame_sink session_sink = {.on_frame = on_frame, .on_end = on_frame_end};

/* ---- connections ---- */

static ssize_t session_data(conn_t *c, const uint8_t *data, size_t len)
{
    struct session *s = conn_udata(c);
    return ctl_feed(c, s->dec, data, len);
}

static void session_open(conn_t *c)
{
    log_debug("balancer", "event=connected peer=%s name=%s", conn_peer_addr(c), conn_peer_name(c));
}

static void thread_maybe_stop(struct bal_thread *t)
{
    if (t->stopping && t->sessions == NULL)
        ring_stop(t->ring);
}

static void session_close(conn_t *c, int reason)
{
    struct session *s = conn_udata(c);
    if (s == NULL)
        return;
    if (s->id != 0 && !s->gone && bal_event(s, REG_EV_DISCONNECT, NULL) == REG_DOWN)
        log_info("balancer", "event=down name=%s reason=\"%s\"", s->name, conn_reason_str(reason));
    struct bal_thread *t = s->t;
    if (s->prev)
        s->prev->next = s->next;
    else
        t->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    frame_decoder_free(s->dec);
    free(s);
    thread_maybe_stop(t);
}

static const struct conn_handlers session_handlers = {
    .on_open = session_open,
    .on_data = session_data,
    .on_close = session_close,
};

static void session_accept(conn_t *c, void *arg)
{
    struct bal_thread *t = arg;
    struct session *s = calloc(1, sizeof *s);
    if (s == NULL || frame_decoder_new(&s->dec, &ctl_limits, &session_sink, s) < 0) {
        free(s);
        log_error("balancer", "event=accept_failed err=\"%s\"", strerror(ENOMEM));
        conn_abort(c, -ENOMEM);
        return;
    }
    s->t = t;
    s->c = c;
    s->last_seen = ring_now_ms();
    s->next = t->sessions;
    if (t->sessions)
        t->sessions->prev = s;
    t->sessions = s;
    conn_set_udata(c, s);
    conn_set_deadline(c, HELLO_DEADLINE_MS);
}

/* ---- the silence sweep ---- */

static void sweep_arm(struct bal_thread *t);

static void handle_sweep(struct ring_timer *timer)
{
    struct bal_thread *t = container_of(timer, struct bal_thread, sweep);
    uint64_t now = ring_now_ms();
    for (struct session *s = t->sessions; s; s = s->next) {
        if (s->id == 0 || s->gone || now - s->last_seen <= t->b->o->dead_after_ms)
            continue;
        if (bal_event(s, REG_EV_TIMEOUT, NULL) == REG_DOWN)
            log_info("balancer", "event=down name=%s reason=timeout silent_ms=%llu", s->name,
                     (unsigned long long)(now - s->last_seen));
        s->gone = true;
        conn_abort(s->c, -ETIMEDOUT);
    }
    sweep_arm(t);
}

static void sweep_arm(struct bal_thread *t)
{
    uint32_t every = t->b->o->dead_after_ms / 4;
    ring_timer_start(t->ring, &t->sweep, every < 50 ? 50 : every, handle_sweep);
}

/* ---- threads and shutdown ---- */

static void thread_shutdown(void *arg)
{
    struct bal_thread *t = arg;
    if (t->stopping)
        return;
    t->stopping = true;
    if (t->listener)
        conn_listener_close(t->listener);
    t->listener = NULL;
    for (struct session *s = t->sessions; s; s = s->next)
        conn_abort(s->c, -ESHUTDOWN);
    ring_timer_stop(t->ring, &t->sweep);
    thread_maybe_stop(t);
}

static void on_signal(void *arg, int signo)
{
    struct balancer *b = arg;
    log_info("balancer", "event=stopping signal=%s", strsignal(signo));
    for (unsigned i = 0; i < b->nthreads; i++)
        ring_post(b->threads[i].ring, thread_shutdown, &b->threads[i]);
}

static void *thread_main(void *arg)
{
    struct bal_thread *t = arg;
    ring_run(t->ring);
    return NULL;
}

static int thread_init(struct balancer *b, struct bal_thread *t)
{
    t->b = b;
    int rc = ring_create(&t->ring, 256);
    if (rc < 0) {
        log_error("balancer", "event=io_uring_unavailable err=\"%s\" hint=\"%s\"", strerror(-rc),
                  "convoy needs io_uring (Linux >= 5.19, kernel.io_uring_disabled=0)");
        return rc;
    }
    struct conn_opts co = {.tls = b->tls,
                           .handshake_ms = HELLO_DEADLINE_MS,
                           .in_max = CTL_IN_MAX,
                           .max_conns = b->max_conns / b->nthreads};
    rc = conn_listen(&t->listener, t->ring, &b->control, &co, &session_handlers, session_accept, t);
    if (rc < 0) {
        char a[64];
        log_error("balancer", "event=listen_failed addr=%s err=\"%s\"",
                  net_addr_str(&b->control, a, sizeof a), strerror(-rc));
        return rc;
    }
    b->control = *conn_listener_addr(t->listener); /* later threads bind the real port */
    sweep_arm(t);
    return 0;
}

static int bal_attach_state(struct balancer *b)
{
    const char *state = b->o->state ? b->o->state : b->o->name;
    enum shm_origin origin;
    int rc = shm_own(&b->shm, state, BAL_LAYOUT, sizeof(struct bal_shared), reg_repair_shm, NULL,
                     &origin);
    if (rc < 0) {
        log_error("balancer", "event=state_failed state=%s err=\"%s\"%s", state, strerror(-rc),
                  rc == -EBUSY ? " hint=\"another balancer runs with this --state\"" : "");
        return rc;
    }
    b->shared = shm_data(b->shm);
    if ((rc = bal_lock(b)) < 0)
        return rc;
    reg_restart(&b->shared->reg, ring_now_ms()); /* down until they reconnect */
    b->shared->pid = getpid();
    b->shared->started_ms = ring_now_ms();
    unsigned kept = 0;
    for (size_t i = 0; i < REG_SERVERS; i++)
        kept += b->shared->reg.rows[i].state != REG_NONE;
    shm_unlock(b->shm);
    log_info("balancer", "event=state state=%s origin=%s servers_kept=%u", state,
             shm_origin_str(origin), kept);
    return 0;
}

static void bal_release_state(struct balancer *b)
{
    if (b->shm == NULL)
        return;
    if (bal_lock(b) == 0) {
        reg_restart(&b->shared->reg, ring_now_ms());
        b->shared->pid = 0;
        shm_unlock(b->shm);
    }
    shm_close(b->shm);
}

static int bal_start_threads(struct balancer *b)
{
    for (unsigned i = 0; i < b->nthreads; i++) {
        int rc = thread_init(b, &b->threads[i]);
        if (rc < 0)
            return rc;
    }
    char a[64];
    net_addr_str(&b->control, a, sizeof a);
    if (bal_lock(b) == 0) {
        snprintf(b->shared->control, sizeof b->shared->control, "%s", a);
        shm_unlock(b->shm);
    }
    int rc = ring_watch_signals(b->threads[0].ring, on_signal, b);
    if (rc < 0) {
        log_error("balancer", "event=signals_failed err=\"%s\"", strerror(-rc));
        return rc;
    }
    for (unsigned i = 1; i < b->nthreads; i++) {
        rc = pthread_create(&b->threads[i].tid, NULL, thread_main, &b->threads[i]);
        if (rc != 0) {
            log_error("balancer", "event=thread_failed err=\"%s\"", strerror(rc));
            b->nthreads = i; /* only these run and need joining */
            return -rc;
        }
    }
    log_info("balancer", "event=listening control=%s threads=%u heartbeat_ms=%u dead_after_ms=%u",
             a, b->nthreads, b->o->heartbeat_ms, b->o->dead_after_ms);
    return 0;
}

int bal_read_state(const char *state, struct bal_shared *out)
{
    shm_t *shm;
    int rc = shm_attach(&shm, state, BAL_LAYOUT, sizeof *out);
    if (rc < 0)
        return rc;
    if ((rc = shm_lock(shm)) == 0) {
        memcpy(out, shm_data(shm), sizeof *out);
        shm_unlock(shm);
    }
    shm_close(shm);
    if (rc == 0 && !bal_running(out))
        reg_restart(&out->reg, ring_now_ms()); /* nobody watches them: none is known up */
    return rc;
}

bool bal_running(const struct bal_shared *s)
{
    return s->pid > 0 && (kill(s->pid, 0) == 0 || errno == EPERM);
}

/* Takes every descriptor the operator allows, and keeps connections within
 * them, so a flood meets the cap (and eviction) instead of EMFILE. */
static int bal_limits(struct balancer *b)
{
    long nofile = proc_raise_nofile();
    if (nofile < 0) {
        log_error("balancer", "event=nofile_failed err=\"%s\"", strerror((int)-nofile));
        return -1;
    }
    unsigned fit = nofile > 2 * NOFILE_RESERVE ? (unsigned)(nofile - NOFILE_RESERVE) : 16u;
    b->max_conns = b->o->max_conns && b->o->max_conns < fit ? b->o->max_conns : fit;
    if (b->max_conns < b->nthreads)
        b->max_conns = b->nthreads;
    log_info("balancer", "event=limits nofile=%ld max_conns=%u", nofile, b->max_conns);
    return 0;
}

int bal_run(const struct bal_opts *o)
{
    struct balancer b = {.o = o, .nthreads = o->threads ? o->threads : 1};
    char err[512];
    int status = 1;
    if (net_addr_parse_err(o->control, NET_LISTEN, &b.control, err, sizeof err) < 0) {
        log_error("balancer", "event=bad_option option=--control value=\"%s\" err=\"%s\"",
                  o->control, err);
        return 2;
    }
    if (bal_limits(&b) < 0)
        return 1;
    if (tls_ctx_new(&b.tls, TLS_SERVER, o->pki, o->name, true, err, sizeof err) < 0) {
        log_error("balancer", "event=tls_failed err=\"%s\"", err);
        return 1;
    }
    b.threads = calloc(b.nthreads, sizeof *b.threads);
    if (b.threads == NULL || bal_attach_state(&b) < 0)
        goto out;
    if (bal_start_threads(&b) == 0) {
        ring_run(b.threads[0].ring);
        status = 0;
    } else {
        for (unsigned i = 0; i < b.nthreads; i++)
            if (b.threads[i].ring)
                ring_post(b.threads[i].ring, thread_shutdown, &b.threads[i]);
        if (b.threads[0].ring)
            ring_run(b.threads[0].ring);
    }
    for (unsigned i = 1; i < b.nthreads; i++)
        if (b.threads[i].tid)
            pthread_join(b.threads[i].tid, NULL);
    log_info("balancer", "event=stopped");
out:
    if (b.threads)
        for (unsigned i = 0; i < b.nthreads; i++)
            ring_destroy(b.threads[i].ring);
    bal_release_state(&b);
    free(b.threads);
    tls_ctx_free(b.tls);
    return status;
}
