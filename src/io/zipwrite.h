/* zipwrite.h: a zip archive written front to back, as torch.save lays it out.
 *
 * libzip cannot place a member's data at a chosen alignment, which torch
 * archives require (docs/formats/zip.md#alignment), so this writes the few records itself,
 * straight into a gt_out (atomic temp + fsync + rename):
 *   - every member is stored (method 0); its local header has flags 0x0808
 *     (data descriptor follows, UTF-8 name), zero CRC and sizes, and an
 *     extra field "FB" + u16 n + n bytes 'Z' chosen so the data starts at a
 *     multiple of GT_ZIPW_ALIGN (a ZIP64 extra field, when needed, comes
 *     first and counts in the padding);
 *   - the CRC-32 (zlib's) is computed while the data streams through;
 *   - a data descriptor (PK\7\8, crc, sizes; 8-byte sizes for ZIP64
 *     members) follows each member's data;
 *   - the central directory repeats the real values; ZIP64 end records are
 *     always written, as PyTorch does.
 * A member size at or above `size_at`, or an offset or count at or above
 * `off_at` (both 0xFFFFFFFF for real archives; tests lower them) uses the
 * ZIP64 fields. */
#ifndef GT_ZIPWRITE_H
#define GT_ZIPWRITE_H

#include <stddef.h>
#include <stdint.h>

#include "io/fileout.h"

#define GT_ZIPW_ALIGN 64

typedef struct gt_zipw_member {
  char *name;
  uint32_t crc;
  uint64_t size, offset;
} gt_zipw_member;

typedef struct gt_zipw {
  gt_out *o;
  uint64_t size_at, off_at;
  gt_zipw_member *m;
  size_t n, cap;
  int open;                 /* a member is being written */
  uint32_t crc;             /* of the open member so far */
  uint64_t written, expect; /* bytes of the open member */
  int zip64;                /* the open member uses 8-byte sizes */
} gt_zipw;

/* o must be open; the archive starts at o->pos (normally 0). A threshold
 * of 0 means the test setting below, and 0xFFFFFFFF when that is 0 too. */
void gt_zipw_init(gt_zipw *z, gt_out *o, uint64_t size_at, uint64_t off_at);
/* Test setting (core.testing.zip64_at): the thresholds gt_zipw_init uses
 * when given 0, so specs can exercise the ZIP64 fields on small archives.
 * 0, 0 (the initial state) restores the real ones. Not thread-safe: set it
 * between writes. */
void gt_zipw_test_thresholds(uint64_t size_at, uint64_t off_at);
void gt_zipw_free(gt_zipw *z);
/* Local header of member `name` whose data will be exactly `size` bytes. */
int gt_zipw_begin(gt_zipw *z, const char *name, uint64_t size, gt_err *err);
/* Member data, in order; CRC and count follow. */
int gt_zipw_data(gt_zipw *z, const void *bytes, size_t n, gt_err *err);
/* Checks the count against `size`, writes the data descriptor. */
int gt_zipw_end(gt_zipw *z, gt_err *err);
/* A whole small member. */
int gt_zipw_add(gt_zipw *z, const char *name, const void *bytes, size_t n,
                gt_err *err);
/* Central directory and end records. Does not commit o. */
int gt_zipw_finish(gt_zipw *z, gt_err *err);

/* One member of gt_zipw_write: its bytes in memory (file NULL), or the
 * whole of the file at `file`, streamed. */
typedef struct gt_zipw_src {
  const char *name;
  const void *bytes;
  size_t n;
  const char *file;
} gt_zipw_src;

/* The archive at `path` holding members m[0..n) in order, written through
 * gt_out (temp + fsync + rename). On failure `path` is untouched. */
int gt_zipw_write(const char *path, const gt_zipw_src *m, size_t n, gt_err *err);

#endif
