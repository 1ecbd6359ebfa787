#include "tensor/stats.h"

#include <math.h>
#include <stdlib.h>

#include "tensor/blocks.h"
#include "tensor/copy.h"

typedef struct sums {
  int64_t count, nan;
  double min, max, sum, sumsq;
  double *buf; /* GT_BLOCK float64 */
} sums;

static int stats_block(const gt_tensor *a, const gt_tensor *b, void *ctx,
                       gt_err *e) {
  (void)b;
  sums *s = ctx;
  int64_t n = gt_tensor_numel(a);
  if (gt_copy_into(a, GT_F64, s->buf, e) != GT_OK) return GT_ERR;
  const double *x = s->buf;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(x[i])) {
      s->nan++;
      continue;
    }
    if (s->count == 0 || x[i] < s->min) s->min = x[i];
    if (s->count == 0 || x[i] > s->max) s->max = x[i];
    s->count++;
    s->sum += x[i];
    s->sumsq += x[i] * x[i];
  }
  return GT_OK;
}

int gt_tensor_stats(const gt_tensor *t, gt_stats *out, gt_err *err) {
  sums s = {0};
  if (t->dtype == GT_STRING || gt_dtype_is_complex(t->dtype))
    return gt_fail(err, "stats of a %s tensor", gt_dtype_name(t->dtype));
  if (gt_storage_ready(t->storage, err) != GT_OK) return GT_ERR;
  s.buf = malloc((size_t)GT_BLOCK * sizeof(double));
  if (!s.buf) return gt_fail(err, "out of memory");
  int rc = gt_each_block(t, NULL, stats_block, &s, err);
  free(s.buf);
  if (rc != GT_OK) return GT_ERR;
  double mean = s.count ? s.sum / (double)s.count : NAN;
  double var = s.count ? s.sumsq / (double)s.count - mean * mean : NAN;
  out->min = s.count ? s.min : NAN;
  out->max = s.count ? s.max : NAN;
  out->mean = mean;
  /* 0.0 * NaN keeps std NaN when there is no value. */
  out->std = var > 0 ? sqrt(var) : 0.0 * var;
  out->count = s.count;
  out->nan = s.nan;
  return GT_OK;
}
