/*
 * dio — spool files around the page cache (see dio.h). The direct
 * descriptor is opened second, on the path the buffered one just opened
 * (never with O_CREAT, so the two are the same file); a file system that
 * refuses O_DIRECT leaves it at -1 and everything goes buffered.
 *
 * dio_append keeps its last DIO_KEEP blocks in memory after writing them,
 * and reads that fall inside them (or inside the block still filling) are
 * answered from there: a spool read back as it is written, as a job's
 * items are while its upload comes, costs no disk read.
 */
#include "convoy/dio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIO_KEEP 8 /* blocks appended and written, still kept for reads */

struct dio {
    unsigned refs;           /* the owner's, and one per transfer under way */
    int fd;                  /* buffered */
    int dfd;                 /* O_DIRECT, or -1 */
    uint8_t *blk;            /* dio_append's block, DIO_BLOCK bytes once used */
    size_t held;             /* bytes of blk not yet written */
    uint64_t at;             /* file offset of blk[0] */
    uint8_t *kept[DIO_KEEP]; /* the blocks before blk, oldest first: */
    unsigned nkept;          /* kept[i] holds at - (nkept - i) · DIO_BLOCK … */
};

static bool aligned(uint64_t v)
{
    return (v & (DIO_ALIGN - 1)) == 0;
}

int dio_open(dio_t **out, const char *path, int flags, mode_t mode)
{
    dio_t *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -ENOMEM;
    f->fd = open(path, flags | O_CLOEXEC, mode);
    if (f->fd < 0) {
        int rc = -errno;
        free(f);
        return rc;
    }
    f->dfd = open(path, (flags & O_ACCMODE) | O_DIRECT | O_CLOEXEC);
    f->refs = 1;
    *out = f;
    return 0;
}

dio_t *dio_ref(dio_t *f)
{
    f->refs++;
    return f;
}

int dio_close(dio_t *f)
{
    if (f == NULL || --f->refs > 0)
        return 0;
    int rc = dio_flush(f);
    free(f->blk);
    for (unsigned i = 0; i < f->nkept; i++)
        free(f->kept[i]);
    if (f->dfd >= 0)
        close(f->dfd);
    if (close(f->fd) < 0 && rc == 0)
        rc = -errno;
    free(f);
    return rc;
}

int dio_fd(const dio_t *f)
{
    return f->fd;
}

bool dio_direct(const dio_t *f)
{
    return f->dfd >= 0;
}

void *dio_alloc(size_t len)
{
    void *p = NULL;
    size_t up = (len + DIO_ALIGN - 1) / DIO_ALIGN * DIO_ALIGN;
    return posix_memalign(&p, DIO_ALIGN, up ? up : DIO_ALIGN) == 0 ? p : NULL;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        p += n, len -= (size_t)n, off += (uint64_t)n;
    }
    return 0;
}

static bool can_direct(const dio_t *f, const void *buf, size_t len, uint64_t off)
{
    return f->dfd >= 0 && aligned((uintptr_t)buf) && aligned(len) && aligned(off);
}

int dio_pwrite(dio_t *f, const void *buf, size_t len, uint64_t off)
{
    bool direct = can_direct(f, buf, len, off);
    int rc = pwrite_all(direct ? f->dfd : f->fd, buf, len, off);
    /* a direct write the file system refuses after all (EINVAL: an
     * alignment it wants larger) goes buffered */
    return rc == -EINVAL && direct ? pwrite_all(f->fd, buf, len, off) : rc;
}

/* blk is written: kept, the oldest kept one (if all are) becoming blk. */
static void keep_block(dio_t *f)
{
    uint8_t *next = NULL;
    if (f->nkept == DIO_KEEP) {
        next = f->kept[0];
        memmove(f->kept, f->kept + 1, (DIO_KEEP - 1) * sizeof f->kept[0]);
        f->nkept--;
    }
    f->kept[f->nkept++] = f->blk;
    f->blk = next;
}

/* Whether the blocks in memory hold all of [off, off + len); copied into
 * dst then, unless dst is NULL. */
static bool from_memory(const dio_t *f, uint64_t off, size_t len, uint8_t *dst)
{
    uint64_t first = f->at - (uint64_t)f->nkept * DIO_BLOCK;
    if (f->blk == NULL || len == 0 || off < first || off + len > f->at + f->held)
        return false;
    if (dst == NULL)
        return true;
    while (len > 0) {
        uint64_t b = (off - first) / DIO_BLOCK, in = (off - first) % DIO_BLOCK;
        const uint8_t *src = b < f->nkept ? f->kept[b] : f->blk;
        size_t take = DIO_BLOCK - in < len ? (size_t)(DIO_BLOCK - in) : len;
        memcpy(dst, src + in, take);
        dst += take, off += take, len -= take;
    }
    return true;
}

void *dio_append_room(dio_t *f, size_t *len)
{
    if (f->blk == NULL && (f->blk = dio_alloc(DIO_BLOCK)) == NULL)
        return NULL;
    *len = DIO_BLOCK - f->held;
    return f->blk + f->held;
}

int dio_append(dio_t *f, const void *p, size_t len)
{
    const uint8_t *s = p;
    if (f->blk == NULL && len > 0 && (f->blk = dio_alloc(DIO_BLOCK)) == NULL)
        return -ENOMEM;
    while (len > 0) {
        size_t take = DIO_BLOCK - f->held < len ? DIO_BLOCK - f->held : len;
        if (s != f->blk + f->held) /* else they were written into the room */
            memcpy(f->blk + f->held, s, take);
        f->held += take, s += take, len -= take;
        if (f->held == DIO_BLOCK) {
            int rc = dio_pwrite(f, f->blk, DIO_BLOCK, f->at);
            if (rc < 0)
                return rc;
            f->at += DIO_BLOCK;
            f->held = 0;
            keep_block(f);
            if (f->blk == NULL && (f->blk = dio_alloc(DIO_BLOCK)) == NULL)
                return -ENOMEM;
        }
    }
    return 0;
}

int dio_flush(dio_t *f)
{
    int rc = f->held ? pwrite_all(f->fd, f->blk, f->held, f->at) : 0;
    if (rc < 0)
        return rc;
    f->at += f->held;
    f->held = 0;
    /* appending is over: what is read from now on comes from the file */
    for (unsigned i = 0; i < f->nkept; i++)
        free(f->kept[i]);
    f->nkept = 0;
    free(f->blk);
    f->blk = NULL;
    return 0;
}

uint64_t dio_appended(const dio_t *f)
{
    return f->at + f->held;
}

static ssize_t pread_some(int fd, uint8_t *p, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, p + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* The span a read of len bytes at off covers: aligned when direct. */
static void read_span(const dio_t *f, uint64_t off, size_t len, uint64_t *from, uint64_t *to)
{
    *from = f->dfd >= 0 ? off & ~(uint64_t)(DIO_ALIGN - 1) : off;
    *to = f->dfd >= 0 ? (off + len + DIO_ALIGN - 1) & ~(uint64_t)(DIO_ALIGN - 1) : off + len;
}

int dio_read(dio_t *f, uint64_t off, size_t len, struct dio_range *out)
{
    uint8_t *mem = from_memory(f, off, len, NULL) ? dio_alloc(len) : NULL;
    if (mem && from_memory(f, off, len, mem)) {
        *out = (struct dio_range){mem, mem};
        return 0;
    }
    free(mem);
    uint64_t from, to;
    read_span(f, off, len, &from, &to);
    uint8_t *raw = dio_alloc(to - from);
    if (raw == NULL)
        return -ENOMEM;
    ssize_t got = pread_some(f->dfd >= 0 ? f->dfd : f->fd, raw, to - from, from);
    if (got == -EINVAL && f->dfd >= 0) { /* as in dio_pwrite */
        got = pread_some(f->fd, raw + (off - from), len, off);
        got = got < 0 ? got : got + (ssize_t)(off - from);
    }
    if (got < 0 || (uint64_t)got < off + len - from) {
        free(raw);
        return got < 0 ? (int)got : -EIO;
    }
    out->raw = raw;
    out->data = raw + (off - from);
    return 0;
}

/* ---- on a ring ---- */

static void op_end(struct dio_op *op, int err)
{
    if (op->into && op->buf != op->into) { /* read through a buffer of ours */
        if (err == 0)
            memcpy(op->into, op->buf + op->skip, op->want);
        free(op->buf);
        op->range = (struct dio_range){NULL, op->into};
    }
    if (err < 0 && !op->write) {
        free(op->range.raw);
        op->range = (struct dio_range){NULL, NULL};
    }
    dio_close(op->f);
    op->f = NULL;
    op->cb(op, err);
}

static void op_next(struct dio_op *op)
{
    int fd = op->direct ? op->f->dfd : op->f->fd;
    if (op->write)
        ring_write(op->r, &op->op, fd, op->buf + op->moved, op->len - op->moved,
                   op->off + op->moved);
    else
        ring_read(op->r, &op->op, fd, op->buf + op->moved, op->len - op->moved,
                  op->off + op->moved);
}

static void op_done(struct ring_op *rop, int res, uint32_t flags)
{
    struct dio_op *op = container_of(rop, struct dio_op, op);
    (void)flags;
    if (res == -EINTR || res == -EAGAIN) {
        op_next(op);
        return;
    }
    if (res == -EINVAL && op->direct) { /* as in dio_pwrite: buffered after all */
        op->direct = false;
        op_next(op);
        return;
    }
    if (res < 0 || (res == 0 && op->moved < op->len)) {
        /* a read past the end of a direct file is short, not an error */
        bool enough = !op->write && res == 0 && op->moved >= op->skip + op->want;
        op_end(op, enough ? 0 : res < 0 ? res : -EIO);
        return;
    }
    op->moved += (size_t)res;
    if (op->moved < op->len)
        op_next(op);
    else
        op_end(op, 0);
}

void dio_write_start(ring_t *r, dio_t *f, struct dio_op *op, const void *buf, size_t len,
                     uint64_t off, dio_cb cb)
{
    *op = (struct dio_op){.op.cb = op_done,
                          .r = r,
                          .f = dio_ref(f),
                          .buf = (uint8_t *)buf,
                          .len = len,
                          .off = off,
                          .write = true,
                          .direct = can_direct(f, buf, len, off),
                          .cb = cb};
    op_next(op);
}

static void op_from_memory(struct ring_defer *d)
{
    op_end(container_of(d, struct dio_op, d), 0);
}

/* Reads len bytes at off into dst (NULL: a buffer of ours, op->range's). */
static int read_start(ring_t *r, dio_t *f, struct dio_op *op, uint64_t off, size_t len,
                      uint8_t *dst, dio_cb cb)
{
    if (from_memory(f, off, len, NULL)) {
        uint8_t *mem = dst ? dst : dio_alloc(len);
        if (mem == NULL)
            return -ENOMEM;
        from_memory(f, off, len, mem);
        *op = (struct dio_op){.r = r,
                              .f = dio_ref(f),
                              .buf = dst, /* nothing of ours to copy from or free */
                              .range = {dst ? NULL : mem, mem},
                              .into = dst,
                              .cb = cb};
        ring_defer(r, &op->d, op_from_memory);
        return 0;
    }
    uint64_t from, to;
    read_span(f, off, len, &from, &to);
    bool straight = dst && (f->dfd < 0 || can_direct(f, dst, len, off));
    uint8_t *buf = straight ? dst : dio_alloc(to - from);
    if (buf == NULL)
        return -ENOMEM;
    if (straight)
        from = off, to = off + len;
    *op = (struct dio_op){.op.cb = op_done,
                          .r = r,
                          .f = dio_ref(f),
                          .buf = buf,
                          .len = to - from,
                          .off = from,
                          .want = len,
                          .skip = off - from,
                          .direct = f->dfd >= 0,
                          .into = dst,
                          .cb = cb};
    op->range = (struct dio_range){dst ? NULL : buf, dst ? dst : buf + (off - from)};
    op_next(op);
    return 0;
}

int dio_read_start(ring_t *r, dio_t *f, struct dio_op *op, uint64_t off, size_t len, dio_cb cb)
{
    return read_start(r, f, op, off, len, NULL, cb);
}

int dio_read_into_start(ring_t *r, dio_t *f, struct dio_op *op, uint64_t off, size_t len, void *dst,
                        dio_cb cb)
{
    return read_start(r, f, op, off, len, dst, cb);
}
