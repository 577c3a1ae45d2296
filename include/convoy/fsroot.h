/*
 * fsroot — the file server's root, and the one way a request path becomes
 * an open file under it.
 *
 * The design is simple: the root is opened once as a directory descriptor,
 * and every request path is opened relative to it with openat2() and
 * RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS, so the kernel refuses any
 * resolution that would leave the root, whether through "..", an absolute
 * symlink or a /proc magic link, and with no window between a check and the
 * open. Before that, a path is refused outright when it is empty, absolute,
 * over PATH_MAX, holds a NUL or has a ".." component (the HTTP layer has
 * already decoded %2e%2e into ".."). Only regular files are served: a
 * directory, a FIFO (opened without blocking), a device or a socket is
 * refused like a missing file. Every refusal is the same -ENOENT, so a
 * client learns nothing about what lies outside the root or what it may
 * not read (the server answers 404, never 403). Needs Linux >= 5.6.
 *
 * Thread-safe once opened: the I/O thread and pool workers may call
 * fsroot_open_file() at once.
 */
#ifndef CONVOY_FSROOT_H
#define CONVOY_FSROOT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

typedef struct fsroot fsroot_t;

/* Opens the directory dir as a root. 0, -ENOTDIR, -ENOSYS (no openat2 on
 * this kernel) or -errno. */
int fsroot_open(fsroot_t **out, const char *dir);

/* Closes the root; files opened under it stay open. NULL is a no-op. */
void fsroot_free(fsroot_t *r);

/* The directory as given to fsroot_open(). */
const char *fsroot_dir(const fsroot_t *r);

/* Whether path (len bytes, relative to the root) passes the checks made
 * before any open: not empty, not absolute, under PATH_MAX, no NUL, no ".."
 * component. */
bool fsroot_path_ok(const char *path, size_t len);

/*
 * Opens path (len bytes, relative to the root, already percent-decoded)
 * read-only and fills *st. Returns the new descriptor (O_CLOEXEC; the caller
 * closes it), -ENOENT for every path that is not a regular file inside the
 * root (missing, refused, escaping, a directory, a FIFO, unreadable), or
 * -errno for what is the server's trouble rather than the path's (-EMFILE,
 * -ENFILE, -ENOMEM, -EIO).
 */
int fsroot_open_file(const fsroot_t *r, const char *path, size_t len, struct stat *st);

#endif
