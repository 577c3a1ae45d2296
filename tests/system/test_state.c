/*
 * state: the balancer's shared-memory segment attacked as a hostile local
 * user would, then a real balancer started on it and `convoy status` asked.
 *
 * Planted segments are made by this process: with the shm API (as a
 * previous balancer would have left them) or byte by byte following the
 * layout in docs/protocol-membership.md, then given away (chown, chmod),
 * filled with junk rows or a forged lock word. Every wait has a deadline,
 * so a balancer or a status that hangs fails the test instead of hanging
 * it. Giving a file to another uid needs root.
 */
#include "harness.h"

#include "convoy/balancer.h"
#include "convoy/log.h"
#include "convoy/ring.h"
#include "convoy/shm.h"

#include <CUnit/CUnit.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define START_MS  5000 /* for the balancer to listen, or fail the test */
#define STATUS_MS 3000 /* for convoy status to answer */

/* The layout's fixed offsets (docs/protocol-membership.md). */
#define OFF_OWNER   16
#define OFF_START   24
#define OFF_DIR     64
#define DIRENT_SIZE 32

static const char *seg_path(struct cluster *c, char *buf, size_t len)
{
    snprintf(buf, len, "/dev/shm/convoy-%s", c->state);
    return buf;
}

/* A segment as a cleanly stopped balancer leaves it, rows still to add. */
static shm_t *plant_segment(struct cluster *c)
{
    const struct shm_table tables[] = {BAL_META_TABLE, BAL_SERVER_TABLE};
    shm_t *s = NULL;
    CU_ASSERT_EQUAL(shm_own(&s, c->state, tables, 2, NULL), 0);
    return s;
}

static void plant_row(shm_t *s, uint32_t slot, const struct reg_server *r)
{
    CU_ASSERT_EQUAL(shm_lock(s), 0);
    CU_ASSERT_EQUAL(shm_put(s, &BAL_SERVER_TABLE, slot, r), 0);
    shm_unlock(s);
}

static struct reg_server row(const char *name, const char *addr)
{
    struct reg_server r = {.state = REG_UP, .weight = 1, .capacity = 8};
    snprintf(r.name, sizeof r.name, "%s", name);
    snprintf(r.addr, sizeof r.addr, "%s", addr);
    return r;
}

/* Maps the segment file read-write, as its planter would. */
static uint8_t *map_raw(struct cluster *c, size_t *len)
{
    char path[128];
    int fd = open(seg_path(c, path, sizeof path), O_RDWR);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return NULL;
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    *len = (size_t)st.st_size;
    return m == MAP_FAILED ? NULL : m;
}

/* A status document, or NULL when status failed or took too long. */
static cJSON *status_json(struct cluster *c)
{
    static char out[65536];
    int rc = h_status_run(c, true, STATUS_MS, out, sizeof out);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "state: status exited %d: %s\n", rc, out);
        return NULL;
    }
    const char *json = strchr(out, '{'); /* after any warning lines */
    return json ? cJSON_Parse(json) : NULL;
}

static int servers_in(const cJSON *st)
{
    return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(st, "servers"));
}

static bool running_in(const cJSON *st)
{
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(st, "balancer");
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "running"));
}

/* How many segments of this cluster were moved aside. */
static int asides(struct cluster *c, uid_t *uid)
{
    char prefix[128], path[512];
    snprintf(prefix, sizeof prefix, "convoy-%s.aside-", c->state);
    DIR *d = opendir("/dev/shm");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        struct stat st;
        snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0 || stat(path, &st) < 0)
            continue;
        n++;
        if (uid)
            *uid = st.st_uid;
    }
    if (d)
        closedir(d);
    return n;
}

static bool balancer_started(struct cluster *c)
{
    return h_balancer(c) > 0 && h_wait_log(c, "balancer", "event=listening", START_MS);
}

/* Another local user made the segment first, open to all, with a row of
 * its own: status refuses it, the balancer moves it aside and starts fresh. */
static void test_foreign_segment(void)
{
    if (geteuid() != 0)
        return; /* giving a file to another uid needs root */
    struct cluster c;
    CU_ASSERT_FATAL(h_cluster_init(&c, (const char *const[]){NULL}) == 0);
    shm_t *s = plant_segment(&c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    struct reg_server evil = row("evil", "6.6.6.6:66");
    plant_row(s, 0, &evil);
    shm_close(s);
    char path[128], out[4096];
    CU_ASSERT_EQUAL(chown(seg_path(&c, path, sizeof path), 65534, 65534), 0);
    CU_ASSERT_EQUAL(chmod(path, 0666), 0);

    CU_ASSERT_EQUAL(h_status_run(&c, true, STATUS_MS, out, sizeof out), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "is not trusted"));
    CU_ASSERT_PTR_NULL(strstr(out, "evil"));

    CU_ASSERT(balancer_started(&c));
    CU_ASSERT(h_log_has(&c, "balancer", "event=moved_aside"));
    CU_ASSERT(h_log_has(&c, "balancer", "owned by uid 65534 with mode 0666"));
    uid_t uid = 0;
    CU_ASSERT_EQUAL(asides(&c, &uid), 1);
    CU_ASSERT_EQUAL(uid, 65534); /* kept as planted, for inspection */
    struct stat st;
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL(st.st_uid, 0);
    CU_ASSERT_EQUAL(st.st_mode & 07777, 0600);
    cJSON *doc = status_json(&c);
    CU_ASSERT_PTR_NOT_NULL(doc);
    CU_ASSERT_EQUAL(servers_in(doc), 0);
    CU_ASSERT_STRING_EQUAL(h_server_state(doc, "evil"), "gone");
    CU_ASSERT(running_in(doc));
    cJSON_Delete(doc);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

/* Nineteen junk rows beside two good ones, in a cleanly closed segment. */
static void plant_junk(shm_t *s)
{
    static const char *const bad_names[] = {
        "\xff\xfe",    "esc\x1b[31m",  "",      "caf\xc3",
        "nel\xc2\x85", "over\xc0\xaf", "fs-ok", "\xed\xa0\x80", /* a surrogate */
    };
    static const char *const bad_addrs[] = {"no-port", "1.2.3.4:99999", "1.2.3.4:0", "h:80\n",
                                            "a b:80",  "[zz]:80",       ":80"};
    uint32_t slot = 0;
    struct reg_server ok = row("fs-ok", "127.0.0.1:8443"), r;
    plant_row(s, slot++, &ok);
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        r = row(bad_names[i], "127.0.0.1:1");
        plant_row(s, slot++, &r);
    }
    for (size_t i = 0; i < sizeof bad_addrs / sizeof bad_addrs[0]; i++) {
        r = row("fs-addr", bad_addrs[i]);
        plant_row(s, slot++, &r);
    }
    r = row("fs-x", "127.0.0.1:1");
    memset(r.name, 'x', sizeof r.name); /* no NUL */
    plant_row(s, slot++, &r);
    r = row("fs-state", "127.0.0.1:1");
    r.state = 7;
    plant_row(s, slot++, &r);
    r = row("fs-nan", "127.0.0.1:1");
    r.load.load1 = NAN;
    plant_row(s, slot++, &r);
    r = row("fs-neg", "127.0.0.1:1");
    r.load.load1 = -1;
    plant_row(s, slot++, &r);
    CU_ASSERT_EQUAL(slot, 20);
    struct reg_server utf8 = row("caf\xc3\xa9-1", "[::1]:8443");
    plant_row(s, 200, &utf8);
}

static void check_two_rows(cJSON *doc)
{
    CU_ASSERT_PTR_NOT_NULL(doc);
    CU_ASSERT_EQUAL(servers_in(doc), 2);
    CU_ASSERT_STRING_EQUAL(h_server_state(doc, "fs-ok"), "down");
    CU_ASSERT_STRING_EQUAL(h_server_state(doc, "caf\xc3\xa9-1"), "down");
}

/* Junk rows in a cleanly stopped segment: status never shows them, the
 * balancer drops them on start (each logged) and keeps the good rows. */
static void test_junk_rows(void)
{
    struct cluster c;
    CU_ASSERT_FATAL(h_cluster_init(&c, (const char *const[]){NULL}) == 0);
    shm_t *s = plant_segment(&c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    plant_junk(s);
    shm_close(s);

    cJSON *doc = status_json(&c);
    check_two_rows(doc);
    cJSON_Delete(doc);
    CU_ASSERT(balancer_started(&c));
    CU_ASSERT(h_log_has(&c, "balancer", "origin=clean servers_kept=2 servers_dropped=19"));
    CU_ASSERT(h_log_has(&c, "balancer", "reason=\"name is not 1-63 bytes of printable UTF-8\""));
    CU_ASSERT(h_log_has(&c, "balancer", "reason=\"address is not HOST:PORT\""));
    CU_ASSERT(h_log_has(&c, "balancer", "reason=\"duplicate name\""));
    doc = status_json(&c);
    check_two_rows(doc);
    cJSON_Delete(doc);
    /* Gone from the segment too, not only from the balancer's copy. */
    shm_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(shm_attach(&r, c.state), 0);
    struct reg_server x;
    int used = 0;
    for (uint32_t i = 0; i < REG_SERVERS; i++)
        used += shm_get(r, &BAL_SERVER_TABLE, i, &x, NULL) == 1;
    CU_ASSERT_EQUAL(used, 2);
    shm_close(r);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

/* The slot of server row `slot`, found through the segment's directory. */
static uint32_t *slot_seq(uint8_t *m, uint32_t slot)
{
    for (int i = 0; i < SHM_TABLES_MAX; i++) {
        const uint8_t *e = m + OFF_DIR + i * DIRENT_SIZE;
        uint32_t id, stride;
        uint64_t offset;
        memcpy(&id, e, 4);
        memcpy(&stride, e + 12, 4);
        memcpy(&offset, e + 24, 8);
        if (id == BAL_SERVER_TABLE.id)
            return (uint32_t *)(m + offset + (uint64_t)stride * slot);
    }
    return NULL;
}

/* A writer died mid-row: status answers at once without that row, the next
 * balancer clears the slot. */
static void test_torn_row(void)
{
    struct cluster c;
    CU_ASSERT_FATAL(h_cluster_init(&c, (const char *const[]){NULL}) == 0);
    shm_t *s = plant_segment(&c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    struct reg_server a = row("fs-a", "127.0.0.1:1"), b = row("fs-b", "127.0.0.1:2");
    plant_row(s, 0, &a);
    plant_row(s, 1, &b);
    shm_close(s);
    size_t len;
    uint8_t *m = map_raw(&c, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    uint32_t *seq = slot_seq(m, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(seq);
    CU_ASSERT_EQUAL(*seq % 2, 0);
    (*seq)++;
    munmap(m, len);

    uint64_t t0 = ring_now_ms();
    cJSON *doc = status_json(&c);
    CU_ASSERT(ring_now_ms() - t0 < 1000);
    CU_ASSERT_EQUAL(servers_in(doc), 1);
    CU_ASSERT_STRING_EQUAL(h_server_state(doc, "fs-a"), "down");
    cJSON_Delete(doc);
    CU_ASSERT(balancer_started(&c));
    CU_ASSERT(h_log_has(&c, "balancer", "event=torn_slots_cleared"));
    CU_ASSERT(h_log_has(&c, "balancer", "servers_kept=1 servers_dropped=0"));
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

/* The segment of the convoy before tables: header, then a robust mutex
 * whose bytes the attacker chose (fill, or a forged owner TID). */
static void plant_old_format(struct cluster *c, bool forged_tid)
{
    size_t data_off = 128, size = sizeof(struct reg_table) + 80; /* the old bal_shared */
    uint8_t *buf = calloc(1, data_off + size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    uint32_t magic = 0x434e5653, layout = 1;
    uint64_t sz = size;
    memcpy(buf, &magic, 4);
    memcpy(buf + 4, &layout, 4);
    memcpy(buf + 8, &sz, 8);
    pthread_mutex_t *mx = (pthread_mutex_t *)(buf + 32);
    if (forged_tid) {
        pthread_mutexattr_t a;
        pthread_mutexattr_init(&a);
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
        pthread_mutex_init(mx, &a);
        pthread_mutexattr_destroy(&a);
        int tid = 0x3ffffff0; /* no such thread: nobody will ever unlock it */
        memcpy(mx, &tid, sizeof tid);
    } else {
        memset(mx, 0xff, sizeof *mx);
    }
    char path[128];
    int fd = open(seg_path(c, path, sizeof path), O_RDWR | O_CREAT | O_EXCL, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(write(fd, buf, data_off + size) == (ssize_t)(data_off + size));
    close(fd);
    free(buf);
}

/* Such a segment used to end the balancer (EINVAL) or hang it and status
 * in a futex wait; now status refuses it at once and the balancer moves it
 * aside and starts. */
static void check_old_lock_word(bool forged_tid)
{
    struct cluster c;
    CU_ASSERT_FATAL(h_cluster_init(&c, (const char *const[]){NULL}) == 0);
    plant_old_format(&c, forged_tid);
    char out[4096];
    CU_ASSERT_EQUAL(h_status_run(&c, true, STATUS_MS, out, sizeof out), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "is damaged or from another convoy version"));
    CU_ASSERT(balancer_started(&c));
    CU_ASSERT(h_log_has(&c, "balancer", "event=moved_aside"));
    CU_ASSERT(h_log_has(&c, "balancer", "old format"));
    CU_ASSERT_EQUAL(asides(&c, NULL), 1);
    cJSON *doc = status_json(&c);
    CU_ASSERT(doc && running_in(doc));
    cJSON_Delete(doc);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

static void test_lock_word_0xff(void)
{
    check_old_lock_word(false);
}

static void test_lock_word_forged_tid(void)
{
    check_old_lock_word(true);
}

/* A header of 0xff bytes in today's format is moved aside too. */
static void test_damaged_header(void)
{
    struct cluster c;
    CU_ASSERT_FATAL(h_cluster_init(&c, (const char *const[]){NULL}) == 0);
    shm_t *s = plant_segment(&c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    shm_close(s);
    size_t len;
    uint8_t *m = map_raw(&c, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    memset(m + 4, 0xff, 4092); /* the magic stays: the rest is junk */
    munmap(m, len);
    char out[4096];
    CU_ASSERT_EQUAL(h_status_run(&c, true, STATUS_MS, out, sizeof out), 1);
    CU_ASSERT(balancer_started(&c));
    CU_ASSERT(h_log_has(&c, "balancer", "reason=\"damaged header: size\""));
    CU_ASSERT_EQUAL(asides(&c, NULL), 1);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

/* A balancer killed and not yet reaped is a zombie: not running. */
static void test_zombie_not_running(void)
{
    struct cluster c;
    CU_ASSERT_FATAL(h_cluster_init(&c, (const char *const[]){NULL}) == 0);
    CU_ASSERT_FATAL(balancer_started(&c));
    cJSON *doc = status_json(&c);
    CU_ASSERT(doc && running_in(doc));
    cJSON_Delete(doc);
    pid_t pid = c.procs[0].pid;
    CU_ASSERT_EQUAL(h_signal(&c, pid, SIGKILL, false), 0);
    siginfo_t si;
    CU_ASSERT_EQUAL(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
    doc = status_json(&c);
    CU_ASSERT(doc && !running_in(doc));
    cJSON_Delete(doc);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

/* The segment names a live pid whose start time is not the recorded one:
 * a reused pid, not the balancer. */
static void test_reused_pid_not_running(void)
{
    struct cluster c;
    CU_ASSERT_FATAL(h_cluster_init(&c, (const char *const[]){NULL}) == 0);
    shm_t *s = plant_segment(&c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    shm_close(s);
    struct shm_owner me;
    shm_owner_self(&me);
    size_t len;
    uint8_t *m = map_raw(&c, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    int32_t pid = me.pid;
    uint64_t start = me.start;
    memcpy(m + OFF_OWNER, &pid, 4);
    memcpy(m + OFF_START, &start, 8);
    cJSON *doc = status_json(&c); /* the real start time: running */
    CU_ASSERT(doc && running_in(doc));
    cJSON_Delete(doc);
    start++;
    memcpy(m + OFF_START, &start, 8);
    munmap(m, len);
    doc = status_json(&c);
    CU_ASSERT(doc && !running_in(doc));
    cJSON_Delete(doc);
    CU_ASSERT_EQUAL(h_cluster_free(&c), 0);
}

/* Planting logs what a balancer would; keep it out of the test report. */
static int quiet(void)
{
    log_set_level(LOG_WARN);
    return 0;
}

static int loud(void)
{
    log_set_level(LOG_INFO);
    return 0;
}

void suite_state(void)
{
    CU_pSuite s = CU_add_suite("state", quiet, loud);
    CU_add_test(s, "another user's segment: refused, moved aside", test_foreign_segment);
    CU_add_test(s, "junk rows of a clean segment dropped", test_junk_rows);
    CU_add_test(s, "row left mid-write: status in time, cleared", test_torn_row);
    CU_add_test(s, "old lock word of 0xff: moved aside", test_lock_word_0xff);
    CU_add_test(s, "old lock word naming no thread: no hang", test_lock_word_forged_tid);
    CU_add_test(s, "damaged header: moved aside", test_damaged_header);
    CU_add_test(s, "zombie balancer: not running", test_zombie_not_running);
    CU_add_test(s, "reused pid: not running", test_reused_pid_not_running);
}
