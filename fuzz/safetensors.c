/* libFuzzer target: a safetensors file (header JSON, offsets, data). */
#include "fuzz.h"
#include "formats/safetensors.h"

static int rd(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_safetensors_read(f, m, e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_read(data, size, "", rd, NULL);
}
