/*
 * catalog — the balancer's index of which file server holds which file, in
 * which version.
 *
 * Each file server's CATALOG messages (fscat.h) are loaded into it on the
 * I/O thread of that server's session: a full catalog replaces what the
 * server had, a delta changes some entries. Lookups come from any thread:
 * by path, the servers holding it with size, ETag and SHA-256, or only
 * those holding one version (size and ETag), so that a resumed transfer
 * goes only to a server with the first leg's version. Thread-safe.
 *
 * Entries are keyed by server name and registry session: a load or a drop
 * from a session that no longer holds the name changes nothing, so a late
 * close of an old connection never removes what its successor sent. A
 * server whose session ends is dropped (catalog_drop); it sends a full
 * catalog again when it is back.
 */
#ifndef CONVOY_CATALOG_H
#define CONVOY_CATALOG_H

#include "convoy/fscat.h"
#include "convoy/registry.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct catalog catalog_t;
typedef struct catalog_load catalog_load_t;

/* One server holding a path. */
struct catalog_hit {
    char server[REG_NAME_MAX];
    uint64_t size;
    int64_t mtime_ns;
    char etag[FSCAT_ETAG_MAX];
    bool has_sha256;
    uint8_t sha256[32];
};

/* A version of a file: its size and ETag. */
struct catalog_version {
    uint64_t size;
    const char *etag;
};

/* 0 or -ENOMEM. */
int catalog_new(catalog_t **out);
void catalog_free(catalog_t *c);

/*
 * A CATALOG message from server name in session: meta is checked
 * (fscat_meta_parse), then the body is fed as it streams in and the
 * message is applied at catalog_load_end, all at once: until then lookups
 * see what the server had. A message without body (count 0) is fed
 * nothing. Each returns 0, or FRAME_ESCHEMA with the reason in why ("line
 * N: …"), or -ENOMEM; after an error (and after end) the load is freed;
 * catalog_load_abort frees one that will not end (the connection closed).
 * catalog_load_end logs event=catalog name=… files=… (the server's entries
 * after it).
 */
int catalog_load_begin(catalog_t *c, const char *name, uint64_t session, const cJSON *meta,
                       catalog_load_t **out, char *why, size_t whylen);
int catalog_load_feed(catalog_load_t *l, const uint8_t *data, size_t len, char *why, size_t whylen);
int catalog_load_end(catalog_load_t *l, char *why, size_t whylen);
void catalog_load_abort(catalog_load_t *l);

/* Forgets server name's entries if session still holds them. */
void catalog_drop(catalog_t *c, const char *name, uint64_t session);

/*
 * The servers holding path (in version v, or any when v is NULL): up to max
 * of them into hits, in no particular order. Returns how many hold it,
 * which may exceed max.
 */
size_t catalog_lookup(catalog_t *c, const char *path, const struct catalog_version *v,
                      struct catalog_hit *hits, size_t max);

/* Entries of server name (0 when it has none), and over all servers. */
uint64_t catalog_files(catalog_t *c, const char *name);
uint64_t catalog_total(catalog_t *c);

/* Bytes the index holds in memory (entries, names, tables). */
size_t catalog_memory(catalog_t *c);

#endif
