/* h5.h: what the HDF5 reader (read.c) and writer (write.c) share; private
 * to src/formats/hdf5.
 *
 * libhdf5 (Debian's serial build) is not thread-safe: every call runs on
 * the thread that called gt_hdf5_read / gt_hdf5_write or materialises a
 * lazy tensor. */
#ifndef GT_H5_H
#define GT_H5_H

#include <stdint.h>

#include "io/model.h"
#include "tensor/error.h"

#define GT_H5_SHOWN 160 /* bytes of a path quoted in messages */

/* Turns libhdf5's automatic error printing off, once, before any other
 * call, so it never writes to stderr; failures are read off its error
 * stack instead. */
int gt_h5_ready(gt_err *err);

/* "<what> (libhdf5: <outermost message>: <innermost cause>)"; the stack is
 * cleared. Always GT_ERR. */
int gt_h5_fail(gt_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static inline int gt_h5_oom(gt_err *err) {
  return gt_fail(err, "out of memory");
}

/* Where a dataset's bytes are, as the walk found them: in place at
 * [off, off + nbytes) of the image with elements aligned to `align`, or
 * (lazy) read through libhdf5 (chunked, filtered, compact, strings). */
typedef struct gt_h5_place {
  int lazy;
  uint64_t off, nbytes;
  size_t align;
} gt_h5_place;

/* The walk, run by libhdf5 in THIS process (read.c): fills m (tensors on
 * the image, meta) and *places (malloc'd, places[i] for m->entries[i]).
 * Only ever called inside the sandbox (isolate.c). */
int gt_h5_index(struct gt_storage *image, gt_model *m, gt_h5_place **places,
                gt_err *err);
/* The one dataset at `path`, its bytes read (m gets one entry whose storage
 * is ready). Also only inside the sandbox. */
int gt_h5_read_one(struct gt_storage *image, const char *path, gt_model *m,
                   gt_err *err);

#endif
