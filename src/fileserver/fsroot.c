/*
 * fsroot — request paths opened beneath the root (see fsroot.h).
 *
 * The lexical checks are not the confinement (openat2 is): they give the
 * common attacks a refusal that costs no system call and that does not
 * depend on what the tree holds. Errors that only describe the path are
 * folded into -ENOENT; the few that describe the server are passed on, so
 * that a full descriptor table is logged as such and not as a missing file.
 */
#include "convoy/fsroot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct fsroot {
    int dirfd; /* O_PATH | O_DIRECTORY descriptor of the root */
    char *dir; /* as given */
};

static int sys_openat2(int dirfd, const char *path, struct open_how *how)
{
    long fd = syscall(SYS_openat2, dirfd, path, how, sizeof *how);
    return fd < 0 ? -errno : (int)fd;
}

int fsroot_open(fsroot_t **out, const char *dir)
{
    struct fsroot *r = calloc(1, sizeof *r);
    int rc = -ENOMEM;
    if (r == NULL || (r->dir = strdup(dir)) == NULL)
        goto fail;
    r->dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (r->dirfd < 0) {
        rc = -errno;
        goto fail;
    }
    /* A probe of the root itself: fails here, not on the first request,
     * when the kernel has no openat2. */
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_BENEATH};
    int fd = sys_openat2(r->dirfd, ".", &how);
    if (fd < 0) {
        rc = fd;
        close(r->dirfd);
        goto fail;
    }
    close(fd);
    *out = r;
    return 0;
fail:
    if (r)
        free(r->dir);
    free(r);
    return rc;
}

void fsroot_free(fsroot_t *r)
{
    if (r == NULL)
        return;
    close(r->dirfd);
    free(r->dir);
    free(r);
}

const char *fsroot_dir(const fsroot_t *r)
{
    return r->dir;
}

bool fsroot_path_ok(const char *path, size_t len)
{
    if (len == 0 || len >= PATH_MAX || path[0] == '/' || memchr(path, '\0', len) != NULL)
        return false;
    for (size_t i = 0; i < len;) { /* each component */
        const char *sep = memchr(path + i, '/', len - i);
        size_t end = sep ? (size_t)(sep - path) : len;
        if (end - i == 2 && path[i] == '.' && path[i + 1] == '.')
            return false;
        i = end + 1;
    }
    return true;
}

/* Whether an open error says something about the server, not the path. */
static bool server_trouble(int err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOMEM || err == -EIO || err == -ENOSYS;
}

int fsroot_open_file(const fsroot_t *r, const char *path, size_t len, struct stat *st)
{
    char name[PATH_MAX];
    if (!fsroot_path_ok(path, len))
        return -ENOENT;
    memcpy(name, path, len);
    name[len] = '\0';
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; it changes
     * nothing for the regular files that are kept. */
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    int fd = sys_openat2(r->dirfd, name, &how);
    if (fd < 0)
        return server_trouble(fd) ? fd : -ENOENT;
    if (fstat(fd, st) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return -ENOENT;
    }
    return fd;
}
