/*
 * membership — the messages of the membership protocol.
 *
 * Each message has one schema table; builders and parsers are its two
 * directions, so a field added to one side without the other fails the
 * round-trip test. Every integer field has the kind of the C field it is
 * read into (FF_U32 for uint32_t), so the casts below are exact, and every
 * string a peer sends is checked here against what it names (a certificate
 * name, an address) before anything logs it or stores it.
 */
#include "convoy/membership.h"

#include "convoy/net.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define LOAD_FIELDS                                                                                \
    {"active", FF_U32, true}, {"bytes_per_s", FF_UINT, true}, {"load1", FF_NUMBER, true},          \
    {                                                                                              \
        "disk_free", FF_UINT, true                                                                 \
    }

static const struct frame_field hello_fields[] = {
    {"name", FF_STRING, false}, {"http", FF_STRING, true},
    {"weight", FF_U32, true},   {"capacity", FF_U32, true},
    {"files", FF_UINT, true},   {"bytes", FF_UINT, true},
    {"host", FF_STRING, false}, LOAD_FIELDS,
};

#define WELCOME_FIELDS 3
static const struct frame_field welcome_fields[WELCOME_FIELDS] = {
    {"session", FF_UINT, true},
    {"heartbeat_ms", FF_U32, true},
    {"dead_after_ms", FF_U32, true},
};

static const struct frame_field heartbeat_fields[] = {LOAD_FIELDS};

#define NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

bool mbr_name_valid(const char *s)
{
    size_t n = s ? strnlen(s, REG_NAME_MAX) : 0;
    return n > 0 && n < REG_NAME_MAX &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789._-") == n;
}

/* The characters are checked first: the parser's port reading would take
 * leading blanks (a newline), which must never reach a log line. */
bool mbr_addr_valid(const char *s)
{
    struct net_addr a;
    size_t n = s ? strnlen(s, REG_ADDR_MAX) : 0;
    return n > 0 && n < REG_ADDR_MAX &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.:[]") == n &&
           net_addr_parse_err(s, NET_DIAL, &a, NULL, 0) == 0;
}

static double num(const cJSON *meta, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(meta, key)->valuedouble;
}

static int add_load(cJSON *o, const struct reg_load *l)
{
    return cJSON_AddNumberToObject(o, "active", l->active) &&
           cJSON_AddNumberToObject(o, "bytes_per_s", (double)l->bytes_per_s) &&
           cJSON_AddNumberToObject(o, "load1", l->load1) &&
           cJSON_AddNumberToObject(o, "disk_free", (double)l->disk_free);
}

static void read_load(const cJSON *meta, struct reg_load *l)
{
    l->active = (uint32_t)num(meta, "active");
    l->bytes_per_s = (uint64_t)num(meta, "bytes_per_s");
    l->load1 = num(meta, "load1");
    l->disk_free = (uint64_t)num(meta, "disk_free");
}

bool mbr_host_valid(const char *s)
{
    size_t n = strlen(s);
    return n < REG_HOST_MAX && strspn(s, "0123456789abcdef-") == n;
}

cJSON *mbr_hello_json(const struct reg_hello *h)
{
    cJSON *o = cJSON_CreateObject();
    if (o && (h->name == NULL || cJSON_AddStringToObject(o, "name", h->name)) &&
        cJSON_AddStringToObject(o, "http", h->addr) &&
        cJSON_AddNumberToObject(o, "weight", h->weight) &&
        cJSON_AddNumberToObject(o, "capacity", h->capacity) &&
        cJSON_AddNumberToObject(o, "files", (double)h->files) &&
        cJSON_AddNumberToObject(o, "bytes", (double)h->bytes) &&
        (h->host == NULL || h->host[0] == '\0' || cJSON_AddStringToObject(o, "host", h->host)) &&
        add_load(o, &h->load))
        return o;
    cJSON_Delete(o);
    return NULL;
}

cJSON *mbr_welcome_json(const struct mbr_welcome *w)
{
    cJSON *o = cJSON_CreateObject();
    if (o && cJSON_AddNumberToObject(o, "session", (double)w->session) &&
        cJSON_AddNumberToObject(o, "heartbeat_ms", w->heartbeat_ms) &&
        cJSON_AddNumberToObject(o, "dead_after_ms", w->dead_after_ms))
        return o;
    cJSON_Delete(o);
    return NULL;
}

cJSON *mbr_heartbeat_json(const struct reg_load *l)
{
    cJSON *o = cJSON_CreateObject();
    if (o && add_load(o, l))
        return o;
    cJSON_Delete(o);
    return NULL;
}

int mbr_hello_parse(const cJSON *meta, struct reg_hello *h, char *why, size_t whylen)
{
    int rc = frame_meta_check(meta, hello_fields, NFIELDS(hello_fields), why, whylen);
    if (rc < 0)
        return rc;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(meta, "name");
    memset(h, 0, sizeof *h);
    h->name = name ? name->valuestring : NULL;
    h->addr = cJSON_GetObjectItemCaseSensitive(meta, "http")->valuestring;
    if (h->name && !mbr_name_valid(h->name)) {
        snprintf(why, whylen, "bad name: 1-%d characters of A-Z a-z 0-9 . _ -", REG_NAME_MAX - 1);
        return FRAME_ESCHEMA;
    }
    if (!mbr_addr_valid(h->addr)) {
        snprintf(why, whylen, "bad http: expected HOST:PORT with a numeric host, port 1-65535");
        return FRAME_ESCHEMA;
    }
    const cJSON *host = cJSON_GetObjectItemCaseSensitive(meta, "host");
    h->host = host ? host->valuestring : "";
    if (!mbr_host_valid(h->host)) {
        snprintf(why, whylen, "bad host: up to %d characters of 0-9 a-f -", REG_HOST_MAX - 1);
        return FRAME_ESCHEMA;
    }
    h->weight = (uint32_t)num(meta, "weight");
    h->capacity = (uint32_t)num(meta, "capacity");
    h->files = (uint64_t)num(meta, "files");
    h->bytes = (uint64_t)num(meta, "bytes");
    read_load(meta, &h->load);
    return 0;
}

int mbr_welcome_parse(const cJSON *meta, const struct frame_field *extra, size_t nextra,
                      struct mbr_welcome *w, char *why, size_t whylen)
{
    struct frame_field fields[WELCOME_FIELDS + MBR_WELCOME_EXTRA_MAX];
    if (nextra > MBR_WELCOME_EXTRA_MAX)
        return -E2BIG;
    memcpy(fields, welcome_fields, sizeof welcome_fields);
    if (nextra > 0)
        memcpy(fields + WELCOME_FIELDS, extra, nextra * sizeof *extra);
    int rc = frame_meta_check(meta, fields, WELCOME_FIELDS + nextra, why, whylen);
    if (rc < 0)
        return rc;
    w->session = (uint64_t)num(meta, "session");
    w->heartbeat_ms = (uint32_t)num(meta, "heartbeat_ms");
    w->dead_after_ms = (uint32_t)num(meta, "dead_after_ms");
    return 0;
}

int mbr_heartbeat_parse(const cJSON *meta, struct reg_load *l, char *why, size_t whylen)
{
    int rc = frame_meta_check(meta, heartbeat_fields, NFIELDS(heartbeat_fields), why, whylen);
    if (rc == 0)
        read_load(meta, l);
    return rc;
}

int mbr_empty_parse(const cJSON *meta, char *why, size_t whylen)
{
    return frame_meta_check(meta, NULL, 0, why, whylen);
}
