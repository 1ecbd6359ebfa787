/* hdf5.c: generic HDF5 reader and writer on libhdf5 (see hdf5.h).
 *
 *   1. libhdf5 set-up and its error stack as gt_err messages
 *   2. zero-copy read-only file images
 *   3. HDF5 types <-> graft dtypes
 *   4. attributes -> metadata values
 *   5. datasets -> tensors (views on the image, or lazy reads)
 *   6. the walk over groups
 *   7. the writer
 *
 * libhdf5 (Debian's serial build) is not thread-safe: every call here runs
 * on the thread that called gt_hdf5_read / gt_hdf5_write or materialises a
 * lazy tensor (gt_storage_ready is only called before copy work is split
 * across workers). */
#include "formats/hdf5/hdf5.h"

#include <hdf5.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/copy.h"
#include "io/fileout.h"

#define MAX_DEPTH 64       /* groups nested deeper are refused */
#define SHOWN 160          /* bytes of a path quoted in messages */

/* ------------------------------------------------------------------ */
/* 1. Set-up and errors                                                 */
/* ------------------------------------------------------------------ */

/* Automatic error printing is turned off once, before any other call, so
 * libhdf5 never writes to stderr; failures are read off its error stack. */
static int h5_ready(gt_err *err) {
  static int done;
  if (done) return GT_OK;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (H5open() < 0) return gt_fail(err, "libhdf5 failed to initialise");
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  done = 1;
  return GT_OK;
}

typedef struct estack {
  char first[160], last[200];
  int n;
} estack;

static herr_t ewalk(unsigned n, const H5E_error2_t *e, void *ud) {
  estack *s = ud;
  (void)n;
  const char *d = e->desc ? e->desc : "";
  if (s->n == 0) snprintf(s->first, sizeof s->first, "%s", d);
  snprintf(s->last, sizeof s->last, "%s", d);
  s->n++;
  return 0;
}

/* "<what>: <outermost libhdf5 message>: <innermost cause>", and the stack
 * is cleared. */
static int h5_fail(gt_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int h5_fail(gt_err *err, const char *fmt, ...) {
  char what[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  estack s;
  memset(&s, 0, sizeof s);
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, ewalk, &s);
  H5Eclear2(H5E_DEFAULT);
  if (s.n == 0) return gt_fail(err, "%s", what);
  if (s.n == 1 || strcmp(s.first, s.last) == 0)
    return gt_fail(err, "%s (libhdf5: %s)", what, s.first);
  return gt_fail(err, "%s (libhdf5: %s: %s)", what, s.first, s.last);
}

/* ------------------------------------------------------------------ */
/* 2. File images                                                       */
/* ------------------------------------------------------------------ */

/* The core driver is handed our bytes as its "copy": malloc returns the
 * image itself and memcpy onto itself is a no-op. The file is opened
 * read-only, so the (possibly PROT_READ) bytes are never written. */
typedef struct img_ud {
  void *buf;
  size_t size;
  int refs;
} img_ud;

static void *img_malloc(size_t size, H5FD_file_image_op_t op, void *ud) {
  img_ud *u = ud;
  (void)op;
  return size == u->size ? u->buf : NULL;
}
static void *img_memcpy(void *dst, const void *src, size_t size,
                        H5FD_file_image_op_t op, void *ud) {
  (void)size, (void)op, (void)ud;
  return dst == src ? dst : NULL;
}
static void *img_realloc(void *p, size_t size, H5FD_file_image_op_t op,
                         void *ud) {
  (void)p, (void)size, (void)op, (void)ud;
  return NULL;
}
static herr_t img_free(void *p, H5FD_file_image_op_t op, void *ud) {
  (void)p, (void)op, (void)ud;
  return 0;
}
static void *img_udata_copy(void *ud) {
  ((img_ud *)ud)->refs++;
  return ud;
}
static herr_t img_udata_free(void *ud) {
  img_ud *u = ud;
  if (--u->refs == 0) free(u);
  return 0;
}

/* An open HDF5 file shared by the lazy tensors that read from it; it holds
 * a reference to the image so the bytes outlive the file. */
typedef struct h5file {
  int refs;
  hid_t fid;
  gt_storage *image;
} h5file;

static void h5file_release(h5file *f) {
  if (!f || --f->refs > 0) return;
  H5Fclose(f->fid);
  H5Eclear2(H5E_DEFAULT);
  gt_storage_release(f->image);
  free(f);
}

static h5file *open_image(gt_storage *image, gt_err *err) {
  static unsigned long long serial;
  char name[64];
  /* The core driver tells files apart by name: each image gets its own. */
  snprintf(name, sizeof name, "graft-image-%llu", ++serial);
  h5file *f = calloc(1, sizeof *f);
  img_ud *u = calloc(1, sizeof *u);
  if (!f || !u) {
    free(f);
    free(u);
    return gt_fail(err, "out of memory"), NULL;
  }
  u->buf = image->data;
  u->size = image->size;
  u->refs = 1;
  H5FD_file_image_callbacks_t cb = {img_malloc, img_memcpy, img_realloc,
                                    img_free, img_udata_copy, img_udata_free,
                                    u};
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  int ok = fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 16, 0) >= 0 &&
           H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) >= 0 &&
           H5Pset_file_image_callbacks(fapl, &cb) >= 0 &&
           H5Pset_file_image(fapl, image->data, image->size) >= 0;
  hid_t fid = ok ? H5Fopen(name, H5F_ACC_RDONLY, fapl) : -1;
  if (fapl >= 0) H5Pclose(fapl);
  img_udata_free(u);
  if (fid < 0) {
    free(f);
    h5_fail(err, "cannot open as HDF5");
    return NULL;
  }
  f->refs = 1;
  f->fid = fid;
  f->image = image;
  gt_storage_retain(image);
  return f;
}

int gt_hdf5_sniff(const unsigned char *p, uint64_t len, uint64_t *base) {
  static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a,
                                       '\n'};
  for (uint64_t off = 0; off <= len && len - off >= 8;
       off = off ? off * 2 : 512) {
    if (memcmp(p + off, sig, 8) == 0) {
      if (base) *base = off;
      return 1;
    }
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* 3. Types                                                             */
/* ------------------------------------------------------------------ */

static int float_fields(hid_t t, size_t s, size_t e, size_t es, size_t m,
                        size_t ms) {
  size_t a, b, c, d, f;
  return H5Tget_fields(t, &a, &b, &c, &d, &f) >= 0 && a == s && b == e &&
         c == es && d == m && f == ms && H5Tget_offset(t) == 0;
}

static int int_dtype(size_t size, int is_signed, gt_dtype *dt) {
  static const gt_dtype s[] = {GT_I8, GT_I16, GT_I32, GT_I64};
  static const gt_dtype u[] = {GT_U8, GT_U16, GT_U32, GT_U64};
  int k = size == 1 ? 0 : size == 2 ? 1 : size == 4 ? 2 : size == 8 ? 3 : -1;
  if (k < 0) return -1;
  *dt = is_signed ? s[k] : u[k];
  return 0;
}

/* IEEE binary64/32/16 and bfloat16 by their bit fields. */
static int float_dtype(hid_t t, gt_dtype *dt) {
  size_t sz = H5Tget_size(t);
  if (sz == 8 && float_fields(t, 63, 52, 11, 0, 52)) *dt = GT_F64;
  else if (sz == 4 && float_fields(t, 31, 23, 8, 0, 23)) *dt = GT_F32;
  else if (sz == 2 && float_fields(t, 15, 10, 5, 0, 10)) *dt = GT_F16;
  else if (sz == 2 && float_fields(t, 15, 7, 8, 0, 7)) *dt = GT_BF16;
  else return -1;
  return 0;
}

/* h5py's bool: an 8-bit integer enum {FALSE = 0, TRUE = 1}. */
static int is_bool_enum(hid_t t) {
  if (H5Tget_size(t) != 1 || H5Tget_nmembers(t) != 2) return 0;
  int ok = 1;
  for (unsigned i = 0; i < 2 && ok; i++) {
    char *nm = H5Tget_member_name(t, i);
    signed char v = -1;
    ok = nm && H5Tget_member_value(t, i, &v) >= 0 &&
         ((strcmp(nm, "FALSE") == 0 && v == 0) ||
          (strcmp(nm, "TRUE") == 0 && v == 1));
    if (nm) H5free_memory(nm);
  }
  return ok;
}

/* h5py's complex: a compound {r, i} of two equal IEEE floats. */
static int complex_dtype(hid_t t, gt_dtype *dt, int *swap) {
  if (H5Tget_nmembers(t) != 2) return -1;
  size_t sz = H5Tget_size(t);
  int rc = -1;
  hid_t a = H5Tget_member_type(t, 0), b = H5Tget_member_type(t, 1);
  gt_dtype da, db;
  if (a >= 0 && b >= 0 && H5Tget_class(a) == H5T_FLOAT &&
      H5Tget_class(b) == H5T_FLOAT && float_dtype(a, &da) == 0 &&
      float_dtype(b, &db) == 0 && da == db && H5Tget_member_offset(t, 0) == 0 &&
      H5Tget_member_offset(t, 1) == sz / 2 && H5Tget_order(a) == H5Tget_order(b) &&
      (da == GT_F32 || da == GT_F64) && sz == 2 * gt_dtype_size(da)) {
    *dt = da == GT_F32 ? GT_C64 : GT_C128;
    *swap = H5Tget_order(a) == H5T_ORDER_BE;
    rc = 0;
  }
  if (a >= 0) H5Tclose(a);
  if (b >= 0) H5Tclose(b);
  return rc;
}

/* The graft dtype of HDF5 type t; -1 with *why when graft has none. */
static int map_type(hid_t t, gt_dtype *dt, int *swap, const char **why) {
  H5T_class_t c = H5Tget_class(t);
  size_t sz = H5Tget_size(t);
  *swap = sz > 1 && H5Tget_order(t) == H5T_ORDER_BE;
  switch (c) {
  case H5T_INTEGER:
    if (int_dtype(sz, H5Tget_sign(t) == H5T_SGN_2, dt) == 0) return 0;
    *why = "integer of unusual size";
    return -1;
  case H5T_FLOAT:
    if (float_dtype(t, dt) == 0) return 0;
    *why = "floating-point type with unusual bit fields";
    return -1;
  case H5T_ENUM: {
    if (is_bool_enum(t)) {
      *dt = GT_BOOL;
      *swap = 0;
      return 0;
    }
    hid_t base = H5Tget_super(t);
    int rc = base >= 0 && int_dtype(sz, H5Tget_sign(base) == H5T_SGN_2, dt) == 0
                 ? 0 : -1;
    if (base >= 0) H5Tclose(base);
    if (rc) *why = "enumeration of unusual size";
    return rc;
  }
  case H5T_COMPOUND:
    if (complex_dtype(t, dt, swap) == 0) return 0;
    *why = "compound type (not an h5py complex number)";
    return -1;
  case H5T_STRING:
    *dt = GT_STRING;
    *swap = 0;
    return 0;
  case H5T_BITFIELD: *why = "bitfield type"; return -1;
  case H5T_OPAQUE: *why = "opaque type"; return -1;
  case H5T_REFERENCE: *why = "reference type"; return -1;
  case H5T_VLEN: *why = "variable-length sequence type"; return -1;
  case H5T_ARRAY: *why = "array type"; return -1;
  default: *why = "unknown type class"; return -1;
  }
}

/* ------------------------------------------------------------------ */
/* 4. Attributes                                                        */
/* ------------------------------------------------------------------ */

/* An object's identity within its file, to detect link cycles. HDF5 1.12
 * replaced the header address of H5O_info_t by an opaque token (H5O_info2_t,
 * H5Oget_info3, compared with H5Otoken_cmp); Debian 12 has 1.10, Debian 13
 * has 1.14. */
#if H5_VERSION_GE(1, 12, 0)
typedef H5O_info2_t obj_info;
typedef H5O_token_t obj_id;
static herr_t obj_info_of(hid_t obj, obj_info *oi, unsigned fields) {
  return H5Oget_info3(obj, oi, fields);
}
static herr_t obj_info_by_name(hid_t loc, const char *name, obj_info *oi,
                               unsigned fields) {
  return H5Oget_info_by_name3(loc, name, oi, fields, H5P_DEFAULT);
}
static obj_id obj_id_of(const obj_info *oi) { return oi->token; }
static int same_obj(hid_t loc, const obj_id *a, const obj_id *b) {
  int cmp = 1;
  return H5Otoken_cmp(loc, a, b, &cmp) >= 0 && cmp == 0;
}
#else
typedef H5O_info_t obj_info;
typedef haddr_t obj_id;
static herr_t obj_info_of(hid_t obj, obj_info *oi, unsigned fields) {
  return H5Oget_info2(obj, oi, fields);
}
static herr_t obj_info_by_name(hid_t loc, const char *name, obj_info *oi,
                               unsigned fields) {
  return H5Oget_info_by_name2(loc, name, oi, fields, H5P_DEFAULT);
}
static obj_id obj_id_of(const obj_info *oi) { return oi->addr; }
static int same_obj(hid_t loc, const obj_id *a, const obj_id *b) {
  (void)loc;
  return *a == *b;
}
#endif

/* What the walk builds. */
typedef struct walk {
  h5file *f;
  gt_model *m;
  gt_value *attrs, *types, *groups, *skipped;
  gt_err *err;
  int depth;
  obj_id *seen;           /* the groups on the current path */
} walk;

static int oom(gt_err *err) { return gt_fail(err, "out of memory"); }

/* A string item of a fixed-length string: padding removed. */
static gt_value *fixed_item(const char *p, size_t w, H5T_str_t pad) {
  size_t n = w;
  if (pad == H5T_STR_NULLTERM) {
    const char *z = memchr(p, 0, w);
    n = z ? (size_t)(z - p) : w;
  } else {
    char padc = pad == H5T_STR_SPACEPAD ? ' ' : '\0';
    while (n > 0 && p[n - 1] == padc) n--;
  }
  return gt_value_str(p, n);
}

/* n string values of attribute aid (type ft) appended to list. */
static int read_attr_strings(hid_t aid, hid_t ft, hid_t space, size_t n,
                             gt_value *list, char *tname, size_t tlen) {
  H5T_cset_t cset = H5Tget_cset(ft);
  int rc = -1;
  if (H5Tis_variable_str(ft) > 0) {
    snprintf(tname, tlen, "vlen-%s", cset == H5T_CSET_UTF8 ? "utf8" : "ascii");
    hid_t mt = H5Tcopy(H5T_C_S1);
    char **buf = calloc(n ? n : 1, sizeof *buf);
    if (mt >= 0 && buf && H5Tset_size(mt, H5T_VARIABLE) >= 0 &&
        H5Tset_cset(mt, cset) >= 0 && H5Aread(aid, mt, buf) >= 0) {
      rc = 0;
      for (size_t i = 0; i < n && rc == 0; i++)
        rc = gt_value_push(list, gt_value_str(buf[i] ? buf[i] : "",
                                              buf[i] ? strlen(buf[i]) : 0));
      H5Dvlen_reclaim(mt, space, H5P_DEFAULT, buf);
    }
    free(buf);
    if (mt >= 0) H5Tclose(mt);
    return rc;
  }
  size_t w = H5Tget_size(ft);
  H5T_str_t pad = H5Tget_strpad(ft);
  snprintf(tname, tlen, "S%zu%s%s", w, cset == H5T_CSET_UTF8 ? "-utf8" : "",
           pad == H5T_STR_NULLTERM ? "-nullterm"
           : pad == H5T_STR_SPACEPAD ? "-spacepad" : "");
  size_t total;
  if (w == 0 || __builtin_mul_overflow(n, w, &total)) return -1;
  char *buf = malloc(total ? total : 1);
  hid_t mt = H5Tcopy(ft);
  if (buf && mt >= 0 && H5Aread(aid, mt, buf) >= 0) {
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
      rc = gt_value_push(list, fixed_item(buf + i * w, w, pad));
  }
  free(buf);
  if (mt >= 0) H5Tclose(mt);
  return rc;
}

static int read_attr_numbers(hid_t aid, hid_t ft, size_t n, gt_value *list,
                             char *tname, size_t tlen) {
  H5T_class_t c = H5Tget_class(ft);
  gt_dtype dt;
  int swap, rc = -1;
  const char *why;
  int is_bool = c == H5T_ENUM && is_bool_enum(ft);
  if (map_type(ft, &dt, &swap, &why) != 0 || dt == GT_STRING ||
      gt_dtype_is_complex(dt))
    return 1;
  snprintf(tname, tlen, "%s", gt_dtype_name(dt));
  int as_float = gt_dtype_is_float(dt), as_u64 = dt == GT_U64;
  void *buf = calloc(n ? n : 1, 8);
  if (!buf) return -1;
  hid_t mt = is_bool ? H5Tcopy(ft)
           : as_float ? H5Tcopy(H5T_NATIVE_DOUBLE)
           : as_u64 ? H5Tcopy(H5T_NATIVE_ULLONG) : H5Tcopy(H5T_NATIVE_LLONG);
  if (mt >= 0 && H5Aread(aid, mt, buf) >= 0) {
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
      gt_value *v;
      if (is_bool) {
        v = gt_value_bool(((unsigned char *)buf)[i] != 0);
      } else if (as_float) {
        v = gt_value_float(((double *)buf)[i]);
      } else if (as_u64 && ((unsigned long long *)buf)[i] > INT64_MAX) {
        v = gt_value_float((double)((unsigned long long *)buf)[i]);
      } else {
        v = gt_value_int(((long long *)buf)[i]);
      }
      rc = gt_value_push(list, v);
    }
  }
  if (mt >= 0) H5Tclose(mt);
  free(buf);
  return rc;
}

/* The value of one attribute: a scalar for a scalar dataspace, a flat list
 * otherwise; an inert placeholder for types graft cannot show. */
static gt_value *attr_value(walk *w, hid_t aid, const char *obj,
                            const char *name, char *tname, size_t tlen) {
  hid_t ft = H5Aget_type(aid), space = H5Aget_space(aid);
  gt_value *list = gt_value_new(GT_V_LIST), *out = NULL;
  if (ft < 0 || space < 0 || !list) goto done;
  H5S_class_t sc = H5Sget_simple_extent_type(space);
  hssize_t np = H5Sget_simple_extent_npoints(space);
  /* Every stored element takes at least one byte of the file. */
  if (np < 0 || (uint64_t)np > (uint64_t)w->f->image->size + 1) {
    gt_fail(w->err, "%.*s: attribute \"%.*s\": bad element count %lld",
            SHOWN, obj, SHOWN, name, (long long)np);
    goto done;
  }
  if (sc == H5S_NULL) {
    snprintf(tname, tlen, "empty");
    out = gt_value_new(GT_V_OBJECT);
    if (out && !(out->str = strdup("hdf5.Empty"))) {
      gt_value_free(out);
      out = NULL;
    }
    if (out) out->len = strlen(out->str);
    goto done;
  }
  int rc;
  if (H5Tget_class(ft) == H5T_STRING) {
    rc = read_attr_strings(aid, ft, space, (size_t)np, list, tname, tlen);
  } else {
    rc = read_attr_numbers(aid, ft, (size_t)np, list, tname, tlen);
  }
  if (rc == 1) {
    snprintf(tname, tlen, "unsupported");
    char what[64];
    snprintf(what, sizeof what, "hdf5.type_class_%d", (int)H5Tget_class(ft));
    out = gt_value_new(GT_V_OBJECT);
    if (out && (out->str = strdup(what))) out->len = strlen(what);
    else if (out) gt_value_free(out), out = NULL;
  } else if (rc != 0) {
    h5_fail(w->err, "%.*s: cannot read attribute \"%.*s\"", SHOWN, obj, SHOWN,
            name);
    goto done;
  } else if (sc == H5S_SCALAR && list->n == 1) {
    out = list->items[0];
    list->n = 0;
  } else {
    out = list;
    list = NULL;
  }
  if (!out) oom(w->err);
done:
  gt_value_free(list);
  if (ft >= 0) H5Tclose(ft);
  if (space >= 0) H5Sclose(space);
  return out;
}

typedef struct attr_walk {
  walk *w;
  const char *obj;
  gt_value *vals, *types;
  int failed;
} attr_walk;

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info,
                      void *ud) {
  attr_walk *a = ud;
  (void)info;
  hid_t aid = H5Aopen(loc, name, H5P_DEFAULT);
  if (aid < 0) {
    h5_fail(a->w->err, "%.*s: cannot open attribute \"%.*s\"", SHOWN, a->obj,
            SHOWN, name);
    a->failed = 1;
    return -1;
  }
  char tname[48] = "";
  gt_value *v = attr_value(a->w, aid, a->obj, name, tname, sizeof tname);
  H5Aclose(aid);
  if (!v || gt_value_setk(a->vals, name, v) != GT_OK ||
      gt_value_setk(a->types, name, gt_value_str(tname, strlen(tname))) !=
          GT_OK) {
    if (v) oom(a->w->err);
    a->failed = 1;
    return -1;
  }
  return 0;
}

/* The iteration index h5py uses: creation order when the object tracks it,
 * else names. */
static H5_index_t attr_index(hid_t obj) {
  hid_t p = H5Iget_type(obj) == H5I_DATASET ? H5Dget_create_plist(obj)
                                            : H5Gget_create_plist(obj);
  unsigned flags = 0;
  if (p >= 0) {
    if (H5Pget_attr_creation_order(p, &flags) < 0) flags = 0;
    H5Pclose(p);
  }
  H5Eclear2(H5E_DEFAULT);
  return (flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
}

/* Attributes of obj (at path) into attrs[path] / attr_types[path]; objects
 * without attributes get no entry. */
static int read_attrs(walk *w, hid_t obj, const char *path) {
  obj_info oi;
  if (obj_info_of(obj, &oi, H5O_INFO_NUM_ATTRS) < 0)
    return h5_fail(w->err, "%.*s: cannot read its object header", SHOWN, path);
  if (oi.num_attrs == 0) return GT_OK;
  attr_walk a = {w, path, gt_value_new(GT_V_MAP), gt_value_new(GT_V_MAP), 0};
  if (!a.vals || !a.types) {
    gt_value_free(a.vals);
    gt_value_free(a.types);
    return oom(w->err);
  }
  hsize_t idx = 0;
  herr_t rc = H5Aiterate2(obj, attr_index(obj), H5_ITER_INC, &idx, attr_cb, &a);
  if (rc < 0 || a.failed) {
    gt_value_free(a.vals);
    gt_value_free(a.types);
    if (!a.failed)
      return h5_fail(w->err, "%.*s: cannot list its attributes", SHOWN, path);
    return GT_ERR;
  }
  if (gt_value_setk(w->attrs, path, a.vals) != GT_OK) {
    gt_value_free(a.types);
    return oom(w->err);
  }
  if (gt_value_setk(w->types, path, a.types) != GT_OK) return oom(w->err);
  return GT_OK;
}

/* ------------------------------------------------------------------ */
/* 5. Datasets                                                          */
/* ------------------------------------------------------------------ */

/* A lazy read through libhdf5 of the whole dataset at `path`, converted
 * to `memtype` (native byte order). String datasets keep their bytes in
 * `blob`; the storage then holds the gt_str heads. */
typedef struct lazy_ctx {
  h5file *f;
  char *path;
  hid_t memtype;
  int strings;
  size_t width;     /* fixed-length strings: item bytes (0 for vlen) */
  H5T_str_t pad;
  uint64_t numel;
  char *blob;
} lazy_ctx;

static void free_lazy(void *p) {
  lazy_ctx *c = p;
  if (!c) return;
  if (c->memtype >= 0) H5Tclose(c->memtype);
  h5file_release(c->f);
  free(c->path);
  free(c->blob);
  free(c);
}

/* Strings read as vlen (any file string type converts to it) then copied
 * into one blob: heads in s->data point into it. */
static int load_strings(gt_storage *s, lazy_ctx *c, hid_t did, gt_err *err) {
  hid_t space = H5Dget_space(did);
  char **tmp = calloc(c->numel ? c->numel : 1, sizeof *tmp);
  int rc = GT_ERR;
  if (space < 0 || !tmp) {
    if (!tmp) oom(err);
    else h5_fail(err, "dataset \"%.*s\": cannot read its dataspace", SHOWN, c->path);
    goto out;
  }
  if (H5Dread(did, c->memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0) {
    h5_fail(err, "dataset \"%.*s\": cannot read", SHOWN, c->path);
    goto out;
  }
  size_t total = 0;
  for (uint64_t i = 0; i < c->numel; i++) total += tmp[i] ? strlen(tmp[i]) : 0;
  c->blob = malloc(total ? total : 1);
  if (!c->blob || gt_storage_alloc_data(s, err) != GT_OK) {
    if (!c->blob) oom(err);
  } else {
    char *p = c->blob;
    for (uint64_t i = 0; i < c->numel; i++) {
      size_t n = tmp[i] ? strlen(tmp[i]) : 0;
      if (n) memcpy(p, tmp[i], n);
      gt_str e = {p, n};
      memcpy(s->data + i * sizeof e, &e, sizeof e);
      p += n;
    }
    rc = GT_OK;
  }
  H5Dvlen_reclaim(c->memtype, space, H5P_DEFAULT, tmp);
out:
  free(tmp);
  if (space >= 0) H5Sclose(space);
  return rc;
}

/* Fixed-length strings are read as they are stored (libhdf5 will not
 * convert them to vlen) and their padding removed. */
static int load_fixed_strings(gt_storage *s, lazy_ctx *c, hid_t did,
                              gt_err *err) {
  size_t total;
  if (__builtin_mul_overflow((size_t)c->numel, c->width, &total))
    return gt_fail(err, "dataset \"%.*s\": too large", SHOWN, c->path);
  c->blob = malloc(total ? total : 1);
  if (!c->blob) return oom(err);
  if (total > 0 &&
      H5Dread(did, c->memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, c->blob) < 0)
    return h5_fail(err, "dataset \"%.*s\": cannot read", SHOWN, c->path);
  if (gt_storage_alloc_data(s, err) != GT_OK) return GT_ERR;
  for (uint64_t i = 0; i < c->numel; i++) {
    gt_value *v = fixed_item(c->blob + i * c->width, c->width, c->pad);
    if (!v) return oom(err);
    /* fixed_item copied the bytes; the head points into the blob instead. */
    gt_str e = {c->blob + i * c->width, v->len};
    gt_value_free(v);
    memcpy(s->data + i * sizeof e, &e, sizeof e);
  }
  return GT_OK;
}

static int load_dataset(gt_storage *s, gt_err *err) {
  lazy_ctx *c = s->ctx;
  if (h5_ready(err) != GT_OK) return GT_ERR;
  hid_t did = H5Dopen2(c->f->fid, c->path, H5P_DEFAULT);
  if (did < 0) return h5_fail(err, "dataset \"%.*s\": cannot open", SHOWN, c->path);
  int rc;
  if (c->strings && c->width) {
    rc = load_fixed_strings(s, c, did, err);
  } else if (c->strings) {
    rc = load_strings(s, c, did, err);
  } else if (gt_storage_alloc_data(s, err) != GT_OK) {
    rc = GT_ERR;
  } else if (s->size > 0 &&
             H5Dread(did, c->memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->data) < 0) {
    rc = h5_fail(err, "dataset \"%.*s\": cannot read", SHOWN, c->path);
  } else {
    rc = GT_OK;
  }
  H5Dclose(did);
  return rc;
}

/* Where dataset did's bytes live when they can be viewed in place: its
 * contiguous, unfiltered, internal storage. 0 and *off set, or 1. */
static int in_place(hid_t did, uint64_t *off) {
  hid_t p = H5Dget_create_plist(did);
  int ok = p >= 0 && H5Pget_layout(p) == H5D_CONTIGUOUS &&
           H5Pget_nfilters(p) == 0 && H5Pget_external_count(p) == 0;
  if (p >= 0) H5Pclose(p);
  haddr_t a = ok ? H5Dget_offset(did) : HADDR_UNDEF;
  H5Eclear2(H5E_DEFAULT);
  if (a == HADDR_UNDEF) return 1;
  *off = (uint64_t)a;
  return 0;
}

/* Keras 3 stores bfloat16 variables as 2-byte data with a "dtype" string
 * attribute "bfloat16" on the dataset. */
static int marked_bfloat16(const walk *w, const char *path) {
  const gt_value *a = gt_value_get(w->attrs, path);
  const gt_value *d = a ? gt_value_get(a, "dtype") : NULL;
  return d && d->kind == GT_V_STR && strcmp(d->str, "bfloat16") == 0;
}

static gt_storage *lazy_storage(walk *w, const char *path, hid_t memtype,
                                int strings, uint64_t numel, uint64_t size) {
  lazy_ctx *c = calloc(1, sizeof *c);
  if (!c || !(c->path = strdup(path)) || size > SIZE_MAX) {
    free(c);
    H5Tclose(memtype);
    return oom(w->err), NULL;
  }
  c->f = w->f;
  w->f->refs++;
  c->memtype = memtype;
  c->strings = strings;
  c->numel = numel;
  return gt_storage_lazy((size_t)size, NULL, load_dataset, c, free_lazy, w->err);
}

static int skip(walk *w, const char *path, const char *why) {
  if (gt_value_setk(w->skipped, path, gt_value_str(why, strlen(why))) != GT_OK)
    return oom(w->err);
  return GT_OK;
}

static int add_dataset(walk *w, hid_t did, const char *path) {
  hid_t ft = H5Dget_type(did), space = H5Dget_space(did);
  int rc = GT_ERR;
  gt_storage *s = NULL;
  if (ft < 0 || space < 0) {
    h5_fail(w->err, "dataset \"%.*s\": cannot read its type or shape", SHOWN, path);
    goto out;
  }
  gt_dtype dt;
  int swap;
  const char *why = NULL;
  if (map_type(ft, &dt, &swap, &why) != 0) {
    rc = skip(w, path, why);
    goto out;
  }
  if (dt == GT_F16 || dt == GT_I16 || dt == GT_U16)
    if (marked_bfloat16(w, path)) dt = GT_BF16;
  H5S_class_t sc = H5Sget_simple_extent_type(space);
  int nd = sc == H5S_SIMPLE ? H5Sget_simple_extent_ndims(space) : 0;
  if (sc == H5S_NULL) {
    rc = skip(w, path, "null dataspace (no data)");
    goto out;
  }
  if (nd < 0 || nd > GT_MAXDIM) {
    gt_fail(w->err, "dataset \"%.*s\": %d dimensions (at most %d)", SHOWN, path,
            nd, GT_MAXDIM);
    goto out;
  }
  hsize_t dims[GT_MAXDIM];
  int64_t shape[GT_MAXDIM], numel;
  if (nd > 0 && H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
    h5_fail(w->err, "dataset \"%.*s\": cannot read its shape", SHOWN, path);
    goto out;
  }
  for (int i = 0; i < nd; i++) {
    if (dims[i] > (hsize_t)INT64_MAX) {
      gt_fail(w->err, "dataset \"%.*s\": dimension %d too large", SHOWN, path, i);
      goto out;
    }
    shape[i] = (int64_t)dims[i];
  }
  if (gt_numel(nd, shape, &numel, w->err) != GT_OK) {
    gt_wrap(w->err, "dataset \"%.*s\"", SHOWN, path);
    goto out;
  }
  uint64_t esize = gt_dtype_size(dt), nbytes, off = 0;
  if (gt_mul_u64((uint64_t)numel, esize, (unsigned long long *)&nbytes)) {
    gt_fail(w->err, "dataset \"%.*s\": size overflows", SHOWN, path);
    goto out;
  }
  if (dt == GT_STRING) {
    int vlen = H5Tis_variable_str(ft) > 0;
    hid_t mt = H5Tcopy(vlen ? H5T_C_S1 : ft);
    if (mt < 0 || (vlen && (H5Tset_size(mt, H5T_VARIABLE) < 0 ||
                            H5Tset_cset(mt, H5Tget_cset(ft)) < 0))) {
      h5_fail(w->err, "dataset \"%.*s\": string type", SHOWN, path);
      if (mt >= 0) H5Tclose(mt);
      goto out;
    }
    s = lazy_storage(w, path, mt, 1, (uint64_t)numel, nbytes);
    if (s && !vlen) {
      lazy_ctx *c = s->ctx;
      c->width = H5Tget_size(ft);
      c->pad = H5Tget_strpad(ft);
    }
    swap = 0;
  } else if (H5Tget_size(ft) == esize && in_place(did, &off) == 0) {
    uint64_t end;
    if (gt_add_u64(off, nbytes, (unsigned long long *)&end) ||
        end > w->f->image->size) {
      gt_fail(w->err, "dataset \"%.*s\": its %llu bytes at offset %llu lie past "
              "the end of the file (%zu bytes): truncated?", SHOWN, path,
              (unsigned long long)nbytes, (unsigned long long)off,
              w->f->image->size);
      goto out;
    }
    size_t align = gt_dtype_is_complex(dt) ? esize / 2 : esize;
    s = gt_storage_aligned(w->f->image, off, nbytes, align, w->err);
  } else {
    hid_t mt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
    if (mt < 0) {
      h5_fail(w->err, "dataset \"%.*s\": no native type for it", SHOWN, path);
      goto out;
    }
    s = lazy_storage(w, path, mt, 0, (uint64_t)numel, nbytes);
    swap = 0;
  }
  if (!s) goto out;
  gt_tensor t;
  if (gt_tensor_make(&t, s, dt, nd, shape, 0, w->err) != GT_OK) {
    gt_wrap(w->err, "dataset \"%.*s\"", SHOWN, path);
    goto out;
  }
  t.swap = swap;
  rc = gt_model_add(w->m, path, strlen(path), &t, w->err);
  /* libhdf5 has read this dataset's object header out of the image into
   * its metadata cache; object headers sit between the datasets' data, and
   * each touch may map a whole large folio, so drop them as the walk goes
   * every 16 datasets (the open stays some 32 MiB resident at most,
   * whatever the file's size; each call walks the whole mapping). */
  if (rc == GT_OK && w->m->n % 16 == 0)
    gt_storage_done_with(w->f->image, 0, w->f->image->size);
out:
  if (s) gt_storage_release(s);
  if (ft >= 0) H5Tclose(ft);
  if (space >= 0) H5Sclose(space);
  return rc;
}

/* ------------------------------------------------------------------ */
/* 6. The walk                                                          */
/* ------------------------------------------------------------------ */

static int walk_group(walk *w, hid_t gid, const char *path);

typedef struct link_walk {
  walk *w;
  const char *path;
  int failed;
} link_walk;

static char *join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = malloc(a + b + 2);
  if (!p) return NULL;
  if (a) {
    memcpy(p, dir, a);
    p[a++] = '/';
  }
  memcpy(p + a, name, b + 1);
  return p;
}

static herr_t link_cb(hid_t gid, const char *name, const H5L_info_t *li,
                      void *ud) {
  link_walk *lw = ud;
  walk *w = lw->w;
  if (li->type != H5L_TYPE_HARD) return 0; /* soft and external links */
  char *path = join(lw->path, name);
  if (!path) {
    oom(w->err);
    lw->failed = 1;
    return -1;
  }
  int rc = GT_OK;
  obj_info oi;
  obj_id id;
  if (obj_info_by_name(gid, name, &oi, H5O_INFO_BASIC) < 0) {
    rc = h5_fail(w->err, "\"%.*s\": cannot read its object header", SHOWN, path);
  } else if (oi.type == H5O_TYPE_GROUP) {
    id = obj_id_of(&oi);
    for (int i = 0; i < w->depth; i++)
      if (same_obj(gid, &w->seen[i], &id)) {
        rc = gt_fail(w->err, "group \"%.*s\" contains itself (a link cycle)",
                     SHOWN, path);
        break;
      }
    hid_t sub = rc == GT_OK ? H5Gopen2(gid, name, H5P_DEFAULT) : -1;
    if (rc == GT_OK && sub < 0)
      rc = h5_fail(w->err, "group \"%.*s\": cannot open", SHOWN, path);
    if (rc == GT_OK) {
      w->seen[w->depth] = id;
      rc = walk_group(w, sub, path);
    }
    if (sub >= 0) H5Gclose(sub);
  } else if (oi.type == H5O_TYPE_DATASET) {
    hid_t did = H5Dopen2(gid, name, H5P_DEFAULT);
    if (did < 0) rc = h5_fail(w->err, "dataset \"%.*s\": cannot open", SHOWN, path);
    if (rc == GT_OK) rc = read_attrs(w, did, path);
    if (rc == GT_OK) rc = add_dataset(w, did, path);
    if (did >= 0) H5Dclose(did);
  }
  free(path);
  if (rc != GT_OK) {
    lw->failed = 1;
    return -1;
  }
  return 0;
}

static H5_index_t link_index(hid_t gid) {
  hid_t p = H5Gget_create_plist(gid);
  unsigned flags = 0;
  if (p >= 0) {
    if (H5Pget_link_creation_order(p, &flags) < 0) flags = 0;
    H5Pclose(p);
  }
  H5Eclear2(H5E_DEFAULT);
  return (flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
}

static int walk_group(walk *w, hid_t gid, const char *path) {
  if (w->depth >= MAX_DEPTH)
    return gt_fail(w->err, "group \"%.*s\": nested deeper than %d", SHOWN, path,
                   MAX_DEPTH);
  if (*path && gt_value_push(w->groups, gt_value_str(path, strlen(path))) != GT_OK)
    return oom(w->err);
  if (read_attrs(w, gid, *path ? path : "/") != GT_OK) return GT_ERR;
  link_walk lw = {w, path, 0};
  hsize_t idx = 0;
  w->depth++;
  herr_t rc = H5Literate(gid, link_index(gid), H5_ITER_INC, &idx, link_cb, &lw);
  w->depth--;
  if (lw.failed) return GT_ERR;
  if (rc < 0)
    return h5_fail(w->err, "group \"%.*s\": cannot list its members", SHOWN,
                   *path ? path : "/");
  return GT_OK;
}

int gt_hdf5_read(gt_storage *image, gt_model *m, gt_err *err) {
  uint64_t base = 0;
  if (gt_storage_ready(image, err) != GT_OK) return GT_ERR;
  if (!gt_hdf5_sniff(image->data, image->size, &base))
    return gt_fail(err, "not an HDF5 file (no HDF5 signature)");
  if (h5_ready(err) != GT_OK) return GT_ERR;
  h5file *f = open_image(image, err);
  if (!f) return GT_ERR;
  walk w;
  memset(&w, 0, sizeof w);
  w.f = f;
  w.m = m;
  w.err = err;
  w.attrs = gt_value_new(GT_V_MAP);
  w.types = gt_value_new(GT_V_MAP);
  w.groups = gt_value_new(GT_V_LIST);
  w.skipped = gt_value_new(GT_V_MAP);
  w.seen = calloc(MAX_DEPTH + 1, sizeof *w.seen);
  m->format = "hdf5";
  m->meta = gt_value_new(GT_V_MAP);
  int rc = GT_ERR;
  if (!w.attrs || !w.types || !w.groups || !w.skipped || !w.seen || !m->meta) {
    oom(err);
    goto out;
  }
  hid_t root = H5Gopen2(f->fid, "/", H5P_DEFAULT);
  if (root < 0) {
    h5_fail(err, "cannot open the root group");
    goto out;
  }
  rc = walk_group(&w, root, "");
  H5Gclose(root);
  if (rc != GT_OK) goto out;
  rc = GT_ERR;
  if (gt_value_setk(m->meta, "attrs", w.attrs) != GT_OK ||
      gt_value_setk(m->meta, "attr_types", w.types) != GT_OK ||
      gt_value_setk(m->meta, "groups", w.groups) != GT_OK ||
      gt_value_setk(m->meta, "skipped", w.skipped) != GT_OK ||
      gt_value_setk(m->meta, "userblock", gt_value_int((int64_t)base)) != GT_OK) {
    w.attrs = w.types = w.groups = w.skipped = NULL;
    oom(err);
    goto out;
  }
  w.attrs = w.types = w.groups = w.skipped = NULL;
  rc = GT_OK;
out:
  gt_value_free(w.attrs);
  gt_value_free(w.types);
  gt_value_free(w.groups);
  gt_value_free(w.skipped);
  free(w.seen);
  h5file_release(f);
  return rc;
}

/* ------------------------------------------------------------------ */
/* 7. Writer                                                            */
/* ------------------------------------------------------------------ */

/* HDF5 file type for dtype dt, as h5py writes it (NULL-safe: < 0 when HDF5
 * has no such type). */
static hid_t file_type(gt_dtype dt) {
  hid_t t = -1;
  switch (dt) {
  case GT_F64: return H5Tcopy(H5T_IEEE_F64LE);
  case GT_F32: return H5Tcopy(H5T_IEEE_F32LE);
  case GT_I64: return H5Tcopy(H5T_STD_I64LE);
  case GT_I32: return H5Tcopy(H5T_STD_I32LE);
  case GT_I16: return H5Tcopy(H5T_STD_I16LE);
  case GT_I8: return H5Tcopy(H5T_STD_I8LE);
  case GT_U64: return H5Tcopy(H5T_STD_U64LE);
  case GT_U32: return H5Tcopy(H5T_STD_U32LE);
  case GT_U16: return H5Tcopy(H5T_STD_U16LE);
  case GT_U8: return H5Tcopy(H5T_STD_U8LE);
  case GT_F16:
  case GT_BF16: {
    /* numpy's float16 as h5py declares it; bfloat16 the same way with
     * its own fields (8-bit exponent, 7-bit mantissa). */
    int bf = dt == GT_BF16;
    t = H5Tcopy(H5T_IEEE_F32LE);
    if (t >= 0 &&
        (H5Tset_fields(t, 15, bf ? 7 : 10, bf ? 8 : 5, 0, bf ? 7 : 10) < 0 ||
         H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, bf ? 127 : 15) < 0)) {
      H5Tclose(t);
      t = -1;
    }
    return t;
  }
  case GT_BOOL: {
    t = H5Tenum_create(H5T_NATIVE_INT8);
    signed char f = 0, tr = 1;
    if (t >= 0 && (H5Tenum_insert(t, "FALSE", &f) < 0 ||
                   H5Tenum_insert(t, "TRUE", &tr) < 0)) {
      H5Tclose(t);
      t = -1;
    }
    return t;
  }
  case GT_C64:
  case GT_C128: {
    size_t h = dt == GT_C64 ? 4 : 8;
    t = H5Tcreate(H5T_COMPOUND, 2 * h);
    hid_t part = h == 4 ? H5T_IEEE_F32LE : H5T_IEEE_F64LE;
    if (t >= 0 && (H5Tinsert(t, "r", 0, part) < 0 || H5Tinsert(t, "i", h, part) < 0)) {
      H5Tclose(t);
      t = -1;
    }
    return t;
  }
  case GT_STRING: {
    t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 ||
                   H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
      H5Tclose(t);
      t = -1;
    }
    return t;
  }
  default: return -1;
  }
}

/* One attribute [name, type, value] of the layout onto obj. */
static int numeric_attr_type(const char *type, hid_t *ft, hid_t *mt, int *as_float) {
  static const struct { const char *name; gt_dtype dt; } k[] = {
      {"float64", GT_F64}, {"float32", GT_F32}, {"float16", GT_F16},
      {"int64", GT_I64},   {"int32", GT_I32},   {"int16", GT_I16},
      {"int8", GT_I8},     {"uint64", GT_U64},  {"uint32", GT_U32},
      {"uint16", GT_U16},  {"uint8", GT_U8},    {"bool", GT_BOOL}};
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
    if (strcmp(type, k[i].name) == 0) {
      *ft = file_type(k[i].dt);
      *as_float = gt_dtype_is_float(k[i].dt);
      *mt = k[i].dt == GT_BOOL ? H5Tcopy(*ft)
            : *as_float ? H5Tcopy(H5T_NATIVE_DOUBLE) : H5Tcopy(H5T_NATIVE_LLONG);
      return 0;
    }
  return -1;
}

static int write_attr(hid_t obj, const char *opath, const cJSON *a, gt_err *err) {
  const cJSON *jn = cJSON_GetArrayItem(a, 0), *jt = cJSON_GetArrayItem(a, 1),
              *jv = cJSON_GetArrayItem(a, 2);
  if (!cJSON_IsString(jn) || !cJSON_IsString(jt) || !jv)
    return gt_fail(err, "layout: attribute of \"%.*s\" is not [name, type, value]",
                   SHOWN, opath);
  const char *name = jn->valuestring, *type = jt->valuestring;
  int is_list = cJSON_IsArray(jv);
  size_t n = is_list ? (size_t)cJSON_GetArraySize(jv) : 1;
  hsize_t dim = n;
  hid_t space = is_list ? H5Screate_simple(1, &dim, NULL) : H5Screate(H5S_SCALAR);
  hid_t ft = -1, mt = -1, aid = -1;
  void *buf = NULL;
  int rc = GT_ERR, as_float = 0;
  const cJSON *item = is_list ? jv->child : jv;
  if (strncmp(type, "vlen-", 5) == 0 || type[0] == 'S') {
    int vlen = type[0] == 'v';
    int utf8 = strstr(type, "utf8") != NULL;
    size_t width = 0;
    for (const cJSON *c = item; c; c = is_list ? c->next : NULL) {
      if (!cJSON_IsString(c)) {
        gt_fail(err, "layout: attribute \"%s\" of \"%.*s\": %s needs strings",
                name, SHOWN, opath, type);
        goto out;
      }
      size_t l = strlen(c->valuestring);
      if (l > width) width = l;
    }
    if (!vlen) {
      size_t fixed = (size_t)strtoull(type + 1, NULL, 10);
      if (fixed > width) width = fixed;
      if (width == 0) width = 1;
    }
    ft = H5Tcopy(H5T_C_S1);
    if (ft < 0 || H5Tset_size(ft, vlen ? H5T_VARIABLE : width) < 0 ||
        H5Tset_cset(ft, utf8 ? H5T_CSET_UTF8 : H5T_CSET_ASCII) < 0 ||
        (!vlen && H5Tset_strpad(ft, H5T_STR_NULLPAD) < 0))
      goto h5err;
    mt = H5Tcopy(ft);
    if (vlen) {
      const char **p = calloc(n ? n : 1, sizeof *p);
      buf = p;
      size_t i = 0;
      for (const cJSON *c = item; p && c; c = is_list ? c->next : NULL)
        p[i++] = c->valuestring;
    } else {
      char *p = calloc(n ? n : 1, width);
      buf = p;
      size_t i = 0;
      for (const cJSON *c = item; p && c; c = is_list ? c->next : NULL, i++)
        memcpy(p + i * width, c->valuestring, strlen(c->valuestring));
    }
  } else if (numeric_attr_type(type, &ft, &mt, &as_float) == 0) {
    if (ft < 0 || mt < 0) goto h5err;
    buf = calloc(n ? n : 1, 8);
    size_t i = 0;
    for (const cJSON *c = item; buf && c; c = is_list ? c->next : NULL, i++) {
      if (!cJSON_IsNumber(c) && !cJSON_IsBool(c)) {
        gt_fail(err, "layout: attribute \"%s\" of \"%.*s\": %s needs numbers",
                name, SHOWN, opath, type);
        goto out;
      }
      double d = cJSON_IsBool(c) ? (double)cJSON_IsTrue(c) : c->valuedouble;
      if (strcmp(type, "bool") == 0) ((signed char *)buf)[i] = d != 0;
      else if (as_float) ((double *)buf)[i] = d;
      else ((long long *)buf)[i] = (long long)d;
    }
  } else {
    gt_fail(err, "layout: attribute \"%s\" of \"%.*s\": unknown type \"%s\"",
            name, SHOWN, opath, type);
    goto out;
  }
  if (!buf) {
    oom(err);
    goto out;
  }
  if (space < 0) goto h5err;
  aid = H5Acreate2(obj, name, ft, space, H5P_DEFAULT, H5P_DEFAULT);
  if (aid < 0 || H5Awrite(aid, mt, buf) < 0) goto h5err;
  rc = GT_OK;
  goto out;
h5err:
  h5_fail(err, "cannot write attribute \"%s\" of \"%.*s\"", name, SHOWN, opath);
out:
  free(buf);
  if (aid >= 0) H5Aclose(aid);
  if (ft >= 0) H5Tclose(ft);
  if (mt >= 0) H5Tclose(mt);
  if (space >= 0) H5Sclose(space);
  return rc;
}

static int write_attrs(hid_t obj, const char *path, const cJSON *attrs,
                       gt_err *err) {
  if (!attrs) return GT_OK;
  if (!cJSON_IsArray(attrs))
    return gt_fail(err, "layout: attrs of \"%.*s\" must be a list", SHOWN, path);
  for (const cJSON *a = attrs->child; a; a = a->next)
    if (write_attr(obj, path, a, err) != GT_OK) return GT_ERR;
  return GT_OK;
}

/* Open group path, creating it (and its parents) when missing. */
static hid_t open_or_create_group(hid_t fid, const char *path, hid_t lcpl) {
  if (strcmp(path, "/") == 0) return H5Gopen2(fid, "/", H5P_DEFAULT);
  htri_t there = H5Lexists(fid, path, H5P_DEFAULT);
  H5Eclear2(H5E_DEFAULT);
  hid_t g = there > 0 ? H5Gopen2(fid, path, H5P_DEFAULT) : -1;
  if (g >= 0) return g;
  H5Eclear2(H5E_DEFAULT);
  return H5Gcreate2(fid, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
}

/* Where each numeric tensor's bytes go once the file structure exists. */
typedef struct slot {
  uint64_t off;
  int has;
} slot;

/* Row-major walk over a string view (ready storage). */
static int write_strings(hid_t did, const gt_tensor *t, gt_err *err) {
  int64_t n = gt_tensor_numel(t);
  char **p = calloc((size_t)(n ? n : 1), sizeof *p);
  if (!p) return oom(err);
  int64_t idx[GT_MAXDIM] = {0};
  int rc = GT_OK;
  for (int64_t k = 0; k < n && rc == GT_OK; k++) {
    int64_t off = t->offset;
    for (int d = 0; d < t->ndim; d++)
      off += idx[d] * t->strides[d] * (int64_t)sizeof(gt_str);
    gt_str e;
    memcpy(&e, t->storage->data + off, sizeof e);
    p[k] = malloc(e.n + 1);
    if (!p[k]) {
      rc = oom(err);
      break;
    }
    if (e.n) memcpy(p[k], e.p, e.n);
    p[k][e.n] = '\0';
    for (int d = t->ndim - 1; d >= 0; d--) {
      if (++idx[d] < t->shape[d]) break;
      idx[d] = 0;
    }
  }
  hid_t mt = rc == GT_OK ? file_type(GT_STRING) : -1;
  if (rc == GT_OK && (mt < 0 || H5Dwrite(did, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, p) < 0))
    rc = h5_fail(err, "cannot write the strings");
  if (mt >= 0) H5Tclose(mt);
  for (int64_t k = 0; k < n; k++) free(p[k]);
  free(p);
  return rc;
}

static int create_dataset(hid_t fid, hid_t lcpl, const char *dpath,
                          const gt_entry *e, slot *sl, gt_err *err) {
  const gt_tensor *t = &e->t;
  hid_t ft = file_type(t->dtype);
  if (ft < 0)
    return gt_fail(err, "tensor \"%.*s\": HDF5 has no %s type", SHOWN, e->name,
                   gt_dtype_name(t->dtype));
  hsize_t dims[GT_MAXDIM];
  for (int i = 0; i < t->ndim; i++) dims[i] = (hsize_t)t->shape[i];
  hid_t space = t->ndim ? H5Screate_simple(t->ndim, dims, NULL)
                        : H5Screate(H5S_SCALAR);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  int rc = GT_ERR;
  hid_t did = -1;
  if (space < 0 || dcpl < 0 || H5Pset_layout(dcpl, H5D_CONTIGUOUS) < 0 ||
      (t->dtype != GT_STRING &&
       (H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) < 0 ||
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0))) {
    h5_fail(err, "tensor \"%.*s\": cannot describe its dataset", SHOWN, e->name);
    goto out;
  }
  did = H5Dcreate2(fid, dpath, ft, space, lcpl, dcpl, H5P_DEFAULT);
  if (did < 0) {
    h5_fail(err, "tensor \"%.*s\": cannot create dataset \"%.*s\"", SHOWN,
            e->name, SHOWN, dpath);
    goto out;
  }
  if (t->dtype == GT_STRING) {
    if (gt_storage_ready(t->storage, err) != GT_OK ||
        write_strings(did, t, err) != GT_OK) {
      gt_wrap(err, "tensor \"%.*s\"", SHOWN, e->name);
      goto out;
    }
  } else if (gt_tensor_nbytes(t) > 0) {
    haddr_t a = H5Dget_offset(did);
    if (a == HADDR_UNDEF) {
      h5_fail(err, "tensor \"%.*s\": dataset has no storage", SHOWN, e->name);
      goto out;
    }
    sl->off = (uint64_t)a;
    sl->has = 1;
  }
  rc = GT_OK;
out:
  if (did >= 0) H5Dclose(did);
  if (dcpl >= 0) H5Pclose(dcpl);
  if (space >= 0) H5Sclose(space);
  H5Tclose(ft);
  return rc;
}

/* Builds groups, attributes and (empty, allocated) datasets with libhdf5;
 * the tensor bytes are written afterwards at the recorded offsets. */
static int build_file(const char *tmp, const gt_save *s, const cJSON *layout,
                      slot *slots, gt_err *err) {
  const cJSON *groups = cJSON_GetObjectItemCaseSensitive(layout, "groups");
  const cJSON *dsets = cJSON_GetObjectItemCaseSensitive(layout, "datasets");
  if ((groups && !cJSON_IsArray(groups)) || (dsets && !cJSON_IsArray(dsets)))
    return gt_fail(err, "layout: groups and datasets must be lists");
  if (dsets && (size_t)cJSON_GetArraySize(dsets) != s->n)
    return gt_fail(err, "layout: %d datasets for %zu tensors",
                   cJSON_GetArraySize(dsets), s->n);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), lcpl = H5Pcreate(H5P_LINK_CREATE);
  hid_t fid = -1;
  int rc = GT_ERR;
  /* Big data blocks on 64-byte boundaries so a reader can map them. */
  if (fapl < 0 || lcpl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
      H5Pset_alignment(fapl, 1024, 64) < 0 ||
      H5Pset_create_intermediate_group(lcpl, 1) < 0 ||
      (fid = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0) {
    h5_fail(err, "cannot create the HDF5 file");
    goto out;
  }
  for (const cJSON *g = groups ? groups->child : NULL; g; g = g->next) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(g, "path");
    if (!cJSON_IsString(p) || !*p->valuestring) {
      gt_fail(err, "layout: a group without a path");
      goto out;
    }
    hid_t gid = open_or_create_group(fid, p->valuestring, lcpl);
    if (gid < 0) {
      h5_fail(err, "cannot create group \"%.*s\"", SHOWN, p->valuestring);
      goto out;
    }
    int arc = write_attrs(gid, p->valuestring,
                          cJSON_GetObjectItemCaseSensitive(g, "attrs"), err);
    H5Gclose(gid);
    if (arc != GT_OK) goto out;
  }
  const cJSON *d = dsets ? dsets->child : NULL;
  for (size_t i = 0; i < s->n; i++, d = d ? d->next : NULL) {
    const cJSON *p = d ? cJSON_GetObjectItemCaseSensitive(d, "path") : NULL;
    const char *dpath = cJSON_IsString(p) ? p->valuestring : s->entries[i].name;
    if (!*dpath) {
      gt_fail(err, "tensor \"%.*s\": empty dataset path", SHOWN, s->entries[i].name);
      goto out;
    }
    if (create_dataset(fid, lcpl, dpath, &s->entries[i], &slots[i], err) != GT_OK)
      goto out;
    const cJSON *attrs = d ? cJSON_GetObjectItemCaseSensitive(d, "attrs") : NULL;
    if (attrs) {
      hid_t did = H5Dopen2(fid, dpath, H5P_DEFAULT);
      int arc = did >= 0 ? write_attrs(did, dpath, attrs, err)
                         : h5_fail(err, "cannot reopen dataset \"%.*s\"", SHOWN, dpath);
      if (did >= 0) H5Dclose(did);
      if (arc != GT_OK) goto out;
    }
  }
  rc = GT_OK;
out:
  if (fid >= 0 && H5Fclose(fid) < 0 && rc == GT_OK)
    rc = h5_fail(err, "cannot finish the HDF5 file");
  if (fapl >= 0) H5Pclose(fapl);
  if (lcpl >= 0) H5Pclose(lcpl);
  H5Eclear2(H5E_DEFAULT);
  return rc;
}

typedef struct sink_ctx {
  int fd;
  uint64_t off;
  uint64_t done, total;
  const gt_save *s;
} sink_ctx;

static int pwrite_sink(void *ctx, const void *bytes, size_t n, gt_err *err) {
  sink_ctx *c = ctx;
  const unsigned char *p = bytes;
  while (n > 0) {
    ssize_t w = pwrite(c->fd, p, n, (off_t)c->off);
    if (w < 0) return gt_fail(err, "cannot write: %s", strerror(errno));
    p += w;
    n -= (size_t)w;
    c->off += (uint64_t)w;
    c->done += (uint64_t)w;
  }
  if (c->s->progress) c->s->progress(c->s->progress_ctx, c->done, c->total);
  return GT_OK;
}

int gt_hdf5_write(const char *path, const gt_save *s, gt_err *err) {
  if (h5_ready(err) != GT_OK) return GT_ERR;
  cJSON *layout = NULL;
  const gt_value *lv = s->metadata ? gt_value_get(s->metadata, "layout") : NULL;
  if (lv && lv->kind == GT_V_STR) {
    layout = cJSON_ParseWithLength(lv->str, lv->len);
    if (!layout || !cJSON_IsObject(layout)) {
      cJSON_Delete(layout);
      return gt_fail(err, "layout: not a JSON object");
    }
  } else if (!(layout = cJSON_CreateObject())) {
    return oom(err);
  }
  slot *slots = calloc(s->n ? s->n : 1, sizeof *slots);
  void *buf = NULL;
  gt_out o;
  memset(&o, 0, sizeof o);
  o.fd = -1;
  int rc = GT_ERR;
  if (!slots || posix_memalign(&buf, 64, GT_OUT_BUFSIZE) != 0) {
    buf = NULL;
    oom(err);
    goto out;
  }
  if (gt_out_open(&o, path, s, err) != GT_OK) goto out;
  if (build_file(o.tmp, s, layout, slots, err) != GT_OK) goto out;
  sink_ctx c = {o.fd, 0, 0, o.total, s};
  for (size_t i = 0; i < s->n; i++) {
    if (!slots[i].has) continue;
    c.off = slots[i].off;
    const gt_tensor *t = &s->entries[i].t;
    if (gt_stream(t, t->dtype, buf, GT_OUT_BUFSIZE, pwrite_sink, &c, 1, err) != GT_OK) {
      gt_wrap(err, "tensor \"%.*s\"", SHOWN, s->entries[i].name);
      goto out;
    }
  }
  rc = gt_out_commit(&o, err);
out:
  if (rc != GT_OK) gt_out_abort(&o);
  free(buf);
  free(slots);
  cJSON_Delete(layout);
  return rc;
}
