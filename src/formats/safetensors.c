/* safetensors.c: reader and writer for the safetensors format.
 *
 * Layout (docs/formats/safetensors.md#layout): u64 N (little-endian), N bytes of UTF-8
 * JSON (an object; padded with spaces), then the data buffer. The header
 * maps each tensor name to {"dtype", "shape", "data_offsets": [BEGIN, END]}
 * (byte offsets into the data buffer, END exclusive) and may hold one
 * "__metadata__" object of string values.
 *
 * Reading validates what the reference reader (safetensors/src/tensor.rs,
 * read_metadata + Metadata::validate) validates, and a little more: the
 * header is at most 100 000 000 bytes, valid UTF-8 and valid JSON; every
 * number is a plain non-negative integer literal below 2^53 (cJSON holds
 * numbers as doubles, so a pre-pass over the text records which number
 * tokens were integer literals); duplicate names are refused; sorted by
 * offsets the tensors tile the data buffer exactly (first BEGIN 0, each
 * BEGIN the previous END, last END the buffer length) and END - BEGIN is
 * numel * itemsize computed with overflow checks. No byte of data is read:
 * tensors are region views on the mapping, or lazy copies when old writers
 * (unpadded headers) left the data misaligned for its element type.
 *
 * Writing follows the reference writer (tensor.rs `prepare`): tensors sorted
 * by dtype (descending, in the order of the Dtype enum, which is also
 * ascending alignment) then by name bytewise; offsets assigned contiguously
 * in that order; the header is serde_json's compact form with
 * "__metadata__" first and each tensor's keys in the order dtype, shape,
 * data_offsets; padded with spaces to a multiple of 8. */
#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileout.h"

#define MAX_HEADER 100000000ULL
#define MAX_EXACT (1ULL << 53) /* doubles hold every integer below this */
#define NAME_SHOWN 200         /* bytes of a tensor name quoted in errors */

/* The safetensors Dtype enum in declaration order: the writer sorts by this
 * order, descending. gt < 0: a dtype graft has no element type for. */
static const struct {
  const char *name;
  int gt;
} st_dtypes[] = {
  {"BOOL", GT_BOOL},      {"F4", -1},           {"F6_E2M3", -1},
  {"F6_E3M2", -1},        {"U8", GT_U8},        {"I8", GT_I8},
  {"F8_E5M2", GT_F8E5M2}, {"F8_E4M3", GT_F8E4M3FN}, {"F8_E8M0", -1},
  {"F8_E4M3FNUZ", -1},    {"F8_E5M2FNUZ", -1},  {"I16", GT_I16},
  {"U16", GT_U16},        {"F16", GT_F16},      {"BF16", GT_BF16},
  {"I32", GT_I32},        {"U32", GT_U32},      {"F32", GT_F32},
  {"C64", GT_C64},        {"F64", GT_F64},      {"I64", GT_I64},
  {"U64", GT_U64},
};
#define N_ST_DTYPES (int)(sizeof st_dtypes / sizeof st_dtypes[0])

/* Index in st_dtypes of graft dtype dt, or -1. */
static int st_rank(gt_dtype dt) {
  for (int i = 0; i < N_ST_DTYPES; i++)
    if (st_dtypes[i].gt == (int)dt) return i;
  return -1;
}

static const char *st_name(gt_dtype dt) {
  int r = st_rank(dt);
  return r < 0 ? "?" : st_dtypes[r].name;
}

/* ---- text checks ------------------------------------------------------ */

/* Index of the first byte that is not part of valid UTF-8 (RFC 3629: no
 * overlongs, no surrogates, nothing above U+10FFFF), or n. */
static size_t utf8_bad_at(const unsigned char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = p[i];
    size_t k;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
      i++;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      k = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      k = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      k = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (n - i <= k) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t j = 2; j <= k; j++)
      if (p[i + j] < 0x80 || p[i + j] > 0xBF) return i;
    i += k + 1;
  }
  return n;
}

static int is_json_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The bytes cJSON gathers into one number token. */
static int is_num_char(unsigned char c) {
  return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.' ||
         c == 'e' || c == 'E';
}

/* One bit per number token of the header, in document order: set when the
 * token is a plain non-negative integer literal (no sign, fraction,
 * exponent or leading zero). */
typedef struct numflags {
  unsigned char *bits;
  size_t n, cap;
} numflags;

static int numflags_push(numflags *f, int plain) {
  if (f->n == f->cap * 8) {
    size_t cap = f->cap ? f->cap * 2 : 64;
    unsigned char *b = realloc(f->bits, cap);
    if (!b) return GT_ERR;
    memset(b + f->cap, 0, cap - f->cap);
    f->bits = b;
    f->cap = cap;
  }
  if (plain) f->bits[f->n / 8] |= (unsigned char)(1u << (f->n % 8));
  f->n++;
  return GT_OK;
}

static int numflags_get(const numflags *f, size_t i) {
  return i < f->n && (f->bits[i / 8] >> (i % 8)) & 1;
}

/* Lexical pass over the header text (already valid UTF-8). Refuses what
 * serde_json refuses and cJSON would let through: a first token other than
 * '{', control characters outside JSON whitespace, raw control characters
 * in strings; also \u0000 (names are C strings here). Records number tokens
 * (a token is the run of [0-9+-.eE] cJSON reads as one number). */
static int lex_header(const unsigned char *p, size_t n, numflags *f,
                      gt_err *err) {
  size_t i = 0;
  while (i < n && is_json_space(p[i])) i++;
  if (i == n || p[i] != '{')
    return gt_fail(err, "header is not a JSON object (it must start with '{')");
  while (i < n) {
    unsigned char c = p[i];
    if (c == '"') {
      for (i++; i < n && p[i] != '"'; i++) {
        if (p[i] < 0x20)
          return gt_fail(err, "header byte %zu: control character in a string",
                         i);
        if (p[i] == '\\' && i + 1 < n) {
          if (p[i + 1] == 'u' && n - i >= 6 && memcmp(p + i + 2, "0000", 4) == 0)
            return gt_fail(err, "header byte %zu: \\u0000 in a string is not "
                           "supported", i);
          i++;
        }
      }
      i++;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      size_t s = i;
      int plain = 1;
      while (i < n && is_num_char(p[i])) {
        if (p[i] < '0' || p[i] > '9') plain = 0;
        i++;
      }
      if (p[s] == '0' && i - s > 1) plain = 0;
      if (numflags_push(f, plain) != GT_OK) return gt_fail(err, "out of memory");
    } else {
      if (c < 0x20 && !is_json_space(c))
        return gt_fail(err, "header byte %zu: control character 0x%02x", i, c);
      i++;
    }
  }
  return GT_OK;
}

/* Stores each number node's flag in its valueint (unused otherwise here),
 * visiting nodes in document order as lex_header met them. */
static void mark_numbers(cJSON *node, const numflags *f, size_t *k) {
  for (; node; node = node->next) {
    if (cJSON_IsNumber(node)) node->valueint = numflags_get(f, (*k)++);
    if (node->child) mark_numbers(node->child, f, k);
  }
}

/* A JSON number that is a non-negative integer literal below 2^53. */
static int get_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v) || v->valueint != 1 || !(v->valuedouble >= 0) ||
      v->valuedouble >= (double)MAX_EXACT)
    return GT_ERR;
  *out = (uint64_t)v->valuedouble;
  return GT_OK;
}

/* ---- reading ----------------------------------------------------------- */

/* One tensor entry of the header, validated except for its placement. */
typedef struct st_info {
  const char *name;       /* owned by the cJSON tree */
  size_t index;           /* position in the header */
  gt_dtype dtype;
  const char *stname;     /* the header's dtype string */
  const cJSON *shape;     /* array of checked integers */
  int ndim;
  uint64_t nbytes;        /* numel * itemsize */
  uint64_t begin, end;
} st_info;

static int name_fail(gt_err *err, const char *name) {
  int len = (int)strlen(name);
  return gt_wrap(err, "tensor \"%.*s%s\"", len > NAME_SHOWN ? NAME_SHOWN : len,
                 name, len > NAME_SHOWN ? "..." : "");
}

/* "{2,3}", elided with "..." when it does not fit. */
static void shape_str(const cJSON *shape, char *buf, size_t size) {
  size_t n = 0;
  buf[n++] = '{';
  for (const cJSON *d = shape ? shape->child : NULL; d; d = d->next) {
    char dim[24];
    int k = snprintf(dim, sizeof dim, "%s%.0f", d == shape->child ? "" : ",",
                     d->valuedouble);
    if (n + (size_t)k + 5 > size) {
      memcpy(buf + n, "...", 3);
      n += 3;
      break;
    }
    memcpy(buf + n, dim, (size_t)k);
    n += (size_t)k;
  }
  buf[n++] = '}';
  buf[n] = '\0';
}

static int parse_dtype(const cJSON *v, st_info *t, gt_err *err) {
  if (!cJSON_IsString(v)) return gt_fail(err, "\"dtype\" must be a string");
  for (int i = 0; i < N_ST_DTYPES; i++) {
    if (strcmp(v->valuestring, st_dtypes[i].name) != 0) continue;
    if (st_dtypes[i].gt < 0)
      return gt_fail(err, "dtype %s is not supported by graft", st_dtypes[i].name);
    t->dtype = (gt_dtype)st_dtypes[i].gt;
    t->stname = st_dtypes[i].name;
    return GT_OK;
  }
  return gt_fail(err, "unknown dtype \"%.40s\"", v->valuestring);
}

/* Checks the dimensions and computes nbytes. Overflow rules: the running
 * product left to right must fit 64 bits (as the reference's checked fold),
 * and so must the product of the nonzero dimensions (so strides of an empty
 * tensor fit too). */
static int parse_shape(const cJSON *v, st_info *t, gt_err *err) {
  if (!cJSON_IsArray(v)) return gt_fail(err, "\"shape\" must be an array");
  uint64_t numel = 1, span = 1, dim;
  int ndim = 0;
  for (const cJSON *d = v->child; d; d = d->next, ndim++) {
    if (ndim == GT_MAXDIM)
      return gt_fail(err, "shape has more than %d dimensions", GT_MAXDIM);
    if (get_uint(d, &dim) != GT_OK)
      return gt_fail(err, "shape: dimension %d is not a non-negative integer "
                     "below 2^53", ndim + 1);
  }
  char s[96];
  for (const cJSON *d = v->child; d; d = d->next) {
    get_uint(d, &dim);
    if (gt_mul_u64(numel, dim, (unsigned long long *)&numel) ||
        (dim && gt_mul_u64(span, dim, (unsigned long long *)&span)) ||
        span > INT64_MAX) {
      shape_str(v, s, sizeof s);
      return gt_fail(err, "shape %s: element count overflows", s);
    }
  }
  if (gt_mul_u64(numel, gt_dtype_size(t->dtype), (unsigned long long *)&t->nbytes)) {
    shape_str(v, s, sizeof s);
    return gt_fail(err, "shape %s of %s: byte size overflows", s, t->stname);
  }
  t->shape = v;
  t->ndim = ndim;
  return GT_OK;
}

static int parse_offsets(const cJSON *v, st_info *t, gt_err *err) {
  const cJSON *b = cJSON_IsArray(v) ? v->child : NULL;
  const cJSON *e = b ? b->next : NULL;
  if (!e || e->next || get_uint(b, &t->begin) != GT_OK ||
      get_uint(e, &t->end) != GT_OK)
    return gt_fail(err, "\"data_offsets\" must be [BEGIN, END], two "
                   "non-negative integers below 2^53");
  if (t->end < t->begin)
    return gt_fail(err, "data_offsets [%llu, %llu] end before they begin",
                   (unsigned long long)t->begin, (unsigned long long)t->end);
  return GT_OK;
}

/* Fields are found by name; unknown fields are ignored (as serde does) but
 * a repeated known field is an error (as serde's is). */
static int parse_info(const cJSON *obj, st_info *t, gt_err *err) {
  static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
  const cJSON *f[3] = {NULL, NULL, NULL};
  if (!cJSON_IsObject(obj))
    return gt_fail(err, "entry must be an object with dtype, shape and "
                   "data_offsets");
  for (const cJSON *c = obj->child; c; c = c->next)
    for (int k = 0; k < 3; k++)
      if (strcmp(c->string, keys[k]) == 0) {
        if (f[k]) return gt_fail(err, "\"%s\" appears twice", keys[k]);
        f[k] = c;
      }
  for (int k = 0; k < 3; k++)
    if (!f[k]) return gt_fail(err, "\"%s\" is missing", keys[k]);
  if (parse_dtype(f[0], t, err) != GT_OK || parse_shape(f[1], t, err) != GT_OK ||
      parse_offsets(f[2], t, err) != GT_OK)
    return GT_ERR;
  return GT_OK;
}

static int cmp_cstr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first key of obj that appears twice, or NULL (sorting: headers may
 * hold very many keys). */
static const char *repeated_key(const cJSON *obj, int *oom) {
  size_t n = 0;
  const char *dup = NULL;
  *oom = 0;
  for (const cJSON *c = obj->child; c; c = c->next) n++;
  if (n < 2) return NULL;
  const char **keys = malloc(n * sizeof *keys);
  if (!keys) {
    *oom = 1;
    return NULL;
  }
  n = 0;
  for (const cJSON *c = obj->child; c; c = c->next) keys[n++] = c->string;
  qsort(keys, n, sizeof *keys, cmp_cstr);
  for (size_t i = 1; i < n && !dup; i++)
    if (strcmp(keys[i - 1], keys[i]) == 0) dup = keys[i];
  free(keys);
  return dup;
}

/* "__metadata__": an object of strings (null means absent, as serde's
 * Option). Becomes meta = MAP {"__metadata__" -> MAP}, in header order. */
static int parse_metadata(const cJSON *v, gt_model *m, gt_err *err) {
  int oom;
  if (cJSON_IsNull(v)) return GT_OK;
  if (!cJSON_IsObject(v))
    return gt_fail(err, "__metadata__ must be an object of strings");
  const char *dup = repeated_key(v, &oom);
  if (oom) return gt_fail(err, "out of memory");
  if (dup)
    return gt_fail(err, "__metadata__ key \"%.*s\" appears twice", NAME_SHOWN,
                   dup);
  gt_value *md = gt_value_new(GT_V_MAP);
  if (!md) return gt_fail(err, "out of memory");
  for (const cJSON *c = v->child; c; c = c->next) {
    if (!cJSON_IsString(c)) {
      gt_value_free(md);
      return gt_fail(err, "__metadata__ value of \"%.*s\" is not a string "
                     "(safetensors metadata holds strings only)", NAME_SHOWN,
                     c->string);
    }
    if (gt_value_setk(md, c->string,
                      gt_value_str(c->valuestring, strlen(c->valuestring))) != GT_OK) {
      gt_value_free(md);
      return gt_fail(err, "out of memory");
    }
  }
  if (!m->meta) m->meta = gt_value_new(GT_V_MAP);
  if (!m->meta || gt_value_setk(m->meta, "__metadata__", md) != GT_OK)
    return gt_fail(err, "out of memory");
  return GT_OK;
}

/* Offset order; header order breaks ties (several empty tensors may share
 * one offset), so the result is deterministic. */
static int cmp_offsets(const void *a, const void *b) {
  const st_info *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->index < y->index ? -1 : x->index > y->index;
}

/* ts sorted by offsets must tile [0, buflen) exactly. */
static int check_placement(const st_info *ts, size_t n, uint64_t buflen,
                           gt_err *err) {
  uint64_t at = 0;
  for (size_t i = 0; i < n; i++) {
    const st_info *t = &ts[i];
    if (t->begin > at) {
      gt_fail(err, "data_offsets [%llu, %llu] leave bytes [%llu, %llu) of the "
              "data unused (tensors must be contiguous)",
              (unsigned long long)t->begin, (unsigned long long)t->end,
              (unsigned long long)at, (unsigned long long)t->begin);
      return name_fail(err, t->name);
    }
    if (t->begin < at) {
      int len = (int)strlen(ts[i - 1].name);
      gt_fail(err, "data_offsets [%llu, %llu] overlap tensor \"%.*s%s\", "
              "which ends at %llu", (unsigned long long)t->begin,
              (unsigned long long)t->end, len > NAME_SHOWN ? NAME_SHOWN : len,
              ts[i - 1].name, len > NAME_SHOWN ? "..." : "",
              (unsigned long long)at);
      return name_fail(err, t->name);
    }
    if (t->end > buflen) {
      gt_fail(err, "data_offsets [%llu, %llu] run past the end of the file "
              "(%llu bytes of data follow the header; truncated?)",
              (unsigned long long)t->begin, (unsigned long long)t->end,
              (unsigned long long)buflen);
      return name_fail(err, t->name);
    }
    if (t->end - t->begin != t->nbytes) {
      char s[96];
      shape_str(t->shape, s, sizeof s);
      gt_fail(err, "data_offsets [%llu, %llu] hold %llu bytes but shape %s of "
              "%s needs %llu", (unsigned long long)t->begin,
              (unsigned long long)t->end,
              (unsigned long long)(t->end - t->begin), s, t->stname,
              (unsigned long long)t->nbytes);
      return name_fail(err, t->name);
    }
    at = t->end;
  }
  if (at != buflen)
    return gt_fail(err, "%llu bytes after the last tensor's data (which ends "
                   "at %llu of %llu); the data must end the file",
                   (unsigned long long)(buflen - at), (unsigned long long)at,
                   (unsigned long long)buflen);
  return GT_OK;
}

static int add_tensor(gt_storage *file, uint64_t base, const st_info *t,
                      gt_model *m, gt_err *err) {
  int64_t shape[GT_MAXDIM];
  int k = 0;
  for (const cJSON *d = t->shape->child; d; d = d->next)
    shape[k++] = (int64_t)d->valuedouble;
  gt_storage *s = gt_storage_aligned(file, base + t->begin, t->nbytes,
                                    gt_dtype_size(t->dtype), err);
  if (!s) return name_fail(err, t->name);
  gt_tensor view;
  memset(&view, 0, sizeof view);
  int rc = gt_tensor_make(&view, s, t->dtype, t->ndim, shape, 0, err);
  gt_storage_release(s);
  if (rc != GT_OK) return name_fail(err, t->name);
  if (gt_model_add(m, t->name, strlen(t->name), &view, err) != GT_OK)
    return name_fail(err, t->name);
  return GT_OK;
}

/* Reads N and checks it against the file: returns the header length. */
static int header_length(const gt_storage *file, uint64_t *n, gt_err *err) {
  if (file->size < 8)
    return gt_fail(err, "file is %zu bytes, too short for a safetensors header "
                   "(at least 8)", file->size);
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | file->data[i];
  if (v > MAX_HEADER)
    return gt_fail(err, "header length %llu exceeds the %llu-byte limit",
                   (unsigned long long)v, MAX_HEADER);
  if (v > file->size - 8)
    return gt_fail(err, "header length %llu runs past the end of the file "
                   "(%zu bytes; truncated?)", (unsigned long long)v, file->size);
  *n = v;
  return GT_OK;
}

/* Parses the header text into a cJSON tree with number flags marked. */
static cJSON *parse_json(const unsigned char *p, size_t n, gt_err *err) {
  size_t bad = utf8_bad_at(p, n);
  if (bad != n) {
    gt_fail(err, "header is not valid UTF-8 (byte %zu)", bad);
    return NULL;
  }
  numflags f = {0};
  if (lex_header(p, n, &f, err) != GT_OK) {
    free(f.bits);
    return NULL;
  }
  /* cJSON gets its own NUL-terminated copy: it must never look past n. */
  char *text = malloc(n + 1);
  if (!text) {
    free(f.bits);
    gt_fail(err, "out of memory");
    return NULL;
  }
  memcpy(text, p, n);
  text[n] = '\0';
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
  size_t at = end ? (size_t)(end - text) : 0;
  if (!root) {
    gt_fail(err, "header is not valid JSON (near byte %zu)", at);
  } else {
    while (at < n && is_json_space(p[at])) at++;
    if (at < n) {
      gt_fail(err, "header has bytes after the JSON object (at byte %zu)", at);
      cJSON_Delete(root);
      root = NULL;
    }
  }
  if (root) {
    size_t k = 0;
    mark_numbers(root, &f, &k);
    if (k != f.n) {
      gt_fail(err, "header: inconsistent number tokens");
      cJSON_Delete(root);
      root = NULL;
    }
  }
  free(text);
  free(f.bits);
  return root;
}

/* Collects and validates every tensor entry (and the metadata) of root. */
static int parse_entries(const cJSON *root, gt_model *m, st_info **out,
                         size_t *count, gt_err *err) {
  size_t n = 0, i = 0;
  int oom;
  const char *dup = repeated_key(root, &oom);
  if (oom) return gt_fail(err, "out of memory");
  if (dup && strcmp(dup, "__metadata__") == 0)
    return gt_fail(err, "__metadata__ appears twice in the header");
  if (dup) {
    gt_fail(err, "the name appears twice in the header");
    return name_fail(err, dup);
  }
  for (const cJSON *c = root->child; c; c = c->next) n++;
  st_info *ts = calloc(n ? n : 1, sizeof *ts);
  if (!ts) return gt_fail(err, "out of memory");
  for (const cJSON *c = root->child; c; c = c->next) {
    int rc;
    if (strcmp(c->string, "__metadata__") == 0) {
      rc = parse_metadata(c, m, err);
    } else {
      ts[i].name = c->string;
      ts[i].index = i;
      rc = parse_info(c, &ts[i], err);
      if (rc != GT_OK) name_fail(err, c->string);
      i++;
    }
    if (rc != GT_OK) {
      free(ts);
      return GT_ERR;
    }
  }
  *out = ts;
  *count = i;
  return GT_OK;
}

/* Validates everything, then adds the tensors in offset order. */
static int read_model(gt_storage *file, gt_model *m, gt_err *err) {
  uint64_t hlen = 0;
  if (gt_storage_ready(file, err) != GT_OK || header_length(file, &hlen, err) != GT_OK)
    return GT_ERR;
  cJSON *root = parse_json(file->data + 8, (size_t)hlen, err);
  if (!root) return GT_ERR;
  st_info *ts = NULL;
  size_t n = 0;
  int rc = parse_entries(root, m, &ts, &n, err);
  if (rc == GT_OK) {
    qsort(ts, n, sizeof *ts, cmp_offsets);
    rc = check_placement(ts, n, file->size - 8 - hlen, err);
  }
  for (size_t i = 0; rc == GT_OK && i < n; i++)
    rc = add_tensor(file, 8 + hlen, &ts[i], m, err);
  free(ts);
  cJSON_Delete(root);
  return rc;
}

int gt_safetensors_read(gt_storage *file, gt_model *m, gt_err *err) {
  if (read_model(file, m, err) != GT_OK) {
    gt_model_free(m);
    return GT_ERR;
  }
  m->format = "safetensors";
  return GT_OK;
}

/* ---- writing ----------------------------------------------------------- */

/* A growing byte buffer for the header; oom sticks once set. */
typedef struct jbuf {
  char *p;
  size_t n, cap;
  int oom;
} jbuf;

static void jput(jbuf *b, const char *s, size_t n) {
  if (b->oom || n == 0) return;
  if (n > b->cap - b->n) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->n < n) {
      if (cap > SIZE_MAX / 2) {
        b->oom = 1;
        return;
      }
      cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
}

static void jputs(jbuf *b, const char *s) { jput(b, s, strlen(s)); }

static void jput_u64(jbuf *b, uint64_t v) {
  char s[24];
  int k = snprintf(s, sizeof s, "%llu", (unsigned long long)v);
  jput(b, s, (size_t)k);
}

/* A JSON string as serde_json (and Python's json with ensure_ascii=False)
 * writes it: only '"', '\\' and control characters are escaped; \b \t \n
 * \f \r by name, the others as \u00xx in lowercase hex. */
static void jput_str(jbuf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  jput(b, "\"", 1);
  size_t run = 0; /* start of the bytes not yet copied */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char e[6] = {'\\', 0, 0, 0, 0, 0};
    size_t k = 2;
    switch (c) {
      case '"': e[1] = '"'; break;
      case '\\': e[1] = '\\'; break;
      case '\b': e[1] = 'b'; break;
      case '\t': e[1] = 't'; break;
      case '\n': e[1] = 'n'; break;
      case '\f': e[1] = 'f'; break;
      case '\r': e[1] = 'r'; break;
      default:
        if (c >= 0x20) continue;
        memcpy(e + 1, "u00", 3);
        e[4] = hex[c >> 4];
        e[5] = hex[c & 15];
        k = 6;
    }
    jput(b, s + run, i - run);
    jput(b, e, k);
    run = i + 1;
  }
  jput(b, s + run, n - run);
  jput(b, "\"", 1);
}

typedef struct wentry {
  const gt_entry *e;
  int rank;
  uint64_t nbytes;
} wentry;

/* Dtype descending in enum order, then name ascending bytewise. */
static int cmp_write(const void *a, const void *b) {
  const wentry *x = a, *y = b;
  if (x->rank != y->rank) return x->rank > y->rank ? -1 : 1;
  return strcmp(x->e->name, y->e->name);
}

static int check_entry(const gt_entry *e, wentry *w, gt_err *err) {
  size_t len = strlen(e->name);
  if (utf8_bad_at((const unsigned char *)e->name, len) != len)
    return gt_fail(err, "tensor names must be valid UTF-8 in safetensors");
  if (strcmp(e->name, "__metadata__") == 0)
    return gt_fail(err, "\"__metadata__\" is reserved for metadata in "
                   "safetensors and cannot name a tensor");
  if (e->t.dtype == GT_STRING)
    return gt_fail(err, "string tensors cannot be stored in safetensors");
  w->rank = st_rank(e->t.dtype);
  if (w->rank < 0)
    return gt_fail(err, "dtype %s has no safetensors equivalent",
                   gt_dtype_name(e->t.dtype));
  w->e = e;
  w->nbytes = (uint64_t)gt_tensor_nbytes(&e->t);
  return GT_OK;
}

typedef struct kv {
  const gt_value *k, *v;
} kv;

static int cmp_str(const gt_value *x, const gt_value *y) {
  size_t n = x->len < y->len ? x->len : y->len;
  int c = n ? memcmp(x->str, y->str, n) : 0;
  if (c) return c;
  return x->len < y->len ? -1 : x->len > y->len;
}

static int cmp_kv(const void *a, const void *b) {
  return cmp_str(((const kv *)a)->k, ((const kv *)b)->k);
}

/* Metadata must be a MAP of strings to strings, all valid UTF-8. The
 * reference writes it from a Rust HashMap, in no fixed order; graft sorts
 * the keys bytewise so output is reproducible. *out: the pairs, sorted. */
static int sorted_metadata(const gt_value *md, kv **out, gt_err *err) {
  *out = NULL;
  if (!md) return GT_OK;
  if (md->kind != GT_V_MAP)
    return gt_fail(err, "safetensors metadata must be a table of strings");
  kv *pairs = malloc((md->n ? md->n : 1) * sizeof *pairs);
  if (!pairs) return gt_fail(err, "out of memory");
  for (size_t i = 0; i < md->n; i++) {
    const gt_value *k = md->keys[i], *v = md->items[i];
    if (k->kind != GT_V_STR || v->kind != GT_V_STR) {
      free(pairs);
      if (k->kind != GT_V_STR)
        return gt_fail(err, "safetensors metadata keys must be strings");
      return gt_fail(err, "safetensors metadata value of \"%.*s\" must be a "
                     "string", NAME_SHOWN, k->str);
    }
    if (utf8_bad_at((const unsigned char *)k->str, k->len) != k->len ||
        utf8_bad_at((const unsigned char *)v->str, v->len) != v->len) {
      free(pairs);
      return gt_fail(err, "safetensors metadata must be valid UTF-8");
    }
    pairs[i].k = k;
    pairs[i].v = v;
  }
  qsort(pairs, md->n, sizeof *pairs, cmp_kv);
  for (size_t i = 1; i < md->n; i++)
    if (cmp_str(pairs[i - 1].k, pairs[i].k) == 0) {
      gt_fail(err, "metadata key \"%.*s\" appears twice", NAME_SHOWN,
              pairs[i].k->str);
      free(pairs);
      return GT_ERR;
    }
  *out = pairs;
  return GT_OK;
}

static void put_metadata(jbuf *b, size_t n, const kv *pairs) {
  jputs(b, "\"__metadata__\":{");
  for (size_t i = 0; i < n; i++) {
    if (i) jput(b, ",", 1);
    jput_str(b, pairs[i].k->str, pairs[i].k->len);
    jput(b, ":", 1);
    jput_str(b, pairs[i].v->str, pairs[i].v->len);
  }
  jput(b, "}", 1);
}

static void put_tensor(jbuf *b, const wentry *w, uint64_t begin, uint64_t end) {
  jput_str(b, w->e->name, strlen(w->e->name));
  jputs(b, ":{\"dtype\":\"");
  jputs(b, st_name(w->e->t.dtype));
  jputs(b, "\",\"shape\":[");
  for (int d = 0; d < w->e->t.ndim; d++) {
    if (d) jput(b, ",", 1);
    jput_u64(b, (uint64_t)w->e->t.shape[d]);
  }
  jputs(b, "],\"data_offsets\":[");
  jput_u64(b, begin);
  jput(b, ",", 1);
  jput_u64(b, end);
  jputs(b, "]}");
}

/* The complete header: u64 N then N bytes of JSON padded with spaces to a
 * multiple of 8. ws is in write order. */
static int build_header(const wentry *ws, size_t n, const gt_value *md,
                        const kv *pairs, jbuf *b, gt_err *err) {
  uint64_t at = 0;
  jput(b, "\0\0\0\0\0\0\0\0{", 9);
  if (md) put_metadata(b, md->n, pairs);
  for (size_t i = 0; i < n; i++) {
    uint64_t end;
    if (gt_add_u64(at, ws[i].nbytes, (unsigned long long *)&end))
      return gt_fail(err, "total data size overflows");
    if (md || i) jput(b, ",", 1);
    put_tensor(b, &ws[i], at, end);
    at = end;
  }
  jput(b, "}", 1);
  while ((b->n - 8) % 8) jput(b, " ", 1);
  if (b->oom) return gt_fail(err, "out of memory building the header");
  uint64_t len = b->n - 8;
  for (int i = 0; i < 8; i++) b->p[i] = (char)(len >> (8 * i));
  return GT_OK;
}

/* Names must be unique (a C caller could pass one twice). */
static int check_unique(const gt_save *s, gt_err *err) {
  if (s->n < 2) return GT_OK;
  const char **names = malloc(s->n * sizeof *names);
  if (!names) return gt_fail(err, "out of memory");
  for (size_t i = 0; i < s->n; i++) names[i] = s->entries[i].name;
  qsort(names, s->n, sizeof *names, cmp_cstr);
  for (size_t i = 1; i < s->n; i++)
    if (strcmp(names[i - 1], names[i]) == 0) {
      gt_fail(err, "two tensors have this name");
      name_fail(err, names[i]);
      free(names);
      return GT_ERR;
    }
  free(names);
  return GT_OK;
}

/* Validates the entries and returns them in write order. */
static int plan(const gt_save *s, wentry **out, gt_err *err) {
  if (check_unique(s, err) != GT_OK) return GT_ERR;
  wentry *ws = calloc(s->n ? s->n : 1, sizeof *ws);
  if (!ws) return gt_fail(err, "out of memory");
  for (size_t i = 0; i < s->n; i++)
    if (check_entry(&s->entries[i], &ws[i], err) != GT_OK) {
      free(ws);
      return name_fail(err, s->entries[i].name);
    }
  qsort(ws, s->n, sizeof *ws, cmp_write);
  *out = ws;
  return GT_OK;
}

/* Writes the whole file into o's temporary file (opened here) without
 * publishing it; on failure o is aborted (the temporary file removed). */
static int write_body(gt_out *o, const char *path, const gt_save *s,
                      const wentry *ws, const jbuf *hdr, gt_err *err) {
  if (gt_out_open(o, path, s, err) != GT_OK) return GT_ERR;
  int rc = gt_out_write(o, hdr->p, hdr->n, err);
  for (size_t i = 0; rc == GT_OK && i < s->n; i++)
    if ((rc = gt_out_tensor(o, &ws[i].e->t, err)) != GT_OK)
      name_fail(err, ws[i].e->name);
  if (rc != GT_OK) gt_out_abort(o);
  return rc;
}

/* One safetensors file written into *o, left finished-to-be (unpublished):
 * validation, header, then the bytes. */
static int write_unpublished(gt_out *o, const char *path, const gt_save *s,
                             const gt_value *metadata, gt_err *err) {
  wentry *ws = NULL;
  kv *pairs = NULL;
  jbuf hdr = {0};
  int rc = plan(s, &ws, err);
  if (rc == GT_OK) rc = sorted_metadata(metadata, &pairs, err);
  if (rc == GT_OK) rc = build_header(ws, s->n, metadata, pairs, &hdr, err);
  if (rc == GT_OK) rc = gt_out_check_inputs(path, s->entries, s->n, err);
  if (rc == GT_OK) rc = write_body(o, path, s, ws, &hdr, err);
  free(ws);
  free(pairs);
  free(hdr.p);
  return rc;
}

int gt_safetensors_write(const char *path, const gt_save *s,
                         const gt_value *metadata, gt_err *err) {
  gt_out o;
  if (write_unpublished(&o, path, s, metadata, err) != GT_OK) return GT_ERR;
  return gt_out_commit(&o, err);
}

static uint64_t save_bytes(const gt_save *s) {
  uint64_t total = 0;
  for (size_t i = 0; i < s->n; i++)
    total += (uint64_t)gt_tensor_nbytes(&s->entries[i].t);
  return total;
}

/* The index as the last member of the set, under its temporary name. */
static int write_index(gt_out *o, const char *path, const char *text,
                       size_t len, gt_err *err) {
  if (gt_out_open(o, path, NULL, err) != GT_OK) return GT_ERR;
  if (gt_out_write(o, text, len, err) != GT_OK) {
    gt_out_abort(o);
    return GT_ERR;
  }
  return GT_OK;
}

/* Progress over a whole set: a shard's bytes come after those of the
 * shards before it. */
typedef struct set_progress {
  gt_progress_fn fn;
  void *ctx;
  uint64_t before, total;
} set_progress;

static void set_progress_cb(void *c, uint64_t done, uint64_t shard_total) {
  const set_progress *p = c;
  (void)shard_total;
  p->fn(p->ctx, p->before + done, p->total);
}

int gt_safetensors_write_set(const gt_st_shard *shards, size_t n,
                             const gt_value *metadata, const char *index_path,
                             const char *index, size_t index_len,
                             gt_err *err) {
  if (n == 0) return gt_fail(err, "a sharded set needs at least one shard");
  gt_out *outs = calloc(n + 1, sizeof *outs);
  if (!outs) return gt_fail(err, "out of memory");
  uint64_t total = 0, done = 0;
  for (size_t k = 0; k < n; k++) total += save_bytes(&shards[k].s);
  int rc = GT_OK;
  for (size_t k = 0; k < n && rc == GT_OK; k++) {
    const gt_st_shard *sh = &shards[k];
    set_progress sp = {sh->s.progress, sh->s.progress_ctx, done, total};
    gt_save s = sh->s;
    if (s.progress) {
      s.progress = set_progress_cb;
      s.progress_ctx = &sp;
    }
    rc = write_unpublished(&outs[k], sh->path, &s, metadata, err);
    if (rc != GT_OK) gt_wrap(err, "%s", sh->path);
    done += save_bytes(&sh->s);
  }
  if (rc == GT_OK && write_index(&outs[n], index_path, index, index_len,
                                 err) != GT_OK) {
    gt_wrap(err, "%s", index_path);
    rc = GT_ERR;
  }
  if (rc == GT_OK) {
    /* Members first, the index last and only after the old one is gone:
     * a reader sees the old set, no set, or the new set. Frees outs[*]. */
    rc = gt_out_commit_set(outs, n + 1, err);
    if (rc != GT_OK) gt_wrap(err, "%s", index_path);
  } else {
    for (size_t k = 0; k <= n; k++) gt_out_abort(&outs[k]);
  }
  free(outs);
  return rc;
}
