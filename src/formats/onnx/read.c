/* read.c: gt_onnx_read and gt_onnx_tensor_read (formats/onnx.h): the
 * tensors of a model's graph and of lone TensorProto files as storages,
 * and the model's metadata.
 *
 * raw_data and external data become views of the mapped files (sub-byte
 * types widened on first use); typed-field values are expanded on first
 * use from the decoded message the storage owns. External data files are
 * mapped once per model and must stay in the model's folder. The graph
 * walk and TensorProto decoding are proto.c's (field numbers there and in
 * docs/formats/onnx.md). */
#include "formats/onnx.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/onnx/proto.h"
#include "tensor/copy.h"

/* ------------------------------------------------------------ typed fields */

static const char *field_names[] = {
  [4] = "float_data", [5] = "int32_data", [6] = "string_data",
  [7] = "int64_data", [10] = "double_data", [11] = "uint64_data",
};

/* Values the typed field `field` of tp holds. */
static size_t field_count(const Onnx__TensorProto *tp, int field) {
  switch (field) {
  case 4: return tp->n_float_data;
  case 5: return tp->n_int32_data;
  case 6: return tp->n_string_data;
  case 7: return tp->n_int64_data;
  case 10: return tp->n_double_data;
  default: return tp->n_uint64_data;
  }
}

/* ------------------------------------------------------------ storages */

/* Sub-byte values packed LSB first, widened to one byte each. */
typedef struct unpack_ctx {
  int bits, sign;
} unpack_ctx;

static void unpack_bits(const uint8_t *src, uint8_t *dst, size_t n, int bits,
                        int sign) {
  unsigned per = 8u / (unsigned)bits, mask = (1u << bits) - 1;
  for (size_t i = 0; i < n; i++) {
    unsigned v = (src[i / per] >> ((i % per) * (unsigned)bits)) & mask;
    if (sign && (v & (1u << (bits - 1)))) v |= ~mask;
    dst[i] = (uint8_t)v;
  }
}

static int load_unpacked(gt_storage *s, gt_err *err) {
  const unpack_ctx *c = s->ctx;
  if (gt_storage_ready(s->parent, err) != GT_OK) return GT_ERR;
  if (gt_storage_alloc_data(s, err) != GT_OK) return GT_ERR;
  unpack_bits(s->parent->data, s->data, s->size, c->bits, c->sign);
  return GT_OK;
}

/* The elements stored in bytes [off, off + len) of mapping `file`. */
static gt_storage *bytes_storage(gt_storage *file, uint64_t off, uint64_t len,
                                 const otensor *t, gt_err *err) {
  if (!t->ty->bits)
    return gt_storage_aligned(file, off, len, gt_dtype_size((gt_dtype)t->ty->dt), err);
  unpack_ctx *c = malloc(sizeof *c);
  if (!c) {
    gt_fail(err, "out of memory");
    return NULL;
  }
  c->bits = t->ty->bits;
  c->sign = t->ty->sign;
  gt_storage *r = gt_storage_region(file, off, len, err);
  if (!r) {
    free(c);
    return NULL;
  }
  gt_storage *s = gt_storage_lazy((size_t)t->numel, r, load_unpacked, c, free, err);
  if (!s) free(c);
  gt_storage_release(r);
  return s;
}

/* Typed-field values, expanded on first use; owns the decoded message. */
typedef struct typed_ctx {
  Onnx__TensorProto *tp;
  const otype *ty;
  size_t numel;
} typed_ctx;

static void free_typed(void *p) {
  typed_ctx *c = p;
  if (!c) return;
  if (c->tp) protobuf_c_message_free_unpacked(&c->tp->base, NULL);
  free(c);
}

/* int32_data value v as one element of es bytes: the low bytes, as ONNX
 * stores narrower types (bool: any non-zero value is true). */
static void put_int32(int32_t v, uint8_t *dst, size_t es, int is_bool) {
  if (is_bool) {
    *dst = v != 0;
  } else if (es == 1) {
    *dst = (uint8_t)v;
  } else if (es == 2) {
    uint16_t h = (uint16_t)v;
    memcpy(dst, &h, 2);
  } else {
    memcpy(dst, &v, 4);
  }
}

static int load_typed(gt_storage *s, gt_err *err) {
  typed_ctx *c = s->ctx;
  const Onnx__TensorProto *tp = c->tp;
  gt_dtype dt = (gt_dtype)c->ty->dt;
  size_t es = gt_dtype_size(dt), n = c->numel;
  if (gt_storage_alloc_data(s, err) != GT_OK) return GT_ERR;
  uint8_t *d = s->data;
  switch (c->ty->field) {
  case 4: if (n) memcpy(d, tp->float_data, n * es); break;
  case 10: if (n) memcpy(d, tp->double_data, n * es); break;
  case 7: if (n) memcpy(d, tp->int64_data, n * es); break;
  case 11:
    for (size_t i = 0; i < n; i++) {
      if (dt == GT_U64) {
        memcpy(d + 8 * i, &tp->uint64_data[i], 8);
      } else {
        uint32_t v = (uint32_t)tp->uint64_data[i];
        memcpy(d + 4 * i, &v, 4);
      }
    }
    break;
  case 6:
    for (size_t i = 0; i < n; i++) {
      gt_str e = {tp->string_data[i].data ? (const char *)tp->string_data[i].data : "",
                  tp->string_data[i].len};
      memcpy(d + i * sizeof e, &e, sizeof e);
    }
    break;
  default:
    if (c->ty->bits) {
      size_t nb = tp->n_int32_data;
      uint8_t *packed = malloc(nb ? nb : 1);
      if (!packed) return gt_fail(err, "out of memory");
      for (size_t i = 0; i < nb; i++) packed[i] = (uint8_t)tp->int32_data[i];
      unpack_bits(packed, d, n, c->ty->bits, c->ty->sign);
      free(packed);
    } else {
      for (size_t i = 0; i < n; i++) put_int32(tp->int32_data[i], d + i * es, es, dt == GT_BOOL);
    }
  }
  return GT_OK;
}

/* ------------------------------------------------------- external data */

typedef struct extfile {
  char *loc;
  gt_storage *map;
} extfile;

/* What reading a model needs beside the bytes. */
typedef struct reader {
  gt_storage *file;
  const char *path;
  char *dir;           /* the model's folder, resolved; NULL until needed */
  extfile *ext;
  size_t next;
  gt_value *external;  /* MAP name -> {location, offset, length} */
} reader;

static void reader_free(reader *rd) {
  for (size_t i = 0; i < rd->next; i++) {
    free(rd->ext[i].loc);
    gt_storage_release(rd->ext[i].map);
  }
  free(rd->ext);
  free(rd->dir);
  gt_value_free(rd->external);
}

/* A location must name a file inside the model's folder: relative, no
 * ".." step, and (symlinks resolved) still under the folder. */
static int check_location(const char *loc, size_t len, gt_err *err) {
  if (len == 0) return gt_fail(err, "external data has an empty location");
  if (memchr(loc, '\0', len) || strlen(loc) != len)
    return gt_fail(err, "external data location contains a NUL byte");
  if (loc[0] == '/')
    return gt_fail(err, "external data location \"%.*s\" is an absolute path "
                   "(it must stay in the model's folder)", shown(len), loc);
  const char *p = loc;
  while (*p) {
    const char *q = strchr(p, '/');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    if (n == 2 && p[0] == '.' && p[1] == '.')
      return gt_fail(err, "external data location \"%.*s\" leaves the model's "
                     "folder (\"..\")", shown(len), loc);
    p += n + (q != NULL);
  }
  return GT_OK;
}

static char *model_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char *d;
  if (!slash) return realpath(".", NULL);
  size_t n = slash == path ? 1 : (size_t)(slash - path);
  if (!(d = malloc(n + 1))) return NULL;
  memcpy(d, path, n);
  d[n] = '\0';
  char *r = realpath(d, NULL);
  free(d);
  return r;
}

/* The mapping of external file `loc` (mapped once per model). */
static gt_storage *ext_map(reader *rd, const char *loc, gt_err *err) {
  for (size_t i = 0; i < rd->next; i++)
    if (strcmp(rd->ext[i].loc, loc) == 0) return rd->ext[i].map;
  if (check_location(loc, strlen(loc), err) != GT_OK) return NULL;
  if (!rd->dir && !(rd->dir = model_dir(rd->path))) {
    gt_fail(err, "cannot resolve the model's folder: %s", strerror(errno));
    return NULL;
  }
  size_t dl = strlen(rd->dir), ll = strlen(loc);
  char *joined = malloc(dl + ll + 2), *real = NULL;
  if (!joined) {
    gt_fail(err, "out of memory");
    return NULL;
  }
  snprintf(joined, dl + ll + 2, "%s/%s", rd->dir, loc);
  real = realpath(joined, NULL);
  free(joined);
  if (!real) {
    gt_fail(err, "external data file \"%s\": %s", loc, strerror(errno));
    return NULL;
  }
  if (strncmp(real, rd->dir, dl) != 0 || (real[dl] != '/' && strcmp(rd->dir, "/") != 0)) {
    free(real);
    gt_fail(err, "external data file \"%s\" resolves outside the model's folder "
            "(a symlink?)", loc);
    return NULL;
  }
  extfile *v = realloc(rd->ext, (rd->next + 1) * sizeof *v);
  gt_storage *m = v ? gt_storage_map(real, err) : NULL;
  if (v) rd->ext = v;
  free(real);
  if (!v) gt_fail(err, "out of memory");
  if (!m) {
    gt_wrap(err, "external data file \"%s\"", loc);
    return NULL;
  }
  if (!(rd->ext[rd->next].loc = strdup(loc))) {
    gt_storage_release(m);
    gt_fail(err, "out of memory");
    return NULL;
  }
  rd->ext[rd->next++].map = m;
  return m;
}

static int note_external(reader *rd, const char *name, const char *loc,
                         uint64_t off, uint64_t len) {
  if (!rd->external && !(rd->external = gt_value_new(GT_V_MAP))) return GT_ERR;
  gt_value *v = gt_value_new(GT_V_MAP);
  if (gt_value_setk(v, "location", vstr(loc)) != GT_OK ||
      gt_value_setk(v, "offset", gt_value_int((int64_t)off)) != GT_OK ||
      gt_value_setk(v, "length", gt_value_int((int64_t)len)) != GT_OK) {
    gt_value_free(v);
    return GT_ERR;
  }
  return gt_value_setk(rd->external, name, v);
}

/* The storage of an EXTERNAL tensor: location / offset / length keys,
 * checked against the file's size and the declared dims. */
static gt_storage *ext_storage(reader *rd, const char *name, const otensor *t,
                               gt_err *err) {
  const Onnx__TensorProto *tp = t->tp;
  const char *loc = NULL, *off_s = NULL, *len_s = NULL;
  for (size_t i = 0; i < tp->n_external_data; i++) {
    const Onnx__StringStringEntryProto *e = tp->external_data[i];
    if (!e || !e->key) continue;
    if (strcmp(e->key, "location") == 0) loc = e->value;
    else if (strcmp(e->key, "offset") == 0) off_s = e->value;
    else if (strcmp(e->key, "length") == 0) len_s = e->value;
  }
  uint64_t off = 0, len = 0;
  if (!loc) {
    gt_fail(err, "external data without a location");
    return NULL;
  }
  if ((off_s && gt_onnx_parse_dec(off_s, &off) != GT_OK) || (len_s && gt_onnx_parse_dec(len_s, &len) != GT_OK)) {
    gt_fail(err, "external data offset \"%s\" / length \"%s\" is not a number",
            off_s ? off_s : "", len_s ? len_s : "");
    return NULL;
  }
  gt_storage *m = ext_map(rd, loc, err);
  if (!m) return NULL;
  if (off > m->size) {
    gt_fail(err, "external data offset %llu is past the end of \"%s\" (%zu bytes)",
            (unsigned long long)off, loc, m->size);
    return NULL;
  }
  if (!len_s) len = m->size - off;
  if (len > m->size - off) {
    gt_fail(err, "external data [%llu, +%llu) runs past the end of \"%s\" (%zu bytes)",
            (unsigned long long)off, (unsigned long long)len, loc, m->size);
    return NULL;
  }
  if (len != t->nbytes) {
    gt_fail(err, "external data holds %llu bytes but %llu %s elements need %llu",
            (unsigned long long)len, (unsigned long long)t->numel, t->ty->name,
            (unsigned long long)t->nbytes);
    return NULL;
  }
  if (name && note_external(rd, name, loc, off, len) != GT_OK) {
    gt_fail(err, "out of memory");
    return NULL;
  }
  return bytes_storage(m, off, len, t, err);
}

/* The tensor of t (read_tensor'ed from rd->file); takes over t->tp. */
static int make_tensor(reader *rd, const char *name, otensor *t, gt_tensor *out,
                       gt_err *err) {
  gt_storage *s;
  gt_dtype dt = (gt_dtype)t->ty->dt;
  if (t->external) {
    s = ext_storage(rd, name, t, err);
  } else if (t->has_raw) {
    if (t->raw.len != t->nbytes)
      return gt_fail(err, "raw_data holds %zu bytes but %llu %s elements need %llu",
                     t->raw.len, (unsigned long long)t->numel, t->ty->name,
                     (unsigned long long)t->nbytes);
    s = bytes_storage(rd->file, t->raw.pos, t->raw.len, t, err);
  } else {
    int field = t->ty->field;
    uint64_t want = gt_onnx_typed_count(t->ty, t->numel), have = field_count(t->tp, field);
    if (have != want)
      return gt_fail(err, "%s holds %llu values but %llu %s elements need %llu",
                     field_names[field], (unsigned long long)have,
                     (unsigned long long)t->numel, t->ty->name, (unsigned long long)want);
    unsigned long long bytes;
    if (gt_mul_u64(t->numel, gt_dtype_size(dt), &bytes) || bytes > SIZE_MAX)
      return gt_fail(err, "the tensor is too large");
    typed_ctx *c = calloc(1, sizeof *c);
    if (!c) return gt_fail(err, "out of memory");
    c->tp = t->tp;
    c->ty = t->ty;
    c->numel = (size_t)t->numel;
    t->tp = NULL;
    s = gt_storage_lazy((size_t)bytes, NULL, load_typed, c, free_typed, err);
    if (!s) free_typed(c);
  }
  if (!s) return GT_ERR;
  int rc = gt_tensor_make(out, s, dt, t->ndim, t->shape, 0, err);
  gt_storage_release(s);
  return rc;
}

/* ------------------------------------------------------------ metadata */

static gt_value *shape_value(const Onnx__TensorShapeProto *sp) {
  gt_value *l = gt_value_new(GT_V_LIST);
  for (size_t i = 0; l && sp && i < sp->n_dim; i++) {
    const Onnx__TensorShapeProto__Dimension *d = sp->dim[i];
    gt_value *v;
    if (d && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
      v = gt_value_int(d->dim_value);
    else if (d && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM)
      v = vstr(d->dim_param);
    else
      v = vstr("?");
    if (gt_value_push(l, v) != GT_OK) {
      gt_value_free(l);
      return NULL;
    }
  }
  return l;
}

/* A ValueInfoProto: {name, dtype (ONNX type name), shape} for tensors;
 * {name, kind} for sequences, maps and other values. */
static gt_value *value_info(const uint8_t *p, size_t n, gt_err *err) {
  Onnx__ValueInfoProto *vi = (Onnx__ValueInfoProto *)pb_unpack(
      &onnx__value_info_proto__descriptor, p, n, "ValueInfoProto", err);
  if (!vi) return NULL;
  gt_value *v = gt_value_new(GT_V_MAP);
  int ok = gt_value_setk(v, "name", vstr(vi->name)) == GT_OK;
  const Onnx__TypeProto *ty = vi->type;
  if (ok && ty && ty->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && ty->tensor_type) {
    ok = gt_value_setk(v, "dtype", vstr(gt_onnx_type_name(ty->tensor_type->elem_type))) == GT_OK;
    if (ok && ty->tensor_type->shape)
      ok = gt_value_setk(v, "shape", shape_value(ty->tensor_type->shape)) == GT_OK;
  } else if (ok && ty && ty->value_case == ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE &&
             ty->sparse_tensor_type) {
    ok = gt_value_setk(v, "kind", vstr("sparse_tensor")) == GT_OK &&
         gt_value_setk(v, "dtype", vstr(gt_onnx_type_name(ty->sparse_tensor_type->elem_type))) == GT_OK;
  } else if (ok && ty) {
    ok = gt_value_setk(v, "kind", vstr("other")) == GT_OK;
  }
  protobuf_c_message_free_unpacked(&vi->base, NULL);
  if (!ok) {
    gt_value_free(v);
    gt_fail(err, "out of memory");
    return NULL;
  }
  return v;
}

/* key / value string pairs (StringStringEntryProto). */
static int string_pair(const pb_reader *pr, const pb_rec *rec, gt_value *map,
                       gt_err *err) {
  pb_reader r;
  pb_rec f, key = {0}, val = {0};
  int k;
  pb_sub(pr, rec, &r);
  while ((k = pb_next(&r, &f, err)) == 1) {
    if (f.num == 1 && f.wt == PB_LEN) key = f;
    else if (f.num == 2 && f.wt == PB_LEN) val = f;
  }
  if (k != 0) return GT_ERR;
  return gt_value_set(map, vbytes(r.buf + key.pos, key.len), vbytes(r.buf + val.pos, val.len));
}

/* OperatorSetIdProto: {domain, version}. */
static gt_value *opset(const pb_reader *pr, const pb_rec *rec, gt_err *err) {
  pb_reader r;
  pb_rec f;
  int k;
  gt_value *v = gt_value_new(GT_V_MAP);
  const uint8_t *dom = (const uint8_t *)"";
  size_t dl = 0;
  int64_t ver = 0;
  pb_sub(pr, rec, &r);
  while ((k = pb_next(&r, &f, err)) == 1) {
    if (f.num == 1 && f.wt == PB_LEN) dom = r.buf + f.pos, dl = f.len;
    else if (f.num == 2 && f.wt == PB_VARINT) ver = (int64_t)f.v;
  }
  if (k != 0 || gt_value_setk(v, "domain", vbytes(dom, dl)) != GT_OK ||
      gt_value_setk(v, "version", gt_value_int(ver)) != GT_OK) {
    gt_value_free(v);
    return NULL;
  }
  return v;
}

static int set_list_item(gt_value *meta, const char *key, gt_value *item) {
  gt_value *l = (gt_value *)gt_value_get(meta, key);
  if (!item) return GT_ERR;
  if (!l) {
    l = gt_value_new(GT_V_LIST);
    if (gt_value_setk(meta, key, l) != GT_OK) {
      gt_value_free(item);
      return GT_ERR;
    }
  }
  return gt_value_push(l, item);
}

/* ModelProto facts (everything but the graph) into meta. */
static int model_meta(const uint8_t *buf, size_t n, gt_value *meta, gt_err *err) {
  pb_reader r;
  pb_rec f;
  int k;
  gt_value *props = NULL;
  pb_reader_init(&r, buf, 0, n);
  while ((k = pb_next(&r, &f, err)) == 1) {
    const char *key = f.num == 2 ? "producer_name" : f.num == 3 ? "producer_version"
                      : f.num == 4 ? "domain" : NULL;
    int rc = GT_OK;
    if (f.num == 1 && f.wt == PB_VARINT) {
      rc = gt_value_setk(meta, "ir_version", gt_value_int((int64_t)f.v));
    } else if (f.num == 5 && f.wt == PB_VARINT) {
      rc = gt_value_setk(meta, "model_version", gt_value_int((int64_t)f.v));
    } else if (key && f.wt == PB_LEN) {
      rc = gt_value_setk(meta, key, vbytes(r.buf + f.pos, f.len));
    } else if (f.num == 8 && f.wt == PB_LEN) {
      gt_value *o = opset(&r, &f, err);
      if (!o) return gt_wrap(err, "opset_import");
      rc = set_list_item(meta, "opset_import", o);
    } else if (f.num == 14 && f.wt == PB_LEN) {
      if (!props && (!(props = gt_value_new(GT_V_MAP)) ||
                     gt_value_setk(meta, "metadata_props", props) != GT_OK))
        return gt_fail(err, "out of memory");
      if (string_pair(&r, &f, props, err) != GT_OK) return gt_wrap(err, "metadata_props");
    }
    if (rc != GT_OK) return gt_fail(err, "out of memory");
  }
  return k == 0 ? GT_OK : gt_wrap(err, "ModelProto");
}

/* GraphProto name, inputs, outputs and sparse initializers into meta. */
static int graph_meta(const uint8_t *buf, const pb_rec *g, gt_value *meta,
                      gt_value *skipped, gt_err *err) {
  pb_reader r;
  pb_rec f;
  int k;
  pb_reader_init(&r, buf, g->pos, g->pos + g->len);
  gt_value *in = gt_value_new(GT_V_LIST), *out = gt_value_new(GT_V_LIST);
  if (gt_value_setk(meta, "inputs", in) != GT_OK) {
    gt_value_free(out);
    return gt_fail(err, "out of memory");
  }
  if (gt_value_setk(meta, "outputs", out) != GT_OK) return gt_fail(err, "out of memory");
  while ((k = pb_next(&r, &f, err)) == 1) {
    if (f.wt != PB_LEN) continue;
    if (f.num == 2) {
      if (gt_value_setk(meta, "graph_name", vbytes(r.buf + f.pos, f.len)) != GT_OK)
        return gt_fail(err, "out of memory");
    } else if (f.num == 11 || f.num == 12) {
      gt_value *v = value_info(r.buf + f.pos, f.len, err);
      if (!v) return gt_wrap(err, "graph %s at offset %zu", f.num == 11 ? "input" : "output", f.start);
      if (gt_value_push(f.num == 11 ? in : out, v) != GT_OK) return gt_fail(err, "out of memory");
    } else if (f.num == 15) {
      /* SparseTensorProto values = 1 (a TensorProto named like the
       * sparse tensor) */
      pb_reader sr;
      pb_rec s;
      int ks;
      site st;
      memset(&st, 0, sizeof st);
      pb_sub(&r, &f, &sr);
      while ((ks = pb_next(&sr, &s, err)) == 1)
        if (s.num == 1 && s.wt == PB_LEN && gt_onnx_tensor_name(&sr, &s, &st, err) != GT_OK) return GT_ERR;
      if (ks != 0) return gt_wrap(err, "sparse_initializer at offset %zu", f.start);
      if (gt_onnx_skip_note(skipped, st.name ? st.name : (const uint8_t *)"", st.name_len,
                    "sparse initializer (not read)") != GT_OK)
        return gt_fail(err, "out of memory");
    }
  }
  return k == 0 ? GT_OK : gt_wrap(err, "GraphProto");
}

/* ------------------------------------------------------------ readers */

/* Adds the tensor of site st (or a skipped note); types and notes go to
 * meta. */
static int add_site_tensor(reader *rd, gt_model *m, const site *st, gt_value *types,
                           gt_value *notes, gt_value *skipped, gt_err *err) {
  const pb_rec *tr = &st->chain[st->depth - 1];
  if (memchr(st->name, '\0', st->name_len))
    return gt_fail(err, "%s \"%.*s\": the name contains a NUL byte",
                   st->depth == 1 ? "initializer" : "Constant", shown(st->name_len),
                   (const char *)st->name);
  char *name = strndup((const char *)st->name, st->name_len);
  otensor t;
  gt_tensor out;
  memset(&out, 0, sizeof out);
  if (!name) return gt_fail(err, "out of memory");
  int rc = gt_onnx_decode_tensor(rd->file->data, tr->pos, tr->end, &t, err);
  if (rc == GT_OK && !t.ty) {
    char why[80];
    snprintf(why, sizeof why, "data type %s has no graft dtype", gt_onnx_type_name(t.code));
    rc = gt_onnx_skip_note(skipped, st->name, st->name_len, why) == GT_OK ? GT_OK
                                                                   : gt_fail(err, "out of memory");
    gt_onnx_otensor_free(&t);
    free(name);
    return rc;
  }
  if (rc == GT_OK) rc = make_tensor(rd, name, &t, &out, err);
  gt_onnx_otensor_free(&t);
  if (rc == GT_OK && gt_value_setk(types, name, vstr(t.ty->name)) != GT_OK)
    rc = gt_fail(err, "out of memory");
  if (rc == GT_OK && t.ty->note) {
    char buf[300];
    snprintf(buf, sizeof buf, "%.*s: %s read as %s", shown(st->name_len), name,
             t.ty->name, t.ty->note);
    if (gt_value_push(notes, vstr(buf)) != GT_OK) rc = gt_fail(err, "out of memory");
  }
  if (rc == GT_OK) rc = gt_model_add(m, name, st->name_len, &out, err);
  else gt_tensor_free(&out);
  if (rc != GT_OK)
    gt_wrap(err, "%s \"%.*s\"", st->depth == 1 ? "initializer" : "Constant",
            shown(st->name_len), name);
  free(name);
  return rc;
}

static int read_model(reader *rd, gt_model *m, gt_value *meta, gt_err *err) {
  const uint8_t *buf = rd->file->data;
  pb_rec g;
  sites ss = {0};
  gt_value *types = gt_value_new(GT_V_MAP), *notes = gt_value_new(GT_V_LIST),
           *skipped = gt_value_new(GT_V_LIST), *consts = gt_value_new(GT_V_LIST);
  int rc = gt_value_setk(meta, "data_types", types) == GT_OK &&
           gt_value_setk(meta, "notes", notes) == GT_OK &&
           gt_value_setk(meta, "skipped", skipped) == GT_OK &&
           gt_value_setk(meta, "constants", consts) == GT_OK
               ? GT_OK : gt_fail(err, "out of memory");
  if (rc == GT_OK) rc = model_meta(buf, rd->file->size, meta, err);
  if (rc == GT_OK) rc = gt_onnx_find_graph(buf, rd->file->size, &g, err);
  if (rc == GT_OK) rc = graph_meta(buf, &g, meta, skipped, err);
  if (rc == GT_OK) rc = gt_onnx_walk_graph(buf, &g, &ss, skipped, err);
  for (size_t i = 0; rc == GT_OK && i < ss.n; i++) {
    rc = add_site_tensor(rd, m, &ss.v[i], types, notes, skipped, err);
    if (rc == GT_OK && ss.v[i].depth == 3 &&
        gt_value_push(consts, vbytes(ss.v[i].name, ss.v[i].name_len)) != GT_OK)
      rc = gt_fail(err, "out of memory");
  }
  free(ss.v);
  return rc;
}

static int finish(reader *rd, gt_model *m, gt_value *meta, int rc, gt_err *err) {
  if (rc == GT_OK && rd->external) {
    rc = gt_value_setk(meta, "external", rd->external) == GT_OK ? GT_OK
                                                                 : gt_fail(err, "out of memory");
    rd->external = NULL;
  }
  reader_free(rd);
  if (rc != GT_OK) {
    gt_value_free(meta);
    return GT_ERR;
  }
  gt_value_free(m->meta);
  m->meta = meta;
  return GT_OK;
}

int gt_onnx_read(gt_storage *file, const char *path, gt_model *m, gt_err *err) {
  reader rd = {file, path, NULL, NULL, 0, NULL};
  gt_value *meta = gt_value_new(GT_V_MAP);
  int rc = meta ? read_model(&rd, m, meta, err) : gt_fail(err, "out of memory");
  m->format = "onnx";
  return finish(&rd, m, meta, rc, err);
}

int gt_onnx_tensor_read(gt_storage *file, const char *path, gt_model *m,
                        gt_err *err) {
  reader rd = {file, path, NULL, NULL, 0, NULL};
  gt_value *meta = gt_value_new(GT_V_MAP);
  otensor t;
  gt_tensor out;
  memset(&out, 0, sizeof out);
  int rc = meta ? gt_onnx_decode_tensor(file->data, 0, file->size, &t, err) : gt_fail(err, "out of memory");
  m->format = "onnx_tensor";
  if (rc != GT_OK) {
    if (meta) gt_onnx_otensor_free(&t);
    return finish(&rd, m, meta, rc, err);
  }
  /* protobuf-c ends the name at a NUL byte: refuse one instead */
  pb_reader pr;
  pb_rec whole = {0};
  site st;
  memset(&st, 0, sizeof st);
  whole.len = file->size;
  pb_reader_init(&pr, file->data, 0, file->size);
  if (gt_onnx_tensor_name(&pr, &whole, &st, err) != GT_OK || memchr(st.name ? st.name : (const uint8_t *)"", '\0', st.name_len)) {
    gt_onnx_otensor_free(&t);
    if (st.name) gt_fail(err, "the tensor's name contains a NUL byte");
    return finish(&rd, m, meta, GT_ERR, err);
  }
  const char *name = t.tp->name && *t.tp->name ? t.tp->name : "tensor";
  char *nm = strdup(name);
  if (!nm) rc = gt_fail(err, "out of memory");
  if (rc == GT_OK && gt_value_setk(meta, "data_type", vstr(gt_onnx_type_name(t.code))) != GT_OK)
    rc = gt_fail(err, "out of memory");
  if (rc == GT_OK && !t.ty)
    rc = gt_fail(err, "tensor \"%s\": data type %s has no graft dtype", nm, gt_onnx_type_name(t.code));
  if (rc == GT_OK && t.ty->note) {
    char buf[200];
    snprintf(buf, sizeof buf, "%s read as %s", t.ty->name, t.ty->note);
    gt_value *notes = gt_value_new(GT_V_LIST);
    if (gt_value_push(notes, vstr(buf)) != GT_OK || gt_value_setk(meta, "notes", notes) != GT_OK)
      rc = gt_fail(err, "out of memory");
  }
  if (rc == GT_OK && make_tensor(&rd, nm, &t, &out, err) != GT_OK)
    rc = gt_wrap(err, "tensor \"%s\"", nm);
  gt_onnx_otensor_free(&t);
  if (rc == GT_OK) rc = gt_model_add(m, nm, strlen(nm), &out, err);
  free(nm);
  return finish(&rd, m, meta, rc, err);
}
