/*
 * httpd — an HTTP/1.1 server on conn: TLS by default, or plain.
 *
 * The design is simple: each request becomes an exchange (httpd_xchg_t)
 * handed to one handler function. The handler answers at once (a small
 * body, or a file region that conn streams: zero copy in plain
 * mode, read through the ring into the encryption with TLS), or returns
 * without answering: the exchange is then pending, and whoever holds it (a
 * timer, a pool task's result posted back to the ring) answers later. An
 * exchange lives until it is answered, exactly once, even when its
 * connection closed meanwhile (the answer then frees it and returns
 * -EPIPE), so a pending answer never needs to know whether the client is
 * still there; httpd_alive() says, to skip useless work.
 *
 * Keep-alive and pipelining: requests are read one at a time; the next
 * request's handler runs only once the previous answer is queued on the
 * connection (conn's one ordered queue then keeps answers in request
 * order). No new request is read while the output is above
 * CONN_HIGH_WATER, nor while a file answer's last byte is not yet queued.
 * Pipelined requests wait in conn's input meanwhile.
 *
 * Hostile clients: while a request's head is read the connection's input
 * is limited to the head limit and the head must arrive within header_ms
 * of its first byte (else 408 and close); between requests a connection
 * closes after idle_ms without traffic. The server never trusts a
 * connection (conn_trust) itself: the owner does, once a request has
 * authenticated, through httpd_conn(). Errors the parser finds are answered
 * with their status and "Connection: close".
 *
 * Everything here runs on the ring's thread.
 */
#ifndef CONVOY_HTTPD_H
#define CONVOY_HTTPD_H

#include "convoy/conn.h"
#include "convoy/http.h"
#include "convoy/net.h"
#include "convoy/ring.h"
#include "convoy/tls.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct httpd httpd_t;
typedef struct httpd_xchg httpd_xchg_t;

#define HTTPD_HEADER_MS 10000u /* default: a request's head within this of its first byte */
#define HTTPD_IDLE_MS   60000u /* default: close after this long without traffic */

/* Runs once per request, with the head read. Answer through httpd_reply*
 * now or later; not answering now makes the exchange pending. */
typedef void (*httpd_handler_fn)(httpd_xchg_t *x, void *arg);

struct httpd_opts {
    tls_ctx_t *tls;          /* NULL: plain HTTP (--insecure-http) */
    const char *expect_role; /* TLS: required client certificate role, or NULL */
    uint32_t header_ms;      /* 0 = HTTPD_HEADER_MS */
    uint32_t idle_ms;        /* 0 = HTTPD_IDLE_MS */
    uint32_t max_conns;      /* 0 = what RLIMIT_NOFILE allows (conn_listen) */
    struct http_limits lim;  /* 0s = the defaults of http.h */
};

/*
 * Listens on addr (port 0 picks one, see httpd_addr) and calls fn(x, arg)
 * for every request. Several rings may listen on one address, each with its
 * own httpd. Returns 0 or -errno.
 */
int httpd_listen(httpd_t **out, ring_t *r, const struct net_addr *addr, const struct httpd_opts *o,
                 httpd_handler_fn fn, void *arg);

const struct net_addr *httpd_addr(const httpd_t *s);

/* Connections open now. */
unsigned httpd_conns(const httpd_t *s);

/* Stops accepting and closes every connection (-ESHUTDOWN). The server is
 * freed once the last connection's close has run (the ring must keep
 * running until then); pending exchanges outlive it and must still be
 * answered. */
void httpd_stop(httpd_t *s);

/* Stops accepting and lets every connection finish what it has begun: one
 * between requests closes now, one with a request in progress closes once
 * its answer (a file's last byte included) has been sent, and whatever is
 * still open grace_ms from now is dropped. done(arg) runs on the ring once
 * the last connection has closed, after the server is freed. */
void httpd_drain(httpd_t *s, uint32_t grace_ms, void (*done)(void *arg), void *arg);

/* ---- the exchange ---- */

/* The request (valid until the exchange is answered). */
const http_req_t *httpd_req(const httpd_xchg_t *x);

/* The connection (peer address, TLS peer name and role, conn_trust,
 * conn_set_in_max), or NULL once it has closed. */
conn_t *httpd_conn(const httpd_xchg_t *x);

/* Whether the connection is open, as far as the server knows: while an
 * answer is pending the server does not read, so a client that left is
 * noticed when the answer is written, or at the idle timeout. */
bool httpd_alive(const httpd_xchg_t *x);

/* Adds a field to the answer ("ETag", "Content-Range", "Location"…; the
 * server writes Date, Content-Length and Connection itself). Up to 8 KiB
 * of fields per answer. 0, -ENOSPC, -EINVAL (CR, LF or NUL in it: nothing
 * added), -ENOMEM, -EALREADY once answered. */
int httpd_header(httpd_xchg_t *x, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with the value as it is (no format to parse, for every request). */
int httpd_header_str(httpd_xchg_t *x, const char *name, const char *value);

/* Asks for "Connection: close": the connection closes after this answer. */
void httpd_close_after(httpd_xchg_t *x);

/*
 * Answers with status and a body copied now (len bytes, NULL for none;
 * ctype: Content-Type, or NULL for none). A HEAD gets the same head
 * without the body. The exchange is freed. Returns 0, -EPIPE when the
 * connection had closed, -ENOMEM, or -EINVAL when the fields did not fit
 * the head; after an error the connection is closed at once. -EALREADY
 * when x was answered before (nothing happens then).
 */
int httpd_reply(httpd_xchg_t *x, int status, const char *ctype, const void *body, size_t len);

/* httpd_reply() with a body of "msg\n" in text/plain (msg may be NULL:
 * the reason phrase). For errors (403 with the reason, 404...). */
int httpd_reply_text(httpd_xchg_t *x, int status, const char *msg);

/*
 * Answers with status and len bytes of fd from off (Content-Length: len),
 * streamed by conn_send_file. done(arg, err) runs once, from the loop,
 * when the caller may close fd: err 0 once the last byte is queued, or
 * < 0 when the file could not be read or the connection closed first. A
 * HEAD sends only the head (done then runs with 0). Returns 0 (done will
 * run), or -EPIPE, -ENOMEM, -EINVAL as httpd_reply (done will not run; the
 * exchange is freed either way).
 */
int httpd_reply_file(httpd_xchg_t *x, int status, int fd, uint64_t off, uint64_t len,
                     void (*done)(void *arg, int err), void *arg);

/*
 * Reads the request's body: fn(x, arg, piece, len, err) runs from the loop
 * with each piece of payload (valid during the call only), then once with
 * len 0 at its end (err 0) or when it cannot be read (err < 0: the
 * connection closed, -EBADMSG bad chunk framing, -EMSGSIZE over body_max:
 * the connection then closes after the answer); that last call always
 * comes, unless the handler answered before it. Sends "100 Continue"
 * first when the client asked for it. The handler may answer at any time
 * (before the end of the body too: no more calls then, and the rest is read
 * and dropped). 0, or -EALREADY when called twice or after the answer. A
 * body the handler never reads is dropped after its answer.
 */
typedef void (*httpd_body_fn)(httpd_xchg_t *x, void *arg, const uint8_t *piece, size_t len,
                              int err);
int httpd_read_body(httpd_xchg_t *x, httpd_body_fn fn, void *arg);

/*
 * Room for the body, from the reader (in its fn, or after
 * httpd_read_body): the next bytes of it, up to len and within one run of
 * payload (http_req_body_run), are received straight into dst (conn_sink)
 * and come to fn as one piece at dst, with no copy between the socket (or
 * the TLS engine) and the reader. dst stays the reader's, and is written
 * only while httpd runs: an answer stops the filling. 0; -EAGAIN when
 * framing comes next (a chunk's size line): offer again at the next
 * piece; -EALREADY when not reading a body, or room is already offered.
 * Pieces come as before either way.
 */
int httpd_body_into(httpd_xchg_t *x, void *dst, size_t len);

/* Backpressure while reading a body: no piece is delivered between pause
 * and resume (the client's sending stalls once the buffers fill). The end
 * of a body whose last piece has come is reported even while paused. */
void httpd_pause(httpd_xchg_t *x);
void httpd_resume(httpd_xchg_t *x);

#endif
