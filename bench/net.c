/*
 * bench/net — convoy's file transfers against nginx, same machine, same
 * run. One key=value line per row:
 *
 *   redirect tls=1|0 convoy_rps=… nginx_rps=… ratio=… p99_ms=… cpu_s=… nginx_p99_ms=… nginx_cpu_s=…
 *   serve tls=1|0 size=1GiB convoy_mbps=… nginx_mbps=… ratio=…
 *   conns tls=1 n=10000 convoy_kib_per_conn=… nginx_kib_per_conn=… ratio=…
 *
 * The design is simple: everything is a real process on 127.0.0.1 with
 * free ports, in the bench's temporary folder: `convoy pki` and `convoy
 * user` make the PKI and the users file, a `convoy balancer` with its HTTP
 * front and one `convoy fileserver` form the cluster, and nginx (one
 * worker, a generated configuration) is the reference. The two sides of a
 * row alternate run by run (3 runs), so that the load other processes put
 * on the shared machine hits both alike; a row prints the medians, and its
 * ratio is the median of the runs' convoy/nginx ratios. Every load is
 * bounded in time (wrk -d, curl --max-time, a deadline on every wait),
 * and only the processes started here are ever signalled, by their PID.
 *
 * redirect: wrk (1 thread, 32 keep-alive connections, 4 s) asks the
 * balancer for GET /f/small.txt with a Basic Authorization header: each
 * answer is a 307 with a signed ticket, and a transfer record (hence a
 * short --ticket-ttl-s, a big --max-transfers, and a file server
 * announcing a big --capacity: the policy counts the redirects not yet
 * followed). nginx answers `return 307` with a Location as long on the
 * same kind of listener. A run with any answer that is not a 3xx fails the
 * bench. cpu_s is the balancer's user + system time during its wrk run.
 *
 * serve: a 1 GiB file downloaded with curl to /dev/null: from the convoy
 * file server through a fresh ticket (curl asks the balancer for the
 * redirect, then fetches its Location), and from nginx with sendfile.
 * MB/s are 10^6 bytes per second over curl's total time.
 *
 * conns: the growth of the server's VmRSS (the balancer; nginx's worker)
 * per idle TLS keep-alive connection, each used once for a 404 path, from
 * a fresh server each run (bench/common.c's clients, as bench/runtime.c's
 * conns row).
 *
 * Options: -q (quick: 1 run, 1,000 connections, a 64 MiB file), -r ROW
 * (only the rows named redirect, serve or conns; repeatable).
 */
#include "convoy/log.h"
#include "convoy/net.h"
#include "convoy/proc.h"
#include "convoy/shm.h"
#include "convoy/tls.h"
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define RUNS_MAX   3
#define CONNS_N    10000u
#define BIG_SIZE   (1ull << 30)
#define SMALL_SIZE 1024u
#define WRK_S      "4s" /* each wrk run */
#define WRK_CONNS  "32" /* wrk's keep-alive connections */
#define TTL_S      "2"  /* the balancer's tickets: unfollowed records expire */
#define MAX_XFERS                                                                                  \
    "400000" /* transfer records: live 2-3 s (TTL, then the sweep) at up to ~130,000 a second */
#define CAPACITY   "1000000"
#define RUN_S      60.0 /* any one command fails after this */
#define UP_S       20.0 /* a cluster is up within this */
#define OPEN_S     45.0 /* the clients of a conns sample (the front's idle timeout is 60 s) */
#define SETTLE_US  (300u * 1000)
#define NGINX_IDLE 600u
#define USER       "bench"
#define PASS       "benchpass"
#define CERT       "balancer" /* nginx presents the balancer's certificate */
#define OUT_MAX    8192u

static const char not_found[] = "GET /nope HTTP/1.1\r\nHost: bench\r\n\r\n";

struct bench {
    const char *dir;     /* the temporary folder (bench_start) */
    char pki[128];       /* dir/pki: made by convoy pki */
    char users[128];     /* dir/users: USER with PASS, role read */
    char data[128];      /* dir/data: small.txt and big.bin */
    char state_dir[128]; /* the file server's digest cache, kept across clusters */
    char convoy[4096];   /* absolute path of build/convoy */
    char auth[96];       /* "Authorization: Basic …" */
    unsigned runs, conns;
    unsigned long long big; /* size of big.bin */
    rlim_t nofile;
    tls_ctx_t *cli_tls; /* anonymous, trusts the PKI's CA */
};

static struct bench B;
static char live_state[64]; /* the state of the balancer running now, "" when none */

/* ---- commands ---- */

/* Starts a daemon with its stdout and stderr in dir/name.log. */
static pid_t daemon_start(char *const argv[], const char *name)
{
    char log[160];
    snprintf(log, sizeof log, "%s/%s.log", B.dir, name);
    return bench_daemon_start(argv, log);
}

/* ---- the cluster ---- */

struct cluster {
    bool tls;
    pid_t bal, fs; /* fs is 0 for a balancer alone */
    char http[32], control[32], fs_http[32], state[64];
    char scheme[8]; /* "https" or "http" */
};

static void balancer_start(struct cluster *c, bool tls, bool busy)
{
    static unsigned seq;
    c->tls = tls;
    snprintf(c->scheme, sizeof c->scheme, "%s", tls ? "https" : "http");
    snprintf(c->http, sizeof c->http, "127.0.0.1:%u", bench_free_port());
    snprintf(c->control, sizeof c->control, "127.0.0.1:%u", bench_free_port());
    snprintf(c->state, sizeof c->state, "bench-net-%d-%u", (int)getpid(), seq++);
    char *argv[32] = {B.convoy,  "balancer", "--pki",       B.pki,      "--name", CERT,
                      "--state", c->state,   "--control",   c->control, "--http", c->http,
                      "--users", B.users,    "--log-level", "warn"};
    size_t n = 16;
    if (busy) {
        char *more[] = {"--ticket-ttl-s", TTL_S, "--max-transfers", MAX_XFERS};
        for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
            argv[n++] = more[i];
    }
    if (!tls)
        argv[n++] = "--insecure-http";
    argv[n] = NULL;
    c->bal = daemon_start(argv, "balancer");
    c->fs = 0;
    snprintf(live_state, sizeof live_state, "%s", c->state);
}

static void fileserver_start(struct cluster *c)
{
    snprintf(c->fs_http, sizeof c->fs_http, "127.0.0.1:%u", bench_free_port());
    char *argv[32] = {B.convoy, "fileserver",  "--pki",       B.pki,        "--name",
                      "fs1",    "--root",      B.data,        "--balancer", c->control,
                      "--http", c->fs_http,    "--state-dir", B.state_dir,  "--capacity",
                      CAPACITY, "--log-level", "warn",        NULL,         NULL};
    if (!c->tls)
        argv[18] = "--insecure-http";
    c->fs = daemon_start(argv, "fs1");
}

/* curl's common options, then args (NULL-terminated), into argv. */
static void curl_argv(char **argv, size_t cap, char *const *args)
{
    static char cacert[160];
    snprintf(cacert, sizeof cacert, "%s/ca.crt", B.pki);
    char *common[] = {"/usr/bin/curl", "-sS", "--max-time", "60", "--cacert", cacert};
    size_t n = 0;
    for (size_t i = 0; i < sizeof common / sizeof common[0]; i++)
        argv[n++] = common[i];
    for (size_t i = 0; args[i] && n < cap - 1; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
}

/* The Location of the balancer's redirect for path, into url; the HTTP
 * status as curl saw it. */
static int redirect_of(const struct cluster *c, const char *path, char *url, size_t cap)
{
    char target[256], out[OUT_MAX], *argv[24];
    snprintf(target, sizeof target, "%s://%s/f/%s", c->scheme, c->http, path);
    char *args[] = {"-o", "/dev/null",   "-w",   "%{http_code} %{redirect_url}",
                    "-u", USER ":" PASS, target, NULL};
    curl_argv(argv, sizeof argv / sizeof argv[0], args);
    int status = 0;
    url[0] = '\0';
    if (bench_run(argv, out, sizeof out, RUN_S) == 0 && sscanf(out, "%d", &status) == 1) {
        const char *sp = strchr(out, ' ');
        snprintf(url, cap, "%s", sp ? sp + 1 : "");
    }
    return status;
}

/* The cluster is up once the balancer redirects small.txt to the file
 * server (which has joined and sent its catalog). */
static void cluster_wait(const struct cluster *c)
{
    char url[2048];
    struct net_addr a;
    if (net_addr_parse(c->http, &a) < 0)
        bench_die("net_addr_parse %s", c->http);
    bench_port_wait(&a, "the balancer", UP_S);
    double end = bench_now_s() + UP_S;
    while (redirect_of(c, "small.txt", url, sizeof url) != 307) {
        if (bench_now_s() > end) {
            char log[160];
            snprintf(log, sizeof log, "%s/balancer.log", B.dir);
            bench_log_show(log);
            snprintf(log, sizeof log, "%s/fs1.log", B.dir);
            bench_log_show(log);
            bench_die("the cluster (tls=%d) did not redirect within %.0f s", c->tls, UP_S);
        }
        usleep(100 * 1000);
    }
}

static void cluster_start(struct cluster *c, bool tls)
{
    balancer_start(c, tls, true);
    fileserver_start(c);
    cluster_wait(c);
}

static void cluster_stop(struct cluster *c)
{
    if (c->fs)
        bench_daemon_stop(c->fs);
    bench_daemon_stop(c->bal);
    shm_remove(c->state);
    live_state[0] = '\0';
}

/* bench_die's hook: the balancer it stopped leaves its state behind. */
static void state_remove(void)
{
    if (live_state[0])
        shm_remove(live_state);
}

/* ---- nginx ---- */

/* nginx for the redirect and serve rows: small.txt answers 307 with a
 * Location as long as the balancer's, the rest of /f/ is the data folder
 * with sendfile. */
static void nginx_files_start(struct bench_server *s, const struct cluster *c)
{
    char loc[4096], url[2048];
    if (redirect_of(c, "small.txt", url, sizeof url) != 307)
        bench_die("no redirect to copy for nginx");
    snprintf(loc, sizeof loc,
             "    sendfile on;\n    tcp_nopush on;\n"
             "    location = /f/small.txt { return 307 %s; }\n"
             "    location /f/ { alias %s/; }\n",
             url, B.data);
    struct bench_nginx_opts o = {.conns = 1000,
                                 .idle_s = NGINX_IDLE,
                                 .pki = c->tls ? B.pki : NULL,
                                 .cert = CERT,
                                 .locations = loc};
    bench_nginx_start(s, &o);
}

/* ---- redirect ---- */

struct wrk {
    double rps, p99_ms, cpu_s;
};

/* The value of "KEY <number>" in wrk's output, or -1. */
static double wrk_field(const char *out, const char *key)
{
    const char *p = strstr(out, key);
    return p ? strtod(p + strlen(key), NULL) : -1;
}

/* wrk's 99th percentile ("99%   1.23ms"), in ms. */
static double wrk_p99(const char *out)
{
    const char *p = strstr(out, "    99%");
    char unit[8] = "";
    double v;
    if (p == NULL || sscanf(p + 7, " %lf%7s", &v, unit) != 2)
        return -1;
    if (strcmp(unit, "us") == 0)
        return v / 1000;
    if (strcmp(unit, "s") == 0)
        return v * 1000;
    return strcmp(unit, "ms") == 0 ? v : -1;
}

/* wrk against url; measures the CPU time of process cpu_of. */
static struct wrk wrk_run(const char *url, pid_t cpu_of, const char *who)
{
    char out[OUT_MAX];
    char *argv[] = {"/usr/bin/wrk", "-t1",  "-c" WRK_CONNS, "-d" WRK_S, "--latency",
                    "-H",           B.auth, (char *)url,    NULL};
    double cpu0 = bench_cpu_s(cpu_of);
    int rc = bench_run(argv, out, sizeof out, RUN_S);
    struct wrk w = {.cpu_s = bench_cpu_s(cpu_of) - cpu0};
    w.rps = wrk_field(out, "Requests/sec:");
    w.p99_ms = wrk_p99(out);
    double bad = wrk_field(out, "Non-2xx or 3xx responses:");
    if (rc != 0 || w.rps <= 0 || w.p99_ms < 0 || bad > 0) {
        fprintf(stderr, "%s", out);
        bench_die("redirect: wrk against %s: exit %d, %.0f answers not 3xx (above)", who, rc,
                  bad > 0 ? bad : 0);
    }
    const char *err = strstr(out, "Socket errors:");
    if (err)
        fprintf(stderr, "net: wrk against %s: %.*s\n", who, (int)strcspn(err, "\n"), err);
    return w;
}

static void redirect_row(const struct cluster *c, const struct bench_server *ngx)
{
    char curl[128], nurl[128], addr[64];
    double rps[2][RUNS_MAX], p99[2][RUNS_MAX], cpu[2][RUNS_MAX], ratio[RUNS_MAX];
    snprintf(curl, sizeof curl, "%s://%s/f/small.txt", c->scheme, c->http);
    snprintf(nurl, sizeof nurl, "%s://%s/f/small.txt", c->scheme,
             net_addr_str(&ngx->addr, addr, sizeof addr));
    for (unsigned i = 0; i < B.runs; i++) {
        for (int k = 0; k < 2; k++) {
            bool ngx_side = (i % 2) == (k == 0); /* who goes first alternates */
            struct wrk w = ngx_side ? wrk_run(nurl, ngx->worker, "nginx")
                                    : wrk_run(curl, c->bal, "the balancer");
            rps[ngx_side][i] = w.rps;
            p99[ngx_side][i] = w.p99_ms;
            cpu[ngx_side][i] = w.cpu_s;
            sleep(1); /* the balancer's unfollowed records expire meanwhile */
        }
        ratio[i] = rps[0][i] / rps[1][i];
        fprintf(stderr,
                "net: redirect tls=%d run %u: convoy %.0f/s p99 %.2f ms cpu %.2f s, "
                "nginx %.0f/s p99 %.2f ms cpu %.2f s\n",
                c->tls, i + 1, rps[0][i], p99[0][i], cpu[0][i], rps[1][i], p99[1][i], cpu[1][i]);
    }
    printf("redirect tls=%d convoy_rps=%.0f nginx_rps=%.0f ratio=%.2f p99_ms=%.2f cpu_s=%.2f "
           "nginx_p99_ms=%.2f nginx_cpu_s=%.2f\n",
           c->tls, bench_median(rps[0], B.runs), bench_median(rps[1], B.runs),
           bench_median(ratio, B.runs), bench_median(p99[0], B.runs), bench_median(cpu[0], B.runs),
           bench_median(p99[1], B.runs), bench_median(cpu[1], B.runs));
    fflush(stdout);
}

/* ---- serve ---- */

/* MB/s of one download of url to /dev/null, whose size must be B.big. */
static double download(const char *url)
{
    char out[OUT_MAX], *argv[24];
    char *args[] = {"-o",        "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}",
                    (char *)url, NULL};
    curl_argv(argv, sizeof argv / sizeof argv[0], args);
    int rc = bench_run(argv, out, sizeof out, RUN_S + 5);
    int status = 0;
    unsigned long long size = 0;
    double t = 0;
    if (rc != 0 || sscanf(out, "%d %llu %lf", &status, &size, &t) != 3 || status != 200 ||
        size != B.big || t <= 0)
        bench_die("serve: curl %s: exit %d, got '%s' (want 200, %llu bytes)", url, rc, out, B.big);
    return (double)size / t / 1e6;
}

/* Through the balancer: a fresh ticket for each download. */
static double download_convoy(const struct cluster *c)
{
    char url[2048];
    int status = redirect_of(c, "big.bin", url, sizeof url);
    if (status != 307)
        bench_die("serve: the balancer answered %d for big.bin", status);
    return download(url);
}

static void serve_row(const struct cluster *c, const struct bench_server *ngx)
{
    char nurl[128], addr[64];
    double mbps[2][RUNS_MAX], ratio[RUNS_MAX];
    snprintf(nurl, sizeof nurl, "%s://%s/f/big.bin", c->scheme,
             net_addr_str(&ngx->addr, addr, sizeof addr));
    download_convoy(c); /* waits for the file's digest; both read from the page cache */
    download(nurl);
    for (unsigned i = 0; i < B.runs; i++) {
        for (int k = 0; k < 2; k++) {
            bool ngx_side = (i % 2) == (k == 0);
            mbps[ngx_side][i] = ngx_side ? download(nurl) : download_convoy(c);
        }
        ratio[i] = mbps[0][i] / mbps[1][i];
        fprintf(stderr, "net: serve tls=%d run %u: convoy %.0f MB/s, nginx %.0f MB/s\n", c->tls,
                i + 1, mbps[0][i], mbps[1][i]);
    }
    printf("serve tls=%d size=%s convoy_mbps=%.0f nginx_mbps=%.0f ratio=%.2f\n", c->tls,
           B.big == BIG_SIZE ? "1GiB" : "64MiB", bench_median(mbps[0], B.runs),
           bench_median(mbps[1], B.runs), bench_median(ratio, B.runs));
    fflush(stdout);
}

/* ---- conns ---- */

/* KiB of RSS per idle TLS connection of a fresh balancer or nginx. */
static double conns_sample(bool nginx)
{
    struct cluster c = {0};
    struct bench_server s;
    if (nginx) {
        struct bench_nginx_opts o = {
            .conns = B.conns,
            .idle_s = NGINX_IDLE,
            .pki = B.pki,
            .cert = CERT,
            .locations = "    location / { return 404 \"no such resource\\n\"; }\n",
        };
        bench_nginx_start(&s, &o);
    } else {
        balancer_start(&c, true, false);
        if (net_addr_parse(c.http, &s.addr) < 0)
            bench_die("net_addr_parse %s", c.http);
        s.pid = s.worker = c.bal;
        bench_port_wait(&s.addr, "the balancer", UP_S);
    }
    usleep(SETTLE_US);
    long before = bench_rss_kib(s.worker);
    struct bench_client *cl = bench_clients_open(&s.addr, B.cli_tls, not_found, B.conns, OPEN_S);
    usleep(SETTLE_US);
    long after = bench_rss_kib(s.worker);
    unsigned alive = bench_clients_alive(cl, B.conns);
    bench_clients_close(cl, B.conns);
    if (nginx)
        bench_kid_stop(s.pid, SIGTERM);
    else
        cluster_stop(&c);
    if (alive != B.conns)
        bench_die("conns: %s closed %u of %u idle connections", nginx ? "nginx" : "the balancer",
                  B.conns - alive, B.conns);
    return (double)(after - before) / B.conns;
}

static void conns_row(void)
{
    double kib[2][RUNS_MAX], ratio[RUNS_MAX];
    for (unsigned i = 0; i < B.runs; i++) {
        for (int k = 0; k < 2; k++) {
            bool ngx_side = (i % 2) == (k == 0);
            kib[ngx_side][i] = conns_sample(ngx_side);
        }
        ratio[i] = kib[0][i] / kib[1][i];
        fprintf(stderr, "net: conns tls=1 run %u: convoy %.2f nginx %.2f KiB\n", i + 1, kib[0][i],
                kib[1][i]);
    }
    printf("conns tls=1 n=%u convoy_kib_per_conn=%.2f nginx_kib_per_conn=%.2f ratio=%.2f\n",
           B.conns, bench_median(kib[0], B.runs), bench_median(kib[1], B.runs),
           bench_median(ratio, B.runs));
    fflush(stdout);
}

/* ---- setup ---- */

/* size bytes that differ from block to block (no sparse file, nothing a
 * compressor or a zero page could shortcut). */
static void file_make(const char *name, unsigned long long size)
{
    static uint64_t buf[1 << 17]; /* 1 MiB */
    char path[256];
    snprintf(path, sizeof path, "%s/%s", B.data, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        bench_die("open %s: %s", path, strerror(errno));
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (unsigned long long off = 0; off < size;) {
        for (size_t w = 0; w < sizeof buf / sizeof buf[0]; w++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
            buf[w] = x;
        }
        size_t len = size - off < sizeof buf ? (size_t)(size - off) : sizeof buf;
        if (write(fd, buf, len) != (ssize_t)len)
            bench_die("write %s: %s", path, strerror(errno));
        off += len;
    }
    if (close(fd) != 0)
        bench_die("close %s: %s", path, strerror(errno));
}

/* The PKI and the users file, through convoy's own commands. */
static void pki_users(void)
{
    static const char *const certs[][2] = {{CERT, "balancer"}, {"fs1", "fileserver"}};
    bench_pki_users(B.convoy, B.pki, certs, sizeof certs / sizeof certs[0], B.users, USER, PASS,
                    "read");
}

static void auth_header(void)
{
    static const char cred[] = USER ":" PASS;
    unsigned char b64[64];
    int n = EVP_EncodeBlock(b64, (const unsigned char *)cred, (int)sizeof cred - 1);
    if (n <= 0)
        bench_die("base64 failed");
    snprintf(B.auth, sizeof B.auth, "Authorization: Basic %s", (const char *)b64);
}

static void setup(void)
{
    const char *bin = getenv("CONVOY_BIN");
    char err[512];
    if (realpath(bin && *bin ? bin : "build/convoy", B.convoy) == NULL)
        bench_die("build/convoy: %s (run from the repository, after make)", strerror(errno));
    static const char *const tools[] = {BENCH_NGINX, "/usr/bin/wrk", "/usr/bin/curl"};
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++)
        if (access(tools[i], X_OK) != 0)
            bench_die("%s: %s (make bench-net installs it)", tools[i], strerror(errno));
    B.nofile = bench_raise_nofile(CONNS_N + 1000);
    if (B.nofile < B.conns + 200)
        B.conns = (unsigned)B.nofile - 200; /* the largest that fits beside the rest */
    B.dir = bench_start("net");
    bench_at_die(state_remove);
    if (chmod(B.dir, 0711) != 0) /* nginx's worker (nobody) reads data/ */
        bench_die("chmod %s: %s", B.dir, strerror(errno));
    snprintf(B.pki, sizeof B.pki, "%s/pki", B.dir);
    snprintf(B.users, sizeof B.users, "%s/users", B.dir);
    snprintf(B.data, sizeof B.data, "%s/data", B.dir);
    snprintf(B.state_dir, sizeof B.state_dir, "%s/fs-state", B.dir);
    if (mkdir(B.data, 0755) != 0 || mkdir(B.state_dir, 0700) != 0)
        bench_die("mkdir: %s", strerror(errno));
    pki_users();
    auth_header();
    file_make("small.txt", SMALL_SIZE);
    file_make("big.bin", B.big);
    if (tls_ctx_new(&B.cli_tls, TLS_CLIENT, B.pki, NULL, false, err, sizeof err) < 0)
        bench_die("%s", err);
}

int main(int argc, char **argv)
{
    log_set_level(LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    B.runs = RUNS_MAX;
    B.conns = CONNS_N;
    B.big = BIG_SIZE;
    int opt;
    bool rows = false, redirect = false, serve = false, conns = false;
    while ((opt = getopt(argc, argv, "qr:")) != -1) {
        if (opt == 'q') {
            B.runs = 1;
            B.conns = 1000;
            B.big = 64ull << 20;
        } else if (opt == 'r' && (strcmp(optarg, "redirect") == 0 || strcmp(optarg, "serve") == 0 ||
                                  strcmp(optarg, "conns") == 0)) {
            rows = true;
            redirect |= strcmp(optarg, "redirect") == 0;
            serve |= strcmp(optarg, "serve") == 0;
            conns |= strcmp(optarg, "conns") == 0;
        } else {
            fprintf(stderr, "usage: %s [-q] [-r redirect|serve|conns]...\n", argv[0]);
            return 2;
        }
    }
    if (!rows)
        redirect = serve = conns = true;
    setup();
    printf("net openssl=%s cpus=%ld nofile=%llu runs=%u\n", OpenSSL_version(OPENSSL_VERSION_STRING),
           sysconf(_SC_NPROCESSORS_ONLN), (unsigned long long)B.nofile, B.runs);
    fflush(stdout);
    for (int tls = 1; tls >= 0 && (redirect || serve); tls--) {
        struct cluster c;
        struct bench_server ngx;
        cluster_start(&c, tls);
        nginx_files_start(&ngx, &c);
        if (redirect)
            redirect_row(&c, &ngx);
        if (serve)
            serve_row(&c, &ngx);
        bench_kid_stop(ngx.pid, SIGTERM);
        cluster_stop(&c);
    }
    if (conns)
        conns_row();
    tls_ctx_free(B.cli_tls);
    bench_end();
    return 0;
}
