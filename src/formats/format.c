/* format.c: the registry rows (see format.h). Each row adapts one family's
 * reader and writer to the common signatures; the family's own header
 * documents what its functions take. */
#include <string.h>

#include "formats/format.h"
#include "formats/gguf.h"
#include "formats/hdf5/hdf5.h"
#include "formats/hdf5/keras.h"
#include "formats/npy.h"
#include "formats/npz.h"
#include "formats/onnx.h"
#include "formats/safetensors.h"
#include "formats/t7.h"
#include "formats/tfjs.h"
#include "formats/tf/bundle.h"
#include "formats/tf/graph.h"
#include "formats/tf/v1.h"
#include "formats/torch/read.h"
#include "formats/torch/write.h"

/* ------------------------------------------------------------ readers */

static int rd_safetensors(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_safetensors_read(f, m, e);
}
static int rd_npy(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_npy_read(f, m, NULL, e);
}
static int rd_npz(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  return gt_npz_read(f, path, m, e);
}
static int rd_torch(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_torch_read(f, m, e);
}
/* A bundle is several files found from its prefix. */
static int rd_tf(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)f;
  return gt_tfbundle_read(path, m, e);
}
static int rd_tf_v1(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_tfv1_read(f, m, e);
}
static int rd_graphdef(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_tfgraph_read(f, m, e);
}
static int rd_metagraph(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_tfmeta_read(f, m, e);
}
static int rd_savedmodel(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_savedmodel_read(f, m, e);
}
static int rd_gguf(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_gguf_read(f, m, e);
}
static int rd_onnx(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  return gt_onnx_read(f, path, m, e);
}
static int rd_onnx_tensor(gt_storage *f, const char *path, gt_model *m,
                          gt_err *e) {
  return gt_onnx_tensor_read(f, path, m, e);
}
/* t7 detects the size of a binary long; t7_long4 and t7_long8 force it
 * (the open option long_size, lua/graft/formats/t7.lua). */
static int rd_t7(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_t7_read(f, m, 0, e);
}
static int rd_t7_long4(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_t7_read(f, m, 4, e);
}
static int rd_t7_long8(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_t7_read(f, m, 8, e);
}
/* model.json mapped; its path locates the .bin shards beside it. */
static int rd_tfjs(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  return gt_tfjs_read(f, path, m, e);
}
/* The patch options (base, external_data, external_threshold) as strings. */
static int wr_onnx(const char *path, const gt_save *s, const gt_write_input *in,
                   gt_err *e) {
  return gt_onnx_write(path, s, in->u.strings, e);
}
static int rd_hdf5(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_hdf5_read(f, m, e);
}
static int rd_keras_zip(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_keras_zip_read(f, m, e);
}

/* ------------------------------------------------------------ writers */

static int wr_safetensors(const char *path, const gt_save *s,
                          const gt_write_input *in, gt_err *e) {
  return gt_safetensors_write(path, s, in->u.strings, e);
}
static int wr_npy(const char *path, const gt_save *s, const gt_write_input *in,
                  gt_err *e) {
  (void)in;
  return gt_npy_write(path, s, e);
}
static int wr_npz(const char *path, const gt_save *s, const gt_write_input *in,
                  gt_err *e) {
  return gt_npz_write(path, s, in->u.flag, e);
}
static int wr_torch(const char *path, const gt_save *s, const gt_write_input *in,
                    gt_err *e) {
  return gt_torch_write(path, s, in->u.tree, e);
}
static int wr_hdf5(const char *path, const gt_save *s, const gt_write_input *in,
                   gt_err *e) {
  return gt_hdf5_write(path, s, in->u.json.text, in->u.json.len, e);
}
static int wr_gguf(const char *path, const gt_save *s, const gt_write_input *in,
                   gt_err *e) {
  const gt_kv_header *h = &in->u.header;
  return gt_gguf_write(path, s, h->kv, h->types, h->alignment, e);
}

/* own_files: a bundle is PREFIX.index and its data shards, each checked
 * and named in errors by gt_tfbundle_write. */
static int wr_tf(const char *path, const gt_save *s, const gt_write_input *in,
                 gt_err *e) {
  const gt_shard_plan *p = &in->u.plan;
  if (p->num_shards < 1 || p->num_shards > GT_TFBUNDLE_MAX_SHARDS)
    return gt_fail(e, "%s: num_shards must be in [1, %d]", path,
                   GT_TFBUNDLE_MAX_SHARDS);
  gt_tfbundle_opts o = {(int)p->num_shards, p->shard_of};
  return gt_tfbundle_write(path, s, &o, e);
}

/* own_files: a copy of the GraphDef at `base` with Consts replaced; errors
 * name base when it cannot be mapped, else path. */
static int wr_graphdef(const char *path, const gt_save *s,
                       const gt_write_input *in, gt_err *e) {
  if (!in->u.base)
    return gt_fail(e, "%s: a graph is written as a patched copy: no base "
                      "graph given", path);
  gt_storage *base = gt_storage_map(in->u.base, e);
  if (!base) return gt_wrap(e, "%s", in->u.base);
  int rc = gt_tfgraph_patch(path, base, s, e);
  gt_storage_release(base);
  return rc == GT_OK ? GT_OK : gt_wrap(e, "%s", path);
}

/* "pickle" is a plain pickle read by the torch reader; "tf_v1" a V1
 * checkpoint file; "savedmodel_pb" the saved_model.pb of a SavedModel (its
 * variables are a "tf" bundle, which lua/graft/formats/tfgraph.lua joins). */
static const gt_format formats[] = {
  {"safetensors", rd_safetensors, 0, wr_safetensors, GT_IN_STRINGS, 0},
  {"npy", rd_npy, 0, wr_npy, GT_IN_NONE, 0},
  {"npz", rd_npz, 0, wr_npz, GT_IN_FLAG, 0},
  {"torch", rd_torch, 0, wr_torch, GT_IN_TREE, 0},
  {"pickle", rd_torch, 0, NULL, GT_IN_NONE, 0},
  {"tf", rd_tf, 1, wr_tf, GT_IN_PLAN, 1},
  {"tf_v1", rd_tf_v1, 0, NULL, GT_IN_NONE, 0},
  {"graphdef", rd_graphdef, 0, wr_graphdef, GT_IN_BASE, 1},
  {"metagraph", rd_metagraph, 0, NULL, GT_IN_NONE, 0},
  {"savedmodel_pb", rd_savedmodel, 0, NULL, GT_IN_NONE, 0},
  {"hdf5", rd_hdf5, 0, wr_hdf5, GT_IN_JSON, 0},
  {"keras_zip", rd_keras_zip, 0, NULL, GT_IN_NONE, 0},
  {"gguf", rd_gguf, 0, wr_gguf, GT_IN_HEADER, 0},
  {"onnx", rd_onnx, 0, wr_onnx, GT_IN_STRINGS, 0},
  {"onnx_tensor", rd_onnx_tensor, 0, NULL, GT_IN_NONE, 0},
  {"t7", rd_t7, 0, NULL, GT_IN_NONE, 0},
  {"t7_long4", rd_t7_long4, 0, NULL, GT_IN_NONE, 0},
  {"t7_long8", rd_t7_long8, 0, NULL, GT_IN_NONE, 0},
  /* TF.js: the writer is lua/graft/formats/tfjs.lua (JSON assembly and
   * shard cutting over tensor bytes). */
  {"tfjs", rd_tfjs, 0, NULL, GT_IN_NONE, 0},
};

const gt_format *gt_format_at(size_t i) {
  return i < sizeof formats / sizeof formats[0] ? &formats[i] : NULL;
}

const gt_format *gt_format_find(const char *name) {
  for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
    if (strcmp(formats[i].name, name) == 0) return &formats[i];
  return NULL;
}

const char *gt_input_name(gt_input_kind kind) {
  switch (kind) {
  case GT_IN_STRINGS: return "metadata";
  case GT_IN_TREE: return "tree";
  case GT_IN_JSON: return "layout";
  case GT_IN_FLAG: return "compress";
  case GT_IN_PLAN: return "plan";
  case GT_IN_BASE: return "base";
  case GT_IN_HEADER: return "header";
  case GT_IN_NONE: break;
  }
  return NULL;
}
