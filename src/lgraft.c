/* lgraft.c: luaopen_graft_core, the one entry point of the C module. */
#include "lgraft.h"

int luaopen_graft_core(lua_State *L);

int luaopen_graft_core(lua_State *L) {
  lua_newtable(L);
  lg_tensor_init(L);
  lg_io_init(L);
  lg_tf_init(L);
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  return 1;
}
