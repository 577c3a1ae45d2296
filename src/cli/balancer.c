/* convoy balancer: options, then bal_run(). */
#include "cli.h"

#include "convoy/balancer.h"

#include <stdio.h>

int cmd_balancer(int argc, char **argv)
{
    struct bal_opts o = {.heartbeat_ms = 500,
                         .dead_after_ms = 2000,
                         .hello_timeout_ms = 5000,
                         .threads = 1,
                         .max_transfers = XFER_CAPACITY};
    const struct cli_opt opts[] = {
        CLI_OPT_STR("pki", &o.pki, "DIR", "cluster PKI folder (ca.crt, NAME.crt, NAME.key)", true),
        CLI_OPT_STR("name", &o.name, "NAME", "this balancer's certificate name", true),
        CLI_OPT_STR("control", &o.control, "HOST:PORT", "address file servers dial", true),
        CLI_OPT_U32("heartbeat-ms", &o.heartbeat_ms, "N",
                    "heartbeat interval given to servers (default 500)", 10, 600000),
        CLI_OPT_U32("dead-after-ms", &o.dead_after_ms, "N",
                    "silence before a server is marked down (default 2000)", 20, 3600000),
        CLI_OPT_U32("hello-timeout-ms", &o.hello_timeout_ms, "N",
                    "time a new connection has to finish TLS and say HELLO (default 5000)", 10,
                    600000),
        CLI_OPT_STR("state", &o.state, "NAME", "shared-memory state name (default: --name)", false),
        CLI_OPT_U32("threads", &o.threads, "N", "I/O threads (default 1)", 1, 64),
        CLI_OPT_U32("max-conns", &o.max_conns, "N",
                    "control connections at once (default: what the fd limit allows)", 1, 10000000),
        CLI_OPT_U32("max-transfers", &o.max_transfers, "N",
                    "transfer records kept (default 65536); finished ones make room first", 1,
                    SHM_SLOTS_MAX),
        CLI_OPT_LOG_LEVEL,
    };
    const struct cli_cmd cmd = {
        "balancer", "--pki DIR --name NAME --control HOST:PORT [options]",
        "Tracks file servers: they dial --control with mutual TLS, say HELLO and\n"
        "send heartbeats; convoy status shows the table.",
        opts, sizeof opts / sizeof opts[0]};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc >= 0)
        return rc;
    if (o.dead_after_ms <= o.heartbeat_ms) {
        fprintf(stderr, "convoy balancer: --dead-after-ms must exceed --heartbeat-ms\n");
        return 2;
    }
    return bal_run(&o);
}
