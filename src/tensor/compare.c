#include "tensor/compare.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/blocks.h"
#include "tensor/copy.h"
#include "tensor/expr.h"

/* Two block buffers of GT_BLOCK elements of up to 16 bytes (complex128). */
typedef struct cmp_ctx {
  double rtol, atol;
  gt_cmp *r;
  void *ba, *bb;
} cmp_ctx;

static int is_intlike(gt_dtype d) { return gt_dtype_is_int(d) || d == GT_BOOL; }

static int compare_ints(const gt_tensor *a, const gt_tensor *b, cmp_ctx *c,
                        gt_err *e) {
  int64_t n = gt_tensor_numel(a);
  gt_dtype ua = a->dtype == GT_U64 ? GT_U64 : GT_I64;
  gt_dtype ub = b->dtype == GT_U64 ? GT_U64 : GT_I64;
  if (gt_copy_into(a, ua, c->ba, e) || gt_copy_into(b, ub, c->bb, e)) return GT_ERR;
  const int64_t *x = c->ba, *y = c->bb;
  gt_cmp *r = c->r;
  for (int64_t i = 0; i < n; i++) {
    int neg_x = ua == GT_I64 && x[i] < 0, neg_y = ub == GT_I64 && y[i] < 0;
    int same = x[i] == y[i] && neg_x == neg_y;
    double d = fabs((ua == GT_U64 ? (double)(uint64_t)x[i] : (double)x[i]) -
                    (ub == GT_U64 ? (double)(uint64_t)y[i] : (double)y[i]));
    if (!same) {
      r->equal = 0;
      if (d > c->atol + c->rtol * fabs((double)y[i])) r->close = 0;
    }
    if (d > r->maxdiff) r->maxdiff = d;
    if (d > r->maxdiff_num) r->maxdiff_num = d;
  }
  return GT_OK;
}

static int compare_block(const gt_tensor *a, const gt_tensor *b, void *ctx,
                         gt_err *e) {
  cmp_ctx *c = ctx;
  gt_cmp *r = c->r;
  if (is_intlike(a->dtype) && is_intlike(b->dtype)) return compare_ints(a, b, c, e);
  if (gt_dtype_is_complex(a->dtype) != gt_dtype_is_complex(b->dtype))
    return gt_fail(e, "cannot compare %s with %s", gt_dtype_name(a->dtype),
                   gt_dtype_name(b->dtype));
  gt_dtype w = gt_dtype_is_complex(a->dtype) ? GT_C128 : GT_F64;
  if (gt_copy_into(a, w, c->ba, e) || gt_copy_into(b, w, c->bb, e)) return GT_ERR;
  const double *x = c->ba, *y = c->bb;
  int64_t n = gt_tensor_numel(a), m = w == GT_C128 ? 2 * n : n;
  for (int64_t i = 0; i < m; i++) {
    double d = fabs(x[i] - y[i]);
    if (!(x[i] == y[i])) r->equal = 0;
    if (isnan(x[i]) || isnan(y[i])) {
      if (isnan(x[i]) != isnan(y[i])) r->nan_mismatch++;
      r->close = 0;
      r->maxdiff = NAN;
      continue;
    }
    if (x[i] == y[i]) continue; /* also equal infinities */
    if (!(d <= c->atol + c->rtol * fabs(y[i]))) r->close = 0;
    if (d > r->maxdiff) r->maxdiff = d;
    if (d > r->maxdiff_num) r->maxdiff_num = d;
  }
  return GT_OK;
}

static int compare_strings(const gt_tensor *a, const gt_tensor *b, gt_cmp *r,
                           gt_err *e) {
  gt_tensor ca, cb;
  if (gt_contiguous(a, &ca, e) != GT_OK) return GT_ERR;
  if (gt_contiguous(b, &cb, e) != GT_OK) {
    gt_tensor_free(&ca);
    return GT_ERR;
  }
  int64_t n = gt_tensor_numel(a);
  const gt_str *x = (const gt_str *)ca.storage->data;
  const gt_str *y = (const gt_str *)cb.storage->data;
  for (int64_t i = 0; i < n; i++)
    if (x[i].n != y[i].n || memcmp(x[i].p, y[i].p, x[i].n)) r->equal = r->close = 0;
  gt_tensor_free(&ca);
  gt_tensor_free(&cb);
  return GT_OK;
}

static int same_shape(const gt_tensor *a, const gt_tensor *b) {
  return a->ndim == b->ndim &&
         memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof a->shape[0]) == 0;
}

int gt_compare(const gt_tensor *a, const gt_tensor *b, double rtol,
               double atol, gt_cmp *out, gt_err *err) {
  gt_cmp r = {1, 1, 0.0, 0, 0.0};
  *out = r;
  if (!same_shape(a, b) ||
      ((a->dtype == GT_STRING || b->dtype == GT_STRING) && a->dtype != b->dtype)) {
    out->equal = out->close = 0;
    return GT_OK;
  }
  if (gt_tensor_ready(a, err) || gt_tensor_ready(b, err)) /* expr.h */
    return GT_ERR;
  if (a->dtype == GT_STRING) {
    if (compare_strings(a, b, &r, err) != GT_OK) return GT_ERR;
    *out = r;
    return GT_OK;
  }
  cmp_ctx c = {rtol, atol, &r, malloc((size_t)GT_BLOCK * 16),
               malloc((size_t)GT_BLOCK * 16)};
  int rc = c.ba && c.bb ? gt_each_block(a, b, compare_block, &c, err)
                        : gt_fail(err, "out of memory");
  free(c.ba);
  free(c.bb);
  if (rc == GT_OK) *out = r;
  return rc;
}

int gt_max_abs_diff(const gt_tensor *a, const gt_tensor *b, double *out,
                    gt_err *err) {
  gt_cmp r;
  if (!same_shape(a, b)) return gt_fail(err, "max_abs_diff: shapes differ");
  if (a->dtype == GT_STRING || b->dtype == GT_STRING)
    return gt_fail(err, "max_abs_diff of string tensors");
  if (gt_compare(a, b, 0.0, 0.0, &r, err) != GT_OK) return GT_ERR;
  *out = r.maxdiff;
  return GT_OK;
}
