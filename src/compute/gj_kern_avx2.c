/*
 * gj kernels for AVX2 + FMA (compiled with -mavx2 -mfma): a 4×12 tile, 12 ymm
 * accumulators, 3 B vectors and a broadcast, which is all 16 registers.
 */
#if defined(__x86_64__)
#define GJ_VW    4
#define GJ_MR    4
#define GJ_NV    3
#define GJ_ISA   GJ_ISA_AVX2
#define GJ_TABLE gj_kern_avx2
#include "gj_kern_tmpl.h"
#endif
