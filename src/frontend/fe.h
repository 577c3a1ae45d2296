/*
 * fe — the front-end's state, shared by its two halves: the chain
 * (frontend.c: members, chain order, delegation, results) and the HTTP
 * API (feapi.c: jobs in, states and results out). Everything runs on the
 * one ring; no locks. Private to src/frontend/.
 */
#ifndef CONVOY_FRONTEND_FE_H
#define CONVOY_FRONTEND_FE_H

#include "convoy/clink.h"
#include "convoy/dio.h"
#include "convoy/shmlane.h"
#include "convoy/corder.h"
#include "convoy/fejob.h"
#include "convoy/frontend.h"
#include "convoy/hapi.h"
#include "convoy/jobtab.h"
#include "convoy/job.h"
#include "convoy/mbr_server.h"
#include "convoy/registry.h"
#include "convoy/spool.h"

#define FE_USER_MAX JOBTAB_USER_MAX

/* One job, from its POST to forever (its spool outlives the process). */
struct fjob {
    uint64_t id;
    uint32_t slot; /* its row in the job table */
    enum jobtab_state state;
    char user[FE_USER_MAX];
    const struct job_op *op;
    enum job_source source;
    enum job_output output;
    bool residuals;
    uint32_t priority; /* 0 … 9: higher jobs are fed first */
    double deadline_s; /* 0: none; past it, what is left is cancelled */
    uint32_t n;
    uint64_t items;
    uint64_t seed;
    char kind[JOB_KIND_MAX];
    dio_t *input;      /* input.npy, NULL for a generated job */
    uint64_t data_off; /* where its matrices start */
    uint64_t avail;    /* items whose matrices are in input (UINT64_MAX: all) */
    struct fejob *fj;
    uint32_t writes;                    /* RESULTs being written: done waits for them */
    uint64_t submitted_ms, finished_ms; /* wall clock */
    uint64_t moved_ms;                  /* ring_now_ms of its last WORK, ACCEPTED or RESULT */
    struct fjob *next;                  /* fe.jobs, in id order */
};

/* A compute server's lane of RESULT matrices (shmlane.h), held by the
 * member and by each RESULT still being written from it. */
struct fe_lane {
    shmlane_r_t *r;
    mbrs_session_t *s; /* where RELEASED goes; NULL once the server is gone */
    unsigned refs;
};

/* One compute server with a live session. */
struct fmember {
    mbrs_session_t *s;
    uint64_t sid;
    char name[REG_NAME_MAX];
    char addr[REG_ADDR_MAX];
    char host[REG_HOST_MAX]; /* its host id, "" when it offers no lane */
    struct fe_lane *lane;    /* once its first RESULT through one came */
    uint32_t weight, threads;
    double gflops;    /* measured while it computes (fe_measure) */
    uint32_t samples; /* batches measured */
};

struct fe {
    const struct fe_opts *o;
    ring_t *ring;
    pool_t *pool;
    users_t *users;
    tls_ctx_t *cli_tls, *ctl_tls, *http_tls;
    hapi_t *api;
    mbrs_t *mbr;
    struct reg_table reg;
    struct corder *chain;
    struct fmember members[REG_SERVERS];
    size_t nmembers;
    clink_t *head; /* the link to the chain's head */
    bool head_up;
    char head_name[REG_NAME_MAX];
    struct ring_timer redial;
    struct ring_timer watch; /* the stall watch */
    struct spool *spool;
    struct jobtab *tab;
    struct fjob *jobs;
    uint32_t slots_given; /* job-table slots handed out; then the oldest finished give way */
    uint64_t next_id;
    struct fe_result *results; /* RESULT bodies streaming in */
    uint32_t sends;            /* WORKs being read or sent */
    struct fe_send *ready;     /* read, waiting for room in the head's lane */
    uint32_t ios;              /* spool transfers on the ring: the loop ends after them */
    bool pumping, stopping, mbr_stopped;
};

/* ---- frontend.c, for the API ---- */

/* Puts job j's row in the job table (after any change). */
void fe_job_publish(struct fe *fe, struct fjob *j);

/* A job whose input is still coming (j->avail of its items are in): its
 * items are delegated as they arrive; it is neither shown nor kept until
 * fe_job_added. */
void fe_job_start(struct fe *fe, struct fjob *j);

/* A new job is in (started or not): assign it a slot, publish it, start
 * delegating. */
void fe_job_added(struct fe *fe, struct fjob *j);

/* Delegates what the jobs' windows allow, highest priority first. */
void fe_pump(struct fe *fe);

/* Forgets a started job whose upload broke: the servers drop its items, j
 * is freed. */
void fe_job_discard(struct fe *fe, struct fjob *j);

/* Cancels j: CANCEL to every server, its items no longer sent. */
void fe_job_cancel(struct fe *fe, struct fjob *j);

/* Opens (or reopens) j's results in the spool: 0 or -errno. */
int fe_job_open(struct fe *fe, struct fjob *j);
/* The header of j's spooled .npy files (input.npy as the front-end
 * writes it, result.npy), padded so that their items start at a DIO_ALIGN
 * boundary (read and written around the page cache, an item straight into
 * a lane): its length, or -ENOSPC when cap is under FE_NPY_HDR. */
#define FE_NPY_HDR DIO_ALIGN
int fe_npy_header(const struct fjob *j, uint8_t *hdr, size_t cap);

void fe_job_free(struct fjob *j);

struct fjob *fe_job_find(struct fe *fe, uint64_t id);

/* ---- feapi.c ---- */

int fe_api_start(struct fe *fe);

/* Writes j's meta.json (who, when, whether cancelled). 0 or -errno. */
int fe_api_meta(struct fe *fe, const struct fjob *j, bool cancelled);

/* The jobs a restarted front-end finds in its spool. 0 or -errno. */
int fe_api_recover(struct fe *fe);

#endif
