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
 * Cross-thread work (ring_post, ring_stop) goes through a mutex-protected
 * list and an eventfd whose read is kept armed on the ring, so a sleeping
 * loop wakes at once. Completions with user_data 0 (cancel requests, the
 * eventfd's bookkeeping) are internal and dispatched to nobody.
 *
 * Descriptors given to the ring stay blocking: io_uring completes an
 * O_NONBLOCK file's operation with -EAGAIN instead of waiting for it.
 */
#include "convoy/ring.h"

#include "convoy/log.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

_Static_assert(RING_MORE == IORING_CQE_F_MORE, "RING_MORE mirrors IORING_CQE_F_MORE");

struct post {
    void (*fn)(void *arg);
    void *arg;
    struct post *next;
};

/* The loop's provided buffers for ring_recv_any. */
struct recv_bufs {
    struct io_uring_buf_ring *br; /* shared with the kernel */
    uint8_t *mem;                 /* RECV_BUFS buffers of RING_RECV_BUF bytes */
};

#define RECV_BUFS  64 /* a power of two; held only while their completion runs */
#define RECV_GROUP 0

struct ring {
    struct io_uring uring;
    struct ring_timer *timers; /* pairing heap root, earliest first */
    struct ring_defer *defer_head, *defer_tail;
    struct recv_bufs *bufs;  /* NULL until the first ring_recv_any */
    bool stopping;           /* loop thread only */
    int wake_fd;             /* eventfd: ring_post/ring_stop wake the loop */
    uint64_t wake_val;       /* eventfd read target */
    struct ring_op wake_op;  /* keeps a read armed on wake_fd */
    pthread_mutex_t post_mu; /* guards posts, stop_requested */
    struct post *posts;      /* LIFO; reversed when run */
    bool stop_requested;     /* set by ring_stop from any thread */
    int sig_fd;              /* signalfd, or -1 */
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

static void run_posts(ring_t *r)
{
    pthread_mutex_lock(&r->post_mu);
    struct post *list = r->posts;
    r->posts = NULL;
    if (r->stop_requested) /* consumed, so that a later ring_run runs */
        r->stopping = true;
    r->stop_requested = false;
    pthread_mutex_unlock(&r->post_mu);
    struct post *fifo = NULL; /* run in the order they were posted */
    while (list) {
        struct post *next = list->next;
        list->next = fifo;
        fifo = list;
        list = next;
    }
    while (fifo) {
        struct post *next = fifo->next;
        fifo->fn(fifo->arg);
        free(fifo);
        fifo = next;
    }
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

static void wake(ring_t *r)
{
    uint64_t one = 1;
    if (write(r->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        log_error("ring", "event=wake_failed err=\"%s\"", strerror(errno));
}

int ring_create(ring_t **out, unsigned entries)
{
    ring_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return -ENOMEM;
    struct io_uring_params p = {.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN};
    int rc = io_uring_queue_init_params(entries, &r->uring, &p);
    if (rc == -EINVAL) { /* older kernels lack the flags; they are only hints */
        memset(&p, 0, sizeof p);
        rc = io_uring_queue_init_params(entries, &r->uring, &p);
    }
    if (rc < 0)
        goto fail_free;
    r->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (r->wake_fd < 0) {
        rc = -errno;
        goto fail_ring;
    }
    pthread_mutex_init(&r->post_mu, NULL);
    r->sig_fd = -1;
    r->wake_op.cb = handle_wake;
    wake_arm(r);
    *out = r;
    return 0;
fail_ring:
    io_uring_queue_exit(&r->uring);
fail_free:
    free(r);
    return rc;
}

void ring_destroy(ring_t *r)
{
    if (r == NULL)
        return;
    run_posts(r); /* posted closures may own memory; give them their run */
    if (r->bufs) {
        io_uring_unregister_buf_ring(&r->uring, RECV_GROUP);
        munmap(r->bufs->br, RECV_BUFS * sizeof(struct io_uring_buf));
        free(r->bufs->mem);
        free(r->bufs);
    }
    io_uring_queue_exit(&r->uring);
    close(r->wake_fd);
    if (r->sig_fd >= 0)
        close(r->sig_fd);
    pthread_mutex_destroy(&r->post_mu);
    free(r);
}

static void dispatch(struct io_uring_cqe *cqe)
{
    struct ring_op *op = io_uring_cqe_get_data(cqe);
    if (op != NULL)
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
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME) {
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
    pthread_mutex_lock(&r->post_mu);
    r->stop_requested = true;
    pthread_mutex_unlock(&r->post_mu);
    wake(r);
}

int ring_post(ring_t *r, void (*fn)(void *arg), void *arg)
{
    struct post *p = malloc(sizeof *p);
    if (p == NULL)
        return -ENOMEM;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&r->post_mu);
    p->next = r->posts;
    r->posts = p;
    pthread_mutex_unlock(&r->post_mu);
    wake(r);
    return 0;
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

void ring_read(ring_t *r, struct ring_op *op, int fd, void *buf, size_t len, uint64_t off)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_read(sqe, fd, buf, (unsigned)len, off);
    io_uring_sqe_set_data(sqe, op);
}

void ring_cancel(ring_t *r, struct ring_op *target)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_cancel(sqe, target, 0);
    io_uring_sqe_set_data(sqe, NULL);
}

/* ---- provided receive buffers ---- */

static int recv_bufs_make(ring_t *r)
{
    struct recv_bufs *b = calloc(1, sizeof *b);
    if (b == NULL)
        return -ENOMEM;
    size_t ring_len = RECV_BUFS * sizeof(struct io_uring_buf);
    b->br = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    b->mem = malloc((size_t)RECV_BUFS * RING_RECV_BUF);
    int rc = b->br == MAP_FAILED || b->mem == NULL ? -ENOMEM : 0;
    struct io_uring_buf_reg reg = {
        .ring_addr = (unsigned long)b->br, .ring_entries = RECV_BUFS, .bgid = RECV_GROUP};
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
    for (unsigned i = 0; i < RECV_BUFS; i++)
        io_uring_buf_ring_add(b->br, b->mem + (size_t)i * RING_RECV_BUF, RING_RECV_BUF,
                              (unsigned short)i, io_uring_buf_ring_mask(RECV_BUFS), (int)i);
    io_uring_buf_ring_advance(b->br, RECV_BUFS);
    r->bufs = b;
    return 0;
}

int ring_recv_any(ring_t *r, struct ring_op *op, int fd)
{
    int rc = r->bufs == NULL ? recv_bufs_make(r) : 0;
    if (rc < 0)
        return rc;
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_recv(sqe, fd, NULL, RING_RECV_BUF, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = RECV_GROUP;
    io_uring_sqe_set_data(sqe, op);
    return 0;
}

const uint8_t *ring_recv_buf(ring_t *r, uint32_t flags)
{
    if (!(flags & IORING_CQE_F_BUFFER) || r->bufs == NULL)
        return NULL;
    return r->bufs->mem + (size_t)(flags >> IORING_CQE_BUFFER_SHIFT) * RING_RECV_BUF;
}

void ring_recv_done(ring_t *r, uint32_t flags)
{
    if (!(flags & IORING_CQE_F_BUFFER) || r->bufs == NULL)
        return;
    unsigned id = flags >> IORING_CQE_BUFFER_SHIFT;
    io_uring_buf_ring_add(r->bufs->br, r->bufs->mem + (size_t)id * RING_RECV_BUF, RING_RECV_BUF,
                          (unsigned short)id, io_uring_buf_ring_mask(RECV_BUFS), 0);
    io_uring_buf_ring_advance(r->bufs->br, 1);
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
