/* convoy frontend: options, then fe_run(). */
#include "cli.h"

#include "convoy/frontend.h"

int cmd_frontend(int argc, char **argv)
{
    struct fe_opts o = {
        .name = "frontend", .state = "frontend", .heartbeat_ms = 500, .dead_after_ms = 1500};
    const char *edge = NULL;
    const struct cli_opt opts[] = {
        CLI_OPT_STR("pki", &o.pki, "DIR", "cluster PKI folder (ca.crt, NAME.crt, NAME.key)", true),
        CLI_OPT_STR("name", &o.name, "NAME", "this front-end's certificate name (default frontend)",
                    false),
        CLI_OPT_STR("control", &o.control, "HOST:PORT", "where compute servers join", true),
        CLI_OPT_STR("http", &o.http, "HOST:PORT", "the jobs API (HTTPS with NAME's certificate)",
                    true),
        CLI_OPT_STR("users", &o.users, "FILE",
                    "users file (convoy user); without one nobody may submit", false),
        CLI_OPT_STR("state", &o.state, "NAME",
                    "shared-memory state name, for convoy status (default frontend)", false),
        CLI_OPT_STR("data", &o.data, "DIR", "spool folder: jobs, inputs and results", true),
        CLI_OPT_FLAG("insecure-http", &o.insecure_http,
                     "serve the API over plain HTTP (benchmarks, a TLS proxy in front)"),
        CLI_OPT_U32("heartbeat-ms", &o.heartbeat_ms, "N",
                    "heartbeat interval told to servers (default 500)", 50, 60000),
        CLI_OPT_U32("dead-after-ms", &o.dead_after_ms, "N",
                    "silence after which a server is down (default 1500)", 100, 600000),
        CLI_OPT_EDGE(&edge),
        CLI_OPT_LOG_LEVEL,
    };
    const struct cli_cmd cmd = {
        "frontend",
        "--pki DIR --control HOST:PORT --http HOST:PORT --data DIR [--users FILE] [--state NAME]",
        "Takes compute jobs over HTTPS (POST /v1/jobs, JSON or JSON + .npy; GET\n"
        "/v1/jobs[/ID[/result[.npy]]]; DELETE /v1/jobs/ID; GET /v1/servers) from\n"
        "users with role submit, spools them under --data, links the compute\n"
        "servers that join --control into a chain and streams the items to its\n"
        "head. Every item is counted once; what a server that went down held is\n"
        "sent again. A restarted front-end finds every job in its spool.",
        opts, sizeof opts / sizeof opts[0]};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc >= 0)
        return rc;
    rc = cli_edge("frontend", edge, &o.edge_tls);
    return rc ? rc : fe_run(&o);
}
