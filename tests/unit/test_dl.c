/*
 * dl: a whole download against servers made in the test, on one real ring
 * on loopback. A fake balancer answers `GET /f/x.bin` with a 307 to the
 * first file server and `?resume=…&failed=…` with a 307 to the second;
 * each file server serves a 1 MiB file with ETag, Repr-Digest and Range,
 * and can be told to misbehave: drop the connection after K bytes, stall
 * after K bytes, announce a wrong digest, another ETag, or a Content-Range
 * that does not start where it was asked. The tests assert what `convoy
 * get` promises a user: the bytes are the file's, the resume continues at
 * the exact byte on another server with `Range: bytes=N-`, the balancer is
 * told which transfer and which server failed, credentials go to the
 * balancer only, and every failure ends with its exit code.
 *
 * The servers read requests by hand (a request line and a few fields are
 * all a test needs), so these tests check dl against the wire, not against
 * the HTTP module's own server.
 */
#include "convoy/conn.h"
#include "convoy/dl.h"
#include "convoy/log.h"
#include "../common/fixture.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_LEN    (1u << 20)
#define WATCHDOG_MS 8000
#define DRAIN_MS    20
#define ETAG        "\"v1-100000\""

enum fs_mode { FS_OK, FS_DROP, FS_STALL, FS_BAD_DIGEST, FS_OTHER_ETAG, FS_BAD_RANGE, FS_CHUNKED };

struct fs {
    conn_listener_t *l;
    const char *name;
    enum fs_mode mode;
    uint64_t after; /* FS_DROP, FS_STALL: bytes of body sent first */
    int requests;
    char range[64];    /* the last Range value, "" for none */
    char if_range[64]; /* the last If-Range value */
    bool saw_auth;     /* an Authorization reached a file server */
};

struct srv_conn {
    char req[4096];
    size_t len;
    struct fs *fs; /* NULL: the balancer */
};

static struct {
    ring_t *ring;
    conn_listener_t *bal;
    struct fs fs[2];
    bool tls;       /* every server speaks TLS */
    int bal_status; /* what the balancer answers: 307, or an error */
    int bal_requests;
    char bal_target[2][256]; /* the first two targets asked */
    char bal_auth[256];
    struct ring_timer watchdog, drain;
    bool timed_out, done;
    int code;
    char why[512];
    uint8_t *got;     /* what the sink received, at its offsets */
    uint64_t got_max; /* highest offset written + 1 */
    uint64_t keep;    /* the sink's last open */
    int opens;
    char server[64];
} sc;

static uint8_t *file;
static uint8_t file_sha[32];
static char base[64], home[128];
static tls_ctx_t *srv_tls, *cli_tls;

static uint8_t pattern(uint64_t i)
{
    uint32_t w = (uint32_t)(i / 4) * 2654435761u;
    return (uint8_t)(w >> (8 * (i % 4)));
}

/* ---- the fake servers ---- */

static const char *header_of(const char *req, const char *name, char *buf, size_t cap)
{
    const char *p = strcasestr(req, name);
    buf[0] = '\0';
    if (p == NULL)
        return NULL;
    p += strlen(name);
    size_t n = strcspn(p, "\r\n");
    snprintf(buf, cap, "%.*s", (int)n, p);
    return buf;
}

static void balancer_answer(conn_t *c, const char *target)
{
    char out[1024], auth[256];
    int i = sc.bal_requests++;
    if (i < 2)
        snprintf(sc.bal_target[i], sizeof sc.bal_target[i], "%s", target);
    struct srv_conn *s = conn_udata(c);
    if (header_of(s->req, "\r\nAuthorization: ", auth, sizeof auth) != NULL)
        snprintf(sc.bal_auth, sizeof sc.bal_auth, "%s", auth);
    if (sc.bal_status != 307) {
        int n = snprintf(out, sizeof out,
                         "HTTP/1.1 %d No\r\nContent-Length: 0\r\nRetry-After: 0\r\n\r\n",
                         sc.bal_status);
        conn_write(c, out, (size_t)n);
        conn_close(c);
        return;
    }
    struct fs *to = &sc.fs[strstr(target, "resume=") != NULL ? 1 : 0];
    char hp[64];
    net_addr_str(conn_listener_addr(to->l), hp, sizeof hp);
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 307 Temporary Redirect\r\nLocation: %s://%s/f/x.bin?t=T%d\r\n"
                     "X-Convoy-Transfer: 42\r\n"
                     "X-Convoy-Decision: policy=least-conn server=%s active=0 weight=1\r\n"
                     "Content-Length: 5\r\n\r\nmoved",
                     sc.tls ? "https" : "http", hp, i, to->name);
    conn_write(c, out, (size_t)n);
    conn_close(c);
}

/* The whole file in chunks of odd sizes, so that chunk lines fall across
 * reads. */
static void fs_chunked(conn_t *c, const char *dig)
{
    char line[256];
    int n = snprintf(line, sizeof line,
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: %s\r\n"
                     "Repr-Digest: %s\r\n\r\n",
                     ETAG, dig);
    conn_write(c, line, (size_t)n);
    for (uint64_t off = 0; off < FILE_LEN;) {
        size_t len = FILE_LEN - off < 7777 ? FILE_LEN - off : 7777;
        n = snprintf(line, sizeof line, "%zx\r\n", len);
        conn_write(c, line, (size_t)n);
        conn_write(c, file + off, len);
        conn_write(c, "\r\n", 2);
        off += len;
    }
    conn_write(c, "0\r\n\r\n", 5);
    conn_close(c);
}

static void fs_answer(conn_t *c, struct fs *fs)
{
    struct srv_conn *s = conn_udata(c);
    char range[64], out[1024], dig[64];
    fs->requests++;
    char auth[64];
    fs->saw_auth |= header_of(s->req, "\r\nAuthorization: ", auth, sizeof auth) != NULL;
    uint64_t first = 0;
    header_of(s->req, "\r\nIf-Range: ", fs->if_range, sizeof fs->if_range);
    if (header_of(s->req, "\r\nRange: ", range, sizeof range) != NULL) {
        snprintf(fs->range, sizeof fs->range, "%s", range);
        first = strtoull(range + 6, NULL, 10);
    } else {
        fs->range[0] = '\0';
    }
    uint8_t sha[32];
    memcpy(sha, file_sha, 32);
    if (fs->mode == FS_BAD_DIGEST)
        sha[0] ^= 1;
    xget_digest_format(sha, dig, sizeof dig);
    uint64_t start = fs->mode == FS_BAD_RANGE && first > 0 ? first - 1 : first;
    int n;
    if (fs->mode == FS_CHUNKED) {
        fs_chunked(c, dig);
        return;
    }
    if (first > 0)
        n = snprintf(out, sizeof out,
                     "HTTP/1.1 206 Partial Content\r\nContent-Length: %" PRIu64
                     "\r\nContent-Range: bytes %" PRIu64 "-%u/%u\r\n",
                     (uint64_t)FILE_LEN - start, start, FILE_LEN - 1, FILE_LEN);
    else
        n = snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nContent-Length: %u\r\n", FILE_LEN);
    n += snprintf(out + n, sizeof out - (size_t)n, "ETag: %s\r\nRepr-Digest: %s\r\n\r\n",
                  fs->mode == FS_OTHER_ETAG ? "\"v2\"" : ETAG, dig);
    conn_write(c, out, (size_t)n);
    uint64_t len = FILE_LEN - start;
    if ((fs->mode == FS_DROP || fs->mode == FS_STALL) && fs->after < len)
        len = fs->after;
    conn_write(c, file + start, (size_t)len);
    if (fs->mode != FS_STALL)
        conn_close(c);
}

static ssize_t srv_data(conn_t *c, const uint8_t *data, size_t len)
{
    struct srv_conn *s = conn_udata(c);
    size_t n = len < sizeof s->req - 1 - s->len ? len : sizeof s->req - 1 - s->len;
    memcpy(s->req + s->len, data, n);
    s->len += n;
    s->req[s->len] = '\0';
    if (strstr(s->req, "\r\n\r\n") == NULL)
        return (ssize_t)len;
    char target[256] = "";
    sscanf(s->req, "GET %255s HTTP/1.1", target);
    if (s->fs == NULL)
        balancer_answer(c, target);
    else
        fs_answer(c, s->fs);
    s->req[0] = '\0';
    s->len = 0;
    return (ssize_t)len;
}

static void srv_close(conn_t *c, int reason)
{
    (void)reason;
    free(conn_udata(c));
}

static const struct conn_handlers srv_h = {.on_data = srv_data, .on_close = srv_close};

static void srv_accept(conn_t *c, void *arg)
{
    struct srv_conn *s = calloc(1, sizeof *s);
    CU_ASSERT_FATAL(s != NULL);
    s->fs = arg;
    conn_set_udata(c, s);
}

/* ---- the client's sink ---- */

static int sink_open(void *arg, const struct xget_meta *m, uint64_t keep, xget_hash_t *h)
{
    (void)arg;
    CU_ASSERT(m->size == FILE_LEN || m->size == 0); /* 0: chunked */
    CU_ASSERT_STRING_EQUAL(m->etag, ETAG);
    sc.keep = keep;
    sc.opens++;
    sc.got_max = keep;
    xget_hash_update(h, file, keep); /* the part an earlier run left */
    return 0;
}

static int sink_write(void *arg, uint64_t off, const uint8_t *p, size_t len)
{
    (void)arg;
    CU_ASSERT_FATAL(off + len <= FILE_LEN);
    CU_ASSERT_EQUAL(off, sc.got_max); /* in order, no gap, no overlap */
    memcpy(sc.got + off, p, len);
    sc.got_max = off + len;
    return 0;
}

static void sink_progress(void *arg, const char *server, uint64_t done, uint64_t total)
{
    (void)arg, (void)done, (void)total;
    snprintf(sc.server, sizeof sc.server, "%s", server);
}

static void sink_done(void *arg, int code, const char *why)
{
    (void)arg;
    sc.done = true;
    sc.code = code;
    snprintf(sc.why, sizeof sc.why, "%s", why);
    ring_stop(sc.ring);
}

/* ---- scenes ---- */

static void watchdog_fired(struct ring_timer *t)
{
    (void)t;
    sc.timed_out = true;
    ring_stop(sc.ring);
}

static void drain_fired(struct ring_timer *t)
{
    (void)t;
    ring_stop(sc.ring);
}

static void listen_on(conn_listener_t **l, tls_ctx_t *tls, void *arg)
{
    struct net_addr a;
    CU_ASSERT_FATAL(net_addr_parse("127.0.0.1:0", &a) == 0);
    struct conn_opts o = {.tls = tls};
    CU_ASSERT_FATAL(conn_listen(l, sc.ring, &a, &o, &srv_h, srv_accept, arg) == 0);
}

static void scene_begin(enum fs_mode m1, uint64_t after1, enum fs_mode m2, bool tls)
{
    uint8_t *got = sc.got;
    memset(&sc, 0, sizeof sc);
    sc.got = got;
    memset(sc.got, 0, FILE_LEN);
    sc.bal_status = 307;
    sc.tls = tls;
    sc.fs[0] = (struct fs){.name = "fs1", .mode = m1, .after = after1};
    sc.fs[1] = (struct fs){.name = "fs2", .mode = m2};
    CU_ASSERT_FATAL(ring_create(&sc.ring, 64) == 0);
    listen_on(&sc.bal, tls ? srv_tls : NULL, NULL);
    listen_on(&sc.fs[0].l, tls ? srv_tls : NULL, &sc.fs[0]);
    listen_on(&sc.fs[1].l, tls ? srv_tls : NULL, &sc.fs[1]);
}

/* Runs a download of x.bin with o's options filled in. */
static void scene_run(struct dl_opts *o, bool tls)
{
    char url[64], hp[48], err[128];
    struct xget_url u;
    snprintf(url, sizeof url, "%s://%s", tls ? "https" : "http",
             net_addr_str(conn_listener_addr(sc.bal), hp, sizeof hp));
    CU_ASSERT_FATAL(xget_url_parse(url, &u, err, sizeof err) == 0);
    o->balancer = &u;
    o->tls = tls ? cli_tls : NULL;
    o->path = "x.bin";
    const struct dl_sink sink = {sink_open, sink_write, sink_progress, sink_done, NULL};
    dl_t *d;
    CU_ASSERT_FATAL(dl_start(&d, sc.ring, o, &sink) == 0);
    ring_timer_start(sc.ring, &sc.watchdog, WATCHDOG_MS, watchdog_fired);
    CU_ASSERT_EQUAL(ring_run(sc.ring), 0);
    CU_ASSERT_FALSE(sc.timed_out);
    if (!sc.done) /* the watchdog: end it, so that nothing leaks */
        dl_cancel(d, XGET_EFAIL, "watchdog");
    conn_listener_close(sc.bal);
    conn_listener_close(sc.fs[0].l);
    conn_listener_close(sc.fs[1].l);
    ring_timer_stop(sc.ring, &sc.watchdog);
    ring_timer_start(sc.ring, &sc.drain, DRAIN_MS, drain_fired);
    ring_run(sc.ring);
    ring_destroy(sc.ring);
}

static void expect_whole_file(void)
{
    CU_ASSERT_EQUAL(sc.code, XGET_OK);
    CU_ASSERT_EQUAL(sc.got_max, FILE_LEN);
    CU_ASSERT(memcmp(sc.got, file, FILE_LEN) == 0);
}

/* ---- tests ---- */

static void test_straight(void)
{
    scene_begin(FS_OK, 0, FS_OK, false);
    struct dl_opts o = {.authorization = "Bearer tok"};
    scene_run(&o, false);
    expect_whole_file();
    CU_ASSERT_EQUAL(sc.bal_requests, 1);
    CU_ASSERT_STRING_EQUAL(sc.bal_target[0], "/f/x.bin");
    CU_ASSERT_STRING_EQUAL(sc.bal_auth, "Bearer tok");
    CU_ASSERT_EQUAL(sc.fs[0].requests, 1);
    CU_ASSERT_STRING_EQUAL(sc.fs[0].range, "");
    CU_ASSERT_FALSE(sc.fs[0].saw_auth); /* the ticket is the file server's credential */
    CU_ASSERT_EQUAL(sc.fs[1].requests, 0);
    CU_ASSERT_STRING_EQUAL(sc.server, "fs1");
}

/* fs1 closes after 300,000 bytes: the rest comes from fs2 at that byte. */
static void test_drop_resumes(void)
{
    scene_begin(FS_DROP, 300000, FS_OK, false);
    struct dl_opts o = {0};
    scene_run(&o, false);
    expect_whole_file();
    CU_ASSERT_EQUAL(sc.bal_requests, 2);
    CU_ASSERT_STRING_EQUAL(sc.bal_target[1], "/f/x.bin?resume=42&failed=fs1");
    CU_ASSERT_STRING_EQUAL(sc.fs[1].range, "bytes=300000-");
    CU_ASSERT_STRING_EQUAL(sc.server, "fs2");
    CU_ASSERT_EQUAL(sc.opens, 2); /* the second leg keeps what the first brought */
    CU_ASSERT_EQUAL(sc.keep, 300000);
}

/* fs1 sends 100,000 bytes and then nothing: after stall_ms, fs2. */
static void test_stall_resumes(void)
{
    scene_begin(FS_STALL, 100000, FS_OK, false);
    struct dl_opts o = {.stall_ms = 200};
    uint64_t t0 = ring_now_ms();
    scene_run(&o, false);
    expect_whole_file();
    CU_ASSERT(ring_now_ms() - t0 >= 200);
    CU_ASSERT_STRING_EQUAL(sc.fs[1].range, "bytes=100000-");
}

/* A chunked body (no Content-Length: the size is learnt at its end). */
static void test_chunked(void)
{
    scene_begin(FS_CHUNKED, 0, FS_OK, false);
    struct dl_opts o = {0};
    scene_run(&o, false);
    expect_whole_file();
}

static void test_bad_digest(void)
{
    scene_begin(FS_BAD_DIGEST, 0, FS_OK, false);
    struct dl_opts o = {0};
    scene_run(&o, false);
    CU_ASSERT_EQUAL(sc.code, XGET_EINTEGRITY);
    CU_ASSERT_PTR_NOT_NULL(strstr(sc.why, "digest mismatch"));
}

/* The second leg offers another version of the file: refused. */
static void test_etag_changes(void)
{
    scene_begin(FS_DROP, 4096, FS_OTHER_ETAG, false);
    struct dl_opts o = {0};
    scene_run(&o, false);
    CU_ASSERT_EQUAL(sc.code, XGET_EINTEGRITY);
    CU_ASSERT_PTR_NOT_NULL(strstr(sc.why, "representation changed"));
}

/* A 206 that does not start at the asked byte is a failed leg, every time. */
static void test_wrong_content_range(void)
{
    scene_begin(FS_DROP, 4096, FS_BAD_RANGE, false);
    struct dl_opts o = {.legs_max = 3};
    scene_run(&o, false);
    CU_ASSERT_EQUAL(sc.code, XGET_ENET);
    CU_ASSERT_PTR_NOT_NULL(strstr(sc.why, "Content-Range"));
    CU_ASSERT_EQUAL(sc.got_max, 4096); /* nothing of the bad legs was taken */
}

static void test_balancer_errors(void)
{
    static const int status[] = {401, 403, 404, 503, 500};
    static const int code[] = {XGET_EAUTH, XGET_EAUTH, XGET_ENOTFOUND, XGET_ENOSERVER, XGET_ENET};
    for (size_t i = 0; i < sizeof status / sizeof status[0]; i++) {
        scene_begin(FS_OK, 0, FS_OK, false);
        sc.bal_status = status[i];
        struct dl_opts o = {.retries_503 = 2};
        scene_run(&o, false);
        CU_ASSERT_EQUAL(sc.code, code[i]);
        CU_ASSERT_EQUAL(sc.bal_requests, status[i] == 503 ? 3 : 1);
        CU_ASSERT_EQUAL(sc.fs[0].requests, 0);
    }
}

/* Nobody listens: a few tries, then the network's exit code. */
static void test_no_balancer(void)
{
    scene_begin(FS_OK, 0, FS_OK, false);
    char hp[48], url[64], err[128];
    net_addr_str(conn_listener_addr(sc.fs[0].l), hp, sizeof hp);
    conn_listener_close(sc.fs[0].l);
    struct xget_url u;
    snprintf(url, sizeof url, "http://%s", hp);
    CU_ASSERT_FATAL(xget_url_parse(url, &u, err, sizeof err) == 0);
    const struct dl_sink sink = {sink_open, sink_write, sink_progress, sink_done, NULL};
    struct dl_opts o = {.balancer = &u, .path = "x.bin"};
    dl_t *d;
    CU_ASSERT_FATAL(dl_start(&d, sc.ring, &o, &sink) == 0);
    ring_timer_start(sc.ring, &sc.watchdog, WATCHDOG_MS, watchdog_fired);
    ring_run(sc.ring);
    CU_ASSERT(sc.done);
    CU_ASSERT_EQUAL(sc.code, XGET_ENET);
    CU_ASSERT_PTR_NOT_NULL(strstr(sc.why, "refused"));
    ring_timer_stop(sc.ring, &sc.watchdog);
    conn_listener_close(sc.bal);
    conn_listener_close(sc.fs[1].l);
    ring_timer_start(sc.ring, &sc.drain, DRAIN_MS, drain_fired);
    ring_run(sc.ring);
    ring_destroy(sc.ring);
}

/* An earlier run left 500,000 bytes of the same ETag: only the rest moves. */
static void test_part_resumed(void)
{
    scene_begin(FS_OK, 0, FS_OK, false);
    struct dl_opts o = {.have = 500000, .resume = {.etag = ETAG, .size = FILE_LEN}};
    memcpy(o.resume.digest, file_sha, 32);
    memcpy(sc.got, file, 500000);
    scene_run(&o, false);
    expect_whole_file();
    CU_ASSERT_STRING_EQUAL(sc.fs[0].range, "bytes=500000-");
    CU_ASSERT_STRING_EQUAL(sc.fs[0].if_range, ETAG);
    CU_ASSERT_EQUAL(sc.keep, 500000);
}

/* Over TLS with the CA file, and a failover, as convoy get runs it. */
static void test_tls_failover(void)
{
    scene_begin(FS_DROP, 65536, FS_OK, true);
    struct dl_opts o = {0};
    scene_run(&o, true);
    CU_ASSERT_EQUAL(sc.code, XGET_OK);
    CU_ASSERT(memcmp(sc.got, file, FILE_LEN) == 0);
    CU_ASSERT_STRING_EQUAL(sc.fs[1].range, "bytes=65536-");
}

/* --limit-rate 2M over 1 MiB: about half a second, not a flash. */
static void test_limit_rate(void)
{
    scene_begin(FS_OK, 0, FS_OK, false);
    struct dl_opts o = {.rate = 2u << 20};
    uint64_t t0 = ring_now_ms();
    scene_run(&o, false);
    uint64_t ms = ring_now_ms() - t0;
    expect_whole_file();
    CU_ASSERT(ms >= 350);
    CU_ASSERT(ms < 3000);
}

static int suite_init(void)
{
    static const char *const names[] = {"fs1:fileserver", NULL};
    char ca[192], err[256];
    if (fx_tmpdir(base, sizeof base) != 0)
        return -1;
    snprintf(home, sizeof home, "%s/pki", base);
    snprintf(ca, sizeof ca, "%s/ca.crt", home);
    if (fx_pki(home, names) != 0 ||
        tls_ctx_new(&srv_tls, TLS_SERVER, home, "fs1", false, err, sizeof err) != 0 ||
        tls_ctx_new_cafile(&cli_tls, ca, err, sizeof err) != 0)
        return -1;
    file = malloc(FILE_LEN);
    sc.got = malloc(FILE_LEN);
    if (file == NULL || sc.got == NULL)
        return -1;
    for (uint64_t i = 0; i < FILE_LEN; i++)
        file[i] = pattern(i);
    SHA256(file, FILE_LEN, file_sha);
    log_set_level(LOG_ERROR);
    return 0;
}

static int suite_clean(void)
{
    tls_ctx_free(srv_tls);
    tls_ctx_free(cli_tls);
    srv_tls = cli_tls = NULL;
    free(file);
    free(sc.got);
    sc.got = NULL;
    log_set_level(LOG_INFO);
    fx_rmtree(base);
    return 0;
}

void suite_dl(void)
{
    CU_pSuite s = CU_add_suite("dl", suite_init, suite_clean);
    CU_add_test(s, "redirect followed, body whole, auth to the balancer only", test_straight);
    CU_add_test(s, "a dropped leg resumes at the exact byte elsewhere", test_drop_resumes);
    CU_add_test(s, "a stalled leg resumes elsewhere", test_stall_resumes);
    CU_add_test(s, "a chunked body", test_chunked);
    CU_add_test(s, "a wrong Repr-Digest is an integrity failure", test_bad_digest);
    CU_add_test(s, "another ETag on a resumed leg is refused", test_etag_changes);
    CU_add_test(s, "a 206 at the wrong byte is refused", test_wrong_content_range);
    CU_add_test(s, "balancer errors map to exit codes", test_balancer_errors);
    CU_add_test(s, "no balancer: network error after retries", test_no_balancer);
    CU_add_test(s, "an earlier run's part is continued", test_part_resumed);
    CU_add_test(s, "TLS with a CA file, and a failover", test_tls_failover);
    CU_add_test(s, "--limit-rate paces the body", test_limit_rate);
}
