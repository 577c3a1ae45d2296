/*
 * tls — TLS 1.3 as a memory engine, for connections driven by io_uring.
 *
 * No socket ever reaches OpenSSL: ciphertext from the network is fed in with
 * tls_feed(), ciphertext to send is taken out with tls_out_take(), and
 * plaintext moves with tls_read()/tls_write(). The connection layer moves the
 * bytes through the ring. SSL and SSL_CTX exist only in tls.c.
 *
 * Identity: every daemon has DIR/ca.crt, DIR/NAME.crt and DIR/NAME.key made
 * by `convoy pki`. A peer is accepted only with a chain to that CA; the
 * common name of its certificate is its identity, and the certificate's role
 * (balancer, fileserver, frontend, compute: see pki.h) is what it may act as.
 */
#ifndef CONVOY_TLS_H
#define CONVOY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct tls_ctx tls_ctx_t;
typedef struct tls tls_t;

enum tls_role { TLS_SERVER, TLS_CLIENT };

/* Results other than byte counts; negative and apart from -errno values. */
#define TLS_EOF     (-2000) /* peer sent close_notify */
#define TLS_EPROTO  (-2001) /* protocol failure; tls_errstr() says which */
#define TLS_EVERIFY (-2002) /* peer certificate rejected (wrong CA, name, expired) */
#define TLS_ENOCERT (-2003) /* peer presented no certificate where one is required */

/*
 * A context for one role, TLS 1.3 only. pki_dir/ca.crt is the trust anchor,
 * and the only one (system CA paths are never loaded). When name is not
 * NULL, pki_dir/name.crt and pki_dir/name.key are presented. A server with
 * require_client_cert asks for and checks a client certificate (mutual TLS
 * on control edges); a client always checks the server's chain; host names
 * are never checked. Returns 0, or -errno / -EPROTO with the reason in err
 * ("tls: load /x/fs1.crt: No such file or directory"), and -EPERM when a
 * file or a folder of pki_dir is open to others (see pki_check_file). Once
 * its first session exists a context is read-only (but for its ticket keys,
 * which it locks) and may be shared by sessions on any thread.
 */
int tls_ctx_new(tls_ctx_t **out, enum tls_role role, const char *pki_dir, const char *name,
                bool require_client_cert, char *err, size_t errlen);
void tls_ctx_free(tls_ctx_t *ctx);

/*
 * A client context for a user's tool (convoy get): trusts the certificates
 * in the PEM file ca_file and nothing else, presents none. ca_file must pass
 * pki_check_file as a public file (nobody else can replace the trust
 * anchor). 0, or -errno / -EPROTO / -EPERM with the reason in err.
 */
int tls_ctx_new_cafile(tls_ctx_t **out, const char *ca_file, char *err, size_t errlen);

/*
 * Session resumption with TLS 1.3 tickets, for client-facing listeners
 * (HTTPS) and the clients that dial them; call before the context's first
 * session. On a server context: stateless tickets (one per handshake,
 * valid TLS_TICKET_SECS = 1 h), sealed with keys held in memory only and
 * rotated hourly, so that a restart or an hour forgets them; resumption
 * still makes a fresh (EC)DHE key exchange. On a client context: sessions
 * keep the tickets they receive (tls_session_save). Refused (-EINVAL) on a
 * server context that requires client certificates: control edges (mTLS)
 * keep tickets off. 0 or -errno, reason in err.
 */
int tls_ctx_enable_tickets(tls_ctx_t *ctx, char *err, size_t errlen);

/*
 * A session on ctx, used by one thread at a time. expect_peer, when not
 * NULL, is the common name the peer's certificate must carry, and
 * expect_role (a PKI_ROLE_*) the role: both are checked during the
 * handshake, which fails with TLS_EVERIFY and "peer is 'fs2', expected
 * 'balancer'", "peer 'fs1' has role 'fileserver', expected 'balancer'" or
 * "peer 'fs1' has no role, expected 'balancer'" (a certificate issued
 * without a role). A server session with either requires a client
 * certificate even when its context does not. 0 or -ENOMEM.
 */
int tls_new(tls_t **out, tls_ctx_t *ctx, const char *expect_peer, const char *expect_role);
void tls_free(tls_t *t);

/* Ciphertext that arrived from the network; always takes all of it. 0 or -ENOMEM. */
int tls_feed(tls_t *t, const void *data, size_t len);
/* The same, lent: OpenSSL reads the bytes where they are (after what was
 * fed before) until tls_lend_end(), which keeps a copy of what it left.
 * Between the two the caller reads plaintext and leaves data alone: a
 * receive buffer's ciphertext is then copied once, into OpenSSL's record,
 * not first into the session's queue. tls_lend_end: 0 or -ENOMEM. */
void tls_lend(tls_t *t, const void *data, size_t len);
int tls_lend_end(tls_t *t);

/* Advances the handshake: 1 once complete, 0 while it waits for input
 * (send tls_out_take() first), or TLS_E*. Send tls_out_take() after a
 * failure too: it may hold the alert that tells the peer why. Failures are
 * sticky: every later call on the session returns the same TLS_E*. A TLS 1.3
 * client completes before the server has checked its certificate; a
 * rejection reaches it as an error from tls_read(). */
int tls_handshake(tls_t *t);

bool tls_handshake_done(const tls_t *t);

/* Plaintext: >0 bytes, 0 when none is ready yet, TLS_EOF, or TLS_E*.
 * Completes the handshake first if needed. Reading can queue output (key
 * updates): check tls_out_pending() afterwards. */
ssize_t tls_read(tls_t *t, void *buf, size_t cap);

/* Encrypts all len bytes, any len, into the output (the handshake must be
 * done; TLS_EPROTO otherwise). Never waits: the output grows, and back-
 * pressure is the caller's, on tls_out_pending(). 0 or TLS_E*. */
int tls_write(tls_t *t, const void *buf, size_t len);

/* Queues close_notify into the output; nothing before the handshake is done
 * or after a failure (the transport just ends). */
void tls_close(tls_t *t);

/* Ciphertext waiting for the network, and taking it out (up to cap bytes;
 * returns the count, 0 when none). The queue frees its memory as it is
 * taken: an idle session holds none. */
size_t tls_out_pending(const tls_t *t);
size_t tls_out_take(tls_t *t, void *buf, size_t cap);

/*
 * Ciphertext straight to the caller: from now on every record goes to
 * fn(arg, data, len) as OpenSSL makes it, from inside tls_handshake,
 * tls_read, tls_write or tls_close, instead of into the queue that
 * tls_out_take drains (which then stays empty). fn must take all len bytes
 * (copy them: data is OpenSSL's buffer) and return 0, or a negative value to
 * fail the session (the call that made the bytes then returns TLS_EPROTO,
 * "output refused: ..."). Whatever was queued before is passed to fn first;
 * fn NULL goes back to the queue. Returns 0, or fn's failure while passing
 * the queued bytes (what remains stays queued).
 */
typedef int tls_output_fn(void *arg, const void *data, size_t len);
int tls_set_output(tls_t *t, tls_output_fn *fn, void *arg);

/* Common name of the verified peer certificate once the handshake is done,
 * or NULL (no handshake yet, or a server that did not ask for one). Owned by
 * the session. */
const char *tls_peer_name(const tls_t *t);

/* Role of the verified peer certificate once the handshake is done (one of
 * the PKI_ROLE_* strings), or NULL (no handshake yet, no certificate asked
 * for, or a certificate without a valid role). Owned by the session. */
const char *tls_peer_role(const tls_t *t);

/*
 * Client sessions on a context with tickets. tls_session_save: the newest
 * ticket the server sent, serialised into buf: its length, 0 when none has
 * come (tickets follow the handshake: they are taken in by tls_read),
 * -ENOSPC when cap is too small, or -E2BIG past the 8 KiB that
 * tls_session_offer takes (a buffer of 8 KiB always does). The blob holds a
 * resumption secret: keep it as private as a key, and in memory. Before the
 * handshake, tls_session_offer offers a saved blob to the same server: 0,
 * or -EINVAL (not a session, expired, or not a client before its
 * handshake). A server that cannot open the ticket makes a full handshake.
 * A resumed session still checks expect_peer and expect_role against the
 * certificate the session was made with, and has the same peer name and
 * role. tls_session_resumed: the handshake resumed a session.
 */
ssize_t tls_session_save(const tls_t *t, void *buf, size_t cap);
int tls_session_offer(tls_t *t, const void *blob, size_t len);
bool tls_session_resumed(const tls_t *t);

/* The negotiated cipher suite once the handshake is done
 * ("TLS_AES_128_GCM_SHA256"), or NULL. Static storage. */
const char *tls_cipher(const tls_t *t);

/* The last failure in words ("certificate verify failed: unable to get local issuer"). */
const char *tls_errstr(const tls_t *t);

#endif
