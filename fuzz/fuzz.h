/* fuzz.h: what every libFuzzer target in fuzz/ shares.
 *
 * A target hands the fuzzer's bytes to one parser entry point the way
 * graft.open does (a read-only mapping of a file), then reads every tensor
 * the parser produced, as `graft.open` + a full read would: that runs the
 * lazy loaders (inflate, checksum checks, aligned copies) too. A parser
 * error is an expected outcome; a crash, a sanitizer report, a leak, a
 * hang or memory past libFuzzer's -rss_limit_mb is a finding. */
#ifndef GT_FUZZ_H
#define GT_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "io/model.h"
#include "tensor/storage.h"

/* Write data to this process's scratch file (under $TMPDIR, default /tmp)
 * with `suffix` appended to its name and return its path (static buffer). */
const char *fuzz_file(const uint8_t *data, size_t size, const char *suffix);
/* Map the scratch file holding data (NULL on an I/O failure). */
gt_storage *fuzz_map(const uint8_t *data, size_t size);
/* Read every tensor of m into memory (each copied contiguous, cast-free),
 * skipping those over FUZZ_MAX_TENSOR bytes (a reader's declared sizes are
 * checked against the file by the reader; the harness itself does not want
 * to spend the fuzzer's memory on legitimately big tensors), then free m. */
void fuzz_consume(gt_model *m);

/* A parser entry point as the targets call it: path is the scratch file's
 * (for readers that resolve names or siblings by it). */
typedef int (*fuzz_read_fn)(gt_storage *f, const char *path, gt_model *m, gt_err *e);
/* The whole of a model target: data written to the scratch file named
 * with `suffix`, mapped, read by `read`, and on success every tensor
 * consumed as fuzz_consume does; with also_as, each is also streamed
 * converted to *also_as through a fixed buffer (the cast and
 * dequantisation kernels, without a converted copy in memory). Returns
 * 0, as libFuzzer wants. */
int fuzz_read(const uint8_t *data, size_t size, const char *suffix, fuzz_read_fn read,
              const gt_dtype *also_as);

#define FUZZ_MAX_TENSOR ((int64_t)64 << 20)

#endif
