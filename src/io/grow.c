#include "io/grow.h"

#include <stdint.h>
#include <stdlib.h>

#include "tensor/error.h"

int gt_grow(void **arr, size_t *cap, size_t need, size_t es) {
  if (need <= *cap) return GT_OK;
  size_t c = *cap ? *cap : 16;
  while (c < need) {
    if (c > SIZE_MAX / 2 / es) return GT_ERR;
    c *= 2;
  }
  void *n = realloc(*arr, c * es);
  if (!n) return GT_ERR;
  *arr = n;
  *cap = c;
  return GT_OK;
}
