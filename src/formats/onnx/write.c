/* write.c: gt_onnx_write, the initializer patch writer (formats/onnx.h).
 *
 * A base model is copied byte for byte except where the entries change it:
 * each replaced TensorProto (an initializer, or a Constant's value) gets
 * its other records copied in order and new value records (raw_data, its
 * original typed field, or external_data keys pointing into a data file
 * written beside the model, 4096-aligned), the lengths of the records
 * enclosing it (graph; node and attribute for a Constant) are rewritten,
 * tensors the model lacks are appended to the graph as new initializers,
 * and provenance becomes metadata_props entries at the end of the model.
 * The byte plan is io/pbpatch's; the graph walk and TensorProto decoding
 * are proto.c's (the same the reader uses). */
#include "formats/onnx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "formats/onnx/proto.h"
#include "io/fileout.h"
#include "io/grow.h"
#include "io/pbpatch.h"
#include "tensor/copy.h"

/* The TensorProto fields that hold its values (typed fields 4-7, 10, 11;
 * raw_data 9; external_data 13, data_location 14): a replaced tensor's
 * are all dropped and its new value records put in their place. */
static int is_value_field(uint32_t num) {
  return (num >= 4 && num <= 7) || (num >= 9 && num <= 11) || num == 13 || num == 14;
}

/* One tensor written: the TensorProto it replaces (st, along st->chain)
 * or a new initializer record (st NULL, pp.depth 0) appended to the
 * graph. */
typedef struct patch {
  const site *st;          /* NULL: a new initializer appended to the graph */
  const gt_entry *e;
  int code;                /* the ONNX data type written */
  pb_patch pp;
  gt_tensor dense;         /* contiguous copy, when values are packed here */
  int ext;                 /* the values go to the external data file */
  uint64_t ext_off, ext_len;
  uint8_t *ext_bytes;      /* packed sub-byte values for it (owned) */
} patch;

typedef struct wopts {
  const char *ext_name;    /* NULL: no external data file */
  char *ext_path;
  uint64_t threshold;
  uint64_t ext_end;        /* bytes of the data file planned so far */
} wopts;

static void patch_free(patch *p) {
  pbp_free(&p->pp);
  if (p->dense.storage) gt_tensor_free(&p->dense);
  free(p->ext_bytes);
  p->ext_bytes = NULL;
}

/* The elements of p's tensor as a contiguous buffer (p->dense). */
static const uint8_t *dense_data(patch *p, gt_err *err) {
  if (!p->dense.storage && gt_contiguous(&p->e->t, &p->dense, err) != GT_OK) return NULL;
  if (gt_storage_ready(p->dense.storage, err) != GT_OK) return NULL;
  return p->dense.storage->data + p->dense.offset;
}

/* Sub-byte values packed LSB first; each must fit the type. */
static int pack_bits(patch *p, const otype *ty, uint8_t **out, size_t *outlen,
                     gt_err *err) {
  size_t n = (size_t)gt_tensor_numel(&p->e->t);
  uint64_t nb = 0;
  gt_onnx_raw_size(ty, n, &nb);
  const uint8_t *e = dense_data(p, err);
  if (!e) return GT_ERR;
  uint8_t *b = calloc(nb ? nb : 1, 1);
  if (!b) return gt_fail(err, "out of memory");
  unsigned per = 8u / (unsigned)ty->bits, mask = (1u << ty->bits) - 1;
  for (size_t i = 0; i < n; i++) {
    int v = ty->sign ? (int)(int8_t)e[i] : (int)e[i];
    int lo = ty->sign ? -(1 << (ty->bits - 1)) : 0, hi = ty->sign ? (1 << (ty->bits - 1)) - 1 : (int)mask;
    if (v < lo || v > hi) {
      free(b);
      return gt_fail(err, "element %zu is %d, outside the range of %s [%d, %d]", i, v,
                     ty->name, lo, hi);
    }
    b[i / per] |= (uint8_t)(((unsigned)v & mask) << ((i % per) * (unsigned)ty->bits));
  }
  *out = b;
  *outlen = (size_t)nb;
  return GT_OK;
}

/* The typed field `field` of p's values, as protobuf-c packs a TensorProto
 * holding only that field. */
static int typed_record(patch *p, const otype *ty, int field, uint8_t **out,
                        size_t *outlen, gt_err *err) {
  Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
  const gt_tensor *t = &p->e->t;
  size_t n = (size_t)gt_tensor_numel(t), es = gt_dtype_size(t->dtype);
  size_t cnt = (size_t)gt_onnx_typed_count(ty, n);
  const uint8_t *e = dense_data(p, err);
  uint8_t *packed = NULL;
  size_t plen = 0;
  if (!e) return GT_ERR;
  if (ty->bits && pack_bits(p, ty, &packed, &plen, err) != GT_OK) return GT_ERR;
  size_t slot = field == 6 ? sizeof(ProtobufCBinaryData) : field == 5 ? 4 : 8;
  if (field == 4) slot = 4;
  void *tmp = malloc(cnt ? cnt * slot : 1);
  if (!tmp) {
    free(packed);
    return gt_fail(err, "out of memory");
  }
  for (size_t i = 0; i < cnt; i++) {
    const uint8_t *x = e + (ty->bits ? 0 : (field == 4 || field == 10) ? i * slot : i * es);
    switch (field) {
    case 4: case 10: case 7: memcpy((uint8_t *)tmp + i * slot, x, slot); break;
    case 11: {
      uint64_t v = 0;
      if (t->dtype == GT_U32) {
        uint32_t w;
        memcpy(&w, x, 4);
        v = w;
      } else {
        memcpy(&v, x, 8);
      }
      ((uint64_t *)tmp)[i] = v;
      break;
    }
    case 6: {
      gt_str s;
      memcpy(&s, x, sizeof s);
      ((ProtobufCBinaryData *)tmp)[i] = (ProtobufCBinaryData){s.n, (uint8_t *)s.p};
      break;
    }
    default: {
      int32_t v;
      if (ty->bits) v = packed[i];
      else if (t->dtype == GT_BOOL) v = *x != 0;
      else if (t->dtype == GT_I8) v = (int8_t)*x;
      else if (es == 1) v = *x;
      else if (t->dtype == GT_I16) { int16_t h; memcpy(&h, x, 2); v = h; }
      else if (es == 2) { uint16_t h; memcpy(&h, x, 2); v = h; }
      else memcpy(&v, x, 4);
      ((int32_t *)tmp)[i] = v;
    }
    }
  }
  free(packed);
  switch (field) {
  case 4: tp.n_float_data = cnt; tp.float_data = tmp; break;
  case 10: tp.n_double_data = cnt; tp.double_data = tmp; break;
  case 7: tp.n_int64_data = cnt; tp.int64_data = tmp; break;
  case 11: tp.n_uint64_data = cnt; tp.uint64_data = tmp; break;
  case 6: tp.n_string_data = cnt; tp.string_data = tmp; break;
  default: tp.n_int32_data = cnt; tp.int32_data = tmp; break;
  }
  size_t len = protobuf_c_message_get_packed_size(&tp.base);
  *out = malloc(len ? len : 1);
  if (!*out) {
    free(tmp);
    return gt_fail(err, "out of memory");
  }
  *outlen = protobuf_c_message_pack(&tp.base, *out);
  free(tmp);
  return GT_OK;
}

/* external_data {location, offset, length} and data_location EXTERNAL. */
static int ext_records(patch *p, const wopts *w, gt_err *err) {
  char num[2][24];
  const char *keys[3] = {"location", "offset", "length"};
  snprintf(num[0], sizeof num[0], "%llu", (unsigned long long)p->ext_off);
  snprintf(num[1], sizeof num[1], "%llu", (unsigned long long)p->ext_len);
  const char *vals[3] = {w->ext_name, num[0], num[1]};
  size_t total = 0, k = 0;
  for (int i = 0; i < 3; i++) {
    size_t kl = strlen(keys[i]), vl = strlen(vals[i]), in = 2 + kl + 2 + vl;
    total += pb_varint_size(13 << 3) + pb_varint_size(in) + in;
  }
  uint8_t *b = malloc(total + 2);
  if (!b) return gt_fail(err, "out of memory");
  for (int i = 0; i < 3; i++) {
    size_t kl = strlen(keys[i]), vl = strlen(vals[i]);
    k += pbp_len_header(b + k, 13, 2 + kl + 2 + vl);
    k += pbp_len_header(b + k, 1, kl);
    memcpy(b + k, keys[i], kl);
    k += kl;
    k += pbp_len_header(b + k, 2, vl);
    memcpy(b + k, vals[i], vl);
    k += vl;
  }
  b[k++] = 14 << 3 | PB_VARINT;
  b[k++] = 1; /* EXTERNAL */
  return pbp_add(&p->pp, (pbp_seg){PBP_BYTES, 0, k, b, NULL}, err);
}

/* The value records of p: string_data; external data when wanted and
 * large enough; the typed field `typed` (0: none) of the original; else
 * raw_data. */
static int value_segs(patch *p, const otype *ty, int typed, wopts *w, gt_err *err) {
  const gt_tensor *t = &p->e->t;
  uint64_t n = (uint64_t)gt_tensor_numel(t), len = 0;
  if (ty->dt == GT_STRING) typed = 6;
  else gt_onnx_raw_size(ty, n, &len);
  if (ty->dt != GT_STRING && w->ext_name && len >= w->threshold) {
    p->ext = 1;
    p->ext_off = (w->ext_end + 4095) / 4096 * 4096;
    p->ext_len = len;
    w->ext_end = p->ext_off + len;
    if (ty->bits) {
      size_t pl;
      if (pack_bits(p, ty, &p->ext_bytes, &pl, err) != GT_OK) return GT_ERR;
    }
    return ext_records(p, w, err);
  }
  if (typed) {
    uint8_t *b = NULL;
    size_t bl = 0;
    if (typed_record(p, ty, typed, &b, &bl, err) != GT_OK) return GT_ERR;
    return pbp_add(&p->pp, (pbp_seg){PBP_BYTES, 0, bl, b, NULL}, err);
  }
  uint8_t hdr[16];
  if (pbp_add_bytes(&p->pp, hdr, pbp_len_header(hdr, 9, len), err) != GT_OK) return GT_ERR;
  if (!ty->bits) return pbp_add(&p->pp, (pbp_seg){PBP_TENSOR, 0, (size_t)len, NULL, t}, err);
  uint8_t *b = NULL;
  size_t bl = 0;
  if (pack_bits(p, ty, &b, &bl, err) != GT_OK) return GT_ERR;
  return pbp_add(&p->pp, (pbp_seg){PBP_BYTES, 0, bl, b, NULL}, err);
}

/* Plans the rewrite of an existing TensorProto: its other records copied in
 * order, the new value records where the first value record was (else
 * last). */
static int plan_replace(const gt_storage *base, patch *p, wopts *w, gt_err *err) {
  const pb_rec *tr = &p->st->chain[p->st->depth - 1];
  const gt_tensor *t = &p->e->t;
  otensor o;
  int rc = gt_onnx_decode_tensor(base->data, tr->pos, tr->end, &o, err);
  if (rc == GT_OK && !o.ty) {
    rc = gt_fail(err, "its data type %s cannot be written", gt_onnx_type_name(o.code));
  } else if (rc == GT_OK && (int)t->dtype != o.ty->dt) {
    rc = gt_fail(err, "the model holds %s (read as %s), the tensor is %s (cast it first)",
                 o.ty->name, gt_dtype_name((gt_dtype)o.ty->dt), gt_dtype_name(t->dtype));
  } else if (rc == GT_OK) {
    rc = pbp_check_shape(t, o.ndim, o.shape, "model", err);
  }
  int typed = rc == GT_OK && !o.has_raw && !o.external ? o.ty->field : 0;
  p->code = o.code;
  const otype *ty = o.ty;
  gt_onnx_otensor_free(&o);
  if (rc != GT_OK) return GT_ERR;
  /* the value records are planned apart (vp), then spliced into p */
  patch vp;
  memset(&vp, 0, sizeof vp);
  vp.e = p->e;
  rc = value_segs(&vp, ty, typed, w, err);
  p->ext = vp.ext, p->ext_off = vp.ext_off, p->ext_len = vp.ext_len;
  p->ext_bytes = vp.ext_bytes, p->dense = vp.dense;
  if (rc != GT_OK) {
    pbp_free(&vp.pp);
    return GT_ERR;
  }
  p->pp.depth = p->st->depth;
  memcpy(p->pp.chain, p->st->chain, (size_t)p->st->depth * sizeof *p->pp.chain);
  return pbp_splice(&p->pp, base->data, tr->pos, tr->end, is_value_field, UINT32_MAX,
                    vp.pp.segs, vp.pp.nsegs, err);
}

/* Plans a new initializer record: dims, data_type and name as protobuf-c
 * writes them, then the value records. */
static int plan_add(patch *p, wopts *w, gt_err *err) {
  const gt_tensor *t = &p->e->t;
  int code = gt_onnx_code_of(t->dtype);
  if (!code) return gt_fail(err, "ONNX has no data type for %s", gt_dtype_name(t->dtype));
  p->code = code;
  Onnx__TensorProto h = ONNX__TENSOR_PROTO__INIT;
  int64_t dims[GT_MAXDIM];
  for (int i = 0; i < t->ndim; i++) dims[i] = t->shape[i];
  h.n_dims = (size_t)t->ndim;
  h.dims = dims;
  h.has_data_type = 1;
  h.data_type = code;
  h.name = p->e->name;
  size_t hl = protobuf_c_message_get_packed_size(&h.base);
  uint8_t *hb = malloc(hl ? hl : 1);
  if (!hb) return gt_fail(err, "out of memory");
  protobuf_c_message_pack(&h.base, hb);
  uint8_t rh[16];
  /* the record header is fixed below, once the value's size is known */
  if (pbp_add_bytes(&p->pp, rh, 0, err) != GT_OK) {
    free(hb);
    return GT_ERR;
  }
  if (pbp_add(&p->pp, (pbp_seg){PBP_BYTES, 0, hl, hb, NULL}, err) != GT_OK) return GT_ERR;
  if (value_segs(p, gt_onnx_type(code), 0, w, err) != GT_OK) return GT_ERR;
  uint64_t len = 0;
  for (size_t i = 1; i < p->pp.nsegs; i++) len += p->pp.segs[i].len;
  size_t n = pbp_len_header(rh, 5, len);
  uint8_t *c = malloc(n);
  if (!c) return gt_fail(err, "out of memory");
  memcpy(c, rh, n);
  free(p->pp.segs[0].bytes);
  p->pp.segs[0] = (pbp_seg){PBP_BYTES, 0, n, c, NULL};
  p->pp.delta = (int64_t)(n + len);
  return GT_OK;
}

static int cmp_site(const void *a, const void *b) {
  const site *x = a, *y = b;
  size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
  int c = memcmp(x->name, y->name, n);
  if (c) return c;
  return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

static int cmp_patch(const void *a, const void *b) {
  const patch *x = a, *y = b;
  /* new initializers last, in the entries' order */
  if (!x->st || !y->st) {
    if (x->st || y->st) return (x->st == NULL) - (y->st == NULL);
    return (x->e > y->e) - (x->e < y->e);
  }
  return (x->st->chain[0].start > y->st->chain[0].start) -
         (x->st->chain[0].start < y->st->chain[0].start);
}

/* Finds each entry's site (or plans it as a new initializer). */
static int plan_all(const gt_storage *base, sites *ss, const gt_save *s, patch *ps,
                    wopts *w, gt_err *err) {
  qsort(ss->v, ss->n, sizeof *ss->v, cmp_site);
  for (size_t i = 0; i < s->n; i++) {
    const char *name = s->entries[i].name;
    site key;
    memset(&key, 0, sizeof key);
    key.name = (const uint8_t *)name;
    key.name_len = strlen(name);
    site *st = bsearch(&key, ss->v, ss->n, sizeof *ss->v, cmp_site);
    if (st && ((st > ss->v && cmp_site(st - 1, st) == 0) ||
               (st + 1 < ss->v + ss->n && cmp_site(st + 1, st) == 0)))
      return gt_fail(err, "tensor \"%s\": the model has two tensors of that name", name);
    ps[i].st = st;
    ps[i].e = &s->entries[i];
    int rc = st ? plan_replace(base, &ps[i], w, err) : plan_add(&ps[i], w, err);
    if (rc == GT_OK && st) rc = pbp_lengths(&ps[i].pp, err);
    if (rc != GT_OK)
      return gt_wrap(err, "%s \"%s\"", !st ? "new initializer" : st->depth == 1 ? "initializer" : "Constant", name);
  }
  qsort(ps, s->n, sizeof *ps, cmp_patch);
  for (size_t i = 1; i < s->n; i++)
    if (ps[i].st && ps[i].st == ps[i - 1].st)
      return gt_fail(err, "tensor \"%s\" is given twice", ps[i].e->name);
  return GT_OK;
}

/* ------------------------------------------------------------ provenance */

/* gt_save.provenance (a JSON object of strings) as ModelProto
 * metadata_props (field 14, StringStringEntryProto key = 1, value = 2):
 * the base's entries with those keys or in graft's namespace "graft."
 * dropped (an earlier graft write's record, stale now; the others kept in
 * place),
 * the new entries appended after the model's last record (a ModelProto
 * ends where the file does, and protobuf accepts fields in any order). */
typedef struct props {
  uint8_t *rec;        /* the new entries, encoded */
  size_t len;
  pb_rec *drop;        /* top-level records of the base left out, in order */
  size_t ndrop, cap;
} props;

static void props_free(props *pr) {
  free(pr->rec);
  free(pr->drop);
}

/* The key of the StringStringEntryProto in LEN record rec (empty when it
 * has none). */
static int entry_key(const uint8_t *buf, const pb_rec *rec, const uint8_t **key,
                     size_t *kl, gt_err *err) {
  pb_reader r;
  pb_rec f;
  int k;
  *key = buf, *kl = 0;
  pb_reader_init(&r, buf, rec->pos, rec->end);
  while ((k = pb_next(&r, &f, err)) == 1)
    if (f.num == 1 && f.wt == PB_LEN) *key = buf + f.pos, *kl = f.len;
  return k == 0 ? GT_OK : gt_wrap(err, "metadata_props");
}

/* Encodes the entries of object o into pr->rec. */
static int props_encode(const cJSON *o, props *pr, gt_err *err) {
  size_t total = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, o) {
    if (!cJSON_IsString(it))
      return gt_fail(err, "provenance \"%s\" is not a string", it->string);
    size_t kl = strlen(it->string), vl = strlen(it->valuestring);
    size_t in = pb_varint_size(kl) + kl + pb_varint_size(vl) + vl + 2;
    total += 1 + pb_varint_size(in) + in;
  }
  if (!(pr->rec = malloc(total ? total : 1))) return gt_fail(err, "out of memory");
  cJSON_ArrayForEach(it, o) {
    size_t kl = strlen(it->string), vl = strlen(it->valuestring);
    size_t in = pb_varint_size(kl) + kl + pb_varint_size(vl) + vl + 2;
    uint8_t *b = pr->rec + pr->len;
    size_t k = pbp_len_header(b, 14, in);
    k += pbp_len_header(b + k, 1, kl);
    memcpy(b + k, it->string, kl);
    k += kl;
    k += pbp_len_header(b + k, 2, vl);
    memcpy(b + k, it->valuestring, vl);
    pr->len += k + vl;
  }
  return GT_OK;
}

/* Notes the base's metadata_props records whose key o sets or that
 * start with "graft.". */
static int props_drops(const gt_storage *base, const cJSON *o, props *pr, gt_err *err) {
  pb_reader r;
  pb_rec f;
  int k;
  pb_reader_init(&r, base->data, 0, base->size);
  while ((k = pb_next(&r, &f, err)) == 1) {
    const uint8_t *key;
    size_t kl;
    if (f.num != 14 || f.wt != PB_LEN) continue;
    if (entry_key(base->data, &f, &key, &kl, err) != GT_OK) return GT_ERR;
    const cJSON *it;
    int hit = kl >= 6 && memcmp(key, "graft.", 6) == 0;
    cJSON_ArrayForEach(it, o) hit |= strlen(it->string) == kl && memcmp(it->string, key, kl) == 0;
    if (!hit) continue;
    if (gt_grow((void **)&pr->drop, &pr->cap, pr->ndrop + 1, sizeof *pr->drop))
      return gt_fail(err, "out of memory");
    pr->drop[pr->ndrop++] = f;
  }
  return k == 0 ? GT_OK : gt_wrap(err, "ModelProto");
}

/* pr from s's provenance (none: nothing changes). */
static int plan_props(const gt_storage *base, const gt_save *s, props *pr, gt_err *err) {
  if (!s->provenance) return GT_OK;
  cJSON *o = cJSON_ParseWithLength(s->provenance, s->provenance_len);
  int rc = cJSON_IsObject(o) ? GT_OK : gt_fail(err, "provenance is not a JSON object");
  if (rc == GT_OK) rc = props_encode(o, pr, err);
  if (rc == GT_OK) rc = props_drops(base, o, pr, err);
  cJSON_Delete(o);
  return rc;
}

/* base[from, to) without the records pr drops (top-level records: each
 * lies wholly inside or outside the range). */
static int write_kept(gt_out *o, const gt_storage *base, size_t from, size_t to,
                      const props *pr, gt_err *err) {
  for (size_t i = 0; i < pr->ndrop; i++) {
    const pb_rec *d = &pr->drop[i];
    if (d->start < from || d->end > to) continue;
    if (pbp_write_base(o, base->data, from, d->start, err) != GT_OK) return GT_ERR;
    from = d->end;
  }
  return pbp_write_base(o, base->data, from, to, err);
}

/* The model: base with the graph's length, each patch's chain lengths and
 * TensorProto replaced, the new initializers at the end of the graph, the
 * provenance's metadata_props at the end of the model. */
static int write_model(gt_out *o, const gt_storage *base, const pb_rec *g,
                       const patch *ps, size_t n, const props *pr, gt_err *err) {
  int64_t glen = (int64_t)g->len;
  for (size_t i = 0; i < n; i++) glen += ps[i].pp.delta;
  if (write_kept(o, base, 0, g->lenpos, pr, err) != GT_OK ||
      pbp_write_varint(o, (uint64_t)glen, err) != GT_OK)
    return GT_ERR;
  size_t cursor = g->pos, i = 0;
  for (; i < n && ps[i].st; i++)
    if (pbp_write(o, base->data, &ps[i].pp, &cursor, err) != GT_OK)
      return gt_wrap(err, "tensor \"%s\"", ps[i].e->name);
  if (pbp_write_base(o, base->data, cursor, g->end, err) != GT_OK) return GT_ERR;
  for (; i < n; i++)
    if (pbp_write(o, base->data, &ps[i].pp, &cursor, err) != GT_OK)
      return gt_wrap(err, "tensor \"%s\"", ps[i].e->name);
  if (write_kept(o, base, g->end, base->size, pr, err) != GT_OK) return GT_ERR;
  return gt_out_write(o, pr->rec, pr->len, err);
}

static int cmp_ext(const void *a, const void *b) {
  const patch *x = *(const patch *const *)a, *y = *(const patch *const *)b;
  return (x->ext_off > y->ext_off) - (x->ext_off < y->ext_off);
}

/* The external data file: each external tensor at its planned offset. */
static int write_ext(const wopts *w, patch *ps, size_t n, gt_err *err) {
  patch **v = calloc(n ? n : 1, sizeof *v);
  size_t k = 0;
  if (!v) return gt_fail(err, "out of memory");
  for (size_t i = 0; i < n; i++)
    if (ps[i].ext) v[k++] = &ps[i];
  qsort(v, k, sizeof *v, cmp_ext);
  gt_out o;
  if (gt_out_open(&o, w->ext_path, NULL, err) != GT_OK) {
    free(v);
    return GT_ERR;
  }
  int rc = GT_OK;
  for (size_t i = 0; rc == GT_OK && i < k; i++) {
    rc = gt_out_pad(&o, (size_t)(v[i]->ext_off - o.pos), err);
    if (rc == GT_OK)
      rc = v[i]->ext_bytes ? gt_out_write(&o, v[i]->ext_bytes, (size_t)v[i]->ext_len, err)
                           : gt_out_tensor(&o, &v[i]->e->t, err);
    if (rc != GT_OK) gt_wrap(err, "tensor \"%s\"", v[i]->e->name);
  }
  free(v);
  if (rc != GT_OK) {
    gt_out_abort(&o);
    return gt_wrap(err, "external data file \"%s\"", w->ext_name);
  }
  return gt_out_commit(&o, err);
}

/* pbp_at_fn over this file's patch array. */
static const pb_patch *patch_at(const void *patches, size_t i, const gt_entry **e) {
  const patch *p = (const patch *)patches + i;
  *e = p->e;
  return &p->pp;
}

static int write_all(const char *path, const gt_storage *base, const pb_rec *g,
                     patch *ps, size_t n, const wopts *w, const props *pr,
                     const gt_save *s, gt_err *err) {
  if (w->ext_name && write_ext(w, ps, n, err) != GT_OK) return GT_ERR;
  gt_out o;
  if (pbp_open_out(&o, path, s, ps, n, patch_at, err) != GT_OK) return GT_ERR;
  if (write_model(&o, base, g, ps, n, pr, err) != GT_OK) {
    gt_out_abort(&o);
    return GT_ERR;
  }
  return gt_out_commit(&o, err);
}

static const char *meta_str(const gt_value *m, const char *key) {
  const gt_value *v = gt_value_get(m, key);
  return v && v->kind == GT_V_STR ? v->str : NULL;
}

/* The write options from opts; w->ext_path beside path. */
static int write_options(const char *path, const gt_save *s,
                         const gt_value *opts, wopts *w, gt_err *err) {
  const char *thr = meta_str(opts, "external_threshold");
  w->ext_name = meta_str(opts, "external_data");
  w->threshold = 1024;
  if (thr && gt_onnx_parse_dec(thr, &w->threshold) != GT_OK)
    return gt_fail(err, "external_threshold \"%s\" is not a byte count", thr);
  if (!w->ext_name) return GT_OK;
  const char *e = w->ext_name;
  if (!*e || strchr(e, '/') || strcmp(e, ".") == 0 || strcmp(e, "..") == 0)
    return gt_fail(err, "external_data \"%s\" must be a file name (it is written "
                   "beside the model)", e);
  const char *slash = strrchr(path, '/');
  size_t dl = slash ? (size_t)(slash - path) + 1 : 0, el = strlen(e);
  if (!(w->ext_path = malloc(dl + el + 1))) return gt_fail(err, "out of memory");
  memcpy(w->ext_path, path, dl);
  memcpy(w->ext_path + dl, e, el + 1);
  if (strcmp(w->ext_path, path) == 0)
    return gt_fail(err, "external_data names the model file itself");
  return gt_out_check_inputs(w->ext_path, s->entries, s->n, err) == GT_OK
             ? GT_OK : gt_wrap(err, "external data file \"%s\"", e);
}

int gt_onnx_write(const char *path, const gt_save *s, const gt_value *opts,
                  gt_err *err) {
  const char *base_path = meta_str(opts, "base");
  if (!base_path)
    return gt_fail(err, "format onnx writes a patched copy of a model: pass the "
                   "model as option base");
  wopts w;
  memset(&w, 0, sizeof w);
  if (write_options(path, s, opts, &w, err) != GT_OK) {
    free(w.ext_path);
    return GT_ERR;
  }
  gt_storage *base = gt_storage_map(base_path, err);
  if (!base) {
    free(w.ext_path);
    return gt_wrap(err, "base %s", base_path);
  }
  struct stat st;
  int rc = GT_OK;
  if ((stat(path, &st) == 0 && st.st_dev == base->dev && st.st_ino == base->ino) ||
      (w.ext_path && stat(w.ext_path, &st) == 0 && st.st_dev == base->dev && st.st_ino == base->ino))
    rc = gt_fail(err, "refusing to overwrite the model being patched; write to another path");
  pb_rec g;
  sites ss = {0};
  props pr = {0};
  patch *ps = calloc(s->n ? s->n : 1, sizeof *ps);
  if (rc == GT_OK && !ps) rc = gt_fail(err, "out of memory");
  if (rc == GT_OK && gt_onnx_find_graph(base->data, base->size, &g, err) != GT_OK) rc = GT_ERR;
  if (rc == GT_OK && gt_onnx_walk_graph(base->data, &g, &ss, NULL, err) != GT_OK) rc = GT_ERR;
  if (rc == GT_OK) rc = plan_all(base, &ss, s, ps, &w, err);
  if (rc == GT_OK) rc = plan_props(base, s, &pr, err);
  if (rc == GT_OK) rc = write_all(path, base, &g, ps, s->n, &w, &pr, s, err);
  props_free(&pr);
  for (size_t i = 0; ps && i < s->n; i++) patch_free(&ps[i]);
  free(ps);
  free(ss.v);
  free(w.ext_path);
  gt_storage_release(base);
  return rc;
}
