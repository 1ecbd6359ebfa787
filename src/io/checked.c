#include "io/checked.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tensor/copy.h"
#include "io/crc32c.h"

static uint32_t crc32_serial(uint32_t crc, const unsigned char *p, uint64_t n) {
  uLong c = crc;
  while (n > 0) {
    uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
    c = crc32(c, p, k);
    p += k;
    n -= k;
  }
  return (uint32_t)c;
}

/* Big ranges are cut into one piece per thread, each piece's CRC computed
 * on the worker pool, and the pieces joined with zlib's crc32_combine
 * (CRC-32 of A||B from crc(A), crc(B) and |B|): zlib's CRC runs at some
 * 4 GB/s, and every stored record is checked once on read and once more
 * while it is written. */
#define CRC_PIECE_MIN ((uint64_t)1 << 20)

typedef struct crc_job {
  const unsigned char *p;
  uint64_t n, piece;
  uint32_t part[64];
} crc_job;

static void crc_piece(void *ctx, int i) {
  crc_job *j = ctx;
  uint64_t off = (uint64_t)i * j->piece;
  uint64_t len = j->n - off < j->piece ? j->n - off : j->piece;
  j->part[i] = crc32_serial((uint32_t)crc32(0L, Z_NULL, 0), j->p + off, len);
}

uint32_t gt_crc32_update(uint32_t crc, const unsigned char *p, uint64_t n) {
  int k = gt_get_threads();
  if (k > 64) k = 64;
  if (k < 2 || n < 2 * CRC_PIECE_MIN) return crc32_serial(crc, p, n);
  if ((uint64_t)k > n / CRC_PIECE_MIN) k = (int)(n / CRC_PIECE_MIN);
  crc_job j = {p, n, (n + (uint64_t)k - 1) / (uint64_t)k, {0}};
  gt_parallel_for(k, crc_piece, &j);
  for (int i = 0; i < k; i++) {
    uint64_t off = (uint64_t)i * j.piece;
    uint64_t len = n - off < j.piece ? n - off : j.piece;
    crc = (uint32_t)crc32_combine(crc, j.part[i], (z_off_t)len);
  }
  return crc;
}

uint32_t gt_crc32(const unsigned char *p, uint64_t n) {
  return gt_crc32_update((uint32_t)crc32(0L, Z_NULL, 0), p, n);
}

int gt_sum_check(gt_sum_kind kind, const char *what, const unsigned char *p,
                 uint64_t n, uint32_t stored, gt_err *err) {
  if (kind == GT_SUM_CRC32) {
    uint32_t got = gt_crc32(p, n);
    if (got != stored)
      return gt_fail(err, "%s: CRC-32 mismatch (archive says %08x, data gives "
                          "%08x): the file is corrupt", what,
                     (unsigned)stored, (unsigned)got);
    return GT_OK;
  }
  uint32_t got = gt_crc32c(p, (size_t)n);
  if (gt_crc32c_mask(got) != stored)
    return gt_fail(err, "%s: crc32c mismatch (entry says %08x, data gives "
                        "%08x): the data file is corrupt", what,
                   (unsigned)gt_crc32c_unmask(stored), (unsigned)got);
  return GT_OK;
}

typedef struct checked_ctx {
  gt_checked c;
  char *what;
} checked_ctx;

static void free_checked(void *p) {
  checked_ctx *x = p;
  free(x->what);
  free(x);
}

static int load_checked(gt_storage *s, gt_err *err) {
  const checked_ctx *x = s->ctx;
  const gt_checked *c = &x->c;
  if (gt_storage_ready(s->parent, err) != GT_OK) return GT_ERR;
  const unsigned char *base = s->parent->data;
  if (gt_sum_check(c->kind, x->what, base + c->sum_off, c->sum_len, c->sum,
                   err) != GT_OK)
    return GT_ERR;
  const unsigned char *p = base + c->data_off;
  if (((uintptr_t)p & (c->align - 1)) == 0) {
    s->data = (unsigned char *)p;
    s->owns_data = 0;
    return GT_OK;
  }
  if (gt_storage_alloc_data(s, err) != GT_OK) return GT_ERR;
  if (s->size) memcpy(s->data, p, s->size);
  return GT_OK;
}

gt_storage *gt_checked_storage(gt_storage *parent, const gt_checked *c,
                               uint64_t size, char *what, gt_err *err) {
  checked_ctx *x = what ? malloc(sizeof *x) : NULL;
  if (!x) {
    free(what);
    return gt_fail(err, "out of memory"), NULL;
  }
  x->c = *c;
  x->what = what;
  return gt_storage_lazy((size_t)size, parent, load_checked, x, free_checked,
                         err);
}
