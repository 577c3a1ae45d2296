/*
 * jgen — the matrices of a generated job ("generate": {"count", "n",
 * "seed", "kind"}), made wherever they are needed from (seed, kind, item
 * index) alone, bit for bit the same on every machine: so a generated
 * job's inputs never cross the network, and a result can be checked by
 * whoever regenerates its input.
 *
 * The generator is a counter-based mix (splitmix64 of seed, index and the
 * element's position), not a stream, so item i costs the same whatever i
 * is. Kinds:
 *   uniform  entries uniform in [-1, 1)
 *   spd      B·Bᵀ/n + I for a uniform B: symmetric positive definite
 *   hilbert  1/(i+j+1) (seed and index ignored): badly conditioned
 */
#ifndef CONVOY_JGEN_H
#define CONVOY_JGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether kind names a generator. */
bool jgen_kind_valid(const char *kind);

/* Item index of the job (seed, kind): its n·n entries, row-major, into
 * out. 0, -EINVAL (unknown kind, n 0, n·n doubles past the address space,
 * spd with n > 2^23), or -ENOMEM (spd's scratch of n·n int64). */
int jgen_item(const char *kind, uint64_t seed, uint64_t index, uint32_t n, double *out);

#endif
