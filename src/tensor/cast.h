/* cast.h: element conversion between dtypes, the kernels under every cast.
 *
 * Semantics (bit-exact, tested over all 16-bit patterns and a large float32
 * sample):
 *   - float -> narrower float rounds to nearest, ties to even; overflow gives
 *     +-inf (float16, bfloat16, e5m2) or NaN (e4m3fn has no inf: torch's
 *     c10 rule); subnormals are produced and consumed exactly.
 *   - float16 results match numpy (its NaN rule: keep the top payload bits,
 *     never turn a NaN into inf); bfloat16 and float8 results match torch
 *     (c10::BFloat16 / c10::Float8_*), double -> bfloat16 goes through float
 *     as torch does.
 *   - float -> int truncates toward zero like numpy's astype; NaN or a value
 *     outside the target range is an error (numpy would give garbage).
 *   - int -> float rounds to nearest even; int -> int wraps (two's
 *     complement, like numpy's astype); anything -> bool is value != 0
 *     (NaN -> true); bool -> anything is 0 or 1.
 *   - complex only converts to complex.
 *   - strings never convert.
 * Vector paths (F16C, AVX2) are chosen once at run time; gt_cast_force_scalar
 * switches them off so tests can compare both paths. */
#ifndef GT_CAST_H
#define GT_CAST_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/dtype.h"
#include "tensor/error.h"

/* Convert n elements from contiguous src (type sdt; byte-swapped first when
 * swap != 0, i.e. the source is big-endian) to contiguous dst (type ddt,
 * native little-endian). src and dst do not overlap. Either pointer may be
 * unaligned. On error (NaN or out-of-range to int), err says which value
 * and at which element index. */
int gt_convert(gt_dtype ddt, void *dst, gt_dtype sdt, const void *src,
               size_t n, int swap, gt_err *err);
/* The same, numbering elements from `first` in error messages (for callers
 * that convert a tensor piece by piece). Indices in messages are 0-based. */
int gt_convert_at(gt_dtype ddt, void *dst, gt_dtype sdt, const void *src,
                  size_t n, int swap, size_t first, gt_err *err);

/* 1: use only the exact scalar kernels; 0: use vector units when present. */
void gt_cast_force_scalar(int on);
/* A short description of the vector paths in use, e.g. "f16c avx2". */
const char *gt_cast_paths(void);

/* Scalar conversions of single values, exported for other modules. */
uint16_t gt_f32_to_f16(float f);
float gt_f16_to_f32(uint16_t h);
uint16_t gt_f64_to_f16(double d);
uint16_t gt_f32_to_bf16(float f);
float gt_bf16_to_f32(uint16_t b);
uint8_t gt_f32_to_e4m3fn(float f);
float gt_e4m3fn_to_f32(uint8_t b);
uint8_t gt_f32_to_e5m2(float f);
float gt_e5m2_to_f32(uint8_t b);

#endif
