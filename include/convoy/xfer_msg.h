/*
 * xfer_msg — the transfer messages a file server sends the balancer
 * (XFER_START, XFER_PROGRESS, XFER_END), as built by the server and
 * checked by the balancer. docs/protocol-tracking.md describes them.
 *
 *   XFER_START    {"id", "path", "first_byte", "length", "size"[, "etag"][, "digest"]}
 *   XFER_PROGRESS {"id", "bytes"}
 *   XFER_END      {"id", "bytes", "outcome"}
 *
 * The leg a message is about is the newest leg of transfer id on the
 * server whose connection carried it (its certificate name), so no
 * message names a server. Parsing is strict: an unknown, missing or
 * mistyped field, an integer outside its C type, a path, ETag or digest
 * that is not what it names, or an outcome not listed is refused
 * (FRAME_ESCHEMA); strings returned point into the meta, valid as long as
 * it is.
 */
#ifndef CONVOY_XFER_MSG_H
#define CONVOY_XFER_MSG_H

#include "convoy/frame.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define XFER_PATH_MAX   1025 /* a ticket's path (1024 bytes, "/" included) and the NUL */
#define XFER_ETAG_MAX   64   /* with the NUL */
#define XFER_DIGEST_MAX 65   /* 64 lowercase hex digits of SHA-256, and the NUL */

/* How a leg ended. */
enum xfer_outcome {
    XFER_OUT_NONE,           /* not ended (or ended unstarted: a redirect not followed) */
    XFER_OUT_COMPLETE,       /* every byte of the leg sent */
    XFER_OUT_CLIENT_ABORTED, /* the client went away */
    XFER_OUT_ERROR,          /* the server failed (a read error, a timeout) */
    XFER_OUT_INTERRUPTED,    /* the server went down with the leg running (balancer only) */
};

/* "none", "complete", "client-aborted", "error", "interrupted"; "unknown". */
const char *xfer_outcome_str(enum xfer_outcome o);

/* One message. Which fields count depends on type. */
struct xfer_msg {
    enum frame_type type;      /* FRAME_XFER_START, _PROGRESS or _END */
    uint64_t id;               /* the transfer, from the ticket */
    const char *path;          /* START: "/"-rooted path served */
    uint64_t first_byte;       /* START: offset of the leg's first byte */
    uint64_t length;           /* START: bytes the leg will send */
    uint64_t size;             /* START: the file's size */
    const char *etag;          /* START: NULL when not sent */
    const char *digest;        /* START: hex SHA-256, NULL when not known */
    uint64_t bytes;            /* PROGRESS, END: bytes of the leg sent so far */
    enum xfer_outcome outcome; /* END: complete, client-aborted or error */
};

/* Whether s is a path the balancer records: starts with '/', shorter than
 * XFER_PATH_MAX, no NUL or control byte. */
bool xfer_msg_path_valid(const char *s);

/* An ETag: 1 .. XFER_ETAG_MAX - 1 printable ASCII bytes other than '\\'. */
bool xfer_msg_etag_valid(const char *s);

/* A digest: exactly 64 lowercase hex digits. */
bool xfer_msg_digest_valid(const char *s);

/*
 * The meta of m (by m->type): a new cJSON object the caller frees, or NULL
 * without memory or for a type that is not an XFER message. Fields are not
 * checked here; the receiver's parser is the check.
 */
cJSON *xfer_msg_json(const struct xfer_msg *m);

/*
 * Parses the meta of a frame of type (FRAME_XFER_START, _PROGRESS, _END)
 * into m (zeroed first). 0, FRAME_ESCHEMA with the reason in why, or
 * FRAME_ETYPE for another type. START refuses first_byte + length > size.
 */
int xfer_msg_parse(enum frame_type type, const cJSON *meta, struct xfer_msg *m, char *why,
                   size_t whylen);

#endif
