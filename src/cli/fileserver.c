/* convoy fileserver: options, then fs_run(). */
#include "cli.h"

#include "convoy/fileserver.h"

int cmd_fileserver(int argc, char **argv)
{
    struct fs_opts o = {
        .balancer_name = "balancer", .weight = 1, .capacity = 64, .retry_max_ms = 2000};
    const struct cli_opt opts[] = {
        CLI_OPT_STR("pki", &o.pki, "DIR", "cluster PKI folder (ca.crt, NAME.crt, NAME.key)", true),
        CLI_OPT_STR("name", &o.name, "NAME", "this server's certificate name", true),
        CLI_OPT_STR("root", &o.root, "DIR", "folder whose files are served under /f/", true),
        CLI_OPT_STR("balancer", &o.balancer, "HOST:PORT", "the balancer's control address", true),
        CLI_OPT_STR("balancer-name", &o.balancer_name, "NAME",
                    "the certificate name the balancer must hold (default balancer)", false),
        CLI_OPT_STR("http", &o.http, "HOST:PORT",
                    "where files are served (HTTPS with NAME's certificate), announced in HELLO",
                    true),
        CLI_OPT_FLAG("insecure-http", &o.insecure_http,
                     "serve plain HTTP instead of HTTPS (benchmarks, a TLS proxy in front)"),
        CLI_OPT_STR("state-dir", &o.state_dir, "DIR",
                    "folder for the digest cache (default none: every file is hashed at start)",
                    false),
        CLI_OPT_U32("weight", &o.weight, "N", "weight announced (default 1)", 1, 1000000),
        CLI_OPT_U32("capacity", &o.capacity, "N", "concurrent transfers announced (default 64)", 1,
                    1000000),
        CLI_OPT_U32("retry-max-ms", &o.retry_max_ms, "N",
                    "reconnect backoff ceiling (default 2000)", 100, 600000),
        CLI_OPT_LOG_LEVEL,
    };
    const struct cli_cmd cmd = {
        "fileserver",
        "--pki DIR --name NAME --root DIR --balancer HOST:PORT --http HOST:PORT [--insecure-http] "
        "[--state-dir DIR]",
        "Serves the regular files under --root as GET and HEAD /f/<path>?t=<ticket>\n"
        "on --http (TLS 1.3 with NAME's certificate, or plain HTTP with\n"
        "--insecure-http), with Range, ETag, Last-Modified and the file's SHA-256\n"
        "in Repr-Digest. A request needs a ticket the balancer signed for this\n"
        "server, this path and this method (403 with the reason otherwise); paths\n"
        "that leave the root, symlinks out of it and anything but a regular file\n"
        "are 404. Every file is hashed in the background at start (its digest\n"
        "cached in --state-dir across restarts); a request for a file not yet\n"
        "hashed waits for it. Joins the balancer over mutual TLS (HELLO, heartbeats\n"
        "with the transfers in progress), receives the ticket keys in WELCOME, and\n"
        "reports every transfer's start, progress and end, keeping the reports\n"
        "while the balancer is away. SIGTERM drains (DRAIN, waits for the\n"
        "transfers in progress, BYE) and exits 0.",
        opts, sizeof opts / sizeof opts[0]};
    int rc = cli_parse(&cmd, argc, argv);
    return rc >= 0 ? rc : fs_run(&o);
}
