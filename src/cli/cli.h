/*
 * cli — the subcommands of build/convoy. Each takes the arguments after the
 * program name (argv[0] is the subcommand) and returns the exit status:
 * 0 on success, 1 when the work failed, 2 on a usage error.
 */
#ifndef CONVOY_CLI_H
#define CONVOY_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int cmd_balancer(int argc, char **argv);
int cmd_fileserver(int argc, char **argv);
int cmd_compute(int argc, char **argv);
int cmd_frontend(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_pki(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_user(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_loadgen(int argc, char **argv);
int cmd_loadgen_submit(int argc, char **argv);
int cmd_submit(int argc, char **argv);
int cmd_jobs(int argc, char **argv);
int cmd_job(int argc, char **argv);
int cmd_result(int argc, char **argv);

/* A subcommand's options, declared once: cli_parse() reads them and prints
 * the help from them. */
enum cli_kind {
    CLI_STR,   /* dst: const char ** */
    CLI_U32,   /* dst: uint32_t *, in [min, max] */
    CLI_FLAG,  /* dst: bool *, no argument */
    CLI_LEVEL, /* --log-level: applied at once, dst unused */
};

struct cli_opt {
    const char *name; /* long option, without "--" */
    enum cli_kind kind;
    void *dst;
    const char *arg;  /* the argument's name in the help: "DIR" */
    const char *help; /* one line */
    bool required;
    uint32_t min, max;
    char short_name; /* also -X, or 0 */
};

/* Table rows. */
#define CLI_OPT_STR(name, dst, arg, help, required)                                                \
    {                                                                                              \
        name, CLI_STR, dst, arg, help, required, 0, 0, 0                                           \
    }
#define CLI_OPT_STR_SHORT(name, short_name, dst, arg, help)                                        \
    {                                                                                              \
        name, CLI_STR, dst, arg, help, false, 0, 0, short_name                                     \
    }
#define CLI_OPT_U32(name, dst, arg, help, min, max)                                                \
    {                                                                                              \
        name, CLI_U32, dst, arg, help, false, min, max, 0                                          \
    }
#define CLI_OPT_FLAG(name, dst, help)                                                              \
    {                                                                                              \
        name, CLI_FLAG, dst, NULL, help, false, 0, 0, 0                                            \
    }
#define CLI_OPT_LOG_LEVEL                                                                          \
    {                                                                                              \
        "log-level", CLI_LEVEL, NULL, "LEVEL", "debug, info, warn or error (default info)", false, \
            0, 0, 0                                                                                \
    }

struct cli_cmd {
    const char *name;     /* "balancer" */
    const char *synopsis; /* what follows "usage: convoy balancer" */
    const char *about;    /* a paragraph */
    const struct cli_opt *opts;
    size_t nopts;
};

/*
 * Parses argv against cmd's options (plus --help). Returns -1 when the
 * command should run, else the exit status to return at once: 0 after
 * --help, 2 after a usage error (explained on stderr).
 */
int cli_parse(const struct cli_cmd *cmd, int argc, char **argv);

/* As cli_parse(), for a command that takes operands after its options:
 * *args and *nargs get them, and fewer than min is a usage error. */
int cli_parse_args(const struct cli_cmd *cmd, int argc, char **argv, char ***args, int *nargs,
                   int min);

/* --edge auto|tls of the chain's daemons: the row, and the check of what
 * it read (NULL: auto) into *tls. 0, or 2 (a usage error, explained). */
#define CLI_OPT_EDGE(dst)                                                                          \
    CLI_OPT_STR("edge", dst, "auto|tls",                                                           \
                "auto: matrices to a neighbour on this host through shared memory (default); "     \
                "tls: every edge through TLS",                                                     \
                false)
int cli_edge(const char *cmd, const char *edge, bool *tls);

#endif
