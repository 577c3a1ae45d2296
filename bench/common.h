/*
 * bench/common — what the benches that run servers share: the temporary
 * folder and the processes they started (stopped by PID on failure),
 * commands and daemons with their logs, medians, a process's RSS and CPU
 * time, the AEAD cipher's speed, blocking keep-alive clients (plain or
 * through libconvoy's TLS engine), and nginx itself with a generated
 * configuration.
 *
 * The design is simple: one bench per process, so the state (its name for
 * messages, its folder, its children) is module-static; bench_die cleans
 * it up from anywhere, and a forked sample marks itself with bench_in_kid
 * so that only the parent cleans up.
 */
#ifndef CONVOY_BENCH_COMMON_H
#define CONVOY_BENCH_COMMON_H

#include "convoy/net.h"
#include "convoy/tls.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#define BENCH_NGINX "/usr/sbin/nginx" /* installed by bench.mk when missing */

/* Names the bench (the prefix of its messages) and makes its temporary
 * folder, whose path it returns; bench_end removes it. */
const char *bench_start(const char *name);
void bench_end(void);

/* Prints "NAME: " and the message on stderr, stops every process the bench
 * started and not yet reaped (SIGTERM, then SIGKILL after 2 s: nginx's
 * master takes its worker with it), runs the hook of bench_at_die, removes
 * the folder, exits 1. In a sample's child (bench_in_kid) it only exits. */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* fn runs when bench_die cleans up, after the processes are stopped (what
 * they leave behind outside the folder, such as a balancer's state). */
void bench_at_die(void (*fn)(void));

/* This process is a sample's child: bench_die leaves the cleanup to the
 * parent. */
void bench_in_kid(void);

double bench_now_s(void);

/* The median of v[0..n), which it sorts. */
double bench_median(double *v, unsigned n);

/* Processes the bench started: remembered so that bench_die can stop
 * them (at most 8 at once). */
void bench_kid_add(pid_t pid);
void bench_kid_forget(pid_t pid);

/* Sends sig to a process of ours and reaps it. */
void bench_kid_stop(pid_t pid, int sig);

/* Starts argv[0] (a path), remembered; its stdout on a pipe whose read end
 * goes to *out when out is not NULL. Dies on failure. */
pid_t bench_spawn(char *const argv[], int *out);

/* Reads from fd until EOF, until a newline when line, until cap-1 bytes or
 * for at most timeout_s; NUL-terminates. Returns the byte count. */
size_t bench_read(int fd, char *buf, size_t cap, bool line, double timeout_s);

/* VmRSS of pid in KiB, and its user + system CPU seconds so far. */
long bench_rss_kib(pid_t pid);
double bench_cpu_s(pid_t pid);

/* A process whose parent is ppid, or 0 (nginx's worker is its master's). */
pid_t bench_child_of(pid_t ppid);

/* A port of 127.0.0.1 nobody listens on now. */
unsigned bench_free_port(void);

/* RLIMIT_NOFILE raised to want when the process may, else to its hard
 * limit; returns the soft limit now in force. */
rlim_t bench_raise_nofile(rlim_t want);

/* ---- commands and daemons ---- */

/* Runs argv (argv[0] a path) with its stdout into out (NULL: discarded,
 * NUL-terminated otherwise), killed after limit_s. Returns its exit
 * status, 128 + a signal, or 124 when it was killed for the time. */
int bench_run(char *const argv[], char *out, size_t cap, double limit_s);

/* bench_run that dies unless the command exits 0 within limit_s. */
void bench_run_ok(char *const argv[], char *out, size_t cap, double limit_s);

/* A cluster's PKI in dir through convoy's own commands (`convoy pki init`,
 * then `issue NAME --role ROLE --ip 127.0.0.1` for each of the n
 * {name, role} pairs) and a users file holding user with password pass
 * and role. Dies on any failure. */
void bench_pki_users(const char *convoy, const char *dir, const char *const (*certs)[2],
                     size_t n, const char *users, const char *user, const char *pass,
                     const char *role);

/* The last 4 KiB of a log file on stderr, for a failure's message. */
void bench_log_show(const char *path);

/* Starts a daemon (argv[0] a path) with its stdout and stderr appended to
 * log_path, remembered for bench_die. Dies on failure. */
pid_t bench_daemon_start(char *const argv[], const char *log_path);

/* SIGTERM, SIGKILL after 5 s, reaped and forgotten. */
void bench_daemon_stop(pid_t pid);

/* Waits until a connection to a succeeds; dies after limit_s. */
void bench_port_wait(const struct net_addr *a, const char *who, double limit_s);

/* MB/s (10^6 bytes) of one core sealing bytes in full 16 KiB records as
 * TLS 1.3 does (a fresh nonce, the 5-byte header as associated data, the
 * tag) with the AEAD cipher (EVP_aes_128_gcm() …). Dies on failure. */
double bench_aead_mbps(const EVP_CIPHER *cipher, unsigned long long bytes);

/* Sends all of data on a blocking socket, or dies. */
void bench_send_all(int fd, const void *data, size_t len);

/* ---- keep-alive clients ---- */

struct bench_client {
    int fd;
    tls_t *t; /* NULL for plain, and once answered */
};

/* A blocking socket connected to addr from 127.0.0.(2 + i / 20000) (one
 * source address has fewer ephemeral ports than some rows need), with
 * 10 s timeouts and a reset on close (no TIME_WAIT). Dies on failure. */
int bench_dial(const struct net_addr *addr, unsigned i);

/*
 * n blocking clients of addr, each used once and left open: bench_dial, TLS
 * handshake with cli (NULL: plain), send request, read its answer (headers
 * and Content-Length bytes, at most 2 KiB), free the TLS session and keep
 * only the socket. Driven 64 at a time, so that the server works while the
 * clients do. Dies on any failure or after limit_s.
 */
struct bench_client *bench_clients_open(const struct net_addr *addr, tls_ctx_t *cli,
                                        const char *request, unsigned n, double limit_s);

/* How many of the n clients the server has not closed. */
unsigned bench_clients_alive(const struct bench_client *cl, unsigned n);

void bench_clients_close(struct bench_client *cl, unsigned n);

/* ---- nginx ---- */

struct bench_server {
    pid_t pid;    /* the process to stop */
    pid_t worker; /* the process to measure */
    struct net_addr addr;
};

/* What goes into nginx's configuration besides the fixed part (daemon off,
 * one worker, no access log, temporary paths in the bench's folder). */
struct bench_nginx_opts {
    unsigned conns;        /* connections it must hold at once (slots: 9/8 of it + 100) */
    unsigned idle_s;       /* keepalive_timeout */
    const char *pki;       /* TLS 1.3 with pki/cert.crt and .key; NULL: plain */
    const char *cert;      /* the certificate's name in pki */
    const char *locations; /* the server block's lines after listen */
};

/* Starts nginx on a free port of 127.0.0.1 and waits until its worker
 * takes connections (its error log on stderr and death otherwise). Stop
 * it with bench_kid_stop(s->pid, SIGTERM). */
void bench_nginx_start(struct bench_server *s, const struct bench_nginx_opts *o);

#endif
