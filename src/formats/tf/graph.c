/* graph.c: GraphDef, MetaGraphDef and SavedModel reading (graph.h); the
 * node walker and TensorProto decoding here are shared with graph_patch.c
 * through graphdef.h.
 *
 * Message layouts (docs/formats/tfgraph.md): GraphDef node = 1 (NodeDef),
 * versions = 4 (VersionDef, producer = 1); NodeDef name = 1, op = 2,
 * attr = 5 (map entries key = 1, value = 2 AttrValue); AttrValue type = 6,
 * shape = 7, tensor = 8; TensorProto dtype = 1, tensor_shape = 2,
 * tensor_content = 4, typed fields 5-13, 16-18; MetaGraphDef graph_def = 2;
 * SavedModel meta_graphs = 2.
 *
 * The graph is walked with pbwire (offsets, no copies); small messages
 * (TensorProto without its content, TensorShapeProto, MetaGraphDef without
 * its graph) are decoded by protobuf-c. Where a field occurs twice the last
 * occurrence wins, as protobuf's rule is for scalars and bytes; a second
 * tensor in one AttrValue (protobuf would merge the two) is refused. */
#include "formats/tf/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/tf/graphdef.h"
#include "meta_graph.pb-c.h"
#include "io/pbwire.h"
#include "saved_model.pb-c.h"
#include "tensor.pb-c.h"
#include "tensor_shape.pb-c.h"
#include "formats/tf/proto.h"
#include "formats/tf/varkeys.h"

/* ------------------------------------------------------------ data types */

/* The name graft shows for each TensorFlow DataType (types.proto), by
 * value; which graft dtype holds it is tfproto's gt_tf_to_dtype. */
static const char *const tf_types[] = {
  "invalid",         "float32",         "float64",            "int32",
  "uint8",           "int16",           "int8",               "string",
  "complex64",       "int64",           "bool",               "qint8",
  "quint8",          "qint32",          "bfloat16",           "qint16",
  "quint16",         "uint16",          "complex128",         "float16",
  "resource",        "variant",         "uint32",             "uint64",
  "float8_e5m2",     "float8_e4m3fn",   "float8_e4m3fnuz",    "float8_e4m3b11fnuz",
  "float8_e5m2fnuz", "int4",            "uint4",              "int2",
  "uint2",           "float4_e2m1fn",
};
#define N_TF_TYPES (sizeof tf_types / sizeof tf_types[0])

/* Reference types (value + 100) only occur in op signatures; they name the
 * same type. */
const char *gt_tfg_type_name(uint64_t v) {
  if (v >= 100 && v < 100 + N_TF_TYPES) v -= 100;
  return v < N_TF_TYPES ? tf_types[v] : "unknown";
}

int gt_tfg_dtype(uint64_t v, gt_dtype *dt) {
  return v <= INT32_MAX && gt_tf_to_dtype((int)v, dt) == 0 ? GT_OK : GT_ERR;
}

/* ----------------------------------------------------------- metadata */

static gt_value *vstr(const char *s) { return gt_value_str(s, strlen(s)); }
static gt_value *vbytes(const uint8_t *p, size_t n) {
  return gt_value_str((const char *)p, n);
}

/* A TensorShapeProto as a list of sizes (-1 unknown); nil when the rank is
 * unknown. */
static gt_value *shape_value(const Tensorflow__TensorShapeProto *sp) {
  if (sp && sp->unknown_rank) return gt_value_new(GT_V_NIL);
  gt_value *l = gt_value_new(GT_V_LIST);
  for (size_t i = 0; sp && l && i < sp->n_dim; i++)
    if (gt_value_push(l, gt_value_int(sp->dim[i] ? sp->dim[i]->size : 0)) != GT_OK) {
      gt_value_free(l);
      return NULL;
    }
  return l;
}

/* ------------------------------------------------------------ the graph */

enum { ATTR_OTHER, ATTR_VALUE, ATTR_DTYPE, ATTR_SHAPE };

/* Looks inside the AttrValue of attr `which` for the field graft needs. */
static int parse_attr_value(const pb_reader *er, const pb_rec *val, int which,
                            gt_tf_node *nd, gt_err *err) {
  pb_reader r;
  pb_rec a;
  int k, tensors = 0;
  pb_sub(er, val, &r);
  if (which == ATTR_VALUE) nd->has_tensor = 0;
  while ((k = pb_next(&r, &a, err)) == 1) {
    if (which == ATTR_VALUE && a.num == 8 && a.wt == PB_LEN) {
      if (tensors++)
        return gt_fail(err, "attr \"value\" holds two tensors at offset %zu",
                       a.start);
      nd->tensor = a;
      nd->has_tensor = 1;
    } else if (which == ATTR_DTYPE && a.num == 6 && a.wt == PB_VARINT) {
      nd->dtype = a.v;
      nd->has_dtype = 1;
    } else if (which == ATTR_SHAPE && a.num == 7 && a.wt == PB_LEN) {
      nd->shape = a;
      nd->has_shape = 1;
    }
  }
  return k;
}

/* One attr map entry (key = 1, value = 2). A map key that repeats counts
 * once, the last entry winning. */
static int parse_attr(const pb_reader *nr, const pb_rec *entry, gt_tf_node *nd,
                      gt_err *err) {
  pb_reader r;
  pb_rec f, key = {0}, val = {0};
  int k, have_key = 0, have_val = 0;
  pb_sub(nr, entry, &r);
  while ((k = pb_next(&r, &f, err)) == 1) {
    if (f.num != 1 && f.num != 2) continue;
    if (f.wt != PB_LEN)
      return gt_fail(err, "attr entry at offset %zu: field %u is not "
                     "length-delimited", entry->start, f.num);
    if (f.num == 1) {
      key = f;
      have_key = 1;
    } else {
      val = f;
      have_val = 1;
    }
  }
  if (k != 0) return GT_ERR;
  if (!have_key || !have_val) return GT_OK;
  const uint8_t *kp = r.buf + key.pos;
  int which = gt_tfg_streq(kp, key.len, "value")   ? ATTR_VALUE
              : gt_tfg_streq(kp, key.len, "dtype") ? ATTR_DTYPE
              : gt_tfg_streq(kp, key.len, "shape") ? ATTR_SHAPE
                                            : ATTR_OTHER;
  if (which == ATTR_OTHER) return GT_OK;
  if (which == ATTR_VALUE) nd->entry = *entry, nd->value = val;
  return parse_attr_value(&r, &val, which, nd, err);
}

static int parse_node(const pb_reader *gr, const pb_rec *rec, gt_tf_node *nd,
                      gt_err *err) {
  pb_reader r;
  pb_rec f;
  int k;
  memset(nd, 0, sizeof *nd);
  nd->rec = *rec;
  nd->name = nd->op = (const uint8_t *)"";
  pb_sub(gr, rec, &r);
  while ((k = pb_next(&r, &f, err)) == 1) {
    if (f.num != 1 && f.num != 2 && f.num != 5) continue;
    if (f.wt != PB_LEN)
      return gt_fail(err, "field %u is not length-delimited", f.num);
    if (f.num == 1) {
      nd->name = r.buf + f.pos;
      nd->name_len = f.len;
    } else if (f.num == 2) {
      nd->op = r.buf + f.pos;
      nd->op_len = f.len;
    } else if (parse_attr(&r, &f, nd, err) != GT_OK) {
      return GT_ERR;
    }
  }
  return k;
}

int gt_tfg_walk(const uint8_t *buf, size_t start, size_t end, gt_tf_node_fn fn,
                      void *ctx, int64_t *producer, gt_err *err) {
  pb_reader r;
  pb_rec f;
  int k;
  size_t i = 0;
  pb_reader_init(&r, buf, start, end);
  while ((k = pb_next(&r, &f, err)) == 1) {
    if (f.num == 1) {
      gt_tf_node nd;
      if (f.wt != PB_LEN)
        return gt_fail(err, "GraphDef: node %zu at offset %zu is not "
                       "length-delimited", i, f.start);
      if (parse_node(&r, &f, &nd, err) != GT_OK)
        return gt_wrap(err, "GraphDef: node %zu at offset %zu", i, f.start);
      if (fn(ctx, &nd, err) != GT_OK) {
        size_t n = nd.name_len < GT_TFG_NAME_SHOWN ? nd.name_len : GT_TFG_NAME_SHOWN;
        return gt_wrap(err, "node \"%.*s\"", (int)n, (const char *)nd.name);
      }
      i++;
    } else if (f.num == 4 && f.wt == PB_LEN) {
      pb_reader vr;
      pb_rec v;
      int kv;
      pb_sub(&r, &f, &vr);
      while ((kv = pb_next(&vr, &v, err)) == 1)
        if (v.num == 1 && v.wt == PB_VARINT) *producer = (int32_t)v.v;
      if (kv != 0) return gt_wrap(err, "GraphDef versions");
    }
  }
  return k;
}

/* ------------------------------------------------------------ Consts */

/* Lazy storage of typed-field values: owns the decoded TensorProto. */
typedef struct typed_ctx {
  Tensorflow__TensorProto *tp;
  size_t numel;
} typed_ctx;

static void free_typed(void *p) {
  typed_ctx *c = p;
  if (!c) return;
  if (c->tp) protobuf_c_message_free_unpacked(&c->tp->base, NULL);
  free(c);
}

/* Element i of the typed field, stored at dst as the graft dtype: strings
 * point into the unpacked message (kept alive by the lazy storage). */
static void put_typed(const Tensorflow__TensorProto *tp, size_t i, uint8_t *dst,
                      size_t es) {
  if (tp->dtype == 7) {
    gt_str s = {tp->string_val[i].data ? (const char *)tp->string_val[i].data : "",
                tp->string_val[i].len};
    memcpy(dst, &s, sizeof s);
    return;
  }
  gt_tf_typed_elem(tp, (int)tp->dtype, i, dst, es);
}

/* Fills data[0, n) elements of es bytes: the first m are given; the rest
 * repeat element m - 1 (copied in doubling runs). */
static void repeat_last(uint8_t *data, size_t m, size_t n, size_t es) {
  size_t done = m;
  while (done < n) {
    size_t run = done - (m - 1), k = run < n - done ? run : n - done;
    memcpy(data + done * es, data + (m - 1) * es, k * es);
    done += k;
  }
}

static int load_typed(gt_storage *s, gt_err *err) {
  typed_ctx *c = s->ctx;
  gt_dtype dt;
  if (gt_tfg_dtype(c->tp->dtype, &dt) != GT_OK) return gt_fail(err, "bad dtype");
  if (gt_storage_alloc_data(s, err) != GT_OK) return GT_ERR;
  size_t es = gt_dtype_size(dt), k = gt_tf_typed_count(c->tp, (int)c->tp->dtype);
  size_t m = k < c->numel ? k : c->numel;
  for (size_t i = 0; i < m; i++) put_typed(c->tp, i, s->data + i * es, es);
  if (m > 0) {
    repeat_last(s->data, m, c->numel, es);
  } else if (dt == GT_STRING) {
    gt_str e = {"", 0};
    for (size_t i = 0; i < c->numel; i++) memcpy(s->data + i * es, &e, es);
  } else {
    memset(s->data, 0, c->numel * es);
  }
  return GT_OK;
}

/* A varint32 at *pos of p[0, n). */
static int get_varint32(const uint8_t *p, size_t n, size_t *pos, uint32_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift <= 28; shift += 7) {
    if (*pos >= n) return GT_ERR;
    uint8_t b = p[(*pos)++];
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      if (x > UINT32_MAX) return GT_ERR;
      *v = (uint32_t)x;
      return GT_OK;
    }
  }
  return GT_ERR;
}

/* DT_STRING tensor_content (TF's EncodeStringList): numel varint32 lengths,
 * then the bytes of every string, which must end the content exactly. The
 * strings point into the parent region. */
static int load_string_content(gt_storage *s, gt_err *err) {
  const gt_storage *raw = s->parent;
  size_t n = s->size / sizeof(gt_str), lpos = 0, pos = 0;
  uint32_t len;
  for (size_t i = 0; i < n; i++)
    if (get_varint32(raw->data, raw->size, &pos, &len) != GT_OK)
      return gt_fail(err, "string tensor_content: bad length of element %zu", i);
  if (gt_storage_alloc_data(s, err) != GT_OK) return GT_ERR;
  for (size_t i = 0; i < n; i++) {
    get_varint32(raw->data, raw->size, &lpos, &len);
    if (len > raw->size - pos)
      return gt_fail(err, "string tensor_content: element %zu (%u bytes) "
                     "runs past the end", i, (unsigned)len);
    gt_str e = {(const char *)raw->data + pos, len};
    memcpy(s->data + i * sizeof(gt_str), &e, sizeof e);
    pos += len;
  }
  if (pos != raw->size)
    return gt_fail(err, "string tensor_content: %zu bytes after the last "
                   "string", raw->size - pos);
  return GT_OK;
}

static gt_storage *content_storage(gt_storage *file, const pb_rec *c,
                                   gt_dtype dt, size_t numel, gt_err *err) {
  if (dt != GT_STRING)
    return gt_storage_aligned(file, c->pos, c->len, gt_dtype_size(dt), err);
  gt_storage *r = gt_storage_region(file, c->pos, c->len, err);
  if (!r) return NULL;
  gt_storage *s = gt_storage_lazy(numel * sizeof(gt_str), r, load_string_content,
                                  NULL, NULL, err);
  gt_storage_release(r);
  return s;
}

Tensorflow__TensorProto *gt_tfg_unpack_tensor(const gt_storage *file,
                                              const pb_rec *tr, pb_rec *content,
                                              int *has_content, gt_err *err) {
  static const uint32_t skip[] = {4, 14, 15};
  pb_reader r;
  pb_rec f;
  int k, filter = 0;
  *has_content = 0;
  pb_reader_init(&r, file->data, tr->pos, tr->pos + tr->len);
  while ((k = pb_next(&r, &f, err)) == 1) {
    if (f.num == 4 || f.num == 14 || f.num == 15) filter = 1;
    if (f.num != 4) continue;
    if (f.wt != PB_LEN) {
      gt_fail(err, "tensor_content is not length-delimited");
      return NULL;
    }
    *content = f;
    *has_content = 1;
  }
  if (k != 0) return NULL;
  const uint8_t *p = file->data + tr->pos;
  size_t n = tr->len;
  uint8_t *copy = NULL;
  if (filter) {
    if (pb_filter(file->data, tr->pos, tr->pos + tr->len, skip, 3, &copy, &n,
                  err) != GT_OK)
      return NULL;
    p = copy;
  }
  ProtobufCMessage *m = pb_unpack(&tensorflow__tensor_proto__descriptor, p, n,
                                  "TensorProto", err);
  free(copy);
  return (Tensorflow__TensorProto *)m;
}

int gt_tfg_shape(const Tensorflow__TensorProto *tp, int *ndim,
                        int64_t *shape, gt_err *err) {
  const Tensorflow__TensorShapeProto *sp = tp->tensor_shape;
  *ndim = 0;
  if (!sp) return GT_OK;
  if (sp->unknown_rank) return gt_fail(err, "tensor shape has unknown rank");
  if (sp->n_dim > GT_MAXDIM)
    return gt_fail(err, "tensor has %zu dimensions (at most %d)", sp->n_dim,
                   GT_MAXDIM);
  for (size_t i = 0; i < sp->n_dim; i++) {
    int64_t d = sp->dim[i] ? sp->dim[i]->size : 0;
    if (d < 0)
      return gt_fail(err, "dimension %zu of the tensor is %lld", i + 1,
                     (long long)d);
    shape[i] = d;
  }
  *ndim = (int)sp->n_dim;
  return GT_OK;
}

/* The tensor of TensorProto record tr. *skip is set (and out left empty)
 * when its dtype has no graft dtype; *tfdt gets the dtype. */
static int tensor_from_proto(gt_storage *file, const pb_rec *tr, gt_tensor *out,
                             uint64_t *tfdt, int *skip, gt_err *err) {
  pb_rec content = {0};
  int has_content, ndim;
  int64_t shape[GT_MAXDIM], numel;
  gt_dtype dt;
  *skip = 0;
  Tensorflow__TensorProto *tp = gt_tfg_unpack_tensor(file, tr, &content, &has_content, err);
  if (!tp) return GT_ERR;
  *tfdt = (uint64_t)tp->dtype;
  if (gt_tfg_dtype(*tfdt, &dt) != GT_OK) {
    protobuf_c_message_free_unpacked(&tp->base, NULL);
    if (*tfdt == 0) return gt_fail(err, "the tensor has no dtype");
    *skip = 1;
    return GT_OK;
  }
  unsigned long long nbytes = 0;
  int rc = gt_tfg_shape(tp, &ndim, shape, err);
  if (rc == GT_OK) rc = gt_numel(ndim, shape, &numel, err);
  if (rc == GT_OK && (gt_mul_u64((unsigned long long)numel, gt_dtype_size(dt), &nbytes) ||
                      nbytes > SIZE_MAX))
    rc = gt_fail(err, "a tensor of %lld %s elements is too large", (long long)numel,
                 gt_dtype_name(dt));
  if (rc != GT_OK) {
    protobuf_c_message_free_unpacked(&tp->base, NULL);
    return GT_ERR;
  }
  gt_storage *s;
  if (has_content && content.len > 0) {
    if (dt != GT_STRING && content.len != nbytes) {
      protobuf_c_message_free_unpacked(&tp->base, NULL);
      return gt_fail(err, "tensor_content holds %zu bytes but %lld %s elements "
                     "need %llu", content.len, (long long)numel,
                     gt_dtype_name(dt), nbytes);
    }
    protobuf_c_message_free_unpacked(&tp->base, NULL);
    s = content_storage(file, &content, dt, (size_t)numel, err);
  } else {
    typed_ctx *c = calloc(1, sizeof *c);
    if (!c) {
      protobuf_c_message_free_unpacked(&tp->base, NULL);
      return gt_fail(err, "out of memory");
    }
    c->tp = tp;
    c->numel = (size_t)numel;
    /* The file is the parent only so errors can name it (storage.h). */
    s = gt_storage_lazy((size_t)nbytes, file, load_typed, c, free_typed, err);
  }
  if (!s) return GT_ERR;
  rc = gt_tensor_make(out, s, dt, ndim, shape, 0, err);
  gt_storage_release(s);
  return rc;
}

/* ------------------------------------------------------------ readers */

typedef struct reader {
  gt_storage *file;
  gt_model *m;
  int consts;         /* Const nodes become tensors */
  size_t nodes;
  gt_value *vars;     /* LIST of graph variables */
  gt_value *skipped;  /* LIST of Consts of types graft has not */
} reader;

static int is_variable_op(const gt_tf_node *nd) {
  return gt_tfg_streq(nd->op, nd->op_len, "VariableV2") ||
         gt_tfg_streq(nd->op, nd->op_len, "Variable") ||
         gt_tfg_streq(nd->op, nd->op_len, "VarHandleOp");
}

static int add_variable(reader *rd, const gt_tf_node *nd, gt_err *err) {
  gt_value *v = gt_value_new(GT_V_MAP);
  int ok = gt_value_setk(v, "name", vbytes(nd->name, nd->name_len)) == GT_OK &&
           gt_value_setk(v, "key", vbytes(nd->name, nd->name_len)) == GT_OK &&
           gt_value_setk(v, "op", vbytes(nd->op, nd->op_len)) == GT_OK;
  if (ok && nd->has_dtype)
    ok = gt_value_setk(v, "dtype", vstr(gt_tfg_type_name(nd->dtype))) == GT_OK;
  if (ok && nd->has_shape) {
    Tensorflow__TensorShapeProto *sp = (Tensorflow__TensorShapeProto *)pb_unpack(
        &tensorflow__tensor_shape_proto__descriptor, rd->file->data + nd->shape.pos,
        nd->shape.len, "attr \"shape\"", err);
    if (!sp) {
      gt_value_free(v);
      return GT_ERR;
    }
    ok = gt_value_setk(v, "shape", shape_value(sp)) == GT_OK;
    protobuf_c_message_free_unpacked(&sp->base, NULL);
  }
  if (!ok || gt_value_push(rd->vars, v) != GT_OK) {
    if (!ok) gt_value_free(v);
    return gt_fail(err, "out of memory");
  }
  return GT_OK;
}

static int add_const(reader *rd, const gt_tf_node *nd, gt_err *err) {
  gt_tensor t;
  uint64_t tfdt;
  int skip;
  memset(&t, 0, sizeof t);
  if (!nd->has_tensor) return gt_fail(err, "Const without a tensor \"value\"");
  if (tensor_from_proto(rd->file, &nd->tensor, &t, &tfdt, &skip, err) != GT_OK)
    return GT_ERR;
  if (!skip) return gt_model_add(rd->m, (const char *)nd->name, nd->name_len, &t, err);
  gt_value *v = gt_value_new(GT_V_MAP);
  if (gt_value_setk(v, "name", vbytes(nd->name, nd->name_len)) != GT_OK ||
      gt_value_setk(v, "dtype", vstr(gt_tfg_type_name(tfdt))) != GT_OK ||
      gt_value_push(rd->skipped, v) != GT_OK) {
    gt_value_free(v);
    return gt_fail(err, "out of memory");
  }
  return GT_OK;
}

static int on_node(void *ctx, const gt_tf_node *nd, gt_err *err) {
  reader *rd = ctx;
  rd->nodes++;
  if (rd->consts && gt_tfg_streq(nd->op, nd->op_len, "Const")) return add_const(rd, nd, err);
  if (is_variable_op(nd)) return add_variable(rd, nd, err);
  return GT_OK;
}

static int reader_init(reader *rd, gt_storage *file, gt_model *m, int consts,
                       gt_err *err) {
  memset(rd, 0, sizeof *rd);
  rd->file = file;
  rd->m = m;
  rd->consts = consts;
  rd->vars = gt_value_new(GT_V_LIST);
  rd->skipped = gt_value_new(GT_V_LIST);
  if (!rd->vars || !rd->skipped) return gt_fail(err, "out of memory");
  return GT_OK;
}

static void reader_free(reader *rd) {
  gt_value_free(rd->vars);
  gt_value_free(rd->skipped);
}

/* Moves the graph facts of rd into meta. */
static int graph_meta(reader *rd, int64_t producer, gt_value *meta) {
  int ok = gt_value_setk(meta, "node_count", gt_value_int((int64_t)rd->nodes)) == GT_OK;
  if (ok && producer >= 0)
    ok = gt_value_setk(meta, "producer", gt_value_int(producer)) == GT_OK;
  if (ok && !gt_value_get(meta, "variables")) {
    ok = gt_value_setk(meta, "variables", rd->vars) == GT_OK;
    rd->vars = NULL;
  }
  if (ok) ok = gt_value_setk(meta, "skipped", rd->skipped) == GT_OK;
  rd->skipped = NULL;
  return ok ? GT_OK : GT_ERR;
}

int gt_tfgraph_read(gt_storage *file, gt_model *m, gt_err *err) {
  reader rd;
  int64_t producer = -1;
  if (reader_init(&rd, file, m, 1, err) != GT_OK ||
      gt_tfg_walk(file->data, 0, file->size, on_node, &rd, &producer, err) != GT_OK) {
    reader_free(&rd);
    return GT_ERR;
  }
  m->format = "graphdef";
  gt_value_free(m->meta);
  m->meta = gt_value_new(GT_V_MAP);
  int rc = m->meta ? graph_meta(&rd, producer, m->meta) : GT_ERR;
  reader_free(&rd);
  return rc == GT_OK ? GT_OK : gt_fail(err, "out of memory");
}

/* -------------------------------------------------- MetaGraphDef parts */

static const char *saver_version(int v) {
  return v == 2 ? "V2" : v == 1 ? "V1" : "LEGACY";
}

static gt_value *tensor_info_value(const Tensorflow__TensorInfo *ti) {
  gt_value *v = gt_value_new(GT_V_MAP);
  if (!ti) return v;
  int ok = 1;
  if (ti->encoding_case == TENSORFLOW__TENSOR_INFO__ENCODING_NAME && ti->name)
    ok = gt_value_setk(v, "name", vstr(ti->name)) == GT_OK;
  else if (ti->encoding_case == TENSORFLOW__TENSOR_INFO__ENCODING_COO_SPARSE)
    ok = gt_value_setk(v, "encoding", vstr("coo_sparse")) == GT_OK;
  ok = ok && gt_value_setk(v, "dtype", vstr(gt_tfg_type_name((uint64_t)ti->dtype))) == GT_OK;
  if (ok && ti->tensor_shape)
    ok = gt_value_setk(v, "shape", shape_value(ti->tensor_shape)) == GT_OK;
  if (!ok) {
    gt_value_free(v);
    return NULL;
  }
  return v;
}

/* inputs / outputs entries share one layout: key, TensorInfo value. */
typedef struct info_entry {
  ProtobufCMessage base;
  char *key;
  Tensorflow__TensorInfo *value;
} info_entry;

static gt_value *info_map(info_entry **e, size_t n) {
  gt_value *v = gt_value_new(GT_V_MAP);
  for (size_t i = 0; v && i < n; i++)
    if (gt_value_setk(v, e[i]->key, tensor_info_value(e[i]->value)) != GT_OK) {
      gt_value_free(v);
      return NULL;
    }
  return v;
}

static gt_value *signatures_value(const Tensorflow__MetaGraphDef *mg) {
  gt_value *v = gt_value_new(GT_V_MAP);
  for (size_t i = 0; v && i < mg->n_signature_def; i++) {
    const Tensorflow__SignatureDef *sd = mg->signature_def[i]->value;
    gt_value *s = gt_value_new(GT_V_MAP);
    int ok = s != NULL;
    if (ok && sd) {
      ok = gt_value_setk(s, "method", vstr(sd->method_name)) == GT_OK &&
           gt_value_setk(s, "inputs", info_map((info_entry **)sd->inputs, sd->n_inputs)) == GT_OK &&
           gt_value_setk(s, "outputs", info_map((info_entry **)sd->outputs, sd->n_outputs)) == GT_OK;
    }
    if (!ok) gt_value_free(s);
    if (!ok || gt_value_setk(v, mg->signature_def[i]->key, s) != GT_OK) {
      gt_value_free(v);
      return NULL;
    }
  }
  return v;
}

/* A local name escaped for a checkpoint key (docs/formats/tf.md#object-based-checkpoints): "." -> "..",
 * then "/" -> ".S". Appends to buf at *n (buf has room for 2 x len). */
static void escape_name(const char *s, char *buf, size_t *n) {
  for (; *s; s++) {
    if (*s == '.') buf[(*n)++] = '.', buf[(*n)++] = '.';
    else if (*s == '/') buf[(*n)++] = '.', buf[(*n)++] = 'S';
    else buf[(*n)++] = *s;
  }
}

/* Optimizer slot variables hang off the optimizer's node (slot_variables),
 * not off children: their path is "<variable path>/.OPTIMIZER_SLOT/
 * <optimizer path>/<escaped slot name>" (docs/formats/tfgraph.md#savedobjectgraph). */
static void add_slot_paths(const Tensorflow__SavedObjectGraph *og, char **paths) {
  size_t n = og->n_nodes;
  for (size_t id = 0; id < n; id++) {
    const Tensorflow__SavedObject *o = og->nodes[id];
    for (size_t j = 0; o && paths[id] && j < o->n_slot_variables; j++) {
      const Tensorflow__TrackableObjectGraph__TrackableObject__SlotVariableReference *s =
          o->slot_variables[j];
      if (!s || s->original_variable_node_id < 0 || s->slot_variable_node_id < 0 ||
          (size_t)s->original_variable_node_id >= n ||
          (size_t)s->slot_variable_node_id >= n ||
          !paths[s->original_variable_node_id] || paths[s->slot_variable_node_id])
        continue;
      const char *vp = paths[s->original_variable_node_id], *mid = "/.OPTIMIZER_SLOT/";
      size_t vl = strlen(vp), ml = strlen(mid), ol = strlen(paths[id]);
      size_t k = vl + ml + ol;
      char *p = malloc(k + 2 * strlen(s->slot_name) + 2);
      if (!p) continue;
      memcpy(p, vp, vl);
      memcpy(p + vl, mid, ml);
      memcpy(p + vl + ml, paths[id], ol);
      p[k++] = '/';
      escape_name(s->slot_name, p, &k);
      p[k] = '\0';
      paths[s->slot_variable_node_id] = p;
    }
  }
}

/* Object paths of a SavedObjectGraph by breadth-first search from the root
 * along children, first path found winning, as TF's checkpoint keys are
 * made. paths[i] is NULL for unreachable nodes. */
static char **object_paths(const Tensorflow__SavedObjectGraph *og) {
  size_t n = og->n_nodes, head = 0, tail = 0;
  char **paths = calloc(n ? n : 1, sizeof *paths);
  size_t *queue = malloc((n ? n : 1) * sizeof *queue);
  if (!paths || !queue || n == 0) {
    free(queue);
    return paths;
  }
  paths[0] = calloc(1, 1);
  queue[tail++] = 0;
  while (head < tail && paths[0]) {
    size_t id = queue[head++];
    const Tensorflow__SavedObject *o = og->nodes[id];
    for (size_t j = 0; o && j < o->n_children; j++) {
      const Tensorflow__TrackableObjectGraph__TrackableObject__ObjectReference *c =
          o->children[j];
      if (!c || c->node_id < 0 || (size_t)c->node_id >= n || paths[c->node_id])
        continue;
      size_t pl = strlen(paths[id]), ll = strlen(c->local_name), k = pl;
      char *p = malloc(pl + 2 * ll + 2);
      if (!p) continue;
      memcpy(p, paths[id], pl);
      if (pl) p[k++] = '/';
      escape_name(c->local_name, p, &k);
      p[k] = '\0';
      paths[c->node_id] = p;
      queue[tail++] = (size_t)c->node_id;
    }
  }
  free(queue);
  add_slot_paths(og, paths);
  return paths;
}

/* Variables of a TF2 object graph: {name, dtype, shape, trainable, path,
 * key} with key the checkpoint key "<path>/.ATTRIBUTES/VARIABLE_VALUE". */
static gt_value *object_variables(const Tensorflow__SavedObjectGraph *og) {
  char **paths = object_paths(og);
  gt_value *l = gt_value_new(GT_V_LIST);
  int ok = paths && l;
  for (size_t i = 0; ok && i < og->n_nodes; i++) {
    const Tensorflow__SavedObject *o = og->nodes[i];
    if (!o || o->kind_case != TENSORFLOW__SAVED_OBJECT__KIND_VARIABLE || !o->variable)
      continue;
    const Tensorflow__SavedVariable *sv = o->variable;
    gt_value *v = gt_value_new(GT_V_MAP);
    ok = gt_value_setk(v, "name", vstr(sv->name)) == GT_OK &&
         gt_value_setk(v, "dtype", vstr(gt_tfg_type_name((uint64_t)sv->dtype))) == GT_OK &&
         gt_value_setk(v, "shape", shape_value(sv->shape)) == GT_OK &&
         gt_value_setk(v, "trainable", gt_value_bool(sv->trainable)) == GT_OK;
    if (ok && paths[i]) {
      const char *suffix = "/.ATTRIBUTES/VARIABLE_VALUE";
      size_t pl = strlen(paths[i]);
      char *key = malloc(pl + strlen(suffix) + 1);
      if (key) {
        memcpy(key, paths[i], pl);
        strcpy(key + pl, suffix);
      }
      ok = key && gt_value_setk(v, "path", vstr(paths[i])) == GT_OK &&
           gt_value_setk(v, "key", vstr(key)) == GT_OK;
      free(key);
    }
    if (!ok) gt_value_free(v);
    else ok = gt_value_push(l, v) == GT_OK;
  }
  for (size_t i = 0; paths && i < og->n_nodes; i++) free(paths[i]);
  free(paths);
  if (!ok) {
    gt_value_free(l);
    return NULL;
  }
  return l;
}

static gt_value *tags_value(const Tensorflow__MetaGraphDef__MetaInfoDef *mi) {
  gt_value *l = gt_value_new(GT_V_LIST);
  for (size_t i = 0; l && mi && i < mi->n_tags; i++)
    if (gt_value_push(l, vstr(mi->tags[i])) != GT_OK) {
      gt_value_free(l);
      return NULL;
    }
  return l;
}

/* Everything of a decoded MetaGraphDef (without its graph) into meta. */
static int metagraph_meta(const Tensorflow__MetaGraphDef *mg, gt_value *meta) {
  const Tensorflow__MetaGraphDef__MetaInfoDef *mi = mg->meta_info_def;
  int ok = gt_value_setk(meta, "tags", tags_value(mi)) == GT_OK;
  if (ok && mi)
    ok = gt_value_setk(meta, "tensorflow_version", vstr(mi->tensorflow_version)) == GT_OK &&
         gt_value_setk(meta, "tensorflow_git_version", vstr(mi->tensorflow_git_version)) == GT_OK &&
         gt_value_setk(meta, "meta_graph_version", vstr(mi->meta_graph_version)) == GT_OK;
  if (ok) ok = gt_value_setk(meta, "signatures", signatures_value(mg)) == GT_OK;
  if (ok && mg->saver_def) {
    const Tensorflow__SaverDef *sd = mg->saver_def;
    gt_value *s = gt_value_new(GT_V_MAP);
    ok = gt_value_setk(s, "version", vstr(saver_version((int)sd->version))) == GT_OK &&
         gt_value_setk(s, "filename_tensor_name", vstr(sd->filename_tensor_name)) == GT_OK &&
         gt_value_setk(s, "save_tensor_name", vstr(sd->save_tensor_name)) == GT_OK &&
         gt_value_setk(s, "restore_op_name", vstr(sd->restore_op_name)) == GT_OK &&
         gt_value_setk(s, "sharded", gt_value_bool(sd->sharded)) == GT_OK &&
         gt_value_setk(s, "max_to_keep", gt_value_int(sd->max_to_keep)) == GT_OK;
    if (!ok) gt_value_free(s);
    else ok = gt_value_setk(meta, "saver", s) == GT_OK;
  }
  if (ok) {
    gt_value *c = gt_value_new(GT_V_LIST);
    for (size_t i = 0; c && ok && i < mg->n_collection_def; i++)
      ok = gt_value_push(c, vstr(mg->collection_def[i]->key)) == GT_OK;
    ok = ok && gt_value_setk(meta, "collections", c) == GT_OK;
  }
  if (ok && mg->object_graph_def) {
    gt_value *v = object_variables(mg->object_graph_def);
    if (v && v->n == 0) gt_value_free(v);
    else ok = gt_value_setk(meta, "variables", v) == GT_OK;
  }
  return ok ? GT_OK : GT_ERR;
}

/* The MetaGraphDef at file bytes [start, end): its graph walked (Consts as
 * tensors when consts), the rest decoded by protobuf-c into meta. */
static int read_metagraph(gt_storage *file, size_t start, size_t end, int consts,
                          gt_model *m, gt_value *meta, gt_err *err) {
  static const uint32_t skip[] = {2};
  pb_reader r;
  pb_rec f, graph = {0};
  int k, has_graph = 0;
  pb_reader_init(&r, file->data, start, end);
  while ((k = pb_next(&r, &f, err)) == 1)
    if (f.num == 2) {
      if (f.wt != PB_LEN) return gt_fail(err, "MetaGraphDef: graph_def is not length-delimited");
      graph = f;
      has_graph = 1;
    }
  if (k != 0) return gt_wrap(err, "MetaGraphDef");
  uint8_t *rest;
  size_t n;
  if (pb_filter(file->data, start, end, skip, 1, &rest, &n, err) != GT_OK) return GT_ERR;
  Tensorflow__MetaGraphDef *mg = (Tensorflow__MetaGraphDef *)pb_unpack(
      &tensorflow__meta_graph_def__descriptor, rest, n, "MetaGraphDef", err);
  free(rest);
  if (!mg) return GT_ERR;
  reader rd;
  int64_t producer = -1;
  int rc = reader_init(&rd, file, m, consts, err);
  if (rc == GT_OK && has_graph)
    rc = gt_tfg_walk(file->data, graph.pos, graph.pos + graph.len, on_node, &rd,
                    &producer, err);
  if (rc == GT_OK && (metagraph_meta(mg, meta) != GT_OK ||
                      graph_meta(&rd, producer, meta) != GT_OK ||
                      gt_tf_variable_keys(mg, meta) != GT_OK))
    rc = gt_fail(err, "out of memory");
  reader_free(&rd);
  protobuf_c_message_free_unpacked(&mg->base, NULL);
  return rc;
}

int gt_tfmeta_read(gt_storage *file, gt_model *m, gt_err *err) {
  gt_value_free(m->meta);
  if (!(m->meta = gt_value_new(GT_V_MAP))) return gt_fail(err, "out of memory");
  m->format = "metagraph";
  return read_metagraph(file, 0, file->size, 1, m, m->meta, err);
}

/* Tags of the MetaGraphDef record mr (from its meta_info_def only). */
static gt_value *record_tags(const gt_storage *file, const pb_rec *mr, gt_err *err) {
  pb_reader r;
  pb_rec f, info = {0};
  int k, has_info = 0;
  pb_reader_init(&r, file->data, mr->pos, mr->pos + mr->len);
  while ((k = pb_next(&r, &f, err)) == 1)
    if (f.num == 1 && f.wt == PB_LEN) info = f, has_info = 1;
  if (k != 0) return NULL;
  if (!has_info) return gt_value_new(GT_V_LIST);
  Tensorflow__MetaGraphDef__MetaInfoDef *mi = (Tensorflow__MetaGraphDef__MetaInfoDef *)pb_unpack(
      &tensorflow__meta_graph_def__meta_info_def__descriptor, file->data + info.pos,
      info.len, "meta_info_def", err);
  if (!mi) return NULL;
  gt_value *tags = tags_value(mi);
  protobuf_c_message_free_unpacked(&mi->base, NULL);
  if (!tags) gt_fail(err, "out of memory");
  return tags;
}

static int has_tag(const gt_value *tags, const char *tag) {
  for (size_t i = 0; i < tags->n; i++)
    if (strcmp(tags->items[i]->str, tag) == 0) return 1;
  return 0;
}

int gt_savedmodel_read(gt_storage *file, gt_model *m, gt_err *err) {
  pb_reader r;
  pb_rec f, chosen = {0};
  int k, found = 0, serve = 0;
  int64_t schema = 0;
  gt_value *graphs = gt_value_new(GT_V_LIST);
  if (!graphs) return gt_fail(err, "out of memory");
  pb_reader_init(&r, file->data, 0, file->size);
  while ((k = pb_next(&r, &f, err)) == 1) {
    if (f.num == 1 && f.wt == PB_VARINT) schema = (int64_t)f.v;
    if (f.num != 2) continue;
    size_t index = graphs->n;
    if (f.wt != PB_LEN) {
      gt_value_free(graphs);
      return gt_fail(err, "SavedModel: meta graph %zu is not length-delimited", index);
    }
    gt_value *tags = record_tags(file, &f, err);
    if (!tags) {
      gt_value_free(graphs);
      return gt_wrap(err, "SavedModel: meta graph %zu", index);
    }
    int s = has_tag(tags, "serve");
    if (!found || (s && !serve)) chosen = f, serve = s;
    found = 1;
    if (gt_value_push(graphs, tags) != GT_OK) {
      gt_value_free(graphs);
      return gt_fail(err, "out of memory");
    }
  }
  if (k != 0) {
    gt_value_free(graphs);
    return gt_wrap(err, "SavedModel");
  }
  if (!found) {
    gt_value_free(graphs);
    return gt_fail(err, "SavedModel holds no meta graph");
  }
  gt_value_free(m->meta);
  m->meta = gt_value_new(GT_V_MAP);
  m->format = "savedmodel";
  if (gt_value_setk(m->meta, "meta_graphs", graphs) != GT_OK ||
      gt_value_setk(m->meta, "schema_version", gt_value_int(schema)) != GT_OK)
    return gt_fail(err, "out of memory");
  if (read_metagraph(file, chosen.pos, chosen.pos + chosen.len, 0, m, m->meta,
                     err) != GT_OK)
    return gt_wrap(err, "SavedModel");
  return GT_OK;
}
