/*
 * shmlane — a one-way lane of bodies through one shared-memory object
 * (shmbuf.h) between two processes of one host, for the edges of the
 * compute chain whose ends share a host.
 *
 * The writer maps the object once, for the life of its edge, and hands
 * out regions of it in order, like a ring: a body is written in place and
 * only its position travels, in the message that would have carried it,
 * over the authenticated edge that named the object. The reader maps the
 * object once (shmbuf_open's checks: this uid, mode 0600, the announced
 * size, and unlinked at once) and, when it is done with the bodies up to a
 * position, says so in a small message back; the writer then reuses that
 * room. A body costs the writer one copy into the lane (or none when it is
 * produced there) and the reader none: no encryption, no socket copy, no
 * mapping or page fault per body.
 *
 * Positions count bytes handed out since the lane began (a region's place
 * in the object is its position modulo the size); a region never wraps
 * (the writer skips to the start instead) and starts at a SHMLANE_ALIGN
 * boundary, so direct I/O can use it. One thread per end; the two ends
 * share nothing but the memory and the messages.
 */
#ifndef CONVOY_SHMLANE_H
#define CONVOY_SHMLANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHMLANE_ALIGN 4096u
#define SHMLANE_MAX   (1ull << 30) /* the largest lane a reader maps */

typedef struct shmlane_w shmlane_w_t;
typedef struct shmlane_r shmlane_r_t;

/* A writer's lane of size bytes (a multiple of SHMLANE_ALIGN, at most
 * SHMLANE_MAX). 0, or -errno. */
int shmlane_w_new(shmlane_w_t **out, size_t size);
/* Gives up a reference: the last one unmaps the lane, and unlinks the
 * object if no reader took it. NULL: no-op. */
void shmlane_w_free(shmlane_w_t *w);
/* Another reference to w, for whoever writes into a region of it after
 * its owner may have let go (a read from the disk straight into it). */
shmlane_w_t *shmlane_w_ref(shmlane_w_t *w);
const char *shmlane_w_name(const shmlane_w_t *w);
size_t shmlane_w_size(const shmlane_w_t *w);

/* Room for len bytes: where to write them, and their position into *pos;
 * NULL while the reader holds too much of the lane (or len is 0 or more
 * than the lane). */
void *shmlane_w_alloc(shmlane_w_t *w, size_t len, uint64_t *pos);
/* The reader is done with every byte before upto. 0, or -ERANGE when upto
 * is before what it released already or past what was handed out. */
int shmlane_w_released(shmlane_w_t *w, uint64_t upto);
/* Bytes handed out and not yet released. */
uint64_t shmlane_w_held(const shmlane_w_t *w);

/* Maps the lane a writer named, announced as size bytes. 0, or -errno with
 * the reason in why (shmbuf_open's, and -EINVAL for a size out of bounds). */
int shmlane_r_open(shmlane_r_t **out, const char *name, size_t size, char *why, size_t whylen);
void shmlane_r_free(shmlane_r_t *r);
const char *shmlane_r_name(const shmlane_r_t *r);

/* The len bytes at pos, or NULL when they would not lie whole inside the
 * lane, or come before what was released, as no region the writer hands
 * out does. The region is then taken: releases are counted from it. */
const uint8_t *shmlane_r_take(shmlane_r_t *r, uint64_t pos, size_t len);
/* The reader is done with the region taken at pos. Regions may end in any
 * order; returns the position before which every taken region has ended
 * (what to tell the writer), or 0 while that has not moved since the last
 * call. -ENOENT: no region taken there. */
int64_t shmlane_r_done(shmlane_r_t *r, uint64_t pos);

#endif
