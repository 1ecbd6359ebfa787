/* grid.c: row-major index spaces cut into boxes (grid.h). */
#include "tensor/grid.h"

void gt_grid_init(gt_grid *g, int nd, const int64_t *shape) {
  g->nd = nd;
  int64_t in = 1;
  for (int i = nd - 1; i >= 0; i--) {
    g->shape[i] = shape[i];
    g->inner[i] = in;
    in *= shape[i] ? shape[i] : 1;
  }
}

void gt_grid_box(const gt_grid *g, int64_t pos, int64_t hi, gt_box *b) {
  b->d = 0;
  b->len = b->n = 1;
  if (g->nd == 0) return;
  int64_t rest = pos;
  for (int i = g->nd - 1; i >= 0; i--) {
    b->idx[i] = rest % g->shape[i];
    rest /= g->shape[i];
  }
  int d = g->nd - 1;
  for (int i = 0; i < g->nd; i++)
    if (pos % g->inner[i] == 0 && g->inner[i] <= GT_BOX_MAX &&
        hi - pos >= g->inner[i]) {
      d = i;
      break;
    }
  int64_t len = g->shape[d] - b->idx[d], in = g->inner[d];
  if ((hi - pos) / in < len) len = (hi - pos) / in;
  if (GT_BOX_MAX / in < len) len = GT_BOX_MAX / in;
  b->d = d;
  b->len = len;
  b->n = len * in;
}

gt_tensor gt_box_view(const gt_tensor *t, const gt_grid *g, const gt_box *b) {
  gt_tensor v = *t;
  if (g->nd == 0) return v;
  int64_t esz = (int64_t)gt_dtype_size(t->sdtype);
  for (int j = 0; j <= b->d; j++) v.offset += b->idx[j] * t->strides[j] * esz;
  v.ndim = g->nd - b->d;
  for (int k = 0; k < v.ndim; k++) {
    v.shape[k] = k ? g->shape[b->d + k] : b->len;
    v.strides[k] = t->strides[b->d + k];
  }
  return v;
}
