/* value.h: a neutral tree for what a file says besides tensors.
 *
 * Readers put metadata here (safetensors __metadata__, npy header fields,
 * later pickle structures, Keras configs); the binding turns it into plain
 * Lua values. Maps keep insertion order and may have non-string keys.
 * A value owns its children; gt_value_free frees the whole tree. */
#ifndef GT_VALUE_H
#define GT_VALUE_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/error.h"

typedef enum gt_vkind {
  GT_V_NIL, GT_V_BOOL, GT_V_INT, GT_V_FLOAT, GT_V_STR,
  GT_V_LIST,    /* items[0..n) */
  GT_V_MAP,     /* keys[i] -> items[i], i in [0..n) */
  GT_V_OBJECT,  /* inert placeholder: str = "module.name", items = args/state */
  GT_V_TENSOR   /* i = index of a tensor in the model's entries */
} gt_vkind;

typedef struct gt_value gt_value;
struct gt_value {
  gt_vkind kind;
  int64_t i;        /* BOOL, INT, TENSOR */
  double f;         /* FLOAT */
  char *str;        /* STR (NUL-terminated, len bytes), OBJECT name */
  size_t len;
  gt_value **keys;  /* MAP */
  gt_value **items; /* LIST, MAP, OBJECT */
  size_t n, cap;
};

gt_value *gt_value_new(gt_vkind kind);  /* NULL on OOM */
gt_value *gt_value_int(int64_t i);
gt_value *gt_value_float(double f);
gt_value *gt_value_bool(int b);
gt_value *gt_value_str(const char *s, size_t len);
void gt_value_free(gt_value *v);
/* Append to a LIST or OBJECT (takes ownership of item, also on failure). */
int gt_value_push(gt_value *list, gt_value *item);
/* Add key -> item to a MAP (takes ownership of both, also on failure). */
int gt_value_set(gt_value *map, gt_value *key, gt_value *item);
/* Convenience: string key. */
int gt_value_setk(gt_value *map, const char *key, gt_value *item);
/* Look up a string key in a MAP; NULL if absent. */
const gt_value *gt_value_get(const gt_value *map, const char *key);

#endif
