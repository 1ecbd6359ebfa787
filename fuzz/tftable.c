/* libFuzzer target: the TensorFlow SSTable reader (footer, block handles,
 * restart points, crc32c trailers, snappy blocks). */
#include "fuzz.h"
#include "formats/tf/table.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gt_storage *f = fuzz_map(data, size);
  if (!f) return 0;
  gt_tftable t;
  gt_err e;
  if (gt_tftable_open(&t, f, &e) == GT_OK) gt_tftable_close(&t);
  gt_storage_release(f);
  return 0;
}
