/* convoy balancer: options, then bal_run(). */
#include "cli.h"

#include "convoy/balancer.h"

#include <getopt.h>
#include <stdio.h>

static const char usage[] =
    "usage: convoy balancer --pki DIR --name NAME --control HOST:PORT [options]\n"
    "\n"
    "Tracks file servers: they dial --control with mutual TLS, say HELLO and\n"
    "send heartbeats; convoy status shows the table.\n"
    "\n"
    "  --pki DIR            cluster PKI folder (ca.crt, NAME.crt, NAME.key)\n"
    "  --name NAME          this balancer's certificate name\n"
    "  --control HOST:PORT  address file servers dial\n"
    "  --heartbeat-ms N     heartbeat interval given to servers (default 500)\n"
    "  --dead-after-ms N    silence before a server is marked down (default 2000)\n"
    "  --state NAME         shared-memory state name (default: --name)\n"
    "  --threads N          I/O threads (default 1)\n"
    "  --log-level LEVEL    debug, info, warn or error (default info)\n";

int cmd_balancer(int argc, char **argv)
{
    static const struct option opts[] = {
        {"pki", required_argument, NULL, 'p'},
        {"name", required_argument, NULL, 'n'},
        {"control", required_argument, NULL, 'c'},
        {"heartbeat-ms", required_argument, NULL, 'b'},
        {"dead-after-ms", required_argument, NULL, 'd'},
        {"state", required_argument, NULL, 's'},
        {"threads", required_argument, NULL, 't'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    struct bal_opts o = {.heartbeat_ms = 500, .dead_after_ms = 2000, .threads = 1};
    int ch, bad = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            o.pki = optarg;
            break;
        case 'n':
            o.name = optarg;
            break;
        case 'c':
            o.control = optarg;
            break;
        case 's':
            o.state = optarg;
            break;
        case 'b':
            bad |= cli_u32("balancer", "--heartbeat-ms", optarg, 10, 600000, &o.heartbeat_ms);
            break;
        case 'd':
            bad |= cli_u32("balancer", "--dead-after-ms", optarg, 20, 3600000, &o.dead_after_ms);
            break;
        case 't':
            bad |= cli_u32("balancer", "--threads", optarg, 1, 64, &o.threads);
            break;
        case 'l':
            bad |= cli_log_level("balancer", optarg);
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (!bad && (o.pki == NULL || o.name == NULL || o.control == NULL))
        bad = cli_missing("balancer", o.pki == NULL    ? "--pki"
                                      : o.name == NULL ? "--name"
                                                       : "--control");
    if (!bad && o.dead_after_ms <= o.heartbeat_ms) {
        fprintf(stderr, "convoy balancer: --dead-after-ms must exceed --heartbeat-ms\n");
        bad = -1;
    }
    if (bad || optind != argc) {
        if (!bad)
            fprintf(stderr, "convoy balancer: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return bal_run(&o);
}
