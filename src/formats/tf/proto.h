/* tfproto.h: TensorFlow protobuf pieces shared by the TF readers and
 * writers (bundles, V1 checkpoints, GraphDef/SavedModel): dtype and shape
 * conversion, TensorProto decoding, and the OrderedCode keys of tensor
 * slices (docs/formats/tf.md#partitioned-variables, docs/formats/tf.md#datatype-enum, docs/formats/tfgraph.md#tensorproto). The messages are protobuf-c's
 * (proto/NAME.pb-c.h). */
#ifndef GT_TFPROTO_H
#define GT_TFPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/tensor.h"
#include "tensor.pb-c.h"
#include "tensor_shape.pb-c.h"
#include "tensor_slice.pb-c.h"
#include "formats/tf/table.h"
#include "io/value.h"

/* TF DataType -> graft dtype. Quantized types map to their storage integer
 * type (qint8 -> int8, quint8 -> uint8, qint16 -> int16, quint16 -> uint16,
 * qint32 -> int32). Returns -1 for types graft cannot hold (resource,
 * variant, int4/uint4/int2/uint2/float4, float8 *fnuz, _REF types). */
int gt_tf_to_dtype(int tf, gt_dtype *out);
/* graft dtype -> TF DataType (never 0 for a graft dtype). */
int gt_tf_from_dtype(gt_dtype dt);
/* "DT_FLOAT", ... ("DT_<n>" in buf for numbers not in the enum; buf must
 * hold 24 bytes). */
const char *gt_tf_dtype_name(int tf, char *buf);

/* Shape from a TensorShapeProto (NULL = scalar). Fails on unknown rank,
 * negative (unknown) sizes, more than GT_MAXDIM dims or an element count
 * that overflows. */
int gt_tf_shape(const Tensorflow__TensorShapeProto *p, int *ndim,
                int64_t *shape, gt_err *err);

/* How many values the typed field of TF dtype tf holds in p (complex
 * types: pairs), and value i of it written at o as es little-endian bytes
 * of the graft dtype (int_val narrowed to 8/16-bit types and half_val to
 * its 16-bit pattern, as TensorFlow does). Strings (DT_STRING) are counted
 * but not written: their bytes live in p. */
size_t gt_tf_typed_count(const Tensorflow__TensorProto *p, int tf);
void gt_tf_typed_elem(const Tensorflow__TensorProto *p, int tf, size_t i,
                      unsigned char *o, size_t es);

/* A new heap tensor (string tensors included) with the values of p, by
 * TensorFlow's Tensor::FromProto rule: tensor_content when non-empty (its
 * size must be numel x element size), else the typed field of the dtype
 * with the last value repeated to fill, zeros when it is empty. dtype and
 * shape come from p unless dtype_override > 0 / shape_override != NULL (V1
 * checkpoints store them beside the proto). */
int gt_tf_tensor_from_proto(const Tensorflow__TensorProto *p, int dtype_override,
                            int ndim_override, const int64_t *shape_override,
                            gt_tensor *out, gt_err *err);

/* Append TensorFlow's EncodeTensorNameSlice(name, slice) to out: byte 00,
 * the name (00 -> 00 FF, FF -> FF 00, then 00 01), the rank, then start and
 * length of each dimension (a full dimension is 0, -1) as OrderedCode
 * numbers. */
int gt_tf_slice_key(const char *name, size_t len,
                    const Tensorflow__TensorSliceProto *slice, int rank,
                    gt_tfbuf *out, gt_err *err);
/* Start and length of each dimension of `slice` against `shape`; checks
 * rank and bounds. */
int gt_tf_slice_bounds(const Tensorflow__TensorSliceProto *slice, int ndim,
                       const int64_t *shape, int64_t *start, int64_t *len,
                       gt_err *err);

/* Shape as a Lua-friendly LIST value of ints. */
gt_value *gt_tf_shape_value(int ndim, const int64_t *shape);

#endif
