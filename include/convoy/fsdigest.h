/*
 * fsdig — the SHA-256 of every file the server serves, known before the
 * first byte of it is sent (the Repr-Digest header of RFC 9530).
 *
 * A digest belongs to one version of a file, named by its key: inode, size
 * and modification time (ns). Files are hashed in the pool, never on the I/O
 * thread: every file a scan finds at start (fsdig_add), and any other the
 * moment a request needs it (fsdig_get). A request for a version not yet
 * hashed waits for it; its hash jumps ahead of the scan's backlog, so it
 * waits for its own file only. At most `jobs` files are hashed at once, so
 * the pool's queue has room for the rest of the process.
 *
 * Digests survive restarts in a cache file (one line per version, written
 * to a temporary file, synced and renamed over the old one, in the pool, at
 * most once a second while digests arrive, and at the end). A file whose key
 * is in the cache is not read again; a file changed since has another key
 * and is hashed again. A cache that does not parse is ignored with a
 * warning, and rewritten. The cache keeps only versions seen this run.
 *
 * Everything runs on the ring's thread, except what the pool workers do
 * inside the module.
 */
#ifndef CONVOY_FSDIGEST_H
#define CONVOY_FSDIGEST_H

#include "convoy/fsroot.h"
#include "convoy/pool.h"
#include "convoy/ring.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#define FSDIG_LEN        32 /* SHA-256 */
#define FSDIG_HEADER_MAX 56 /* "sha-256=:" + 44 base64 characters + ":" + NUL */

typedef struct fsdig fsdig_t;

/* One version of a file. */
struct fsdig_key {
    uint64_t ino;
    uint64_t size;
    int64_t mtime_ns;
};

void fsdig_key_of(const struct stat *st, struct fsdig_key *k);

struct fsdig_opts {
    ring_t *ring;
    pool_t *pool;
    const fsroot_t *root; /* where fsdig_add's paths are opened */
    const char *cache;    /* the cache file, or NULL for none */
    unsigned jobs;        /* files hashed at once; 0 = the pool's thread count */
    /* May be NULL: a digest that was hashed became known, for path
     * (relative to the root) in the version st describes; from the loop. */
    void (*on_known)(void *arg, const char *path, const struct stat *st,
                     const uint8_t digest[FSDIG_LEN]);
    void *arg;
};

/* Loads the cache (a missing one is empty, a corrupt one is ignored with a
 * warning). 0, -EINVAL or -ENOMEM. */
int fsdig_create(fsdig_t **out, const struct fsdig_opts *o);

/*
 * A file found by a scan: path relative to the root, st what the scan
 * saw. A version already known (from the cache) returns 1 with its digest
 * in out; any other is queued to be hashed (0), and on_known() runs when it
 * is. -ENOMEM.
 */
int fsdig_add(fsdig_t *d, const char *path, const struct stat *st, uint8_t out[FSDIG_LEN]);

struct fsdig_wait;
/* err 0 and the digest, or -ESTALE (the file changed while it was read),
 * -EMFILE, -EIO…: the digest is not known and the caller answers without
 * the file. */
typedef void (*fsdig_cb)(struct fsdig_wait *w, int err, const uint8_t *digest);

/* A request waiting for a digest; embedded in the request. Fields are the
 * module's. */
struct fsdig_wait {
    fsdig_cb cb;
    struct fsdig_wait *next, *prev;
    void *entry;
};

/*
 * The digest of the open file fd, whose fstat is st, found at path
 * (relative to the root). Returns 1 with out filled when it is known.
 * Otherwise returns 0 and w waits: cb(w, …) runs once, later, from the
 * loop, unless fsdig_cancel(w) comes first; the module hashes its own
 * duplicate of fd, so the caller may close fd at any time, and on_known()
 * runs for path when the hash lands. -EMFILE (no descriptor to duplicate)
 * or -ENOMEM: nothing waits.
 */
int fsdig_get(fsdig_t *d, const char *path, int fd, const struct stat *st, uint8_t out[FSDIG_LEN],
              struct fsdig_wait *w, fsdig_cb cb);

/* Stops w waiting (its cb will not run); no-op when it does not wait. */
void fsdig_cancel(struct fsdig_wait *w);

/* Whether the digest of version k is known (out filled). */
bool fsdig_lookup(const fsdig_t *d, const struct fsdig_key *k, uint8_t out[FSDIG_LEN]);

/* The header value "sha-256=:<base64>:" of a digest. */
void fsdig_header(const uint8_t digest[FSDIG_LEN], char out[FSDIG_HEADER_MAX]);

struct fsdig_stats {
    uint64_t known;   /* versions whose digest is known */
    uint64_t cached;  /* of those, loaded from the cache and seen this run */
    uint64_t hashed;  /* files hashed this run */
    uint64_t bytes;   /* bytes read to hash them */
    uint64_t pending; /* files queued or being hashed */
};

void fsdig_stats(const fsdig_t *d, struct fsdig_stats *s);

/*
 * Winds down before the pool and the ring are destroyed: waiting requests
 * are dropped (their cb does not run) and files not yet handed to the pool
 * are not hashed. Hashes already in the pool still land, from the posts
 * ring_destroy() runs.
 */
void fsdig_stop(fsdig_t *d);

/* Writes the cache if it changed, then frees. After pool_destroy() and
 * ring_destroy() (a hash in flight still refers to d). NULL is a no-op. */
void fsdig_free(fsdig_t *d);

#endif
