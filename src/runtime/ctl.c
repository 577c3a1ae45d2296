/*
 * ctl — control frames on a connection.
 *
 * A refusal is a frame followed by a graceful close, never an abort, so the
 * peer reads the reason before it sees the end of the stream.
 */
#include "convoy/ctl.h"

#include "convoy/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int ctl_send_head(conn_t *c, enum frame_type type, const cJSON *meta, uint64_t body_len)
{
    uint8_t *buf;
    size_t len;
    int rc = frame_encode(type, meta, body_len, &buf, &len);
    if (rc < 0)
        return rc;
    rc = conn_write(c, buf, len);
    free(buf);
    return rc;
}

int ctl_send(conn_t *c, enum frame_type type, const cJSON *meta)
{
    return ctl_send_head(c, type, meta, 0);
}

void ctl_refuse(conn_t *c, const char *code, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    const char *who = conn_peer_name(c);
    log_warn("ctl", "event=refuse peer=%s name=%s code=%s reason=\"%s\"", conn_peer_addr(c),
             who ? who : "-", code, reason);
    uint8_t *frame;
    size_t len;
    if (frame_error_encode(code, reason, &frame, &len) == 0) {
        conn_write(c, frame, len); /* best effort: the close follows anyway */
        free(frame);
    }
    conn_close(c);
}

ssize_t ctl_feed(conn_t *c, frame_decoder_t *d, const uint8_t *data, size_t len)
{
    int rc = frame_decoder_feed(d, data, len);
    if (frame_is_err(rc))
        ctl_refuse(c, frame_err_code(rc), "%s", frame_strerror(rc));
    else if (rc == -EPROTO) /* refused by the sink: the ERROR frame goes out first */
        conn_close(c);
    else if (rc < 0)
        return rc; /* any other failure: conn closes at once */
    return (ssize_t)len;
}

void ctl_error_fields(const cJSON *meta, const char **code, const char **reason)
{
    const cJSON *cd = cJSON_GetObjectItemCaseSensitive(meta, "code");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(meta, "reason");
    *code = cJSON_IsString(cd) ? cd->valuestring : "?";
    *reason = cJSON_IsString(rs) ? rs->valuestring : "?";
}
