/* torch_types.h: PyTorch's storage class and dtype names (docs/formats/torch.md#storage-classes-and-dtypes).
 *
 * A torch file names element types two ways: the legacy typed-storage class
 * in a persistent id ("FloatStorage", given without the "torch." module) and
 * the canonical dtype name pickled as a global ("float32" for torch.float32).
 * This table maps both to graft dtypes, for the reader and the writer. Torch
 * types graft has no dtype for (complex32, the quantized types, the fnuz
 * float8 variants, bits*) are known by name and element size, so a reader can
 * say exactly what it cannot represent. */
#ifndef GT_TORCH_TYPES_H
#define GT_TORCH_TYPES_H

#include <stddef.h>

#include "tensor/dtype.h"

typedef struct gt_torch_type {
  const char *dtype;     /* canonical torch name: "float32" */
  const char *storage;   /* legacy class: "FloatStorage"; NULL when the type
                            is only saved through UntypedStorage (v3) */
  size_t itemsize;       /* bytes per element in a storage */
  int gt;                /* a gt_dtype, or -1 when graft has none */
} gt_torch_type;

/* By storage class name ("FloatStorage"; "UntypedStorage" gives the 1-byte
 * untyped entry with dtype "uint8"-sized elements and gt = -1). NULL when
 * unknown. */
const gt_torch_type *gt_torch_type_by_storage(const char *storage);
/* By canonical dtype name ("float32"). NULL when unknown. */
const gt_torch_type *gt_torch_type_by_dtype(const char *dtype);
/* The entry a graft dtype is written as (NULL for GT_STRING). */
const gt_torch_type *gt_torch_type_of(gt_dtype dt);
/* The pseudo-type of torch.UntypedStorage (bytes). */
const gt_torch_type *gt_torch_untyped(void);

#endif
