/* reader.h: the torch reader's state and the helpers its three files
 * share; private to src/formats/torch (the entry points are read.h's).
 *
 *   read.c  the layout-independent part: the storage table, the unpickler
 *           hooks (persistent ids, tensor rebuilds, numpy arrays), the walk
 *           that names tensors and builds the metadata tree (step 3), the
 *           plain-pickle layout and gt_torch_read's dispatch;
 *   zip.c   zip archives: torch.save since 1.6, TorchScript, torch.export
 *           .pt2;
 *   old.c   the layouts before the zip one: legacy torch.save (0.4-1.5,
 *           or _use_new_zipfile_serialization=False), the <= 0.1.9 tar,
 *           torch 0.1.x-0.3 tensors pickled by value, and storages
 *           pickled by torch.storage._load_from_bytes.
 *
 * Step 1 (unpickling) marks values: GT_V_TENSOR with f = 1 is a storage
 * handle (i indexes reader.st), with f = 0 a tensor record (i indexes
 * reader.rec). */
#ifndef GT_TORCH_READER_H
#define GT_TORCH_READER_H

#include <stddef.h>
#include <stdint.h>

#include "formats/torch/types.h"
#include "io/model.h"

/* A storage: of the file (by persistent-id key) or made from bytes or
 * values inside the pickle (no key). */
typedef struct tstore {
  char *key;                  /* persistent-id key; NULL for inline bytes */
  const gt_torch_type *type;  /* as the persistent id declares it */
  uint64_t numel;             /* elements of `type` */
  gt_storage *s;              /* set in step 2 (inline ones at once) */
  uint64_t at;                /* tar: file offset of its elements */
} tstore;

/* A tensor record: a view of storage st, made in step 1, checked and
 * named in step 3. */
typedef struct trec {
  size_t st;
  const gt_torch_type *type;
  int64_t off;                /* elements */
  int ndim;
  int swap;                   /* -1: as the file says */
  int64_t *dims;              /* shape[ndim] then strides[ndim] */
} trec;

/* A tensor of a tar file by its key (the saving process's id()). */
typedef struct tarkey {
  int64_t key;
  size_t rec;
} tarkey;

/* One file being read (the legacy file inside _load_from_bytes gets a
 * reader of its own). */
typedef struct reader {
  gt_storage *file;
  int inline_ok;              /* bytes offsets of this pickle are file offsets */
  int swap;                   /* file is big-endian */
  int legacy;                 /* persistent ids are 6-tuples */
  int tar;                    /* persistent ids are "<key>" of tar_keys */
  int nested;                 /* reading the bytes of _load_from_bytes */
  struct tarkey *tkeys;       /* tar: tensor keys -> records, sorted */
  size_t ntkeys, cap_tkeys;
  tstore *st;
  size_t nst, cap_st;
  size_t *hash;               /* open addressing: index + 1 into st, 0 empty */
  size_t hash_cap;
  trec *rec;
  size_t nrec, cap_rec;
  gt_model *m;
  gt_value *globals;          /* LIST of distinct placeholder names */
  char *path;                 /* the dotted name being built */
  size_t path_len, path_cap;
} reader;

/* A text value's bytes (a str, not bytes), or NULL. */
static inline const char *text_of(const gt_value *v) {
  return v && v->kind == GT_V_STR && v->i == 0 ? v->str : NULL;
}

/* ------------------------------------------------------------ read.c */

void gt_torch_reader_free(reader *r);
/* Index of the storage named key, adding it when new (*isnew set). */
int gt_torch_storage_for(reader *r, const char *key, size_t *idx, int *isnew,
                         gt_err *err);
/* A storage without a key whose bytes are already known (takes s). */
int gt_torch_inline_storage(reader *r, const gt_torch_type *t, uint64_t numel,
                            gt_storage *s, size_t *idx, gt_err *err);
/* "torch.FloatStorage", "torch.cuda.FloatStorage" -> its type, or NULL. */
const gt_torch_type *gt_torch_storage_class(const gt_value *g);
/* A tensor record: a view (offset, shape, strides in elements) of storage
 * st as type t; swap -1: as the file says. */
int gt_torch_add_record(reader *r, size_t st, const gt_torch_type *t, int64_t off,
                        int ndim, const int64_t *shape, const int64_t *strides,
                        int swap, size_t *idx, gt_err *err);
/* obj (a call of _rebuild_tensor{,_v2,_v3}, or a set_ state) becomes a
 * tensor record; args (storage, offset, size, stride[, ..., dtype if v3]). */
int gt_torch_rebuild(reader *r, gt_value *obj, const gt_value *args, int v3,
                     gt_err *err);
/* Bytes inside the pickle (a bytes value) as a storage: a region of the
 * file when r->inline_ok, else a copy. */
gt_storage *gt_torch_pickled_bytes(reader *r, const gt_value *b, gt_err *err);
/* s itself when its data is align-aligned, else a lazy aligned copy of it
 * (takes s; NULL s passes through). */
gt_storage *gt_torch_aligned(gt_storage *s, size_t align, gt_err *err);
/* Unpickles p[0, n) (at file offset base) with the reader's hooks; with
 * storages, persistent ids are resolved. */
int gt_torch_load_pickle(reader *r, const unsigned char *p, size_t n, uint64_t base,
                         int with_storages, gt_value **tree, size_t *used, gt_err *err);
/* Step 3: entries named from the unpickled tree, and the metadata tree as
 * meta[tree_key]. */
int gt_torch_finish(reader *r, const gt_value *tree, const char *tree_key, gt_value *meta,
                    gt_err *err);
/* The name path: push a segment (mark: where to pop back to), pop. */
int gt_torch_path_push(reader *r, const char *seg, size_t n, size_t *mark, gt_err *err);
void gt_torch_path_pop(reader *r, size_t mark);
/* meta[k] = the string s[0, n). */
int gt_torch_set_text(gt_value *meta, const char *k, const char *s, size_t n, gt_err *err);

/* ------------------------------------------------------------ zip.c */

int gt_torch_read_zip(reader *r, gt_value *meta, gt_err *err);

/* ------------------------------------------------------------ old.c */

int gt_torch_is_legacy(const unsigned char *p, uint64_t len);
int gt_torch_is_tar(const unsigned char *p, uint64_t len);
int gt_torch_read_legacy(reader *r, gt_value *meta, gt_err *err);
int gt_torch_read_tar(reader *r, gt_value *meta, gt_err *err);
/* The object hook's torch 0.1.x-0.3 part: Storage(list), Tensor(list),
 * Tensor() + set_ state. */
int gt_torch_old_hook(reader *r, gt_value *obj, int built, gt_err *err);
/* torch.storage._load_from_bytes(b): obj becomes the storage b holds. */
int gt_torch_from_bytes(reader *r, gt_value *obj, const gt_value *b, gt_err *err);
/* The tar object pickle's persistent ids. */
gt_value *gt_torch_tar_pid(reader *r, const gt_value *pid, gt_err *err);

#endif
