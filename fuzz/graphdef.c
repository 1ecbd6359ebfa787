/* libFuzzer target: a frozen TensorFlow GraphDef (.pb): Const nodes and TensorProto values. */
#include "fuzz.h"
#include "formats/tf/graph.h"

static int rd(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_tfgraph_read(f, m, e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_read(data, size, "", rd, NULL);
}
