/* libFuzzer target: a TensorFlow V1 checkpoint (SSTable of SavedSlice protos). */
#include "fuzz.h"
#include "formats/tf/v1.h"

static int rd(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_tfv1_read(f, m, e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_read(data, size, "", rd, NULL);
}
