/* proto.h: what the ONNX reader (read.c) and patch writer (write.c) share;
 * private to src/formats/onnx (the public entry points are in
 * formats/onnx.h). proto.c holds it: the TensorProto.DataType table, the
 * walk of a model's graph that finds every initializer and Constant tensor
 * (by offsets, no copies), and the decoding of one TensorProto without its
 * raw_data. Field numbers: proto.c and docs/formats/onnx.md. */
#ifndef GT_ONNX_PROTO_H
#define GT_ONNX_PROTO_H

#include <stdint.h>
#include <string.h>

#include "io/model.h"
#include "io/pbwire.h"
#include "onnx.pb-c.h"

#define NAME_SHOWN 200 /* bytes of a name quoted in errors */

static inline int shown(size_t n) { return (int)(n < NAME_SHOWN ? n : NAME_SHOWN); }

static inline gt_value *vstr(const char *s) {
  return gt_value_str(s ? s : "", s ? strlen(s) : 0);
}

static inline gt_value *vbytes(const uint8_t *p, size_t n) {
  return gt_value_str((const char *)p, n);
}

static inline int streq(const uint8_t *p, size_t n, const char *s) {
  return n == strlen(s) && memcmp(p, s, n) == 0;
}

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

/* The entry of data type `code`, or NULL for a code past the table. */
const otype *gt_onnx_type(int code);
/* Its name ("FLOAT", ...), "unknown" for a code past the table. */
const char *gt_onnx_type_name(int code);
/* The ONNX type whose graft dtype is dt exactly (for new initializers),
 * or 0. */
int gt_onnx_code_of(gt_dtype dt);
/* Bytes of raw data for numel elements of type ty; GT_ERR past SIZE_MAX. */
int gt_onnx_raw_size(const otype *ty, uint64_t numel, uint64_t *out);
/* Values the typed field holds for numel elements. */
uint64_t gt_onnx_typed_count(const otype *ty, uint64_t numel);
/* A decimal string of at most 19 digits (external data offsets, the
 * external_threshold option). */
int gt_onnx_parse_dec(const char *s, uint64_t *v);

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

/* Finds the graph record of the ModelProto buf[0, n); a second graph field
 * (protobuf would merge the two) is refused. */
int gt_onnx_find_graph(const uint8_t *buf, size_t n, pb_rec *g, gt_err *err);
/* Every initializer and Constant tensor of graph g, in file order, into
 * ss (ss->v is the caller's to free). Constants whose value is not a
 * tensor are noted in skipped (a LIST; NULL: not noted). */
int gt_onnx_walk_graph(const uint8_t *buf, const pb_rec *g, sites *ss,
                       gt_value *skipped, gt_err *err);
/* The name (field 8) of the TensorProto payload of rec into st. */
int gt_onnx_tensor_name(const pb_reader *gr, const pb_rec *rec, site *st,
                        gt_err *err);
/* Appends {name, why} to the LIST skipped (NULL: nothing to do). */
int gt_onnx_skip_note(gt_value *skipped, const uint8_t *name, size_t n,
                      const char *what);

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

/* Decodes the TensorProto buf[pos, end) and checks its type and dims.
 * t->ty is NULL (and nothing else checked) for types graft does not read.
 * t->tp is set even on failure once decoded: free t with
 * gt_onnx_otensor_free either way. */
int gt_onnx_decode_tensor(const uint8_t *buf, size_t pos, size_t end, otensor *t,
                          gt_err *err);
void gt_onnx_otensor_free(otensor *t);

#endif
