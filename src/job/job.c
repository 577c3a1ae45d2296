/*
 * job — a compute job's JSON, parsed and checked whole (see job.h and
 * docs/jobs.md).
 *
 * The design is simple: each object has a table of its field names; one
 * walk over the object's members refuses an unknown or repeated name and
 * files each known one in its slot, then every slot is checked in table
 * order with the JSON path of the value kept for the message. The first
 * problem found is the one reported, always as "$.path: what was
 * expected", so a user (and a test) sees exactly which value is wrong.
 *
 * Everything a user writes into a message (a key, an operation's name) is
 * cut short and escaped first: these texts end up in logs and in HTTP
 * answers. Counts are bounded as they are walked, never taken from
 * cJSON_GetArraySize (an int), and an inline job's size is bounded before
 * its numbers are looked at.
 */
#include "convoy/job.h"

#include "convoy/jgen.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define PATH_MAX_LEN 96                 /* a JSON path in a message */
#define SHOW_MAX     32                 /* user text quoted in a message */
#define INLINE_MAX   (1ull << 27)       /* numbers in an inline job or result */
#define SEED_MAX     9007199254740992.0 /* 2^53: every integer below is exact */
#define PRIORITY_MAX 9
#define KINDS_KNOWN  "uniform, spd, hilbert"
#define NFIELDS(a)   (sizeof(a) / sizeof((a)[0]))

static const struct job_op job_ops[] = {
    {"invert", true},
};

enum top_field {
    F_OP,
    F_MATRICES,
    F_GENERATE,
    F_INPUT,
    F_RESIDUALS,
    F_OUTPUT,
    F_PRIORITY,
    F_DEADLINE,
    F_TOP
};
static const char *const top_names[F_TOP] = {"op",        "matrices", "generate", "input",
                                             "residuals", "output",   "priority", "deadline_s"};

enum gen_field { G_COUNT, G_N, G_SEED, G_KIND, G_ALL };
static const char *const gen_names[G_ALL] = {"count", "n", "seed", "kind"};

static const char *const output_names[] = {"inline", "npy", "none"};

/* Where refusals go. */
struct out {
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 3, 4))) static int refuse(const struct out *o, const char *path,
                                                        const char *fmt, ...)
{
    int at = snprintf(o->err, o->errlen, "%s: ", path);
    if (at >= 0 && (size_t)at < o->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(o->err + at, o->errlen - (size_t)at, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* s, cut to SHOW_MAX bytes, printable ASCII with \xNN for the rest. */
static const char *show(const char *s, char *buf, size_t cap)
{
    size_t at = 0;
    for (size_t i = 0; s[i] && at + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (i == SHOW_MAX) {
            at += (size_t)snprintf(buf + at, cap - at, "...");
            break;
        }
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
            buf[at++] = (char)ch;
        else
            at += (size_t)snprintf(buf + at, cap - at, "\\x%02x", ch);
    }
    buf[at] = '\0';
    return buf;
}

/* parent.key, or parent["key"] (escaped) when key is not a plain name. */
static const char *key_path(const char *parent, const char *key, char *buf, size_t cap)
{
    bool plain = key[0] != '\0' && strlen(key) <= SHOW_MAX;
    for (const char *k = key; plain && *k; k++)
        plain = (*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || *k == '_' ||
                (k > key && *k >= '0' && *k <= '9');
    if (plain)
        snprintf(buf, cap, "%s.%s", parent, key);
    else {
        char shown[SHOW_MAX * 4 + 8];
        snprintf(buf, cap, "%s[\"%s\"]", parent, show(key, shown, sizeof shown));
    }
    return buf;
}

const char *job_output_str(enum job_output o)
{
    return (unsigned)o < NFIELDS(output_names) ? output_names[o] : "?";
}

const struct job_op *job_op_find(const char *name)
{
    for (size_t i = 0; name && i < NFIELDS(job_ops); i++)
        if (strcmp(name, job_ops[i].name) == 0)
            return &job_ops[i];
    return NULL;
}

/* ---- the document and its objects ---- */

/* A raw NUL ends a C string early and \u0000 would put one inside a value
 * (cJSON keeps strings NUL-terminated): neither can be checked after
 * parsing, so both are refused before. */
static int scan_nul(const char *json, size_t len, const struct out *o)
{
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        if (json[i] == '\0')
            return refuse(o, "$", "a NUL byte in the document");
        if (json[i] == '"')
            in_str = !in_str;
        else if (in_str && json[i] == '\\' && i + 1 < len) {
            if (json[i + 1] == 'u' && len - i >= 6 && memcmp(json + i + 2, "0000", 4) == 0)
                return refuse(o, "$", "\\u0000 (NUL) in a string");
            i++; /* the escaped character cannot end the string */
        }
    }
    return 0;
}

static int parse_doc(const char *json, size_t len, cJSON **doc, const struct out *o)
{
    if (len > JOB_JSON_MAX)
        return refuse(o, "$", "document of %zu bytes over %u", len, JOB_JSON_MAX);
    int rc = scan_nul(json, len, o);
    if (rc < 0)
        return rc;
    const char *end = NULL;
    *doc = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (*doc == NULL)
        return refuse(o, "$", "not JSON (at byte %td)", end ? end - json : (ptrdiff_t)0);
    while (end < json + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    if (end != json + len)
        return refuse(o, "$", "text after the JSON value (at byte %td)", end - json);
    if (!cJSON_IsObject(*doc))
        return refuse(o, "$", "expected an object");
    return 0;
}

/* Files obj's members by name into slot[] (NULL: absent); refuses a name
 * not in names[] and one given twice. */
static int sort_fields(const cJSON *obj, const char *path, const char *const *names, size_t count,
                       const cJSON **slot, const struct out *o)
{
    char at[PATH_MAX_LEN + SHOW_MAX * 4];
    for (size_t k = 0; k < count; k++)
        slot[k] = NULL;
    for (const cJSON *m = obj->child; m; m = m->next) {
        size_t k = 0;
        while (k < count && strcmp(m->string, names[k]) != 0)
            k++;
        if (k == count)
            return refuse(o, key_path(path, m->string, at, sizeof at), "unknown field");
        if (slot[k])
            return refuse(o, key_path(path, m->string, at, sizeof at), "given twice");
        slot[k] = m;
    }
    return 0;
}

/* v is a number holding an integer in 0 … max. */
static bool as_uint(const cJSON *v, double max, uint64_t *out)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > max || v->valuedouble != trunc(v->valuedouble))
        return false;
    *out = (uint64_t)v->valuedouble;
    return true;
}

/* ---- fields ---- */

static int parse_op(const cJSON *v, struct job_spec *spec, const struct out *o)
{
    if (v == NULL)
        return refuse(o, "$.op", "missing");
    if (!cJSON_IsString(v))
        return refuse(o, "$.op", "expected a string");
    spec->op = job_op_find(v->valuestring);
    if (spec->op == NULL) {
        char shown[SHOW_MAX * 4 + 8], known[64] = "";
        for (size_t i = 0; i < NFIELDS(job_ops); i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                     job_ops[i].name);
        return refuse(o, "$.op", "unknown operation \"%s\" (known: %s)",
                      show(v->valuestring, shown, sizeof shown), known);
    }
    return 0;
}

/* Children of arr, counting no further than limit + 1. */
static uint64_t count_upto(const cJSON *arr, uint64_t limit)
{
    uint64_t c = 0;
    for (const cJSON *e = arr->child; e && c <= limit; e = e->next)
        c++;
    return c;
}

/* Item i: an array of n rows of n finite numbers. */
static int check_item(const cJSON *item, uint64_t i, uint32_t n, const struct out *o)
{
    char at[PATH_MAX_LEN];
    snprintf(at, sizeof at, "$.matrices[%" PRIu64 "]", i);
    if (!cJSON_IsArray(item) || count_upto(item, n) != n)
        return refuse(o, at, "expected %" PRIu32 " row%s", n, n == 1 ? "" : "s");
    uint32_t r = 0;
    for (const cJSON *row = item->child; row; row = row->next, r++) {
        snprintf(at, sizeof at, "$.matrices[%" PRIu64 "][%" PRIu32 "]", i, r);
        if (!cJSON_IsArray(row) || count_upto(row, n) != n)
            return refuse(o, at, "expected %" PRIu32 " number%s", n, n == 1 ? "" : "s");
        uint32_t c = 0;
        for (const cJSON *e = row->child; e; e = e->next, c++)
            if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble)) {
                snprintf(at, sizeof at, "$.matrices[%" PRIu64 "][%" PRIu32 "][%" PRIu32 "]", i, r,
                         c);
                return refuse(o, at, "expected a finite number");
            }
    }
    return 0;
}

static int parse_matrices(const cJSON *v, struct job_spec *spec, const struct out *o)
{
    if (!cJSON_IsArray(v) || v->child == NULL)
        return refuse(o, "$.matrices", "expected a non-empty array of matrices");
    uint64_t items = count_upto(v, JOB_ITEMS_MAX);
    if (items > JOB_ITEMS_MAX)
        return refuse(o, "$.matrices", "more than %u items", JOB_ITEMS_MAX);
    const cJSON *first = v->child;
    uint64_t rows = cJSON_IsArray(first) ? count_upto(first, JOB_N_MAX) : 0;
    if (rows == 0 || rows > JOB_N_MAX)
        return refuse(o, "$.matrices[0]", "expected an array of 1 … %u rows", JOB_N_MAX);
    uint32_t n = (uint32_t)rows;
    if (items * n * n > INLINE_MAX)
        return refuse(o, "$.matrices",
                      "%" PRIu64 " items of %" PRIu32 "×%" PRIu32
                      " are over 2^27 numbers inline: send a .npy as \"input\"",
                      items, n, n);
    uint64_t i = 0;
    for (const cJSON *item = v->child; item; item = item->next, i++) {
        int rc = check_item(item, i, n, o);
        if (rc < 0)
            return rc;
    }
    spec->source = JOB_INLINE;
    spec->items = items;
    spec->n = n;
    spec->matrices = v;
    return 0;
}

static int parse_kind(const cJSON *v, struct job_spec *spec, const struct out *o)
{
    if (!cJSON_IsString(v))
        return refuse(o, "$.generate.kind", "expected a string (known: " KINDS_KNOWN ")");
    if (!jgen_kind_valid(v->valuestring) || strlen(v->valuestring) >= JOB_KIND_MAX) {
        char shown[SHOW_MAX * 4 + 8];
        return refuse(o, "$.generate.kind", "unknown kind \"%s\" (known: " KINDS_KNOWN ")",
                      show(v->valuestring, shown, sizeof shown));
    }
    memcpy(spec->kind, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

static int parse_generate(const cJSON *v, struct job_spec *spec, const struct out *o)
{
    const cJSON *g[G_ALL];
    if (!cJSON_IsObject(v))
        return refuse(o, "$.generate", "expected an object {\"count\", \"n\", \"seed\", \"kind\"}");
    int rc = sort_fields(v, "$.generate", gen_names, G_ALL, g, o);
    if (rc < 0)
        return rc;
    for (size_t k = 0; k < G_ALL; k++)
        if (g[k] == NULL) {
            char at[PATH_MAX_LEN];
            return refuse(o, key_path("$.generate", gen_names[k], at, sizeof at), "missing");
        }
    uint64_t n;
    if (!as_uint(g[G_COUNT], JOB_ITEMS_MAX, &spec->items) || spec->items == 0)
        return refuse(o, "$.generate.count", "expected a positive integer ≤ %u", JOB_ITEMS_MAX);
    if (!as_uint(g[G_N], JOB_N_MAX, &n) || n == 0)
        return refuse(o, "$.generate.n", "expected a positive integer ≤ %u", JOB_N_MAX);
    if (!as_uint(g[G_SEED], SEED_MAX, &spec->seed))
        return refuse(o, "$.generate.seed", "expected a non-negative integer ≤ 2^53");
    spec->n = (uint32_t)n;
    spec->source = JOB_GENERATE;
    return parse_kind(g[G_KIND], spec, o);
}

/* What a relative name must not hold: a ".." component, a control byte. */
static const char *input_flaw(const char *s)
{
    for (const char *c = s; *c; c++) {
        bool starts = c == s || c[-1] == '/';
        if (starts && c[0] == '.' && c[1] == '.' && (c[2] == '/' || c[2] == '\0'))
            return "a \"..\" component";
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return "a control character";
    }
    return NULL;
}

static int parse_input(const cJSON *v, struct job_spec *spec, const struct out *o)
{
    if (!cJSON_IsString(v))
        return refuse(o, "$.input", "expected a string (a relative file name)");
    const char *s = v->valuestring, *flaw;
    size_t len = strlen(s);
    if (len == 0)
        return refuse(o, "$.input", "empty file name");
    if (len >= JOB_INPUT_MAX)
        return refuse(o, "$.input", "file name over %d bytes", JOB_INPUT_MAX - 1);
    if (s[0] == '/')
        return refuse(o, "$.input", "absolute file name: only relative to the job");
    if ((flaw = input_flaw(s)) != NULL)
        return refuse(o, "$.input", "file name with %s", flaw);
    memcpy(spec->input, s, len + 1);
    spec->source = JOB_NPY;
    return 0;
}

/* Exactly one of "matrices", "generate", "input", then its own checks. */
static int parse_source(const cJSON *const *f, struct job_spec *spec, const struct out *o)
{
    enum top_field given = F_TOP;
    for (enum top_field k = F_MATRICES; k <= F_INPUT; k++) {
        if (f[k] == NULL)
            continue;
        if (given != F_TOP) {
            char at[PATH_MAX_LEN];
            return refuse(o, key_path("$", top_names[k], at, sizeof at),
                          "only one of \"matrices\", \"generate\", \"input\" may be given");
        }
        given = k;
    }
    switch (given) {
    case F_MATRICES:
        return parse_matrices(f[given], spec, o);
    case F_GENERATE:
        return parse_generate(f[given], spec, o);
    case F_INPUT:
        return parse_input(f[given], spec, o);
    default:
        return refuse(o, "$", "one of \"matrices\", \"generate\", \"input\" is required");
    }
}

static int parse_output(const cJSON *v, struct job_spec *spec, const struct out *o)
{
    spec->output = spec->source == JOB_INLINE ? JOB_OUT_INLINE : JOB_OUT_NPY;
    if (v == NULL)
        return 0;
    size_t k = 0;
    while (cJSON_IsString(v) && k < NFIELDS(output_names) &&
           strcmp(v->valuestring, output_names[k]) != 0)
        k++;
    if (!cJSON_IsString(v) || k == NFIELDS(output_names))
        return refuse(o, "$.output", "expected \"inline\", \"npy\" or \"none\"");
    spec->output = (enum job_output)k;
    /* A generated job is small to send and may be huge to answer inline. */
    if (spec->output == JOB_OUT_INLINE && spec->source == JOB_GENERATE &&
        spec->items * spec->n * spec->n > INLINE_MAX)
        return refuse(o, "$.output",
                      "inline results of %" PRIu64 " items of %" PRIu32 "×%" PRIu32
                      " are over 2^27 numbers: use \"npy\"",
                      spec->items, spec->n, spec->n);
    return 0;
}

/* "residuals", "output", "priority", "deadline_s". */
static int parse_options(const cJSON *const *f, struct job_spec *spec, const struct out *o)
{
    uint64_t prio = 0;
    if (f[F_RESIDUALS] && !cJSON_IsBool(f[F_RESIDUALS]))
        return refuse(o, "$.residuals", "expected true or false");
    spec->residuals = cJSON_IsTrue(f[F_RESIDUALS]);
    int rc = parse_output(f[F_OUTPUT], spec, o);
    if (rc < 0)
        return rc;
    if (f[F_PRIORITY] && !as_uint(f[F_PRIORITY], PRIORITY_MAX, &prio))
        return refuse(o, "$.priority", "expected an integer 0 … %d", PRIORITY_MAX);
    spec->priority = (uint32_t)prio;
    const cJSON *d = f[F_DEADLINE];
    if (d && (!cJSON_IsNumber(d) || !isfinite(d->valuedouble) || d->valuedouble <= 0))
        return refuse(o, "$.deadline_s", "expected a positive number of seconds");
    spec->deadline_s = d ? d->valuedouble : 0;
    return 0;
}

int job_parse(const char *json, size_t len, struct job_spec *spec, cJSON **doc, char *err,
              size_t errlen)
{
    const struct out o = {err, errlen};
    const cJSON *f[F_TOP];
    cJSON *d = NULL;
    if (errlen)
        err[0] = '\0';
    memset(spec, 0, sizeof *spec);
    int rc = parse_doc(json, len, &d, &o);
    if (rc < 0 || (rc = sort_fields(d, "$", top_names, F_TOP, f, &o)) < 0 ||
        (rc = parse_op(f[F_OP], spec, &o)) < 0 || (rc = parse_source(f, spec, &o)) < 0 ||
        (rc = parse_options(f, spec, &o)) < 0)
        goto fail;
    *doc = d;
    return 0;
fail:
    cJSON_Delete(d);
    memset(spec, 0, sizeof *spec);
    *doc = NULL;
    return rc;
}

/* ---- inline items ---- */

/* One item's rows into out, n·n numbers; -ERANGE if it is not n×n. */
static int copy_item(const cJSON *item, uint32_t n, double *out)
{
    uint64_t at = 0;
    for (const cJSON *row = item->child; row; row = row->next)
        for (const cJSON *e = row->child; e; e = e->next) {
            if (at == (uint64_t)n * n || !cJSON_IsNumber(e))
                return -ERANGE;
            out[at++] = e->valuedouble;
        }
    return at == (uint64_t)n * n ? 0 : -ERANGE;
}

int job_inline_items(const struct job_spec *spec, uint64_t first, uint64_t count, double *out)
{
    if (spec->source != JOB_INLINE || spec->matrices == NULL || first > spec->items ||
        count > spec->items - first)
        return -ERANGE;
    const cJSON *item = spec->matrices->child;
    for (uint64_t i = 0; item && i < first; i++)
        item = item->next;
    uint64_t nn = (uint64_t)spec->n * spec->n;
    for (uint64_t i = 0; i < count; i++, item = item->next) {
        int rc = item ? copy_item(item, spec->n, out + i * nn) : -ERANGE;
        if (rc < 0)
            return rc;
    }
    return 0;
}

int job_inline_item(const struct job_spec *spec, uint64_t i, double *out)
{
    return job_inline_items(spec, i, 1, out);
}
