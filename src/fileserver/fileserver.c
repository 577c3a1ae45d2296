/*
 * fileserver — serves files under a root and reports to a balancer.
 *
 * One ring runs the membership client; the numbers it announces (files and
 * bytes under the root, free disk, load average) are read when asked for,
 * so they are never stale by more than one heartbeat.
 */
#include "convoy/fileserver.h"

#include "convoy/log.h"
#include "convoy/mbr_client.h"
#include "convoy/net.h"
#include "convoy/proc.h"
#include "convoy/ring.h"
#include "convoy/tls.h"

#include <errno.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

struct fileserver {
    const struct fs_opts *o;
    ring_t *ring;
    mbrc_t *member;
    uint64_t files, bytes; /* under the root, counted at start */
    bool leaving;
};

static __thread uint64_t scan_files, scan_bytes; /* nftw has no context argument */

static int scan_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (type == FTW_F && S_ISREG(st->st_mode)) {
        scan_files++;
        scan_bytes += (uint64_t)st->st_size;
    }
    return 0;
}

static int fs_scan(struct fileserver *fs)
{
    struct stat st;
    int err = stat(fs->o->root, &st) < 0 ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
    if (err) {
        log_error("fileserver", "event=bad_root root=%s err=\"%s\"", fs->o->root, strerror(err));
        return -err;
    }
    scan_files = scan_bytes = 0;
    if (nftw(fs->o->root, scan_one, 32, FTW_PHYS) < 0) {
        int rc = -errno;
        log_error("fileserver", "event=scan_failed root=%s err=\"%s\"", fs->o->root,
                  strerror(errno));
        return rc;
    }
    fs->files = scan_files;
    fs->bytes = scan_bytes;
    return 0;
}

static void fs_load(void *arg, struct reg_load *l)
{
    struct fileserver *fs = arg;
    double avg[1] = {0};
    struct statvfs v;
    memset(l, 0, sizeof *l);
    if (getloadavg(avg, 1) == 1)
        l->load1 = avg[0];
    if (statvfs(fs->o->root, &v) == 0)
        l->disk_free = (uint64_t)v.f_bavail * v.f_frsize;
}

static void fs_hello(void *arg, struct reg_hello *h)
{
    struct fileserver *fs = arg;
    h->name = fs->o->name; /* the balancer checks it against the certificate */
    h->addr = fs->o->http;
    h->weight = fs->o->weight;
    h->capacity = fs->o->capacity;
    h->files = fs->files;
    h->bytes = fs->bytes;
    fs_load(fs, &h->load);
}

static void fs_left(void *arg)
{
    struct fileserver *fs = arg;
    ring_stop(fs->ring);
}

static void fs_signal(void *arg, int signo)
{
    struct fileserver *fs = arg;
    if (fs->leaving) { /* a second signal: stop waiting */
        log_warn("fileserver", "event=stop_now signal=%s", strsignal(signo));
        ring_stop(fs->ring);
        return;
    }
    fs->leaving = true;
    log_info("fileserver", "event=stopping signal=%s", strsignal(signo));
    mbrc_leave(fs->member, fs_left);
}

int fs_run(const struct fs_opts *o)
{
    struct fileserver fs = {.o = o};
    struct mbrc_opts mo = {
        .retry_max_ms = o->retry_max_ms, .hello = fs_hello, .load = fs_load, .arg = &fs};
    struct net_addr http;
    char err[512];
    int status = 1;
    const char *bad = NULL, *value = NULL;
    if (net_addr_parse_err(o->balancer, NET_DIAL, &mo.server, err, sizeof err) < 0)
        bad = "--balancer", value = o->balancer;
    else if (net_addr_parse_err(o->http, NET_DIAL, &http, err, sizeof err) < 0)
        bad = "--http", value = o->http;
    if (bad != NULL) {
        log_error("fileserver", "event=bad_option option=%s value=\"%s\" err=\"%s\"", bad, value,
                  err);
        return 2;
    }
    if (fs_scan(&fs) < 0)
        return 1;
    long nofile = proc_raise_nofile();
    if (nofile < 0)
        log_warn("fileserver", "event=nofile_failed err=\"%s\"", strerror((int)-nofile));
    if (tls_ctx_new(&mo.tls, TLS_CLIENT, o->pki, o->name, false, err, sizeof err) < 0) {
        log_error("fileserver", "event=tls_failed err=\"%s\"", err);
        return 1;
    }
    int rc = ring_create(&fs.ring, 64);
    if (rc < 0) {
        log_error("fileserver", "event=io_uring_unavailable err=\"%s\" hint=\"%s\"", strerror(-rc),
                  "convoy needs io_uring (Linux >= 5.19, kernel.io_uring_disabled=0)");
        goto out;
    }
    mo.ring = fs.ring;
    if ((rc = ring_watch_signals(fs.ring, fs_signal, &fs)) < 0 ||
        (rc = mbrc_start(&fs.member, &mo)) < 0) {
        log_error("fileserver", "event=start_failed err=\"%s\"", strerror(-rc));
        goto out;
    }
    log_info("fileserver", "event=started name=%s root=%s files=%llu bytes=%llu http=%s", o->name,
             o->root, (unsigned long long)fs.files, (unsigned long long)fs.bytes, o->http);
    ring_run(fs.ring);
    status = 0;
    log_info("fileserver", "event=stopped name=%s", o->name);
out:
    mbrc_free(fs.member);
    ring_destroy(fs.ring);
    tls_ctx_free(mo.tls);
    return status;
}
