/* bundle_read.c: TensorFlow tensor bundle reader (bundle.h); the writer is
 * bundle_write.c.
 *
 * Sections: 1. paths and small helpers; 2. lazy storages (numeric entries,
 * string entries, partitioned variables), each verifying crc32c on first
 * use; 3. reading the index; 4. metadata; 5. verify. */
#include "formats/tf/bundle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checked.h"
#include "io/crc32c.h"
#include "io/grow.h"
#include "tensor_bundle.pb-c.h"
#include "formats/tf/proto.h"
#include "trackable_object_graph.pb-c.h"

#define OBJECT_GRAPH_KEY "_CHECKPOINTABLE_OBJECT_GRAPH"

/* ------------------------------------------------------------------ */
/* 1. Paths and helpers                                                 */
/* ------------------------------------------------------------------ */

static char *cat2(const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 1;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s%s", a, b);
  return s;
}

char *gt_tfbundle_index_path(const char *prefix) {
  return cat2(prefix, ".index");
}

char *gt_tfbundle_data_path(const char *prefix, int shard, int num_shards) {
  char tail[48];
  snprintf(tail, sizeof tail, ".data-%05d-of-%05d", shard, num_shards);
  return cat2(prefix, tail);
}

static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

/* "<file>: key \"<name>\"" for errors raised long after open. */
static char *label(const char *file, const char *key, size_t klen) {
  int n = klen > 200 ? 200 : (int)klen;
  size_t cap = strlen(file) + (size_t)n + 16;
  char *s = malloc(cap);
  if (s) snprintf(s, cap, "%s: key \"%.*s\"", file, n, key);
  return s;
}

/* Walk a DT_STRING entry p[0, size): numel varint lengths, the masked
 * checksum of the lengths, then the bytes. Fills heads (may be NULL) with
 * views into p and checks both checksums. */
static int parse_strings(const char *what, const unsigned char *p,
                         uint64_t size, uint64_t numel, uint32_t stored,
                         gt_str *heads, gt_err *err) {
  size_t i = 0;
  uint32_t c = 0;
  uint64_t total = 0;
  for (uint64_t k = 0; k < numel; k++) {
    uint64_t len;
    if (gt_tf_varint(p, (size_t)size, &i, &len) != 0)
      return gt_fail(err, "%s: string lengths run past the entry (%llu bytes)",
                     what, (unsigned long long)size);
    unsigned char le[8];
    for (int b = 0; b < 8; b++) le[b] = (unsigned char)(len >> (8 * b));
    c = gt_crc32c_extend(c, le, len <= 0xFFFFFFFFu ? 4 : 8);
    if (gt_add_u64(total, len, (unsigned long long *)&total))
      return gt_fail(err, "%s: string lengths overflow", what);
    if (heads) heads[k].n = (size_t)len;
  }
  if (size - i < 4)
    return gt_fail(err, "%s: string lengths run past the entry (%llu bytes)",
                   what, (unsigned long long)size);
  if (rd32(p + i) != gt_crc32c_mask(c))
    return gt_fail(err, "%s: string length checksum mismatch", what);
  c = gt_crc32c_extend(c, p + i, 4);
  i += 4;
  if (total > size - i)
    return gt_fail(err, "%s: string lengths (%llu bytes) overrun the entry "
                        "(%llu bytes left)", what, (unsigned long long)total,
                   (unsigned long long)(size - i));
  if (gt_crc32c_mask(gt_crc32c_extend(c, p + i, (size_t)total)) != stored)
    return gt_fail(err, "%s: crc32c mismatch: the data file is corrupt", what);
  for (uint64_t k = 0; heads && k < numel; k++) {
    heads[k].p = (const char *)p + i;
    i += heads[k].n;
  }
  return GT_OK;
}

/* ------------------------------------------------------------------ */
/* 2. Lazy storages                                                     */
/* ------------------------------------------------------------------ */

/* A DT_STRING entry, parsed (and both checksums checked) on first use. */
typedef struct entry_ctx {
  char *what;
  uint64_t off, size, numel;
  uint32_t crc;
} entry_ctx;

static void free_entry(void *p) {
  entry_ctx *c = p;
  free(c->what);
  free(c);
}

static int load_string(gt_storage *s, gt_err *err) {
  const entry_ctx *c = s->ctx;
  if (gt_storage_ready(s->parent, err) != GT_OK) return GT_ERR;
  if (gt_storage_alloc_data(s, err) != GT_OK) return GT_ERR;
  return parse_strings(c->what, s->parent->data + c->off, c->size, c->numel,
                       c->crc, (gt_str *)(void *)s->data, err);
}

/* One stored slice of a partitioned variable. */
typedef struct slice_src {
  gt_storage *shard;   /* retained */
  char *what;
  uint64_t off, size;
  uint32_t crc;
  int64_t start[GT_MAXDIM], len[GT_MAXDIM];
} slice_src;

typedef struct part_ctx {
  int ndim;
  int64_t shape[GT_MAXDIM];
  size_t es;
  slice_src *src;
  size_t n;
} part_ctx;

static void free_part(void *p) {
  part_ctx *c = p;
  for (size_t i = 0; i < c->n; i++) {
    if (c->src[i].shard) gt_storage_release(c->src[i].shard);
    free(c->src[i].what);
  }
  free(c->src);
  free(c);
}

/* Copy the row-major slice bytes into the full tensor at its position. */
static void place_slice(const part_ctx *c, const slice_src *sl,
                        const unsigned char *from, unsigned char *to) {
  int nd = c->ndim;
  int64_t idx[GT_MAXDIM] = {0};
  int64_t rows = 1;
  for (int d = 0; d < nd - 1; d++) rows *= sl->len[d];
  size_t run = (size_t)sl->len[nd - 1] * c->es;
  if (run == 0) return;
  for (int64_t r = 0; r < rows; r++) {
    int64_t off = 0;
    for (int d = 0; d < nd; d++)
      off = off * c->shape[d] + sl->start[d] + (d < nd - 1 ? idx[d] : 0);
    memcpy(to + (size_t)off * c->es, from, run);
    from += run;
    for (int d = nd - 2; d >= 0; d--) {
      if (++idx[d] < sl->len[d]) break;
      idx[d] = 0;
    }
  }
}

static int load_part(gt_storage *s, gt_err *err) {
  const part_ctx *c = s->ctx;
  if (gt_storage_alloc_data(s, err) != GT_OK) return GT_ERR;
  memset(s->data, 0, s->size);
  for (size_t i = 0; i < c->n; i++) {
    const slice_src *sl = &c->src[i];
    if (gt_storage_ready(sl->shard, err) != GT_OK) return GT_ERR;
    const unsigned char *p = sl->shard->data + sl->off;
    if (gt_sum_check(GT_SUM_CRC32C_MASKED, sl->what, p, sl->size, sl->crc, err) != GT_OK) return GT_ERR;
    place_slice(c, sl, p, s->data);
  }
  return GT_OK;
}

/* ------------------------------------------------------------------ */
/* 3. Reading                                                           */
/* ------------------------------------------------------------------ */

typedef struct bundle {
  const char *prefix;
  char *index_path;
  gt_tftable table;
  int num_shards, big;
  Tensorflow__BundleHeaderProto *hdr;
  gt_storage **shards;
  char **shard_paths;
  /* Per table entry ([0] unused): unpacked on demand by entry_get and
   * freed by entry_drop as soon as it is used, so opening an index of
   * 10^6 entries never holds 10^6 unpacked protos at once. */
  Tensorflow__BundleEntryProto **ent;
} bundle;

static void bundle_close(bundle *b) {
  for (int i = 0; b->shards && i < b->num_shards; i++) {
    if (b->shards[i]) gt_storage_release(b->shards[i]);
    if (b->shard_paths) free(b->shard_paths[i]);
  }
  free(b->shards);
  free(b->shard_paths);
  for (size_t i = 0; b->ent && i < b->table.n; i++)
    if (b->ent[i]) tensorflow__bundle_entry_proto__free_unpacked(b->ent[i], NULL);
  free(b->ent);
  if (b->hdr) tensorflow__bundle_header_proto__free_unpacked(b->hdr, NULL);
  gt_tftable_close(&b->table);
  free(b->index_path);
  memset(b, 0, sizeof *b);
}

static int read_header(bundle *b, gt_err *err) {
  const gt_tftable *t = &b->table;
  if (t->n == 0 || t->kv[0].klen != 0)
    return gt_fail(err, "%s: no header entry (key \"\"): not a tensor bundle",
                   b->index_path);
  b->hdr = tensorflow__bundle_header_proto__unpack(NULL, t->kv[0].vlen,
                                                    t->kv[0].val);
  if (!b->hdr)
    return gt_fail(err, "%s: header entry is not a BundleHeaderProto",
                   b->index_path);
  const Tensorflow__BundleHeaderProto *h = b->hdr;
  if (h->num_shards < 1 || h->num_shards > GT_TFBUNDLE_MAX_SHARDS)
    return gt_fail(err, "%s: header says %d shards", b->index_path,
                   (int)h->num_shards);
  if (h->endianness != 0 && h->endianness != 1)
    return gt_fail(err, "%s: unknown endianness %d", b->index_path,
                   (int)h->endianness);
  if (h->version) {
    /* TF's bundle consumer version is 1, minimum producer 0. */
    if (h->version->producer < 0 || h->version->min_consumer > 1)
      return gt_fail(err, "%s: written by an incompatible TensorFlow "
                          "(producer %d, min_consumer %d)", b->index_path,
                     (int)h->version->producer, (int)h->version->min_consumer);
    for (size_t i = 0; i < h->version->n_bad_consumers; i++)
      if (h->version->bad_consumers[i] == 1)
        return gt_fail(err, "%s: this bundle version is marked bad",
                       b->index_path);
  }
  b->num_shards = h->num_shards;
  b->big = h->endianness == 1;
  return GT_OK;
}

static int map_shards(bundle *b, gt_err *err) {
  b->shards = calloc((size_t)b->num_shards, sizeof *b->shards);
  b->shard_paths = calloc((size_t)b->num_shards, sizeof *b->shard_paths);
  if (!b->shards || !b->shard_paths) return gt_fail(err, "out of memory");
  for (int i = 0; i < b->num_shards; i++) {
    b->shard_paths[i] = gt_tfbundle_data_path(b->prefix, i, b->num_shards);
    if (!b->shard_paths[i]) return gt_fail(err, "out of memory");
    b->shards[i] = gt_storage_map(b->shard_paths[i], err);
    if (!b->shards[i])
      return gt_wrap(err, "missing or unreadable data shard %s",
                     b->shard_paths[i]);
  }
  return GT_OK;
}

static int unpack_entries(bundle *b, gt_err *err) {
  b->ent = calloc(b->table.n ? b->table.n : 1, sizeof *b->ent);
  if (!b->ent) return gt_fail(err, "%s: out of memory for %zu entries",
                              b->index_path, b->table.n);
  return GT_OK;
}

/* Table entry i (>= 1) unpacked, kept until entry_drop(b, i). */
static const Tensorflow__BundleEntryProto *entry_get(bundle *b, size_t i,
                                                     gt_err *err) {
  const gt_tfkv *kv = &b->table.kv[i];
  if (!b->ent[i])
    b->ent[i] = tensorflow__bundle_entry_proto__unpack(NULL, kv->vlen, kv->val);
  if (!b->ent[i])
    gt_fail(err, "%s: key \"%.*s\": value is not a BundleEntryProto",
            b->index_path, (int)(kv->klen > 200 ? 200 : kv->klen),
            (const char *)kv->key);
  return b->ent[i];
}

static void entry_drop(bundle *b, size_t i) {
  if (b->ent[i]) tensorflow__bundle_entry_proto__free_unpacked(b->ent[i], NULL);
  b->ent[i] = NULL;
}

static int open_bundle(bundle *b, const char *prefix, gt_err *err) {
  memset(b, 0, sizeof *b);
  b->prefix = prefix;
  b->index_path = gt_tfbundle_index_path(prefix);
  if (!b->index_path) return gt_fail(err, "out of memory");
  gt_storage *f = gt_storage_map(b->index_path, err);
  if (!f) return gt_wrap(err, "%s", b->index_path);
  int rc = gt_tftable_open(&b->table, f, err);
  gt_storage_release(f);
  if (rc != GT_OK) return gt_wrap(err, "%s", b->index_path);
  if (read_header(b, err) != GT_OK || map_shards(b, err) != GT_OK ||
      unpack_entries(b, err) != GT_OK)
    return GT_ERR;
  return GT_OK;
}

/* Where an entry's bytes lie: shard_id, byte range and masked crc32c (a
 * BundleEntryProto's fields, kept by the compact index). */
typedef struct loc {
  int32_t shard;
  int64_t offset, size;
  uint32_t crc;
} loc;

static loc loc_of(const Tensorflow__BundleEntryProto *e) {
  loc l = {e->shard_id, e->offset, e->size, e->crc32c};
  return l;
}

/* Where an entry's bytes are: shard and range checked against the file. */
static int entry_range(const bundle *b, const char *what, loc e, gt_err *err) {
  if (e.shard < 0 || e.shard >= b->num_shards)
    return gt_fail(err, "%s: shard_id %d is not below num_shards %d", what,
                   (int)e.shard, b->num_shards);
  uint64_t end, have = b->shards[e.shard]->size;
  if (e.offset < 0 || e.size < 0 ||
      gt_add_u64((uint64_t)e.offset, (uint64_t)e.size,
                 (unsigned long long *)&end) || end > have)
    return gt_fail(err, "%s: bytes [%lld, +%lld) lie past the end of %s "
                        "(%llu bytes)", what, (long long)e.offset,
                   (long long)e.size, b->shard_paths[e.shard],
                   (unsigned long long)have);
  return GT_OK;
}

/* Whether a plain (unsliced) entry of numel dt elements can be made from
 * e: its range lies in its shard, a numeric entry's size is numel elements
 * and a DT_STRING entry has room for numel lengths. Opening checks this for
 * every entry; entry_storage relies on it. */
static int entry_check(const bundle *b, const char *what, loc e, gt_dtype dt,
                       int64_t numel, gt_err *err) {
  if (entry_range(b, what, e, err) != GT_OK) return GT_ERR;
  if (dt != GT_STRING) {
    unsigned long long want;
    if (gt_mul_u64((unsigned long long)numel, gt_dtype_size(dt), &want) ||
        want != (uint64_t)e.size)
      return gt_fail(err, "%s: size %lld does not match %s %lld elements", what,
                     (long long)e.size, gt_dtype_name(dt), (long long)numel);
    return GT_OK;
  }
  /* Each element needs at least its one-byte length. */
  if ((uint64_t)numel > (uint64_t)e.size ||
      (uint64_t)numel > SIZE_MAX / sizeof(gt_str))
    return gt_fail(err, "%s: %lld strings cannot fit in %lld bytes", what,
                   (long long)numel, (long long)e.size);
  return GT_OK;
}

/* The storage of a plain (unsliced) entry, checked by entry_check.
 * DT_STRING entries are parsed on first use; numeric ones are checked
 * storages (crc32c on first use, then in place when aligned). */
static gt_storage *entry_storage(const bundle *b, const char *what, loc e,
                                 gt_dtype dt, int64_t numel, gt_err *err) {
  if (entry_check(b, what, e, dt, numel, err) != GT_OK) return NULL;
  gt_storage *sh = b->shards[e.shard];
  if (dt != GT_STRING) {
    gt_checked k = {.kind = GT_SUM_CRC32C_MASKED, .sum = e.crc,
                    .sum_off = (uint64_t)e.offset, .sum_len = (uint64_t)e.size,
                    .data_off = (uint64_t)e.offset, .align = gt_dtype_size(dt)};
    /* Complex types align on their component. */
    if (dt == GT_C64 || dt == GT_C128) k.align /= 2;
    return gt_checked_storage(sh, &k, k.sum_len, strdup(what), err);
  }
  entry_ctx *c = calloc(1, sizeof *c);
  if (!c || !(c->what = strdup(what))) {
    free(c);
    return gt_fail(err, "out of memory"), NULL;
  }
  c->off = (uint64_t)e.offset;
  c->size = (uint64_t)e.size;
  c->numel = (uint64_t)numel;
  c->crc = e.crc;
  return gt_storage_lazy((size_t)numel * sizeof(gt_str), sh, load_string, c,
                         free_entry, err);
}

/* Table index of key, or -1. */
static long find_key(const gt_tftable *t, const unsigned char *k, size_t kn) {
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = gt_tftable_cmp(t->kv[mid].key, t->kv[mid].klen, k, kn);
    if (c == 0) return (long)mid;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

/* out's bytes from slice entry e (of the tensor `name`). */
static int slice_from(const bundle *b, const Tensorflow__BundleEntryProto *e,
                      int ndim, gt_dtype dt, const char *name, slice_src *out,
                      gt_err *err) {
  out->what = label(b->index_path, name, strlen(name));
  if (!out->what) return gt_fail(err, "out of memory");
  if (entry_range(b, out->what, loc_of(e), err) != GT_OK) return GT_ERR;
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) n *= out->len[d];
  if ((uint64_t)e->size != (uint64_t)n * gt_dtype_size(dt))
    return gt_fail(err, "%s: slice entry has %lld bytes for %lld elements",
                   out->what, (long long)e->size, (long long)n);
  out->off = (uint64_t)e->offset;
  out->size = (uint64_t)e->size;
  out->crc = e->crc32c;
  out->shard = b->shards[e->shard_id];
  gt_storage_retain(out->shard);
  return GT_OK;
}

static int slice_source(bundle *b, const char *name,
                        const Tensorflow__TensorSliceProto *sp, int ndim,
                        const int64_t *shape, gt_dtype dt, slice_src *out,
                        gt_err *err) {
  gt_tfbuf key = {0};
  if (gt_tf_slice_bounds(sp, ndim, shape, out->start, out->len, err) != GT_OK)
    return gt_wrap(err, "%s: key \"%s\"", b->index_path, name);
  if (gt_tf_slice_key(name, strlen(name), sp, ndim, &key, err) != GT_OK)
    return GT_ERR;
  long at = find_key(&b->table, key.p, key.n);
  gt_tfbuf_free(&key);
  if (at < 0)
    return gt_fail(err, "%s: key \"%s\": a slice listed in the entry has no "
                        "slice entry", b->index_path, name);
  const Tensorflow__BundleEntryProto *e = entry_get(b, (size_t)at, err);
  if (!e) return GT_ERR;
  int rc = slice_from(b, e, ndim, dt, name, out, err);
  entry_drop(b, (size_t)at);
  return rc;
}

static gt_storage *part_storage(bundle *b, const char *name,
                                const Tensorflow__BundleEntryProto *e,
                                gt_dtype dt, int ndim, const int64_t *shape,
                                gt_err *err) {
  if (dt == GT_STRING || ndim == 0)
    return gt_fail(err, "%s: key \"%s\": partitioned %s tensors are not "
                        "supported", b->index_path, name,
                   ndim ? "string" : "scalar"), NULL;
  part_ctx *c = calloc(1, sizeof *c);
  if (c) c->src = calloc(e->n_slices, sizeof *c->src);
  if (!c || !c->src) {
    free(c);
    return gt_fail(err, "out of memory"), NULL;
  }
  c->ndim = ndim;
  memcpy(c->shape, shape, (size_t)ndim * sizeof *shape);
  c->es = gt_dtype_size(dt);
  for (size_t i = 0; i < e->n_slices; i++, c->n++)
    if (slice_source(b, name, e->slices[i], ndim, shape, dt, &c->src[i], err) !=
        GT_OK) {
      c->n++;
      free_part(c);
      return NULL;
    }
  int64_t numel;
  gt_numel(ndim, shape, &numel, err);
  return gt_storage_lazy((size_t)numel * c->es, NULL, load_part, c, free_part,
                         err);
}

/* ------------------------------------------------------------------ */
/* 4. Metadata                                                          */
/* ------------------------------------------------------------------ */

static gt_value *meta_map(void) { return gt_value_new(GT_V_MAP); }

static int set_int(gt_value *map, const char *k, int64_t v) {
  return gt_value_setk(map, k, gt_value_int(v));
}

static int set_str(gt_value *map, const char *k, const char *s) {
  return gt_value_setk(map, k, gt_value_str(s, strlen(s)));
}

/* meta.entries[key]: {shard_id, offset, size, crc32c, dtype = "DT_..."}. */
static gt_value *entry_meta(loc e, int tfdt) {
  gt_value *d = meta_map();
  char nb[24];
  if (!d || set_int(d, "shard_id", e.shard) || set_int(d, "offset", e.offset) ||
      set_int(d, "size", e.size) || set_int(d, "crc32c", e.crc) ||
      set_str(d, "dtype", gt_tf_dtype_name(tfdt, nb))) {
    gt_value_free(d);
    return NULL;
  }
  return d;
}

static gt_value *slices_meta(const Tensorflow__BundleEntryProto *e) {
  gt_value *l = gt_value_new(GT_V_LIST);
  for (size_t i = 0; l && i < e->n_slices; i++) {
    gt_value *st = gt_value_new(GT_V_LIST), *ln = gt_value_new(GT_V_LIST),
             *d = meta_map();
    const Tensorflow__TensorSliceProto *sp = e->slices[i];
    for (size_t k = 0; st && ln && k < sp->n_extent; k++) {
      int has = sp->extent[k]->has_length_case ==
                TENSORFLOW__TENSOR_SLICE_PROTO__EXTENT__HAS_LENGTH_LENGTH;
      gt_value_push(st, gt_value_int(has ? sp->extent[k]->start : 0));
      gt_value_push(ln, gt_value_int(has ? sp->extent[k]->length : -1));
    }
    if (!d || gt_value_setk(d, "start", st) || gt_value_setk(d, "length", ln) ||
        gt_value_push(l, d)) {
      gt_value_free(l);
      return NULL;
    }
  }
  return l;
}

static gt_value *object_graph_value(const Tensorflow__TrackableObjectGraph *g) {
  gt_value *nodes = gt_value_new(GT_V_LIST);
  for (size_t i = 0; nodes && i < g->n_nodes; i++) {
    const Tensorflow__TrackableObjectGraph__TrackableObject *o = g->nodes[i];
    gt_value *node = meta_map(), *ch = gt_value_new(GT_V_LIST),
             *at = gt_value_new(GT_V_LIST), *sv = gt_value_new(GT_V_LIST);
    int bad = !node || !ch || !at || !sv;
    for (size_t k = 0; !bad && k < o->n_children; k++) {
      gt_value *r = meta_map();
      bad = !r || set_int(r, "node_id", o->children[k]->node_id) ||
            set_str(r, "local_name", o->children[k]->local_name) ||
            gt_value_push(ch, r);
    }
    for (size_t k = 0; !bad && k < o->n_attributes; k++) {
      gt_value *r = meta_map();
      bad = !r || set_str(r, "name", o->attributes[k]->name) ||
            set_str(r, "full_name", o->attributes[k]->full_name) ||
            set_str(r, "checkpoint_key", o->attributes[k]->checkpoint_key) ||
            gt_value_push(at, r);
    }
    for (size_t k = 0; !bad && k < o->n_slot_variables; k++) {
      const Tensorflow__TrackableObjectGraph__TrackableObject__SlotVariableReference
          *s = o->slot_variables[k];
      gt_value *r = meta_map();
      bad = !r ||
            set_int(r, "original_variable_node_id", s->original_variable_node_id) ||
            set_str(r, "slot_name", s->slot_name) ||
            set_int(r, "slot_variable_node_id", s->slot_variable_node_id) ||
            gt_value_push(sv, r);
    }
    if (bad || gt_value_setk(node, "children", ch) ||
        gt_value_setk(node, "attributes", at) ||
        gt_value_setk(node, "slot_variables", sv) || gt_value_push(nodes, node)) {
      if (bad) {
        gt_value_free(ch);
        gt_value_free(at);
        gt_value_free(sv);
        gt_value_free(node);
      }
      gt_value_free(nodes);
      return NULL;
    }
  }
  gt_value *d = meta_map();
  if (!d || gt_value_setk(d, "nodes", nodes)) {
    gt_value_free(d);
    return NULL;
  }
  return d;
}

/* Decode _CHECKPOINTABLE_OBJECT_GRAPH (a string scalar) into *out (NULL
 * when the bundle has none). Its checksum is verified here. */
static int object_graph(bundle *b, gt_value **out, gt_err *err) {
  *out = NULL;
  long at = find_key(&b->table, (const unsigned char *)OBJECT_GRAPH_KEY,
                     strlen(OBJECT_GRAPH_KEY));
  if (at < 0) return GT_OK;
  const Tensorflow__BundleEntryProto *e = entry_get(b, (size_t)at, err);
  if (!e) return GT_ERR;
  char *what = label(b->index_path, OBJECT_GRAPH_KEY, strlen(OBJECT_GRAPH_KEY));
  if (!what) return entry_drop(b, (size_t)at), gt_fail(err, "out of memory");
  gt_str s;
  int rc = GT_ERR;
  if (e->dtype != TENSORFLOW__DATA_TYPE__DT_STRING || !e->shape ||
      e->shape->n_dim != 0) {
    gt_fail(err, "%s: not a string scalar", what);
  } else if (entry_range(b, what, loc_of(e), err) == GT_OK &&
             parse_strings(what, b->shards[e->shard_id]->data + e->offset,
                           (uint64_t)e->size, 1, e->crc32c, &s, err) == GT_OK) {
    Tensorflow__TrackableObjectGraph *g = tensorflow__trackable_object_graph__unpack(
        NULL, s.n, (const uint8_t *)s.p);
    if (!g) {
      gt_fail(err, "%s: not a TrackableObjectGraph", what);
    } else {
      *out = object_graph_value(g);
      tensorflow__trackable_object_graph__free_unpacked(g, NULL);
      rc = *out ? GT_OK : gt_fail(err, "out of memory");
    }
  }
  free(what);
  entry_drop(b, (size_t)at);
  return rc;
}

/* ------------------------------------------------------------------ */
/* 4b. The compact index                                                */
/* ------------------------------------------------------------------ */

/* What opening keeps of one table entry (other than the header and the
 * slice entries), in key order: 48 bytes, its key in x->keys and its dims
 * in x->dims. Every check a tensor needs is made when the index is opened;
 * its storage, view and meta are made only when asked for. */
enum { REC_LISTED = 1,   /* a tensor graft lists (else meta.skipped) */
       REC_SLICED = 2 }; /* a partitioned variable (meta.partitioned) */

typedef struct tfrec {
  uint64_t key;    /* offset of its key in x->keys */
  int64_t offset;  /* in its shard; for a listed sliced entry, its x->parts index */
  int64_t size;
  uint32_t dims;   /* index of dim 0 in x->dims */
  uint16_t klen;   /* < MAX_KEY */
  uint8_t ndim, flags;
  int32_t shard, tfdt;
  uint32_t crc;    /* masked crc32c */
  uint8_t dt;      /* gt_dtype of a listed entry */
} tfrec;

/* Longest key that names a tensor (longer ones are refused). */
#define MAX_KEY 4096

struct gt_tfindex {
  bundle b;           /* shards, paths and the index path; table closed */
  tfrec *rec;
  size_t nrec;
  unsigned char *keys;
  size_t nkeys;
  int64_t *dims;
  size_t ndims, dims_cap;
  uint32_t *order;    /* listed records in data order */
  size_t nlisted;
  gt_tensor *parts;   /* partitioned variables, made when opened */
  size_t nparts, parts_cap;
  gt_value *meta;     /* all of meta but entries; NULL once taken */
};

void gt_tfindex_free(gt_tfindex *x) {
  if (!x) return;
  for (size_t i = 0; i < x->nparts; i++) gt_tensor_free(&x->parts[i]);
  free(x->parts);
  free(x->rec);
  free(x->keys);
  free(x->dims);
  free(x->order);
  gt_value_free(x->meta);
  bundle_close(&x->b);
  free(x);
}

size_t gt_tfindex_count(const gt_tfindex *x) { return x->nlisted; }
size_t gt_tfindex_nentries(const gt_tfindex *x) { return x->nrec; }
const char *gt_tfindex_path(const gt_tfindex *x) { return x->b.index_path; }

size_t gt_tfindex_listed(const gt_tfindex *x, size_t k) { return x->order[k]; }

const char *gt_tfindex_key(const gt_tfindex *x, size_t r, size_t *len) {
  *len = x->rec[r].klen;
  return (const char *)x->keys + x->rec[r].key;
}

void gt_tfindex_entry(const gt_tfindex *x, size_t r, gt_tfentry *out) {
  const tfrec *c = &x->rec[r];
  out->key = (const char *)x->keys + c->key;
  out->klen = c->klen;
  out->shard_id = c->shard;
  out->offset = c->offset;
  out->size = c->size;
  out->crc32c = c->crc;
  out->tf_dtype = c->tfdt;
  out->listed = (c->flags & REC_LISTED) != 0;
  out->sliced = (c->flags & REC_SLICED) != 0;
}

long gt_tfindex_find(const gt_tfindex *x, const char *key, size_t len) {
  size_t lo = 0, hi = x->nrec;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const tfrec *c = &x->rec[mid];
    int d = gt_tftable_cmp(x->keys + c->key, c->klen,
                           (const unsigned char *)key, len);
    if (d == 0) return (long)mid;
    if (d < 0) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

int gt_tfindex_peek(const gt_tfindex *x, size_t r, gt_tensor *out) {
  const tfrec *c = &x->rec[r];
  if (!(c->flags & REC_LISTED)) return GT_ERR;
  if (c->flags & REC_SLICED) {
    *out = x->parts[c->offset];
    out->storage = NULL;
    return GT_OK;
  }
  memset(out, 0, sizeof *out);
  out->dtype = out->sdtype = (gt_dtype)c->dt;
  out->ndim = c->ndim;
  memcpy(out->shape, x->dims + c->dims, c->ndim * sizeof *out->shape);
  return GT_OK;
}

int gt_tfindex_tensor(const gt_tfindex *x, size_t r, gt_tensor *out,
                      gt_err *err) {
  const tfrec *c = &x->rec[r];
  memset(out, 0, sizeof *out);
  if (!(c->flags & REC_LISTED))
    return gt_fail(err, "%s: entry %zu is not a tensor", x->b.index_path, r);
  if (c->flags & REC_SLICED) {
    gt_tensor_ref(out, &x->parts[c->offset]);
    return GT_OK;
  }
  char *what = label(x->b.index_path, (const char *)x->keys + c->key, c->klen);
  if (!what) return gt_fail(err, "%s: out of memory", x->b.index_path);
  gt_dtype dt = (gt_dtype)c->dt;
  const int64_t *shape = x->dims + c->dims;
  int64_t numel = 1;
  for (int d = 0; d < c->ndim; d++) numel *= shape[d]; /* checked at open */
  loc e = {c->shard, c->offset, c->size, c->crc};
  gt_storage *s = entry_storage(&x->b, what, e, dt, numel, err);
  int rc = GT_ERR;
  if (s) {
    rc = gt_tensor_make(out, s, dt, c->ndim, shape, 0, err);
    gt_storage_release(s);
    if (rc != GT_OK) gt_wrap(err, "%s", what);
  }
  free(what);
  if (rc != GT_OK) return GT_ERR;
  out->swap = x->b.big && dt != GT_STRING && gt_dtype_size(dt) > 1;
  return GT_OK;
}

gt_value *gt_tfindex_take_meta(gt_tfindex *x) {
  gt_value *m = x->meta;
  x->meta = NULL;
  return m;
}

/* The meta being built while opening. */
typedef struct meta_maps {
  gt_value *parts, *skipped;
} meta_maps;

static int add_dims(gt_tfindex *x, tfrec *c, int ndim, const int64_t *shape,
                    gt_err *err) {
  if (x->ndims + (size_t)ndim > UINT32_MAX)
    return gt_fail(err, "%s: too many dimensions in all", x->b.index_path);
  if (gt_grow((void **)&x->dims, &x->dims_cap, x->ndims + (size_t)ndim,
              sizeof *x->dims))
    return gt_fail(err, "%s: out of memory", x->b.index_path);
  c->dims = (uint32_t)x->ndims;
  c->ndim = (uint8_t)ndim;
  if (ndim) memcpy(x->dims + x->ndims, shape, (size_t)ndim * sizeof *shape);
  x->ndims += (size_t)ndim;
  return GT_OK;
}

/* A partitioned variable is made now, from its slice entries (which only
 * the table being read can find). */
static int add_part(gt_tfindex *x, tfrec *c, const char *name,
                    const Tensorflow__BundleEntryProto *e, const int64_t *shape,
                    gt_err *err) {
  if (gt_grow((void **)&x->parts, &x->parts_cap, x->nparts + 1, sizeof *x->parts))
    return gt_fail(err, "%s: out of memory", x->b.index_path);
  gt_dtype dt = (gt_dtype)c->dt;
  gt_storage *s = part_storage(&x->b, name, e, dt, c->ndim, shape, err);
  if (!s) return GT_ERR;
  gt_tensor *t = &x->parts[x->nparts];
  int rc = gt_tensor_make(t, s, dt, c->ndim, shape, 0, err);
  gt_storage_release(s);
  if (rc != GT_OK) return gt_wrap(err, "%s: key \"%s\"", x->b.index_path, name);
  t->swap = x->b.big && gt_dtype_size(dt) > 1;
  c->offset = (int64_t)x->nparts++;
  return GT_OK;
}

/* Record of table entry i: checked, its key and dims kept. */
static int add_record(gt_tfindex *x, size_t i, const Tensorflow__BundleEntryProto *e,
                      meta_maps *mm, gt_err *err) {
  const gt_tfkv *kv = &x->b.table.kv[i];
  if (kv->klen >= MAX_KEY || memchr(kv->key, 0, kv->klen))
    return gt_fail(err, "%s: a key of %zu bytes is not a usable tensor name",
                   x->b.index_path, kv->klen);
  char name[MAX_KEY];
  if (kv->klen) memcpy(name, kv->key, kv->klen);
  name[kv->klen] = 0;
  tfrec *c = &x->rec[x->nrec];
  memset(c, 0, sizeof *c);
  c->key = x->nkeys;
  c->klen = (uint16_t)kv->klen;
  c->shard = e->shard_id;
  c->offset = e->offset;
  c->size = e->size;
  c->crc = e->crc32c;
  c->tfdt = (int32_t)e->dtype;
  if (kv->klen) memcpy(x->keys + x->nkeys, kv->key, kv->klen);
  x->nkeys += kv->klen;
  x->nrec++;
  if (e->n_slices > 0) {
    c->flags |= REC_SLICED;
    if (gt_value_setk(mm->parts, name, slices_meta(e)))
      return gt_fail(err, "%s: out of memory", x->b.index_path);
  }
  gt_dtype dt;
  char nb[24];
  if (gt_tf_to_dtype((int)e->dtype, &dt) != 0) {
    const char *dn = gt_tf_dtype_name((int)e->dtype, nb);
    if (gt_value_setk(mm->skipped, name, gt_value_str(dn, strlen(dn))))
      return gt_fail(err, "%s: out of memory", x->b.index_path);
    return GT_OK;
  }
  c->dt = (uint8_t)dt;
  int ndim;
  int64_t shape[GT_MAXDIM], numel;
  if (gt_tf_shape(e->shape, &ndim, shape, err) != GT_OK ||
      gt_numel(ndim, shape, &numel, err) != GT_OK)
    return gt_wrap(err, "%s: key \"%s\"", x->b.index_path, name);
  if (add_dims(x, c, ndim, shape, err) != GT_OK) return GT_ERR;
  c->flags |= REC_LISTED;
  x->nlisted++;
  if (e->n_slices > 0) return add_part(x, c, name, e, shape, err);
  /* The label "<index>: key \"name\"" is made only for an error: checked
   * first without it (10^6 snprintf calls are a tenth of opening). */
  if (entry_check(&x->b, "", loc_of(e), dt, numel, err) == GT_OK) return GT_OK;
  char *what = label(x->b.index_path, name, kv->klen);
  if (!what) return gt_fail(err, "%s: out of memory", x->b.index_path);
  entry_check(&x->b, what, loc_of(e), dt, numel, err);
  free(what);
  return GT_ERR;
}

/* One listed tensor, placed in data order. */
typedef struct listed {
  uint32_t r;         /* record */
  int32_t shard;
  int64_t off;
} listed;

static int cmp_listed(const void *a, const void *b) {
  const listed *x = a, *y = b;
  if (x->shard != y->shard) return x->shard < y->shard ? -1 : 1;
  if (x->off != y->off) return x->off < y->off ? -1 : 1;
  return x->r < y->r ? -1 : x->r > y->r;
}

/* x->order: listed tensors by (shard, offset), the order TensorFlow wrote
 * them; partitioned variables last. */
static int data_order(gt_tfindex *x, gt_err *err) {
  listed *l = malloc((x->nlisted ? x->nlisted : 1) * sizeof *l);
  x->order = malloc((x->nlisted ? x->nlisted : 1) * sizeof *x->order);
  if (!l || !x->order) {
    free(l);
    return gt_fail(err, "%s: out of memory for %zu entries", x->b.index_path,
                   x->nlisted);
  }
  size_t n = 0;
  for (size_t r = 0; r < x->nrec; r++) {
    const tfrec *c = &x->rec[r];
    if (!(c->flags & REC_LISTED)) continue;
    listed y = {(uint32_t)r, c->shard, c->offset};
    if (c->flags & REC_SLICED) {
      y.shard = x->b.num_shards;
      y.off = 0;
    }
    l[n++] = y;
  }
  /* Bundles written in key order (TensorFlow's usual) need no sort. */
  size_t k = 1;
  while (k < n && cmp_listed(&l[k - 1], &l[k]) < 0) k++;
  if (k < n) qsort(l, n, sizeof *l, cmp_listed);
  for (k = 0; k < n; k++) x->order[k] = l[k].r;
  free(l);
  return GT_OK;
}

/* meta but entries: version, num_shards, endianness, producer,
 * min_consumer, index_snappy_blocks, skipped, partitioned, object_graph. */
static int index_meta(gt_tfindex *x, meta_maps *mm, gt_err *err) {
  bundle *b = &x->b;
  gt_value *d = x->meta, *og;
  const Tensorflow__VersionDef *v = b->hdr->version;
  int bad = gt_value_setk(d, "partitioned", mm->parts);
  mm->parts = NULL;
  bad = gt_value_setk(d, "skipped", mm->skipped) || bad;
  mm->skipped = NULL;
  bad = bad || set_str(d, "version", "v2") ||
        set_int(d, "num_shards", b->num_shards) ||
        set_str(d, "endianness", b->big ? "big" : "little") ||
        set_int(d, "producer", v ? v->producer : 0) ||
        set_int(d, "min_consumer", v ? v->min_consumer : 0) ||
        set_int(d, "index_snappy_blocks", b->table.snappy_blocks);
  if (bad) return gt_fail(err, "out of memory");
  if (object_graph(b, &og, err) != GT_OK) return GT_ERR;
  if (og && gt_value_setk(d, "object_graph", og))
    return gt_fail(err, "out of memory");
  return GT_OK;
}

/* Records of every table entry but the header and slice entries (whose
 * OrderedCode keys start with byte 00: they are hidden). */
static int index_records(gt_tfindex *x, meta_maps *mm, gt_err *err) {
  const gt_tftable *t = &x->b.table;
  size_t n = 0, kb = 0;
  for (size_t i = 1; i < t->n; i++)
    if (!(t->kv[i].klen && t->kv[i].key[0] == 0)) {
      n++;
      kb += t->kv[i].klen;   /* keys are in the table's buffer: no overflow */
    }
  if (n > UINT32_MAX)
    return gt_fail(err, "%s: %zu entries are too many", x->b.index_path, n);
  x->rec = malloc((n ? n : 1) * sizeof *x->rec);
  x->keys = malloc(kb ? kb : 1);
  /* Room for one dimension an entry to start with (never NULL: scalars
   * only still make x->dims + 0 a valid pointer). */
  x->dims_cap = n ? n : 1;
  x->dims = malloc(x->dims_cap * sizeof *x->dims);
  if (!x->rec || !x->keys || !x->dims)
    return gt_fail(err, "%s: out of memory for %zu entries", x->b.index_path, n);
  for (size_t i = 1; i < t->n; i++) {
    if (t->kv[i].klen && t->kv[i].key[0] == 0) continue;
    const Tensorflow__BundleEntryProto *e = entry_get(&x->b, i, err);
    if (!e) return GT_ERR;
    int rc = add_record(x, i, e, mm, err);
    entry_drop(&x->b, i);
    if (rc != GT_OK) return GT_ERR;
  }
  return GT_OK;
}

int gt_tfindex_open(const char *prefix, gt_tfindex **out, gt_err *err) {
  *out = NULL;
  gt_tfindex *x = calloc(1, sizeof *x);
  if (!x) return gt_fail(err, "out of memory");
  meta_maps mm = {meta_map(), meta_map()};
  x->meta = meta_map();
  int rc = GT_ERR;
  if (!mm.parts || !mm.skipped || !x->meta) {
    memset(&x->b, 0, sizeof x->b);
    gt_fail(err, "out of memory");
  } else if (open_bundle(&x->b, prefix, err) == GT_OK &&
             index_records(x, &mm, err) == GT_OK &&
             data_order(x, err) == GT_OK && index_meta(x, &mm, err) == GT_OK) {
    rc = GT_OK;
  }
  gt_value_free(mm.parts);
  gt_value_free(mm.skipped);
  /* The table (its kv list, keys and blocks) and the unpack cache go: the
   * records hold what is needed. */
  if (x->b.ent) {
    for (size_t i = 0; i < x->b.table.n; i++)
      if (x->b.ent[i]) tensorflow__bundle_entry_proto__free_unpacked(x->b.ent[i], NULL);
    free(x->b.ent);
    x->b.ent = NULL;
  }
  gt_tftable_close(&x->b.table);
  if (x->b.hdr) tensorflow__bundle_header_proto__free_unpacked(x->b.hdr, NULL);
  x->b.hdr = NULL;
  x->b.prefix = NULL;
  if (rc != GT_OK) {
    gt_tfindex_free(x);
    return GT_ERR;
  }
  *out = x;
  return GT_OK;
}

/* meta.entries as a value tree: every entry but the partitioned ones. */
static int entries_meta(const gt_tfindex *x, gt_value *meta, gt_err *err) {
  gt_value *ents = meta_map();
  if (!ents || gt_value_setk(meta, "entries", ents))
    return gt_fail(err, "out of memory");
  for (size_t r = 0; r < x->nrec; r++) {
    const tfrec *c = &x->rec[r];
    if (c->flags & REC_SLICED) continue;
    loc e = {c->shard, c->offset, c->size, c->crc};
    if (gt_value_set(ents, gt_value_str((const char *)x->keys + c->key, c->klen),
                     entry_meta(e, c->tfdt)))
      return gt_fail(err, "out of memory");
  }
  return GT_OK;
}

int gt_tfbundle_read(const char *prefix, gt_model *m, gt_err *err) {
  gt_tfindex *x;
  m->format = "tf";
  if (gt_tfindex_open(prefix, &x, err) != GT_OK) return GT_ERR;
  m->meta = gt_tfindex_take_meta(x);
  int rc = entries_meta(x, m->meta, err) == GT_OK &&
                   gt_model_reserve(m, x->nlisted, err) == GT_OK
               ? GT_OK
               : GT_ERR;
  for (size_t k = 0; rc == GT_OK && k < x->nlisted; k++) {
    size_t r = x->order[k], len;
    const char *key = gt_tfindex_key(x, r, &len);
    gt_tensor t;
    rc = gt_tfindex_tensor(x, r, &t, err);
    if (rc == GT_OK) rc = gt_model_add(m, key, len, &t, err);
  }
  gt_tfindex_free(x);
  return rc;
}
/* ------------------------------------------------------------------ */
/* 5. Verify                                                            */
/* ------------------------------------------------------------------ */

static int verify_entry(const bundle *b, size_t i,
                        const Tensorflow__BundleEntryProto *e, gt_err *err) {
  const gt_tfkv *kv = &b->table.kv[i];
  if (e->n_slices > 0) return GT_OK;   /* its slices are entries too */
  char *what = label(b->index_path, (const char *)kv->key, kv->klen);
  if (!what) return gt_fail(err, "out of memory");
  int rc = entry_range(b, what, loc_of(e), err);
  if (rc == GT_OK) {
    const unsigned char *p = b->shards[e->shard_id]->data + e->offset;
    if (e->dtype == TENSORFLOW__DATA_TYPE__DT_STRING) {
      int ndim;
      int64_t shape[GT_MAXDIM], numel;
      rc = gt_tf_shape(e->shape, &ndim, shape, err) == GT_OK &&
                   gt_numel(ndim, shape, &numel, err) == GT_OK
               ? parse_strings(what, p, (uint64_t)e->size, (uint64_t)numel,
                               e->crc32c, NULL, err)
               : gt_wrap(err, "%s", what);
    } else {
      rc = gt_sum_check(GT_SUM_CRC32C_MASKED, what, p, (uint64_t)e->size,
                        e->crc32c, err);
    }
  }
  free(what);
  return rc;
}

int gt_tfbundle_verify(const char *prefix, size_t *checked, gt_err *err) {
  bundle b;
  *checked = 0;
  int rc = open_bundle(&b, prefix, err);
  for (size_t i = 1; rc == GT_OK && i < b.table.n; i++) {
    const Tensorflow__BundleEntryProto *e = entry_get(&b, i, err);
    rc = e ? verify_entry(&b, i, e, err) : GT_ERR;
    if (rc == GT_OK && e->n_slices == 0) (*checked)++;
    entry_drop(&b, i);
  }
  bundle_close(&b);
  return rc;
}
