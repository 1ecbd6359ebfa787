#include "tensor/storage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor/cap.h"

static gt_storage *alloc_header(int kind, gt_err *err) {
  gt_storage *s = calloc(1, sizeof *s);
  if (!s) {
    gt_fail(err, "out of memory");
    return NULL;
  }
  s->refs = 1;
  s->kind = kind;
  s->fd = -1;
  return s;
}

static void *aligned_bytes(size_t size, int zero) {
  void *p = NULL;
  /* posix_memalign(0) may return NULL; keep a valid pointer for size 0. */
  if (posix_memalign(&p, 64, size ? size : 64) != 0) return NULL;
  if (zero) memset(p, 0, size);
  return p;
}

gt_storage *gt_storage_new(size_t size, int zero, gt_err *err) {
  if (gt_cap_check(size, err) != GT_OK) return NULL;
  gt_storage *s = alloc_header(GT_STORAGE_HEAP, err);
  if (!s) return NULL;
  s->data = aligned_bytes(size, zero);
  if (!s->data) {
    free(s);
    gt_fail(err, "out of memory allocating %zu bytes", size);
    return NULL;
  }
  s->size = size;
  s->owns_data = 1;
  return s;
}

gt_storage *gt_storage_map(const char *path, gt_err *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    gt_fail(err, "cannot open: %s", strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    gt_fail(err, "cannot stat: %s", strerror(errno));
    close(fd);
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    gt_fail(err, "not a regular file");
    close(fd);
    return NULL;
  }
  gt_storage *s = alloc_header(GT_STORAGE_MAPPING, err);
  if (!s) {
    close(fd);
    return NULL;
  }
  s->size = (size_t)st.st_size;
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  s->path = strdup(path);
  if (s->size > 0) {
    void *p = mmap(NULL, s->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      gt_fail(err, "cannot map: %s", strerror(errno));
      close(fd);
      free(s->path);
      free(s);
      return NULL;
    }
    s->data = p;
  } else {
    static unsigned char empty[1];
    s->data = empty;
  }
  s->fd = fd;
  return s;
}

gt_storage *gt_storage_region(gt_storage *parent, uint64_t offset,
                              uint64_t size, gt_err *err) {
  uint64_t end;
  if (gt_add_u64(offset, size, (unsigned long long *)&end) || end > parent->size) {
    gt_fail(err, "byte range [%llu, +%llu) is past the end (%zu bytes)",
            (unsigned long long)offset, (unsigned long long)size,
            parent->size);
    return NULL;
  }
  gt_storage *s = alloc_header(GT_STORAGE_REGION, err);
  if (!s) return NULL;
  if (gt_storage_ready(parent, err) != GT_OK) {
    free(s);
    return NULL;
  }
  s->data = parent->data + offset;
  s->size = (size_t)size;
  s->parent = parent;
  gt_storage_retain(parent);
  return s;
}

gt_storage *gt_storage_lazy(size_t size, gt_storage *parent, gt_load_fn load,
                            void *ctx, gt_free_fn free_ctx, gt_err *err) {
  gt_storage *s = alloc_header(GT_STORAGE_LAZY, err);
  if (!s) {
    if (free_ctx) free_ctx(ctx);
    return NULL;
  }
  s->size = size;
  s->load = load;
  s->ctx = ctx;
  s->free_ctx = free_ctx;
  s->parent = parent;
  if (parent) gt_storage_retain(parent);
  return s;
}

/* A phantom's loader: there are no bytes, ever. */
static int load_phantom(gt_storage *s, gt_err *err) {
  (void)s;
  return gt_fail(err, "%s", GT_PHANTOM_MSG);
}

gt_storage *gt_storage_phantom(size_t size, gt_err *err) {
  return gt_storage_lazy(size, NULL, load_phantom, NULL, NULL, err);
}

int gt_storage_is_phantom(const gt_storage *s) {
  return s && s->kind == GT_STORAGE_LAZY && s->load == load_phantom;
}

int gt_storage_alloc_data(gt_storage *s, gt_err *err) {
  if (gt_cap_check(s->size, err) != GT_OK) return GT_ERR;
  s->data = aligned_bytes(s->size, 0);
  if (!s->data) return gt_fail(err, "out of memory allocating %zu bytes", s->size);
  s->owns_data = 1;
  return GT_OK;
}

/* Loader of gt_storage_aligned: the parent is the misaligned region. */
static int load_aligned_copy(gt_storage *s, gt_err *err) {
  if (gt_storage_ready(s->parent, err) != GT_OK) return GT_ERR;
  if (gt_storage_alloc_data(s, err) != GT_OK) return GT_ERR;
  if (s->size) memcpy(s->data, s->parent->data, s->size);
  return GT_OK;
}

gt_storage *gt_storage_aligned(gt_storage *parent, uint64_t offset,
                               uint64_t size, size_t align, gt_err *err) {
  gt_storage *r = gt_storage_region(parent, offset, size, err);
  if (!r || size == 0 || align <= 1 || (uintptr_t)r->data % align == 0) return r;
  gt_storage *s = gt_storage_lazy((size_t)size, r, load_aligned_copy, NULL, NULL, err);
  gt_storage_release(r);
  return s;
}

const char *gt_storage_origin(const gt_storage *s) {
  while (s && !s->path) s = s->parent;
  return s ? s->path : NULL;
}

void gt_storage_retain(gt_storage *s) { s->refs++; }

void gt_storage_release(gt_storage *s) {
  while (s && --s->refs == 0) {
    gt_storage *parent = s->parent;
    if (s->free_ctx) s->free_ctx(s->ctx);
    if (s->kind == GT_STORAGE_MAPPING) {
      if (s->size > 0) munmap(s->data, s->size);
      if (s->fd >= 0) close(s->fd);
      free(s->path);
    } else if (s->owns_data) {
      free(s->data);
    }
    free(s);
    s = parent;
  }
}

int gt_storage_ready(gt_storage *s, gt_err *err) {
  if (!s->load) return GT_OK;
  if (s->load(s, err) != GT_OK) {
    if (s->owns_data) {
      free(s->data);
      s->data = NULL;
      s->owns_data = 0;
    }
    /* Name the file the bytes come from unless the loader did. */
    const char *path = gt_storage_origin(s);
    if (path && err && !strstr(err->msg, path))
      gt_wrap(err, "%.300s", path);
    return GT_ERR;
  }
  s->load = NULL;
  return GT_OK;
}

/* The mapping whose pages hold s's bytes: through regions, and through
 * loaded lazy storages whose loader pointed their data into the mapping
 * instead of copying (stored zip members checked by CRC: npz, torch). */
static const gt_storage *pages_of(const gt_storage *s) {
  const gt_storage *m = s;
  while (m && m->kind != GT_STORAGE_MAPPING) {
    if (m->kind == GT_STORAGE_LAZY && (m->load || m->owns_data)) return NULL;
    if (m->kind != GT_STORAGE_REGION && m->kind != GT_STORAGE_LAZY) return NULL;
    m = m->parent;
  }
  if (!m || !m->data || !s->data || s->data < m->data ||
      s->size > m->size || (size_t)(s->data - m->data) > m->size - s->size)
    return NULL;
  return m;
}

void gt_storage_done_with(const gt_storage *s, uint64_t off, uint64_t len) {
  const gt_storage *root = pages_of(s);
  if (!root || !s->data || root->size == 0) return;
  long pg = sysconf(_SC_PAGESIZE);
  uintptr_t a = (uintptr_t)(s->data + off), b = a + len;
  uintptr_t lo = (a + pg - 1) & ~(uintptr_t)(pg - 1), hi = b & ~(uintptr_t)(pg - 1);
  if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

int gt_storage_pread(const gt_storage *s, void *buf, size_t n, uint64_t off,
                     gt_err *err) {
  if (off > s->size || n > s->size - off)
    return gt_fail(err, "%zu bytes at offset %llu are past the end (%zu "
                        "bytes)", n, (unsigned long long)off, s->size);
  if (s->kind != GT_STORAGE_MAPPING || s->fd < 0) {
    if (n) memcpy(buf, s->data + off, n);
    return GT_OK;
  }
  unsigned char *b = buf;
  while (n > 0) {
    ssize_t r = pread(s->fd, b, n, (off_t)off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      return gt_fail(err, "cannot read %zu bytes at offset %llu: %s", n,
                     (unsigned long long)off,
                     r < 0 ? strerror(errno) : "the file shrank");
    b += r;
    n -= (size_t)r;
    off += (uint64_t)r;
  }
  return GT_OK;
}
