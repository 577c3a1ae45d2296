/*
 * fileserver — serves files under a root and reports to a balancer.
 *
 * One ring runs everything: the membership client, the HTTP server
 * (fshttp), the transfer reports (fsxfer) and the digests' bookkeeping
 * (fsdig); one pool hashes files and writes the digest cache. At start the
 * catalog scans the root (the files and bytes announced in HELLO), then a
 * second walk hands every file to fsdig, which knows it from the cache or
 * hashes it; a file changed later is hashed when first asked for. Each
 * digest hashed joins the catalog as it becomes known. The ticket keys arrive
 * in every WELCOME; until the first that has them, every ticket is refused
 * (no key). The numbers a heartbeat announces are read when asked for, so
 * they are never stale by more than one heartbeat. The catalog of the root
 * (fscat.h) goes to the balancer whole after every WELCOME and as deltas
 * when files change, one CATALOG message at a time: changes made while one
 * streams wait in the catalog for the next.
 */
#include "convoy/fileserver.h"

#include "convoy/fscat.h"
#include "convoy/fsdigest.h"
#include "convoy/fshttp.h"
#include "convoy/fsroot.h"
#include "convoy/fsxfer.h"
#include "convoy/log.h"
#include "convoy/mbr_client.h"
#include "convoy/membership.h"
#include "convoy/net.h"
#include "convoy/pki.h"
#include "convoy/pool.h"
#include "convoy/proc.h"
#include "convoy/ring.h"
#include "convoy/ticket.h"
#include "convoy/tls.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#define POOL_QUEUE    1024  /* hashes and cache writes queued at once */
#define STOP_GRACE_MS 10000 /* after BYE: for the last bytes of answers under way */

struct fileserver {
    const struct fs_opts *o;
    ring_t *ring;
    pool_t *pool;
    mbrc_t *member;
    fsroot_t *root;
    fsdig_t *dig;
    fsxfer_t *xfer;
    fsh_t *http;
    ticket_keyring_t *keys;
    tls_ctx_t *http_tls;
    fscat_t *cat;           /* the files under the root */
    struct fscat_body body; /* the CATALOG streaming, kept until it is sent */
    bool sending;           /* body is streaming */
    bool leaving;
};

/* nftw has no context argument. */
static __thread struct fileserver *scan_fs;
static __thread size_t scan_root_len;

static int scan_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type != FTW_F || !S_ISREG(st->st_mode))
        return 0;
    const char *rel = path + scan_root_len;
    while (*rel == '/')
        rel++;
    uint8_t digest[FSDIG_LEN];
    int rc = fsdig_add(scan_fs->dig, rel, st, digest);
    if (rc == 1)
        fscat_set_sha256(scan_fs->cat, rel, st, digest);
    else if (rc < 0)
        log_warn("fileserver", "event=digest_skipped path=\"%s\" err=\"%s\"", rel, strerror(-rc));
    return 0;
}

/* Hands every file under the root to fsdig. */
static int fs_scan(struct fileserver *fs)
{
    scan_fs = fs;
    scan_root_len = strlen(fs->o->root);
    if (nftw(fs->o->root, scan_one, 32, FTW_PHYS) < 0) {
        int rc = -errno;
        log_error("fileserver", "event=scan_failed root=%s err=\"%s\"", fs->o->root,
                  strerror(errno));
        return rc;
    }
    return 0;
}

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

/* A digest was hashed: it joins the catalog. */
static void fs_digest_known(void *arg, const char *path, const struct stat *st,
                            const uint8_t digest[FSDIG_LEN])
{
    struct fileserver *fs = arg;
    fscat_set_sha256(fs->cat, path, st, digest);
}

/* ---- membership ---- */

static void fs_load(void *arg, struct reg_load *l)
{
    struct fileserver *fs = arg;
    double avg[1] = {0};
    struct statvfs v;
    memset(l, 0, sizeof *l);
    l->active = fs->xfer ? fsxfer_active(fs->xfer) : 0;
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

/* The balancer's ticket keys, in every WELCOME. A balancer that sends none
 * issues no tickets: the server stays a member and refuses every ticket. */
static int fs_welcome(void *arg, const cJSON *meta)
{
    struct fileserver *fs = arg;
    char why[256];
    if (cJSON_GetObjectItemCaseSensitive(meta, TICKET_WELCOME_FIELD) == NULL) {
        log_warn("fileserver",
                 "event=no_ticket_keys err=\"WELCOME without %s: every ticket is "
                 "refused\"",
                 TICKET_WELCOME_FIELD);
        return 0;
    }
    int rc = ticket_keyring_from_json(fs->keys, meta, (uint64_t)time(NULL), why, sizeof why);
    if (rc < 0)
        log_error("fileserver", "event=bad_welcome err=\"%s\"", why);
    return rc;
}

/* Registered (again): the reports kept while the balancer was away, and
 * the whole catalog. */
static void fs_registered(void *arg)
{
    struct fileserver *fs = arg;
    fsxfer_flush(fs->xfer);
    fs_catalog_send(fs, true);
}

static void fs_changed(void *arg)
{
    fs_catalog_send(arg, false);
}

static int fs_send(void *arg, enum frame_type type, const cJSON *meta)
{
    struct fileserver *fs = arg;
    return mbrc_send(fs->member, type, meta);
}

static void fs_http_closed(void *arg)
{
    struct fileserver *fs = arg;
    ring_stop(fs->ring);
}

/* A leg is complete once its last byte is queued (see fshttp.c), so the
 * connections must still be let to send it before the process goes. */
static void fs_left(void *arg)
{
    struct fileserver *fs = arg;
    fsh_stop(fs->http, STOP_GRACE_MS, fs_http_closed, fs);
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
    log_info("fileserver", "event=stopping signal=%s active=%u", strsignal(signo),
             fsxfer_active(fs->xfer));
    mbrc_leave(fs->member, fs_left);
}

/* Checks the options; 0, or 2 (the usage exit status) after logging. */
static int fs_check_opts(const struct fs_opts *o, struct net_addr *control, struct net_addr *http)
{
    char err[512];
    const char *bad = NULL, *value = NULL;
    if (net_addr_parse_err(o->balancer, NET_DIAL, control, err, sizeof err) < 0)
        bad = "--balancer", value = o->balancer;
    else if (net_addr_parse_err(o->http, NET_DIAL, http, err, sizeof err) < 0)
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
    return 0;
}

/* The root, the pool, the digests (with their cache) and the first scan. */
static int fs_open_files(struct fileserver *fs)
{
    const struct fs_opts *o = fs->o;
    char cache[PATH_MAX];
    int rc = fscat_new(&fs->cat, o->root, fs->ring, 0, fs_changed, fs);
    if (rc < 0)
        return rc;
    rc = fsroot_open(&fs->root, o->root);
    if (rc < 0) {
        log_error("fileserver", "event=bad_root root=%s err=\"%s\"", o->root,
                  rc == -ENOSYS ? "openat2 unavailable (Linux >= 5.6 needed)" : strerror(-rc));
        return rc;
    }
    if (o->state_dir &&
        (size_t)snprintf(cache, sizeof cache, "%s/digests", o->state_dir) >= sizeof cache) {
        log_error("fileserver", "event=bad_option option=--state-dir err=\"too long\"");
        return -ENAMETOOLONG;
    }
    if (o->state_dir && mkdir(o->state_dir, 0700) < 0 && errno != EEXIST) {
        rc = -errno;
        log_error("fileserver", "event=bad_state_dir dir=%s err=\"%s\"", o->state_dir,
                  strerror(errno));
        return rc;
    }
    if ((rc = pool_create(&fs->pool, 0, POOL_QUEUE)) < 0)
        return rc;
    struct fsdig_opts d = {.ring = fs->ring,
                           .pool = fs->pool,
                           .root = fs->root,
                           .cache = o->state_dir ? cache : NULL,
                           .on_known = fs_digest_known,
                           .arg = fs};
    if ((rc = fsdig_create(&fs->dig, &d)) < 0)
        return rc;
    return fs_scan(fs);
}

/* The keys, the reports, the membership client and the HTTP server. */
static int fs_start(struct fileserver *fs, struct mbrc_opts *mo, const struct net_addr *http)
{
    const struct fs_opts *o = fs->o;
    char err[512];
    int rc;
    if ((rc = ticket_keyring_new(&fs->keys)) < 0 ||
        (rc = fsxfer_new(&fs->xfer, fs_send, fs, 0)) < 0)
        return rc;
    if (!o->insecure_http &&
        tls_ctx_new(&fs->http_tls, TLS_SERVER, o->pki, o->name, false, err, sizeof err) < 0) {
        log_error("fileserver", "event=tls_failed err=\"%s\"", err);
        return -EPROTO;
    }
    struct fsh_opts ho = {.ring = fs->ring,
                          .addr = http,
                          .tls = fs->http_tls,
                          .name = o->name,
                          .root = fs->root,
                          .dig = fs->dig,
                          .xfer = fs->xfer,
                          .keys = fs->keys};
    if ((rc = fsh_start(&fs->http, &ho)) < 0) {
        log_error("fileserver", "event=listen_failed http=%s err=\"%s\"", o->http, strerror(-rc));
        return rc;
    }
    return mbrc_start(&fs->member, mo);
}

int fs_run(const struct fs_opts *o)
{
    static const struct frame_field welcome_fields[] = {{TICKET_WELCOME_FIELD, FF_ARRAY, false}};
    struct fileserver fs = {.o = o};
    struct mbrc_opts mo = {.expect_name = o->balancer_name,
                           .expect_role = PKI_ROLE_BALANCER,
                           .retry_max_ms = o->retry_max_ms,
                           .hello = fs_hello,
                           .load = fs_load,
                           .welcome_fields = welcome_fields,
                           .nwelcome_fields = 1,
                           .welcome = fs_welcome,
                           .registered = fs_registered,
                           .arg = &fs};
    char err[512];
    struct net_addr http;
    int status = fs_check_opts(o, &mo.server, &http);
    if (status != 0)
        return status;
    status = 1;
    long nofile = proc_raise_nofile();
    if (nofile < 0)
        log_warn("fileserver", "event=nofile_failed err=\"%s\"", strerror((int)-nofile));
    if (tls_ctx_new(&mo.tls, TLS_CLIENT, o->pki, o->name, false, err, sizeof err) < 0) {
        log_error("fileserver", "event=tls_failed err=\"%s\"", err);
        return 1;
    }
    int rc = ring_create(&fs.ring, 256);
    if (rc < 0) {
        log_error("fileserver", "event=io_uring_unavailable err=\"%s\" hint=\"%s\"", strerror(-rc),
                  "convoy needs io_uring (Linux >= 5.19, kernel.io_uring_disabled=0)");
        goto out;
    }
    mo.ring = fs.ring;
    if ((rc = ring_watch_signals(fs.ring, fs_signal, &fs)) < 0 || (rc = fs_open_files(&fs)) < 0 ||
        (rc = fs_start(&fs, &mo, &http)) < 0) {
        log_error("fileserver", "event=start_failed err=\"%s\"", strerror(-rc));
        goto out;
    }
    struct fsdig_stats ds;
    fsdig_stats(fs.dig, &ds);
    log_info(
        "fileserver",
        "event=started name=%s root=%s files=%llu bytes=%llu http=%s tls=%d digests_cached=%llu "
        "to_hash=%llu",
        o->name, o->root, (unsigned long long)fscat_files(fs.cat),
        (unsigned long long)fscat_bytes(fs.cat), o->http, !o->insecure_http,
        (unsigned long long)ds.cached, (unsigned long long)ds.pending);
    ring_run(fs.ring);
    status = 0;
    log_info("fileserver", "event=stopped name=%s", o->name);
out:
    if (fs.dig)
        fsdig_stop(fs.dig);
    pool_destroy(fs.pool);
    mbrc_free(fs.member);
    ring_destroy(fs.ring);
    fsh_free(fs.http);
    fsdig_free(fs.dig);
    fsxfer_free(fs.xfer);
    ticket_keyring_free(fs.keys);
    fsroot_free(fs.root);
    fscat_free(fs.cat);
    fscat_body_free(&fs.body);
    tls_ctx_free(fs.http_tls);
    tls_ctx_free(mo.tls);
    return status;
}
