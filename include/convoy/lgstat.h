/*
 * lgstat — what `convoy loadgen` measured: latencies, bytes, errors by kind
 * and downloads per server, and their report as a table or as JSON.
 *
 * Latencies are kept as samples (microseconds), every one up to
 * LGSTAT_SAMPLES_MAX and a uniform reservoir of that many beyond it, so
 * p50 and p99 are exact (nearest rank over sorted samples) for any run of
 * up to a million requests and a fair estimate past that; max is always
 * exact. One lgstat belongs to one thread.
 */
#ifndef CONVOY_LGSTAT_H
#define CONVOY_LGSTAT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LGSTAT_SAMPLES_MAX (1u << 20)
#define LGSTAT_SERVERS_MAX 64
#define LGSTAT_NAME_MAX    64

/* Why a download failed, one counter each (the JSON keys are
 * lgstat_err_str's), after convoy get's exit codes. */
enum lgstat_err {
    LGSTAT_E_AUTH,      /* "auth": 401/403 */
    LGSTAT_E_NOTFOUND,  /* "not_found": 404 */
    LGSTAT_E_NOSERVER,  /* "no_server": 503 */
    LGSTAT_E_INTEGRITY, /* "integrity": digest or length mismatch, ETag changed */
    LGSTAT_E_NETWORK,   /* "network": connect, TLS, a broken or malformed answer, every leg */
    LGSTAT_E_TIMEOUT,   /* "timeout": still running when the run's time was up */
    LGSTAT_E_OTHER,     /* "other": anything else */
    LGSTAT_E_COUNT
};

const char *lgstat_err_str(enum lgstat_err e);

typedef struct lgstat lgstat_t;

int lgstat_new(lgstat_t **out);
void lgstat_free(lgstat_t *s);

/* One completed download: its latency, body bytes and the server the
 * redirect named (NULL or "" when unknown). Servers past
 * LGSTAT_SERVERS_MAX count under "other". */
void lgstat_ok(lgstat_t *s, uint64_t latency_us, uint64_t bytes, const char *server);

/* One failed download. */
void lgstat_fail(lgstat_t *s, enum lgstat_err e);

struct lgstat_summary {
    uint64_t requests, ok, errors; /* requests = ok + errors */
    uint64_t bytes;
    double seconds;                /* the run's wall time, as given */
    double rps, bytes_per_s;       /* completed downloads (ok) per second */
    double p50_ms, p99_ms, max_ms; /* over successful downloads; 0 when none */
    uint64_t err[LGSTAT_E_COUNT];
};

/* Sorts the samples (once) and fills out for a run of seconds. */
void lgstat_summary(lgstat_t *s, double seconds, struct lgstat_summary *out);

/* Servers seen: name and count of the i-th, for i < lgstat_servers(). */
size_t lgstat_servers(const lgstat_t *s);
const char *lgstat_server(const lgstat_t *s, size_t i, uint64_t *count);

/* The report: a table for people, or one JSON object (docs/cli.md has its
 * shape, which scripts and tests rely on). 0 or -ENOMEM. */
int lgstat_print(lgstat_t *s, double seconds, FILE *out);
int lgstat_print_json(lgstat_t *s, double seconds, FILE *out);

#endif
