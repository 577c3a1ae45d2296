/*
 * membership — the messages of the membership protocol.
 *
 * Each message has one schema table; builders and parsers are its two
 * directions, so a field added to one side without the other fails the
 * round-trip test.
 */
#include "convoy/membership.h"

#include <string.h>

#define LOAD_FIELDS                                                                                \
    {"active", FF_UINT, true}, {"bytes_per_s", FF_UINT, true}, {"load1", FF_NUMBER, true},         \
    {                                                                                              \
        "disk_free", FF_UINT, true                                                                 \
    }

static const struct frame_field hello_fields[] = {
    {"name", FF_STRING, false},
    {"http", FF_STRING, true},
    {"weight", FF_UINT, true},
    {"capacity", FF_UINT, true},
    {"files", FF_UINT, true},
    {"bytes", FF_UINT, true},
    LOAD_FIELDS,
};

static const struct frame_field welcome_fields[] = {
    {"session", FF_UINT, true},
    {"heartbeat_ms", FF_UINT, true},
    {"dead_after_ms", FF_UINT, true},
};

static const struct frame_field heartbeat_fields[] = {LOAD_FIELDS};

#define NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

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

cJSON *mbr_hello_json(const struct reg_hello *h)
{
    cJSON *o = cJSON_CreateObject();
    if (o && (h->name == NULL || cJSON_AddStringToObject(o, "name", h->name)) &&
        cJSON_AddStringToObject(o, "http", h->addr) &&
        cJSON_AddNumberToObject(o, "weight", h->weight) &&
        cJSON_AddNumberToObject(o, "capacity", h->capacity) &&
        cJSON_AddNumberToObject(o, "files", (double)h->files) &&
        cJSON_AddNumberToObject(o, "bytes", (double)h->bytes) && add_load(o, &h->load))
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
    h->weight = (uint32_t)num(meta, "weight");
    h->capacity = (uint32_t)num(meta, "capacity");
    h->files = (uint64_t)num(meta, "files");
    h->bytes = (uint64_t)num(meta, "bytes");
    read_load(meta, &h->load);
    return 0;
}

int mbr_welcome_parse(const cJSON *meta, struct mbr_welcome *w, char *why, size_t whylen)
{
    int rc = frame_meta_check(meta, welcome_fields, NFIELDS(welcome_fields), why, whylen);
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
