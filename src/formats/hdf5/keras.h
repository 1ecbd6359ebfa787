/* keras.h: the Keras 3 `.keras` zip archive.
 *
 * A `.keras` file (model.save in Keras 3) is a zip holding metadata.json,
 * config.json and model.weights.h5 (docs/formats/keras.md#keras-archive). The weights member is
 * opened as an HDF5 file image straight from the archive's bytes: a stored
 * member is a window of the mapped zip (no copy, no temporary file), a
 * deflated one is inflated into memory first. Naming the tensors by layer
 * and variable is policy and lives in lua/graft/formats/keras.lua. */
#ifndef GT_KERAS_H
#define GT_KERAS_H

#include "io/model.h"

/* Whether the zip in p[0, len) has a model.weights.h5 or config.json
 * member (a .keras archive rather than an .npz). */
int gt_keras_zip_sniff(const unsigned char *p, uint64_t len);

/* Read the archive `file`: the tensors and metadata of model.weights.h5
 * (see hdf5.h) plus meta keys config_json and metadata_json (the members'
 * text, when present). m->format is "keras_zip". */
int gt_keras_zip_read(gt_storage *file, gt_model *m, gt_err *err);

#endif
