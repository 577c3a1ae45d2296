/*
 * registry — a coordinator's table of members (the balancer's file
 * servers, the front-end's compute servers) and their state machine.
 *
 *              HELLO                 DRAIN
 *   (none) ──────────▶ up ──────────────────▶ draining
 *      ▲               │ ▲                      │
 *      │ BYE           │ │ HELLO                │ DISCONNECT / TIMEOUT
 *      │        DISCONNECT / TIMEOUT            ▼
 *      └──────────── down ◀─────────────────────┘
 *
 * BYE from up or draining removes the row; HELLO from down (or a row that
 * does not exist) makes it up. The table is plain data with no pointers, so
 * it can be copied to and from shared memory; the functions here never
 * lock: the caller serialises them (mbr_server through mbrs_opts.lock).
 */
#ifndef CONVOY_REGISTRY_H
#define CONVOY_REGISTRY_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define REG_NAME_MAX 64 /* with the NUL */
#define REG_ADDR_MAX 64
#define REG_HOST_MAX 40  /* a host id (shmbuf_host_id), with the NUL */
#define REG_SERVERS  256 /* rows in a table */

enum reg_state { REG_NONE, REG_UP, REG_DRAINING, REG_DOWN };

enum reg_event {
    REG_EV_HELLO,
    REG_EV_HEARTBEAT,
    REG_EV_DRAIN,
    REG_EV_BYE,
    REG_EV_DISCONNECT,
    REG_EV_TIMEOUT
};

const char *reg_state_str(enum reg_state s);
const char *reg_event_str(enum reg_event e);

/* The transition function: the state after event e in state s, or -EINVAL
 * when e is not allowed in s. REG_NONE means the row is removed. */
int reg_next(enum reg_state s, enum reg_event e);

/* What a server reports in HEARTBEAT (and HELLO). */
struct reg_load {
    uint32_t active;      /* transfers in progress */
    uint64_t bytes_per_s; /* recent send rate */
    double load1;         /* 1-minute load average */
    uint64_t disk_free;   /* bytes free under its root */
};

/* What a server announces in HELLO. */
struct reg_hello {
    const char *name; /* certificate common name */
    const char *addr; /* its HTTP address */
    uint32_t weight;
    uint32_t capacity; /* concurrent transfers it accepts */
    uint64_t files;    /* under its root */
    uint64_t bytes;
    const char *host; /* its host id, for edges through shared memory; NULL or "": none */
    struct reg_load load;
};

/* One row; fixed-size fields only (shared memory). */
struct reg_server {
    char name[REG_NAME_MAX];
    char addr[REG_ADDR_MAX];
    uint32_t state; /* enum reg_state */
    uint32_t weight;
    uint32_t capacity;
    uint64_t session;      /* id of the live control connection; 0 when down */
    uint64_t joined_ms;    /* CLOCK_MONOTONIC ms of the last HELLO */
    uint64_t last_seen_ms; /* of the last frame received */
    uint64_t state_ms;     /* when the state last changed */
    uint64_t files, bytes;
    struct reg_load load;
};

struct reg_table {
    uint64_t next_session; /* session ids are never reused */
    struct reg_server rows[REG_SERVERS];
};

/*
 * Registers a HELLO at time now. Returns 0 with *session set; -EEXIST when
 * a live session already holds the name; -ENOSPC when the table is full;
 * -EINVAL for a name that is not 1-63 bytes of printable UTF-8 or an
 * address that is not HOST:PORT. why gets the reason.
 */
int reg_hello(struct reg_table *t, const struct reg_hello *h, uint64_t now, uint64_t *session,
              char *why, size_t whylen);

/* Applies HEARTBEAT, DRAIN, BYE, DISCONNECT or TIMEOUT from the connection
 * that holds `session`. Returns the new state, -ESTALE when that session no
 * longer holds the name, or -EINVAL when the event is not allowed. load is
 * read for HEARTBEAT only (may be NULL otherwise). */
int reg_event(struct reg_table *t, const char *name, uint64_t session, enum reg_event e,
              const struct reg_load *load, uint64_t now);

/* After the balancer (re)starts: every row down, no session holds a name. */
void reg_restart(struct reg_table *t, uint64_t now);

/* Whether row r (in use) could have been written by this registry: a known
 * state, NUL-terminated fields, a name of printable UTF-8, an address
 * HOST:PORT, a finite load. 0, or -EINVAL with the reason in why. */
int reg_row_check(const struct reg_server *r, char *why, size_t whylen);

/* Called by reg_repair for each row it clears, with the reason. */
typedef void (*reg_report_fn)(size_t row, const char *why, void *arg);

/* Clears every row in use that fails reg_row_check or repeats an earlier
 * row's name (a table read back from shared memory is not trusted).
 * report may be NULL. Returns how many were cleared. */
unsigned reg_repair(struct reg_table *t, reg_report_fn report, void *arg);

/* The row named name, or NULL. */
const struct reg_server *reg_find(const struct reg_table *t, const char *name);

/* Copies the rows in use into out (up to max). Returns how many. */
size_t reg_snapshot(const struct reg_table *t, struct reg_server *out, size_t max);

/* A row as JSON, ages counted to now: what `convoy status --json` and the
 * balancer's GET /v1/servers show of a server ({"name", "address",
 * "state", "weight", "capacity", "active", …}). NULL without memory. */
cJSON *reg_server_json(const struct reg_server *r, uint64_t now);

/* {"servers": [every row in use, as reg_server_json]}. NULL without memory. */
cJSON *reg_table_json(const struct reg_table *t, uint64_t now);

#endif
