/*
 * mux — frames and streamed bodies sharing one connection.
 *
 * The design is simple: each side has at most FRAME_STREAMS_MAX streams of
 * its own sending and as many of the peer's receiving, in two small tables
 * searched by id. Sending, a stream has a window (bytes it may still send);
 * the pump walks the table round-robin and writes one chunk of each stream
 * that has window, while the connection's queue is at most CONN_HIGH_WATER,
 * and stops; conn's on_drain (mux_drain), a CREDIT, a file read completing
 * or a send's kick timer runs it again. The kick exists so that a done
 * callback never runs inside the mux_send_buf() that started its stream.
 * Frames without a body bypass the pump and go to conn at once, which is
 * what puts them ahead of every chunk not yet written.
 *
 * Receiving, the decoder delivers each DATA frame's bytes to on_body, and
 * credit goes back once the consumer has taken a quarter window (or the
 * rest of the body), so that at most FRAME_WINDOW bytes of a stream are
 * ever in flight or with a consumer that holds them. Every stream rule a
 * peer can break is checked before its bytes are delivered, and answered
 * with its FRAME_E* code.
 *
 * Chunks reach conn through mux_out() alone, built to the shape of a
 * zero-copy send (the bytes stay the caller's until a done callback).
 */
#include "convoy/mux.h"

#include "convoy/ctl.h"
#include "convoy/log.h"

#include <errno.h>
#include <stdlib.h>

#define CREDIT_STEP (FRAME_WINDOW / 4) /* credit goes back in pieces at least this big */

struct mux_out {        /* a stream this side sends */
    mux_t *m;           /* back pointer, for chunk_done */
    uint32_t id;        /* 0: the slot is free */
    const uint8_t *buf; /* the body, or NULL when it comes from fd */
    int fd;
    uint64_t off;     /* fd: offset of the body's first byte */
    uint64_t len;     /* body bytes */
    uint64_t sent;    /* handed to mux_out */
    uint64_t window;  /* bytes the peer lets us send still */
    unsigned pending; /* chunks handed to mux_out whose done has not run */
    int err;          /* the first chunk that failed: no more are sent */
    mux_done_fn done;
    void *arg;
};

struct mux_in {  /* a stream the peer sends */
    uint32_t id; /* 0: the slot is free */
    bool held;   /* mux_hold(): no credit for what arrives */
    uint64_t len;
    uint64_t received; /* bytes delivered to on_body */
    uint64_t consumed; /* of those, not held back */
    uint64_t granted;  /* the window plus every credit sent */
};

struct mux {
    conn_t *c;
    ring_t *ring;
    struct mux_handlers h;
    void *udata;
    frame_decoder_t *dec;
    enum mux_side side;
    uint64_t next_id;   /* the id our next stream gets */
    uint32_t peer_last; /* the highest id the peer opened */
    unsigned nout, nin; /* slots in use */
    unsigned rr;        /* the out slot the pump looks at first */
    struct mux_out out[FRAME_STREAMS_MAX];
    struct mux_in in[FRAME_STREAMS_MAX];
    struct mux_in *cur;      /* the stream of the DATA frame being decoded */
    struct ring_timer kick;  /* runs the pump after a send */
    struct ring_op read_op;  /* the one file read */
    struct mux_out *reading; /* the file stream whose chunk is in fbuf */
    uint8_t *fbuf;           /* FRAME_CHUNK_MAX bytes, from the first file on */
    unsigned pending;        /* chunks conn holds, over all streams */
    bool kick_busy, read_busy;
    bool dead; /* mux_free() came; freed once nothing is in flight */
};

static void mux_pump(mux_t *m);
static void mux_maybe_free(mux_t *m);

/* ---- output ---- */

/*
 * Hands len bytes at p to conn; done runs once conn no longer needs them.
 * conn_write copies, so done runs before this returns. With conn_send_buf
 * the body becomes `return conn_send_buf(m->c, p, len, done, arg);`, the
 * rest of the mux unchanged. On failure done does not run.
 */
static int mux_out(mux_t *m, const void *p, size_t len, void (*done)(conn_t *c, void *arg, int err),
                   void *arg)
{
    int rc = conn_write(m->c, p, len);
    if (rc == 0)
        done(m->c, arg, 0);
    return rc;
}

/* A DATA or CREDIT header: 24 bytes and nothing else of its own. */
static int send_bare(mux_t *m, enum frame_type type, uint32_t stream, uint64_t n)
{
    struct frame_hdr h = {
        .version = FRAME_VERSION, .type = (uint8_t)type, .stream = stream, .body_len = n};
    uint8_t buf[FRAME_HDR_LEN];
    frame_hdr_encode(buf, &h);
    return conn_write(m->c, buf, sizeof buf);
}

static void stream_finish(mux_t *m, struct mux_out *s, int err)
{
    mux_done_fn done = s->done;
    void *arg = s->arg;
    s->id = 0;
    m->nout--;
    done(m, arg, err);
}

/* A slot is reused only once conn holds none of its chunks: until then
 * their done callbacks point at it. */
static void chunk_done(conn_t *c, void *arg, int err)
{
    (void)c;
    struct mux_out *s = arg;
    mux_t *m = s->m;
    s->pending--;
    m->pending--;
    if (s->buf == NULL)
        m->reading = NULL; /* fbuf is free again */
    if (m->dead) {
        mux_maybe_free(m);
        return;
    }
    if (err < 0 && s->err == 0)
        s->err = err;
    if (s->pending == 0 && (s->err < 0 || s->sent == s->len))
        stream_finish(m, s, s->err);
}

/* One chunk: its header, then its bytes. s may be finished when this returns. */
static int send_chunk(mux_t *m, struct mux_out *s, const uint8_t *p, size_t n)
{
    int rc = send_bare(m, FRAME_DATA, s->id, n);
    if (rc < 0)
        return rc;
    s->sent += n;
    s->window -= n;
    s->pending++;
    m->pending++;
    rc = mux_out(m, p, n, chunk_done, s);
    if (rc < 0) {
        s->pending--;
        m->pending--;
    }
    return rc;
}

static bool out_ready(const mux_t *m, const struct mux_out *s)
{
    if (s->id == 0 || s->err < 0 || s->window == 0 || s->sent == s->len)
        return false;
    return s->buf != NULL || (m->reading == NULL && !m->read_busy);
}

static struct mux_out *next_ready(mux_t *m)
{
    for (unsigned i = 0; i < FRAME_STREAMS_MAX; i++) {
        unsigned k = (m->rr + i) % FRAME_STREAMS_MAX;
        if (out_ready(m, &m->out[k])) {
            m->rr = (k + 1) % FRAME_STREAMS_MAX;
            return &m->out[k];
        }
    }
    return NULL;
}

static void read_chunk(mux_t *m, struct mux_out *s, size_t n)
{
    m->reading = s;
    m->read_busy = true;
    ring_read(m->ring, &m->read_op, s->fd, m->fbuf, n, s->off + s->sent);
}

static void mux_pump(mux_t *m)
{
    if (m->dead)
        return;
    while (conn_queued(m->c) <= CONN_HIGH_WATER) {
        struct mux_out *s = next_ready(m);
        if (s == NULL)
            return;
        uint64_t n = s->len - s->sent;
        if (n > s->window)
            n = s->window;
        if (n > FRAME_CHUNK_MAX)
            n = FRAME_CHUNK_MAX;
        if (s->buf == NULL)
            read_chunk(m, s, (size_t)n);
        else if (send_chunk(m, s, s->buf + s->sent, (size_t)n) < 0)
            return; /* closing: mux_free finishes the streams */
    }
}

static void mux_maybe_free(mux_t *m)
{
    if (m->dead && !m->kick_busy && !m->read_busy && m->pending == 0) {
        free(m->fbuf);
        free(m);
    }
}

static void handle_read(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    mux_t *m = container_of(op, mux_t, read_op);
    struct mux_out *s = m->reading;
    m->read_busy = false;
    if (m->dead) {
        m->reading = NULL;
        stream_finish(m, s, -EPIPE);
        mux_maybe_free(m);
        return;
    }
    if (res <= 0) { /* 0: the file shrank under us */
        int err = res < 0 ? res : -EIO;
        log_warn("mux", "event=read_failed peer=%s stream=%u err=\"%s\"", conn_peer_addr(m->c),
                 s->id, conn_reason_str(err));
        m->reading = NULL;
        stream_finish(m, s, err);
        conn_close(m->c); /* the peer waits for bytes that will not come */
        return;
    }
    if (send_chunk(m, s, m->fbuf, (size_t)res) == 0)
        mux_pump(m);
}

static void handle_kick(struct ring_op *op, int res, uint32_t flags)
{
    (void)res, (void)flags;
    mux_t *m = container_of(op, mux_t, kick.op);
    m->kick_busy = false;
    mux_pump(m);
    mux_maybe_free(m);
}

static void kick(mux_t *m)
{
    if (m->kick_busy)
        return;
    m->kick_busy = true;
    ring_timer_arm(m->ring, &m->kick, 0);
}

/* Queues the stream's frame and gives it a slot; the pump sends the body. */
static int stream_start(mux_t *m, enum frame_type type, const cJSON *meta,
                        const struct mux_out *want, uint32_t *stream)
{
    if (m->dead)
        return -EPIPE;
    if (want->len == 0)
        return -EINVAL;
    if (m->nout == FRAME_STREAMS_MAX)
        return -EAGAIN;
    if (m->next_id > UINT32_MAX)
        return -ENOSPC;
    uint32_t id = (uint32_t)m->next_id;
    uint8_t *buf;
    size_t n;
    int rc = frame_encode_streamed(type, meta, id, want->len, &buf, &n);
    if (rc < 0)
        return rc;
    rc = conn_write(m->c, buf, n);
    free(buf);
    if (rc < 0)
        return rc;
    struct mux_out *s = m->out;
    while (s->id != 0)
        s++;
    *s = *want;
    s->m = m;
    s->id = id;
    s->window = want->len < FRAME_WINDOW ? want->len : FRAME_WINDOW;
    m->nout++;
    m->next_id += 2;
    if (stream)
        *stream = id;
    kick(m);
    return 0;
}

int mux_send_buf(mux_t *m, enum frame_type type, const cJSON *meta, const void *body, uint64_t len,
                 mux_done_fn done, void *arg, uint32_t *stream)
{
    struct mux_out want = {.buf = body, .fd = -1, .len = len, .done = done, .arg = arg};
    return stream_start(m, type, meta, &want, stream);
}

int mux_send_file(mux_t *m, enum frame_type type, const cJSON *meta, int fd, uint64_t off,
                  uint64_t len, mux_done_fn done, void *arg, uint32_t *stream)
{
    if (m->fbuf == NULL && (m->fbuf = malloc(FRAME_CHUNK_MAX)) == NULL)
        return -ENOMEM;
    struct mux_out want = {.fd = fd, .off = off, .len = len, .done = done, .arg = arg};
    return stream_start(m, type, meta, &want, stream);
}

int mux_send(mux_t *m, enum frame_type type, const cJSON *meta)
{
    return ctl_send(m->c, type, meta);
}

void mux_drain(mux_t *m)
{
    mux_pump(m);
}

/* ---- input ---- */

static struct mux_in *in_find(mux_t *m, uint32_t id)
{
    for (unsigned i = 0; i < FRAME_STREAMS_MAX; i++) {
        if (m->in[i].id == id)
            return &m->in[i];
    }
    return NULL;
}

static struct mux_out *out_find(mux_t *m, uint32_t id)
{
    for (unsigned i = 0; i < FRAME_STREAMS_MAX; i++) {
        if (m->out[i].id == id)
            return &m->out[i];
    }
    return NULL;
}

/* Sends the credit the consumer has earned: none while it is under a
 * CREDIT_STEP, unless it is the last the body needs. */
static void grant(mux_t *m, struct mux_in *s)
{
    uint64_t want = s->consumed + FRAME_WINDOW;
    if (want > s->len)
        want = s->len;
    uint64_t credit = want - s->granted;
    if (credit == 0 || (credit < CREDIT_STEP && want < s->len))
        return;
    if (send_bare(m, FRAME_CREDIT, s->id, credit) == 0)
        s->granted = want;
}

static int in_end(mux_t *m, struct mux_in *s, int err)
{
    uint32_t id = s->id;
    s->id = 0;
    m->nin--;
    return m->h.on_end(m, id, err);
}

/* A STREAMED frame: the peer's next id, a free slot, then the handler. */
static int stream_open(mux_t *m, const struct frame_hdr *h, const cJSON *meta)
{
    bool peer_odd = m->side == MUX_ACCEPTOR;
    if ((h->stream & 1u) != peer_odd || h->stream <= m->peer_last)
        return FRAME_ESTREAM_ID;
    if (m->nin == FRAME_STREAMS_MAX)
        return FRAME_ESTREAMS;
    struct mux_in *s = in_find(m, 0);
    *s = (struct mux_in){.id = h->stream, .len = h->body_len};
    s->granted = s->len < FRAME_WINDOW ? s->len : FRAME_WINDOW;
    m->peer_last = h->stream;
    m->nin++;
    return m->h.on_frame(m, h, meta, h->stream);
}

static int data_begin(mux_t *m, const struct frame_hdr *h)
{
    struct mux_in *s = in_find(m, h->stream);
    if (s == NULL)
        return FRAME_ESTREAM_GONE;
    if (h->body_len > s->granted - s->received)
        return FRAME_EFLOW;
    m->cur = s;
    return 0;
}

static int credit_take(mux_t *m, const struct frame_hdr *h)
{
    struct mux_out *s = out_find(m, h->stream);
    if (s == NULL)
        return FRAME_ESTREAM_GONE;
    uint64_t window = s->window + h->credit;
    if (window > FRAME_WINDOW || s->sent + window > s->len)
        return FRAME_EFLOW;
    s->window = window;
    mux_pump(m);
    return 0;
}

static int dec_frame(void *ctx, const struct frame_hdr *h, const cJSON *meta)
{
    mux_t *m = ctx;
    switch (h->type) {
    case FRAME_DATA:
        return data_begin(m, h);
    case FRAME_CREDIT:
        return credit_take(m, h);
    default:
        if (h->flags & FRAME_F_STREAMED)
            return stream_open(m, h, meta);
        if (h->body_len > 0) /* every body of ours is a stream */
            return FRAME_EBODY_LEN;
        return m->h.on_frame(m, h, meta, 0);
    }
}

static int dec_body(void *ctx, const uint8_t *data, size_t len)
{
    mux_t *m = ctx;
    struct mux_in *s = m->cur;
    s->received += len;
    int rc = m->h.on_body(m, s->id, data, len);
    if (rc < 0)
        return rc;
    if (!s->held)
        s->consumed = s->received;
    grant(m, s);
    return 0;
}

static int dec_end(void *ctx)
{
    mux_t *m = ctx;
    struct mux_in *s = m->cur;
    m->cur = NULL;
    if (s == NULL || s->received < s->len)
        return 0;
    return in_end(m, s, 0);
}

static const struct frame_sink mux_sink = {dec_frame, dec_body, dec_end};

ssize_t mux_feed(mux_t *m, const uint8_t *data, size_t len)
{
    int rc = frame_decoder_feed(m->dec, data, len);
    if (frame_is_err(rc))
        ctl_refuse(m->c, frame_err_code(rc), "%s", frame_strerror(rc));
    else if (rc < 0 && rc != -EPROTO)
        return rc;
    return (ssize_t)len;
}

int mux_hold(mux_t *m, uint32_t stream)
{
    struct mux_in *s = stream ? in_find(m, stream) : NULL;
    if (s == NULL)
        return -ENOENT;
    s->held = true;
    return 0;
}

int mux_release(mux_t *m, uint32_t stream)
{
    struct mux_in *s = stream ? in_find(m, stream) : NULL;
    if (s == NULL)
        return -ENOENT;
    s->held = false;
    s->consumed = s->received;
    grant(m, s);
    return 0;
}

/* ---- lifetime ---- */

int mux_new(mux_t **out, conn_t *c, enum mux_side side, uint64_t body_max,
            const struct mux_handlers *h, void *udata)
{
    if (c == NULL || h == NULL || !h->on_frame || !h->on_body || !h->on_end)
        return -EINVAL;
    mux_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return -ENOMEM;
    struct frame_limits lim = {.meta_max = FRAME_META_MAX, .body_max = body_max};
    if (frame_decoder_new(&m->dec, &lim, &mux_sink, m) < 0) {
        free(m);
        return -ENOMEM;
    }
    m->c = c;
    m->ring = conn_ring(c);
    m->h = *h;
    m->udata = udata;
    m->side = side;
    m->next_id = side == MUX_DIALLER ? 1 : 2;
    m->kick.op.cb = handle_kick;
    m->read_op.cb = handle_read;
    *out = m;
    return 0;
}

void mux_free(mux_t *m)
{
    if (m == NULL)
        return;
    m->dead = true;
    for (unsigned i = 0; i < FRAME_STREAMS_MAX; i++) {
        struct mux_out *s = &m->out[i];
        if (s->id != 0 && !(m->read_busy && s == m->reading)) /* that one: when its read ends */
            stream_finish(m, s, -EPIPE);
        if (m->in[i].id != 0)
            in_end(m, &m->in[i], -EPIPE);
    }
    frame_decoder_free(m->dec);
    m->dec = NULL;
    if (m->kick_busy)
        ring_cancel(m->ring, &m->kick.op);
    if (m->read_busy)
        ring_cancel(m->ring, &m->read_op);
    mux_maybe_free(m);
}

conn_t *mux_conn(const mux_t *m)
{
    return m->c;
}

void *mux_udata(const mux_t *m)
{
    return m->udata;
}
