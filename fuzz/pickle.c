/* libFuzzer target: the pickle machine on its own (protocols 0-5, no hooks:
 * persistent ids are errors, every global an inert placeholder). */
#include "fuzz.h"
#include "io/pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gt_value *v = NULL;
  size_t used = 0;
  gt_err e;
  if (gt_pickle_load(data, size, 0, NULL, &v, &used, &e) == GT_OK)
    gt_value_free(v);
  return 0;
}
