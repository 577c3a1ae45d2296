/*
 * cli: what a user reads from build/convoy itself: the version, the reasons
 * given for a bad option, and help that documents what the commands print.
 */
#include "harness.h"
#include "../common/fixture.h"
#include "convoy/users.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* Runs `convoy ARGS` (args are shell words), its stdout and stderr into out;
 * with input, that line is its stdin. Returns the exit status, -1 if it
 * could not run. */
static int run_in(char *out, size_t cap, const char *input, const char *args)
{
    const char *bin = getenv("CONVOY_BIN");
    char cmd[1024];
    if (input != NULL && setenv("CONVOY_TEST_INPUT", input, 1) != 0)
        return -1;
    snprintf(cmd, sizeof cmd, "%s%s %s 2>&1",
             input != NULL ? "printf '%s\\n' \"$CONVOY_TEST_INPUT\" | " : "",
             bin && *bin ? bin : "build/convoy", args);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int run(char *out, size_t cap, const char *args)
{
    return run_in(out, cap, NULL, args);
}

static void test_version(void)
{
    char a[256], b[4096];
    CU_ASSERT_EQUAL(run(a, sizeof a, "--version"), 0);
    CU_ASSERT_EQUAL(run(b, sizeof b, "version"), 0);
    CU_ASSERT_STRING_EQUAL(a, b);
    CU_ASSERT_EQUAL(strncmp(a, "convoy ", 7), 0);
    CU_ASSERT(strlen(a) > 8 && strchr(a, '\n') == a + strlen(a) - 1);
    CU_ASSERT_EQUAL(run(b, sizeof b, "--help"), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(b, "version"));
}

/* The reason names the option and what is wrong with it. */
static void test_bad_addresses(void)
{
    char out[4096];
    CU_ASSERT_EQUAL(run(out, sizeof out,
                        "balancer --pki /nonexistent --name b --control "
                        "127.0.0.1:99999"),
                    2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "option=--control"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "port 99999 out of range (0-65535)"));
    CU_ASSERT_EQUAL(run(out, sizeof out,
                        "fileserver --pki /nonexistent --name f --root / "
                        "--balancer 127.0.0.1:0 --http 127.0.0.1:8080"),
                    2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "option=--balancer"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "port 0 cannot be dialled"));
    CU_ASSERT_EQUAL(run(out, sizeof out,
                        "fileserver --pki /nonexistent --name f --root / "
                        "--balancer 127.0.0.1:7000 --http 127.0.0.1"),
                    2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "option=--http"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "expected HOST:PORT"));
}

/* Every key of the document (objects inside arrays too) is in help, quoted
 * as in the JSON. */
static void expect_keys_documented(const cJSON *doc, const char *help)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, doc)
    {
        char quoted[64];
        snprintf(quoted, sizeof quoted, "\"%s\"", item->string ? item->string : "");
        if (item->string != NULL && strstr(help, quoted) == NULL) {
            fprintf(stderr, "cli: status --help does not document \"%s\"\n", item->string);
            CU_FAIL("a key of status --json is missing from status --help");
        }
        if (cJSON_IsObject(item) || cJSON_IsArray(item))
            expect_keys_documented(item, help);
    }
}

/* The whole shape of status --json, read from a real balancer with one
 * server, is in status --help. */
static void test_status_help_documents_json(void)
{
    static const char *const one[] = {"fs1", NULL};
    struct cluster c;
    char help[8192];
    CU_ASSERT_EQUAL(run(help, sizeof help, "status --help"), 0);
    CU_ASSERT_FATAL(h_cluster_init(&c, one) == 0);
    cJSON *doc = NULL;
    if (h_balancer(&c) > 0 && h_fileserver(&c, "fs1", c.pki) > 0 &&
        h_wait_state(&c, "fs1", "up", 5000) >= 0)
        doc = h_status(&c);
    CU_ASSERT_PTR_NOT_NULL(doc);
    CU_ASSERT_PTR_NOT_NULL(cJSON_GetObjectItemCaseSensitive(doc, "balancer"));
    CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "servers")), 1);
    expect_keys_documented(doc, help);
    cJSON_Delete(doc);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

/* convoy user: add with the password on stdin, token, list, del; what it
 * wrote logs in, and holds neither password nor token. */
static void test_user(void)
{
    char dir[64], file[128], args[512], out[4096], text[4096];
    users_t *db = NULL;
    struct users_check c;
    CU_ASSERT_FATAL(fx_tmpdir(dir, sizeof dir) == 0);
    snprintf(file, sizeof file, "%s/users", dir);
    snprintf(args, sizeof args, "user add bob --file %s --role submit", file);
    CU_ASSERT_EQUAL(run_in(out, sizeof out, "s3cret pass", args), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "user bob role=submit"));
    snprintf(args, sizeof args, "user token bob --file %s", file);
    CU_ASSERT_EQUAL(run(out, sizeof out, args), 0);
    char token[64] = "";
    sscanf(out, "%63s", token);
    CU_ASSERT_EQUAL(strlen(token), USERS_TOKEN_LEN);

    struct stat st;
    CU_ASSERT_EQUAL(stat(file, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    FILE *f = fopen(file, "r");
    size_t n = f != NULL ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    text[n] = '\0';
    CU_ASSERT_PTR_NULL(strstr(text, "s3cret"));
    CU_ASSERT_PTR_NULL(strstr(text, token));

    char basic[128], bearer[128];
    snprintf(bearer, sizeof bearer, "Bearer %s", token);
    snprintf(basic, sizeof basic, "Basic %s", "Ym9iOnMzY3JldCBwYXNz"); /* bob:s3cret pass */
    CU_ASSERT_EQUAL_FATAL(users_load(&db, file, out, sizeof out), 0);
    CU_ASSERT_EQUAL(users_check_sync(db, basic, strlen(basic), NULL, 1, &c), USERS_OK);
    CU_ASSERT_EQUAL(c.role, USERS_SUBMIT);
    CU_ASSERT_EQUAL(users_check_sync(db, bearer, strlen(bearer), NULL, 1, &c), USERS_OK);
    users_free(db);

    snprintf(args, sizeof args, "user list --file %s", file);
    CU_ASSERT_EQUAL(run(out, sizeof out, args), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "bob"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "submit"));
    snprintf(args, sizeof args, "user del bob --file %s", file);
    CU_ASSERT_EQUAL(run(out, sizeof out, args), 0);
    CU_ASSERT_EQUAL(run(out, sizeof out, args), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "no user 'bob'"));
    snprintf(args, sizeof args, "user list --file %s", file);
    CU_ASSERT_EQUAL(run(out, sizeof out, args), 0);
    CU_ASSERT_PTR_NULL(strstr(out, "bob"));

    /* No password, a bad role, a password on argv: refused. */
    snprintf(args, sizeof args, "user add eve --file %s </dev/null", file);
    CU_ASSERT_EQUAL(run(out, sizeof out, args), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "no password on stdin"));
    snprintf(args, sizeof args, "user add eve --file %s --role root", file);
    CU_ASSERT_EQUAL(run_in(out, sizeof out, "pw", args), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--role takes read, submit or admin"));
    snprintf(args, sizeof args, "user add eve pw --file %s", file);
    CU_ASSERT_EQUAL(run_in(out, sizeof out, "pw", args), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "unexpected argument 'pw'"));
    /* A users file others can read is refused. */
    CU_ASSERT_EQUAL(chmod(file, 0644), 0);
    snprintf(args, sizeof args, "user list --file %s", file);
    CU_ASSERT_EQUAL(run(out, sizeof out, args), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "mode 0644"));
    fx_rmtree(dir);
}

void suite_cli(void)
{
    CU_pSuite s = CU_add_suite("cli", NULL, NULL);
    CU_add_test(s, "--version and version", test_version);
    CU_add_test(s, "bad addresses: which option, and why", test_bad_addresses);
    CU_add_test(s, "status --help documents all of --json", test_status_help_documents_json);
    CU_add_test(s, "user add (password on stdin), token, list, del", test_user);
}
