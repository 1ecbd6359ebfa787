/* cast_x86.c: F16C and AVX2 kernels for the hot conversions.
 *
 * Only the functions carry target attributes, so the module still loads on
 * CPUs without these units; cast.c calls them after gt_x86_units() says
 * they exist. Rounding is fixed to nearest-even in the instruction (never
 * MXCSR's mode), so finite results equal the scalar kernels'; lanes that
 * hold NaN are rewritten by the scalar kernels, whose NaN rules (numpy's
 * for float16, c10's for bfloat16) the instructions do not follow. */
#include "tensor/cast_x86.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "tensor/cast.h"

/* Scalar element loops shared by tails and NaN fix-ups, elements i..j-1:
 * load an ST from s, convert with EXPR (of `x`), store a DT into d. */
#define RANGE(name, ST, DT, EXPR)                                         \
  static void name(unsigned char *d, const unsigned char *s, size_t i,    \
                   size_t j) {                                            \
    for (; i < j; i++) {                                                  \
      ST x;                                                               \
      memcpy(&x, s + sizeof(ST) * i, sizeof(ST));                         \
      DT y = (EXPR);                                                      \
      memcpy(d + sizeof(DT) * i, &y, sizeof(DT));                         \
    }                                                                     \
  }
RANGE(f32_to_f16_range, float, uint16_t, gt_f32_to_f16(x))
RANGE(f16_to_f32_range, uint16_t, float, gt_f16_to_f32(x))
RANGE(f32_to_bf16_range, float, uint16_t, gt_f32_to_bf16(x))
RANGE(bf16_to_f32_range, uint16_t, float, gt_bf16_to_f32(x))
RANGE(f64_to_f32_range, double, float, (float)x)
RANGE(f32_to_f64_range, float, double, (double)x)

static void bswap_range(unsigned char *d, const unsigned char *s, size_t i,
                        size_t j, size_t lane) {
  for (; i < j; i++)
    for (size_t k = 0; k < lane; k++)
      d[i * lane + k] = s[i * lane + lane - 1 - k];
}

#if defined(__x86_64__) || defined(__i386__)

#include <cpuid.h>
#include <immintrin.h>

#define TARGET __attribute__((target("avx2,f16c")))

/* F16C is CPUID leaf 1, ECX bit 29 (clang's __builtin_cpu_supports does
 * not know "f16c"); "avx" also means the OS saves the ymm registers. */
static unsigned detect(void) {
  unsigned u = 0, a, b, c, d;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx") && __get_cpuid(1, &a, &b, &c, &d) &&
      (c & (1u << 29)))
    u |= GT_X86_F16C;
  if (__builtin_cpu_supports("avx2")) u |= GT_X86_AVX2;
  return u;
}

unsigned gt_x86_units(void) {
  static atomic_uint cached = 0x100u; /* 0x100: not detected yet */
  unsigned u = atomic_load_explicit(&cached, memory_order_relaxed);
  if (u & 0x100u) {
    u = detect();
    atomic_store_explicit(&cached, u, memory_order_relaxed);
  }
  return u;
}

/* Bit k set in mask: lane k (of 16 from i) is redone by the scalar rule. */
typedef void range_fn(unsigned char *, const unsigned char *, size_t,
                      size_t);
static void redo_lanes(range_fn *fn, unsigned char *d,
                       const unsigned char *s, size_t i, unsigned mask) {
  while (mask) {
    unsigned k = (unsigned)__builtin_ctz(mask);
    fn(d, s, i + k, i + k + 1);
    mask &= mask - 1;
  }
}

TARGET static unsigned nan_mask_ps(__m256 a) {
  return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}

/* vcvtps2ph with imm 0: round to nearest even whatever MXCSR says. */
TARGET void gt_x86_f32_to_f16(void *dst, const void *src, size_t n) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 a = _mm256_loadu_ps((const float *)(s + 4 * i));
    __m256 b = _mm256_loadu_ps((const float *)(s + 4 * i + 32));
    __m128i ha = _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT);
    __m128i hb = _mm256_cvtps_ph(b, _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128((__m128i *)(d + 2 * i), ha);
    _mm_storeu_si128((__m128i *)(d + 2 * i + 16), hb);
    unsigned nan = nan_mask_ps(a) | nan_mask_ps(b) << 8;
    if (nan) redo_lanes(f32_to_f16_range, d, s, i, nan);
  }
  f32_to_f16_range(d, s, i, n);
}

/* One bit per half lane holding a NaN (exponent all ones, mantissa != 0). */
TARGET static unsigned nan_mask_ph(__m128i h) {
  __m128i a = _mm_and_si128(h, _mm_set1_epi16(0x7FFF));
  __m128i m = _mm_cmpgt_epi16(a, _mm_set1_epi16(0x7C00));
  return (unsigned)_mm_movemask_epi8(_mm_packs_epi16(m, m)) & 0xFFu;
}

TARGET void gt_x86_f16_to_f32(void *dst, const void *src, size_t n) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m128i ha = _mm_loadu_si128((const __m128i *)(s + 2 * i));
    __m128i hb = _mm_loadu_si128((const __m128i *)(s + 2 * i + 16));
    _mm256_storeu_ps((float *)(d + 4 * i), _mm256_cvtph_ps(ha));
    _mm256_storeu_ps((float *)(d + 4 * i + 32), _mm256_cvtph_ps(hb));
    unsigned nan = nan_mask_ph(ha) | nan_mask_ph(hb) << 8;
    if (nan) redo_lanes(f16_to_f32_range, d, s, i, nan);
  }
  f16_to_f32_range(d, s, i, n);
}

/* Round-to-nearest-even on the bits: (x + 0x7FFF + lsb) >> 16; NaN lanes
 * become c10's 0x7FC0. Results fit 16 bits, so packus keeps them. */
TARGET static __m256i bf16_round(__m256 f) {
  __m256i x = _mm256_castps_si256(f);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16),
                                 _mm256_set1_epi32(1));
  __m256i bias = _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(x, bias), 16);
  __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q));
  return _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), nan);
}

TARGET void gt_x86_f32_to_bf16(void *dst, const void *src, size_t n) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i ra = bf16_round(_mm256_loadu_ps((const float *)(s + 4 * i)));
    __m256i rb =
        bf16_round(_mm256_loadu_ps((const float *)(s + 4 * i + 32)));
    /* packus interleaves 128-bit halves: a0 b0 a1 b1 -> a0 a1 b0 b1 */
    __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(ra, rb),
                                         _MM_SHUFFLE(3, 1, 2, 0));
    _mm256_storeu_si256((__m256i *)(d + 2 * i), p);
  }
  f32_to_bf16_range(d, s, i, n);
}

TARGET void gt_x86_bf16_to_f32(void *dst, const void *src, size_t n) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i w = _mm256_loadu_si256((const __m256i *)(s + 2 * i));
    __m256i lo = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(w));
    __m256i hi = _mm256_cvtepu16_epi32(_mm256_extracti128_si256(w, 1));
    _mm256_storeu_si256((__m256i *)(d + 4 * i), _mm256_slli_epi32(lo, 16));
    _mm256_storeu_si256((__m256i *)(d + 4 * i + 32),
                        _mm256_slli_epi32(hi, 16));
  }
  bf16_to_f32_range(d, s, i, n);
}

/* vcvtpd2ps / vcvtps2pd are what the C conversions compile to, lane-wise:
 * same rounding (MXCSR, nearest-even by default), same NaN quieting. */
TARGET void gt_x86_f64_to_f32(void *dst, const void *src, size_t n) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128 a = _mm256_cvtpd_ps(_mm256_loadu_pd((const double *)(s + 8 * i)));
    __m128 b =
        _mm256_cvtpd_ps(_mm256_loadu_pd((const double *)(s + 8 * i + 32)));
    _mm256_storeu_ps((float *)(d + 4 * i),
                     _mm256_insertf128_ps(_mm256_castps128_ps256(a), b, 1));
  }
  f64_to_f32_range(d, s, i, n);
}

TARGET void gt_x86_f32_to_f64(void *dst, const void *src, size_t n) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 a = _mm256_loadu_ps((const float *)(s + 4 * i));
    _mm256_storeu_pd((double *)(d + 8 * i),
                     _mm256_cvtps_pd(_mm256_castps256_ps128(a)));
    _mm256_storeu_pd((double *)(d + 8 * i + 32),
                     _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
  }
  f32_to_f64_range(d, s, i, n);
}

/* pshufb reverses bytes within each 16-byte half; lanes never straddle. */
TARGET void gt_x86_bswap(void *dst, const void *src, size_t count,
                         size_t lane) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  char idx[16];
  for (int k = 0; k < 16; k++)
    idx[k] = (char)((k / (int)lane) * (int)lane + (int)lane - 1 -
                    k % (int)lane);
  __m128i m128 = _mm_loadu_si128((const __m128i *)idx);
  __m256i m = _mm256_broadcastsi128_si256(m128);
  size_t per = 32 / lane, i = 0;
  for (; i + per <= count; i += per) {
    __m256i v = _mm256_loadu_si256((const __m256i *)(s + i * lane));
    _mm256_storeu_si256((__m256i *)(d + i * lane),
                        _mm256_shuffle_epi8(v, m));
  }
  bswap_range(d, s, i, count, lane);
}

#else /* not x86: never called, since gt_x86_units() is 0 */

unsigned gt_x86_units(void) { return 0; }

void gt_x86_f32_to_f16(void *dst, const void *src, size_t n) {
  f32_to_f16_range(dst, src, 0, n);
}
void gt_x86_f16_to_f32(void *dst, const void *src, size_t n) {
  f16_to_f32_range(dst, src, 0, n);
}
void gt_x86_f32_to_bf16(void *dst, const void *src, size_t n) {
  f32_to_bf16_range(dst, src, 0, n);
}
void gt_x86_bf16_to_f32(void *dst, const void *src, size_t n) {
  bf16_to_f32_range(dst, src, 0, n);
}
void gt_x86_f64_to_f32(void *dst, const void *src, size_t n) {
  f64_to_f32_range(dst, src, 0, n);
}
void gt_x86_f32_to_f64(void *dst, const void *src, size_t n) {
  f32_to_f64_range(dst, src, 0, n);
}
void gt_x86_bswap(void *dst, const void *src, size_t count, size_t lane) {
  bswap_range(dst, src, 0, count, lane);
}

#endif
