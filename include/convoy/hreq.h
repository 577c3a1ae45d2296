/*
 * hreq — one HTTP/1.1 request and its answer on a ring: connect (TLS for
 * https), send the request with its body from memory and then from a file
 * region (never read into memory: conn streams it), parse the answer and
 * hand its body on in pieces. One connection per request
 * ("Connection: close"), so a request is self-contained and many run at
 * once on one ring (convoy loadgen submit). The compute client's commands
 * (submit, jobs, job, result) are made of these. Not thread-safe.
 */
#ifndef CONVOY_HREQ_H
#define CONVOY_HREQ_H

#include "convoy/http.h"
#include "convoy/ring.h"
#include "convoy/tls.h"
#include "convoy/xget.h"

#include <stddef.h>
#include <stdint.h>

typedef struct hreq hreq_t;

#define HREQ_TIMEOUT_MS 30000u /* default: without a byte either way, the request fails */

struct hreq_opts {
    const struct xget_url *url; /* scheme, host and port; the target is below */
    tls_ctx_t *tls;             /* for https (tls_ctx_new_cafile) */
    enum http_method method;
    const char *target;  /* "/v1/jobs/7" (quoted as it goes on the wire) */
    const char *headers; /* more header lines, each ending "\r\n", or NULL */
    const void *body;    /* body_len bytes sent first, kept valid until done */
    size_t body_len;
    int body_fd; /* then body_fd_len bytes of this file from body_off; -1: none */
    uint64_t body_off, body_fd_len;
    uint32_t timeout_ms; /* 0 = HREQ_TIMEOUT_MS */
};

struct hreq_sink {
    /* The answer's head (status and fields, valid during the call). 0, or
     * -errno to stop here (done gets it). May be NULL. */
    int (*head)(void *arg, const http_resp_t *r);
    /* A piece of the body, in order. 0, or -errno to stop. May be NULL. */
    int (*body)(void *arg, const uint8_t *p, size_t len);
    /* Exactly once, from the loop: err 0 with the HTTP status once the
     * whole answer came, else -errno (status 0 if no head came) and why. */
    void (*done)(void *arg, int err, int status, const char *why);
    void *arg;
};

/* Starts the request. 0 (done will run), or -errno when nothing started. */
int hreq_start(hreq_t **out, ring_t *r, const struct hreq_opts *o, const struct hreq_sink *s);

/* Ends it now: done runs from the loop with -ECANCELED. No-op once done
 * has been scheduled. */
void hreq_cancel(hreq_t *q);

#endif
