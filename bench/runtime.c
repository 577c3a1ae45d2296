/*
 * bench/runtime — convoy's connections against nginx, and its TLS stream
 * against the cipher, same run. One key=value line per row:
 *
 *   conns tls=0|1 n=10000 convoy_kib_per_conn=… nginx_kib_per_conn=…
 *   close conns=N us_per_close=… vs_100=… closed=K [wanted=50000 nofile=…]
 *   stream tls=0 MBps=…
 *   stream tls=1 MBps=… cipher=TLS_… cipher_MBps=… frac=…
 *
 * The design is simple: every sample runs in a fresh process, so that no
 * sample inherits another's heap, and the samples of the two sides of a row
 * alternate, so that the load other processes put on a shared machine hits
 * both alike. Each row prints the medians of the runs (-r RUNS, 5 by default).
 *
 * conns: a server (this program re-executed as `serve`, one ring with a
 * conn_listen whose handlers answer one HTTP-ish request and keep the
 * connection) or nginx (one worker, its own configuration in the temporary
 * folder), then 10,000 keep-alive clients, each used once: connect, TLS
 * handshake, a small request, its answer, then idle. The row is the growth
 * of the server's VmRSS (/proc/PID/status; nginx's worker) from before the
 * first connection to after the last answer, over the connections. Clients
 * are blocking sockets of this process, driven in batches (all dial, all
 * finish their handshakes, all read their answers), so that the server works
 * while the clients do; a client's TLS session is freed once it is answered
 * and only its socket is kept.
 *
 * close: N idle plain connections on one ring, each with its recv and its
 * idle timer armed, then K of them closed one after another (conn_abort,
 * and the next from the previous one's on_close): the row is the time per
 * close, from the first call to the last on_close, over K = min(N/2, 500).
 * Each side of a connection is in its own process, so N may reach the
 * RLIMIT_NOFILE that the bench could set (raised to its hard limit, or
 * above when the process may); a row that wanted more says so.
 *
 * stream: one pair (plain, then TLS) through one ring on loopback, the server writing
 * 64 KiB buffers as on_drain asks, 1 GiB or 3 s, whichever is first; MB/s
 * are 10^6 bytes per second of the client's received bytes. The cipher is
 * the one the pair negotiates (read from the server's ServerHello, which
 * TLS 1.3 sends in the clear), timed with EVP on 16 KiB records, in
 * alternation with the pair; frac is the median of the pairs' ratios.
 *
 * Options: -r RUNS, -q (quick: 1,000 connections, 1 run), -o ROW (conns,
 * close or stream: those rows only).
 */
#include "convoy/conn.h"
#include "convoy/log.h"
#include "convoy/net.h"
#include "convoy/ring.h"
#include "convoy/tls.h"
#include "../tests/common/fixture.h"
#include "common.h"

#include <errno.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define RUNS_MAX     15
#define CONNS_N      10000u
#define SAMPLE_S     60             /* any one sample fails after this */
#define IDLE_MS      (600u * 1000)  /* idle timeout of the servers' connections */
#define SETTLE_US    (300u * 1000)  /* lets a server finish its sends before RSS */
#define SERVER_NAME  "server"       /* the certificate both servers present */
#define CLOSE_MAX    50000u         /* the largest close row */
#define CLOSE_K      500u           /* closes timed per close sample, at most */
#define STREAM_BYTES (1ull << 30)   /* the stream stops after this ... */
#define STREAM_S     3.0            /* ... or this long */
#define WRITE_SIZE   (64u * 1024)   /* the stream's conn_write size */
#define CIPHER_BYTES (512ull << 20) /* encrypted per cipher sample */

static const char request[] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";

struct bench {
    const char *dir; /* temporary folder: PKI, nginx prefix (bench_start) */
    char pki[128];   /* dir/pki */
    char self[4096];
    tls_ctx_t *srv_tls; /* presents SERVER_NAME, no client certificates */
    tls_ctx_t *cli_tls; /* anonymous, trusts the PKI's CA */
    unsigned runs, conns;
    rlim_t nofile; /* RLIMIT_NOFILE after raising it */
};

static struct bench B;

/* ---- the convoy server: `bench_runtime serve PKI tls|plain` ---- */

static ssize_t serve_data(conn_t *c, const uint8_t *data, size_t len)
{
    const uint8_t *end = memmem(data, len, "\r\n\r\n", 4);
    if (end == NULL)
        return 0; /* the rest of the request comes later */
    int rc = conn_write(c, reply, sizeof reply - 1);
    return rc < 0 ? rc : end + 4 - data;
}

/* Prints its port and serves until killed. */
static int serve(const char *pki, bool tls)
{
    static const struct conn_handlers h = {.on_data = serve_data};
    char err[512];
    tls_ctx_t *ctx = NULL;
    ring_t *r;
    conn_listener_t *l;
    struct net_addr any;
    if (tls && tls_ctx_new(&ctx, TLS_SERVER, pki, SERVER_NAME, false, err, sizeof err) < 0) {
        fprintf(stderr, "runtime serve: %s\n", err);
        return 1;
    }
    struct conn_opts o = {.tls = ctx, .idle_ms = IDLE_MS};
    int rc = ring_create(&r, 256);
    if (rc == 0 && (rc = net_addr_parse("127.0.0.1:0", &any)) == 0)
        rc = conn_listen(&l, r, &any, &o, &h, NULL, NULL);
    if (rc < 0) {
        fprintf(stderr, "runtime serve: %s\n", strerror(-rc));
        return 1;
    }
    char name[64];
    printf("%s\n", net_addr_str(conn_listener_addr(l), name, sizeof name));
    fflush(stdout);
    return ring_run(r) < 0;
}

/* ---- conns ---- */

static void convoy_start(struct bench_server *s, bool tls)
{
    char *argv[] = {B.self, "serve", B.pki, tls ? "tls" : "plain", NULL};
    int out;
    char line[128];
    s->pid = s->worker = bench_spawn(argv, &out);
    size_t n = bench_read(out, line, sizeof line, true, SAMPLE_S);
    close(out);
    if (n == 0 || line[n - 1] != '\n')
        bench_die("the convoy server did not start");
    line[n - 1] = '\0';
    if (net_addr_parse(line, &s->addr) < 0)
        bench_die("the convoy server printed '%s'", line);
}

static void nginx_start(struct bench_server *s, bool tls)
{
    struct bench_nginx_opts o = {
        .conns = B.conns,
        .idle_s = IDLE_MS / 1000,
        .pki = tls ? B.pki : NULL,
        .cert = SERVER_NAME,
        .locations = "    location / { return 200 \"ok\\n\"; }\n",
    };
    bench_nginx_start(s, &o);
}

/* RSS growth per connection of one server, in KiB. */
static double conns_sample(bool nginx, bool tls)
{
    struct bench_server s;
    if (nginx)
        nginx_start(&s, tls);
    else
        convoy_start(&s, tls);
    usleep(SETTLE_US);
    long before = bench_rss_kib(s.worker);
    struct bench_client *cl =
        bench_clients_open(&s.addr, tls ? B.cli_tls : NULL, request, B.conns, SAMPLE_S);
    usleep(SETTLE_US);
    long after = bench_rss_kib(s.worker);
    unsigned alive = bench_clients_alive(cl, B.conns);
    bench_clients_close(cl, B.conns);
    bench_kid_stop(s.pid, SIGTERM);
    if (alive != B.conns) /* a server that closed some measured fewer */
        bench_die("conns: %s closed %u of %u idle connections", nginx ? "nginx" : "convoy",
                  B.conns - alive, B.conns);
    return (double)(after - before) / B.conns;
}

static void conns_row(bool tls)
{
    double convoy[RUNS_MAX], nginx[RUNS_MAX];
    for (unsigned i = 0; i < B.runs; i++) {
        bool nginx_first = i % 2;
        for (int k = 0; k < 2; k++) {
            bool ngx = nginx_first == (k == 0);
            (ngx ? nginx : convoy)[i] = conns_sample(ngx, tls);
        }
        fprintf(stderr, "runtime: conns tls=%d run %u: convoy %.2f nginx %.2f KiB\n", tls, i + 1,
                convoy[i], nginx[i]);
    }
    printf("conns tls=%d n=%u convoy_kib_per_conn=%.2f nginx_kib_per_conn=%.2f\n", tls, B.conns,
           bench_median(convoy, B.runs), bench_median(nginx, B.runs));
    fflush(stdout);
}

/*
 * Runs fn(a, b) in a child process and returns its figure: a sample that
 * fills a ring with thousands of connections leaves nothing behind (the
 * exit closes them all), and one that hangs is ended by SIGALRM.
 */
static double in_child(double (*fn)(unsigned a, unsigned b), unsigned a, unsigned b)
{
    int p[2];
    if (pipe(p) != 0)
        bench_die("pipe: %s", strerror(errno));
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        bench_in_kid();
        alarm(SAMPLE_S);
        double v = fn(a, b);
        dprintf(p[1], "%.6f\n", v);
        _exit(0);
    }
    bench_kid_add(pid);
    close(p[1]);
    char line[64];
    size_t got = bench_read(p[0], line, sizeof line, true, SAMPLE_S);
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    bench_kid_forget(pid);
    if (got == 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        bench_die("a sample failed (%s)", WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM
                                              ? "not done in time"
                                              : "its reason is above");
    return strtod(line, NULL);
}

/* ---- close ---- */

struct closer {
    ring_t *ring;
    conn_t **conns; /* accepted, by index */
    unsigned accepted, want;
    unsigned next, last; /* closing next, and stopping after last */
};

static struct closer C;

static void closer_accept(conn_t *c, void *arg)
{
    (void)arg;
    conn_set_udata(c, (void *)(uintptr_t)C.accepted);
    C.conns[C.accepted] = c;
    if (++C.accepted == C.want)
        ring_stop(C.ring);
}

static ssize_t closer_data(conn_t *c, const uint8_t *data, size_t len)
{
    (void)c, (void)data;
    return (ssize_t)len;
}

static void closer_close(conn_t *c, int reason)
{
    (void)reason;
    if ((uintptr_t)conn_udata(c) != C.next)
        return;
    if (C.next == C.last) {
        ring_stop(C.ring);
        return;
    }
    conn_abort(C.conns[++C.next], -ECONNABORTED);
}

/* The clients' process: connects n sockets to addr and keeps them until
 * killed, or until its parent dies. */
static pid_t close_clients(const struct net_addr *addr, unsigned n)
{
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid > 0)
        return pid;
    bench_in_kid();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        bench_die("prctl: %s", strerror(errno));
    for (unsigned i = 0; i < n; i++)
        bench_dial(addr, i);
    for (;;)
        pause();
}

/*
 * Opens n connections, closes k of them one after another, and gives the
 * time per close in microseconds. Runs in a child, with the clients in a
 * process of their own: each side then needs only n descriptors.
 */
static double close_child(unsigned n, unsigned k)
{
    static const struct conn_handlers h = {.on_data = closer_data, .on_close = closer_close};
    struct conn_opts o = {.idle_ms = IDLE_MS};
    conn_listener_t *l;
    struct net_addr any;
    C.conns = calloc(n, sizeof *C.conns);
    C.want = n;
    if (C.conns == NULL || ring_create(&C.ring, 256) < 0 ||
        net_addr_parse("127.0.0.1:0", &any) < 0 ||
        conn_listen(&l, C.ring, &any, &o, &h, closer_accept, NULL) < 0)
        bench_die("close: setting up the ring failed");
    pid_t clients = close_clients(conn_listener_addr(l), n);
    if (ring_run(C.ring) < 0) /* until all n are accepted */
        bench_die("close: ring_run failed");
    C.next = 0;
    C.last = k - 1;
    double t0 = bench_now_s();
    conn_abort(C.conns[0], -ECONNABORTED);
    if (ring_run(C.ring) < 0)
        bench_die("close: ring_run failed");
    double us = (bench_now_s() - t0) * 1e6 / k;
    kill(clients, SIGKILL);
    waitpid(clients, NULL, 0);
    return us;
}

static unsigned close_k(unsigned n)
{
    return n / 2 < CLOSE_K ? n / 2 : CLOSE_K;
}

/* vs_100 is the median over runs of each run's row over its 100 row. */
static void close_rows(void)
{
    static const unsigned wanted[] = {100, 10000, CLOSE_MAX};
    enum { ROWS = sizeof wanted / sizeof wanted[0] };
    double us[ROWS][RUNS_MAX], vs[ROWS][RUNS_MAX];
    unsigned n[ROWS];
    rlim_t room = B.nofile > 200 ? B.nofile - 100 : 0; /* one fd per connection and side */
    for (unsigned r = 0; r < ROWS; r++)
        n[r] = wanted[r] < room ? wanted[r] : (unsigned)room;
    for (unsigned i = 0; i < B.runs; i++) {
        for (unsigned r = 0; r < ROWS; r++) {
            us[r][i] = in_child(close_child, n[r], close_k(n[r]));
            vs[r][i] = us[r][i] / us[0][i];
        }
        fprintf(stderr, "runtime: close run %u: %.1f %.1f %.1f us\n", i + 1, us[0][i], us[1][i],
                us[2][i]);
    }
    for (unsigned r = 0; r < ROWS; r++) {
        printf("close conns=%u us_per_close=%.1f vs_100=%.1f closed=%u", n[r],
               bench_median(us[r], B.runs), bench_median(vs[r], B.runs), close_k(n[r]));
        if (n[r] < wanted[r])
            printf(" wanted=%u nofile=%llu", wanted[r], (unsigned long long)B.nofile);
        printf("\n");
    }
    fflush(stdout);
}

/* ---- stream ---- */

struct streamer {
    ring_t *ring;
    uint8_t buf[WRITE_SIZE];
    uint64_t sent, got;
    double t0, t1;
    int closes;
};

static struct streamer S;

/* Writes until the queue is above the high-water mark; on_drain calls again. */
static void stream_pump(conn_t *c)
{
    while (conn_queued(c) <= CONN_HIGH_WATER) {
        if (S.sent >= STREAM_BYTES || bench_now_s() - S.t0 > STREAM_S) {
            conn_close(c);
            return;
        }
        if (conn_write(c, S.buf, sizeof S.buf) < 0)
            return; /* the connection closes itself */
        S.sent += sizeof S.buf;
    }
}

static void stream_open(conn_t *c)
{
    S.t0 = bench_now_s();
    stream_pump(c);
}

static ssize_t stream_data(conn_t *c, const uint8_t *data, size_t len)
{
    (void)c, (void)data;
    S.got += len;
    return (ssize_t)len;
}

static void stream_close(conn_t *c, int reason)
{
    (void)c;
    if (reason != 0)
        bench_die("stream: connection closed: %s", conn_reason_str(reason));
    if (S.t1 == 0)
        S.t1 = bench_now_s(); /* the first to close is the client, at the end of the data */
    if (++S.closes == 2)
        ring_stop(S.ring);
}

/* MB/s through one pair, TLS when tls. Runs in a child. */
static double stream_child(unsigned tls, unsigned unused)
{
    static const struct conn_handlers srv = {.on_open = stream_open,
                                             .on_data = stream_data,
                                             .on_drain = stream_pump,
                                             .on_close = stream_close};
    static const struct conn_handlers cli = {.on_data = stream_data, .on_close = stream_close};
    struct conn_opts so = {.tls = tls ? B.srv_tls : NULL}, co = {.tls = tls ? B.cli_tls : NULL};
    conn_listener_t *l;
    conn_t *c;
    struct net_addr any;
    (void)unused;
    memset(S.buf, 0xa5, sizeof S.buf);
    if (ring_create(&S.ring, 64) < 0 || net_addr_parse("127.0.0.1:0", &any) < 0 ||
        conn_listen(&l, S.ring, &any, &so, &srv, NULL, NULL) < 0 ||
        conn_connect(&c, S.ring, conn_listener_addr(l), &co, &cli, NULL) < 0 ||
        ring_run(S.ring) < 0)
        bench_die("stream: the ring failed");
    return (double)S.got / (S.t1 - S.t0) / 1e6;
}

/* ---- the cipher ---- */

struct suite {
    const char *name;
    const EVP_CIPHER *(*evp)(void);
};

static const struct suite suites[] = {
    {"TLS_AES_128_GCM_SHA256", EVP_aes_128_gcm},
    {"TLS_AES_256_GCM_SHA384", EVP_aes_256_gcm},
    {"TLS_CHACHA20_POLY1305_SHA256", EVP_chacha20_poly1305},
};

/* Moves what one session has for the other. */
static void pass(tls_t *from, tls_t *to)
{
    uint8_t buf[16384];
    size_t n;
    while ((n = tls_out_take(from, buf, sizeof buf)) > 0)
        if (tls_feed(to, buf, n) < 0)
            bench_die("tls_feed: out of memory");
}

/* What a client and a server session of the bench's contexts agree on. */
static const struct suite *negotiated(void)
{
    tls_t *c, *s;
    if (tls_new(&c, B.cli_tls, NULL, NULL) < 0 || tls_new(&s, B.srv_tls, NULL, NULL) < 0)
        bench_die("tls_new: out of memory");
    for (int i = 0; i < 8 && !(tls_handshake_done(c) && tls_handshake_done(s)); i++) {
        tls_handshake(c);
        pass(c, s);
        tls_handshake(s);
        pass(s, c);
    }
    const char *name = tls_cipher(s);
    const struct suite *su = NULL;
    for (size_t i = 0; name && i < sizeof suites / sizeof suites[0]; i++)
        if (strcmp(suites[i].name, name) == 0)
            su = &suites[i];
    if (su == NULL)
        bench_die("handshake: no known suite (%s)", name ? name : tls_errstr(s));
    tls_free(c);
    tls_free(s);
    return su;
}

/* The plain pair shows what the ring and loopback allow without TLS. */
static void stream_rows(void)
{
    const struct suite *su = negotiated();
    double plain[RUNS_MAX], pair[RUNS_MAX], cipher[RUNS_MAX], frac[RUNS_MAX];
    for (unsigned i = 0; i < B.runs; i++) {
        plain[i] = in_child(stream_child, 0, 0);
        pair[i] = in_child(stream_child, 1, 0);
        cipher[i] = bench_aead_mbps(su->evp(), CIPHER_BYTES);
        frac[i] = pair[i] / cipher[i];
        fprintf(stderr, "runtime: stream run %u: plain %.0f, TLS %.0f of %.0f MB/s\n", i + 1,
                plain[i], pair[i], cipher[i]);
    }
    printf("stream tls=0 MBps=%.0f\n", bench_median(plain, B.runs));
    printf("stream tls=1 MBps=%.0f cipher=%s cipher_MBps=%.0f frac=%.2f\n",
           bench_median(pair, B.runs), su->name, bench_median(cipher, B.runs),
           bench_median(frac, B.runs));
    fflush(stdout);
}

/* ---- main ---- */

static void setup(void)
{
    static const char *const names[] = {SERVER_NAME, NULL};
    char err[512];
    ssize_t n = readlink("/proc/self/exe", B.self, sizeof B.self - 1);
    if (n <= 0)
        bench_die("readlink /proc/self/exe: %s", strerror(errno));
    B.self[n] = '\0';
    if (access(BENCH_NGINX, X_OK) != 0)
        bench_die("%s: %s (make bench-runtime installs it)", BENCH_NGINX, strerror(errno));
    /* As high as the largest close row wants (one side of its connections
     * per process), which a process with CAP_SYS_RESOURCE may set above
     * the hard limit; else the hard limit. */
    B.nofile = bench_raise_nofile(CLOSE_MAX + 1000);
    snprintf(B.pki, sizeof B.pki, "%s/pki", B.dir);
    if (fx_pki(B.pki, names) != 0)
        bench_die("cannot make a PKI in %s", B.pki);
    if (tls_ctx_new(&B.srv_tls, TLS_SERVER, B.pki, SERVER_NAME, false, err, sizeof err) < 0 ||
        tls_ctx_new(&B.cli_tls, TLS_CLIENT, B.pki, NULL, false, err, sizeof err) < 0)
        bench_die("%s", err);
}

int main(int argc, char **argv)
{
    log_set_level(LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    if (argc == 4 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2], strcmp(argv[3], "tls") == 0);
    B.runs = 5;
    B.conns = CONNS_N;
    int opt;
    const char *only = NULL;
    while ((opt = getopt(argc, argv, "qr:o:")) != -1) {
        if (opt == 'o') {
            only = optarg;
        } else if (opt == 'q') {
            B.runs = 1;
            B.conns = 1000;
        } else if (opt == 'r' && atoi(optarg) >= 1 && atoi(optarg) <= RUNS_MAX) {
            B.runs = (unsigned)atoi(optarg);
        } else {
            fprintf(stderr, "usage: %s [-q] [-r RUNS (1-%d)] [-o conns|close|stream]\n", argv[0],
                    RUNS_MAX);
            return 2;
        }
    }
    B.dir = bench_start("runtime");
    setup();
    printf("runtime openssl=%s cpus=%ld nofile=%llu runs=%u\n",
           OpenSSL_version(OPENSSL_VERSION_STRING), sysconf(_SC_NPROCESSORS_ONLN),
           (unsigned long long)B.nofile, B.runs);
    fflush(stdout);
    bool all = only == NULL;
    if (all || strcmp(only, "conns") == 0) {
        conns_row(false);
        conns_row(true);
    }
    if (all || strcmp(only, "close") == 0)
        close_rows();
    if (all || strcmp(only, "stream") == 0)
        stream_rows();
    tls_ctx_free(B.srv_tls);
    tls_ctx_free(B.cli_tls);
    bench_end();
    return 0;
}
