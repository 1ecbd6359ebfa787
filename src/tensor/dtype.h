/* dtype.h: the element types graft knows.
 *
 * Names are the user-facing strings of DESIGN.md. Storage is always
 * little-endian except where a tensor view says `swap` (big-endian source,
 * e.g. npy '>f4'), which is undone when the data is materialised. */
#ifndef GT_DTYPE_H
#define GT_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum gt_dtype {
  GT_F64, GT_F32, GT_F16, GT_BF16, GT_F8E4M3FN, GT_F8E5M2,
  GT_I64, GT_I32, GT_I16, GT_I8,
  GT_U64, GT_U32, GT_U16, GT_U8,
  GT_BOOL, GT_C64, GT_C128, GT_STRING,
  /* ggml block-quantised types (tensor/quant.h) */
  GT_Q4_0, GT_Q4_1, GT_Q5_0, GT_Q5_1, GT_Q8_0,
  GT_Q2_K, GT_Q3_K, GT_Q4_K, GT_Q5_K, GT_Q6_K, GT_Q8_K,
  GT_NDTYPES
} gt_dtype;

/* Element of a string tensor: bytes owned by the storage (or its parent). */
typedef struct gt_str {
  const char *p;
  size_t n;
} gt_str;

const char *gt_dtype_name(gt_dtype dt);
/* Returns 0 and sets *dt when name is a dtype name, -1 otherwise. */
int gt_dtype_parse(const char *name, gt_dtype *dt);
/* Bytes per element (sizeof(gt_str) for strings; bytes per block for the
 * block-quantised types). */
size_t gt_dtype_size(gt_dtype dt);
/* Elements per block: 1, or 32 / 256 for the block-quantised types. */
size_t gt_dtype_block(gt_dtype dt);
int gt_dtype_is_float(gt_dtype dt);   /* f64 f32 f16 bf16 f8* */
int gt_dtype_is_int(gt_dtype dt);     /* signed and unsigned ints */
int gt_dtype_is_complex(gt_dtype dt);
/* Whether values of `from` may be cast to `to` (strings cast to nothing but
 * themselves; complex only to complex). */
int gt_dtype_castable(gt_dtype from, gt_dtype to);

#endif
