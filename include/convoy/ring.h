/*
 * ring — one io_uring event loop per I/O thread.
 *
 * The design is simple: every asynchronous operation carries a pointer to a
 * struct ring_op embedded in its owner (a connection, a listener) as its
 * user_data; when the completion arrives the loop calls op->cb with the
 * result (-errno on failure) and the CQE flags. Owners recover their own
 * struct with container_of. Timers and deferred work are the ring's own,
 * in user space, and cost no submission. A ring is used by its own thread
 * only, except ring_post(), ring_post_wait(), ring_stop() and ring_wakes(),
 * which any thread may call.
 */
#ifndef CONVOY_RING_H
#define CONVOY_RING_H

#include <linux/time_types.h>
#include <stdbool.h>
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

/*
 * A timer of the ring's own: every ring keeps its timers in one heap in user
 * space and sleeps in io_uring_enter no longer than the earliest one, so no
 * timer costs a kernel timeout and starting or stopping one is a few pointer
 * moves, whatever the number armed (a connection's idle timeout is one).
 * The struct lives in its owner; its fields are the ring's.
 */
struct ring_timer {
    void (*cb)(struct ring_timer *t); /* runs once per expiry, on the ring's thread */
    uint64_t at;                      /* ring_now_ms() of the expiry */
    struct ring_timer *child;         /* pairing heap: first child */
    struct ring_timer *next;          /* next sibling */
    struct ring_timer *prev;          /* previous sibling, or the parent for a first child */
    bool active;                      /* in the heap */
};

/* Work to run on the ring's thread after the current batch of completions:
 * how a call hands a callback to the loop instead of running it on its
 * caller's stack. Embedded in its owner. */
struct ring_defer {
    void (*fn)(struct ring_defer *d);
    struct ring_defer *next;
    bool queued;
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

/* A recv into a buffer the ring picks when data arrives (io_uring provided
 * buffers, per ring: 64 of RING_RECV_BUF bytes, and 8 of RING_RECV_BIG for
 * big, which a connection whose last receive filled a small one asks: a
 * stream; small ones when the big ones cannot be made), so a connection
 * waiting for input holds no buffer. res is the byte count; the bytes are
 * at ring_recv_buf(r, flags) until ring_recv_done(r, flags), which the
 * owner calls in its completion once it has taken what it needs (also when
 * it discards the data). -ENOBUFS: every buffer of the group was in use;
 * try again later (ring_defer), they all come back by the end of the
 * batch. Returns 0, or -errno when the ring's buffers cannot be made
 * (nothing was submitted). */
#define RING_RECV_BUF (16u * 1024)
#define RING_RECV_BIG (256u * 1024)
int ring_recv_any(ring_t *r, struct ring_op *op, int fd, bool big);
const uint8_t *ring_recv_buf(ring_t *r, uint32_t flags);
void ring_recv_done(ring_t *r, uint32_t flags);

/* Cancels the operation whose op is `target` (the first one submitted with
 * it: an owner has one of each kind in flight); it still completes, usually
 * with -ECANCELED. */
void ring_cancel(ring_t *r, struct ring_op *target);

/* Starts t: cb(t) runs ms from now. Restarting an active timer moves it. */
void ring_timer_start(ring_t *r, struct ring_timer *t, uint64_t ms,
                      void (*cb)(struct ring_timer *t));

/* Stops t if active; cb will not run. */
void ring_timer_stop(ring_t *r, struct ring_timer *t);

/* Queues d to run fn(d) after the current batch; no-op if already queued. */
void ring_defer(ring_t *r, struct ring_defer *d, void (*fn)(struct ring_defer *d));

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
