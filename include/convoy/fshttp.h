/*
 * fshttp — the file server's HTTP side: GET and HEAD of /f/<path>?t=<ticket>.
 *
 * The design is simple: one handler on httpd (httpd.h) takes a request
 * through four gates, each answering the request itself when it refuses:
 * the method (405), the path's form (404), the ticket (403 with the reason),
 * the open beneath the root (404; fsroot.h). Then the file's digest: known
 * (fsdigest.h) or waited for, so Repr-Digest is in the head of every answer
 * and no byte leaves before it. Then the answer: 200, 206 with
 * Content-Range, 416 with "Content-Range: bytes * /size", or 304 for an
 * If-None-Match that matches; the body streams from the file through
 * conn_send_file (spliced in plain mode, read through the ring into the
 * encryption with TLS), never whole in memory.
 *
 * Every answer with a body to send is a leg of the ticket's transfer,
 * reported to the balancer through fsxfer: START when the head is queued,
 * PROGRESS every FSXFER_PROGRESS_MS with the bytes the socket took, END
 * once the last byte is queued on the connection (complete), or when the
 * client went first (client-aborted), or when the file could not be read
 * (error).
 *
 * The ticket must be made out for this server (its name), for the path
 * "/<path>" (the request's path, percent-decoded, without its "/f"), and for
 * the request's method. One thread: the ring's.
 */
#ifndef CONVOY_FSHTTP_H
#define CONVOY_FSHTTP_H

#include "convoy/fsdigest.h"
#include "convoy/fsroot.h"
#include "convoy/fsxfer.h"
#include "convoy/net.h"
#include "convoy/ring.h"
#include "convoy/ticket.h"
#include "convoy/tls.h"

typedef struct fsh fsh_t;

struct fsh_opts {
    ring_t *ring;
    const struct net_addr *addr; /* where to listen */
    tls_ctx_t *tls;              /* server context; NULL: plain HTTP (--insecure-http) */
    const char *name;            /* this server's name, as tickets name it */
    const fsroot_t *root;
    fsdig_t *dig;
    fsxfer_t *xfer;
    ticket_keyring_t *keys; /* the balancer's keys, from WELCOME */
};

/* Listens. 0 or -errno. */
int fsh_start(fsh_t **out, const struct fsh_opts *o);

/* The bound address. */
const struct net_addr *fsh_addr(const fsh_t *s);

/* Stops listening; requests waiting for a digest get 503, answers under
 * way are sent to the end, and what is still open grace_ms from now is
 * dropped (its legs end as errors). done(arg) runs on the ring once every
 * connection has closed. */
void fsh_stop(fsh_t *s, uint32_t grace_ms, void (*done)(void *arg), void *arg);

/* Frees what is left (after the ring stopped). NULL is a no-op. */
void fsh_free(fsh_t *s);

#endif
