/*
 * lgstat: loadgen's figures — exact nearest-rank percentiles, the exact
 * max whatever the reservoir keeps, errors by kind, per-server counts, and
 * the JSON shape that scripts read (every key present, even at zero).
 */
#include "convoy/lgstat.h"

#include <CUnit/CUnit.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_percentiles(void)
{
    lgstat_t *s;
    CU_ASSERT_FATAL(lgstat_new(&s) == 0);
    struct lgstat_summary m;
    lgstat_summary(s, 1.0, &m);
    CU_ASSERT_EQUAL(m.requests, 0);
    CU_ASSERT_DOUBLE_EQUAL(m.p99_ms, 0, 1e-9);
    /* 1..1000 ms, shuffled */
    for (unsigned i = 0; i < 1000; i++)
        lgstat_ok(s, (uint64_t)((i * 617) % 1000 + 1) * 1000, 10, "fs1");
    lgstat_summary(s, 2.0, &m);
    CU_ASSERT_EQUAL(m.ok, 1000);
    CU_ASSERT_DOUBLE_EQUAL(m.p50_ms, 500, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(m.p99_ms, 990, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(m.max_ms, 1000, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(m.rps, 500, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(m.bytes_per_s, 5000, 1e-9);
    /* adding after a summary sorts again */
    lgstat_ok(s, 5000000, 0, "fs1");
    lgstat_summary(s, 2.0, &m);
    CU_ASSERT_DOUBLE_EQUAL(m.max_ms, 5000, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(m.p50_ms, 501, 1e-9);
    lgstat_free(s);
}

/* Past the sample bound the max stays exact and the median near. */
static void test_reservoir(void)
{
    lgstat_t *s;
    CU_ASSERT_FATAL(lgstat_new(&s) == 0);
    uint64_t n = LGSTAT_SAMPLES_MAX + LGSTAT_SAMPLES_MAX / 2;
    for (uint64_t i = 0; i < n; i++)
        lgstat_ok(s, i % 1000, 0, NULL);
    lgstat_ok(s, 123456789, 0, NULL);
    struct lgstat_summary m;
    lgstat_summary(s, 1.0, &m);
    CU_ASSERT_EQUAL(m.ok, n + 1);
    CU_ASSERT_DOUBLE_EQUAL(m.max_ms, 123456.789, 1e-6);
    CU_ASSERT(m.p50_ms > 0.45 && m.p50_ms < 0.55);
    lgstat_free(s);
}

static void test_servers_errors(void)
{
    lgstat_t *s;
    CU_ASSERT_FATAL(lgstat_new(&s) == 0);
    lgstat_ok(s, 1, 1, "fs1");
    lgstat_ok(s, 1, 1, "fs2");
    lgstat_ok(s, 1, 1, "fs1");
    lgstat_ok(s, 1, 1, "");
    lgstat_ok(s, 1, 1, "fs\0333");
    char name[16];
    for (int i = 0; i < LGSTAT_SERVERS_MAX + 3; i++) {
        snprintf(name, sizeof name, "s%d", i);
        lgstat_ok(s, 1, 1, name);
    }
    lgstat_fail(s, LGSTAT_E_INTEGRITY);
    lgstat_fail(s, LGSTAT_E_INTEGRITY);
    lgstat_fail(s, LGSTAT_E_AUTH);
    CU_ASSERT_EQUAL(lgstat_servers(s), LGSTAT_SERVERS_MAX + 1);
    uint64_t c;
    CU_ASSERT_STRING_EQUAL(lgstat_server(s, 0, &c), "fs1");
    CU_ASSERT_EQUAL(c, 2);
    CU_ASSERT_STRING_EQUAL(lgstat_server(s, 2, &c), "unknown");
    CU_ASSERT_STRING_EQUAL(lgstat_server(s, 3, &c), "fs?3");
    CU_ASSERT_STRING_EQUAL(lgstat_server(s, LGSTAT_SERVERS_MAX, &c), "other");
    CU_ASSERT_EQUAL(c, 7);
    struct lgstat_summary m;
    lgstat_summary(s, 1.0, &m);
    CU_ASSERT_EQUAL(m.errors, 3);
    CU_ASSERT_EQUAL(m.requests, m.ok + 3);
    CU_ASSERT_EQUAL(m.err[LGSTAT_E_INTEGRITY], 2);
    lgstat_free(s);
}

static void test_json(void)
{
    lgstat_t *s;
    CU_ASSERT_FATAL(lgstat_new(&s) == 0);
    lgstat_ok(s, 2000, 100, "fs1");
    lgstat_ok(s, 4000, 100, "fs\"2");
    lgstat_fail(s, LGSTAT_E_TIMEOUT);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL(lgstat_print_json(s, 0.5, f), 0);
    fclose(f);
    cJSON *o = cJSON_Parse(text);
    CU_ASSERT_FATAL(o != NULL);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(o, "requests")->valuedouble, 3);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(o, "ok")->valuedouble, 2);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(o, "errors")->valuedouble, 1);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(o, "requests_per_s")->valuedouble, 4);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(o, "bytes_per_s")->valuedouble, 400);
    cJSON *lat = cJSON_GetObjectItem(o, "latency_ms");
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(lat, "p50")->valuedouble, 2);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(lat, "max")->valuedouble, 4);
    cJSON *err = cJSON_GetObjectItem(o, "errors_by_kind");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(err), LGSTAT_E_COUNT);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(err, "timeout")->valuedouble, 1);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(err, "integrity")->valuedouble, 0);
    cJSON *srv = cJSON_GetObjectItem(o, "servers");
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(srv, "fs\"2")->valuedouble, 1);
    cJSON_Delete(o);
    free(text);
    lgstat_free(s);
}

void suite_lgstat(void)
{
    CU_pSuite s = CU_add_suite("lgstat", NULL, NULL);
    CU_add_test(s, "p50/p99/max exact, nearest rank", test_percentiles);
    CU_add_test(s, "past the sample bound: exact max, near median", test_reservoir);
    CU_add_test(s, "per-server counts and errors by kind", test_servers_errors);
    CU_add_test(s, "the JSON report's shape", test_json);
}
