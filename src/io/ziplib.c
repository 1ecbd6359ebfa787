#include "io/ziplib.h"

#include <stdlib.h>

void gt_ziplib_release(gt_ziplib *a) {
  if (a && --a->refs == 0) {
    zip_discard(a->za);
    gt_storage_release(a->file);
    free(a);
  }
}

gt_ziplib *gt_ziplib_open(gt_storage *file, gt_err *err) {
  zip_error_t ze;
  zip_error_init(&ze);
  gt_ziplib *a = calloc(1, sizeof *a);
  zip_source_t *src =
      a ? zip_source_buffer_create(file->data, file->size, 0, &ze) : NULL;
  zip_t *za = src ? zip_open_from_source(src, ZIP_RDONLY, &ze) : NULL;
  if (!za) {
    if (a) gt_fail(err, "libzip cannot open the archive: %s",
                   zip_error_strerror(&ze));
    else gt_fail(err, "out of memory");
    if (src) zip_source_free(src);
    zip_error_fini(&ze);
    free(a);
    return NULL;
  }
  zip_error_fini(&ze);
  a->refs = 1;
  a->za = za;
  a->file = file;
  gt_storage_retain(file);
  return a;
}
