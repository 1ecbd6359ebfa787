/* tfv1.h: TensorFlow V1 checkpoints (TensorSliceWriter, docs/formats/tf.md#v1-checkpoints).
 *
 * One table file per shard (tftable.h): key "" -> SavedTensorSlices{meta}
 * listing every tensor (name, shape, type, slices); every other key is an
 * OrderedCode slice key -> SavedTensorSlices{data = SavedSlice{name, slice,
 * data = TensorProto}} holding the values in the TensorProto's typed fields
 * or tensor_content. The values live inside protobuf messages, so they are
 * decoded when the file is opened (V1 files are small, TF 0.x era) into
 * heap tensors; slices of a tensor are placed into one tensor.
 *
 * m->meta = {version = "v1", producer, min_consumer,
 *   index_snappy_blocks}. */
#ifndef GT_TFV1_H
#define GT_TFV1_H

#include "io/model.h"

int gt_tfv1_read(gt_storage *file, gt_model *m, gt_err *err);

#endif
