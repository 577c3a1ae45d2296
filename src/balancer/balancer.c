/*
 * balancer — the daemon that tracks file servers.
 *
 * The design is simple: N I/O threads, each with its own ring running a
 * membership server (mbr_server) with its own SO_REUSEPORT listener on the
 * control address, so the kernel spreads file servers over them. The
 * balancer's own part is the options, the threads and the state segment:
 * the only state threads share is the server table, which the membership
 * servers change between bal_table_lock() and bal_table_unlock(), the
 * latter publishing it row by row to the shared segment. Nothing crosses
 * threads but ring_post() at shutdown. The file servers' catalogs arrive
 * on the membership connections and go to one index (catalog.h), which
 * any thread may read.
 */
#include "convoy/balancer.h"

#include "convoy/catalog.h"
#include "convoy/log.h"
#include "convoy/mbr_server.h"
#include "convoy/net.h"
#include "convoy/pki.h"
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

#define NOFILE_RESERVE 64u /* descriptors kept for everything but connections */

struct balancer;

/* One I/O thread: its ring and the membership server on it. */
struct bal_thread {
    struct balancer *b;
    ring_t *ring;   /* this thread's loop */
    mbrs_t *member; /* file servers accepted on this thread */
    pthread_t tid;  /* 0 for the main thread */
};

struct balancer {
    const struct bal_opts *o;
    tls_ctx_t *tls;               /* server context, client certificates required */
    shm_t *shm;                   /* the state segment: this process is its only writer */
    struct bal_shared *shared;    /* working copy: change only under bal_lock() */
    struct bal_shared *published; /* what the segment holds, to publish only changes */
    struct net_addr control;      /* with the real port once the first thread bound it */
    unsigned nthreads;
    unsigned max_conns; /* over all threads */
    struct bal_thread *threads;
    catalog_t *catalog; /* which server holds which file */
};

/* What the balancer keeps per member session. */
struct bal_session {
    catalog_load_t *load; /* the CATALOG being received, or NULL */
    uint32_t stream;      /* its stream (0: none) */
};

/* ---- registry access (under bal_lock) ---- */

static int bal_lock(struct balancer *b)
{
    int rc = shm_lock(b->shm);
    if (rc < 0)
        log_error("balancer", "event=lock_failed err=\"%s\"", strerror(-rc));
    return rc;
}

static void bal_put(struct balancer *b, const struct shm_table *t, uint32_t slot, const void *row,
                    bool used)
{
    int rc = used ? shm_put(b->shm, t, slot, row) : shm_clear(b->shm, t, slot);
    if (rc < 0)
        log_error("balancer", "event=publish_failed table=%u slot=%u err=\"%s\"", t->id, slot,
                  strerror(-rc));
}

/* Writes every row of the working copy that differs from what the segment
 * holds (all of them if all), so readers see each change. Under bal_lock. */
static void bal_publish(struct balancer *b, bool all)
{
    struct bal_shared *w = b->shared, *p = b->published;
    for (uint32_t i = 0; i < REG_SERVERS; i++) {
        const struct reg_server *r = &w->reg.rows[i];
        if (!all && memcmp(r, &p->reg.rows[i], sizeof *r) == 0)
            continue;
        bal_put(b, &BAL_SERVER_TABLE, i, r, r->state != REG_NONE);
        p->reg.rows[i] = *r;
    }
    struct bal_meta m = {.started_ms = w->started_ms, .next_session = w->reg.next_session};
    snprintf(m.control, sizeof m.control, "%s", w->control);
    if (all || strcmp(p->control, w->control) != 0 || p->started_ms != w->started_ms ||
        p->reg.next_session != w->reg.next_session) {
        bal_put(b, &BAL_META_TABLE, 0, &m, true);
        memcpy(p->control, w->control, sizeof p->control);
        p->started_ms = w->started_ms;
        p->reg.next_session = w->reg.next_session;
    }
}

static void bal_unlock(struct balancer *b)
{
    bal_publish(b, false);
    shm_unlock(b->shm);
}

/* The membership servers' way into the table in the segment. */
static struct reg_table *bal_table_lock(void *arg)
{
    struct balancer *b = arg;
    return bal_lock(b) == 0 ? &b->shared->reg : NULL;
}

static void bal_table_unlock(void *arg)
{
    bal_unlock(arg);
}

/* ---- the members' own frames ---- */

/* A CATALOG: one at a time per session, its body loaded as it streams. */
static int bal_catalog(struct balancer *b, mbrs_session_t *ms, const cJSON *meta, uint32_t stream)
{
    struct bal_session *bs = mbrs_session_udata(ms);
    char why[256];
    if (bs == NULL && (bs = calloc(1, sizeof *bs)) == NULL) {
        mbrs_refuse(ms, "refused", "CATALOG: out of memory");
        return -EPROTO;
    }
    mbrs_session_set_udata(ms, bs);
    if (bs->load != NULL) {
        mbrs_refuse(ms, "order", "CATALOG while another is streaming");
        return -EPROTO;
    }
    int rc = catalog_load_begin(b->catalog, mbrs_session_name(ms), mbrs_session_id(ms), meta,
                                &bs->load, why, sizeof why);
    if (rc == 0 && stream == 0)
        rc = catalog_load_end(bs->load, why, sizeof why);
    if (rc < 0 || stream == 0) {
        bs->load = NULL;
        if (rc < 0) {
            mbrs_refuse(ms, "schema", "CATALOG: %s", why);
            return -EPROTO;
        }
        return 0;
    }
    bs->stream = stream;
    return 0;
}

static int bal_member_frame(void *arg, mbrs_session_t *ms, const struct frame_hdr *h,
                            const cJSON *meta, uint32_t stream)
{
    switch (h->type) {
    case FRAME_CATALOG:
        return bal_catalog(arg, ms, meta, stream);
    default:
        mbrs_refuse(ms, "unexpected", "%s is not part of the balancer's protocol",
                    frame_type_str(h->type));
        return -EPROTO;
    }
}

static int bal_member_body(void *arg, mbrs_session_t *ms, uint32_t stream, const uint8_t *data,
                           size_t len)
{
    (void)arg;
    struct bal_session *bs = mbrs_session_udata(ms);
    char why[256];
    if (bs == NULL || bs->stream != stream)
        return 0;
    int rc = catalog_load_feed(bs->load, data, len, why, sizeof why);
    if (rc < 0) {
        bs->load = NULL;
        bs->stream = 0;
        mbrs_refuse(ms, "schema", "CATALOG: %s", why);
        return -EPROTO;
    }
    return 0;
}

static void bal_member_end(void *arg, mbrs_session_t *ms, uint32_t stream, int err)
{
    (void)arg;
    struct bal_session *bs = mbrs_session_udata(ms);
    char why[256];
    if (bs == NULL || bs->stream != stream)
        return;
    catalog_load_t *l = bs->load;
    bs->load = NULL;
    bs->stream = 0;
    if (err < 0)
        catalog_load_abort(l);
    else if (catalog_load_end(l, why, sizeof why) < 0)
        mbrs_refuse(ms, "schema", "CATALOG: %s", why);
}

/* A member's session ended: its catalog goes (it sends a full one when it
 * is back, and a down server is never chosen meanwhile). */
static void bal_member_gone(void *arg, mbrs_session_t *ms)
{
    struct balancer *b = arg;
    struct bal_session *bs = mbrs_session_udata(ms);
    catalog_drop(b->catalog, mbrs_session_name(ms), mbrs_session_id(ms));
    if (bs != NULL)
        catalog_load_abort(bs->load);
    free(bs);
}

/* ---- threads and shutdown ---- */

static void thread_stopped(void *arg)
{
    struct bal_thread *t = arg;
    ring_stop(t->ring);
}

static void thread_shutdown(void *arg)
{
    struct bal_thread *t = arg;
    if (t->member)
        mbrs_stop(t->member, thread_stopped, t);
    else
        ring_stop(t->ring);
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
    struct mbrs_opts mo = {
        .ring = t->ring,
        .tls = b->tls,
        .addr = b->control,
        .role = PKI_ROLE_FILESERVER,
        .heartbeat_ms = b->o->heartbeat_ms,
        .dead_after_ms = b->o->dead_after_ms,
        .hello_timeout_ms = b->o->hello_timeout_ms,
        .max_conns = b->max_conns / b->nthreads,
        .lock = bal_table_lock,
        .unlock = bal_table_unlock,
        .on_frame = bal_member_frame,
        .on_body = bal_member_body,
        .on_end = bal_member_end,
        .on_gone = bal_member_gone,
        .body_max = FSCAT_BODY_MAX,
        .arg = b,
    };
    if ((rc = mbrs_start(&t->member, &mo)) < 0)
        return rc;
    b->control = *mbrs_addr(t->member); /* later threads bind the real port */
    return 0;
}

/* Logs a row of the segment that is not used, with why. */
static void bal_report(size_t row, const char *why, void *arg)
{
    log_warn("balancer", "event=row_dropped state=%s table=servers slot=%zu reason=\"%s\"",
             (const char *)arg, row, why);
}

/* A control address as the balancer records it: "" or printable ASCII. */
static bool bal_good_control(const char *c, size_t max)
{
    size_t len = strnlen(c, max);
    return len < max &&
           strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-:[]") == len;
}

/*
 * Reads the segment's tables into out (zeroed first), validating every row:
 * a row that fails reg_repair or cannot be read whole is left out and
 * logged. Returns how many were left out, or -EPROTO when the segment
 * lacks the balancer's tables (another version of them).
 */
static int bal_load(shm_t *shm, const char *state, struct bal_shared *out)
{
    memset(out, 0, sizeof *out);
    int cap = shm_capacity(shm, &BAL_META_TABLE);
    if (cap < 0 || (cap = shm_capacity(shm, &BAL_SERVER_TABLE)) < 0)
        return -EPROTO; /* the segment exists: its tables are not ours */
    struct bal_meta m;
    if (shm_get(shm, &BAL_META_TABLE, 0, &m, NULL) == 1 &&
        bal_good_control(m.control, sizeof m.control)) {
        memcpy(out->control, m.control, sizeof out->control);
        out->started_ms = m.started_ms;
        out->reg.next_session = m.next_session;
    }
    unsigned lost = 0;
    for (uint32_t i = 0; i < REG_SERVERS && i < (uint32_t)cap; i++) {
        struct reg_server *r = &out->reg.rows[i];
        if (shm_get(shm, &BAL_SERVER_TABLE, i, r, NULL) >= 0)
            continue;
        memset(r, 0, sizeof *r);
        bal_report(i, "unreadable: stayed mid-write", (void *)state);
        lost++;
    }
    lost += reg_repair(&out->reg, bal_report, (void *)state);
    struct shm_owner o;
    shm_owner(shm, &o);
    out->pid = o.pid;
    out->pid_start = o.start;
    return (int)lost;
}

static int bal_attach_state(struct balancer *b)
{
    const char *state = b->o->state ? b->o->state : b->o->name;
    const struct shm_table tables[] = {BAL_META_TABLE, BAL_SERVER_TABLE};
    enum shm_origin origin;
    b->shared = calloc(1, sizeof *b->shared);
    b->published = calloc(1, sizeof *b->published);
    if (b->shared == NULL || b->published == NULL) {
        log_error("balancer", "event=state_failed state=%s err=\"%s\"", state, strerror(ENOMEM));
        return -ENOMEM;
    }
    int rc = shm_own(&b->shm, state, tables, sizeof tables / sizeof tables[0], &origin);
    if (rc < 0) {
        log_error("balancer", "event=state_failed state=%s err=\"%s\"%s", state, strerror(-rc),
                  rc == -EBUSY   ? " hint=\"another balancer runs with this --state\""
                  : rc == -EPERM ? " hint=\"the segment is another user's or open to others and"
                                   " cannot be moved aside: remove it or use another --state\""
                                 : "");
        return rc;
    }
    int dropped = bal_load(b->shm, state, b->shared);
    if (dropped < 0) {
        log_error("balancer", "event=state_failed state=%s err=\"%s\"", state, strerror(-dropped));
        return dropped;
    }
    if ((rc = bal_lock(b)) < 0)
        return rc;
    reg_restart(&b->shared->reg, ring_now_ms()); /* down until they reconnect */
    b->shared->pid = getpid();
    b->shared->started_ms = ring_now_ms();
    unsigned kept = 0;
    for (size_t i = 0; i < REG_SERVERS; i++)
        kept += b->shared->reg.rows[i].state != REG_NONE;
    bal_publish(b, true); /* also overwrites the rows that were dropped */
    shm_unlock(b->shm);
    log_info("balancer", "event=state state=%s origin=%s servers_kept=%u servers_dropped=%d", state,
             shm_origin_str(origin), kept, dropped);
    return 0;
}

static void bal_release_state(struct balancer *b)
{
    if (b->shm != NULL && bal_lock(b) == 0) {
        reg_restart(&b->shared->reg, ring_now_ms());
        b->shared->pid = 0;
        bal_unlock(b);
    }
    shm_close(b->shm);
    free(b->shared);
    free(b->published);
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
        bal_unlock(b);
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
    log_info("balancer",
             "event=listening control=%s threads=%u heartbeat_ms=%u dead_after_ms=%u "
             "hello_timeout_ms=%u",
             a, b->nthreads, b->o->heartbeat_ms, b->o->dead_after_ms, b->o->hello_timeout_ms);
    return 0;
}

int bal_read_state(const char *state, struct bal_shared *out)
{
    shm_t *shm;
    int rc = shm_attach(&shm, state);
    if (rc < 0)
        return rc;
    rc = bal_load(shm, state, out);
    shm_close(shm);
    if (rc < 0)
        return rc;
    if (!bal_running(out))
        reg_restart(&out->reg, ring_now_ms()); /* nobody watches them: none is known up */
    return 0;
}

bool bal_running(const struct bal_shared *s)
{
    const struct shm_owner o = {s->pid, s->pid_start};
    return shm_owner_alive(&o);
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
    if (b.threads == NULL || catalog_new(&b.catalog) < 0 || bal_attach_state(&b) < 0)
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
        for (unsigned i = 0; i < b.nthreads; i++) {
            mbrs_free(b.threads[i].member);
            ring_destroy(b.threads[i].ring);
        }
    bal_release_state(&b);
    catalog_free(b.catalog);
    free(b.threads);
    tls_ctx_free(b.tls);
    return status;
}
