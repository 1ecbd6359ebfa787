/* t7.c: reader for Lua Torch7's serialized objects (File.lua readObject).
 *
 * An object is an int type tag followed by its body (docs/formats/t7.md):
 *   0 nil            -
 *   1 number         double
 *   2 string         int len, len bytes
 *   3 table          int index, [int n, n x (key object, value object)]
 *   4 torch object   int index, [int len "V <version>", int len class name,
 *                    class body]  (pre-versioning files: the class name in
 *                    place of the version string)
 *   5 boolean        int (1 = true)
 *   6 function       int len, bytecode, upvalues object
 *   7, 8 recursive function  int index, [int len, bytecode, upvalues object]
 * The bracketed part is present only the first time an index is written;
 * later occurrences are the index alone (shared and cyclic references).
 * Class bodies: Storage = long n, n raw elements; Tensor = int ndim, long
 * size[ndim], long stride[ndim], long storageOffset (1-based), storage
 * object; tds.Hash = long n, n x (key, value); tds.Vec = long n, n items;
 * any other class = one object, its table state.
 * Binary: ints 4 bytes, longs the writer's File:longSize (8 bytes on 64-bit
 * Unix, 4 on Windows and 32-bit machines: sizes, strides, offsets, storage
 * and tds sizes and a Long storage's elements), doubles 8, all in the
 * writer's byte order. Ascii: numbers as decimal text separated by
 * whitespace, each read of n items followed by one optional newline;
 * strings and Byte/Char storages are raw bytes. */
#include "formats/t7.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/cast.h"

#define MAX_DEPTH 200     /* nesting of objects (tables, classes, keys) */
#define MAX_PATH 4096     /* bytes of a tensor name */

enum { ENC_LE, ENC_BE, ENC_ASCII };
enum { T_NIL, T_NUMBER, T_STRING, T_TABLE, T_TORCH, T_BOOLEAN, T_FUNCTION,
       T_LEGACY_RECUR, T_RECUR };
enum { O_TABLE, O_TENSOR, O_STORAGE, O_FUNCTION, O_OBJECT };

/* One indexed object already met. */
typedef struct obj {
  int kind;
  char *path;          /* where it was first met */
  gt_storage *st;      /* O_STORAGE: its bytes (owned reference) */
  gt_dtype dt;         /* O_TENSOR, O_STORAGE */
  int swap;            /* O_STORAGE: st holds big-endian elements */
  int64_t count;       /* O_STORAGE: elements */
  int64_t entry;       /* entry index in the model, or -1 */
} obj;

typedef struct rd {
  gt_storage *file;
  const unsigned char *p;
  size_t n, pos;
  int enc;
  int lsize;           /* bytes of a binary long, 8 or 4; 0 until the first
                          header holding longs settles it (see settle) */
  int long_seen;       /* a long was read: the long size mattered */
  gt_model *m;
  gt_err *err;
  obj **objs;          /* by object index (1-based as written) */
  size_t nobjs;
  char **names;        /* open-addressed set of entry names */
  size_t names_cap, names_n;
  gt_value *functions, *classes;
  char path[MAX_PATH];
  size_t plen;
  int depth;
  int want_storage;    /* the next object is a tensor's storage */
  int wrapped;         /* the error already names its path */
} rd;

static int oom(rd *r) { return gt_fail(r->err, "out of memory"); }

/* ---- primitive reads ---------------------------------------------------- */

static int need(rd *r, uint64_t k, const char *what) {
  if (k > r->n - r->pos)
    return gt_fail(r->err, "truncated at byte %zu: %s needs %llu bytes, %zu left",
                   r->pos, what, (unsigned long long)k, r->n - r->pos);
  return GT_OK;
}

static uint64_t load_uint(rd *r, int size) {
  uint64_t v = 0;
  const unsigned char *q = r->p + r->pos;
  for (int i = 0; i < size; i++) {
    int b = r->enc == ENC_BE ? i : size - 1 - i;
    v = v << 8 | q[b];
  }
  r->pos += (size_t)size;
  return v;
}

/* Ascii: skips whitespace (as fscanf does), copies the token into buf. */
static int token(rd *r, char *buf, size_t cap, const char *what) {
  while (r->pos < r->n && strchr(" \t\r\n\v\f", r->p[r->pos]) && r->p[r->pos])
    r->pos++;
  size_t k = 0;
  while (r->pos < r->n && !strchr(" \t\r\n\v\f", r->p[r->pos]) && r->p[r->pos]) {
    if (k + 1 >= cap) return gt_fail(r->err, "byte %zu: %s: number too long", r->pos, what);
    buf[k++] = (char)r->p[r->pos++];
  }
  buf[k] = 0;
  if (!k) return gt_fail(r->err, "truncated at byte %zu: %s missing", r->pos, what);
  return GT_OK;
}

/* Ascii: the newline torch7's auto-spacing puts after each read of n items. */
static void end_items(rd *r) {
  if (r->enc == ENC_ASCII && r->pos < r->n && r->p[r->pos] == '\n') r->pos++;
}

static int ascii_int(rd *r, int64_t *v, const char *what) {
  char buf[64], *end;
  if (token(r, buf, sizeof buf, what) != GT_OK) return GT_ERR;
  errno = 0;
  long long x = strtoll(buf, &end, 10);
  if (*end || errno) return gt_fail(r->err, "byte %zu: %s: bad integer \"%s\"", r->pos, what, buf);
  *v = x;
  return GT_OK;
}

static int ascii_double(rd *r, double *v, const char *what) {
  char buf[64], *end;
  if (token(r, buf, sizeof buf, what) != GT_OK) return GT_ERR;
  *v = strtod(buf, &end);
  if (*end) return gt_fail(r->err, "byte %zu: %s: bad number \"%s\"", r->pos, what, buf);
  return GT_OK;
}

/* n ints (4 bytes binary), as int64. */
static int read_ints(rd *r, int64_t *v, int n, int size, const char *what) {
  for (int i = 0; i < n; i++) {
    if (r->enc == ENC_ASCII) {
      if (ascii_int(r, &v[i], what) != GT_OK) return GT_ERR;
      if (size == 4 && (v[i] < INT32_MIN || v[i] > INT32_MAX))
        return gt_fail(r->err, "byte %zu: %s out of int range", r->pos, what);
    } else {
      if (need(r, (uint64_t)size, what) != GT_OK) return GT_ERR;
      uint64_t u = load_uint(r, size);
      v[i] = size == 4 ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u;
    }
  }
  if (n > 0) end_items(r);
  return GT_OK;
}

static int read_int(rd *r, int64_t *v, const char *what) {
  return read_ints(r, v, 1, 4, what);
}
/* ---- the size of a long ------------------------------------------------- *
 * torch7 writes a long in File:longSize bytes: 8 on 64-bit Unix, 4 on
 * Windows and 32-bit machines (torch.load's "b32"). Nothing in the file says
 * which; the first header that holds longs (a tensor's, a storage's or a
 * tds's, whichever comes first) settles it: it is read both ways, and 4 is
 * taken only when the 8-byte reading cannot be laid out and the 4-byte one
 * is laid out and its values are valid. Where the header ends a type tag
 * must follow (a tensor's storage: nil or a torch object, whose version
 * string or class name are never 0 or 4 when misread as a tag), and a
 * storage or tds count and a tensor offset, read as 8 bytes, have a high
 * word that is the sign extension of the low one (a storage of 2^31
 * elements or more breaks this: it is taken for 4 only if its 4-byte
 * reading fits too); read from a file of 4-byte longs that high word is
 * the next field, which is rarely 0. Bad values alone (a negative size,
 * offset 0) do not refute the 8-byte reading: that is a damaged file,
 * reported as such. Each probe answers 1 (fits), 0 (the file ends first:
 * cannot tell; 8 it is) or -1 (does not fit); it reads nothing past the
 * file and moves nothing. docs/formats/t7.md says why this and not a
 * second reading of the whole file. */

/* The int32 at byte `at` in the file's byte order. */
static int peek32(const rd *r, uint64_t at, int64_t *v) {
  if (at > r->n || r->n - at < 4) return 0;
  uint32_t u = 0;
  for (int i = 0; i < 4; i++) u = u << 8 | r->p[at + (size_t)(r->enc == ENC_BE ? i : 3 - i)];
  *v = (int32_t)u;
  return 1;
}

/* The long of lsize bytes at `at`. */
static int peek_long(const rd *r, uint64_t at, int lsize, int64_t *v) {
  if (lsize == 4) return peek32(r, at, v);
  int64_t lo, hi;
  int be = r->enc == ENC_BE;
  if (!peek32(r, at + (be ? 4 : 0), &lo) || !peek32(r, at + (be ? 0 : 4), &hi)) return 0;
  if (hi != (lo < 0 ? -1 : 0)) return -1;
  *v = lo;
  return 1;
}

/* Whether an object may start at `at`: the end of the file or a type tag. */
static int object_fits(const rd *r, uint64_t at) {
  int64_t tag;
  if (at == r->n) return 1;
  return peek32(r, at, &tag) == 1 && tag >= T_NIL && tag <= T_RECUR ? 1 : -1;
}

/* A tensor header after its ndim: nd sizes, nd strides, an offset, then
 * its storage, nil or a torch object. With 4-byte longs the sizes must be
 * >= 0 and the offset >= 1; with 8 only the offset's high word is
 * checked (a size may legitimately pass 2^32: a damaged file says so later). */
static int tensor_fits(const rd *r, int nd, int lsize) {
  int64_t v;
  for (int i = 0; lsize == 4 && i < nd; i++)
    if (peek32(r, r->pos + 4 * (uint64_t)i, &v) && v < 0) return -1;
  uint64_t at = r->pos + 2 * (uint64_t)nd * (uint64_t)lsize;
  int k = peek_long(r, at, lsize, &v);
  if (k <= 0) return k;
  if (lsize == 4 && v < 1) return -1;
  k = peek32(r, at + (uint64_t)lsize, &v);
  if (k <= 0) return k;
  return v == T_NIL || v == T_TORCH ? 1 : -1;
}

/* A count read as one long, then `each` bytes of data per counted thing
 * (a storage's elements; 0 for a tds, whose items are objects), then an
 * object or the end of the file. Data past the end answers 0: a file cut
 * short must not pass for one of 4-byte longs. */
static int count_fits(const rd *r, int lsize, uint64_t each) {
  int64_t n;
  int k = peek_long(r, r->pos, lsize, &n);
  if (k <= 0) return k;
  if (n < 0) return lsize == 4 ? -1 : 0;
  uint64_t at = r->pos + (uint64_t)lsize;
  if (each && (uint64_t)n > (r->n - at) / each) return 0;
  return object_fits(r, at + (uint64_t)n * each);
}

/* Whether the long size is still open (binary, not given, no long yet). */
static int unsettled(const rd *r) { return !r->lsize && r->enc != ENC_ASCII; }

/* Settles r->lsize at the first header holding longs; f8 and f4 are its
 * probes read with 8- and 4-byte longs. */
static void settle(rd *r, int f8, int f4) {
  r->lsize = f8 < 0 && f4 > 0 ? 4 : 8;
}

/* n longs: r->lsize bytes each in binary, decimal in ascii. */
static int read_longs(rd *r, int64_t *v, int n, const char *what) {
  r->long_seen = 1;
  return read_ints(r, v, n, r->enc == ENC_ASCII ? 8 : r->lsize, what);
}

/* A count of things each taking at least `each` bytes of what follows (an
 * int, or a long when is_long): non-negative and, with each > 0, fitting
 * the bytes left. */
static int read_count(rd *r, int is_long, uint64_t each, const char *what, int64_t *n) {
  if ((is_long ? read_longs(r, n, 1, what) : read_int(r, n, what)) != GT_OK) return GT_ERR;
  if (*n < 0) return gt_fail(r->err, "byte %zu: bad %s %lld", r->pos, what, (long long)*n);
  if (each && (uint64_t)*n > (r->n - r->pos) / each)
    return gt_fail(r->err, "byte %zu: %s %lld overruns the file", r->pos, what, (long long)*n);
  return GT_OK;
}

static int read_double(rd *r, double *v) {
  if (r->enc == ENC_ASCII) {
    if (ascii_double(r, v, "number") != GT_OK) return GT_ERR;
    end_items(r);
    return GT_OK;
  }
  if (need(r, 8, "number") != GT_OK) return GT_ERR;
  uint64_t u = load_uint(r, 8);
  memcpy(v, &u, 8);
  return GT_OK;
}

/* n raw bytes (strings, bytecode, Byte/Char storages): *at is their offset. */
static int read_raw(rd *r, int64_t n, size_t *at, const char *what) {
  if (n < 0) return gt_fail(r->err, "byte %zu: %s has negative length %lld", r->pos, what, (long long)n);
  if (need(r, (uint64_t)n, what) != GT_OK) return GT_ERR;
  *at = r->pos;
  r->pos += (size_t)n;
  if (n > 0) end_items(r);
  return GT_OK;
}

/* int n, then n raw bytes (a string, a class name, bytecode): *at is their
 * offset, *len n. */
static int read_lstring(rd *r, const char *what_len, const char *what, size_t *at,
                        int64_t *len) {
  if (read_int(r, len, what_len) != GT_OK) return GT_ERR;
  return read_raw(r, *len, at, what);
}

/* ---- paths and names ---------------------------------------------------- */

/* Appends ".seg" (or "seg" at the root); returns the old length. */
static int push_seg(rd *r, const char *seg, size_t len, size_t *old) {
  *old = r->plen;
  size_t extra = len + (r->plen ? 1 : 0);
  if (extra >= MAX_PATH - r->plen)
    return gt_fail(r->err, "object path longer than %d bytes", MAX_PATH);
  if (r->plen) r->path[r->plen++] = '.';
  memcpy(r->path + r->plen, seg, len);
  r->plen += len;
  r->path[r->plen] = 0;
  return GT_OK;
}

static void pop_seg(rd *r, size_t old) {
  r->plen = old;
  r->path[old] = 0;
}

/* A key as a name segment: strings as they are, integral numbers in
 * decimal, other numbers %.17g, booleans true/false, anything else "?". */
static size_t key_seg(const gt_value *k, char *buf, size_t cap, const char **out) {
  *out = buf;
  if (k->kind == GT_V_STR) {
    *out = k->str;
    return k->len;
  }
  int len;
  if (k->kind == GT_V_FLOAT && k->f > -9.2e18 && k->f < 9.2e18 && k->f == (double)(int64_t)k->f)
    len = snprintf(buf, cap, "%lld", (long long)(int64_t)k->f);
  else if (k->kind == GT_V_FLOAT) len = snprintf(buf, cap, "%.17g", k->f);
  else if (k->kind == GT_V_BOOL) len = snprintf(buf, cap, "%s", k->i ? "true" : "false");
  else len = snprintf(buf, cap, "?");
  return (size_t)len;
}

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* Inserts s into the name set unless present; returns 1 if added. */
static int name_add(rd *r, char *s, int *added) {
  if (2 * (r->names_n + 1) > r->names_cap) {
    size_t cap = r->names_cap ? r->names_cap * 2 : 64;
    char **t = calloc(cap, sizeof *t);
    if (!t) return oom(r);
    for (size_t i = 0; i < r->names_cap; i++) {
      if (!r->names[i]) continue;
      size_t j = hash(r->names[i]) & (cap - 1);
      while (t[j]) j = (j + 1) & (cap - 1);
      t[j] = r->names[i];
    }
    free(r->names);
    r->names = t;
    r->names_cap = cap;
  }
  size_t j = hash(s) & (r->names_cap - 1);
  while (r->names[j]) {
    if (strcmp(r->names[j], s) == 0) {
      *added = 0;
      return GT_OK;
    }
    j = (j + 1) & (r->names_cap - 1);
  }
  r->names[j] = s;
  r->names_n++;
  *added = 1;
  return GT_OK;
}

/* Adds t under the current path (made unique with "#2", "#3" ... when two
 * keys give the same segment, e.g. 1 and "1"); *entry is its index. */
static int add_entry(rd *r, gt_tensor *t, const char *root_name, int64_t *entry) {
  const char *base = r->plen ? r->path : root_name;
  size_t blen = strlen(base);
  char *name = malloc(blen + 24);
  if (!name) {
    gt_tensor_free(t);
    return oom(r);
  }
  memcpy(name, base, blen + 1);
  for (int k = 2;; k++) {
    int added;
    if (name_add(r, name, &added) != GT_OK) {
      free(name);
      gt_tensor_free(t);
      return GT_ERR;
    }
    if (added) break;
    snprintf(name + blen, 24, "#%d", k);
  }
  *entry = (int64_t)r->m->n;
  /* the set keeps `name`: gt_model_add copies it */
  return gt_model_add(r->m, name, strlen(name), t, r->err);
}

/* ---- object table ------------------------------------------------------- */

/* An index must be new or name an object met before; indices are bounded by
 * the file size (each object takes at least 8 bytes). */
static int check_index(rd *r, int64_t index) {
  if (index < 1 || (uint64_t)index > r->n)
    return gt_fail(r->err, "byte %zu: object index %lld out of range", r->pos, (long long)index);
  return GT_OK;
}

static obj *find_obj(rd *r, int64_t index) {
  return (size_t)index < r->nobjs ? r->objs[index] : NULL;
}

static obj *new_obj(rd *r, int64_t index, int kind) {
  if ((size_t)index >= r->nobjs) {
    size_t cap = r->nobjs ? r->nobjs : 16;
    while (cap <= (size_t)index) cap *= 2;
    obj **t = realloc(r->objs, cap * sizeof *t);
    if (!t) return NULL;
    memset(t + r->nobjs, 0, (cap - r->nobjs) * sizeof *t);
    r->objs = t;
    r->nobjs = cap;
  }
  obj *o = calloc(1, sizeof *o);
  if (!o) return NULL;
  o->kind = kind;
  o->entry = -1;
  o->path = strdup(r->plen ? r->path : "(root)");
  if (!o->path) {
    free(o);
    return NULL;
  }
  r->objs[index] = o;
  return o;
}

/* The storage object a value stands for, or NULL. A storage is passed up as
 * an OBJECT "t7.storage" with no items whose i is its index; an instance of a
 * class a file names "t7.storage" has its state as an item and no storage
 * behind its i, so a file cannot forge one. */
static obj *storage_of(rd *r, const gt_value *v) {
  if (!v || v->kind != GT_V_OBJECT || v->n != 0 || !v->str || strcmp(v->str, "t7.storage") != 0)
    return NULL;
  obj *o = find_obj(r, v->i);
  return o && o->kind == O_STORAGE ? o : NULL;
}

/* An OBJECT value of class cls[0, len), no items yet (NULL: out of
 * memory). */
static gt_value *class_value(const char *cls, size_t len) {
  gt_value *v = gt_value_new(GT_V_OBJECT);
  if (!v || !(v->str = malloc(len + 1))) {
    gt_value_free(v);
    return NULL;
  }
  memcpy(v->str, cls, len);
  v->str[len] = 0;
  v->len = len;
  return v;
}

/* The marker a storage is passed up as (see storage_of). */
static gt_value *storage_marker(int64_t index) {
  gt_value *v = class_value("t7.storage", 10);
  if (v) v->i = index;
  return v;
}

static gt_value *ref_value(const obj *o) {
  gt_value *v = class_value("t7.ref", 6);
  if (!v) return NULL;
  if (gt_value_push(v, gt_value_str(o->path, strlen(o->path))) != GT_OK) {
    gt_value_free(v);
    return NULL;
  }
  return v;
}

/* Appends item (nil when NULL) to the OBJECT v; on failure frees v. */
static int push_item(rd *r, gt_value *v, gt_value *item) {
  if (gt_value_push(v, item ? item : gt_value_new(GT_V_NIL)) == GT_OK) return GT_OK;
  gt_value_free(v);
  return oom(r);
}

static gt_value *tensor_value(int64_t entry) {
  gt_value *v = gt_value_new(GT_V_TENSOR);
  if (v) v->i = entry;
  return v;
}

/* ---- classes ------------------------------------------------------------ */

/* Torch7 numeric types: class name stem ("Float" of torch.FloatTensor) ->
 * dtype. cutorch's classes are written like the CPU ones (torch.CudaTensor
 * holds floats). */
static const struct {
  const char *stem;
  gt_dtype dt;
} ttypes[] = {
  {"Byte", GT_U8},   {"Char", GT_I8},    {"Short", GT_I16},
  {"Int", GT_I32},   {"Long", GT_I64},   {"Float", GT_F32},
  {"Double", GT_F64}, {"Half", GT_F16},  {"Cuda", GT_F32},
  {"CudaByte", GT_U8}, {"CudaChar", GT_I8}, {"CudaShort", GT_I16},
  {"CudaInt", GT_I32}, {"CudaLong", GT_I64}, {"CudaDouble", GT_F64},
  {"CudaHalf", GT_F16},
};

/* Whether cls is torch.<stem>Tensor (kind O_TENSOR) or torch.<stem>Storage
 * (O_STORAGE); -1 otherwise. */
static int numeric_class(const char *cls, size_t len, gt_dtype *dt) {
  if (len < 6 || memcmp(cls, "torch.", 6) != 0) return -1;
  cls += 6;
  len -= 6;
  for (size_t i = 0; i < sizeof ttypes / sizeof ttypes[0]; i++) {
    size_t sl = strlen(ttypes[i].stem);
    if (len <= sl || memcmp(cls, ttypes[i].stem, sl) != 0) continue;
    *dt = ttypes[i].dt;
    if (len - sl == 6 && memcmp(cls + sl, "Tensor", 6) == 0) return O_TENSOR;
    if (len - sl == 7 && memcmp(cls + sl, "Storage", 7) == 0) return O_STORAGE;
  }
  return -1;
}

static int read_object(rd *r, gt_value **out);

/* A storage whose file elements are not its bytes, decoded here into a
 * native heap storage: ascii text (every element at least 2 bytes of text,
 * the last one 1), or a Long storage in a binary file of 4-byte longs
 * (torch7 writes each long as an int32; read back sign-extended). The bytes
 * left bound count before anything is allocated. */
static gt_storage *decoded_storage(rd *r, gt_dtype dt, int64_t count) {
  size_t es = gt_dtype_size(dt);
  int text = r->enc == ENC_ASCII;
  uint64_t left = r->n - r->pos;
  if ((uint64_t)count > (text ? left / 2 + 1 : left / 4)) {
    gt_fail(r->err, "byte %zu: storage of %lld elements overruns the file", r->pos, (long long)count);
    return NULL;
  }
  gt_storage *s = gt_storage_new((size_t)count * es, 0, r->err);
  if (!s) return NULL;
  for (int64_t i = 0; i < count; i++) {
    unsigned char *d = s->data + (size_t)i * es;
    int64_t iv = 0;
    double fv = 0;
    int rc = GT_OK;
    if (!text) iv = (int32_t)(uint32_t)load_uint(r, 4);
    else if (gt_dtype_is_float(dt)) rc = ascii_double(r, &fv, "storage element");
    else rc = ascii_int(r, &iv, "storage element");
    if (rc != GT_OK) {
      gt_storage_release(s);
      return NULL;
    }
    switch (dt) {
    case GT_F64: memcpy(d, &fv, 8); break;
    case GT_F32: { float f = (float)fv; memcpy(d, &f, 4); break; }
    case GT_F16: { uint16_t h = gt_f64_to_f16(fv); memcpy(d, &h, 2); break; }
    case GT_I64: memcpy(d, &iv, 8); break;
    case GT_I32: { int32_t x = (int32_t)iv; memcpy(d, &x, 4); break; }
    case GT_I16: { int16_t x = (int16_t)iv; memcpy(d, &x, 2); break; }
    default: break;
    }
  }
  if (count > 0) end_items(r);
  return s;
}

/* Storage body: long n, n elements. Binary elements are views of the file
 * in its byte order, but for a Long storage whose longs are 4 bytes; ascii
 * ones (but raw Byte/Char bytes) are decoded. */
static int read_storage(rd *r, obj *o) {
  int64_t count;
  size_t es = gt_dtype_size(o->dt);
  int is_long = o->dt == GT_I64;
  /* a Long storage's elements are longs */
  if (unsettled(r)) settle(r, count_fits(r, 8, es), count_fits(r, 4, is_long ? 4 : es));
  if (read_count(r, 1, 0, "storage size", &count) != GT_OK) return GT_ERR;
  if ((uint64_t)count > UINT64_MAX / es)
    return gt_fail(r->err, "byte %zu: bad storage size %lld", r->pos, (long long)count);
  o->count = count;
  int narrow = is_long && r->enc != ENC_ASCII && r->lsize == 4;
  if ((r->enc == ENC_ASCII && es > 1) || narrow) {
    o->st = decoded_storage(r, o->dt, count);
    return o->st ? GT_OK : GT_ERR;
  }
  uint64_t bytes = (uint64_t)count * es;
  if (need(r, bytes, "storage data") != GT_OK) return GT_ERR;
  o->st = gt_storage_aligned(r->file, r->pos, bytes, es, r->err);
  if (!o->st) return GT_ERR;
  o->swap = r->enc == ENC_BE;
  r->pos += (size_t)bytes;
  if (bytes) end_items(r);
  return GT_OK;
}

/* A view of storage object so: nd sizes and strides in elements from the
 * 0-based element offset off, checked to lie inside the storage. */
static int storage_view(rd *r, const obj *so, int nd, const int64_t *size, const int64_t *stride,
                        int64_t off, gt_tensor *t) {
  memset(t, 0, sizeof *t);
  t->dtype = t->sdtype = so->dt;
  t->swap = so->swap;
  t->ndim = nd;
  for (int i = 0; i < nd; i++) {
    t->shape[i] = size[i];
    t->strides[i] = stride[i];
  }
  t->offset = off * (int64_t)gt_dtype_size(so->dt);
  t->storage = so->st;
  if (gt_tensor_check(t, r->err) != GT_OK) {
    t->storage = NULL;
    return GT_ERR;
  }
  gt_storage_retain(so->st);
  return GT_OK;
}

/* A whole storage object as a 1-D tensor. */
static int storage_tensor(rd *r, const obj *o, gt_tensor *t) {
  int64_t one = 1;
  return storage_view(r, o, 1, &o->count, &one, 0, t);
}

/* Tensor body (torch7's Tensor write): int ndim, long size[ndim], long
 * stride[ndim], long storageOffset (1-based), storage object (nil for an
 * empty tensor). */
static int read_tensor(rd *r, obj *o, gt_tensor *t) {
  int64_t nd, size[GT_MAXDIM], stride[GT_MAXDIM], off;
  if (read_int(r, &nd, "tensor ndim") != GT_OK) return GT_ERR;
  if (nd < 0 || nd > GT_MAXDIM)
    return gt_fail(r->err, "byte %zu: tensor has %lld dimensions (at most %d)", r->pos,
                   (long long)nd, GT_MAXDIM);
  if (unsettled(r)) settle(r, tensor_fits(r, (int)nd, 8), tensor_fits(r, (int)nd, 4));
  if (read_longs(r, size, (int)nd, "tensor size") != GT_OK ||
      read_longs(r, stride, (int)nd, "tensor stride") != GT_OK ||
      read_longs(r, &off, 1, "tensor storage offset") != GT_OK)
    return GT_ERR;
  gt_value *sv = NULL;
  r->want_storage = 1;
  if (read_object(r, &sv) != GT_OK) return GT_ERR;
  const obj *so = storage_of(r, sv);
  int nil = !sv || sv->kind == GT_V_NIL;
  gt_value_free(sv);
  if (!nil && !so) return gt_fail(r->err, "tensor's storage is not a storage");
  if (so && so->dt != o->dt)
    return gt_fail(r->err, "tensor of %s on a storage of %s", gt_dtype_name(o->dt),
                   gt_dtype_name(so->dt));
  /* the product of the non-zero sizes must fit too: an empty tensor's
   * contiguous strides are computed from them */
  int64_t numel = 1, span = 1;
  for (int i = 0; i < nd; i++) {
    if (size[i] < 0) return gt_fail(r->err, "tensor has negative size %lld", (long long)size[i]);
    if (__builtin_mul_overflow(numel, size[i], &numel) ||
        __builtin_mul_overflow(span, size[i] ? size[i] : 1, &span))
      return gt_fail(r->err, "tensor size overflows");
  }
  if (nd == 0 || numel == 0 || !so) {
    if (numel != 0 && nd > 0) return gt_fail(r->err, "tensor of %lld elements has no storage", (long long)numel);
    /* torch7's 0-dimensional tensor is empty */
    int64_t shape[GT_MAXDIM];
    for (int i = 0; i < nd; i++) shape[i] = size[i];
    if (nd == 0) shape[0] = 0;
    return gt_tensor_zeros(t, o->dt, nd ? (int)nd : 1, shape, r->err);
  }
  if (off < 1 || (uint64_t)(off - 1) > (uint64_t)so->count)
    return gt_fail(r->err, "tensor storage offset %lld outside its storage of %lld", (long long)off,
                   (long long)so->count);
  return storage_view(r, so, (int)nd, size, stride, off - 1, t);
}

/* The value of key k (consumed) read under k's path segment and set in map. */
static int read_entry(rd *r, gt_value *map, gt_value *k) {
  char buf[48];
  const char *seg;
  size_t old, sl = key_seg(k, buf, sizeof buf, &seg);
  gt_value *v = NULL;
  if (push_seg(r, seg, sl, &old) != GT_OK) {
    gt_value_free(k);
    return GT_ERR;
  }
  int rc = read_object(r, &v);
  pop_seg(r, old);
  if (rc != GT_OK) {
    gt_value_free(k);
    return GT_ERR;
  }
  if (!v) v = gt_value_new(GT_V_NIL);
  return gt_value_set(map, k, v) == GT_OK ? GT_OK : oom(r);
}

/* A key object (read under the path segment seg unless NULL); nil is kept
 * as a NIL key. */
static int read_key(rd *r, const char *seg, gt_value **k) {
  size_t old = 0;
  if (seg && push_seg(r, seg, strlen(seg), &old) != GT_OK) return GT_ERR;
  int rc = read_object(r, k);
  if (seg) pop_seg(r, old);
  if (rc == GT_OK && !*k && !(*k = gt_value_new(GT_V_NIL))) rc = oom(r);
  return rc;
}

/* n entries into a new MAP *out: with pairs each a key (read under keyseg,
 * see read_key) then its value; without, values keyed 1..n. */
static int read_entries(rd *r, int64_t n, int pairs, const char *keyseg, gt_value **out) {
  gt_value *map = gt_value_new(GT_V_MAP);
  if (!map) return oom(r);
  for (int64_t i = 0; i < n; i++) {
    gt_value *k = NULL;
    int rc = pairs ? read_key(r, keyseg, &k)
                   : (k = gt_value_float((double)(i + 1))) ? GT_OK : oom(r);
    if (rc != GT_OK || read_entry(r, map, k) != GT_OK) {
      gt_value_free(map);
      return GT_ERR;
    }
  }
  *out = map;
  return GT_OK;
}

/* tds.Hash (long n, n x (key, value)) or tds.Vec (long n, n values) as a
 * MAP (a Vec's keys 1..n). */
static int read_tds(rd *r, int pairs, gt_value **out) {
  int64_t n;
  /* each item takes at least one 4-byte tag */
  if (unsettled(r)) settle(r, count_fits(r, 8, 0), count_fits(r, 4, 0));
  if (read_count(r, 1, 4, "tds size", &n) != GT_OK) return GT_ERR;
  return read_entries(r, n, pairs, NULL, out);
}

/* Adds cls to meta.classes the first time it is met. */
static int note_class(rd *r, const char *cls, size_t len) {
  for (size_t i = 0; i < r->classes->n; i++)
    if (r->classes->items[i]->len == len && memcmp(r->classes->items[i]->str, cls, len) == 0)
      return GT_OK;
  return gt_value_push(r->classes, gt_value_str(cls, len)) == GT_OK ? GT_OK : oom(r);
}

/* The body of a torch object of index `index`. */
static int read_torch(rd *r, int64_t index, gt_value **out) {
  int64_t len;
  size_t at;
  if (read_lstring(r, "class version length", "class version", &at, &len) != GT_OK)
    return GT_ERR;
  const char *cls = (const char *)r->p + at;
  size_t clen = (size_t)len;
  if (clen >= 2 && memcmp(cls, "V ", 2) == 0) {
    if (read_lstring(r, "class name length", "class name", &at, &len) != GT_OK)
      return GT_ERR;
    cls = (const char *)r->p + at;
    clen = (size_t)len;
  }
  if (note_class(r, cls, clen) != GT_OK) return GT_ERR;
  gt_dtype dt = GT_F32;
  int kind = numeric_class(cls, clen, &dt);
  obj *o = new_obj(r, index, kind < 0 ? O_OBJECT : kind);
  if (!o) return oom(r);
  o->dt = dt;
  if (kind == O_STORAGE) {
    if (read_storage(r, o) != GT_OK) return GT_ERR;
    return (*out = storage_marker(index)) ? GT_OK : oom(r);
  }
  if (kind == O_TENSOR) {
    gt_tensor t;
    if (read_tensor(r, o, &t) != GT_OK) return GT_ERR;
    if (add_entry(r, &t, "tensor", &o->entry) != GT_OK) return GT_ERR;
    return (*out = tensor_value(o->entry)) ? GT_OK : oom(r);
  }
  gt_value *state = NULL;
  int rc;
  if (clen == 8 && memcmp(cls, "tds.Hash", 8) == 0) rc = read_tds(r, 1, &state);
  else if (clen == 7 && memcmp(cls, "tds.Vec", 7) == 0) rc = read_tds(r, 0, &state);
  else rc = read_object(r, &state);
  if (rc != GT_OK) return GT_ERR;
  gt_value *v = class_value(cls, clen);
  if (!v) {
    gt_value_free(state);
    return oom(r);
  }
  if (push_item(r, v, state) != GT_OK) return GT_ERR;
  *out = v;
  return GT_OK;
}

/* A table body: int n, n x (key, value). */
static int read_table(rd *r, int64_t index, gt_value **out) {
  int64_t n;
  if (!new_obj(r, index, O_TABLE)) return oom(r);
  /* each pair takes at least two 4-byte tags (two bytes each in ascii) */
  if (read_count(r, 0, 4, "table size", &n) != GT_OK) return GT_ERR;
  return read_entries(r, n, 1, "<key>", out);
}

/* A function: bytecode skipped (never loaded), upvalues read as data. */
static int read_function(rd *r, int64_t index, gt_value **out) {
  if (index > 0 && !new_obj(r, index, O_FUNCTION)) return oom(r);
  int64_t len;
  size_t at, old;
  if (read_lstring(r, "function length", "function bytecode", &at, &len) != GT_OK)
    return GT_ERR;
  const char *where = r->plen ? r->path : "(root)";
  if (gt_value_push(r->functions, gt_value_str(where, strlen(where))) != GT_OK) return oom(r);
  gt_value *v = class_value("t7.function", 11), *up = NULL;
  if (!v) return oom(r);
  if (gt_value_push(v, gt_value_str(where, strlen(where))) != GT_OK ||
      gt_value_push(v, gt_value_int(len)) != GT_OK) {
    gt_value_free(v);
    return oom(r);
  }
  int rc = push_seg(r, "upvalues", 8, &old);
  if (rc == GT_OK) {
    rc = read_object(r, &up);
    pop_seg(r, old);
  }
  if (rc != GT_OK) {
    gt_value_free(v);
    return GT_ERR;
  }
  if (push_item(r, v, up) != GT_OK) return GT_ERR;
  *out = v;
  return GT_OK;
}

/* An object met again: a tensor reference, a storage marker or a ref. */
static int seen_object(rd *r, obj *o, int64_t index, int tag, gt_value **out) {
  int want = tag == T_TABLE ? O_TABLE : tag == T_TORCH ? -1 : O_FUNCTION;
  if ((want >= 0 && o->kind != want) ||
      (want < 0 && (o->kind == O_TABLE || o->kind == O_FUNCTION)))
    return gt_fail(r->err, "byte %zu: object %lld referenced with another type", r->pos,
                   (long long)index);
  if (o->kind == O_TENSOR) {
    if (o->entry < 0) return gt_fail(r->err, "tensor %lld refers to itself", (long long)index);
    return (*out = tensor_value(o->entry)) ? GT_OK : oom(r);
  }
  if (o->kind == O_STORAGE) {
    if (!o->st) return gt_fail(r->err, "storage %lld refers to itself", (long long)index);
    return (*out = storage_marker(index)) ? GT_OK : oom(r);
  }
  return (*out = ref_value(o)) ? GT_OK : oom(r);
}

/* A storage standing on its own (not a tensor's): its 1-D view is an entry
 * (the first time) and *out becomes a reference to it. */
static int storage_entry(rd *r, obj *o, gt_value **out) {
  gt_value_free(*out);
  *out = NULL;
  if (o->entry < 0) {
    gt_tensor t;
    if (storage_tensor(r, o, &t) != GT_OK || add_entry(r, &t, "storage", &o->entry) != GT_OK)
      return GT_ERR;
  }
  return (*out = tensor_value(o->entry)) ? GT_OK : oom(r);
}

/* Reads one object into *out (NULL for nil). A storage comes back as an
 * OBJECT "t7.storage" whose i is its index; read_value turns it into an
 * entry where a storage stands on its own. */
static int read_object(rd *r, gt_value **out) {
  *out = NULL;
  if (r->depth >= MAX_DEPTH) return gt_fail(r->err, "objects nested deeper than %d", MAX_DEPTH);
  int standalone = !r->want_storage;
  r->want_storage = 0;
  int64_t tag, index = 0;
  if (read_int(r, &tag, "type tag") != GT_OK) return GT_ERR;
  double d;
  int rc = GT_OK;
  r->depth++;
  switch (tag) {
  case T_NIL: break;
  case T_NUMBER:
    rc = read_double(r, &d);
    if (rc == GT_OK && !(*out = gt_value_float(d))) rc = oom(r);
    break;
  case T_BOOLEAN:
    rc = read_int(r, &index, "boolean");
    if (rc == GT_OK && !(*out = gt_value_bool(index == 1))) rc = oom(r);
    break;
  case T_STRING: {
    size_t at;
    rc = read_lstring(r, "string length", "string", &at, &index);
    if (rc == GT_OK && !(*out = gt_value_str((const char *)r->p + at, (size_t)index))) rc = oom(r);
    break;
  }
  case T_FUNCTION: rc = read_function(r, 0, out); break;
  case T_TABLE: case T_TORCH: case T_RECUR: case T_LEGACY_RECUR: {
    rc = read_int(r, &index, "object index");
    if (rc == GT_OK) rc = check_index(r, index);
    if (rc != GT_OK) break;
    obj *o = find_obj(r, index);
    if (o) rc = seen_object(r, o, index, tag == T_LEGACY_RECUR ? T_RECUR : (int)tag, out);
    else if (tag == T_TABLE) rc = read_table(r, index, out);
    else if (tag == T_TORCH) rc = read_torch(r, index, out);
    else rc = read_function(r, index, out);
    break;
  }
  default:
    rc = gt_fail(r->err, "byte %zu: unknown type tag %lld", r->pos - (r->enc == ENC_ASCII ? 0 : 4),
                 (long long)tag);
  }
  r->depth--;
  if (rc != GT_OK) {
    if (!r->wrapped && r->plen) gt_wrap(r->err, "%s", r->path);
    r->wrapped = 1;
    gt_value_free(*out);
    *out = NULL;
    return GT_ERR;
  }
  obj *so = standalone ? storage_of(r, *out) : NULL;
  if (so) return storage_entry(r, so, out);
  return GT_OK;
}

/* ---- top level ---------------------------------------------------------- */

static int detect(rd *r) {
  if (r->n < 4) return gt_fail(r->err, "file of %zu bytes is too short for a t7 object", r->n);
  const unsigned char *p = r->p;
  if (p[1] == 0 && p[2] == 0 && p[3] == 0 && p[0] <= 8) r->enc = ENC_LE;
  else if (p[0] == 0 && p[1] == 0 && p[2] == 0 && p[3] <= 8) r->enc = ENC_BE;
  else if (p[0] >= '0' && p[0] <= '8' && strchr(" \t\r\n", p[1])) r->enc = ENC_ASCII;
  else return gt_fail(r->err, "not a t7 file (first bytes are no type tag)");
  return GT_OK;
}

static void rd_free(rd *r) {
  for (size_t i = 0; i < r->nobjs; i++) {
    if (!r->objs[i]) continue;
    gt_storage_release(r->objs[i]->st);
    free(r->objs[i]->path);
    free(r->objs[i]);
  }
  free(r->objs);
  for (size_t i = 0; i < r->names_cap; i++) free(r->names[i]);
  free(r->names);
  gt_value_free(r->functions);
  gt_value_free(r->classes);
}

static const char *enc_name[] = {"binary-le", "binary-be", "ascii"};

/* What one reading of a file left behind, for its error message. */
typedef struct attempt {
  int enc;             /* -1: no encoding detected */
  int lsize;           /* the long size read with (0: none settled) */
  int long_seen;       /* a long was read: the long size played a part */
} attempt;

/* m->meta of a file read: encoding, long size (binary), root, functions,
 * classes (taken from r). */
static int set_meta(rd *r, gt_value **root) {
  gt_value *meta = gt_value_new(GT_V_MAP);
  if (!meta) return oom(r);
  const char *enc = enc_name[r->enc];
  int rc = gt_value_setk(meta, "encoding", gt_value_str(enc, strlen(enc)));
  if (rc == GT_OK && r->lsize)
    rc = gt_value_setk(meta, "long_size", gt_value_int(r->lsize));
  if (rc == GT_OK) rc = gt_value_setk(meta, "root", *root ? *root : gt_value_new(GT_V_NIL));
  *root = NULL;
  if (rc == GT_OK) rc = gt_value_setk(meta, "functions", r->functions);
  r->functions = NULL;
  if (rc == GT_OK) rc = gt_value_setk(meta, "classes", r->classes);
  r->classes = NULL;
  if (rc != GT_OK) {
    gt_value_free(meta);
    return oom(r);
  }
  r->m->meta = meta;
  return GT_OK;
}

/* Reads the file with binary longs of lsize bytes (0: settled by the first
 * header holding longs) into m (freed on failure); *a says how it went. */
static int read_as(gt_storage *file, gt_model *m, int lsize, gt_err *err, attempt *a) {
  rd *r = calloc(1, sizeof *r);
  if (!r) return gt_fail(err, "out of memory");
  r->file = file;
  r->p = file->data;
  r->n = file->size;
  r->lsize = lsize;
  r->m = m;
  r->err = err;
  m->format = "t7";
  gt_value *root = NULL;
  a->enc = -1;
  int rc = detect(r);
  if (rc == GT_OK) {
    a->enc = r->enc;
    if (r->enc == ENC_ASCII) r->lsize = 0;   /* longs are text */
    r->functions = gt_value_new(GT_V_LIST);
    r->classes = gt_value_new(GT_V_LIST);
    if (!r->functions || !r->classes) rc = oom(r);
  }
  if (rc == GT_OK) rc = read_object(r, &root);
  if (rc == GT_OK && r->pos < r->n) {
    /* torch.save writes one object; trailing whitespace is allowed in ascii */
    size_t q = r->pos;
    while (r->enc == ENC_ASCII && q < r->n && strchr(" \t\r\n", r->p[q]) && r->p[q]) q++;
    if (q < r->n) rc = gt_fail(err, "%zu bytes after the object", r->n - r->pos);
  }
  if (rc == GT_OK) rc = set_meta(r, &root);
  a->long_seen = r->long_seen;
  a->lsize = r->lsize;
  gt_value_free(root);
  rd_free(r);
  free(r);
  if (rc != GT_OK) gt_model_free(m);
  return rc;
}

/* Appends printf-style text to err's message (cut at its size). */
static void append(gt_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void append(gt_err *err, const char *fmt, ...) {
  size_t len = strlen(err->msg);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg + len, sizeof err->msg - len, fmt, ap);
  va_end(ap);
}

/* A forced long size that fails is tried the other way only to say which
 * one the file has. */
int gt_t7_read(gt_storage *file, gt_model *m, int long_size, gt_err *err) {
  if (long_size != 0 && long_size != 4 && long_size != 8)
    return gt_fail(err, "long size %d is not 4 or 8", long_size);
  if (gt_storage_ready(file, err) != GT_OK) return GT_ERR;
  attempt a;
  if (read_as(file, m, long_size, err, &a) == GT_OK) return GT_OK;
  if (a.enc < 0 || a.enc == ENC_ASCII || !a.long_seen) return GT_ERR;
  if (!long_size) {
    append(err, " (longs read as %d bytes, as detected; the option long_size = %d reads them as %d)",
           a.lsize, 12 - a.lsize, 12 - a.lsize);
    return GT_ERR;
  }
  gt_err e2;
  gt_model scratch;
  gt_model_init(&scratch);
  if (read_as(file, &scratch, 12 - long_size, &e2, &a) == GT_OK) {
    gt_model_free(&scratch);
    append(err, " (long_size = %d given, but the file reads with %d-byte longs)", long_size,
           12 - long_size);
  } else {
    append(err, " (longs read as %d bytes: long_size = %d)", long_size, long_size);
  }
  return GT_ERR;
}
