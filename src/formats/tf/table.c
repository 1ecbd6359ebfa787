/* tftable.c: reading and writing TensorFlow's SSTable (see tftable.h).
 *
 * Reading builds the full entry list once: bundles are opened by listing
 * every key anyway, and a flat sorted array makes lookups a bsearch. */
#include "formats/tf/table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <snappy-c.h>

#include "io/crc32c.h"

#define TRAILER 5
/* A decompressed block larger than this is refused (TF blocks are
 * 256 KiB; a huge single entry still fits easily). */
#define MAX_BLOCK ((size_t)1 << 31)

/* ------------------------------------------------------------ buffers */

int gt_tfbuf_put(gt_tfbuf *b, const void *p, size_t n, gt_err *err) {
  if (n > b->cap - b->n) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->n < n) {
      if (cap > SIZE_MAX / 2) return gt_fail(err, "out of memory");
      cap *= 2;
    }
    unsigned char *q = realloc(b->p, cap);
    if (!q) return gt_fail(err, "out of memory");
    b->p = q;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->n, p, n);
  b->n += n;
  return GT_OK;
}

int gt_tfbuf_varint(gt_tfbuf *b, uint64_t v, gt_err *err) {
  unsigned char tmp[10];
  size_t k = 0;
  while (v >= 0x80) {
    tmp[k++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  tmp[k++] = (unsigned char)v;
  return gt_tfbuf_put(b, tmp, k, err);
}

void gt_tfbuf_free(gt_tfbuf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

int gt_tf_varint(const unsigned char *p, size_t n, size_t *i, uint64_t *v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (*i >= n) return -1;
    unsigned char c = p[(*i)++];
    if (shift == 63 && c > 1) return -1;
    r |= (uint64_t)(c & 0x7F) << shift;
    if (!(c & 0x80)) {
      *v = r;
      return 0;
    }
  }
  return -1;
}

static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static void wr32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

int gt_tftable_has_magic(const unsigned char *p, size_t n) {
  if (n < 8) return 0;
  uint64_t m = (uint64_t)rd32(p + n - 8) | (uint64_t)rd32(p + n - 4) << 32;
  return m == GT_TFTABLE_MAGIC;
}

/* ------------------------------------------------------------ reading */

typedef struct handle {
  uint64_t off, size;
} handle;

static int decode_handle(const unsigned char *p, size_t n, size_t *i,
                         handle *h) {
  return gt_tf_varint(p, n, i, &h->off) || gt_tf_varint(p, n, i, &h->size)
             ? -1 : 0;
}

/* Keys are rebuilt into one growing buffer; entries remember offsets until
 * the buffer stops moving. */
typedef struct reader {
  gt_tftable *t;
  gt_tfbuf keys;
  size_t *koff;
  size_t cap;
  uint64_t limit;   /* blocks end before the footer */
  struct index_list *index;
} reader;

/* The stored bytes of the block at h, trailer verified, decompressed. */
static int load_block(reader *r, handle h, const char *what,
                      const unsigned char **out, size_t *outn, gt_err *err) {
  const unsigned char *base = r->t->file->data;
  uint64_t end;
  if (gt_add_u64(h.off, h.size, (unsigned long long *)&end) ||
      gt_add_u64(end, TRAILER, (unsigned long long *)&end) || end > r->limit)
    return gt_fail(err, "%s block at offset %llu (%llu bytes) runs past the "
                        "end of the table (%llu bytes before the footer)",
                   what, (unsigned long long)h.off,
                   (unsigned long long)h.size, (unsigned long long)r->limit);
  const unsigned char *p = base + h.off;
  size_t n = (size_t)h.size;
  unsigned char type = p[n];
  uint32_t want = gt_crc32c_unmask(rd32(p + n + 1));
  uint32_t got = gt_crc32c_extend(gt_crc32c(p, n), &type, 1);
  if (want != got)
    return gt_fail(err, "%s block at offset %llu: checksum mismatch (trailer "
                        "%08x, data %08x)", what, (unsigned long long)h.off,
                   (unsigned)want, (unsigned)got);
  if (type == 0) {
    *out = p;
    *outn = n;
    return GT_OK;
  }
  if (type != 1)
    return gt_fail(err, "%s block at offset %llu: unknown compression type %u",
                   what, (unsigned long long)h.off, (unsigned)type);
  size_t ulen;
  if (snappy_uncompressed_length((const char *)p, n, &ulen) != SNAPPY_OK ||
      ulen > MAX_BLOCK ||
      snappy_validate_compressed_buffer((const char *)p, n) != SNAPPY_OK)
    return gt_fail(err, "%s block at offset %llu: corrupt snappy data", what,
                   (unsigned long long)h.off);
  unsigned char **bufs = realloc(r->t->bufs, (r->t->nbufs + 1) * sizeof *bufs);
  if (!bufs) return gt_fail(err, "out of memory");
  r->t->bufs = bufs;
  unsigned char *u = malloc(ulen ? ulen : 1);
  if (!u) return gt_fail(err, "out of memory");
  bufs[r->t->nbufs++] = u;
  size_t got_len = ulen;
  if (snappy_uncompress((const char *)p, n, (char *)u, &got_len) !=
          SNAPPY_OK || got_len != ulen)
    return gt_fail(err, "%s block at offset %llu: corrupt snappy data", what,
                   (unsigned long long)h.off);
  r->t->snappy_blocks++;
  *out = u;
  *outn = ulen;
  return GT_OK;
}

typedef int (*entry_fn)(reader *r, const unsigned char *key, size_t klen,
                        const unsigned char *val, size_t vlen, gt_err *err);

static int varint32(const unsigned char *p, size_t n, size_t *i, uint32_t *v) {
  uint64_t x;
  if (gt_tf_varint(p, n, i, &x) || x > 0xFFFFFFFFu) return -1;
  *v = (uint32_t)x;
  return 0;
}

/* Walk the entries of block b[0, n): every restart offset must be the start
 * of an entry with shared == 0, in increasing order. */
static int walk_block(reader *r, const unsigned char *b, size_t n,
                      uint64_t at, const char *what, entry_fn fn,
                      gt_tfbuf *key, gt_err *err) {
  if (n < 4)
    return gt_fail(err, "%s block at offset %llu: %zu bytes is too short",
                   what, (unsigned long long)at, n);
  uint32_t nr = rd32(b + n - 4);
  if (nr > (n - 4) / 4)
    return gt_fail(err, "%s block at offset %llu: %u restart points do not "
                        "fit in %zu bytes", what, (unsigned long long)at,
                   (unsigned)nr, n);
  size_t limit = n - 4 - 4 * (size_t)nr, i = 0;
  uint32_t next = 0;
  key->n = 0;
  while (i < limit) {
    size_t start = i;
    uint32_t shared, non_shared, vlen;
    if (varint32(b, limit, &i, &shared) || varint32(b, limit, &i, &non_shared) ||
        varint32(b, limit, &i, &vlen) || shared > key->n ||
        non_shared > limit - i || vlen > limit - i - non_shared)
      return gt_fail(err, "%s block at offset %llu: bad entry at byte %zu",
                     what, (unsigned long long)at, start);
    if (next < nr && rd32(b + limit + 4 * (size_t)next) == start) {
      if (shared != 0)
        return gt_fail(err, "%s block at offset %llu: restart entry at byte "
                            "%zu shares a prefix", what,
                       (unsigned long long)at, start);
      next++;
    } else if (next < nr && rd32(b + limit + 4 * (size_t)next) < start) {
      break;
    }
    key->n = shared;
    if (gt_tfbuf_put(key, b + i, non_shared, err) != GT_OK) return GT_ERR;
    i += non_shared;
    if (fn(r, key->p, key->n, b + i, vlen, err) != GT_OK) return GT_ERR;
    i += vlen;
  }
  /* An empty block is one restart at 0 and no entries. */
  int empty_ok = limit == 0 && nr == 1 && rd32(b) == 0;
  if (next != nr && !empty_ok)
    return gt_fail(err, "%s block at offset %llu: restart point %u (byte %u) "
                        "is not the start of an entry", what,
                   (unsigned long long)at, (unsigned)next,
                   (unsigned)rd32(b + limit + 4 * (size_t)next));
  return GT_OK;
}

int gt_tftable_cmp(const unsigned char *a, size_t an, const unsigned char *b,
                   size_t bn) {
  size_t m = an < bn ? an : bn;
  int c = m ? memcmp(a, b, m) : 0;
  if (c) return c;
  return an < bn ? -1 : an > bn;
}

/* Printable key for messages (at most 120 bytes, escapes non-ASCII). */
static const char *show_key(const unsigned char *k, size_t n, char *buf) {
  size_t j = 0;
  for (size_t i = 0; i < n && j < 120; i++) {
    unsigned char c = k[i];
    if (c >= 32 && c < 127 && c != '"' && c != '\\') buf[j++] = (char)c;
    else j += (size_t)snprintf(buf + j, 8, "\\x%02x", c);
  }
  buf[j] = 0;
  return buf;
}

/* Key i of the table so far. Keys read so far may all be empty (the bundle
 * header's key is ""), leaving keys.p NULL: NULL + 0 is undefined in C. */
static const unsigned char *key_at(const reader *r, size_t i) {
  return r->t->kv[i].klen ? r->keys.p + r->koff[i] : (const unsigned char *)"";
}

static int add_entry(reader *r, const unsigned char *key, size_t klen,
                     const unsigned char *val, size_t vlen, gt_err *err) {
  gt_tftable *t = r->t;
  if (t->n > 0) {
    const unsigned char *prev = key_at(r, t->n - 1);
    size_t plen = t->kv[t->n - 1].klen;
    if (gt_tftable_cmp(prev, plen, key, klen) >= 0) {
      char a[512], b[512];
      return gt_fail(err, "key \"%s\": keys are not sorted (it comes after "
                          "\"%s\")", show_key(key, klen, a),
                     show_key(prev, plen, b));
    }
  }
  if (t->n == r->cap) {
    size_t cap = r->cap ? 2 * r->cap : 64;
    gt_tfkv *kv = realloc(t->kv, cap * sizeof *kv);
    if (!kv) return gt_fail(err, "out of memory");
    t->kv = kv;
    size_t *ko = realloc(r->koff, cap * sizeof *ko);
    if (!ko) return gt_fail(err, "out of memory");
    r->koff = ko;
    r->cap = cap;
  }
  r->koff[t->n] = r->keys.n;
  if (gt_tfbuf_put(&r->keys, key, klen, err) != GT_OK) return GT_ERR;
  t->kv[t->n].key = NULL;
  t->kv[t->n].klen = klen;
  t->kv[t->n].val = val;
  t->kv[t->n].vlen = vlen;
  t->n++;
  return GT_OK;
}

/* Index entries collected before the data blocks are read. */
struct index_list {
  handle *h;
  unsigned char **sep;
  size_t *seplen;
  size_t n, cap;
};
typedef struct index_list index_list;

static int add_index(reader *r, const unsigned char *key, size_t klen,
                     const unsigned char *val, size_t vlen, gt_err *err) {
  index_list *l = r->index;
  handle h;
  size_t i = 0;
  if (decode_handle(val, vlen, &i, &h) || i != vlen) {
    char b[512];
    return gt_fail(err, "index entry \"%s\": bad block handle",
                   show_key(key, klen, b));
  }
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 16;
    handle *hh = realloc(l->h, cap * sizeof *hh);
    if (!hh) return gt_fail(err, "out of memory");
    l->h = hh;
    unsigned char **ss = realloc(l->sep, cap * sizeof *ss);
    if (!ss) return gt_fail(err, "out of memory");
    l->sep = ss;
    size_t *sl = realloc(l->seplen, cap * sizeof *sl);
    if (!sl) return gt_fail(err, "out of memory");
    l->seplen = sl;
    l->cap = cap;
  }
  unsigned char *s = malloc(klen ? klen : 1);
  if (!s) return gt_fail(err, "out of memory");
  if (klen) memcpy(s, key, klen);
  l->h[l->n] = h;
  l->sep[l->n] = s;
  l->seplen[l->n] = klen;
  l->n++;
  return GT_OK;
}

static void index_free(index_list *l) {
  for (size_t i = 0; i < l->n; i++) free(l->sep[i]);
  free(l->h);
  free(l->sep);
  free(l->seplen);
}

static int read_footer(reader *r, handle *meta, handle *index, gt_err *err) {
  const gt_storage *f = r->t->file;
  if (f->size < GT_TFTABLE_FOOTER)
    return gt_fail(err, "footer: file of %zu bytes is shorter than the "
                        "48-byte table footer", f->size);
  const unsigned char *p = f->data + f->size - GT_TFTABLE_FOOTER;
  if (!gt_tftable_has_magic(p, GT_TFTABLE_FOOTER))
    return gt_fail(err, "footer: wrong magic (not a TensorFlow table)");
  size_t i = 0;
  if (decode_handle(p, 40, &i, meta) || decode_handle(p, 40, &i, index))
    return gt_fail(err, "footer: bad block handle");
  r->limit = f->size - GT_TFTABLE_FOOTER;
  return GT_OK;
}

/* Data block k: keys must lie in (separator k-1, separator k]. */
static int read_data_block(reader *r, index_list *l, size_t k, gt_tfbuf *key,
                           gt_err *err) {
  const unsigned char *b;
  size_t n, first = r->t->n;
  if (load_block(r, l->h[k], "data", &b, &n, err) != GT_OK) return GT_ERR;
  if (walk_block(r, b, n, l->h[k].off, "data", add_entry, key, err) != GT_OK)
    return GT_ERR;
  if (r->t->n == first) return GT_OK;
  size_t last = r->t->n - 1;
  const unsigned char *lk = key_at(r, last);
  if (gt_tftable_cmp(lk, r->t->kv[last].klen, l->sep[k], l->seplen[k]) > 0) {
    char a[512];
    return gt_fail(err, "data block at offset %llu: key \"%s\" is past its "
                        "index entry", (unsigned long long)l->h[k].off,
                   show_key(lk, r->t->kv[last].klen, a));
  }
  return GT_OK;
}

void gt_tftable_close(gt_tftable *t) {
  if (t->file) gt_storage_release(t->file);
  for (size_t i = 0; i < t->nbufs; i++) free(t->bufs[i]);
  free(t->bufs);
  free(t->keys);
  free(t->kv);
  memset(t, 0, sizeof *t);
}

int gt_tftable_open(gt_tftable *t, gt_storage *file, gt_err *err) {
  memset(t, 0, sizeof *t);
  if (gt_storage_ready(file, err) != GT_OK) return GT_ERR;
  gt_storage_retain(file);
  t->file = file;
  index_list l = {0};
  reader r = {t, {0}, NULL, 0, 0, &l};
  gt_tfbuf key = {0};
  handle meta, index;
  const unsigned char *ib;
  size_t in;
  int rc = GT_ERR;
  if (read_footer(&r, &meta, &index, err) != GT_OK) goto done;
  if (load_block(&r, index, "index", &ib, &in, err) != GT_OK) goto done;
  rc = walk_block(&r, ib, in, index.off, "index", add_index, &key, err);
  if (rc != GT_OK) goto done;
  rc = GT_ERR;
  for (size_t k = 0; k < l.n; k++)
    if (read_data_block(&r, &l, k, &key, err) != GT_OK) goto done;
  t->data_blocks = l.n;
  for (size_t k = 0; k < t->n; k++) t->kv[k].key = key_at(&r, k);
  t->keys = r.keys.p;
  r.keys.p = NULL;
  rc = GT_OK;
done:
  index_free(&l);
  gt_tfbuf_free(&key);
  gt_tfbuf_free(&r.keys);
  free(r.koff);
  if (rc != GT_OK) gt_tftable_close(t);
  return rc;
}

/* ------------------------------------------------------------ writing */

typedef struct block {
  gt_tfbuf buf;
  gt_tfbuf restarts;   /* u32 LE offsets */
  gt_tfbuf last;       /* previous key */
  int counter, interval;
  size_t entries;
} block;

static int block_reset(block *b, gt_err *err) {
  unsigned char z[4] = {0};
  b->buf.n = b->restarts.n = b->last.n = 0;
  b->counter = 0;
  b->entries = 0;
  return gt_tfbuf_put(&b->restarts, z, 4, err);
}

static size_t block_estimate(const block *b) {
  return b->buf.n + b->restarts.n + 4;
}

static int block_add(block *b, const gt_tfkv *e, gt_err *err) {
  size_t shared = 0;
  if (b->counter < b->interval) {
    size_t m = b->last.n < e->klen ? b->last.n : e->klen;
    while (shared < m && b->last.p[shared] == e->key[shared]) shared++;
  } else {
    unsigned char o[4];
    wr32(o, (uint32_t)b->buf.n);
    if (gt_tfbuf_put(&b->restarts, o, 4, err) != GT_OK) return GT_ERR;
    b->counter = 0;
  }
  if (gt_tfbuf_varint(&b->buf, shared, err) != GT_OK ||
      gt_tfbuf_varint(&b->buf, e->klen - shared, err) != GT_OK ||
      gt_tfbuf_varint(&b->buf, e->vlen, err) != GT_OK ||
      gt_tfbuf_put(&b->buf, e->key + shared, e->klen - shared, err) != GT_OK ||
      gt_tfbuf_put(&b->buf, e->val, e->vlen, err) != GT_OK)
    return GT_ERR;
  b->last.n = 0;
  if (gt_tfbuf_put(&b->last, e->key, e->klen, err) != GT_OK) return GT_ERR;
  b->counter++;
  b->entries++;
  return GT_OK;
}

/* Finish b's bytes (restarts and count appended to b->buf). */
static int block_finish(block *b, gt_err *err) {
  unsigned char c[4];
  wr32(c, (uint32_t)(b->restarts.n / 4));
  return gt_tfbuf_put(&b->buf, b->restarts.p, b->restarts.n, err) ||
                 gt_tfbuf_put(&b->buf, c, 4, err)
             ? GT_ERR : GT_OK;
}

static void block_free(block *b) {
  gt_tfbuf_free(&b->buf);
  gt_tfbuf_free(&b->restarts);
  gt_tfbuf_free(&b->last);
}

/* Write b (finished) with its trailer to out; *h gets its handle; b is
 * reset. */
static int write_block(block *b, int snappy, gt_tfbuf *out, handle *h,
                       gt_err *err) {
  if (block_finish(b, err) != GT_OK) return GT_ERR;
  const unsigned char *p = b->buf.p;
  size_t n = b->buf.n;
  unsigned char type = 0;
  char *z = NULL;
  if (snappy) {
    size_t zn = snappy_max_compressed_length(n);
    z = malloc(zn ? zn : 1);
    if (!z) return gt_fail(err, "out of memory");
    if (snappy_compress((const char *)p, n, z, &zn) == SNAPPY_OK &&
        zn < n - n / 8) {
      p = (const unsigned char *)z;
      n = zn;
      type = 1;
    }
  }
  h->off = out->n;
  h->size = n;
  unsigned char tr[TRAILER];
  tr[0] = type;
  wr32(tr + 1, gt_crc32c_mask(gt_crc32c_extend(gt_crc32c(p, n), tr, 1)));
  int rc = gt_tfbuf_put(out, p, n, err) || gt_tfbuf_put(out, tr, TRAILER, err)
               ? GT_ERR : block_reset(b, err);
  free(z);
  return rc;
}

static int put_handle(gt_tfbuf *b, handle h, gt_err *err) {
  return gt_tfbuf_varint(b, h.off, err) || gt_tfbuf_varint(b, h.size, err)
             ? GT_ERR : GT_OK;
}

/* TF's FindShortestSeparator: shorten `start` towards `limit` when a byte
 * can be incremented and stay below limit; sets *n. */
static void shortest_separator(unsigned char *start, size_t *n,
                               const unsigned char *limit, size_t ln) {
  size_t m = *n < ln ? *n : ln, d = 0;
  while (d < m && start[d] == limit[d]) d++;
  if (d >= m) return;
  if (start[d] < 0xFF && start[d] + 1 < limit[d]) {
    start[d]++;
    *n = d + 1;
  }
}

/* TF's FindShortSuccessor: first byte that is not 0xFF incremented, the
 * rest dropped. */
static void short_successor(unsigned char *k, size_t *n) {
  for (size_t i = 0; i < *n; i++)
    if (k[i] != 0xFF) {
      k[i]++;
      *n = i + 1;
      return;
    }
}

static int add_index_entry(block *index, gt_tfbuf *sep, handle h,
                           gt_err *err) {
  gt_tfbuf hv = {0};
  if (put_handle(&hv, h, err) != GT_OK) return GT_ERR;
  gt_tfkv e = {sep->p, sep->n, hv.p, hv.n};
  int rc = block_add(index, &e, err);
  gt_tfbuf_free(&hv);
  return rc;
}

int gt_tftable_build(const gt_tfkv *kv, size_t n, const gt_tftable_opts *opts,
                     gt_tfbuf *out, gt_err *err) {
  gt_tftable_opts o = {GT_TFTABLE_BLOCK_SIZE, GT_TFTABLE_RESTART_INTERVAL, 0};
  if (opts) o = *opts;
  if (o.restart_interval < 1) o.restart_interval = 1;
  block data = {.interval = o.restart_interval};
  block index = {.interval = 1};
  gt_tfbuf last = {0};
  handle pending = {0, 0}, meta_h, index_h;
  int have_pending = 0, rc = GT_ERR;
  /* Handles are relative to the table start. */
  gt_tfbuf body = {0};
  if (block_reset(&data, err) != GT_OK || block_reset(&index, err) != GT_OK)
    goto done;
  for (size_t i = 0; i < n; i++) {
    const gt_tfkv *e = &kv[i];
    if (i > 0) {
      if (gt_tftable_cmp(last.p, last.n, e->key, e->klen) >= 0) {
        char a[512];
        gt_fail(err, "key \"%s\": keys must be added in strictly increasing "
                     "order", show_key(e->key, e->klen, a));
        goto done;
      }
      if (e->klen + e->vlen >= 2 * o.block_size && data.entries > 0 &&
          (write_block(&data, o.snappy, &body, &pending, err) != GT_OK ||
           !(have_pending = 1)))
        goto done;
    }
    if (have_pending) {
      shortest_separator(last.p, &last.n, e->key, e->klen);
      if (add_index_entry(&index, &last, pending, err) != GT_OK) goto done;
      have_pending = 0;
    }
    last.n = 0;
    if (gt_tfbuf_put(&last, e->key, e->klen, err) != GT_OK ||
        block_add(&data, e, err) != GT_OK)
      goto done;
    if (block_estimate(&data) >= o.block_size) {
      if (write_block(&data, o.snappy, &body, &pending, err) != GT_OK) goto done;
      have_pending = 1;
    }
  }
  if (data.entries > 0) {
    if (write_block(&data, o.snappy, &body, &pending, err) != GT_OK) goto done;
    have_pending = 1;
  }
  {
    block meta = {.interval = o.restart_interval};
    int mrc = block_reset(&meta, err) == GT_OK
                  ? write_block(&meta, o.snappy, &body, &meta_h, err) : GT_ERR;
    block_free(&meta);
    if (mrc != GT_OK) goto done;
  }
  if (have_pending) {
    short_successor(last.p, &last.n);
    if (add_index_entry(&index, &last, pending, err) != GT_OK) goto done;
  }
  if (write_block(&index, o.snappy, &body, &index_h, err) != GT_OK) goto done;
  {
    gt_tfbuf f = {0};
    unsigned char magic[8];
    wr32(magic, (uint32_t)GT_TFTABLE_MAGIC);
    wr32(magic + 4, (uint32_t)(GT_TFTABLE_MAGIC >> 32));
    int frc = put_handle(&f, meta_h, err) || put_handle(&f, index_h, err);
    while (frc == GT_OK && f.n < 40) {
      unsigned char z = 0;
      frc = gt_tfbuf_put(&f, &z, 1, err);
    }
    if (frc == GT_OK) frc = gt_tfbuf_put(&f, magic, 8, err);
    if (frc == GT_OK) frc = gt_tfbuf_put(&body, f.p, f.n, err);
    gt_tfbuf_free(&f);
    if (frc != GT_OK) goto done;
  }
  rc = gt_tfbuf_put(out, body.p, body.n, err);
done:
  block_free(&data);
  block_free(&index);
  gt_tfbuf_free(&last);
  gt_tfbuf_free(&body);
  return rc;
}
