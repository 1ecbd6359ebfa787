/* libFuzzer target: a TensorFlow V2 checkpoint. The input is the .index
 * (header and BundleEntryProtos, checked against the data shard); the one
 * data shard holds the same bytes, so entries' offsets land on real data.
 * Read eagerly (gt_tfbundle_read) and through the compact index. */
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
  /* The compact index as core.tf_open uses it: every record looked up by
   * its key, peeked and described (gt_tfbundle_read above made the
   * tensors). */
  gt_tfindex *x;
  if (gt_tfindex_open(prefix, &x, &e) == GT_OK) {
    for (size_t r = 0; r < gt_tfindex_nentries(x); r++) {
      gt_tfentry en;
      gt_tensor t;
      gt_tfindex_entry(x, r, &en);
      if (gt_tfindex_find(x, en.key, en.klen) != (long)r) __builtin_trap();
      if (en.listed && gt_tfindex_peek(x, r, &t) != GT_OK) __builtin_trap();
    }
    gt_tfindex_free(x);
  }
  return 0;
}
