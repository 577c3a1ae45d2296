/*
 * spool — the front-end's jobs on disk under --data DIR.
 *
 * One directory per job, DIR/jobs/<id>/ (id in decimal):
 *   job.json    the job as submitted (written once, atomically: .tmp + rename)
 *   input.npy   the uploaded matrices, when the job has any (spool_input_path)
 *   result.npy  a header the caller gives (the .npy header) followed by
 *               items · item_bytes of results, item i at header + i · item_bytes,
 *               made sparse at its full size and filled as results come
 *   items.rec   one fixed struct spool_rec per item, status 0 until it is done
 * Results are written at their place, never gathered in memory: a job
 * costs disk, not RAM; result.npy goes through dio, around the page cache
 * when its header, item size and buffers allow it (DIO_ALIGN). A record is written after its result
 * bytes, so a record that says done always has its bytes; a front-end restarted reads the records
 * back (spool_job_records) to know which items are done, and spool_list to find every job.
 *
 * No thread of its own; a job handle is used by one thread at a time.
 */
#ifndef CONVOY_SPOOL_H
#define CONVOY_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "convoy/ring.h"

#define SPOOL_SERVER_MAX 48 /* a server name in a record, with its NUL */

/* What is known of one item once done (status 0: not done yet). */
struct spool_rec {
    uint32_t status;               /* 0 not done; else the caller's status code */
    uint32_t ms;                   /* its compute time */
    double resid;                  /* its residual, NaN when none */
    uint64_t sum;                  /* its result's checksum, 0 when none */
    char server[SPOOL_SERVER_MAX]; /* the server that computed it */
};

struct spool;
struct spool_job;

/* Opens (creating as needed) the spool under dir. 0, or -errno. */
int spool_open(const char *dir, struct spool **out);
void spool_close(struct spool *sp);

/* Creates job id's directory and its job.json (len bytes). 0, -EEXIST,
 * or -errno. */
int spool_job_create(struct spool *sp, uint64_t id, const char *json, size_t len);

/* The path of job id's file name ("input.npy", "job.json", "result.npy")
 * into buf. 0, or -ENAMETOOLONG. */
int spool_path(const struct spool *sp, uint64_t id, const char *name, char *buf, size_t len);

/*
 * Opens job id's results for items items of item_bytes each (0: no result
 * bytes, records only). The first open creates result.npy (header of
 * hlen bytes, then the items, sparse) and items.rec; a later one (after a
 * restart) checks their sizes. 0, -EINVAL (sizes differ), or -errno.
 */
int spool_job_open(struct spool *sp, uint64_t id, uint64_t items, uint64_t item_bytes,
                   const void *header, size_t hlen, struct spool_job **out);
void spool_job_close(struct spool_job *j);

/* Stores items first … first+count-1 on ring r while its loop goes on:
 * count records and, when item_bytes is not 0, count · item_bytes of data,
 * the data first, then the records (copied: recs may go when this
 * returns; data must stay until done). done(arg, err) runs once from the
 * loop when both are written, or with the first error (-errno). Closing j
 * meanwhile is fine: the files stay open until the writes end. 0 (done
 * will run), -ERANGE or -ENOMEM (it will not). */
int spool_job_put_start(struct spool_job *j, ring_t *r, uint64_t first, uint32_t count,
                        const struct spool_rec *recs, const void *data,
                        void (*done)(void *arg, int err), void *arg);

/* Reads count records from first into recs. 0, -ERANGE, or -errno. */
int spool_job_get(struct spool_job *j, uint64_t first, uint32_t count, struct spool_rec *recs);

/* Calls fn for every run of done items (consecutive records with a
 * status) in order, a run cut where a chunk of records read ends; stops at fn's negative return. 0,
 * that return, or -errno. */
int spool_job_records(struct spool_job *j,
                      int (*fn)(void *arg, uint64_t first, uint32_t count,
                                const struct spool_rec *recs),
                      void *arg);

/* Calls fn with every job id in the spool, in increasing order; stops at
 * fn's negative return. 0, that return, or -errno. */
int spool_list(struct spool *sp, int (*fn)(void *arg, uint64_t id), void *arg);

/* Removes job id's directory and files. 0, or -errno. */
int spool_job_remove(struct spool *sp, uint64_t id);

#endif
