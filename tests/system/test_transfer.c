/*
 * transfer: a balancer with --http and two file servers; an unmodified curl
 * follows the redirect and gets the file, and the balancer's table records
 * it from redirect to last byte. Refusals: no credentials, a wrong
 * password, a traversal.
 */
#include "harness.h"

#include "convoy/proc.h"
#include "convoy/users.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define UP_MS 5000u

static const char *const two[] = {"fs1", "fs2", NULL};

struct scene {
    struct cluster cl;
    char http[32]; /* the balancer's client address */
    char users[512];
};

static int scene_start(struct scene *s)
{
    char err[256], path[512];
    if (h_cluster_init(&s->cl, two) < 0)
        return -1;
    snprintf(s->users, sizeof s->users, "%s/users", s->cl.dir);
    if (users_file_add(s->users, "alice", USERS_READ, "secret", 6, err, sizeof err) < 0) {
        fprintf(stderr, "transfer: users: %s\n", err);
        return -1;
    }
    snprintf(path, sizeof path, "%s/data", s->cl.dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/data/hello.txt", s->cl.dir);
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs("hello, convoy\n", f) < 0 || fclose(f) != 0)
        return -1;
    snprintf(s->http, sizeof s->http, "127.0.0.1:%d", proc_free_port());
    const char *const extra[] = {"--http", s->http, "--users", s->users, NULL};
    if (h_balancer_as(&s->cl, s->cl.pki, "balancer", extra) < 0)
        return -1;
    for (int i = 0; i < 2; i++)
        if (h_fileserver_with(&s->cl, two[i], NULL, NULL) < 0)
            return -1;
    for (int i = 0; i < 2; i++)
        if (h_wait_state(&s->cl, two[i], "up", UP_MS) < 0)
            return -1;
    return 0;
}

/* Runs curl with args after the common ones; its stdout into out. The
 * exit status of the shell, -1 if it could not run. */
static int curl(struct scene *s, const char *args, char *out, size_t len)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "curl -sS --max-time 10 --cacert %s/ca.crt %s 2>&1", s->cl.pki, args);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    int rc = pclose(p);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* The transfer table, as `convoy status --transfers --json` prints it. */
static cJSON *transfers(struct scene *s)
{
    char cmd[512], buf[65536];
    snprintf(cmd, sizeof cmd, "%s status --state %s --transfers --json",
             getenv("CONVOY_BIN") ? getenv("CONVOY_BIN") : "build/convoy", s->cl.state);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = '\0';
    pclose(p);
    return cJSON_Parse(buf);
}

/* The state of the newest transfer, once it is done (or after 3 s). */
static const char *newest_state(struct scene *s, cJSON **doc)
{
    for (int waited = 0; waited < 3000; waited += 50) {
        cJSON_Delete(*doc);
        *doc = transfers(s);
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(*doc, "transfers");
        const cJSON *last = cJSON_GetArrayItem(list, cJSON_GetArraySize(list) - 1);
        const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(last, "state"));
        if (st && strcmp(st, "done") == 0)
            return st;
        usleep(50 * 1000);
    }
    return "not done";
}

static void test_curl_follows(void)
{
    struct scene s;
    char out[4096], args[1024];
    CU_ASSERT_FATAL(scene_start(&s) == 0);
    snprintf(args, sizeof args, "-L -u alice:secret https://%s/f/hello.txt", s.http);
    CU_ASSERT_EQUAL(curl(&s, args, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "hello, convoy\n");
    cJSON *doc = NULL;
    CU_ASSERT_STRING_EQUAL(newest_state(&s, &doc), "done");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "transfers");
    const cJSON *t = cJSON_GetArrayItem(list, cJSON_GetArraySize(list) - 1);
    const cJSON *legs = cJSON_GetObjectItemCaseSensitive(t, "legs");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(legs), 1);
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "user")),
                           "alice");
    const cJSON *leg = cJSON_GetArrayItem(legs, 0);
    CU_ASSERT_EQUAL(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(leg, "bytes")), 14);
    cJSON_Delete(doc);
    CU_ASSERT_EQUAL(h_cluster_free(&s.cl), 0);
}

/* What the balancer answers, as "<status code>". */
static void expect_status(struct scene *s, const char *opts, const char *path, const char *want)
{
    char out[4096], args[1024];
    snprintf(args, sizeof args, "-o /dev/null -w '%%{http_code}' %s --path-as-is https://%s%s",
             opts, s->http, path);
    curl(s, args, out, sizeof out);
    if (strcmp(out, want) != 0)
        fprintf(stderr, "transfer: %s %s: got %s, want %s\n", opts, path, out, want);
    CU_ASSERT_STRING_EQUAL(out, want);
}

static void test_refusals(void)
{
    struct scene s;
    CU_ASSERT_FATAL(scene_start(&s) == 0);
    expect_status(&s, "", "/f/hello.txt", "401");
    expect_status(&s, "-u alice:wrong", "/f/hello.txt", "401");
    expect_status(&s, "-u alice:secret", "/f/../../etc/passwd", "404");
    expect_status(&s, "-u alice:secret", "/f/%2e%2e/%2e%2e/etc/passwd", "404");
    expect_status(&s, "-u alice:secret", "/f/missing.bin", "404");
    expect_status(&s, "-u alice:secret", "/v1/transfers", "403"); /* admin only */
    CU_ASSERT_EQUAL(h_cluster_free(&s.cl), 0);
}

void suite_transfer(void)
{
    CU_pSuite s = CU_add_suite("transfer", NULL, NULL);
    CU_add_test(s, "curl -L through the balancer: the file, one leg, done", test_curl_follows);
    CU_add_test(s, "no credentials, wrong password, traversal, missing file", test_refusals);
}
