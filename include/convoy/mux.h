/*
 * mux — frames and streamed bodies sharing one connection.
 *
 * A message without a body is one frame, sent at once. A message with a body
 * opens a stream: its frame goes out at once (STREAMED, with the body's
 * length), and the body follows in DATA chunks of at most FRAME_CHUNK_MAX
 * bytes, round-robin across the streams that have credit, written only while
 * the connection's queue is under CONN_HIGH_WATER. So a frame sent while
 * bodies stream waits behind at most a high-water mark of chunks, never
 * behind a body. The receiver grants credit per stream as its consumer takes
 * the bytes; a consumer that holds its credit stalls its own stream and
 * nothing else. The wire rules are in docs/protocol-frames.md.
 *
 * The mux never copies or buffers a body: the sender's chunks go to conn as
 * the caller's own memory or file region (conn_send_buf, conn_send_file),
 * the receiver's go to on_body as pointers into what conn delivered.
 *
 * The owner keeps its own conn handlers and calls in from them: mux_feed()
 * from on_data, mux_drain() from on_drain, mux_free() from on_close. Create
 * the mux in on_open (before that conn_queued() does not see what waits for
 * the handshake), and do not use conn_write() or conn_send_file() on the
 * connection beside it: a file streams through mux_send_file(). One thread,
 * the connection's.
 */
#ifndef CONVOY_MUX_H
#define CONVOY_MUX_H

#include "convoy/conn.h"
#include "convoy/frame.h"

#include <stdint.h>
#include <sys/types.h>

typedef struct mux mux_t;

/* Which end of the connection: the dialler opens odd streams, the acceptor
 * even ones, so that the two never pick the same id. */
enum mux_side { MUX_DIALLER, MUX_ACCEPTOR };

/*
 * What the receiving side calls. on_frame gets every message: stream 0 when
 * it has no body, else the stream its h->body_len bytes come on, through
 * on_body (pointers into the connection's buffer, valid during the call)
 * and then on_end once. meta is valid during on_frame only. on_frame and
 * on_body return 0, or a negative value that stops reading (see mux_feed);
 * on_end's err is 0 when every byte came, or -EPIPE from mux_free when the
 * connection ended first (its return value is then ignored).
 */
struct mux_handlers {
    int (*on_frame)(mux_t *m, const struct frame_hdr *h, const cJSON *meta, uint32_t stream);
    int (*on_body)(mux_t *m, uint32_t stream, const uint8_t *data, size_t len);
    int (*on_end)(mux_t *m, uint32_t stream, int err);
};

/* The sender's callback: conn no longer needs the body (err 0: every byte
 * is queued as output), or it could not all go: the connection ended first
 * (its close reason, or -EPIPE), or a file read failed (-errno; -EIO for a
 * file that ended early), which closes the connection. Runs exactly once
 * per stream, from the loop, never inside the call that started it. */
typedef void (*mux_done_fn)(mux_t *m, void *arg, int err);

/*
 * A mux on an open connection. body_max is the largest body this side
 * accepts (a STREAMED frame announcing more is refused). h is copied.
 * Returns 0, -EINVAL or -ENOMEM.
 */
int mux_new(mux_t **out, conn_t *c, enum mux_side side, uint64_t body_max,
            const struct mux_handlers *h, void *udata);

/*
 * From the connection's on_close: every stream still sending gets
 * done(-EPIPE) and every stream still receiving on_end(-EPIPE), here; then
 * the mux is freed (conn has run the done of every chunk it held before
 * on_close). Do not start streams from those callbacks. NULL is a no-op.
 */
void mux_free(mux_t *m);

/*
 * From on_data: decodes data and calls the handlers. A malformed frame or
 * one that breaks the stream rules is refused (ctl_refuse, with the codec's
 * code and reason); so is an inline body, which this side never sends. A
 * handler that refused the peer itself (ctl_refuse) returns -EPROTO. Returns
 * len, or a handler's other negative value for on_data to close with.
 */
ssize_t mux_feed(mux_t *m, const uint8_t *data, size_t len);

/*
 * From on_body of stream: where its next body bytes belong, up to len.
 * Those that follow at once, in the same DATA frame, are read straight
 * into dst (conn_read_now: opened there by TLS, received there plain) and
 * come to on_body as one piece at dst, so the consumer need not copy
 * them. dst must stay valid until that on_body, or the end of this
 * mux_feed: all of it happens inside the call. 0, or -ENOENT outside
 * on_body of stream.
 */
int mux_body_into(mux_t *m, uint32_t stream, void *dst, size_t len);

/* From on_drain: the connection has room for more chunks. */
void mux_drain(mux_t *m);

/* A message without body, queued at once ahead of every chunk not yet
 * written. meta may be NULL. Returns 0, -errno or FRAME_E* (ctl_send). */
int mux_send(mux_t *m, enum frame_type type, const cJSON *meta);

/*
 * A message with len (≥ 1) bytes of body from body, which the caller keeps
 * valid and unchanged until done. Its frame is queued at once, so messages
 * keep the order they were sent in; the body follows. *stream (may be NULL)
 * gets the stream's id. Returns 0; -EAGAIN while FRAME_STREAMS_MAX of this
 * side's streams are sending (a done frees one); -ENOSPC once the
 * connection's stream ids are spent; -EINVAL for len 0; -EPIPE once closing;
 * or a FRAME_E* code for type or meta. done runs only after 0 was returned.
 */
int mux_send_buf(mux_t *m, enum frame_type type, const cJSON *meta, const void *body, uint64_t len,
                 mux_done_fn done, void *arg, uint32_t *stream);

/* As mux_send_buf, the body being len bytes of fd from offset off, handed
 * to conn one chunk at a time (plain TCP splices it, TLS reads and encrypts
 * it). The caller keeps fd open until done. */
int mux_send_file(mux_t *m, enum frame_type type, const cJSON *meta, int fd, uint64_t off,
                  uint64_t len, mux_done_fn done, void *arg, uint32_t *stream);

/*
 * Receiving stream's credit. From mux_hold on (including the on_body call
 * that makes it) the bytes delivered count as not yet consumed: no credit goes back for them, so
 * the peer stops once the window it has (at most FRAME_WINDOW bytes, which on_body still delivers)
 * is spent. mux_release counts them consumed and lets credit flow again.
 * Returns 0, or -ENOENT when stream is not receiving.
 */
int mux_hold(mux_t *m, uint32_t stream);
int mux_release(mux_t *m, uint32_t stream);

conn_t *mux_conn(const mux_t *m);
void *mux_udata(const mux_t *m);

#endif
