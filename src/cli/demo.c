/*
 * convoy demo: a balancer and three file servers on 127.0.0.1, put through
 * what users meet — a download whose server is killed mid-way (the act of
 * demo_files.c), a burst of downloads, a server killed, one stopped and
 * restarted, the balancer itself killed and restarted — then the compute
 * act (demo_chain.c) — with each step
 * reported in plain words and timed. It checks what it
 * shows: a step that does not happen in time fails the demo (exit 1) and
 * keeps the workspace with every process's log.
 */
#include "cli.h"
#include "demo.h"

#include "convoy/balancer.h"
#include "convoy/pki.h"
#include "convoy/proc.h"
#include "convoy/ring.h"
#include "convoy/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HEARTBEAT  "200"
#define DEAD_AFTER "1000"

#define SERVER_NAME_LEN sizeof "fs-2147483648" /* "fs%d" of any int */

void demo_say(const struct demo *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("[%6.2fs] ", (double)(ring_now_ms() - d->t0) / 1000.0);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    va_end(ap);
}

/* Certificates for everyone, one folder of files every server serves
 * (identical servers), and the users file. */
static int demo_prepare(struct demo *d)
{
    char path[PATH_MAX], root[PATH_MAX], users[PATH_MAX], err[512];
    const char *ip[] = {"127.0.0.1"};
    snprintf(path, sizeof path, "%s/pki", d->dir);
    if (pki_init(path, err, sizeof err) < 0 ||
        pki_issue(path, "balancer", PKI_ROLE_BALANCER, ip, 1, NULL, 0, err, sizeof err) < 0)
        goto fail;
    for (int i = 0; i < DEMO_SERVERS; i++) {
        char name[SERVER_NAME_LEN];
        snprintf(name, sizeof name, "fs%d", i + 1);
        if (pki_issue(path, name, PKI_ROLE_FILESERVER, ip, 1, NULL, 0, err, sizeof err) < 0)
            goto fail;
    }
    snprintf(root, sizeof root, "%s/data", d->dir);
    snprintf(users, sizeof users, "%s/users", d->dir);
    return demo_files_prepare(d, root, users) < 0 || demo_chain_prepare(d, path, users) < 0 ? -1
                                                                                            : 0;
fail:
    fprintf(stderr, "convoy demo: %s\n", err);
    return -1;
}

pid_t demo_spawn(struct demo *d, char **argv, const char *name)
{
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/%s.log", d->dir, name ? name : "");
    pid_t pid = proc_spawn(argv, name ? log : NULL);
    if (pid < 0)
        fprintf(stderr, "convoy demo: start %s: %s\n", name ? name : argv[1], strerror(-pid));
    return pid;
}

static pid_t start_balancer(struct demo *d)
{
    char pki[PATH_MAX], users[PATH_MAX];
    snprintf(pki, sizeof pki, "%s/pki", d->dir);
    snprintf(users, sizeof users, "%s/users", d->dir);
    char *argv[] = {(char *)d->exe,
                    "balancer",
                    "--pki",
                    pki,
                    "--name",
                    "balancer",
                    "--control",
                    d->control,
                    "--state",
                    d->state,
                    "--heartbeat-ms",
                    HEARTBEAT,
                    "--dead-after-ms",
                    DEAD_AFTER,
                    "--http",
                    d->front,
                    "--users",
                    users,
                    NULL};
    return demo_spawn(d, argv, "balancer");
}

pid_t demo_start_server(struct demo *d, int i)
{
    char pki[PATH_MAX], root[PATH_MAX], name[SERVER_NAME_LEN];
    snprintf(pki, sizeof pki, "%s/pki", d->dir);
    snprintf(name, sizeof name, "fs%d", i + 1);
    snprintf(root, sizeof root, "%s/data", d->dir);
    char *argv[] = {(char *)d->exe,   "fileserver", "--pki",      pki,        "--name", name,
                    "--root",         root,         "--balancer", d->control, "--http", d->http[i],
                    "--retry-max-ms", "500",        NULL};
    return demo_spawn(d, argv, name);
}

/* The state of server `name` ("gone" when not in the table). */
static const char *server_state(const struct bal_shared *s, const char *name)
{
    const struct reg_server *r = reg_find(&s->reg, name);
    return r ? reg_state_str(r->state) : "gone";
}

/* Waits until every named server is in `want`. Returns ms waited or -1. */
long demo_wait_for(struct demo *d, const char *const *names, int n, const char *want)
{
    static struct bal_shared s; /* large: not on the stack */
    uint64_t start = ring_now_ms();
    struct timespec step = {0, 20 * 1000000};
    while (ring_now_ms() - start < DEMO_STEP_MS) {
        int ok = bal_read_state(d->state, &s) == 0;
        for (int i = 0; ok && i < n; i++)
            ok = strcmp(server_state(&s, names[i]), want) == 0;
        if (ok)
            return (long)(ring_now_ms() - start);
        nanosleep(&step, NULL);
    }
    demo_say(d, "FAILED: %s did not become %s within %.0fs", names[0], want, DEMO_STEP_MS / 1000.0);
    return -1;
}

void demo_show_status(struct demo *d, const char *const *extra)
{
    char *argv[8] = {"status", "--state", d->state};
    int argc = 3;
    printf("\n  $ convoy status --state %s", d->state);
    for (size_t i = 0; extra && extra[i] && argc < 7; i++) {
        argv[argc++] = (char *)extra[i];
        printf(" %s", extra[i]);
    }
    argv[argc] = NULL;
    printf("\n");
    fflush(stdout);
    cmd_status(argc, argv);
    putchar('\n');
}

static const char *const all[] = {"fs1", "fs2", "fs3"};

static int step_start(struct demo *d)
{
    if ((d->bal = start_balancer(d)) < 0)
        return -1;
    demo_say(d, "started the balancer (pid %d), control address %s (mutual TLS)", d->bal,
             d->control);
    for (int i = 0; i < DEMO_SERVERS; i++)
        if ((d->fs[i] = demo_start_server(d, i)) < 0)
            return -1;
    demo_say(d, "started fs1, fs2, fs3 (pids %d %d %d); each dials the balancer and says HELLO",
             d->fs[0], d->fs[1], d->fs[2]);
    long ms = demo_wait_for(d, all, 3, "up");
    if (ms < 0)
        return -1;
    demo_say(d, "all three servers are up, %ld ms after starting", ms);
    demo_show_status(d, NULL);
    return 0;
}

static int step_kill_server(struct demo *d)
{
    demo_say(d, "killing fs2 with SIGKILL: no goodbye, its connection just drops");
    kill(d->fs[1], SIGKILL);
    proc_wait(d->fs[1], 5000, &(int){0});
    d->fs[1] = 0;
    long ms = demo_wait_for(d, all + 1, 1, "down");
    if (ms < 0)
        return -1;
    demo_say(d, "fs2 is marked down after %ld ms; new transfers will avoid it", ms);
    return 0;
}

static int step_stop_and_restart_server(struct demo *d)
{
    demo_say(d, "stopping fs3 with SIGTERM: it sends DRAIN, waits for its transfers, sends BYE");
    kill(d->fs[2], SIGTERM);
    long ms = demo_wait_for(d, all + 2, 1, "gone");
    if (ms < 0)
        return -1;
    int status = -1;
    proc_wait(d->fs[2], 5000, &status);
    d->fs[2] = 0;
    demo_say(d, "fs3 left the table after %ld ms and exited with status %d", ms,
             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;
    demo_show_status(d, NULL);
    if ((d->fs[2] = demo_start_server(d, 2)) < 0)
        return -1;
    demo_say(d, "restarted fs3 (pid %d)", d->fs[2]);
    if ((ms = demo_wait_for(d, all + 2, 1, "up")) < 0)
        return -1;
    demo_say(d, "fs3 rejoined and is up after %ld ms", ms);
    return 0;
}

static int step_restart_balancer(struct demo *d)
{
    static const char *const live[] = {"fs1", "fs3"};
    demo_say(d, "killing the balancer with SIGKILL; its table stays in shared memory");
    kill(d->bal, SIGKILL);
    proc_wait(d->bal, 5000, &(int){0});
    if ((d->bal = start_balancer(d)) < 0)
        return -1;
    demo_say(d, "restarted the balancer (pid %d); the servers reconnect by themselves", d->bal);
    long ms = demo_wait_for(d, live, 2, "up");
    if (ms < 0)
        return -1;
    demo_say(d, "fs1 and fs3 are up again after %ld ms; fs2, still dead, is kept as down", ms);
    demo_show_status(d, NULL);
    return 0;
}

static int demo_script(struct demo *d)
{
    if (step_start(d) < 0 || demo_files_act(d) < 0 || step_kill_server(d) < 0 ||
        step_stop_and_restart_server(d) < 0 || step_restart_balancer(d) < 0 ||
        demo_chain_act(d) < 0)
        return -1;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

static void demo_teardown(struct demo *d, bool keep)
{
    for (int i = 0; i < DEMO_SERVERS; i++)
        if (d->fs[i] > 0)
            proc_stop(d->fs[i], 5000);
    if (d->bal > 0)
        proc_stop(d->bal, 5000);
    shm_remove(d->state);
    demo_chain_stop(d);
    if (keep) {
        demo_say(d, "workspace kept in %s (logs: *.log)", d->dir);
        return;
    }
    nftw(d->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    demo_say(d, "stopped every process and removed the workspace");
}

static int demo_ports(struct demo *d)
{
    int p = proc_free_port();
    if (p < 0)
        return p;
    snprintf(d->control, sizeof d->control, "127.0.0.1:%d", p);
    if ((p = proc_free_port()) < 0)
        return p;
    snprintf(d->front, sizeof d->front, "127.0.0.1:%d", p);
    for (int i = 0; i < DEMO_SERVERS; i++) {
        if ((p = proc_free_port()) < 0)
            return p;
        snprintf(d->http[i], sizeof d->http[i], "127.0.0.1:%d", p);
    }
    return 0;
}

int cmd_demo(int argc, char **argv)
{
    bool keep = false;
    const struct cli_opt opts[] = {
        CLI_OPT_FLAG("keep", &keep, "keep the workspace (PKI, data, logs) afterwards"),
    };
    const struct cli_cmd cmd = {
        "demo", "[--keep]",
        "Starts a balancer and three file servers on 127.0.0.1 in a temporary\n"
        "workspace, shows the server table, downloads a 256 MiB file with convoy get\n"
        "while the server sending it is killed (it resumes on another, the digest\n"
        "is checked, the transfer's two legs shown), makes a burst of 300 downloads\n"
        "with convoy loadgen, kills one server (SIGKILL), stops one (SIGTERM) and\n"
        "restarts it, kills and restarts the balancer; then a front-end and three\n"
        "compute servers invert a job of 2,000 128x128 matrices while one server is\n"
        "killed and another joins, and every inverse is checked by its residual;\n"
        "then it stops everything and removes the workspace.",
        opts, sizeof opts / sizeof opts[0]};
    int parsed = cli_parse(&cmd, argc, argv);
    if (parsed >= 0)
        return parsed;
    struct demo d = {.t0 = ring_now_ms(), .exe = proc_self_exe()};
    snprintf(d.dir, sizeof d.dir, "%s/convoy-demo-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    snprintf(d.state, sizeof d.state, "demo-%d", getpid());
    if (d.exe == NULL || mkdtemp(d.dir) == NULL || demo_ports(&d) < 0) {
        fprintf(stderr, "convoy demo: workspace: %s\n", strerror(errno));
        return 1;
    }
    printf("convoy demo: a balancer and %d file servers on 127.0.0.1\n"
           "workspace %s (certificates, data, logs)\n\n",
           DEMO_SERVERS, d.dir);
    if (demo_prepare(&d) < 0) {
        demo_teardown(&d, true);
        return 1;
    }
    demo_say(&d, "created a cluster CA and certificates for balancer, fs1, fs2, fs3");
    int rc = demo_script(&d);
    if (rc < 0)
        demo_say(&d, "the demo FAILED; the logs say why");
    demo_teardown(&d, keep || rc < 0);
    if (rc == 0)
        demo_say(&d, "demo complete: a download survived its server's death, a burst spread "
                     "over the servers, killed server marked down, stopped server drained "
                     "and left, restarted server rejoined, restarted balancer recovered its "
                     "servers, and a compute job finished whole through a server's death "
                     "and another's arrival");
    return rc < 0 ? 1 : 0;
}
