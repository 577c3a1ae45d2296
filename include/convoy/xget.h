/*
 * xget — the pieces of a download that need no socket: where to ask (URLs),
 * what the answer promises (Repr-Digest, RFC 9530), checking the bytes
 * against it as they stream, pacing (--limit-rate), the partial file that
 * lets a later run resume (OUT.part and OUT.part.meta), and the exit codes
 * that tell a script what went wrong. `convoy get` and `convoy loadgen get`
 * are built from them, and the unit tests check each alone.
 */
#ifndef CONVOY_XGET_H
#define CONVOY_XGET_H

#include "convoy/net.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes of `convoy get` (docs/cli.md has the same table). */
enum xget_exit {
    XGET_OK = 0,
    XGET_EFAIL = 1,      /* anything else: a local file could not be written... */
    XGET_EUSAGE = 2,     /* bad command line */
    XGET_EAUTH = 3,      /* 401 or 403: credentials refused (429: slowed after failures) */
    XGET_ENOTFOUND = 4,  /* 404: no server holds the path */
    XGET_EINTEGRITY = 5, /* the bytes do not match Repr-Digest, or a leg changed ETag */
    XGET_ENOSERVER = 6,  /* 503 after every retry: no server up */
    XGET_ENET = 7,       /* connection, TLS or protocol failure after every retry */
};

/* "ok", "usage", "auth", "not found", "integrity", "no server", "network",
 * "failed". */
const char *xget_exit_str(int code);

/* An exit code for a final HTTP status (200/206 give XGET_OK; an unknown
 * one XGET_ENET: the peer does not speak our protocol). */
int xget_exit_for_status(int status);

#define XGET_HOST_MAX 256
#define XGET_PATH_MAX 4096

struct xget_url {
    bool tls;                 /* https */
    char host[XGET_HOST_MAX]; /* as written: "127.0.0.1", "[::1]", "localhost" */
    uint16_t port;            /* 443 / 80 when the URL names none */
    char path[XGET_PATH_MAX]; /* from the first '/', query included; "/" when empty */
    struct net_addr addr;     /* host:port to dial (numeric hosts, or localhost) */
};

/*
 * Parses "https://HOST[:PORT][/PATH]" or "http://…" (no user info, no
 * fragment; HOST numeric or localhost, as net_addr_parse takes it). 0, or
 * -EINVAL with the reason in err ("expected https:// or http://").
 */
int xget_url_parse(const char *s, struct xget_url *u, char *err, size_t errlen);

/* u's "HOST:PORT" into buf (for a Host header and messages). Returns buf. */
char *xget_url_authority(const struct xget_url *u, char *buf, size_t len);

/*
 * The path a user names, quoted for a URL path: every byte outside
 * RFC 3986's unreserved set and '/' becomes %XX. Returns the length, or
 * -ENAMETOOLONG when it does not fit in cap (with its NUL).
 */
int xget_path_quote(const char *path, char *buf, size_t cap);

/*
 * The Authorization value for a user: "Basic base64(user:password)" when
 * password is not NULL, else "Bearer TOKEN" for token. 0, -EINVAL (a user
 * with ':' or a control character, a token with a space or control
 * character) or -ENOSPC.
 */
#define XGET_AUTH_MAX 1100 /* an Authorization value, with its NUL */
int xget_auth_basic(const char *user, const char *password, char *buf, size_t cap);
int xget_auth_bearer(const char *token, char *buf, size_t cap);

/*
 * The SHA-256 of a Repr-Digest field value (a structured dictionary such as
 * `sha-512=:…:, sha-256=:…:`): 0 with out filled, -ENOENT when the field
 * names no sha-256, -EINVAL when the field or its sha-256 member is
 * malformed (bad base64, not 32 bytes).
 */
int xget_digest_parse(const char *value, size_t len, uint8_t out[32]);

/* out (at least 64 bytes) gets `sha-256=:BASE64:` for d. Returns out. */
char *xget_digest_format(const uint8_t d[32], char *out, size_t cap);

/* Streaming SHA-256 over a body, one per transfer. */
typedef struct xget_hash xget_hash_t;
int xget_hash_new(xget_hash_t **out);
void xget_hash_update(xget_hash_t *h, const void *p, size_t len);
/* Ends the hash: true when it equals want. The hash starts again empty. */
bool xget_hash_check(xget_hash_t *h, const uint8_t want[32]);
void xget_hash_free(xget_hash_t *h);

/*
 * A rate given as "10M", "512k", "1G" or a plain byte count per second
 * (K, M, G are powers of 1024, as curl reads them). 0 or -EINVAL.
 */
int xget_rate_parse(const char *s, uint64_t *bytes_per_s);

/*
 * Pacing: the reader asks how long to wait before taking more, given the
 * bytes taken since the pacer began. The pace is an average from the start
 * with a burst of a tenth of a second, so a pause of the network is not
 * made up for by a flood after it (the start moves up when more than one
 * second was lost).
 */
struct xget_pace {
    uint64_t rate;  /* bytes per second; 0 = unlimited */
    uint64_t t0_ms; /* when pacing (re)started */
    uint64_t base;  /* bytes taken before t0_ms */
};
void xget_pace_start(struct xget_pace *p, uint64_t rate, uint64_t now_ms, uint64_t taken);
/* The bytes that may be taken now (UINT64_MAX without a rate): a reader
 * takes no more of what it received, so a big receive does not run ahead
 * of the pace. */
uint64_t xget_pace_allow(const struct xget_pace *p, uint64_t now_ms, uint64_t taken);
/* Milliseconds to wait before reading more (0: go on). */
uint64_t xget_pace_wait(struct xget_pace *p, uint64_t now_ms, uint64_t taken);

/*
 * What OUT.part.meta keeps beside OUT.part, so that a later run resumes a
 * download of the same representation: its ETag, total size and digest.
 * The file is text, one `key value` per line (docs/cli.md).
 */
#define XGET_ETAG_MAX 256
struct xget_meta {
    char etag[XGET_ETAG_MAX]; /* as the server sent it, quotes included */
    uint64_t size;            /* the whole representation */
    uint8_t digest[32];       /* Repr-Digest's sha-256 */
};

/* Writes path (OUT.part.meta) atomically (a temporary, fsync, rename). 0 or -errno. */
int xget_meta_save(const char *path, const struct xget_meta *m);
/* Reads path: 0, -ENOENT when absent, -EINVAL when it is not a meta file. */
int xget_meta_load(const char *path, struct xget_meta *m);

/*
 * An earlier run's OUT.part that a new one may continue: 0 with *m from
 * meta_path and *have the part's length (no longer than m->size), -ENOENT
 * when either file is missing or they do not belong together (the part is
 * then started afresh).
 */
int xget_part_find(const char *part_path, const char *meta_path, struct xget_meta *m,
                   uint64_t *have);

/*
 * Opens OUT.part for the download m describes, keeping its first keep bytes
 * (0: start empty) and feeding them to h, so that the final digest covers
 * the whole file; writes m to meta_path. Returns the fd (O_WRONLY, at
 * offset keep), or -errno (-ESTALE when the part is shorter than keep).
 */
int xget_part_open(const char *part_path, const char *meta_path, const struct xget_meta *m,
                   uint64_t keep, xget_hash_t *h);

/* fsyncs fd, closes it, renames part_path to out and removes meta_path.
 * 0 or -errno (fd is closed either way). */
int xget_part_finish(int fd, const char *part_path, const char *meta_path, const char *out);

#endif
