/* gguf.c: reader and writer for GGUF, ggml's single-file model format.
 *
 * Layout (little-endian; docs/formats/gguf.md):
 *   "GGUF", u32 version (2 or 3; 1 used 32-bit counts and is refused),
 *   u64 n_tensors, u64 n_kv,
 *   n_kv x { string key, u32 value_type, value },
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims] (fastest first),
 *                 u32 ggml_type, u64 offset (from the data section) },
 *   padding to `alignment` (general.alignment, u32, default 32), data.
 * A string is u64 length + bytes (no NUL); an array is u32 item type, u64
 * count, items (arrays may nest). Tensor bytes: ne[0] must hold whole
 * blocks; size = numel / block_elements * block_bytes; offsets are
 * multiples of the alignment.
 *
 * Checks, in order of the file: every read is inside the file; counts are
 * bounded by what the remaining bytes could hold before anything is
 * allocated for them; arrays nest at most 64 deep; dims fit int64 and their
 * product times the type size fits too; offset + size lies inside the file. */
#include "formats/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileout.h"
#include "tensor/copy.h"
#include "tensor/quant.h"

#define MAX_DEPTH 64
#define MAX_DIMS 4       /* GGML_MAX_DIMS */
#define MAX_NAME 64      /* GGML_MAX_NAME: names are shorter than this */
#define SHOWN 120        /* bytes of a key or name quoted in errors */

/* ---- type tables -------------------------------------------------------- */

enum {
  V_U8, V_I8, V_U16, V_I16, V_U32, V_I32, V_F32, V_BOOL, V_STRING, V_ARRAY,
  V_U64, V_I64, V_F64, V_NTYPES
};

static const char *const vnames[V_NTYPES] = {
  "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool",
  "string", "array", "uint64", "int64", "float64"};

/* Smallest encoding of one item of each value type (an array's header). */
static const unsigned vmin[V_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8};

/* ggml_type ids (ggml.h) with the graft dtype each maps to; gt < 0: known
 * to ggml, not readable here. */
static const struct {
  unsigned id;
  const char *name;
  int gt;
} gtypes[] = {
  {0, "F32", GT_F32},     {1, "F16", GT_F16},     {2, "Q4_0", GT_Q4_0},
  {3, "Q4_1", GT_Q4_1},   {4, "Q4_2", -1},        {5, "Q4_3", -1},
  {6, "Q5_0", GT_Q5_0},   {7, "Q5_1", GT_Q5_1},   {8, "Q8_0", GT_Q8_0},
  {9, "Q8_1", -1},        {10, "Q2_K", GT_Q2_K},  {11, "Q3_K", GT_Q3_K},
  {12, "Q4_K", GT_Q4_K},  {13, "Q5_K", GT_Q5_K},  {14, "Q6_K", GT_Q6_K},
  {15, "Q8_K", GT_Q8_K},  {16, "IQ2_XXS", -1},    {17, "IQ2_XS", -1},
  {18, "IQ3_XXS", -1},    {19, "IQ1_S", -1},      {20, "IQ4_NL", -1},
  {21, "IQ3_S", -1},      {22, "IQ2_S", -1},      {23, "IQ4_XS", -1},
  {24, "I8", GT_I8},      {25, "I16", GT_I16},    {26, "I32", GT_I32},
  {27, "I64", GT_I64},    {28, "F64", GT_F64},    {29, "IQ1_M", -1},
  {30, "BF16", GT_BF16},  {31, "Q4_0_4_4", -1},   {32, "Q4_0_4_8", -1},
  {33, "Q4_0_8_8", -1},   {34, "TQ1_0", -1},      {35, "TQ2_0", -1},
  {36, "IQ4_NL_4_4", -1}, {37, "IQ4_NL_4_8", -1}, {38, "IQ4_NL_8_8", -1},
  {39, "MXFP4", -1},
};
#define N_GTYPES (int)(sizeof gtypes / sizeof gtypes[0])

static int gtype_index(unsigned id) {
  for (int i = 0; i < N_GTYPES; i++)
    if (gtypes[i].id == id) return i;
  return -1;
}

static int gtype_of_dtype(gt_dtype dt) {
  for (int i = 0; i < N_GTYPES; i++)
    if (gtypes[i].gt == (int)dt) return i;
  return -1;
}

/* ---- reading ------------------------------------------------------------ */

typedef struct cur {
  const unsigned char *p;
  uint64_t n, pos;
} cur;

static int need(cur *c, uint64_t k, const char *what, gt_err *err) {
  if (k > c->n - c->pos)
    return gt_fail(err, "file truncated: %s at byte %llu needs %llu bytes, "
                   "%llu remain", what, (unsigned long long)c->pos,
                   (unsigned long long)k, (unsigned long long)(c->n - c->pos));
  return GT_OK;
}

static uint64_t rd(cur *c, int k) {
  uint64_t v = 0;
  for (int i = 0; i < k; i++) v |= (uint64_t)c->p[c->pos + i] << (8 * i);
  c->pos += (uint64_t)k;
  return v;
}

static int get_u32(cur *c, uint32_t *v, const char *what, gt_err *err) {
  if (need(c, 4, what, err) != GT_OK) return GT_ERR;
  *v = (uint32_t)rd(c, 4);
  return GT_OK;
}

static int get_u64(cur *c, uint64_t *v, const char *what, gt_err *err) {
  if (need(c, 8, what, err) != GT_OK) return GT_ERR;
  *v = rd(c, 8);
  return GT_OK;
}

/* A string: *s points into the mapping. */
static int get_str(cur *c, const char **s, uint64_t *len, const char *what,
                   gt_err *err) {
  if (get_u64(c, len, what, err) != GT_OK) return GT_ERR;
  if (*len > c->n - c->pos)
    return gt_fail(err, "%s: length %llu at byte %llu runs past the end of "
                   "the file (%llu bytes remain)", what,
                   (unsigned long long)*len, (unsigned long long)(c->pos - 8),
                   (unsigned long long)(c->n - c->pos));
  *s = (const char *)c->p + c->pos;
  c->pos += *len;
  return GT_OK;
}

static gt_value *vstr(const char *s) { return gt_value_str(s, strlen(s)); }

static int oom(gt_err *err) { return gt_fail(err, "out of memory"); }

static int read_value(cur *c, uint32_t type, int depth, gt_value **out,
                      gt_err *err);

/* An array's items: a LIST of plain values, or of {type, item_type, value}
 * maps for nested arrays. *item_type is set to the items' type. */
static int read_array(cur *c, int depth, gt_value **out, uint32_t *item_type,
                      gt_err *err) {
  uint32_t t;
  uint64_t count;
  if (depth >= MAX_DEPTH)
    return gt_fail(err, "arrays nested more than %d deep", MAX_DEPTH);
  if (get_u32(c, &t, "array item type", err) != GT_OK ||
      get_u64(c, &count, "array length", err) != GT_OK)
    return GT_ERR;
  if (t >= V_NTYPES)
    return gt_fail(err, "array at byte %llu has unknown item type %u",
                   (unsigned long long)(c->pos - 12), t);
  if (count > (c->n - c->pos) / vmin[t])
    return gt_fail(err, "array of %llu %s items at byte %llu cannot fit in "
                   "the %llu bytes that remain", (unsigned long long)count,
                   vnames[t], (unsigned long long)(c->pos - 12),
                   (unsigned long long)(c->n - c->pos));
  gt_value *list = gt_value_new(GT_V_LIST);
  if (!list) return oom(err);
  for (uint64_t i = 0; i < count; i++) {
    gt_value *item = NULL;
    if (read_value(c, t, depth + 1, &item, err) != GT_OK ||
        gt_value_push(list, item) != GT_OK) {
      if (!item) {
        gt_value_free(list);
        /* Only the outermost index: deep nests would repeat it per level. */
        return depth == 0 ? gt_wrap(err, "array item %llu", (unsigned long long)i + 1)
                          : GT_ERR;
      }
      gt_value_free(list);
      return oom(err);
    }
  }
  *item_type = t;
  *out = list;
  return GT_OK;
}

/* A MAP {type = "array", item_type, value} (depth > 0) or, at the top, the
 * caller adds item_type itself. */
static int read_value(cur *c, uint32_t type, int depth, gt_value **out,
                      gt_err *err) {
  static const int size[V_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
  *out = NULL;
  if (type == V_STRING) {
    const char *s;
    uint64_t len;
    if (get_str(c, &s, &len, "string value", err) != GT_OK) return GT_ERR;
    if (!(*out = gt_value_str(s, (size_t)len))) return oom(err);
    return GT_OK;
  }
  if (type == V_ARRAY) {
    gt_value *list, *map;
    uint32_t it;
    if (read_array(c, depth, &list, &it, err) != GT_OK) return GT_ERR;
    /* setk takes its value over even when it fails: list is freed once. */
    if (!(map = gt_value_new(GT_V_MAP))) {
      gt_value_free(list);
      return oom(err);
    }
    if (gt_value_setk(map, "value", list) != GT_OK ||
        gt_value_setk(map, "type", vstr("array")) != GT_OK ||
        gt_value_setk(map, "item_type", vstr(vnames[it])) != GT_OK) {
      gt_value_free(map);
      return oom(err);
    }
    *out = map;
    return GT_OK;
  }
  if (need(c, (uint64_t)size[type], vnames[type], err) != GT_OK) return GT_ERR;
  uint64_t raw = rd(c, size[type]);
  switch (type) {
  case V_U8: case V_U16: case V_U32: case V_U64:
    *out = gt_value_int((int64_t)raw);   /* u64 above 2^63 wraps, as Lua's */
    break;
  case V_I8: *out = gt_value_int((int8_t)raw); break;
  case V_I16: *out = gt_value_int((int16_t)raw); break;
  case V_I32: *out = gt_value_int((int32_t)raw); break;
  case V_I64: *out = gt_value_int((int64_t)raw); break;
  case V_BOOL: *out = gt_value_bool(raw != 0); break;
  case V_F32: {
    float f;
    uint32_t u = (uint32_t)raw;
    memcpy(&f, &u, 4);
    *out = gt_value_float(f);
    break;
  }
  default: {
    double d;
    memcpy(&d, &raw, 8);
    *out = gt_value_float(d);
  }
  }
  return *out ? GT_OK : oom(err);
}

/* One key/value pair -> MAP {key, type, value[, item_type]}; *align is set
 * when the key is general.alignment. */
static int read_kv(cur *c, gt_value *kvs, uint64_t index, uint32_t *align,
                   int *have_align, gt_err *err) {
  const char *key;
  uint64_t klen;
  uint32_t type;
  char what[64];
  snprintf(what, sizeof what, "key %llu", (unsigned long long)index + 1);
  if (get_str(c, &key, &klen, what, err) != GT_OK) return GT_ERR;
  int kshown = klen > SHOWN ? SHOWN : (int)klen;
  if (get_u32(c, &type, "value type", err) != GT_OK)
    return gt_wrap(err, "key \"%.*s\"", kshown, key);
  if (type >= V_NTYPES)
    return gt_fail(err, "key \"%.*s\": unknown value type %u", kshown, key, type);
  gt_value *v = NULL, *e = gt_value_new(GT_V_MAP);
  if (!e) return oom(err);
  int rc = gt_value_setk(e, "key", gt_value_str(key, (size_t)klen));
  if (rc == GT_OK) rc = gt_value_setk(e, "type", vstr(vnames[type]));
  if (rc != GT_OK) {
    gt_value_free(e);
    return oom(err);
  }
  if (type == V_ARRAY) {
    uint32_t it;
    if (read_array(c, 0, &v, &it, err) != GT_OK) {
      gt_value_free(e);
      return gt_wrap(err, "key \"%.*s\"", kshown, key);
    }
    rc = gt_value_setk(e, "value", v);
    if (rc == GT_OK) rc = gt_value_setk(e, "item_type", vstr(vnames[it]));
  } else {
    if (read_value(c, type, 0, &v, err) != GT_OK) {
      gt_value_free(e);
      return gt_wrap(err, "key \"%.*s\"", kshown, key);
    }
    if (klen == 17 && memcmp(key, "general.alignment", 17) == 0) {
      if (type != V_U32) {
        gt_value_free(v);
        gt_value_free(e);
        return gt_fail(err, "key \"general.alignment\" must be a uint32, "
                       "not %s", vnames[type]);
      }
      if (!*have_align) {
        *align = (uint32_t)v->i;
        *have_align = 1;
      }
    }
    rc = gt_value_setk(e, "value", v);
  }
  if (rc == GT_OK) rc = gt_value_push(kvs, e);
  else gt_value_free(e);
  return rc == GT_OK ? GT_OK : oom(err);
}

typedef struct tinfo {
  const char *name;
  uint64_t name_len;
  int ndim;
  int64_t shape[MAX_DIMS];  /* graft order */
  int gi;                   /* index in gtypes */
  uint64_t offset, nbytes;
} tinfo;

static int read_tinfo(cur *c, uint64_t index, tinfo *t, gt_err *err) {
  uint32_t nd, type;
  char what[64];
  snprintf(what, sizeof what, "name of tensor %llu", (unsigned long long)index + 1);
  if (get_str(c, &t->name, &t->name_len, what, err) != GT_OK) return GT_ERR;
  int shown = t->name_len > SHOWN ? SHOWN : (int)t->name_len;
  if (memchr(t->name, 0, (size_t)t->name_len))
    return gt_fail(err, "tensor \"%.*s\": name holds a NUL byte", shown, t->name);
  if (get_u32(c, &nd, "n_dims", err) != GT_OK)
    return gt_wrap(err, "tensor \"%.*s\"", shown, t->name);
  if (nd > MAX_DIMS)
    return gt_fail(err, "tensor \"%.*s\": n_dims %u is more than ggml's %d",
                   shown, t->name, nd, MAX_DIMS);
  t->ndim = (int)nd;
  uint64_t numel = 1;
  for (uint32_t i = 0; i < nd; i++) {
    uint64_t ne;
    if (get_u64(c, &ne, "dimension", err) != GT_OK)
      return gt_wrap(err, "tensor \"%.*s\"", shown, t->name);
    if (ne > INT64_MAX || gt_mul_u64(numel, ne, (unsigned long long *)&numel) ||
        numel > INT64_MAX)
      return gt_fail(err, "tensor \"%.*s\": element count overflows", shown,
                     t->name);
    t->shape[nd - 1 - i] = (int64_t)ne;
  }
  if (get_u32(c, &type, "tensor type", err) != GT_OK ||
      get_u64(c, &t->offset, "tensor offset", err) != GT_OK)
    return gt_wrap(err, "tensor \"%.*s\"", shown, t->name);
  t->gi = gtype_index(type);
  if (t->gi < 0)
    return gt_fail(err, "tensor \"%.*s\": unknown ggml type id %u", shown,
                   t->name, type);
  if (gtypes[t->gi].gt < 0)
    return gt_fail(err, "tensor \"%.*s\": ggml type %s (%u) is not supported",
                   shown, t->name, gtypes[t->gi].name, type);
  gt_dtype dt = (gt_dtype)gtypes[t->gi].gt;
  uint64_t be = gt_dtype_block(dt);
  if (be > 1 && (nd == 0 || (uint64_t)t->shape[nd - 1] % be != 0))
    return gt_fail(err, "tensor \"%.*s\": %s rows must hold whole %llu-element "
                   "blocks, but ne[0] is %lld", shown, t->name,
                   gtypes[t->gi].name, (unsigned long long)be,
                   nd ? (long long)t->shape[nd - 1] : 0LL);
  if (gt_mul_u64(numel / be, gt_dtype_size(dt), (unsigned long long *)&t->nbytes))
    return gt_fail(err, "tensor \"%.*s\": byte size overflows", shown, t->name);
  return GT_OK;
}

static int cmp_tinfo(const void *a, const void *b) {
  const tinfo *x = *(const tinfo *const *)a, *y = *(const tinfo *const *)b;
  uint64_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
  int c = memcmp(x->name, y->name, (size_t)n);
  if (c) return c;
  return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

/* ggml refuses a tensor name used twice; so does graft (names are keys). */
static int check_names(tinfo *ts, uint64_t nt, gt_err *err) {
  if (nt < 2) return GT_OK;
  tinfo **p = malloc((size_t)nt * sizeof *p);
  if (!p) return oom(err);
  for (uint64_t i = 0; i < nt; i++) p[i] = &ts[i];
  qsort(p, (size_t)nt, sizeof *p, cmp_tinfo);
  int rc = GT_OK;
  for (uint64_t i = 1; i < nt && rc == GT_OK; i++)
    if (cmp_tinfo(&p[i - 1], &p[i]) == 0)
      rc = gt_fail(err, "tensor \"%.*s\" appears twice",
                   p[i]->name_len > SHOWN ? SHOWN : (int)p[i]->name_len, p[i]->name);
  free(p);
  return rc;
}

static int push_int(gt_value *map, const char *k, int64_t v) {
  return gt_value_setk(map, k, gt_value_int(v));
}

static int read_all(gt_storage *file, gt_model *m, gt_err *err) {
  cur c = {file->data, file->size, 0};
  uint32_t version, align = 32;
  uint64_t nt, nkv;
  int have_align = 0;
  if (need(&c, 4, "magic", err) != GT_OK) return GT_ERR;
  if (memcmp(c.p, "GGUF", 4) != 0) return gt_fail(err, "not a GGUF file (no GGUF magic)");
  c.pos = 4;
  if (get_u32(&c, &version, "version", err) != GT_OK) return GT_ERR;
  if (version == 1)
    return gt_fail(err, "GGUF version 1 is not supported (its 32-bit counts "
                   "were replaced in version 2; convert the file again)");
  if (version != 2 && version != 3)
    return gt_fail(err, "GGUF version %u is not supported (2 and 3 are%s)",
                   version, (version & 0xFFFF) == 0 ? "; a big-endian file?" : "");
  if (get_u64(&c, &nt, "tensor count", err) != GT_OK ||
      get_u64(&c, &nkv, "key/value count", err) != GT_OK)
    return GT_ERR;
  /* A kv takes at least 13 bytes, a tensor info at least 24. */
  if (nkv > (c.n - c.pos) / 13)
    return gt_fail(err, "%llu key/value pairs cannot fit in the %llu bytes "
                   "that remain", (unsigned long long)nkv,
                   (unsigned long long)(c.n - c.pos));
  gt_value *meta = gt_value_new(GT_V_MAP), *kvs = gt_value_new(GT_V_LIST);
  if (!meta || !kvs) {
    gt_value_free(meta);
    gt_value_free(kvs);
    return oom(err);
  }
  m->meta = meta;
  if (push_int(meta, "version", version) != GT_OK ||
      gt_value_setk(meta, "kv", kvs) != GT_OK)
    return oom(err);
  for (uint64_t i = 0; i < nkv; i++)
    if (read_kv(&c, kvs, i, &align, &have_align, err) != GT_OK) return GT_ERR;
  if (align == 0 || (align & (align - 1)) != 0)
    return gt_fail(err, "general.alignment %u is not a power of two", align);
  if (nt > (c.n - c.pos) / 24)
    return gt_fail(err, "%llu tensor infos cannot fit in the %llu bytes that "
                   "remain", (unsigned long long)nt,
                   (unsigned long long)(c.n - c.pos));
  tinfo *ts = calloc(nt ? (size_t)nt : 1, sizeof *ts);
  if (!ts) return oom(err);
  int rc = GT_OK;
  for (uint64_t i = 0; i < nt && rc == GT_OK; i++) rc = read_tinfo(&c, i, &ts[i], err);
  if (rc == GT_OK) rc = check_names(ts, nt, err);
  /* The data section starts at the next multiple of the alignment; a file
   * without tensor data may end before it. */
  uint64_t data = c.pos + (align - c.pos % align) % align;
  gt_value *types = rc == GT_OK ? gt_value_new(GT_V_MAP) : NULL;
  if (rc == GT_OK &&
      (!types || gt_value_setk(meta, "ggml_types", types) != GT_OK ||
       push_int(meta, "alignment", align) != GT_OK ||
       push_int(meta, "data_offset", (int64_t)data) != GT_OK))
    rc = oom(err);
  for (uint64_t i = 0; i < nt && rc == GT_OK; i++) {
    tinfo *t = &ts[i];
    int shown = t->name_len > SHOWN ? SHOWN : (int)t->name_len;
    gt_dtype dt = (gt_dtype)gtypes[t->gi].gt;
    uint64_t at;
    if (t->offset % align != 0) {
      rc = gt_fail(err, "tensor \"%.*s\": offset %llu is not a multiple of "
                   "the alignment %u", shown, t->name,
                   (unsigned long long)t->offset, align);
      break;
    }
    if (gt_add_u64(data, t->offset, (unsigned long long *)&at) ||
        at > c.n || t->nbytes > c.n - at) {
      rc = gt_fail(err, "tensor \"%.*s\": its %llu bytes at offset %llu run "
                   "past the end of the file (%llu bytes, data at %llu)",
                   shown, t->name, (unsigned long long)t->nbytes,
                   (unsigned long long)t->offset, (unsigned long long)c.n,
                   (unsigned long long)data);
      break;
    }
    size_t ealign = gt_dtype_is_quant(dt) ? 1 : gt_dtype_size(dt);
    gt_storage *s = gt_storage_aligned(file, at, t->nbytes, ealign, err);
    gt_tensor tt;
    if (!s) {
      rc = GT_ERR;
    } else {
      rc = gt_tensor_make(&tt, s, dt, t->ndim, t->shape, 0, err);
      gt_storage_release(s);
    }
    if (rc == GT_OK) rc = gt_model_add(m, t->name, (size_t)t->name_len, &tt, err);
    if (rc != GT_OK) {
      gt_wrap(err, "tensor \"%.*s\"", shown, t->name);
      break;
    }
    if (gt_value_set(types, gt_value_str(t->name, (size_t)t->name_len),
                     vstr(gtypes[t->gi].name)) != GT_OK)
      rc = oom(err);
  }
  free(ts);
  return rc;
}

int gt_gguf_read(gt_storage *file, gt_model *m, gt_err *err) {
  m->format = "gguf";
  if (gt_storage_ready(file, err) != GT_OK) return GT_ERR;
  if (read_all(file, m, err) != GT_OK) {
    gt_model_free(m);
    gt_model_init(m);
    return GT_ERR;
  }
  return GT_OK;
}

/* ---- writing ------------------------------------------------------------ */

static int put(gt_out *o, uint64_t v, int k, gt_err *err) {
  unsigned char b[8];
  for (int i = 0; i < k; i++) b[i] = (unsigned char)(v >> (8 * i));
  return gt_out_write(o, b, (size_t)k, err);
}

static int put_str(gt_out *o, const char *s, size_t n, gt_err *err) {
  if (put(o, n, 8, err) != GT_OK) return GT_ERR;
  return gt_out_write(o, s, n, err);
}

static int vtype_parse(const gt_value *v, uint32_t *t) {
  if (!v || v->kind != GT_V_STR) return GT_ERR;
  for (uint32_t i = 0; i < V_NTYPES; i++)
    if (strcmp(v->str, vnames[i]) == 0) {
      *t = i;
      return GT_OK;
    }
  return GT_ERR;
}

static int write_value(gt_out *o, uint32_t type, const gt_value *v,
                       const gt_value *item_type, int depth, gt_err *err);

/* An integer value of type t within its range. */
static int int_in_range(uint32_t t, const gt_value *v, uint64_t *raw,
                        gt_err *err) {
  static const struct { int64_t lo; int64_t hi; } r[V_NTYPES] = {
    [V_U8] = {0, 255}, [V_I8] = {-128, 127}, [V_U16] = {0, 65535},
    [V_I16] = {-32768, 32767}, [V_U32] = {0, 4294967295LL},
    [V_I32] = {INT32_MIN, INT32_MAX}, [V_U64] = {INT64_MIN, INT64_MAX},
    [V_I64] = {INT64_MIN, INT64_MAX}};
  int64_t i;
  if (v->kind == GT_V_INT) i = v->i;
  else if (v->kind == GT_V_FLOAT && v->f == (double)(int64_t)v->f) i = (int64_t)v->f;
  else return gt_fail(err, "a %s value must be an integer", vnames[t]);
  if (i < r[t].lo || i > r[t].hi)
    return gt_fail(err, "%lld is out of range for %s", (long long)i, vnames[t]);
  *raw = (uint64_t)i;
  return GT_OK;
}

static int write_array(gt_out *o, const gt_value *items, const gt_value *item_type,
                       int depth, gt_err *err) {
  uint32_t it;
  if (depth >= MAX_DEPTH) return gt_fail(err, "arrays nested more than %d deep", MAX_DEPTH);
  if (vtype_parse(item_type, &it) != GT_OK)
    return gt_fail(err, "an array needs item_type, one of uint8 .. float64");
  if (!items || (items->kind != GT_V_LIST && !(items->kind == GT_V_MAP && items->n == 0)))
    return gt_fail(err, "an array value must be a list");
  if (put(o, it, 4, err) != GT_OK || put(o, items->n, 8, err) != GT_OK) return GT_ERR;
  for (size_t i = 0; i < items->n; i++) {
    const gt_value *x = items->items[i], *xt = NULL;
    if (it == V_ARRAY) {
      /* Nested: {type = "array", item_type = ..., value = {...}}. */
      if (x->kind != GT_V_MAP)
        return gt_fail(err, "item %zu: a nested array must be {type = \"array\", "
                       "item_type = ..., value = {...}}", i + 1);
      xt = gt_value_get(x, "item_type");
      x = gt_value_get(x, "value");
    }
    if (write_value(o, it, x, xt, depth + 1, err) != GT_OK)
      return gt_wrap(err, "array item %zu", i + 1);
  }
  return GT_OK;
}

static int write_value(gt_out *o, uint32_t type, const gt_value *v,
                       const gt_value *item_type, int depth, gt_err *err) {
  uint64_t raw = 0;
  if (!v) return gt_fail(err, "missing value");
  switch (type) {
  case V_STRING:
    if (v->kind != GT_V_STR) return gt_fail(err, "a string value must be a string");
    return put_str(o, v->str, v->len, err);
  case V_ARRAY:
    return write_array(o, v, item_type, depth, err);
  case V_BOOL:
    if (v->kind != GT_V_BOOL) return gt_fail(err, "a bool value must be a boolean");
    return put(o, v->i ? 1 : 0, 1, err);
  case V_F32: case V_F64: {
    double d;
    if (v->kind == GT_V_FLOAT) d = v->f;
    else if (v->kind == GT_V_INT) d = (double)v->i;
    else return gt_fail(err, "a %s value must be a number", vnames[type]);
    if (type == V_F64) {
      memcpy(&raw, &d, 8);
      return put(o, raw, 8, err);
    }
    float f = (float)d;
    uint32_t u;
    memcpy(&u, &f, 4);
    return put(o, u, 4, err);
  }
  default: {
    static const int size[V_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (int_in_range(type, v, &raw, err) != GT_OK) return GT_ERR;
    return put(o, raw, size[type], err);
  }
  }
}

static const gt_value *kv_key(const gt_value *e) {
  const gt_value *k = e->kind == GT_V_MAP ? gt_value_get(e, "key") : NULL;
  return k && k->kind == GT_V_STR ? k : NULL;
}

/* gguf-py and llama.cpp refuse a file holding a key twice. Metadata lists
 * are short (tens of keys), so pairs are compared directly. */
static int check_unique(const gt_value *kv, gt_err *err) {
  for (size_t i = 0; kv && i < kv->n; i++) {
    const gt_value *a = kv_key(kv->items[i]);
    for (size_t j = 0; a && j < i; j++) {
      const gt_value *b = kv_key(kv->items[j]);
      if (b && a->len == b->len && memcmp(a->str, b->str, a->len) == 0)
        return gt_fail(err, "metadata key \"%.*s\" appears twice",
                       a->len > SHOWN ? SHOWN : (int)a->len, a->str);
    }
  }
  return GT_OK;
}

static int write_kvs(gt_out *o, const gt_value *kv, gt_err *err) {
  for (size_t i = 0; kv && i < kv->n; i++) {
    const gt_value *e = kv->items[i];
    const gt_value *key = kv_key(e);
    uint32_t type;
    if (!key)
      return gt_fail(err, "metadata entry %zu has no string key", i + 1);
    int shown = key->len > SHOWN ? SHOWN : (int)key->len;
    if (vtype_parse(gt_value_get(e, "type"), &type) != GT_OK)
      return gt_fail(err, "key \"%.*s\": type must be one of uint8, int8, "
                     "uint16, int16, uint32, int32, float32, bool, string, "
                     "array, uint64, int64, float64", shown, key->str);
    if (put_str(o, key->str, key->len, err) != GT_OK || put(o, type, 4, err) != GT_OK)
      return GT_ERR;
    if (write_value(o, type, gt_value_get(e, "value"),
                    gt_value_get(e, "item_type"), 0, err) != GT_OK)
      return gt_wrap(err, "key \"%.*s\"", shown, key->str);
  }
  return GT_OK;
}

/* Bytes tensor i takes in the file as type dt. */
static int stored_bytes(const gt_tensor *t, gt_dtype dt, uint64_t *n,
                        gt_err *err) {
  int64_t numel = gt_tensor_numel(t), be = (int64_t)gt_dtype_block(dt);
  if (be > 1 && (t->ndim == 0 || t->shape[t->ndim - 1] % be != 0))
    return gt_fail(err, "%s needs the last dimension to be a multiple of %lld",
                   gt_dtype_name(dt), (long long)be);
  if (gt_mul_u64((uint64_t)(numel / be), gt_dtype_size(dt), (unsigned long long *)n))
    return gt_fail(err, "byte size overflows");
  return GT_OK;
}

static int check_entry(const gt_entry *e, gt_dtype dt, gt_err *err) {
  const gt_tensor *t = &e->t;
  if (strlen(e->name) >= MAX_NAME)
    return gt_fail(err, "tensor \"%.*s\": name of %zu bytes is too long for "
                   "GGUF (ggml takes names shorter than %d)", SHOWN, e->name,
                   strlen(e->name), MAX_NAME);
  if (t->ndim > MAX_DIMS)
    return gt_fail(err, "tensor \"%.*s\": %d dims, GGUF holds at most %d",
                   SHOWN, e->name, t->ndim, MAX_DIMS);
  int quantise = (dt == GT_Q8_0 || dt == GT_Q4_0) && t->dtype != dt;
  if (quantise && !(gt_dtype_is_float(t->dtype) || gt_dtype_is_quant(t->dtype)))
    return gt_fail(err, "tensor \"%.*s\": cannot quantise a %s tensor to %s",
                   SHOWN, e->name, gt_dtype_name(t->dtype), gt_dtype_name(dt));
  if (!quantise && t->dtype != dt)
    return gt_fail(err, "tensor \"%.*s\": is %s, asked to be stored as %s "
                   "(only q8_0 and q4_0 quantise)", SHOWN, e->name,
                   gt_dtype_name(t->dtype), gt_dtype_name(dt));
  if (gtype_of_dtype(dt) < 0)
    return gt_fail(err, "tensor \"%.*s\": GGUF has no %s type (cast it to one "
                   "of float32, float16, bfloat16, float64, int8..int64)",
                   SHOWN, e->name, gt_dtype_name(dt));
  return GT_OK;
}

static int write_infos(gt_out *o, const gt_save *s, const gt_dtype *types,
                       uint32_t align, gt_err *err) {
  uint64_t off = 0;
  for (size_t i = 0; i < s->n; i++) {
    const gt_tensor *t = &s->entries[i].t;
    uint64_t n = 0;
    if (stored_bytes(t, types[i], &n, err) != GT_OK)
      return gt_wrap(err, "tensor \"%.*s\"", SHOWN, s->entries[i].name);
    int nd = t->ndim ? t->ndim : 1;
    if (put_str(o, s->entries[i].name, strlen(s->entries[i].name), err) != GT_OK ||
        put(o, (uint64_t)nd, 4, err) != GT_OK)
      return GT_ERR;
    for (int d = nd - 1; d >= 0; d--)
      if (put(o, t->ndim ? (uint64_t)t->shape[d] : 1, 8, err) != GT_OK) return GT_ERR;
    if (put(o, gtypes[gtype_of_dtype(types[i])].id, 4, err) != GT_OK ||
        put(o, off, 8, err) != GT_OK)
      return GT_ERR;
    uint64_t padded = n + (align - n % align) % align;
    if (gt_add_u64(off, padded, (unsigned long long *)&off))
      return gt_fail(err, "data section too large");
  }
  return GT_OK;
}

/* Quantising sink: float32 pieces in, blocks out; a piece may end inside a
 * block, the rest waits in carry. */
typedef struct qsink {
  gt_out *o;
  gt_dtype dt;
  float carry[32];
  size_t ncarry;
  unsigned char blocks[34 * 256];
  float tmp[32 * 256];
} qsink;

static int q_emit(qsink *q, const float *x, size_t n, gt_err *err) {
  size_t bs = gt_dtype_size(q->dt);
  if (q->dt == GT_Q8_0) gt_quantize_q8_0(x, q->blocks, n);
  else gt_quantize_q4_0(x, q->blocks, n);
  return gt_out_write(q->o, q->blocks, n / 32 * bs, err);
}

static int q_sink(void *ctx, const void *bytes, size_t n, gt_err *err) {
  qsink *q = ctx;
  const unsigned char *p = bytes;
  size_t nf = n / 4;
  /* Progress counts the float32 source bytes, as fileout's total does. */
  q->o->done += n;
  if (q->o->progress) q->o->progress(q->o->progress_ctx, q->o->done, q->o->total);
  while (nf > 0) {
    if (q->ncarry > 0 || nf < 32) {
      size_t k = 32 - q->ncarry < nf ? 32 - q->ncarry : nf;
      memcpy(q->carry + q->ncarry, p, k * 4);
      q->ncarry += k;
      p += k * 4;
      nf -= k;
      if (q->ncarry == 32) {
        if (q_emit(q, q->carry, 32, err) != GT_OK) return GT_ERR;
        q->ncarry = 0;
      }
      continue;
    }
    size_t k = nf / 32 * 32;
    if (k > 32 * 256) k = 32 * 256;
    memcpy(q->tmp, p, k * 4);   /* the piece may be unaligned for floats */
    if (q_emit(q, q->tmp, k, err) != GT_OK) return GT_ERR;
    p += k * 4;
    nf -= k;
  }
  return GT_OK;
}

static int write_data(gt_out *o, const gt_save *s, const gt_dtype *types,
                      uint32_t align, gt_err *err) {
  qsink *q = NULL;
  int rc = GT_OK;
  for (size_t i = 0; i < s->n && rc == GT_OK; i++) {
    const gt_entry *e = &s->entries[i];
    uint64_t start = o->pos;
    if (types[i] != e->t.dtype) {
      if (!q && !(q = malloc(sizeof *q))) {
        rc = oom(err);
        break;
      }
      if (!o->buf) {
        void *p = NULL;
        if (posix_memalign(&p, 64, GT_OUT_BUFSIZE) != 0) {
          rc = oom(err);
          break;
        }
        o->buf = p;
        o->bufsize = GT_OUT_BUFSIZE;
      }
      q->o = o;
      q->dt = types[i];
      q->ncarry = 0;
      rc = gt_stream(&e->t, GT_F32, o->buf, o->bufsize, q_sink, q, 1, err);
    } else {
      rc = gt_out_tensor(o, &e->t, err);
    }
    if (rc != GT_OK) {
      gt_wrap(err, "tensor \"%.*s\"", SHOWN, e->name);
      break;
    }
    uint64_t n = o->pos - start;
    rc = gt_out_pad(o, (size_t)((align - n % align) % align), err);
  }
  free(q);
  return rc;
}

int gt_gguf_write(const char *path, const gt_save *s, const gt_value *kv,
                  const gt_dtype *types, uint32_t align, gt_err *err) {
  if (align == 0 || (align & (align - 1)) != 0)
    return gt_fail(err, "alignment %u is not a power of two", align);
  if (kv && kv->kind != GT_V_LIST && !(kv->kind == GT_V_MAP && kv->n == 0))
    return gt_fail(err, "metadata must be a list of {key, type, value}");
  if (check_unique(kv, err) != GT_OK) return GT_ERR;
  for (size_t i = 0; i < s->n; i++)
    if (check_entry(&s->entries[i], types[i], err) != GT_OK) return GT_ERR;
  gt_out o;
  if (gt_out_open(&o, path, s, err) != GT_OK) return GT_ERR;
  int rc = gt_out_write(&o, "GGUF", 4, err);
  if (rc == GT_OK) rc = put(&o, 3, 4, err);
  if (rc == GT_OK) rc = put(&o, s->n, 8, err);
  if (rc == GT_OK) rc = put(&o, kv ? kv->n : 0, 8, err);
  if (rc == GT_OK) rc = write_kvs(&o, kv, err);
  if (rc == GT_OK) rc = write_infos(&o, s, types, align, err);
  if (rc == GT_OK) rc = gt_out_pad(&o, (size_t)((align - o.pos % align) % align), err);
  if (rc == GT_OK) rc = write_data(&o, s, types, align, err);
  if (rc != GT_OK) {
    gt_out_abort(&o);
    return GT_ERR;
  }
  return gt_out_commit(&o, err);
}
