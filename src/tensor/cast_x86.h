/* cast_x86.h: the x86 vector kernels behind gt_convert (internal to
 * cast.c). Each converts n contiguous elements, src and dst at any
 * alignment and not overlapping, and gives exactly the results of the
 * scalar kernels of cast.h (NaN lanes are redone by those). Call a kernel
 * only when gt_x86_units() has the unit named beside it (copy.c asks it
 * for its AVX2 transpose tiles too). */
#ifndef GT_CAST_X86_H
#define GT_CAST_X86_H

#include <stddef.h>

enum { GT_X86_F16C = 1, GT_X86_AVX2 = 2 };

/* The units this CPU and OS support, detected once; 0 off x86. */
unsigned gt_x86_units(void);

void gt_x86_f32_to_f16(void *dst, const void *src, size_t n);  /* F16C */
void gt_x86_f16_to_f32(void *dst, const void *src, size_t n);  /* F16C */
void gt_x86_f32_to_bf16(void *dst, const void *src, size_t n); /* AVX2 */
void gt_x86_bf16_to_f32(void *dst, const void *src, size_t n); /* AVX2 */
void gt_x86_f64_to_f32(void *dst, const void *src, size_t n);  /* AVX2 */
void gt_x86_f32_to_f64(void *dst, const void *src, size_t n);  /* AVX2 */
/* Reverse the bytes of each of count lanes of lane (2, 4, 8) bytes. AVX2 */
void gt_x86_bswap(void *dst, const void *src, size_t count, size_t lane);

#endif
