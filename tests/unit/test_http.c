/*
 * http: the socket-free parsers and writer (requests, bodies, ranges,
 * responses).
 *
 * Tests feed a request whole, one byte at a time and cut at every byte,
 * and assert what a server would act on: the status it refuses with, the
 * path, the fields. The server on a ring is test_httpd.c.
 */
#include "convoy/http.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GET_X "GET /x HTTP/1.1\r\nHost: h\r\n\r\n"

/* Parses text whole with a fresh parser: the head length or the error. */
static ssize_t parse(http_req_t **q, const char *text)
{
    CU_ASSERT_FATAL(http_req_new(q, NULL) == 0);
    return http_req_parse(*q, (const uint8_t *)text, strlen(text));
}

static int status_of(const char *text)
{
    http_req_t *q;
    ssize_t n = parse(&q, text);
    http_req_free(q);
    return n < 0 ? (int)-n : n == 0 ? 0 : 200;
}

static void test_valid(void)
{
    const char *t = "\r\nPOST /f/a%20b/c?t=x%2By&n=1&e=&p=a+b HTTP/1.1\r\n"
                    "Host: example.org:8443\r\n"
                    "user-agent:  curl/8  \r\n"
                    "Content-Length: 5\r\n"
                    "X-Empty:\r\n"
                    "\r\nhello";
    http_req_t *q;
    ssize_t n = parse(&q, t);
    CU_ASSERT_EQUAL(n, (ssize_t)strlen(t) - 5);
    CU_ASSERT_EQUAL(http_req_method(q), HTTP_POST);
    CU_ASSERT_EQUAL(http_req_minor(q), 1);
    CU_ASSERT_STRING_EQUAL(http_req_target(q), "/f/a%20b/c?t=x%2By&n=1&e=&p=a+b");
    CU_ASSERT_STRING_EQUAL(http_req_path(q), "/f/a b/c");
    CU_ASSERT_STRING_EQUAL(http_req_query_raw(q), "t=x%2By&n=1&e=&p=a+b");
    char v[16];
    CU_ASSERT_EQUAL(http_req_query(q, "t", v, sizeof v), 3);
    CU_ASSERT_STRING_EQUAL(v, "x+y");
    CU_ASSERT_EQUAL(http_req_query(q, "p", v, sizeof v), 3);
    CU_ASSERT_STRING_EQUAL(v, "a b");
    CU_ASSERT_EQUAL(http_req_query(q, "e", v, sizeof v), 0);
    CU_ASSERT_EQUAL(http_req_query(q, "zz", v, sizeof v), -ENOENT);
    CU_ASSERT_EQUAL(http_req_query(q, "t", v, 3), -ENOSPC);
    size_t len;
    CU_ASSERT_STRING_EQUAL(http_req_header(q, "USER-AGENT", &len), "curl/8");
    CU_ASSERT_EQUAL(len, 6);
    CU_ASSERT_STRING_EQUAL(http_req_header(q, "x-empty", NULL), "");
    CU_ASSERT_PTR_NULL(http_req_header(q, "Range", NULL));
    CU_ASSERT_EQUAL(http_req_header_count(q), 4);
    const char *name, *value;
    http_req_header_at(q, 1, &name, &value);
    CU_ASSERT_STRING_EQUAL(name, "user-agent");
    CU_ASSERT_EQUAL(http_req_content_length(q), 5);
    CU_ASSERT_TRUE(http_req_keep_alive(q));
    const uint8_t *piece;
    size_t plen;
    CU_ASSERT_EQUAL(http_req_body(q, (const uint8_t *)t + n, 5, &piece, &plen), 5);
    CU_ASSERT_EQUAL(plen, 5);
    CU_ASSERT_TRUE(memcmp(piece, "hello", 5) == 0);
    CU_ASSERT_TRUE(http_req_body_done(q));
    http_req_free(q);
}

static void test_keep_alive_rules(void)
{
    struct {
        const char *text;
        bool keep;
    } cases[] = {
        {GET_X, true},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, Close\r\n\r\n", false},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_req_t *q;
        CU_ASSERT(parse(&q, cases[i].text) > 0);
        CU_ASSERT_EQUAL(http_req_keep_alive(q), cases[i].keep);
        http_req_free(q);
    }
}

static void test_refusals(void)
{
    struct {
        const char *text;
        int status;
    } cases[] = {
        {"GET /x HTTP/1.1\r\n\r\n", 400},                       /* no Host */
        {"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400}, /* two Hosts */
        {"GET /x HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},          /* bad Host */
        {"GET /x HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: h\r\n Folded: x\r\n\r\n", 400}, /* obs-fold */
        {"GET /x HTTP/1.1\r\nHost: h\r\nA: b\rc\r\n\r\n", 400},    /* bare CR */
        {"GET /x HTTP/1.1\nHost: h\r\n\r\n", 400},                 /* bare LF */
        {"GET /x HTTP/1.1\r\nHost: h\r\nA : b\r\n\r\n", 400},      /* space before : */
        {"GET /x HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
        {"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
         "Transfer-Encoding: chunked\r\n\r\n",
         400},
        {"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
        {"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        {"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\n", 413},
        {"BREW /x HTTP/1.1\r\nHost: h\r\n\r\n", 501},
        {"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 501},
        {"G@T /x HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"GET /x HTTP/2.0\r\nHost: h\r\n\r\n", 505},
        {"GET /x HTTP/1.2\r\nHost: h\r\n\r\n", 505},
        {"GET /x HTTQ/1.1\r\nHost: h\r\n\r\n", 400},
        {"GET /x  HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"GET x HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"GET /a%00b HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"GET /a%2Fb HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"GET /a%2fb HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"GET /a%4 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nHost: h\r\nExpect: tea\r\n\r\n", 417},
        {"GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st = status_of(cases[i].text);
        if (st != cases[i].status)
            fprintf(stderr, "case %zu: %d, wanted %d\n", i, st, cases[i].status);
        CU_ASSERT_EQUAL(st, cases[i].status);
    }
    /* NUL in a field, which a C string cannot show */
    static const char nul[] = "GET /x HTTP/1.1\r\nHost: h\r\nA: b\0c\r\n\r\n";
    http_req_t *q;
    CU_ASSERT_FATAL(http_req_new(&q, NULL) == 0);
    CU_ASSERT_EQUAL(http_req_parse(q, (const uint8_t *)nul, sizeof nul - 1), -400);
    CU_ASSERT_STRING_EQUAL(http_req_error(q), "NUL in head");
    http_req_free(q);
}

static void test_absolute_form(void)
{
    http_req_t *q;
    CU_ASSERT(parse(&q, "GET http://example.org/f/x?y=1 HTTP/1.1\r\nHost: example.org\r\n\r\n") >
              0);
    CU_ASSERT_STRING_EQUAL(http_req_path(q), "/f/x");
    CU_ASSERT_STRING_EQUAL(http_req_query_raw(q), "y=1");
    http_req_free(q);
    CU_ASSERT(parse(&q, "HEAD http://example.org HTTP/1.1\r\nHost: example.org\r\n\r\n") > 0);
    CU_ASSERT_STRING_EQUAL(http_req_path(q), "/");
    CU_ASSERT_EQUAL(http_req_method(q), HTTP_HEAD);
    http_req_free(q);
}

/* "GET /<pad> HTTP/1.1\r\n" of exactly n bytes, CRLF included. */
static char *line_of(size_t n)
{
    char *s = malloc(n + 64);
    size_t pad = n - strlen("GET / HTTP/1.1\r\n");
    memcpy(s, "GET /", 5);
    memset(s + 5, 'a', pad);
    strcpy(s + 5 + pad, " HTTP/1.1\r\nHost: h\r\n\r\n");
    return s;
}

/* A head of exactly n bytes with k fields (Host among them). */
static char *head_of(size_t n, unsigned k)
{
    char *s = malloc(n + 1);
    size_t at = (size_t)sprintf(s, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (unsigned i = 1; i < k; i++)
        at += (size_t)sprintf(s + at, "X%u: y\r\n", i);
    size_t left = n - at - 2; /* one last field fills up to n */
    CU_ASSERT_FATAL(left >= 6);
    memcpy(s + at, "Z: ", 3);
    memset(s + at + 3, 'v', left - 5);
    memcpy(s + at + left - 2, "\r\n\r\n", 4);
    s[n] = '\0';
    return s;
}

static void test_limits(void)
{
    char *s = line_of(HTTP_LINE_MAX);
    CU_ASSERT_EQUAL(status_of(s), 200);
    free(s);
    s = line_of(HTTP_LINE_MAX + 1);
    CU_ASSERT_EQUAL(status_of(s), 414);
    free(s);
    s = head_of(HTTP_HEAD_MAX, 2);
    CU_ASSERT_EQUAL(status_of(s), 200);
    free(s);
    s = head_of(HTTP_HEAD_MAX + 1, 2);
    CU_ASSERT_EQUAL(status_of(s), 431);
    free(s);
    s = head_of(4096, HTTP_HEADERS_MAX - 1); /* + Z: the limit */
    CU_ASSERT_EQUAL(status_of(s), 200);
    free(s);
    s = head_of(4096, HTTP_HEADERS_MAX);
    CU_ASSERT_EQUAL(status_of(s), 431);
    free(s);
    /* a start line that never ends is refused as soon as it is too long */
    http_req_t *q;
    CU_ASSERT_FATAL(http_req_new(&q, NULL) == 0);
    char *big = malloc(HTTP_LINE_MAX + 2);
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', HTTP_LINE_MAX - 3);
    CU_ASSERT_EQUAL(http_req_parse(q, (uint8_t *)big, HTTP_LINE_MAX), 0);
    CU_ASSERT_EQUAL(http_req_parse(q, (uint8_t *)big, HTTP_LINE_MAX + 1), -414);
    CU_ASSERT_EQUAL(http_req_parse(q, (uint8_t *)big, HTTP_LINE_MAX + 2), -414); /* latched */
    free(big);
    http_req_free(q);
    /* lowered limits */
    struct http_limits lim = {.line_max = 32, .head_max = 64, .headers_max = 2, .body_max = 4};
    CU_ASSERT_FATAL(http_req_new(&q, &lim) == 0);
    const char *t = "PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
    CU_ASSERT_EQUAL(http_req_parse(q, (const uint8_t *)t, strlen(t)), -413);
    http_req_free(q);
}

/* Feeds text one byte more each time, from the start, as conn re-offers. */
static ssize_t feed_growing(http_req_t *q, const char *text, size_t len)
{
    ssize_t n = 0;
    for (size_t i = 1; i <= len && n == 0; i++)
        n = http_req_parse(q, (const uint8_t *)text, i);
    return n;
}

static void test_truncation(void)
{
    const char *t = "GET /f/x?t=1 HTTP/1.1\r\nHost: h\r\nRange: bytes=1-2\r\n\r\n";
    size_t len = strlen(t);
    for (size_t cut = 0; cut < len; cut++) {
        http_req_t *q;
        CU_ASSERT_FATAL(http_req_new(&q, NULL) == 0);
        CU_ASSERT_EQUAL(http_req_parse(q, (const uint8_t *)t, cut), 0);
        /* and the rest, from the same start */
        CU_ASSERT_EQUAL(http_req_parse(q, (const uint8_t *)t, len), (ssize_t)len);
        CU_ASSERT_STRING_EQUAL(http_req_path(q), "/f/x");
        CU_ASSERT_STRING_EQUAL(http_req_header(q, "range", NULL), "bytes=1-2");
        http_req_free(q);
    }
    http_req_t *q;
    CU_ASSERT_FATAL(http_req_new(&q, NULL) == 0);
    CU_ASSERT_EQUAL(feed_growing(q, t, len), (ssize_t)len);
    http_req_free(q);
}

/* Reads every request in buf, fed in pieces of `step` bytes from an
 * offer that, like conn's, starts at the first unconsumed byte. */
static int read_pipeline(const char *buf, size_t len, size_t step, char paths[][16], int max)
{
    http_req_t *q;
    CU_ASSERT_FATAL(http_req_new(&q, NULL) == 0);
    size_t start = 0, have = 0;
    int got = 0;
    while (start < len && got < max) {
        have = have + step > len ? len : have + step;
        ssize_t n = http_req_parse(q, (const uint8_t *)buf + start, have - start);
        if (n < 0)
            break;
        if (n == 0)
            continue;
        snprintf(paths[got++], 16, "%s", http_req_path(q));
        start += (size_t)n;
        http_req_reset(q);
        have = start;
    }
    http_req_free(q);
    return got;
}

static void test_pipelining(void)
{
    const char *buf = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
                      "HEAD /2 HTTP/1.1\r\nHost: h\r\n\r\n"
                      "\r\nDELETE /3 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
    size_t len = strlen(buf);
    for (size_t step = 1; step <= len; step++) {
        char paths[4][16];
        int got = read_pipeline(buf, len, step, paths, 4);
        CU_ASSERT_EQUAL_FATAL(got, 3);
        CU_ASSERT_STRING_EQUAL(paths[0], "/1");
        CU_ASSERT_STRING_EQUAL(paths[1], "/2");
        CU_ASSERT_STRING_EQUAL(paths[2], "/3");
    }
}

static void test_garbage(void)
{
    /* random bytes never crash, and never parse as a request with a NUL */
    unsigned seed = 42;
    uint8_t buf[512];
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(rand_r(&seed) % sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)rand_r(&seed);
        if (round % 2) /* half of them start like a request */
            memcpy(buf, "GET / HTTP/1.1\r\n", n < 16 ? n : 16);
        http_req_t *q;
        CU_ASSERT_FATAL(http_req_new(&q, NULL) == 0);
        ssize_t r = http_req_parse(q, buf, n);
        CU_ASSERT(r <= (ssize_t)n);
        if (r > 0)
            CU_ASSERT(strlen(http_req_path(q)) > 0);
        http_req_free(q);
    }
}

static void test_chunked_body(void)
{
    const char *t = "POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5;ext=1\r\nhello\r\n"
                    "6\r\n world\r\n"
                    "0\r\nTrailer: x\r\n\r\n"
                    "GET /next HTTP/1.1\r\n";
    size_t len = strlen(t);
    for (size_t step = 1; step <= 40; step++) {
        http_req_t *q;
        ssize_t n = parse(&q, t);
        CU_ASSERT_FATAL(n > 0);
        CU_ASSERT_EQUAL(http_req_content_length(q), -1);
        char got[32] = "";
        size_t at = (size_t)n, glen = 0;
        while (!http_req_body_done(q) && at < len) {
            size_t k = len - at < step ? len - at : step;
            const uint8_t *p;
            size_t pl;
            ssize_t used = http_req_body(q, (const uint8_t *)t + at, k, &p, &pl);
            CU_ASSERT_FATAL(used >= 0);
            CU_ASSERT(p >= (const uint8_t *)t + at && p + pl <= (const uint8_t *)t + at + k);
            memcpy(got + glen, p, pl);
            glen += pl;
            at += (size_t)used;
        }
        got[glen] = '\0';
        CU_ASSERT_STRING_EQUAL(got, "hello world");
        CU_ASSERT_TRUE(http_req_body_done(q));
        CU_ASSERT_TRUE(strncmp(t + at, "GET /next", 9) == 0);
        http_req_free(q);
    }
    const char *bad[] = {"x\r\n", "5\r\nhelloX\r\n", "5\nhello", "12345678901234567\r\n",
                         "5\r\nhello\r\n0\r\nA\rB\r\n\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http_req_t *q;
        CU_ASSERT_FATAL(
            parse(&q, "PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n") > 0);
        const uint8_t *p = (const uint8_t *)bad[i];
        size_t left = strlen(bad[i]), pl;
        const uint8_t *piece;
        ssize_t used = 0;
        while (left && (used = http_req_body(q, p, left, &piece, &pl)) >= 0) {
            p += used;
            left -= (size_t)used;
        }
        CU_ASSERT_EQUAL(used, -400);
        http_req_free(q);
    }
    /* a chunked body over body_max */
    struct http_limits lim = {.body_max = 4};
    http_req_t *q;
    CU_ASSERT_FATAL(http_req_new(&q, &lim) == 0);
    const char *h = "PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello";
    ssize_t n = http_req_parse(q, (const uint8_t *)h, strlen(h));
    CU_ASSERT_FATAL(n > 0);
    const uint8_t *piece;
    size_t pl;
    ssize_t used = http_req_body(q, (const uint8_t *)h + n, strlen(h) - (size_t)n, &piece, &pl);
    if (used >= 0)
        used = http_req_body(q, (const uint8_t *)h + n + used, strlen(h) - (size_t)n - (size_t)used,
                             &piece, &pl);
    CU_ASSERT_EQUAL(used, -413);
    http_req_free(q);
}

static void test_ranges(void)
{
    struct {
        const char *v;
        uint64_t size;
        enum http_range_result res;
        uint64_t first, last;
    } cases[] = {
        {NULL, 10, HTTP_RANGE_NONE, 0, 0},
        {"bytes=0-4", 10, HTTP_RANGE_PARTIAL, 0, 4},
        {"bytes=2-", 10, HTTP_RANGE_PARTIAL, 2, 9},
        {"bytes=-3", 10, HTTP_RANGE_PARTIAL, 7, 9},
        {"bytes=-30", 10, HTTP_RANGE_PARTIAL, 0, 9},
        {"bytes=5-100", 10, HTTP_RANGE_PARTIAL, 5, 9},
        {"bytes=9-9", 10, HTTP_RANGE_PARTIAL, 9, 9},
        {"Bytes=0-0", 10, HTTP_RANGE_PARTIAL, 0, 0},
        {"bytes=0-18446744073709551615", 10, HTTP_RANGE_PARTIAL, 0, 9},
        {"bytes=0-99999999999999999999999", 10, HTTP_RANGE_PARTIAL, 0, 9},
        {"bytes=10-", 10, HTTP_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=10-20", 10, HTTP_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=99999999999999999999999-", 10, HTTP_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=-0", 10, HTTP_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=0-", 0, HTTP_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=-5", 0, HTTP_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=5-4", 10, HTTP_RANGE_NONE, 0, 0},
        {"bytes=0-1,3-4", 10, HTTP_RANGE_NONE, 0, 0},
        {"bytes=", 10, HTTP_RANGE_NONE, 0, 0},
        {"bytes=-", 10, HTTP_RANGE_NONE, 0, 0},
        {"bytes=a-b", 10, HTTP_RANGE_NONE, 0, 0},
        {"items=0-1", 10, HTTP_RANGE_NONE, 0, 0},
        {"bytes=1-2x", 10, HTTP_RANGE_NONE, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct http_range r = {0, 0};
        enum http_range_result res = http_range_parse(cases[i].v, cases[i].size, &r);
        CU_ASSERT_EQUAL(res, cases[i].res);
        if (res == HTTP_RANGE_PARTIAL && cases[i].res == res) {
            CU_ASSERT_EQUAL(r.first, cases[i].first);
            CU_ASSERT_EQUAL(r.last, cases[i].last);
        }
    }
    char buf[64];
    struct http_range r = {7, 9};
    CU_ASSERT_EQUAL(http_content_range(buf, sizeof buf, HTTP_RANGE_PARTIAL, &r, 10), 12);
    CU_ASSERT_STRING_EQUAL(buf, "bytes 7-9/10");
    CU_ASSERT(http_content_range(buf, sizeof buf, HTTP_RANGE_UNSATISFIABLE, NULL, 10) > 0);
    CU_ASSERT_STRING_EQUAL(buf, "bytes */10");
    CU_ASSERT_EQUAL(http_content_range(buf, 5, HTTP_RANGE_PARTIAL, &r, 10), -ENOSPC);
    CU_ASSERT_EQUAL(http_content_range(buf, sizeof buf, HTTP_RANGE_NONE, &r, 10), -EINVAL);
}

static void test_writer(void)
{
    char buf[256];
    struct http_w w;
    http_w_init(&w, buf, sizeof buf);
    http_w_status(&w, 404);
    http_w_header(&w, "Content-Type", "text/plain");
    http_w_headerf(&w, "Content-Length", "%d", 10);
    ssize_t n = http_w_finish(&w);
    CU_ASSERT_FATAL(n > 0);
    buf[n] = '\0';
    CU_ASSERT_TRUE(strncmp(buf, "HTTP/1.1 404 Not Found\r\nDate: ", 30) == 0);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(buf, " GMT\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n"));
    CU_ASSERT_EQUAL(strlen(http_date_now()), 29);
    /* injection and overflow are sticky */
    http_w_init(&w, buf, sizeof buf);
    http_w_status(&w, 200);
    http_w_header(&w, "Location", "/x\r\nSet-Cookie: y");
    CU_ASSERT_EQUAL(http_w_finish(&w), -EINVAL);
    http_w_init(&w, buf, sizeof buf);
    http_w_headerf(&w, "X", "a%cb", '\n');
    CU_ASSERT_EQUAL(http_w_finish(&w), -EINVAL);
    http_w_init(&w, buf, sizeof buf);
    http_w_header(&w, "Bad Name", "v");
    CU_ASSERT_EQUAL(http_w_finish(&w), -EINVAL);
    http_w_init(&w, buf, 20);
    http_w_status(&w, 200);
    CU_ASSERT_EQUAL(http_w_finish(&w), -ENOSPC);
    http_w_init(&w, buf, sizeof buf);
    http_w_request(&w, HTTP_GET, "/f/x?t=1", "127.0.0.1:8443");
    http_w_header(&w, "Range", "bytes=5-");
    n = http_w_finish(&w);
    CU_ASSERT_FATAL(n > 0);
    buf[n] = '\0';
    CU_ASSERT_STRING_EQUAL(buf, "GET /f/x?t=1 HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n"
                                "Range: bytes=5-\r\n\r\n");
    CU_ASSERT_STRING_EQUAL(http_status_reason(416), "Range Not Satisfiable");
    CU_ASSERT_STRING_EQUAL(http_method_str(HTTP_DELETE), "DELETE");
}

/* Reads a whole response from text in steps: the body, or NULL. */
static char *read_response(http_resp_t *r, const char *text, size_t len, size_t step, bool eof)
{
    static char body[256];
    size_t start = 0, have = 0, blen = 0;
    ssize_t head = 0;
    while (head == 0 && have < len) {
        have = have + step > len ? len : have + step;
        head = http_resp_parse(r, (const uint8_t *)text, have);
    }
    if (head <= 0)
        return NULL;
    start = (size_t)head;
    while (!http_resp_body_done(r) && start < len) {
        size_t k = len - start < step ? len - start : step;
        const uint8_t *p;
        size_t pl;
        ssize_t used = http_resp_body(r, (const uint8_t *)text + start, k, &p, &pl);
        if (used < 0)
            return NULL;
        memcpy(body + blen, p, pl);
        blen += pl;
        start += (size_t)used;
    }
    if (eof && http_resp_eof(r) < 0)
        return NULL;
    body[blen] = '\0';
    return body;
}

static void test_response(void)
{
    http_resp_t *r;
    CU_ASSERT_FATAL(http_resp_new(&r, NULL) == 0);
    const char *t = "HTTP/1.1 307 Temporary Redirect\r\nLocation: https://fs1/f/x?t=abc\r\n"
                    "Content-Length: 3\r\n\r\nabc";
    for (size_t step = 1; step <= strlen(t); step++) {
        http_resp_reset(r, HTTP_GET);
        char *b = read_response(r, t, strlen(t), step, false);
        CU_ASSERT_PTR_NOT_NULL_FATAL(b);
        CU_ASSERT_STRING_EQUAL(b, "abc");
        CU_ASSERT_EQUAL(http_resp_status(r), 307);
        CU_ASSERT_STRING_EQUAL(http_resp_reason(r), "Temporary Redirect");
        CU_ASSERT_STRING_EQUAL(http_resp_header(r, "location", NULL), "https://fs1/f/x?t=abc");
        CU_ASSERT_TRUE(http_resp_keep_alive(r));
    }
    const char *ch = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    for (size_t step = 1; step <= strlen(ch); step++) {
        http_resp_reset(r, HTTP_GET);
        char *b = read_response(r, ch, strlen(ch), step, false);
        CU_ASSERT_PTR_NOT_NULL_FATAL(b);
        CU_ASSERT_STRING_EQUAL(b, "abcde");
        CU_ASSERT_TRUE(http_resp_chunked(r));
    }
    /* HEAD: no body whatever Content-Length says; 204 and 1xx neither */
    http_resp_reset(r, HTTP_HEAD);
    const char *hd = "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n";
    CU_ASSERT_EQUAL(http_resp_parse(r, (const uint8_t *)hd, strlen(hd)), (ssize_t)strlen(hd));
    CU_ASSERT_TRUE(http_resp_body_done(r));
    http_resp_reset(r, HTTP_PUT);
    const char *cont = "HTTP/1.1 100 Continue\r\n\r\n";
    CU_ASSERT_EQUAL(http_resp_parse(r, (const uint8_t *)cont, strlen(cont)), (ssize_t)strlen(cont));
    CU_ASSERT_EQUAL(http_resp_status(r), 100);
    CU_ASSERT_TRUE(http_resp_body_done(r));
    /* close-delimited, HTTP/1.0, no reason phrase */
    http_resp_reset(r, HTTP_GET);
    const char *cl = "HTTP/1.0 200\r\n\r\nall of it";
    char *b = read_response(r, cl, strlen(cl), 4, true);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_STRING_EQUAL(b, "all of it");
    CU_ASSERT_STRING_EQUAL(http_resp_reason(r), "");
    CU_ASSERT_FALSE(http_resp_keep_alive(r));
    /* a body cut short */
    http_resp_reset(r, HTTP_GET);
    const char *cut = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    CU_ASSERT_PTR_NULL(read_response(r, cut, strlen(cut), 100, true));
    /* malformed */
    const char *bad[] = {"HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 200OK\r\n\r\n",
                         "HTTP/1.1 099 X\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                         "ICY 200 OK\r\n\r\n",     "HTTP/1.1 200 OK\r\n Fold: x\r\n\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http_resp_reset(r, HTTP_GET);
        CU_ASSERT_EQUAL(http_resp_parse(r, (const uint8_t *)bad[i], strlen(bad[i])), -EPROTO);
    }
    http_resp_free(r);
}

void suite_http(void)
{
    CU_pSuite s = CU_add_suite("http", NULL, NULL);
    CU_add_test(s, "a valid request and its parts", test_valid);
    CU_add_test(s, "keep-alive by version and Connection", test_keep_alive_rules);
    CU_add_test(s, "each malformed request has its status", test_refusals);
    CU_add_test(s, "absolute-form targets", test_absolute_form);
    CU_add_test(s, "every limit at and one past it", test_limits);
    CU_add_test(s, "a head cut at every byte", test_truncation);
    CU_add_test(s, "pipelined requests split at every byte", test_pipelining);
    CU_add_test(s, "garbage", test_garbage);
    CU_add_test(s, "chunked bodies", test_chunked_body);
    CU_add_test(s, "ranges", test_ranges);
    CU_add_test(s, "the writer", test_writer);
    CU_add_test(s, "responses", test_response);
}
