/*
 * cli: what a user sees from build/convoy before any daemon runs: the
 * version, and the reasons given for a bad option.
 */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Runs `convoy ARGS` (args are shell words), its stdout and stderr into out.
 * Returns the exit status, -1 if it could not run. */
static int run(char *out, size_t cap, const char *args)
{
    const char *bin = getenv("CONVOY_BIN");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin && *bin ? bin : "build/convoy", args);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
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

void suite_cli(void)
{
    CU_pSuite s = CU_add_suite("cli", NULL, NULL);
    CU_add_test(s, "--version and version", test_version);
    CU_add_test(s, "bad addresses: which option, and why", test_bad_addresses);
}
