/* libFuzzer target: a GGUF file (header, kv pairs, tensor index, aligned
 * data): every tensor read as stored and streamed as float32 through the
 * dequantisation kernels of its block type, so that the index checks and
 * the kernels are exercised together. */
#include "fuzz.h"
#include "formats/gguf.h"

static int rd(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_gguf_read(f, m, e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const gt_dtype f32 = GT_F32;
  return fuzz_read(data, size, ".gguf", rd, &f32);
}
