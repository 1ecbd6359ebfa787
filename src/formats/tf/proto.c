/* tfproto.c: TF dtype/shape/TensorProto/slice-key helpers (tfproto.h). */
#include "formats/tf/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
  int tf;
  gt_dtype dt;
} DT_MAP[] = {
  {1, GT_F32}, {2, GT_F64}, {3, GT_I32}, {4, GT_U8}, {5, GT_I16},
  {6, GT_I8}, {7, GT_STRING}, {8, GT_C64}, {9, GT_I64}, {10, GT_BOOL},
  {14, GT_BF16}, {17, GT_U16}, {18, GT_C128}, {19, GT_F16}, {22, GT_U32},
  {23, GT_U64}, {24, GT_F8E5M2}, {25, GT_F8E4M3FN},
  /* quantized types last: gt_tf_from_dtype takes the first match */
  {11, GT_I8}, {12, GT_U8}, {13, GT_I32}, {15, GT_I16}, {16, GT_U16},
};

int gt_tf_to_dtype(int tf, gt_dtype *out) {
  for (size_t i = 0; i < sizeof DT_MAP / sizeof *DT_MAP; i++)
    if (DT_MAP[i].tf == tf) {
      *out = DT_MAP[i].dt;
      return 0;
    }
  return -1;
}

int gt_tf_from_dtype(gt_dtype dt) {
  /* The first pair listed for a graft dtype is the plain TF type. */
  for (size_t i = 0; i < sizeof DT_MAP / sizeof *DT_MAP; i++)
    if (DT_MAP[i].dt == dt) return DT_MAP[i].tf;
  return 0;
}

const char *gt_tf_dtype_name(int tf, char *buf) {
  const ProtobufCEnumValue *v =
      protobuf_c_enum_descriptor_get_value(&tensorflow__data_type__descriptor, tf);
  if (v) return v->name;
  snprintf(buf, 24, "DT_<%d>", tf);
  return buf;
}

int gt_tf_shape(const Tensorflow__TensorShapeProto *p, int *ndim,
                int64_t *shape, gt_err *err) {
  *ndim = 0;
  if (!p) return GT_OK;
  if (p->unknown_rank) return gt_fail(err, "shape has unknown rank");
  if (p->n_dim > GT_MAXDIM)
    return gt_fail(err, "shape has %zu dimensions (at most %d)", p->n_dim,
                   GT_MAXDIM);
  for (size_t i = 0; i < p->n_dim; i++) {
    if (p->dim[i]->size < 0)
      return gt_fail(err, "shape dimension %zu is unknown (%lld)", i,
                     (long long)p->dim[i]->size);
    shape[i] = p->dim[i]->size;
  }
  *ndim = (int)p->n_dim;
  int64_t numel;
  return gt_numel(*ndim, shape, &numel, err);
}

gt_value *gt_tf_shape_value(int ndim, const int64_t *shape) {
  gt_value *l = gt_value_new(GT_V_LIST);
  for (int i = 0; l && i < ndim; i++)
    if (gt_value_push(l, gt_value_int(shape[i])) != GT_OK) {
      gt_value_free(l);
      return NULL;
    }
  return l;
}

/* ------------------------------------------------------ TensorProto */

size_t gt_tf_typed_count(const Tensorflow__TensorProto *p, int tf) {
  switch (tf) {
  case 1: return p->n_float_val;
  case 2: return p->n_double_val;
  case 3: case 4: case 5: case 6: case 11: case 12: case 13: case 15:
  case 16: case 17: return p->n_int_val;
  case 9: return p->n_int64_val;
  case 10: return p->n_bool_val;
  case 14: case 19: return p->n_half_val;
  case 8: return p->n_scomplex_val / 2;
  case 18: return p->n_dcomplex_val / 2;
  case 22: return p->n_uint32_val;
  case 23: return p->n_uint64_val;
  case 24: case 25: return p->float8_val.len;
  case 7: return p->n_string_val;
  }
  return 0;
}

static void put_le(unsigned char *o, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; i++) o[i] = (unsigned char)(v >> (8 * i));
}

void gt_tf_typed_elem(const Tensorflow__TensorProto *p, int tf, size_t i,
                      unsigned char *o, size_t es) {
  uint32_t u32;
  uint64_t u64;
  switch (tf) {
  case 1: memcpy(o, &p->float_val[i], 4); break;
  case 2: memcpy(o, &p->double_val[i], 8); break;
  case 3: case 4: case 5: case 6: case 11: case 12: case 13: case 15:
  case 16: case 17:
    put_le(o, (uint64_t)(uint32_t)p->int_val[i], es);
    break;
  case 9: put_le(o, (uint64_t)p->int64_val[i], 8); break;
  case 10: o[0] = p->bool_val[i] ? 1 : 0; break;
  case 14: case 19: put_le(o, (uint64_t)(uint32_t)p->half_val[i], 2); break;
  case 8:
    memcpy(&u32, &p->scomplex_val[2 * i], 4);
    put_le(o, u32, 4);
    memcpy(&u32, &p->scomplex_val[2 * i + 1], 4);
    put_le(o + 4, u32, 4);
    break;
  case 18:
    memcpy(&u64, &p->dcomplex_val[2 * i], 8);
    put_le(o, u64, 8);
    memcpy(&u64, &p->dcomplex_val[2 * i + 1], 8);
    put_le(o + 8, u64, 8);
    break;
  case 22: put_le(o, p->uint32_val[i], 4); break;
  case 23: put_le(o, p->uint64_val[i], 8); break;
  case 24: case 25: o[0] = p->float8_val.data[i]; break;
  }
}

static int strings_from_proto(const Tensorflow__TensorProto *p, int ndim,
                              const int64_t *shape, uint64_t numel,
                              gt_tensor *out, gt_err *err) {
  if (p->tensor_content.len > 0)
    return gt_fail(err, "string tensor has tensor_content");
  uint64_t total = 0;
  for (size_t i = 0; i < p->n_string_val; i++) total += p->string_val[i].len;
  uint64_t heads;
  if (gt_mul_u64(numel, sizeof(gt_str), (unsigned long long *)&heads) ||
      heads + total < heads || heads + total > SIZE_MAX)
    return gt_fail(err, "string tensor too large");
  gt_storage *s = gt_storage_new((size_t)(heads + total), 1, err);
  if (!s) return GT_ERR;
  unsigned char *bytes = s->data + heads;
  for (uint64_t i = 0; i < numel && p->n_string_val > 0; i++) {
    size_t k = i < p->n_string_val ? (size_t)i : p->n_string_val - 1;
    gt_str e = {(const char *)bytes, p->string_val[k].len};
    if (i < p->n_string_val) {
      if (e.n) memcpy(bytes, p->string_val[k].data, e.n);
      bytes += e.n;
    } else {
      /* Repeats point at the last stored value. */
      memcpy(&e, s->data + (p->n_string_val - 1) * sizeof(gt_str), sizeof e);
    }
    memcpy(s->data + i * sizeof(gt_str), &e, sizeof e);
  }
  for (uint64_t i = 0; i < numel && p->n_string_val == 0; i++) {
    gt_str e = {(const char *)bytes, 0};
    memcpy(s->data + i * sizeof(gt_str), &e, sizeof e);
  }
  int rc = gt_tensor_make(out, s, GT_STRING, ndim, shape, 0, err);
  gt_storage_release(s);
  return rc;
}

int gt_tf_tensor_from_proto(const Tensorflow__TensorProto *p, int dtype_override,
                            int ndim_override, const int64_t *shape_override,
                            gt_tensor *out, gt_err *err) {
  int tf = dtype_override > 0 ? dtype_override : (int)p->dtype;
  gt_dtype dt;
  char nb[24];
  if (gt_tf_to_dtype(tf, &dt) != 0)
    return gt_fail(err, "unsupported dtype %s", gt_tf_dtype_name(tf, nb));
  int ndim;
  int64_t shape[GT_MAXDIM], numel;
  if (shape_override) {
    ndim = ndim_override;
    memcpy(shape, shape_override, (size_t)ndim * sizeof *shape);
  } else if (gt_tf_shape(p->tensor_shape, &ndim, shape, err) != GT_OK) {
    return GT_ERR;
  }
  if (gt_numel(ndim, shape, &numel, err) != GT_OK) return GT_ERR;
  if (dt == GT_STRING)
    return strings_from_proto(p, ndim, shape, (uint64_t)numel, out, err);
  size_t es = gt_dtype_size(dt);
  unsigned long long nbytes;
  if (gt_mul_u64((unsigned long long)numel, es, &nbytes) || nbytes > SIZE_MAX)
    return gt_fail(err, "tensor too large");
  if (p->tensor_content.len > 0 && p->tensor_content.len != nbytes)
    return gt_fail(err, "tensor_content has %zu bytes, %s of shape needs %llu",
                   p->tensor_content.len, gt_dtype_name(dt), nbytes);
  if (gt_tensor_alloc(out, dt, ndim, shape, 1, err) != GT_OK) return GT_ERR;
  unsigned char *d = out->storage->data;
  if (p->tensor_content.len > 0) {
    memcpy(d, p->tensor_content.data, (size_t)nbytes);
    return GT_OK;
  }
  size_t n = gt_tf_typed_count(p, tf);
  for (uint64_t i = 0; n > 0 && i < (uint64_t)numel; i++)
    gt_tf_typed_elem(p, tf, i < n ? (size_t)i : n - 1, d + i * es, es);
  return GT_OK;
}

/* ------------------------------------------------------ slice keys */

static int num_increasing(gt_tfbuf *b, uint64_t v, gt_err *err) {
  unsigned char o[9];
  int len = 0;
  for (uint64_t x = v; x; x >>= 8) len++;
  o[0] = (unsigned char)len;
  for (int i = 0; i < len; i++)
    o[1 + i] = (unsigned char)(v >> (8 * (len - 1 - i)));
  return gt_tfbuf_put(b, o, (size_t)len + 1, err);
}

/* OrderedCode WriteSignedNumIncreasing: length L from the magnitude's bit
 * count (L bytes hold 7L-1 bits), big-endian two's complement, header bits
 * XORed into the first one or two bytes. */
static int signed_increasing(gt_tfbuf *b, int64_t v, gt_err *err) {
  uint64_t x = v < 0 ? ~(uint64_t)v : (uint64_t)v;
  if (x < 64) {
    unsigned char c = (unsigned char)(0x80 ^ ((uint64_t)v & 0xFF));
    return gt_tfbuf_put(b, &c, 1, err);
  }
  int bits = 64 - __builtin_clzll(x);
  int len = bits / 7 + 1;
  unsigned char buf[10];
  unsigned char sign = v < 0 ? 0xFF : 0x00;
  buf[0] = buf[1] = sign;
  for (int i = 0; i < 8; i++)
    buf[2 + i] = (unsigned char)((uint64_t)v >> (8 * (7 - i)));
  static const unsigned char hdr[11][2] = {
    {0, 0}, {0x80, 0}, {0xC0, 0}, {0xE0, 0}, {0xF0, 0}, {0xF8, 0},
    {0xFC, 0}, {0xFE, 0}, {0xFF, 0}, {0xFF, 0x80}, {0xFF, 0xC0}};
  unsigned char *o = buf + 10 - len;
  o[0] ^= hdr[len][0];
  if (len > 8) o[1] ^= hdr[len][1];
  return gt_tfbuf_put(b, o, (size_t)len, err);
}

int gt_tf_slice_key(const char *name, size_t len,
                    const Tensorflow__TensorSliceProto *slice, int rank,
                    gt_tfbuf *out, gt_err *err) {
  static const unsigned char esc0[2] = {0x00, 0xFF}, escF[2] = {0xFF, 0x00},
                             term[2] = {0x00, 0x01};
  if (num_increasing(out, 0, err) != GT_OK) return GT_ERR;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    int rc = c == 0x00   ? gt_tfbuf_put(out, esc0, 2, err)
             : c == 0xFF ? gt_tfbuf_put(out, escF, 2, err)
                         : gt_tfbuf_put(out, &c, 1, err);
    if (rc != GT_OK) return GT_ERR;
  }
  if (gt_tfbuf_put(out, term, 2, err) != GT_OK ||
      num_increasing(out, (uint64_t)rank, err) != GT_OK)
    return GT_ERR;
  for (int d = 0; d < rank; d++) {
    int64_t start = 0, length = -1;
    if (slice && (size_t)d < slice->n_extent) {
      const Tensorflow__TensorSliceProto__Extent *e = slice->extent[d];
      start = e->start;
      if (e->has_length_case == TENSORFLOW__TENSOR_SLICE_PROTO__EXTENT__HAS_LENGTH_LENGTH)
        length = e->length;
    }
    if (signed_increasing(out, start, err) != GT_OK ||
        signed_increasing(out, length, err) != GT_OK)
      return GT_ERR;
  }
  return GT_OK;
}

int gt_tf_slice_bounds(const Tensorflow__TensorSliceProto *slice, int ndim,
                       const int64_t *shape, int64_t *start, int64_t *len,
                       gt_err *err) {
  if ((int)slice->n_extent != ndim)
    return gt_fail(err, "slice has %zu extents for a tensor of rank %d",
                   slice->n_extent, ndim);
  for (int d = 0; d < ndim; d++) {
    const Tensorflow__TensorSliceProto__Extent *e = slice->extent[d];
    int has = e->has_length_case ==
              TENSORFLOW__TENSOR_SLICE_PROTO__EXTENT__HAS_LENGTH_LENGTH;
    start[d] = has ? e->start : 0;
    len[d] = has ? e->length : shape[d];
    if (start[d] < 0 || len[d] < 0 || start[d] > shape[d] ||
        len[d] > shape[d] - start[d])
      return gt_fail(err, "slice extent %d (start %lld, length %lld) is "
                          "outside dimension %lld", d, (long long)e->start,
                     (long long)len[d], (long long)shape[d]);
  }
  return GT_OK;
}
