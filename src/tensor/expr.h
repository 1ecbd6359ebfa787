/* expr.h: lazy elementwise arithmetic.
 *
 * An expression (a + b, x * 2, sqrt(v)) is a tensor like any other: a
 * contiguous view on a storage of its result dtype and broadcast shape. The
 * storage is *lazy*: it holds the expression tree, not bytes. Building an
 * expression copies nothing.
 *
 * Evaluation:
 *   - gt_copy_into (and so gt_stream, every writer, bytes, totable) of a
 *     view that is one contiguous run of the expression's elements (the
 *     whole expression, a lazy cast of it, a reshape, a narrow or select of
 *     its first dimension, the pieces gt_stream cuts) computes the run
 *     straight into the caller's buffer, a few thousand elements at a time:
 *     operands are read through their own views (broadcast, strided, lazily
 *     cast) with gt_copy_into, so nothing of whole-tensor size is allocated.
 *   - permute, transpose, narrow, select, flip, squeeze and unsqueeze of a
 *     whole expression (gt_apply_view) are applied to its operands: the
 *     result is a new expression, as lazy as the first.
 *   - Any other view (those of a cast of an expression, a narrow of a
 *     reshaped one) or a reader that needs the bytes (gt_storage_ready)
 *     makes the storage load: the expression is computed once, in full,
 *     into a heap buffer, and the tree (with its operand references) is
 *     dropped.
 *
 * The tree: every node has the expression's full shape; a leaf is an
 * operand view broadcast to it (stride 0 on broadcast dimensions) or a
 * scalar. An operand that is itself a whole, uncast, unevaluated expression
 * is inlined (its leaves re-broadcast), up to GT_EXPR_MAX_NODES nodes; past
 * that, or for other views of expressions, it stays a leaf.
 *
 * Types follow torch's promotion (torch.result_type) for tensors:
 *   bool < integers < floats; two floats give the wider (float16 with
 *   bfloat16, or float8 kinds with each other and float16/bfloat16 with
 *   float32... see gt_promote); two integers give the smallest integer that
 *   holds both (uint64 with a signed integer gives float64, as numpy);
 *   true division and sqrt/rsqrt of integers give float32; bool with bool
 *   is refused. A Lua integer scalar keeps an integer or float tensor's
 *   dtype (bool becomes int64); a Lua float scalar keeps a float tensor's
 *   dtype and makes an integer one float32. 0-d tensors promote like any
 *   tensor (numpy 2's rule; torch gives them lower priority).
 * Arithmetic (bit-exact with torch on CPU, and with numpy for float32 and
 * float64):
 *   - float64 nodes compute in double;
 *   - float32, float16, bfloat16 and float8 nodes compute in float (IEEE
 *     single) and round once to their dtype, as torch's opmath does; a scalar
 *     operand is rounded to float32 (to float64 for float64 nodes);
 *   - integer nodes compute in 64-bit two's complement and wrap to their
 *     dtype; an integer operand of a float node converts directly to float
 *     (or double);
 *   - rsqrt is 1 / sqrt(x) with both steps rounded in the compute type. */
#ifndef GT_EXPR_H
#define GT_EXPR_H

#include <stdint.h>

#include "tensor/tensor.h"

#define GT_EXPR_MAX_NODES 512

typedef enum gt_op {
  GT_OP_ADD, GT_OP_SUB, GT_OP_MUL, GT_OP_DIV,
  GT_OP_NEG, GT_OP_SQRT, GT_OP_RSQRT
} gt_op;

/* An operand of a binary operation: a tensor or a Lua number. */
typedef struct gt_operand {
  const gt_tensor *t; /* NULL for a scalar */
  int is_int;         /* scalar: an integer (i) rather than a float (f) */
  int64_t i;
  double f;
} gt_operand;

/* The result dtype of op on a and b (b ignored for unary ops), or fails
 * naming the dtypes (strings, complex, bool with bool, neg of bool). */
int gt_promote(gt_op op, const gt_operand *a, const gt_operand *b,
               gt_dtype *out, gt_err *err);

/* out = a op b, broadcast as numpy (shapes aligned at the right; a
 * dimension of size 1 stretches). At least one operand is a tensor. Fails
 * naming both shapes when they do not broadcast. */
int gt_expr_binary(gt_op op, const gt_operand *a, const gt_operand *b,
                   gt_tensor *out, gt_err *err);
/* out = op(a) for GT_OP_NEG, GT_OP_SQRT, GT_OP_RSQRT. */
int gt_expr_unary(gt_op op, const gt_tensor *a, gt_tensor *out, gt_err *err);

/* A view operation (tensor.h), as data so that it can be applied to every
 * operand of an expression. Dimensions 0-based. */
typedef enum gt_viewkind {
  GT_VIEW_PERMUTE, GT_VIEW_NARROW, GT_VIEW_SELECT, GT_VIEW_FLIP,
  GT_VIEW_SQUEEZE, GT_VIEW_UNSQUEEZE
} gt_viewkind;

typedef struct gt_viewop {
  gt_viewkind kind;
  int perm[GT_MAXDIM]; /* PERMUTE */
  int dim;             /* the others (SQUEEZE: -1 for all size-1 dims) */
  int64_t start, len;  /* NARROW: start, len; SELECT: start is the index */
} gt_viewop;

/* out = the view op of src. On a whole unevaluated expression (not a cast
 * or view of one) the op is applied to each operand instead, giving a new
 * expression that stays lazy and streamed; otherwise it is the plain view. */
int gt_apply_view(const gt_tensor *src, const gt_viewop *op, gt_tensor *out,
                  gt_err *err);

/* Whether s is an expression storage not yet evaluated. */
int gt_expr_pending(const gt_storage *s);
/* Whether t is a contiguous run of a pending expression's elements (as
 * the expression's dtype): what gt_expr_copy computes without loading. */
int gt_expr_streams(const gt_tensor *t);
/* For copy.c: when t is a contiguous run of a pending expression, writes
 * it to dst as ddt and sets *done; otherwise leaves *done at 0. */
int gt_expr_copy(const gt_tensor *t, gt_dtype ddt, void *dst, int *done,
                 gt_err *err);
/* For gt_stream's `release`: tells the operands' storages that the bytes
 * an expression read will not be needed again soon. */
void gt_expr_done_with(const gt_storage *s);

/* How many expressions have been evaluated in full (loaded) so far: for
 * tests proving that streaming does not materialise. */
long gt_expr_loads(void);

/* Makes what t reads available: the storage's bytes, or for a pending
 * expression its operands' (recursively), without evaluating it. */
int gt_tensor_ready(const gt_tensor *t, gt_err *err);

#endif
