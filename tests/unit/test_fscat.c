/*
 * fscat: the ETag, path rules, the CATALOG body's wire form (round trips in
 * every split, bounds, bad lines refused with their number), the scan
 * (symlinks and unrepresentable names skipped) and the watcher (create,
 * modify, rename, delete, a new folder: each a delta).
 */
#include "convoy/fscat.h"

#include "convoy/frame.h"
#include "convoy/log.h"
#include "../common/fixture.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WATCHDOG_MS 3000

static void test_etag(void)
{
    struct stat st = {.st_size = 0x7b};
    st.st_mtim.tv_sec = 1;
    st.st_mtim.tv_nsec = 5;
    char etag[FSCAT_ETAG_MAX];
    fscat_etag(&st, etag);
    CU_ASSERT_STRING_EQUAL(etag, "\"7b-3b9aca05\"");
}

static void test_paths(void)
{
    static const char *const good[] = {"a",           "a/b.bin", "d\xc3\xa9j\xc3\xa0/x",
                                       "a b/\"q\"\\", ".hidden", "a..b"};
    static const char *const bad[] = {"",      "/a",       "a/",          "a//b", "./a",
                                      "a/./b", "..",       "a/../b",      "a\nb", "a\x7f",
                                      "\xff",  "\xc0\xaf", "\xed\xa0\x80"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CU_ASSERT(fscat_path_valid(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CU_ASSERT_FALSE(fscat_path_valid(bad[i], strlen(bad[i])));
    char longp[FSCAT_PATH_MAX + 2];
    memset(longp, 'a', sizeof longp - 1);
    longp[FSCAT_PATH_MAX + 1] = '\0';
    CU_ASSERT_FALSE(fscat_path_valid(longp, FSCAT_PATH_MAX + 1));
    CU_ASSERT(fscat_path_valid(longp, FSCAT_PATH_MAX));
}

/* ---- the wire form ---- */

#define GOT_MAX 8
static struct fscat_entry got[GOT_MAX];
static char got_path[GOT_MAX][FSCAT_PATH_MAX + 1];
static size_t ngot;

static int keep(void *arg, const struct fscat_entry *e)
{
    (void)arg;
    if (ngot == GOT_MAX)
        return -ENOSPC;
    got[ngot] = *e;
    snprintf(got_path[ngot], sizeof got_path[ngot], "%s", e->path);
    got[ngot].path = got_path[ngot];
    ngot++;
    return 0;
}

static const struct fscat_entry sample[] = {
    {.path = "a/b.bin", .size = 123, .mtime_ns = 1700000000123456789, .etag = "\"7b-1\""},
    {.path = "q\"uote\\d",
     .size = 0,
     .mtime_ns = -5,
     .etag = "\"0-0\"",
     .has_sha256 = true,
     .sha256 = {0xde, 0xad, 0xbe, 0xef, [31] = 0x01}},
    {.path = "gone/one", .gone = true},
};

static bool same(const struct fscat_entry *a, const struct fscat_entry *b)
{
    return strcmp(a->path, b->path) == 0 && a->gone == b->gone &&
           (a->gone || (a->size == b->size && a->mtime_ns == b->mtime_ns &&
                        strcmp(a->etag, b->etag) == 0 && a->has_sha256 == b->has_sha256 &&
                        memcmp(a->sha256, b->sha256, a->has_sha256 ? 32 : 0) == 0));
}

/* Reads body in pieces of step bytes; 0 or the first error (why filled). */
static int read_body(const char *body, size_t len, bool full, uint64_t count, size_t step,
                     char *why, size_t whylen)
{
    fscat_reader_t *r;
    ngot = 0;
    CU_ASSERT_FATAL(fscat_reader_new(&r, full, count, keep, NULL) == 0);
    int rc = 0;
    for (size_t off = 0; rc == 0 && off < len; off += step)
        rc = fscat_reader_feed(r, (const uint8_t *)body + off, len - off < step ? len - off : step,
                               why, whylen);
    if (rc == 0)
        rc = fscat_reader_end(r, why, whylen);
    fscat_reader_free(r);
    return rc;
}

static void test_round_trip(void)
{
    struct fscat_body b = {0};
    for (size_t i = 0; i < 3; i++)
        CU_ASSERT_FATAL(fscat_body_add(&b, &sample[i]) == 0);
    CU_ASSERT_EQUAL(b.count, 3);
    CU_ASSERT(memchr(b.data, '\n', b.len) != NULL);
    char why[256];
    for (size_t step = 1; step <= b.len; step += step < 8 ? 1 : 37) {
        CU_ASSERT_EQUAL_FATAL(read_body(b.data, b.len, false, 3, step, why, sizeof why), 0);
        CU_ASSERT_EQUAL_FATAL(ngot, 3);
        for (size_t i = 0; i < 3; i++)
            CU_ASSERT(same(&got[i], &sample[i]));
    }
    /* "gone" belongs to deltas only */
    CU_ASSERT_EQUAL(read_body(b.data, b.len, true, 3, b.len, why, sizeof why), FRAME_ESCHEMA);
    CU_ASSERT_STRING_EQUAL(why, "line 3: 'gone' in a full catalog");
    fscat_body_free(&b);
}

static void test_bounds(void)
{
    struct fscat_body b = {0};
    char why[256];
    struct fscat_entry bad = sample[0];
    bad.path = "../etc/passwd";
    CU_ASSERT_EQUAL(fscat_body_add(&b, &bad), -EINVAL);
    bad = sample[0];
    snprintf(bad.etag, sizeof bad.etag, "no quotes");
    CU_ASSERT_EQUAL(fscat_body_add(&b, &bad), -EINVAL);
    CU_ASSERT_FATAL(fscat_body_add(&b, &sample[0]) == 0);
    CU_ASSERT_FATAL(fscat_body_add(&b, &sample[0]) == 0);
    CU_ASSERT_EQUAL(read_body(b.data, b.len, true, 1, b.len, why, sizeof why), FRAME_ESCHEMA);
    CU_ASSERT_STRING_EQUAL(why, "line 2: more entries than the count announced");
    CU_ASSERT_EQUAL(read_body(b.data, b.len, true, 3, b.len, why, sizeof why), FRAME_ESCHEMA);
    CU_ASSERT_STRING_EQUAL(why, "2 entries, 3 announced");
    CU_ASSERT_EQUAL(read_body(b.data, b.len - 1, true, 2, 5, why, sizeof why), FRAME_ESCHEMA);
    CU_ASSERT_STRING_EQUAL(why, "line 2: no newline at the end");
    char *huge = malloc(FSCAT_LINE_MAX + 10);
    memset(huge, 'x', FSCAT_LINE_MAX + 10);
    CU_ASSERT_EQUAL(read_body(huge, FSCAT_LINE_MAX + 10, true, 1, 100, why, sizeof why),
                    FRAME_ESCHEMA);
    CU_ASSERT(strstr(why, "line 1: longer than") != NULL);
    free(huge);
    fscat_body_free(&b);
    cJSON *meta = fscat_meta_json(true, FSCAT_ENTRIES_MAX + 1ull);
    bool full;
    uint64_t count;
    CU_ASSERT_EQUAL(fscat_meta_parse(meta, &full, &count, why, sizeof why), FRAME_ESCHEMA);
    cJSON_Delete(meta);
    meta = fscat_meta_json(false, 7);
    CU_ASSERT_EQUAL(fscat_meta_parse(meta, &full, &count, why, sizeof why), 0);
    CU_ASSERT(!full && count == 7);
    cJSON_Delete(meta);
}

/* Each bad second line is refused as line 2, with what it lacks. */
static void test_bad_lines(void)
{
    static const struct {
        const char *line, *why;
    } cases[] = {
        {"{\"path\":\"a\",\"size\":01,\"mtime\":1,\"etag\":\"\\\"x\\\"\"}", "\"size\""},
        {"{\"path\":\"a\",\"size\":-1,\"mtime\":1,\"etag\":\"\\\"x\\\"\"}", "\"size\""},
        {"{\"path\":\"a\",\"size\":18446744073709551616,\"mtime\":1,\"etag\":\"\\\"x\\\"\"}",
         "\"size\""},
        {"{\"path\":\"a\",\"size\":1,\"mtime\":1.5,\"etag\":\"\\\"x\\\"\"}", "\"etag\""},
        {"{\"path\":\"a\",\"size\":1,\"mtime\":1,\"etag\":\"x\"}", "\"etag\""},
        {"{\"path\":\"../a\",\"size\":1,\"mtime\":1,\"etag\":\"\\\"x\\\"\"}", "path is not"},
        {"{\"path\":\"a\\u0000\",\"size\":1,\"mtime\":1,\"etag\":\"\\\"x\\\"\"}", "{\"path\""},
        {"{\"path\":\"a\",\"size\":1,\"mtime\":1,\"etag\":\"\\\"x\\\"\",\"sha256\":\"AB\"}",
         "\"sha256\""},
        {"{\"path\":\"a\",\"size\":1,\"mtime\":1,\"etag\":\"\\\"x\\\"\"} ", "trailing"},
        {"{\"size\":1,\"path\":\"a\",\"mtime\":1,\"etag\":\"\\\"x\\\"\"}", "{\"path\""},
        {"{\"path\":\"a\",\"size\":1,\"mtime\":1,\"etag\":\"\\\"x\\\"\",\"colour\":1}",
         "\"sha256\""},
        {"", "{\"path\""},
    };
    const char *first = "{\"path\":\"ok\",\"gone\":true}\n";
    char body[512], why[256];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int n = snprintf(body, sizeof body, "%s%s\n", first, cases[i].line);
        CU_ASSERT_EQUAL(read_body(body, (size_t)n, false, 2, 3, why, sizeof why), FRAME_ESCHEMA);
        CU_ASSERT(strncmp(why, "line 2: ", 8) == 0);
        CU_ASSERT(strstr(why, cases[i].why) != NULL);
        if (strstr(why, cases[i].why) == NULL)
            fprintf(stderr, "case %zu: %s\n", i, why);
    }
}

/* ---- the scan and the watcher ---- */

static char root[96];

static void put(const char *rel, const char *text)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
}

static const struct fscat_entry *find(const char *path)
{
    for (size_t i = 0; i < ngot; i++)
        if (strcmp(got[i].path, path) == 0)
            return &got[i];
    return NULL;
}

/* Every entry of a body, through the reader, into got. */
static void read_all(struct fscat_body *b, bool full)
{
    char why[256];
    CU_ASSERT_EQUAL(
        read_body(b->data ? b->data : "", b->len, full, b->count, 4096, why, sizeof why), 0);
    fscat_body_free(b);
}

static void test_scan_skips(void)
{
    char p[256];
    CU_ASSERT_FATAL(fx_tmpdir(root, sizeof root) == 0);
    put("one", "1");
    snprintf(p, sizeof p, "%s/sub", root);
    mkdir(p, 0755);
    put("sub/two", "22");
    put("bad\x01name", "x");
    snprintf(p, sizeof p, "%s/link", root);
    CU_ASSERT(symlink("/etc", p) == 0);
    snprintf(p, sizeof p, "%s/filelink", root);
    CU_ASSERT(symlink("one", p) == 0);
    fscat_t *c;
    CU_ASSERT_FATAL(fscat_new(&c, root, NULL, 0, NULL, NULL) == 0);
    CU_ASSERT_EQUAL(fscat_files(c), 2);
    CU_ASSERT_EQUAL(fscat_bytes(c), 3);
    struct fscat_body b = {0};
    CU_ASSERT_FATAL(fscat_full(c, &b) == 0);
    read_all(&b, true);
    CU_ASSERT_EQUAL(ngot, 2);
    CU_ASSERT_PTR_NOT_NULL(find("sub/two"));
    CU_ASSERT_EQUAL(find("one") ? find("one")->size : 0, 1);
    CU_ASSERT_FATAL(fscat_delta(c, &b) == 0);
    CU_ASSERT_EQUAL(b.count, 0); /* the full one carried everything */
    fscat_free(c);
    fx_rmtree(root);
}

static struct {
    ring_t *ring;
    fscat_t *cat;
    struct ring_timer watchdog;
    bool timed_out;
} w;

static void w_changed(void *arg)
{
    (void)arg;
    ring_stop(w.ring);
}

static void w_timeout(struct ring_timer *t)
{
    (void)t;
    w.timed_out = true;
    ring_stop(w.ring);
}

/* Runs the ring until the next settled change, then reads the delta. */
static void next_delta(void)
{
    w.timed_out = false;
    ring_timer_start(w.ring, &w.watchdog, WATCHDOG_MS, w_timeout);
    ring_run(w.ring);
    ring_timer_stop(w.ring, &w.watchdog);
    CU_ASSERT_FALSE(w.timed_out);
    struct fscat_body b = {0};
    CU_ASSERT(fscat_delta(w.cat, &b) == 0);
    read_all(&b, false);
}

static void test_watcher(void)
{
    log_set_level(LOG_ERROR);
    char a[256], bpath[256];
    CU_ASSERT_FATAL(fx_tmpdir(root, sizeof root) == 0);
    put("a", "1");
    CU_ASSERT_FATAL(ring_create(&w.ring, 64) == 0);
    CU_ASSERT_FATAL(fscat_new(&w.cat, root, w.ring, 20, w_changed, NULL) == 0);
    struct fscat_body b = {0};
    CU_ASSERT_FATAL(fscat_full(w.cat, &b) == 0);
    fscat_body_free(&b);

    put("created", "abc");
    next_delta();
    CU_ASSERT(ngot == 1 && find("created") && find("created")->size == 3);

    put("bad\x01name", "x"); /* not representable: never in a delta */
    put("good", "xy");
    next_delta();
    CU_ASSERT(ngot == 1 && find("good"));

    put("a", "longer now");
    next_delta();
    CU_ASSERT(ngot == 1 && find("a") && find("a")->size == 10 && !find("a")->gone);

    snprintf(a, sizeof a, "%s/a", root);
    snprintf(bpath, sizeof bpath, "%s/b", root);
    CU_ASSERT(rename(a, bpath) == 0);
    next_delta();
    CU_ASSERT(ngot == 2 && find("a") && find("a")->gone && find("b") && !find("b")->gone);

    CU_ASSERT(unlink(bpath) == 0);
    next_delta();
    CU_ASSERT(ngot == 1 && find("b") && find("b")->gone);

    snprintf(a, sizeof a, "%s/dir", root);
    CU_ASSERT(mkdir(a, 0755) == 0);
    put("dir/inside", "12345");
    next_delta();
    CU_ASSERT(find("dir/inside") && find("dir/inside")->size == 5);
    CU_ASSERT_EQUAL(fscat_files(w.cat), 3);

    ring_destroy(w.ring);
    fscat_free(w.cat);
    fx_rmtree(root);
    log_set_level(LOG_INFO);
}

static void test_sha256_joins(void)
{
    CU_ASSERT_FATAL(fx_tmpdir(root, sizeof root) == 0);
    put("f", "hello");
    fscat_t *c;
    CU_ASSERT_FATAL(fscat_new(&c, root, NULL, 0, NULL, NULL) == 0);
    struct fscat_body b = {0};
    CU_ASSERT_FATAL(fscat_full(c, &b) == 0);
    fscat_body_free(&b);
    char p[256];
    struct stat st;
    snprintf(p, sizeof p, "%s/f", root);
    CU_ASSERT_FATAL(stat(p, &st) == 0);
    uint8_t sha[32] = {1, 2, 3};
    CU_ASSERT_EQUAL(fscat_set_sha256(c, "nope", &st, sha), -ENOENT);
    st.st_size++;
    CU_ASSERT_EQUAL(fscat_set_sha256(c, "f", &st, sha), -ENOENT); /* another version */
    st.st_size--;
    CU_ASSERT_EQUAL(fscat_set_sha256(c, "f", &st, sha), 0);
    CU_ASSERT_FATAL(fscat_delta(c, &b) == 0);
    read_all(&b, false);
    CU_ASSERT(ngot == 1 && got[0].has_sha256 && got[0].sha256[2] == 3);
    fscat_free(c);
    fx_rmtree(root);
}

void suite_fscat(void)
{
    CU_pSuite s = CU_add_suite("fscat", NULL, NULL);
    CU_add_test(s, "ETag: size and mtime in hex, quoted", test_etag);
    CU_add_test(s, "paths: relative, no dot segments, printable UTF-8", test_paths);
    CU_add_test(s, "body round trip in every split", test_round_trip);
    CU_add_test(s, "bounds: count, newline, line length, meta", test_bounds);
    CU_add_test(s, "bad lines refused with their number", test_bad_lines);
    CU_add_test(s, "scan: symlinks and bad names skipped", test_scan_skips);
    CU_add_test(s, "watcher: create, modify, rename, delete, new folder", test_watcher);
    CU_add_test(s, "a SHA-256 learnt joins the next delta", test_sha256_joins);
}
