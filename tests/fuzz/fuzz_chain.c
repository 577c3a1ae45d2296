/*
 * fuzz_chain — libFuzzer target for the compute chain's message parsers
 * (chain_msg.h): every input that is a JSON object is read as each of
 * CHAIN_SET_NEXT, WORK, ACCEPTED/CANCEL, RESULT and RELEASED, which must answer 0
 * or FRAME_ESCHEMA with a reason. A message that parses must come back
 * the same through its writer and the parser again, and its sizes must
 * stay within the bounds the parser promises.
 */
#include "convoy/chain_msg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t status[CHAIN_COUNT_MAX], status2[CHAIN_COUNT_MAX];
static double resid[CHAIN_COUNT_MAX], resid2[CHAIN_COUNT_MAX];
static uint64_t sum[CHAIN_COUNT_MAX], sum2[CHAIN_COUNT_MAX];

static void check(int rc, const char *why)
{
    if (rc != 0 && (rc != FRAME_ESCHEMA || why[0] == '\0'))
        abort();
}

static void fuzz_next(const cJSON *meta)
{
    struct chain_next m, m2;
    char why[256] = "";
    int rc = chain_next_parse(meta, &m, why, sizeof why);
    check(rc, why);
    if (rc != 0)
        return;
    cJSON *again = chain_next_json(&m);
    if (again == NULL || chain_next_parse(again, &m2, why, sizeof why) != 0 ||
        m2.epoch != m.epoch || strcmp(m2.prev, m.prev) || strcmp(m2.next, m.next) ||
        strcmp(m2.next_addr, m.next_addr) || m2.behind != m.behind ||
        strcmp(m2.next_host, m.next_host) != 0)
        abort();
    cJSON_Delete(again);
}

/* A lane named by a message that parsed: a lane's name and size, and the
 * same after the round trip. */
static void check_shm(const struct chain_shm *a, const struct chain_shm *b)
{
    if ((a->lane == NULL) != (b->lane == NULL))
        abort();
    if (a->lane && (strcmp(a->lane, b->lane) != 0 || a->size != b->size || a->pos != b->pos ||
                    a->size == 0 || a->size % 4096 != 0))
        abort();
}

static void fuzz_release(const cJSON *meta)
{
    struct chain_release m, m2;
    char why[256] = "";
    int rc = chain_release_parse(meta, &m, why, sizeof why);
    check(rc, why);
    if (rc != 0)
        return;
    cJSON *again = chain_release_json(&m);
    if (again == NULL || chain_release_parse(again, &m2, why, sizeof why) != 0 ||
        strcmp(m.lane, m2.lane) != 0 || m.upto != m2.upto)
        abort();
    cJSON_Delete(again);
}

static void fuzz_work(const cJSON *meta)
{
    struct chain_work m, m2;
    char why[256] = "";
    int rc = chain_work_parse(meta, &m, why, sizeof why);
    check(rc, why);
    if (rc != 0)
        return;
    if (m.n == 0 || m.n > CHAIN_N_MAX || m.count == 0 || m.count > CHAIN_COUNT_MAX ||
        chain_work_body_len(&m) > CHAIN_BODY_MAX)
        abort();
    cJSON *again = chain_work_json(&m);
    if (again == NULL || chain_work_parse(again, &m2, why, sizeof why) != 0 || m2.job != m.job ||
        m2.first != m.first || m2.count != m.count || m2.n != m.n || m2.residual != m.residual ||
        m2.output != m.output || m2.gen != m.gen ||
        (m.gen && (m2.seed != m.seed || strcmp(m2.kind, m.kind) != 0)) || (m.gen && m.shm.lane))
        abort();
    check_shm(&m.shm, &m2.shm);
    cJSON_Delete(again);
}

static void fuzz_span(const cJSON *meta)
{
    struct chain_span m, m2;
    char why[256] = "";
    int rc = chain_span_parse(meta, &m, why, sizeof why);
    check(rc, why);
    if (rc != 0)
        return;
    cJSON *again = chain_span_json(&m);
    if (again == NULL || chain_span_parse(again, &m2, why, sizeof why) != 0 || m2.job != m.job ||
        m2.first != m.first || m2.count != m.count)
        abort();
    cJSON_Delete(again);
}

static void fuzz_result(const cJSON *meta)
{
    struct chain_result m = {.status = status, .resid = resid, .sum = sum};
    struct chain_result m2 = {.status = status2, .resid = resid2, .sum = sum2};
    char why[256] = "";
    int rc = chain_result_parse(meta, &m, CHAIN_COUNT_MAX, why, sizeof why);
    check(rc, why);
    if (rc != 0)
        return;
    if (m.count > CHAIN_COUNT_MAX || chain_items_len(m.count, m.n) > CHAIN_BODY_MAX)
        abort();
    cJSON *again = chain_result_json(&m);
    if (again == NULL || chain_result_parse(again, &m2, CHAIN_COUNT_MAX, why, sizeof why) != 0 ||
        m2.job != m.job || m2.first != m.first || m2.count != m.count || m2.n != m.n ||
        m2.has_resid != m.has_resid || m2.has_sum != m.has_sum ||
        memcmp(status, status2, m.count) != 0 ||
        (m.has_sum && memcmp(sum, sum2, m.count * sizeof sum[0]) != 0))
        abort();
    for (uint32_t i = 0; m.has_resid && i < m.count; i++)
        if (!(resid[i] == resid2[i] || (isnan(resid[i]) && isnan(resid2[i]))))
            abort();
    check_shm(&m.shm, &m2.shm);
    cJSON_Delete(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *meta = cJSON_ParseWithLength((const char *)data, size);
    if (cJSON_IsObject(meta)) {
        fuzz_next(meta);
        fuzz_work(meta);
        fuzz_span(meta);
        fuzz_result(meta);
        fuzz_release(meta);
    }
    cJSON_Delete(meta);
    return 0;
}
