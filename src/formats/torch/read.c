/* read.c: PyTorch files (read.h): what every layout shares, and
 * gt_torch_read's dispatch to zip.c and old.c (reader.h says which file
 * holds which layout).
 *
 * Reading runs in three steps:
 *   1. unpickle with hooks: persistent ids become storage handles
 *      (GT_V_TENSOR, f = 1, i = index in rd.st), tensor rebuilds become
 *      tensor records (GT_V_TENSOR, f = 0, i = index in rd.rec);
 *   2. give every storage its bytes (zip record, legacy block, or bytes
 *      inside the pickle), checking sizes against the persistent ids;
 *   3. walk the tree in pickle order: each tensor leaf becomes a named
 *      entry (its view checked against its storage) and the tree becomes
 *      the metadata tree. */
#include "formats/torch/read.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/torch/reader.h"
#include "io/grow.h"
#include "io/pickle.h"
#include "io/zipmap.h"

/* ------------------------------------------------------------ state */

void gt_torch_reader_free(reader *r) {
  for (size_t i = 0; i < r->nst; i++) {
    free(r->st[i].key);
    if (r->st[i].s) gt_storage_release(r->st[i].s);
  }
  for (size_t i = 0; i < r->nrec; i++) free(r->rec[i].dims);
  free(r->st);
  free(r->hash);
  free(r->rec);
  free(r->tkeys);
  free(r->path);
  gt_value_free(r->globals);
}

/* ------------------------------------------------------------ storages */

static uint64_t fnv(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static int rehash(reader *r) {
  size_t cap = r->hash_cap ? r->hash_cap * 2 : 64;
  size_t *h = calloc(cap, sizeof *h);
  if (!h) return GT_ERR;
  for (size_t i = 0; i < r->nst; i++) {
    if (!r->st[i].key) continue;
    size_t j = (size_t)fnv(r->st[i].key) & (cap - 1);
    while (h[j]) j = (j + 1) & (cap - 1);
    h[j] = i + 1;
  }
  free(r->hash);
  r->hash = h;
  r->hash_cap = cap;
  return GT_OK;
}

/* Index of the storage named key, adding it when new (*isnew set). */
int gt_torch_storage_for(reader *r, const char *key, size_t *idx, int *isnew,
                         gt_err *err) {
  *isnew = 0;
  if (r->hash_cap) {
    size_t j = (size_t)fnv(key) & (r->hash_cap - 1);
    while (r->hash[j]) {
      if (strcmp(r->st[r->hash[j] - 1].key, key) == 0) {
        *idx = r->hash[j] - 1;
        return GT_OK;
      }
      j = (j + 1) & (r->hash_cap - 1);
    }
  }
  if (gt_grow((void **)&r->st, &r->cap_st, r->nst + 1, sizeof *r->st))
    return gt_fail(err, "out of memory");
  tstore *s = &r->st[r->nst];
  memset(s, 0, sizeof *s);
  if (!(s->key = strdup(key))) return gt_fail(err, "out of memory");
  *idx = r->nst++;
  *isnew = 1;
  if (r->nst * 2 > r->hash_cap) {
    if (rehash(r)) return gt_fail(err, "out of memory");
  } else {
    size_t j = (size_t)fnv(key) & (r->hash_cap - 1);
    while (r->hash[j]) j = (j + 1) & (r->hash_cap - 1);
    r->hash[j] = *idx + 1;
  }
  return GT_OK;
}

/* A storage without a key whose bytes are already known. */
int gt_torch_inline_storage(reader *r, const gt_torch_type *t, uint64_t numel,
                            gt_storage *s, size_t *idx, gt_err *err) {
  if (gt_grow((void **)&r->st, &r->cap_st, r->nst + 1, sizeof *r->st)) {
    gt_storage_release(s);
    return gt_fail(err, "out of memory");
  }
  tstore *x = &r->st[r->nst];
  memset(x, 0, sizeof *x);
  x->type = t;
  x->numel = numel;
  x->s = s;
  *idx = r->nst++;
  return GT_OK;
}

/* ------------------------------------------------------------ hooks */

/* "torch.FloatStorage", "torch.cuda.FloatStorage" -> its type. */
const gt_torch_type *gt_torch_storage_class(const gt_value *g) {
  if (!g || g->kind != GT_V_OBJECT || g->i != 0 || !g->str) return NULL;
  const char *n = g->str;
  if (strncmp(n, "torch.cuda.", 11) == 0) n += 11;
  else if (strncmp(n, "torch.storage.", 14) == 0) n += 14;
  else if (strncmp(n, "torch.", 6) == 0) n += 6;
  else return NULL;
  return gt_torch_type_by_storage(n);
}

static gt_value *storage_handle(size_t idx, gt_err *err) {
  gt_value *v = gt_value_new(GT_V_TENSOR);
  if (!v) gt_fail(err, "out of memory");
  else {
    v->i = (int64_t)idx;
    v->f = 1;
  }
  return v;
}

static gt_value *pid_storage(reader *r, const gt_value *pid, gt_err *err) {
  size_t want = r->legacy ? 6 : 5;
  if (pid->n != want)
    return gt_fail(err, "storage persistent id has %zu items, expected %zu", pid->n, want), NULL;
  const gt_torch_type *t = gt_torch_storage_class(pid->items[1]);
  if (!t) {
    const gt_value *g = pid->items[1];
    return gt_fail(err, "unknown storage type %s",
                   g && g->kind == GT_V_OBJECT && g->str ? g->str : "(not a global)"), NULL;
  }
  char kbuf[32];
  const char *key = text_of(pid->items[2]);
  int64_t ik, numel;
  if (key && strlen(key) != pid->items[2]->len) /* a NUL would cut the key */
    return gt_fail(err, "storage persistent id key \"%.200s\\0...\" holds a NUL byte", key), NULL;
  if (!key && gt_pickle_int(pid->items[2], &ik) == GT_OK) {
    snprintf(kbuf, sizeof kbuf, "%lld", (long long)ik);
    key = kbuf;
  }
  if (!key || !*key || strlen(key) > 1024 || strchr(key, '/'))
    return gt_fail(err, "storage persistent id with a bad key"), NULL;
  if (!text_of(pid->items[3]))
    return gt_fail(err, "storage \"%s\": location is not a string", key), NULL;
  if (gt_pickle_int(pid->items[4], &numel) != GT_OK || numel < 0)
    return gt_fail(err, "storage \"%s\": element count is not a non-negative integer", key), NULL;
  if (r->legacy && pid->items[5]->kind != GT_V_NIL)
    return gt_fail(err, "storage \"%s\": legacy storage views are not supported", key), NULL;
  size_t idx;
  int isnew;
  if (gt_torch_storage_for(r, key, &idx, &isnew, err) != GT_OK) return NULL;
  tstore *s = &r->st[idx];
  if (isnew) {
    s->type = t;
    s->numel = (uint64_t)numel;
  } else if (s->type != t || s->numel != (uint64_t)numel) {
    return gt_fail(err, "storage \"%s\" is declared twice with different types or sizes", key), NULL;
  }
  return storage_handle(idx, err);
}

static gt_value *persistent_load(void *ctx, const gt_value *pid, gt_err *err) {
  reader *r = ctx;
  if (r->tar) return gt_torch_tar_pid(r, pid, err);
  const char *tag = pid->kind == GT_V_LIST ? text_of(gt_pickle_item(pid, 0)) : NULL;
  if (tag && strcmp(tag, "storage") == 0) return pid_storage(r, pid, err);
  if (tag && strcmp(tag, "module") == 0 && r->legacy && pid->n >= 2) {
    /* ('module', class, source_file, source): the class of a pickled
     * nn.Module, saved with its source; only its name is kept. */
    const gt_value *cls = pid->items[1];
    if (cls && cls->kind == GT_V_OBJECT && cls->i == 0 && cls->str) {
      gt_value *g = gt_value_new(GT_V_OBJECT);
      if (g && (g->str = strdup(cls->str))) {
        g->len = strlen(g->str);
        return g;
      }
      gt_value_free(g);
      return gt_fail(err, "out of memory"), NULL;
    }
  }
  return gt_fail(err, "unsupported persistent id (only ('storage', ...) ids are read)"), NULL;
}

static int shape_of(const gt_value *tup, int64_t *out, int *n, const char *what,
                    gt_err *err) {
  if (!tup || tup->kind != GT_V_LIST) return gt_fail(err, "tensor %s is not a tuple", what);
  if (tup->n > GT_MAXDIM)
    return gt_fail(err, "tensor %s has %zu dimensions (at most %d)", what, tup->n, GT_MAXDIM);
  for (size_t i = 0; i < tup->n; i++)
    if (gt_pickle_int(tup->items[i], &out[i]) != GT_OK || out[i] < 0)
      return gt_fail(err, "tensor %s holds something other than a non-negative integer", what);
  *n = (int)tup->n;
  return GT_OK;
}

int gt_torch_add_record(reader *r, size_t st, const gt_torch_type *t, int64_t off,
                        int ndim, const int64_t *shape, const int64_t *strides,
                        int swap, size_t *idx, gt_err *err) {
  if (gt_grow((void **)&r->rec, &r->cap_rec, r->nrec + 1, sizeof *r->rec))
    return gt_fail(err, "out of memory");
  trec *x = &r->rec[r->nrec];
  x->dims = malloc(sizeof(int64_t) * (size_t)(ndim ? 2 * ndim : 1));
  if (!x->dims) return gt_fail(err, "out of memory");
  if (ndim) {
    memcpy(x->dims, shape, sizeof(int64_t) * (size_t)ndim);
    memcpy(x->dims + ndim, strides, sizeof(int64_t) * (size_t)ndim);
  }
  x->st = st;
  x->type = t;
  x->off = off;
  x->ndim = ndim;
  x->swap = swap;
  *idx = r->nrec++;
  return GT_OK;
}

/* _rebuild_tensor (v1: storage, offset, size, stride), _v2 (+ requires_grad,
 * hooks[, metadata]) and _v3 (+ dtype after hooks). */
int gt_torch_rebuild(reader *r, gt_value *obj, const gt_value *args, int v3,
                     gt_err *err) {
  const gt_value *sv = gt_pickle_item(args, 0);
  int64_t off, shape[GT_MAXDIM], strides[GT_MAXDIM];
  int nd, ns;
  if (!sv || sv->kind != GT_V_TENSOR || sv->f != 1)
    return gt_fail(err, "%s: the first argument is not a storage", obj->str);
  if (gt_pickle_int(gt_pickle_item(args, 1), &off) != GT_OK || off < 0)
    return gt_fail(err, "%s: storage offset is not a non-negative integer", obj->str);
  if (shape_of(gt_pickle_item(args, 2), shape, &nd, "size", err) ||
      shape_of(gt_pickle_item(args, 3), strides, &ns, "stride", err))
    return gt_wrap(err, "%s", obj->str);
  if (nd != ns) return gt_fail(err, "%s: size and stride differ in length", obj->str);
  const tstore *s = &r->st[sv->i];
  const gt_torch_type *t = s->type;
  if (v3) {
    const gt_value *dt = gt_pickle_item(args, 6);
    const gt_torch_type *d = NULL;
    if (dt && dt->kind == GT_V_OBJECT && dt->i == 0 && strncmp(dt->str, "torch.", 6) == 0)
      d = gt_torch_type_by_dtype(dt->str + 6);
    if (!d) return gt_fail(err, "%s: the dtype argument is not a torch dtype", obj->str);
    if (t != gt_torch_untyped() && t != d)
      return gt_fail(err, "%s: dtype %s on a %s", obj->str, d->dtype, t->storage);
    t = d;
  } else if (t == gt_torch_untyped()) {
    return gt_fail(err, "%s: an untyped storage needs _rebuild_tensor_v3", obj->str);
  }
  size_t idx;
  if (gt_torch_add_record(r, (size_t)sv->i, t, off, nd, shape, strides, -1, &idx, err))
    return GT_ERR;
  gt_pickle_become(obj, GT_V_TENSOR, (int64_t)idx, 0);
  return GT_OK;
}

static int is_tensor_leaf(const gt_value *v) {
  return v && v->kind == GT_V_TENSOR && v->f == 0;
}

/* ------------------------------------------------------------ numpy */

static int np_name(const char *g, const char *fn) {
  const char *mods[] = {"numpy.core.multiarray.", "numpy._core.multiarray.",
                        "numpy.core.numeric.", "numpy._core.numeric."};
  for (int i = 0; i < 4; i++) {
    size_t n = strlen(mods[i]);
    if (strncmp(g, mods[i], n) == 0 && strcmp(g + n, fn) == 0) return 1;
  }
  return 0;
}

/* A numpy.dtype placeholder: numpy.dtype(code, align, copy) + BUILD state
 * (version, byteorder, ...). Sets the graft dtype and whether it is
 * big-endian; GT_ERR for dtypes graft has no counterpart for. */
static int np_dtype(const gt_value *d, gt_dtype *dt, int *swap) {
  if (!gt_pickle_is_instance(d, "numpy.dtype")) return GT_ERR;
  const char *code = text_of(gt_pickle_item(d->items[GT_PK_ARGS], 0));
  if (!code) return GT_ERR;
  static const struct { const char *code; gt_dtype dt; } map[] = {
    {"f2", GT_F16}, {"f4", GT_F32}, {"f8", GT_F64}, {"i1", GT_I8},
    {"i2", GT_I16}, {"i4", GT_I32}, {"i8", GT_I64}, {"u1", GT_U8},
    {"u2", GT_U16}, {"u4", GT_U32}, {"u8", GT_U64}, {"b1", GT_BOOL},
    {"c8", GT_C64}, {"c16", GT_C128}};
  int found = 0;
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (strcmp(code, map[i].code) == 0) {
      *dt = map[i].dt;
      found = 1;
    }
  if (!found) return GT_ERR;
  const char *order = text_of(gt_pickle_item(d->items[GT_PK_STATE], 1));
  *swap = order && order[0] == '>' && gt_dtype_size(*dt) > 1;
  return GT_OK;
}

/* Bytes of a numpy array inside the pickle, as a storage. */
gt_storage *gt_torch_pickled_bytes(reader *r, const gt_value *b, gt_err *err) {
  if (b->f >= 0 && r->inline_ok)
    return gt_storage_region(r->file, (uint64_t)b->f, b->len, err);
  gt_storage *s = gt_storage_new(b->len, 0, err);
  if (s && b->len) memcpy(s->data, b->str, b->len);
  return s;
}

/* The lazy copy of a misaligned region to aligned memory. */
static int load_copy(gt_storage *s, gt_err *err) {
  if (gt_storage_ready(s->parent, err) != GT_OK || gt_storage_alloc_data(s, err) != GT_OK)
    return GT_ERR;
  if (s->size) memcpy(s->data, s->parent->data, s->size);
  return GT_OK;
}

gt_storage *gt_torch_aligned(gt_storage *s, size_t align, gt_err *err) {
  if (!s || align <= 1 || ((uintptr_t)s->data % align) == 0) return s;
  gt_storage *c = gt_storage_lazy(s->size, s, load_copy, NULL, NULL, err);
  gt_storage_release(s);
  return c;
}

/* An array from its dtype, shape, Fortran flag and bytes. */
static int np_array(reader *r, gt_value *obj, const gt_value *dtype,
                    const gt_value *shape_t, int fortran, const gt_value *bytes,
                    gt_err *err) {
  gt_dtype dt;
  int swap, nd;
  int64_t shape[GT_MAXDIM], strides[GT_MAXDIM], numel;
  if (np_dtype(dtype, &dt, &swap) != GT_OK || !bytes || bytes->kind != GT_V_STR)
    return GT_OK; /* object arrays, strings, records: left as placeholders */
  if (shape_of(shape_t, shape, &nd, "shape", err) || gt_numel(nd, shape, &numel, err))
    return gt_wrap(err, "numpy array");
  size_t es = gt_dtype_size(dt);
  uint64_t nbytes;
  if (gt_mul_u64((uint64_t)numel, es, (unsigned long long *)&nbytes) || nbytes != bytes->len)
    return gt_fail(err, "numpy array: %zu data bytes for %lld elements of %zu bytes",
                   bytes->len, (long long)numel, es);
  int64_t st = 1;
  for (int i = 0; i < nd; i++) {
    int k = fortran ? i : nd - 1 - i;
    strides[k] = st;
    st *= shape[k] ? shape[k] : 1;
  }
  gt_storage *s = gt_torch_aligned(gt_torch_pickled_bytes(r, bytes, err), es, err);
  size_t idx = 0, rec;
  if (!s || gt_torch_inline_storage(r, gt_torch_type_of(dt), (uint64_t)numel, s, &idx, err))
    return GT_ERR;
  if (gt_torch_add_record(r, idx, gt_torch_type_of(dt), 0, nd, shape, strides, swap, &rec, err))
    return GT_ERR;
  gt_pickle_become(obj, GT_V_TENSOR, (int64_t)rec, 0);
  return GT_OK;
}

/* numpy.core.multiarray.scalar(dtype, bytes) -> a number. */
static void np_scalar(gt_value *obj, const gt_value *args) {
  gt_dtype dt;
  int swap;
  const gt_value *b = gt_pickle_item(args, 1);
  if (np_dtype(gt_pickle_item(args, 0), &dt, &swap) != GT_OK || !b ||
      b->kind != GT_V_STR || b->len != gt_dtype_size(dt) || b->len > 8 ||
      gt_dtype_is_complex(dt) || dt == GT_F16)
    return;
  unsigned char buf[8];
  for (size_t i = 0; i < b->len; i++)
    buf[i] = (unsigned char)b->str[swap ? b->len - 1 - i : i];
  union { double d; float f; int64_t i64; int32_t i32; int16_t i16; int8_t i8;
          uint64_t u64; uint32_t u32; uint16_t u16; uint8_t u8; } u;
  memcpy(&u, buf, b->len);
  switch (dt) {
  case GT_F64: gt_pickle_become(obj, GT_V_FLOAT, 0, u.d); break;
  case GT_F32: gt_pickle_become(obj, GT_V_FLOAT, 0, u.f); break;
  case GT_I64: gt_pickle_become(obj, GT_V_INT, u.i64, 0); break;
  case GT_I32: gt_pickle_become(obj, GT_V_INT, u.i32, 0); break;
  case GT_I16: gt_pickle_become(obj, GT_V_INT, u.i16, 0); break;
  case GT_I8: gt_pickle_become(obj, GT_V_INT, u.i8, 0); break;
  case GT_U64: gt_pickle_become(obj, GT_V_FLOAT, 0, (double)u.u64); break;
  case GT_U32: gt_pickle_become(obj, GT_V_INT, u.u32, 0); break;
  case GT_U16: gt_pickle_become(obj, GT_V_INT, u.u16, 0); break;
  case GT_U8: gt_pickle_become(obj, GT_V_INT, u.u8, 0); break;
  case GT_BOOL: gt_pickle_become(obj, GT_V_BOOL, u.u8 != 0, 0); break;
  default: break;
  }
}

static int numpy_hook(reader *r, gt_value *obj, int built, gt_err *err) {
  const gt_value *args = obj->items[GT_PK_ARGS];
  if (built && np_name(obj->str, "_reconstruct")) {
    const gt_value *st = obj->items[GT_PK_STATE];
    int64_t fortran = 0;
    if (!st || st->kind != GT_V_LIST || st->n != 5) return GT_OK;
    gt_pickle_int(st->items[3], &fortran);
    return np_array(r, obj, st->items[2], st->items[1], fortran != 0, st->items[4], err);
  }
  if (!built && np_name(obj->str, "_frombuffer")) {
    const char *order = text_of(gt_pickle_item(args, 3));
    return np_array(r, obj, gt_pickle_item(args, 1), gt_pickle_item(args, 2),
                    order && order[0] == 'F', gt_pickle_item(args, 0), err);
  }
  if (!built && np_name(obj->str, "scalar")) np_scalar(obj, args);
  return GT_OK;
}

/* ------------------------------------------------------------ object hook */

static int rebuild_kind(const char *g) {
  if (strcmp(g, "torch._utils._rebuild_tensor") == 0) return 1;
  if (strcmp(g, "torch._utils._rebuild_tensor_v2") == 0) return 2;
  if (strcmp(g, "torch._utils._rebuild_tensor_v3") == 0) return 3;
  return 0;
}

static int object_hook(void *ctx, gt_value *obj, int built, gt_err *err) {
  reader *r = ctx;
  const char *g = obj->str;
  const gt_value *args = obj->items[GT_PK_ARGS];
  if (!built && strcmp(g, "torch.storage._load_from_bytes") == 0) {
    const gt_value *b = gt_pickle_item(args, 0);
    if (b && args->n == 1 && b->kind == GT_V_STR && b->i == 1)
      return gt_torch_from_bytes(r, obj, b, err);
    return GT_OK;
  }
  if (!built) {
    int k = rebuild_kind(g);
    if (k) return gt_torch_rebuild(r, obj, args, k == 3, err);
    if (strcmp(g, "torch._tensor._rebuild_from_type_v2") == 0) {
      /* (func, new_type, args, state): a tensor subclass around func(*args) */
      const gt_value *fn = gt_pickle_item(args, 0), *fa = gt_pickle_item(args, 2);
      if (fn && fn->kind == GT_V_OBJECT && fn->i == 0 && (k = rebuild_kind(fn->str)) &&
          fa && fa->kind == GT_V_LIST)
        return gt_torch_rebuild(r, obj, fa, k == 3, err);
      return GT_OK;
    }
    if (strcmp(g, "torch._utils._rebuild_parameter") == 0 ||
        strcmp(g, "torch._utils._rebuild_parameter_with_state") == 0 ||
        strcmp(g, "torch.nn.parameter.Parameter") == 0) {
      const gt_value *d = gt_pickle_item(args, 0);
      if (is_tensor_leaf(d)) gt_pickle_become_copy(obj, d);
      return GT_OK;
    }
  }
  if (gt_torch_old_hook(r, obj, built, err)) return GT_ERR;
  if (obj->kind != GT_V_OBJECT) return GT_OK;
  return numpy_hook(r, obj, built, err);
}

/* ------------------------------------------------------------ step 3: names */

int gt_torch_path_push(reader *r, const char *seg, size_t n, size_t *mark, gt_err *err) {
  *mark = r->path_len;
  if (n && memchr(seg, 0, n)) /* names are C strings: a NUL would cut them */
    return gt_fail(err, "key \"%.200s\\0...\" under \"%.200s\" holds a NUL byte", seg,
                   r->path_len ? r->path : "(top)");
  size_t need = r->path_len + n + 2;
  if (gt_grow((void **)&r->path, &r->path_cap, need, 1)) return gt_fail(err, "out of memory");
  if (r->path_len) r->path[r->path_len++] = '.';
  if (n) memcpy(r->path + r->path_len, seg, n);
  r->path_len += n;
  r->path[r->path_len] = 0;
  return GT_OK;
}

void gt_torch_path_pop(reader *r, size_t mark) {
  r->path_len = mark;
  if (r->path) r->path[mark] = 0;
}

/* A tensor view from record k, added to the model as the current path. */
static int make_entry(reader *r, size_t k, int64_t *entry, gt_err *err) {
  const trec *x = &r->rec[k];
  const tstore *s = &r->st[x->st];
  const char *name = r->path_len ? r->path : "tensor";
  if (x->type->gt < 0)
    return gt_fail(err, "tensor \"%s\": torch dtype %s has no graft dtype", name, x->type->dtype);
  gt_tensor t;
  memset(&t, 0, sizeof t);
  t.dtype = t.sdtype = (gt_dtype)x->type->gt;
  size_t es = gt_dtype_size(t.dtype);
  t.swap = (x->swap >= 0 ? x->swap : r->swap) && es > 1;
  t.ndim = x->ndim;
  memcpy(t.shape, x->dims, sizeof(int64_t) * (size_t)x->ndim);
  memcpy(t.strides, x->dims + x->ndim, sizeof(int64_t) * (size_t)x->ndim);
  if (__builtin_mul_overflow(x->off, (int64_t)es, &t.offset))
    return gt_fail(err, "tensor \"%s\": storage offset overflows", name);
  t.storage = s->s;
  if (gt_tensor_check(&t, err) != GT_OK)
    return gt_wrap(err, "tensor \"%s\" (storage \"%s\", offset %lld)", name,
                   s->key ? s->key : "inline", (long long)x->off);
  gt_storage_retain(t.storage);
  *entry = (int64_t)r->m->n;
  return gt_model_add(r->m, name, strlen(name), &t, err);
}

/* A whole storage saved as a value: a 1-D tensor of its elements. */
static int storage_entry(reader *r, size_t st, int64_t *entry, gt_err *err) {
  const tstore *s = &r->st[st];
  if (s->type->gt < 0) { /* e.g. inside a quantized tensor placeholder */
    *entry = -1;
    return GT_OK;
  }
  int64_t shape = (int64_t)s->numel, stride = 1;
  size_t k;
  if (gt_torch_add_record(r, st, s->type, 0, 1, &shape, &stride, -1, &k, err)) return GT_ERR;
  return make_entry(r, k, entry, err);
}

static int note_global(reader *r, const char *name, gt_err *err) {
  for (size_t i = 0; i < r->globals->n; i++)
    if (strcmp(r->globals->items[i]->str, name) == 0) return GT_OK;
  if (gt_value_push(r->globals, gt_value_str(name, strlen(name))))
    return gt_fail(err, "out of memory");
  return GT_OK;
}

static gt_value *walk(reader *r, const gt_value *v, int name_tensors, gt_err *err);

/* A storage of a type graft cannot present: {storage, dtype, numel}. */
static gt_value *storage_placeholder(const tstore *s, gt_err *err) {
  gt_value *o = gt_value_new(GT_V_MAP);
  int bad = !o || gt_value_setk(o, "storage", gt_value_str(s->key ? s->key : "", s->key ? strlen(s->key) : 0));
  bad = bad || gt_value_setk(o, "dtype", gt_value_str(s->type->dtype, strlen(s->type->dtype)));
  bad = bad || gt_value_setk(o, "numel", gt_value_int((int64_t)s->numel));
  if (bad) {
    gt_value_free(o);
    return gt_fail(err, "out of memory"), NULL;
  }
  return o;
}

/* Key text for names: strings as they are, integers in decimal. */
static size_t key_segment(const gt_value *k, char *buf, size_t cap, const char **seg) {
  switch (k->kind) {
  case GT_V_STR: *seg = k->str; return k->len;
  case GT_V_INT: *seg = buf; return (size_t)snprintf(buf, cap, "%lld", (long long)k->i);
  case GT_V_BOOL: *seg = k->i ? "True" : "False"; return strlen(*seg);
  case GT_V_FLOAT: *seg = buf; return (size_t)snprintf(buf, cap, "%.17g", k->f);
  case GT_V_NIL: *seg = "None"; return 4;
  default: *seg = "?"; return 1;
  }
}

static int module_slot(const char *k) {
  return strcmp(k, "_parameters") == 0 || strcmp(k, "_buffers") == 0 ||
         strcmp(k, "_modules") == 0;
}

/* Children of a MAP (transparent: module slots add no name segment). */
static gt_value *walk_map(reader *r, const gt_value *v, int name_tensors,
                          int transparent_slots, gt_err *err) {
  gt_value *o = gt_value_new(GT_V_MAP);
  if (!o) return gt_fail(err, "out of memory"), NULL;
  for (size_t i = 0; i < v->n; i++) {
    char buf[64];
    const char *seg;
    size_t n = key_segment(v->keys[i], buf, sizeof buf, &seg), mark = r->path_len;
    int skip = transparent_slots && v->keys[i]->kind == GT_V_STR && module_slot(v->keys[i]->str) &&
               v->items[i]->kind == GT_V_MAP;
    if (!skip && gt_torch_path_push(r, seg, n, &mark, err)) goto bad;
    gt_value *key = walk(r, v->keys[i], 0, err);
    gt_value *item = key ? walk(r, v->items[i], name_tensors, err) : NULL;
    gt_torch_path_pop(r, mark);
    if (!item) {
      gt_value_free(key);
      goto bad;
    }
    if (key->kind == GT_V_FLOAT && key->f != key->f) { /* NaN cannot be a Lua key */
      gt_value_free(key);
      key = gt_value_str("nan", 3);
    }
    if (gt_value_set(o, key, item)) {
      gt_fail(err, "out of memory");
      goto bad;
    }
  }
  return o;
bad:
  gt_value_free(o);
  return NULL;
}

/* walk(v) with seg (n bytes; NULL: none) added to the name path; state:
 * v is a MAP whose module slots add no segment (a pickled state). */
static gt_value *walk_at(reader *r, const char *seg, size_t n, const gt_value *v,
                         int name_tensors, int state, gt_err *err) {
  size_t mark = r->path_len;
  if (seg && gt_torch_path_push(r, seg, n, &mark, err)) return NULL;
  gt_value *w = state ? walk_map(r, v, name_tensors, 1, err) : walk(r, v, name_tensors, err);
  gt_torch_path_pop(r, mark);
  return w;
}

static gt_value *walk_list(reader *r, const gt_value *v, int name_tensors, gt_err *err) {
  gt_value *o = gt_value_new(GT_V_LIST);
  if (!o) return gt_fail(err, "out of memory"), NULL;
  for (size_t i = 0; i < v->n; i++) {
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%zu", i);
    gt_value *item = walk_at(r, buf, (size_t)n, v->items[i], name_tensors, 0, err);
    if (!item || gt_value_push(o, item)) {
      if (item) gt_fail(err, "out of memory");
      goto bad;
    }
  }
  return o;
bad:
  gt_value_free(o);
  return NULL;
}

/* Whether g names a torch class or function that makes a plain tensor or
 * storage: left as a placeholder it means data was lost (quantized, sparse
 * and other rebuilds graft has no tensor for stay inert and are listed). */
static int tensor_maker(const char *g) {
  static const char *exact[] = {
    "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state", "torch.nn.parameter.Parameter",
    "torch.storage._load_from_bytes", "torch.autograd.variable.Variable",
    "torch.Tensor", "torch._tensor._rebuild_from_type_v2"};
  for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
    if (strcmp(g, exact[i]) == 0) return 1;
  const char *n = strncmp(g, "torch.cuda.", 11) == 0 ? g + 11
                : strncmp(g, "torch.", 6) == 0 ? g + 6 : NULL;
  if (!n || strchr(n, '.')) return 0;
  size_t len = strlen(n);
  return (len > 6 && strcmp(n + len - 6, "Tensor") == 0) ||
         (len > 7 && strcmp(n + len - 7, "Storage") == 0 && gt_torch_type_by_storage(n));
}

/* An instance placeholder as {global, args, state, dictitems, listitems,
 * kwargs}. Tensors in its state are named as attributes (module slots
 * transparent), in its items by key or index, in its arguments under
 * "args". */
static gt_value *walk_object(reader *r, const gt_value *v, int name_tensors, gt_err *err) {
  static const char *slots[GT_PK_NSLOTS] = {"args", "state", "dictitems", "listitems", "kwargs"};
  gt_value *o = gt_value_new(GT_V_MAP);
  if (!o || gt_value_setk(o, "global", gt_value_str(v->str, v->len)))
    return gt_value_free(o), gt_fail(err, "out of memory"), NULL;
  if (note_global(r, v->str, err)) return gt_value_free(o), NULL;
  if (v->i == 1 && tensor_maker(v->str)) {
    gt_value_free(o);
    return gt_fail(err, "\"%s\": a %s(...) this reader cannot decode into a tensor "
                        "(refusing to drop it)", r->path_len ? r->path : "(top)", v->str), NULL;
  }
  for (int k = 0; v->i == 1 && k < GT_PK_NSLOTS && (size_t)k < v->n; k++) {
    const gt_value *c = v->items[k];
    if (c->kind == GT_V_NIL) continue;
    /* walk() of any other MAP is walk_map without transparent slots */
    gt_value *w = walk_at(r, k == GT_PK_ARGS ? "args" : NULL, 4, c, name_tensors,
                          k == GT_PK_STATE && c->kind == GT_V_MAP, err);
    if (!w) goto bad;
    if (gt_value_setk(o, slots[k], w)) {
      gt_fail(err, "out of memory");
      goto bad;
    }
  }
  return o;
bad:
  gt_value_free(o);
  return NULL;
}

/* The metadata tree for v; tensor leaves become entries named by the path
 * (when name_tensors; in dict keys they are dropped to nil). */
static gt_value *walk(reader *r, const gt_value *v, int name_tensors, gt_err *err) {
  gt_value *o;
  int64_t entry;
  switch (v->kind) {
  case GT_V_TENSOR:
    if (!name_tensors) return gt_value_new(GT_V_NIL);
    if ((v->f == 1 ? storage_entry(r, (size_t)v->i, &entry, err)
                   : make_entry(r, (size_t)v->i, &entry, err)) != GT_OK)
      return NULL;
    if (entry < 0) return storage_placeholder(&r->st[v->i], err);
    o = gt_value_new(GT_V_TENSOR);
    if (o) o->i = entry;
    break;
  case GT_V_MAP: return walk_map(r, v, name_tensors, 0, err);
  case GT_V_LIST: return walk_list(r, v, name_tensors, err);
  case GT_V_OBJECT: return walk_object(r, v, name_tensors, err);
  case GT_V_STR: o = gt_value_str(v->str, v->len); break;
  default:
    o = gt_value_new(v->kind);
    if (o) {
      o->i = v->i;
      o->f = v->f;
    }
  }
  if (!o) gt_fail(err, "out of memory");
  return o;
}

static int cmp_str(const void *a, const void *b) {
  const gt_value *x = *(const gt_value *const *)a, *y = *(const gt_value *const *)b;
  return strcmp(x->str, y->str);
}

/* Entries and the "tree" metadata from an unpickled object. */
int gt_torch_finish(reader *r, const gt_value *tree, const char *tree_key,
                    gt_value *meta, gt_err *err) {
  gt_value *t = walk(r, tree, 1, err);
  if (!t) return GT_ERR;
  if (gt_value_setk(meta, tree_key, t)) return gt_fail(err, "out of memory");
  return GT_OK;
}

int gt_torch_set_text(gt_value *meta, const char *k, const char *s, size_t n, gt_err *err) {
  if (gt_value_setk(meta, k, gt_value_str(s, n))) return gt_fail(err, "out of memory");
  return GT_OK;
}

/* ------------------------------------------------------------ unpickling */

int gt_torch_load_pickle(reader *r, const unsigned char *p, size_t n, uint64_t base,
                         int with_storages, gt_value **tree, size_t *used, gt_err *err) {
  gt_pickle_hooks h = {r, with_storages ? persistent_load : NULL, object_hook};
  return gt_pickle_load(p, n, base, &h, tree, used, err);
}

/* ------------------------------------------------------------ entry */

const char *gt_torch_sniff(const unsigned char *p, uint64_t len) {
  if (gt_zip_sniff(p, len)) return "zip";
  if (gt_torch_is_legacy(p, len)) return "legacy";
  if (gt_torch_is_tar(p, len)) return "tar";
  if (len >= 2 && p[0] == 0x80 && p[1] <= 5) return "pickle";
  return NULL;
}

static int read_plain(reader *r, gt_value *meta, gt_err *err) {
  gt_value *tree = NULL;
  r->inline_ok = 1;
  int rc = gt_torch_set_text(meta, "kind", "pickle", 6, err);
  if (rc == GT_OK)
    rc = gt_torch_load_pickle(r, r->file->data, r->file->size, 0, 0, &tree, NULL, err);
  if (rc == GT_OK) rc = gt_torch_finish(r, tree, "tree", meta, err);
  gt_value_free(tree);
  return rc;
}

int gt_torch_read(gt_storage *file, gt_model *m, gt_err *err) {
  reader r;
  memset(&r, 0, sizeof r);
  r.file = file;
  r.m = m;
  r.globals = gt_value_new(GT_V_LIST);
  gt_value *meta = gt_value_new(GT_V_MAP);
  if (!r.globals || !meta) {
    gt_value_free(meta);
    gt_torch_reader_free(&r);
    return gt_fail(err, "out of memory");
  }
  if (file->size > SIZE_MAX) return gt_fail(err, "file too large");
  const char *kind = gt_torch_sniff(file->data, file->size);
  int rc;
  if (kind && strcmp(kind, "zip") == 0) rc = gt_torch_read_zip(&r, meta, err);
  else if (kind && strcmp(kind, "legacy") == 0) rc = gt_torch_read_legacy(&r, meta, err);
  else if (kind && strcmp(kind, "tar") == 0) rc = gt_torch_read_tar(&r, meta, err);
  else rc = read_plain(&r, meta, err);
  for (size_t i = 0; rc == GT_OK && m->n == 0 && i < r.globals->n; i++)
    if (tensor_maker(r.globals->items[i]->str))
      rc = gt_fail(err, "no tensor decoded, but the pickle names %s (refusing to open it as "
                        "empty)", r.globals->items[i]->str);
  if (rc == GT_OK) {
    if (r.globals->n > 1) qsort(r.globals->items, r.globals->n, sizeof *r.globals->items, cmp_str);
    if (gt_value_setk(meta, "globals", r.globals)) rc = gt_fail(err, "out of memory");
    r.globals = NULL;
  }
  gt_torch_reader_free(&r);
  if (rc != GT_OK) {
    gt_value_free(meta);
    return GT_ERR;
  }
  m->format = "torch";
  gt_value_free(m->meta);
  m->meta = meta;
  return GT_OK;
}
