/* fileout.c: crash-safe output files (see fileout.h).
 *
 * Life of an output: open makes `.<name>.graft-<pid>-XXXXXX` beside the
 * target (same directory, hence same file system, so rename(2) replaces the
 * target atomically); writes go through a 64 KiB gather buffer (header
 * pieces) or straight to the file (tensor pieces); finish flushes, fsyncs
 * and closes; publish renames and fsyncs the directory so the new name
 * itself survives a crash (commit is both). Until publish renames, the
 * target is untouched; every failure path unlinks the temporary file.
 * Invariant: tmp != NULL and (fd >= 0 or finished) exactly while tmp names
 * a file we created and still own (a zeroed gt_out owns nothing).
 *
 * The writer's pid in the temporary name lets a later open remove the
 * leftovers of writers that were killed: a file `.<name>.graft-<pid>-*`
 * whose pid is no longer a process is garbage. */
#include "io/fileout.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor/copy.h"

#define WBUF_CAP ((size_t)64 << 10)

/* The mapping a storage finally rests on, through regions and lazy
 * storages, whether or not a lazy one copied its bytes: what matters here
 * is which file the tensor is read from. */
static const gt_storage *source_file(const gt_storage *s) {
  while (s && s->kind != GT_STORAGE_MAPPING) s = s->parent;
  return s;
}

int gt_out_check_inputs(const char *path, const gt_entry *e, size_t n,
                        gt_err *err) {
  struct stat st;
  if (stat(path, &st) != 0) return GT_OK; /* nothing there to overwrite */
  if (S_ISDIR(st.st_mode)) return gt_fail(err, "cannot write: is a directory");
  for (size_t i = 0; i < n; i++) {
    const gt_storage *m = source_file(e[i].t.storage);
    if (m && m->dev == st.st_dev && m->ino == st.st_ino)
      return gt_fail(err,
                     "refusing to overwrite the file tensor \"%s\" is read "
                     "from; write to another path",
                     e[i].name);
  }
  return GT_OK;
}

/* The process umask, read without changing it (umask(2) would race with
 * other threads); 022 when /proc is unavailable. */
static mode_t current_umask(void) {
  mode_t mask = 022;
  FILE *f = fopen("/proc/self/status", "re");
  if (!f) return mask;
  char line[256];
  while (fgets(line, sizeof line, f)) {
    unsigned m;
    if (sscanf(line, "Umask: %o", &m) == 1) {
      mask = (mode_t)(m & 0777);
      break;
    }
  }
  fclose(f);
  return mask;
}

/* "<dir>/.<base>.graft-<pid>-XXXXXX" for mkstemp; NULL if path has no
 * file name. */
static char *temp_template(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  size_t dirlen = (size_t)(base - path);
  if (*base == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
    return NULL;
  size_t len = dirlen + 1 + strlen(base) + sizeof ".graft--XXXXXX" + 20;
  char *t = malloc(len);
  if (t)
    snprintf(t, len, "%.*s.%s.graft-%ld-XXXXXX", (int)dirlen, path, base,
             (long)getpid());
  return t;
}

/* Remove `.<base>.graft-<pid>-*` beside path for every pid that is no
 * longer a process (a writer killed before it could clean up). Best effort:
 * an unreadable directory or a file that will not go is left alone. */
static void reap_dead_writers(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path))
                    : strdup(".");
  /* ".<base>.graft-": plen bytes, then the pid's digits. */
  size_t plen = 1 + strlen(base) + strlen(".graft-");
  char *prefix = malloc(plen + 1);
  DIR *d = dir && prefix ? opendir(dir) : NULL;
  if (prefix) snprintf(prefix, plen + 1, ".%s.graft-", base);
  struct dirent *de;
  while (d && (de = readdir(d))) {
    if (strncmp(de->d_name, prefix, plen) != 0) continue;
    const char *digits = de->d_name + plen;
    char *end;
    long pid = strtol(digits, &end, 10);
    if (end == digits || *digits < '0' || *digits > '9' || *end != '-' ||
        pid <= 0 ||
        pid == (long)getpid())
      continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
    (void)unlinkat(dirfd(d), de->d_name, 0);
  }
  if (d) closedir(d);
  free(prefix);
  free(dir);
}

static void release_all(gt_out *o) {
  free(o->tmp);
  free(o->path);
  free(o->buf);
  free(o->wbuf);
  o->tmp = o->path = NULL;
  o->buf = o->wbuf = NULL;
  o->bufsize = o->wlen = o->wcap = 0;
  o->fd = -1;
  o->finished = 0;
}

static uint64_t total_bytes(const gt_save *s) {
  uint64_t total = 0;
  for (size_t i = 0; s && i < s->n; i++)
    total += (uint64_t)gt_tensor_nbytes(&s->entries[i].t);
  return total;
}

int gt_out_open(gt_out *o, const char *path, const gt_save *s, gt_err *err) {
  memset(o, 0, sizeof *o);
  o->fd = -1;
  o->tmp = temp_template(path);
  o->path = strdup(path);
  o->wbuf = malloc(WBUF_CAP);
  if (!o->tmp || !o->path || !o->wbuf) {
    int bad_name = o->path && o->wbuf && !o->tmp;
    release_all(o);
    return bad_name ? gt_fail(err, "cannot write: not a file name")
                    : gt_fail(err, "out of memory");
  }
  o->wcap = WBUF_CAP;
  reap_dead_writers(path);
  o->fd = mkostemp(o->tmp, O_CLOEXEC);
  if (o->fd < 0) {
    int e = errno;
    release_all(o);
    return gt_fail(err, "cannot create a temporary file beside it: %s",
                   strerror(e));
  }
  struct stat st;
  mode_t mode = stat(path, &st) == 0 ? (st.st_mode & 07777)
                                     : (0666 & ~current_umask());
  if (fchmod(o->fd, mode) != 0) {
    int e = errno;
    gt_out_abort(o);
    return gt_fail(err, "cannot set the mode of the temporary file: %s",
                   strerror(e));
  }
  if (s) {
    o->progress = s->progress;
    o->progress_ctx = s->progress_ctx;
    o->total = total_bytes(s);
  }
  return GT_OK;
}

static int write_all(gt_out *o, const unsigned char *p, size_t n, gt_err *err) {
  while (n > 0) {
    ssize_t w = write(o->fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return gt_fail(err, "cannot write: %s", strerror(errno));
    }
    p += w;
    n -= (size_t)w;
  }
  return GT_OK;
}

static int flush(gt_out *o, gt_err *err) {
  if (o->wlen == 0) return GT_OK;
  int rc = write_all(o, o->wbuf, o->wlen, err);
  o->wlen = 0;
  return rc;
}

int gt_out_write(gt_out *o, const void *bytes, size_t n, gt_err *err) {
  if (o->fd < 0) return gt_fail(err, "output is not open");
  if (n <= o->wcap - o->wlen) {
    if (n) memcpy(o->wbuf + o->wlen, bytes, n);
    o->wlen += n;
  } else if (flush(o, err) != GT_OK) {
    return GT_ERR;
  } else if (n < o->wcap) {
    memcpy(o->wbuf, bytes, n);
    o->wlen = n;
  } else if (write_all(o, bytes, n, err) != GT_OK) {
    return GT_ERR;
  }
  o->pos += n;
  return GT_OK;
}

int gt_out_pad(gt_out *o, size_t pad, gt_err *err) {
  static const unsigned char zeros[256];
  while (pad > 0) {
    size_t k = pad < sizeof zeros ? pad : sizeof zeros;
    if (gt_out_write(o, zeros, k, err) != GT_OK) return GT_ERR;
    pad -= k;
  }
  return GT_OK;
}

static int tensor_sink(void *ctx, const void *bytes, size_t n, gt_err *err) {
  gt_out *o = ctx;
  if (gt_out_write(o, bytes, n, err) != GT_OK) return GT_ERR;
  o->done += n;
  if (o->progress) o->progress(o->progress_ctx, o->done, o->total);
  return GT_OK;
}

int gt_out_tensor(gt_out *o, const gt_tensor *t, gt_err *err) {
  if (o->fd < 0) return gt_fail(err, "output is not open");
  if (!o->buf) {
    void *p = NULL;
    if (posix_memalign(&p, 64, GT_OUT_BUFSIZE) != 0)
      return gt_fail(err, "out of memory for the %zu-byte write buffer",
                     GT_OUT_BUFSIZE);
    o->buf = p;
    o->bufsize = GT_OUT_BUFSIZE;
  }
  uint64_t start = o->pos;
  if (gt_stream(t, t->dtype, o->buf, o->bufsize, tensor_sink, o, 1, err) !=
      GT_OK)
    return GT_ERR;
  /* The header already promised this many bytes. */
  if (o->pos - start != (uint64_t)gt_tensor_nbytes(t))
    return gt_fail(err, "wrote %llu bytes for a tensor of %lld bytes",
                   (unsigned long long)(o->pos - start),
                   (long long)gt_tensor_nbytes(t));
  return GT_OK;
}

/* fsync the directory holding path so the rename itself is durable. Some
 * file systems cannot fsync directories (EINVAL); that is not an error. */
static int sync_dir(const char *path, gt_err *err) {
  const char *slash = strrchr(path, '/');
  char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path))
                    : strdup(".");
  if (!dir) return gt_fail(err, "out of memory");
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(dir);
  if (fd < 0) return GT_OK; /* unreadable directory: nothing more to do */
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  if (rc != 0 && e != EINVAL && e != EROFS)
    return gt_fail(err, "written, but syncing its directory failed: %s",
                   strerror(e));
  return GT_OK;
}

int gt_out_finish(gt_out *o, gt_err *err) {
  if (o->fd < 0) {
    if (!o->finished) release_all(o);
    return o->finished ? GT_OK : gt_fail(err, "output is not open");
  }
  if (flush(o, err) != GT_OK) goto fail;
  if (fsync(o->fd) != 0) {
    gt_fail(err, "cannot sync: %s", strerror(errno));
    goto fail;
  }
  int fd = o->fd;
  o->fd = -1;
  o->finished = 1;
  if (close(fd) != 0) {
    gt_fail(err, "cannot close: %s", strerror(errno));
    goto fail;
  }
  return GT_OK;
fail:
  gt_out_abort(o);
  return GT_ERR;
}

int gt_out_publish(gt_out *o, gt_err *err) {
  if (!o->finished) {
    gt_out_abort(o);
    return gt_fail(err, "output is not finished");
  }
  if (rename(o->tmp, o->path) != 0) {
    gt_fail(err, "cannot rename the temporary file into place: %s",
            strerror(errno));
    gt_out_abort(o);
    return GT_ERR;
  }
  o->finished = 0;
  int rc = sync_dir(o->path, err);
  release_all(o);
  return rc;
}

int gt_out_commit(gt_out *o, gt_err *err) {
  if (gt_out_finish(o, err) != GT_OK) return GT_ERR;
  return gt_out_publish(o, err);
}

/* Testing: stop the next gt_out_commit_set before this step (as a kill
 * would); one-shot. */
static int crash_before_step = -1;

void gt_out_test_crash_before(int step) { crash_before_step = step; }

/* Steps: 0 unlinks the old index, 1..n-1 rename the members, n renames the
 * index. Before step 0 and after step n the set at the target is complete
 * (old, then new); in between there is no index, so no checkpoint. */
int gt_out_commit_set(gt_out *outs, size_t n, gt_err *err) {
  int rc = GT_OK;
  for (size_t i = 0; i < n && rc == GT_OK; i++)
    rc = gt_out_finish(&outs[i], err);
  if (rc != GT_OK || n == 0) goto cleanup;
  gt_out *index = &outs[n - 1];
  for (size_t step = 0; step <= n && rc == GT_OK; step++) {
    if ((int)step == crash_before_step) {
      crash_before_step = -1;
      for (size_t i = 0; i < n; i++) release_all(&outs[i]);
      return gt_fail(err, "testing: stopped before commit step %zu", step);
    }
    if (step == 0) {
      if (unlink(index->path) != 0 && errno != ENOENT) {
        rc = gt_fail(err, "cannot remove the old %s: %s", index->path,
                     strerror(errno));
      } else {
        rc = sync_dir(index->path, err);
      }
    } else if (step < n) {
      rc = gt_out_publish(&outs[step - 1], err);
    } else {
      rc = gt_out_publish(index, err);
    }
  }
cleanup:
  for (size_t i = 0; i < n; i++) gt_out_abort(&outs[i]);
  return rc;
}

void gt_out_abort(gt_out *o) {
  if (o->tmp && (o->fd >= 0 || o->finished)) {
    if (o->fd >= 0) close(o->fd);
    unlink(o->tmp);
  }
  release_all(o);
}
