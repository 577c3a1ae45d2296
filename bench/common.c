/*
 * bench/common — the pieces bench/runtime.c, bench/net.c and bench/chain.c
 * share (see common.h). Everything here dies on failure: a bench that cannot measure
 * says why and stops, after stopping what it started.
 */
#include "common.h"

#include "../tests/common/fixture.h"
#include "convoy/proc.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KIDS_MAX     8
#define SOCK_TIMEOUT 10     /* seconds a client waits for its server */
#define BATCH        64u    /* clients dialled before the first finishes */
#define PER_SRC_IP   20000u /* clients per loopback source address */
#define ANSWER_MAX   2048u  /* the longest answer a client reads */

static const char *bench_name = "bench";
static char bench_dir[64];   /* the temporary folder, "" when none */
static pid_t kids[KIDS_MAX]; /* started and not yet reaped */
static bool in_kid;          /* a sample's child: the parent owns the cleanup */
static void (*at_die)(void); /* bench_at_die's */

static void stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
}

/* One thread takes the signals that stop a bench and cleans up as
 * bench_die does: an interrupted bench (^C in make bench) leaves no
 * daemon, nginx or segment behind. */
static void *stopper_main(void *arg)
{
    int sig;
    if (sigwait(arg, &sig) == 0)
        bench_die("stopped by %s", strsignal(sig));
    return NULL;
}

static void stopper_start(void)
{
    static sigset_t set;
    pthread_t t;
    stop_signals(&set);
    int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (rc == 0)
        rc = pthread_create(&t, NULL, stopper_main, &set);
    if (rc != 0)
        bench_die("signals: %s", strerror(rc));
    pthread_detach(t);
}

/* What a child starts with: the stop signals its own again. */
static void signals_default(void)
{
    sigset_t set;
    stop_signals(&set);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
}

const char *bench_start(const char *name)
{
    bench_name = name;
    stopper_start();
    if (fx_tmpdir(bench_dir, sizeof bench_dir) != 0)
        bench_die("mkdtemp: %s", strerror(errno));
    return bench_dir;
}

void bench_end(void)
{
    if (bench_dir[0])
        fx_rmtree(bench_dir);
    bench_dir[0] = '\0';
}

void bench_at_die(void (*fn)(void))
{
    at_die = fn;
}

void bench_in_kid(void)
{
    in_kid = true;
    signals_default();
}

void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", bench_name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (in_kid)
        exit(1);
    for (size_t i = 0; i < KIDS_MAX; i++)
        if (kids[i] > 0)
            proc_stop(kids[i], 2000);
    if (at_die)
        at_die();
    bench_end();
    exit(1);
}

double bench_now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, unsigned n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- processes ---- */

void bench_kid_add(pid_t pid)
{
    for (size_t i = 0; i < KIDS_MAX; i++)
        if (kids[i] == 0) {
            kids[i] = pid;
            return;
        }
    bench_die("more than %d processes at once", KIDS_MAX);
}

void bench_kid_forget(pid_t pid)
{
    for (size_t i = 0; i < KIDS_MAX; i++)
        if (kids[i] == pid)
            kids[i] = 0;
}

void bench_kid_stop(pid_t pid, int sig)
{
    kill(pid, sig);
    waitpid(pid, NULL, 0);
    bench_kid_forget(pid);
}

pid_t bench_spawn(char *const argv[], int *out)
{
    int p[2] = {-1, -1};
    if (out && pipe(p) != 0)
        bench_die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        signals_default();
        if (out && (dup2(p[1], STDOUT_FILENO) < 0 || close(p[0]) != 0))
            _exit(127);
        execv(argv[0], argv);
        fprintf(stderr, "%s: exec %s: %s\n", bench_name, argv[0], strerror(errno));
        _exit(127);
    }
    bench_kid_add(pid);
    if (out) {
        close(p[1]);
        *out = p[0];
    }
    return pid;
}

size_t bench_read(int fd, char *buf, size_t cap, bool line, double timeout_s)
{
    size_t got = 0;
    double end = bench_now_s() + timeout_s;
    while (got + 1 < cap && !(line && got > 0 && buf[got - 1] == '\n')) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = (int)((end - bench_now_s()) * 1000);
        if (left <= 0 || poll(&p, 1, left) <= 0)
            break;
        ssize_t n = read(fd, buf + got, line ? 1 : cap - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    return got;
}

long bench_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        bench_die("open %s: %s", path, strerror(errno));
    while (kib < 0 && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) != 1)
            kib = -1;
    fclose(f);
    if (kib < 0)
        bench_die("%s has no VmRSS", path);
    return kib;
}

/* The fields of /proc/PID/stat after the command name (which may hold
 * spaces), into buf; NULL when the process is gone. */
static const char *stat_fields(const char *pid, char *buf, size_t cap)
{
    char path[300];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p ? p + 1 : NULL;
}

double bench_cpu_s(pid_t pid)
{
    char id[16], buf[1024];
    unsigned long long utime, stime;
    snprintf(id, sizeof id, "%d", (int)pid);
    const char *p = stat_fields(id, buf, sizeof buf);
    /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (p == NULL ||
        sscanf(p, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        bench_die("/proc/%d/stat: no CPU times", (int)pid);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

pid_t bench_child_of(pid_t ppid)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        bench_die("open /proc: %s", strerror(errno));
    pid_t found = 0;
    struct dirent *e;
    while (found == 0 && (e = readdir(d)) != NULL) {
        char buf[512];
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        const char *p = stat_fields(e->d_name, buf, sizeof buf);
        int pp;
        if (p && sscanf(p, " %*c %d", &pp) == 1 && pp == ppid)
            found = (pid_t)atoi(e->d_name);
    }
    closedir(d);
    return found;
}

unsigned bench_free_port(void)
{
    struct net_addr a;
    if (net_addr_parse("127.0.0.1:0", &a) < 0)
        bench_die("net_addr_parse");
    int fd = net_socket_for(&a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a.ss, a.len) != 0 || net_local_addr(fd, &a) < 0)
        bench_die("free port: %s", strerror(errno));
    close(fd);
    return ntohs(((struct sockaddr_in *)&a.ss)->sin_port);
}

rlim_t bench_raise_nofile(rlim_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        bench_die("getrlimit: %s", strerror(errno));
    if (rl.rlim_max < want) {
        struct rlimit up = {want, want};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up;
    }
    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        bench_die("setrlimit: %s", strerror(errno));
    return rl.rlim_cur;
}

/* ---- commands and daemons ---- */

#define RUN_OUT_MAX  8192u /* what bench_run keeps of a command's stdout */
#define LOG_TAIL     4096u /* what bench_log_show prints of a log */
#define DAEMON_GRACE 5000u /* ms between SIGTERM and SIGKILL */
#define AEAD_RECORD  16384u
#define PKI_RUN_S    60.0 /* one pki or user command */

int bench_run(char *const argv[], char *out, size_t cap, double limit_s)
{
    char sink[RUN_OUT_MAX];
    int fd;
    if (out == NULL) {
        out = sink;
        cap = sizeof sink;
    }
    pid_t pid = bench_spawn(argv, &fd);
    double end = bench_now_s() + limit_s;
    size_t got = 0;
    out[0] = '\0';
    while (got + 1 < cap && bench_now_s() < end) { /* until EOF: the command is done */
        size_t n = bench_read(fd, out + got, cap - got, false, end - bench_now_s());
        if (n == 0)
            break;
        got += n;
    }
    close(fd);
    int st = 0;
    double left = end - bench_now_s();
    int rc = proc_wait(pid, (uint32_t)((left > 0 ? left : 0) * 1000), &st);
    bench_kid_forget(pid);
    if (rc == -ETIMEDOUT) {
        proc_stop(pid, 0);
        return 124;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void bench_run_ok(char *const argv[], char *out, size_t cap, double limit_s)
{
    int rc = bench_run(argv, out, cap, limit_s);
    if (rc != 0)
        bench_die("%s %s: exit status %d", argv[0], argv[1] ? argv[1] : "", rc);
}

void bench_log_show(const char *path)
{
    char buf[LOG_TAIL];
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > (long)sizeof buf - 1)
        fseek(f, -(long)sizeof buf + 1, SEEK_END);
    else
        rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    fprintf(stderr, "--- %s\n%s---\n", path, buf);
}

void bench_pki_users(const char *convoy, const char *dir, const char *const (*certs)[2], size_t n,
                     const char *users, const char *user, const char *pass, const char *role)
{
    char cmd[4400];
    char *init[] = {(char *)convoy, "pki", "init", "--dir", (char *)dir, NULL};
    bench_run_ok(init, NULL, 0, PKI_RUN_S);
    for (size_t i = 0; i < n; i++) {
        char *issue[] = {(char *)convoy,
                         "pki",
                         "issue",
                         (char *)certs[i][0],
                         "--role",
                         (char *)certs[i][1],
                         "--dir",
                         (char *)dir,
                         "--ip",
                         "127.0.0.1",
                         NULL};
        bench_run_ok(issue, NULL, 0, PKI_RUN_S);
    }
    snprintf(cmd, sizeof cmd, "printf '%%s\\n' '%s' | '%s' user add %s --file '%s' --role %s", pass,
             convoy, user, users, role);
    char *add[] = {"/bin/sh", "-c", cmd, NULL};
    bench_run_ok(add, NULL, 0, PKI_RUN_S);
}

pid_t bench_daemon_start(char *const argv[], const char *log_path)
{
    pid_t pid = proc_spawn(argv, log_path);
    if (pid < 0)
        bench_die("spawn %s: %s", argv[0], strerror((int)-pid));
    bench_kid_add(pid);
    return pid;
}

void bench_daemon_stop(pid_t pid)
{
    proc_stop(pid, DAEMON_GRACE);
    bench_kid_forget(pid);
}

void bench_port_wait(const struct net_addr *a, const char *who, double limit_s)
{
    double end = bench_now_s() + limit_s;
    for (;;) {
        int fd = net_socket_for(a);
        if (fd >= 0 && connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0) {
            close(fd);
            return;
        }
        if (fd >= 0)
            close(fd);
        if (bench_now_s() > end)
            bench_die("%s did not listen within %.0f s", who, limit_s);
        usleep(20 * 1000);
    }
}

double bench_aead_mbps(const EVP_CIPHER *cipher, unsigned long long bytes)
{
    static uint8_t in[AEAD_RECORD], out[AEAD_RECORD + 16];
    uint8_t key[32] = {7}, iv[12] = {9},
            aad[5] = {23, 3, 3, (AEAD_RECORD + 16) >> 8, (AEAD_RECORD + 16) & 255};
    uint8_t tag[16];
    int n;
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    if (x == NULL || !EVP_EncryptInit_ex(x, cipher, NULL, key, iv))
        bench_die("EVP: cannot set up %s", EVP_CIPHER_get0_name(cipher));
    double t0 = bench_now_s();
    unsigned long long done = 0;
    for (uint64_t seq = 0; done < bytes; seq++, done += AEAD_RECORD) {
        memcpy(iv + 4, &seq, sizeof seq);
        if (!EVP_EncryptInit_ex(x, NULL, NULL, NULL, iv) ||
            !EVP_EncryptUpdate(x, NULL, &n, aad, sizeof aad) ||
            !EVP_EncryptUpdate(x, out, &n, in, AEAD_RECORD) ||
            !EVP_EncryptFinal_ex(x, out + n, &n) ||
            !EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, sizeof tag, tag))
            bench_die("EVP: %s failed", EVP_CIPHER_get0_name(cipher));
    }
    double mbps = (double)done / (bench_now_s() - t0) / 1e6;
    EVP_CIPHER_CTX_free(x);
    return mbps;
}

/* ---- clients ---- */

static void sock_timeouts(int fd)
{
    struct timeval tv = {.tv_sec = SOCK_TIMEOUT};
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0)
        bench_die("setsockopt: %s", strerror(errno));
}

int bench_dial(const struct net_addr *addr, unsigned i)
{
    int fd = net_socket_for(addr);
    if (fd < 0)
        bench_die("socket: %s", strerror(-fd));
    sock_timeouts(fd);
    int one = 1;
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + i / PER_SRC_IP);
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&src, sizeof src) != 0 ||
        connect(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0)
        bench_die("connect (client %u): %s", i, strerror(errno));
    return fd;
}

void bench_send_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            bench_die("send: %s", n < 0 ? strerror(errno) : "nothing sent");
        p += n;
        len -= (size_t)n;
    }
}

static void client_flush(struct bench_client *cl)
{
    uint8_t buf[16384];
    size_t n;
    while ((n = tls_out_take(cl->t, buf, sizeof buf)) > 0)
        bench_send_all(cl->fd, buf, n);
}

/* Feeds what the server sent; fails on EOF or after SOCK_TIMEOUT. */
static void client_fill(struct bench_client *cl)
{
    uint8_t buf[16384];
    ssize_t n = recv(cl->fd, buf, sizeof buf, 0);
    if (n <= 0)
        bench_die("recv: %s", n < 0 ? strerror(errno) : "server closed");
    if (tls_feed(cl->t, buf, (size_t)n) < 0)
        bench_die("tls_feed: out of memory");
}

/* Plaintext from the server: what recv or tls_read gives. */
static size_t client_read(struct bench_client *cl, char *buf, size_t cap)
{
    if (cl->t == NULL) {
        ssize_t n = recv(cl->fd, buf, cap, 0);
        if (n <= 0)
            bench_die("recv: %s", n < 0 ? strerror(errno) : "server closed");
        return (size_t)n;
    }
    ssize_t n;
    while ((n = tls_read(cl->t, buf, cap)) == 0)
        client_fill(cl);
    if (n < 0)
        bench_die("tls_read: %s", tls_errstr(cl->t));
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
static void client_dial(struct bench_client *cl, const struct net_addr *addr, tls_ctx_t *cli,
                        const char *request, unsigned i)
{
    cl->fd = bench_dial(addr, i);
    cl->t = NULL;
    if (cli == NULL) {
        bench_send_all(cl->fd, request, strlen(request));
        return;
    }
    if (tls_new(&cl->t, cli, NULL, NULL) < 0)
        bench_die("tls_new: out of memory");
    if (tls_handshake(cl->t) < 0)
        bench_die("handshake: %s", tls_errstr(cl->t));
    client_flush(cl);
}

static void client_finish(struct bench_client *cl, const char *request)
{
    if (cl->t == NULL)
        return;
    int rc;
    while ((rc = tls_handshake(cl->t)) == 0) {
        client_flush(cl);
        client_fill(cl);
    }
    if (rc < 0 || tls_write(cl->t, request, strlen(request)) < 0)
        bench_die("handshake: %s", tls_errstr(cl->t));
    client_flush(cl);
}

/* Reads the answer, then keeps only the socket. */
static void client_answer(struct bench_client *cl)
{
    char buf[ANSWER_MAX];
    size_t len = 0;
    while (!answer_whole(buf, len)) {
        if (len == sizeof buf)
            bench_die("answer longer than %zu bytes", sizeof buf);
        len += client_read(cl, buf + len, sizeof buf - len);
    }
    tls_free(cl->t);
    cl->t = NULL;
}

struct bench_client *bench_clients_open(const struct net_addr *addr, tls_ctx_t *cli,
                                        const char *request, unsigned n, double limit_s)
{
    struct bench_client *cl = calloc(n, sizeof *cl);
    if (cl == NULL)
        bench_die("out of memory");
    double end = bench_now_s() + limit_s;
    for (unsigned b = 0; b < n; b += BATCH) {
        unsigned e = b + BATCH < n ? b + BATCH : n;
        for (unsigned i = b; i < e; i++)
            client_dial(&cl[i], addr, cli, request, i);
        for (unsigned i = b; i < e; i++)
            client_finish(&cl[i], request);
        for (unsigned i = b; i < e; i++)
            client_answer(&cl[i]);
        if (bench_now_s() > end)
            bench_die("%u connections (tls=%d) not open after %.0f s", n, cli != NULL, limit_s);
    }
    return cl;
}

unsigned bench_clients_alive(const struct bench_client *cl, unsigned n)
{
    unsigned alive = 0;
    for (unsigned i = 0; i < n; i++) {
        struct pollfd p = {.fd = cl[i].fd, .events = POLLIN | POLLRDHUP};
        if (poll(&p, 1, 0) == 0)
            alive++; /* nothing to read, no hang-up: still open and idle */
    }
    return alive;
}

void bench_clients_close(struct bench_client *cl, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        close(cl[i].fd);
    free(cl);
}

/* ---- nginx ---- */

static void nginx_conf(const char *path, unsigned port, const struct bench_nginx_opts *o)
{
    const char *d = bench_dir;
    /* nginx closes idle keep-alive connections once fewer than 1/16 of its
     * slots are free (ngx_drain_connections): room for conns and a margin. */
    unsigned slots = o->conns + o->conns / 8 + 100;
    FILE *f = fopen(path, "w");
    if (f == NULL)
        bench_die("open %s: %s", path, strerror(errno));
    fprintf(f,
            "daemon off;\nmaster_process on;\nworker_processes 1;\n"
            "worker_rlimit_nofile %u;\npid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
            "events { worker_connections %u; }\n"
            "http {\n  access_log off;\n  keepalive_timeout %us;\n  keepalive_requests 1000000;\n"
            "  client_body_temp_path %s/body;\n  proxy_temp_path %s/proxy;\n"
            "  fastcgi_temp_path %s/fastcgi;\n  uwsgi_temp_path %s/uwsgi;\n"
            "  scgi_temp_path %s/scgi;\n"
            "  server {\n    listen 127.0.0.1:%u%s;\n",
            slots, d, d, slots, o->idle_s, d, d, d, d, d, port, o->pki ? " ssl" : "");
    if (o->pki)
        fprintf(f,
                "    ssl_protocols TLSv1.3;\n    ssl_certificate %s/%s.crt;\n"
                "    ssl_certificate_key %s/%s.key;\n",
                o->pki, o->cert, o->pki, o->cert);
    fprintf(f, "%s  }\n}\n", o->locations);
    if (fclose(f) != 0)
        bench_die("write %s: %s", path, strerror(errno));
}

/* Copies nginx's error log to stderr: the folder goes when the bench fails. */
static void nginx_log_show(void)
{
    char path[128], line[512];
    snprintf(path, sizeof path, "%s/error.log", bench_dir);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        fputs(line, stderr);
    if (f)
        fclose(f);
}

/* nginx is up once its worker exists and its port takes a connection. */
static void nginx_wait(struct bench_server *s)
{
    double end = bench_now_s() + 10;
    while ((s->worker = bench_child_of(s->pid)) == 0 && bench_now_s() < end)
        usleep(10 * 1000);
    int fd = -1;
    while (s->worker != 0 && fd < 0 && bench_now_s() < end) {
        fd = net_socket_for(&s->addr);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&s->addr.ss, s->addr.len) != 0) {
            close(fd);
            fd = -1;
            usleep(10 * 1000);
        }
    }
    if (fd < 0) {
        nginx_log_show();
        bench_die("nginx did not start (its error log is above)");
    }
    close(fd);
}

void bench_nginx_start(struct bench_server *s, const struct bench_nginx_opts *o)
{
    char conf[128], err[128], prefix[80], addr[64];
    unsigned port = bench_free_port();
    snprintf(conf, sizeof conf, "%s/nginx.conf", bench_dir);
    snprintf(err, sizeof err, "%s/error.log", bench_dir);
    snprintf(prefix, sizeof prefix, "%s/", bench_dir);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    if (net_addr_parse(addr, &s->addr) < 0)
        bench_die("net_addr_parse %s", addr);
    nginx_conf(conf, port, o);
    char *argv[] = {BENCH_NGINX, "-p", prefix, "-c", conf, "-e", err, NULL};
    s->pid = bench_spawn(argv, NULL);
    nginx_wait(s);
}
