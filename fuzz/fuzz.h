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

#define FUZZ_MAX_TENSOR ((int64_t)64 << 20)

#endif
