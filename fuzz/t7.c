/* t7.c: libFuzzer target for the Torch7 .t7 reader.
 *
 * Each input is read as a t7 file from memory (its encoding detected from
 * the first type tag as for a file); when it opens, every tensor is
 * materialised as float64 so that view bounds, byte swapping and the ascii
 * decoding are exercised together. Build and run from the repository root
 * (clang's libFuzzer):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE \
 *     -Isrc fuzz/t7.c src/formats/t7.c $(ls src/tensor/[a-z]*.c) \
 *     src/io/model.c src/io/value.c src/io/grow.c src/io/fileout.c \
 *     -lm -lpthread -o build/fuzz/bin/t7
 *   build/fuzz/bin/t7 -max_len=4096 CORPUS_DIR ../shared/fixtures/real/t7/python-torchfile-testfiles
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/t7.h"
#include "tensor/copy.h"

/* Materialised bytes above this are skipped (8 bytes per element out). */
#define MAX_OUT ((int64_t)64 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gt_err err;
  gt_storage *file = gt_storage_new(size, 0, &err);
  if (!file) return 0;
  if (size) memcpy(file->data, data, size);
  gt_model m;
  gt_model_init(&m);
  if (gt_t7_read(file, &m, &err) == GT_OK) {
    for (size_t i = 0; i < m.n; i++) {
      const gt_tensor *t = &m.entries[i].t;
      int64_t numel = gt_tensor_numel(t);
      if (numel > MAX_OUT / 8) continue;
      void *out = malloc((size_t)numel * 8 + 1);
      if (out) gt_copy_into(t, GT_F64, out, &err);
      free(out);
    }
  }
  gt_model_free(&m);
  gt_storage_release(file);
  return 0;
}
