/* hreq: requests against a local httpd on the same ring: a GET, a POST
 * whose body is memory then a file region, an answer cut short, a server
 * that is not there. */
#include "convoy/hreq.h"
#include "convoy/httpd.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
    ring_t *ring;
    httpd_t *srv;
    struct xget_url url;
    uint64_t got, sum; /* the POST body the server read */
    char answer[256];
    size_t alen;
    int err, status;
    int ended;
} g;

static void on_post_body(httpd_xchg_t *x, void *arg, const uint8_t *p, size_t len, int err)
{
    (void)arg;
    for (size_t i = 0; i < len; i++)
        g.sum = g.sum * 31 + p[i];
    g.got += len;
    if (len == 0 && err == 0)
        httpd_reply(x, 201, "text/plain", "made\n", 5);
}

static void handle(httpd_xchg_t *x, void *arg)
{
    (void)arg;
    const http_req_t *q = httpd_req(x);
    if (http_req_method(q) == HTTP_POST)
        httpd_read_body(x, on_post_body, NULL);
    else if (strcmp(http_req_path(q), "/cut") == 0) {
        httpd_header(x, "Content-Length", "1000"); /* a lie the close exposes */
        conn_abort(httpd_conn(x), -ECONNRESET);
        httpd_reply_text(x, 200, "never sent"); /* an exchange lives until answered */
    } else
        httpd_reply_text(x, 200, "hello");
}

static int sink_body(void *arg, const uint8_t *p, size_t len)
{
    (void)arg;
    if (g.alen + len < sizeof g.answer) {
        memcpy(g.answer + g.alen, p, len);
        g.alen += len;
    }
    return 0;
}

static void sink_done(void *arg, int err, int status, const char *why)
{
    (void)arg, (void)why;
    g.err = err;
    g.status = status;
    g.ended++;
    ring_stop(g.ring);
}

static const struct hreq_sink sink = {.body = sink_body, .done = sink_done};

static int setup(void)
{
    struct net_addr a;
    char err[128], hp[64];
    if (ring_create(&g.ring, 64) < 0 || net_addr_parse("127.0.0.1:0", &a) < 0)
        return -1;
    struct httpd_opts o = {.lim = {.body_max = 16u << 20}};
    if (httpd_listen(&g.srv, g.ring, &a, &o, handle, NULL) < 0)
        return -1;
    char url[96];
    snprintf(url, sizeof url, "http://%s", net_addr_str(httpd_addr(g.srv), hp, sizeof hp));
    return xget_url_parse(url, &g.url, err, sizeof err);
}

static void stopped(void *arg)
{
    (void)arg;
    ring_stop(g.ring);
}

static int teardown(void)
{
    httpd_drain(g.srv, 100, stopped, NULL);
    ring_run(g.ring); /* until its connections have closed */
    ring_destroy(g.ring);
    return 0;
}

/* Runs one request to its end. */
static void run(const struct hreq_opts *o)
{
    hreq_t *q;
    g.alen = 0;
    g.ended = 0;
    memset(g.answer, 0, sizeof g.answer);
    CU_ASSERT_EQUAL_FATAL(hreq_start(&q, g.ring, o, &sink), 0);
    CU_ASSERT_EQUAL(ring_run(g.ring), 0);
    CU_ASSERT_EQUAL(g.ended, 1);
}

static void test_get(void)
{
    struct hreq_opts o = {.url = &g.url, .method = HTTP_GET, .target = "/x", .body_fd = -1};
    run(&o);
    CU_ASSERT_EQUAL(g.err, 0);
    CU_ASSERT_EQUAL(g.status, 200);
    CU_ASSERT_STRING_EQUAL(g.answer, "hello\n");
}

static void test_post_memory_and_file(void)
{
    char path[] = "/tmp/hreq-XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    unlink(path);
    static uint8_t file[3 << 20], mem[1000];
    uint64_t want = 0;
    for (size_t i = 0; i < sizeof mem; i++)
        want = want * 31 + (mem[i] = (uint8_t)(i * 7));
    for (size_t i = 0; i < sizeof file; i++)
        file[i] = (uint8_t)(i ^ (i >> 9));
    CU_ASSERT_EQUAL(write(fd, file, sizeof file), (ssize_t)sizeof file);
    for (size_t i = 100; i < sizeof file; i++) /* the region from byte 100 */
        want = want * 31 + file[i];
    g.got = g.sum = 0;
    struct hreq_opts o = {.url = &g.url,
                          .method = HTTP_POST,
                          .target = "/v1/jobs",
                          .headers = "Content-Type: application/octet-stream\r\n",
                          .body = mem,
                          .body_len = sizeof mem,
                          .body_fd = fd,
                          .body_off = 100,
                          .body_fd_len = sizeof file - 100};
    run(&o);
    close(fd);
    CU_ASSERT_EQUAL(g.err, 0);
    CU_ASSERT_EQUAL(g.status, 201);
    CU_ASSERT_EQUAL(g.got, sizeof mem + sizeof file - 100);
    CU_ASSERT_EQUAL(g.sum, want);
    CU_ASSERT_STRING_EQUAL(g.answer, "made\n");
}

static void test_cut_and_refused(void)
{
    struct hreq_opts o = {.url = &g.url, .method = HTTP_GET, .target = "/cut", .body_fd = -1};
    run(&o);
    CU_ASSERT(g.err < 0);

    char err[64];
    struct xget_url nobody;
    CU_ASSERT_EQUAL_FATAL(xget_url_parse("http://127.0.0.1:1", &nobody, err, sizeof err), 0);
    o.url = &nobody;
    o.target = "/";
    run(&o);
    CU_ASSERT_EQUAL(g.err, -ECONNREFUSED);
    CU_ASSERT_EQUAL(g.status, 0);
}

void suite_hreq(void)
{
    CU_pSuite s = CU_add_suite("hreq", setup, teardown);
    CU_add_test(s, "GET: status and body", test_get);
    CU_add_test(s, "POST: a body from memory, then a file region", test_post_memory_and_file);
    CU_add_test(s, "an answer cut short; nobody listening", test_cut_and_refused);
}
