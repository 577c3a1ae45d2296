/*
 * ring — one io_uring event loop per I/O thread.
 *
 * The design is simple: every asynchronous operation carries a pointer to a
 * struct ring_op embedded in its owner (a connection, a timer, a listener)
 * as its user_data; when the completion arrives the loop calls op->cb with
 * the result (-errno on failure) and the CQE flags. Owners recover their
 * own struct with container_of. A ring is used by its own thread only,
 * except ring_post(), ring_post_wait(), ring_stop() and ring_wakes(), which
 * any thread may call.
 */
#ifndef CONVOY_RING_H
#define CONVOY_RING_H

#include <linux/time_types.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

struct statx;

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

typedef struct ring ring_t;
struct ring_op;

/* res: the operation's result (byte count, fd, or -errno); flags: CQE flags
 * (IORING_CQE_F_MORE while a multishot operation stays armed). */
typedef void (*ring_cb)(struct ring_op *op, int res, uint32_t flags);

struct ring_op {
    ring_cb cb;
};

/* In a completion's flags: the multishot operation stays armed. */
#define RING_MORE (1u << 1)

/* A one-shot timer; the timespec lives here because the kernel reads it at
 * submission, which may come after ring_timer_arm() returns. */
struct ring_timer {
    struct ring_op op;           /* cb gets -ETIME on expiry, -ECANCELED if cancelled */
    struct __kernel_timespec ts; /* relative expiry */
};

/*
 * Creates a loop with room for `entries` submissions at once. Returns 0, or
 * -errno; -ENOSYS/-EPERM mean io_uring is unavailable on this kernel (or
 * disabled by kernel.io_uring_disabled) and the caller should say so.
 */
int ring_create(ring_t **out, unsigned entries);

/* Sizes of a ring; 0 in any field picks its default. */
struct ring_opts {
    unsigned entries;    /* SQ: submissions queued before one is forced (256; at most 32768) */
    unsigned cq_entries; /* CQ: completions held before the kernel's overflow list (4 x entries) */
    unsigned post_slots; /* ring_post() queue, rounded up to a power of two (1024; at most 2^20) */
};

/*
 * As ring_create(), with every size chosen (o NULL: every default;
 * ring_create() is this with {.entries = entries}). Size the CQ for the
 * operations that may complete at once (about two per open connection):
 * completions beyond it wait in a kernel list and are delivered late, never
 * lost, unless the kernel cannot allocate that list's entries. -EINVAL for a
 * size out of range or cq_entries < entries.
 */
int ring_create_opts(ring_t **out, const struct ring_opts *o);

/* Frees the loop. Operations still in flight are abandoned: owners must have
 * finished or cancelled theirs. */
void ring_destroy(ring_t *r);

/* Runs completions until ring_stop(). Returns 0, or -errno if the ring failed. */
int ring_run(ring_t *r);

/* Makes ring_run() return after the current batch. Any thread. */
void ring_stop(ring_t *r);

/*
 * Runs fn(arg) on the ring's thread, soon, in the order each thread posted.
 * Any thread; never allocates or blocks. What arg points to (a result, a
 * large buffer) belongs to fn once this returns 0; posts still queued when
 * the ring is destroyed run then. The queue is bounded (post_slots):
 * returns 0, or -EAGAIN when it is full, and then nothing was queued. An I/O
 * thread keeps what it wanted to post and retries later; a pool worker may
 * call ring_post_wait() instead. Only the first post after the loop has
 * drained the queue writes the eventfd: the posts that follow it before the
 * next drain share its wake-up.
 */
int ring_post(ring_t *r, void (*fn)(void *arg), void *arg);

/*
 * As ring_post(), but waits up to timeout_ms for room while the queue is
 * full: 0, or -ETIMEDOUT. For threads that may block (pool workers), never
 * for the ring's own thread, which is the one that makes room.
 */
int ring_post_wait(ring_t *r, void (*fn)(void *arg), void *arg, unsigned timeout_ms);

/* How many times ring_post() and ring_stop() have written the eventfd. Any
 * thread; for tests and benchmarks. */
uint64_t ring_wakes(const ring_t *r);

/* Operations. Each completes exactly once through op->cb (a multishot
 * accept completes once per connection while IORING_CQE_F_MORE is set). */
void ring_accept(ring_t *r, struct ring_op *op, int listen_fd);
void ring_connect(ring_t *r, struct ring_op *op, int fd, const struct sockaddr *sa, socklen_t len);
void ring_recv(ring_t *r, struct ring_op *op, int fd, void *buf, size_t len);
void ring_send(ring_t *r, struct ring_op *op, int fd, const void *buf, size_t len);
void ring_read(ring_t *r, struct ring_op *op, int fd, void *buf, size_t len, uint64_t off);
void ring_timer_arm(ring_t *r, struct ring_timer *t, uint64_t ms);

/* Cancels every pending operation whose op is `target`; each still completes
 * (usually with -ECANCELED). */
void ring_cancel(ring_t *r, struct ring_op *target);

/*
 * Blocks SIGINT, SIGTERM and SIGHUP for the calling thread (and the threads
 * it creates afterwards), ignores SIGPIPE, and delivers those signals to
 * fn(arg, signo) on this ring. Call it on the main thread before starting
 * other threads. 0 or -errno.
 */
int ring_watch_signals(ring_t *r, void (*fn)(void *arg, int signo), void *arg);

/* Milliseconds on CLOCK_MONOTONIC: the same clock in every process. */
uint64_t ring_now_ms(void);

/*
 * File and message operations, with the same contract as the ones above.
 * Lengths above 2 GiB - 4 KiB are cut to that (the kernel would cut them
 * too): a short count is an ordinary result. An offset of -1 means the
 * file position (pipes and sockets have no other).
 */
void ring_write(ring_t *r, struct ring_op *op, int fd, const void *buf, size_t len, uint64_t off);

/* Moves up to len bytes from fd_in to fd_out without a copy through user
 * space; one side must be a pipe (whose offset is -1). flags: SPLICE_F_*. */
void ring_splice(ring_t *r, struct ring_op *op, int fd_in, int64_t off_in, int fd_out,
                 int64_t off_out, size_t len, unsigned flags);

/* Sends msg's iovecs as one message (MSG_NOSIGNAL). msg, its iovecs and
 * their buffers stay valid until op->cb runs. */
void ring_sendmsg(ring_t *r, struct ring_op *op, int fd, const struct msghdr *msg);

/* Opens path relative to dirfd (AT_FDCWD: the working directory), always
 * with O_CLOEXEC; res is the new fd. path stays valid until op->cb runs. */
void ring_openat(ring_t *r, struct ring_op *op, int dirfd, const char *path, int flags,
                 mode_t mode);

/* Fills *out with the fields in mask (STATX_*) of path relative to dirfd
 * (flags: AT_*, e.g. AT_EMPTY_PATH with path "" for dirfd itself); res is 0.
 * path and out stay valid until op->cb runs. */
void ring_statx(ring_t *r, struct ring_op *op, int dirfd, const char *path, int flags,
                unsigned mask, struct statx *out);

#endif
