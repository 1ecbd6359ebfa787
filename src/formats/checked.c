#include "checked.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "crc32c.h"

uint32_t gt_crc32(const unsigned char *p, uint64_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
    crc = crc32(crc, p, k);
    p += k;
    n -= k;
  }
  return (uint32_t)crc;
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
