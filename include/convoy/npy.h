/*
 * npy — the header of a NumPy .npy file holding a stack of square float64
 * matrices: shape (count, n, n), dtype '<f8', C order, format 1.0 or 2.0.
 *
 * Only the header is parsed here (the data follows it and is read where it
 * lies, with pread): magic, version, header length, then the Python dict
 * literal {'descr': '<f8', 'fortran_order': False, 'shape': (count, n, n), }
 * with its keys in any order. Anything else is refused with the reason:
 * another dtype ('>f8' big-endian, '<f4', …), Fortran order, a shape not
 * 3-D or not square, sizes past the bounds, a header longer than
 * NPY_HEADER_MAX, a truncated file.
 */
#ifndef CONVOY_NPY_H
#define CONVOY_NPY_H

#include <stddef.h>
#include <stdint.h>

#define NPY_HEADER_MAX 65536u /* whole header, magic included */

struct npy_info {
    uint64_t count;    /* matrices */
    uint32_t n;        /* order */
    uint64_t data_off; /* where the data starts: the header's length */
    uint64_t data_len; /* count · n · n · 8 */
};

/*
 * Parses the header at buf (len bytes read from the file's start; more than
 * the header is fine). Bounds: count ≤ max_count, 1 ≤ n ≤ max_n.
 * 0 with *info, -EAGAIN when len is too short to hold the header (read
 * more, up to NPY_HEADER_MAX), or -EINVAL with the reason in err.
 */
int npy_parse_header(const uint8_t *buf, size_t len, uint64_t max_count, uint32_t max_n,
                     struct npy_info *info, char *err, size_t errlen);

/*
 * Writes the header of a (count, n, n) '<f8' C-order array, format 1.0,
 * padded with spaces and a newline so the data starts at a multiple of 64.
 * Returns its length, or -ENOSPC when cap is too small (128 is enough).
 */
int npy_write_header(uint64_t count, uint32_t n, uint8_t *buf, size_t cap);
/* The same with the data at a multiple of align (a multiple of 64, at most
 * 64 KiB: a header up to the block size of direct I/O). */
int npy_write_header_aligned(uint64_t count, uint32_t n, size_t align, uint8_t *buf, size_t cap);

/* Reads and checks the header of the open file fd. 0, or as above (-EINVAL
 * also for a file shorter than its header says its data is), or -errno. */
int npy_read_fd(int fd, uint64_t max_count, uint32_t max_n, struct npy_info *info, char *err,
                size_t errlen);

#endif
