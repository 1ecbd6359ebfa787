/* libFuzzer target: an .npz archive (zip directory, stored and deflated .npy members). */
#include "fuzz.h"
#include "formats/npz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gt_storage *f = fuzz_map(data, size);
  if (!f) return 0;
  gt_model m;
  gt_model_init(&m);
  gt_err e;
  if (gt_npz_read(f, "fuzz.npz", &m, &e) == GT_OK) fuzz_consume(&m);
  else gt_model_free(&m);
  gt_storage_release(f);
  return 0;
}
