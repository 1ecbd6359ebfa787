/* lgraft_tf.c: the TensorFlow parts of graft.core.
 *
 * core.tf_write(prefix, names, tensors, num_shards [, shard_of [, progress]])
 *   shard_of: name -> 0-based shard (all 0 when absent)
 * core.tf_verify(prefix) -> number of entries whose crc32c was checked
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

static int l_tf_write(lua_State *L) {
  const char *prefix = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer ns = luaL_checkinteger(L, 4);
  int has_map = lua_istable(L, 5), has_prog = lua_isfunction(L, 6);
  lua_Integer n = lg_count_names(L, 2);
  if (ns < 1 || ns > GT_TFBUNDLE_MAX_SHARDS)
    return luaL_error(L, "graft: %s: num_shards must be in [1, %d]", prefix,
                      GT_TFBUNDLE_MAX_SHARDS);
  tf_box *b = new_box(L);
  size_t per = sizeof(gt_entry) + sizeof(int);
  b->p = calloc((size_t)(n ? n : 1), per);
  if (!b->p) return luaL_error(L, "graft: out of memory");
  gt_entry *entries = b->p;
  int *shard_of = (int *)(void *)(entries + (n ? n : 1));
  for (lua_Integer i = 1; i <= n; i++) {
    lg_entry(L, 2, 3, i, prefix, &entries[i - 1]);
    if (has_map) {
      lua_getfield(L, 5, entries[i - 1].name);
      shard_of[i - 1] = (int)luaL_optinteger(L, -1, 0);
      lua_pop(L, 1);
    }
  }
  lg_progress pc = {L, 6};
  gt_save s = {entries, (size_t)n, has_prog ? lg_progress_cb : NULL, &pc, NULL, 0};
  gt_tfbundle_opts o = {(int)ns, has_map ? shard_of : NULL};
  gt_err e;
  if (gt_tfbundle_write(prefix, &s, &o, &e) != GT_OK) return lg_raise(L, NULL, &e);
  return 0;
}

static int l_tf_verify(lua_State *L) {
  const char *prefix = luaL_checkstring(L, 1);
  size_t n;
  gt_err e;
  if (gt_tfbundle_verify(prefix, &n, &e) != GT_OK) return lg_raise(L, NULL, &e);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
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
  {"tf_write", l_tf_write}, {"tf_verify", l_tf_verify},
  {NULL, NULL}};

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
