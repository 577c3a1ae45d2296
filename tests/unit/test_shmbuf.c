/* shmbuf: bodies through shared memory, and what a reader refuses. */
#include "convoy/shmbuf.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static bool exists(const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "/dev/shm%s", name);
    return access(path, F_OK) == 0;
}

static void test_round_trip(void)
{
    shmbuf_t *w, *r;
    char why[256], name[SHMBUF_NAME_MAX];
    CU_ASSERT_EQUAL_FATAL(shmbuf_create(&w, 1 << 20), 0);
    snprintf(name, sizeof name, "%s", shmbuf_name(w));
    CU_ASSERT(shmbuf_name_valid(name));
    double *a = shmbuf_data(w);
    for (size_t i = 0; i < (1 << 20) / sizeof *a; i++)
        a[i] = (double)i * 0.5;
    CU_ASSERT_EQUAL_FATAL(shmbuf_open(&r, name, 1 << 20, why, sizeof why), 0);
    CU_ASSERT_FALSE(exists(name)); /* the reader took it out of the namespace */
    const double *b = shmbuf_data(r);
    CU_ASSERT_EQUAL(memcmp(a, b, 1 << 20), 0);
    CU_ASSERT_EQUAL(b[12345], 12345 * 0.5);
    CU_ASSERT_EQUAL(shmbuf_open(&r, name, 1 << 20, why, sizeof why), -ENOENT); /* once */
    shmbuf_free(w);
    CU_ASSERT_EQUAL(b[7], 3.5); /* the reader's mapping outlives the writer */
    shmbuf_free(r);
}

static void test_writer_alone(void)
{
    shmbuf_t *w;
    char name[SHMBUF_NAME_MAX];
    CU_ASSERT_EQUAL_FATAL(shmbuf_create(&w, 4096), 0);
    snprintf(name, sizeof name, "%s", shmbuf_name(w));
    CU_ASSERT(exists(name));
    shmbuf_free(w); /* no reader came: nothing left behind */
    CU_ASSERT_FALSE(exists(name));
    CU_ASSERT_EQUAL(shmbuf_create(&w, 0), -EINVAL);
}

static void test_names(void)
{
    CU_ASSERT(shmbuf_name_valid("/convoy-buf-12-0123456789abcdef"));
    static const char *const bad[] = {
        "convoy-buf-12-0123456789abcdef",
        "/convoy-buf-12-0123456789abcde",
        "/convoy-buf-12-0123456789abcdef0",
        "/convoy-buf--0123456789abcdef",
        "/convoy-buf-1x-0123456789abcdef",
        "/convoy-buf-12-0123456789ABCDEF",
        "/../convoy-buf-12-0123456789abcdef",
        "/convoy-buf-12345678901-0123456789abcdef",
        "/convoy-state-x",
        "",
    };
    char why[256];
    shmbuf_t *r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_FALSE(shmbuf_name_valid(bad[i]));
        CU_ASSERT_EQUAL(shmbuf_open(&r, bad[i], 8, why, sizeof why), -EINVAL);
    }
}

/* An object another process planted under a valid name, wrong in one way. */
static void test_planted(void)
{
    const char *name = "/convoy-buf-1-00000000000000aa";
    char why[256];
    shmbuf_t *r;
    shm_unlink(name);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(ftruncate(fd, 4096), 0);
    CU_ASSERT_EQUAL(shmbuf_open(&r, name, 8192, why, sizeof why), -EBADMSG); /* size */
    CU_ASSERT(strstr(why, "announced 8192") != NULL);
    if (geteuid() == 0) { /* another user's object: only root can make one here */
        CU_ASSERT_EQUAL(fchown(fd, 65534, (gid_t)-1), 0);
        CU_ASSERT_EQUAL(shmbuf_open(&r, name, 4096, why, sizeof why), -EPERM);
        CU_ASSERT(strstr(why, "owner 65534") != NULL);
        CU_ASSERT_EQUAL(fchown(fd, 0, (gid_t)-1), 0);
    }
    CU_ASSERT_EQUAL(fchmod(fd, 0644), 0); /* readable by others: not ours to trust */
    CU_ASSERT_EQUAL(shmbuf_open(&r, name, 4096, why, sizeof why), -EPERM);
    CU_ASSERT(strstr(why, "mode 0644") != NULL);
    close(fd);
    shm_unlink(name);

    char path[128];
    snprintf(path, sizeof path, "/dev/shm%s", name);
    CU_ASSERT_EQUAL(symlink("/etc/passwd", path), 0);
    CU_ASSERT_EQUAL(shmbuf_open(&r, name, 4096, why, sizeof why), -ELOOP);
    unlink(path);
}

static void test_sweep(void)
{
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    CU_ASSERT_FATAL(child > 0);
    waitpid(child, NULL, 0); /* a pid no process holds now */
    char dead[SHMBUF_NAME_MAX];
    snprintf(dead, sizeof dead, "/convoy-buf-%d-00000000000000bb", (int)child);
    int fd = shm_open(dead, O_RDWR | O_CREAT | O_EXCL, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    shmbuf_t *live;
    CU_ASSERT_EQUAL_FATAL(shmbuf_create(&live, 64), 0);
    CU_ASSERT(shmbuf_sweep() >= 1);
    CU_ASSERT_FALSE(exists(dead));
    CU_ASSERT(exists(shmbuf_name(live))); /* its creator, this process, runs */
    shmbuf_free(live);
}

static void test_host_id(void)
{
    const char *id = shmbuf_host_id();
    CU_ASSERT_EQUAL(strlen(id), 36); /* a UUID */
    CU_ASSERT_PTR_EQUAL(shmbuf_host_id(), id);
}

void suite_shmbuf(void)
{
    CU_pSuite s = CU_add_suite("shmbuf", NULL, NULL);
    CU_add_test(s, "a body written, opened once, the same bytes", test_round_trip);
    CU_add_test(s, "a writer alone leaves nothing behind", test_writer_alone);
    CU_add_test(s, "names: only the shape shmbuf makes", test_names);
    CU_add_test(s, "planted objects: wrong size, owner, open mode, symlink", test_planted);
    CU_add_test(s, "sweep removes what dead creators left", test_sweep);
    CU_add_test(s, "host id: the boot id", test_host_id);
}
