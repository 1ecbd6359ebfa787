/* libFuzzer target: an HDF5 file (Keras .h5, .weights.h5, generic HDF5)
 * through the sandbox: libhdf5 walks the file and reads every dataset in a
 * confined child (src/io/sandbox.c, src/formats/hdf5/isolate.c), so a crash
 * or hang inside libhdf5 is an error here, not a finding; what is fuzzed is
 * graft's side: the wire decoder, the index it rebuilds, the views of
 * contiguous datasets and the reads it asks the child for. */
#include <stdlib.h>

#include "fuzz.h"
#include "formats/hdf5/hdf5.h"

static int rd(gt_storage *f, const char *path, gt_model *m, gt_err *e) {
  (void)path;
  return gt_hdf5_read(f, m, e);
}

/* A hang inside libhdf5 ends at the sandbox's wall-time limit as an error;
 * keep that limit well under the fuzzer's own hang bound (fuzz/run). */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  setenv("GRAFT_HDF5_TIMEOUT", "2", 0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_read(data, size, ".h5", rd, NULL);
}
