/* libFuzzer target: a safetensors file (header JSON, offsets, data).
 * Differential too: the header is read once through the general (cJSON)
 * parser alone and once as graft.open reads it (the one-pass parser of the
 * plain form first); the two must agree on success or failure, the error
 * message, and every entry's name, dtype and shape. A disagreement aborts
 * (a finding). */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "formats/safetensors.h"

/* Whether two read models list the same entries. */
static int same_entries(const gt_model *a, const gt_model *b) {
  if (a->n != b->n || (a->meta == NULL) != (b->meta == NULL)) return 0;
  for (size_t i = 0; i < a->n; i++) {
    const gt_tensor *x = &a->entries[i].t, *y = &b->entries[i].t;
    if (strcmp(a->entries[i].name, b->entries[i].name) != 0 || x->dtype != y->dtype ||
        x->ndim != y->ndim ||
        memcmp(x->shape, y->shape, (size_t)x->ndim * sizeof *x->shape) != 0)
      return 0;
  }
  return 1;
}

static int rd(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  gt_model g;
  gt_err ge;
  gt_model_init(&g);
  gt_safetensors_test_general(1);
  int grc = gt_safetensors_read(f, &g, &ge);
  gt_safetensors_test_general(0);
  int rc = gt_safetensors_read(f, m, e);
  if (rc != grc) abort();
  if (rc != GT_OK && strcmp(e->msg, ge.msg) != 0) abort();
  if (rc == GT_OK && !same_entries(m, &g)) abort();
  gt_model_free(&g);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_read(data, size, "", rd, NULL);
}
