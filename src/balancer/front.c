/*
 * front — the balancer's HTTP face.
 *
 * A request for a file is four steps, each short: authenticate the user
 * (users_prepare on this thread; a password that needs its hash goes to
 * the pool and comes back with ring_post), find the servers whose catalog
 * holds the path (in the version of the first leg when resuming), choose
 * one and record the redirect under the owner's lock (the policy counts it
 * at once, so a burst does not land on one server), then sign a ticket and
 * answer 307. Nothing waits on the network: the file server, not the
 * balancer, carries the bytes, and reports them over its control
 * connection (XFER_*), which the owner applies to the same table.
 *
 * Routing and authentication are hapi.h's (401, 403, 405, 429). Every
 * other refusal says why too: 404 when no server holds the file, 503 with
 * Retry-After when no server can take it or the transfer table is full of
 * live transfers.
 */
#include "front.h"

#include "convoy/fscat.h"
#include "convoy/hapi.h"
#include "convoy/hex.h"
#include "convoy/log.h"
#include "convoy/text.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FRONT_HITS_MAX REG_SERVERS
#define FRONT_RETRY_S  2 /* Retry-After when no server can take a request now */
#define FRONT_LOCATION (TICKET_TEXT_MAX + 3 * FSCAT_PATH_MAX + 128)
_Static_assert(FRONT_LOCATION >= sizeof "https://" + REG_ADDR_MAX + sizeof "/f/" +
                                     3 * FSCAT_PATH_MAX + sizeof "?t=" + TICKET_TEXT_MAX,
               "a Location is never cut");
#define FRONT_ID_MAX 24 /* digits of a u64, and a NUL */

/* The servers a request may go to: those whose catalog holds the file. */
struct front_hits {
    struct catalog_hit hit[FRONT_HITS_MAX];
    size_t n;
};

struct front {
    struct front_opts o;
    hapi_t *api;
    /* front_file's, one request at a time on this ring: kept, since a
     * fresh one (50 KB) cost a malloc and a free on every redirect */
    struct front_hits hits;
    void (*done)(void *arg); /* front_stop's */
    void *done_arg;
};

static uint64_t front_unix_s(void)
{
    return (uint64_t)time(NULL);
}

/* ---- files ---- */

static bool front_holds(const struct reg_server *r, size_t row, void *arg)
{
    (void)row;
    const struct front_hits *h = arg;
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->hit[i].server, r->name) == 0)
            return true;
    return false;
}

static const struct catalog_hit *front_hit(const struct front_hits *h, const char *server)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->hit[i].server, server) == 0)
            return &h->hit[i];
    return NULL;
}

/* What the redirect needs once the table has recorded it. */
struct front_leg {
    uint64_t id;
    char addr[REG_ADDR_MAX];
    char decision[POLICY_DECISION_MAX];
    struct policy_decision d;
};

/* A resumed transfer: who may resume it, and the version it must keep. */
static int front_resume_of(const struct front_core *core, uint64_t id, const char *user,
                           enum users_role role, const char *path, struct xfer_rec *out)
{
    const struct xfer_rec *r = xfer_find(core->xfers, id);
    if (r == NULL)
        return -ENOENT;
    if (strcmp(r->user, user) != 0 && role != USERS_ADMIN)
        return -EPERM;
    if (strcmp(r->path + 1, path) != 0) /* records keep the path "/"-rooted */
        return -EINVAL;
    *out = *r;
    return 0;
}

/* A resume names the server that failed the client: when that is the
 * server of the transfer's newest leg (a client cannot make just any
 * server suspect), it is passed over until the balancer hears from it
 * again. Under the owner's lock. */
static void front_suspect(struct front_core *core, uint64_t resume, const char *failed)
{
    const struct xfer_rec *r = xfer_find(core->xfers, resume);
    if (r && r->nlegs > 0 && strcmp(r->legs[r->nlegs - 1].server, failed) == 0)
        policy_suspect(core->policy, core->reg, failed);
}

/*
 * Chooses a server among hits and records the redirect (a new transfer, or
 * a new leg of `resume`), under the owner's lock. 0, or the HTTP status to
 * answer with.
 */
static int front_choose(front_t *f, const struct front_hits *hits, const char *path,
                        const struct users_check *who, uint64_t resume, const char *failed,
                        struct front_leg *leg)
{
    struct front_core *core = f->o.lock(f->o.arg);
    if (core == NULL)
        return 500;
    struct policy_request req = {.filter = front_holds, .arg = (void *)hits, .avoid = failed};
    int status = 0;
    if (resume && failed[0])
        front_suspect(core, resume, failed);
    if (policy_choose(core->policy, core->reg, &req, &leg->d) < 0) {
        status = 503;
        goto out;
    }
    const struct catalog_hit *h = front_hit(hits, leg->d.server);
    text_copy(leg->addr, sizeof leg->addr, core->reg->rows[leg->d.row].addr);
    uint64_t now = xfer_now_ms();
    int rc;
    if (resume) {
        rc = xfer_resume(core->xfers, resume, &leg->d, now);
        leg->id = resume;
    } else {
        char digest[XFER_DIGEST_MAX] = "", rooted[XFER_PATH_MAX];
        if (h->has_sha256)
            hex_encode(h->sha256, sizeof h->sha256, digest);
        rooted[0] = '/';
        text_copy(rooted + 1, sizeof rooted - 1, path);
        struct xfer_new n = {.user = who->user,
                             .path = rooted,
                             .size = h->size,
                             .etag = h->etag,
                             .digest = digest,
                             .decision = &leg->d};
        rc = xfer_redirect(core->xfers, &n, now, &leg->id);
    }
    if (rc == -ENOSPC)
        status = 503; /* every slot holds a live transfer */
    else if (rc < 0)
        status = resume ? 409 : 500;
    else /* the record wrote the decision's text: policy_decision_str once */
        memcpy(leg->decision, xfer_find(core->xfers, leg->id)->decision, sizeof leg->decision);
out:
    f->o.unlock(f->o.arg);
    return status;
}

/* RFC 3986's unreserved characters, and '/'. */
static bool front_url_keeps(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '/';
}

/* Percent-encodes a catalog path for a URL (its '/' kept). */
static int front_url_path(char *out, size_t cap, const char *path)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if (n + 4 > cap)
            return -ENOSPC;
        if (front_url_keeps(*p)) {
            out[n++] = (char)*p;
            continue;
        }
        out[n++] = '%';
        out[n++] = hex[*p >> 4];
        out[n++] = hex[*p & 15];
    }
    out[n] = '\0';
    return 0;
}

/* The 307: a ticket for the chosen server, and why it was chosen. */
static void front_redirect(front_t *f, httpd_xchg_t *x, const char *path, const char *user,
                           const struct front_leg *leg)
{
    struct ticket t = {.transfer = leg->id,
                       .expires = front_unix_s() + f->o.ticket_ttl_s,
                       .method =
                           http_req_method(httpd_req(x)) == HTTP_HEAD ? TICKET_HEAD : TICKET_GET};
    text_copy(t.server, sizeof t.server, leg->d.server);
    text_copy(t.user, sizeof t.user, user);
    t.path[0] = '/'; /* "/"-rooted, as the server and records name it */
    text_copy(t.path + 1, sizeof t.path - 1, path);
    char ticket[TICKET_TEXT_MAX + 1], url[3 * FSCAT_PATH_MAX + 1];
    if (ticket_sign(f->o.keys, &t, ticket, sizeof ticket) < 0 ||
        front_url_path(url, sizeof url, path) < 0) {
        httpd_reply_text(x, 500, "cannot sign a ticket");
        return;
    }
    /* without printf, as every field of the 307: FRONT_LOCATION holds it all */
    char loc[FRONT_LOCATION], id[FRONT_ID_MAX];
    size_t n = 0, idn = 0;
    const char *parts[] = {f->o.scheme, "://", leg->addr, "/f/", url, "?t=", ticket};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        text_cat(loc, sizeof loc, &n, parts[i]);
    text_cat_u64(id, sizeof id, &idn, leg->id);
    httpd_header_str(x, "Location", loc);
    httpd_header_str(x, "X-Convoy-Transfer", id);
    httpd_header_str(x, "X-Convoy-Decision", leg->decision);
    httpd_header_str(x, "Cache-Control", "no-store");
    httpd_reply_text(x, 307, "Temporary Redirect");
    log_debug("front", "event=redirect transfer=%" PRIu64 " user=%s server=%s %s", leg->id, user,
              leg->d.server, leg->decision);
}

/* The resume parameters, when given: 0 (none), 1 (resume), or -1 (bad). */
static int front_resume_args(const http_req_t *q, uint64_t *id, char *failed, size_t cap)
{
    char idtext[FRONT_ID_MAX];
    ssize_t n = http_req_query(q, "resume", idtext, sizeof idtext);
    if (n == -ENOENT)
        return 0;
    char *end;
    if (n <= 0 || (*id = strtoull(idtext, &end, 10)) == 0 || *end != '\0')
        return -1;
    n = http_req_query(q, "failed", failed, cap);
    if (n == -ENOENT)
        failed[0] = '\0';
    else if (n <= 0)
        return -1;
    return 1;
}

static void front_file(void *arg, httpd_xchg_t *x, const struct users_check *who)
{
    front_t *f = arg;
    const http_req_t *q = httpd_req(x);
    const char *path = http_req_path(q) + 3; /* after "/f/" */
    if (!fscat_path_valid(path, strlen(path)) || strlen(path) + 2 > XFER_PATH_MAX) {
        httpd_reply_text(x, 404, "no such file");
        return;
    }
    uint64_t resume = 0;
    char failed[REG_NAME_MAX] = ""; /* none unless a resume names it */
    int r = front_resume_args(q, &resume, failed, sizeof failed);
    if (r < 0) {
        httpd_reply_text(x, 400, "resume wants a transfer id (and failed a server name)");
        return;
    }
    struct xfer_rec first;
    struct catalog_version v, *vp = NULL;
    if (r > 0) {
        struct front_core *core = f->o.lock(f->o.arg);
        int rc = core ? front_resume_of(core, resume, who->user, who->role, path, &first) : -EIO;
        f->o.unlock(f->o.arg);
        if (rc < 0) {
            httpd_reply_text(x,
                             rc == -EPERM    ? 403
                             : rc == -EINVAL ? 400
                                             : 404,
                             rc == -EPERM    ? "not your transfer"
                             : rc == -EINVAL ? "the transfer is for another path"
                                             : "no such transfer");
            return;
        }
        v = (struct catalog_version){.size = first.size, .etag = first.etag};
        vp = &v; /* the same bytes, or the resume would splice two files */
    }
    struct front_hits *hits = &f->hits;
    hits->n = catalog_lookup(f->o.catalog, path, vp, hits->hit, FRONT_HITS_MAX);
    struct front_leg leg;
    int status = hits->n == 0 ? 404 : front_choose(f, hits, path, who, resume, failed, &leg);
    if (status == 404)
        httpd_reply_text(x, 404, resume ? "no server holds this version now" : "no such file");
    else if (status == 503)
        hapi_retry_later(x, 503, FRONT_RETRY_S, "no server can take it now");
    else if (status != 0)
        httpd_reply_text(x, status,
                         status == 409 ? "the transfer cannot take another leg" : "internal error");
    else
        front_redirect(f, x, path, who->user, &leg);
}

/* ---- the tables ---- */

static void front_servers(void *arg, httpd_xchg_t *x, const struct users_check *who)
{
    front_t *f = arg;
    (void)who;
    struct front_core *core = f->o.lock(f->o.arg);
    cJSON *doc = core ? reg_table_json(core->reg, ring_now_ms()) : NULL;
    f->o.unlock(f->o.arg);
    hapi_reply_json(x, 200, doc);
}

static void front_transfers(void *arg, httpd_xchg_t *x, const struct users_check *who)
{
    front_t *f = arg;
    (void)who;
    char name[16];
    enum xfer_state state = XFER_NONE; /* every one */
    ssize_t n = http_req_query(httpd_req(x), "state", name, sizeof name);
    if (n != -ENOENT && (n <= 0 || xfer_state_parse(name, &state) < 0)) {
        httpd_reply_text(x, 400, "state is one of redirected, active, done, failed, interrupted");
        return;
    }
    struct front_core *core = f->o.lock(f->o.arg);
    cJSON *doc = core ? xfer_table_json(core->xfers, state) : NULL;
    f->o.unlock(f->o.arg);
    hapi_reply_json(x, 200, doc);
}

/* ---- routing and lifetime ---- */

static const struct hapi_route routes[] = {
    {"/f/", HAPI_M(HTTP_GET) | HAPI_M(HTTP_HEAD), USERS_READ, front_file},
    {"/v1/servers", HAPI_M(HTTP_GET), USERS_ADMIN, front_servers},
    {"/v1/transfers", HAPI_M(HTTP_GET), USERS_ADMIN, front_transfers},
};

int front_start(front_t **out, const struct front_opts *o)
{
    front_t *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -ENOMEM;
    f->o = *o;
    struct hapi_opts ho = {.ring = o->ring,
                           .addr = o->addr,
                           .http = o->http,
                           .users = o->users,
                           .pool = o->pool,
                           .routes = routes,
                           .nroutes = sizeof routes / sizeof routes[0],
                           .arg = f};
    int rc = hapi_start(&f->api, &ho);
    if (rc < 0) {
        free(f);
        return rc;
    }
    *out = f;
    return 0;
}

const struct net_addr *front_addr(const front_t *f)
{
    return hapi_addr(f->api);
}

static void front_stopped(void *arg)
{
    front_t *f = arg;
    if (f->done)
        f->done(f->done_arg);
    free(f);
}

void front_stop(front_t *f, void (*done)(void *arg), void *arg)
{
    if (f->api == NULL)
        return;
    f->done = done;
    f->done_arg = arg;
    hapi_t *api = f->api;
    f->api = NULL;
    hapi_stop(api, front_stopped, f);
}
