/*
 * ledger — a job's items as a sorted array of runs (see ledger.h).
 *
 * runs[] covers 0 … items-1 without gaps, in order; two neighbours never
 * hold the same (state, sid). Every transition goes through apply(): split
 * at the range's two ends, change each run inside by one rule (enum op),
 * merge neighbours back. Counts by state are a scan of the runs, which are
 * few; per-server counts and the redelegated total are kept as they
 * change.
 */
#include "convoy/ledger.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct run {
    uint64_t first;
    uint64_t count;
    enum ledger_state state;
    uint64_t sid; /* accepted: the session keeping it; else 0 */
};

struct ledger {
    uint64_t items;
    struct run *runs;
    size_t nruns, cap;
    uint64_t *dead; /* sessions presumed dead */
    size_t ndead, capdead;
    uint64_t redelegated;
    uint32_t nservers;
    struct ledger_server_count servers[LEDGER_SERVERS];
};

/* The rule a transition applies to each run of its range. */
enum op {
    OP_SENT,     /* unsent → sent */
    OP_ACCEPTED, /* not done → accepted by sid */
    OP_RESULT,   /* not done → done */
    OP_DOWN,     /* sent, or accepted by sid → unsent (whole job) */
};

struct change {
    enum op op;
    uint64_t sid;
    ledger_done_fn done_fn;
    void *arg;
    uint64_t moved; /* items the rule changed */
};

const char *ledger_state_str(enum ledger_state s)
{
    switch (s) {
    case LEDGER_UNSENT:
        return "unsent";
    case LEDGER_SENT:
        return "sent";
    case LEDGER_ACCEPTED:
        return "accepted";
    case LEDGER_DONE:
        return "done";
    }
    return "unknown";
}

struct ledger *ledger_new(uint64_t count)
{
    if (count == 0)
        return NULL;
    struct ledger *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->runs = malloc(8 * sizeof *l->runs);
    if (!l->runs) {
        free(l);
        return NULL;
    }
    l->cap = 8;
    l->items = count;
    l->runs[0] = (struct run){.first = 0, .count = count, .state = LEDGER_UNSENT};
    l->nruns = 1;
    return l;
}

void ledger_free(struct ledger *l)
{
    if (!l)
        return;
    free(l->runs);
    free(l->dead);
    free(l);
}

uint64_t ledger_items(const struct ledger *l)
{
    return l->items;
}

/* Index of the run holding item (item < items). */
static size_t find_run(const struct ledger *l, uint64_t item)
{
    size_t lo = 0, hi = l->nruns;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->runs[mid].first <= item)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Makes pos the first item of a run (0 < pos < items); its index. */
static long split_at(struct ledger *l, uint64_t pos)
{
    size_t i = find_run(l, pos);
    if (l->runs[i].first == pos)
        return (long)i;
    if (l->nruns == l->cap) {
        struct run *r = realloc(l->runs, 2 * l->cap * sizeof *r);
        if (!r)
            return -ENOMEM;
        l->runs = r;
        l->cap *= 2;
    }
    memmove(&l->runs[i + 2], &l->runs[i + 1], (l->nruns - i - 1) * sizeof *l->runs);
    struct run *a = &l->runs[i], *b = &l->runs[i + 1];
    *b = *a;
    b->first = pos;
    b->count = a->first + a->count - pos;
    a->count = pos - a->first;
    l->nruns++;
    return (long)i + 1;
}

/* Merges equal neighbours among runs lo … hi (inclusive, clamped). */
static void merge_runs(struct ledger *l, size_t lo, size_t hi)
{
    if (lo > 0)
        lo--;
    if (hi >= l->nruns)
        hi = l->nruns - 1;
    size_t out = lo;
    for (size_t i = lo + 1; i <= hi; i++) {
        struct run *p = &l->runs[out], *r = &l->runs[i];
        if (p->state == r->state && p->sid == r->sid)
            p->count += r->count;
        else
            l->runs[++out] = *r;
    }
    size_t removed = hi - out;
    memmove(&l->runs[out + 1], &l->runs[hi + 1], (l->nruns - hi - 1) * sizeof *l->runs);
    l->nruns -= removed;
}

/* The new state of run r under c, or -1 when the rule leaves it alone. */
static int rule(const struct change *c, const struct run *r)
{
    switch (c->op) {
    case OP_SENT:
        return r->state == LEDGER_UNSENT ? LEDGER_SENT : -1;
    case OP_ACCEPTED:
        if (r->state == LEDGER_DONE || (r->state == LEDGER_ACCEPTED && r->sid == c->sid))
            return -1;
        return LEDGER_ACCEPTED;
    case OP_RESULT:
        return r->state == LEDGER_DONE ? -1 : LEDGER_DONE;
    case OP_DOWN:
        if (r->state == LEDGER_SENT || (r->state == LEDGER_ACCEPTED && r->sid == c->sid))
            return LEDGER_UNSENT;
        return -1;
    }
    return -1;
}

/* Applies c to runs lo … hi-1; 0 or done_fn's negative return. */
static int change_runs(struct ledger *l, struct change *c, size_t lo, size_t hi)
{
    int rc = 0;
    for (size_t i = lo; i < hi; i++) {
        struct run *r = &l->runs[i];
        int to = rule(c, r);
        if (to < 0)
            continue;
        r->state = (enum ledger_state)to;
        r->sid = to == LEDGER_ACCEPTED ? c->sid : 0;
        c->moved += r->count;
        if (to == LEDGER_DONE && c->done_fn && rc == 0)
            rc = c->done_fn(c->arg, r->first, (uint32_t)r->count);
    }
    return rc;
}

/* Applies c to items first … first+count-1. */
static int apply(struct ledger *l, uint64_t first, uint64_t count, struct change *c)
{
    if (count == 0 || first >= l->items || count > l->items - first)
        return -ERANGE;
    long lo = first == 0 ? 0 : split_at(l, first);
    if (lo < 0)
        return (int)lo;
    long hi = first + count == l->items ? (long)l->nruns : split_at(l, first + count);
    if (hi < 0)
        return (int)hi;
    int rc = change_runs(l, c, (size_t)lo, (size_t)hi);
    merge_runs(l, (size_t)lo, (size_t)hi);
    return rc;
}

int ledger_next_unsent(const struct ledger *l, uint32_t max, uint64_t *first, uint32_t *count)
{
    for (size_t i = 0; i < l->nruns && max > 0; i++) {
        const struct run *r = &l->runs[i];
        if (r->state != LEDGER_UNSENT)
            continue;
        *first = r->first;
        *count = r->count < max ? (uint32_t)r->count : max;
        return 1;
    }
    return 0;
}

int ledger_sent(struct ledger *l, uint64_t first, uint32_t count)
{
    struct change c = {.op = OP_SENT};
    return apply(l, first, count, &c);
}

bool ledger_session_dead(const struct ledger *l, uint64_t sid)
{
    for (size_t i = 0; i < l->ndead; i++)
        if (l->dead[i] == sid)
            return true;
    return false;
}

int ledger_accepted(struct ledger *l, uint64_t first, uint32_t count, uint64_t sid)
{
    if (sid == 0)
        return -EINVAL;
    if (ledger_session_dead(l, sid))
        return 0;
    struct change c = {.op = OP_ACCEPTED, .sid = sid};
    return apply(l, first, count, &c);
}

/* The per-server row for name: a new one, or "other" once all are used. */
static struct ledger_server_count *server_row(struct ledger *l, const char *name)
{
    for (uint32_t i = 0; i < l->nservers; i++)
        if (strcmp(l->servers[i].name, name) == 0)
            return &l->servers[i];
    if (l->nservers == LEDGER_SERVERS) {
        struct ledger_server_count *last = &l->servers[LEDGER_SERVERS - 1];
        strcpy(last->name, "other");
        return last;
    }
    struct ledger_server_count *s = &l->servers[l->nservers++];
    snprintf(s->name, sizeof s->name, "%s", name);
    return s;
}

long ledger_result(struct ledger *l, uint64_t first, uint32_t count, uint64_t sid,
                   const char *server, ledger_done_fn done_fn, void *arg)
{
    if (sid != 0 && ledger_session_dead(l, sid))
        return 0;
    struct change c = {.op = OP_RESULT, .done_fn = done_fn, .arg = arg};
    int rc = apply(l, first, count, &c);
    if (c.moved > 0)
        server_row(l, server ? server : "")->done += c.moved;
    return rc < 0 ? rc : (long)c.moved;
}

long ledger_server_down(struct ledger *l, uint64_t sid)
{
    if (!ledger_session_dead(l, sid)) {
        if (l->ndead == l->capdead) {
            size_t cap = l->capdead ? 2 * l->capdead : 4;
            uint64_t *d = realloc(l->dead, cap * sizeof *d);
            if (!d)
                return -ENOMEM;
            l->dead = d;
            l->capdead = cap;
        }
        l->dead[l->ndead++] = sid;
    }
    struct change c = {.op = OP_DOWN, .sid = sid};
    int rc = apply(l, 0, l->items, &c);
    if (rc < 0)
        return rc;
    l->redelegated += c.moved;
    return (long)c.moved;
}

long ledger_unsend(struct ledger *l)
{
    struct change c = {.op = OP_DOWN, .sid = 0}; /* no session is 0: sent items only */
    int rc = apply(l, 0, l->items, &c);
    if (rc < 0)
        return rc;
    l->redelegated += c.moved;
    return (long)c.moved;
}

enum ledger_state ledger_item(const struct ledger *l, uint64_t item, uint64_t *sid)
{
    const struct run *r = &l->runs[find_run(l, item < l->items ? item : l->items - 1)];
    if (sid)
        *sid = r->sid;
    return r->state;
}

void ledger_counts(const struct ledger *l, struct ledger_counts *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < l->nruns; i++) {
        const struct run *r = &l->runs[i];
        uint64_t *slot[] = {&out->unsent, &out->sent, &out->accepted, &out->done};
        *slot[r->state] += r->count;
    }
    out->redelegated = l->redelegated;
    out->runs = (uint32_t)l->nruns;
    out->nservers = l->nservers;
    memcpy(out->servers, l->servers, sizeof out->servers);
}

bool ledger_complete(const struct ledger *l)
{
    return l->nruns == 1 && l->runs[0].state == LEDGER_DONE;
}
