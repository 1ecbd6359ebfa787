/* grid.h: walking a row-major index space in bounded boxes.
 *
 * A box is at most GT_BOX_MAX elements that are, for some dimension d, a
 * fixed index in dims [0, d), a range of dim d and all of dims (d, ndim):
 * one strided view of any tensor of the grid's shape, and one contiguous run
 * of the row-major order. Expressions (expr.c) and reductions (reduce.c)
 * read their operands box by box with gt_copy_into. */
#ifndef GT_GRID_H
#define GT_GRID_H

#include <stdint.h>

#include "tensor/tensor.h"

#define GT_BOX_MAX 4096

typedef struct gt_grid {
  int nd;
  int64_t shape[GT_MAXDIM];
  int64_t inner[GT_MAXDIM]; /* elements in one index of each dimension */
} gt_grid;

typedef struct gt_box {
  int d;                    /* dims before d fixed at idx, d ranged */
  int64_t idx[GT_MAXDIM];
  int64_t len;              /* along d, from idx[d] */
  int64_t n;                /* elements */
} gt_box;

void gt_grid_init(gt_grid *g, int nd, const int64_t *shape);
/* The box starting at element pos (< hi) of a grid with numel > 0: the
 * outermost dimension whose whole slices fit both GT_BOX_MAX and
 * [pos, hi). */
void gt_grid_box(const gt_grid *g, int64_t pos, int64_t hi, gt_box *b);
/* The part of view t (of the grid's shape) that box b covers. Borrowed: no
 * reference is taken. */
gt_tensor gt_box_view(const gt_tensor *t, const gt_grid *g, const gt_box *b);

#endif
