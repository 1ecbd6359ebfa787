/* libFuzzer target: a PyTorch file: zip archive (data.pkl + records), legacy
 * pre-1.6 stream, torch <= 0.1.9 tar, or a plain pickle (torch 0.1.x-0.3
 * values by value, _load_from_bytes storages). */
#include "fuzz.h"
#include "formats/torch/read.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gt_storage *f = fuzz_map(data, size);
  if (!f) return 0;
  gt_model m;
  gt_model_init(&m);
  gt_err e;
  if (gt_torch_read(f, &m, &e) == GT_OK) fuzz_consume(&m);
  else gt_model_free(&m);
  gt_storage_release(f);
  return 0;
}
