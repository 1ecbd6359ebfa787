/* model.c: the ordered list of named tensors a reader returns.
 *
 * Invariants: entries[0..n) are valid tensors each owning one storage
 * reference, names are NUL-terminated copies owned by the model; cap >= n. */
#include "io/model.h"

#include <stdlib.h>
#include <string.h>

#include "io/grow.h"

void gt_model_init(gt_model *m) { memset(m, 0, sizeof *m); }

void gt_model_free(gt_model *m) {
  for (size_t i = 0; i < m->n; i++) {
    free(m->entries[i].name);
    gt_tensor_free(&m->entries[i].t);
  }
  free(m->entries);
  gt_value_free(m->meta);
  gt_model_init(m);
}

static int reserve(gt_model *m, gt_err *err) {
  if (gt_grow((void **)&m->entries, &m->cap, m->n + 1, sizeof *m->entries))
    return gt_fail(err, "out of memory");
  return GT_OK;
}

int gt_model_reserve(gt_model *m, size_t n, gt_err *err) {
  if (n <= m->cap) return GT_OK;
  if (n > SIZE_MAX / sizeof *m->entries)
    return gt_fail(err, "%zu tensors are too many", n);
  gt_entry *e = realloc(m->entries, n * sizeof *e);
  if (!e)
    return gt_fail(err, "out of memory for the list of %zu tensors (%zu bytes)",
                   n, n * sizeof *e);
  m->entries = e;
  m->cap = n;
  return GT_OK;
}

int gt_model_add(gt_model *m, const char *name, size_t name_len, gt_tensor *t,
                 gt_err *err) {
  if (name_len && memchr(name, 0, name_len)) { /* names are C strings downstream */
    gt_fail(err, "tensor name \"%.200s\\0...\" holds a NUL byte", name);
    gt_tensor_free(t);
    memset(t, 0, sizeof *t);
    return GT_ERR;
  }
  char *copy = name_len < SIZE_MAX ? malloc(name_len + 1) : NULL;
  if (!copy || reserve(m, err) != GT_OK) {
    if (!copy) gt_fail(err, "out of memory");
    free(copy);
    gt_tensor_free(t);
    memset(t, 0, sizeof *t);
    return GT_ERR;
  }
  if (name_len) memcpy(copy, name, name_len);
  copy[name_len] = '\0';
  m->entries[m->n].name = copy;
  m->entries[m->n].t = *t;
  m->n++;
  memset(t, 0, sizeof *t);
  return GT_OK;
}
