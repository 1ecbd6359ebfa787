/* value.c: the metadata tree (see value.h).
 *
 * Invariants: LIST/OBJECT use items[0..n); MAP uses keys[0..n) and
 * items[0..n) in insertion order; cap >= n is the allocated length of both
 * arrays. Every pointer in them is owned by the value. */
#include "io/value.h"

#include <stdlib.h>
#include <string.h>

gt_value *gt_value_new(gt_vkind kind) {
  gt_value *v = calloc(1, sizeof *v);
  if (v) v->kind = kind;
  return v;
}

gt_value *gt_value_int(int64_t i) {
  gt_value *v = gt_value_new(GT_V_INT);
  if (v) v->i = i;
  return v;
}

gt_value *gt_value_float(double f) {
  gt_value *v = gt_value_new(GT_V_FLOAT);
  if (v) v->f = f;
  return v;
}

gt_value *gt_value_bool(int b) {
  gt_value *v = gt_value_new(GT_V_BOOL);
  if (v) v->i = b != 0;
  return v;
}

/* Strings may hold NUL bytes; str[len] is always a terminating NUL. */
gt_value *gt_value_str(const char *s, size_t len) {
  if (len == SIZE_MAX) return NULL;
  gt_value *v = gt_value_new(GT_V_STR);
  if (!v) return NULL;
  v->str = malloc(len + 1);
  if (!v->str) {
    free(v);
    return NULL;
  }
  if (len) memcpy(v->str, s, len);
  v->str[len] = '\0';
  v->len = len;
  return v;
}

void gt_value_free(gt_value *v) {
  if (!v) return;
  for (size_t i = 0; i < v->n; i++) {
    if (v->keys) gt_value_free(v->keys[i]);
    if (v->items) gt_value_free(v->items[i]);
  }
  free(v->keys);
  free(v->items);
  free(v->str);
  free(v);
}

/* Makes room for one more child; keys are grown only for maps. */
static int grow(gt_value *v, int with_keys) {
  if (v->n < v->cap) return GT_OK;
  size_t cap = v->cap ? v->cap * 2 : 4;
  if (cap > SIZE_MAX / sizeof(gt_value *)) return GT_ERR;
  gt_value **items = realloc(v->items, cap * sizeof *items);
  if (!items) return GT_ERR;
  v->items = items;
  if (with_keys) {
    gt_value **keys = realloc(v->keys, cap * sizeof *keys);
    if (!keys) return GT_ERR;
    v->keys = keys;
  }
  v->cap = cap;
  return GT_OK;
}

int gt_value_push(gt_value *list, gt_value *item) {
  if (!list || !item || (list->kind != GT_V_LIST && list->kind != GT_V_OBJECT) ||
      grow(list, 0) != GT_OK) {
    gt_value_free(item);
    return GT_ERR;
  }
  list->items[list->n++] = item;
  return GT_OK;
}

int gt_value_set(gt_value *map, gt_value *key, gt_value *item) {
  if (!map || !key || !item || map->kind != GT_V_MAP || grow(map, 1) != GT_OK) {
    gt_value_free(key);
    gt_value_free(item);
    return GT_ERR;
  }
  map->keys[map->n] = key;
  map->items[map->n] = item;
  map->n++;
  return GT_OK;
}

int gt_value_setk(gt_value *map, const char *key, gt_value *item) {
  gt_value *k = key ? gt_value_str(key, strlen(key)) : NULL;
  return gt_value_set(map, k, item);
}

const gt_value *gt_value_get(const gt_value *map, const char *key) {
  if (!map || map->kind != GT_V_MAP || !key) return NULL;
  size_t len = strlen(key);
  for (size_t i = 0; i < map->n; i++) {
    const gt_value *k = map->keys[i];
    if (k->kind == GT_V_STR && k->len == len && memcmp(k->str, key, len) == 0)
      return map->items[i];
  }
  return NULL;
}
