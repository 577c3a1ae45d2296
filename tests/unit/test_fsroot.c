/*
 * fsroot: a request path opens a regular file inside the root and nothing
 * else. A tree with a file, a subfolder, an inner symlink, a symlink to /etc,
 * a symlink to an absolute path, a FIFO and a folder; every refusal is the
 * same -ENOENT, whatever was refused.
 */
#include "convoy/fsroot.h"

#include "../common/fixture.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[PATH_MAX], root[PATH_MAX + 8];

static void put(const char *rel, const char *text)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

static void link_at(const char *target, const char *rel)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    CU_ASSERT_EQUAL_FATAL(symlink(target, p), 0);
}

static int setup(void)
{
    char p[PATH_MAX * 2];
    if (fx_tmpdir(tmp, sizeof tmp) < 0)
        return -1;
    snprintf(root, sizeof root, "%s/root", tmp);
    if (mkdir(root, 0755) < 0)
        return -1;
    snprintf(p, sizeof p, "%s/sub", root);
    if (mkdir(p, 0755) < 0)
        return -1;
    snprintf(p, sizeof p, "%s/fifo", root);
    if (mkfifo(p, 0644) < 0)
        return -1;
    snprintf(p, sizeof p, "%s/outside", tmp);
    FILE *f = fopen(p, "w");
    if (f == NULL)
        return -1;
    fputs("secret\n", f);
    fclose(f);
    return 0;
}

static int teardown(void)
{
    fx_rmtree(tmp);
    return 0;
}

/* Opens rel and returns the open result, closing any descriptor. */
static int try_open(fsroot_t *r, const char *rel, size_t len)
{
    struct stat st;
    int fd = fsroot_open_file(r, rel, len, &st);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    return fd;
}

static int try_path(fsroot_t *r, const char *rel)
{
    return try_open(r, rel, strlen(rel));
}

static void test_regular_files(void)
{
    fsroot_t *r;
    CU_ASSERT_EQUAL_FATAL(fsroot_open(&r, root), 0);
    put("a.txt", "hello\n");
    put("sub/b.txt", "world!\n");
    link_at("sub/b.txt", "inner-link");
    struct stat st;
    int fd = fsroot_open_file(r, "sub/b.txt", 9, &st);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(S_ISREG(st.st_mode));
    CU_ASSERT_EQUAL(st.st_size, 7);
    char buf[16] = {0};
    CU_ASSERT_EQUAL(read(fd, buf, sizeof buf), 7);
    CU_ASSERT_STRING_EQUAL(buf, "world!\n");
    close(fd);
    CU_ASSERT_EQUAL(try_path(r, "a.txt"), 0);
    CU_ASSERT_EQUAL(try_path(r, "./a.txt"), 0);
    CU_ASSERT_EQUAL(try_path(r, "sub//b.txt"), 0);
    CU_ASSERT_EQUAL(try_path(r, "inner-link"), 0); /* a symlink that stays inside */
    CU_ASSERT_TRUE(fsroot_path_ok("a.txt..", 7));  /* ".." only as a whole component */
    CU_ASSERT_STRING_EQUAL(fsroot_dir(r), root);
    fsroot_free(r);
}

static void test_traversal_refused(void)
{
    fsroot_t *r;
    CU_ASSERT_EQUAL_FATAL(fsroot_open(&r, root), 0);
    put("c.txt", "c\n");
    char abs_inside[PATH_MAX * 2], abs_outside[PATH_MAX * 2];
    snprintf(abs_inside, sizeof abs_inside, "%s/c.txt", root);
    snprintf(abs_outside, sizeof abs_outside, "%s/outside", tmp);
    link_at("/etc", "etc");
    link_at("../outside", "up-link");
    link_at(abs_outside, "abs-link");
    link_at(abs_inside, "abs-inside"); /* absolute, even to a file inside */
    link_at("/proc/self/root/etc/passwd", "magic");
    const char *refused[] = {
        "../outside",    /* ".." leaving the root */
        "../root/c.txt", /* ".." that would come back: still refused */
        "sub/../c.txt",  /* ".." inside: refused without asking the kernel */
        "..",            /* the parent itself */
        "etc/passwd",    /* through a planted symlink to /etc */
        "etc",           /* the symlink itself (a folder) */
        "up-link",       /* a relative symlink leading out */
        "abs-link",      /* an absolute symlink leading out */
        "abs-inside",    /* an absolute symlink at all */
        "magic",         /* a /proc magic link */
        abs_inside,      /* an absolute path, even one inside the root */
        "/etc/passwd",   /* an absolute path */
        "",              /* nothing */
        "sub",           /* a folder */
        ".",             /* the root folder */
        "fifo",          /* a FIFO (and the open does not block) */
        "missing",       /* a missing file */
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        int rc = try_path(r, refused[i]);
        if (rc != -ENOENT)
            fprintf(stderr, "fsroot: path \"%s\" gave %d\n", refused[i], rc);
        CU_ASSERT_EQUAL(rc, -ENOENT);
    }
    /* "%2e%2e/outside" after the HTTP layer decoded it, and a NUL in a path
     * whose prefix names a real file. */
    CU_ASSERT_EQUAL(try_open(r, "\x2e\x2e/outside", 10), -ENOENT);
    CU_ASSERT_EQUAL(try_open(r, "c.txt\0.jpg", 10), -ENOENT);
    CU_ASSERT_FALSE(fsroot_path_ok("a/../b", 6));
    CU_ASSERT_FALSE(fsroot_path_ok("a/..", 4));
    CU_ASSERT_TRUE(fsroot_path_ok("a/...", 5));
    CU_ASSERT_TRUE(fsroot_path_ok(".hidden", 7));
    fsroot_free(r);
}

static void test_long_path(void)
{
    fsroot_t *r;
    CU_ASSERT_EQUAL_FATAL(fsroot_open(&r, root), 0);
    char *p = malloc(PATH_MAX + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    memset(p, 'a', PATH_MAX);
    p[PATH_MAX] = '\0';
    CU_ASSERT_EQUAL(try_open(r, p, PATH_MAX), -ENOENT);
    memset(p, 'a', NAME_MAX + 1); /* one component too long: the kernel's refusal */
    CU_ASSERT_EQUAL(try_open(r, p, NAME_MAX + 1), -ENOENT);
    free(p);
    fsroot_free(r);
}

static void test_bad_root(void)
{
    fsroot_t *r = NULL;
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/outside", tmp);
    CU_ASSERT_EQUAL(fsroot_open(&r, p), -ENOTDIR);
    snprintf(p, sizeof p, "%s/none", tmp);
    CU_ASSERT_EQUAL(fsroot_open(&r, p), -ENOENT);
    CU_ASSERT_PTR_NULL(r);
    fsroot_free(NULL);
}

void suite_fsroot(void)
{
    CU_pSuite s = CU_add_suite("fsroot", setup, teardown);
    CU_add_test(s, "regular files and inner symlinks open", test_regular_files);
    CU_add_test(s, "traversal, symlinks out, FIFO, folders: ENOENT", test_traversal_refused);
    CU_add_test(s, "over-long paths", test_long_path);
    CU_add_test(s, "a root that is not a folder", test_bad_root);
}
