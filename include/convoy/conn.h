/*
 * conn — a byte stream on a ring, plain or TLS, with bounded buffers.
 *
 * A connection moves bytes; protocols (HTTP, frames) sit on top through a
 * few callbacks. Sending is one ordered queue fed three ways: conn_write()
 * copies small messages, conn_send_buf() streams memory the caller owns
 * without copying it, conn_send_file() streams a file region through the
 * ring; whatever is queued goes out in the order it was queued, and
 * on_drain() says when the queue has gone down again. Reading is
 * symmetric: on_data() consumes what it can, conn_pause() stops reading
 * while a slow consumer catches up.
 *
 * Callbacks keep one contract: each runs from the loop, never inside the
 * call that caused it (a resume, a send or a close never re-enters the
 * caller's handler on its own stack), and every completion callback runs
 * exactly once, whatever happens to the connection.
 *
 * Every connection has an idle timeout and an optional absolute deadline
 * (for a request's headers, a TLS handshake). A connection belongs to the
 * ring (thread) that made it; none of this is thread-safe. Other threads
 * name a connection by its conn_ref_t, never by pointer.
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

/* A connection's name that outlives it: conn_get() gives the connection
 * back while it lives and NULL after, even if the memory was reused. */
typedef uint64_t conn_ref_t;

#define CONN_HIGH_WATER (256u * 1024) /* on_drain once conn_queued() falls below ... */
#define CONN_LOW_WATER  (64u * 1024)  /* ... this, after having gone above the former */
/* Plain TCP splices a file through a pipe of up to this (the pages are
 * the page cache's, never copied; conn_queued() counts them). A quarter
 * of this cost two thirds of the throughput: each refill is a round trip
 * through the ring. */
#define CONN_PIPE_SIZE (1024u * 1024)
#define CONN_IN_MAX    (256u * 1024) /* default limit of unconsumed input */

struct conn_handlers {
    /* Ready: TLS handshake done (tls_peer_name is known), or TCP connected. */
    void (*on_open)(conn_t *c);
    /* Plaintext arrived. Return how many bytes were consumed, or a negative
     * reason to close. What is left is offered again, at the head of the
     * next offer, with what follows: a parser that keeps its own position
     * need not scan it twice. */
    ssize_t (*on_data)(conn_t *c, const uint8_t *data, size_t len);
    /* conn_queued() fell below CONN_LOW_WATER after exceeding
     * CONN_HIGH_WATER. May be NULL. */
    void (*on_drain)(conn_t *c);
    /* The peer finished sending (TCP FIN, or TLS close_notify); the
     * connection stays open for writing until conn_close(), so an answer
     * produced later still goes out. May be NULL: the connection then
     * closes as soon as what is queued has been sent. */
    void (*on_eof)(conn_t *c);
    /* Closed: reason 0 when either side closed cleanly (with TLS, the peer's
     * close_notify came first), -ECONNRESET when a TLS stream just ended,
     * -ETIMEDOUT (idle or deadline), -EUSERS (evicted to make room, see
     * conn_trust), else -errno, TLS_E* or on_data's negative value (-EINVAL
     * if on_data claimed more bytes than it was offered). Called exactly
     * once, for every connection (also one whose handshake failed), after
     * every pending send's done; the connection is freed after it. */
    void (*on_close)(conn_t *c, int reason);
};

struct conn_opts {
    tls_ctx_t *tls;          /* NULL for plain TCP */
    const char *expect_peer; /* outgoing TLS: required peer common name, or NULL */
    const char *expect_role; /* TLS, both ways: required peer role (PKI_ROLE_*), or NULL */
    uint32_t idle_ms;        /* close after this long without traffic; 0 = never */
    uint32_t handshake_ms;   /* deadline for TCP connect + TLS handshake; 0 = 10 s */
    uint32_t in_max;         /* unconsumed input kept before giving up; 0 = CONN_IN_MAX */
    uint32_t max_conns;      /* listener: connections at once; 0 = what RLIMIT_NOFILE allows */
};

/*
 * Listens on addr (port 0 picks one; see conn_listener_addr) and makes a
 * connection with the given handlers for every client. on_accept(c, arg)
 * runs first so the owner can attach its state (conn_set_udata). Several
 * rings may listen on one address; the kernel spreads clients among them.
 *
 * With max_conns connections open, a new client evicts the oldest one not
 * yet trusted (conn_trust) — a flood of silent connections costs the
 * flooder, not the peers that proved themselves — or is refused when all
 * are trusted. When the process runs out of descriptors, accepting pauses
 * with a growing backoff instead of spinning. Returns 0 or -errno.
 */
int conn_listen(conn_listener_t **out, ring_t *r, const struct net_addr *addr,
                const struct conn_opts *opts, const struct conn_handlers *h,
                void (*on_accept)(conn_t *c, void *arg), void *arg);

/* The bound address (with the real port). */
const struct net_addr *conn_listener_addr(const conn_listener_t *l);

/* Connections open on the listener now. */
unsigned conn_listener_count(const conn_listener_t *l);

/* Stops accepting and frees the listener (after its accept completes).
 * Its connections live on. */
void conn_listener_close(conn_listener_t *l);

/*
 * Connects to addr. The result comes through the handlers: on_open when
 * ready, on_close(-ECONNREFUSED, TLS_EVERIFY, …) on failure. *out is valid
 * until on_close returns. Returns 0, or -errno when nothing was started.
 */
int conn_connect(conn_t **out, ring_t *r, const struct net_addr *addr, const struct conn_opts *opts,
                 const struct conn_handlers *h, void *udata);

/* Ends a send: err 0 once its bytes are queued as output (the caller's
 * memory or file is no longer needed), or err < 0 when they can no longer
 * leave (the connection closed first: its close reason, or -EPIPE). */
typedef void (*conn_done_fn)(conn_t *c, void *arg, int err);

/* Queues len bytes (copied) after everything queued before. Before on_open
 * they wait for the handshake. 0, -ENOMEM, or -EPIPE once closing. */
int conn_write(conn_t *c, const void *data, size_t len);

/*
 * Queues len bytes of the caller's memory, which must stay valid and
 * unchanged until done(c, arg, err) runs. Plain TCP sends them from there;
 * TLS encrypts them from there into the output as the network takes it
 * (never more than the high-water mark ahead). done runs once, from the
 * loop. 0, or -EPIPE once closing (done does not run then).
 */
int conn_send_buf(conn_t *c, const void *p, size_t len, conn_done_fn done, void *arg);

/*
 * Queues len bytes of fd from offset off, read through the ring never more
 * than the high-water mark ahead of the network. The caller keeps fd open
 * until done(c, arg, err), which runs once, from the loop: err 0 when the
 * last byte is queued, -errno when the read failed (the connection is then
 * closed) or when the connection closed first. 0, or -EPIPE once closing
 * (done does not run then).
 */
int conn_send_file(conn_t *c, int fd, uint64_t off, uint64_t len, conn_done_fn done, void *arg);

/* Bytes queued and not yet sent, counting caller buffers of
 * conn_send_buf() (file regions count once read). */
size_t conn_queued(const conn_t *c);

/* Bytes the socket has taken so far (ciphertext with TLS): what a sender
 * that queued a long file region reads as its progress. */
uint64_t conn_bytes_out(const conn_t *c);

/*
 * Takes the next len bytes of input into dst, the caller's, instead of
 * offering them to on_data: what conn holds first, then what TLS opens
 * (its records are opened straight into dst) or what the socket holds
 * (plain: received straight into dst, never through a ring buffer). A
 * body whose length is known needs no copy on its way. dst is written
 * only inside conn's own steps on the loop, never by the kernel while the
 * caller runs, so the caller may stop the sink and free dst at any time.
 * fn(c, arg, got, err) runs once, from the loop: err 0 when got == len,
 * or < 0 with the got bytes that came when the stream ended first
 * (-ECONNRESET at the peer's end, else the close reason). on_data resumes
 * afterwards, unless fn set another sink. Pausing holds a sink too. 0,
 * -EBUSY while another is set, -EINVAL for len 0, -EPIPE unless open.
 */
typedef void (*conn_sink_fn)(conn_t *c, void *arg, size_t got, int err);
int conn_sink(conn_t *c, void *dst, size_t len, conn_sink_fn fn, void *arg);
/* Stops the sink without its fn: returns the bytes it took into dst
 * (they are the caller's: the input goes on after them). 0 without one. */
size_t conn_sink_stop(conn_t *c);
/*
 * From on_data, once the offer is used whole (return its length): up to
 * len bytes of what follows, read into dst now without waiting (what TLS
 * opens from the ciphertext it has, or, plain, what the socket holds), so
 * a parser that knows where the next bytes go takes them there with no
 * copy on the way. Returns the bytes read; 0 when none can be had now
 * (or the offer was kept input, or the stream ended: on_eof and on_close
 * tell that later, from the loop), or -errno after a socket error, when
 * the connection is closing.
 */
ssize_t conn_read_now(conn_t *c, void *dst, size_t len);
/* Stops and restarts delivering on_data (backpressure toward the peer).
 * What resume releases is delivered from the loop, soon after. */
void conn_pause(conn_t *c);
void conn_resume(conn_t *c);

/* Closes after everything queued has been sent (TLS: then close_notify). */
void conn_close(conn_t *c);

/* Closes now, dropping what is queued; on_close gets reason. */
void conn_abort(conn_t *c, int reason);

/* Closes the connection if it is still open ms from now; 0 clears. */
void conn_set_deadline(conn_t *c, uint32_t ms);

/* Sets the limit of unconsumed input (e.g. raised once a peer logged in). */
void conn_set_in_max(conn_t *c, uint32_t max);

/* The peer has proven itself (authenticated): never evicted to make room
 * for a new connection. */
void conn_trust(conn_t *c);

void conn_set_udata(conn_t *c, void *udata);
void *conn_udata(const conn_t *c);
ring_t *conn_ring(const conn_t *c);

/* The connection's lasting name (see conn_ref_t); never 0. */
conn_ref_t conn_ref(conn_t *c);

/* The connection named ref, or NULL once it has closed. Only on the ring
 * (thread) the connection belongs to. */
conn_t *conn_get(conn_ref_t ref);

/* A close reason (on_close's) in words: "closed", "shutting down" (the
 * -ESHUTDOWN owners abort with when they stop), "peer certificate
 * rejected", strerror() text… */
const char *conn_reason_str(int reason);

/* The verified peer certificate's common name, or NULL (plain, or not yet). */
const char *conn_peer_name(const conn_t *c);

/* The verified peer certificate's role (a PKI_ROLE_* string), or NULL
 * (plain, not yet, or a certificate without a role). */
const char *conn_peer_role(const conn_t *c);

/* The peer's address (looked up when first asked), or NULL when it cannot
 * be known (out of memory, a socket already reset). */
const struct net_addr *conn_peer(conn_t *c);

/* "HOST:PORT" of the peer (looked up when first asked), "?" when unknown. */
const char *conn_peer_addr(conn_t *c);

#endif
