/*
 * pool: every task runs exactly once, a full queue blocks or refuses,
 * destroy drains the queue, pool_parallel covers each index once from
 * any thread, even when no worker is free, and workers never take the
 * signals meant for the signalfd.
 *
 * A "gate" task parks a worker until the test opens it, so that the queue
 * can be filled deterministically. It opens by itself after a few seconds,
 * so that a bug shows up as a failed assertion rather than a hung runner.
 */
#include "convoy/pool.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool started; /* the gate task is running on a worker */
    bool open;    /* the test let it finish */
};

#define GATE_INIT                                                                                  \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false                          \
    }

static void gate_task(void *arg)
{
    struct gate *g = arg;
    struct timespec limit;
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += 5;
    pthread_mutex_lock(&g->lock);
    g->started = true;
    pthread_cond_broadcast(&g->cond);
    while (!g->open && pthread_cond_timedwait(&g->cond, &g->lock, &limit) == 0)
        ;
    pthread_mutex_unlock(&g->lock);
}

static void gate_wait_started(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    while (!g->started)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

static bool gate_is_open(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    bool open = g->open;
    pthread_mutex_unlock(&g->lock);
    return open;
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* Per-index run counters, shared by tasks and pool_parallel bodies. */
struct tally {
    size_t n;
    atomic_uint *runs;
};

static void tally_init(struct tally *t, size_t n)
{
    t->n = n;
    t->runs = calloc(n ? n : 1, sizeof t->runs[0]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t->runs);
}

/* True when every index ran exactly once; frees the counters. */
static bool tally_once(struct tally *t)
{
    bool ok = true;
    for (size_t i = 0; i < t->n; i++)
        ok = ok && atomic_load(&t->runs[i]) == 1;
    free(t->runs);
    return ok;
}

static void count_index(void *arg, size_t i)
{
    struct tally *t = arg;
    atomic_fetch_add(&t->runs[i], 1);
}

/* A task that counts one run in a plain counter. */
static void count_task(void *arg)
{
    atomic_fetch_add((atomic_uint *)arg, 1);
}

struct slot {
    struct tally *t;
    size_t i;
};

static void count_slot(void *arg)
{
    struct slot *s = arg;
    count_index(s->t, s->i);
}

static void test_every_task_once(void)
{
    enum { N = 5000 };
    pool_t *p;
    CU_ASSERT_EQUAL_FATAL(pool_create(&p, 4, 4), 0);
    CU_ASSERT_EQUAL(pool_threads(p), 4);
    struct tally t;
    tally_init(&t, N);
    struct slot *slots = calloc(N, sizeof *slots);
    CU_ASSERT_PTR_NOT_NULL_FATAL(slots);
    for (size_t i = 0; i < N; i++) {
        slots[i] = (struct slot){&t, i};
        CU_ASSERT_EQUAL(pool_submit(p, count_slot, &slots[i]), 0);
    }
    pool_destroy(p);
    CU_ASSERT_TRUE(tally_once(&t));
    free(slots);
}

static void test_default_threads(void)
{
    pool_t *p;
    CU_ASSERT_EQUAL_FATAL(pool_create(&p, 0, 1), 0);
    CU_ASSERT_EQUAL(pool_threads(p), (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
    pool_destroy(p);
    CU_ASSERT_EQUAL(pool_create(&p, 1, 0), -EINVAL);
}

static void test_try_submit_full(void)
{
    pool_t *p;
    struct gate g = GATE_INIT;
    atomic_uint runs = 0;
    CU_ASSERT_EQUAL_FATAL(pool_create(&p, 1, 2), 0);
    CU_ASSERT_EQUAL(pool_submit(p, gate_task, &g), 0);
    gate_wait_started(&g);
    CU_ASSERT_EQUAL(pool_try_submit(p, count_task, &runs), 0);
    CU_ASSERT_EQUAL(pool_try_submit(p, count_task, &runs), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CU_ASSERT_EQUAL(pool_try_submit(p, count_task, &runs), -EAGAIN);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* At once: a wait would last until the gate opens by itself, seconds later. */
    CU_ASSERT_TRUE((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 100000000L);
    CU_ASSERT_FALSE(gate_is_open(&g));
    gate_open(&g);
    pool_destroy(p);
    CU_ASSERT_EQUAL(atomic_load(&runs), 2);
}

struct submitter {
    pool_t *p;
    atomic_uint *runs;
    int rc;
};

static void *submit_main(void *arg)
{
    struct submitter *s = arg;
    s->rc = pool_submit(s->p, count_task, s->runs);
    return NULL;
}

static void *destroy_main(void *arg)
{
    pool_destroy(arg);
    return NULL;
}

/*
 * The worker is parked and the queue is full; destroy begins in another
 * thread. New tasks (queued or blocked) are refused, every queued one runs;
 * pool_parallel still works (here the queue is full, so the caller does it all).
 * The pool cannot be freed before the gate opens, so polling it is safe.
 */
static void test_destroy_drains(void)
{
    enum { CAP = 32 };
    pool_t *p;
    struct gate g = GATE_INIT;
    atomic_uint runs = 0;
    CU_ASSERT_EQUAL_FATAL(pool_create(&p, 1, CAP), 0);
    CU_ASSERT_EQUAL(pool_submit(p, gate_task, &g), 0);
    gate_wait_started(&g);
    for (int i = 0; i < CAP; i++)
        CU_ASSERT_EQUAL(pool_submit(p, count_task, &runs), 0);
    struct submitter sub = {p, &runs, 1};
    pthread_t st, dt;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&st, NULL, submit_main, &sub), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&dt, NULL, destroy_main, p), 0);
    int rc;
    while ((rc = pool_try_submit(p, count_task, &runs)) == -EAGAIN)
        usleep(1000);
    CU_ASSERT_EQUAL(rc, -ESHUTDOWN);
    pthread_join(st, NULL);
    CU_ASSERT_EQUAL(sub.rc, -ESHUTDOWN);
    struct tally t;
    tally_init(&t, 3);
    CU_ASSERT_EQUAL(pool_parallel(p, 3, count_index, &t), -EAGAIN);
    CU_ASSERT_TRUE(tally_once(&t));
    gate_open(&g);
    pthread_join(dt, NULL);
    CU_ASSERT_EQUAL(atomic_load(&runs), CAP);
}

static void check_parallel(pool_t *p, size_t n)
{
    struct tally t;
    tally_init(&t, n);
    CU_ASSERT_EQUAL(pool_parallel(p, n, count_index, &t), 0);
    CU_ASSERT_TRUE(tally_once(&t));
}

static void test_parallel_sizes(void)
{
    pool_t *p;
    CU_ASSERT_EQUAL_FATAL(pool_create(&p, 3, 16), 0);
    const size_t sizes[] = {0, 1, 2, 3, 4, 100000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        check_parallel(p, sizes[k]);
    /* Many short calls in a row: cancelled helpers must not clog the queue. */
    for (int rep = 0; rep < 2000; rep++)
        check_parallel(p, 8);
    pool_destroy(p);
}

struct who {
    pthread_t ids[64];
};

static void record_thread(void *arg, size_t i)
{
    struct who *w = arg;
    w->ids[i] = pthread_self();
    usleep(1000);
}

/* With idle workers and slow items, the workers really take part. */
static void test_parallel_uses_workers(void)
{
    pool_t *p;
    struct who w;
    CU_ASSERT_EQUAL_FATAL(pool_create(&p, 4, 16), 0);
    CU_ASSERT_EQUAL(pool_parallel(p, 64, record_thread, &w), 0);
    pool_destroy(p);
    unsigned others = 0;
    for (size_t i = 0; i < 64; i++)
        others += !pthread_equal(w.ids[i], pthread_self());
    CU_ASSERT_TRUE(others > 0);
}

struct nested {
    pool_t *p;
    struct tally t;
    int rc;
};

static void nested_task(void *arg)
{
    struct nested *job = arg;
    job->rc = pool_parallel(job->p, job->t.n, count_index, &job->t);
}

/*
 * Every worker is inside pool_parallel at once: none is free to help, and
 * the queue is often full (-EAGAIN: the caller did all the work).
 */
static void test_parallel_from_workers(void)
{
    enum { THREADS = 3, JOBS = 12 };
    pool_t *p;
    struct nested jobs[JOBS];
    CU_ASSERT_EQUAL_FATAL(pool_create(&p, THREADS, 4), 0);
    for (int j = 0; j < JOBS; j++) {
        jobs[j] = (struct nested){.p = p, .rc = 1};
        tally_init(&jobs[j].t, 2000 + (size_t)j);
        CU_ASSERT_EQUAL(pool_submit(p, nested_task, &jobs[j]), 0);
    }
    pool_destroy(p);
    for (int j = 0; j < JOBS; j++) {
        CU_ASSERT(jobs[j].rc == 0 || jobs[j].rc == -EAGAIN);
        CU_ASSERT_TRUE(tally_once(&jobs[j].t));
    }
}

/*
 * The only worker is parked. With room in the queue the helpers are queued
 * but never start: the caller must cancel them rather than wait for the
 * gate. With the queue full none can be queued: -EAGAIN, work still done.
 */
static void test_parallel_no_free_worker(void)
{
    pool_t *p;
    struct gate g = GATE_INIT;
    atomic_uint runs = 0;
    CU_ASSERT_EQUAL_FATAL(pool_create(&p, 1, 2), 0);
    CU_ASSERT_EQUAL(pool_submit(p, gate_task, &g), 0);
    gate_wait_started(&g);
    check_parallel(p, 100);
    CU_ASSERT_FALSE(gate_is_open(&g));
    CU_ASSERT_EQUAL(pool_submit(p, count_task, &runs), 0);
    CU_ASSERT_EQUAL(pool_submit(p, count_task, &runs), 0);
    struct tally t;
    tally_init(&t, 100);
    CU_ASSERT_EQUAL(pool_parallel(p, 100, count_index, &t), -EAGAIN);
    CU_ASSERT_TRUE(tally_once(&t));
    gate_open(&g);
    pool_destroy(p);
    CU_ASSERT_EQUAL(atomic_load(&runs), 2);
}

/* What a task saw of its worker's signal mask. */
struct mask_probe {
    sigset_t worker;  /* the worker's mask, read inside a task */
    sigset_t creator; /* the creating thread's mask after pool_create */
    int rc;
};

static void read_mask(void *arg)
{
    struct mask_probe *m = arg;
    m->rc = pthread_sigmask(SIG_BLOCK, NULL, &m->worker);
}

static const int stop_signals[] = {SIGTERM, SIGINT, SIGHUP};

/* Creates the pool from a thread that has the stop signals unblocked. */
static void *creator_main(void *arg)
{
    struct mask_probe *m = arg;
    sigset_t open;
    sigemptyset(&open);
    for (size_t i = 0; i < sizeof stop_signals / sizeof stop_signals[0]; i++)
        sigaddset(&open, stop_signals[i]);
    m->rc = pthread_sigmask(SIG_UNBLOCK, &open, NULL);
    pool_t *p;
    if (m->rc == 0 && (m->rc = pool_create(&p, 1, 1)) == 0) {
        m->rc = pool_submit(p, read_mask, m);
        pool_destroy(p);
    }
    pthread_sigmask(SIG_BLOCK, NULL, &m->creator);
    return NULL;
}

/* Workers have the stop signals blocked even though their creator had
 * not, the creator's own mask is left alone, and faults stay unblocked. */
static void test_workers_block_signals(void)
{
    struct mask_probe m = {.rc = 1};
    pthread_t t;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, creator_main, &m), 0);
    pthread_join(t, NULL);
    CU_ASSERT_EQUAL_FATAL(m.rc, 0);
    for (size_t i = 0; i < sizeof stop_signals / sizeof stop_signals[0]; i++) {
        CU_ASSERT_EQUAL(sigismember(&m.worker, stop_signals[i]), 1);
        CU_ASSERT_EQUAL(sigismember(&m.creator, stop_signals[i]), 0);
    }
    CU_ASSERT_EQUAL(sigismember(&m.worker, SIGSEGV), 0);
}

void suite_pool(void)
{
    CU_pSuite s = CU_add_suite("pool", NULL, NULL);
    CU_add_test(s, "every task runs once through a small queue", test_every_task_once);
    CU_add_test(s, "thread count and bounds", test_default_threads);
    CU_add_test(s, "try_submit on a full queue", test_try_submit_full);
    CU_add_test(s, "destroy refuses new tasks and drains the queue", test_destroy_drains);
    CU_add_test(s, "parallel covers every index once", test_parallel_sizes);
    CU_add_test(s, "parallel uses the workers", test_parallel_uses_workers);
    CU_add_test(s, "parallel from inside every worker", test_parallel_from_workers);
    CU_add_test(s, "parallel with no free worker", test_parallel_no_free_worker);
    CU_add_test(s, "workers block the stop signals", test_workers_block_signals);
}
