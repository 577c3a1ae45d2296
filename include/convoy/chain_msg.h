/*
 * chain_msg — the messages of the compute chain (CHAIN_SET_NEXT, WORK,
 * ACCEPTED, RESULT, CANCEL, RELEASED), built by the front-end and the compute
 * servers and checked by whoever receives them. docs/protocol-chain.md
 * describes the exchange.
 *
 * Parsing is strict, as membership's: an unknown, missing or mistyped
 * field, an integer outside its C type, a name or address that is not
 * what it says, or sizes whose body would pass CHAIN_BODY_MAX are refused
 * (FRAME_ESCHEMA, the reason in why). Strings returned point into the
 * meta, valid as long as it is.
 */
#ifndef CONVOY_CHAIN_MSG_H
#define CONVOY_CHAIN_MSG_H

#include "convoy/frame.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#define CHAIN_N_MAX     8192u                  /* largest matrix order */
#define CHAIN_COUNT_MAX 65536u                 /* items in one WORK or RESULT */
#define CHAIN_BODY_MAX  (256ull * 1024 * 1024) /* bytes of matrices in one message */
#define CHAIN_KIND_MAX  16

/* CHAIN_SET_NEXT, front-end → compute server: who feeds it, whom it
 * feeds, and the weight of the chain behind it. */
struct chain_next {
    uint64_t epoch;        /* grows with every change; an older one is ignored */
    const char *prev;      /* the only name it takes a chain link from */
    const char *next;      /* "" at the tail */
    const char *next_addr; /* its chain address, "" at the tail */
    uint32_t behind;       /* the weights of every server after it */
    uint32_t weight;       /* its own weight as the front-end measures it; 0: none yet */
    const char *next_host; /* the next server's host id (shmbuf_host_id), "" unknown */
};

/* Where a WORK's or RESULT's matrices are when they travel through a
 * shared-memory lane (shmlane.h) instead of the message's body. */
struct chain_shm {
    const char *lane; /* the lane's object name; NULL: the body carries them */
    uint64_t size;    /* the lane's size */
    uint64_t pos;     /* the region's position */
};

/* WORK, predecessor → successor: items first … first+count-1 of job. */
struct chain_work {
    uint64_t job, first;
    uint32_t count, n;
    bool residual; /* compute each item's residual */
    bool output;   /* send the inverses back (else status and residual only) */
    bool gen;      /* items made from seed and index (no body) */
    uint64_t seed;
    char kind[CHAIN_KIND_MAX]; /* gen: "uniform", "spd", "hilbert" */
    struct chain_shm shm;      /* not with gen */
};

/* RELEASED, the reader of a lane → its writer, over the edge that named
 * it: every region before upto may be reused. */
struct chain_release {
    const char *lane;
    uint64_t upto;
};

/* ACCEPTED (compute → front-end) and CANCEL (front-end → compute, count
 * 0: the whole job). */
struct chain_span {
    uint64_t job, first;
    uint32_t count;
};

/* RESULT, compute → front-end; per item a status (enum gj_status) and a
 * residual (NaN when none), in arrays the caller gives. */
struct chain_result {
    uint64_t job, first;
    uint32_t count, n;
    uint32_t ms;          /* compute time of the batch */
    bool has_resid;       /* "resid" was an array, not null */
    bool has_sum;         /* "sum" was given: the inverses' checksums, for jobs without output */
    uint8_t *status;      /* count entries */
    double *resid;        /* count entries */
    uint64_t *sum;        /* count entries: chain_sum of each inverse (0 when not ok) */
    struct chain_shm shm; /* the inverses, with output, when not in the body */
};

/* The checksum of an inverse of order n (docs/jobs.md): its n·n doubles,
 * row-major, as 64-bit words, word i folded FNV-1a-style into lane i mod 4
 * (lane k starts at the FNV offset basis xor k), then the four lanes
 * folded the same way into one, from the basis. Fast next to the kernel:
 * the lanes keep four multiply chains in flight. */
uint64_t chain_sum(const double *inv, uint32_t n);

cJSON *chain_next_json(const struct chain_next *m);
cJSON *chain_work_json(const struct chain_work *m);
cJSON *chain_span_json(const struct chain_span *m);
cJSON *chain_release_json(const struct chain_release *m);
/* status and resid as the struct says (resid ignored unless has_resid). */
cJSON *chain_result_json(const struct chain_result *m);

int chain_next_parse(const cJSON *meta, struct chain_next *m, char *why, size_t whylen);
int chain_work_parse(const cJSON *meta, struct chain_work *m, char *why, size_t whylen);
int chain_span_parse(const cJSON *meta, struct chain_span *m, char *why, size_t whylen);
int chain_release_parse(const cJSON *meta, struct chain_release *m, char *why, size_t whylen);
/* m->status, m->resid and m->sum point at max entries each (sum may be
 * NULL: a RESULT with sums is then refused); a count above max is
 * refused. */
int chain_result_parse(const cJSON *meta, struct chain_result *m, uint32_t max, char *why,
                       size_t whylen);

/* The matrices a WORK carries (0 with gen), and a RESULT with output: in
 * its body, or in a lane. */
uint64_t chain_work_body_len(const struct chain_work *m);
uint64_t chain_items_len(uint32_t count, uint32_t n);

#endif
