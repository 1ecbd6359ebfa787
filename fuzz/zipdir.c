/* libFuzzer target: graft's zip directory reader (end of central directory,
 * ZIP64 records, central headers). */
#include "fuzz.h"
#include "io/zipmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gt_zip_dir d;
  gt_err e;
  if (gt_zip_dir_read(data, size, &d, &e) == GT_OK) gt_zip_dir_free(&d);
  return 0;
}
