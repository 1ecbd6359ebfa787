/* libFuzzer target: an .npz archive (zip directory, stored and deflated .npy members). */
#include "fuzz.h"
#include "formats/npz.h"

static int rd(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_npz_read(f, "fuzz.npz", m, e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_read(data, size, "", rd, NULL);
}
