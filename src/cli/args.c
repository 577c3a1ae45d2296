/*
 * Argument parsing shared by the subcommands: one getopt_long loop driven by
 * each command's table of struct cli_opt, and help text printed from the
 * same table, so an option and its documentation cannot drift apart.
 */
#include "cli.h"

#include "convoy/log.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLI_MAX_OPTS 32

static void cli_usage(const struct cli_cmd *cmd, FILE *out)
{
    fprintf(out, "usage: convoy %s %s\n\n%s\n\n", cmd->name, cmd->synopsis, cmd->about);
    for (size_t i = 0; i < cmd->nopts; i++) {
        const struct cli_opt *o = &cmd->opts[i];
        char left[64];
        char shrt[8] = "";
        if (o->short_name != 0)
            snprintf(shrt, sizeof shrt, "-%c, ", o->short_name);
        snprintf(left, sizeof left, "%s--%s%s%s", shrt, o->name, o->arg ? " " : "",
                 o->arg ? o->arg : "");
        fprintf(out, "  %-24s %s%s\n", left, o->help, o->required ? " (required)" : "");
    }
    fprintf(out, "  %-24s %s\n", "--help", "this text");
}

static int cli_u32(const struct cli_cmd *cmd, const struct cli_opt *o, const char *val)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(val, &end, 10);
    if (*val == '\0' || *val == '-' || *end != '\0' || errno != 0 || v < o->min || v > o->max) {
        fprintf(stderr, "convoy %s: --%s takes a whole number from %u to %u, not '%s'\n", cmd->name,
                o->name, o->min, o->max, val);
        return -1;
    }
    *(uint32_t *)o->dst = (uint32_t)v;
    return 0;
}

static int cli_apply(const struct cli_cmd *cmd, const struct cli_opt *o, const char *val)
{
    enum log_level level;
    switch (o->kind) {
    case CLI_STR:
        *(const char **)o->dst = val;
        return 0;
    case CLI_U32:
        return cli_u32(cmd, o, val);
    case CLI_FLAG:
        *(bool *)o->dst = true;
        return 0;
    case CLI_LEVEL:
        if (log_level_parse(val, &level) < 0) {
            fprintf(stderr, "convoy %s: --%s takes debug, info, warn or error, not '%s'\n",
                    cmd->name, o->name, val);
            return -1;
        }
        log_set_level(level);
        return 0;
    }
    return -1;
}

/* Every required option was given: a CLI_STR left NULL was not. */
static int cli_check_required(const struct cli_cmd *cmd)
{
    for (size_t i = 0; i < cmd->nopts; i++) {
        const struct cli_opt *o = &cmd->opts[i];
        if (o->required && o->kind == CLI_STR && *(const char **)o->dst == NULL) {
            fprintf(stderr, "convoy %s: --%s is required (see convoy %s --help)\n", cmd->name,
                    o->name, cmd->name);
            return -1;
        }
    }
    return 0;
}

/* Reads the options; returns -1 to go on (optind at the first operand),
 * else the exit status. */
static int cli_options(const struct cli_cmd *cmd, int argc, char **argv)
{
    struct option longopts[CLI_MAX_OPTS + 2] = {{0}};
    size_t n = cmd->nopts < CLI_MAX_OPTS ? cmd->nopts : CLI_MAX_OPTS;
    for (size_t i = 0; i < n; i++)
        longopts[i] = (struct option){
            cmd->opts[i].name, cmd->opts[i].kind == CLI_FLAG ? no_argument : required_argument,
            NULL, 256 + (int)i};
    longopts[n] = (struct option){"help", no_argument, NULL, 'h'};
    char shorts[2 * CLI_MAX_OPTS + 2] = "h";
    for (size_t i = 0, k = 1; i < n; i++) {
        if (cmd->opts[i].short_name == 0)
            continue;
        shorts[k++] = cmd->opts[i].short_name;
        if (cmd->opts[i].kind != CLI_FLAG)
            shorts[k++] = ':';
    }
    optind = 0; /* afresh: the demo parses more than one command line */
    opterr = 0; /* our own messages, prefixed like every other */
    int ch;
    while ((ch = getopt_long(argc, argv, shorts, longopts, NULL)) != -1) {
        if (ch == 'h') {
            cli_usage(cmd, stdout);
            return 0;
        }
        for (size_t i = 0; ch != '?' && ch < 256 && i < n; i++)
            if (cmd->opts[i].short_name == ch)
                ch = 256 + (int)i;
        if (ch < 256 || cli_apply(cmd, &cmd->opts[ch - 256], optarg) < 0) {
            if (ch < 256)
                fprintf(stderr, "convoy %s: bad option '%s' (see convoy %s --help)\n", cmd->name,
                        argv[optind - 1], cmd->name);
            return 2;
        }
    }
    return cli_check_required(cmd) < 0 ? 2 : -1;
}

int cli_parse(const struct cli_cmd *cmd, int argc, char **argv)
{
    int rc = cli_options(cmd, argc, argv);
    if (rc == -1 && optind != argc) {
        fprintf(stderr, "convoy %s: unexpected argument '%s'\n", cmd->name, argv[optind]);
        return 2;
    }
    return rc;
}

int cli_parse_args(const struct cli_cmd *cmd, int argc, char **argv, char ***args, int *nargs,
                   int min)
{
    int rc = cli_options(cmd, argc, argv);
    if (rc != -1)
        return rc;
    *args = argv + optind;
    *nargs = argc - optind;
    if (*nargs < min) {
        fprintf(stderr, "convoy %s: expected %s (see convoy %s --help)\n", cmd->name, cmd->synopsis,
                cmd->name);
        return 2;
    }
    return -1;
}

int cli_edge(const char *cmd, const char *edge, bool *tls)
{
    *tls = edge != NULL && strcmp(edge, "tls") == 0;
    if (edge == NULL || *tls || strcmp(edge, "auto") == 0)
        return 0;
    fprintf(stderr, "convoy %s: --edge: auto or tls, not '%s'\n", cmd, edge);
    return 2;
}
