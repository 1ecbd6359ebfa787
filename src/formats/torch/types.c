/* torch_types.c: the table of torch element types (docs/formats/torch.md#storage-classes-and-dtypes;
 * torch/storage.py _dtype_to_storage_type_map and _new_dtypes). */
#include "formats/torch/types.h"

#include <string.h>

static const gt_torch_type types[] = {
  {"float64", "DoubleStorage", 8, GT_F64},
  {"float32", "FloatStorage", 4, GT_F32},
  {"float16", "HalfStorage", 2, GT_F16},
  {"bfloat16", "BFloat16Storage", 2, GT_BF16},
  {"int64", "LongStorage", 8, GT_I64},
  {"int32", "IntStorage", 4, GT_I32},
  {"int16", "ShortStorage", 2, GT_I16},
  {"int8", "CharStorage", 1, GT_I8},
  {"uint8", "ByteStorage", 1, GT_U8},
  {"bool", "BoolStorage", 1, GT_BOOL},
  {"complex128", "ComplexDoubleStorage", 16, GT_C128},
  {"complex64", "ComplexFloatStorage", 8, GT_C64},
  {"qint8", "QInt8Storage", 1, -1},
  {"quint8", "QUInt8Storage", 1, -1},
  {"qint32", "QInt32Storage", 4, -1},
  {"quint4x2", "QUInt4x2Storage", 1, -1},
  {"quint2x4", "QUInt2x4Storage", 1, -1},
  /* Only through UntypedStorage + _rebuild_tensor_v3. */
  {"float8_e4m3fn", NULL, 1, GT_F8E4M3FN},
  {"float8_e5m2", NULL, 1, GT_F8E5M2},
  {"uint16", NULL, 2, GT_U16},
  {"uint32", NULL, 4, GT_U32},
  {"uint64", NULL, 8, GT_U64},
  {"float8_e5m2fnuz", NULL, 1, -1},
  {"float8_e4m3fnuz", NULL, 1, -1},
  {"float8_e8m0fnu", NULL, 1, -1},
  {"float4_e2m1fn_x2", NULL, 1, -1},
  {"complex32", NULL, 4, -1},
  {"bits8", NULL, 1, -1},
  {"bits16", NULL, 2, -1},
  {"bits1x8", NULL, 1, -1},
  {"bits2x4", NULL, 1, -1},
  {"bits4x2", NULL, 1, -1},
};

/* TorchScript (torch.jit.save) names every storage "<ScalarType>Storage",
 * also for the types torch.save writes untyped: the class names it uses for
 * them, by canonical dtype. */
static const struct { const char *storage, *dtype; } script_names[] = {
  {"Float8_e4m3fnStorage", "float8_e4m3fn"},
  {"Float8_e5m2Storage", "float8_e5m2"},
  {"Float8_e4m3fnuzStorage", "float8_e4m3fnuz"},
  {"Float8_e5m2fnuzStorage", "float8_e5m2fnuz"},
  {"UInt16Storage", "uint16"},
  {"UInt32Storage", "uint32"},
  {"UInt64Storage", "uint64"},
  {"ComplexHalfStorage", "complex32"},
};

static const gt_torch_type untyped = {"uint8", "UntypedStorage", 1, -1};

enum { NTYPES = sizeof types / sizeof types[0] };

const gt_torch_type *gt_torch_type_by_storage(const char *storage) {
  if (strcmp(storage, untyped.storage) == 0) return &untyped;
  for (int i = 0; i < NTYPES; i++)
    if (types[i].storage && strcmp(types[i].storage, storage) == 0) return &types[i];
  for (size_t i = 0; i < sizeof script_names / sizeof script_names[0]; i++)
    if (strcmp(script_names[i].storage, storage) == 0)
      return gt_torch_type_by_dtype(script_names[i].dtype);
  return NULL;
}

const gt_torch_type *gt_torch_type_by_dtype(const char *dtype) {
  for (int i = 0; i < NTYPES; i++)
    if (strcmp(types[i].dtype, dtype) == 0) return &types[i];
  return NULL;
}

const gt_torch_type *gt_torch_type_of(gt_dtype dt) {
  for (int i = 0; i < NTYPES; i++)
    if (types[i].gt == (int)dt) return &types[i];
  return NULL;
}

const gt_torch_type *gt_torch_untyped(void) { return &untyped; }
