/* pickle_emit.c: protocol-2 opcodes as CPython's pickle.Pickler writes them
 * (Lib/pickle.py: save_long, save_float, save_str, save_tuple, memoize,
 * put, get; docs/formats/torch.md#pickle-opcodes). Multi-byte arguments are little-endian except
 * BINFLOAT's double, which is big-endian. */
#include "io/pickle_emit.h"

#include <stdlib.h>
#include <string.h>

#include "io/grow.h"

enum {
  OP_PROTO = 0x80, OP_STOP = '.', OP_BINPUT = 'q', OP_LONG_BINPUT = 'r',
  OP_BINGET = 'h', OP_LONG_BINGET = 'j', OP_GLOBAL = 'c', OP_BINUNICODE = 'X',
  OP_BININT = 'J', OP_BININT1 = 'K', OP_BININT2 = 'M', OP_LONG1 = 0x8a,
  OP_BINFLOAT = 'G', OP_NEWTRUE = 0x88, OP_NEWFALSE = 0x89
};

/* The pickle must stay below 4 GiB (a zip member without ZIP64 is not a
 * concern here, but BINUNICODE lengths are u32). */
#define PE_MAX ((size_t)1 << 31)

void gt_pe_init(gt_pe *p) { memset(p, 0, sizeof *p); }

void gt_pe_free(gt_pe *p) {
  for (size_t i = 0; i < p->nglobals; i++) {
    free(p->globals[i].module);
    free(p->globals[i].name);
  }
  free(p->globals);
  free(p->buf);
  memset(p, 0, sizeof *p);
}

static int emit(gt_pe *p, const void *bytes, size_t n, gt_err *err) {
  if (p->failed) return gt_fail(err, "pickle writer failed earlier");
  if (n > PE_MAX - p->len) {
    p->failed = 1;
    return gt_fail(err, "the pickle exceeds %zu bytes", PE_MAX);
  }
  if (p->len + n > p->cap) {
    size_t cap = p->cap ? p->cap : 4096;
    while (cap < p->len + n) cap *= 2;
    unsigned char *b = realloc(p->buf, cap);
    if (!b) {
      p->failed = 1;
      return gt_fail(err, "out of memory");
    }
    p->buf = b;
    p->cap = cap;
  }
  memcpy(p->buf + p->len, bytes, n);
  p->len += n;
  return GT_OK;
}

static int emit_op_u32(gt_pe *p, unsigned char op, uint32_t v, gt_err *err) {
  unsigned char b[5] = {op, (unsigned char)v, (unsigned char)(v >> 8),
                        (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
  return emit(p, b, 5, err);
}

int gt_pe_op(gt_pe *p, unsigned char op, gt_err *err) {
  return emit(p, &op, 1, err);
}

int gt_pe_proto(gt_pe *p, gt_err *err) {
  static const unsigned char b[2] = {OP_PROTO, 2};
  return emit(p, b, 2, err);
}

int gt_pe_stop(gt_pe *p, gt_err *err) { return gt_pe_op(p, OP_STOP, err); }

int gt_pe_put(gt_pe *p, uint32_t *slot, gt_err *err) {
  if (p->memo == UINT32_MAX) return gt_fail(err, "pickle memo is full");
  uint32_t i = p->memo;
  int rc;
  if (i < 256) {
    unsigned char b[2] = {OP_BINPUT, (unsigned char)i};
    rc = emit(p, b, 2, err);
  } else {
    rc = emit_op_u32(p, OP_LONG_BINPUT, i, err);
  }
  if (rc != GT_OK) return GT_ERR;
  p->memo++;
  if (slot) *slot = i;
  return GT_OK;
}

int gt_pe_get(gt_pe *p, uint32_t slot, gt_err *err) {
  if (slot < 256) {
    unsigned char b[2] = {OP_BINGET, (unsigned char)slot};
    return emit(p, b, 2, err);
  }
  return emit_op_u32(p, OP_LONG_BINGET, slot, err);
}

int gt_pe_global(gt_pe *p, const char *module, const char *name,
                 gt_err *err) {
  for (size_t i = 0; i < p->nglobals; i++)
    if (strcmp(p->globals[i].module, module) == 0 &&
        strcmp(p->globals[i].name, name) == 0)
      return gt_pe_get(p, p->globals[i].memo, err);
  if (gt_grow((void **)&p->globals, &p->gcap, p->nglobals + 1, sizeof *p->globals))
    return gt_fail(err, "out of memory");
  gt_pe_glob *g = &p->globals[p->nglobals];
  g->module = strdup(module);
  g->name = strdup(name);
  if (!g->module || !g->name) {
    free(g->module);
    free(g->name);
    return gt_fail(err, "out of memory");
  }
  p->nglobals++;
  unsigned char op = OP_GLOBAL, nl = '\n';
  if (emit(p, &op, 1, err) != GT_OK || emit(p, module, strlen(module), err) ||
      emit(p, &nl, 1, err) || emit(p, name, strlen(name), err) ||
      emit(p, &nl, 1, err))
    return GT_ERR;
  return gt_pe_put(p, &g->memo, err);
}

int gt_pe_str(gt_pe *p, const char *s, size_t n, gt_err *err) {
  if (n > UINT32_MAX) return gt_fail(err, "string of %zu bytes is too long", n);
  if (emit_op_u32(p, OP_BINUNICODE, (uint32_t)n, err) != GT_OK ||
      emit(p, s, n, err) != GT_OK)
    return GT_ERR;
  return gt_pe_put(p, NULL, err);
}

/* encode_long: the shortest little-endian two's complement form whose top
 * bit is the sign. */
static size_t encode_long(int64_t v, unsigned char out[9]) {
  uint64_t u = (uint64_t)v;
  size_t n;
  /* Sign-extend to 9 bytes, then drop top bytes that only repeat the sign. */
  for (size_t i = 0; i < 8; i++) out[i] = (unsigned char)(u >> (8 * i));
  out[8] = v < 0 ? 0xff : 0x00;
  n = 9;
  while (n > 1 && out[n - 1] == (v < 0 ? 0xff : 0x00) &&
         ((out[n - 2] & 0x80) != 0) == (v < 0))
    n--;
  return n;
}

int gt_pe_int(gt_pe *p, int64_t v, gt_err *err) {
  if (v >= 0 && v <= 0xff) {
    unsigned char b[2] = {OP_BININT1, (unsigned char)v};
    return emit(p, b, 2, err);
  }
  if (v >= 0 && v <= 0xffff) {
    unsigned char b[3] = {OP_BININT2, (unsigned char)v,
                          (unsigned char)(v >> 8)};
    return emit(p, b, 3, err);
  }
  if (v >= INT32_MIN && v <= INT32_MAX)
    return emit_op_u32(p, OP_BININT, (uint32_t)(int32_t)v, err);
  unsigned char b[11] = {OP_LONG1};
  size_t n = encode_long(v, b + 2);
  b[1] = (unsigned char)n;
  return emit(p, b, n + 2, err);
}

int gt_pe_float(gt_pe *p, double v, gt_err *err) {
  uint64_t u;
  memcpy(&u, &v, sizeof u);
  unsigned char b[9] = {OP_BINFLOAT};
  for (int i = 0; i < 8; i++) b[1 + i] = (unsigned char)(u >> (56 - 8 * i));
  return emit(p, b, 9, err);
}

int gt_pe_bool(gt_pe *p, int v, gt_err *err) {
  return gt_pe_op(p, v ? OP_NEWTRUE : OP_NEWFALSE, err);
}

int gt_pe_int_tuple(gt_pe *p, const int64_t *v, int n, gt_err *err) {
  if (n == 0) return gt_pe_op(p, GT_PE_EMPTY_TUPLE, err);
  if (n > 3 && gt_pe_op(p, GT_PE_MARK, err) != GT_OK) return GT_ERR;
  for (int i = 0; i < n; i++)
    if (gt_pe_int(p, v[i], err) != GT_OK) return GT_ERR;
  static const unsigned char small[4] = {0, GT_PE_TUPLE1, GT_PE_TUPLE2,
                                         GT_PE_TUPLE3};
  if (gt_pe_op(p, n <= 3 ? small[n] : GT_PE_TUPLE, err) != GT_OK)
    return GT_ERR;
  return gt_pe_put(p, NULL, err);
}

int gt_pe_utf8_ok(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80) { i++; continue; }
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (n - i < len) return 0;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return 0;
      cp = cp << 6 | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    i += len;
  }
  return 1;
}
