/* expr.c: lazy elementwise arithmetic (expr.h).
 *
 * Evaluation walks the wanted run of the result in boxes (grid.h). A box
 * of an operand view is again a strided view, so operands are read (broadcast, permuted, cast,
 * byte-swapped) by gt_copy_into into small per-level buffers, the tree is
 * applied buffer-wise, and the root is converted into the caller's
 * destination. */
#include "tensor/expr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/cast.h"
#include "tensor/copy.h"
#include "tensor/grid.h"

#define BUF (GT_BOX_MAX * 8)      /* bytes per level buffer (8-byte kinds) */
#define PARALLEL_BYTES (1 << 20)  /* below this one thread is faster */

/* How a node's values are held while evaluating. */
enum { K_F64, K_F32, K_I64 };
enum { OP_LEAF = 100, OP_SCALAR };

typedef struct node {
  int op;             /* gt_op, OP_LEAF or OP_SCALAR */
  gt_dtype dtype;     /* result dtype (a leaf's: its view's dtype) */
  int kind;           /* K_* of dtype; a scalar's: its parent's */
  gt_tensor leaf;     /* OP_LEAF: view broadcast to the full shape (owned) */
  double f;           /* OP_SCALAR in K_F64 / K_F32 (already rounded) */
  int64_t i;          /* OP_SCALAR in K_I64 (already wrapped) */
  struct node *a, *b;
} node;

typedef struct expr {
  gt_grid g;
  node *root;
  int nodes;  /* in the tree */
  int levels; /* level buffers evaluation needs */
} expr;

static int kind_of(gt_dtype dt) {
  if (dt == GT_F64) return K_F64;
  return gt_dtype_is_float(dt) ? K_F32 : K_I64;
}

static gt_dtype kind_dtype(int k) {
  return k == K_F64 ? GT_F64 : k == K_F32 ? GT_F32 : GT_I64;
}

/* ---- shapes ------------------------------------------------------------ */

/* numpy broadcasting of two shapes into out (aligned at the right). */
static int broadcast(const gt_tensor *a, const gt_tensor *b, int *nd,
                     int64_t *out) {
  int n = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int i = 0; i < n; i++) {
    int ia = i - (n - a->ndim), ib = i - (n - b->ndim);
    int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
    if (sa != sb && sa != 1 && sb != 1) return GT_ERR;
    out[i] = sa == 1 ? sb : sa;
  }
  *nd = n;
  return GT_OK;
}

/* A view of t (whose shape broadcasts to g) with g's shape: stride 0 on
 * new leading dimensions and on stretched size-1 ones. */
static void broadcast_view(gt_tensor *t, const gt_grid *g) {
  int k = t->ndim;
  int64_t st[GT_MAXDIM];
  for (int i = 0; i < g->nd; i++) {
    int j = i - (g->nd - k);
    st[i] = j < 0 || (t->shape[j] == 1 && g->shape[i] != 1) ? 0 : t->strides[j];
  }
  t->ndim = g->nd;
  memcpy(t->shape, g->shape, sizeof t->shape);
  memcpy(t->strides, st, sizeof st);
}

static void shape_str(const gt_tensor *t, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "{");
  for (int i = 0; i < t->ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld",
                          (long long)t->shape[i]);
  if (k < n) snprintf(buf + k, n - k, "}");
}

/* ---- type promotion --------------------------------------------------- */

static const char *op_name(gt_op op) {
  static const char *names[] = {"add", "sub", "mul", "div", "neg", "sqrt", "rsqrt"};
  return names[op];
}

static int is_intlike(gt_dtype d) { return gt_dtype_is_int(d) || d == GT_BOOL; }
static int is_unsigned(gt_dtype d) { return d >= GT_U64 && d <= GT_U8; }

static gt_dtype int_of(int bytes, int sign) {
  static const gt_dtype s[] = {GT_I8, GT_I16, GT_I32, GT_I64};
  static const gt_dtype u[] = {GT_U8, GT_U16, GT_U32, GT_U64};
  int k = bytes == 1 ? 0 : bytes == 2 ? 1 : bytes == 4 ? 2 : 3;
  return sign ? s[k] : u[k];
}

/* Two integer dtypes: the smallest that holds both (torch, numpy). */
static gt_dtype promote_ints(gt_dtype a, gt_dtype b) {
  int sa = (int)gt_dtype_size(a), sb = (int)gt_dtype_size(b);
  if (is_unsigned(a) == is_unsigned(b)) return sa >= sb ? a : b;
  if (is_unsigned(a)) { gt_dtype t = a; a = b; b = t; int x = sa; sa = sb; sb = x; }
  /* a signed, b unsigned */
  if (sa > sb) return a;
  if (sb == 8) return GT_F64;
  return int_of(2 * sb, 1);
}

/* Two float dtypes: the smallest standard type that holds both. */
static gt_dtype promote_floats(gt_dtype a, gt_dtype b) {
  static const signed char rank[GT_NDTYPES] = {
    [GT_F8E4M3FN] = 1, [GT_F8E5M2] = 1, [GT_F16] = 2, [GT_BF16] = 2,
    [GT_F32] = 3, [GT_F64] = 4};
  if (a == b) return a;
  if (rank[a] == rank[b]) return rank[a] == 1 ? GT_F16 : GT_F32;
  return rank[a] > rank[b] ? a : b;
}

static int check_operand(gt_op op, gt_dtype d, gt_err *err) {
  if (d == GT_STRING || gt_dtype_is_complex(d))
    return gt_fail(err, "%s: %s tensors have no arithmetic", op_name(op),
                   gt_dtype_name(d));
  /* ggml's block-quantised dtypes hold blocks, not elements: dequantise
   * first (t:float()). */
  if (gt_dtype_block(d) > 1)
    return gt_fail(err, "%s: %s tensors hold quantised blocks: dequantise "
                   "first (t:float())", op_name(op), gt_dtype_name(d));
  return GT_OK;
}

/* A scalar's dtype for promotion against a tensor of dtype t. */
static gt_dtype scalar_dtype(const gt_operand *s, gt_dtype t) {
  if (s->is_int) return t == GT_BOOL ? GT_I64 : t;
  return gt_dtype_is_float(t) ? t : GT_F32;
}

int gt_promote(gt_op op, const gt_operand *a, const gt_operand *b,
               gt_dtype *out, gt_err *err) {
  const gt_operand *ta = a->t ? a : b, *tb = a->t ? b : a;
  gt_dtype x = ta->t->dtype, y, r;
  if (check_operand(op, x, err)) return GT_ERR;
  if (op >= GT_OP_NEG) {
    if (x == GT_BOOL && op == GT_OP_NEG)
      return gt_fail(err, "neg: bool tensors cannot be negated");
    r = x;
  } else {
    y = tb->t ? tb->t->dtype : scalar_dtype(tb, x);
    if (check_operand(op, y, err)) return GT_ERR;
    if (x == GT_BOOL && y == GT_BOOL)
      return gt_fail(err, "%s: arithmetic on two bool operands", op_name(op));
    if (gt_dtype_is_float(x) && gt_dtype_is_float(y)) r = promote_floats(x, y);
    else if (gt_dtype_is_float(x)) r = x;
    else if (gt_dtype_is_float(y)) r = y;
    else if (x == GT_BOOL) r = y;
    else if (y == GT_BOOL) r = x;
    else r = promote_ints(x, y);
  }
  if (is_intlike(r) && (op == GT_OP_DIV || op == GT_OP_SQRT || op == GT_OP_RSQRT))
    r = GT_F32;
  *out = r;
  return GT_OK;
}

/* Round float values to a narrower float dtype and back, through tmp
 * (n bytes at least; NULL for a single value). Float-to-float conversions
 * cannot fail. */
static void round_narrow(float *x, int64_t n, gt_dtype dt, unsigned char *tmp) {
  unsigned char one[2];
  if (dt == GT_F32) return;
  if (!tmp) tmp = one;
  gt_convert(dt, tmp, GT_F32, x, (size_t)n, 0, NULL);
  gt_convert(GT_F32, x, dt, tmp, (size_t)n, 0, NULL);
}

/* ---- trees ------------------------------------------------------------ */

static void free_tree(node *n) {
  if (!n) return;
  free_tree(n->a);
  free_tree(n->b);
  if (n->op == OP_LEAF) gt_tensor_free(&n->leaf);
  free(n);
}

static void expr_free(void *ctx) {
  expr *e = ctx;
  if (!e) return;
  free_tree(e->root);
  free(e);
}

static int count_nodes(const node *n) {
  return n ? 1 + count_nodes(n->a) + count_nodes(n->b) : 0;
}

/* Level buffers an evaluation of n needs (see eval). */
static int levels(const node *n) {
  if (!n->a) return 1;
  int la = levels(n->a);
  if (!n->b) return la;
  int lb = levels(n->b) + 1;
  return la > lb ? la : lb;
}

static node *new_node(int op, gt_dtype dt, gt_err *err) {
  node *n = calloc(1, sizeof *n);
  if (!n) {
    gt_fail(err, "out of memory");
    return NULL;
  }
  n->op = op;
  n->dtype = dt;
  n->kind = kind_of(dt);
  return n;
}

/* Copy of tree n with its leaves re-broadcast to g. */
static node *copy_tree(const node *n, const gt_grid *g, gt_err *err) {
  node *c = new_node(n->op, n->dtype, err);
  if (!c) return NULL;
  *c = *n;
  c->a = c->b = NULL;
  if (n->op == OP_LEAF) {
    gt_tensor_ref(&c->leaf, &n->leaf);
    broadcast_view(&c->leaf, g);
  }
  if ((n->a && !(c->a = copy_tree(n->a, g, err))) ||
      (n->b && !(c->b = copy_tree(n->b, g, err)))) {
    free_tree(c);
    return NULL;
  }
  return c;
}

static int expr_load(gt_storage *s, gt_err *err);

int gt_expr_pending(const gt_storage *s) { return s->load == expr_load; }

/* The tree of t when t is its whole, uncast, unevaluated expression. */
static const expr *whole_expr(const gt_tensor *t) {
  if (!gt_expr_streams(t) || t->dtype != t->sdtype || t->offset != 0)
    return NULL;
  const expr *e = t->storage->ctx;
  if (e->g.nd != t->ndim ||
      memcmp(e->g.shape, t->shape, (size_t)t->ndim * sizeof t->shape[0]))
    return NULL;
  return e;
}

static int64_t wrap_int(int64_t v, gt_dtype dt) {
  switch (dt) {
  case GT_I32: return (int32_t)(uint32_t)v;
  case GT_I16: return (int16_t)(uint16_t)v;
  case GT_I8: return (int8_t)(uint8_t)v;
  case GT_U32: return (uint32_t)v;
  case GT_U16: return (uint16_t)v;
  case GT_U8: return (uint8_t)v;
  default: return v;
  }
}

/* The child of a node of dtype pdt for operand o, over grid g. A whole
 * pending expression operand is inlined when its tree has at most `budget`
 * nodes; otherwise it stays a leaf, evaluated through its own storage. */
static node *make_child(gt_op op, const gt_operand *o, gt_dtype pdt,
                        const gt_grid *g, int budget, gt_err *err) {
  int pk = kind_of(pdt);
  if (!o->t) {
    node *n = new_node(OP_SCALAR, pdt, err);
    if (!n) return NULL;
    n->kind = pk;
    /* torch (2.x, CPU) rounds a scalar to the op's dtype, except that the
     * reduced floats multiply and divide by it as float32 (opmath). */
    if (pk == K_F32) {
      float v = o->is_int ? (float)o->i : (float)o->f;
      if (op == GT_OP_ADD || op == GT_OP_SUB) round_narrow(&v, 1, pdt, NULL);
      n->f = v;
    } else if (pk == K_F64) {
      n->f = o->is_int ? (double)o->i : o->f;
    } else {
      n->i = wrap_int(o->i, pdt);
    }
    return n;
  }
  const expr *e = whole_expr(o->t);
  if (e && e->nodes <= budget) return copy_tree(e->root, g, err);
  node *n = new_node(OP_LEAF, o->t->dtype, err);
  if (!n) return NULL;
  gt_tensor_ref(&n->leaf, o->t);
  broadcast_view(&n->leaf, g);
  return n;
}

/* out = a new tensor on an expression storage holding root. */
static int make_expr_tensor(node *root, const gt_grid *g, gt_tensor *out,
                            gt_err *err) {
  int64_t numel, bytes;
  if (gt_numel(g->nd, g->shape, &numel, err) != GT_OK ||
      __builtin_mul_overflow(numel, (int64_t)gt_dtype_size(root->dtype), &bytes)) {
    free_tree(root);
    return gt_fail(err, "%s: result too large", op_name((gt_op)root->op));
  }
  int n = count_nodes(root);
  if (n > GT_EXPR_MAX_NODES) {
    free_tree(root);
    return gt_fail(err, "expression of more than %d operations", GT_EXPR_MAX_NODES);
  }
  expr *e = calloc(1, sizeof *e);
  if (!e) {
    free_tree(root);
    return gt_fail(err, "out of memory");
  }
  e->g = *g;
  e->root = root;
  e->nodes = n;
  e->levels = levels(root);
  gt_storage *s = gt_storage_lazy((size_t)bytes, NULL, expr_load, e, expr_free, err);
  if (!s) return GT_ERR;
  int rc = gt_tensor_make(out, s, root->dtype, g->nd, g->shape, 0, err);
  gt_storage_release(s);
  return rc;
}

int gt_expr_binary(gt_op op, const gt_operand *a, const gt_operand *b,
                   gt_tensor *out, gt_err *err) {
  gt_dtype dt;
  if (gt_promote(op, a, b, &dt, err) != GT_OK) return GT_ERR;
  gt_grid g;
  int64_t shape[GT_MAXDIM];
  int nd;
  const gt_tensor *ta = a->t ? a->t : b->t, *tb = b->t ? b->t : a->t;
  if (broadcast(ta, tb, &nd, shape) != GT_OK) {
    char sa[160], sb[160];
    shape_str(a->t, sa, sizeof sa);
    shape_str(b->t, sb, sizeof sb);
    return gt_fail(err, "%s: shapes %s and %s do not broadcast", op_name(op), sa, sb);
  }
  gt_grid_init(&g, nd, shape);
  node *n = new_node((int)op, dt, err);
  if (!n) return GT_ERR;
  int half = (GT_EXPR_MAX_NODES - 1) / 2;
  if (!(n->a = make_child(op, a, dt, &g, half, err)) ||
      !(n->b = make_child(op, b, dt, &g, half, err))) {
    free_tree(n);
    return GT_ERR;
  }
  return make_expr_tensor(n, &g, out, err);
}

int gt_expr_unary(gt_op op, const gt_tensor *a, gt_tensor *out, gt_err *err) {
  gt_operand o = {a, 0, 0, 0};
  gt_dtype dt;
  if (gt_promote(op, &o, NULL, &dt, err) != GT_OK) return GT_ERR;
  gt_grid g;
  gt_grid_init(&g, a->ndim, a->shape);
  node *n = new_node((int)op, dt, err);
  if (!n) return GT_ERR;
  if (!(n->a = make_child(op, &o, dt, &g, GT_EXPR_MAX_NODES - 1, err))) {
    free_tree(n);
    return GT_ERR;
  }
  return make_expr_tensor(n, &g, out, err);
}

/* ---- views of expressions ---------------------------------------------- */

static int plain_view(const gt_tensor *t, const gt_viewop *op, gt_tensor *out,
                      gt_err *err) {
  switch (op->kind) {
  case GT_VIEW_PERMUTE: return gt_permute(t, op->perm, out, err);
  case GT_VIEW_NARROW: return gt_narrow(t, op->dim, op->start, op->len, out, err);
  case GT_VIEW_SELECT: return gt_select(t, op->dim, op->start, out, err);
  case GT_VIEW_FLIP: return gt_flip(t, op->dim, out, err);
  case GT_VIEW_SQUEEZE: return gt_squeeze(t, op->dim, out, err);
  case GT_VIEW_UNSQUEEZE: return gt_unsqueeze(t, op->dim, out, err);
  }
  return gt_fail(err, "unknown view");
}

/* Copy of tree n with op applied to every leaf. Leaves have the
 * expression's full shape, so the op's dimensions mean the same for each. */
static node *view_tree(const node *n, const gt_viewop *op, gt_err *err) {
  node *c = new_node(n->op, n->dtype, err);
  if (!c) return NULL;
  *c = *n;
  c->a = c->b = NULL;
  if (n->op == OP_LEAF && plain_view(&n->leaf, op, &c->leaf, err) != GT_OK) {
    c->op = OP_SCALAR; /* holds no reference */
    free_tree(c);
    return NULL;
  }
  if ((n->a && !(c->a = view_tree(n->a, op, err))) ||
      (n->b && !(c->b = view_tree(n->b, op, err)))) {
    free_tree(c);
    return NULL;
  }
  return c;
}

int gt_apply_view(const gt_tensor *src, const gt_viewop *op, gt_tensor *out,
                  gt_err *err) {
  const expr *e = whole_expr(src);
  gt_tensor shape;
  if (plain_view(src, op, &shape, err) != GT_OK) return GT_ERR;
  if (!e) {
    *out = shape;
    return GT_OK;
  }
  gt_grid g;
  gt_grid_init(&g, shape.ndim, shape.shape);
  gt_tensor_free(&shape);
  node *root = view_tree(e->root, op, err);
  if (!root) return GT_ERR;
  return make_expr_tensor(root, &g, out, err);
}

/* ---- evaluation ------------------------------------------------------- */

/* Per-evaluation scratch: `levels` buffers of BUF bytes for node values,
 * two for converting the root, one for narrow-float rounding. */
typedef struct scratch {
  unsigned char *lv;
  unsigned char *conv[2];
  unsigned char *narrow;
} scratch;

static int scratch_new(scratch *s, int levels, gt_err *err) {
  s->lv = malloc((size_t)(levels + 3) * BUF);
  if (!s->lv) return gt_fail(err, "out of memory");
  s->conv[0] = s->lv + (size_t)levels * BUF;
  s->conv[1] = s->conv[0] + BUF;
  s->narrow = s->conv[1] + BUF;
  return GT_OK;
}

/* In-place change of n values from kind `from` (node dtype dt) to `to`;
 * only widening directions occur (I64 -> F32/F64, F32 -> F64). */
static void convert_kind(unsigned char *p, int64_t n, int from, int to,
                         gt_dtype dt) {
  if (from == to) return;
  int u64 = dt == GT_U64;
  if (from == K_I64) {
    for (int64_t i = 0; i < n; i++) {
      int64_t v;
      memcpy(&v, p + 8 * i, 8);
      if (to == K_F32) {
        float f = u64 ? (float)(uint64_t)v : (float)v;
        memcpy(p + 4 * i, &f, 4);
      } else {
        double f = u64 ? (double)(uint64_t)v : (double)v;
        memcpy(p + 8 * i, &f, 8);
      }
    }
    return;
  }
  for (int64_t i = n - 1; i >= 0; i--) { /* F32 -> F64: back to front */
    float f;
    memcpy(&f, p + 4 * i, 4);
    double d = f;
    memcpy(p + 8 * i, &d, 8);
  }
}


static void apply_f32(int op, float *x, const float *y, int64_t n) {
  switch (op) {
  case GT_OP_ADD: for (int64_t i = 0; i < n; i++) x[i] += y[i]; break;
  case GT_OP_SUB: for (int64_t i = 0; i < n; i++) x[i] -= y[i]; break;
  case GT_OP_MUL: for (int64_t i = 0; i < n; i++) x[i] *= y[i]; break;
  case GT_OP_DIV: for (int64_t i = 0; i < n; i++) x[i] /= y[i]; break;
  case GT_OP_NEG: for (int64_t i = 0; i < n; i++) x[i] = -x[i]; break;
  case GT_OP_SQRT: for (int64_t i = 0; i < n; i++) x[i] = sqrtf(x[i]); break;
  case GT_OP_RSQRT:
    for (int64_t i = 0; i < n; i++) x[i] = 1.0f / sqrtf(x[i]);
    break;
  }
}

static void apply_f64(int op, double *x, const double *y, int64_t n) {
  switch (op) {
  case GT_OP_ADD: for (int64_t i = 0; i < n; i++) x[i] += y[i]; break;
  case GT_OP_SUB: for (int64_t i = 0; i < n; i++) x[i] -= y[i]; break;
  case GT_OP_MUL: for (int64_t i = 0; i < n; i++) x[i] *= y[i]; break;
  case GT_OP_DIV: for (int64_t i = 0; i < n; i++) x[i] /= y[i]; break;
  case GT_OP_NEG: for (int64_t i = 0; i < n; i++) x[i] = -x[i]; break;
  case GT_OP_SQRT: for (int64_t i = 0; i < n; i++) x[i] = sqrt(x[i]); break;
  case GT_OP_RSQRT:
    for (int64_t i = 0; i < n; i++) x[i] = 1.0 / sqrt(x[i]);
    break;
  }
}

/* Integer ops wrap modulo 2^64 (unsigned arithmetic), then to dt. Division
 * and roots never reach here (they promote to float). */
static void apply_i64(int op, int64_t *x, const int64_t *y, int64_t n,
                      gt_dtype dt) {
  for (int64_t i = 0; i < n; i++) {
    uint64_t a = (uint64_t)x[i], b = y ? (uint64_t)y[i] : 0;
    uint64_t r = op == GT_OP_ADD ? a + b : op == GT_OP_SUB ? a - b
               : op == GT_OP_MUL ? a * b : 0 - a;
    x[i] = wrap_int((int64_t)r, dt);
  }
}

typedef struct evalctx {
  const expr *e;
  scratch s;
} evalctx;

static void fill_scalar(const node *n, unsigned char *out, int64_t cnt) {
  if (n->kind == K_F32) {
    float *x = (float *)(void *)out, v = (float)n->f;
    for (int64_t i = 0; i < cnt; i++) x[i] = v;
  } else if (n->kind == K_F64) {
    double *x = (double *)(void *)out;
    for (int64_t i = 0; i < cnt; i++) x[i] = n->f;
  } else {
    int64_t *x = (int64_t *)(void *)out;
    for (int64_t i = 0; i < cnt; i++) x[i] = n->i;
  }
}

static int eval(evalctx *c, const node *n, const gt_box *b, int level, int want,
                gt_err *err);

/* Operand a of node n into level buffer `level` in n's kind. torch casts
 * the operands of a float16/bfloat16/float8 op to that dtype before
 * computing in float32: integers are rounded to it here (float operands
 * of such a node are already exact in it). */
static int operand(evalctx *c, const node *n, const node *a, const gt_box *b,
                   int level, gt_err *err) {
  if (eval(c, a, b, level, n->kind, err)) return GT_ERR;
  if (n->kind == K_F32 && a->op != OP_SCALAR && is_intlike(a->dtype))
    round_narrow((float *)(void *)(c->s.lv + (size_t)level * BUF), b->n,
                 n->dtype, c->s.narrow);
  return GT_OK;
}

/* Values of n over box b into level buffer `level`, as kind `want`. A
 * binary node evaluates its left operand at its own level and its right
 * one level up. */
static int eval(evalctx *c, const node *n, const gt_box *b, int level, int want,
                gt_err *err) {
  unsigned char *out = c->s.lv + (size_t)level * BUF;
  if (n->op == OP_LEAF) {
    gt_tensor v = gt_box_view(&n->leaf, &c->e->g, b);
    return gt_copy_into(&v, kind_dtype(want), out, err);
  }
  if (n->op == OP_SCALAR) {
    fill_scalar(n, out, b->n);
    return GT_OK;
  }
  if (operand(c, n, n->a, b, level, err)) return GT_ERR;
  unsigned char *y = NULL;
  if (n->b) {
    if (operand(c, n, n->b, b, level + 1, err)) return GT_ERR;
    y = c->s.lv + (size_t)(level + 1) * BUF;
  }
  if (n->kind == K_F32) {
    apply_f32(n->op, (float *)(void *)out, (const float *)(void *)y, b->n);
    round_narrow((float *)(void *)out, b->n, n->dtype, c->s.narrow);
  } else if (n->kind == K_F64) {
    apply_f64(n->op, (double *)(void *)out, (const double *)(void *)y, b->n);
  } else {
    apply_i64(n->op, (int64_t *)(void *)out, (const int64_t *)(void *)y, b->n,
              n->dtype);
  }
  convert_kind(out, b->n, n->kind, want, n->dtype);
  return GT_OK;
}

/* Root values (kind buffer) -> stored dtype R -> presented dtype D -> ddt
 * into dst, skipping steps that change nothing. `first` numbers elements
 * in conversion errors. */
static int emit(evalctx *c, const unsigned char *vals, int64_t n, gt_dtype R,
                gt_dtype D, gt_dtype ddt, unsigned char *dst, int64_t first,
                gt_err *err) {
  gt_dtype chain[3] = {R, D, ddt}, from = kind_dtype(c->e->root->kind);
  const unsigned char *src = vals;
  int last = 2;
  while (last > 0 && chain[last - 1] == ddt) last--;
  for (int k = 0, tmp = 0; k <= last; k++) {
    if (chain[k] == from && k < last) continue;
    unsigned char *to = k == last ? dst : c->s.conv[tmp ^= 1];
    if (chain[k] == from) memcpy(to, src, (size_t)n * gt_dtype_size(from));
    else if (gt_convert_at(chain[k], to, from, src, (size_t)n, 0, (size_t)first, err))
      return GT_ERR;
    src = to;
    from = chain[k];
  }
  return GT_OK;
}

/* Elements [lo, hi) of expression e as R -> D -> ddt into dst. */
static int run_range(evalctx *c, int64_t lo, int64_t hi, gt_dtype D,
                     gt_dtype ddt, unsigned char *dst, gt_err *err) {
  const expr *e = c->e;
  size_t dsz = gt_dtype_size(ddt);
  for (int64_t pos = lo; pos < hi;) {
    gt_box b;
    gt_grid_box(&e->g, pos, hi, &b);
    if (eval(c, e->root, &b, 0, e->root->kind, err) ||
        emit(c, c->s.lv, b.n, e->root->dtype, D, ddt, dst, pos, err))
      return GT_ERR;
    dst += (size_t)b.n * dsz;
    pos += b.n;
  }
  return GT_OK;
}

/* One thread's share of a split evaluation. */
typedef struct part {
  const expr *e;
  int64_t lo, hi;
  gt_dtype D, ddt;
  unsigned char *dst;
  int rc;
  gt_err err;
} part;

static int run_part(part *p) {
  evalctx c = {p->e, {0}};
  if (scratch_new(&c.s, p->e->levels, &p->err)) return GT_ERR;
  int rc = run_range(&c, p->lo, p->hi, p->D, p->ddt, p->dst, &p->err);
  free(c.s.lv);
  return rc;
}

static void run_part_at(void *ctx, int i) {
  part *p = (part *)ctx + i;
  p->rc = run_part(p);
}

static int run_split(const expr *e, int64_t lo, int64_t hi, gt_dtype D,
                     gt_dtype ddt, unsigned char *dst, gt_err *err) {
  part ps[64];
  size_t dsz = gt_dtype_size(ddt);
  int64_t n = hi - lo;
  int k = gt_get_threads();
  if (k > 64) k = 64;
  if ((uint64_t)n * dsz < PARALLEL_BYTES || n < (int64_t)k * GT_BOX_MAX) k = 1;
  int64_t at = 0;
  for (int i = 0; i < k; i++) {
    int64_t len = n / k + (i < n % k);
    ps[i] = (part){e, lo + at, lo + at + len, D, ddt, dst + (size_t)at * dsz,
                   GT_OK, {{0}}};
    at += len;
  }
  if (k == 1) {
    ps[0].rc = run_part(&ps[0]);
  } else {
    gt_parallel_for(k, run_part_at, ps);
  }
  for (int i = 0; i < k; i++)
    if (ps[i].rc != GT_OK) {
      if (err) *err = ps[i].err;
      return GT_ERR;
    }
  return GT_OK;
}

/* Loads every leaf's storage before evaluation may be split over threads
 * (loaders run on the caller's thread). A leaf on a pending expression is
 * read box by box: a contiguous leaf's boxes are contiguous runs, computed
 * streamed (its own leaves readied); any other is loaded now, as its boxes
 * would load it. */
static int ready_tree(const node *n, gt_err *err) {
  if (!n) return GT_OK;
  if (n->op == OP_LEAF) {
    const gt_tensor *t = &n->leaf;
    int rc = gt_expr_pending(t->storage) && !gt_expr_streams(t)
                 ? gt_storage_ready(t->storage, err)
                 : gt_tensor_ready(t, err);
    if (rc != GT_OK) return GT_ERR;
  }
  return ready_tree(n->a, err) || ready_tree(n->b, err) ? GT_ERR : GT_OK;
}

int gt_tensor_ready(const gt_tensor *t, gt_err *err) {
  if (gt_expr_pending(t->storage)) {
    const expr *e = t->storage->ctx;
    return ready_tree(e->root, err);
  }
  return gt_storage_ready(t->storage, err);
}

static long loads;

long gt_expr_loads(void) { return __atomic_load_n(&loads, __ATOMIC_RELAXED); }

/* The loader: the whole expression into the storage's own bytes; then the
 * tree (and with it the operands' references) is dropped. */
static int expr_load(gt_storage *s, gt_err *err) {
  expr *e = s->ctx;
  int64_t numel = 1;
  for (int i = 0; i < e->g.nd; i++) numel *= e->g.shape[i];
  if (ready_tree(e->root, err) || gt_storage_alloc_data(s, err)) return GT_ERR;
  __atomic_add_fetch(&loads, 1, __ATOMIC_RELAXED);
  gt_dtype r = e->root->dtype;
  if (numel > 0 && run_split(e, 0, numel, r, r, s->data, err)) return GT_ERR;
  expr_free(e);
  s->ctx = NULL;
  return GT_OK;
}

int gt_expr_streams(const gt_tensor *t) {
  if (!gt_expr_pending(t->storage)) return 0;
  const expr *e = t->storage->ctx;
  /* A view that reinterprets the storage's bytes (another sdtype, as the
   * torch writer's byte view of a shared storage) needs them made. */
  return t->sdtype == e->root->dtype && !t->swap && gt_tensor_is_contiguous(t);
}

int gt_expr_copy(const gt_tensor *t, gt_dtype ddt, void *dst, int *done,
                 gt_err *err) {
  *done = 0;
  if (!gt_expr_streams(t)) return GT_OK;
  const expr *e = t->storage->ctx;
  int64_t lo = t->offset / (int64_t)gt_dtype_size(t->sdtype);
  int64_t n = gt_tensor_numel(t);
  *done = 1;
  if (n == 0) return GT_OK;
  if (ready_tree(e->root, err)) return GT_ERR;
  return run_split(e, lo, lo + n, t->dtype, ddt, dst, err);
}

static void done_tree(const node *n) {
  if (!n) return;
  if (n->op == OP_LEAF) {
    if (gt_expr_pending(n->leaf.storage)) {
      gt_expr_done_with(n->leaf.storage);
    } else {
      int64_t lo, hi;
      if (gt_tensor_extent(&n->leaf, &lo, &hi, NULL) == GT_OK && hi > lo)
        gt_storage_done_with(n->leaf.storage, (uint64_t)lo, (uint64_t)(hi - lo));
    }
  }
  done_tree(n->a);
  done_tree(n->b);
}

void gt_expr_done_with(const gt_storage *s) {
  if (gt_expr_pending(s)) done_tree(((const expr *)s->ctx)->root);
}
