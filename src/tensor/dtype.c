#include "tensor/dtype.h"

#include <string.h>

static const struct {
  const char *name;
  size_t size;
} info[GT_NDTYPES] = {
  [GT_F64] = {"float64", 8},       [GT_F32] = {"float32", 4},
  [GT_F16] = {"float16", 2},       [GT_BF16] = {"bfloat16", 2},
  [GT_F8E4M3FN] = {"float8_e4m3fn", 1}, [GT_F8E5M2] = {"float8_e5m2", 1},
  [GT_I64] = {"int64", 8},         [GT_I32] = {"int32", 4},
  [GT_I16] = {"int16", 2},         [GT_I8] = {"int8", 1},
  [GT_U64] = {"uint64", 8},        [GT_U32] = {"uint32", 4},
  [GT_U16] = {"uint16", 2},        [GT_U8] = {"uint8", 1},
  [GT_BOOL] = {"bool", 1},         [GT_C64] = {"complex64", 8},
  [GT_C128] = {"complex128", 16},  [GT_STRING] = {"string", sizeof(gt_str)},
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

int gt_dtype_is_float(gt_dtype dt) { return dt <= GT_F8E5M2; }
int gt_dtype_is_int(gt_dtype dt) { return dt >= GT_I64 && dt <= GT_U8; }
int gt_dtype_is_complex(gt_dtype dt) { return dt == GT_C64 || dt == GT_C128; }

int gt_dtype_castable(gt_dtype from, gt_dtype to) {
  if (from == to) return 1;
  if (from == GT_STRING || to == GT_STRING) return 0;
  return gt_dtype_is_complex(from) == gt_dtype_is_complex(to);
}
