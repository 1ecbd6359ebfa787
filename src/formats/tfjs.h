/* tfjs.h: TensorFlow.js model.json weight manifests and their .bin shards
 * (docs/formats/tfjs.md).
 *
 * Reading parses the manifest, maps the shard files named in it (bare file
 * names in the folder of model.json) and checks every size against them;
 * no weight data is read. Weights are views on the shard mappings
 * (zero-copy when they lie in one shard and are aligned), lazy gathers
 * where they span shards, lazy casts for float16 quantisation and lazy
 * dequantising storages for uint8/uint16 quantisation. */
#ifndef GT_TFJS_H
#define GT_TFJS_H

#include "io/model.h"

/* Reads the model.json mapped as `file`, found at `path` (its folder holds
 * the shards). m gets the non-string weights in manifest order, and
 * m->meta a MAP {shards = LIST of file names (groups in order), groups =
 * MAP name -> 1-based group index, strings = MAP name -> LIST of byte
 * strings (string weights, whose lengths are in the data: read at open)}.
 * Errors name the weight or the group. On failure m is freed. */
int gt_tfjs_read(gt_storage *file, const char *path, gt_model *m, gt_err *err);

#endif
