/*
 * fsdigest: digests match sha256sum, a request for a file not yet hashed
 * waits for its digest (and may give up waiting), a changed file is hashed
 * again, the cache spares a restart every read (measured), and a corrupt
 * cache is ignored and rewritten. Each test runs a real ring and pool.
 */
#include "convoy/fsdigest.h"

#include "../common/fixture.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WATCHDOG_MS 10000

static char tmp[PATH_MAX], root[PATH_MAX + 8], cache[PATH_MAX + 16];

struct scene {
    ring_t *ring;
    pool_t *pool;
    fsroot_t *root;
    fsdig_t *dig;
    struct ring_timer poll;
    uint64_t deadline;
    bool (*until)(struct scene *s);
    int known; /* on_known calls */
    /* one waiting request */
    struct fsdig_wait w;
    int calls, err;
    uint8_t got[FSDIG_LEN];
};

static int setup(void)
{
    if (fx_tmpdir(tmp, sizeof tmp) < 0)
        return -1;
    snprintf(root, sizeof root, "%s/root", tmp);
    snprintf(cache, sizeof cache, "%s/digests", tmp);
    return mkdir(root, 0755);
}

static int teardown(void)
{
    fx_rmtree(tmp);
    return 0;
}

static void path_of(char *p, size_t len, const char *rel)
{
    snprintf(p, len, "%s/%s", root, rel);
}

/* Writes size bytes of a pattern seeded by seed. */
static void put(const char *rel, size_t size, unsigned seed)
{
    char p[PATH_MAX * 2];
    path_of(p, sizeof p, rel);
    FILE *f = fopen(p, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (size_t i = 0; i < size; i++)
        fputc((int)((i * 131 + seed * 7) ^ (i >> 9)) & 0xff, f);
    fclose(f);
}

static void st_of(const char *rel, struct stat *st)
{
    char p[PATH_MAX * 2];
    path_of(p, sizeof p, rel);
    CU_ASSERT_EQUAL_FATAL(stat(p, st), 0);
}

/* sha256sum's hex for rel, into hex[65]. */
static void sha256sum(const char *rel, char hex[65])
{
    char cmd[PATH_MAX * 2 + 32];
    snprintf(cmd, sizeof cmd, "sha256sum '%s/%s'", root, rel);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(fscanf(p, "%64s", hex), 1);
    pclose(p);
}

static void to_hex(const uint8_t d[FSDIG_LEN], char hex[65])
{
    for (int i = 0; i < FSDIG_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

static void count_known(void *arg, const char *path, const struct stat *st,
                        const uint8_t digest[FSDIG_LEN])
{
    (void)path;
    (void)st;
    (void)digest;
    ((struct scene *)arg)->known++;
}

static void scene_start(struct scene *s, const char *cache_file)
{
    memset(s, 0, sizeof *s);
    CU_ASSERT_EQUAL_FATAL(ring_create(&s->ring, 64), 0);
    CU_ASSERT_EQUAL_FATAL(pool_create(&s->pool, 2, 64), 0);
    CU_ASSERT_EQUAL_FATAL(fsroot_open(&s->root, root), 0);
    struct fsdig_opts o = {.ring = s->ring,
                           .pool = s->pool,
                           .root = s->root,
                           .cache = cache_file,
                           .on_known = count_known,
                           .arg = s};
    CU_ASSERT_EQUAL_FATAL(fsdig_create(&s->dig, &o), 0);
}

static void scene_end(struct scene *s)
{
    fsdig_stop(s->dig);
    pool_destroy(s->pool);
    ring_destroy(s->ring);
    fsdig_free(s->dig);
    fsroot_free(s->root);
}

static void poll_cb(struct ring_timer *t)
{
    struct scene *s = container_of(t, struct scene, poll);
    if (s->until(s) || ring_now_ms() > s->deadline)
        ring_stop(s->ring);
    else
        ring_timer_start(s->ring, t, 2, poll_cb);
}

/* Runs the ring until until(s) holds (asserted) or the watchdog. */
static void run_until(struct scene *s, bool (*until)(struct scene *s))
{
    s->until = until;
    s->deadline = ring_now_ms() + WATCHDOG_MS;
    ring_timer_start(s->ring, &s->poll, 0, poll_cb);
    ring_run(s->ring);
    ring_timer_stop(s->ring, &s->poll);
    CU_ASSERT_TRUE(until(s));
}

static bool idle(struct scene *s)
{
    struct fsdig_stats st;
    fsdig_stats(s->dig, &st);
    return st.pending == 0;
}

static bool called(struct scene *s)
{
    return s->calls > 0;
}

static void on_digest(struct fsdig_wait *w, int err, const uint8_t *digest)
{
    struct scene *s = container_of(w, struct scene, w);
    s->calls++;
    s->err = err;
    if (digest)
        memcpy(s->got, digest, FSDIG_LEN);
}

/* Asks for rel's digest as a request would: 1 known, 0 waiting. */
static int get(struct scene *s, const char *rel, uint8_t out[FSDIG_LEN])
{
    struct stat st;
    int fd = fsroot_open_file(s->root, rel, strlen(rel), &st);
    CU_ASSERT_FATAL(fd >= 0);
    int rc = fsdig_get(s->dig, rel, fd, &st, out, &s->w, on_digest);
    close(fd); /* the module hashes its own duplicate */
    return rc;
}

/* As the start-up walk does: 1 known already, 0 queued. */
static int add(struct scene *s, const char *rel)
{
    struct stat st;
    uint8_t d[FSDIG_LEN];
    st_of(rel, &st);
    int rc = fsdig_add(s->dig, rel, &st, d);
    CU_ASSERT(rc == 0 || rc == 1);
    return rc;
}

static void test_matches_sha256sum(void)
{
    const char *names[] = {"empty", "small", "big"};
    size_t sizes[] = {0, 1000, 3 * 1024 * 1024 + 17};
    struct scene s;
    scene_start(&s, NULL);
    for (int i = 0; i < 3; i++) {
        put(names[i], sizes[i], (unsigned)i);
        add(&s, names[i]);
    }
    run_until(&s, idle);
    for (int i = 0; i < 3; i++) {
        struct stat st;
        struct fsdig_key k;
        uint8_t d[FSDIG_LEN];
        char want[65], got[65];
        st_of(names[i], &st);
        fsdig_key_of(&st, &k);
        CU_ASSERT_TRUE_FATAL(fsdig_lookup(s.dig, &k, d));
        sha256sum(names[i], want);
        to_hex(d, got);
        CU_ASSERT_STRING_EQUAL(got, want);
    }
    struct fsdig_stats st;
    fsdig_stats(s.dig, &st);
    CU_ASSERT_EQUAL(st.hashed, 3);
    CU_ASSERT_EQUAL(st.known, 3);
    CU_ASSERT_EQUAL(s.known, 3); /* each joins the catalog */
    CU_ASSERT_EQUAL(st.bytes, sizes[0] + sizes[1] + sizes[2]);
    /* RFC 9530's example: the SHA-256 of {"hello": "world"}. */
    static const uint8_t hello[FSDIG_LEN] = {0x58, 0x4f, 0xd7, 0xe9, 0xd5, 0x8a, 0x3c, 0x58,
                                             0x7e, 0x76, 0x46, 0x09, 0xf3, 0x82, 0x5f, 0xd0,
                                             0x21, 0xbe, 0x6a, 0x08, 0x37, 0xd6, 0xea, 0x64,
                                             0x04, 0xd1, 0x4a, 0x33, 0xea, 0xf0, 0x81, 0xb0};
    char h[FSDIG_HEADER_MAX];
    fsdig_header(hello, h);
    CU_ASSERT_STRING_EQUAL(h, "sha-256=:WE/X6dWKPFh+dkYJ84Jf0CG+agg31upkBNFKM+rwgbA=:");
    scene_end(&s);
}

static void test_request_waits(void)
{
    struct scene s;
    uint8_t d[FSDIG_LEN];
    char want[65], got[65];
    scene_start(&s, NULL);
    put("wait", 200000, 9);
    CU_ASSERT_EQUAL(get(&s, "wait", d), 0); /* unknown: waits, not called yet */
    CU_ASSERT_EQUAL(s.calls, 0);
    run_until(&s, called);
    CU_ASSERT_EQUAL(s.calls, 1);
    CU_ASSERT_EQUAL(s.err, 0);
    sha256sum("wait", want);
    to_hex(s.got, got);
    CU_ASSERT_STRING_EQUAL(got, want);
    CU_ASSERT_EQUAL(s.known, 1);
    CU_ASSERT_EQUAL(get(&s, "wait", d), 1); /* known now, at once */
    CU_ASSERT_EQUAL(memcmp(d, s.got, FSDIG_LEN), 0);
    /* A request that gives up: its callback never runs. */
    put("gone", 100000, 3);
    s.calls = 0;
    CU_ASSERT_EQUAL(get(&s, "gone", d), 0);
    fsdig_cancel(&s.w);
    fsdig_cancel(&s.w); /* twice is harmless */
    run_until(&s, idle);
    CU_ASSERT_EQUAL(s.calls, 0);
    scene_end(&s);
}

static void test_changed_file_rehashed(void)
{
    struct scene s;
    uint8_t d[FSDIG_LEN], first[FSDIG_LEN];
    char want[65], got[65];
    scene_start(&s, NULL);
    put("changes", 5000, 1);
    add(&s, "changes");
    run_until(&s, idle);
    CU_ASSERT_EQUAL_FATAL(get(&s, "changes", first), 1);
    put("changes", 5000, 2); /* same size, new bytes */
    char p[PATH_MAX * 2];
    path_of(p, sizeof p, "changes");
    struct timespec ts[2] = {{.tv_sec = 1700000000}, {.tv_sec = 1700000000}};
    CU_ASSERT_EQUAL(utimensat(AT_FDCWD, p, ts, 0), 0); /* a new mtime for certain */
    CU_ASSERT_EQUAL(get(&s, "changes", d), 0);         /* another version: hashed again */
    run_until(&s, called);
    CU_ASSERT_EQUAL(s.err, 0);
    sha256sum("changes", want);
    to_hex(s.got, got);
    CU_ASSERT_STRING_EQUAL(got, want);
    CU_ASSERT_NOT_EQUAL(memcmp(first, s.got, FSDIG_LEN), 0);
    struct fsdig_stats st;
    fsdig_stats(s.dig, &st);
    CU_ASSERT_EQUAL(st.hashed, 2);
    scene_end(&s);
}

static void test_missing_file(void)
{
    struct scene s;
    struct stat st;
    scene_start(&s, NULL);
    put("vanishes", 10, 1);
    st_of("vanishes", &st);
    char p[PATH_MAX * 2];
    path_of(p, sizeof p, "vanishes");
    unlink(p);
    uint8_t d0[FSDIG_LEN];
    CU_ASSERT_EQUAL(fsdig_add(s.dig, "vanishes", &st, d0), 0);
    run_until(&s, idle);
    struct fsdig_key k;
    uint8_t d[FSDIG_LEN];
    fsdig_key_of(&st, &k);
    CU_ASSERT_FALSE(fsdig_lookup(s.dig, &k, d));
    scene_end(&s);
}

static double now_s(void)
{
    return (double)ring_now_ms() / 1000.0;
}

/* Finds the files c0 ... c<n-1> as the start-up scan does, and waits
 * until every digest is known. */
static void scan_all(struct scene *s, int n)
{
    for (int i = 0; i < n; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "c%d", i);
        add(s, rel);
    }
    run_until(s, idle);
}

static void test_cache_survives_restart(void)
{
    enum { N = 8 };
    const size_t size = 4u << 20;
    struct scene s;
    struct fsdig_stats st;
    unlink(cache);
    for (int i = 0; i < N; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "c%d", i);
        put(rel, size, (unsigned)i);
    }
    scene_start(&s, cache);
    double t0 = now_s();
    scan_all(&s, N);
    double hashing = now_s() - t0;
    fsdig_stats(s.dig, &st);
    CU_ASSERT_EQUAL(st.hashed, N);
    scene_end(&s); /* writes the cache */
    struct stat cs;
    CU_ASSERT_EQUAL_FATAL(stat(cache, &cs), 0);

    scene_start(&s, cache);
    t0 = now_s();
    scan_all(&s, N);
    double cached = now_s() - t0;
    fsdig_stats(s.dig, &st);
    CU_ASSERT_EQUAL(st.hashed, 0); /* nothing read again */
    CU_ASSERT_EQUAL(st.cached, N);
    CU_ASSERT_EQUAL(st.known, N);
    uint8_t d[FSDIG_LEN];
    char want[65], got[65];
    CU_ASSERT_EQUAL(get(&s, "c3", d), 1);
    sha256sum("c3", want);
    to_hex(d, got);
    CU_ASSERT_STRING_EQUAL(got, want);
    fprintf(stderr, "fsdigest: %d x %zu MiB hashed in %.3f s, from the cache in %.3f s\n", N,
            size >> 20, hashing, cached);
    scene_end(&s);
}

static void test_corrupt_cache_ignored(void)
{
    struct scene s;
    struct fsdig_stats st;
    const char *bad[] = {
        "garbage\n",
        "convoy-digests 1\n1 2 3 zz\n",
        "convoy-digests 1\n1 2 3 " /* one hex digit short */
        "000000000000000000000000000000000000000000000000000000000000000\n",
    };
    put("k", 1234, 5);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *f = fopen(cache, "w");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        fputs(bad[i], f);
        fclose(f);
        scene_start(&s, cache); /* a warning, no failure */
        fsdig_stats(s.dig, &st);
        CU_ASSERT_EQUAL(st.known, 0);
        add(&s, "k");
        run_until(&s, idle);
        fsdig_stats(s.dig, &st);
        CU_ASSERT_EQUAL(st.hashed, 1);
        scene_end(&s);
        /* rewritten: the next start knows k without reading it */
        scene_start(&s, cache);
        CU_ASSERT_EQUAL(add(&s, "k"), 1);
        fsdig_stats(s.dig, &st);
        CU_ASSERT_EQUAL(st.cached, 1);
        CU_ASSERT_EQUAL(st.pending, 0);
        scene_end(&s);
    }
}

void suite_fsdigest(void)
{
    CU_pSuite s = CU_add_suite("fsdigest", setup, teardown);
    CU_add_test(s, "digests match sha256sum; the header's form", test_matches_sha256sum);
    CU_add_test(s, "a request waits for its digest, or gives up", test_request_waits);
    CU_add_test(s, "a changed file is hashed again", test_changed_file_rehashed);
    CU_add_test(s, "a file gone before its hash", test_missing_file);
    CU_add_test(s, "the cache spares a restart every read", test_cache_survives_restart);
    CU_add_test(s, "a corrupt cache is ignored and rewritten", test_corrupt_cache_ignored);
}
