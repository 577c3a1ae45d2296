/* convoy fileserver: options, then fs_run(). */
#include "cli.h"

#include "convoy/fileserver.h"

#include <getopt.h>
#include <stdio.h>

static const char usage[] =
    "usage: convoy fileserver --pki DIR --name NAME --root DIR --balancer HOST:PORT\n"
    "                         --http HOST:PORT [options]\n"
    "\n"
    "Serves the files under --root and reports to the balancer: HELLO, then\n"
    "heartbeats; reconnects with backoff when the balancer is away. SIGTERM\n"
    "drains (DRAIN, wait for transfers, BYE) and exits 0.\n"
    "\n"
    "  --pki DIR              cluster PKI folder (ca.crt, NAME.crt, NAME.key)\n"
    "  --name NAME            this server's certificate name\n"
    "  --root DIR             folder served\n"
    "  --balancer HOST:PORT   the balancer's control address\n"
    "  --http HOST:PORT       this server's HTTP address, announced to the balancer\n"
    "  --weight N             share for the weighted policy (default 1)\n"
    "  --capacity N           concurrent transfers accepted (default 64)\n"
    "  --retry-max-ms N       reconnect backoff ceiling (default 2000)\n"
    "  --log-level LEVEL      debug, info, warn or error (default info)\n";

int cmd_fileserver(int argc, char **argv)
{
    static const struct option opts[] = {
        {"pki", required_argument, NULL, 'p'},
        {"name", required_argument, NULL, 'n'},
        {"root", required_argument, NULL, 'r'},
        {"balancer", required_argument, NULL, 'b'},
        {"http", required_argument, NULL, 'H'},
        {"weight", required_argument, NULL, 'w'},
        {"capacity", required_argument, NULL, 'c'},
        {"retry-max-ms", required_argument, NULL, 'm'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    struct fs_opts o = {.weight = 1, .capacity = 64, .retry_max_ms = 2000};
    int ch, bad = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            o.pki = optarg;
            break;
        case 'n':
            o.name = optarg;
            break;
        case 'r':
            o.root = optarg;
            break;
        case 'b':
            o.balancer = optarg;
            break;
        case 'H':
            o.http = optarg;
            break;
        case 'w':
            bad |= cli_u32("fileserver", "--weight", optarg, 1, 1000000, &o.weight);
            break;
        case 'c':
            bad |= cli_u32("fileserver", "--capacity", optarg, 1, 1000000, &o.capacity);
            break;
        case 'm':
            bad |= cli_u32("fileserver", "--retry-max-ms", optarg, 100, 600000, &o.retry_max_ms);
            break;
        case 'l':
            bad |= cli_log_level("fileserver", optarg);
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    const char *missing = !o.pki        ? "--pki"
                          : !o.name     ? "--name"
                          : !o.root     ? "--root"
                          : !o.balancer ? "--balancer"
                          : !o.http     ? "--http"
                                        : NULL;
    if (!bad && missing)
        bad = cli_missing("fileserver", missing);
    if (bad || optind != argc) {
        if (!bad)
            fprintf(stderr, "convoy fileserver: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return fs_run(&o);
}
