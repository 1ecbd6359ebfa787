/* ziplib.h: libzip over a mapped zip file, shared (refcounted) by the lazy
 * storages of its deflated members (npz, torch). zipmap.h finds where
 * members lie; libzip inflates them and checks their CRC-32. */
#ifndef GT_ZIPLIB_H
#define GT_ZIPLIB_H

#include <zip.h>

#include "tensor/storage.h"

typedef struct gt_ziplib {
  int refs;
  zip_t *za;          /* reads the mapping's bytes in place */
  gt_storage *file;   /* retained: the bytes za reads */
} gt_ziplib;

/* libzip's view of the mapped archive `file` (retained), refs = 1. */
gt_ziplib *gt_ziplib_open(gt_storage *file, gt_err *err);
/* Drops one reference; the last closes libzip and releases the file. */
void gt_ziplib_release(gt_ziplib *a);

#endif
