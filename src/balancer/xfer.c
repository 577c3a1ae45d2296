/*
 * xfer — the balancer's transfer records, their state machine and table.
 *
 * The design is simple: the records are one array of fixed-size rows (the
 * shared segment's slots, one to one), and everything else in the table is
 * an index over it kept small so that nothing walks the rows themselves:
 * an open-addressing hash from id to slot, a stack of free slots, a ring of
 * finished slots in the order they finished (the oldest is reused first
 * when no slot is free), a per-slot summary (expiry, running legs) that the
 * sweeps scan, and a list of slots changed since the caller last published.
 *
 * Every change to a leg goes through leg_set(), which passes the change in
 * the leg's phase and bytes left to the policy's counts, so the counts
 * cannot drift from the legs; a record that finishes closes its open legs
 * the same way before it is logged, so a finished record holds no count.
 */
#include "convoy/xfer.h"

#include "convoy/log.h"
#include "convoy/shm.h"
#include "convoy/text.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ---- names and the transition function ---- */

static const char *const state_names[] = {
    [XFER_NONE] = "none", [XFER_REDIRECTED] = "redirected", [XFER_ACTIVE] = "active",
    [XFER_DONE] = "done", [XFER_FAILED] = "failed",         [XFER_INTERRUPTED] = "interrupted",
};

static const char *const event_names[] = {
    [XFER_EV_REDIRECT] = "redirect",       [XFER_EV_START] = "start",
    [XFER_EV_PROGRESS] = "progress",       [XFER_EV_END] = "end",
    [XFER_EV_SERVER_DOWN] = "server-down", [XFER_EV_RESUME] = "resume",
    [XFER_EV_EXPIRE] = "expire",
};

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

uint64_t xfer_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *xfer_state_str(enum xfer_state s)
{
    return (unsigned)s < NELEMS(state_names) ? state_names[s] : "unknown";
}

const char *xfer_event_str(enum xfer_event e)
{
    return (unsigned)e < NELEMS(event_names) ? event_names[e] : "unknown";
}

int xfer_state_parse(const char *s, enum xfer_state *out)
{
    for (size_t i = XFER_REDIRECTED; i < NELEMS(state_names); i++)
        if (strcmp(s, state_names[i]) == 0) {
            *out = (enum xfer_state)i;
            return 0;
        }
    return -EINVAL;
}

static bool is_final(uint32_t s)
{
    return s == XFER_DONE || s == XFER_FAILED;
}

int xfer_next(enum xfer_state s, enum xfer_event e, enum xfer_outcome o)
{
    switch (e) {
    case XFER_EV_REDIRECT:
        return s == XFER_NONE ? XFER_REDIRECTED : -EINVAL;
    case XFER_EV_START:
        return s == XFER_REDIRECTED ? XFER_ACTIVE : -EINVAL;
    case XFER_EV_PROGRESS:
        return s == XFER_ACTIVE || s == XFER_INTERRUPTED ? XFER_ACTIVE : -EINVAL;
    case XFER_EV_END:
        if ((s != XFER_ACTIVE && s != XFER_INTERRUPTED) || o == XFER_OUT_NONE ||
            o == XFER_OUT_INTERRUPTED)
            return -EINVAL;
        return o == XFER_OUT_COMPLETE ? XFER_DONE : XFER_INTERRUPTED;
    case XFER_EV_SERVER_DOWN:
        return s == XFER_ACTIVE ? XFER_INTERRUPTED : -EINVAL;
    case XFER_EV_RESUME:
        return s == XFER_REDIRECTED || s == XFER_ACTIVE || s == XFER_INTERRUPTED ? XFER_REDIRECTED
                                                                                 : -EINVAL;
    case XFER_EV_EXPIRE:
        return s == XFER_REDIRECTED || s == XFER_INTERRUPTED ? XFER_FAILED : -EINVAL;
    }
    return -EINVAL;
}

/* ---- record checks and JSON ---- */

/* A string field of a row: NUL-terminated within size, no control byte,
 * at least min bytes. */
static bool good_text(const char *s, size_t size, size_t min)
{
    size_t n = strnlen(s, size);
    if (n >= size || n < min)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static bool good_etag(const char *s)
{
    return s[0] == '\0' || xfer_msg_etag_valid(s);
}

static bool good_digest(const char *s)
{
    return s[0] == '\0' || xfer_msg_digest_valid(s);
}

static int bad(char *why, size_t whylen, const char *reason)
{
    snprintf(why, whylen, "%s", reason);
    return -EINVAL;
}

static int leg_check(const struct xfer_leg *l, char *why, size_t whylen)
{
    if (!good_text(l->server, sizeof l->server, 1))
        return bad(why, whylen, "leg server is not a name");
    if (l->phase > XFER_LEG_ENDED || l->outcome > XFER_OUT_INTERRUPTED)
        return bad(why, whylen, "leg phase or outcome unknown");
    if (l->bytes > l->length)
        return bad(why, whylen, "leg bytes beyond its length");
    return 0;
}

int xfer_rec_check(const struct xfer_rec *r, char *why, size_t whylen)
{
    if (r->id == 0 || r->state == XFER_NONE || r->state >= NELEMS(state_names))
        return bad(why, whylen, "no id, or an unknown state");
    if (r->nlegs == 0 || r->nlegs > XFER_LEGS_MAX)
        return bad(why, whylen, "leg count out of range");
    if (!good_text(r->user, sizeof r->user, 1) || !xfer_msg_path_valid(r->path))
        return bad(why, whylen, "user or path not valid");
    if (!good_etag(r->etag) || !good_digest(r->digest) ||
        !good_text(r->decision, sizeof r->decision, 0))
        return bad(why, whylen, "etag, digest or decision not valid");
    for (uint32_t i = 0; i < r->nlegs; i++)
        if (leg_check(&r->legs[i], why, whylen) < 0)
            return -EINVAL;
    return 0;
}

static bool add_u64(cJSON *o, const char *key, uint64_t v)
{
    return cJSON_AddNumberToObject(o, key, (double)v) != NULL;
}

/* A string, or null when empty. */
static bool add_opt(cJSON *o, const char *key, const char *s)
{
    return (s[0] ? cJSON_AddStringToObject(o, key, s) : cJSON_AddNullToObject(o, key)) != NULL;
}

static cJSON *leg_json(const struct xfer_leg *l)
{
    cJSON *o = cJSON_CreateObject();
    if (o && cJSON_AddStringToObject(o, "server", l->server) &&
        add_u64(o, "first_byte", l->first_byte) && add_u64(o, "length", l->length) &&
        add_u64(o, "bytes", l->bytes) && add_u64(o, "redirect_ms", l->redirect_ms) &&
        add_u64(o, "start_ms", l->start_ms) && add_u64(o, "end_ms", l->end_ms) &&
        cJSON_AddStringToObject(o, "outcome", xfer_outcome_str(l->outcome)))
        return o;
    cJSON_Delete(o);
    return NULL;
}

static bool add_legs(cJSON *o, const struct xfer_rec *r)
{
    cJSON *legs = cJSON_AddArrayToObject(o, "legs");
    for (uint32_t i = 0; legs && i < r->nlegs && i < XFER_LEGS_MAX; i++) {
        cJSON *l = leg_json(&r->legs[i]);
        if (l == NULL || !cJSON_AddItemToArray(legs, l)) {
            cJSON_Delete(l);
            return false;
        }
    }
    return legs != NULL;
}

cJSON *xfer_rec_json(const struct xfer_rec *r)
{
    cJSON *o = cJSON_CreateObject();
    if (o && add_u64(o, "id", r->id) && cJSON_AddStringToObject(o, "user", r->user) &&
        cJSON_AddStringToObject(o, "path", r->path) && add_u64(o, "size", r->size) &&
        add_opt(o, "etag", r->etag) && add_opt(o, "digest", r->digest) &&
        cJSON_AddStringToObject(o, "state", xfer_state_str(r->state)) &&
        cJSON_AddStringToObject(o, "decision", r->decision) &&
        add_u64(o, "created_ms", r->created_ms) && add_u64(o, "expires_ms", r->expires_ms) &&
        add_u64(o, "ended_ms", r->ended_ms) && add_legs(o, r))
        return o;
    cJSON_Delete(o);
    return NULL;
}

static int by_id(const void *a, const void *b)
{
    uint64_t x = (*(const struct xfer_rec *const *)a)->id;
    uint64_t y = (*(const struct xfer_rec *const *)b)->id;
    return x < y ? -1 : x > y;
}

/* The rows to list, by ascending id: a malloc'd array (*n of them). */
static const struct xfer_rec **list_rows(const struct xfer_rec *recs, size_t n,
                                         enum xfer_state state, size_t *count)
{
    const struct xfer_rec **rows = malloc((n ? n : 1) * sizeof *rows);
    *count = 0;
    if (rows == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (recs[i].state != XFER_NONE && (state == XFER_NONE || recs[i].state == state))
            rows[(*count)++] = &recs[i];
    qsort(rows, *count, sizeof *rows, by_id);
    return rows;
}

cJSON *xfer_list_json(const struct xfer_rec *recs, size_t n, enum xfer_state state)
{
    size_t count;
    const struct xfer_rec **rows = list_rows(recs, n, state, &count);
    cJSON *o = rows ? cJSON_CreateObject() : NULL;
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "transfers") : NULL;
    if (arr == NULL)
        goto fail;
    for (size_t i = 0; i < count; i++) {
        cJSON *r = xfer_rec_json(rows[i]);
        if (r == NULL || !cJSON_AddItemToArray(arr, r)) {
            cJSON_Delete(r);
            goto fail;
        }
    }
    free(rows);
    return o;
fail:
    cJSON_Delete(o);
    free(rows);
    return NULL;
}

/* ---- the table ---- */

/* An entry of the id hash. The id's hash is kept beside the slot so that
 * probing and deleting compare and move entries without reading the
 * records (2 KB rows, a cache miss each). */
struct xfer_ix {
    uint32_t slot1; /* slot + 1, or 0 for empty */
    uint32_t hash;  /* hash32 of the record's id */
};

/* What the sweeps need of a slot, apart from its row. */
struct slot_info {
    uint64_t expires; /* nonzero: redirected or interrupted, fails then */
    uint32_t running; /* legs in XFER_LEG_RUNNING */
    bool dirty;       /* in the dirty list */
};

struct xfer_table {
    struct xfer_table_opts o;
    uint64_t next_id;
    struct xfer_rec *recs;  /* capacity rows: slot i is recs[i] */
    struct slot_info *info; /* capacity */
    struct xfer_ix *index;  /* id hash: mask + 1 entries */
    uint32_t mask;
    uint32_t *free_slots; /* a stack */
    uint32_t nfree;
    uint32_t *finished; /* a ring of slots in the order they finished */
    uint32_t fin_head, nfin;
    uint32_t *dirty; /* slots changed since the last xfer_table_dirty */
    uint32_t ndirty;
    uint32_t sweep; /* the slot the next xfer_expire starts from */
};

static uint32_t hash32(uint64_t id)
{
    return (uint32_t)((id * 0x9e3779b97f4a7c15ull) >> 32);
}

static void index_put(struct xfer_table *t, uint64_t id, uint32_t slot)
{
    uint32_t hash = hash32(id), h = hash & t->mask;
    while (t->index[h].slot1 != 0)
        h = (h + 1) & t->mask;
    t->index[h] = (struct xfer_ix){slot + 1, hash};
}

/* Where id sits in the hash, or -1. */
static int64_t index_pos(const struct xfer_table *t, uint64_t id)
{
    uint32_t hash = hash32(id);
    for (uint32_t h = hash & t->mask; t->index[h].slot1 != 0; h = (h + 1) & t->mask)
        if (t->index[h].hash == hash && t->recs[t->index[h].slot1 - 1].id == id)
            return h;
    return -1;
}

/* Linear probing's deletion: later entries of the run move back into the
 * hole when their home is not between the hole and where they sit. */
static void index_del(struct xfer_table *t, uint64_t id)
{
    int64_t pos = index_pos(t, id);
    if (pos < 0)
        return;
    uint32_t hole = (uint32_t)pos;
    for (uint32_t j = (hole + 1) & t->mask; t->index[j].slot1 != 0; j = (j + 1) & t->mask) {
        uint32_t home = t->index[j].hash & t->mask;
        if (((j - home) & t->mask) >= ((j - hole) & t->mask)) {
            t->index[hole] = t->index[j];
            hole = j;
        }
    }
    t->index[hole] = (struct xfer_ix){0, 0};
}

/* The rows, every page of them mapped and zeroed now (MAP_POPULATE): the
 * segment's copy is resident from the start too, and left to the first
 * write each fresh slot's page fault (4 KiB zeroed) was ~14 % of the
 * redirects of a new balancer until every slot had been used once. */
static struct xfer_rec *recs_new(uint32_t capacity)
{
    void *m = mmap(NULL, (size_t)capacity * sizeof(struct xfer_rec), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    return m == MAP_FAILED ? NULL : m;
}

static void recs_free(struct xfer_rec *recs, uint32_t capacity)
{
    if (recs != NULL)
        munmap(recs, (size_t)capacity * sizeof *recs);
}

static void mark(struct xfer_table *t, uint32_t slot)
{
    if (!t->info[slot].dirty) {
        t->info[slot].dirty = true;
        t->dirty[t->ndirty++] = slot;
    }
}

int xfer_table_new(xfer_table_t **out, const struct xfer_table_opts *o)
{
    if (o->capacity == 0 || o->capacity > SHM_SLOTS_MAX || (o->policy && o->reg == NULL))
        return -EINVAL;
    struct xfer_table *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -ENOMEM;
    t->o = *o;
    t->next_id = o->next_id ? o->next_id : 1;
    uint32_t hsize = 2;
    while (hsize < 2 * o->capacity)
        hsize *= 2;
    t->mask = hsize - 1;
    t->recs = recs_new(o->capacity);
    t->info = calloc(o->capacity, sizeof *t->info);
    t->index = calloc(hsize, sizeof *t->index);
    t->free_slots = calloc(o->capacity, sizeof *t->free_slots);
    t->finished = calloc(o->capacity, sizeof *t->finished);
    t->dirty = calloc(o->capacity, sizeof *t->dirty);
    if (!t->recs || !t->info || !t->index || !t->free_slots || !t->finished || !t->dirty)
        goto fail;
    for (uint32_t i = 0; i < o->capacity; i++)
        t->free_slots[t->nfree++] = o->capacity - 1 - i; /* slot 0 is used first */
    *out = t;
    return 0;
fail:
    xfer_table_free(t);
    return -ENOMEM;
}

void xfer_table_free(xfer_table_t *t)
{
    if (t == NULL)
        return;
    free(t->dirty);
    free(t->finished);
    free(t->free_slots);
    free(t->index);
    free(t->info);
    recs_free(t->recs, t->o.capacity);
    free(t);
}

uint32_t xfer_table_capacity(const xfer_table_t *t)
{
    return t->o.capacity;
}

uint64_t xfer_table_next_id(const xfer_table_t *t)
{
    return t->next_id;
}

const struct xfer_rec *xfer_table_slot(const xfer_table_t *t, uint32_t slot)
{
    return slot < t->o.capacity && t->recs[slot].state != XFER_NONE ? &t->recs[slot] : NULL;
}

static struct xfer_rec *find(const xfer_table_t *t, uint64_t id)
{
    int64_t pos = index_pos(t, id);
    return pos < 0 ? NULL : &t->recs[t->index[pos].slot1 - 1];
}

const struct xfer_rec *xfer_find(const xfer_table_t *t, uint64_t id)
{
    return find(t, id);
}

size_t xfer_table_dirty(xfer_table_t *t, uint32_t *slots, size_t max)
{
    size_t n = 0;
    while (n < max && t->ndirty > 0) {
        uint32_t s = t->dirty[--t->ndirty];
        t->info[s].dirty = false;
        slots[n++] = s;
    }
    return n;
}

cJSON *xfer_table_json(const xfer_table_t *t, enum xfer_state state)
{
    return xfer_list_json(t->recs, t->o.capacity, state);
}

static uint32_t slot_of(const struct xfer_table *t, const struct xfer_rec *r)
{
    return (uint32_t)(r - t->recs);
}

/* ---- legs and counts ---- */

static uint64_t leg_left(const struct xfer_leg *l)
{
    return l->phase == XFER_LEG_ENDED || l->bytes >= l->length ? 0 : l->length - l->bytes;
}

/* Moves leg l to phase with bytes sent, keeping the policy's counts and
 * the slot's running count in step. */
static void leg_set(struct xfer_table *t, struct xfer_rec *r, struct xfer_leg *l,
                    enum xfer_phase phase, uint64_t bytes)
{
    uint64_t left = leg_left(l);
    int32_t was_pending = l->phase == XFER_LEG_PENDING, was_running = l->phase == XFER_LEG_RUNNING;
    l->phase = phase;
    l->bytes = bytes;
    int32_t dpending = (phase == XFER_LEG_PENDING) - was_pending;
    int32_t drunning = (phase == XFER_LEG_RUNNING) - was_running;
    struct slot_info *info = &t->info[slot_of(t, r)];
    info->running = (uint32_t)((int64_t)info->running + drunning);
    if (t->o.policy)
        policy_count(t->o.policy, t->o.reg, l->server, dpending, drunning,
                     (int64_t)leg_left(l) - (int64_t)left);
}

static void leg_end(struct xfer_table *t, struct xfer_rec *r, struct xfer_leg *l,
                    enum xfer_outcome o, uint64_t bytes, uint64_t now)
{
    leg_set(t, r, l, XFER_LEG_ENDED, bytes);
    l->outcome = o;
    l->end_ms = now;
}

/* Sets the record's state, with its expiry for the states that have one. */
static void set_state(struct xfer_table *t, struct xfer_rec *r, int state, uint64_t now)
{
    r->state = (uint32_t)state;
    bool waits = state == XFER_REDIRECTED || state == XFER_INTERRUPTED;
    r->expires_ms = waits ? now + t->o.ttl_ms : 0;
    t->info[slot_of(t, r)].expires = r->expires_ms;
}

/* done or failed: open legs end (a pending one unfollowed, a running one
 * left by its client for a newer leg), the slot joins the reuse ring and
 * the record goes to on_finish. */
static void finish(struct xfer_table *t, struct xfer_rec *r, int state, uint64_t now)
{
    for (uint32_t i = 0; i < r->nlegs; i++) {
        struct xfer_leg *l = &r->legs[i];
        if (l->phase == XFER_LEG_PENDING)
            leg_end(t, r, l, XFER_OUT_NONE, l->bytes, now);
        else if (l->phase == XFER_LEG_RUNNING)
            leg_end(t, r, l, XFER_OUT_CLIENT_ABORTED, l->bytes, now);
    }
    set_state(t, r, state, now);
    r->ended_ms = now;
    uint32_t slot = slot_of(t, r);
    t->finished[(t->fin_head + t->nfin++) % t->o.capacity] = slot;
    if (t->o.on_finish)
        t->o.on_finish(r, t->o.arg);
}

/* Applies event e (outcome o) to r's state as xfer_next says, finishing r
 * when that is final; a state entered again restarts its expiry (a resume
 * of a redirect). Returns the new state, or -EINVAL (r unchanged). */
static int transit(struct xfer_table *t, struct xfer_rec *r, enum xfer_event e, enum xfer_outcome o,
                   uint64_t now)
{
    int next = xfer_next(r->state, e, o);
    if (next < 0)
        return next;
    if (is_final((uint32_t)next))
        finish(t, r, next, now);
    else
        set_state(t, r, next, now);
    mark(t, slot_of(t, r));
    return next;
}

/* ---- allocation ---- */

size_t xfer_rec_len(const struct xfer_rec *r)
{
    return offsetof(struct xfer_rec, path) + strnlen(r->path, sizeof r->path - 1) + 1;
}

static void release(struct xfer_table *t, uint32_t slot)
{
    index_del(t, t->recs[slot].id);
    memset(&t->recs[slot], 0, xfer_rec_len(&t->recs[slot]));
    t->info[slot] = (struct slot_info){.dirty = t->info[slot].dirty};
    mark(t, slot);
}

/* A free slot, reusing the oldest finished record when none is free; -ENOSPC
 * when every slot is live. */
static int64_t alloc_slot(struct xfer_table *t)
{
    if (t->nfree > 0)
        return t->free_slots[--t->nfree];
    if (t->nfin == 0)
        return -ENOSPC;
    uint32_t slot = t->finished[t->fin_head];
    t->fin_head = (t->fin_head + 1) % t->o.capacity;
    t->nfin--;
    release(t, slot);
    return slot;
}

static int new_check(const struct xfer_new *n)
{
    bool ok = n->user && good_text(n->user, XFER_USER_MAX, 1) && xfer_msg_path_valid(n->path) &&
              (n->etag == NULL || good_etag(n->etag)) &&
              (n->digest == NULL || good_digest(n->digest)) && n->decision &&
              n->decision->server[0];
    return ok ? 0 : -EINVAL;
}

/* The newest leg's fields for a redirect to d's server at first_byte. */
static void leg_open(struct xfer_table *t, struct xfer_rec *r, const struct policy_decision *d,
                     uint64_t first_byte, uint64_t now)
{
    struct xfer_leg *l = &r->legs[r->nlegs++];
    memset(l, 0, sizeof *l);
    text_copy(l->server, sizeof l->server, d->server);
    l->phase = XFER_LEG_ENDED; /* so that leg_set counts it pending */
    l->first_byte = first_byte;
    l->length = r->size - first_byte;
    l->redirect_ms = now;
    leg_set(t, r, l, XFER_LEG_PENDING, 0);
    policy_decision_str(d, r->decision, sizeof r->decision);
}

int xfer_redirect(xfer_table_t *t, const struct xfer_new *n, uint64_t now, uint64_t *id)
{
    if (new_check(n) < 0)
        return -EINVAL;
    int64_t slot = alloc_slot(t);
    if (slot < 0)
        return (int)slot;
    struct xfer_rec *r = &t->recs[slot];
    r->id = t->next_id++;
    text_copy(r->user, sizeof r->user, n->user);
    text_copy(r->path, sizeof r->path, n->path);
    text_copy(r->etag, sizeof r->etag, n->etag);
    text_copy(r->digest, sizeof r->digest, n->digest);
    r->size = n->size;
    r->created_ms = now;
    index_put(t, r->id, (uint32_t)slot);
    leg_open(t, r, n->decision, 0, now);
    transit(t, r, XFER_EV_REDIRECT, XFER_OUT_NONE, now);
    *id = r->id;
    return 0;
}

/* Where a new leg starts: after the bytes of the newest leg that started. */
static uint64_t resume_point(const struct xfer_rec *r)
{
    for (uint32_t i = r->nlegs; i-- > 0;)
        if (r->legs[i].start_ms != 0)
            return r->legs[i].first_byte + r->legs[i].bytes;
    return 0;
}

int xfer_resume(xfer_table_t *t, uint64_t id, const struct policy_decision *d, uint64_t now)
{
    struct xfer_rec *r = find(t, id);
    if (r == NULL)
        return -ENOENT;
    if (xfer_next(r->state, XFER_EV_RESUME, XFER_OUT_NONE) < 0 || d->server[0] == '\0')
        return -EINVAL;
    if (r->nlegs >= XFER_LEGS_MAX)
        return -E2BIG;
    struct xfer_leg *newest = &r->legs[r->nlegs - 1];
    if (newest->phase == XFER_LEG_PENDING)
        leg_end(t, r, newest, XFER_OUT_NONE, 0, now);
    uint64_t from = resume_point(r);
    leg_open(t, r, d, from <= r->size ? from : r->size, now);
    transit(t, r, XFER_EV_RESUME, XFER_OUT_NONE, now);
    return 0;
}

/* ---- what servers report ---- */

/* The newest leg of r on server that message type fits: pending for START;
 * running, or ended by an interruption (the server came back), for the
 * others. */
static struct xfer_leg *leg_for(struct xfer_rec *r, const char *server, enum frame_type type)
{
    for (uint32_t i = r->nlegs; i-- > 0;) {
        struct xfer_leg *l = &r->legs[i];
        if (strcmp(l->server, server) != 0)
            continue;
        if (type == FRAME_XFER_START
                ? l->phase == XFER_LEG_PENDING
                : l->phase == XFER_LEG_RUNNING || l->outcome == XFER_OUT_INTERRUPTED)
            return l;
    }
    return NULL;
}

/* START: the server's word on what it sends is what the record keeps. */
static int apply_start(struct xfer_table *t, struct xfer_rec *r, struct xfer_leg *l,
                       const struct xfer_msg *m, uint64_t now)
{
    if (m->path == NULL || strcmp(m->path, r->path) != 0 || m->first_byte > m->size ||
        m->length > m->size - m->first_byte)
        return -EPROTO;
    r->size = m->size;
    if (m->etag)
        text_copy(r->etag, sizeof r->etag, m->etag);
    if (m->digest)
        text_copy(r->digest, sizeof r->digest, m->digest);
    l->first_byte = m->first_byte;
    l->length = m->length;
    l->start_ms = now;
    leg_set(t, r, l, XFER_LEG_RUNNING, 0);
    return XFER_EV_START;
}

/* PROGRESS and END; a leg an interruption ended runs again. */
static int apply_report(struct xfer_table *t, struct xfer_rec *r, struct xfer_leg *l,
                        const struct xfer_msg *m, uint64_t now)
{
    if (m->bytes > l->length)
        return -EPROTO;
    l->outcome = XFER_OUT_NONE;
    l->end_ms = 0;
    if (m->type == FRAME_XFER_PROGRESS) {
        leg_set(t, r, l, XFER_LEG_RUNNING, m->bytes);
        return XFER_EV_PROGRESS;
    }
    leg_end(t, r, l, m->outcome, m->bytes, now);
    return XFER_EV_END;
}

int xfer_apply(xfer_table_t *t, const char *server, const struct xfer_msg *m, uint64_t now)
{
    struct xfer_rec *r = find(t, m->id);
    if (r == NULL)
        return -ENOENT;
    if (is_final(r->state))
        return -EINVAL;
    struct xfer_leg *l = leg_for(r, server, m->type);
    if (l == NULL)
        return -ESRCH;
    if (m->type == FRAME_XFER_END &&
        (m->outcome == XFER_OUT_NONE || m->outcome == XFER_OUT_INTERRUPTED))
        return -EINVAL;
    int ev =
        m->type == FRAME_XFER_START ? apply_start(t, r, l, m, now) : apply_report(t, r, l, m, now);
    if (ev < 0)
        return ev;
    if (l == &r->legs[r->nlegs - 1])
        transit(t, r, (enum xfer_event)ev, m->outcome, now);
    mark(t, slot_of(t, r));
    return 0;
}

/* ---- sweeps ---- */

size_t xfer_server_down(xfer_table_t *t, const char *server, uint64_t now)
{
    size_t n = 0;
    for (uint32_t s = 0; s < t->o.capacity; s++) {
        if (t->info[s].running == 0)
            continue;
        struct xfer_rec *r = &t->recs[s];
        for (uint32_t i = 0; i < r->nlegs; i++) {
            struct xfer_leg *l = &r->legs[i];
            if (l->phase != XFER_LEG_RUNNING || strcmp(l->server, server) != 0)
                continue;
            leg_end(t, r, l, XFER_OUT_INTERRUPTED, l->bytes, now);
            n++;
            if (i == r->nlegs - 1)
                transit(t, r, XFER_EV_SERVER_DOWN, XFER_OUT_NONE, now);
            mark(t, s);
        }
    }
    return n;
}

size_t xfer_expire(xfer_table_t *t, uint64_t now, uint32_t slots)
{
    size_t n = 0;
    if (slots > t->o.capacity)
        slots = t->o.capacity;
    for (uint32_t k = 0; k < slots; k++) {
        uint32_t s = t->sweep;
        t->sweep = s + 1 < t->o.capacity ? s + 1 : 0;
        if (t->info[s].expires == 0 || t->info[s].expires > now)
            continue;
        n += transit(t, &t->recs[s], XFER_EV_EXPIRE, XFER_OUT_NONE, now) == XFER_FAILED;
    }
    return n;
}

/* ---- loading after a restart ---- */

int xfer_table_load(xfer_table_t *t, uint32_t slot, const struct xfer_rec *r, char *why,
                    size_t whylen)
{
    if (slot >= t->o.capacity)
        return -ERANGE;
    if (xfer_rec_check(r, why, whylen) < 0)
        return -EINVAL;
    if (find(t, r->id) != NULL || t->recs[slot].state != XFER_NONE) {
        snprintf(why, whylen, "id %llu already loaded", (unsigned long long)r->id);
        return -EEXIST;
    }
    t->recs[slot] = *r;
    index_put(t, r->id, slot);
    if (r->id >= t->next_id)
        t->next_id = r->id + 1;
    return 0;
}

static int by_end(const void *a, const void *b, void *arg)
{
    const struct xfer_rec *recs = arg;
    uint64_t x = recs[*(const uint32_t *)a].ended_ms, y = recs[*(const uint32_t *)b].ended_ms;
    return x < y ? -1 : x > y;
}

/* The slot summary, and the policy's counts, of a loaded live record. */
static void recount(struct xfer_table *t, uint32_t s)
{
    struct xfer_rec *r = &t->recs[s];
    t->info[s].expires = r->expires_ms;
    for (uint32_t i = 0; i < r->nlegs; i++) {
        struct xfer_leg *l = &r->legs[i];
        enum xfer_phase phase = l->phase;
        l->phase = XFER_LEG_ENDED; /* counted from nothing */
        leg_set(t, r, l, phase, l->bytes);
    }
}

void xfer_table_loaded(xfer_table_t *t)
{
    if (t->o.policy)
        policy_reset_counts(t->o.policy);
    t->nfree = t->nfin = t->fin_head = 0;
    for (uint32_t i = t->o.capacity; i-- > 0;) {
        const struct xfer_rec *r = &t->recs[i];
        if (r->state == XFER_NONE)
            t->free_slots[t->nfree++] = i;
        else if (is_final(r->state))
            t->finished[t->nfin++] = i;
        else
            recount(t, i);
    }
    qsort_r(t->finished, t->nfin, sizeof *t->finished, by_end, t->recs);
}

/* ---- the transfer log ---- */

int xfer_log_open(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int err = errno;
        log_error("xfer", "event=log_open_failed path=\"%s\" err=\"%s\"", path, strerror(err));
        return -err;
    }
    return fd;
}

/* One write of the whole line: O_APPEND keeps lines whole between writers. */
static int write_line(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

int xfer_log_append(int fd, const struct xfer_rec *r)
{
    cJSON *o = xfer_rec_json(r);
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    char *line = s ? realloc(s, strlen(s) + 2) : NULL;
    int rc = -ENOMEM;
    if (line == NULL)
        goto out;
    s = line;
    size_t len = strlen(line);
    line[len++] = '\n';
    rc = write_line(fd, line, len);
out:
    if (rc < 0)
        log_warn("xfer", "event=log_write_failed id=%llu err=\"%s\"", (unsigned long long)r->id,
                 strerror(-rc));
    free(s);
    cJSON_Delete(o);
    return rc;
}
