#include "tensor/tensor.h"

#include <string.h>

#include "tensor/quant.h"

int gt_numel(int ndim, const int64_t *shape, int64_t *numel, gt_err *err) {
  int64_t n = 1;
  if (ndim < 0 || ndim > GT_MAXDIM)
    return gt_fail(err, "%d dimensions (at most %d supported)", ndim, GT_MAXDIM);
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return gt_fail(err, "negative dimension %lld", (long long)shape[i]);
    if (__builtin_mul_overflow(n, shape[i], &n))
      return gt_fail(err, "shape has more than 2^63 elements");
  }
  *numel = n;
  return GT_OK;
}

int64_t gt_tensor_numel(const gt_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

/* Bytes of n elements of dt from the start of a row; for block-quantised
 * types n is a whole number of blocks wherever a valid view asks. */
static int64_t span_bytes(gt_dtype dt, int64_t n) {
  return n / (int64_t)gt_dtype_block(dt) * (int64_t)gt_dtype_size(dt);
}

int64_t gt_tensor_nbytes(const gt_tensor *t) {
  return span_bytes(t->dtype, gt_tensor_numel(t));
}

/* A view is done: quantised views must keep whole blocks. */
static int finish(const gt_tensor *t, gt_tensor *out, gt_err *err) {
  if (gt_quant_view_check(t, err) != GT_OK) return GT_ERR;
  gt_tensor_ref(out, t);
  return GT_OK;
}

/* Lowest and highest byte touched by the view, relative to storage data. */
static int byte_extent(const gt_tensor *t, int64_t *lo, int64_t *hi,
                       gt_err *err) {
  int64_t esz = (int64_t)gt_dtype_size(t->sdtype), a = 0, b = 0;
  int64_t be = (int64_t)gt_dtype_block(t->sdtype);
  if (be > 1) {
    /* Counted in blocks: the last dimension's run of whole blocks is one
     * "element" of the byte layout below. */
    if (gt_quant_view_check(t, err) != GT_OK) return GT_ERR;
    gt_tensor b = *t;
    b.sdtype = GT_U8;
    for (int i = 0; i < t->ndim; i++) {
      if (t->shape[i] == 0) {
        *lo = *hi = t->offset;
        return GT_OK;
      }
      b.strides[i] = t->strides[i] / be * esz;
    }
    int64_t last = t->shape[t->ndim - 1] / be * esz;
    b.shape[t->ndim - 1] = 1;
    if (byte_extent(&b, lo, hi, err) != GT_OK) return GT_ERR;
    if (__builtin_add_overflow(*hi, last - 1, hi))
      return gt_fail(err, "offset overflow");
    return GT_OK;
  }
  for (int i = 0; i < t->ndim; i++) {
    int64_t span;
    if (t->shape[i] == 0) {
      *lo = t->offset;
      *hi = t->offset; /* empty: touches nothing */
      return GT_OK;
    }
    if (__builtin_mul_overflow(t->shape[i] - 1, t->strides[i], &span) ||
        __builtin_mul_overflow(span, esz, &span))
      return gt_fail(err, "strides overflow");
    if (span < 0) {
      if (__builtin_add_overflow(a, span, &a)) return gt_fail(err, "strides overflow");
    } else if (__builtin_add_overflow(b, span, &b)) {
      return gt_fail(err, "strides overflow");
    }
  }
  if (__builtin_add_overflow(t->offset, a, lo) ||
      __builtin_add_overflow(t->offset, b, hi) ||
      __builtin_add_overflow(*hi, esz, hi))
    return gt_fail(err, "offset overflow");
  return GT_OK;
}

int gt_tensor_extent(const gt_tensor *t, int64_t *lo, int64_t *hi,
                     gt_err *err) {
  return byte_extent(t, lo, hi, err);
}

int gt_tensor_check(const gt_tensor *t, gt_err *err) {
  int64_t n, lo, hi;
  if (gt_numel(t->ndim, t->shape, &n, err) != GT_OK) return GT_ERR;
  int64_t bytes;
  if (__builtin_mul_overflow(n, (int64_t)gt_dtype_size(t->dtype), &bytes))
    return gt_fail(err, "shape has too many bytes");
  if (gt_quant_view_check(t, err) != GT_OK) return GT_ERR;
  if (byte_extent(t, &lo, &hi, err) != GT_OK) return GT_ERR;
  if (n > 0 && (lo < 0 || (uint64_t)hi > t->storage->size))
    return gt_fail(err, "view reaches bytes [%lld, %lld) outside its %zu-byte storage",
                   (long long)lo, (long long)hi, t->storage->size);
  return GT_OK;
}

/* Row-major strides. A non-empty shape's products fit (gt_numel checked
 * them); an empty one (a 0 somewhere) may have other dimensions whose
 * product overflows: no element is ever addressed, so strides past the
 * overflow are 0. */
static void contiguous_strides(gt_tensor *t) {
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    t->strides[i] = s;
    if (__builtin_mul_overflow(s, t->shape[i] ? t->shape[i] : 1, &s)) s = 0;
  }
}

int gt_tensor_make(gt_tensor *out, gt_storage *s, gt_dtype dtype, int ndim,
                   const int64_t *shape, int64_t offset, gt_err *err) {
  gt_tensor t;
  memset(&t, 0, sizeof t);
  if (ndim < 0 || ndim > GT_MAXDIM)
    return gt_fail(err, "%d dimensions (at most %d supported)", ndim, GT_MAXDIM);
  t.storage = s;
  t.dtype = t.sdtype = dtype;
  t.ndim = ndim;
  if (ndim) memcpy(t.shape, shape, (size_t)ndim * sizeof *shape);
  t.offset = offset;
  if (gt_numel(ndim, shape, &(int64_t){0}, err) != GT_OK) return GT_ERR;
  contiguous_strides(&t);
  if (gt_tensor_check(&t, err) != GT_OK) return GT_ERR;
  gt_storage_retain(s);
  *out = t;
  return GT_OK;
}

int gt_tensor_zeros(gt_tensor *out, gt_dtype dtype, int ndim,
                    const int64_t *shape, gt_err *err) {
  return gt_tensor_alloc(out, dtype, ndim, shape, 1, err);
}

int gt_tensor_alloc(gt_tensor *out, gt_dtype dtype, int ndim,
                    const int64_t *shape, int zero, gt_err *err) {
  int64_t n, bytes;
  if (gt_numel(ndim, shape, &n, err) != GT_OK) return GT_ERR;
  if (__builtin_mul_overflow(n, (int64_t)gt_dtype_size(dtype), &bytes))
    return gt_fail(err, "shape has too many bytes");
  bytes = span_bytes(dtype, n);
  gt_storage *s = gt_storage_new((size_t)bytes, zero, err);
  if (!s) return GT_ERR;
  int rc = gt_tensor_make(out, s, dtype, ndim, shape, 0, err);
  gt_storage_release(s);
  return rc;
}

int gt_tensor_phantom(gt_tensor *out, gt_dtype dtype, int ndim,
                      const int64_t *shape, gt_err *err) {
  int64_t n, bytes;
  if (gt_numel(ndim, shape, &n, err) != GT_OK) return GT_ERR;
  if (__builtin_mul_overflow(n, (int64_t)gt_dtype_size(dtype), &bytes))
    return gt_fail(err, "shape has too many bytes");
  bytes = span_bytes(dtype, n);
  gt_storage *s = gt_storage_phantom((size_t)bytes, err);
  if (!s) return GT_ERR;
  int rc = gt_tensor_make(out, s, dtype, ndim, shape, 0, err);
  gt_storage_release(s);
  return rc;
}

void gt_tensor_free(gt_tensor *t) {
  if (t->storage) gt_storage_release(t->storage);
  t->storage = NULL;
}

void gt_tensor_ref(gt_tensor *out, const gt_tensor *src) {
  *out = *src;
  if (out->storage) gt_storage_retain(out->storage);
}

int gt_tensor_is_contiguous(const gt_tensor *t) {
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] == 0) return 1;
    if (t->shape[i] != 1 && t->strides[i] != s) return 0;
    s *= t->shape[i];
  }
  return 1;
}

int gt_tensor_is_plain(const gt_tensor *t) {
  return t->dtype == t->sdtype && !t->swap && t->storage->load == NULL &&
         gt_tensor_is_contiguous(t);
}

static int check_dim(const gt_tensor *t, int d, gt_err *err) {
  if (d < 0 || d >= t->ndim)
    return gt_fail(err, "dimension %d out of range for a %d-d tensor", d + 1,
                   t->ndim);
  return GT_OK;
}

int gt_permute(const gt_tensor *src, const int *perm, gt_tensor *out,
               gt_err *err) {
  int seen[GT_MAXDIM] = {0};
  for (int i = 0; i < src->ndim; i++) {
    if (check_dim(src, perm[i], err) != GT_OK) return GT_ERR;
    if (seen[perm[i]]++)
      return gt_fail(err, "permute: dimension %d repeated", perm[i] + 1);
  }
  gt_tensor t = *src;
  for (int i = 0; i < src->ndim; i++) {
    t.shape[i] = src->shape[perm[i]];
    t.strides[i] = src->strides[perm[i]];
  }
  return finish(&t, out, err);
}

int gt_transpose(const gt_tensor *src, int d0, int d1, gt_tensor *out,
                 gt_err *err) {
  if (check_dim(src, d0, err) || check_dim(src, d1, err)) return GT_ERR;
  int perm[GT_MAXDIM];
  for (int i = 0; i < src->ndim; i++) perm[i] = i;
  perm[d0] = d1;
  perm[d1] = d0;
  return gt_permute(src, perm, out, err);
}

int gt_narrow(const gt_tensor *src, int dim, int64_t start, int64_t len,
              gt_tensor *out, gt_err *err) {
  if (check_dim(src, dim, err) != GT_OK) return GT_ERR;
  if (start < 0 || len < 0 || start > src->shape[dim] ||
      len > src->shape[dim] - start)
    return gt_fail(err, "narrow: [%lld, +%lld) is outside dimension %d of size %lld",
                   (long long)start + 1, (long long)len, dim + 1,
                   (long long)src->shape[dim]);
  gt_tensor t = *src;
  t.shape[dim] = len;
  if (len > 0)
    t.offset += span_bytes(src->sdtype, start * src->strides[dim]);
  int64_t be = (int64_t)gt_dtype_block(src->sdtype);
  if (be > 1 && dim == src->ndim - 1 && (start % be != 0 || len % be != 0))
    return gt_fail(err, "narrow: [%lld, +%lld) of the last dimension would cut "
                   "the %lld-element blocks of a %s tensor; dequantise first "
                   "with :float()", (long long)start + 1, (long long)len,
                   (long long)be, gt_dtype_name(src->sdtype));
  return finish(&t, out, err);
}

int gt_select(const gt_tensor *src, int dim, int64_t index, gt_tensor *out,
              gt_err *err) {
  if (check_dim(src, dim, err) != GT_OK) return GT_ERR;
  if (index < 0 || index >= src->shape[dim])
    return gt_fail(err, "select: index %lld out of range for dimension %d of size %lld",
                   (long long)index + 1, dim + 1, (long long)src->shape[dim]);
  gt_tensor t = *src;
  t.offset += span_bytes(src->sdtype, index * src->strides[dim]);
  for (int i = dim; i + 1 < src->ndim; i++) {
    t.shape[i] = src->shape[i + 1];
    t.strides[i] = src->strides[i + 1];
  }
  t.ndim--;
  return finish(&t, out, err);
}

int gt_squeeze(const gt_tensor *src, int dim, gt_tensor *out, gt_err *err) {
  if (dim >= 0 && check_dim(src, dim, err) != GT_OK) return GT_ERR;
  gt_tensor t = *src;
  int k = 0;
  for (int i = 0; i < src->ndim; i++) {
    int drop = src->shape[i] == 1 && (dim < 0 || dim == i);
    if (!drop) {
      t.shape[k] = src->shape[i];
      t.strides[k] = src->strides[i];
      k++;
    }
  }
  t.ndim = k;
  return finish(&t, out, err);
}

int gt_unsqueeze(const gt_tensor *src, int dim, gt_tensor *out, gt_err *err) {
  if (dim < 0 || dim > src->ndim)
    return gt_fail(err, "unsqueeze: dimension %d out of range", dim + 1);
  if (src->ndim >= GT_MAXDIM)
    return gt_fail(err, "unsqueeze: at most %d dimensions", GT_MAXDIM);
  gt_tensor t = *src;
  for (int i = src->ndim; i > dim; i--) {
    t.shape[i] = src->shape[i - 1];
    t.strides[i] = src->strides[i - 1];
  }
  t.shape[dim] = 1;
  t.strides[dim] = dim < src->ndim ? src->strides[dim] * src->shape[dim] : 1;
  t.ndim++;
  return finish(&t, out, err);
}

int gt_flip(const gt_tensor *src, int dim, gt_tensor *out, gt_err *err) {
  if (check_dim(src, dim, err) != GT_OK) return GT_ERR;
  gt_tensor t = *src;
  if (src->shape[dim] > 1) {
    t.offset += span_bytes(src->sdtype, (src->shape[dim] - 1) * src->strides[dim]);
    t.strides[dim] = -src->strides[dim];
  }
  return finish(&t, out, err);
}

/* torch's computeStride: can `shape` be expressed over src's strides?
 * Walk src dims in chunks that are contiguous among themselves and match
 * them with groups of new dims of the same element count. */
static int view_strides(const gt_tensor *src, int ndim, const int64_t *shape,
                        int64_t *strides) {
  int64_t numel = gt_tensor_numel(src);
  if (numel == 0 || src->ndim == 0) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
      strides[i] = s;
      s *= shape[i] ? shape[i] : 1;
    }
    return 1;
  }
  int view_d = ndim - 1;
  int64_t chunk = 1, tensor_numel = 1, view_numel = 1;
  chunk = src->ndim ? src->strides[src->ndim - 1] : 1;
  for (int d = src->ndim - 1; d >= 0; d--) {
    tensor_numel *= src->shape[d];
    if (d == 0 || (src->shape[d - 1] != 1 &&
                   src->strides[d - 1] != tensor_numel * chunk)) {
      while (view_d >= 0 &&
             (view_numel < tensor_numel || shape[view_d] == 1)) {
        strides[view_d] = view_numel * chunk;
        view_numel *= shape[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return 0;
      if (d > 0) {
        chunk = src->strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

int gt_view_as(const gt_tensor *src, int ndim, const int64_t *shape,
               gt_tensor *out, int *needs_copy, gt_err *err) {
  int64_t n;
  *needs_copy = 0;
  if (gt_numel(ndim, shape, &n, err) != GT_OK) return GT_ERR;
  if (n != gt_tensor_numel(src))
    return gt_fail(err, "reshape: %lld elements cannot take a shape of %lld",
                   (long long)gt_tensor_numel(src), (long long)n);
  gt_tensor t = *src;
  if (!view_strides(src, ndim, shape, t.strides)) {
    *needs_copy = 1;
    return gt_fail(err, "reshape: strides do not allow a view");
  }
  t.ndim = ndim;
  memcpy(t.shape, shape, (size_t)ndim * sizeof *shape);
  return finish(&t, out, err);
}

/* Whether every value of `a` is exactly a value of `b`. */
static int exact_widening(gt_dtype a, gt_dtype b) {
  static const signed char rank[GT_NDTYPES] = {
    [GT_F8E4M3FN] = 1, [GT_F8E5M2] = 1, [GT_F16] = 2, [GT_BF16] = 2,
    [GT_F32] = 3, [GT_F64] = 4};
  if (a == b) return 1;
  if (gt_dtype_is_float(a) && gt_dtype_is_float(b)) {
    if (b == GT_BF16) return 0;           /* bf16 has 8 significant bits */
    if (a == GT_BF16) return rank[b] >= 3;
    return rank[b] > rank[a];
  }
  if (a == GT_BOOL) return b != GT_STRING && !gt_dtype_is_complex(b);
  if (gt_dtype_is_int(a) && gt_dtype_is_int(b)) {
    int ua = a >= GT_U64, ub = b >= GT_U64;
    size_t sa = gt_dtype_size(a), sb = gt_dtype_size(b);
    if (ua == ub) return sb >= sa;
    return ua && !ub && sb > sa;          /* unsigned into wider signed */
  }
  if (gt_dtype_is_int(a) && gt_dtype_is_float(b)) {
    size_t sa = gt_dtype_size(a);
    return (b == GT_F64 && sa <= 4) || (b == GT_F32 && sa <= 2) ||
           (b == GT_F16 && sa == 1);
  }
  return a == GT_C64 && b == GT_C128;
}

int gt_cast(const gt_tensor *src, gt_dtype to, gt_tensor *out, int *needs_copy,
            gt_err *err) {
  *needs_copy = 0;
  if (!gt_dtype_castable(src->dtype, to))
    return gt_fail(err, "cannot cast %s to %s", gt_dtype_name(src->dtype),
                   gt_dtype_name(to));
  /* A cast of a lazy cast may skip the intermediate type only when it holds
   * every stored value exactly; otherwise the intermediate must be made. */
  if (src->dtype != src->sdtype && to != src->dtype &&
      !exact_widening(src->sdtype, src->dtype)) {
    *needs_copy = 1;
    return gt_fail(err, "cast of a cast needs the intermediate values");
  }
  gt_tensor t = *src;
  t.dtype = to;
  return finish(&t, out, err);
}
