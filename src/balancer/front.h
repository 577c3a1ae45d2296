/*
 * front — the balancer's HTTP face: clients ask for a file and are sent,
 * with a signed ticket, to the file server the policy picks.
 *
 *   GET|HEAD /f/<path>            307 to https://<server>/f/<path>?t=<ticket>
 *   GET      /f/<path>?resume=<id>&failed=<server>
 *                                 the same transfer, a new leg on another server
 *   GET      /v1/servers, /v1/transfers[?state=S], /status, /metrics
 *
 * One front runs per I/O thread, each with its own listener on the HTTP
 * address (SO_REUSEPORT). Everything the threads share — the server table,
 * the policy's counts, the transfer table — the front reaches only between
 * the owner's lock and unlock; the catalog, the users and the ticket keys
 * have locks of their own. Password hashes run on the pool, never on an
 * I/O thread. Private to the balancer (src/balancer/).
 */
#ifndef CONVOY_BALANCER_FRONT_H
#define CONVOY_BALANCER_FRONT_H

#include "convoy/catalog.h"
#include "convoy/httpd.h"
#include "convoy/policy.h"
#include "convoy/pool.h"
#include "convoy/registry.h"
#include "convoy/ticket.h"
#include "convoy/users.h"
#include "convoy/xfer.h"

typedef struct front front_t;

/* What the front reads and changes under the owner's lock. */
struct front_core {
    const struct reg_table *reg; /* read only: the unlock publishes no server row */
    struct policy_state *policy;
    xfer_table_t *xfers;
};

struct front_opts {
    ring_t *ring;           /* this front's I/O thread */
    struct net_addr addr;   /* the HTTP address; port 0 picks one (front_addr) */
    struct httpd_opts http; /* TLS context (NULL: --insecure-http), limits, timeouts */
    users_t *users;         /* who may ask */
    ticket_keyring_t *keys; /* signs the tickets */
    catalog_t *catalog;     /* which servers hold which file */
    pool_t *pool;           /* runs the password hashes */
    uint32_t ticket_ttl_s;  /* a ticket's lifetime */
    const char *scheme;     /* of the redirects: "https", or "http" with plain servers */
    struct front_core *(*lock)(void *arg); /* NULL when the lock failed (logged) */
    void (*unlock)(void *arg);
    void *arg;
};

/* Listens and serves until front_stop. 0 or -errno (logged). */
int front_start(front_t **out, const struct front_opts *o);

/* The bound address (with the real port): later threads listen on it. */
const struct net_addr *front_addr(const front_t *f);

/* Stops listening and closes every client connection. done(arg) runs from
 * the loop once no password check of this front is still on the pool
 * (their answers are then dropped); the front is freed after it. */
void front_stop(front_t *f, void (*done)(void *arg), void *arg);

#endif
