/* copy.c: the materialising kernels.
 *
 * Every copy goes through a *plan*: the view with size-1 dims dropped and
 * neighbouring dims merged where the source strides allow (the destination
 * is always row-major, so any merge that holds for the source holds for
 * both). Three loops then cover all cases:
 *   rows:  innermost source stride is 1: convert whole rows;
 *   tiles: some other dim has source stride 1 (a transpose-like layout):
 *          copy square tiles between that dim and the innermost one so both
 *          reads and writes stay in cache;
 *   gather: anything else: gather strided rows into a small buffer, convert.
 * Big plans are split along their outermost dim across worker threads; each
 * part writes a disjoint contiguous slice of the destination. */
#include "tensor/copy.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/cap.h"
#include "tensor/cast.h"
#include "tensor/cast_x86.h"
#include "tensor/expr.h"
#include "tensor/quant.h"

#ifndef TILE_B
#define TILE_B 16 /* tile extent along the unit-stride source dim */
#endif
#ifndef TILE_A
#define TILE_A 256 /* tile extent along the innermost destination dim */
#endif
#define GATHER 1024              /* elements per gathered row piece */
#define PARALLEL_BYTES (1 << 20) /* below this one thread is faster */

typedef struct plan {
  int nd;
  int64_t shape[GT_MAXDIM];
  int64_t stride[GT_MAXDIM];     /* source strides, elements */
  const unsigned char *src;      /* element 0 */
  gt_dtype sdt, ddt;
  gt_dtype mid;                  /* a lazy cast's dtype to round through, or ddt */
  int swap;
  int same;                      /* elements move unchanged (memcpy-able) */
  size_t ssz, dsz;
} plan;

static int nthreads = 0;

void gt_set_threads(int n) { nthreads = n < 1 ? 1 : n > 64 ? 64 : n; }

/* Default: the CPUs online, at most 4 (copies are memory-bound; more
 * threads than memory channels only add overhead). GRAFT_THREADS=N or
 * gt_set_threads(N) overrides. */
int gt_get_threads(void) {
  if (nthreads == 0) {
    const char *env = getenv("GRAFT_THREADS");
    long c = env ? atol(env) : sysconf(_SC_NPROCESSORS_ONLN);
    gt_set_threads(c < 1 ? 1 : c > 4 && !env ? 4 : (int)c);
  }
  return nthreads;
}

static void make_plan(const gt_tensor *t, gt_dtype ddt, plan *p) {
  p->nd = 0;
  for (int i = 0; i < t->ndim; i++) {
    if (t->shape[i] == 1) continue;
    if (p->nd > 0 &&
        p->stride[p->nd - 1] == t->strides[i] * t->shape[i]) {
      p->shape[p->nd - 1] *= t->shape[i];
      p->stride[p->nd - 1] = t->strides[i];
    } else {
      p->shape[p->nd] = t->shape[i];
      p->stride[p->nd] = t->strides[i];
      p->nd++;
    }
  }
  p->src = t->storage->data + t->offset;
  p->sdt = t->sdtype;
  p->ddt = ddt;
  /* Materialising a lazy cast as yet another type must still round
   * through the presented dtype (float32 -> float16 view read as float64
   * gives float16 values). */
  p->mid = (t->dtype != t->sdtype && t->dtype != ddt) ? t->dtype : ddt;
  p->swap = t->swap && gt_dtype_size(t->sdtype) > 1;
  p->same = p->sdt == p->ddt && p->mid == p->ddt && !p->swap;
  p->ssz = gt_dtype_size(t->sdtype);
  p->dsz = gt_dtype_size(ddt);
}

static int64_t plan_numel(const plan *p, int from) {
  int64_t n = 1;
  for (int i = from; i < p->nd; i++) n *= p->shape[i];
  return n;
}

/* Plain same-type copy or conversion of n contiguous source elements. */
static int convert(const plan *p, void *dst, const void *src, size_t n,
                   gt_err *err) {
  if (p->same) {
    memcpy(dst, src, n * p->dsz);
    return GT_OK;
  }
  if (p->mid == p->ddt) return gt_convert(p->ddt, dst, p->sdt, src, n, p->swap, err);
  unsigned char tmp[GATHER * 16];
  for (size_t i = 0; i < n; i += GATHER) {
    size_t m = n - i < GATHER ? n - i : GATHER;
    if (gt_convert(p->mid, tmp, p->sdt, (const unsigned char *)src + i * p->ssz,
                   m, p->swap, err) ||
        gt_convert(p->ddt, (unsigned char *)dst + i * p->dsz, p->mid, tmp, m, 0,
                   err))
      return GT_ERR;
  }
  return GT_OK;
}

/* Advance a multi-index over dims [0, nd) (last fastest); returns the
 * source element offset change. */
static int64_t step_index(const plan *p, int nd, int64_t *idx) {
  int64_t delta = 0;
  for (int d = nd - 1; d >= 0; d--) {
    if (++idx[d] < p->shape[d]) return delta + p->stride[d];
    idx[d] = 0;
    delta -= p->stride[d] * (p->shape[d] - 1);
  }
  return delta;
}

static int run_rows(const plan *p, unsigned char *dst, gt_err *err) {
  int64_t row = p->nd ? p->shape[p->nd - 1] : 1;
  int64_t rows = p->nd ? plan_numel(p, 0) / row : 1;
  int64_t idx[GT_MAXDIM] = {0}, off = 0;
  for (int64_t r = 0; r < rows; r++) {
    if (convert(p, dst, p->src + off * (int64_t)p->ssz, (size_t)row, err))
      return GT_ERR;
    dst += row * (int64_t)p->dsz;
    if (p->nd > 1) off += step_index(p, p->nd - 1, idx);
  }
  return GT_OK;
}

static int run_gather(const plan *p, unsigned char *dst, gt_err *err) {
  unsigned char tmp[GATHER * 16];
  int64_t row = p->shape[p->nd - 1], st = p->stride[p->nd - 1];
  int64_t rows = plan_numel(p, 0) / row;
  int64_t idx[GT_MAXDIM] = {0}, off = 0;
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t j0 = 0; j0 < row; j0 += GATHER) {
      int64_t m = row - j0 < GATHER ? row - j0 : GATHER;
      const unsigned char *s = p->src + (off + j0 * st) * (int64_t)p->ssz;
      for (int64_t j = 0; j < m; j++)
        memcpy(tmp + j * (int64_t)p->ssz, s + j * st * (int64_t)p->ssz, p->ssz);
      if (convert(p, dst, tmp, (size_t)m, err)) return GT_ERR;
      dst += m * (int64_t)p->dsz;
    }
    off += step_index(p, p->nd - 1, idx);
  }
  return GT_OK;
}

/* Copy a tb x ta tile: source element (i, j) at s[i + j*sa] (i along the
 * unit-stride dim b, j along the innermost destination dim a) goes to
 * d[i*db + j]. The tile is walked in 8 x 8 blocks: 8 source lines and 8
 * destination lines at a time, which stay in L1 even when both strides are
 * a multiple of 4 KiB (every line in the same cache set). Fixed element
 * sizes let the compiler emit plain moves. */
#define TILE_COPY(T)                                                        \
  static void tile_##T(unsigned char *d, const unsigned char *s, int64_t db, \
                       int64_t sa, int tb, int ta) {                        \
    const T *sp = (const T *)s;                                             \
    T *dp = (T *)d;                                                         \
    for (int i0 = 0; i0 < tb; i0 += 8)                                      \
      for (int j0 = 0; j0 < ta; j0 += 8) {                                  \
        int ie = i0 + 8 < tb ? i0 + 8 : tb, je = j0 + 8 < ta ? j0 + 8 : ta; \
        for (int i = i0; i < ie; i++)                                       \
          for (int j = j0; j < je; j++) dp[i * db + j] = sp[i + j * sa];    \
      }                                                                     \
  }
TILE_COPY(uint8_t)
TILE_COPY(uint16_t)
TILE_COPY(uint32_t)
TILE_COPY(uint64_t)

typedef struct { uint64_t a, b; } u128;
TILE_COPY(u128)

#if defined(__x86_64__)
#include <immintrin.h>

/* 8 x 8 transpose of 4-byte elements in AVX2 registers: load 8 source
 * runs (fixed j, i = 0..7), store 8 destination runs (fixed i, j = 0..7). */
__attribute__((target("avx2"))) static void tr8x8_32(float *d, int64_t db,
                                                     const float *s,
                                                     int64_t sa) {
  __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + sa);
  __m256 r2 = _mm256_loadu_ps(s + 2 * sa), r3 = _mm256_loadu_ps(s + 3 * sa);
  __m256 r4 = _mm256_loadu_ps(s + 4 * sa), r5 = _mm256_loadu_ps(s + 5 * sa);
  __m256 r6 = _mm256_loadu_ps(s + 6 * sa), r7 = _mm256_loadu_ps(s + 7 * sa);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(d + db, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(d + 2 * db, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(d + 3 * db, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(d + 4 * db, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(d + 5 * db, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(d + 6 * db, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(d + 7 * db, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* 8 x 8 transpose of 2-byte elements in SSE2 registers (x86-64 baseline). */
static void tr8x8_16(uint16_t *d, int64_t db, const uint16_t *s, int64_t sa) {
  __m128i r0 = _mm_loadu_si128((const __m128i *)(const void *)s);
  __m128i r1 = _mm_loadu_si128((const __m128i *)(const void *)(s + sa));
  __m128i r2 = _mm_loadu_si128((const __m128i *)(const void *)(s + 2 * sa));
  __m128i r3 = _mm_loadu_si128((const __m128i *)(const void *)(s + 3 * sa));
  __m128i r4 = _mm_loadu_si128((const __m128i *)(const void *)(s + 4 * sa));
  __m128i r5 = _mm_loadu_si128((const __m128i *)(const void *)(s + 5 * sa));
  __m128i r6 = _mm_loadu_si128((const __m128i *)(const void *)(s + 6 * sa));
  __m128i r7 = _mm_loadu_si128((const __m128i *)(const void *)(s + 7 * sa));
  __m128i a0 = _mm_unpacklo_epi16(r0, r1), a1 = _mm_unpackhi_epi16(r0, r1);
  __m128i a2 = _mm_unpacklo_epi16(r2, r3), a3 = _mm_unpackhi_epi16(r2, r3);
  __m128i a4 = _mm_unpacklo_epi16(r4, r5), a5 = _mm_unpackhi_epi16(r4, r5);
  __m128i a6 = _mm_unpacklo_epi16(r6, r7), a7 = _mm_unpackhi_epi16(r6, r7);
  __m128i b0 = _mm_unpacklo_epi32(a0, a2), b1 = _mm_unpackhi_epi32(a0, a2);
  __m128i b2 = _mm_unpacklo_epi32(a1, a3), b3 = _mm_unpackhi_epi32(a1, a3);
  __m128i b4 = _mm_unpacklo_epi32(a4, a6), b5 = _mm_unpackhi_epi32(a4, a6);
  __m128i b6 = _mm_unpacklo_epi32(a5, a7), b7 = _mm_unpackhi_epi32(a5, a7);
  _mm_storeu_si128((__m128i *)(void *)d, _mm_unpacklo_epi64(b0, b4));
  _mm_storeu_si128((__m128i *)(void *)(d + db), _mm_unpackhi_epi64(b0, b4));
  _mm_storeu_si128((__m128i *)(void *)(d + 2 * db), _mm_unpacklo_epi64(b1, b5));
  _mm_storeu_si128((__m128i *)(void *)(d + 3 * db), _mm_unpackhi_epi64(b1, b5));
  _mm_storeu_si128((__m128i *)(void *)(d + 4 * db), _mm_unpacklo_epi64(b2, b6));
  _mm_storeu_si128((__m128i *)(void *)(d + 5 * db), _mm_unpackhi_epi64(b2, b6));
  _mm_storeu_si128((__m128i *)(void *)(d + 6 * db), _mm_unpacklo_epi64(b3, b7));
  _mm_storeu_si128((__m128i *)(void *)(d + 7 * db), _mm_unpackhi_epi64(b3, b7));
}

/* Walk a tile in 8 x 8 blocks with a register transpose kernel (any
 * element of `esz` bytes: data is only moved); the ragged right and bottom
 * edges go to the scalar tile. */
typedef void (*block8_fn)(unsigned char *d, int64_t db, const unsigned char *s,
                          int64_t sa);
typedef void (*tile_fn)(unsigned char *d, const unsigned char *s, int64_t db,
                        int64_t sa, int tb, int ta);

static void tile_blocks(block8_fn kernel, tile_fn edge, size_t esz,
                        unsigned char *d, const unsigned char *s, int64_t db,
                        int64_t sa, int tb, int ta) {
  int tb8 = tb & ~7, ta8 = ta & ~7;
  int64_t e = (int64_t)esz;
  /* A ragged edge at least 8 wide takes one more block placed flush with
   * it (at ta - 8 or tb - 8): it overlaps blocks already done and rewrites
   * the same values (d and s never alias), which beats a scalar strip (a
   * conv kernel's 3 x 3 = 9 innermost gives a one-column strip per tile). */
  int jl = ta8 < ta && ta >= 8 ? ta - 8 : -1, il = tb8 < tb && tb >= 8 ? tb - 8 : -1;
  for (int i = 0; i < tb8; i += 8) {
    for (int j = 0; j < ta8; j += 8)
      kernel(d + (i * db + j) * e, db, s + (i + j * sa) * e, sa);
    if (jl >= 0) kernel(d + (i * db + jl) * e, db, s + (i + jl * sa) * e, sa);
  }
  if (il >= 0) {
    for (int j = 0; j < ta8; j += 8)
      kernel(d + (il * db + j) * e, db, s + (il + j * sa) * e, sa);
    if (jl >= 0) kernel(d + (il * db + jl) * e, db, s + (il + jl * sa) * e, sa);
  }
  if (ta8 < ta && jl < 0) edge(d + ta8 * e, s + ta8 * sa * e, db, sa, tb8, ta - ta8);
  if (tb8 < tb && il < 0) edge(d + tb8 * db * e, s + tb8 * e, db, sa, tb - tb8, ta);
  else if (tb8 < tb && ta8 < ta && jl < 0)   /* the corner below the strip */
    edge(d + (tb8 * db + ta8) * e, s + (tb8 + ta8 * sa) * e, db, sa, tb - tb8, ta - ta8);
}

static void block8_16(unsigned char *d, int64_t db, const unsigned char *s,
                      int64_t sa) {
  tr8x8_16((uint16_t *)(void *)d, db, (const uint16_t *)(const void *)s, sa);
}

static void block8_32(unsigned char *d, int64_t db, const unsigned char *s,
                      int64_t sa) {
  tr8x8_32((float *)(void *)d, db, (const float *)(const void *)s, sa);
}
#endif

static int use_vector_tiles = 1;

static void tile_any(size_t sz, unsigned char *d, const unsigned char *s,
                     int64_t db, int64_t sa, int tb, int ta) {
  switch (sz) {
  case 1: tile_uint8_t(d, s, db, sa, tb, ta); break;
  case 2:
#if defined(__x86_64__)
    if (use_vector_tiles && ((uintptr_t)d % 2 == 0) && ((uintptr_t)s % 2 == 0)) {
      tile_blocks(block8_16, tile_uint16_t, 2, d, s, db, sa, tb, ta);
      break;
    }
#endif
    tile_uint16_t(d, s, db, sa, tb, ta);
    break;
  case 4:
#if defined(__x86_64__)
    /* float* access needs 4-byte alignment: the tiled path is only used on
     * aligned data, which storages guarantee. */
    if (use_vector_tiles && (gt_x86_units() & GT_X86_AVX2) &&
        ((uintptr_t)d % 4 == 0) && ((uintptr_t)s % 4 == 0)) {
      tile_blocks(block8_32, tile_uint32_t, 4, d, s, db, sa, tb, ta);
      break;
    }
#endif
    tile_uint32_t(d, s, db, sa, tb, ta);
    break;
  case 8: tile_uint64_t(d, s, db, sa, tb, ta); break;
  default: tile_u128(d, s, db, sa, tb, ta); break;
  }
}

void gt_copy_force_scalar(int on) { use_vector_tiles = !on; }

/* Tiled transpose between dim b (source stride 1) and the innermost dim a,
 * other dims walked outside the tiles. With a conversion, source runs along
 * b (contiguous, up to CONV_RUN elements) are converted first into a buffer
 * laid out like the source, which is then tile-transposed in the
 * destination type: conversions run on long runs, never on tile rows. */
#define CONV_RUN 1024
#define CONV_TILE_A 64

static int run_tiles(const plan *p, int b, unsigned char *dst, gt_err *err) {
  int a = p->nd - 1;
  int64_t na = p->shape[a], nb = p->shape[b], sa = p->stride[a];
  int64_t db = plan_numel(p, b + 1);          /* dst stride of dim b */
  int direct = p->same;
  int64_t ib = direct ? TILE_B : CONV_RUN, ja = direct ? TILE_A : CONV_TILE_A;
  unsigned char *tmp = NULL;
  if (!direct && !(tmp = malloc((size_t)CONV_RUN * CONV_TILE_A * p->dsz)))
    return gt_fail(err, "out of memory");
  /* outer dims: all but a and b, in destination order */
  int od[GT_MAXDIM], no = 0;
  for (int d = 0; d < p->nd; d++)
    if (d != a && d != b) od[no++] = d;
  int64_t idx[GT_MAXDIM] = {0}, outer = 1;
  for (int k = 0; k < no; k++) outer *= p->shape[od[k]];
  int rc = GT_OK;
  for (int64_t o = 0; o < outer && rc == GT_OK; o++) {
    int64_t soff = 0, doff = 0;
    for (int k = 0; k < no; k++) {
      soff += idx[k] * p->stride[od[k]];
      doff += idx[k] * plan_numel(p, od[k] + 1);
    }
    for (int64_t i0 = 0; i0 < nb && rc == GT_OK; i0 += ib) {
      int tb = (int)(nb - i0 < ib ? nb - i0 : ib);
      for (int64_t j0 = 0; j0 < na; j0 += ja) {
        int ta = (int)(na - j0 < ja ? na - j0 : ja);
        const unsigned char *s = p->src + (soff + i0 + j0 * sa) * (int64_t)p->ssz;
        unsigned char *d = dst + (doff + i0 * db + j0) * (int64_t)p->dsz;
        if (direct) {
          tile_any(p->ssz, d, s, db, sa, tb, ta);
          continue;
        }
        for (int j = 0; j < ta; j++)
          if ((rc = convert(p, tmp + (int64_t)j * tb * (int64_t)p->dsz,
                            s + j * sa * (int64_t)p->ssz, (size_t)tb, err)))
            break;
        if (rc) break;
        tile_any(p->dsz, d, tmp, db, tb, tb, ta);
      }
    }
    for (int k = no - 1; k >= 0; k--) {
      if (++idx[k] < p->shape[od[k]]) break;
      idx[k] = 0;
    }
  }
  free(tmp);
  return rc;
}

static int run_plan(const plan *p, unsigned char *dst, gt_err *err) {
  if (p->nd == 0 || p->stride[p->nd - 1] == 1) return run_rows(p, dst, err);
  int b = -1;
  for (int d = 0; d < p->nd - 1; d++)
    if (p->stride[d] == 1 && p->shape[d] >= 4) b = d;
  if (b >= 0) return run_tiles(p, b, dst, err);
  return run_gather(p, dst, err);
}

/* A piece of work for the pool: task `index` of a gt_parallel_for. */
typedef struct job {
  void (*fn)(void *ctx, int index);
  void *ctx;
  int index;
} job;

static void run_job(job *j) { j->fn(j->ctx, j->index); }

/* A small pool of persistent workers (created on first use, one slot each)
 * so that splitting a copy costs a wake-up, not a thread creation. One
 * caller at a time uses it; a concurrent caller runs single-threaded. */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t work, done;
  pthread_mutex_t busy;
  job *slot[64];
  int nworkers, finished;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
          PTHREAD_COND_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, {0}, 0, 0};

static void *worker(void *arg) {
  int me = (int)(intptr_t)arg;
  pthread_mutex_lock(&pool.mu);
  for (;;) {
    while (!pool.slot[me]) pthread_cond_wait(&pool.work, &pool.mu);
    job *j = pool.slot[me];
    pthread_mutex_unlock(&pool.mu);
    run_job(j);
    pthread_mutex_lock(&pool.mu);
    pool.slot[me] = NULL;
    pool.finished++;
    pthread_cond_signal(&pool.done);
  }
  return NULL;
}

/* Make sure n workers exist; returns how many do. Caller holds pool.busy. */
static int grow_pool(int n) {
  while (pool.nworkers < n) {
    pthread_t tid;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&tid, &attr, worker, (void *)(intptr_t)pool.nworkers);
    pthread_attr_destroy(&attr);
    if (rc != 0) break;
    pool.nworkers++;
  }
  return pool.nworkers;
}

/* One slice of a split copy. */
typedef struct slice {
  plan p;
  unsigned char *dst;
  int rc;
  gt_err err;
} slice;

static void run_slice(void *ctx, int i) {
  slice *sl = (slice *)ctx + i;
  sl->rc = run_plan(&sl->p, sl->dst, &sl->err);
}

/* Split the plan along dim 0 into k parts that write disjoint slices. */
static int run_parallel(const plan *p, unsigned char *dst, int k, gt_err *err) {
  slice sl[64];
  int64_t n0 = p->shape[0], inner = plan_numel(p, 1), start = 0;
  if (k > 64) k = 64;
  for (int i = 0; i < k; i++) {
    int64_t len = n0 / k + (i < n0 % k);
    sl[i].p = *p;
    sl[i].p.shape[0] = len;
    sl[i].p.src = p->src + start * p->stride[0] * (int64_t)p->ssz;
    sl[i].dst = dst + start * inner * (int64_t)p->dsz;
    sl[i].rc = GT_OK;
    start += len;
  }
  gt_parallel_for(k, run_slice, sl);
  for (int i = 0; i < k; i++)
    if (sl[i].rc != GT_OK) {
      if (err) *err = sl[i].err;
      return GT_ERR;
    }
  return GT_OK;
}

void gt_parallel_for(int k, void (*fn)(void *ctx, int index), void *ctx) {
  job jobs[64];
  if (k > 64) k = 64;
  int helpers = 0;
  if (k > 1 && pthread_mutex_trylock(&pool.busy) == 0) {
    helpers = grow_pool(k - 1);
    if (helpers > k - 1) helpers = k - 1;
    if (helpers == 0) pthread_mutex_unlock(&pool.busy);
  }
  for (int i = 0; i <= helpers; i++) {
    jobs[i].fn = fn;
    jobs[i].ctx = ctx;
    jobs[i].index = i;
  }
  if (helpers > 0) {
    pthread_mutex_lock(&pool.mu);
    pool.finished = 0;
    for (int i = 1; i <= helpers; i++) pool.slot[i - 1] = &jobs[i];
    pthread_cond_broadcast(&pool.work);
    pthread_mutex_unlock(&pool.mu);
  }
  run_job(&jobs[0]);
  /* Tasks the pool did not take run here, in order. */
  for (int i = helpers + 1; i < k; i++) fn(ctx, i);
  if (helpers > 0) {
    pthread_mutex_lock(&pool.mu);
    while (pool.finished < helpers) pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    pthread_mutex_unlock(&pool.busy);
  }
}

int gt_copy_into(const gt_tensor *t, gt_dtype ddt, void *dst, gt_err *err) {
  if (gt_dtype_is_quant(t->sdtype)) return gt_quant_copy_into(t, ddt, dst, err);
  if (!gt_dtype_castable(t->sdtype, ddt))
    return gt_fail(err, "cannot cast %s to %s", gt_dtype_name(t->sdtype),
                   gt_dtype_name(ddt));
  if (gt_tensor_numel(t) == 0) return GT_OK;
  /* An unevaluated expression (expr.h) is computed straight into dst when
   * t is a contiguous run of it; any other view of it loads it below. */
  int done;
  if (gt_expr_copy(t, ddt, dst, &done, err) != GT_OK) return GT_ERR;
  if (done) return GT_OK;
  if (gt_storage_ready(t->storage, err) != GT_OK) return GT_ERR;
  plan p;
  make_plan(t, ddt, &p);
  int64_t bytes = plan_numel(&p, 0) * (int64_t)(p.ssz > p.dsz ? p.ssz : p.dsz);
  int k = gt_get_threads();
  if (k > 1 && p.nd > 0 && bytes >= PARALLEL_BYTES && p.shape[0] >= 2) {
    if (k > p.shape[0]) k = (int)p.shape[0];
    return run_parallel(&p, dst, k, err);
  }
  return run_plan(&p, dst, err);
}

int gt_materialise_check(const gt_tensor *t, uint64_t bytes, gt_err *err) {
  if (gt_cap_check(bytes, err) == GT_OK) return GT_OK;
  /* Name what was being materialised: a view from a file may be huge over
   * a tiny storage (zero strides: torch.save of an expanded tensor), legal
   * until copied. */
  const char *path = gt_storage_origin(t->storage);
  char shape[160] = "scalar";
  int n = 0;
  for (int d = 0; d < t->ndim && n < (int)sizeof shape - 24; d++)
    n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%lld", d ? "x" : "",
                  (long long)t->shape[d]);
  if (path)
    return gt_wrap(err, "%.200s: materialising a %s %s view of %zu stored "
                   "bytes", path, shape, gt_dtype_name(t->dtype),
                   t->storage ? t->storage->size : 0);
  return gt_wrap(err, "materialising a %s %s tensor", shape,
                 gt_dtype_name(t->dtype));
}

int gt_contiguous(const gt_tensor *t, gt_tensor *out, gt_err *err) {
  gt_tensor r;
  /* A copy of a phantom is a phantom of the same shape (a dry run's
   * reshape of a permuted view): nothing to read. */
  if (gt_storage_is_phantom(t->storage))
    return gt_tensor_phantom(out, t->dtype, t->ndim, t->shape, err);
  if (gt_materialise_check(t, (uint64_t)gt_tensor_nbytes(t), err) != GT_OK ||
      gt_tensor_alloc(&r, t->dtype, t->ndim, t->shape, 0, err) != GT_OK)
    return GT_ERR;
  if (gt_copy_into(t, t->dtype, r.storage->data, err) != GT_OK) {
    gt_tensor_free(&r);
    return GT_ERR;
  }
  *out = r;
  return GT_OK;
}

/* The part of t at outer multi-index o over dims [0, dim): a view of the
 * remaining dims. */
static gt_tensor outer_slice(const gt_tensor *t, int dim, int64_t o) {
  gt_tensor s = *t;
  for (int d = dim - 1; d >= 0; d--) {
    int64_t i = o % t->shape[d];
    o /= t->shape[d];
    /* dims before the last: whole blocks for block-quantised types */
    s.offset += i * t->strides[d] / (int64_t)gt_dtype_block(t->sdtype) *
                (int64_t)gt_dtype_size(t->sdtype);
  }
  s.ndim = t->ndim - dim;
  memmove(s.shape, t->shape + dim, (size_t)s.ndim * sizeof s.shape[0]);
  memmove(s.strides, t->strides + dim, (size_t)s.ndim * sizeof s.strides[0]);
  return s;
}

int gt_cat(const gt_tensor *ts, int n, int dim, gt_tensor *out, gt_err *err) {
  if (n < 1) return gt_fail(err, "cat: no tensors");
  const gt_tensor *f = &ts[0];
  if (dim < 0 || dim >= f->ndim)
    return gt_fail(err, "cat: dimension %d out of range for a %d-d tensor",
                   dim + 1, f->ndim);
  if (gt_dtype_is_quant(f->dtype))
    return gt_fail(err, "cat: %s tensors cannot be joined block-wise; "
                   "dequantise first with :float()", gt_dtype_name(f->dtype));
  int64_t shape[GT_MAXDIM];
  memcpy(shape, f->shape, sizeof shape);
  shape[dim] = 0;
  for (int k = 0; k < n; k++) {
    const gt_tensor *t = &ts[k];
    if (t->dtype != f->dtype)
      return gt_fail(err, "cat: tensor %d is %s, tensor 1 is %s", k + 1,
                     gt_dtype_name(t->dtype), gt_dtype_name(f->dtype));
    if (t->ndim != f->ndim)
      return gt_fail(err, "cat: tensor %d has %d dims, tensor 1 has %d", k + 1,
                     t->ndim, f->ndim);
    for (int d = 0; d < f->ndim; d++)
      if (d != dim && t->shape[d] != f->shape[d])
        return gt_fail(err, "cat: tensor %d has size %lld in dimension %d, tensor 1 has %lld",
                       k + 1, (long long)t->shape[d], d + 1,
                       (long long)f->shape[d]);
    if (__builtin_add_overflow(shape[dim], t->shape[dim], &shape[dim]))
      return gt_fail(err, "cat: result too large");
  }
  for (int k = 0; k < n; k++)   /* phantoms in: a phantom out (dry runs) */
    if (gt_storage_is_phantom(ts[k].storage))
      return gt_tensor_phantom(out, f->dtype, f->ndim, shape, err);
  gt_tensor r;
  if (gt_tensor_alloc(&r, f->dtype, f->ndim, shape, 0, err) != GT_OK) return GT_ERR;
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < dim; d++) outer *= shape[d];
  for (int d = dim + 1; d < f->ndim; d++) inner *= shape[d];
  size_t esz = gt_dtype_size(f->dtype);
  int64_t acc = 0;
  for (int k = 0; k < n; k++) {
    for (int64_t o = 0; o < outer; o++) {
      gt_tensor s = outer_slice(&ts[k], dim, o);
      unsigned char *d = r.storage->data +
                         ((o * shape[dim] + acc) * inner) * (int64_t)esz;
      if (gt_copy_into(&s, f->dtype, d, err) != GT_OK) {
        gt_tensor_free(&r);
        return gt_wrap(err, "cat: tensor %d", k + 1);
      }
    }
    acc += ts[k].shape[dim];
  }
  *out = r;
  return GT_OK;
}

int gt_stack(const gt_tensor *ts, int n, int dim, gt_tensor *out, gt_err *err) {
  if (n < 1) return gt_fail(err, "stack: no tensors");
  if (n > 1 << 20) return gt_fail(err, "stack: too many tensors");
  gt_tensor *u = malloc((size_t)n * sizeof *u);
  if (!u) return gt_fail(err, "out of memory");
  int made = 0, rc = GT_OK;
  for (; made < n; made++) {
    const gt_tensor *t = &ts[made];
    if (t->ndim != ts[0].ndim ||
        memcmp(t->shape, ts[0].shape, (size_t)t->ndim * sizeof t->shape[0])) {
      rc = gt_fail(err, "stack: tensor %d has a different shape from tensor 1",
                   made + 1);
      break;
    }
    if (gt_unsqueeze(t, dim, &u[made], err) != GT_OK) {
      rc = GT_ERR;
      break;
    }
  }
  if (rc == GT_OK) rc = gt_cat(u, n, dim, out, err);
  for (int k = 0; k < made; k++) gt_tensor_free(&u[k]);
  free(u);
  return rc;
}

/* Stream pieces: choose the first dim k such that one slice of the dims
 * after it fits the buffer; walk the dims before k one index at a time and
 * dim k in chunks. Each piece is a sub-view copied whole into buf. */
static int stream_view(const gt_tensor *t, gt_dtype ddt, unsigned char *buf,
                       size_t bufsize, gt_sink_fn sink, void *ctx,
                       gt_err *err) {
  size_t dsz = gt_dtype_size(ddt);
  int64_t numel = gt_tensor_numel(t);
  if ((uint64_t)numel * dsz <= bufsize) {
    if (gt_copy_into(t, ddt, buf, err) != GT_OK) return GT_ERR;
    return sink(ctx, buf, (size_t)numel * dsz, err);
  }
  int k = 0;
  int64_t slice = numel;
  while (k < t->ndim) {
    slice /= t->shape[k] ? t->shape[k] : 1;
    if ((uint64_t)slice * dsz <= bufsize) break;
    k++;
  }
  /* numel > 0 here and bufsize >= dsz, so k < ndim. */
  int64_t chunk = (int64_t)(bufsize / ((uint64_t)slice * dsz));
  int64_t outer = 1;
  for (int d = 0; d < k; d++) outer *= t->shape[d];
  for (int64_t o = 0; o < outer; o++) {
    gt_tensor s = outer_slice(t, k, o);
    for (int64_t i = 0; i < s.shape[0]; i += chunk) {
      int64_t len = s.shape[0] - i < chunk ? s.shape[0] - i : chunk;
      gt_tensor piece = s;
      piece.shape[0] = len;
      piece.offset += i * s.strides[0] * (int64_t)gt_dtype_size(s.sdtype);
      if (gt_copy_into(&piece, ddt, buf, err) != GT_OK) return GT_ERR;
      if (sink(ctx, buf, (size_t)(len * slice) * dsz, err) != GT_OK)
        return GT_ERR;
    }
  }
  return GT_OK;
}

int gt_stream(const gt_tensor *t, gt_dtype ddt, void *buf, size_t bufsize,
              gt_sink_fn sink, void *ctx, int release, gt_err *err) {
  size_t dsz = gt_dtype_size(ddt);
  if (gt_dtype_is_quant(t->sdtype))
    return gt_quant_stream(t, ddt, buf, bufsize, sink, ctx, err);
  if (!gt_dtype_castable(t->sdtype, ddt))
    return gt_fail(err, "cannot cast %s to %s", gt_dtype_name(t->sdtype),
                   gt_dtype_name(ddt));
  if (bufsize < dsz) return gt_fail(err, "stream buffer too small");
  int64_t numel = gt_tensor_numel(t);
  if (numel == 0) return GT_OK;
  /* A pending expression is not loaded here: its pieces are computed by
   * gt_copy_into as they are cut. */
  int expr = gt_expr_streams(t);
  if (!expr && gt_storage_ready(t->storage, err) != GT_OK) return GT_ERR;
  int rc;
  if (gt_tensor_is_plain(t) && ddt == t->dtype && t->dtype != GT_STRING) {
    /* Already the bytes wanted: hand them over without copying. */
    const unsigned char *p = t->storage->data + t->offset;
    uint64_t total = (uint64_t)numel * dsz, done = 0;
    rc = GT_OK;
    while (rc == GT_OK && done < total) {
      size_t n = total - done < bufsize ? (size_t)(total - done) : bufsize;
      rc = sink(ctx, p + done, n, err);
      if (rc == GT_OK && release)
        gt_storage_done_with(t->storage, (uint64_t)t->offset + done, n);
      done += n;
    }
    return rc;
  }
  rc = stream_view(t, ddt, buf, bufsize, sink, ctx, err);
  if (rc == GT_OK && release && expr) {
    gt_expr_done_with(t->storage);
  } else if (rc == GT_OK && release) {
    int64_t lo, hi;
    if (gt_tensor_extent(t, &lo, &hi, NULL) == GT_OK && hi > lo)
      gt_storage_done_with(t->storage, (uint64_t)lo, (uint64_t)(hi - lo));
  }
  return rc;
}
