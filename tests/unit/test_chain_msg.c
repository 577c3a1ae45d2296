/* chain_msg: each message's round trip and every refusal. */
#include "convoy/chain_msg.h"
#include "convoy/gj.h"

#include <CUnit/CUnit.h>
#include <math.h>
#include <string.h>

static char why[256];

/* Parses text as meta with parse, expecting rc; why kept. */
#define EXPECT(parse, text, m, want)                                                               \
    do {                                                                                           \
        cJSON *j_ = cJSON_Parse(text);                                                             \
        CU_ASSERT_PTR_NOT_NULL_FATAL(j_);                                                          \
        int rc_ = parse(j_, m, why, sizeof why);                                                   \
        if (rc_ != (want))                                                                         \
            fprintf(stderr, "chain_msg: %s -> %d (%s)\n", text, rc_, why);                         \
        CU_ASSERT_EQUAL(rc_, want);                                                                \
        cJSON_Delete(j_);                                                                          \
    } while (0)

static void test_next(void)
{
    struct chain_next m = {7, "frontend", "c2", "127.0.0.1:9000", 12, 0, ""}, back;
    cJSON *j = chain_next_json(&m);
    CU_ASSERT_EQUAL_FATAL(chain_next_parse(j, &back, why, sizeof why), 0);
    CU_ASSERT_EQUAL(back.epoch, 7);
    CU_ASSERT_STRING_EQUAL(back.prev, "frontend");
    CU_ASSERT_STRING_EQUAL(back.next_addr, "127.0.0.1:9000");
    CU_ASSERT_EQUAL(back.behind, 12);
    CU_ASSERT_EQUAL(back.weight, 0); /* none measured yet: not sent */
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(j, "weight"));
    cJSON_Delete(j);
    m.weight = 33;
    j = chain_next_json(&m);
    CU_ASSERT_EQUAL_FATAL(chain_next_parse(j, &back, why, sizeof why), 0);
    CU_ASSERT_EQUAL(back.weight, 33);
    cJSON_Delete(j);
    EXPECT(chain_next_parse,
           "{\"epoch\":1,\"prev\":\"c1\",\"next\":\"\",\"next_addr\":\"\",\"behind\":0}", &back, 0);
    static const char *const bad[] = {
        "{\"epoch\":1,\"prev\":\"c 1\",\"next\":\"\",\"next_addr\":\"\",\"behind\":0}",
        "{\"epoch\":1,\"prev\":\"c1\",\"next\":\"c2\",\"next_addr\":\"\",\"behind\":0}",
        "{\"epoch\":1,\"prev\":\"c1\",\"next\":\"\",\"next_addr\":\"1.2.3.4:5\",\"behind\":0}",
        "{\"epoch\":1,\"prev\":\"c1\",\"next\":\"c2\",\"next_addr\":\"x\\ny:1\",\"behind\":0}",
        "{\"epoch\":1,\"prev\":\"c1\",\"next\":\"\",\"next_addr\":\"\",\"behind\":-1}",
        "{\"epoch\":1,\"prev\":\"c1\",\"next\":\"\",\"next_addr\":\"\"}",
        "{\"epoch\":1,\"prev\":\"c1\",\"next\":\"\",\"next_addr\":\"\",\"behind\":0,\"x\":1}",
        "{\"epoch\":1,\"prev\":\"c1\",\"next\":\"\",\"next_addr\":\"\",\"behind\":0,\"weight\":-2}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT(chain_next_parse, bad[i], &back, FRAME_ESCHEMA);
    m.next_host = "0bd1f3c2-6e55-4cc6-9a1e-52d6c7a9f0aa";
    j = chain_next_json(&m);
    CU_ASSERT_EQUAL_FATAL(chain_next_parse(j, &back, why, sizeof why), 0);
    CU_ASSERT_STRING_EQUAL(back.next_host, m.next_host);
    cJSON_Delete(j);
    EXPECT(chain_next_parse,
           "{\"epoch\":1,\"prev\":\"c1\",\"next\":\"\",\"next_addr\":\"\",\"behind\":0,"
           "\"next_host\":\"../x\"}",
           &back, FRAME_ESCHEMA);
}

/* Matrices in a lane: WORK, RESULT and RELEASED name it; a lane name
 * that is not one, a size no lane has, a generated WORK with one: refused. */
static void test_lanes(void)
{
    const char *lane = "/convoy-buf-42-00112233445566ff";
    struct chain_work w = {.job = 1, .count = 2, .n = 4, .shm = {lane, 1u << 20, 8192}}, wb;
    cJSON *j = chain_work_json(&w);
    CU_ASSERT_EQUAL_FATAL(chain_work_parse(j, &wb, why, sizeof why), 0);
    CU_ASSERT_STRING_EQUAL(wb.shm.lane, lane);
    CU_ASSERT(wb.shm.size == 1u << 20 && wb.shm.pos == 8192);
    cJSON_Delete(j);
    struct chain_release r = {lane, 123456}, rb;
    j = chain_release_json(&r);
    CU_ASSERT_EQUAL_FATAL(chain_release_parse(j, &rb, why, sizeof why), 0);
    CU_ASSERT(strcmp(rb.lane, lane) == 0 && rb.upto == 123456);
    cJSON_Delete(j);
    static const char *const bad_work[] = {
        "{\"job\":1,\"first\":0,\"count\":1,\"n\":2,\"op\":\"invert\",\"residual\":false,"
        "\"output\":true,\"shm\":{\"lane\":\"/etc/passwd\",\"size\":4096,\"pos\":0}}",
        "{\"job\":1,\"first\":0,\"count\":1,\"n\":2,\"op\":\"invert\",\"residual\":false,"
        "\"output\":true,\"shm\":{\"lane\":\"/convoy-buf-42-00112233445566ff\",\"size\":4097,"
        "\"pos\":0}}",
        "{\"job\":1,\"first\":0,\"count\":1,\"n\":2,\"op\":\"invert\",\"residual\":false,"
        "\"output\":true,\"shm\":{\"lane\":\"/convoy-buf-42-00112233445566ff\",\"size\":0,"
        "\"pos\":0}}",
        "{\"job\":1,\"first\":0,\"count\":1,\"n\":2,\"op\":\"invert\",\"residual\":false,"
        "\"output\":true,\"gen\":{\"seed\":1,\"kind\":\"spd\"},"
        "\"shm\":{\"lane\":\"/convoy-buf-42-00112233445566ff\",\"size\":4096,\"pos\":0}}",
        "{\"job\":1,\"first\":0,\"count\":1,\"n\":2,\"op\":\"invert\",\"residual\":false,"
        "\"output\":true,\"shm\":{\"lane\":\"/convoy-buf-42-00112233445566ff\",\"size\":4096}}",
    };
    for (size_t i = 0; i < sizeof bad_work / sizeof bad_work[0]; i++)
        EXPECT(chain_work_parse, bad_work[i], &wb, FRAME_ESCHEMA);
    EXPECT(chain_release_parse, "{\"lane\":\"x\",\"upto\":1}", &rb, FRAME_ESCHEMA);
    EXPECT(chain_release_parse, "{\"lane\":\"/convoy-buf-42-00112233445566ff\",\"upto\":-1}", &rb,
           FRAME_ESCHEMA);
}

static void test_work(void)
{
    struct chain_work m = {.job = 3,
                           .first = 100,
                           .count = 8,
                           .n = 64,
                           .residual = true,
                           .output = false,
                           .gen = true,
                           .seed = 42,
                           .kind = "spd"},
                      back;
    cJSON *j = chain_work_json(&m);
    CU_ASSERT_EQUAL_FATAL(chain_work_parse(j, &back, why, sizeof why), 0);
    CU_ASSERT(back.gen && back.seed == 42 && strcmp(back.kind, "spd") == 0);
    CU_ASSERT(back.residual && !back.output && back.first == 100 && back.count == 8);
    CU_ASSERT_EQUAL(chain_work_body_len(&back), 0);
    cJSON_Delete(j);
    m.gen = false;
    j = chain_work_json(&m);
    CU_ASSERT_EQUAL(chain_work_parse(j, &back, why, sizeof why), 0);
    CU_ASSERT_FALSE(back.gen);
    CU_ASSERT_EQUAL(chain_work_body_len(&back), 8ull * 64 * 64 * 8);
    cJSON_Delete(j);
#define W(rest) "{\"job\":1,\"first\":0,\"residual\":false,\"output\":true," rest "}"
    static const char *const bad[] = {
        W("\"count\":1,\"n\":0,\"op\":\"invert\""),
        W("\"count\":1,\"n\":8193,\"op\":\"invert\""),
        W("\"count\":0,\"n\":4,\"op\":\"invert\""),
        W("\"count\":65537,\"n\":1,\"op\":\"invert\""),
        W("\"count\":600,\"n\":8192,\"op\":\"invert\""), /* 300 GiB of body */
        W("\"count\":1,\"n\":4,\"op\":\"solve\""),
        W("\"count\":1,\"n\":4,\"op\":\"invert\",\"gen\":{\"seed\":1,\"kind\":\"evil\"}"),
        W("\"count\":1,\"n\":4,\"op\":\"invert\",\"gen\":{\"seed\":1}"),
        W("\"count\":1,\"n\":4,\"op\":\"invert\",\"gen\":{\"seed\":1,\"kind\":\"spd\",\"x\":0}"),
        W("\"count\":1.5,\"n\":4,\"op\":\"invert\""),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT(chain_work_parse, bad[i], &back, FRAME_ESCHEMA);
    EXPECT(chain_work_parse, W("\"count\":4096,\"n\":64,\"op\":\"invert\""), &back, 0);
#undef W
}

static void test_span(void)
{
    struct chain_span m = {9, 10, 5}, back;
    cJSON *j = chain_span_json(&m);
    CU_ASSERT_EQUAL(chain_span_parse(j, &back, why, sizeof why), 0);
    CU_ASSERT(back.job == 9 && back.first == 10 && back.count == 5);
    cJSON_Delete(j);
    EXPECT(chain_span_parse, "{\"job\":0,\"first\":0,\"count\":0}", &back, FRAME_ESCHEMA);
    EXPECT(chain_span_parse, "{\"job\":1,\"first\":-2,\"count\":0}", &back, FRAME_ESCHEMA);
}

static void test_result(void)
{
    uint8_t st[3] = {GJ_OK, GJ_SINGULAR, GJ_INVALID}, st2[3];
    double rs[3] = {1.5, NAN, NAN}, rs2[3];
    struct chain_result m = {.job = 2,
                             .first = 7,
                             .count = 3,
                             .n = 16,
                             .ms = 40,
                             .has_resid = true,
                             .status = st,
                             .resid = rs},
                        back = {.status = st2, .resid = rs2};
    cJSON *j = chain_result_json(&m);
    CU_ASSERT_EQUAL_FATAL(chain_result_parse(j, &back, 3, why, sizeof why), 0);
    CU_ASSERT_EQUAL(memcmp(st, st2, 3), 0);
    CU_ASSERT(back.has_resid && rs2[0] == 1.5 && isnan(rs2[1]) && isnan(rs2[2]));
    CU_ASSERT_EQUAL(chain_result_parse(j, &back, 2, why, sizeof why), FRAME_ESCHEMA); /* max */
    CU_ASSERT_FALSE(back.has_sum);
    cJSON_Delete(j);
    /* checksums, 64 bits as hex */
    uint64_t sums[3] = {0xfedcba9876543210ull, 0, 1}, sums2[3] = {0};
    m.has_sum = true;
    m.sum = sums;
    back.sum = sums2;
    j = chain_result_json(&m);
    CU_ASSERT_EQUAL_FATAL(chain_result_parse(j, &back, 3, why, sizeof why), 0);
    CU_ASSERT_TRUE(back.has_sum);
    CU_ASSERT_EQUAL(memcmp(sums, sums2, sizeof sums), 0);
    cJSON_Delete(j);
    /* one word of 0.0 in lane 0, lanes 1–3 untouched, then the four folded */
    double zero = 0;
    const uint64_t basis = 0xcbf29ce484222325ull, prime = 0x100000001b3ull;
    uint64_t lanes[4] = {basis * prime, basis ^ 1, basis ^ 2, basis ^ 3}, h = basis;
    for (int k = 0; k < 4; k++)
        h = (h ^ lanes[k]) * prime;
    CU_ASSERT_EQUAL(chain_sum(&zero, 1), h);
    double two[4] = {1, 2, 3, 4}, swapped[4] = {2, 1, 3, 4};
    CU_ASSERT_NOT_EQUAL(chain_sum(two, 2), chain_sum(swapped, 2)); /* order counts */
#define R(rest) "{\"job\":1,\"first\":0,\"count\":2,\"n\":4,\"ms\":1," rest "}"
    static const char *const bad[] = {
        R("\"status\":[\"ok\"]"),
        R("\"status\":[\"ok\",\"great\"]"),
        R("\"status\":[\"ok\",1]"),
        R("\"status\":[\"ok\",\"ok\"],\"resid\":[1]"),
        R("\"status\":[\"ok\",\"ok\"],\"resid\":[1,-1]"),
        R("\"status\":[\"ok\",\"ok\"],\"resid\":[1,\"x\"]"),
        R("\"status\":[\"ok\",\"ok\"],\"sum\":[\"0000000000000000\"]"),
        R("\"status\":[\"ok\",\"ok\"],\"sum\":[\"0000000000000000\",\"ABCDEF0123456789\"]"),
        R("\"status\":[\"ok\",\"ok\"],\"sum\":[\"0\",\"1\"]"),
        R("\"status\":[\"ok\",\"ok\"],\"sum\":[1,2]"),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *b = cJSON_Parse(bad[i]);
        CU_ASSERT_EQUAL(chain_result_parse(b, &back, 3, why, sizeof why), FRAME_ESCHEMA);
        cJSON_Delete(b);
    }
    cJSON *ok = cJSON_Parse(R("\"status\":[\"ok\",\"singular\"]"));
    CU_ASSERT_EQUAL(chain_result_parse(ok, &back, 3, why, sizeof why), 0);
    CU_ASSERT(!back.has_resid && isnan(rs2[0]));
    cJSON_Delete(ok);
#undef R
}

void suite_chain_msg(void)
{
    CU_pSuite s = CU_add_suite("chain_msg", NULL, NULL);
    CU_add_test(s, "CHAIN_SET_NEXT: round trip, names and addresses", test_next);
    CU_add_test(s, "WORK: round trip, gen, every bound", test_work);
    CU_add_test(s, "ACCEPTED and CANCEL spans", test_span);
    CU_add_test(s, "lanes: WORK, RESULT and RELEASED name them", test_lanes);
    CU_add_test(s, "RESULT: statuses, residuals, counts", test_result);
}
