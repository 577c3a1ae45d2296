/*
 * fshttp — GET and HEAD of /f/<path> (see fshttp.h).
 *
 * A request that passes the gates becomes a struct req, which lives until
 * its leg has ended: through the wait for a digest (r->x set, r->wait
 * armed) and the file's streaming (httpd's done pending). One ring timer
 * per request reports progress while it streams. A leg is complete when
 * httpd says its last byte is queued on the connection: conn holds at most
 * CONN_HIGH_WATER more (CONN_PIPE_SIZE in plain TCP), and once the
 * connection is gone nothing can say whether those left (a graceful close
 * sends them first, an abort drops them), so waiting for them would only
 * make the outcome racy.
 *
 * A leg's bytes are what the socket took since its answer began (the head
 * included, ciphertext with TLS), capped at the leg's length: the
 * balancer's measure of progress, not a promise that the client has them;
 * the client resumes from what it holds.
 */
#include "convoy/fshttp.h"

#include "convoy/conn.h"
#include "convoy/fscat.h"
#include "convoy/hex.h"
#include "convoy/httpd.h"
#include "convoy/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct req {
    fsh_t *s;
    httpd_xchg_t *x; /* until answered */
    int fd;          /* until httpd's done */
    struct stat st;
    enum http_method method;
    char path[TICKET_PATH_MAX + 1]; /* "/<path>": the ticket's and the report's */
    struct ticket tk;
    struct fsdig_wait wait;
    uint8_t digest[FSDIG_LEN];
    fsxfer_leg_t *leg;
    conn_ref_t conn;
    uint64_t out0;   /* conn_bytes_out() when the answer began */
    uint64_t len;    /* the leg's length */
    uint64_t sent;   /* bytes of the leg the socket took, as last seen */
    bool queued_all; /* httpd's done said 0: every byte is queued */
    size_t left;     /* conn_queued() as last seen, while draining */
    struct ring_timer timer;
    struct req *prev, *next; /* s->reqs */
};

struct fsh {
    struct fsh_opts o;
    httpd_t *httpd;
    struct net_addr addr;
    struct req *reqs;
};

static void req_release(struct req *r)
{
    fsh_t *s = r->s;
    if (r->prev)
        r->prev->next = r->next;
    else
        s->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    fsdig_cancel(&r->wait);
    ring_timer_stop(s->o.ring, &r->timer);
    if (r->fd >= 0)
        close(r->fd);
    free(r);
}

/* ---- the leg ---- */

/* Updates r->sent from the connection, while it lives. */
static void leg_measure(struct req *r)
{
    conn_t *c = conn_get(r->conn);
    if (c == NULL)
        return;
    uint64_t out = conn_bytes_out(c) - r->out0;
    r->sent = out < r->len ? out : r->len;
}

static void leg_end(struct req *r, enum xfer_outcome outcome)
{
    if (outcome == XFER_OUT_COMPLETE)
        r->sent = r->len;
    if (r->leg)
        fsxfer_end(r->s->o.xfer, r->leg, r->sent, outcome);
    log_debug("fshttp", "event=leg_end id=%llu path=\"%s\" bytes=%llu outcome=%s",
              (unsigned long long)r->tk.transfer, r->path, (unsigned long long)r->sent,
              xfer_outcome_str(outcome));
    req_release(r);
}

static void leg_tick(struct ring_timer *t)
{
    struct req *r = container_of(t, struct req, timer);
    leg_measure(r);
    if (r->leg)
        fsxfer_progress(r->s->o.xfer, r->leg, r->sent, ring_now_ms());
    ring_timer_start(r->s->o.ring, t, FSXFER_PROGRESS_MS, leg_tick);
}

/* What a failed send says about who failed: the file (error) or the
 * client (client-aborted). */
static enum xfer_outcome send_outcome(int err)
{
    switch (err) {
    case -EIO:
    case -EBADF:
    case -EINVAL:
    case -ENOMEM:
    case -ESHUTDOWN:
        return XFER_OUT_ERROR;
    default:
        return XFER_OUT_CLIENT_ABORTED;
    }
}

static void file_done(void *arg, int err)
{
    struct req *r = arg;
    close(r->fd);
    r->fd = -1;
    leg_measure(r);
    if (err < 0) {
        log_info_limited("fshttp", "event=send_failed path=\"%s\" bytes=%llu err=\"%s\"", r->path,
                         (unsigned long long)r->sent, conn_reason_str(err));
        leg_end(r, send_outcome(err));
        return;
    }
    leg_end(r, XFER_OUT_COMPLETE);
}

static void leg_begin(struct req *r, uint64_t off)
{
    char etag[FSCAT_ETAG_MAX], hex[2 * FSDIG_LEN + 1];
    fscat_etag(&r->st, etag);
    hex_encode(r->digest, FSDIG_LEN, hex);
    struct xfer_msg m = {.id = r->tk.transfer,
                         .path = r->path,
                         .first_byte = off,
                         .length = r->len,
                         .size = (uint64_t)r->st.st_size,
                         .etag = etag,
                         .digest = hex};
    r->leg = fsxfer_start(r->s->o.xfer, &m);
    conn_t *c = httpd_conn(r->x);
    r->conn = conn_ref(c);
    r->out0 = conn_bytes_out(c);
}

/* ---- the answer ---- */

/* Whether an If-None-Match value names etag (or is "*"). */
static bool etag_listed(const char *list, const char *etag)
{
    size_t n = strlen(etag);
    if (strcmp(list, "*") == 0)
        return true;
    for (const char *p = list; (p = strstr(p, etag)) != NULL; p += n) {
        bool starts = p == list || p[-1] == ' ' || p[-1] == ',' || p[-1] == '/';
        bool ends = p[n] == '\0' || p[n] == ',' || p[n] == ' ';
        if (starts && ends)
            return true;
    }
    return false;
}

/* ETag, Last-Modified, Repr-Digest and Accept-Ranges: on every answer
 * about the file. */
static void add_validators(struct req *r, const char *etag)
{
    char date[64], digest[FSDIG_HEADER_MAX];
    struct tm tm;
    gmtime_r(&r->st.st_mtim.tv_sec, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    fsdig_header(r->digest, digest);
    httpd_header(r->x, "ETag", "%s", etag);
    httpd_header(r->x, "Last-Modified", "%s", date);
    httpd_header(r->x, "Repr-Digest", "%s", digest);
    httpd_header(r->x, "Accept-Ranges", "bytes");
}

static void answer_small(struct req *r, int status, const char *msg)
{
    if (msg)
        httpd_reply_text(r->x, status, msg);
    else
        httpd_reply(r->x, status, NULL, NULL, 0);
    req_release(r);
}

static void answer(struct req *r)
{
    const http_req_t *q = httpd_req(r->x);
    uint64_t size = (uint64_t)r->st.st_size;
    char etag[FSCAT_ETAG_MAX], cr[96];
    fscat_etag(&r->st, etag);
    add_validators(r, etag);
    const char *inm = http_req_header(q, "If-None-Match", NULL);
    if (inm && etag_listed(inm, etag)) {
        answer_small(r, 304, NULL);
        return;
    }
    const char *range = http_req_header(q, "Range", NULL);
    const char *if_range = http_req_header(q, "If-Range", NULL);
    if (if_range && strcmp(if_range, etag) != 0) /* another version: the whole of this one */
        range = NULL;
    struct http_range rg = {0, size ? size - 1 : 0};
    enum http_range_result res = http_range_parse(range, size, &rg);
    if (res != HTTP_RANGE_NONE && http_content_range(cr, sizeof cr, res, &rg, size) > 0)
        httpd_header(r->x, "Content-Range", "%s", cr);
    if (res == HTTP_RANGE_UNSATISFIABLE) {
        answer_small(r, 416, "range not satisfiable");
        return;
    }
    if (!httpd_alive(r->x)) { /* gone while the digest was computed: nothing to send */
        answer_small(r, 503, NULL);
        return;
    }
    uint64_t off = res == HTTP_RANGE_PARTIAL ? rg.first : 0;
    uint64_t len = res == HTTP_RANGE_PARTIAL ? rg.last - rg.first + 1 : size;
    r->len = r->method == HTTP_HEAD ? 0 : len;
    httpd_header(r->x, "Content-Type", "application/octet-stream");
    leg_begin(r, off);
    httpd_xchg_t *x = r->x;
    r->x = NULL;
    int rc =
        httpd_reply_file(x, res == HTTP_RANGE_PARTIAL ? 206 : 200, r->fd, off, len, file_done, r);
    if (rc < 0) {
        leg_end(r, XFER_OUT_CLIENT_ABORTED);
        return;
    }
    ring_timer_start(r->s->o.ring, &r->timer, FSXFER_PROGRESS_MS, leg_tick);
}

static void on_digest(struct fsdig_wait *w, int err, const uint8_t *digest)
{
    struct req *r = container_of(w, struct req, wait);
    if (err < 0) {
        log_warn_limited("fshttp", "event=no_digest path=\"%s\" err=\"%s\"", r->path,
                         strerror(-err));
        httpd_header(r->x, "Retry-After", "1");
        answer_small(r, 503, "digest unavailable");
        return;
    }
    memcpy(r->digest, digest, FSDIG_LEN);
    answer(r);
}

/* ---- the gates ---- */

/* The ticket's check; on a refusal answers 403 with the reason. */
static int check_ticket(struct req *r)
{
    const http_req_t *q = httpd_req(r->x);
    char text[TICKET_TEXT_MAX + 1], why[256] = "";
    ssize_t n = http_req_query(q, "t", text, sizeof text);
    enum ticket_method m = r->method == HTTP_HEAD ? TICKET_HEAD : TICKET_GET;
    int rc = n < 0 && n != -ENOENT
                 ? TICKET_EMALFORMED
                 : ticket_verify(r->s->o.keys, n > 0 ? text : NULL, n > 0 ? (size_t)n : 0,
                                 (uint64_t)time(NULL), r->s->o.name, r->path, m, &r->tk, why,
                                 sizeof why);
    if (rc == 0)
        return 0;
    char body[512];
    snprintf(body, sizeof body, "%s%s%s", ticket_strerror(rc), why[0] ? ": " : "", why);
    log_info_limited("fshttp", "event=ticket_refused path=\"%s\" peer=%s reason=\"%s\"", r->path,
                     httpd_conn(r->x) ? conn_peer_addr(httpd_conn(r->x)) : "-", body);
    httpd_reply_text(r->x, 403, body);
    return -EACCES;
}

/* Opens the file; on a refusal answers 404 (or 503 for the server's own
 * trouble). */
static int open_file(struct req *r)
{
    const char *rel = r->path + 1;
    r->fd = fsroot_open_file(r->s->o.root, rel, strlen(rel), &r->st);
    if (r->fd >= 0)
        return 0;
    if (r->fd == -ENOENT) {
        httpd_reply_text(r->x, 404, NULL);
    } else {
        log_warn_limited("fshttp", "event=open_failed path=\"%s\" err=\"%s\"", r->path,
                         strerror(-r->fd));
        httpd_header(r->x, "Retry-After", "1");
        httpd_reply_text(r->x, 503, NULL);
    }
    return r->fd;
}

static void handle(httpd_xchg_t *x, void *arg)
{
    fsh_t *s = arg;
    const http_req_t *q = httpd_req(x);
    enum http_method m = http_req_method(q);
    const char *path = http_req_path(q);
    if (m != HTTP_GET && m != HTTP_HEAD) {
        httpd_header(x, "Allow", "GET, HEAD");
        httpd_reply_text(x, 405, NULL);
        return;
    }
    size_t len = strlen(path);
    if (len < 4 || len - 2 > TICKET_PATH_MAX || strncmp(path, "/f/", 3) != 0 ||
        !fsroot_path_ok(path + 3, len - 3)) { /* nothing a ticket could name */
        httpd_reply_text(x, 404, NULL);
        return;
    }
    struct req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        httpd_reply_text(x, 503, NULL);
        return;
    }
    *r = (struct req){.s = s, .x = x, .fd = -1, .method = m, .next = s->reqs};
    memcpy(r->path, path + 2, len - 1); /* "/<path>" and its NUL */
    if (s->reqs)
        s->reqs->prev = r;
    s->reqs = r;
    if (check_ticket(r) < 0 || open_file(r) < 0) {
        req_release(r);
        return;
    }
    int rc = fsdig_get(s->o.dig, r->path + 1, r->fd, &r->st, r->digest, &r->wait, on_digest);
    if (rc == 1)
        answer(r);
    else if (rc < 0) {
        httpd_header(x, "Retry-After", "1");
        answer_small(r, 503, "digest unavailable");
    }
    /* rc == 0: on_digest answers */
}

int fsh_start(fsh_t **out, const struct fsh_opts *o)
{
    fsh_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->o = *o;
    struct httpd_opts ho = {.tls = o->tls};
    int rc = httpd_listen(&s->httpd, o->ring, o->addr, &ho, handle, s);
    if (rc < 0) {
        free(s);
        return rc;
    }
    s->addr = *httpd_addr(s->httpd);
    *out = s;
    return 0;
}

const struct net_addr *fsh_addr(const fsh_t *s)
{
    return &s->addr;
}

void fsh_stop(fsh_t *s, uint32_t grace_ms, void (*done)(void *arg), void *arg)
{
    if (s->httpd == NULL)
        return;
    httpd_drain(s->httpd, grace_ms, done, arg);
    s->httpd = NULL;
    for (struct req *r = s->reqs, *next; r; r = next) {
        next = r->next;
        if (r->x) /* waiting for its digest */
            answer_small(r, 503, "shutting down");
    }
}

void fsh_free(fsh_t *s)
{
    if (s == NULL)
        return;
    while (s->reqs)
        req_release(s->reqs);
    free(s);
}
