/*
 * conn — a byte stream on a ring, plain or TLS, with bounded buffers.
 *
 * A connection moves bytes; protocols (HTTP, frames) sit on top through four
 * callbacks. Writing a small message and streaming a large body are the same
 * act: conn_write() queues bytes, and when the queue has gone above the
 * high-water mark on_drain() says when to write more; conn_send_file()
 * streams a file region through the ring without the caller's help.
 * Reading is symmetric: on_data() consumes what it can, and conn_pause()
 * stops reading while a slow consumer catches up.
 *
 * Every connection has an idle timeout and an optional absolute deadline
 * (for a request's headers, a TLS handshake). A connection belongs to the
 * ring (thread) that made it; none of this is thread-safe.
 */
#ifndef CONVOY_CONN_H
#define CONVOY_CONN_H

#include "convoy/net.h"
#include "convoy/ring.h"
#include "convoy/tls.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct conn conn_t;
typedef struct conn_listener conn_listener_t;

#define CONN_HIGH_WATER (256u * 1024) /* on_drain once the queue falls below ... */
#define CONN_LOW_WATER  (64u * 1024)  /* ... this, after having gone above the former */
#define CONN_IN_MAX     (256u * 1024) /* unconsumed input kept before giving up */

struct conn_handlers {
    /* Ready: TLS handshake done (tls_peer_name is known), or TCP connected. */
    void (*on_open)(conn_t *c);
    /* Plaintext arrived. Return how many bytes were consumed (the rest is
     * offered again with what follows), or a negative reason to close. */
    ssize_t (*on_data)(conn_t *c, const uint8_t *data, size_t len);
    /* The output queue fell below CONN_LOW_WATER after exceeding
     * CONN_HIGH_WATER. May be NULL. */
    void (*on_drain)(conn_t *c);
    /* Closed: reason 0 when either side closed cleanly (with TLS, the peer's
     * close_notify came first), -ECONNRESET when a TLS stream just ended,
     * else -errno, TLS_E* or on_data's negative value (-EINVAL if on_data
     * claimed more bytes than it was offered). Called exactly once, for every connection
     * (also one whose handshake failed); the connection is freed after it. */
    void (*on_close)(conn_t *c, int reason);
};

struct conn_opts {
    tls_ctx_t *tls;          /* NULL for plain TCP */
    const char *expect_peer; /* outgoing TLS: required peer common name, or NULL */
    const char *expect_role; /* TLS, both ways: required peer role (PKI_ROLE_*), or NULL */
    uint32_t idle_ms;        /* close after this long without traffic; 0 = never */
    uint32_t handshake_ms;   /* deadline for TCP connect + TLS handshake; 0 = 10 s */
};

/*
 * Listens on addr (port 0 picks one; see conn_listener_addr) and makes a
 * connection with the given handlers for every client. on_accept(c, arg)
 * runs first so the owner can attach its state (conn_set_udata). Several
 * rings may listen on one address; the kernel spreads clients among them.
 * Returns 0 or -errno.
 */
int conn_listen(conn_listener_t **out, ring_t *r, const struct net_addr *addr,
                const struct conn_opts *opts, const struct conn_handlers *h,
                void (*on_accept)(conn_t *c, void *arg), void *arg);

/* The bound address (with the real port). */
const struct net_addr *conn_listener_addr(const conn_listener_t *l);

/* Stops accepting and frees the listener (after its accept completes). */
void conn_listener_close(conn_listener_t *l);

/*
 * Connects to addr. The result comes through the handlers: on_open when
 * ready, on_close(-ECONNREFUSED, TLS_EVERIFY, …) on failure. *out is valid
 * until on_close returns. Returns 0, or -errno when nothing was started.
 */
int conn_connect(conn_t **out, ring_t *r, const struct net_addr *addr, const struct conn_opts *opts,
                 const struct conn_handlers *h, void *udata);

/* Queues len bytes (copied). Before on_open they wait for the handshake.
 * 0, -ENOMEM, -EPIPE once closing, or -EBUSY while a file is streaming. */
int conn_write(conn_t *c, const void *data, size_t len);

/*
 * Streams len bytes of fd from offset off after what is queued, reading
 * through the ring, never more than the high-water mark ahead of the
 * network. done(c, err) runs when the last byte is queued (err 0) or the
 * read failed (-errno; the connection is then closed). The caller keeps fd
 * open until done. Returns 0, or -EBUSY while another stream runs.
 */
int conn_send_file(conn_t *c, int fd, uint64_t off, uint64_t len, void (*done)(conn_t *c, int err));

/* Bytes queued and not yet sent. */
size_t conn_queued(const conn_t *c);

/* Stops and restarts delivering on_data (backpressure toward the peer). */
void conn_pause(conn_t *c);
void conn_resume(conn_t *c);

/* Closes after everything queued has been sent (TLS: after close_notify). */
void conn_close(conn_t *c);

/* Closes now, dropping what is queued; on_close gets reason. */
void conn_abort(conn_t *c, int reason);

/* Closes the connection if it is still open ms from now; 0 clears. */
void conn_set_deadline(conn_t *c, uint32_t ms);

void conn_set_udata(conn_t *c, void *udata);
void *conn_udata(const conn_t *c);
ring_t *conn_ring(const conn_t *c);

/* A close reason (on_close's) in words: "closed", "shutting down" (the
 * -ESHUTDOWN owners abort with when they stop), "peer certificate
 * rejected", strerror() text… */
const char *conn_reason_str(int reason);

/* The verified peer certificate's common name, or NULL (plain, or not yet). */
const char *conn_peer_name(const conn_t *c);

/* The verified peer certificate's role (a PKI_ROLE_* string), or NULL
 * (plain, not yet, or a certificate without a role). */
const char *conn_peer_role(const conn_t *c);

/* "HOST:PORT" of the peer. */
const char *conn_peer_addr(const conn_t *c);

#endif
