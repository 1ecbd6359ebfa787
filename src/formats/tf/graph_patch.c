/* graph_patch.c: a GraphDef (.pb) rewritten with new values for its Const
 * nodes (gt_tfgraph_patch, see graph.h).
 *
 * Every byte of the base graph is copied verbatim except each patched
 * node's TensorProto value fields, which are re-encoded, and the length
 * prefixes of the records enclosing them (AttrValue, the attr map entry,
 * the NodeDef), which are rewritten: the plan is a sorted list of segments
 * (base byte ranges, new varints, new value bytes) streamed to gt_out.
 * Nodes are found with graphdef.h's walker, as the reader finds them. */
#include "formats/tf/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tensor/copy.h"
#include "formats/tf/graphdef.h"
#include "formats/tf/proto.h"
#include "io/fileout.h"
#include "io/grow.h"
#include "io/pbpatch.h"

/* A Const of the base graph that can be patched. */
typedef struct pconst {
  const uint8_t *name;
  size_t name_len;
  pb_rec node, entry, value, tensor;
} pconst;

typedef struct pconsts {
  pconst *v;
  size_t n, cap;
} pconsts;

static int collect_const(void *ctx, const gt_tf_node *nd, gt_err *err) {
  pconsts *c = ctx;
  if (!gt_tfg_streq(nd->op, nd->op_len, "Const") || !nd->has_tensor) return GT_OK;
  if (gt_grow((void **)&c->v, &c->cap, c->n + 1, sizeof *c->v))
    return gt_fail(err, "out of memory");
  c->v[c->n++] = (pconst){nd->name, nd->name_len, nd->rec, nd->entry, nd->value,
                          nd->tensor};
  return GT_OK;
}

static int cmp_pconst(const void *a, const void *b) {
  const pconst *x = a, *y = b;
  size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
  int c = memcmp(x->name, y->name, n);
  return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* Fields of TensorProto that carry values (docs/formats/tfgraph.md#tensorproto); a patch
 * replaces them all, keeping every other record byte for byte. */
static int is_value_field(uint32_t num) {
  return (num >= 4 && num <= 13) || (num >= 16 && num <= 18);
}

/* One patch: the Const, the new tensor, and the new TensorProto as a
 * pb_patch along the four records enclosing it (node, attr entry,
 * AttrValue, tensor: outermost first). */
typedef struct patch {
  const pconst *c;
  const gt_entry *e;
  gt_tensor dense;        /* materialised values for typed encodings */
  pb_patch pp;
} patch;

static void patch_free(patch *p) {
  pbp_free(&p->pp);
  if (p->dense.storage) gt_tensor_free(&p->dense);
}

/* Element equality by bytes (strings by content). */
static int elem_eq(const uint8_t *a, const uint8_t *b, gt_dtype dt) {
  if (dt != GT_STRING) return memcmp(a, b, gt_dtype_size(dt)) == 0;
  gt_str x, y;
  memcpy(&x, a, sizeof x);
  memcpy(&y, b, sizeof y);
  return x.n == y.n && (x.n == 0 || memcmp(x.p, y.p, x.n) == 0);
}

/* How many values the typed field needs so that the repeat-last rule
 * gives back e[0, n): the original count k when it still does, else the
 * fewest (trailing repeats dropped); 0 values mean zeros. */
static size_t typed_values(const uint8_t *e, size_t n, gt_dtype dt, size_t k) {
  size_t es = gt_dtype_size(dt);
  if (n == 0) return 0;
  if (k == 0 && dt != GT_STRING) {
    int zero = 1;
    for (size_t i = 0; zero && i < n * es; i++) zero = e[i] == 0;
    if (zero) return 0;
  }
  size_t c = n; /* smallest c >= 1 with e[c-1, n) all equal */
  while (c > 1 && elem_eq(e + (c - 2) * es, e + (n - 1) * es, dt)) c--;
  return k >= c && k <= n ? k : c;
}

/* Packs the first c values of e (n elements of graft dtype dt, TF dtype
 * tf) into the typed field of a TensorProto that has nothing else, so
 * protobuf-c writes exactly that field's record. */
static int pack_typed(const uint8_t *e, size_t c, gt_dtype dt, int tf,
                      uint8_t **out, size_t *outlen, gt_err *err) {
  Tensorflow__TensorProto tp = TENSORFLOW__TENSOR_PROTO__INIT;
  size_t es = gt_dtype_size(dt);
  void *tmp = NULL;
  if (c > 0) {
    switch (tf) {
    case 1: tp.n_float_val = c; tp.float_val = (float *)(void *)e; break;
    case 2: tp.n_double_val = c; tp.double_val = (double *)(void *)e; break;
    case 8: tp.n_scomplex_val = 2 * c; tp.scomplex_val = (float *)(void *)e; break;
    case 18: tp.n_dcomplex_val = 2 * c; tp.dcomplex_val = (double *)(void *)e; break;
    case 9: tp.n_int64_val = c; tp.int64_val = (int64_t *)(void *)e; break;
    case 22: tp.n_uint32_val = c; tp.uint32_val = (uint32_t *)(void *)e; break;
    case 23: tp.n_uint64_val = c; tp.uint64_val = (uint64_t *)(void *)e; break;
    case 24: case 25: tp.float8_val.len = c; tp.float8_val.data = (uint8_t *)e; break;
    default: {
      /* int_val, half_val, bool_val and string_val need per-element slots */
      size_t slot = tf == 7 ? sizeof(ProtobufCBinaryData)
                    : tf == 10 ? sizeof(protobuf_c_boolean) : sizeof(int32_t);
      tmp = malloc(c * slot);
      if (!tmp) return gt_fail(err, "out of memory");
      for (size_t i = 0; i < c; i++) {
        const uint8_t *x = e + i * es;
        if (tf == 7) {
          gt_str s;
          memcpy(&s, x, sizeof s);
          ((ProtobufCBinaryData *)tmp)[i] = (ProtobufCBinaryData){s.n, (uint8_t *)s.p};
        } else if (tf == 10) {
          ((protobuf_c_boolean *)tmp)[i] = *x != 0;
        } else {
          int32_t v;
          switch (dt) {
          case GT_I8: v = (int8_t)*x; break;
          case GT_U8: v = *x; break;
          case GT_I16: { int16_t h; memcpy(&h, x, 2); v = h; break; }
          case GT_U16: case GT_F16: case GT_BF16: { uint16_t h; memcpy(&h, x, 2); v = h; break; }
          default: memcpy(&v, x, 4); break;
          }
          ((int32_t *)tmp)[i] = v;
        }
      }
      if (tf == 7) tp.n_string_val = c, tp.string_val = tmp;
      else if (tf == 10) tp.n_bool_val = c, tp.bool_val = tmp;
      else if (tf == 14 || tf == 19) tp.n_half_val = c, tp.half_val = tmp;
      else tp.n_int_val = c, tp.int_val = tmp;
    }
    }
  }
  size_t n = protobuf_c_message_get_packed_size(&tp.base);
  *out = malloc(n ? n : 1);
  if (!*out) {
    free(tmp);
    return gt_fail(err, "out of memory");
  }
  *outlen = protobuf_c_message_pack(&tp.base, *out);
  free(tmp);
  return GT_OK;
}

/* Values above this many elements are written as tensor_content even when
 * the original used a typed field (TF itself only uses typed fields for
 * scalars and fills). */
#define TYPED_MAX ((size_t)1 << 16)

/* Strings as TF's tensor_content (EncodeStringList): the varint32 lengths,
 * then the bytes; one BYTES segment with its field-4 header. */
static int string_content(const uint8_t *e, size_t n, pbp_seg *out, size_t *nout,
                          gt_err *err) {
  uint64_t len = 0;
  for (size_t i = 0; i < n; i++) {
    gt_str x;
    memcpy(&x, e + i * sizeof x, sizeof x);
    if (x.n > UINT32_MAX) return gt_fail(err, "string element %zu is too long", i);
    len += pb_varint_size(x.n) + x.n;
  }
  uint8_t *b = malloc(11 + len);
  if (!b) return gt_fail(err, "out of memory");
  size_t k = 0;
  b[k++] = 0x22; /* field 4, LEN */
  k += pb_put_varint(b + k, len);
  for (size_t i = 0; i < n; i++) {
    gt_str x;
    memcpy(&x, e + i * sizeof x, sizeof x);
    k += pb_put_varint(b + k, x.n);
  }
  for (size_t i = 0; i < n; i++) {
    gt_str x;
    memcpy(&x, e + i * sizeof x, sizeof x);
    if (x.n) memcpy(b + k, x.p, x.n);
    k += x.n;
  }
  out[0] = (pbp_seg){PBP_BYTES, 0, k, b, NULL};
  *nout = 1;
  return GT_OK;
}

/* The new value records of p, typed field or tensor_content, as one or two
 * segments out[0, *nout). */
static int value_segment(patch *p, const Tensorflow__TensorProto *tp,
                         int had_content, gt_dtype dt, pbp_seg *out, size_t *nout,
                         gt_err *err) {
  const gt_tensor *t = &p->e->t;
  size_t n = (size_t)gt_tensor_numel(t);
  int tf = (int)tp->dtype;
  if (dt != GT_STRING && (had_content || n > TYPED_MAX)) {
    uint64_t len = (uint64_t)gt_tensor_nbytes(t);
    uint8_t *hdr = malloc(11);
    if (!hdr) return gt_fail(err, "out of memory");
    hdr[0] = 0x22; /* field 4, LEN */
    size_t h = 1 + pb_put_varint(hdr + 1, len);
    out[0] = (pbp_seg){PBP_BYTES, 0, h, hdr, NULL};
    out[1] = (pbp_seg){PBP_TENSOR, 0, (size_t)len, NULL, t};
    *nout = 2;
    return GT_OK;
  }
  if (gt_contiguous(t, &p->dense, err) != GT_OK) return GT_ERR;
  const uint8_t *e = p->dense.storage->data + p->dense.offset;
  if (dt == GT_STRING && had_content)
    return string_content(e, n, out, nout, err);
  size_t c = typed_values(e, n, dt, gt_tf_typed_count(tp, (int)tp->dtype));
  uint8_t *bytes = NULL;
  size_t len = 0;
  if (pack_typed(e, c, dt, tf, &bytes, &len, err) != GT_OK) return GT_ERR;
  out[0] = (pbp_seg){PBP_BYTES, 0, len, bytes, NULL};
  *nout = 1;
  return GT_OK;
}

/* Builds p's segments from the original TensorProto and the new tensor. */
static int plan_patch(gt_storage *base, patch *p, gt_err *err) {
  pb_rec content;
  int has_content, ndim;
  int64_t shape[GT_MAXDIM];
  gt_dtype dt;
  const pb_rec *tr = &p->c->tensor;
  Tensorflow__TensorProto *tp = gt_tfg_unpack_tensor(base, tr, &content, &has_content, err);
  if (!tp) return GT_ERR;
  int rc = GT_ERR;
  const gt_tensor *t = &p->e->t;
  if (gt_tfg_dtype((uint64_t)tp->dtype, &dt) != GT_OK) {
    gt_fail(err, "the Const's dtype %s cannot be patched", gt_tfg_type_name((uint64_t)tp->dtype));
  } else if (t->dtype != dt) {
    gt_fail(err, "the Const is %s, the tensor %s (cast it first)", gt_dtype_name(dt),
            gt_dtype_name(t->dtype));
  } else if (gt_tfg_shape(tp, &ndim, shape, err) == GT_OK) {
    rc = pbp_check_shape(t, ndim, shape, "Const", err);
  }
  if (rc != GT_OK) {
    protobuf_c_message_free_unpacked(&tp->base, NULL);
    return GT_ERR;
  }
  pbp_seg value[2];
  size_t nvalue = 0;
  rc = value_segment(p, tp, has_content && content.len > 0, dt, value, &nvalue, err);
  protobuf_c_message_free_unpacked(&tp->base, NULL);
  if (rc != GT_OK) return GT_ERR;
  /* the value goes where the first value record was, else before the
   * first record numbered above 4, else last: field order is kept */
  return pbp_splice(&p->pp, base->data, tr->pos, tr->pos + tr->len, is_value_field, 4,
                    value, nvalue, err);
}

static int cmp_patch(const void *a, const void *b) {
  const patch *x = a, *y = b;
  return (x->c->node.start > y->c->node.start) - (x->c->node.start < y->c->node.start);
}

/* Finds the Const of each entry and plans its patch. */
static int plan_all(gt_storage *base, pconsts *cs, const gt_save *s, patch *ps,
                    gt_err *err) {
  qsort(cs->v, cs->n, sizeof *cs->v, cmp_pconst);
  for (size_t i = 0; i < s->n; i++) {
    const char *name = s->entries[i].name;
    pconst key = {(const uint8_t *)name, strlen(name), {0}, {0}, {0}, {0}};
    pconst *c = bsearch(&key, cs->v, cs->n, sizeof *cs->v, cmp_pconst);
    if (!c) return gt_fail(err, "tensor \"%s\": the graph has no Const of that name", name);
    if ((c > cs->v && cmp_pconst(c - 1, c) == 0) ||
        (c + 1 < cs->v + cs->n && cmp_pconst(c + 1, c) == 0))
      return gt_fail(err, "tensor \"%s\": the graph has two Consts of that name", name);
    patch *p = &ps[i];
    p->c = c;
    p->e = &s->entries[i];
    p->pp.depth = 4;
    const pb_rec chain[4] = {c->node, c->entry, c->value, c->tensor};
    memcpy(p->pp.chain, chain, sizeof chain);
    if (plan_patch(base, p, err) != GT_OK || pbp_lengths(&p->pp, err) != GT_OK)
      return gt_wrap(err, "Const \"%s\"", name);
  }
  qsort(ps, s->n, sizeof *ps, cmp_patch);
  for (size_t i = 1; i < s->n; i++)
    if (ps[i].c == ps[i - 1].c)
      return gt_fail(err, "tensor \"%s\" is given twice", ps[i].e->name);
  return GT_OK;
}

/* pbp_at_fn over this file's patch array. */
static const pb_patch *patch_at(const void *patches, size_t i, const gt_entry **e) {
  const patch *p = (const patch *)patches + i;
  *e = p->e;
  return &p->pp;
}

/* The entries written as tensor_content, for progress. */
static int write_all(const char *path, gt_storage *base, const patch *ps, size_t n,
                     const gt_save *s, gt_err *err) {
  gt_out o;
  if (pbp_open_out(&o, path, s, ps, n, patch_at, err) != GT_OK) return GT_ERR;
  size_t cursor = 0;
  for (size_t i = 0; i < n; i++)
    if (pbp_write(&o, base->data, &ps[i].pp, &cursor, err) != GT_OK) {
      gt_out_abort(&o);
      return gt_wrap(err, "Const \"%s\"", ps[i].e->name);
    }
  if (pbp_write_base(&o, base->data, cursor, base->size, err) != GT_OK) {
    gt_out_abort(&o);
    return GT_ERR;
  }
  return gt_out_commit(&o, err);
}

int gt_tfgraph_patch(const char *path, gt_storage *base, const gt_save *s,
                     gt_err *err) {
  struct stat st;
  if (stat(path, &st) == 0 && st.st_dev == base->dev && st.st_ino == base->ino)
    return gt_fail(err, "refusing to overwrite the graph being patched; write "
                   "to another path");
  if (gt_out_check_inputs(path, s->entries, s->n, err) != GT_OK) return GT_ERR;
  pconsts cs = {0};
  int64_t producer = -1;
  patch *ps = calloc(s->n ? s->n : 1, sizeof *ps);
  int rc = ps ? GT_OK : gt_fail(err, "out of memory");
  if (rc == GT_OK)
    rc = gt_tfg_walk(base->data, 0, base->size, collect_const, &cs, &producer, err);
  if (rc == GT_OK) rc = plan_all(base, &cs, s, ps, err);
  if (rc == GT_OK) rc = write_all(path, base, ps, s->n, s, err);
  for (size_t i = 0; ps && i < s->n; i++) patch_free(&ps[i]);
  free(ps);
  free(cs.v);
  return rc;
}
