/* lgraft.h: what the parts of the Lua binding (graft.core) share.
 *
 * The binding is the only code that knows Lua. It turns C-core failures
 * (gt_err) into Lua errors "graft: <context>: <message>" and keeps the
 * garbage collector informed of the memory tensors hold. */
#ifndef LGRAFT_H
#define LGRAFT_H

#include <lauxlib.h>
#include <lua.h>

#include "io/model.h"
#include "tensor/tensor.h"

#define LG_TENSOR "graft.tensor"

/* Tensor userdata: created "empty" (storage NULL) with its metatable set
 * before a storage is attached, so __gc always sees a consistent object. */
typedef struct lg_tensor {
  gt_tensor t;
} lg_tensor;

/* Every method returns a new handle (never its receiver), so closing a
 * result never releases its source. A handle released by __close (<close>
 * on it, or on a model table that closes its tensors) drops its one
 * storage reference and keeps its metatable with storage == NULL. */
#define LG_RELEASED "tensor is released (closed); this handle cannot be used"

/* New userdata whose tensor takes over *t (t is zeroed). */
lg_tensor *lg_push_tensor(lua_State *L, gt_tensor *t);
/* The tensor at idx; raises "graft: tensor is released ..." for a
 * released handle and a type error for anything else. */
gt_tensor *lg_check_tensor(lua_State *L, int idx);
/* The tensor at idx, or NULL (not a tensor, or released). */
gt_tensor *lg_test_tensor(lua_State *L, int idx);
/* Whether idx holds a released tensor handle. */
int lg_released(lua_State *L, int idx);

/* Raise "graft: [ctx: ]msg". Never returns. */
int lg_raise(lua_State *L, const char *ctx, const gt_err *e);
/* Tell the GC that `bytes` outside its heap were allocated. */
void lg_account(lua_State *L, size_t bytes);

/* 1-based / negative Lua dim -> 0-based, raising when out of [1, ndim]. */
int lg_dim(lua_State *L, int idx, int ndim);
/* dtype name at idx (or default when absent and dflt >= 0). */
gt_dtype lg_dtype(lua_State *L, int idx, int dflt);
/* Shape from varargs of integers starting at idx, or from one table. */
int lg_shape(lua_State *L, int idx, int64_t *shape);

/* A zeroed userdata whose __gc and __close are `gc` (metatable `tname`),
 * marked to-be-closed, so C resources it owns are freed on return and on
 * error alike. */
void *lg_push_box(lua_State *L, size_t size, const char *tname,
                  lua_CFunction gc);

/* Progress bridge for gt_save: calls the Lua function at stack index `fn`
 * protected (its errors are dropped), so a Lua error never unwinds through
 * a C writer. */
typedef struct lg_progress {
  lua_State *L;
  int fn;
} lg_progress;
void lg_progress_cb(void *ctx, uint64_t done, uint64_t total);

/* Length of the names array at idx, raising "graft: too many tensors"
 * beyond 2^24. */
lua_Integer lg_count_names(lua_State *L, int idx);
/* out <- names[i] (array at `names`) and tensors[names[i]] (table at
 * `tensors`): the tensor is borrowed and the name kept alive by the names
 * table. Raises "graft: <ctx>: names[i] is not a string" or "...: \"<name>\"
 * is not a tensor". The stack is left as it was. */
void lg_entry(lua_State *L, int names, int tensors, lua_Integer i,
              const char *ctx, gt_entry *out);

/* Push a gt_value tree as plain Lua values (tensor refs resolved through
 * the list of tensor userdata at index `tensors`, or 0). */
void lg_push_value(lua_State *L, const gt_value *v, int tensors);

/* Adds fns to core.testing (module table at -1; created on first use).
 * core.testing holds every test-only hook: switches that force a code path
 * (scalar kernels, table crc32c, ZIP64 thresholds) and access to internals
 * that specs build or inspect fixtures with. It is not part of the API. */
void lg_testing_add(lua_State *L, const luaL_Reg *fns);

void lg_tensor_init(lua_State *L);  /* adds tensor functions to module */
void lg_io_init(lua_State *L);      /* adds read/write functions */
void lg_tf_init(lua_State *L);      /* adds TensorFlow helpers (lgraft_tf.c) */

#endif
