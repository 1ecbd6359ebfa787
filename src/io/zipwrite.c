/* zipwrite.c: the records of zipwrite.h (PKWARE APPNOTE 4.3; docs/formats/zip.md#records,
 * docs/formats/zip.md#alignment), all little-endian:
 *   local header  "PK\3\4" ver flags method time date crc csize size
 *                 nlen xlen, name, extra (ZIP64 0x0001 then "FB" padding);
 *   descriptor    "PK\7\8" crc csize size (u32 sizes, or u64 when the local
 *                 header carries a ZIP64 field);
 *   central entry "PK\1\2" made-by needed flags method time date crc csize
 *                 size nlen xlen clen disk iattr eattr offset, name, extra
 *                 (ZIP64 0x0001 holding, in this order, the size, compressed
 *                 size and offset whose 32-bit fields read 0xFFFFFFFF);
 *   ZIP64 EOCD    "PK\6\6" (56 bytes), locator "PK\6\7" (20), EOCD "PK\5\6"
 *                 (22).
 * Times are zero (1980-00-00), as in PyTorch's archives. */
#include "io/zipwrite.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <zlib.h>

#include "io/checked.h"
#include "io/grow.h"

enum { LOCAL_LEN = 30, CEN_LEN = 46, EOCD64_LEN = 56, LOC64_LEN = 20,
       EOCD_LEN = 22, FLAGS = 0x0808, V_ZIP64 = 45 };

static unsigned char *put16(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  return p + 2;
}
static unsigned char *put32(unsigned char *p, uint32_t v) {
  return put16(put16(p, v & 0xffff), v >> 16);
}
static unsigned char *put64(unsigned char *p, uint64_t v) {
  return put32(put32(p, (uint32_t)v), (uint32_t)(v >> 32));
}
static unsigned char *sig(unsigned char *p, unsigned char a, unsigned char b) {
  p[0] = 'P';
  p[1] = 'K';
  p[2] = a;
  p[3] = b;
  return p + 4;
}

/* Set only by tests (core.testing.zip64_at), between writes. */
static uint64_t test_size_at, test_off_at;

void gt_zipw_test_thresholds(uint64_t size_at, uint64_t off_at) {
  test_size_at = size_at;
  test_off_at = off_at;
}

void gt_zipw_init(gt_zipw *z, gt_out *o, uint64_t size_at, uint64_t off_at) {
  memset(z, 0, sizeof *z);
  z->o = o;
  if (!size_at) size_at = test_size_at;
  if (!off_at) off_at = test_off_at;
  z->size_at = size_at && size_at < 0xFFFFFFFFu ? size_at : 0xFFFFFFFFu;
  z->off_at = off_at && off_at < 0xFFFFFFFFu ? off_at : 0xFFFFFFFFu;
}

void gt_zipw_free(gt_zipw *z) {
  for (size_t i = 0; i < z->n; i++) free(z->m[i].name);
  free(z->m);
  z->m = NULL;
  z->n = z->cap = 0;
}

/* The ZIP64 extra field with the given values (each only if its flag). */
static size_t zip64_extra(unsigned char *x, int with_size, uint64_t size,
                          int with_off, uint64_t off) {
  if (!with_size && !with_off) return 0;
  unsigned char *p = put16(x, 0x0001);
  p = put16(p, (uint32_t)(16u * (unsigned)with_size + 8u * (unsigned)with_off));
  if (with_size) p = put64(put64(p, size), size);
  if (with_off) p = put64(p, off);
  return (size_t)(p - x);
}

int gt_zipw_begin(gt_zipw *z, const char *name, uint64_t size, gt_err *err) {
  if (z->open) return gt_fail(err, "zip member still open");
  size_t nlen = strlen(name);
  if (nlen > 0xFFFF) return gt_fail(err, "member name too long");
  if (gt_grow((void **)&z->m, &z->cap, z->n + 1, sizeof *z->m))
    return gt_fail(err, "out of memory");
  gt_zipw_member *m = &z->m[z->n];
  if (!(m->name = strdup(name))) return gt_fail(err, "out of memory");
  m->offset = z->o->pos;
  m->size = size;
  m->crc = 0;
  z->n++;
  int big_size = size >= z->size_at, big_off = m->offset >= z->off_at;
  unsigned char x[28];
  size_t xlen = zip64_extra(x, big_size, size, big_off, m->offset);
  /* "FB" + u16 n + n x 'Z' so that the data lands on the alignment. */
  uint64_t before = m->offset + LOCAL_LEN + nlen + xlen + 4;
  size_t pad = (size_t)((GT_ZIPW_ALIGN - before % GT_ZIPW_ALIGN) %
                        GT_ZIPW_ALIGN);
  unsigned char h[LOCAL_LEN + 28 + 4 + GT_ZIPW_ALIGN];
  unsigned char *p = sig(h, 3, 4);
  p = put16(p, xlen ? V_ZIP64 : 0);
  p = put16(p, FLAGS);
  p = put16(p, 0);              /* stored */
  p = put32(p, 0);              /* time, date */
  p = put32(p, 0);              /* crc: in the descriptor */
  p = put32(p, 0);              /* compressed size */
  p = put32(p, 0);              /* size */
  p = put16(p, (uint32_t)nlen);
  p = put16(p, (uint32_t)(xlen + 4 + pad));
  if (gt_out_write(z->o, h, (size_t)(p - h), err) != GT_OK ||
      gt_out_write(z->o, name, nlen, err) != GT_OK)
    return GT_ERR;
  memcpy(h, x, xlen);
  p = h + xlen;
  *p++ = 'F';
  *p++ = 'B';
  p = put16(p, (uint32_t)pad);
  memset(p, 'Z', pad);
  if (gt_out_write(z->o, h, xlen + 4 + pad, err) != GT_OK) return GT_ERR;
  z->open = 1;
  z->crc = (uint32_t)crc32_z(0, Z_NULL, 0);
  z->written = 0;
  z->expect = size;
  z->zip64 = xlen != 0;
  return GT_OK;
}

int gt_zipw_data(gt_zipw *z, const void *bytes, size_t n, gt_err *err) {
  if (!z->open) return gt_fail(err, "no zip member is open");
  if (n > z->expect - z->written)
    return gt_fail(err, "member \"%.200s\" gets more than its %llu bytes",
                   z->m[z->n - 1].name, (unsigned long long)z->expect);
  if (gt_out_write(z->o, bytes, n, err) != GT_OK) return GT_ERR;
  z->crc = gt_crc32_update(z->crc, bytes, n);
  z->written += n;
  return GT_OK;
}

int gt_zipw_end(gt_zipw *z, gt_err *err) {
  if (!z->open) return gt_fail(err, "no zip member is open");
  gt_zipw_member *m = &z->m[z->n - 1];
  if (z->written != z->expect)
    return gt_fail(err, "member \"%.200s\" got %llu of its %llu bytes",
                   m->name, (unsigned long long)z->written,
                   (unsigned long long)z->expect);
  z->open = 0;
  m->crc = z->crc;
  unsigned char d[24];
  unsigned char *p = put32(sig(d, 7, 8), m->crc);
  if (z->zip64) p = put64(put64(p, m->size), m->size);
  else p = put32(put32(p, (uint32_t)m->size), (uint32_t)m->size);
  return gt_out_write(z->o, d, (size_t)(p - d), err);
}

int gt_zipw_add(gt_zipw *z, const char *name, const void *bytes, size_t n,
                gt_err *err) {
  if (gt_zipw_begin(z, name, n, err) != GT_OK ||
      gt_zipw_data(z, bytes, n, err) != GT_OK)
    return GT_ERR;
  return gt_zipw_end(z, err);
}

static uint32_t clip32(uint64_t v, uint64_t at) {
  return v >= at ? 0xFFFFFFFFu : (uint32_t)v;
}

static int central_entry(gt_zipw *z, const gt_zipw_member *m, gt_err *err) {
  size_t nlen = strlen(m->name);
  int big_size = m->size >= z->size_at, big_off = m->offset >= z->off_at;
  unsigned char x[28];
  size_t xlen = zip64_extra(x, big_size, m->size, big_off, m->offset);
  unsigned char h[CEN_LEN];
  unsigned char *p = sig(h, 1, 2);
  p = put16(p, xlen ? V_ZIP64 : 0);   /* made by */
  p = put16(p, xlen ? V_ZIP64 : 0);   /* needed */
  p = put16(p, FLAGS);
  p = put16(p, 0);
  p = put32(p, 0);
  p = put32(p, m->crc);
  p = put32(p, clip32(m->size, z->size_at));
  p = put32(p, clip32(m->size, z->size_at));
  p = put16(p, (uint32_t)nlen);
  p = put16(p, (uint32_t)xlen);
  p = put16(p, 0);                    /* comment */
  p = put16(p, 0);                    /* disk */
  p = put16(p, 0);                    /* internal attributes */
  p = put32(p, 0);                    /* external attributes */
  p = put32(p, clip32(m->offset, z->off_at));
  if (gt_out_write(z->o, h, CEN_LEN, err) != GT_OK ||
      gt_out_write(z->o, m->name, nlen, err) != GT_OK ||
      gt_out_write(z->o, x, xlen, err) != GT_OK)
    return GT_ERR;
  return GT_OK;
}

int gt_zipw_finish(gt_zipw *z, gt_err *err) {
  if (z->open) return gt_fail(err, "zip member still open");
  uint64_t cd_off = z->o->pos;
  for (size_t i = 0; i < z->n; i++)
    if (central_entry(z, &z->m[i], err) != GT_OK) return GT_ERR;
  uint64_t cd_size = z->o->pos - cd_off, e64 = z->o->pos, n = z->n;
  unsigned char b[EOCD64_LEN + LOC64_LEN + EOCD_LEN];
  unsigned char *p = sig(b, 6, 6);
  p = put64(p, EOCD64_LEN - 12);      /* size of the rest of this record */
  p = put16(p, 0x031e);               /* made by: unix, 3.0 (as PyTorch) */
  p = put16(p, V_ZIP64);
  p = put32(p, 0);                    /* this disk */
  p = put32(p, 0);                    /* disk with the directory */
  p = put64(p, n);
  p = put64(p, n);
  p = put64(p, cd_size);
  p = put64(p, cd_off);
  p = sig(p, 6, 7);
  p = put32(p, 0);
  p = put64(p, e64);
  p = put32(p, 1);                    /* disks */
  uint64_t n_at = z->off_at < 0xFFFF ? z->off_at : 0xFFFF;
  uint32_t n16 = n >= n_at ? 0xFFFF : (uint32_t)n;
  p = sig(p, 5, 6);
  p = put16(p, 0);
  p = put16(p, 0);
  p = put16(p, n16);
  p = put16(p, n16);
  p = put32(p, clip32(cd_size, z->off_at));
  p = put32(p, clip32(cd_off, z->off_at));
  p = put16(p, 0);                    /* comment */
  return gt_out_write(z->o, b, (size_t)(p - b), err);
}

/* The whole file `file` as the member `name`: its size is taken once, and a
 * file that changes size while it is copied is an error. */
static int add_file(gt_zipw *z, const char *name, const char *file, gt_err *err) {
  FILE *f = fopen(file, "rb");
  if (!f) return gt_fail(err, "%s: %s", file, strerror(errno));
  int rc = GT_ERR;
  off_t size;
  if (fseeko(f, 0, SEEK_END) != 0 || (size = ftello(f)) < 0 || fseeko(f, 0, SEEK_SET) != 0) {
    gt_fail(err, "%s: %s", file, strerror(errno));
    goto out;
  }
  if (gt_zipw_begin(z, name, (uint64_t)size, err) != GT_OK) goto out;
  unsigned char buf[1 << 16];
  size_t got;
  while ((got = fread(buf, 1, sizeof buf, f)) > 0)
    if (gt_zipw_data(z, buf, got, err) != GT_OK) goto out;
  if (ferror(f)) {
    gt_fail(err, "%s: read error", file);
    goto out;
  }
  rc = gt_zipw_end(z, err);
out:
  fclose(f);
  return rc;
}

int gt_zipw_write(const char *path, const gt_zipw_src *m, size_t n, gt_err *err) {
  gt_out o;
  if (gt_out_open(&o, path, NULL, err) != GT_OK) return GT_ERR;
  gt_zipw z;
  gt_zipw_init(&z, &o, 0, 0);
  int rc = GT_OK;
  for (size_t i = 0; i < n && rc == GT_OK; i++)
    rc = m[i].file ? add_file(&z, m[i].name, m[i].file, err)
                   : gt_zipw_add(&z, m[i].name, m[i].bytes, m[i].n, err);
  if (rc == GT_OK) rc = gt_zipw_finish(&z, err);
  gt_zipw_free(&z);
  if (rc == GT_OK) return gt_out_commit(&o, err);
  gt_out_abort(&o);
  return GT_ERR;
}
