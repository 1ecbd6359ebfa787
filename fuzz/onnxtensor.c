/* libFuzzer target: a lone ONNX TensorProto (.pb of a test data set). */
#include "fuzz.h"
#include "formats/onnx.h"

static int rd(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  return gt_onnx_tensor_read(f, path, m, e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_read(data, size, ".pb", rd, NULL);
}
