/* tfbundle.h: TensorFlow tensor bundles ("checkpoint V2", docs/formats/tf.md#tensor-bundles).
 *
 * A bundle with prefix P is P.index (a table, tftable.h: key "" ->
 * BundleHeaderProto, other keys -> BundleEntryProto) and the data shards
 * P.data-%05d-of-%05d.
 *
 * Reading parses the index only and maps every shard. Each tensor is a
 * lazy storage over its shard: on first materialisation its masked crc32c
 * is checked, then the bytes are used in place (copied only when the offset
 * is not aligned for the element type). String tensors (varint lengths, a
 * masked length checksum, the bytes) become gt_str views into the shard.
 * Partitioned variables (an entry with `slices`) are reassembled from their
 * slice entries on first use; slice keys are not listed. Tensors of types
 * graft cannot hold (variant, resource, 4-bit ...) are left out and listed
 * in meta.skipped. Tensors are listed in data order (shard, offset), the
 * order TensorFlow wrote them.
 *
 * m->meta = {version = "v2", num_shards, endianness = "little" | "big",
 *   producer, min_consumer, index_snappy_blocks, skipped = {name = "DT_..."},
 *   entries = {name = {shard_id, offset, size, crc32c, dtype = "DT_..."}},
 *   partitioned = {name = {{start = {...}, length = {...}}, ...}},
 *   object_graph = <TrackableObjectGraph as tables> (when the bundle has
 *   _CHECKPOINTABLE_OBJECT_GRAPH: nodes[i] is node id i-1, each
 *   {children = {{node_id, local_name}}, attributes = {{name, full_name,
 *   checkpoint_key}}, slot_variables = {{original_variable_node_id,
 *   slot_name, slot_variable_node_id}}})}.
 *
 * Writing produces what TensorFlow's BundleWriter writes: data shards first
 * (tensors back to back in the given order, no padding), then P.index (header
 * {num_shards, version {producer: 1}}, entries sorted by key, each with its
 * masked crc32c; TF's table options), each file atomically. Rewriting a
 * bundle read from uncompressed files, in its order and shard layout,
 * reproduces its bytes. */
#ifndef GT_TFBUNDLE_H
#define GT_TFBUNDLE_H

#include "io/model.h"

/* Most shards a bundle may name (a guard against absurd headers). */
#define GT_TFBUNDLE_MAX_SHARDS 100000

/* "<prefix>.index" / "<prefix>.data-00000-of-00001" (malloc'd). */
char *gt_tfbundle_index_path(const char *prefix);
char *gt_tfbundle_data_path(const char *prefix, int shard, int num_shards);

/* Read the bundle at prefix into m (every tensor made: built on the
 * index below). Errors name the file and the key. */
int gt_tfbundle_read(const char *prefix, gt_model *m, gt_err *err);

/* The index of a bundle in compact form, for opening big indexes (10^6
 * entries) cheaply: one 48-byte record per entry (key order), one key
 * blob, one pool of dims: about 75 bytes an entry for a short name. Opening
 * reads the table, makes every check reading a tensor would make (names,
 * dtypes, shapes, ranges in the shards, sizes), maps the shards, builds the
 * meta (all but entries, see above) and the partitioned variables, then
 * drops the table. A tensor's storage and view are made on demand
 * (gt_tfindex_tensor), its meta.entries record too (gt_tfindex_entry).
 * Records are numbered 0..nentries-1 in key order; listed tensors are the
 * records of tensors graft lists (skipped dtypes are not), numbered
 * 0..count-1 in data order. */
typedef struct gt_tfindex gt_tfindex;

int gt_tfindex_open(const char *prefix, gt_tfindex **out, gt_err *err);
void gt_tfindex_free(gt_tfindex *x);
const char *gt_tfindex_path(const gt_tfindex *x);   /* "<prefix>.index" */
size_t gt_tfindex_count(const gt_tfindex *x);       /* listed tensors */
size_t gt_tfindex_nentries(const gt_tfindex *x);    /* records */
/* The record of listed tensor k < count. */
size_t gt_tfindex_listed(const gt_tfindex *x, size_t k);
/* Record r's key (not NUL-terminated; no NUL inside, < 4096 bytes). */
const char *gt_tfindex_key(const gt_tfindex *x, size_t r, size_t *len);
/* The record whose key is key[0, len), or -1. */
long gt_tfindex_find(const gt_tfindex *x, const char *key, size_t len);

typedef struct gt_tfentry {
  const char *key;       /* into the index */
  size_t klen;
  int shard_id;
  int64_t offset, size;
  uint32_t crc32c;       /* masked, as stored */
  int tf_dtype;          /* TF DataType */
  int listed, sliced;    /* a listed tensor; a partitioned variable */
} gt_tfentry;
void gt_tfindex_entry(const gt_tfindex *x, size_t r, gt_tfentry *out);

/* dtype, ndim and shape of listed record r, with storage NULL (nothing is
 * made); GT_ERR when r is not listed. */
int gt_tfindex_peek(const gt_tfindex *x, size_t r, gt_tensor *out);
/* The tensor of listed record r: a new view owning a new storage reference
 * (numeric entries: crc32c checked on first use; strings parsed on first
 * use). Only allocation can fail here: every check was made at open. */
int gt_tfindex_tensor(const gt_tfindex *x, size_t r, gt_tensor *out,
                      gt_err *err);
/* The meta but entries (a MAP; the caller owns it; NULL when taken). */
gt_value *gt_tfindex_take_meta(gt_tfindex *x);

/* Check the crc32c of every entry (slices included) and every string
 * tensor's length checksum; *checked gets the number of entries checked. */
int gt_tfbundle_verify(const char *prefix, size_t *checked, gt_err *err);

typedef struct gt_tfbundle_opts {
  int num_shards;        /* >= 1 */
  const int *shard_of;   /* per entry of the save, in [0, num_shards); NULL: 0 */
} gt_tfbundle_opts;

int gt_tfbundle_write(const char *prefix, const gt_save *s,
                      const gt_tfbundle_opts *o, gt_err *err);

#endif
