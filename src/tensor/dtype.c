#include "tensor/dtype.h"

#include <string.h>

static const struct {
  const char *name;
  size_t size;
  size_t block;  /* elements per stored block: 1 for plain dtypes */
} info[GT_NDTYPES] = {
  [GT_F64] = {"float64", 8, 1},       [GT_F32] = {"float32", 4, 1},
  [GT_F16] = {"float16", 2, 1},       [GT_BF16] = {"bfloat16", 2, 1},
  [GT_F8E4M3FN] = {"float8_e4m3fn", 1, 1}, [GT_F8E5M2] = {"float8_e5m2", 1, 1},
  [GT_I64] = {"int64", 8, 1},         [GT_I32] = {"int32", 4, 1},
  [GT_I16] = {"int16", 2, 1},         [GT_I8] = {"int8", 1, 1},
  [GT_U64] = {"uint64", 8, 1},        [GT_U32] = {"uint32", 4, 1},
  [GT_U16] = {"uint16", 2, 1},        [GT_U8] = {"uint8", 1, 1},
  [GT_BOOL] = {"bool", 1, 1},         [GT_C64] = {"complex64", 8, 1},
  [GT_C128] = {"complex128", 16, 1},  [GT_STRING] = {"string", sizeof(gt_str), 1},
  /* ggml's block_* structs (ggml-common.h): bytes per block, elements */
  [GT_Q4_0] = {"q4_0", 18, 32},    [GT_Q4_1] = {"q4_1", 20, 32},
  [GT_Q5_0] = {"q5_0", 22, 32},    [GT_Q5_1] = {"q5_1", 24, 32},
  [GT_Q8_0] = {"q8_0", 34, 32},    [GT_Q2_K] = {"q2_k", 84, 256},
  [GT_Q3_K] = {"q3_k", 110, 256},  [GT_Q4_K] = {"q4_k", 144, 256},
  [GT_Q5_K] = {"q5_k", 176, 256},  [GT_Q6_K] = {"q6_k", 210, 256},
  [GT_Q8_K] = {"q8_k", 292, 256},
};

const char *gt_dtype_name(gt_dtype dt) {
  return (unsigned)dt < GT_NDTYPES ? info[dt].name : "?";
}

int gt_dtype_parse(const char *name, gt_dtype *dt) {
  for (int i = 0; i < GT_NDTYPES; i++)
    if (strcmp(name, info[i].name) == 0) {
      *dt = (gt_dtype)i;
      return 0;
    }
  return -1;
}

size_t gt_dtype_size(gt_dtype dt) {
  return (unsigned)dt < GT_NDTYPES ? info[dt].size : 0;
}

size_t gt_dtype_block(gt_dtype dt) {
  return (unsigned)dt < GT_NDTYPES && info[dt].block ? info[dt].block : 1;
}

int gt_dtype_is_float(gt_dtype dt) { return dt <= GT_F8E5M2; }
int gt_dtype_is_int(gt_dtype dt) { return dt >= GT_I64 && dt <= GT_U8; }
int gt_dtype_is_complex(gt_dtype dt) { return dt == GT_C64 || dt == GT_C128; }

int gt_dtype_castable(gt_dtype from, gt_dtype to) {
  if (from == to) return 1;
  if (from == GT_STRING || to == GT_STRING) return 0;
  /* Quantised values dequantise to any real type; nothing quantises here
   * (writers do, tensor/quant.h). */
  if (gt_dtype_block(to) > 1) return 0;
  if (gt_dtype_block(from) > 1) return !gt_dtype_is_complex(to);
  return gt_dtype_is_complex(from) == gt_dtype_is_complex(to);
}
