/* wire.h: value trees as bytes, for results that cross a process boundary
 * (the sandbox's pipe).
 *
 * Encoding, little-endian: one tag byte, then
 *   'n' nil | 'b' u8 | 'i' i64 | 'f' f64 | 't' i64 (tensor index)
 *   's' u64 len, bytes | 'l' u64 n, n values | 'm' u64 n, n (key, value)
 *   'o' u64 len, name bytes, u64 n, n values (an inert object)
 * The decoder trusts nothing: every count is checked against the bytes
 * left (each value takes at least one byte), nesting is capped, and
 * strings are copied. */
#ifndef GT_WIRE_H
#define GT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "io/sandbox.h"
#include "io/value.h"

/* Append v (NULL encodes as nil) to b. */
int gt_wire_put_value(gt_sbuf *b, const gt_value *v, gt_err *err);
int gt_wire_put_u64(gt_sbuf *b, uint64_t x, gt_err *err);
int gt_wire_put_str(gt_sbuf *b, const char *s, size_t n, gt_err *err);

/* A cursor over received bytes. */
typedef struct gt_wire {
  const unsigned char *p;
  size_t n, at;
} gt_wire;

int gt_wire_u64(gt_wire *w, uint64_t *x, gt_err *err);
/* A string: *s points into the buffer (not NUL-terminated). */
int gt_wire_str(gt_wire *w, const unsigned char **s, size_t *n, gt_err *err);
/* A value tree (caller frees; nil decodes as NULL). */
int gt_wire_value(gt_wire *w, gt_value **out, gt_err *err);

#endif
