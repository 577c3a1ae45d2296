/*
 * hostile: peers that hold a valid cluster certificate, or pose as the
 * balancer, and try what an honest member never would. Each test fails
 * against the code before its fix: silent connections kept forever (bug 6),
 * numbers truncated and strings written raw into the log (bugs 9, 10), and
 * a file server registering with whoever holds any cluster certificate
 * (bug 11).
 */
#include "harness.h"

#include "../common/fixture.h"

#include "convoy/frame.h"
#include "convoy/ring.h"

#include <CUnit/CUnit.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SILENT       50   /* connections that never say HELLO */
#define CLOSED_BY_MS 1000 /* after the last dial, all must be closed by then */
#define UP_MS        5000u

static const char *const servers[] = {"fs1", "fs2", NULL};
static struct cluster cl;

/* Waits until the peer has closed every fd of conns (n of them) or
 * timeout_ms passes. Returns how many it saw closed. */
static int wait_closed(struct h_tls *conns, int n, uint32_t timeout_ms)
{
    struct pollfd p[SILENT];
    int closed = 0;
    for (int i = 0; i < n; i++)
        p[i] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
    uint64_t end = ring_now_ms() + timeout_ms;
    while (closed < n && ring_now_ms() < end) {
        if (poll(p, (nfds_t)n, (int)(end - ring_now_ms())) <= 0)
            break;
        for (int i = 0; i < n; i++) {
            char buf[4096];
            if (p[i].fd < 0 || p[i].revents == 0 || recv(p[i].fd, buf, sizeof buf, 0) > 0)
                continue; /* nothing yet, or bytes before the end */
            p[i].fd = -1;
            closed++;
        }
    }
    return closed;
}

/* Bug 6: TLS done, HELLO never sent. Each connection holds its deadline
 * after the handshake, and an honest server still joins. */
static void test_silent_connections_dropped(void)
{
    static const char *const opts[] = {"--hello-timeout-ms", "300", NULL};
    CU_ASSERT_FATAL(h_cluster_init(&cl, servers) == 0);
    CU_ASSERT_FATAL(h_balancer_as(&cl, cl.pki, "balancer", opts) > 0);
    static struct h_tls conns[SILENT];
    int n = 0;
    for (int tries = 0; n < SILENT && tries < 250; tries++) { /* until the balancer listens */
        if (h_tls_dial(&conns[n], cl.pki, "fs1", cl.control) == 0) {
            n++;
            continue;
        }
        h_tls_close(&conns[n]);
        usleep(20 * 1000);
    }
    CU_ASSERT_EQUAL(n, SILENT);
    uint64_t dialled = ring_now_ms();
    int closed = wait_closed(conns, n, CLOSED_BY_MS);
    fprintf(stderr, "hostile: %d of %d silent connections closed %llu ms after the last dial\n",
            closed, n, (unsigned long long)(ring_now_ms() - dialled));
    CU_ASSERT_EQUAL(closed, n);
    for (int i = 0; i < n; i++)
        h_tls_close(&conns[i]);
    CU_ASSERT(h_log_has(&cl, "balancer", "event=hello_timeout"));
    CU_ASSERT_FATAL(h_fileserver(&cl, "fs2", cl.pki) > 0);
    CU_ASSERT(h_wait_state(&cl, "fs2", "up", UP_MS) >= 0);
    CU_ASSERT_STRING_EQUAL(h_state(&cl, "fs1"), "gone");
    CU_ASSERT_EQUAL(h_cluster_free(&cl), 0);
}

#define LOAD "\"active\":0,\"bytes_per_s\":0,\"load1\":0,\"disk_free\":0"

/* HELLOs a member could send; each must be refused with `schema`. */
static const char *const bad_hellos[] = {
    /* weight 2^53 was read as 0, capacity 2^32 + 5 as 5 */
    "{\"http\":\"127.0.0.1:8080\",\"weight\":9007199254740992,\"capacity\":1,\"files\":0,"
    "\"bytes\":0," LOAD "}",
    "{\"http\":\"127.0.0.1:8080\",\"weight\":1,\"capacity\":4294967301,\"files\":0,"
    "\"bytes\":0," LOAD "}",
    "{\"http\":\"127.0.0.1:8080\",\"weight\":1,\"capacity\":1,\"files\":0,\"bytes\":0,"
    "\"active\":4294967296,\"bytes_per_s\":0,\"load1\":0,\"disk_free\":0}",
    /* a newline that forges a log line; an ESC sequence for the terminal */
    "{\"http\":\"127.0.0.1:80\\nlevel=info event=up "
    "name=forged\",\"weight\":1,\"capacity\":1,\"files\":0,\"bytes\":0," LOAD "}",
    "{\"http\":\"127.0.0.1:8080\\u001b[2J\\u001b]0;owned\\u0007\",\"weight\":1,\"capacity\":1,"
    "\"files\":0,\"bytes\":0," LOAD "}",
    "{\"name\":\"fs1\\u001b[31m\",\"http\":\"127.0.0.1:8080\",\"weight\":1,\"capacity\":1,"
    "\"files\":0,\"bytes\":0," LOAD "}",
};

/* Bugs 9 and 10: refused at the schema; nothing reaches the table or the
 * log as it was sent. */
static void test_bad_hello_refused(void)
{
    CU_ASSERT_FATAL(h_cluster_init(&cl, servers) == 0);
    CU_ASSERT_FATAL(h_balancer(&cl) > 0);
    CU_ASSERT_FATAL(h_fileserver(&cl, "fs2", cl.pki) > 0); /* the balancer is up once fs2 is */
    CU_ASSERT_FATAL(h_wait_state(&cl, "fs2", "up", UP_MS) >= 0);
    for (size_t i = 0; i < sizeof bad_hellos / sizeof bad_hellos[0]; i++) {
        cJSON *meta = cJSON_Parse(bad_hellos[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(meta);
        uint8_t *frame;
        size_t len;
        CU_ASSERT_FATAL(frame_encode(FRAME_HELLO, meta, 0, &frame, &len) == 0);
        cJSON_Delete(meta);
        char code[32] = "";
        int rc = h_error_reply(&cl, "fs1", frame, len, code, sizeof code);
        free(frame);
        if (rc != 0 || strcmp(code, "schema") != 0)
            fprintf(stderr, "hostile: HELLO %zu: got %s, want schema\n", i, rc ? "none" : code);
        CU_ASSERT(rc == 0 && strcmp(code, "schema") == 0);
        CU_ASSERT_STRING_EQUAL(h_state(&cl, "fs1"), "gone");
    }
    CU_ASSERT(h_log_has(&cl, "balancer", "out of range field 'weight'"));
    CU_ASSERT(h_log_has(&cl, "balancer", "out of range field 'capacity'"));
    CU_ASSERT_FALSE(h_log_has(&cl, "balancer", "name=forged"));
    CU_ASSERT_FALSE(h_log_has(&cl, "balancer", "\x1b"));
    CU_ASSERT_STRING_EQUAL(h_state(&cl, "fs2"), "up");
    CU_ASSERT_EQUAL(h_cluster_free(&cl), 0);
}

/* Bug 11: a "balancer" holding fs2's certificate. The file server refuses
 * it during the handshake and never registers with it. */
static void test_impostor_balancer_refused(void)
{
    CU_ASSERT_FATAL(h_cluster_init(&cl, servers) == 0);
    CU_ASSERT_FATAL(h_balancer_as(&cl, cl.pki, "fs2", NULL) > 0);
    CU_ASSERT_FATAL(h_fileserver(&cl, "fs1", cl.pki) > 0);
    /* Give it time to dial, and retry, several times. */
    CU_ASSERT_EQUAL(h_wait_state(&cl, "fs1", "up", 1500), -1);
    CU_ASSERT_STRING_EQUAL(h_state(&cl, "fs1"), "gone");
    CU_ASSERT(h_log_has(&cl, "fs1", "peer is 'fs2', expected 'balancer'"));
    CU_ASSERT_FALSE(h_log_has(&cl, "fs1", "event=registered"));
    CU_ASSERT_EQUAL(h_cluster_free(&cl), 0);
}

/* Bug 11, by role: a certificate named "balancer" but issued for a file
 * server (from a CA that fs1 trusts) is refused by the role alone. */
static void test_balancer_role_required(void)
{
    static const char *const roles[] = {"balancer:fileserver", "fs1", NULL};
    char pki[320];
    CU_ASSERT_FATAL(h_cluster_init(&cl, servers) == 0);
    snprintf(pki, sizeof pki, "%s/roles", cl.dir);
    CU_ASSERT_FATAL(fx_pki(pki, roles) == 0);
    CU_ASSERT_FATAL(h_balancer_as(&cl, pki, "balancer", NULL) > 0);
    CU_ASSERT_FATAL(h_fileserver(&cl, "fs1", pki) > 0);
    CU_ASSERT_EQUAL(h_wait_state(&cl, "fs1", "up", 1500), -1);
    CU_ASSERT_STRING_EQUAL(h_state(&cl, "fs1"), "gone");
    CU_ASSERT(h_log_has(&cl, "fs1", "has role 'fileserver', expected 'balancer'"));
    CU_ASSERT_FALSE(h_log_has(&cl, "fs1", "event=registered"));
    CU_ASSERT_EQUAL(h_cluster_free(&cl), 0);
}

/* The balancer's side: a member must hold the file server role, so a
 * compute server's certificate of the same CA never joins. */
static void test_member_role_required(void)
{
    static const char *const with_compute[] = {"fs1", "compute1", NULL};
    CU_ASSERT_FATAL(h_cluster_init(&cl, with_compute) == 0);
    CU_ASSERT_FATAL(h_balancer(&cl) > 0);
    CU_ASSERT_FATAL(h_fileserver(&cl, "fs1", cl.pki) > 0);
    CU_ASSERT_FATAL(h_wait_state(&cl, "fs1", "up", UP_MS) >= 0);
    CU_ASSERT_FATAL(h_fileserver(&cl, "compute1", cl.pki) > 0);
    CU_ASSERT_EQUAL(h_wait_state(&cl, "compute1", "up", 1500), -1);
    CU_ASSERT_STRING_EQUAL(h_state(&cl, "compute1"), "gone");
    CU_ASSERT(h_log_has(&cl, "balancer", "has role 'compute', expected 'fileserver'"));
    CU_ASSERT_EQUAL(h_cluster_free(&cl), 0);
}

void suite_hostile(void)
{
    CU_pSuite s = CU_add_suite("hostile", NULL, NULL);
    CU_add_test(s, "silent connections with a valid certificate dropped at the HELLO deadline",
                test_silent_connections_dropped);
    CU_add_test(s, "HELLO with numbers out of range or control characters: ERROR schema",
                test_bad_hello_refused);
    CU_add_test(s, "file server refuses a balancer holding a file server's certificate",
                test_impostor_balancer_refused);
    CU_add_test(s, "file server refuses a 'balancer' certificate of another role",
                test_balancer_role_required);
    CU_add_test(s, "balancer refuses a member without the file server role",
                test_member_role_required);
}
