/*
 * policy — which file server gets the next transfer.
 *
 * Plain data, no I/O: a decision reads the server table (struct reg_table)
 * and the balancer's own per-server counts (struct policy_state), picks one
 * row and says why in a decision record. Both structures live under the
 * balancer's one table lock (bal_lock), which every I/O thread takes for a
 * decision anyway, since the server rows it reads change under that lock:
 * so there is one set of counts for the whole process, not one per thread,
 * and nothing needs combining. A decision is a scan of the table's rows,
 * a short critical section.
 *
 * The counts are kept in step by the transfer table (xfer.h): a redirect
 * adds one pending leg, XFER_START turns it active, XFER_PROGRESS lowers
 * the bytes outstanding, an end, an expiry or an interruption removes it.
 * Counting redirects not yet started is what spreads a burst: the tenth
 * redirect of a burst already sees the nine before it. docs/
 * protocol-balancing.md gives each policy's formula.
 */
#ifndef CONVOY_POLICY_H
#define CONVOY_POLICY_H

#include "convoy/registry.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum policy_kind {
    POLICY_LEAST_CONN,  /* fewest (active + pending) per unit of weight */
    POLICY_LEAST_BYTES, /* fewest bytes outstanding per unit of weight */
    POLICY_WEIGHTED,    /* smooth weighted round-robin (nginx's) */
    POLICY_P2C,         /* the lighter of two random candidates */
    POLICY_ROUND_ROBIN, /* each candidate in turn */
};

/* "least-conn", "least-bytes", "weighted", "p2c", "round-robin"; "unknown". */
const char *policy_str(enum policy_kind k);

/* Parses a name policy_str returns. 0, or -EINVAL. */
int policy_parse(const char *s, enum policy_kind *out);

/* What the balancer counts for one server row. */
struct policy_count {
    char name[REG_NAME_MAX]; /* the server counted; "" until first seen */
    uint32_t pending;        /* redirects issued to it, not started */
    uint32_t active;         /* legs started on it, not ended */
    uint64_t outstanding;    /* bytes its pending and active legs have left */
    int64_t current;         /* smooth weighted round-robin's running weight */
    bool suspect;            /* a client failed on it: not chosen until it is heard again */
    uint64_t suspect_seen;   /* its last_seen_ms when it became suspect */
};

/*
 * The policy and its counts. Row i counts for row i of the server table;
 * when that row holds another server than counted (removed by BYE, then
 * reused), its counts start again at zero. Change only through the
 * functions here, under the lock that guards the server table.
 */
struct policy_state {
    enum policy_kind kind;
    uint32_t next; /* the row after the last one chosen: where ties and round-robin start */
    uint64_t rng;  /* p2c's xorshift64* state, never 0 */
    struct policy_count rows[REG_SERVERS];
};

/* Zero counts; seed drives p2c (any value, 0 included). */
void policy_init(struct policy_state *ps, enum policy_kind kind, uint64_t seed);

/* Whether row (up, in reg) may serve this request: a catalog holds the
 * requested version. */
typedef bool (*policy_filter_fn)(const struct reg_server *r, size_t row, void *arg);

struct policy_request {
    policy_filter_fn filter; /* NULL: every up server may */
    void *arg;               /* handed to filter */
    const char *avoid;       /* a resumed leg: the failed server's name, or NULL */
};

/* Why a row was chosen: policy_decision_str prints it. */
struct policy_decision {
    enum policy_kind kind;
    uint32_t row; /* in the server table */
    char server[REG_NAME_MAX];
    uint32_t active;      /* its active + pending legs when chosen */
    uint64_t outstanding; /* its bytes outstanding when chosen */
    uint32_t weight;      /* as counted: a weight of 0 counts as 1 */
    uint32_t candidates;  /* rows that could have been chosen */
};

/* Longest policy_decision_str, with the NUL. */
#define POLICY_DECISION_MAX 192

/*
 * Picks a server for one new leg. Candidates are rows that are up (never
 * draining or down), not suspect, pass req->filter and are not req->avoid. Changes the
 * policy's own state (rotation, running weights, the RNG) but no count:
 * the transfer table counts the leg when it records the redirect.
 * Returns the row (>= 0) with *d filled, or -EAGAIN when there is no
 * candidate (the front answers 503 with Retry-After). Under the table lock.
 */
int policy_choose(struct policy_state *ps, const struct reg_table *reg,
                  const struct policy_request *req, struct policy_decision *d);

/*
 * Writes "policy=least-conn server=fs2 active=1 weight=1 candidates=3"
 * (least-bytes adds " outstanding=N") into buf (len bytes, truncated,
 * NUL-terminated): the X-Convoy-Decision header and the transfer record's
 * decision. Returns its length.
 */
int policy_decision_str(const struct policy_decision *d, char *buf, size_t len);

/*
 * Adds dpending, dactive and dbytes to the counts of the server named
 * server (found in reg). Counts never go below zero. Nothing happens when
 * no row of reg holds that name. Called by the transfer table; under the
 * table lock.
 */
void policy_count(struct policy_state *ps, const struct reg_table *reg, const char *server,
                  int32_t dpending, int32_t dactive, int64_t dbytes);

/*
 * Marks the server named server suspect (a client resuming names it as
 * the one that failed): it is no candidate until the balancer hears from
 * it again (its row's last_seen_ms moves: a heartbeat or any frame). No
 * effect when no row holds that name. Under the table lock.
 */
void policy_suspect(struct policy_state *ps, const struct reg_table *reg, const char *server);

/* Zeroes every count (before the transfer table recounts after a restart). */
void policy_reset_counts(struct policy_state *ps);

#endif
