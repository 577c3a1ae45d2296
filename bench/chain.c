/*
 * bench/chain — the compute chain end to end against the kernel in one
 * process, same run. One key=value line per row:
 *
 *   chain openssl=… cpus=… runs=… weight=… tls_cipher=TLS_AES_128_GCM_SHA256
 *   chain n=… items=… mode=npy|generate edge=tls|shm servers=2 chain_ips=… local_ips=…
 *         ratio=… finish_spread=… bytes_moved=… tls_mbps=… bound_ips=… of_bound=…
 *         local_item_ips=… upload_s=…
 *
 * The design is simple: each run of a row starts its own cluster of real
 * processes on 127.0.0.1 with free ports, in the bench's temporary folder:
 * a `convoy frontend` (the API over plain HTTP, --insecure-http; the chain
 * links are TLS whatever it says) and two `convoy compute --threads 1`,
 * every daemon with `--edge tls` for an edge=tls row, so that matrices
 * cross TLS on every edge, or the default (auto) for an edge=shm row,
 * where they go through shared-memory lanes (all of it is on one host),
 * with a PKI and a users file made by `convoy pki` and `convoy user`. Once
 * GET /v1/servers lists both, one job goes in through POST /v1/jobs (an
 * .npy job framed as application/x-convoy-job and streamed with sendfile),
 * and GET /v1/jobs/ID is polled every POLL_MS until its state is done: the
 * chain's time runs from the first byte of the POST to that answer. The
 * cluster is then stopped by its PIDs and its spool, its folder and its
 * shared-memory state are removed, so no run sees another's files.
 *
 * The reference is the kernel alone, in this process, on 2 lanes (the two
 * servers' total): gj_invert_batch for n ≤ GJ_GROUP_N_MAX, else gj_invert
 * per matrix with a pool of 2, on the first items of the same matrices
 * (jgen's `uniform` items of the row's seed, which the .npy holds and a
 * generated job's servers make), timing the kernel calls only. Above
 * GJ_GROUP_N_MAX, local_item_ips is the same items split across the 2
 * lanes instead (gj_invert_batch), which is how the two one-thread
 * servers share them (0 at or below, where local_ips is that already).
 * Chain and reference alternate run by run; each row prints the medians
 * of RUNS_MAX runs, and ratio is the median of the runs' chain/local
 * ratios. upload_s is the part of the chain's time until the POST's 201.
 *
 * finish_spread: each poll records the per-server item counts the job
 * reports ("servers"); a server's finish time is the first poll at which
 * its count had reached its final value, and the spread is the last finish
 * minus the first over the chain's time (resolution POLL_MS). bytes_moved
 * counts matrices on chain links and back: every input item from the
 * front-end to the head, the items the head forwarded to the tail, and
 * every inverse back unless "output" is none (the client's upload and the
 * bytes of the messages' headers are not counted).
 *
 * tls_mbps is one core sealing 16 KiB records with AES-128-GCM, the suite
 * convoy's TLS prefers, measured each run. bound_ips is what 2 cores could
 * do if an item cost only its kernel time (2 core-seconds over the better
 * of local_ips and local_item_ips) and sealing plus opening its bytes on
 * TLS links (2 · bytes_moved / items at tls_mbps), and of_bound is
 * chain_ips over it.
 *
 * Options: -q (quick: 1 run, an eighth of the items), -r ROW (only row ROW,
 * 1 to 4 in the order above; repeatable).
 */
#include "convoy/gj.h"
#include "convoy/jgen.h"
#include "convoy/log.h"
#include "convoy/net.h"
#include "convoy/npy.h"
#include "convoy/pool.h"
#include "convoy/shm.h"
#include "../tests/common/fixture.h"
#include "common.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define RUNS_MAX     3
#define SERVERS      2
#define LANES        2 /* the servers' threads in all: the reference's lanes */
#define WEIGHT       "10"
#define SEED         7
#define USER         "bench"
#define PASS         "benchpass"
#define RUN_S        60.0  /* any one command */
#define UP_S         20.0  /* the cluster lists both servers within this */
#define JOB_S        120.0 /* a job is done within this */
#define POLL_MS      20u
#define POLLS_MAX    6001u       /* JOB_S at one poll per POLL_MS */
#define ANSWER_MAX   (64u << 20) /* the longest HTTP answer read */
#define CIPHER_BYTES (256ull << 20)
#define REF_S        2.5 /* a reference sample stops after this much kernel time */

struct row {
    uint32_t n;
    uint64_t items;
    bool npy;           /* an .npy input with "output" npy; else generated, "output" none */
    uint64_t ref_items; /* at most this many for the reference */
    bool shm;           /* --edge auto (lanes on this host); else --edge tls */
};

struct bench {
    const char *dir;   /* the temporary folder (bench_start) */
    char pki[128];     /* dir/pki */
    char users[128];   /* dir/users: USER, role submit */
    char convoy[4096]; /* absolute path of build/convoy */
    char auth[96];     /* "Authorization: Basic …" */
    unsigned runs;
    unsigned div; /* item counts divided by this (-q) */
    pool_t *pool; /* the reference's lanes */
};

static struct bench B;
static char live_state[64]; /* the front-end running now, "" when none */

/* ---- HTTP ---- */

struct answer {
    int status;
    char *body; /* NUL-terminated, malloc'd */
    size_t len;
};

static void send_file(int sock, int fd, uint64_t len)
{
    off_t off = 0;
    while ((uint64_t)off < len) {
        ssize_t n = sendfile(sock, fd, &off, len - (uint64_t)off);
        if (n <= 0)
            bench_die("sendfile: %s", n < 0 ? strerror(errno) : "nothing sent");
    }
}

/* The answer's Content-Length, once its headers are in; -1 before. */
static long long answer_length(const char *buf, size_t len, size_t *head)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL)
        return -1;
    *head = (size_t)(end - buf) + 4;
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    return cl && cl < end ? strtoll(cl + 17, NULL, 10) : 0;
}

/* Reads one answer whole (headers and Content-Length bytes). */
static struct answer answer_read(int fd)
{
    size_t cap = 65536, len = 0, head = 0;
    char *buf = malloc(cap);
    long long want = -1;
    while (buf && (want < 0 || len < head + (size_t)want)) {
        if (len + 1 >= cap) {
            if (cap >= ANSWER_MAX)
                bench_die("an answer over %u bytes", ANSWER_MAX);
            char *more = realloc(buf, cap * 2);
            if (more == NULL)
                bench_die("out of memory");
            buf = more;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n <= 0)
            bench_die("recv: %s", n < 0 ? strerror(errno) : "the front-end closed");
        len += (size_t)n;
        buf[len] = '\0';
        if (want < 0)
            want = answer_length(buf, len, &head);
    }
    if (buf == NULL)
        bench_die("out of memory");
    struct answer a = {.body = buf + head, .len = len - head};
    if (sscanf(buf, "HTTP/1.1 %d", &a.status) != 1)
        bench_die("not an HTTP answer: %.80s", buf);
    memmove(buf, buf + head, a.len);
    buf[a.len] = '\0';
    a.body = buf;
    return a;
}

/*
 * One request on a fresh connection to the front-end's API: head bytes of
 * body, then file_len bytes of file_fd (-1: none). Returns the answer,
 * whose body the caller frees.
 */
static struct answer http_call(const struct net_addr *api, const char *method, const char *path,
                               const char *ctype, const void *body, size_t body_len, int file_fd,
                               uint64_t file_len)
{
    char req[512];
    int fd = bench_dial(api, 0);
    int len =
        snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: bench\r\n%s\r\nConnection: close\r\n",
                 method, path, B.auth);
    if (ctype)
        len += snprintf(req + len, sizeof req - (size_t)len,
                        "Content-Type: %s\r\nContent-Length: %llu\r\n", ctype,
                        (unsigned long long)(body_len + file_len));
    len += snprintf(req + len, sizeof req - (size_t)len, "\r\n");
    bench_send_all(fd, req, (size_t)len);
    if (body_len)
        bench_send_all(fd, body, body_len);
    if (file_fd >= 0)
        send_file(fd, file_fd, file_len);
    struct answer a = answer_read(fd);
    close(fd);
    return a;
}

static cJSON *json_of(struct answer *a, int want, const char *what)
{
    if (a->status != want)
        bench_die("%s: HTTP %d (want %d): %.300s", what, a->status, want, a->body);
    cJSON *o = cJSON_Parse(a->body);
    if (o == NULL)
        bench_die("%s: not JSON: %.300s", what, a->body);
    free(a->body);
    return o;
}

static void auth_header(void)
{
    static const char cred[] = USER ":" PASS;
    unsigned char b64[64];
    if (EVP_EncodeBlock(b64, (const unsigned char *)cred, (int)sizeof cred - 1) <= 0)
        bench_die("base64 failed");
    snprintf(B.auth, sizeof B.auth, "Authorization: Basic %s", (const char *)b64);
}

/* ---- the cluster ---- */

struct cluster {
    char dir[160]; /* its folder: spool and logs */
    char control[32], http[32], state[64];
    struct net_addr api;
    pid_t fe, cs[SERVERS];
    char order[SERVERS][16]; /* the chain from head to tail, as /v1/servers lists it */
    const char *edge;        /* "auto" or "tls" */
};

static void log_path(const struct cluster *c, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s.log", c->dir, name);
}

static void frontend_start(struct cluster *c)
{
    char spool[200], log[200];
    snprintf(spool, sizeof spool, "%s/spool", c->dir);
    log_path(c, "frontend", log, sizeof log);
    char *argv[] = {B.convoy,      "frontend", "--pki",   B.pki,           "--control",
                    c->control,    "--http",   c->http,   "--users",       B.users,
                    "--data",      spool,      "--state", c->state,        "--insecure-http",
                    "--log-level", "warn",     "--edge",  (char *)c->edge, NULL};
    c->fe = bench_daemon_start(argv, log);
    snprintf(live_state, sizeof live_state, "%s", c->state);
}

static void compute_start(struct cluster *c, unsigned i)
{
    char name[8], log[200];
    snprintf(name, sizeof name, "c%u", i + 1);
    log_path(c, name, log, sizeof log);
    char *argv[] = {
        B.convoy,   "compute",       "--pki", B.pki,      "--name", name,          "--frontend",
        c->control, "--threads",     "1",     "--weight", WEIGHT,   "--log-level", "warn",
        "--edge",   (char *)c->edge, NULL};
    c->cs[i] = bench_daemon_start(argv, log);
}

static void cluster_logs(const struct cluster *c)
{
    static const char *const names[] = {"frontend", "c1", "c2"};
    char log[200];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        log_path(c, names[i], log, sizeof log);
        bench_log_show(log);
    }
}

/* How many servers GET /v1/servers lists; their names into c->order. */
static int servers_listed(struct cluster *c)
{
    struct answer a = http_call(&c->api, "GET", "/v1/servers", NULL, NULL, 0, -1, 0);
    cJSON *o = json_of(&a, 200, "GET /v1/servers");
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "servers"), *s;
    int k = 0;
    cJSON_ArrayForEach(s, arr)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(s, "name");
        if (k < SERVERS && cJSON_IsString(name))
            snprintf(c->order[k], sizeof c->order[k], "%s", name->valuestring);
        k++;
    }
    cJSON_Delete(o);
    return k;
}

static void cluster_start(struct cluster *c, unsigned seq, bool shm)
{
    memset(c, 0, sizeof *c);
    c->edge = shm ? "auto" : "tls";
    snprintf(c->dir, sizeof c->dir, "%s/cluster-%u", B.dir, seq);
    if (mkdir(c->dir, 0700) != 0)
        bench_die("mkdir %s: %s", c->dir, strerror(errno));
    snprintf(c->control, sizeof c->control, "127.0.0.1:%u", bench_free_port());
    snprintf(c->http, sizeof c->http, "127.0.0.1:%u", bench_free_port());
    snprintf(c->state, sizeof c->state, "bench-chain-%d-%u", (int)getpid(), seq);
    if (net_addr_parse(c->http, &c->api) < 0)
        bench_die("net_addr_parse %s", c->http);
    frontend_start(c);
    bench_port_wait(&c->api, "the front-end", UP_S);
    for (unsigned i = 0; i < SERVERS; i++)
        compute_start(c, i);
    double end = bench_now_s() + UP_S;
    while (servers_listed(c) < SERVERS) {
        if (bench_now_s() > end) {
            cluster_logs(c);
            bench_die("GET /v1/servers did not list %d servers within %.0f s", SERVERS, UP_S);
        }
        usleep(50 * 1000);
    }
}

static void cluster_stop(struct cluster *c)
{
    for (unsigned i = 0; i < SERVERS; i++)
        bench_daemon_stop(c->cs[i]);
    bench_daemon_stop(c->fe);
    shm_remove(c->state);
    live_state[0] = '\0';
    fx_rmtree(c->dir);
}

/* The PID of the server the chain lists as name. */
static pid_t server_pid(const struct cluster *c, const char *name)
{
    for (unsigned i = 0; i < SERVERS; i++) {
        char mine[8];
        snprintf(mine, sizeof mine, "c%u", i + 1);
        if (strcmp(name, mine) == 0)
            return c->cs[i];
    }
    bench_die("the chain lists a server \"%.16s\" the bench did not start", name);
}

/* bench_die's hook: the front-end it stopped leaves its state behind. */
static void state_remove(void)
{
    if (live_state[0])
        shm_remove(live_state);
}

/* ---- a job ---- */

struct poll_rec {
    double t;                /* seconds since the submission began */
    uint64_t count[SERVERS]; /* items each server (in c->order) had done */
};

struct chain_run {
    double secs;             /* submission to done */
    double upload;           /* submission to its 201 */
    double cpu[1 + SERVERS]; /* CPU seconds of the front-end and each server (chain order) */
    double spread;           /* finish_spread */
    uint64_t per[SERVERS];   /* items done by each server, in chain order */
};

static uint64_t job_submit(const struct cluster *c, const struct row *r, const char *npy)
{
    char json[256];
    struct answer a;
    if (r->npy) {
        int len = snprintf(json + 4, sizeof json - 4, "{\"op\":\"invert\",\"input\":\"in.npy\"}");
        uint32_t be = htonl((uint32_t)len);
        memcpy(json, &be, 4);
        int fd = open(npy, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0)
            bench_die("open %s: %s", npy, strerror(errno));
        a = http_call(&c->api, "POST", "/v1/jobs", "application/x-convoy-job", json,
                      (size_t)len + 4, fd, (uint64_t)st.st_size);
        close(fd);
    } else {
        int len = snprintf(json, sizeof json,
                           "{\"op\":\"invert\",\"generate\":{\"count\":%llu,\"n\":%u,\"seed\":%d,"
                           "\"kind\":\"uniform\"},\"output\":\"none\"}",
                           (unsigned long long)r->items, r->n, SEED);
        a = http_call(&c->api, "POST", "/v1/jobs", "application/json", json, (size_t)len, -1, 0);
    }
    cJSON *o = json_of(&a, 201, "POST /v1/jobs");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    if (!cJSON_IsNumber(id))
        bench_die("POST /v1/jobs: no id");
    uint64_t v = (uint64_t)id->valuedouble;
    cJSON_Delete(o);
    return v;
}

/* One poll of the job into rec; whether it is done. */
static bool job_poll(const struct cluster *c, uint64_t id, struct poll_rec *rec)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%llu", (unsigned long long)id);
    struct answer a = http_call(&c->api, "GET", path, NULL, NULL, 0, -1, 0);
    cJSON *o = json_of(&a, 200, "GET /v1/jobs/ID");
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(o, "state");
    const cJSON *srv = cJSON_GetObjectItemCaseSensitive(o, "servers");
    if (!cJSON_IsString(state))
        bench_die("GET %s: no state", path);
    if (strcmp(state->valuestring, "cancelled") == 0)
        bench_die("the job was cancelled");
    for (unsigned i = 0; i < SERVERS; i++) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(srv, c->order[i]);
        rec->count[i] = cJSON_IsNumber(k) ? (uint64_t)k->valuedouble : 0;
    }
    bool done = strcmp(state->valuestring, "done") == 0;
    cJSON_Delete(o);
    return done;
}

/* The result's per-item records: every item ok, its server one of ours. */
static void job_check(const struct cluster *c, uint64_t id, const struct row *r,
                      const struct chain_run *cr)
{
    char path[80];
    uint64_t per[SERVERS] = {0}, ok = 0;
    snprintf(path, sizeof path, "/v1/jobs/%llu/result", (unsigned long long)id);
    struct answer a = http_call(&c->api, "GET", path, NULL, NULL, 0, -1, 0);
    cJSON *o = json_of(&a, 200, "GET /v1/jobs/ID/result");
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o, "results"))
    {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(it, "status");
        const cJSON *sv = cJSON_GetObjectItemCaseSensitive(it, "server");
        ok += cJSON_IsString(st) && strcmp(st->valuestring, "ok") == 0;
        for (unsigned i = 0; i < SERVERS && cJSON_IsString(sv); i++)
            per[i] += strcmp(sv->valuestring, c->order[i]) == 0;
    }
    cJSON_Delete(o);
    if (ok != r->items || per[0] != cr->per[0] || per[1] != cr->per[1])
        bench_die("job %llu: %llu of %llu items ok, per server %llu+%llu (the job said %llu+%llu)",
                  (unsigned long long)id, (unsigned long long)ok, (unsigned long long)r->items,
                  (unsigned long long)per[0], (unsigned long long)per[1],
                  (unsigned long long)cr->per[0], (unsigned long long)cr->per[1]);
}

/* Each server's finish: the first poll with its final count. */
static double finish_spread(const struct poll_rec *p, unsigned np, double secs)
{
    double first = secs, last = 0;
    for (unsigned s = 0; s < SERVERS; s++) {
        unsigned k = np - 1;
        while (k > 0 && p[k - 1].count[s] == p[np - 1].count[s])
            k--;
        first = p[k].t < first ? p[k].t : first;
        last = p[k].t > last ? p[k].t : last;
    }
    return (last - first) / secs;
}

static struct chain_run chain_sample(const struct row *r, const char *npy, unsigned seq)
{
    static struct poll_rec polls[POLLS_MAX];
    struct cluster c;
    struct chain_run cr = {0};
    unsigned np = 0;
    cluster_start(&c, seq, r->shm);
    pid_t who[1 + SERVERS] = {c.fe};
    for (unsigned i = 0; i < SERVERS; i++)
        who[1 + i] = server_pid(&c, c.order[i]);
    for (unsigned i = 0; i <= SERVERS; i++)
        cr.cpu[i] = -bench_cpu_s(who[i]);
    double t0 = bench_now_s();
    uint64_t id = job_submit(&c, r, npy);
    cr.upload = bench_now_s() - t0;
    for (bool done = false; !done;) {
        if (np == POLLS_MAX || bench_now_s() - t0 > JOB_S) {
            cluster_logs(&c);
            bench_die("n=%u: job %llu not done within %.0f s", r->n, (unsigned long long)id, JOB_S);
        }
        done = job_poll(&c, id, &polls[np]);
        polls[np].t = bench_now_s() - t0;
        cr.secs = polls[np++].t;
        if (!done)
            usleep(POLL_MS * 1000);
    }
    for (unsigned i = 0; i < SERVERS; i++)
        cr.per[i] = polls[np - 1].count[i];
    cr.spread = finish_spread(polls, np, cr.secs);
    for (unsigned i = 0; i <= SERVERS; i++)
        cr.cpu[i] += bench_cpu_s(who[i]);
    job_check(&c, id, r, &cr);
    cluster_stop(&c);
    return cr;
}

/* ---- the reference ---- */

/* Item i of the row: from the .npy's data (mapped) or made by jgen. */
static void item_get(const struct row *r, const double *data, uint64_t i, double *out)
{
    size_t nn = (size_t)r->n * r->n;
    if (data)
        memcpy(out, data + i * nn, nn * sizeof(double));
    else if (jgen_item("uniform", SEED, i, r->n, out) != 0)
        bench_die("jgen_item failed");
}

/*
 * Items per second of the kernel on LANES lanes over the row's first
 * items, kernel calls timed only, stopped after REF_S: by_item splits
 * items across the lanes (gj_invert_batch), else each matrix is split
 * across them (gj_invert) as a server with 2 threads does above
 * GJ_GROUP_N_MAX.
 */
static double local_sample(const struct row *r, const double *data, bool by_item)
{
    size_t nn = (size_t)r->n * r->n;
    uint64_t chunk = by_item ? 64 : 1;
    double *m = malloc(chunk * nn * sizeof(double));
    struct gj_item it[64];
    struct gj_opts o = {.pool = B.pool, .threads = LANES};
    double t = 0;
    uint64_t done = 0;
    if (m == NULL)
        bench_die("out of memory");
    while (done < r->ref_items && t < REF_S) {
        uint64_t k = r->ref_items - done < chunk ? r->ref_items - done : chunk;
        for (uint64_t j = 0; j < k; j++) {
            item_get(r, data, done + j, m + j * nn);
            it[j] = (struct gj_item){.a = m + j * nn, .n = r->n};
        }
        double t0 = bench_now_s();
        int ok = by_item ? gj_invert_batch(it, k, &o) : gj_invert(m, r->n, &o, NULL) == GJ_OK;
        t += bench_now_s() - t0;
        if (ok != (int)k)
            bench_die("n=%u: the kernel inverted %d of %llu items", r->n, ok,
                      (unsigned long long)k);
        done += k;
    }
    free(m);
    return (double)done / t;
}

/* The reference: per item up to GJ_GROUP_N_MAX, per matrix above, and
 * there also per item into *by_item (0 at or below). */
static double local_ref(const struct row *r, const double *data, double *by_item)
{
    bool small = r->n <= GJ_GROUP_N_MAX;
    *by_item = small ? 0 : local_sample(r, data, true);
    return local_sample(r, data, small);
}

/* ---- rows ---- */

/* The row's matrices as dir/in.npy, mapped for the reference (*map). */
static void npy_make(const struct row *r, char *path, size_t cap, double **map, size_t *map_len)
{
    uint8_t hdr[128];
    size_t nn = (size_t)r->n * r->n;
    double *m = malloc(nn * sizeof(double));
    int hlen = npy_write_header(r->items, r->n, hdr, sizeof hdr);
    snprintf(path, cap, "%s/in.npy", B.dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (m == NULL || hlen <= 0 || fd < 0 || write(fd, hdr, (size_t)hlen) != hlen)
        bench_die("%s: %s", path, strerror(errno));
    for (uint64_t i = 0; i < r->items; i++) {
        item_get(r, NULL, i, m);
        if (write(fd, m, nn * sizeof(double)) != (ssize_t)(nn * sizeof(double)))
            bench_die("write %s: %s", path, strerror(errno));
    }
    free(m);
    *map_len = (size_t)hlen + r->items * nn * sizeof(double);
    uint8_t *p = mmap(NULL, *map_len, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        bench_die("mmap %s: %s", path, strerror(errno));
    close(fd);
    *map = (double *)(p + hlen);
}

static uint64_t moved(const struct row *r, const struct chain_run *cr)
{
    uint64_t m = (uint64_t)r->n * r->n * sizeof(double);
    if (!r->npy)
        return 0;                                  /* generated where computed, "output" none */
    return (r->items + cr->per[1] + r->items) * m; /* to the head, head to tail, inverses back */
}

static void chain_row(const struct row *r, unsigned *seq)
{
    char npy[160] = "";
    double *data = NULL;
    size_t map_len = 0;
    double cips[RUNS_MAX], lips[RUNS_MAX], ratio[RUNS_MAX], spread[RUNS_MAX], tls[RUNS_MAX],
        bound[RUNS_MAX], of[RUNS_MAX], bytes[RUNS_MAX], iips[RUNS_MAX], up[RUNS_MAX];
    if (r->npy)
        npy_make(r, npy, sizeof npy, &data, &map_len);
    for (unsigned i = 0; i < B.runs; i++) {
        struct chain_run cr;
        if (i % 2 == 0) {
            cr = chain_sample(r, npy, (*seq)++);
            lips[i] = local_ref(r, data, &iips[i]);
        } else {
            lips[i] = local_ref(r, data, &iips[i]);
            cr = chain_sample(r, npy, (*seq)++);
        }
        up[i] = cr.upload;
        tls[i] = bench_aead_mbps(EVP_aes_128_gcm(), CIPHER_BYTES);
        cips[i] = (double)r->items / cr.secs;
        ratio[i] = cips[i] / lips[i];
        spread[i] = cr.spread;
        bytes[i] = (double)moved(r, &cr);
        double kernel_ips = iips[i] > lips[i] ? iips[i] : lips[i];
        double sealed = r->shm ? 0 : bytes[i]; /* through lanes, nothing is */
        double per_item_s = 1 / kernel_ips + sealed / (double)r->items / (tls[i] * 1e6);
        bound[i] = 1 / per_item_s;
        of[i] = cips[i] / bound[i];
        fprintf(
            stderr,
            "chain: n=%u %s %s run %u: %.1f s (upload %.1f s), %.0f items/s (%s %llu, %s %llu), "
            "local %.0f/s, "
            "spread %.3f, cipher %.0f MB/s, cpu s: front %.1f head %.1f tail %.1f\n",
            r->n, r->npy ? "npy" : "generate", r->shm ? "shm" : "tls", i + 1, cr.secs, cr.upload,
            cips[i], "head", (unsigned long long)cr.per[0], "tail", (unsigned long long)cr.per[1],
            lips[i], spread[i], tls[i], cr.cpu[0], cr.cpu[1], cr.cpu[2]);
    }
    printf("chain n=%u items=%llu mode=%s edge=%s servers=%d chain_ips=%.1f local_ips=%.1f "
           "ratio=%.2f finish_spread=%.3f bytes_moved=%.0f tls_mbps=%.0f bound_ips=%.1f "
           "of_bound=%.2f local_item_ips=%.1f upload_s=%.2f\n",
           r->n, (unsigned long long)r->items, r->npy ? "npy" : "generate", r->shm ? "shm" : "tls",
           SERVERS, bench_median(cips, B.runs), bench_median(lips, B.runs),
           bench_median(ratio, B.runs), bench_median(spread, B.runs), bench_median(bytes, B.runs),
           bench_median(tls, B.runs), bench_median(bound, B.runs), bench_median(of, B.runs),
           bench_median(iips, B.runs), bench_median(up, B.runs));
    fflush(stdout);
    if (data) {
        munmap((uint8_t *)data - (map_len - r->items * (size_t)r->n * r->n * sizeof(double)),
               map_len);
        unlink(npy);
    }
}

/* ---- setup ---- */

/* The PKI and the users file, through convoy's own commands. */
static void pki_users(void)
{
    static const char *const certs[][2] = {
        {"frontend", "frontend"}, {"c1", "compute"}, {"c2", "compute"}};
    bench_pki_users(B.convoy, B.pki, certs, sizeof certs / sizeof certs[0], B.users, USER, PASS,
                    "submit");
}

static void setup(void)
{
    const char *bin = getenv("CONVOY_BIN");
    if (realpath(bin && *bin ? bin : "build/convoy", B.convoy) == NULL)
        bench_die("build/convoy: %s (run from the repository, after make)", strerror(errno));
    B.dir = bench_start("chain");
    bench_at_die(state_remove);
    snprintf(B.pki, sizeof B.pki, "%s/pki", B.dir);
    snprintf(B.users, sizeof B.users, "%s/users", B.dir);
    pki_users();
    auth_header();
    if (pool_create(&B.pool, LANES, 64) < 0)
        bench_die("pool_create failed");
}

int main(int argc, char **argv)
{
    /* n, items, npy, reference items: each run of the chain takes 5–20 s here */
    static const struct row rows[] = {
        {1024, 120, true, 120, false},
        {256, 10000, false, 4000, false},
        {256, 3000, true, 3000, true},
        {256, 3000, true, 3000, false},
    };
    log_set_level(LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    B.runs = RUNS_MAX;
    B.div = 1;
    int opt;
    unsigned only = 0; /* bit i: row i+1 asked for; 0: all */
    const size_t nrows = sizeof rows / sizeof rows[0];
    while ((opt = getopt(argc, argv, "qr:")) != -1) {
        long row = opt == 'r' ? strtol(optarg, NULL, 10) : 0;
        if (opt == 'q') {
            B.runs = 1;
            B.div = 8;
        } else if (row >= 1 && (size_t)row <= nrows) {
            only |= 1u << (row - 1);
        } else {
            fprintf(stderr, "usage: %s [-q] [-r 1..%zu]...\n", argv[0], nrows);
            return 2;
        }
    }
    setup();
    printf("chain openssl=%s cpus=%ld runs=%u weight=%s tls_cipher=TLS_AES_128_GCM_SHA256\n",
           OpenSSL_version(OPENSSL_VERSION_STRING), sysconf(_SC_NPROCESSORS_ONLN), B.runs, WEIGHT);
    fflush(stdout);
    unsigned seq = 0;
    for (size_t i = 0; i < nrows; i++) {
        if (only && !(only & 1u << i))
            continue;
        struct row r = rows[i];
        r.items /= B.div;
        r.ref_items = r.ref_items / B.div < r.items ? r.ref_items / B.div : r.items;
        chain_row(&r, &seq);
    }
    pool_destroy(B.pool);
    bench_end();
    return 0;
}
