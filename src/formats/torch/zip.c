/* zip.c: PyTorch zip archives (read.h, reader.h): torch.save since 1.6
 * and torch.jit.save (data.pkl, constants.pkl, data/<key> records) and
 * torch.export.save .pt2 archives (JSON configs naming raw storage
 * records). Records are found through graft's own validated zip
 * directory (io/zipmap); stored ones are used in place, CRC-32 checked on
 * first use, deflated ones inflated on first use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "formats/torch/reader.h"
#include "io/zipmap.h"
#include "io/zipmember.h"

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
  return gt_torch_set_text(meta, key, buf, n, err);
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
  int rc = gt_torch_load_pickle(r, s->data, s->size, mm->data_offset, 1, tree, NULL, err);
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
  if (gt_torch_storage_for(r, rel, &st, &isnew, err)) return GT_ERR;
  if (isnew) {
    const gt_zip_member *mm = member(z, rel);
    if (!mm) return gt_fail(err, "tensor \"%.200s\": record %s%s is missing", name, z->prefix, rel);
    r->st[st].type = gt_torch_untyped();
    r->st[st].numel = mm->size;
    if (!(r->st[st].s = record_storage(z, mm, err))) return gt_wrap(err, "tensor \"%.200s\"", name);
  }
  if (gt_torch_add_record(r, st, t, off, nd, shape, strides, -1, &k, err)) return GT_ERR;
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

/* The archive's tree, then its constants (TorchScript's constants.pkl,
 * .pt2's model constants) named under "constants". */
static int finish_tree(reader *r, const gt_value *tree, const gt_value *consts,
                       gt_value *meta, gt_err *err) {
  int rc = gt_torch_finish(r, tree, "tree", meta, err);
  if (rc == GT_OK && consts) {
    size_t mark;
    rc = gt_torch_path_push(r, "constants", 9, &mark, err);
    if (rc == GT_OK) rc = gt_torch_finish(r, consts, "constants", meta, err);
    gt_torch_path_pop(r, mark);
  }
  return rc;
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
  if (rc == GT_OK) rc = finish_tree(r, tree, consts, meta, err);
  if (rc == GT_OK && gt_value_setk(meta, "skipped", skipped)) rc = gt_fail(err, "out of memory");
  else if (rc == GT_OK) skipped = NULL;
  gt_value_free(skipped);
  gt_value_free(tree);
  gt_value_free(consts);
  return rc;
}

int gt_torch_read_zip(reader *r, gt_value *meta, gt_err *err) {
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
    rc = gt_torch_set_text(meta, "kind", kind, strlen(kind), err);
    if (rc == GT_OK) rc = gt_torch_set_text(meta, "archive", z.prefix, z.plen - 1, err);
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
  if (rc == GT_OK) rc = finish_tree(r, tree, consts, meta, err);
done:
  gt_value_free(tree);
  gt_value_free(consts);
  gt_zip_dir_free(&z.d);
  free(z.sorted);
  free(z.prefix);
  return rc;
}

