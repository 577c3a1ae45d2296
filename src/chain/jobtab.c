/*
 * jobtab — the job and chain tables on shm (see jobtab.h).
 *
 * A thin layer: the tables' shapes, the checks a row read from the
 * segment must pass, and the chain stored as rows 0 … n-1 with the rest
 * freed, so a reader sees the order by reading slots until a free one.
 */
#include "convoy/jobtab.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jobtab {
    shm_t *shm;
    uint32_t cap;
};

const char *jobtab_state_str(enum jobtab_state s)
{
    switch (s) {
    case JOBTAB_WAITING:
        return "waiting";
    case JOBTAB_RUNNING:
        return "running";
    case JOBTAB_DONE:
        return "done";
    case JOBTAB_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}

static int refuse(char *why, size_t whylen, const char *reason)
{
    if (why)
        snprintf(why, whylen, "%s", reason);
    return -EPROTO;
}

int jobtab_row_check(const struct jobtab_row *r, char *why, size_t whylen)
{
    if (r->id == 0 || r->items == 0)
        return refuse(why, whylen, "id or items 0");
    if (r->state > JOBTAB_CANCELLED)
        return refuse(why, whylen, "unknown state");
    if (r->ok > r->items || r->singular > r->items || r->invalid > r->items ||
        r->done != r->ok + r->singular + r->invalid || r->done > r->items)
        return refuse(why, whylen, "counts do not add up");
    if (!memchr(r->user, 0, sizeof r->user) || !memchr(r->op, 0, sizeof r->op))
        return refuse(why, whylen, "unterminated string");
    return 0;
}

int jobtab_server_check(const struct jobtab_server *s)
{
    if (!memchr(s->name, 0, sizeof s->name) || !memchr(s->addr, 0, sizeof s->addr) || !s->name[0] ||
        !s->addr[0])
        return -EPROTO;
    return 0;
}

/* Clears every job row that does not pass its check (a previous owner's
 * torn or foreign rows). */
static void clear_bad_rows(struct jobtab *jt)
{
    struct jobtab_row r;
    for (uint32_t i = 0; i < jt->cap; i++) {
        int got = shm_get(jt->shm, &JOBTAB_JOB_TABLE(jt->cap), i, &r, NULL);
        if (got < 0 || (got == 1 && jobtab_row_check(&r, NULL, 0) < 0))
            jobtab_put(jt, i, NULL);
    }
}

int jobtab_own(const char *name, uint32_t cap, struct jobtab **out)
{
    struct jobtab *jt = calloc(1, sizeof *jt);
    if (!jt)
        return -ENOMEM;
    jt->cap = cap;
    const struct shm_table tables[] = {JOBTAB_JOB_TABLE(cap), JOBTAB_CHAIN_TABLE};
    int rc = shm_own(&jt->shm, name, tables, 2, NULL);
    if (rc < 0)
        goto fail;
    clear_bad_rows(jt);
    if ((rc = jobtab_chain_put(jt, NULL, 0)) < 0)
        goto fail;
    *out = jt;
    return 0;
fail:
    jobtab_close(jt);
    return rc;
}

int jobtab_attach(const char *name, struct jobtab **out)
{
    struct jobtab *jt = calloc(1, sizeof *jt);
    if (!jt)
        return -ENOMEM;
    int rc = shm_attach(&jt->shm, name);
    if (rc < 0)
        goto fail;
    if ((rc = shm_capacity(jt->shm, &JOBTAB_JOB_TABLE(0))) < 0 ||
        shm_capacity(jt->shm, &JOBTAB_CHAIN_TABLE) < 0) {
        rc = -ENOENT;
        goto fail;
    }
    jt->cap = (uint32_t)rc;
    *out = jt;
    return 0;
fail:
    jobtab_close(jt);
    return rc;
}

void jobtab_close(struct jobtab *jt)
{
    if (!jt)
        return;
    shm_close(jt->shm);
    free(jt);
}

uint32_t jobtab_capacity(const struct jobtab *jt)
{
    return jt->cap;
}

int jobtab_put(struct jobtab *jt, uint32_t slot, const struct jobtab_row *r)
{
    const struct shm_table t = JOBTAB_JOB_TABLE(jt->cap);
    int rc = shm_lock(jt->shm);
    if (rc < 0)
        return rc;
    rc = r ? shm_put(jt->shm, &t, slot, r) : shm_clear(jt->shm, &t, slot);
    shm_unlock(jt->shm);
    return rc;
}

int jobtab_chain_put(struct jobtab *jt, const struct jobtab_server *servers, size_t n)
{
    int rc = shm_lock(jt->shm);
    if (rc < 0)
        return rc;
    for (uint32_t i = 0; i < REG_SERVERS && rc == 0; i++)
        rc = i < n ? shm_put(jt->shm, &JOBTAB_CHAIN_TABLE, i, &servers[i])
                   : shm_clear(jt->shm, &JOBTAB_CHAIN_TABLE, i);
    shm_unlock(jt->shm);
    return rc;
}

int jobtab_get(struct jobtab *jt, uint32_t slot, struct jobtab_row *r)
{
    int got = shm_get(jt->shm, &JOBTAB_JOB_TABLE(jt->cap), slot, r, NULL);
    if (got == 1 && jobtab_row_check(r, NULL, 0) < 0)
        return 0;
    return got;
}

size_t jobtab_chain(struct jobtab *jt, struct jobtab_server *out, size_t max)
{
    size_t n = 0;
    while (n < max && n < REG_SERVERS &&
           shm_get(jt->shm, &JOBTAB_CHAIN_TABLE, (uint32_t)n, &out[n], NULL) == 1 &&
           jobtab_server_check(&out[n]) == 0)
        n++;
    return n;
}
