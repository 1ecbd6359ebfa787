/* error.h: how the C core reports failure.
 *
 * The core never longjmps and never prints. A function that can fail returns
 * GT_OK (0) or GT_ERR (-1) and, on failure, fills a caller-owned gt_err with
 * one human-readable message. The Lua binding prefixes the file name (and the
 * tensor name where it has one) and raises it as a Lua error. */
#ifndef GT_ERROR_H
#define GT_ERROR_H

#include <stddef.h>

enum { GT_OK = 0, GT_ERR = -1 };

typedef struct gt_err {
  char msg[512];
} gt_err;

/* printf-style; always returns GT_ERR so callers can `return gt_fail(...)`.
 * err may be NULL (the message is then dropped). */
int gt_fail(gt_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepend "prefix: " to an existing message (used to add context such as a
 * tensor name as an error travels outwards). Returns GT_ERR. */
int gt_wrap(gt_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Overflow-checked size arithmetic: return 0 on success, -1 on overflow. */
static inline int gt_mul_u64(unsigned long long a, unsigned long long b,
                             unsigned long long *r) {
  return __builtin_mul_overflow(a, b, r) ? -1 : 0;
}
static inline int gt_add_u64(unsigned long long a, unsigned long long b,
                             unsigned long long *r) {
  return __builtin_add_overflow(a, b, r) ? -1 : 0;
}

#endif
