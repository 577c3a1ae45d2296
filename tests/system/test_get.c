/*
 * get: build/convoy get and convoy loadgen get as a user runs them, against
 * a balancer front and a file server played by this test on the HTTP
 * server module (httpd, over TLS with a CA of the test's own), on a ring in
 * a thread of its own. The fake balancer checks HTTP Basic and redirects
 * to the fake file server, which serves a 4 MiB file with ETag, ranges and
 * Repr-Digest. What is asserted is what a user sees: the exit code of each
 * failure, OUT and no leftovers on success, nothing drawn when stderr is not
 * a terminal, a download interrupted with SIGINT continued by the next run
 * from where it stopped, and loadgen's JSON.
 */
#include "../common/fixture.h"
#include "convoy/httpd.h"
#include "convoy/log.h"
#include "convoy/xget.h"
#include "harness.h"

#include <CUnit/CUnit.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FILE_LEN (4u << 20)
#define ETAG     "\"x-4m\""
#define AUTH     "Basic YWxpY2U6c2VjcmV0" /* alice:secret */
#define BREAK_AT (64u * 1024)

enum bal_mode { BAL_OK, BAL_NO_SERVER, BAL_DONE };

static struct {
    ring_t *ring;
    pthread_t thread;
    httpd_t *bal, *fs;
    tls_ctx_t *tls;
    int fd;
    char dir[64], file[128], ca[160];
    char bal_url[64], fs_hp[48];
    uint8_t sha[32];
    int bal_mode, bad_digest; /* set by the test between commands */
    int break_next;           /* the next file answer breaks after BREAK_AT bytes */
    int short_fd;             /* the served file's first BREAK_AT bytes */
    char last_range[64];      /* the file server's last Range, "" for none */
    int fs_requests;
} g;

/* ---- the fake servers (on the ring's thread) ---- */

static void bal_handle(httpd_xchg_t *x, void *arg)
{
    (void)arg;
    const http_req_t *q = httpd_req(x);
    const char *auth = http_req_header(q, "Authorization", NULL);
    if (auth == NULL || strcmp(auth, AUTH) != 0) {
        httpd_header(x, "WWW-Authenticate", "Basic realm=\"convoy\"");
        httpd_reply_text(x, 401, NULL);
        return;
    }
    if (__atomic_load_n(&g.bal_mode, __ATOMIC_ACQUIRE) == BAL_NO_SERVER) {
        httpd_header(x, "Retry-After", "0");
        httpd_reply_text(x, 503, "no server up");
        return;
    }
    if (strcmp(http_req_path(q), "/f/x.bin") != 0) {
        httpd_reply_text(x, 404, NULL);
        return;
    }
    if (__atomic_load_n(&g.bal_mode, __ATOMIC_ACQUIRE) == BAL_DONE &&
        http_req_query_raw(q)[0] != '\0') { /* as the balancer says of a done record */
        httpd_reply_text(x, 409, "transfer t1 cannot be resumed");
        return;
    }
    httpd_header(x, "Location", "https://%s/f/x.bin?t=ticket", g.fs_hp);
    httpd_header(x, "X-Convoy-Transfer", "t1");
    httpd_header(x, "X-Convoy-Decision", "policy=least-conn server=%s active=0 weight=1",
                 http_req_query_raw(q)[0] != '\0' ? "fs2" : "fs1"); /* a resume: "another" */
    httpd_reply(x, 307, NULL, NULL, 0);
}

static void fs_done(void *arg, int err)
{
    (void)arg, (void)err;
}

static void fs_handle(httpd_xchg_t *x, void *arg)
{
    (void)arg;
    const http_req_t *q = httpd_req(x);
    const char *range = http_req_header(q, "Range", NULL);
    char dig[64], cr[96];
    uint8_t sha[32];
    __atomic_add_fetch(&g.fs_requests, 1, __ATOMIC_RELEASE);
    snprintf(g.last_range, sizeof g.last_range, "%s", range ? range : "");
    memcpy(sha, g.sha, 32);
    sha[0] ^= (uint8_t)__atomic_load_n(&g.bad_digest, __ATOMIC_ACQUIRE);
    httpd_header(x, "ETag", ETAG);
    httpd_header(x, "Repr-Digest", "%s", xget_digest_format(sha, dig, sizeof dig));
    struct http_range r;
    if (http_range_parse(range, FILE_LEN, &r) == HTTP_RANGE_PARTIAL) {
        http_content_range(cr, sizeof cr, HTTP_RANGE_PARTIAL, &r, FILE_LEN);
        httpd_header(x, "Content-Range", "%s", cr);
        httpd_reply_file(x, 206, g.fd, r.first, r.last - r.first + 1, fs_done, NULL);
        return;
    }
    if (__atomic_exchange_n(&g.break_next, 0, __ATOMIC_ACQ_REL)) {
        /* the whole length promised, a shorter file read: conn closes at its end */
        httpd_reply_file(x, 200, g.short_fd, 0, FILE_LEN, fs_done, NULL);
        return;
    }
    httpd_reply_file(x, 200, g.fd, 0, FILE_LEN, fs_done, NULL);
}

static void *ring_thread(void *arg)
{
    (void)arg;
    ring_run(g.ring);
    return NULL;
}

/* ---- running convoy ---- */

static char bin_path[4096];

/* build/convoy as an absolute path: the commands run in the test's folder. */
static const char *bin(void)
{
    return bin_path;
}

/* Runs `convoy ARGS` with CONVOY_PASSWORD=pw (NULL: unset), stdin from
 * /dev/null; stdout in out, stderr in err. Returns the exit status. */
static int run(const char *pw, char *out, size_t ocap, char *err, size_t ecap, const char *args)
{
    char cmd[8192], errf[160];
    snprintf(errf, sizeof errf, "%s/stderr", g.dir);
    snprintf(cmd, sizeof cmd, "cd %s && %s%s %s %s </dev/null 2>%s", g.dir,
             pw ? "CONVOY_PASSWORD=" : "env -u CONVOY_PASSWORD", pw ? pw : "", bin(), args, errf);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    size_t n = fread(out, 1, ocap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    FILE *f = fopen(errf, "r");
    n = f ? fread(err, 1, ecap - 1, f) : 0;
    err[n] = '\0';
    if (f)
        fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int get(const char *pw, char *err, size_t ecap, const char *extra)
{
    char out[256], args[1024];
    snprintf(args, sizeof args, "get --balancer %s --cacert %s --user alice %s", g.bal_url, g.ca,
             extra);
    return run(pw, out, sizeof out, err, ecap, args);
}

/* Whether the file name in the test's folder holds the served bytes. */
static bool same_as_file(const char *name)
{
    static uint8_t a[FILE_LEN + 1], b[FILE_LEN + 1];
    char path[160];
    snprintf(path, sizeof path, "%s/%s", g.dir, name);
    FILE *fa = fopen(path, "r"), *fb = fopen(g.file, "r");
    size_t na = fa ? fread(a, 1, sizeof a, fa) : 0, nb = fb ? fread(b, 1, sizeof b, fb) : 1;
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return fa != NULL && na == nb && memcmp(a, b, na) == 0;
}

static bool exists(const char *name)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", g.dir, name);
    return access(path, F_OK) == 0;
}

static void rm(const char *name)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", g.dir, name);
    unlink(path);
}

/* ---- tests ---- */

static void test_get_ok(void)
{
    char err[4096];
    rm("x.bin");
    CU_ASSERT_EQUAL(get("secret", err, sizeof err, "x.bin"), 0);
    CU_ASSERT(same_as_file("x.bin"));
    CU_ASSERT_FALSE(exists("x.bin.part"));
    CU_ASSERT_FALSE(exists("x.bin.part.meta"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "x.bin: sha-256 verified"));
    CU_ASSERT_PTR_NULL(strchr(err, '\r')); /* no progress line off a terminal */
    CU_ASSERT_EQUAL(get("secret", err, sizeof err, "--quiet x.bin -o quiet.bin"), 0);
    CU_ASSERT_STRING_EQUAL(err, "");
    CU_ASSERT(same_as_file("quiet.bin"));
}

static void test_exit_codes(void)
{
    char err[4096], out[256], args[512];
    CU_ASSERT_EQUAL(get("wrong", err, sizeof err, "x.bin -o a.bin"), XGET_EAUTH);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "auth: balancer: 401"));
    CU_ASSERT_EQUAL(get("secret", err, sizeof err, "missing.bin"), XGET_ENOTFOUND);
    CU_ASSERT_EQUAL(get(NULL, err, sizeof err, "x.bin -o a.bin"), XGET_EUSAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "CONVOY_PASSWORD"));
    CU_ASSERT_EQUAL(get("secret", err, sizeof err, "x.bin --limit-rate fast"), XGET_EUSAGE);
    CU_ASSERT_EQUAL(get("secret", err, sizeof err, "--password secret x.bin"), XGET_EUSAGE);
    __atomic_store_n(&g.bal_mode, BAL_NO_SERVER, __ATOMIC_RELEASE);
    CU_ASSERT_EQUAL(get("secret", err, sizeof err, "--retries 1 x.bin -o a.bin"), XGET_ENOSERVER);
    __atomic_store_n(&g.bal_mode, BAL_OK, __ATOMIC_RELEASE);
    __atomic_store_n(&g.bad_digest, 1, __ATOMIC_RELEASE);
    CU_ASSERT_EQUAL(get("secret", err, sizeof err, "x.bin -o bad.bin"), XGET_EINTEGRITY);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "digest mismatch"));
    CU_ASSERT_FALSE(exists("bad.bin"));
    CU_ASSERT_FALSE(exists("bad.bin.part")); /* bad bytes are not kept for a resume */
    __atomic_store_n(&g.bad_digest, 0, __ATOMIC_RELEASE);
    /* nobody listens on port 1 */
    snprintf(args, sizeof args, "get --balancer https://127.0.0.1:1 --cacert %s x.bin", g.ca);
    CU_ASSERT_EQUAL(run(NULL, out, sizeof out, err, sizeof err, args), XGET_ENET);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "network: balancer 127.0.0.1:1"));
    snprintf(args, sizeof args, "get --balancer http://127.0.0.1:1 --user alice x.bin");
    CU_ASSERT_EQUAL(run("secret", out, sizeof out, err, sizeof err, args), XGET_EUSAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "refusing to send credentials over http://"));
}

/* Waits up to ms for pid; its exit status, or -1. */
static int wait_exit(pid_t pid, unsigned ms)
{
    int st;
    for (unsigned t = 0; t < ms; t += 10) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

/* Ctrl-C mid-way keeps OUT.part; the next run asks only for the rest. */
static void test_interrupt_resume(void)
{
    char err[4096], part[160];
    rm("r.bin");
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        setenv("CONVOY_PASSWORD", "secret", 1);
        if (chdir(g.dir) != 0 || freopen("/dev/null", "w", stderr) == NULL)
            _exit(99);
        execl(bin(), bin(), "get", "--balancer", g.bal_url, "--cacert", g.ca, "--user", "alice",
              "--limit-rate", "2M", "x.bin", "-o", "r.bin", (char *)NULL);
        _exit(98);
    }
    usleep(700 * 1000);
    kill(pid, SIGINT);
    CU_ASSERT_EQUAL(wait_exit(pid, 5000), XGET_EFAIL);
    struct stat st;
    snprintf(part, sizeof part, "%s/r.bin.part", g.dir);
    CU_ASSERT_FATAL(stat(part, &st) == 0);
    CU_ASSERT(st.st_size > 0 && st.st_size < FILE_LEN);
    CU_ASSERT(exists("r.bin.part.meta"));
    CU_ASSERT_FALSE(exists("r.bin"));
    char want[64];
    snprintf(want, sizeof want, "bytes=%lld-", (long long)st.st_size);
    CU_ASSERT_EQUAL(get("secret", err, sizeof err, "x.bin -o r.bin"), 0);
    CU_ASSERT_STRING_EQUAL(g.last_range, want);
    CU_ASSERT(same_as_file("r.bin"));
    CU_ASSERT_FALSE(exists("r.bin.part"));
}

/* The file server's connection breaks within its first 64 KiB (what was
 * queued when the short file ran out is lost with the connection): the
 * download asks the balancer to resume elsewhere, says so, and continues at
 * the byte it had. (A stall, and the checks of the next leg's answer, are
 * dl's unit tests.) */
static void test_failover(void)
{
    char err[4096], want[64];
    rm("f.bin");
    __atomic_store_n(&g.break_next, 1, __ATOMIC_RELEASE);
    CU_ASSERT_EQUAL(get("secret", err, sizeof err, "x.bin -o f.bin"), 0);
    const char *m = strstr(err, "fs1 failed; resuming at byte ");
    CU_ASSERT_FATAL(m != NULL);
    unsigned long at = strtoul(m + strlen("fs1 failed; resuming at byte "), NULL, 10);
    CU_ASSERT(at <= BREAK_AT);
    CU_ASSERT_PTR_NOT_NULL(strstr(m, " on fs2\n"));
    want[0] = '\0';
    if (at > 0)
        snprintf(want, sizeof want, "bytes=%lu-", at);
    CU_ASSERT_STRING_EQUAL(g.last_range, want);
    CU_ASSERT(same_as_file("f.bin"));
}

/* A leg that broke after its server counted it done (its last bytes were
 * queued and lost with the connection): the balancer refuses the resume,
 * and the download goes on as a new transfer from the byte it had. */
static void test_resume_refused(void)
{
    char err[4096];
    rm("f.bin");
    __atomic_store_n(&g.bal_mode, BAL_DONE, __ATOMIC_RELEASE);
    __atomic_store_n(&g.break_next, 1, __ATOMIC_RELEASE);
    int before = __atomic_load_n(&g.fs_requests, __ATOMIC_ACQUIRE);
    int rc = get("secret", err, sizeof err, "x.bin -o f.bin");
    __atomic_store_n(&g.bal_mode, BAL_OK, __ATOMIC_RELEASE);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(same_as_file("f.bin"));
    CU_ASSERT_EQUAL(__atomic_load_n(&g.fs_requests, __ATOMIC_ACQUIRE), before + 2);
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static void test_loadgen_json(void)
{
    char out[4096], err[4096], args[1024];
    snprintf(args, sizeof args,
             "loadgen get --balancer %s --cacert %s --user alice --clients 4 --requests 12 "
             "--json x.bin",
             g.bal_url, g.ca);
    CU_ASSERT_EQUAL(run("secret", out, sizeof out, err, sizeof err, args), 0);
    cJSON *o = cJSON_Parse(out);
    CU_ASSERT_FATAL(o != NULL);
    CU_ASSERT_EQUAL(num(o, "requests"), 12);
    CU_ASSERT_EQUAL(num(o, "ok"), 12);
    CU_ASSERT_EQUAL(num(o, "errors"), 0);
    CU_ASSERT_EQUAL(num(o, "bytes"), 12.0 * FILE_LEN);
    CU_ASSERT(num(o, "requests_per_s") > 0 && num(o, "bytes_per_s") > 0);
    const cJSON *lat = cJSON_GetObjectItem(o, "latency_ms");
    CU_ASSERT(num(lat, "p50") > 0 && num(lat, "p50") <= num(lat, "p99") &&
              num(lat, "p99") <= num(lat, "max"));
    CU_ASSERT_EQUAL(num(cJSON_GetObjectItem(o, "servers"), "fs1"), 12);
    CU_ASSERT_EQUAL(num(cJSON_GetObjectItem(o, "errors_by_kind"), "integrity"), 0);
    cJSON_Delete(o);
    /* every download failing is counted by kind, and the exit status says so */
    __atomic_store_n(&g.bad_digest, 1, __ATOMIC_RELEASE);
    CU_ASSERT_EQUAL(run("secret", out, sizeof out, err, sizeof err, args), 1);
    __atomic_store_n(&g.bad_digest, 0, __ATOMIC_RELEASE);
    o = cJSON_Parse(out);
    CU_ASSERT_FATAL(o != NULL);
    CU_ASSERT_EQUAL(num(cJSON_GetObjectItem(o, "errors_by_kind"), "integrity"), 12);
    CU_ASSERT_EQUAL(num(o, "ok"), 0);
    cJSON_Delete(o);
}

/* ---- setup ---- */

static int write_all(const char *path, const uint8_t *p, size_t len)
{
    FILE *f = fopen(path, "w");
    int rc = f != NULL && fwrite(p, 1, len, f) == len ? 0 : -1;
    if (f != NULL && fclose(f) != 0)
        rc = -1;
    return rc;
}

/* The served file, and a copy of its first BREAK_AT bytes. */
static int make_file(void)
{
    char shrt[160];
    uint8_t *buf = malloc(FILE_LEN);
    if (buf == NULL)
        return -1;
    for (uint32_t i = 0; i < FILE_LEN; i++)
        buf[i] = (uint8_t)(i * 2654435761u >> 13);
    SHA256(buf, FILE_LEN, g.sha);
    snprintf(g.file, sizeof g.file, "%s/served.bin", g.dir);
    snprintf(shrt, sizeof shrt, "%s/short.bin", g.dir);
    int rc = write_all(g.file, buf, FILE_LEN) || write_all(shrt, buf, BREAK_AT) ? -1 : 0;
    free(buf);
    if (rc == 0 && (g.short_fd = open(shrt, O_RDONLY | O_CLOEXEC)) < 0)
        rc = -1;
    return rc;
}

static int listen_http(httpd_t **s, httpd_handler_fn fn)
{
    struct net_addr a;
    struct httpd_opts o = {.tls = g.tls};
    return net_addr_parse("127.0.0.1:0", &a) || httpd_listen(s, g.ring, &a, &o, fn, NULL);
}

static struct ring_timer stop_t;

static void stop_fired(struct ring_timer *t)
{
    (void)t;
    ring_stop(g.ring);
}

/* On the ring's thread: stop both servers, and the ring once they closed. */
static void stop_servers(void *arg)
{
    (void)arg;
    httpd_stop(g.bal);
    httpd_stop(g.fs);
    ring_timer_start(g.ring, &stop_t, 50, stop_fired);
}

static int suite_init(void)
{
    static const char *const names[] = {"balancer", NULL};
    char pki[128], err[256], hp[48];
    const char *b = getenv("CONVOY_BIN");
    if (realpath(b && *b ? b : "build/convoy", bin_path) == NULL)
        return -1;
    if (fx_tmpdir(g.dir, sizeof g.dir) != 0 || make_file() != 0)
        return -1;
    snprintf(pki, sizeof pki, "%s/pki", g.dir);
    snprintf(g.ca, sizeof g.ca, "%s/ca.crt", pki);
    log_set_level(LOG_ERROR);
    if (fx_pki(pki, names) != 0 ||
        tls_ctx_new(&g.tls, TLS_SERVER, pki, "balancer", false, err, sizeof err) != 0 ||
        (g.fd = open(g.file, O_RDONLY | O_CLOEXEC)) < 0 || ring_create(&g.ring, 256) != 0 ||
        listen_http(&g.bal, bal_handle) != 0 || listen_http(&g.fs, fs_handle) != 0)
        return -1;
    snprintf(g.bal_url, sizeof g.bal_url, "https://%s",
             net_addr_str(httpd_addr(g.bal), hp, sizeof hp));
    net_addr_str(httpd_addr(g.fs), g.fs_hp, sizeof g.fs_hp);
    return pthread_create(&g.thread, NULL, ring_thread, NULL) == 0 ? 0 : -1;
}

static int suite_clean(void)
{
    if (ring_post(g.ring, stop_servers, NULL) != 0)
        ring_stop(g.ring);
    pthread_join(g.thread, NULL);
    ring_destroy(g.ring);
    tls_ctx_free(g.tls);
    close(g.fd);
    close(g.short_fd);
    log_set_level(LOG_INFO);
    fx_rmtree(g.dir);
    return 0;
}

void suite_get(void)
{
    CU_pSuite s = CU_add_suite("get", suite_init, suite_clean);
    CU_add_test(s, "convoy get: OUT whole, nothing left, nothing drawn", test_get_ok);
    CU_add_test(s, "convoy get: an exit code per failure", test_exit_codes);
    CU_add_test(s, "convoy get: interrupted, then continued", test_interrupt_resume);
    CU_add_test(s, "convoy get: a broken leg resumes elsewhere at its byte", test_failover);
    CU_add_test(s, "convoy get: a refused resume goes on as a new transfer", test_resume_refused);
    CU_add_test(s, "convoy loadgen get --json", test_loadgen_json);
}
