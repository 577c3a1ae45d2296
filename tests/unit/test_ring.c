/*
 * ring: each file and message operation against real files, pipes and
 * socketpairs; completions beyond a small CQ; the bounded post queue (full,
 * waiting, order); and pool workers handing results to a loop.
 *
 * Operations are driven one at a time: submit, then run the ring until the
 * callback has run (it stops the ring). A watchdog thread stops a ring that
 * does not get there within a few seconds, so a bug shows as a failed
 * assertion rather than a hung runner.
 */
#include "convoy/pool.h"
#include "convoy/ring.h"
#include "../common/fixture.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define WATCHDOG_S 5

static ring_t *R; /* the suite's ring: a small SQ, so that submits also happen early */
static char dir[64];

struct watchdog {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    ring_t *r;
    bool done;  /* the run finished: the watchdog leaves */
    bool fired; /* the watchdog stopped the ring */
};

static void *watchdog_main(void *arg)
{
    struct watchdog *w = arg;
    struct timespec limit;
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += WATCHDOG_S;
    pthread_mutex_lock(&w->lock);
    while (!w->done && pthread_cond_timedwait(&w->cond, &w->lock, &limit) == 0)
        ;
    if (!w->done) {
        w->fired = true;
        ring_stop(w->r);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Runs r until *count reaches want (callbacks stop the ring) or the watchdog fires. */
static void run_until(ring_t *r, const unsigned *count, unsigned want)
{
    struct watchdog w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, r, false, false};
    pthread_t t;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, watchdog_main, &w), 0);
    bool fired = false;
    while (*count < want && !fired) {
        CU_ASSERT_EQUAL(ring_run(r), 0);
        pthread_mutex_lock(&w.lock);
        fired = w.fired;
        pthread_mutex_unlock(&w.lock);
    }
    pthread_mutex_lock(&w.lock);
    w.done = true;
    pthread_cond_signal(&w.cond);
    pthread_mutex_unlock(&w.lock);
    pthread_join(t, NULL);
    CU_ASSERT_FALSE(fired);
}

/* One operation's completion. */
struct done {
    struct ring_op op;
    int res;
    unsigned calls;
};

static void on_done(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct done *d = container_of(op, struct done, op);
    d->res = res;
    d->calls++;
    ring_stop(R);
}

static struct ring_op *arm(struct done *d)
{
    *d = (struct done){.op.cb = on_done};
    return &d->op;
}

/* Runs R until d's operation completed once; returns its result. */
static int wait_one(struct done *d)
{
    run_until(R, &d->calls, 1);
    CU_ASSERT_EQUAL(d->calls, 1);
    return d->res;
}

static int suite_init(void)
{
    if (fx_tmpdir(dir, sizeof dir) < 0)
        return -1;
    return ring_create(&R, 8) < 0 ? -1 : 0;
}

static int suite_clean(void)
{
    ring_destroy(R);
    fx_rmtree(dir);
    return 0;
}

/* Makes dir/name holding len bytes of a pattern in which every byte
 * depends on its offset; returns an fd open for reading and writing. */
static int make_file(const char *name, size_t len, char *path, size_t path_len)
{
    snprintf(path, path_len, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    unsigned char *buf = malloc(len ? len : 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(i * 131u + (i >> 8));
    CU_ASSERT_EQUAL_FATAL(pwrite(fd, buf, len, 0), (ssize_t)len);
    free(buf);
    return fd;
}

static bool is_pattern(const unsigned char *buf, size_t off, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i] != (unsigned char)((off + i) * 131u + ((off + i) >> 8)))
            return false;
    return true;
}

static void test_write_read(void)
{
    char path[128];
    int fd = make_file("rw", 0, path, sizeof path);
    const char msg[] = "written through the ring";
    struct done d;
    ring_write(R, arm(&d), fd, msg, sizeof msg, 4096);
    CU_ASSERT_EQUAL(wait_one(&d), (int)sizeof msg);
    char back[sizeof msg] = {0};
    ring_read(R, arm(&d), fd, back, sizeof back, 4096);
    CU_ASSERT_EQUAL(wait_one(&d), (int)sizeof msg);
    CU_ASSERT_EQUAL(memcmp(back, msg, sizeof msg), 0);
    struct stat st;
    CU_ASSERT_EQUAL(fstat(fd, &st), 0);
    CU_ASSERT_EQUAL(st.st_size, 4096 + (off_t)sizeof msg);
    close(fd);
}

/* Reads a socket to EOF, at most cap bytes. */
struct reader {
    int fd;
    unsigned char *buf;
    size_t cap, got;
};

static void *reader_main(void *arg)
{
    struct reader *rd = arg;
    ssize_t n;
    while (rd->got < rd->cap && (n = read(rd->fd, rd->buf + rd->got, rd->cap - rd->got)) > 0)
        rd->got += (size_t)n;
    return NULL;
}

/* Moves n bytes from a pipe to a socket; false on an error or no progress. */
static bool splice_out(int pipe_rd, int sock, size_t n)
{
    struct done d;
    while (n > 0) {
        ring_splice(R, arm(&d), pipe_rd, -1, sock, -1, n, SPLICE_F_MOVE);
        int m = wait_one(&d);
        if (m <= 0)
            return false;
        n -= (size_t)m;
    }
    return true;
}

/* A file region, file -> pipe -> socket with no copy through user space,
 * larger than a pipe holds so that it takes several rounds. */
static void test_splice_file_to_socket(void)
{
    enum { SIZE = 300000, OFF = 1000, LEN = 250000 };
    char path[128];
    int file = make_file("splice", SIZE, path, sizeof path);
    int p[2], sv[2];
    CU_ASSERT_EQUAL_FATAL(pipe2(p, O_CLOEXEC), 0);
    CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct reader rd = {.fd = sv[1], .buf = malloc(LEN + 1), .cap = LEN + 1};
    CU_ASSERT_PTR_NOT_NULL_FATAL(rd.buf);
    pthread_t t;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, reader_main, &rd), 0);
    size_t moved = 0;
    bool ok = true;
    while (ok && moved < LEN) {
        struct done d;
        ring_splice(R, arm(&d), file, OFF + (int64_t)moved, p[1], -1, LEN - moved, SPLICE_F_MOVE);
        int n = wait_one(&d);
        ok = n > 0 && splice_out(p[0], sv[0], (size_t)n);
        moved += n > 0 ? (size_t)n : 0;
    }
    CU_ASSERT_TRUE(ok);
    shutdown(sv[0], SHUT_WR);
    pthread_join(t, NULL);
    CU_ASSERT_EQUAL(rd.got, (size_t)LEN);
    CU_ASSERT_TRUE(is_pattern(rd.buf, OFF, rd.got));
    free(rd.buf);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
    close(file);
}

static void test_sendmsg_iovecs(void)
{
    int sv[2];
    CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    char a[] = "header|", b[] = "body of the message|", c[] = "trailer";
    struct iovec iov[3] = {{a, strlen(a)}, {b, strlen(b)}, {c, strlen(c)}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 3};
    size_t total = iov[0].iov_len + iov[1].iov_len + iov[2].iov_len;
    struct done d;
    ring_sendmsg(R, arm(&d), sv[0], &msg);
    CU_ASSERT_EQUAL(wait_one(&d), (int)total);
    char got[128] = {0};
    CU_ASSERT_EQUAL(recv(sv[1], got, sizeof got, 0), (ssize_t)total); /* one message */
    CU_ASSERT_STRING_EQUAL(got, "header|body of the message|trailer");
    close(sv[0]);
    close(sv[1]);
}

/* A ring_recv_any completion: what arrived, checked against the pattern
 * at *off (the buffer is the ring's only until ring_recv_done). */
struct recvd {
    struct ring_op op;
    int res;
    unsigned calls;
    size_t off;
    bool same;
};

static void on_recvd(struct ring_op *op, int res, uint32_t flags)
{
    struct recvd *d = container_of(op, struct recvd, op);
    const uint8_t *buf = ring_recv_buf(R, flags);
    d->res = res;
    d->calls++;
    d->same = res > 0 && buf != NULL && is_pattern(buf, d->off, (size_t)res);
    ring_recv_done(R, flags);
    ring_stop(R);
}

/* Small buffers for a connection that sends a little, big ones for a
 * stream: the same data, taken in pieces of each size. */
static void test_recv_small_and_big(void)
{
    int sv[2];
    CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int sz = 4 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    size_t len = RING_RECV_BUF + RING_RECV_BIG;
    unsigned char *data = malloc(len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(data);
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)(i * 131u + (i >> 8)); /* is_pattern's */
    CU_ASSERT_EQUAL_FATAL(send(sv[0], data, len, MSG_DONTWAIT), (ssize_t)len);
    free(data);
    size_t off = 0;
    for (int big = 0; big <= 1; big++) {
        struct recvd d = {.op.cb = on_recvd, .off = off};
        CU_ASSERT_EQUAL_FATAL(ring_recv_any(R, &d.op, sv[1], big), 0);
        run_until(R, &d.calls, 1);
        CU_ASSERT_EQUAL(d.calls, 1);
        CU_ASSERT(d.same);
        int most = big ? (int)RING_RECV_BIG : (int)RING_RECV_BUF;
        CU_ASSERT(d.res <= most && d.res > most / 2);
        off += d.res > 0 ? (size_t)d.res : 0;
    }
    close(sv[0]);
    close(sv[1]);
}

static void test_openat(void)
{
    char path[128], missing[160];
    close(make_file("open", 100, path, sizeof path));
    struct done d;
    ring_openat(R, arm(&d), AT_FDCWD, path, O_RDONLY, 0);
    int fd = wait_one(&d);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    unsigned char buf[100];
    CU_ASSERT_EQUAL(read(fd, buf, sizeof buf), 100);
    CU_ASSERT_TRUE(is_pattern(buf, 0, sizeof buf));
    close(fd);
    snprintf(missing, sizeof missing, "%s/no-such-file", dir);
    ring_openat(R, arm(&d), AT_FDCWD, missing, O_RDONLY, 0);
    CU_ASSERT_EQUAL(wait_one(&d), -ENOENT);
}

static void test_statx(void)
{
    char path[128];
    int fd = make_file("stat", 12345, path, sizeof path);
    struct statx st;
    struct done d;
    ring_statx(R, arm(&d), AT_FDCWD, path, 0, STATX_SIZE, &st);
    CU_ASSERT_EQUAL(wait_one(&d), 0);
    CU_ASSERT_TRUE(st.stx_mask & STATX_SIZE);
    CU_ASSERT_EQUAL(st.stx_size, 12345);
    memset(&st, 0, sizeof st);
    ring_statx(R, arm(&d), fd, "", AT_EMPTY_PATH, STATX_SIZE, &st);
    CU_ASSERT_EQUAL(wait_one(&d), 0);
    CU_ASSERT_EQUAL(st.stx_size, 12345);
    ring_statx(R, arm(&d), AT_FDCWD, "/nonexistent/convoy", 0, STATX_SIZE, &st);
    CU_ASSERT_EQUAL(wait_one(&d), -ENOENT);
    close(fd);
}

static void test_opts_checked(void)
{
    ring_t *r;
    CU_ASSERT_EQUAL(ring_create_opts(&r, &(struct ring_opts){.entries = 64, .cq_entries = 32}),
                    -EINVAL);
    CU_ASSERT_EQUAL(ring_create_opts(&r, &(struct ring_opts){.entries = 1u << 16}), -EINVAL);
    CU_ASSERT_EQUAL(ring_create_opts(&r, &(struct ring_opts){.post_slots = (1u << 20) + 1}),
                    -EINVAL);
    CU_ASSERT_EQUAL_FATAL(ring_create_opts(&r, NULL), 0);
    ring_destroy(r);
}

/* Many completions at once on a ring whose CQ holds 8: the rest wait in
 * the kernel's overflow list and every one is delivered, exactly once. */
enum { BURST = 64 };

struct burst_op {
    struct ring_op op;
    struct burst *b;
    unsigned calls;
};

struct burst {
    ring_t *r;
    struct burst_op ops[BURST];
    unsigned total, bad;
};

static void on_burst(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct burst_op *o = container_of(op, struct burst_op, op);
    o->calls++;
    o->b->bad += res != 4;
    if (++o->b->total == BURST)
        ring_stop(o->b->r);
}

static void test_cq_overflow(void)
{
    struct burst b = {0};
    CU_ASSERT_EQUAL_FATAL(
        ring_create_opts(&b.r, &(struct ring_opts){.entries = 4, .cq_entries = 8}), 0);
    char path[128];
    int fd = make_file("burst", 0, path, sizeof path);
    for (unsigned i = 0; i < BURST; i++) {
        b.ops[i] = (struct burst_op){.op.cb = on_burst, .b = &b};
        ring_write(b.r, &b.ops[i].op, fd, "abcd", 4, 4 * i);
    }
    run_until(b.r, &b.total, BURST);
    CU_ASSERT_EQUAL(b.bad, 0);
    for (unsigned i = 0; i < BURST; i++)
        CU_ASSERT_EQUAL(b.ops[i].calls, 1);
    struct stat st;
    CU_ASSERT_EQUAL(fstat(fd, &st), 0);
    CU_ASSERT_EQUAL(st.st_size, 4 * BURST);
    close(fd);
    ring_destroy(b.r);
}

/* ---- ring_post ---- */

struct log {
    ring_t *r;
    unsigned want;
    unsigned n;
    int seen[16];
};

struct entry {
    struct log *log;
    int value;
};

static void log_post(void *arg)
{
    struct entry *e = arg;
    struct log *l = e->log;
    if (l->n < sizeof l->seen / sizeof l->seen[0])
        l->seen[l->n] = e->value;
    if (++l->n == l->want)
        ring_stop(l->r);
}

struct waiter {
    ring_t *r;
    struct entry *e;
    int rc;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    w->rc = ring_post_wait(w->r, log_post, w->e, WATCHDOG_S * 1000);
    return NULL;
}

/*
 * A queue of 4 with nobody draining: four posts fit, the fifth is refused
 * at once, a bounded wait times out. A thread waiting for room gets in when
 * the loop drains, and everything runs in the order it was posted.
 */
static void test_post_full(void)
{
    struct log l = {.want = 5};
    CU_ASSERT_EQUAL_FATAL(ring_create_opts(&l.r, &(struct ring_opts){.post_slots = 3}), 0);
    struct entry e[5];
    for (int i = 0; i < 5; i++)
        e[i] = (struct entry){&l, i};
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(ring_post(l.r, log_post, &e[i]), 0);
    CU_ASSERT_EQUAL(ring_post(l.r, log_post, &e[4]), -EAGAIN);
    uint64_t t0 = ring_now_ms();
    CU_ASSERT_EQUAL(ring_post_wait(l.r, log_post, &e[4], 30), -ETIMEDOUT);
    CU_ASSERT_TRUE(ring_now_ms() - t0 >= 30);
    struct waiter w = {l.r, &e[4], 1};
    pthread_t t;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, waiter_main, &w), 0);
    usleep(20000); /* most likely asleep on the futex by now; correct either way */
    run_until(l.r, &l.n, 5);
    pthread_join(t, NULL);
    CU_ASSERT_EQUAL(w.rc, 0);
    CU_ASSERT_EQUAL(l.n, 5);
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(l.seen[i], i);
    ring_destroy(l.r);
}

/* Posts left when the ring is destroyed still run (they may own memory). */
static void test_post_destroy_runs(void)
{
    struct log l = {.want = 100};
    CU_ASSERT_EQUAL_FATAL(ring_create(&l.r, 8), 0);
    struct entry e = {&l, 7};
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(ring_post(l.r, log_post, &e), 0);
    ring_destroy(l.r);
    CU_ASSERT_EQUAL(l.n, 3);
}

/*
 * Two pool workers hand 100,000 results to a loop, one ring_post each (with
 * ring_post_wait when the queue is full). The loop receives every result
 * exactly once, each worker's in the order it posted them, and the eventfd
 * is written for a small fraction of the posts.
 */
enum { RESULTS = 100000, WORKERS = 2 };

struct result {
    struct handoff *h;
    unsigned worker;
    unsigned index;
    uint64_t value; /* computed by the worker */
};

struct handoff {
    ring_t *r;
    struct result *results;
    unsigned char *got; /* deliveries per index */
    unsigned received;
    unsigned next[WORKERS]; /* the index each worker's next result must have */
    unsigned out_of_order, wrong;
    atomic_uint post_failed; /* by the workers */
};

struct worker_job {
    struct handoff *h;
    unsigned worker;
};

static void deliver(void *arg)
{
    struct result *x = arg;
    struct handoff *h = x->h;
    h->got[x->index]++;
    h->out_of_order += x->index != h->next[x->worker];
    h->next[x->worker] = x->index + WORKERS;
    h->wrong += x->value != (uint64_t)x->index * x->index;
    if (++h->received == RESULTS)
        ring_stop(h->r);
}

static void produce(void *arg)
{
    struct worker_job *job = arg;
    struct handoff *h = job->h;
    for (unsigned i = job->worker; i < RESULTS; i += WORKERS) {
        struct result *x = &h->results[i];
        *x = (struct result){h, job->worker, i, (uint64_t)i * i};
        int rc = ring_post(h->r, deliver, x);
        if (rc == -EAGAIN)
            rc = ring_post_wait(h->r, deliver, x, WATCHDOG_S * 1000);
        if (rc != 0)
            atomic_fetch_add(&h->post_failed, 1);
    }
}

static void test_pool_handoff(void)
{
    struct handoff h = {.results = calloc(RESULTS, sizeof(struct result)),
                        .got = calloc(RESULTS, 1)};
    CU_ASSERT_PTR_NOT_NULL_FATAL(h.results);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h.got);
    for (unsigned w = 0; w < WORKERS; w++)
        h.next[w] = w;
    CU_ASSERT_EQUAL_FATAL(ring_create(&h.r, 8), 0);
    pool_t *p;
    CU_ASSERT_EQUAL_FATAL(pool_create(&p, WORKERS, WORKERS), 0);
    struct worker_job jobs[WORKERS];
    for (unsigned w = 0; w < WORKERS; w++) {
        jobs[w] = (struct worker_job){&h, w};
        CU_ASSERT_EQUAL(pool_submit(p, produce, &jobs[w]), 0);
    }
    run_until(h.r, &h.received, RESULTS);
    pool_destroy(p);
    CU_ASSERT_EQUAL(h.received, RESULTS);
    CU_ASSERT_EQUAL(atomic_load(&h.post_failed), 0);
    CU_ASSERT_EQUAL(h.out_of_order, 0);
    CU_ASSERT_EQUAL(h.wrong, 0);
    unsigned once = 0;
    for (unsigned i = 0; i < RESULTS; i++)
        once += h.got[i] == 1;
    CU_ASSERT_EQUAL(once, RESULTS);
    CU_ASSERT_TRUE(ring_wakes(h.r) * 10 < RESULTS);
    ring_destroy(h.r);
    free(h.got);
    free(h.results);
}

void suite_ring(void)
{
    CU_pSuite s = CU_add_suite("ring", suite_init, suite_clean);
    CU_add_test(s, "write, then read back", test_write_read);
    CU_add_test(s, "splice a file region through a pipe to a socket", test_splice_file_to_socket);
    CU_add_test(s, "receives into small and big ring buffers", test_recv_small_and_big);
    CU_add_test(s, "sendmsg of three iovecs", test_sendmsg_iovecs);
    CU_add_test(s, "openat an existing and a missing file", test_openat);
    CU_add_test(s, "statx size, by path and by fd", test_statx);
    CU_add_test(s, "ring sizes are checked", test_opts_checked);
    CU_add_test(s, "a burst larger than the CQ", test_cq_overflow);
    CU_add_test(s, "post to a full queue, wait for room", test_post_full);
    CU_add_test(s, "posts left at destroy run", test_post_destroy_runs);
    CU_add_test(s, "pool workers hand results to a loop", test_pool_handoff);
}
