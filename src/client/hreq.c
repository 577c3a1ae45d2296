/*
 * hreq — one HTTP request on a ring (see hreq.h). The design is simple:
 * the head is written with http_w and queued at connect time (conn holds
 * it until the TLS handshake is done), the body follows as the caller's
 * memory and file region, and the answer is parsed as it comes; the
 * request ends in on_close, whatever ended it, so done runs exactly once
 * and always from the loop.
 */
#include "convoy/hreq.h"

#include "convoy/conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_MAX 8192

struct hreq {
    conn_t *c;
    http_resp_t *resp;
    struct hreq_sink sink;
    enum http_method method;
    bool head_done, complete;
    int err; /* why it ended, when not complete */
    char why[160];
};

static void hreq_fail(hreq_t *q, int err, const char *fmt, const char *detail)
{
    if (q->err == 0) {
        q->err = err;
        snprintf(q->why, sizeof q->why, fmt, detail);
    }
    conn_abort(q->c, err);
}

/* Feeds body bytes; the answer is complete when the parser says so. */
static ssize_t hreq_body(hreq_t *q, const uint8_t *data, size_t len)
{
    size_t used = 0;
    while (used < len && !http_resp_body_done(q->resp)) {
        const uint8_t *piece;
        size_t plen;
        ssize_t n = http_resp_body(q->resp, data + used, len - used, &piece, &plen);
        if (n < 0) {
            hreq_fail(q, -EPROTO, "%s", "bad body framing");
            return -EPROTO;
        }
        used += (size_t)n;
        int rc = plen && q->sink.body ? q->sink.body(q->sink.arg, piece, plen) : 0;
        if (rc < 0) {
            hreq_fail(q, rc, "body: %s", strerror(-rc));
            return rc;
        }
        if (n == 0)
            break;
    }
    if (http_resp_body_done(q->resp) && !q->complete) {
        q->complete = true;
        conn_close(q->c);
    }
    return (ssize_t)used;
}

static ssize_t hreq_on_data(conn_t *c, const uint8_t *data, size_t len)
{
    hreq_t *q = conn_udata(c);
    if (q->complete)
        return (ssize_t)len; /* anything after the answer is ignored */
    if (!q->head_done) {
        ssize_t n = http_resp_parse(q->resp, data, len);
        if (n < 0) {
            hreq_fail(q, (int)n, "bad answer: %s", http_resp_error(q->resp));
            return n;
        }
        if (n == 0)
            return 0;
        if (http_resp_status(q->resp) < 200) { /* 100 Continue: the real one follows */
            http_resp_reset(q->resp, q->method);
            return n;
        }
        q->head_done = true;
        int rc = q->sink.head ? q->sink.head(q->sink.arg, q->resp) : 0;
        if (rc < 0) {
            hreq_fail(q, rc, "answer refused: %s", strerror(-rc));
            return rc;
        }
        ssize_t b = hreq_body(q, data + n, len - (size_t)n);
        return b < 0 ? b : n + b;
    }
    return hreq_body(q, data, len);
}

static void hreq_on_eof(conn_t *c)
{
    hreq_t *q = conn_udata(c);
    if (!q->complete && q->head_done && http_resp_eof(q->resp) == 0) {
        q->complete = true; /* a body delimited by the close */
        conn_close(c);
        return;
    }
    if (!q->complete)
        hreq_fail(q, -ECONNRESET, "%s",
                  q->head_done ? "the server closed in the middle of the body"
                               : "the server closed without answering");
}

static void hreq_on_close(conn_t *c, int reason)
{
    hreq_t *q = conn_udata(c);
    int status = q->head_done ? http_resp_status(q->resp) : 0;
    int err = q->complete ? 0 : q->err ? q->err : reason ? reason : -ECONNRESET;
    if (!q->complete && q->why[0] == '\0')
        snprintf(q->why, sizeof q->why, "connection: %s", conn_reason_str(reason));
    q->sink.done(q->sink.arg, err, status, q->complete ? "" : q->why);
    http_resp_free(q->resp);
    free(q);
}

static const struct conn_handlers hreq_handlers = {
    .on_data = hreq_on_data,
    .on_eof = hreq_on_eof,
    .on_close = hreq_on_close,
};

/* The request's head into buf. Its length, or -errno. */
static ssize_t hreq_head(const struct hreq_opts *o, char *buf, size_t cap)
{
    char host[XGET_HOST_MAX + 8];
    struct http_w w;
    http_w_init(&w, buf, cap);
    http_w_request(&w, o->method, o->target, xget_url_authority(o->url, host, sizeof host));
    uint64_t len = o->body_len + (o->body_fd >= 0 ? o->body_fd_len : 0);
    if (len || o->method == HTTP_POST || o->method == HTTP_PUT)
        http_w_headerf(&w, "Content-Length", "%llu", (unsigned long long)len);
    http_w_header(&w, "User-Agent", "convoy");
    http_w_header(&w, "Connection", "close");
    if (o->headers)
        http_w_raw(&w, o->headers, strlen(o->headers));
    return http_w_finish(&w);
}

static void hreq_sent(conn_t *c, void *arg, int err)
{
    (void)c, (void)arg, (void)err; /* a send that could not go ends in on_close */
}

int hreq_start(hreq_t **out, ring_t *r, const struct hreq_opts *o, const struct hreq_sink *s)
{
    char head[HEAD_MAX];
    ssize_t n = hreq_head(o, head, sizeof head);
    if (n < 0)
        return (int)n;
    hreq_t *q = calloc(1, sizeof *q);
    if (q == NULL)
        return -ENOMEM;
    q->sink = *s;
    q->method = o->method;
    int rc = http_resp_new(&q->resp, NULL);
    if (rc < 0) {
        free(q);
        return rc;
    }
    http_resp_reset(q->resp, o->method);
    struct conn_opts co = {.tls = o->url->tls ? o->tls : NULL,
                           .idle_ms = o->timeout_ms ? o->timeout_ms : HREQ_TIMEOUT_MS};
    rc = conn_connect(&q->c, r, &o->url->addr, &co, &hreq_handlers, q);
    if (rc < 0) {
        http_resp_free(q->resp);
        free(q);
        return rc;
    }
    /* From here on_close ends everything, also a send refused now. */
    if ((rc = conn_write(q->c, head, (size_t)n)) == 0 && o->body_len)
        rc = conn_send_buf(q->c, o->body, o->body_len, hreq_sent, q);
    if (rc == 0 && o->body_fd >= 0 && o->body_fd_len)
        rc = conn_send_file(q->c, o->body_fd, o->body_off, o->body_fd_len, hreq_sent, q);
    if (rc < 0)
        hreq_fail(q, rc, "send: %s", strerror(-rc));
    *out = q;
    return 0;
}

void hreq_cancel(hreq_t *q)
{
    if (!q->complete && q->err == 0)
        hreq_fail(q, -ECANCELED, "%s", "cancelled");
}
