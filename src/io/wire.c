/* wire.c: see wire.h. */
#include "io/wire.h"

#include <string.h>

#define WIRE_MAX_DEPTH 400

static int put_tag(gt_sbuf *b, char tag, gt_err *err) {
  return gt_sbuf_put(b, &tag, 1, err);
}

int gt_wire_put_u64(gt_sbuf *b, uint64_t x, gt_err *err) {
  unsigned char c[8];
  for (int i = 0; i < 8; i++) c[i] = (unsigned char)(x >> (8 * i));
  return gt_sbuf_put(b, c, 8, err);
}

int gt_wire_put_str(gt_sbuf *b, const char *s, size_t n, gt_err *err) {
  if (gt_wire_put_u64(b, n, err) != GT_OK) return GT_ERR;
  return gt_sbuf_put(b, s, n, err);
}

static int put_items(gt_sbuf *b, const gt_value *v, gt_err *err) {
  if (gt_wire_put_u64(b, v->n, err) != GT_OK) return GT_ERR;
  for (size_t i = 0; i < v->n; i++) {
    if (v->kind == GT_V_MAP && gt_wire_put_value(b, v->keys[i], err) != GT_OK)
      return GT_ERR;
    if (gt_wire_put_value(b, v->items[i], err) != GT_OK) return GT_ERR;
  }
  return GT_OK;
}

int gt_wire_put_value(gt_sbuf *b, const gt_value *v, gt_err *err) {
  if (!v) return put_tag(b, 'n', err);
  uint64_t bits;
  switch (v->kind) {
  case GT_V_NIL: return put_tag(b, 'n', err);
  case GT_V_BOOL: {
    unsigned char c[2] = {'b', v->i ? 1 : 0};
    return gt_sbuf_put(b, c, 2, err);
  }
  case GT_V_INT:
  case GT_V_TENSOR:
    if (put_tag(b, v->kind == GT_V_INT ? 'i' : 't', err) != GT_OK) return GT_ERR;
    return gt_wire_put_u64(b, (uint64_t)v->i, err);
  case GT_V_FLOAT:
    memcpy(&bits, &v->f, 8);
    if (put_tag(b, 'f', err) != GT_OK) return GT_ERR;
    return gt_wire_put_u64(b, bits, err);
  case GT_V_STR:
    if (put_tag(b, 's', err) != GT_OK) return GT_ERR;
    return gt_wire_put_str(b, v->str ? v->str : "", v->str ? v->len : 0, err);
  case GT_V_LIST:
  case GT_V_MAP:
    if (put_tag(b, v->kind == GT_V_LIST ? 'l' : 'm', err) != GT_OK) return GT_ERR;
    return put_items(b, v, err);
  case GT_V_OBJECT:
    if (put_tag(b, 'o', err) != GT_OK ||
        gt_wire_put_str(b, v->str ? v->str : "", v->str ? v->len : 0, err) != GT_OK)
      return GT_ERR;
    return put_items(b, v, err);
  }
  return gt_fail(err, "unknown value kind %d", (int)v->kind);
}

int gt_wire_u64(gt_wire *w, uint64_t *x, gt_err *err) {
  if (w->n - w->at < 8) return gt_fail(err, "sandbox result truncated");
  uint64_t r = 0;
  for (int i = 0; i < 8; i++) r |= (uint64_t)w->p[w->at + i] << (8 * i);
  w->at += 8;
  *x = r;
  return GT_OK;
}

int gt_wire_str(gt_wire *w, const unsigned char **s, size_t *n, gt_err *err) {
  uint64_t len;
  if (gt_wire_u64(w, &len, err) != GT_OK) return GT_ERR;
  if (len > w->n - w->at) return gt_fail(err, "sandbox result: string past the end");
  *s = w->p + w->at;
  *n = (size_t)len;
  w->at += (size_t)len;
  return GT_OK;
}

static int wire_value(gt_wire *w, gt_value **out, int depth, gt_err *err);

static int get_items(gt_wire *w, gt_value *v, int depth, gt_err *err) {
  uint64_t n;
  if (gt_wire_u64(w, &n, err) != GT_OK) return GT_ERR;
  if (n > w->n - w->at) return gt_fail(err, "sandbox result: count past the end");
  for (uint64_t i = 0; i < n; i++) {
    gt_value *k = NULL, *x = NULL;
    if (v->kind == GT_V_MAP && wire_value(w, &k, depth + 1, err) != GT_OK)
      return GT_ERR;
    if (v->kind == GT_V_MAP && !k) k = gt_value_new(GT_V_NIL);
    if (wire_value(w, &x, depth + 1, err) != GT_OK) {
      gt_value_free(k);
      return GT_ERR;
    }
    if (!x) x = gt_value_new(GT_V_NIL);
    int rc = v->kind == GT_V_MAP ? gt_value_set(v, k, x) : gt_value_push(v, x);
    if (rc != GT_OK) return gt_fail(err, "out of memory");
  }
  return GT_OK;
}

static int wire_value(gt_wire *w, gt_value **out, int depth, gt_err *err) {
  *out = NULL;
  if (depth > WIRE_MAX_DEPTH) return gt_fail(err, "sandbox result nested too deep");
  if (w->at >= w->n) return gt_fail(err, "sandbox result truncated");
  char tag = (char)w->p[w->at++];
  uint64_t x;
  const unsigned char *s;
  size_t n;
  gt_value *v = NULL;
  switch (tag) {
  case 'n': return GT_OK;
  case 'b':
    if (w->at >= w->n) return gt_fail(err, "sandbox result truncated");
    v = gt_value_bool(w->p[w->at++] != 0);
    break;
  case 'i':
  case 't':
    if (gt_wire_u64(w, &x, err) != GT_OK) return GT_ERR;
    if (tag == 'i') v = gt_value_int((int64_t)x);
    else if ((v = gt_value_new(GT_V_TENSOR))) v->i = (int64_t)x;
    break;
  case 'f': {
    double f;
    if (gt_wire_u64(w, &x, err) != GT_OK) return GT_ERR;
    memcpy(&f, &x, 8);
    v = gt_value_float(f);
    break;
  }
  case 's':
    if (gt_wire_str(w, &s, &n, err) != GT_OK) return GT_ERR;
    v = gt_value_str((const char *)s, n);
    break;
  case 'l':
  case 'm':
  case 'o':
    if (tag == 'o' && gt_wire_str(w, &s, &n, err) != GT_OK) return GT_ERR;
    if (tag == 'o') {
      /* An object keeps its name in str, as the pickle machine makes it. */
      gt_value *name = gt_value_str((const char *)s, n);
      if (!name) return gt_fail(err, "out of memory");
      v = gt_value_new(GT_V_OBJECT);
      if (v) {
        v->str = name->str;
        v->len = name->len;
        name->str = NULL;
      }
      gt_value_free(name);
    } else {
      v = gt_value_new(tag == 'l' ? GT_V_LIST : GT_V_MAP);
    }
    if (!v) return gt_fail(err, "out of memory");
    if (get_items(w, v, depth, err) != GT_OK) {
      gt_value_free(v);
      return GT_ERR;
    }
    break;
  default:
    return gt_fail(err, "sandbox result: bad tag 0x%02x", (unsigned char)tag);
  }
  if (!v) return gt_fail(err, "out of memory");
  *out = v;
  return GT_OK;
}

int gt_wire_value(gt_wire *w, gt_value **out, gt_err *err) {
  return wire_value(w, out, 0, err);
}
