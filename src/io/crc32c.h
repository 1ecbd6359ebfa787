/* crc32c.h: CRC-32C (Castagnoli) and the LevelDB/TensorFlow mask.
 *
 * CRC-32C: reflected polynomial 0x82F63B78, initial value and final XOR
 * 0xFFFFFFFF, so crc32c("") = 0 and crc32c("123456789") = 0xE3069283.
 * gt_crc32c_extend continues a finished CRC: extend(value(a), b) = value(a|b).
 * The SSE4.2 `crc32` instruction is used when the CPU has it, a
 * slicing-by-8 table otherwise; both give identical results (specs check
 * them against known vectors and against each other). */
#ifndef GT_CRC32C_H
#define GT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t gt_crc32c_extend(uint32_t crc, const void *p, size_t n);

static inline uint32_t gt_crc32c(const void *p, size_t n) {
  return gt_crc32c_extend(0, p, n);
}

/* Mask as stored in TF tables and bundles: rotate right by 15, then add
 * 0xA282EAD8 (mod 2^32). Unmask undoes it. */
static inline uint32_t gt_crc32c_mask(uint32_t c) {
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}
static inline uint32_t gt_crc32c_unmask(uint32_t m) {
  uint32_t r = m - 0xA282EAD8u;
  return (r >> 17) | (r << 15);
}

/* 1: use the table even when the CPU has SSE4.2 (for tests); 0: back to
 * the fastest path. */
void gt_crc32c_force_table(int on);
/* "sse4.2" or "table": the path gt_crc32c_extend takes now. */
const char *gt_crc32c_path(void);

#endif
