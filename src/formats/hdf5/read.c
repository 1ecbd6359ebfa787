/* read.c: the generic HDF5 reader on libhdf5 (see hdf5.h; the writer is
 * write.c, what the two share is in h5.h).
 *
 *   1. zero-copy read-only file images
 *   2. HDF5 types -> graft dtypes
 *   3. attributes -> metadata values
 *   4. datasets -> tensors (views on the image, or lazy reads)
 *   5. the walk over groups
 *
 * libhdf5 is not thread-safe (h5.h): lazy tensors are materialised by
 * gt_storage_ready, which is only called before copy work is split across
 * workers. */
#include "formats/hdf5/hdf5.h"
#include "formats/hdf5/h5.h"
#include "io/grow.h"
#include "io/sandbox.h"

#include <hdf5.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64       /* groups nested deeper are refused */

/* ------------------------------------------------------------------ */
/* 1. File images                                                       */
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

static void h5file_close(void *p) {
  h5file *f = p;
  H5Fclose(f->fid);
  H5Eclear2(H5E_DEFAULT);
  gt_storage_release(f->image);
  free(f);
}

/* In a sandbox child the close waits until the answer is sent (libhdf5
 * tearing down its metadata cache is some 6% of an index walk): the
 * worker closes the file before its next request, a one-shot child just
 * exits. */
static void h5file_release(h5file *f) {
  if (!f || --f->refs > 0) return;
  gt_sandbox_defer(h5file_close, f);
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
    gt_h5_fail(err, "cannot open as HDF5");
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
/* 2. Types                                                             */
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
/* 3. Attributes                                                        */
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
  gt_h5_place *places;    /* places[i] for m->entries[i] */
  size_t places_cap;
} walk;

/* A walk of f into m with its empty value trees (GT_ERR: out of memory;
 * walk_free it either way). */
static int walk_init(walk *w, h5file *f, gt_model *m, gt_err *err) {
  memset(w, 0, sizeof *w);
  w->f = f;
  w->m = m;
  w->err = err;
  w->attrs = gt_value_new(GT_V_MAP);
  w->types = gt_value_new(GT_V_MAP);
  w->groups = gt_value_new(GT_V_LIST);
  w->skipped = gt_value_new(GT_V_MAP);
  if (!w->attrs || !w->types || !w->groups || !w->skipped) return gt_h5_oom(err);
  return GT_OK;
}

static void walk_free(walk *w) {
  free(w->places);
  gt_value_free(w->attrs);
  gt_value_free(w->types);
  gt_value_free(w->groups);
  gt_value_free(w->skipped);
  free(w->seen);
}

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
            GT_H5_SHOWN, obj, GT_H5_SHOWN, name, (long long)np);
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
    gt_h5_fail(w->err, "%.*s: cannot read attribute \"%.*s\"", GT_H5_SHOWN, obj, GT_H5_SHOWN,
            name);
    goto done;
  } else if (sc == H5S_SCALAR && list->n == 1) {
    out = list->items[0];
    list->n = 0;
  } else {
    out = list;
    list = NULL;
  }
  if (!out) gt_h5_oom(w->err);
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
  gt_sandbox_note("reading attribute \"%.100s\" of \"%.100s\"", name, a->obj);
  hid_t aid = H5Aopen(loc, name, H5P_DEFAULT);
  if (aid < 0) {
    gt_h5_fail(a->w->err, "%.*s: cannot open attribute \"%.*s\"", GT_H5_SHOWN, a->obj,
            GT_H5_SHOWN, name);
    a->failed = 1;
    return -1;
  }
  char tname[48] = "";
  gt_value *v = attr_value(a->w, aid, a->obj, name, tname, sizeof tname);
  H5Aclose(aid);
  if (!v || gt_value_setk(a->vals, name, v) != GT_OK ||
      gt_value_setk(a->types, name, gt_value_str(tname, strlen(tname))) !=
          GT_OK) {
    if (v) gt_h5_oom(a->w->err);
    a->failed = 1;
    return -1;
  }
  return 0;
}

/* The iteration index h5py uses: creation order when the object's creation
 * property list p (closed here) tracks it, as get reads the flags (for
 * attributes or for links), else names. */
static H5_index_t order_index(hid_t p, herr_t (*get)(hid_t, unsigned *)) {
  unsigned flags = 0;
  if (p >= 0) {
    if (get(p, &flags) < 0) flags = 0;
    H5Pclose(p);
  }
  H5Eclear2(H5E_DEFAULT);
  return (flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
}

static H5_index_t attr_index(hid_t obj) {
  return order_index(H5Iget_type(obj) == H5I_DATASET ? H5Dget_create_plist(obj)
                                                     : H5Gget_create_plist(obj),
                     H5Pget_attr_creation_order);
}

/* Attributes of obj (at path) into attrs[path] / attr_types[path]; objects
 * without attributes get no entry. */
static int read_attrs(walk *w, hid_t obj, const char *path) {
  obj_info oi;
  if (obj_info_of(obj, &oi, H5O_INFO_NUM_ATTRS) < 0)
    return gt_h5_fail(w->err, "%.*s: cannot read its object header", GT_H5_SHOWN, path);
  if (oi.num_attrs == 0) return GT_OK;
  attr_walk a = {w, path, gt_value_new(GT_V_MAP), gt_value_new(GT_V_MAP), 0};
  if (!a.vals || !a.types) {
    gt_value_free(a.vals);
    gt_value_free(a.types);
    return gt_h5_oom(w->err);
  }
  hsize_t idx = 0;
  herr_t rc = H5Aiterate2(obj, attr_index(obj), H5_ITER_INC, &idx, attr_cb, &a);
  if (rc < 0 || a.failed) {
    gt_value_free(a.vals);
    gt_value_free(a.types);
    if (!a.failed)
      return gt_h5_fail(w->err, "%.*s: cannot list its attributes", GT_H5_SHOWN, path);
    return GT_ERR;
  }
  if (gt_value_setk(w->attrs, path, a.vals) != GT_OK) {
    gt_value_free(a.types);
    return gt_h5_oom(w->err);
  }
  if (gt_value_setk(w->types, path, a.types) != GT_OK) return gt_h5_oom(w->err);
  return GT_OK;
}

/* ------------------------------------------------------------------ */
/* 4. Datasets                                                          */
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
    if (!tmp) gt_h5_oom(err);
    else gt_h5_fail(err, "dataset \"%.*s\": cannot read its dataspace", GT_H5_SHOWN, c->path);
    goto out;
  }
  if (H5Dread(did, c->memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0) {
    gt_h5_fail(err, "dataset \"%.*s\": cannot read", GT_H5_SHOWN, c->path);
    goto out;
  }
  size_t total = 0;
  for (uint64_t i = 0; i < c->numel; i++) total += tmp[i] ? strlen(tmp[i]) : 0;
  c->blob = malloc(total ? total : 1);
  if (!c->blob || gt_storage_alloc_data(s, err) != GT_OK) {
    if (!c->blob) gt_h5_oom(err);
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
    return gt_fail(err, "dataset \"%.*s\": too large", GT_H5_SHOWN, c->path);
  c->blob = malloc(total ? total : 1);
  if (!c->blob) return gt_h5_oom(err);
  if (total > 0 &&
      H5Dread(did, c->memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, c->blob) < 0)
    return gt_h5_fail(err, "dataset \"%.*s\": cannot read", GT_H5_SHOWN, c->path);
  if (gt_storage_alloc_data(s, err) != GT_OK) return GT_ERR;
  for (uint64_t i = 0; i < c->numel; i++) {
    gt_value *v = fixed_item(c->blob + i * c->width, c->width, c->pad);
    if (!v) return gt_h5_oom(err);
    /* fixed_item copied the bytes; the head points into the blob instead. */
    gt_str e = {c->blob + i * c->width, v->len};
    gt_value_free(v);
    memcpy(s->data + i * sizeof e, &e, sizeof e);
  }
  return GT_OK;
}

static int load_dataset(gt_storage *s, gt_err *err) {
  lazy_ctx *c = s->ctx;
  gt_sandbox_note("reading the data of dataset \"%.160s\"", c->path);
  if (gt_h5_ready(err) != GT_OK) return GT_ERR;
  hid_t did = H5Dopen2(c->f->fid, c->path, H5P_DEFAULT);
  if (did < 0) return gt_h5_fail(err, "dataset \"%.*s\": cannot open", GT_H5_SHOWN, c->path);
  int rc;
  if (c->strings && c->width) {
    rc = load_fixed_strings(s, c, did, err);
  } else if (c->strings) {
    rc = load_strings(s, c, did, err);
  } else if (gt_storage_alloc_data(s, err) != GT_OK) {
    rc = GT_ERR;
  } else if (s->size > 0 &&
             H5Dread(did, c->memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->data) < 0) {
    rc = gt_h5_fail(err, "dataset \"%.*s\": cannot read", GT_H5_SHOWN, c->path);
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
    return gt_h5_oom(w->err), NULL;
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
    return gt_h5_oom(w->err);
  return GT_OK;
}

static int add_dataset(walk *w, hid_t did, const char *path) {
  gt_sandbox_note("reading dataset \"%.160s\"", path);
  hid_t ft = H5Dget_type(did), space = H5Dget_space(did);
  int rc = GT_ERR;
  gt_storage *s = NULL;
  if (ft < 0 || space < 0) {
    gt_h5_fail(w->err, "dataset \"%.*s\": cannot read its type or shape", GT_H5_SHOWN, path);
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
    gt_fail(w->err, "dataset \"%.*s\": %d dimensions (at most %d)", GT_H5_SHOWN, path,
            nd, GT_MAXDIM);
    goto out;
  }
  hsize_t dims[GT_MAXDIM];
  int64_t shape[GT_MAXDIM], numel;
  if (nd > 0 && H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
    gt_h5_fail(w->err, "dataset \"%.*s\": cannot read its shape", GT_H5_SHOWN, path);
    goto out;
  }
  for (int i = 0; i < nd; i++) {
    if (dims[i] > (hsize_t)INT64_MAX) {
      gt_fail(w->err, "dataset \"%.*s\": dimension %d too large", GT_H5_SHOWN, path, i);
      goto out;
    }
    shape[i] = (int64_t)dims[i];
  }
  if (gt_numel(nd, shape, &numel, w->err) != GT_OK) {
    gt_wrap(w->err, "dataset \"%.*s\"", GT_H5_SHOWN, path);
    goto out;
  }
  uint64_t esize = gt_dtype_size(dt), nbytes, off = 0;
  int in_place_ok = 0;
  if (gt_mul_u64((uint64_t)numel, esize, (unsigned long long *)&nbytes)) {
    gt_fail(w->err, "dataset \"%.*s\": size overflows", GT_H5_SHOWN, path);
    goto out;
  }
  if (dt == GT_STRING) {
    int vlen = H5Tis_variable_str(ft) > 0;
    hid_t mt = H5Tcopy(vlen ? H5T_C_S1 : ft);
    if (mt < 0 || (vlen && (H5Tset_size(mt, H5T_VARIABLE) < 0 ||
                            H5Tset_cset(mt, H5Tget_cset(ft)) < 0))) {
      gt_h5_fail(w->err, "dataset \"%.*s\": string type", GT_H5_SHOWN, path);
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
  } else if (H5Tget_size(ft) == esize && (in_place_ok = in_place(did, &off) == 0)) {
    uint64_t end;
    if (gt_add_u64(off, nbytes, (unsigned long long *)&end) ||
        end > w->f->image->size) {
      gt_fail(w->err, "dataset \"%.*s\": its %llu bytes at offset %llu lie past "
              "the end of the file (%zu bytes): truncated?", GT_H5_SHOWN, path,
              (unsigned long long)nbytes, (unsigned long long)off,
              w->f->image->size);
      goto out;
    }
    size_t align = gt_dtype_is_complex(dt) ? esize / 2 : esize;
    s = gt_storage_aligned(w->f->image, off, nbytes, align, w->err);
  } else {
    hid_t mt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
    if (mt < 0) {
      gt_h5_fail(w->err, "dataset \"%.*s\": no native type for it", GT_H5_SHOWN, path);
      goto out;
    }
    s = lazy_storage(w, path, mt, 0, (uint64_t)numel, nbytes);
    swap = 0;
  }
  if (!s) goto out;
  gt_tensor t;
  if (gt_tensor_make(&t, s, dt, nd, shape, 0, w->err) != GT_OK) {
    gt_wrap(w->err, "dataset \"%.*s\"", GT_H5_SHOWN, path);
    goto out;
  }
  t.swap = swap;
  if (gt_grow((void **)&w->places, &w->places_cap, w->m->n + 1, sizeof *w->places)) {
    gt_tensor_free(&t);
    gt_h5_oom(w->err);
    goto out;
  }
  w->places[w->m->n] = (gt_h5_place){!in_place_ok, off, nbytes,
                                     gt_dtype_is_complex(dt) ? esize / 2 : esize};
  rc = gt_model_add(w->m, path, strlen(path), &t, w->err);
  /* libhdf5 has read this dataset's object header out of the image into
   * its metadata cache; object headers sit between the datasets' data, and
   * each touch may map a whole large folio, so drop them as the walk goes
   * every 16 datasets (the open stays some 32 MiB resident at most,
   * whatever the file's size; each call walks the whole mapping). A
   * sandbox child skips it: its pages go with it, and the parent never
   * touches the headers. */
  if (rc == GT_OK && w->m->n % 16 == 0 && !gt_sandbox_in_child())
    gt_storage_done_with(w->f->image, 0, w->f->image->size);
out:
  if (s) gt_storage_release(s);
  if (ft >= 0) H5Tclose(ft);
  if (space >= 0) H5Sclose(space);
  return rc;
}

/* ------------------------------------------------------------------ */
/* 5. The walk                                                          */
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
    gt_h5_oom(w->err);
    lw->failed = 1;
    return -1;
  }
  int rc = GT_OK;
  obj_info oi;
  obj_id id;
  if (obj_info_by_name(gid, name, &oi, H5O_INFO_BASIC) < 0) {
    rc = gt_h5_fail(w->err, "\"%.*s\": cannot read its object header", GT_H5_SHOWN, path);
  } else if (oi.type == H5O_TYPE_GROUP) {
    id = obj_id_of(&oi);
    for (int i = 0; i < w->depth; i++)
      if (same_obj(gid, &w->seen[i], &id)) {
        rc = gt_fail(w->err, "group \"%.*s\" contains itself (a link cycle)",
                     GT_H5_SHOWN, path);
        break;
      }
    hid_t sub = rc == GT_OK ? H5Gopen2(gid, name, H5P_DEFAULT) : -1;
    if (rc == GT_OK && sub < 0)
      rc = gt_h5_fail(w->err, "group \"%.*s\": cannot open", GT_H5_SHOWN, path);
    if (rc == GT_OK) {
      w->seen[w->depth] = id;
      rc = walk_group(w, sub, path);
    }
    if (sub >= 0) H5Gclose(sub);
  } else if (oi.type == H5O_TYPE_DATASET) {
    hid_t did = H5Dopen2(gid, name, H5P_DEFAULT);
    if (did < 0) rc = gt_h5_fail(w->err, "dataset \"%.*s\": cannot open", GT_H5_SHOWN, path);
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
  return order_index(H5Gget_create_plist(gid), H5Pget_link_creation_order);
}

static int walk_group(walk *w, hid_t gid, const char *path) {
  gt_sandbox_note("reading group \"%.160s\"", *path ? path : "/");
  if (w->depth >= MAX_DEPTH)
    return gt_fail(w->err, "group \"%.*s\": nested deeper than %d", GT_H5_SHOWN, path,
                   MAX_DEPTH);
  if (*path && gt_value_push(w->groups, gt_value_str(path, strlen(path))) != GT_OK)
    return gt_h5_oom(w->err);
  if (read_attrs(w, gid, *path ? path : "/") != GT_OK) return GT_ERR;
  link_walk lw = {w, path, 0};
  hsize_t idx = 0;
  w->depth++;
  herr_t rc = H5Literate(gid, link_index(gid), H5_ITER_INC, &idx, link_cb, &lw);
  w->depth--;
  if (lw.failed) return GT_ERR;
  if (rc < 0)
    return gt_h5_fail(w->err, "group \"%.*s\": cannot list its members", GT_H5_SHOWN,
                   *path ? path : "/");
  return GT_OK;
}

int gt_h5_index(gt_storage *image, gt_model *m, gt_h5_place **places,
                gt_err *err) {
  uint64_t base = 0;
  *places = NULL;
  if (gt_storage_ready(image, err) != GT_OK) return GT_ERR;
  if (!gt_hdf5_sniff(image->data, image->size, &base))
    return gt_fail(err, "not an HDF5 file (no HDF5 signature)");
  if (gt_h5_ready(err) != GT_OK) return GT_ERR;
  h5file *f = open_image(image, err);
  if (!f) return GT_ERR;
  walk w;
  int rc = walk_init(&w, f, m, err);
  m->format = "hdf5";
  m->meta = gt_value_new(GT_V_MAP);
  w.seen = calloc(MAX_DEPTH + 1, sizeof *w.seen);
  if (rc == GT_OK && (!w.seen || !m->meta)) rc = gt_h5_oom(err);
  if (rc != GT_OK) goto out;
  hid_t root = H5Gopen2(f->fid, "/", H5P_DEFAULT);
  if (root < 0) {
    rc = gt_h5_fail(err, "cannot open the root group");
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
    gt_h5_oom(err);
    goto out;
  }
  w.attrs = w.types = w.groups = w.skipped = NULL;
  *places = w.places;
  w.places = NULL;
  rc = GT_OK;
out:
  walk_free(&w);
  h5file_release(f);
  return rc;
}

int gt_h5_read_one(gt_storage *image, const char *path, gt_model *m,
                   gt_err *err) {
  if (gt_h5_ready(err) != GT_OK) return GT_ERR;
  h5file *f = open_image(image, err);
  if (!f) return GT_ERR;
  walk w;
  hid_t did = -1;
  int rc = GT_ERR;
  if (walk_init(&w, f, m, err) != GT_OK) goto out;
  /* The dtype the index gave (bfloat16 marks included) travels with the
   * request; only the bytes are read here. */
  if ((did = H5Dopen2(f->fid, path, H5P_DEFAULT)) < 0) {
    gt_h5_fail(err, "dataset \"%.*s\": cannot open", GT_H5_SHOWN, path);
    goto out;
  }
  if (add_dataset(&w, did, path) != GT_OK) goto out;
  if (m->n != 1) {
    gt_fail(err, "dataset \"%.*s\": has no data graft can read", GT_H5_SHOWN, path);
    goto out;
  }
  rc = gt_storage_ready(m->entries[0].t.storage, err);
out:
  if (did >= 0) H5Dclose(did);
  walk_free(&w);
  h5file_release(f);
  return rc;
}
