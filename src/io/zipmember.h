/* zipmember.h: the bytes of one member of a mapped zip archive, found by
 * zipmap.h's validated directory reader.
 *
 * A stored member is a window of the mapping; a deflated one is inflated
 * with zlib straight from the mapping. This is the one lazy deflated-member
 * storage behind .npz, torch and .keras (see zipmap.h for why libzip reads
 * nothing here). Inflating never trusts the declared uncompressed size: it
 * is first checked against the compressed size times deflate's maximum
 * expansion, the output goes into a buffer of exactly the declared size,
 * and a stream that ends early or has more to give is an error, as is a
 * CRC-32 mismatch. */
#ifndef GT_ZIPMEMBER_H
#define GT_ZIPMEMBER_H

#include <stdint.h>

#include "io/zipmap.h"
#include "tensor/storage.h"

/* Deflate cannot expand by more than this (zlib's technical notes: 1032:1,
 * a 258-byte match per bit-and-a-bit in fixed Huffman blocks). */
#define GT_ZIP_MAX_RATIO 1032u

/* GT_OK when mm is stored or deflated and its declared uncompressed size is
 * possible: below SIZE_MAX and, when deflated, at most comp_size *
 * GT_ZIP_MAX_RATIO. Errors start with `member "<name>"`. No allocation. */
int gt_zip_member_check(const gt_zip_member *mm, gt_err *err);

/* Inflate the first `want` bytes (want <= mm->size) of deflated member mm
 * of the archive whose bytes start at `base` into out[0, want), without
 * checking the rest of the stream or its CRC: for reading a header. */
int gt_zip_inflate_prefix(const unsigned char *base, const gt_zip_member *mm,
                          unsigned char *out, uint64_t want, gt_err *err);

/* Lazy storage of the member's bytes [off, off + len) (the caller checked
 * off + len <= mm->size and gt_zip_member_check). On first use the whole
 * member is checked against its CRC-32; the bytes are then used in place
 * when stored and `align`-byte aligned (power of two), else copied or
 * inflated into aligned memory of `len` bytes. `what` (malloc'd, may be
 * NULL when out of memory; owned by the storage from now on, also when
 * this fails) prefixes errors, e.g. "<file>: member \"x.npy\"". */
gt_storage *gt_zip_member_storage(gt_storage *file, const gt_zip_member *mm,
                                  uint64_t off, uint64_t len, size_t align,
                                  char *what, gt_err *err);

/* The whole member, now: a region of file when stored (its CRC-32 checked
 * when check_stored is set; not for big members read lazily later), else
 * inflated into a new heap storage, CRC-32 checked. gt_zip_member_check is
 * applied first; callers with a size limit check mm->size before. Errors
 * start with `member "<name>"`. */
gt_storage *gt_zip_member_read(gt_storage *file, const gt_zip_member *mm,
                               int check_stored, gt_err *err);

#endif
