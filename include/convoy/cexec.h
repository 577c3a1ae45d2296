/*
 * cexec — a compute server's executor: batches of matrices inverted with
 * gj on every core, one batch at a time, in the order they came.
 *
 * One runner thread takes batches from a FIFO and inverts each on a pool
 * of threads - 1 workers and itself (gj_invert_batch for n up to
 * GJ_GROUP_N_MAX, one matrix at a time on all lanes above it), generating
 * the inputs of a generated batch first (jgen.h); the finished batch goes
 * back to the ring's thread through ring_post, where done runs. Queued
 * batches of a job can be withdrawn (CANCEL); the one running finishes.
 * Every call but the runner's is made on the ring's thread.
 */
#ifndef CONVOY_CEXEC_H
#define CONVOY_CEXEC_H

#include "convoy/chain_msg.h"
#include "convoy/ring.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct cexec cexec_t;

/* One batch: a WORK's kept items. */
struct cexec_batch {
    struct chain_work w; /* job, first, count, n, residual, output, gen */
    double *data;        /* count · n · n, owned; gen: allocated by the runner */
    uint8_t *status;     /* out: count enum gj_status */
    double *resid;       /* out: count residuals (NaN: none) */
    uint64_t *sum;       /* out, without output: count chain_sum of the inverses (0: not ok) */
    uint32_t ms;         /* out: time the batch took */
    int err;             /* out: 0, or -ENOMEM / -EINVAL (no item computed) */
    void *udata;         /* the owner's, once done */
    struct cexec_batch *next;
};

/* A batch of w's items with room for its data (none with gen). NULL on
 * allocation failure. */
struct cexec_batch *cexec_batch_new(const struct chain_work *w);
void cexec_batch_free(struct cexec_batch *b);

/* Runs on the ring's thread for every batch computed; b is the callee's. */
typedef void (*cexec_done_fn)(void *arg, struct cexec_batch *b);

/* Starts the runner and threads - 1 workers (0: one per CPU). 0 or -errno. */
int cexec_create(cexec_t **out, ring_t *r, unsigned threads, cexec_done_fn done, void *arg);

/* Lanes a batch runs on. */
unsigned cexec_threads(const cexec_t *e);

/* Queues b (now the executor's). */
void cexec_submit(cexec_t *e, struct cexec_batch *b);

/* Withdraws and frees every queued batch of job: the items dropped. */
uint64_t cexec_cancel(cexec_t *e, uint64_t job);

/* Items queued or running. */
uint64_t cexec_held(const cexec_t *e);

/* GFLOP/s of the kernel on this machine, from about 100 ms of work at
 * n = 256 on every lane: the weight a server announces. */
double cexec_calibrate(cexec_t *e);

/* Stops the runner after the batch it runs (queued ones are dropped;
 * their done does not run) and frees everything. */
void cexec_destroy(cexec_t *e);

#endif
