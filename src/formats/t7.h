/* t7.h: Lua Torch7 serialized files (torch.save), read only.
 * Layout, naming and limits: docs/formats/t7.md. */
#ifndef GT_T7_H
#define GT_T7_H

#include "io/model.h"

/* Reads the t7 file mapped as `file` (binary little- or big-endian, or
 * ascii; detected from the first type tag). long_size is the bytes of a
 * binary long (torch7's File:longSize: sizes, strides, offsets, storage
 * and tds sizes, Long storage elements): 8 or 4, or 0 to settle it at
 * the first header holding longs (docs/formats/t7.md; ascii has no long
 * size). A failed read that used a long says the size in its message; a
 * forced size that fails names the other when the file reads with it.
 *
 * Tensors and standalone storages become entries named by their path of
 * keys from the root object, joined with '.' (integer keys in decimal, as
 * Lua has them: "modules.1.weight"); a torch object's table state adds no
 * segment of its own. A root tensor is named "tensor", a root storage
 * "storage". An object met again (same object index) is not read twice: a
 * tensor keeps its first name, a table becomes a reference.
 * Binary storages are views of the mapping (big-endian ones swapped when
 * materialised); ascii storages are decoded into memory here. Tensors on one
 * storage object share one gt_storage.
 *
 * m->meta becomes a MAP:
 *   encoding: "binary-le" | "binary-be" | "ascii";
 *   long_size: 8 | 4, the size the file was read with (binary only);
 *   root: the object tree: tables as MAPs (numbers as floats), tensors and
 *     storages as tensor references, a torch object as OBJECT {__object =
 *     class name, [1] = its state}, a function as OBJECT "t7.function"
 *     {[1] = path, [2] = bytecode length, [3] = upvalues}, an object met
 *     before as OBJECT "t7.ref" {[1] = the path where it was first met};
 *   functions: LIST of the paths of serialized functions (never loaded);
 *   classes: LIST of the torch class names met, in first-met order.
 * Every count and size is checked against the bytes left before use;
 * nesting is capped. On failure m is freed. */
int gt_t7_read(gt_storage *file, gt_model *m, int long_size, gt_err *err);

#endif
