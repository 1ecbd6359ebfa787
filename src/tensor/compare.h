/* compare.h: element-wise comparison of two tensors.
 *
 * Integer and bool pairs compare as 64-bit integers (exact, signedness
 * respected: uint64 2^63 is not int64 -2^63); every other pair in float64
 * (complex in complex128, each part). allclose is numpy's test
 * |a - b| <= atol + rtol * |b| per element. NaN is equal to nothing and
 * close to nothing, and makes max_abs_diff NaN; equal infinities are equal
 * and close. String tensors compare by their element bytes, and only with
 * string tensors. Inputs are read blockwise (blocks.h), never copied whole. */
#ifndef GT_COMPARE_H
#define GT_COMPARE_H

#include "tensor/tensor.h"

typedef struct gt_cmp {
  int equal;      /* every element equal (and same shape) */
  int close;      /* every element close (and same shape) */
  double maxdiff; /* largest |a - b| (NaN if any NaN); 0 for strings */
  /* NaN taken equal to NaN (what `graft diff` reports): positions where
   * exactly one side is NaN, and the largest |a - b| over positions where
   * neither is. */
  int64_t nan_mismatch;
  double maxdiff_num;
} gt_cmp;

/* Tensors of different shapes (or a string and a non-string tensor) are
 * neither equal nor close. Fails when complex meets real, or on a storage
 * that cannot be loaded. */
int gt_compare(const gt_tensor *a, const gt_tensor *b, double rtol,
               double atol, gt_cmp *out, gt_err *err);

/* Largest |a - b|; fails for different shapes and string tensors. */
int gt_max_abs_diff(const gt_tensor *a, const gt_tensor *b, double *out,
                    gt_err *err);

#endif
