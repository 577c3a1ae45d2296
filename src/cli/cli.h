/*
 * cli — the subcommands of build/convoy. Each takes the arguments after the
 * program name (argv[0] is the subcommand) and returns the exit status.
 */
#ifndef CONVOY_CLI_H
#define CONVOY_CLI_H

#include <stdint.h>

int cmd_balancer(int argc, char **argv);
int cmd_fileserver(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_pki(int argc, char **argv);
int cmd_demo(int argc, char **argv);

/* Shared argument helpers; each prints "convoy CMD: …" on error. */

/* Parses val as an integer in [min, max] for option opt. 0 or -1. */
int cli_u32(const char *cmd, const char *opt, const char *val, uint32_t min, uint32_t max,
            uint32_t *out);

/* Applies --log-level VAL. 0 or -1. */
int cli_log_level(const char *cmd, const char *val);

/* Reports a missing required option. Returns -1. */
int cli_missing(const char *cmd, const char *opt);

#endif
