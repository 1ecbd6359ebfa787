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

/* A source of tensors made on first use (lazy handles): a big index opens
 * as one handle of a few bytes per entry (lg_push_lazy), whose view is made
 * when the handle is first used. Reference-counted: each lazy handle holds
 * one reference until it is made or released. */
typedef struct lg_lazy {
  size_t refs;
  /* The view of entry i (a new storage reference); GT_ERR on failure. */
  int (*make)(struct lg_lazy *z, uint32_t i, gt_tensor *out, gt_err *err);
  /* dtype, ndim and shape of entry i into out (storage NULL). */
  void (*peek)(const struct lg_lazy *z, uint32_t i, gt_tensor *out);
  void (*destroy)(struct lg_lazy *z);   /* when refs drops to 0 */
} lg_lazy;
void lg_lazy_retain(lg_lazy *z);
void lg_lazy_release(lg_lazy *z);

/* Tensor userdata. A full handle (lg_push_tensor) holds its view inline:
 * created "empty" (storage NULL) with its metatable set before a storage
 * is attached, so __gc always sees a consistent object. A lazy handle
 * (lg_push_lazy) is only this header (16 bytes): LG_LAZY until first used,
 * then LG_MADE with its view malloc'd. */
enum { LG_FULL, LG_LAZY, LG_MADE, LG_GONE };
typedef struct lg_tensor {
  void *p;              /* LG_LAZY: the lg_lazy; LG_MADE: the gt_tensor */
  uint32_t i;           /* LG_LAZY: the entry */
  unsigned char kind;   /* LG_GONE: a released lazy handle */
} lg_tensor;
typedef struct lg_tensor_full {
  lg_tensor h;          /* kind LG_FULL */
  gt_tensor t;          /* storage NULL once released */
} lg_tensor_full;

/* Every method returns a new handle (never its receiver), so closing a
 * result never releases its source. A handle released by __close (<close>
 * on it, or on a model table that closes its tensors) drops its one
 * storage reference and keeps its metatable with storage == NULL. */
#define LG_RELEASED "tensor is released (closed); this handle cannot be used"

/* New full userdata whose tensor takes over *t (t is zeroed); returns its
 * view. */
gt_tensor *lg_push_tensor(lua_State *L, gt_tensor *t);
/* New lazy handle on entry i of z (retains z). */
void lg_push_lazy(lua_State *L, lg_lazy *z, uint32_t i);
/* The tensor at idx (a lazy handle is made here, raising if that fails);
 * raises "graft: tensor is released ..." for a released handle and a type
 * error for anything else. */
gt_tensor *lg_check_tensor(lua_State *L, int idx);
/* The tensor at idx, or NULL (not a tensor, or released); a lazy handle is
 * made here. */
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
