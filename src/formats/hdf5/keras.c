/* keras.c: the `.keras` zip (see keras.h).
 *
 * Members are found through zipmap (validated central directory and local
 * headers) and read through zipmember. The weights member must be stored
 * (what Keras writes) or deflated; its bytes go to the HDF5 reader as an
 * image. The stored member's CRC is not checked at open, since that would
 * read every weight; a deflated member is inflated whole anyway and its CRC
 * is checked. */
#include "formats/hdf5/keras.h"

#include <stdlib.h>
#include <string.h>

#include "formats/hdf5/hdf5.h"
#include "io/zipmember.h"

#define WEIGHTS "model.weights.h5"
#define MAX_JSON (64u << 20) /* config.json larger than this is refused */

static const gt_zip_member *find(const gt_zip_dir *d, const char *name) {
  for (size_t i = 0; i < d->n; i++)
    if (strcmp(d->m[i].name, name) == 0) return &d->m[i];
  return NULL;
}

int gt_keras_zip_sniff(const unsigned char *p, uint64_t len) {
  gt_zip_dir d;
  gt_err e;
  if (!gt_zip_sniff(p, len) || gt_zip_dir_read(p, len, &d, &e) != GT_OK)
    return 0;
  int yes = find(&d, WEIGHTS) || find(&d, "config.json");
  gt_zip_dir_free(&d);
  return yes;
}

/* The member's bytes: a window of the archive when stored (its CRC is not
 * checked: that would read every weight at open), else inflated (CRC
 * checked) by zipmember. */
static gt_storage *member_bytes(gt_storage *file, const gt_zip_member *mm,
                                gt_err *err) {
  return gt_zip_member_read(file, mm, 0, err);
}

/* A small JSON member's text into meta[key]. */
static int text_member(gt_storage *file, const gt_zip_dir *d, const char *name,
                       const char *key, gt_value *meta, gt_err *err) {
  const gt_zip_member *mm = find(d, name);
  if (!mm) return GT_OK;
  if (mm->size > MAX_JSON) return gt_fail(err, "%s: larger than %u bytes", name, MAX_JSON);
  gt_storage *s = member_bytes(file, mm, err);
  if (!s) return GT_ERR;
  int rc = gt_value_setk(meta, key, gt_value_str((const char *)s->data, s->size));
  gt_storage_release(s);
  return rc == GT_OK ? GT_OK : gt_fail(err, "out of memory");
}

int gt_keras_zip_read(gt_storage *file, gt_model *m, gt_err *err) {
  gt_zip_dir d;
  if (gt_storage_ready(file, err) != GT_OK) return GT_ERR;
  if (gt_zip_dir_read_file(file, &d, err) != GT_OK) return GT_ERR;
  int rc = GT_ERR;
  const gt_zip_member *w = find(&d, WEIGHTS);
  if (!w) {
    if (find(&d, "model.weights.npz"))
      gt_fail(err, "weights are stored as model.weights.npz; open that member with "
                   "format \"npz\" after extracting it");
    else
      gt_fail(err, "not a .keras archive: no " WEIGHTS " member");
    goto out;
  }
  gt_storage *img = member_bytes(file, w, err);
  if (!img) goto out;
  uint64_t base;
  if (!gt_hdf5_sniff(img->data, img->size, &base)) {
    gt_storage_release(img);
    gt_fail(err, WEIGHTS ": not an HDF5 file (no HDF5 signature)");
    goto out;
  }
  rc = gt_hdf5_read(img, m, err);
  gt_storage_release(img);
  if (rc != GT_OK) {
    gt_wrap(err, WEIGHTS);
    goto out;
  }
  rc = text_member(file, &d, "config.json", "config_json", m->meta, err);
  if (rc == GT_OK)
    rc = text_member(file, &d, "metadata.json", "metadata_json", m->meta, err);
  m->format = "keras_zip";
out:
  gt_zip_dir_free(&d);
  return rc;
}
