/* lgraft_tf.c: the TensorFlow parts of graft.core.
 *
 * core.tf_verify(prefix) -> number of entries whose crc32c was checked
 * core.tf_open(prefix) -> tensors, names, meta: the bundle through its
 *   compact index (formats/tf/bundle.h gt_tfindex): tensors are lazy
 *   handles (lgraft.h) made on first use, meta.entries a proxy table whose
 *   records are made when read (and kept), iterable with pairs
 * Test hooks (core.testing), for specs that build and inspect fixtures:
 * testing.tftable_build(keys, values [, {block_size, restart_interval,
 *   snappy}]) -> bytes of a table (keys must increase strictly)
 * testing.tftable_read(path) -> keys, values, {snappy_blocks, data_blocks}
 * testing.tf_slice_key(name, starts, lengths) -> OrderedCode slice key
 *   (length -1 = the whole dimension)
 * testing.crc32c(bytes [, crc]) -> crc (continuing crc when given)
 * testing.crc32c_mask(c), testing.crc32c_unmask(m)
 * testing.crc32c_force_table(on), testing.crc32c_path() -> "sse4.2" |
 *   "table" */
#include <stdlib.h>
#include <string.h>

#include "io/crc32c.h"
#include "io/fileout.h"
#include "formats/tf/bundle.h"
#include "formats/tf/proto.h"
#include "formats/tf/table.h"
#include "lgraft.h"

/* A malloc'd block freed by __gc/__close, so a Lua error cannot leak it. */
typedef struct tf_box {
  void *p;
  gt_tfbuf buf;
  gt_tftable table;
  int table_open;
} tf_box;

static int tf_box_gc(lua_State *L) {
  tf_box *b = lua_touserdata(L, 1);
  if (b) {
    free(b->p);
    b->p = NULL;
    gt_tfbuf_free(&b->buf);
    if (b->table_open) gt_tftable_close(&b->table);
    b->table_open = 0;
  }
  return 0;
}

static tf_box *new_box(lua_State *L) {
  return lg_push_box(L, sizeof(tf_box), "graft.tfbox", tf_box_gc);
}

static int l_tf_verify(lua_State *L) {
  const char *prefix = luaL_checkstring(L, 1);
  size_t n;
  gt_err e;
  if (gt_tfbundle_verify(prefix, &n, &e) != GT_OK) return lg_raise(L, NULL, &e);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* ---- core.tf_open ----------------------------------------------------- */

/* The compact index as the lazy source of its model's handles; freed when
 * the last handle is made or released and meta.entries is collected. */
typedef struct tf_lazy {
  lg_lazy z;
  gt_tfindex *x;
} tf_lazy;

static int tfl_make(lg_lazy *z, uint32_t i, gt_tensor *out, gt_err *err) {
  return gt_tfindex_tensor(((tf_lazy *)z)->x, i, out, err);
}

static void tfl_peek(const lg_lazy *z, uint32_t i, gt_tensor *out) {
  gt_tfindex_peek(((const tf_lazy *)z)->x, i, out);
}

static void tfl_destroy(lg_lazy *z) {
  gt_tfindex_free(((tf_lazy *)z)->x);
  free(z);
}

/* One reference to a tf_lazy held by a Lua value (the upvalue of
 * meta.entries' metamethods), and the meta while it is being pushed. */
typedef struct tf_ref {
  tf_lazy *l;
  gt_value *meta;
} tf_ref;

#define TF_REF "graft.tfindexref"

static int tf_ref_gc(lua_State *L) {
  tf_ref *r = luaL_checkudata(L, 1, TF_REF);
  if (r->l) lg_lazy_release(&r->l->z);
  r->l = NULL;
  gt_value_free(r->meta);
  r->meta = NULL;
  return 0;
}

static tf_ref *push_ref(lua_State *L) {
  tf_ref *r = lua_newuserdatauv(L, sizeof *r, 0);
  memset(r, 0, sizeof *r);
  if (luaL_newmetatable(L, TF_REF)) {
    lua_pushcfunction(L, tf_ref_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return r;
}

/* meta.entries[key] of record r: {shard_id, offset, size, crc32c, dtype}. */
static void push_entry(lua_State *L, const gt_tfentry *e) {
  char nb[24];
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, e->shard_id);
  lua_setfield(L, -2, "shard_id");
  lua_pushinteger(L, e->offset);
  lua_setfield(L, -2, "offset");
  lua_pushinteger(L, e->size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, e->crc32c);
  lua_setfield(L, -2, "crc32c");
  lua_pushstring(L, gt_tf_dtype_name(e->tf_dtype, nb));
  lua_setfield(L, -2, "dtype");
}

/* Value of meta.entries (at 1) for record r, made once and kept in it.
 * The key string is at -1; it stays. */
static void entry_value(lua_State *L, const gt_tfindex *x, long r) {
  lua_pushvalue(L, -1);
  if (lua_rawget(L, 1) != LUA_TNIL) return;
  lua_pop(L, 1);
  gt_tfentry e;
  gt_tfindex_entry(x, (size_t)r, &e);
  push_entry(L, &e);
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
}

/* __index(entries, key): partitioned variables are not entries. */
static int entries_index(lua_State *L) {
  tf_ref *ref = lua_touserdata(L, lua_upvalueindex(1));
  size_t len;
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &len) : NULL;
  long r = k ? gt_tfindex_find(ref->l->x, k, len) : -1;
  gt_tfentry e;
  if (r >= 0) gt_tfindex_entry(ref->l->x, (size_t)r, &e);
  if (r < 0 || e.sliced) return 0;
  lua_settop(L, 2);
  entry_value(L, ref->l->x, r);
  return 1;
}

/* The iterator pairs(entries) returns: records in key order. */
static int entries_next(lua_State *L) {
  tf_ref *ref = lua_touserdata(L, lua_upvalueindex(1));
  const gt_tfindex *x = ref->l->x;
  lua_Integer r = lua_tointeger(L, lua_upvalueindex(2));
  gt_tfentry e;
  for (; (size_t)r < gt_tfindex_nentries(x); r++) {
    gt_tfindex_entry(x, (size_t)r, &e);
    if (!e.sliced) break;
  }
  if ((size_t)r >= gt_tfindex_nentries(x)) return 0;
  lua_pushinteger(L, r + 1);
  lua_replace(L, lua_upvalueindex(2));
  lua_settop(L, 1);
  lua_pushlstring(L, e.key, e.klen);
  entry_value(L, x, (long)r);
  return 2;
}

static int entries_pairs(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, entries_next, 2);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* meta.entries on top of the stack: an empty table whose metamethods read
 * the index held by the ref at `ref`. */
static void push_entries(lua_State *L, int ref) {
  lua_newtable(L);
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, ref);
  lua_pushcclosure(L, entries_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushvalue(L, ref);
  lua_pushcclosure(L, entries_pairs, 1);
  lua_setfield(L, -2, "__pairs");
  lua_setmetatable(L, -2);
}

/* The collector paused while a big index becomes handles: every object
 * made then stays live, so collecting would only re-mark the growing table
 * (about a fifth of opening 10^6 entries). A to-be-closed box restarts it,
 * on return and on error alike. */
typedef struct gc_pause {
  int was_running;
} gc_pause;

static int gc_resume(lua_State *L) {
  gc_pause *g = lua_touserdata(L, 1);
  if (g && g->was_running) lua_gc(L, LUA_GCRESTART);
  if (g) g->was_running = 0;
  return 0;
}

static void pause_gc(lua_State *L) {
  gc_pause *g = lg_push_box(L, sizeof *g, "graft.gcpause", gc_resume);
  g->was_running = lua_gc(L, LUA_GCISRUNNING);
  if (g->was_running) lua_gc(L, LUA_GCSTOP);
}

static int l_tf_open(lua_State *L) {
  const char *prefix = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  tf_ref *ref = push_ref(L);   /* 2: frees the index if we raise */
  tf_lazy *l = calloc(1, sizeof *l);
  if (!l) return luaL_error(L, "graft: %s: out of memory", prefix);
  l->z.refs = 1;
  l->z.make = tfl_make;
  l->z.peek = tfl_peek;
  l->z.destroy = tfl_destroy;
  ref->l = l;
  gt_err e;
  if (gt_tfindex_open(prefix, &l->x, &e) != GT_OK) return lg_raise(L, prefix, &e);
  const gt_tfindex *x = l->x;
  size_t n = gt_tfindex_count(x);
  int hint = n > (size_t)INT32_MAX ? INT32_MAX : (int)n;
  pause_gc(L);                   /* 3 */
  lua_createtable(L, 0, hint);   /* 4: tensors */
  lua_createtable(L, hint, 0);   /* 5: names */
  for (size_t k = 0; k < n; k++) {
    size_t r = gt_tfindex_listed(x, k), len;
    const char *key = gt_tfindex_key(x, r, &len);
    lua_pushlstring(L, key, len);
    lua_pushvalue(L, -1);
    lua_rawseti(L, 5, (lua_Integer)k + 1);
    lg_push_lazy(L, &l->z, (uint32_t)r);
    lua_rawset(L, 4);
  }
  ref->meta = gt_tfindex_take_meta(l->x);
  lg_push_value(L, ref->meta, 0);   /* 6 */
  gt_value_free(ref->meta);
  ref->meta = NULL;
  push_entries(L, 2);
  lua_setfield(L, 6, "entries");
  return 3;   /* the caller (formats/tf.lua) sets meta.format */
}

static int l_tftable_build(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  if (n < 0 || n > 1 << 24 || luaL_len(L, 2) != n)
    return luaL_error(L, "graft: tftable_build: keys and values differ in length");
  gt_tftable_opts o = {GT_TFTABLE_BLOCK_SIZE, GT_TFTABLE_RESTART_INTERVAL, 0};
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "block_size");
    o.block_size = (size_t)luaL_optinteger(L, -1, (lua_Integer)o.block_size);
    lua_getfield(L, 3, "restart_interval");
    o.restart_interval = (int)luaL_optinteger(L, -1, o.restart_interval);
    lua_getfield(L, 3, "snappy");
    o.snappy = lua_toboolean(L, -1);
    lua_pop(L, 3);
  }
  tf_box *b = new_box(L);
  b->p = calloc((size_t)(n ? n : 1), sizeof(gt_tfkv));
  if (!b->p) return luaL_error(L, "graft: out of memory");
  gt_tfkv *kv = b->p;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    lua_geti(L, 2, i);
    /* Both stay referenced by the argument tables. */
    kv[i - 1].key = (const unsigned char *)luaL_checklstring(L, -2, &kv[i - 1].klen);
    kv[i - 1].val = (const unsigned char *)luaL_checklstring(L, -1, &kv[i - 1].vlen);
    lua_pop(L, 2);
  }
  gt_err e;
  if (gt_tftable_build(kv, (size_t)n, &o, &b->buf, &e) != GT_OK)
    return lg_raise(L, NULL, &e);
  lua_pushlstring(L, (const char *)b->buf.p, b->buf.n);
  return 1;
}

static int l_tftable_read(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  tf_box *b = new_box(L);
  gt_err e;
  gt_storage *f = gt_storage_map(path, &e);
  if (!f) return lg_raise(L, path, &e);
  int rc = gt_tftable_open(&b->table, f, &e);
  gt_storage_release(f);
  if (rc != GT_OK) return lg_raise(L, path, &e);
  b->table_open = 1;
  lua_createtable(L, (int)b->table.n, 0);
  lua_createtable(L, (int)b->table.n, 0);
  for (size_t i = 0; i < b->table.n; i++) {
    lua_pushlstring(L, (const char *)b->table.kv[i].key, b->table.kv[i].klen);
    lua_rawseti(L, -3, (lua_Integer)i + 1);
    lua_pushlstring(L, (const char *)b->table.kv[i].val, b->table.kv[i].vlen);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, b->table.snappy_blocks);
  lua_setfield(L, -2, "snappy_blocks");
  lua_pushinteger(L, (lua_Integer)b->table.data_blocks);
  lua_setfield(L, -2, "data_blocks");
  return 3;
}

static int l_tf_slice_key(lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer rank = luaL_len(L, 2);
  if (rank < 0 || rank > GT_MAXDIM || luaL_len(L, 3) != rank)
    return luaL_error(L, "graft: tf_slice_key: starts and lengths differ");
  Tensorflow__TensorSliceProto sp = TENSORFLOW__TENSOR_SLICE_PROTO__INIT;
  Tensorflow__TensorSliceProto__Extent ex[GT_MAXDIM], *ep[GT_MAXDIM];
  for (lua_Integer d = 0; d < rank; d++) {
    tensorflow__tensor_slice_proto__extent__init(&ex[d]);
    lua_geti(L, 2, d + 1);
    lua_geti(L, 3, d + 1);
    lua_Integer st = luaL_checkinteger(L, -2), ln = luaL_checkinteger(L, -1);
    lua_pop(L, 2);
    if (ln >= 0) {
      ex[d].start = st;
      ex[d].has_length_case = TENSORFLOW__TENSOR_SLICE_PROTO__EXTENT__HAS_LENGTH_LENGTH;
      ex[d].length = ln;
    }
    ep[d] = &ex[d];
  }
  sp.n_extent = (size_t)rank;
  sp.extent = ep;
  tf_box *b = new_box(L);
  gt_err e;
  if (gt_tf_slice_key(name, len, &sp, (int)rank, &b->buf, &e) != GT_OK)
    return lg_raise(L, NULL, &e);
  lua_pushlstring(L, (const char *)b->buf.p, b->buf.n);
  return 1;
}

static int l_crc32c(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  uint32_t c = (uint32_t)luaL_optinteger(L, 2, 0);
  lua_pushinteger(L, gt_crc32c_extend(c, s, n));
  return 1;
}

static int l_crc32c_mask(lua_State *L) {
  lua_pushinteger(L, gt_crc32c_mask((uint32_t)luaL_checkinteger(L, 1)));
  return 1;
}

static int l_crc32c_unmask(lua_State *L) {
  lua_pushinteger(L, gt_crc32c_unmask((uint32_t)luaL_checkinteger(L, 1)));
  return 1;
}

static int l_crc32c_force_table(lua_State *L) {
  gt_crc32c_force_table(lua_toboolean(L, 1));
  return 0;
}

static int l_crc32c_path(lua_State *L) {
  lua_pushstring(L, gt_crc32c_path());
  return 1;
}

static const luaL_Reg funcs[] = {
  {"tf_verify", l_tf_verify}, {"tf_open", l_tf_open}, {NULL, NULL}};

/* testing.commit_crash_before(step): the next multi-file commit stops
 * before that step, as a kill would (io/fileout.h gt_out_commit_set). */
static int l_commit_crash_before(lua_State *L) {
  gt_out_test_crash_before((int)luaL_checkinteger(L, 1));
  return 0;
}

static const luaL_Reg testing[] = {
  {"commit_crash_before", l_commit_crash_before},
  {"tftable_build", l_tftable_build}, {"tftable_read", l_tftable_read},
  {"tf_slice_key", l_tf_slice_key}, {"crc32c", l_crc32c},
  {"crc32c_mask", l_crc32c_mask}, {"crc32c_unmask", l_crc32c_unmask},
  {"crc32c_force_table", l_crc32c_force_table}, {"crc32c_path", l_crc32c_path},
  {NULL, NULL}};

void lg_tf_init(lua_State *L) {
  luaL_setfuncs(L, funcs, 0);
  lg_testing_add(L, testing);
}
