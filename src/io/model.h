/* model.h: what a reader returns and a writer takes.
 *
 * A model is an ordered list of named tensors (in the file's own order) plus
 * a metadata tree. Readers fill it from an index only: tensors are views on
 * mapped or lazy storages, no data is read. */
#ifndef GT_MODEL_H
#define GT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/tensor.h"
#include "io/value.h"

typedef struct gt_entry {
  char *name;
  gt_tensor t;
} gt_entry;

typedef struct gt_model {
  const char *format;   /* static: the format name (formats/format.c) */
  gt_entry *entries;
  size_t n, cap;
  gt_value *meta;       /* a MAP, or NULL */
} gt_model;

void gt_model_init(gt_model *m);
void gt_model_free(gt_model *m);
/* Room for n entries in all (readers that know their count call it: an
 * index of 10^6 entries should not carry doubling slack of ~0.5 KB each). */
int gt_model_reserve(gt_model *m, size_t n, gt_err *err);
/* Appends name -> *t; takes over t's storage reference (t is zeroed), also
 * on failure. */
int gt_model_add(gt_model *m, const char *name, size_t name_len, gt_tensor *t,
                 gt_err *err);

/* Progress of a writer: bytes of tensor data written so far, of total. */
typedef void (*gt_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* What every writer takes. Tensors are written with their presented dtype
 * (lazy casts are applied while streaming). A writer that needs more takes
 * it as a typed argument of its own (see formats/format.h). */
typedef struct gt_save {
  const gt_entry *entries;
  size_t n;
  gt_progress_fn progress;     /* may be NULL */
  void *progress_ctx;
  /* Provenance as JSON text (graft.version, sources, recipe), or NULL: a
   * writer whose format has no metadata field but can carry a small extra
   * part stores it (torch: the member <folder>/graft_provenance.json). */
  const char *provenance;
  size_t provenance_len;
} gt_save;

#endif
