/* job: the three sources and the options parsed, inline items read back,
 * and every refusal with its exact JSON path and text. */
#include "convoy/job.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char why[JOB_ERR_MAX];

/* Parses text (its strlen), expecting success; the document is returned. */
static cJSON *accept(const char *text, struct job_spec *spec)
{
    cJSON *doc = NULL;
    int rc = job_parse(text, strlen(text), spec, &doc, why, sizeof why);
    if (rc != 0)
        fprintf(stderr, "job: %s -> %d (%s)\n", text, rc, why);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(doc);
    return doc;
}

/* Parses len bytes at text, expecting -EINVAL with exactly want. */
static void refuse_len(const char *text, size_t len, const char *want)
{
    struct job_spec spec;
    cJSON *doc = (cJSON *)&spec; /* must come back NULL */
    int rc = job_parse(text, len, &spec, &doc, why, sizeof why);
    if (rc != -EINVAL || strcmp(why, want) != 0)
        fprintf(stderr, "job: %.80s -> %d\n  got  %s\n  want %s\n", text, rc, why, want);
    CU_ASSERT_EQUAL(rc, -EINVAL);
    CU_ASSERT_STRING_EQUAL(why, want);
    CU_ASSERT_PTR_NULL(doc);
}

static void refuse(const char *text, const char *want)
{
    refuse_len(text, strlen(text), want);
}

static void test_inline(void)
{
    struct job_spec spec;
    const char *text = "{\"op\":\"invert\",\"matrices\":[[[4,7],[2,6]],[[1,2],[3,4]]]}";
    cJSON *doc = accept(text, &spec);
    CU_ASSERT_EQUAL(spec.source, JOB_INLINE);
    CU_ASSERT_STRING_EQUAL(spec.op->name, "invert");
    CU_ASSERT(spec.op->square);
    CU_ASSERT(spec.items == 2 && spec.n == 2);
    CU_ASSERT_EQUAL(spec.output, JOB_OUT_INLINE);
    CU_ASSERT(!spec.residuals && spec.priority == 0 && spec.deadline_s == 0);
    double one[4], both[8];
    CU_ASSERT_EQUAL(job_inline_item(&spec, 1, one), 0);
    CU_ASSERT(one[0] == 1 && one[1] == 2 && one[2] == 3 && one[3] == 4);
    CU_ASSERT_EQUAL(job_inline_items(&spec, 0, 2, both), 0);
    CU_ASSERT(both[0] == 4 && both[1] == 7 && both[2] == 2 && both[3] == 6 && both[4] == 1 &&
              both[7] == 4);
    CU_ASSERT_EQUAL(job_inline_item(&spec, 2, one), -ERANGE);
    CU_ASSERT_EQUAL(job_inline_items(&spec, 1, 2, both), -ERANGE);
    CU_ASSERT_EQUAL(job_inline_items(&spec, UINT64_MAX, 2, both), -ERANGE);
    cJSON_Delete(doc);
    /* Any finite value, singular items too; a document need not end in NUL. */
    char buf[128];
    const char *one_item = "{\"op\":\"invert\",\"matrices\":[[[0,0],[-1.5e300,1e-310]]]}";
    snprintf(buf, sizeof buf, "%s garbage", one_item);
    doc = NULL;
    CU_ASSERT_EQUAL_FATAL(job_parse(buf, strlen(one_item), &spec, &doc, why, sizeof why), 0);
    CU_ASSERT_EQUAL(job_inline_item(&spec, 0, one), 0);
    CU_ASSERT(one[0] == 0 && one[2] == -1.5e300 && one[3] == 1e-310);
    cJSON_Delete(doc);
    doc = accept("{\"matrices\":[[[2]]],\"output\":\"npy\",\"op\":\"invert\"}", &spec);
    CU_ASSERT(spec.items == 1 && spec.n == 1 && spec.output == JOB_OUT_NPY);
    cJSON_Delete(doc);
}

static void test_generate(void)
{
    struct job_spec spec;
    cJSON *doc = accept("{\"op\":\"invert\",\"generate\":{\"count\":1000,\"n\":256,\"seed\":7,"
                        "\"kind\":\"uniform\"}}",
                        &spec);
    CU_ASSERT_EQUAL(spec.source, JOB_GENERATE);
    CU_ASSERT(spec.items == 1000 && spec.n == 256 && spec.seed == 7);
    CU_ASSERT_STRING_EQUAL(spec.kind, "uniform");
    CU_ASSERT_EQUAL(spec.output, JOB_OUT_NPY);
    CU_ASSERT_PTR_NULL(spec.matrices);
    double x;
    CU_ASSERT_EQUAL(job_inline_item(&spec, 0, &x), -ERANGE);
    cJSON_Delete(doc);
    doc = accept("{\"op\":\"invert\",\"generate\":{\"kind\":\"hilbert\",\"seed\":9007199254740992,"
                 "\"n\":8192,\"count\":16777216},\"output\":\"none\"}",
                 &spec);
    CU_ASSERT(spec.seed == 1ull << 53 && spec.n == 8192 && spec.items == 1u << 24);
    CU_ASSERT_EQUAL(spec.output, JOB_OUT_NONE);
    cJSON_Delete(doc);
    /* Exactly 2^27 numbers may come back inline. */
    doc = accept("{\"op\":\"invert\",\"generate\":{\"count\":2048,\"n\":256,\"seed\":0,"
                 "\"kind\":\"spd\"},\"output\":\"inline\"}",
                 &spec);
    CU_ASSERT_EQUAL(spec.output, JOB_OUT_INLINE);
    cJSON_Delete(doc);
}

static void test_input_options(void)
{
    struct job_spec spec;
    cJSON *doc = accept("{\"op\":\"invert\",\"input\":\"batch.npy\",\"residuals\":true,"
                        "\"output\":\"none\",\"priority\":9,\"deadline_s\":2.5}",
                        &spec);
    CU_ASSERT_EQUAL(spec.source, JOB_NPY);
    CU_ASSERT(spec.items == 0 && spec.n == 0);
    CU_ASSERT_STRING_EQUAL(spec.input, "batch.npy");
    CU_ASSERT(spec.residuals && spec.output == JOB_OUT_NONE && spec.priority == 9);
    CU_ASSERT_EQUAL(spec.deadline_s, 2.5);
    cJSON_Delete(doc);
    doc = accept("{\"op\":\"invert\",\"input\":\"d/a..b.npy\",\"residuals\":false}", &spec);
    CU_ASSERT_STRING_EQUAL(spec.input, "d/a..b.npy");
    CU_ASSERT_EQUAL(spec.output, JOB_OUT_NPY);
    cJSON_Delete(doc);
    char text[400], name[256];
    memset(name, 'x', 255);
    name[255] = '\0';
    snprintf(text, sizeof text, "{\"op\":\"invert\",\"input\":\"%s\"}", name);
    doc = accept(text, &spec);
    CU_ASSERT_EQUAL(strlen(spec.input), 255);
    cJSON_Delete(doc);
    CU_ASSERT_STRING_EQUAL(job_output_str(JOB_OUT_INLINE), "inline");
    CU_ASSERT_STRING_EQUAL(job_output_str(JOB_OUT_NPY), "npy");
    CU_ASSERT_STRING_EQUAL(job_output_str(JOB_OUT_NONE), "none");
    CU_ASSERT_PTR_NOT_NULL(job_op_find("invert"));
    CU_ASSERT_PTR_NULL(job_op_find("solve"));
    CU_ASSERT_PTR_NULL(job_op_find(NULL));
}

#define OP          "{\"op\":\"invert\","
#define M2          "\"matrices\":[[[1,2],[3,4]],"
#define GEN         "\"generate\":{\"count\":4,\"n\":2,\"seed\":1,\"kind\":\"spd\""
#define GENX(field) OP "\"generate\":{" field "}}"

static void test_document(void)
{
    refuse("", "$: not JSON (at byte 0)");
    refuse("{\"op\":", "$: not JSON (at byte 5)");
    refuse("[1]", "$: expected an object");
    refuse("\"invert\"", "$: expected an object");
    refuse("{} x", "$: text after the JSON value (at byte 3)");
    refuse_len("{\"op\":\"invert\"}\0", 16, "$: a NUL byte in the document");
    refuse(OP "\"input\":\"a\\u0000b\"}", "$: \\u0000 (NUL) in a string");
    size_t big = JOB_JSON_MAX + 1;
    char *huge = malloc(big);
    CU_ASSERT_PTR_NOT_NULL_FATAL(huge);
    memset(huge, ' ', big);
    huge[0] = '{', huge[big - 1] = '}';
    refuse_len(huge, big, "$: document of 67108865 bytes over 67108864");
    free(huge);
}

static void test_fields(void)
{
    refuse("{}", "$.op: missing");
    refuse("{\"op\":1}", "$.op: expected a string");
    refuse("{\"op\":\"solve\",\"input\":\"a.npy\"}",
           "$.op: unknown operation \"solve\" (known: invert)");
    refuse("{\"op\":\"so\\\"lve\\n\"}",
           "$.op: unknown operation \"so\\x22lve\\x0a\" (known: invert)");
    refuse("{\"op\":\"0123456789012345678901234567890123456789\"}",
           "$.op: unknown operation \"01234567890123456789012345678901...\" (known: invert)");
    refuse("{\"op\":\"solve\",\"foo\":1}", "$.foo: unknown field");
    refuse(OP "\"Op\":1}", "$.Op: unknown field");
    refuse(OP "\"a b\":1}", "$[\"a b\"]: unknown field");
    refuse(OP "\"\":1}", "$[\"\"]: unknown field");
    refuse(OP "\"op\":\"invert\",\"input\":\"a\"}", "$.op: given twice");
    refuse(OP "\"residuals\":true}", "$: one of \"matrices\", \"generate\", \"input\" is required");
    refuse(OP "\"input\":\"a.npy\"," GEN "}}",
           "$.input: only one of \"matrices\", \"generate\", \"input\" may be given");
    refuse(OP M2 "[[5,6],[7,8]]],\"input\":\"a.npy\"}",
           "$.input: only one of \"matrices\", \"generate\", \"input\" may be given");
}

static void test_matrices(void)
{
    static const char *const bad[][2] = {
        {OP "\"matrices\":[]}", "$.matrices: expected a non-empty array of matrices"},
        {OP "\"matrices\":{}}", "$.matrices: expected a non-empty array of matrices"},
        {OP "\"matrices\":[5]}", "$.matrices[0]: expected an array of 1 … 8192 rows"},
        {OP "\"matrices\":[[]]}", "$.matrices[0]: expected an array of 1 … 8192 rows"},
        {OP "\"matrices\":[[5]]}", "$.matrices[0][0]: expected 1 number"},
        {OP M2 "[[1,2]]]}", "$.matrices[1]: expected 2 rows"},
        {OP M2 "[[1,2],[3,4],[5,6]]]}", "$.matrices[1]: expected 2 rows"},
        {OP M2 "7]}", "$.matrices[1]: expected 2 rows"},
        {OP M2 "[[1,2],[3]]]}", "$.matrices[1][1]: expected 2 numbers"},
        {OP M2 "[[1,2],[3,4,5]]]}", "$.matrices[1][1]: expected 2 numbers"},
        {OP M2 "[[1,2],{\"a\":1}]]}", "$.matrices[1][1]: expected 2 numbers"},
        {OP M2 "[[1,2],[3,\"x\"]]]}", "$.matrices[1][1][1]: expected a finite number"},
        {OP M2 "[[1,null],[3,4]]]}", "$.matrices[1][0][1]: expected a finite number"},
        {OP "\"matrices\":[[[1e999]]]}", "$.matrices[0][0][0]: expected a finite number"},
        {OP "\"matrices\":[[[-1e999]]]}", "$.matrices[0][0][0]: expected a finite number"},
        {OP M2 "[[1,2],[3,4]],[[1,2],[3,4]],[[1,2],[3,[4]]]]}",
         "$.matrices[3][1][1]: expected a finite number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refuse(bad[i][0], bad[i][1]);
    /* 3 items of 8192×8192 are over 2^27 numbers: refused before item 0's rows are read. */
    size_t cap = 64 + 8192 * 3;
    char *text = malloc(cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    size_t at = (size_t)snprintf(text, cap, "%s", OP "\"matrices\":[[");
    for (int r = 0; r < 8192; r++)
        at += (size_t)snprintf(text + at, cap - at, "%s[]", r ? "," : "");
    snprintf(text + at, cap - at, "],0,0]}");
    refuse(text, "$.matrices: 3 items of 8192×8192 are over 2^27 numbers inline: send a .npy as "
                 "\"input\"");
    at = (size_t)snprintf(text, cap, "%s", OP "\"matrices\":[[");
    for (int r = 0; r < 8193; r++)
        at += (size_t)snprintf(text + at, cap - at, "%s[]", r ? "," : "");
    snprintf(text + at, cap - at, "]]}");
    refuse(text, "$.matrices[0]: expected an array of 1 … 8192 rows");
    free(text);
}

static void test_generate_fields(void)
{
    static const char *const bad[][2] = {
        {OP "\"generate\":[]}",
         "$.generate: expected an object {\"count\", \"n\", \"seed\", \"kind\"}"},
        {GENX("\"count\":4,\"n\":2,\"kind\":\"spd\""), "$.generate.seed: missing"},
        {GENX("\"n\":2,\"seed\":1,\"kind\":\"spd\""), "$.generate.count: missing"},
        {OP GEN ",\"x\":0}}", "$.generate.x: unknown field"},
        {OP GEN ",\"n\":3}}", "$.generate.n: given twice"},
        {GENX("\"count\":0,\"n\":2,\"seed\":1,\"kind\":\"spd\""),
         "$.generate.count: expected a positive integer ≤ 16777216"},
        {GENX("\"count\":16777217,\"n\":2,\"seed\":1,\"kind\":\"spd\""),
         "$.generate.count: expected a positive integer ≤ 16777216"},
        {GENX("\"count\":1.5,\"n\":2,\"seed\":1,\"kind\":\"spd\""),
         "$.generate.count: expected a positive integer ≤ 16777216"},
        {GENX("\"count\":\"4\",\"n\":2,\"seed\":1,\"kind\":\"spd\""),
         "$.generate.count: expected a positive integer ≤ 16777216"},
        {GENX("\"count\":4,\"n\":8193,\"seed\":1,\"kind\":\"spd\""),
         "$.generate.n: expected a positive integer ≤ 8192"},
        {GENX("\"count\":4,\"n\":0,\"seed\":1,\"kind\":\"spd\""),
         "$.generate.n: expected a positive integer ≤ 8192"},
        {GENX("\"count\":4,\"n\":-2,\"seed\":1,\"kind\":\"spd\""),
         "$.generate.n: expected a positive integer ≤ 8192"},
        {GENX("\"count\":4,\"n\":2,\"seed\":-1,\"kind\":\"spd\""),
         "$.generate.seed: expected a non-negative integer ≤ 2^53"},
        {GENX("\"count\":4,\"n\":2,\"seed\":9007199254740994,\"kind\":\"spd\""),
         "$.generate.seed: expected a non-negative integer ≤ 2^53"},
        {GENX("\"count\":4,\"n\":2,\"seed\":0.5,\"kind\":\"spd\""),
         "$.generate.seed: expected a non-negative integer ≤ 2^53"},
        {GENX("\"count\":4,\"n\":2,\"seed\":true,\"kind\":\"spd\""),
         "$.generate.seed: expected a non-negative integer ≤ 2^53"},
        {GENX("\"count\":4,\"n\":2,\"seed\":1,\"kind\":\"normal\""),
         "$.generate.kind: unknown kind \"normal\" (known: uniform, spd, hilbert)"},
        {GENX("\"count\":4,\"n\":2,\"seed\":1,\"kind\":3"),
         "$.generate.kind: expected a string (known: uniform, spd, hilbert)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refuse(bad[i][0], bad[i][1]);
}

static void test_input_fields(void)
{
    static const char *const bad[][2] = {
        {OP "\"input\":3}", "$.input: expected a string (a relative file name)"},
        {OP "\"input\":\"\"}", "$.input: empty file name"},
        {OP "\"input\":\"/etc/passwd\"}", "$.input: absolute file name: only relative to the job"},
        {OP "\"input\":\"../x.npy\"}", "$.input: file name with a \"..\" component"},
        {OP "\"input\":\"a/../b\"}", "$.input: file name with a \"..\" component"},
        {OP "\"input\":\"a/..\"}", "$.input: file name with a \"..\" component"},
        {OP "\"input\":\"..\"}", "$.input: file name with a \"..\" component"},
        {OP "\"input\":\"a\\nb\"}", "$.input: file name with a control character"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refuse(bad[i][0], bad[i][1]);
    char text[400], name[257];
    memset(name, 'x', 256);
    name[256] = '\0';
    snprintf(text, sizeof text, "{\"op\":\"invert\",\"input\":\"%s\"}", name);
    refuse(text, "$.input: file name over 255 bytes");
}

static void test_option_fields(void)
{
    static const char *const bad[][2] = {
        {OP "\"input\":\"a\",\"residuals\":1}", "$.residuals: expected true or false"},
        {OP "\"input\":\"a\",\"residuals\":null}", "$.residuals: expected true or false"},
        {OP "\"input\":\"a\",\"output\":\"csv\"}",
         "$.output: expected \"inline\", \"npy\" or \"none\""},
        {OP "\"input\":\"a\",\"output\":true}",
         "$.output: expected \"inline\", \"npy\" or \"none\""},
        {OP "\"generate\":{\"count\":2049,\"n\":256,\"seed\":0,\"kind\":\"spd\"},"
            "\"output\":\"inline\"}",
         "$.output: inline results of 2049 items of 256×256 are over 2^27 numbers: use \"npy\""},
        {OP "\"input\":\"a\",\"priority\":10}", "$.priority: expected an integer 0 … 9"},
        {OP "\"input\":\"a\",\"priority\":-1}", "$.priority: expected an integer 0 … 9"},
        {OP "\"input\":\"a\",\"priority\":1.5}", "$.priority: expected an integer 0 … 9"},
        {OP "\"input\":\"a\",\"deadline_s\":0}",
         "$.deadline_s: expected a positive number of seconds"},
        {OP "\"input\":\"a\",\"deadline_s\":-3}",
         "$.deadline_s: expected a positive number of seconds"},
        {OP "\"input\":\"a\",\"deadline_s\":\"5\"}",
         "$.deadline_s: expected a positive number of seconds"},
        {OP "\"input\":\"a\",\"deadline_s\":1e999}",
         "$.deadline_s: expected a positive number of seconds"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refuse(bad[i][0], bad[i][1]);
}

/* A short err buffer is filled and terminated, never overrun. */
static void test_short_err(void)
{
    struct job_spec spec;
    cJSON *doc;
    char err[9];
    memset(err, 'z', sizeof err);
    CU_ASSERT_EQUAL(job_parse("{}", 2, &spec, &doc, err, 8), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err, "$.op: m");
    CU_ASSERT_EQUAL(err[8], 'z');
    CU_ASSERT_EQUAL(job_parse("{\"op\":\"solve\"}", 14, &spec, &doc, err, 3), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err, "$.");
}

void suite_job(void)
{
    CU_pSuite s = CU_add_suite("job", NULL, NULL);
    CU_add_test(s, "inline matrices, items read back", test_inline);
    CU_add_test(s, "generate, its bounds, inline output", test_generate);
    CU_add_test(s, "input and every option", test_input_options);
    CU_add_test(s, "refused documents: not JSON, not an object, NUL, size", test_document);
    CU_add_test(s, "refused fields: op, unknown, twice, sources", test_fields);
    CU_add_test(s, "refused matrices, with the path of the value", test_matrices);
    CU_add_test(s, "refused generate fields", test_generate_fields);
    CU_add_test(s, "refused input names", test_input_fields);
    CU_add_test(s, "refused options", test_option_fields);
    CU_add_test(s, "a short error buffer", test_short_err);
}
