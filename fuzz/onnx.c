/* libFuzzer target: an ONNX model (.onnx): the graph walk, initializers and
 * Constant values of every data type, typed fields, sub-byte unpacking and
 * external data references (resolved next to the scratch file). */
#include "fuzz.h"
#include "formats/onnx.h"

static int rd(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  return gt_onnx_read(f, path, m, e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_read(data, size, ".onnx", rd, NULL);
}
