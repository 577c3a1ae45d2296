/*
 * httpd: the server through a real ring on loopback.
 *
 * The ring runs on a thread of its own with two servers (plain and TLS);
 * the tests are the clients, with blocking sockets (and curl, when it is
 * installed, for what a real client does), and assert on the bytes a client
 * receives. Every socket has a receive timeout, so no test hangs. The
 * handler routes by path:
 *   /hello         200 "hello\n" at once
 *   /later?ms=N    pending, answered by a ring timer N ms later
 *   /file?off&len  a region of the suite's file (conn_send_file)
 *   /echo          reads the body (PUT/POST), answers its length and sum
 *   /slow          the same, pausing after every piece for 1 ms
 *   /close         answers with Connection: close
 */
#include "convoy/http.h"
#include "convoy/httpd.h"
#include "convoy/log.h"
#include "convoy/ring.h"
#include "convoy/tls.h"
#include "../common/fixture.h"

#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define FILE_LEN  (3u << 20) /* above conn's high-water mark many times */
#define HEADER_MS 300u
#define IDLE_MS   600u
#define RECV_S    5
#define STOP_MS   50

static char base[64], file_path[128], pki[128];
static int file_fd = -1;
static ring_t *ring;
static httpd_t *plain, *secure;
static tls_ctx_t *srv_tls;
static pthread_t ring_thread;
static atomic_int files_done, bodies_ended, body_errors;
static int files_open, files_open_max; /* the ring's thread only */
static atomic_int later_gone;          /* late answers that found the client gone */
static struct ring_timer stop_timer;

static uint8_t file_byte(uint64_t i)
{
    return (uint8_t)(i * 2654435761u >> 13);
}

/* ---- the handler ---- */

struct later {
    struct ring_timer t;
    httpd_xchg_t *x;
};

static void later_fired(struct ring_timer *t)
{
    struct later *l = container_of(t, struct later, t);
    bool alive = httpd_alive(l->x);
    int rc = httpd_reply_text(l->x, 200, "later");
    if (!alive && rc == -EPIPE)
        atomic_fetch_add(&later_gone, 1);
    free(l);
}

static void file_sent(void *arg, int err)
{
    (void)arg;
    (void)err;
    files_open--;
    atomic_fetch_add(&files_done, 1);
}

struct echo {
    uint64_t len, sum;
    struct ring_timer resume; /* /slow: the end of a pause */
    httpd_xchg_t *x;
};

static atomic_int pauses;

static void resume_fired(struct ring_timer *t)
{
    struct echo *e = container_of(t, struct echo, resume);
    httpd_resume(e->x);
}

static void echo_body(httpd_xchg_t *x, void *arg, const uint8_t *p, size_t len, int err)
{
    struct echo *e = arg;
    for (size_t i = 0; i < len; i++)
        e->sum += p[i];
    e->len += len;
    if (len && e->x) { /* /slow */
        httpd_pause(x);
        atomic_fetch_add(&pauses, 1);
        ring_timer_start(ring, &e->resume, 1, resume_fired);
    }
    if (len)
        return;
    ring_timer_stop(ring, &e->resume); /* the end comes even while paused */
    atomic_fetch_add(err ? &body_errors : &bodies_ended, 1);
    char msg[64];
    snprintf(msg, sizeof msg, "len=%llu sum=%llu", (unsigned long long)e->len,
             (unsigned long long)e->sum);
    httpd_reply_text(x, err ? 400 : 200, msg);
    free(e);
}

static uint64_t query_num(const http_req_t *q, const char *name, uint64_t dflt)
{
    char v[32];
    return http_req_query(q, name, v, sizeof v) > 0 ? strtoull(v, NULL, 10) : dflt;
}

/* /into: the body read into the reader's room (httpd_body_into); with
 * ?stop_ms=N answered from a timer N ms in, the room then still offered. */
struct into {
    httpd_xchg_t *x;
    uint64_t len, sum, in_room;
    bool answered;
    struct ring_timer stop;
    uint8_t room[64 * 1024];
};

static void into_answer(struct into *in, int status, const char *how)
{
    char msg[96];
    snprintf(msg, sizeof msg, "%s len=%llu sum=%llu room=%llu", how, (unsigned long long)in->len,
             (unsigned long long)in->sum, (unsigned long long)in->in_room);
    ring_timer_stop(ring, &in->stop);
    httpd_reply_text(in->x, status, msg);
    free(in);
}

static void into_stop(struct ring_timer *t)
{
    into_answer(container_of(t, struct into, stop), 200, "stopped");
}

static void into_body(httpd_xchg_t *x, void *arg, const uint8_t *p, size_t len, int err)
{
    struct into *in = arg;
    for (size_t i = 0; i < len; i++)
        in->sum += p[i];
    in->len += len;
    in->in_room += p == in->room ? len : 0;
    if (len)
        (void)httpd_body_into(x, in->room, sizeof in->room);
    else
        into_answer(in, err ? 400 : 200, "whole");
}

static void read_into(httpd_xchg_t *x, const http_req_t *q)
{
    struct into *in = calloc(1, sizeof *in);
    in->x = x;
    uint64_t stop_ms = query_num(q, "stop_ms", 0);
    if (stop_ms)
        ring_timer_start(ring, &in->stop, stop_ms, into_stop);
    httpd_read_body(x, into_body, in);
    (void)httpd_body_into(x, in->room, sizeof in->room);
}

static void serve_file(httpd_xchg_t *x, const http_req_t *q)
{
    uint64_t off = query_num(q, "off", 0), len = query_num(q, "len", FILE_LEN);
    struct http_range r;
    enum http_range_result rr = http_range_parse(http_req_header(q, "Range", NULL), FILE_LEN, &r);
    char cr[64];
    if (rr == HTTP_RANGE_UNSATISFIABLE) {
        http_content_range(cr, sizeof cr, rr, NULL, FILE_LEN);
        httpd_header(x, "Content-Range", "%s", cr);
        httpd_reply_text(x, 416, NULL);
        return;
    }
    int status = 200;
    if (rr == HTTP_RANGE_PARTIAL) {
        http_content_range(cr, sizeof cr, rr, &r, FILE_LEN);
        httpd_header(x, "Content-Range", "%s", cr);
        off = r.first;
        len = r.last - r.first + 1;
        status = 206;
    }
    httpd_header(x, "Accept-Ranges", "bytes");
    if (httpd_reply_file(x, status, file_fd, off, len, file_sent, NULL) == 0 &&
        ++files_open > files_open_max)
        files_open_max = files_open;
}

static void handle(httpd_xchg_t *x, void *arg)
{
    (void)arg;
    const http_req_t *q = httpd_req(x);
    const char *path = http_req_path(q);
    if (strcmp(path, "/hello") == 0) {
        httpd_reply(x, 200, "text/plain", "hello\n", 6);
    } else if (strcmp(path, "/later") == 0) {
        struct later *l = calloc(1, sizeof *l);
        l->x = x;
        ring_timer_start(ring, &l->t, query_num(q, "ms", 10), later_fired);
    } else if (strcmp(path, "/file") == 0) {
        serve_file(x, q);
    } else if (strcmp(path, "/echo") == 0 || strcmp(path, "/slow") == 0) {
        struct echo *e = calloc(1, sizeof *e);
        e->x = strcmp(path, "/slow") == 0 ? x : NULL;
        httpd_read_body(x, echo_body, e);
    } else if (strcmp(path, "/into") == 0) {
        read_into(x, q);
    } else if (strcmp(path, "/close") == 0) {
        httpd_close_after(x);
        httpd_reply_text(x, 200, "bye");
    } else if (http_req_method(q) != HTTP_GET && http_req_method(q) != HTTP_HEAD) {
        httpd_header(x, "Allow", "GET, HEAD");
        httpd_reply_text(x, 405, NULL);
    } else {
        httpd_reply_text(x, 404, NULL);
    }
}

/* ---- the ring's thread ---- */

static void *ring_main(void *arg)
{
    (void)arg;
    ring_run(ring);
    return NULL;
}

static void stop_fired(struct ring_timer *t)
{
    (void)t;
    ring_stop(ring);
}

static void stop_servers(void *arg)
{
    (void)arg;
    httpd_stop(plain);
    httpd_stop(secure);
    ring_timer_start(ring, &stop_timer, STOP_MS, stop_fired);
}

static int make_file(void)
{
    snprintf(file_path, sizeof file_path, "%s/file.bin", base);
    FILE *f = fopen(file_path, "w");
    if (!f)
        return -1;
    for (uint64_t i = 0; i < FILE_LEN; i++)
        fputc(file_byte(i), f);
    if (fclose(f) != 0)
        return -1;
    file_fd = open(file_path, O_RDONLY | O_CLOEXEC);
    return file_fd < 0 ? -1 : 0;
}

static int suite_init(void)
{
    static const char *const names[] = {"fs1", NULL};
    char err[256];
    if (fx_tmpdir(base, sizeof base) != 0 || make_file() != 0)
        return -1;
    snprintf(pki, sizeof pki, "%s/pki", base);
    if (fx_pki(pki, names) != 0 ||
        tls_ctx_new(&srv_tls, TLS_SERVER, pki, "fs1", false, err, sizeof err) != 0)
        return -1;
    log_set_level(LOG_ERROR);
    struct net_addr a;
    net_addr_parse("127.0.0.1:0", &a);
    struct httpd_opts o = {
        .header_ms = HEADER_MS, .idle_ms = IDLE_MS, .lim = {.body_max = 2 * FILE_LEN}};
    if (ring_create(&ring, 256) != 0 || httpd_listen(&plain, ring, &a, &o, handle, NULL) != 0)
        return -1;
    o.tls = srv_tls;
    if (httpd_listen(&secure, ring, &a, &o, handle, NULL) != 0)
        return -1;
    return pthread_create(&ring_thread, NULL, ring_main, NULL) == 0 ? 0 : -1;
}

static int suite_clean(void)
{
    ring_post_wait(ring, stop_servers, NULL, 1000);
    pthread_join(ring_thread, NULL);
    ring_destroy(ring);
    tls_ctx_free(srv_tls);
    close(file_fd);
    fx_rmtree(base);
    return 0;
}

/* ---- clients ---- */

static int port_of(httpd_t *s)
{
    const struct sockaddr_in *in = (const struct sockaddr_in *)&httpd_addr(s)->ss;
    return ntohs(in->sin_port);
}

/* rcvbuf: the client socket's receive buffer, 0 for the kernel's. */
static int dial_port(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = RECV_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int dial(void)
{
    int fd = dial_port(port_of(plain), 0);
    CU_ASSERT_FATAL(fd >= 0);
    return fd;
}

static void send_str(int fd, const char *s)
{
    CU_ASSERT_EQUAL(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* Everything until the server closes (or the timeout): its length. */
static size_t read_all(int fd, char *buf, size_t cap)
{
    size_t have = 0;
    ssize_t n;
    while (have + 1 < cap && (n = read(fd, buf + have, cap - 1 - have)) > 0)
        have += (size_t)n;
    buf[have] = '\0';
    return have;
}

/* One response read with the client parser: status, body into body (cap
 * bytes, NUL-terminated unless it is binary), its length in *blen. The
 * bytes after it stay in the stream state st. */
struct stream {
    int fd;
    uint8_t buf[1 << 16];
    size_t have;
    bool eof;
};

static bool fill(struct stream *st)
{
    if (st->have == sizeof st->buf)
        return false;
    ssize_t n = read(st->fd, st->buf + st->have, sizeof st->buf - st->have);
    if (n <= 0) {
        st->eof = true;
        return false;
    }
    st->have += (size_t)n;
    return true;
}

static void take(struct stream *st, size_t n)
{
    memmove(st->buf, st->buf + n, st->have - n);
    st->have -= n;
}

static int read_resp(struct stream *st, http_resp_t *r, enum http_method m, uint8_t *body,
                     size_t cap, size_t *blen)
{
    http_resp_reset(r, m);
    ssize_t n;
    while ((n = http_resp_parse(r, st->buf, st->have)) == 0)
        if (!fill(st))
            return -1;
    if (n < 0)
        return -1;
    take(st, (size_t)n);
    *blen = 0;
    while (!http_resp_body_done(r)) {
        if (st->have == 0 && !fill(st))
            return http_resp_eof(r) == 0 ? http_resp_status(r) : -1;
        const uint8_t *p;
        size_t pl;
        ssize_t used = http_resp_body(r, st->buf, st->have, &p, &pl);
        if (used < 0)
            return -1;
        if (*blen + pl < cap)
            memcpy(body + *blen, p, pl);
        *blen += pl;
        take(st, (size_t)used);
    }
    if (*blen < cap)
        body[*blen] = '\0';
    return http_resp_status(r);
}

/* The connection has been closed by the server (EOF, nothing more). */
static bool closed_by_server(int fd)
{
    char c;
    return read(fd, &c, 1) == 0;
}

/* ---- scenes ---- */

static void test_keep_alive(void)
{
    struct stream st = {.fd = dial()};
    http_resp_t *r;
    CU_ASSERT_FATAL(http_resp_new(&r, NULL) == 0);
    uint8_t body[64];
    size_t blen;
    for (int i = 0; i < 3; i++) {
        send_str(st.fd, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
        CU_ASSERT_EQUAL(read_resp(&st, r, HTTP_GET, body, sizeof body, &blen), 200);
        CU_ASSERT_STRING_EQUAL((char *)body, "hello\n");
        CU_ASSERT_TRUE(http_resp_keep_alive(r));
        CU_ASSERT_PTR_NOT_NULL(http_resp_header(r, "Date", NULL));
    }
    send_str(st.fd, "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    CU_ASSERT_EQUAL(read_resp(&st, r, HTTP_HEAD, body, sizeof body, &blen), 200);
    CU_ASSERT_STRING_EQUAL(http_resp_header(r, "Content-Length", NULL), "6");
    CU_ASSERT_EQUAL(blen, 0);
    send_str(st.fd, "DELETE /hello2 HTTP/1.1\r\nHost: t\r\n\r\n");
    CU_ASSERT_EQUAL(read_resp(&st, r, HTTP_DELETE, body, sizeof body, &blen), 405);
    CU_ASSERT_STRING_EQUAL(http_resp_header(r, "Allow", NULL), "GET, HEAD");
    /* HTTP/1.0 without keep-alive: answered, then closed */
    send_str(st.fd, "GET /hello HTTP/1.0\r\n\r\n");
    CU_ASSERT_EQUAL(read_resp(&st, r, HTTP_GET, body, sizeof body, &blen), 200);
    CU_ASSERT_STRING_EQUAL(http_resp_header(r, "Connection", NULL), "close");
    CU_ASSERT_TRUE(st.have == 0 && closed_by_server(st.fd));
    http_resp_free(r);
    close(st.fd);
}

static void test_pipelining_order(void)
{
    struct stream st = {.fd = dial()};
    http_resp_t *r;
    CU_ASSERT_FATAL(http_resp_new(&r, NULL) == 0);
    /* a slow answer first: the quick ones after it must wait their turn */
    send_str(st.fd, "GET /later?ms=80 HTTP/1.1\r\nHost: t\r\n\r\n"
                    "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
                    "GET /later?ms=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                    "GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n"
                    "GET /close HTTP/1.1\r\nHost: t\r\n\r\n"
                    "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    static const struct {
        int status;
        const char *body;
    } want[] = {
        {200, "later\n"}, {200, "hello\n"}, {200, "later\n"}, {404, "Not Found\n"}, {200, "bye\n"}};
    uint8_t body[64];
    size_t blen;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CU_ASSERT_EQUAL(read_resp(&st, r, HTTP_GET, body, sizeof body, &blen), want[i].status);
        CU_ASSERT_STRING_EQUAL((char *)body, want[i].body);
    }
    /* Connection: close honoured: the last request is never answered */
    CU_ASSERT_FALSE(http_resp_keep_alive(r));
    CU_ASSERT_TRUE(st.have == 0 && closed_by_server(st.fd));
    http_resp_free(r);
    close(st.fd);
}

static void test_refused(void)
{
    static const struct {
        const char *req;
        const char *status_line;
    } cases[] = {
        {"GET /hello HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"},
        {"GET /a%00 HTTP/1.1\r\nHost: t\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"},
        {"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n", "HTTP/1.1 501 Not Implemented\r\n"},
        {"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n",
         "HTTP/1.1 413 Content Too Large\r\n"},
        {"GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGARBAGE\r\n\r\n", "HTTP/1.1 200 OK\r\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fd = dial();
        send_str(fd, cases[i].req);
        char buf[1024];
        read_all(fd, buf, sizeof buf);
        CU_ASSERT_TRUE(strncmp(buf, cases[i].status_line, strlen(cases[i].status_line)) == 0);
        /* every refusal says it closes, and does */
        const char *last = strstr(buf + 1, "HTTP/1.1 ") ? strstr(buf + 1, "HTTP/1.1 ") : buf;
        CU_ASSERT_PTR_NOT_NULL(strstr(last, "Connection: close\r\n"));
        close(fd);
    }
    /* a head over the limit, sent in pieces */
    int fd = dial();
    send_str(fd, "GET / HTTP/1.1\r\nHost: t\r\n");
    char field[1024];
    memset(field, 'a', sizeof field - 3);
    memcpy(field, "X: ", 3);
    field[sizeof field - 3] = '\r';
    field[sizeof field - 2] = '\n';
    field[sizeof field - 1] = '\0';
    for (int i = 0; i < 40; i++)
        if (write(fd, field, strlen(field)) < 0)
            break;
    char buf[1024];
    read_all(fd, buf, sizeof buf);
    CU_ASSERT_TRUE(strncmp(buf, "HTTP/1.1 431 ", 13) == 0);
    close(fd);
}

static void test_header_deadline(void)
{
    int fd = dial();
    send_str(fd, "GET /hello HTTP/1.1\r\nHost:");
    char buf[512];
    uint64_t t0 = ring_now_ms();
    read_all(fd, buf, sizeof buf);
    uint64_t took = ring_now_ms() - t0;
    CU_ASSERT_TRUE(strncmp(buf, "HTTP/1.1 408 Request Timeout\r\n", 30) == 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "Connection: close\r\n"));
    CU_ASSERT_TRUE(took >= HEADER_MS - 50 && took < HEADER_MS + 1000);
    close(fd);
    /* idle between requests: closed without a word */
    fd = dial();
    t0 = ring_now_ms();
    CU_ASSERT_EQUAL(read_all(fd, buf, sizeof buf), 0);
    took = ring_now_ms() - t0;
    CU_ASSERT_TRUE(took >= IDLE_MS - 50 && took < IDLE_MS + 1500);
    close(fd);
}

static void test_half_closed(void)
{
    int fd = dial();
    send_str(fd, "GET /later?ms=50 HTTP/1.1\r\nHost: t\r\n\r\n");
    shutdown(fd, SHUT_WR);
    char buf[512];
    uint64_t t0 = ring_now_ms();
    read_all(fd, buf, sizeof buf);
    CU_ASSERT_TRUE(ring_now_ms() - t0 < 1000); /* and then closed, not left idle */
    CU_ASSERT_TRUE(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\r\n\r\nlater\n"));
    close(fd);
}

/* The connection dies (here: its idle timeout, 600 ms without traffic)
 * while its answer is pending: the late answer finds the exchange, learns
 * the client is gone, and frees it. */
static void test_client_gone(void)
{
    int gone = atomic_load(&later_gone);
    int fd = dial();
    char req[128], buf[64];
    snprintf(req, sizeof req, "GET /later?ms=%u HTTP/1.1\r\nHost: t\r\n\r\n", IDLE_MS + 300);
    send_str(fd, req);
    CU_ASSERT_EQUAL(read_all(fd, buf, sizeof buf), 0);
    for (int i = 0; i < 100 && atomic_load(&later_gone) == gone; i++)
        usleep(10000);
    CU_ASSERT_EQUAL(atomic_load(&later_gone), gone + 1);
    close(fd);
}

/* Checks that body[0..len) is the file's bytes from off. */
static bool is_file_region(const uint8_t *body, uint64_t off, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (body[i] != file_byte(off + i))
            return false;
    return true;
}

static void test_file_plain(void)
{
    struct stream *st = calloc(1, sizeof *st);
    st->fd = dial();
    http_resp_t *r;
    CU_ASSERT_FATAL(http_resp_new(&r, NULL) == 0);
    uint8_t *body = malloc(FILE_LEN + 1);
    size_t blen;
    int before = atomic_load(&files_done);
    send_str(st->fd, "GET /file HTTP/1.1\r\nHost: t\r\n\r\n"
                     "GET /file HTTP/1.1\r\nHost: t\r\nRange: bytes=-1000\r\n\r\n"
                     "GET /file HTTP/1.1\r\nHost: t\r\nRange: bytes=99999999-\r\n\r\n"
                     "HEAD /file HTTP/1.1\r\nHost: t\r\n\r\n");
    CU_ASSERT_EQUAL(read_resp(st, r, HTTP_GET, body, FILE_LEN + 1, &blen), 200);
    CU_ASSERT_EQUAL(blen, FILE_LEN);
    CU_ASSERT_TRUE(is_file_region(body, 0, FILE_LEN));
    CU_ASSERT_EQUAL(read_resp(st, r, HTTP_GET, body, FILE_LEN + 1, &blen), 206);
    CU_ASSERT_EQUAL(blen, 1000);
    CU_ASSERT_TRUE(is_file_region(body, FILE_LEN - 1000, 1000));
    CU_ASSERT_STRING_EQUAL(http_resp_header(r, "Content-Range", NULL),
                           "bytes 3144728-3145727/3145728");
    CU_ASSERT_EQUAL(read_resp(st, r, HTTP_GET, body, FILE_LEN + 1, &blen), 416);
    CU_ASSERT_STRING_EQUAL(http_resp_header(r, "Content-Range", NULL), "bytes */3145728");
    CU_ASSERT_EQUAL(read_resp(st, r, HTTP_HEAD, body, FILE_LEN + 1, &blen), 200);
    CU_ASSERT_STRING_EQUAL(http_resp_header(r, "Content-Length", NULL), "3145728");
    CU_ASSERT_EQUAL(blen, 0);
    /* the done of each file answer ran (the HEAD's too) */
    for (int i = 0; i < 100 && atomic_load(&files_done) < before + 3; i++)
        usleep(10000);
    CU_ASSERT_EQUAL(atomic_load(&files_done), before + 3);
    CU_ASSERT_EQUAL(files_open_max, 1); /* pipelined file answers, one at a time */
    free(body);
    http_resp_free(r);
    close(st->fd);
    free(st);
}

static void test_body(void)
{
    struct stream st = {.fd = dial()};
    http_resp_t *r;
    CU_ASSERT_FATAL(http_resp_new(&r, NULL) == 0);
    uint8_t body[128];
    size_t blen;
    send_str(st.fd, "PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                    "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"
                    "POST /nothing HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nwxyz"
                    "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    CU_ASSERT_EQUAL(read_resp(&st, r, HTTP_PUT, body, sizeof body, &blen), 200);
    CU_ASSERT_STRING_EQUAL((char *)body, "len=3 sum=294\n");
    CU_ASSERT_EQUAL(read_resp(&st, r, HTTP_POST, body, sizeof body, &blen), 200);
    CU_ASSERT_STRING_EQUAL((char *)body, "len=3 sum=294\n");
    /* a body the handler never read is dropped, and the next request read */
    CU_ASSERT_EQUAL(read_resp(&st, r, HTTP_POST, body, sizeof body, &blen), 405);
    CU_ASSERT_EQUAL(read_resp(&st, r, HTTP_GET, body, sizeof body, &blen), 200);
    CU_ASSERT_STRING_EQUAL((char *)body, "hello\n");
    /* Expect: 100-continue gets its 100 once the handler reads */
    send_str(st.fd, "PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
                    "Expect: 100-continue\r\n\r\n");
    CU_ASSERT_EQUAL(read_resp(&st, r, HTTP_PUT, body, sizeof body, &blen), 100);
    send_str(st.fd, "hi");
    CU_ASSERT_EQUAL(read_resp(&st, r, HTTP_PUT, body, sizeof body, &blen), 200);
    CU_ASSERT_STRING_EQUAL((char *)body, "len=2 sum=209\n");
    /* a body cut by the client's close: the reader hears of it */
    int ended = atomic_load(&body_errors);
    send_str(st.fd, "PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    shutdown(st.fd, SHUT_WR);
    for (int i = 0; i < 100 && atomic_load(&body_errors) == ended; i++)
        usleep(10000);
    CU_ASSERT_EQUAL(atomic_load(&body_errors), ended + 1);
    http_resp_free(r);
    close(st.fd);
}

/* A handler that holds the body back: the client's writes stall, then go on. */
static void test_body_backpressure(void)
{
    struct stream st = {.fd = dial()};
    http_resp_t *r;
    CU_ASSERT_FATAL(http_resp_new(&r, NULL) == 0);
    size_t len = 4u << 20;
    char head[128];
    snprintf(head, sizeof head, "PUT /slow HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
             len);
    send_str(st.fd, head);
    uint8_t *body = malloc(len);
    uint64_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += body[i] = (uint8_t)i;
    int before = atomic_load(&pauses);
    size_t off = 0;
    ssize_t n;
    while (off < len && (n = write(st.fd, body + off, len - off)) > 0)
        off += (size_t)n;
    CU_ASSERT_EQUAL(off, len);
    uint8_t got[128];
    size_t blen;
    CU_ASSERT_EQUAL(read_resp(&st, r, HTTP_PUT, got, sizeof got, &blen), 200);
    char want[64];
    snprintf(want, sizeof want, "len=%zu sum=%llu\n", len, (unsigned long long)sum);
    CU_ASSERT_STRING_EQUAL((char *)got, want);
    CU_ASSERT_TRUE(atomic_load(&pauses) - before > 10);
    free(body);
    http_resp_free(r);
    close(st.fd);
}

/* A body of len pattern bytes for /into (query q), then GET /hello on
 * the same connection: the answer to the first, and /hello's. With
 * split, the first answer is read after split bytes of the body, before
 * the rest is sent. */
static void into_then_hello(const char *q, size_t len, bool chunked, size_t split, char *ans,
                            size_t cap)
{
    struct stream st = {.fd = dial()};
    http_resp_t *r;
    CU_ASSERT_FATAL(http_resp_new(&r, NULL) == 0);
    char head[160];
    snprintf(head, sizeof head, "PUT /into%s HTTP/1.1\r\nHost: t\r\n%s%zu\r\n\r\n", q,
             chunked ? "Transfer-Encoding: chunked\r\nX-Len: " : "Content-Length: ", len);
    send_str(st.fd, head);
    uint8_t *body = malloc(len);
    for (size_t i = 0; i < len; i++)
        body[i] = (uint8_t)i;
    size_t blen;
    for (size_t off = 0; off < len;) { /* chunked: 100,000-byte chunks */
        size_t n = chunked && len - off > 100000 ? 100000 : len - off;
        if (split > off && n > split - off)
            n = split - off;
        char size[32];
        snprintf(size, sizeof size, "%zx\r\n", n);
        if (chunked)
            send_str(st.fd, size);
        CU_ASSERT_EQUAL(write(st.fd, body + off, n), (ssize_t)n);
        if (chunked)
            send_str(st.fd, "\r\n");
        off += n;
        if (off == split)
            CU_ASSERT_EQUAL(read_resp(&st, r, HTTP_PUT, (uint8_t *)ans, cap, &blen), 200);
    }
    send_str(st.fd, chunked ? "0\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
                            : "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    if (split == 0)
        CU_ASSERT_EQUAL(read_resp(&st, r, HTTP_PUT, (uint8_t *)ans, cap, &blen), 200);
    uint8_t hello[16] = "";
    CU_ASSERT_EQUAL(read_resp(&st, r, HTTP_GET, hello, sizeof hello, &blen), 200);
    CU_ASSERT_STRING_EQUAL((char *)hello, "hello\n");
    free(body);
    http_resp_free(r);
    close(st.fd);
}

/* The reader's room: the body comes into it, all of it, in order; the
 * next request on the connection is read after it. */
static void test_body_into(void)
{
    size_t len = 1u << 20;
    uint64_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += (uint8_t)i;
    char ans[128], want[96];
    unsigned long long room;
    into_then_hello("", len, false, 0, ans, sizeof ans);
    snprintf(want, sizeof want, "whole len=%zu sum=%llu room=", len, (unsigned long long)sum);
    CU_ASSERT_NSTRING_EQUAL(ans, want, strlen(want));
    CU_ASSERT(sscanf(ans + strlen(want), "%llu", &room) == 1 && room >= len / 2);
    /* chunked: room within each chunk, the framing parsed between */
    into_then_hello("", len, true, 0, ans, sizeof ans);
    CU_ASSERT_NSTRING_EQUAL(ans, want, strlen(want));
    /* answered while the room holds part of the body: those bytes count
     * as read, the rest is dropped, and /hello is the next request */
    into_then_hello("?stop_ms=50", len, false, 105000, ans, sizeof ans);
    CU_ASSERT_NSTRING_EQUAL(ans, "stopped len=", 12);
}

/* Runs curl with args (NULL-terminated, after "curl"): its exit status. */
static int run_curl(const char *const *args)
{
    const char *argv[32] = {"curl", "-s", "--max-time", "10"};
    size_t n = 4;
    for (size_t i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        execvp("curl", (char *const *)argv);
        _exit(127);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The file that curl wrote matches the suite's file from off. */
static bool curl_got_region(const char *path, uint64_t off, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool ok = true;
    size_t i = 0;
    int c;
    while ((c = fgetc(f)) != EOF && ok)
        ok = (uint8_t)c == file_byte(off + i++);
    fclose(f);
    return ok && i == len;
}

static void test_curl(void)
{
    if (access("/usr/bin/curl", X_OK) != 0) {
        fprintf(stderr, "(curl not installed: skipped) ");
        return;
    }
    char url[128], out[128], ca[160];
    snprintf(out, sizeof out, "%s/curl.out", base);
    snprintf(ca, sizeof ca, "%s/ca.crt", pki);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/file", port_of(plain));
    CU_ASSERT_EQUAL(run_curl((const char *const[]){"-f", "-o", out, url, "-o", out, url, NULL}), 0);
    CU_ASSERT_TRUE(curl_got_region(out, 0, FILE_LEN)); /* the second, on the same connection */
    snprintf(url, sizeof url, "https://127.0.0.1:%d/file", port_of(secure));
    CU_ASSERT_EQUAL(run_curl((const char *const[]){"-f", "--cacert", ca, "-o", out, url, NULL}), 0);
    CU_ASSERT_TRUE(curl_got_region(out, 0, FILE_LEN));
    CU_ASSERT_EQUAL(run_curl((const char *const[]){"-f", "--cacert", ca, "-r", "100-199", "-o", out,
                                                   url, NULL}),
                    0);
    CU_ASSERT_TRUE(curl_got_region(out, 100, 100));
    snprintf(url, sizeof url, "https://127.0.0.1:%d/echo", port_of(secure));
    CU_ASSERT_EQUAL(run_curl((const char *const[]){"-f", "--cacert", ca, "-T", file_path, "-o", out,
                                                   url, NULL}),
                    0);
    FILE *f = fopen(out, "r");
    char line[64] = "";
    if (f) {
        CU_ASSERT_PTR_NOT_NULL(fgets(line, sizeof line, f));
        fclose(f);
    }
    CU_ASSERT_TRUE(strncmp(line, "len=3145728 ", 12) == 0);
}

/* ---- draining: a server of its own, as draining ends it ---- */

static httpd_t *drained;
static atomic_bool drain_done;
static atomic_int drain_rc = 1; /* 1 until drain_listen ran */

static void drain_listen(void *arg)
{
    (void)arg;
    struct net_addr a;
    net_addr_parse("127.0.0.1:0", &a);
    struct httpd_opts o = {.idle_ms = IDLE_MS};
    atomic_store(&drain_rc, httpd_listen(&drained, ring, &a, &o, handle, NULL));
}

static void drain_finished(void *arg)
{
    (void)arg;
    atomic_store(&drain_done, true);
}

static void drain_start(void *arg)
{
    (void)arg;
    httpd_drain(drained, 5000, drain_finished, NULL);
    atomic_store(&drain_rc, 2);
}

/* Runs fn on the ring and waits until it has (drain_rc left want). */
static bool on_ring(void (*fn)(void *), int want)
{
    if (ring_post_wait(ring, fn, NULL, 1000) != 0)
        return false;
    for (int i = 0; i < 100 && atomic_load(&drain_rc) == want; i++)
        usleep(10000);
    return atomic_load(&drain_rc) != want;
}

/* A drain closes an idle connection at once, refuses new ones, and still
 * sends the answer under way: four pipelined file answers are more than
 * the sockets between client and server hold, so the drain comes while
 * one is streaming; that one arrives whole, the ones not begun do not
 * (the client sees the close and asks again elsewhere). */
static void test_drain(void)
{
    CU_ASSERT_FATAL(on_ring(drain_listen, 1) && atomic_load(&drain_rc) == 0);
    int port = port_of(drained);
    struct stream *idle = calloc(1, sizeof *idle), *busy = calloc(1, sizeof *busy);
    idle->fd = dial_port(port, 0);
    busy->fd = dial_port(port, 64 * 1024);
    CU_ASSERT_FATAL(idle->fd >= 0 && busy->fd >= 0);
    http_resp_t *r;
    CU_ASSERT_FATAL(http_resp_new(&r, NULL) == 0);
    uint8_t *body = malloc(FILE_LEN + 1);
    size_t blen;
    send_str(idle->fd, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    CU_ASSERT_EQUAL(read_resp(idle, r, HTTP_GET, body, FILE_LEN + 1, &blen), 200);
    for (int i = 0; i < 4; i++)
        send_str(busy->fd, "GET /file HTTP/1.1\r\nHost: t\r\n\r\n");
    usleep(100 * 1000); /* the sockets fill up */

    CU_ASSERT_FATAL(on_ring(drain_start, 0));
    CU_ASSERT_TRUE(closed_by_server(idle->fd));
    int late = dial_port(port, 0);
    CU_ASSERT_EQUAL(late, -1);
    if (late >= 0)
        close(late);
    CU_ASSERT_FALSE(atomic_load(&drain_done));
    int whole = 0;
    while (busy->have > 0 || fill(busy)) {
        CU_ASSERT_EQUAL_FATAL(read_resp(busy, r, HTTP_GET, body, FILE_LEN + 1, &blen), 200);
        CU_ASSERT_EQUAL(blen, FILE_LEN);
        whole += blen == FILE_LEN && is_file_region(body, 0, FILE_LEN);
    }
    CU_ASSERT(whole >= 1 && whole < 4);
    close(busy->fd); /* as a client does at the end: the server lingers for it */
    for (int i = 0; i < 100 && !atomic_load(&drain_done); i++)
        usleep(10000);
    CU_ASSERT_TRUE(atomic_load(&drain_done));
    free(body);
    http_resp_free(r);
    close(idle->fd);
    free(idle);
    free(busy);
}

void suite_httpd(void)
{
    CU_pSuite s = CU_add_suite("httpd", suite_init, suite_clean);
    CU_add_test(s, "keep-alive, HEAD, 405, HTTP/1.0", test_keep_alive);
    CU_add_test(s, "pipelined answers in request order", test_pipelining_order);
    CU_add_test(s, "refused requests get their status and a close", test_refused);
    CU_add_test(s, "header deadline (408) and idle close", test_header_deadline);
    CU_add_test(s, "a half-closed client gets its answer", test_half_closed);
    CU_add_test(s, "a pending answer after the client left", test_client_gone);
    CU_add_test(s, "file answers, ranges, 416, HEAD", test_file_plain);
    CU_add_test(s, "request bodies, dropped bodies, 100-continue", test_body);
    CU_add_test(s, "a body held back by the handler", test_body_backpressure);
    CU_add_test(s, "a body into the reader's room, whole, chunked, cut short", test_body_into);
    CU_add_test(s, "curl over plain HTTP and TLS", test_curl);
    CU_add_test(s, "a drain sends answers under way, then ends", test_drain);
}
