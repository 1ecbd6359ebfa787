/* torch.c: PyTorch zip, legacy and plain-pickle files (see torch.h).
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

#include "io/checked.h"
#include "io/grow.h"
#include "io/pickle.h"
#include "formats/torch/types.h"
#include "io/zipmap.h"
#include "io/zipmember.h"
#include "tensor/cast.h"

#include <cjson/cJSON.h>

/* ------------------------------------------------------------ state */

typedef struct tstore {
  char *key;                  /* persistent-id key; NULL for inline bytes */
  const gt_torch_type *type;  /* as the persistent id declares it */
  uint64_t numel;             /* elements of `type` */
  gt_storage *s;              /* set in step 2 (inline ones at once) */
  uint64_t at;                /* tar: file offset of its elements */
} tstore;

typedef struct trec {
  size_t st;
  const gt_torch_type *type;
  int64_t off;                /* elements */
  int ndim;
  int swap;                   /* -1: as the file says */
  int64_t *dims;              /* shape[ndim] then strides[ndim] */
} trec;

/* A tensor of a tar file by its key (the saving process's id()). */
typedef struct tarkey {
  int64_t key;
  size_t rec;
} tarkey;

typedef struct reader {
  gt_storage *file;
  int inline_ok;              /* bytes offsets of this pickle are file offsets */
  int swap;                   /* file is big-endian */
  int legacy;                 /* persistent ids are 6-tuples */
  int tar;                    /* persistent ids are "<key>" of tar_keys */
  int nested;                 /* reading the bytes of _load_from_bytes */
  struct tarkey *tkeys;       /* tar: tensor keys -> records, sorted */
  size_t ntkeys, cap_tkeys;
  tstore *st;
  size_t nst, cap_st;
  size_t *hash;               /* open addressing: index + 1 into st, 0 empty */
  size_t hash_cap;
  trec *rec;
  size_t nrec, cap_rec;
  gt_model *m;
  gt_value *globals;          /* LIST of distinct placeholder names */
  char *path;                 /* the dotted name being built */
  size_t path_len, path_cap;
} reader;

static void reader_free(reader *r) {
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
static int storage_for(reader *r, const char *key, size_t *idx, int *isnew,
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
static int inline_storage(reader *r, const gt_torch_type *t, uint64_t numel,
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

static const char *text_of(const gt_value *v) {
  return v && v->kind == GT_V_STR && v->i == 0 ? v->str : NULL;
}

/* "torch.FloatStorage", "torch.cuda.FloatStorage" -> its type. */
static const gt_torch_type *storage_class(const gt_value *g) {
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
  const gt_torch_type *t = storage_class(pid->items[1]);
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
  if (storage_for(r, key, &idx, &isnew, err) != GT_OK) return NULL;
  tstore *s = &r->st[idx];
  if (isnew) {
    s->type = t;
    s->numel = (uint64_t)numel;
  } else if (s->type != t || s->numel != (uint64_t)numel) {
    return gt_fail(err, "storage \"%s\" is declared twice with different types or sizes", key), NULL;
  }
  return storage_handle(idx, err);
}

static gt_value *tar_pid(reader *r, const gt_value *pid, gt_err *err);

static gt_value *persistent_load(void *ctx, const gt_value *pid, gt_err *err) {
  reader *r = ctx;
  if (r->tar) return tar_pid(r, pid, err);
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

static int add_record(reader *r, size_t st, const gt_torch_type *t, int64_t off,
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
static int rebuild(reader *r, gt_value *obj, const gt_value *args, int v3,
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
  if (add_record(r, (size_t)sv->i, t, off, nd, shape, strides, -1, &idx, err))
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
static gt_storage *np_bytes(reader *r, const gt_value *b, gt_err *err) {
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

static gt_storage *aligned(gt_storage *s, size_t align, gt_err *err) {
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
  gt_storage *s = aligned(np_bytes(r, bytes, err), es, err);
  size_t idx = 0, rec;
  if (!s || inline_storage(r, gt_torch_type_of(dt), (uint64_t)numel, s, &idx, err))
    return GT_ERR;
  if (add_record(r, idx, gt_torch_type_of(dt), 0, nd, shape, strides, swap, &rec, err))
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

/* ------------------------------------------------------------ torch <= 0.3 */

/* Plain pickles of torch 0.1.x-0.3 objects (pickle.dump, not torch.save):
 *   torch.FloatStorage(list)   _StorageBase.__reduce__ = (type, (tolist(),))
 *   torch.FloatTensor(list)    a tensor given by its nested-list values
 *   torch.FloatTensor() + BUILD (storage, offset, size, stride)
 *                              no __reduce__: NEWOBJ (protocol 2) or
 *                              copyreg._reconstructor (0/1), state from
 *                              __getstate__, restored by set_
 *   torch._utils._rebuild_tensor(storage, offset, size, stride)   (0.2/0.3)
 * Class names may carry "torch.cuda.". Storages made here have no key. */

/* The type of a legacy class "torch[.cuda].<Name><suffix>" ("Tensor" or
 * "Storage"), or NULL. */
static const gt_torch_type *legacy_class(const char *g, const char *suffix) {
  if (strncmp(g, "torch.cuda.", 11) == 0) g += 11;
  else if (strncmp(g, "torch.", 6) == 0) g += 6;
  else return NULL;
  size_t n = strlen(g), sl = strlen(suffix);
  char buf[64];
  if (n <= sl || n - sl + 8 >= sizeof buf || strcmp(g + n - sl, suffix) != 0) return NULL;
  memcpy(buf, g, n - sl);
  memcpy(buf + n - sl, "Storage", 8);
  const gt_torch_type *t = gt_torch_type_by_storage(buf);
  return t && t->storage && t->gt >= 0 ? t : NULL;
}

/* One number into element i of a storage of type t. */
static int put_number(const gt_torch_type *t, unsigned char *p, const gt_value *v) {
  double d;
  int64_t i;
  if (v && (v->kind == GT_V_INT || v->kind == GT_V_BOOL)) i = v->i, d = (double)v->i;
  else if (v && v->kind == GT_V_FLOAT) d = v->f, i = (int64_t)(d == d && d > -9.2e18 && d < 9.2e18 ? d : 0);
  else return GT_ERR;
  switch ((gt_dtype)t->gt) {
  case GT_F64: memcpy(p, &d, 8); break;
  case GT_F32: { float f = (float)d; memcpy(p, &f, 4); break; }
  case GT_F16: { uint16_t h = gt_f64_to_f16(d); memcpy(p, &h, 2); break; }
  case GT_BF16: { uint16_t h = gt_f32_to_bf16((float)d); memcpy(p, &h, 2); break; }
  case GT_I64: memcpy(p, &i, 8); break;
  case GT_I32: { int32_t x = (int32_t)i; memcpy(p, &x, 4); break; }
  case GT_I16: { int16_t x = (int16_t)i; memcpy(p, &x, 2); break; }
  case GT_I8: { int8_t x = (int8_t)i; memcpy(p, &x, 1); break; }
  case GT_U8: { uint8_t x = (uint8_t)i; memcpy(p, &x, 1); break; }
  case GT_BOOL: { uint8_t x = d != 0; memcpy(p, &x, 1); break; }
  default: return GT_ERR; /* complex: never saved as lists by old torch */
  }
  return GT_OK;
}

/* Shape of a nested list of numbers (rectangular), or GT_ERR. The memo
 * lets one list stand for many, so the element count is capped by the
 * file's size: every number of a real tolist() is written out (pickle
 * memoizes no numbers), taking at least one byte. */
static int list_shape(const reader *r, const gt_value *v, int64_t *shape, int *nd,
                      uint64_t *numel) {
  *nd = 0;
  *numel = 1;
  while (v && v->kind == GT_V_LIST && v->i <= 1) {
    if (*nd == GT_MAXDIM || gt_mul_u64(*numel, v->n, (unsigned long long *)numel) ||
        *numel > r->file->size)
      return GT_ERR;
    shape[(*nd)++] = (int64_t)v->n;
    v = v->n ? v->items[0] : NULL;
  }
  return *nd ? GT_OK : GT_ERR;
}

/* Flatten v (depth d of nd, shape checked) into p; *k counts elements. */
static int list_fill(const gt_torch_type *t, const gt_value *v, const int64_t *shape,
                     int d, int nd, unsigned char *p, uint64_t *k) {
  if (!v || v->kind != GT_V_LIST || v->i > 1 || (int64_t)v->n != shape[d]) return GT_ERR;
  for (size_t i = 0; i < v->n; i++) {
    if (d + 1 < nd) {
      if (list_fill(t, v->items[i], shape, d + 1, nd, p, k)) return GT_ERR;
    } else {
      if (put_number(t, p + *k * t->itemsize, v->items[i])) return GT_ERR;
      (*k)++;
    }
  }
  return GT_OK;
}

/* A keyless storage of type t holding the values of the nested list v;
 * shape gets the list's shape. */
static int list_storage(reader *r, const char *g, const gt_torch_type *t, const gt_value *v,
                        int64_t *shape, int *nd, size_t *idx, gt_err *err) {
  uint64_t numel, k = 0, nbytes;
  if (list_shape(r, v, shape, nd, &numel) ||
      gt_mul_u64(numel, t->itemsize, (unsigned long long *)&nbytes))
    return gt_fail(err, "%s: the argument is not a nested list of numbers, or stands for "
                        "more numbers than the file has bytes", g);
  gt_storage *s = gt_storage_new(nbytes, 0, err);
  if (!s) return gt_wrap(err, "%s", g);
  if (list_fill(t, v, shape, 0, *nd, s->data, &k) || k != numel) {
    gt_storage_release(s);
    return gt_fail(err, "%s: the argument is not a rectangular nested list of numbers", g);
  }
  return inline_storage(r, t, numel, s, idx, err);
}

static int old_torch_hook(reader *r, gt_value *obj, int built, gt_err *err) {
  const char *g = obj->str;
  const gt_value *args = obj->items[GT_PK_ARGS], *a0 = gt_pickle_item(args, 0);
  const gt_torch_type *t;
  int64_t shape[GT_MAXDIM], strides[GT_MAXDIM];
  int nd;
  size_t idx, rec;
  if (!built && (t = legacy_class(g, "Storage")) && args && args->n == 1 &&
      a0 && a0->kind == GT_V_LIST) {
    if (list_storage(r, g, t, a0, shape, &nd, &idx, err)) return GT_ERR;
    if (nd != 1) return gt_fail(err, "%s: the argument is not a flat list of numbers", g);
    gt_pickle_become(obj, GT_V_TENSOR, (int64_t)idx, 1);
    return GT_OK;
  }
  if (!(t = legacy_class(g, "Tensor"))) return GT_OK;
  if (!built && args && args->n == 1 && a0 && a0->kind == GT_V_LIST) {
    if (list_storage(r, g, t, a0, shape, &nd, &idx, err)) return GT_ERR;
    int64_t st = 1;
    for (int i = nd - 1; i >= 0; i--) {
      strides[i] = st;
      st *= shape[i] ? shape[i] : 1;
    }
    if (add_record(r, idx, t, 0, nd, shape, strides, -1, &rec, err)) return GT_ERR;
    gt_pickle_become(obj, GT_V_TENSOR, (int64_t)rec, 0);
    return GT_OK;
  }
  const gt_value *st = obj->items[GT_PK_STATE];
  if (built && st && st->kind == GT_V_LIST && st->n == 4) /* set_(*state) */
    return rebuild(r, obj, st, 0, err);
  return GT_OK;
}

/* ------------------------------------------------------------ object hook */

static int rebuild_kind(const char *g) {
  if (strcmp(g, "torch._utils._rebuild_tensor") == 0) return 1;
  if (strcmp(g, "torch._utils._rebuild_tensor_v2") == 0) return 2;
  if (strcmp(g, "torch._utils._rebuild_tensor_v3") == 0) return 3;
  return 0;
}

static int from_bytes(reader *r, gt_value *obj, const gt_value *b, gt_err *err);

static int object_hook(void *ctx, gt_value *obj, int built, gt_err *err) {
  reader *r = ctx;
  const char *g = obj->str;
  const gt_value *args = obj->items[GT_PK_ARGS];
  if (!built && strcmp(g, "torch.storage._load_from_bytes") == 0) {
    const gt_value *b = gt_pickle_item(args, 0);
    if (b && args->n == 1 && b->kind == GT_V_STR && b->i == 1) return from_bytes(r, obj, b, err);
    return GT_OK;
  }
  if (!built) {
    int k = rebuild_kind(g);
    if (k) return rebuild(r, obj, args, k == 3, err);
    if (strcmp(g, "torch._tensor._rebuild_from_type_v2") == 0) {
      /* (func, new_type, args, state): a tensor subclass around func(*args) */
      const gt_value *fn = gt_pickle_item(args, 0), *fa = gt_pickle_item(args, 2);
      if (fn && fn->kind == GT_V_OBJECT && fn->i == 0 && (k = rebuild_kind(fn->str)) &&
          fa && fa->kind == GT_V_LIST)
        return rebuild(r, obj, fa, k == 3, err);
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
  if (old_torch_hook(r, obj, built, err)) return GT_ERR;
  if (obj->kind != GT_V_OBJECT) return GT_OK;
  return numpy_hook(r, obj, built, err);
}

/* ------------------------------------------------------------ zip storages */

/* "<file>: record \"<name>\"", for errors raised long after open. */
static char *label(const gt_storage *file, const char *name) {
  const char *path = file->path ? file->path : "?";
  size_t cap = strlen(path) + strlen(name) + 16;
  char *s = malloc(cap);
  if (s) snprintf(s, cap, "%s: record \"%.300s\"", path, name);
  return s;
}

typedef struct zipread {
  gt_storage *file;
  gt_zip_dir d;
  const gt_zip_member **sorted;
  char *prefix;               /* "folder/" */
  size_t plen;
} zipread;

static int cmp_name(const void *x, const void *y) {
  const gt_zip_member *a = *(const gt_zip_member *const *)x;
  const gt_zip_member *b = *(const gt_zip_member *const *)y;
  return strcmp(a->name, b->name);
}

/* Member `<prefix><rel>` or NULL. */
static const gt_zip_member *member(zipread *z, const char *rel) {
  size_t n = strlen(rel);
  char *full = malloc(z->plen + n + 1);
  if (!full) return NULL;
  memcpy(full, z->prefix, z->plen);
  memcpy(full + z->plen, rel, n + 1);
  gt_zip_member key = {.name = full};
  const gt_zip_member *kp = &key;
  const gt_zip_member **hit = bsearch(&kp, z->sorted, z->d.n, sizeof *z->sorted, cmp_name);
  free(full);
  return hit ? *hit : NULL;
}

/* Stored records are CRC-32 checked on first use, then used in place when
 * 16-byte aligned (torch aligns records to 64), else copied; deflated ones
 * are inflated on first use. */
static gt_storage *record_storage(zipread *z, const gt_zip_member *mm, gt_err *err) {
  if (gt_zip_member_check(mm, err) != GT_OK)
    return gt_wrap(err, "record \"%.200s\"", mm->name), NULL;
  return gt_zip_member_storage(z->file, mm, 0, mm->size, 16, label(z->file, mm->name), err);
}

/* Whole small record (data.pkl, byteorder, ...), CRC-32 checked: a window
 * of the mapping when stored, else inflated into memory. */
#define GT_TORCH_MAX_PICKLE ((uint64_t)1 << 30)

static gt_storage *record_bytes(zipread *z, const gt_zip_member *mm, gt_err *err) {
  if (mm->method == 8 && mm->size > GT_TORCH_MAX_PICKLE)
    return gt_fail(err, "record \"%.200s\" inflates to more than 1 GiB", mm->name), NULL;
  return gt_zip_member_read(z->file, mm, 1, err);
}

/* ------------------------------------------------------------ step 3: names */

static int path_push(reader *r, const char *seg, size_t n, size_t *mark, gt_err *err) {
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

static void path_pop(reader *r, size_t mark) {
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
  if (add_record(r, st, s->type, 0, 1, &shape, &stride, -1, &k, err)) return GT_ERR;
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
    if (!skip && path_push(r, seg, n, &mark, err)) goto bad;
    gt_value *key = walk(r, v->keys[i], 0, err);
    gt_value *item = key ? walk(r, v->items[i], name_tensors, err) : NULL;
    path_pop(r, mark);
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
  if (seg && path_push(r, seg, n, &mark, err)) return NULL;
  gt_value *w = state ? walk_map(r, v, name_tensors, 1, err) : walk(r, v, name_tensors, err);
  path_pop(r, mark);
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
static int finish(reader *r, const gt_value *tree, const char *tree_key, gt_value *meta,
                  gt_err *err) {
  gt_value *t = walk(r, tree, 1, err);
  if (!t) return GT_ERR;
  if (gt_value_setk(meta, tree_key, t)) return gt_fail(err, "out of memory");
  return GT_OK;
}

static int set_text(gt_value *meta, const char *k, const char *s, size_t n, gt_err *err) {
  if (gt_value_setk(meta, k, gt_value_str(s, n))) return gt_fail(err, "out of memory");
  return GT_OK;
}

/* ------------------------------------------------------------ zip */

static void trim(const unsigned char *p, size_t *n) {
  while (*n && (p[*n - 1] == '\n' || p[*n - 1] == '\r' || p[*n - 1] == ' ')) (*n)--;
}

static int small_text(zipread *z, const char *rel, gt_value *meta, const char *key,
                      char *buf, size_t cap, gt_err *err) {
  const gt_zip_member *mm = member(z, rel);
  buf[0] = 0;
  if (!mm) return GT_OK;
  if (mm->size > 256) return gt_fail(err, "record \"%.200s\" is larger than 256 bytes", mm->name);
  gt_storage *s = record_bytes(z, mm, err);
  if (!s) return GT_ERR;
  size_t n = s->size;
  trim(s->data, &n);
  if (n >= cap) n = cap - 1;
  memcpy(buf, s->data, n);
  buf[n] = 0;
  gt_storage_release(s);
  return set_text(meta, key, buf, n, err);
}

static int zip_index(zipread *z, gt_err *err) {
  if (gt_zip_dir_read_file(z->file, &z->d, err)) return GT_ERR;
  if (z->d.n == 0) return gt_fail(err, "empty zip archive (no data.pkl)");
  const char *first = z->d.m[0].name, *slash = strchr(first, '/');
  if (!slash) return gt_fail(err, "member \"%.200s\" is not inside a folder (not a torch archive)", first);
  z->plen = (size_t)(slash - first) + 1;
  if (!(z->prefix = malloc(z->plen + 1))) return gt_fail(err, "out of memory");
  memcpy(z->prefix, first, z->plen);
  z->prefix[z->plen] = 0;
  if (!(z->sorted = malloc(z->d.n * sizeof *z->sorted))) return gt_fail(err, "out of memory");
  for (size_t i = 0; i < z->d.n; i++) {
    const gt_zip_member *mm = &z->d.m[i];
    if (strncmp(mm->name, z->prefix, z->plen) != 0 || strlen(mm->name) != mm->name_len)
      return gt_fail(err, "member \"%.200s\" is outside the archive folder \"%s\"", mm->name, z->prefix);
    z->sorted[i] = mm;
  }
  qsort(z->sorted, z->d.n, sizeof *z->sorted, cmp_name);
  for (size_t i = 1; i < z->d.n; i++)
    if (strcmp(z->sorted[i - 1]->name, z->sorted[i]->name) == 0)
      return gt_fail(err, "member \"%.200s\" appears twice", z->sorted[i]->name);
  return GT_OK;
}

/* Step 2 for zip: storage key k is record <dir><k>. */
static int zip_storages(reader *r, zipread *z, const char *dir, size_t from, gt_err *err) {
  for (size_t i = from; i < r->nst; i++) {
    tstore *s = &r->st[i];
    if (s->s || !s->key) continue;
    char rel[1100];
    snprintf(rel, sizeof rel, "%s%s", dir, s->key);
    const gt_zip_member *mm = member(z, rel);
    if (!mm) return gt_fail(err, "storage \"%s\": record %s%s is missing", s->key, z->prefix, rel);
    uint64_t nbytes;
    if (gt_mul_u64(s->numel, s->type->itemsize, (unsigned long long *)&nbytes) || nbytes != mm->size)
      return gt_fail(err, "storage \"%s\": the persistent id says %llu elements of %zu bytes, "
                          "record %s holds %llu bytes", s->key, (unsigned long long)s->numel,
                     s->type->itemsize, mm->name, (unsigned long long)mm->size);
    if (!(s->s = record_storage(z, mm, err))) return gt_wrap(err, "storage \"%s\"", s->key);
  }
  return GT_OK;
}

static int load_pickle(reader *r, const unsigned char *p, size_t n, uint64_t base,
                       int with_storages, gt_value **tree, size_t *used, gt_err *err) {
  gt_pickle_hooks h = {r, with_storages ? persistent_load : NULL, object_hook};
  return gt_pickle_load(p, n, base, &h, tree, used, err);
}

/* data.pkl or constants.pkl, unpickled; *tree NULL when the record is absent. */
static int zip_pickle(reader *r, zipread *z, const char *rel, gt_value **tree, gt_err *err) {
  *tree = NULL;
  const gt_zip_member *mm = member(z, rel);
  if (!mm) return GT_OK;
  gt_storage *s = record_bytes(z, mm, err);
  if (!s) return gt_wrap(err, "%s", rel);
  /* A stored pickle lies in the mapping: its inline byte arrays can be
   * regions of the file, at base offset mm->data_offset. */
  r->inline_ok = mm->method == 0;
  int rc = load_pickle(r, s->data, s->size, mm->data_offset, 1, tree, NULL, err);
  gt_storage_release(s);
  return rc == GT_OK ? GT_OK : gt_wrap(err, "%s%s", z->prefix, rel);
}

/* ------------------------------------------------------------ pt2 */

/* torch.export.save archives (archive_format "pt2"): no data.pkl; each of
 * data/weights/model_weights_config.json and
 * data/constants/model_constants_config.json maps a tensor's name to
 * {path_name, use_pickle, tensor_meta {dtype, sizes, strides,
 * storage_offset}}, dtype a torch._export.serde.schema.ScalarType number.
 * Record <dir><path_name> holds the raw bytes of the tensor's untyped
 * storage, shared by every name in one storage group; the tensor is
 * as_strided over it (offset and strides in elements). use_pickle records
 * (tensor subclasses, a torch.save inside) are listed in meta.skipped. */
static const gt_torch_type *pt2_type(int code) {
  static const struct { int code; const char *dtype; } map[] = {
    {1, "uint8"}, {2, "int8"}, {3, "int16"}, {4, "int32"}, {5, "int64"},
    {6, "float16"}, {7, "float32"}, {8, "float64"}, {9, "complex32"},
    {10, "complex64"}, {11, "complex128"}, {12, "bool"}, {13, "bfloat16"},
    {28, "uint16"}, {29, "float8_e4m3fn"}, {30, "float8_e5m2"},
    {31, "float8_e4m3fnuz"}, {32, "float8_e5m2fnuz"}, {33, "float8_e8m0fnu"},
    {34, "uint32"}, {35, "uint64"}};
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (map[i].code == code) return gt_torch_type_by_dtype(map[i].dtype);
  return NULL;
}

/* A {"as_int": n} (SymInt/SymExpr serialised as int); 0 when it is not. */
static int pt2_int(const cJSON *v, int64_t *out) {
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(v, "as_int");
  if (!cJSON_IsNumber(n) || n->valuedouble != (double)(int64_t)n->valuedouble) return 0;
  *out = (int64_t)n->valuedouble;
  return 1;
}

static int pt2_dims(const cJSON *a, int64_t *out, int *n, const char *what,
                    const char *name, gt_err *err) {
  if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) > GT_MAXDIM)
    return gt_fail(err, "tensor \"%.200s\": %s is not a list of at most %d "
                        "integers", name, what, GT_MAXDIM);
  *n = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, a) {
    if (!pt2_int(e, &out[*n]) || out[*n] < 0)
      return gt_fail(err, "tensor \"%.200s\": %s holds a value that is not a "
                          "non-negative integer", name, what);
    (*n)++;
  }
  return GT_OK;
}

/* One config entry: its record as a storage, a view of it as a record of r,
 * name -> tensor in tree. */
static int pt2_entry(reader *r, zipread *z, const char *dir, const cJSON *e,
                     gt_value *tree, gt_value *skipped, gt_err *err) {
  const char *name = e->string;
  const cJSON *path = cJSON_GetObjectItemCaseSensitive(e, "path_name");
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(e, "tensor_meta");
  if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "use_pickle")))
    return gt_value_push(skipped, gt_value_str(name, strlen(name)))
               ? gt_fail(err, "out of memory") : GT_OK;
  if (!cJSON_IsString(path) || !cJSON_IsObject(meta) || strchr(path->valuestring, '/'))
    return gt_fail(err, "tensor \"%.200s\": no path_name or tensor_meta", name);
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(meta, "dtype");
  const gt_torch_type *t = cJSON_IsNumber(dt) ? pt2_type(dt->valueint) : NULL;
  if (!t) return gt_fail(err, "tensor \"%.200s\": unknown dtype code", name);
  int64_t shape[GT_MAXDIM], strides[GT_MAXDIM], off;
  int nd, ns;
  if (pt2_dims(cJSON_GetObjectItemCaseSensitive(meta, "sizes"), shape, &nd, "sizes", name, err) ||
      pt2_dims(cJSON_GetObjectItemCaseSensitive(meta, "strides"), strides, &ns, "strides", name, err))
    return GT_ERR;
  if (nd != ns) return gt_fail(err, "tensor \"%.200s\": sizes and strides differ in length", name);
  if (!pt2_int(cJSON_GetObjectItemCaseSensitive(meta, "storage_offset"), &off) || off < 0)
    return gt_fail(err, "tensor \"%.200s\": storage_offset is not a non-negative integer", name);
  char rel[1100];
  snprintf(rel, sizeof rel, "%s%s", dir, path->valuestring);
  size_t st, k;
  int isnew;
  if (storage_for(r, rel, &st, &isnew, err)) return GT_ERR;
  if (isnew) {
    const gt_zip_member *mm = member(z, rel);
    if (!mm) return gt_fail(err, "tensor \"%.200s\": record %s%s is missing", name, z->prefix, rel);
    r->st[st].type = gt_torch_untyped();
    r->st[st].numel = mm->size;
    if (!(r->st[st].s = record_storage(z, mm, err))) return gt_wrap(err, "tensor \"%.200s\"", name);
  }
  if (add_record(r, st, t, off, nd, shape, strides, -1, &k, err)) return GT_ERR;
  gt_value *v = gt_value_new(GT_V_TENSOR);
  if (!v || gt_value_setk(tree, name, v)) {
    gt_value_free(v);
    return gt_fail(err, "out of memory");
  }
  v->i = (int64_t)k;
  return GT_OK;
}

/* One payload config into a MAP name -> tensor record. */
static int pt2_config(reader *r, zipread *z, const char *rel, const char *dir,
                      gt_value **tree, gt_value *skipped, gt_err *err) {
  *tree = NULL;
  const gt_zip_member *mm = member(z, rel);
  if (!mm) return GT_OK;
  gt_storage *s = record_bytes(z, mm, err);
  if (!s) return GT_ERR;
  cJSON *doc = cJSON_ParseWithLength((const char *)s->data, s->size);
  gt_storage_release(s);
  const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(doc, "config");
  if (!cJSON_IsObject(cfg)) {
    cJSON_Delete(doc);
    return gt_fail(err, "%s%s: not a JSON object with a \"config\" object", z->prefix, rel);
  }
  int rc = (*tree = gt_value_new(GT_V_MAP)) ? GT_OK : gt_fail(err, "out of memory");
  const cJSON *e;
  cJSON_ArrayForEach(e, cfg) {
    if (rc == GT_OK) rc = pt2_entry(r, z, dir, e, *tree, skipped, err);
  }
  cJSON_Delete(doc);
  return rc == GT_OK ? GT_OK : gt_wrap(err, "%s%s", z->prefix, rel);
}

static int read_pt2(reader *r, zipread *z, gt_value *meta, gt_err *err) {
  gt_value *tree = NULL, *consts = NULL, *skipped = gt_value_new(GT_V_LIST);
  int rc = skipped ? GT_OK : gt_fail(err, "out of memory");
  if (rc == GT_OK)
    rc = pt2_config(r, z, "data/weights/model_weights_config.json", "data/weights/",
                    &tree, skipped, err);
  if (rc == GT_OK)
    rc = pt2_config(r, z, "data/constants/model_constants_config.json", "data/constants/",
                    &consts, skipped, err);
  if (rc == GT_OK && !tree && !(tree = gt_value_new(GT_V_MAP))) rc = gt_fail(err, "out of memory");
  if (rc == GT_OK) rc = finish(r, tree, "tree", meta, err);
  if (rc == GT_OK && consts) {
    size_t mark;
    rc = path_push(r, "constants", 9, &mark, err);
    if (rc == GT_OK) rc = finish(r, consts, "constants", meta, err);
    path_pop(r, mark);
  }
  if (rc == GT_OK && gt_value_setk(meta, "skipped", skipped)) rc = gt_fail(err, "out of memory");
  else if (rc == GT_OK) skipped = NULL;
  gt_value_free(skipped);
  gt_value_free(tree);
  gt_value_free(consts);
  return rc;
}

static int read_zip(reader *r, gt_value *meta, gt_err *err) {
  zipread z;
  memset(&z, 0, sizeof z);
  z.file = r->file;
  gt_value *tree = NULL, *consts = NULL;
  char buf[64];
  int rc = zip_index(&z, err);
  int pt2 = 0;
  if (rc == GT_OK && !member(&z, "data.pkl")) {
    rc = small_text(&z, "archive_format", meta, "archive_format", buf, sizeof buf, err);
    pt2 = rc == GT_OK && strcmp(buf, "pt2") == 0;
    if (rc == GT_OK && !pt2)
      rc = gt_fail(err, "no %sdata.pkl in the archive (not a torch file)", z.prefix);
  }
  if (rc == GT_OK) {
    int script = member(&z, "constants.pkl") != NULL;
    const char *kind = pt2 ? "pt2" : script ? "torchscript" : "zip";
    z.prefix[z.plen - 1] = 0;
    rc = set_text(meta, "kind", kind, strlen(kind), err);
    if (rc == GT_OK) rc = set_text(meta, "archive", z.prefix, z.plen - 1, err);
    z.prefix[z.plen - 1] = '/';
  }
  if (rc == GT_OK) rc = small_text(&z, "byteorder", meta, "byteorder", buf, sizeof buf, err);
  if (rc == GT_OK && buf[0] && strcmp(buf, "little") && strcmp(buf, "big"))
    rc = gt_fail(err, "byteorder record says \"%s\" (expected little or big)", buf);
  r->swap = rc == GT_OK && strcmp(buf, "big") == 0;
  if (rc == GT_OK) rc = small_text(&z, "version", meta, "version", buf, sizeof buf, err);
  if (rc == GT_OK && !buf[0]) rc = small_text(&z, ".data/version", meta, "version", buf, sizeof buf, err);
  if (rc == GT_OK && pt2) {
    rc = read_pt2(r, &z, meta, err);
    goto done;
  }
  if (rc == GT_OK) rc = zip_pickle(r, &z, "data.pkl", &tree, err);
  if (rc == GT_OK) rc = zip_storages(r, &z, "data/", 0, err);
  size_t before = r->nst;
  if (rc == GT_OK) rc = zip_pickle(r, &z, "constants.pkl", &consts, err);
  if (rc == GT_OK) rc = zip_storages(r, &z, "constants/", before, err);
  if (rc == GT_OK) rc = finish(r, tree, "tree", meta, err);
  if (rc == GT_OK && consts) {
    size_t mark;
    rc = path_push(r, "constants", 9, &mark, err);
    if (rc == GT_OK) rc = finish(r, consts, "constants", meta, err);
    path_pop(r, mark);
  }
done:
  gt_value_free(tree);
  gt_value_free(consts);
  gt_zip_dir_free(&z.d);
  free(z.sorted);
  free(z.prefix);
  return rc;
}

/* ------------------------------------------------------------ legacy */

static const unsigned char legacy_magic[] = {
  0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E};

static int is_legacy(const unsigned char *p, uint64_t len) {
  return len >= sizeof legacy_magic && memcmp(p, legacy_magic, sizeof legacy_magic) == 0;
}

/* Next pickle of a legacy file at *pos (moved past it). */
static int next_pickle(reader *r, uint64_t *pos, int storages, gt_value **v, gt_err *err) {
  size_t used;
  const gt_storage *f = r->file;
  r->inline_ok = 1;
  if (load_pickle(r, f->data + *pos, (size_t)(f->size - *pos), *pos, storages, v, &used, err))
    return GT_ERR;
  *pos += used;
  return GT_OK;
}

static int legacy_header(reader *r, uint64_t *pos, gt_value *meta, gt_err *err) {
  gt_value *v = NULL;
  int64_t proto;
  *pos = sizeof legacy_magic;
  if (next_pickle(r, pos, 0, &v, err)) return gt_wrap(err, "legacy protocol version");
  int ok = gt_pickle_int(v, &proto) == GT_OK && proto == 1001;
  gt_value_free(v);
  if (!ok) return gt_fail(err, "legacy protocol version is not 1001");
  if (gt_value_setk(meta, "version", gt_value_int(proto))) return gt_fail(err, "out of memory");
  if (next_pickle(r, pos, 0, &v, err)) return gt_wrap(err, "legacy sys_info");
  const gt_value *le = gt_value_get(v, "little_endian");
  ok = le && le->kind == GT_V_BOOL;
  r->swap = ok && !le->i;
  gt_value_free(v);
  if (!ok) return gt_fail(err, "legacy sys_info has no little_endian flag");
  return set_text(meta, "byteorder", r->swap ? "big" : "little", r->swap ? 3 : 6, err);
}

/* Storage blocks after the key list: i64 element count, then the bytes. */
static int legacy_storages(reader *r, uint64_t pos, const gt_value *keys, gt_err *err) {
  if (!keys || keys->kind != GT_V_LIST) return gt_fail(err, "legacy storage key list is not a list");
  for (size_t i = 0; i < keys->n; i++) {
    const char *key = text_of(keys->items[i]);
    size_t idx;
    int isnew;
    if (!key) return gt_fail(err, "legacy storage key %zu is not a string", i);
    if (storage_for(r, key, &idx, &isnew, err)) return GT_ERR;
    tstore *s = &r->st[idx];
    if (isnew) return gt_fail(err, "legacy storage \"%s\" is listed but never used", key);
    if (s->s) return gt_fail(err, "legacy storage \"%s\" is listed twice", key);
    if (pos > r->file->size || r->file->size - pos < 8)
      return gt_fail(err, "legacy storage \"%s\": the file ends before its size", key);
    uint64_t count = 0, nbytes;
    for (int b = 7; b >= 0; b--) count = count << 8 | r->file->data[pos + (uint64_t)b];
    pos += 8;
    if (count != s->numel)
      return gt_fail(err, "legacy storage \"%s\": %llu elements in the file, %llu in its "
                          "persistent id", key, (unsigned long long)count, (unsigned long long)s->numel);
    if (gt_mul_u64(count, s->type->itemsize, (unsigned long long *)&nbytes) ||
        nbytes > r->file->size - pos)
      return gt_fail(err, "legacy storage \"%s\": %llu elements of %zu bytes run past the end "
                          "of the file", key, (unsigned long long)count, s->type->itemsize);
    s->s = aligned(gt_storage_region(r->file, pos, nbytes, err), s->type->itemsize, err);
    if (!s->s) return gt_wrap(err, "legacy storage \"%s\"", key);
    pos += nbytes;
  }
  for (size_t i = 0; i < r->nst; i++)
    if (!r->st[i].s) return gt_fail(err, "storage \"%s\" has no data in the file", r->st[i].key);
  return GT_OK;
}

static int read_legacy(reader *r, gt_value *meta, gt_err *err) {
  uint64_t pos;
  gt_value *tree = NULL, *keys = NULL;
  r->legacy = 1;
  int rc = set_text(meta, "kind", "legacy", 6, err);
  if (rc == GT_OK) rc = legacy_header(r, &pos, meta, err);
  if (rc == GT_OK && next_pickle(r, &pos, 1, &tree, err)) rc = gt_wrap(err, "legacy object pickle");
  if (rc == GT_OK && next_pickle(r, &pos, 0, &keys, err)) rc = gt_wrap(err, "legacy storage key list");
  if (rc == GT_OK) rc = legacy_storages(r, pos, keys, err);
  if (rc == GT_OK) rc = finish(r, tree, "tree", meta, err);
  gt_value_free(tree);
  gt_value_free(keys);
  return rc;
}

/* ------------------------------------------------------------ nested */

/* torch.storage._load_from_bytes(b): how torch >= 0.4 pickles a storage
 * for pickle.dump (TypedStorage.__reduce__): b is a whole legacy file
 * (torch.save(storage, _use_new_zipfile_serialization=False)) whose object
 * is the storage itself. It is read with a reader of its own (its keys are
 * its own) and its one storage joins r as a keyless storage. Such a file
 * never nests another one (its object pickle is a persistent id). */
static int from_bytes(reader *r, gt_value *obj, const gt_value *b, gt_err *err) {
  if (r->nested) return gt_fail(err, "_load_from_bytes inside _load_from_bytes");
  gt_storage *blob = np_bytes(r, b, err);
  if (!blob) return gt_wrap(err, "torch.storage._load_from_bytes");
  reader sub;
  memset(&sub, 0, sizeof sub);
  sub.file = blob;
  sub.legacy = 1;
  sub.nested = 1;
  sub.globals = gt_value_new(GT_V_LIST);
  gt_value *meta = gt_value_new(GT_V_MAP), *tree = NULL, *keys = NULL;
  uint64_t pos;
  int rc = sub.globals && meta ? GT_OK : gt_fail(err, "out of memory");
  if (rc == GT_OK && !is_legacy(blob->data, blob->size))
    rc = gt_fail(err, "the bytes are not a legacy torch file");
  if (rc == GT_OK) rc = legacy_header(&sub, &pos, meta, err);
  if (rc == GT_OK) rc = next_pickle(&sub, &pos, 1, &tree, err);
  if (rc == GT_OK) rc = next_pickle(&sub, &pos, 0, &keys, err);
  if (rc == GT_OK) rc = legacy_storages(&sub, pos, keys, err);
  if (rc == GT_OK && !(tree->kind == GT_V_TENSOR && tree->f == 1))
    rc = gt_fail(err, "the legacy file inside does not hold a storage");
  size_t idx = 0;
  if (rc == GT_OK) {
    tstore *st = &sub.st[tree->i];
    gt_storage_retain(st->s);
    rc = inline_storage(r, st->type, st->numel, st->s, &idx, err);
  }
  if (rc == GT_OK) gt_pickle_become(obj, GT_V_TENSOR, (int64_t)idx, 1);
  gt_value_free(meta);
  gt_value_free(tree);
  gt_value_free(keys);
  reader_free(&sub);
  gt_storage_release(blob);
  return rc == GT_OK ? GT_OK : gt_wrap(err, "torch.storage._load_from_bytes");
}

/* ------------------------------------------------------------ tar */

/* torch <= 0.1.9 saved a POSIX tar (tarfile PAX_FORMAT) of four members,
 * each a regular file (torch 1.13 serialization.py legacy_load):
 *   sys_info  pickle {protocol_version, little_endian, type_sizes}; unused
 *   storages  pickle n; n x (pickle (key, location, storage class), i64 LE
 *             element count, the elements LE); pickle [(target, root,
 *             offset, numel)] storage views (offset, numel in elements)
 *   tensors   pickle n; n x (pickle (key, storage key, tensor class), i32
 *             LE ndim, 4 unused bytes, ndim i64 sizes, ndim i64 strides,
 *             i64 storage offset)
 *   pickle    the object; persistent ids are str(key) of a tensor or a
 *             storage (keys are the saving process's id(): integers), or
 *             a tuple (class, source file, source) for an nn.Module class.
 * Members are found by name; order in the archive is free (torch wrote
 * sys_info, pickle, tensors, storages). */

typedef struct tarmember {
  uint64_t at, size;          /* data offset and size in the file */
} tarmember;

static int is_tar(const unsigned char *p, uint64_t len) {
  static const char *names[] = {"sys_info", "pickle", "storages", "tensors"};
  if (len < 1024 || memcmp(p + 257, "ustar", 5) != 0) return 0;
  for (int i = 0; i < 4; i++)
    if (strncmp((const char *)p, names[i], 100) == 0) return 1;
  return 0;
}

/* Octal field of a tar header (NUL/space terminated). */
static int tar_octal(const unsigned char *f, size_t n, uint64_t *x) {
  size_t i = 0;
  *x = 0;
  while (i < n && f[i] == ' ') i++;
  if (i == n || f[i] < '0' || f[i] > '7') return GT_ERR;
  for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
    if (*x >> 60) return GT_ERR;
    *x = *x << 3 | (uint64_t)(f[i] - '0');
  }
  return i == n || f[i] == 0 || f[i] == ' ' ? GT_OK : GT_ERR;
}

/* The four members' places; absent ones keep at = 0. */
static int tar_index(const gt_storage *f, tarmember m[4], gt_err *err) {
  static const char *names[] = {"sys_info", "pickle", "storages", "tensors"};
  memset(m, 0, 4 * sizeof *m);
  uint64_t pos = 0;
  while (f->size - pos >= 512) {
    const unsigned char *h = f->data + pos;
    int zero = 1;
    for (int i = 0; i < 512 && zero; i++) zero = h[i] == 0;
    if (zero) break;                           /* end-of-archive block */
    uint64_t size;
    if (tar_octal(h + 124, 12, &size))
      return gt_fail(err, "tar header at byte %llu: bad size field", (unsigned long long)pos);
    if (size > f->size - pos - 512)
      return gt_fail(err, "tar member \"%.100s\": %llu bytes run past the end of the file",
                     (const char *)h, (unsigned long long)size);
    char type = (char)h[156];
    int regular = type == '0' || type == 0;    /* pax 'x'/'g' headers are skipped */
    for (int i = 0; regular && i < 4; i++)
      if (strncmp((const char *)h, names[i], 100) == 0) {
        if (m[i].at) return gt_fail(err, "tar member \"%s\" appears twice", names[i]);
        m[i].at = pos + 512;
        m[i].size = size;
      }
    uint64_t pad = (size + 511) / 512 * 512;   /* size < file size: no overflow */
    if (pad > f->size - pos - 512) break;      /* the last member, unpadded */
    pos += 512 + pad;
  }
  for (int i = 1; i < 4; i++)
    if (!m[i].at) return gt_fail(err, "tar archive has no \"%s\" member", names[i]);
  return GT_OK;
}

/* The next pickle of a member at *pos (< end), moved past it. */
static int tar_pickle(reader *r, uint64_t *pos, uint64_t end, gt_value **v, gt_err *err) {
  size_t used;
  r->inline_ok = 1;
  if (gt_pickle_load(r->file->data + *pos, (size_t)(end - *pos), *pos, NULL, v, &used, err))
    return GT_ERR;
  *pos += used;
  return GT_OK;
}

/* n little-endian bytes at *pos (< end), moved past them. */
static int tar_le(const gt_storage *f, uint64_t *pos, uint64_t end, int n, int64_t *x) {
  if (end - *pos < (uint64_t)n) return GT_ERR;
  uint64_t u = 0;
  for (int i = n - 1; i >= 0; i--) u = u << 8 | f->data[*pos + (uint64_t)i];
  *pos += (uint64_t)n;
  *x = n == 4 ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u;
  return GT_OK;
}

/* A count pickle: a non-negative integer. */
static int tar_count(reader *r, uint64_t *pos, uint64_t end, const char *what,
                     int64_t *n, gt_err *err) {
  gt_value *v = NULL;
  if (tar_pickle(r, pos, end, &v, err)) return gt_wrap(err, "%s count", what);
  int ok = gt_pickle_int(v, n) == GT_OK && *n >= 0;
  gt_value_free(v);
  return ok ? GT_OK : gt_fail(err, "%s count is not a non-negative integer", what);
}

/* Decimal key text of an integer pickle value. */
static int tar_key(const gt_value *v, char *buf, size_t cap) {
  int64_t k;
  if (gt_pickle_int(v, &k) != GT_OK) return GT_ERR;
  snprintf(buf, cap, "%lld", (long long)k);
  return GT_OK;
}

static int tar_new_storage(reader *r, const char *key, const gt_torch_type *t, uint64_t numel,
                           uint64_t at, gt_err *err) {
  size_t idx;
  int isnew;
  uint64_t nbytes;
  if (storage_for(r, key, &idx, &isnew, err)) return GT_ERR;
  if (!isnew) return gt_fail(err, "storage %s is saved twice", key);
  if (gt_mul_u64(numel, t->itemsize, (unsigned long long *)&nbytes) || at > r->file->size ||
      nbytes > r->file->size - at)
    return gt_fail(err, "storage %s: %llu elements of %zu bytes run past the end of the file",
                   key, (unsigned long long)numel, t->itemsize);
  r->st[idx].type = t;
  r->st[idx].numel = numel;
  r->st[idx].at = at;
  r->st[idx].s = aligned(gt_storage_region(r->file, at, nbytes, err), t->itemsize, err);
  return r->st[idx].s ? GT_OK : gt_wrap(err, "storage %s", key);
}

static int tar_storage_views(reader *r, const gt_value *views, gt_err *err) {
  if (!views || views->kind != GT_V_LIST) return gt_fail(err, "storage views are not a list");
  for (size_t i = 0; i < views->n; i++) {
    const gt_value *v = views->items[i];
    char tk[32], rk[32];
    int64_t off, numel;
    size_t root;
    int isnew;
    if (v->kind != GT_V_LIST || v->n != 4 || tar_key(v->items[0], tk, sizeof tk) ||
        tar_key(v->items[1], rk, sizeof rk) || gt_pickle_int(v->items[2], &off) ||
        gt_pickle_int(v->items[3], &numel) || off < 0 || numel < 0)
      return gt_fail(err, "storage view %zu is not (target, root, offset, numel)", i);
    if (storage_for(r, rk, &root, &isnew, err)) return GT_ERR;
    if (isnew || !r->st[root].s)
      return gt_fail(err, "storage view %s: root storage %s is not in the file", tk, rk);
    const tstore *s = &r->st[root];
    if ((uint64_t)off > s->numel || (uint64_t)numel > s->numel - (uint64_t)off)
      return gt_fail(err, "storage view %s: elements [%lld, +%lld) lie outside storage %s "
                          "of %llu", tk, (long long)off, (long long)numel, rk,
                     (unsigned long long)s->numel);
    if (tar_new_storage(r, tk, s->type, (uint64_t)numel, s->at + (uint64_t)off * s->type->itemsize,
                        err))
      return GT_ERR;
  }
  return GT_OK;
}

static int tar_storages(reader *r, const tarmember *m, gt_err *err) {
  uint64_t pos = m->at, end = m->at + m->size;
  int64_t n;
  if (tar_count(r, &pos, end, "storage", &n, err)) return GT_ERR;
  for (int64_t i = 0; i < n; i++) {
    gt_value *v = NULL;
    char key[32];
    int64_t numel;
    if (tar_pickle(r, &pos, end, &v, err)) return gt_wrap(err, "storage %lld header", (long long)i);
    const gt_torch_type *t = storage_class(gt_pickle_item(v, 2));
    int ok = v->kind == GT_V_LIST && v->n == 3 && tar_key(v->items[0], key, sizeof key) == GT_OK;
    gt_value_free(v);
    if (!ok) return gt_fail(err, "storage %lld header is not (key, location, class)", (long long)i);
    if (!t || t == gt_torch_untyped()) return gt_fail(err, "storage %s: not a typed storage class", key);
    if (tar_le(r->file, &pos, end, 8, &numel) || numel < 0)
      return gt_fail(err, "storage %s: no element count", key);
    if (tar_new_storage(r, key, t, (uint64_t)numel, pos, err)) return GT_ERR;
    if ((uint64_t)numel * t->itemsize > end - pos) /* fits the file, checked above */
      return gt_fail(err, "storage %s runs past its tar member", key);
    pos += (uint64_t)numel * t->itemsize;
  }
  gt_value *views = NULL;
  if (tar_pickle(r, &pos, end, &views, err)) return gt_wrap(err, "storage views");
  int rc = tar_storage_views(r, views, err);
  gt_value_free(views);
  return rc;
}

static int cmp_tkey(const void *a, const void *b) {
  const tarkey *x = a, *y = b;
  return x->key < y->key ? -1 : x->key > y->key;
}

/* One tensor's raw header after its pickle: ndim, sizes, strides, offset. */
static int tar_tensor(reader *r, uint64_t *pos, uint64_t end, int64_t key, size_t st,
                      gt_err *err) {
  int64_t nd, pad, off, shape[GT_MAXDIM], strides[GT_MAXDIM];
  if (tar_le(r->file, pos, end, 4, &nd) || tar_le(r->file, pos, end, 4, &pad) ||
      nd < 0 || nd > GT_MAXDIM)
    return gt_fail(err, "tensor %lld: bad dimension count", (long long)key);
  for (int64_t i = 0; i < nd; i++)
    if (tar_le(r->file, pos, end, 8, &shape[i]) || shape[i] < 0)
      return gt_fail(err, "tensor %lld: bad size", (long long)key);
  for (int64_t i = 0; i < nd; i++)
    if (tar_le(r->file, pos, end, 8, &strides[i]) || strides[i] < 0)
      return gt_fail(err, "tensor %lld: bad stride", (long long)key);
  if (tar_le(r->file, pos, end, 8, &off) || off < 0)
    return gt_fail(err, "tensor %lld: bad storage offset", (long long)key);
  if (gt_grow((void **)&r->tkeys, &r->cap_tkeys, r->ntkeys + 1, sizeof *r->tkeys))
    return gt_fail(err, "out of memory");
  tarkey *k = &r->tkeys[r->ntkeys++];
  k->key = key;
  return add_record(r, st, r->st[st].type, off, (int)nd, shape, strides, -1, &k->rec, err);
}

static int tar_tensors(reader *r, const tarmember *m, gt_err *err) {
  uint64_t pos = m->at, end = m->at + m->size;
  int64_t n;
  if (tar_count(r, &pos, end, "tensor", &n, err)) return GT_ERR;
  for (int64_t i = 0; i < n; i++) {
    gt_value *v = NULL;
    char skey[32];
    int64_t key;
    size_t st;
    int isnew;
    if (tar_pickle(r, &pos, end, &v, err)) return gt_wrap(err, "tensor %lld header", (long long)i);
    int ok = v->kind == GT_V_LIST && v->n == 3 && gt_pickle_int(v->items[0], &key) == GT_OK &&
             tar_key(v->items[1], skey, sizeof skey) == GT_OK;
    gt_value_free(v);
    if (!ok) return gt_fail(err, "tensor %lld header is not (key, storage key, class)", (long long)i);
    if (storage_for(r, skey, &st, &isnew, err)) return GT_ERR;
    if (isnew || !r->st[st].s)
      return gt_fail(err, "tensor %lld: storage %s is not in the file", (long long)key, skey);
    if (tar_tensor(r, &pos, end, key, st, err)) return GT_ERR;
  }
  if (r->ntkeys > 1) qsort(r->tkeys, r->ntkeys, sizeof *r->tkeys, cmp_tkey);
  for (size_t i = 1; i < r->ntkeys; i++)
    if (r->tkeys[i].key == r->tkeys[i - 1].key)
      return gt_fail(err, "tensor %lld is saved twice", (long long)r->tkeys[i].key);
  return GT_OK;
}

/* Persistent id of the tar object pickle: "<key>" of a tensor or storage,
 * or (class, source file, source) of a module class (the class is kept). */
static gt_value *tar_pid(reader *r, const gt_value *pid, gt_err *err) {
  if (pid->kind == GT_V_LIST && pid->n >= 1 && pid->items[0]->kind == GT_V_OBJECT &&
      pid->items[0]->i == 0) {
    gt_value *g = gt_value_new(GT_V_OBJECT);
    if (g && (g->str = strdup(pid->items[0]->str))) {
      g->len = strlen(g->str);
      return g;
    }
    gt_value_free(g);
    return gt_fail(err, "out of memory"), NULL;
  }
  const char *t = text_of(pid);
  int64_t key;
  char *end = NULL;
  if (t && strlen(t) == pid->len && *t) key = strtoll(t, &end, 10);
  else if (gt_pickle_int(pid, &key) != GT_OK) end = NULL;
  else end = (char *)"";
  if (!end || *end) return gt_fail(err, "persistent id is not a tensor or storage key"), NULL;
  tarkey probe = {key, 0}, *hit = r->ntkeys ? bsearch(&probe, r->tkeys, r->ntkeys,
                                                      sizeof *r->tkeys, cmp_tkey) : NULL;
  gt_value *v = gt_value_new(GT_V_TENSOR);
  if (!v) return gt_fail(err, "out of memory"), NULL;
  if (hit) {
    v->i = (int64_t)hit->rec;
    return v;
  }
  char skey[32];
  size_t st;
  int isnew;
  snprintf(skey, sizeof skey, "%lld", (long long)key);
  if (storage_for(r, skey, &st, &isnew, err) || isnew || !r->st[st].s) {
    gt_value_free(v);
    return gt_fail(err, "persistent id %s names no tensor or storage of the file", skey), NULL;
  }
  v->i = (int64_t)st;
  v->f = 1;
  return v;
}

static int read_tar(reader *r, gt_value *meta, gt_err *err) {
  tarmember m[4];
  gt_value *tree = NULL;
  r->tar = 1;
  int rc = set_text(meta, "kind", "tar", 3, err);
  if (rc == GT_OK) rc = tar_index(r->file, m, err);
  if (rc == GT_OK && tar_storages(r, &m[2], err)) rc = gt_wrap(err, "tar member \"storages\"");
  if (rc == GT_OK && tar_tensors(r, &m[3], err)) rc = gt_wrap(err, "tar member \"tensors\"");
  if (rc == GT_OK) {
    r->inline_ok = 1;
    if (load_pickle(r, r->file->data + m[1].at, (size_t)m[1].size, m[1].at, 1, &tree, NULL, err))
      rc = gt_wrap(err, "tar member \"pickle\"");
  }
  if (rc == GT_OK) rc = finish(r, tree, "tree", meta, err);
  gt_value_free(tree);
  return rc;
}

/* ------------------------------------------------------------ entry */

const char *gt_torch_sniff(const unsigned char *p, uint64_t len) {
  if (gt_zip_sniff(p, len)) return "zip";
  if (is_legacy(p, len)) return "legacy";
  if (is_tar(p, len)) return "tar";
  if (len >= 2 && p[0] == 0x80 && p[1] <= 5) return "pickle";
  return NULL;
}

static int read_plain(reader *r, gt_value *meta, gt_err *err) {
  gt_value *tree = NULL;
  r->inline_ok = 1;
  int rc = set_text(meta, "kind", "pickle", 6, err);
  if (rc == GT_OK) rc = load_pickle(r, r->file->data, r->file->size, 0, 0, &tree, NULL, err);
  if (rc == GT_OK) rc = finish(r, tree, "tree", meta, err);
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
    reader_free(&r);
    return gt_fail(err, "out of memory");
  }
  if (file->size > SIZE_MAX) return gt_fail(err, "file too large");
  const char *kind = gt_torch_sniff(file->data, file->size);
  int rc;
  if (kind && strcmp(kind, "zip") == 0) rc = read_zip(&r, meta, err);
  else if (kind && strcmp(kind, "legacy") == 0) rc = read_legacy(&r, meta, err);
  else if (kind && strcmp(kind, "tar") == 0) rc = read_tar(&r, meta, err);
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
  reader_free(&r);
  if (rc != GT_OK) {
    gt_value_free(meta);
    return GT_ERR;
  }
  m->format = "torch";
  gt_value_free(m->meta);
  m->meta = meta;
  return GT_OK;
}
