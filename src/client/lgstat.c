/*
 * lgstat — loadgen statistics (see include/convoy/lgstat.h). Samples are a
 * flat array grown by doubling up to LGSTAT_SAMPLES_MAX, then a reservoir
 * (Vitter's algorithm R with a xorshift generator: no libc state shared
 * with anyone). Percentiles are nearest-rank over the sorted array.
 */
#include "convoy/lgstat.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct lgstat_server {
    char name[LGSTAT_NAME_MAX];
    uint64_t count;
};

struct lgstat {
    uint32_t *lat; /* microseconds, capped at UINT32_MAX (71 minutes) */
    size_t nlat, cap;
    uint64_t seen;   /* successful downloads offered to the reservoir */
    uint64_t max_us; /* exact, whatever the reservoir dropped */
    bool sorted;
    uint64_t rng;
    uint64_t bytes, err[LGSTAT_E_COUNT];
    struct lgstat_server srv[LGSTAT_SERVERS_MAX + 1]; /* the last: "other" */
    size_t nsrv;
    uint64_t other;
};

static const char *const lgstat_names[LGSTAT_E_COUNT] = {
    [LGSTAT_E_AUTH] = "auth",          [LGSTAT_E_NOTFOUND] = "not_found",
    [LGSTAT_E_NOSERVER] = "no_server", [LGSTAT_E_INTEGRITY] = "integrity",
    [LGSTAT_E_NETWORK] = "network",    [LGSTAT_E_TIMEOUT] = "timeout",
    [LGSTAT_E_OTHER] = "other",
};

const char *lgstat_err_str(enum lgstat_err e)
{
    return (unsigned)e < LGSTAT_E_COUNT ? lgstat_names[e] : "unknown";
}

int lgstat_new(lgstat_t **out)
{
    lgstat_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->rng = 0x9e3779b97f4a7c15ull;
    *out = s;
    return 0;
}

void lgstat_free(lgstat_t *s)
{
    if (s == NULL)
        return;
    free(s->lat);
    free(s);
}

static uint64_t lgstat_rand(lgstat_t *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return s->rng;
}

static void lgstat_sample(lgstat_t *s, uint32_t us)
{
    s->seen++;
    s->sorted = false;
    if (s->nlat == s->cap && s->cap < LGSTAT_SAMPLES_MAX) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        uint32_t *p = realloc(s->lat, cap * sizeof *p);
        if (p != NULL) {
            s->lat = p;
            s->cap = cap;
        }
    }
    if (s->nlat < s->cap) {
        s->lat[s->nlat++] = us;
        return;
    }
    uint64_t j = lgstat_rand(s) % s->seen; /* keep it with probability cap/seen */
    if (j < s->nlat)
        s->lat[j] = us;
}

static void lgstat_count_server(lgstat_t *s, const char *server)
{
    if (server == NULL || *server == '\0')
        server = "unknown";
    for (size_t i = 0; i < s->nsrv; i++) {
        if (strcmp(s->srv[i].name, server) == 0) {
            s->srv[i].count++;
            return;
        }
    }
    if (s->nsrv == LGSTAT_SERVERS_MAX || strlen(server) >= LGSTAT_NAME_MAX) {
        s->other++;
        return;
    }
    char *name = s->srv[s->nsrv].name;
    for (size_t i = 0; server[i] != '\0'; i++) /* a name from the wire reaches a terminal */
        name[i] = (unsigned char)server[i] < 0x20 || server[i] == 0x7f ? '?' : server[i];
    name[strlen(server)] = '\0';
    s->srv[s->nsrv++].count = 1;
}

void lgstat_ok(lgstat_t *s, uint64_t latency_us, uint64_t bytes, const char *server)
{
    lgstat_sample(s, latency_us > UINT32_MAX ? UINT32_MAX : (uint32_t)latency_us);
    if (latency_us > s->max_us)
        s->max_us = latency_us;
    s->bytes += bytes;
    lgstat_count_server(s, server);
}

void lgstat_fail(lgstat_t *s, enum lgstat_err e)
{
    if ((unsigned)e < LGSTAT_E_COUNT)
        s->err[e]++;
}

static int lgstat_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest sample with at least q of them at or below. */
static double lgstat_rank_ms(const lgstat_t *s, double q)
{
    if (s->nlat == 0)
        return 0;
    size_t k = (size_t)ceil(q * (double)s->nlat);
    return s->lat[(k ? k : 1) - 1] / 1000.0;
}

void lgstat_summary(lgstat_t *s, double seconds, struct lgstat_summary *out)
{
    if (!s->sorted && s->nlat > 0) {
        qsort(s->lat, s->nlat, sizeof *s->lat, lgstat_cmp);
        s->sorted = true;
    }
    memset(out, 0, sizeof *out);
    out->ok = s->seen;
    for (int e = 0; e < LGSTAT_E_COUNT; e++) {
        out->err[e] = s->err[e];
        out->errors += s->err[e];
    }
    out->requests = out->ok + out->errors;
    out->bytes = s->bytes;
    out->seconds = seconds;
    out->rps = seconds > 0 ? (double)out->ok / seconds : 0;
    out->bytes_per_s = seconds > 0 ? (double)out->bytes / seconds : 0;
    out->p50_ms = lgstat_rank_ms(s, 0.50);
    out->p99_ms = lgstat_rank_ms(s, 0.99);
    out->max_ms = s->max_us / 1000.0;
}

size_t lgstat_servers(const lgstat_t *s)
{
    return s->nsrv + (s->other != 0);
}

const char *lgstat_server(const lgstat_t *s, size_t i, uint64_t *count)
{
    if (i < s->nsrv) {
        *count = s->srv[i].count;
        return s->srv[i].name;
    }
    *count = s->other;
    return "other";
}

int lgstat_print(lgstat_t *s, double seconds, FILE *out)
{
    struct lgstat_summary m;
    lgstat_summary(s, seconds, &m);
    fprintf(out, "%-14s %" PRIu64 " (%" PRIu64 " ok, %" PRIu64 " failed) in %.2f s\n", "requests",
            m.requests, m.ok, m.errors, m.seconds);
    fprintf(out, "%-14s %.1f\n", "requests/s", m.rps);
    fprintf(out, "%-14s p50 %.2f  p99 %.2f  max %.2f\n", "latency ms", m.p50_ms, m.p99_ms,
            m.max_ms);
    fprintf(out, "%-14s %.1f MiB/s (%" PRIu64 " bytes)\n", "throughput",
            m.bytes_per_s / (1024.0 * 1024.0), m.bytes);
    for (int e = 0; e < LGSTAT_E_COUNT; e++)
        if (m.err[e] != 0)
            fprintf(out, "%-14s %" PRIu64 "\n", lgstat_names[e], m.err[e]);
    for (size_t i = 0; i < lgstat_servers(s); i++) {
        uint64_t n;
        const char *name = lgstat_server(s, i, &n);
        fprintf(out, "server %-7s %" PRIu64 "\n", name, n);
    }
    return 0;
}

/* The JSON object of the report (docs/cli.md). */
static cJSON *lgstat_json(lgstat_t *s, double seconds)
{
    struct lgstat_summary m;
    lgstat_summary(s, seconds, &m);
    cJSON *o = cJSON_CreateObject(), *lat = cJSON_CreateObject(), *err = cJSON_CreateObject(),
          *srv = cJSON_CreateObject();
    if (o == NULL || lat == NULL || err == NULL || srv == NULL) {
        cJSON_Delete(o), cJSON_Delete(lat), cJSON_Delete(err), cJSON_Delete(srv);
        return NULL;
    }
    cJSON_AddNumberToObject(o, "requests", (double)m.requests);
    cJSON_AddNumberToObject(o, "ok", (double)m.ok);
    cJSON_AddNumberToObject(o, "errors", (double)m.errors);
    cJSON_AddNumberToObject(o, "seconds", m.seconds);
    cJSON_AddNumberToObject(o, "requests_per_s", m.rps);
    cJSON_AddNumberToObject(o, "bytes", (double)m.bytes);
    cJSON_AddNumberToObject(o, "bytes_per_s", m.bytes_per_s);
    cJSON_AddNumberToObject(lat, "p50", m.p50_ms);
    cJSON_AddNumberToObject(lat, "p99", m.p99_ms);
    cJSON_AddNumberToObject(lat, "max", m.max_ms);
    cJSON_AddItemToObject(o, "latency_ms", lat);
    for (int e = 0; e < LGSTAT_E_COUNT; e++)
        cJSON_AddNumberToObject(err, lgstat_names[e], (double)m.err[e]);
    cJSON_AddItemToObject(o, "errors_by_kind", err);
    for (size_t i = 0; i < lgstat_servers(s); i++) {
        uint64_t n;
        const char *name = lgstat_server(s, i, &n);
        cJSON_AddNumberToObject(srv, name, (double)n);
    }
    cJSON_AddItemToObject(o, "servers", srv);
    return o;
}

int lgstat_print_json(lgstat_t *s, double seconds, FILE *out)
{
    cJSON *o = lgstat_json(s, seconds);
    char *text = o != NULL ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (text == NULL)
        return -ENOMEM;
    fprintf(out, "%s\n", text);
    free(text);
    return 0;
}
