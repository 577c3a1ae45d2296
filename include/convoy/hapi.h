/*
 * hapi — an authenticated HTTP API on httpd: the balancer's and the
 * front-end's faces.
 *
 * A request is routed by path (exact, or a prefix ending in '/') and
 * method, then authenticated against the users database (HTTP Basic or
 * Bearer): a Bearer token or a cached password is answered on the ring's
 * thread, a password that needs its hash goes to the pool and comes back
 * with ring_post, so no I/O thread ever pays an scrypt. Then the route's
 * function runs with who asked. Every refusal says why: 404 for no route,
 * 405 with Allow, 401 with WWW-Authenticate, 403 for a role that may not,
 * 429 with Retry-After for a client that guessed too often, 503 while the
 * pool is full.
 *
 * One hapi per I/O thread (SO_REUSEPORT on the same address).
 */
#ifndef CONVOY_HAPI_H
#define CONVOY_HAPI_H

#include "convoy/httpd.h"
#include "convoy/pool.h"
#include "convoy/users.h"

#include <cjson/cJSON.h>

typedef struct hapi hapi_t;

/* A route's work, with the user who asked (role checked). */
typedef void (*hapi_fn)(void *arg, httpd_xchg_t *x, const struct users_check *who);

#define HAPI_M(m) (1u << (m)) /* a method's bit in hapi_route.methods */

struct hapi_route {
    const char *path; /* exact, or a prefix when it ends in '/' */
    unsigned methods; /* HAPI_M(HTTP_GET) | … */
    enum users_role need;
    hapi_fn fn;
};

struct hapi_opts {
    ring_t *ring;
    struct net_addr addr;   /* port 0 picks one (hapi_addr) */
    struct httpd_opts http; /* TLS context (NULL: plain), limits, timeouts */
    users_t *users;
    pool_t *pool; /* runs the password hashes */
    const struct hapi_route *routes;
    size_t nroutes;
    void *arg; /* handed to every route */
};

/* Listens and serves until hapi_stop. 0 or -errno (logged). */
int hapi_start(hapi_t **out, const struct hapi_opts *o);

/* The bound address (with the real port): later threads listen on it. */
const struct net_addr *hapi_addr(const hapi_t *a);

/* Stops listening and closes every connection. done(arg) runs from the
 * loop once no password check is still on the pool (their answers are
 * dropped); the hapi is freed after it. */
void hapi_stop(hapi_t *a, void (*done)(void *arg), void *arg);

/* Answers status with doc as JSON (doc is consumed; NULL: 500). */
void hapi_reply_json(httpd_xchg_t *x, int status, cJSON *doc);

/* Answers status with Retry-After: s and the reason. */
void hapi_retry_later(httpd_xchg_t *x, int status, unsigned s, const char *why);

#endif
