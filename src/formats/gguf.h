/* gguf.h: GGUF (llama.cpp / ggml) read (mmap, zero-copy) and write
 * (streamed, GGUF v3). Layout and type ids: docs/formats/gguf.md. */
#ifndef GT_GGUF_H
#define GT_GGUF_H

#include "io/model.h"

/* Reads the GGUF v2/v3 file mapped as `file`. Tensors come in file order,
 * dims in graft's order (the file's reversed), as region views on the
 * mapping; block-quantised tensors get the quantised dtypes of
 * tensor/quant.h. m->meta becomes a MAP:
 *   version, alignment, data_offset (integers),
 *   kv: LIST of MAP {key, type, value[, item_type]} in file order,
 *       duplicates kept; an array's value is a LIST whose items are plain
 *       values, or for item_type "array" MAPs {type = "array", item_type,
 *       value} in turn;
 *   ggml_types: MAP tensor name -> ggml type name ("Q4_K", "F16", ...).
 * Every count, length, dimension and offset is checked against the file
 * before use. On failure m is freed. */
int gt_gguf_read(gt_storage *file, gt_model *m, gt_err *err);

/* Writes GGUF v3: kv is the key/value LIST in the shape the reader gives
 * (value types named by `type`; integers range-checked), then the tensors
 * of s in order, tensor i stored as types[i]: its own dtype (F32, F16, BF16,
 * F64, I8..I64 or a quantised dtype, whose blocks are copied) or Q8_0 / Q4_0
 * to quantise a real tensor (last dimension a multiple of 32). Data start
 * and every tensor are aligned to `alignment` (a power of two; the caller
 * puts a matching general.alignment into the kv list). Crash-safe via
 * fileout.h. */
int gt_gguf_write(const char *path, const gt_save *s, const gt_value *kv,
                  const gt_dtype *types, uint32_t alignment, gt_err *err);

#endif
