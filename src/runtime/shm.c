/*
 * shm — tables in a named shared-memory segment, one writer, lock-free
 * readers.
 *
 * The design is simple: only the owner process ever writes, so there is no
 * lock word in the segment for another process to hold, corrupt or forge.
 * The owner's threads serialise on a pthread mutex in its own memory; each
 * slot carries a sequence counter, odd while a write is in progress, and a
 * reader copies a slot and keeps the copy only if the counter was even and
 * unchanged around it (a seqlock), retrying a bounded number of times.
 *
 * Layout (native byte order, see docs/protocol-membership.md): a 4 KiB
 * header holding magic, sizes, the owner's pid and start time and a
 * directory of up to SHM_TABLES_MAX tables; then each table, page-aligned,
 * as `capacity` slots of `stride` bytes: struct shm_slot then the row.
 *
 * Owning: the owner holds an flock(2) on the object for its whole life, so
 * the kernel, not a pid in the segment, says whether an owner is alive
 * (a crashed owner's lock goes with it). A segment is trusted only if it is
 * a regular file of this uid with no permission beyond 0600 and its header
 * and directory are consistent; anything else is renamed aside, never
 * deleted, and replaced. New segments are built under a temporary name and
 * published with link(2) (fresh) or rename(2) (a new layout), so a segment
 * at the real name is always complete.
 */
#include "convoy/shm.h"

#include "convoy/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHM_MAGIC     0x32564e43u /* "CNV2"; a new header format gets a new magic */
#define SHM_OLD_MAGIC 0x434e5653u /* "CNVS": the mutex-guarded format before tables */
#define SHM_DIR       "/dev/shm/"
#define SHM_PREFIX    "convoy-"
#define SHM_NAME_MAX  64
#define SHM_PATH_MAX  (sizeof SHM_DIR + sizeof SHM_PREFIX + SHM_NAME_MAX)
#define SHM_TMP_MAX   (SHM_PATH_MAX + 64) /* room for ".aside-TIME-PID-N" */
#define SHM_HDR_SIZE  4096u
#define SHM_PAGE      4096u
#define SHM_MAX_SIZE  ((uint64_t)1 << 30)
#define SHM_ATTEMPTS  4  /* owners racing to replace it: tries before -EAGAIN */
#define SHM_SPINS     64 /* reader: busy retries of a slot being written ... */
#define SHM_NAPS      20 /* ... then this many 50 µs sleeps */

struct shm_dirent {
    uint32_t id;
    uint32_t version;
    uint32_t row_size;
    uint32_t stride; /* slot header + row, rounded up to 64 */
    uint32_t capacity;
    uint32_t reserved;
    uint64_t offset; /* from the start of the segment, page-aligned */
};

struct shm_hdr {
    _Atomic uint32_t magic;       /* SHM_MAGIC */
    uint32_t hdr_size;            /* SHM_HDR_SIZE */
    uint64_t length;              /* of the whole object */
    _Atomic int32_t owner;        /* pid, 0 after a clean close */
    uint32_t ntables;             /* directory entries in use */
    _Atomic uint64_t owner_start; /* owner's start time in clock ticks */
    uint64_t reserved[4];
    struct shm_dirent dir[SHM_TABLES_MAX];
};

_Static_assert(sizeof(struct shm_hdr) <= SHM_HDR_SIZE, "header fits its page");

struct shm_slot {
    _Atomic uint32_t seq; /* even: stable; odd: being written */
    uint32_t gen;         /* bumped each time a free slot gets a row */
    uint32_t used;        /* 1: holds a row */
    uint32_t zero_tail;   /* the row's last zero_tail bytes are zero (0: no promise) */
};

struct shm {
    struct shm_hdr *hdr;
    size_t len;
    int fd;     /* owner: holds the flock; -1 for a reader */
    bool owner; /* opened with shm_own() */
    uint32_t ntables;
    struct shm_dirent dir[SHM_TABLES_MAX]; /* validated copy: never re-read */
    pthread_mutex_t lock;                  /* the owner's writers */
    char name[SHM_NAME_MAX + 1];
    char path[SHM_PATH_MAX];
};

static const char *const origin_names[] = {"fresh", "clean", "recovered"};

const char *shm_origin_str(enum shm_origin o)
{
    if ((unsigned)o >= sizeof origin_names / sizeof origin_names[0])
        return "unknown";
    return origin_names[o];
}

/* ---- names, processes ---- */

static int check_name(const char *name)
{
    size_t len = name ? strnlen(name, SHM_NAME_MAX + 1) : 0;
    if (len == 0 || len > SHM_NAME_MAX)
        return -EINVAL;
    if (strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != len)
        return -EINVAL;
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

void shm_owner_self(struct shm_owner *out)
{
    out->pid = getpid();
    out->start = 0;
    proc_start(out->pid, &out->start);
}

bool shm_owner_alive(const struct shm_owner *o)
{
    if (o->pid <= 0 || (kill(o->pid, 0) < 0 && errno == ESRCH))
        return false;
    uint64_t now;
    int rc = proc_start(o->pid, &now);
    if (rc == -ESRCH)
        return false;
    if (rc < 0)
        return true; /* no /proc: kill() said it exists */
    return o->start == 0 || now == o->start;
}

/* ---- judging a segment ---- */

static uint32_t stride_for(uint32_t row_size)
{
    return (uint32_t)((sizeof(struct shm_slot) + row_size + 63) & ~(size_t)63);
}

static uint64_t table_bytes(const struct shm_dirent *d)
{
    return ((uint64_t)d->stride * d->capacity + SHM_PAGE - 1) & ~(uint64_t)(SHM_PAGE - 1);
}

/* Whether st is this user's own regular file, closed to everyone else.
 * 0, or -EPERM with the reason in why. */
static int judge(const struct stat *st, char *why, size_t whylen)
{
    if (!S_ISREG(st->st_mode)) {
        snprintf(why, whylen, "not a regular file");
        return -EPERM;
    }
    if (st->st_uid != geteuid() || (st->st_mode & 07777 & ~0600u) != 0) {
        snprintf(why, whylen, "owned by uid %u with mode %04o (want uid %u, mode 0600)",
                 (unsigned)st->st_uid, (unsigned)(st->st_mode & 07777), (unsigned)geteuid());
        return -EPERM;
    }
    return 0;
}

/*
 * Opens path (never following a symlink, never waiting on a FIFO) if it is
 * trusted. Returns the fd, -ENOENT, -EPERM with why set (not ours, open to
 * others, not a file, or unreadable to us because another user's), or
 * -errno.
 */
static int open_trusted(const char *path, int flags, char *why, size_t whylen)
{
    struct stat st;
    int fd = open(path, flags | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if ((err == EACCES || err == ELOOP) && lstat(path, &st) == 0 && judge(&st, why, whylen) < 0)
            return -EPERM;
        return -err;
    }
    int rc = fstat(fd, &st) < 0 ? -errno : judge(&st, why, whylen);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

static const char *check_entry(const struct shm_dirent *d, uint64_t min_off, uint64_t length)
{
    if (d->id == 0)
        return "table id 0";
    if (d->row_size == 0 || d->row_size > SHM_ROW_MAX || d->stride != stride_for(d->row_size))
        return "row size or stride";
    if (d->capacity == 0 || d->capacity > SHM_SLOTS_MAX)
        return "capacity";
    if (d->offset % SHM_PAGE != 0 || d->offset < min_off || d->offset > length ||
        table_bytes(d) > length - d->offset)
        return "table offset";
    return NULL;
}

/* Why the header copy h does not describe a usable object of length bytes,
 * or NULL. Tables must lie in ascending order, without overlapping. */
static const char *check_header(const struct shm_hdr *h, uint64_t length)
{
    if (h->magic == SHM_OLD_MAGIC)
        return "old format (a process-shared mutex)";
    if (h->magic != SHM_MAGIC)
        return "magic";
    if (h->hdr_size != SHM_HDR_SIZE || h->length != length || length > SHM_MAX_SIZE)
        return "size";
    if (h->ntables > SHM_TABLES_MAX)
        return "table count";
    uint64_t end = SHM_HDR_SIZE;
    for (uint32_t i = 0; i < h->ntables; i++) {
        const char *why = check_entry(&h->dir[i], end, length);
        for (uint32_t j = 0; why == NULL && j < i; j++)
            if (h->dir[j].id == h->dir[i].id)
                why = "duplicate table id";
        if (why)
            return why;
        end = h->dir[i].offset + table_bytes(&h->dir[i]);
    }
    return NULL;
}

/*
 * Copies the header of the object open as fd into h and checks it.
 * 0, -EPROTO (why says what is wrong), or -errno.
 */
static int read_header(int fd, struct shm_hdr *h, char *why, size_t whylen)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if ((uint64_t)st.st_size < SHM_HDR_SIZE) {
        snprintf(why, whylen, "%lld bytes, shorter than a header", (long long)st.st_size);
        return -EPROTO;
    }
    void *m = mmap(NULL, SHM_HDR_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return -errno;
    memcpy(h, m, sizeof *h);
    munmap(m, SHM_HDR_SIZE);
    const char *bad = check_header(h, (uint64_t)st.st_size);
    if (bad == NULL)
        return 0;
    snprintf(why, whylen, "damaged header: %s", bad);
    return -EPROTO;
}

/* ---- handles ---- */

static int new_handle(shm_t **out, const char *name)
{
    int rc = check_name(name);
    if (rc < 0)
        return rc;
    shm_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->fd = -1;
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->path, sizeof s->path, SHM_DIR SHM_PREFIX "%s", name);
    pthread_mutex_init(&s->lock, NULL);
    *out = s;
    return 0;
}

static void unmap(shm_t *s)
{
    if (s->hdr != NULL)
        munmap(s->hdr, s->len);
    s->hdr = NULL;
}

static void free_handle(shm_t *s)
{
    unmap(s);
    if (s->fd >= 0)
        close(s->fd);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int map(shm_t *s, int fd, size_t len, int prot)
{
    void *m = mmap(NULL, len, prot, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return -errno;
    s->hdr = m;
    s->len = len;
    return 0;
}

static void adopt_dir(shm_t *s, const struct shm_dirent *dir, uint32_t n)
{
    memcpy(s->dir, dir, n * sizeof *dir);
    s->ntables = n;
}

static const struct shm_dirent *dir_find(const struct shm_dirent *dir, uint32_t n, uint32_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (dir[i].id == id)
            return &dir[i];
    return NULL;
}

static struct shm_slot *slot_at(struct shm_hdr *h, const struct shm_dirent *d, uint32_t i)
{
    return (struct shm_slot *)((char *)h + d->offset + (uint64_t)d->stride * i);
}

/* The table t names in s, checked against t; NULL with *rc set if none. */
static const struct shm_dirent *table_of(shm_t *s, const struct shm_table *t, int *rc)
{
    const struct shm_dirent *d = dir_find(s->dir, s->ntables, t->id);
    *rc = d == NULL                                                ? -ENOENT
          : d->version != t->version || d->row_size != t->row_size ? -EPROTO
                                                                   : 0;
    return *rc == 0 ? d : NULL;
}

/* ---- building a segment ---- */

static int plan_add(struct shm_dirent *dir, uint32_t *n, uint64_t *end, const struct shm_table *t)
{
    if (*n == SHM_TABLES_MAX)
        return -ENOSPC;
    struct shm_dirent *d = &dir[(*n)++];
    *d = (struct shm_dirent){.id = t->id,
                             .version = t->version,
                             .row_size = t->row_size,
                             .stride = stride_for(t->row_size),
                             .capacity = t->capacity,
                             .offset = *end};
    *end += table_bytes(d);
    return *end > SHM_MAX_SIZE ? -EFBIG : 0;
}

/* The directory for the declared tables, followed by the tables of old
 * (may be NULL) that were not declared, as they were. */
static int plan(const struct shm_table *t, size_t n, const struct shm_hdr *old,
                struct shm_dirent *dir, uint32_t *nt, uint64_t *length)
{
    *nt = 0;
    *length = SHM_HDR_SIZE;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = plan_add(dir, nt, length, &t[i]);
    for (uint32_t i = 0; old && i < old->ntables && rc == 0; i++) {
        const struct shm_dirent *o = &old->dir[i];
        if (dir_find(dir, (uint32_t)n, o->id) != NULL)
            continue;
        uint32_t was_nt = *nt;
        uint64_t was_length = *length;
        if (plan_add(dir, nt, length,
                     &(struct shm_table){o->id, o->version, o->row_size, o->capacity}) == 0)
            continue;
        *nt = was_nt; /* no room: the declared tables come first */
        *length = was_length;
        log_warn("shm", "event=table_dropped table=%u reason=\"no room in the directory or size\"",
                 o->id);
    }
    return rc;
}

static bool same_dir(const struct shm_dirent *a, uint32_t na, const struct shm_hdr *h)
{
    return na == h->ntables && memcmp(a, h->dir, na * sizeof *a) == 0;
}

/* Copies table d's rows from the old mapping, when its format is unchanged. */
static void carry_table(shm_t *s, const struct shm_dirent *d, const struct shm_hdr *old)
{
    const struct shm_dirent *o = dir_find(old->dir, old->ntables, d->id);
    if (o == NULL)
        return;
    if (o->version != d->version || o->row_size != d->row_size) {
        log_warn("shm", "event=table_reset name=%s table=%u version=%u/%u row_size=%u/%u", s->name,
                 d->id, o->version, d->version, o->row_size, d->row_size);
        return;
    }
    uint32_t dropped = 0;
    for (uint32_t i = 0; i < o->capacity; i++) {
        struct shm_slot *from = slot_at((struct shm_hdr *)old, o, i);
        if (i < d->capacity)
            memcpy(slot_at(s->hdr, d, i), from, sizeof *from + d->row_size);
        else
            dropped += from->used != 0;
    }
    if (dropped)
        log_warn("shm", "event=rows_dropped name=%s table=%u reason=capacity capacity=%u rows=%u",
                 s->name, d->id, d->capacity, dropped);
}

/*
 * Builds a segment with directory dir under a temporary name, holding its
 * flock, rows carried over from old (mapped, may be NULL). On success s maps
 * it and owns fd; *tmp is the temporary path, which the caller publishes.
 */
static int build(shm_t *s, const struct shm_dirent *dir, uint32_t nt, uint64_t length,
                 const struct shm_hdr *old, char tmp[SHM_TMP_MAX])
{
    static _Atomic unsigned seq;
    snprintf(tmp, SHM_TMP_MAX, "%s.new-%d-%u", s->path, (int)getpid(), atomic_fetch_add(&seq, 1));
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0 || ftruncate(fd, (off_t)length) < 0)
        rc = -errno;
    if (rc == 0)
        rc = map(s, fd, length, PROT_READ | PROT_WRITE);
    if (rc < 0)
        goto fail;
    struct shm_hdr *h = s->hdr;
    h->hdr_size = SHM_HDR_SIZE;
    h->length = length;
    h->ntables = nt;
    memcpy(h->dir, dir, nt * sizeof *dir);
    adopt_dir(s, dir, nt);
    for (uint32_t i = 0; old && i < nt; i++)
        carry_table(s, &dir[i], old);
    atomic_store_explicit(&h->magic, SHM_MAGIC, memory_order_release);
    s->fd = fd;
    return 0;
fail:
    unmap(s);
    close(fd);
    unlink(tmp);
    return rc;
}

/* ---- owning ---- */

/*
 * Renames an untrusted segment to "<path>.aside-<time>-<pid>-<n>" and logs
 * where. Returns -ESTALE (start over) or -EPERM when it cannot be moved.
 */
static int move_aside(shm_t *s, const char *why)
{
    static _Atomic unsigned seq;
    char to[SHM_TMP_MAX];
    snprintf(to, sizeof to, "%s.aside-%lld-%d-%u", s->path, (long long)time(NULL), (int)getpid(),
             atomic_fetch_add(&seq, 1));
    if (renameat2(AT_FDCWD, s->path, AT_FDCWD, to, RENAME_NOREPLACE) < 0) {
        int err = errno;
        log_error("shm",
                  "event=untrusted name=%s path=%s reason=\"%s\" err=\"cannot move it aside: %s\"",
                  s->name, s->path, why, strerror(err));
        return err == ENOENT ? -ESTALE : -EPERM;
    }
    log_warn("shm", "event=moved_aside name=%s reason=\"%s\" moved_to=%s", s->name, why, to);
    return -ESTALE;
}

/* Whether path still names the object open as fd. */
static bool still_named(int fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && lstat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/* Clears every slot a dead writer left odd (mid-write). */
static void clear_torn(shm_t *s)
{
    for (uint32_t t = 0; t < s->ntables; t++) {
        const struct shm_dirent *d = &s->dir[t];
        uint32_t torn = 0;
        for (uint32_t i = 0; i < d->capacity; i++) {
            struct shm_slot *sl = slot_at(s->hdr, d, i);
            uint32_t seq = atomic_load_explicit(&sl->seq, memory_order_relaxed);
            if (seq % 2 == 0 && sl->used <= 1)
                continue;
            memset((char *)(sl + 1), 0, d->row_size);
            sl->used = 0;
            sl->zero_tail = d->row_size;
            sl->gen++;
            atomic_store_explicit(&sl->seq, (seq | 1) + 1, memory_order_release);
            torn++;
        }
        if (torn)
            log_warn("shm", "event=torn_slots_cleared name=%s table=%u slots=%u", s->name, d->id,
                     torn);
    }
}

static void record_owner(shm_t *s)
{
    struct shm_owner me;
    shm_owner_self(&me);
    atomic_store(&s->hdr->owner_start, me.start);
    atomic_store(&s->hdr->owner, me.pid);
}

/* Makes a new segment at the real name. -ESTALE when another got there first. */
static int create_fresh(shm_t *s, const struct shm_table *t, size_t n)
{
    struct shm_dirent dir[SHM_TABLES_MAX];
    uint32_t nt;
    uint64_t length;
    char tmp[SHM_TMP_MAX];
    int rc = plan(t, n, NULL, dir, &nt, &length);
    if (rc < 0 || (rc = build(s, dir, nt, length, NULL, tmp)) < 0)
        return rc;
    rc = link(tmp, s->path) < 0 ? (errno == EEXIST ? -ESTALE : -errno) : 0;
    unlink(tmp);
    if (rc < 0) {
        unmap(s);
        close(s->fd);
        s->fd = -1;
    }
    return rc;
}

/*
 * Owns the trusted, locked segment open as fd whose header is old: in place
 * when its directory is what was declared, else in a new layout that
 * replaces it. Takes fd.
 */
static int take_over(shm_t *s, int fd, const struct shm_hdr *old, const struct shm_table *t,
                     size_t n)
{
    struct shm_dirent dir[SHM_TABLES_MAX];
    uint32_t nt;
    uint64_t length;
    int rc = plan(t, n, old, dir, &nt, &length);
    if (rc == 0 && same_dir(dir, nt, old)) {
        if ((rc = map(s, fd, old->length, PROT_READ | PROT_WRITE)) == 0) {
            adopt_dir(s, dir, nt);
            s->fd = fd;
            return 0;
        }
    }
    if (rc < 0)
        goto out;
    shm_t prev = {.fd = -1};
    if ((rc = map(&prev, fd, old->length, PROT_READ)) < 0)
        goto out;
    char tmp[SHM_TMP_MAX];
    rc = build(s, dir, nt, length, prev.hdr, tmp);
    unmap(&prev);
    if (rc == 0 && rename(tmp, s->path) < 0) {
        rc = -errno;
        unlink(tmp);
    }
    if (rc == 0)
        log_info("shm", "event=relayout name=%s tables=%u length=%llu", s->name, nt,
                 (unsigned long long)length);
out:
    close(fd);
    return rc;
}

/* One attempt: create the segment, or judge and take what is there. */
static int own_once(shm_t *s, const struct shm_table *t, size_t n, enum shm_origin *origin)
{
    *origin = SHM_FRESH;
    char why[160];
    int fd = open_trusted(s->path, O_RDWR, why, sizeof why);
    if (fd == -ENOENT)
        return create_fresh(s, t, n);
    if (fd == -EPERM)
        return move_aside(s, why);
    if (fd < 0)
        return fd;
    struct shm_hdr old;
    int rc = flock(fd, LOCK_EX | LOCK_NB) < 0 ? (errno == EWOULDBLOCK ? -EBUSY : -errno) : 0;
    if (rc == 0 && !still_named(fd, s->path))
        rc = -ESTALE;
    if (rc == 0)
        rc = read_header(fd, &old, why, sizeof why);
    if (rc == -EPROTO)
        rc = move_aside(s, why);
    if (rc == -EBUSY && read_header(fd, &old, why, sizeof why) == 0)
        log_error("shm", "event=busy name=%s owner_pid=%d", s->name, (int)old.owner);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    if (old.owner != 0) {
        *origin = SHM_RECOVERED;
        log_warn("shm", "event=owner_died name=%s pid=%d", s->name, (int)old.owner);
    } else {
        *origin = SHM_CLEAN;
    }
    return take_over(s, fd, &old, t, n);
}

static int check_tables(const struct shm_table *t, size_t n)
{
    if (t == NULL || n == 0 || n > SHM_TABLES_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (t[i].id == 0 || t[i].row_size == 0 || t[i].row_size > SHM_ROW_MAX ||
            t[i].capacity == 0 || t[i].capacity > SHM_SLOTS_MAX)
            return -EINVAL;
        for (size_t j = 0; j < i; j++)
            if (t[j].id == t[i].id)
                return -EINVAL;
    }
    return 0;
}

int shm_own(shm_t **out, const char *name, const struct shm_table *tables, size_t ntables,
            enum shm_origin *origin)
{
    shm_t *s;
    int rc = check_tables(tables, ntables);
    if (rc < 0 || (rc = new_handle(&s, name)) < 0)
        return rc;
    s->owner = true;
    enum shm_origin found = SHM_FRESH;
    rc = -ESTALE;
    for (int i = 0; i < SHM_ATTEMPTS && rc == -ESTALE; i++)
        rc = own_once(s, tables, ntables, &found); /* -ESTALE: nothing is held */
    if (rc == -ESTALE)
        rc = -EAGAIN;
    if (rc < 0)
        goto fail;
    clear_torn(s);
    record_owner(s);
    log_info("shm", "event=owned name=%s origin=%s tables=%u length=%zu", name,
             shm_origin_str(found), s->ntables, s->len);
    if (origin != NULL)
        *origin = found;
    *out = s;
    return 0;
fail:
    free_handle(s);
    return rc;
}

/* ---- reading ---- */

int shm_attach(shm_t **out, const char *name)
{
    shm_t *s;
    int rc = new_handle(&s, name);
    if (rc < 0)
        return rc;
    char why[160];
    struct shm_hdr h;
    int fd = open_trusted(s->path, O_RDONLY, why, sizeof why);
    if (fd >= 0) {
        rc = read_header(fd, &h, why, sizeof why);
        if (rc == 0)
            rc = map(s, fd, h.length, PROT_READ);
        close(fd);
    } else {
        rc = fd;
    }
    if (rc == -EPERM || rc == -EPROTO)
        log_error("shm", "event=refused name=%s path=%s reason=\"%s\"", name, s->path, why);
    if (rc < 0)
        goto fail;
    adopt_dir(s, h.dir, h.ntables);
    *out = s;
    return 0;
fail:
    free_handle(s);
    return rc;
}

int shm_capacity(shm_t *s, const struct shm_table *t)
{
    int rc;
    const struct shm_dirent *d = table_of(s, t, &rc);
    return d ? (int)d->capacity : rc;
}

int shm_lock(shm_t *s)
{
    return -pthread_mutex_lock(&s->lock);
}

void shm_unlock(shm_t *s)
{
    pthread_mutex_unlock(&s->lock);
}

/* The slot a writer may change, or NULL with *rc set. */
static struct shm_slot *writable(shm_t *s, const struct shm_table *t, uint32_t slot,
                                 const struct shm_dirent **d, int *rc)
{
    if (!s->owner) {
        *rc = -EPERM;
        return NULL;
    }
    if ((*d = table_of(s, t, rc)) == NULL)
        return NULL;
    if (slot >= (*d)->capacity) {
        *rc = -ERANGE;
        return NULL;
    }
    return slot_at(s->hdr, *d, slot);
}

/* Where the bytes of sl's row that may be non-zero end. */
static size_t row_end(const struct shm_slot *sl, const struct shm_dirent *d)
{
    return sl->zero_tail < d->row_size ? d->row_size - sl->zero_tail : 0;
}

/*
 * The seqlock write: odd while row and flags change, even again after.
 * Only the len bytes of row are copied, and of the old row only what
 * reached past them is zeroed: a big row mostly empty (a path of 1,024
 * bytes that is 20 long) costs the cache lines it uses, not its size.
 */
static void write_slot(struct shm_slot *sl, const struct shm_dirent *d, const void *row, size_t len,
                       bool used)
{
    uint32_t seq = atomic_load_explicit(&sl->seq, memory_order_relaxed);
    atomic_store_explicit(&sl->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    if (used && !sl->used)
        sl->gen++;
    sl->used = used;
    size_t end = row_end(sl, d);
    if (len)
        memcpy(sl + 1, row, len);
    if (end > len)
        memset((char *)(sl + 1) + len, 0, end - len);
    sl->zero_tail = d->row_size - (uint32_t)len;
    atomic_store_explicit(&sl->seq, seq + 2, memory_order_release);
}

int shm_put_prefix(shm_t *s, const struct shm_table *t, uint32_t slot, const void *row, size_t len)
{
    const struct shm_dirent *d;
    int rc;
    struct shm_slot *sl = writable(s, t, slot, &d, &rc);
    if (sl == NULL)
        return rc;
    if (len > d->row_size)
        return -EINVAL;
    write_slot(sl, d, row, len, true);
    return 0;
}

int shm_put(shm_t *s, const struct shm_table *t, uint32_t slot, const void *row)
{
    return shm_put_prefix(s, t, slot, row, t->row_size);
}

int shm_clear(shm_t *s, const struct shm_table *t, uint32_t slot)
{
    const struct shm_dirent *d;
    int rc;
    struct shm_slot *sl = writable(s, t, slot, &d, &rc);
    if (sl == NULL)
        return rc;
    write_slot(sl, d, NULL, 0, false);
    return 0;
}

static void pause_try(int i)
{
    if (i < SHM_SPINS) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, 50000};
    nanosleep(&ts, NULL);
}

int shm_get(shm_t *s, const struct shm_table *t, uint32_t slot, void *row, uint32_t *gen)
{
    int rc;
    const struct shm_dirent *d = table_of(s, t, &rc);
    if (d == NULL)
        return rc;
    if (slot >= d->capacity)
        return -ERANGE;
    const struct shm_slot *sl = slot_at(s->hdr, d, slot);
    for (int i = 0; i < SHM_SPINS + SHM_NAPS; pause_try(i++)) {
        uint32_t before = atomic_load_explicit(&sl->seq, memory_order_acquire);
        if (before % 2 != 0)
            continue;
        uint32_t used = sl->used, g = sl->gen;
        size_t end = row_end(sl, d);
        memcpy(row, sl + 1, end);
        memset((char *)row + end, 0, d->row_size - end);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&sl->seq, memory_order_relaxed) != before)
            continue;
        if (used != 1)
            memset(row, 0, d->row_size);
        if (gen)
            *gen = g;
        return used == 1;
    }
    return -EAGAIN;
}

void shm_owner(shm_t *s, struct shm_owner *out)
{
    out->pid = atomic_load(&s->hdr->owner);
    out->start = atomic_load(&s->hdr->owner_start);
}

void shm_close(shm_t *s)
{
    if (s == NULL)
        return;
    /* A forked child closing an inherited handle is not the owner and must
     * not record a clean close for it. */
    if (s->owner && s->hdr && atomic_load(&s->hdr->owner) == getpid()) {
        pthread_mutex_lock(&s->lock);
        atomic_store(&s->hdr->owner_start, 0);
        atomic_store(&s->hdr->owner, 0);
        pthread_mutex_unlock(&s->lock);
    }
    free_handle(s);
}

int shm_remove(const char *name)
{
    char path[SHM_PATH_MAX];
    int rc = check_name(name);
    if (rc < 0)
        return rc;
    snprintf(path, sizeof path, SHM_DIR SHM_PREFIX "%s", name);
    return unlink(path) < 0 ? -errno : 0;
}
