/*
 * shmbuf — a body handed to a process on the same host through shared
 * memory instead of a socket: the writer creates a POSIX shared-memory
 * object, fills its mapping and sends only the object's name over the
 * authenticated edge it already has (a chain link, a control connection);
 * the reader opens it, checks it, maps it read-only and unlinks it. So a
 * matrix batch crosses from one process to the next with no encryption,
 * no socket copy and no syscall per byte.
 *
 * Trust comes from the edge: a name is taken only from a peer whose
 * certificate was checked. The reader then refuses an object that is not a
 * regular file of its own uid with mode 0600, or whose size is not the one
 * announced, so another local user can neither plant nor read a body.
 * Names are "/convoy-buf-<creator pid>-<64 random bits>", which lets
 * shmbuf_sweep() remove what a dead creator left behind.
 */
#ifndef CONVOY_SHMBUF_H
#define CONVOY_SHMBUF_H

#include <stdbool.h>
#include <stddef.h>

#define SHMBUF_NAME_MAX 48 /* with the NUL */
#define SHMBUF_HOST_MAX 40 /* a host id, with the NUL */
#define SHMBUF_LEN_MAX  (1ull << 40)

typedef struct shmbuf shmbuf_t;

/*
 * A new object of len (1 .. SHMBUF_LEN_MAX) bytes, mapped for writing. The
 * memory is zero until written. 0, or -errno (-EINVAL for len).
 */
int shmbuf_create(shmbuf_t **out, size_t len);

/*
 * Opens the object a peer named, announced as len bytes: checks the name
 * (shmbuf_name_valid), the owner (this uid), the mode (0600, a regular
 * object) and the size, maps it read-only and unlinks it. 0, or -errno
 * with the reason in why (-EINVAL bad name, -EPERM owner or mode, -EBADMSG
 * size, -ENOENT gone).
 */
int shmbuf_open(shmbuf_t **out, const char *name, size_t len, char *why, size_t whylen);

void *shmbuf_data(const shmbuf_t *b);
size_t shmbuf_len(const shmbuf_t *b);
const char *shmbuf_name(const shmbuf_t *b);

/* Unmaps the buffer; the writer's side also unlinks the object if the
 * reader has not (it died, or never came). NULL is a no-op. */
void shmbuf_free(shmbuf_t *b);

/* Whether name has the shape shmbuf_create gives. */
bool shmbuf_name_valid(const char *name);

/*
 * This host's identity for "same host?" questions: the kernel's boot id
 * (so two containers on one kernel with a shared /dev/shm count as one
 * host only if their boot ids agree, and a reboot is another host). Peers
 * exchange it over their edge; equal ids mean shmbuf can carry bodies.
 * Empty when it cannot be read.
 */
const char *shmbuf_host_id(void);

/* Removes the objects of this uid whose creator pid is no longer running.
 * Returns how many. */
unsigned shmbuf_sweep(void);

#endif
