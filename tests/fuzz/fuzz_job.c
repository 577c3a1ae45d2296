/*
 * fuzz_job — libFuzzer target for the job parser.
 *
 * The input is the document itself (not NUL-terminated, as libFuzzer hands
 * it). A refusal must carry a "$" path and leave no document; an accepted
 * job must be within every bound of job.h for its source, its inline items
 * must read back as finite numbers, and the document printed by cJSON and
 * parsed again must give the same job (but for the numbers cJSON prints
 * inexactly, see check_reprint).
 */
#include "convoy/job.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_job: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_bounds(const struct job_spec *s)
{
    CHECK(s->op != NULL && s->priority <= 9 && s->deadline_s >= 0 && isfinite(s->deadline_s));
    if (s->source == JOB_NPY) {
        CHECK(s->items == 0 && s->n == 0 && s->input[0] && s->input[0] != '/');
        CHECK(strlen(s->input) < JOB_INPUT_MAX);
        return;
    }
    CHECK(s->items >= 1 && s->items <= JOB_ITEMS_MAX && s->n >= 1 && s->n <= JOB_N_MAX);
    if (s->source == JOB_GENERATE)
        CHECK(s->seed <= (1ull << 53) && s->kind[0]);
    else
        CHECK(s->matrices != NULL && s->items * s->n * s->n <= (1ull << 27));
}

static void check_inline(const struct job_spec *s)
{
    uint64_t nn = (uint64_t)s->n * s->n;
    double *v = malloc(s->items * nn * sizeof *v);
    CHECK(v != NULL);
    CHECK(job_inline_items(s, 0, s->items, v) == 0);
    for (uint64_t i = 0; i < s->items * nn; i++)
        CHECK(isfinite(v[i]));
    CHECK(job_inline_item(s, s->items, v) == -ERANGE);
    free(v);
}

/* The printed document is the same job. */
static void check_reprint(const struct job_spec *s, const cJSON *doc)
{
    char *text = cJSON_PrintUnformatted(doc), err[JOB_ERR_MAX];
    CHECK(text != NULL);
    struct job_spec t;
    cJSON *again;
    int rc = job_parse(text, strlen(text), &t, &again, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "fuzz_job: reprinted %s refused: %s\n", text, err);
    CHECK(rc == 0);
    CHECK(t.op == s->op && t.source == s->source && t.items == s->items && t.n == s->n);
    CHECK(t.residuals == s->residuals && t.output == s->output && t.priority == s->priority);
    /* Not seed or deadline_s: cJSON prints a double past INT_MAX with 15
     * digits when that reads back within its relative epsilon, so they may
     * move in the last digits (why the spool keeps job.json as sent). */
    CHECK(strcmp(t.kind, s->kind) == 0 && strcmp(t.input, s->input) == 0);
    cJSON_Delete(again);
    cJSON_free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct job_spec spec;
    cJSON *doc = (cJSON *)&spec;
    char err[JOB_ERR_MAX];
    int rc = job_parse((const char *)data, size, &spec, &doc, err, sizeof err);
    if (rc != 0) {
        CHECK(rc == -EINVAL && doc == NULL && err[0] == '$' && strlen(err) < sizeof err);
        return 0;
    }
    check_bounds(&spec);
    if (spec.source == JOB_INLINE)
        check_inline(&spec);
    check_reprint(&spec, doc);
    cJSON_Delete(doc);
    return 0;
}
