/*
 * cexec — the executor (see cexec.h). The queue is a list under a mutex:
 * the ring's thread pushes and withdraws, the runner pops. held counts the
 * items of queued and running batches and is read by the ring's thread
 * for the window and the heartbeat, so it is atomic; the runner lowers it
 * only when the batch's done is posted.
 */
#include "convoy/cexec.h"

#include "convoy/gj.h"
#include "convoy/jgen.h"
#include "convoy/log.h"
#include "convoy/pool.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

#define CALIB_N    256
#define CALIB_MS   100
#define POST_WAIT  1000 /* ms a runner waits for room in the ring's queue, per try */
#define CEXEC_NICE 10   /* the kernel's threads, below the loops (starter) */

struct cexec {
    ring_t *ring;
    pool_t *pool; /* threads - 1 workers, NULL with one thread */
    unsigned threads;
    cexec_done_fn done;
    void *arg;
    pthread_t runner;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct cexec_batch *head, *tail; /* queued */
    atomic_bool stopping;
    _Atomic uint64_t held;
    atomic_uint posts; /* batches posted to the ring, not yet run there */
};

/* A finished batch on its way to the ring. */
struct posted {
    cexec_t *e;
    struct cexec_batch *b;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct cexec_batch *cexec_batch_new(const struct chain_work *w)
{
    struct cexec_batch *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->w = *w;
    b->status = calloc(w->count, 1);
    b->resid = malloc(sizeof(double) * w->count);
    b->sum = w->output ? NULL : calloc(w->count, sizeof *b->sum);
    uint64_t len = chain_items_len(w->count, w->n);
    if (!w->gen && len > 0)
        b->data = malloc(len);
    if (!b->status || !b->resid || (!w->output && !b->sum) || (!w->gen && len > 0 && !b->data)) {
        cexec_batch_free(b);
        return NULL;
    }
    return b;
}

void cexec_batch_free(struct cexec_batch *b)
{
    if (b == NULL)
        return;
    free(b->data);
    free(b->status);
    free(b->resid);
    free(b->sum);
    free(b);
}

/* ---- the runner ---- */

/* A generated batch's inputs, from seed and index alone. */
static int generate(struct cexec_batch *b)
{
    size_t nn = (size_t)b->w.n * b->w.n;
    if (b->data == NULL && (b->data = malloc(chain_items_len(b->w.count, b->w.n))) == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < b->w.count; i++) {
        int rc = jgen_item(b->w.kind, b->w.seed, b->w.first + i, b->w.n, b->data + i * nn);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int invert(cexec_t *e, struct cexec_batch *b)
{
    size_t n = b->w.n, nn = n * n;
    struct gj_opts o = {.pool = e->pool, .threads = e->threads, .residual = b->w.residual};
    for (uint32_t i = 0; i < b->w.count; i++)
        b->resid[i] = NAN;
    if (n <= GJ_GROUP_N_MAX) {
        struct gj_item *items = calloc(b->w.count, sizeof *items);
        if (items == NULL)
            return -ENOMEM;
        for (uint32_t i = 0; i < b->w.count; i++)
            items[i] = (struct gj_item){.a = b->data + i * nn, .n = n};
        int rc = gj_invert_batch(items, b->w.count, &o);
        for (uint32_t i = 0; rc >= 0 && i < b->w.count; i++) {
            b->status[i] = (uint8_t)items[i].status;
            b->resid[i] = b->w.residual ? items[i].resid : NAN;
        }
        free(items);
        return rc < 0 ? rc : 0;
    }
    for (uint32_t i = 0; i < b->w.count; i++) {
        double r = NAN;
        int rc = gj_invert(b->data + i * nn, n, &o, b->w.residual ? &r : NULL);
        if (rc < 0)
            return rc;
        b->status[i] = (uint8_t)rc;
        b->resid[i] = b->w.residual ? r : NAN;
    }
    return 0;
}

static void cexec_free(cexec_t *e)
{
    pool_destroy(e->pool);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->cond);
    free(e);
}

/* On the ring. After cexec_destroy (posts the ring runs as it is
 * destroyed) the batch is only freed, and the last one frees e. */
static void posted_run(void *arg)
{
    struct posted *p = arg;
    cexec_t *e = p->e;
    struct cexec_batch *b = p->b;
    free(p);
    atomic_fetch_sub(&e->held, b->w.count);
    bool stopping = atomic_load(&e->stopping);
    if (stopping)
        cexec_batch_free(b);
    else
        e->done(e->arg, b);
    if (atomic_fetch_sub(&e->posts, 1) == 1 && stopping)
        cexec_free(e);
}

/* Hands b to the ring, waiting for room while the ring is busy. */
static void post(cexec_t *e, struct cexec_batch *b)
{
    struct posted *p = malloc(sizeof *p);
    while (p == NULL && !atomic_load(&e->stopping)) {
        usleep(1000);
        p = malloc(sizeof *p);
    }
    if (p == NULL) {
        cexec_batch_free(b);
        return;
    }
    *p = (struct posted){e, b};
    atomic_fetch_add(&e->posts, 1);
    while (ring_post_wait(e->ring, posted_run, p, POST_WAIT) != 0)
        if (atomic_load(&e->stopping)) {
            atomic_fetch_sub(&e->posts, 1);
            cexec_batch_free(b);
            free(p);
            return;
        }
}

static struct cexec_batch *next_batch(cexec_t *e)
{
    pthread_mutex_lock(&e->lock);
    while (e->head == NULL && !atomic_load(&e->stopping))
        pthread_cond_wait(&e->cond, &e->lock);
    struct cexec_batch *b = atomic_load(&e->stopping) ? NULL : e->head;
    if (b != NULL) {
        e->head = b->next;
        if (e->head == NULL)
            e->tail = NULL;
        b->next = NULL;
    }
    pthread_mutex_unlock(&e->lock);
    return b;
}

static void *runner_main(void *arg)
{
    cexec_t *e = arg;
    struct cexec_batch *b;
    while ((b = next_batch(e)) != NULL) {
        uint64_t t0 = now_ms();
        b->err = b->w.gen ? generate(b) : 0;
        if (b->err == 0)
            b->err = invert(e, b);
        for (uint32_t i = 0; b->sum && b->err == 0 && i < b->w.count; i++) /* what stands for */
            b->sum[i] = b->status[i] == GJ_OK                              /* the inverse */
                            ? chain_sum(b->data + (size_t)i * b->w.n * b->w.n, b->w.n)
                            : 0;
        b->ms = (uint32_t)(now_ms() - t0);
        if (b->err < 0)
            log_warn("cexec", "event=batch_failed job=%llu first=%llu count=%u err=\"%s\"",
                     (unsigned long long)b->w.job, (unsigned long long)b->w.first, b->w.count,
                     strerror(-b->err));
        post(e, b);
    }
    return NULL;
}

/* ---- the ring's side ---- */

/*
 * Starts the pool and the runner from a thread whose nice value is
 * CEXEC_NICE above the caller's, which they inherit (Linux keeps nice per
 * thread): the kernel takes the cores the loops leave. On a host of its
 * own that changes nothing; beside the loops that move its data (this
 * server's, a front-end's on the same host) it keeps them from waiting a
 * scheduler slice behind the kernel for every buffer, which had an
 * uploading front-end idle half the time. 0, or -errno / an errno value.
 */
static void *starter(void *arg)
{
    cexec_t *e = arg;
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0); /* this thread's */
    if (errno == 0 && setpriority(PRIO_PROCESS, 0, nice + CEXEC_NICE > 19 ? 19 : nice + CEXEC_NICE))
        log_warn("cexec", "event=nice_failed err=\"%s\"", strerror(errno));
    int rc = e->threads > 1 ? pool_create(&e->pool, e->threads - 1, 256) : 0;
    if (rc == 0 && (rc = pthread_create(&e->runner, NULL, runner_main, e)) != 0)
        rc = -rc;
    return (void *)(intptr_t)rc;
}

int cexec_create(cexec_t **out, ring_t *r, unsigned threads, cexec_done_fn done, void *arg)
{
    cexec_t *e = calloc(1, sizeof *e);
    if (e == NULL)
        return -ENOMEM;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    e->threads = threads ? threads : cpus > 0 ? (unsigned)cpus : 1;
    e->ring = r;
    e->done = done;
    e->arg = arg;
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    pthread_t t;
    void *ret = NULL;
    int rc = pthread_create(&t, NULL, starter, e);
    if (rc != 0 || pthread_join(t, &ret) != 0 || (rc = (int)(intptr_t)ret) != 0) {
        pthread_mutex_destroy(&e->lock);
        pthread_cond_destroy(&e->cond);
        pool_destroy(e->pool);
        free(e);
        return rc > 0 ? -rc : rc < 0 ? rc : -EAGAIN;
    }
    *out = e;
    return 0;
}

unsigned cexec_threads(const cexec_t *e)
{
    return e->threads;
}

void cexec_submit(cexec_t *e, struct cexec_batch *b)
{
    b->next = NULL;
    atomic_fetch_add(&e->held, b->w.count);
    pthread_mutex_lock(&e->lock);
    if (e->tail)
        e->tail->next = b;
    else
        e->head = b;
    e->tail = b;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

uint64_t cexec_cancel(cexec_t *e, uint64_t job)
{
    uint64_t dropped = 0;
    pthread_mutex_lock(&e->lock);
    struct cexec_batch **pp = &e->head, *last = NULL;
    while (*pp) {
        struct cexec_batch *b = *pp;
        if (b->w.job == job) {
            *pp = b->next;
            dropped += b->w.count;
            cexec_batch_free(b);
        } else {
            last = b;
            pp = &b->next;
        }
    }
    e->tail = last;
    pthread_mutex_unlock(&e->lock);
    atomic_fetch_sub(&e->held, dropped);
    return dropped;
}

uint64_t cexec_held(const cexec_t *e)
{
    return atomic_load(&((cexec_t *)e)->held);
}

/* The calibration runs on the caller's thread with the executor's lanes,
 * before any batch: the matrix is diagonally dominant, so never singular. */
double cexec_calibrate(cexec_t *e)
{
    size_t n = CALIB_N;
    double *a = malloc(sizeof(double) * n * n);
    if (a == NULL)
        return 1;
    struct gj_opts o = {.pool = e->pool, .threads = e->threads};
    unsigned runs = 0;
    uint64_t t0 = now_ms(), t;
    do {
        for (size_t i = 0; i < n * n; i++)
            a[i] = (double)((i * 7919) % 1000) / 1000.0 + (i % (n + 1) == 0 ? (double)n : 0);
        if (gj_invert(a, n, &o, NULL) < 0)
            break;
        runs++;
    } while ((t = now_ms()) - t0 < CALIB_MS);
    free(a);
    double s = (double)(now_ms() - t0) / 1000.0;
    return runs && s > 0 ? 2.0 * (double)n * (double)n * (double)n * runs / s / 1e9 : 1;
}

void cexec_destroy(cexec_t *e)
{
    if (e == NULL)
        return;
    pthread_mutex_lock(&e->lock);
    atomic_store(&e->stopping, true);
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
    pthread_join(e->runner, NULL);
    while (e->head) {
        struct cexec_batch *b = e->head;
        e->head = b->next;
        cexec_batch_free(b);
    }
    if (atomic_load(&e->posts) == 0) /* else the last post the ring runs frees it */
        cexec_free(e);
}
