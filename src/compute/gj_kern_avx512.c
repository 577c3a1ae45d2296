/*
 * gj kernels for AVX-512 (compiled with -mavx512f -mavx512vl -mavx512dq
 * -mfma): an 8×24 tile, 24 zmm accumulators, 3 B vectors and a broadcast.
 * Measured against 16×16 and 12×16 on AMD Zen 5: see docs/kernel.md.
 */
#if defined(__x86_64__)
#define GJ_VW    8
#define GJ_MR    8
#define GJ_NV    3
#define GJ_ISA   GJ_ISA_AVX512
#define GJ_TABLE gj_kern_avx512
#include <immintrin.h>
#define GJ_IMAX(a, b) ((gj_ivec)_mm512_max_epi64((__m512i)(a), (__m512i)(b)))
/* Grouped tiles of 4 × 4: panels and their halves are multiples of 4 columns
 * wide, so no sliver is left narrow (4 × 6 left one of 2 or 4 in each). */
#define GJ_GNC 4
#include "gj_kern_tmpl.h"
#endif
