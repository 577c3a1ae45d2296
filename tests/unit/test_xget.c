/*
 * xget: the socket-free pieces of `convoy get` — URLs as a user types them,
 * Repr-Digest values as RFC 9530 writes them (and what a hostile server
 * could send instead), the streaming hash, --limit-rate, and the partial
 * file that a second run resumes only when it is of the same ETag.
 */
#include "convoy/xget.h"
#include "../common/fixture.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* SHA-256("abc") and its Repr-Digest form. */
static const uint8_t abc_sha[32] = {
    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
#define ABC_B64 "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="

static void test_url(void)
{
    struct xget_url u;
    char err[128], hp[64];
    CU_ASSERT_EQUAL(xget_url_parse("https://127.0.0.1:8443/f/a?x=1", &u, err, sizeof err), 0);
    CU_ASSERT(u.tls);
    CU_ASSERT_STRING_EQUAL(u.host, "127.0.0.1");
    CU_ASSERT_EQUAL(u.port, 8443);
    CU_ASSERT_STRING_EQUAL(u.path, "/f/a?x=1");
    CU_ASSERT_EQUAL(xget_url_parse("http://localhost", &u, err, sizeof err), 0);
    CU_ASSERT(!u.tls);
    CU_ASSERT_EQUAL(u.port, 80);
    CU_ASSERT_STRING_EQUAL(u.path, "/");
    CU_ASSERT_EQUAL(xget_url_parse("https://[::1]:9/x", &u, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(xget_url_authority(&u, hp, sizeof hp), "[::1]:9");
    CU_ASSERT_EQUAL(xget_url_parse("https://[::1]", &u, err, sizeof err), 0);
    CU_ASSERT_EQUAL(u.port, 443);
    static const char *const bad[][2] = {
        {"ftp://1.2.3.4/", "https://"},        {"https://u:p@127.0.0.1/", "user info"},
        {"https://127.0.0.1:0/", "port 0"},    {"https://127.0.0.1:70000/", "1 to 65535"},
        {"https://127.0.0.1:/", "empty port"}, {"https:///x", "no host"},
        {"https://[::1/", "unclosed"},         {"https://example.com/", "numeric"},
        {"https://1.2.3.4/a#b", "fragment"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CU_ASSERT_EQUAL(xget_url_parse(bad[i][0], &u, err, sizeof err), -EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i][1]));
    }
}

static void test_quote(void)
{
    char buf[64];
    CU_ASSERT_EQUAL(xget_path_quote("dir/a b.bin", buf, sizeof buf), 13);
    CU_ASSERT_STRING_EQUAL(buf, "dir/a%20b.bin");
    xget_path_quote("x?y#z%", buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "x%3Fy%23z%25");
    xget_path_quote("\xc3\xa9~-._", buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "%C3%A9~-._");
    CU_ASSERT_EQUAL(xget_path_quote("a b", buf, 5), -ENAMETOOLONG);
    CU_ASSERT_EQUAL(xget_path_quote("abc", buf, 4), 3);
    CU_ASSERT_EQUAL(xget_path_quote("abcd", buf, 4), -ENAMETOOLONG);
}

static int digest(const char *v, uint8_t out[32])
{
    return xget_digest_parse(v, strlen(v), out);
}

static void test_digest(void)
{
    uint8_t d[32];
    char back[64];
    CU_ASSERT_EQUAL(digest("sha-256=:" ABC_B64 ":", d), 0);
    CU_ASSERT_EQUAL(memcmp(d, abc_sha, 32), 0);
    CU_ASSERT_STRING_EQUAL(xget_digest_format(abc_sha, back, sizeof back), "sha-256=:" ABC_B64 ":");
    /* among other algorithms, with whitespace and parameters */
    CU_ASSERT_EQUAL(digest("sha-512=:AAAA:,  sha-256=:" ABC_B64 ":;x=1 ", d), 0);
    CU_ASSERT_EQUAL(memcmp(d, abc_sha, 32), 0);
    /* padding is optional in a byte sequence */
    CU_ASSERT_EQUAL(digest("sha-256=:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0:", d), 0);
    CU_ASSERT_EQUAL(digest("sha-512=:AAAA:", d), -ENOENT);
    CU_ASSERT_EQUAL(digest("", d), -ENOENT);
    CU_ASSERT_EQUAL(digest("SHA-256=:" ABC_B64 ":", d), -ENOENT); /* keys are lowercase */
    static const char *const bad[] = {
        "sha-256=" ABC_B64,                                           /* not a byte sequence */
        "sha-256=:" ABC_B64,                                          /* unclosed */
        "sha-256=:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa==:",     /* 31 bytes */
        "sha-256=:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0AAAA=:", /* 35 bytes */
        "sha-256=:ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0=:",     /* base64url */
        "sha-256=:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa1=:",     /* stray low bits */
        "sha-256=:" ABC_B64 ":junk",                                  /* junk after */
        ",",                                                          /* empty member */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_EQUAL(digest(bad[i], d), -EINVAL);
}

static void test_hash(void)
{
    xget_hash_t *h;
    CU_ASSERT_FATAL(xget_hash_new(&h) == 0);
    xget_hash_update(h, "a", 1);
    xget_hash_update(h, "bc", 2);
    CU_ASSERT(xget_hash_check(h, abc_sha));
    xget_hash_update(h, "abd", 3); /* started again empty */
    CU_ASSERT(!xget_hash_check(h, abc_sha));
    xget_hash_update(h, "abc", 3);
    CU_ASSERT(xget_hash_check(h, abc_sha));
    xget_hash_free(h);
}

static void test_rate(void)
{
    uint64_t r;
    CU_ASSERT(xget_rate_parse("10M", &r) == 0 && r == 10u << 20);
    CU_ASSERT(xget_rate_parse("512k", &r) == 0 && r == 512u << 10);
    CU_ASSERT(xget_rate_parse("2G", &r) == 0 && r == 2ull << 30);
    CU_ASSERT(xget_rate_parse("1000", &r) == 0 && r == 1000);
    static const char *const bad[] = {"", "0", "-1", "M", "10MB", "1.5M", "10 M", "99999999999G"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_EQUAL(xget_rate_parse(bad[i], &r), -EINVAL);
}

static void test_pace(void)
{
    struct xget_pace p;
    xget_pace_start(&p, 0, 1000, 0);
    CU_ASSERT_EQUAL(xget_pace_wait(&p, 1000, 1u << 30), 0); /* unlimited */
    xget_pace_start(&p, 1000, 1000, 0);                     /* 1000 B/s, burst 100 */
    CU_ASSERT_EQUAL(xget_pace_wait(&p, 1000, 100), 0);
    CU_ASSERT_EQUAL(xget_pace_wait(&p, 1000, 600), 500);
    CU_ASSERT_EQUAL(xget_pace_wait(&p, 1300, 600), 200);
    CU_ASSERT_EQUAL(xget_pace_wait(&p, 1600, 600), 0);
    /* ten seconds of silence: the pacer starts over, no flood of 10 KB */
    CU_ASSERT_EQUAL(xget_pace_wait(&p, 11600, 700), 0);
    CU_ASSERT_EQUAL(xget_pace_wait(&p, 11600, 1300), 500);
    /* a resumed part: bytes before the start do not count */
    xget_pace_start(&p, 1000, 0, 5000);
    CU_ASSERT_EQUAL(xget_pace_wait(&p, 0, 5100), 0);
    CU_ASSERT_EQUAL(xget_pace_wait(&p, 0, 6100), 1000);
    /* how much of a big receive may be taken: the burst, then the rate */
    CU_ASSERT_EQUAL(xget_pace_allow(&p, 0, 5000), 100);
    CU_ASSERT_EQUAL(xget_pace_allow(&p, 300, 5100), 300);
    CU_ASSERT_EQUAL(xget_pace_allow(&p, 300, 5500), 0);
    xget_pace_start(&p, 0, 0, 0);
    CU_ASSERT_EQUAL(xget_pace_allow(&p, 0, 1u << 30), UINT64_MAX);
}

static char dir[64], part[128], meta[128], out[128];

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static void test_meta(void)
{
    struct xget_meta m = {.etag = "\"v1-3\"", .size = 3}, back;
    memcpy(m.digest, abc_sha, 32);
    CU_ASSERT_EQUAL(xget_meta_load(meta, &back), -ENOENT);
    CU_ASSERT_FATAL(xget_meta_save(meta, &m) == 0);
    CU_ASSERT_EQUAL(xget_meta_load(meta, &back), 0);
    CU_ASSERT_STRING_EQUAL(back.etag, "\"v1-3\"");
    CU_ASSERT_EQUAL(back.size, 3);
    CU_ASSERT_EQUAL(memcmp(back.digest, abc_sha, 32), 0);
    static const char *const bad[] = {
        "convoy-part 2\netag \"x\"\nsize 3\ndigest sha-256=:" ABC_B64 ":\n",
        "convoy-part 1\netag \"x\"\nsize 3\n",
        "convoy-part 1\netag \"x\"\nsize -3\ndigest sha-256=:" ABC_B64 ":\n",
        "convoy-part 1\netag \"x\"\nsize 3\ndigest sha-256=:" ABC_B64 ":\nmore 1\n",
        "junk",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_FATAL(write_file(meta, bad[i]) == 0);
        CU_ASSERT_EQUAL(xget_meta_load(meta, &back), -EINVAL);
    }
    unlink(meta);
}

/* A first run leaves "ab" of "abc"; the second finds it, keeps it, appends
 * "c", and the digest over the whole file matches. */
static void test_part_resume(void)
{
    struct xget_meta m = {.etag = "\"e1\"", .size = 3}, found;
    memcpy(m.digest, abc_sha, 32);
    uint64_t have = 99;
    xget_hash_t *h;
    CU_ASSERT_FATAL(xget_hash_new(&h) == 0);
    CU_ASSERT_EQUAL(xget_part_find(part, meta, &found, &have), -ENOENT);
    int fd = xget_part_open(part, meta, &m, 0, h);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(write(fd, "ab", 2), 2);
    close(fd);

    CU_ASSERT_EQUAL(xget_part_find(part, meta, &found, &have), 0);
    CU_ASSERT_EQUAL(have, 2);
    CU_ASSERT_STRING_EQUAL(found.etag, "\"e1\"");
    xget_hash_t *h2;
    CU_ASSERT_FATAL(xget_hash_new(&h2) == 0);
    fd = xget_part_open(part, meta, &found, have, h2);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(write(fd, "c", 1), 1);
    xget_hash_update(h2, "c", 1);
    CU_ASSERT(xget_hash_check(h2, abc_sha));
    CU_ASSERT_EQUAL(xget_part_finish(fd, part, meta, out), 0);
    CU_ASSERT_EQUAL(access(part, F_OK), -1);
    CU_ASSERT_EQUAL(access(meta, F_OK), -1);
    char buf[8] = "";
    FILE *f = fopen(out, "r");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL(fread(buf, 1, sizeof buf, f), 3);
    fclose(f);
    CU_ASSERT_STRING_EQUAL(buf, "abc");
    xget_hash_free(h);
    xget_hash_free(h2);
    unlink(out);
}

/* A part longer than its meta's size, or without a meta, is not resumed;
 * one shorter than what a caller keeps is refused; keep 0 truncates. */
static void test_part_refused(void)
{
    struct xget_meta m = {.etag = "\"e1\"", .size = 2}, found;
    uint64_t have;
    xget_hash_t *h;
    CU_ASSERT_FATAL(xget_hash_new(&h) == 0);
    CU_ASSERT_FATAL(write_file(part, "abc") == 0);
    CU_ASSERT_EQUAL(xget_part_find(part, meta, &found, &have), -ENOENT); /* no meta */
    CU_ASSERT_FATAL(xget_meta_save(meta, &m) == 0);
    CU_ASSERT_EQUAL(xget_part_find(part, meta, &found, &have), -ENOENT); /* too long */
    CU_ASSERT_EQUAL(xget_part_open(part, meta, &m, 5, h), -ESTALE);
    int fd = xget_part_open(part, meta, &m, 0, h);
    CU_ASSERT_FATAL(fd >= 0);
    struct stat st;
    CU_ASSERT(fstat(fd, &st) == 0 && st.st_size == 0);
    close(fd);
    xget_hash_free(h);
    unlink(part);
    unlink(meta);
}

static void test_auth(void)
{
    char buf[128];
    CU_ASSERT_EQUAL(xget_auth_basic("alice", "open sesame", buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, "Basic YWxpY2U6b3BlbiBzZXNhbWU=");
    CU_ASSERT_EQUAL(xget_auth_basic("a:b", "pw", buf, sizeof buf), -EINVAL);
    CU_ASSERT_EQUAL(xget_auth_basic("a", "p\r\nX-Evil: 1", buf, sizeof buf), -EINVAL);
    CU_ASSERT_EQUAL(xget_auth_basic("alice", "open sesame", buf, 20), -ENOSPC);
    CU_ASSERT_EQUAL(xget_auth_bearer("tok123", buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, "Bearer tok123");
    CU_ASSERT_EQUAL(xget_auth_bearer("t k", buf, sizeof buf), -EINVAL);
    CU_ASSERT_EQUAL(xget_auth_bearer("", buf, sizeof buf), -EINVAL);
}

static void test_exit_codes(void)
{
    CU_ASSERT_EQUAL(xget_exit_for_status(200), XGET_OK);
    CU_ASSERT_EQUAL(xget_exit_for_status(206), XGET_OK);
    CU_ASSERT_EQUAL(xget_exit_for_status(401), XGET_EAUTH);
    CU_ASSERT_EQUAL(xget_exit_for_status(403), XGET_EAUTH);
    CU_ASSERT_EQUAL(xget_exit_for_status(429), XGET_EAUTH);
    CU_ASSERT_EQUAL(xget_exit_for_status(404), XGET_ENOTFOUND);
    CU_ASSERT_EQUAL(xget_exit_for_status(503), XGET_ENOSERVER);
    CU_ASSERT_EQUAL(xget_exit_for_status(418), XGET_ENET);
    /* every code distinct and named */
    for (int a = XGET_OK; a <= XGET_ENET; a++)
        for (int b = a + 1; b <= XGET_ENET; b++)
            CU_ASSERT_STRING_NOT_EQUAL(xget_exit_str(a), xget_exit_str(b));
}

static int suite_init(void)
{
    if (fx_tmpdir(dir, sizeof dir) != 0)
        return -1;
    snprintf(part, sizeof part, "%s/x.bin.part", dir);
    snprintf(meta, sizeof meta, "%s/x.bin.part.meta", dir);
    snprintf(out, sizeof out, "%s/x.bin", dir);
    return 0;
}

static int suite_clean(void)
{
    fx_rmtree(dir);
    return 0;
}

void suite_xget(void)
{
    CU_pSuite s = CU_add_suite("xget", suite_init, suite_clean);
    CU_add_test(s, "URLs: forms, defaults, what is refused", test_url);
    CU_add_test(s, "paths quoted for a URL", test_quote);
    CU_add_test(s, "Repr-Digest: sha-256 among others, malformed values", test_digest);
    CU_add_test(s, "streaming SHA-256", test_hash);
    CU_add_test(s, "--limit-rate values", test_rate);
    CU_add_test(s, "pacing: burst, average, no flood after a pause", test_pace);
    CU_add_test(s, "part meta: round trip, refused forms", test_meta);
    CU_add_test(s, "part: a second run resumes and the digest covers all", test_part_resume);
    CU_add_test(s, "part: not resumed without meta or when too long", test_part_refused);
    CU_add_test(s, "Authorization values", test_auth);
    CU_add_test(s, "exit codes", test_exit_codes);
}
