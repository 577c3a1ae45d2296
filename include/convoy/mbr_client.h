/*
 * mbr_client — the member's side of membership (a file server joining the
 * balancer, a compute server joining the front-end): dial the coordinator,
 * check that its certificate is the expected one, say HELLO, send
 * HEARTBEAT at the interval WELCOME gives, and reconnect forever with
 * exponential backoff and jitter when the connection is lost. The
 * coordinator's side is mbr_server.h.
 *
 *   disconnected ──dial──▶ connecting ──WELCOME──▶ registered ──leave──▶ draining
 *        ▲                     │                        │                   │ active = 0
 *        └────── backoff ◀─────┴────────── lost ◀───────┘                   ▼ BYE
 *                                                                          left
 */
#ifndef CONVOY_MBR_CLIENT_H
#define CONVOY_MBR_CLIENT_H

#include "convoy/frame.h"
#include "convoy/net.h"
#include "convoy/registry.h"
#include "convoy/ring.h"
#include "convoy/tls.h"

typedef struct mbrc mbrc_t;

enum mbrc_state { MBRC_DISCONNECTED, MBRC_CONNECTING, MBRC_REGISTERED, MBRC_DRAINING, MBRC_LEFT };

const char *mbrc_state_str(enum mbrc_state s);

struct mbrc_opts {
    ring_t *ring;
    tls_ctx_t *tls;            /* client context with this member's certificate */
    struct net_addr server;    /* the coordinator's control address */
    const char *expect_name;   /* its certificate's name ("balancer"); NULL = any (tests) */
    const char *expect_role;   /* the role its certificate must carry (PKI_ROLE_*), or NULL */
    uint32_t retry_base_ms;    /* first backoff; 0 = 100 */
    uint32_t retry_max_ms;     /* backoff ceiling; 0 = 2000 */
    uint32_t drain_timeout_ms; /* leave() waits at most this for active = 0; 0 = 30 s */
    /* Fills HELLO (name may stay NULL: the certificate names the server). */
    void (*hello)(void *arg, struct reg_hello *h);
    /* Fills the current load, for HEARTBEAT and for leave()'s wait. */
    void (*load)(void *arg, struct reg_load *l);
    /* The coordinator's own fields in WELCOME (what mbrs_opts.welcome adds),
     * at most MBR_WELCOME_EXTRA_MAX; a WELCOME with any other is refused. */
    const struct frame_field *welcome_fields;
    size_t nwelcome_fields;
    /* May be NULL. Reads those fields from WELCOME's meta (valid during the
     * call) on every registration. 0, or -errno to refuse the coordinator. */
    int (*welcome)(void *arg, const cJSON *meta);
    void *arg;
};

/* Starts dialling on o->ring. 0 or -ENOMEM. */
int mbrc_start(mbrc_t **out, const struct mbrc_opts *o);

/* Leaves the cluster: DRAIN, wait until load reports no active transfer
 * (or the drain timeout), BYE, close; then done(arg). If not registered,
 * stops dialling and calls done at once. */
void mbrc_leave(mbrc_t *m, void (*done)(void *arg));

enum mbrc_state mbrc_state(const mbrc_t *m);

/* Frees the client. Call after its ring has stopped. */
void mbrc_free(mbrc_t *m);

#endif
