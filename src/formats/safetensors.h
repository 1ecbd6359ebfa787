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

#endif
