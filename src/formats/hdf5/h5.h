/* h5.h: what the HDF5 reader (read.c) and writer (write.c) share; private
 * to src/formats/hdf5.
 *
 * libhdf5 (Debian's serial build) is not thread-safe: every call runs on
 * the thread that called gt_hdf5_read / gt_hdf5_write or materialises a
 * lazy tensor. */
#ifndef GT_H5_H
#define GT_H5_H

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

#endif
