/*
 * xfer — the balancer's transfer records, their state machine and the
 * table that holds them.
 *
 *               REDIRECT              START                END(complete)
 *     (none) ───────────▶ redirected ─────────▶ active ───────────────────▶ done
 *                          │    ▲                │  ▲                        ▲
 *                          │    │ RESUME         │  │ PROGRESS               │
 *                   EXPIRE │    └──────────┐     │  │                        │
 *                          │               │     ▼  │          END(complete) │
 *                          ▼               └── interrupted ──────────────────┘
 *                        failed ◀───── EXPIRE ─────┘
 *
 *   active → interrupted: SERVER_DOWN, or END(client-aborted | error).
 *   RESUME (a new leg) from redirected, active or interrupted → redirected.
 *
 * A transfer is one file fetched by one user, in one or more legs: a leg is
 * one redirect to one server, from the redirect to that server's XFER_END.
 * The transfer's state follows its newest leg; events about older legs
 * (a late XFER_END from the server a client left) update that leg only.
 * done and failed are final: the record is finished, written to the
 * transfer log and kept only until its slot is needed. redirected and
 * interrupted records expire (→ failed) when nobody follows or resumes
 * them within the ticket lifetime.
 *
 * The table is plain data with no I/O (but the log's two functions at the
 * end): the balancer keeps it under its one
 * table lock (bal_lock) and publishes the slots it reports dirty to the
 * shared segment (BAL_XFER_TABLE), where each slot holds one struct
 * xfer_rec; it keeps the policy's per-server counts (policy.h) in step
 * with every leg it adds, starts and ends.
 */
#ifndef CONVOY_XFER_H
#define CONVOY_XFER_H

#include "convoy/policy.h"
#include "convoy/registry.h"
#include "convoy/xfer_msg.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define XFER_USER_MAX     64 /* with the NUL */
#define XFER_LEGS_MAX     4  /* a fifth leg (a third resume) is refused */
#define XFER_DECISION_MAX POLICY_DECISION_MAX
#define XFER_CAPACITY     65536u /* default --max-transfers */

enum xfer_state {
    XFER_NONE, /* a free slot */
    XFER_REDIRECTED,
    XFER_ACTIVE,
    XFER_DONE,
    XFER_FAILED,
    XFER_INTERRUPTED,
};

enum xfer_event {
    XFER_EV_REDIRECT,
    XFER_EV_START,
    XFER_EV_PROGRESS,
    XFER_EV_END,
    XFER_EV_SERVER_DOWN,
    XFER_EV_RESUME,
    XFER_EV_EXPIRE,
};

/* "none", "redirected", "active", "done", "failed", "interrupted"; "unknown". */
/* The clock every time of a transfer record is on: CLOCK_REALTIME in ms
 * (records outlive the process and are read by people and other hosts). */
uint64_t xfer_now_ms(void);

const char *xfer_state_str(enum xfer_state s);
/* "redirect", "start", "progress", "end", "server-down", "resume", "expire". */
const char *xfer_event_str(enum xfer_event e);

/* Parses a name xfer_state_str returns (not "none"). 0, or -EINVAL. */
int xfer_state_parse(const char *s, enum xfer_state *out);

/*
 * The transition function: the transfer's state after event e (END with
 * outcome o; o is ignored otherwise) in state s, or -EINVAL when e is not
 * allowed in s. The table above; docs/protocol-tracking.md lists it whole.
 */
int xfer_next(enum xfer_state s, enum xfer_event e, enum xfer_outcome o);

/* Where a leg is. */
enum xfer_phase {
    XFER_LEG_PENDING, /* redirected, not started */
    XFER_LEG_RUNNING, /* started, not ended */
    XFER_LEG_ENDED,
};

/* One leg; fixed-size fields only (shared memory). Times are CLOCK_REALTIME
 * ms (records outlive the process and are read by people). */
struct xfer_leg {
    char server[REG_NAME_MAX];
    uint32_t phase;      /* enum xfer_phase */
    uint32_t outcome;    /* enum xfer_outcome; none until ended */
    uint64_t first_byte; /* from XFER_START; before, where the client should resume */
    uint64_t length;     /* bytes it will send: from XFER_START; before, the rest of the file */
    uint64_t bytes;      /* sent, as the server last reported */
    uint64_t redirect_ms;
    uint64_t start_ms; /* 0 until started */
    uint64_t end_ms;   /* 0 until ended */
};

/* One transfer: a row of BAL_XFER_TABLE. The path comes last, so that a
 * record's bytes in use end with it (xfer_rec_len). */
struct xfer_rec {
    uint64_t id; /* never reused, across restarts too */
    char user[XFER_USER_MAX];
    uint64_t size;
    char etag[XFER_ETAG_MAX];     /* "" when unknown */
    char digest[XFER_DIGEST_MAX]; /* hex SHA-256, "" when unknown */
    uint32_t state;               /* enum xfer_state */
    uint32_t nlegs;
    char decision[XFER_DECISION_MAX]; /* the newest leg's, policy_decision_str */
    uint64_t created_ms;
    uint64_t expires_ms; /* redirected, interrupted: when it fails unless followed; else 0 */
    uint64_t ended_ms;   /* done, failed: when; else 0 */
    struct xfer_leg legs[XFER_LEGS_MAX];
    char path[XFER_PATH_MAX];
};

/* The bytes of r that can be non-zero: up to its path's NUL. What is
 * published of a record (shm_put_prefix) and cleared when its slot is
 * reused; a 2 KiB copy per record, mostly an empty path, was the cost of
 * a redirect, in cache lines missed. */
size_t xfer_rec_len(const struct xfer_rec *r);

/*
 * Whether r (a slot in use, read back from the segment, so not trusted)
 * could have been written by this module: a known state, NUL-terminated
 * strings of valid content, 1..XFER_LEGS_MAX legs with known phases and
 * outcomes. 0, or -EINVAL with the reason in why.
 */
int xfer_rec_check(const struct xfer_rec *r, char *why, size_t whylen);

/*
 * {"id", "user", "path", "size", "etag", "digest", "state", "decision",
 * "created_ms", "expires_ms", "ended_ms", "legs": [{"server", "first_byte",
 * "length", "bytes", "redirect_ms", "start_ms", "end_ms", "outcome"}, …]}
 * (etag and digest as null when unknown). A new object the caller frees,
 * or NULL without memory.
 */
cJSON *xfer_rec_json(const struct xfer_rec *r);

/* {"transfers": [...]} of the rows of recs (n of them) in use and, when
 * state is not XFER_NONE, in that state, by ascending id. NULL without
 * memory. */
cJSON *xfer_list_json(const struct xfer_rec *recs, size_t n, enum xfer_state state);

/* ---- the table ---- */

typedef struct xfer_table xfer_table_t;

struct xfer_table_opts {
    uint32_t capacity;           /* slots: 1 .. SHM_SLOTS_MAX */
    uint64_t ttl_ms;             /* ticket lifetime: how long a redirect or an interruption waits */
    uint64_t next_id;            /* the first id to give (from the meta table); 0 = 1 */
    struct policy_state *policy; /* counts kept in step; may be NULL */
    const struct reg_table *reg; /* where servers' rows are found for the counts */
    /* Called once per record that becomes done or failed, under the caller's
     * lock, before anything else changes the table: the transfer log. */
    void (*on_finish)(const struct xfer_rec *r, void *arg);
    void *arg;
};

/* A table with every slot free. 0, -EINVAL for a capacity out of range or
 * policy without reg, -ENOMEM. */
int xfer_table_new(xfer_table_t **out, const struct xfer_table_opts *o);
void xfer_table_free(xfer_table_t *t);

uint32_t xfer_table_capacity(const xfer_table_t *t);

/* The next id the table will give: what the meta table keeps. */
uint64_t xfer_table_next_id(const xfer_table_t *t);

/*
 * After a restart: puts r (read from the segment's slot) back into slot,
 * after xfer_rec_check. 0, -EINVAL (why says why; the slot stays free),
 * -ERANGE for a slot beyond the capacity, -EEXIST for an id already loaded.
 * Then call xfer_table_loaded once.
 */
int xfer_table_load(xfer_table_t *t, uint32_t slot, const struct xfer_rec *r, char *why,
                    size_t whylen);

/* Ends loading: finished records are ordered for reuse oldest first, next
 * ids start above every loaded one, and the policy's counts are rebuilt
 * from the live legs (policy_reset_counts first), so the server table
 * must hold its rows (as loaded) by then. Once, after the loads. */
void xfer_table_loaded(xfer_table_t *t);

/* The record in slot, or NULL when it is free or out of range. */
const struct xfer_rec *xfer_table_slot(const xfer_table_t *t, uint32_t slot);

/* The record with id, or NULL. Valid until the table next changes. */
const struct xfer_rec *xfer_find(const xfer_table_t *t, uint64_t id);

/*
 * Moves up to max slots changed (filled, changed or freed) since the last
 * call into slots, each once, and forgets them. Returns how many: the
 * caller publishes each (shm_put of xfer_table_slot, shm_clear when NULL)
 * until it returns fewer than max.
 */
size_t xfer_table_dirty(xfer_table_t *t, uint32_t *slots, size_t max);

/* {"transfers": [...]} as xfer_list_json, of this table. */
cJSON *xfer_table_json(const xfer_table_t *t, enum xfer_state state);

/* What the front knows when it redirects a new transfer. */
struct xfer_new {
    const char *user;
    const char *path;   /* xfer_msg_path_valid */
    uint64_t size;      /* from the catalog */
    const char *etag;   /* NULL or "" when unknown */
    const char *digest; /* NULL or "" when unknown */
    const struct policy_decision *decision;
};

/*
 * REDIRECT: records a new transfer with one pending leg on d->server,
 * expiring at now + ttl_ms. A finished record gives up its slot when no
 * slot is free (oldest finished first). Returns 0 with *id set;
 * -ENOSPC when every slot holds a live transfer (the front answers 503);
 * -EINVAL for a field that is not valid (too long, a bad path).
 */
int xfer_redirect(xfer_table_t *t, const struct xfer_new *n, uint64_t now, uint64_t *id);

/*
 * RESUME: adds a pending leg on d->server to transfer id, starting where
 * its legs so far left off. A pending leg still open ends (outcome none);
 * a running one stays until its server reports its end. 0, -ENOENT (no
 * such transfer), -EINVAL (it is done or failed), -E2BIG (XFER_LEGS_MAX
 * legs already).
 */
int xfer_resume(xfer_table_t *t, uint64_t id, const struct policy_decision *d, uint64_t now);

/*
 * START, PROGRESS or END from server (the connection's certificate name)
 * about its newest leg of transfer m->id. 0; -ENOENT: no such transfer
 * (never given, or its finished record was reused); -ESRCH: it has no leg
 * on server in a phase the message fits; -EPROTO: a START whose path is
 * not the record's or whose first_byte + length exceeds its size, or bytes
 * beyond the leg's length; -EINVAL: the transfer is finished, or an END
 * whose outcome is none or interrupted. A START's size, ETag and digest replace the
 * record's: what the server sends is what the record keeps.
 */
int xfer_apply(xfer_table_t *t, const char *server, const struct xfer_msg *m, uint64_t now);

/*
 * SERVER_DOWN: every running leg on server becomes ended with outcome
 * interrupted (its transfer interrupted when it is the newest leg,
 * expiring at now + ttl_ms). Call when a live server is found gone
 * (disconnect, heartbeat timeout), not on the balancer's own restart:
 * transfers then still run and their servers report them when they
 * reconnect. A later report from server revives such a leg. Returns how
 * many legs were interrupted.
 */
size_t xfer_server_down(xfer_table_t *t, const char *server, uint64_t now);

#define XFER_SWEEP_ALL UINT32_MAX /* xfer_expire's slots: the whole table */

/* EXPIRE, a part of the table at a time: in the next `slots` slots (from
 * where the last call stopped, wrapping; every slot at most once), every
 * redirected or interrupted transfer whose expires_ms <= now fails.
 * Returns how many. A caller that sweeps capacity / k slots k times per
 * period looks at each slot once per period, and finishes (and publishes)
 * the records that expired in k smaller batches instead of one stall. */
size_t xfer_expire(xfer_table_t *t, uint64_t now, uint32_t slots);

/* ---- the transfer log ---- */

/* Opens path for appending (O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC, mode
 * 0600). The descriptor, or -errno (logged). */
int xfer_log_open(const char *path);

/* Appends xfer_rec_json(r) as one line with one write. 0, or -errno: a
 * failure is logged, and the caller carries on. */
int xfer_log_append(int fd, const struct xfer_rec *r);

#endif
