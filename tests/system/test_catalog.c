/*
 * catalog: three real file servers report their files to a real balancer,
 * whole when they join and as deltas when a file changes, as the
 * balancer's log says (event=catalog name=… files=…).
 */
#include "harness.h"

#include <CUnit/CUnit.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UP_MS    5000u
#define DELTA_MS 1000u

static const char *const three[] = {"fs1", "fs2", "fs3", NULL};
static struct cluster cl;

static int put_file(const char *rel, size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data/%s", cl.dir, rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    int rc = ftruncate(fd, (off_t)size);
    close(fd);
    return rc;
}

/* The data folder every file server serves: four files, one in a folder. */
static int make_data(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data", cl.dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/data/sub", cl.dir);
    mkdir(path, 0755);
    return put_file("a.bin", 1000) || put_file("b.bin", 2000) || put_file("c.txt", 3) ||
           put_file("sub/d.bin", 4096);
}

static void test_full_then_delta(void)
{
    CU_ASSERT_FATAL(h_cluster_init(&cl, three) == 0);
    CU_ASSERT_FATAL(make_data() == 0);
    CU_ASSERT_FATAL(h_balancer(&cl) > 0);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_FATAL(h_fileserver(&cl, three[i], cl.pki) > 0);
    for (int i = 0; i < 3; i++) {
        char want[96];
        snprintf(want, sizeof want, "event=catalog name=%s kind=full entries=4 files=4", three[i]);
        CU_ASSERT(h_wait_log(&cl, "balancer", want, UP_MS));
    }
    CU_ASSERT_FATAL(put_file("new.bin", 5) == 0);
    CU_ASSERT(h_wait_log(&cl, "balancer", "event=catalog name=fs1 kind=delta entries=1 files=5",
                         DELTA_MS + 500));
    char path[512];
    snprintf(path, sizeof path, "%s/data/a.bin", cl.dir);
    CU_ASSERT_FATAL(unlink(path) == 0);
    CU_ASSERT(h_wait_log(&cl, "balancer", "event=catalog name=fs2 kind=delta entries=1 files=4",
                         DELTA_MS + 500));
    CU_ASSERT_EQUAL(h_cluster_free(&cl), 0);
}

/* A server that comes back sends its whole catalog again. */
static void test_back_sends_full(void)
{
    CU_ASSERT_FATAL(h_cluster_init(&cl, three) == 0);
    CU_ASSERT_FATAL(make_data() == 0);
    CU_ASSERT_FATAL(h_balancer(&cl) > 0);
    pid_t fs1 = h_fileserver(&cl, "fs1", cl.pki);
    CU_ASSERT_FATAL(fs1 > 0);
    CU_ASSERT(h_wait_log(&cl, "balancer", "event=catalog name=fs1 kind=full", UP_MS));
    h_signal(&cl, fs1, SIGKILL, true);
    CU_ASSERT(h_wait_state(&cl, "fs1", "down", UP_MS) >= 0);
    CU_ASSERT_FATAL(put_file("late.bin", 7) == 0);
    CU_ASSERT_FATAL(h_fileserver(&cl, "fs1", cl.pki) > 0);
    CU_ASSERT(
        h_wait_log(&cl, "balancer", "event=catalog name=fs1 kind=full entries=5 files=5", UP_MS));
    CU_ASSERT_EQUAL(h_cluster_free(&cl), 0);
}

void suite_catalog(void)
{
    CU_pSuite s = CU_add_suite("catalog", NULL, NULL);
    CU_add_test(s, "3 servers: full catalogs, then deltas within a second", test_full_then_delta);
    CU_add_test(s, "a server back sends its whole catalog", test_back_sends_full);
}
