/*
 * chain_msg — the compute chain's messages (see chain_msg.h).
 *
 * As in membership.c, each message has one schema table, its builder and
 * its parser; integers are read into C fields of the kind the schema
 * checked, so the casts are exact, and sizes are bounded before anyone
 * allocates for them: count·n·n·8 of a WORK or RESULT never passes
 * CHAIN_BODY_MAX.
 */
#include "convoy/chain_msg.h"

#include "convoy/gj.h"
#include "convoy/membership.h"
#include "convoy/shmbuf.h"
#include "convoy/shmlane.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

static const struct frame_field next_fields[] = {
    {"epoch", FF_UINT, true},        {"prev", FF_STRING, true}, {"next", FF_STRING, true},
    {"next_addr", FF_STRING, true},  {"behind", FF_U32, true},  {"weight", FF_U32, false},
    {"next_host", FF_STRING, false},
};

static const struct frame_field work_fields[] = {
    {"job", FF_UINT, true},    {"first", FF_UINT, true},  {"count", FF_U32, true},
    {"n", FF_U32, true},       {"op", FF_STRING, true},   {"residual", FF_BOOL, true},
    {"output", FF_BOOL, true}, {"gen", FF_OBJECT, false}, {"shm", FF_OBJECT, false},
};

static const struct frame_field shm_fields[] = {
    {"lane", FF_STRING, true},
    {"size", FF_UINT, true},
    {"pos", FF_UINT, true},
};

static const struct frame_field release_fields[] = {
    {"lane", FF_STRING, true},
    {"upto", FF_UINT, true},
};

static const struct frame_field gen_fields[] = {
    {"seed", FF_UINT, true},
    {"kind", FF_STRING, true},
};

static const struct frame_field span_fields[] = {
    {"job", FF_UINT, true},
    {"first", FF_UINT, true},
    {"count", FF_U32, true},
};

static const struct frame_field result_fields[] = {
    {"job", FF_UINT, true},     {"first", FF_UINT, true}, {"count", FF_U32, true},
    {"n", FF_U32, true},        {"ms", FF_U32, true},     {"status", FF_ARRAY, true},
    {"resid", FF_ARRAY, false}, {"sum", FF_ARRAY, false}, {"shm", FF_OBJECT, false},
};

static const char *const kinds[] = {"uniform", "spd", "hilbert"};

static const cJSON *field(const cJSON *meta, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(meta, key);
}

static double num(const cJSON *meta, const char *key)
{
    return field(meta, key)->valuedouble;
}

static const char *str(const cJSON *meta, const char *key)
{
    return field(meta, key)->valuestring;
}

static int refuse(char *why, size_t whylen, const char *fmt, const char *what)
{
    snprintf(why, whylen, fmt, what);
    return FRAME_ESCHEMA;
}

uint64_t chain_items_len(uint32_t count, uint32_t n)
{
    return (uint64_t)count * n * n * sizeof(double);
}

uint64_t chain_work_body_len(const struct chain_work *m)
{
    return m->gen ? 0 : chain_items_len(m->count, m->n);
}

/* An optional "shm" member into s (lane NULL when absent). */
static int shm_parse(const cJSON *o, struct chain_shm *s, char *why, size_t whylen)
{
    *s = (struct chain_shm){0};
    if (o == NULL)
        return 0;
    int rc = frame_meta_check(o, shm_fields, NFIELDS(shm_fields), why, whylen);
    if (rc != 0)
        return rc;
    *s = (struct chain_shm){str(o, "lane"), (uint64_t)num(o, "size"), (uint64_t)num(o, "pos")};
    if (!shmbuf_name_valid(s->lane))
        return refuse(why, whylen, "%s", "shm.lane is not a lane name");
    if (s->size == 0 || s->size > SHMLANE_MAX || s->size % SHMLANE_ALIGN != 0)
        return refuse(why, whylen, "%s", "shm.size out of range");
    return 0;
}

/* count items of order n: both nonzero, within the limits, the body too. */
static int check_items(uint32_t count, uint32_t n, char *why, size_t whylen)
{
    if (n == 0 || n > CHAIN_N_MAX)
        return refuse(why, whylen, "%s", "n out of range (1 to 8192)");
    if (count == 0 || count > CHAIN_COUNT_MAX)
        return refuse(why, whylen, "%s", "count out of range (1 to 65536)");
    if (chain_items_len(count, n) > CHAIN_BODY_MAX)
        return refuse(why, whylen, "%s", "count·n·n·8 over 256 MiB");
    return 0;
}

/* ---- builders ---- */

static bool add_u64(cJSON *o, const char *k, uint64_t v)
{
    return cJSON_AddNumberToObject(o, k, (double)v) != NULL;
}

static cJSON *done(cJSON *o, bool ok)
{
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *chain_next_json(const struct chain_next *m)
{
    cJSON *o = cJSON_CreateObject();
    return done(o, o && add_u64(o, "epoch", m->epoch) &&
                       cJSON_AddStringToObject(o, "prev", m->prev) &&
                       cJSON_AddStringToObject(o, "next", m->next) &&
                       cJSON_AddStringToObject(o, "next_addr", m->next_addr) &&
                       add_u64(o, "behind", m->behind) &&
                       (m->weight == 0 || add_u64(o, "weight", m->weight)) &&
                       (m->next_host == NULL || m->next_host[0] == '\0' ||
                        cJSON_AddStringToObject(o, "next_host", m->next_host)));
}

/* The "shm" member, when s names a lane. */
static bool add_shm(cJSON *o, const struct chain_shm *s)
{
    if (s->lane == NULL)
        return true;
    cJSON *g = cJSON_AddObjectToObject(o, "shm");
    return g && cJSON_AddStringToObject(g, "lane", s->lane) && add_u64(g, "size", s->size) &&
           add_u64(g, "pos", s->pos);
}

cJSON *chain_work_json(const struct chain_work *m)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o && add_u64(o, "job", m->job) && add_u64(o, "first", m->first) &&
              add_u64(o, "count", m->count) && add_u64(o, "n", m->n) &&
              cJSON_AddStringToObject(o, "op", "invert") &&
              cJSON_AddBoolToObject(o, "residual", m->residual) &&
              cJSON_AddBoolToObject(o, "output", m->output);
    if (ok && m->gen) {
        cJSON *g = cJSON_AddObjectToObject(o, "gen");
        ok = g && add_u64(g, "seed", m->seed) && cJSON_AddStringToObject(g, "kind", m->kind);
    }
    return done(o, ok && add_shm(o, &m->shm));
}

cJSON *chain_span_json(const struct chain_span *m)
{
    cJSON *o = cJSON_CreateObject();
    return done(o, o && add_u64(o, "job", m->job) && add_u64(o, "first", m->first) &&
                       add_u64(o, "count", m->count));
}

cJSON *chain_release_json(const struct chain_release *m)
{
    cJSON *o = cJSON_CreateObject();
    return done(o, o && cJSON_AddStringToObject(o, "lane", m->lane) && add_u64(o, "upto", m->upto));
}

cJSON *chain_result_json(const struct chain_result *m)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o && add_u64(o, "job", m->job) && add_u64(o, "first", m->first) &&
              add_u64(o, "count", m->count) && add_u64(o, "n", m->n) && add_u64(o, "ms", m->ms);
    cJSON *st = ok ? cJSON_AddArrayToObject(o, "status") : NULL;
    cJSON *rs = ok && m->has_resid ? cJSON_AddArrayToObject(o, "resid") : NULL;
    cJSON *sm = ok && m->has_sum ? cJSON_AddArrayToObject(o, "sum") : NULL;
    ok = st && (!m->has_resid || rs) && (!m->has_sum || sm);
    for (uint32_t i = 0; ok && i < m->count; i++) {
        char hex[17];
        ok = cJSON_AddItemToArray(st, cJSON_CreateString(gj_status_str(m->status[i])));
        if (ok && rs) /* JSON has no NaN: a residual that is none is null */
            ok = cJSON_AddItemToArray(rs, isfinite(m->resid[i]) ? cJSON_CreateNumber(m->resid[i])
                                                                : cJSON_CreateNull());
        if (ok && sm) { /* 64 bits do not fit a JSON number: hex */
            snprintf(hex, sizeof hex, "%016llx", (unsigned long long)m->sum[i]);
            ok = cJSON_AddItemToArray(sm, cJSON_CreateString(hex));
        }
    }
    return done(o, ok && add_shm(o, &m->shm));
}

/* ---- parsers ---- */

int chain_next_parse(const cJSON *meta, struct chain_next *m, char *why, size_t whylen)
{
    int rc = frame_meta_check(meta, next_fields, NFIELDS(next_fields), why, whylen);
    if (rc != 0)
        return rc;
    *m = (struct chain_next){.epoch = (uint64_t)num(meta, "epoch"),
                             .prev = str(meta, "prev"),
                             .next = str(meta, "next"),
                             .next_addr = str(meta, "next_addr"),
                             .behind = (uint32_t)num(meta, "behind"),
                             .weight = field(meta, "weight") ? (uint32_t)num(meta, "weight") : 0,
                             .next_host = field(meta, "next_host") ? str(meta, "next_host") : ""};
    if (!mbr_host_valid(m->next_host))
        return refuse(why, whylen, "%s", "next_host is not a host id");
    if (!mbr_name_valid(m->prev))
        return refuse(why, whylen, "%s", "prev is not a server name");
    if (m->next[0] == '\0' ? m->next_addr[0] != '\0'
                           : !mbr_name_valid(m->next) || !mbr_addr_valid(m->next_addr))
        return refuse(why, whylen, "%s", "next and next_addr: a name and HOST:PORT, or both \"\"");
    return 0;
}

int chain_work_parse(const cJSON *meta, struct chain_work *m, char *why, size_t whylen)
{
    int rc = frame_meta_check(meta, work_fields, NFIELDS(work_fields), why, whylen);
    if (rc != 0)
        return rc;
    *m = (struct chain_work){.job = (uint64_t)num(meta, "job"),
                             .first = (uint64_t)num(meta, "first"),
                             .count = (uint32_t)num(meta, "count"),
                             .n = (uint32_t)num(meta, "n"),
                             .residual = cJSON_IsTrue(field(meta, "residual")),
                             .output = cJSON_IsTrue(field(meta, "output"))};
    if (strcmp(str(meta, "op"), "invert") != 0)
        return refuse(why, whylen, "unknown op '%.32s'", str(meta, "op"));
    if ((rc = check_items(m->count, m->n, why, whylen)) != 0 ||
        (rc = shm_parse(field(meta, "shm"), &m->shm, why, whylen)) != 0)
        return rc;
    const cJSON *g = field(meta, "gen");
    if (g == NULL)
        return 0;
    if (m->shm.lane)
        return refuse(why, whylen, "%s", "gen and shm: a generated WORK has no matrices");
    if ((rc = frame_meta_check(g, gen_fields, NFIELDS(gen_fields), why, whylen)) != 0)
        return rc;
    const char *kind = str(g, "kind");
    for (size_t i = 0; i < NFIELDS(kinds); i++)
        if (strcmp(kind, kinds[i]) == 0) {
            m->gen = true;
            m->seed = (uint64_t)num(g, "seed");
            snprintf(m->kind, sizeof m->kind, "%s", kinds[i]);
            return 0;
        }
    return refuse(why, whylen, "unknown gen kind '%.32s'", kind);
}

int chain_release_parse(const cJSON *meta, struct chain_release *m, char *why, size_t whylen)
{
    int rc = frame_meta_check(meta, release_fields, NFIELDS(release_fields), why, whylen);
    if (rc != 0)
        return rc;
    *m = (struct chain_release){.lane = str(meta, "lane"), .upto = (uint64_t)num(meta, "upto")};
    return shmbuf_name_valid(m->lane) ? 0 : refuse(why, whylen, "%s", "lane is not a lane name");
}

int chain_span_parse(const cJSON *meta, struct chain_span *m, char *why, size_t whylen)
{
    int rc = frame_meta_check(meta, span_fields, NFIELDS(span_fields), why, whylen);
    if (rc != 0)
        return rc;
    *m = (struct chain_span){.job = (uint64_t)num(meta, "job"),
                             .first = (uint64_t)num(meta, "first"),
                             .count = (uint32_t)num(meta, "count")};
    return m->job == 0 ? refuse(why, whylen, "%s", "job 0") : 0;
}

/* Reads the status names into st. */
static int read_status(const cJSON *arr, uint32_t count, uint8_t *st, char *why, size_t whylen)
{
    static const uint8_t codes[] = {GJ_OK, GJ_SINGULAR, GJ_INVALID};
    if ((uint32_t)cJSON_GetArraySize(arr) != count)
        return refuse(why, whylen, "%s", "status: count entries expected");
    uint32_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        const char *s = cJSON_GetStringValue(e);
        size_t k = 0;
        while (s && k < NFIELDS(codes) && strcmp(s, gj_status_str(codes[k])) != 0)
            k++;
        if (s == NULL || k == NFIELDS(codes))
            return refuse(why, whylen, "%s",
                          "status: \"ok\", \"singular\" or \"invalid\" expected");
        st[i++] = codes[k];
    }
    return 0;
}

static int read_resid(const cJSON *arr, uint32_t count, double *r, char *why, size_t whylen)
{
    if ((uint32_t)cJSON_GetArraySize(arr) != count)
        return refuse(why, whylen, "%s", "resid: count entries expected");
    uint32_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        if (cJSON_IsNull(e))
            r[i++] = NAN;
        else if (cJSON_IsNumber(e) && isfinite(e->valuedouble) && e->valuedouble >= 0)
            r[i++] = e->valuedouble;
        else
            return refuse(why, whylen, "%s", "resid: a number ≥ 0 or null expected");
    }
    return 0;
}

static int read_sum(const cJSON *arr, uint32_t count, uint64_t *sum, char *why, size_t whylen)
{
    if ((uint32_t)cJSON_GetArraySize(arr) != count)
        return refuse(why, whylen, "%s", "sum: count entries expected");
    uint32_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        const char *h = cJSON_IsString(e) ? e->valuestring : "";
        if (strlen(h) != 16 || strspn(h, "0123456789abcdef") != 16)
            return refuse(why, whylen, "%s", "sum: 16 lowercase hex digits expected");
        sum[i++] = strtoull(h, NULL, 16);
    }
    return 0;
}

uint64_t chain_sum(const double *inv, uint32_t n)
{
    uint64_t h[4] = {0xcbf29ce484222325ull, 0xcbf29ce484222325ull ^ 1, 0xcbf29ce484222325ull ^ 2,
                     0xcbf29ce484222325ull ^ 3};
    uint64_t words = (uint64_t)n * n;
    for (uint64_t i = 0; i < words; i++) { /* four lanes: no chain of n² multiplies */
        uint64_t w;
        memcpy(&w, &inv[i], sizeof w);
        h[i % 4] = (h[i % 4] ^ w) * 0x100000001b3ull;
    }
    uint64_t out = 0xcbf29ce484222325ull;
    for (int k = 0; k < 4; k++)
        out = (out ^ h[k]) * 0x100000001b3ull;
    return out;
}

int chain_result_parse(const cJSON *meta, struct chain_result *m, uint32_t max, char *why,
                       size_t whylen)
{
    int rc = frame_meta_check(meta, result_fields, NFIELDS(result_fields), why, whylen);
    if (rc != 0)
        return rc;
    m->job = (uint64_t)num(meta, "job");
    m->first = (uint64_t)num(meta, "first");
    m->count = (uint32_t)num(meta, "count");
    m->n = (uint32_t)num(meta, "n");
    m->ms = (uint32_t)num(meta, "ms");
    if ((rc = check_items(m->count, m->n, why, whylen)) != 0 ||
        (rc = shm_parse(field(meta, "shm"), &m->shm, why, whylen)) != 0)
        return rc;
    if (m->count > max)
        return refuse(why, whylen, "%s", "count over what this side takes");
    if ((rc = read_status(field(meta, "status"), m->count, m->status, why, whylen)) != 0)
        return rc;
    const cJSON *sm = field(meta, "sum");
    m->has_sum = sm != NULL;
    if (sm && m->sum == NULL)
        return refuse(why, whylen, "%s", "sum: not taken here");
    if (sm && (rc = read_sum(sm, m->count, m->sum, why, whylen)) != 0)
        return rc;
    const cJSON *rs = field(meta, "resid");
    m->has_resid = rs != NULL;
    if (rs == NULL) {
        for (uint32_t i = 0; i < m->count; i++)
            m->resid[i] = NAN;
        return 0;
    }
    return read_resid(rs, m->count, m->resid, why, whylen);
}
