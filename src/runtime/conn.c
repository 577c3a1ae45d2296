/*
 * conn — a byte stream on a ring, plain or TLS, with bounded buffers.
 *
 * Each connection has at most one operation of each kind in flight: a recv,
 * a send, a file read, a timer and (while dialling) a connect, each with its
 * own ring_op. Output is a queue of chunks sent one at a time; with TLS the
 * queue holds ciphertext taken from the engine after every write. Input is
 * offered to on_data straight from the receive buffer, and only what it
 * leaves unconsumed is copied aside.
 *
 * Closing never frees memory an operation may still use: the connection
 * shuts the socket down, cancels what is in flight, and is freed (after
 * on_close) only when every operation has completed and no handler of ours
 * is on the stack — `dispatching` counts those.
 */
#include "convoy/conn.h"

#include "convoy/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK_SIZE       (64u * 1024)
#define RECV_SIZE        (16u * 1024)
#define HANDSHAKE_MS_DEF 10000u

struct chunk {
    struct chunk *next;
    uint32_t off; /* first byte not yet sent */
    uint32_t len; /* bytes filled */
    uint8_t data[CHUNK_SIZE];
};

struct outq {
    struct chunk *head, *tail;
    size_t bytes; /* filled and not yet sent, over all chunks */
};

enum conn_state { CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSING, CS_CLOSED };

struct file_stream {
    bool active;
    int fd;
    uint64_t off;        /* next byte of the file to read */
    uint64_t left;       /* bytes still to read */
    struct chunk *chunk; /* read target */
    void (*done)(conn_t *c, int err);
};

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
    bool connect_busy, recv_busy, send_busy, file_busy, timer_busy;
    bool paused;          /* conn_pause(): no on_data until resumed */
    bool close_on_open;   /* conn_close() came before on_open */
    bool above_high;      /* queue exceeded CONN_HIGH_WATER: on_drain owed */
    unsigned dispatching; /* our handlers on the stack */
    uint32_t idle_ms;
    uint64_t last_active; /* ring_now_ms() of the last traffic */
    uint64_t deadline;    /* absolute ms, 0 = none */
    uint64_t timer_at;    /* when the armed timer fires */
    uint8_t *in;          /* unconsumed plaintext */
    size_t in_len;
    size_t in_cap;       /* grows with need, up to CONN_IN_MAX */
    struct outq out;     /* bytes for the socket (ciphertext with TLS) */
    struct outq early;   /* plaintext written before the handshake ended */
    struct chunk *spare; /* one sent chunk kept for reuse */
    struct file_stream file;
    struct net_addr addr; /* the peer */
    char peer[64];
    uint8_t rbuf[RECV_SIZE];
};

struct conn_listener {
    ring_t *ring;
    int fd;
    struct ring_op accept_op;
    bool closing;
    struct net_addr addr;
    struct conn_opts opts;
    const struct conn_handlers *h;
    void (*on_accept)(conn_t *c, void *arg);
    void *arg;
};

static void conn_arm_recv(conn_t *c);
static void conn_flush(conn_t *c);
static void conn_pump_file(conn_t *c);
static void conn_arm_timer(conn_t *c);
static void conn_close_open(conn_t *c);

/* ---- chunks and queues ---- */

static struct chunk *chunk_get(conn_t *c)
{
    struct chunk *k = c->spare;
    if (k != NULL)
        c->spare = NULL;
    else if ((k = malloc(sizeof *k)) == NULL)
        return NULL;
    k->next = NULL;
    k->off = k->len = 0;
    return k;
}

static void chunk_put(conn_t *c, struct chunk *k)
{
    if (c->spare == NULL)
        c->spare = k;
    else
        free(k);
}

static void outq_link(struct outq *q, struct chunk *k)
{
    if (q->tail)
        q->tail->next = k;
    else
        q->head = k;
    q->tail = k;
    q->bytes += k->len - k->off;
}

/* Room at the tail of q, adding a chunk when the tail is full. */
static struct chunk *outq_room(conn_t *c, struct outq *q)
{
    if (q->tail && q->tail->len < CHUNK_SIZE)
        return q->tail;
    struct chunk *k = chunk_get(c);
    if (k)
        outq_link(q, k);
    return k;
}

static int outq_append(conn_t *c, struct outq *q, const uint8_t *data, size_t len)
{
    while (len > 0) {
        struct chunk *k = outq_room(c, q);
        if (k == NULL)
            return -ENOMEM;
        size_t n = CHUNK_SIZE - k->len;
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

/* ---- lifetime ---- */

static void conn_touch(conn_t *c)
{
    c->last_active = ring_now_ms();
}

static bool conn_idle_ops(const conn_t *c)
{
    return !c->connect_busy && !c->recv_busy && !c->send_busy && !c->file_busy && !c->timer_busy;
}

static void conn_free(conn_t *c)
{
    if (c->h->on_close)
        c->h->on_close(c, c->reason);
    if (c->fd >= 0)
        close(c->fd);
    tls_free(c->tls);
    outq_free(&c->out);
    outq_free(&c->early);
    free(c->file.chunk);
    free(c->spare);
    free(c->in);
    free(c);
}

static void conn_maybe_free(conn_t *c)
{
    if (c->state == CS_CLOSED && c->dispatching == 0 && conn_idle_ops(c))
        conn_free(c);
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
    if (c->fd >= 0 && !c->send_busy)
        shutdown(c->fd, SHUT_RDWR);
    if (c->connect_busy)
        ring_cancel(c->ring, &c->connect_op);
    if (c->recv_busy)
        ring_cancel(c->ring, &c->recv_op);
    if (c->send_busy)
        ring_cancel(c->ring, &c->send_op);
    if (c->file_busy)
        ring_cancel(c->ring, &c->file_op);
    if (c->timer_busy)
        ring_cancel(c->ring, &c->timer.op);
    /* Called from outside our handlers (conn_abort on a paused connection)
     * with nothing in flight, no completion would come to free it: make
     * one, so that on_close still runs from the loop, never from inside
     * the caller's conn_abort(). */
    if (c->dispatching == 0 && conn_idle_ops(c)) {
        c->timer_busy = true;
        ring_timer_arm(c->ring, &c->timer, 0);
    }
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

/* A closing connection finishes once its queue is on the wire. */
static void conn_check_finish(conn_t *c)
{
    if (c->state == CS_CLOSING && c->out.bytes == 0 && !c->send_busy && !c->file.active)
        conn_shutdown(c, c->reason);
}

/*
 * Every completion of a connection's own operations comes through here: it
 * marks the operation done, runs its step unless the connection is closed
 * already, and frees the connection if that was the last thing it awaited.
 */
static void conn_complete(conn_t *c, bool *busy, void (*step)(conn_t *c, int res), int res)
{
    conn_enter(c);
    *busy = false;
    if (c->state != CS_CLOSED)
        step(c, res);
    conn_leave(c);
}

/* ---- output ---- */

static int conn_take_tls_out(conn_t *c)
{
    while (tls_out_pending(c->tls) > 0) {
        struct chunk *k = outq_room(c, &c->out);
        if (k == NULL)
            return -ENOMEM;
        size_t n = tls_out_take(c->tls, k->data + k->len, CHUNK_SIZE - k->len);
        k->len += (uint32_t)n;
        c->out.bytes += n;
    }
    return 0;
}

/* Queues plaintext for the socket, through TLS when there is TLS. */
static int conn_queue(conn_t *c, const uint8_t *data, size_t len)
{
    int rc;
    if (c->tls == NULL)
        rc = outq_append(c, &c->out, data, len);
    else if (!tls_handshake_done(c->tls))
        rc = outq_append(c, &c->early, data, len);
    else if ((rc = tls_write(c->tls, data, len)) == 0)
        rc = conn_take_tls_out(c);
    if (c->out.bytes > CONN_HIGH_WATER)
        c->above_high = true;
    return rc;
}

static void conn_flush(conn_t *c)
{
    if (c->send_busy || c->state == CS_CLOSED || c->state == CS_CONNECTING)
        return;
    struct chunk *k = c->out.head;
    while (k && k->off == k->len && k != c->out.tail) { /* only the tail may be empty */
        c->out.head = k->next;
        chunk_put(c, k);
        k = c->out.head;
    }
    if (k == NULL || k->off == k->len)
        return;
    c->send_busy = true;
    ring_send(c->ring, &c->send_op, c->fd, k->data + k->off, k->len - k->off);
}

static void conn_sent(conn_t *c, size_t n)
{
    c->out.bytes -= n;
    struct chunk *k = c->out.head;
    k->off += (uint32_t)n;
    if (k->off == k->len) {
        c->out.head = k->next;
        if (c->out.head == NULL)
            c->out.tail = NULL;
        chunk_put(c, k);
    }
}

static void conn_step_send(conn_t *c, int res)
{
    if (res < 0) {
        conn_shutdown(c, res);
        return;
    }
    conn_touch(c);
    conn_sent(c, (size_t)res);
    conn_flush(c);
    conn_pump_file(c);
    if (c->out.head == NULL && !c->file.active) { /* idle: hold no output memory */
        free(c->spare);
        c->spare = NULL;
    }
    if (c->above_high && c->out.bytes < CONN_LOW_WATER) {
        c->above_high = false;
        if (!c->file.active && c->state == CS_OPEN && c->h->on_drain)
            c->h->on_drain(c);
    }
    conn_check_finish(c);
}

static void handle_send(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    conn_t *c = container_of(op, conn_t, send_op);
    conn_complete(c, &c->send_busy, conn_step_send, res);
}

/* ---- file streaming ---- */

/* Only once open: before that a TLS session cannot encrypt. */
static void conn_pump_file(conn_t *c)
{
    struct file_stream *f = &c->file;
    bool open = c->state == CS_OPEN || c->state == CS_CLOSING;
    if (!f->active || !open || c->file_busy || c->out.bytes >= CONN_HIGH_WATER)
        return;
    if (f->chunk == NULL && (f->chunk = chunk_get(c)) == NULL) {
        conn_shutdown(c, -ENOMEM);
        return;
    }
    size_t n = f->left < CHUNK_SIZE ? (size_t)f->left : CHUNK_SIZE;
    c->file_busy = true;
    ring_read(c->ring, &c->file_op, f->fd, f->chunk->data, n, f->off);
}

static void file_finish(conn_t *c, int err)
{
    struct file_stream *f = &c->file;
    f->active = false;
    if (f->chunk) {
        chunk_put(c, f->chunk);
        f->chunk = NULL;
    }
    if (f->done)
        f->done(c, err);
    if (err < 0)
        conn_shutdown(c, err);
}

static void conn_step_file(conn_t *c, int res)
{
    struct file_stream *f = &c->file;
    if (res <= 0) {
        file_finish(c, res < 0 ? res : -EIO); /* 0: the file shrank under us */
        return;
    }
    f->off += (uint64_t)res;
    f->left -= (uint64_t)res;
    f->chunk->len = (uint32_t)res;
    int rc;
    if (c->tls == NULL) { /* hand the chunk itself to the queue: no copy */
        outq_link(&c->out, f->chunk);
        f->chunk = NULL;
        rc = 0;
    } else if ((rc = tls_write(c->tls, f->chunk->data, (size_t)res)) == 0) {
        rc = conn_take_tls_out(c);
    }
    if (rc < 0 || f->left == 0)
        file_finish(c, rc);
    conn_flush(c);
    conn_pump_file(c);
}

static void handle_file(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    conn_t *c = container_of(op, conn_t, file_op);
    conn_complete(c, &c->file_busy, conn_step_file, res);
}

int conn_send_file(conn_t *c, int fd, uint64_t off, uint64_t len, void (*done)(conn_t *c, int err))
{
    if (c->state >= CS_CLOSING || c->close_on_open)
        return -EPIPE;
    if (c->file.active)
        return -EBUSY;
    c->file = (struct file_stream){.active = true, .fd = fd, .off = off, .left = len, .done = done};
    if (len == 0) {
        file_finish(c, 0);
        return 0;
    }
    if (c->state == CS_OPEN)
        conn_pump_file(c);
    return 0;
}

/* ---- input ---- */

static int conn_keep(conn_t *c, const uint8_t *data, size_t len)
{
    if (len > CONN_IN_MAX - c->in_len)
        return -EMSGSIZE;
    size_t need = c->in_len + len;
    if (need > c->in_cap) { /* most leftovers are a partial header: start small */
        size_t cap = c->in_cap ? c->in_cap * 2 : 4096;
        cap = cap < need ? need : cap > CONN_IN_MAX ? CONN_IN_MAX : cap;
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

/* Offers bytes to on_data; keeps what it leaves. While paused it keeps
 * them all: a plain receive in flight at conn_pause() still completes. */
static void conn_deliver(conn_t *c, const uint8_t *data, size_t len)
{
    if ((c->in_len > 0 || c->paused) && len > 0) {
        int rc = conn_keep(c, data, len);
        if (rc < 0) {
            conn_shutdown(c, rc);
            return;
        }
    }
    if (c->paused)
        return;
    if (c->in_len > 0) {
        data = c->in;
        len = c->in_len;
    }
    ssize_t n = c->h->on_data(c, data, len);
    if (n < 0 || (size_t)n > len) { /* more than offered is a caller's bug: stop */
        conn_shutdown(c, n < 0 ? (int)n : -EINVAL);
        return;
    }
    size_t left = len - (size_t)n;
    if (data == c->in) {
        memmove(c->in, c->in + n, left);
        c->in_len = left;
        if (left == 0 && c->in_cap > 16384) { /* a big message passed: give it back */
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
    } else if (left > 0) {
        int rc = conn_keep(c, data + n, left);
        if (rc < 0)
            conn_shutdown(c, rc);
    }
}

static void conn_open(conn_t *c)
{
    c->state = CS_OPEN;
    c->deadline = 0;
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
    if (c->tls && conn_take_tls_out(c) < 0) {
        conn_shutdown(c, -ENOMEM);
        return;
    }
    conn_flush(c);
    if (c->h->on_open)
        c->h->on_open(c);
    conn_pump_file(c);
    if (c->close_on_open && c->state == CS_OPEN)
        conn_close_open(c);
}

/* The peer finished sending: answer what is queued, then close. */
static void conn_peer_eof(conn_t *c)
{
    if (c->state == CS_OPEN)
        c->state = CS_CLOSING;
    if (c->state == CS_CLOSING)
        conn_check_finish(c);
    else
        conn_shutdown(c, -ECONNRESET); /* mid-handshake */
}

static __thread uint8_t plain_buf[RECV_SIZE];

static void conn_pull_tls(conn_t *c)
{
    if (!tls_handshake_done(c->tls)) {
        int rc = tls_handshake(c->tls);
        int out = conn_take_tls_out(c); /* alerts too: the peer learns why */
        conn_flush(c);
        if (rc < 0 || out < 0) {
            if (rc < 0)
                log_info("conn", "event=handshake_failed peer=%s err=\"%s\"", c->peer,
                         tls_errstr(c->tls));
            conn_shutdown(c, rc < 0 ? rc : out);
            return;
        }
        if (rc == 0)
            return;
        conn_open(c);
    }
    while (c->state == CS_OPEN && !c->paused) {
        ssize_t n = tls_read(c->tls, plain_buf, sizeof plain_buf);
        if (n == 0)
            break;
        if (n == TLS_EOF) {
            conn_peer_eof(c);
            break;
        }
        if (n < 0) {
            conn_shutdown(c, (int)n);
            break;
        }
        conn_deliver(c, plain_buf, (size_t)n);
    }
    if (conn_take_tls_out(c) == 0) /* session tickets, key updates */
        conn_flush(c);
}

static void conn_step_recv(conn_t *c, int res)
{
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
    if (c->tls == NULL) {
        if (c->state == CS_OPEN)
            conn_deliver(c, c->rbuf, (size_t)res);
    } else {
        int rc = tls_feed(c->tls, c->rbuf, (size_t)res);
        if (rc < 0)
            conn_shutdown(c, rc);
        else
            conn_pull_tls(c);
    }
    conn_arm_recv(c);
}

static void handle_recv(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    conn_t *c = container_of(op, conn_t, recv_op);
    conn_complete(c, &c->recv_busy, conn_step_recv, res);
}

static void conn_arm_recv(conn_t *c)
{
    if (c->recv_busy || c->paused || (c->state != CS_OPEN && c->state != CS_HANDSHAKE))
        return;
    c->recv_busy = true;
    ring_recv(c->ring, &c->recv_op, c->fd, c->rbuf, sizeof c->rbuf);
}

void conn_pause(conn_t *c)
{
    c->paused = true;
}

void conn_resume(conn_t *c)
{
    if (!c->paused)
        return;
    c->paused = false;
    conn_enter(c);
    if (c->state == CS_OPEN && c->in_len > 0)
        conn_deliver(c, NULL, 0);
    if (c->tls && c->state == CS_OPEN)
        conn_pull_tls(c); /* plaintext may wait inside the engine */
    conn_arm_recv(c);
    conn_leave(c);
}

/* ---- timers ---- */

/* Expired, or cancelled to be re-armed earlier: either way, look again. */
static void conn_step_timer(conn_t *c, int res)
{
    (void)res;
    uint64_t now = ring_now_ms();
    if ((c->deadline && now >= c->deadline) || (c->idle_ms && now - c->last_active >= c->idle_ms)) {
        log_info("conn", "event=timeout peer=%s", c->peer);
        conn_shutdown(c, -ETIMEDOUT);
    } else {
        conn_arm_timer(c);
    }
}

static void handle_timer(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    conn_t *c = container_of(op, conn_t, timer.op);
    conn_complete(c, &c->timer_busy, conn_step_timer, res);
}

static void conn_arm_timer(conn_t *c)
{
    uint64_t at = 0;
    if (c->idle_ms)
        at = c->last_active + c->idle_ms;
    if (c->deadline && (at == 0 || c->deadline < at))
        at = c->deadline;
    if (at == 0 || c->state == CS_CLOSED)
        return;
    if (c->timer_busy) {
        if (at < c->timer_at) /* fires late: re-arm from the cancellation */
            ring_cancel(c->ring, &c->timer.op);
        return;
    }
    uint64_t now = ring_now_ms();
    c->timer_busy = true;
    c->timer_at = at;
    ring_timer_arm(c->ring, &c->timer, at > now ? at - now : 0);
}

void conn_set_deadline(conn_t *c, uint32_t ms)
{
    c->deadline = ms ? ring_now_ms() + ms : 0;
    conn_arm_timer(c);
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
    c->connect_op.cb = NULL;
    c->recv_op.cb = handle_recv;
    c->send_op.cb = handle_send;
    c->file_op.cb = handle_file;
    c->timer.op.cb = handle_timer;
    conn_touch(c);
    if (o->tls && tls_new(&c->tls, o->tls, o->expect_peer, o->expect_role) < 0) {
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

static void conn_step_connect(conn_t *c, int res)
{
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
    (void)flags;
    conn_t *c = container_of(op, conn_t, connect_op);
    conn_complete(c, &c->connect_busy, conn_step_connect, res);
}

int conn_connect(conn_t **out, ring_t *r, const struct net_addr *addr, const struct conn_opts *o,
                 const struct conn_handlers *h, void *udata)
{
    int fd = net_socket_for(addr);
    if (fd < 0)
        return fd;
    conn_t *c = conn_new(r, fd, o, h);
    if (c == NULL) {
        close(fd);
        return -ENOMEM;
    }
    c->udata = udata;
    c->addr = *addr;
    net_addr_str(addr, c->peer, sizeof c->peer);
    c->state = CS_CONNECTING;
    c->connect_op.cb = handle_connect;
    c->connect_busy = true;
    ring_connect(r, &c->connect_op, fd, (const struct sockaddr *)&c->addr.ss, c->addr.len);
    conn_start(c, o);
    *out = c;
    return 0;
}

static void listener_accept(conn_listener_t *l, int fd)
{
    conn_t *c = conn_new(l->ring, fd, &l->opts, l->h);
    if (c == NULL) {
        log_warn("conn", "event=accept_dropped err=\"%s\"", strerror(ENOMEM));
        close(fd);
        return;
    }
    c->addr.len = sizeof c->addr.ss;
    if (getpeername(fd, (struct sockaddr *)&c->addr.ss, &c->addr.len) == 0)
        net_addr_str(&c->addr, c->peer, sizeof c->peer);
    else
        strcpy(c->peer, "?");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* best effort */
    conn_enter(c);
    c->state = c->tls ? CS_HANDSHAKE : CS_OPEN;
    if (l->on_accept)
        l->on_accept(c, l->arg);
    if (c->state == CS_OPEN && c->h->on_open)
        c->h->on_open(c);
    else if (c->state == CS_HANDSHAKE)
        conn_start(c, &l->opts);
    conn_arm_timer(c);
    conn_arm_recv(c);
    conn_leave(c);
}

static void handle_accept(struct ring_op *op, int res, uint32_t flags)
{
    conn_listener_t *l = container_of(op, conn_listener_t, accept_op);
    bool more = flags & RING_MORE;
    if (res >= 0 && !l->closing)
        listener_accept(l, res);
    else if (res >= 0)
        close(res);
    else if (!l->closing && res != -ECANCELED && res != -EINTR)
        log_warn("conn", "event=accept_failed err=\"%s\"", strerror(-res));
    if (more)
        return;
    if (l->closing) {
        close(l->fd);
        free(l);
        return;
    }
    ring_accept(l->ring, &l->accept_op, l->fd); /* the multishot ended: re-arm */
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
    l->ring = r;
    l->fd = fd;
    l->opts = *opts;
    l->h = h;
    l->on_accept = on_accept;
    l->arg = arg;
    l->accept_op.cb = handle_accept;
    int rc = net_local_addr(fd, &l->addr);
    if (rc < 0) {
        close(fd);
        free(l);
        return rc;
    }
    ring_accept(r, &l->accept_op, fd);
    *out = l;
    return 0;
}

const struct net_addr *conn_listener_addr(const conn_listener_t *l)
{
    return &l->addr;
}

void conn_listener_close(conn_listener_t *l)
{
    l->closing = true;
    shutdown(l->fd, SHUT_RDWR);
    ring_cancel(l->ring, &l->accept_op);
}

/* ---- public odds and ends ---- */

int conn_write(conn_t *c, const void *data, size_t len)
{
    if (c->state >= CS_CLOSING || c->close_on_open)
        return -EPIPE;
    if (c->file.active)
        return -EBUSY;
    int rc = conn_queue(c, data, len);
    if (rc < 0) {
        conn_shutdown(c, rc);
        return rc;
    }
    conn_flush(c);
    return 0;
}

size_t conn_queued(const conn_t *c)
{
    return c->out.bytes;
}

/* Output written before open waits in `early` (TLS) or `out` (plain). */
static bool conn_wrote_early(const conn_t *c)
{
    return c->file.active || (c->tls ? c->early.bytes : c->out.bytes) > 0;
}

static void conn_close_open(conn_t *c)
{
    c->state = CS_CLOSING;
    if (c->tls) {
        tls_close(c->tls);
        if (conn_take_tls_out(c) < 0) {
            conn_shutdown(c, -ENOMEM);
            return;
        }
    }
    conn_flush(c);
    conn_check_finish(c);
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

const char *conn_peer_addr(const conn_t *c)
{
    return c->peer;
}
