/*
 * demo — the pieces of `convoy demo` its acts share: the workspace, the
 * processes it started, timed narration, waiting for the server table.
 * demo.c runs the membership act and the whole script; demo_files.c the
 * file-transfer act.
 */
#ifndef CONVOY_CLI_DEMO_H
#define CONVOY_CLI_DEMO_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#define DEMO_SERVERS 3
#define DEMO_COMPUTE 4      /* c1 … c3 from the start, c4 joining mid-job */
#define DEMO_STEP_MS 10000u /* the longest any step may take */
#define DEMO_USER    "demo"
#define DEMO_PASS    "demo-password" /* handed to the clients in CONVOY_PASSWORD */

struct demo {
    char dir[PATH_MAX - 64];
    char state[64];
    char control[32];
    char front[32]; /* the balancer's HTTPS front */
    char http[DEMO_SERVERS][32];
    const char *exe;
    pid_t bal;
    pid_t fs[DEMO_SERVERS];
    char fe_control[32], fe_http[32]; /* the front-end's */
    char fe_state[80];                /* state "-fe" */
    pid_t fe;
    pid_t cs[DEMO_COMPUTE];
    uint64_t t0;
};

/* A line of narration, stamped with the time since the demo began. */
void demo_say(const struct demo *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Starts argv (argv[0] = d->exe) with its output in DIR/NAME.log, or on the
 * demo's own terminal when name is NULL. pid, or -1 (said why). */
pid_t demo_spawn(struct demo *d, char **argv, const char *name);

/* (Re)starts file server i (fs1 … fs3). pid or -1. */
pid_t demo_start_server(struct demo *d, int i);

/* Waits until each of the n named servers is in state want. Returns the ms
 * waited, or -1 after DEMO_STEP_MS (said). */
long demo_wait_for(struct demo *d, const char *const *names, int n, const char *want);

/* Prints "$ convoy status …" and runs it, with the extra arguments (NULL or
 * NULL-terminated), e.g. "--transfers". */
void demo_show_status(struct demo *d, const char *const *extra);

/* The file-transfer act (demo_files.c): its data and user before anything
 * starts, then its steps once the three servers are up. 0 or -1 (said). */
int demo_files_prepare(struct demo *d, const char *root, const char *users);
int demo_files_act(struct demo *d);

/* The compute act (demo_chain.c): certificates and its user, then a job
 * on a chain that loses a server and gains one while it runs; stop ends
 * its processes. 0 or -1 (said). */
int demo_chain_prepare(struct demo *d, const char *pki, const char *users);
int demo_chain_act(struct demo *d);
void demo_chain_stop(struct demo *d);

#endif
