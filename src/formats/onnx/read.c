/* onnx.c: ONNX models and TensorProto files (onnx.h).
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
#include "formats/onnx.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "io/fileout.h"
#include "io/grow.h"
#include "io/pbpatch.h"
#include "io/pbwire.h"
#include "onnx.pb-c.h"
#include "tensor/copy.h"

#define NAME_SHOWN 200 /* bytes of a name quoted in errors */

/* ------------------------------------------------------------ data types */

/* How graft holds each TensorProto.DataType (by value). bits: 4 or 2 for
 * the sub-byte types, packed LSB first (first element in the low bits);
 * sign: those are sign-extended; field: the typed field that holds the
 * values when raw_data is absent; note: how graft holds a type it has no
 * dtype of its own for (NULL when the dtype is the type). */
typedef struct otype {
  const char *name;
  int dt;      /* a gt_dtype, or -1: not read */
  int bits, sign, field;
  const char *note;
} otype;

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

static const char *field_names[] = {
  [4] = "float_data", [5] = "int32_data", [6] = "string_data",
  [7] = "int64_data", [10] = "double_data", [11] = "uint64_data",
};

/* The ONNX type whose graft dtype is dt exactly (for new initializers),
 * or 0. */
static int otype_of(gt_dtype dt) {
  for (size_t i = 1; i < N_OTYPES; i++)
    if (otypes[i].dt == (int)dt && !otypes[i].note) return (int)i;
  return 0;
}

/* Bytes of raw data for numel elements of type ty. */
static int raw_size(const otype *ty, uint64_t numel, uint64_t *out) {
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
static uint64_t typed_count(const otype *ty, uint64_t numel) {
  if (ty->bits) return numel / (8 / (uint64_t)ty->bits) + (numel % (8 / (uint64_t)ty->bits) != 0);
  if (ty->dt == GT_C64 || ty->dt == GT_C128) return 2 * numel;
  return numel;
}

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

/* ------------------------------------------------------------ helpers */

static gt_value *vstr(const char *s) { return gt_value_str(s ? s : "", s ? strlen(s) : 0); }
static gt_value *vbytes(const uint8_t *p, size_t n) {
  return gt_value_str((const char *)p, n);
}

static int streq(const uint8_t *p, size_t n, const char *s) {
  return n == strlen(s) && memcmp(p, s, n) == 0;
}

static int shown(size_t n) { return (int)(n < NAME_SHOWN ? n : NAME_SHOWN); }

/* A decimal string of at most 19 digits (external data offsets). */
static int parse_dec(const char *s, uint64_t *v) {
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

/* A tensor of the graph: an initializer (depth 1: chain[0] is its record
 * in the graph) or a Constant node's value (depth 3: the node, its
 * attribute "value", the tensor t in that). */
typedef struct site {
  const uint8_t *name;
  size_t name_len;
  int depth;
  pb_rec chain[3];
} site;

typedef struct sites {
  site *v;
  size_t n, cap;
} sites;

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

static int skip_note(gt_value *skipped, const uint8_t *name, size_t n,
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
    return skip_note(skipped, st.name, st.name_len, why) == GT_OK
               ? GT_OK : gt_fail(err, "out of memory");
  }
  st.chain[0] = *rec;
  st.depth = 3;
  return add_site(ss, &st, err);
}

/* The name (field 8) of the TensorProto payload of rec. */
static int tensor_name(const pb_reader *gr, const pb_rec *rec, site *st,
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
static int find_graph(const uint8_t *buf, size_t n, pb_rec *g, gt_err *err) {
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
static int walk_graph(const uint8_t *buf, const pb_rec *g, sites *ss,
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
      if (tensor_name(&r, &f, &st, err) != GT_OK)
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

/* One TensorProto as read: the message without raw_data, where raw_data
 * is, and what the dims and data_type say. */
typedef struct otensor {
  Onnx__TensorProto *tp;
  int has_raw;
  pb_rec raw;
  int code;             /* data_type */
  const otype *ty;      /* NULL: a type graft does not read */
  int ndim;
  int64_t shape[GT_MAXDIM];
  uint64_t numel, nbytes;  /* nbytes: raw or external bytes */
  int external;
} otensor;

static void otensor_free(otensor *t) {
  if (t->tp) protobuf_c_message_free_unpacked(&t->tp->base, NULL);
  t->tp = NULL;
}

static int is_value_field(uint32_t num) {
  return (num >= 4 && num <= 7) || (num >= 9 && num <= 11) || num == 13 || num == 14;
}

/* Decodes the TensorProto buf[pos, end) and checks its type and dims.
 * t->ty is NULL (and nothing else checked) for types graft does not read. */
static int read_tensor(const uint8_t *buf, size_t pos, size_t end, otensor *t,
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
  if (t->ty->dt != GT_STRING && raw_size(t->ty, t->numel, &t->nbytes) != GT_OK)
    return gt_fail(err, "a tensor of %llu %s elements is too large",
                   (unsigned long long)t->numel, t->ty->name);
  t->external = tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
  if (t->ty->dt == GT_STRING && (t->has_raw || t->external))
    return gt_fail(err, "a STRING tensor must hold its values in string_data");
  return GT_OK;
}

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
  if ((off_s && parse_dec(off_s, &off) != GT_OK) || (len_s && parse_dec(len_s, &len) != GT_OK)) {
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
    uint64_t want = typed_count(t->ty, t->numel), have = field_count(t->tp, field);
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

static const char *type_name(int code) {
  return code >= 0 && (size_t)code < N_OTYPES ? otypes[code].name : "unknown";
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
    ok = gt_value_setk(v, "dtype", vstr(type_name(ty->tensor_type->elem_type))) == GT_OK;
    if (ok && ty->tensor_type->shape)
      ok = gt_value_setk(v, "shape", shape_value(ty->tensor_type->shape)) == GT_OK;
  } else if (ok && ty && ty->value_case == ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE &&
             ty->sparse_tensor_type) {
    ok = gt_value_setk(v, "kind", vstr("sparse_tensor")) == GT_OK &&
         gt_value_setk(v, "dtype", vstr(type_name(ty->sparse_tensor_type->elem_type))) == GT_OK;
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
        if (s.num == 1 && s.wt == PB_LEN && tensor_name(&sr, &s, &st, err) != GT_OK) return GT_ERR;
      if (ks != 0) return gt_wrap(err, "sparse_initializer at offset %zu", f.start);
      if (skip_note(skipped, st.name ? st.name : (const uint8_t *)"", st.name_len,
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
  int rc = read_tensor(rd->file->data, tr->pos, tr->end, &t, err);
  if (rc == GT_OK && !t.ty) {
    char why[80];
    snprintf(why, sizeof why, "data type %s has no graft dtype", type_name(t.code));
    rc = skip_note(skipped, st->name, st->name_len, why) == GT_OK ? GT_OK
                                                                   : gt_fail(err, "out of memory");
    otensor_free(&t);
    free(name);
    return rc;
  }
  if (rc == GT_OK) rc = make_tensor(rd, name, &t, &out, err);
  otensor_free(&t);
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
  if (rc == GT_OK) rc = find_graph(buf, rd->file->size, &g, err);
  if (rc == GT_OK) rc = graph_meta(buf, &g, meta, skipped, err);
  if (rc == GT_OK) rc = walk_graph(buf, &g, &ss, skipped, err);
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
  int rc = meta ? read_tensor(file->data, 0, file->size, &t, err) : gt_fail(err, "out of memory");
  m->format = "onnx_tensor";
  if (rc != GT_OK) {
    if (meta) otensor_free(&t);
    return finish(&rd, m, meta, rc, err);
  }
  /* protobuf-c ends the name at a NUL byte: refuse one instead */
  pb_reader pr;
  pb_rec whole = {0};
  site st;
  memset(&st, 0, sizeof st);
  whole.len = file->size;
  pb_reader_init(&pr, file->data, 0, file->size);
  if (tensor_name(&pr, &whole, &st, err) != GT_OK || memchr(st.name ? st.name : (const uint8_t *)"", '\0', st.name_len)) {
    otensor_free(&t);
    if (st.name) gt_fail(err, "the tensor's name contains a NUL byte");
    return finish(&rd, m, meta, GT_ERR, err);
  }
  const char *name = t.tp->name && *t.tp->name ? t.tp->name : "tensor";
  char *nm = strdup(name);
  if (!nm) rc = gt_fail(err, "out of memory");
  if (rc == GT_OK && gt_value_setk(meta, "data_type", vstr(type_name(t.code))) != GT_OK)
    rc = gt_fail(err, "out of memory");
  if (rc == GT_OK && !t.ty)
    rc = gt_fail(err, "tensor \"%s\": data type %s has no graft dtype", nm, type_name(t.code));
  if (rc == GT_OK && t.ty->note) {
    char buf[200];
    snprintf(buf, sizeof buf, "%s read as %s", t.ty->name, t.ty->note);
    gt_value *notes = gt_value_new(GT_V_LIST);
    if (gt_value_push(notes, vstr(buf)) != GT_OK || gt_value_setk(meta, "notes", notes) != GT_OK)
      rc = gt_fail(err, "out of memory");
  }
  if (rc == GT_OK && make_tensor(&rd, nm, &t, &out, err) != GT_OK)
    rc = gt_wrap(err, "tensor \"%s\"", nm);
  otensor_free(&t);
  if (rc == GT_OK) rc = gt_model_add(m, nm, strlen(nm), &out, err);
  free(nm);
  return finish(&rd, m, meta, rc, err);
}

/* ------------------------------------------------------------ writing */

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
  raw_size(ty, n, &nb);
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
  size_t cnt = (size_t)typed_count(ty, n);
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
  else raw_size(ty, n, &len);
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
  int rc = read_tensor(base->data, tr->pos, tr->end, &o, err);
  if (rc == GT_OK && !o.ty) {
    rc = gt_fail(err, "its data type %s cannot be written", type_name(o.code));
  } else if (rc == GT_OK && (int)t->dtype != o.ty->dt) {
    rc = gt_fail(err, "the model holds %s (read as %s), the tensor is %s (cast it first)",
                 o.ty->name, gt_dtype_name((gt_dtype)o.ty->dt), gt_dtype_name(t->dtype));
  } else if (rc == GT_OK) {
    rc = pbp_check_shape(t, o.ndim, o.shape, "model", err);
  }
  int typed = rc == GT_OK && !o.has_raw && !o.external ? o.ty->field : 0;
  p->code = o.code;
  const otype *ty = o.ty;
  otensor_free(&o);
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
  int code = otype_of(t->dtype);
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
  if (value_segs(p, &otypes[code], 0, w, err) != GT_OK) return GT_ERR;
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

static int write_all(const char *path, const gt_storage *base, const pb_rec *g,
                     patch *ps, size_t n, const wopts *w, const props *pr,
                     const gt_save *s, gt_err *err) {
  if (w->ext_name && write_ext(w, ps, n, err) != GT_OK) return GT_ERR;
  gt_entry *streamed = calloc(n ? n : 1, sizeof *streamed);
  if (!streamed) return gt_fail(err, "out of memory");
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    for (size_t j = pbp_tensors(&ps[i].pp); j > 0; j--) streamed[k++] = *ps[i].e;
  gt_save prog = {streamed, k, s->progress, s->progress_ctx, NULL, 0};
  gt_out o;
  int rc = gt_out_open(&o, path, &prog, err);
  free(streamed);
  if (rc != GT_OK) return GT_ERR;
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
  if (thr && parse_dec(thr, &w->threshold) != GT_OK)
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
  if (rc == GT_OK && find_graph(base->data, base->size, &g, err) != GT_OK) rc = GT_ERR;
  if (rc == GT_OK && walk_graph(base->data, &g, &ss, NULL, err) != GT_OK) rc = GT_ERR;
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
