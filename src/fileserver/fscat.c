/*
 * fscat — a file server's catalog.
 *
 * The design is simple: a map from relative path to entry (fscat_map, also
 * the balancer's per-server table), and a mark per entry: PENDING once it
 * differs from what was last encoded, GONE once its file went (kept until
 * the next encoding says so), SEEN during a rescan. A rescan walks the tree
 * from the root's descriptor with openat(O_NOFOLLOW | O_DIRECTORY) one
 * directory at a time and fstatat(AT_SYMLINK_NOFOLLOW) per name, so no
 * symlink is ever followed; what it finds updates the map, and what it
 * did not see is gone.
 *
 * The watcher puts an inotify watch on every directory the walk opens.
 * A file event notes the file's path; a directory event (a tree moved in or
 * out), an overflowed queue or a notes list that is full asks for a
 * rescan instead. Each event restarts the debounce timer; when it fires,
 * every noted path is looked at again (its directory opened beneath the
 * root with openat2's RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) or the whole
 * tree is rescanned, and changed() runs if any entry became pending. When a
 * directory could not be watched (the watch limit), the tree is rescanned
 * every FSCAT_RESCAN_MS as well, since its changes make no event.
 *
 * The wire form is one compact JSON object per line in a fixed field order,
 * written and read here by hand: cJSON would read mtime (ns since the epoch,
 * beyond 2^53) as a double and cost an allocation per field, and the
 * reader takes only what the writer writes.
 */
#include "convoy/fscat.h"

#include "convoy/frame.h"
#include "convoy/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FSCAT_DEPTH_MAX 64u   /* directories deeper than this are skipped, logged */
#define FSCAT_NOTES_MAX 4096u /* noted paths before a rescan is cheaper */
#define SKIPS_LOGGED    10u   /* skipped names logged one by one per walk */
#define INOTIFY_BUF     (64u * 1024)
#define MARK_PENDING    1u
#define MARK_GONE       2u
#define MARK_SEEN       4u
#define WATCH_EVENTS                                                                               \
    (IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB |            \
     IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

/* ---- ETag and paths ---- */

/* Digits of v in base 10 or 16 at out, without NUL; their count. By hand:
 * a catalog writes three numbers per file, and printf costs more than the
 * rest of the line. */
static size_t put_u64(char *out, uint64_t v, unsigned base)
{
    char t[20];
    size_t n = 0;
    do {
        t[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = t[n - 1 - i];
    return n;
}

void fscat_etag(const struct stat *st, char out[FSCAT_ETAG_MAX])
{
    uint64_t ns = (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
    size_t n = 0;
    out[n++] = '"';
    n += put_u64(out + n, (uint64_t)st->st_size, 16);
    out[n++] = '-';
    n += put_u64(out + n, ns, 16);
    out[n++] = '"';
    out[n] = '\0'; /* at most 1 + 16 + 1 + 16 + 1 + 1 bytes */
}

/* Length of the UTF-8 sequence at p (at most n bytes), 0 if it is not one
 * (overlong forms and surrogates included). */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t len = p[0] < 0x80             ? 1
                 : (p[0] & 0xe0) == 0xc0 ? 2
                 : (p[0] & 0xf0) == 0xe0 ? 3
                 : (p[0] & 0xf8) == 0xf0 ? 4
                                         : 0;
    if (len == 0 || len > n)
        return 0;
    uint32_t cp = len == 1 ? p[0] : p[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

bool fscat_path_valid(const char *path, size_t len)
{
    if (len == 0 || len > FSCAT_PATH_MAX)
        return false;
    const unsigned char *p = (const unsigned char *)path;
    size_t comp = 0; /* start of the current component */
    for (size_t i = 0; i <= len; i++) {
        if (i == len || p[i] == '/') {
            size_t n = i - comp;
            if (n == 0 || (n == 1 && p[comp] == '.') ||
                (n == 2 && p[comp] == '.' && p[comp + 1] == '.'))
                return false;
            comp = i + 1;
            continue;
        }
        if (p[i] < 0x20 || p[i] == 0x7f)
            return false;
        size_t u = utf8_len(p + i, len - i);
        if (u == 0)
            return false;
        i += u - 1;
    }
    return true;
}

/* An entity-tag with its quotes, etagc between them (RFC 9110). */
static bool etag_valid(const char *s, size_t len)
{
    if (len < 2 || len >= FSCAT_ETAG_MAX || s[0] != '"' || s[len - 1] != '"')
        return false;
    for (size_t i = 1; i + 1 < len; i++)
        if (s[i] != 0x21 && (s[i] < 0x23 || s[i] > 0x7e))
            return false;
    return true;
}

/* ---- the map ---- */

struct node {
    struct node *next; /* in its bucket */
    uint64_t hash;
    uint8_t mark; /* MARK_* (the file server's catalog only) */
    struct fscat_entry e;
    char path[]; /* e.path points here */
};

struct fscat_map {
    struct node **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
    size_t bytes; /* of nodes */
};

static uint64_t path_hash(const char *p, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h ^ h >> 29;
}

int fscat_map_new(fscat_map_t **out)
{
    fscat_map_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return -ENOMEM;
    m->nbuckets = 64;
    m->buckets = calloc(m->nbuckets, sizeof *m->buckets);
    if (m->buckets == NULL) {
        free(m);
        return -ENOMEM;
    }
    *out = m;
    return 0;
}

void fscat_map_free(fscat_map_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nbuckets; i++)
        for (struct node *n = m->buckets[i], *next; n; n = next) {
            next = n->next;
            free(n);
        }
    free(m->buckets);
    free(m);
}

static struct node **map_slot(const fscat_map_t *m, const char *path, size_t len, uint64_t h)
{
    struct node **p = &m->buckets[h & (m->nbuckets - 1)];
    while (*p && ((*p)->hash != h || strncmp((*p)->path, path, len) != 0 || (*p)->path[len]))
        p = &(*p)->next;
    return p;
}

static struct node *map_find(const fscat_map_t *m, const char *path)
{
    size_t len = strlen(path);
    return *map_slot(m, path, len, path_hash(path, len));
}

const struct fscat_entry *fscat_map_get(const fscat_map_t *m, const char *path)
{
    struct node *n = map_find(m, path);
    return n ? &n->e : NULL;
}

static void map_grow(fscat_map_t *m)
{
    size_t nb = m->nbuckets * 2;
    struct node **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < m->nbuckets; i++)
        for (struct node *n = m->buckets[i], *next; n; n = next) {
            next = n->next;
            n->next = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
        }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = nb;
}

/* The node of path, found or added (*added: unmarked, its entry empty but
 * for the path), in one search. NULL without memory. */
static struct node *map_get_or_add(fscat_map_t *m, const char *path, bool *added)
{
    size_t len = strlen(path);
    uint64_t h = path_hash(path, len);
    struct node **slot = map_slot(m, path, len, h);
    struct node *n = *slot;
    *added = n == NULL;
    if (n != NULL)
        return n;
    if ((n = malloc(sizeof *n + len + 1)) == NULL)
        return NULL;
    memcpy(n->path, path, len + 1);
    n->hash = h;
    n->mark = 0;
    n->next = NULL;
    n->e = (struct fscat_entry){.path = n->path};
    *slot = n;
    m->count++;
    m->bytes += sizeof *n + len + 1;
    if (m->count > m->nbuckets)
        map_grow(m);
    return n;
}

/* The node for e->path, its fields set from e. */
static struct node *map_put(fscat_map_t *m, const struct fscat_entry *e)
{
    bool added;
    struct node *n = map_get_or_add(m, e->path, &added);
    if (n != NULL) {
        n->e = *e;
        n->e.path = n->path;
    }
    return n;
}

int fscat_map_put(fscat_map_t *m, const struct fscat_entry *e)
{
    return map_put(m, e) ? 0 : -ENOMEM;
}

bool fscat_map_del(fscat_map_t *m, const char *path)
{
    size_t len = strlen(path);
    struct node **slot = map_slot(m, path, len, path_hash(path, len));
    struct node *n = *slot;
    if (n == NULL)
        return false;
    *slot = n->next;
    m->count--;
    m->bytes -= sizeof *n + len + 1;
    free(n);
    return true;
}

size_t fscat_map_count(const fscat_map_t *m)
{
    return m->count;
}

size_t fscat_map_memory(const fscat_map_t *m)
{
    return sizeof *m + m->nbuckets * sizeof *m->buckets + m->bytes;
}

/* Calls fn for every node; fn may delete the node it is given. */
static int map_walk(fscat_map_t *m, int (*fn)(void *arg, struct node *n), void *arg)
{
    for (size_t i = 0; i < m->nbuckets; i++)
        for (struct node *n = m->buckets[i], *next; n; n = next) {
            next = n->next;
            int rc = fn(arg, n);
            if (rc < 0)
                return rc;
        }
    return 0;
}

struct each_ctx {
    int (*fn)(void *arg, const struct fscat_entry *e);
    void *arg;
};

static int each_one(void *arg, struct node *n)
{
    struct each_ctx *x = arg;
    return x->fn(x->arg, &n->e);
}

int fscat_map_each(fscat_map_t *m, int (*fn)(void *arg, const struct fscat_entry *e), void *arg)
{
    struct each_ctx x = {fn, arg};
    return map_walk(m, each_one, &x);
}

/* ---- the wire form: writing ---- */

static int body_reserve(struct fscat_body *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64 * 1024;
    while (cap < b->len + more)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

/* A JSON string of s, escaping only what a valid path or ETag can hold. */
static size_t put_str(char *out, const char *s)
{
    size_t n = 0;
    out[n++] = '"';
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            out[n++] = '\\';
        out[n++] = *s;
    }
    out[n++] = '"';
    return n;
}

static size_t put_entry(char *out, const struct fscat_entry *e)
{
    size_t n = 0;
    memcpy(out, "{\"path\":", 8);
    n = 8 + put_str(out + 8, e->path);
    if (e->gone) {
        memcpy(out + n, ",\"gone\":true}\n", 14);
        return n + 14;
    }
    memcpy(out + n, ",\"size\":", 8);
    n += 8;
    n += put_u64(out + n, e->size, 10);
    memcpy(out + n, ",\"mtime\":", 9);
    n += 9;
    if (e->mtime_ns < 0)
        out[n++] = '-';
    n += put_u64(out + n, e->mtime_ns < 0 ? -(uint64_t)e->mtime_ns : (uint64_t)e->mtime_ns, 10);
    memcpy(out + n, ",\"etag\":", 8);
    n += 8 + put_str(out + n + 8, e->etag);
    if (e->has_sha256) {
        memcpy(out + n, ",\"sha256\":\"", 11);
        n += 11;
        for (int i = 0; i < 32; i++) {
            out[n++] = "0123456789abcdef"[e->sha256[i] >> 4];
            out[n++] = "0123456789abcdef"[e->sha256[i] & 15];
        }
        out[n++] = '"';
    }
    memcpy(out + n, "}\n", 2);
    return n + 2;
}

int fscat_body_add(struct fscat_body *b, const struct fscat_entry *e)
{
    size_t plen = strlen(e->path);
    if (!fscat_path_valid(e->path, plen) ||
        (!e->gone && !etag_valid(e->etag, strnlen(e->etag, FSCAT_ETAG_MAX))))
        return -EINVAL;
    if (b->count >= FSCAT_ENTRIES_MAX)
        return -E2BIG;
    /* escaped path and ETag, digits, sha256 and the field names */
    size_t most = 2 * plen + 2 * FSCAT_ETAG_MAX + 200;
    if (b->len + most > FSCAT_BODY_MAX)
        return -E2BIG;
    if (body_reserve(b, most) < 0)
        return -ENOMEM;
    b->len += put_entry(b->data + b->len, e);
    b->count++;
    return 0;
}

void fscat_body_free(struct fscat_body *b)
{
    free(b->data);
    *b = (struct fscat_body){0};
}

cJSON *fscat_meta_json(bool full, uint64_t count)
{
    cJSON *o = cJSON_CreateObject();
    if (o && cJSON_AddBoolToObject(o, "full", full) &&
        cJSON_AddNumberToObject(o, "count", (double)count))
        return o;
    cJSON_Delete(o);
    return NULL;
}

static const struct frame_field meta_fields[] = {
    {"full", FF_BOOL, true},
    {"count", FF_UINT, true},
};

int fscat_meta_parse(const cJSON *meta, bool *full, uint64_t *count, char *why, size_t whylen)
{
    int rc = frame_meta_check(meta, meta_fields, 2, why, whylen);
    if (rc < 0)
        return rc;
    *full = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(meta, "full"));
    *count = (uint64_t)cJSON_GetObjectItemCaseSensitive(meta, "count")->valuedouble;
    if (*count > FSCAT_ENTRIES_MAX) {
        snprintf(why, whylen, "count %" PRIu64 " over the limit of %u", *count, FSCAT_ENTRIES_MAX);
        return FRAME_ESCHEMA;
    }
    return 0;
}

/* ---- the wire form: reading ---- */

struct fscat_reader {
    bool full;
    uint64_t count, lines;
    fscat_entry_fn fn;
    void *arg;
    size_t have;               /* bytes of a line begun in an earlier piece */
    char line[FSCAT_LINE_MAX]; /* that line */
    char path[FSCAT_PATH_MAX + 1];
};

/* A cursor over one line; every take_* fails (false) on anything else. */
struct cur {
    const char *p, *end;
};

static bool take(struct cur *c, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
        return false;
    c->p += n;
    return true;
}

/* A JSON string with only \" and \\ escapes, into out (cap bytes, NUL
 * terminated); its length in *len. */
static bool take_str(struct cur *c, char *out, size_t cap, size_t *len)
{
    size_t n = 0;
    if (!take(c, "\""))
        return false;
    while (c->p < c->end && *c->p != '"') {
        char ch = *c->p++;
        if (ch == '\\') {
            if (c->p == c->end || (*c->p != '"' && *c->p != '\\'))
                return false;
            ch = *c->p++;
        }
        if (n + 1 >= cap)
            return false;
        out[n++] = ch;
    }
    out[n] = '\0';
    *len = n;
    return take(c, "\"");
}

/* A decimal integer without sign (or with '-' when neg is allowed), no
 * leading zero, within int64 or uint64. */
static bool take_int(struct cur *c, bool neg_ok, uint64_t max, uint64_t *v, bool *neg)
{
    *neg = neg_ok && c->p < c->end && *c->p == '-';
    if (*neg)
        c->p++;
    const char *start = c->p;
    uint64_t x = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned d = (unsigned)(*c->p++ - '0');
        if (x > (max - d) / 10)
            return false;
        x = x * 10 + d;
    }
    size_t n = (size_t)(c->p - start);
    if (n == 0 || (n > 1 && *start == '0'))
        return false;
    *v = x;
    return true;
}

static int hexval(char ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

static bool take_sha(struct cur *c, uint8_t sha[32])
{
    if (!take(c, ",\"sha256\":\"") || c->end - c->p < 65)
        return false;
    for (int i = 0; i < 32; i++) {
        int hi = hexval(c->p[2 * i]), lo = hexval(c->p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        sha[i] = (uint8_t)(hi << 4 | lo);
    }
    c->p += 64;
    return take(c, "\"");
}

/* The fields after the path: a version, or (deltas) gone. NULL or why. */
static const char *parse_rest(struct cur *c, bool full, struct fscat_entry *e)
{
    uint64_t v;
    bool neg;
    size_t len;
    if (take(c, ",\"gone\":true}"))
        return full ? "'gone' in a full catalog" : (e->gone = true, NULL);
    if (!take(c, ",\"size\":") || !take_int(c, false, UINT64_MAX, &e->size, &neg))
        return "expected \"size\": an unsigned integer";
    if (!take(c, ",\"mtime\":") || !take_int(c, true, (uint64_t)INT64_MAX, &v, &neg))
        return "expected \"mtime\": an integer (ns)";
    e->mtime_ns = neg ? -(int64_t)v : (int64_t)v;
    if (!take(c, ",\"etag\":") || !take_str(c, e->etag, sizeof e->etag, &len) ||
        !etag_valid(e->etag, len))
        return "expected \"etag\": a quoted entity-tag";
    if (c->p < c->end && *c->p == ',') {
        if (!take_sha(c, e->sha256))
            return "expected \"sha256\": 64 lower-case hex digits";
        e->has_sha256 = true;
    }
    return take(c, "}") ? NULL : "expected '}' after the last field";
}

/* One line, without its newline. */
static int reader_line(fscat_reader_t *r, const char *p, size_t n, char *why, size_t whylen)
{
    struct fscat_entry e = {.path = r->path};
    struct cur c = {p, p + n};
    size_t len;
    const char *bad = NULL;
    r->lines++;
    if (r->lines > r->count)
        bad = "more entries than the count announced";
    else if (!take(&c, "{\"path\":") || !take_str(&c, r->path, sizeof r->path, &len))
        bad = "expected {\"path\": a string";
    else if (!fscat_path_valid(r->path, len))
        bad = "path is not a relative path of the catalog";
    else
        bad = parse_rest(&c, r->full, &e);
    if (bad == NULL && c.p != c.end)
        bad = "trailing bytes after the entry";
    if (bad != NULL) {
        snprintf(why, whylen, "line %" PRIu64 ": %s", r->lines, bad);
        return FRAME_ESCHEMA;
    }
    return r->fn(r->arg, &e);
}

int fscat_reader_new(fscat_reader_t **out, bool full, uint64_t count, fscat_entry_fn fn, void *arg)
{
    fscat_reader_t *r = malloc(sizeof *r);
    if (r == NULL)
        return -ENOMEM;
    r->full = full;
    r->count = count;
    r->lines = 0;
    r->fn = fn;
    r->arg = arg;
    r->have = 0;
    *out = r;
    return 0;
}

static int line_too_long(fscat_reader_t *r, char *why, size_t whylen)
{
    snprintf(why, whylen, "line %" PRIu64 ": longer than %u bytes", r->lines + 1, FSCAT_LINE_MAX);
    return FRAME_ESCHEMA;
}

int fscat_reader_feed(fscat_reader_t *r, const uint8_t *data, size_t len, char *why, size_t whylen)
{
    const char *p = (const char *)data, *end = p + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        if (r->have + n + (nl != NULL) > FSCAT_LINE_MAX)
            return line_too_long(r, why, whylen);
        if (nl == NULL || r->have > 0) { /* a line across pieces: copy it whole */
            memcpy(r->line + r->have, p, n);
            r->have += n;
        }
        if (nl == NULL)
            return 0;
        int rc = r->have ? reader_line(r, r->line, r->have, why, whylen)
                         : reader_line(r, p, n, why, whylen);
        r->have = 0;
        if (rc < 0)
            return rc;
        p = nl + 1;
    }
    return 0;
}

int fscat_reader_end(fscat_reader_t *r, char *why, size_t whylen)
{
    if (r->have > 0) {
        snprintf(why, whylen, "line %" PRIu64 ": no newline at the end", r->lines + 1);
        return FRAME_ESCHEMA;
    }
    if (r->lines != r->count) {
        snprintf(why, whylen, "%" PRIu64 " entries, %" PRIu64 " announced", r->lines, r->count);
        return FRAME_ESCHEMA;
    }
    return 0;
}

void fscat_reader_free(fscat_reader_t *r)
{
    free(r);
}

/* ---- the file server's catalog ---- */

struct fscat {
    int root_fd;
    char *root; /* for log lines */
    fscat_map_t *map;
    uint64_t files, bytes; /* entries not gone, and their sizes */
    size_t pending;        /* entries marked PENDING */
    unsigned skipped;      /* names the current walk could not carry */
    /* the watcher */
    ring_t *ring;
    int ifd; /* inotify, -1 without a watcher */
    char **wd_dir;
    size_t nwd; /* wd_dir[wd]: that watch's directory ("" for the root) */
    struct ring_op read_op;
    uint8_t *ibuf; /* INOTIFY_BUF */
    struct ring_timer settle;
    uint32_t debounce_ms;
    bool rescan;    /* at the next settling: the whole tree */
    bool unwatched; /* a directory has no watch: rescan every FSCAT_RESCAN_MS */
    char **notes;
    size_t nnotes; /* paths of file events */
    void (*changed)(void *arg);
    void *arg;
};

static void mark_pending(fscat_t *c, struct node *n)
{
    if (!(n->mark & MARK_PENDING))
        c->pending++;
    n->mark |= MARK_PENDING;
}

/* The file at path (st) as found now: a new or changed entry is pending. */
static int saw_file(fscat_t *c, const char *path, const struct stat *st)
{
    bool added;
    struct node *n = map_get_or_add(c->map, path, &added);
    int64_t mtime = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    if (n == NULL)
        return -ENOMEM;
    bool known = !added && !(n->mark & MARK_GONE);
    if (known && n->e.size == (uint64_t)st->st_size && n->e.mtime_ns == mtime) {
        n->mark |= MARK_SEEN;
        return 0;
    }
    if (known) {
        c->files--;
        c->bytes -= n->e.size;
    }
    n->e = (struct fscat_entry){.path = n->path, .size = (uint64_t)st->st_size, .mtime_ns = mtime};
    fscat_etag(st, n->e.etag);
    n->mark = (uint8_t)((n->mark & ~MARK_GONE) | MARK_SEEN);
    mark_pending(c, n);
    c->files++;
    c->bytes += n->e.size;
    return 0;
}

/* The file at path is no longer there. */
static void saw_gone(fscat_t *c, struct node *n)
{
    if (n->mark & MARK_GONE)
        return;
    c->files--;
    c->bytes -= n->e.size;
    n->mark |= MARK_GONE;
    n->e.has_sha256 = false;
    mark_pending(c, n);
}

static void watch_dir(fscat_t *c, int dfd, const char *rel);

/* A name the catalog cannot carry: the first SKIPS_LOGGED of a walk are
 * logged, the rest counted at its end, so that a folder of them rescanned
 * every FSCAT_RESCAN_MS does not flood the log. */
static void skip_name(fscat_t *c, const char *dir, const char *why)
{
    if (c->skipped++ < SKIPS_LOGGED)
        log_warn("fscat", "event=skipped root=%s dir=\"%s\" reason=\"%s\"", c->root,
                 *dir ? dir : ".", why);
}

static int walk_dir(fscat_t *c, int dfd, char *path, size_t plen, unsigned depth);

/* One name in a directory being walked; path holds "dir/" (plen bytes). */
static int walk_name(fscat_t *c, int dfd, const struct dirent *d, char *path, size_t plen,
                     unsigned depth)
{
    size_t n = strlen(d->d_name);
    if (plen + n > FSCAT_PATH_MAX) {
        skip_name(c, path, "path too long");
        return 0;
    }
    memcpy(path + plen, d->d_name, n + 1);
    if (!fscat_path_valid(path, plen + n)) {
        path[plen] = '\0';
        skip_name(c, path, "a name that is not printable UTF-8");
        return 0;
    }
    struct stat st;
    if (fstatat(dfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return 0; /* gone meanwhile */
    if (S_ISREG(st.st_mode))
        return saw_file(c, path, &st);
    if (!S_ISDIR(st.st_mode))
        return 0; /* symlinks, devices, sockets: not served */
    if (depth >= FSCAT_DEPTH_MAX) {
        skip_name(c, path, "directory nested too deep");
        return 0;
    }
    int sub = openat(dfd, d->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) {
        skip_name(c, path, strerror(errno));
        return 0;
    }
    path[plen + n] = '/';
    path[plen + n + 1] = '\0';
    return walk_dir(c, sub, path, plen + n + 1, depth + 1);
}

/* Walks the directory dfd (closed here) whose path is path[0..plen). */
static int walk_dir(fscat_t *c, int dfd, char *path, size_t plen, unsigned depth)
{
    char rel[FSCAT_PATH_MAX + 2];
    memcpy(rel, path, plen);
    rel[plen ? plen - 1 : 0] = '\0'; /* the directory without its '/' */
    watch_dir(c, dfd, rel);
    DIR *dir = fdopendir(dfd);
    if (dir == NULL) {
        close(dfd);
        return -errno;
    }
    int rc = 0;
    struct dirent *d;
    while (rc == 0 && (d = readdir(dir)) != NULL) {
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
            continue;
        rc = walk_name(c, dfd, d, path, plen, depth);
        path[plen] = '\0';
    }
    closedir(dir);
    return rc;
}

static int drop_unseen(void *arg, struct node *n)
{
    fscat_t *c = arg;
    if (!(n->mark & MARK_SEEN))
        saw_gone(c, n);
    n->mark &= (uint8_t)~MARK_SEEN;
    return 0;
}

int fscat_rescan(fscat_t *c)
{
    char path[FSCAT_PATH_MAX + 2] = "";
    int dfd = openat(c->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    c->skipped = 0;
    int rc = walk_dir(c, dfd, path, 0, 0);
    map_walk(c->map, drop_unseen, c); /* after a failure too: no mark stays */
    if (c->skipped > SKIPS_LOGGED)
        log_warn("fscat", "event=skipped root=%s count=%u reason=\"and more names like those\"",
                 c->root, c->skipped);
    if (rc < 0)
        log_error("fscat", "event=scan_failed root=%s err=\"%s\"", c->root, strerror(-rc));
    return rc;
}

/* ---- the watcher ---- */

/* A watch on the directory open as dfd, named through /proc so that it is
 * the directory the walk opened, not whatever its path leads to now. */
static void watch_dir(fscat_t *c, int dfd, const char *rel)
{
    if (c->ifd < 0)
        return;
    char proc[48];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", dfd);
    int wd = inotify_add_watch(c->ifd, proc, WATCH_EVENTS);
    if (wd < 0) {
        if (!c->unwatched)
            log_warn("fscat", "event=unwatched root=%s dir=\"%s\" err=\"%s\" rescan_ms=%u", c->root,
                     *rel ? rel : ".", strerror(errno), FSCAT_RESCAN_MS);
        c->unwatched = true;
        return;
    }
    if ((size_t)wd >= c->nwd) {
        size_t n = c->nwd ? c->nwd : 64;
        while (n <= (size_t)wd)
            n *= 2;
        char **p = realloc(c->wd_dir, n * sizeof *p);
        if (p == NULL) {
            c->unwatched = true;
            return;
        }
        memset(p + c->nwd, 0, (n - c->nwd) * sizeof *p);
        c->wd_dir = p;
        c->nwd = n;
    }
    char *dup = strdup(rel);
    if (dup == NULL) {
        c->unwatched = true;
        return;
    }
    free(c->wd_dir[wd]); /* a directory seen again, perhaps under a new path */
    c->wd_dir[wd] = dup;
}

static void note_path(fscat_t *c, const char *dir, const char *name)
{
    char path[FSCAT_PATH_MAX + 2];
    int n = snprintf(path, sizeof path, "%s%s%s", dir, *dir ? "/" : "", name);
    char *dup = NULL;
    if (n < 0 || (size_t)n > FSCAT_PATH_MAX || !fscat_path_valid(path, (size_t)n))
        return; /* never listed: the rescans skip and log it */
    if (c->nnotes == FSCAT_NOTES_MAX || (dup = strdup(path)) == NULL) {
        c->rescan = true;
        return;
    }
    if (c->notes == NULL && (c->notes = malloc(FSCAT_NOTES_MAX * sizeof *c->notes)) == NULL) {
        free(dup);
        c->rescan = true;
        return;
    }
    c->notes[c->nnotes++] = dup;
}

static void note_event(fscat_t *c, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW) {
        log_warn("fscat", "event=overflow root=%s action=rescan", c->root);
        c->rescan = true;
        return;
    }
    if (ev->wd < 0 || (size_t)ev->wd >= c->nwd || c->wd_dir[ev->wd] == NULL)
        return;
    if (ev->mask & IN_IGNORED) { /* the directory went, or moved away */
        free(c->wd_dir[ev->wd]);
        c->wd_dir[ev->wd] = NULL;
        return;
    }
    /* a tree moved or removed: every path under it changed */
    if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_ISDIR))
        c->rescan = true;
    else if (ev->len > 0)
        note_path(c, c->wd_dir[ev->wd], ev->name);
}

/* A noted path looked at again: its directory opened beneath the root
 * without following a symlink, the name not followed either. */
static int look_again(fscat_t *c, const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    int dfd = c->root_fd;
    if (slash != NULL) {
        char dir[FSCAT_PATH_MAX + 1];
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
        struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS};
        dfd = (int)syscall(SYS_openat2, c->root_fd, dir, &how, sizeof how);
    }
    struct stat st;
    bool file =
        dfd >= 0 && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
    if (dfd >= 0 && dfd != c->root_fd)
        close(dfd);
    struct node *n = map_find(c->map, path);
    if (!file) {
        if (n)
            saw_gone(c, n);
        return 0;
    }
    int rc = saw_file(c, path, &st);
    if ((n = map_find(c->map, path)) != NULL)
        n->mark &= (uint8_t)~MARK_SEEN;
    return rc;
}

static void drop_notes(fscat_t *c)
{
    for (size_t i = 0; i < c->nnotes; i++)
        free(c->notes[i]);
    c->nnotes = 0;
}

static void handle_settle(struct ring_timer *t)
{
    fscat_t *c = container_of(t, fscat_t, settle);
    if (c->rescan || c->unwatched) {
        c->rescan = false;
        fscat_rescan(c);
    } else {
        for (size_t i = 0; i < c->nnotes; i++)
            look_again(c, c->notes[i]);
    }
    drop_notes(c);
    if (c->unwatched)
        ring_timer_start(c->ring, &c->settle, FSCAT_RESCAN_MS, handle_settle);
    if (c->pending > 0 && c->changed)
        c->changed(c->arg);
}

static void read_arm(fscat_t *c);

static void handle_read(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    fscat_t *c = container_of(op, fscat_t, read_op);
    if (res < 0 && res != -EINTR && res != -EAGAIN) {
        log_error("fscat", "event=watch_failed root=%s err=\"%s\" rescan_ms=%u", c->root,
                  strerror(-res), FSCAT_RESCAN_MS);
        c->unwatched = true;
        ring_timer_start(c->ring, &c->settle, c->debounce_ms, handle_settle);
        return;
    }
    for (int off = 0; res > 0 && off + (int)sizeof(struct inotify_event) <= res;) {
        const struct inotify_event *ev = (const void *)(c->ibuf + off);
        note_event(c, ev);
        off += (int)(sizeof *ev + ev->len);
    }
    if (res > 0)
        ring_timer_start(c->ring, &c->settle, c->debounce_ms, handle_settle);
    read_arm(c);
}

/* The inotify descriptor stays blocking: the ring polls it for us. */
static void read_arm(fscat_t *c)
{
    c->read_op.cb = handle_read;
    ring_read(c->ring, &c->read_op, c->ifd, c->ibuf, INOTIFY_BUF, 0);
}

static int watch_start(fscat_t *c, ring_t *ring, uint32_t debounce_ms, void (*changed)(void *arg),
                       void *arg)
{
    c->ring = ring;
    c->debounce_ms = debounce_ms ? debounce_ms : FSCAT_DEBOUNCE_MS;
    c->changed = changed;
    c->arg = arg;
    if ((c->ibuf = malloc(INOTIFY_BUF)) == NULL)
        return -ENOMEM;
    c->ifd = inotify_init1(IN_CLOEXEC);
    if (c->ifd < 0) {
        int rc = -errno;
        log_error("fscat", "event=watch_failed root=%s err=\"%s\"", c->root, strerror(errno));
        return rc;
    }
    read_arm(c);
    return 0;
}

/* ---- encoding ---- */

struct enc_ctx {
    fscat_t *c;
    struct fscat_body *b;
    bool full;
};

static int enc_one(void *arg, struct node *n)
{
    struct enc_ctx *x = arg;
    if (x->full ? (n->mark & MARK_GONE) != 0 : !(n->mark & MARK_PENDING))
        return 0;
    n->e.gone = (n->mark & MARK_GONE) != 0;
    return fscat_body_add(x->b, &n->e);
}

/* Once encoded: nothing pending, the gone entries forgotten. */
static int enc_commit(void *arg, struct node *n)
{
    fscat_t *c = arg;
    n->mark &= (uint8_t)~MARK_PENDING;
    if (n->mark & MARK_GONE)
        fscat_map_del(c->map, n->path);
    return 0;
}

static int encode(fscat_t *c, struct fscat_body *b, bool full)
{
    struct enc_ctx x = {c, b, full};
    int rc = map_walk(c->map, enc_one, &x);
    if (rc < 0) {
        log_error("fscat", "event=encode_failed root=%s entries=%" PRIu64 " err=\"%s\"", c->root,
                  b->count, strerror(-rc));
        fscat_body_free(b);
        return rc;
    }
    map_walk(c->map, enc_commit, c);
    c->pending = 0;
    return 0;
}

int fscat_full(fscat_t *c, struct fscat_body *b)
{
    return encode(c, b, true);
}

int fscat_delta(fscat_t *c, struct fscat_body *b)
{
    return c->pending ? encode(c, b, false) : 0;
}

int fscat_set_sha256(fscat_t *c, const char *path, const struct stat *st, const uint8_t sha[32])
{
    struct node *n = map_find(c->map, path);
    int64_t mtime = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    if (n == NULL || (n->mark & MARK_GONE) || n->e.size != (uint64_t)st->st_size ||
        n->e.mtime_ns != mtime)
        return -ENOENT;
    if (n->e.has_sha256 && memcmp(n->e.sha256, sha, 32) == 0)
        return 0;
    memcpy(n->e.sha256, sha, 32);
    n->e.has_sha256 = true;
    mark_pending(c, n);
    if (c->ring && !c->settle.active)
        ring_timer_start(c->ring, &c->settle, c->debounce_ms, handle_settle);
    return 0;
}

uint64_t fscat_files(const fscat_t *c)
{
    return c->files;
}

uint64_t fscat_bytes(const fscat_t *c)
{
    return c->bytes;
}

void fscat_free(fscat_t *c)
{
    if (c == NULL)
        return;
    if (c->ifd >= 0)
        close(c->ifd);
    if (c->root_fd >= 0)
        close(c->root_fd);
    for (size_t i = 0; i < c->nwd; i++)
        free(c->wd_dir[i]);
    free(c->wd_dir);
    drop_notes(c);
    free(c->notes);
    free(c->ibuf);
    fscat_map_free(c->map);
    free(c->root);
    free(c);
}

int fscat_new(fscat_t **out, const char *root, ring_t *ring, uint32_t debounce_ms,
              void (*changed)(void *arg), void *arg)
{
    fscat_t *c = calloc(1, sizeof *c);
    int rc = -ENOMEM;
    if (c == NULL)
        return rc;
    c->ifd = c->root_fd = -1;
    if ((c->root = strdup(root)) == NULL || fscat_map_new(&c->map) < 0)
        goto fail;
    c->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c->root_fd < 0) {
        rc = -errno;
        log_error("fscat", "event=bad_root root=%s err=\"%s\"", root, strerror(errno));
        goto fail;
    }
    if (ring != NULL && (rc = watch_start(c, ring, debounce_ms, changed, arg)) < 0)
        goto fail;
    if ((rc = fscat_rescan(c)) < 0)
        goto fail;
    *out = c;
    return 0;
fail:
    fscat_free(c);
    return rc;
}
