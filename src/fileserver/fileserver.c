/*
 * fileserver — serves files under a root and reports to a balancer.
 *
 * One ring runs the membership client; the numbers it announces (files and
 * bytes under the root, free disk, load average) are read when asked for,
 * so they are never stale by more than one heartbeat. The catalog of the
 * root (fscat.h) goes to the balancer whole after every WELCOME and as
 * deltas when files change, one CATALOG message at a time: changes made
 * while one streams wait in the catalog for the next.
 */
#include "convoy/fileserver.h"

#include "convoy/fscat.h"
#include "convoy/log.h"
#include "convoy/mbr_client.h"
#include "convoy/membership.h"
#include "convoy/net.h"
#include "convoy/pki.h"
#include "convoy/proc.h"
#include "convoy/ring.h"
#include "convoy/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

struct fileserver {
    const struct fs_opts *o;
    ring_t *ring;
    mbrc_t *member;
    fscat_t *cat;           /* the files under the root */
    struct fscat_body body; /* the CATALOG streaming, kept until it is sent */
    bool sending;           /* body is streaming */
    bool leaving;
};

/* ---- the catalog ---- */

static void fs_catalog_send(struct fileserver *fs, bool full);

static void fs_catalog_sent(void *arg, int err)
{
    struct fileserver *fs = arg;
    fscat_body_free(&fs->body);
    fs->sending = false;
    if (err == 0) /* else the connection is lost: the next WELCOME sends it whole */
        fs_catalog_send(fs, false);
}

/* The whole catalog, or what changed since the last one sent. */
static void fs_catalog_send(struct fileserver *fs, bool full)
{
    enum mbrc_state st = mbrc_state(fs->member);
    if (fs->sending || (st != MBRC_REGISTERED && st != MBRC_DRAINING))
        return;
    struct fscat_body *b = &fs->body;
    int rc = full ? fscat_full(fs->cat, b) : fscat_delta(fs->cat, b);
    if (rc < 0 || (!full && b->count == 0))
        return;
    cJSON *meta = fscat_meta_json(full, b->count);
    if (meta == NULL)
        rc = -ENOMEM;
    else if (b->count == 0)
        rc = mbrc_send(fs->member, FRAME_CATALOG, meta);
    else if ((rc = mbrc_send_buf(fs->member, FRAME_CATALOG, meta, b->data, b->len, fs_catalog_sent,
                                 fs)) == 0)
        fs->sending = true;
    cJSON_Delete(meta);
    if (rc < 0)
        log_warn("fileserver", "event=catalog_failed full=%d entries=%llu err=\"%s\"", full,
                 (unsigned long long)b->count, strerror(-rc));
    if (!fs->sending)
        fscat_body_free(b);
    else
        log_debug("fileserver", "event=catalog full=%d entries=%llu bytes=%zu", full,
                  (unsigned long long)b->count, b->len);
}

static void fs_registered(void *arg)
{
    fs_catalog_send(arg, true);
}

static void fs_changed(void *arg)
{
    fs_catalog_send(arg, false);
}

/* ---- membership ---- */

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
    h->files = fscat_files(fs->cat);
    h->bytes = fscat_bytes(fs->cat);
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
    struct mbrc_opts mo = {.expect_name = o->balancer_name,
                           .expect_role = PKI_ROLE_BALANCER,
                           .retry_max_ms = o->retry_max_ms,
                           .hello = fs_hello,
                           .load = fs_load,
                           .registered = fs_registered,
                           .arg = &fs};
    char err[512];
    int status = 1;
    struct net_addr http;
    const char *bad = NULL, *value = NULL;
    if (net_addr_parse_err(o->balancer, NET_DIAL, &mo.server, err, sizeof err) < 0)
        bad = "--balancer", value = o->balancer;
    else if (net_addr_parse_err(o->http, NET_DIAL, &http, err, sizeof err) < 0)
        bad = "--http", value = o->http;
    else if (!mbr_addr_valid(o->http)) { /* what the balancer would refuse in HELLO */
        bad = "--http", value = o->http;
        snprintf(err, sizeof err, "the balancer takes a numeric HOST:PORT under %d bytes",
                 REG_ADDR_MAX);
    }
    if (bad != NULL) {
        log_error("fileserver", "event=bad_option option=%s value=\"%s\" err=\"%s\"", bad, value,
                  err);
        return 2;
    }
    if (!mbr_name_valid(o->name)) {
        log_error("fileserver", "event=bad_option err=\"--name takes 1-63 of A-Z a-z 0-9 . _ -\"");
        return 2;
    }
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
    if (fscat_new(&fs.cat, o->root, fs.ring, 0, fs_changed, &fs) < 0)
        goto out;
    if ((rc = ring_watch_signals(fs.ring, fs_signal, &fs)) < 0 ||
        (rc = mbrc_start(&fs.member, &mo)) < 0) {
        log_error("fileserver", "event=start_failed err=\"%s\"", strerror(-rc));
        goto out;
    }
    log_info("fileserver", "event=started name=%s root=%s files=%llu bytes=%llu http=%s", o->name,
             o->root, (unsigned long long)fscat_files(fs.cat),
             (unsigned long long)fscat_bytes(fs.cat), o->http);
    ring_run(fs.ring);
    status = 0;
    log_info("fileserver", "event=stopped name=%s", o->name);
out:
    mbrc_free(fs.member);
    ring_destroy(fs.ring);
    fscat_free(fs.cat);
    fscat_body_free(&fs.body);
    tls_ctx_free(mo.tls);
    return status;
}
