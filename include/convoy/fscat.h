/*
 * fscat — a file server's catalog: the regular files under its root (path,
 * size, mtime, ETag, SHA-256 when known), the wire form of a CATALOG
 * message's body, and the watcher that turns changes under the root into
 * deltas.
 *
 * The file server keeps one fscat_t: fscat_new scans the root and follows
 * it with inotify, fscat_full encodes every entry (sent after each
 * WELCOME), changed() says when changes have settled, and fscat_delta
 * encodes what changed since the last encoding. The balancer
 * reads bodies with fscat_reader (catalog.h keeps its index).
 *
 * Paths are relative to the root, '/'-separated, never empty, absolute,
 * "." or ".." in any component, and never through a symlink: the walk
 * opens every directory beneath the root with O_NOFOLLOW and lists regular
 * files only. A name that cannot be represented (not UTF-8, a control
 * character, too long) is skipped and logged. One thread: the ring's.
 */
#ifndef CONVOY_FSCAT_H
#define CONVOY_FSCAT_H

#include "convoy/ring.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#define FSCAT_PATH_MAX    1024u          /* bytes of a relative path, NUL excluded */
#define FSCAT_ETAG_MAX    40u            /* an ETag with its quotes and NUL */
#define FSCAT_LINE_MAX    2048u          /* one encoded entry, newline included */
#define FSCAT_BODY_MAX    (256ull << 20) /* body of one CATALOG message */
#define FSCAT_ENTRIES_MAX 1000000u       /* entries in one CATALOG message */
#define FSCAT_DEBOUNCE_MS 100u           /* default: changes settle this long */
#define FSCAT_RESCAN_MS   5000u          /* rescans while a directory has no watch */

struct fscat_entry {
    const char *path;          /* relative to the root (see above) */
    uint64_t size;             /* bytes */
    int64_t mtime_ns;          /* st_mtim, ns since the epoch */
    char etag[FSCAT_ETAG_MAX]; /* fscat_etag() */
    bool has_sha256;           /* the file server knows its digest */
    uint8_t sha256[32];
    bool gone; /* in a delta: the file was removed (size, mtime, etag unused) */
};

/*
 * The ETag of the file st describes, as HTTP sends it, quotes included:
 * "\"<size hex>-<mtime ns hex>\"". The one definition for the catalog and
 * the HTTP side. It has no inode in it on purpose: identical files on two
 * file servers (copied with their mtime) must have the same ETag, or a
 * resumed transfer could never move to another server.
 */
void fscat_etag(const struct stat *st, char out[FSCAT_ETAG_MAX]);

/* A relative path as the catalog carries it (the rules above). */
bool fscat_path_valid(const char *path, size_t len);

/* ---- the wire form ---- */

/*
 * A CATALOG body: one entry per line, compact JSON,
 *   {"path":"a/b.bin","size":123,"mtime":1700000000123456789,
 *    "etag":"\"7b-1797…\"","sha256":"<64 hex>"}   (sha256 optional)
 *   {"path":"a/old.bin","gone":true}               (deltas only)
 * count entries in len bytes, malloc'd.
 */
struct fscat_body {
    char *data;
    size_t len, cap;
    uint64_t count;
};

/* Appends e as one line. 0, -ENOMEM, -E2BIG past FSCAT_BODY_MAX or
 * FSCAT_ENTRIES_MAX, -EINVAL for a path fscat_path_valid refuses. */
int fscat_body_add(struct fscat_body *b, const struct fscat_entry *e);
void fscat_body_free(struct fscat_body *b);

/* The CATALOG meta {"full": bool, "count": n} (caller frees; NULL without
 * memory), and its check: 0, or FRAME_ESCHEMA with the reason in why
 * (count above FSCAT_ENTRIES_MAX included). */
cJSON *fscat_meta_json(bool full, uint64_t count);
int fscat_meta_parse(const cJSON *meta, bool *full, uint64_t *count, char *why, size_t whylen);

/*
 * Reads a body as it streams in, in pieces of any size: each complete line
 * is checked (its schema, the path, the sha256's hex, "gone" only in a
 * delta and then alone with the path) and handed to fn; e is valid during
 * the call. A bad line, a line over FSCAT_LINE_MAX or more lines than
 * announced is refused with FRAME_ESCHEMA and "line N: reason" in why; fn's
 * own negative value is returned as it is. fscat_reader_end checks that the
 * body ended with a whole line and had exactly count of them.
 */
typedef struct fscat_reader fscat_reader_t;
typedef int (*fscat_entry_fn)(void *arg, const struct fscat_entry *e);

int fscat_reader_new(fscat_reader_t **out, bool full, uint64_t count, fscat_entry_fn fn, void *arg);
int fscat_reader_feed(fscat_reader_t *r, const uint8_t *data, size_t len, char *why, size_t whylen);
int fscat_reader_end(fscat_reader_t *r, char *why, size_t whylen);
void fscat_reader_free(fscat_reader_t *r);

/* ---- a set of entries by path ---- */

/* The file server's catalog and each server's table in the balancer's
 * index. Not thread-safe; entries returned are valid until the map changes. */
typedef struct fscat_map fscat_map_t;

int fscat_map_new(fscat_map_t **out); /* 0 or -ENOMEM */
void fscat_map_free(fscat_map_t *m);
const struct fscat_entry *fscat_map_get(const fscat_map_t *m, const char *path);
/* Adds e (copied, path too) or replaces the entry of its path. 0 or -ENOMEM. */
int fscat_map_put(fscat_map_t *m, const struct fscat_entry *e);
bool fscat_map_del(fscat_map_t *m, const char *path); /* false: it had no such path */
size_t fscat_map_count(const fscat_map_t *m);
size_t fscat_map_memory(const fscat_map_t *m); /* bytes: nodes, paths, buckets */
/* fn for every entry, in no order, until one returns < 0 (returned). */
int fscat_map_each(fscat_map_t *m, int (*fn)(void *arg, const struct fscat_entry *e), void *arg);

/* ---- the file server's catalog ---- */

typedef struct fscat fscat_t;

/*
 * Opens root (a directory: the operator's path to it may cross a symlink,
 * nothing beneath it is followed) and scans it. With a ring, it also follows the root with inotify,
 * every directory beneath it: once changes have settled for debounce_ms (0: FSCAT_DEBOUNCE_MS) and
 * some entry differs from what was last encoded, changed(arg) runs from the loop, and the owner
 * calls fscat_delta when it can send. An overflowed inotify queue, a directory created, moved or
 * removed, or a directory that could not be watched (the watch limit; then every FSCAT_RESCAN_MS
 * too) makes the settling a whole rescan instead, logged. 0 or -errno (logged with the root).
 */
int fscat_new(fscat_t **out, const char *root, ring_t *ring, uint32_t debounce_ms,
              void (*changed)(void *arg), void *arg);

/* Frees the catalog: once its ring is destroyed (the watcher's read is
 * pending until then). NULL is a no-op. */
void fscat_free(fscat_t *c);

/* Regular files and their bytes, as of the last scan or change. */
uint64_t fscat_files(const fscat_t *c);
uint64_t fscat_bytes(const fscat_t *c);

/* Every entry into b (which starts empty); what was pending for a delta is
 * in it, so nothing stays pending. 0 or -errno (b is then empty). */
int fscat_full(fscat_t *c, struct fscat_body *b);

/* What changed since the last fscat_full or fscat_delta into b (nothing:
 * b->count 0), and nothing stays pending. 0 or -errno (b is then empty). */
int fscat_delta(fscat_t *c, struct fscat_body *b);

/* Rescans the whole root now, as after an overflow: entries that differ
 * become pending. 0 or -errno. */
int fscat_rescan(fscat_t *c);

/* The file server learnt path's SHA-256 for the version st describes (the
 * HTTP side hashed it): if that is still the entry's version, the digest
 * joins the entry and the next delta. 0, or -ENOENT when path is not in the
 * catalog in that version. */
int fscat_set_sha256(fscat_t *c, const char *path, const struct stat *st, const uint8_t sha[32]);

#endif
