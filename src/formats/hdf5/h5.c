/* h5.c: libhdf5 set-up and its error stack as gt_err messages (see h5.h). */
#include "formats/hdf5/h5.h"

#include <hdf5.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int gt_h5_ready(gt_err *err) {
  static int done;
  if (done) return GT_OK;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (H5open() < 0) return gt_fail(err, "libhdf5 failed to initialise");
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  done = 1;
  return GT_OK;
}

typedef struct estack {
  char first[160], last[200];
  int n;
} estack;

static herr_t ewalk(unsigned n, const H5E_error2_t *e, void *ud) {
  estack *s = ud;
  (void)n;
  const char *d = e->desc ? e->desc : "";
  if (s->n == 0) snprintf(s->first, sizeof s->first, "%s", d);
  snprintf(s->last, sizeof s->last, "%s", d);
  s->n++;
  return 0;
}

int gt_h5_fail(gt_err *err, const char *fmt, ...) {
  char what[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  estack s;
  memset(&s, 0, sizeof s);
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, ewalk, &s);
  H5Eclear2(H5E_DEFAULT);
  if (s.n == 0) return gt_fail(err, "%s", what);
  if (s.n == 1 || strcmp(s.first, s.last) == 0)
    return gt_fail(err, "%s (libhdf5: %s)", what, s.first);
  return gt_fail(err, "%s (libhdf5: %s: %s)", what, s.first, s.last);
}

