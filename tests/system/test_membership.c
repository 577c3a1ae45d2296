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

/* The pid status reports for the running balancer, 0 when none runs. */
static int balancer_pid(void)
{
    cJSON *st = h_status(&cl);
    const cJSON *bal = cJSON_GetObjectItem(st, "balancer");
    int pid = cJSON_IsTrue(cJSON_GetObjectItem(bal, "running"))
                  ? cJSON_GetObjectItem(bal, "pid")->valueint
                  : 0;
    cJSON_Delete(st);
    return pid;
}

static void test_balancer_restart(void)
{
    CU_ASSERT_FATAL(start_three() == 0);
    pid_t bal = cl.procs[0].pid;
    CU_ASSERT_EQUAL(h_signal(&cl, bal, SIGKILL, true), 128 + SIGKILL);
    /* The segment outlives the balancer: status still answers, and with
     * nobody watching, no server is reported up. */
    CU_ASSERT_EQUAL(balancer_pid(), 0);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_STRING_EQUAL(h_state(&cl, three[i]), "down");
    pid_t again = h_balancer(&cl);
    CU_ASSERT_FATAL(again > 0);
    for (int waited = 0; balancer_pid() != again && waited < 5000; waited += 10)
        usleep(10 * 1000);
    CU_ASSERT_EQUAL(balancer_pid(), again);
    for (int i = 0; i < 3; i++)
        CU_ASSERT(h_wait_state(&cl, three[i], "up", UP_MS) >= 0);
    /* The new owner's pid is in the segment before it has read the rows
     * back (the transfer table takes tens of ms): wait for its account. */
    CU_ASSERT(h_wait_log(&cl, "balancer", "servers_kept=3", 5000));
    CU_ASSERT(h_log_has(&cl, "balancer", "origin=recovered"));
    stop_all();
}

static void test_foreign_certificate_refused(void)
{
    CU_ASSERT_FATAL(start_three() == 0);
    CU_ASSERT_FATAL(h_fileserver(&cl, "rogue", cl.foreign_pki) > 0);
    /* Give it time to try, and retry, several times. */
    CU_ASSERT_EQUAL(h_wait_state_quiet(&cl, "rogue", "up", 1500), -1);
    CU_ASSERT_STRING_EQUAL(h_state(&cl, "rogue"), "gone");
    CU_ASSERT(h_log_has(&cl, "balancer", "event=handshake_failed"));
    stop_all();
}

/* The string field `key` of server `name` in a status document, or NULL. */
static const char *server_field(const cJSON *status, const char *name, const char *key)
{
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(status, "servers"))
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(s, "name");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, key);
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0 && cJSON_IsString(v))
            return v->valuestring;
    }
    return NULL;
}

static void test_duplicate_name_refused(void)
{
    CU_ASSERT_FATAL(start_three() == 0);
    cJSON *before = h_status(&cl);
    CU_ASSERT_FATAL(h_fileserver(&cl, "fs1", cl.pki) > 0); /* a second fs1, another address */
    for (int waited = 0; waited < 3000 && !h_log_has(&cl, "balancer", "code=duplicate");
         waited += 50)
        usleep(50 * 1000);
    CU_ASSERT(h_log_has(&cl, "balancer", "code=duplicate"));
    cJSON *after = h_status(&cl);
    const char *addr_before = server_field(before, "fs1", "address");
    const char *addr_after = server_field(after, "fs1", "address");
    CU_ASSERT_FATAL(addr_before && addr_after);
    CU_ASSERT_STRING_EQUAL(addr_before, addr_after);
    CU_ASSERT_STRING_EQUAL(server_field(after, "fs1", "state"), "up");
    cJSON_Delete(before);
    cJSON_Delete(after);
    stop_all();
}

#define GOOD_HELLO_FIELDS                                                                          \
    "\"http\":\"127.0.0.1:1\",\"weight\":1,\"capacity\":1,\"files\":0,\"bytes\":0,"                \
    "\"active\":0,\"bytes_per_s\":0,\"load1\":0,\"disk_free\":0"

/* What an authenticated but broken peer sends, and the ERROR code it must get. */
static const struct bad_case {
    const char *raw;      /* bytes sent as they are, or NULL: */
    enum frame_type type; /* a frame of this type */
    const char *meta;     /* with this meta */
    uint64_t body_len;    /* announcing this much body */
    const char *code;
} bad_cases[] = {
    {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, NULL, 0, "magic"},
    {NULL, FRAME_HELLO, "{" GOOD_HELLO_FIELDS ",\"colour\":\"red\"}", 0, "schema"},
    {NULL, FRAME_HELLO, "{" GOOD_HELLO_FIELDS ",\"name\":\"fs9\"}", 0, "name"},
    {NULL, FRAME_HEARTBEAT, "{}", 0, "order"},
    {NULL, FRAME_HELLO, "{" GOOD_HELLO_FIELDS "}", 1 << 20, "body_len"},
    {NULL, FRAME_HELLO, "{" GOOD_HELLO_FIELDS "}", 0, "duplicate"}, /* fs1 is up already */
};

/* Sends one bad case as fs1 and returns the code of the ERROR frame that
 * came back before the balancer closed the connection (NULL if none). */
static char *send_bad(const struct bad_case *bc)
{
    static char code[32];
    uint8_t *frame = NULL;
    size_t len = bc->raw ? strlen(bc->raw) : 0;
    cJSON *meta = bc->meta ? cJSON_Parse(bc->meta) : NULL;
    if (bc->raw == NULL && frame_encode(bc->type, meta, bc->body_len, &frame, &len) < 0)
        len = 0;
    cJSON_Delete(meta);
    int rc = len > 0 ? h_error_reply(&cl, "fs1", bc->raw ? (const void *)bc->raw : frame, len, code,
                                     sizeof code)
                     : -1;
    free(frame);
    return rc == 0 ? code : NULL;
}

/* Each broken peer gets an ERROR frame that says why, then the end of the
 * stream; the balancer keeps serving everyone else. */
static void test_bad_frames_get_error(void)
{
    CU_ASSERT_FATAL(start_three() == 0);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const char *code = send_bad(&bad_cases[i]);
        CU_ASSERT_PTR_NOT_NULL(code);
        if (code && strcmp(code, bad_cases[i].code) != 0)
            fprintf(stderr, "case %zu: got %s, want %s\n", i, code, bad_cases[i].code);
        CU_ASSERT(code && strcmp(code, bad_cases[i].code) == 0);
    }
    CU_ASSERT(h_log_has(&cl, "balancer", "unknown field 'colour'"));
    CU_ASSERT(h_log_has(&cl, "balancer", "HELLO names 'fs9' but the certificate is 'fs1'"));
    for (int i = 0; i < 3; i++)
        CU_ASSERT_STRING_EQUAL(h_state(&cl, three[i]), "up");
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
