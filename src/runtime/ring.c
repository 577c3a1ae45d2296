/*
 * ring — one io_uring event loop per I/O thread.
 *
 * Submissions are batched: operations only fill SQEs, and the loop submits
 * them all when it next waits (io_uring_submit_and_wait). When the SQ is
 * full, ring_sqe() submits early and tries again.
 *
 * Timers live in a pairing heap in user space: the loop waits in
 * io_uring_submit_and_wait_timeout() no longer than the earliest expiry, so
 * a timer costs no SQE and no kernel timeout, and none of the kernel's
 * cancel paths ever walks a list of them (one kernel timeout per connection
 * made every cancel slower as connections grew). Deferred work (ring_defer)
 * runs after each batch of completions, before the loop sleeps again.
 *
 * Receives that pick their buffer at completion (ring_recv_any) draw from
 * one io_uring provided-buffer ring per loop, made on first use.
 *
 * Cross-thread work (ring_post, ring_stop) goes through a bounded queue
 * and an eventfd whose read is kept armed on the ring, so a sleeping loop
 * wakes at once. The queue is Dmitry Vyukov's bounded MPMC array used with
 * one consumer: each slot carries a sequence number that says whether it is
 * free for position pos (seq == pos) or holds the item of pos (seq ==
 * pos + 1), so producers claim a position with one CAS and publish with one
 * store, and nothing is allocated or locked. A full queue refuses the post.
 *
 * Wake-ups are batched by the flag wake_pending: a producer writes the
 * eventfd only if it is the one that sets the flag; the loop clears it
 * before draining. Both sides put a seq_cst fence between their store and
 * their load (publish, then read the flag; clear the flag, then read the
 * slots), so either the producer sees the flag clear and writes the
 * eventfd, or the drain that follows the clear sees its item. Threads in
 * ring_post_wait() sleep on a futex word that each drain bumps.
 *
 * Completions with user_data 0 (cancel requests, the eventfd's bookkeeping)
 * are internal and dispatched to nobody.
 *
 * Descriptors given to the ring stay blocking: io_uring completes an
 * O_NONBLOCK file's operation with -EAGAIN instead of waiting for it.
 */
#include "convoy/ring.h"

#include "convoy/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

_Static_assert(RING_MORE == IORING_CQE_F_MORE, "RING_MORE mirrors IORING_CQE_F_MORE");

enum {
    RING_DEFAULT_ENTRIES = 256,
    RING_MAX_ENTRIES = 32768, /* the kernel's IORING_MAX_ENTRIES */
    RING_CQ_PER_SQ = 4,
    RING_DEFAULT_POSTS = 1024,
    RING_MAX_POSTS = 1 << 20,
    RING_IO_MAX = 0x7ffff000, /* the kernel's MAX_RW_COUNT */
};

/* One ring_post() queue slot. */
struct post {
    atomic_size_t seq; /* pos: free for position pos; pos + 1: holds its item */
    void (*fn)(void *arg);
    void *arg;
};

/* One group of the loop's provided buffers for ring_recv_any. */
struct recv_bufs {
    struct io_uring_buf_ring *br; /* shared with the kernel */
    uint8_t *mem;                 /* count buffers of size bytes */
};

/* The groups: many small buffers for the many connections that send a
 * little, and a few big ones for a stream (16 times fewer receives, and
 * fewer window updates sent back, for an upload). A group's buffer ids
 * start at its first_id, so that a completion's id alone names its group.
 * Counts are powers of two; a buffer is held only while its completion
 * runs. */
static const struct recv_group {
    unsigned count, first_id;
    size_t size;
} recv_groups[2] = {
    {64, 0, RING_RECV_BUF},
    {8, 64, RING_RECV_BIG},
};

struct ring {
    struct io_uring uring;
    struct ring_timer *timers; /* pairing heap root, earliest first */
    struct ring_defer *defer_head, *defer_tail;
    struct recv_bufs *bufs[2]; /* by recv_groups; NULL until first used */
    bool stopping;             /* loop thread only */
    int wake_fd;               /* eventfd: ring_post/ring_stop wake the loop */
    uint64_t wake_val;         /* eventfd read target */
    struct ring_op wake_op;    /* keeps a read armed on wake_fd */
    struct post *posts;        /* post_mask + 1 slots */
    size_t post_mask;
    size_t post_head;                      /* loop thread: the next position to run */
    _Alignas(64) atomic_size_t post_tail;  /* producers: the next position to claim */
    _Alignas(64) atomic_bool wake_pending; /* an eventfd write is on its way, not yet drained */
    atomic_bool stop_requested;            /* set by ring_stop from any thread */
    atomic_uint drained;                   /* futex word, bumped by each drain that ran posts */
    atomic_uint post_waiters;              /* threads sleeping in ring_post_wait */
    atomic_uint_fast64_t wakes;            /* eventfd writes, for ring_wakes() */
    int sig_fd;                            /* signalfd, or -1 */
    struct signalfd_siginfo sig_info;
    struct ring_op sig_op;
    void (*sig_fn)(void *arg, int signo);
    void *sig_arg;
};

uint64_t ring_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* An SQE, submitting what is queued when the SQ is full. Never NULL: after a
 * submit the kernel has taken every queued entry. */
static struct io_uring_sqe *ring_sqe(ring_t *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
    while (sqe == NULL) {
        int rc = io_uring_submit(&r->uring);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            log_error("ring", "event=submit_failed err=\"%s\"", strerror(-rc));
            abort(); /* a broken ring is a broken invariant, not a peer's doing */
        }
        sqe = io_uring_get_sqe(&r->uring);
    }
    return sqe;
}

static void wake_arm(ring_t *r);
static void wake(ring_t *r);

/* Takes the item at post_head if it has been published, freeing its slot.
 * Loop thread only. */
static bool post_take(ring_t *r, void (**fn)(void *arg), void **arg)
{
    size_t pos = r->post_head;
    struct post *slot = &r->posts[pos & r->post_mask];
    if (atomic_load_explicit(&slot->seq, memory_order_acquire) != pos + 1)
        return false;
    *fn = slot->fn;
    *arg = slot->arg;
    atomic_store_explicit(&slot->seq, pos + r->post_mask + 1, memory_order_release);
    r->post_head = pos + 1;
    return true;
}

static void futex_wake_all(atomic_uint *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/*
 * Runs what was posted, at most one queue's worth so that busy producers
 * cannot starve the loop's completions: past that bound the loop wakes
 * itself to come back for the rest.
 */
static void run_posts(ring_t *r)
{
    atomic_store_explicit(&r->wake_pending, false, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_exchange(&r->stop_requested, false)) /* consumed, so that a later ring_run runs */
        r->stopping = true;
    size_t n = 0;
    void (*fn)(void *arg);
    void *arg;
    while (n <= r->post_mask && post_take(r, &fn, &arg)) {
        fn(arg);
        n++;
    }
    if (n == 0)
        return;
    atomic_fetch_add(&r->drained, 1);
    if (atomic_load(&r->post_waiters) > 0)
        futex_wake_all(&r->drained);
    if (n > r->post_mask)
        wake(r);
}

static void handle_wake(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    ring_t *r = container_of(op, ring_t, wake_op);
    if (res < 0 && res != -EINTR && res != -ECANCELED)
        log_warn("ring", "event=wake_read_failed err=\"%s\"", strerror(-res));
    run_posts(r);
    wake_arm(r);
}

static void wake_arm(ring_t *r)
{
    ring_read(r, &r->wake_op, r->wake_fd, &r->wake_val, sizeof r->wake_val, 0);
}

/* Writes the eventfd unless a write is already on its way (see the top). */
static void wake(ring_t *r)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&r->wake_pending, memory_order_relaxed) ||
        atomic_exchange(&r->wake_pending, true))
        return;
    atomic_fetch_add_explicit(&r->wakes, 1, memory_order_relaxed);
    uint64_t one = 1;
    while (write(r->wake_fd, &one, sizeof one) < 0) {
        if (errno != EINTR) { /* the counter cannot overflow: one write per drain */
            log_error("ring", "event=wake_failed err=\"%s\"", strerror(errno));
            return;
        }
    }
}

/* Fills in the defaults of o and checks the sizes. */
static int opts_resolve(struct ring_opts *o)
{
    if (o->entries == 0)
        o->entries = RING_DEFAULT_ENTRIES;
    if (o->entries > RING_MAX_ENTRIES)
        return -EINVAL;
    if (o->cq_entries == 0) {
        o->cq_entries = RING_CQ_PER_SQ * o->entries;
        if (o->cq_entries > 2 * RING_MAX_ENTRIES)
            o->cq_entries = 2 * RING_MAX_ENTRIES;
    }
    if (o->cq_entries < o->entries || o->cq_entries > 2 * RING_MAX_ENTRIES)
        return -EINVAL;
    if (o->post_slots == 0)
        o->post_slots = RING_DEFAULT_POSTS;
    return o->post_slots <= RING_MAX_POSTS ? 0 : -EINVAL;
}

static int post_queue_init(ring_t *r, unsigned slots)
{
    size_t n = 1;
    while (n < slots)
        n <<= 1;
    r->posts = calloc(n, sizeof r->posts[0]);
    if (r->posts == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        atomic_init(&r->posts[i].seq, i);
    r->post_mask = n - 1;
    return 0;
}

static int uring_init(ring_t *r, const struct ring_opts *o)
{
    struct io_uring_params p = {
        .flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
        .cq_entries = o->cq_entries,
    };
    int rc = io_uring_queue_init_params(o->entries, &r->uring, &p);
    if (rc == -EINVAL) { /* older kernels lack the last two flags; they are only hints */
        p = (struct io_uring_params){.flags = IORING_SETUP_CQSIZE, .cq_entries = o->cq_entries};
        rc = io_uring_queue_init_params(o->entries, &r->uring, &p);
    }
    return rc;
}

int ring_create_opts(ring_t **out, const struct ring_opts *o)
{
    struct ring_opts sizes = o ? *o : (struct ring_opts){0};
    int rc = opts_resolve(&sizes);
    if (rc < 0)
        return rc;
    /* aligned: the producers' and the wake-up counters have cache lines of their own */
    ring_t *r = aligned_alloc(_Alignof(ring_t), sizeof *r);
    if (r == NULL)
        return -ENOMEM;
    memset(r, 0, sizeof *r);
    if ((rc = post_queue_init(r, sizes.post_slots)) < 0)
        goto fail_free;
    if ((rc = uring_init(r, &sizes)) < 0)
        goto fail_posts;
    r->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (r->wake_fd < 0) {
        rc = -errno;
        goto fail_ring;
    }
    r->sig_fd = -1;
    r->wake_op.cb = handle_wake;
    wake_arm(r);
    *out = r;
    return 0;
fail_ring:
    io_uring_queue_exit(&r->uring);
fail_posts:
    free(r->posts);
fail_free:
    free(r);
    return rc;
}

int ring_create(ring_t **out, unsigned entries)
{
    return ring_create_opts(out, &(struct ring_opts){.entries = entries});
}

static void recv_bufs_free(ring_t *r, unsigned g);

void ring_destroy(ring_t *r)
{
    if (r == NULL)
        return;
    run_posts(r); /* posted closures may own memory; give them their run */
    for (unsigned g = 0; g < 2; g++)
        recv_bufs_free(r, g);
    io_uring_queue_exit(&r->uring);
    close(r->wake_fd);
    if (r->sig_fd >= 0)
        close(r->sig_fd);
    free(r->posts);
    free(r);
}

/* Completions without an owner are ours: cancel requests, and the timeout
 * liburing submits for a timed wait on kernels without EXT_ARG. */
static void dispatch(struct io_uring_cqe *cqe)
{
    struct ring_op *op = io_uring_cqe_get_data(cqe);
    if (op != NULL && cqe->user_data != LIBURING_UDATA_TIMEOUT)
        op->cb(op, cqe->res, cqe->flags);
}

/* ---- timers: a pairing heap ordered by expiry ---- */

/* Joins two heaps; either may be NULL. The later root becomes the first
 * child of the earlier one. */
static struct ring_timer *heap_meld(struct ring_timer *a, struct ring_timer *b)
{
    if (a == NULL)
        return b;
    if (b == NULL)
        return a;
    if (b->at < a->at) {
        struct ring_timer *t = a;
        a = b;
        b = t;
    }
    b->prev = a;
    b->next = a->child;
    if (a->child)
        a->child->prev = b;
    a->child = b;
    a->next = a->prev = NULL;
    return a;
}

/* Melds a list of siblings into one heap: pairs left to right, then the
 * pairs right to left (the two passes that give the heap its bounds).
 * Iterative, since a heap fed only inserts has one long sibling list. */
static struct ring_timer *heap_merge_pairs(struct ring_timer *first)
{
    struct ring_timer *pairs = NULL; /* melded pairs, last first, linked by next */
    while (first) {
        struct ring_timer *a = first, *b = a->next;
        first = b ? b->next : NULL;
        a->next = a->prev = NULL;
        if (b)
            b->next = b->prev = NULL;
        struct ring_timer *m = heap_meld(a, b);
        m->next = pairs;
        pairs = m;
    }
    struct ring_timer *root = NULL;
    while (pairs) {
        struct ring_timer *next = pairs->next;
        pairs->next = NULL;
        root = heap_meld(root, pairs);
        pairs = next;
    }
    return root;
}

/* Takes t out of the heap. */
static void heap_remove(ring_t *r, struct ring_timer *t)
{
    struct ring_timer *sub = heap_merge_pairs(t->child);
    if (t == r->timers) {
        r->timers = sub;
    } else {
        if (t->prev->child == t) /* first child: prev is the parent */
            t->prev->child = t->next;
        else
            t->prev->next = t->next;
        if (t->next)
            t->next->prev = t->prev;
        r->timers = heap_meld(r->timers, sub);
    }
    t->child = t->next = t->prev = NULL;
    t->active = false;
}

void ring_timer_stop(ring_t *r, struct ring_timer *t)
{
    if (t->active)
        heap_remove(r, t);
}

void ring_timer_start(ring_t *r, struct ring_timer *t, uint64_t ms,
                      void (*cb)(struct ring_timer *t))
{
    ring_timer_stop(r, t);
    t->cb = cb;
    t->at = ring_now_ms() + ms;
    t->child = t->next = t->prev = NULL;
    t->active = true;
    r->timers = heap_meld(r->timers, t);
}

/* Runs every timer due by now; one started by a callback for "now" waits
 * for the next turn, so a timer re-armed with 0 cannot spin here. */
static void run_timers(ring_t *r)
{
    uint64_t now = ring_now_ms();
    unsigned budget = 0;
    while (r->timers && r->timers->at <= now && budget++ < 4096) {
        struct ring_timer *t = r->timers;
        heap_remove(r, t);
        t->cb(t);
    }
}

/* ---- deferred work ---- */

void ring_defer(ring_t *r, struct ring_defer *d, void (*fn)(struct ring_defer *d))
{
    if (d->queued)
        return;
    d->fn = fn;
    d->next = NULL;
    d->queued = true;
    if (r->defer_tail)
        r->defer_tail->next = d;
    else
        r->defer_head = d;
    r->defer_tail = d;
}

/* Runs what was queued before this call; what those queue waits for the
 * next turn (which then does not sleep). */
static void run_deferred(ring_t *r)
{
    struct ring_defer *d = r->defer_head, *last = r->defer_tail;
    if (d == NULL)
        return;
    r->defer_head = last->next;
    if (r->defer_head == NULL)
        r->defer_tail = NULL;
    last->next = NULL;
    while (d) {
        struct ring_defer *next = d->next;
        d->queued = false;
        d->fn(d);
        d = next;
    }
}

/* ---- the loop ---- */

/* How long the loop may sleep: until the earliest timer, not at all while
 * deferred work waits, forever (NULL) without either. */
static struct __kernel_timespec *wait_time(ring_t *r, struct __kernel_timespec *ts)
{
    if (r->defer_head == NULL && r->timers == NULL)
        return NULL;
    uint64_t now = ring_now_ms(), ms = 0;
    if (r->defer_head == NULL && r->timers->at > now)
        ms = r->timers->at - now;
    ts->tv_sec = (long long)(ms / 1000u);
    ts->tv_nsec = (long long)(ms % 1000u) * 1000000;
    return ts;
}

int ring_run(ring_t *r)
{
    while (!r->stopping) {
        struct __kernel_timespec ts;
        struct io_uring_cqe *cqe;
        int rc = io_uring_submit_and_wait_timeout(&r->uring, &cqe, 1, wait_time(r, &ts), NULL);
        if (rc == -EBADR) /* the kernel dropped an overflowed completion: say so, go on */
            log_error("ring", "event=cq_overflow_lost");
        else if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME) {
            log_error("ring", "event=wait_failed err=\"%s\"", strerror(-rc));
            return rc;
        }
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&r->uring, head, cqe)
        {
            seen++;
            dispatch(cqe);
        }
        io_uring_cq_advance(&r->uring, seen);
        run_timers(r);
        run_deferred(r);
    }
    r->stopping = false; /* ring_run may be called again, e.g. to drain */
    return 0;
}

void ring_stop(ring_t *r)
{
    atomic_store(&r->stop_requested, true);
    wake(r);
}

int ring_post(ring_t *r, void (*fn)(void *arg), void *arg)
{
    size_t pos = atomic_load_explicit(&r->post_tail, memory_order_relaxed);
    struct post *slot;
    for (;;) {
        slot = &r->posts[pos & r->post_mask];
        size_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
        ptrdiff_t lag = (ptrdiff_t)(seq - pos);
        if (lag < 0) /* the slot still holds the item of pos - capacity */
            return -EAGAIN;
        if (lag > 0) /* another producer claimed pos */
            pos = atomic_load_explicit(&r->post_tail, memory_order_relaxed);
        else if (atomic_compare_exchange_weak_explicit(&r->post_tail, &pos, pos + 1,
                                                       memory_order_relaxed, memory_order_relaxed))
            break;
    }
    slot->fn = fn;
    slot->arg = arg;
    atomic_store_explicit(&slot->seq, pos + 1, memory_order_release);
    wake(r);
    return 0;
}

_Static_assert(sizeof(atomic_uint) == 4, "the futex word is 32 bits");

int ring_post_wait(ring_t *r, void (*fn)(void *arg), void *arg, unsigned timeout_ms)
{
    int rc = ring_post(r, fn, arg);
    if (rc != -EAGAIN)
        return rc;
    uint64_t deadline = ring_now_ms() + timeout_ms;
    atomic_fetch_add(&r->post_waiters, 1);
    for (;;) {
        unsigned seen = atomic_load(&r->drained); /* read before trying: no lost wake-up */
        if ((rc = ring_post(r, fn, arg)) != -EAGAIN)
            break;
        uint64_t now = ring_now_ms();
        if (now >= deadline) {
            rc = -ETIMEDOUT;
            break;
        }
        uint64_t left = deadline - now;
        struct timespec ts = {.tv_sec = (time_t)(left / 1000u),
                              .tv_nsec = (long)(left % 1000u) * 1000000};
        syscall(SYS_futex, &r->drained, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
    }
    atomic_fetch_sub(&r->post_waiters, 1);
    return rc;
}

uint64_t ring_wakes(const ring_t *r)
{
    return atomic_load_explicit(&r->wakes, memory_order_relaxed);
}

void ring_accept(ring_t *r, struct ring_op *op, int listen_fd)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, op);
}

void ring_connect(ring_t *r, struct ring_op *op, int fd, const struct sockaddr *sa, socklen_t len)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_connect(sqe, fd, sa, len);
    io_uring_sqe_set_data(sqe, op);
}

void ring_recv(ring_t *r, struct ring_op *op, int fd, void *buf, size_t len)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_recv(sqe, fd, buf, len, 0);
    io_uring_sqe_set_data(sqe, op);
}

void ring_send(ring_t *r, struct ring_op *op, int fd, const void *buf, size_t len)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, op);
}

/* A length the kernel takes whole (see ring.h). */
static unsigned io_len(size_t len)
{
    return len < RING_IO_MAX ? (unsigned)len : RING_IO_MAX;
}

void ring_read(ring_t *r, struct ring_op *op, int fd, void *buf, size_t len, uint64_t off)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_read(sqe, fd, buf, io_len(len), off);
    io_uring_sqe_set_data(sqe, op);
}

void ring_cancel(ring_t *r, struct ring_op *target)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_cancel(sqe, target, 0);
    io_uring_sqe_set_data(sqe, NULL);
}

/* ---- provided receive buffers ---- */

static void recv_bufs_free(ring_t *r, unsigned g)
{
    struct recv_bufs *b = r->bufs[g];
    if (b == NULL)
        return;
    io_uring_unregister_buf_ring(&r->uring, (int)g);
    munmap(b->br, recv_groups[g].count * sizeof(struct io_uring_buf));
    free(b->mem);
    free(b);
    r->bufs[g] = NULL;
}

static void recv_buf_give(ring_t *r, unsigned g, unsigned id)
{
    const struct recv_group *rg = &recv_groups[g];
    io_uring_buf_ring_add(r->bufs[g]->br, r->bufs[g]->mem + (size_t)(id - rg->first_id) * rg->size,
                          (unsigned)rg->size, (unsigned short)id, io_uring_buf_ring_mask(rg->count),
                          0);
    io_uring_buf_ring_advance(r->bufs[g]->br, 1);
}

static int recv_bufs_make(ring_t *r, unsigned g)
{
    const struct recv_group *rg = &recv_groups[g];
    struct recv_bufs *b = calloc(1, sizeof *b);
    if (b == NULL)
        return -ENOMEM;
    size_t ring_len = rg->count * sizeof(struct io_uring_buf);
    b->br = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    b->mem = malloc(rg->count * rg->size);
    int rc = b->br == MAP_FAILED || b->mem == NULL ? -ENOMEM : 0;
    struct io_uring_buf_reg reg = {
        .ring_addr = (unsigned long)b->br, .ring_entries = rg->count, .bgid = (uint16_t)g};
    if (rc == 0)
        rc = io_uring_register_buf_ring(&r->uring, &reg, 0);
    if (rc < 0) {
        if (b->br != MAP_FAILED)
            munmap(b->br, ring_len);
        free(b->mem);
        free(b);
        return rc;
    }
    io_uring_buf_ring_init(b->br);
    r->bufs[g] = b;
    for (unsigned i = 0; i < rg->count; i++)
        recv_buf_give(r, g, rg->first_id + i);
    return 0;
}

int ring_recv_any(ring_t *r, struct ring_op *op, int fd, bool big)
{
    unsigned g = big && (r->bufs[1] || recv_bufs_make(r, 1) == 0) ? 1 : 0; /* else small */
    int rc = r->bufs[g] == NULL ? recv_bufs_make(r, g) : 0;
    if (rc < 0)
        return rc;
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_recv(sqe, fd, NULL, (unsigned)recv_groups[g].size, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = (uint16_t)g;
    io_uring_sqe_set_data(sqe, op);
    return 0;
}

/* The group of the buffer a completion names, or -1 for none. */
static int recv_group_of(const ring_t *r, uint32_t flags, unsigned *id)
{
    if (!(flags & IORING_CQE_F_BUFFER))
        return -1;
    *id = flags >> IORING_CQE_BUFFER_SHIFT;
    int g = *id >= recv_groups[1].first_id ? 1 : 0;
    return r->bufs[g] ? g : -1;
}

const uint8_t *ring_recv_buf(ring_t *r, uint32_t flags)
{
    unsigned id;
    int g = recv_group_of(r, flags, &id);
    if (g < 0)
        return NULL;
    return r->bufs[g]->mem + (size_t)(id - recv_groups[g].first_id) * recv_groups[g].size;
}

void ring_recv_done(ring_t *r, uint32_t flags)
{
    unsigned id;
    int g = recv_group_of(r, flags, &id);
    if (g >= 0)
        recv_buf_give(r, (unsigned)g, id);
}

static void sig_arm(ring_t *r);

static void handle_signal(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    ring_t *r = container_of(op, ring_t, sig_op);
    if (res == (int)sizeof r->sig_info)
        r->sig_fn(r->sig_arg, (int)r->sig_info.ssi_signo);
    else if (res < 0 && res != -EINTR && res != -ECANCELED)
        log_warn("ring", "event=signalfd_read_failed err=\"%s\"", strerror(-res));
    if (res != -ECANCELED)
        sig_arm(r);
}

static void sig_arm(ring_t *r)
{
    ring_read(r, &r->sig_op, r->sig_fd, &r->sig_info, sizeof r->sig_info, 0);
}

int ring_watch_signals(ring_t *r, void (*fn)(void *arg, int signo), void *arg)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (rc != 0)
        return -rc;
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        return -errno;
    r->sig_fd = signalfd(-1, &set, SFD_CLOEXEC);
    if (r->sig_fd < 0)
        return -errno;
    r->sig_fn = fn;
    r->sig_arg = arg;
    r->sig_op.cb = handle_signal;
    sig_arm(r);
    return 0;
}

void ring_write(ring_t *r, struct ring_op *op, int fd, const void *buf, size_t len, uint64_t off)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_write(sqe, fd, buf, io_len(len), off);
    io_uring_sqe_set_data(sqe, op);
}

void ring_splice(ring_t *r, struct ring_op *op, int fd_in, int64_t off_in, int fd_out,
                 int64_t off_out, size_t len, unsigned flags)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_splice(sqe, fd_in, off_in, fd_out, off_out, io_len(len), flags);
    io_uring_sqe_set_data(sqe, op);
}

void ring_sendmsg(ring_t *r, struct ring_op *op, int fd, const struct msghdr *msg)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_sendmsg(sqe, fd, msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, op);
}

void ring_openat(ring_t *r, struct ring_op *op, int dirfd, const char *path, int flags, mode_t mode)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_openat(sqe, dirfd, path, flags | O_CLOEXEC, mode);
    io_uring_sqe_set_data(sqe, op);
}

void ring_statx(ring_t *r, struct ring_op *op, int dirfd, const char *path, int flags,
                unsigned mask, struct statx *out)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_statx(sqe, dirfd, path, flags, mask, out);
    io_uring_sqe_set_data(sqe, op);
}
