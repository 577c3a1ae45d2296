/*
 * clink — a link of the compute chain: a predecessor (the front-end, or a
 * compute server) dials its successor's chain address over mutual TLS and
 * streams it WORK (matrices in bodies under the mux's credit) and CANCEL;
 * the successor's listener takes a link only from the one name it was told
 * is its predecessor (clink_srv_set_prev), whose certificate carries the
 * compute or frontend role, and closes any other. The receiver paces the
 * sender with clink_hold / clink_release (its window of unprocessed
 * items), so a full chain pushes back to the front-end. Both ends are
 * this one module: the front-end's link to the head is the same as a
 * server's link to the next.
 *
 * Between two processes of one host the matrices need not cross TLS: a
 * dialled link given a lane (clink_use_lane) writes them into a shared-
 * memory lane (shmlane.h) and sends only their position in the WORK; the
 * receiver reads them in place, hands them to on_work/on_body/on_end as
 * if they had streamed in, and answers RELEASED for the room they took,
 * which it withholds while the WORK is held (flow control, as credit is
 * for a streamed body). The lane's name travels only over this
 * authenticated link, and the reader maps only an object of its own uid
 * and mode 0600 (shmbuf.h). Relinking (a new CHAIN_SET_NEXT) is the
 * owner's: close the old link, dial the new one. One ring; not
 * thread-safe.
 */
#ifndef CONVOY_CLINK_H
#define CONVOY_CLINK_H

#include "convoy/chain_msg.h"
#include "convoy/net.h"
#include "convoy/ring.h"
#include "convoy/shmlane.h"
#include "convoy/tls.h"

#include <cjson/cJSON.h>
#include <stdint.h>

typedef struct clink clink_t;
typedef struct clink_srv clink_srv_t;

/* What a link's owner hears. arg is the one given with the handlers. */
struct clink_handlers {
    /* Dialled link: connected, the peer's certificate checked; sending may
     * start (before it, a send is -ENOTCONN). May be NULL. */
    void (*on_up)(void *arg, clink_t *l);
    /* A WORK (accepting side): stream 0 without body (gen), else its
     * chain_work_body_len bytes follow through on_body, then on_end.
     * meta valid during the call. 0, or -EPROTO to refuse the peer. */
    int (*on_work)(void *arg, clink_t *l, const struct chain_work *w, uint32_t stream);
    int (*on_body)(void *arg, clink_t *l, uint32_t stream, const uint8_t *p, size_t len);
    void (*on_end)(void *arg, clink_t *l, uint32_t stream, int err);
    /* A CANCEL (accepting side). May be NULL. */
    void (*on_cancel)(void *arg, clink_t *l, const struct chain_span *s);
    /* Dialled link with a lane: a send refused with -EAGAIN for want of
     * room may be tried again. May be NULL. */
    void (*on_room)(void *arg, clink_t *l);
    /* The link is gone (reason 0 when closed cleanly, else why: refused,
     * lost, TLS); l is freed when this returns. May be NULL. */
    void (*on_down)(void *arg, clink_t *l, int reason);
    void *arg;
};

/* Dials a successor: expect its certificate name, role compute. 0 (on_up
 * or on_down will run), or -errno. h is copied. */
int clink_dial(clink_t **out, ring_t *r, tls_ctx_t *tls, const struct net_addr *addr,
               const char *expect_name, const struct clink_handlers *h);

/* WORK with its body (len = chain_work_body_len(w), 0 with gen): the
 * caller keeps body until done(arg, err) runs (once, from the loop, only
 * after 0). 0, -EAGAIN when FRAME_STREAMS_MAX bodies are in flight (a done
 * frees one) or the lane is full (on_room follows), -ENOTCONN before
 * on_up, -EPIPE once closing, or -errno / FRAME_E*. */
int clink_send_work(clink_t *l, const struct chain_work *w, const void *body, uint64_t len,
                    void (*done)(void *arg, int err), void *arg);
int clink_send_cancel(clink_t *l, const struct chain_span *s);
/* From now on the dialled link l carries matrices through a new lane of
 * size bytes (the peer being on this host). 0, or -errno (the link goes
 * on through TLS). */
int clink_use_lane(clink_t *l, size_t size);
/* Whether l sends through a lane. */
bool clink_has_lane(const clink_t *l);

/* Room in l's lane for a WORK's body, to fill (from the disk, say) before
 * clink_send_room, with no copy of the sender's: the successor takes a
 * lane's regions only in the order they were handed out, so rooms are
 * sent in the order taken; one never sent is given back with the next. */
struct clink_room {
    uint8_t *at; /* where the body goes */
    uint64_t pos, len;
    shmlane_w_t *lane; /* a reference: at stays mapped until clink_room_put */
};
/* 0, -EAGAIN when the lane is full (on_room follows), -ENOTCONN without a
 * lane or before on_up, -EINVAL for len 0. */
int clink_room(clink_t *l, uint64_t len, struct clink_room *out);
/* WORK w, whose body (room->len bytes) was written into room; as
 * clink_send_work, and -ESTALE when room is not of l's lane. */
int clink_send_room(clink_t *l, const struct chain_work *w, const struct clink_room *room,
                    void (*done)(void *arg, int err), void *arg);
/* Lets go of room (sent or not). */
void clink_room_put(struct clink_room *room);

/* Receiving stream's credit (mux_hold / mux_release). 0 or -ENOENT. */
int clink_hold(clink_t *l, uint32_t stream);
int clink_release(clink_t *l, uint32_t stream);

/* The peer's certificate name ("" before the handshake). */
const char *clink_peer(const clink_t *l);

/* Closes the link; on_down runs from the loop. */
/* From on_body of a streamed WORK: where its next body bytes belong
 * (mux_body_into). 0, or -ENOENT (a lane's WORK: its body is in place). */
int clink_body_into(clink_t *l, uint32_t stream, void *dst, size_t len);
void clink_close(clink_t *l);

/* A chain listener on addr (port 0: pick one). 0 or -errno. */
int clink_listen(clink_srv_t **out, ring_t *r, tls_ctx_t *tls, const struct net_addr *addr,
                 const struct clink_handlers *h);
const struct net_addr *clink_srv_addr(const clink_srv_t *s);

/* The one predecessor taken from now on (NULL or "": none); a link open
 * from any other name is closed. */
void clink_srv_set_prev(clink_srv_t *s, const char *prev);

/* Stops listening and closes every link (their on_down runs); the
 * listener is freed. */
void clink_srv_stop(clink_srv_t *s);

#endif
