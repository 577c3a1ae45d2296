/*
 * policy — which file server gets the next transfer.
 *
 * The design is simple: one pass over the server table collects the
 * candidates (up, not suspect, under its announced capacity, accepted by
 * the caller's filter, not the failed server of a resume) starting at the row after the last one
 * chosen, and each policy is a comparison between two candidates or a
 * walk over them. The
 * scan's starting point is what breaks the last tie, so servers that stay
 * equal take turns. Ratios (count / weight) are compared by cross
 * multiplication in 128 bits, so there is no float and no overflow.
 */
#include "convoy/policy.h"

#include "convoy/text.h"

#include <errno.h>
#include <string.h>

static const char *const kind_names[] = {
    [POLICY_LEAST_CONN] = "least-conn",   [POLICY_LEAST_BYTES] = "least-bytes",
    [POLICY_WEIGHTED] = "weighted",       [POLICY_P2C] = "p2c",
    [POLICY_ROUND_ROBIN] = "round-robin",
};

#define NKINDS (sizeof kind_names / sizeof kind_names[0])

const char *policy_str(enum policy_kind k)
{
    return (unsigned)k < NKINDS ? kind_names[k] : "unknown";
}

int policy_parse(const char *s, enum policy_kind *out)
{
    for (size_t i = 0; i < NKINDS; i++)
        if (strcmp(s, kind_names[i]) == 0) {
            *out = (enum policy_kind)i;
            return 0;
        }
    return -EINVAL;
}

void policy_init(struct policy_state *ps, enum policy_kind kind, uint64_t seed)
{
    memset(ps, 0, sizeof *ps);
    ps->kind = kind;
    ps->rng = seed ^ 0x9e3779b97f4a7c15ull;
    if (ps->rng == 0)
        ps->rng = 1;
}

void policy_reset_counts(struct policy_state *ps)
{
    memset(ps->rows, 0, sizeof ps->rows);
}

/* The counts of row i, started afresh when the row now holds another
 * server than they were counted for. */
static struct policy_count *count_of(struct policy_state *ps, const struct reg_table *reg, size_t i)
{
    struct policy_count *c = &ps->rows[i];
    if (strcmp(c->name, reg->rows[i].name) != 0) {
        memset(c, 0, sizeof *c);
        memcpy(c->name, reg->rows[i].name, sizeof c->name);
    }
    return c;
}

static uint32_t sat_add32(uint32_t v, int32_t d)
{
    int64_t r = (int64_t)v + d;
    return r < 0 ? 0 : r > UINT32_MAX ? UINT32_MAX : (uint32_t)r;
}

static uint64_t sat_add64(uint64_t v, int64_t d)
{
    uint64_t m = 0 - (uint64_t)d; /* |d| for d < 0, INT64_MIN included */
    if (d < 0)
        return m > v ? 0 : v - m;
    return UINT64_MAX - v < (uint64_t)d ? UINT64_MAX : v + (uint64_t)d;
}

void policy_count(struct policy_state *ps, const struct reg_table *reg, const char *server,
                  int32_t dpending, int32_t dactive, int64_t dbytes)
{
    const struct reg_server *r = reg_find(reg, server);
    if (r == NULL)
        return;
    struct policy_count *c = count_of(ps, reg, (size_t)(r - reg->rows));
    c->pending = sat_add32(c->pending, dpending);
    c->active = sat_add32(c->active, dactive);
    c->outstanding = sat_add64(c->outstanding, dbytes);
}

void policy_suspect(struct policy_state *ps, const struct reg_table *reg, const char *server)
{
    const struct reg_server *r = reg_find(reg, server);
    if (r == NULL)
        return;
    struct policy_count *c = count_of(ps, reg, (size_t)(r - reg->rows));
    c->suspect = true;
    c->suspect_seen = r->last_seen_ms;
}

/* ---- candidates ---- */

/* One candidate as the comparisons see it. */
struct cand {
    uint32_t row;
    uint32_t weight; /* >= 1 */
    uint64_t conns;  /* active + pending */
    uint64_t bytes;  /* outstanding */
    double load1;
    struct policy_count *c;
};

static uint32_t weight_of(const struct reg_server *r)
{
    return r->weight ? r->weight : 1;
}

/* Whether row i may be chosen; a suspect heard from since is cleared. */
static bool is_candidate(struct policy_state *ps, const struct reg_table *reg, size_t i,
                         const struct policy_request *req)
{
    const struct reg_server *r = &reg->rows[i];
    if (r->state != REG_UP)
        return false;
    struct policy_count *c = count_of(ps, reg, i);
    if (c->suspect && c->suspect_seen == r->last_seen_ms)
        return false;
    c->suspect = false;
    if (r->capacity && c->pending + c->active >= r->capacity)
        return false; /* as many transfers as it said it takes */
    if (req->avoid && strcmp(r->name, req->avoid) == 0)
        return false;
    return req->filter == NULL || req->filter(r, i, req->arg);
}

/* Fills cands (REG_SERVERS of them) in scan order from ps->next. */
static size_t collect(struct policy_state *ps, const struct reg_table *reg,
                      const struct policy_request *req, struct cand *cands)
{
    size_t n = 0;
    for (size_t k = 0; k < REG_SERVERS; k++) {
        size_t i = (ps->next + k) % REG_SERVERS;
        const struct reg_server *r = &reg->rows[i];
        if (!is_candidate(ps, reg, i, req))
            continue;
        struct policy_count *c = &ps->rows[i];
        cands[n++] = (struct cand){
            .row = (uint32_t)i,
            .weight = weight_of(r),
            .conns = (uint64_t)c->active + c->pending,
            .bytes = c->outstanding,
            .load1 = r->load.load1,
            .c = c,
        };
    }
    return n;
}

/* Sign of a/wa - b/wb. */
static int ratio_cmp(uint64_t a, uint32_t wa, uint64_t b, uint32_t wb)
{
    unsigned __int128 l = (unsigned __int128)a * wb, r = (unsigned __int128)b * wa;
    return l < r ? -1 : l > r ? 1 : 0;
}

static int load_cmp(const struct cand *a, const struct cand *b)
{
    return a->load1 < b->load1 ? -1 : a->load1 > b->load1 ? 1 : 0;
}

/* least-conn's order: connections per weight, then load, then bytes. */
static int conn_cmp(const struct cand *a, const struct cand *b)
{
    int c = ratio_cmp(a->conns, a->weight, b->conns, b->weight);
    if (c == 0)
        c = load_cmp(a, b);
    return c ? c : ratio_cmp(a->bytes, a->weight, b->bytes, b->weight);
}

/* least-bytes' order: bytes per weight, then connections, then load. */
static int bytes_cmp(const struct cand *a, const struct cand *b)
{
    int c = ratio_cmp(a->bytes, a->weight, b->bytes, b->weight);
    if (c == 0)
        c = ratio_cmp(a->conns, a->weight, b->conns, b->weight);
    return c ? c : load_cmp(a, b);
}

/* The first candidate no other beats: the scan order breaks ties. */
static size_t pick_min(const struct cand *cands, size_t n,
                       int (*cmp)(const struct cand *, const struct cand *))
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (cmp(&cands[i], &cands[best]) < 0)
            best = i;
    return best;
}

/* nginx's smooth weighted round-robin: every candidate gains its weight,
 * the highest is chosen and loses the sum. Over any run of sum(weights)
 * choices each server is chosen weight times, interleaved. */
static size_t pick_weighted(struct cand *cands, size_t n)
{
    int64_t total = 0;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        cands[i].c->current += cands[i].weight;
        total += cands[i].weight;
        if (cands[i].c->current > cands[best].c->current)
            best = i;
    }
    cands[best].c->current -= total;
    return best;
}

/* xorshift64*: small, seeded, and good enough to pick two rows. */
static uint64_t rng_next(struct policy_state *ps)
{
    uint64_t x = ps->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    ps->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* Two distinct candidates at random; the lighter wins (the first drawn on
 * a tie). */
static size_t pick_p2c(struct policy_state *ps, const struct cand *cands, size_t n)
{
    if (n == 1)
        return 0;
    size_t a = (size_t)(rng_next(ps) % n);
    size_t b = (size_t)(rng_next(ps) % (n - 1));
    if (b >= a)
        b++;
    return conn_cmp(&cands[b], &cands[a]) < 0 ? b : a;
}

static size_t pick(struct policy_state *ps, struct cand *cands, size_t n)
{
    switch (ps->kind) {
    case POLICY_LEAST_BYTES:
        return pick_min(cands, n, bytes_cmp);
    case POLICY_WEIGHTED:
        return pick_weighted(cands, n);
    case POLICY_P2C:
        return pick_p2c(ps, cands, n);
    case POLICY_ROUND_ROBIN:
        return 0; /* the scan starts after the last one chosen */
    case POLICY_LEAST_CONN:
    default:
        return pick_min(cands, n, conn_cmp);
    }
}

int policy_choose(struct policy_state *ps, const struct reg_table *reg,
                  const struct policy_request *req, struct policy_decision *d)
{
    struct cand cands[REG_SERVERS];
    size_t n = collect(ps, reg, req, cands);
    if (n == 0)
        return -EAGAIN;
    const struct cand *c = &cands[pick(ps, cands, n)];
    ps->next = (c->row + 1) % REG_SERVERS;
    *d = (struct policy_decision){
        .kind = ps->kind,
        .row = c->row,
        .active = c->conns > UINT32_MAX ? UINT32_MAX : (uint32_t)c->conns,
        .outstanding = c->bytes,
        .weight = c->weight,
        .candidates = (uint32_t)n,
    };
    memcpy(d->server, reg->rows[c->row].name, sizeof d->server);
    return (int)c->row;
}

/* Without printf: this runs for every redirect. */
int policy_decision_str(const struct policy_decision *d, char *buf, size_t len)
{
    size_t n = 0;
    text_cat(buf, len, &n, "policy=");
    text_cat(buf, len, &n, policy_str(d->kind));
    text_cat(buf, len, &n, " server=");
    text_cat(buf, len, &n, d->server);
    text_cat(buf, len, &n, " active=");
    text_cat_u64(buf, len, &n, d->active);
    text_cat(buf, len, &n, " weight=");
    text_cat_u64(buf, len, &n, d->weight);
    text_cat(buf, len, &n, " candidates=");
    text_cat_u64(buf, len, &n, d->candidates);
    if (d->kind == POLICY_LEAST_BYTES) {
        text_cat(buf, len, &n, " outstanding=");
        text_cat_u64(buf, len, &n, d->outstanding);
    }
    return (int)n;
}
