/* npy.c: NumPy .npy, read and write (see npy.h, docs/formats/numpy.md); the
 * .npy encoding of one array is also what npz.c reads and writes members
 * with.
 *
 * The file is laid out as
 *   1. the .npy header: the dict parser, the descr table, the checks;
 *   2. lazy storages: string conversion (S bytes / U UTF-32 -> gt_str);
 *   3. readers: an array from its header and raw bytes, one .npy file;
 *   4. writers: the np.save header, a pull-style producer of npy bytes,
 *      .npy through gt_out.
 * Header facts (NumPy 1.24 lib/format.py): magic "\x93NUMPY", major, minor
 * (1.0 / 2.0 / 3.0), header length u16 LE (v1) or u32 LE (v2, v3), then a
 * Python dict literal; v1/v2 headers may carry Python 2 longs ("2L"). */
#include "formats/npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/copy.h"
#include "io/fileout.h"
#include "io/utf8.h"

/* ------------------------------------------------------------------ */
/* 1. The header                                                        */
/* ------------------------------------------------------------------ */

static const unsigned char MAGIC[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* The dict text h[0, end), parsed left to right; `longs` accepts the
 * Python 2 "L" suffix that NumPy filters out of v1/v2 headers. */
typedef struct lexer {
  const char *p, *end;
  int longs;
} lexer;

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static int peek(lexer *x) {
  while (x->p < x->end && is_space(*x->p)) x->p++;
  return x->p < x->end ? (unsigned char)*x->p : -1;
}

static int accept(lexer *x, char c) {
  if (peek(x) != (unsigned char)c) return 0;
  x->p++;
  return 1;
}

static int is_ident(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_';
}

/* A quoted string without escapes into buf (NUL-terminated). */
static int lex_string(lexer *x, char *buf, size_t cap, gt_err *err) {
  int q = peek(x);
  if (q != '\'' && q != '"') return gt_fail(err, "header: expected a string");
  const char *s = ++x->p;
  while (x->p < x->end && *x->p != q) {
    unsigned char c = (unsigned char)*x->p;
    if (c == '\\' || c < 0x20 || c > 0x7e)
      return gt_fail(err, "header: unsupported character in a string");
    x->p++;
  }
  if (x->p == x->end) return gt_fail(err, "header: unterminated string");
  size_t n = (size_t)(x->p - s);
  x->p++;
  if (n >= cap) return gt_fail(err, "header: string '%.40s...' too long", s);
  memcpy(buf, s, n);
  buf[n] = '\0';
  return GT_OK;
}

/* A non-negative decimal integer literal as Python 3 spells it (no leading
 * zeros), with an optional Python 2 "L" when allowed. */
static int lex_int(lexer *x, int64_t *v, gt_err *err) {
  int c = peek(x);
  if (c < '0' || c > '9') return gt_fail(err, "header: shape holds a non-integer");
  const char *s = x->p;
  uint64_t r = 0;
  while (x->p < x->end && *x->p >= '0' && *x->p <= '9') {
    if (r > (uint64_t)INT64_MAX / 10 ||
        r * 10 + (uint64_t)(*x->p - '0') > (uint64_t)INT64_MAX)
      return gt_fail(err, "header: dimension %.30s is too large", s);
    r = r * 10 + (uint64_t)(*x->p - '0');
    x->p++;
  }
  if (x->p - s > 1 && *s == '0')
    return gt_fail(err, "header: dimension with a leading zero");
  if (x->longs && x->p < x->end && *x->p == 'L') x->p++;
  if (x->p < x->end && is_ident((unsigned char)*x->p))
    return gt_fail(err, "header: malformed dimension");
  *v = (int64_t)r;
  return GT_OK;
}

/* "()", "(5,)", "(2, 3)", "(2, 3,)". */
static int lex_shape(lexer *x, gt_npy_header *h, gt_err *err) {
  if (!accept(x, '('))
    return gt_fail(err, "header: shape is not a tuple");
  h->ndim = 0;
  while (!accept(x, ')')) {
    if (h->ndim == GT_MAXDIM)
      return gt_fail(err, "header: more than %d dimensions", GT_MAXDIM);
    if (lex_int(x, &h->shape[h->ndim++], err) != GT_OK) return GT_ERR;
    if (accept(x, ',')) continue;
    if (h->ndim == 1)
      return gt_fail(err, "header: shape is not a tuple (missing ',')");
    if (!accept(x, ')')) return gt_fail(err, "header: malformed shape");
    break;
  }
  return GT_OK;
}

static int lex_bool(lexer *x, int *b, gt_err *err) {
  peek(x);
  const char *s = x->p;
  while (x->p < x->end && is_ident((unsigned char)*x->p)) x->p++;
  size_t n = (size_t)(x->p - s);
  if (n == 4 && memcmp(s, "True", 4) == 0) *b = 1;
  else if (n == 5 && memcmp(s, "False", 5) == 0) *b = 0;
  else return gt_fail(err, "header: fortran_order is not True or False");
  return GT_OK;
}

/* descr "<f4" etc.: byte order (optional), kind, decimal item size. */
static int parse_descr(const char *d, gt_npy_header *h, gt_err *err) {
  const char *s = d;
  char order = '=';
  if (*s == '<' || *s == '>' || *s == '|' || *s == '=') order = *s++;
  char kind = *s ? *s++ : '\0';
  if (kind == 'O')
    return gt_fail(err, "object arrays ('%s') hold a pickle of Python objects "
                        "and are refused", d);
  if (kind == 'M' || kind == 'm')
    return gt_fail(err, "datetime64/timedelta64 arrays ('%s') are not "
                        "supported", d);
  if (kind == 'V')
    return gt_fail(err, "raw void dtype '%s' is not supported (bfloat16 from "
                        "ml_dtypes is saved this way; no dtype is recorded)", d);
  uint64_t size = 0;
  const char *digits = s;
  while (*s >= '0' && *s <= '9' && size < ((uint64_t)1 << 40))
    size = size * 10 + (uint64_t)(*s++ - '0');
  if (s == digits || *s || (s - digits > 1 && *digits == '0'))
    return gt_fail(err, "unsupported descr '%s'", d);
  static const struct {
    char kind;
    uint64_t size;
    gt_dtype dt;
  } table[] = {
    {'b', 1, GT_BOOL}, {'i', 1, GT_I8}, {'i', 2, GT_I16}, {'i', 4, GT_I32},
    {'i', 8, GT_I64}, {'u', 1, GT_U8}, {'u', 2, GT_U16}, {'u', 4, GT_U32},
    {'u', 8, GT_U64}, {'f', 2, GT_F16}, {'f', 4, GT_F32}, {'f', 8, GT_F64},
    {'c', 8, GT_C64}, {'c', 16, GT_C128},
  };
  h->str_kind = 0;
  if (kind == 'S' || kind == 'U') {
    h->str_kind = kind;
    h->dtype = GT_STRING;
    h->itemsize = kind == 'U' ? size * 4 : size;
    h->swap = kind == 'U' && order == '>';
    return GT_OK;
  }
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (table[i].kind == kind && table[i].size == size) {
      h->dtype = table[i].dt;
      h->itemsize = size;
      h->swap = order == '>' && size > 1;
      return GT_OK;
    }
  return gt_fail(err, "unsupported descr '%s'", d);
}

/* The value of key `k` at x. */
static int lex_value(lexer *x, const char *k, gt_npy_header *h, gt_err *err) {
  if (strcmp(k, "descr") == 0) {
    int c = peek(x);
    if (c == '[')
      return gt_fail(err, "structured dtypes (a list descr) are not supported");
    if (c == '(')
      return gt_fail(err, "sub-array dtypes (a tuple descr) are not supported");
    if (lex_string(x, h->descr, sizeof h->descr, err) != GT_OK) return GT_ERR;
    return parse_descr(h->descr, h, err);
  }
  if (strcmp(k, "fortran_order") == 0) return lex_bool(x, &h->fortran, err);
  return lex_shape(x, h, err);
}

/* The whole dict: exactly the three keys, any order, optional trailing
 * comma; only whitespace may follow. */
static int parse_dict(lexer *x, gt_npy_header *h, gt_err *err) {
  static const char *keys[3] = {"descr", "fortran_order", "shape"};
  int seen[3] = {0, 0, 0};
  if (!accept(x, '{')) return gt_fail(err, "header is not a dict");
  while (!accept(x, '}')) {
    char k[32];
    int i;
    if (lex_string(x, k, sizeof k, err) != GT_OK) return GT_ERR;
    for (i = 0; i < 3 && strcmp(k, keys[i]) != 0; i++) {}
    if (i == 3) return gt_fail(err, "header: unexpected key '%s'", k);
    if (seen[i]++) return gt_fail(err, "header: key '%s' appears twice", k);
    if (!accept(x, ':')) return gt_fail(err, "header: expected ':' after '%s'", k);
    if (lex_value(x, k, h, err) != GT_OK) return GT_ERR;
    if (accept(x, ',')) continue;
    if (!accept(x, '}')) return gt_fail(err, "header: expected ',' or '}'");
    break;
  }
  for (int i = 0; i < 3; i++)
    if (!seen[i]) return gt_fail(err, "header: key '%s' is missing", keys[i]);
  if (peek(x) != -1) return gt_fail(err, "header: unexpected text after the dict");
  return GT_OK;
}

static uint32_t rd_le(const unsigned char *p, int n) {
  uint32_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

int gt_npy_header_need(const unsigned char *p, uint64_t len, uint64_t *need,
                       gt_err *err) {
  if (len < 10 || memcmp(p, MAGIC, 6) != 0)
    return gt_fail(err, len < 6 || memcmp(p, MAGIC, len < 6 ? len : 6) == 0
                            ? "truncated .npy header (%llu bytes)"
                            : "not a .npy file (bad magic)",
                   (unsigned long long)len);
  if ((p[6] != 1 && p[6] != 2 && p[6] != 3) || p[7] != 0)
    return gt_fail(err, "unsupported .npy format version %u.%u", p[6], p[7]);
  int lenbytes = p[6] == 1 ? 2 : 4;
  if (len < 8u + (unsigned)lenbytes)
    return gt_fail(err, "truncated .npy header (%llu bytes)",
                   (unsigned long long)len);
  uint64_t hlen = rd_le(p + 8, lenbytes);
  if (hlen > GT_NPY_MAX_HEADER)
    return gt_fail(err, "header of %llu bytes is too long (at most %llu)",
                   (unsigned long long)hlen,
                   (unsigned long long)GT_NPY_MAX_HEADER);
  *need = 8u + (unsigned)lenbytes + hlen;
  return GT_OK;
}

/* numel and nbytes, overflow-checked; both must fit int64. */
static int header_sizes(gt_npy_header *h, gt_err *err) {
  uint64_t n = 1;
  int zero = 0;
  for (int i = 0; i < h->ndim; i++) zero |= h->shape[i] == 0;
  for (int i = 0; i < h->ndim && !zero; i++)
    if (gt_mul_u64(n, (uint64_t)h->shape[i], (unsigned long long *)&n) ||
        n > (uint64_t)INT64_MAX)
      return gt_fail(err, "shape has more than 2^63 elements");
  h->numel = zero ? 0 : n;
  if (gt_mul_u64(h->numel, h->itemsize, (unsigned long long *)&h->nbytes) ||
      h->nbytes > (uint64_t)INT64_MAX)
    return gt_fail(err, "shape of %llu elements of '%s' overflows the byte "
                        "count", (unsigned long long)h->numel, h->descr);
  return GT_OK;
}

int gt_npy_parse_header(const unsigned char *p, uint64_t len, gt_npy_header *h,
                        gt_err *err) {
  uint64_t need;
  memset(h, 0, sizeof *h);
  if (gt_npy_header_need(p, len, &need, err) != GT_OK) return GT_ERR;
  if (need > len)
    return gt_fail(err, "header claims %llu bytes but only %llu are there",
                   (unsigned long long)need, (unsigned long long)len);
  h->major = p[6];
  h->minor = p[7];
  size_t start = h->major == 1 ? 10 : 12;
  lexer x = {(const char *)p + start, (const char *)p + need, h->major <= 2};
  if (parse_dict(&x, h, err) != GT_OK) return GT_ERR;
  h->data_offset = need;
  return header_sizes(h, err);
}

/* Data must fit in the `avail` bytes after the header. */
int gt_npy_check_data(const gt_npy_header *h, uint64_t avail, gt_err *err) {
  if (h->nbytes > avail)
    return gt_fail(err, "data is %llu bytes but %llu elements of '%s' need "
                        "%llu", (unsigned long long)avail,
                   (unsigned long long)h->numel, h->descr,
                   (unsigned long long)h->nbytes);
  return GT_OK;
}

/* ------------------------------------------------------------------ */
/* 2. Lazy storages                                                     */
/* ------------------------------------------------------------------ */

/* "<file>: <kind> \"<name>\"": lazy storages fail long after open, where
 * the caller no longer knows which file they came from. */
char *gt_npy_label(const gt_storage *file, const char *kind, const char *name,
                   size_t name_len) {
  const char *path = file && file->path ? file->path : "?";
  int n = name_len > 200 ? 200 : (int)name_len;
  size_t cap = strlen(path) + strlen(kind) + (size_t)n + 8;
  char *s = malloc(cap);
  if (s) snprintf(s, cap, "%s: %s \"%.*s\"", path, kind, n, name);
  return s;
}

size_t gt_npy_align(const gt_npy_header *h) {
  return h->dtype == GT_STRING ? 1 : (size_t)h->itemsize;
}

/* The mapped file a storage rests on (through regions and lazy parents). */
static const gt_storage *root_file(const gt_storage *s) {
  while (s && s->kind != GT_STORAGE_MAPPING) s = s->parent;
  return s;
}

/* String arrays: numel fixed-width items of the parent at `off` become
 * gt_str elements followed by their bytes (UTF-8 of a U item is never
 * longer than the item, so numel * width bytes suffice). */
typedef struct strings_ctx {
  char *what;  /* for messages: "<file>: tensor \"x\"" */
  uint64_t off, numel, width;
  int kind, swap;
} strings_ctx;

static void free_strings(void *p) {
  strings_ctx *c = p;
  free(c->what);
  free(c);
}

/* One U item (width bytes = width/4 code units) to UTF-8 at o. */
static int utf32_item(const strings_ctx *c, const unsigned char *in,
                      unsigned char *o, size_t *n, uint64_t index,
                      gt_err *err) {
  /* Trailing NUL code units are zero bytes in either byte order. */
  uint64_t used = c->width / 4;
  while (used > 0 && rd_le(in + 4 * (used - 1), 4) == 0) used--;
  size_t k = 0;
  for (uint64_t i = 0; i < used; i++) {
    const unsigned char *u = in + 4 * i;
    uint32_t cp = c->swap ? (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 |
                                (uint32_t)u[2] << 8 | u[3]
                          : rd_le(u, 4);
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return gt_fail(err, "%s: element %llu holds invalid code point 0x%X",
                     c->what, (unsigned long long)index, (unsigned)cp);
    k += gt_utf8_put(o + k, cp);
  }
  *n = k;
  return GT_OK;
}

static int load_strings(gt_storage *s, gt_err *err) {
  const strings_ctx *c = s->ctx;
  if (gt_storage_ready(s->parent, err) != GT_OK) return GT_ERR;
  if (gt_storage_alloc_data(s, err) != GT_OK) return GT_ERR;
  const unsigned char *in = s->parent->data + c->off;
  unsigned char *bytes = s->data + c->numel * sizeof(gt_str);
  for (uint64_t i = 0; i < c->numel; i++, in += c->width) {
    gt_str e = {(const char *)bytes, 0};
    if (c->kind == 'S') {
      size_t n = (size_t)c->width;
      while (n > 0 && in[n - 1] == 0) n--;
      memcpy(bytes, in, n);
      e.n = n;
    } else if (utf32_item(c, in, bytes, &e.n, i, err) != GT_OK) {
      return GT_ERR;
    }
    bytes += e.n;
    memcpy(s->data + i * sizeof(gt_str), &e, sizeof e);
  }
  return GT_OK;
}

/* ------------------------------------------------------------------ */
/* 3. Readers                                                           */
/* ------------------------------------------------------------------ */

/* The view of h's array on s at byte `offset`: C order directly; Fortran
 * order as the reversed-shape C-order view with its dims reversed. */
static int make_view(const gt_npy_header *h, gt_storage *s, int64_t offset,
                     gt_tensor *out, gt_err *err) {
  int64_t shape[GT_MAXDIM];
  int perm[GT_MAXDIM];
  if (!h->fortran || h->ndim < 2) {
    if (gt_tensor_make(out, s, h->dtype, h->ndim, h->shape, offset, err) !=
        GT_OK)
      return GT_ERR;
  } else {
    gt_tensor c;
    for (int i = 0; i < h->ndim; i++) {
      shape[i] = h->shape[h->ndim - 1 - i];
      perm[i] = h->ndim - 1 - i;
    }
    if (gt_tensor_make(&c, s, h->dtype, h->ndim, shape, offset, err) != GT_OK)
      return GT_ERR;
    int rc = gt_permute(&c, perm, out, err);
    gt_tensor_free(&c);
    if (rc != GT_OK) return GT_ERR;
  }
  out->swap = h->dtype != GT_STRING && h->swap;
  return GT_OK;
}

/* Wrap raw item storage `raw` (items at `off`) into a string storage. */
static gt_storage *strings_storage(const gt_npy_header *h, gt_storage *raw,
                                   uint64_t off, const char *name,
                                   size_t name_len, gt_err *err) {
  uint64_t heads, size;
  if (gt_mul_u64(h->numel, sizeof(gt_str), (unsigned long long *)&heads) ||
      gt_add_u64(heads, h->nbytes, (unsigned long long *)&size) ||
      size > SIZE_MAX)
    return gt_fail(err, "string array too large"), NULL;
  strings_ctx *c = calloc(1, sizeof *c);
  char *what = gt_npy_label(root_file(raw), "tensor", name, name_len);
  if (!c || !what) {
    free(c);
    free(what);
    return gt_fail(err, "out of memory"), NULL;
  }
  c->what = what;
  c->off = off;
  c->numel = h->numel;
  c->width = h->itemsize;
  c->kind = h->str_kind;
  c->swap = h->swap;
  return gt_storage_lazy((size_t)size, raw, load_strings, c, free_strings,
                         err);
}

/* Add the tensor for h whose items are `raw` bytes at `off` (offset kept in
 * the view for numeric data, consumed by the string storage otherwise). */
int gt_npy_add_array(gt_model *m, const char *name, size_t name_len,
                      const gt_npy_header *h, gt_storage *raw, uint64_t off,
                      gt_err *err) {
  gt_storage *s = raw;
  int64_t view_off = (int64_t)off;
  gt_tensor t;
  if (h->dtype == GT_STRING) {
    if (!(s = strings_storage(h, raw, off, name, name_len, err))) return GT_ERR;
    view_off = 0;
  } else {
    gt_storage_retain(s);
  }
  int rc = make_view(h, s, view_off, &t, err);
  gt_storage_release(s);
  if (rc != GT_OK) return GT_ERR;
  return gt_model_add(m, name, name_len, &t, err);
}

gt_value *gt_npy_header_meta(const gt_npy_header *h) {
  char v[16];
  snprintf(v, sizeof v, "%d.%d", h->major, h->minor);
  gt_value *d = gt_value_new(GT_V_MAP);
  if (gt_value_setk(d, "version", gt_value_str(v, strlen(v))) != GT_OK ||
      gt_value_setk(d, "descr", gt_value_str(h->descr, strlen(h->descr))) !=
          GT_OK ||
      gt_value_setk(d, "fortran_order", gt_value_bool(h->fortran)) != GT_OK) {
    gt_value_free(d);
    return NULL;
  }
  return d;
}

/* The base name of the file without ".npy"; "array" when nothing is left. */
static const char *default_name(const gt_storage *file, size_t *len) {
  const char *p = file->path ? file->path : "";
  const char *slash = strrchr(p, '/');
  const char *base = slash ? slash + 1 : p;
  size_t n = strlen(base);
  if (n >= 4 && strcmp(base + n - 4, ".npy") == 0) n -= 4;
  if (n == 0) {
    base = "array";
    n = 5;
  }
  *len = n;
  return base;
}

int gt_npy_read(gt_storage *file, gt_model *m, const char *name, gt_err *err) {
  gt_npy_header h;
  size_t name_len;
  if (name) name_len = strlen(name);
  else name = default_name(file, &name_len);
  if (gt_npy_parse_header(file->data, file->size, &h, err) != GT_OK ||
      gt_npy_check_data(&h, file->size - h.data_offset, err) != GT_OK)
    return GT_ERR;
  gt_storage *raw;
  uint64_t off = 0;
  if (h.dtype == GT_STRING) {
    raw = file;
    gt_storage_retain(raw);
    off = h.data_offset;
  } else {
    raw = gt_storage_aligned(file, h.data_offset, h.nbytes, gt_npy_align(&h), err);
  }
  if (!raw) return GT_ERR;
  int rc = gt_npy_add_array(m, name, name_len, &h, raw, off, err);
  gt_storage_release(raw);
  if (rc != GT_OK) return GT_ERR;
  m->format = "npy";
  gt_value_free(m->meta);
  if (!(m->meta = gt_npy_header_meta(&h))) return gt_fail(err, "out of memory");
  return GT_OK;
}

/* ------------------------------------------------------------------ */
/* 4. Writers                                                           */
/* ------------------------------------------------------------------ */


static const char *numpy_descr(gt_dtype dt) {
  switch (dt) {
  case GT_F64: return "<f8";
  case GT_F32: return "<f4";
  case GT_F16: return "<f2";
  case GT_I64: return "<i8";
  case GT_I32: return "<i4";
  case GT_I16: return "<i2";
  case GT_I8: return "|i1";
  case GT_U64: return "<u8";
  case GT_U32: return "<u4";
  case GT_U16: return "<u2";
  case GT_U8: return "|u1";
  case GT_BOOL: return "|b1";
  case GT_C64: return "<c8";
  case GT_C128: return "<c16";
  default: return NULL;
  }
}

/* Row-major walk over the elements of a (ready) string view. */
typedef struct str_iter {
  const gt_tensor *t;
  int64_t idx[GT_MAXDIM];
  int64_t left;
} str_iter;

static void str_iter_init(str_iter *it, const gt_tensor *t) {
  memset(it, 0, sizeof *it);
  it->t = t;
  it->left = gt_tensor_numel(t);
}

static int str_next(str_iter *it, gt_str *e) {
  const gt_tensor *t = it->t;
  if (it->left == 0) return 0;
  int64_t off = t->offset;
  for (int d = 0; d < t->ndim; d++)
    off += it->idx[d] * t->strides[d] * (int64_t)sizeof(gt_str);
  memcpy(e, t->storage->data + off, sizeof *e);
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (++it->idx[d] < t->shape[d]) break;
    it->idx[d] = 0;
  }
  it->left--;
  return 1;
}

/* Code points in s, or -1 when s is not valid UTF-8. */
static int64_t utf8_count(const gt_str *s) {
  const unsigned char *p = (const unsigned char *)s->p;
  int64_t k = 0;
  uint32_t cp;
  for (size_t i = 0; i < s->n; k++)
    if (gt_utf8_next(p, s->n, &i, &cp) != 0) return -1;
  return k;
}

/* '<U<max code points>' when every element is UTF-8, else '|S<max bytes>'
 * (at least 1, as numpy makes it for empty strings). */
static int plan_strings(const gt_tensor *t, gt_npy_plan *p, gt_err *err) {
  if (gt_storage_ready(t->storage, err) != GT_OK) return GT_ERR;
  str_iter it;
  gt_str e;
  uint64_t max_cp = 1, max_bytes = 1;
  int utf8 = 1;
  str_iter_init(&it, t);
  while (str_next(&it, &e)) {
    int64_t k = utf8_count(&e);
    if (k < 0) utf8 = 0;
    else if ((uint64_t)k > max_cp) max_cp = (uint64_t)k;
    if (e.n > max_bytes) max_bytes = e.n;
  }
  p->str_kind = utf8 ? 'U' : 'S';
  p->itemsize = utf8 ? 4 * max_cp : max_bytes;
  snprintf(p->descr, sizeof p->descr, utf8 ? "<U%llu" : "|S%llu",
           (unsigned long long)(utf8 ? max_cp : max_bytes));
  return GT_OK;
}

/* np.save's header: the dict repr with keys sorted, spare spaces for the
 * shape to grow (21 - digits of the first dim), then spaces and '\n' so
 * that the data starts at a multiple of 64 (always 1..64 spaces). */
static int build_header(const gt_tensor *t, gt_npy_plan *p, gt_err *err) {
  char d[GT_NPY_HEADER_CAP];
  size_t n = 0;
  n += (size_t)snprintf(d, sizeof d,
                        "{'descr': '%s', 'fortran_order': False, 'shape': (",
                        p->descr);
  for (int i = 0; i < t->ndim && n < sizeof d; i++)
    n += (size_t)snprintf(d + n, sizeof d - n, "%s%lld", i ? ", " : "",
                          (long long)t->shape[i]);
  if (n < sizeof d)
    n += (size_t)snprintf(d + n, sizeof d - n, "%s), }",
                          t->ndim == 1 ? "," : "");
  if (t->ndim > 0 && n < sizeof d) {
    char first[24];
    int digits = snprintf(first, sizeof first, "%lld", (long long)t->shape[0]);
    for (int i = digits; i < 21 && n < sizeof d; i++) d[n++] = ' ';
  }
  size_t hl = n + 1, prefix = 10, pad = 64 - (prefix + hl) % 64;
  int major = 1;
  if (hl + pad > 65535) {
    major = 2;
    prefix = 12;
    pad = 64 - (prefix + hl) % 64;
  }
  if (prefix + hl + pad > sizeof p->header)
    return gt_fail(err, "npy header too long");
  unsigned char *h = p->header;
  uint32_t len = (uint32_t)(hl + pad);
  memcpy(h, MAGIC, 6);
  h[6] = (unsigned char)major;
  h[7] = 0;
  for (size_t i = 0; i < prefix - 8; i++) h[8 + i] = (unsigned char)(len >> (8 * i));
  memcpy(h + prefix, d, n);
  memset(h + prefix + n, ' ', pad);
  h[prefix + n + pad] = '\n';
  p->hlen = prefix + hl + pad;
  return GT_OK;
}

int gt_npy_plan_tensor(const gt_tensor *t, gt_npy_plan *p, gt_err *err) {
  memset(p, 0, sizeof *p);
  if (t->dtype == GT_STRING) {
    if (plan_strings(t, p, err) != GT_OK) return GT_ERR;
  } else {
    const char *d = numpy_descr(t->dtype);
    if (!d)
      return gt_fail(err, "%s has no NumPy dtype; cast the tensor first "
                          "(e.g. :float())", gt_dtype_name(t->dtype));
    snprintf(p->descr, sizeof p->descr, "%s", d);
    p->itemsize = gt_dtype_size(t->dtype);
  }
  p->numel = (uint64_t)gt_tensor_numel(t);
  if (gt_mul_u64(p->numel, p->itemsize, (unsigned long long *)&p->nbytes))
    return gt_fail(err, "tensor too large");
  if (build_header(t, p, err) != GT_OK) return GT_ERR;
  p->total = p->hlen + p->nbytes;
  return GT_OK;
}

/* Pull-style source of a tensor's npy data bytes, in pieces of at most
 * `cap` bytes: numeric views are cut as gt_stream cuts them (dims before k
 * one index at a time, dim k in chunks) and copied with gt_copy_into;
 * string elements are encoded to fixed-width items. */
typedef struct gt_npy_producer {
  const gt_tensor *t;
  const gt_npy_plan *p;
  unsigned char *buf;
  size_t cap;
  int k;              /* -1: the whole tensor is one piece */
  int64_t slice;      /* elements per index of dim k */
  int64_t chunk;      /* indices of dim k per piece */
  int64_t outer, o, i;
  str_iter it;
} producer;

static int prod_init(producer *pr, const gt_tensor *t, const gt_npy_plan *p,
                     gt_err *err) {
  memset(pr, 0, sizeof *pr);
  pr->t = t;
  pr->p = p;
  pr->cap = GT_NPY_STAGE_BYTES;
  if (p->itemsize > pr->cap) {
    if (p->itemsize > SIZE_MAX / 2) return gt_fail(err, "string too long");
    pr->cap = (size_t)p->itemsize;
  }
  void *b = NULL;
  if (posix_memalign(&b, 64, pr->cap) != 0)
    return gt_fail(err, "out of memory");
  pr->buf = b;
  if (p->str_kind) {
    str_iter_init(&pr->it, t);
    return gt_storage_ready(t->storage, err);
  }
  int64_t numel = (int64_t)p->numel;
  pr->outer = numel > 0;
  if (numel == 0 || p->nbytes <= pr->cap) {
    pr->k = -1;
    return GT_OK;
  }
  int64_t slice = numel;
  int k = 0;
  while (k < t->ndim) {
    slice /= t->shape[k];
    if ((uint64_t)slice * p->itemsize <= pr->cap) break;
    k++;
  }
  pr->k = k;
  pr->slice = slice;
  pr->chunk = (int64_t)(pr->cap / ((uint64_t)slice * p->itemsize));
  pr->outer = 1;
  for (int d = 0; d < k; d++) pr->outer *= t->shape[d];
  return GT_OK;
}

static void prod_free(producer *pr) {
  free(pr->buf);
  pr->buf = NULL;
}

/* The piece at outer index o, indices [i, i + len) of dim k. */
static void piece_view(const gt_tensor *t, int k, int64_t o, int64_t i,
                       int64_t len, gt_tensor *s) {
  int64_t esz = (int64_t)gt_dtype_size(t->sdtype);
  *s = *t;
  for (int d = k - 1; d >= 0; d--) {
    s->offset += (o % t->shape[d]) * t->strides[d] * esz;
    o /= t->shape[d];
  }
  s->offset += i * t->strides[k] * esz;
  s->ndim = t->ndim - k;
  memmove(s->shape, t->shape + k, (size_t)s->ndim * sizeof s->shape[0]);
  memmove(s->strides, t->strides + k, (size_t)s->ndim * sizeof s->strides[0]);
  s->shape[0] = len;
}

/* One item of a string element at o (itemsize bytes, NUL padded). */
static void encode_item(const producer *pr, const gt_str *e, unsigned char *o) {
  size_t w = (size_t)pr->p->itemsize;
  memset(o, 0, w);
  if (pr->p->str_kind == 'S') {
    memcpy(o, e->p, e->n);
    return;
  }
  const unsigned char *s = (const unsigned char *)e->p;
  uint32_t cp;
  for (size_t i = 0, j = 0; i < e->n && gt_utf8_next(s, e->n, &i, &cp) == 0;
       j += 4) {
    o[j] = (unsigned char)cp;
    o[j + 1] = (unsigned char)(cp >> 8);
    o[j + 2] = (unsigned char)(cp >> 16);
  }
}

/* Fill pr->buf with the next piece; *n = 0 at the end. */
static int prod_next(producer *pr, size_t *n, gt_err *err) {
  const gt_tensor *t = pr->t;
  *n = 0;
  if (pr->p->str_kind) {
    gt_str e;
    size_t w = (size_t)pr->p->itemsize;
    while (pr->cap - *n >= w && str_next(&pr->it, &e)) {
      encode_item(pr, &e, pr->buf + *n);
      *n += w;
    }
    return GT_OK;
  }
  if (pr->o == pr->outer) return GT_OK;
  if (pr->k < 0) {
    pr->o = pr->outer;
    *n = (size_t)pr->p->nbytes;
    return gt_copy_into(t, t->dtype, pr->buf, err);
  }
  gt_tensor s;
  int64_t len = t->shape[pr->k] - pr->i;
  if (len > pr->chunk) len = pr->chunk;
  piece_view(t, pr->k, pr->o, pr->i, len, &s);
  *n = (size_t)((uint64_t)(len * pr->slice) * pr->p->itemsize);
  pr->i += len;
  if (pr->i == t->shape[pr->k]) {
    pr->i = 0;
    pr->o++;
  }
  return gt_copy_into(&s, t->dtype, pr->buf, err);
}

gt_npy_producer *gt_npy_producer_new(const gt_tensor *t, const gt_npy_plan *p,
                                     gt_err *err) {
  producer *pr = malloc(sizeof *pr);
  if (!pr) return gt_fail(err, "out of memory"), NULL;
  if (prod_init(pr, t, p, err) != GT_OK) {
    prod_free(pr);
    free(pr);
    return NULL;
  }
  return pr;
}

int gt_npy_producer_next(gt_npy_producer *pr, const unsigned char **piece,
                         size_t *n, gt_err *err) {
  *piece = pr->buf;
  return prod_next(pr, n, err);
}

void gt_npy_producer_free(gt_npy_producer *pr) {
  if (!pr) return;
  prod_free(pr);
  free(pr);
}

static int write_strings(gt_out *o, const gt_tensor *t, const gt_npy_plan *p,
                         gt_err *err) {
  producer pr;
  size_t n;
  int rc = prod_init(&pr, t, p, err);
  while (rc == GT_OK && (rc = prod_next(&pr, &n, err)) == GT_OK && n > 0)
    rc = gt_out_write(o, pr.buf, n, err);
  prod_free(&pr);
  return rc;
}

int gt_npy_write(const char *path, const gt_save *s, gt_err *err) {
  if (s->n != 1)
    return gt_fail(err, "a .npy file holds exactly one tensor, not %zu "
                        "(write an .npz for several)", s->n);
  const gt_tensor *t = &s->entries[0].t;
  gt_npy_plan *p = malloc(sizeof *p);
  if (!p) return gt_fail(err, "out of memory");
  if (gt_npy_plan_tensor(t, p, err) != GT_OK) {
    free(p);
    return gt_wrap(err, "tensor \"%.200s\"", s->entries[0].name);
  }
  gt_out o;
  if (gt_out_check_inputs(path, s->entries, s->n, err) != GT_OK ||
      gt_out_open(&o, path, s, err) != GT_OK) {
    free(p);
    return GT_ERR;
  }
  int rc = gt_out_write(&o, p->header, p->hlen, err);
  if (rc == GT_OK)
    rc = p->str_kind ? write_strings(&o, t, p, err) : gt_out_tensor(&o, t, err);
  free(p);
  if (rc != GT_OK) {
    gt_out_abort(&o);
    return gt_wrap(err, "tensor \"%.200s\"", s->entries[0].name);
  }
  return gt_out_commit(&o, err);
}
