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
#include <stdio.h>
#include <string.h>

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

static int reg_bad_string(const char *s, size_t max)
{
    size_t n = s ? strnlen(s, max) : 0;
    return n == 0 || n == max;
}

int reg_hello(struct reg_table *t, const struct reg_hello *h, uint64_t now, uint64_t *session,
              char *why, size_t whylen)
{
    if (reg_bad_string(h->name, REG_NAME_MAX) || reg_bad_string(h->addr, REG_ADDR_MAX)) {
        snprintf(why, whylen, "name and address must be 1-%d bytes", REG_NAME_MAX - 1);
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

unsigned reg_repair(struct reg_table *t)
{
    unsigned cleared = 0;
    for (size_t i = 0; i < REG_SERVERS; i++) {
        struct reg_server *r = &t->rows[i];
        if (r->state == REG_NONE)
            continue;
        if (r->state > REG_DOWN || reg_bad_string(r->name, REG_NAME_MAX) ||
            strnlen(r->addr, REG_ADDR_MAX) == REG_ADDR_MAX) {
            memset(r, 0, sizeof *r);
            cleared++;
        }
    }
    return cleared;
}

void reg_repair_shm(void *data, size_t size, void *arg)
{
    (void)arg;
    if (size >= sizeof(struct reg_table))
        reg_repair(data);
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
