/*
 * jgen — generated matrices from (seed, kind, index) alone (see jgen.h).
 *
 * The design is simple: every entry is a pure function of its coordinates.
 * An item's key is mix(mix(seed) ^ index), and the entry at position p
 * (row · n + column) is mix(key + p · GOLDEN): the p-th output of a
 * splitmix64 stream started at the key, so no state is carried from one
 * entry or item to the next and the call order cannot matter. The top 53
 * bits k of that word give the entry (k − 2^52) · 2^-52, exactly
 * representable, uniform in [-1, 1).
 *
 * spd is B·Bᵀ/n + I. To be bit-identical on every machine whatever the
 * compiler does with multiply-adds (FMA contraction differs by target and
 * flags), the dot products are taken exactly in 128-bit integers on the
 * integer numerators of B, and only the final sum is rounded, once, to a
 * double. Only the lower triangle is computed and mirrored, so the result
 * is exactly symmetric.
 */
#include "convoy/jgen.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN   0x9e3779b97f4a7c15ull
#define HALF53   (1ll << 52) /* offset of the 53-bit numerator */
#define SCALE    0x1p-52     /* numerator to entry */
#define SPD_NMAX (1u << 23)  /* n · 2^104 must stay below 2^127 */

enum jgen_kind { KIND_UNIFORM, KIND_SPD, KIND_HILBERT, KIND_NONE };

static const char *const kind_names[] = {"uniform", "spd", "hilbert"};

static enum jgen_kind kind_find(const char *kind)
{
    for (int k = 0; kind && k < KIND_NONE; k++)
        if (strcmp(kind, kind_names[k]) == 0)
            return (enum jgen_kind)k;
    return KIND_NONE;
}

bool jgen_kind_valid(const char *kind)
{
    return kind_find(kind) != KIND_NONE;
}

/* splitmix64's output function. */
static uint64_t mix(uint64_t z)
{
    z += GOLDEN;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The numerator in [-2^52, 2^52) of entry pos of the item keyed key. */
static int64_t numerator(uint64_t key, uint64_t pos)
{
    return (int64_t)(mix(key + pos * GOLDEN) >> 11) - HALF53;
}

static void gen_uniform(uint64_t key, uint32_t n, double *out)
{
    uint64_t nn = (uint64_t)n * n;
    for (uint64_t p = 0; p < nn; p++)
        out[p] = (double)numerator(key, p) * SCALE;
}

/* Row i of B·Bᵀ/n + I up to the diagonal, mirrored into column i. */
static void spd_row(const int64_t *b, uint32_t n, uint32_t i, double *out)
{
    const int64_t *bi = b + (uint64_t)i * n;
    for (uint32_t j = 0; j <= i; j++) {
        const int64_t *bj = b + (uint64_t)j * n;
        __int128 s = 0;
        for (uint32_t k = 0; k < n; k++)
            s += (__int128)bi[k] * bj[k];
        double v = (double)s * 0x1p-104 / n + (i == j ? 1.0 : 0.0);
        out[(uint64_t)i * n + j] = v;
        out[(uint64_t)j * n + i] = v;
    }
}

static int gen_spd(uint64_t key, uint32_t n, double *out)
{
    if (n > SPD_NMAX)
        return -EINVAL;
    uint64_t nn = (uint64_t)n * n;
    int64_t *b = malloc(nn * sizeof *b);
    if (b == NULL)
        return -ENOMEM;
    for (uint64_t p = 0; p < nn; p++)
        b[p] = numerator(key, p);
    for (uint32_t i = 0; i < n; i++)
        spd_row(b, n, i, out);
    free(b);
    return 0;
}

static void gen_hilbert(uint32_t n, double *out)
{
    for (uint64_t i = 0; i < n; i++)
        for (uint64_t j = 0; j < n; j++)
            out[i * n + j] = 1.0 / (double)(i + j + 1);
}

int jgen_item(const char *kind, uint64_t seed, uint64_t index, uint32_t n, double *out)
{
    enum jgen_kind k = kind_find(kind);
    /* n·n doubles must be addressable; n < 2^32 keeps n·n in 64 bits. */
    if (k == KIND_NONE || n == 0 || (uint64_t)n * n > SIZE_MAX / sizeof(double))
        return -EINVAL;
    uint64_t key = mix(mix(seed) ^ index);
    switch (k) {
    case KIND_UNIFORM:
        gen_uniform(key, n, out);
        return 0;
    case KIND_SPD:
        return gen_spd(key, n, out);
    case KIND_HILBERT:
        gen_hilbert(n, out);
        return 0;
    default:
        return -EINVAL;
    }
}
