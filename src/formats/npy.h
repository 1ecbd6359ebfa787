/* npy.h: NumPy .npy (versions 1-3) and .npz (zip of .npy, via libzip).
 *
 * Reading (FORMATS.md 6): the header dict is parsed by a strict small
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

/* Read the .npz archive mapped as `file` (path is unused: the mapping is
 * read, by zipmap.c and by libzip over a buffer source; may be NULL). Each
 * "<name>.npy" member becomes tensor <name>, in archive order; other
 * members are skipped and listed in meta.other_members (names only).
 * Duplicate member names are an error.
 * m->meta gets arrays = {<name> = {member, version, descr, fortran_order,
 * compression = "stored" | "deflated"}}. Stored members are mapped (CRC-32
 * checked on first use), deflated ones inflated on first use. */
int gt_npz_read(gt_storage *file, const char *path, gt_model *m, gt_err *err);
/* compress: 0 stored (np.savez), 1 deflated (np.savez_compressed). Members
 * are "<name>.npy" in the given order. */
int gt_npz_write(const char *path, const gt_save *s, int compress, gt_err *err);

#endif
