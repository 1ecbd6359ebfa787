/* fileout.h: crash-safe output files.
 *
 * Every writer goes through this: bytes go to a temporary file beside the
 * target (same directory, so rename is atomic), which is fsynced and renamed
 * over the target only when complete; on any failure the temporary file is
 * removed and the target is untouched. A target that is the same file as one
 * the tensors are read from is refused before anything is written. */
#ifndef GT_FILEOUT_H
#define GT_FILEOUT_H

#include <stddef.h>
#include <stdint.h>

#include "io/model.h"

typedef struct gt_out {
  int fd;
  int finished;   /* closed, complete, not yet renamed into place */
  char *tmp;      /* temporary path */
  char *path;     /* final path */
  uint64_t pos;   /* bytes written so far */
  uint64_t done, total;            /* tensor bytes, for progress */
  gt_progress_fn progress;
  void *progress_ctx;
  unsigned char *buf;              /* staging buffer for gt_out_tensor */
  size_t bufsize;
  unsigned char *wbuf;             /* small writes gather here */
  size_t wlen, wcap;
} gt_out;

/* Bytes of the staging buffer gt_out_tensor materialises through. */
#define GT_OUT_BUFSIZE ((size_t)4 << 20)

/* Fails if `path` names the same file (device and inode, symlinks followed)
 * as the mapping any of the tensors rests on (through regions and lazy
 * storages alike), or names a directory. A missing target is fine. */
int gt_out_check_inputs(const char *path, const gt_entry *e, size_t n,
                        gt_err *err);
/* Opens a temporary file beside path (created with mkstemp in the same
 * directory; it gets the target's mode if the target exists, else 0666 less
 * the umask). s may be NULL (no progress); otherwise progress totals the
 * materialised bytes of s's entries. On failure o is left closed (abort is
 * still safe). */
int gt_out_open(gt_out *o, const char *path, const gt_save *s, gt_err *err);
int gt_out_write(gt_out *o, const void *bytes, size_t n, gt_err *err);
/* Writes `pad` zero bytes. */
int gt_out_pad(gt_out *o, size_t pad, gt_err *err);
/* Streams t's elements as t->dtype through the bounded buffer; releases
 * pages of mapped sources it has consumed; reports progress. */
int gt_out_tensor(gt_out *o, const gt_tensor *t, gt_err *err);
/* Flush, fsync, close, rename into place, fsync the directory. Frees what
 * o holds; on failure the temporary file is removed. */
int gt_out_commit(gt_out *o, gt_err *err);
/* The two halves of commit: finish (flush, fsync, close: the complete file
 * waits under its temporary name) and publish (rename, fsync the directory,
 * free). */
int gt_out_finish(gt_out *o, gt_err *err);
int gt_out_publish(gt_out *o, gt_err *err);
/* Commit a multi-file output whose last member, outs[n-1], is the index that
 * makes the set visible (a TF checkpoint's .index, a sharded safetensors
 * index): finish all, remove the existing index, rename the members, then
 * the index. A reader therefore sees the complete old set, no set at all,
 * or the complete new set, never new members under an old index. Frees
 * every outs[i]; on failure the temporary files are removed. */
int gt_out_commit_set(gt_out *outs, size_t n, gt_err *err);
/* Testing: make the next gt_out_commit_set stop before step `step` (0: the
 * removal of the old index, 1..n-1: renaming member step-1, n: renaming the
 * index), leaving the files as a killed writer would. One-shot; -1 turns it
 * off. */
void gt_out_test_crash_before(int step);
/* Close and unlink the temporary file. Frees what o holds. Safe after
 * commit, after a failed open, and twice. */
void gt_out_abort(gt_out *o);

#endif
