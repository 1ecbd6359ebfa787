/* grow.h: growing malloc'd arrays by doubling. */
#ifndef GT_GROW_H
#define GT_GROW_H

#include <stddef.h>

/* Make *arr (elements of `es` bytes, *cap of them) hold at least `need`:
 * the capacity doubles from 16 until it does. GT_OK, or GT_ERR (nothing
 * changed) when the size overflows or realloc fails; callers name the
 * failure. */
int gt_grow(void **arr, size_t *cap, size_t need, size_t es);

#endif
