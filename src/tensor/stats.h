/* stats.h: summary statistics of a real tensor, in float64.
 *
 * min, max, mean and the population standard deviation are taken over the
 * values that are not NaN (each converted to float64 first); `nan` counts
 * the NaNs. With no such value, min, max, mean and std are NaN. std comes
 * from the running sums (sqrt(E[x^2] - E[x]^2)), 0 when rounding makes the
 * variance negative. The tensor is read blockwise (blocks.h). */
#ifndef GT_STATS_H
#define GT_STATS_H

#include <stdint.h>

#include "tensor/tensor.h"

typedef struct gt_stats {
  double min, max, mean, std;
  int64_t count; /* values that are not NaN */
  int64_t nan;
} gt_stats;

/* Fails for string and complex tensors, and on a storage that cannot be
 * loaded. */
int gt_tensor_stats(const gt_tensor *t, gt_stats *out, gt_err *err);

#endif
