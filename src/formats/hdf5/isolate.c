/* isolate.c: libhdf5 runs in a child process (gt_hdf5_read, see hdf5.h).
 *
 * libhdf5 cannot be made safe on hostile metadata: corrupt global heaps,
 * B-trees or object headers make it segfault or loop. So the parent never
 * lets libhdf5 read a file it did not write: the walk over groups, datasets
 * and attributes (read.c's gt_h5_index) and every later read libhdf5 does
 * for chunked, compressed, compact or string data (gt_h5_read_one) run in a
 * sandboxed child (io/sandbox.h: rlimits, seccomp, a wall-time limit): the
 * persistent worker, which maps the file itself, when the image is a window
 * of a file mapped from disk, else a child forked per call. The parent gets
 * bytes over a socket or pipe and trusts none of them.
 *
 * Index result, on the wire (io/wire.h), in order:
 *   meta         a value tree (the reader's m->meta)
 *   u64 n        entries, then per entry:
 *     str name, u64 dtype, u64 swap, u64 ndim, ndim x u64 shape,
 *     u64 lazy, u64 off, u64 nbytes, u64 align
 * Contiguous datasets (lazy 0) become views of the parent's own image
 * (zero-copy, as before); the others lazy storages whose loader asks a new
 * child for the bytes: numeric data as they are, strings as
 *   u64 count, count x (u64 len, bytes).
 * The parent re-checks everything: dtype ids, ndim, element counts against
 * nbytes, places inside the image, string counts and lengths. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hdf5/h5.h"
#include "formats/hdf5/hdf5.h"
#include "io/sandbox.h"
#include "io/wire.h"

/* The child's budget beyond the parent's own address space: libhdf5's
 * caches plus the largest dataset read whole. */
#define INDEX_MEM ((uint64_t)2 << 30)

static unsigned timeout_ms(void) {
  const char *e = getenv("GRAFT_HDF5_TIMEOUT");
  long v = e ? strtol(e, NULL, 10) : 0;
  return v > 0 && v < 86400 ? (unsigned)v * 1000u : 60000u;
}

/* The mapped file (descriptor, offset) whose window image is, if it is
 * one: then the sandbox's persistent worker maps the bytes itself. */
static int file_of(const gt_storage *image, int *fd, uint64_t *off) {
  const gt_storage *r = image;
  while (r->parent) r = r->parent;
  if (r->kind != GT_STORAGE_MAPPING || r->fd < 0 || !r->data || !image->data ||
      image->data < r->data || image->size > r->size ||
      (size_t)(image->data - r->data) > r->size - image->size)
    return 0;
  *fd = r->fd;
  *off = (uint64_t)(image->data - r->data);
  return 1;
}

/* In the worker: the mapped file as the storage the reader wants. One
 * request at a time; the reader's references (and the deferred closes
 * that drop them) are gone before the worker unmaps the bytes, and this
 * first reference is never dropped. */
static gt_storage borrowed;

static gt_storage *borrow(const unsigned char *file, size_t len) {
  memset(&borrowed, 0, sizeof borrowed);
  borrowed.refs = 1;
  borrowed.kind = GT_STORAGE_HEAP;
  borrowed.data = (unsigned char *)file;
  borrowed.size = len;
  borrowed.fd = -1;
  return &borrowed;
}

/* A fault of the child (a crash, a hang, a runaway allocation) says the
 * file is corrupt; the child's own errors (libhdf5's error stack, graft's
 * checks) are passed on as they are. fn(ctx) runs in a child of its own,
 * or serve(req) in the worker when image is a window of a mapped file. */
static int run(gt_sandbox_fn fn, void *ctx, gt_sandbox_serve_fn serve,
               const char *req, const gt_storage *image, uint64_t extra_mem,
               uint64_t max_out, unsigned char **out, size_t *len,
               gt_err *err) {
  gt_sandbox_limits lim = {timeout_ms(), INDEX_MEM + extra_mem, max_out};
  int fd;
  uint64_t off;
  int rc = gt_sandbox_use_worker() && file_of(image, &fd, &off)
               ? gt_sandbox_call(serve, req, strlen(req), fd, off, image->size,
                                 &lim, out, len, err)
               : gt_sandbox_run(fn, ctx, &lim, out, len, err);
  if (rc != GT_SANDBOX_FAULT) return rc;
  char msg[sizeof err->msg];
  snprintf(msg, sizeof msg, "libhdf5 %.400s: the file is corrupt (libhdf5 "
           "runs in a separate process, so graft is unharmed)", err->msg);
  memcpy(err->msg, msg, sizeof msg);
  return GT_ERR;
}

/* ------------------------------------------------------------ the index */

static int put(gt_sbuf *b, uint64_t x, gt_err *err) {
  return gt_wire_put_u64(b, x, err);
}

static int index_child(void *ctx, gt_sbuf *out, gt_err *err) {
  gt_storage *image = ctx;
  gt_model m;
  gt_model_init(&m);
  gt_h5_place *pl = NULL;
  int rc = gt_h5_index(image, &m, &pl, err);
  if (rc == GT_OK) rc = gt_wire_put_value(out, m.meta, err);
  if (rc == GT_OK) rc = put(out, m.n, err);
  for (size_t i = 0; rc == GT_OK && i < m.n; i++) {
    const gt_tensor *t = &m.entries[i].t;
    const char *name = m.entries[i].name;
    rc = gt_wire_put_str(out, name, strlen(name), err);
    if (rc == GT_OK) rc = put(out, (uint64_t)t->dtype, err);
    if (rc == GT_OK) rc = put(out, (uint64_t)t->swap, err);
    if (rc == GT_OK) rc = put(out, (uint64_t)t->ndim, err);
    for (int d = 0; rc == GT_OK && d < t->ndim; d++)
      rc = put(out, (uint64_t)t->shape[d], err);
    if (rc == GT_OK) rc = put(out, (uint64_t)pl[i].lazy, err);
    if (rc == GT_OK) rc = put(out, pl[i].off, err);
    if (rc == GT_OK) rc = put(out, pl[i].nbytes, err);
    if (rc == GT_OK) rc = put(out, (uint64_t)pl[i].align, err);
  }
  free(pl);
  gt_model_free(&m);
  return rc;
}

static int index_serve(const unsigned char *req, size_t req_len,
                       const unsigned char *file, size_t len, gt_sbuf *out,
                       gt_err *err) {
  (void)req;
  (void)req_len;
  return index_child(borrow(file, len), out, err);
}

/* ------------------------------------------------------- lazy datasets */

typedef struct lazy_req {
  gt_storage *image;    /* retained */
  char *path;
  gt_dtype dtype;
  uint64_t numel;
  char *blob;           /* string bytes the gt_str heads point into */
} lazy_req;

static void free_req(void *p) {
  lazy_req *r = p;
  if (!r) return;
  gt_storage_release(r->image);
  free(r->path);
  free(r->blob);
  free(r);
}

static int read_child(void *ctx, gt_sbuf *out, gt_err *err) {
  lazy_req *r = ctx;
  gt_model m;
  gt_model_init(&m);
  int rc = gt_h5_read_one(r->image, r->path, &m, err);
  if (rc == GT_OK) {
    const gt_tensor *t = &m.entries[0].t;
    const gt_storage *s = t->storage;
    if (t->dtype != GT_STRING) {
      rc = gt_sbuf_put(out, s->data, s->size, err);
    } else {
      size_t n = s->size / sizeof(gt_str);
      rc = put(out, n, err);
      for (size_t i = 0; rc == GT_OK && i < n; i++) {
        gt_str e;
        memcpy(&e, s->data + i * sizeof e, sizeof e);
        rc = gt_wire_put_str(out, e.p, e.n, err);
      }
    }
  }
  gt_model_free(&m);
  return rc;
}

/* In the worker: req is the dataset's path. */
static int read_serve(const unsigned char *req, size_t req_len,
                      const unsigned char *file, size_t len, gt_sbuf *out,
                      gt_err *err) {
  (void)req_len;
  lazy_req r = {borrow(file, len), (char *)req, GT_U8, 0, NULL};
  return read_child(&r, out, err);
}

/* Strings arrive as (count, (len, bytes)...): one blob, heads into it. */
static int take_strings(gt_storage *s, lazy_req *r, const unsigned char *p,
                        size_t n, gt_err *err) {
  gt_wire w = {p, n, 0};
  uint64_t count;
  if (gt_wire_u64(&w, &count, err) != GT_OK) return GT_ERR;
  if (count != r->numel)
    return gt_fail(err, "%llu strings for %llu elements",
                   (unsigned long long)count, (unsigned long long)r->numel);
  /* The strings' bytes are fewer than the message's: one blob of n. */
  if (!(r->blob = malloc(n ? n : 1))) return gt_fail(err, "out of memory");
  if (gt_storage_alloc_data(s, err) != GT_OK) return GT_ERR;
  size_t at = 0;
  for (uint64_t i = 0; i < count; i++) {
    const unsigned char *b;
    size_t len;
    if (gt_wire_str(&w, &b, &len, err) != GT_OK) return GT_ERR;
    if (len) memcpy(r->blob + at, b, len);
    gt_str e = {r->blob + at, len};
    memcpy(s->data + i * sizeof e, &e, sizeof e);
    at += len;
  }
  return GT_OK;
}

static int load_isolated(gt_storage *s, gt_err *err) {
  lazy_req *r = s->ctx;
  unsigned char *out = NULL;
  size_t n = 0;
  /* A string's message is at most 8 bytes per element plus its bytes; the
   * latter are bounded only by the file: allow the image's size. */
  uint64_t cap = r->dtype == GT_STRING ? 8 + 8 * r->numel + r->image->size
                                       : (uint64_t)s->size;
  int rc = run(read_child, r, read_serve, r->path, r->image,
               (uint64_t)s->size * 2, cap, &out, &n, err);
  if (rc == GT_OK) {
    if (r->dtype == GT_STRING) {
      rc = take_strings(s, r, out, n, err);
    } else if (n != s->size) {
      rc = gt_fail(err, "libhdf5 gave %zu bytes for %zu", n, s->size);
    } else if ((rc = gt_storage_alloc_data(s, err)) == GT_OK && n) {
      memcpy(s->data, out, n);
    }
  }
  free(out);
  return rc == GT_OK ? GT_OK : gt_wrap(err, "dataset \"%.*s\"", GT_H5_SHOWN, r->path);
}

static gt_storage *lazy_storage(gt_storage *image, const unsigned char *name,
                                size_t name_len, gt_dtype dt, uint64_t numel,
                                uint64_t nbytes, gt_err *err) {
  lazy_req *r = calloc(1, sizeof *r);
  if (!r || !(r->path = malloc(name_len + 2))) {
    free(r);
    return gt_fail(err, "out of memory"), NULL;
  }
  /* Tensor names are dataset paths without the leading '/'. */
  r->path[0] = '/';
  memcpy(r->path + 1, name, name_len);
  r->path[name_len + 1] = 0;
  r->image = image;
  gt_storage_retain(image);
  r->dtype = dt;
  r->numel = numel;
  return gt_storage_lazy((size_t)nbytes, NULL, load_isolated, r, free_req, err);
}

/* ------------------------------------------------------- the parent side */

static int get(gt_wire *w, uint64_t *x, uint64_t max, const char *what,
               gt_err *err) {
  if (gt_wire_u64(w, x, err) != GT_OK) return GT_ERR;
  if (*x > max) return gt_fail(err, "sandbox result: bad %s", what);
  return GT_OK;
}

static int add_entry(gt_storage *image, gt_wire *w, gt_model *m, gt_err *err) {
  const unsigned char *name;
  size_t name_len;
  uint64_t dt, swap, nd, lazy, off, nbytes, align, end;
  int64_t shape[GT_MAXDIM], numel;
  if (gt_wire_str(w, &name, &name_len, err) != GT_OK ||
      get(w, &dt, GT_NDTYPES - 1, "dtype", err) != GT_OK ||
      get(w, &swap, 1, "byte order", err) != GT_OK ||
      get(w, &nd, GT_MAXDIM, "rank", err) != GT_OK)
    return GT_ERR;
  if (memchr(name, 0, name_len))
    return gt_fail(err, "sandbox result: a name holds a NUL byte");
  for (uint64_t d = 0; d < nd; d++) {
    uint64_t x;
    if (get(w, &x, (uint64_t)INT64_MAX, "dimension", err) != GT_OK) return GT_ERR;
    shape[d] = (int64_t)x;
  }
  if (get(w, &lazy, 1, "place", err) != GT_OK || gt_wire_u64(w, &off, err) ||
      gt_wire_u64(w, &nbytes, err) || get(w, &align, 64, "alignment", err))
    return GT_ERR;
  if (gt_numel((int)nd, shape, &numel, err) != GT_OK) return GT_ERR;
  unsigned long long want;
  if (gt_mul_u64((uint64_t)numel, gt_dtype_size((gt_dtype)dt), &want) ||
      want != nbytes || nbytes > SIZE_MAX)
    return gt_fail(err, "dataset \"%.*s\": %llu bytes for its shape",
                   (int)(name_len < GT_H5_SHOWN ? name_len : GT_H5_SHOWN),
                   (const char *)name, (unsigned long long)nbytes);
  gt_storage *s;
  if (!lazy) {
    if (gt_add_u64(off, nbytes, (unsigned long long *)&end) || end > image->size)
      return gt_fail(err, "dataset \"%.*s\": its %llu bytes at offset %llu lie "
                     "past the end of the file",
                     (int)(name_len < GT_H5_SHOWN ? name_len : GT_H5_SHOWN),
                     (const char *)name,
                     (unsigned long long)nbytes, (unsigned long long)off);
    s = gt_storage_aligned(image, off, nbytes, align ? align : 1, err);
  } else {
    s = lazy_storage(image, name, name_len, (gt_dtype)dt, (uint64_t)numel,
                     nbytes, err);
  }
  if (!s) return GT_ERR;
  gt_tensor t;
  int rc = gt_tensor_make(&t, s, (gt_dtype)dt, (int)nd, shape, 0, err);
  gt_storage_release(s);
  if (rc != GT_OK) return GT_ERR;
  t.swap = (int)swap;
  return gt_model_add(m, (const char *)name, name_len, &t, err);
}

int gt_hdf5_read(gt_storage *image, gt_model *m, gt_err *err) {
  uint64_t base = 0;
  if (gt_storage_ready(image, err) != GT_OK) return GT_ERR;
  if (!gt_hdf5_sniff(image->data, image->size, &base))
    return gt_fail(err, "not an HDF5 file (no HDF5 signature)");
  /* libhdf5 initialises itself here, once, rather than in every child. */
  if (gt_h5_ready(err) != GT_OK) return GT_ERR;
  unsigned char *out = NULL;
  size_t n = 0;
  /* The index (names, shapes, attributes) is smaller than the file's
   * metadata, which is smaller than the file; 64 MiB covers headers of
   * files with no data at all. */
  uint64_t cap = image->size + ((uint64_t)64 << 20);
  if (run(index_child, image, index_serve, "", image, 0, cap, &out, &n, err) !=
      GT_OK)
    return GT_ERR;
  gt_wire w = {out, n, 0};
  uint64_t count;
  int rc = gt_wire_value(&w, &m->meta, err);
  if (rc == GT_OK) rc = gt_wire_u64(&w, &count, err);
  if (rc == GT_OK && count > n)
    rc = gt_fail(err, "sandbox result: bad entry count");
  for (uint64_t i = 0; rc == GT_OK && i < count; i++)
    rc = add_entry(image, &w, m, err);
  if (rc == GT_OK && w.at != n) rc = gt_fail(err, "sandbox result: trailing bytes");
  free(out);
  m->format = "hdf5";
  return rc;
}
