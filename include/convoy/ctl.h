/*
 * ctl — control frames on a connection.
 *
 * The glue between the frame codec and conn: send a frame (its inline
 * body, if any, follows with conn_write or conn_send_file and holds the
 * connection until it is through: a body that must not do that is a stream,
 * mux.h), feed received bytes to a decoder, and refuse a peer with an
 * ERROR frame that says why before the connection closes.
 */
#ifndef CONVOY_CTL_H
#define CONVOY_CTL_H

#include "convoy/conn.h"
#include "convoy/frame.h"

#include <sys/types.h>

/* Queues the header and meta of a frame with body_len bytes of body to
 * follow. meta may be NULL. Returns 0, -errno or FRAME_E*. */
int ctl_send_head(conn_t *c, enum frame_type type, const cJSON *meta, uint64_t body_len);

/* A frame without body. */
int ctl_send(conn_t *c, enum frame_type type, const cJSON *meta);

/* Sends ERROR {"code": code, "reason": …}, logs it with the peer, and
 * closes the connection once that frame is on the wire. */
void ctl_refuse(conn_t *c, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * For on_data: feeds data to d. A malformed frame is refused with the
 * codec's code and reason (frame_err_code, frame_strerror). A sink that
 * refuses a frame itself (ctl_refuse) returns -EPROTO. Either way the
 * connection closes after the ERROR frame and everything is consumed (what
 * follows is dropped). Any other negative value from the sink is returned,
 * so that conn closes the connection at once.
 */
ssize_t ctl_feed(conn_t *c, frame_decoder_t *d, const uint8_t *data, size_t len);

/* Reads meta's "code" and "reason" of an ERROR frame (either may be "?"). */
void ctl_error_fields(const cJSON *meta, const char **code, const char **reason);

#endif
