/* lgraft_gguf.c: the GGUF writer from Lua.
 *
 * core.gguf_write(path, names, tensors, kv, types, alignment [, progress])
 * kv is the list graft.meta gives for a GGUF file ({key, type, value
 * [, item_type]} tables, arrays as lists); types maps a tensor name to the
 * dtype to store it as ("q8_0" / "q4_0" quantise; absent: its own dtype).
 * Which keys and types to write is policy, decided in lua/graft/formats. */
#include <string.h>

#include "formats/gguf.h"
#include "io/fileout.h"
#include "lgraft.h"

/* A plain Lua value as a gt_value: tables with a non-empty array part (or
 * empty) become LISTs, other tables MAPs with string keys. */
static gt_value *from_lua(lua_State *L, int idx, int depth, gt_err *e) {
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
        gt_value *x = from_lua(L, lua_gettop(L), depth + 1, e);
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
      gt_value *x = from_lua(L, lua_gettop(L), depth + 1, e);
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

typedef struct gguf_box {
  gt_value *kv;
} gguf_box;

static int box_gc(lua_State *L) {
  gguf_box *b = lua_touserdata(L, 1);
  if (b) {
    gt_value_free(b->kv);
    b->kv = NULL;
  }
  return 0;
}

static int l_gguf_write(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  luaL_checktype(L, 5, LUA_TTABLE);
  lua_Integer align = luaL_checkinteger(L, 6);
  int has_prog = lua_isfunction(L, 7);
  gt_err e;
  if (align <= 0 || align > UINT32_MAX)
    return luaL_error(L, "graft: %s: alignment %d out of range", path, (int)align);
  lua_Integer n = lg_count_names(L, 2);
  gguf_box *b = lg_push_box(L, sizeof *b, "graft.ggufbox", box_gc);
  gt_entry *entries = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(gt_entry), 0);
  gt_dtype *types = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(gt_dtype), 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lg_entry(L, 2, 3, i, path, &entries[i - 1]);
    types[i - 1] = entries[i - 1].t.dtype;
    if (lua_getfield(L, 5, entries[i - 1].name) != LUA_TNIL)
      types[i - 1] = lg_dtype(L, lua_gettop(L), -1);
    lua_pop(L, 1);
  }
  if (!(b->kv = from_lua(L, 4, 0, &e))) return lg_raise(L, path, &e);
  lg_progress pc = {L, 7};
  gt_save s = {entries, (size_t)n, has_prog ? lg_progress_cb : NULL, &pc, NULL, 0};
  if (gt_out_check_inputs(path, s.entries, s.n, &e) != GT_OK ||
      gt_gguf_write(path, &s, b->kv, types, (uint32_t)align, &e) != GT_OK)
    return lg_raise(L, path, &e);
  return 0;
}

static const luaL_Reg funcs[] = {{"gguf_write", l_gguf_write}, {NULL, NULL}};

void lg_gguf_init(lua_State *L) { luaL_setfuncs(L, funcs, 0); }
