/* libFuzzer target: a .npy file (magic, header dict, data). */
#include "fuzz.h"
#include "formats/npy.h"

static int rd(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_npy_read(f, m, NULL, e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_read(data, size, "", rd, NULL);
}
