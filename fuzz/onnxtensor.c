/* libFuzzer target: a lone ONNX TensorProto (.pb of a test data set). */
#include "fuzz.h"
#include "formats/onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(data, size, ".pb");
  gt_err e;
  gt_storage *f = gt_storage_map(path, &e);
  if (!f) return 0;
  gt_model m;
  gt_model_init(&m);
  if (gt_onnx_tensor_read(f, path, &m, &e) == GT_OK) fuzz_consume(&m);
  else gt_model_free(&m);
  gt_storage_release(f);
  return 0;
}
