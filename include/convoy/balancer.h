/*
 * balancer — the daemon that tracks file servers (and, with the transfers
 * issue, sends clients to them).
 *
 * Its state is published in the shared-memory segment
 * "/dev/shm/convoy-<state>" so that `convoy status` reads it without a
 * network round trip and a restarted balancer keeps what was recorded.
 */
#ifndef CONVOY_BALANCER_H
#define CONVOY_BALANCER_H

#include "convoy/registry.h"
#include "convoy/shm.h"
#include "convoy/ticket.h"
#include "convoy/xfer.h"

#include <stdbool.h>
#include <stdint.h>

/* What the balancer itself records: one row of table BAL_META_TABLE. */
struct bal_meta {
    char control[64];          /* its control address, "" until bound */
    uint64_t started_ms;       /* CLOCK_MONOTONIC */
    uint64_t next_session;     /* so that session ids are not reused across restarts */
    uint64_t next_xfer;        /* so that transfer ids are not (xfer_table_next_id) */
    struct ticket_keyset keys; /* ticket keys, so a restart keeps live tickets valid */
};

/* The tables of the state segment. Bump a version when its row changes:
 * that table alone starts empty. Another table is one more line here. */
#define BAL_META_TABLE   ((struct shm_table){1, 3, sizeof(struct bal_meta), 1})
#define BAL_SERVER_TABLE ((struct shm_table){2, 1, sizeof(struct reg_server), REG_SERVERS})
/* Transfers: slot i holds a struct xfer_rec, capacity from --max-transfers. */
#define BAL_XFER_TABLE(cap) ((struct shm_table){3, 2, sizeof(struct xfer_rec), (cap)})

/* The balancer's state as one copy: what bal_read_state returns, and the
 * balancer's own working copy, which it publishes row by row. */
struct bal_shared {
    struct reg_table reg; /* file servers: slot i of the server table is row i */
    int32_t pid;          /* the running balancer, 0 when stopped */
    uint64_t pid_start;   /* its start time (see struct shm_owner) */
    char control[64];     /* its control address */
    uint64_t started_ms;  /* CLOCK_MONOTONIC */
};

struct bal_opts {
    const char *pki;           /* directory with ca.crt, NAME.crt, NAME.key */
    const char *name;          /* certificate name */
    const char *control;       /* HOST:PORT for file servers (mTLS frames) */
    const char *state;         /* shared-memory name; default: name */
    unsigned threads;          /* I/O threads; 0 = 1 */
    uint32_t heartbeat_ms;     /* told to servers in WELCOME */
    uint32_t dead_after_ms;    /* silence after which a server is down */
    uint32_t hello_timeout_ms; /* from accept to HELLO; 0 = MBRS_HELLO_TIMEOUT_MS */
    uint32_t max_conns;     /* control connections at once (all threads); 0 = what nofile allows */
    uint32_t max_transfers; /* slots of the transfer table; 0 = XFER_CAPACITY */
    const char *http;       /* HOST:PORT for clients (HTTPS, or HTTP with insecure_http), or NULL */
    bool insecure_http;     /* plain HTTP on --http, and redirects to http:// file servers */
    const char *users;      /* the users file (convoy user); required with --http */
    const char *policy;     /* policy_parse name; NULL = least-conn */
    uint32_t ticket_ttl_s;  /* a ticket's lifetime */
    const char *transfer_log; /* JSON lines of finished transfers, or NULL */
};

/* Reads the state of the balancer whose state name is `state` (on this
 * host) without blocking it: every row is validated and an invalid or
 * unreadable one is left out (and logged). When that balancer is not
 * running (it crashed, or was stopped), every server in the copy reads
 * down: what the segment says of them was true only while a balancer
 * watched. 0, -ENOENT when there is no such state, -EPERM when the segment
 * is not this user's or is open to others, -EPROTO when it is damaged or
 * lacks the tables, or -errno. */
int bal_read_state(const char *state, struct bal_shared *out);

/* Whether the balancer recorded in s is a live process (pid and start time
 * match: a zombie or a reused pid is not). */
bool bal_running(const struct bal_shared *s);

/* The transfers recorded in the state segment `state` on this host, as
 * {"transfers": [xfer_rec_json, …]} by ascending id, only those in state
 * filter unless it is XFER_NONE. Lock-free, like bal_read_state. 0 with
 * *out set (the caller frees it), or -errno as bal_read_state. */
int bal_read_transfers(const char *state, enum xfer_state filter, cJSON **out);

/* Runs until SIGINT/SIGTERM. Returns the process exit status; failures are
 * logged with their reason. */
int bal_run(const struct bal_opts *o);

#endif
