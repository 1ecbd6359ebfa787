/* lgraft_io.c: reading and writing model files from Lua.
 *
 * core.read(path, format) -> tensors, names, meta
 * core.write(path, format, names, tensors [, opts])
 *   names: the list of names to write, in order; tensors: name -> tensor.
 *   opts (a table, every key optional):
 *     progress  function(done_bytes, total_bytes), called while writing;
 *     provenance JSON text a writer without a metadata field stores its own
 *               way (gt_save.provenance: torch, a zip member);
 *     and the one typed input the format's writer takes (formats/format.h):
 *     metadata  (safetensors) table of string -> string, the __metadata__;
 *     tree      (torch) the object to pickle: a tensor, number, string,
 *               boolean or {kind = "list", v1, ...} / {kind = "dict", k1,
 *               v1, ...}; without it an OrderedDict of names -> tensors;
 *     layout    (hdf5) JSON text placing groups, datasets and attributes;
 *     compress  (npz) boolean, deflate the members;
 *     plan      (tf) {num_shards = n, shard_of = {name -> 0-based shard}}:
 *               path is the bundle prefix (default: one shard);
 *     base      (graphdef) path of the GraphDef whose Consts are replaced;
 *     header    (gguf) {kv = list of {key, type, value [, item_type]}
 *               tables (arrays as lists), types = {name -> dtype to store
 *               it as; "q8_0" / "q4_0" quantise}, alignment = n (default
 *               32)}.
 *   Any other key is an error.
 * core.safetensors_write_set(index_path, index_text, shards, tensors
 *   [, opts]): a sharded safetensors checkpoint committed as a set (see
 *   l_safetensors_write_set).
 * core.formats() -> list of {name, read, write, input}: the C registry.
 * core.zip_names(path) -> list of the member names of a zip archive, from
 *   its central directory (src/io/zipmap.c).
 * core.testing.sandbox_fault(kind): see l_sandbox_fault.
 * Format names appear only in src/formats/format.c (and in
 * core.safetensors_write_set: a set of files committed together is not one
 * registry row's single path): detection and every
 * convenience (sharding, dtype policy, ordering, option checks) live in
 * lua/graft; this file only moves between gt_model and Lua tables. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io/sha256.h"
#include "io/fileout.h"
#include "io/sandbox.h"
#include "io/zipmap.h"
#include "io/zipwrite.h"
#include "formats/format.h"
#include "formats/safetensors.h"
#include "lgraft.h"

/* Pushes v as Lua values. With take, each child is freed (and its slot
 * cleared) as soon as it is converted, so a big metadata tree and its Lua
 * copy do not both sit in memory at their full size; v itself stays with
 * its owner, which frees what is left even if Lua raises midway. */
static void push_value(lua_State *L, gt_value *v, int tensors, int take);

static void push_child(lua_State *L, gt_value **slot, int tensors, int take) {
  push_value(L, *slot, tensors, take);
  if (take) {
    gt_value_free(*slot);
    *slot = NULL;
  }
}

void lg_push_value(lua_State *L, const gt_value *v, int tensors) {
  push_value(L, (gt_value *)v, tensors, 0);   /* not modified: take == 0 */
}

static void push_value(lua_State *L, gt_value *v, int tensors, int take) {
  luaL_checkstack(L, 6, "metadata nested too deep");
  if (!v) {
    lua_pushnil(L);
    return;
  }
  switch (v->kind) {
  case GT_V_NIL: lua_pushnil(L); break;
  case GT_V_BOOL: lua_pushboolean(L, (int)v->i); break;
  case GT_V_INT: lua_pushinteger(L, v->i); break;
  case GT_V_FLOAT: lua_pushnumber(L, v->f); break;
  case GT_V_STR: lua_pushlstring(L, v->str, v->len); break;
  case GT_V_TENSOR:
    if (tensors) lua_rawgeti(L, tensors, v->i + 1);
    else lua_pushnil(L);
    break;
  case GT_V_LIST:
    lua_createtable(L, (int)v->n, 0);
    for (size_t i = 0; i < v->n; i++) {
      push_child(L, &v->items[i], tensors, take);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  case GT_V_MAP:
    lua_createtable(L, 0, (int)v->n);
    for (size_t i = 0; i < v->n; i++) {
      push_child(L, &v->keys[i], tensors, take);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        continue;
      }
      push_child(L, &v->items[i], tensors, take);
      lua_rawset(L, -3);
    }
    break;
  case GT_V_OBJECT:
    lua_createtable(L, (int)v->n, 1);
    lua_pushlstring(L, v->str ? v->str : "", v->str ? v->len : 0);
    lua_setfield(L, -2, "__object");
    for (size_t i = 0; i < v->n; i++) {
      push_child(L, &v->items[i], tensors, take);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  }
}

/* A readers' model, owned by a to-be-closed userdata so a Lua error while
 * pushing cannot leak it. */
typedef struct model_lazy model_lazy;
typedef struct model_box {
  gt_model m;
  int live;
  model_lazy *lazy;   /* the box's reference to the model's handles' source */
} model_box;

/* A read model as the lazy source of its handles (lgraft.h): a handle is
 * 16 bytes until first used, so opening builds no view, and fields (shape,
 * dtype) are read from the entry. make moves the entry's tensor into its
 * handle (each entry has exactly one handle), so no view is ever held
 * twice; the entries left are freed when the last handle is made or
 * released. Names and meta are taken out before the handles are made. */
struct model_lazy {
  lg_lazy z;
  gt_model m;
};

static int ml_make(lg_lazy *z, uint32_t i, gt_tensor *out, gt_err *err) {
  gt_tensor *t = &((model_lazy *)z)->m.entries[i].t;
  (void)err;
  *out = *t;
  memset(t, 0, sizeof *t);
  return GT_OK;
}

static void ml_peek(const lg_lazy *z, uint32_t i, gt_tensor *out) {
  *out = ((const model_lazy *)z)->m.entries[i].t;
  out->storage = NULL;
}

static void ml_destroy(lg_lazy *z) {
  gt_model_free(&((model_lazy *)z)->m);
  free(z);
}

static int box_gc(lua_State *L) {
  model_box *b = lua_touserdata(L, 1);
  if (b && b->live) {
    gt_model_free(&b->m);
    b->live = 0;
  }
  if (b && b->lazy) {
    lg_lazy_release(&b->lazy->z);
    b->lazy = NULL;
  }
  return 0;
}

/* Moves b's entries into a new lazy source holding one reference (the
 * box's); meta and format stay in b->m. NULL when out of memory. */
static model_lazy *box_to_lazy(model_box *b) {
  model_lazy *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->z.refs = 1;
  l->z.make = ml_make;
  l->z.peek = ml_peek;
  l->z.destroy = ml_destroy;
  l->m = b->m;
  gt_model_init(&b->m);
  b->m.meta = l->m.meta;
  b->m.format = l->m.format;
  l->m.meta = NULL;
  b->lazy = l;
  return l;
}

static model_box *new_box(lua_State *L) {
  model_box *b = lg_push_box(L, sizeof *b, "graft.modelbox", box_gc);
  gt_model_init(&b->m);
  b->live = 1;
  return b;
}

static int l_read(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *format = luaL_checkstring(L, 2);
  gt_err e;
  const gt_format *f = gt_format_find(format);
  if (!f || !f->read)
    return luaL_error(L, "graft: %s: cannot read format '%s'", path, format);
  model_box *b = new_box(L);
  gt_storage *file = f->by_path ? NULL : gt_storage_map(path, &e);
  if (!file && !f->by_path) return lg_raise(L, path, &e);
  int rc = f->read(file, path, &b->m, &e);
  /* Reading the index touched scattered pages (zip local headers, HDF5
   * object headers); the kernel may have mapped whole large folios around
   * each. Drop them from our resident set: tensor data faults back in when
   * it is used, and a conversion's peak memory stays one buffer. */
  if (file) {
    gt_storage_done_with(file, 0, file->size);
    gt_storage_release(file);
  }
  if (rc != GT_OK) return lg_raise(L, path, &e);
  if (b->m.n > UINT32_MAX)
    return luaL_error(L, "graft: %s: %zu tensors are too many", path, b->m.n);
  model_lazy *l = box_to_lazy(b);
  if (!l) return luaL_error(L, "graft: %s: out of memory", path);
  gt_model *m = &l->m;
  lua_createtable(L, 0, (int)m->n);        /* tensors */
  int tensors = lua_gettop(L);
  lua_createtable(L, (int)m->n, 0);        /* names */
  int names = tensors + 1;
  lua_createtable(L, (int)m->n, 0);        /* list of handles, for meta */
  int list = tensors + 2;
  for (size_t i = 0; i < m->n; i++) {
    gt_entry *en = &m->entries[i];
    lua_pushstring(L, en->name);  /* interned once, used three times */
    lua_pushvalue(L, -1);
    if (lua_rawget(L, tensors) != LUA_TNIL)
      return luaL_error(L, "graft: %s: tensor name \"%s\" appears twice", path, en->name);
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, names, (lua_Integer)i + 1);
    lg_push_lazy(L, &l->z, (uint32_t)i);
    lua_pushvalue(L, -1);
    lua_rawseti(L, list, (lua_Integer)i + 1);
    lua_rawset(L, tensors);       /* tensors[name] = handle */
    free(en->name);
    en->name = NULL;
  }
  if (b->m.meta) push_value(L, b->m.meta, list, 1);
  else lua_newtable(L);
  lua_pushstring(L, b->m.format ? b->m.format : format);
  lua_setfield(L, -2, "format");
  lua_remove(L, list);
  return 3;  /* the box closes: its reference to l goes */
}

/* Build a gt_value MAP of strings from a Lua table of string -> string. */
static gt_value *metadata_from_lua(lua_State *L, int idx, gt_err *e) {
  gt_value *map = gt_value_new(GT_V_MAP);
  if (!map) {
    gt_fail(e, "out of memory");
    return NULL;
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 2);
      gt_value_free(map);
      gt_fail(e, "metadata keys and values must be strings");
      return NULL;
    }
    size_t kl, vl;
    const char *k = lua_tolstring(L, -2, &kl), *v = lua_tolstring(L, -1, &vl);
    if (gt_value_set(map, gt_value_str(k, kl), gt_value_str(v, vl)) != GT_OK) {
      lua_pop(L, 2);
      gt_value_free(map);
      gt_fail(e, "out of memory");
      return NULL;
    }
    lua_pop(L, 1);
  }
  return map;
}

typedef struct save_box {
  gt_entry *entries;
  gt_value *meta;
} save_box;

static int save_gc(lua_State *L) {
  save_box *b = lua_touserdata(L, 1);
  if (b) {
    gt_value_free(b->meta);
    b->meta = NULL;
  }
  return 0;
}

/* The object a torch file pickles, from the Lua tree graft.save builds
 * (opts.tree of core.write): a tensor (one of the entries, found through
 * `index`, a table tensor -> 0-based entry index), a number, string or
 * boolean, or a node {kind = "list", v1, v2, ...} / {kind = "dict", k1, v1,
 * k2, v2, ...} in the order to write. Raw access only, so no Lua code runs. */
static gt_value *torch_tree(lua_State *L, int idx, int index, int depth,
                            gt_err *e) {
  if (depth > 200) {
    gt_fail(e, "values nested deeper than 200 levels");
    return NULL;
  }
  gt_value *v = NULL;
  int t = lua_type(L, idx);
  if (t == LUA_TBOOLEAN) v = gt_value_bool(lua_toboolean(L, idx));
  else if (t == LUA_TNUMBER && lua_isinteger(L, idx)) v = gt_value_int(lua_tointeger(L, idx));
  else if (t == LUA_TNUMBER) v = gt_value_float(lua_tonumber(L, idx));
  else if (t == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    v = gt_value_str(s, n);
  } else if (t == LUA_TUSERDATA) {
    lua_pushvalue(L, idx);
    lua_rawget(L, index);
    if (!lua_isinteger(L, -1)) {
      lua_pop(L, 1);
      gt_fail(e, "a tensor in the tree is not among the names");
      return NULL;
    }
    if ((v = gt_value_new(GT_V_TENSOR))) v->i = lua_tointeger(L, -1);
    lua_pop(L, 1);
  } else if (t == LUA_TTABLE) {
    luaL_checkstack(L, 4, "values nested too deep");
    lua_pushliteral(L, "kind");
    lua_rawget(L, idx);
    const char *kind = lua_tostring(L, -1);
    int map = kind && strcmp(kind, "dict") == 0;
    int list = kind && strcmp(kind, "list") == 0;
    lua_pop(L, 1);
    if (!map && !list) {
      gt_fail(e, "bad tree node");
      return NULL;
    }
    if (!(v = gt_value_new(map ? GT_V_MAP : GT_V_LIST))) goto oom;
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    for (lua_Integer i = 1; i <= n; i += map ? 2 : 1) {
      gt_value *k = NULL, *x;
      if (map) {
        lua_rawgeti(L, idx, i);
        k = torch_tree(L, lua_gettop(L), index, depth + 1, e);
        lua_pop(L, 1);
        if (!k) goto fail;
      }
      lua_rawgeti(L, idx, map ? i + 1 : i);
      x = torch_tree(L, lua_gettop(L), index, depth + 1, e);
      lua_pop(L, 1);
      if (!x) {
        gt_value_free(k);
        goto fail;
      }
      if ((map ? gt_value_set(v, k, x) : gt_value_push(v, x)) != GT_OK) goto oom;
    }
    return v;
  } else {
    gt_fail(e, "cannot write a %s value", lua_typename(L, t));
    return NULL;
  }
  if (!v) gt_fail(e, "out of memory");
  return v;
oom:
  gt_fail(e, "out of memory");
fail:
  gt_value_free(v);
  return NULL;
}

/* The tree at stack index `tree` as a value tree whose tensors index
 * s->entries (0-based, the first entry of a tensor named twice); the
 * tensors table of core.write is argument 4. */
static gt_value *tree_input(lua_State *L, int tree, const gt_save *s, gt_err *e) {
  lua_createtable(L, 0, (int)s->n);
  int index = lua_gettop(L);
  for (size_t i = 0; i < s->n; i++) {
    lua_getfield(L, 4, s->entries[i].name);
    if (lua_rawget(L, index) == LUA_TNIL) {
      lua_pop(L, 1);
      lua_getfield(L, 4, s->entries[i].name);
      lua_pushinteger(L, (lua_Integer)i);
      lua_rawset(L, index);
    } else {
      lua_pop(L, 1);
    }
  }
  gt_value *v = torch_tree(L, tree, index, 0, e);
  lua_pop(L, 1);
  return v;
}

/* A plain Lua value as a gt_value: tables with a non-empty array part (or
 * empty) become LISTs, other tables MAPs with string keys. */
static gt_value *value_from_lua(lua_State *L, int idx, int depth, gt_err *e) {
  gt_value *v = NULL;
  if (depth > 64) {
    gt_fail(e, "metadata nested deeper than 64 levels");
    return NULL;
  }
  switch (lua_type(L, idx)) {
  case LUA_TBOOLEAN: v = gt_value_bool(lua_toboolean(L, idx)); break;
  case LUA_TNUMBER:
    v = lua_isinteger(L, idx) ? gt_value_int(lua_tointeger(L, idx))
                              : gt_value_float(lua_tonumber(L, idx));
    break;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    v = gt_value_str(s, n);
    break;
  }
  case LUA_TTABLE: {
    luaL_checkstack(L, 4, "metadata nested too deep");
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    lua_pushnil(L);
    int empty = lua_next(L, idx) == 0;
    if (!empty) lua_pop(L, 2);
    if (n > 0 || empty) {
      if (!(v = gt_value_new(GT_V_LIST))) break;
      for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        gt_value *x = value_from_lua(L, lua_gettop(L), depth + 1, e);
        lua_pop(L, 1);
        if (!x) {
          gt_value_free(v);
          return NULL;
        }
        if (gt_value_push(v, x) != GT_OK) {
          gt_value_free(v);
          v = NULL;
          break;
        }
      }
      break;
    }
    if (!(v = gt_value_new(GT_V_MAP))) break;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      if (lua_type(L, -2) != LUA_TSTRING) {
        lua_pop(L, 2);
        gt_value_free(v);
        gt_fail(e, "metadata tables take string keys");
        return NULL;
      }
      gt_value *x = value_from_lua(L, lua_gettop(L), depth + 1, e);
      if (!x) {
        lua_pop(L, 2);
        gt_value_free(v);
        return NULL;
      }
      if (gt_value_setk(v, lua_tostring(L, -2), x) != GT_OK) {
        lua_pop(L, 2);
        gt_value_free(v);
        v = NULL;
        break;
      }
      lua_pop(L, 1);
    }
    break;
  }
  default:
    gt_fail(e, "cannot write a %s as GGUF metadata", luaL_typename(L, idx));
    return NULL;
  }
  if (!v) gt_fail(e, "out of memory");
  return v;
}

static int bad_input(lua_State *L, const gt_format *f, const char *what,
                     int t, gt_err *e) {
  return gt_fail(e, "core.write: option \"%s\" of format %s: bad %s",
                 what, f->name, lua_typename(L, t));
}

/* The plan at `at` (a table or nil) into p; shard_of is a userdata left on
 * the stack for the call. Shards are integers (nil: 0) within int. */
static int plan_input(lua_State *L, int at, const gt_format *f,
                      const gt_save *s, gt_shard_plan *p, gt_err *e) {
  p->num_shards = 1;
  p->shard_of = NULL;
  if (lua_isnil(L, at)) return GT_OK;
  if (!lua_istable(L, at)) return bad_input(L, f, "plan", lua_type(L, at), e);
  int isnum = 0, t = lua_getfield(L, at, "num_shards");
  if (t != LUA_TNIL) {
    p->num_shards = (long long)lua_tointegerx(L, -1, &isnum);
    if (!isnum) return bad_input(L, f, "plan.num_shards", t, e);
  }
  lua_pop(L, 1);
  t = lua_getfield(L, at, "shard_of");
  if (t == LUA_TNIL) return GT_OK;
  if (t != LUA_TTABLE) return bad_input(L, f, "plan.shard_of", t, e);
  int map = lua_gettop(L);
  int *of = lua_newuserdatauv(L, (s->n ? s->n : 1) * sizeof *of, 0);
  for (size_t i = 0; i < s->n; i++) {
    t = lua_getfield(L, map, s->entries[i].name);
    lua_Integer k = t == LUA_TNIL ? 0 : lua_tointegerx(L, -1, &isnum);
    lua_pop(L, 1);
    if (t != LUA_TNIL && !isnum)
      return gt_fail(e, "tensor \"%s\": plan.shard_of: bad %s",
                     s->entries[i].name, lua_typename(L, t));
    if (k < INT_MIN || k > INT_MAX)   /* the writer checks the range */
      return gt_fail(e, "tensor \"%s\": shard %lld is not in [0, %lld)",
                     s->entries[i].name, (long long)k, p->num_shards);
    of[i] = (int)k;
  }
  p->shard_of = of;
  return GT_OK;
}

/* The header at `at` (a table or nil) into h: kv owned by b, types a
 * userdata left on the stack for the call. */
static int header_input(lua_State *L, int at, const gt_format *f,
                        const gt_save *s, save_box *b, gt_kv_header *h,
                        gt_err *e) {
  h->kv = NULL;
  h->alignment = 32;
  if (!lua_isnil(L, at) && !lua_istable(L, at))
    return bad_input(L, f, "header", lua_type(L, at), e);
  int has = lua_istable(L, at), t;
  gt_dtype *types = lua_newuserdatauv(L, (s->n ? s->n : 1) * sizeof *types, 0);
  int want = has && lua_getfield(L, at, "types") != LUA_TNIL ? lua_gettop(L) : 0;
  if (want && !lua_istable(L, want))
    return bad_input(L, f, "header.types", lua_type(L, want), e);
  for (size_t i = 0; i < s->n; i++) {
    types[i] = s->entries[i].t.dtype;
    if (want && lua_getfield(L, want, s->entries[i].name) != LUA_TNIL)
      types[i] = lg_dtype(L, lua_gettop(L), -1);
    if (want) lua_pop(L, 1);
  }
  h->types = types;
  if (!has) return GT_OK;
  if ((t = lua_getfield(L, at, "alignment")) != LUA_TNIL) {
    int isnum;
    lua_Integer a = lua_tointegerx(L, -1, &isnum);
    if (!isnum) return bad_input(L, f, "header.alignment", t, e);
    if (a <= 0 || a > UINT32_MAX)
      return gt_fail(e, "alignment %lld out of range", (long long)a);
    h->alignment = (uint32_t)a;
  }
  if ((t = lua_getfield(L, at, "kv")) != LUA_TNIL) {
    if (t != LUA_TTABLE) return bad_input(L, f, "header.kv", t, e);
    if (!(b->meta = value_from_lua(L, lua_gettop(L), 0, e))) return GT_ERR;
    h->kv = b->meta;
  }
  return GT_OK;
}

/* Fill `in` from opts (stack index `opts`, a table or nil) for format f:
 * only `progress`, `provenance` and f's own input are accepted. What is
 * built is owned by b or left on the stack, which l_write keeps until the
 * writer returns. */
static int write_input(lua_State *L, int opts, const gt_format *f,
                       const gt_save *s, save_box *b, gt_write_input *in,
                       gt_err *e) {
  const char *want = gt_input_name(f->input);
  memset(in, 0, sizeof *in);
  in->kind = f->input;
  luaL_checkstack(L, 8, "core.write");
  if (!lua_isnil(L, opts)) {
    lua_pushnil(L);
    while (lua_next(L, opts)) {
      lua_pop(L, 1);
      const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
      if (!k || (strcmp(k, "progress") != 0 && strcmp(k, "provenance") != 0 &&
                 !(want && strcmp(k, want) == 0))) {
        gt_fail(e, "core.write: format %s takes no option \"%s\"", f->name, k ? k : "?");
        lua_pop(L, 1);
        return GT_ERR;
      }
    }
  }
  if (!want) return GT_OK;
  int t = lua_isnil(L, opts) ? (lua_pushnil(L), LUA_TNIL) : lua_getfield(L, opts, want);
  int at = lua_gettop(L);   /* the option's value, kept on the stack */
  switch (f->input) {
  case GT_IN_FLAG: in->u.flag = lua_toboolean(L, at); return GT_OK;
  case GT_IN_PLAN: return plan_input(L, at, f, s, &in->u.plan, e);
  case GT_IN_HEADER: return header_input(L, at, f, s, b, &in->u.header, e);
  default: break;
  }
  if (t == LUA_TNIL) return GT_OK;   /* the writer's default */
  if (f->input == GT_IN_JSON && t == LUA_TSTRING) {
    in->u.json.text = lua_tolstring(L, at, &in->u.json.len);
  } else if (f->input == GT_IN_BASE && t == LUA_TSTRING) {
    in->u.base = lua_tostring(L, at);
  } else if (f->input == GT_IN_STRINGS && t == LUA_TTABLE) {
    if (!(b->meta = metadata_from_lua(L, at, e))) return GT_ERR;
    in->u.strings = b->meta;
  } else if (f->input == GT_IN_TREE && t == LUA_TTABLE) {
    if (!(b->meta = tree_input(L, at, s, e))) return GT_ERR;
    in->u.tree = b->meta;
  } else {
    return bad_input(L, f, want, t, e);
  }
  return GT_OK;
}

static int l_write(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *format = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  if (!lua_isnoneornil(L, 5)) luaL_checktype(L, 5, LUA_TTABLE);
  lua_settop(L, 5);
  const gt_format *f = gt_format_find(format);
  if (!f || !f->write)
    return luaL_error(L, "graft: %s: cannot write format '%s'", path, format);
  if (lua_isnil(L, 5)) lua_pushnil(L);
  else lua_getfield(L, 5, "progress");                 /* 6: progress */
  int has_prog = lua_isfunction(L, 6);
  gt_err e;
  lua_Integer n = lg_count_names(L, 3);
  save_box *b = lg_push_box(L, sizeof *b, "graft.savebox", save_gc);
  b->entries = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(gt_entry), 0);
  for (lua_Integer i = 1; i <= n; i++) lg_entry(L, 3, 4, i, path, &b->entries[i - 1]);
  lg_progress pc = {L, 6};
  gt_save s = {b->entries, (size_t)n, has_prog ? lg_progress_cb : NULL, &pc, NULL, 0};
  if (!lua_isnil(L, 5) && lua_getfield(L, 5, "provenance") == LUA_TSTRING)
    s.provenance = lua_tolstring(L, -1, &s.provenance_len); /* stays on the stack */
  else lua_pushnil(L);
  gt_write_input in;
  if (write_input(L, 5, f, &s, b, &in, &e) != GT_OK) return lg_raise(L, path, &e);
  if (!f->own_files && gt_out_check_inputs(path, s.entries, s.n, &e) != GT_OK)
    return lg_raise(L, path, &e);
  if (f->write(path, &s, &in, &e) != GT_OK)
    return lg_raise(L, f->own_files ? NULL : path, &e);
  return 0;
}

/* core.safetensors_write_set(index_path, index_text, shards, tensors
 * [, opts]): a sharded safetensors checkpoint committed as a set
 * (formats/safetensors.h gt_safetensors_write_set). shards: a list of
 * {path = ..., names = {...}}; tensors: name -> tensor; opts: metadata
 * (string -> string, every shard's __metadata__) and progress (over the
 * whole set). Which tensor goes to which shard, and the index text, are
 * policy (lua/graft/formats/safetensors.lua). */
static int l_safetensors_write_set(lua_State *L) {
  const char *index_path = luaL_checkstring(L, 1);
  size_t index_len;
  const char *index = luaL_checklstring(L, 2, &index_len);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  if (!lua_isnoneornil(L, 5)) luaL_checktype(L, 5, LUA_TTABLE);
  lua_settop(L, 5);
  if (lua_isnil(L, 5)) lua_pushnil(L);
  else lua_getfield(L, 5, "progress");                 /* 6: progress */
  lg_progress pc = {L, 6};
  gt_progress_fn prog = lua_isfunction(L, 6) ? lg_progress_cb : NULL;
  gt_err e;
  lua_Integer n = luaL_len(L, 3);
  if (n < 1 || n > 99999) return luaL_error(L, "graft: %s: bad shard count", index_path);
  save_box *b = lg_push_box(L, sizeof *b, "graft.savebox", save_gc);  /* 7 */
  gt_st_shard *sh = lua_newuserdatauv(L, (size_t)n * sizeof *sh, 0); /* 8 */
  for (lua_Integer k = 1; k <= n; k++) {
    luaL_checkstack(L, 4, "too many shards");
    lua_rawgeti(L, 3, k);                          /* the shard, kept */
    int shard = lua_gettop(L);
    if (!lua_istable(L, shard) || lua_getfield(L, shard, "path") != LUA_TSTRING ||
        lua_getfield(L, shard, "names") != LUA_TTABLE)
      return luaL_error(L, "graft: %s: shards[%d] must be {path = ..., names = {...}}",
                        index_path, (int)k);
    const char *path = lua_tostring(L, shard + 1);
    int names = shard + 2;
    lua_Integer m = lg_count_names(L, names);
    gt_entry *ents = lua_newuserdatauv(L, (size_t)(m ? m : 1) * sizeof *ents, 0);
    for (lua_Integer i = 1; i <= m; i++) lg_entry(L, names, 4, i, path, &ents[i - 1]);
    sh[k - 1] = (gt_st_shard){path, {ents, (size_t)m, prog, &pc, NULL, 0}};
  }
  if (!lua_isnil(L, 5) && lua_getfield(L, 5, "metadata") == LUA_TTABLE) {
    if (!(b->meta = metadata_from_lua(L, lua_gettop(L), &e))) return lg_raise(L, index_path, &e);
  }
  if (gt_safetensors_write_set(sh, (size_t)n, b->meta, index_path, index, index_len, &e) != GT_OK)
    return lg_raise(L, NULL, &e);
  return 0;
}

/* core.write_file(path, bytes): small files (indexes) through the same
 * temp + fsync + rename path as tensor data. */
static int l_write_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t n;
  const char *bytes = luaL_checklstring(L, 2, &n);
  gt_err e;
  gt_out o;
  if (gt_out_open(&o, path, NULL, &e) != GT_OK) return lg_raise(L, path, &e);
  if (gt_out_write(&o, bytes, n, &e) != GT_OK) {
    gt_out_abort(&o);
    return lg_raise(L, path, &e);
  }
  if (gt_out_commit(&o, &e) != GT_OK) return lg_raise(L, path, &e);
  return 0;
}

/* core.zip_write(path, members): a stored zip of members {name=, data=}
 * (bytes) or {name=, file=} (a whole file, streamed), in order. */
static int l_zip_write(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 2);
  if (n < 0 || (lua_Unsigned)n > SIZE_MAX / sizeof(gt_zipw_src))
    return luaL_error(L, "graft: %s: too many zip members", path);
  gt_zipw_src *m = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *m, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    gt_zipw_src *s = &m[i - 1];
    memset(s, 0, sizeof *s);
    if (lua_geti(L, 2, i) != LUA_TTABLE)
      return luaL_error(L, "graft: %s: zip member %d is not a table", path, (int)i);
    /* The strings stay referenced by the members table for the call. */
    lua_getfield(L, -1, "name");
    s->name = lua_tostring(L, -1);
    lua_getfield(L, -2, "file");
    s->file = lua_tostring(L, -1);
    lua_getfield(L, -3, "data");
    s->bytes = lua_tolstring(L, -1, &s->n);
    if (!s->name || (!s->file && !s->bytes))
      return luaL_error(L, "graft: %s: zip member %d needs a name and data or file", path, (int)i);
    lua_pop(L, 4);
  }
  gt_err e;
  if (gt_zipw_write(path, m, (size_t)n, &e) != GT_OK) return lg_raise(L, path, &e);
  return 0;
}

/* Wall-clock seconds (monotonic), for the benchmark. */
static int l_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
  return 1;
}

/* Peak resident set size of this process so far, in bytes. */
static int l_maxrss(lua_State *L) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  lua_pushinteger(L, (lua_Integer)ru.ru_maxrss * 1024);
  return 1;
}

static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* sha256(bytes) -> lower-case hex digest (io/sha256.c). */
static int l_sha256(lua_State *L) {
  size_t n;
  const char *p = luaL_checklstring(L, 1, &n);
  gt_sha256 s;
  unsigned char d[32];
  char hex[65];
  gt_sha256_init(&s);
  gt_sha256_update(&s, p, n);
  gt_sha256_final(&s, d);
  gt_sha256_hex(d, hex);
  lua_pushstring(L, hex);
  return 1;
}

/* The progress function at stack index 2, called through lua_pcall so a
 * Lua error cannot jump over the C reader (its errors are dropped). */
static void sha_progress(uint64_t done, uint64_t total, void *ud) {
  lua_State *L = ud;
  lua_pushvalue(L, 2);
  lua_pushinteger(L, (lua_Integer)done);
  lua_pushinteger(L, (lua_Integer)total);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) lua_pop(L, 1);
}

/* sha256_file(path [, progress(done, total)]) -> hex digest, the file read
 * in 1 MiB chunks. */
static int l_sha256_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int has_progress = !lua_isnoneornil(L, 2);
  if (has_progress) luaL_checktype(L, 2, LUA_TFUNCTION);
  unsigned char d[32];
  char hex[65];
  gt_err e;
  if (gt_sha256_file(path, d, has_progress ? sha_progress : NULL, L, &e) != GT_OK)
    return lg_raise(L, path, &e);
  gt_sha256_hex(d, hex);
  lua_pushstring(L, hex);
  return 1;
}

/* null_at/arr_at: stack indices of the value JSON null becomes and of a
 * metatable set on arrays, or 0 (null is then nil, arrays plain tables). */
static void push_json(lua_State *L, const cJSON *j, int depth, int null_at, int arr_at) {
  if (depth > 200) luaL_error(L, "graft: JSON nested too deep");
  luaL_checkstack(L, 4, "JSON nested too deep");
  if (cJSON_IsObject(j)) {
    lua_newtable(L);
    for (const cJSON *c = j->child; c; c = c->next) {
      if (lua_getfield(L, -1, c->string ? c->string : "") != LUA_TNIL)
        luaL_error(L, "graft: JSON object has the key \"%s\" twice", c->string);
      lua_pop(L, 1);
      push_json(L, c, depth + 1, null_at, arr_at);
      lua_setfield(L, -2, c->string ? c->string : "");
    }
  } else if (cJSON_IsArray(j)) {
    lua_newtable(L);
    lua_Integer i = 0;
    for (const cJSON *c = j->child; c; c = c->next) {
      push_json(L, c, depth + 1, null_at, arr_at);
      lua_rawseti(L, -2, ++i);
    }
    if (arr_at) {
      lua_pushvalue(L, arr_at);
      lua_setmetatable(L, -2);
    }
  } else if (cJSON_IsString(j)) {
    lua_pushstring(L, j->valuestring);
  } else if (cJSON_IsNumber(j)) {
    double d = j->valuedouble;
    /* Range first: casting a double outside lua_Integer's range (1e21, a
     * NaN) is undefined behaviour. Within +-2^53 every integer is exact. */
    if (d > -9007199254740992.0 && d < 9007199254740992.0 && d == (double)(lua_Integer)d)
      lua_pushinteger(L, (lua_Integer)d);
    else
      lua_pushnumber(L, d);
  } else if (cJSON_IsBool(j)) {
    lua_pushboolean(L, cJSON_IsTrue(j));
  } else if (null_at) {
    lua_pushvalue(L, null_at);
  } else {
    lua_pushnil(L);
  }
}

static int json_box_gc(lua_State *L) {
  cJSON **b = lua_touserdata(L, 1);
  if (b && *b) {
    cJSON_Delete(*b);
    *b = NULL;
  }
  return 0;
}

/* core.json_decode(text [, null, array_mt]) -> Lua value (objects lose
 * key order). With `null`, JSON null decodes to that value (else nil); with
 * array_mt, every array gets that metatable. */
static int l_json_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int null_at = lua_isnoneornil(L, 2) ? 0 : 2;
  int arr_at = lua_istable(L, 3) ? 3 : 0;
  cJSON **b = lg_push_box(L, sizeof *b, "graft.jsonbox", json_box_gc);
  const char *end = NULL;
  *b = cJSON_ParseWithLengthOpts(s, n, &end, 0);
  if (!*b) return luaL_error(L, "graft: invalid JSON near byte %d", end ? (int)(end - s) : 0);
  while (end && end < s + n && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
    end++;
  if (end && end < s + n)
    return luaL_error(L, "graft: invalid JSON: text after the value at byte %d", (int)(end - s));
  push_json(L, *b, 0, null_at, arr_at);
  return 1;
}

/* core.formats(): the C registry, for the Lua one to be checked against. */
static int l_formats(lua_State *L) {
  lua_newtable(L);
  const gt_format *f;
  for (size_t i = 0; (f = gt_format_at(i)); i++) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, f->name);
    lua_setfield(L, -2, "name");
    lua_pushboolean(L, f->read != NULL);
    lua_setfield(L, -2, "read");
    lua_pushboolean(L, f->write != NULL);
    lua_setfield(L, -2, "write");
    const char *in = gt_input_name(f->input);
    if (in) lua_pushstring(L, in);
    else lua_pushnil(L);
    lua_setfield(L, -2, "input");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int zipdir_gc(lua_State *L) {
  gt_zip_dir *d = lua_touserdata(L, 1);
  if (d) gt_zip_dir_free(d);
  return 0;
}

/* core.zip_names(path) -> the member names in central directory order. */
static int l_zip_names(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  gt_err e;
  gt_storage *file = gt_storage_map(path, &e);
  if (!file) return lg_raise(L, path, &e);
  gt_zip_dir *d = lg_push_box(L, sizeof *d, "graft.zipdirbox", zipdir_gc);
  int rc = gt_zip_dir_read_file(file, d, &e);
  gt_storage_release(file);
  if (rc != GT_OK) return lg_raise(L, path, &e);
  lua_createtable(L, (int)d->n, 0);
  for (size_t i = 0; i < d->n; i++) {
    lua_pushlstring(L, d->m[i].name, d->m[i].name_len);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static const luaL_Reg funcs[] = {
  {"read", l_read}, {"write", l_write}, {"write_file", l_write_file},
  {"zip_write", l_zip_write}, {"safetensors_write_set", l_safetensors_write_set},
  {"formats", l_formats}, {"zip_names", l_zip_names},
  {"isatty", l_isatty}, {"now", l_now}, {"maxrss", l_maxrss}, {"json_decode", l_json_decode},
  {"sha256", l_sha256}, {"sha256_file", l_sha256_file}, {NULL, NULL}};

/* testing.sandbox_fault(kind): the next sandboxed children (libhdf5's
 * walk and reads) crash (1), hang (2) or allocate without bound (3) before
 * doing their work, or (4) a worker that has served before crashes; 0
 * turns it off (io/sandbox.h). */
static int l_sandbox_fault(lua_State *L) {
  gt_sandbox_test_fault((int)luaL_checkinteger(L, 1));
  return 0;
}

/* testing.sandbox_worker(on): whether file-backed libhdf5 work goes to
 * the persistent worker (true, the default) or to a child per call. */
static int l_sandbox_worker(lua_State *L) {
  gt_sandbox_test_worker(lua_toboolean(L, 1));
  return 0;
}

/* testing.sandbox_worker_pid(): the running worker's pid, or 0. */
static int l_sandbox_worker_pid(lua_State *L) {
  lua_pushinteger(L, gt_sandbox_worker_pid());
  return 1;
}

static const luaL_Reg testing[] = {{"sandbox_fault", l_sandbox_fault},
                                   {"sandbox_worker", l_sandbox_worker},
                                   {"sandbox_worker_pid", l_sandbox_worker_pid},
                                   {NULL, NULL}};

void lg_io_init(lua_State *L) {
  luaL_setfuncs(L, funcs, 0);
  lg_testing_add(L, testing);
}
