/* safetensors.h: safetensors read (mmap, zero-copy) and write (streamed). */
#ifndef GT_SAFETENSORS_H
#define GT_SAFETENSORS_H

#include "io/model.h"

/* Reads the safetensors file mapped as `file` (a mapping of the whole file;
 * the tensors retain it). Validates as the reference implementation does,
 * plus duplicate keys; errors name the tensor. Entries come in offset
 * order (header order among empty tensors sharing an offset). Tensors are
 * region views on the mapping, or lazy aligned copies where old writers left
 * data misaligned for its element type. m->meta gets {"__metadata__" -> MAP
 * of strings} when the header has metadata, else stays NULL. On failure m
 * is freed (left as after gt_model_init). */
int gt_safetensors_read(gt_storage *file, gt_model *m, gt_err *err);
/* Writes tensors ordered as the reference writer orders them (dtype
 * alignment descending, then name bytewise), each as its presented dtype
 * (lazy casts and views are materialised while streaming). `metadata`,
 * when not NULL, must be a MAP of string -> string (valid UTF-8) and
 * becomes __metadata__ (keys sorted; an empty MAP gives "__metadata__":{}).
 * Header compact JSON as serde_json writes it, padded with spaces to a
 * multiple of 8: byte-identical to safetensors' save_file for the same
 * tensors. String and complex128 tensors, invalid UTF-8 names and the
 * name "__metadata__" are refused. Crash-safe via fileout.h. */
int gt_safetensors_write(const char *path, const gt_save *s,
                         const gt_value *metadata, gt_err *err);

/* One file of a sharded set: its path and its tensors. */
typedef struct gt_st_shard {
  const char *path;
  gt_save s;
} gt_st_shard;

/* A sharded checkpoint written as a set (Hugging Face's layout): every
 * shard as gt_safetensors_write would write it (each with `metadata`),
 * then `index` (the *.safetensors.index.json text, built by the caller) at
 * index_path, all under temporary names; committed with gt_out_commit_set,
 * the index last. A reader of the index therefore finds the complete old
 * set, no index ("not found"), or the complete new set, never new shards
 * under the old index. Progress (shards[k].s.progress) counts bytes over
 * the whole set. On failure nothing at the targets changes (before the
 * commit) and every temporary file is removed. */
int gt_safetensors_write_set(const gt_st_shard *shards, size_t n,
                             const gt_value *metadata, const char *index_path,
                             const char *index, size_t index_len,
                             gt_err *err);

#endif
