/* graphdef.h: GraphDef nodes and TensorProtos as both the reader (graph.c)
 * and the patcher (graph_patch.c) walk them; private to src/formats/tf.
 *
 * Field numbers (docs/formats/tfgraph.md): GraphDef node = 1, versions = 4;
 * NodeDef name = 1, op = 2, attr = 5 (map entries key = 1, value = 2);
 * AttrValue type = 6, shape = 7, tensor = 8; TensorProto tensor_content =
 * 4. Offsets are found with pbwire, so a node's records can be spliced. */
#ifndef GT_TF_GRAPHDEF_H
#define GT_TF_GRAPHDEF_H

#include <stdint.h>
#include <string.h>

#include "io/pbwire.h"
#include "tensor.pb-c.h"
#include "tensor/storage.h"
#include "tensor/tensor.h"

#define GT_TFG_NAME_SHOWN 200 /* bytes of a node name quoted in errors */

/* What one NodeDef says that graft uses, with the records for splicing:
 * rec is the node in its GraphDef, entry the attr map entry "value", value
 * its AttrValue record and tensor the TensorProto record in that. */
typedef struct gt_tf_node {
  pb_rec rec;
  const uint8_t *name, *op;
  size_t name_len, op_len;
  int has_tensor;
  pb_rec entry, value, tensor;
  int has_dtype;
  uint64_t dtype;   /* attr "dtype" */
  int has_shape;
  pb_rec shape;     /* attr "shape": a TensorShapeProto record */
} gt_tf_node;

typedef int (*gt_tf_node_fn)(void *ctx, const gt_tf_node *nd, gt_err *err);

/* Calls fn for every node of the GraphDef buf[start, end); *producer gets
 * versions.producer (left alone when absent). fn's errors are prefixed
 * with the node's name. */
int gt_tfg_walk(const uint8_t *buf, size_t start, size_t end, gt_tf_node_fn fn,
                void *ctx, int64_t *producer, gt_err *err);

/* Whether p[0, n) is the text s. */
static inline int gt_tfg_streq(const uint8_t *p, size_t n, const char *s) {
  return n == strlen(s) && memcmp(p, s, n) == 0;
}

/* The name graft shows for a TensorFlow DataType value ("float32", ...;
 * reference types name their base type; "unknown" past the enum). */
const char *gt_tfg_type_name(uint64_t v);
/* The graft dtype holding DataType v (GT_ERR when there is none). */
int gt_tfg_dtype(uint64_t v, gt_dtype *dt);

/* The TensorProto record tr of file decoded by protobuf-c without its
 * tensor_content (found in place instead) and the resource / variant
 * fields (not read; variant nests TensorProtos). *content gets the last
 * tensor_content record, *has_content whether there is one. NULL on
 * error; free with protobuf_c_message_free_unpacked. */
Tensorflow__TensorProto *gt_tfg_unpack_tensor(const gt_storage *file,
                                              const pb_rec *tr, pb_rec *content,
                                              int *has_content, gt_err *err);
/* The shape of tp (none: a scalar); at most GT_MAXDIM dimensions, each
 * >= 0, unknown rank refused. */
int gt_tfg_shape(const Tensorflow__TensorProto *tp, int *ndim, int64_t *shape,
                 gt_err *err);

#endif
