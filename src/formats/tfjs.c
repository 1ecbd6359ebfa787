/* tfjs.c: TensorFlow.js weights manifests (see tfjs.h and
 * docs/formats/tfjs.md).
 *
 * Format facts (tfjs-core io/types.ts, io/io_utils.ts): weightsManifest is
 * a list of groups {paths, weights}. A group's shard files, concatenated in
 * list order, form one byte stream; its weights lie end to end in that
 * stream with no padding, so a weight may span shards. A weight's byte
 * length is product(shape) x the size of its quantization dtype (uint8 1,
 * uint16 2, float16 2) or of its dtype (float32 4, int32 4, bool 1,
 * complex64 8); a "string" weight is product(shape) x (u32 length, bytes).
 * All little-endian. JSON numbers are doubles: a dimension is an integer
 * in [0, 2^53), and so is every product of dimensions graft accepts.
 *
 * Dequantisation is tfjs's decodeWeight: uint8/uint16 q to float32 is
 * `q * scale + min` in doubles, stored to float32 (one rounding); to int32
 * it is Math.round of that (nearest, halves toward +infinity) stored into
 * an Int32Array (ToInt32: modulo 2^32). The build is ISO C, whose default
 * is -ffp-contract=off: no fused multiply-add changes a rounding. */
#include "formats/tfjs.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tensor/cap.h"

#define SAFE_INT ((uint64_t)1 << 53)

static const cJSON *get(const cJSON *o, const char *key) {
  return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

/* ------------------------------------------------------------ streams */

/* A group's shards in list order: shard k holds the stream's bytes
 * [start[k], start[k + 1]); start[0] = 0, start[n] = the stream's length.
 * Shards may be empty. */
typedef struct stream {
  gt_storage **map;  /* retained */
  uint64_t *start;   /* n + 1 entries once set up */
  size_t n;
} stream;

static uint64_t stream_len(const stream *s) { return s->n ? s->start[s->n] : 0; }

static void stream_free(stream *s) {
  for (size_t k = 0; k < s->n; k++) gt_storage_release(s->map[k]);
  free(s->map);
  free(s->start);
  memset(s, 0, sizeof *s);
}

/* The shard holding byte off, for off < stream_len(s). Invariant of the
 * search: start[lo] <= off < start[hi]. */
static size_t shard_at(const stream *s, uint64_t off) {
  size_t lo = 0, hi = s->n;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (s->start[mid] <= off) lo = mid;
    else hi = mid;
  }
  return lo;
}

/* Copies the stream's bytes [off, off + n) (inside the stream) to out. */
static void gather(const stream *s, uint64_t off, unsigned char *out, uint64_t n) {
  while (n > 0) {
    size_t k = shard_at(s, off);
    uint64_t in = off - s->start[k], take = s->start[k + 1] - off;
    if (take > n) take = n;
    memcpy(out, s->map[k]->data + in, (size_t)take);
    out += take, off += take, n -= take;
  }
}

/* out = the shards of s that bytes [off, off + n) touch (n > 0), retained,
 * with their stream offsets. */
static int sub_stream(const stream *s, uint64_t off, uint64_t n, stream *out,
                      gt_err *err) {
  size_t k0 = shard_at(s, off), k1 = shard_at(s, off + n - 1), c = k1 - k0 + 1;
  out->map = malloc(c * sizeof *out->map);
  out->start = malloc((c + 1) * sizeof *out->start);
  if (!out->map || !out->start) {
    free(out->map);
    free(out->start);
    return gt_fail(err, "out of memory");
  }
  for (size_t i = 0; i < c; i++) {
    out->map[i] = s->map[k0 + i];
    gt_storage_retain(out->map[i]);
    out->start[i] = s->start[k0 + i];
  }
  out->start[c] = s->start[k1 + 1];
  out->n = c;
  return GT_OK;
}

/* ------------------------------------------------------- lazy storages */

typedef enum { OP_COPY, OP_AFFINE_F32, OP_AFFINE_I32 } op_kind;

/* A storage made on first use from stream bytes [off, off + len): copied
 * as they are (a weight spanning shards) or dequantised. */
typedef struct lazy {
  stream src;        /* the shards holding the bytes */
  uint64_t off, len;
  op_kind op;
  int qsize;         /* affine: 1 (uint8) or 2 (uint16) */
  double scale, min;
} lazy;

static void lazy_free(void *p) {
  lazy *z = p;
  stream_free(&z->src);
  free(z);
}

/* Math.round then ToInt32, as an Int32Array store of it does. x - floor(x)
 * is exact for doubles, so ties are told exactly. */
static int32_t js_round_int32(double x) {
  if (!isfinite(x)) return 0;
  double r = floor(x);
  if (x - r >= 0.5) r += 1;
  r = fmod(r, 4294967296.0);
  if (r < 0) r += 4294967296.0;
  uint32_t u = (uint32_t)r;
  int32_t v;
  memcpy(&v, &u, sizeof v);
  return v;
}

static void dequantise(const lazy *z, const unsigned char *q, unsigned char *out) {
  uint64_t n = z->len / (uint64_t)z->qsize;
  for (uint64_t i = 0; i < n; i++) {
    double v = z->qsize == 1 ? q[i] : (double)(q[2 * i] | q[2 * i + 1] << 8);
    double x = v * z->scale + z->min;
    if (z->op == OP_AFFINE_F32) {
      float f = (float)x;
      memcpy(out + 4 * i, &f, 4);
    } else {
      int32_t k = js_round_int32(x);
      memcpy(out + 4 * i, &k, 4);
    }
  }
}

static int lazy_load(gt_storage *s, gt_err *err) {
  lazy *z = s->ctx;
  if (gt_storage_alloc_data(s, err) != GT_OK) return GT_ERR;
  if (z->op == OP_COPY) {
    gather(&z->src, z->off, s->data, z->len);
    return GT_OK;
  }
  if (z->src.n == 1) {
    dequantise(z, z->src.map[0]->data + (z->off - z->src.start[0]), s->data);
    return GT_OK;
  }
  /* Quantised bytes spanning shards: gathered first (len <= s->size). */
  unsigned char *tmp = malloc((size_t)z->len);
  if (!tmp) return gt_fail(err, "out of memory");
  gather(&z->src, z->off, tmp, z->len);
  dequantise(z, tmp, s->data);
  free(tmp);
  return GT_OK;
}

/* A lazy storage of `size` bytes for *proto (its src is filled here). */
static gt_storage *lazy_storage(const stream *st, const lazy *proto, uint64_t size,
                                gt_err *err) {
  lazy *z = malloc(sizeof *z);
  if (!z) {
    gt_fail(err, "out of memory");
    return NULL;
  }
  *z = *proto;
  if (sub_stream(st, z->off, z->len, &z->src, err) != GT_OK) {
    free(z);
    return NULL;
  }
  return gt_storage_lazy((size_t)size, NULL, lazy_load, z, lazy_free, err);
}

/* The stream's bytes [off, off + n) for elements needing `align`: a region
 * of the shard (copied to aligned memory on first use if misaligned) when
 * they lie in one shard, else a lazy gather. */
static gt_storage *bytes_storage(const stream *st, uint64_t off, uint64_t n,
                                 size_t align, gt_err *err) {
  if (n == 0) return gt_storage_new(0, 1, err);
  size_t k = shard_at(st, off);
  if (off + n <= st->start[k + 1])
    return gt_storage_aligned(st->map[k], off - st->start[k], n, align, err);
  lazy z = {.off = off, .len = n, .op = OP_COPY};
  return lazy_storage(st, &z, n, err);
}

/* ------------------------------------------------------------ weights */

typedef enum { Q_NONE, Q_UINT8, Q_UINT16, Q_FLOAT16 } qkind;

/* One manifest entry, checked. */
typedef struct wspec {
  const char *name;
  int ndim;
  int64_t dims[GT_MAXDIM];
  uint64_t numel;
  int is_string;
  gt_dtype dt;       /* the weight's dtype (not for strings) */
  qkind q;
  double scale, min; /* affine quantisation */
  uint64_t vsize;    /* stored bytes per element (not for strings) */
} wspec;

static const struct {
  const char *name;
  gt_dtype dt;
  uint64_t size;
} plain_types[] = {
  {"float32", GT_F32, 4}, {"int32", GT_I32, 4}, {"bool", GT_BOOL, 1}, {"complex64", GT_C64, 8},
};

/* A dimension as the error shows it. */
static void show_dim(const cJSON *d, char *buf, size_t n) {
  if (cJSON_IsNumber(d)) snprintf(buf, n, "%.17g", d->valuedouble);
  else if (cJSON_IsString(d)) snprintf(buf, n, "\"%.40s\"", d->valuestring);
  else snprintf(buf, n, "%s", cJSON_IsNull(d) ? "null" : "not a number");
}

static int parse_shape(const cJSON *shape, wspec *w, gt_err *err) {
  if (!cJSON_IsArray(shape)) return gt_fail(err, "%s: shape must be a list", w->name);
  const cJSON *d;
  uint64_t n = 1;
  w->ndim = 0;
  cJSON_ArrayForEach(d, shape) {
    if (w->ndim == GT_MAXDIM)
      return gt_fail(err, "%s: more than %d dimensions", w->name, GT_MAXDIM);
    double v = cJSON_IsNumber(d) ? d->valuedouble : -1;
    if (!cJSON_IsNumber(d) || !(v >= 0) || v >= (double)SAFE_INT || v != floor(v)) {
      char buf[64];
      show_dim(d, buf, sizeof buf);
      return gt_fail(err, "%s: dimension %d is %s, not a size", w->name, w->ndim + 1, buf);
    }
    uint64_t u = (uint64_t)v;
    if (u > 0 && n > SAFE_INT / u) return gt_fail(err, "%s: shape too large", w->name);
    n *= u;
    w->dims[w->ndim++] = (int64_t)u;
  }
  w->numel = n;
  return GT_OK;
}

/* quantization {dtype, scale, min[, original_dtype]} of a dtype-parsed w. */
static int parse_quant(const cJSON *q, wspec *w, const char *dtype, gt_err *err) {
  if (!cJSON_IsObject(q)) return gt_fail(err, "%s: quantization must be an object", w->name);
  const cJSON *qd = get(q, "dtype");
  const char *s = cJSON_IsString(qd) ? qd->valuestring : NULL;
  if (s && strcmp(s, "uint8") == 0) w->q = Q_UINT8, w->vsize = 1;
  else if (s && strcmp(s, "uint16") == 0) w->q = Q_UINT16, w->vsize = 2;
  else if (s && strcmp(s, "float16") == 0) w->q = Q_FLOAT16, w->vsize = 2;
  else
    return gt_fail(err, "%s: unknown quantization dtype \"%.40s\" (tfjs has uint8, uint16, "
                   "float16)", w->name, s ? s : "(none)");
  if (w->q == Q_FLOAT16) {
    if (w->is_string || w->dt != GT_F32)
      return gt_fail(err, "%s: float16 quantization needs dtype float32, not %s", w->name, dtype);
    return GT_OK;
  }
  if (w->is_string || (w->dt != GT_F32 && w->dt != GT_I32))
    return gt_fail(err, "%s: dtype %s cannot be quantized", w->name, dtype);
  const cJSON *scale = get(q, "scale"), *min = get(q, "min");
  if (!cJSON_IsNumber(scale) || !cJSON_IsNumber(min))
    return gt_fail(err, "%s: %s quantization needs numbers `scale` and `min`", w->name, s);
  w->scale = scale->valuedouble;
  w->min = min->valuedouble;
  return GT_OK;
}

/* Name, shape, dtype and quantization of entry wi of group gi. */
static int parse_weight(const cJSON *e, int gi, int wi, wspec *w, gt_err *err) {
  memset(w, 0, sizeof *w);
  const cJSON *name = get(e, "name");
  if (!cJSON_IsString(name))
    return gt_fail(err, "weightsManifest[%d].weights[%d] has no name", gi, wi);
  w->name = name->valuestring;
  if (parse_shape(get(e, "shape"), w, err) != GT_OK) return GT_ERR;
  const cJSON *dt = get(e, "dtype");
  const char *s = cJSON_IsString(dt) ? dt->valuestring : NULL;
  size_t i = 0;
  if (s && strcmp(s, "string") == 0) {
    w->is_string = 1;
  } else {
    while (i < sizeof plain_types / sizeof plain_types[0] && !(s && strcmp(s, plain_types[i].name) == 0))
      i++;
    if (i == sizeof plain_types / sizeof plain_types[0])
      return gt_fail(err, "%s: unknown dtype \"%.40s\" (tfjs has float32, int32, bool, "
                     "complex64, string)", w->name, s ? s : "(none)");
    w->dt = plain_types[i].dt;
    w->vsize = plain_types[i].size;
  }
  const cJSON *q = get(e, "quantization");
  if (q && !cJSON_IsNull(q)) return parse_quant(q, w, s, err);
  return GT_OK;
}

/* The byte length of a string weight at off: numel x (u32 length, bytes).
 * Lengths are read from the shards (the manifest does not give them). */
static int string_span(const stream *st, uint64_t off, const wspec *w, uint64_t *size,
                       gt_err *err) {
  uint64_t pos = off, total = stream_len(st);
  for (uint64_t i = 0; i < w->numel; i++) {
    unsigned char b[4];
    if (pos > total || total - pos < 4)
      return gt_fail(err, "%s: string lengths run past the shards", w->name);
    gather(st, pos, b, 4);
    pos += 4 + ((uint64_t)b[0] | (uint64_t)b[1] << 8 | (uint64_t)b[2] << 16 | (uint64_t)b[3] << 24);
  }
  *size = pos - off;
  return GT_OK;
}

/* The strings of a string weight whose span was checked. */
static gt_value *string_list(const stream *st, uint64_t off, const wspec *w, gt_err *err) {
  gt_value *list = gt_value_new(GT_V_LIST);
  unsigned char *buf = NULL;
  if (!list) goto oom;
  for (uint64_t i = 0; i < w->numel; i++) {
    unsigned char b[4];
    gather(st, off, b, 4);
    uint64_t len = (uint64_t)b[0] | (uint64_t)b[1] << 8 | (uint64_t)b[2] << 16 | (uint64_t)b[3] << 24;
    if (gt_cap_check(len + 1, err) != GT_OK) {
      gt_value_free(list);
      return NULL;
    }
    unsigned char *nb = realloc(buf, (size_t)len + 1);
    if (!nb) goto oom;
    buf = nb;
    gather(st, off + 4, buf, len);
    off += 4 + len;
    if (gt_value_push(list, gt_value_str((const char *)buf, (size_t)len)) != GT_OK) {
      list = NULL;  /* freed by gt_value_push */
      goto oom;
    }
  }
  free(buf);
  return list;
oom:
  free(buf);
  gt_value_free(list);
  gt_fail(err, "out of memory");
  return NULL;
}

/* The tensor of a checked non-string weight at stream bytes [off, +size). */
static int make_tensor(const stream *st, uint64_t off, uint64_t size, const wspec *w,
                       gt_tensor *t, gt_err *err) {
  gt_storage *s;
  gt_dtype stored = w->q == Q_FLOAT16 ? GT_F16 : w->dt;
  if (w->q == Q_UINT8 || w->q == Q_UINT16) {
    lazy z = {.off = off, .len = size, .op = w->dt == GT_F32 ? OP_AFFINE_F32 : OP_AFFINE_I32,
              .qsize = (int)w->vsize, .scale = w->scale, .min = w->min};
    s = size == 0 ? gt_storage_new(0, 1, err) : lazy_storage(st, &z, w->numel * 4, err);
  } else {
    s = bytes_storage(st, off, size, (size_t)w->vsize, err);
  }
  if (!s) return GT_ERR;
  gt_tensor raw;
  int rc = gt_tensor_make(&raw, s, stored, w->ndim, w->dims, 0, err);
  gt_storage_release(s);
  if (rc != GT_OK) return GT_ERR;
  if (stored == w->dt) {
    *t = raw;
    return GT_OK;
  }
  /* float16 quantisation: a lazy cast to float32, exact. */
  int needs_copy = 0;
  rc = gt_cast(&raw, w->dt, t, &needs_copy, err);
  gt_tensor_free(&raw);
  return rc;
}

/* ------------------------------------------------------------ reading */

/* Names seen so far (open addressing; the strings are the JSON tree's). */
typedef struct nameset {
  const char **slot;
  size_t cap, n;
} nameset;

static uint64_t fnv(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
  return h;
}

/* Adds name; *dup = 1 (and nothing added) when it is there already. */
static int nameset_add(nameset *ns, const char *name, int *dup, gt_err *err) {
  if (2 * (ns->n + 1) > ns->cap) {
    size_t cap = ns->cap ? 2 * ns->cap : 64;
    const char **slot = calloc(cap, sizeof *slot);
    if (!slot) return gt_fail(err, "out of memory");
    for (size_t i = 0; i < ns->cap; i++) {
      if (!ns->slot[i]) continue;
      size_t j = fnv(ns->slot[i]) & (cap - 1);
      while (slot[j]) j = (j + 1) & (cap - 1);
      slot[j] = ns->slot[i];
    }
    free(ns->slot);
    ns->slot = slot, ns->cap = cap;
  }
  size_t j = fnv(name) & (ns->cap - 1);
  for (; ns->slot[j]; j = (j + 1) & (ns->cap - 1)) {
    if (strcmp(ns->slot[j], name) == 0) {
      *dup = 1;
      return GT_OK;
    }
  }
  ns->slot[j] = name;
  ns->n++;
  *dup = 0;
  return GT_OK;
}

typedef struct reader {
  const char *path;
  gt_model *m;
  gt_value *shards, *groups, *strings;
  nameset names;
} reader;

/* A shard path must be a bare file name: the manifest cannot reach outside
 * the folder of model.json. */
static int bare_name(const char *s) {
  return *s && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 && !strchr(s, '/') && !strchr(s, '\\');
}

/* Maps the group's shard files into st. */
static int open_stream(reader *rd, int gi, const cJSON *paths, stream *st, gt_err *err) {
  size_t n = (size_t)cJSON_GetArraySize(paths);
  st->map = calloc(n + 1, sizeof *st->map);
  st->start = calloc(n + 1, sizeof *st->start);
  if (!st->map || !st->start) return gt_fail(err, "out of memory");
  const char *slash = strrchr(rd->path, '/');
  size_t dl = slash ? (size_t)(slash - rd->path) + 1 : 0;
  const cJSON *p;
  cJSON_ArrayForEach(p, paths) {
    const char *s = cJSON_IsString(p) ? p->valuestring : NULL;
    if (!s || !bare_name(s))
      return gt_fail(err, "weightsManifest[%d]: shard path \"%.80s\" is not a file name beside "
                     "model.json", gi, s ? s : "(not a string)");
    size_t sl = strlen(s);
    char *full = malloc(dl + sl + 1);
    if (!full) return gt_fail(err, "out of memory");
    memcpy(full, rd->path, dl);
    memcpy(full + dl, s, sl + 1);
    struct stat sb;
    int missing = stat(full, &sb) != 0 && errno == ENOENT;
    gt_storage *map = missing ? NULL : gt_storage_map(full, err);
    free(full);
    if (missing) return gt_fail(err, "weightsManifest[%d]: shard %s is missing", gi, s);
    if (!map) return gt_wrap(err, "weightsManifest[%d]: shard %s", gi, s);
    uint64_t start = st->start[st->n];
    st->map[st->n++] = map;
    if ((uint64_t)map->size > UINT64_MAX / 2 - start)
      return gt_fail(err, "weightsManifest[%d]: the shards are too large", gi);
    st->start[st->n] = start + map->size;
    if (gt_value_push(rd->shards, gt_value_str(s, sl)) != GT_OK) return gt_fail(err, "out of memory");
  }
  return GT_OK;
}

/* Entry wi of group gi at stream offset *off: checked, then a tensor of
 * the model or (strings) a list in meta.strings; *off moves past it. */
static int read_weight(reader *rd, const stream *st, int gi, int wi, const cJSON *e,
                       uint64_t *off, gt_err *err) {
  wspec w;
  uint64_t size = 0, total = stream_len(st);
  if (parse_weight(e, gi, wi, &w, err) != GT_OK) return GT_ERR;
  if (w.is_string && w.q == Q_NONE) {
    if (string_span(st, *off, &w, &size, err) != GT_OK) return GT_ERR;
  } else {
    size = w.numel * w.vsize;  /* < 2^53 * 8 */
  }
  if (*off + size > total)
    return gt_fail(err, "%s: the manifest places it at bytes %llu..%llu but "
                   "weightsManifest[%d]'s %zu shard file(s) hold %llu bytes", w.name,
                   (unsigned long long)*off, (unsigned long long)(*off + size), gi, st->n,
                   (unsigned long long)total);
  int dup;
  if (nameset_add(&rd->names, w.name, &dup, err) != GT_OK) return GT_ERR;
  if (dup) return gt_fail(err, "%s: two weights have this name", w.name);
  if (gt_value_setk(rd->groups, w.name, gt_value_int(gi)) != GT_OK)
    return gt_fail(err, "out of memory");
  if (w.is_string) {
    gt_value *list = string_list(st, *off, &w, err);
    if (!list) return GT_ERR;
    if (gt_value_setk(rd->strings, w.name, list) != GT_OK) return gt_fail(err, "out of memory");
  } else {
    gt_tensor t;
    if (make_tensor(st, *off, size, &w, &t, err) != GT_OK) return gt_wrap(err, "%s", w.name);
    if (gt_model_add(rd->m, w.name, strlen(w.name), &t, err) != GT_OK) return GT_ERR;
  }
  *off += size;
  return GT_OK;
}

static int read_group(reader *rd, int gi, const cJSON *g, gt_err *err) {
  const cJSON *paths = get(g, "paths"), *weights = get(g, "weights"), *e;
  if (!cJSON_IsArray(paths) || !cJSON_IsArray(weights))
    return gt_fail(err, "weightsManifest[%d] needs `paths` and `weights` lists", gi);
  stream st = {0};
  int rc = open_stream(rd, gi, paths, &st, err), wi = 0;
  uint64_t off = 0;
  if (rc == GT_OK) {
    cJSON_ArrayForEach(e, weights) {
      if ((rc = read_weight(rd, &st, gi, ++wi, e, &off, err)) != GT_OK) break;
    }
  }
  if (rc == GT_OK && off != stream_len(&st))
    rc = gt_fail(err, "weightsManifest[%d]: the manifest's weights take %llu bytes but its %zu "
                 "shard file(s) hold %llu", gi, (unsigned long long)off, st.n,
                 (unsigned long long)stream_len(&st));
  stream_free(&st);
  return rc;
}

/* The JSON document of the mapped model.json (NUL-terminated copy). */
static cJSON *parse_doc(gt_storage *file, gt_err *err) {
  if (gt_storage_ready(file, err) != GT_OK || gt_cap_check((uint64_t)file->size + 1, err) != GT_OK)
    return NULL;
  char *text = malloc(file->size + 1);
  if (!text) {
    gt_fail(err, "out of memory");
    return NULL;
  }
  if (file->size) memcpy(text, file->data, file->size);
  text[file->size] = '\0';
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, file->size, &end, 0);
  if (!root)
    gt_fail(err, "not valid JSON (near byte %zu)", end ? (size_t)(end - text) : (size_t)0);
  free(text);
  if (root && !cJSON_IsArray(get(root, "weightsManifest"))) {
    gt_fail(err, "not a TensorFlow.js model.json (no weightsManifest)");
    cJSON_Delete(root);
    return NULL;
  }
  return root;
}

int gt_tfjs_read(gt_storage *file, const char *path, gt_model *m, gt_err *err) {
  reader rd = {.path = path, .m = m};
  gt_value *meta = gt_value_new(GT_V_MAP);
  rd.shards = gt_value_new(GT_V_LIST);
  rd.groups = gt_value_new(GT_V_MAP);
  rd.strings = gt_value_new(GT_V_MAP);
  int rc = GT_ERR;
  cJSON *root = NULL;
  if (!meta || !rd.shards || !rd.groups || !rd.strings) {
    gt_fail(err, "out of memory");
    goto done;
  }
  if (!(root = parse_doc(file, err))) goto done;
  const cJSON *g;
  int gi = 0;
  rc = GT_OK;
  cJSON_ArrayForEach(g, get(root, "weightsManifest")) {
    if ((rc = read_group(&rd, ++gi, g, err)) != GT_OK) break;
  }
  if (rc == GT_OK) {
    /* gt_value_setk owns its item from the call on, also on failure. */
    int a = gt_value_setk(meta, "shards", rd.shards);
    int b = gt_value_setk(meta, "groups", rd.groups);
    int c = gt_value_setk(meta, "strings", rd.strings);
    rd.shards = rd.groups = rd.strings = NULL;
    if (a != GT_OK || b != GT_OK || c != GT_OK) rc = gt_fail(err, "out of memory");
  }
  if (rc == GT_OK) {
    m->format = "tfjs";
    m->meta = meta;
    meta = NULL;
  }
done:
  gt_value_free(meta);
  gt_value_free(rd.shards);
  gt_value_free(rd.groups);
  gt_value_free(rd.strings);
  free(rd.names.slot);
  cJSON_Delete(root);
  if (rc != GT_OK) gt_model_free(m);
  return rc;
}
