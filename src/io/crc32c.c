/* crc32c.c: CRC-32C with the SSE4.2 instruction or slicing-by-8 tables.
 *
 * Both paths work on the pre-inverted register (crc ^ 0xFFFFFFFF) and fold
 * bytes in file order; the hardware `crc32` instruction computes exactly
 * the reflected Castagnoli step the tables encode. Only the SSE4.2 function
 * carries a target attribute, so the module loads on any x86-64. */
#include "io/crc32c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define POLY 0x82F63B78u

/* table[k][b]: CRC register after feeding byte b followed by k zero bytes. */
static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void make_table(void) {
  for (uint32_t b = 0; b < 256; b++) {
    uint32_t c = b;
    for (int i = 0; i < 8; i++) c = (c >> 1) ^ (POLY & (0u - (c & 1)));
    table[0][b] = c;
  }
  for (uint32_t b = 0; b < 256; b++)
    for (int k = 1; k < 8; k++)
      table[k][b] = (table[k - 1][b] >> 8) ^ table[0][table[k - 1][b] & 0xFF];
}

static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static uint32_t crc_table(uint32_t c, const unsigned char *p, size_t n) {
  while (n >= 8) {
    uint32_t lo = rd32(p) ^ c, hi = rd32(p + 4);
    c = table[7][lo & 0xFF] ^ table[6][(lo >> 8) & 0xFF] ^
        table[5][(lo >> 16) & 0xFF] ^ table[4][lo >> 24] ^
        table[3][hi & 0xFF] ^ table[2][(hi >> 8) & 0xFF] ^
        table[1][(hi >> 16) & 0xFF] ^ table[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = (c >> 8) ^ table[0][(c ^ *p++) & 0xFF];
  return c;
}

#if defined(__x86_64__)
#define HAVE_HW 1
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t c, const unsigned char *p, size_t n) {
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c64 = __builtin_ia32_crc32di(c64, v);
    p += 8;
    n -= 8;
  }
  c = (uint32_t)c64;
  while (n--) c = __builtin_ia32_crc32qi(c, *p++);
  return c;
}
#else
#define HAVE_HW 0
#endif

static atomic_int force_table;

#if HAVE_HW
static int cpu_hw;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;
static void detect_cpu(void) { cpu_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0; }
#endif

static int use_hw(void) {
#if HAVE_HW
  pthread_once(&cpu_once, detect_cpu);
  return cpu_hw && !atomic_load(&force_table);
#else
  return 0;
#endif
}

uint32_t gt_crc32c_extend(uint32_t crc, const void *p, size_t n) {
  uint32_t c = crc ^ 0xFFFFFFFFu;
#if HAVE_HW
  if (use_hw()) return crc_hw(c, p, n) ^ 0xFFFFFFFFu;
#endif
  pthread_once(&table_once, make_table);
  return crc_table(c, p, n) ^ 0xFFFFFFFFu;
}

void gt_crc32c_force_table(int on) { atomic_store(&force_table, on ? 1 : 0); }

const char *gt_crc32c_path(void) { return use_hw() ? "sse4.2" : "table"; }
