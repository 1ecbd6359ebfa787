/* proto.c: the ONNX messages as the reader and the patch writer both see
 * them (proto.h): data types, the graph walk, TensorProto decoding.
 *
 * Message layouts (docs/formats/onnx.md): ModelProto ir_version = 1,
 * producer_name = 2, producer_version = 3, domain = 4, model_version = 5,
 * graph = 7, opset_import = 8 (OperatorSetIdProto domain = 1, version = 2),
 * metadata_props = 14; GraphProto node = 1, name = 2, initializer = 5,
 * input = 11, output = 12, sparse_initializer = 15; NodeProto output = 2,
 * op_type = 4, attribute = 5; AttributeProto name = 1, t = 5; TensorProto
 * dims = 1, data_type = 2, segment = 3, float_data = 4, int32_data = 5,
 * string_data = 6, int64_data = 7, name = 8, raw_data = 9, double_data =
 * 10, uint64_data = 11, external_data = 13, data_location = 14.
 *
 * ModelProto, GraphProto, NodeProto and AttributeProto are walked with
 * pbwire (offsets, no copies); a TensorProto without its raw_data and the
 * small ValueInfoProtos go through protobuf-c. A model whose graph field
 * occurs twice (protobuf would merge the two) is refused. */
#include "formats/onnx/proto.h"

#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------ data types */

/* Indexed by TensorProto.DataType value (otype: proto.h). */
static const otype otypes[] = {
  {"UNDEFINED", -1, 0, 0, 0, NULL},
  {"FLOAT", GT_F32, 0, 0, 4, NULL},
  {"UINT8", GT_U8, 0, 0, 5, NULL},
  {"INT8", GT_I8, 0, 0, 5, NULL},
  {"UINT16", GT_U16, 0, 0, 5, NULL},
  {"INT16", GT_I16, 0, 0, 5, NULL},
  {"INT32", GT_I32, 0, 0, 5, NULL},
  {"INT64", GT_I64, 0, 0, 7, NULL},
  {"STRING", GT_STRING, 0, 0, 6, NULL},
  {"BOOL", GT_BOOL, 0, 0, 5, NULL},
  {"FLOAT16", GT_F16, 0, 0, 5, NULL},
  {"DOUBLE", GT_F64, 0, 0, 10, NULL},
  {"UINT32", GT_U32, 0, 0, 11, NULL},
  {"UINT64", GT_U64, 0, 0, 11, NULL},
  {"COMPLEX64", GT_C64, 0, 0, 4, NULL},
  {"COMPLEX128", GT_C128, 0, 0, 10, NULL},
  {"BFLOAT16", GT_BF16, 0, 0, 5, NULL},
  {"FLOAT8E4M3FN", GT_F8E4M3FN, 0, 0, 5, NULL},
  {"FLOAT8E4M3FNUZ", GT_U8, 0, 0, 5, "uint8 bit patterns"},
  {"FLOAT8E5M2", GT_F8E5M2, 0, 0, 5, NULL},
  {"FLOAT8E5M2FNUZ", GT_U8, 0, 0, 5, "uint8 bit patterns"},
  {"UINT4", GT_U8, 4, 0, 5, "uint8, one value per byte (the file packs two per byte)"},
  {"INT4", GT_I8, 4, 1, 5, "int8, one value per byte (the file packs two per byte)"},
  {"FLOAT4E2M1", GT_U8, 4, 0, 5, "uint8 4-bit codes, one per byte (the file packs two per byte)"},
  {"FLOAT8E8M0", GT_U8, 0, 0, 5, "uint8 bit patterns"},
  {"UINT2", GT_U8, 2, 0, 5, "uint8, one value per byte (the file packs four per byte)"},
  {"INT2", GT_I8, 2, 1, 5, "int8, one value per byte (the file packs four per byte)"},
  {"FLOAT6E2M3", -1, 0, 0, 5, NULL},
  {"FLOAT6E3M2", -1, 0, 0, 5, NULL},
};
#define N_OTYPES (sizeof otypes / sizeof otypes[0])

const otype *gt_onnx_type(int code) {
  return code >= 0 && (size_t)code < N_OTYPES ? &otypes[code] : NULL;
}

const char *gt_onnx_type_name(int code) {
  const otype *ty = gt_onnx_type(code);
  return ty ? ty->name : "unknown";
}

int gt_onnx_code_of(gt_dtype dt) {
  for (size_t i = 1; i < N_OTYPES; i++)
    if (otypes[i].dt == (int)dt && !otypes[i].note) return (int)i;
  return 0;
}

int gt_onnx_raw_size(const otype *ty, uint64_t numel, uint64_t *out) {
  if (ty->bits) {
    *out = numel / (8 / (uint64_t)ty->bits) + (numel % (8 / (uint64_t)ty->bits) != 0);
    return GT_OK;
  }
  unsigned long long r;
  if (gt_mul_u64(numel, gt_dtype_size((gt_dtype)ty->dt), &r) || r > SIZE_MAX)
    return GT_ERR;
  *out = r;
  return GT_OK;
}

/* Values the typed field holds for numel elements. */
uint64_t gt_onnx_typed_count(const otype *ty, uint64_t numel) {
  if (ty->bits) return numel / (8 / (uint64_t)ty->bits) + (numel % (8 / (uint64_t)ty->bits) != 0);
  if (ty->dt == GT_C64 || ty->dt == GT_C128) return 2 * numel;
  return numel;
}

/* A decimal string of at most 19 digits (external data offsets). */
int gt_onnx_parse_dec(const char *s, uint64_t *v) {
  uint64_t x = 0;
  size_t n = 0;
  if (!s || !*s) return GT_ERR;
  for (; *s; s++, n++) {
    if (*s < '0' || *s > '9' || n >= 19) return GT_ERR;
    x = x * 10 + (uint64_t)(*s - '0');
  }
  *v = x;
  return GT_OK;
}

/* ------------------------------------------------------------ the graph */

static int add_site(sites *ss, const site *s, gt_err *err) {
  if (ss->n == ss->cap) {
    size_t cap = ss->cap ? 2 * ss->cap : 16;
    site *v = realloc(ss->v, cap * sizeof *v);
    if (!v) return gt_fail(err, "out of memory");
    ss->v = v;
    ss->cap = cap;
  }
  ss->v[ss->n++] = *s;
  return GT_OK;
}

/* The Constant's tensor record: attribute "value" with a t field. *other
 * gets the name of another value attribute (value_float, sparse_value...)
 * when that is what the node holds. */
static int constant_value(const pb_reader *nr, const pb_rec *node, site *st,
                          const uint8_t **other, size_t *other_len, gt_err *err) {
  pb_reader r;
  pb_rec f;
  int k, found = 0;
  pb_sub(nr, node, &r);
  while ((k = pb_next(&r, &f, err)) == 1) {
    if (f.num != 5 || f.wt != PB_LEN) continue;
    pb_reader ar;
    pb_rec a, name = {0}, t = {0};
    int ka, has_name = 0, has_t = 0;
    pb_sub(&r, &f, &ar);
    while ((ka = pb_next(&ar, &a, err)) == 1) {
      if (a.num == 1 && a.wt == PB_LEN) name = a, has_name = 1;
      else if (a.num == 5 && a.wt == PB_LEN) {
        if (has_t) return gt_fail(err, "attribute at offset %zu holds two tensors", f.start);
        t = a, has_t = 1;
      }
    }
    if (ka != 0) return GT_ERR;
    if (!has_name) continue;
    if (streq(r.buf + name.pos, name.len, "value") && has_t) {
      if (found) return gt_fail(err, "Constant has two \"value\" attributes");
      st->chain[1] = f;
      st->chain[2] = t;
      found = 1;
    } else if (name.len > 5 && memcmp(r.buf + name.pos, "value", 5) == 0) {
      *other = r.buf + name.pos;
      *other_len = name.len;
    } else if (streq(r.buf + name.pos, name.len, "sparse_value")) {
      *other = r.buf + name.pos;
      *other_len = name.len;
    }
  }
  if (k != 0) return GT_ERR;
  return found;
}

int gt_onnx_skip_note(gt_value *skipped, const uint8_t *name, size_t n,
                      const char *what) {
  if (!skipped) return GT_OK;
  gt_value *v = gt_value_new(GT_V_MAP);
  if (gt_value_setk(v, "name", vbytes(name, n)) != GT_OK ||
      gt_value_setk(v, "why", vstr(what)) != GT_OK) {
    gt_value_free(v);
    return GT_ERR;
  }
  return gt_value_push(skipped, v);
}

/* A NodeProto: a site when it is a Constant with a tensor value. */
static int walk_node(const pb_reader *gr, const pb_rec *rec, sites *ss,
                     gt_value *skipped, gt_err *err) {
  pb_reader r;
  pb_rec f;
  int k, have_out = 0;
  const uint8_t *op = (const uint8_t *)"";
  size_t op_len = 0;
  site st;
  memset(&st, 0, sizeof st);
  pb_sub(gr, rec, &r);
  while ((k = pb_next(&r, &f, err)) == 1) {
    if (f.num == 2 && f.wt == PB_LEN && !have_out) {
      st.name = r.buf + f.pos;
      st.name_len = f.len;
      have_out = 1;
    } else if (f.num == 4 && f.wt == PB_LEN) {
      op = r.buf + f.pos;
      op_len = f.len;
    }
  }
  if (k != 0) return GT_ERR;
  if (!streq(op, op_len, "Constant") || !have_out) return GT_OK;
  const uint8_t *other = NULL;
  size_t other_len = 0;
  int found = constant_value(gr, rec, &st, &other, &other_len, err);
  if (found < 0) return GT_ERR;
  if (!found) {
    char why[80];
    snprintf(why, sizeof why, "Constant with attribute %.*s (not read)",
             other ? shown(other_len) : 1, other ? (const char *)other : "?");
    return gt_onnx_skip_note(skipped, st.name, st.name_len, why) == GT_OK
               ? GT_OK : gt_fail(err, "out of memory");
  }
  st.chain[0] = *rec;
  st.depth = 3;
  return add_site(ss, &st, err);
}

/* The name (field 8) of the TensorProto payload of rec. */
int gt_onnx_tensor_name(const pb_reader *gr, const pb_rec *rec, site *st,
                        gt_err *err) {
  pb_reader r;
  pb_rec f;
  int k;
  pb_sub(gr, rec, &r);
  while ((k = pb_next(&r, &f, err)) == 1)
    if (f.num == 8 && f.wt == PB_LEN) st->name = r.buf + f.pos, st->name_len = f.len;
  return k;
}

/* Finds the graph record of the ModelProto buf[0, n). */
int gt_onnx_find_graph(const uint8_t *buf, size_t n, pb_rec *g, gt_err *err) {
  pb_reader r;
  pb_rec f;
  int k, found = 0;
  pb_reader_init(&r, buf, 0, n);
  while ((k = pb_next(&r, &f, err)) == 1) {
    if (f.num != 7) continue;
    if (f.wt != PB_LEN) return gt_fail(err, "ModelProto: graph is not length-delimited");
    if (found) return gt_fail(err, "ModelProto has two graph fields");
    *g = f;
    found = 1;
  }
  if (k != 0) return gt_wrap(err, "ModelProto");
  if (!found) return gt_fail(err, "the model has no graph");
  return GT_OK;
}

/* Every initializer and Constant tensor of graph g, in file order. */
int gt_onnx_walk_graph(const uint8_t *buf, const pb_rec *g, sites *ss,
                       gt_value *skipped, gt_err *err) {
  pb_reader r;
  pb_rec f;
  int k;
  size_t nodes = 0, inits = 0;
  pb_reader_init(&r, buf, g->pos, g->pos + g->len);
  while ((k = pb_next(&r, &f, err)) == 1) {
    if (f.num == 1) {
      if (f.wt != PB_LEN) return gt_fail(err, "GraphProto: node %zu is not length-delimited", nodes);
      if (walk_node(&r, &f, ss, skipped, err) != GT_OK)
        return gt_wrap(err, "node %zu at offset %zu", nodes, f.start);
      nodes++;
    } else if (f.num == 5) {
      site st;
      memset(&st, 0, sizeof st);
      if (f.wt != PB_LEN)
        return gt_fail(err, "GraphProto: initializer %zu is not length-delimited", inits);
      if (gt_onnx_tensor_name(&r, &f, &st, err) != GT_OK)
        return gt_wrap(err, "initializer %zu at offset %zu", inits, f.start);
      if (st.name_len == 0)
        return gt_fail(err, "initializer %zu at offset %zu has no name", inits, f.start);
      st.depth = 1;
      st.chain[0] = f;
      if (add_site(ss, &st, err) != GT_OK) return GT_ERR;
      inits++;
    }
  }
  return k == 0 ? GT_OK : gt_wrap(err, "GraphProto");
}

/* ------------------------------------------------------- TensorProtos */

void gt_onnx_otensor_free(otensor *t) {
  if (t->tp) protobuf_c_message_free_unpacked(&t->tp->base, NULL);
  t->tp = NULL;
}

/* Decodes the TensorProto buf[pos, end) and checks its type and dims.
 * t->ty is NULL (and nothing else checked) for types graft does not read. */
int gt_onnx_decode_tensor(const uint8_t *buf, size_t pos, size_t end, otensor *t,
                          gt_err *err) {
  static const uint32_t skip[] = {9};
  pb_reader r;
  pb_rec f;
  int k;
  memset(t, 0, sizeof *t);
  pb_reader_init(&r, buf, pos, end);
  while ((k = pb_next(&r, &f, err)) == 1) {
    if (f.num != 9) continue;
    if (f.wt != PB_LEN) return gt_fail(err, "raw_data is not length-delimited");
    t->raw = f;
    t->has_raw = 1;
  }
  if (k != 0) return GT_ERR;
  const uint8_t *p = buf + pos;
  size_t n = end - pos;
  uint8_t *copy = NULL;
  if (t->has_raw) {
    if (pb_filter(buf, pos, end, skip, 1, &copy, &n, err) != GT_OK) return GT_ERR;
    p = copy;
  }
  t->tp = (Onnx__TensorProto *)pb_unpack(&onnx__tensor_proto__descriptor, p, n,
                                         "TensorProto", err);
  free(copy);
  if (!t->tp) return GT_ERR;
  const Onnx__TensorProto *tp = t->tp;
  t->code = tp->has_data_type ? tp->data_type : 0;
  if (t->code == 0) return gt_fail(err, "the tensor has no data_type");
  if (t->code < 0 || (size_t)t->code >= N_OTYPES)
    return gt_fail(err, "unknown data type %d", t->code);
  if (otypes[t->code].dt < 0) return GT_OK;
  t->ty = &otypes[t->code];
  if (tp->segment) return gt_fail(err, "segmented tensors (field segment) are not supported");
  if (tp->n_dims > GT_MAXDIM)
    return gt_fail(err, "the tensor has %zu dims (at most %d)", tp->n_dims, GT_MAXDIM);
  for (size_t i = 0; i < tp->n_dims; i++) {
    if (tp->dims[i] < 0)
      return gt_fail(err, "dim %zu of the tensor is %lld", i, (long long)tp->dims[i]);
    t->shape[i] = tp->dims[i];
  }
  t->ndim = (int)tp->n_dims;
  int64_t numel;
  if (gt_numel(t->ndim, t->shape, &numel, err) != GT_OK) return GT_ERR;
  t->numel = (uint64_t)numel;
  if (t->ty->dt != GT_STRING && gt_onnx_raw_size(t->ty, t->numel, &t->nbytes) != GT_OK)
    return gt_fail(err, "a tensor of %llu %s elements is too large",
                   (unsigned long long)t->numel, t->ty->name);
  t->external = tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
  if (t->ty->dt == GT_STRING && (t->has_raw || t->external))
    return gt_fail(err, "a STRING tensor must hold its values in string_data");
  return GT_OK;
}

