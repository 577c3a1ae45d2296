/* registry: the server state machine, as the balancer drives it. */
#include "convoy/registry.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static struct reg_table *table;

static int setup(void)
{
    table = calloc(1, sizeof *table);
    return table ? 0 : -1;
}

static int teardown(void)
{
    free(table);
    return 0;
}

static uint64_t join(const char *name, uint64_t now)
{
    struct reg_hello h = {.name = name, .addr = "127.0.0.1:8080", .weight = 1, .capacity = 10};
    uint64_t session = 0;
    char why[128];
    CU_ASSERT_EQUAL(reg_hello(table, &h, now, &session, why, sizeof why), 0);
    CU_ASSERT_NOT_EQUAL(session, 0);
    return session;
}

static const char *state_of(const char *name)
{
    const struct reg_server *r = reg_find(table, name);
    return r ? reg_state_str(r->state) : "gone";
}

static void test_transitions(void)
{
    CU_ASSERT_EQUAL(reg_next(REG_NONE, REG_EV_HELLO), REG_UP);
    CU_ASSERT_EQUAL(reg_next(REG_DOWN, REG_EV_HELLO), REG_UP);
    CU_ASSERT_EQUAL(reg_next(REG_UP, REG_EV_HELLO), -EINVAL);
    CU_ASSERT_EQUAL(reg_next(REG_UP, REG_EV_DRAIN), REG_DRAINING);
    CU_ASSERT_EQUAL(reg_next(REG_DRAINING, REG_EV_BYE), REG_NONE);
    CU_ASSERT_EQUAL(reg_next(REG_DRAINING, REG_EV_TIMEOUT), REG_DOWN);
    CU_ASSERT_EQUAL(reg_next(REG_DOWN, REG_EV_HEARTBEAT), -EINVAL);
    CU_ASSERT_EQUAL(reg_next(REG_DOWN, REG_EV_BYE), -EINVAL);
    CU_ASSERT_STRING_EQUAL(reg_event_str(REG_EV_TIMEOUT), "timeout");
}

static void test_join_heartbeat_timeout_rejoin(void)
{
    uint64_t s = join("fs1", 1000);
    CU_ASSERT_STRING_EQUAL(state_of("fs1"), "up");
    struct reg_load l = {.active = 3, .bytes_per_s = 5000, .load1 = 0.5, .disk_free = 1 << 20};
    CU_ASSERT_EQUAL(reg_event(table, "fs1", s, REG_EV_HEARTBEAT, &l, 1500), REG_UP);
    const struct reg_server *r = reg_find(table, "fs1");
    CU_ASSERT_EQUAL(r->load.active, 3);
    CU_ASSERT_EQUAL(r->last_seen_ms, 1500);
    CU_ASSERT_EQUAL(reg_event(table, "fs1", s, REG_EV_TIMEOUT, NULL, 4000), REG_DOWN);
    CU_ASSERT_STRING_EQUAL(state_of("fs1"), "down");
    CU_ASSERT_EQUAL(r->load.active, 0);
    /* The dead session's late frames change nothing. */
    CU_ASSERT_EQUAL(reg_event(table, "fs1", s, REG_EV_HEARTBEAT, &l, 4100), -ESTALE);
    uint64_t s2 = join("fs1", 5000);
    CU_ASSERT_NOT_EQUAL(s2, s);
    CU_ASSERT_STRING_EQUAL(state_of("fs1"), "up");
    CU_ASSERT_EQUAL(reg_event(table, "fs1", s2, REG_EV_DISCONNECT, NULL, 6000), REG_DOWN);
}

static void test_drain_bye(void)
{
    uint64_t s = join("fs2", 100);
    CU_ASSERT_EQUAL(reg_event(table, "fs2", s, REG_EV_DRAIN, NULL, 200), REG_DRAINING);
    CU_ASSERT_STRING_EQUAL(state_of("fs2"), "draining");
    CU_ASSERT_EQUAL(reg_event(table, "fs2", s, REG_EV_HEARTBEAT, NULL, 250), REG_DRAINING);
    CU_ASSERT_EQUAL(reg_event(table, "fs2", s, REG_EV_BYE, NULL, 300), REG_NONE);
    CU_ASSERT_STRING_EQUAL(state_of("fs2"), "gone");
}

static void test_duplicate_name(void)
{
    uint64_t s = join("fs3", 100);
    struct reg_hello h = {.name = "fs3", .addr = "127.0.0.1:9999", .weight = 1};
    uint64_t other = 0;
    char why[128] = "";
    CU_ASSERT_EQUAL(reg_hello(table, &h, 200, &other, why, sizeof why), -EEXIST);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "already connected"));
    CU_ASSERT_STRING_EQUAL(reg_find(table, "fs3")->addr, "127.0.0.1:8080"); /* untouched */
    CU_ASSERT_EQUAL(reg_event(table, "fs3", s, REG_EV_BYE, NULL, 300), REG_NONE);
}

static void test_restart_and_repair(void)
{
    join("fs4", 10);
    uint64_t s5 = join("fs5", 10);
    reg_event(table, "fs5", s5, REG_EV_DRAIN, NULL, 20);
    reg_restart(table, 30);
    CU_ASSERT_STRING_EQUAL(state_of("fs4"), "down");
    CU_ASSERT_STRING_EQUAL(state_of("fs5"), "down");
    CU_ASSERT_EQUAL(reg_find(table, "fs4")->session, 0);
    /* A writer that died mid-row leaves garbage: it is cleared, not trusted. */
    struct reg_server *bad = (struct reg_server *)reg_find(table, "fs4");
    memset(bad->name, 'x', sizeof bad->name);
    size_t before = reg_snapshot(table, (struct reg_server[REG_SERVERS]){0}, REG_SERVERS);
    CU_ASSERT_EQUAL(reg_repair(table, NULL, NULL), 1);
    struct reg_server rows[REG_SERVERS];
    CU_ASSERT_EQUAL(reg_snapshot(table, rows, REG_SERVERS), before - 1);
    CU_ASSERT_STRING_EQUAL(state_of("fs5"), "down");
}

static void test_bad_hello(void)
{
    struct reg_hello h = {.name = "", .addr = "127.0.0.1:1"};
    uint64_t s;
    char why[128];
    CU_ASSERT_EQUAL(reg_hello(table, &h, 1, &s, why, sizeof why), -EINVAL);
}

/* A row read back from shared memory is checked field by field; HELLO is
 * held to the same rules, so no row the registry wrote fails them. */
static void test_row_check(void)
{
    static const char *const good_names[] = {"fs1", "caf\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac",
                                             "\xf0\x9f\x9a\x9a", "a b"};
    static const char *const bad_names[] = {"",
                                            "\x1b[2J",
                                            "del\x7f",
                                            "nel\xc2\x85",     /* C1 control */
                                            "over\xc0\xaf",    /* overlong '/' */
                                            "sur\xed\xa0\x80", /* surrogate */
                                            "big\xf4\x90\x80\x80",
                                            "cut\xe6\x97"};
    static const char *const good_addrs[] = {"127.0.0.1:8443", "fs-1.example:1", "[::1]:65535"};
    static const char *const bad_addrs[] = {"",        "host",    "host:",   ":80",
                                            "h:0",     "h:65536", "h:80x",   "a b:80",
                                            "[zz]:80", "h:80\n",  "[::1:80", "h:-1"};
    struct reg_server r = {.state = REG_DOWN};
    char why[64];
    strcpy(r.addr, "127.0.0.1:1");
    for (size_t i = 0; i < sizeof good_names / sizeof good_names[0]; i++) {
        strcpy(r.name, good_names[i]);
        CU_ASSERT_EQUAL(reg_row_check(&r, why, sizeof why), 0);
    }
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        strcpy(r.name, bad_names[i]);
        CU_ASSERT_EQUAL(reg_row_check(&r, why, sizeof why), -EINVAL);
        CU_ASSERT_STRING_EQUAL(why, "name is not 1-63 bytes of printable UTF-8");
        struct reg_hello h = {.name = bad_names[i], .addr = "127.0.0.1:1"};
        uint64_t session;
        CU_ASSERT_EQUAL(reg_hello(table, &h, 1, &session, why, sizeof why), -EINVAL);
    }
    strcpy(r.name, "fs1");
    for (size_t i = 0; i < sizeof good_addrs / sizeof good_addrs[0]; i++) {
        strcpy(r.addr, good_addrs[i]);
        CU_ASSERT_EQUAL(reg_row_check(&r, why, sizeof why), 0);
    }
    for (size_t i = 0; i < sizeof bad_addrs / sizeof bad_addrs[0]; i++) {
        strcpy(r.addr, bad_addrs[i]);
        CU_ASSERT_EQUAL(reg_row_check(&r, why, sizeof why), -EINVAL);
        CU_ASSERT_STRING_EQUAL(why, "address is not HOST:PORT");
    }
    strcpy(r.addr, "127.0.0.1:1");
    r.load.load1 = -0.5;
    CU_ASSERT_EQUAL(reg_row_check(&r, why, sizeof why), -EINVAL);
    r.load.load1 = 1.5;
    r.state = 9;
    CU_ASSERT_EQUAL(reg_row_check(&r, why, sizeof why), -EINVAL);
    CU_ASSERT_STRING_EQUAL(why, "state out of range");
}

void suite_registry(void)
{
    CU_pSuite s = CU_add_suite("registry", setup, teardown);
    CU_add_test(s, "transition function", test_transitions);
    CU_add_test(s, "join, heartbeat, timeout to down, rejoin", test_join_heartbeat_timeout_rejoin);
    CU_add_test(s, "drain then bye removes", test_drain_bye);
    CU_add_test(s, "duplicate name refused", test_duplicate_name);
    CU_add_test(s, "restart marks down; repair clears garbage", test_restart_and_repair);
    CU_add_test(s, "empty name refused", test_bad_hello);
    CU_add_test(s, "row check: names, addresses, numbers", test_row_check);
}
