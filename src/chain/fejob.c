/*
 * fejob — a job's ledger and spool kept in step (see fejob.h).
 *
 * fejob_result hands the ledger a callback that writes each run the
 * ledger counts: its records (status, residual, time, server) and, with
 * output, its slice of the RESULT body, both taken from the RESULT at the
 * run's offset, through spool_job_put_start. Status counts are kept beside the ledger's, updated
 * for exactly those runs, and rebuilt from the records on open.
 */
#include "convoy/fejob.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PUT_CHUNK 256 /* records built at once */

struct fejob {
    struct spool_job *sj;
    struct ledger *l;
    uint64_t item_doubles; /* n · n with output, else 0 */
    uint64_t by_status[4]; /* indexed by enum fejob_status */
};

static const char *const fejob_names[] = {NULL, "ok", "singular", "invalid"};

const char *fejob_status_str(enum fejob_status s)
{
    return s >= FEJOB_OK && s <= FEJOB_INVALID ? fejob_names[s] : "unknown";
}

int fejob_status_parse(const char *s, enum fejob_status *out)
{
    for (int i = FEJOB_OK; i <= FEJOB_INVALID; i++)
        if (strcmp(s, fejob_names[i]) == 0) {
            *out = (enum fejob_status)i;
            return 0;
        }
    return -EINVAL;
}

/* The records a spooled run holds, counted and given to the ledger, one
 * ledger call per stretch computed by one server. */
static int restore_run(void *arg, uint64_t first, uint32_t count, const struct spool_rec *recs)
{
    struct fejob *j = arg;
    for (uint32_t i = 0; i < count;) {
        uint32_t k = i;
        while (k < count && strcmp(recs[k].server, recs[i].server) == 0) {
            if (recs[k].status < FEJOB_OK || recs[k].status > FEJOB_INVALID)
                return -EPROTO;
            j->by_status[recs[k].status]++;
            k++;
        }
        long rc = ledger_result(j->l, first + i, k - i, 0, recs[i].server, NULL, NULL);
        if (rc < 0)
            return (int)rc;
        i = k;
    }
    return 0;
}

int fejob_open(struct spool *sp, uint64_t id, uint64_t items, uint32_t n, bool output,
               const void *hdr, size_t hlen, struct fejob **out)
{
    if (n == 0 || items == 0)
        return -EINVAL;
    struct fejob *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    int rc = -ENOMEM;
    j->item_doubles = output ? (uint64_t)n * n : 0;
    if (!(j->l = ledger_new(items)))
        goto fail;
    rc = spool_job_open(sp, id, items, j->item_doubles * sizeof(double), hdr, hlen, &j->sj);
    if (rc < 0)
        goto fail;
    if ((rc = spool_job_records(j->sj, restore_run, j)) < 0)
        goto fail;
    *out = j;
    return 0;
fail:
    fejob_close(j);
    return rc;
}

void fejob_close(struct fejob *j)
{
    if (!j)
        return;
    spool_job_close(j->sj);
    ledger_free(j->l);
    free(j);
}

struct spool_job *fejob_spool(struct fejob *j)
{
    return j->sj;
}

struct ledger *fejob_ledger(struct fejob *j)
{
    return j->l;
}

/* One RESULT's writes: done runs when the last of them ends. */
struct store {
    struct fejob *j;
    const struct fejob_result *r;
    ring_t *ring;
    unsigned pending; /* writes under way, and 1 while fejob_result runs */
    uint64_t items;   /* in the writes started */
    int err;
    void (*done)(void *arg, int err);
    void *arg;
};

static void store_unref(struct store *s)
{
    if (--s->pending > 0)
        return;
    if (s->items > 0)
        s->done(s->arg, s->err);
    free(s);
}

static void store_put_done(void *arg, int err)
{
    struct store *s = arg;
    if (err < 0 && s->err == 0)
        s->err = err;
    store_unref(s);
}

/* Writes items first … first+count-1 of the RESULT: the run the ledger
 * just counted. */
static int store_run(void *arg, uint64_t first, uint32_t count)
{
    struct store *s = arg;
    const struct fejob_result *r = s->r;
    struct spool_rec recs[PUT_CHUNK];
    for (uint32_t done = 0; done < count;) {
        uint32_t k = count - done < PUT_CHUNK ? count - done : PUT_CHUNK;
        uint64_t at = first + done - r->first; /* index inside the RESULT */
        for (uint32_t i = 0; i < k; i++) {
            recs[i] = (struct spool_rec){.status = r->status[at + i],
                                         .ms = r->ms,
                                         .resid = r->resid ? r->resid[at + i] : NAN,
                                         .sum = r->sum ? r->sum[at + i] : 0};
            snprintf(recs[i].server, sizeof recs[i].server, "%s", r->server);
            s->j->by_status[r->status[at + i]]++;
        }
        const double *data = r->data ? r->data + at * s->j->item_doubles : NULL;
        int rc =
            spool_job_put_start(s->j->sj, s->ring, first + done, k, recs, data, store_put_done, s);
        if (rc < 0)
            return rc;
        s->pending++;
        s->items += k;
        done += k;
    }
    return 0;
}

long fejob_result(struct fejob *j, const struct fejob_result *r, ring_t *ring,
                  void (*done)(void *arg, int err), void *arg)
{
    for (uint32_t i = 0; i < r->count; i++)
        if (r->status[i] < FEJOB_OK || r->status[i] > FEJOB_INVALID)
            return -EINVAL;
    struct store *s = malloc(sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    *s = (struct store){.j = j, .r = r, .ring = ring, .pending = 1, .done = done, .arg = arg};
    long rc = ledger_result(j->l, r->first, r->count, r->sid, r->server, store_run, s);
    long items = (long)s->items;
    if (rc < 0 && s->err == 0)
        s->err = (int)rc;
    store_unref(s); /* the guard: done runs from the loop, when the last write ends */
    return items > 0 ? items : rc;
}

void fejob_counts(const struct fejob *j, struct fejob_counts *out)
{
    out->ok = j->by_status[FEJOB_OK];
    out->singular = j->by_status[FEJOB_SINGULAR];
    out->invalid = j->by_status[FEJOB_INVALID];
    ledger_counts(j->l, &out->l);
}
