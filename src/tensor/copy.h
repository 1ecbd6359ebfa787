/* copy.h: materialising views, the only place bytes move.
 *
 * gt_copy_into is the primitive every writer and every materialising method
 * uses: it walks a (possibly permuted, strided, flipped, lazily cast,
 * byte-swapped) view and writes its elements row-major into a caller's
 * contiguous buffer as `ddt`, in cache-sized tiles, optionally on several
 * threads for big tensors. gt_stream cuts a view into pieces that fit a bounded buffer so a
 * writer never holds a whole tensor. */
#ifndef GT_COPY_H
#define GT_COPY_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/tensor.h"

/* Write all elements of t, row-major, converted to ddt, into dst (which has
 * room for numel * size(ddt) bytes). Loads lazy storages first. */
int gt_copy_into(const gt_tensor *t, gt_dtype ddt, void *dst, gt_err *err);

/* New plain contiguous tensor with t's values as t->dtype (for a view of a
 * phantom, a phantom: storage.h). */
int gt_contiguous(const gt_tensor *t, gt_tensor *out, gt_err *err);
/* GT_OK when materialising `bytes` for t is within GRAFT_MAX_BYTES
 * (tensor/cap.h); else fails naming the file t is a view of, its shape and
 * how many bytes are actually stored. Callers that allocate a result for
 * a view (gt_contiguous, the binding's bytes()/totable()) call it first. */
int gt_materialise_check(const gt_tensor *t, uint64_t bytes, gt_err *err);

/* Concatenate n tensors of equal dtype along dim (0-based); shapes must
 * agree elsewhere. Any phantom among them makes the result a phantom. */
int gt_cat(const gt_tensor *ts, int n, int dim, gt_tensor *out, gt_err *err);
/* Stack n tensors of equal shape along a new dim. */
int gt_stack(const gt_tensor *ts, int n, int dim, gt_tensor *out, gt_err *err);

/* Called with consecutive pieces of the materialised bytes. */
typedef int (*gt_sink_fn)(void *ctx, const void *bytes, size_t n, gt_err *err);
/* Materialise t as ddt through buf (bufsize bytes, >= 64 KiB recommended),
 * calling sink for each filled piece, in order. Pages of a mapped source are
 * released as they are consumed when `release` is set. */
int gt_stream(const gt_tensor *t, gt_dtype ddt, void *buf, size_t bufsize,
              gt_sink_fn sink, void *ctx, int release, gt_err *err);

/* 1: transposes use only the portable scalar tiles (for tests). */
void gt_copy_force_scalar(int on);

/* Number of worker threads kernels may use (1 = no threads); default from
 * the environment variable GRAFT_THREADS, else the CPUs online, at most 4. */
void gt_set_threads(int n);
/* Runs fn(ctx, i) for every i in [0, k) (k <= 64), spread over the worker
 * pool, the caller taking a share; returns when all have run. When the pool
 * is busy (another caller) or has no workers, the caller runs them all in
 * order. fn cannot fail: it records results in ctx. */
void gt_parallel_for(int k, void (*fn)(void *ctx, int index), void *ctx);
int gt_get_threads(void);

#endif
