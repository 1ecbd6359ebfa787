/* tfgraph.h: TensorFlow GraphDef (.pb), MetaGraphDef (.meta) and
 * SavedModel (saved_model.pb) files (docs/formats/tfgraph.md).
 *
 * Reading. Every `Const` node of a graph becomes a tensor named after the
 * node. Its TensorProto (attr "value") is decoded as Tensor::FromProto does:
 * a non-empty tensor_content holds the raw little-endian elements and must
 * be exactly numel x element size bytes; otherwise the typed field of the
 * dtype gives the values, fewer values than elements repeating the last one
 * and none meaning zeros; half and bfloat16 come as 16-bit patterns in
 * half_val; DT_STRING Consts are string tensors (string_val, or the varint
 * length list TF writes into tensor_content). Quantized types are read as
 * their integer storage (qint8 -> int8, quint8 -> uint8, qint16, quint16,
 * qint32). Consts of other types (resource, variant, int4, ...) are listed in
 * meta.skipped instead.
 *
 * No data is copied on open: tensor_content is a region of the mapped file
 * (protobuf-c would copy it, so its offset is found with pbwire's walker
 * and only the TensorProto's other fields go through protobuf-c); a region
 * misaligned for its element type is copied to aligned memory on first use,
 * as the kernels need. Typed-field values are expanded on first use by a
 * lazy storage that owns the decoded TensorProto.
 *
 * Variables (VariableV2, Variable, VarHandleOp nodes; SavedVariable objects
 * of a TF2 object graph, with their checkpoint keys) and signatures go to
 * meta; the values of variables live in checkpoints (tfbundle). */
#ifndef GT_TFGRAPH_H
#define GT_TFGRAPH_H

#include "io/model.h"

/* A frozen GraphDef: Consts as tensors; meta {format = "graphdef",
 * node_count, producer, variables, skipped}. */
int gt_tfgraph_read(gt_storage *file, gt_model *m, gt_err *err);
/* A MetaGraphDef (.meta): the graph's Consts as tensors; meta
 * {format = "metagraph", tags, tensorflow_version, variables, signatures,
 * saver, ...}. */
int gt_tfmeta_read(gt_storage *file, gt_model *m, gt_err *err);
/* saved_model.pb alone: no tensors; meta as for .meta of the meta graph
 * tagged "serve" (else the first), plus meta_graphs = list of tag lists and
 * format = "savedmodel". */
int gt_savedmodel_read(gt_storage *file, gt_model *m, gt_err *err);

/* Writes the GraphDef `base` (mapped) to `path` with the Const nodes named
 * by s's entries given those tensors' values, every other byte of base
 * copied verbatim: only each patched node's TensorProto value fields are
 * re-encoded and the lengths of the records enclosing it rewritten. A
 * patched tensor must have the Const's dtype and shape. The encoding
 * follows the original: tensor_content stays tensor_content (streamed from
 * the tensor), a typed field stays that field with the fewest values that
 * the repeat-last rule expands to the tensor (the original count when the
 * values are unchanged, so patching with the same values reproduces base).
 * Refuses to write over base or over a file a tensor is read from. */
int gt_tfgraph_patch(const char *path, gt_storage *base, const gt_save *s,
                     gt_err *err);

#endif
