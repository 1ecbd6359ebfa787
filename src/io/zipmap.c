/* zipmap.c: the zip central directory, read only as far as offsets need.
 *
 * Layout facts used (PKWARE APPNOTE 4.3, docs/formats/zip.md#records), all little-endian:
 *   EOCD          "PK\5\6", 22 bytes + comment (<= 65535), at the very end;
 *   ZIP64 locator "PK\6\7", 20 bytes, immediately before the EOCD;
 *   ZIP64 EOCD    "PK\6\6", 56 bytes at the offset the locator gives;
 *   central entry "PK\1\2", 46 bytes + name + extra + comment;
 *   local header  "PK\3\4", 30 bytes + name + extra, then the data.
 * A 32-bit size or offset field (16-bit disk field) holding all ones means
 * the real value is in the entry's ZIP64 extra field (id 0x0001), whose
 * 64-bit values appear in the fixed order uncompressed size, compressed
 * size, local header offset, disk number, each present only when its field
 * overflowed. Every offset is checked before it is read. */
#include "io/zipmap.h"

#include "tensor/storage.h"

#include <stdlib.h>
#include <string.h>

enum { EOCD_LEN = 22, LOC64_LEN = 20, EOCD64_LEN = 56, CEN_LEN = 46,
       LOCAL_LEN = 30, MAX_COMMENT = 65535 };

static uint16_t rd16(const unsigned char *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) {
  return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}
static int sig(const unsigned char *p, unsigned char a, unsigned char b) {
  return p[0] == 'P' && p[1] == 'K' && p[2] == a && p[3] == b;
}

int gt_zip_sniff(const unsigned char *p, uint64_t len) {
  return len >= 4 && (sig(p, 3, 4) || sig(p, 5, 6));
}

/* Where the central directory is, and where it must end (the start of the
 * end record that describes it). */
typedef struct cdir {
  uint64_t count, size, offset, limit;
} cdir;

/* The last EOCD signature whose comment fits in the file. */
static int find_eocd(const unsigned char *p, uint64_t len, uint64_t *pos) {
  if (len < EOCD_LEN) return GT_ERR;
  uint64_t last = len - EOCD_LEN;
  uint64_t first = last > MAX_COMMENT ? last - MAX_COMMENT : 0;
  for (uint64_t i = last + 1; i-- > first;) {
    if (sig(p + i, 5, 6) && rd16(p + i + 20) <= len - EOCD_LEN - i) {
      *pos = i;
      return GT_OK;
    }
  }
  return GT_ERR;
}

static int read_eocd64(const unsigned char *p, uint64_t eocd, cdir *cd,
                       gt_err *err) {
  const unsigned char *loc = p + eocd - LOC64_LEN;
  uint64_t off = rd64(loc + 8);
  if (rd32(loc + 4) != 0)
    return gt_fail(err, "multi-disk zip archives are not supported");
  if (off > eocd - LOC64_LEN || eocd - LOC64_LEN - off < EOCD64_LEN)
    return gt_fail(err, "ZIP64 end record offset %llu is out of range",
                   (unsigned long long)off);
  const unsigned char *e = p + off;
  if (!sig(e, 6, 6))
    return gt_fail(err, "ZIP64 end record at offset %llu has a bad signature",
                   (unsigned long long)off);
  if (rd32(e + 16) != 0 || rd32(e + 20) != 0 || rd64(e + 24) != rd64(e + 32))
    return gt_fail(err, "multi-disk zip archives are not supported");
  cd->count = rd64(e + 32);
  cd->size = rd64(e + 40);
  cd->offset = rd64(e + 48);
  cd->limit = off;
  return GT_OK;
}

static int read_eocd(const unsigned char *p, uint64_t len, cdir *cd,
                     gt_err *err) {
  uint64_t eocd;
  if (find_eocd(p, len, &eocd) != GT_OK)
    return gt_fail(err, "not a zip archive (no end of central directory "
                        "record)");
  const unsigned char *e = p + eocd;
  if (eocd >= LOC64_LEN && sig(e - LOC64_LEN, 6, 7))
    return read_eocd64(p, eocd, cd, err);
  uint16_t disk = rd16(e + 4), cd_disk = rd16(e + 6);
  uint16_t n_disk = rd16(e + 8), n = rd16(e + 10);
  uint32_t size = rd32(e + 12), offset = rd32(e + 16);
  if (n == 0xFFFF || size == 0xFFFFFFFFu || offset == 0xFFFFFFFFu)
    return gt_fail(err, "end record needs a ZIP64 record, which is missing");
  if (disk != 0 || cd_disk != 0 || n_disk != n)
    return gt_fail(err, "multi-disk zip archives are not supported");
  cd->count = n;
  cd->size = size;
  cd->offset = offset;
  cd->limit = eocd;
  return GT_OK;
}

/* Replace overflowed fields of m from the ZIP64 extra field in x[0, xlen). */
static int apply_zip64(gt_zip_member *m, const unsigned char *x, size_t xlen,
                       int need_size, int need_csize, int need_off,
                       int need_disk, gt_err *err) {
  size_t i = 0;
  while (xlen - i >= 4) {
    uint16_t id = rd16(x + i), sz = rd16(x + i + 2);
    if (sz > xlen - i - 4) break;
    if (id == 0x0001) {
      const unsigned char *f = x + i + 4;
      size_t need = 8u * (size_t)(need_size + need_csize + need_off) +
                    4u * (size_t)need_disk;
      if (sz < need)
        return gt_fail(err, "member \"%.200s\": ZIP64 extra field too short",
                       m->name);
      if (need_size) m->size = rd64(f), f += 8;
      if (need_csize) m->comp_size = rd64(f), f += 8;
      if (need_off) m->header_offset = rd64(f), f += 8;
      if (need_disk && rd32(f) != 0)
        return gt_fail(err, "member \"%.200s\": multi-disk archives are not "
                            "supported", m->name);
      return GT_OK;
    }
    i += 4u + sz;
  }
  return gt_fail(err, "member \"%.200s\": ZIP64 extra field missing",
                 m->name);
}

/* Check the local header l against the central entry; set data_offset.
 * l holds LOCAL_LEN bytes and then `avail` bytes of the name; the name is
 * compared only when its length equals the central one, after the header
 * has been checked to end before the central directory, so a readable l
 * always holds it. */
static int check_local(const unsigned char *l, size_t avail, const cdir *cd,
                       gt_zip_member *m, gt_err *err) {
  uint64_t h = m->header_offset, end;
  if (!sig(l, 3, 4))
    return gt_fail(err, "member \"%.200s\": bad local header signature at "
                        "offset %llu", m->name, (unsigned long long)h);
  uint16_t method = rd16(l + 8), nlen = rd16(l + 26), xlen = rd16(l + 28);
  uint64_t data = h + LOCAL_LEN + nlen + xlen;
  if (data > cd->offset)
    return gt_fail(err, "member \"%.200s\": local header runs into the "
                        "central directory", m->name);
  if (nlen != m->name_len || memcmp(l + LOCAL_LEN, m->name, nlen) != 0)
    return gt_fail(err, "member \"%.200s\": local header names \"%.*s\"",
                   m->name, (int)(nlen < avail ? (nlen < 200 ? nlen : 200)
                                               : (avail < 200 ? avail : 200)),
                   (const char *)l + LOCAL_LEN);
  if (method != m->method)
    return gt_fail(err, "member \"%.200s\": local header says compression "
                        "method %u, central directory %u", m->name, method,
                   m->method);
  if (gt_add_u64(data, m->comp_size, (unsigned long long *)&end) ||
      end > cd->offset)
    return gt_fail(err, "member \"%.200s\": %llu bytes of data at offset "
                        "%llu run past the end of the archive data",
                   m->name, (unsigned long long)m->comp_size,
                   (unsigned long long)data);
  m->data_offset = data;
  return GT_OK;
}

/* The local header of m, from the mapping p or, when file is given, read
 * from the file so the mapping is not touched (gt_storage_pread). The name
 * is read only up to the central entry's length: a longer local name is a
 * mismatch either way. */
static int read_local(const unsigned char *p, const gt_storage *file,
                      const cdir *cd, gt_zip_member *m, gt_err *err) {
  uint64_t h = m->header_offset;
  if (h > cd->offset || cd->offset - h < LOCAL_LEN)
    return gt_fail(err, "member \"%.200s\": local header offset %llu is "
                        "outside the archive data", m->name,
                   (unsigned long long)h);
  if (!file) return check_local(p + h, cd->offset - h - LOCAL_LEN, cd, m, err);
  size_t n = LOCAL_LEN + m->name_len;
  if (n > cd->offset - h) n = (size_t)(cd->offset - h);
  unsigned char stack[LOCAL_LEN + 256];
  unsigned char *l = n <= sizeof stack ? stack : malloc(n);
  if (!l) return gt_fail(err, "out of memory");
  int rc = gt_storage_pread(file, l, n, h, err);
  if (rc == GT_OK) rc = check_local(l, n - LOCAL_LEN, cd, m, err);
  if (l != stack) free(l);
  return rc;
}

/* Parse the central entry at p[*at, limit); advance *at past it. */
static int read_entry(const unsigned char *p, const gt_storage *file,
                      const cdir *cd, uint64_t *at, size_t index,
                      gt_zip_member *m, gt_err *err) {
  uint64_t limit = cd->offset + cd->size;
  if (limit - *at < CEN_LEN)
    return gt_fail(err, "central directory entry %zu is truncated", index);
  const unsigned char *c = p + *at;
  if (!sig(c, 1, 2))
    return gt_fail(err, "central directory entry %zu has a bad signature",
                   index);
  uint16_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
  uint64_t total = (uint64_t)CEN_LEN + nlen + xlen + clen;
  if (limit - *at < total)
    return gt_fail(err, "central directory entry %zu is truncated", index);
  m->name = malloc((size_t)nlen + 1);
  if (!m->name) return gt_fail(err, "out of memory");
  memcpy(m->name, c + CEN_LEN, nlen);
  m->name[nlen] = '\0';
  m->name_len = nlen;
  m->flags = rd16(c + 8);
  m->method = rd16(c + 10);
  m->crc = rd32(c + 16);
  m->comp_size = rd32(c + 20);
  m->size = rd32(c + 24);
  m->header_offset = rd32(c + 42);
  int ns = m->size == 0xFFFFFFFFu, nc = m->comp_size == 0xFFFFFFFFu;
  int no = m->header_offset == 0xFFFFFFFFu, nd = rd16(c + 34) == 0xFFFF;
  if ((ns || nc || no || nd) &&
      apply_zip64(m, c + CEN_LEN + nlen, xlen, ns, nc, no, nd, err) != GT_OK)
    return GT_ERR;
  if (m->flags & 1u)
    return gt_fail(err, "member \"%.200s\" is encrypted", m->name);
  if (m->method == 0 && m->comp_size != m->size)
    return gt_fail(err, "member \"%.200s\" is stored but its sizes differ "
                        "(%llu compressed, %llu uncompressed)", m->name,
                   (unsigned long long)m->comp_size,
                   (unsigned long long)m->size);
  *at += total;
  return read_local(p, file, cd, m, err);
}

/* file, when not NULL, is the mapping p lies in: local headers are then
 * read from the file, not the mapping (see read_local). */
static int dir_read(const unsigned char *p, uint64_t len,
                    const gt_storage *file, gt_zip_dir *d, gt_err *err) {
  cdir cd = {0, 0, 0, 0};
  uint64_t end;
  d->m = NULL;
  d->n = 0;
  if (read_eocd(p, len, &cd, err) != GT_OK) return GT_ERR;
  if (gt_add_u64(cd.offset, cd.size, (unsigned long long *)&end) ||
      end > cd.limit)
    return gt_fail(err, "central directory (%llu bytes at offset %llu) runs "
                        "past its end record", (unsigned long long)cd.size,
                   (unsigned long long)cd.offset);
  if (cd.count > cd.size / CEN_LEN)
    return gt_fail(err, "central directory claims %llu entries in %llu bytes",
                   (unsigned long long)cd.count, (unsigned long long)cd.size);
  if (cd.count == 0) return GT_OK;
  d->m = calloc((size_t)cd.count, sizeof *d->m);
  if (!d->m) return gt_fail(err, "out of memory");
  uint64_t at = cd.offset;
  for (size_t i = 0; i < cd.count; i++) {
    d->n = i + 1;
    if (read_entry(p, file, &cd, &at, i, &d->m[i], err) != GT_OK) {
      gt_zip_dir_free(d);
      return GT_ERR;
    }
  }
  return GT_OK;
}

int gt_zip_dir_read(const unsigned char *p, uint64_t len, gt_zip_dir *d,
                    gt_err *err) {
  return dir_read(p, len, NULL, d, err);
}

int gt_zip_dir_read_file(const gt_storage *file, gt_zip_dir *d, gt_err *err) {
  return dir_read(file->data, file->size, file, d, err);
}

void gt_zip_dir_free(gt_zip_dir *d) {
  for (size_t i = 0; i < d->n; i++) free(d->m[i].name);
  free(d->m);
  d->m = NULL;
  d->n = 0;
}

int gt_zip_names(const gt_storage *file, gt_value **names, gt_err *err) {
  gt_zip_dir d;
  *names = NULL;
  if (gt_zip_dir_read_file(file, &d, err) != GT_OK) return GT_ERR;
  gt_value *list = gt_value_new(GT_V_LIST);
  int bad = !list;
  for (size_t i = 0; i < d.n && !bad; i++)
    bad = gt_value_push(list, gt_value_str(d.m[i].name, d.m[i].name_len)) !=
          GT_OK;
  gt_zip_dir_free(&d);
  if (bad) {
    gt_value_free(list);
    return gt_fail(err, "out of memory");
  }
  *names = list;
  return GT_OK;
}
