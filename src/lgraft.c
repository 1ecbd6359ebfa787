/* lgraft.c: luaopen_graft_core, the one entry point of the C module. */
#include "lgraft.h"

#include "tensor/cap.h"

#include <string.h>

#include "io/zipwrite.h"

void *lg_push_box(lua_State *L, size_t size, const char *tname,
                  lua_CFunction gc) {
  void *b = lua_newuserdatauv(L, size, 0);
  memset(b, 0, size);
  if (luaL_newmetatable(L, tname)) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  lua_toclose(L, -1);
  return b;
}

void lg_progress_cb(void *ctx, uint64_t done, uint64_t total) {
  lg_progress *p = ctx;
  lua_pushvalue(p->L, p->fn);
  lua_pushinteger(p->L, (lua_Integer)done);
  lua_pushinteger(p->L, (lua_Integer)total);
  if (lua_pcall(p->L, 2, 0, 0) != LUA_OK) lua_pop(p->L, 1);
}

lua_Integer lg_count_names(lua_State *L, int idx) {
  lua_Integer n = luaL_len(L, idx);
  if (n < 0 || n > 1 << 24) return luaL_error(L, "graft: too many tensors");
  return n;
}

void lg_entry(lua_State *L, int names, int tensors, lua_Integer i,
              const char *ctx, gt_entry *out) {
  lua_geti(L, names, i);
  const char *name = lua_tostring(L, -1);
  if (!name) luaL_error(L, "graft: %s: names[%d] is not a string", ctx, (int)i);
  lua_getfield(L, tensors, name);
  gt_tensor *t = lg_test_tensor(L, -1);
  if (!t)
    luaL_error(L, "graft: %s: \"%s\" %s", ctx, name,
               lg_released(L, -1) ? "is a released tensor" : "is not a tensor");
  out->name = (char *)name;
  out->t = *t;
  lua_pop(L, 2);
}

void lg_testing_add(lua_State *L, const luaL_Reg *fns) {
  if (lua_getfield(L, -1, "testing") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "testing");
  }
  luaL_setfuncs(L, fns, 0);
  lua_pop(L, 1);
}

/* testing.zip64_at(size [, offset]): the member size (and offset, default
 * size) from which the zip writer uses ZIP64 fields; 0 restores 4 GiB. */
static int l_zip64_at(lua_State *L) {
  lua_Integer size = luaL_checkinteger(L, 1);
  lua_Integer off = luaL_optinteger(L, 2, size);
  luaL_argcheck(L, size >= 0, 1, "must be >= 0");
  luaL_argcheck(L, off >= 0, 2, "must be >= 0");
  gt_zipw_test_thresholds((uint64_t)size, (uint64_t)off);
  return 0;
}

/* testing.max_bytes([n]): the GRAFT_MAX_BYTES cap (cap.h); with n, set it
 * (0 re-reads the environment). Returns the cap in force before. */
static int l_max_bytes(lua_State *L) {
  uint64_t old = gt_max_bytes();
  if (!lua_isnoneornil(L, 1)) {
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0, 1, "must be >= 0");
    gt_set_max_bytes((uint64_t)n);
  }
  lua_pushinteger(L, old > (uint64_t)LUA_MAXINTEGER ? LUA_MAXINTEGER
                                                     : (lua_Integer)old);
  return 1;
}

static const luaL_Reg testing[] = {{"zip64_at", l_zip64_at},
                                   {"max_bytes", l_max_bytes}, {NULL, NULL}};

int luaopen_graft_core(lua_State *L);

int luaopen_graft_core(lua_State *L) {
  lua_newtable(L);
  lg_tensor_init(L);
  lg_io_init(L);
  lg_tf_init(L);
  lg_testing_add(L, testing);
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  return 1;
}
