/*
 * bench_frames — heartbeats beside a 1 GiB body on one TLS connection.
 *
 * Two threads, each with its own ring, on loopback: the sender dials the
 * receiver over mutual TLS, sends one WORK message whose 1 GiB body streams
 * through the mux at full speed, and a HEARTBEAT every 10 ms while it does.
 * Each heartbeat carries the CLOCK_MONOTONIC microsecond it was sent; the
 * receiver takes its delivery delay when on_frame sees it. The line printed:
 *
 *   frames body_mib=1024 heartbeat_p99_ms=… body_MBps=…
 *
 * p99 over the heartbeats sent while the body was in flight; MB/s (10^6
 * bytes) from the body's send to its last byte's arrival. Details (count,
 * median, maximum, how late the timer sent them) go to stderr. The
 * receiver checks the first bytes of every piece against the sender's
 * buffer, and the run fails when a byte is off, a heartbeat is lost, or
 * the whole takes more than two minutes.
 */
#include "convoy/log.h"
#include "convoy/mux.h"
#include "convoy/tls.h"
#include "../tests/common/fixture.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BODY_MIB  1024u
#define BODY_SIZE ((uint64_t)BODY_MIB << 20)
#define BEAT_MS   10
#define BEATS_MAX 100000
#define CHECK_LEN 8      /* bytes of each piece compared with the sender's buffer */
#define LIMIT_MS  120000 /* a run that takes longer is cut off, and fails */

struct end {
    ring_t *ring;
    tls_ctx_t *tls;
    conn_t *c;
    mux_t *m;
};

static struct end snd, rcv;
static conn_listener_t *listener;
static uint8_t *body;
static struct ring_timer beat, limit;
static uint64_t t_start, t_end, beat_due; /* µs */
static uint64_t got, bad;
static uint32_t beats_sent, beats_got, beats_lost;
static double delay_ms[BEATS_MAX], late_ms[BEATS_MAX];
static bool body_done;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- receiver ---- */

static int rcv_frame(mux_t *m, const struct frame_hdr *h, const cJSON *meta, uint32_t stream)
{
    (void)stream;
    if (h->type == FRAME_BYE) {
        conn_close(mux_conn(m));
        return 0;
    }
    if (h->type != FRAME_HEARTBEAT)
        return 0;
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(meta, "seq");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(meta, "t");
    if (!cJSON_IsNumber(seq) || !cJSON_IsNumber(t) || seq->valueint != (int)beats_got)
        beats_lost++;
    if (beats_got < BEATS_MAX)
        delay_ms[beats_got] = (double)(now_us() - (uint64_t)t->valuedouble) / 1000.0;
    beats_got++;
    return 0;
}

static int rcv_body(mux_t *m, uint32_t stream, const uint8_t *data, size_t len)
{
    (void)m, (void)stream;
    size_t n = len < CHECK_LEN ? len : CHECK_LEN;
    bad += memcmp(data, body + got, n) != 0;
    got += len;
    return 0;
}

static int rcv_end(mux_t *m, uint32_t stream, int err)
{
    (void)m, (void)stream;
    if (err == 0)
        t_end = now_us();
    return 0;
}

static const struct mux_handlers rcv_mux = {rcv_frame, rcv_body, rcv_end};

static void rcv_open(conn_t *c)
{
    if (mux_new(&rcv.m, c, MUX_ACCEPTOR, BODY_SIZE, &rcv_mux, NULL) < 0)
        conn_abort(c, -ENOMEM);
}

static ssize_t rcv_data(conn_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    return mux_feed(rcv.m, data, len);
}

static void rcv_drain(conn_t *c)
{
    (void)c;
    mux_drain(rcv.m);
}

static void rcv_close(conn_t *c, int reason)
{
    (void)c;
    if (reason != 0)
        fprintf(stderr, "bench_frames: receiver: %s\n", conn_reason_str(reason));
    mux_free(rcv.m);
    rcv.m = NULL;
    conn_listener_close(listener);
    ring_stop(rcv.ring);
}

static const struct conn_handlers rcv_conn = {
    .on_open = rcv_open, .on_data = rcv_data, .on_drain = rcv_drain, .on_close = rcv_close};

static void on_accept(conn_t *c, void *arg)
{
    (void)arg;
    rcv.c = c;
}

/* ---- sender ---- */

static void send_beat(void)
{
    cJSON *meta = cJSON_CreateObject();
    if (meta == NULL)
        return;
    uint64_t now = now_us();
    if (beats_sent < BEATS_MAX)
        late_ms[beats_sent] = now > beat_due ? (double)(now - beat_due) / 1000.0 : 0;
    cJSON_AddNumberToObject(meta, "seq", beats_sent++);
    cJSON_AddNumberToObject(meta, "t", (double)now);
    mux_send(snd.m, FRAME_HEARTBEAT, meta);
    cJSON_Delete(meta);
}

static void beat_fired(struct ring_timer *t)
{
    (void)t;
    if (body_done || snd.m == NULL)
        return;
    send_beat();
    beat_due += BEAT_MS * 1000;
    uint64_t now = now_us();
    ring_timer_start(snd.ring, &beat, beat_due > now ? (beat_due - now + 999) / 1000 : 0,
                     beat_fired);
}

static void body_sent(mux_t *m, void *arg, int err)
{
    (void)arg;
    body_done = true;
    if (err < 0)
        fprintf(stderr, "bench_frames: body: %s\n", conn_reason_str(err));
    else
        mux_send(m, FRAME_BYE, NULL);
}

static void snd_open(conn_t *c)
{
    int rc = mux_new(&snd.m, c, MUX_DIALLER, 0, &rcv_mux, NULL);
    if (rc == 0) {
        t_start = now_us();
        rc = mux_send_buf(snd.m, FRAME_WORK, NULL, body, BODY_SIZE, body_sent, NULL, NULL);
    }
    if (rc < 0) {
        conn_abort(c, rc);
        return;
    }
    beat_due = now_us() + BEAT_MS * 1000;
    ring_timer_start(snd.ring, &beat, BEAT_MS, beat_fired);
}

static ssize_t snd_data(conn_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    return mux_feed(snd.m, data, len);
}

static void snd_drain(conn_t *c)
{
    (void)c;
    mux_drain(snd.m);
}

static void limit_fired(struct ring_timer *t)
{
    (void)t;
    fprintf(stderr, "bench_frames: no end after %u ms\n", LIMIT_MS);
    conn_abort(snd.c, -ETIMEDOUT); /* the receiver sees the end and stops too */
}

static void snd_close(conn_t *c, int reason)
{
    (void)c;
    ring_timer_stop(snd.ring, &limit);
    ring_timer_stop(snd.ring, &beat);
    if (reason != 0)
        fprintf(stderr, "bench_frames: sender: %s\n", conn_reason_str(reason));
    mux_free(snd.m);
    snd.m = NULL;
    ring_stop(snd.ring);
}

static const struct conn_handlers snd_conn = {
    .on_open = snd_open, .on_data = snd_data, .on_drain = snd_drain, .on_close = snd_close};

/* ---- main ---- */

static void *run_ring(void *arg)
{
    struct end *e = arg;
    int rc = ring_run(e->ring);
    if (rc < 0)
        fprintf(stderr, "bench_frames: ring: %s\n", strerror(-rc));
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile of a sorted array (nearest rank). */
static double quantile(const double *v, uint32_t n, double q)
{
    uint32_t k = (uint32_t)(q * n + 0.999999);
    return n == 0 ? 0 : v[k > 0 ? k - 1 : 0];
}

static int setup(const char *dir)
{
    static const char *const names[] = {"balancer", "fs1", NULL};
    char err[512];
    if (fx_pki(dir, names) < 0)
        return -1;
    if (tls_ctx_new(&rcv.tls, TLS_SERVER, dir, "balancer", true, err, sizeof err) < 0 ||
        tls_ctx_new(&snd.tls, TLS_CLIENT, dir, "fs1", false, err, sizeof err) < 0) {
        fprintf(stderr, "bench_frames: %s\n", err);
        return -1;
    }
    if (ring_create(&rcv.ring, 256) < 0 || ring_create(&snd.ring, 256) < 0) {
        fprintf(stderr, "bench_frames: io_uring unavailable\n");
        return -1;
    }
    if ((body = malloc(BODY_SIZE)) == NULL)
        return -1;
    for (uint64_t i = 0; i < BODY_SIZE; i += 8) {
        uint64_t w = i * 0x9e3779b97f4a7c15u;
        memcpy(body + i, &w, 8);
    }
    return 0;
}

static int run(void)
{
    struct net_addr any;
    struct conn_opts ro = {.tls = rcv.tls}, so = {.tls = snd.tls, .expect_peer = "balancer"};
    if (net_addr_parse("127.0.0.1:0", &any) < 0 ||
        conn_listen(&listener, rcv.ring, &any, &ro, &rcv_conn, on_accept, NULL) < 0 ||
        conn_connect(&snd.c, snd.ring, conn_listener_addr(listener), &so, &snd_conn, NULL) < 0) {
        fprintf(stderr, "bench_frames: cannot listen or dial on loopback\n");
        return -1;
    }
    ring_timer_start(snd.ring, &limit, LIMIT_MS, limit_fired);
    pthread_t t;
    if (pthread_create(&t, NULL, run_ring, &rcv) != 0)
        return -1;
    run_ring(&snd);
    pthread_join(t, NULL);
    return 0;
}

static int report(void)
{
    uint32_t n = beats_got < BEATS_MAX ? beats_got : BEATS_MAX;
    if (t_end == 0 || got != BODY_SIZE || bad != 0 || beats_lost != 0 || n == 0) {
        fprintf(stderr, "bench_frames: failed: %llu of %llu bytes, %llu bad, %u of %u beats lost\n",
                (unsigned long long)got, (unsigned long long)BODY_SIZE, (unsigned long long)bad,
                beats_lost, beats_sent);
        return -1;
    }
    qsort(delay_ms, n, sizeof delay_ms[0], cmp_double);
    uint32_t ns = beats_sent < BEATS_MAX ? beats_sent : BEATS_MAX;
    qsort(late_ms, ns, sizeof late_ms[0], cmp_double);
    double secs = (double)(t_end - t_start) / 1e6;
    fprintf(stderr,
            "bench_frames: %u heartbeats, delay p50 %.3f p99 %.3f max %.3f ms; "
            "timer late p99 %.3f ms; %.2f s\n",
            n, quantile(delay_ms, n, 0.5), quantile(delay_ms, n, 0.99), delay_ms[n - 1],
            quantile(late_ms, ns, 0.99), secs);
    printf("frames body_mib=%u heartbeat_p99_ms=%.2f body_MBps=%.0f\n", BODY_MIB,
           quantile(delay_ms, n, 0.99), (double)BODY_SIZE / 1e6 / secs);
    return 0;
}

int main(void)
{
    char dir[64];
    log_set_level(LOG_WARN);
    if (fx_tmpdir(dir, sizeof dir) < 0)
        return 1;
    int rc = setup(dir) == 0 && run() == 0 && report() == 0 ? 0 : 1;
    fx_rmtree(dir);
    return rc;
}
