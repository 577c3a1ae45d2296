/*
 * corder — the chain as an array in join order (see corder.h).
 *
 * Each slot keeps the server and the link it was last given. corder_links()
 * computes every server's link afresh (prev and next are its neighbours in
 * the array, behind the sum of the weights after it) and hands out those
 * that differ from what the server was given: a join at the tail changes
 * the old tail's next and everyone's behind; a removal changes its
 * predecessor's next and the behind of everyone before it.
 */
#include "convoy/corder.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    struct corder_server s;
    struct corder_link given; /* epoch 0: never given */
};

struct corder {
    char front[REG_NAME_MAX];
    uint64_t epoch;
    size_t n;
    struct slot slots[CORDER_SERVERS];
};

struct corder *corder_new(const char *front)
{
    struct corder *co = calloc(1, sizeof *co);
    if (co)
        snprintf(co->front, sizeof co->front, "%s", front);
    return co;
}

void corder_free(struct corder *co)
{
    free(co);
}

static long find(const struct corder *co, const char *name)
{
    for (size_t i = 0; i < co->n; i++)
        if (strcmp(co->slots[i].s.name, name) == 0)
            return (long)i;
    return -1;
}

int corder_add(struct corder *co, const char *name, const char *addr, uint32_t weight)
{
    if (weight == 0 || !*name || strlen(name) >= REG_NAME_MAX || strlen(addr) >= REG_ADDR_MAX)
        return -EINVAL;
    if (find(co, name) >= 0)
        return -EEXIST;
    if (co->n == CORDER_SERVERS)
        return -ENOSPC;
    struct slot *sl = &co->slots[co->n++];
    memset(sl, 0, sizeof *sl);
    strcpy(sl->s.name, name);
    strcpy(sl->s.addr, addr);
    sl->s.weight = weight;
    return 0;
}

int corder_set_weight(struct corder *co, const char *name, uint32_t weight)
{
    long i = find(co, name);
    if (i < 0)
        return -ENOENT;
    if (weight == 0)
        return -EINVAL;
    co->slots[i].s.weight = weight;
    return 0;
}

int corder_remove(struct corder *co, const char *name)
{
    long i = find(co, name);
    if (i < 0)
        return -ENOENT;
    memmove(&co->slots[i], &co->slots[i + 1], (co->n - (size_t)i - 1) * sizeof co->slots[0]);
    co->n--;
    return 0;
}

/* The link server i should hold now (epoch left 0). */
static void link_now(const struct corder *co, size_t i, uint32_t behind, struct corder_link *l)
{
    memset(l, 0, sizeof *l);
    strcpy(l->name, co->slots[i].s.name);
    strcpy(l->prev, i == 0 ? co->front : co->slots[i - 1].s.name);
    if (i + 1 < co->n) {
        strcpy(l->next, co->slots[i + 1].s.name);
        strcpy(l->next_addr, co->slots[i + 1].s.addr);
    }
    l->behind = behind;
    l->weight = co->slots[i].s.weight;
}

static bool same_link(const struct corder_link *a, const struct corder_link *b)
{
    return strcmp(a->prev, b->prev) == 0 && strcmp(a->next, b->next) == 0 &&
           strcmp(a->next_addr, b->next_addr) == 0 && a->behind == b->behind &&
           a->weight == b->weight;
}

size_t corder_links(struct corder *co, struct corder_link *out, size_t max)
{
    struct corder_link now[CORDER_SERVERS];
    uint32_t behind = 0;
    for (size_t i = co->n; i-- > 0;) {
        link_now(co, i, behind, &now[i]);
        behind += co->slots[i].s.weight;
    }
    size_t k = 0;
    for (size_t i = 0; i < co->n && k < max; i++) {
        struct slot *sl = &co->slots[i];
        if (sl->given.epoch != 0 && same_link(&sl->given, &now[i]))
            continue;
        if (k == 0)
            co->epoch++;
        now[i].epoch = co->epoch;
        sl->given = now[i];
        out[k++] = now[i];
    }
    return k;
}

size_t corder_count(const struct corder *co)
{
    return co->n;
}

const struct corder_server *corder_at(const struct corder *co, size_t i)
{
    return i < co->n ? &co->slots[i].s : NULL;
}

const struct corder_server *corder_head(const struct corder *co)
{
    return corder_at(co, 0);
}

uint64_t corder_epoch(const struct corder *co)
{
    return co->epoch;
}
