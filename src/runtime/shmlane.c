/*
 * shmlane — bodies through one shared-memory object (see shmlane.h). The
 * writer keeps two positions, what it handed out (head) and what the
 * reader released (tail); the reader keeps the regions it took, in order,
 * and releases up to the first one still in use.
 */
#include "convoy/shmlane.h"

#include "convoy/shmbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct shmlane_w {
    shmbuf_t *b;
    uint8_t *map;
    size_t size;
    uint64_t head, tail;
    unsigned refs;
};

struct region {
    uint64_t pos, end;
    bool done;
};

struct shmlane_r {
    shmbuf_t *b;
    const uint8_t *map;
    size_t size;
    uint64_t released; /* told to the writer */
    uint64_t last_end; /* of the last region taken */
    struct region *q;  /* taken and not yet released, a ring of cap */
    size_t first, n, cap;
};

int shmlane_w_new(shmlane_w_t **out, size_t size)
{
    if (size == 0 || size % SHMLANE_ALIGN != 0 || size > SHMLANE_MAX)
        return -EINVAL;
    shmlane_w_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return -ENOMEM;
    int rc = shmbuf_create(&w->b, size);
    if (rc < 0) {
        free(w);
        return rc;
    }
    w->map = shmbuf_data(w->b);
    w->size = size;
    w->refs = 1;
    /* Every page now, while the edge comes up, not one fault at a time
     * under the first job (an old kernel without it faults as it goes). */
    madvise(w->map, size, MADV_POPULATE_WRITE);
    *out = w;
    return 0;
}

void shmlane_w_free(shmlane_w_t *w)
{
    if (w == NULL || --w->refs > 0)
        return;
    shmbuf_free(w->b);
    free(w);
}

shmlane_w_t *shmlane_w_ref(shmlane_w_t *w)
{
    w->refs++;
    return w;
}

const char *shmlane_w_name(const shmlane_w_t *w)
{
    return shmbuf_name(w->b);
}

size_t shmlane_w_size(const shmlane_w_t *w)
{
    return w->size;
}

void *shmlane_w_alloc(shmlane_w_t *w, size_t len, uint64_t *pos)
{
    if (len == 0 || len > w->size)
        return NULL;
    uint64_t p = (w->head + SHMLANE_ALIGN - 1) / SHMLANE_ALIGN * SHMLANE_ALIGN;
    uint64_t off = p % w->size;
    if (off + len > w->size)
        p += w->size - off; /* never wrap a region: start the next lap */
    if (p + len - w->tail > w->size)
        return NULL;
    w->head = p + len;
    *pos = p;
    return w->map + p % w->size;
}

int shmlane_w_released(shmlane_w_t *w, uint64_t upto)
{
    if (upto < w->tail || upto > w->head)
        return -ERANGE;
    w->tail = upto;
    return 0;
}

uint64_t shmlane_w_held(const shmlane_w_t *w)
{
    return w->head - w->tail;
}

int shmlane_r_open(shmlane_r_t **out, const char *name, size_t size, char *why, size_t whylen)
{
    if (size == 0 || size % SHMLANE_ALIGN != 0 || size > SHMLANE_MAX) {
        snprintf(why, whylen, "shmlane: a lane of %zu bytes", size);
        return -EINVAL;
    }
    shmlane_r_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(why, whylen, "shmlane: out of memory");
        return -ENOMEM;
    }
    int rc = shmbuf_open(&r->b, name, size, why, whylen);
    if (rc < 0) {
        free(r);
        return rc;
    }
    r->map = shmbuf_data(r->b);
    r->size = size;
    madvise((void *)r->map, size, MADV_POPULATE_READ); /* as the writer's */
    *out = r;
    return 0;
}

void shmlane_r_free(shmlane_r_t *r)
{
    if (r == NULL)
        return;
    shmbuf_free(r->b);
    free(r->q);
    free(r);
}

const char *shmlane_r_name(const shmlane_r_t *r)
{
    return shmbuf_name(r->b);
}

static int push(shmlane_r_t *r, struct region g)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        struct region *q = malloc(cap * sizeof *q);
        if (q == NULL)
            return -ENOMEM;
        for (size_t i = 0; i < r->n; i++)
            q[i] = r->q[(r->first + i) % r->cap];
        free(r->q);
        r->q = q;
        r->cap = cap;
        r->first = 0;
    }
    r->q[(r->first + r->n++) % r->cap] = g;
    return 0;
}

const uint8_t *shmlane_r_take(shmlane_r_t *r, uint64_t pos, size_t len)
{
    uint64_t off = pos % r->size;
    if (len == 0 || pos < r->last_end || len > r->size - off || pos + len - r->released > r->size)
        return NULL;
    if (push(r, (struct region){pos, pos + len, false}) < 0)
        return NULL;
    r->last_end = pos + len;
    return r->map + off;
}

int64_t shmlane_r_done(shmlane_r_t *r, uint64_t pos)
{
    size_t i = 0;
    while (i < r->n && r->q[(r->first + i) % r->cap].pos != pos)
        i++;
    if (i == r->n)
        return -ENOENT;
    r->q[(r->first + i) % r->cap].done = true;
    uint64_t upto = r->released;
    while (r->n > 0 && r->q[r->first].done) {
        upto = r->q[r->first].end;
        r->first = (r->first + 1) % r->cap;
        r->n--;
    }
    if (upto == r->released)
        return 0;
    r->released = upto;
    return (int64_t)upto;
}
