/*
 * convoy — one binary, one subcommand per process role or tool.
 */
#include "cli.h"

#ifndef CONVOY_VERSION
#error "CONVOY_VERSION is defined by the Makefile (git describe)"
#endif

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"balancer", cmd_balancer, "track file servers: who is up, and their load"},
    {"fileserver", cmd_fileserver, "join a balancer and report a folder and its load"},
    {"status", cmd_status, "show the balancer's server table on this host"},
    {"pki", cmd_pki, "create the cluster CA and issue certificates"},
    {"user", cmd_user, "add users, their passwords and API tokens to a users file"},
    {"get", cmd_get, "download a file through the balancer, resuming on failures"},
    {"loadgen", cmd_loadgen, "many downloads at once through the balancer, with figures"},
    {"frontend", cmd_frontend, "take compute jobs and run them on a chain of servers"},
    {"compute", cmd_compute, "join a front-end's chain and invert matrices"},
    {"submit", cmd_submit, "submit a compute job to the front-end and get its results"},
    {"jobs", cmd_jobs, "the front-end's jobs"},
    {"job", cmd_job, "one job's state and progress"},
    {"result", cmd_result, "one job's results, as .npy or JSON"},
    {"demo", cmd_demo, "run a balancer and file servers on loopback through failures"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: convoy <command> [options]   (convoy <command> --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-11s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "  %-11s %s\n", "version", "print convoy's version (also: convoy --version)");
}

static bool is_any(const char *arg, const char *const *names)
{
    for (; *names != NULL; names++)
        if (strcmp(arg, *names) == 0)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (is_any(argv[1], (const char *const[]){"--help", "-h", "help", NULL})) {
        usage(stdout);
        return 0;
    }
    if (is_any(argv[1], (const char *const[]){"--version", "version", NULL})) {
        printf("convoy %s\n", CONVOY_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "convoy: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
