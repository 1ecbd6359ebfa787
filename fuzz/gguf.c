/* gguf.c: libFuzzer target for the GGUF reader and the block kernels.
 *
 * Each input is read as a GGUF file from memory; when it opens, every
 * tensor is materialised twice (its stored bytes, and as float32 through the
 * dequantisation kernels) so that index checks and kernels are exercised
 * together. Build and run from the repository root (clang's libFuzzer):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE \
 *     -Isrc fuzz/gguf.c src/formats/gguf.c $(ls src/tensor/[a-z]*.c) \
 *     src/io/model.c src/io/value.c src/io/grow.c src/io/fileout.c \
 *     -lm -lpthread -o build/fuzz/bin/gguf
 *   build/fuzz/bin/gguf -max_len=8192 CORPUS_DIR ../shared/fixtures/real/gguf/...
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "tensor/copy.h"

/* Materialised bytes above this are skipped (a tiny input may describe a
 * huge all-zero tensor only if its data is really there, but float32
 * output is 4 bytes per element). */
#define MAX_OUT ((int64_t)64 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gt_err err;
  gt_storage *file = gt_storage_new(size, 0, &err);
  if (!file) return 0;
  if (size) memcpy(file->data, data, size);
  gt_model m;
  gt_model_init(&m);
  if (gt_gguf_read(file, &m, &err) == GT_OK) {
    for (size_t i = 0; i < m.n; i++) {
      const gt_tensor *t = &m.entries[i].t;
      int64_t raw = gt_tensor_nbytes(t), numel = gt_tensor_numel(t);
      if (raw > MAX_OUT || numel > MAX_OUT / 4) continue;
      void *a = malloc((size_t)raw + 1), *b = malloc((size_t)numel * 4 + 1);
      if (a && b) {
        gt_copy_into(t, t->dtype, a, &err);
        gt_copy_into(t, GT_F32, b, &err);
      }
      free(a);
      free(b);
    }
  }
  gt_model_free(&m);
  gt_storage_release(file);
  return 0;
}
