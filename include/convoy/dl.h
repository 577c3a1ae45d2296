/*
 * dl — one download through the balancer, on a ring: ask, follow the
 * redirect, stream the body, fail over, verify.
 *
 * The design is simple: a download is a small state machine driven by conn
 * callbacks. It asks the balancer `GET /f/<path>` (with the user's
 * Authorization), takes the 307's Location (the file server's URL with its
 * ticket), X-Convoy-Transfer (the transfer's id) and the server's name
 * (X-Convoy-Decision's server=), and fetches the body from the file server
 * with `Range: bytes=N-` when it already holds N bytes. Every byte goes to
 * the caller's sink and into a SHA-256; at the end the hash must equal
 * Repr-Digest. When the file server's connection breaks, or no byte comes
 * for stall_ms, it asks the balancer `?resume=<id>&failed=<server>` and
 * continues at the exact byte on the server it names, checking that the new
 * leg is a 206 of the same ETag and size, starting where the last one
 * stopped. Many downloads may share one ring (convoy loadgen); none of this
 * is thread-safe.
 */
#ifndef CONVOY_DL_H
#define CONVOY_DL_H

#include "convoy/ring.h"
#include "convoy/tls.h"
#include "convoy/xget.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dl dl_t;

#define DL_STALL_MS 3000u /* default: a leg that sends no byte this long is given up */
#define DL_LEGS_MAX 8u    /* default: legs (the first and the resumes) before giving up */

/* Where the body goes. Every callback runs on the ring's thread. */
struct dl_sink {
    /*
     * A file server answered with the representation m; the caller keeps
     * the first keep bytes it already holds (a resumed part: keep > 0) or
     * starts empty (keep 0, also when a server sends the whole file again),
     * and feeds what it keeps to h so that the digest covers the whole
     * file. 0, or -errno to fail the download (XGET_EFAIL). May be NULL:
     * nothing is kept.
     */
    int (*open)(void *arg, const struct xget_meta *m, uint64_t keep, xget_hash_t *h);
    /* Body bytes, in order, at offset off of the file. 0 or -errno (XGET_EFAIL). May be NULL. */
    int (*write)(void *arg, uint64_t off, const uint8_t *p, size_t len);
    /* A leg started on server (its name), or bytes arrived: done of total. May be NULL. */
    void (*progress)(void *arg, const char *server, uint64_t done, uint64_t total);
    /* The end, exactly once, from the loop: an xget_exit code and, when not
     * XGET_OK, why ("fs2: digest mismatch"). The download is freed after. */
    void (*done)(void *arg, int code, const char *why);
    void *arg;
};

struct dl_opts {
    const struct xget_url *balancer; /* the balancer's URL (scheme, host, port) */
    tls_ctx_t *tls;                  /* for https: balancer and file servers (tls_ctx_new_cafile) */
    const char *path;                /* the file as the user names it ("dir/x.bin") */
    const char *authorization;       /* the Authorization value for the balancer, or NULL */
    uint32_t stall_ms;               /* 0 = DL_STALL_MS */
    uint32_t legs_max;               /* 0 = DL_LEGS_MAX */
    uint32_t retries_503; /* 503s waited out (Retry-After, at most 5 s) before XGET_ENOSERVER */
    uint64_t rate;        /* bytes per second; 0 = unlimited */
    /* An earlier run's part (etag[0] == '\0': none): the first request
     * asks for bytes from have on, and a 206 of this ETag keeps them. */
    struct xget_meta resume;
    uint64_t have;
};

/* Starts a download on r. The strings of o are copied. 0 (sink.done will
 * run), or -errno when nothing was started. */
int dl_start(dl_t **out, ring_t *r, const struct dl_opts *o, const struct dl_sink *sink);

/* Ends the download now: sink.done runs from the loop with code and why
 * (e.g. XGET_EFAIL, "interrupted"). No-op once done has been scheduled. */
void dl_cancel(dl_t *d, int code, const char *why);

/* The transfer id the balancer gave ("" before the first redirect), the
 * server of the current leg, and the legs made so far. */
const char *dl_transfer(const dl_t *d);
const char *dl_server(const dl_t *d);
unsigned dl_legs(const dl_t *d);

#endif
