/*
 * mbr_server — the coordinator's side of membership: listen on the control
 * address, take HELLO from members (file servers for the balancer, compute
 * servers for the front-end), answer WELCOME, record HEARTBEAT, DRAIN and
 * BYE in the member table, and mark down a member that goes silent or
 * whose connection ends.
 *
 * One server runs per I/O thread, each with its own listener on the same
 * address (SO_REUSEPORT), its own sessions and its own sweep timer; the
 * member table is the only thing they share, and the owner keeps it (in
 * shared memory for the balancer): the server reaches it only through the
 * owner's lock and unlock. A connection that has not said HELLO within
 * hello_timeout_ms of its accept is closed, whatever TLS did meanwhile; one
 * whose HELLO is accepted is trusted (conn_trust), never evicted to make
 * room for strangers when max_conns are open.
 *
 * The connection runs on a mux (mux.h): the owner's own messages share it
 * with membership's, both ways. Frames of a type membership does not handle
 * (XFER_*, CATALOG, …) reach the owner's on_frame with the session they
 * came on, their bodies (up to body_max, streamed beside the heartbeats)
 * through on_body and on_end; mbrs_send answers on a session.
 * Not thread-safe: call everything on the server's ring.
 */
#ifndef CONVOY_MBR_SERVER_H
#define CONVOY_MBR_SERVER_H

#include "convoy/frame.h"
#include "convoy/net.h"
#include "convoy/registry.h"
#include "convoy/ring.h"
#include "convoy/tls.h"

#include <cjson/cJSON.h>
#include <stdint.h>

#define MBRS_HELLO_TIMEOUT_MS 5000u /* default: from accept to HELLO */

typedef struct mbrs mbrs_t;

/* A registered member's control connection, as the owner sees it: valid
 * from the on_frame that names it until on_gone returns. */
typedef struct mbrs_session mbrs_session_t;

struct mbrs_opts {
    ring_t *ring;              /* the I/O thread this server runs on */
    tls_ctx_t *tls;            /* server context requiring client certificates */
    struct net_addr addr;      /* control address; port 0 picks one (mbrs_addr) */
    const char *role;          /* role a member's certificate must carry (PKI_ROLE_*), or NULL */
    uint32_t heartbeat_ms;     /* told to members in WELCOME */
    uint32_t dead_after_ms;    /* silence after which a member is down */
    uint32_t hello_timeout_ms; /* from accept to HELLO; 0 = MBRS_HELLO_TIMEOUT_MS */
    uint32_t max_conns;        /* this listener's connections at once; 0 = what nofile allows */
    /* The member table, locked for the caller, or NULL when it cannot be
     * locked (the owner logs why; the frame is then refused). */
    struct reg_table *(*lock)(void *arg);
    void (*unlock)(void *arg);
    /* May be NULL. Adds the owner's own fields to the WELCOME object for
     * member `name` (the client lists them in mbrc_opts.welcome_fields).
     * Runs on this server's ring, so concurrently with the other threads'
     * servers. 0, or -errno to refuse the member. */
    int (*welcome)(void *arg, const char *name, cJSON *meta);
    /* May be NULL: then every type membership does not handle is refused
     * (ERROR unexpected). A frame of such a type from the registered member
     * of session s (before HELLO is taken every such frame is refused
     * "order"): stream 0 without body, else its body follows through
     * on_body, then on_end (err 0, or -EPIPE when the connection ended
     * first). meta and data are valid during the call. on_frame and on_body
     * return 0, or -EPROTO after mbrs_refuse. */
    int (*on_frame)(void *arg, mbrs_session_t *s, const struct frame_hdr *h, const cJSON *meta,
                    uint32_t stream);
    int (*on_body)(void *arg, mbrs_session_t *s, uint32_t stream, const uint8_t *data, size_t len);
    void (*on_end)(void *arg, mbrs_session_t *s, uint32_t stream, int err);
    /* May be NULL. Member s was registered (its WELCOME is queued): h is
     * its HELLO (valid during the call). The owner may send from here on. */
    void (*on_join)(void *arg, mbrs_session_t *s, const struct reg_hello *h);
    /* May be NULL. Member s said DRAIN: it takes nothing new. */
    void (*on_drain)(void *arg, mbrs_session_t *s);
    /* May be NULL. The session's connection ended (after every on_end):
     * drop what the owner keeps for it; s is freed when this returns. Runs
     * only for sessions whose HELLO was taken. */
    void (*on_gone)(void *arg, mbrs_session_t *s);
    uint64_t body_max; /* largest body a member may stream; 0 = none (refused "body_len") */
    void *arg;         /* handed to every callback above */
};

/* Listens on o->addr and starts the sweep. 0 or -errno (logged with the
 * address). The options are copied; role is not (keep it alive). */
int mbrs_start(mbrs_t **out, const struct mbrs_opts *o);

/* The bound address, with the real port: later threads listen on it. */
const struct net_addr *mbrs_addr(const mbrs_t *s);

/* Stops listening and closes every session (their members read down).
 * done(arg) runs from the ring's loop once the last session has closed,
 * never inside this call; a second call does nothing. */
void mbrs_stop(mbrs_t *s, void (*done)(void *arg), void *arg);

/* Frees the server: after done ran, or after its ring stopped for good. */
void mbrs_free(mbrs_t *s);

/* The member's name (its certificate's) and the registry session id its
 * row holds (reg_hello's), for keying what the owner keeps per member. */
const char *mbrs_session_name(const mbrs_session_t *s);
uint64_t mbrs_session_id(const mbrs_session_t *s);

/* The owner's pointer for the session, NULL until set. */
void mbrs_session_set_udata(mbrs_session_t *s, void *udata);
void *mbrs_session_udata(const mbrs_session_t *s);

/* A message without body to the member, ahead of every body chunk not yet
 * written. Returns 0, -EPIPE once the session is closing, -errno or
 * FRAME_E* (mux_send). */
int mbrs_send(mbrs_session_t *s, enum frame_type type, const cJSON *meta);

/* From on_body: where the stream's next body bytes belong (mux_body_into).
 * 0, or -ENOENT. */
int mbrs_body_into(mbrs_session_t *s, uint32_t stream, void *dst, size_t len);

/* Refuses the member from on_frame or on_body: ERROR code with the reason,
 * then close (its row goes down). The handler then returns -EPROTO. */
void mbrs_refuse(mbrs_session_t *s, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
