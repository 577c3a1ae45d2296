/*
 * shmbuf — bodies through POSIX shared memory between processes of one
 * host (see shmbuf.h). An object is created with O_EXCL and mode 0600 under
 * a name no one can guess, and opened by the reader with O_NOFOLLOW; the
 * checks on the open descriptor (fstat) are what the reader trusts, not
 * the name.
 */
#include "convoy/shmbuf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREFIX "convoy-buf-"

struct shmbuf {
    void *data;
    size_t len;
    bool writer; /* unlinks at free */
    char name[SHMBUF_NAME_MAX];
};

void *shmbuf_data(const shmbuf_t *b)
{
    return b->data;
}

size_t shmbuf_len(const shmbuf_t *b)
{
    return b->len;
}

const char *shmbuf_name(const shmbuf_t *b)
{
    return b->name;
}

/* "/convoy-buf-" decimal pid "-" 16 hex digits, and nothing else. */
bool shmbuf_name_valid(const char *name)
{
    size_t n = strlen("/" PREFIX);
    if (strncmp(name, "/" PREFIX, n) != 0)
        return false;
    const char *p = name + n, *dash = strchr(p, '-');
    if (dash == NULL || dash == p || dash - p > 10)
        return false;
    for (const char *q = p; q < dash; q++)
        if (*q < '0' || *q > '9')
            return false;
    if (strlen(dash + 1) != 16)
        return false;
    for (const char *q = dash + 1; *q; q++)
        if (!((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f')))
            return false;
    return true;
}

static int map(shmbuf_t *b, int fd, int prot)
{
    b->data = mmap(NULL, b->len, prot, MAP_SHARED, fd, 0);
    return b->data == MAP_FAILED ? -errno : 0;
}

int shmbuf_create(shmbuf_t **out, size_t len)
{
    if (len == 0 || len > SHMBUF_LEN_MAX)
        return -EINVAL;
    shmbuf_t *b = calloc(1, sizeof *b);
    if (b == NULL)
        return -ENOMEM;
    uint64_t r;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
        free(b);
        return -EIO;
    }
    snprintf(b->name, sizeof b->name, "/" PREFIX "%d-%016" PRIx64, (int)getpid(), r);
    b->len = len;
    b->writer = true;
    int fd = shm_open(b->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int rc = fd < 0 ? -errno : 0;
    if (rc == 0 && fchmod(fd, 0600) < 0) /* the umask may have narrowed it; never widened */
        rc = -errno;
    if (rc == 0 && ftruncate(fd, (off_t)len) < 0)
        rc = -errno;
    if (rc == 0)
        rc = map(b, fd, PROT_READ | PROT_WRITE);
    if (fd >= 0)
        close(fd);
    if (rc < 0) {
        if (fd >= 0)
            shm_unlink(b->name);
        free(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* Why the object open on fd is not one to read: 0 when it is. */
static int check(int fd, size_t len, const char *name, char *why, size_t whylen)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(why, whylen, "shmbuf: fstat %s: %s", name, strerror(errno));
        return -errno;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 07777) != 0600) {
        snprintf(why, whylen, "shmbuf: %s: owner %u mode %04o, want uid %u mode 0600", name,
                 (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), (unsigned)geteuid());
        return -EPERM;
    }
    if ((uint64_t)st.st_size != len) {
        snprintf(why, whylen, "shmbuf: %s: %jd bytes, announced %zu", name, (intmax_t)st.st_size,
                 len);
        return -EBADMSG;
    }
    return 0;
}

int shmbuf_open(shmbuf_t **out, const char *name, size_t len, char *why, size_t whylen)
{
    if (!shmbuf_name_valid(name) || len == 0 || len > SHMBUF_LEN_MAX) {
        snprintf(why, whylen, "shmbuf: not a buffer name and length");
        return -EINVAL;
    }
    shmbuf_t *b = calloc(1, sizeof *b);
    if (b == NULL) {
        snprintf(why, whylen, "shmbuf: out of memory");
        return -ENOMEM;
    }
    snprintf(b->name, sizeof b->name, "%s", name);
    b->len = len;
    int fd = shm_open(name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
    int rc = fd < 0 ? -errno : check(fd, len, name, why, whylen);
    if (fd < 0)
        snprintf(why, whylen, "shmbuf: open %s: %s", name, strerror(-rc));
    if (rc == 0 && (rc = map(b, fd, PROT_READ)) < 0)
        snprintf(why, whylen, "shmbuf: mmap %s: %s", name, strerror(-rc));
    if (fd >= 0)
        close(fd);
    if (rc == 0)
        shm_unlink(name); /* gone from the namespace; the mappings keep it */
    if (rc < 0) {
        free(b);
        return rc;
    }
    *out = b;
    return 0;
}

void shmbuf_free(shmbuf_t *b)
{
    if (b == NULL)
        return;
    munmap(b->data, b->len);
    if (b->writer)
        shm_unlink(b->name); /* ENOENT once the reader took it */
    free(b);
}

static char host_id[SHMBUF_HOST_MAX];

static void read_host_id(void)
{
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (f == NULL)
        return;
    if (fgets(host_id, sizeof host_id, f) == NULL)
        host_id[0] = '\0';
    host_id[strcspn(host_id, "\n")] = '\0';
    fclose(f);
}

const char *shmbuf_host_id(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_host_id);
    return host_id;
}

unsigned shmbuf_sweep(void)
{
    DIR *d = opendir("/dev/shm");
    if (d == NULL)
        return 0;
    unsigned removed = 0;
    struct dirent *e;
    char name[SHMBUF_NAME_MAX + 1];
    while ((e = readdir(d)) != NULL) {
        if (snprintf(name, sizeof name, "/%s", e->d_name) >= (int)sizeof name ||
            !shmbuf_name_valid(name))
            continue;
        struct stat st;
        long pid = strtol(name + strlen("/" PREFIX), NULL, 10);
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_uid != geteuid() ||
            pid <= 0 || pid > INT32_MAX)
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno == EPERM)
            continue; /* its creator runs (or a process of that pid does) */
        removed += shm_unlink(name) == 0;
    }
    closedir(d);
    return removed;
}
