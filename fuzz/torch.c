/* libFuzzer target: a PyTorch file: zip archive (data.pkl + records), legacy
 * pre-1.6 stream, torch <= 0.1.9 tar, or a plain pickle (torch 0.1.x-0.3
 * values by value, _load_from_bytes storages). */
#include "fuzz.h"
#include "formats/torch/read.h"

static int rd(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_torch_read(f, m, e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_read(data, size, "", rd, NULL);
}
