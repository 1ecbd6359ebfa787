/* reduce.h: reductions over a dimension, and constant tensors. */
#ifndef GT_REDUCE_H
#define GT_REDUCE_H

#include <stdint.h>

#include "tensor/expr.h"
#include "tensor/tensor.h"

/* A tensor of `shape` whose every element is `value` (converted to dtype
 * as a cast would: an error for NaN or out of range to an integer). One
 * element is stored; the view has stride 0 everywhere. */
int gt_full(gt_dtype dtype, int ndim, const int64_t *shape,
            const gt_operand *value, gt_tensor *out, gt_err *err);

/* Sum (or mean) over dimension dim (0-based) of a numeric tensor, computed
 * when called (the result is a plain tensor; the input is read in bounded
 * pieces, an expression input evaluated piece by piece). Floats accumulate
 * in float64 and round once to the input's dtype; integers and bool sum in
 * int64 (wrapping) to int64, and their mean is float32 (sum / n rounded
 * once). The mean of an empty dimension is NaN. keepdim keeps dim as size 1. */
int gt_reduce(const gt_tensor *t, int dim, int mean, int keepdim,
              gt_tensor *out, gt_err *err);

#endif
