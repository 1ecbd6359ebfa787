/* blocks.h: visiting a tensor (or two of the same shape) in bounded pieces.
 *
 * The reductions (compare.h, stats.h) materialise their inputs piece by
 * piece into fixed buffers instead of copying whole tensors: a piece is a
 * view of at most GT_BLOCK elements, cut along leading dimensions (rows of
 * a 1-d tensor, else one index of dimension 0 at a time, recursively). */
#ifndef GT_BLOCKS_H
#define GT_BLOCKS_H

#include "tensor/tensor.h"

#define GT_BLOCK (1 << 16)

/* Called with corresponding pieces of a and b (b NULL when visiting one
 * tensor); each piece has at most GT_BLOCK elements. */
typedef int (*gt_block_fn)(const gt_tensor *a, const gt_tensor *b, void *ctx,
                           gt_err *err);

/* Visits every element of a (and b, which must have a's shape, or be NULL)
 * once, in row-major order, stopping at the first failing call. */
int gt_each_block(const gt_tensor *a, const gt_tensor *b, gt_block_fn fn,
                  void *ctx, gt_err *err);

#endif
