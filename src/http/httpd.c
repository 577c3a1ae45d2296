/*
 * httpd — the HTTP/1.1 server on conn.
 *
 * The design is simple: a connection (struct hconn) reads one request at a
 * time through a small state machine (hc_state), and each request becomes
 * an exchange that owns its parser. The connection holds its current
 * exchange until the answer is queued and the body is read (or dropped);
 * the answerer holds it until it answers. Whichever lets go last frees it,
 * so an answer that comes after the connection died finds a valid exchange
 * that says "gone" (-EPIPE), and a connection that dies before the answer
 * leaves the exchange to its answerer.
 *
 * Reading stops (conn_pause) while an answer is pending, while the handler
 * holds back a body (httpd_pause), while the output is above conn's
 * high-water mark, and while a file answer is still being read into the
 * output (so that pipelined requests for files never hold more than one
 * open file per connection); conn keeps what was offered and re-offers it,
 * so pipelined requests wait in conn's input, bounded by in_max, and
 * answers leave in request order through conn's one queue.
 *
 * Timers: the header deadline is the connection's own ring timer (so that
 * it can answer 408 before closing); the idle timeout between requests is
 * conn's idle_ms.
 */
#include "convoy/httpd.h"
#include "convoy/log.h"
#include "convoy/text.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELDS_MAX  (8u * 1024) /* fields a handler may add to an answer */
#define HEAD_SLACK  512u        /* status line, Date, Content-Length, Connection */
#define BODY_INLINE (4u * 1024) /* a body this small goes out with its head, in one write */
#define CLOSE_MS    2000u       /* an error answer's deadline to leave */
#define CONTINUE    "HTTP/1.1 100 Continue\r\n\r\n"

enum hc_state {
    HC_IDLE,    /* between requests */
    HC_HEAD,    /* reading a request's head */
    HC_WAIT,    /* head read, waiting for the answer (or a body read) */
    HC_BODY,    /* delivering the body to the handler */
    HC_DISCARD, /* answered: dropping the rest of the body */
    HC_CLOSING, /* answered with Connection: close; input is dropped */
};

struct hconn;

struct httpd_xchg {
    struct hconn *hc;      /* NULL once the connection let go */
    http_req_t *q;         /* the request, owned */
    bool handed;           /* the handler has it */
    bool answered;         /* an httpd_reply* ran */
    bool close_after;      /* answer with Connection: close */
    bool file_pending;     /* a file reply's done has not run yet */
    char *fields;          /* handler's fields, FIELDS_MAX bytes, NULL until used */
    size_t fields_len;     /* bytes at fields */
    httpd_body_fn body_fn; /* body reader, or NULL */
    void *body_arg;
    bool body_paused; /* httpd_pause() */
    bool body_ended;  /* the body reader's last call ran */
    void (*file_done)(void *arg, int err);
    void *file_arg;
    bool body_deferred;           /* body_defer is queued */
    struct ring_defer body_defer; /* a body end that must not run in its caller */
    struct ring_defer file_defer; /* a HEAD's file done, likewise */
    ring_t *ring;
};

struct hconn {
    httpd_t *srv;
    conn_t *c;
    enum hc_state state;
    httpd_xchg_t *x; /* the current exchange, or NULL */
    struct ring_timer hdr_timer;
    bool paused;    /* conn_pause() is in effect */
    bool out_full;  /* the output went above the high-water mark */
    unsigned files; /* file answers whose last byte is not queued yet */
    bool eof;       /* the client finished sending */
    uint8_t *sink;  /* httpd_body_into()'s room, while conn fills it */
    struct hconn *prev, *next;
};

struct httpd {
    ring_t *ring;
    conn_listener_t *l;
    struct httpd_opts o; /* defaults filled in */
    httpd_handler_fn fn;
    void *arg;
    struct hconn *conns; /* open connections */
    unsigned nconns;
    bool stopping;              /* httpd_stop or _drain ran: freed with the last connection */
    void (*stopped)(void *arg); /* httpd_drain's done */
    void *stopped_arg;
    struct ring_defer stop_defer; /* done, when no connection was open */
};

static const char *hc_state_str(enum hc_state s)
{
    static const char *const names[] = {
        [HC_IDLE] = "idle", [HC_HEAD] = "head",       [HC_WAIT] = "wait",
        [HC_BODY] = "body", [HC_DISCARD] = "discard", [HC_CLOSING] = "closing",
    };
    return names[s];
}

/* ---- parsers and exchanges ---- */

static httpd_xchg_t *x_new(struct hconn *hc)
{
    httpd_xchg_t *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    if (http_req_new(&x->q, &hc->srv->o.lim) < 0) {
        free(x);
        return NULL;
    }
    x->hc = hc;
    x->ring = hc->srv->ring;
    return x;
}

/* Frees x once neither side holds it. */
static void x_release(httpd_xchg_t *x)
{
    if (x->hc || !x->answered || x->file_pending || x->body_deferred)
        return;
    http_req_free(x->q);
    free(x->fields);
    free(x);
}

/* ---- reading ---- */

static void hc_update_pause(struct hconn *hc)
{
    httpd_xchg_t *x = hc->x;
    bool want = hc->state != HC_CLOSING && (hc->out_full || hc->files > 0 || hc->state == HC_WAIT ||
                                            (hc->state == HC_BODY && x && x->body_paused));
    if (want && !hc->paused)
        conn_pause(hc->c);
    else if (!want && hc->paused)
        conn_resume(hc->c);
    hc->paused = want;
}

/* The body reader's last call, exactly once. */
static void body_end(httpd_xchg_t *x, int err)
{
    if (!x->body_fn || x->body_ended)
        return;
    x->body_ended = true;
    x->body_fn(x, x->body_arg, NULL, 0, err);
}

/* The connection lets go of its exchange and waits for the next request. */
static void hc_next(struct hconn *hc)
{
    httpd_xchg_t *x = hc->x;
    hc->x = NULL;
    if (x) {
        if (!x->handed)
            x->answered = true; /* nobody else will */
        x->hc = NULL;
        x_release(x);
    }
    hc->state = HC_IDLE;
}

/* The connection closes after what is queued; input is dropped. */
static void hc_closing(struct hconn *hc)
{
    hc_next(hc);
    hc->state = HC_CLOSING;
    ring_timer_stop(hc->srv->ring, &hc->hdr_timer);
    conn_close(hc->c);
}

/* Writes a whole answer head for x: status, the handler's fields, length
 * and connection fields. Returns its length or -EINVAL. */
static ssize_t build_head(httpd_xchg_t *x, char *buf, size_t cap, int status, const char *ctype,
                          uint64_t len, bool keep)
{
    struct http_w w;
    http_w_init(&w, buf, cap);
    http_w_status(&w, status);
    if (x->fields_len)
        http_w_raw(&w, x->fields, x->fields_len);
    if (ctype)
        http_w_header(&w, "Content-Type", ctype);
    if (status >= 200 && status != 204 && status != 304) {
        char digits[24];
        size_t n = 0;
        text_cat_u64(digits, sizeof digits, &n, len);
        http_w_header(&w, "Content-Length", digits);
    }
    if (!keep)
        http_w_header(&w, "Connection", "close");
    else if (http_req_minor(x->q) == 0)
        http_w_header(&w, "Connection", "keep-alive");
    ssize_t n = http_w_finish(&w);
    return n < 0 ? -EINVAL : n;
}

/* Answers a request that cannot be read (the parser refused it, its head
 * came too slowly, its body is malformed), and closes. */
static void hc_refuse(struct hconn *hc, int status)
{
    char buf[512];
    const char *reason = http_status_reason(status);
    size_t rlen = strlen(reason);
    struct http_w w;
    http_w_init(&w, buf, sizeof buf - rlen - 1);
    http_w_status(&w, status);
    http_w_header(&w, "Content-Type", "text/plain");
    http_w_headerf(&w, "Content-Length", "%zu", rlen + 1);
    http_w_header(&w, "Connection", "close");
    ssize_t n = http_w_finish(&w);
    if (n > 0) { /* the body, the reason phrase, in the room kept for it */
        memcpy(buf + n, reason, rlen);
        buf[(size_t)n + rlen] = '\n';
        conn_write(hc->c, buf, (size_t)n + rlen + 1);
    }
    if (log_enabled(LOG_DEBUG))
        log_debug("httpd", "event=refused peer=%s status=%d why=\"%s\"", conn_peer_addr(hc->c),
                  status, hc->x && *http_req_error(hc->x->q) ? http_req_error(hc->x->q) : reason);
    conn_set_deadline(hc->c, CLOSE_MS);
    hc_closing(hc);
}

static void hdr_timer_fired(struct ring_timer *t)
{
    struct hconn *hc = container_of(t, struct hconn, hdr_timer);
    if (hc->state == HC_HEAD)
        hc_refuse(hc, 408);
}

/* Reads a head from data; returns bytes used, 0 for more, -1 when refused. */
static ssize_t step_head(struct hconn *hc, const uint8_t *data, size_t len)
{
    httpd_t *s = hc->srv;
    if (!hc->x) {
        hc->x = x_new(hc);
        if (!hc->x) {
            hc_refuse(hc, 503);
            return -1;
        }
        hc->state = HC_HEAD;
        ring_timer_start(s->ring, &hc->hdr_timer, s->o.header_ms, hdr_timer_fired);
    }
    ssize_t n = http_req_parse(hc->x->q, data, len);
    if (n < 0)
        hc_refuse(hc, (int)-n);
    if (n <= 0)
        return n < 0 ? -1 : 0;
    ring_timer_stop(s->ring, &hc->hdr_timer);
    hc->state = HC_WAIT;
    httpd_xchg_t *x = hc->x;
    if (http_req_expects_continue(x->q) && !http_req_body_done(x->q))
        x->close_after = true; /* unless the handler reads the body */
    x->handed = true;
    s->fn(x, s->arg);
    return n;
}

/* Body bytes for the reader, or dropped after the answer. */
static ssize_t step_body(struct hconn *hc, const uint8_t *data, size_t len)
{
    httpd_xchg_t *x = hc->x;
    const uint8_t *piece;
    size_t plen;
    ssize_t n = http_req_body(x->q, data, len, &piece, &plen);
    if (n < 0 && hc->state == HC_DISCARD) {
        hc_closing(hc);
        return -1;
    }
    if (n < 0) {
        x->close_after = true; /* the framing is lost */
        body_end(x, n == -413 ? -EMSGSIZE : -EBADMSG);
        if (hc->x == x && !x->answered)
            hc_refuse(hc, (int)-n);
        return -1;
    }
    if (plen && hc->state == HC_BODY && !x->answered)
        x->body_fn(x, x->body_arg, piece, plen, 0);
    if (hc->x != x || !http_req_body_done(x->q))
        return n;
    if (hc->state == HC_DISCARD) {
        hc_next(hc);
    } else if (hc->state == HC_BODY) {
        body_end(x, 0);
        if (hc->x == x && hc->state == HC_BODY)
            hc->state = HC_WAIT;
    }
    return n;
}

/* One step of reading; bytes used, 0 when nothing more can be done now. */
static ssize_t hc_step(struct hconn *hc, const uint8_t *data, size_t len)
{
    switch (hc->state) {
    case HC_IDLE:
    case HC_HEAD:
        return len ? step_head(hc, data, len) : 0;
    case HC_BODY:
    case HC_DISCARD:
        return len ? step_body(hc, data, len) : 0;
    case HC_CLOSING:
        return (ssize_t)len;
    default:
        return 0;
    }
}

static ssize_t hc_data(conn_t *c, const uint8_t *data, size_t len)
{
    struct hconn *hc = conn_udata(c);
    size_t used = 0;
    for (;;) {
        hc_update_pause(hc);
        if (hc->paused)
            break;
        enum hc_state before = hc->state;
        ssize_t n = hc_step(hc, data + used, len - used);
        if (n < 0) {
            used = len;
            break;
        }
        used += (size_t)n;
        if (n == 0 && hc->state == before)
            break;
    }
    if (hc->eof && (hc->state == HC_IDLE || hc->state == HC_HEAD))
        hc_closing(hc); /* nothing more can come */
    return (ssize_t)used;
}

/* ---- answering ---- */

/* Whether the connection stays open after x's answer. */
static bool x_keep(const httpd_xchg_t *x)
{
    return http_req_keep_alive(x->q) && !x->close_after && !x->hc->eof && !x->hc->srv->stopping;
}

/* What every answer does once its bytes are queued (rc 0) or failed. The
 * connection lets go of x here unless it still has a body to drop. */
static void answered(httpd_xchg_t *x, int rc)
{
    struct hconn *hc = x->hc;
    x->answered = true;
    if (hc->sink) /* what it took is body dropped: the parser counts it */
        (void)http_req_body_took(x->q, conn_sink_stop(hc->c));
    hc->sink = NULL;
    if (rc < 0) {
        conn_abort(hc->c, rc);
        hc_closing(hc);
    } else if (!x_keep(x)) {
        hc_closing(hc);
    } else if (!http_req_body_done(x->q)) {
        hc->state = HC_DISCARD;
    } else {
        hc_next(hc);
    }
    if (conn_queued(hc->c) >= CONN_HIGH_WATER)
        hc->out_full = true;
    hc_update_pause(hc); /* x is freed by now unless the body or a file holds it */
}

/* Checks that x can be answered: 0, or the error after which x is gone. */
static int x_answerable(httpd_xchg_t *x)
{
    if (x->answered)
        return -EALREADY;
    if (!x->hc) {
        x->answered = true;
        x_release(x);
        return -EPIPE;
    }
    return 0;
}

/* The head of an answer of len bytes, then the blen bytes of body that go
 * out now (none for a file or HEAD). A small body is copied behind the
 * head: one write, so one TLS record and one send, not two. */
static int reply_head(httpd_xchg_t *x, int status, const char *ctype, uint64_t len,
                      const void *body, size_t blen)
{
    char buf[FIELDS_MAX + HEAD_SLACK + BODY_INLINE];
    bool keep = x_keep(x);
    ssize_t n = build_head(x, buf, FIELDS_MAX + HEAD_SLACK, status, ctype, len, keep);
    if (n < 0)
        return (int)n;
    if (!keep)
        x->close_after = true;
    if (blen <= BODY_INLINE) {
        if (blen > 0) /* body is NULL for none */
            memcpy(buf + n, body, blen);
        return conn_write(x->hc->c, buf, (size_t)n + blen);
    }
    int rc = conn_write(x->hc->c, buf, (size_t)n);
    return rc == 0 ? conn_write(x->hc->c, body, blen) : rc;
}

int httpd_reply(httpd_xchg_t *x, int status, const char *ctype, const void *body, size_t len)
{
    int rc = x_answerable(x);
    if (rc < 0)
        return rc;
    rc = reply_head(x, status, ctype, len, body, http_req_method(x->q) != HTTP_HEAD ? len : 0);
    answered(x, rc);
    return rc;
}

int httpd_reply_text(httpd_xchg_t *x, int status, const char *msg)
{
    char body[1024];
    size_t len = 0;
    text_cat(body, sizeof body, &len, msg ? msg : http_status_reason(status));
    text_cat(body, sizeof body, &len, "\n"); /* cut as snprintf("%s\n") was */
    return httpd_reply(x, status, "text/plain; charset=utf-8", body, len);
}

static void file_sent(conn_t *c, void *arg, int err)
{
    httpd_xchg_t *x = arg;
    if (c) { /* the connection may read the next request */
        struct hconn *hc = conn_udata(c);
        hc->files--;
        hc_update_pause(hc);
    }
    x->file_pending = false;
    x->file_done(x->file_arg, err);
    x_release(x);
}

static void head_file_done(struct ring_defer *d)
{
    file_sent(NULL, container_of(d, httpd_xchg_t, file_defer), 0);
}

int httpd_reply_file(httpd_xchg_t *x, int status, int fd, uint64_t off, uint64_t len,
                     void (*done)(void *arg, int err), void *arg)
{
    int rc = x_answerable(x);
    if (rc < 0)
        return rc;
    rc = reply_head(x, status, NULL, len, NULL, 0);
    x->file_done = done;
    x->file_arg = arg;
    if (rc == 0 && len && http_req_method(x->q) != HTTP_HEAD) {
        rc = conn_send_file(x->hc->c, fd, off, len, file_sent, x);
        x->hc->files += rc == 0;
    } else if (rc == 0) {
        ring_defer(x->ring, &x->file_defer, head_file_done);
    }
    x->file_pending = rc == 0;
    answered(x, rc);
    return rc;
}

/* A writer after the handler's fields so far: 0, -EALREADY or -ENOMEM. */
static int fields_open(httpd_xchg_t *x, struct http_w *w)
{
    if (x->answered)
        return -EALREADY;
    if (!x->fields && !(x->fields = malloc(FIELDS_MAX)))
        return -ENOMEM;
    http_w_init(w, x->fields, FIELDS_MAX);
    w->len = x->fields_len;
    return 0;
}

/* Keeps the field w wrote, in place; on error the fields so far stay. */
static int fields_close(httpd_xchg_t *x, const struct http_w *w)
{
    if (w->err)
        return w->err;
    x->fields_len = w->len;
    return 0;
}

int httpd_header(httpd_xchg_t *x, const char *name, const char *fmt, ...)
{
    struct http_w w;
    int rc = fields_open(x, &w);
    if (rc < 0)
        return rc;
    va_list ap;
    va_start(ap, fmt);
    http_w_vheaderf(&w, name, fmt, ap);
    va_end(ap);
    return fields_close(x, &w);
}

int httpd_header_str(httpd_xchg_t *x, const char *name, const char *value)
{
    struct http_w w;
    int rc = fields_open(x, &w);
    if (rc < 0)
        return rc;
    http_w_header(&w, name, value);
    return fields_close(x, &w);
}

void httpd_close_after(httpd_xchg_t *x)
{
    x->close_after = true;
}

const http_req_t *httpd_req(const httpd_xchg_t *x)
{
    return x->q;
}

conn_t *httpd_conn(const httpd_xchg_t *x)
{
    return x->hc ? x->hc->c : NULL;
}

bool httpd_alive(const httpd_xchg_t *x)
{
    return x->hc != NULL && x->hc->state != HC_CLOSING;
}

/* ---- request bodies ---- */

static void body_end_deferred(struct ring_defer *d)
{
    httpd_xchg_t *x = container_of(d, httpd_xchg_t, body_defer);
    x->body_deferred = false;
    if (!x->answered)
        body_end(x, x->hc ? 0 : -EPIPE);
    x_release(x);
}

int httpd_read_body(httpd_xchg_t *x, httpd_body_fn fn, void *arg)
{
    if (x->body_fn || x->answered)
        return -EALREADY;
    x->body_fn = fn;
    x->body_arg = arg;
    struct hconn *hc = x->hc;
    if (!hc || http_req_body_done(x->q)) {
        /* nothing to wait for: the last call, from the loop */
        x->body_deferred = true;
        ring_defer(x->ring, &x->body_defer, body_end_deferred);
        return 0;
    }
    if (http_req_expects_continue(x->q)) {
        x->close_after = false;
        conn_write(hc->c, CONTINUE, sizeof CONTINUE - 1);
    }
    hc->state = HC_BODY;
    hc_update_pause(hc);
    return 0;
}

/* The handler's room is full (or the stream ended: on_eof or on_close
 * tells the handler): the bytes are a run of payload, one piece. */
static void hc_sink_done(conn_t *c, void *arg, size_t got, int err)
{
    struct hconn *hc = arg;
    uint8_t *dst = hc->sink;
    (void)c;
    hc->sink = NULL;
    if (err < 0 || hc->state != HC_BODY)
        return;
    step_body(hc, dst, got);
    hc_update_pause(hc);
}

int httpd_body_into(httpd_xchg_t *x, void *dst, size_t len)
{
    struct hconn *hc = x->hc;
    if (hc == NULL || hc->state != HC_BODY || x->answered || hc->sink)
        return -EALREADY;
    uint64_t run = http_req_body_run(x->q);
    if (run == 0 || len == 0)
        return -EAGAIN; /* framing next: it comes to the reader in pieces */
    int rc = conn_sink(hc->c, dst, run < len ? (size_t)run : len, hc_sink_done, hc);
    if (rc == 0)
        hc->sink = dst;
    return rc;
}

void httpd_pause(httpd_xchg_t *x)
{
    x->body_paused = true;
    if (x->hc)
        hc_update_pause(x->hc);
}

void httpd_resume(httpd_xchg_t *x)
{
    x->body_paused = false;
    if (x->hc)
        hc_update_pause(x->hc);
}

/* ---- connections ---- */

static void hc_accept(conn_t *c, void *arg)
{
    httpd_t *s = arg;
    struct hconn *hc = calloc(1, sizeof *hc);
    if (!hc) {
        conn_abort(c, -ENOMEM);
        return;
    }
    hc->srv = s;
    hc->c = c;
    hc->next = s->conns;
    if (s->conns)
        s->conns->prev = hc;
    s->conns = hc;
    s->nconns++;
    conn_set_udata(c, hc);
}

static void hc_drain(conn_t *c)
{
    struct hconn *hc = conn_udata(c);
    hc->out_full = false;
    hc_update_pause(hc);
}

static void hc_eof(conn_t *c)
{
    struct hconn *hc = conn_udata(c);
    hc->eof = true;
    if (hc->state == HC_IDLE || hc->state == HC_HEAD || hc->state == HC_DISCARD) {
        hc_closing(hc); /* nothing asked, or what was asked cannot end now */
    } else if (hc->state == HC_BODY) {
        hc->state = HC_WAIT; /* the body is cut: the handler still answers */
        body_end(hc->x, -EPIPE);
    }
}

/* Frees a stopped server, then tells whoever drained it. */
static void srv_free(httpd_t *s)
{
    void (*done)(void *) = s->stopped;
    void *arg = s->stopped_arg;
    free(s);
    if (done)
        done(arg);
}

static void hc_closed(conn_t *c, int reason)
{
    struct hconn *hc = conn_udata(c);
    if (!hc)
        return;
    httpd_t *s = hc->srv;
    ring_timer_stop(s->ring, &hc->hdr_timer);
    if (log_enabled(LOG_DEBUG))
        log_debug("httpd", "event=close state=%s reason=\"%s\"", hc_state_str(hc->state),
                  conn_reason_str(reason));
    httpd_xchg_t *x = hc->x;
    if (x && hc->state == HC_BODY && !x->body_ended) {
        /* the body reader hears of it from the loop, as the connection is gone */
        x->body_deferred = true;
        ring_defer(x->ring, &x->body_defer, body_end_deferred);
    }
    hc_next(hc);
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        s->conns = hc->next;
    if (hc->next)
        hc->next->prev = hc->prev;
    s->nconns--;
    free(hc);
    if (s->stopping && s->nconns == 0)
        srv_free(s);
}

static const struct conn_handlers hc_handlers = {
    .on_data = hc_data,
    .on_drain = hc_drain,
    .on_eof = hc_eof,
    .on_close = hc_closed,
};

int httpd_listen(httpd_t **out, ring_t *r, const struct net_addr *addr, const struct httpd_opts *o,
                 httpd_handler_fn fn, void *arg)
{
    httpd_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->ring = r;
    s->fn = fn;
    s->arg = arg;
    if (o)
        s->o = *o;
    s->o.header_ms = s->o.header_ms ? s->o.header_ms : HTTPD_HEADER_MS;
    s->o.idle_ms = s->o.idle_ms ? s->o.idle_ms : HTTPD_IDLE_MS;
    uint32_t head =
        s->o.lim.head_max && s->o.lim.head_max < HTTP_HEAD_MAX ? s->o.lim.head_max : HTTP_HEAD_MAX;
    struct conn_opts co = {
        .tls = s->o.tls,
        .expect_role = s->o.expect_role,
        .idle_ms = s->o.idle_ms,
        .in_max = head + HTTP_LINE_MAX + 2 * RING_RECV_BUF,
        .max_conns = s->o.max_conns,
    };
    int rc = conn_listen(&s->l, r, addr, &co, &hc_handlers, hc_accept, s);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

const struct net_addr *httpd_addr(const httpd_t *s)
{
    return conn_listener_addr(s->l);
}

unsigned httpd_conns(const httpd_t *s)
{
    return s->nconns;
}

void httpd_stop(httpd_t *s)
{
    conn_listener_close(s->l);
    s->l = NULL;
    s->stopping = true;
    for (struct hconn *hc = s->conns; hc; hc = hc->next)
        conn_abort(hc->c, -ESHUTDOWN);
    if (s->nconns == 0)
        free(s);
}

static void drained_empty(struct ring_defer *d)
{
    srv_free(container_of(d, httpd_t, stop_defer));
}

void httpd_drain(httpd_t *s, uint32_t grace_ms, void (*done)(void *arg), void *arg)
{
    conn_listener_close(s->l);
    s->l = NULL;
    s->stopping = true; /* every answer from now on says Connection: close */
    s->stopped = done;
    s->stopped_arg = arg;
    for (struct hconn *hc = s->conns, *next; hc; hc = next) {
        next = hc->next;
        conn_set_deadline(hc->c, grace_ms ? grace_ms : 1);
        if (hc->state == HC_IDLE) /* a file answer may still be streaming: close sends it */
            hc_closing(hc);
    }
    if (s->nconns == 0)
        ring_defer(s->ring, &s->stop_defer, drained_empty);
}
