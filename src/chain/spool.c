/*
 * spool — jobs as directories of plain files (see spool.h).
 *
 * Every access is a pread/pwrite at a computed offset on a file kept open
 * per job, so nothing is read whole: the records are scanned in chunks of
 * RECS_CHUNK. Sizes are set with ftruncate, which leaves the result file
 * sparse until results land. Results go through dio: a caller whose header,
 * item size and buffers are DIO_ALIGN-aligned writes them around the page
 * cache.
 */
#include "convoy/spool.h"

#include "convoy/dio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RECS_CHUNK 1024 /* records read at once by spool_job_records */

struct spool {
    char dir[4096]; /* DIR/jobs */
};

struct spool_job {
    dio_t *data; /* result.npy, NULL when item_bytes is 0 */
    dio_t *rec;  /* items.rec */
    uint64_t items, item_bytes, hlen;
};

static int mkdir_once(const char *path)
{
    return mkdir(path, 0700) == 0 || errno == EEXIST ? 0 : -errno;
}

int spool_open(const char *dir, struct spool **out)
{
    struct spool *sp = calloc(1, sizeof *sp);
    if (!sp)
        return -ENOMEM;
    int rc = -ENAMETOOLONG;
    if ((size_t)snprintf(sp->dir, sizeof sp->dir, "%s/jobs", dir) >= sizeof sp->dir)
        goto fail;
    if ((rc = mkdir_once(dir)) < 0 || (rc = mkdir_once(sp->dir)) < 0)
        goto fail;
    *out = sp;
    return 0;
fail:
    free(sp);
    return rc;
}

void spool_close(struct spool *sp)
{
    free(sp);
}

int spool_path(const struct spool *sp, uint64_t id, const char *name, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%" PRIu64 "%s%s", sp->dir, id, *name ? "/" : "", name);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Writes all of len bytes at off. */
static int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        p += n, len -= (size_t)n, off += n;
    }
    return 0;
}

/* Reads all of len bytes at off; -EIO when the file is shorter. */
static int pread_all(int fd, void *buf, size_t len, off_t off)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        p += n, len -= (size_t)n, off += n;
    }
    return 0;
}

int spool_job_create(struct spool *sp, uint64_t id, const char *json, size_t len)
{
    char dir[4200], tmp[4200], path[4200];
    int rc;
    if ((rc = spool_path(sp, id, "", dir, sizeof dir)) < 0 ||
        (rc = spool_path(sp, id, "job.json.tmp", tmp, sizeof tmp)) < 0 ||
        (rc = spool_path(sp, id, "job.json", path, sizeof path)) < 0)
        return rc;
    if (mkdir(dir, 0700) != 0)
        return -errno;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    rc = pwrite_all(fd, json, len, 0);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    return rc;
}

/* Opens name in job id's directory, at size bytes: a new file is
 * truncated to it (hdr written first), an existing one must have it. */
static int open_sized(struct spool *sp, uint64_t id, const char *name, uint64_t size,
                      const void *hdr, size_t hlen, dio_t **out)
{
    char path[4200];
    int rc = spool_path(sp, id, name, path, sizeof path);
    if (rc < 0)
        return rc;
    bool fresh = true;
    dio_t *f;
    rc = dio_open(&f, path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (rc == -EEXIST) {
        fresh = false;
        rc = dio_open(&f, path, O_RDWR, 0);
    }
    if (rc < 0)
        return rc;
    int fd = dio_fd(f);
    struct stat st;
    if (fresh) {
        rc = hlen ? pwrite_all(fd, hdr, hlen, 0) : 0;
        if (rc == 0 && ftruncate(fd, (off_t)size) != 0)
            rc = -errno;
    } else if (fstat(fd, &st) != 0) {
        rc = -errno;
    } else if ((uint64_t)st.st_size != size) {
        rc = -EINVAL;
    }
    if (rc < 0) {
        dio_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

int spool_job_open(struct spool *sp, uint64_t id, uint64_t items, uint64_t item_bytes,
                   const void *header, size_t hlen, struct spool_job **out)
{
    if (items == 0 || (item_bytes && items > (UINT64_MAX - hlen) / item_bytes))
        return -EINVAL;
    struct spool_job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    *j = (struct spool_job){.items = items, .item_bytes = item_bytes, .hlen = hlen};
    int rc = open_sized(sp, id, "items.rec", items * sizeof(struct spool_rec), NULL, 0, &j->rec);
    if (rc == 0 && item_bytes)
        rc = open_sized(sp, id, "result.npy", hlen + items * item_bytes, header, hlen, &j->data);
    if (rc < 0)
        goto fail;
    *out = j;
    return 0;
fail:
    spool_job_close(j);
    return rc;
}

void spool_job_close(struct spool_job *j)
{
    if (!j)
        return;
    dio_close(j->data);
    dio_close(j->rec);
    free(j);
}

static bool in_job(const struct spool_job *j, uint64_t first, uint32_t count)
{
    return count > 0 && first < j->items && count <= j->items - first;
}

/* A spool_job_put_start under way: op writes the data, then the records. */
struct spool_put {
    struct dio_op op;
    dio_t *rec; /* a reference, given up at the end */
    uint64_t rec_off;
    bool recs_started;
    void (*done)(void *arg, int err);
    void *arg;
    uint32_t count;
    struct spool_rec recs[];
};

static void put_step(struct dio_op *op, int err)
{
    struct spool_put *p = container_of(op, struct spool_put, op);
    if (err == 0 && !p->recs_started) {
        p->recs_started = true;
        dio_write_start(op->r, p->rec, &p->op, p->recs, p->count * sizeof p->recs[0], p->rec_off,
                        put_step);
        return;
    }
    dio_close(p->rec);
    p->done(p->arg, err);
    free(p);
}

int spool_job_put_start(struct spool_job *j, ring_t *r, uint64_t first, uint32_t count,
                        const struct spool_rec *recs, const void *data,
                        void (*done)(void *arg, int err), void *arg)
{
    if (!in_job(j, first, count))
        return -ERANGE;
    struct spool_put *p = malloc(sizeof *p + count * sizeof *recs);
    if (p == NULL)
        return -ENOMEM;
    *p = (struct spool_put){.rec = dio_ref(j->rec),
                            .rec_off = first * sizeof *recs,
                            .done = done,
                            .arg = arg,
                            .count = count};
    memcpy(p->recs, recs, count * sizeof *recs);
    if (j->data && data) {
        dio_write_start(r, j->data, &p->op, data, count * j->item_bytes,
                        j->hlen + first * j->item_bytes, put_step);
    } else {
        p->recs_started = true;
        dio_write_start(r, p->rec, &p->op, p->recs, count * sizeof *recs, p->rec_off, put_step);
    }
    return 0;
}

int spool_job_get(struct spool_job *j, uint64_t first, uint32_t count, struct spool_rec *recs)
{
    if (!in_job(j, first, count))
        return -ERANGE;
    return pread_all(dio_fd(j->rec), recs, count * sizeof *recs, (off_t)(first * sizeof *recs));
}

int spool_job_records(struct spool_job *j,
                      int (*fn)(void *arg, uint64_t first, uint32_t count,
                                const struct spool_rec *recs),
                      void *arg)
{
    struct spool_rec *recs = malloc(RECS_CHUNK * sizeof *recs);
    if (!recs)
        return -ENOMEM;
    int rc = 0;
    for (uint64_t at = 0; at < j->items && rc == 0;) {
        uint32_t n = j->items - at < RECS_CHUNK ? (uint32_t)(j->items - at) : RECS_CHUNK;
        if ((rc = spool_job_get(j, at, n, recs)) < 0)
            break;
        for (uint32_t i = 0; i < n && rc >= 0;) {
            uint32_t k = i;
            while (k < n && recs[k].status != 0)
                k++;
            if (k > i)
                rc = fn(arg, at + i, k - i, &recs[i]);
            i = k + 1;
        }
        at += n;
    }
    free(recs);
    return rc < 0 ? rc : 0;
}

/* Parses a directory name that is a job id (decimal, no sign). */
static bool parse_id(const char *s, uint64_t *id)
{
    if (*s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *id = v;
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The job ids in the spool, unsorted: *ids (caller frees), *n. */
static int read_ids(struct spool *sp, uint64_t **ids, size_t *n)
{
    DIR *d = opendir(sp->dir);
    if (!d)
        return -errno;
    size_t cap = 0;
    int rc = 0;
    *ids = NULL;
    *n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        uint64_t id;
        if (!parse_id(e->d_name, &id))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            uint64_t *p = realloc(*ids, cap * sizeof *p);
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            *ids = p;
        }
        (*ids)[(*n)++] = id;
    }
    closedir(d);
    return rc;
}

int spool_list(struct spool *sp, int (*fn)(void *arg, uint64_t id), void *arg)
{
    uint64_t *ids = NULL;
    size_t n = 0;
    int rc = read_ids(sp, &ids, &n);
    if (rc == 0 && n > 0)
        qsort(ids, n, sizeof *ids, cmp_u64);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int r = fn(arg, ids[i]);
        rc = r < 0 ? r : 0;
    }
    free(ids);
    return rc;
}

int spool_job_remove(struct spool *sp, uint64_t id)
{
    static const char *const files[] = {"job.json", "job.json.tmp", "input.npy", "result.npy",
                                        "items.rec"};
    char path[4200];
    int rc;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if ((rc = spool_path(sp, id, files[i], path, sizeof path)) < 0)
            return rc;
        if (unlink(path) != 0 && errno != ENOENT)
            return -errno;
    }
    if ((rc = spool_path(sp, id, "", path, sizeof path)) < 0)
        return rc;
    return rmdir(path) == 0 ? 0 : -errno;
}
