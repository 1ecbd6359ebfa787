/* format.h: the registry of formats graft.core reads and writes.
 *
 * One row per format name: how to read it into a gt_model and how to write
 * a gt_save as it. The binding (src/lgraft_io.c) looks formats up here and
 * holds no format names of its own; a new format is one C file pair under
 * src/formats plus one row in format.c.
 *
 * Every writer graft.core has is a row here, reached through core.write;
 * there are no per-format write bindings. Writers that need more than the
 * tensors declare one typed input (the `input` kind of their row); the
 * binding fills the matching member of gt_write_input from the Lua option
 * of the same name (see lgraft_io.c).
 *
 * Before a writer runs, the binding refuses a `path` that a tensor is read
 * from (gt_out_check_inputs) and names `path` in the writer's errors. A row
 * with `own_files` set writes a set of files from `path` (a TF bundle
 * prefix) or copies another file (a graph patch's base): its writer checks
 * every file it writes and names in its errors the file concerned, so the
 * binding does neither. */
#ifndef GT_FORMAT_H
#define GT_FORMAT_H

#include "io/model.h"
#include "tensor/storage.h"

/* The extra input a writer takes, beside the entries. */
typedef enum gt_input_kind {
  GT_IN_NONE,
  GT_IN_STRINGS,   /* "metadata": a MAP of string -> string, or NULL */
  GT_IN_TREE,      /* "tree": the value tree to write, or NULL */
  GT_IN_JSON,      /* "layout": JSON text, or NULL */
  GT_IN_FLAG,      /* "compress": a boolean */
  GT_IN_PLAN,      /* "plan": which shard file each tensor goes to */
  GT_IN_BASE,      /* "base": the path of the file the output copies */
  GT_IN_HEADER,    /* "header": key/values, stored types and alignment */
} gt_input_kind;

/* How a writer of several data files spreads the entries over them.
 * Default (no option): {1, NULL}. */
typedef struct gt_shard_plan {
  long long num_shards;  /* as given: the writer checks its range */
  const int *shard_of;   /* per entry of the save; NULL: all in shard 0 */
} gt_shard_plan;

/* A self-describing header written before the tensors (GGUF). Default (no
 * option): {NULL, each entry's own dtype, 32}. */
typedef struct gt_kv_header {
  const gt_value *kv;     /* LIST of {key, type, value [, item_type]} MAPs,
                             in file order; NULL: none */
  const gt_dtype *types;  /* per entry of the save (never NULL): the type to
                             store it as, its own or Q8_0 / Q4_0 to have
                             the writer quantise it (gguf.h) */
  uint32_t alignment;     /* of the data section and of every tensor */
} gt_kv_header;

/* A tagged union: `kind` says which member is set. */
typedef struct gt_write_input {
  gt_input_kind kind;
  union {
    const gt_value *strings;
    const gt_value *tree;
    struct {
      const char *text;
      size_t len;
    } json;
    int flag;
    gt_shard_plan plan;
    const char *base;     /* NULL: none given */
    gt_kv_header header;
  } u;
} gt_write_input;

/* Read `file` (the mapped file at `path`; NULL for formats read by path)
 * into m. */
typedef int (*gt_read_fn)(gt_storage *file, const char *path, gt_model *m,
                          gt_err *err);
typedef int (*gt_write_fn)(const char *path, const gt_save *s,
                           const gt_write_input *in, gt_err *err);

typedef struct gt_format {
  const char *name;
  gt_read_fn read;         /* NULL: not read by graft.core */
  int by_path;             /* read from its path (several files), not mapped */
  gt_write_fn write;       /* NULL: not written by graft.core */
  gt_input_kind input;     /* what write takes beside the entries */
  int own_files;           /* write checks and names its own files (above) */
} gt_format;

/* The i-th row (0-based), or NULL past the last. */
const gt_format *gt_format_at(size_t i);
/* The row named `name`, or NULL. */
const gt_format *gt_format_find(const char *name);
/* The Lua option name of an input kind ("metadata", "tree", ...), or NULL
 * for GT_IN_NONE. */
const char *gt_input_name(gt_input_kind kind);

#endif
