/*
 * xfer_msg — the transfer messages a file server sends the balancer.
 *
 * Each message has one schema table; the builder and the parser are its
 * two directions, so a field added to one side without the other fails the
 * round-trip test. Integer fields have the kind of the C field they are
 * read into (all uint64_t, so FF_UINT), which makes the casts exact, and
 * every string is checked against what it names before anything stores or
 * logs it.
 */
#include "convoy/xfer_msg.h"

#include <stdio.h>
#include <string.h>

static const struct frame_field start_fields[] = {
    {"id", FF_UINT, true},        {"path", FF_STRING, true}, {"first_byte", FF_UINT, true},
    {"length", FF_UINT, true},    {"size", FF_UINT, true},   {"etag", FF_STRING, false},
    {"digest", FF_STRING, false},
};

static const struct frame_field progress_fields[] = {
    {"id", FF_UINT, true},
    {"bytes", FF_UINT, true},
};

static const struct frame_field end_fields[] = {
    {"id", FF_UINT, true},
    {"bytes", FF_UINT, true},
    {"outcome", FF_STRING, true},
};

#define NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

static const struct schema {
    enum frame_type type;
    const struct frame_field *fields;
    size_t n;
} schemas[] = {
    {FRAME_XFER_START, start_fields, NFIELDS(start_fields)},
    {FRAME_XFER_PROGRESS, progress_fields, NFIELDS(progress_fields)},
    {FRAME_XFER_END, end_fields, NFIELDS(end_fields)},
};

/* The schema of an XFER message type, or NULL for another type. */
static const struct schema *schema_of(enum frame_type type)
{
    for (size_t i = 0; i < NFIELDS(schemas); i++)
        if (schemas[i].type == type)
            return &schemas[i];
    return NULL;
}

static const char *const outcome_names[] = {
    [XFER_OUT_NONE] = "none",
    [XFER_OUT_COMPLETE] = "complete",
    [XFER_OUT_CLIENT_ABORTED] = "client-aborted",
    [XFER_OUT_ERROR] = "error",
    [XFER_OUT_INTERRUPTED] = "interrupted",
};

const char *xfer_outcome_str(enum xfer_outcome o)
{
    return (unsigned)o < NFIELDS(outcome_names) ? outcome_names[o] : "unknown";
}

bool xfer_msg_path_valid(const char *s)
{
    size_t n = s ? strnlen(s, XFER_PATH_MAX) : 0;
    if (n == 0 || n >= XFER_PATH_MAX || s[0] != '/')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

bool xfer_msg_etag_valid(const char *s)
{
    size_t n = s ? strnlen(s, XFER_ETAG_MAX) : 0;
    if (n == 0 || n >= XFER_ETAG_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '\\')
            return false;
    return true;
}

bool xfer_msg_digest_valid(const char *s)
{
    return s && strnlen(s, XFER_DIGEST_MAX) == XFER_DIGEST_MAX - 1 &&
           strspn(s, "0123456789abcdef") == XFER_DIGEST_MAX - 1;
}

static bool add_u64(cJSON *o, const char *key, uint64_t v)
{
    return cJSON_AddNumberToObject(o, key, (double)v) != NULL;
}

static bool add_start(cJSON *o, const struct xfer_msg *m)
{
    return cJSON_AddStringToObject(o, "path", m->path ? m->path : "") &&
           add_u64(o, "first_byte", m->first_byte) && add_u64(o, "length", m->length) &&
           add_u64(o, "size", m->size) &&
           (m->etag == NULL || cJSON_AddStringToObject(o, "etag", m->etag)) &&
           (m->digest == NULL || cJSON_AddStringToObject(o, "digest", m->digest));
}

cJSON *xfer_msg_json(const struct xfer_msg *m)
{
    if (schema_of(m->type) == NULL)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    bool ok = o && add_u64(o, "id", m->id);
    if (ok && m->type == FRAME_XFER_START)
        ok = add_start(o, m);
    else if (ok)
        ok = add_u64(o, "bytes", m->bytes);
    if (ok && m->type == FRAME_XFER_END)
        ok = cJSON_AddStringToObject(o, "outcome", xfer_outcome_str(m->outcome)) != NULL;
    if (ok)
        return o;
    cJSON_Delete(o);
    return NULL;
}

static uint64_t u64(const cJSON *meta, const char *key)
{
    return (uint64_t)cJSON_GetObjectItemCaseSensitive(meta, key)->valuedouble;
}

static const char *str(const cJSON *meta, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, key);
    return v ? v->valuestring : NULL;
}

static int refuse(char *why, size_t whylen, const char *reason)
{
    snprintf(why, whylen, "%s", reason);
    return FRAME_ESCHEMA;
}

static int parse_start(const cJSON *meta, struct xfer_msg *m, char *why, size_t whylen)
{
    m->path = str(meta, "path");
    m->first_byte = u64(meta, "first_byte");
    m->length = u64(meta, "length");
    m->size = u64(meta, "size");
    m->etag = str(meta, "etag");
    m->digest = str(meta, "digest");
    if (!xfer_msg_path_valid(m->path))
        return refuse(why, whylen, "bad path: '/' then printable bytes, at most 1024 bytes");
    if (m->etag && !xfer_msg_etag_valid(m->etag))
        return refuse(why, whylen, "bad etag: 1-63 printable ASCII bytes");
    if (m->digest && !xfer_msg_digest_valid(m->digest))
        return refuse(why, whylen, "bad digest: 64 lowercase hex digits");
    if (m->first_byte > m->size || m->length > m->size - m->first_byte)
        return refuse(why, whylen, "first_byte + length beyond size");
    return 0;
}

static int parse_outcome(const cJSON *meta, struct xfer_msg *m, char *why, size_t whylen)
{
    const char *o = str(meta, "outcome");
    for (enum xfer_outcome i = XFER_OUT_COMPLETE; i <= XFER_OUT_ERROR; i++)
        if (strcmp(o, outcome_names[i]) == 0) {
            m->outcome = i;
            return 0;
        }
    return refuse(why, whylen, "bad outcome: complete, client-aborted or error");
}

int xfer_msg_parse(enum frame_type type, const cJSON *meta, struct xfer_msg *m, char *why,
                   size_t whylen)
{
    const struct schema *sc = schema_of(type);
    if (sc == NULL)
        return FRAME_ETYPE;
    int rc = frame_meta_check(meta, sc->fields, sc->n, why, whylen);
    if (rc < 0)
        return rc;
    memset(m, 0, sizeof *m);
    m->type = type;
    m->id = u64(meta, "id");
    if (m->id == 0)
        return refuse(why, whylen, "bad id: 0 is no transfer");
    if (type == FRAME_XFER_START)
        return parse_start(meta, m, why, whylen);
    m->bytes = u64(meta, "bytes");
    return type == FRAME_XFER_END ? parse_outcome(meta, m, why, whylen) : 0;
}
