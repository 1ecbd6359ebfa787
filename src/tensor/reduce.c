/* reduce.c: sum and mean over a dimension, and full (reduce.h). */
#include "tensor/reduce.h"

#include <stdlib.h>
#include <string.h>

#include "tensor/cast.h"
#include "tensor/copy.h"
#include "tensor/expr.h"
#include "tensor/grid.h"

#define BUF (GT_BOX_MAX * 8)

static int is_intlike(gt_dtype d) { return gt_dtype_is_int(d) || d == GT_BOOL; }

/* ---- full ------------------------------------------------------------- */

int gt_full(gt_dtype dtype, int ndim, const int64_t *shape,
            const gt_operand *value, gt_tensor *out, gt_err *err) {
  int64_t numel;
  if (dtype == GT_STRING || gt_dtype_is_complex(dtype))
    return gt_fail(err, "full: no %s tensors", gt_dtype_name(dtype));
  if (gt_numel(ndim, shape, &numel, err) != GT_OK) return GT_ERR;
  gt_storage *s = gt_storage_new(gt_dtype_size(dtype), 1, err);
  if (!s) return GT_ERR;
  int rc = value->is_int
               ? gt_convert(dtype, s->data, GT_I64, &value->i, 1, 0, err)
               : gt_convert(dtype, s->data, GT_F64, &value->f, 1, 0, err);
  gt_tensor t;
  if (rc == GT_OK) rc = gt_tensor_make(&t, s, dtype, 0, shape, 0, err);
  gt_storage_release(s);
  if (rc != GT_OK) return gt_wrap(err, "full");
  t.ndim = ndim;
  for (int i = 0; i < ndim; i++) {
    t.shape[i] = shape[i];
    t.strides[i] = 0;
  }
  *out = t;
  return GT_OK;
}

/* ---- reductions ------------------------------------------------------- */

typedef struct reducer {
  int64_t n_d, inner;  /* size of the reduced dim; elements after it */
  int64_t o, k, r;     /* position: outer index, index along d, inner */
  int ints;
  double *accf;        /* outer * inner accumulators */
  int64_t *acci;
} reducer;

static void accumulate(reducer *R, const unsigned char *v, int64_t n) {
  for (int64_t j = 0; j < n; j++) {
    int64_t at = R->o * R->inner + R->r;
    if (R->ints) {
      int64_t x;
      memcpy(&x, v + 8 * j, 8);
      R->acci[at] = (int64_t)((uint64_t)R->acci[at] + (uint64_t)x);
    } else {
      double x;
      memcpy(&x, v + 8 * j, 8);
      R->accf[at] += x;
    }
    if (++R->r == R->inner) {
      R->r = 0;
      if (++R->k == R->n_d) {
        R->k = 0;
        R->o++;
      }
    }
  }
}

/* Sums of t over dim into R's accumulators, reading t box by box. */
static int reduce_pass(const gt_tensor *t, reducer *R, gt_err *err) {
  gt_grid g;
  gt_grid_init(&g, t->ndim, t->shape);
  int64_t numel = gt_tensor_numel(t);
  unsigned char *buf = malloc(BUF);
  if (!buf) return gt_fail(err, "out of memory");
  int rc = GT_OK;
  for (int64_t pos = 0; pos < numel && rc == GT_OK;) {
    gt_box b;
    gt_grid_box(&g, pos, numel, &b);
    gt_tensor v = gt_box_view(t, &g, &b);
    rc = gt_copy_into(&v, R->ints ? GT_I64 : GT_F64, buf, err);
    if (rc == GT_OK) accumulate(R, buf, b.n);
    pos += b.n;
  }
  free(buf);
  return rc;
}

/* The accumulators as the result dtype into out's bytes. */
static int reduce_finish(const reducer *R, int mean, gt_tensor *out,
                         int64_t count, gt_err *err) {
  if (R->ints && !mean)
    return gt_convert(out->dtype, out->storage->data, GT_I64, R->acci,
                      (size_t)count, 0, err);
  double *f = R->accf;
  if (R->ints) /* the int64 sums reuse their own memory as doubles */
    for (int64_t i = 0; i < count; i++) {
      double d = (double)R->acci[i];
      memcpy(&f[i], &d, 8);
    }
  if (mean)
    for (int64_t i = 0; i < count; i++) f[i] = f[i] / (double)R->n_d;
  return gt_convert(out->dtype, out->storage->data, GT_F64, f, (size_t)count, 0, err);
}

int gt_reduce(const gt_tensor *t, int dim, int mean, int keepdim,
              gt_tensor *out, gt_err *err) {
  const char *what = mean ? "mean" : "sum";
  if (t->dtype == GT_STRING || gt_dtype_is_complex(t->dtype))
    return gt_fail(err, "%s of a %s tensor", what, gt_dtype_name(t->dtype));
  if (dim < 0 || dim >= t->ndim)
    return gt_fail(err, "%s: dimension %d out of range for a %d-d tensor", what,
                   dim + 1, t->ndim);
  reducer R = {0};
  R.ints = is_intlike(t->dtype);
  R.n_d = t->shape[dim];
  R.inner = 1;
  int64_t shape[GT_MAXDIM], outer = 1;
  int nd = 0;
  for (int i = 0; i < t->ndim; i++) {
    if (i < dim) outer *= t->shape[i];
    if (i > dim) R.inner *= t->shape[i];
    if (i != dim || keepdim) shape[nd++] = i == dim ? 1 : t->shape[i];
  }
  gt_dtype rdt = R.ints ? (mean ? GT_F32 : GT_I64) : t->dtype;
  int64_t count = outer * R.inner;
  if (gt_tensor_alloc(out, rdt, nd, shape, 0, err) != GT_OK) return GT_ERR;
  void *acc = calloc((size_t)(count ? count : 1), 8);
  if (!acc) {
    gt_tensor_free(out);
    return gt_fail(err, "out of memory");
  }
  R.accf = acc;
  R.acci = acc;
  int rc = gt_tensor_ready(t, err);
  if (rc == GT_OK && R.n_d > 0) rc = reduce_pass(t, &R, err);
  if (rc == GT_OK) rc = reduce_finish(&R, mean, out, count, err);
  free(acc);
  if (rc != GT_OK) gt_tensor_free(out);
  return rc;
}
