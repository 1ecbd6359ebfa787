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

static int discard(void *ctx, const void *bytes, size_t n, gt_err *err) {
  (void)ctx, (void)bytes, (void)n, (void)err;
  return GT_OK;
}

/* Each tensor of m converted to `to`, piece by piece, the pieces dropped. */
static void stream_all(const gt_model *m, gt_dtype to) {
  static unsigned char buf[1 << 16];
  for (size_t i = 0; i < m->n; i++) {
    const gt_tensor *t = &m->entries[i].t;
    if (gt_tensor_numel(t) > FUZZ_MAX_TENSOR / (int64_t)gt_dtype_size(to)) continue;
    gt_err e;
    gt_stream(t, to, buf, sizeof buf, discard, NULL, 0, &e);
  }
}

int fuzz_read(const uint8_t *data, size_t size, const char *suffix, fuzz_read_fn read,
              const gt_dtype *also_as) {
  const char *path = fuzz_file(data, size, suffix);
  gt_err e;
  gt_storage *f = gt_storage_map(path, &e);
  if (!f) return 0;
  gt_model m;
  gt_model_init(&m);
  if (read(f, path, &m, &e) == GT_OK) {
    if (also_as) stream_all(&m, *also_as);
    fuzz_consume(&m);
  } else {
    gt_model_free(&m);
  }
  gt_storage_release(f);
  return 0;
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
