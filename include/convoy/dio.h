/*
 * dio — a spool file read and written around the page cache (O_DIRECT)
 * where the file system allows it.
 *
 * A spooled matrix is written once and read once, much later or never
 * again: through the page cache every byte is copied into pages that must
 * first be allocated (on a virtual machine whose free memory is handed
 * back to the host, that allocation costs as much as a copy of the data
 * ten times over) and the cache fills with a job of any size. Direct I/O
 * moves the bytes between the user's buffer and the disk by DMA.
 *
 * It needs DIO_ALIGN-aligned buffers, offsets and lengths, so a dio file
 * keeps two descriptors on the same file: a direct one for what is
 * aligned, and a buffered one for the rest (a header, the last bytes of a
 * file, a file system without O_DIRECT such as an older tmpfs). The kernel
 * keeps the two coherent: a direct read or write first writes back and
 * drops the cached pages in its range. The calls are synchronous but
 * dio_write_start and dio_read_start, which run on a ring (io_uring, where
 * a direct transfer is truly asynchronous) while its loop goes on.
 */
#ifndef CONVOY_DIO_H
#define CONVOY_DIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "convoy/ring.h"

#define DIO_ALIGN 4096u      /* buffers, offsets and lengths of a direct transfer */
#define DIO_BLOCK (1u << 20) /* what dio_append gathers before it writes */

typedef struct dio dio_t;

/* Opens path with flags (O_RDONLY or O_RDWR, O_CREAT, O_EXCL, …; O_CLOEXEC
 * is added) and mode. 0, or -errno. */
int dio_open(dio_t **out, const char *path, int flags, mode_t mode);
/* Another reference to f (each is given up with dio_close). */
dio_t *dio_ref(dio_t *f);
/* Gives up a reference: the last one (once the transfers started on f have
 * ended) writes what dio_append gathered and closes. 0, or the first error
 * of that flush or close (0 while references remain). NULL: no-op. */
int dio_close(dio_t *f);

/* The buffered descriptor, for fstat, ftruncate, sendfile or a header. */
int dio_fd(const dio_t *f);
/* Whether aligned transfers go around the cache. */
bool dio_direct(const dio_t *f);

/* A buffer of len bytes (rounded up to DIO_ALIGN) at a DIO_ALIGN boundary,
 * for dio_pwrite; free() it. NULL when out of memory. */
void *dio_alloc(size_t len);

/* Writes len bytes of buf at off: direct when all three are aligned. 0, or
 * -errno. */
int dio_pwrite(dio_t *f, const void *buf, size_t len, uint64_t off);

/* Appends len bytes at the end of what was appended so far (from offset 0
 * of a new file): full DIO_BLOCKs are written direct, the rest waits for
 * the next append or dio_flush. The last few blocks stay in memory until
 * dio_flush, and reads inside them, or inside what waits, are answered
 * from there: what was appended is readable at once. 0, or -errno. */
int dio_append(dio_t *f, const void *p, size_t len);
/* The room left in the block dio_append fills: *len bytes at the
 * pointer (NULL when out of memory). Bytes written there by the caller
 * are appended by dio_append(f, room, n) with no copy (n ≤ *len). The
 * room moves with every append and dies with dio_flush or the last
 * dio_close. */
void *dio_append_room(dio_t *f, size_t *len);
/* Writes what dio_append still holds, and lets go of the blocks it kept.
 * 0, or -errno. */
int dio_flush(dio_t *f);
/* The bytes appended so far, all of them readable (those not yet in the
 * file from the block that waits for them). */
uint64_t dio_appended(const dio_t *f);

/* A range read by dio_read: data points into raw, which the caller frees. */
struct dio_range {
    void *raw;
    const uint8_t *data;
};

/* Reads len bytes at off into a new buffer: direct, over the aligned span
 * that covers them, when the file is direct. 0, -EIO when the file ends
 * before off + len, -ENOMEM, or -errno. */
int dio_read(dio_t *f, uint64_t off, size_t len, struct dio_range *out);

/* A transfer on a ring; the struct lives in its owner (fields are dio's)
 * until cb(op, err) runs, once, from the loop: 0 when every byte moved,
 * -EIO when the file ended first, or -errno. */
struct dio_op;
typedef void (*dio_cb)(struct dio_op *op, int err);
struct dio_op {
    struct ring_op op;
    ring_t *r;
    dio_t *f; /* a reference, held until cb */
    uint8_t *buf;
    size_t len, moved, want, skip; /* skip: bytes of buf before the wanted ones */
    uint64_t off;
    bool write, direct;
    struct dio_range range; /* dio_read_start's */
    uint8_t *into;          /* dio_read_into_start's */
    dio_cb cb;
    struct ring_defer d; /* a read answered from memory completes from the loop too */
};

/* Writes len bytes of buf at off, as dio_pwrite chooses; buf stays the
 * caller's until cb. */
void dio_write_start(ring_t *r, dio_t *f, struct dio_op *op, const void *buf, size_t len,
                     uint64_t off, dio_cb cb);
/* Reads len bytes at off, as dio_read does, into op->range: the caller
 * frees op->range.raw after cb (NULL after an error). 0, or -ENOMEM (and
 * cb will not run). */
int dio_read_start(ring_t *r, dio_t *f, struct dio_op *op, uint64_t off, size_t len, dio_cb cb);
/* The same into dst, which stays the caller's until cb: copied there from
 * memory, read straight into it when dst, off and len are aligned and the
 * file is direct, else through a buffer of dio's. op->range is {NULL,
 * dst}. 0, or -ENOMEM (and cb will not run). */
int dio_read_into_start(ring_t *r, dio_t *f, struct dio_op *op, uint64_t off, size_t len, void *dst,
                        dio_cb cb);

#endif
