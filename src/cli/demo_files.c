/*
 * The file-transfer act of `convoy demo`: a 256 MiB file downloaded
 * through the balancer with `convoy get` (its progress bar on the demo's
 * terminal) while the file server sending it is SIGKILLed mid-way; the
 * download resumes on another server at the byte where it stopped, the
 * digest is checked, the file compared with the original, and the
 * transfer's two legs shown from `convoy status --transfers`. Then the
 * killed server comes back and `convoy loadgen` makes a burst of 300
 * downloads from 20 clients, whose spread over the servers it prints.
 */
#include "cli.h"
#include "demo.h"

#include "convoy/balancer.h"
#include "convoy/proc.h"
#include "convoy/ring.h"
#include "convoy/users.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MiB      (1024u * 1024)
#define BIG      "big.bin"
#define BIG_SIZE (256u * MiB)
#define KILL_AT  (96.0 * MiB) /* the server sending BIG dies once this much is sent */
#define GET_MS   60000u       /* the longest the download or the burst may take */

/* size bytes of an xorshift stream from seed into path. 0 or -errno. */
static int write_file(const char *path, size_t size, uint64_t seed)
{
    static uint64_t buf[MiB / 8];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    int rc = 0;
    for (size_t off = 0; rc == 0 && off < size;) {
        size_t len = size - off < sizeof buf ? size - off : sizeof buf;
        for (size_t i = 0; i < (len + 7) / 8; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = x;
        }
        ssize_t n = write(fd, buf, len);
        rc = n < 0 ? -errno : (size_t)n != len ? -EIO : 0;
        off += len;
    }
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    return rc;
}

int demo_files_prepare(struct demo *d, const char *root, const char *users)
{
    static const struct {
        const char *name;
        size_t size;
    } files[] = {{"hello.txt", 4096}, {"blob.bin", 4 * MiB}, {BIG, BIG_SIZE}};
    char path[PATH_MAX + 32], err[256];
    int rc = mkdir(root, 0755) < 0 ? -errno : 0;
    for (size_t i = 0; rc == 0 && i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", root, files[i].name);
        rc = write_file(path, files[i].size, i + 1);
    }
    if (rc < 0) {
        fprintf(stderr, "convoy demo: data in %s: %s\n", root, strerror(-rc));
        return -1;
    }
    if (users_file_add(users, DEMO_USER, USERS_READ, DEMO_PASS, strlen(DEMO_PASS), err,
                       sizeof err) < 0 ||
        setenv("CONVOY_PASSWORD", DEMO_PASS, 1) < 0) {
        fprintf(stderr, "convoy demo: user %s: %s\n", DEMO_USER, err);
        return -1;
    }
    demo_say(d,
             "wrote hello.txt (4 KiB), blob.bin (4 MiB) and %s (256 MiB) for the servers, "
             "and user %s",
             BIG, DEMO_USER);
    return 0;
}

/* `convoy CMD… --balancer … --cacert … --user demo REST…`, on the demo's
 * terminal; cmd and rest NULL-terminated. pid or -1. */
static pid_t start_client(struct demo *d, const char *const *cmd, const char *const *rest)
{
    char url[64], ca[PATH_MAX];
    snprintf(url, sizeof url, "https://%s", d->front);
    snprintf(ca, sizeof ca, "%s/pki/ca.crt", d->dir);
    const char *const common[] = {"--balancer", url, "--cacert", ca, "--user", DEMO_USER, NULL};
    const char *const *parts[] = {cmd, common, rest};
    char *argv[32] = {(char *)d->exe};
    size_t n = 1;
    for (size_t p = 0; p < 3; p++)
        for (size_t i = 0; parts[p][i] && n < 31; i++)
            argv[n++] = (char *)parts[p][i];
    argv[n] = NULL;
    return demo_spawn(d, argv, NULL);
}

/* Waits for a client: its exit status, or -1 (said) after GET_MS. */
static int wait_client(struct demo *d, pid_t pid, const char *what)
{
    int status;
    if (proc_wait(pid, GET_MS, &status) < 0) {
        demo_say(d, "FAILED: %s did not end within %us", what, GET_MS / 1000);
        proc_stop(pid, 1000);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The server of BIG's newest leg once that leg has sent at least KILL_AT
 * bytes (how many into *sent): its index (0 for fs1), or -1 (said) after
 * DEMO_STEP_MS. */
static int wait_sender(struct demo *d, double *sent)
{
    struct timespec step = {0, 20 * 1000000};
    for (uint64_t start = ring_now_ms(); ring_now_ms() - start < DEMO_STEP_MS;) {
        cJSON *doc = NULL, *t;
        int who = -1;
        if (bal_read_transfers(d->state, XFER_ACTIVE, &doc) == 0)
            cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(doc, "transfers"))
            {
                const cJSON *legs = cJSON_GetObjectItemCaseSensitive(t, "legs");
                const cJSON *leg = cJSON_GetArrayItem(legs, cJSON_GetArraySize(legs) - 1);
                const char *path =
                    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "path"));
                const char *server =
                    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(leg, "server"));
                *sent = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(leg, "bytes"));
                if (path && strcmp(path, "/" BIG) == 0 && server && *sent >= KILL_AT &&
                    sscanf(server, "fs%d", &who) == 1 && who >= 1 && who <= DEMO_SERVERS)
                    break;
                who = -1;
            }
        cJSON_Delete(doc);
        if (who > 0)
            return who - 1;
        nanosleep(&step, NULL);
    }
    demo_say(d, "FAILED: the download of %s did not get %.0f MiB in", BIG, KILL_AT / MiB);
    return -1;
}

/* Whether files a and b hold the same bytes. */
static bool same_bytes(const char *a, const char *b)
{
    static char ba[MiB], bb[MiB];
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        size_t na = fread(ba, 1, sizeof ba, fa), nb = fread(bb, 1, sizeof bb, fb);
        same = na == nb && memcmp(ba, bb, na) == 0;
        if (na == 0)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

static int step_download_with_kill(struct demo *d)
{
    char out[PATH_MAX], src[PATH_MAX];
    snprintf(out, sizeof out, "%s/%s.downloaded", d->dir, BIG);
    snprintf(src, sizeof src, "%s/data/%s", d->dir, BIG);
    demo_say(d,
             "convoy get %s through the balancer at https://%s (256 MiB, rate-limited "
             "to 128 MB/s so there is a middle to kill it in)",
             BIG, d->front);
    static const char *const cmd[] = {"get", NULL};
    const char *const rest[] = {"--limit-rate", "128M", "--stall-ms", "1000", BIG, "-o", out, NULL};
    pid_t get = start_client(d, cmd, rest);
    if (get < 0)
        return -1;
    double sent = 0;
    int victim = wait_sender(d, &sent);
    if (victim < 0) {
        proc_stop(get, 1000);
        return -1;
    }
    kill(d->fs[victim], SIGKILL);
    proc_wait(d->fs[victim], 5000, &(int){0});
    d->fs[victim] = 0;
    demo_say(d, "fs%d was sending it and had reported %.0f MiB sent: killed it with SIGKILL",
             victim + 1, sent / MiB);
    int rc = wait_client(d, get, "convoy get");
    if (rc != 0) {
        demo_say(d, "FAILED: convoy get exited with status %d", rc);
        return -1;
    }
    if (!same_bytes(src, out)) {
        demo_say(d, "FAILED: %s differs from the original", out);
        return -1;
    }
    demo_say(d,
             "convoy get resumed on another server at the byte where fs%d stopped, "
             "checked the SHA-256 against Repr-Digest and exited 0; the file is the "
             "original, byte for byte",
             victim + 1);
    static const char *const transfers[] = {"--transfers", NULL};
    demo_show_status(d, transfers);
    char name[16];
    snprintf(name, sizeof name, "fs%d", victim + 1);
    const char *names[] = {name};
    if ((d->fs[victim] = demo_start_server(d, victim)) < 0 || demo_wait_for(d, names, 1, "up") < 0)
        return -1;
    demo_say(d, "restarted %s; it is up again", name);
    return 0;
}

static int step_burst(struct demo *d)
{
    demo_say(d, "convoy loadgen: 20 clients make 300 downloads of hello.txt and blob.bin, "
                "each redirected by least-conn and its digest verified");
    static const char *const cmd[] = {"loadgen", "get", NULL};
    static const char *const rest[] = {"--clients", "20",       "--requests", "300",
                                       "hello.txt", "blob.bin", NULL};
    putchar('\n');
    fflush(stdout);
    pid_t lg = start_client(d, cmd, rest);
    if (lg < 0)
        return -1;
    int rc = wait_client(d, lg, "convoy loadgen");
    putchar('\n');
    if (rc != 0) {
        demo_say(d, "FAILED: convoy loadgen exited with status %d", rc);
        return -1;
    }
    demo_say(d, "every download verified; the \"server\" lines above are the spread");
    return 0;
}

int demo_files_act(struct demo *d)
{
    return step_download_with_kill(d) < 0 || step_burst(d) < 0 ? -1 : 0;
}
