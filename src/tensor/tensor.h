/* tensor.h: a tensor is a view on a storage.
 *
 * A view presents `dtype` elements laid out by shape[]/strides[] (strides in
 * elements of `sdtype`, may be 0 or negative) starting `offset` bytes into
 * its storage. `sdtype` is the type of the elements actually stored; when it
 * differs from `dtype` the view is a *lazy cast*: the conversion happens when
 * the data is materialised (copy.h), so cast, permute and friends never copy.
 * `swap` says the stored elements are big-endian.
 *
 * Invariants (checked by gt_tensor_check when a view is made from a file):
 *   0 <= ndim <= GT_MAXDIM, every shape[i] >= 0, numel fits in int64, and
 *   every reachable element lies inside [0, storage->size).
 * A tensor struct owns one reference to its storage (gt_tensor_free drops
 * it); view functions give `out` a new reference and never touch `src`. */
#ifndef GT_TENSOR_H
#define GT_TENSOR_H

#include <stdint.h>

#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/storage.h"

#define GT_MAXDIM 32

typedef struct gt_tensor {
  gt_storage *storage;
  gt_dtype dtype;   /* what the user sees */
  gt_dtype sdtype;  /* what is stored */
  int swap;         /* stored elements are big-endian */
  int ndim;
  int64_t shape[GT_MAXDIM];
  int64_t strides[GT_MAXDIM];
  int64_t offset;   /* bytes from storage->data to element 0 */
} gt_tensor;

/* A contiguous row-major view of `dtype` elements on storage s at byte
 * offset `offset` (s is retained). Checks bounds and overflow. */
int gt_tensor_make(gt_tensor *out, gt_storage *s, gt_dtype dtype, int ndim,
                   const int64_t *shape, int64_t offset, gt_err *err);
/* A fresh zero-filled contiguous tensor on a new heap storage. */
int gt_tensor_zeros(gt_tensor *out, gt_dtype dtype, int ndim,
                    const int64_t *shape, gt_err *err);
/* The same without zeroing when zero == 0: for results that a copy fills
 * completely before anyone reads them. */
int gt_tensor_alloc(gt_tensor *out, gt_dtype dtype, int ndim,
                    const int64_t *shape, int zero, gt_err *err);
/* A contiguous tensor on a phantom storage (storage.h): a shape and a
 * dtype, no bytes, no allocation. */
int gt_tensor_phantom(gt_tensor *out, gt_dtype dtype, int ndim,
                      const int64_t *shape, gt_err *err);
void gt_tensor_free(gt_tensor *t);
/* out = another reference to the same view. */
void gt_tensor_ref(gt_tensor *out, const gt_tensor *src);

/* Element count with overflow check (fails for products >= 2^63). */
int gt_numel(int ndim, const int64_t *shape, int64_t *numel, gt_err *err);
int64_t gt_tensor_numel(const gt_tensor *t);  /* valid tensors only */
/* numel * size of dtype (the materialised size). */
int64_t gt_tensor_nbytes(const gt_tensor *t);
/* Bytes [lo, hi) of the storage the view can touch (lo == hi when empty). */
int gt_tensor_extent(const gt_tensor *t, int64_t *lo, int64_t *hi, gt_err *err);
/* Checks shape, overflow and that every element is inside the storage. */
int gt_tensor_check(const gt_tensor *t, gt_err *err);
/* Row-major contiguous, not a lazy cast, not swapped: bytes are usable as is. */
int gt_tensor_is_plain(const gt_tensor *t);
int gt_tensor_is_contiguous(const gt_tensor *t);

/* View operations. Dimensions here are 0-based and already normalised by
 * the caller (the binding turns 1-based / negative into these). */
int gt_permute(const gt_tensor *src, const int *perm, gt_tensor *out, gt_err *err);
int gt_transpose(const gt_tensor *src, int d0, int d1, gt_tensor *out, gt_err *err);
int gt_narrow(const gt_tensor *src, int dim, int64_t start, int64_t len,
              gt_tensor *out, gt_err *err);
int gt_select(const gt_tensor *src, int dim, int64_t index, gt_tensor *out,
              gt_err *err);
int gt_squeeze(const gt_tensor *src, int dim /* -1: all */, gt_tensor *out,
               gt_err *err);
int gt_unsqueeze(const gt_tensor *src, int dim, gt_tensor *out, gt_err *err);
int gt_flip(const gt_tensor *src, int dim, gt_tensor *out, gt_err *err);
/* A view when strides allow it (as torch's view/reshape), else fails with
 * GT_ERR and *needs_copy = 1 so the caller may copy first. */
int gt_view_as(const gt_tensor *src, int ndim, const int64_t *shape,
               gt_tensor *out, int *needs_copy, gt_err *err);
/* Lazy cast: same view with a new presented dtype. Casting a lazy cast
 * whose intermediate values matter fails with *needs_copy = 1: the caller
 * materialises first (gt_contiguous) and casts that. */
int gt_cast(const gt_tensor *src, gt_dtype to, gt_tensor *out, int *needs_copy,
            gt_err *err);

#endif
