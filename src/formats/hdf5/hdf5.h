/* hdf5.h: generic HDF5 files through libhdf5 (Keras weights, deepdish dicts).
 *
 * Reading opens the HDF5 bytes held by a storage (a whole mapped file, a
 * stored zip member, an inflated buffer) as a read-only file image without
 * copying it, walks the groups depth-first in the order h5py shows them
 * (creation order where the group tracks it, else name order) and makes one
 * tensor per dataset, named by its path without the leading '/'. Contiguous
 * unfiltered datasets are views on the image itself (H5Dget_offset);
 * chunked, compact, filtered and string datasets are read by libhdf5 on
 * first use. libhdf5 is not safe on hostile metadata, so every read it does
 * of a file graft did not write runs in a sandboxed child process
 * (isolate.c, io/sandbox.h): a crash, hang (GRAFT_HDF5_TIMEOUT seconds,
 * default 60) or runaway allocation there is an error naming what was
 * being read, and the parent rebuilds the index from bytes it checks.
 * Writing stays in this process (graft's own data).
 *
 * The metadata tree (model meta) holds:
 *   attrs       path -> {attribute name -> value}; "/" is the root group;
 *               strings as strings, numbers as numbers, arrays as lists
 *   attr_types  path -> {attribute name -> type}: "vlen-ascii", "vlen-utf8",
 *               "S<n>" / "S<n>-utf8" (fixed length), "float64", "int64", ...
 *   groups      every group path in walk order (root excluded)
 *   skipped     dataset path -> reason, for datasets graft has no dtype for
 *   userblock   bytes before the superblock (0 for most files)
 * Errors from libhdf5's error stack become gt_err messages naming the
 * object; libhdf5 itself never prints (automatic printing is off). */
#ifndef GT_HDF5_H
#define GT_HDF5_H

#include <stdint.h>

#include "io/model.h"

/* Whether p[0, len) holds the HDF5 signature at offset 0, 512, 1024, ...
 * (a user block); *base receives that offset. */
int gt_hdf5_sniff(const unsigned char *p, uint64_t len, uint64_t *base);

/* Index the HDF5 file whose bytes are `image` (retained while any tensor
 * or the open file needs it). Fills m (format "hdf5") and m->meta. */
int gt_hdf5_read(gt_storage *image, gt_model *m, gt_err *err);

/* Write s's entries as an HDF5 file at path. layout_json (layout_len bytes),
 * when not NULL, is a JSON document:
 *   {"groups":   [{"path": P, "attrs": [[name, type, value], ...]}, ...],
 *    "datasets": [{"path": P, "attrs": [...]}, ...]}
 * groups are created in list order ("/" is the root, only for its attrs);
 * datasets[i] is where entries[i] goes (missing parents are created).
 * Types are the attr_types spellings above plus "S" (fixed length, as wide
 * as the longest string); a JSON array value is a 1-D attribute, anything
 * else a scalar. Without a layout every entry is written at its own name,
 * '/' making groups (deepdish style). Data is streamed through a bounded
 * buffer straight to each dataset's place in the file. */
int gt_hdf5_write(const char *path, const gt_save *s, const char *layout_json,
                  size_t layout_len, gt_err *err);

#endif
