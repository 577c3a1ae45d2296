/*
 * shm: creation, reading, clean and crashed owners, a live owner that
 * refuses a second one, slots left mid-write, tables added, changed, grown
 * and carried over, readers racing a writer, and segments that must not be
 * trusted (another user's, open to others, damaged, half-built, the old
 * mutex format), which are moved aside.
 *
 * Crashes are real: a forked child owns the segment and _exit()s. Every test
 * uses a name unique to this run and removes what it made. Planted segments
 * are written with the layout that docs/protocol-membership.md documents.
 */
#include "convoy/shm.h"

#include "convoy/log.h"
#include "convoy/ring.h"

#include <CUnit/CUnit.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct rec {
    uint64_t value;
    uint64_t copy; /* always equal to value: a torn read would differ */
    char pad[100];
};

#define CAP 8
static const struct shm_table RECS = {1, 1, sizeof(struct rec), CAP};
static const struct shm_table MORE = {7, 1, sizeof(uint64_t), 4};

/* Offsets of the documented layout, for planting. */
#define HDR_SIZE    4096
#define OFF_OWNER   16
#define OFF_START   24
#define SLOT_HDR    16
#define FIRST_TABLE 4096

/* "unit-<pid>-<tag>": unique to this run, so runs never see each other. */
static const char *name_for(const char *tag)
{
    static char name[64];
    snprintf(name, sizeof name, "unit-%d-%s", (int)getpid(), tag);
    return name;
}

static const char *path_of(const char *name)
{
    static char path[128];
    snprintf(path, sizeof path, "/dev/shm/convoy-%s", name);
    return path;
}

static shm_t *own_tables(const char *name, const struct shm_table *t, size_t n,
                         enum shm_origin want)
{
    shm_t *s = NULL;
    enum shm_origin got;
    int rc = shm_own(&s, name, t, n, &got);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc == 0)
        CU_ASSERT_STRING_EQUAL(shm_origin_str(got), shm_origin_str(want));
    return s;
}

static shm_t *own(const char *name, enum shm_origin want)
{
    return own_tables(name, &RECS, 1, want);
}

static void put(shm_t *s, uint32_t slot, uint64_t v)
{
    struct rec r = {.value = v, .copy = v};
    CU_ASSERT_EQUAL(shm_lock(s), 0);
    CU_ASSERT_EQUAL(shm_put(s, &RECS, slot, &r), 0);
    shm_unlock(s);
}

/* The value in slot, -1 when free, -2 on error. */
static long long get(shm_t *s, uint32_t slot)
{
    struct rec r;
    int rc = shm_get(s, &RECS, slot, &r, NULL);
    return rc == 1 ? (long long)r.value : rc == 0 ? -1 : -2;
}

/* How many "convoy-<name>.aside-*" files exist; removes them if clean. */
static int asides(const char *name, bool clean)
{
    char prefix[128];
    snprintf(prefix, sizeof prefix, "convoy-%s.aside-", name);
    DIR *d = opendir("/dev/shm");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        n++;
        if (clean) {
            char p[512];
            snprintf(p, sizeof p, "/dev/shm/%s", e->d_name);
            unlink(p);
        }
    }
    if (d)
        closedir(d);
    return n;
}

/* Forks a child that runs fn(name) and _exit()s with its result. */
static pid_t spawn(int (*fn)(const char *name), const char *name)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(fn(name));
    CU_ASSERT_FATAL(pid > 0);
    return pid;
}

static int exit_code(pid_t pid)
{
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/* Maps the segment's file read-write, as a planting local user would. */
static uint8_t *map_raw(const char *name, size_t *len)
{
    int fd = open(path_of(name), O_RDWR);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return NULL;
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    *len = (size_t)st.st_size;
    return m == MAP_FAILED ? NULL : m;
}

/* Creates the file with content (len bytes, rest zero up to size) and mode. */
static void plant(const char *name, const void *content, size_t len, size_t size, mode_t mode)
{
    int fd = open(path_of(name), O_RDWR | O_CREAT | O_EXCL, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(ftruncate(fd, (off_t)size) == 0);
    CU_ASSERT(pwrite(fd, content, len, 0) == (ssize_t)len);
    CU_ASSERT(fchmod(fd, mode) == 0);
    close(fd);
}

static void test_fresh_and_attach(void)
{
    const char *name = name_for("fresh");
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    struct stat st;
    CU_ASSERT_EQUAL(stat(path_of(name), &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 07777, 0600);
    struct shm_owner o, me;
    shm_owner(s, &o);
    shm_owner_self(&me);
    CU_ASSERT_EQUAL(o.pid, getpid());
    CU_ASSERT_EQUAL(o.start, me.start);
    CU_ASSERT_EQUAL(shm_capacity(s, &RECS), CAP);
    CU_ASSERT_EQUAL(get(s, 0), -1);
    put(s, 0, 42);

    shm_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(shm_attach(&r, name), 0);
    CU_ASSERT_EQUAL(get(r, 0), 42);
    CU_ASSERT_EQUAL(get(r, 1), -1);
    struct rec x = {0};
    CU_ASSERT_EQUAL(shm_put(r, &RECS, 0, &x), -EPERM); /* a reader never writes */
    CU_ASSERT_EQUAL(shm_clear(r, &RECS, 0), -EPERM);
    put(s, 0, 43);
    CU_ASSERT_EQUAL(get(r, 0), 43); /* the reader's mapping follows the writer */
    shm_owner(r, &o);
    CU_ASSERT_EQUAL(o.pid, getpid());
    shm_close(r);
    shm_owner(s, &o);
    CU_ASSERT_EQUAL(o.pid, getpid()); /* a reader's close leaves the owner */
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
    CU_ASSERT_EQUAL(shm_remove(name), -ENOENT);
}

static void test_lookup_refusals(void)
{
    const char *name = name_for("refuse");
    shm_t *r = NULL;
    CU_ASSERT_EQUAL(shm_attach(&r, name), -ENOENT);
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL_FATAL(shm_attach(&r, name), 0);
    struct shm_table other = RECS;
    other.version++;
    struct rec x;
    CU_ASSERT_EQUAL(shm_capacity(r, &other), -EPROTO);
    CU_ASSERT_EQUAL(shm_get(r, &other, 0, &x, NULL), -EPROTO);
    other = RECS;
    other.row_size += 8;
    CU_ASSERT_EQUAL(shm_capacity(r, &other), -EPROTO);
    CU_ASSERT_EQUAL(shm_capacity(r, &MORE), -ENOENT);
    CU_ASSERT_EQUAL(shm_get(r, &RECS, CAP, &x, NULL), -ERANGE);
    CU_ASSERT_EQUAL(shm_put(s, &RECS, CAP, &x), -ERANGE);
    CU_ASSERT_EQUAL(shm_put(s, &MORE, 0, &x), -ENOENT);
    shm_close(r);
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

static void test_bad_declarations(void)
{
    const char *name = name_for("decl");
    shm_t *s = NULL;
    const struct shm_table zero_id = {0, 1, 8, 1}, empty = {1, 1, 0, 1}, none = {1, 1, 8, 0},
                           huge = {1, 1, SHM_ROW_MAX + 1, 1};
    const struct shm_table twice[] = {RECS, RECS};
    CU_ASSERT_EQUAL(shm_own(&s, name, &zero_id, 1, NULL), -EINVAL);
    CU_ASSERT_EQUAL(shm_own(&s, name, &empty, 1, NULL), -EINVAL);
    CU_ASSERT_EQUAL(shm_own(&s, name, &none, 1, NULL), -EINVAL);
    CU_ASSERT_EQUAL(shm_own(&s, name, &huge, 1, NULL), -EINVAL);
    CU_ASSERT_EQUAL(shm_own(&s, name, twice, 2, NULL), -EINVAL);
    CU_ASSERT_EQUAL(shm_own(&s, name, &RECS, 0, NULL), -EINVAL);
    const struct shm_table big = {1, 1, SHM_ROW_MAX, SHM_SLOTS_MAX}; /* 64 GiB */
    CU_ASSERT_EQUAL(shm_own(&s, name, &big, 1, NULL), -EFBIG);
    CU_ASSERT_EQUAL(shm_remove(name), -ENOENT);
}

static void test_names(void)
{
    char longest[66];
    memset(longest, 'n', 65);
    longest[65] = '\0';
    const char *bad[] = {"", "a/b", "sp ace", "x\n", "caf\xc3\xa9", longest};
    shm_t *s = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_EQUAL(shm_own(&s, bad[i], &RECS, 1, NULL), -EINVAL);
        CU_ASSERT_EQUAL(shm_attach(&s, bad[i]), -EINVAL);
        CU_ASSERT_EQUAL(shm_remove(bad[i]), -EINVAL);
    }
    /* 64 characters of every allowed kind are fine. */
    snprintf(longest, sizeof longest, "%s", name_for("Az09._-"));
    memset(longest + strlen(longest), 'x', 64 - strlen(longest));
    longest[64] = '\0';
    CU_ASSERT_EQUAL_FATAL(shm_own(&s, longest, &RECS, 1, NULL), 0);
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(longest), 0);
}

static void test_clean_reopen(void)
{
    const char *name = name_for("clean");
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    put(s, 3, 7);
    shm_close(s);

    shm_t *r = NULL;
    struct shm_owner o;
    CU_ASSERT_EQUAL_FATAL(shm_attach(&r, name), 0);
    shm_owner(r, &o);
    CU_ASSERT_EQUAL(o.pid, 0);
    CU_ASSERT_FALSE(shm_owner_alive(&o));
    shm_close(r);

    s = own(name, SHM_CLEAN);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(get(s, 3), 7);
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

static void test_generations(void)
{
    const char *name = name_for("gen");
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    struct rec r;
    uint32_t g0, g1, g2, g3;
    CU_ASSERT_EQUAL(shm_get(s, &RECS, 2, &r, &g0), 0);
    put(s, 2, 1);
    CU_ASSERT_EQUAL(shm_get(s, &RECS, 2, &r, &g1), 1);
    CU_ASSERT_EQUAL(g1, g0 + 1); /* a new occupant */
    put(s, 2, 2);
    CU_ASSERT_EQUAL(shm_get(s, &RECS, 2, &r, &g2), 1);
    CU_ASSERT_EQUAL(g2, g1); /* the same occupant, updated */
    CU_ASSERT_EQUAL(shm_lock(s), 0);
    CU_ASSERT_EQUAL(shm_clear(s, &RECS, 2), 0);
    shm_unlock(s);
    CU_ASSERT_EQUAL(shm_get(s, &RECS, 2, &r, &g3), 0);
    CU_ASSERT_EQUAL(r.value, 0);
    put(s, 2, 3);
    CU_ASSERT_EQUAL(shm_get(s, &RECS, 2, &r, &g3), 1);
    CU_ASSERT_EQUAL(g3, g1 + 1); /* a handle (2, g1) is now stale */
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

/* A shorter row put as a prefix: its tail, and what the longer row before
 * it had there, read as zeros, in the segment itself too. */
static void test_prefix_rows(void)
{
    const char *name = name_for("prefix");
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    struct rec r = {.value = 1, .copy = 1}, got;
    memset(r.pad, 'x', sizeof r.pad);
    size_t len = offsetof(struct rec, pad) + 10;
    CU_ASSERT_EQUAL(shm_lock(s), 0);
    CU_ASSERT_EQUAL(shm_put(s, &RECS, 3, &r), 0);
    r.value = r.copy = 2;
    memset(r.pad, 'y', 10); /* the rest, 'x', is past len: not to be read */
    CU_ASSERT_EQUAL(shm_put_prefix(s, &RECS, 3, &r, len), 0);
    CU_ASSERT_EQUAL(shm_put_prefix(s, &RECS, 3, &r, sizeof r + 1), -EINVAL);
    shm_unlock(s);
    shm_t *rd = NULL;
    CU_ASSERT_EQUAL_FATAL(shm_attach(&rd, name), 0);
    memset(&got, 0xee, sizeof got);
    CU_ASSERT_EQUAL(shm_get(rd, &RECS, 3, &got, NULL), 1);
    CU_ASSERT_EQUAL(got.value, 2);
    CU_ASSERT_EQUAL(memcmp(got.pad, "yyyyyyyyyy", 10), 0);
    static const char zeros[sizeof r.pad];
    CU_ASSERT_EQUAL(memcmp(got.pad + 10, zeros, sizeof r.pad - 10), 0);
    size_t maplen;
    uint8_t *m = map_raw(name, &maplen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    size_t stride = (SLOT_HDR + sizeof(struct rec) + 63) & ~(size_t)63;
    const uint8_t *row = m + FIRST_TABLE + 3 * stride + SLOT_HDR;
    CU_ASSERT_EQUAL(memcmp(row + len, zeros, sizeof r - len), 0);
    CU_ASSERT_EQUAL(shm_lock(s), 0); /* cleared after a prefix: all of it zero */
    CU_ASSERT_EQUAL(shm_clear(s, &RECS, 3), 0);
    shm_unlock(s);
    CU_ASSERT_EQUAL(memcmp(row, zeros, len), 0);
    munmap(m, maplen);
    shm_close(rd);
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

/* Child: owns the segment, writes, and dies without closing. */
static int child_owns_and_dies(const char *name)
{
    shm_t *s;
    if (shm_own(&s, name, &RECS, 1, NULL) != 0)
        return 1;
    put(s, 1, 9);
    return 0;
}

/* reap: wait for the child; otherwise leave it a zombie while owning. */
static void check_owner_died(const char *tag, bool reap)
{
    const char *name = name_for(tag);
    pid_t pid = spawn(child_owns_and_dies, name);
    siginfo_t si;
    CU_ASSERT_EQUAL(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
    if (reap)
        CU_ASSERT_EQUAL(exit_code(pid), 0);
    shm_t *r = NULL;
    struct shm_owner o;
    CU_ASSERT_EQUAL_FATAL(shm_attach(&r, name), 0);
    shm_owner(r, &o);
    CU_ASSERT_EQUAL(o.pid, pid);
    CU_ASSERT_FALSE(shm_owner_alive(&o)); /* dead, or a zombie: not running */
    shm_close(r);
    shm_t *s = own(name, SHM_RECOVERED);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(get(s, 1), 9);
    shm_owner(s, &o);
    CU_ASSERT_EQUAL(o.pid, getpid());
    shm_close(s);
    if (!reap)
        CU_ASSERT_EQUAL(exit_code(pid), 0);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

static void test_owner_died(void)
{
    check_owner_died("died", true);
}

static void test_owner_zombie(void)
{
    check_owner_died("zombie", false);
}

/* A live pid with another start time is a reused pid, not the owner. */
static void test_owner_alive(void)
{
    struct shm_owner me;
    shm_owner_self(&me);
    CU_ASSERT_TRUE(shm_owner_alive(&me));
    struct shm_owner reused = {me.pid, me.start + 1}, none = {0, 0}, gone = {0x3ffffff0, 1};
    CU_ASSERT_FALSE(shm_owner_alive(&reused));
    CU_ASSERT_FALSE(shm_owner_alive(&none));
    CU_ASSERT_FALSE(shm_owner_alive(&gone));
}

/* A writer that died mid-write leaves the slot's sequence odd: readers give
 * up on it within a bound, and the next owner clears it. */
static void test_torn_slot(void)
{
    const char *name = name_for("torn");
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    put(s, 0, 5);
    put(s, 1, 6);
    size_t len;
    uint8_t *m = map_raw(name, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    uint32_t *seq = (uint32_t *)(m + FIRST_TABLE); /* slot 0 of the first table */
    CU_ASSERT_EQUAL(*seq % 2, 0);
    (*seq)++;
    shm_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(shm_attach(&r, name), 0);
    uint64_t t0 = ring_now_ms();
    CU_ASSERT_EQUAL(get(r, 0), -2);
    CU_ASSERT(ring_now_ms() - t0 < 2000); /* gave up: bounded, not a speed figure */
    CU_ASSERT_EQUAL(get(r, 1), 6);
    shm_close(r);
    munmap(m, len);
    shm_close(s);
    s = own(name, SHM_CLEAN);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(get(s, 0), -1);
    CU_ASSERT_EQUAL(get(s, 1), 6);
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

/* Child: reads slot 0 as fast as it can for a while; every copy must be
 * whole (value == copy) and values never go back. */
static int child_reads(const char *name)
{
    shm_t *r;
    if (shm_attach(&r, name) != 0)
        return 2;
    uint64_t last = 0, end = ring_now_ms() + 300;
    while (ring_now_ms() < end && last < 20000) {
        struct rec x;
        int rc = shm_get(r, &RECS, 0, &x, NULL);
        if (rc < 0)
            continue; /* only while the writer is preempted mid-write */
        if (x.value != x.copy || x.value < last)
            return 1;
        last = x.value;
    }
    shm_close(r);
    return 0;
}

static void test_reader_races_writer(void)
{
    const char *name = name_for("race");
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    put(s, 0, 1);
    pid_t pid = spawn(child_reads, name);
    uint64_t end = ring_now_ms() + 300;
    for (uint64_t v = 2; v <= 20000 && ring_now_ms() < end; v++)
        put(s, 0, v);
    CU_ASSERT_EQUAL(exit_code(pid), 0);
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

static int busy_pipe[2][2]; /* [0]: child -> parent "owned"; [1]: parent -> child "go" */

/* Child: owns the segment until the parent says go, then closes cleanly. */
static int child_owns_until_told(const char *name)
{
    shm_t *s;
    char c = 'x';
    int rc = shm_own(&s, name, &RECS, 1, NULL);
    if (rc == 0)
        put(s, 0, 5);
    if (write(busy_pipe[0][1], &c, 1) != 1 || rc != 0)
        return 1;
    if (read(busy_pipe[1][0], &c, 1) != 1)
        return 1;
    shm_close(s);
    return 0;
}

static void test_live_owner_busy(void)
{
    const char *name = name_for("busy");
    CU_ASSERT_FATAL(pipe(busy_pipe[0]) == 0 && pipe(busy_pipe[1]) == 0);
    pid_t pid = spawn(child_owns_until_told, name);
    char c;
    CU_ASSERT_EQUAL(read(busy_pipe[0][0], &c, 1), 1);

    shm_t *s = NULL;
    CU_ASSERT_EQUAL(shm_own(&s, name, &RECS, 1, NULL), -EBUSY);
    /* Even with other tables: a live owner's segment is never replaced. */
    CU_ASSERT_EQUAL(shm_own(&s, name, &MORE, 1, NULL), -EBUSY);
    shm_t *r = NULL;
    struct shm_owner o;
    CU_ASSERT_EQUAL_FATAL(shm_attach(&r, name), 0);
    shm_owner(r, &o);
    CU_ASSERT_EQUAL(o.pid, pid);
    CU_ASSERT_TRUE(shm_owner_alive(&o));
    shm_close(r);

    CU_ASSERT_EQUAL(write(busy_pipe[1][1], "g", 1), 1);
    CU_ASSERT_EQUAL(exit_code(pid), 0);
    for (int i = 0; i < 2; i++) {
        close(busy_pipe[i][0]);
        close(busy_pipe[i][1]);
    }
    s = own(name, SHM_CLEAN);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(get(s, 0), 5);
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

/* Adding a table keeps the rows of the others; so does dropping one from
 * the declaration (it is carried over); a new version empties that table
 * alone; a larger capacity keeps every row, a smaller one those that fit. */
static void test_tables_grow(void)
{
    const char *name = name_for("grow");
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    put(s, 0, 11);
    put(s, CAP - 1, 12);
    shm_close(s);

    const struct shm_table both[] = {RECS, MORE};
    s = own_tables(name, both, 2, SHM_CLEAN);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(get(s, 0), 11);
    CU_ASSERT_EQUAL(get(s, CAP - 1), 12);
    uint64_t v = 77, w = 0;
    CU_ASSERT_EQUAL(shm_lock(s), 0);
    CU_ASSERT_EQUAL(shm_put(s, &MORE, 3, &v), 0);
    shm_unlock(s);
    shm_close(s);

    s = own_tables(name, &RECS, 1, SHM_CLEAN); /* an older owner that knows one table */
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(shm_get(s, &MORE, 3, &w, NULL), 1);
    CU_ASSERT_EQUAL(w, 77);
    shm_close(s);

    struct shm_table bigger = RECS;
    bigger.capacity = 2 * CAP;
    const struct shm_table grown[] = {bigger, MORE};
    s = own_tables(name, grown, 2, SHM_CLEAN);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    struct rec r;
    CU_ASSERT_EQUAL(shm_get(s, &bigger, CAP - 1, &r, NULL), 1);
    CU_ASSERT_EQUAL(r.value, 12);
    CU_ASSERT_EQUAL(shm_get(s, &bigger, 2 * CAP - 1, &r, NULL), 0);
    shm_close(s);

    struct shm_table smaller = RECS;
    smaller.capacity = 1;
    struct shm_table more2 = MORE;
    more2.version = 2;
    const struct shm_table changed[] = {smaller, more2};
    s = own_tables(name, changed, 2, SHM_CLEAN);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(shm_get(s, &smaller, 0, &r, NULL), 1);
    CU_ASSERT_EQUAL(r.value, 11);
    CU_ASSERT_EQUAL(shm_get(s, &more2, 3, &w, NULL), 0); /* new version: empty */
    CU_ASSERT_EQUAL(shm_capacity(s, &MORE), -EPROTO);
    shm_close(s);
    CU_ASSERT_EQUAL(asides(name, true), 0); /* nothing was untrusted */
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

/* A segment that cannot be trusted: a reader refuses it with want_reader, an
 * owner moves it aside (kept, with its bytes) and starts fresh. */
static void check_untrusted(const char *name, int want_reader, const void *bytes, size_t n)
{
    shm_t *r = NULL, *s;
    CU_ASSERT_EQUAL(shm_attach(&r, name), want_reader);
    s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(get(s, 0), -1);
    struct stat st;
    CU_ASSERT_EQUAL(stat(path_of(name), &st), 0);
    CU_ASSERT_EQUAL(st.st_uid, geteuid());
    CU_ASSERT_EQUAL(st.st_mode & 07777, 0600);
    shm_close(s);
    CU_ASSERT_EQUAL(asides(name, false), 1);
    char prefix[128], p[512];
    snprintf(prefix, sizeof prefix, "convoy-%s.aside-", name);
    DIR *d = opendir("/dev/shm");
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        snprintf(p, sizeof p, "/dev/shm/%s", e->d_name);
        char head[64] = {0};
        int fd = open(p, O_RDONLY);
        CU_ASSERT(fd >= 0 && read(fd, head, n) == (ssize_t)n);
        CU_ASSERT(memcmp(head, bytes, n) == 0); /* kept as it was */
        close(fd);
    }
    if (d)
        closedir(d);
    asides(name, true);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

/* Another user's segment, or ours open to others, is never used. */
static void check_not_ours(const char *tag, uid_t uid, mode_t mode)
{
    const char *name = name_for(tag);
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    put(s, 0, 66); /* what the planter wants readers to see */
    shm_close(s);
    CU_ASSERT_EQUAL(chown(path_of(name), uid, (gid_t)-1), 0);
    CU_ASSERT_EQUAL(chmod(path_of(name), mode), 0);
    check_untrusted(name, -EPERM, "CNV2", 4);
}

static void test_other_user(void)
{
    if (geteuid() != 0)
        return; /* only root can give a file away */
    check_not_ours("uid", 65534, 0666);
}

/* Child, as uid 65534: another user's segment (root's, 0600) cannot be
 * moved aside from a sticky /dev/shm; refused with -EPERM, left alone. */
static int child_as_nobody(const char *name)
{
    if (setgid(65534) < 0 || setuid(65534) < 0)
        return 10;
    shm_t *s = NULL;
    if (shm_attach(&s, name) != -EPERM)
        return 11;
    if (shm_own(&s, name, &RECS, 1, NULL) != -EPERM)
        return 12;
    return asides(name, false) == 0 ? 0 : 13;
}

static void test_other_user_cannot_move(void)
{
    if (geteuid() != 0)
        return; /* only root can become another user */
    const char *name = name_for("nobody");
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    put(s, 0, 3);
    shm_close(s);
    CU_ASSERT_EQUAL(exit_code(spawn(child_as_nobody, name)), 0);
    s = own(name, SHM_CLEAN); /* still ours, untouched */
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(get(s, 0), 3);
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

static void test_wide_mode(void)
{
    check_not_ours("mode", geteuid(), 0644);
}

static void test_damaged_header(void)
{
    const char *name = name_for("junk");
    uint8_t junk[HDR_SIZE];
    memset(junk, 0xff, sizeof junk);
    plant(name, junk, sizeof junk, 2 * HDR_SIZE, 0600);
    check_untrusted(name, -EPROTO, junk, 16);
}

/* The format before tables: its process-shared mutex is planted with 0xff
 * bytes, which used to end the owner with EINVAL or hang it. */
static void test_old_mutex_format(void)
{
    const char *name = name_for("oldfmt");
    uint8_t old[128];
    memset(old, 0xff, sizeof old);
    memcpy(old, "SVNC", 4); /* 0x434e5653 little-endian */
    plant(name, old, sizeof old, 65536, 0600);
    check_untrusted(name, -EPROTO, old, 16);
}

/* A creator that died before publishing leaves an empty object. */
static void test_unpublished_segment(void)
{
    const char *name = name_for("unpub");
    plant(name, "", 0, 0, 0600);
    check_untrusted(name, -EPROTO, "", 0);
}

/* Recoveries log warnings by design; keep them out of the test report. */
static int quiet(void)
{
    log_set_level(LOG_ERROR);
    return 0;
}

static int loud(void)
{
    log_set_level(LOG_INFO);
    return 0;
}

void suite_shm(void)
{
    CU_pSuite s = CU_add_suite("shm", quiet, loud);
    CU_add_test(s, "fresh segment, reader sees the data", test_fresh_and_attach);
    CU_add_test(s, "reader: missing, other version, row size, slot", test_lookup_refusals);
    CU_add_test(s, "bad table declarations", test_bad_declarations);
    CU_add_test(s, "names are checked", test_names);
    CU_add_test(s, "clean close, then own again", test_clean_reopen);
    CU_add_test(s, "generations count occupants", test_generations);
    CU_add_test(s, "a prefix row reads as zeros past its end", test_prefix_rows);
    CU_add_test(s, "owner died: recovered", test_owner_died);
    CU_add_test(s, "owner is a zombie: recovered", test_owner_zombie);
    CU_add_test(s, "a reused pid is not the owner", test_owner_alive);
    CU_add_test(s, "slot left mid-write: bounded read, cleared", test_torn_slot);
    CU_add_test(s, "reader racing a writer sees whole rows", test_reader_races_writer);
    CU_add_test(s, "live owner: -EBUSY", test_live_owner_busy);
    CU_add_test(s, "tables added, carried, grown, changed", test_tables_grow);
    CU_add_test(s, "another user's segment moved aside", test_other_user);
    CU_add_test(s, "another user's segment, not movable: -EPERM", test_other_user_cannot_move);
    CU_add_test(s, "segment open to others moved aside", test_wide_mode);
    CU_add_test(s, "damaged header moved aside", test_damaged_header);
    CU_add_test(s, "old mutex format with 0xff moved aside", test_old_mutex_format);
    CU_add_test(s, "half-built segment moved aside", test_unpublished_segment);
}
