/* convoy fileserver: options, then fs_run(). */
#include "cli.h"

#include "convoy/fileserver.h"

int cmd_fileserver(int argc, char **argv)
{
    struct fs_opts o = {.weight = 1, .capacity = 64, .retry_max_ms = 2000};
    const struct cli_opt opts[] = {
        CLI_OPT_STR("pki", &o.pki, "DIR", "cluster PKI folder (ca.crt, NAME.crt, NAME.key)", true),
        CLI_OPT_STR("name", &o.name, "NAME", "this server's certificate name", true),
        CLI_OPT_STR("root", &o.root, "DIR", "folder whose files are counted and announced", true),
        CLI_OPT_STR("balancer", &o.balancer, "HOST:PORT", "the balancer's control address", true),
        CLI_OPT_STR("http", &o.http, "HOST:PORT", "HTTP address announced (nothing listens yet)",
                    true),
        CLI_OPT_U32("weight", &o.weight, "N", "weight announced (default 1)", 1, 1000000),
        CLI_OPT_U32("capacity", &o.capacity, "N", "concurrent transfers announced (default 64)", 1,
                    1000000),
        CLI_OPT_U32("retry-max-ms", &o.retry_max_ms, "N",
                    "reconnect backoff ceiling (default 2000)", 100, 600000),
        CLI_OPT_LOG_LEVEL,
    };
    const struct cli_cmd cmd = {
        "fileserver", "--pki DIR --name NAME --root DIR --balancer HOST:PORT --http HOST:PORT",
        "Joins the balancer's cluster: counts the files and bytes under --root at\n"
        "start, dials --balancer with mutual TLS, says HELLO (announcing --http,\n"
        "--weight and --capacity) and sends heartbeats with its load; reconnects\n"
        "with backoff when the balancer is away. SIGTERM drains (DRAIN, then BYE)\n"
        "and exits 0. It does not serve files yet: nothing listens on --http.",
        opts, sizeof opts / sizeof opts[0]};
    int rc = cli_parse(&cmd, argc, argv);
    return rc >= 0 ? rc : fs_run(&o);
}
