/*
 * hapi — the authenticated route table (see hapi.h). A check that needs
 * its hash is a struct hapi_auth on the pool; pending counts them, so a
 * stop waits for the last to come back before freeing what they point at.
 */
#include "convoy/hapi.h"

#include "convoy/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HAPI_REALM "Basic realm=\"convoy\", Bearer realm=\"convoy\""

struct hapi {
    struct hapi_opts o;
    httpd_t *httpd;
    unsigned pending; /* password checks on the pool */
    bool stopping;
    void (*done)(void *arg);
    void *done_arg;
    struct ring_defer finish;
};

/* One request waiting for its password's hash. */
struct hapi_auth {
    hapi_t *a;
    httpd_xchg_t *x;
    const struct hapi_route *r;
    struct users_check check;
};

void hapi_retry_later(httpd_xchg_t *x, int status, unsigned s, const char *why)
{
    httpd_header(x, "Retry-After", "%u", s);
    httpd_reply_text(x, status, why);
}

void hapi_reply_json(httpd_xchg_t *x, int status, cJSON *doc)
{
    char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (text == NULL) {
        httpd_reply_text(x, 500, "out of memory");
        return;
    }
    httpd_reply(x, status, "application/json", text, strlen(text));
    cJSON_free(text);
}

/* ---- authentication ---- */

static void hapi_maybe_finish(hapi_t *a);

/* A check's answer, wherever it was reached. */
static void hapi_authed(hapi_t *a, httpd_xchg_t *x, const struct users_check *c,
                        const struct hapi_route *r)
{
    switch (c->result) {
    case USERS_OK:
        if (!users_role_allows(c->role, r->need)) {
            httpd_reply_text(x, 403, "your role may not do this");
            return;
        }
        conn_t *conn = httpd_conn(x);
        if (conn)
            conn_trust(conn); /* a user: not evicted to make room for strangers */
        r->fn(a->o.arg, x, c);
        return;
    case USERS_THROTTLED:
        hapi_retry_later(x, 429, c->retry_after_s, "too many failed logins: wait");
        return;
    case USERS_PENDING: /* cannot be an answer here */
    case USERS_MISSING:
    case USERS_MALFORMED:
    case USERS_DENIED:
        break;
    }
    httpd_header(x, "WWW-Authenticate", "%s", HAPI_REALM);
    httpd_reply_text(x, 401, users_result_str(c->result));
}

static void hapi_auth_back(void *arg)
{
    struct hapi_auth *h = arg;
    hapi_t *a = h->a;
    users_finish(a->o.users, &h->check, ring_now_ms());
    if (!a->stopping)
        hapi_authed(a, h->x, &h->check, h->r);
    else
        httpd_reply_text(h->x, 503, "shutting down");
    a->pending--;
    free(h);
    hapi_maybe_finish(a);
}

/* On a pool worker: the hash, then back to the ring. */
static void hapi_auth_hash(void *arg)
{
    struct hapi_auth *h = arg;
    users_verify(&h->check);
    while (ring_post_wait(h->a->o.ring, hapi_auth_back, h, 1000) < 0)
        ; /* the loop drains its posts; a worker may wait for it */
}

static void hapi_auth(hapi_t *a, httpd_xchg_t *x, const struct hapi_route *r)
{
    size_t len = 0;
    const char *hdr = http_req_header(httpd_req(x), "Authorization", &len);
    conn_t *conn = httpd_conn(x);
    struct hapi_auth *h = calloc(1, sizeof *h);
    if (h == NULL) {
        httpd_reply_text(x, 500, "out of memory");
        return;
    }
    *h = (struct hapi_auth){.a = a, .x = x, .r = r};
    const struct net_addr *peer = conn ? conn_peer(conn) : NULL;
    if (users_prepare(a->o.users, hdr, len, peer, ring_now_ms(), &h->check) != USERS_PENDING) {
        hapi_authed(a, x, &h->check, r);
        free(h);
        return;
    }
    if (pool_try_submit(a->o.pool, hapi_auth_hash, h) < 0) {
        users_finish(a->o.users, &h->check, ring_now_ms()); /* wipes the password */
        free(h);
        hapi_retry_later(x, 503, 1, "busy checking passwords: retry");
        return;
    }
    a->pending++;
}

/* ---- routing ---- */

static bool hapi_path_is(const struct hapi_route *r, const char *path)
{
    size_t n = strlen(r->path);
    return r->path[n - 1] == '/' ? strncmp(path, r->path, n) == 0 : strcmp(path, r->path) == 0;
}

/* "GET, HEAD" for the methods of every route of path. */
static void hapi_allow(const hapi_t *a, const char *path, char *buf, size_t len)
{
    unsigned m = 0;
    for (size_t i = 0; i < a->o.nroutes; i++)
        if (hapi_path_is(&a->o.routes[i], path))
            m |= a->o.routes[i].methods;
    size_t used = 0;
    buf[0] = '\0';
    for (int k = HTTP_GET; k <= HTTP_DELETE; k++)
        if (m & HAPI_M(k)) {
            int w = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", http_method_str(k));
            if (w < 0 || (size_t)w >= len - used)
                break;
            used += (size_t)w;
        }
}

static void hapi_request(httpd_xchg_t *x, void *arg)
{
    hapi_t *a = arg;
    const http_req_t *q = httpd_req(x);
    const char *path = http_req_path(q);
    enum http_method m = http_req_method(q);
    bool known = false;
    for (size_t i = 0; i < a->o.nroutes; i++) {
        const struct hapi_route *r = &a->o.routes[i];
        if (!hapi_path_is(r, path))
            continue;
        known = true;
        if (r->methods & HAPI_M(m)) {
            hapi_auth(a, x, r);
            return;
        }
    }
    if (!known) {
        httpd_reply_text(x, 404, "no such resource");
    } else {
        char allow[64];
        hapi_allow(a, path, allow, sizeof allow);
        httpd_header(x, "Allow", "%s", allow);
        httpd_reply_text(x, 405, "method not allowed here");
    }
}

/* ---- lifetime ---- */

static void hapi_finish(struct ring_defer *d)
{
    hapi_t *a = container_of(d, hapi_t, finish);
    if (a->done)
        a->done(a->done_arg);
    free(a);
}

static void hapi_maybe_finish(hapi_t *a)
{
    if (a->stopping && a->pending == 0)
        ring_defer(a->o.ring, &a->finish, hapi_finish);
}

int hapi_start(hapi_t **out, const struct hapi_opts *o)
{
    hapi_t *a = calloc(1, sizeof *a);
    if (a == NULL)
        return -ENOMEM;
    a->o = *o;
    int rc = httpd_listen(&a->httpd, o->ring, &o->addr, &o->http, hapi_request, a);
    if (rc < 0) {
        char s[64];
        log_error("hapi", "event=listen_failed addr=%s err=\"%s\"",
                  net_addr_str(&o->addr, s, sizeof s), strerror(-rc));
        free(a);
        return rc;
    }
    *out = a;
    return 0;
}

const struct net_addr *hapi_addr(const hapi_t *a)
{
    return httpd_addr(a->httpd);
}

void hapi_stop(hapi_t *a, void (*done)(void *arg), void *arg)
{
    if (a->stopping)
        return;
    a->stopping = true;
    a->done = done;
    a->done_arg = arg;
    httpd_stop(a->httpd);
    hapi_maybe_finish(a);
}
