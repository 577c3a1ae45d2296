/*
 * shm: creation, attaching, clean and crashed owners, a lock holder that
 * dies, a live owner that refuses a second one, and segments that do not
 * fit (layout, size, half-built, bad names).
 *
 * Crashes are real: a forked child owns or locks the segment and _exit()s.
 * Every test uses a name unique to this run and removes it at the end.
 */
#include "convoy/shm.h"

#include "convoy/log.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define LAYOUT 3

struct rec {
    uint64_t value;
    uint64_t repaired; /* set by repair() */
};

static int repairs;

static void repair(void *data, size_t size, void *arg)
{
    struct rec *r = data;
    CU_ASSERT_EQUAL(size, sizeof *r);
    CU_ASSERT_PTR_EQUAL(arg, &repairs);
    r->repaired = 1;
    repairs++;
}

/* "unit-<pid>-<tag>": unique to this run, so runs never see each other. */
static const char *name_for(const char *tag)
{
    static char name[64];
    snprintf(name, sizeof name, "unit-%d-%s", (int)getpid(), tag);
    return name;
}

static shm_t *own(const char *name, enum shm_origin want)
{
    shm_t *s = NULL;
    enum shm_origin got;
    int rc = shm_own(&s, name, LAYOUT, sizeof(struct rec), repair, &repairs, &got);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc == 0)
        CU_ASSERT_STRING_EQUAL(shm_origin_str(got), shm_origin_str(want));
    return s;
}

static struct rec *rec_of(shm_t *s)
{
    return shm_data(s);
}

/* Forks a child that runs fn(name) and _exit()s with its result. */
static pid_t spawn(int (*fn)(const char *name), const char *name)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(fn(name));
    CU_ASSERT_FATAL(pid > 0);
    return pid;
}

static int exit_code(pid_t pid)
{
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

static void test_fresh_and_attach(void)
{
    const char *name = name_for("fresh");
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(shm_owner(s), getpid());
    CU_ASSERT_EQUAL((uintptr_t)shm_data(s) % 64, 0);
    CU_ASSERT_EQUAL(rec_of(s)->value, 0);
    rec_of(s)->value = 42;

    shm_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(shm_attach(&r, name, LAYOUT, sizeof(struct rec)), 0);
    CU_ASSERT_EQUAL(shm_lock(r), 0);
    CU_ASSERT_EQUAL(rec_of(r)->value, 42);
    rec_of(r)->value = 43;
    shm_unlock(r);
    CU_ASSERT_EQUAL(shm_owner(r), getpid());
    shm_close(r);
    CU_ASSERT_EQUAL(rec_of(s)->value, 43);
    CU_ASSERT_EQUAL(shm_owner(s), getpid()); /* a reader's close leaves the owner */
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
    CU_ASSERT_EQUAL(shm_remove(name), -ENOENT);
}

static void test_attach_refusals(void)
{
    const char *name = name_for("refuse");
    shm_t *r = NULL;
    CU_ASSERT_EQUAL(shm_attach(&r, name, LAYOUT, sizeof(struct rec)), -ENOENT);
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(shm_attach(&r, name, LAYOUT + 1, sizeof(struct rec)), -EPROTO);
    CU_ASSERT_EQUAL(shm_attach(&r, name, LAYOUT, sizeof(struct rec) + 8), -EPROTO);
    CU_ASSERT_EQUAL(shm_attach(&r, name, LAYOUT, 0), -EINVAL);
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

static void test_names(void)
{
    char longest[66];
    memset(longest, 'n', 65);
    longest[65] = '\0';
    const char *bad[] = {"", "a/b", "sp ace", "x\n", "caf\xc3\xa9", longest};
    shm_t *s = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_EQUAL(shm_own(&s, bad[i], LAYOUT, 8, NULL, NULL, NULL), -EINVAL);
        CU_ASSERT_EQUAL(shm_attach(&s, bad[i], LAYOUT, 8), -EINVAL);
        CU_ASSERT_EQUAL(shm_remove(bad[i]), -EINVAL);
    }
    /* 64 characters of every allowed kind are fine. */
    snprintf(longest, sizeof longest, "%s", name_for("Az09._-"));
    memset(longest + strlen(longest), 'x', 64 - strlen(longest));
    longest[64] = '\0';
    CU_ASSERT_EQUAL_FATAL(shm_own(&s, longest, LAYOUT, 8, NULL, NULL, NULL), 0);
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(longest), 0);
}

static void test_clean_reopen(void)
{
    const char *name = name_for("clean");
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    rec_of(s)->value = 7;
    shm_close(s);

    shm_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(shm_attach(&r, name, LAYOUT, sizeof(struct rec)), 0);
    CU_ASSERT_EQUAL(shm_owner(r), 0);
    shm_close(r);

    repairs = 0;
    s = own(name, SHM_CLEAN);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(rec_of(s)->value, 7);
    CU_ASSERT_EQUAL(repairs, 0);
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

/* Child: owns the segment, writes, and dies without closing. */
static int child_owns_and_dies(const char *name)
{
    shm_t *s;
    if (shm_own(&s, name, LAYOUT, sizeof(struct rec), NULL, NULL, NULL) != 0)
        return 1;
    rec_of(s)->value = 9;
    return 0;
}

/* reap: wait for the child; otherwise leave it a zombie while owning. */
static void check_owner_died(const char *tag, bool reap)
{
    const char *name = name_for(tag);
    pid_t pid = spawn(child_owns_and_dies, name);
    if (!reap) {
        siginfo_t si;
        CU_ASSERT_EQUAL(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
    } else {
        CU_ASSERT_EQUAL(exit_code(pid), 0);
    }
    repairs = 0;
    shm_t *s = own(name, SHM_RECOVERED);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(repairs, 1);
    CU_ASSERT_EQUAL(rec_of(s)->value, 9);
    CU_ASSERT_EQUAL(rec_of(s)->repaired, 1);
    CU_ASSERT_EQUAL(shm_owner(s), getpid());
    shm_close(s);
    if (!reap)
        CU_ASSERT_EQUAL(exit_code(pid), 0);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

static void test_owner_died(void)
{
    check_owner_died("died", true);
}

static void test_owner_zombie(void)
{
    check_owner_died("zombie", false);
}

/* Child: attaches, takes the lock, starts an update and dies holding it. */
static int child_dies_locked(const char *name)
{
    shm_t *s;
    if (shm_attach(&s, name, LAYOUT, sizeof(struct rec)) != 0 || shm_lock(s) != 0)
        return 1;
    rec_of(s)->value = 666;
    return 0;
}

static void test_lock_holder_died(void)
{
    const char *name = name_for("holder");
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    repairs = 0;
    CU_ASSERT_EQUAL(exit_code(spawn(child_dies_locked, name)), 0);
    CU_ASSERT_EQUAL(shm_lock(s), 0);
    CU_ASSERT_EQUAL(repairs, 1);
    CU_ASSERT_EQUAL(rec_of(s)->value, 666);
    CU_ASSERT_EQUAL(rec_of(s)->repaired, 1);
    shm_unlock(s);
    /* The mutex is consistent again: the next lock is an ordinary one. */
    CU_ASSERT_EQUAL(shm_lock(s), 0);
    CU_ASSERT_EQUAL(repairs, 1);
    shm_unlock(s);
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

/* A reader that inherits the dead holder's lock cannot repair: the owner does. */
static void test_repair_deferred_to_owner(void)
{
    const char *name = name_for("defer");
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    shm_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(shm_attach(&r, name, LAYOUT, sizeof(struct rec)), 0);
    repairs = 0;
    CU_ASSERT_EQUAL(exit_code(spawn(child_dies_locked, name)), 0);
    CU_ASSERT_EQUAL(shm_lock(r), 0);
    CU_ASSERT_EQUAL(repairs, 0);
    shm_unlock(r);
    CU_ASSERT_EQUAL(shm_lock(s), 0);
    CU_ASSERT_EQUAL(repairs, 1);
    CU_ASSERT_EQUAL(rec_of(s)->repaired, 1);
    shm_unlock(s);
    shm_close(r);
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

static int busy_pipe[2][2]; /* [0]: child -> parent "owned"; [1]: parent -> child "go" */

/* Child: owns the segment until the parent says go, then closes cleanly. */
static int child_owns_until_told(const char *name)
{
    shm_t *s;
    char c = 'x';
    int rc = shm_own(&s, name, LAYOUT, sizeof(struct rec), NULL, NULL, NULL);
    if (rc == 0)
        rec_of(s)->value = 5;
    if (write(busy_pipe[0][1], &c, 1) != 1 || rc != 0)
        return 1;
    if (read(busy_pipe[1][0], &c, 1) != 1)
        return 1;
    shm_close(s);
    return 0;
}

static void test_live_owner_busy(void)
{
    const char *name = name_for("busy");
    CU_ASSERT_FATAL(pipe(busy_pipe[0]) == 0 && pipe(busy_pipe[1]) == 0);
    pid_t pid = spawn(child_owns_until_told, name);
    char c;
    CU_ASSERT_EQUAL(read(busy_pipe[0][0], &c, 1), 1);

    shm_t *s = NULL;
    CU_ASSERT_EQUAL(shm_own(&s, name, LAYOUT, sizeof(struct rec), repair, &repairs, NULL), -EBUSY);
    /* Even with another layout: a live owner's segment is never replaced. */
    CU_ASSERT_EQUAL(shm_own(&s, name, LAYOUT + 1, sizeof(struct rec), NULL, NULL, NULL), -EBUSY);
    shm_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(shm_attach(&r, name, LAYOUT, sizeof(struct rec)), 0);
    CU_ASSERT_EQUAL(shm_owner(r), pid);
    shm_close(r);

    CU_ASSERT_EQUAL(write(busy_pipe[1][1], "g", 1), 1);
    CU_ASSERT_EQUAL(exit_code(pid), 0);
    for (int i = 0; i < 2; i++) {
        close(busy_pipe[i][0]);
        close(busy_pipe[i][1]);
    }
    s = own(name, SHM_CLEAN);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(rec_of(s)->value, 5);
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

static void test_layout_change_recreates(void)
{
    const char *name = name_for("layout");
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    rec_of(s)->value = 11;
    shm_close(s);

    enum shm_origin got;
    CU_ASSERT_EQUAL_FATAL(shm_own(&s, name, LAYOUT + 1, sizeof(struct rec), NULL, NULL, &got), 0);
    CU_ASSERT_EQUAL(got, SHM_FRESH);
    CU_ASSERT_EQUAL(rec_of(s)->value, 0);
    rec_of(s)->value = 12;
    shm_close(s);

    CU_ASSERT_EQUAL_FATAL(shm_own(&s, name, LAYOUT + 1, 2 * sizeof(struct rec), NULL, NULL, &got),
                          0);
    CU_ASSERT_EQUAL(got, SHM_FRESH);
    CU_ASSERT_EQUAL(rec_of(s)->value, 0);
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

/* A creator that died before publishing leaves an empty object: after a
 * short wait a reader refuses it and an owner rebuilds it. */
static void test_unpublished_segment(void)
{
    const char *name = name_for("unpub");
    char path[96];
    snprintf(path, sizeof path, "/convoy-%s", name);
    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    shm_t *r = NULL;
    CU_ASSERT_EQUAL(shm_attach(&r, name, LAYOUT, sizeof(struct rec)), -EPROTO);
    shm_t *s = own(name, SHM_FRESH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    shm_close(s);
    CU_ASSERT_EQUAL(shm_remove(name), 0);
}

/* Recoveries log warnings by design; keep them out of the test report. */
static int quiet(void)
{
    log_set_level(LOG_ERROR);
    return 0;
}

static int loud(void)
{
    log_set_level(LOG_INFO);
    return 0;
}

void suite_shm(void)
{
    CU_pSuite s = CU_add_suite("shm", quiet, loud);
    CU_add_test(s, "fresh segment, reader sees the data", test_fresh_and_attach);
    CU_add_test(s, "reader: missing, layout or size mismatch", test_attach_refusals);
    CU_add_test(s, "names are checked", test_names);
    CU_add_test(s, "clean close, then own again", test_clean_reopen);
    CU_add_test(s, "owner died: recovered and repaired", test_owner_died);
    CU_add_test(s, "owner is a zombie: recovered", test_owner_zombie);
    CU_add_test(s, "lock holder died: lock repairs", test_lock_holder_died);
    CU_add_test(s, "reader defers repair to the owner", test_repair_deferred_to_owner);
    CU_add_test(s, "live owner: -EBUSY", test_live_owner_busy);
    CU_add_test(s, "layout or size change recreates", test_layout_change_recreates);
    CU_add_test(s, "half-built segment", test_unpublished_segment);
}
