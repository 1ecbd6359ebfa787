/* cast.c: exact scalar conversion kernels and the dispatch of gt_convert.
 *
 * Every conversion that is not a plain copy runs block by block through one
 * aligned intermediate array, chosen so that each result is rounded once,
 * from the value the reference library rounds:
 *   float32 block: results float32, bfloat16, float8 (and float16 from
 *     float32, bfloat16, float8); ints enter by a direct C conversion (torch
 *     rounds int -> float -> bfloat16/float8, i.e. twice: so do we).
 *   float64 block: results float64, float16 from float64 or ints (numpy
 *     converts double -> half directly), and float -> int/bool.
 *   uint64 block: int/bool -> int/bool; values are the two's complement
 *     bits, so narrowing is the wrap numpy's astype does.
 * The vector kernels of cast_x86.c produce bit-identical results and take
 * over the hot pairs unless gt_cast_force_scalar(1). */
#include "tensor/cast.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "tensor/cast_x86.h"

enum { BLOCK = 256 };

static atomic_int force_scalar;

void gt_cast_force_scalar(int on) { atomic_store(&force_scalar, on != 0); }

const char *gt_cast_paths(void) {
  static const char *const names[4] = {"scalar", "f16c", "avx2",
                                       "f16c avx2"};
  if (atomic_load(&force_scalar)) return "scalar (forced)";
  return names[gt_x86_units() & 3];
}

/* ------------------------------------------------------------ bit access */

static inline uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
static inline float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
static inline uint64_t f64_bits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}
static inline double bits_f64(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

/* v >> s (1 <= s <= 62, v < 2^63) rounded to nearest, ties to even:
 * adding half - 1, plus 1 when the kept part is odd, carries exactly when
 * the dropped part is above half, or equal to it with an odd kept part.
 * A carry out of the kept mantissa bits moves into the exponent field,
 * which is exactly the next binade (or infinity) in every format below. */
static inline uint64_t rne_shift(uint64_t v, unsigned s) {
  uint64_t odd = (v >> s) & 1;
  return (v + (UINT64_C(1) << (s - 1)) - 1 + odd) >> s;
}

/* --------------------------------------------------------------- float16 */

/* numpy's NaN rule: keep the top 10 payload bits (a signalling NaN stays
 * signalling); if none are left, the payload becomes 1 so it stays NaN. */
static inline uint16_t f16_nan(uint16_t sign, uint16_t top) {
  return (uint16_t)(sign | 0x7C00u | (top ? top : 1u));
}

uint16_t gt_f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t a = x & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return f16_nan(sign, (uint16_t)((a >> 13) & 0x3FFu));
  if (a >= 0x477FF000u) return sign | 0x7C00u; /* >= 65520: inf */
  if (a >= 0x38800000u) /* >= 2^-14: normal; rebias 127 -> 15 */
    return (uint16_t)(sign | rne_shift(a - 0x38000000u, 13));
  if (a < 0x33000000u) return sign; /* < 2^-25: rounds to zero */
  /* Subnormal result in units of 2^-24: sig * 2^(e - 126). */
  uint32_t e = a >> 23;
  uint32_t sig = (a & 0x7FFFFFu) | 0x800000u;
  return (uint16_t)(sign | rne_shift(sig, 126 - e));
}

uint16_t gt_f64_to_f16(double d) {
  uint64_t x = f64_bits(d);
  uint16_t sign = (uint16_t)((x >> 48) & 0x8000u);
  uint64_t a = x & UINT64_C(0x7FFFFFFFFFFFFFFF);
  if (a > UINT64_C(0x7FF0000000000000))
    return f16_nan(sign, (uint16_t)((a >> 42) & 0x3FFu));
  if (a >= UINT64_C(0x40EFFE0000000000)) return sign | 0x7C00u; /* 65520 */
  if (a >= UINT64_C(0x3F10000000000000)) /* >= 2^-14; rebias 1023 -> 15 */
    return (uint16_t)(sign | rne_shift(a - UINT64_C(0x3F00000000000000), 42));
  if (a < UINT64_C(0x3E60000000000000)) return sign; /* < 2^-25 */
  uint64_t e = a >> 52;
  uint64_t sig = (a & UINT64_C(0xFFFFFFFFFFFFF)) | (UINT64_C(1) << 52);
  return (uint16_t)(sign | rne_shift(sig, (unsigned)(1051 - e)));
}

/* Subnormal half mantissa m (1..1023) as float32 bits: m * 2^-24 is exact
 * in float32 and normal there. */
static inline uint32_t f16_sub_bits(uint32_t m) {
  return f32_bits((float)m * 0x1p-24f);
}

float gt_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t e = h & 0x7C00u, m = h & 0x3FFu;
  if (e == 0x7C00u) return bits_f32(sign | 0x7F800000u | (m << 13));
  if (e) return bits_f32(sign | (((uint32_t)(h & 0x7FFFu) + 0x1C000u) << 13));
  return bits_f32(m ? sign | f16_sub_bits(m) : sign);
}

/* numpy's half -> double: exact, NaN payload (and signalling) kept. */
static double f16_to_f64(uint16_t h) {
  uint64_t sign = (uint64_t)(h & 0x8000u) << 48;
  uint64_t e = h & 0x7C00u, m = h & 0x3FFu;
  if (e == 0x7C00u)
    return bits_f64(sign | UINT64_C(0x7FF0000000000000) | (m << 42));
  if (e) return bits_f64(sign | (((h & 0x7FFFu) + UINT64_C(0xFC000)) << 42));
  return bits_f64(sign | (m ? f64_bits((double)m * 0x1p-24) : 0));
}

/* -------------------------------------------------------------- bfloat16 */

/* c10::BFloat16: NaN -> 0x7FC0 whatever its sign (torch's AVX2 kernel gives
 * 0xFFFF; we follow the scalar c10 rule); overflow rounds to inf. */
uint16_t gt_f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0u;
  return (uint16_t)rne_shift(x, 16);
}

float gt_bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

/* ---------------------------------------------------------------- float8 */

/* c10 e4m3fn: |f| >= 480, inf and NaN give 0x7F | sign (there is no inf).
 * Below that, round to nearest even, where the step above 448 (0x7E) is
 * 0x7F itself: (464, 480) gives NaN, 464 ties to 448. */
uint8_t gt_f32_to_e4m3fn(float f) {
  uint32_t x = f32_bits(f);
  uint8_t sign = (uint8_t)((x >> 24) & 0x80u);
  uint32_t a = x & 0x7FFFFFFFu;
  if (a >= 0x43F00000u) return sign | 0x7Fu;
  if (a >= 0x3C800000u) /* >= 2^-6: normal; rebias 127 -> 7 */
    return (uint8_t)(sign | rne_shift(a - 0x3C000000u, 20));
  uint32_t e = a >> 23;
  if (e < 110) return sign; /* < 2^-17, far below half of 2^-9 */
  uint32_t sig = (a & 0x7FFFFFu) | 0x800000u;
  return (uint8_t)(sign | rne_shift(sig, 141 - e)); /* units of 2^-9 */
}

/* c10 e4m3fn decode: 0x7F/0xFF -> 0x7FF00000 | sign. */
float gt_e4m3fn_to_f32(uint8_t b) {
  uint32_t sign = (uint32_t)(b & 0x80u) << 24;
  uint32_t c = b & 0x7Fu, e = c >> 3, m = c & 7u;
  if (c == 0x7Fu) return bits_f32(sign | 0x7FF00000u);
  if (e) return bits_f32(sign | ((e + 120) << 23) | (m << 20));
  return bits_f32(sign | (m ? f32_bits((float)m * 0x1p-9f) : 0));
}

/* c10 e5m2: NaN -> 0x7F | sign; |f| >= 65536 and inf -> 0x7C | sign
 * (61440 ties to even, i.e. to inf). */
uint8_t gt_f32_to_e5m2(float f) {
  uint32_t x = f32_bits(f);
  uint8_t sign = (uint8_t)((x >> 24) & 0x80u);
  uint32_t a = x & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return sign | 0x7Fu;
  if (a >= 0x47800000u) return sign | 0x7Cu;
  if (a >= 0x38800000u) /* >= 2^-14: normal; rebias 127 -> 15 */
    return (uint8_t)(sign | rne_shift(a - 0x38000000u, 21));
  uint32_t e = a >> 23;
  if (e < 103) return sign; /* < 2^-24 */
  uint32_t sig = (a & 0x7FFFFFu) | 0x800000u;
  return (uint8_t)(sign | rne_shift(sig, 134 - e)); /* units of 2^-16 */
}

/* c10 decodes e5m2 as the half b << 8 with a float multiply, which quiets
 * signalling NaNs: 0x7D, 0x7F -> 0x7FE00000, 0x7E -> 0x7FC00000 (| sign). */
float gt_e5m2_to_f32(uint8_t b) {
  uint32_t sign = (uint32_t)(b & 0x80u) << 24;
  uint32_t c = b & 0x7Fu, e = c >> 2, m = c & 3u;
  if (c == 0x7Cu) return bits_f32(sign | 0x7F800000u);
  if (c > 0x7Cu) return bits_f32(sign | 0x7FC00000u | (m << 21));
  if (e) return bits_f32(sign | ((e + 112) << 23) | (m << 21));
  return bits_f32(sign | (m ? f32_bits((float)m * 0x1p-16f) : 0));
}

/* --------------------------------------------------------------- loaders */

/* Loops over m elements of type T at byte pointer s (any alignment). */
#define LOAD(T, expr)                            \
  for (size_t i = 0; i < m; i++) {               \
    T v;                                         \
    memcpy(&v, s + i * sizeof v, sizeof v);      \
    out[i] = (expr);                             \
  }                                              \
  break

/* Values of m source elements as float32; sdt is real (not complex). */
static void load_f32(gt_dtype sdt, const unsigned char *s, size_t m,
                     float *out) {
  switch (sdt) {
    case GT_F64: LOAD(double, (float)v);
    case GT_F32: LOAD(float, v);
    case GT_F16: LOAD(uint16_t, gt_f16_to_f32(v));
    case GT_BF16: LOAD(uint16_t, gt_bf16_to_f32(v));
    case GT_F8E4M3FN: LOAD(uint8_t, gt_e4m3fn_to_f32(v));
    case GT_F8E5M2: LOAD(uint8_t, gt_e5m2_to_f32(v));
    case GT_I64: LOAD(int64_t, (float)v);
    case GT_I32: LOAD(int32_t, (float)v);
    case GT_I16: LOAD(int16_t, (float)v);
    case GT_I8: LOAD(int8_t, (float)v);
    case GT_U64: LOAD(uint64_t, (float)v);
    case GT_U32: LOAD(uint32_t, (float)v);
    case GT_U16: LOAD(uint16_t, (float)v);
    case GT_U8: LOAD(uint8_t, (float)v);
    case GT_BOOL: LOAD(uint8_t, v != 0);
    default: break;
  }
}

/* Values of m source elements as float64 (exact for every float source). */
static void load_f64(gt_dtype sdt, const unsigned char *s, size_t m,
                     double *out) {
  switch (sdt) {
    case GT_F64: LOAD(double, v);
    case GT_F32: LOAD(float, (double)v);
    case GT_F16: LOAD(uint16_t, f16_to_f64(v));
    case GT_BF16: LOAD(uint16_t, (double)gt_bf16_to_f32(v));
    case GT_F8E4M3FN: LOAD(uint8_t, (double)gt_e4m3fn_to_f32(v));
    case GT_F8E5M2: LOAD(uint8_t, (double)gt_e5m2_to_f32(v));
    case GT_I64: LOAD(int64_t, (double)v);
    case GT_I32: LOAD(int32_t, (double)v);
    case GT_I16: LOAD(int16_t, (double)v);
    case GT_I8: LOAD(int8_t, (double)v);
    case GT_U64: LOAD(uint64_t, (double)v);
    case GT_U32: LOAD(uint32_t, (double)v);
    case GT_U16: LOAD(uint16_t, (double)v);
    case GT_U8: LOAD(uint8_t, (double)v);
    case GT_BOOL: LOAD(uint8_t, v != 0);
    default: break;
  }
}

/* Integer sources as two's complement bits (signed ones sign-extended). */
static void load_u64(gt_dtype sdt, const unsigned char *s, size_t m,
                     uint64_t *out) {
  switch (sdt) {
    case GT_I64: LOAD(int64_t, (uint64_t)v);
    case GT_I32: LOAD(int32_t, (uint64_t)(int64_t)v);
    case GT_I16: LOAD(int16_t, (uint64_t)(int64_t)v);
    case GT_I8: LOAD(int8_t, (uint64_t)(int64_t)v);
    case GT_U64: LOAD(uint64_t, v);
    case GT_U32: LOAD(uint32_t, v);
    case GT_U16: LOAD(uint16_t, v);
    case GT_U8: LOAD(uint8_t, v);
    case GT_BOOL: LOAD(uint8_t, v != 0);
    default: break;
  }
}

#undef LOAD

/* ---------------------------------------------------------------- stores */

#define STORE(T, expr)                           \
  for (size_t i = 0; i < m; i++) {               \
    T v = (expr);                                \
    memcpy(d + i * sizeof v, &v, sizeof v);      \
  }                                              \
  break

/* ddt is float32, float16, bfloat16 or a float8. */
static void store_f32(gt_dtype ddt, unsigned char *d, const float *in,
                      size_t m) {
  switch (ddt) {
    case GT_F32: memcpy(d, in, m * sizeof *in); break;
    case GT_F16: STORE(uint16_t, gt_f32_to_f16(in[i]));
    case GT_BF16: STORE(uint16_t, gt_f32_to_bf16(in[i]));
    case GT_F8E4M3FN: STORE(uint8_t, gt_f32_to_e4m3fn(in[i]));
    case GT_F8E5M2: STORE(uint8_t, gt_f32_to_e5m2(in[i]));
    default: break;
  }
}

/* Truncated values must lie in [lo, hi): both bounds are exact doubles. */
static void int_bounds(gt_dtype dt, double *lo, double *hi) {
  switch (dt) {
    case GT_I64: *lo = -0x1p63; *hi = 0x1p63; break;
    case GT_I32: *lo = -0x1p31; *hi = 0x1p31; break;
    case GT_I16: *lo = -0x1p15; *hi = 0x1p15; break;
    case GT_I8: *lo = -0x1p7; *hi = 0x1p7; break;
    case GT_U64: *lo = 0; *hi = 0x1p64; break;
    case GT_U32: *lo = 0; *hi = 0x1p32; break;
    case GT_U16: *lo = 0; *hi = 0x1p16; break;
    default: *lo = 0; *hi = 0x1p8; break;
  }
}

/* Fails on the first value (from a float source) with no ddt value. */
static int check_ints(gt_dtype ddt, const double *in, size_t m,
                      gt_dtype sdt, size_t base, gt_err *err) {
  double lo, hi;
  int_bounds(ddt, &lo, &hi);
  for (size_t i = 0; i < m; i++) {
    double t = trunc(in[i]);
    if (t >= lo && t < hi) continue;
    if (isnan(in[i]))
      return gt_fail(err, "cannot cast %s NaN at element %zu to %s",
                     gt_dtype_name(sdt), base + i, gt_dtype_name(ddt));
    return gt_fail(err, "cannot cast %s value %.*g at element %zu to %s: "
                   "out of range", gt_dtype_name(sdt),
                   sdt == GT_F64 ? 17 : 9, in[i], base + i,
                   gt_dtype_name(ddt));
  }
  return GT_OK;
}

/* ddt is float64, float16, an int or bool. Conversion to int truncates
 * (C's float -> int conversion) after check_ints has passed. */
static int store_f64(gt_dtype ddt, unsigned char *d, const double *in,
                     size_t m, gt_dtype sdt, size_t base, gt_err *err) {
  if (gt_dtype_is_int(ddt) && check_ints(ddt, in, m, sdt, base, err))
    return GT_ERR;
  switch (ddt) {
    case GT_F64: memcpy(d, in, m * sizeof *in); break;
    case GT_F16: STORE(uint16_t, gt_f64_to_f16(in[i]));
    case GT_I64: STORE(int64_t, (int64_t)in[i]);
    case GT_I32: STORE(int32_t, (int32_t)in[i]);
    case GT_I16: STORE(int16_t, (int16_t)in[i]);
    case GT_I8: STORE(int8_t, (int8_t)in[i]);
    case GT_U64: STORE(uint64_t, (uint64_t)in[i]);
    case GT_U32: STORE(uint32_t, (uint32_t)in[i]);
    case GT_U16: STORE(uint16_t, (uint16_t)in[i]);
    case GT_U8: STORE(uint8_t, (uint8_t)in[i]);
    case GT_BOOL: STORE(uint8_t, in[i] != 0); /* NaN != 0 */
    default: break;
  }
  return GT_OK;
}

/* ddt is an int or bool: keep the low bits (wrap), or test != 0. */
static void store_u64(gt_dtype ddt, unsigned char *d, const uint64_t *in,
                      size_t m) {
  switch (ddt) {
    case GT_I64: case GT_U64: STORE(uint64_t, in[i]);
    case GT_I32: case GT_U32: STORE(uint32_t, (uint32_t)in[i]);
    case GT_I16: case GT_U16: STORE(uint16_t, (uint16_t)in[i]);
    case GT_I8: case GT_U8: STORE(uint8_t, (uint8_t)in[i]);
    case GT_BOOL: STORE(uint8_t, in[i] != 0);
    default: break;
  }
}

#undef STORE

/* -------------------------------------------------------------- dispatch */

typedef enum { VIA_F32, VIA_F64, VIA_U64 } gt_route;

static gt_route route(gt_dtype sdt, gt_dtype ddt) {
  int sf = gt_dtype_is_float(sdt);
  switch (ddt) {
    case GT_F64: return VIA_F64;
    case GT_F16: return sf && sdt != GT_F64 ? VIA_F32 : VIA_F64;
    case GT_F32: case GT_BF16: case GT_F8E4M3FN: case GT_F8E5M2:
      return VIA_F32;
    default: return sf ? VIA_F64 : VIA_U64;
  }
}

/* Real dtypes only; m <= BLOCK; base = index of s's first element. */
static int convert_block(gt_dtype ddt, unsigned char *d, gt_dtype sdt,
                         const unsigned char *s, size_t m, size_t base,
                         gt_err *err) {
  union {
    float f[BLOCK];
    double g[BLOCK];
    uint64_t u[BLOCK];
  } buf;
  switch (route(sdt, ddt)) {
    case VIA_F32:
      load_f32(sdt, s, m, buf.f);
      store_f32(ddt, d, buf.f, m);
      return GT_OK;
    case VIA_F64:
      load_f64(sdt, s, m, buf.g);
      return store_f64(ddt, d, buf.g, m, sdt, base, err);
    default:
      load_u64(sdt, s, m, buf.u);
      store_u64(ddt, d, buf.u, m);
      return GT_OK;
  }
}

/* The vector kernels for this pair, if the CPU has them; 1 when done. */
static int convert_vector(gt_dtype ddt, void *dst, gt_dtype sdt,
                          const void *src, size_t n) {
  unsigned u = gt_x86_units();
  if (atomic_load_explicit(&force_scalar, memory_order_relaxed)) return 0;
  if ((u & GT_X86_F16C) && sdt == GT_F32 && ddt == GT_F16)
    gt_x86_f32_to_f16(dst, src, n);
  else if ((u & GT_X86_F16C) && sdt == GT_F16 && ddt == GT_F32)
    gt_x86_f16_to_f32(dst, src, n);
  else if ((u & GT_X86_AVX2) && sdt == GT_F32 && ddt == GT_BF16)
    gt_x86_f32_to_bf16(dst, src, n);
  else if ((u & GT_X86_AVX2) && sdt == GT_BF16 && ddt == GT_F32)
    gt_x86_bf16_to_f32(dst, src, n);
  else if ((u & GT_X86_AVX2) && sdt == GT_F64 && ddt == GT_F32)
    gt_x86_f64_to_f32(dst, src, n);
  else if ((u & GT_X86_AVX2) && sdt == GT_F32 && ddt == GT_F64)
    gt_x86_f32_to_f64(dst, src, n);
  else
    return 0;
  return 1;
}

/* Little-endian source; base = index of src's first element in the
 * caller's numbering (for messages). */
static int convert_plain(gt_dtype ddt, void *dst, gt_dtype sdt,
                         const void *src, size_t n, size_t base,
                         gt_err *err) {
  if (sdt == ddt && ddt != GT_BOOL) {
    memcpy(dst, src, n * gt_dtype_size(sdt));
    return GT_OK;
  }
  /* complex64 <-> complex128 (the only complex pair left): component-wise;
   * no conversion of these can fail, so base does not matter. */
  if (sdt == GT_C64)
    return convert_plain(GT_F64, dst, GT_F32, src, 2 * n, 2 * base, err);
  if (sdt == GT_C128)
    return convert_plain(GT_F32, dst, GT_F64, src, 2 * n, 2 * base, err);
  if (convert_vector(ddt, dst, sdt, src, n)) return GT_OK;
  size_t ss = gt_dtype_size(sdt), ds = gt_dtype_size(ddt);
  const unsigned char *s = src;
  unsigned char *d = dst;
  for (size_t i = 0; i < n; i += BLOCK) {
    size_t m = n - i < BLOCK ? n - i : BLOCK;
    if (convert_block(ddt, d + i * ds, sdt, s + i * ss, m, base + i, err))
      return GT_ERR;
  }
  return GT_OK;
}

/* Reverse the bytes of each of count lanes of lane (2, 4 or 8) bytes. */
static void bswap_copy(void *dst, const void *src, size_t count,
                       size_t lane) {
  const unsigned char *s = src;
  unsigned char *d = dst;
  if (!atomic_load_explicit(&force_scalar, memory_order_relaxed) &&
      (gt_x86_units() & GT_X86_AVX2)) {
    gt_x86_bswap(dst, src, count, lane);
    return;
  }
  for (size_t i = 0; i < count; i++, s += lane, d += lane) {
    if (lane == 2) {
      uint16_t v;
      memcpy(&v, s, 2);
      v = __builtin_bswap16(v);
      memcpy(d, &v, 2);
    } else if (lane == 4) {
      uint32_t v;
      memcpy(&v, s, 4);
      v = __builtin_bswap32(v);
      memcpy(d, &v, 4);
    } else {
      uint64_t v;
      memcpy(&v, s, 8);
      v = __builtin_bswap64(v);
      memcpy(d, &v, 8);
    }
  }
}

int gt_convert(gt_dtype ddt, void *dst, gt_dtype sdt, const void *src,
               size_t n, int swap, gt_err *err) {
  return gt_convert_at(ddt, dst, sdt, src, n, swap, 0, err);
}

int gt_convert_at(gt_dtype ddt, void *dst, gt_dtype sdt, const void *src,
                  size_t n, int swap, size_t first, gt_err *err) {
  if ((unsigned)sdt >= GT_NDTYPES || (unsigned)ddt >= GT_NDTYPES)
    return gt_fail(err, "cast: invalid dtype code");
  if (!gt_dtype_castable(sdt, ddt))
    return gt_fail(err, "cannot cast %s to %s", gt_dtype_name(sdt),
                   gt_dtype_name(ddt));
  if (n == 0) return GT_OK;
  size_t es = gt_dtype_size(sdt);
  size_t lane = gt_dtype_is_complex(sdt) ? es / 2 : es;
  /* Strings: element structs are copied (they point into the storage);
   * they have no byte order. */
  if (!swap || lane == 1 || sdt == GT_STRING)
    return convert_plain(ddt, dst, sdt, src, n, first, err);
  if (sdt == ddt) {
    bswap_copy(dst, src, n * (es / lane), lane);
    return GT_OK;
  }
  /* Big-endian source: swap a chunk into tmp, then convert it. */
  _Alignas(64) unsigned char tmp[8192];
  size_t per = sizeof tmp / es, ds = gt_dtype_size(ddt);
  const unsigned char *s = src;
  unsigned char *d = dst;
  for (size_t i = 0; i < n; i += per) {
    size_t m = n - i < per ? n - i : per;
    bswap_copy(tmp, s + i * es, m * (es / lane), lane);
    if (convert_plain(ddt, d + i * ds, sdt, tmp, m, first + i, err))
      return GT_ERR;
  }
  return GT_OK;
}
