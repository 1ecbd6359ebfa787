/* sha256.h: SHA-256 (FIPS 180-4, section 6.2), streamed.
 *
 * init, then update any number of times with any byte counts, then final
 * writes the 32-byte digest. gt_sha256_file reads a file in 1 MiB chunks and
 * calls progress(done, total, ud) after each when given. Known vectors:
 * sha256("") = e3b0c442...b855, sha256("abc") = ba7816bf...15ad. */
#ifndef GT_SHA256_H
#define GT_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/error.h"

typedef struct gt_sha256 {
  uint32_t h[8];       /* working hash H(i) */
  uint64_t bytes;      /* message length so far, in bytes */
  unsigned char buf[64]; /* pending partial block */
  size_t nbuf;         /* bytes in buf, < 64 between calls */
} gt_sha256;

void gt_sha256_init(gt_sha256 *s);
void gt_sha256_update(gt_sha256 *s, const void *p, size_t n);
void gt_sha256_final(gt_sha256 *s, unsigned char out[32]);

/* Lower-case hex of the 32-byte digest into hex[65] (NUL-terminated). */
void gt_sha256_hex(const unsigned char d[32], char hex[65]);

typedef void (*gt_sha256_progress)(uint64_t done, uint64_t total, void *ud);

int gt_sha256_file(const char *path, unsigned char out[32],
                   gt_sha256_progress progress, void *ud, gt_err *err);

#endif
