/* pbwire.h: protobuf wire records with their byte offsets.
 *
 * protobuf-c decodes messages into its own buffers and says nothing about
 * where a field's bytes sit in the input. Two things need exactly that: a
 * Const's tensor_content is mapped from the file without a copy, and a
 * patched Const is spliced into a graph with every other byte kept. This
 * walker reads one level of records of a message (docs/formats/tfgraph.md#protobuf-wire-format) and
 * reports each with its offsets; decoding of whole (small) messages stays
 * with protobuf-c, behind pb_unpack, which first bounds the nesting depth
 * (protobuf-c recurses without limit, so hostile nesting would exhaust the
 * stack).
 *
 * All offsets are from the start of the buffer the reader was made on, so a
 * reader over a sub-range of a mapped file reports file offsets. */
#ifndef GT_PBWIRE_H
#define GT_PBWIRE_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "tensor/error.h"

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

/* Messages nested deeper than this are refused (protobuf's own default
 * recursion limit is 100). */
#define PB_MAX_DEPTH 100

typedef struct pb_rec {
  uint32_t num;     /* field number, >= 1 */
  int wt;           /* PB_VARINT, PB_I64, PB_LEN or PB_I32 */
  uint64_t v;       /* VARINT value, or the little-endian I64 / I32 bits */
  size_t start;     /* offset of the tag */
  size_t lenpos;    /* LEN: offset of the length varint */
  size_t pos;       /* LEN: offset of the payload */
  size_t len;       /* LEN: payload bytes */
  size_t end;       /* offset just past the record */
} pb_rec;

typedef struct pb_reader {
  const uint8_t *buf;
  size_t pos, limit;  /* records are read from [pos, limit) */
} pb_reader;

/* A reader over buf[start, end); end <= the buffer's size is the caller's
 * invariant. */
void pb_reader_init(pb_reader *r, const uint8_t *buf, size_t start, size_t end);
/* Reads the next record into *rec: 1 when one was read, 0 at the end of the
 * range, GT_ERR when the bytes are not a valid record (the message says
 * what and at which offset; groups and field number 0 are refused). */
int pb_next(pb_reader *r, pb_rec *rec, gt_err *err);
/* A reader over the payload of LEN record rec. */
void pb_sub(const pb_reader *r, const pb_rec *rec, pb_reader *sub);

/* Varint helpers: size of v encoded, and encoding into out (>= 10 bytes). */
size_t pb_varint_size(uint64_t v);
size_t pb_put_varint(uint8_t *out, uint64_t v);

/* protobuf-c unpack of p[0, n) as message `d` after checking the nesting
 * depth against d's schema; NULL with a message naming `what` on failure.
 * Free with protobuf_c_message_free_unpacked(msg, NULL). */
ProtobufCMessage *pb_unpack(const ProtobufCMessageDescriptor *d,
                            const uint8_t *p, size_t n, const char *what,
                            gt_err *err);

/* A copy of the records of buf[start, end) without those whose field
 * number is in skip[0, nskip) (the others in order, byte for byte): lets
 * protobuf-c decode a message's small fields without copying its big ones.
 * *out is malloc'd (free it); *outlen its size. */
int pb_filter(const uint8_t *buf, size_t start, size_t end,
              const uint32_t *skip, size_t nskip, uint8_t **out,
              size_t *outlen, gt_err *err);

#endif
