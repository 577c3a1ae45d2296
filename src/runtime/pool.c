/*
 * pool — a fixed set of pthreads working through a bounded FIFO queue.
 *
 * The design is simple: one mutex guards a ring of {fn, arg} slots; workers
 * wait in a while loop on "queue not empty or stopping", pop one task, drop
 * the lock and run it (libuv's threadpool does the same). Submitters wait on
 * "queue not full". Slots are addressed by two ever-growing sequence numbers,
 * pushed and popped, so slot seq % capacity is where task number seq lives.
 *
 * pool_parallel() is fork-join with no allocation: the job lives on the
 * caller's stack, helpers claim indices from an atomic counter, and the
 * caller claims them too. Helper entries still queued when the caller has
 * run out of indices are withdrawn, found through their sequence numbers:
 * taken back if they are still the tail of the queue (the common case),
 * else their slot's fn is set to NULL. The caller then waits only for the
 * helpers that did start. So no queued task can reach a dead stack frame,
 * and the caller never waits for a worker that is busy elsewhere — which is
 * what makes calls from inside a worker, or with a full queue, safe.
 *
 * Workers are created with every asynchronous signal blocked, whatever the
 * creating thread had blocked: SIGTERM, SIGINT and SIGHUP belong to the
 * ring's signalfd, and a worker that took one would run its default action
 * or a handler in the middle of a task. Faults (SIGSEGV and friends) stay
 * unblocked so that a crash still reaches its handler (sanitizers report
 * from there).
 */
#include "convoy/pool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

enum {
    POOL_MAX_THREADS = 1024,
    POOL_MAX_CAPACITY = 1 << 20,
};

struct task {
    pool_fn fn; /* NULL: a cancelled pool_parallel helper, skipped */
    void *arg;
};

struct pool {
    pthread_mutex_t lock;
    pthread_cond_t not_empty; /* workers: a task was queued, or stop */
    pthread_cond_t not_full;  /* submitters: a slot was freed, or stop */
    pthread_cond_t left;      /* pool_parallel callers and destroy: a waiter may proceed */
    struct task *ring;        /* capacity slots */
    uint64_t pushed;          /* tasks ever queued; the next one goes to pushed % capacity */
    uint64_t popped;          /* tasks ever taken */
    unsigned capacity;
    unsigned nthreads;
    unsigned started;    /* threads actually created */
    unsigned blocked;    /* submitters asleep on not_full; destroy waits for them */
    bool stop;           /* pool_destroy() has begun */
    pthread_t threads[]; /* nthreads */
};

/* One pool_parallel() call, on its caller's stack. */
struct par_job {
    void (*fn)(void *arg, size_t i);
    void *arg;
    size_t n;
    atomic_size_t next; /* the next index to claim */
    unsigned running;   /* helpers inside par_help(); under pool lock */
};

static void par_help(void *arg);

static unsigned queued(const pool_t *p)
{
    return (unsigned)(p->pushed - p->popped);
}

/* Called with the lock held and a free slot. */
static void push(pool_t *p, pool_fn fn, void *arg)
{
    p->ring[p->pushed % p->capacity] = (struct task){fn, arg};
    p->pushed++;
    pthread_cond_signal(&p->not_empty);
}

/*
 * Called with the lock held. Waits for a live task and takes it; returns
 * false once the pool is stopping and the queue is empty. A helper is
 * counted as running before the lock is dropped, so its caller cannot
 * return under it.
 */
static bool take(pool_t *p, struct task *t)
{
    for (;;) {
        while (queued(p) == 0 && !p->stop)
            pthread_cond_wait(&p->not_empty, &p->lock);
        if (queued(p) == 0)
            return false;
        *t = p->ring[p->popped % p->capacity];
        p->popped++;
        pthread_cond_signal(&p->not_full);
        if (t->fn == par_help)
            ((struct par_job *)t->arg)->running++;
        if (t->fn != NULL)
            return true;
    }
}

static void *worker_main(void *arg)
{
    pool_t *p = arg;
    struct task t;
    pthread_mutex_lock(&p->lock);
    while (take(p, &t)) {
        pthread_mutex_unlock(&p->lock);
        t.fn(t.arg);
        pthread_mutex_lock(&p->lock);
        if (t.fn == par_help && --((struct par_job *)t.arg)->running == 0)
            pthread_cond_broadcast(&p->left);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Stops and joins the started workers and frees the pool (the lock is not held). */
static void stop_and_free(pool_t *p)
{
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->not_empty);
    pthread_cond_broadcast(&p->not_full);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->started; i++)
        pthread_join(p->threads[i], NULL);
    /* A submitter woken by the broadcast may not have left pool_submit yet. */
    pthread_mutex_lock(&p->lock);
    while (p->blocked > 0)
        pthread_cond_wait(&p->left, &p->lock);
    pthread_mutex_unlock(&p->lock);
    pthread_cond_destroy(&p->left);
    pthread_cond_destroy(&p->not_full);
    pthread_cond_destroy(&p->not_empty);
    pthread_mutex_destroy(&p->lock);
    free(p->ring);
    free(p);
}

/* Attributes that start a worker with the signal mask described at the top.
 * 0 or an error number, as pthread functions return. */
static int worker_attr(pthread_attr_t *attr)
{
    static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT};
    sigset_t set;
    sigfillset(&set);
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
        sigdelset(&set, faults[i]);
    int rc = pthread_attr_init(attr);
    if (rc != 0)
        return rc;
    if ((rc = pthread_attr_setsigmask_np(attr, &set)) != 0)
        pthread_attr_destroy(attr);
    return rc;
}

static int init_sync(pool_t *p)
{
    int rc = pthread_mutex_init(&p->lock, NULL);
    if (rc != 0)
        return -rc;
    if ((rc = pthread_cond_init(&p->not_empty, NULL)) != 0)
        goto fail_lock;
    if ((rc = pthread_cond_init(&p->not_full, NULL)) != 0)
        goto fail_empty;
    if ((rc = pthread_cond_init(&p->left, NULL)) != 0)
        goto fail_full;
    return 0;
fail_full:
    pthread_cond_destroy(&p->not_full);
fail_empty:
    pthread_cond_destroy(&p->not_empty);
fail_lock:
    pthread_mutex_destroy(&p->lock);
    return -rc;
}

int pool_create(pool_t **out, unsigned nthreads, unsigned capacity)
{
    if (nthreads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = cpus > 0 ? (unsigned)cpus : 1;
    }
    if (nthreads > POOL_MAX_THREADS || capacity == 0 || capacity > POOL_MAX_CAPACITY)
        return -EINVAL;
    pool_t *p = calloc(1, sizeof *p + nthreads * sizeof p->threads[0]);
    if (p == NULL)
        return -ENOMEM;
    p->ring = calloc(capacity, sizeof p->ring[0]);
    if (p->ring == NULL) {
        free(p);
        return -ENOMEM;
    }
    p->capacity = capacity;
    p->nthreads = nthreads;
    int rc = init_sync(p);
    if (rc < 0) {
        free(p->ring);
        free(p);
        return rc;
    }
    pthread_attr_t attr;
    if ((rc = worker_attr(&attr)) != 0)
        goto fail;
    for (; p->started < nthreads; p->started++) {
        rc = pthread_create(&p->threads[p->started], &attr, worker_main, p);
        if (rc != 0)
            break;
    }
    pthread_attr_destroy(&attr);
    if (rc != 0)
        goto fail;
    *out = p;
    return 0;
fail:
    stop_and_free(p);
    return -rc;
}

/* Queues one task; wait says whether to sleep while the queue is full. */
static int submit(pool_t *p, pool_fn fn, void *arg, bool wait)
{
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    while (wait && !p->stop && queued(p) == p->capacity) {
        p->blocked++;
        pthread_cond_wait(&p->not_full, &p->lock);
        p->blocked--;
    }
    if (p->stop) {
        rc = -ESHUTDOWN;
        pthread_cond_broadcast(&p->left); /* destroy may be waiting for us to leave */
    } else if (queued(p) == p->capacity) {
        rc = -EAGAIN;
    } else {
        push(p, fn, arg);
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int pool_submit(pool_t *p, pool_fn fn, void *arg)
{
    return submit(p, fn, arg, true);
}

int pool_try_submit(pool_t *p, pool_fn fn, void *arg)
{
    return submit(p, fn, arg, false);
}

/* Runs indices until none is left; shared by the caller and its helpers. */
static void par_run(struct par_job *job)
{
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
        if (i >= job->n)
            return;
        job->fn(job->arg, i);
    }
}

static void par_help(void *arg)
{
    par_run(arg);
}

/*
 * Queues up to want helpers without waiting and returns how many were
 * queued, or -EAGAIN when the queue is full. *first gets the sequence number
 * of the first one. Helpers are queued even once destroy has begun: the
 * workers are still draining, and the caller takes back whatever they do not
 * reach, so the job cannot outlive this call.
 */
static int par_queue(pool_t *p, struct par_job *job, unsigned want, uint64_t *first)
{
    pthread_mutex_lock(&p->lock);
    unsigned room = p->capacity - queued(p);
    unsigned k = want < room ? want : room;
    *first = p->pushed;
    for (unsigned j = 0; j < k; j++)
        push(p, par_help, job);
    pthread_mutex_unlock(&p->lock);
    return k > 0 ? (int)k : -EAGAIN;
}

/*
 * Cancels the helpers of job that no worker took and waits for the others.
 * Helpers still at the tail of the queue are taken back, freeing their
 * slots; ones with later tasks behind them are left as NULL entries.
 */
static void par_join(pool_t *p, struct par_job *job, uint64_t first, unsigned k)
{
    uint64_t end = first + k;
    pthread_mutex_lock(&p->lock);
    uint64_t from = first > p->popped ? first : p->popped;
    if (from < end && p->pushed == end) {
        p->pushed = from;
        pthread_cond_broadcast(&p->not_full);
    }
    for (uint64_t seq = from; seq < end && seq < p->pushed; seq++)
        p->ring[seq % p->capacity].fn = NULL;
    while (job->running > 0)
        pthread_cond_wait(&p->left, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

int pool_parallel(pool_t *p, size_t n, void (*fn)(void *arg, size_t i), void *arg)
{
    struct par_job job = {.fn = fn, .arg = arg, .n = n};
    atomic_init(&job.next, 0);
    if (n <= 1) {
        par_run(&job);
        return 0;
    }
    unsigned want = n - 1 < p->nthreads ? (unsigned)(n - 1) : p->nthreads;
    uint64_t first;
    int k = par_queue(p, &job, want, &first);
    par_run(&job);
    if (k < 0)
        return k;
    par_join(p, &job, first, (unsigned)k);
    return 0;
}

unsigned pool_threads(const pool_t *p)
{
    return p->nthreads;
}

void pool_destroy(pool_t *p)
{
    if (p != NULL)
        stop_and_free(p);
}
