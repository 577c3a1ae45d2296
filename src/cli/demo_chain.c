/*
 * The demo's compute act: a front-end and three compute servers, a job of
 * 2,000 generated 128×128 matrices submitted with convoy submit, one
 * server killed and another joining while it runs, then every inverse
 * checked by its residual against the input regenerated here from the
 * job's seed, and the per-server counts and re-delegated items shown.
 * Progress comes from the front-end's job table in shared memory, as
 * `convoy status` reads it.
 */
#include "cli.h"
#include "demo.h"

#include "convoy/gj.h"
#include "convoy/jgen.h"
#include "convoy/jobtab.h"
#include "convoy/npy.h"
#include "convoy/pki.h"
#include "convoy/proc.h"
#include "convoy/ring.h"
#include "convoy/shm.h"
#include "convoy/users.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define JOB_USER  "demo-jobs"
#define JOB_ITEMS 2000
#define JOB_N     128
#define JOB_SEED  2026
#define JOB_KIND  "uniform"
#define JOB_MS    120000u /* the longest the job may take */

int demo_chain_prepare(struct demo *d, const char *pki, const char *users)
{
    char err[512], name[8];
    const char *ip[] = {"127.0.0.1"};
    if (pki_issue(pki, "frontend", PKI_ROLE_FRONTEND, ip, 1, NULL, 0, err, sizeof err) < 0)
        goto fail;
    for (int i = 0; i < DEMO_COMPUTE; i++) {
        snprintf(name, sizeof name, "c%d", i + 1);
        if (pki_issue(pki, name, PKI_ROLE_COMPUTE, ip, 1, NULL, 0, err, sizeof err) < 0)
            goto fail;
    }
    if (users_file_add(users, JOB_USER, USERS_SUBMIT, DEMO_PASS, strlen(DEMO_PASS), err,
                       sizeof err) < 0)
        goto fail;
    int p1 = proc_free_port(), p2 = proc_free_port();
    if (p1 < 0 || p2 < 0) {
        snprintf(err, sizeof err, "no free port: %s", strerror(-(p1 < 0 ? p1 : p2)));
        goto fail;
    }
    snprintf(d->fe_control, sizeof d->fe_control, "127.0.0.1:%d", p1);
    snprintf(d->fe_http, sizeof d->fe_http, "127.0.0.1:%d", p2);
    snprintf(d->fe_state, sizeof d->fe_state, "%s-fe", d->state);
    return 0;
fail:
    fprintf(stderr, "convoy demo: %s\n", err);
    return -1;
}

static pid_t start_frontend(struct demo *d)
{
    char pki[PATH_MAX], users[PATH_MAX], data[PATH_MAX];
    snprintf(pki, sizeof pki, "%s/pki", d->dir);
    snprintf(users, sizeof users, "%s/users", d->dir);
    snprintf(data, sizeof data, "%s/spool", d->dir);
    char *argv[] = {(char *)d->exe,
                    "frontend",
                    "--pki",
                    pki,
                    "--control",
                    d->fe_control,
                    "--http",
                    d->fe_http,
                    "--users",
                    users,
                    "--data",
                    data,
                    "--state",
                    d->fe_state,
                    "--heartbeat-ms",
                    "200",
                    "--dead-after-ms",
                    "1000",
                    NULL};
    return demo_spawn(d, argv, "frontend");
}

static pid_t start_compute(struct demo *d, int i)
{
    char pki[PATH_MAX], name[8];
    snprintf(pki, sizeof pki, "%s/pki", d->dir);
    snprintf(name, sizeof name, "c%d", i + 1);
    char *argv[] = {(char *)d->exe, "compute",     "--pki",     pki, "--name", name,
                    "--frontend",   d->fe_control, "--threads", "1", NULL};
    return demo_spawn(d, argv, name);
}

/* The chain as the front-end publishes it: how many, names into out. */
static size_t chain_now(struct demo *d, char *out, size_t len)
{
    struct jobtab *jt;
    struct jobtab_server s[8];
    size_t n = 0, used = 0;
    out[0] = '\0';
    if (jobtab_attach(d->fe_state, &jt) == 0) {
        n = jobtab_chain(jt, s, 8);
        jobtab_close(jt);
    }
    for (size_t i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%s", i ? " -> " : "", s[i].name);
    return n;
}

/* Waits until the chain has n servers. ms waited, or -1 (said). */
static long wait_chain(struct demo *d, size_t n, char *names, size_t len)
{
    uint64_t start = ring_now_ms();
    struct timespec step = {0, 20 * 1000000};
    while (ring_now_ms() - start < DEMO_STEP_MS) {
        if (chain_now(d, names, len) == n)
            return (long)(ring_now_ms() - start);
        nanosleep(&step, NULL);
    }
    demo_say(d, "FAILED: the chain did not reach %zu servers (it is: %s)", n, names);
    return -1;
}

/* The first job's row (items done so far), or -1. */
static long job_done(struct demo *d, struct jobtab_row *row)
{
    struct jobtab *jt;
    if (jobtab_attach(d->fe_state, &jt) < 0)
        return -1;
    long done = -1;
    for (uint32_t s = 0; s < jobtab_capacity(jt) && done < 0; s++)
        if (jobtab_get(jt, s, row) == 1)
            done = (long)row->done;
    jobtab_close(jt);
    return done;
}

/* Waits until the job has done at least want items (or ended). */
static int wait_job(struct demo *d, long want)
{
    struct jobtab_row row;
    uint64_t start = ring_now_ms();
    struct timespec step = {0, 2 * 1000000};
    while (ring_now_ms() - start < JOB_MS) {
        long done = job_done(d, &row);
        if (done >= want || (done >= 0 && row.state == JOBTAB_DONE))
            return 0;
        nanosleep(&step, NULL);
    }
    demo_say(d, "FAILED: the job did not reach %ld items", want);
    return -1;
}

static int step_chain_up(struct demo *d)
{
    char names[256];
    if ((d->fe = start_frontend(d)) < 0)
        return -1;
    for (int i = 0; i < 3; i++)
        if ((d->cs[i] = start_compute(d, i)) < 0)
            return -1;
    demo_say(d,
             "started a front-end (API https://%s) and compute servers c1, c2, c3; each "
             "calibrates its kernel, joins over mutual TLS and is linked into the chain",
             d->fe_http);
    long ms = wait_chain(d, 3, names, sizeof names);
    if (ms < 0)
        return -1;
    demo_say(d, "the chain is up after %ld ms: front-end -> %s", ms, names);
    return 0;
}

/* Writes the job file; its path into path. */
static int write_job(struct demo *d, char *path, size_t len)
{
    snprintf(path, len, "%s/job.json", d->dir);
    FILE *f = fopen(path, "w");
    int rc = f ? 0 : -1;
    if (f && fprintf(f,
                     "{\"op\":\"invert\",\"residuals\":true,\"generate\":{\"count\":%d,\"n\":%d,"
                     "\"seed\":%d,\"kind\":\"%s\"}}\n",
                     JOB_ITEMS, JOB_N, JOB_SEED, JOB_KIND) < 0)
        rc = -1;
    if (f && fclose(f) != 0)
        rc = -1;
    return rc;
}

static pid_t start_submit(struct demo *d, const char *job, const char *out)
{
    char url[64], ca[PATH_MAX];
    snprintf(url, sizeof url, "https://%s", d->fe_http);
    snprintf(ca, sizeof ca, "%s/pki/ca.crt", d->dir);
    char *argv[] = {(char *)d->exe, "submit", "--frontend", url,  "--cacert",  ca,  "--user",
                    JOB_USER,       "--json", (char *)job,  "-o", (char *)out, NULL};
    return demo_spawn(d, argv, "submit");
}

/* Every inverse in out against its input regenerated from the seed: the
 * items whose residual is below 30 (-1 when out cannot be read). */
static long check_residuals(const char *out, double *worst)
{
    char err[256];
    struct npy_info info;
    int fd = open(out, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || npy_read_fd(fd, JOB_ITEMS, JOB_N, &info, err, sizeof err) < 0 ||
        info.count != JOB_ITEMS) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t nn = (size_t)JOB_N * JOB_N;
    double *a = malloc(sizeof(double) * nn), *x = malloc(sizeof(double) * nn);
    long good = 0;
    *worst = 0;
    for (uint64_t i = 0; a && x && i < JOB_ITEMS; i++) {
        off_t off = (off_t)(info.data_off + i * nn * sizeof(double));
        if (pread(fd, x, nn * sizeof(double), off) != (ssize_t)(nn * sizeof(double)) ||
            jgen_item(JOB_KIND, JOB_SEED, i, JOB_N, a) < 0)
            break;
        double r = gj_residual(a, x, JOB_N);
        good += r >= 0 && r < 30;
        if (r > *worst)
            *worst = r;
    }
    free(a);
    free(x);
    close(fd);
    return good;
}

/* The JSON summary convoy submit printed into its log. */
static cJSON *submit_summary(struct demo *d)
{
    char path[PATH_MAX], line[4096];
    snprintf(path, sizeof path, "%s/submit.log", d->dir);
    FILE *f = fopen(path, "r");
    cJSON *doc = NULL;
    while (f && fgets(line, sizeof line, f))
        if (line[0] == '{') {
            cJSON_Delete(doc);
            doc = cJSON_Parse(line);
        }
    if (f)
        fclose(f);
    return doc;
}

static void show_summary(struct demo *d, const cJSON *sum)
{
    const cJSON *s;
    demo_say(d, "the job is done: %d items, %d ok, %d re-delegated after c2 died; per server:",
             (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(sum, "items")),
             (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(sum, "ok")),
             (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(sum, "redelegated")));
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(sum, "servers"))
        printf("           %-4s %5.0f items\n", s->string, s->valuedouble);
}

/* The job with c2 killed at a quarter and c4 joining at half. */
static int step_job(struct demo *d)
{
    char job[PATH_MAX], out[PATH_MAX], names[256];
    snprintf(out, sizeof out, "%s/inverses.npy", d->dir);
    if (write_job(d, job, sizeof job) < 0)
        return -1;
    pid_t sub = start_submit(d, job, out);
    if (sub < 0)
        return -1;
    demo_say(d,
             "$ convoy submit job.json -o inverses.npy: %d generated %dx%d matrices "
             "(made on the servers from the seed: no input crosses the network)",
             JOB_ITEMS, JOB_N, JOB_N);
    if (wait_job(d, JOB_ITEMS / 4) < 0)
        return -1;
    kill(d->cs[1], SIGKILL);
    proc_wait(d->cs[1], 5000, &(int){0});
    d->cs[1] = 0;
    demo_say(d, "a quarter done: killed c2 with SIGKILL; what it held goes back to the chain");
    if (wait_chain(d, 2, names, sizeof names) < 0)
        return -1;
    demo_say(d, "the chain is relinked around it: front-end -> %s", names);
    if ((d->cs[3] = start_compute(d, 3)) < 0 || wait_chain(d, 3, names, sizeof names) < 0)
        return -1;
    demo_say(d, "c4 joined mid-job at the tail: front-end -> %s", names);
    int status = -1;
    if (proc_wait(sub, JOB_MS, &status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        demo_say(d, "FAILED: convoy submit exited with status %d",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return -1;
    }
    cJSON *sum = submit_summary(d);
    if (sum == NULL) {
        demo_say(d, "FAILED: convoy submit printed no summary");
        return -1;
    }
    show_summary(d, sum);
    cJSON_Delete(sum);
    double worst;
    long good = check_residuals(out, &worst);
    if (good != JOB_ITEMS) {
        demo_say(d, "FAILED: %ld of %d inverses pass their residual", good, JOB_ITEMS);
        return -1;
    }
    demo_say(d,
             "checked all %d inverses against their regenerated inputs: every residual "
             "below 30 (worst %.2f)",
             JOB_ITEMS, worst);
    return 0;
}

int demo_chain_act(struct demo *d)
{
    if (step_chain_up(d) < 0 || step_job(d) < 0)
        return -1;
    char *argv[] = {"status", "--state", d->fe_state, NULL};
    printf("\n  $ convoy status --state %s\n", d->fe_state);
    fflush(stdout);
    cmd_status(3, argv);
    putchar('\n');
    return 0;
}

void demo_chain_stop(struct demo *d)
{
    for (int i = 0; i < DEMO_COMPUTE; i++)
        if (d->cs[i] > 0)
            proc_stop(d->cs[i], 5000);
    if (d->fe > 0)
        proc_stop(d->fe, 5000);
    shm_remove(d->fe_state);
}
