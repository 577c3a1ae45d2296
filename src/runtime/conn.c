/*
 * conn — a byte stream on a ring, plain or TLS, with bounded buffers.
 *
 * Each connection has at most one operation of each kind in flight: a recv,
 * a send, a file read and (while dialling) a connect, each with its own
 * ring_op, plus one ring timer and one deferred step of the ring's own.
 *
 * Input: a recv takes its buffer from the ring's shared pool when data
 * arrives, so an idle connection holds none. Bytes are offered to on_data
 * from that buffer (plain) or from a per-thread plaintext buffer (TLS);
 * only what on_data leaves is copied aside, into `in`, up to in_max.
 * Nothing is ever delivered from inside an API call — conn_resume() defers
 * to the loop — so one per-thread plaintext buffer serves every connection.
 *
 * Output: `out` is what goes to the socket next (ciphertext with TLS), a
 * list of chunks that either own their bytes or point at a caller's buffer.
 * Behind it, `srcs` is what is still to be turned into output: caller
 * buffers (TLS), file regions and writes queued behind them, consumed in
 * order by conn_pump() while `out` is below the high-water mark. A closing
 * connection sends close_notify only once every source has gone out.
 *
 * Closing never frees memory an operation may still use: the connection
 * shuts the socket down, cancels what is in flight, stops its timer, and is
 * freed (after every pending done and on_close) only when every operation
 * has completed and no handler of ours is on the stack — `dispatching`
 * counts those.
 */
#include "convoy/conn.h"

#include "convoy/log.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK_SIZE            (64u * 1024)   /* largest owned chunk; file reads and TLS records */
#define CHUNK_MIN             (4u * 1024)    /* a small write's chunk: most answers are short */
#define TLS_STEP              (64u * 1024)   /* plaintext encrypted per pump step */
#define SINK_STEP             (1024u * 1024) /* bytes a sink takes per step, past kept input */
#define HANDSHAKE_MS_DEF      10000u
#define NOFILE_RESERVE        64u /* descriptors a listener leaves for everything else */
#define ACCEPT_BACKOFF_MIN_MS 10u
#define ACCEPT_BACKOFF_MAX_MS 1000u
#define PIPE_SIZE             CONN_PIPE_SIZE /* asked of F_SETPIPE_SZ; the kernel may give less */
#define LINGER_MS             5000u /* the longest a closed side waits for the peer's FIN */

/* Bytes for the socket: owned (data[]), a caller's buffer (ext), or file
 * pages waiting in the connection's pipe (in_pipe). */
struct chunk {
    struct chunk *next;
    uint32_t off;       /* first byte not yet sent */
    uint32_t len;       /* bytes filled */
    uint32_t cap;       /* room in data[]; 0 for ext and pipe chunks */
    bool in_pipe;       /* the bytes are in c->pipe[0], spliced to the socket */
    const uint8_t *ext; /* a caller's bytes, or NULL */
    struct src *src;    /* ext: the send whose done runs when these are sent */
    uint8_t data[];
};

struct outq {
    struct chunk *head, *tail;
    size_t bytes; /* filled and not yet sent, over all chunks */
};

enum src_kind { SRC_BUF, SRC_FILE };

/* Something still to be queued as output, in order. */
struct src {
    struct src *next;
    enum src_kind kind;
    const uint8_t *p; /* SRC_BUF: next byte */
    void *owned;      /* SRC_BUF: our copy (a write queued behind others), freed at the end */
    int fd;           /* SRC_FILE */
    uint64_t off;     /* SRC_FILE: next byte of the file */
    uint64_t left;    /* bytes not yet turned into output */
    conn_done_fn done;
    void *arg;
};

enum conn_state { CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSING, CS_CLOSED };

/* What the deferred step has to do. */
enum { DEF_PUMP = 1, DEF_RESUME = 2, DEF_RECV = 4 };

struct conn {
    ring_t *ring;
    int fd;
    tls_t *tls; /* NULL for plain TCP */
    const struct conn_handlers *h;
    void *udata;
    enum conn_state state;
    int reason; /* handed to on_close */
    struct ring_op connect_op, recv_op, send_op, file_op;
    struct ring_timer timer;
    struct ring_defer defer;
    unsigned deferred; /* DEF_* bits for the deferred step */
    bool connect_busy, recv_busy, send_busy, file_busy;
    bool paused;          /* conn_pause(): no on_data until resumed */
    bool peer_eof;        /* the peer finished sending */
    bool close_on_open;   /* conn_close() came before on_open */
    bool above_high;      /* conn_queued() exceeded CONN_HIGH_WATER: on_drain owed */
    bool notify_sent;     /* TLS close_notify queued */
    bool lingering;       /* closing, output sent, write side shut: input is dropped */
    bool trusted;         /* conn_trust(): not evictable */
    bool streaming;       /* the last receive filled a small buffer: ask a big one */
    unsigned dispatching; /* our handlers on the stack */
    uint32_t idle_ms;
    uint32_t in_max;
    uint32_t slot;                /* conn_ref table slot + 1, 0 without one */
    uint64_t last_active;         /* ring_now_ms() of the last traffic */
    uint64_t born;                /* ring_now_ms() when made */
    uint64_t bytes_in, bytes_out; /* on the wire (ciphertext with TLS), for the log */
    uint64_t deadline;            /* absolute ms, 0 = none */
    uint8_t *in;                  /* unconsumed plaintext */
    size_t in_len;
    size_t in_cap; /* grows with need, up to in_max */
    uint8_t *sink; /* conn_sink(): input goes here, not to on_data */
    size_t sink_len, sink_got;
    conn_sink_fn sink_fn;
    void *sink_arg;
    struct outq out;                /* bytes for the socket (ciphertext with TLS) */
    struct outq early;              /* plaintext written before the handshake ended */
    struct src *srcs, *srcs_tail;   /* still to be turned into output */
    size_t src_bytes;               /* SRC_BUF bytes in srcs: counted by conn_queued() */
    struct chunk *file_chunk;       /* read target of the file source at the head */
    int pipe[2];                    /* plain file sends: file -> pipe -> socket; -1 without */
    uint32_t pipe_cap;              /* what the kernel granted the pipe */
    uint32_t pipe_bytes;            /* spliced in and not yet out */
    struct conn_listener *listener; /* that accepted it, while it lives */
    struct conn *lprev, *lnext;     /* in one of the listener's lists */
    struct conn_peer *peer;         /* the peer's address, made when first needed */
};

/* Who the peer is: only dialled connections and logged ones need it, so
 * an idle accepted connection does not carry it. */
struct conn_peer {
    struct net_addr addr; /* len 0 until looked up */
    char text[64];        /* "HOST:PORT", "" until asked for */
};

struct conn_list {
    struct conn *head, *tail;
};

struct conn_listener {
    ring_t *ring;
    int fd;
    struct ring_op accept_op;
    struct ring_timer backoff;
    bool closing, accepting;
    uint32_t backoff_ms; /* the next pause after running out of descriptors */
    uint64_t failed;     /* accepts that failed in this pause episode */
    unsigned count, max;
    struct conn_list fresh;   /* not yet trusted, oldest first: evicted first */
    struct conn_list trusted; /* conn_trust()ed */
    struct net_addr addr;
    struct conn_opts opts;
    const struct conn_handlers *h;
    void (*on_accept)(conn_t *c, void *arg);
    void *arg;
};

static void conn_arm_recv(conn_t *c);
/* The pipe a plain connection sends file pages through, made when a file
 * send needs it and closed once no file send is left (conn_pipe_release):
 * a pipe's pages count against the user's pipe-user-pages-soft, past which
 * new pipes get a single page, so idle keep-alive connections must not
 * hold them. Splices are sized to what the kernel granted. */
static int conn_pipe(conn_t *c)
{
    if (c->pipe[0] >= 0)
        return 0;
    if (pipe2(c->pipe, O_CLOEXEC) < 0) {
        c->pipe[0] = c->pipe[1] = -1;
        return -errno;
    }
    (void)fcntl(c->pipe[1], F_SETPIPE_SZ, (int)PIPE_SIZE); /* best effort: less works */
    int got = fcntl(c->pipe[1], F_GETPIPE_SZ);
    c->pipe_cap = got > 0 ? (uint32_t)got : 4096u;
    return 0;
}

static bool srcs_have_file(const conn_t *c)
{
    for (const struct src *s = c->srcs; s != NULL; s = s->next)
        if (s->kind == SRC_FILE)
            return true;
    return false;
}

/* Called when the pipe has emptied: keeps it only for a file still to send. */
static void conn_pipe_release(conn_t *c)
{
    if (c->pipe[0] < 0 || c->pipe_bytes > 0 || c->file_busy || srcs_have_file(c))
        return;
    close(c->pipe[0]);
    close(c->pipe[1]);
    c->pipe[0] = c->pipe[1] = -1;
    c->pipe_cap = 0;
}

static void conn_flush(conn_t *c);
static void conn_pump(conn_t *c);
static void conn_arm_timer(conn_t *c);
static void conn_close_open(conn_t *c);
static void conn_check_finish(conn_t *c);
static void conn_release_ref(conn_t *c);
static void conn_resume_now(conn_t *c);
static void conn_sink_end(conn_t *c, int err);

/* ---- chunks and queues ---- */

static struct chunk *chunk_new(size_t cap)
{
    struct chunk *k = malloc(sizeof *k + cap);
    if (k != NULL)
        *k = (struct chunk){.cap = (uint32_t)cap};
    return k;
}

static const uint8_t *chunk_bytes(const struct chunk *k)
{
    return k->ext ? k->ext : k->data;
}

static void outq_link(struct outq *q, struct chunk *k)
{
    k->next = NULL;
    if (q->tail)
        q->tail->next = k;
    else
        q->head = k;
    q->tail = k;
    q->bytes += k->len - k->off;
}

/* Room at the tail of q for `want` more bytes, adding a chunk sized to the
 * need (CHUNK_MIN to CHUNK_SIZE) when the tail has none. */
static struct chunk *outq_room(struct outq *q, size_t want)
{
    struct chunk *t = q->tail;
    if (t && t->len < t->cap) /* ext and pipe chunks have no room */
        return t;
    size_t cap = want < CHUNK_MIN ? CHUNK_MIN : want > CHUNK_SIZE ? CHUNK_SIZE : want;
    struct chunk *k = chunk_new(cap);
    if (k)
        outq_link(q, k);
    return k;
}

static int outq_append(struct outq *q, const uint8_t *data, size_t len)
{
    while (len > 0) {
        struct chunk *k = outq_room(q, len);
        if (k == NULL)
            return -ENOMEM;
        size_t n = k->cap - k->len;
        if (n > len)
            n = len;
        memcpy(k->data + k->len, data, n);
        k->len += (uint32_t)n;
        q->bytes += n;
        data += n;
        len -= n;
    }
    return 0;
}

/* ---- sources ---- */

static void src_push(conn_t *c, struct src *s)
{
    s->next = NULL;
    if (c->srcs_tail)
        c->srcs_tail->next = s;
    else
        c->srcs = s;
    c->srcs_tail = s;
    if (s->kind == SRC_BUF)
        c->src_bytes += s->left;
}

static void src_pop(conn_t *c)
{
    c->srcs = c->srcs->next;
    if (c->srcs == NULL)
        c->srcs_tail = NULL;
}

/* Ends a source: its done runs (from the loop: every caller is). */
static void src_finish(conn_t *c, struct src *s, int err)
{
    if (s->kind == SRC_BUF)
        c->src_bytes -= s->left;
    if (s->done)
        s->done(c, s->arg, err);
    free(s->owned);
    free(s);
}

/* ---- lifetime ---- */

static void conn_touch(conn_t *c)
{
    c->last_active = ring_now_ms();
}

static bool conn_idle_ops(const conn_t *c)
{
    return !c->connect_busy && !c->recv_busy && !c->send_busy && !c->file_busy && !c->defer.queued;
}

static void list_unlink(struct conn_list *l, conn_t *c)
{
    if (c->lprev)
        c->lprev->lnext = c->lnext;
    else
        l->head = c->lnext;
    if (c->lnext)
        c->lnext->lprev = c->lprev;
    else
        l->tail = c->lprev;
    c->lprev = c->lnext = NULL;
}

static void list_append(struct conn_list *l, conn_t *c)
{
    c->lnext = NULL;
    c->lprev = l->tail;
    if (l->tail)
        l->tail->lnext = c;
    else
        l->head = c;
    l->tail = c;
}

static void conn_leave_listener(conn_t *c)
{
    struct conn_listener *l = c->listener;
    if (l == NULL)
        return;
    list_unlink(c->trusted ? &l->trusted : &l->fresh, c);
    l->count--;
    c->listener = NULL;
}

/* Every send still pending learns that its bytes will not leave. */
static void conn_fail_sends(conn_t *c)
{
    int err = c->reason < 0 ? c->reason : -EPIPE;
    while (c->out.head) {
        struct chunk *k = c->out.head;
        c->out.head = k->next;
        if (k->src)
            src_finish(c, k->src, err);
        free(k);
    }
    while (c->srcs) {
        struct src *s = c->srcs;
        src_pop(c);
        src_finish(c, s, err);
    }
}

static void outq_free(struct outq *q)
{
    while (q->head) {
        struct chunk *next = q->head->next;
        free(q->head);
        q->head = next;
    }
    q->tail = NULL;
    q->bytes = 0;
}

static void conn_log_close(conn_t *c)
{
    if (!log_enabled(LOG_DEBUG))
        return;
    log_debug("conn", "event=closed peer=%s reason=\"%s\" in=%llu out=%llu open_ms=%llu",
              c->fd >= 0 ? conn_peer_addr(c) : "-", conn_reason_str(c->reason),
              (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out,
              (unsigned long long)(ring_now_ms() - c->born));
}

static void conn_free(conn_t *c)
{
    conn_log_close(c);
    conn_fail_sends(c);
    if (c->sink)
        conn_sink_end(c, c->reason < 0 ? c->reason : -EPIPE);
    if (c->h->on_close)
        c->h->on_close(c, c->reason);
    conn_release_ref(c);
    if (c->fd >= 0)
        close(c->fd);
    if (c->pipe[0] >= 0) {
        close(c->pipe[0]);
        close(c->pipe[1]);
    }
    tls_free(c->tls);
    outq_free(&c->early);
    free(c->file_chunk);
    free(c->in);
    free(c->peer);
    free(c);
}

static void conn_maybe_free(conn_t *c)
{
    if (c->state == CS_CLOSED && c->dispatching == 0 && conn_idle_ops(c))
        conn_free(c);
}

static void conn_enter(conn_t *c)
{
    c->dispatching++;
}

static void conn_leave(conn_t *c)
{
    c->dispatching--;
    conn_maybe_free(c);
}

/* ---- the deferred step: work handed from an API call to the loop ---- */

static void conn_step_deferred(struct ring_defer *d)
{
    conn_t *c = container_of(d, conn_t, defer);
    unsigned what = c->deferred;
    c->deferred = 0;
    conn_enter(c);
    if (c->state != CS_CLOSED) {
        if (what & DEF_RESUME)
            conn_resume_now(c);
        if (what & DEF_PUMP)
            conn_pump(c);
        if (what & DEF_RECV)
            conn_arm_recv(c);
    }
    conn_leave(c); /* a closed connection with nothing in flight is freed here */
}

static void conn_defer(conn_t *c, unsigned what)
{
    c->deferred |= what;
    ring_defer(c->ring, &c->defer, conn_step_deferred);
}

/*
 * Stops everything. A send in flight may not have reached the kernel yet
 * (submissions wait for the loop) and may carry the alert that tells the
 * peer why its handshake failed: shutting the socket down now would fail
 * it with -EPIPE. Its cancellation is queued behind it instead, so it
 * still goes out if the socket takes it at once, and close() in conn_free
 * ends the stream. Without a send the shutdown tells the peer at once.
 */
static void conn_shutdown(conn_t *c, int reason)
{
    if (c->state == CS_CLOSED)
        return;
    c->state = CS_CLOSED;
    c->reason = reason;
    ring_timer_stop(c->ring, &c->timer);
    conn_leave_listener(c);
    /* The shutdown also ends a pending recv (it completes with 0), which is
     * far cheaper than cancelling it: the kernel finds a cancel's target by
     * searching a hash of every armed poll, one per open connection. */
    bool woken = c->fd >= 0 && !c->send_busy && !c->connect_busy && shutdown(c->fd, SHUT_RDWR) == 0;
    if (c->connect_busy)
        ring_cancel(c->ring, &c->connect_op);
    if (c->recv_busy && !woken)
        ring_cancel(c->ring, &c->recv_op);
    if (c->send_busy)
        ring_cancel(c->ring, &c->send_op);
    if (c->file_busy)
        ring_cancel(c->ring, &c->file_op);
    /* Called from outside our handlers with nothing in flight (conn_abort
     * on a paused connection), no completion would come to free it: the
     * deferred step does, so on_close still runs from the loop. */
    if (c->dispatching == 0 && conn_idle_ops(c))
        conn_defer(c, 0);
}

/*
 * Every completion of a connection's own operations comes through here: it
 * marks the operation done, runs its step unless the connection is closed
 * already, and frees the connection if that was the last thing it awaited.
 */
static void conn_complete(conn_t *c, bool *busy, void (*step)(conn_t *c, int res, uint32_t fl),
                          int res, uint32_t flags)
{
    conn_enter(c);
    *busy = false;
    if (c->state != CS_CLOSED)
        step(c, res, flags);
    conn_leave(c);
}

/* ---- output ---- */

/* Where the TLS engine puts each record it makes: straight into the output
 * chunks, so ciphertext is written once and copied never. */
static int conn_tls_output(void *arg, const void *data, size_t len)
{
    conn_t *c = arg;
    return outq_append(&c->out, data, len);
}

static void conn_note_queued(conn_t *c)
{
    if (conn_queued(c) > CONN_HIGH_WATER)
        c->above_high = true;
}

/* Queues plaintext for the socket now, through TLS when there is TLS. */
static int conn_queue(conn_t *c, const uint8_t *data, size_t len)
{
    int rc;
    if (c->tls == NULL)
        rc = outq_append(&c->out, data, len);
    else if (!tls_handshake_done(c->tls))
        rc = outq_append(&c->early, data, len);
    else
        rc = tls_write(c->tls, data, len);
    conn_note_queued(c);
    return rc;
}

static void conn_flush(conn_t *c)
{
    if (c->send_busy || c->state == CS_CLOSED || c->state == CS_CONNECTING)
        return;
    struct chunk *k = c->out.head;
    if (k == NULL || k->off == k->len)
        return;
    c->send_busy = true;
    if (k->in_pipe)
        ring_splice(c->ring, &c->send_op, c->pipe[0], -1, c->fd, -1, k->len - k->off,
                    SPLICE_F_MOVE);
    else
        ring_send(c->ring, &c->send_op, c->fd, chunk_bytes(k) + k->off, k->len - k->off);
}

/* n bytes of the head chunk went out; a chunk fully sent is dropped, and
 * a caller's buffer fully sent ends its send. */
static void conn_sent(conn_t *c, size_t n)
{
    c->out.bytes -= n;
    struct chunk *k = c->out.head;
    k->off += (uint32_t)n;
    if (k->in_pipe && (c->pipe_bytes -= (uint32_t)n) == 0)
        conn_pipe_release(c);
    if (k->off < k->len)
        return;
    c->out.head = k->next;
    if (c->out.head == NULL)
        c->out.tail = NULL;
    if (k->src)
        src_finish(c, k->src, 0);
    free(k);
}

static void conn_maybe_drain(conn_t *c)
{
    if (!c->above_high || conn_queued(c) >= CONN_LOW_WATER)
        return;
    c->above_high = false;
    if (c->state == CS_OPEN && c->h->on_drain)
        c->h->on_drain(c);
}

static void conn_step_send(conn_t *c, int res, uint32_t flags)
{
    (void)flags;
    if (res < 0) {
        conn_shutdown(c, res);
        return;
    }
    conn_touch(c);
    c->bytes_out += (uint64_t)res;
    conn_sent(c, (size_t)res);
    conn_pump(c);
    conn_flush(c);
    conn_maybe_drain(c);
    conn_check_finish(c);
}

static void handle_send(struct ring_op *op, int res, uint32_t flags)
{
    conn_t *c = container_of(op, conn_t, send_op);
    conn_complete(c, &c->send_busy, conn_step_send, res, flags);
}

/* ---- sources: caller buffers and files, turned into output in order ---- */

/* A caller's buffer. Plain TCP sends it from where it is: one chunk that
 * ends the send when it has gone. TLS encrypts it a step at a time. */
static int pump_buf(conn_t *c, struct src *s)
{
    if (c->tls == NULL) {
        struct chunk *k = chunk_new(0);
        if (k == NULL)
            return -ENOMEM;
        k->ext = s->p;
        k->len = (uint32_t)s->left; /* sends are at most 4 GiB - 1: see conn_send_buf */
        k->src = s;
        src_pop(c);
        c->src_bytes -= s->left;
        s->left = 0;
        outq_link(&c->out, k);
        return 0;
    }
    size_t n = s->left < TLS_STEP ? (size_t)s->left : TLS_STEP;
    int rc = tls_write(c->tls, s->p, n);
    if (rc < 0)
        return rc;
    s->p += n;
    s->left -= n;
    c->src_bytes -= n;
    if (s->left == 0) {
        src_pop(c);
        src_finish(c, s, 0);
    }
    return 0;
}

/* The next step of the file at the head of srcs. Plain TCP: splice file
 * pages into the pipe (they never enter user space) while it has room;
 * TLS: read a chunk to encrypt. */
static void pump_file(conn_t *c, struct src *s)
{
    if (c->tls == NULL) {
        int rc = conn_pipe(c);
        if (rc < 0) {
            conn_shutdown(c, rc);
            return;
        }
        if (c->pipe_bytes >= c->pipe_cap / 2)
            return; /* the socket side drains it first */
        uint64_t room = c->pipe_cap - c->pipe_bytes;
        unsigned n = (unsigned)(s->left < room ? s->left : room);
        c->file_busy = true;
        ring_splice(c->ring, &c->file_op, s->fd, (int64_t)s->off, c->pipe[1], -1, n, SPLICE_F_MOVE);
        return;
    }
    if (c->file_chunk == NULL && (c->file_chunk = chunk_new(CHUNK_SIZE)) == NULL) {
        conn_shutdown(c, -ENOMEM);
        return;
    }
    size_t n = s->left < CHUNK_SIZE ? (size_t)s->left : CHUNK_SIZE;
    c->file_busy = true;
    ring_read(c->ring, &c->file_op, s->fd, c->file_chunk->data, n, s->off);
}

/* Turns sources into output while the output is below the high-water mark.
 * Only once open: before that a TLS session cannot encrypt. */
static void conn_pump(conn_t *c)
{
    while (c->srcs && !c->file_busy && (c->state == CS_OPEN || c->state == CS_CLOSING)) {
        struct src *s = c->srcs;
        if (s->kind == SRC_FILE) {
            if (c->out.bytes >= CONN_HIGH_WATER)
                break;
            if (s->left == 0) { /* a zero-length region: nothing to read */
                src_pop(c);
                src_finish(c, s, 0);
                continue;
            }
            pump_file(c, s); /* starts a read or splice, or waits for room */
            break;
        }
        if (c->tls && c->out.bytes >= CONN_HIGH_WATER)
            break;
        int rc = pump_buf(c, s);
        if (rc < 0) {
            conn_shutdown(c, rc);
            return;
        }
    }
    conn_note_queued(c);
    conn_flush(c);
    conn_check_finish(c);
}

/* res bytes of the file are output now: in the pipe (plain) or encrypted
 * from the chunk just read (TLS). */
static int conn_file_output(conn_t *c, size_t res)
{
    if (c->tls != NULL) {
        return tls_write(c->tls, c->file_chunk->data, res);
    }
    struct chunk *k = chunk_new(0);
    if (k == NULL)
        return -ENOMEM;
    k->in_pipe = true;
    k->len = (uint32_t)res;
    c->pipe_bytes += (uint32_t)res;
    outq_link(&c->out, k);
    return 0;
}

static void conn_step_file(conn_t *c, int res, uint32_t flags)
{
    (void)flags;
    struct src *s = c->srcs;
    if (res <= 0) {
        int err = res < 0 ? res : -EIO; /* 0: the file shrank under us */
        src_pop(c);
        src_finish(c, s, err);
        conn_shutdown(c, err);
        return;
    }
    s->off += (uint64_t)res;
    s->left -= (uint64_t)res;
    int rc = conn_file_output(c, (size_t)res);
    if (rc < 0) {
        conn_shutdown(c, rc);
        return;
    }
    if (s->left == 0) {
        src_pop(c);
        src_finish(c, s, 0);
        free(c->file_chunk);
        c->file_chunk = NULL;
    }
    conn_pump(c);
}

static void handle_file(struct ring_op *op, int res, uint32_t flags)
{
    conn_t *c = container_of(op, conn_t, file_op);
    conn_complete(c, &c->file_busy, conn_step_file, res, flags);
}

static bool conn_writable(const conn_t *c)
{
    return c->state < CS_CLOSING && !c->close_on_open;
}

static int conn_add_src(conn_t *c, struct src *s)
{
    src_push(c, s);
    conn_note_queued(c);
    conn_defer(c, DEF_PUMP); /* a done must not run inside the caller's call */
    return 0;
}

int conn_send_buf(conn_t *c, const void *p, size_t len, conn_done_fn done, void *arg)
{
    if (!conn_writable(c))
        return -EPIPE;
    if (len > UINT32_MAX - 1)
        return -EMSGSIZE;
    struct src *s = malloc(sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    *s = (struct src){.kind = SRC_BUF, .p = p, .left = len, .done = done, .arg = arg};
    return conn_add_src(c, s);
}

int conn_send_file(conn_t *c, int fd, uint64_t off, uint64_t len, conn_done_fn done, void *arg)
{
    if (!conn_writable(c))
        return -EPIPE;
    struct src *s = malloc(sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    *s =
        (struct src){.kind = SRC_FILE, .fd = fd, .off = off, .left = len, .done = done, .arg = arg};
    return conn_add_src(c, s);
}

/* A write behind pending sources is queued as one more source, a copy. */
static int conn_write_behind(conn_t *c, const void *data, size_t len)
{
    struct src *s = malloc(sizeof *s);
    void *copy = malloc(len);
    if (s == NULL || copy == NULL) {
        free(s);
        free(copy);
        return -ENOMEM;
    }
    memcpy(copy, data, len);
    *s = (struct src){.kind = SRC_BUF, .p = copy, .owned = copy, .left = len};
    return conn_add_src(c, s);
}

int conn_write(conn_t *c, const void *data, size_t len)
{
    if (!conn_writable(c))
        return -EPIPE;
    if (len == 0)
        return 0;
    int rc = c->srcs ? conn_write_behind(c, data, len) : conn_queue(c, data, len);
    if (rc < 0) {
        conn_shutdown(c, rc);
        return rc;
    }
    conn_flush(c);
    return 0;
}

uint64_t conn_bytes_out(const conn_t *c)
{
    return c->bytes_out;
}

size_t conn_queued(const conn_t *c)
{
    return c->out.bytes + c->src_bytes;
}

/* ---- closing ---- */

/*
 * Closing a socket with input it never read makes the kernel reset the
 * connection, and a reset throws away whatever the peer has not received
 * yet: the end of the answer. So when input waits unread, the write side
 * is shut instead (the peer reads up to our FIN), and input is read and
 * dropped until the peer closes too, or LINGER_MS pass: nginx's lingering
 * close, RFC 9112 section 9.6. With nothing unread the close is at once,
 * as an idle keep-alive connection's must be.
 */
static bool conn_linger(conn_t *c)
{
    if (c->lingering)
        return true;
    int unread = 0;
    if (c->peer_eof || c->fd < 0 || ioctl(c->fd, SIOCINQ, &unread) != 0 || unread == 0 ||
        shutdown(c->fd, SHUT_WR) != 0)
        return false;
    c->lingering = true;
    uint64_t end = ring_now_ms() + LINGER_MS;
    if (c->deadline == 0 || c->deadline > end)
        c->deadline = end;
    ring_timer_stop(c->ring, &c->timer);
    conn_arm_timer(c);
    conn_arm_recv(c);
    return true;
}

/* A lingering connection's input: dropped, until the peer's FIN or error. */
static void conn_step_linger(conn_t *c, int res)
{
    if (res > 0 || res == -EINTR || res == -EAGAIN) {
        c->bytes_in += res > 0 ? (uint64_t)res : 0;
        conn_arm_recv(c);
        return;
    }
    conn_shutdown(c, c->reason); /* what we sent was not at stake */
}

/* A closing connection finishes once every source and the queue are on
 * the wire; with TLS, close_notify is queued after the last of them. */
static void conn_check_finish(conn_t *c)
{
    if (c->state != CS_CLOSING || c->srcs || c->file_busy)
        return;
    if (c->tls && !c->notify_sent) {
        c->notify_sent = true;
        tls_close(c->tls);
        conn_flush(c);
    }
    if (c->out.bytes == 0 && !c->send_busy && !conn_linger(c))
        conn_shutdown(c, c->reason);
}

static void conn_close_open(conn_t *c)
{
    c->state = CS_CLOSING;
    conn_pump(c);
}

/* Output written before open waits in `early` (TLS), `out` (plain) or srcs. */
static bool conn_wrote_early(const conn_t *c)
{
    return c->srcs || (c->tls ? c->early.bytes : c->out.bytes) > 0;
}

void conn_close(conn_t *c)
{
    if (c->state >= CS_CLOSING || c->close_on_open)
        return;
    if (c->state == CS_OPEN)
        conn_close_open(c);
    else if (conn_wrote_early(c)) /* what was written goes first */
        c->close_on_open = true;
    else /* nothing to say to a half-made connection */
        conn_shutdown(c, 0);
}

void conn_abort(conn_t *c, int reason)
{
    conn_shutdown(c, reason);
}

/* ---- input ---- */

static int conn_keep(conn_t *c, const uint8_t *data, size_t len)
{
    if (len > c->in_max - c->in_len)
        return -EMSGSIZE;
    size_t need = c->in_len + len;
    if (need > c->in_cap) { /* most leftovers are a partial header: start small */
        size_t cap = c->in_cap ? c->in_cap * 2 : 4096;
        cap = cap < need ? need : cap > c->in_max ? c->in_max : cap;
        uint8_t *in = realloc(c->in, cap);
        if (in == NULL)
            return -ENOMEM;
        c->in = in;
        c->in_cap = cap;
    }
    memmove(c->in + c->in_len, data, len);
    c->in_len += len;
    return 0;
}

/* What on_data left of c->in moves to its front; a buffer that grew for a
 * big message is given back once empty. */
static void conn_consumed_kept(conn_t *c, size_t n)
{
    size_t left = c->in_len - n;
    memmove(c->in, c->in + n, left);
    c->in_len = left;
    if (left == 0 && c->in_cap > 16384) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
}

/* Offers bytes to on_data; keeps what it leaves. While paused, or while
 * a sink is set (it takes them from there), it keeps them all: a receive
 * in flight at conn_pause() still completes. */
static void conn_deliver(conn_t *c, const uint8_t *data, size_t len)
{
    bool hold = c->paused || c->sink;
    if ((c->in_len > 0 || hold) && len > 0) {
        int rc = conn_keep(c, data, len);
        if (rc < 0) {
            conn_shutdown(c, rc);
            return;
        }
    }
    if (hold || (c->in_len == 0 && len == 0))
        return;
    bool kept = c->in_len > 0;
    if (kept) {
        data = c->in;
        len = c->in_len;
    }
    ssize_t n = c->h->on_data(c, data, len);
    if (n < 0 || (size_t)n > len) { /* more than offered is a caller's bug: stop */
        conn_shutdown(c, n < 0 ? (int)n : -EINVAL);
        return;
    }
    if (kept) {
        conn_consumed_kept(c, (size_t)n);
    } else if ((size_t)n < len) {
        int rc = conn_keep(c, data + n, len - (size_t)n);
        if (rc < 0)
            conn_shutdown(c, rc);
    }
}

static void conn_open(conn_t *c)
{
    c->state = CS_OPEN;
    c->deadline = 0;
    conn_arm_timer(c);      /* the handshake deadline is over */
    while (c->early.head) { /* what was written during the handshake */
        struct chunk *k = c->early.head;
        c->early.head = k->next;
        int rc = tls_write(c->tls, k->data + k->off, k->len - k->off);
        free(k);
        if (rc < 0) {
            conn_shutdown(c, rc);
            return;
        }
    }
    c->early.tail = NULL;
    c->early.bytes = 0;
    conn_flush(c);
    if (log_enabled(LOG_DEBUG))
        log_debug("conn", "event=open peer=%s name=%s handshake_ms=%llu", conn_peer_addr(c),
                  conn_peer_name(c) ? conn_peer_name(c) : "-",
                  (unsigned long long)(ring_now_ms() - c->born));
    if (c->h->on_open)
        c->h->on_open(c);
    if (c->state != CS_OPEN)
        return;
    conn_pump(c);
    if (c->close_on_open && c->state == CS_OPEN)
        conn_close_open(c);
}

/* The peer finished sending: the owner decides (on_eof), or what is queued
 * is answered and the connection closes. */
static void conn_peer_eof(conn_t *c)
{
    c->peer_eof = true;
    if (c->sink)
        conn_sink_end(c, -ECONNRESET);
    if (c->state == CS_OPEN && c->h->on_eof)
        c->h->on_eof(c);
    else if (c->state == CS_OPEN)
        conn_close_open(c);
    else if (c->state == CS_CLOSING)
        conn_check_finish(c);
    else
        conn_shutdown(c, -ECONNRESET); /* mid-handshake */
}

/* ---- sinks: input straight into the caller's memory ---- */

/* A read of input that gave n: true when nothing came (none yet, the
 * peer's end or an error, both dealt with here), false when bytes did. */
static bool conn_read_ended(conn_t *c, ssize_t n)
{
    if (n == TLS_EOF)
        conn_peer_eof(c);
    else if (n < 0)
        conn_shutdown(c, (int)n);
    return n <= 0;
}

/* The sink ends: its fn runs (from the loop: every caller is). */
static void conn_sink_end(conn_t *c, int err)
{
    conn_sink_fn fn = c->sink_fn;
    void *arg = c->sink_arg;
    size_t got = c->sink_got;
    c->sink = NULL;
    c->sink_fn = NULL;
    fn(c, arg, got, err);
}

/* n more bytes are in the sink. */
static void conn_sink_took(conn_t *c, size_t n)
{
    c->sink_got += n;
    if (c->sink_got == c->sink_len)
        conn_sink_end(c, 0);
}

/* Copies what fits of data into the sink; returns how much. */
static size_t conn_sink_put(conn_t *c, const uint8_t *data, size_t len)
{
    size_t n = c->sink_len - c->sink_got;
    if (n > len)
        n = len;
    memcpy(c->sink + c->sink_got, data, n);
    conn_sink_took(c, n);
    return n;
}

/* Plain TCP: what the socket holds now, into dst. Only with no receive
 * armed: one would take the bytes that come first. >0, 0 for none now,
 * TLS_EOF at the peer's end, or -errno. */
static ssize_t conn_recv_now(conn_t *c, uint8_t *dst, size_t len)
{
    if (c->recv_busy || c->peer_eof)
        return 0;
    ssize_t n = recv(c->fd, dst, len, MSG_DONTWAIT);
    if (n > 0) {
        conn_touch(c);
        c->bytes_in += (uint64_t)n;
        return n;
    }
    if (n == 0)
        return TLS_EOF;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
}

/* Fills the sink from what is there now: kept input, then the plaintext
 * TLS opens or the socket's bytes, at most SINK_STEP of the latter (a
 * fast sender must not hold the loop). Kept input a sink leaves goes to
 * on_data, which may set the next sink. */
static void conn_sink_fill(conn_t *c)
{
    size_t budget = SINK_STEP;
    while (c->sink && c->state == CS_OPEN && !c->paused) {
        uint8_t *dst = c->sink + c->sink_got;
        size_t left = c->sink_len - c->sink_got;
        if (c->in_len > 0) {
            size_t n = left < c->in_len ? left : c->in_len;
            memcpy(dst, c->in, n);
            conn_consumed_kept(c, n);
            conn_sink_took(c, n);
        } else {
            if (budget == 0)
                break;
            ssize_t n = c->tls ? tls_read(c->tls, dst, left < budget ? left : budget)
                               : conn_recv_now(c, dst, left < budget ? left : budget);
            if (conn_read_ended(c, n))
                break;
            budget -= (size_t)n;
            conn_sink_took(c, (size_t)n);
        }
        if (c->sink == NULL && c->in_len > 0)
            conn_deliver(c, NULL, 0);
    }
}

/* Input that came: into the sink while one is set, the rest offered to
 * on_data (which may set one), then the sink filled from what follows. */
static void conn_input(conn_t *c, const uint8_t *data, size_t len)
{
    while (len > 0 && c->sink && c->in_len == 0 && !c->paused && c->state == CS_OPEN) {
        size_t n = conn_sink_put(c, data, len);
        data += n;
        len -= n;
    }
    conn_deliver(c, data, len);
    conn_sink_fill(c);
}

int conn_sink(conn_t *c, void *dst, size_t len, conn_sink_fn fn, void *arg)
{
    if (c->state != CS_OPEN)
        return -EPIPE;
    if (c->sink)
        return -EBUSY;
    if (len == 0)
        return -EINVAL;
    c->sink = dst;
    c->sink_len = len;
    c->sink_got = 0;
    c->sink_fn = fn;
    c->sink_arg = arg;
    conn_defer(c, DEF_RESUME); /* filled from the loop: fn never runs inside this call */
    return 0;
}

ssize_t conn_read_now(conn_t *c, void *dst, size_t len)
{
    if (c->state != CS_OPEN || c->paused || c->sink || c->in_len > 0 || len == 0)
        return 0;
    ssize_t n = c->tls ? tls_read(c->tls, dst, len) : conn_recv_now(c, dst, len);
    if (n < 0 && n != TLS_EOF && c->tls == NULL) {
        conn_shutdown(c, (int)n); /* a socket error is told once: keep it */
        return n;
    }
    return n > 0 ? n : 0; /* TLS failures, close_notify and a FIN are there again later */
}

size_t conn_sink_stop(conn_t *c)
{
    size_t got = c->sink ? c->sink_got : 0;
    c->sink = NULL;
    c->sink_fn = NULL;
    return got;
}

/* Plaintext comes out of TLS here; one buffer per thread serves every
 * connection, since no delivery ever nests inside another. */
static __thread uint8_t plain_buf[16 * 1024];

static void conn_read_tls(conn_t *c)
{
    while (c->state == CS_OPEN && !c->paused && !c->peer_eof) {
        if (c->sink) {
            conn_sink_fill(c);
            if (c->sink)
                break; /* the engine needs more ciphertext */
            continue;
        }
        ssize_t n = tls_read(c->tls, plain_buf, sizeof plain_buf);
        if (conn_read_ended(c, n))
            break;
        conn_deliver(c, plain_buf, (size_t)n);
    }
}

static void conn_pull_tls(conn_t *c)
{
    if (!tls_handshake_done(c->tls)) {
        int rc = tls_handshake(c->tls);
        conn_flush(c); /* alerts too: the peer learns why */
        if (rc < 0) {
            log_info_limited("conn", "event=handshake_failed peer=%s err=\"%s\"", conn_peer_addr(c),
                             tls_errstr(c->tls));
            conn_shutdown(c, rc);
            return;
        }
        if (rc == 0)
            return;
        conn_open(c);
    }
    conn_read_tls(c);
    conn_flush(c); /* reading can make records too: session tickets, key updates */
}

static void conn_step_recv(conn_t *c, int res, uint32_t flags)
{
    if (res == -ENOBUFS && c->streaming) { /* the big buffers were all taken */
        c->streaming = false;
        conn_arm_recv(c);
        return;
    }
    if (res == -ENOBUFS) { /* the ring's buffers were all taken: after the batch */
        conn_defer(c, DEF_RECV);
        return;
    }
    if (c->lingering) {
        conn_step_linger(c, res);
        return;
    }
    if (res <= 0) {
        if (res == 0 && c->tls && c->state == CS_OPEN && c->reason == 0)
            c->reason = -ECONNRESET; /* TCP ended without close_notify: truncated */
        if (res == 0)
            conn_peer_eof(c);
        else if (res != -EINTR && res != -EAGAIN)
            conn_shutdown(c, res);
        conn_arm_recv(c);
        return;
    }
    conn_touch(c);
    c->bytes_in += (uint64_t)res;
    c->streaming = (size_t)res >= RING_RECV_BUF;
    const uint8_t *buf = ring_recv_buf(c->ring, flags);
    if (c->tls == NULL) {
        if (c->state == CS_OPEN)
            conn_input(c, buf, (size_t)res);
    } else {
        tls_lend(c->tls, buf, (size_t)res); /* read in place; the rest kept at the end */
        conn_pull_tls(c);
        int rc = tls_lend_end(c->tls);
        if (rc < 0)
            conn_shutdown(c, rc);
    }
    conn_arm_recv(c);
}

static void handle_recv(struct ring_op *op, int res, uint32_t flags)
{
    conn_t *c = container_of(op, conn_t, recv_op);
    ring_t *r = c->ring; /* the connection may be freed below; the ring is not */
    conn_complete(c, &c->recv_busy, conn_step_recv, res, flags);
    ring_recv_done(r, flags);
}

static void conn_arm_recv(conn_t *c)
{
    if (c->recv_busy || c->peer_eof)
        return;
    if (!c->lingering && (c->paused || (c->state != CS_OPEN && c->state != CS_HANDSHAKE)))
        return;
    int rc = ring_recv_any(c->ring, &c->recv_op, c->fd, c->streaming);
    if (rc < 0) {
        conn_shutdown(c, rc);
        return;
    }
    c->recv_busy = true;
}

void conn_pause(conn_t *c)
{
    c->paused = true;
}

/* Delivers what waited while paused: kept input, then plaintext still in
 * the TLS engine; then reads again. */
static void conn_resume_now(conn_t *c)
{
    if (c->paused || c->state != CS_OPEN)
        return;
    conn_input(c, NULL, 0);
    if (c->tls)
        conn_read_tls(c);
    conn_arm_recv(c);
}

void conn_resume(conn_t *c)
{
    /* Closed: nothing to deliver, and the deferred step must not be queued
     * by a handler conn_free runs (a send's done), or it would outlive c. */
    if (!c->paused || c->state == CS_CLOSED)
        return;
    c->paused = false;
    conn_defer(c, DEF_RESUME);
}

/* ---- timers ---- */

/* Expired, or due later than it was set for: either way, look again. */
static void handle_timer(struct ring_timer *t)
{
    conn_t *c = container_of(t, conn_t, timer);
    conn_enter(c);
    uint64_t now = ring_now_ms();
    bool expired =
        (c->deadline && now >= c->deadline) || (c->idle_ms && now - c->last_active >= c->idle_ms);
    if (expired && c->lingering) {
        conn_shutdown(c, c->reason); /* the peer kept sending or stayed: our part was done */
    } else if (expired) {
        log_info_limited("conn", "event=timeout peer=%s open_ms=%llu", conn_peer_addr(c),
                         (unsigned long long)(now - c->born));
        conn_shutdown(c, -ETIMEDOUT);
    } else {
        conn_arm_timer(c);
    }
    conn_leave(c);
}

/* Sets the timer to the earliest of deadline and idle expiry. Traffic only
 * moves last_active: the timer finds out when it fires, so a busy
 * connection costs no timer work per byte. */
static void conn_arm_timer(conn_t *c)
{
    uint64_t at = 0;
    if (c->idle_ms)
        at = c->last_active + c->idle_ms;
    if (c->deadline && (at == 0 || c->deadline < at))
        at = c->deadline;
    if (at == 0 || c->state == CS_CLOSED) {
        ring_timer_stop(c->ring, &c->timer);
        return;
    }
    if (c->timer.active && c->timer.at <= at)
        return; /* fires first and re-arms for the rest */
    uint64_t now = ring_now_ms();
    ring_timer_start(c->ring, &c->timer, at > now ? at - now : 0, handle_timer);
}

void conn_set_deadline(conn_t *c, uint32_t ms)
{
    if (c->state == CS_CLOSED)
        return;
    c->deadline = ms ? ring_now_ms() + ms : 0;
    ring_timer_stop(c->ring, &c->timer); /* the new deadline may be later */
    conn_arm_timer(c);
}

/* ---- handles that outlive connections ---- */

/* Per thread, as connections are: slot i holds the connection and the
 * generation a ref must carry; a freed slot's generation moves on. */
struct ref_slot {
    conn_t *c;     /* NULL when free */
    uint32_t gen;  /* bumped when freed */
    uint32_t next; /* free list, slot index + 1 */
};

static __thread struct ref_slot *ref_slots;
static __thread uint32_t ref_cap, ref_free;
static pthread_key_t ref_key; /* its destructor frees a thread's table when the thread ends */
static pthread_once_t ref_once = PTHREAD_ONCE_INIT;

static void ref_table_free(void *unused)
{
    (void)unused;
    free(ref_slots);
    ref_slots = NULL;
    ref_cap = ref_free = 0;
}

static void ref_key_make(void)
{
    if (pthread_key_create(&ref_key, ref_table_free) != 0)
        abort(); /* only without memory at start: a broken invariant */
}

static int ref_grow(void)
{
    uint32_t cap = ref_cap ? ref_cap * 2 : 256;
    pthread_once(&ref_once, ref_key_make);
    struct ref_slot *s = realloc(ref_slots, cap * sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    for (uint32_t i = ref_cap; i < cap; i++)
        s[i] = (struct ref_slot){.next = i + 1 < cap ? i + 2 : ref_free};
    ref_free = ref_cap + 1;
    ref_slots = s;
    ref_cap = cap;
    (void)pthread_setspecific(ref_key, s); /* failing only leaks the table at thread exit */
    return 0;
}

conn_ref_t conn_ref(conn_t *c)
{
    if (c->slot == 0) {
        if (ref_free == 0 && ref_grow() < 0)
            return 0;
        uint32_t i = ref_free - 1;
        ref_free = ref_slots[i].next;
        ref_slots[i].c = c;
        c->slot = i + 1;
    }
    return (uint64_t)ref_slots[c->slot - 1].gen << 32 | c->slot;
}

conn_t *conn_get(conn_ref_t ref)
{
    uint32_t slot = (uint32_t)ref, gen = (uint32_t)(ref >> 32);
    if (slot == 0 || slot > ref_cap || ref_slots[slot - 1].gen != gen)
        return NULL;
    return ref_slots[slot - 1].c;
}

static void conn_release_ref(conn_t *c)
{
    if (c->slot == 0)
        return;
    struct ref_slot *s = &ref_slots[c->slot - 1];
    s->c = NULL;
    s->gen++;
    s->next = ref_free;
    ref_free = c->slot;
    c->slot = 0;
}

/* ---- creation ---- */

static conn_t *conn_new(ring_t *r, int fd, const struct conn_opts *o, const struct conn_handlers *h)
{
    conn_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->ring = r;
    c->fd = fd;
    c->h = h;
    c->idle_ms = o->idle_ms;
    c->in_max = o->in_max ? o->in_max : CONN_IN_MAX;
    c->pipe[0] = c->pipe[1] = -1;
    c->recv_op.cb = handle_recv;
    c->send_op.cb = handle_send;
    c->file_op.cb = handle_file;
    conn_touch(c);
    c->born = c->last_active;
    if (o->tls && (tls_new(&c->tls, o->tls, o->expect_peer, o->expect_role) < 0 ||
                   tls_set_output(c->tls, conn_tls_output, c) < 0)) {
        tls_free(c->tls);
        free(c);
        return NULL;
    }
    return c;
}

static void conn_start(conn_t *c, const struct conn_opts *o)
{
    c->deadline = ring_now_ms() + (o->handshake_ms ? o->handshake_ms : HANDSHAKE_MS_DEF);
    conn_arm_timer(c);
}

static void conn_step_connect(conn_t *c, int res, uint32_t flags)
{
    (void)flags;
    if (res < 0) {
        conn_shutdown(c, res);
        return;
    }
    conn_touch(c);
    if (c->tls) {
        c->state = CS_HANDSHAKE;
        conn_pull_tls(c); /* sends the ClientHello */
    } else {
        conn_open(c);
    }
    conn_arm_recv(c);
}

static void handle_connect(struct ring_op *op, int res, uint32_t flags)
{
    conn_t *c = container_of(op, conn_t, connect_op);
    conn_complete(c, &c->connect_busy, conn_step_connect, res, flags);
}

int conn_connect(conn_t **out, ring_t *r, const struct net_addr *addr, const struct conn_opts *o,
                 const struct conn_handlers *h, void *udata)
{
    int fd = net_socket_for(addr);
    if (fd < 0)
        return fd;
    conn_t *c = conn_new(r, fd, o, h);
    struct conn_peer *p = c ? calloc(1, sizeof *p) : NULL; /* connect reads it until done */
    if (p == NULL) {
        if (c)
            tls_free(c->tls);
        free(c);
        close(fd);
        return -ENOMEM;
    }
    c->udata = udata;
    c->peer = p;
    p->addr = *addr;
    c->state = CS_CONNECTING;
    c->connect_op.cb = handle_connect;
    c->connect_busy = true;
    ring_connect(r, &c->connect_op, fd, (const struct sockaddr *)&c->peer->addr.ss,
                 c->peer->addr.len);
    conn_start(c, o);
    *out = c;
    return 0;
}

/* ---- listening ---- */

/* At the cap: the oldest untrusted connection makes room, or nobody does. */
static bool listener_make_room(conn_listener_t *l)
{
    if (l->count < l->max)
        return true;
    conn_t *victim = l->fresh.head;
    if (victim == NULL)
        return false;
    if (log_enabled(LOG_DEBUG))
        log_debug("conn", "event=evicted peer=%s open=%u", conn_peer_addr(victim), l->count);
    conn_shutdown(victim, -EUSERS); /* leaves the listener's lists, so count drops */
    return true;
}

static void listener_accept(conn_listener_t *l, int fd)
{
    if (!listener_make_room(l)) {
        close(fd);
        return;
    }
    conn_t *c = conn_new(l->ring, fd, &l->opts, l->h);
    if (c == NULL) {
        log_warn_limited("conn", "event=accept_dropped err=\"%s\"", strerror(ENOMEM));
        close(fd);
        return;
    }
    c->listener = l;
    list_append(&l->fresh, c);
    l->count++;
    if (log_enabled(LOG_DEBUG))
        log_debug("conn", "event=accepted peer=%s open=%u", conn_peer_addr(c), l->count);
    conn_enter(c);
    c->state = c->tls ? CS_HANDSHAKE : CS_OPEN;
    if (l->on_accept)
        l->on_accept(c, l->arg);
    if (c->state == CS_OPEN && c->h->on_open)
        c->h->on_open(c);
    else if (c->state == CS_HANDSHAKE)
        conn_start(c, &l->opts);
    if (c->state != CS_CLOSED)
        conn_arm_timer(c);
    conn_arm_recv(c);
    conn_leave(c);
}

static void listener_arm(conn_listener_t *l)
{
    l->accepting = true;
    ring_accept(l->ring, &l->accept_op, l->fd);
}

static void handle_backoff(struct ring_timer *t)
{
    conn_listener_t *l = container_of(t, conn_listener_t, backoff);
    if (!l->closing && !l->accepting)
        listener_arm(l);
}

/* Out of descriptors (or kernel memory): accepting again at once would
 * fail again at once, so pause, longer each time in a row, and say so
 * once per pause rather than once per failure. */
static void listener_pause(conn_listener_t *l, int err)
{
    if (l->failed++ == 0)
        log_warn("conn", "event=accept_paused err=\"%s\" open=%u retry_ms=%u", strerror(-err),
                 l->count, l->backoff_ms);
    ring_timer_start(l->ring, &l->backoff, l->backoff_ms, handle_backoff);
    l->backoff_ms =
        l->backoff_ms * 2 > ACCEPT_BACKOFF_MAX_MS ? ACCEPT_BACKOFF_MAX_MS : l->backoff_ms * 2;
}

static bool accept_exhausted(int err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

static void listener_accepted(conn_listener_t *l)
{
    if (l->failed > 1)
        log_info("conn", "event=accept_resumed failed=%llu", (unsigned long long)l->failed);
    l->failed = 0;
    l->backoff_ms = ACCEPT_BACKOFF_MIN_MS;
}

static void handle_accept(struct ring_op *op, int res, uint32_t flags)
{
    conn_listener_t *l = container_of(op, conn_listener_t, accept_op);
    bool more = flags & RING_MORE;
    if (res >= 0 && !l->closing) {
        listener_accepted(l);
        listener_accept(l, res);
    } else if (res >= 0) {
        close(res);
    } else if (!l->closing && accept_exhausted(res)) {
        if (l->backoff.active)
            l->failed++;
        else
            listener_pause(l, res);
        if (more) { /* pausing means not accepting: end the multishot too */
            ring_cancel(l->ring, &l->accept_op);
            return; /* its last completion comes back here */
        }
    } else if (!l->closing && res != -ECANCELED && res != -EINTR) {
        log_warn_limited("conn", "event=accept_failed err=\"%s\"", strerror(-res));
    }
    if (more)
        return;
    l->accepting = false;
    if (l->closing) {
        close(l->fd);
        free(l);
        return;
    }
    if (!l->backoff.active)
        listener_arm(l); /* the multishot ended: re-arm */
}

/* The default cap: what the descriptor limit leaves after a reserve. */
static unsigned listener_default_max(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return 65536;
    return rl.rlim_cur > 2 * NOFILE_RESERVE ? (unsigned)(rl.rlim_cur - NOFILE_RESERVE)
                                            : (unsigned)(rl.rlim_cur / 2);
}

int conn_listen(conn_listener_t **out, ring_t *r, const struct net_addr *addr,
                const struct conn_opts *opts, const struct conn_handlers *h,
                void (*on_accept)(conn_t *c, void *arg), void *arg)
{
    conn_listener_t *l = calloc(1, sizeof *l);
    if (l == NULL)
        return -ENOMEM;
    int fd = net_listen(addr, 512);
    if (fd < 0) {
        free(l);
        return fd;
    }
    /* Accepted sockets inherit TCP_NODELAY: set once here, not per client. */
    int one = 1, rc = 0;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
        (rc = net_local_addr(fd, &l->addr)) < 0) {
        rc = rc < 0 ? rc : -errno;
        close(fd);
        free(l);
        return rc;
    }
    l->ring = r;
    l->fd = fd;
    l->opts = *opts;
    l->max = opts->max_conns ? opts->max_conns : listener_default_max();
    l->backoff_ms = ACCEPT_BACKOFF_MIN_MS;
    l->h = h;
    l->on_accept = on_accept;
    l->arg = arg;
    l->accept_op.cb = handle_accept;
    listener_arm(l);
    *out = l;
    return 0;
}

const struct net_addr *conn_listener_addr(const conn_listener_t *l)
{
    return &l->addr;
}

unsigned conn_listener_count(const conn_listener_t *l)
{
    return l->count;
}

static void listener_orphan(struct conn_list *list)
{
    for (conn_t *c = list->head, *next; c; c = next) {
        next = c->lnext;
        c->listener = NULL;
        c->lprev = c->lnext = NULL;
    }
    list->head = list->tail = NULL;
}

void conn_listener_close(conn_listener_t *l)
{
    l->closing = true;
    listener_orphan(&l->fresh);
    listener_orphan(&l->trusted);
    l->count = 0;
    shutdown(l->fd, SHUT_RDWR);
    if (l->accepting) {
        ring_cancel(l->ring, &l->accept_op);
        return;
    }
    ring_timer_stop(l->ring, &l->backoff); /* paused: no accept will complete */
    close(l->fd);
    free(l);
}

/* ---- public odds and ends ---- */

void conn_set_in_max(conn_t *c, uint32_t max)
{
    c->in_max = max > c->in_len ? max : (uint32_t)c->in_len;
}

void conn_trust(conn_t *c)
{
    if (c->trusted)
        return;
    struct conn_listener *l = c->listener;
    if (l)
        list_unlink(&l->fresh, c);
    c->trusted = true;
    if (l)
        list_append(&l->trusted, c);
}

void conn_set_udata(conn_t *c, void *udata)
{
    c->udata = udata;
}

void *conn_udata(const conn_t *c)
{
    return c->udata;
}

ring_t *conn_ring(const conn_t *c)
{
    return c->ring;
}

const char *conn_peer_name(const conn_t *c)
{
    return c->tls && tls_handshake_done(c->tls) ? tls_peer_name(c->tls) : NULL;
}

const char *conn_peer_role(const conn_t *c)
{
    return c->tls && tls_handshake_done(c->tls) ? tls_peer_role(c->tls) : NULL;
}

const char *conn_reason_str(int reason)
{
    switch (reason) {
    case 0:
        return "closed";
    case -ESHUTDOWN:
        return "shutting down";
    case -EUSERS:
        return "evicted: too many connections";
    case TLS_EOF:
        return "TLS closed";
    case TLS_EPROTO:
        return "TLS protocol error";
    case TLS_EVERIFY:
        return "peer certificate rejected";
    case TLS_ENOCERT:
        return "peer sent no certificate";
    default:
        return reason < 0 && reason > -4096 ? strerror(-reason) : "unknown";
    }
}

const struct net_addr *conn_peer(conn_t *c)
{
    if (c->peer == NULL && (c->peer = calloc(1, sizeof *c->peer)) == NULL)
        return NULL;
    struct net_addr *a = &c->peer->addr;
    if (a->len == 0) {
        a->len = sizeof a->ss;
        if (getpeername(c->fd, (struct sockaddr *)&a->ss, &a->len) < 0) {
            a->len = 0;
            return NULL;
        }
    }
    return a;
}

const char *conn_peer_addr(conn_t *c)
{
    const struct net_addr *a = conn_peer(c);
    if (a == NULL)
        return "?";
    if (c->peer->text[0] == '\0')
        net_addr_str(a, c->peer->text, sizeof c->peer->text);
    return c->peer->text;
}
