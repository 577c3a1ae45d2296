/*
 * fsxfer — a file server's transfer reports to the balancer: XFER_START
 * when a leg's answer begins, XFER_PROGRESS at most every
 * FSXFER_PROGRESS_MS while it runs, XFER_END with its bytes and outcome.
 *
 * The design is simple: every report goes through one ordered queue. While
 * the balancer is there (the send callback takes it) the queue is empty and
 * a report leaves at once; while it is away (send says -ENOTCONN) reports
 * wait, and fsxfer_flush() (from the membership client's registered
 * callback) sends them, in order, after the next WELCOME. The queue is
 * bounded: a leg keeps at most one PROGRESS waiting (a newer one replaces
 * it, and its END removes it), and past FSXFER_KEEP_MAX reports the oldest
 * PROGRESS goes first, then the oldest START; an END is dropped only when
 * the queue holds nothing else, and that loss is logged.
 *
 * fsxfer_active() is the number of legs started and not ended: the
 * heartbeat's `active`, which a drain waits for. One thread: the ring's.
 */
#ifndef CONVOY_FSXFER_H
#define CONVOY_FSXFER_H

#include "convoy/frame.h"
#include "convoy/xfer_msg.h"

#include <cjson/cJSON.h>
#include <stdint.h>

#define FSXFER_KEEP_MAX    65536u /* reports kept while the balancer is away */
#define FSXFER_PROGRESS_MS 250u   /* at most one PROGRESS per leg this often */

typedef struct fsxfer fsxfer_t;
typedef struct fsxfer_leg fsxfer_leg_t;

/* How a report leaves: 0 once queued on the connection, -ENOTCONN while the
 * balancer is away (the report is kept), any other error drops it (logged).
 * mbrc_send() fits, with its mbrc_t as arg. */
typedef int (*fsxfer_send_fn)(void *arg, enum frame_type type, const cJSON *meta);

/* keep_max: 0 = FSXFER_KEEP_MAX. 0 or -ENOMEM. */
int fsxfer_new(fsxfer_t **out, fsxfer_send_fn send, void *arg, uint32_t keep_max);

/* Frees the queue; legs still running are forgotten (their owner must not
 * use them afterwards). NULL is a no-op. */
void fsxfer_free(fsxfer_t *x);

/*
 * A leg begins: m holds START's fields (type is set here; strings are
 * copied). Returns the leg, or NULL without memory (nothing reported, and
 * the answer may still go out).
 */
fsxfer_leg_t *fsxfer_start(fsxfer_t *x, const struct xfer_msg *m);

/* bytes of the leg sent so far, at ring time now_ms: reported when
 * FSXFER_PROGRESS_MS have passed since the leg's last report and bytes
 * moved. */
void fsxfer_progress(fsxfer_t *x, fsxfer_leg_t *leg, uint64_t bytes, uint64_t now_ms);

/* The leg ended (XFER_END) and is freed. */
void fsxfer_end(fsxfer_t *x, fsxfer_leg_t *leg, uint64_t bytes, enum xfer_outcome outcome);

/* Sends what waits, in order, until the send callback refuses. */
void fsxfer_flush(fsxfer_t *x);

/* Legs started and not ended. */
uint32_t fsxfer_active(const fsxfer_t *x);

/* Reports waiting for the balancer, and reports dropped since the start
 * (a PROGRESS or START to make room, or an unsendable one). */
uint32_t fsxfer_queued(const fsxfer_t *x);
uint64_t fsxfer_dropped(const fsxfer_t *x);

#endif
