/*
 * mux — frames and streamed bodies sharing one connection.
 *
 * The design is simple: each side has at most FRAME_STREAMS_MAX streams of
 * its own sending and as many of the peer's receiving, in two small tables
 * searched by id. Sending, a stream has a window (bytes it may still send);
 * the pump walks the table round-robin and queues one chunk of each stream
 * that has window, while the connection's queue is at most CONN_HIGH_WATER,
 * and stops; a new stream, conn's on_drain (mux_drain), a CREDIT or a file
 * chunk's done runs it again. Frames without a body bypass the pump and go
 * to conn at once, which is what puts them ahead of every chunk not yet
 * queued.
 *
 * Receiving, the decoder delivers each DATA frame's bytes to on_body, and
 * credit goes back once the consumer has taken a quarter window (or the
 * rest of the body), so that at most FRAME_WINDOW bytes of a stream are
 * ever in flight or with a consumer that holds them. Every stream rule a
 * peer can break is checked before its bytes are delivered, and answered
 * with its FRAME_E* code.
 *
 * Chunks reach conn through mux_out() alone, as the caller's own memory or
 * file region (conn_send_buf, conn_send_file): the mux copies no body byte,
 * and a stream's done runs from conn's done of its last chunk, so from the
 * loop, never inside the call that started the stream.
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
    struct mux_in *cur; /* the stream of the DATA frame being decoded */
    uint8_t *room;      /* mux_body_into(): where room_stream's next bytes go, or NULL */
    size_t room_len;
    uint32_t room_stream;
    unsigned pending; /* chunks conn holds, over all streams */
    bool dead;        /* mux_free() came; freed once conn holds no chunk */
};

/* ---- output ---- */

static void chunk_done(conn_t *c, void *arg, int err);

/*
 * Hands the stream's next n bytes to conn, which takes them from the
 * caller's buffer or file when the network takes them (plain TCP sends the
 * memory and splices the file as they are; TLS encrypts from them):
 * chunk_done runs, from the loop, once conn no longer needs them.
 */
static int mux_out(mux_t *m, struct mux_out *s, size_t n)
{
    if (s->buf != NULL)
        return conn_send_buf(m->c, s->buf + s->sent, n, chunk_done, s);
    return conn_send_file(m->c, s->fd, s->off + s->sent, n, chunk_done, s);
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

static void mux_maybe_free(mux_t *m)
{
    if (m->dead && m->pending == 0)
        free(m);
}

static void stream_finish(mux_t *m, struct mux_out *s, int err)
{
    mux_done_fn done = s->done;
    void *arg = s->arg;
    s->id = 0;
    m->nout--;
    done(m, arg, err);
}

static void mux_pump(mux_t *m);

/* A slot is reused only once conn holds none of its chunks: until then
 * their done callbacks point at it. */
static void chunk_done(conn_t *c, void *arg, int err)
{
    (void)c;
    struct mux_out *s = arg;
    mux_t *m = s->m;
    s->pending--;
    m->pending--;
    if (m->dead) {
        mux_maybe_free(m);
        return;
    }
    if (err < 0 && s->err == 0)
        s->err = err;
    if (s->pending == 0 && (s->err < 0 || s->sent == s->len))
        stream_finish(m, s, s->err);
    else if (s->buf == NULL)
        mux_pump(m); /* its next chunk */
}

/* One chunk: its header, then its bytes. */
static int send_chunk(mux_t *m, struct mux_out *s, size_t n)
{
    int rc = send_bare(m, FRAME_DATA, s->id, n);
    if (rc == 0)
        rc = mux_out(m, s, n);
    if (rc < 0)
        return rc;
    s->sent += n;
    s->window -= n;
    s->pending++;
    m->pending++;
    return 0;
}

/* A file counts in conn_queued() only once read: one chunk of it at a time. */
static bool out_ready(const struct mux_out *s)
{
    if (s->id == 0 || s->err < 0 || s->window == 0 || s->sent == s->len)
        return false;
    return s->buf != NULL || s->pending == 0;
}

static struct mux_out *next_ready(mux_t *m)
{
    for (unsigned i = 0; i < FRAME_STREAMS_MAX; i++) {
        unsigned k = (m->rr + i) % FRAME_STREAMS_MAX;
        if (out_ready(&m->out[k])) {
            m->rr = (k + 1) % FRAME_STREAMS_MAX;
            return &m->out[k];
        }
    }
    return NULL;
}

static void mux_pump(mux_t *m)
{
    while (conn_queued(m->c) <= CONN_HIGH_WATER) {
        struct mux_out *s = next_ready(m);
        if (s == NULL)
            return;
        uint64_t n = s->len - s->sent;
        if (n > s->window)
            n = s->window;
        if (n > FRAME_CHUNK_MAX)
            n = FRAME_CHUNK_MAX;
        if (send_chunk(m, s, (size_t)n) < 0)
            return; /* closing: the streams end with the connection */
    }
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
    mux_pump(m); /* conn runs every done from the loop, never in here */
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

int mux_body_into(mux_t *m, uint32_t stream, void *dst, size_t len)
{
    if (m->cur == NULL || m->cur->id != stream || stream == 0)
        return -ENOENT;
    m->room = dst;
    m->room_len = len;
    m->room_stream = stream;
    return 0;
}

/* Reads what follows of the DATA frame being decoded into the room its
 * consumer offered, as long as it offers room and bytes are there. The
 * room is for that stream's frame alone: when the offer went on into
 * another stream's frame, whose consumer offered none, it is not used. */
static int mux_fill_room(mux_t *m)
{
    int rc = 0;
    while (rc == 0 && m->room != NULL) {
        uint8_t *dst = m->room;
        bool ours = m->cur != NULL && m->cur->id == m->room_stream;
        uint64_t run = ours ? frame_decoder_body_run(m->dec) : 0;
        size_t want = run < m->room_len ? (size_t)run : m->room_len;
        m->room = NULL;
        ssize_t n = want ? conn_read_now(m->c, dst, want) : 0;
        if (n <= 0)
            break;
        rc = frame_decoder_feed(m->dec, dst, (size_t)n); /* on_body may offer room again */
    }
    m->room = NULL;
    return rc;
}

ssize_t mux_feed(mux_t *m, const uint8_t *data, size_t len)
{
    m->room = NULL;
    int rc = frame_decoder_feed(m->dec, data, len);
    if (rc == 0)
        rc = mux_fill_room(m);
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
    m->h = *h;
    m->udata = udata;
    m->side = side;
    m->next_id = side == MUX_DIALLER ? 1 : 2;
    *out = m;
    return 0;
}

void mux_free(mux_t *m)
{
    if (m == NULL)
        return;
    m->dead = true;
    for (unsigned i = 0; i < FRAME_STREAMS_MAX; i++) {
        if (m->out[i].id != 0)
            stream_finish(m, &m->out[i], m->out[i].err < 0 ? m->out[i].err : -EPIPE);
        if (m->in[i].id != 0)
            in_end(m, &m->in[i], -EPIPE);
    }
    frame_decoder_free(m->dec);
    m->dec = NULL;
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
