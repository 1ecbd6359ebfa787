/* varkeys.h: checkpoint keys of a MetaGraphDef's graph variables. */
#ifndef GT_TF_VARKEYS_H
#define GT_TF_VARKEYS_H

#include "io/value.h"
#include "meta_graph.pb-c.h"

/* Sets the "key" of each graph variable listed in meta "variables" (the
 * entries with an "op") that is a part of a partitioned variable to the
 * full variable's name: TF saves the parts (part/emb/part_0, ...) as slices
 * of one entry named after the whole (docs/formats/tf.md#partitioned-variables, docs/formats/tf.md#tf1-saver-checkpoints), and only the
 * MetaGraphDef's variable collections record that name
 * (VariableDef.save_slice_info_def.full_name). A collection item that does
 * not decode as a VariableDef is passed over: it names no key. GT_ERR only
 * when out of memory. */
int gt_tf_variable_keys(const Tensorflow__MetaGraphDef *mg, gt_value *meta);

#endif
