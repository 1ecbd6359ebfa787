/* cap.h: the overall cap on one allocation sized by data (GRAFT_MAX_BYTES).
 *
 * Readers first check a declared size against what the file can hold (its
 * length, compressed size x the format's maximum ratio); this cap bounds
 * what is left: sizes that a file may legally declare but that no user
 * wants materialised by accident (a repeat-last TensorProto with a huge
 * shape, a zero-stride view of a 16-byte storage). Every heap storage
 * (gt_storage_new, lazy loaders) and every reader buffer sized by file data
 * goes through gt_cap_check before asking malloc.
 *
 * The cap is read once from the environment variable GRAFT_MAX_BYTES: a
 * positive decimal integer with an optional binary suffix K, M, G or T
 * (e.g. "512M"). Unset or empty: the machine's physical memory (no single
 * allocation larger than all RAM can be what the user meant). A value that
 * does not parse makes every check fail with a message saying so. */
#ifndef GT_CAP_H
#define GT_CAP_H

#include <stdint.h>

#include "tensor/error.h"

/* The cap in bytes (UINT64_MAX when physical memory is unknown). */
uint64_t gt_max_bytes(void);
/* Override the cap (tests); 0 re-reads the environment on next use. */
void gt_set_max_bytes(uint64_t bytes);
/* GT_OK when `bytes` may be allocated, else fails with
 * "needs N bytes, over the GRAFT_MAX_BYTES cap of M bytes". */
int gt_cap_check(uint64_t bytes, gt_err *err);

#endif
