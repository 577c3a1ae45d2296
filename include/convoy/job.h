/*
 * job — a compute job as a user submits it (docs/jobs.md): parsed and
 * checked whole before anything else happens.
 *
 * A job is a JSON object: "op" names an operation of the one operation
 * table (job_ops: "invert" today; "solve" or "det" are one entry more),
 * and its items come from exactly one of "matrices" (inline: an array of
 * n×n arrays of numbers), "generate" ({"count", "n", "seed", "kind"}, made
 * on the compute servers from seed and item index, see jgen.h) or "input"
 * (a 3-D float64 .npy uploaded with the job, see npy.h). Optional fields:
 * "residuals" (bool), "output" ("inline" | "npy" | "none"), "priority"
 * (integer 0 … 9), "deadline_s" (positive number). Any other field, a
 * mistyped value or a bound passed is refused with the JSON path of the
 * problem: "$.generate.n: expected a positive integer ≤ 8192".
 */
#ifndef CONVOY_JOB_H
#define CONVOY_JOB_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JOB_N_MAX     8192u               /* largest matrix order (CHAIN_N_MAX) */
#define JOB_ITEMS_MAX (1u << 24)          /* items in one job */
#define JOB_JSON_MAX  (64u * 1024 * 1024) /* bytes of a job document */
#define JOB_KIND_MAX  16                  /* a generator kind with its NUL */
#define JOB_INPUT_MAX 256                 /* an "input" file name with its NUL */
#define JOB_ERR_MAX   256                 /* room for a refusal's text */

enum job_source {
    JOB_INLINE,   /* "matrices" */
    JOB_GENERATE, /* "generate" */
    JOB_NPY,      /* "input": the .npy sent with the job */
};

enum job_output {
    JOB_OUT_INLINE, /* results in the JSON result (the default for inline jobs) */
    JOB_OUT_NPY,    /* results as result.npy (the default otherwise) */
    JOB_OUT_NONE,   /* status, residual and checksum per item only */
};

/* "inline", "npy", "none". */
const char *job_output_str(enum job_output o);

/* One entry of the operation table. */
struct job_op {
    const char *name; /* "invert" */
    bool square;      /* items are n×n */
};

/* The operation named name, or NULL. */
const struct job_op *job_op_find(const char *name);

struct job_spec {
    const struct job_op *op;
    enum job_source source;
    uint64_t items; /* 1 … JOB_ITEMS_MAX (JOB_NPY: 0 until the .npy is read) */
    uint32_t n;     /* 1 … JOB_N_MAX (JOB_NPY: 0 until the .npy is read) */
    bool residuals;
    enum job_output output;
    uint32_t priority;         /* 0 … 9, default 0 */
    double deadline_s;         /* 0: none */
    uint64_t seed;             /* JOB_GENERATE */
    char kind[JOB_KIND_MAX];   /* JOB_GENERATE: "uniform", "spd", "hilbert" */
    char input[JOB_INPUT_MAX]; /* JOB_NPY: the file name as written in the job */
    const cJSON *matrices;     /* JOB_INLINE: points into the parsed document */
};

/*
 * Parses and checks the document json (len bytes; need not be
 * NUL-terminated). 0 with *spec filled and *doc the parsed document
 * (spec->matrices points into it; the caller cJSON_Deletes it), or -EINVAL
 * with "$.path: what was expected" in err (err always terminated).
 */
int job_parse(const char *json, size_t len, struct job_spec *spec, cJSON **doc, char *err,
              size_t errlen);

/* JOB_INLINE: item i's n·n numbers, row-major, into out. 0, or -ERANGE
 * (not an inline job, i past its items). Walks the document from its first
 * item: to read many, use job_inline_items. */
int job_inline_item(const struct job_spec *spec, uint64_t i, double *out);

/* JOB_INLINE: items first … first+count-1, count·n·n numbers, into out in
 * one walk. 0, or -ERANGE (not an inline job, a range past its items). */
int job_inline_items(const struct job_spec *spec, uint64_t first, uint64_t count, double *out);

#endif
