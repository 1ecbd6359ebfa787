/* zipmap.h: where the members of a zip archive lie in its bytes; the one
 * reader of zip directories in graft.
 *
 * The zip module is three files:
 *   zipmap.h    the central directory and local headers (this file);
 *   zipmember.h a member's bytes: a stored window, or zlib inflation into
 *               a lazy storage (npz, torch and .keras all use it);
 *   zipwrite.h  torch's archive writer (stored, 64-byte aligned members).
 * Where libzip is used, and why:
 *   - Reading directories: ours, not libzip. A zero-copy reader of stored
 *     members needs each member's data offset, which libzip has no public
 *     call for, so the directory has to be parsed here anyway; a second
 *     parse by libzip would only be one more parser to keep in agreement
 *     (graft used to cross-check the two names per member).
 *   - Reading members: ours, zlib straight from the mapping. libzip's
 *     zip_fread allocates nothing we can bound and cannot place a byte
 *     range of a member into a given buffer; ours inflates into a buffer of
 *     the declared size after checking that size against deflate's maximum
 *     ratio (zipmember.h), and checks the CRC-32 itself.
 *   - Writing torch archives: ours (zipwrite.h): libzip cannot place member
 *     data at an alignment, which torch.load's mmap path requires.
 *   - Writing .npz: libzip (formats/npz.c), which produces exactly the
 *     stored and deflated members, data descriptors and ZIP64 records numpy
 *     reads, with no alignment need.
 *
 * This is the small part of the zip format (docs/formats/zip.md#records) needed to find
 * members: the end of central directory record (and its ZIP64 form), the
 * central directory entries (with their ZIP64 extra field), and each local
 * header, checked against the central directory. Nothing here decompresses
 * or checks CRCs. */
#ifndef GT_ZIPMAP_H
#define GT_ZIPMAP_H

#include <stddef.h>
#include <stdint.h>

#include "io/value.h"
#include "tensor/error.h"

/* One member, as its central directory entry describes it. Invariants after
 * gt_zip_dir_read: data_offset + comp_size <= the archive's size (in fact
 * <= the start of the central directory), the local header at
 * header_offset has the same name and method, and a stored member has
 * comp_size == size. */
typedef struct gt_zip_member {
  char *name;            /* raw name bytes, NUL-terminated copy */
  size_t name_len;
  uint16_t flags;        /* general purpose bit flags */
  uint16_t method;       /* 0 stored, 8 deflated, others as found */
  uint32_t crc;          /* CRC-32 of the uncompressed bytes */
  uint64_t comp_size;    /* bytes at data_offset */
  uint64_t size;         /* uncompressed bytes */
  uint64_t header_offset;
  uint64_t data_offset;
} gt_zip_member;

typedef struct gt_zip_dir {
  gt_zip_member *m;      /* central directory order */
  size_t n;
} gt_zip_dir;

/* Index the archive held in p[0, len). Errors name the member concerned. */
int gt_zip_dir_read(const unsigned char *p, uint64_t len, gt_zip_dir *d,
                    gt_err *err);
/* The same for an archive that is a whole mapped file: the pages touched
 * to check each local header are dropped from the resident set as it goes. */
struct gt_storage;
int gt_zip_dir_read_file(const struct gt_storage *file, gt_zip_dir *d,
                         gt_err *err);
void gt_zip_dir_free(gt_zip_dir *d);

/* The member names of the archive mapped as `file`, central directory
 * order, as a new GT_V_LIST of GT_V_STR (raw name bytes) in *names; the
 * directory is validated as gt_zip_dir_read_file does. For the binding, so
 * that Lua never parses a central directory itself. */
int gt_zip_names(const struct gt_storage *file, gt_value **names, gt_err *err);

/* Whether p[0, len) starts like a zip archive (local header or empty EOCD). */
int gt_zip_sniff(const unsigned char *p, uint64_t len);

#endif
