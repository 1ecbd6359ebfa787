/* write.c: the HDF5 writer on libhdf5 (see hdf5.h): groups and attributes
 * from a layout, one dataset per entry, data streamed to each dataset's
 * place in the file. Runs on the calling thread only (libhdf5 is not
 * thread-safe). */
#include "formats/hdf5/hdf5.h"
#include "formats/hdf5/h5.h"

#include <hdf5.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/copy.h"
#include "io/fileout.h"

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
                   GT_H5_SHOWN, opath);
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
                name, GT_H5_SHOWN, opath, type);
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
                name, GT_H5_SHOWN, opath, type);
        goto out;
      }
      double d = cJSON_IsBool(c) ? (double)cJSON_IsTrue(c) : c->valuedouble;
      if (strcmp(type, "bool") == 0) ((signed char *)buf)[i] = d != 0;
      else if (as_float) ((double *)buf)[i] = d;
      else ((long long *)buf)[i] = (long long)d;
    }
  } else {
    gt_fail(err, "layout: attribute \"%s\" of \"%.*s\": unknown type \"%s\"",
            name, GT_H5_SHOWN, opath, type);
    goto out;
  }
  if (!buf) {
    gt_h5_oom(err);
    goto out;
  }
  if (space < 0) goto h5err;
  aid = H5Acreate2(obj, name, ft, space, H5P_DEFAULT, H5P_DEFAULT);
  if (aid < 0 || H5Awrite(aid, mt, buf) < 0) goto h5err;
  rc = GT_OK;
  goto out;
h5err:
  gt_h5_fail(err, "cannot write attribute \"%s\" of \"%.*s\"", name, GT_H5_SHOWN, opath);
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
    return gt_fail(err, "layout: attrs of \"%.*s\" must be a list", GT_H5_SHOWN, path);
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
  if (!p) return gt_h5_oom(err);
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
      rc = gt_h5_oom(err);
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
    rc = gt_h5_fail(err, "cannot write the strings");
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
    return gt_fail(err, "tensor \"%.*s\": HDF5 has no %s type", GT_H5_SHOWN, e->name,
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
    gt_h5_fail(err, "tensor \"%.*s\": cannot describe its dataset", GT_H5_SHOWN, e->name);
    goto out;
  }
  did = H5Dcreate2(fid, dpath, ft, space, lcpl, dcpl, H5P_DEFAULT);
  if (did < 0) {
    gt_h5_fail(err, "tensor \"%.*s\": cannot create dataset \"%.*s\"", GT_H5_SHOWN,
            e->name, GT_H5_SHOWN, dpath);
    goto out;
  }
  if (t->dtype == GT_STRING) {
    if (gt_storage_ready(t->storage, err) != GT_OK ||
        write_strings(did, t, err) != GT_OK) {
      gt_wrap(err, "tensor \"%.*s\"", GT_H5_SHOWN, e->name);
      goto out;
    }
  } else if (gt_tensor_nbytes(t) > 0) {
    haddr_t a = H5Dget_offset(did);
    if (a == HADDR_UNDEF) {
      gt_h5_fail(err, "tensor \"%.*s\": dataset has no storage", GT_H5_SHOWN, e->name);
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
    gt_h5_fail(err, "cannot create the HDF5 file");
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
      gt_h5_fail(err, "cannot create group \"%.*s\"", GT_H5_SHOWN, p->valuestring);
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
      gt_fail(err, "tensor \"%.*s\": empty dataset path", GT_H5_SHOWN, s->entries[i].name);
      goto out;
    }
    if (create_dataset(fid, lcpl, dpath, &s->entries[i], &slots[i], err) != GT_OK)
      goto out;
    const cJSON *attrs = d ? cJSON_GetObjectItemCaseSensitive(d, "attrs") : NULL;
    if (attrs) {
      hid_t did = H5Dopen2(fid, dpath, H5P_DEFAULT);
      int arc = did >= 0 ? write_attrs(did, dpath, attrs, err)
                         : gt_h5_fail(err, "cannot reopen dataset \"%.*s\"", GT_H5_SHOWN, dpath);
      if (did >= 0) H5Dclose(did);
      if (arc != GT_OK) goto out;
    }
  }
  rc = GT_OK;
out:
  if (fid >= 0 && H5Fclose(fid) < 0 && rc == GT_OK)
    rc = gt_h5_fail(err, "cannot finish the HDF5 file");
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

int gt_hdf5_write(const char *path, const gt_save *s, const char *layout_json,
                  size_t layout_len, gt_err *err) {
  if (gt_h5_ready(err) != GT_OK) return GT_ERR;
  cJSON *layout = NULL;
  if (layout_json) {
    layout = cJSON_ParseWithLength(layout_json, layout_len);
    if (!layout || !cJSON_IsObject(layout)) {
      cJSON_Delete(layout);
      return gt_fail(err, "layout: not a JSON object");
    }
  } else if (!(layout = cJSON_CreateObject())) {
    return gt_h5_oom(err);
  }
  slot *slots = calloc(s->n ? s->n : 1, sizeof *slots);
  void *buf = NULL;
  gt_out o;
  memset(&o, 0, sizeof o);
  o.fd = -1;
  int rc = GT_ERR;
  if (!slots || posix_memalign(&buf, 64, GT_OUT_BUFSIZE) != 0) {
    buf = NULL;
    gt_h5_oom(err);
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
      gt_wrap(err, "tensor \"%.*s\"", GT_H5_SHOWN, s->entries[i].name);
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
