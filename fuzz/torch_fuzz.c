/* torch_fuzz.c: libFuzzer target for the PyTorch reader (zip, legacy,
 * torch <= 0.1.9 tar and plain pickles, incl. torch 0.1.x-0.3 values
 * pickled by value and _load_from_bytes storages) and the pickle machine.
 *
 * Each input is read as a torch file from memory; when it opens, every
 * tensor is materialised (zip records are CRC-checked and inflated then).
 * Build and run from the repository root (clang's libFuzzer):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE \
 *     -Isrc -I/usr/include/cjson fuzz/torch_fuzz.c src/formats/torch/read.c \
 *     src/formats/torch/types.c $(ls src/tensor/[a-z]*.c) src/io/model.c \
 *     src/io/value.c src/io/grow.c src/io/fileout.c src/io/pickle.c \
 *     src/io/zipmap.c src/io/zipmember.c src/io/checked.c src/io/crc32c.c \
 *     -lcjson -lz -lm -lpthread -o build/torch_fuzz
 *   build/torch_fuzz -max_len=65536 CORPUS_DIR
 * Seeds: the files spec/fixtures/gen_torch.py and gen_oldtorch.py write,
 * and ../shared/fixtures/real/ torch files.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/torch/read.h"
#include "tensor/copy.h"

/* Materialised bytes above this are skipped. */
#define MAX_OUT ((int64_t)64 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gt_err err;
  gt_storage *file = gt_storage_new(size, 0, &err);
  if (!file) return 0;
  if (size) memcpy(file->data, data, size);
  gt_model m;
  gt_model_init(&m);
  if (gt_torch_read(file, &m, &err) == GT_OK) {
    for (size_t i = 0; i < m.n; i++) {
      const gt_tensor *t = &m.entries[i].t;
      int64_t raw = gt_tensor_nbytes(t);
      if (raw > MAX_OUT) continue;
      void *a = malloc((size_t)raw + 1);
      if (a) gt_copy_into(t, t->dtype, a, &err);
      free(a);
    }
  }
  gt_model_free(&m);
  gt_storage_release(file);
  return 0;
}
