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

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUNS_MAX     15
#define CONNS_N      10000u
#define SAMPLE_S     60                /* any one sample fails after this */
#define SOCK_TIMEOUT 10                /* seconds a client waits for its server */
#define BATCH        64u               /* clients dialled before the first finishes */
#define IDLE_MS      (600u * 1000)     /* idle timeout of the servers' connections */
#define SETTLE_US    (300u * 1000)     /* lets a server finish its sends before RSS */
#define SERVER_NAME  "server"          /* the certificate both servers present */
#define CLOSE_MAX    50000u            /* the largest close row */
#define CLOSE_K      500u              /* closes timed per close sample, at most */
#define PER_SRC_IP   20000u            /* clients per loopback source address */
#define STREAM_BYTES (1ull << 30)      /* the stream stops after this ... */
#define STREAM_S     3.0               /* ... or this long */
#define WRITE_SIZE   (64u * 1024)      /* the stream's conn_write size */
#define RECORD       (16u * 1024 + 1)  /* a full TLS 1.3 record: data and type */
#define CIPHER_BYTES (512ull << 20)    /* encrypted per cipher sample */
#define NGINX        "/usr/sbin/nginx" /* installed by bench.mk when missing */

static const char request[] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";

struct bench {
    char dir[64];  /* temporary folder: PKI, nginx prefix */
    char pki[128]; /* dir/pki */
    char self[4096];
    tls_ctx_t *srv_tls; /* presents SERVER_NAME, no client certificates */
    tls_ctx_t *cli_tls; /* anonymous, trusts the PKI's CA */
    unsigned runs, conns;
    rlim_t nofile; /* RLIMIT_NOFILE after raising it */
};

static struct bench B;
static pid_t kids[2]; /* started and not yet reaped: killed by PID on failure */
static bool in_kid;   /* a sample's child: the parent owns the cleanup */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void kids_add(pid_t pid)
{
    for (size_t i = 0; i < sizeof kids / sizeof kids[0]; i++)
        if (kids[i] == 0) {
            kids[i] = pid;
            return;
        }
}

static void kids_forget(pid_t pid)
{
    for (size_t i = 0; i < sizeof kids / sizeof kids[0]; i++)
        if (kids[i] == pid)
            kids[i] = 0;
}

/* Stops a child of ours and reaps it. */
static void kid_stop(pid_t pid, int sig)
{
    kill(pid, sig);
    waitpid(pid, NULL, 0);
    kids_forget(pid);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "runtime: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (in_kid)
        exit(1);
    for (size_t i = 0; i < sizeof kids / sizeof kids[0]; i++)
        if (kids[i] > 0)
            kid_stop(kids[i], SIGKILL);
    fx_rmtree(B.dir);
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- processes ---- */

/* VmRSS of pid in KiB. */
static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        die("open %s: %s", path, strerror(errno));
    while (kib < 0 && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) != 1)
            kib = -1;
    fclose(f);
    if (kib < 0)
        die("%s has no VmRSS", path);
    return kib;
}

/* A process whose parent is ppid, or 0 (nginx's worker is its master's). */
static pid_t child_of(pid_t ppid)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        die("open /proc: %s", strerror(errno));
    pid_t found = 0;
    struct dirent *e;
    while (found == 0 && (e = readdir(d)) != NULL) {
        char path[300], buf[512];
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue; /* gone meanwhile */
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
        int pp;
        if (p && sscanf(p + 1, " %*c %d", &pp) == 1 && pp == ppid)
            found = (pid_t)atoi(e->d_name);
    }
    closedir(d);
    return found;
}

/* Starts argv[0] with stdout on a pipe when out is not NULL. */
static pid_t spawn(char *const argv[], int *out)
{
    int p[2] = {-1, -1};
    if (out && pipe(p) != 0)
        die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        if (out && (dup2(p[1], STDOUT_FILENO) < 0 || close(p[0]) != 0))
            _exit(127);
        execv(argv[0], argv);
        fprintf(stderr, "runtime: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    kids_add(pid);
    if (out) {
        close(p[1]);
        *out = p[0];
    }
    return pid;
}

/* Reads up to cap-1 bytes from fd until EOF or a newline, for at most
 * SAMPLE_S seconds. */
static size_t read_line(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    double end = now_s() + SAMPLE_S;
    while (got + 1 < cap && (got == 0 || buf[got - 1] != '\n')) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = (int)((end - now_s()) * 1000);
        if (left <= 0 || poll(&p, 1, left) <= 0)
            break;
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    return got;
}

/* ---- clients ---- */

struct client {
    int fd;
    tls_t *t; /* NULL for plain, and once answered */
};

static void sock_timeouts(int fd)
{
    struct timeval tv = {.tv_sec = SOCK_TIMEOUT};
    struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* close with a reset: no TIME_WAIT */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0)
        die("setsockopt: %s", strerror(errno));
}

/* A blocking socket connected to addr from 127.0.0.(2 + i / PER_SRC_IP):
 * one source address has fewer ephemeral ports than the close row needs. */
static int dial_tcp(const struct net_addr *addr, unsigned i)
{
    int fd = net_socket_for(addr);
    if (fd < 0)
        die("socket: %s", strerror(-fd));
    sock_timeouts(fd);
    int one = 1;
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + i / PER_SRC_IP);
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&src, sizeof src) != 0 ||
        connect(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0)
        die("connect (client %u): %s", i, strerror(errno));
    return fd;
}

static void send_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            die("send: %s", n < 0 ? strerror(errno) : "nothing sent");
        p += n;
        len -= (size_t)n;
    }
}

static void client_flush(struct client *cl)
{
    uint8_t buf[16384];
    size_t n;
    while ((n = tls_out_take(cl->t, buf, sizeof buf)) > 0)
        send_all(cl->fd, buf, n);
}

/* Feeds what the server sent; fails on EOF or after SOCK_TIMEOUT. */
static void client_fill(struct client *cl)
{
    uint8_t buf[16384];
    ssize_t n = recv(cl->fd, buf, sizeof buf, 0);
    if (n <= 0)
        die("recv: %s", n < 0 ? strerror(errno) : "server closed");
    if (tls_feed(cl->t, buf, (size_t)n) < 0)
        die("tls_feed: out of memory");
}

/* Plaintext from the server: what recv or tls_read gives. */
static size_t client_read(struct client *cl, char *buf, size_t cap)
{
    if (cl->t == NULL) {
        ssize_t n = recv(cl->fd, buf, cap, 0);
        if (n <= 0)
            die("recv: %s", n < 0 ? strerror(errno) : "server closed");
        return (size_t)n;
    }
    ssize_t n;
    while ((n = tls_read(cl->t, buf, cap)) == 0)
        client_fill(cl);
    if (n < 0)
        die("tls_read: %s", tls_errstr(cl->t));
    return (size_t)n;
}

/* An answer is whole once its headers and Content-Length bytes are in. */
static bool answer_whole(const char *buf, size_t len)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL)
        return false;
    size_t head = (size_t)(end - buf) + 4, body = 0;
    for (const char *p = buf; p < end; p = (const char *)memchr(p, '\n', (size_t)(end + 2 - p)) + 1)
        if (strncasecmp(p, "content-length:", 15) == 0)
            body = strtoul(p + 15, NULL, 10);
    return len >= head + body;
}

/* Connects and sends what comes first: the ClientHello, or the request. */
static void client_dial(struct client *cl, const struct net_addr *addr, bool tls, unsigned i)
{
    cl->fd = dial_tcp(addr, i);
    cl->t = NULL;
    if (!tls) {
        send_all(cl->fd, request, sizeof request - 1);
        return;
    }
    if (tls_new(&cl->t, B.cli_tls, NULL) < 0)
        die("tls_new: out of memory");
    if (tls_handshake(cl->t) < 0)
        die("handshake: %s", tls_errstr(cl->t));
    client_flush(cl);
}

static void client_finish(struct client *cl)
{
    if (cl->t == NULL)
        return;
    int rc;
    while ((rc = tls_handshake(cl->t)) == 0) {
        client_flush(cl);
        client_fill(cl);
    }
    if (rc < 0 || tls_write(cl->t, request, sizeof request - 1) < 0)
        die("handshake: %s", tls_errstr(cl->t));
    client_flush(cl);
}

/* Reads the answer, then keeps only the socket. */
static void client_answer(struct client *cl)
{
    char buf[2048];
    size_t len = 0;
    while (!answer_whole(buf, len)) {
        if (len == sizeof buf)
            die("answer longer than %zu bytes", sizeof buf);
        len += client_read(cl, buf + len, sizeof buf - len);
    }
    tls_free(cl->t);
    cl->t = NULL;
}

/* n clients of addr, each used once and left open. */
static struct client *clients_open(const struct net_addr *addr, bool tls, unsigned n)
{
    struct client *cl = calloc(n, sizeof *cl);
    if (cl == NULL)
        die("out of memory");
    double end = now_s() + SAMPLE_S;
    for (unsigned b = 0; b < n; b += BATCH) {
        unsigned e = b + BATCH < n ? b + BATCH : n;
        for (unsigned i = b; i < e; i++)
            client_dial(&cl[i], addr, tls, i);
        for (unsigned i = b; i < e; i++)
            client_finish(&cl[i]);
        for (unsigned i = b; i < e; i++)
            client_answer(&cl[i]);
        if (now_s() > end)
            die("%u connections (tls=%d) not open after %d s", n, tls, SAMPLE_S);
    }
    return cl;
}

static void clients_close(struct client *cl, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        close(cl[i].fd);
    free(cl);
}

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

struct server {
    pid_t pid;    /* the process to stop */
    pid_t worker; /* the process to measure */
    struct net_addr addr;
};

static void convoy_start(struct server *s, bool tls)
{
    char *argv[] = {B.self, "serve", B.pki, tls ? "tls" : "plain", NULL};
    int out;
    char line[128];
    s->pid = s->worker = spawn(argv, &out);
    size_t n = read_line(out, line, sizeof line);
    close(out);
    if (n == 0 || line[n - 1] != '\n')
        die("the convoy server did not start");
    line[n - 1] = '\0';
    if (net_addr_parse(line, &s->addr) < 0)
        die("the convoy server printed '%s'", line);
}

/* A port nobody listens on now. */
static unsigned free_port(void)
{
    struct net_addr a;
    if (net_addr_parse("127.0.0.1:0", &a) < 0)
        die("net_addr_parse");
    int fd = net_socket_for(&a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a.ss, a.len) != 0 || net_local_addr(fd, &a) < 0)
        die("free port: %s", strerror(errno));
    close(fd);
    return ntohs(((struct sockaddr_in *)&a.ss)->sin_port);
}

static void nginx_conf(const char *path, unsigned port, bool tls)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        die("open %s: %s", path, strerror(errno));
    fprintf(f,
            "daemon off;\nmaster_process on;\nworker_processes 1;\n"
            "worker_rlimit_nofile %u;\npid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
            "events { worker_connections %u; }\n"
            "http {\n  access_log off;\n  keepalive_timeout %us;\n  keepalive_requests 1000;\n"
            "  client_body_temp_path %s/body;\n  proxy_temp_path %s/proxy;\n"
            "  fastcgi_temp_path %s/fastcgi;\n  uwsgi_temp_path %s/uwsgi;\n"
            "  scgi_temp_path %s/scgi;\n"
            "  server {\n    listen 127.0.0.1:%u%s;\n",
            2 * B.conns + 100, B.dir, B.dir, B.conns + 100, IDLE_MS / 1000, B.dir, B.dir, B.dir,
            B.dir, B.dir, port, tls ? " ssl" : "");
    if (tls)
        fprintf(f,
                "    ssl_protocols TLSv1.3;\n    ssl_certificate %s/%s.crt;\n"
                "    ssl_certificate_key %s/%s.key;\n",
                B.pki, SERVER_NAME, B.pki, SERVER_NAME);
    fprintf(f, "    location / { return 200 \"ok\\n\"; }\n  }\n}\n");
    if (fclose(f) != 0)
        die("write %s: %s", path, strerror(errno));
}

/* Copies nginx's error log to stderr: the folder goes when the bench fails. */
static void nginx_log_show(void)
{
    char path[128], line[512];
    snprintf(path, sizeof path, "%s/error.log", B.dir);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        fputs(line, stderr);
    if (f)
        fclose(f);
}

/* nginx is up once its worker exists and its port takes a connection. */
static void nginx_wait(struct server *s)
{
    double end = now_s() + 10;
    while ((s->worker = child_of(s->pid)) == 0 && now_s() < end)
        usleep(10 * 1000);
    int fd = -1;
    while (s->worker != 0 && fd < 0 && now_s() < end) {
        fd = net_socket_for(&s->addr);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&s->addr.ss, s->addr.len) != 0) {
            close(fd);
            fd = -1;
            usleep(10 * 1000);
        }
    }
    if (fd < 0) {
        nginx_log_show();
        die("nginx did not start (its error log is above)");
    }
    close(fd);
}

static void nginx_start(struct server *s, bool tls)
{
    char conf[128], err[128], prefix[80], addr[64];
    unsigned port = free_port();
    snprintf(conf, sizeof conf, "%s/nginx.conf", B.dir);
    snprintf(err, sizeof err, "%s/error.log", B.dir);
    snprintf(prefix, sizeof prefix, "%s/", B.dir);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    if (net_addr_parse(addr, &s->addr) < 0)
        die("net_addr_parse %s", addr);
    nginx_conf(conf, port, tls);
    char *argv[] = {NGINX, "-p", prefix, "-c", conf, "-e", err, NULL};
    s->pid = spawn(argv, NULL);
    nginx_wait(s);
}

/* RSS growth per connection of one server, in KiB. */
static double conns_sample(bool nginx, bool tls)
{
    struct server s;
    if (nginx)
        nginx_start(&s, tls);
    else
        convoy_start(&s, tls);
    usleep(SETTLE_US);
    long before = rss_kib(s.worker);
    struct client *cl = clients_open(&s.addr, tls, B.conns);
    usleep(SETTLE_US);
    long after = rss_kib(s.worker);
    clients_close(cl, B.conns);
    kid_stop(s.pid, SIGTERM);
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
           median(convoy, B.runs), median(nginx, B.runs));
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
        die("pipe: %s", strerror(errno));
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        in_kid = true;
        alarm(SAMPLE_S);
        double v = fn(a, b);
        dprintf(p[1], "%.6f\n", v);
        _exit(0);
    }
    kids_add(pid);
    close(p[1]);
    char line[64];
    size_t got = read_line(p[0], line, sizeof line);
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    kids_forget(pid);
    if (got == 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("a sample failed (%s)", WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM
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
        die("fork: %s", strerror(errno));
    if (pid > 0)
        return pid;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        die("prctl: %s", strerror(errno));
    for (unsigned i = 0; i < n; i++)
        dial_tcp(addr, i);
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
        die("close: setting up the ring failed");
    pid_t clients = close_clients(conn_listener_addr(l), n);
    if (ring_run(C.ring) < 0) /* until all n are accepted */
        die("close: ring_run failed");
    C.next = 0;
    C.last = k - 1;
    double t0 = now_s();
    conn_abort(C.conns[0], -ECONNABORTED);
    if (ring_run(C.ring) < 0)
        die("close: ring_run failed");
    double us = (now_s() - t0) * 1e6 / k;
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
               median(us[r], B.runs), median(vs[r], B.runs), close_k(n[r]));
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
        if (S.sent >= STREAM_BYTES || now_s() - S.t0 > STREAM_S) {
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
    S.t0 = now_s();
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
        die("stream: connection closed: %s", conn_reason_str(reason));
    if (S.t1 == 0)
        S.t1 = now_s(); /* the first to close is the client, at the end of the data */
    if (++S.closes == 2)
        ring_stop(S.ring);
}

/* MB/s through one pair, TLS when tls. Runs in a child. */
static double stream_child(unsigned tls, unsigned unused)
{
    static const struct conn_handlers srv = {stream_open, stream_data, stream_pump, stream_close};
    static const struct conn_handlers cli = {NULL, stream_data, NULL, stream_close};
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
        die("stream: the ring failed");
    return (double)S.got / (S.t1 - S.t0) / 1e6;
}

/* ---- the cipher ---- */

struct suite {
    unsigned id; /* on the wire */
    const char *name;
    const EVP_CIPHER *(*evp)(void);
};

static const struct suite suites[] = {
    {0x1301, "TLS_AES_128_GCM_SHA256", EVP_aes_128_gcm},
    {0x1302, "TLS_AES_256_GCM_SHA384", EVP_aes_256_gcm},
    {0x1303, "TLS_CHACHA20_POLY1305_SHA256", EVP_chacha20_poly1305},
};

/* The suite of a ServerHello record: type 22, version, length, then the
 * handshake (type 2, length, version, 32 random bytes, session id, suite). */
static unsigned hello_suite(const uint8_t *p, size_t len)
{
    if (len < 44 || p[0] != 22 || p[5] != 2)
        return 0;
    size_t at = 44 + p[43];
    return at + 2 <= len ? (unsigned)p[at] << 8 | p[at + 1] : 0;
}

/* What a client and a server session of the bench's contexts agree on. */
static const struct suite *negotiated(void)
{
    tls_t *c, *s;
    uint8_t buf[16384];
    if (tls_new(&c, B.cli_tls, NULL) < 0 || tls_new(&s, B.srv_tls, NULL) < 0)
        die("tls_new: out of memory");
    tls_handshake(c);
    size_t n = tls_out_take(c, buf, sizeof buf);
    if (tls_feed(s, buf, n) < 0)
        die("tls_feed: out of memory");
    tls_handshake(s);
    unsigned id = hello_suite(buf, tls_out_take(s, buf, sizeof buf));
    tls_free(c);
    tls_free(s);
    for (size_t i = 0; i < sizeof suites / sizeof suites[0]; i++)
        if (suites[i].id == id)
            return &suites[i];
    die("no known suite in the ServerHello (0x%04x)", id);
}

/* MB/s of sealing full records as TLS 1.3 does: a fresh nonce, the 5-byte
 * header as associated data, the tag. */
static double cipher_mbps(const EVP_CIPHER *cipher)
{
    static uint8_t in[RECORD], out[RECORD + 16];
    uint8_t key[32] = {7}, iv[12] = {9},
            aad[5] = {23, 3, 3, (RECORD + 16) >> 8, (RECORD + 16) & 255};
    uint8_t tag[16];
    int n;
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    if (x == NULL || !EVP_EncryptInit_ex(x, cipher, NULL, key, iv))
        die("EVP: cannot set up %s", EVP_CIPHER_get0_name(cipher));
    double t0 = now_s();
    uint64_t done = 0;
    for (uint64_t seq = 0; done < CIPHER_BYTES; seq++, done += RECORD) {
        memcpy(iv + 4, &seq, sizeof seq);
        if (!EVP_EncryptInit_ex(x, NULL, NULL, NULL, iv) ||
            !EVP_EncryptUpdate(x, NULL, &n, aad, sizeof aad) ||
            !EVP_EncryptUpdate(x, out, &n, in, RECORD) || !EVP_EncryptFinal_ex(x, out + n, &n) ||
            !EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, sizeof tag, tag))
            die("EVP: %s failed", EVP_CIPHER_get0_name(cipher));
    }
    double mbps = (double)done / (now_s() - t0) / 1e6;
    EVP_CIPHER_CTX_free(x);
    return mbps;
}

/* The plain pair shows what the ring and loopback allow without TLS. */
static void stream_rows(void)
{
    const struct suite *su = negotiated();
    double plain[RUNS_MAX], pair[RUNS_MAX], cipher[RUNS_MAX], frac[RUNS_MAX];
    for (unsigned i = 0; i < B.runs; i++) {
        plain[i] = in_child(stream_child, 0, 0);
        pair[i] = in_child(stream_child, 1, 0);
        cipher[i] = cipher_mbps(su->evp());
        frac[i] = pair[i] / cipher[i];
        fprintf(stderr, "runtime: stream run %u: plain %.0f, TLS %.0f of %.0f MB/s\n", i + 1,
                plain[i], pair[i], cipher[i]);
    }
    printf("stream tls=0 MBps=%.0f\n", median(plain, B.runs));
    printf("stream tls=1 MBps=%.0f cipher=%s cipher_MBps=%.0f frac=%.2f\n", median(pair, B.runs),
           su->name, median(cipher, B.runs), median(frac, B.runs));
    fflush(stdout);
}

/* ---- main ---- */

/* As high as the largest close row wants (one side of its connections
 * per process), which a process with CAP_SYS_RESOURCE may set above the
 * hard limit; else the hard limit. */
static void raise_nofile(void)
{
    rlim_t want = CLOSE_MAX + 1000;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        die("getrlimit: %s", strerror(errno));
    if (rl.rlim_max < want) {
        struct rlimit up = {want, want};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up;
    }
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        die("setrlimit: %s", strerror(errno));
    B.nofile = rl.rlim_cur;
}

static void setup(void)
{
    static const char *const names[] = {SERVER_NAME, NULL};
    char err[512];
    ssize_t n = readlink("/proc/self/exe", B.self, sizeof B.self - 1);
    if (n <= 0)
        die("readlink /proc/self/exe: %s", strerror(errno));
    B.self[n] = '\0';
    if (access(NGINX, X_OK) != 0)
        die("%s: %s (make bench-runtime installs it)", NGINX, strerror(errno));
    raise_nofile();
    if (fx_tmpdir(B.dir, sizeof B.dir) != 0)
        die("mkdtemp: %s", strerror(errno));
    snprintf(B.pki, sizeof B.pki, "%s/pki", B.dir);
    if (fx_pki(B.pki, names) != 0)
        die("cannot make a PKI in %s", B.pki);
    if (tls_ctx_new(&B.srv_tls, TLS_SERVER, B.pki, SERVER_NAME, false, err, sizeof err) < 0 ||
        tls_ctx_new(&B.cli_tls, TLS_CLIENT, B.pki, NULL, false, err, sizeof err) < 0)
        die("%s", err);
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
    fx_rmtree(B.dir);
    return 0;
}
