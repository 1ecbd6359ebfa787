#include "tensor/cap.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 0: not read yet. bad_env: GRAFT_MAX_BYTES was set but is no byte count.
 * Read by the Lua thread that opens files; worker threads only allocate
 * through storages made on that thread, so no lock is needed beyond the
 * benign race of two threads computing the same value. */
static uint64_t cap_bytes;
static int bad_env;

static uint64_t physical_memory(void) {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return UINT64_MAX;
  unsigned long long r;
  if (gt_mul_u64((unsigned long long)pages, (unsigned long long)page, &r))
    return UINT64_MAX;
  return r;
}

/* "123", "512M", "4G": 1 on success. */
static int parse_bytes(const char *s, uint64_t *out) {
  char *end;
  if (*s < '0' || *s > '9') return 0;
  unsigned long long v = strtoull(s, &end, 10);
  unsigned shift = 0;
  switch (*end) {
    case 'K': case 'k': shift = 10; end++; break;
    case 'M': case 'm': shift = 20; end++; break;
    case 'G': case 'g': shift = 30; end++; break;
    case 'T': case 't': shift = 40; end++; break;
    default: break;
  }
  if (*end == 'B' || *end == 'b') end++;
  if (*end || v == 0 || v > (UINT64_MAX >> shift)) return 0;
  *out = (uint64_t)v << shift;
  return 1;
}

uint64_t gt_max_bytes(void) {
  if (cap_bytes) return cap_bytes;
  const char *env = getenv("GRAFT_MAX_BYTES");
  uint64_t v = 0;
  bad_env = env && *env && !parse_bytes(env, &v);
  cap_bytes = v ? v : physical_memory();
  return cap_bytes;
}

void gt_set_max_bytes(uint64_t bytes) {
  cap_bytes = bytes;
  bad_env = 0;
}

int gt_cap_check(uint64_t bytes, gt_err *err) {
  uint64_t cap = gt_max_bytes();
  if (bad_env)
    return gt_fail(err, "GRAFT_MAX_BYTES=\"%.40s\" is not a byte count "
                        "(use e.g. 1073741824 or 1G)",
                   getenv("GRAFT_MAX_BYTES") ? getenv("GRAFT_MAX_BYTES") : "");
  if (bytes > cap)
    return gt_fail(err, "needs %llu bytes, over the GRAFT_MAX_BYTES cap of "
                        "%llu bytes", (unsigned long long)bytes,
                   (unsigned long long)cap);
  return GT_OK;
}
