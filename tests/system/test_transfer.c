/*
 * transfer: a balancer with --http and two file servers; an unmodified curl
 * follows the redirect and gets the file, and the balancer's table records
 * it from redirect to last byte. Refusals: no credentials, a wrong
 * password, a traversal.
 */
#include "harness.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const two[] = {"fs1", "fs2", NULL};

struct scene {
    struct cluster cl;
};

static int scene_start_with(struct scene *s, const char *const *balancer_extra)
{
    char path[512];
    if (h_front_init(&s->cl, two) < 0)
        return -1;
    snprintf(path, sizeof path, "%s/data/hello.txt", s->cl.dir);
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs("hello, convoy\n", f) < 0 || fclose(f) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/data/a b+\xc3\xa9.txt", s->cl.dir); /* "a b+é.txt" */
    if ((f = fopen(path, "w")) == NULL || fputs("odd name\n", f) < 0 || fclose(f) != 0)
        return -1;
    return h_front_balancer(&s->cl, balancer_extra) < 0 || h_front_servers(&s->cl, two, NULL) < 0
               ? -1
               : 0;
}

static int scene_start(struct scene *s)
{
    return scene_start_with(s, NULL);
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

/* The newest record of path once it is done (or after 3 s); *doc holds
 * the table it is in. */
static const cJSON *done_record(struct scene *s, const char *path, cJSON **doc)
{
    const cJSON *t = NULL;
    for (int waited = 0; waited < 3000; waited += 50) {
        cJSON_Delete(*doc);
        *doc = h_transfers(&s->cl);
        t = h_transfer(*doc, path);
        if (strcmp(h_str(t, "state"), "done") == 0)
            return t;
        usleep(50 * 1000);
    }
    fprintf(stderr, "transfer: %s: state %s, not done\n", path, h_str(t, "state"));
    return NULL;
}

/* The one leg of a done record: server and bytes checked. */
static void expect_one_leg(const cJSON *t, double bytes)
{
    const cJSON *legs = cJSON_GetObjectItemCaseSensitive(t, "legs");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(legs), 1);
    const cJSON *leg = cJSON_GetArrayItem(legs, 0);
    CU_ASSERT_EQUAL(h_num(leg, "bytes"), bytes);
    CU_ASSERT_STRING_EQUAL(h_str(leg, "outcome"), "complete");
}

static void test_curl_follows(void)
{
    struct scene s;
    char out[4096], args[1024];
    CU_ASSERT_FATAL(scene_start(&s) == 0);
    snprintf(args, sizeof args, "-L -u alice:secret https://%s/f/hello.txt", s.cl.http);
    CU_ASSERT_EQUAL(curl(&s, args, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "hello, convoy\n");
    cJSON *doc = NULL;
    const cJSON *t = done_record(&s, "hello.txt", &doc);
    CU_ASSERT_PTR_NOT_NULL(t);
    CU_ASSERT_STRING_EQUAL(h_str(t, "user"), "alice");
    expect_one_leg(t, 14);
    cJSON_Delete(doc);
    CU_ASSERT_EQUAL(h_cluster_free(&s.cl), 0);
}

/* A name with a space, a '+' and UTF-8: the redirect's Location
 * percent-encodes every byte outside RFC 3986's unreserved set, and the
 * file server finds the file by it. */
static void test_curl_odd_name(void)
{
    struct scene s;
    char out[4096], args[1024];
    CU_ASSERT_FATAL(scene_start(&s) == 0);
    snprintf(
        args, sizeof args,
        "-o /dev/null -w '%%{redirect_url}' -u alice:secret https://%s/f/a%%20b%%2B%%C3%%A9.txt",
        s.cl.http);
    CU_ASSERT_EQUAL(curl(&s, args, out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "/f/a%20b%2B%C3%A9.txt?t="));
    snprintf(args, sizeof args, "-L -u alice:secret https://%s/f/a%%20b%%2B%%C3%%A9.txt",
             s.cl.http);
    CU_ASSERT_EQUAL(curl(&s, args, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "odd name\n");
    CU_ASSERT_EQUAL(h_cluster_free(&s.cl), 0);
}

/* wget as users run it: it sends the password only when challenged, and
 * follows the redirect to the file server. */
static void test_wget(void)
{
    struct scene s;
    char cmd[2048], out[512], got[64] = "";
    CU_ASSERT_FATAL(scene_start(&s) == 0);
    snprintf(out, sizeof out, "%s/hello.out", s.cl.dir);
    snprintf(cmd, sizeof cmd,
             "wget -q --timeout=10 --tries=1 --ca-certificate %s/ca.crt --user alice "
             "--password secret -O %s https://%s/f/hello.txt",
             s.cl.pki, out, s.cl.http);
    CU_ASSERT_EQUAL(system(cmd), 0);
    FILE *f = fopen(out, "r");
    CU_ASSERT_PTR_NOT_NULL(f);
    if (f) {
        CU_ASSERT_PTR_NOT_NULL(fgets(got, sizeof got, f));
        fclose(f);
    }
    CU_ASSERT_STRING_EQUAL(got, "hello, convoy\n");
    cJSON *doc = NULL;
    const cJSON *t = done_record(&s, "hello.txt", &doc);
    CU_ASSERT_PTR_NOT_NULL(t);
    expect_one_leg(t, 14);
    cJSON_Delete(doc);
    CU_ASSERT_EQUAL(h_cluster_free(&s.cl), 0);
}

/* What the balancer answers, as "<status code>". */
static void expect_status(struct scene *s, const char *opts, const char *path, const char *want)
{
    char out[4096], args[1024];
    snprintf(args, sizeof args, "-o /dev/null -w '%%{http_code}' %s --path-as-is https://%s%s",
             opts, s->cl.http, path);
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

/* A redirect not followed within the ticket's lifetime: the file server
 * refuses the ticket as expired; the same request followed at once works. */
static void test_expired_ticket(void)
{
    struct scene s;
    char url[2048], args[4096], out[4096];
    static const char *const ttl[] = {"--ticket-ttl-s", "1", NULL};
    CU_ASSERT_FATAL(scene_start_with(&s, ttl) == 0);
    snprintf(args, sizeof args,
             "-o /dev/null -w '%%{redirect_url}' -u alice:secret https://%s/f/hello.txt",
             s.cl.http);
    CU_ASSERT_EQUAL_FATAL(curl(&s, args, url, sizeof url), 0);
    CU_ASSERT_FATAL(strstr(url, "?t=") != NULL);
    snprintf(args, sizeof args, "'%s'", url);
    CU_ASSERT_EQUAL(curl(&s, args, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "hello, convoy\n"); /* fresh: served */
    sleep(2);
    snprintf(args, sizeof args, "-w ' %%{http_code}' '%s'", url);
    CU_ASSERT_EQUAL(curl(&s, args, out, sizeof out), 0);
    CU_ASSERT(strstr(out, "expired") != NULL);
    CU_ASSERT(strstr(out, " 403") != NULL);
    CU_ASSERT_EQUAL(h_cluster_free(&s.cl), 0);
}

void suite_transfer(void)
{
    CU_pSuite s = CU_add_suite("transfer", NULL, NULL);
    CU_add_test(s, "curl -L through the balancer: the file, one leg, done", test_curl_follows);
    CU_add_test(s, "wget through the balancer: the file, one leg, done", test_wget);
    CU_add_test(s, "a name with a space, '+' and UTF-8: encoded in the redirect, served",
                test_curl_odd_name);
    CU_add_test(s, "a ticket past its lifetime is refused as expired", test_expired_ticket);
    CU_add_test(s, "no credentials, wrong password, traversal, missing file", test_refusals);
}
