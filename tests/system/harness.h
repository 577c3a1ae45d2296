/*
 * harness — real convoy processes on loopback for the system suites.
 *
 * A cluster is a temporary folder (PKI, data, logs), a state name unique to
 * this run, free loopback ports, and the pids this harness started: it only
 * ever signals those. What tests assert comes from `convoy status --json`,
 * the way a user would look.
 */
#ifndef CONVOY_TESTS_HARNESS_H
#define CONVOY_TESTS_HARNESS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <stddef.h>

#define H_MAX_PROCS 16

struct h_proc {
    char name[32]; /* also names its log, which a restart appends to */
    pid_t pid;     /* 0 once reaped */
};

struct cluster {
    char dir[256];
    char pki[300];
    char foreign_pki[300]; /* "rogue": signed by another CA, trusting ours */
    char state[64];
    char control[32];
    char http[32];   /* the balancer's client address, once h_front_start ran */
    char users[300]; /* its users file: alice (read), password "secret" */
    struct h_proc procs[H_MAX_PROCS];
};

/* Makes the folder, both CAs and certificates for balancer and each name in
 * servers (NULL-terminated), plus "rogue" under the foreign CA. 0 or -1. */
int h_cluster_init(struct cluster *c, const char *const *servers);

/* Stops every process this cluster started, removes its folder and state
 * (with any copy of it moved aside).
 * Returns how many of its logs hold a sanitizer report (printed first).
 * With CONVOY_KEEP_TEST_DIRS set in the environment the folder stays, for
 * reading the daemons' logs after a failure. */
int h_cluster_free(struct cluster *c);

/* Starts the balancer (heartbeat 100 ms, dead after 500 ms). pid or -1. */
pid_t h_balancer(struct cluster *c);

/* The same, holding certificate `name` of pki (so that a balancer can be
 * an impostor), with the NULL-terminated options extra added. */
pid_t h_balancer_as(struct cluster *c, const char *pki, const char *name, const char *const *extra);

/* The same with RLIMIT_NOFILE set to nofile (soft and hard), through
 * prlimit(1). pid or -1. */
pid_t h_balancer_nofile(struct cluster *c, unsigned nofile);

/* Starts file server `name` using certificates from pki (c->pki or
 * c->foreign_pki), announcing a fresh loopback HTTP port. pid or -1. */
pid_t h_fileserver(struct cluster *c, const char *name, const char *pki);

/* The same, run inside network namespace netns (NULL: this one) and
 * announcing http (NULL: a free loopback port). */
pid_t h_fileserver_in(struct cluster *c, const char *name, const char *pki, const char *netns,
                      const char *http);

/* File server `name` of c->pki on http (NULL: a free loopback port), with
 * the NULL-terminated options extra added. pid or -1. */
pid_t h_fileserver_with(struct cluster *c, const char *name, const char *http,
                        const char *const *extra);

/* The file-transfer scene in three steps, so that files can be put in
 * place before the servers start: h_front_init makes the cluster, a free
 * port for the balancer's HTTP front (c->http) and the users file c->users
 * holding alice (read) with password "secret"; h_front_balancer starts the
 * balancer with that front and users, extra (NULL or NULL-terminated)
 * added, again after a kill; h_front_servers starts servers
 * (NULL-terminated) and waits until each is up. 0 (a pid) or -1. */
int h_front_init(struct cluster *c, const char *const *servers);
pid_t h_front_balancer(struct cluster *c, const char *const *extra);
/* pids (may be NULL) gets each server's pid. */
int h_front_servers(struct cluster *c, const char *const *servers, pid_t *pids);

/* The compute scene: h_chain_init makes the cluster with certificates for
 * "frontend" and each name in servers (role compute), a users file c->users
 * holding alice (submit) with password "secret", a free port for the API
 * (c->http); h_frontend starts the front-end (heartbeat 100 ms, dead after
 * 500 ms, spool under the cluster's folder) with extra (NULL or
 * NULL-terminated) added, again after a kill; h_compute starts server name
 * (one lane) and waits until the front-end has it in its chain. */
int h_chain_init(struct cluster *c, const char *const *servers);
pid_t h_frontend(struct cluster *c, const char *const *extra);
pid_t h_compute(struct cluster *c, const char *name, const char *const *extra);
/* A call to the front-end's API as alice with curl: method, path, and a
 * body file sent as ctype (both NULL: none). The answer parsed (NULL when
 * it is not JSON), its status in *status. */
cJSON *h_api(struct cluster *c, const char *method, const char *path, const char *ctype,
             const char *body_file, int *status);
/* Waits until job id's state is want ("done"): its document, or NULL
 * after timeout_ms (the state last seen on stderr). */
cJSON *h_job_wait(struct cluster *c, uint64_t id, const char *want, uint32_t timeout_ms);
/* The file rel under the data folder, size bytes of a pattern that differs
 * at every 8-byte offset (so that bytes written at the wrong place cannot
 * pass a digest by chance), and its SHA-256 into sha. 0 or -1. */
int h_put_pattern(struct cluster *c, const char *rel, size_t size, unsigned char sha[32]);

/* The SHA-256 of file path. 0 or -1. */
int h_sha256_file(const char *path, unsigned char sha[32]);

/* Runs `convoy ARGS...` (NULL-terminated) in the background as process
 * `name` of this cluster (its stdout and stderr in the log of that name),
 * with CONVOY_PASSWORD=secret. pid or -1. */
pid_t h_convoy(struct cluster *c, const char *name, const char *const *args);

/* Waits for a process this cluster started to exit: its exit status (as
 * h_signal's), or -1 after timeout_ms (the process is left running). */
int h_wait_exit(struct cluster *c, pid_t pid, uint32_t timeout_ms);

/* `convoy status --transfers --json`, parsed; NULL if it failed. */
cJSON *h_transfers(struct cluster *c);

/* The newest record of path ("/x" or "x") in a h_transfers document, or
 * NULL. */
const cJSON *h_transfer(const cJSON *doc, const char *path);

/* A number field of a JSON object, -1 when absent; a string field, "" when
 * absent. */
double h_num(const cJSON *o, const char *key);
const char *h_str(const cJSON *o, const char *key);

/* Makes (or empties) the file rel under the cluster's data folder, size
 * bytes of zeros. 0 or -1. */
int h_put_file(struct cluster *c, const char *rel, size_t size);

/* Signals a process this cluster started and, if wait, reaps it and
 * returns its exit status, 128 + the signal that ended it, or -1 if it
 * did not exit within 5 s. */
int h_signal(struct cluster *c, pid_t pid, int sig, bool wait);

/* `convoy status --state S --json`, parsed; NULL if it failed. */
cJSON *h_status(struct cluster *c);

/* The state of server name in a status document ("gone" if absent). */
const char *h_server_state(const cJSON *status, const char *name);

/* The state of server name now, from a fresh status ("gone" if absent,
 * "error" if status failed). Valid until the next call. */
const char *h_state(struct cluster *c, const char *name);

/* Waits until server name is in state want. Returns ms waited, -1 on timeout
 * (and says so on stderr, with the state last seen). */
long h_wait_state(struct cluster *c, const char *name, const char *want, uint32_t timeout_ms);

/* The same, silent: for a test that expects the timeout. */
long h_wait_state_quiet(struct cluster *c, const char *name, const char *want, uint32_t timeout_ms);

/* Runs `convoy status --state S` (with --json if json), killed after
 * timeout_ms; out gets what it printed on stdout and stderr. Returns its
 * exit status, 124 when it had to be killed, -1 if it could not run. */
int h_status_run(struct cluster *c, bool json, uint32_t timeout_ms, char *out, size_t len);

/* Waits until the process's log contains needle: true, or false after
 * timeout_ms (so a daemon that hangs fails the test, not the run). */
bool h_wait_log(struct cluster *c, const char *name, const char *needle, uint32_t timeout_ms);

/* Path of a process's log (stderr). */
const char *h_log_path(struct cluster *c, const char *name, char *buf, size_t len);

/* The last line of process name's log that is a JSON object, parsed
 * (what `--json` commands print), or NULL. */
cJSON *h_log_json(struct cluster *c, const char *name);
/* Whether the process's log contains needle. */
bool h_log_has(struct cluster *c, const char *name, const char *needle);

/* A blocking TLS client, for speaking to daemons the way a broken or
 * hostile peer would. */
struct h_tls {
    int fd;
    struct tls_ctx *ctx;
    struct tls *t;
};

/* Connects to addr and completes the handshake as `name` of pki. 0 or -1. */
int h_tls_dial(struct h_tls *h, const char *pki, const char *name, const char *addr);

/* Sends bytes through TLS. 0 or -1. */
int h_tls_send(struct h_tls *h, const void *data, size_t len);

/* Reads plaintext until the peer closes or timeout_ms passes. Returns the
 * byte count, -1 on error. *closed tells whether the peer closed. */
ssize_t h_tls_read_all(struct h_tls *h, void *buf, size_t cap, uint32_t timeout_ms, bool *closed);

void h_tls_close(struct h_tls *h);

/* Sends len bytes to the balancer as `name` and reads the answer until the
 * balancer closes. 0 when that answer was one ERROR frame, with its code
 * copied to code; -1 otherwise. */
int h_error_reply(struct cluster *c, const char *name, const void *data, size_t len, char *code,
                  size_t codelen);

#endif
