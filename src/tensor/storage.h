/* storage.h: refcounted byte buffers that tensor views point into.
 *
 * A storage is one of
 *   - heap:    bytes malloc'd (64-byte aligned) and owned here;
 *   - mapping: a whole file mmapped read-only (root of the regions below);
 *   - region:  a [offset, offset+size) window of a parent storage, usually a
 *              mapping, that keeps the parent alive;
 *   - lazy:    bytes produced on first use by a loader (a deflated zip member,
 *              an unaligned region copied to aligned memory, a checksum to
 *              verify before first use), then owned here.
 * Invariants: refs >= 1 while reachable; once gt_storage_ready() succeeded,
 * data != NULL or size == 0, and data[0..size) is readable for the storage's
 * lifetime. Storages are never written through once shared with a view
 * except heap storages made by the core for new results. */
#ifndef GT_STORAGE_H
#define GT_STORAGE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tensor/error.h"

typedef struct gt_storage gt_storage;

/* Loader for lazy storages: must set s->data (or fail). It may read s->ctx
 * and s->parent. Called at most once successfully. */
typedef int (*gt_load_fn)(gt_storage *s, gt_err *err);
/* Frees what ctx owns; called once when the last reference goes. */
typedef void (*gt_free_fn)(void *ctx);

struct gt_storage {
  int refs;
  int kind;                /* GT_STORAGE_* */
  unsigned char *data;     /* NULL until loaded for lazy storages */
  size_t size;             /* bytes */
  gt_storage *parent;      /* retained; NULL for roots */
  gt_load_fn load;         /* lazy only; cleared after success */
  void *ctx;               /* loader / owner context */
  gt_free_fn free_ctx;
  int owns_data;           /* data was malloc'd by us (heap, loaded lazy) */
  /* mapping only: */
  dev_t dev;
  ino_t ino;
  char *path;
  int fd;                  /* the mapped file, open read-only; -1 if none */
};

enum { GT_STORAGE_HEAP, GT_STORAGE_MAPPING, GT_STORAGE_REGION,
       GT_STORAGE_LAZY };

/* New heap storage of `size` bytes, 64-byte aligned, zero-filled when zero. */
gt_storage *gt_storage_new(size_t size, int zero, gt_err *err);
/* Map `path` read-only. An empty file gives a mapping of size 0. */
gt_storage *gt_storage_map(const char *path, gt_err *err);
/* Window into parent (retained). Fails if out of bounds. */
gt_storage *gt_storage_region(gt_storage *parent, uint64_t offset,
                              uint64_t size, gt_err *err);
/* The bytes [offset, offset+size) of parent for a tensor whose elements
 * need `align`-byte alignment: a region when they are aligned (or size is
 * 0), else a lazy storage over that region that copies them into aligned
 * memory on first use, so no kernel makes a misaligned access. */
gt_storage *gt_storage_aligned(gt_storage *parent, uint64_t offset,
                               uint64_t size, size_t align, gt_err *err);
/* Lazy storage of `size` bytes whose bytes come from load(). ctx is freed by
 * free_ctx (may be NULL). parent (may be NULL) is retained. */
gt_storage *gt_storage_lazy(size_t size, gt_storage *parent, gt_load_fn load,
                            void *ctx, gt_free_fn free_ctx, gt_err *err);
/* A phantom: a lazy storage of `size` bytes that never has any (its
 * loader always fails with GT_PHANTOM_MSG). Tensors on phantoms carry a
 * shape and a dtype only: a dry run passes them to transforms so views,
 * casts and arithmetic give the result's shape and dtype while anything
 * that needs the values fails instead of reading a file. */
gt_storage *gt_storage_phantom(size_t size, gt_err *err);
int gt_storage_is_phantom(const gt_storage *s);
#define GT_PHANTOM_MSG "no data: a dry run's stand-in has a shape and a dtype only"
/* Allocate s->data for a lazy loader (64-byte aligned, owned by s). */
int gt_storage_alloc_data(gt_storage *s, gt_err *err);

/* Path of the file mapping s is (a window of), or NULL (heap data). */
const char *gt_storage_origin(const gt_storage *s);

void gt_storage_retain(gt_storage *s);
void gt_storage_release(gt_storage *s);

/* Make sure data is present (runs the loader once). */
int gt_storage_ready(gt_storage *s, gt_err *err);

/* Tell the kernel that the bytes [off, off+len) of s will not be read
 * again soon (file-backed pages are dropped from RSS; they are re-read from
 * the file if used later). No-op for heap data. Index readers that touch
 * scattered bytes of a big mapped file (HDF5 object headers) call it over
 * the whole file: one touched byte may map a whole large folio. */
void gt_storage_done_with(const gt_storage *s, uint64_t off, uint64_t len);

/* Copies s's bytes [off, off + n) into buf. For a file mapping this reads
 * the file (pread) instead of touching the mapping: an index reader that
 * visits a few bytes per tensor across the file (zip local headers) would
 * otherwise fault in a whole large folio around each, costing page-table
 * work and resident memory. Fails if the range is past the end. */
int gt_storage_pread(const gt_storage *s, void *buf, size_t n, uint64_t off,
                     gt_err *err);

#endif
