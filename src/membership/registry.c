/*
 * registry — a coordinator's table of members and their state machine.
 *
 * Every change goes through reg_next(), so the diagram in registry.h is the
 * whole truth about which changes exist. A row belongs to the control
 * session that last said HELLO for its name; events from any other session
 * (an old connection that died late) are answered -ESTALE and change nothing.
 */
#include "convoy/registry.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REG_LOAD_MAX 1e6 /* a 1-minute load average beyond this is junk */

static const char *const state_names[] = {"none", "up", "draining", "down"};
static const char *const event_names[] = {"hello", "heartbeat",  "drain",
                                          "bye",   "disconnect", "timeout"};

const char *reg_state_str(enum reg_state s)
{
    return (unsigned)s < sizeof state_names / sizeof state_names[0] ? state_names[s] : "invalid";
}

const char *reg_event_str(enum reg_event e)
{
    return (unsigned)e < sizeof event_names / sizeof event_names[0] ? event_names[e] : "invalid";
}

int reg_next(enum reg_state s, enum reg_event e)
{
    switch (e) {
    case REG_EV_HELLO:
        return s == REG_NONE || s == REG_DOWN ? REG_UP : -EINVAL;
    case REG_EV_HEARTBEAT:
        return s == REG_UP || s == REG_DRAINING ? (int)s : -EINVAL;
    case REG_EV_DRAIN:
        return s == REG_UP || s == REG_DRAINING ? REG_DRAINING : -EINVAL;
    case REG_EV_BYE:
        return s == REG_UP || s == REG_DRAINING ? REG_NONE : -EINVAL;
    case REG_EV_DISCONNECT:
    case REG_EV_TIMEOUT:
        return s == REG_UP || s == REG_DRAINING ? REG_DOWN : -EINVAL;
    }
    return -EINVAL;
}

static struct reg_server *reg_row(struct reg_table *t, const char *name)
{
    for (size_t i = 0; i < REG_SERVERS; i++) {
        if (t->rows[i].state != REG_NONE && strcmp(t->rows[i].name, name) == 0)
            return &t->rows[i];
    }
    return NULL;
}

const struct reg_server *reg_find(const struct reg_table *t, const char *name)
{
    return reg_row((struct reg_table *)t, name);
}

static struct reg_server *reg_free_row(struct reg_table *t)
{
    for (size_t i = 0; i < REG_SERVERS; i++) {
        if (t->rows[i].state == REG_NONE)
            return &t->rows[i];
    }
    return NULL;
}

/* The length of the UTF-8 sequence at p (up to end) if it is one printable
 * character: no C0 or C1 control, DEL, overlong form or surrogate. 0 if not. */
static size_t utf8_printable(const unsigned char *p, const unsigned char *end)
{
    if (*p >= 0x20 && *p < 0x7f)
        return 1;
    size_t n = *p >= 0xf0 && *p <= 0xf4 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc2 && *p < 0xe0 ? 2 : 0;
    if (n == 0 || (size_t)(end - p) < n)
        return 0;
    uint32_t c = *p & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (p[i] & 0x3f);
    }
    static const uint32_t min[] = {0, 0, 0xa0, 0x800, 0x10000}; /* 2 bytes: C1 is not printable */
    if (*p >= 0xf5 || c < min[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    return n;
}

/* A NUL-terminated, non-empty string of printable UTF-8 within max bytes. */
static bool reg_good_name(const char *s, size_t max)
{
    size_t len = s ? strnlen(s, max) : 0;
    if (len == 0 || len == max)
        return false;
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    for (size_t n; p < end; p += n)
        if ((n = utf8_printable(p, end)) == 0)
            return false;
    return true;
}

/* HOST:PORT within max bytes: HOST a name or IPv4 address of
 * [A-Za-z0-9.-], or an IPv6 address in brackets; PORT 1-65535. */
static bool reg_good_addr(const char *s, size_t max)
{
    size_t len = s ? strnlen(s, max) : 0;
    const char *colon = len && len < max ? strrchr(s, ':') : NULL;
    if (colon == NULL || colon == s)
        return false;
    size_t host = (size_t)(colon - s);
    if (s[0] == '[') {
        if (host < 3 || s[host - 1] != ']' || strspn(s + 1, "0123456789abcdefABCDEF:.") != host - 2)
            return false;
    } else if (strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-") !=
               host) {
        return false;
    }
    const char *port = colon + 1;
    size_t digits = strspn(port, "0123456789");
    if (digits == 0 || digits > 5 || port[digits] != '\0')
        return false;
    long v = strtol(port, NULL, 10);
    return v >= 1 && v <= 65535;
}

int reg_row_check(const struct reg_server *r, char *why, size_t whylen)
{
    const char *bad = NULL;
    if (r->state != REG_UP && r->state != REG_DRAINING && r->state != REG_DOWN)
        bad = "state out of range";
    else if (!reg_good_name(r->name, REG_NAME_MAX))
        bad = "name is not 1-63 bytes of printable UTF-8";
    else if (!reg_good_addr(r->addr, REG_ADDR_MAX))
        bad = "address is not HOST:PORT";
    else if (!isfinite(r->load.load1) || r->load.load1 < 0 || r->load.load1 > REG_LOAD_MAX)
        bad = "load1 out of range";
    if (bad == NULL)
        return 0;
    snprintf(why, whylen, "%s", bad);
    return -EINVAL;
}

int reg_hello(struct reg_table *t, const struct reg_hello *h, uint64_t now, uint64_t *session,
              char *why, size_t whylen)
{
    if (!reg_good_name(h->name, REG_NAME_MAX) || !reg_good_addr(h->addr, REG_ADDR_MAX)) {
        snprintf(why, whylen, "name must be 1-%d bytes of printable UTF-8, address HOST:PORT",
                 REG_NAME_MAX - 1);
        return -EINVAL;
    }
    struct reg_server *r = reg_row(t, h->name);
    if (r && reg_next(r->state, REG_EV_HELLO) < 0) {
        snprintf(why, whylen, "server '%s' is already connected (%s)", h->name,
                 reg_state_str(r->state));
        return -EEXIST;
    }
    if (r == NULL && (r = reg_free_row(t)) == NULL) {
        snprintf(why, whylen, "server table full (%d rows)", REG_SERVERS);
        return -ENOSPC;
    }
    memset(r, 0, sizeof *r);
    strcpy(r->name, h->name);
    strcpy(r->addr, h->addr);
    r->state = REG_UP;
    r->weight = h->weight;
    r->capacity = h->capacity;
    r->files = h->files;
    r->bytes = h->bytes;
    r->load = h->load;
    r->session = ++t->next_session;
    r->joined_ms = r->last_seen_ms = r->state_ms = now;
    *session = r->session;
    return 0;
}

int reg_event(struct reg_table *t, const char *name, uint64_t session, enum reg_event e,
              const struct reg_load *load, uint64_t now)
{
    struct reg_server *r = reg_row(t, name);
    if (r == NULL || r->session != session)
        return -ESTALE;
    int next = reg_next(r->state, e);
    if (next < 0)
        return next;
    if (next == REG_NONE) {
        memset(r, 0, sizeof *r);
        return REG_NONE;
    }
    if (e == REG_EV_HEARTBEAT && load)
        r->load = *load;
    if ((uint32_t)next != r->state)
        r->state_ms = now;
    r->state = (uint32_t)next;
    if (next == REG_DOWN) {
        r->session = 0;
        r->load.active = 0;
        r->load.bytes_per_s = 0;
    } else {
        r->last_seen_ms = now;
    }
    return next;
}

void reg_restart(struct reg_table *t, uint64_t now)
{
    for (size_t i = 0; i < REG_SERVERS; i++) {
        struct reg_server *r = &t->rows[i];
        if (r->state == REG_NONE)
            continue;
        if (r->state != REG_DOWN)
            r->state_ms = now;
        r->state = REG_DOWN;
        r->session = 0;
        r->load.active = 0;
        r->load.bytes_per_s = 0;
    }
}

unsigned reg_repair(struct reg_table *t, reg_report_fn report, void *arg)
{
    unsigned cleared = 0;
    for (size_t i = 0; i < REG_SERVERS; i++) {
        struct reg_server *r = &t->rows[i];
        char why[64];
        if (r->state == REG_NONE)
            continue;
        int rc = reg_row_check(r, why, sizeof why);
        if (rc == 0 && reg_row(t, r->name) != r)
            snprintf(why, sizeof why, "duplicate name");
        else if (rc == 0)
            continue;
        if (report)
            report(i, why, arg);
        memset(r, 0, sizeof *r);
        cleared++;
    }
    return cleared;
}

size_t reg_snapshot(const struct reg_table *t, struct reg_server *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < REG_SERVERS && n < max; i++) {
        if (t->rows[i].state != REG_NONE)
            out[n++] = t->rows[i];
    }
    return n;
}

static double reg_age(uint64_t now, uint64_t then)
{
    return now > then ? (double)(now - then) : 0;
}

cJSON *reg_server_json(const struct reg_server *r, uint64_t now)
{
    cJSON *o = cJSON_CreateObject();
    if (o && cJSON_AddStringToObject(o, "name", r->name) &&
        cJSON_AddStringToObject(o, "address", r->addr) &&
        cJSON_AddStringToObject(o, "state", reg_state_str(r->state)) &&
        cJSON_AddNumberToObject(o, "weight", r->weight) &&
        cJSON_AddNumberToObject(o, "capacity", r->capacity) &&
        cJSON_AddNumberToObject(o, "active", r->load.active) &&
        cJSON_AddNumberToObject(o, "bytes_per_s", (double)r->load.bytes_per_s) &&
        cJSON_AddNumberToObject(o, "load1", r->load.load1) &&
        cJSON_AddNumberToObject(o, "disk_free", (double)r->load.disk_free) &&
        cJSON_AddNumberToObject(o, "files", (double)r->files) &&
        cJSON_AddNumberToObject(o, "bytes", (double)r->bytes) &&
        cJSON_AddNumberToObject(o, "heartbeat_age_ms", reg_age(now, r->last_seen_ms)) &&
        cJSON_AddNumberToObject(o, "state_age_ms", reg_age(now, r->state_ms)))
        return o;
    cJSON_Delete(o);
    return NULL;
}

cJSON *reg_table_json(const struct reg_table *t, uint64_t now)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *list = doc ? cJSON_AddArrayToObject(doc, "servers") : NULL;
    for (size_t i = 0; list && i < REG_SERVERS; i++) {
        if (t->rows[i].state == REG_NONE)
            continue;
        cJSON *o = reg_server_json(&t->rows[i], now);
        if (o == NULL || !cJSON_AddItemToArray(list, o)) {
            cJSON_Delete(o);
            list = NULL;
        }
    }
    if (list == NULL) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}
