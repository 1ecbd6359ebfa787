/* pbpatch.h: a protobuf message rewritten by splicing new values into it.
 *
 * Both patch writers (a TF GraphDef's Const values, formats/tf/graph_patch.c;
 * an ONNX model's initializers and Constant values, formats/onnx/write.c) copy
 * every byte of the base message verbatim except one nested record's
 * payload: the target. A patch says where the target sits, as the chain
 * of LEN records enclosing it (chain[0] outermost, chain[depth - 1] the
 * target itself), and what its new payload is, as segments: base byte
 * ranges, new bytes, or a tensor's elements streamed at write time. The
 * enclosing records' length prefixes are rewritten, each by its child's
 * change in size; nothing else moves.
 *
 * A patch of depth 0 is a whole new record (its segments carry their own
 * tag and length): it is written where the caller puts it.
 *
 * Offsets are those of the buffer the chain was read from (pbwire.h). */
#ifndef GT_PBPATCH_H
#define GT_PBPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "io/fileout.h"
#include "io/pbwire.h"
#include "tensor/tensor.h"

enum { PBP_COPY, PBP_BYTES, PBP_TENSOR };

/* One piece of a new payload; len is the bytes it writes. */
typedef struct pbp_seg {
  int kind;
  size_t off, len;        /* COPY: base[off, off + len) */
  uint8_t *bytes;         /* BYTES: owned by the patch holding the segment */
  const gt_tensor *t;     /* TENSOR: its elements, raw little-endian */
} pbp_seg;

/* A TensorProto has fewer fields than this; a payload of more pieces is
 * refused. */
#define PBP_MAX_SEGS 64
#define PBP_MAX_CHAIN 4

typedef struct pb_patch {
  pb_rec chain[PBP_MAX_CHAIN];   /* enclosing LEN records, outermost first */
  int depth;                     /* 0: a new record */
  pbp_seg segs[PBP_MAX_SEGS];
  size_t nsegs;
  uint64_t newlen[PBP_MAX_CHAIN];/* payload lengths along chain (pbp_lengths) */
  int64_t delta;                 /* change in chain[0]'s length varint + payload */
} pb_patch;

/* Frees the owned bytes of p's segments; p is empty after. */
void pbp_free(pb_patch *p);
/* Appends s; p owns s.bytes from this call on, even when it fails (too
 * many segments). */
int pbp_add(pb_patch *p, pbp_seg s, gt_err *err);
/* Appends a copy of b[0, n). */
int pbp_add_bytes(pb_patch *p, const uint8_t *b, size_t n, gt_err *err);
/* Appends base[off, off + len), merged into a preceding adjacent copy. */
int pbp_add_copy(pb_patch *p, size_t off, size_t len, gt_err *err);

/* The target's new payload: the records of buf[start, end) in order with
 * every record that is_value(field number) says is a value dropped, and
 * the value segments value[0, n) placed where the first value record was,
 * else before the first record numbered above `after`, else last. p owns
 * the value segments' bytes from this call on, even when it fails. */
int pbp_splice(pb_patch *p, const uint8_t *buf, size_t start, size_t end,
               int (*is_value)(uint32_t num), uint32_t after, pbp_seg *value,
               size_t n, gt_err *err);

/* Sets newlen along the chain from the segments (innermost first: each
 * record grows by its child's change of length varint and payload) and
 * delta. Needs depth >= 1. */
int pbp_lengths(pb_patch *p, gt_err *err);

/* How many TENSOR segments p streams (for progress). */
size_t pbp_tensors(const pb_patch *p);

/* Patch i of an array, as pbp_open_out sees it: its pb_patch and the entry
 * whose values its TENSOR segments stream. */
typedef const pb_patch *(*pbp_at_fn)(const void *patches, size_t i,
                                     const gt_entry **e);

/* Opens o at path for a patched file whose progress counts each patch's
 * entry once per TENSOR segment it streams (progress as s gives it). */
int pbp_open_out(gt_out *o, const char *path, const gt_save *s,
                 const void *patches, size_t n, pbp_at_fn at, gt_err *err);

/* Writes base[*cursor, ...) up to the end of p's target, with the chain's
 * new length prefixes and p's segments in place; *cursor is then the
 * target's end. A patch of depth 0 writes its segments only. */
int pbp_write(gt_out *o, const uint8_t *base, const pb_patch *p, size_t *cursor,
              gt_err *err);

/* base[from, to) and one varint, to o. */
int pbp_write_base(gt_out *o, const uint8_t *base, size_t from, size_t to, gt_err *err);
int pbp_write_varint(gt_out *o, uint64_t v, gt_err *err);

/* Tag and length varint of a LEN record of field `field` into out (>= 20
 * bytes); returns their size. */
size_t pbp_len_header(uint8_t *out, uint32_t field, uint64_t len);

/* GT_OK when t has the shape shape[0, ndim), else "the <what> has shape
 * [..], the tensor [..]". */
int pbp_check_shape(const gt_tensor *t, int ndim, const int64_t *shape,
                    const char *what, gt_err *err);

#endif
