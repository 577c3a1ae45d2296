/*
 * ring — one io_uring event loop per I/O thread.
 *
 * The design is simple: every asynchronous operation carries a pointer to a
 * struct ring_op embedded in its owner (a connection, a timer, a listener)
 * as its user_data; when the completion arrives the loop calls op->cb with
 * the result (-errno on failure) and the CQE flags. Owners recover their
 * own struct with container_of. A ring is used by its own thread only,
 * except ring_post() and ring_stop(), which any thread may call.
 */
#ifndef CONVOY_RING_H
#define CONVOY_RING_H

#include <linux/time_types.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

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

/* Frees the loop. Operations still in flight are abandoned: owners must have
 * finished or cancelled theirs. */
void ring_destroy(ring_t *r);

/* Runs completions until ring_stop(). Returns 0, or -errno if the ring failed. */
int ring_run(ring_t *r);

/* Makes ring_run() return after the current batch. Any thread. */
void ring_stop(ring_t *r);

/* Runs fn(arg) on the ring's thread, soon. Any thread. 0 or -ENOMEM. */
int ring_post(ring_t *r, void (*fn)(void *arg), void *arg);

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

#endif
