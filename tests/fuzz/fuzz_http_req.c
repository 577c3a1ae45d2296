/*
 * fuzz_http_req — libFuzzer target for the HTTP request and response
 * parsers and the body decoder.
 *
 * Input layout: byte 0 holds in its low 3 bits the count n-1 of split sizes
 * that follow (n in 1..8); each of those n bytes b gives a step of b+1
 * bytes. The rest is a byte stream read as pipelined requests the way conn
 * offers it: every offer starts at the first unconsumed byte and grows by
 * one step, so the parser sees each request cut at the places the fuzzer
 * finds interesting.
 *
 * The checks abort when a promise breaks: a head length never exceeds the
 * offer, an incremental parse agrees with a parse of the whole head at
 * once, an error is one of the statuses http.h names and latches, the
 * decoded path is a NUL-free string starting with '/', every header lookup
 * finds its own field, body pieces lie inside the bytes given and add up
 * to Content-Length. The same stream then goes to the response parser.
 */
#include "convoy/http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_http_req: %s:%d: check failed: %s\n", __FILE__, __LINE__,        \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Small limits, so that the fuzzer reaches both sides of each. */
static const struct http_limits lim = {
    .line_max = 256, .head_max = 1024, .headers_max = 8, .body_max = 4096};

static const int statuses[] = {400, 413, 414, 417, 431, 500, 501, 505};

static bool known_status(int st)
{
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
        if (st == statuses[i])
            return true;
    return false;
}

/* What a complete head promises. */
static void check_head(http_req_t *q, const uint8_t *data, size_t n)
{
    const char *path = http_req_path(q);
    CHECK(path[0] == '/');
    CHECK(strstr(http_req_target(q), " ") == NULL);
    for (unsigned i = 0; i < http_req_header_count(q); i++) {
        const char *name, *value;
        http_req_header_at(q, i, &name, &value);
        const char *found = http_req_header(q, name, NULL);
        CHECK(found != NULL);
        CHECK(strchr(value, '\r') == NULL && strchr(value, '\n') == NULL);
    }
    char v[64];
    ssize_t k = http_req_query(q, "t", v, sizeof v);
    CHECK(k == -ENOENT || k == -ENOSPC || k == -EINVAL || (k >= 0 && (size_t)k == strlen(v)));
    /* the whole head at once reads the same */
    http_req_t *again;
    CHECK(http_req_new(&again, &lim) == 0);
    CHECK(http_req_parse(again, data, n) == (ssize_t)n);
    CHECK(strcmp(http_req_path(again), path) == 0);
    CHECK(http_req_content_length(again) == http_req_content_length(q));
    http_req_free(again);
}

/* Reads the body of q from data; returns bytes used, or -1 on an error. */
static ssize_t read_body(http_req_t *q, const uint8_t *data, size_t len)
{
    size_t at = 0;
    uint64_t payload = 0;
    while (!http_req_body_done(q) && at < len) {
        const uint8_t *p;
        size_t pl;
        ssize_t n = http_req_body(q, data + at, len - at, &p, &pl);
        if (n < 0) {
            CHECK(n == -400 || n == -413);
            return -1;
        }
        CHECK((size_t)n <= len - at && p >= data + at && p + pl <= data + at + (size_t)n);
        CHECK(n > 0 || len - at == 0);
        payload += pl;
        at += (size_t)n;
    }
    int64_t cl = http_req_content_length(q);
    if (http_req_body_done(q) && cl >= 0)
        CHECK(payload == (uint64_t)cl);
    CHECK(payload <= lim.body_max);
    return http_req_body_done(q) ? (ssize_t)at : -1;
}

static void fuzz_requests(const uint8_t *split, size_t nsplit, const uint8_t *p, size_t len)
{
    http_req_t *q;
    CHECK(http_req_new(&q, &lim) == 0);
    size_t start = 0, have = 0;
    for (size_t i = 0; start < len; i++) {
        have += (size_t)split[i % nsplit] + 1;
        if (have > len)
            have = len;
        ssize_t n = http_req_parse(q, p + start, have - start);
        CHECK(n <= (ssize_t)(have - start));
        if (n < 0) {
            CHECK(known_status((int)-n) && http_req_error(q)[0] != '\0');
            CHECK(http_req_parse(q, p + start, have - start) == n);
            break;
        }
        if (n == 0 && have == len)
            break;
        if (n == 0)
            continue;
        check_head(q, p + start, (size_t)n);
        ssize_t b = read_body(q, p + start + n, len - start - (size_t)n);
        if (b < 0)
            break;
        start += (size_t)n + (size_t)b;
        have = start;
        http_req_reset(q);
    }
    http_req_free(q);
}

static void fuzz_response(const uint8_t *p, size_t len)
{
    http_resp_t *r;
    CHECK(http_resp_new(&r, &lim) == 0);
    http_resp_reset(r, len && (p[0] & 1) ? HTTP_HEAD : HTTP_GET);
    ssize_t n = http_resp_parse(r, p, len);
    CHECK(n == 0 || n == -EPROTO || n == -EMSGSIZE || (n > 0 && (size_t)n <= len));
    if (n > 0) {
        CHECK(http_resp_status(r) >= 100 && http_resp_status(r) <= 999);
        size_t at = (size_t)n;
        while (!http_resp_body_done(r) && at < len) {
            const uint8_t *piece;
            size_t pl;
            ssize_t k = http_resp_body(r, p + at, len - at, &piece, &pl);
            if (k < 0)
                break;
            CHECK(k > 0 && piece + pl <= p + len);
            at += (size_t)k;
        }
        (void)http_resp_eof(r);
    }
    http_resp_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t nsplit = (data[0] & 7u) + 1;
    if (size < 1 + nsplit)
        return 0;
    const uint8_t *p = data + 1 + nsplit;
    size_t len = size - 1 - nsplit;
    fuzz_requests(data + 1, nsplit, p, len);
    fuzz_response(p, len);
    return 0;
}
