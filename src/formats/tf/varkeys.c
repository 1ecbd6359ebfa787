/* varkeys.c: checkpoint keys of a MetaGraphDef's graph variables (varkeys.h). */
#include "formats/tf/varkeys.h"

#include <string.h>

#include "io/pbwire.h"
#include "variable.pb-c.h"

static gt_value *map_item(gt_value *map, const char *key) {
  size_t len = strlen(key);
  for (size_t i = 0; map && map->kind == GT_V_MAP && i < map->n; i++) {
    const gt_value *k = map->keys[i];
    if (k->kind == GT_V_STR && k->len == len && memcmp(k->str, key, len) == 0)
      return map->items[i];
  }
  return NULL;
}

static int set_item(gt_value *map, const char *key, gt_value *item) {
  size_t len = strlen(key);
  for (size_t i = 0; i < map->n; i++) {
    const gt_value *k = map->keys[i];
    if (k->kind == GT_V_STR && k->len == len && memcmp(k->str, key, len) == 0) {
      gt_value_free(map->items[i]);
      map->items[i] = item;
      return item ? GT_OK : GT_ERR;
    }
  }
  return gt_value_setk(map, key, item);
}

/* The graph variable named op_name (a VariableDef's variable_name is the
 * tensor "name:0"): its key becomes full_name. */
static int rekey(gt_value *vars, const char *tensor_name, const char *full_name) {
  size_t n = strlen(tensor_name);
  if (n > 2 && strcmp(tensor_name + n - 2, ":0") == 0) n -= 2;
  for (size_t i = 0; i < vars->n; i++) {
    gt_value *v = vars->items[i];
    const gt_value *name = map_item(v, "name");
    if (!map_item(v, "op") || !name || name->kind != GT_V_STR || name->len != n ||
        memcmp(name->str, tensor_name, n) != 0)
      continue;
    return set_item(v, "key", gt_value_str(full_name, strlen(full_name)));
  }
  return GT_OK;
}

static int from_collection(const Tensorflow__CollectionDef *c, gt_value *vars) {
  if (c->kind_case != TENSORFLOW__COLLECTION_DEF__KIND_BYTES_LIST) return GT_OK;
  const Tensorflow__CollectionDef__BytesList *bl = c->bytes_list;
  for (size_t i = 0; bl && i < bl->n_value; i++) {
    gt_err ignored;
    Tensorflow__VariableDef *vd = (Tensorflow__VariableDef *)pb_unpack(
        &tensorflow__variable_def__descriptor, bl->value[i].data, bl->value[i].len,
        "VariableDef", &ignored);
    if (!vd) continue;
    const Tensorflow__SaveSliceInfoDef *si = vd->save_slice_info_def;
    int rc = GT_OK;
    if (si && si->full_name && si->full_name[0] && vd->variable_name)
      rc = rekey(vars, vd->variable_name, si->full_name);
    protobuf_c_message_free_unpacked(&vd->base, NULL);
    if (rc != GT_OK) return GT_ERR;
  }
  return GT_OK;
}

int gt_tf_variable_keys(const Tensorflow__MetaGraphDef *mg, gt_value *meta) {
  gt_value *vars = map_item(meta, "variables");
  if (!vars || vars->kind != GT_V_LIST) return GT_OK;
  for (size_t i = 0; i < mg->n_collection_def; i++) {
    const char *name = mg->collection_def[i]->key;
    size_t n = name ? strlen(name) : 0;
    /* variables, trainable_variables, local_variables, model_variables ... */
    if (n >= 9 && strcmp(name + n - 9, "variables") == 0 &&
        from_collection(mg->collection_def[i]->value, vars) != GT_OK)
      return GT_ERR;
  }
  return GT_OK;
}
