/*
 * fshttp: the file server's HTTP side in a scene of its own — a real ring
 * on a thread of its own with fshttp, fsdig, fsroot and fsxfer (whose
 * reports a fake balancer records), a keyring the test signs tickets with,
 * and curl as the client, over TLS (--cacert) and plain. What a user checks:
 * whole files and ranges arrive byte for byte, 206 and 416 carry the
 * right Content-Range, HEAD has no body, Repr-Digest matches sha256sum,
 * a bad ticket is 403 with its reason, a traversal is 404, and every
 * download is reported to the balancer from START to END.
 */
#include "convoy/fshttp.h"

#include "../common/fixture.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BIG_SIZE  (3u * 1024 * 1024 + 123)
#define REPORTS   64
#define HUGE_SIZE (128ll << 20)

static char tmp[PATH_MAX], root[PATH_MAX + 8], pki[PATH_MAX + 8];

/* What the fake balancer received. */
struct report {
    enum frame_type type;
    uint64_t id, bytes, first_byte, length;
    char outcome[32], digest[72];
};

struct scene {
    bool tls;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool ready;
    int rc;
    int port;
    ring_t *ring;
    ticket_keyring_t *keys;
    struct report reports[REPORTS];
    int nreports;
};

static struct scene *scene;

/* Writes size bytes of a pattern (from the suite's setup: no assertion). */
static int put(const char *rel, size_t size)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    if (f == NULL)
        return -1;
    for (size_t i = 0; i < size; i++)
        fputc((int)((i * 2654435761u) >> 13) & 0xff, f);
    return fclose(f);
}

static int setup(void)
{
    char p[PATH_MAX * 2];
    const char *names[] = {"fs1", NULL};
    if (fx_tmpdir(tmp, sizeof tmp) < 0)
        return -1;
    snprintf(root, sizeof root, "%s/root", tmp);
    snprintf(pki, sizeof pki, "%s/pki", tmp);
    if (mkdir(root, 0755) < 0 || fx_pki(pki, names) < 0)
        return -1;
    snprintf(p, sizeof p, "%s/sub", root);
    mkdir(p, 0755);
    if (put("big.bin", BIG_SIZE) < 0 || put("sub/small.txt", 100) < 0)
        return -1;
    snprintf(p, sizeof p, "%s/huge.bin", root); /* sparse: more than any socket buffers */
    FILE *h = fopen(p, "w");
    if (h == NULL || fclose(h) != 0 || truncate(p, HUGE_SIZE) < 0)
        return -1;
    snprintf(p, sizeof p, "%s/fifo", root);
    mkfifo(p, 0644);
    snprintf(p, sizeof p, "%s/etc", root);
    if (symlink("/etc", p) < 0)
        return -1;
    snprintf(p, sizeof p, "%s/outside", tmp);
    FILE *f = fopen(p, "w");
    if (f == NULL)
        return -1;
    fputs("secret\n", f);
    fclose(f);
    return 0;
}

static int teardown(void)
{
    fx_rmtree(tmp);
    return 0;
}

static uint64_t num(const cJSON *meta, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, name);
    return cJSON_IsNumber(v) ? (uint64_t)v->valuedouble : UINT64_MAX;
}

static void str(const cJSON *meta, const char *name, char *out, size_t len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, name);
    snprintf(out, len, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

/* The fake balancer, on the scene's ring thread. */
static int fake_send(void *arg, enum frame_type type, const cJSON *meta)
{
    struct scene *s = arg;
    pthread_mutex_lock(&s->lock);
    if (s->nreports < REPORTS) {
        struct report *r = &s->reports[s->nreports++];
        r->type = type;
        r->id = num(meta, "id");
        r->bytes = num(meta, "bytes");
        r->first_byte = num(meta, "first_byte");
        r->length = num(meta, "length");
        str(meta, "outcome", r->outcome, sizeof r->outcome);
        str(meta, "digest", r->digest, sizeof r->digest);
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void scene_ready(struct scene *s, int rc, int port)
{
    pthread_mutex_lock(&s->lock);
    s->rc = rc;
    s->port = port;
    s->ready = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void http_closed(void *arg)
{
    (void)arg;
    ring_stop(scene->ring);
}

/* The file server's ring thread: everything it owns is made and freed here. */
static void *scene_main(void *arg)
{
    struct scene *s = arg;
    pool_t *pool = NULL;
    fsroot_t *fr = NULL;
    fsdig_t *dig = NULL;
    fsxfer_t *xfer = NULL;
    fsh_t *h = NULL;
    tls_ctx_t *tls = NULL;
    char err[256];
    struct net_addr addr;
    int rc = ring_create(&s->ring, 256);
    if (rc < 0)
        goto out;
    if ((rc = pool_create(&pool, 2, 64)) < 0 || (rc = fsroot_open(&fr, root)) < 0 ||
        (rc = net_addr_parse("127.0.0.1:0", &addr)) < 0 ||
        (rc = fsxfer_new(&xfer, fake_send, s, 0)) < 0)
        goto out;
    struct fsdig_opts d = {.ring = s->ring, .pool = pool, .root = fr};
    if ((rc = fsdig_create(&dig, &d)) < 0)
        goto out;
    struct stat st;
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/big.bin", root);
    uint8_t known[FSDIG_LEN];
    if (stat(p, &st) == 0) /* the scan's; sub/small.txt waits for a request */
        fsdig_add(dig, "big.bin", &st, known);
    snprintf(p, sizeof p, "%s/huge.bin", root);
    if (stat(p, &st) == 0)
        fsdig_add(dig, "huge.bin", &st, known);
    if (s->tls && (rc = tls_ctx_new(&tls, TLS_SERVER, pki, "fs1", false, err, sizeof err)) < 0)
        goto out;
    struct fsh_opts o = {.ring = s->ring,
                         .addr = &addr,
                         .tls = tls,
                         .name = "fs1",
                         .root = fr,
                         .dig = dig,
                         .xfer = xfer,
                         .keys = s->keys};
    if ((rc = fsh_start(&h, &o)) < 0)
        goto out;
    char bound[64];
    net_addr_str(fsh_addr(h), bound, sizeof bound);
    scene_ready(s, 0, atoi(strrchr(bound, ':') + 1));
    ring_run(s->ring);
    fsh_stop(h, 100, http_closed, NULL);
    ring_run(s->ring);
out:
    if (!s->ready)
        scene_ready(s, rc < 0 ? rc : -1, 0);
    if (dig)
        fsdig_stop(dig);
    pool_destroy(pool);
    ring_destroy(s->ring);
    fsh_free(h);
    fsdig_free(dig);
    fsxfer_free(xfer);
    fsroot_free(fr);
    tls_ctx_free(tls);
    return NULL;
}

static void scene_start(bool tls)
{
    scene = calloc(1, sizeof *scene);
    CU_ASSERT_PTR_NOT_NULL_FATAL(scene);
    scene->tls = tls;
    pthread_mutex_init(&scene->lock, NULL);
    pthread_cond_init(&scene->cond, NULL);
    /* The keys as a WELCOME brings them: the file server's own path. */
    char why[256];
    cJSON *welcome = cJSON_Parse("{\"" TICKET_WELCOME_FIELD "\": [{\"id\": 7, \"valid_until\": 0, "
                                 "\"key\": \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\"}]}");
    CU_ASSERT_PTR_NOT_NULL_FATAL(welcome);
    CU_ASSERT_EQUAL_FATAL(ticket_keyring_new(&scene->keys), 0);
    CU_ASSERT_EQUAL_FATAL(
        ticket_keyring_from_json(scene->keys, welcome, (uint64_t)time(NULL), why, sizeof why), 0);
    cJSON_Delete(welcome);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&scene->thread, NULL, scene_main, scene), 0);
    pthread_mutex_lock(&scene->lock);
    while (!scene->ready)
        pthread_cond_wait(&scene->cond, &scene->lock);
    pthread_mutex_unlock(&scene->lock);
    CU_ASSERT_EQUAL_FATAL(scene->rc, 0);
}

static void scene_end(void)
{
    ring_stop(scene->ring);
    pthread_join(scene->thread, NULL);
    ticket_keyring_free(scene->keys);
    free(scene);
    scene = NULL;
}

/* A ticket for path ("/big.bin") made out as the balancer would. */
static void ticket_for(char *out, size_t len, const char *server, const char *path,
                       enum ticket_method m, int64_t ttl_s, uint64_t id)
{
    struct ticket t = {
        .transfer = id, .expires = (uint64_t)((int64_t)time(NULL) + ttl_s), .method = m};
    snprintf(t.server, sizeof t.server, "%s", server);
    snprintf(t.user, sizeof t.user, "alice");
    snprintf(t.path, sizeof t.path, "%s", path);
    CU_ASSERT_FATAL(ticket_sign(scene->keys, &t, out, len) > 0);
}

struct answer {
    int status;
    char headers[8192];
    char body_path[PATH_MAX + 32];
    long body_len;
};

/* curl target (URL path and query) with extra options; status, headers and
 * the body's file. */
static void curl(const char *target, const char *extra, struct answer *a)
{
    char cmd[16384], hdr[PATH_MAX + 32];
    snprintf(a->body_path, sizeof a->body_path, "%s/body", tmp);
    snprintf(hdr, sizeof hdr, "%s/headers", tmp);
    unlink(a->body_path);
    snprintf(cmd, sizeof cmd,
             "curl -s --path-as-is --max-time 20 %s%s%s -o '%s' -D '%s' -w '%%{http_code}' %s "
             "'%s://127.0.0.1:%d%s'",
             scene->tls ? "--cacert '" : "", scene->tls ? pki : "", scene->tls ? "/ca.crt'" : "",
             a->body_path, hdr, extra ? extra : "", scene->tls ? "https" : "http", scene->port,
             target);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    a->status = 0;
    if (fscanf(p, "%d", &a->status) != 1)
        a->status = -1;
    pclose(p);
    FILE *h = fopen(hdr, "r");
    size_t n = h ? fread(a->headers, 1, sizeof a->headers - 1, h) : 0;
    a->headers[n] = '\0';
    if (h)
        fclose(h);
    struct stat st;
    a->body_len = stat(a->body_path, &st) == 0 ? (long)st.st_size : 0;
}

/* A header's value from a->headers, into out. */
static bool header(const struct answer *a, const char *name, char *out, size_t len)
{
    size_t n = strlen(name);
    for (const char *l = a->headers; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
            const char *v = l + n + 1;
            while (*v == ' ')
                v++;
            size_t k = strcspn(v, "\r\n");
            snprintf(out, len, "%.*s", (int)k, v);
            return true;
        }
    }
    return false;
}

/* Whether the body equals bytes [off, off + len) of root/rel. */
static bool body_is(const struct answer *a, const char *rel, long off, long len)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *want = fopen(p, "r"), *got = fopen(a->body_path, "r");
    bool same = want && got && a->body_len == len && fseek(want, off, SEEK_SET) == 0;
    for (long i = 0; same && i < len; i++)
        same = fgetc(want) == fgetc(got);
    if (want)
        fclose(want);
    if (got)
        fclose(got);
    return same;
}

/* "sha-256=:<base64>:" of root/rel, from sha256sum. */
static void repr_digest_of(const char *rel, char out[FSDIG_HEADER_MAX])
{
    char cmd[PATH_MAX * 2 + 32], hex[65] = "";
    uint8_t d[FSDIG_LEN];
    snprintf(cmd, sizeof cmd, "sha256sum '%s/%s'", root, rel);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(fscanf(p, "%64s", hex), 1);
    pclose(p);
    for (int i = 0; i < FSDIG_LEN; i++)
        sscanf(hex + 2 * i, "%2hhx", &d[i]);
    fsdig_header(d, out);
}

static void get_with(const char *path, const char *extra, uint64_t id, struct answer *a)
{
    char t[TICKET_TEXT_MAX + 1], target[TICKET_TEXT_MAX + 1200];
    ticket_for(t, sizeof t, "fs1", path, TICKET_GET, 60, id);
    snprintf(target, sizeof target, "/f%s?t=%s", path, t);
    curl(target, extra, a);
}

/* The reports of transfer id, waiting for its END. */
static int reports_of(uint64_t id, struct report *out, int max)
{
    struct timespec limit;
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += 5;
    int n = 0;
    pthread_mutex_lock(&scene->lock);
    for (;;) {
        n = 0;
        bool ended = false;
        for (int i = 0; i < scene->nreports; i++)
            if (scene->reports[i].id == id && n < max) {
                out[n++] = scene->reports[i];
                ended |= scene->reports[i].type == FRAME_XFER_END;
            }
        if (ended || pthread_cond_timedwait(&scene->cond, &scene->lock, &limit) != 0)
            break;
    }
    pthread_mutex_unlock(&scene->lock);
    return n;
}

static void check_downloads(void)
{
    struct answer a;
    char v[256], want[FSDIG_HEADER_MAX], cr[64];
    repr_digest_of("big.bin", want);

    get_with("/big.bin", NULL, 11, &a); /* the whole file */
    CU_ASSERT_EQUAL(a.status, 200);
    CU_ASSERT_TRUE(body_is(&a, "big.bin", 0, BIG_SIZE));
    CU_ASSERT_TRUE(header(&a, "Repr-Digest", v, sizeof v) && strcmp(v, want) == 0);
    CU_ASSERT_TRUE(header(&a, "ETag", v, sizeof v) && v[0] == '"');
    CU_ASSERT_TRUE(header(&a, "Last-Modified", v, sizeof v) && strstr(v, " GMT") != NULL);
    CU_ASSERT_TRUE(header(&a, "Accept-Ranges", v, sizeof v) && strcmp(v, "bytes") == 0);
    struct report r[8];
    int n = reports_of(11, r, 8);
    CU_ASSERT_FATAL(n >= 2);
    CU_ASSERT_EQUAL(r[0].type, FRAME_XFER_START);
    CU_ASSERT_EQUAL(r[0].length, BIG_SIZE);
    CU_ASSERT_EQUAL(r[n - 1].type, FRAME_XFER_END);
    CU_ASSERT_EQUAL(r[n - 1].bytes, BIG_SIZE);
    CU_ASSERT_STRING_EQUAL(r[n - 1].outcome, "complete");

    get_with("/big.bin", "-r 100-199", 12, &a); /* bytes=a-b */
    CU_ASSERT_EQUAL(a.status, 206);
    CU_ASSERT_TRUE(body_is(&a, "big.bin", 100, 100));
    snprintf(cr, sizeof cr, "bytes 100-199/%u", BIG_SIZE);
    CU_ASSERT_TRUE(header(&a, "Content-Range", v, sizeof v) && strcmp(v, cr) == 0);
    CU_ASSERT_TRUE(header(&a, "Repr-Digest", v, sizeof v) && strcmp(v, want) == 0);
    n = reports_of(12, r, 8);
    CU_ASSERT(n >= 2 && r[0].first_byte == 100 && r[0].length == 100);

    get_with("/big.bin", "-r 3145000-", 13, &a); /* bytes=a- */
    CU_ASSERT_EQUAL(a.status, 206);
    CU_ASSERT_TRUE(body_is(&a, "big.bin", 3145000, BIG_SIZE - 3145000));

    get_with("/big.bin", "-r -500", 14, &a); /* bytes=-n */
    CU_ASSERT_EQUAL(a.status, 206);
    CU_ASSERT_TRUE(body_is(&a, "big.bin", BIG_SIZE - 500, 500));

    char range[64];
    snprintf(range, sizeof range, "-r %u-", BIG_SIZE);
    get_with("/big.bin", range, 15, &a); /* past the end */
    CU_ASSERT_EQUAL(a.status, 416);
    snprintf(cr, sizeof cr, "bytes */%u", BIG_SIZE);
    CU_ASSERT_TRUE(header(&a, "Content-Range", v, sizeof v) && strcmp(v, cr) == 0);

    /* A file no scan found: the request waits for its digest. */
    get_with("/sub/small.txt", NULL, 16, &a);
    CU_ASSERT_EQUAL(a.status, 200);
    CU_ASSERT_TRUE(body_is(&a, "sub/small.txt", 0, 100));
    repr_digest_of("sub/small.txt", want);
    CU_ASSERT_TRUE(header(&a, "Repr-Digest", v, sizeof v) && strcmp(v, want) == 0);

    /* HEAD, with a HEAD ticket: the head without a body. */
    char t[TICKET_TEXT_MAX + 1], target[TICKET_TEXT_MAX + 64];
    ticket_for(t, sizeof t, "fs1", "/big.bin", TICKET_HEAD, 60, 17);
    snprintf(target, sizeof target, "/f/big.bin?t=%s", t);
    curl(target, "-I", &a);
    CU_ASSERT_EQUAL(a.status, 200);
    snprintf(cr, sizeof cr, "%u", BIG_SIZE);
    CU_ASSERT_TRUE(header(&a, "Content-Length", v, sizeof v) && strcmp(v, cr) == 0);
    CU_ASSERT_TRUE(header(&a, "Repr-Digest", v, sizeof v));
    CU_ASSERT_EQUAL(a.body_len, (long)strlen(a.headers)); /* curl -I writes the head, no body */

    /* A client that goes away mid-way: PROGRESS while it reads, then END
     * client-aborted with fewer bytes than the file. */
    get_with("/huge.bin", "--limit-rate 2M --max-time 2", 20, &a);
    n = reports_of(20, r, 8);
    CU_ASSERT_FATAL(n >= 3);
    CU_ASSERT_EQUAL(r[0].type, FRAME_XFER_START);
    CU_ASSERT_EQUAL(r[1].type, FRAME_XFER_PROGRESS);
    CU_ASSERT(r[1].bytes > 0 && r[1].bytes < (uint64_t)HUGE_SIZE);
    CU_ASSERT_EQUAL(r[n - 1].type, FRAME_XFER_END);
    CU_ASSERT_STRING_EQUAL(r[n - 1].outcome, "client-aborted");
    CU_ASSERT(r[n - 1].bytes >= r[n - 2].bytes && r[n - 1].bytes < (uint64_t)HUGE_SIZE);

    /* If-None-Match with the ETag: 304. */
    char etag[128], inm[200];
    get_with("/big.bin", "-r 0-0", 18, &a);
    CU_ASSERT_TRUE_FATAL(header(&a, "ETag", etag, sizeof etag));
    snprintf(inm, sizeof inm, "-H 'If-None-Match: %s'", etag);
    get_with("/big.bin", inm, 19, &a);
    CU_ASSERT_EQUAL(a.status, 304);
}

/* Bodies of 403s: ticket_strerror(code) first. */
static void expect_403(const char *target, int code)
{
    struct answer a;
    curl(target, NULL, &a);
    CU_ASSERT_EQUAL(a.status, 403);
    char body[1024] = "";
    FILE *f = fopen(a.body_path, "r");
    if (f) {
        size_t n = fread(body, 1, sizeof body - 1, f);
        body[n] = '\0';
        fclose(f);
    }
    if (strncmp(body, ticket_strerror(code), strlen(ticket_strerror(code))) != 0)
        fprintf(stderr, "fshttp: %s: body \"%s\", expected \"%s\"\n", target, body,
                ticket_strerror(code));
    CU_ASSERT_EQUAL(strncmp(body, ticket_strerror(code), strlen(ticket_strerror(code))), 0);
}

static void check_refusals(void)
{
    char t[TICKET_TEXT_MAX + 1], target[TICKET_TEXT_MAX + 1200];
    expect_403("/f/big.bin", TICKET_EMISSING);
    expect_403("/f/big.bin?t=", TICKET_EMISSING);
    expect_403("/f/big.bin?t=not*a*ticket", TICKET_EMALFORMED);
    ticket_for(t, sizeof t, "fs1", "/big.bin", TICKET_GET, 60, 21);
    t[strlen(t) / 2] ^= t[strlen(t) / 2] == 'A' ? 'B' ^ 'A' : 'A' ^ t[strlen(t) / 2]; /* tamper */
    snprintf(target, sizeof target, "/f/big.bin?t=%s", t);
    expect_403(target, TICKET_ESIG);
    ticket_for(t, sizeof t, "fs1", "/big.bin", TICKET_GET, -10, 22);
    snprintf(target, sizeof target, "/f/big.bin?t=%s", t);
    expect_403(target, TICKET_EEXPIRED);
    ticket_for(t, sizeof t, "fs2", "/big.bin", TICKET_GET, 60, 23);
    snprintf(target, sizeof target, "/f/big.bin?t=%s", t);
    expect_403(target, TICKET_ESERVER);
    ticket_for(t, sizeof t, "fs1", "/sub/small.txt", TICKET_GET, 60, 24);
    snprintf(target, sizeof target, "/f/big.bin?t=%s", t);
    expect_403(target, TICKET_EPATH);

    /* Traversal: 404 whatever the ticket says, never 403. */
    struct answer a;
    const char *lexical[] = {"/f/../outside", "/f/%2e%2e/outside", "/f/sub/../../outside",
                             "/f//etc/passwd", "/x/big.bin"};
    for (size_t i = 0; i < sizeof lexical / sizeof lexical[0]; i++) {
        curl(lexical[i], NULL, &a);
        if (a.status != 404)
            fprintf(stderr, "fshttp: %s gave %d\n", lexical[i], a.status);
        CU_ASSERT_EQUAL(a.status, 404);
    }
    const char *signed_paths[] = {"/etc/passwd", "/fifo", "/sub", "/missing"};
    for (size_t i = 0; i < sizeof signed_paths / sizeof signed_paths[0]; i++) {
        get_with(signed_paths[i], NULL, 30 + i, &a); /* a valid ticket, even */
        if (a.status != 404)
            fprintf(stderr, "fshttp: %s gave %d\n", signed_paths[i], a.status);
        CU_ASSERT_EQUAL(a.status, 404);
    }
    curl("/f/big.bin", "-X DELETE", &a);
    CU_ASSERT_EQUAL(a.status, 405);
}

static void test_plain(void)
{
    scene_start(false);
    check_downloads();
    check_refusals();
    scene_end();
}

static void test_tls(void)
{
    scene_start(true);
    check_downloads();
    check_refusals();
    scene_end();
}

void suite_fshttp(void)
{
    CU_pSuite s = CU_add_suite("fshttp", setup, teardown);
    CU_add_test(s, "plain HTTP: downloads, ranges, HEAD, digest, refusals", test_plain);
    CU_add_test(s, "TLS: downloads, ranges, HEAD, digest, refusals", test_tls);
}
