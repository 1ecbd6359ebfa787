/* onnx.h: ONNX models (.onnx, a ModelProto) and lone TensorProto files
 * (docs/formats/onnx.md). The code is in src/formats/onnx/: read.c (the
 * readers), write.c (the patch writer), proto.c (what both share: data
 * types, the graph walk, TensorProto decoding; private header proto.h).
 *
 * Reading. The tensors of a model are its main graph's initializers, in
 * file order, and the `value` tensors of its Constant nodes, named by the
 * node's first output. A TensorProto's elements come from, in this order
 * of precedence: external data (data_location EXTERNAL), raw_data, or the
 * typed field of its data_type; the byte or value count must match the
 * dims exactly. raw_data and external data are views of the mapped files
 * (copied to aligned memory on first use when misaligned); typed values
 * are expanded on first use. Types graft has no dtype for are widened
 * without loss and reported in meta.notes: INT4/INT2 to int8 and
 * UINT4/UINT2/FLOAT4E2M1 to uint8 (one value per byte, sign-extended for
 * the signed ones), FLOAT8E4M3FNUZ, FLOAT8E5M2FNUZ and FLOAT8E8M0 as their
 * uint8 bit patterns. FLOAT6 types and sparse initializers are listed in
 * meta.skipped. External data files are resolved relative to the model's
 * folder and refused when the path leaves it (absolute, "..", a symlink
 * pointing out).
 *
 * Writing (gt_onnx_write) patches a base model: the initializers (or
 * Constant values) named by the entries get the entries' values, tensors
 * the model lacks are appended as new initializers, and every other byte of
 * the base is copied verbatim; only the changed TensorProtos' value fields
 * and the lengths of the records enclosing them are rewritten. */
#ifndef GT_ONNX_H
#define GT_ONNX_H

#include "io/model.h"

/* A ModelProto: tensors as above; meta {format = "onnx", ir_version,
 * producer_name, producer_version, domain, model_version, opset_import,
 * graph_name, inputs, outputs, data_types, constants, external, notes,
 * skipped, metadata_props}. */
int gt_onnx_read(gt_storage *file, const char *path, gt_model *m, gt_err *err);
/* A file holding one TensorProto (ONNX's test_data_set_*.pb): one tensor,
 * named by its name field or "tensor"; meta {format = "onnx_tensor",
 * data_type}. */
int gt_onnx_tensor_read(gt_storage *file, const char *path, gt_model *m,
                        gt_err *err);

/* Writes the model opts["base"] to `path` patched with s's entries
 * (see above). Each replaced tensor must have the dtype graft reads the
 * original as and the original's shape; its encoding follows the original
 * (raw_data stays raw_data, a typed field stays that field; external data
 * becomes raw_data). opts is a MAP of string keys to string values:
 *   base                the model to patch (required);
 *   external_data       a file name: tensors of at least
 *                       external_threshold bytes (default 1024) go to that
 *                       file beside `path`, 4096-aligned;
 *   external_threshold  decimal byte count.
 * s->provenance (JSON text, an object of strings), when set, becomes
 * ModelProto metadata_props entries appended to the model; the base's
 * entries with those keys or keys starting "graft." are left out.
 * Refuses to write over the base or over a file a tensor is read from. */
int gt_onnx_write(const char *path, const gt_save *s, const gt_value *opts,
                  gt_err *err);

#endif
