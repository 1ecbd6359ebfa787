/* bundle_write.c: TensorFlow tensor bundle writer (bundle.h,
 * gt_tfbundle_write): the data shards, then the .index table, committed as
 * one set. The reader is bundle_read.c. */
#include "formats/tf/bundle.h"

#include <stdlib.h>
#include <string.h>

#include "io/crc32c.h"
#include "io/fileout.h"
#include "tensor_bundle.pb-c.h"
#include "formats/tf/proto.h"
#include "formats/tf/table.h"
#include "tensor/copy.h"

typedef struct written {
  int shard;
  uint64_t off, size;
  uint32_t crc;
} written;

typedef struct sink_ctx {
  gt_out *o;
  uint32_t crc;
  uint64_t *done, total;
  const gt_save *s;
} sink_ctx;

static int put(sink_ctx *c, const void *p, size_t n, gt_err *err) {
  if (gt_out_write(c->o, p, n, err) != GT_OK) return GT_ERR;
  c->crc = gt_crc32c_extend(c->crc, p, n);
  return GT_OK;
}

static int numeric_sink(void *ctx, const void *bytes, size_t n, gt_err *err) {
  sink_ctx *c = ctx;
  if (put(c, bytes, n, err) != GT_OK) return GT_ERR;
  *c->done += n;
  if (c->s->progress) c->s->progress(c->s->progress_ctx, *c->done, c->total);
  return GT_OK;
}

/* Element k (row-major) of a ready string view. */
static gt_str str_at(const gt_tensor *t, int64_t k) {
  int64_t off = t->offset;
  for (int d = t->ndim - 1; d >= 0; d--) {
    int64_t i = t->shape[d] ? k % t->shape[d] : 0;
    k = t->shape[d] ? k / t->shape[d] : 0;
    off += i * t->strides[d] * (int64_t)sizeof(gt_str);
  }
  gt_str e;
  memcpy(&e, t->storage->data + off, sizeof e);
  return e;
}

/* TF's string entry: varint lengths, masked checksum of the lengths (as
 * u32, or u64 past 4 GiB), the bytes; the entry crc covers all three. */
static int write_strings(sink_ctx *c, const gt_tensor *t, gt_err *err) {
  if (gt_storage_ready(t->storage, err) != GT_OK) return GT_ERR;
  int64_t n = gt_tensor_numel(t);
  gt_tfbuf lens = {0};
  uint32_t lc = 0;
  for (int64_t k = 0; k < n; k++) {
    gt_str e = str_at(t, k);
    unsigned char le[8];
    for (int b = 0; b < 8; b++) le[b] = (unsigned char)((uint64_t)e.n >> (8 * b));
    lc = gt_crc32c_extend(lc, le, (uint64_t)e.n <= 0xFFFFFFFFu ? 4 : 8);
    if (gt_tfbuf_varint(&lens, e.n, err) != GT_OK) {
      gt_tfbuf_free(&lens);
      return GT_ERR;
    }
  }
  unsigned char m[4];
  uint32_t mv = gt_crc32c_mask(lc);
  for (int b = 0; b < 4; b++) m[b] = (unsigned char)(mv >> (8 * b));
  int rc = gt_out_write(c->o, lens.p, lens.n, err);
  gt_tfbuf_free(&lens);
  if (rc != GT_OK || gt_out_write(c->o, m, 4, err) != GT_OK) return GT_ERR;
  c->crc = gt_crc32c_extend(lc, m, 4);
  for (int64_t k = 0; k < n; k++) {
    gt_str e = str_at(t, k);
    if (put(c, e.p, e.n, err) != GT_OK) return GT_ERR;
  }
  return GT_OK;
}

/* Writes data shard `shard` into *op (opened here, left uncommitted: the
 * whole checkpoint is committed as one set). */
static int write_shard(const char *path, const gt_save *s, const int *shard_of,
                       int shard, written *w, uint64_t *done, uint64_t total,
                       unsigned char *buf, gt_out *op, gt_err *err) {
  gt_out o;
  if (gt_out_open(&o, path, NULL, err) != GT_OK) return GT_ERR;
  for (size_t i = 0; i < s->n; i++) {
    if ((shard_of ? shard_of[i] : 0) != shard) continue;
    const gt_tensor *t = &s->entries[i].t;
    sink_ctx c = {&o, 0, done, total, s};
    w[i].shard = shard;
    w[i].off = o.pos;
    int rc = t->dtype == GT_STRING
                 ? write_strings(&c, t, err)
                 : gt_stream(t, t->dtype, buf, GT_OUT_BUFSIZE, numeric_sink, &c,
                             1, err);
    if (rc != GT_OK) {
      gt_out_abort(&o);
      return gt_wrap(err, "tensor \"%s\"", s->entries[i].name);
    }
    w[i].size = o.pos - w[i].off;
    w[i].crc = gt_crc32c_mask(c.crc);
  }
  *op = o;
  return GT_OK;
}

static int cmp_names(const void *a, const void *b, void *ctx) {
  const gt_save *s = ctx;
  const char *x = s->entries[*(const size_t *)a].name;
  const char *y = s->entries[*(const size_t *)b].name;
  return gt_tftable_cmp((const unsigned char *)x, strlen(x),
                        (const unsigned char *)y, strlen(y));
}

/* Serialised BundleEntryProto of entry i into out. */
static int pack_entry(const gt_tensor *t, const written *w, gt_tfbuf *out,
                      gt_err *err) {
  Tensorflow__BundleEntryProto e = TENSORFLOW__BUNDLE_ENTRY_PROTO__INIT;
  Tensorflow__TensorShapeProto sh = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT;
  Tensorflow__TensorShapeProto__Dim dims[GT_MAXDIM], *dp[GT_MAXDIM];
  for (int d = 0; d < t->ndim; d++) {
    tensorflow__tensor_shape_proto__dim__init(&dims[d]);
    dims[d].size = t->shape[d];
    dp[d] = &dims[d];
  }
  sh.n_dim = (size_t)t->ndim;
  sh.dim = dp;
  e.dtype = (Tensorflow__DataType)gt_tf_from_dtype(t->dtype);
  e.shape = &sh;
  e.shard_id = w->shard;
  e.offset = (int64_t)w->off;
  e.size = (int64_t)w->size;
  e.crc32c = w->crc;
  size_t n = tensorflow__bundle_entry_proto__get_packed_size(&e);
  out->n = 0;
  unsigned char *p = malloc(n ? n : 1);
  if (!p) return gt_fail(err, "out of memory");
  tensorflow__bundle_entry_proto__pack(&e, p);
  int rc = gt_tfbuf_put(out, p, n, err);
  free(p);
  return rc;
}

/* Writes the .index into *op (left uncommitted, like the shards). */
static int write_index(const char *path, const gt_save *s, const written *w,
                       int num_shards, gt_out *op, gt_err *err) {
  size_t n = s->n;
  size_t *order = malloc((n ? n : 1) * sizeof *order);
  gt_tfkv *kv = calloc(n + 1, sizeof *kv);
  gt_tfbuf *vals = calloc(n + 1, sizeof *vals);
  gt_tfbuf table = {0};
  int rc = GT_ERR;
  if (!order || !kv || !vals) {
    gt_fail(err, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < n; i++) order[i] = i;
  qsort_r(order, n, sizeof *order, cmp_names, (void *)s);
  Tensorflow__VersionDef v = TENSORFLOW__VERSION_DEF__INIT;
  Tensorflow__BundleHeaderProto h = TENSORFLOW__BUNDLE_HEADER_PROTO__INIT;
  v.producer = 1;
  h.num_shards = num_shards;
  h.version = &v;
  unsigned char hb[64];
  size_t hn = tensorflow__bundle_header_proto__pack(&h, hb);
  kv[0] = (gt_tfkv){(const unsigned char *)"", 0, hb, hn};
  for (size_t k = 0; k < n; k++) {
    size_t i = order[k];
    if (pack_entry(&s->entries[i].t, &w[i], &vals[k], err) != GT_OK) goto done;
    kv[k + 1] = (gt_tfkv){(const unsigned char *)s->entries[i].name,
                          strlen(s->entries[i].name), vals[k].p, vals[k].n};
  }
  if (gt_tftable_build(kv, n + 1, NULL, &table, err) != GT_OK) goto done;
  gt_out o;
  if (gt_out_open(&o, path, NULL, err) != GT_OK) goto done;
  if (gt_out_write(&o, table.p, table.n, err) != GT_OK) {
    gt_out_abort(&o);
    goto done;
  }
  *op = o;
  rc = GT_OK;
done:
  for (size_t k = 0; vals && k < n; k++) gt_tfbuf_free(&vals[k]);
  free(vals);
  free(kv);
  free(order);
  gt_tfbuf_free(&table);
  return rc;
}

static int check_save(const gt_save *s, const gt_tfbundle_opts *o,
                      uint64_t *total, gt_err *err) {
  if (o->num_shards < 1 || o->num_shards > GT_TFBUNDLE_MAX_SHARDS)
    return gt_fail(err, "num_shards must be in [1, %d]", GT_TFBUNDLE_MAX_SHARDS);
  *total = 0;
  for (size_t i = 0; i < s->n; i++) {
    const char *name = s->entries[i].name;
    if (!name[0])
      return gt_fail(err, "the empty name is the bundle header's key");
    if ((unsigned char)name[0] == 0)
      return gt_fail(err, "tensor \"%s\": names starting with byte 0 are "
                          "slice keys", name);
    if (!gt_tf_from_dtype(s->entries[i].t.dtype))
      return gt_fail(err, "tensor \"%s\": dtype %s has no TensorFlow type",
                     name, gt_dtype_name(s->entries[i].t.dtype));
    if (o->shard_of && (o->shard_of[i] < 0 || o->shard_of[i] >= o->num_shards))
      return gt_fail(err, "tensor \"%s\": shard %d is not in [0, %d)", name,
                     o->shard_of[i], o->num_shards);
    if (s->entries[i].t.dtype != GT_STRING)
      *total += (uint64_t)gt_tensor_nbytes(&s->entries[i].t);
  }
  return GT_OK;
}

int gt_tfbundle_write(const char *prefix, const gt_save *s,
                      const gt_tfbundle_opts *o, gt_err *err) {
  uint64_t total = 0, done = 0;
  if (check_save(s, o, &total, err) != GT_OK) return GT_ERR;
  int ns = o->num_shards, rc = GT_ERR, written_files = 0;
  gt_out *outs = NULL;
  char **paths = calloc((size_t)ns + 1, sizeof *paths);
  written *w = calloc(s->n ? s->n : 1, sizeof *w);
  unsigned char *buf = NULL;
  if (!paths || !w || posix_memalign((void **)&buf, 64, GT_OUT_BUFSIZE) != 0) {
    buf = NULL;
    gt_fail(err, "out of memory");
    goto done;
  }
  for (int k = 0; k <= ns; k++) {
    paths[k] = k < ns ? gt_tfbundle_data_path(prefix, k, ns)
                      : gt_tfbundle_index_path(prefix);
    if (!paths[k]) {
      gt_fail(err, "out of memory");
      goto done;
    }
    if (gt_out_check_inputs(paths[k], s->entries, s->n, err) != GT_OK) {
      gt_wrap(err, "%s", paths[k]);
      goto done;
    }
  }
  /* Every file is written under a temporary name first; the set is then
   * committed index last, after the old index is gone (gt_out_commit_set),
   * so new data never sits under an old index. */
  outs = calloc((size_t)ns + 1, sizeof *outs);
  if (!outs) {
    gt_fail(err, "out of memory");
    goto done;
  }
  for (int k = 0; k <= ns; k++) {
    int wrc = k < ns ? write_shard(paths[k], s, o->shard_of, k, w, &done,
                                   total, buf, &outs[k], err)
                     : write_index(paths[ns], s, w, ns, &outs[ns], err);
    if (wrc != GT_OK) {
      gt_wrap(err, "%s", paths[k]);
      goto done;
    }
    written_files = k + 1;
  }
  written_files = 0;
  if (gt_out_commit_set(outs, (size_t)ns + 1, err) != GT_OK) {
    gt_wrap(err, "%s", paths[ns]);
    goto done;
  }
  rc = GT_OK;
done:
  for (int k = 0; k < written_files; k++) gt_out_abort(&outs[k]);
  free(outs);
  for (int k = 0; paths && k <= ns; k++) free(paths[k]);
  free(paths);
  free(w);
  free(buf);
  return rc;
}
