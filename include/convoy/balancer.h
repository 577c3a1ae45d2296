/*
 * balancer — the daemon that tracks file servers (and, with the transfers
 * issue, sends clients to them).
 *
 * Its state lives in the shared-memory segment "/convoy-<state>" so that
 * `convoy status` reads it without a network round trip and a restarted
 * balancer keeps what was recorded.
 */
#ifndef CONVOY_BALANCER_H
#define CONVOY_BALANCER_H

#include "convoy/registry.h"

#include <stdbool.h>
#include <stdint.h>

#define BAL_LAYOUT 1 /* bump when struct bal_shared changes */

/* Everything the balancer keeps in shared memory. */
struct bal_shared {
    struct reg_table reg; /* file servers */
    int32_t pid;          /* the running balancer, 0 when stopped */
    char control[64];     /* its control address */
    uint64_t started_ms;  /* CLOCK_MONOTONIC */
};

struct bal_opts {
    const char *pki;        /* directory with ca.crt, NAME.crt, NAME.key */
    const char *name;       /* certificate name */
    const char *control;    /* HOST:PORT for file servers (mTLS frames) */
    const char *state;      /* shared-memory name; default: name */
    unsigned threads;       /* I/O threads; 0 = 1 */
    uint32_t heartbeat_ms;  /* told to servers in WELCOME */
    uint32_t dead_after_ms; /* silence after which a server is down */
    uint32_t max_conns;     /* control connections at once (all threads); 0 = what nofile allows */
};

/* Copies the state of the balancer whose state name is `state` (on this
 * host) under its lock. When that balancer is not running (it crashed, or
 * was stopped), every server in the copy reads down: what the segment says
 * of them was true only while a balancer watched. 0, -ENOENT when there is
 * no such state, -EPROTO when its layout differs, or -errno. */
int bal_read_state(const char *state, struct bal_shared *out);

/* Whether the balancer recorded in s is a live process. */
bool bal_running(const struct bal_shared *s);

/* Runs until SIGINT/SIGTERM. Returns the process exit status; failures are
 * logged with their reason. */
int bal_run(const struct bal_opts *o);

#endif
