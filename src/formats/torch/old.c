/* old.c: the PyTorch layouts before the zip one (read.h, reader.h): legacy
 * torch.save files, torch <= 0.1.9 tar archives, torch 0.1.x-0.3 tensors
 * and storages pickled by value, and storages pickled as a whole legacy
 * file (torch.storage._load_from_bytes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/torch/reader.h"
#include "io/grow.h"
#include "io/pickle.h"
#include "tensor/cast.h"

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
  return gt_torch_inline_storage(r, t, numel, s, idx, err);
}

int gt_torch_old_hook(reader *r, gt_value *obj, int built, gt_err *err) {
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
    if (gt_torch_add_record(r, idx, t, 0, nd, shape, strides, -1, &rec, err)) return GT_ERR;
    gt_pickle_become(obj, GT_V_TENSOR, (int64_t)rec, 0);
    return GT_OK;
  }
  const gt_value *st = obj->items[GT_PK_STATE];
  if (built && st && st->kind == GT_V_LIST && st->n == 4) /* set_(*state) */
    return gt_torch_rebuild(r, obj, st, 0, err);
  return GT_OK;
}

/* ------------------------------------------------------------ legacy */

static const unsigned char legacy_magic[] = {
  0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E};

int gt_torch_is_legacy(const unsigned char *p, uint64_t len) {
  return len >= sizeof legacy_magic && memcmp(p, legacy_magic, sizeof legacy_magic) == 0;
}

/* Next pickle of a legacy file at *pos (moved past it). */
static int next_pickle(reader *r, uint64_t *pos, int storages, gt_value **v, gt_err *err) {
  size_t used;
  const gt_storage *f = r->file;
  r->inline_ok = 1;
  if (gt_torch_load_pickle(r, f->data + *pos, (size_t)(f->size - *pos), *pos, storages, v,
                           &used, err))
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
  return gt_torch_set_text(meta, "byteorder", r->swap ? "big" : "little", r->swap ? 3 : 6, err);
}

/* Storage blocks after the key list: i64 element count, then the bytes. */
static int legacy_storages(reader *r, uint64_t pos, const gt_value *keys, gt_err *err) {
  if (!keys || keys->kind != GT_V_LIST) return gt_fail(err, "legacy storage key list is not a list");
  for (size_t i = 0; i < keys->n; i++) {
    const char *key = text_of(keys->items[i]);
    size_t idx;
    int isnew;
    if (!key) return gt_fail(err, "legacy storage key %zu is not a string", i);
    if (gt_torch_storage_for(r, key, &idx, &isnew, err)) return GT_ERR;
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
    s->s = gt_torch_aligned(gt_storage_region(r->file, pos, nbytes, err), s->type->itemsize, err);
    if (!s->s) return gt_wrap(err, "legacy storage \"%s\"", key);
    pos += nbytes;
  }
  for (size_t i = 0; i < r->nst; i++)
    if (!r->st[i].s) return gt_fail(err, "storage \"%s\" has no data in the file", r->st[i].key);
  return GT_OK;
}

int gt_torch_read_legacy(reader *r, gt_value *meta, gt_err *err) {
  uint64_t pos;
  gt_value *tree = NULL, *keys = NULL;
  r->legacy = 1;
  int rc = gt_torch_set_text(meta, "kind", "legacy", 6, err);
  if (rc == GT_OK) rc = legacy_header(r, &pos, meta, err);
  if (rc == GT_OK && next_pickle(r, &pos, 1, &tree, err)) rc = gt_wrap(err, "legacy object pickle");
  if (rc == GT_OK && next_pickle(r, &pos, 0, &keys, err)) rc = gt_wrap(err, "legacy storage key list");
  if (rc == GT_OK) rc = legacy_storages(r, pos, keys, err);
  if (rc == GT_OK) rc = gt_torch_finish(r, tree, "tree", meta, err);
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
int gt_torch_from_bytes(reader *r, gt_value *obj, const gt_value *b, gt_err *err) {
  if (r->nested) return gt_fail(err, "_load_from_bytes inside _load_from_bytes");
  gt_storage *blob = gt_torch_pickled_bytes(r, b, err);
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
  if (rc == GT_OK && !gt_torch_is_legacy(blob->data, blob->size))
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
    rc = gt_torch_inline_storage(r, st->type, st->numel, st->s, &idx, err);
  }
  if (rc == GT_OK) gt_pickle_become(obj, GT_V_TENSOR, (int64_t)idx, 1);
  gt_value_free(meta);
  gt_value_free(tree);
  gt_value_free(keys);
  gt_torch_reader_free(&sub);
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

int gt_torch_is_tar(const unsigned char *p, uint64_t len) {
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
  if (gt_torch_storage_for(r, key, &idx, &isnew, err)) return GT_ERR;
  if (!isnew) return gt_fail(err, "storage %s is saved twice", key);
  if (gt_mul_u64(numel, t->itemsize, (unsigned long long *)&nbytes) || at > r->file->size ||
      nbytes > r->file->size - at)
    return gt_fail(err, "storage %s: %llu elements of %zu bytes run past the end of the file",
                   key, (unsigned long long)numel, t->itemsize);
  r->st[idx].type = t;
  r->st[idx].numel = numel;
  r->st[idx].at = at;
  r->st[idx].s = gt_torch_aligned(gt_storage_region(r->file, at, nbytes, err), t->itemsize, err);
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
    if (gt_torch_storage_for(r, rk, &root, &isnew, err)) return GT_ERR;
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
    const gt_torch_type *t = gt_torch_storage_class(gt_pickle_item(v, 2));
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
  return gt_torch_add_record(r, st, r->st[st].type, off, (int)nd, shape, strides, -1, &k->rec, err);
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
    if (gt_torch_storage_for(r, skey, &st, &isnew, err)) return GT_ERR;
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
gt_value *gt_torch_tar_pid(reader *r, const gt_value *pid, gt_err *err) {
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
  if (gt_torch_storage_for(r, skey, &st, &isnew, err) || isnew || !r->st[st].s) {
    gt_value_free(v);
    return gt_fail(err, "persistent id %s names no tensor or storage of the file", skey), NULL;
  }
  v->i = (int64_t)st;
  v->f = 1;
  return v;
}

int gt_torch_read_tar(reader *r, gt_value *meta, gt_err *err) {
  tarmember m[4];
  gt_value *tree = NULL;
  r->tar = 1;
  int rc = gt_torch_set_text(meta, "kind", "tar", 3, err);
  if (rc == GT_OK) rc = tar_index(r->file, m, err);
  if (rc == GT_OK && tar_storages(r, &m[2], err)) rc = gt_wrap(err, "tar member \"storages\"");
  if (rc == GT_OK && tar_tensors(r, &m[3], err)) rc = gt_wrap(err, "tar member \"tensors\"");
  if (rc == GT_OK) {
    r->inline_ok = 1;
    if (gt_torch_load_pickle(r, r->file->data + m[1].at, (size_t)m[1].size, m[1].at, 1, &tree,
                             NULL, err))
      rc = gt_wrap(err, "tar member \"pickle\"");
  }
  if (rc == GT_OK) rc = gt_torch_finish(r, tree, "tree", meta, err);
  gt_value_free(tree);
  return rc;
}

