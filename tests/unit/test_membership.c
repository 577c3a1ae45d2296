/*
 * membership: the messages' schemas, as a hostile member or coordinator
 * would test them: every number against its C type, every string against
 * what it names.
 */
#include "convoy/membership.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define LOAD "\"active\":0,\"bytes_per_s\":0,\"load1\":0.5,\"disk_free\":0"
#define GOOD                                                                                       \
    "\"http\":\"127.0.0.1:8080\",\"weight\":1,\"capacity\":64,\"files\":2,\"bytes\":3," LOAD

/* Parses a HELLO given as JSON; returns the code, the reason in why. */
static int hello(const char *json, struct reg_hello *h, char *why, size_t whylen)
{
    cJSON *meta = cJSON_Parse(json);
    CU_ASSERT_PTR_NOT_NULL_FATAL(meta);
    why[0] = '\0';
    int rc = mbr_hello_parse(meta, h, why, whylen);
    cJSON_Delete(meta);
    return rc;
}

static void test_round_trip(void)
{
    struct reg_hello in = {
        .name = "fs1",
        .addr = "[::1]:8443",
        .weight = 4294967295u,
        .capacity = 7,
        .files = 9007199254740992ull,
        .bytes = 5,
        .load = {.active = 2, .bytes_per_s = 10, .load1 = 0.25, .disk_free = 1ull << 40}};
    cJSON *meta = mbr_hello_json(&in);
    CU_ASSERT_PTR_NOT_NULL_FATAL(meta);
    struct reg_hello out;
    char why[128] = "";
    CU_ASSERT_EQUAL(mbr_hello_parse(meta, &out, why, sizeof why), 0);
    CU_ASSERT_STRING_EQUAL(out.name, "fs1");
    CU_ASSERT_STRING_EQUAL(out.addr, "[::1]:8443");
    CU_ASSERT_EQUAL(out.weight, 4294967295u);
    CU_ASSERT_EQUAL(out.files, 9007199254740992ull);
    CU_ASSERT_EQUAL(out.load.disk_free, 1ull << 40);
    cJSON_Delete(meta);
}

/* A HELLO with these three numbers as written, the rest valid. */
static int hello_numbers(const char *weight, const char *capacity, const char *active,
                         struct reg_hello *h, char *why, size_t whylen)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"http\":\"127.0.0.1:1\",\"weight\":%s,\"capacity\":%s,\"files\":0,\"bytes\":0,"
             "\"active\":%s,\"bytes_per_s\":0,\"load1\":0,\"disk_free\":0}",
             weight, capacity, active);
    return hello(json, h, why, whylen);
}

/* The values a hostile peer used: each was cast to 32 bits unchecked. */
static void test_numbers_out_of_range(void)
{
    static const struct {
        const char *weight, *capacity, *active, *why;
    } cases[] = {
        {"9007199254740992", "1", "0", "out of range field 'weight'"}, /* 2^53: was 0 */
        {"1", "4294967301", "0", "out of range field 'capacity'"},     /* 2^32 + 5: was 5 */
        {"4294967296", "1", "0", "out of range field 'weight'"},
        {"1", "1", "4294967296", "out of range field 'active'"},
    };
    struct reg_hello h;
    char why[128];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CU_ASSERT_EQUAL(
            hello_numbers(cases[i].weight, cases[i].capacity, cases[i].active, &h, why, sizeof why),
            FRAME_ESCHEMA);
        CU_ASSERT_STRING_EQUAL(why, cases[i].why);
    }
    CU_ASSERT_EQUAL(hello_numbers("4294967295", "4294967295", "4294967295", &h, why, sizeof why),
                    0);
    CU_ASSERT_EQUAL(h.weight, 4294967295u);
    CU_ASSERT_EQUAL(h.capacity, 4294967295u);
    CU_ASSERT_EQUAL(h.load.active, 4294967295u);
}

static int welcome(const char *json, const struct frame_field *extra, size_t nextra,
                   struct mbr_welcome *w, char *why, size_t whylen)
{
    cJSON *meta = cJSON_Parse(json);
    CU_ASSERT_PTR_NOT_NULL_FATAL(meta);
    why[0] = '\0';
    int rc = mbr_welcome_parse(meta, extra, nextra, w, why, whylen);
    cJSON_Delete(meta);
    return rc;
}

static void test_welcome(void)
{
    struct mbr_welcome w;
    char why[128];
    /* 2^32 + 1: read as 1 */
    CU_ASSERT_EQUAL(welcome("{\"session\":1,\"heartbeat_ms\":4294967297,\"dead_after_ms\":9}", NULL,
                            0, &w, why, sizeof why),
                    FRAME_ESCHEMA);
    CU_ASSERT_STRING_EQUAL(why, "out of range field 'heartbeat_ms'");
    CU_ASSERT_EQUAL(welcome("{\"session\":9007199254740992,\"heartbeat_ms\":100,"
                            "\"dead_after_ms\":4294967295}",
                            NULL, 0, &w, why, sizeof why),
                    0);
    CU_ASSERT_EQUAL(w.session, 9007199254740992ull);
    CU_ASSERT_EQUAL(w.dead_after_ms, 4294967295u);
    /* The coordinator's own fields: refused unless the member lists them. */
    static const struct frame_field key[] = {{"ticket_key", FF_STRING, true}};
    const char *with_key =
        "{\"session\":1,\"heartbeat_ms\":100,\"dead_after_ms\":500,\"ticket_key\":\"ab\"}";
    CU_ASSERT_EQUAL(welcome(with_key, NULL, 0, &w, why, sizeof why), FRAME_ESCHEMA);
    CU_ASSERT_STRING_EQUAL(why, "unknown field 'ticket_key'");
    CU_ASSERT_EQUAL(welcome(with_key, key, 1, &w, why, sizeof why), 0);
    CU_ASSERT_EQUAL(welcome("{\"session\":1,\"heartbeat_ms\":100,\"dead_after_ms\":500}", key, 1,
                            &w, why, sizeof why),
                    FRAME_ESCHEMA);
    CU_ASSERT_STRING_EQUAL(why, "missing field 'ticket_key'");
    static struct frame_field many[MBR_WELCOME_EXTRA_MAX + 1];
    CU_ASSERT_EQUAL(welcome(with_key, many, MBR_WELCOME_EXTRA_MAX + 1, &w, why, sizeof why),
                    -E2BIG);
}

/* Strings that would forge a log line or reach a terminal raw. */
static void test_strings(void)
{
    static const char *const bad_http[] = {
        "127.0.0.1:\\n80", /* the port reader skips blanks: a newline */
        "127.0.0.1:80\\u001b[2J", "127.0.0.1: 80",  "127.0.0.1:+80", "127.0.0.1:0",
        "127.0.0.1:65536",        "fs1.example:80", "127.0.0.1",     "",
    };
    for (size_t i = 0; i < sizeof bad_http / sizeof bad_http[0]; i++) {
        char json[512], why[128];
        snprintf(json, sizeof json,
                 "{\"http\":\"%s\",\"weight\":1,\"capacity\":1,\"files\":0,\"bytes\":0," LOAD "}",
                 bad_http[i]);
        struct reg_hello h;
        CU_ASSERT_EQUAL(hello(json, &h, why, sizeof why), FRAME_ESCHEMA);
        CU_ASSERT(strncmp(why, "bad http", 8) == 0);
    }
    char json[512], why[128];
    struct reg_hello h;
    snprintf(json, sizeof json, "{\"name\":\"fs1\\u001b[31m\",%s}", GOOD);
    CU_ASSERT_EQUAL(hello(json, &h, why, sizeof why), FRAME_ESCHEMA);
    CU_ASSERT(strncmp(why, "bad name", 8) == 0);
    CU_ASSERT_TRUE(mbr_name_valid("fs-1.eu_west"));
    CU_ASSERT_TRUE(
        mbr_name_valid("a23456789012345678901234567890123456789012345678901234567890123"));
    CU_ASSERT_FALSE(
        mbr_name_valid("a234567890123456789012345678901234567890123456789012345678901234"));
    CU_ASSERT_FALSE(mbr_name_valid(""));
    CU_ASSERT_FALSE(mbr_name_valid(NULL));
    CU_ASSERT_FALSE(mbr_name_valid("fs 1"));
    CU_ASSERT_FALSE(mbr_name_valid("fs1\n"));
    CU_ASSERT_TRUE(mbr_addr_valid("localhost:8080"));
    CU_ASSERT_TRUE(mbr_addr_valid("[::1]:1"));
    CU_ASSERT_TRUE(mbr_addr_valid("10.0.0.1:65535"));
    CU_ASSERT_FALSE(mbr_addr_valid(NULL));
}

void suite_membership(void)
{
    CU_pSuite s = CU_add_suite("membership", NULL, NULL);
    CU_add_test(s, "HELLO round trip at the edges of each type", test_round_trip);
    CU_add_test(s, "HELLO numbers beyond their C type are refused", test_numbers_out_of_range);
    CU_add_test(s, "WELCOME: ranges and the coordinator's own fields", test_welcome);
    CU_add_test(s, "name and http that could forge a log line are refused", test_strings);
}
