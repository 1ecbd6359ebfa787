/* pbwire.c: protobuf wire records with offsets (see pbwire.h).
 *
 * Wire format facts (docs/formats/tfgraph.md#protobuf-wire-format): tag = varint(field << 3 | type);
 * a varint is at most 10 bytes, the 10th holding only bit 63; LEN payloads
 * are a varint length then that many bytes; I64 and I32 are fixed 8 and 4
 * little-endian bytes; wire types 3 and 4 (groups) never occur in the
 * schemas read here and are refused. */
#include "io/pbwire.h"

#include <stdlib.h>
#include <string.h>

void pb_reader_init(pb_reader *r, const uint8_t *buf, size_t start, size_t end) {
  r->buf = buf;
  r->pos = start;
  r->limit = end;
}

/* Reads a varint at *pos (< limit); advances *pos. */
static int get_varint(const uint8_t *buf, size_t limit, size_t *pos,
                      uint64_t *v) {
  uint64_t x = 0;
  for (int i = 0; i < 10; i++) {
    if (*pos >= limit) return GT_ERR;
    uint8_t b = buf[(*pos)++];
    if (i == 9 && b > 1) return GT_ERR;
    x |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      *v = x;
      return GT_OK;
    }
  }
  return GT_ERR;
}

int pb_next(pb_reader *r, pb_rec *rec, gt_err *err) {
  if (r->pos >= r->limit) return 0;
  memset(rec, 0, sizeof *rec);
  rec->start = r->pos;
  uint64_t tag;
  if (get_varint(r->buf, r->limit, &r->pos, &tag) != GT_OK)
    return gt_fail(err, "bad protobuf tag at offset %zu", rec->start);
  rec->wt = (int)(tag & 7);
  if ((tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
    return gt_fail(err, "bad protobuf field number at offset %zu", rec->start);
  rec->num = (uint32_t)(tag >> 3);
  size_t left = r->limit - r->pos;
  switch (rec->wt) {
  case PB_VARINT:
    if (get_varint(r->buf, r->limit, &r->pos, &rec->v) != GT_OK)
      return gt_fail(err, "field %u: bad varint at offset %zu", rec->num,
                     rec->start);
    break;
  case PB_I64:
  case PB_I32: {
    size_t n = rec->wt == PB_I64 ? 8 : 4;
    if (left < n)
      return gt_fail(err, "field %u at offset %zu: %zu-byte value runs past "
                     "the end", rec->num, rec->start, n);
    for (size_t i = 0; i < n; i++) rec->v |= (uint64_t)r->buf[r->pos + i] << (8 * i);
    r->pos += n;
    break;
  }
  case PB_LEN: {
    uint64_t len;
    rec->lenpos = r->pos;
    if (get_varint(r->buf, r->limit, &r->pos, &len) != GT_OK)
      return gt_fail(err, "field %u: bad length at offset %zu", rec->num,
                     rec->lenpos);
    if (len > r->limit - r->pos)
      return gt_fail(err, "field %u at offset %zu: length %llu runs past the "
                     "end of its message (%zu bytes left)", rec->num,
                     rec->start, (unsigned long long)len, r->limit - r->pos);
    rec->pos = r->pos;
    rec->len = (size_t)len;
    r->pos += (size_t)len;
    break;
  }
  default:
    return gt_fail(err, "field %u at offset %zu: wire type %d is not "
                   "supported", rec->num, rec->start, rec->wt);
  }
  rec->end = r->pos;
  return 1;
}

void pb_sub(const pb_reader *r, const pb_rec *rec, pb_reader *sub) {
  pb_reader_init(sub, r->buf, rec->pos, rec->pos + rec->len);
}

size_t pb_varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

size_t pb_put_varint(uint8_t *out, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    out[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  out[n++] = (uint8_t)v;
  return n;
}

/* Walks buf[start, end) as message d, descending into every LEN field the
 * schema says is a message; recursion is bounded by PB_MAX_DEPTH. */
static int check_depth(const ProtobufCMessageDescriptor *d, const uint8_t *buf,
                       size_t start, size_t end, int depth, gt_err *err) {
  if (depth > PB_MAX_DEPTH)
    return gt_fail(err, "messages nested more than %d deep at offset %zu",
                   PB_MAX_DEPTH, start);
  pb_reader r;
  pb_rec rec;
  int k;
  pb_reader_init(&r, buf, start, end);
  while ((k = pb_next(&r, &rec, err)) == 1) {
    if (rec.wt != PB_LEN) continue;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(d, (unsigned)rec.num);
    if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
        check_depth(f->descriptor, buf, rec.pos, rec.pos + rec.len, depth + 1,
                    err) != GT_OK)
      return GT_ERR;
  }
  return k;
}

ProtobufCMessage *pb_unpack(const ProtobufCMessageDescriptor *d,
                            const uint8_t *p, size_t n, const char *what,
                            gt_err *err) {
  if (check_depth(d, p, 0, n, 0, err) != GT_OK) {
    gt_wrap(err, "%s", what);
    return NULL;
  }
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, n, p);
  if (!m)
    gt_fail(err, "%s: not a valid %s message (%zu bytes)", what, d->name, n);
  return m;
}

int pb_filter(const uint8_t *buf, size_t start, size_t end,
              const uint32_t *skip, size_t nskip, uint8_t **out,
              size_t *outlen, gt_err *err) {
  uint8_t *o = malloc(end - start ? end - start : 1);
  if (!o) return gt_fail(err, "out of memory");
  size_t n = 0;
  pb_reader r;
  pb_rec rec;
  int k;
  pb_reader_init(&r, buf, start, end);
  while ((k = pb_next(&r, &rec, err)) == 1) {
    int drop = 0;
    for (size_t i = 0; i < nskip; i++) drop |= rec.num == skip[i];
    if (drop) continue;
    memcpy(o + n, buf + rec.start, rec.end - rec.start);
    n += rec.end - rec.start;
  }
  if (k != 0) {
    free(o);
    return GT_ERR;
  }
  *out = o;
  *outlen = n;
  return GT_OK;
}
