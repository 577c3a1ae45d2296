/*
 * users: a user added with a password logs in with it and nothing else, as
 * its role; a token works until it is replaced; a verified header is
 * answered from the cache without the hash; repeated failures from one
 * address or for one user are throttled without looking at the password,
 * and the throttle ends; bad headers are malformed; a users file others can
 * read is refused.
 */
#include "convoy/b64.h"
#include "convoy/pki.h"
#include "convoy/users.h"
#include "../common/fixture.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static char base[64], path[128], err[512];

static int suite_init(void)
{
    if (fx_tmpdir(base, sizeof base) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/users", base);
    if (users_file_add(path, "alice", USERS_READ, "correct horse", 13, err, sizeof err) != 0 ||
        users_file_add(path, "root", USERS_ADMIN, "toor", 4, err, sizeof err) != 0) {
        fprintf(stderr, "users: %s\n", err);
        return -1;
    }
    return 0;
}

static int suite_clean(void)
{
    fx_rmtree(base);
    return 0;
}

static users_t *load(void)
{
    users_t *db = NULL;
    int rc = users_load(&db, path, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "users: %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    return db;
}

/* "Basic base64(user:pw)". */
static const char *basic(const char *user, const char *pw)
{
    static char h[USERS_HEADER_MAX];
    char plain[512];
    int n = snprintf(plain, sizeof plain, "%s:%s", user, pw);
    memcpy(h, "Basic ", 6);
    b64_encode(plain, (size_t)n, B64_STD, h + 6, sizeof h - 6);
    return h;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static enum users_result check(users_t *db, const char *h, const char *addr, uint64_t now_ms,
                               struct users_check *c)
{
    struct net_addr a;
    CU_ASSERT_FATAL(net_addr_parse(addr, &a) == 0);
    return users_check_sync(db, h, strlen(h), &a, now_ms, c);
}

static void test_password(void)
{
    users_t *db = load();
    struct users_check c;
    CU_ASSERT_EQUAL(users_count(db), 2);
    double t0 = now_s();
    CU_ASSERT_EQUAL(check(db, basic("alice", "correct horse"), "10.0.0.1:1", 1000, &c), USERS_OK);
    double t1 = now_s();
    CU_ASSERT_STRING_EQUAL(c.user, "alice");
    CU_ASSERT_EQUAL(c.role, USERS_READ);
    CU_ASSERT_FALSE(c.cached);
    /* The same header again: from the cache, no hash. */
    CU_ASSERT_EQUAL(check(db, basic("alice", "correct horse"), "10.0.0.2:1", 2000, &c), USERS_OK);
    double t2 = now_s();
    CU_ASSERT_TRUE(c.cached);
    CU_ASSERT_STRING_EQUAL(c.user, "alice");
    printf("\n    users: scrypt check %.1f ms, cached check %.1f us\n", (t1 - t0) * 1e3,
           (t2 - t1) * 1e6);
    CU_ASSERT(t1 - t0 > 0.01);
    CU_ASSERT((t2 - t1) * 50 < t1 - t0);
    /* Past its lifetime the cache entry is gone and the hash is paid. */
    CU_ASSERT_EQUAL(check(db, basic("alice", "correct horse"), "10.0.0.2:1",
                          2000 + USERS_CACHE_S * 1000 + 1, &c),
                    USERS_OK);
    CU_ASSERT_FALSE(c.cached);

    CU_ASSERT_EQUAL(check(db, basic("alice", "wrong"), "10.0.0.3:1", 3000, &c), USERS_DENIED);
    CU_ASSERT_EQUAL(check(db, basic("alice", "correct horsE"), "10.0.0.3:1", 3000, &c),
                    USERS_DENIED);
    double t3 = now_s();
    CU_ASSERT_EQUAL(check(db, basic("mallory", "x"), "10.0.0.3:1", 3000, &c), USERS_DENIED);
    double t4 = now_s();
    CU_ASSERT(t4 - t3 > (t1 - t0) / 4); /* an unknown name pays the hash too */
    CU_ASSERT_EQUAL(check(db, basic("root", "toor"), "10.0.0.3:1", 3000, &c), USERS_OK);
    CU_ASSERT_EQUAL(c.role, USERS_ADMIN);
    users_free(db);
}

static void test_roles(void)
{
    CU_ASSERT_TRUE(users_role_allows(USERS_READ, USERS_READ));
    CU_ASSERT_FALSE(users_role_allows(USERS_READ, USERS_SUBMIT));
    CU_ASSERT_FALSE(users_role_allows(USERS_SUBMIT, USERS_READ));
    CU_ASSERT_FALSE(users_role_allows(USERS_READ, USERS_ADMIN));
    CU_ASSERT_TRUE(users_role_allows(USERS_ADMIN, USERS_READ));
    CU_ASSERT_TRUE(users_role_allows(USERS_ADMIN, USERS_SUBMIT));
    enum users_role r;
    CU_ASSERT_EQUAL(users_role_parse("submit", &r), 0);
    CU_ASSERT_EQUAL(r, USERS_SUBMIT);
    CU_ASSERT_EQUAL(users_role_parse("root", &r), -EINVAL);
    CU_ASSERT_STRING_EQUAL(users_role_str(USERS_ADMIN), "admin");
}

static void test_token(void)
{
    char tok1[USERS_TOKEN_LEN + 1], tok2[USERS_TOKEN_LEN + 1], h[128];
    struct users_check c;
    CU_ASSERT_EQUAL_FATAL(users_file_token(path, "root", tok1, err, sizeof err), 0);
    CU_ASSERT_EQUAL(strlen(tok1), USERS_TOKEN_LEN);
    users_t *db = load();
    snprintf(h, sizeof h, "Bearer %s", tok1);
    CU_ASSERT_EQUAL(check(db, h, "10.0.1.1:1", 1000, &c), USERS_OK);
    CU_ASSERT_STRING_EQUAL(c.user, "root");
    CU_ASSERT_EQUAL(c.role, USERS_ADMIN);
    users_free(db);
    /* A new token revokes the old one. */
    CU_ASSERT_EQUAL_FATAL(users_file_token(path, "root", tok2, err, sizeof err), 0);
    CU_ASSERT_NOT_EQUAL(strcmp(tok1, tok2), 0);
    db = load();
    CU_ASSERT_EQUAL(check(db, h, "10.0.1.1:1", 1000, &c), USERS_DENIED);
    snprintf(h, sizeof h, "Bearer %s", tok2);
    CU_ASSERT_EQUAL(check(db, h, "10.0.1.1:1", 1000, &c), USERS_OK);
    users_free(db);
    /* The file holds the hash, never the token. */
    FILE *f = fopen(path, "r");
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    CU_ASSERT_PTR_NULL(strstr(text, tok2));
    CU_ASSERT_PTR_NULL(strstr(text, "correct horse"));
    CU_ASSERT_EQUAL(users_file_token(path, "nobody", tok2, err, sizeof err), -ENOENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no user 'nobody'"));
}

static void test_malformed(void)
{
    static const char *const bad[] = {
        "Basic",
        "Basic ",
        "Basic !!!!",
        "Basic YWxpY2U=", /* no colon */
        "Digest abc",
        "Bearer short",
        "Basic YWxpY2U6", /* "alice:" */
        "Basic OnB3",     /* ":pw" */
        "Bearer !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
    };
    users_t *db = load();
    struct users_check c;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum users_result r = check(db, bad[i], "10.0.2.1:1", 1000, &c);
        CU_ASSERT_EQUAL(r, USERS_MALFORMED);
        if (r != USERS_MALFORMED)
            fprintf(stderr, "users: '%s' gave %s\n", bad[i], users_result_str(r));
    }
    CU_ASSERT_EQUAL(users_check_sync(db, NULL, 0, NULL, 1000, &c), USERS_MISSING);
    CU_ASSERT_EQUAL(users_check_sync(db, "Basic YQ==\0x", 12, NULL, 1000, &c), USERS_MALFORMED);
    char huge[USERS_HEADER_MAX + 8];
    memset(huge, 'A', sizeof huge);
    memcpy(huge, "Basic ", 6);
    CU_ASSERT_EQUAL(users_check_sync(db, huge, sizeof huge, NULL, 1000, &c), USERS_MALFORMED);
    /* The scheme is case-insensitive (RFC 9110). */
    const char *h = basic("root", "toor");
    char lower[USERS_HEADER_MAX + 8];
    snprintf(lower, sizeof lower, "basic %s", h + 6);
    CU_ASSERT_EQUAL(check(db, lower, "10.0.2.1:1", 1000, &c), USERS_OK);
    users_free(db);
}

/* USERS_FREE_FAILURES (5) wrong passwords, then throttled. */
static void test_throttle(void)
{
    users_t *db = load();
    struct users_check c;
    uint64_t t = 100000;
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(check(db, basic("alice", "guess"), "192.0.2.1:1", t, &c), USERS_DENIED);
    /* Blocked without the password being looked at: no hash, fast. */
    double t0 = now_s();
    CU_ASSERT_EQUAL(check(db, basic("alice", "correct horse"), "192.0.2.1:1", t, &c),
                    USERS_THROTTLED);
    CU_ASSERT(now_s() - t0 < 0.005);
    CU_ASSERT_EQUAL(c.retry_after_s, 1);
    /* For the user: another address is throttled too. */
    CU_ASSERT_EQUAL(check(db, basic("alice", "guess"), "192.0.2.99:1", t + 500, &c),
                    USERS_THROTTLED);
    /* The block ends; the next failure doubles it. */
    CU_ASSERT_EQUAL(check(db, basic("alice", "guess"), "192.0.2.1:1", t + 1000, &c), USERS_DENIED);
    CU_ASSERT_EQUAL(check(db, basic("alice", "guess"), "192.0.2.1:1", t + 1500, &c),
                    USERS_THROTTLED);
    CU_ASSERT_EQUAL(c.retry_after_s, 2);
    /* Past it, the right password works and forgets the user's failures. */
    CU_ASSERT_EQUAL(check(db, basic("alice", "correct horse"), "192.0.2.7:1", t + 3000, &c),
                    USERS_OK);
    CU_ASSERT_EQUAL(check(db, basic("alice", "guess"), "192.0.2.8:1", t + 3000, &c), USERS_DENIED);
    /* The guessing address stays slowed whatever user it tries. */
    CU_ASSERT_EQUAL(check(db, basic("root", "guess"), "192.0.2.1:1", t + 3000, &c), USERS_DENIED);
    CU_ASSERT_EQUAL(check(db, basic("root", "toor"), "192.0.2.1:1", t + 3100, &c), USERS_THROTTLED);
    /* A logged-in client (cached header) is not held back. */
    CU_ASSERT_EQUAL(check(db, basic("alice", "correct horse"), "192.0.2.1:1", t + 3100, &c),
                    USERS_OK);
    CU_ASSERT_TRUE(c.cached);
    /* Quiet for 15 minutes: the address's failures are forgotten. */
    CU_ASSERT_EQUAL(check(db, basic("root", "toor"), "192.0.2.1:1", t + 3100 + 900001, &c),
                    USERS_OK);
    users_free(db);
}

/* Failed tokens count against the address. */
static void test_throttle_tokens(void)
{
    users_t *db = load();
    struct users_check c;
    const char *h = "Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(check(db, h, "[2001:db8::1]:1", 1000, &c), USERS_DENIED);
    CU_ASSERT_EQUAL(check(db, h, "[2001:db8::2]:1", 1000, &c), USERS_THROTTLED); /* same /64 */
    CU_ASSERT_EQUAL(check(db, h, "[2001:db8:0:1::1]:1", 1000, &c), USERS_DENIED);
    users_free(db);
}

/* The three steps as the balancer runs them: prepare, verify elsewhere,
 * finish; checks in flight after a failure count against the limit. */
static void test_steps(void)
{
    users_t *db = load();
    struct users_check c[6];
    struct net_addr a;
    const char *h = basic("root", "wrong");
    net_addr_parse("198.51.100.1:1", &a);
    CU_ASSERT_EQUAL(users_check_sync(db, h, strlen(h), &a, 1000, &c[0]), USERS_DENIED);
    int pending = 0, throttled = 0;
    for (int i = 1; i < 6; i++) {
        enum users_result r = users_prepare(db, h, strlen(h), &a, 1000, &c[i]);
        pending += r == USERS_PENDING;
        throttled += r == USERS_THROTTLED;
    }
    CU_ASSERT_EQUAL(pending, 4);
    CU_ASSERT_EQUAL(throttled, 1);
    for (int i = 1; i < 6; i++) {
        users_verify(&c[i]);
        enum users_result r = users_finish(db, &c[i], 1000);
        CU_ASSERT(r == USERS_DENIED || r == USERS_THROTTLED);
        bool wiped = true; /* every byte, not just the first */
        for (size_t k = 0; k < sizeof c[i].priv.password; k++)
            wiped &= c[i].priv.password[k] == '\0';
        CU_ASSERT(wiped);
    }
    users_free(db);
}

static void test_file(void)
{
    char p2[160], line[256];
    users_t *db = NULL;
    CU_ASSERT_EQUAL(chmod(path, 0644), 0);
    CU_ASSERT_EQUAL(users_load(&db, path, err, sizeof err), -EPERM);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "mode 0644"));
    CU_ASSERT_EQUAL(chmod(path, 0600), 0);
    struct stat st;
    CU_ASSERT_EQUAL(users_file_add(path, "bob", USERS_SUBMIT, "pw", 2, err, sizeof err), 0);
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    CU_ASSERT_EQUAL(users_file_del(path, "bob", err, sizeof err), 0);
    CU_ASSERT_EQUAL(users_file_del(path, "bob", err, sizeof err), -ENOENT);
    CU_ASSERT_EQUAL(users_file_add(path, ".x", USERS_READ, "pw", 2, err, sizeof err), -EINVAL);
    CU_ASSERT_EQUAL(users_file_add(path, "x", USERS_READ, "", 0, err, sizeof err), -EINVAL);
    CU_ASSERT_EQUAL(users_load(&db, "/nonexistent/users", err, sizeof err), -ENOENT);
    /* A line off the schema names its line. */
    snprintf(p2, sizeof p2, "%s/bad", base);
    snprintf(line, sizeof line, "{\"user\":\"a\",\"role\":\"root\",\"password\":\"x\"}\n");
    CU_ASSERT_EQUAL(pki_write_atomic(p2, line, strlen(line), 0600, err, sizeof err), 0);
    CU_ASSERT_EQUAL(users_load(&db, p2, err, sizeof err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad:1: unknown role 'root'"));
}

void suite_users(void)
{
    CU_pSuite s = CU_add_suite("users", suite_init, suite_clean);
    CU_add_test(s, "password: right, wrong, unknown user, cache", test_password);
    CU_add_test(s, "roles", test_roles);
    CU_add_test(s, "token valid, replaced, revoked", test_token);
    CU_add_test(s, "malformed headers", test_malformed);
    CU_add_test(s, "throttle after failures, and its end", test_throttle);
    CU_add_test(s, "throttle on failed tokens, IPv6 /64", test_throttle_tokens);
    CU_add_test(s, "prepare, verify, finish", test_steps);
    CU_add_test(s, "users file: mode, edits, bad lines", test_file);
}
