/* libFuzzer target: a TensorFlow V2 checkpoint. The input is the .index
 * (header and BundleEntryProtos, checked against the data shard); the one
 * data shard holds the same bytes, so entries' offsets land on real data. */
#include "fuzz.h"
#include "formats/tf/bundle.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char prefix[4096];
  const char *p = fuzz_file(data, size, ".data-00000-of-00001");
  size_t n = strlen(p) - strlen(".data-00000-of-00001");
  memcpy(prefix, p, n);
  prefix[n] = 0;
  fuzz_file(data, size, ".index");
  gt_model m;
  gt_model_init(&m);
  gt_err e;
  if (gt_tfbundle_read(prefix, &m, &e) == GT_OK) fuzz_consume(&m);
  else gt_model_free(&m);
  return 0;
}
