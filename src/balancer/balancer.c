/*
 * balancer — the daemon that tracks file servers and sends clients to them.
 *
 * The design is simple: N I/O threads, each with its own ring running a
 * membership server (mbr_server) on the control address and, with --http,
 * the HTTP front (front.c) on the client address, each with its own
 * SO_REUSEPORT listener, so the kernel spreads connections over them. What
 * the threads share — the server table, the policy's counts, the transfer
 * table — they change between bal_lock() and bal_unlock(), the latter
 * publishing every changed row to the shared segment; the catalog, the
 * users and the ticket keys have locks of their own. The file servers'
 * own frames (CATALOG, XFER_*) arrive on their control connections and are
 * applied on that connection's thread. Nothing else crosses threads but
 * ring_post() at shutdown and the pool's password checks.
 */
#include "convoy/balancer.h"

#include "front.h"

#include "convoy/catalog.h"
#include "convoy/log.h"
#include "convoy/mbr_server.h"
#include "convoy/xfer_msg.h"
#include "convoy/net.h"
#include "convoy/pki.h"
#include "convoy/pool.h"
#include "convoy/proc.h"
#include "convoy/ring.h"
#include "convoy/shm.h"
#include "convoy/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOFILE_RESERVE  64u /* descriptors kept for everything but connections */
#define EXPIRE_EVERY_MS 100 /* a tenth of the transfer table is swept for expiry this often */
#define EXPIRE_PARTS    10  /* ... so each slot once a second, in ten small batches */

struct balancer;

/* One I/O thread: its ring and the servers on it. */
struct bal_thread {
    struct balancer *b;
    ring_t *ring;             /* this thread's loop */
    mbrs_t *member;           /* file servers accepted on this thread */
    front_t *front;           /* clients accepted on this thread; NULL without --http */
    unsigned stopping;        /* of member and front, those still stopping */
    struct ring_timer expire; /* the first thread's: expires redirects never followed */
    pthread_t tid;            /* 0 for the main thread */
};

struct balancer {
    const struct bal_opts *o;
    tls_ctx_t *tls;               /* control edge: client certificates required */
    tls_ctx_t *http_tls;          /* client edge (tickets on); NULL for plain HTTP */
    shm_t *shm;                   /* the state segment: this process is its only writer */
    struct bal_shared *shared;    /* working copy: change only under bal_lock() */
    struct bal_shared *published; /* what the segment holds, to publish only changes */
    struct bal_meta meta;         /* the meta row as last published */
    struct policy_state policy;   /* the policy's counts: under bal_lock() */
    xfer_table_t *xfers;          /* the transfer table: under bal_lock() */
    uint32_t xfer_cap;
    struct front_core core;  /* what bal_lock() hands the fronts */
    int xfer_log;            /* --transfer-log, or -1 */
    catalog_t *catalog;      /* which server holds which file */
    users_t *users;          /* --users */
    ticket_keyring_t *keys;  /* signs tickets; the file servers get it in WELCOME */
    pool_t *pool;            /* password hashes */
    struct net_addr control; /* with the real port once the first thread bound it */
    struct net_addr http;    /* the same for --http */
    unsigned nthreads;
    unsigned max_conns; /* over all threads */
    struct bal_thread *threads;
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

/* row's first len bytes (the rest are zero) into slot; NULL: slot freed. */
static void bal_put(struct balancer *b, const struct shm_table *t, uint32_t slot, const void *row,
                    size_t len)
{
    int rc = row ? shm_put_prefix(b->shm, t, slot, row, len) : shm_clear(b->shm, t, slot);
    if (rc < 0)
        log_error("balancer", "event=publish_failed table=%u slot=%u err=\"%s\"", t->id, slot,
                  strerror(-rc));
}

/* The meta row the working state calls for. */
static void bal_meta_of(struct balancer *b, struct bal_meta *m)
{
    const struct bal_shared *w = b->shared;
    *m = b->meta;
    memset(m->control, 0, sizeof m->control);
    snprintf(m->control, sizeof m->control, "%s", w->control);
    m->started_ms = w->started_ms;
    m->next_session = w->reg.next_session;
    if (b->xfers)
        m->next_xfer = xfer_table_next_id(b->xfers);
}

/* Every transfer slot changed since the last publish. Under bal_lock. */
static void bal_publish_xfers(struct balancer *b)
{
    uint32_t slots[64];
    size_t n;
    if (b->xfers == NULL)
        return;
    do {
        n = xfer_table_dirty(b->xfers, slots, sizeof slots / sizeof slots[0]);
        for (size_t i = 0; i < n; i++) {
            const struct xfer_rec *r = xfer_table_slot(b->xfers, slots[i]);
            bal_put(b, &BAL_XFER_TABLE(b->xfer_cap), slots[i], r, r ? xfer_rec_len(r) : 0);
        }
    } while (n == sizeof slots / sizeof slots[0]);
}

/* The meta row, when it differs from the segment's (or if all). */
static void bal_publish_meta(struct balancer *b, bool all)
{
    struct bal_meta m;
    bal_meta_of(b, &m);
    if (all || memcmp(&m, &b->meta, sizeof m) != 0) {
        bal_put(b, &BAL_META_TABLE, 0, &m, sizeof m);
        b->meta = m;
    }
}

/* Writes every row of the working copy that differs from what the segment
 * holds (all of them if all), so readers see each change. Under bal_lock. */
static void bal_publish(struct balancer *b, bool all)
{
    struct bal_shared *w = b->shared, *p = b->published;
    for (uint32_t i = 0; i < REG_SERVERS; i++) {
        const struct reg_server *r = &w->reg.rows[i];
        if (!all && (r->state == REG_NONE && p->reg.rows[i].state == REG_NONE)) /* free, still */
            continue;
        if (!all && memcmp(r, &p->reg.rows[i], sizeof *r) == 0)
            continue;
        bal_put(b, &BAL_SERVER_TABLE, i, r->state != REG_NONE ? r : NULL, sizeof *r);
        p->reg.rows[i] = *r;
    }
    bal_publish_meta(b, all);
    bal_publish_xfers(b);
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

/* The fronts' way into everything they change. */
static struct front_core *bal_core_lock(void *arg)
{
    struct balancer *b = arg;
    return bal_lock(b) == 0 ? &b->core : NULL;
}

/* A front reads the server rows (const in struct front_core), so only the
 * meta row (the next transfer id) and the transfer slots can have changed:
 * the 256 rows are not compared after every redirect. */
static void bal_core_unlock(void *arg)
{
    struct balancer *b = arg;
    bal_publish_meta(b, false);
    bal_publish_xfers(b);
    shm_unlock(b->shm);
}

/* ---- the file servers' own frames ---- */

/* XFER_START, _PROGRESS, _END: the server's account of a transfer. */
static int bal_xfer_frame(struct balancer *b, mbrs_session_t *s, const struct frame_hdr *h,
                          const cJSON *meta)
{
    struct xfer_msg m;
    char why[256];
    if (xfer_msg_parse(h->type, meta, &m, why, sizeof why) < 0) {
        mbrs_refuse(s, "schema", "%s: %s", frame_type_str(h->type), why);
        return -EPROTO;
    }
    if (bal_lock(b) < 0)
        return 0; /* logged; the record misses one report, the server is not at fault */
    int rc = xfer_apply(b->xfers, mbrs_session_name(s), &m, xfer_now_ms());
    bal_unlock(b);
    if (rc < 0)
        log_info_limited("balancer", "event=xfer_ignored name=%s type=%s transfer=%llu err=\"%s\"",
                         mbrs_session_name(s), frame_type_str(h->type), (unsigned long long)m.id,
                         strerror(-rc));
    return 0;
}

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
    case FRAME_XFER_START:
    case FRAME_XFER_PROGRESS:
    case FRAME_XFER_END:
        return bal_xfer_frame(arg, ms, h, meta);
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
 * is back, and a down server is never chosen meanwhile), and its running
 * legs are interrupted. */
static void bal_member_gone(void *arg, mbrs_session_t *ms)
{
    struct balancer *b = arg;
    struct bal_session *bs = mbrs_session_udata(ms);
    catalog_drop(b->catalog, mbrs_session_name(ms), mbrs_session_id(ms));
    if (bs != NULL)
        catalog_load_abort(bs->load);
    free(bs);
    if (bal_lock(b) < 0)
        return;
    size_t n = xfer_server_down(b->xfers, mbrs_session_name(ms), xfer_now_ms());
    bal_unlock(b);
    if (n > 0) /* their legs are interrupted: clients resume elsewhere */
        log_info("balancer", "event=legs_interrupted name=%s legs=%zu", mbrs_session_name(ms), n);
}

/* WELCOME carries the ticket keys: the file server checks what we sign. */
static int bal_welcome(void *arg, const char *name, cJSON *meta)
{
    (void)name;
    struct balancer *b = arg;
    return ticket_keyring_to_json(b->keys, meta);
}

/* A finished transfer, under bal_lock: one line of the transfer log. */
static void bal_xfer_finished(const struct xfer_rec *r, void *arg)
{
    struct balancer *b = arg;
    if (b->xfer_log >= 0 && xfer_log_append(b->xfer_log, r) < 0)
        log_warn_limited("balancer", "event=transfer_log_failed err=\"%s\"", strerror(errno));
}

static void handle_expire(struct ring_timer *t)
{
    struct bal_thread *th = container_of(t, struct bal_thread, expire);
    struct balancer *b = th->b;
    if (bal_lock(b) == 0) {
        uint32_t cap = xfer_table_capacity(b->xfers);
        xfer_expire(b->xfers, xfer_now_ms(), (cap + EXPIRE_PARTS - 1) / EXPIRE_PARTS);
        bal_unlock(b);
    }
    ring_timer_start(th->ring, &th->expire, EXPIRE_EVERY_MS, handle_expire);
}

/* ---- threads and shutdown ---- */

/* One of the thread's servers has stopped; the last one stops the ring. */
static void thread_stopped(void *arg)
{
    struct bal_thread *t = arg;
    if (--t->stopping == 0)
        ring_stop(t->ring);
}

static void thread_shutdown(void *arg)
{
    struct bal_thread *t = arg;
    ring_timer_stop(t->ring, &t->expire);
    t->stopping = 1 + (t->member != NULL) + (t->front != NULL);
    if (t->member)
        mbrs_stop(t->member, thread_stopped, t);
    if (t->front) {
        front_stop(t->front, thread_stopped, t);
        t->front = NULL; /* freed by front_stop's end */
    }
    thread_stopped(t);
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

static int thread_init_front(struct balancer *b, struct bal_thread *t)
{
    struct front_opts fo = {
        .ring = t->ring,
        .addr = b->http,
        .http = {.tls = b->http_tls, .max_conns = b->max_conns / b->nthreads},
        .users = b->users,
        .keys = b->keys,
        .catalog = b->catalog,
        .pool = b->pool,
        .ticket_ttl_s = b->o->ticket_ttl_s,
        .scheme = b->o->insecure_http ? "http" : "https",
        .lock = bal_core_lock,
        .unlock = bal_core_unlock,
        .arg = b,
    };
    int rc = front_start(&t->front, &fo);
    if (rc < 0)
        return rc;
    b->http = *front_addr(t->front);
    return 0;
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
        .welcome = bal_welcome,
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
    return b->o->http ? thread_init_front(b, t) : 0;
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
 * Reads the segment's tables into out (zeroed first), and the meta row into
 * meta when it is not NULL, validating every row:
 * a row that fails reg_repair or cannot be read whole is left out and
 * logged. Returns how many were left out, or -EPROTO when the segment
 * lacks the balancer's tables (another version of them).
 */
static int bal_load(shm_t *shm, const char *state, struct bal_shared *out, struct bal_meta *meta)
{
    memset(out, 0, sizeof *out);
    if (meta)
        memset(meta, 0, sizeof *meta);
    int cap = shm_capacity(shm, &BAL_META_TABLE);
    if (cap < 0 || (cap = shm_capacity(shm, &BAL_SERVER_TABLE)) < 0)
        return -EPROTO; /* the segment exists: its tables are not ours */
    struct bal_meta m;
    if (shm_get(shm, &BAL_META_TABLE, 0, &m, NULL) == 1 &&
        bal_good_control(m.control, sizeof m.control)) {
        memcpy(out->control, m.control, sizeof out->control);
        out->started_ms = m.started_ms;
        out->reg.next_session = m.next_session;
        if (meta)
            *meta = m;
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

/* The transfer table: the segment's records back, checked one by one. */
static int bal_load_xfers(struct balancer *b, const char *state)
{
    struct xfer_table_opts xo = {.capacity = b->xfer_cap,
                                 .ttl_ms = (uint64_t)b->o->ticket_ttl_s * 1000,
                                 .next_id = b->meta.next_xfer,
                                 .policy = &b->policy,
                                 .reg = &b->shared->reg,
                                 .on_finish = bal_xfer_finished,
                                 .arg = b};
    int rc = xfer_table_new(&b->xfers, &xo);
    if (rc < 0)
        return rc;
    struct xfer_rec *r = malloc(sizeof *r);
    if (r == NULL)
        return -ENOMEM;
    unsigned kept = 0, dropped = 0;
    char why[256];
    for (uint32_t i = 0; i < b->xfer_cap; i++) {
        int got = shm_get(b->shm, &BAL_XFER_TABLE(b->xfer_cap), i, r, NULL);
        if (got == 0)
            continue;
        if (got == 1 && xfer_table_load(b->xfers, i, r, why, sizeof why) == 0) {
            kept++;
            continue;
        }
        log_warn("balancer", "event=row_dropped state=%s table=transfers slot=%u reason=\"%s\"",
                 state, i, got == 1 ? why : "unreadable: stayed mid-write");
        dropped++;
    }
    free(r);
    xfer_table_loaded(b->xfers);
    log_info("balancer", "event=transfers state=%s kept=%u dropped=%u capacity=%u", state, kept,
             dropped, b->xfer_cap);
    return 0;
}

/* New ticket keys for this run; the previous run's signing key verifies
 * on until the tickets it signed have expired. */
static int bal_keys(struct balancer *b)
{
    int rc = ticket_keyring_new(&b->keys);
    if (rc < 0)
        return rc;
    const struct ticket_keyset *prev = b->meta.keys.n ? &b->meta.keys : NULL;
    uint64_t now = (uint64_t)time(NULL);
    rc = ticket_keyring_rotate(b->keys, prev, now, b->o->ticket_ttl_s);
    if (rc == -EINVAL) {
        log_warn("balancer", "event=ticket_keys_dropped reason=\"stored keys do not validate\"");
        rc = ticket_keyring_rotate(b->keys, NULL, now, b->o->ticket_ttl_s);
    }
    if (rc < 0)
        return rc;
    ticket_keyring_save(b->keys, &b->meta.keys);
    return 0;
}

static int bal_attach_state(struct balancer *b)
{
    const char *state = b->o->state ? b->o->state : b->o->name;
    const struct shm_table tables[] = {BAL_META_TABLE, BAL_SERVER_TABLE,
                                       BAL_XFER_TABLE(b->xfer_cap)};
    enum shm_origin origin;
    b->shared = calloc(1, sizeof *b->shared);
    b->published = calloc(1, sizeof *b->published);
    if (b->shared == NULL || b->published == NULL) {
        log_error("balancer", "event=state_failed state=%s err=\"%s\"", state, strerror(ENOMEM));
        return -ENOMEM;
    }
    int rc = shm_own(&b->shm, state, tables, sizeof tables / sizeof tables[0], &origin);
    if (rc < 0) {
        char big[160];
        snprintf(big, sizeof big,
                 " hint=\"the segment would pass 1 GiB: lower --max-transfers (%u asked, %zu "
                 "bytes a record)\"",
                 b->xfer_cap, sizeof(struct xfer_rec));
        log_error("balancer", "event=state_failed state=%s err=\"%s\"%s", state, strerror(-rc),
                  rc == -EBUSY   ? " hint=\"another balancer runs with this --state\""
                  : rc == -EPERM ? " hint=\"the segment is another user's or open to others and"
                                   " cannot be moved aside: remove it or use another --state\""
                  : rc == -EFBIG ? big
                                 : "");
        return rc;
    }
    int dropped = bal_load(b->shm, state, b->shared, &b->meta);
    if (dropped < 0) {
        log_error("balancer", "event=state_failed state=%s err=\"%s\"", state, strerror(-dropped));
        return dropped;
    }
    if ((rc = bal_keys(b)) < 0 || (rc = bal_lock(b)) < 0) {
        log_error("balancer", "event=state_failed state=%s err=\"%s\"", state, strerror(-rc));
        return rc;
    }
    reg_restart(&b->shared->reg, ring_now_ms()); /* down until they reconnect */
    b->shared->pid = getpid();
    b->shared->started_ms = ring_now_ms();
    rc = bal_load_xfers(b, state);
    b->core = (struct front_core){&b->shared->reg, &b->policy, b->xfers};
    unsigned kept = 0;
    for (size_t i = 0; i < REG_SERVERS; i++)
        kept += b->shared->reg.rows[i].state != REG_NONE;
    if (rc == 0)
        bal_publish(b, true); /* also overwrites the rows that were dropped */
    shm_unlock(b->shm);
    if (rc < 0) {
        log_error("balancer", "event=state_failed state=%s err=\"%s\"", state, strerror(-rc));
        return rc;
    }
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
    xfer_table_free(b->xfers);
    ticket_keyring_free(b->keys);
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
    char h[64] = "-";
    if (b->o->http)
        net_addr_str(&b->http, h, sizeof h);
    log_info("balancer",
             "event=listening control=%s http=%s threads=%u heartbeat_ms=%u dead_after_ms=%u "
             "hello_timeout_ms=%u",
             a, h, b->nthreads, b->o->heartbeat_ms, b->o->dead_after_ms, b->o->hello_timeout_ms);
    return 0;
}

int bal_read_state(const char *state, struct bal_shared *out)
{
    shm_t *shm;
    int rc = shm_attach(&shm, state);
    if (rc < 0)
        return rc;
    rc = bal_load(shm, state, out, NULL);
    shm_close(shm);
    if (rc < 0)
        return rc;
    if (!bal_running(out))
        reg_restart(&out->reg, ring_now_ms()); /* nobody watches them: none is known up */
    return 0;
}

/* For sorting a listing by transfer id. */
static int bal_by_id(const void *a, const void *b)
{
    double x = cJSON_GetObjectItemCaseSensitive(*(cJSON *const *)a, "id")->valuedouble;
    double y = cJSON_GetObjectItemCaseSensitive(*(cJSON *const *)b, "id")->valuedouble;
    return (x > y) - (x < y);
}

/* Every record of the table that is in use and passes filter, sorted. */
static int bal_list_xfers(shm_t *shm, uint32_t cap, enum xfer_state filter, cJSON *list)
{
    struct xfer_rec *r = malloc(sizeof *r);
    cJSON **items = calloc(cap ? cap : 1, sizeof *items);
    size_t n = 0;
    int rc = r && items ? 0 : -ENOMEM;
    for (uint32_t i = 0; rc == 0 && i < cap; i++) {
        if (shm_get(shm, &BAL_XFER_TABLE(cap), i, r, NULL) != 1 || xfer_rec_check(r, NULL, 0) < 0 ||
            (filter != XFER_NONE && r->state != filter))
            continue; /* free, mid-write or not one the balancer would keep */
        if ((items[n] = xfer_rec_json(r)) == NULL)
            rc = -ENOMEM;
        else
            n++;
    }
    qsort(items, n, sizeof *items, bal_by_id);
    for (size_t i = 0; i < n; i++)
        if (!cJSON_AddItemToArray(list, items[i])) {
            cJSON_Delete(items[i]);
            rc = -ENOMEM;
        }
    free(items);
    free(r);
    return rc;
}

int bal_read_transfers(const char *state, enum xfer_state filter, cJSON **out)
{
    shm_t *shm;
    int rc = shm_attach(&shm, state);
    if (rc < 0)
        return rc;
    int cap = shm_capacity(shm, &BAL_XFER_TABLE(0));
    cJSON *doc = cJSON_CreateObject();
    cJSON *list = doc ? cJSON_AddArrayToObject(doc, "transfers") : NULL;
    rc = cap < 0 ? cap : list == NULL ? -ENOMEM : bal_list_xfers(shm, (uint32_t)cap, filter, list);
    shm_close(shm);
    if (rc < 0) {
        cJSON_Delete(doc);
        return rc == -ENOENT ? -EPROTO : rc;
    }
    *out = doc;
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

/* What --http needs: the address, the users, a TLS context with tickets
 * (clients reconnect often), the pool for password hashes, the policy. */
static int bal_http_setup(struct balancer *b)
{
    const struct bal_opts *o = b->o;
    char err[512];
    enum policy_kind kind = POLICY_LEAST_CONN;
    if (o->policy && policy_parse(o->policy, &kind) < 0) {
        log_error("balancer", "event=bad_option option=--policy value=\"%s\" err=\"%s\"", o->policy,
                  "least-conn, least-bytes, weighted, p2c or round-robin");
        return 2;
    }
    policy_init(&b->policy, kind, (uint64_t)time(NULL) ^ (uint64_t)getpid());
    if (o->http == NULL)
        return 0;
    if (net_addr_parse_err(o->http, NET_LISTEN, &b->http, err, sizeof err) < 0) {
        log_error("balancer", "event=bad_option option=--http value=\"%s\" err=\"%s\"", o->http,
                  err);
        return 2;
    }
    if (o->users == NULL) {
        log_error("balancer", "event=bad_option option=--users err=\"%s\"",
                  "--http needs --users: every request for a file is authenticated");
        return 2;
    }
    if (users_load(&b->users, o->users, err, sizeof err) < 0) {
        log_error("balancer", "event=users_failed err=\"%s\"", err);
        return 1;
    }
    if (!o->insecure_http &&
        (tls_ctx_new(&b->http_tls, TLS_SERVER, o->pki, o->name, false, err, sizeof err) < 0 ||
         tls_ctx_enable_tickets(b->http_tls, err, sizeof err) < 0)) {
        log_error("balancer", "event=tls_failed edge=http err=\"%s\"", err);
        return 1;
    }
    int rc = pool_create(&b->pool, 0, 1024);
    if (rc < 0) {
        log_error("balancer", "event=pool_failed err=\"%s\"", strerror(-rc));
        return 1;
    }
    return 0;
}

/* The transfer log and the catalog, which every balancer keeps. */
static int bal_tracking_setup(struct balancer *b)
{
    b->xfer_cap = b->o->max_transfers ? b->o->max_transfers : XFER_CAPACITY;
    if (b->o->transfer_log && (b->xfer_log = xfer_log_open(b->o->transfer_log)) < 0) {
        log_error("balancer", "event=transfer_log_failed path=%s err=\"%s\"", b->o->transfer_log,
                  strerror(-b->xfer_log));
        return 1;
    }
    int rc = catalog_new(&b->catalog);
    if (rc < 0) {
        log_error("balancer", "event=catalog_failed err=\"%s\"", strerror(-rc));
        return 1;
    }
    return 0;
}

static void bal_free(struct balancer *b)
{
    if (b->threads)
        for (unsigned i = 0; i < b->nthreads; i++) {
            mbrs_free(b->threads[i].member);
            ring_destroy(b->threads[i].ring);
        }
    bal_release_state(b);
    free(b->threads);
    pool_destroy(b->pool);
    users_free(b->users);
    catalog_free(b->catalog);
    if (b->xfer_log >= 0)
        close(b->xfer_log);
    tls_ctx_free(b->http_tls);
    tls_ctx_free(b->tls);
}

int bal_run(const struct bal_opts *o)
{
    struct balancer b = {.o = o, .nthreads = o->threads ? o->threads : 1, .xfer_log = -1};
    char err[512];
    int status = 1;
    if (net_addr_parse_err(o->control, NET_LISTEN, &b.control, err, sizeof err) < 0) {
        log_error("balancer", "event=bad_option option=--control value=\"%s\" err=\"%s\"",
                  o->control, err);
        return 2;
    }
    if (bal_limits(&b) < 0)
        return 1;
    if ((status = bal_http_setup(&b)) != 0 || (status = bal_tracking_setup(&b)) != 0)
        goto out;
    status = 1;
    if (tls_ctx_new(&b.tls, TLS_SERVER, o->pki, o->name, true, err, sizeof err) < 0) {
        log_error("balancer", "event=tls_failed err=\"%s\"", err);
        goto out;
    }
    b.threads = calloc(b.nthreads, sizeof *b.threads);
    if (b.threads == NULL || bal_attach_state(&b) < 0)
        goto out;
    if (bal_start_threads(&b) == 0) {
        ring_timer_start(b.threads[0].ring, &b.threads[0].expire, EXPIRE_EVERY_MS, handle_expire);
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
    bal_free(&b);
    return status;
}
