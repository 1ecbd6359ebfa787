#include "tensor/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int gt_fail(gt_err *err, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return GT_ERR;
}

int gt_wrap(gt_err *err, const char *fmt, ...) {
  if (err) {
    char prefix[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Truncation is fine: the message stays NUL-terminated. */
    size_t cap = sizeof err->msg, n = strlen(prefix);
    if (n > cap - 3) n = cap - 3;
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t m = strnlen(old, sizeof old);
    if (m > cap - n - 3) m = cap - n - 3;
    memcpy(err->msg + n + 2, old, m);
    err->msg[n + 2 + m] = 0;
  }
  return GT_ERR;
}
