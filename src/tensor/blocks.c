#include "tensor/blocks.h"


/* The cuts below cannot fail: indices stay inside the (valid) view. */
int gt_each_block(const gt_tensor *a, const gt_tensor *b, gt_block_fn fn,
                  void *ctx, gt_err *err) {
  int64_t n = gt_tensor_numel(a);
  if (n <= GT_BLOCK) return fn(a, b, ctx, err);
  const gt_tensor *bb = b ? b : a;
  if (a->ndim == 1) {
    for (int64_t i = 0; i < n; i += GT_BLOCK) {
      gt_tensor x, y;
      int64_t len = n - i < GT_BLOCK ? n - i : GT_BLOCK;
      gt_narrow(a, 0, i, len, &x, NULL);
      gt_narrow(bb, 0, i, len, &y, NULL);
      int rc = fn(&x, b ? &y : NULL, ctx, err);
      gt_tensor_free(&x);
      gt_tensor_free(&y);
      if (rc != GT_OK) return rc;
    }
    return GT_OK;
  }
  for (int64_t i = 0; i < a->shape[0]; i++) {
    gt_tensor x, y;
    gt_select(a, 0, i, &x, NULL);
    gt_select(bb, 0, i, &y, NULL);
    int rc = gt_each_block(&x, b ? &y : NULL, fn, ctx, err);
    gt_tensor_free(&x);
    gt_tensor_free(&y);
    if (rc != GT_OK) return rc;
  }
  return GT_OK;
}
