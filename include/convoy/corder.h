/*
 * corder — the chain order of compute servers at the front-end.
 *
 * Servers stand in join order: a joining server is appended at the tail, a
 * leaving or dead one is unlinked and its predecessor relinked to its
 * successor. After each change, corder_links() says which servers must hear
 * a new CHAIN_SET_NEXT (their prev, next, next's address, their weight or
 * the weight behind them changed), each stamped with one epoch that only
 * grows. The
 * front-end itself is the head's predecessor (corder_head()).
 *
 * Plain data, no I/O, no lock: the front-end's membership thread owns it.
 */
#ifndef CONVOY_CORDER_H
#define CONVOY_CORDER_H

#include "convoy/registry.h"

#include <stddef.h>
#include <stdint.h>

#define CORDER_SERVERS REG_SERVERS

/* One CHAIN_SET_NEXT to send to server name. */
struct corder_link {
    uint64_t epoch;
    char name[REG_NAME_MAX];      /* the server told */
    char prev[REG_NAME_MAX];      /* its predecessor (the front-end's name for the head) */
    char next[REG_NAME_MAX];      /* its successor, "" at the tail */
    char next_addr[REG_ADDR_MAX]; /* the successor's chain address, "" at the tail */
    uint32_t behind;              /* the sum of the weights after it */
    uint32_t weight;              /* its own */
};

/* One server of the chain, in order. */
struct corder_server {
    char name[REG_NAME_MAX];
    char addr[REG_ADDR_MAX]; /* its chain listen address */
    uint32_t weight;         /* at least 1 */
};

struct corder;

/* An empty chain whose head's predecessor is front (the front-end's name).
 * NULL on allocation failure. */
struct corder *corder_new(const char *front);
void corder_free(struct corder *co);

/* Appends name at the tail. 0, -EEXIST (already in the chain), -ENOSPC,
 * -EINVAL (a name or address too long, weight 0). */
int corder_add(struct corder *co, const char *name, const char *addr, uint32_t weight);

/* A new weight for name (the front-end measures the servers as they
 * compute): its link and those of the servers before it change. 0,
 * -ENOENT, -EINVAL (0). */
int corder_set_weight(struct corder *co, const char *name, uint32_t weight);

/* Unlinks name. 0, or -ENOENT. */
int corder_remove(struct corder *co, const char *name);

/*
 * The CHAIN_SET_NEXT messages the changes since the last call call for,
 * in chain order, at most max in out[]: each server whose link differs
 * from the last one it was given (a new server: always). Returns how many;
 * they count as given. The epoch grows by one per call that returns any.
 */
size_t corder_links(struct corder *co, struct corder_link *out, size_t max);

/* Servers in the chain; the i-th in order (NULL past the end). */
size_t corder_count(const struct corder *co);
const struct corder_server *corder_at(const struct corder *co, size_t i);

/* The head (NULL when the chain is empty): whom the front-end dials. */
const struct corder_server *corder_head(const struct corder *co);

/* The epoch of the last links handed out (0 before any). */
uint64_t corder_epoch(const struct corder *co);

#endif
