/*
 * convoy loadgen get: N clients on one ring, each a chain of downloads (dl)
 * one after the other, so that N are in flight at any time. A body is
 * hashed and checked against Repr-Digest by dl, and then dropped. The run
 * is bounded twice: in count (--requests, over all clients) or in time
 * (--seconds: no download starts after it), and always by --max-seconds,
 * when whatever still runs is cancelled and counted as "timeout".
 */
#include "cli.h"
#include "client.h"

#include "convoy/dl.h"
#include "convoy/lgstat.h"
#include "convoy/log.h"
#include "convoy/xget.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct lg;

struct lg_client {
    struct lg *lg;
    dl_t *dl; /* NULL between downloads */
    uint64_t t0_us, bytes;
};

struct lg {
    ring_t *ring;
    struct dl_opts o;
    char **paths;
    int npaths;
    uint64_t requests; /* 0: bounded by time */
    uint64_t started;
    uint64_t end_ms; /* no start at or after it (--seconds), 0: none */
    unsigned running;
    bool stopping;
    lgstat_t *stat;
    struct lg_client *cl;
    uint32_t nclients;
    struct ring_timer hard; /* --max-seconds */
    struct log_limit say;   /* failures printed: 10 a second */
    uint64_t t0_ms;
};

static uint64_t lg_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static enum lgstat_err lg_kind(int code)
{
    switch (code) {
    case XGET_EAUTH:
        return LGSTAT_E_AUTH;
    case XGET_ENOTFOUND:
        return LGSTAT_E_NOTFOUND;
    case XGET_ENOSERVER:
        return LGSTAT_E_NOSERVER;
    case XGET_EINTEGRITY:
        return LGSTAT_E_INTEGRITY;
    case XGET_ENET:
        return LGSTAT_E_NETWORK;
    default:
        return LGSTAT_E_OTHER;
    }
}

static void lg_next(struct lg_client *c);

static int lg_write(void *arg, uint64_t off, const uint8_t *p, size_t len)
{
    struct lg_client *c = arg;
    (void)off, (void)p;
    c->bytes += len;
    return 0;
}

static void lg_done(void *arg, int code, const char *why)
{
    struct lg_client *c = arg;
    struct lg *lg = c->lg;
    if (code == XGET_OK)
        lgstat_ok(lg->stat, lg_now_us() - c->t0_us, c->bytes, dl_server(c->dl));
    else if (lg->stopping)
        lgstat_fail(lg->stat, LGSTAT_E_TIMEOUT);
    else
        lgstat_fail(lg->stat, lg_kind(code));
    uint64_t dropped;
    char more[64] = "";
    if (code != XGET_OK && !lg->stopping && log_limit_pass(&lg->say, ring_now_ms(), &dropped)) {
        if (dropped != 0)
            snprintf(more, sizeof more, " (and %" PRIu64 " before it not shown)", dropped);
        fprintf(stderr, "convoy loadgen: %s: %s%s\n", xget_exit_str(code), why, more);
    }
    c->dl = NULL;
    lg->running--;
    lg_next(c);
}

/* Starts the client's next download, or stops the ring after the last. */
static void lg_next(struct lg_client *c)
{
    struct lg *lg = c->lg;
    bool more = !lg->stopping && (lg->requests == 0 || lg->started < lg->requests) &&
                (lg->end_ms == 0 || ring_now_ms() < lg->end_ms);
    if (more) {
        const struct dl_sink sink = {NULL, lg_write, NULL, lg_done, c};
        struct dl_opts o = lg->o;
        o.path = lg->paths[lg->started % (uint64_t)lg->npaths];
        c->t0_us = lg_now_us();
        c->bytes = 0;
        int rc = dl_start(&c->dl, lg->ring, &o, &sink);
        if (rc == 0) {
            lg->started++;
            lg->running++;
            return;
        }
        fprintf(stderr, "convoy loadgen: start: %s\n", strerror(-rc));
        lgstat_fail(lg->stat, LGSTAT_E_OTHER);
    }
    if (lg->running == 0)
        ring_stop(lg->ring);
}

/* Time is up: every download still running is cancelled. */
static void lg_hard_stop(struct lg *lg)
{
    lg->stopping = true;
    for (uint32_t i = 0; i < lg->nclients; i++)
        if (lg->cl[i].dl != NULL)
            dl_cancel(lg->cl[i].dl, XGET_EFAIL, "time is up");
}

static void lg_hard_fired(struct ring_timer *t)
{
    lg_hard_stop(container_of(t, struct lg, hard));
}

static void lg_signal(void *arg, int signo)
{
    (void)signo;
    lg_hard_stop(arg);
}

static int lg_run(struct lg *lg, uint32_t max_s, bool json)
{
    struct ring_opts ro = {.entries = 256, .cq_entries = 4 * 256 + 4 * lg->nclients};
    int rc = ring_create_opts(&lg->ring, &ro);
    if (rc == 0 && (rc = lgstat_new(&lg->stat)) == 0 &&
        (lg->cl = calloc(lg->nclients, sizeof *lg->cl)) == NULL)
        rc = -ENOMEM;
    if (rc == 0)
        rc = ring_watch_signals(lg->ring, lg_signal, lg);
    if (rc != 0) {
        fprintf(stderr, "convoy loadgen: setup: %s\n", strerror(-rc));
        goto fail;
    }
    lg->t0_ms = ring_now_ms();
    if (lg->end_ms != 0)
        lg->end_ms += lg->t0_ms;
    ring_timer_start(lg->ring, &lg->hard, (uint64_t)max_s * 1000, lg_hard_fired);
    for (uint32_t i = 0; i < lg->nclients; i++) {
        lg->cl[i].lg = lg;
        lg_next(&lg->cl[i]);
    }
    if (lg->running > 0 && (rc = ring_run(lg->ring)) != 0) {
        fprintf(stderr, "convoy loadgen: ring: %s\n", strerror(-rc));
        goto fail;
    }
    double secs = (double)(ring_now_ms() - lg->t0_ms) / 1000.0;
    rc = json ? lgstat_print_json(lg->stat, secs, stdout) : lgstat_print(lg->stat, secs, stdout);
    if (rc == 0) {
        struct lgstat_summary m;
        lgstat_summary(lg->stat, secs, &m);
        rc = m.errors != 0 || m.ok == 0 ? 1 : 0;
    }
fail:
    if (lg->ring != NULL) {
        ring_timer_stop(lg->ring, &lg->hard);
        ring_destroy(lg->ring);
    }
    free(lg->cl);
    lgstat_free(lg->stat);
    return rc < 0 ? 1 : rc;
}

int cmd_loadgen(int argc, char **argv)
{
    const char *balancer = NULL, *cacert = NULL, *user = NULL;
    uint32_t clients = 1, requests = 0, seconds = 0, max_s = 0, stall_ms = DL_STALL_MS;
    bool json = false, plain_auth = false;
    const struct cli_opt opts[] = {
        CLI_OPT_STR("balancer", &balancer, "URL", "https://HOST:PORT of the balancer", true),
        CLI_OPT_STR("cacert", &cacert, "FILE", "the cluster's CA certificate (for https)", false),
        CLI_OPT_STR("user", &user, "NAME",
                    "HTTP Basic user; password from CONVOY_PASSWORD or asked", false),
        CLI_OPT_U32("clients", &clients, "N", "downloads in flight at once (default 1)", 1, 100000),
        CLI_OPT_U32("requests", &requests, "M", "downloads in all, over every client", 1,
                    1000000000),
        CLI_OPT_U32("seconds", &seconds, "S", "start downloads for S seconds", 1, 86400),
        CLI_OPT_U32("max-seconds", &max_s, "S",
                    "cancel what still runs after S seconds (default: --seconds + 30, or 600)", 1,
                    86400),
        CLI_OPT_U32("stall-ms", &stall_ms, "N",
                    "resume elsewhere after N ms without a byte (default 3000)", 50, 3600000),
        CLI_OPT_FLAG("plain-auth", &plain_auth, "allow credentials over http://"),
        CLI_OPT_FLAG("json", &json, "one JSON object instead of the table (docs/cli.md)"),
        CLI_OPT_LOG_LEVEL,
    };
    const struct cli_cmd cmd = {
        "loadgen",
        "get --balancer URL --user NAME --clients N (--requests M | --seconds S) PATH...",
        "Downloads the PATHs in turn through the balancer with N clients on one\n"
        "io_uring loop, verifying every digest, and prints requests/s, latency\n"
        "p50/p99/max, bytes/s, errors by kind and downloads per server.\n"
        "Exit status: 0 when every download succeeded, 1 otherwise, 2 usage.",
        opts, sizeof opts / sizeof opts[0]};
    if (argc >= 2 && strcmp(argv[1], "submit") == 0)
        return cmd_loadgen_submit(argc - 1, argv + 1);
    if (argc < 2 || strcmp(argv[1], "get") != 0) {
        if (argc >= 2 && strcmp(argv[1], "--help") == 0)
            return cli_parse(&cmd, argc, argv);
        fprintf(stderr, "convoy loadgen: expected 'get' or 'submit' (see convoy loadgen --help)\n");
        return 2;
    }
    char **paths;
    int npaths;
    int rc = cli_parse_args(&cmd, argc - 1, argv + 1, &paths, &npaths, 1);
    if (rc >= 0)
        return rc;
    if ((requests == 0) == (seconds == 0)) {
        fprintf(stderr, "convoy loadgen: give one of --requests and --seconds\n");
        return 2;
    }
    struct cli_client cl;
    if ((rc = cli_client_setup(&cl, "loadgen", balancer, cacert, user, plain_auth)) != XGET_OK)
        return rc;
    struct lg lg = {.paths = paths,
                    .npaths = npaths,
                    .requests = requests,
                    .end_ms = (uint64_t)seconds * 1000,
                    .nclients = clients};
    lg.o = (struct dl_opts){.balancer = &cl.url,
                            .tls = cl.tls,
                            .stall_ms = stall_ms,
                            .authorization = cl.auth[0] != '\0' ? cl.auth : NULL};
    rc = lg_run(&lg, max_s != 0 ? max_s : seconds != 0 ? seconds + 30 : 600, json);
    cli_client_free(&cl);
    return rc;
}
