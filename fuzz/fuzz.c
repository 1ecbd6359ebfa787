/* fuzz.c: see fuzz.h. */
#include "fuzz.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/copy.h"

const char *fuzz_file(const uint8_t *data, size_t size, const char *suffix) {
  static char path[4096];
  const char *dir = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/graft-fuzz-%ld%s", dir && *dir ? dir : "/tmp",
           (long)getpid(), suffix);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) abort();
  size_t done = 0;
  while (done < size) {
    ssize_t w = write(fd, data + done, size - done);
    if (w <= 0) abort();
    done += (size_t)w;
  }
  close(fd);
  return path;
}

gt_storage *fuzz_map(const uint8_t *data, size_t size) {
  gt_err e;
  return gt_storage_map(fuzz_file(data, size, ""), &e);
}

void fuzz_consume(gt_model *m) {
  for (size_t i = 0; i < m->n; i++) {
    const gt_tensor *t = &m->entries[i].t;
    if (gt_tensor_nbytes(t) > FUZZ_MAX_TENSOR) continue;
    gt_err e;
    gt_tensor out;
    if (gt_contiguous(t, &out, &e) == GT_OK) gt_tensor_free(&out);
  }
  gt_model_free(m);
}
