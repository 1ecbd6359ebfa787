/* pbpatch.c: see pbpatch.h. */
#include "io/pbpatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void free_segs(pbp_seg *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (v[i].kind == PBP_BYTES) free(v[i].bytes);
}

void pbp_free(pb_patch *p) {
  free_segs(p->segs, p->nsegs);
  p->nsegs = 0;
}

int pbp_add(pb_patch *p, pbp_seg s, gt_err *err) {
  if (p->nsegs == PBP_MAX_SEGS) {
    free_segs(&s, 1);
    return gt_fail(err, "TensorProto has too many fields to patch");
  }
  p->segs[p->nsegs++] = s;
  return GT_OK;
}

int pbp_add_bytes(pb_patch *p, const uint8_t *b, size_t n, gt_err *err) {
  uint8_t *c = malloc(n ? n : 1);
  if (!c) return gt_fail(err, "out of memory");
  if (n) memcpy(c, b, n);
  return pbp_add(p, (pbp_seg){PBP_BYTES, 0, n, c, NULL}, err);
}

int pbp_add_copy(pb_patch *p, size_t off, size_t len, gt_err *err) {
  pbp_seg *last = p->nsegs ? &p->segs[p->nsegs - 1] : NULL;
  if (last && last->kind == PBP_COPY && last->off + last->len == off) {
    last->len += len;
    return GT_OK;
  }
  return pbp_add(p, (pbp_seg){PBP_COPY, off, len, NULL, NULL}, err);
}

/* Appends value[0, n); on failure the rest are freed (p owns them all). */
static int add_all(pb_patch *p, pbp_seg *value, size_t n, gt_err *err) {
  for (size_t i = 0; i < n; i++)
    if (pbp_add(p, value[i], err) != GT_OK) {
      free_segs(value + i + 1, n - i - 1);
      return GT_ERR;
    }
  return GT_OK;
}

int pbp_splice(pb_patch *p, const uint8_t *buf, size_t start, size_t end,
               int (*is_value)(uint32_t num), uint32_t after, pbp_seg *value,
               size_t n, gt_err *err) {
  pb_reader r;
  pb_rec f;
  int k, placed = 0;
  pb_reader_init(&r, buf, start, end);
  while ((k = pb_next(&r, &f, err)) == 1) {
    int val = is_value(f.num);
    if (!placed && (val || f.num > after)) {
      placed = 1;
      if (add_all(p, value, n, err) != GT_OK) return GT_ERR;
    }
    if (!val && pbp_add_copy(p, f.start, f.end - f.start, err) != GT_OK) {
      k = -1;
      break;
    }
  }
  if (placed) return k == 0 ? GT_OK : GT_ERR;
  if (k == 0) return add_all(p, value, n, err);
  free_segs(value, n);
  return GT_ERR;
}

int pbp_lengths(pb_patch *p, gt_err *err) {
  int d = p->depth;
  const pb_rec *ch = p->chain;
  uint64_t len = 0;
  for (size_t i = 0; i < p->nsegs; i++) len += p->segs[i].len;
  p->newlen[d - 1] = len;
  for (int i = d - 2; i >= 0; i--) {
    uint64_t old_child = ch[i + 1].end - ch[i + 1].lenpos;
    uint64_t new_child = pb_varint_size(p->newlen[i + 1]) + p->newlen[i + 1];
    p->newlen[i] = ch[i].len - old_child + new_child;
    if (p->newlen[i] < new_child) return gt_fail(err, "record lengths overflow");
  }
  p->delta = (int64_t)(pb_varint_size(p->newlen[0]) + p->newlen[0]) -
             (int64_t)(ch[0].end - ch[0].lenpos);
  return GT_OK;
}

size_t pbp_tensors(const pb_patch *p) {
  size_t n = 0;
  for (size_t i = 0; i < p->nsegs; i++) n += p->segs[i].kind == PBP_TENSOR;
  return n;
}

int pbp_open_out(gt_out *o, const char *path, const gt_save *s,
                 const void *patches, size_t n, pbp_at_fn at, gt_err *err) {
  size_t total = 0;
  const gt_entry *e;
  for (size_t i = 0; i < n; i++) total += pbp_tensors(at(patches, i, &e));
  gt_entry *streamed = calloc(total ? total : 1, sizeof *streamed);
  if (!streamed) return gt_fail(err, "out of memory");
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    for (size_t j = pbp_tensors(at(patches, i, &e)); j > 0; j--) streamed[k++] = *e;
  gt_save prog = {streamed, k, s->progress, s->progress_ctx, NULL, 0};
  int rc = gt_out_open(o, path, &prog, err);
  free(streamed);
  return rc;
}

int pbp_write_base(gt_out *o, const uint8_t *base, size_t from, size_t to, gt_err *err) {
  return gt_out_write(o, base + from, to - from, err);
}

int pbp_write_varint(gt_out *o, uint64_t v, gt_err *err) {
  uint8_t b[10];
  return gt_out_write(o, b, pb_put_varint(b, v), err);
}

int pbp_write(gt_out *o, const uint8_t *base, const pb_patch *p, size_t *cursor,
              gt_err *err) {
  for (int d = 0; d < p->depth; d++) {
    if (pbp_write_base(o, base, *cursor, p->chain[d].lenpos, err) != GT_OK ||
        pbp_write_varint(o, p->newlen[d], err) != GT_OK)
      return GT_ERR;
    *cursor = p->chain[d].pos;
  }
  for (size_t i = 0; i < p->nsegs; i++) {
    const pbp_seg *s = &p->segs[i];
    int rc = s->kind == PBP_COPY    ? pbp_write_base(o, base, s->off, s->off + s->len, err)
             : s->kind == PBP_BYTES ? gt_out_write(o, s->bytes, s->len, err)
                                    : gt_out_tensor(o, s->t, err);
    if (rc != GT_OK) return GT_ERR;
  }
  if (p->depth) *cursor = p->chain[p->depth - 1].end;
  return GT_OK;
}

size_t pbp_len_header(uint8_t *out, uint32_t field, uint64_t len) {
  size_t k = pb_put_varint(out, (uint64_t)field << 3 | PB_LEN);
  return k + pb_put_varint(out + k, len);
}

static void shape_text(int ndim, const int64_t *shape, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

int pbp_check_shape(const gt_tensor *t, int ndim, const int64_t *shape,
                    const char *what, gt_err *err) {
  int same = t->ndim == ndim;
  for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
  if (same) return GT_OK;
  char a[160], b[160];
  shape_text(ndim, shape, a, sizeof a);
  shape_text(t->ndim, t->shape, b, sizeof b);
  return gt_fail(err, "the %s has shape %s, the tensor %s", what, a, b);
}
