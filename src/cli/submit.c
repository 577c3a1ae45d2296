/*
 * The compute client: `convoy submit` (a job, its .npy streamed from disk,
 * a progress line while it runs, the results to a .npy, a summary), and
 * `convoy jobs`, `convoy job ID`, `convoy result ID` against the
 * front-end's HTTP API (docs/jobs.md). Each call is one hreq on a ring of
 * this thread, run to its end; between polls the command sleeps, so it
 * costs nothing while the chain works.
 */
#include "cli.h"
#include "client.h"

#include "convoy/hreq.h"
#include "convoy/prog.h"
#include "convoy/ring.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Exit codes (docs/cli.md). */
enum {
    SUB_OK = 0,
    SUB_ITEMS = 1,   /* the job ended with items not ok, or was cancelled */
    SUB_USAGE = 2,   /* bad command line */
    SUB_AUTH = 3,    /* 401, 403, 429 */
    SUB_REFUSED = 4, /* 400 (the job is malformed: the reason on stderr), 404, 413 */
    SUB_LOCAL = 5,   /* a local file could not be read or written */
    SUB_NET = 7,     /* connection, TLS or protocol failure; 5xx */
};

#define JOB_FILE_MAX (64u << 20) /* a job document read into memory */
#define ANSWER_MAX   (64u << 20) /* a JSON answer kept in memory */
#define POLL_MS      250

struct fe {
    struct cli_client cl;
    ring_t *ring;
    char headers[XGET_AUTH_MAX + 64];
};

/* One call's answer: in memory (JSON), or into fd (a result .npy). */
struct answer {
    ring_t *ring; /* stopped when the answer is complete */
    char *buf;
    size_t len, cap;
    int fd;
    int err, status;
    char why[256];
};

static int answer_body(void *arg, const uint8_t *p, size_t len)
{
    struct answer *a = arg;
    if (a->fd >= 0) {
        for (size_t off = 0; off < len;) {
            ssize_t n = write(a->fd, p + off, len - off);
            if (n < 0)
                return -errno;
            off += (size_t)n;
        }
        return 0;
    }
    if (a->len + len + 1 > a->cap) {
        size_t cap = a->cap ? a->cap : 4096;
        while (cap < a->len + len + 1)
            cap *= 2;
        char *b = cap <= ANSWER_MAX ? realloc(a->buf, cap) : NULL;
        if (b == NULL)
            return -ENOMEM;
        a->buf = b, a->cap = cap;
    }
    memcpy(a->buf + a->len, p, len);
    a->len += len;
    a->buf[a->len] = '\0';
    return 0;
}

static void answer_done(void *arg, int err, int status, const char *why)
{
    struct answer *a = arg;
    a->err = err, a->status = status;
    snprintf(a->why, sizeof a->why, "%s", why);
    ring_stop(a->ring);
}

/* Runs method target (body: mem then len bytes of fd, or none) to its end. */
static void fe_call(struct fe *f, enum http_method m, const char *target, const char *ctype,
                    const void *mem, size_t mem_len, int body_fd, uint64_t fd_len, struct answer *a)
{
    char headers[sizeof f->headers + 96];
    snprintf(headers, sizeof headers, "%s%s%s%s", f->headers, ctype ? "Content-Type: " : "",
             ctype ? ctype : "", ctype ? "\r\n" : "");
    struct hreq_opts o = {.url = &f->cl.url,
                          .tls = f->cl.tls,
                          .method = m,
                          .target = target,
                          .headers = headers,
                          .body = mem,
                          .body_len = mem_len,
                          .body_fd = body_fd,
                          .body_fd_len = fd_len};
    const struct hreq_sink s = {.body = answer_body, .done = answer_done, .arg = a};
    hreq_t *q;
    a->ring = f->ring;
    int rc = hreq_start(&q, f->ring, &o, &s);
    if (rc == 0 && (rc = ring_run(f->ring)) == 0)
        return;
    a->err = rc;
    snprintf(a->why, sizeof a->why, "request: %s", strerror(-rc));
}

/* The exit code for an answer, after saying what went wrong. */
static int fe_verdict(const char *cmd, const struct answer *a)
{
    if (a->err != 0) {
        fprintf(stderr, "convoy %s: %s\n", cmd, a->why);
        return SUB_NET;
    }
    if (a->status >= 200 && a->status < 300)
        return SUB_OK;
    const cJSON *doc = a->buf ? cJSON_Parse(a->buf) : NULL;
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "error"));
    fprintf(stderr, "convoy %s: %d %s%s%s", cmd, a->status, http_status_reason(a->status),
            msg || a->buf ? ": " : "",
            msg      ? msg
            : a->buf ? a->buf
                     : "");
    if (msg || (a->buf && a->len && a->buf[a->len - 1] != '\n') || !a->buf)
        fputc('\n', stderr);
    cJSON_Delete((cJSON *)doc);
    if (a->status == 401 || a->status == 403 || a->status == 429)
        return SUB_AUTH;
    return a->status >= 500 ? SUB_NET : SUB_REFUSED;
}

/* A fresh answer (ANSWER_INIT), or the memory of a used one given back. */
#define ANSWER_INIT                                                                                \
    {                                                                                              \
        .fd = -1                                                                                   \
    }

static void answer_reset(struct answer *a)
{
    free(a->buf);
    *a = (struct answer)ANSWER_INIT;
}

static int fe_open(struct fe *f, const char *cmd, const char *url, const char *cacert,
                   const char *user, bool plain_auth)
{
    memset(f, 0, sizeof *f);
    if (cli_client_setup(&f->cl, cmd, url, cacert, user, plain_auth) != XGET_OK)
        return SUB_USAGE;
    if (f->cl.auth[0])
        snprintf(f->headers, sizeof f->headers, "Authorization: %s\r\n", f->cl.auth);
    int rc = ring_create(&f->ring, 64);
    if (rc < 0) {
        fprintf(stderr, "convoy %s: io_uring: %s\n", cmd, strerror(-rc));
        cli_client_free(&f->cl);
        return SUB_NET;
    }
    return SUB_OK;
}

static void fe_close(struct fe *f)
{
    ring_destroy(f->ring);
    cli_client_free(&f->cl);
}

/* The options every compute client command takes. */
struct fe_args {
    const char *url, *cacert, *user;
    bool plain;
};

#define FE_OPTS(a)                                                                                 \
    CLI_OPT_STR("frontend", &(a).url, "URL", "https://HOST:PORT of the front-end", true),          \
        CLI_OPT_STR("cacert", &(a).cacert, "FILE", "the cluster's CA certificate (for https)",     \
                    false),                                                                        \
        CLI_OPT_STR("user", &(a).user, "NAME",                                                     \
                    "HTTP Basic user; password from CONVOY_PASSWORD or asked", false),             \
        CLI_OPT_FLAG("plain-auth", &(a).plain, "allow credentials over http://")

/* ---- submit ---- */

struct submit {
    const char *job_path, *out;
    bool json, no_wait, bar;
    char *job; /* the document */
    size_t job_len;
    int npy_fd; /* its "input", or -1 */
    uint64_t npy_len;
};

/* Reads the job and opens its "input" (relative to the job's folder). */
static int submit_load(struct submit *s)
{
    FILE *fp = fopen(s->job_path, "re");
    if (fp == NULL) {
        fprintf(stderr, "convoy submit: %s: %s\n", s->job_path, strerror(errno));
        return SUB_LOCAL;
    }
    s->job = malloc(JOB_FILE_MAX + 1);
    s->job_len = s->job ? fread(s->job, 1, JOB_FILE_MAX + 1, fp) : 0;
    bool bad = s->job == NULL || ferror(fp) || s->job_len > JOB_FILE_MAX;
    fclose(fp);
    if (bad) {
        fprintf(stderr, "convoy submit: %s: unreadable or over %u MiB\n", s->job_path,
                JOB_FILE_MAX >> 20);
        return SUB_LOCAL;
    }
    s->job[s->job_len] = '\0';
    cJSON *doc = cJSON_ParseWithLength(s->job, s->job_len);
    const char *input = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "input"));
    int rc = SUB_OK;
    if (input) {
        char dir[4096], path[8192];
        snprintf(dir, sizeof dir, "%s", s->job_path);
        snprintf(path, sizeof path, "%s/%s", dirname(dir), input);
        struct stat st;
        s->npy_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (s->npy_fd < 0 || fstat(s->npy_fd, &st) < 0) {
            fprintf(stderr, "convoy submit: %s: %s\n", path, strerror(errno));
            rc = SUB_LOCAL;
        } else
            s->npy_len = (uint64_t)st.st_size;
    }
    cJSON_Delete(doc); /* a document that is not JSON goes as it is: the front-end says why */
    return rc;
}

/* Posts the job: JSON alone, or the x-convoy-job framing (4-byte
 * big-endian JSON length, the JSON, the .npy). The id, or 0. */
static uint64_t submit_post(struct fe *f, struct submit *s, int *code)
{
    struct answer a = ANSWER_INIT;
    if (s->npy_fd >= 0) {
        char *framed = malloc(s->job_len + 4);
        if (framed == NULL) {
            *code = SUB_LOCAL;
            return 0;
        }
        uint32_t n = (uint32_t)s->job_len;
        unsigned char be[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                               (unsigned char)(n >> 8), (unsigned char)n};
        memcpy(framed, be, 4);
        memcpy(framed + 4, s->job, s->job_len);
        fe_call(f, HTTP_POST, "/v1/jobs", "application/x-convoy-job", framed, s->job_len + 4,
                s->npy_fd, s->npy_len, &a);
        free(framed);
    } else
        fe_call(f, HTTP_POST, "/v1/jobs", "application/json", s->job, s->job_len, -1, 0, &a);
    *code = fe_verdict("submit", &a);
    cJSON *doc = *code == SUB_OK ? cJSON_Parse(a.buf ? a.buf : "") : NULL;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
    uint64_t v = cJSON_IsNumber(id) && id->valuedouble >= 1 ? (uint64_t)id->valuedouble : 0;
    if (*code == SUB_OK && v == 0) {
        fprintf(stderr, "convoy submit: the front-end's answer names no job id\n");
        *code = SUB_NET;
    }
    cJSON_Delete(doc);
    answer_reset(&a);
    return v;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static bool finished(const char *state)
{
    return state && (strcmp(state, "done") == 0 || strcmp(state, "cancelled") == 0 ||
                     strcmp(state, "failed") == 0);
}

/* "items 512/1000  51%  240.3 items/s  c1 c2" on a terminal line. */
static void submit_draw(const cJSON *job, uint64_t t0)
{
    double items = num(job, "items"), done = num(job, "done");
    double secs = (double)(ring_now_ms() - t0) / 1000.0;
    fprintf(stderr, "\r\033[Kitems %.0f/%.0f  %3.0f%%  %.1f items/s  %s", done, items,
            items > 0 ? 100 * done / items : 0, secs > 0 ? done / secs : 0,
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(job, "state")) ?: "");
    fflush(stderr);
}

/* Polls the job until it ends; its last state document (caller frees). */
static cJSON *submit_wait(struct fe *f, uint64_t id, bool bar, int *code)
{
    char target[64];
    snprintf(target, sizeof target, "/v1/jobs/%llu", (unsigned long long)id);
    uint64_t t0 = ring_now_ms();
    for (;;) {
        struct answer a = ANSWER_INIT;
        fe_call(f, HTTP_GET, target, NULL, NULL, 0, -1, 0, &a);
        *code = fe_verdict("submit", &a);
        cJSON *job = *code == SUB_OK ? cJSON_Parse(a.buf ? a.buf : "") : NULL;
        answer_reset(&a);
        if (*code != SUB_OK)
            return NULL;
        const char *state = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(job, "state"));
        if (bar)
            submit_draw(job, t0);
        if (finished(state)) {
            if (bar)
                fputc('\n', stderr);
            return job;
        }
        cJSON_Delete(job);
        nanosleep(&(struct timespec){0, POLL_MS * 1000000L}, NULL);
    }
}

/* GET target into path (via path.part, renamed when whole). */
static int fetch_to(struct fe *f, const char *cmd, const char *target, const char *path)
{
    char part[4200];
    snprintf(part, sizeof part, "%s.part", path);
    struct answer a = ANSWER_INIT;
    a.fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (a.fd < 0) {
        fprintf(stderr, "convoy %s: %s: %s\n", cmd, part, strerror(errno));
        return SUB_LOCAL;
    }
    fe_call(f, HTTP_GET, target, NULL, NULL, 0, -1, 0, &a);
    int code = fe_verdict(cmd, &a);
    if (close(a.fd) < 0 && code == SUB_OK)
        code = SUB_LOCAL;
    a.fd = -1;
    if (code == SUB_OK && rename(part, path) < 0) {
        fprintf(stderr, "convoy %s: %s: %s\n", cmd, path, strerror(errno));
        code = SUB_LOCAL;
    }
    if (code != SUB_OK)
        unlink(part);
    answer_reset(&a);
    return code;
}

/* The summary: one JSON line, or a few words. */
static void submit_summary(const cJSON *job, uint64_t id, double seconds, bool json)
{
    const cJSON *servers = cJSON_GetObjectItemCaseSensitive(job, "servers");
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "job", (double)id);
        static const char *const keys[] = {"items", "ok", "singular", "invalid", NULL};
        for (size_t i = 0; keys[i]; i++)
            cJSON_AddNumberToObject(o, keys[i], num(job, keys[i]));
        cJSON_AddItemToObject(o, "servers",
                              servers ? cJSON_Duplicate(servers, 1) : cJSON_CreateObject());
        cJSON_AddNumberToObject(o, "redelegated", num(job, "redelegated"));
        cJSON_AddNumberToObject(o, "seconds", seconds);
        char *text = cJSON_PrintUnformatted(o);
        if (text)
            puts(text);
        free(text);
        cJSON_Delete(o);
        return;
    }
    printf("job %llu %s: %.0f items, %.0f ok, %.0f singular, %.0f invalid, %.0f redelegated, "
           "%.2f s\n",
           (unsigned long long)id,
           cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(job, "state")) ?: "?",
           num(job, "items"), num(job, "ok"), num(job, "singular"), num(job, "invalid"),
           num(job, "redelegated"), seconds);
    const cJSON *s;
    cJSON_ArrayForEach(s, servers) printf("  %-16s %.0f items\n", s->string, s->valuedouble);
}

static int submit_run(struct fe *f, struct submit *s)
{
    int code = submit_load(s);
    if (code != SUB_OK)
        return code;
    uint64_t t0 = ring_now_ms();
    uint64_t id = submit_post(f, s, &code);
    if (code != SUB_OK)
        return code;
    if (s->no_wait) {
        if (s->json)
            printf("{\"job\": %llu}\n", (unsigned long long)id);
        else
            printf("job %llu submitted\n", (unsigned long long)id);
        return SUB_OK;
    }
    cJSON *job = submit_wait(f, id, s->bar, &code);
    if (job == NULL)
        return code;
    const char *state = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(job, "state"));
    if (s->out && strcmp(state, "done") == 0) {
        char target[64];
        snprintf(target, sizeof target, "/v1/jobs/%llu/result.npy", (unsigned long long)id);
        code = fetch_to(f, "submit", target, s->out);
    }
    submit_summary(job, id, (double)(ring_now_ms() - t0) / 1000.0, s->json);
    if (code == SUB_OK && (strcmp(state, "done") != 0 || num(job, "ok") != num(job, "items")))
        code = SUB_ITEMS;
    cJSON_Delete(job);
    return code;
}

int cmd_submit(int argc, char **argv)
{
    struct fe_args fa = {0};
    struct submit s = {.npy_fd = -1};
    const struct cli_opt opts[] = {
        FE_OPTS(fa),
        CLI_OPT_STR_SHORT("output", 'o', &s.out, "OUT.npy", "write the inverses here"),
        CLI_OPT_FLAG("json", &s.json, "print the summary as one JSON object"),
        CLI_OPT_FLAG("no-wait", &s.no_wait, "print the job id and return at once"),
    };
    const struct cli_cmd cmd = {
        "submit", "--frontend URL [--cacert CA] [--user NAME] JOB.json [-o OUT.npy] [options]",
        "Submits a job (docs/jobs.md; its \"input\" .npy, relative to the job file, is\n"
        "streamed with it), shows its progress on a terminal, writes the inverses to\n"
        "OUT.npy in the input's order and prints a summary.\n\n"
        "Exit status: 0 every item ok, 1 an item not ok or the job cancelled, 2 usage,\n"
        "3 auth, 4 refused (the reason on stderr) or not found, 5 a local file,\n"
        "7 network.",
        opts, sizeof opts / sizeof opts[0]};
    char **args;
    int nargs;
    int parsed = cli_parse_args(&cmd, argc, argv, &args, &nargs, 1);
    if (parsed >= 0)
        return parsed;
    if (nargs > 1) {
        fprintf(stderr, "convoy submit: one job file at a time\n");
        return SUB_USAGE;
    }
    s.job_path = args[0];
    s.bar = isatty(STDERR_FILENO) && !s.json;
    struct fe f;
    int code = fe_open(&f, "submit", fa.url, fa.cacert, fa.user, fa.plain);
    if (code != SUB_OK)
        return code;
    code = submit_run(&f, &s);
    if (s.npy_fd >= 0)
        close(s.npy_fd);
    free(s.job);
    fe_close(&f);
    return code;
}

/* ---- jobs, job, result ---- */

/* GET target and print the JSON answer (pretty unless raw). */
static int show_json(struct fe *f, const char *cmd, const char *target, cJSON **keep)
{
    struct answer a = ANSWER_INIT;
    fe_call(f, HTTP_GET, target, NULL, NULL, 0, -1, 0, &a);
    int code = fe_verdict(cmd, &a);
    cJSON *doc = code == SUB_OK ? cJSON_Parse(a.buf ? a.buf : "") : NULL;
    if (code == SUB_OK && doc == NULL) {
        fprintf(stderr, "convoy %s: the answer is not JSON\n", cmd);
        code = SUB_NET;
    }
    answer_reset(&a);
    *keep = doc;
    return code;
}

static void print_json(const cJSON *doc, bool pretty)
{
    char *text = pretty ? cJSON_Print(doc) : cJSON_PrintUnformatted(doc);
    if (text)
        puts(text);
    free(text);
}

/* Parses and runs a client command with operands; run gets them. */
static int fe_command(const struct cli_cmd *cmd, struct fe_args *fa, int argc, char **argv,
                      int nargs_want, int (*run)(struct fe *f, char **args, void *arg), void *arg)
{
    char **args;
    int nargs;
    int parsed = cli_parse_args(cmd, argc, argv, &args, &nargs, nargs_want);
    if (parsed >= 0)
        return parsed;
    if (nargs > nargs_want) {
        fprintf(stderr, "convoy %s: too many operands\n", cmd->name);
        return SUB_USAGE;
    }
    struct fe f;
    int code = fe_open(&f, cmd->name, fa->url, fa->cacert, fa->user, fa->plain);
    if (code != SUB_OK)
        return code;
    code = run(&f, args, arg);
    fe_close(&f);
    return code;
}

static int jobs_run(struct fe *f, char **args, void *arg)
{
    (void)args;
    bool json = *(bool *)arg;
    cJSON *doc;
    int code = show_json(f, "jobs", "/v1/jobs", &doc);
    if (code != SUB_OK)
        return code;
    if (json) {
        print_json(doc, false);
    } else {
        printf("%-8s %-10s %-12s %8s %8s %8s %11s\n", "ID", "STATE", "USER", "ITEMS", "DONE", "OK",
               "REDELEGATED");
        const cJSON *j;
        cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(doc, "jobs"))
        {
            const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "state"));
            const char *us = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "user"));
            printf("%-8.0f %-10s %-12s %8.0f %8.0f %8.0f %11.0f\n", num(j, "id"), st ? st : "?",
                   us ? us : "", num(j, "items"), num(j, "done"), num(j, "ok"),
                   num(j, "redelegated"));
        }
    }
    cJSON_Delete(doc);
    return SUB_OK;
}

int cmd_jobs(int argc, char **argv)
{
    struct fe_args fa = {0};
    bool json = false;
    const struct cli_opt opts[] = {FE_OPTS(fa),
                                   CLI_OPT_FLAG("json", &json, "the front-end's JSON")};
    const struct cli_cmd cmd = {"jobs", "--frontend URL [--cacert CA] [--user NAME] [--json]",
                                "Lists the front-end's jobs: state, items done, redelegated.", opts,
                                sizeof opts / sizeof opts[0]};
    return fe_command(&cmd, &fa, argc, argv, 0, jobs_run, &json);
}

/* A job id operand: its decimal text, or NULL (said). */
static const char *job_id(const char *cmd, const char *s)
{
    if (s[0] == '\0' || strspn(s, "0123456789") != strlen(s) || strlen(s) > 19) {
        fprintf(stderr, "convoy %s: '%s' is not a job id\n", cmd, s);
        return NULL;
    }
    return s;
}

static int job_run(struct fe *f, char **args, void *arg)
{
    (void)arg;
    char target[64];
    const char *id = job_id("job", args[0]);
    if (id == NULL)
        return SUB_USAGE;
    snprintf(target, sizeof target, "/v1/jobs/%s", id);
    cJSON *doc;
    int code = show_json(f, "job", target, &doc);
    if (code == SUB_OK)
        print_json(doc, true);
    cJSON_Delete(doc);
    return code;
}

int cmd_job(int argc, char **argv)
{
    struct fe_args fa = {0};
    const struct cli_opt opts[] = {FE_OPTS(fa)};
    const struct cli_cmd cmd = {"job", "--frontend URL [--cacert CA] [--user NAME] ID",
                                "Shows job ID: state, progress, per-server counts, redelegated "
                                "items.",
                                opts, sizeof opts / sizeof opts[0]};
    return fe_command(&cmd, &fa, argc, argv, 1, job_run, NULL);
}

static int result_run(struct fe *f, char **args, void *arg)
{
    const char *out = *(const char **)arg;
    char target[64];
    const char *id = job_id("result", args[0]);
    if (id == NULL)
        return SUB_USAGE;
    if (out) {
        snprintf(target, sizeof target, "/v1/jobs/%s/result.npy", id);
        return fetch_to(f, "result", target, out);
    }
    snprintf(target, sizeof target, "/v1/jobs/%s/result", id);
    cJSON *doc;
    int code = show_json(f, "result", target, &doc);
    if (code == SUB_OK)
        print_json(doc, false);
    cJSON_Delete(doc);
    return code;
}

int cmd_result(int argc, char **argv)
{
    struct fe_args fa = {0};
    const char *out = NULL;
    const struct cli_opt opts[] = {
        FE_OPTS(fa),
        CLI_OPT_STR_SHORT("output", 'o', &out, "OUT.npy", "the inverses as .npy (else JSON)")};
    const struct cli_cmd cmd = {"result",
                                "--frontend URL [--cacert CA] [--user NAME] ID [-o OUT.npy]",
                                "Fetches job ID's results: the inverses as .npy with -o, else "
                                "the JSON result\n(status, residual, server and time per item).",
                                opts, sizeof opts / sizeof opts[0]};
    return fe_command(&cmd, &fa, argc, argv, 1, result_run, &out);
}
