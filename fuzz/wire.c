/* libFuzzer target: the decoder of sandbox results (src/io/wire.c): a
 * child process that libhdf5 has subverted may send anything. */
#include "fuzz.h"
#include "io/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gt_wire w = {data, size, 0};
  gt_value *v = NULL;
  gt_err e;
  if (gt_wire_value(&w, &v, &e) == GT_OK) gt_value_free(v);
  return 0;
}
