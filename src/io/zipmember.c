/* zipmember.c: stored windows and zlib inflation of zip members (see
 * zipmember.h). Raw deflate (RFC 1951) starts at the member's data_offset;
 * zip members carry no zlib header, hence inflateInit2 with -MAX_WBITS. */
#include "io/zipmember.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "io/checked.h"

int gt_zip_member_check(const gt_zip_member *mm, gt_err *err) {
  if (mm->method != 0 && mm->method != 8)
    return gt_fail(err, "compression method %u is not supported (only "
                        "stored and deflated)", mm->method);
  if (mm->size > SIZE_MAX)
    return gt_fail(err, "%llu bytes do not fit in memory",
                   (unsigned long long)mm->size);
  if (mm->method == 8 && mm->comp_size <= UINT64_MAX / GT_ZIP_MAX_RATIO &&
      mm->size > mm->comp_size * GT_ZIP_MAX_RATIO)
    return gt_fail(err, "declares %llu bytes uncompressed from %llu "
                        "compressed bytes, more than deflate's %u:1 can "
                        "expand: the archive is corrupt",
                   (unsigned long long)mm->size,
                   (unsigned long long)mm->comp_size, GT_ZIP_MAX_RATIO);
  return GT_OK;
}

/* One inflation of a member: the output stream position `pos` runs over
 * [0, mm->size); bytes in [off, off + len) land in out, the others in a
 * scratch buffer, and all of them go into the CRC. */
typedef struct inflater {
  z_stream z;
  const unsigned char *in;   /* next compressed byte not yet given to z */
  uint64_t in_left;
  uint64_t pos;
  uint32_t crc;
  unsigned char scratch[16384];
} inflater;

static int zfail(const inflater *f, int zr, gt_err *err) {
  if (zr == Z_MEM_ERROR) return gt_fail(err, "out of memory");
  return gt_fail(err, "corrupt deflated data at output byte %llu (%s)",
                 (unsigned long long)f->pos,
                 f->z.msg ? f->z.msg : "invalid stream");
}

static void feed(inflater *f) {
  if (f->z.avail_in > 0 || f->in_left == 0) return;
  uInt n = f->in_left > UINT32_MAX ? UINT32_MAX : (uInt)f->in_left;
  f->z.next_in = (Bytef *)f->in;
  f->z.avail_in = n;
  f->in += n;
  f->in_left -= n;
}

/* One inflate call producing at most `room` bytes at dst; *made gets how
 * many. Returns zlib's code, Z_BUF_ERROR meaning no progress was possible
 * (all input used, or the stream wants more than there is). */
static int step(inflater *f, unsigned char *dst, uint64_t room,
                uint64_t *made) {
  uInt r = room > UINT32_MAX ? UINT32_MAX : (uInt)room;
  feed(f);
  f->z.next_out = dst;
  f->z.avail_out = r;
  int zr = inflate(&f->z, Z_NO_FLUSH);
  *made = r - f->z.avail_out;
  f->crc = (uint32_t)crc32(f->crc, dst, (uInt)*made);
  f->pos += *made;
  return zr;
}

/* Inflate until `target` output bytes exist or the stream ends. */
static int run_to(inflater *f, uint64_t off, uint64_t len, unsigned char *out,
                  uint64_t target, int *ended, gt_err *err) {
  *ended = 0;
  while (f->pos < target) {
    unsigned char *dst;
    uint64_t room;
    if (f->pos >= off && f->pos - off < len) {
      dst = out + (f->pos - off);
      room = off + len - f->pos;
    } else {
      uint64_t stop = f->pos < off ? off : target;
      dst = f->scratch;
      room = stop - f->pos < sizeof f->scratch ? stop - f->pos
                                                : sizeof f->scratch;
    }
    uint64_t made;
    int zr = step(f, dst, room, &made);
    if (zr == Z_STREAM_END) {
      *ended = 1;
      break;
    }
    if (zr == Z_BUF_ERROR && made == 0) break;
    if (zr != Z_OK && zr != Z_BUF_ERROR) return zfail(f, zr, err);
  }
  if (f->pos < target)
    return gt_fail(err, "the deflate stream %s after %llu of the %llu bytes "
                        "the archive declares", *ended ? "ends" : "is cut off",
                   (unsigned long long)f->pos, (unsigned long long)target);
  return GT_OK;
}

/* After exactly mm->size bytes the stream must end: anything more is an
 * error. inflate may need calls that produce nothing (an empty final block)
 * before it reports the end. */
static int expect_end(inflater *f, gt_err *err) {
  for (;;) {
    uint64_t made;
    int zr = step(f, f->scratch, 1, &made);
    if (made > 0)
      return gt_fail(err, "the deflate stream inflates past the %llu bytes "
                          "the archive declares", (unsigned long long)(f->pos - 1));
    if (zr == Z_STREAM_END) return GT_OK;
    if (zr == Z_BUF_ERROR)
      return gt_fail(err, "the deflate stream is cut off after its %llu "
                          "bytes (no end of stream)", (unsigned long long)f->pos);
    if (zr != Z_OK) return zfail(f, zr, err);
  }
}

/* Inflate member mm from base: [off, off + len) into out. whole: all of
 * it, to the end of the stream, CRC-32 checked; else only up to off + len. */
static int inflate_span(const unsigned char *base, const gt_zip_member *mm,
                        uint64_t off, uint64_t len, unsigned char *out,
                        int whole, gt_err *err) {
  inflater *f = calloc(1, sizeof *f);
  if (!f) return gt_fail(err, "out of memory");
  if (inflateInit2(&f->z, -MAX_WBITS) != Z_OK) {
    free(f);
    return gt_fail(err, "cannot start inflating");
  }
  f->in = base + mm->data_offset;
  f->in_left = mm->comp_size;
  f->crc = (uint32_t)crc32(0L, Z_NULL, 0);
  int ended;
  int rc = run_to(f, off, len, out, whole ? mm->size : off + len, &ended, err);
  if (rc == GT_OK && whole && !ended) rc = expect_end(f, err);
  if (rc == GT_OK && whole && f->crc != mm->crc)
    rc = gt_fail(err, "CRC-32 mismatch (archive says %08x, data gives %08x): "
                      "the file is corrupt", (unsigned)mm->crc,
                 (unsigned)f->crc);
  inflateEnd(&f->z);
  free(f);
  return rc;
}

int gt_zip_inflate_prefix(const unsigned char *base, const gt_zip_member *mm,
                          unsigned char *out, uint64_t want, gt_err *err) {
  if (want > mm->size)
    return gt_fail(err, "%llu bytes wanted of a %llu-byte member",
                   (unsigned long long)want, (unsigned long long)mm->size);
  return inflate_span(base, mm, 0, want, out, 0, err);
}

/* A deflated member's lazy bytes: what load_deflated needs of the member
 * (its name is not kept: `what` names it). */
typedef struct deflated_ctx {
  gt_zip_member m;
  uint64_t off;
  char *what;
} deflated_ctx;

static void free_deflated(void *p) {
  deflated_ctx *c = p;
  free(c->what);
  free(c);
}

static int load_deflated(gt_storage *s, gt_err *err) {
  const deflated_ctx *c = s->ctx;
  if (gt_storage_ready(s->parent, err) != GT_OK) return GT_ERR;
  if (gt_storage_alloc_data(s, err) != GT_OK) return gt_wrap(err, "%s", c->what);
  if (inflate_span(s->parent->data, &c->m, c->off, s->size, s->data, 1, err) !=
      GT_OK)
    return gt_wrap(err, "%s", c->what);
  return GT_OK;
}

gt_storage *gt_zip_member_storage(gt_storage *file, const gt_zip_member *mm,
                                  uint64_t off, uint64_t len, size_t align,
                                  char *what, gt_err *err) {
  if (!what) return gt_fail(err, "out of memory"), NULL;
  if (mm->method == 0) {
    gt_checked c = {.kind = GT_SUM_CRC32, .sum = mm->crc,
                    .sum_off = mm->data_offset, .sum_len = mm->size,
                    .data_off = mm->data_offset + off, .align = align};
    return gt_checked_storage(file, &c, len, what, err);
  }
  deflated_ctx *c = calloc(1, sizeof *c);
  if (!c) {
    free(what);
    return gt_fail(err, "out of memory"), NULL;
  }
  c->m = *mm;
  c->m.name = NULL;
  c->off = off;
  c->what = what;
  return gt_storage_lazy((size_t)len, file, load_deflated, c, free_deflated,
                         err);
}

gt_storage *gt_zip_member_read(gt_storage *file, const gt_zip_member *mm,
                               int check_stored, gt_err *err) {
  gt_storage *s = NULL;
  if (gt_zip_member_check(mm, err) != GT_OK) goto fail;
  if (mm->method == 0) {
    s = gt_storage_region(file, mm->data_offset, mm->size, err);
    if (!s) goto fail;
    uint32_t got = check_stored ? gt_crc32(s->data, s->size) : mm->crc;
    if (got != mm->crc) {
      gt_fail(err, "CRC-32 mismatch (archive says %08x, data gives %08x): "
                   "the file is corrupt", (unsigned)mm->crc, (unsigned)got);
      goto fail;
    }
    return s;
  }
  if (!(s = gt_storage_new((size_t)mm->size, 0, err))) goto fail;
  if (inflate_span(file->data, mm, 0, mm->size, s->data, 1, err) != GT_OK)
    goto fail;
  return s;
fail:
  gt_storage_release(s);
  gt_wrap(err, "member \"%.200s\"", mm->name);
  return NULL;
}
