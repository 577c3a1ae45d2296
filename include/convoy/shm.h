/*
 * shm — a named shared-memory segment of fixed-size tables, written by one
 * owner process and read by any number of others without a lock.
 *
 * "/dev/shm/convoy-<name>" holds a header with a table directory (id,
 * version, row size, stride, capacity, offset per table) and then the
 * tables, each an array of slots: a sequence counter (a seqlock), a
 * generation counter and a row. The owner declares its tables at start;
 * a table whose id, version and row size match what the segment holds
 * keeps its rows, another table is made empty, and tables the owner does
 * not declare are carried over untouched. So a table can be added or
 * changed without wiping the others.
 *
 * Only the owner writes (its threads serialise on a process-local mutex);
 * readers map the segment read-only and retry a slot a bounded number of
 * times while it is being written, so nothing another process does to the
 * segment can block either side. A segment that is not this user's, is
 * open to other users, or whose header is damaged is never used: the owner
 * moves it aside (kept in /dev/shm for inspection, logged) and makes a
 * fresh one; a reader refuses it.
 */
#ifndef CONVOY_SHM_H
#define CONVOY_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct shm shm_t;

#define SHM_TABLES_MAX 16         /* entries in the directory */
#define SHM_ROW_MAX    65536      /* bytes in one row */
#define SHM_SLOTS_MAX  (1u << 20) /* slots in one table */

/* How the owner found the segment. */
enum shm_origin {
    SHM_FRESH,     /* created now: none existed, or the one there was moved aside */
    SHM_CLEAN,     /* re-opened after a clean close of the last owner */
    SHM_RECOVERED, /* the last owner died without closing: torn slots were cleared */
};

const char *shm_origin_str(enum shm_origin o);

/* One table as its owner declares it, and as readers look it up. */
struct shm_table {
    uint32_t id;       /* nonzero, unique within the segment */
    uint32_t version;  /* of the row format: a new version starts the table empty */
    uint32_t row_size; /* 1 .. SHM_ROW_MAX bytes */
    uint32_t capacity; /* 1 .. SHM_SLOTS_MAX slots */
};

/* Who owns a segment: pid plus start time, so that a reused pid or a
 * zombie does not read as the owner. */
struct shm_owner {
    pid_t pid;      /* 0 after a clean close */
    uint64_t start; /* clock ticks since boot (/proc/PID/stat field 22), 0 if unknown */
};

/*
 * Opens "/dev/shm/convoy-<name>" as its only writer, holding it (flock) until
 * shm_close. Creates it (mode 0600, every slot free) when missing; moves
 * aside and recreates one that is not owned by this uid, has a mode wider
 * than 0600, or has a damaged header; lays the segment out anew when the
 * declared tables differ from its directory (see above). Slots left
 * half-written by a dead writer are cleared. Rows are the caller's to
 * validate (shm_get every slot).
 * name: 1–64 of [A-Za-z0-9._-]; tables: 1..SHM_TABLES_MAX, else -EINVAL.
 * Returns 0, -EBUSY (another live process owns it), -EPERM (an untrusted
 * segment that cannot be moved aside), -EAGAIN (others kept replacing it),
 * or -errno. origin may be NULL.
 */
int shm_own(shm_t **out, const char *name, const struct shm_table *tables, size_t ntables,
            enum shm_origin *origin);

/*
 * Maps the segment read-only, for reading. -ENOENT when missing, -EPERM when
 * not owned by this uid or open to others, -EPROTO when its header is
 * damaged, or -errno. Never waits.
 */
int shm_attach(shm_t **out, const char *name);

/* The capacity of table t (id, version and row size must match), or
 * -ENOENT when the segment has no such table, -EPROTO when it differs. */
int shm_capacity(shm_t *s, const struct shm_table *t);

/* The owner's process-local write lock: every shm_put and shm_clear runs
 * under it. 0 or -errno. */
int shm_lock(shm_t *s);
void shm_unlock(shm_t *s);

/* Owner only, under shm_lock: stores row (t->row_size bytes) in slot. The
 * generation is bumped when the slot was free. 0, -EPERM for a reader,
 * -ENOENT / -EPROTO for the table, -ERANGE for the slot. */
int shm_put(shm_t *s, const struct shm_table *t, uint32_t slot, const void *row);

/* shm_put of a row whose bytes past its first len are zero, so they are
 * neither copied nor read: readers get them as zeros. -EINVAL when len is
 * past the row size; else as shm_put. */
int shm_put_prefix(shm_t *s, const struct shm_table *t, uint32_t slot, const void *row, size_t len);

/* Owner only, under shm_lock: frees slot (row zeroed). Same returns. */
int shm_clear(shm_t *s, const struct shm_table *t, uint32_t slot);

/*
 * Copies slot into row (t->row_size bytes) without blocking the writer.
 * Returns 1 when the slot holds a row, 0 when it is free (row zeroed),
 * -EAGAIN when it stayed mid-write through every retry (about 1 ms), or the
 * errors of shm_put. gen (may be NULL) gets the slot's generation.
 */
int shm_get(shm_t *s, const struct shm_table *t, uint32_t slot, void *row, uint32_t *gen);

/* The owner recorded in the segment. */
void shm_owner(shm_t *s, struct shm_owner *out);

/* Whether o names a live process: pid exists, is not a zombie and started
 * at o->start (when known). */
bool shm_owner_alive(const struct shm_owner *o);

/* This process as an owner would be recorded. */
void shm_owner_self(struct shm_owner *out);

/* Unmaps and frees s (NULL is fine). The owner first records a clean close
 * (owner pid 0) and drops its hold. The segment stays. */
void shm_close(shm_t *s);

/* Removes "/dev/shm/convoy-<name>". 0 or -errno. */
int shm_remove(const char *name);

#endif
