/* tfv1.c: V1 checkpoint reader (tfv1.h). */
#include "formats/tf/v1.h"

#include <stdlib.h>
#include <string.h>

#include "saved_tensor_slice.pb-c.h"
#include "formats/tf/proto.h"
#include "formats/tf/table.h"

/* Copy slice `src` (a contiguous tensor of the slice's shape) into the
 * full contiguous tensor dst at start[]. */
static void place(gt_tensor *dst, const gt_tensor *src, const int64_t *start) {
  int nd = dst->ndim;
  size_t es = gt_dtype_size(dst->dtype);
  int64_t idx[GT_MAXDIM] = {0}, rows = 1;
  for (int d = 0; d < nd - 1; d++) rows *= src->shape[d];
  size_t run = (size_t)src->shape[nd - 1] * es;
  const unsigned char *from = src->storage->data + src->offset;
  for (int64_t r = 0; run && r < rows; r++) {
    int64_t off = 0;
    for (int d = 0; d < nd; d++)
      off = off * dst->shape[d] + start[d] + (d < nd - 1 ? idx[d] : 0);
    memcpy(dst->storage->data + (size_t)off * es, from, run);
    from += run;
    for (int d = nd - 2; d >= 0; d--) {
      if (++idx[d] < src->shape[d]) break;
      idx[d] = 0;
    }
  }
}

typedef struct v1 {
  gt_tftable t;
  Tensorflow__SavedTensorSlices *meta;
  Tensorflow__SavedTensorSlices **data;   /* per table entry */
} v1;

static void v1_close(v1 *c) {
  for (size_t i = 0; c->data && i < c->t.n; i++)
    if (c->data[i]) tensorflow__saved_tensor_slices__free_unpacked(c->data[i], NULL);
  free(c->data);
  if (c->meta) tensorflow__saved_tensor_slices__free_unpacked(c->meta, NULL);
  gt_tftable_close(&c->t);
}

static int v1_open(v1 *c, gt_storage *file, gt_err *err) {
  memset(c, 0, sizeof *c);
  if (gt_tftable_open(&c->t, file, err) != GT_OK) return GT_ERR;
  if (c->t.n == 0 || c->t.kv[0].klen != 0 ||
      !(c->meta = tensorflow__saved_tensor_slices__unpack(NULL, c->t.kv[0].vlen,
                                                          c->t.kv[0].val)) ||
      !c->meta->meta)
    return gt_fail(err, "no SavedTensorSlices meta entry (key \"\"): not a "
                        "V1 checkpoint");
  c->data = calloc(c->t.n, sizeof *c->data);
  if (!c->data) return gt_fail(err, "out of memory");
  for (size_t i = 1; i < c->t.n; i++) {
    c->data[i] = tensorflow__saved_tensor_slices__unpack(NULL, c->t.kv[i].vlen,
                                                         c->t.kv[i].val);
    if (!c->data[i] || !c->data[i]->data || !c->data[i]->data->data)
      return gt_fail(err, "entry %zu is not a SavedTensorSlices with data", i);
  }
  return GT_OK;
}

/* The tensor described by sm, from every data entry naming it. */
static int build(const v1 *c, const Tensorflow__SavedSliceMeta *sm,
                 gt_tensor *out, gt_err *err) {
  gt_dtype dt;
  char nb[24];
  if (gt_tf_to_dtype((int)sm->type, &dt) != 0)
    return gt_fail(err, "unsupported dtype %s", gt_tf_dtype_name((int)sm->type, nb));
  int ndim;
  int64_t shape[GT_MAXDIM];
  if (gt_tf_shape(sm->shape, &ndim, shape, err) != GT_OK) return GT_ERR;
  int have = 0;
  for (size_t i = 1; i < c->t.n; i++) {
    const Tensorflow__SavedSlice *s = c->data[i]->data;
    if (strcmp(s->name, sm->name) != 0) continue;
    int64_t start[GT_MAXDIM], len[GT_MAXDIM];
    Tensorflow__TensorSliceProto full = TENSORFLOW__TENSOR_SLICE_PROTO__INIT;
    const Tensorflow__TensorSliceProto *sp = s->slice ? s->slice : &full;
    if (ndim == 0 && sp->n_extent == 0) {
      /* scalar: the one slice is the tensor */
    } else if (gt_tf_slice_bounds(sp, ndim, shape, start, len, err) != GT_OK) {
      return GT_ERR;
    }
    gt_tensor part;
    if (gt_tf_tensor_from_proto(s->data, (int)sm->type, ndim,
                                ndim ? len : shape, &part, err) != GT_OK)
      return GT_ERR;
    int whole = 1;
    for (int d = 0; d < ndim; d++) whole &= start[d] == 0 && len[d] == shape[d];
    if (whole) {
      if (have) gt_tensor_free(out);
      *out = part;
      have = 1;
      continue;
    }
    if (dt == GT_STRING) {
      gt_tensor_free(&part);
      if (have) gt_tensor_free(out);
      return gt_fail(err, "partitioned string tensors are not supported");
    }
    if (!have && gt_tensor_zeros(out, dt, ndim, shape, err) != GT_OK) {
      gt_tensor_free(&part);
      return GT_ERR;
    }
    have = 1;
    place(out, &part, start);
    gt_tensor_free(&part);
  }
  if (!have) return gt_fail(err, "no data entry holds it");
  return GT_OK;
}

int gt_tfv1_read(gt_storage *file, gt_model *m, gt_err *err) {
  v1 c;
  m->format = "tf";
  int rc = v1_open(&c, file, err);
  const Tensorflow__SavedTensorSliceMeta *meta = rc == GT_OK ? c.meta->meta : NULL;
  for (size_t i = 0; rc == GT_OK && i < meta->n_tensor; i++) {
    gt_tensor t;
    const char *name = meta->tensor[i]->name;
    rc = build(&c, meta->tensor[i], &t, err);
    if (rc != GT_OK) gt_wrap(err, "tensor \"%s\"", name);
    else rc = gt_model_add(m, name, strlen(name), &t, err);
  }
  if (rc == GT_OK) {
    gt_value *d = gt_value_new(GT_V_MAP);
    const Tensorflow__VersionDef *v = meta->versions;
    m->meta = d;
    if (!d || gt_value_setk(d, "version", gt_value_str("v1", 2)) ||
        gt_value_setk(d, "producer", gt_value_int(v ? v->producer : 0)) ||
        gt_value_setk(d, "min_consumer", gt_value_int(v ? v->min_consumer : 0)) ||
        gt_value_setk(d, "index_snappy_blocks", gt_value_int(c.t.snappy_blocks)))
      rc = gt_fail(err, "out of memory");
  }
  v1_close(&c);
  return rc;
}
