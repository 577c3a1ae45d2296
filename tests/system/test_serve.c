/*
 * serve: a real file server beside a real balancer, seen from curl over
 * HTTPS (--cacert) and over plain HTTP (--insecure-http): it joins and is
 * up, a request without a ticket or with a forged one is 403 with the
 * reason, traversal (../, %2e%2e, through a symlink to /etc) is 404, other
 * methods 405, and the digest cache in --state-dir spares a restart every
 * read. Downloads with valid tickets need the balancer's key, which reaches
 * the file server only in WELCOME: the unit suite fshttp downloads with a
 * keyring it holds itself, through the same code.
 */
#include "harness.h"

#include "convoy/proc.h"

#include <CUnit/CUnit.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UP_MS 5000u

static const char *const one[] = {"fs1", NULL};
static struct cluster cl;

/* The served folder: two files and a planted symlink to /etc. */
static int make_data(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data", cl.dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/data/etc", cl.dir);
    return h_put_file(&cl, "a.bin", 3 << 20) || h_put_file(&cl, "b.bin", 5000) ||
           symlink("/etc", path);
}

/* curl's status for target on http, the body's first line in body. */
static int curl(const char *http, bool tls, const char *target, const char *extra, char *body,
                size_t len)
{
    char cmd[2048], ca[400];
    snprintf(ca, sizeof ca, "--cacert '%s/ca.crt'", cl.pki);
    snprintf(cmd, sizeof cmd,
             "curl -s --path-as-is --max-time 10 %s %s -w '\\n%%{http_code}' '%s://%s%s'",
             tls ? ca : "", extra ? extra : "", tls ? "https" : "http", http, target);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    char line[1024];
    int status = -1;
    body[0] = '\0';
    while (fgets(line, sizeof line, p) != NULL) {
        if (body[0] == '\0')
            snprintf(body, len, "%.*s", (int)strcspn(line, "\n"), line);
        status = atoi(line); /* the last line: the status */
    }
    pclose(p);
    return status;
}

static void check_refusals(const char *http, bool tls)
{
    char body[1024];
    CU_ASSERT_EQUAL(curl(http, tls, "/f/a.bin", NULL, body, sizeof body), 403);
    CU_ASSERT(strncmp(body, "missing ticket", 14) == 0);
    CU_ASSERT_EQUAL(curl(http, tls, "/f/a.bin?t=AAAA", NULL, body, sizeof body), 403);
    CU_ASSERT(strncmp(body, "malformed ticket", 16) == 0);
    const char *traversal[] = {"/f/../../etc/passwd", "/f/%2e%2e/%2e%2e/etc/passwd",
                               "/f/%2E%2E/etc/passwd", "/f//etc/passwd", "/etc/passwd"};
    for (size_t i = 0; i < sizeof traversal / sizeof traversal[0]; i++) {
        int st = curl(http, tls, traversal[i], NULL, body, sizeof body);
        if (st != 404)
            fprintf(stderr, "serve: %s gave %d\n", traversal[i], st);
        CU_ASSERT_EQUAL(st, 404);
    }
    /* Through the planted symlink the path is well-formed: the ticket is
     * asked for first, so nothing says whether the file exists. */
    CU_ASSERT_EQUAL(curl(http, tls, "/f/etc/passwd", NULL, body, sizeof body), 403);
    CU_ASSERT_EQUAL(curl(http, tls, "/f/a.bin", "-X DELETE", body, sizeof body), 405);
}

static void test_https(void)
{
    char http[64], state[400];
    snprintf(http, sizeof http, "127.0.0.1:%d", proc_free_port());
    CU_ASSERT_FATAL(h_cluster_init(&cl, one) == 0);
    CU_ASSERT_FATAL(make_data() == 0);
    snprintf(state, sizeof state, "%s/fs1-state", cl.dir);
    const char *const extra[] = {"--state-dir", state, NULL};
    CU_ASSERT_FATAL(h_balancer(&cl) > 0);
    pid_t fs = h_fileserver_with(&cl, "fs1", http, extra);
    CU_ASSERT_FATAL(fs > 0);
    CU_ASSERT(h_wait_state(&cl, "fs1", "up", UP_MS) >= 0);
    CU_ASSERT(h_log_has(&cl, "fs1", "tls=1 digests_cached=0 to_hash=2"));
    check_refusals(http, true);
    /* SIGTERM: drains, says BYE, writes the digest cache, exits 0. */
    CU_ASSERT_EQUAL(h_signal(&cl, fs, SIGTERM, true), 0);
    char cache[512];
    snprintf(cache, sizeof cache, "%s/digests", state);
    struct stat st;
    CU_ASSERT_EQUAL(stat(cache, &st), 0);
    /* Restarted: both digests from the cache, no file read. */
    CU_ASSERT_FATAL(h_fileserver_with(&cl, "fs1", http, extra) > 0);
    CU_ASSERT(h_wait_log(&cl, "fs1", "digests_cached=2 to_hash=0", UP_MS));
    CU_ASSERT(h_wait_state(&cl, "fs1", "up", UP_MS) >= 0);
    CU_ASSERT_EQUAL(h_cluster_free(&cl), 0);
}

static void test_plain(void)
{
    char http[64];
    snprintf(http, sizeof http, "127.0.0.1:%d", proc_free_port());
    CU_ASSERT_FATAL(h_cluster_init(&cl, one) == 0);
    CU_ASSERT_FATAL(make_data() == 0);
    const char *const extra[] = {"--insecure-http", NULL};
    CU_ASSERT_FATAL(h_balancer(&cl) > 0);
    CU_ASSERT_FATAL(h_fileserver_with(&cl, "fs1", http, extra) > 0);
    CU_ASSERT(h_wait_state(&cl, "fs1", "up", UP_MS) >= 0);
    CU_ASSERT(h_log_has(&cl, "fs1", "tls=0"));
    check_refusals(http, false);
    CU_ASSERT_EQUAL(h_cluster_free(&cl), 0);
}

void suite_serve(void)
{
    CU_pSuite s = CU_add_suite("serve", NULL, NULL);
    CU_add_test(s, "HTTPS: refusals, traversal 404, digest cache across a restart", test_https);
    CU_add_test(s, "plain HTTP (--insecure-http): refusals, traversal 404", test_plain);
}
