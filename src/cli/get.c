/*
 * convoy get: one download through the balancer into OUT (see dl.h for the
 * protocol, xget.h for the partial file). The body is written with pwrite
 * from the ring's thread: a single download has nothing else to do
 * meanwhile, and the page cache takes the writes at memory speed. OUT.part
 * and OUT.part.meta stay behind when the download fails for any reason but
 * integrity, so the next run continues them.
 */
#include "cli.h"
#include "client.h"

#include "convoy/dl.h"
#include "convoy/prog.h"
#include "convoy/xget.h"

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct get {
    ring_t *ring;
    dl_t *dl;
    const char *out, *name;
    char part[XGET_PATH_MAX], meta[XGET_PATH_MAX];
    int fd;
    bool bar; /* draw the progress line */
    bool quiet;
    struct prog prog;
    int code;
    char why[512];
};

static int get_open(void *arg, const struct xget_meta *m, uint64_t keep, xget_hash_t *h)
{
    struct get *g = arg;
    if (g->fd >= 0)
        close(g->fd);
    g->fd = xget_part_open(g->part, g->meta, m, keep, h);
    prog_start(&g->prog, m->size, keep, ring_now_ms());
    return g->fd < 0 ? g->fd : 0;
}

static int get_write(void *arg, uint64_t off, const uint8_t *p, size_t len)
{
    struct get *g = arg;
    while (len > 0) {
        ssize_t n = pwrite(g->fd, p, len, (off_t)off);
        if (n < 0)
            return -errno;
        p += n, len -= (size_t)n, off += (uint64_t)n;
    }
    return 0;
}

static void get_progress(void *arg, const char *server, uint64_t done, uint64_t total)
{
    struct get *g = arg;
    if (strcmp(g->prog.server, server) != 0) {
        if (g->prog.server[0] != '\0' && !g->quiet) /* a resume: say so, above the bar */
            fprintf(stderr, "%sconvoy get: %s failed; resuming at byte %" PRIu64 " on %s\n",
                    g->bar ? "\r\033[K" : "", g->prog.server, done, server);
        prog_server(&g->prog, server);
    }
    g->prog.total = total;
    if (g->bar && prog_update(&g->prog, done, ring_now_ms()))
        prog_draw(&g->prog, g->name, stderr);
}

/* The end: the part becomes OUT, or stays for a later run, or goes (bad bytes). */
static void get_done(void *arg, int code, const char *why)
{
    struct get *g = arg;
    g->dl = NULL; /* freed once this returns */
    g->code = code;
    snprintf(g->why, sizeof g->why, "%s", why);
    if (g->bar) {
        prog_draw(&g->prog, g->name, stderr);
        fputc('\n', stderr);
    }
    if (code == XGET_OK && g->fd >= 0) {
        int rc = xget_part_finish(g->fd, g->part, g->meta, g->out);
        g->fd = -1;
        if (rc != 0) {
            g->code = XGET_EFAIL;
            snprintf(g->why, sizeof g->why, "rename to %s: %s", g->out, strerror(-rc));
        }
    } else if (code == XGET_EINTEGRITY) {
        unlink(g->part);
        unlink(g->meta);
    }
    ring_stop(g->ring);
}

static void get_signal(void *arg, int signo)
{
    struct get *g = arg;
    (void)signo;
    if (g->dl != NULL)
        dl_cancel(g->dl, XGET_EFAIL, "interrupted (OUT.part kept: run again to resume)");
}

/* Names OUT.part and OUT.part.meta; the part found there, if any. */
static int get_paths(struct get *g, struct dl_opts *o)
{
    if (snprintf(g->part, sizeof g->part, "%s.part", g->out) >= (int)sizeof g->part ||
        snprintf(g->meta, sizeof g->meta, "%s.part.meta", g->out) >= (int)sizeof g->meta) {
        fprintf(stderr, "convoy get: -o %s: name too long\n", g->out);
        return -1;
    }
    if (xget_part_find(g->part, g->meta, &o->resume, &o->have) != 0) {
        memset(&o->resume, 0, sizeof o->resume);
        o->have = 0;
    }
    return 0;
}

static int get_run(struct get *g, struct dl_opts *o)
{
    int rc = ring_create(&g->ring, 64);
    if (rc != 0) {
        fprintf(stderr, "convoy get: io_uring: %s\n", strerror(-rc));
        return XGET_EFAIL;
    }
    const struct dl_sink sink = {get_open, get_write, get_progress, get_done, g};
    if ((rc = dl_start(&g->dl, g->ring, o, &sink)) != 0 ||
        (rc = ring_watch_signals(g->ring, get_signal, g)) != 0 || (rc = ring_run(g->ring)) != 0) {
        fprintf(stderr, "convoy get: %s\n", strerror(-rc));
        g->code = XGET_EFAIL;
    }
    ring_destroy(g->ring);
    if (g->fd >= 0)
        close(g->fd);
    if (g->code != XGET_OK)
        fprintf(stderr, "convoy get: %s: %s\n", xget_exit_str(g->code), g->why);
    else if (!g->quiet)
        fprintf(stderr, "convoy get: %s: sha-256 verified\n", g->out);
    return g->code;
}

int cmd_get(int argc, char **argv)
{
    const char *balancer = NULL, *cacert = NULL, *user = NULL, *out = NULL, *rate = NULL;
    uint32_t stall_ms = DL_STALL_MS, legs = DL_LEGS_MAX, retries = 5;
    bool quiet = false, plain_auth = false;
    const struct cli_opt opts[] = {
        CLI_OPT_STR("balancer", &balancer, "URL", "https://HOST:PORT of the balancer", true),
        CLI_OPT_STR("cacert", &cacert, "FILE", "the cluster's CA certificate (for https)", false),
        CLI_OPT_STR("user", &user, "NAME",
                    "HTTP Basic user; password from CONVOY_PASSWORD or asked", false),
        CLI_OPT_STR_SHORT("output", 'o', &out, "OUT", "where to write (default: PATH's name)"),
        CLI_OPT_STR("limit-rate", &rate, "RATE", "at most RATE bytes/s (10M, 512k)", false),
        CLI_OPT_U32("stall-ms", &stall_ms, "N",
                    "resume elsewhere after N ms without a byte (default 3000)", 50, 3600000),
        CLI_OPT_U32("legs", &legs, "N", "servers tried before giving up (default 8)", 1, 1000),
        CLI_OPT_U32("retries", &retries, "N", "503 answers waited out (default 5)", 0, 1000),
        CLI_OPT_FLAG("plain-auth", &plain_auth, "allow credentials over http://"),
        CLI_OPT_FLAG("quiet", &quiet, "no progress line, no final message"),
        CLI_OPT_LOG_LEVEL,
    };
    const struct cli_cmd cmd = {
        "get", "--balancer URL [--cacert CA] [--user NAME] PATH [-o OUT] [options]",
        "Downloads PATH through the balancer: follows its redirect, writes OUT.part,\n"
        "resumes on another server when a connection breaks or stalls, checks the\n"
        "SHA-256 against Repr-Digest and renames OUT.part to OUT. A token in\n"
        "CONVOY_TOKEN is sent as Bearer when --user is not given. An OUT.part of the\n"
        "same ETag left by an earlier run is continued.\n\n"
        "Exit status: 0 ok, 1 other failure (local file, interrupted), 2 usage,\n"
        "3 auth (401/403), 4 not found (404), 5 integrity (digest mismatch, the file\n"
        "changed between legs), 6 no server (503 after --retries), 7 network.",
        opts, sizeof opts / sizeof opts[0]};
    char **args;
    int nargs;
    int rc = cli_parse_args(&cmd, argc, argv, &args, &nargs, 1);
    if (rc >= 0)
        return rc;
    if (nargs != 1) {
        fprintf(stderr, "convoy get: one PATH at a time (see convoy loadgen for many)\n");
        return XGET_EUSAGE;
    }
    struct dl_opts o = {
        .path = args[0], .stall_ms = stall_ms, .legs_max = legs, .retries_503 = retries};
    if (rate != NULL && xget_rate_parse(rate, &o.rate) != 0) {
        fprintf(stderr, "convoy get: --limit-rate takes 10M, 512k, 1G or bytes, not '%s'\n", rate);
        return XGET_EUSAGE;
    }
    struct cli_client cl;
    if ((rc = cli_client_setup(&cl, "get", balancer, cacert, user, plain_auth)) != XGET_OK)
        return rc;
    char base[XGET_PATH_MAX];
    snprintf(base, sizeof base, "%s", args[0]);
    struct get g = {.out = out != NULL ? out : basename(base),
                    .fd = -1,
                    .quiet = quiet,
                    .bar = !quiet && isatty(STDERR_FILENO)};
    g.name = g.out;
    o.balancer = &cl.url;
    o.tls = cl.tls;
    o.authorization = cl.auth[0] != '\0' ? cl.auth : NULL;
    if (*g.out == '\0' || strcmp(g.out, "/") == 0 || get_paths(&g, &o) != 0) {
        cli_client_free(&cl);
        return XGET_EUSAGE;
    }
    rc = get_run(&g, &o);
    cli_client_free(&cl);
    return rc;
}
