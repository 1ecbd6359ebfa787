/* torch_write.c: torch.save's zip archive from a gt_save (torch_write.h).
 *
 * Three steps: plan (which record each tensor's storage goes to, with what
 * storage offset and strides), pickle (data.pkl, keys assigned to records in
 * the order the pickle first meets them, as torch does), write (the zip
 * records through zipwrite.h, each storage streamed from its source). */
#include "formats/torch/write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/copy.h"
#include "io/fileout.h"
#include "io/pickle_emit.h"
#include "formats/torch/types.h"
#include "io/zipwrite.h"

/* The legacy typed-storage class of dt (docs/formats/torch.md#storage-classes-and-dtypes), or NULL when
 * torch 1.13 has none (types saved only through UntypedStorage and
 * _rebuild_tensor_v3 in 2.x, strings). */
static const char *storage_class(gt_dtype dt) {
  const gt_torch_type *t = gt_torch_type_of(dt);
  return t ? t->storage : NULL;
}

/* Types torch >= 2.1 saves as torch.save does: an UntypedStorage whose
 * persistent id counts bytes, rebuilt by _rebuild_tensor_v3 with the dtype
 * as its last argument (torch.<dtype> global). torch 1.13 cannot load them. */
static const gt_torch_type *untyped_type(gt_dtype dt) {
  const gt_torch_type *t = gt_torch_type_of(dt);
  return t && !t->storage && t->gt >= 0 ? t : NULL;
}

/* Deeper value trees than this are refused (the pickle would be legal, but
 * no weights file nests so deep and the writer recurses). */
#define MAX_DEPTH 200
#define NO_SLOT UINT32_MAX

/* One data/<key> record. */
typedef struct rec {
  const gt_entry *e;     /* contiguous record: the entry it materialises */
  gt_storage *storage;   /* shared record: bytes [lo, lo + nbytes) of it */
  uint64_t lo, nbytes;
  gt_dtype dt;
  int64_t numel;         /* elements of dt in the record */
  int64_t key;           /* -1 until the pickle names it */
  uint32_t key_slot;     /* memo slot of the key string */
} rec;

/* How one entry is pickled. */
typedef struct tplan {
  size_t rec;
  int64_t offset;        /* storage offset, elements */
  int64_t stride[GT_MAXDIM];
  uint32_t slot;         /* memo slot of the rebuilt tensor, once pickled */
  size_t alias;          /* the entry pickled for this one (itself, or an
                            earlier one with the same record and view) */
} tplan;

typedef struct tw {
  const gt_save *s;
  const gt_value *tree;        /* what to pickle; NULL: an OrderedDict */
  tplan *tp;
  rec *recs;
  size_t nrecs;
  size_t *order;         /* record index by key */
  size_t nkeys;
  gt_pe pe;
  uint32_t slot_storage, slot_cpu;
} tw;

static int name_fail(gt_err *err, const char *name) {
  return gt_wrap(err, "tensor \"%.200s\"", name);
}

/* ------------------------------------------------------------------ plan */

static int shareable(const gt_tensor *t) {
  if (t->dtype != t->sdtype || t->swap || t->offset < 0) return 0;
  if (gt_tensor_numel(t) == 0) return 0;
  for (int d = 0; d < t->ndim; d++)
    if (t->strides[d] < 0) return 0;
  return 1;
}

static int cmp_share(const void *a, const void *b, void *ctx) {
  const gt_entry *e = ctx;
  const gt_tensor *x = &e[*(const size_t *)a].t, *y = &e[*(const size_t *)b].t;
  uintptr_t px = (uintptr_t)x->storage, py = (uintptr_t)y->storage;
  if (px != py) return px < py ? -1 : 1;
  if (x->dtype != y->dtype) return x->dtype < y->dtype ? -1 : 1;
  int64_t isz = (int64_t)gt_dtype_size(x->dtype);
  int64_t rx = x->offset % isz, ry = y->offset % isz;
  if (rx != ry) return rx < ry ? -1 : 1;
  size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
  return ia < ib ? -1 : ia > ib;
}

static int same_share(const gt_tensor *x, const gt_tensor *y) {
  int64_t isz = (int64_t)gt_dtype_size(x->dtype);
  return x->storage == y->storage && x->dtype == y->dtype &&
         x->offset % isz == y->offset % isz;
}

static void contiguous_strides(const gt_tensor *t, int64_t *stride) {
  int64_t st = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    stride[d] = st;
    st *= t->shape[d] > 1 ? t->shape[d] : 1;
  }
}

static int add_contiguous(tw *w, size_t i, gt_err *err) {
  const gt_entry *e = &w->s->entries[i];
  rec *r = &w->recs[w->nrecs];
  memset(r, 0, sizeof *r);
  r->e = e;
  r->dt = e->t.dtype;
  r->numel = gt_tensor_numel(&e->t);
  r->nbytes = (uint64_t)gt_tensor_nbytes(&e->t);
  r->key = -1;
  w->tp[i].rec = w->nrecs++;
  w->tp[i].offset = 0;
  contiguous_strides(&e->t, w->tp[i].stride);
  (void)err;
  return GT_OK;
}

/* An earlier entry of idx[0, k) with the view of idx[k] (offset, shape,
 * strides; they share a record and dtype), else idx[k]. torch pickles one
 * tensor object under two names once and then refers to it (tied weights),
 * so such entries are pickled once too. */
static size_t same_view(const tw *w, const size_t *idx, size_t k) {
  const gt_entry *en = w->s->entries;
  const gt_tensor *t = &en[idx[k]].t;
  for (size_t j = 0; j < k; j++) {
    const gt_tensor *u = &en[idx[j]].t;
    if (u->offset == t->offset && u->ndim == t->ndim &&
        memcmp(u->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) == 0 &&
        memcmp(u->strides, t->strides, sizeof(int64_t) * (size_t)t->ndim) == 0)
      return w->tp[idx[j]].alias;
  }
  return idx[k];
}

/* Entries idx[0, n) view one storage alike: one record over their bytes. */
static int add_shared(tw *w, const size_t *idx, size_t n, gt_err *err) {
  const gt_entry *en = w->s->entries;
  int64_t lo = INT64_MAX, hi = 0;
  for (size_t k = 0; k < n; k++) {
    int64_t a, b;
    if (gt_tensor_extent(&en[idx[k]].t, &a, &b, err) != GT_OK)
      return name_fail(err, en[idx[k]].name);
    if (a < lo) lo = a;
    if (b > hi) hi = b;
  }
  const gt_tensor *t0 = &en[idx[0]].t;
  int64_t isz = (int64_t)gt_dtype_size(t0->dtype);
  rec *r = &w->recs[w->nrecs];
  memset(r, 0, sizeof *r);
  r->storage = t0->storage;
  r->lo = (uint64_t)lo;
  r->nbytes = (uint64_t)(hi - lo);
  r->dt = t0->dtype;
  r->numel = (hi - lo) / isz;
  r->key = -1;
  for (size_t k = 0; k < n; k++) {
    const gt_tensor *t = &en[idx[k]].t;
    tplan *p = &w->tp[idx[k]];
    p->rec = w->nrecs;
    p->offset = (t->offset - lo) / isz;
    memcpy(p->stride, t->strides, sizeof p->stride);
    p->alias = same_view(w, idx, k);
  }
  w->nrecs++;
  return GT_OK;
}

static int check_dtypes(const gt_save *s, gt_err *err) {
  for (size_t i = 0; i < s->n; i++) {
    gt_dtype dt = s->entries[i].t.dtype;
    if (!storage_class(dt) && !untyped_type(dt))
      return gt_fail(err, "tensor \"%.200s\": dtype %s cannot be written to a "
                          "torch file (torch has no such type; cast it first)",
                     s->entries[i].name, gt_dtype_name(dt));
  }
  return GT_OK;
}

static int plan(tw *w, gt_err *err) {
  const gt_save *s = w->s;
  size_t n = s->n, m = 0;
  if (check_dtypes(s, err) != GT_OK) return GT_ERR;
  w->tp = calloc(n ? n : 1, sizeof *w->tp);
  w->recs = calloc(n ? n : 1, sizeof *w->recs);
  w->order = calloc(n ? n : 1, sizeof *w->order);
  size_t *idx = malloc((n ? n : 1) * sizeof *idx);
  if (!w->tp || !w->recs || !w->order || !idx) {
    free(idx);
    return gt_fail(err, "out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    w->tp[i].slot = NO_SLOT;
    w->tp[i].alias = i;
    if (shareable(&s->entries[i].t)) idx[m++] = i;
    else if (add_contiguous(w, i, err) != GT_OK) goto fail;
  }
  qsort_r(idx, m, sizeof *idx, cmp_share, (void *)s->entries);
  for (size_t a = 0, b; a < m; a = b) {
    for (b = a + 1; b < m && same_share(&s->entries[idx[a]].t,
                                        &s->entries[idx[b]].t); b++) {}
    int rc = b - a > 1 ? add_shared(w, idx + a, b - a, err)
                       : add_contiguous(w, idx[a], err);
    if (rc != GT_OK) goto fail;
  }
  free(idx);
  return GT_OK;
fail:
  free(idx);
  return GT_ERR;
}

/* ---------------------------------------------------------------- pickle */

static int pickle_value(tw *w, const gt_value *v, int depth, gt_err *err);

/* ('storage', torch.<X>Storage, key, 'cpu', numel) then BINPERSID; for the
 * v3 types ('storage', torch.storage.UntypedStorage, key, 'cpu', nbytes). */
static int pickle_storage(tw *w, rec *r, gt_err *err) {
  gt_pe *pe = &w->pe;
  if (gt_pe_op(pe, GT_PE_MARK, err) != GT_OK) return GT_ERR;
  if (w->slot_storage != NO_SLOT) {
    if (gt_pe_get(pe, w->slot_storage, err) != GT_OK) return GT_ERR;
  } else if (gt_pe_str(pe, "storage", 7, err) != GT_OK) {
    return GT_ERR;
  } else {
    w->slot_storage = pe->memo - 1;
  }
  int v3 = untyped_type(r->dt) != NULL;
  if ((v3 ? gt_pe_global(pe, "torch.storage", "UntypedStorage", err)
          : gt_pe_global(pe, "torch", storage_class(r->dt), err)) != GT_OK)
    return GT_ERR;
  if (r->key >= 0) {
    if (gt_pe_get(pe, r->key_slot, err) != GT_OK) return GT_ERR;
  } else {
    char key[24];
    int n = snprintf(key, sizeof key, "%zu", w->nkeys);
    if (gt_pe_str(pe, key, (size_t)n, err) != GT_OK) return GT_ERR;
    r->key_slot = pe->memo - 1;
    r->key = (int64_t)w->nkeys;
    w->order[w->nkeys++] = (size_t)(r - w->recs);
  }
  if (w->slot_cpu != NO_SLOT) {
    if (gt_pe_get(pe, w->slot_cpu, err) != GT_OK) return GT_ERR;
  } else if (gt_pe_str(pe, "cpu", 3, err) != GT_OK) {
    return GT_ERR;
  } else {
    w->slot_cpu = pe->memo - 1;
  }
  if (gt_pe_int(pe, v3 ? (int64_t)r->nbytes : r->numel, err) != GT_OK ||
      gt_pe_op(pe, GT_PE_TUPLE, err) != GT_OK ||
      gt_pe_put(pe, NULL, err) != GT_OK)
    return GT_ERR;
  return gt_pe_op(pe, GT_PE_BINPERSID, err);
}

/* An empty collections.OrderedDict() (backward hooks; also the start of a
 * state dict): GLOBAL, EMPTY_TUPLE, REDUCE, BINPUT. */
static int pickle_odict(gt_pe *pe, gt_err *err) {
  if (gt_pe_global(pe, "collections", "OrderedDict", err) != GT_OK ||
      gt_pe_op(pe, GT_PE_EMPTY_TUPLE, err) != GT_OK ||
      gt_pe_op(pe, GT_PE_REDUCE, err) != GT_OK)
    return GT_ERR;
  return gt_pe_put(pe, NULL, err);
}

static int pickle_tensor(tw *w, size_t i, gt_err *err) {
  gt_pe *pe = &w->pe;
  i = w->tp[i].alias;
  tplan *p = &w->tp[i];
  if (p->slot != NO_SLOT) return gt_pe_get(pe, p->slot, err);
  const gt_tensor *t = &w->s->entries[i].t;
  const gt_torch_type *v3 = untyped_type(w->recs[p->rec].dt);
  if (gt_pe_global(pe, "torch._utils", v3 ? "_rebuild_tensor_v3"
                                          : "_rebuild_tensor_v2", err) != GT_OK ||
      gt_pe_op(pe, GT_PE_MARK, err) != GT_OK ||
      pickle_storage(w, &w->recs[p->rec], err) != GT_OK ||
      gt_pe_int(pe, p->offset, err) != GT_OK ||
      gt_pe_int_tuple(pe, t->shape, t->ndim, err) != GT_OK ||
      gt_pe_int_tuple(pe, p->stride, t->ndim, err) != GT_OK ||
      gt_pe_bool(pe, 0, err) != GT_OK || pickle_odict(pe, err) != GT_OK ||
      (v3 && gt_pe_global(pe, "torch", v3->dtype, err) != GT_OK) ||
      gt_pe_op(pe, GT_PE_TUPLE, err) != GT_OK ||
      gt_pe_put(pe, NULL, err) != GT_OK ||
      gt_pe_op(pe, GT_PE_REDUCE, err) != GT_OK)
    return GT_ERR;
  return gt_pe_put(pe, &p->slot, err);
}

/* s[0, n) for a message: printable ASCII kept, other bytes as \xNN. */
static const char *shown(const char *s, size_t n, char out[64]) {
  size_t k = 0;
  for (size_t i = 0; i < n && k + 5 < 64; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c < 0x7f && c != '\\') out[k++] = (char)c;
    else k += (size_t)snprintf(out + k, 64 - k, "\\x%02x", c);
  }
  out[k] = '\0';
  return out;
}

static int pickle_str(tw *w, const gt_value *v, gt_err *err) {
  char buf[64];
  if (!gt_pe_utf8_ok(v->str, v->len))
    return gt_fail(err, "string \"%s\" is not UTF-8 (a Python str must be)",
                   shown(v->str, v->len, buf));
  return gt_pe_str(&w->pe, v->str, v->len, err);
}

static int pickle_key(tw *w, const gt_value *k, gt_err *err) {
  if (k->kind == GT_V_STR) return pickle_str(w, k, err);
  if (k->kind == GT_V_INT) return gt_pe_int(&w->pe, k->i, err);
  return gt_fail(err, "dict keys must be strings or integers");
}

/* CPython's _batch_setitems / _batch_appends: batches of GT_PE_BATCH, MARK
 * ... SETITEMS (APPENDS) for several items, SETITEM (APPEND) for one. */
static int pickle_items(tw *w, const gt_value *v, int depth, gt_err *err) {
  int map = v->kind == GT_V_MAP;
  for (size_t a = 0; a < v->n; a += GT_PE_BATCH) {
    size_t b = v->n - a > GT_PE_BATCH ? a + GT_PE_BATCH : v->n;
    if (b - a > 1 && gt_pe_op(&w->pe, GT_PE_MARK, err) != GT_OK) return GT_ERR;
    for (size_t i = a; i < b; i++) {
      if (map && pickle_key(w, v->keys[i], err) != GT_OK) return GT_ERR;
      if (pickle_value(w, v->items[i], depth + 1, err) != GT_OK) {
        char buf[64];
        if (map && v->keys[i]->kind == GT_V_STR)
          gt_wrap(err, "\"%s\"", shown(v->keys[i]->str, v->keys[i]->len, buf));
        else if (!map)
          gt_wrap(err, "item %zu", i + 1);
        return GT_ERR;
      }
    }
    unsigned char op = map ? (b - a > 1 ? GT_PE_SETITEMS : GT_PE_SETITEM)
                           : (b - a > 1 ? GT_PE_APPENDS : GT_PE_APPEND);
    if (gt_pe_op(&w->pe, op, err) != GT_OK) return GT_ERR;
  }
  return GT_OK;
}

static int all_tensors(const gt_value *v) {
  if (v->n == 0) return 0;
  for (size_t i = 0; i < v->n; i++)
    if (v->items[i]->kind != GT_V_TENSOR) return 0;
  return 1;
}

static int pickle_value(tw *w, const gt_value *v, int depth, gt_err *err) {
  gt_pe *pe = &w->pe;
  if (depth > MAX_DEPTH)
    return gt_fail(err, "values nested deeper than %d levels", MAX_DEPTH);
  switch (v->kind) {
  case GT_V_NIL: return gt_pe_op(pe, GT_PE_NONE, err);
  case GT_V_BOOL: return gt_pe_bool(pe, v->i != 0, err);
  case GT_V_INT: return gt_pe_int(pe, v->i, err);
  case GT_V_FLOAT: return gt_pe_float(pe, v->f, err);
  case GT_V_STR: return pickle_str(w, v, err);
  case GT_V_TENSOR:
    if (v->i < 0 || (uint64_t)v->i >= w->s->n)
      return gt_fail(err, "tensor index %lld out of range", (long long)v->i);
    return pickle_tensor(w, (size_t)v->i, err);
  case GT_V_LIST:
    if (gt_pe_op(pe, GT_PE_EMPTY_LIST, err) != GT_OK ||
        gt_pe_put(pe, NULL, err) != GT_OK)
      return GT_ERR;
    return pickle_items(w, v, depth, err);
  case GT_V_MAP:
    if (all_tensors(v)) {
      if (pickle_odict(pe, err) != GT_OK) return GT_ERR;
    } else if (gt_pe_op(pe, GT_PE_EMPTY_DICT, err) != GT_OK ||
               gt_pe_put(pe, NULL, err) != GT_OK) {
      return GT_ERR;
    }
    return pickle_items(w, v, depth, err);
  case GT_V_OBJECT:
    return gt_fail(err, "cannot write the placeholder object %.200s",
                   v->str ? v->str : "?");
  }
  return gt_fail(err, "unknown value kind");
}

/* No tree: an OrderedDict of every entry, in order. */
static int pickle_state_dict(tw *w, gt_err *err) {
  const gt_save *s = w->s;
  gt_pe *pe = &w->pe;
  if (pickle_odict(pe, err) != GT_OK) return GT_ERR;
  for (size_t a = 0; a < s->n; a += GT_PE_BATCH) {
    size_t b = s->n - a > GT_PE_BATCH ? a + GT_PE_BATCH : s->n;
    if (b - a > 1 && gt_pe_op(pe, GT_PE_MARK, err) != GT_OK) return GT_ERR;
    for (size_t i = a; i < b; i++) {
      const char *name = s->entries[i].name;
      size_t len = strlen(name);
      char buf[64];
      if (!gt_pe_utf8_ok(name, len))
        return gt_fail(err, "tensor name \"%s\" is not UTF-8 (a Python str "
                            "must be)", shown(name, len, buf));
      if (gt_pe_str(pe, name, len, err) != GT_OK ||
          pickle_tensor(w, i, err) != GT_OK)
        return GT_ERR;
    }
    if (gt_pe_op(pe, b - a > 1 ? GT_PE_SETITEMS : GT_PE_SETITEM, err) != GT_OK)
      return GT_ERR;
  }
  return GT_OK;
}

static int pickle_all(tw *w, gt_err *err) {
  gt_pe_init(&w->pe);
  w->slot_storage = w->slot_cpu = NO_SLOT;
  if (gt_pe_proto(&w->pe, err) != GT_OK) return GT_ERR;
  int rc = w->tree ? pickle_value(w, w->tree, 0, err)
                          : pickle_state_dict(w, err);
  if (rc != GT_OK) return GT_ERR;
  return gt_pe_stop(&w->pe, err);
}

/* ----------------------------------------------------------------- write */

/* The base name without directory and last extension, as torch names the
 * folder; "archive" when that is empty or not safe as a zip name. */
static char *folder_name(const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  const char *dot = strrchr(base, '.');
  size_t n = dot ? (size_t)(dot - base) : strlen(base);
  int ok = n > 0 && gt_pe_utf8_ok(base, n);
  for (size_t i = 0; ok && i < n; i++)
    if ((unsigned char)base[i] < 0x20 || base[i] == '\\') ok = 0;
  return ok ? strndup(base, n) : strdup("archive");
}

typedef struct sink_ctx {
  gt_zipw *z;
  gt_out *o;
} sink_ctx;

static int record_sink(void *ctx, const void *bytes, size_t n, gt_err *err) {
  sink_ctx *c = ctx;
  if (gt_zipw_data(c->z, bytes, n, err) != GT_OK) return GT_ERR;
  c->o->done += n;
  if (c->o->progress) c->o->progress(c->o->progress_ctx, c->o->done,
                                     c->o->total);
  return GT_OK;
}

static int write_record(gt_zipw *z, gt_out *o, const char *folder,
                        const rec *r, size_t key, void *buf, gt_err *err) {
  char name[4096];
  int len = snprintf(name, sizeof name, "%s/data/%zu", folder, key);
  if (len < 0 || (size_t)len >= sizeof name)
    return gt_fail(err, "archive name too long");
  if (gt_zipw_begin(z, name, r->nbytes, err) != GT_OK) return GT_ERR;
  sink_ctx c = {z, o};
  if (r->nbytes > 0) {
    int rc;
    if (r->e) {
      rc = gt_stream(&r->e->t, r->e->t.dtype, buf, GT_OUT_BUFSIZE,
                     record_sink, &c, 1, err);
      if (rc != GT_OK) return name_fail(err, r->e->name);
    } else {
      gt_tensor bytes;
      int64_t n = (int64_t)r->nbytes;
      memset(&bytes, 0, sizeof bytes);
      if (gt_tensor_make(&bytes, r->storage, GT_U8, 1, &n, (int64_t)r->lo,
                         err) != GT_OK)
        return GT_ERR;
      rc = gt_stream(&bytes, GT_U8, buf, GT_OUT_BUFSIZE, record_sink, &c, 1,
                     err);
      gt_tensor_free(&bytes);
      if (rc != GT_OK) return gt_wrap(err, "storage data/%zu", key);
    }
  }
  return gt_zipw_end(z, err);
}

static int write_archive(tw *w, gt_out *o, const char *folder, gt_err *err) {
  gt_zipw z;
  char name[4096];
  void *buf = NULL;
  int rc = GT_ERR;
  gt_zipw_init(&z, o, 0, 0);
  o->total = 0;
  for (size_t k = 0; k < w->nkeys; k++) o->total += w->recs[w->order[k]].nbytes;
  if (posix_memalign(&buf, 64, GT_OUT_BUFSIZE) != 0) {
    buf = NULL;
    gt_fail(err, "out of memory for the write buffer");
    goto done;
  }
  snprintf(name, sizeof name, "%s/data.pkl", folder);
  if (gt_zipw_add(&z, name, w->pe.buf, w->pe.len, err) != GT_OK) goto done;
  snprintf(name, sizeof name, "%s/byteorder", folder);
  if (gt_zipw_add(&z, name, "little", 6, err) != GT_OK) goto done;
  for (size_t k = 0; k < w->nkeys; k++)
    if (write_record(&z, o, folder, &w->recs[w->order[k]], k, buf, err) !=
        GT_OK)
      goto done;
  /* torch.load reads members by name and ignores others (1.13 and 2.x,
   * weights_only too): provenance rides along as one more stored member. */
  if (w->s->provenance) {
    snprintf(name, sizeof name, "%s/graft_provenance.json", folder);
    if (gt_zipw_add(&z, name, w->s->provenance, w->s->provenance_len, err) != GT_OK)
      goto done;
  }
  snprintf(name, sizeof name, "%s/version", folder);
  if (gt_zipw_add(&z, name, "3\n", 2, err) != GT_OK) goto done;
  rc = gt_zipw_finish(&z, err);
done:
  free(buf);
  gt_zipw_free(&z);
  return rc;
}

static void tw_free(tw *w) {
  free(w->tp);
  free(w->recs);
  free(w->order);
  gt_pe_free(&w->pe);
}

int gt_torch_write(const char *path, const gt_save *s, const gt_value *tree,
                   gt_err *err) {
  tw w;
  memset(&w, 0, sizeof w);
  w.s = s;
  w.tree = tree;
  gt_pe_init(&w.pe);
  if (gt_out_check_inputs(path, s->entries, s->n, err) != GT_OK ||
      plan(&w, err) != GT_OK || pickle_all(&w, err) != GT_OK) {
    tw_free(&w);
    return GT_ERR;
  }
  char *folder = folder_name(path);
  if (!folder) {
    tw_free(&w);
    return gt_fail(err, "out of memory");
  }
  if (strlen(folder) > 1024) folder[1024] = '\0';
  gt_out o;
  int rc = gt_out_open(&o, path, s, err);
  if (rc == GT_OK) {
    rc = write_archive(&w, &o, folder, err);
    if (rc == GT_OK) rc = gt_out_commit(&o, err);
    else gt_out_abort(&o);
  }
  free(folder);
  tw_free(&w);
  return rc;
}
