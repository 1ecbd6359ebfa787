/* lgraft_tensor.c: the tensor userdata and graft.tensor/zeros/ones/full/
 * cat/stack.
 *
 * Every method returns a new userdata (never its receiver): views
 * (permute, narrow, ...) and casts share the storage; contiguous, clone,
 * cat, stack, bytes and totable move bytes through copy.h; comparisons and
 * stats are tensor/compare.c and tensor/stats.c; arithmetic (metamethods
 * and add/sub/mul/div/neg/sqrt/rsqrt) builds lazy expressions
 * (tensor/expr.c), sum/mean are tensor/reduce.c. This file only marshals.
 * Test hooks (scalar kernels, cast paths) go to core.testing. */
#include <stdlib.h>
#include <string.h>

#include "lgraft.h"
#include "tensor/cast.h"
#include "tensor/compare.h"
#include "tensor/copy.h"
#include "tensor/expr.h"
#include "tensor/reduce.h"
#include "tensor/stats.h"

/* ---- userdata plumbing ------------------------------------------------ */

gt_tensor *lg_push_tensor(lua_State *L, gt_tensor *t) {
  lg_tensor_full *u = lua_newuserdatauv(L, sizeof *u, 0);
  memset(u, 0, sizeof *u);
  u->h.kind = LG_FULL;
  luaL_setmetatable(L, LG_TENSOR);
  u->t = *t;
  memset(t, 0, sizeof *t);
  return &u->t;
}

void lg_lazy_retain(lg_lazy *z) { z->refs++; }

void lg_lazy_release(lg_lazy *z) {
  if (z && --z->refs == 0) z->destroy(z);
}

void lg_push_lazy(lua_State *L, lg_lazy *z, uint32_t i) {
  lg_tensor *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->kind = LG_GONE;
  u->p = NULL;
  u->i = 0;
  luaL_setmetatable(L, LG_TENSOR);
  lg_lazy_retain(z);
  u->p = z;
  u->i = i;
  u->kind = LG_LAZY;
}

/* The view of a handle, or NULL when released; a lazy one is made now. */
static gt_tensor *view_of(lua_State *L, lg_tensor *u) {
  switch (u->kind) {
  case LG_FULL: {
    gt_tensor *t = &((lg_tensor_full *)u)->t;
    return t->storage ? t : NULL;
  }
  case LG_MADE: return u->p;
  case LG_LAZY: {
    lg_lazy *z = u->p;
    gt_tensor *t = malloc(sizeof *t);
    gt_err e;
    if (!t) return luaL_error(L, "graft: out of memory for a tensor view"), NULL;
    if (z->make(z, u->i, t, &e) != GT_OK) {
      free(t);
      lg_raise(L, NULL, &e);
    }
    u->p = t;
    u->kind = LG_MADE;
    lg_lazy_release(z);
    return t;
  }
  default: return NULL;
  }
}

gt_tensor *lg_test_tensor(lua_State *L, int idx) {
  lg_tensor *u = luaL_testudata(L, idx, LG_TENSOR);
  return u ? view_of(L, u) : NULL;
}

int lg_released(lua_State *L, int idx) {
  lg_tensor *u = luaL_testudata(L, idx, LG_TENSOR);
  if (!u) return 0;
  return u->kind == LG_GONE ||
         (u->kind == LG_FULL && !((lg_tensor_full *)u)->t.storage);
}

gt_tensor *lg_check_tensor(lua_State *L, int idx) {
  lg_tensor *u = luaL_checkudata(L, idx, LG_TENSOR);
  gt_tensor *t = view_of(L, u);
  if (!t) luaL_error(L, "graft: " LG_RELEASED);
  return t;
}

/* dtype and shape of the handle at 1 without making a lazy one: into
 * *tmp (storage NULL) for a lazy handle. NULL when released. */
static const gt_tensor *peek_tensor(lua_State *L, gt_tensor *tmp) {
  lg_tensor *u = luaL_checkudata(L, 1, LG_TENSOR);
  if (u->kind != LG_LAZY) return view_of(L, u);
  const lg_lazy *z = u->p;
  z->peek(z, u->i, tmp);
  return tmp;
}

int lg_raise(lua_State *L, const char *ctx, const gt_err *e) {
  /* No "file:line:" prefix: the message already says where (the file and
   * tensor concerned), and the Lua caller is usually graft's own code. */
  if (ctx) lua_pushfstring(L, "graft: %s: %s", ctx, e->msg);
  else lua_pushfstring(L, "graft: %s", e->msg);
  return lua_error(L);
}

void lg_account(lua_State *L, size_t bytes) {
  /* LUA_GCSTEP with n: "as if n KB were allocated", so memory held by
   * tensors paces the collector like Lua's own allocations do. */
  if (bytes >= 65536) lua_gc(L, LUA_GCSTEP, (int)(bytes / 1024 > 1 << 30 ? 1 << 30 : bytes / 1024));
}

/* __gc and __close: the handle drops what it holds and is released. */
static int t_gc(lua_State *L) {
  lg_tensor *u = luaL_checkudata(L, 1, LG_TENSOR);
  switch (u->kind) {
  case LG_FULL: gt_tensor_free(&((lg_tensor_full *)u)->t); return 0;
  case LG_MADE: gt_tensor_free(u->p); free(u->p); break;
  case LG_LAZY: lg_lazy_release(u->p); break;
  default: break;
  }
  u->p = NULL;
  u->kind = LG_GONE;
  return 0;
}

int lg_dim(lua_State *L, int idx, int ndim) {
  lua_Integer d = luaL_checkinteger(L, idx);
  lua_Integer z = d < 0 ? d + ndim : d - 1;
  if (d == 0 || z < 0 || z >= ndim)
    return luaL_error(L, "graft: dimension %d out of range for a %d-d tensor",
                      (int)d, ndim);
  return (int)z;
}

gt_dtype lg_dtype(lua_State *L, int idx, int dflt) {
  if (dflt >= 0 && lua_isnoneornil(L, idx)) return (gt_dtype)dflt;
  const char *name = luaL_checkstring(L, idx);
  gt_dtype dt;
  if (gt_dtype_parse(name, &dt) != 0)
    luaL_error(L, "graft: unknown dtype '%s'", name);
  return dt;
}

int lg_shape(lua_State *L, int idx, int64_t *shape) {
  int n = 0;
  if (lua_istable(L, idx)) {
    lua_Integer len = luaL_len(L, idx);
    if (len > GT_MAXDIM) luaL_error(L, "graft: at most %d dimensions", GT_MAXDIM);
    for (n = 0; n < len; n++) {
      lua_geti(L, idx, n + 1);
      int ok;
      lua_Integer v = lua_tointegerx(L, -1, &ok);
      if (!ok) luaL_error(L, "graft: shape entry %d is not an integer", n + 1);
      shape[n] = v;
      lua_pop(L, 1);
    }
    return n;
  }
  int top = lua_gettop(L);
  for (int i = idx; i <= top; i++) {
    if (n >= GT_MAXDIM) luaL_error(L, "graft: at most %d dimensions", GT_MAXDIM);
    shape[n++] = luaL_checkinteger(L, i);
  }
  return n;
}

static void push_shape(lua_State *L, const gt_tensor *t) {
  lua_createtable(L, t->ndim, 0);
  for (int i = 0; i < t->ndim; i++) {
    lua_pushinteger(L, t->shape[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* Fields are read without making a lazy handle (graft ls on an index of
 * 10^6 entries makes none); methods make it. */
static int t_index(lua_State *L) {
  gt_tensor tmp;
  const gt_tensor *t = peek_tensor(L, &tmp);
  if (!t) return luaL_error(L, "graft: " LG_RELEASED);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "dtype") == 0) lua_pushstring(L, gt_dtype_name(t->dtype));
  else if (strcmp(k, "shape") == 0) push_shape(L, t);
  else if (strcmp(k, "ndim") == 0) lua_pushinteger(L, t->ndim);
  else if (strcmp(k, "numel") == 0) lua_pushinteger(L, gt_tensor_numel(t));
  else if (strcmp(k, "nbytes") == 0) lua_pushinteger(L, gt_tensor_nbytes(t));
  /* Elements per stored block: 1 for plain dtypes, 32 or 256 for ggml's
   * block-quantised ones (which only a format that keeps blocks stores). */
  else if (strcmp(k, "block") == 0) lua_pushinteger(L, gt_dtype_block(t->dtype));
  else {
    lua_getfield(L, lua_upvalueindex(1), k); /* methods */
  }
  return 1;
}

static int t_newindex(lua_State *L) {
  return luaL_error(L, "graft: tensor fields are read-only (%s)",
                    luaL_optstring(L, 2, "?"));
}

static int t_tostring(lua_State *L) {
  gt_tensor tmp;
  const gt_tensor *t = peek_tensor(L, &tmp);
  if (!t) {
    lua_pushliteral(L, "Tensor(released)");
    return 1;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_pushfstring(L, "Tensor(%s, {", gt_dtype_name(t->dtype));
  luaL_addvalue(&b);
  for (int i = 0; i < t->ndim; i++) {
    lua_pushfstring(L, i ? ",%I" : "%I", (lua_Integer)t->shape[i]);
    luaL_addvalue(&b);
  }
  luaL_addstring(&b, "})");
  luaL_pushresult(&b);
  return 1;
}

/* ---- views ------------------------------------------------------------ */

typedef int (*view1_fn)(const gt_tensor *, int, gt_tensor *, gt_err *);

static int push_result(lua_State *L, int rc, gt_tensor *out, gt_err *e) {
  if (rc != GT_OK) return lg_raise(L, NULL, e);
  lg_push_tensor(L, out);
  return 1;
}

/* Views go through gt_apply_view so that a view of an unevaluated
 * expression is applied to its operands and stays lazy (tensor/expr.h). */
static int transpose(const gt_tensor *t, int a, int b, gt_tensor *out,
                     gt_err *e) {
  gt_viewop op = {.kind = GT_VIEW_PERMUTE};
  if (a < 0 || a >= t->ndim || b < 0 || b >= t->ndim)
    return gt_transpose(t, a, b, out, e); /* its range error */
  for (int i = 0; i < t->ndim; i++) op.perm[i] = i;
  op.perm[a] = b;
  op.perm[b] = a;
  return gt_apply_view(t, &op, out, e);
}

static int narrow(const gt_tensor *t, int d, int64_t start, int64_t len,
                  gt_tensor *out, gt_err *e) {
  gt_viewop op = {.kind = GT_VIEW_NARROW, .dim = d, .start = start, .len = len};
  return gt_apply_view(t, &op, out, e);
}

static int t_permute(lua_State *L) {
  gt_tensor *t = lg_check_tensor(L, 1), out;
  gt_err e;
  int perm[GT_MAXDIM], n = 0;
  if (lua_istable(L, 2)) {
    n = (int)luaL_len(L, 2);
    if (n != t->ndim) goto count;
    for (int i = 0; i < n; i++) {
      lua_geti(L, 2, i + 1);
      perm[i] = lg_dim(L, -1, t->ndim);
      lua_pop(L, 1);
    }
  } else {
    n = lua_gettop(L) - 1;
    if (n != t->ndim) goto count;
    for (int i = 0; i < n; i++) perm[i] = lg_dim(L, i + 2, t->ndim);
  }
  gt_viewop op = {.kind = GT_VIEW_PERMUTE};
  memcpy(op.perm, perm, sizeof perm);
  return push_result(L, gt_apply_view(t, &op, &out, &e), &out, &e);
count:
  return luaL_error(L, "graft: permute needs %d dimensions, got %d", t->ndim, n);
}

static int t_transpose(lua_State *L) {
  gt_tensor *t = lg_check_tensor(L, 1), out;
  gt_err e;
  int a = lg_dim(L, 2, t->ndim), b = lg_dim(L, 3, t->ndim);
  return push_result(L, transpose(t, a, b, &out, &e), &out, &e);
}

static int t_t(lua_State *L) {
  gt_tensor *t = lg_check_tensor(L, 1), out;
  gt_err e;
  if (t->ndim > 2)
    return luaL_error(L, "graft: t() expects a tensor of at most 2 dims, got %d", t->ndim);
  if (t->ndim < 2) {
    gt_tensor_ref(&out, t);
    lg_push_tensor(L, &out);
    return 1;
  }
  return push_result(L, transpose(t, 0, 1, &out, &e), &out, &e);
}

static int t_narrow(lua_State *L) {
  gt_tensor *t = lg_check_tensor(L, 1), out;
  gt_err e;
  int d = lg_dim(L, 2, t->ndim);
  lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
  if (start < 0) start += t->shape[d] + 1;
  return push_result(L, narrow(t, d, start - 1, len, &out, &e), &out, &e);
}

static int t_select(lua_State *L) {
  gt_tensor *t = lg_check_tensor(L, 1), out;
  gt_err e;
  int d = lg_dim(L, 2, t->ndim);
  lua_Integer i = luaL_checkinteger(L, 3);
  if (i < 0) i += t->shape[d] + 1;
  gt_viewop op = {.kind = GT_VIEW_SELECT, .dim = d, .start = i - 1};
  return push_result(L, gt_apply_view(t, &op, &out, &e), &out, &e);
}

static int t_squeeze(lua_State *L) {
  gt_tensor *t = lg_check_tensor(L, 1), out;
  gt_err e;
  int d = lua_isnoneornil(L, 2) ? -1 : lg_dim(L, 2, t->ndim);
  gt_viewop op = {.kind = GT_VIEW_SQUEEZE, .dim = d};
  return push_result(L, gt_apply_view(t, &op, &out, &e), &out, &e);
}

static int t_unsqueeze(lua_State *L) {
  gt_tensor *t = lg_check_tensor(L, 1), out;
  gt_err e;
  int d = lg_dim(L, 2, t->ndim + 1);
  gt_viewop op = {.kind = GT_VIEW_UNSQUEEZE, .dim = d};
  return push_result(L, gt_apply_view(t, &op, &out, &e), &out, &e);
}

static int t_flip(lua_State *L) {
  gt_tensor *t = lg_check_tensor(L, 1), cur, nxt;
  gt_err e;
  int n = lua_gettop(L);
  gt_tensor_ref(&cur, t);
  for (int i = 2; i <= n || (n == 1 && i == 2); i++) {
    int d = n == 1 ? 0 : lg_dim(L, i, t->ndim);
    if (n == 1 && t->ndim == 0) break;
    gt_viewop op = {.kind = GT_VIEW_FLIP, .dim = d};
    if (gt_apply_view(&cur, &op, &nxt, &e) != GT_OK) {
      gt_tensor_free(&cur);
      return lg_raise(L, NULL, &e);
    }
    gt_tensor_free(&cur);
    cur = nxt;
    if (n == 1) break;
  }
  lg_push_tensor(L, &cur);
  return 1;
}

/* Resolve one -1 entry against numel (as torch's reshape does). */
static void infer_shape(lua_State *L, const gt_tensor *t, int n, int64_t *shape) {
  int64_t known = 1;
  int free_at = -1;
  for (int i = 0; i < n; i++) {
    if (shape[i] == -1) {
      if (free_at >= 0) luaL_error(L, "graft: reshape: only one dimension can be -1");
      free_at = i;
    } else if (shape[i] < 0) {
      luaL_error(L, "graft: reshape: negative size %d", (int)shape[i]);
    } else if (__builtin_mul_overflow(known, shape[i], &known)) {
      luaL_error(L, "graft: reshape: shape too large");
    }
  }
  if (free_at >= 0) {
    int64_t numel = gt_tensor_numel(t);
    if (known == 0 || numel % known)
      luaL_error(L, "graft: reshape: cannot infer -1 for %d elements", (int)numel);
    shape[free_at] = numel / known;
  }
}

static int reshape_impl(lua_State *L, int allow_copy) {
  gt_tensor *t = lg_check_tensor(L, 1), out, tmp;
  gt_err e;
  int64_t shape[GT_MAXDIM];
  int n = lg_shape(L, 2, shape), needs_copy;
  infer_shape(L, t, n, shape);
  if (gt_view_as(t, n, shape, &out, &needs_copy, &e) == GT_OK) {
    lg_push_tensor(L, &out);
    return 1;
  }
  if (!needs_copy || !allow_copy) return lg_raise(L, "view", &e);
  if (gt_contiguous(t, &tmp, &e) != GT_OK) return lg_raise(L, NULL, &e);
  lg_account(L, (size_t)gt_tensor_nbytes(&tmp));
  int rc = gt_view_as(&tmp, n, shape, &out, &needs_copy, &e);
  gt_tensor_free(&tmp);
  return push_result(L, rc, &out, &e);
}

static int t_reshape(lua_State *L) { return reshape_impl(L, 1); }
static int t_view(lua_State *L) { return reshape_impl(L, 0); }

/* split(size or {sizes}, dim=1) -> list of views */
static int t_split(lua_State *L) {
  gt_tensor *t = lg_check_tensor(L, 1), out;
  gt_err e;
  int d = lua_isnoneornil(L, 3) ? (t->ndim ? 0 : -1) : lg_dim(L, 3, t->ndim);
  if (d < 0) return luaL_error(L, "graft: split of a 0-d tensor");
  int64_t total = t->shape[d], start = 0;
  lua_newtable(L);
  int k = 0;
  if (lua_istable(L, 2)) {
    lua_Integer n = luaL_len(L, 2);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_geti(L, 2, i);
      lua_Integer len = luaL_checkinteger(L, -1);
      lua_pop(L, 1);
      if (narrow(t, d, start, len, &out, &e) != GT_OK) return lg_raise(L, "split", &e);
      lg_push_tensor(L, &out);
      lua_rawseti(L, -2, ++k);
      start += len;
    }
    if (start != total)
      return luaL_error(L, "graft: split sizes add up to %d, dimension has %d",
                        (int)start, (int)total);
    return 1;
  }
  lua_Integer size = luaL_checkinteger(L, 2);
  if (size <= 0) return luaL_error(L, "graft: split size must be positive");
  do {
    int64_t len = total - start < size ? total - start : size;
    if (narrow(t, d, start, len, &out, &e) != GT_OK) return lg_raise(L, "split", &e);
    lg_push_tensor(L, &out);
    lua_rawseti(L, -2, ++k);
    start += len;
  } while (start < total);
  return 1;
}

/* chunk(n, dim=1): n pieces of ceil(size/n) as torch does */
static int t_chunk(lua_State *L) {
  gt_tensor *t = lg_check_tensor(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  if (n <= 0) return luaL_error(L, "graft: chunk count must be positive");
  int d = lua_isnoneornil(L, 3) ? 0 : lg_dim(L, 3, t->ndim);
  if (t->ndim == 0) return luaL_error(L, "graft: chunk of a 0-d tensor");
  int64_t size = (t->shape[d] + n - 1) / n;
  if (size == 0) size = 1;
  lua_settop(L, 1);
  lua_pushcfunction(L, t_split);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, size);
  lua_pushinteger(L, d + 1);
  lua_call(L, 3, 1);
  return 1;
}

/* ---- materialising ---------------------------------------------------- */

static int t_contiguous(lua_State *L) {
  gt_tensor *t = lg_check_tensor(L, 1), out;
  gt_err e;
  if (gt_tensor_is_plain(t)) { /* a new handle on the same view */
    gt_tensor_ref(&out, t);
    lg_push_tensor(L, &out);
    return 1;
  }
  if (gt_contiguous(t, &out, &e) != GT_OK) return lg_raise(L, NULL, &e);
  lg_account(L, (size_t)gt_tensor_nbytes(&out));
  lg_push_tensor(L, &out);
  return 1;
}

static int t_clone(lua_State *L) {
  gt_tensor *t = lg_check_tensor(L, 1), out;
  gt_err e;
  if (gt_contiguous(t, &out, &e) != GT_OK) return lg_raise(L, NULL, &e);
  lg_account(L, (size_t)gt_tensor_nbytes(&out));
  lg_push_tensor(L, &out);
  return 1;
}

static int cast_to(lua_State *L, gt_tensor *t, gt_dtype to) {
  gt_tensor out, tmp;
  gt_err e;
  int needs_copy;
  if (gt_cast(t, to, &out, &needs_copy, &e) == GT_OK) {
    lg_push_tensor(L, &out);
    return 1;
  }
  if (!needs_copy) return lg_raise(L, NULL, &e);
  if (gt_contiguous(t, &tmp, &e) != GT_OK) return lg_raise(L, NULL, &e);
  lg_account(L, (size_t)gt_tensor_nbytes(&tmp));
  int rc = gt_cast(&tmp, to, &out, &needs_copy, &e);
  gt_tensor_free(&tmp);
  return push_result(L, rc, &out, &e);
}

static int t_cast(lua_State *L) {
  return cast_to(L, lg_check_tensor(L, 1), lg_dtype(L, 2, -1));
}
static int t_half(lua_State *L) { return cast_to(L, lg_check_tensor(L, 1), GT_F16); }
static int t_float(lua_State *L) { return cast_to(L, lg_check_tensor(L, 1), GT_F32); }
static int t_double(lua_State *L) { return cast_to(L, lg_check_tensor(L, 1), GT_F64); }
static int t_bf16(lua_State *L) { return cast_to(L, lg_check_tensor(L, 1), GT_BF16); }

static int t_bytes(lua_State *L) {
  gt_tensor *t = lg_check_tensor(L, 1);
  gt_err e;
  if (t->dtype == GT_STRING)
    return luaL_error(L, "graft: bytes() of a string tensor; use totable()");
  size_t n = (size_t)gt_tensor_nbytes(t);
  if (gt_materialise_check(t, n, &e) != GT_OK) return lg_raise(L, NULL, &e);
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, n);
  if (gt_copy_into(t, t->dtype, p, &e) != GT_OK) return lg_raise(L, NULL, &e);
  luaL_pushresultsize(&b, n);
  return 1;
}

/* Push element i of a materialised buffer of dtype dt. */
static void push_elem(lua_State *L, gt_dtype dt, const unsigned char *p) {
  switch (dt) {
  case GT_F64: { double v; memcpy(&v, p, 8); lua_pushnumber(L, v); break; }
  case GT_F32: { float v; memcpy(&v, p, 4); lua_pushnumber(L, v); break; }
  case GT_I64: { int64_t v; memcpy(&v, p, 8); lua_pushinteger(L, v); break; }
  case GT_I32: { int32_t v; memcpy(&v, p, 4); lua_pushinteger(L, v); break; }
  case GT_I16: { int16_t v; memcpy(&v, p, 2); lua_pushinteger(L, v); break; }
  case GT_I8: lua_pushinteger(L, (int8_t)p[0]); break;
  case GT_U64: { uint64_t v; memcpy(&v, p, 8); lua_pushinteger(L, (lua_Integer)v); break; }
  case GT_U32: { uint32_t v; memcpy(&v, p, 4); lua_pushinteger(L, v); break; }
  case GT_U16: { uint16_t v; memcpy(&v, p, 2); lua_pushinteger(L, v); break; }
  case GT_U8: lua_pushinteger(L, p[0]); break;
  case GT_BOOL: lua_pushboolean(L, p[0] != 0); break;
  case GT_C64: case GT_C128: {
    lua_createtable(L, 2, 0);
    for (int k = 0; k < 2; k++) {
      if (dt == GT_C64) { float v; memcpy(&v, p + 4 * k, 4); lua_pushnumber(L, v); }
      else { double v; memcpy(&v, p + 8 * k, 8); lua_pushnumber(L, v); }
      lua_rawseti(L, -2, k + 1);
    }
    break;
  }
  case GT_STRING: { gt_str s; memcpy(&s, p, sizeof s); lua_pushlstring(L, s.p, s.n); break; }
  default: lua_pushnil(L);
  }
}

static void push_nested(lua_State *L, const gt_tensor *t, int d,
                        const unsigned char **p, gt_dtype dt, size_t esz) {
  if (d == t->ndim) {
    push_elem(L, dt, *p);
    *p += esz;
    return;
  }
  luaL_checkstack(L, 4, "tensor too deep");
  lua_createtable(L, (int)(t->shape[d] > 1 << 24 ? 0 : t->shape[d]), 0);
  for (int64_t i = 0; i < t->shape[d]; i++) {
    push_nested(L, t, d + 1, p, dt, esz);
    lua_rawseti(L, -2, i + 1);
  }
}

static int t_totable(lua_State *L) {
  gt_tensor *t = lg_check_tensor(L, 1);
  gt_err e;
  /* Small floats become float64 first: Lua numbers are doubles. */
  gt_dtype dt = gt_dtype_is_float(t->dtype) || gt_dtype_block(t->dtype) > 1
                   ? GT_F64 : t->dtype;
  size_t esz = gt_dtype_size(dt), n = (size_t)gt_tensor_numel(t);
  if (n > (1u << 28)) return luaL_error(L, "graft: totable: tensor too large");
  if (gt_materialise_check(t, (uint64_t)n * esz, &e) != GT_OK)
    return lg_raise(L, "totable", &e);
  unsigned char *buf = lua_newuserdatauv(L, n * esz + 1, 0);
  if (gt_copy_into(t, dt, buf, &e) != GT_OK) return lg_raise(L, NULL, &e);
  const unsigned char *p = buf;
  push_nested(L, t, 0, &p, dt, esz);
  return 1;
}

/* ---- comparisons and stats (kernels in tensor/compare.c, stats.c) ----- */

/* equal(u) and allclose(u, rtol, atol): false for different shapes. */
static int equal_or_close(lua_State *L, int close) {
  gt_tensor *a = lg_check_tensor(L, 1), *b = lg_check_tensor(L, 2);
  double rtol = luaL_optnumber(L, 3, 1e-5), atol = luaL_optnumber(L, 4, 1e-8);
  gt_cmp r;
  gt_err e;
  if (gt_compare(a, b, rtol, atol, &r, &e) != GT_OK) return lg_raise(L, NULL, &e);
  lua_pushboolean(L, close ? r.close : r.equal);
  return 1;
}

static int t_equal(lua_State *L) { return equal_or_close(L, 0); }
static int t_allclose(lua_State *L) { return equal_or_close(L, 1); }

static int t_max_abs_diff(lua_State *L) {
  gt_tensor *a = lg_check_tensor(L, 1), *b = lg_check_tensor(L, 2);
  double d;
  gt_err e;
  if (gt_max_abs_diff(a, b, &d, &e) != GT_OK) return lg_raise(L, NULL, &e);
  lua_pushnumber(L, d);
  return 1;
}

/* diff(u) -> {equal, max_abs_diff, nan_mismatch} with NaN equal to NaN:
 * max_abs_diff over positions where neither side is NaN, nan_mismatch the
 * positions where exactly one is. Shapes must match. */
static int t_diff(lua_State *L) {
  gt_tensor *a = lg_check_tensor(L, 1), *b = lg_check_tensor(L, 2);
  gt_cmp r;
  gt_err e;
  if (a->ndim != b->ndim ||
      memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof a->shape[0]))
    return luaL_error(L, "graft: diff: shapes differ");
  if (gt_compare(a, b, 0.0, 0.0, &r, &e) != GT_OK) return lg_raise(L, NULL, &e);
  lua_createtable(L, 0, 3);
  lua_pushboolean(L, r.equal); lua_setfield(L, -2, "equal");
  lua_pushnumber(L, r.maxdiff_num); lua_setfield(L, -2, "max_abs_diff");
  lua_pushinteger(L, r.nan_mismatch); lua_setfield(L, -2, "nan_mismatch");
  return 1;
}

/* stats() -> {min, max, mean, std, nan} over non-NaN values, in float64. */
static int t_stats(lua_State *L) {
  gt_tensor *a = lg_check_tensor(L, 1);
  gt_stats s;
  gt_err e;
  if (gt_tensor_stats(a, &s, &e) != GT_OK) return lg_raise(L, NULL, &e);
  lua_createtable(L, 0, 5);
  lua_pushnumber(L, s.min); lua_setfield(L, -2, "min");
  lua_pushnumber(L, s.max); lua_setfield(L, -2, "max");
  lua_pushnumber(L, s.mean); lua_setfield(L, -2, "mean");
  lua_pushnumber(L, s.std); lua_setfield(L, -2, "std");
  lua_pushinteger(L, s.nan); lua_setfield(L, -2, "nan");
  return 1;
}

/* ---- arithmetic (lazy: tensor/expr.c) -------------------------------- */

/* A tensor or a Lua number at idx as an operand of op. */
static void check_operand(lua_State *L, int idx, const char *op, gt_operand *o) {
  memset(o, 0, sizeof *o);
  if (lua_type(L, idx) == LUA_TNUMBER) {
    o->is_int = lua_isinteger(L, idx);
    if (o->is_int) o->i = lua_tointeger(L, idx);
    else o->f = lua_tonumber(L, idx);
    return;
  }
  if (lg_released(L, idx)) luaL_error(L, "graft: %s: " LG_RELEASED, op);
  o->t = lg_test_tensor(L, idx);
  if (!o->t)
    luaL_error(L, "graft: %s: a tensor or a number expected, got %s", op,
               luaL_typename(L, idx));
}

static int binary(lua_State *L, gt_op op, const char *name) {
  gt_operand a, b;
  gt_tensor out;
  gt_err e;
  check_operand(L, 1, name, &a);
  check_operand(L, 2, name, &b);
  if (!a.t && !b.t) return luaL_error(L, "graft: %s: no tensor operand", name);
  return push_result(L, gt_expr_binary(op, &a, &b, &out, &e), &out, &e);
}

static int t_add(lua_State *L) { return binary(L, GT_OP_ADD, "add"); }
static int t_sub(lua_State *L) { return binary(L, GT_OP_SUB, "sub"); }
static int t_mul(lua_State *L) { return binary(L, GT_OP_MUL, "mul"); }
static int t_div(lua_State *L) { return binary(L, GT_OP_DIV, "div"); }

static int unary(lua_State *L, gt_op op) {
  gt_tensor *t = lg_check_tensor(L, 1), out;
  gt_err e;
  return push_result(L, gt_expr_unary(op, t, &out, &e), &out, &e);
}

static int t_neg(lua_State *L) { return unary(L, GT_OP_NEG); }
static int t_sqrt(lua_State *L) { return unary(L, GT_OP_SQRT); }
static int t_rsqrt(lua_State *L) { return unary(L, GT_OP_RSQRT); }

/* sum([dim [, keepdim]]) / mean(...): no dim reduces every element to a
 * 0-d tensor (a 1-element tensor of the input's rank with keepdim). */
static int reduce(lua_State *L, int mean) {
  gt_tensor *t = lg_check_tensor(L, 1), flat, out;
  gt_err e;
  int keepdim = lua_toboolean(L, 3);
  if (!lua_isnoneornil(L, 2)) {
    int d = lg_dim(L, 2, t->ndim);
    return push_result(L, gt_reduce(t, d, mean, keepdim, &out, &e), &out, &e);
  }
  int64_t n = gt_tensor_numel(t), ones[GT_MAXDIM];
  int needs_copy, rc;
  if (gt_view_as(t, 1, &n, &flat, &needs_copy, &e) == GT_OK) {
    rc = gt_reduce(&flat, 0, mean, 0, &out, &e);
    gt_tensor_free(&flat);
  } else if (needs_copy && gt_contiguous(t, &flat, &e) == GT_OK) {
    gt_tensor view;
    rc = gt_view_as(&flat, 1, &n, &view, &needs_copy, &e);
    gt_tensor_free(&flat);
    if (rc == GT_OK) {
      rc = gt_reduce(&view, 0, mean, 0, &out, &e);
      gt_tensor_free(&view);
    }
  } else {
    return lg_raise(L, NULL, &e);
  }
  if (rc == GT_OK && keepdim) {
    for (int i = 0; i < t->ndim; i++) ones[i] = 1;
    out.ndim = t->ndim;
    memcpy(out.shape, ones, (size_t)t->ndim * sizeof ones[0]);
    memcpy(out.strides, ones, (size_t)t->ndim * sizeof ones[0]);
  }
  return push_result(L, rc, &out, &e);
}

static int t_sum(lua_State *L) { return reduce(L, 0); }
static int t_mean(lua_State *L) { return reduce(L, 1); }

/* ---- constructors ----------------------------------------------------- */

static int is_intlike(gt_dtype d) { return gt_dtype_is_int(d) || d == GT_BOOL; }

/* Infer the shape of a nested Lua table (rectangular) into shape[]. */
static int table_shape(lua_State *L, int idx, int64_t *shape) {
  int n = 0;
  lua_pushvalue(L, idx);
  while (lua_istable(L, -1)) {
    if (n >= GT_MAXDIM) luaL_error(L, "graft: tensor: nested too deep");
    shape[n++] = (int64_t)luaL_len(L, -1);
    if (shape[n - 1] == 0) break;
    lua_geti(L, -1, 1);
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
  return n;
}

typedef struct fill { unsigned char *p; gt_dtype dt; int64_t i; } fill;

static void fill_nested(lua_State *L, int idx, int d, int nd,
                        const int64_t *shape, fill *f) {
  if (d == nd) {
    size_t esz = gt_dtype_size(f->dt);
    unsigned char *q = f->p + f->i * (int64_t)esz;
    f->i++;
    if (f->dt == GT_I64) {
      int ok;
      lua_Integer v = lua_tointegerx(L, idx, &ok);
      if (!ok) {
        if (lua_isboolean(L, idx)) v = lua_toboolean(L, idx);
        else luaL_error(L, "graft: tensor: element %d is not an integer", (int)f->i);
      }
      memcpy(q, &v, 8);
    } else {
      double v;
      if (lua_isboolean(L, idx)) v = lua_toboolean(L, idx);
      else if (lua_isnumber(L, idx)) v = lua_tonumber(L, idx);
      else return (void)luaL_error(L, "graft: tensor: element %d is not a number", (int)f->i);
      memcpy(q, &v, 8);
    }
    return;
  }
  if (!lua_istable(L, idx) || luaL_len(L, idx) != shape[d])
    luaL_error(L, "graft: tensor: ragged nested table at depth %d", d + 1);
  for (int64_t i = 1; i <= shape[d]; i++) {
    lua_geti(L, idx, i);
    fill_nested(L, lua_gettop(L), d + 1, nd, shape, f);
    lua_pop(L, 1);
  }
}

/* graft.tensor(bytes, dtype, shape) | graft.tensor(nested_table [, dtype])
 * | graft.tensor(number [, dtype]) */
static int g_tensor(lua_State *L) {
  gt_err e;
  gt_tensor out;
  int64_t shape[GT_MAXDIM];
  if (lua_type(L, 1) == LUA_TSTRING) {
    size_t len;
    const char *bytes = lua_tolstring(L, 1, &len);
    gt_dtype dt = lg_dtype(L, 2, -1);
    if (dt == GT_STRING) return luaL_error(L, "graft: tensor: string tensors from bytes are not supported");
    size_t esz = gt_dtype_size(dt);
    int n;
    if (lua_isnoneornil(L, 3)) {
      if (len % esz) return luaL_error(L, "graft: tensor: %d bytes is not a whole number of %s", (int)len, gt_dtype_name(dt));
      shape[0] = (int64_t)(len / esz * gt_dtype_block(dt));  /* quantised: blocks */
      n = 1;
    } else {
      n = lg_shape(L, 3, shape);
    }
    if (gt_tensor_zeros(&out, dt, n, shape, &e) != GT_OK) return lg_raise(L, "tensor", &e);
    if ((size_t)gt_tensor_nbytes(&out) != len) {
      int64_t need = gt_tensor_nbytes(&out);
      gt_tensor_free(&out);
      return luaL_error(L, "graft: tensor: %d bytes given, shape needs %d", (int)len, (int)need);
    }
    memcpy(out.storage->data, bytes, len);
    lg_account(L, len);
    lg_push_tensor(L, &out);
    return 1;
  }
  int has_shape = !lua_isnoneornil(L, 3);
  int n = lua_istable(L, 1) ? table_shape(L, 1, shape) : 0;
  if (!lua_istable(L, 1) && !lua_isnumber(L, 1) && !lua_isboolean(L, 1))
    return luaL_argerror(L, 1, "bytes, a nested table or a number expected");
  gt_dtype dt = lg_dtype(L, 2, GT_F32);
  if (dt == GT_STRING || gt_dtype_is_complex(dt))
    return luaL_error(L, "graft: tensor: %s tensors cannot be made from numbers", gt_dtype_name(dt));
  gt_tensor wide;
  gt_dtype wdt = is_intlike(dt) ? GT_I64 : GT_F64;
  if (gt_tensor_zeros(&wide, wdt, n, shape, &e) != GT_OK) return lg_raise(L, "tensor", &e);
  gt_tensor *keep = lg_push_tensor(L, &wide); /* freed by GC if we raise */
  fill f = {keep->storage->data, wdt, 0};
  fill_nested(L, 1, 0, n, shape, &f);
  if (gt_tensor_zeros(&out, dt, n, shape, &e) != GT_OK) return lg_raise(L, "tensor", &e);
  if (gt_copy_into(keep, dt, out.storage->data, &e) != GT_OK) {
    gt_tensor_free(&out);
    return lg_raise(L, "tensor", &e);
  }
  lg_account(L, (size_t)gt_tensor_nbytes(&out));
  lg_push_tensor(L, &out);
  if (has_shape) { /* graft.tensor(flat_table, dtype, shape) */
    lua_pushcfunction(L, t_reshape);
    lua_insert(L, -2);
    lua_pushvalue(L, 3);
    lua_call(L, 2, 1);
  }
  return 1;
}

static int g_zeros(lua_State *L) {
  gt_err e;
  gt_tensor out;
  int64_t shape[GT_MAXDIM];
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = lg_shape(L, 1, shape);
  gt_dtype dt = lg_dtype(L, 2, GT_F32);
  if (dt == GT_STRING) return luaL_error(L, "graft: zeros: no string tensors");
  if (gt_tensor_zeros(&out, dt, n, shape, &e) != GT_OK) return lg_raise(L, "zeros", &e);
  lg_account(L, (size_t)gt_tensor_nbytes(&out));
  lg_push_tensor(L, &out);
  return 1;
}

/* phantom(shape, dtype): a tensor with a shape and a dtype and no data
 * (tensor/storage.h): graft.map's dry run hands these to transforms. */
static int g_phantom(lua_State *L) {
  gt_err e;
  gt_tensor out;
  int64_t shape[GT_MAXDIM];
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = lg_shape(L, 1, shape);
  gt_dtype dt = lg_dtype(L, 2, -1);
  if (gt_tensor_phantom(&out, dt, n, shape, &e) != GT_OK) return lg_raise(L, "phantom", &e);
  lg_push_tensor(L, &out);
  return 1;
}

/* is_phantom(t): whether t is a view of a phantom. */
static int g_is_phantom(lua_State *L) {
  gt_tensor *t = lg_check_tensor(L, 1);
  lua_pushboolean(L, gt_storage_is_phantom(t->storage));
  return 1;
}

/* full(shape, value, dtype="float32"): one stored element, stride 0. */
static int full_impl(lua_State *L, int vidx, int didx, const char *name) {
  gt_err e;
  gt_tensor out;
  gt_operand v = {0};
  int64_t shape[GT_MAXDIM];
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = lg_shape(L, 1, shape);
  gt_dtype dt = lg_dtype(L, didx, GT_F32);
  if (vidx) {
    if (lua_isboolean(L, vidx)) {
      v.is_int = 1;
      v.i = lua_toboolean(L, vidx);
    } else {
      luaL_checknumber(L, vidx);
      v.is_int = lua_isinteger(L, vidx);
      if (v.is_int) v.i = lua_tointeger(L, vidx);
      else v.f = lua_tonumber(L, vidx);
    }
  } else {
    v.is_int = 1;
    v.i = 1;
  }
  if (gt_full(dt, n, shape, &v, &out, &e) != GT_OK) return lg_raise(L, name, &e);
  lg_push_tensor(L, &out);
  return 1;
}

static int g_ones(lua_State *L) { return full_impl(L, 0, 2, "ones"); }
static int g_full(lua_State *L) { return full_impl(L, 2, 3, "full"); }

static int cat_or_stack(lua_State *L, int stack) {
  gt_err e;
  gt_tensor out;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  if (n < 1) return luaL_error(L, "graft: %s of no tensors", stack ? "stack" : "cat");
  if (n > 1 << 20) return luaL_error(L, "graft: too many tensors");
  int has_dim = !lua_isnoneornil(L, 2);
  gt_tensor *ts = lua_newuserdatauv(L, (size_t)n * sizeof *ts, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    gt_tensor *t = lg_test_tensor(L, -1);
    if (!t)
      return luaL_error(L, "graft: element %d %s", (int)i,
                        lg_released(L, -1) ? "is a released tensor" : "is not a tensor");
    ts[i - 1] = *t; /* borrowed: the list keeps them alive */
    lua_pop(L, 1);
  }
  int nd = ts[0].ndim + (stack ? 1 : 0);
  int d = has_dim ? lg_dim(L, 2, nd) : 0;
  int rc = stack ? gt_stack(ts, (int)n, d, &out, &e) : gt_cat(ts, (int)n, d, &out, &e);
  if (rc != GT_OK) return lg_raise(L, NULL, &e);
  lg_account(L, (size_t)gt_tensor_nbytes(&out));
  lg_push_tensor(L, &out);
  return 1;
}

static int g_cat(lua_State *L) { return cat_or_stack(L, 0); }
static int g_stack(lua_State *L) { return cat_or_stack(L, 1); }

/* True for every tensor handle, released ones included: using one then
 * raises the released-tensor error instead of "not a tensor". */
static int g_is_tensor(lua_State *L) {
  lua_pushboolean(L, luaL_testudata(L, 1, LG_TENSOR) != NULL);
  return 1;
}

/* A tensor handle that was released (closed). */
static int g_is_released(lua_State *L) {
  lua_pushboolean(L, luaL_testudata(L, 1, LG_TENSOR) != NULL && lg_released(L, 1));
  return 1;
}

/* Same storage bytes? (used to keep tied weights tied when writing) */
static int t_storage_id(lua_State *L) {
  gt_tensor *t = lg_check_tensor(L, 1);
  lua_pushlightuserdata(L, t->storage);
  lua_pushinteger(L, t->offset);
  return 2;
}

static int g_cast_force_scalar(lua_State *L) {
  gt_cast_force_scalar(lua_toboolean(L, 1));
  return 0;
}

static int g_copy_force_scalar(lua_State *L) {
  gt_copy_force_scalar(lua_toboolean(L, 1));
  return 0;
}

static int g_cast_paths(lua_State *L) {
  lua_pushstring(L, gt_cast_paths());
  return 1;
}

static int g_threads(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) gt_set_threads((int)luaL_checkinteger(L, 1));
  lua_pushinteger(L, gt_get_threads());
  return 1;
}

static const luaL_Reg methods[] = {
  {"permute", t_permute}, {"transpose", t_transpose}, {"t", t_t},
  {"narrow", t_narrow}, {"select", t_select}, {"squeeze", t_squeeze},
  {"unsqueeze", t_unsqueeze}, {"flip", t_flip}, {"reshape", t_reshape},
  {"view", t_view}, {"split", t_split}, {"chunk", t_chunk},
  {"contiguous", t_contiguous}, {"clone", t_clone}, {"cast", t_cast},
  {"half", t_half}, {"float", t_float}, {"double", t_double},
  {"bfloat16", t_bf16}, {"bytes", t_bytes}, {"totable", t_totable},
  {"equal", t_equal}, {"allclose", t_allclose},
  {"max_abs_diff", t_max_abs_diff}, {"diff", t_diff}, {"stats", t_stats},
  {"storage_id", t_storage_id},
  {"add", t_add}, {"sub", t_sub}, {"mul", t_mul}, {"div", t_div},
  {"neg", t_neg}, {"sqrt", t_sqrt}, {"rsqrt", t_rsqrt},
  {"sum", t_sum}, {"mean", t_mean},
  {NULL, NULL}};

static const luaL_Reg funcs[] = {
  {"tensor", g_tensor}, {"zeros", g_zeros}, {"ones", g_ones},
  {"full", g_full}, {"cat", g_cat}, {"phantom", g_phantom}, {"is_phantom", g_is_phantom},
  {"stack", g_stack}, {"is_tensor", g_is_tensor}, {"is_released", g_is_released},
  {"threads", g_threads},
  {NULL, NULL}};

static int g_expr_loads(lua_State *L) {
  lua_pushinteger(L, gt_expr_loads());
  return 1;
}

static const luaL_Reg testing[] = {
  {"expr_loads", g_expr_loads},
  {"cast_force_scalar", g_cast_force_scalar}, {"cast_paths", g_cast_paths},
  {"copy_force_scalar", g_copy_force_scalar},
  {NULL, NULL}};

void lg_tensor_init(lua_State *L) {
  /* module table at -1 */
  luaL_newmetatable(L, LG_TENSOR);
  luaL_newlib(L, methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "methods"); /* core.methods, for Lua-side additions */
  lua_pushcclosure(L, t_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, t_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, t_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, t_gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, t_tostring);
  lua_setfield(L, -2, "__tostring");
  static const luaL_Reg arith[] = {
    {"__add", t_add}, {"__sub", t_sub}, {"__mul", t_mul}, {"__div", t_div},
    {"__unm", t_neg}, {NULL, NULL}};
  luaL_setfuncs(L, arith, 0);
  lua_pushliteral(L, "graft.tensor");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
  lg_testing_add(L, testing);
}
