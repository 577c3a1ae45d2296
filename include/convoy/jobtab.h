/*
 * jobtab — the front-end's job table and chain in a shared-memory segment.
 *
 * Like the balancer's tables (shm.h): the front-end owns the segment
 * "convoy-<--state>" and is its one writer; `convoy status --state NAME`
 * attaches read-only and reads rows through the seqlock. Two tables: the
 * jobs (one row per job, slot chosen by the front-end) and the chain (row i
 * is the i-th server in chain order, the rest free). Every row read, by the
 * owner reopening the segment or by a reader, passes jobtab_row_check
 * before it is believed: the segment is another process's memory.
 */
#ifndef CONVOY_JOBTAB_H
#define CONVOY_JOBTAB_H

#include "convoy/registry.h"
#include "convoy/shm.h"

#include <stddef.h>
#include <stdint.h>

#define JOBTAB_USER_MAX 64 /* with the NUL */
#define JOBTAB_OP_MAX   16

enum jobtab_state {
    JOBTAB_WAITING,   /* items left and no compute server up */
    JOBTAB_RUNNING,   /* items on the chain */
    JOBTAB_DONE,      /* every item accounted for */
    JOBTAB_CANCELLED, /* DELETE: its queued items dropped */
};

/* "waiting", "running", "done", "cancelled"; "unknown". */
const char *jobtab_state_str(enum jobtab_state s);

/* One job. */
struct jobtab_row {
    uint64_t id;    /* nonzero */
    uint32_t state; /* enum jobtab_state */
    uint32_t n;     /* matrix order */
    uint64_t items; /* items in the job, nonzero */
    uint64_t done;  /* items accounted for: ok + singular + invalid */
    uint64_t ok, singular, invalid;
    uint64_t redelegated;       /* items sent again after a server went down */
    uint64_t submitted_ms;      /* wall clock, ms since the epoch */
    uint64_t finished_ms;       /* 0 until done or cancelled */
    char user[JOBTAB_USER_MAX]; /* who submitted it */
    char op[JOBTAB_OP_MAX];     /* "invert" */
};

/* One server of the chain, in order. */
struct jobtab_server {
    char name[REG_NAME_MAX];
    char addr[REG_ADDR_MAX]; /* its chain listen address */
    uint32_t weight;         /* GFLOP/s from its calibration */
    uint32_t capacity;       /* worker threads */
    uint32_t active;         /* items it holds (its last heartbeat) */
    uint32_t pad;
};

#define JOBTAB_JOB_TABLE(cap) ((struct shm_table){11, 1, sizeof(struct jobtab_row), (cap)})
#define JOBTAB_CHAIN_TABLE    ((struct shm_table){12, 1, sizeof(struct jobtab_server), REG_SERVERS})

/* 0 when r is a row a writer could have stored (id and items nonzero, a
 * known state, done = ok + singular + invalid ≤ items, strings
 * terminated); else -EPROTO with the reason in why (may be NULL). */
int jobtab_row_check(const struct jobtab_row *r, char *why, size_t whylen);

/* The same for a chain row: a terminated, nonempty name and address. */
int jobtab_server_check(const struct jobtab_server *s);

struct jobtab;

/*
 * Owns the segment of state name with room for cap jobs, keeping the
 * rows a previous owner left that pass jobtab_row_check (the others are
 * cleared), and an empty chain. 0, or shm_own's errors.
 */
int jobtab_own(const char *name, uint32_t cap, struct jobtab **out);

/* Attaches read-only (shm_attach's errors; -ENOENT when the segment has
 * no job table: not a front-end's). */
int jobtab_attach(const char *name, struct jobtab **out);
void jobtab_close(struct jobtab *jt);

/* Slots of the job table. */
uint32_t jobtab_capacity(const struct jobtab *jt);

/* Owner: stores r in slot, or frees slot (r NULL). 0, or shm_put's errors. */
int jobtab_put(struct jobtab *jt, uint32_t slot, const struct jobtab_row *r);

/* Owner: the chain is servers[0 … n-1], in order; the other rows free. */
int jobtab_chain_put(struct jobtab *jt, const struct jobtab_server *servers, size_t n);

/* Copies slot: 1 a valid row, 0 free (or a row that fails its check),
 * or shm_get's errors. */
int jobtab_get(struct jobtab *jt, uint32_t slot, struct jobtab_row *r);

/* The chain in order into out (room for max); how many. */
size_t jobtab_chain(struct jobtab *jt, struct jobtab_server *out, size_t max);

#endif
