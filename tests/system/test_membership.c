/*
 * membership: a real balancer and real file servers on loopback, killed,
 * stopped, restarted and lied to, checked through `convoy status --json`.
 * The balancer runs with heartbeat 100 ms and dead-after 500 ms.
 */
#include "harness.h"

#include "convoy/frame.h"

#include <CUnit/CUnit.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define DEAD_AFTER_MS 500
#define UP_MS         5000u

static const char *const three[] = {"fs1", "fs2", "fs3", NULL};
static struct cluster cl;
static pid_t fs[3];

/* A balancer and fs1..fs3, all up. */
static int start_three(void)
{
    if (h_cluster_init(&cl, three) < 0 || h_balancer(&cl) < 0)
        return -1;
    for (int i = 0; i < 3; i++)
        if ((fs[i] = h_fileserver(&cl, three[i], cl.pki)) < 0)
            return -1;
    for (int i = 0; i < 3; i++)
        if (h_wait_state(&cl, three[i], "up", UP_MS) < 0)
            return -1;
    return 0;
}

/* Stops everything; no process may have reported a sanitizer error. */
static void stop_all(void)
{
    CU_ASSERT_EQUAL(h_cluster_free(&cl), 0);
}

static void test_three_up(void)
{
    CU_ASSERT_FATAL(start_three() == 0);
    cJSON *st = h_status(&cl);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    const cJSON *servers = cJSON_GetObjectItemCaseSensitive(st, "servers");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(servers), 3);
    const cJSON *s;
    cJSON_ArrayForEach(s, servers)
    {
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(s, "state")->valuestring, "up");
        CU_ASSERT_EQUAL(cJSON_GetObjectItem(s, "weight")->valueint, 1);
        CU_ASSERT(strncmp(cJSON_GetObjectItem(s, "address")->valuestring, "127.0.0.1:", 10) == 0);
        CU_ASSERT(cJSON_GetObjectItem(s, "heartbeat_age_ms")->valuedouble < 1000);
    }
    cJSON *bal = cJSON_GetObjectItem(st, "balancer");
    CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(bal, "running")));
    cJSON_Delete(st);
    stop_all();
}

static void test_sigkill_marks_down(void)
{
    CU_ASSERT_FATAL(start_three() == 0);
    CU_ASSERT_EQUAL(h_signal(&cl, fs[1], SIGKILL, true), 128 + SIGKILL);
    long ms = h_wait_state(&cl, "fs2", "down", DEAD_AFTER_MS + 1000);
    CU_ASSERT(ms >= 0);
    CU_ASSERT_STRING_EQUAL(h_state(&cl, "fs1"), "up");
    stop_all();
}

/* A frozen server keeps its connection open but stops heartbeating. */
static void test_silence_marks_down_then_back(void)
{
    CU_ASSERT_FATAL(start_three() == 0);
    CU_ASSERT_EQUAL(h_signal(&cl, fs[0], SIGSTOP, false), 0);
    CU_ASSERT(h_wait_state(&cl, "fs1", "down", DEAD_AFTER_MS + 1000) >= 0);
    CU_ASSERT(h_log_has(&cl, "balancer", "name=fs1 reason=timeout"));
    CU_ASSERT_EQUAL(h_signal(&cl, fs[0], SIGCONT, false), 0);
    CU_ASSERT(h_wait_state(&cl, "fs1", "up", UP_MS) >= 0);
    stop_all();
}

static void test_sigterm_drains_and_leaves(void)
{
    CU_ASSERT_FATAL(start_three() == 0);
    CU_ASSERT_EQUAL(h_signal(&cl, fs[2], SIGTERM, true), 0);
    CU_ASSERT(h_wait_state(&cl, "fs3", "gone", 2000) >= 0);
    CU_ASSERT(h_log_has(&cl, "balancer", "event=draining name=fs3"));
    CU_ASSERT(h_log_has(&cl, "balancer", "event=left name=fs3"));
    CU_ASSERT(h_log_has(&cl, "fs3", "event=bye"));
    stop_all();
}

static void test_balancer_restart(void)
{
    CU_ASSERT_FATAL(start_three() == 0);
    pid_t bal = cl.procs[0].pid;
    CU_ASSERT_EQUAL(h_signal(&cl, bal, SIGKILL, true), 128 + SIGKILL);
    /* The segment outlives the balancer: status still answers. */
    cJSON *st = h_status(&cl);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(st, "balancer"), "running")));
    cJSON_Delete(st);
    CU_ASSERT_FATAL(h_balancer(&cl) > 0);
    for (int i = 0; i < 3; i++)
        CU_ASSERT(h_wait_state(&cl, three[i], "up", UP_MS) >= 0);
    CU_ASSERT(h_log_has(&cl, "balancer", "origin=recovered"));
    stop_all();
}

static void test_foreign_certificate_refused(void)
{
    CU_ASSERT_FATAL(start_three() == 0);
    CU_ASSERT_FATAL(h_fileserver(&cl, "rogue", cl.foreign_pki) > 0);
    /* Give it time to try, and retry, several times. */
    CU_ASSERT_EQUAL(h_wait_state(&cl, "rogue", "up", 1500), -1);
    CU_ASSERT_STRING_EQUAL(h_state(&cl, "rogue"), "gone");
    CU_ASSERT(h_log_has(&cl, "balancer", "event=handshake_failed"));
    stop_all();
}

static void test_duplicate_name_refused(void)
{
    CU_ASSERT_FATAL(start_three() == 0);
    cJSON *before = h_status(&cl);
    CU_ASSERT_FATAL(h_fileserver(&cl, "fs1", cl.pki) > 0); /* a second fs1, another address */
    long ms = 0;
    for (; ms < 3000 && !h_log_has(&cl, "balancer", "code=duplicate"); ms += 50)
        usleep(50 * 1000);
    CU_ASSERT(h_log_has(&cl, "balancer", "code=duplicate"));
    cJSON *after = h_status(&cl);
    const cJSON *s;
    const char *addr_before = NULL, *addr_after = NULL;
    cJSON_ArrayForEach(
        s,
        cJSON_GetObjectItem(
            before, "servers")) if (strcmp(cJSON_GetObjectItem(s, "name")->valuestring, "fs1") == 0)
        addr_before = cJSON_GetObjectItem(s, "address")->valuestring;
    cJSON_ArrayForEach(
        s,
        cJSON_GetObjectItem(
            after, "servers")) if (strcmp(cJSON_GetObjectItem(s, "name")->valuestring, "fs1") == 0)
        addr_after = cJSON_GetObjectItem(s, "address")->valuestring;
    CU_ASSERT_PTR_NOT_NULL_FATAL(addr_after);
    CU_ASSERT_STRING_EQUAL(addr_before, addr_after);
    CU_ASSERT_STRING_EQUAL(h_server_state(after, "fs1"), "up");
    cJSON_Delete(before);
    cJSON_Delete(after);
    stop_all();
}

/* Reads the first frame of buf: its type and meta (caller frees). */
static int first_frame(const uint8_t *buf, size_t len, cJSON **meta)
{
    struct frame_hdr h;
    struct frame_limits lim = {FRAME_META_MAX, 0};
    if (len < FRAME_HDR_LEN || frame_hdr_decode(buf, &lim, &h) < 0 ||
        len < FRAME_HDR_LEN + h.meta_len)
        return -1;
    *meta = cJSON_ParseWithLength((const char *)buf + FRAME_HDR_LEN, h.meta_len);
    return h.type;
}

/* An authenticated peer that sends a bad frame, then one that sends an
 * unknown field: each gets an ERROR saying why, then the end of the stream.
 * The balancer keeps serving everyone else. */
static void test_bad_frames_get_error(void)
{
    CU_ASSERT_FATAL(start_three() == 0);
    struct {
        const char *payload;
        size_t len;
        const char *code;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, "magic"},
        {NULL, 0, "schema"},
    };
    uint8_t *hello = NULL;
    size_t hello_len = 0;
    cJSON *bad = cJSON_Parse("{\"http\":\"127.0.0.1:1\",\"weight\":1,\"capacity\":1,\"files\":0,"
                             "\"bytes\":0,\"active\":0,\"bytes_per_s\":0,\"load1\":0,"
                             "\"disk_free\":0,\"colour\":\"red\"}");
    CU_ASSERT_FATAL(frame_encode(FRAME_HELLO, bad, 0, &hello, &hello_len) == 0);
    cJSON_Delete(bad);
    cases[1].payload = (const char *)hello;
    cases[1].len = hello_len;
    for (size_t i = 0; i < 2; i++) {
        struct h_tls t;
        CU_ASSERT_FATAL(h_tls_dial(&t, cl.pki, "fs1", cl.control) == 0);
        CU_ASSERT(h_tls_send(&t, cases[i].payload, cases[i].len) == 0);
        uint8_t buf[4096];
        bool closed;
        ssize_t n = h_tls_read_all(&t, buf, sizeof buf, 3000, &closed);
        cJSON *meta = NULL;
        CU_ASSERT_EQUAL(first_frame(buf, n > 0 ? (size_t)n : 0, &meta), FRAME_ERROR);
        const cJSON *code = cJSON_GetObjectItem(meta, "code");
        CU_ASSERT(cJSON_IsString(code) && strcmp(code->valuestring, cases[i].code) == 0);
        CU_ASSERT(cJSON_IsString(cJSON_GetObjectItem(meta, "reason")));
        CU_ASSERT(closed);
        cJSON_Delete(meta);
        h_tls_close(&t);
    }
    free(hello);
    CU_ASSERT(h_log_has(&cl, "balancer", "reason=\"unknown field 'colour'\"") ||
              h_log_has(&cl, "balancer", "colour"));
    CU_ASSERT_STRING_EQUAL(h_state(&cl, "fs1"), "up");
    stop_all();
}

void suite_membership(void)
{
    CU_pSuite s = CU_add_suite("membership", NULL, NULL);
    CU_add_test(s, "balancer + 3 file servers: 3 up", test_three_up);
    CU_add_test(s, "SIGKILL: down within dead-after + 1 s", test_sigkill_marks_down);
    CU_add_test(s, "silent server: down, then back up", test_silence_marks_down_then_back);
    CU_add_test(s, "SIGTERM: drain, bye, gone, exit 0", test_sigterm_drains_and_leaves);
    CU_add_test(s, "balancer killed and restarted: all up again", test_balancer_restart);
    CU_add_test(s, "certificate from another CA never appears", test_foreign_certificate_refused);
    CU_add_test(s, "duplicate name refused, first kept", test_duplicate_name_refused);
    CU_add_test(s, "bad frames get an ERROR frame", test_bad_frames_get_error);
}
