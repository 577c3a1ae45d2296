/*
 * pool — a fixed set of pthreads working through a bounded FIFO queue.
 *
 * For CPU work the I/O threads must not do themselves: hashing, matrix
 * kernels, disk scans. Workers never touch loop or connection state; a task
 * that has a result (or a large buffer) for a loop hands it over with
 * ring_post(), and with ring_post_wait() when the loop's queue is full.
 * Workers run with every asynchronous signal blocked (SIGTERM, SIGINT and
 * SIGHUP reach the ring's signalfd, never a worker), whatever the creating
 * thread had blocked.
 */
#ifndef CONVOY_POOL_H
#define CONVOY_POOL_H

#include <stddef.h>

typedef struct pool pool_t;
typedef void (*pool_fn)(void *arg);

/*
 * Starts nthreads workers (0 means one per online CPU, at most 1024) with
 * room for capacity queued tasks (1 to 2^20). Returns 0, -EINVAL, or -errno
 * (nothing is left running).
 */
int pool_create(pool_t **out, unsigned nthreads, unsigned capacity);

/* Queues fn(arg); blocks while the queue is full. 0, or -ESHUTDOWN once
 * pool_destroy() has begun. For threads that may wait; never an I/O thread. */
int pool_submit(pool_t *p, pool_fn fn, void *arg);

/* As pool_submit() but returns -EAGAIN at once instead of waiting. What an
 * I/O thread uses: on -EAGAIN it keeps the work (or refuses the request
 * that asked for it) and tries again later, so that its loop never blocks. */
int pool_try_submit(pool_t *p, pool_fn fn, void *arg);

/*
 * Fork-join: runs fn(arg, i) for every i in [0, n) on the workers and on the
 * calling thread, and returns when all n have finished. The caller takes
 * part, and helpers no worker picked up are withdrawn when the caller runs
 * out of indices, so this never deadlocks when the queue is full, when every
 * worker is busy, or when called from a worker (also while pool_destroy()
 * drains the queue). No allocation; a few microseconds of overhead per call.
 * Indices are claimed one at a time: give each a useful amount of work.
 * Returns 0, or -EAGAIN if the queue had no room for any helper (the caller
 * then ran all n itself, so the work is still done).
 */
int pool_parallel(pool_t *p, size_t n, void (*fn)(void *arg, size_t i), void *arg);

/* Number of worker threads. */
unsigned pool_threads(const pool_t *p);

/*
 * Refuses new tasks (pool_submit() and pool_try_submit() return -ESHUTDOWN,
 * including those blocked on a full queue), runs every task already queued,
 * joins the workers and frees the pool. Must not be called from a task, and
 * nothing may call into p once it has returned.
 */
void pool_destroy(pool_t *p);

#endif
