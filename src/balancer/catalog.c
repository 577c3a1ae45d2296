/*
 * catalog — the balancer's index of which file server holds which file.
 *
 * The design is simple: one table (an fscat_map) per server name, all
 * behind one reader-writer lock that prefers writers. A load builds its
 * entries outside the lock, as the body streams in: a full catalog a whole
 * new table, a delta a small map of changes. catalog_load_end then takes
 * the write lock only to swap the table in (O(1)) or to apply the changes
 * (O(changes)); the old table is freed after the lock is released. So a
 * lookup on any I/O thread waits at most for a swap or a delta, never for a
 * body, and a lookup is one hash probe per server under the read lock,
 * its answers copied out. Per-thread copies would make every lookup free of
 * a shared cache line but cost a copy of every table per thread; the lock
 * costs one atomic per lookup, small beside a TLS request.
 *
 * A table belongs to the session that loaded it: a full catalog from an
 * older session than the table's, a delta from another session, and a drop
 * from another session are ignored, so that the end of an old connection
 * never touches what its successor sent.
 */
#include "convoy/catalog.h"

#include "convoy/frame.h"
#include "convoy/log.h"
#include "convoy/ring.h"
#include "convoy/text.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cat_server {
    char name[REG_NAME_MAX]; /* "" when the slot is free */
    uint64_t session;        /* the registry session that loaded the table */
    fscat_map_t *map;
};

struct catalog {
    pthread_rwlock_t lock;
    struct cat_server servers[REG_SERVERS];
    size_t used; /* one past the highest slot ever named: every lookup scans only these */
};

struct catalog_load {
    catalog_t *c;
    char name[REG_NAME_MAX];
    uint64_t session;
    bool full;
    uint64_t count;
    uint64_t started_ms;
    fscat_reader_t *reader;
    fscat_map_t *map; /* full: the new table; delta: the changes, gone ones marked */
};

int catalog_new(catalog_t **out)
{
    catalog_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return -ENOMEM;
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int rc = pthread_rwlock_init(&c->lock, &a);
    pthread_rwlockattr_destroy(&a);
    if (rc != 0) {
        free(c);
        return -rc;
    }
    *out = c;
    return 0;
}

void catalog_free(catalog_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < REG_SERVERS; i++)
        fscat_map_free(c->servers[i].map);
    pthread_rwlock_destroy(&c->lock);
    free(c);
}

/* The slot of name, or NULL; with make, a free one for it (NULL when full). */
static struct cat_server *server_slot(catalog_t *c, const char *name, bool make)
{
    struct cat_server *free_slot = NULL;
    for (size_t i = 0; i < c->used; i++) {
        struct cat_server *s = &c->servers[i];
        if (strcmp(s->name, name) == 0 && s->name[0])
            return s;
        if (!s->name[0] && free_slot == NULL)
            free_slot = s;
    }
    if (free_slot == NULL && c->used < REG_SERVERS)
        free_slot = &c->servers[c->used];
    if (!make || free_slot == NULL)
        return NULL;
    if (free_slot == &c->servers[c->used])
        c->used++;
    text_copy(free_slot->name, sizeof free_slot->name, name);
    return free_slot;
}

/* ---- loading ---- */

static int load_entry(void *arg, const struct fscat_entry *e)
{
    catalog_load_t *l = arg;
    return fscat_map_put(l->map, e) < 0 ? FRAME_ENOMEM : 0;
}

void catalog_load_abort(catalog_load_t *l)
{
    if (l == NULL)
        return;
    fscat_reader_free(l->reader);
    fscat_map_free(l->map);
    free(l);
}

int catalog_load_begin(catalog_t *c, const char *name, uint64_t session, const cJSON *meta,
                       catalog_load_t **out, char *why, size_t whylen)
{
    bool full;
    uint64_t count;
    int rc = fscat_meta_parse(meta, &full, &count, why, whylen);
    if (rc < 0)
        return rc;
    catalog_load_t *l = calloc(1, sizeof *l);
    if (l == NULL || fscat_map_new(&l->map) < 0 ||
        fscat_reader_new(&l->reader, full, count, load_entry, l) < 0) {
        catalog_load_abort(l);
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    l->c = c;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->session = session;
    l->full = full;
    l->count = count;
    l->started_ms = ring_now_ms();
    *out = l;
    return 0;
}

int catalog_load_feed(catalog_load_t *l, const uint8_t *data, size_t len, char *why, size_t whylen)
{
    int rc = fscat_reader_feed(l->reader, data, len, why, whylen);
    if (rc == FRAME_ENOMEM)
        snprintf(why, whylen, "out of memory");
    if (rc < 0)
        catalog_load_abort(l);
    return rc == FRAME_ENOMEM ? -ENOMEM : rc;
}

static int apply_change(void *arg, const struct fscat_entry *e)
{
    fscat_map_t *table = arg;
    if (e->gone)
        fscat_map_del(table, e->path);
    else if (fscat_map_put(table, e) < 0)
        return -ENOMEM;
    return 0;
}

/* Under the write lock: the load into its server's slot. Returns the table
 * it replaced (to free after the lock), or sets *ignored. */
static fscat_map_t *load_apply(catalog_load_t *l, int *rc, const char **ignored)
{
    struct cat_server *s = server_slot(l->c, l->name, l->full);
    if (s == NULL) {
        *ignored = l->full ? "no room for another server" : "a delta before its full catalog";
        return NULL;
    }
    if (l->full) {
        if (s->map != NULL && s->session > l->session) {
            *ignored = "from an older session";
            return NULL;
        }
        fscat_map_t *old = s->map;
        s->map = l->map;
        s->session = l->session;
        l->map = NULL;
        return old;
    }
    if (s->session != l->session) {
        *ignored = "a delta from another session";
        return NULL;
    }
    *rc = fscat_map_each(l->map, apply_change, s->map);
    return NULL;
}

int catalog_load_end(catalog_load_t *l, char *why, size_t whylen)
{
    int rc = fscat_reader_end(l->reader, why, whylen);
    if (rc < 0) {
        catalog_load_abort(l);
        return rc;
    }
    const char *ignored = NULL;
    pthread_rwlock_wrlock(&l->c->lock);
    fscat_map_t *old = load_apply(l, &rc, &ignored);
    struct cat_server *s = server_slot(l->c, l->name, false);
    size_t files = s && s->map ? fscat_map_count(s->map) : 0;
    pthread_rwlock_unlock(&l->c->lock);
    fscat_map_free(old);
    if (ignored)
        log_info("catalog", "event=catalog_ignored name=%s session=%" PRIu64 " reason=\"%s\"",
                 l->name, l->session, ignored);
    else if (rc < 0)
        log_error("catalog", "event=catalog_failed name=%s err=\"%s\"", l->name, strerror(-rc));
    else
        log_info("catalog",
                 "event=catalog name=%s kind=%s entries=%" PRIu64 " files=%zu ms=%" PRIu64, l->name,
                 l->full ? "full" : "delta", l->count, files, ring_now_ms() - l->started_ms);
    if (rc < 0)
        snprintf(why, whylen, "out of memory");
    catalog_load_abort(l);
    return rc;
}

void catalog_drop(catalog_t *c, const char *name, uint64_t session)
{
    fscat_map_t *old = NULL;
    pthread_rwlock_wrlock(&c->lock);
    struct cat_server *s = server_slot(c, name, false);
    if (s != NULL && s->session == session) {
        old = s->map;
        memset(s, 0, sizeof *s);
    }
    pthread_rwlock_unlock(&c->lock);
    fscat_map_free(old);
}

/* ---- lookups ---- */

static bool version_matches(const struct fscat_entry *e, const struct catalog_version *v)
{
    return v == NULL || (e->size == v->size && strcmp(e->etag, v->etag) == 0);
}

static void hit_fill(struct catalog_hit *h, const char *server, const struct fscat_entry *e)
{
    snprintf(h->server, sizeof h->server, "%s", server);
    h->size = e->size;
    h->mtime_ns = e->mtime_ns;
    memcpy(h->etag, e->etag, sizeof h->etag);
    h->has_sha256 = e->has_sha256;
    memcpy(h->sha256, e->sha256, sizeof h->sha256);
}

size_t catalog_lookup(catalog_t *c, const char *path, const struct catalog_version *v,
                      struct catalog_hit *hits, size_t max)
{
    size_t n = 0;
    pthread_rwlock_rdlock(&c->lock);
    for (size_t i = 0; i < c->used; i++) {
        const struct cat_server *s = &c->servers[i];
        const struct fscat_entry *e = s->map ? fscat_map_get(s->map, path) : NULL;
        if (e == NULL || !version_matches(e, v))
            continue;
        if (n < max)
            hit_fill(&hits[n], s->name, e);
        n++;
    }
    pthread_rwlock_unlock(&c->lock);
    return n;
}

uint64_t catalog_files(catalog_t *c, const char *name)
{
    pthread_rwlock_rdlock(&c->lock);
    const struct cat_server *s = server_slot(c, name, false);
    uint64_t n = s && s->map ? fscat_map_count(s->map) : 0;
    pthread_rwlock_unlock(&c->lock);
    return n;
}

uint64_t catalog_total(catalog_t *c)
{
    uint64_t n = 0;
    pthread_rwlock_rdlock(&c->lock);
    for (size_t i = 0; i < c->used; i++)
        if (c->servers[i].map)
            n += fscat_map_count(c->servers[i].map);
    pthread_rwlock_unlock(&c->lock);
    return n;
}

size_t catalog_memory(catalog_t *c)
{
    size_t n = sizeof *c;
    pthread_rwlock_rdlock(&c->lock);
    for (size_t i = 0; i < c->used; i++)
        if (c->servers[i].map)
            n += fscat_map_memory(c->servers[i].map);
    pthread_rwlock_unlock(&c->lock);
    return n;
}
