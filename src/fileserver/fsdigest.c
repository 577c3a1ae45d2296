/*
 * fsdig — digests of served files, hashed in the pool, cached on disk (see
 * fsdigest.h).
 *
 * The table maps a version's key to an entry; an entry that is not ready
 * has one job, which is either in the backlog (not yet handed to the pool:
 * requests' jobs at its head, the scan's at its tail) or running in the
 * pool. A job reads its file through its own descriptor (a duplicate of the
 * request's, or one the worker opens beneath the root for the scan's), hashes
 * it, checks with a second fstat that the version did not change meanwhile,
 * and posts itself back to the ring, where the entry becomes ready and its
 * waiters are called. An entry whose hash failed is removed, so that a later
 * request tries again.
 *
 * The cache file is text: a first line "convoy-digests 1", then one line
 * "<inode> <size> <mtime_ns> <64 hex digits>" per version. Any line that does
 * not parse makes the whole file suspect; it is ignored and rewritten.
 */
#include "convoy/fsdigest.h"

#include "convoy/hex.h"
#include "convoy/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CACHE_MAGIC    "convoy-digests 1\n"
#define CACHE_LINE_MAX 160           /* 3 x 20 digits, 64 hex digits, spaces */
#define HASH_BUF       (256u * 1024) /* a worker's read buffer */
#define SAVE_DELAY_MS  1000          /* at most one cache write a second */
#define RETRY_MS       10            /* the pool's queue was full */
#define BUCKETS_MIN    1024u

struct job;

struct entry {
    struct fsdig_key key;
    uint8_t digest[FSDIG_LEN];
    bool ready;                 /* digest known */
    bool seen;                  /* met this run: kept in the cache */
    bool loaded;                /* came from the cache file */
    struct job *job;            /* while not ready */
    struct fsdig_wait *waiters; /* requests waiting for it */
    struct entry *next;         /* bucket chain */
};

struct job {
    fsdig_t *d;
    struct entry *e;
    char *path;              /* relative to the root (the scan's: opened by the worker) */
    int fd;                  /* request: a duplicate of its descriptor; else -1 */
    bool submitted;          /* in the pool (else in the backlog) */
    struct job *prev, *next; /* backlog */
    /* The worker's results. */
    int err;
    struct fsdig_key got; /* the version it read */
    struct stat st;       /* its fstat */
    uint64_t bytes;
    uint8_t digest[FSDIG_LEN];
};

struct save {
    fsdig_t *d;
    char *buf;
    size_t len;
    int err;
};

struct fsdig {
    ring_t *ring;
    pool_t *pool;
    const fsroot_t *root;
    void (*on_known)(void *arg, const char *path, const struct stat *st,
                     const uint8_t digest[FSDIG_LEN]);
    void *arg;
    char *cache;   /* NULL: no cache file */
    unsigned jobs; /* hashed at once */
    struct entry **buckets;
    size_t nbuckets, nentries;
    struct job *head, *tail; /* backlog */
    unsigned running;        /* jobs in the pool */
    bool dirty;              /* the cache file is behind the table */
    bool saving;             /* a save task is in the pool */
    bool stopping;
    uint64_t loaded, cached, hashed, bytes, known, queued;
    struct ring_defer pump; /* hands backlog jobs to the pool, from the loop */
    struct ring_timer retry;
    struct ring_timer save_timer;
};

void fsdig_key_of(const struct stat *st, struct fsdig_key *k)
{
    k->ino = (uint64_t)st->st_ino;
    k->size = (uint64_t)st->st_size;
    k->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static bool key_eq(const struct fsdig_key *a, const struct fsdig_key *b)
{
    return a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns;
}

static size_t key_hash(const struct fsdig_key *k, size_t nbuckets)
{
    uint64_t h = k->ino * 0x9e3779b97f4a7c15ull;
    h ^= (k->size + 0x632be59bd9b4e019ull) * 0xbf58476d1ce4e5b9ull;
    h ^= ((uint64_t)k->mtime_ns + 0x94d049bb133111ebull) * 0xc2b2ae3d27d4eb4full;
    return (size_t)(h ^ (h >> 31)) & (nbuckets - 1);
}

/* ---- the table ---- */

static struct entry *entry_find(const fsdig_t *d, const struct fsdig_key *k)
{
    for (struct entry *e = d->buckets[key_hash(k, d->nbuckets)]; e; e = e->next)
        if (key_eq(&e->key, k))
            return e;
    return NULL;
}

static int table_grow(fsdig_t *d)
{
    size_t n = d->nbuckets * 2;
    struct entry **b = calloc(n, sizeof *b);
    if (b == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < d->nbuckets; i++)
        for (struct entry *e = d->buckets[i], *next; e; e = next) {
            next = e->next;
            size_t h = key_hash(&e->key, n);
            e->next = b[h];
            b[h] = e;
        }
    free(d->buckets);
    d->buckets = b;
    d->nbuckets = n;
    return 0;
}

/* A new entry for k (not in the table), or NULL. */
static struct entry *entry_new(fsdig_t *d, const struct fsdig_key *k)
{
    if (d->nentries >= d->nbuckets && table_grow(d) < 0)
        return NULL;
    struct entry *e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->key = *k;
    size_t h = key_hash(k, d->nbuckets);
    e->next = d->buckets[h];
    d->buckets[h] = e;
    d->nentries++;
    return e;
}

static void entry_unlink(fsdig_t *d, struct entry *e)
{
    struct entry **p = &d->buckets[key_hash(&e->key, d->nbuckets)];
    while (*p != e)
        p = &(*p)->next;
    *p = e->next;
    d->nentries--;
}

static void entry_set(fsdig_t *d, struct entry *e, const uint8_t digest[FSDIG_LEN])
{
    memcpy(e->digest, digest, FSDIG_LEN);
    e->ready = e->seen = true;
    d->known++;
}

/* ---- waiters ---- */

static void wait_add(struct entry *e, struct fsdig_wait *w, fsdig_cb cb)
{
    w->cb = cb;
    w->entry = e;
    w->prev = NULL;
    w->next = e->waiters;
    if (e->waiters)
        e->waiters->prev = w;
    e->waiters = w;
}

void fsdig_cancel(struct fsdig_wait *w)
{
    struct entry *e = w->entry;
    if (e == NULL)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        e->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->entry = NULL;
}

/* Calls every waiter of e once; a callback may cancel others or ask again. */
static void wake_all(struct entry *e, int err, const uint8_t *digest)
{
    while (e->waiters) {
        struct fsdig_wait *w = e->waiters;
        fsdig_cancel(w);
        w->cb(w, err, digest);
    }
}

/* ---- jobs ---- */

static void pump(struct ring_defer *df);

static void backlog_unlink(fsdig_t *d, struct job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        d->head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        d->tail = j->prev;
    j->prev = j->next = NULL;
}

static void backlog_push(fsdig_t *d, struct job *j, bool front)
{
    if (front) {
        j->next = d->head;
        *(d->head ? &d->head->prev : &d->tail) = j;
        d->head = j;
    } else {
        j->prev = d->tail;
        *(d->tail ? &d->tail->next : &d->head) = j;
        d->tail = j;
    }
}

static void job_free(struct job *j)
{
    if (j->fd >= 0)
        close(j->fd);
    free(j->path);
    free(j);
}

/* A job for e, in the backlog. Takes fd (closed on failure). */
static struct job *job_new(fsdig_t *d, struct entry *e, const char *path, int fd, bool front)
{
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL || (path && (j->path = strdup(path)) == NULL)) {
        free(j);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    j->d = d;
    j->e = e;
    j->fd = fd;
    e->job = j;
    backlog_push(d, j, front);
    d->queued++;
    ring_defer(d->ring, &d->pump, pump);
    return j;
}

/* Reads the whole of fd into the digest; the bytes read, or -errno. */
static int64_t hash_fd(int fd, uint8_t digest[FSDIG_LEN])
{
    uint8_t *buf = malloc(HASH_BUF);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int64_t total = -ENOMEM;
    if (buf == NULL || ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
        goto out;
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    for (total = 0;;) {
        ssize_t n = pread(fd, buf, HASH_BUF, total);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            total = -errno;
            goto out;
        }
        if (n == 0)
            break;
        if (!EVP_DigestUpdate(ctx, buf, (size_t)n)) {
            total = -ENOMEM;
            goto out;
        }
        total += n;
    }
    if (!EVP_DigestFinal_ex(ctx, digest, NULL))
        total = -ENOMEM;
out:
    EVP_MD_CTX_free(ctx);
    free(buf);
    return total;
}

static void job_done(void *arg);

/* On a pool worker: touches only the job and d's fixed fields. */
static void job_run(void *arg)
{
    struct job *j = arg;
    struct stat *before = &j->st, after;
    if (j->fd < 0)
        j->fd = fsroot_open_file(j->d->root, j->path, strlen(j->path), before);
    else if (fstat(j->fd, before) < 0)
        j->err = -errno;
    if (j->fd < 0)
        j->err = j->fd;
    if (j->err == 0) {
        int64_t n = hash_fd(j->fd, j->digest);
        fsdig_key_of(before, &j->got);
        if (n < 0)
            j->err = (int)n;
        else if ((j->bytes = (uint64_t)n) != j->got.size || fstat(j->fd, &after) < 0)
            j->err = -ESTALE;
        else {
            struct fsdig_key k;
            fsdig_key_of(&after, &k);
            j->err = key_eq(&k, &j->got) ? 0 : -ESTALE;
        }
    }
    while (ring_post_wait(j->d->ring, job_done, j, 1000) < 0)
        log_warn_limited("fsdig", "event=post_waiting");
}

/* A hash that read another version than the one asked for: that version
 * is known now, the one asked for is not. */
static void job_other_version(fsdig_t *d, struct job *j)
{
    struct entry *o = entry_find(d, &j->got);
    if (o == NULL && (o = entry_new(d, &j->got)) != NULL) {
        entry_set(d, o, j->digest);
        d->dirty = true;
    }
}

static void schedule_save(fsdig_t *d);

static void job_done(void *arg)
{
    struct job *j = arg;
    fsdig_t *d = j->d;
    struct entry *e = j->e;
    d->running--;
    e->job = NULL;
    if (j->err == 0) {
        d->hashed++;
        d->bytes += j->bytes;
    }
    if (j->err == 0 && key_eq(&j->got, &e->key)) {
        entry_set(d, e, j->digest);
        d->dirty = true;
        if (d->on_known && !d->stopping)
            d->on_known(d->arg, j->path, &j->st, e->digest);
        wake_all(e, 0, e->digest);
    } else {
        int err = j->err ? j->err : -ESTALE;
        if (j->err == 0)
            job_other_version(d, j);
        if (err != -ENOENT)
            log_warn("fsdig", "event=hash_failed path=\"%s\" err=\"%s\"", j->path, strerror(-err));
        entry_unlink(d, e);
        wake_all(e, err, NULL);
        free(e);
    }
    job_free(j);
    if (!d->stopping) {
        ring_defer(d->ring, &d->pump, pump);
        schedule_save(d);
    }
}

static void pump_retry(struct ring_timer *t)
{
    fsdig_t *d = container_of(t, fsdig_t, retry);
    ring_defer(d->ring, &d->pump, pump);
}

/* Hands backlog jobs to the pool, up to d->jobs at once. */
static void pump(struct ring_defer *df)
{
    fsdig_t *d = container_of(df, fsdig_t, pump);
    while (!d->stopping && d->running < d->jobs && d->head) {
        struct job *j = d->head;
        backlog_unlink(d, j);
        int rc = pool_try_submit(d->pool, job_run, j);
        if (rc == -EAGAIN) { /* other work fills the queue: later */
            backlog_push(d, j, true);
            ring_timer_start(d->ring, &d->retry, RETRY_MS, pump_retry);
            return;
        }
        d->queued--;
        if (rc < 0) {
            struct entry *e = j->e;
            entry_unlink(d, e);
            job_free(j);
            wake_all(e, rc, NULL);
            free(e);
            continue;
        }
        j->submitted = true;
        d->running++;
    }
}

/* ---- the cache file ---- */

static int hex_val(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* One "<ino> <size> <mtime_ns> <hex>\n" line. 0 or -EINVAL. */
static int cache_parse_line(const char *s, struct fsdig_key *k, uint8_t digest[FSDIG_LEN])
{
    char *end;
    errno = 0;
    k->ino = strtoull(s, &end, 10);
    if (end == s || *end != ' ' || s[0] == '-')
        return -EINVAL;
    s = end + 1;
    k->size = strtoull(s, &end, 10);
    if (end == s || *end != ' ' || s[0] == '-' || k->size > INT64_MAX)
        return -EINVAL;
    s = end + 1;
    k->mtime_ns = strtoll(s, &end, 10);
    if (end == s || *end != ' ' || errno)
        return -EINVAL;
    s = end + 1;
    for (int i = 0; i < FSDIG_LEN; i++) {
        int hi = hex_val(s[2 * i]), lo = hi < 0 ? -1 : hex_val(s[2 * i + 1]);
        if (lo < 0)
            return -EINVAL;
        digest[i] = (uint8_t)(hi << 4 | lo);
    }
    return strcmp(s + 2 * FSDIG_LEN, "\n") == 0 ? 0 : -EINVAL;
}

static void table_clear(fsdig_t *d)
{
    for (size_t i = 0; i < d->nbuckets; i++) {
        for (struct entry *e = d->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
        d->buckets[i] = NULL;
    }
    d->nentries = d->known = d->loaded = 0;
}

/* Fills the table from the cache file: 0, or -EINVAL (the line number in
 * *line) or -errno when it cannot be used. */
static int cache_read(fsdig_t *d, FILE *f, unsigned long *line)
{
    char buf[CACHE_LINE_MAX];
    *line = 1;
    if (fgets(buf, sizeof buf, f) == NULL || strcmp(buf, CACHE_MAGIC) != 0)
        return -EINVAL;
    while (fgets(buf, sizeof buf, f) != NULL) {
        struct fsdig_key k;
        uint8_t digest[FSDIG_LEN];
        ++*line;
        if (cache_parse_line(buf, &k, digest) < 0 || entry_find(d, &k) != NULL)
            return -EINVAL;
        struct entry *e = entry_new(d, &k);
        if (e == NULL)
            return -ENOMEM;
        entry_set(d, e, digest);
        e->seen = false;
        e->loaded = true;
        d->loaded++;
    }
    return ferror(f) ? -EIO : 0;
}

static void cache_load(fsdig_t *d)
{
    FILE *f = fopen(d->cache, "r");
    if (f == NULL) {
        if (errno != ENOENT)
            log_warn("fsdig", "event=cache_ignored file=%s err=\"%s\"", d->cache, strerror(errno));
        return;
    }
    unsigned long line = 0;
    int rc = cache_read(d, f, &line);
    fclose(f);
    if (rc < 0) {
        log_warn("fsdig", "event=cache_ignored file=%s line=%lu err=\"%s\"", d->cache, line,
                 rc == -EINVAL ? "corrupt" : strerror(-rc));
        table_clear(d);
        d->dirty = true; /* rewritten at the first save */
        return;
    }
    log_info("fsdig", "event=cache_loaded file=%s versions=%llu", d->cache,
             (unsigned long long)d->loaded);
}

/* The cache's text: every version known and seen this run. NULL: -ENOMEM. */
static char *cache_text(const fsdig_t *d, size_t *len)
{
    size_t cap = sizeof CACHE_MAGIC + d->nentries * CACHE_LINE_MAX, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        return NULL;
    n += (size_t)snprintf(buf, cap, "%s", CACHE_MAGIC);
    for (size_t i = 0; i < d->nbuckets; i++)
        for (const struct entry *e = d->buckets[i]; e; e = e->next) {
            if (!e->ready || !e->seen)
                continue;
            n += (size_t)snprintf(buf + n, cap - n, "%" PRIu64 " %" PRIu64 " %" PRId64 " ",
                                  e->key.ino, e->key.size, e->key.mtime_ns);
            hex_encode(e->digest, FSDIG_LEN, buf + n);
            n += 2 * FSDIG_LEN;
            buf[n++] = '\n';
        }
    *len = n;
    return buf;
}

/* Writes buf to path atomically: a temporary file, synced, renamed. */
static int cache_write(const char *path, const char *buf, size_t len)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), rc = 0;
    if (fd < 0)
        return -errno;
    for (size_t off = 0; off < len && rc == 0;) {
        ssize_t n = write(fd, buf + off, len - off);
        if (n < 0 && errno != EINTR)
            rc = -errno;
        off += n > 0 ? (size_t)n : 0;
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

static void save_done(void *arg)
{
    struct save *s = arg;
    fsdig_t *d = s->d;
    d->saving = false;
    if (s->err < 0) {
        log_warn("fsdig", "event=cache_write_failed file=%s err=\"%s\"", d->cache,
                 strerror(-s->err));
        d->dirty = true;
    }
    free(s->buf);
    free(s);
    if (!d->stopping)
        schedule_save(d);
}

static void save_run(void *arg)
{
    struct save *s = arg;
    s->err = cache_write(s->d->cache, s->buf, s->len);
    while (ring_post_wait(s->d->ring, save_done, s, 1000) < 0)
        log_warn_limited("fsdig", "event=post_waiting");
}

static void save_start(struct ring_timer *t)
{
    fsdig_t *d = container_of(t, fsdig_t, save_timer);
    struct save *s = calloc(1, sizeof *s);
    if (d->saving || s == NULL || (s->buf = cache_text(d, &s->len)) == NULL) {
        free(s);
        if (!d->saving)
            ring_timer_start(d->ring, &d->save_timer, SAVE_DELAY_MS, save_start);
        return;
    }
    s->d = d;
    if (pool_try_submit(d->pool, save_run, s) < 0) {
        free(s->buf);
        free(s);
        ring_timer_start(d->ring, &d->save_timer, SAVE_DELAY_MS, save_start);
        return;
    }
    d->saving = true;
    d->dirty = false;
}

/* A save within SAVE_DELAY_MS when the file is behind the table. */
static void schedule_save(fsdig_t *d)
{
    if (d->cache && d->dirty && !d->saving && !d->save_timer.active)
        ring_timer_start(d->ring, &d->save_timer, SAVE_DELAY_MS, save_start);
}

/* ---- the module ---- */

int fsdig_create(fsdig_t **out, const struct fsdig_opts *o)
{
    if (o->ring == NULL || o->pool == NULL || o->root == NULL)
        return -EINVAL;
    fsdig_t *d = calloc(1, sizeof *d);
    if (d == NULL)
        return -ENOMEM;
    d->ring = o->ring;
    d->pool = o->pool;
    d->root = o->root;
    d->on_known = o->on_known;
    d->arg = o->arg;
    d->jobs = o->jobs ? o->jobs : pool_threads(o->pool);
    d->nbuckets = BUCKETS_MIN;
    d->buckets = calloc(d->nbuckets, sizeof *d->buckets);
    if (d->buckets == NULL || (o->cache && (d->cache = strdup(o->cache)) == NULL)) {
        free(d->buckets);
        free(d);
        return -ENOMEM;
    }
    if (d->cache)
        cache_load(d);
    *out = d;
    return 0;
}

int fsdig_add(fsdig_t *d, const char *path, const struct stat *st, uint8_t out[FSDIG_LEN])
{
    struct fsdig_key k;
    fsdig_key_of(st, &k);
    struct entry *e = entry_find(d, &k);
    if (e != NULL && e->ready) {
        if (!e->seen) {
            e->seen = true;
            d->cached++;
        }
        memcpy(out, e->digest, FSDIG_LEN);
        return 1;
    }
    if (e != NULL) /* already queued */
        return 0;
    if ((e = entry_new(d, &k)) == NULL)
        return -ENOMEM;
    if (job_new(d, e, path, -1, false) == NULL) {
        entry_unlink(d, e);
        free(e);
        return -ENOMEM;
    }
    return 0;
}

int fsdig_get(fsdig_t *d, const char *path, int fd, const struct stat *st, uint8_t out[FSDIG_LEN],
              struct fsdig_wait *w, fsdig_cb cb)
{
    struct fsdig_key k;
    fsdig_key_of(st, &k);
    struct entry *e = entry_find(d, &k);
    if (e && e->ready) {
        if (!e->seen) {
            e->seen = true;
            d->cached++;
        }
        memcpy(out, e->digest, FSDIG_LEN);
        return 1;
    }
    if (e == NULL) {
        int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (dup < 0)
            return -errno;
        if ((e = entry_new(d, &k)) == NULL) {
            close(dup);
            return -ENOMEM;
        }
        if (job_new(d, e, path, dup, true) == NULL) {
            entry_unlink(d, e);
            free(e);
            return -ENOMEM;
        }
    } else if (!e->job->submitted) { /* the scan's: ahead of the rest of it */
        backlog_unlink(d, e->job);
        backlog_push(d, e->job, true);
    }
    wait_add(e, w, cb);
    return 0;
}

bool fsdig_lookup(const fsdig_t *d, const struct fsdig_key *k, uint8_t out[FSDIG_LEN])
{
    const struct entry *e = entry_find(d, k);
    if (e == NULL || !e->ready)
        return false;
    memcpy(out, e->digest, FSDIG_LEN);
    return true;
}

void fsdig_header(const uint8_t digest[FSDIG_LEN], char out[FSDIG_HEADER_MAX])
{
    memcpy(out, "sha-256=:", 9);
    int n = EVP_EncodeBlock((unsigned char *)out + 9, digest, FSDIG_LEN);
    out[9 + n] = ':';
    out[10 + n] = '\0';
}

void fsdig_stats(const fsdig_t *d, struct fsdig_stats *s)
{
    s->known = d->known;
    s->cached = d->cached;
    s->hashed = d->hashed;
    s->bytes = d->bytes;
    s->pending = d->queued + d->running;
}

void fsdig_stop(fsdig_t *d)
{
    d->stopping = true;
    ring_timer_stop(d->ring, &d->retry);
    ring_timer_stop(d->ring, &d->save_timer);
    while (d->head) {
        struct job *j = d->head;
        struct entry *e = j->e;
        backlog_unlink(d, j);
        d->queued--;
        entry_unlink(d, e);
        job_free(j);
        while (e->waiters)
            fsdig_cancel(e->waiters);
        free(e);
    }
    for (size_t i = 0; i < d->nbuckets; i++)
        for (struct entry *e = d->buckets[i]; e; e = e->next)
            while (e->waiters)
                fsdig_cancel(e->waiters);
}

void fsdig_free(fsdig_t *d)
{
    if (d == NULL)
        return;
    if (d->cache && (d->dirty || d->cached < d->loaded)) {
        size_t len;
        char *buf = cache_text(d, &len);
        int rc = buf ? cache_write(d->cache, buf, len) : -ENOMEM;
        if (rc < 0)
            log_warn("fsdig", "event=cache_write_failed file=%s err=\"%s\"", d->cache,
                     strerror(-rc));
        free(buf);
    }
    while (d->head) { /* fsdig_stop was not called */
        struct job *j = d->head;
        backlog_unlink(d, j);
        job_free(j);
    }
    table_clear(d);
    free(d->buckets);
    free(d->cache);
    free(d);
}
