/*
 * bench/catalog — how long 3 file servers × 100,000 files take to join a
 * balancer and be searchable, and what the index costs.
 *
 * join_ms: a real `convoy balancer` (2 I/O threads) and three real `convoy
 * fileserver`s on one root of FILES files (100 folders, sparse files of
 * varied sizes), timed from spawning the file servers until the balancer
 * has logged every server's full catalog applied to its index (the line is
 * written after the swap, so lookups answer from then on). Median of RUNS.
 * The index figures come from the same module in this process: the three
 * bodies as the file servers encode them, loaded in 64 KiB pieces as the
 * mux delivers them (load_ms, per server), then every path looked up on
 * every server (lookup_ns), and the index's memory (index_mib, as
 * catalog_memory counts it). One line:
 *   catalog files=100000 servers=3 join_ms=… load_ms=… lookup_ns=… index_mib=…
 */
#include "convoy/catalog.h"
#include "convoy/fscat.h"
#include "convoy/log.h"
#include "convoy/proc.h"
#include "convoy/ring.h"
#include "../tests/common/fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SERVERS  3
#define RUNS     3
#define PER_DIR  1000u
#define JOIN_MAX 60000u /* ms: a run that takes longer failed */
#define PIECE    (64u * 1024)

static char dir[64];
static unsigned files = 100000;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "catalog: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (dir[0])
        fx_rmtree(dir);
    exit(1);
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static const char *convoy_bin(void)
{
    const char *b = getenv("CONVOY_BIN");
    return b ? b : "build/convoy";
}

static void make_root(const char *root)
{
    char path[512];
    if (mkdir(root, 0755) < 0)
        die("mkdir %s: %s", root, strerror(errno));
    for (unsigned i = 0; i < files; i++) {
        if (i % PER_DIR == 0) {
            snprintf(path, sizeof path, "%s/d%03u", root, i / PER_DIR);
            if (mkdir(path, 0755) < 0)
                die("mkdir %s: %s", path, strerror(errno));
        }
        snprintf(path, sizeof path, "%s/d%03u/file-%06u.bin", root, i / PER_DIR, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || ftruncate(fd, (off_t)(i % 65536) * 16) < 0)
            die("%s: %s", path, strerror(errno));
        close(fd);
    }
}

/* Whether the log at path holds every server's full catalog of all files. */
static bool all_joined(const char *path)
{
    static char buf[1 << 20];
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (int i = 1; i <= SERVERS; i++) {
        char want[128];
        snprintf(want, sizeof want, "event=catalog name=fs%d kind=full entries=%u", i, files);
        if (strstr(buf, want) == NULL)
            return false;
    }
    return true;
}

static bool log_has(const char *path, const char *needle)
{
    char buf[8192];
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

static pid_t spawn(char **argv, const char *log)
{
    pid_t pid = proc_spawn(argv, log);
    if (pid < 0)
        die("spawn %s: %s", argv[0], strerror((int)-pid));
    return pid;
}

/* One run: the balancer up, then the clock from the file servers' start. */
static double join_run(int run, const char *pki, const char *root)
{
    char control[32], blog[128], state[64], http[SERVERS][32], flog[SERVERS][128];
    snprintf(control, sizeof control, "127.0.0.1:%d", proc_free_port());
    snprintf(blog, sizeof blog, "%s/balancer-%d.log", dir, run);
    snprintf(state, sizeof state, "bench-catalog-%d-%d", (int)getpid(), run);
    char *bargv[] = {(char *)convoy_bin(), "balancer",  "--pki", (char *)pki, "--name",
                     "balancer",           "--control", control, "--state",   state,
                     "--threads",          "2",         NULL};
    pid_t bal = spawn(bargv, blog);
    for (double t = now_ms(); !log_has(blog, "event=listening"); usleep(2000))
        if (now_ms() - t > 5000)
            die("the balancer did not start (%s)", blog);
    pid_t fs[SERVERS];
    double t0 = now_ms();
    for (int i = 0; i < SERVERS; i++) {
        char name[8];
        snprintf(name, sizeof name, "fs%d", i + 1);
        snprintf(http[i], sizeof http[i], "127.0.0.1:%d", proc_free_port());
        snprintf(flog[i], sizeof flog[i], "%s/fs%d-%d.log", dir, i + 1, run);
        char *argv[] = {
            (char *)convoy_bin(), "fileserver", "--pki", (char *)pki, "--name", name, "--root",
            (char *)root,         "--balancer", control, "--http",    http[i],  NULL};
        fs[i] = spawn(argv, flog[i]);
    }
    while (!all_joined(blog)) {
        if (now_ms() - t0 > JOIN_MAX)
            die("not all catalogs joined within %u ms (%s)", JOIN_MAX, blog);
        usleep(2000);
    }
    double ms = now_ms() - t0;
    for (int i = 0; i < SERVERS; i++)
        proc_stop(fs[i], 5000);
    proc_stop(bal, 5000);
    char shm[96];
    snprintf(shm, sizeof shm, "/dev/shm/convoy-%s", state);
    unlink(shm);
    fprintf(stderr, "catalog: run %d join_ms=%.0f\n", run + 1, ms);
    return ms;
}

/* ---- the index in this process ---- */

static double index_figures(const char *root, double *lookup_ns, double *mib)
{
    fscat_t *cat;
    struct fscat_body b = {0};
    catalog_t *c;
    char why[256];
    if (fscat_new(&cat, root, NULL, 0, NULL, NULL) < 0 || fscat_full(cat, &b) < 0 ||
        catalog_new(&c) < 0)
        die("index setup failed");
    double load = 0;
    for (int i = 0; i < SERVERS; i++) {
        char name[8];
        snprintf(name, sizeof name, "fs%d", i + 1);
        cJSON *meta = fscat_meta_json(true, b.count);
        catalog_load_t *l;
        double t = now_ms();
        if (catalog_load_begin(c, name, 1, meta, &l, why, sizeof why) < 0)
            die("load: %s", why);
        for (size_t off = 0; off < b.len; off += PIECE) {
            size_t n = b.len - off < PIECE ? b.len - off : PIECE;
            if (catalog_load_feed(l, (const uint8_t *)b.data + off, n, why, sizeof why) < 0)
                die("load: %s", why);
        }
        if (catalog_load_end(l, why, sizeof why) < 0)
            die("load: %s", why);
        load += now_ms() - t;
        cJSON_Delete(meta);
    }
    char path[64];
    struct catalog_hit hits[SERVERS];
    size_t found = 0;
    double t = now_ms();
    for (unsigned i = 0; i < files; i++) {
        snprintf(path, sizeof path, "d%03u/file-%06u.bin", i / PER_DIR, i);
        found += catalog_lookup(c, path, NULL, hits, SERVERS);
    }
    double ms = now_ms() - t;
    if (found != (size_t)files * SERVERS)
        die("lookups found %zu of %u", found, files * SERVERS);
    *lookup_ns = ms * 1e6 / files;
    *mib = (double)catalog_memory(c) / (1 << 20);
    catalog_free(c);
    fscat_body_free(&b);
    fscat_free(cat);
    return load / SERVERS;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        files = (unsigned)strtoul(argv[1], NULL, 10);
    if (files == 0)
        die("usage: bench_catalog [FILES]");
    log_set_level(LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    char pki[128], root[128];
    static const char *const names[] = {"balancer", "fs1", "fs2", "fs3", NULL};
    if (fx_tmpdir(dir, sizeof dir) < 0)
        die("no temporary folder");
    snprintf(pki, sizeof pki, "%s/pki", dir);
    snprintf(root, sizeof root, "%s/data", dir);
    if (fx_pki(pki, names) < 0)
        die("pki failed");
    double t = now_ms();
    make_root(root);
    fprintf(stderr, "catalog: %u files made in %.0f ms\n", files, now_ms() - t);
    double join[RUNS];
    for (int i = 0; i < RUNS; i++)
        join[i] = join_run(i, pki, root);
    qsort(join, RUNS, sizeof join[0], cmp_double);
    double lookup_ns, mib;
    double load_ms = index_figures(root, &lookup_ns, &mib);
    printf("catalog files=%u servers=%d join_ms=%.0f load_ms=%.0f lookup_ns=%.0f index_mib=%.1f\n",
           files, SERVERS, join[RUNS / 2], load_ms, lookup_ns, mib);
    if (getenv("CONVOY_KEEP_BENCH_DIR") == NULL)
        fx_rmtree(dir);
    else
        fprintf(stderr, "catalog: kept %s\n", dir);
    return 0;
}
