/*
 * cli — the subcommands of build/convoy. Each takes the arguments after the
 * program name (argv[0] is the subcommand) and returns the exit status.
 */
#ifndef CONVOY_CLI_H
#define CONVOY_CLI_H

int cmd_balancer(int argc, char **argv);
int cmd_fileserver(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_pki(int argc, char **argv);
int cmd_demo(int argc, char **argv);

#endif
