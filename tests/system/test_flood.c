/*
 * flood: a balancer whose descriptor limit is 1,024 (soft and hard) meets
 * 1,100 connections that never say a word. It must neither spin nor flood
 * its log, and an honest file server must still join at once: the cap
 * evicts the oldest stranger to make room, and members are never evicted.
 */
#include "harness.h"

#include "convoy/ring.h"

#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define FLOOD     1100
#define NOFILE    1024
#define WATCH_MS  3000
#define CPU_SHARE 0.20 /* of one core over the watch */
#define LOG_MAX   (1024 * 1024)

static const char *const one[] = {"fs1", NULL};

/* utime + stime of pid in clock ticks, or -1. */
static long cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long ut, st;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (long)(ut + st);
}

/* Opens n plain TCP connections without waiting for them. */
static int flood(const char *addr, int *fds, int n)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    const char *colon = strrchr(addr, ':');
    a.sin_port = htons((uint16_t)atoi(colon + 1));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int opened = 0;
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fds[i] < 0)
            break;
        if (connect(fds[i], (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
            close(fds[i]);
            break;
        }
        opened++;
    }
    return opened;
}

static void test_flood_nofile(void)
{
    static int fds[FLOOD];
    struct cluster cl;
    CU_ASSERT_FATAL(h_cluster_init(&cl, one) == 0);
    pid_t bal = h_balancer_nofile(&cl, NOFILE);
    CU_ASSERT_FATAL(bal > 0);
    usleep(200 * 1000); /* listening */
    long t0 = cpu_ticks(bal);
    int opened = flood(cl.control, fds, FLOOD);
    CU_ASSERT_EQUAL(opened, FLOOD);
    usleep(500 * 1000);
    uint64_t joined = ring_now_ms();
    CU_ASSERT_FATAL(h_fileserver(&cl, "fs1", cl.pki) > 0);
    long up_ms = h_wait_state(&cl, "fs1", "up", 1000);
    CU_ASSERT(up_ms >= 0);
    usleep((useconds_t)(WATCH_MS - (ring_now_ms() - joined) % WATCH_MS) * 1000);
    long t1 = cpu_ticks(bal);
    double cpu = (double)(t1 - t0) / (double)sysconf(_SC_CLK_TCK);
    double watched = (double)(ring_now_ms() - joined + 500) / 1000.0;
    fprintf(stderr, "flood: fs1 up after %ld ms; balancer used %.2f s CPU in %.1f s\n", up_ms, cpu,
            watched);
    CU_ASSERT(t0 >= 0 && t1 >= 0);
    CU_ASSERT(cpu < CPU_SHARE * watched);
    char path[512];
    struct stat st;
    CU_ASSERT_EQUAL(stat(h_log_path(&cl, "balancer", path, sizeof path), &st), 0);
    CU_ASSERT(st.st_size < LOG_MAX);
    CU_ASSERT_STRING_EQUAL(h_state(&cl, "fs1"), "up");
    for (int i = 0; i < opened; i++)
        close(fds[i]);
    CU_ASSERT_EQUAL(h_cluster_free(&cl), 0);
}

void suite_flood(void)
{
    CU_pSuite s = CU_add_suite("flood", NULL, NULL);
    CU_add_test(s, "1,100 silent connections, nofile 1,024: no spin, member joins",
                test_flood_nofile);
}
