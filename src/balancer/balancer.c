/*
 * balancer — the daemon that tracks file servers.
 *
 * The design is simple: N I/O threads, each with its own ring running a
 * membership server (mbr_server) with its own SO_REUSEPORT listener on the
 * control address, so the kernel spreads file servers over them. The
 * balancer's own part is the options, the threads and the state segment:
 * the only state threads share is the server table in it, which the
 * membership servers reach through bal_table_lock (the segment's robust
 * mutex). Nothing crosses threads but ring_post() at shutdown.
 */
#include "convoy/balancer.h"

#include "convoy/log.h"
#include "convoy/mbr_server.h"
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
    tls_ctx_t *tls;            /* server context, client certificates required */
    shm_t *shm;                /* the state segment */
    struct bal_shared *shared; /* its data: change only under shm_lock */
    struct net_addr control;   /* with the real port once the first thread bound it */
    unsigned nthreads;
    struct bal_thread *threads;
    unsigned max_conns; /* over all threads */
};

static int bal_lock(struct balancer *b)
{
    int rc = shm_lock(b->shm);
    if (rc < 0)
        log_error("balancer", "event=lock_failed err=\"%s\"", strerror(-rc));
    return rc;
}

/* The membership servers' way into the table in the segment. */
static struct reg_table *bal_table_lock(void *arg)
{
    struct balancer *b = arg;
    return bal_lock(b) == 0 ? &b->shared->reg : NULL;
}

static void bal_table_unlock(void *arg)
{
    struct balancer *b = arg;
    shm_unlock(b->shm);
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
        .role = "fileserver",
        .heartbeat_ms = b->o->heartbeat_ms,
        .dead_after_ms = b->o->dead_after_ms,
        .hello_timeout_ms = b->o->hello_timeout_ms,
        .max_conns = b->max_conns / b->nthreads,
        .lock = bal_table_lock,
        .unlock = bal_table_unlock,
        .arg = b,
    };
    if ((rc = mbrs_start(&t->member, &mo)) < 0)
        return rc;
    b->control = *mbrs_addr(t->member); /* later threads bind the real port */
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
    log_info("balancer",
             "event=listening control=%s threads=%u heartbeat_ms=%u dead_after_ms=%u "
             "hello_timeout_ms=%u",
             a, b->nthreads, b->o->heartbeat_ms, b->o->dead_after_ms, b->o->hello_timeout_ms);
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
    if (net_addr_parse(o->control, &b.control) < 0) {
        log_error("balancer", "event=bad_option control=\"%s\" err=\"expected HOST:PORT\"",
                  o->control);
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
        for (unsigned i = 0; i < b.nthreads; i++) {
            mbrs_free(b.threads[i].member);
            ring_destroy(b.threads[i].ring);
        }
    bal_release_state(&b);
    free(b.threads);
    tls_ctx_free(b.tls);
    return status;
}
