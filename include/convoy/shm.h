/*
 * shm — a named POSIX shared-memory segment guarded by a robust,
 * process-shared mutex, for state that outlives its owner process.
 *
 * The segment "/convoy-<name>" starts with a header (magic, layout version,
 * size, owner pid, mutex) followed by the caller's data. One process owns
 * it (the daemon); others (convoy status) attach, lock and read. A segment
 * whose owner died is recovered, never trusted blindly: the caller's repair
 * function validates the data before anyone uses it.
 */
#ifndef CONVOY_SHM_H
#define CONVOY_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct shm shm_t;

/* How a segment was found by an owner. */
enum shm_origin {
    SHM_FRESH,     /* created now (none existed, or its layout did not match) */
    SHM_CLEAN,     /* re-attached after a clean shutdown of the last owner */
    SHM_RECOVERED, /* the last owner died without closing: data was repaired */
};

const char *shm_origin_str(enum shm_origin o);

/*
 * Validates and mends the data after its writer died (on attach after a
 * crash, or when a lock holder died mid-update). Called with the lock held.
 */
typedef void (*shm_repair_fn)(void *data, size_t size, void *arg);

/*
 * Opens "/convoy-<name>" (mode 0600) as its owner, creating it (zeroed
 * data) when missing, when magic, layout or size differ, or when its creator
 * never finished it (waits up to 1 s first). Refuses with -EBUSY while
 * another live process owns it (same pid and start time; a zombie is dead),
 * even if its layout differs. After a dead owner, repair runs under the lock
 * before this returns (origin SHM_RECOVERED). repair may be NULL and is kept
 * for later lock recoveries; origin may be NULL.
 * name: 1–64 of [A-Za-z0-9._-], size: 1 byte to 1 GiB, else -EINVAL.
 * Returns 0, -EBUSY, -EAGAIN (other owners kept replacing it), or -errno.
 */
int shm_own(shm_t **out, const char *name, uint32_t layout, size_t size, shm_repair_fn repair,
            void *arg, enum shm_origin *origin);

/*
 * Attaches as a reader (no repair function): -ENOENT when missing, -EPROTO
 * when the layout or size differ or the segment was never finished. A reader
 * that inherits a dead holder's lock only logs it; the data stays marked for
 * repair and the owner's next shm_lock() repairs it.
 */
int shm_attach(shm_t **out, const char *name, uint32_t layout, size_t size);

/* The caller's data, 64-byte aligned, size bytes. */
void *shm_data(shm_t *s);

/*
 * Takes the mutex. If its last holder died, runs the repair function (if
 * this handle has one) and marks the mutex consistent before returning.
 * 0, -ENOTRECOVERABLE, or -errno. Not recursive.
 */
int shm_lock(shm_t *s);
void shm_unlock(shm_t *s);

/* Pid of the owner recorded in the segment (0 after a clean close). */
pid_t shm_owner(shm_t *s);

/* Unmaps and frees s (NULL is fine); an owner first records a clean shutdown
 * under the lock. The segment stays. */
void shm_close(shm_t *s);

/* Removes "/convoy-<name>". 0 or -errno. */
int shm_remove(const char *name);

#endif
