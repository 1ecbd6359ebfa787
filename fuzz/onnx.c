/* libFuzzer target: an ONNX model (.onnx): the graph walk, initializers and
 * Constant values of every data type, typed fields, sub-byte unpacking and
 * external data references (resolved next to the scratch file). */
#include "fuzz.h"
#include "formats/onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(data, size, ".onnx");
  gt_err e;
  gt_storage *f = gt_storage_map(path, &e);
  if (!f) return 0;
  gt_model m;
  gt_model_init(&m);
  if (gt_onnx_read(f, path, &m, &e) == GT_OK) fuzz_consume(&m);
  else gt_model_free(&m);
  gt_storage_release(f);
  return 0;
}
