/* npz.h: NumPy .npz, a zip archive of .npy members (np.savez stores them,
 * np.savez_compressed deflates them; docs/formats/numpy.md#npz). Each member is read
 * and written with the .npy encoding of npy.h; the archive is read through
 * io/zipmap.h and io/zipmember.h, written through libzip. */
#ifndef GT_NPZ_H
#define GT_NPZ_H

#include "formats/npy.h"

/* Read the .npz archive mapped as `file` (path is unused: the mapping is
 * read; may be NULL). Each "<name>.npy" member becomes tensor <name>, in
 * archive order; other members are skipped and listed in
 * meta.other_members (names only). Duplicate member names are an error.
 * m->meta gets arrays = {<name> = {member, version, descr, fortran_order,
 * compression = "stored" | "deflated"}}. Stored members are mapped (CRC-32
 * checked on first use), deflated ones inflated on first use (a declared
 * size deflate cannot reach is refused at open). */
int gt_npz_read(gt_storage *file, const char *path, gt_model *m, gt_err *err);
/* compress: 0 stored (np.savez), 1 deflated (np.savez_compressed). Members
 * are "<name>.npy" in the given order. */
int gt_npz_write(const char *path, const gt_save *s, int compress, gt_err *err);

#endif
