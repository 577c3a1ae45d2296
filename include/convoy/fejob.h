/*
 * fejob — one job at the front-end: its ledger (ledger.h) joined to its
 * spool (spool.h), so that what counts is what is stored.
 *
 * A RESULT goes through fejob_result: the ledger decides which of its items
 * count (the first answer for each), and exactly those items' records and
 * inverses are written to the spool, at their place, on the caller's ring
 * (the disk never stalls its loop); the caller hears when they are. Opening a job that is already
 * in the spool (a restarted front-end) reads its records back into a fresh ledger: every item
 * stored is done, every other one unsent, to be delegated again.
 *
 * No lock, no I/O thread of its own: the front-end's job thread owns it.
 */
#ifndef CONVOY_FEJOB_H
#define CONVOY_FEJOB_H

#include "convoy/ledger.h"
#include "convoy/spool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An item's outcome, as RESULT names it (0 in a record: not done). */
enum fejob_status {
    FEJOB_OK = 1,
    FEJOB_SINGULAR,
    FEJOB_INVALID,
};

/* "ok", "singular", "invalid"; "unknown". */
const char *fejob_status_str(enum fejob_status s);

/* Parses a name fejob_status_str returns. 0, or -EINVAL. */
int fejob_status_parse(const char *s, enum fejob_status *out);

/* One RESULT, decoded (the codec is chain_msg.h's). */
struct fejob_result {
    uint64_t first;
    uint32_t count;
    const uint8_t *status; /* count codes, enum fejob_status */
    const double *resid;   /* count residuals (NaN: none), or NULL */
    uint32_t ms;           /* the batch's compute time */
    const double *data;    /* count · n · n inverses when the job has output, else NULL */
    uint64_t sid;          /* the control session it came on */
    const char *server;    /* that session's server name */
    const uint64_t *sum;   /* count checksums (a job without output), or NULL */
};

struct fejob_counts {
    uint64_t ok, singular, invalid;
    struct ledger_counts l;
};

struct fejob;

/*
 * Opens job id of items items of order n in sp: output says whether its
 * inverses are kept (result.npy, header hdr of hlen bytes, as the caller's
 * npy writer makes it). Creates the result files, or reads back the
 * records of a job already there. 0, -EINVAL, -ENOMEM, or spool's errors.
 */
int fejob_open(struct spool *sp, uint64_t id, uint64_t items, uint32_t n, bool output,
               const void *hdr, size_t hlen, struct fejob **out);
void fejob_close(struct fejob *j);

/* The job's ledger, for WORK sent, ACCEPTED and servers down. */
struct ledger *fejob_ledger(struct fejob *j);

/* Its spooled results, for reading records back (spool_job_get). */
struct spool_job *fejob_spool(struct fejob *j);

/*
 * Counts r and starts storing what counted on ring: returns the items
 * newly done (0 for a duplicate or a dead session's), -EINVAL (a status
 * code out of range: nothing counted), -ERANGE, or a spool error that came
 * before any write started (the items then count as done but their
 * records are missing: the caller stops the job). done(arg, err) runs
 * once from the loop, if and only if the return is above 0, when every
 * write has ended (err: the first one's error); r->data must stay until
 * then. Closing j meanwhile is fine.
 */
long fejob_result(struct fejob *j, const struct fejob_result *r, ring_t *ring,
                  void (*done)(void *arg, int err), void *arg);

void fejob_counts(const struct fejob *j, struct fejob_counts *out);

#endif
