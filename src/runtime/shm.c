/*
 * shm — a named POSIX shared-memory segment with a robust, process-shared
 * mutex, for state that must outlive the process that writes it.
 *
 * Layout: a header (struct shm_hdr) then, at the next 64-byte boundary, the
 * caller's data. The header records magic, the caller's layout version and
 * data size, the owner's pid and start time, a "dirty" flag and the mutex.
 *
 * Creation is race-free without a lock file: the creator uses O_EXCL, sizes
 * the object, initialises the mutex and stores the magic last (release).
 * Anyone who opens it sees magic 0 until then and waits up to a second;
 * after that the segment counts as broken (a creator died half-way).
 *
 * Ownership is a pid plus that process's start time (/proc/<pid>/stat field
 * 22), so a recycled pid is not mistaken for the live owner, and a zombie
 * counts as dead. An owner that finds a segment it cannot use (wrong magic,
 * layout or size) unlinks and recreates it; an flock(2) on the old object
 * serialises owners doing so, and each re-checks that the name still refers
 * to the object it inspected before acting on it.
 *
 * Recovery: when a lock holder dies the mutex reports EOWNERDEAD; when an
 * owner dies the next owner finds its pid dead. Both set "dirty", and the
 * owner's repair function runs under the lock before anyone else sees the
 * data. A reader (no repair function) that inherits a dead holder's lock
 * marks the mutex consistent but leaves "dirty" set for the owner to repair.
 */
#include "convoy/shm.h"

#include "convoy/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHM_MAGIC    0x434e5653u /* "CNVS"; a new header format gets a new magic */
#define SHM_PREFIX   "/convoy-"
#define SHM_NAME_MAX 64
#define SHM_PATH_MAX (sizeof SHM_PREFIX + SHM_NAME_MAX)
#define SHM_MAX_SIZE ((size_t)1 << 30)
#define SHM_WAIT_NS  1000000000L /* how long a creator may take to publish */
#define SHM_POLL_NS  10000000L
#define SHM_ATTEMPTS 4 /* owners racing to recreate: retries before -EAGAIN */

struct shm_hdr {
    _Atomic uint32_t magic;       /* SHM_MAGIC, stored last by the creator */
    uint32_t layout;              /* the caller's layout version */
    uint64_t size;                /* the caller's data size */
    _Atomic int32_t owner;        /* owner pid, 0 after a clean close */
    uint32_t dirty;               /* data needs repair; under mutex */
    _Atomic uint64_t owner_start; /* owner's start time in clock ticks, 0 if unknown */
    pthread_mutex_t mutex;        /* robust, process-shared */
};

#define SHM_DATA_OFF ((sizeof(struct shm_hdr) + 63) & ~(size_t)63)

/* What the header said, copied out so that it can be judged after unmapping. */
struct hdr_view {
    uint32_t magic;
    uint32_t layout;
    uint64_t size;
    pid_t owner;
    uint64_t owner_start;
    off_t length; /* size of the object */
};

struct shm {
    struct shm_hdr *hdr;
    void *data;
    size_t size;
    size_t map_len;
    bool owner; /* opened with shm_own() */
    shm_repair_fn repair;
    void *arg;
    char name[SHM_NAME_MAX + 1];
};

static const char *const origin_names[] = {"fresh", "clean", "recovered"};

const char *shm_origin_str(enum shm_origin o)
{
    if ((unsigned)o >= sizeof origin_names / sizeof origin_names[0])
        return "unknown";
    return origin_names[o];
}

/* Checks name and writes "/convoy-<name>" into path. 0 or -EINVAL. */
static int make_path(const char *name, char path[SHM_PATH_MAX])
{
    size_t len = name ? strnlen(name, SHM_NAME_MAX + 1) : 0;
    if (len == 0 || len > SHM_NAME_MAX)
        return -EINVAL;
    if (strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != len)
        return -EINVAL;
    snprintf(path, SHM_PATH_MAX, SHM_PREFIX "%s", name);
    return 0;
}

/*
 * Start time of pid in clock ticks since boot. -ESRCH when the process is
 * gone or a zombie; another -errno when /proc cannot tell.
 */
static int proc_start(pid_t pid, uint64_t *start)
{
    char path[32], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ESRCH : -errno;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int err = errno;
    close(fd);
    if (n <= 0)
        return n < 0 && err == ESRCH ? -ESRCH : -EIO;
    buf[n] = '\0';
    /* The command name may hold spaces and ')': fields resume after the last ')'. */
    const char *p = strrchr(buf, ')');
    char state;
    unsigned long long ticks;
    if (p == NULL || sscanf(p + 1,
                            " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u"
                            " %*d %*d %*d %*d %*d %*d %llu",
                            &state, &ticks) != 2)
        return -EIO;
    if (state == 'Z' || state == 'X')
        return -ESRCH;
    *start = ticks;
    return 0;
}

static uint64_t self_start(void)
{
    uint64_t start = 0;
    return proc_start(getpid(), &start) == 0 ? start : 0;
}

/* Whether the process recorded as (pid, start) still runs; start 0 = unknown. */
static bool owner_alive(pid_t pid, uint64_t start)
{
    if (pid <= 0 || (kill(pid, 0) < 0 && errno == ESRCH))
        return false;
    uint64_t now;
    int rc = proc_start(pid, &now);
    if (rc == -ESRCH)
        return false;
    if (rc < 0)
        return true; /* no /proc: kill() said it exists */
    return start == 0 || now == start;
}

/* The owner recorded in v is this very process (not an earlier one with its pid). */
static bool is_me(const struct hdr_view *v, uint64_t me)
{
    return v->owner == getpid() && v->owner_start == me;
}

/* A live process other than this one owns the segment the view describes. */
static bool held_by_other(const struct hdr_view *v, uint64_t me)
{
    return v->owner != 0 && !is_me(v, me) && owner_alive(v->owner, v->owner_start);
}

static void sleep_ns(long ns)
{
    struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
}

/* Copies the header out of a mapped segment. */
static void view_of(const struct shm_hdr *h, off_t length, struct hdr_view *v)
{
    v->magic = atomic_load_explicit(&h->magic, memory_order_acquire);
    v->layout = h->layout;
    v->size = h->size;
    v->owner = atomic_load(&h->owner);
    v->owner_start = atomic_load(&h->owner_start);
    v->length = length;
}

/*
 * Reads the header of an open segment, waiting up to SHM_WAIT_NS for its
 * creator to publish it. 0, -EPROTO when it never was, or -errno.
 */
static int read_header(int fd, struct hdr_view *v)
{
    for (long waited = 0;; waited += SHM_POLL_NS) {
        struct stat st;
        if (fstat(fd, &st) < 0)
            return -errno;
        if ((size_t)st.st_size >= SHM_DATA_OFF) {
            void *m = mmap(NULL, SHM_DATA_OFF, PROT_READ, MAP_SHARED, fd, 0);
            if (m == MAP_FAILED)
                return -errno;
            view_of(m, st.st_size, v);
            munmap(m, SHM_DATA_OFF);
            if (v->magic != 0)
                return 0;
        }
        if (waited >= SHM_WAIT_NS)
            return -EPROTO;
        sleep_ns(SHM_POLL_NS);
    }
}

/* Why a published header does not fit the caller, or NULL when it does. */
static const char *mismatch(const struct hdr_view *v, uint32_t layout, size_t size)
{
    if (v->magic != SHM_MAGIC)
        return "magic";
    if (v->layout != layout)
        return "layout";
    if (v->size != size || (uint64_t)v->length != SHM_DATA_OFF + size)
        return "size";
    return NULL;
}

static int map_segment(shm_t *s, int fd)
{
    void *m = mmap(NULL, s->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return -errno;
    s->hdr = m;
    s->data = (char *)m + SHM_DATA_OFF;
    return 0;
}

static int new_handle(shm_t **out, const char *name, size_t size)
{
    if (size == 0 || size > SHM_MAX_SIZE)
        return -EINVAL;
    shm_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    snprintf(s->name, sizeof s->name, "%s", name);
    s->size = size;
    s->map_len = SHM_DATA_OFF + size;
    *out = s;
    return 0;
}

static void free_handle(shm_t *s)
{
    if (s->hdr != NULL)
        munmap(s->hdr, s->map_len);
    free(s);
}

/* Runs the repair function if the data needs it. Called with the mutex held. */
static bool repair_if_dirty(shm_t *s)
{
    if (!s->hdr->dirty || s->repair == NULL)
        return false;
    s->repair(s->data, s->size, s->arg);
    s->hdr->dirty = 0;
    log_info("shm", "event=repaired name=%s", s->name);
    return true;
}

/*
 * Takes the mutex, recovering it from a dead holder. Returns 1 if the
 * repair function ran, 0 if not, or -errno (the mutex is then not held).
 */
static int lock_robust(shm_t *s)
{
    struct shm_hdr *h = s->hdr;
    int rc = pthread_mutex_lock(&h->mutex);
    if (rc == ENOTRECOVERABLE) {
        log_error("shm", "event=lock_failed name=%s reason=not_recoverable", s->name);
        return -ENOTRECOVERABLE;
    }
    if (rc != 0 && rc != EOWNERDEAD)
        return -rc;
    bool died = rc == EOWNERDEAD;
    if (died) {
        h->dirty = 1;
        log_warn("shm", "event=lock_holder_died name=%s repair=%s", s->name,
                 s->repair ? "now" : "deferred_to_owner");
    }
    bool repaired = repair_if_dirty(s);
    if (died && (rc = pthread_mutex_consistent(&h->mutex)) != 0) {
        pthread_mutex_unlock(&h->mutex);
        return -rc;
    }
    return repaired;
}

static int init_mutex(pthread_mutex_t *m)
{
    pthread_mutexattr_t attr;
    int rc = pthread_mutexattr_init(&attr);
    if (rc != 0)
        return -rc;
    if ((rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED)) != 0 ||
        (rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)) != 0 ||
        (rc = pthread_mutex_init(m, &attr)) != 0) {
        pthread_mutexattr_destroy(&attr);
        return -rc;
    }
    pthread_mutexattr_destroy(&attr);
    return 0;
}

/* Builds a new segment in fd, which shm_open(O_EXCL) just created. */
static int create(shm_t *s, int fd, uint32_t layout, uint64_t me)
{
    if (ftruncate(fd, (off_t)s->map_len) < 0)
        return -errno;
    int rc = map_segment(s, fd);
    if (rc < 0)
        return rc;
    struct shm_hdr *h = s->hdr;
    if ((rc = init_mutex(&h->mutex)) < 0)
        return rc;
    h->layout = layout;
    h->size = s->size;
    atomic_store(&h->owner, getpid());
    atomic_store(&h->owner_start, me);
    atomic_store_explicit(&h->magic, SHM_MAGIC, memory_order_release);
    return 0;
}

/* Whether path still names the object open as fd. */
static bool still_named(int fd, const char *path)
{
    struct stat a, b;
    int fd2 = shm_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd2 < 0)
        return false;
    bool same =
        fstat(fd, &a) == 0 && fstat(fd2, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    close(fd2);
    return same;
}

/*
 * Takes over a valid segment: under its mutex, refuses a live owner,
 * repairs after a dead one and records this process.
 */
static int take_over(shm_t *s, int fd, uint64_t me, enum shm_origin *origin)
{
    int rc = map_segment(s, fd);
    if (rc < 0)
        return rc;
    struct shm_hdr *h = s->hdr;
    if ((rc = lock_robust(s)) < 0)
        return rc;
    struct hdr_view v;
    view_of(h, (off_t)s->map_len, &v);
    if (held_by_other(&v, me)) {
        pthread_mutex_unlock(&h->mutex);
        return -EBUSY;
    }
    *origin = SHM_CLEAN;
    if (v.owner != 0 && !is_me(&v, me)) {
        *origin = SHM_RECOVERED;
        log_warn("shm", "event=owner_died name=%s pid=%d", s->name, (int)v.owner);
        if (rc == 0) /* unless recovering the lock has just repaired it */
            h->dirty = 1;
        repair_if_dirty(s);
    }
    atomic_store(&h->owner, getpid());
    atomic_store(&h->owner_start, me);
    pthread_mutex_unlock(&h->mutex);
    return 0;
}

/*
 * Owns an existing segment, open as fd. Returns 0, -EBUSY, -errno, or
 * -ESTALE when the caller should start over (the name now refers to another
 * object, or this one was unusable and has been unlinked).
 */
static int adopt(shm_t *s, int fd, const char *path, uint32_t layout, uint64_t me,
                 enum shm_origin *origin)
{
    if (flock(fd, LOCK_EX) < 0)
        return -errno;
    if (!still_named(fd, path))
        return -ESTALE;
    struct hdr_view v;
    int rc = read_header(fd, &v);
    if (rc < 0 && rc != -EPROTO)
        return rc;
    const char *why = rc == -EPROTO ? "unpublished" : mismatch(&v, layout, s->size);
    if (why == NULL)
        return take_over(s, fd, me, origin);
    if (v.magic == SHM_MAGIC && held_by_other(&v, me))
        return -EBUSY;
    log_warn("shm", "event=recreate name=%s reason=%s", s->name, why);
    if (shm_unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return -ESTALE;
}

/* One attempt at owning path: create it, or adopt what is there. */
static int own_once(shm_t *s, const char *path, uint32_t layout, uint64_t me,
                    enum shm_origin *origin)
{
    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        *origin = SHM_FRESH;
        int rc = create(s, fd, layout, me);
        if (rc < 0)
            shm_unlink(path); /* nobody must wait on a half-built segment */
        close(fd);
        return rc;
    }
    if (errno != EEXIST)
        return -errno;
    fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return errno == ENOENT ? -ESTALE : -errno;
    int rc = adopt(s, fd, path, layout, me, origin);
    close(fd); /* also drops the flock */
    return rc;
}

int shm_own(shm_t **out, const char *name, uint32_t layout, size_t size, shm_repair_fn repair,
            void *arg, enum shm_origin *origin)
{
    char path[SHM_PATH_MAX];
    shm_t *s;
    int rc = make_path(name, path);
    if (rc < 0 || (rc = new_handle(&s, name, size)) < 0)
        return rc;
    s->owner = true;
    s->repair = repair;
    s->arg = arg;
    uint64_t me = self_start();
    enum shm_origin found = SHM_FRESH;
    rc = -ESTALE;
    for (int i = 0; i < SHM_ATTEMPTS && rc == -ESTALE; i++)
        rc = own_once(s, path, layout, me, &found); /* -ESTALE: nothing was mapped */
    if (rc == -ESTALE)
        rc = -EAGAIN;
    if (rc < 0)
        goto fail;
    log_info("shm", "event=owned name=%s origin=%s size=%zu", name, shm_origin_str(found), size);
    if (origin != NULL)
        *origin = found;
    *out = s;
    return 0;
fail:
    free_handle(s);
    return rc;
}

int shm_attach(shm_t **out, const char *name, uint32_t layout, size_t size)
{
    char path[SHM_PATH_MAX];
    shm_t *s = NULL;
    int rc = make_path(name, path);
    if (rc < 0 || (rc = new_handle(&s, name, size)) < 0)
        return rc;
    int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    struct hdr_view v;
    rc = read_header(fd, &v);
    if (rc == 0 && mismatch(&v, layout, size) != NULL)
        rc = -EPROTO;
    if (rc == 0)
        rc = map_segment(s, fd);
    close(fd);
    if (rc < 0)
        goto fail;
    *out = s;
    return 0;
fail:
    free_handle(s);
    return rc;
}

void *shm_data(shm_t *s)
{
    return s->data;
}

int shm_lock(shm_t *s)
{
    int rc = lock_robust(s);
    return rc < 0 ? rc : 0;
}

void shm_unlock(shm_t *s)
{
    pthread_mutex_unlock(&s->hdr->mutex);
}

pid_t shm_owner(shm_t *s)
{
    return atomic_load(&s->hdr->owner);
}

void shm_close(shm_t *s)
{
    if (s == NULL)
        return;
    /* Without the lock the data may be mid-update: leave our pid so that the
     * next owner repairs it. A forked child closing an inherited handle is
     * not the owner and must not record a clean close for it. */
    if (s->owner && atomic_load(&s->hdr->owner) == getpid() && lock_robust(s) >= 0) {
        atomic_store(&s->hdr->owner_start, 0);
        atomic_store(&s->hdr->owner, 0);
        pthread_mutex_unlock(&s->hdr->mutex);
    }
    free_handle(s);
}

int shm_remove(const char *name)
{
    char path[SHM_PATH_MAX];
    int rc = make_path(name, path);
    if (rc < 0)
        return rc;
    return shm_unlink(path) < 0 ? -errno : 0;
}
