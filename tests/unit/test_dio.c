/* dio: what goes in through either descriptor comes back byte for byte,
 * at any offset and length, and aligned writes stay out of the cache. */
#include "convoy/dio.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/var/tmp/convoy-dio-XXXXXX";
static char path[64];

static int setup(void)
{
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof path, "%s/f", dir);
    return 0;
}

static int teardown(void)
{
    unlink(path);
    return rmdir(dir);
}

/* Bytes that differ at every offset, so a misplaced block shows. */
static void pattern(uint8_t *p, size_t len, uint64_t at)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)((at + i) * 2654435761u >> 13);
}

static bool is_pattern(const uint8_t *p, size_t len, uint64_t at)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)((at + i) * 2654435761u >> 13))
            return false;
    return true;
}

/* The file's bytes through an ordinary read. */
static uint8_t *slurp(size_t *len)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return NULL;
    uint8_t *p = malloc((size_t)st.st_size + 1);
    ssize_t n = p ? pread(fd, p, (size_t)st.st_size, 0) : -1;
    close(fd);
    if (n != st.st_size) {
        free(p);
        return NULL;
    }
    *len = (size_t)n;
    return p;
}

static void test_append(void)
{
    unlink(path);
    dio_t *f;
    CU_ASSERT_EQUAL_FATAL(dio_open(&f, path, O_RDWR | O_CREAT | O_EXCL, 0600), 0);
    size_t total = 3 * DIO_BLOCK + 12345, chunk = 7777;
    uint8_t *src = malloc(total);
    CU_ASSERT_PTR_NOT_NULL_FATAL(src);
    pattern(src, total, 0);
    for (size_t at = 0; at < total; at += chunk)
        CU_ASSERT_EQUAL(dio_append(f, src + at, total - at < chunk ? total - at : chunk), 0);
    CU_ASSERT_EQUAL(dio_appended(f), total);
    /* what waits for its block is readable already, from memory, also
     * across the blocks before it */
    struct stat st; /* whole blocks only in the file, until the flush */
    CU_ASSERT(fstat(dio_fd(f), &st) == 0 && st.st_size == 3 * DIO_BLOCK);
    struct dio_range d;
    CU_ASSERT_EQUAL_FATAL(dio_read(f, total - 5000, 5000, &d), 0);
    CU_ASSERT(is_pattern(d.data, 5000, total - 5000));
    free(d.raw);
    CU_ASSERT_EQUAL_FATAL(dio_read(f, DIO_BLOCK - 3, 2 * DIO_BLOCK + 10, &d), 0);
    CU_ASSERT(is_pattern(d.data, 2 * DIO_BLOCK + 10, DIO_BLOCK - 3));
    free(d.raw);
    CU_ASSERT_EQUAL(dio_read(f, total - 10, 11, &d), -EIO); /* past what came */
    CU_ASSERT_EQUAL(dio_close(f), 0);
    size_t len = 0;
    uint8_t *got = slurp(&len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_EQUAL(len, total);
    CU_ASSERT(len == total && memcmp(got, src, total) == 0);
    free(got);
    free(src);
}

/* Appends written into the room first (a receive into the block), mixed
 * with copied ones: the room shrinks and moves with each, and the file
 * holds every byte in order. */
static void test_append_room(void)
{
    unlink(path);
    dio_t *f;
    CU_ASSERT_EQUAL_FATAL(dio_open(&f, path, O_RDWR | O_CREAT | O_EXCL, 0600), 0);
    size_t total = 2 * DIO_BLOCK + 4321, at = 0, step = 300001;
    uint8_t other[1000];
    while (at < total) {
        size_t room;
        uint8_t *p = dio_append_room(f, &room);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        CU_ASSERT_EQUAL(room, DIO_BLOCK - at % DIO_BLOCK);
        size_t n = room < step ? room : step;
        n = total - at < n ? total - at : n;
        pattern(p, n, at);
        CU_ASSERT_EQUAL(dio_append(f, p, n), 0);
        at += n;
        n = total - at < sizeof other ? total - at : sizeof other;
        pattern(other, n, at);
        CU_ASSERT_EQUAL(dio_append(f, other, n), 0);
        at += n;
    }
    CU_ASSERT_EQUAL(dio_close(f), 0);
    size_t len = 0;
    uint8_t *got = slurp(&len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_EQUAL(len, total);
    CU_ASSERT(len == total && is_pattern(got, total, 0));
    free(got);
}

static void test_read_ranges(void)
{
    dio_t *f;
    CU_ASSERT_EQUAL_FATAL(dio_open(&f, path, O_RDONLY, 0), 0);
    static const struct {
        uint64_t off;
        size_t len;
    } r[] = {{0, 1}, {128, 524288}, {4095, 2}, {DIO_BLOCK - 7, 9000}, {3 * DIO_BLOCK + 12344, 1}};
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        struct dio_range d;
        CU_ASSERT_EQUAL_FATAL(dio_read(f, r[i].off, r[i].len, &d), 0);
        CU_ASSERT(is_pattern(d.data, r[i].len, r[i].off));
        free(d.raw);
    }
    struct dio_range d;
    CU_ASSERT_EQUAL(dio_read(f, 3 * DIO_BLOCK + 12340, 6, &d), -EIO); /* one byte past the end */
    CU_ASSERT_EQUAL(dio_close(f), 0);
}

/* Pages of the file in the page cache, from mincore over a mapping. */
static size_t cached_pages(size_t len)
{
    int fd = open(path, O_RDONLY);
    void *m = fd >= 0 ? mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    size_t pages = (len + 4095) / 4096, n = 0;
    unsigned char *vec = malloc(pages);
    if (m != MAP_FAILED && vec && mincore(m, len, vec) == 0)
        for (size_t i = 0; i < pages; i++)
            n += vec[i] & 1;
    free(vec);
    if (m != MAP_FAILED)
        munmap(m, len);
    if (fd >= 0)
        close(fd);
    return n;
}

static void test_pwrite(void)
{
    unlink(path);
    dio_t *f;
    CU_ASSERT_EQUAL_FATAL(dio_open(&f, path, O_RDWR | O_CREAT | O_EXCL, 0600), 0);
    size_t len = 2 * DIO_BLOCK;
    CU_ASSERT_EQUAL_FATAL(ftruncate(dio_fd(f), (off_t)len), 0);
    uint8_t *buf = dio_alloc(len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_EQUAL((uintptr_t)buf % DIO_ALIGN, 0);
    pattern(buf, len, 0);
    CU_ASSERT_EQUAL(dio_pwrite(f, buf + DIO_ALIGN, DIO_BLOCK, DIO_ALIGN), 0); /* aligned */
    if (dio_direct(f))
        CU_ASSERT_EQUAL(cached_pages(len), 0);
    CU_ASSERT_EQUAL(dio_pwrite(f, buf, 100, 0), 0);                     /* a header */
    CU_ASSERT_EQUAL(dio_pwrite(f, buf + 100, DIO_ALIGN - 100, 100), 0); /* up to the block */
    size_t tail = DIO_ALIGN + DIO_BLOCK;
    CU_ASSERT_EQUAL(dio_pwrite(f, buf + tail, len - tail, tail), 0); /* the rest */
    struct dio_range d;
    CU_ASSERT_EQUAL_FATAL(dio_read(f, 0, len, &d), 0);
    CU_ASSERT(is_pattern(d.data, len, 0));
    free(d.raw);
    free(buf);
    CU_ASSERT_EQUAL(dio_close(f), 0);
    size_t got_len = 0;
    uint8_t *got = slurp(&got_len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT(got_len == len && is_pattern(got, len, 0));
    free(got);
}

struct waited {
    struct dio_op op;
    int err, calls;
};

static void on_op(struct dio_op *op, int err)
{
    struct waited *w = container_of(op, struct waited, op);
    w->err = err;
    w->calls++;
    ring_stop(op->r);
}

/* Runs r until the one transfer started on it ends. */
static void wait_op(ring_t *r, struct waited *w)
{
    CU_ASSERT_EQUAL(ring_run(r), 0);
    CU_ASSERT_EQUAL(w->calls, 1);
}

static void test_on_ring(void)
{
    ring_t *r;
    CU_ASSERT_EQUAL_FATAL(ring_create(&r, 16), 0);
    unlink(path);
    dio_t *f;
    CU_ASSERT_EQUAL_FATAL(dio_open(&f, path, O_RDWR | O_CREAT | O_EXCL, 0600), 0);
    size_t len = DIO_BLOCK + 3 * DIO_ALIGN;
    uint8_t *buf = dio_alloc(len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    pattern(buf, len, 0);
    struct waited w = {0};
    dio_write_start(r, f, &w.op, buf, len, 0, on_op); /* aligned: direct */
    wait_op(r, &w);
    CU_ASSERT_EQUAL(w.err, 0);
    w = (struct waited){0};
    dio_write_start(r, f, &w.op, buf + len - 10, 10, len, on_op); /* 10 more, buffered */
    /* the owner lets go while the write runs: the file stays open for it */
    CU_ASSERT_EQUAL(dio_close(f), 0);
    wait_op(r, &w);
    CU_ASSERT_EQUAL(w.err, 0);
    CU_ASSERT_EQUAL_FATAL(dio_open(&f, path, O_RDONLY, 0), 0);
    struct stat st;
    CU_ASSERT(fstat(dio_fd(f), &st) == 0 && st.st_size == (off_t)len + 10);
    w = (struct waited){0};
    CU_ASSERT_EQUAL_FATAL(dio_read_start(r, f, &w.op, 77, len - 77, on_op), 0);
    wait_op(r, &w);
    CU_ASSERT_EQUAL(w.err, 0);
    CU_ASSERT(w.op.range.data && is_pattern(w.op.range.data, len - 77, 77));
    free(w.op.range.raw);
    w = (struct waited){0};
    CU_ASSERT_EQUAL_FATAL(dio_read_start(r, f, &w.op, len, 11, on_op), 0); /* one past the end */
    wait_op(r, &w);
    CU_ASSERT_EQUAL(w.err, -EIO);
    CU_ASSERT_PTR_NULL(w.op.range.raw);
    CU_ASSERT_EQUAL(dio_close(f), 0);
    /* appended and not yet written: read on the ring from memory */
    unlink(path);
    CU_ASSERT_EQUAL_FATAL(dio_open(&f, path, O_RDWR | O_CREAT | O_EXCL, 0600), 0);
    CU_ASSERT_EQUAL(dio_append(f, buf, 3000), 0);
    w = (struct waited){0};
    CU_ASSERT_EQUAL_FATAL(dio_read_start(r, f, &w.op, 100, 2000, on_op), 0);
    wait_op(r, &w);
    CU_ASSERT_EQUAL(w.err, 0);
    CU_ASSERT(w.op.range.data && is_pattern(w.op.range.data, 2000, 100));
    free(w.op.range.raw);
    CU_ASSERT_EQUAL(dio_close(f), 0);
    free(buf);
    ring_destroy(r);
}

/* One read into dst on the ring: its error, and dst's bytes checked. */
static int read_into(ring_t *r, dio_t *f, uint64_t off, size_t len, uint8_t *dst)
{
    struct waited w = {0};
    memset(dst, 0xee, len);
    CU_ASSERT_EQUAL_FATAL(dio_read_into_start(r, f, &w.op, off, len, dst, on_op), 0);
    wait_op(r, &w);
    CU_ASSERT_PTR_NULL(w.op.range.raw); /* nothing of dio's to free */
    if (w.err == 0) {
        CU_ASSERT_PTR_EQUAL(w.op.range.data, dst);
        CU_ASSERT(is_pattern(dst, len, off));
    }
    return w.err;
}

static void test_read_into(void)
{
    ring_t *r;
    CU_ASSERT_EQUAL_FATAL(ring_create(&r, 16), 0);
    unlink(path);
    dio_t *f;
    CU_ASSERT_EQUAL_FATAL(dio_open(&f, path, O_RDWR | O_CREAT | O_EXCL, 0600), 0);
    size_t len = 4 * DIO_BLOCK;
    uint8_t *buf = dio_alloc(len), *dst = dio_alloc(len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dst);
    pattern(buf, len, 0);
    CU_ASSERT_EQUAL(dio_append(f, buf, len - 100), 0);
    /* the last blocks are still in memory: copied into dst */
    CU_ASSERT_EQUAL(read_into(r, f, len - DIO_BLOCK, DIO_BLOCK - 100, dst), 0);
    CU_ASSERT_EQUAL(dio_flush(f), 0);
    /* from the file: aligned (straight into dst, direct where it can be),
     * at an odd offset and length, and into an odd place */
    CU_ASSERT_EQUAL(read_into(r, f, DIO_ALIGN, 2 * DIO_BLOCK, dst), 0);
    CU_ASSERT_EQUAL(read_into(r, f, 77, DIO_BLOCK + 5, dst), 0);
    CU_ASSERT_EQUAL(read_into(r, f, DIO_ALIGN, DIO_ALIGN, dst + 3), 0);
    /* past the end: -EIO */
    CU_ASSERT_EQUAL(read_into(r, f, len - DIO_ALIGN, DIO_ALIGN, dst), -EIO);
    CU_ASSERT_EQUAL(dio_close(f), 0);
    free(buf);
    free(dst);
    ring_destroy(r);
}

static void test_missing(void)
{
    dio_t *f;
    char nope[96];
    snprintf(nope, sizeof nope, "%s/none/f", dir);
    CU_ASSERT_EQUAL(dio_open(&f, nope, O_RDONLY, 0), -ENOENT);
}

void suite_dio(void)
{
    CU_pSuite s = CU_add_suite("dio", setup, teardown);
    CU_add_test(s, "appends in odd pieces read back whole", test_append);
    CU_add_test(s, "reads at unaligned offsets and lengths; past the end -EIO", test_read_ranges);
    CU_add_test(s, "appends written into the room, mixed with copied ones", test_append_room);
    CU_add_test(s, "aligned writes skip the cache; unaligned ones land too", test_pwrite);
    CU_add_test(s, "on a ring: writes, reads, a close while a write runs", test_on_ring);
    CU_add_test(s, "reads into the caller's buffer: from memory, straight, through ours",
                test_read_into);
    CU_add_test(s, "a missing file is -ENOENT", test_missing);
}
