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

/* Read the bundle at prefix into m. Errors name the file and the key. */
int gt_tfbundle_read(const char *prefix, gt_model *m, gt_err *err);

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
