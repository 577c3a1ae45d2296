/*
 * gj kernels in portable C: built with the target's baseline flags, so on
 * x86-64 the vectors are SSE2 pairs (a 4×6 tile, 12 of the 16 xmm
 * registers) and on other targets whatever GCC lowers them to.
 */
#define GJ_VW    2
#define GJ_MR    4
#define GJ_NV    3
#define GJ_ISA   GJ_ISA_C
#define GJ_TABLE gj_kern_c
#include "gj_kern_tmpl.h"
