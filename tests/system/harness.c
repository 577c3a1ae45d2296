/* harness — real convoy processes on loopback for the system suites. */
#include "harness.h"

#include "../common/fixture.h"

#include "convoy/frame.h"
#include "convoy/proc.h"
#include "convoy/ring.h"
#include "convoy/net.h"
#include "convoy/shm.h"
#include "convoy/tls.h"
#include "convoy/users.h"

#include <openssl/evp.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *convoy_bin(void)
{
    const char *b = getenv("CONVOY_BIN");
    return b && *b ? b : "build/convoy";
}

int h_cluster_init(struct cluster *c, const char *const *servers)
{
    static unsigned seq;
    memset(c, 0, sizeof *c);
    if (fx_tmpdir(c->dir, sizeof c->dir) < 0)
        return -1;
    snprintf(c->pki, sizeof c->pki, "%s/pki", c->dir);
    snprintf(c->foreign_pki, sizeof c->foreign_pki, "%s/foreign", c->dir);
    snprintf(c->state, sizeof c->state, "test-%d-%u", getpid(), seq++);
    int port = proc_free_port();
    if (port < 0)
        return -1;
    snprintf(c->control, sizeof c->control, "127.0.0.1:%d", port);
    const char *names[H_MAX_PROCS + 2] = {"balancer"};
    size_t n = 1;
    for (size_t i = 0; servers[i] && n < H_MAX_PROCS + 1; i++)
        names[n++] = servers[i];
    static const char *const rogue[] = {"rogue", NULL};
    char away[320];
    snprintf(away, sizeof away, "%s/away", c->dir);
    /* The rogue trusts the cluster's CA, so that the refusal tested is the
     * balancer's, not the rogue's own. */
    return fx_pki(c->pki, names) || fx_pki(away, rogue) ||
                   fx_rogue(c->foreign_pki, c->pki, away, "rogue")
               ? -1
               : 0;
}

/* Every process this harness started and has not reaped: a test that
 * stops at a failed fatal assertion never reaches h_cluster_free, and what
 * it started must not outlive the run. */
static pid_t h_live[4 * H_MAX_PROCS];

static void h_live_set(pid_t old, pid_t now)
{
    for (size_t i = 0; i < sizeof h_live / sizeof h_live[0]; i++)
        if (h_live[i] == old) {
            h_live[i] = now;
            return;
        }
}

static void h_kill_leftovers(void)
{
    for (size_t i = 0; i < sizeof h_live / sizeof h_live[0]; i++)
        if (h_live[i] > 0) {
            kill(h_live[i], SIGKILL);
            waitpid(h_live[i], NULL, 0);
        }
}

static pid_t h_spawn(struct cluster *c, const char *name, char **argv)
{
    static bool hooked;
    if (!hooked)
        hooked = atexit(h_kill_leftovers) == 0;
    struct h_proc *slot = NULL;
    for (size_t i = 0; i < H_MAX_PROCS && !slot; i++) /* one slot per name: one log each */
        if (c->procs[i].pid == 0 &&
            (c->procs[i].name[0] == '\0' || strcmp(c->procs[i].name, name) == 0))
            slot = &c->procs[i];
    if (slot == NULL)
        return -1;
    char log[512];
    pid_t pid = proc_spawn(argv, h_log_path(c, name, log, sizeof log));
    if (pid < 0) {
        fprintf(stderr, "harness: spawn %s: %s\n", name, strerror(-pid));
        return -1;
    }
    snprintf(slot->name, sizeof slot->name, "%s", name);
    slot->pid = pid;
    h_live_set(0, pid);
    return pid;
}

/* The balancer's command line as certificate `name` of pki, after
 * `prefix` (a wrapper such as prlimit) and followed by `extra`, both
 * NULL-terminated or NULL. */
static pid_t h_balancer_argv(struct cluster *c, const char *const *prefix, const char *pki,
                             const char *name, const char *const *extra)
{
    const char *args[] = {convoy_bin(),      "balancer", "--pki",          pki,
                          "--name",          name,       "--control",      c->control,
                          "--state",         c->state,   "--heartbeat-ms", "100",
                          "--dead-after-ms", "500",      "--threads",      "2"};
    char *argv[48];
    size_t n = 0;
    for (size_t i = 0; prefix && prefix[i] && n < 16; i++)
        argv[n++] = (char *)prefix[i];
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++)
        argv[n++] = (char *)args[i];
    for (size_t i = 0; extra && extra[i] && n < sizeof argv / sizeof argv[0] - 1; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    return h_spawn(c, "balancer", argv);
}

pid_t h_balancer(struct cluster *c)
{
    return h_balancer_argv(c, NULL, c->pki, "balancer", NULL);
}

pid_t h_balancer_as(struct cluster *c, const char *pki, const char *name, const char *const *extra)
{
    return h_balancer_argv(c, NULL, pki, name, extra);
}

pid_t h_balancer_nofile(struct cluster *c, unsigned nofile)
{
    char limit[64];
    snprintf(limit, sizeof limit, "--nofile=%u:%u", nofile, nofile);
    const char *const prefix[] = {"/usr/bin/prlimit", limit, NULL};
    return h_balancer_argv(c, prefix, c->pki, "balancer", NULL);
}

/* A file server's command line, inside netns (NULL: this one), announcing
 * http (NULL: a free loopback port), followed by extra (NULL-terminated or
 * NULL). */
static pid_t h_fileserver_argv(struct cluster *c, const char *name, const char *pki,
                               const char *netns, const char *http, const char *const *extra)
{
    char port[32], root[512], bin[512];
    if (http == NULL) {
        snprintf(port, sizeof port, "127.0.0.1:%d", proc_free_port());
        http = port;
    }
    snprintf(root, sizeof root, "%s/data", c->dir);
    mkdir(root, 0755); /* shared by every server: they are identical */
    /* Inside a namespace the binary is run by `ip netns exec`, which wants
     * an absolute path. */
    if (realpath(convoy_bin(), bin) == NULL)
        return -1;
    char *argv[40] = {"/usr/sbin/ip",
                      "netns",
                      "exec",
                      (char *)netns,
                      bin,
                      "fileserver",
                      "--pki",
                      (char *)pki,
                      "--name",
                      (char *)name,
                      "--root",
                      root,
                      "--balancer",
                      c->control,
                      "--http",
                      (char *)http,
                      "--retry-max-ms",
                      "300"};
    size_t n = 18;
    for (size_t i = 0; extra && extra[i] && n < sizeof argv / sizeof argv[0] - 1; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    return h_spawn(c, name, netns ? argv : argv + 4);
}

pid_t h_fileserver_in(struct cluster *c, const char *name, const char *pki, const char *netns,
                      const char *http)
{
    return h_fileserver_argv(c, name, pki, netns, http, NULL);
}

pid_t h_fileserver_with(struct cluster *c, const char *name, const char *http,
                        const char *const *extra)
{
    return h_fileserver_argv(c, name, c->pki, NULL, http, extra);
}

pid_t h_fileserver(struct cluster *c, const char *name, const char *pki)
{
    return h_fileserver_in(c, name, pki, NULL, NULL);
}

int h_put_file(struct cluster *c, const char *rel, size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data/%s", c->dir, rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    int rc = ftruncate(fd, (off_t)size);
    close(fd);
    return rc;
}

int h_front_init(struct cluster *c, const char *const *servers)
{
    char err[256], root[512];
    if (h_cluster_init(c, servers) < 0)
        return -1;
    snprintf(c->users, sizeof c->users, "%s/users", c->dir);
    if (users_file_add(c->users, "alice", USERS_READ, "secret", 6, err, sizeof err) < 0) {
        fprintf(stderr, "harness: users: %s\n", err);
        return -1;
    }
    snprintf(root, sizeof root, "%s/data", c->dir);
    mkdir(root, 0755);
    snprintf(c->http, sizeof c->http, "127.0.0.1:%d", proc_free_port());
    return 0;
}

pid_t h_front_balancer(struct cluster *c, const char *const *extra)
{
    const char *args[32] = {"--http", c->http, "--users", c->users};
    size_t n = 4;
    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    return h_balancer_as(c, c->pki, "balancer", args);
}

int h_front_servers(struct cluster *c, const char *const *servers, pid_t *pids)
{
    for (size_t i = 0; servers[i]; i++) {
        pid_t pid = h_fileserver_with(c, servers[i], NULL, NULL);
        if (pid < 0)
            return -1;
        if (pids)
            pids[i] = pid;
    }
    for (size_t i = 0; servers[i]; i++)
        if (h_wait_state(c, servers[i], "up", 5000) < 0)
            return -1;
    return 0;
}

int h_chain_init(struct cluster *c, const char *const *servers)
{
    const char *names[H_MAX_PROCS + 1] = {"frontend"};
    char err[256], role[H_MAX_PROCS][96];
    size_t n = 1;
    for (size_t i = 0; servers[i] && n < H_MAX_PROCS; i++, n++) {
        snprintf(role[i], sizeof role[i], "%s:compute", servers[i]);
        names[n] = role[i];
    }
    names[n] = NULL;
    if (h_cluster_init(c, names) < 0)
        return -1;
    snprintf(c->users, sizeof c->users, "%s/users", c->dir);
    if (users_file_add(c->users, "alice", USERS_SUBMIT, "secret", 6, err, sizeof err) < 0) {
        fprintf(stderr, "harness: users: %s\n", err);
        return -1;
    }
    snprintf(c->http, sizeof c->http, "127.0.0.1:%d", proc_free_port());
    return 0;
}

pid_t h_frontend(struct cluster *c, const char *const *extra)
{
    char data[320];
    snprintf(data, sizeof data, "%s/spool", c->dir);
    const char *args[40] = {
        "frontend", "--pki",          c->pki,   "--control",       c->control, "--http",
        c->http,    "--users",        c->users, "--data",          data,       "--state",
        c->state,   "--heartbeat-ms", "100",    "--dead-after-ms", "500"};
    size_t n = 17;
    for (size_t i = 0; extra && extra[i] && n < 39; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    pid_t pid = h_convoy(c, "frontend", args);
    return pid > 0 && h_wait_log(c, "frontend", "event=started", 5000) ? pid : -1;
}

pid_t h_compute(struct cluster *c, const char *name, const char *const *extra)
{
    const char *args[32] = {"compute",    "--pki",    c->pki,      "--name", name,
                            "--frontend", c->control, "--threads", "1"};
    size_t n = 9;
    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    pid_t pid = h_convoy(c, name, args);
    if (pid < 0)
        return -1;
    for (int waited = 0; waited < 10000; waited += 50) {
        int st;
        cJSON *doc = h_api(c, "GET", "/v1/servers", NULL, NULL, &st);
        const cJSON *s;
        bool in = false;
        cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "servers")) in =
            in || strcmp(h_str(s, "name"), name) == 0;
        cJSON_Delete(doc);
        if (in)
            return pid;
        usleep(50 * 1000);
    }
    fprintf(stderr, "harness: %s never joined the chain\n", name);
    return -1;
}

cJSON *h_api(struct cluster *c, const char *method, const char *path, const char *ctype,
             const char *body_file, int *status)
{
    char cmd[2048], body[256] = "";
    if (body_file)
        snprintf(body, sizeof body, "-H 'Content-Type: %s' --data-binary @%s", ctype, body_file);
    snprintf(cmd, sizeof cmd,
             "curl -s --max-time 30 --cacert %s/ca.crt -u alice:secret -X %s %s "
             "-w '\\n%%{http_code}' 'https://%s%s'", /* a query's & is no shell's */
             c->pki, method, body, c->http, path);
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - 1 - len, f)) > 0) {
        len += r;
        if (len + 1 == cap) {
            char *grown = realloc(buf, cap *= 2);
            if (grown == NULL)
                break;
            buf = grown;
        }
    }
    pclose(f);
    if (buf == NULL)
        return NULL;
    buf[len] = '\0';
    char *nl = strrchr(buf, '\n');
    *status = nl ? atoi(nl + 1) : -1;
    if (nl)
        *nl = '\0';
    cJSON *doc = cJSON_Parse(buf);
    free(buf);
    return doc;
}

cJSON *h_job_wait(struct cluster *c, uint64_t id, const char *want, uint32_t timeout_ms)
{
    char path[64], seen[32] = "";
    snprintf(path, sizeof path, "/v1/jobs/%llu", (unsigned long long)id);
    for (uint32_t waited = 0; waited <= timeout_ms; waited += 100) {
        int st;
        cJSON *doc = h_api(c, "GET", path, NULL, NULL, &st);
        snprintf(seen, sizeof seen, "%s", doc ? h_str(doc, "state") : "?");
        if (doc && strcmp(seen, want) == 0)
            return doc;
        cJSON_Delete(doc);
        usleep(100 * 1000);
    }
    fprintf(stderr, "harness: job %llu still %s after %u ms\n", (unsigned long long)id, seen,
            timeout_ms);
    return NULL;
}

/* Word k of the pattern: a splitmix64 step of k, different for every k. */
static uint64_t pattern_word(uint64_t k)
{
    uint64_t z = k * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int h_put_pattern(struct cluster *c, const char *rel, size_t size, unsigned char sha[32])
{
    enum { WORDS = 1 << 17 };
    static uint64_t buf[WORDS];
    char path[512];
    snprintf(path, sizeof path, "%s/data/%s", c->dir, rel);
    FILE *f = fopen(path, "we");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = f && md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 ? 0 : -1;
    for (size_t off = 0; rc == 0 && off < size;) {
        size_t len = size - off < sizeof buf ? size - off : sizeof buf;
        for (size_t w = 0; w < (len + 7) / 8; w++)
            buf[w] = pattern_word(off / 8 + w);
        if (fwrite(buf, 1, len, f) != len || EVP_DigestUpdate(md, buf, len) != 1)
            rc = -1;
        off += len;
    }
    if (rc == 0 && EVP_DigestFinal_ex(md, sha, NULL) != 1)
        rc = -1;
    if (f && fclose(f) != 0)
        rc = -1;
    EVP_MD_CTX_free(md);
    return rc;
}

int h_sha256_file(const char *path, unsigned char sha[32])
{
    static unsigned char buf[1 << 20];
    FILE *f = fopen(path, "re");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = f && md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 ? 0 : -1;
    size_t n;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, f)) > 0)
        if (EVP_DigestUpdate(md, buf, n) != 1)
            rc = -1;
    if (rc == 0 && (ferror(f) || EVP_DigestFinal_ex(md, sha, NULL) != 1))
        rc = -1;
    if (f)
        fclose(f);
    EVP_MD_CTX_free(md);
    return rc;
}

pid_t h_convoy(struct cluster *c, const char *name, const char *const *args)
{
    char *argv[48] = {(char *)convoy_bin()};
    size_t n = 1;
    for (size_t i = 0; args[i] && n < sizeof argv / sizeof argv[0] - 1; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    if (setenv("CONVOY_PASSWORD", "secret", 1) < 0)
        return -1;
    return h_spawn(c, name, argv);
}

static struct h_proc *h_find(struct cluster *c, pid_t pid)
{
    for (size_t i = 0; i < H_MAX_PROCS; i++)
        if (c->procs[i].pid == pid && pid > 0)
            return &c->procs[i];
    return NULL;
}

int h_signal(struct cluster *c, pid_t pid, int sig, bool wait)
{
    struct h_proc *p = h_find(c, pid);
    if (p == NULL || kill(pid, sig) < 0)
        return -1;
    return wait ? h_wait_exit(c, pid, 5000) : 0;
}

int h_wait_exit(struct cluster *c, pid_t pid, uint32_t timeout_ms)
{
    struct h_proc *p = h_find(c, pid);
    int status;
    if (p == NULL || proc_wait(pid, timeout_ms, &status) < 0)
        return -1;
    p->pid = 0;
    h_live_set(pid, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

cJSON *h_transfers(struct cluster *c)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s status --state %s --transfers --json 2>/dev/null", convoy_bin(),
             c->state);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return NULL;
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    for (size_t n = 1; buf && n > 0; len += n) {
        if (cap - len < 4096) {
            char *more = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
            if (more == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = more;
            cap *= 2;
        }
        n = fread(buf + len, 1, cap - len - 1, p);
    }
    int rc = pclose(p);
    cJSON *doc = NULL;
    if (buf && rc == 0) {
        buf[len] = '\0';
        doc = cJSON_Parse(buf);
    }
    free(buf);
    return doc;
}

double h_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? cJSON_GetNumberValue(v) : -1;
}

const char *h_str(const cJSON *o, const char *key)
{
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    return v ? v : "";
}

const cJSON *h_transfer(const cJSON *doc, const char *path)
{
    const cJSON *t, *found = NULL;
    path += path[0] == '/';
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(doc, "transfers"))
    {
        const char *p = h_str(t, "path");
        if (strcmp(p + (p[0] == '/'), path) == 0 &&
            (found == NULL || h_num(t, "id") > h_num(found, "id")))
            found = t;
    }
    return found;
}

/* Prints and counts the sanitizer reports in one process's log. */
static int h_sanitizer_reports(struct cluster *c, const char *name)
{
    char path[512], line[4096];
    FILE *f = fopen(h_log_path(c, name, path, sizeof path), "r");
    int n = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (strstr(line, "ERROR: AddressSanitizer") || strstr(line, "ERROR: LeakSanitizer") ||
            strstr(line, "WARNING: ThreadSanitizer") || strstr(line, "runtime error:")) {
            fprintf(stderr, "harness: %s: %s", name, line);
            n++;
        }
    }
    if (f)
        fclose(f);
    return n;
}

/* Removes "/dev/shm/convoy-<state>.*": segments a balancer moved aside. */
static void h_remove_asides(struct cluster *c)
{
    char prefix[128], path[512];
    snprintf(prefix, sizeof prefix, "convoy-%s.", c->state);
    DIR *d = opendir("/dev/shm");
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
}

int h_cluster_free(struct cluster *c)
{
    int reports = 0;
    for (size_t i = 0; i < H_MAX_PROCS; i++) {
        if (c->procs[i].pid > 0) {
            kill(c->procs[i].pid, SIGCONT); /* a stopped process cannot exit */
            proc_stop(c->procs[i].pid, 3000);
            h_live_set(c->procs[i].pid, 0);
        }
        c->procs[i].pid = 0;
        if (c->procs[i].name[0])
            reports += h_sanitizer_reports(c, c->procs[i].name);
        c->procs[i].name[0] = '\0';
    }
    shm_remove(c->state);
    h_remove_asides(c);
    if (!getenv("CONVOY_KEEP_TEST_DIRS"))
        fx_rmtree(c->dir);
    return reports;
}

cJSON *h_status(struct cluster *c)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s status --state %s --json 2>/dev/null", convoy_bin(), c->state);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return NULL;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = '\0';
    int rc = pclose(p);
    return rc == 0 ? cJSON_Parse(buf) : NULL;
}

int h_status_run(struct cluster *c, bool json, uint32_t timeout_ms, char *out, size_t len)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "timeout -k 1 %u.%03u %s status --state %s%s 2>&1", timeout_ms / 1000,
             timeout_ms % 1000, convoy_bin(), c->state, json ? " --json" : "");
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    int rc = pclose(p);
    return rc >= 0 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

const char *h_server_state(const cJSON *status, const char *name)
{
    const cJSON *servers = cJSON_GetObjectItemCaseSensitive(status, "servers");
    const cJSON *s;
    cJSON_ArrayForEach(s, servers)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(s, "name");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(s, "state");
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0 && cJSON_IsString(st))
            return st->valuestring;
    }
    return "gone";
}

const char *h_state(struct cluster *c, const char *name)
{
    static char state[32];
    cJSON *st = h_status(c);
    snprintf(state, sizeof state, "%s", st ? h_server_state(st, name) : "error");
    cJSON_Delete(st);
    return state;
}

/* Polls status until name is in want, or timeout_ms passes. Returns the ms
 * waited or -1; last gets the state seen last. */
static long wait_state(struct cluster *c, const char *name, const char *want, uint32_t timeout_ms,
                       char *last, size_t lastlen)
{
    uint64_t start = ring_now_ms();
    struct timespec step = {0, 20 * 1000000};
    do {
        cJSON *st = h_status(c);
        snprintf(last, lastlen, "%s", st ? h_server_state(st, name) : "error");
        cJSON_Delete(st);
        if (strcmp(last, want) == 0)
            return (long)(ring_now_ms() - start);
        nanosleep(&step, NULL);
    } while (ring_now_ms() - start < timeout_ms);
    return -1;
}

long h_wait_state(struct cluster *c, const char *name, const char *want, uint32_t timeout_ms)
{
    char last[32];
    long ms = wait_state(c, name, want, timeout_ms, last, sizeof last);
    if (ms < 0)
        fprintf(stderr, "harness: timed out: %s is %s after %u ms, expected %s\n", name, last,
                timeout_ms, want);
    return ms;
}

long h_wait_state_quiet(struct cluster *c, const char *name, const char *want, uint32_t timeout_ms)
{
    char last[32];
    return wait_state(c, name, want, timeout_ms, last, sizeof last);
}

const char *h_log_path(struct cluster *c, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s.log", c->dir, name);
    return buf;
}

bool h_wait_log(struct cluster *c, const char *name, const char *needle, uint32_t timeout_ms)
{
    uint64_t start = ring_now_ms();
    struct timespec step = {0, 20 * 1000000};
    while (!h_log_has(c, name, needle)) {
        if (ring_now_ms() - start >= timeout_ms) {
            fprintf(stderr, "harness: after %u ms, %s's log has no \"%s\"\n", timeout_ms, name,
                    needle);
            return false;
        }
        nanosleep(&step, NULL);
    }
    return true;
}

cJSON *h_log_json(struct cluster *c, const char *name)
{
    char path[512], line[8192];
    cJSON *doc = NULL;
    FILE *f = fopen(h_log_path(c, name, path, sizeof path), "r");
    while (f && fgets(line, sizeof line, f))
        if (line[0] == '{') {
            cJSON_Delete(doc);
            doc = cJSON_Parse(line);
        }
    if (f)
        fclose(f);
    return doc;
}

bool h_log_has(struct cluster *c, const char *name, const char *needle)
{
    char path[512], line[4096];
    FILE *f = fopen(h_log_path(c, name, path, sizeof path), "r");
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return found;
}

static int h_tls_pump_out(struct h_tls *h)
{
    uint8_t buf[16384];
    size_t n;
    while ((n = tls_out_take(h->t, buf, sizeof buf)) > 0)
        if (send(h->fd, buf, n, MSG_NOSIGNAL) != (ssize_t)n)
            return -1;
    return 0;
}

/* Feeds what the socket has within timeout_ms. >0 bytes, 0 on EOF, -1. */
static ssize_t h_tls_pump_in(struct h_tls *h, uint32_t timeout_ms)
{
    struct pollfd p = {.fd = h->fd, .events = POLLIN};
    if (poll(&p, 1, (int)timeout_ms) <= 0)
        return -1;
    uint8_t buf[16384];
    ssize_t n = recv(h->fd, buf, sizeof buf, 0);
    if (n > 0 && tls_feed(h->t, buf, (size_t)n) < 0)
        return -1;
    return n;
}

int h_tls_dial(struct h_tls *h, const char *pki, const char *name, const char *addr)
{
    char err[512];
    struct net_addr a;
    memset(h, 0, sizeof *h);
    h->fd = -1;
    if (net_addr_parse(addr, &a) < 0 ||
        tls_ctx_new(&h->ctx, TLS_CLIENT, pki, name, false, err, sizeof err) < 0 ||
        tls_new(&h->t, h->ctx, NULL, NULL) < 0 || (h->fd = net_socket_for(&a)) < 0 ||
        connect(h->fd, (struct sockaddr *)&a.ss, a.len) < 0)
        return -1;
    int rc;
    while ((rc = tls_handshake(h->t)) == 0)
        if (h_tls_pump_out(h) < 0 || h_tls_pump_in(h, 3000) <= 0)
            return -1;
    return rc == 1 && h_tls_pump_out(h) == 0 ? 0 : -1;
}

int h_tls_send(struct h_tls *h, const void *data, size_t len)
{
    return tls_write(h->t, data, len) == 0 ? h_tls_pump_out(h) : -1;
}

ssize_t h_tls_read_all(struct h_tls *h, void *buf, size_t cap, uint32_t timeout_ms, bool *closed)
{
    size_t got = 0;
    uint64_t end = ring_now_ms() + timeout_ms;
    *closed = false;
    while (got < cap && ring_now_ms() < end) {
        ssize_t n = tls_read(h->t, (uint8_t *)buf + got, cap - got);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == TLS_EOF || (n == 0 && h_tls_pump_in(h, (uint32_t)(end - ring_now_ms())) == 0)) {
            *closed = true;
            break;
        }
        if (n < 0)
            return -1;
    }
    return (ssize_t)got;
}

void h_tls_close(struct h_tls *h)
{
    if (h->fd >= 0)
        close(h->fd);
    tls_free(h->t);
    tls_ctx_free(h->ctx);
}

int h_error_reply(struct cluster *c, const char *name, const void *data, size_t len, char *code,
                  size_t codelen)
{
    uint8_t buf[4096];
    struct h_tls t;
    bool closed = false;
    ssize_t n = -1;
    if (h_tls_dial(&t, c->pki, name, c->control) == 0 && h_tls_send(&t, data, len) == 0)
        n = h_tls_read_all(&t, buf, sizeof buf, 3000, &closed);
    h_tls_close(&t);
    cJSON *reply = NULL;
    struct frame_hdr h;
    struct frame_limits lim = {FRAME_META_MAX, 0};
    if (!closed || n < FRAME_HDR_LEN || frame_hdr_decode(buf, &lim, &h) < 0 ||
        h.type != FRAME_ERROR || (size_t)n != FRAME_HDR_LEN + h.meta_len ||
        (reply = cJSON_ParseWithLength((const char *)buf + FRAME_HDR_LEN, h.meta_len)) == NULL)
        return -1;
    const cJSON *cd = cJSON_GetObjectItemCaseSensitive(reply, "code");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(reply, "reason");
    int rc = cJSON_IsString(cd) && cJSON_IsString(r) ? 0 : -1;
    if (rc == 0)
        snprintf(code, codelen, "%s", cd->valuestring);
    cJSON_Delete(reply);
    return rc;
}
