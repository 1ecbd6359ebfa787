/* libFuzzer target: a Torch7 .t7 file (binary or ascii encoding, detected
 * from the first type tag): every tensor read as stored and streamed as
 * float64, so that view bounds, byte swapping and the ascii decoding are
 * exercised together. The long size is detected, so a binary input that
 * fails with 8-byte longs is read again with 4-byte ones. */
#include "fuzz.h"
#include "formats/t7.h"

static int rd(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_t7_read(f, m, 0, e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const gt_dtype f64 = GT_F64;
  return fuzz_read(data, size, ".t7", rd, &f64);
}
