/* convoy compute: options, then cs_run(). */
#include "cli.h"

#include "convoy/compute.h"

int cmd_compute(int argc, char **argv)
{
    struct cs_opts o = {.frontend_name = "frontend", .retry_max_ms = 2000};
    const char *edge = NULL;
    const struct cli_opt opts[] = {
        CLI_OPT_STR("pki", &o.pki, "DIR", "cluster PKI folder (ca.crt, NAME.crt, NAME.key)", true),
        CLI_OPT_STR("name", &o.name, "NAME", "this server's certificate name", true),
        CLI_OPT_STR("frontend", &o.frontend, "HOST:PORT", "the front-end's control address", true),
        CLI_OPT_STR("frontend-name", &o.frontend_name, "NAME",
                    "the certificate name the front-end must hold (default frontend)", false),
        CLI_OPT_STR("listen", &o.listen, "HOST:PORT",
                    "chain address (default: the front-end's host, a free port)", false),
        CLI_OPT_U32("threads", &o.threads, "N", "kernel lanes (default: one per CPU)", 1, 1024),
        CLI_OPT_U32("window", &o.window, "N",
                    "items held before the chain is pushed back (default 64 per lane)", 1, 1000000),
        CLI_OPT_U32("weight", &o.weight, "N",
                    "weight announced at start (default: tenths of the GFLOP/s of a calibration); "
                    "the front-end then measures it",
                    1, 1000000),
        CLI_OPT_U32("retry-max-ms", &o.retry_max_ms, "N",
                    "reconnect backoff ceiling (default 2000)", 100, 600000),
        CLI_OPT_EDGE(&edge),
        CLI_OPT_LOG_LEVEL,
    };
    const struct cli_cmd cmd = {
        "compute", "--pki DIR --name NAME --frontend HOST:PORT [--listen HOST:PORT] [--threads N]",
        "Joins the front-end over mutual TLS (HELLO with its threads, its chain\n"
        "address and the GFLOP/s of a short calibration of the kernel), links into\n"
        "the chain where the front-end says (CHAIN_SET_NEXT), keeps a share of the\n"
        "work that reaches it in proportion to its weight against the chain behind\n"
        "it, inverts it on every lane and forwards the rest; results go straight\n"
        "to the front-end. SIGTERM drains (finishes what it accepted, BYE) and\n"
        "exits 0.",
        opts, sizeof opts / sizeof opts[0]};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc >= 0)
        return rc;
    rc = cli_edge("compute", edge, &o.edge_tls);
    return rc ? rc : cs_run(&o);
}
