/*
 * mbr_client — the member's side of membership (a file server joining the
 * balancer, a compute server joining the front-end): dial the coordinator,
 * check that its certificate is the expected one, say HELLO, send
 * HEARTBEAT at the interval WELCOME gives, and reconnect forever with
 * exponential backoff and jitter when the connection is lost. The
 * coordinator's side is mbr_server.h.
 *
 * The connection runs on a mux (mux.h), so the owner's own messages share
 * it with membership's: mbrc_send and mbrc_send_buf (a body streamed beside
 * the heartbeats, a catalog for instance), and on_frame for the types
 * membership does not know that the coordinator sends.
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
    /* May be NULL. Registered (after WELCOME was taken): from here until
     * the connection is lost the owner may send (a full catalog, events
     * kept while the coordinator was away). Runs on every registration. */
    void (*registered)(void *arg);
    /* May be NULL: then every type membership does not handle is refused
     * (ERROR unexpected). A frame from the coordinator of such a type: stream
     * 0 without body, else its body follows through on_body, then on_end
     * (err 0, or -EPIPE when the connection ended first). meta and data are
     * valid during the call. on_frame and on_body return 0, or -EPROTO after
     * refusing the coordinator with mbrc_refuse. */
    int (*on_frame)(void *arg, const struct frame_hdr *h, const cJSON *meta, uint32_t stream);
    int (*on_body)(void *arg, uint32_t stream, const uint8_t *data, size_t len);
    void (*on_end)(void *arg, uint32_t stream, int err);
    uint64_t body_max; /* largest body the coordinator may stream; 0 = none */
    void *arg;
};

/* Starts dialling on o->ring. 0 or -ENOMEM. */
int mbrc_start(mbrc_t **out, const struct mbrc_opts *o);

/* Leaves the cluster: DRAIN, wait until load reports no active transfer
 * (or the drain timeout), BYE, close; then done(arg). If not registered,
 * stops dialling and calls done at once. */
void mbrc_leave(mbrc_t *m, void (*done)(void *arg));

enum mbrc_state mbrc_state(const mbrc_t *m);

/*
 * The owner's message without body on the coordinator connection, queued at
 * once ahead of every body chunk not yet written. Only while registered or
 * draining (until BYE): else -ENOTCONN, and nothing is sent. Returns 0,
 * -ENOTCONN, -errno or FRAME_E* (mux_send). A message queued is lost if
 * the connection is lost before it is written; the coordinator's answer is
 * the only proof it arrived.
 */
int mbrc_send(mbrc_t *m, enum frame_type type, const cJSON *meta);

/*
 * A message whose len (>= 1) bytes of body stream from body, which the
 * caller keeps valid and unchanged until done(arg, err) runs: err 0 once
 * every byte is queued as output, else why not (the connection ended
 * first). done runs once, from the loop, and only after 0 was returned.
 * Returns 0, -ENOTCONN (as mbrc_send), or what mux_send_buf returns.
 */
int mbrc_send_buf(mbrc_t *m, enum frame_type type, const cJSON *meta, const void *body,
                  uint64_t len, void (*done)(void *arg, int err), void *arg);

/* Refuses the coordinator from on_frame or on_body: ERROR code with the
 * reason, then close (and, as for any loss, dial again after the backoff).
 * The handler then returns -EPROTO. */
void mbrc_refuse(mbrc_t *m, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Frees the client. Call after its ring has stopped. */
void mbrc_free(mbrc_t *m);

#endif
