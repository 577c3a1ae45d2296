/*
 * feapi — the front-end's HTTP API (docs/jobs.md):
 *
 *   POST   /v1/jobs                 a job: application/json, or
 *                                   application/x-convoy-job (4-byte
 *                                   big-endian JSON length, the JSON, the .npy)
 *   GET    /v1/jobs                 every job the user may see
 *   GET    /v1/jobs/<id>            its state and counts
 *   GET    /v1/jobs/<id>/result     per item: status, residual, server, time
 *                                   (and the inverse for an inline job)
 *   GET    /v1/jobs/<id>/result.npy the inverses, streamed from the spool
 *   DELETE /v1/jobs/<id>            cancel
 *   GET    /v1/servers              the chain in order
 *
 * An upload goes to disk as it arrives: the JSON is held (it is bounded),
 * the .npy never is. The JSON is checked as soon as it is whole, so a bad
 * job is refused before its matrices are sent. Every job, inline ones
 * included, is spooled as an input.npy (none for a generated job), so the
 * chain reads items one way. A user sees their own jobs; admin sees all.
 */
#include "fe.h"

#include "convoy/log.h"
#include "convoy/npy.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define API_UPLOAD_MAX     (64ull << 30) /* bytes of one upload */
#define API_UPLOAD_ROOM    (256u << 10)  /* offered at a time: the items' pace to the chain */
#define API_INLINE_NUMBERS (1u << 20)    /* inverses put in a JSON result */
#define API_RESULT_PAGE    100000u       /* items in one page of a JSON result */
#define API_CT_JOB         "application/x-convoy-job"
#define API_META           "meta.json"
#define API_INLINE_CHUNK   (16u << 20) /* bytes of inline items converted at once */

/* ---- answers ---- */

static void api_error(httpd_xchg_t *x, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void api_error(httpd_xchg_t *x, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *doc = cJSON_CreateObject();
    if (doc)
        cJSON_AddStringToObject(doc, "error", msg);
    hapi_reply_json(x, status, doc);
}

static bool api_may_see(const struct fjob *j, const struct users_check *who)
{
    return who->role == USERS_ADMIN || strcmp(j->user, who->user) == 0;
}

static cJSON *api_job_json(struct fe *fe, const struct fjob *j, bool full)
{
    struct fejob_counts c;
    fejob_counts(j->fj, &c);
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddNumberToObject(o, "id", (double)j->id);
    cJSON_AddStringToObject(o, "state", jobtab_state_str(j->state));
    cJSON_AddStringToObject(o, "user", j->user);
    cJSON_AddStringToObject(o, "op", j->op->name);
    cJSON_AddNumberToObject(o, "n", j->n);
    cJSON_AddNumberToObject(o, "items", (double)j->items);
    cJSON_AddNumberToObject(o, "done", (double)(c.ok + c.singular + c.invalid));
    cJSON_AddNumberToObject(o, "ok", (double)c.ok);
    cJSON_AddNumberToObject(o, "singular", (double)c.singular);
    cJSON_AddNumberToObject(o, "invalid", (double)c.invalid);
    cJSON_AddNumberToObject(o, "redelegated", (double)c.l.redelegated);
    cJSON_AddNumberToObject(o, "submitted_ms", (double)j->submitted_ms);
    cJSON_AddNumberToObject(o, "finished_ms", (double)j->finished_ms);
    if (!full)
        return o;
    cJSON_AddStringToObject(o, "output", job_output_str(j->output));
    cJSON_AddNumberToObject(o, "priority", j->priority);
    if (j->deadline_s > 0)
        cJSON_AddNumberToObject(o, "deadline_s", j->deadline_s);
    if (j->state == JOBTAB_WAITING)
        cJSON_AddStringToObject(
            o, "waiting", fe->nmembers ? "linking the chain" : "no compute server: the job waits");
    cJSON *servers = cJSON_AddObjectToObject(o, "servers");
    for (uint32_t i = 0; servers && i < c.l.nservers; i++)
        cJSON_AddNumberToObject(servers, c.l.servers[i].name, (double)c.l.servers[i].done);
    return o;
}

/* The job a /v1/jobs/<id>[/rest] path names, seen by who; else answers. */
static struct fjob *api_job_of(struct fe *fe, httpd_xchg_t *x, const struct users_check *who,
                               const char **rest)
{
    const char *p = http_req_path(httpd_req(x)) + strlen("/v1/jobs/");
    char *end;
    errno = 0;
    unsigned long long id = strtoull(p, &end, 10);
    struct fjob *j = NULL;
    if (end != p && errno == 0 && (*end == '\0' || *end == '/'))
        j = fe_job_find(fe, id);
    if (j == NULL || !api_may_see(j, who)) {
        api_error(x, 404, "no such job");
        return NULL;
    }
    *rest = end;
    return j;
}

/* ---- reading jobs ---- */

static void api_jobs(void *arg, httpd_xchg_t *x, const struct users_check *who)
{
    struct fe *fe = arg;
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = doc ? cJSON_AddArrayToObject(doc, "jobs") : NULL;
    for (struct fjob *j = fe->jobs; arr && j; j = j->next)
        if (api_may_see(j, who))
            cJSON_AddItemToArray(arr, api_job_json(fe, j, false));
    hapi_reply_json(x, 200, doc);
}

static void api_file_sent(void *arg, int err)
{
    (void)err;
    close((int)(intptr_t)arg);
}

static void api_result_npy(struct fe *fe, httpd_xchg_t *x, const struct fjob *j)
{
    char path[4096];
    struct stat st;
    if (j->output == JOB_OUT_NONE) {
        api_error(x, 404, "job %" PRIu64 " keeps no inverses (output none)", j->id);
        return;
    }
    if (j->state != JOBTAB_DONE) {
        api_error(x, 409, "job %" PRIu64 " is %s", j->id, jobtab_state_str(j->state));
        return;
    }
    int fd = -1;
    if (spool_path(fe->spool, j->id, "result.npy", path, sizeof path) < 0 ||
        (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0) {
        api_error(x, 500, "result.npy: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    httpd_header(x, "Content-Disposition", "attachment; filename=\"job-%" PRIu64 ".npy\"", j->id);
    if (httpd_reply_file(x, 200, fd, 0, (uint64_t)st.st_size, api_file_sent, (void *)(intptr_t)fd) <
        0)
        close(fd);
}

/* Item i's inverse from result.npy, as rows of numbers. */
static cJSON *api_inverse(int fd, uint64_t off, uint32_t n, double *row)
{
    cJSON *m = cJSON_CreateArray();
    for (uint32_t r = 0; m && r < n; r++) {
        size_t len = sizeof(double) * n;
        if (pread(fd, row, len, (off_t)(off + (uint64_t)r * len)) != (ssize_t)len) {
            cJSON_Delete(m);
            return NULL;
        }
        cJSON_AddItemToArray(m, cJSON_CreateDoubleArray(row, (int)n));
    }
    return m;
}

static cJSON *api_item(const struct spool_rec *rec, uint64_t i, bool residuals, bool sums)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddNumberToObject(o, "i", (double)i);
    cJSON_AddStringToObject(o, "status", rec->status ? fejob_status_str(rec->status) : "pending");
    if (rec->status) {
        cJSON_AddStringToObject(o, "server", rec->server);
        cJSON_AddNumberToObject(o, "ms", rec->ms);
    }
    if (residuals && !isnan(rec->resid))
        cJSON_AddNumberToObject(o, "residual", rec->resid);
    if (sums && rec->status == FEJOB_OK) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)rec->sum);
        cJSON_AddStringToObject(o, "checksum", hex);
    }
    return o;
}

/* Adds items first … end-1 of j to arr: record, and the inverse when
 * asked. */
static int api_items(struct fe *fe, const struct fjob *j, uint64_t first, uint64_t end, cJSON *arr,
                     bool inverses)
{
    char path[4096];
    int fd = -1;
    uint8_t hdr[FE_NPY_HDR];
    int hlen = fe_npy_header(j, hdr, sizeof hdr);
    if (inverses && (spool_path(fe->spool, j->id, "result.npy", path, sizeof path) < 0 ||
                     (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0))
        return -errno;
    double *row = inverses ? malloc(sizeof(double) * j->n) : NULL;
    int rc = inverses && row == NULL ? -ENOMEM : 0;
    struct spool_rec rec;
    for (uint64_t i = first; rc == 0 && i < end; i++) {
        if ((rc = spool_job_get(fejob_spool(j->fj), i, 1, &rec)) < 0)
            break;
        cJSON *o = api_item(&rec, i, j->residuals, j->output == JOB_OUT_NONE);
        if (o && inverses && rec.status == FEJOB_OK)
            cJSON_AddItemToObject(
                o, "inverse",
                api_inverse(fd, (uint64_t)hlen + i * chain_items_len(1, j->n), j->n, row));
        if (o == NULL)
            rc = -ENOMEM;
        else
            cJSON_AddItemToArray(arr, o);
    }
    free(row);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* A query number, dflt when absent; -1 when malformed. */
static int64_t api_query_num(httpd_xchg_t *x, const char *name, uint64_t dflt)
{
    char v[24], *end;
    ssize_t n = http_req_query(httpd_req(x), name, v, sizeof v);
    if (n == -ENOENT)
        return (int64_t)dflt;
    errno = 0;
    unsigned long long u = n > 0 ? strtoull(v, &end, 10) : 0;
    return n <= 0 || *end != '\0' || errno || u > INT64_MAX ? -1 : (int64_t)u;
}

/* One page of the per-item results (?first=&count=, at most
 * API_RESULT_PAGE items): a job's records are never gathered whole. */
static void api_result(struct fe *fe, httpd_xchg_t *x, const struct fjob *j)
{
    int64_t first = api_query_num(x, "first", 0),
            count = api_query_num(x, "count", API_RESULT_PAGE);
    if (first < 0 || count < 0 || (uint64_t)first > j->items) {
        api_error(x, 400, "first and count: item numbers, first at most %" PRIu64, j->items);
        return;
    }
    uint64_t end =
        j->items - (uint64_t)first < (uint64_t)count ? j->items : (uint64_t)(first + count);
    if (end - (uint64_t)first > API_RESULT_PAGE)
        end = (uint64_t)first + API_RESULT_PAGE;
    bool inverses = j->output == JOB_OUT_INLINE &&
                    (uint64_t)j->n * j->n * (end - (uint64_t)first) <= API_INLINE_NUMBERS;
    cJSON *doc = api_job_json(fe, j, false);
    cJSON *arr = doc ? cJSON_AddArrayToObject(doc, "results") : NULL;
    if (doc && j->output != JOB_OUT_NONE && !inverses)
        cJSON_AddStringToObject(doc, "inverses", "result.npy");
    if (doc && end < j->items)
        cJSON_AddNumberToObject(doc, "next", (double)end); /* the next page's first */
    int rc = arr ? api_items(fe, j, (uint64_t)first, end, arr, inverses) : -ENOMEM;
    if (rc < 0) {
        cJSON_Delete(doc);
        api_error(x, 500, "results of job %" PRIu64 ": %s", j->id, strerror(-rc));
        return;
    }
    hapi_reply_json(x, 200, doc);
}

static void api_job(void *arg, httpd_xchg_t *x, const struct users_check *who)
{
    struct fe *fe = arg;
    const char *rest;
    struct fjob *j = api_job_of(fe, x, who, &rest);
    if (j == NULL)
        return;
    if (*rest == '\0')
        hapi_reply_json(x, 200, api_job_json(fe, j, true));
    else if (strcmp(rest, "/result") == 0)
        api_result(fe, x, j);
    else if (strcmp(rest, "/result.npy") == 0)
        api_result_npy(fe, x, j);
    else
        api_error(x, 404, "no such resource");
}

static void api_cancel(void *arg, httpd_xchg_t *x, const struct users_check *who)
{
    struct fe *fe = arg;
    const char *rest;
    struct fjob *j = api_job_of(fe, x, who, &rest);
    if (j == NULL)
        return;
    if (*rest != '\0') {
        api_error(x, 405, "DELETE takes a job: /v1/jobs/<id>");
        return;
    }
    fe_job_cancel(fe, j);
    hapi_reply_json(x, 200, api_job_json(fe, j, true));
}

static void api_servers(void *arg, httpd_xchg_t *x, const struct users_check *who)
{
    struct fe *fe = arg;
    (void)who;
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = doc ? cJSON_AddArrayToObject(doc, "servers") : NULL;
    for (size_t i = 0; arr && i < corder_count(fe->chain); i++) {
        const struct corder_server *s = corder_at(fe->chain, i);
        cJSON *o = cJSON_CreateObject();
        if (o == NULL)
            break;
        cJSON_AddStringToObject(o, "name", s->name);
        cJSON_AddStringToObject(o, "address", s->addr);
        cJSON_AddNumberToObject(o, "weight", s->weight);
        const struct reg_server *r = reg_find(&fe->reg, s->name);
        for (size_t k = 0; k < fe->nmembers; k++)
            if (strcmp(fe->members[k].name, s->name) == 0)
                cJSON_AddNumberToObject(o, "threads", fe->members[k].threads);
        cJSON_AddNumberToObject(o, "active", r ? r->load.active : 0); /* its last heartbeat */
        cJSON_AddItemToArray(arr, o);
    }
    hapi_reply_json(x, 200, doc);
}

/* ---- a job's files ---- */

static int api_write_all(int fd, const void *p, size_t len)
{
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, (const uint8_t *)p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        done += (size_t)w;
    }
    return 0;
}

/* meta.json: who submitted it and when, and whether it was cancelled. */
int fe_api_meta(struct fe *fe, const struct fjob *j, bool cancelled)
{
    char path[4096], tmp[4112];
    if (spool_path(fe->spool, j->id, API_META, path, sizeof path) < 0)
        return -ENAMETOOLONG;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return -ENOMEM;
    cJSON_AddStringToObject(o, "user", j->user);
    cJSON_AddNumberToObject(o, "submitted_ms", (double)j->submitted_ms);
    cJSON_AddBoolToObject(o, "cancelled", cancelled);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    int fd = text ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    int rc = text == NULL ? -ENOMEM : fd < 0 ? -errno : api_write_all(fd, text, strlen(text));
    if (fd >= 0 && close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    cJSON_free(text);
    if (rc < 0)
        log_warn("frontend", "event=meta_failed job=%llu err=\"%s\"", (unsigned long long)j->id,
                 strerror(-rc));
    return rc;
}

/* A job from its checked spec (items and n of an npy job still 0). */
static struct fjob *api_job_new(const struct job_spec *spec, uint64_t id, const char *user)
{
    struct fjob *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    *j = (struct fjob){.id = id,
                       .state = JOBTAB_WAITING,
                       .op = spec->op,
                       .source = spec->source,
                       .output = spec->output,
                       .residuals = spec->residuals,
                       .priority = spec->priority,
                       .deadline_s = spec->deadline_s,
                       .n = spec->n,
                       .items = spec->items,
                       .seed = spec->seed,
                       .input = NULL,
                       .avail = UINT64_MAX};
    snprintf(j->user, sizeof j->user, "%s", user);
    snprintf(j->kind, sizeof j->kind, "%s", spec->kind);
    return j;
}

/* An inline job's matrices, written as its input.npy f. */
static int api_inline_write(const struct job_spec *spec, dio_t *f, uint64_t *data_off)
{
    uint8_t hdr[128];
    int hlen = npy_write_header(spec->items, spec->n, hdr, sizeof hdr);
    if (hlen < 0)
        return hlen;
    *data_off = (uint64_t)hlen;
    int rc = dio_append(f, hdr, (size_t)hlen);
    /* in chunks of about API_INLINE_CHUNK bytes: each call walks the
     * document from its first item, so one item per call would cost the
     * square of the job's size */
    uint64_t item = chain_items_len(1, spec->n);
    uint64_t per = API_INLINE_CHUNK / item ? API_INLINE_CHUNK / item : 1;
    double *m = malloc(item * (per < spec->items ? per : spec->items));
    if (m == NULL)
        return -ENOMEM;
    for (uint64_t i = 0; rc == 0 && i < spec->items; i += per) {
        uint64_t count = spec->items - i < per ? spec->items - i : per;
        if ((rc = job_inline_items(spec, i, count, m)) == 0)
            rc = dio_append(f, m, count * item);
    }
    free(m);
    return rc == 0 ? dio_flush(f) : rc;
}

/* Opens job id's input.npy: for writing (a new job), or reading. */
static int api_input_open(struct fe *fe, uint64_t id, bool create, dio_t **out)
{
    char path[4096];
    if (spool_path(fe->spool, id, "input.npy", path, sizeof path) < 0)
        return -ENAMETOOLONG;
    return create ? dio_open(out, path, O_RDWR | O_CREAT | O_EXCL, 0600)
                  : dio_open(out, path, O_RDONLY, 0);
}

/* Reads the header of j's input (an uploaded .npy): items, n, offset.
 * 0, or -EINVAL with the reason in err. */
static int api_input_check(struct fjob *j, char *err, size_t errlen)
{
    struct npy_info info;
    int rc = npy_read_fd(dio_fd(j->input), JOB_ITEMS_MAX, JOB_N_MAX, &info, err, errlen);
    if (rc < 0)
        return rc == -EINVAL ? rc : (snprintf(err, errlen, "%s", strerror(-rc)), rc);
    if (info.count == 0) {
        snprintf(err, errlen, "the .npy holds no matrix");
        return -EINVAL;
    }
    j->items = info.count;
    j->n = info.n;
    j->data_off = info.data_off;
    return 0;
}

/* ---- uploads ---- */

struct upload {
    struct fe *fe;
    httpd_xchg_t *x;
    char user[FE_USER_MAX];
    bool framed; /* application/x-convoy-job */
    uint8_t len4[4];
    size_t len4_got;
    char *json; /* the job document */
    size_t json_len, json_cap;
    bool json_done;
    struct job_spec spec;
    cJSON *doc;
    uint64_t id;
    bool created;       /* its spool directory exists */
    dio_t *in;          /* input.npy being written */
    uint64_t npy_bytes; /* of the .npy, as it came */
    uint64_t npy_hdr;   /* the length of its header, as it came */
    uint8_t *hdr;       /* the .npy's first bytes, until its header parses */
    size_t hdr_len;
    struct fjob *job; /* started once the header parsed: delegated as it comes */
    bool answered;
};

static void upload_free(struct upload *u)
{
    if (u->job)
        fe_job_discard(u->fe, u->job);
    if (u->created && !u->answered)
        spool_job_remove(u->fe->spool, u->id);
    free(u->hdr);
    dio_close(u->in);
    cJSON_Delete(u->doc);
    free(u->json);
    free(u);
}

/* Refuses the upload (once) and drops what it made. */
static void upload_refuse(struct upload *u, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void upload_refuse(struct upload *u, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (u->job)
        fe_job_discard(u->fe, u->job);
    u->job = NULL;
    if (u->created) {
        dio_close(u->in);
        u->in = NULL;
        spool_job_remove(u->fe->spool, u->id);
        u->created = false;
    }
    log_info("frontend", "event=job_refused user=%s status=%d why=\"%s\"", u->user, status, msg);
    api_error(u->x, status, "%s", msg);
    u->answered = true;
}

/* The JSON is whole: check it, and make the job's directory. 0 or -1. */
static int upload_json(struct upload *u)
{
    char err[JOB_ERR_MAX];
    u->json_done = true;
    if (job_parse(u->json, u->json_len, &u->spec, &u->doc, err, sizeof err) < 0) {
        upload_refuse(u, 400, "%s", err);
        return -1;
    }
    if (u->spec.source == JOB_NPY && !u->framed) {
        upload_refuse(u, 400, "$.input: the .npy comes with the job (Content-Type %s)", API_CT_JOB);
        return -1;
    }
    u->id = u->fe->next_id++;
    int rc = spool_job_create(u->fe->spool, u->id, u->json, u->json_len);
    if (rc < 0) {
        upload_refuse(u, 500, "spool: %s", strerror(-rc));
        return -1;
    }
    u->created = true;
    rc = u->spec.source != JOB_GENERATE ? api_input_open(u->fe, u->id, true, &u->in) : 0;
    if (rc < 0) {
        upload_refuse(u, 500, "spool: input.npy: %s", strerror(-rc));
        return -1;
    }
    return 0;
}

/* More of the .npy has come: its items go to the chain (read back from
 * the blocks dio still holds, or from the file). */
static void upload_npy_advance(struct upload *u)
{
    struct fjob *j = u->job;
    uint64_t in = dio_appended(u->in), item = chain_items_len(1, j->n);
    uint64_t avail = in > j->data_off ? (in - j->data_off) / item : 0;
    if (avail > j->avail) {
        j->avail = avail;
        fe_pump(u->fe);
    }
}

/* The .npy's header is whole and sound (info), with the bytes after it
 * in u->hdr past info->data_off and then rest: the spooled input.npy gets
 * a header of ours, padded as result.npy's (fe_npy_header), so that
 * every item is aligned for direct I/O, then the matrices. The header
 * read says no more than ours (float64, C order, count·n·n), so nothing
 * is lost. 0, or -errno. */
static int upload_npy_spool_start(struct upload *u, struct fjob *j, const struct npy_info *info,
                                  const uint8_t *rest, size_t len)
{
    uint8_t ours[FE_NPY_HDR];
    int hlen = fe_npy_header(j, ours, sizeof ours);
    if (hlen < 0)
        return hlen;
    j->data_off = (uint64_t)hlen;
    u->npy_hdr = info->data_off;
    int rc = dio_append(u->in, ours, (size_t)hlen);
    if (rc == 0)
        rc = dio_append(u->in, u->hdr + info->data_off, u->hdr_len - info->data_off);
    return rc == 0 ? dio_append(u->in, rest, len) : rc;
}

/* The .npy's start, p: once its header is whole and sound, the job starts
 * (its items are delegated as they are written, not once the upload
 * ends). 0, or -1 once refused. */
static int upload_npy_header(struct upload *u, const uint8_t *p, size_t len)
{
    char err[JOB_ERR_MAX];
    if (u->hdr == NULL && (u->hdr = malloc(NPY_HEADER_MAX)) == NULL) {
        upload_refuse(u, 500, "out of memory");
        return -1;
    }
    size_t take = NPY_HEADER_MAX - u->hdr_len < len ? NPY_HEADER_MAX - u->hdr_len : len;
    memcpy(u->hdr + u->hdr_len, p, take);
    u->hdr_len += take;
    struct npy_info info;
    int rc = npy_parse_header(u->hdr, u->hdr_len, JOB_ITEMS_MAX, JOB_N_MAX, &info, err, sizeof err);
    if (rc == -EAGAIN && u->hdr_len < NPY_HEADER_MAX)
        return 0;
    if (rc == 0 && info.count == 0)
        snprintf(err, sizeof err, "the .npy holds no matrix");
    if (rc < 0 || info.count == 0) {
        upload_refuse(u, 400, "%s: %s", u->spec.input, err);
        return -1;
    }
    struct fjob *j = api_job_new(&u->spec, u->id, u->user);
    if (j == NULL) {
        upload_refuse(u, 500, "out of memory");
        return -1;
    }
    j->submitted_ms = (uint64_t)time(NULL) * 1000;
    j->items = info.count;
    j->n = info.n;
    j->input = dio_ref(u->in);
    j->avail = 0;
    rc = upload_npy_spool_start(u, j, &info, p + take, len - take);
    free(u->hdr);
    u->hdr = NULL;
    if (rc < 0) {
        fe_job_free(j);
        upload_refuse(u, 500, "spool: input.npy: %s", strerror(-rc));
        return -1;
    }
    if ((rc = fe_job_open(u->fe, j)) < 0) {
        fe_job_free(j);
        upload_refuse(u, 500, "spool: %s", strerror(-rc));
        return -1;
    }
    u->job = j;
    fe_job_start(u->fe, j);
    upload_npy_advance(u);
    return 0;
}

/* Takes piece p (len bytes) of the body. 0, or -1 once refused. */
static int upload_take(struct upload *u, const uint8_t *p, size_t len)
{
    while (len > 0 && u->framed && u->len4_got < 4) {
        u->len4[u->len4_got++] = *p++;
        len--;
        if (u->len4_got == 4) {
            u->json_cap = (size_t)u->len4[0] << 24 | (size_t)u->len4[1] << 16 |
                          (size_t)u->len4[2] << 8 | u->len4[3];
            if (u->json_cap == 0 || u->json_cap > JOB_JSON_MAX) {
                upload_refuse(u, 413, "a job's JSON takes 1 to %u bytes", JOB_JSON_MAX);
                return -1;
            }
        }
    }
    if (!u->json_done && len > 0) {
        size_t room = u->framed ? u->json_cap - u->json_len : JOB_JSON_MAX - u->json_len;
        size_t take = len < room ? len : room;
        if (!u->framed && len > room) {
            upload_refuse(u, 413, "a job's JSON takes at most %u bytes", JOB_JSON_MAX);
            return -1;
        }
        char *grown = realloc(u->json, u->json_len + take + 1);
        if (grown == NULL) {
            upload_refuse(u, 500, "out of memory");
            return -1;
        }
        u->json = grown;
        memcpy(u->json + u->json_len, p, take);
        u->json_len += take;
        p += take;
        len -= take;
        if (u->framed && u->json_len == u->json_cap && upload_json(u) < 0)
            return -1;
    }
    if (len == 0)
        return 0;
    if (u->spec.source != JOB_NPY) {
        upload_refuse(u, 400, "the job names no \"input\" but a .npy came with it");
        return -1;
    }
    u->npy_bytes += len;
    if (u->job == NULL)
        return upload_npy_header(u, p, len);
    int rc = dio_append(u->in, p, len);
    if (rc < 0) {
        upload_refuse(u, 500, "spool: input.npy: %s", strerror(-rc));
        return -1;
    }
    upload_npy_advance(u);
    return 0;
}

/* Job j is in: shown, delegated, and answered 201. */
static void upload_accepted(struct upload *u, struct fjob *j)
{
    struct fe *fe = u->fe;
    log_info("frontend", "event=job_submitted job=%llu user=%s op=%s items=%llu n=%u source=%s",
             (unsigned long long)j->id, j->user, j->op->name, (unsigned long long)j->items, j->n,
             u->spec.source == JOB_GENERATE ? "generate"
             : u->spec.source == JOB_NPY    ? "npy"
                                            : "inline");
    fe_job_added(fe, j);
    httpd_header(u->x, "Location", "/v1/jobs/%" PRIu64, j->id);
    hapi_reply_json(u->x, 201, api_job_json(fe, j, true));
    u->answered = true;
}

/* The .npy is whole: its job, started at its header, is in. */
static void upload_npy_end(struct upload *u)
{
    struct fjob *j = u->job;
    if (j == NULL) {
        upload_refuse(u, 400, "%s: the body ends inside the .npy's header", u->spec.input);
        return;
    }
    uint64_t want = u->npy_hdr + j->items * chain_items_len(1, j->n);
    int rc = dio_flush(u->in);
    if (rc == 0 && u->npy_bytes < want) {
        upload_refuse(u, 400, "%s: %llu bytes, where its header says %llu", u->spec.input,
                      (unsigned long long)u->npy_bytes, (unsigned long long)want);
        return;
    }
    if (rc < 0 || (rc = fe_api_meta(u->fe, j, false)) < 0) {
        upload_refuse(u, 500, "spool: %s", strerror(-rc));
        return;
    }
    u->job = NULL;
    j->avail = UINT64_MAX;
    upload_accepted(u, j);
}

/* The body is whole: the job is in. */
static void upload_end(struct upload *u)
{
    struct fe *fe = u->fe;
    if (!u->json_done && (u->framed || upload_json(u) < 0)) {
        if (!u->answered)
            upload_refuse(u, 400, "the body ended inside the job's JSON");
        return;
    }
    if (u->spec.source == JOB_NPY) {
        upload_npy_end(u);
        return;
    }
    struct fjob *j = api_job_new(&u->spec, u->id, u->user);
    if (j == NULL) {
        upload_refuse(u, 500, "out of memory");
        return;
    }
    j->submitted_ms = (uint64_t)time(NULL) * 1000;
    int rc = 0;
    if (u->spec.source == JOB_INLINE)
        rc = api_inline_write(&u->spec, u->in, &j->data_off);
    j->input = u->in;
    u->in = NULL;
    if (rc < 0) {
        fe_job_free(j);
        upload_refuse(u, 500, "spool: input.npy: %s", strerror(-rc));
        return;
    }
    if ((rc = fe_job_open(fe, j)) < 0 || (rc = fe_api_meta(fe, j, false)) < 0) {
        fe_job_free(j);
        upload_refuse(u, 500, "spool: %s", strerror(-rc));
        return;
    }
    upload_accepted(u, j);
}

/* The .npy's matrices come straight into the block dio fills next: the
 * socket's bytes (or the TLS engine's) are copied once, there. Room is
 * offered again after every piece, and dropped (by httpd) at an answer.
 * A piece is at most API_UPLOAD_ROOM, as a receive was: the items are
 * delegated as they come, and a whole 1 MiB block at once (32 items of
 * n = 64) let an idle head take most of a small job. */
static void upload_offer_room(struct upload *u)
{
    size_t room;
    void *p = u->job && !u->answered ? dio_append_room(u->in, &room) : NULL;
    if (p != NULL) /* else pieces come as they are */
        (void)httpd_body_into(u->x, p, room < API_UPLOAD_ROOM ? room : API_UPLOAD_ROOM);
}

static void upload_body(httpd_xchg_t *x, void *arg, const uint8_t *p, size_t len, int err)
{
    struct upload *u = arg;
    (void)x;
    if (len > 0)
        upload_take(u, p, len);
    else if (err == 0)
        upload_end(u);
    else
        upload_refuse(u, err == -EMSGSIZE ? 413 : 400, "the upload broke: %s", strerror(-err));
    if (u->answered) /* no call comes after an answer */
        upload_free(u);
    else if (len > 0)
        upload_offer_room(u);
}

static void api_submit(void *arg, httpd_xchg_t *x, const struct users_check *who)
{
    struct fe *fe = arg;
    const char *ct = http_req_header(httpd_req(x), "Content-Type", NULL);
    bool json = ct && strncasecmp(ct, "application/json", 16) == 0;
    bool framed = ct && strncasecmp(ct, API_CT_JOB, strlen(API_CT_JOB)) == 0;
    if (!json && !framed) {
        api_error(x, 415, "a job is application/json, or %s with its .npy", API_CT_JOB);
        return;
    }
    struct upload *u = calloc(1, sizeof *u);
    if (u == NULL) {
        api_error(x, 500, "out of memory");
        return;
    }
    u->fe = fe;
    u->x = x;
    u->framed = framed;
    u->in = NULL;
    snprintf(u->user, sizeof u->user, "%s", who->user);
    if (httpd_read_body(x, upload_body, u) < 0) {
        api_error(x, 500, "the body cannot be read");
        upload_free(u);
    }
}

/* ---- recovery ---- */

static int api_meta_read(struct fe *fe, struct fjob *j, bool *cancelled)
{
    char path[4096], buf[1024];
    if (spool_path(fe->spool, j->id, API_META, path, sizeof path) < 0)
        return -ENAMETOOLONG;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -EINVAL;
    buf[n] = '\0';
    cJSON *o = cJSON_Parse(buf);
    const char *user = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "user"));
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(o, "submitted_ms");
    int rc = user && cJSON_IsNumber(at) ? 0 : -EINVAL;
    if (rc == 0) {
        snprintf(j->user, sizeof j->user, "%s", user);
        j->submitted_ms = (uint64_t)at->valuedouble;
        *cancelled = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "cancelled"));
    }
    cJSON_Delete(o);
    return rc;
}

/* Reads the document job id was submitted with. */
static int api_doc_read(struct fe *fe, uint64_t id, char **out, size_t *len)
{
    char path[4096];
    struct stat st;
    if (spool_path(fe->spool, id, "job.json", path, sizeof path) < 0)
        return -ENAMETOOLONG;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fstat(fd, &st) < 0 ? -errno : st.st_size > JOB_JSON_MAX ? -EFBIG : 0;
    char *buf = rc == 0 ? malloc((size_t)st.st_size + 1) : NULL;
    if (rc == 0 && buf == NULL)
        rc = -ENOMEM;
    if (rc == 0 && pread(fd, buf, (size_t)st.st_size, 0) != st.st_size)
        rc = -EIO;
    close(fd);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = (size_t)st.st_size;
    return 0;
}

static int api_recover_one(void *arg, uint64_t id)
{
    struct fe *fe = arg;
    char *doc_text = NULL, err[JOB_ERR_MAX] = "";
    size_t len = 0;
    struct job_spec spec;
    cJSON *doc = NULL;
    bool cancelled = false;
    if (id >= fe->next_id)
        fe->next_id = id + 1;
    int rc = api_doc_read(fe, id, &doc_text, &len);
    if (rc == 0 && job_parse(doc_text, len, &spec, &doc, err, sizeof err) < 0)
        rc = -EINVAL;
    struct fjob *j = rc == 0 ? api_job_new(&spec, id, "") : NULL;
    if (rc == 0 && j == NULL)
        rc = -ENOMEM;
    if (rc == 0)
        rc = api_meta_read(fe, j, &cancelled);
    if (rc == 0 && spec.source != JOB_GENERATE)
        rc = api_input_open(fe, id, false, &j->input);
    if (rc == 0 && spec.source != JOB_GENERATE)
        rc = api_input_check(j, err, sizeof err);
    if (rc == 0)
        rc = fe_job_open(fe, j);
    cJSON_Delete(doc);
    free(doc_text);
    if (rc < 0) {
        log_warn("frontend", "event=job_unreadable job=%llu err=\"%s\"", (unsigned long long)id,
                 err[0] ? err : strerror(-rc));
        fe_job_free(j);
        return 0; /* the others still recover */
    }
    if (cancelled)
        j->state = JOBTAB_CANCELLED;
    fe_job_added(fe, j);
    log_info("frontend", "event=job_recovered job=%llu state=%s", (unsigned long long)id,
             jobtab_state_str(j->state));
    return 0;
}

int fe_api_recover(struct fe *fe)
{
    int rc = spool_list(fe->spool, api_recover_one, fe);
    if (rc < 0)
        log_error("frontend", "event=recover_failed err=\"%s\"", strerror(-rc));
    return rc;
}

/* ---- the routes ---- */

static const struct hapi_route api_routes[] = {
    {"/v1/jobs", HAPI_M(HTTP_GET), USERS_SUBMIT, api_jobs},
    {"/v1/jobs", HAPI_M(HTTP_POST), USERS_SUBMIT, api_submit},
    {"/v1/jobs/", HAPI_M(HTTP_GET), USERS_SUBMIT, api_job},
    {"/v1/jobs/", HAPI_M(HTTP_DELETE), USERS_SUBMIT, api_cancel},
    {"/v1/servers", HAPI_M(HTTP_GET), USERS_SUBMIT, api_servers},
};

int fe_api_start(struct fe *fe)
{
    struct hapi_opts o = {.ring = fe->ring,
                          .http = {.tls = fe->http_tls, .lim = {.body_max = API_UPLOAD_MAX}},
                          .users = fe->users,
                          .pool = fe->pool,
                          .routes = api_routes,
                          .nroutes = sizeof api_routes / sizeof api_routes[0],
                          .arg = fe};
    char err[256];
    if (net_addr_parse_err(fe->o->http, NET_LISTEN, &o.addr, err, sizeof err) < 0) {
        log_error("frontend", "event=bad_option option=--http value=\"%s\" err=\"%s\"", fe->o->http,
                  err);
        return -EINVAL;
    }
    return hapi_start(&fe->api, &o);
}
