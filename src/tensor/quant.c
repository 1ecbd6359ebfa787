/* quant.c: ggml block formats: dequantisation, Q8_0/Q4_0 quantisation, and
 * the copy/stream paths for quantised views (see quant.h).
 *
 * Block layouts (little-endian; d, m, dmin are IEEE half floats except Q8_K's
 * float32 d), QK = 32 elements, QK_K = 256:
 *   Q4_0  d, qs[16]               x = d * ((nibble) - 8)
 *   Q4_1  d, m, qs[16]            x = d * nibble + m
 *   Q5_0  d, qh[4], qs[16]        x = d * ((nibble | bit << 4) - 16)
 *   Q5_1  d, m, qh[4], qs[16]     x = d * (nibble | bit << 4) + m
 *   Q8_0  d, qs[32] (int8)        x = d * q
 *   Q2_K  scales[16], qs[64], d, dmin
 *   Q3_K  hmask[32], qs[64], scales[12], d
 *   Q4_K  d, dmin, scales[12], qs[128]
 *   Q5_K  d, dmin, scales[12], qh[32], qs[128]
 *   Q6_K  ql[128], qh[64], scales[16] (int8), d
 *   Q8_K  d (float32), qs[256] (int8), bsums[16] (int16, unused here)
 * In the 32-element blocks, byte j of qs holds element j (low nibble) and
 * element j + 16 (high nibble); qh bit i is the fifth bit of element i. */
#include "tensor/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/cast.h"
#include "tensor/copy.h"

int gt_dtype_is_quant(gt_dtype dt) { return gt_dtype_block(dt) > 1; }

static float half(const unsigned char *p) {
  return gt_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

/* ---- 32-element blocks ------------------------------------------------- */

static void deq_q4_0(const unsigned char *b, float *y) {
  float d = half(b);
  const unsigned char *qs = b + 2;
  for (int j = 0; j < 16; j++) {
    y[j] = (float)((qs[j] & 0x0F) - 8) * d;
    y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
  }
}

static void deq_q4_1(const unsigned char *b, float *y) {
  float d = half(b), m = half(b + 2);
  const unsigned char *qs = b + 4;
  for (int j = 0; j < 16; j++) {
    y[j] = (float)(qs[j] & 0x0F) * d + m;
    y[j + 16] = (float)(qs[j] >> 4) * d + m;
  }
}

static void deq_q5_0(const unsigned char *b, float *y) {
  float d = half(b);
  uint32_t qh = le32(b + 2);
  const unsigned char *qs = b + 6;
  for (int j = 0; j < 16; j++) {
    int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
    y[j] = (float)(((qs[j] & 0x0F) | h0) - 16) * d;
    y[j + 16] = (float)(((qs[j] >> 4) | h1) - 16) * d;
  }
}

static void deq_q5_1(const unsigned char *b, float *y) {
  float d = half(b), m = half(b + 2);
  uint32_t qh = le32(b + 4);
  const unsigned char *qs = b + 8;
  for (int j = 0; j < 16; j++) {
    int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
    y[j] = (float)((qs[j] & 0x0F) | h0) * d + m;
    y[j + 16] = (float)((qs[j] >> 4) | h1) * d + m;
  }
}

static void deq_q8_0(const unsigned char *b, float *y) {
  float d = half(b);
  for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

/* ---- 256-element K blocks ---------------------------------------------- */

static void deq_q2_k(const unsigned char *b, float *y) {
  const unsigned char *scales = b, *q = b + 16;
  float d = half(b + 80), dmin = half(b + 82);
  int is = 0;
  for (int n = 0; n < 256; n += 128, q += 32)
    for (int shift = 0; shift < 8; shift += 2)
      for (int half16 = 0; half16 < 2; half16++) {
        unsigned sc = scales[is++];
        float dl = d * (float)(sc & 0x0F), ml = dmin * (float)(sc >> 4);
        for (int l = 0; l < 16; l++)
          *y++ = dl * (float)((q[l + 16 * half16] >> shift) & 3) - ml;
      }
}

static void deq_q3_k(const unsigned char *b, float *y) {
  const unsigned char *hm = b, *q = b + 32, *s = b + 96;
  float d = half(b + 108);
  int8_t sc[16];
  /* 16 six-bit scales: low four bits in s[0..8) (two per byte), high two
   * bits in s[8..12) (four per byte). */
  for (int i = 0; i < 16; i++) {
    int lo = i < 8 ? s[i] & 0x0F : s[i - 8] >> 4;
    int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    sc[i] = (int8_t)((lo | hi << 4) - 32);
  }
  int is = 0;
  unsigned m = 1;
  for (int n = 0; n < 256; n += 128, q += 32)
    for (int shift = 0; shift < 8; shift += 2, m <<= 1)
      for (int half16 = 0; half16 < 2; half16++) {
        float dl = d * (float)sc[is++];
        for (int l = 16 * half16; l < 16 * half16 + 16; l++)
          *y++ = dl * (float)(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
      }
}

/* Scale and min j (0..7) of the 12 packed bytes of Q4_K / Q5_K. */
static void scale_min_k4(int j, const unsigned char *q, int *sc, int *mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

static void deq_q4_k(const unsigned char *b, float *y) {
  float d = half(b), dmin = half(b + 2);
  const unsigned char *scales = b + 4, *q = b + 16;
  for (int j = 0, is = 0; j < 256; j += 64, q += 32) {
    int sc, mn;
    scale_min_k4(is++, scales, &sc, &mn);
    float d1 = d * (float)sc, m1 = dmin * (float)mn;
    scale_min_k4(is++, scales, &sc, &mn);
    float d2 = d * (float)sc, m2 = dmin * (float)mn;
    for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0x0F) - m1;
    for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
  }
}

static void deq_q5_k(const unsigned char *b, float *y) {
  float d = half(b), dmin = half(b + 2);
  const unsigned char *scales = b + 4, *qh = b + 16, *ql = b + 48;
  unsigned u1 = 1, u2 = 2;
  for (int j = 0, is = 0; j < 256; j += 64, ql += 32, u1 <<= 2, u2 <<= 2) {
    int sc, mn;
    scale_min_k4(is++, scales, &sc, &mn);
    float d1 = d * (float)sc, m1 = dmin * (float)mn;
    scale_min_k4(is++, scales, &sc, &mn);
    float d2 = d * (float)sc, m2 = dmin * (float)mn;
    for (int l = 0; l < 32; l++)
      *y++ = d1 * (float)((ql[l] & 0x0F) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; l++)
      *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
  }
}

static void deq_q6_k(const unsigned char *b, float *y) {
  const unsigned char *ql = b, *qh = b + 128;
  const int8_t *sc = (const int8_t *)(b + 192);
  float d = half(b + 208);
  for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
    for (int l = 0; l < 32; l++) {
      int is = l / 16;
      int q1 = ((ql[l] & 0x0F) | ((qh[l] >> 0) & 3) << 4) - 32;
      int q2 = ((ql[l + 32] & 0x0F) | ((qh[l] >> 2) & 3) << 4) - 32;
      int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
      int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
      y[l] = d * (float)sc[is] * (float)q1;
      y[l + 32] = d * (float)sc[is + 2] * (float)q2;
      y[l + 64] = d * (float)sc[is + 4] * (float)q3;
      y[l + 96] = d * (float)sc[is + 6] * (float)q4;
    }
}

static void deq_q8_k(const unsigned char *b, float *y) {
  float d;
  memcpy(&d, b, 4);
  for (int j = 0; j < 256; j++) y[j] = d * (float)(int8_t)b[4 + j];
}

void gt_dequant_blocks(gt_dtype dt, const unsigned char *src, float *dst,
                       size_t nblocks) {
  void (*f)(const unsigned char *, float *);
  switch (dt) {
  case GT_Q4_0: f = deq_q4_0; break;
  case GT_Q4_1: f = deq_q4_1; break;
  case GT_Q5_0: f = deq_q5_0; break;
  case GT_Q5_1: f = deq_q5_1; break;
  case GT_Q8_0: f = deq_q8_0; break;
  case GT_Q2_K: f = deq_q2_k; break;
  case GT_Q3_K: f = deq_q3_k; break;
  case GT_Q4_K: f = deq_q4_k; break;
  case GT_Q5_K: f = deq_q5_k; break;
  case GT_Q6_K: f = deq_q6_k; break;
  case GT_Q8_K: f = deq_q8_k; break;
  default: return;
  }
  size_t bs = gt_dtype_size(dt), be = gt_dtype_block(dt);
  for (size_t i = 0; i < nblocks; i++) f(src + i * bs, dst + i * be);
}

/* ---- quantisation (ggml's quantize_row_*_ref) -------------------------- */

static void put_half(unsigned char *p, float f) {
  uint16_t h = gt_f32_to_f16(f);
  p[0] = (unsigned char)(h & 0xFF);
  p[1] = (unsigned char)(h >> 8);
}

/* v truncated toward zero and clamped to [lo, hi] (NaN gives 0): for
 * finite blocks the clamp never acts except Q4_0's MIN(15, ...). */
static int to_int(float v, int lo, int hi) {
  if (!(v == v)) return 0;
  if (v <= (float)lo) return lo;
  if (v >= (float)hi) return hi;
  return (int)v;
}

void gt_quantize_q8_0(const float *x, unsigned char *y, size_t n) {
  for (size_t i = 0; i < n / 32; i++, x += 32, y += 34) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) {
      float a = fabsf(x[j]);
      if (a > amax) amax = a;
    }
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_half(y, d);
    for (int j = 0; j < 32; j++) y[2 + j] = (unsigned char)(int8_t)to_int(roundf(x[j] * id), -128, 127);
  }
}

void gt_quantize_q4_0(const float *x, unsigned char *y, size_t n) {
  for (size_t i = 0; i < n / 32; i++, x += 32, y += 18) {
    /* The value of largest magnitude, first one on ties, sign kept. */
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++)
      if (amax < fabsf(x[j])) {
        amax = fabsf(x[j]);
        max = x[j];
      }
    float d = max / -8.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_half(y, d);
    for (int j = 0; j < 16; j++) {
      int q0 = to_int(x[j] * id + 8.5f, 0, 15);
      int q1 = to_int(x[j + 16] * id + 8.5f, 0, 15);
      y[2 + j] = (unsigned char)(q0 | q1 << 4);
    }
  }
}

/* ---- views ---------------------------------------------------------------- */

int gt_quant_view_check(const gt_tensor *t, gt_err *err) {
  int64_t be = (int64_t)gt_dtype_block(t->sdtype);
  const char *name = gt_dtype_name(t->sdtype);
  if (be == 1) return GT_OK;
  if (t->ndim == 0)
    return gt_fail(err, "a %s tensor cannot be a scalar view (it would cut a "
                   "%lld-element block); dequantise first with :float()",
                   name, (long long)be);
  int last = t->ndim - 1;
  if (t->shape[last] % be != 0 || (t->shape[last] > 1 && t->strides[last] != 1))
    return gt_fail(err, "this view of a %s tensor would cut its %lld-element "
                   "blocks (the last dimension must keep whole blocks, in "
                   "order); dequantise first with :float()", name,
                   (long long)be);
  for (int d = 0; d < last; d++)
    if (t->shape[d] > 1 && t->strides[d] % be != 0)
      return gt_fail(err, "this view of a %s tensor would cut its %lld-element "
                     "blocks; dequantise first with :float()", name,
                     (long long)be);
  return GT_OK;
}

/* Visits the rows (all but the last dimension) of a valid quantised view in
 * row-major order: fn(ctx, bytes of the row's blocks, nblocks). */
typedef int (*row_fn)(void *ctx, const unsigned char *row, size_t nblocks,
                      gt_err *err);

static int64_t row_count(const gt_tensor *t) {
  int64_t rows = 1;
  for (int d = 0; d < t->ndim - 1; d++) rows *= t->shape[d];
  return rows;
}

/* Rows [r0, r1) of t. */
static int each_row(const gt_tensor *t, int64_t r0, int64_t r1, row_fn fn,
                    void *ctx, gt_err *err) {
  int last = t->ndim - 1;
  int64_t be = (int64_t)gt_dtype_block(t->sdtype),
          bs = (int64_t)gt_dtype_size(t->sdtype);
  int64_t idx[GT_MAXDIM] = {0};
  for (int64_t d = last - 1, r = r0; d >= 0; d--) {
    idx[d] = r % t->shape[d];
    r /= t->shape[d];
  }
  size_t nb = (size_t)(t->shape[last] / be);
  for (int64_t r = r0; r < r1; r++) {
    int64_t el = 0;
    for (int d = 0; d < last; d++) el += idx[d] * t->strides[d];
    const unsigned char *p = t->storage->data + t->offset + el / be * bs;
    if (fn(ctx, p, nb, err) != GT_OK) return GT_ERR;
    for (int d = last - 1; d >= 0; d--) {
      if (++idx[d] < t->shape[d]) break;
      idx[d] = 0;
    }
  }
  return GT_OK;
}

/* Floats decoded per step: a multiple of 256 (whole K blocks). */
#define CHUNK 4096

typedef struct emit {
  gt_dtype st, dt;            /* stored (quantised) and wanted types */
  size_t dsz;                 /* bytes per output element or raw block */
  unsigned char *out;         /* copy_into: the destination cursor */
  size_t done;                /* elements (or blocks) emitted, for errors */
  float *tmp;                 /* CHUNK floats */
  /* streaming */
  unsigned char *buf;
  size_t bufsize, fill;
  int (*sink)(void *, const void *, size_t, gt_err *);
  void *sctx;
} emit;

/* Decodes nb blocks at p into n = nb * block values of e->dt at dst. */
static int decode(emit *e, const unsigned char *p, size_t nb, unsigned char *dst,
                  gt_err *err) {
  size_t be = gt_dtype_block(e->st), bs = gt_dtype_size(e->st);
  if (e->dt == e->st) {
    memcpy(dst, p, nb * bs);
    e->done += nb * be;
    return GT_OK;
  }
  size_t per = CHUNK / be;
  while (nb > 0) {
    size_t k = nb < per ? nb : per;
    gt_dequant_blocks(e->st, p, e->tmp, k);
    if (gt_convert_at(e->dt, dst, GT_F32, e->tmp, k * be, 0, e->done, err) != GT_OK)
      return GT_ERR;
    e->done += k * be;
    dst += k * be * e->dsz;
    p += k * bs;
    nb -= k;
  }
  return GT_OK;
}

/* Output bytes of nb blocks. */
static size_t out_bytes(const emit *e, size_t nb) {
  return e->dt == e->st ? nb * gt_dtype_size(e->st)
                        : nb * gt_dtype_block(e->st) * e->dsz;
}

static int copy_row(void *ctx, const unsigned char *p, size_t nb, gt_err *err) {
  emit *e = ctx;
  if (decode(e, p, nb, e->out, err) != GT_OK) return GT_ERR;
  e->out += out_bytes(e, nb);
  return GT_OK;
}

static int emit_init(emit *e, const gt_tensor *t, gt_dtype ddt, gt_err *err) {
  memset(e, 0, sizeof *e);
  e->st = t->sdtype;
  e->dt = ddt;
  e->dsz = gt_dtype_size(ddt);
  if (ddt != t->sdtype && !gt_dtype_castable(t->sdtype, ddt))
    return gt_fail(err, "cannot cast %s to %s", gt_dtype_name(t->sdtype),
                   gt_dtype_name(ddt));
  if (gt_quant_view_check(t, err) != GT_OK) return GT_ERR;
  if (ddt != t->sdtype && !(e->tmp = malloc(CHUNK * sizeof(float))))
    return gt_fail(err, "out of memory");
  return GT_OK;
}

/* One worker's share of a parallel copy: rows [r0, r1). */
typedef struct share {
  const gt_tensor *t;
  gt_dtype ddt;
  unsigned char *dst;
  int64_t r0, r1;
  int rc;
  gt_err err;
} share;

static void run_share(void *ctx, int i) {
  share *s = (share *)ctx + i;
  emit e;
  s->rc = emit_init(&e, s->t, s->ddt, &s->err);
  if (s->rc != GT_OK) return;
  e.out = s->dst;
  e.done = (size_t)(s->r0 * s->t->shape[s->t->ndim - 1]);
  s->rc = each_row(s->t, s->r0, s->r1, copy_row, &e, &s->err);
  free(e.tmp);
}

/* Output bytes below which one thread decodes everything. */
#define PARALLEL_OUT ((int64_t)1 << 20)

int gt_quant_copy_into(const gt_tensor *t, gt_dtype ddt, void *dst,
                       gt_err *err) {
  emit e;
  if (emit_init(&e, t, ddt, err) != GT_OK) return GT_ERR;
  free(e.tmp);
  if (gt_tensor_numel(t) == 0) return GT_OK;
  if (gt_storage_ready(t->storage, err) != GT_OK) return GT_ERR;
  int64_t rows = row_count(t);
  int64_t row_out = (int64_t)out_bytes(&e, (size_t)(t->shape[t->ndim - 1] /
                                        (int64_t)gt_dtype_block(t->sdtype)));
  int k = gt_get_threads();
  if (k > 64) k = 64;
  if (rows * row_out < PARALLEL_OUT || k < 2) k = 1;
  if (k > rows) k = (int)rows;
  share sh[64];
  int64_t r = 0;
  for (int i = 0; i < k; i++) {
    int64_t n = rows / k + (i < rows % k);
    sh[i] = (share){t, ddt, (unsigned char *)dst + r * row_out, r, r + n, GT_OK, {{0}}};
    r += n;
  }
  if (k == 1) run_share(sh, 0);
  else gt_parallel_for(k, run_share, sh);
  for (int i = 0; i < k; i++)
    if (sh[i].rc != GT_OK) {
      if (err) *err = sh[i].err;
      return GT_ERR;
    }
  return GT_OK;
}

static int stream_row(void *ctx, const unsigned char *p, size_t nb,
                      gt_err *err) {
  emit *e = ctx;
  size_t bs = gt_dtype_size(e->st), per = out_bytes(e, 1);
  while (nb > 0) {
    size_t room = (e->bufsize - e->fill) / per;
    if (room == 0) {
      if (e->sink(e->sctx, e->buf, e->fill, err) != GT_OK) return GT_ERR;
      e->fill = 0;
      continue;
    }
    size_t k = nb < room ? nb : room;
    if (decode(e, p, k, e->buf + e->fill, err) != GT_OK) return GT_ERR;
    e->fill += out_bytes(e, k);
    p += k * bs;
    nb -= k;
  }
  return GT_OK;
}

int gt_quant_stream(const gt_tensor *t, gt_dtype ddt, void *buf,
                    size_t bufsize,
                    int (*sink)(void *ctx, const void *bytes, size_t n,
                                gt_err *err),
                    void *ctx, gt_err *err) {
  emit e;
  if (emit_init(&e, t, ddt, err) != GT_OK) return GT_ERR;
  e.buf = buf;
  e.bufsize = bufsize;
  e.sink = sink;
  e.sctx = ctx;
  int rc = GT_OK;
  if (bufsize < out_bytes(&e, 1)) rc = gt_fail(err, "stream buffer too small");
  if (rc == GT_OK && gt_tensor_numel(t) > 0) {
    rc = gt_storage_ready(t->storage, err);
    if (rc == GT_OK) rc = each_row(t, 0, row_count(t), stream_row, &e, err);
    if (rc == GT_OK && e.fill > 0) rc = sink(ctx, buf, e.fill, err);
  }
  free(e.tmp);
  return rc;
}
