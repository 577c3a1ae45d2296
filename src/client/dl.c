/*
 * dl — one download as a state machine on conn (see include/convoy/dl.h).
 *
 * A download is always in one phase: ASK (a request to the balancer),
 * FETCH (a leg on a file server), WAIT (a timer before asking again) or
 * END. Each request has a connection of its own, closed once its answer
 * is read; what comes next is decided while the answer is read and stored
 * in `next`, and on_close carries it out, so that every path (an answer, a
 * break, a stall, a cancel) goes through the one place where the
 * connection is known to be gone. A close with no `next` set is a failure
 * of the phase: a leg that broke is resumed, a balancer that could not be
 * reached is tried again with a backoff.
 */
#include "convoy/dl.h"

#include "convoy/conn.h"
#include "convoy/http.h"
#include "convoy/log.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DL_ASK_TRIES    4     /* connection failures toward the balancer, per ask */
#define DL_BACKOFF_MS   200u  /* first wait after one, doubled each time */
#define DL_RETRY_MAX_MS 5000u /* longest Retry-After waited */
#define DL_HEAD_MS      10000u
#define DL_REQ_MAX      (XGET_PATH_MAX * 2 + 2048)
#define DL_ID_MAX       128
#define DL_WHY_MAX      512

enum dl_phase { DL_ASK, DL_FETCH, DL_WAIT, DL_END };

/* What on_close does once the current request's connection is gone. */
enum dl_next {
    DL_NEXT_NONE,  /* the phase failed: resume or retry */
    DL_NEXT_FETCH, /* a redirect was read: fetch from d->fs */
    DL_NEXT_ASK,   /* ask the balancer again (after a wait, or afresh) */
    DL_NEXT_END,   /* done: d->code and d->why say how */
};

struct dl {
    ring_t *ring;
    struct dl_opts o;
    struct dl_sink sink;
    char path_q[XGET_PATH_MAX]; /* the quoted path */
    char auth[XGET_AUTH_MAX];   /* Authorization value, "" for none */
    enum dl_phase phase;
    enum dl_next next;
    conn_t *c;
    http_resp_t *resp;
    bool head_done;
    bool taking;              /* the body goes to the sink */
    bool gone;                /* we closed or aborted the connection: ignore the rest */
    bool paused;              /* pacing holds the connection */
    struct xget_url fs;       /* the current leg's URL */
    char transfer[DL_ID_MAX]; /* X-Convoy-Transfer */
    char server[64];          /* the current leg's server */
    unsigned legs, asks_503, ask_fails;
    bool renewed;       /* a resume was refused once and a new transfer asked for */
    uint32_t wait_ms;   /* before the next ask */
    struct xget_meta m; /* the representation, once a leg answered */
    bool have_m;        /* m is known (a leg answered, or a part to resume) */
    uint64_t off;       /* bytes held: kept plus fetched */
    uint64_t fetched;   /* bytes fetched in this run */
    xget_hash_t *h;
    struct xget_pace pace;
    struct ring_timer stall, wait, pace_t;
    struct ring_defer end_d;
    int code;
    char why[DL_WHY_MAX]; /* the end's reason, or the last leg's failure */
};

static void dl_ask(dl_t *d);
static void dl_fetch(dl_t *d);

/* Who a failure is about, for its message: the leg's server, or "" for
 * the balancer (whose address the final message adds). */
static const char *dl_who(const dl_t *d)
{
    return d->phase == DL_FETCH ? d->server : "";
}

/* Drops the current connection; on_close then does what d->next says. */
static void dl_drop(dl_t *d, int reason)
{
    d->gone = true;
    conn_abort(d->c, reason);
}

/* ---- ending ---- */

static void dl_end_run(struct ring_defer *df)
{
    dl_t *d = container_of(df, dl_t, end_d);
    ring_timer_stop(d->ring, &d->stall);
    ring_timer_stop(d->ring, &d->wait);
    ring_timer_stop(d->ring, &d->pace_t);
    d->sink.done(d->sink.arg, d->code, d->code == XGET_OK ? "" : d->why);
    http_resp_free(d->resp);
    xget_hash_free(d->h);
    free(d);
}

/* Ends with code; the reason is formatted like printf. The end runs once
 * the connection (if any) has closed. */
static void dl_end(dl_t *d, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void dl_end(dl_t *d, int code, const char *fmt, ...)
{
    if (d->phase == DL_END)
        return;
    char why[DL_WHY_MAX]; /* the arguments may be d->why itself */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    memcpy(d->why, why, sizeof why);
    d->code = code;
    d->phase = DL_END;
    d->next = DL_NEXT_END;
    ring_timer_stop(d->ring, &d->wait);
    if (d->c != NULL && code == XGET_OK) { /* the answer is whole: a clean close */
        d->gone = true;
        conn_close(d->c);
    } else if (d->c != NULL) {
        dl_drop(d, -ECANCELED);
    } else {
        ring_defer(d->ring, &d->end_d, dl_end_run);
    }
}

void dl_cancel(dl_t *d, int code, const char *why)
{
    dl_end(d, code, "%s", why);
}

/* ---- timers ---- */

static void dl_stall_fired(struct ring_timer *t)
{
    dl_t *d = container_of(t, dl_t, stall);
    snprintf(d->why, sizeof d->why, "%s%sno byte for %u ms", dl_who(d), *dl_who(d) ? ": " : "",
             d->o.stall_ms);
    if (d->c != NULL)
        dl_drop(d, -ETIMEDOUT);
}

static void dl_touch(dl_t *d)
{
    if (!d->paused)
        ring_timer_start(d->ring, &d->stall, d->o.stall_ms, dl_stall_fired);
}

static void dl_pace_fired(struct ring_timer *t)
{
    dl_t *d = container_of(t, dl_t, pace_t);
    d->paused = false;
    if (d->c != NULL) {
        conn_resume(d->c);
        dl_touch(d);
    }
}

/* Holds the connection while the reader is ahead of --limit-rate; held
 * says it left bytes for later, which come again only on resume. */
static void dl_pace(dl_t *d, bool held)
{
    uint64_t ms = xget_pace_wait(&d->pace, ring_now_ms(), d->off);
    if (ms == 0 && held)
        ms = 1;
    if (ms == 0 || d->c == NULL)
        return;
    conn_pause(d->c);
    d->paused = true;
    ring_timer_stop(d->ring, &d->stall);
    ring_timer_start(d->ring, &d->pace_t, ms, dl_pace_fired);
}

static void dl_wait_fired(struct ring_timer *t)
{
    dl_ask(container_of(t, dl_t, wait));
}

/* ---- answers from the balancer ---- */

/* A header copied into buf with control characters refused: 0, -ENOENT
 * when absent, -EINVAL when it does not fit or is not printable. */
static int dl_header(const dl_t *d, const char *name, char *buf, size_t cap)
{
    size_t len;
    const char *v = http_resp_header(d->resp, name, &len);
    if (v == NULL)
        return -ENOENT;
    if (len == 0 || len >= cap)
        return -EINVAL;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)v[i] < 0x21 || v[i] == 0x7f)
            return -EINVAL;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return 0;
}

/* The server's name from X-Convoy-Decision's "server=NAME", else the
 * Location's HOST:PORT. */
static void dl_server_name(dl_t *d)
{
    const char *v = http_resp_header(d->resp, "X-Convoy-Decision", NULL);
    const char *s = v != NULL ? strstr(v, "server=") : NULL;
    if (s != NULL && (s == v || s[-1] == ' ')) {
        s += 7;
        size_t n = 0;
        while (n + 1 < sizeof d->server && (isalnum((unsigned char)s[n]) || strchr("._-:", s[n])))
            n++;
        if (n > 0) {
            memcpy(d->server, s, n);
            d->server[n] = '\0';
            return;
        }
    }
    xget_url_authority(&d->fs, d->server, sizeof d->server);
}

static void dl_redirect(dl_t *d)
{
    char loc[XGET_PATH_MAX + XGET_HOST_MAX + 16], err[160], id[DL_ID_MAX];
    int rc = dl_header(d, "Location", loc, sizeof loc);
    if (rc == 0 && loc[0] == '/') { /* relative: on the balancer itself */
        char abs[sizeof loc + XGET_HOST_MAX + 16], hp[XGET_HOST_MAX + 8];
        snprintf(abs, sizeof abs, "%s://%s%s", d->o.balancer->tls ? "https" : "http",
                 xget_url_authority(d->o.balancer, hp, sizeof hp), loc);
        rc = xget_url_parse(abs, &d->fs, err, sizeof err);
    } else if (rc == 0) {
        rc = xget_url_parse(loc, &d->fs, err, sizeof err);
    } else {
        snprintf(err, sizeof err, "%s", rc == -ENOENT ? "no Location" : "bad Location");
    }
    if (rc == 0 && d->fs.tls && d->o.tls == NULL)
        rc = -EINVAL, snprintf(err, sizeof err, "redirect to https without --cacert");
    if (rc != 0) {
        dl_end(d, XGET_ENET, "balancer: redirect: %s", err);
        return;
    }
    if (dl_header(d, "X-Convoy-Transfer", id, sizeof id) == 0)
        memcpy(d->transfer, id, sizeof id);
    dl_server_name(d);
    d->next = DL_NEXT_FETCH;
}

/* Retry-After in seconds (RFC 9110 §10.2.3; a date is taken as 1 s),
 * capped at DL_RETRY_MAX_MS. */
static uint32_t dl_retry_after(const dl_t *d)
{
    const char *v = http_resp_header(d->resp, "Retry-After", NULL);
    unsigned long s = v != NULL && isdigit((unsigned char)*v) ? strtoul(v, NULL, 10) : 1;
    return s * 1000 > DL_RETRY_MAX_MS ? DL_RETRY_MAX_MS : (uint32_t)(s ? s * 1000 : 100);
}

static void dl_ask_head(dl_t *d)
{
    int st = http_resp_status(d->resp);
    if (st == 301 || st == 302 || st == 303 || st == 307 || st == 308) {
        dl_redirect(d);
    } else if (st == 503 && d->asks_503 < d->o.retries_503) {
        d->asks_503++;
        d->wait_ms = dl_retry_after(d);
        d->next = DL_NEXT_ASK;
    } else if (st == 409 && d->transfer[0] != '\0' && !d->renewed) {
        /* The transfer cannot be resumed: its server counted it done when
         * its last bytes were queued, and they were lost with the
         * connection. A new transfer goes on from the byte held (If-Range
         * keeps it to the same version). */
        log_info("dl", "event=resume_refused transfer=%s at=%" PRIu64, d->transfer, d->off);
        d->transfer[0] = '\0';
        d->renewed = true;
        d->wait_ms = 0;
        d->next = DL_NEXT_ASK;
    } else {
        int code = xget_exit_for_status(st);
        dl_end(d, code == XGET_OK ? XGET_ENET : code, "balancer: %d %s", st,
               http_status_reason(st));
    }
}

/* ---- answers from a file server ---- */

/* Content-Range "bytes FIRST-LAST/SIZE": 0 when FIRST is off and LAST is
 * SIZE - 1 (the rest of the file), *size set. */
static int dl_content_range(const dl_t *d, uint64_t off, uint64_t *size)
{
    char *p, *end;
    const char *cr = http_resp_header(d->resp, "Content-Range", NULL);
    if (cr == NULL || strncmp(cr, "bytes ", 6) != 0 || !isdigit((unsigned char)cr[6]))
        return -EPROTO;
    uint64_t first = strtoull(cr + 6, &p, 10);
    if (*p != '-' || !isdigit((unsigned char)p[1]))
        return -EPROTO;
    uint64_t last = strtoull(p + 1, &p, 10);
    if (*p != '/' || !isdigit((unsigned char)p[1]))
        return -EPROTO;
    *size = strtoull(p + 1, &end, 10);
    if (*end != '\0' || first != off || last + 1 != *size)
        return -EPROTO;
    return 0;
}

/* The representation this leg offers: ETag, size and digest. */
static int dl_leg_meta(dl_t *d, int st, struct xget_meta *m)
{
    size_t len;
    memset(m, 0, sizeof *m);
    if (dl_header(d, "ETag", m->etag, sizeof m->etag) == -EINVAL) {
        dl_end(d, XGET_ENET, "%s: bad ETag", d->server);
        return -1;
    }
    const char *rd = http_resp_header(d->resp, "Repr-Digest", &len);
    if (rd == NULL || xget_digest_parse(rd, len, m->digest) != 0) {
        dl_end(d, XGET_EINTEGRITY, "%s: %s Repr-Digest sha-256", d->server,
               rd == NULL ? "no" : "bad");
        return -1;
    }
    if (st == 206 && dl_content_range(d, d->off, &m->size) != 0) {
        dl_end(d, XGET_ENET, "%s: 206 without Content-Range bytes %" PRIu64 "-…", d->server,
               d->off);
        return -1;
    }
    int64_t cl = http_resp_content_length(d->resp);
    if (st == 200)
        m->size = cl >= 0 ? (uint64_t)cl : 0;
    return 0;
}

/* The sink keeps keep bytes of m; the hash starts over with them. */
static int dl_open(dl_t *d, uint64_t keep)
{
    xget_hash_free(d->h);
    d->h = NULL;
    int rc = xget_hash_new(&d->h);
    if (rc == 0 && d->sink.open != NULL)
        rc = d->sink.open(d->sink.arg, &d->m, keep, d->h);
    if (rc != 0) {
        dl_end(d, XGET_EFAIL, "open output: %s", strerror(-rc));
        return -1;
    }
    d->off = keep;
    xget_pace_start(&d->pace, d->o.rate, ring_now_ms(), keep);
    return 0;
}

static bool dl_same(const struct xget_meta *a, const struct xget_meta *b)
{
    return strcmp(a->etag, b->etag) == 0 && a->size == b->size &&
           memcmp(a->digest, b->digest, 32) == 0;
}

/* A leg answered 200 or 206: the bytes continue where they should, of the
 * same representation, or the download starts again or fails. */
static void dl_fetch_body_head(dl_t *d, int st)
{
    struct xget_meta m;
    if (dl_leg_meta(d, st, &m) != 0)
        return;
    bool resumed = st == 206 && d->off > 0;
    if (d->have_m && !dl_same(&m, &d->m)) {
        if (d->fetched > 0) { /* a resume must be the same version (the balancer promises it) */
            dl_end(d, XGET_EINTEGRITY, "%s: representation changed (ETag %s, was %s)", d->server,
                   m.etag, d->m.etag);
            return;
        }
        /* only an earlier run's part: that file changed since; start it over */
        d->have_m = false;
        d->off = 0;
        d->transfer[0] = '\0';
        d->next = DL_NEXT_ASK;
        d->wait_ms = 0;
        dl_drop(d, -ECANCELED);
        return;
    }
    d->m = m;
    d->have_m = true;
    if (dl_open(d, resumed ? d->off : 0) != 0)
        return;
    d->taking = true;
    if (d->sink.progress != NULL)
        d->sink.progress(d->sink.arg, d->server, d->off, d->m.size);
}

static void dl_fetch_head(dl_t *d)
{
    int st = http_resp_status(d->resp);
    if (st == 200 || st == 206) {
        dl_fetch_body_head(d, st);
        return;
    }
    /* 403 (expired ticket), 404 (the server lost the file), 5xx: another leg */
    snprintf(d->why, sizeof d->why, "%s: %d %s", d->server, st, http_status_reason(st));
    dl_drop(d, -EPROTO);
}

static void dl_piece(dl_t *d, const uint8_t *p, size_t len)
{
    if (!d->taking || len == 0)
        return;
    if (d->m.size != 0 && len > d->m.size - d->off) {
        dl_end(d, XGET_EINTEGRITY, "%s: more bytes than the file's %" PRIu64, d->server, d->m.size);
        return;
    }
    int rc = d->sink.write != NULL ? d->sink.write(d->sink.arg, d->off, p, len) : 0;
    if (rc != 0) {
        dl_end(d, XGET_EFAIL, "write output: %s", strerror(-rc));
        return;
    }
    xget_hash_update(d->h, p, len);
    d->off += len;
    d->fetched += len;
    if (d->sink.progress != NULL)
        d->sink.progress(d->sink.arg, d->server, d->off, d->m.size);
}

/* The whole answer is read. */
static void dl_answer_end(dl_t *d)
{
    if (d->phase == DL_END)
        return;
    if (d->phase == DL_ASK) {
        if (d->next == DL_NEXT_NONE)
            d->next = DL_NEXT_ASK;
        d->gone = true;
        conn_close(d->c);
        return;
    }
    if (d->m.size != 0 && d->off != d->m.size) {
        snprintf(d->why, sizeof d->why, "%s: body ended at %" PRIu64 " of %" PRIu64, d->server,
                 d->off, d->m.size);
        dl_drop(d, -EPROTO);
        return;
    }
    if (!xget_hash_check(d->h, d->m.digest))
        dl_end(d, XGET_EINTEGRITY, "digest mismatch: the file is not what %s announced", d->server);
    else
        dl_end(d, XGET_OK, "ok");
}

/* ---- the connection ---- */

static void dl_on_open(conn_t *c)
{
    dl_touch(conn_udata(c));
}

/* The head is complete: decide what the body is for. */
static void dl_on_head(dl_t *d)
{
    if (d->phase == DL_ASK)
        dl_ask_head(d);
    else
        dl_fetch_head(d);
}

static ssize_t dl_on_data(conn_t *c, const uint8_t *data, size_t len)
{
    dl_t *d = conn_udata(c);
    size_t used = 0;
    if (d->gone)
        return (ssize_t)len;
    dl_touch(d);
    if (!d->head_done) {
        ssize_t n = http_resp_parse(d->resp, data, len);
        if (n <= 0) {
            if (n < 0)
                snprintf(d->why, sizeof d->why, "%s%sbad answer: %s", dl_who(d),
                         *dl_who(d) ? ": " : "", http_resp_error(d->resp));
            return n < 0 ? -EPROTO : 0;
        }
        used = (size_t)n;
        if (http_resp_status(d->resp) < 200) { /* 100 Continue and the like */
            http_resp_reset(d->resp, HTTP_GET);
            return n;
        }
        d->head_done = true;
        dl_on_head(d);
    }
    size_t end = len; /* what the pace lets this call take */
    if (d->taking) {
        uint64_t allow = xget_pace_allow(&d->pace, ring_now_ms(), d->off);
        if (allow < len - used)
            end = used + (size_t)allow;
    }
    bool paced = end < len;
    /* unpaced, the body is offered even with no bytes left, as ever */
    while (!d->gone && !http_resp_body_done(d->resp) && (used < end || !paced)) {
        const uint8_t *piece;
        size_t plen;
        ssize_t n = http_resp_body(d->resp, data + used, end - used, &piece, &plen);
        if (n < 0) {
            snprintf(d->why, sizeof d->why, "%s%sbad body: %s", dl_who(d), *dl_who(d) ? ": " : "",
                     http_resp_error(d->resp));
            return -EPROTO;
        }
        used += (size_t)n;
        dl_piece(d, piece, plen);
        if (n == 0)
            break;
    }
    if (d->gone)
        return (ssize_t)len;
    if (http_resp_body_done(d->resp)) {
        dl_answer_end(d);
        return (ssize_t)len; /* what follows an answer is not ours: the connection closes */
    }
    if (d->taking)
        dl_pace(d, paced);
    return (ssize_t)used; /* a piece of framing not yet whole comes again with what follows */
}

static void dl_on_eof(conn_t *c)
{
    dl_t *d = conn_udata(c);
    if (d->gone)
        return;
    if (d->head_done && http_resp_eof(d->resp) == 0) {
        dl_answer_end(d);
        return;
    }
    if (d->why[0] == '\0')
        snprintf(d->why, sizeof d->why, "%s%sclosed mid-answer", dl_who(d), *dl_who(d) ? ": " : "");
    dl_drop(d, -ECONNRESET);
}

/* The phase failed: a leg is resumed elsewhere, an ask is retried. */
static void dl_failed(dl_t *d, int reason)
{
    if (d->why[0] == '\0')
        snprintf(d->why, sizeof d->why, "%s%s%s", dl_who(d), *dl_who(d) ? ": " : "",
                 conn_reason_str(reason));
    log_debug("dl", "event=leg_failed transfer=%s server=%s at=%" PRIu64 " why=\"%s\"", d->transfer,
              d->phase == DL_FETCH ? d->server : "balancer", d->off, d->why);
    if (d->phase == DL_FETCH) {
        if (++d->legs >= d->o.legs_max) {
            dl_end(d, XGET_ENET, "gave up after %u legs: %s", d->legs, d->why);
            return;
        }
        d->ask_fails = 0;
        d->wait_ms = 0;
    } else if (++d->ask_fails >= DL_ASK_TRIES) {
        char hp[XGET_HOST_MAX + 8];
        dl_end(d, XGET_ENET, "balancer %s: %s", xget_url_authority(d->o.balancer, hp, sizeof hp),
               d->why);
        return;
    } else {
        d->wait_ms = DL_BACKOFF_MS << (d->ask_fails - 1);
    }
    d->phase = DL_WAIT;
    ring_timer_start(d->ring, &d->wait, d->wait_ms, dl_wait_fired);
}

static void dl_on_close(conn_t *c, int reason)
{
    dl_t *d = conn_udata(c);
    d->c = NULL;
    d->paused = false;
    ring_timer_stop(d->ring, &d->stall);
    ring_timer_stop(d->ring, &d->pace_t);
    enum dl_next next = d->next;
    d->next = DL_NEXT_NONE;
    switch (next) {
    case DL_NEXT_END:
        ring_defer(d->ring, &d->end_d, dl_end_run);
        return;
    case DL_NEXT_FETCH:
        dl_fetch(d);
        return;
    case DL_NEXT_ASK:
        d->phase = DL_WAIT;
        ring_timer_start(d->ring, &d->wait, d->wait_ms, dl_wait_fired);
        return;
    case DL_NEXT_NONE:
        dl_failed(d, reason);
        return;
    }
}

static const struct conn_handlers dl_handlers = {
    .on_open = dl_on_open,
    .on_data = dl_on_data,
    .on_eof = dl_on_eof,
    .on_close = dl_on_close,
};

/* Sends one GET for target to u (with extra header lines). */
static int dl_request(dl_t *d, const struct xget_url *u, const char *target, const char *extra)
{
    char req[DL_REQ_MAX], hp[XGET_HOST_MAX + 8];
    struct http_w w;
    http_w_init(&w, req, sizeof req);
    http_w_request(&w, HTTP_GET, target, xget_url_authority(u, hp, sizeof hp));
    http_w_header(&w, "User-Agent", "convoy");
    http_w_header(&w, "Connection", "close");
    if (extra[0] != '\0')
        http_w_raw(&w, extra, strlen(extra));
    ssize_t n = http_w_finish(&w);
    if (n < 0)
        return (int)n;
    http_resp_reset(d->resp, HTTP_GET);
    d->head_done = d->taking = d->gone = false;
    d->why[0] = '\0';
    struct conn_opts co = {.tls = u->tls ? d->o.tls : NULL, .handshake_ms = DL_HEAD_MS};
    int rc = conn_connect(&d->c, d->ring, &u->addr, &co, &dl_handlers, d);
    if (rc != 0)
        return rc;
    dl_touch(d);
    return conn_write(d->c, req, (size_t)n);
}

/* Starts a request, or fails the phase with its reason. */
static void dl_send(dl_t *d, const struct xget_url *u, const char *target, const char *extra)
{
    int rc = dl_request(d, u, target, extra);
    if (rc == 0)
        return;
    snprintf(d->why, sizeof d->why, "request: %s", strerror(-rc));
    if (d->c != NULL)
        conn_abort(d->c, rc); /* on_close fails the phase */
    else
        dl_failed(d, rc);
}

static void dl_ask(dl_t *d)
{
    char target[XGET_PATH_MAX + 2 * DL_ID_MAX * 3 + 64], idq[DL_ID_MAX * 3], srvq[64 * 3];
    char extra[sizeof d->auth + 32] = "";
    d->phase = DL_ASK;
    int n = snprintf(target, sizeof target, "/f/%s", d->path_q);
    if (d->transfer[0] != '\0' && xget_path_quote(d->transfer, idq, sizeof idq) >= 0 &&
        xget_path_quote(d->server, srvq, sizeof srvq) >= 0)
        n = snprintf(target, sizeof target, "/f/%s?resume=%s&failed=%s", d->path_q, idq, srvq);
    if (n < 0 || (size_t)n >= sizeof target) {
        dl_end(d, XGET_EUSAGE, "path too long");
        return;
    }
    if (d->auth[0] != '\0')
        snprintf(extra, sizeof extra, "Authorization: %s\r\n", d->auth);
    dl_send(d, d->o.balancer, target, extra);
}

static void dl_fetch(dl_t *d)
{
    char extra[XGET_ETAG_MAX + 128] = "";
    d->phase = DL_FETCH;
    /* If-Range: a server whose file changed sends all of it (200), not
     * the rest of another version */
    if (d->off > 0)
        snprintf(extra, sizeof extra, "Range: bytes=%" PRIu64 "-\r\nIf-Range: %s\r\n", d->off,
                 d->m.etag);
    if (d->sink.progress != NULL)
        d->sink.progress(d->sink.arg, d->server, d->off, d->have_m ? d->m.size : 0);
    log_debug("dl", "event=leg transfer=%s server=%s from=%" PRIu64, d->transfer, d->server,
              d->off);
    dl_send(d, &d->fs, d->fs.path, extra);
}

int dl_start(dl_t **out, ring_t *r, const struct dl_opts *o, const struct dl_sink *sink)
{
    dl_t *d = calloc(1, sizeof *d);
    if (d == NULL)
        return -ENOMEM;
    int rc = http_resp_new(&d->resp, NULL);
    if (rc == 0 &&
        xget_path_quote(o->path[0] == '/' ? o->path + 1 : o->path, d->path_q, sizeof d->path_q) < 0)
        rc = -ENAMETOOLONG;
    if (rc == 0 && o->authorization != NULL &&
        snprintf(d->auth, sizeof d->auth, "%s", o->authorization) >= (int)sizeof d->auth)
        rc = -E2BIG;
    if (rc == 0)
        rc = xget_hash_new(&d->h);
    if (rc != 0) {
        http_resp_free(d->resp);
        xget_hash_free(d->h);
        free(d);
        return rc;
    }
    d->ring = r;
    d->o = *o;
    d->o.path = NULL;
    d->o.authorization = NULL;
    d->o.stall_ms = o->stall_ms ? o->stall_ms : DL_STALL_MS;
    d->o.legs_max = o->legs_max ? o->legs_max : DL_LEGS_MAX;
    d->sink = *sink;
    if (o->resume.etag[0] != '\0' && o->have > 0) {
        d->m = o->resume;
        d->have_m = true;
        /* a complete part still needs a server's word that it is current:
         * ask for its last byte */
        d->off = o->have < o->resume.size ? o->have : o->resume.size - 1;
    }
    *out = d;
    dl_ask(d);
    return 0;
}

const char *dl_transfer(const dl_t *d)
{
    return d->transfer;
}

const char *dl_server(const dl_t *d)
{
    return d->server;
}

unsigned dl_legs(const dl_t *d)
{
    return d->legs + (d->phase == DL_FETCH || d->fetched > 0);
}
