/* npy.h: NumPy .npy (versions 1-3); npz.h builds .npz on it.
 *
 * Reading (docs/formats/numpy.md#npy): the header dict is parsed by a strict small
 * parser (keys descr, fortran_order, shape in any order, nothing else);
 * numeric data is mapped zero-copy when its offset suits the element
 * alignment, else copied to aligned memory on first use; big-endian data
 * becomes a view with swap = 1; fortran_order data becomes the reversed-
 * shape contiguous view permuted (no copy); 'S'/'U' arrays become string
 * tensors (trailing NULs stripped as numpy does, UTF-32 turned to UTF-8) on
 * first use; object arrays ('|O', a pickle) are refused. Bytes after the
 * data are allowed, as np.load allows them.
 *
 * Writing produces exactly the bytes np.save (NumPy 1.24) writes for the
 * C-contiguous array: header version 1.0 unless it needs more, padded with
 * spaces so the data starts 64-byte aligned. Tensors are always written in
 * C order (fortran_order False). bfloat16 and float8 have no NumPy dtype and
 * are refused; string tensors are written as '<U<n>' (or '|S<n>' when some
 * element is not valid UTF-8). */
#ifndef GT_NPY_H
#define GT_NPY_H

#include "io/model.h"

/* Header text longer than this is refused (NumPy refuses > 10000 unless
 * the file is trusted; padding may legitimately make it a little longer). */
#define GT_NPY_MAX_HEADER ((uint64_t)1 << 20)

/* A parsed .npy header: where the data starts and how to view it. */
typedef struct gt_npy_header {
  int major, minor;
  gt_dtype dtype;        /* GT_STRING for 'S' / 'U' */
  int swap;              /* big-endian multi-byte data ('>' descr) */
  int fortran;           /* column-major */
  int ndim;
  int64_t shape[GT_MAXDIM];
  uint64_t data_offset;  /* from the start of the .npy bytes */
  uint64_t itemsize;     /* bytes per element in the file */
  uint64_t numel;
  uint64_t nbytes;       /* numel * itemsize, overflow-checked */
  int str_kind;          /* 0, 'S' (bytes) or 'U' (UTF-32 code points) */
  char descr[40];        /* the descr string as written in the file */
} gt_npy_header;

/* Bytes of .npy prefix needed before the header can be parsed: sets *need
 * to data_offset (magic, version, length field and header text) from the
 * first 12 bytes p[0, len). */
int gt_npy_header_need(const unsigned char *p, uint64_t len, uint64_t *need,
                       gt_err *err);
/* Parse the header of npy bytes p[0, len) (len may stop anywhere after the
 * header; the data size is not checked here). */
int gt_npy_parse_header(const unsigned char *p, uint64_t len, gt_npy_header *h,
                        gt_err *err);

/* Read the .npy file mapped as `file` into m as one tensor named `name`;
 * name NULL means the file's base name without ".npy" ("array" when that
 * is empty). m->meta gets {version = "1.0", descr = "<f4",
 * fortran_order = false}. */
int gt_npy_read(gt_storage *file, gt_model *m, const char *name, gt_err *err);
/* Write s (exactly one tensor) as a .npy file. */
int gt_npy_write(const char *path, const gt_save *s, gt_err *err);

/* The .npy encoding of one array, for npz.c (members are .npy bytes). */

/* GT_OK when the h->nbytes of data fit in the `avail` bytes after the
 * header. */
int gt_npy_check_data(const gt_npy_header *h, uint64_t avail, gt_err *err);
/* Alignment the array's elements need in memory (1 for strings). */
size_t gt_npy_align(const gt_npy_header *h);
/* "<file path>: <kind> \"<name>\"" (malloc'd, NULL when out of memory),
 * for errors of lazy storages raised long after open. */
char *gt_npy_label(const gt_storage *file, const char *kind, const char *name,
                   size_t name_len);
/* Add to m the tensor `name` for h whose items are the bytes of `raw`
 * from `off` (not retained beyond what the tensor holds). */
int gt_npy_add_array(gt_model *m, const char *name, size_t name_len,
                     const gt_npy_header *h, gt_storage *raw, uint64_t off,
                     gt_err *err);
/* {version = "1.0", descr = "<f4", fortran_order = false}; NULL on OOM. */
gt_value *gt_npy_header_meta(const gt_npy_header *h);

/* What the file will hold for one tensor: its np.save header and sizes. */
#define GT_NPY_HEADER_CAP 4096
#define GT_NPY_STAGE_BYTES ((size_t)1 << 20) /* bytes per produced piece */
typedef struct gt_npy_plan {
  char descr[32];
  uint64_t itemsize, numel, nbytes;
  int str_kind;                      /* 0, 'S' or 'U' */
  unsigned char header[GT_NPY_HEADER_CAP];
  size_t hlen;
  uint64_t total;                    /* header + data */
} gt_npy_plan;
int gt_npy_plan_tensor(const gt_tensor *t, gt_npy_plan *p, gt_err *err);

/* Pull-style source of a planned tensor's data bytes (after the header),
 * in pieces of at most max(GT_NPY_STAGE_BYTES, itemsize) bytes: next sets
 * *piece (valid until the next call) and *n, 0 at the end. */
typedef struct gt_npy_producer gt_npy_producer;
gt_npy_producer *gt_npy_producer_new(const gt_tensor *t, const gt_npy_plan *p,
                                     gt_err *err);
int gt_npy_producer_next(gt_npy_producer *pr, const unsigned char **piece,
                         size_t *n, gt_err *err);
void gt_npy_producer_free(gt_npy_producer *pr);

#endif
