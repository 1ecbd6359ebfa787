/* checked.h: checksums over mapped bytes, and lazy storages whose bytes are
 * verified by a checksum on first use.
 *
 * A checked storage rests on a parent (a file mapping): on first use it
 * checks the checksum over parent[sum_off, +sum_len), then uses
 * parent[data_off, +size) in place when that is `align`-byte aligned, else
 * copies it into aligned memory. Opening a file thus reads no tensor data;
 * corruption is reported when the tensor is first used. */
#ifndef GT_CHECKED_H
#define GT_CHECKED_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/storage.h"

typedef enum {
  GT_SUM_CRC32,         /* zip CRC-32 (zlib's crc32) */
  GT_SUM_CRC32C_MASKED  /* TensorFlow: crc32c, stored masked (crc32c.h) */
} gt_sum_kind;

/* Zip CRC-32 of p[0, n), for any n. */
/* gt_crc32 continued over p[0, n) (crc = 0 starts one); big ranges are
 * computed on the worker pool. */
uint32_t gt_crc32_update(uint32_t crc, const unsigned char *p, uint64_t n);
uint32_t gt_crc32(const unsigned char *p, uint64_t n);

/* GT_OK when p[0, n) gives `stored` (as the file stores it), else an error
 * "<what>: CRC-32 mismatch (archive says ..., data gives ...): the file is
 * corrupt" (zip) or "<what>: crc32c mismatch (entry says ..., data gives
 * ...): the data file is corrupt" (TensorFlow, unmasked values). */
int gt_sum_check(gt_sum_kind kind, const char *what, const unsigned char *p,
                 uint64_t n, uint32_t stored, gt_err *err);

typedef struct gt_checked {
  gt_sum_kind kind;
  uint32_t sum;              /* as the file stores it */
  uint64_t sum_off, sum_len; /* the checked bytes of the parent */
  uint64_t data_off;         /* the storage's bytes: parent[data_off, +size) */
  size_t align;              /* power of two, >= 1 */
} gt_checked;

/* Lazy checked storage of `size` bytes over parent (retained). The caller
 * has checked that both ranges lie inside the parent. `what` (malloc'd,
 * may be NULL when out of memory) prefixes errors and is owned by the
 * storage from now on, also when this fails. */
gt_storage *gt_checked_storage(gt_storage *parent, const gt_checked *c,
                               uint64_t size, char *what, gt_err *err);

#endif
