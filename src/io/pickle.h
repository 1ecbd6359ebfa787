/* pickle.h: a pickle interpreter that never executes anything.
 *
 * gt_pickle_load turns one pickle (protocols 0 to 5, docs/formats/torch.md#pickle-opcodes) into a
 * gt_value tree. Globals are only names: a GLOBAL / STACK_GLOBAL pushes a
 * GT_V_OBJECT naming "module.name"; calling it (REDUCE, NEWOBJ, NEWOBJ_EX,
 * INST, OBJ) makes an inert instance placeholder holding its arguments, and
 * BUILD / SETITEM(S) / APPEND(S) on it only record their operands. A few
 * constructors of plain data are interpreted here (collections.OrderedDict,
 * builtins dict/list/set/frozenset/bytearray/bytes, _codecs.encode,
 * torch.Size, torch.device, argparse.Namespace); everything else is left to
 * the caller's hooks (torch.c turns tensor rebuilds into GT_V_TENSOR leaves)
 * or stays a placeholder.
 *
 * Shape of the result tree (conventions callers rely on):
 *   GT_V_STR     i = 0 text (UTF-8 as found), i = 1 bytes. A bytes value
 *                that lies verbatim in the input has f = its byte offset
 *                there (exact, < 2^53); otherwise f = -1.
 *   GT_V_LIST    i = 0 list, 1 tuple, 2 set, 3 frozenset.
 *   GT_V_MAP     i = 0 dict, 1 OrderedDict (order is insertion order).
 *   GT_V_OBJECT  str = "module.name" (Python 2 "__builtin__" is "builtins").
 *                i = 0: the global itself, n = 0.
 *                i = 1: an instance, n = 5, items = [args, state, dictitems,
 *                listitems, kwargs], each GT_V_NIL when absent (args a tuple,
 *                dictitems a MAP, listitems a LIST, kwargs a MAP).
 *   GT_V_TENSOR  only what hooks make.
 * A value referenced twice in the pickle (memo) appears as two copies; a
 * value that contains itself is cut with a GT_V_NIL at the repeat.
 *
 * Limits, all checked before use: every length against the bytes left;
 * memo indices below the input length and GT_PICKLE_MAX_MEMO; result nesting <= GT_PICKLE_MAX_DEPTH;
 * result size <= GT_PICKLE_MAX_NODES values and GT_PICKLE_MAX_BYTES bytes
 * of strings (so memo sharing cannot expand exponentially). */
#ifndef GT_PICKLE_H
#define GT_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/error.h"
#include "io/value.h"

#define GT_PICKLE_MAX_DEPTH 400
#define GT_PICKLE_MAX_NODES ((size_t)1 << 22)
#define GT_PICKLE_MAX_BYTES ((size_t)1 << 28)
#define GT_PICKLE_MAX_MEMO ((uint64_t)1 << 24)

/* Indices into an instance placeholder's items. */
enum { GT_PK_ARGS, GT_PK_STATE, GT_PK_DICTITEMS, GT_PK_LISTITEMS,
       GT_PK_KWARGS, GT_PK_NSLOTS };

typedef struct gt_pickle_hooks {
  void *ctx;
  /* BINPERSID / PERSID: pid is the persistent id (borrowed; a text PERSID
   * gives a GT_V_STR). Return a new tree, owned by the interpreter from then
   * on, or NULL with err set. Without this hook a persistent id is an error. */
  gt_value *(*persistent_load)(void *ctx, const gt_value *pid, gt_err *err);
  /* Called for every instance placeholder right after it was made (built =
   * 0) and after each BUILD gave it a state (built = 1). The hook may turn
   * obj into another value in place with gt_pickle_become (its children stay
   * valid until the load ends). Return GT_ERR with err set to stop. */
  int (*object)(void *ctx, gt_value *obj, int built, gt_err *err);
} gt_pickle_hooks;

/* Unpickle p[0, len). *used gets the bytes consumed up to and including
 * STOP (a legacy torch file holds several pickles back to back). base is
 * added to the offsets recorded for bytes values (the position of p in the
 * file). hooks may be NULL. On success *out owns the tree. */
int gt_pickle_load(const unsigned char *p, size_t len, uint64_t base,
                   const gt_pickle_hooks *hooks, gt_value **out, size_t *used,
                   gt_err *err);

/* For hooks: make obj a leaf of `kind` with integer i (GT_V_TENSOR,
 * GT_V_INT, GT_V_BOOL, GT_V_NIL) or float f (GT_V_FLOAT). */
void gt_pickle_become(gt_value *obj, gt_vkind kind, int64_t i, double f);
/* For hooks: make obj the value src (a node the interpreter gave the hook,
 * e.g. an argument), sharing src's children. */
void gt_pickle_become_copy(gt_value *obj, const gt_value *src);

/* Helpers for readers of the tree. */
int gt_pickle_is_global(const gt_value *v, const char *name);   /* bare */
int gt_pickle_is_instance(const gt_value *v, const char *name); /* NULL: any */
/* Item k of a LIST (tuple or list), or NULL. */
const gt_value *gt_pickle_item(const gt_value *v, size_t k);
/* Integer value (INT or BOOL) into *x; GT_ERR when v is not one. */
int gt_pickle_int(const gt_value *v, int64_t *x);

#endif
