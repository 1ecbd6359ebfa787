/* pickle.c: the pickle interpreter (see pickle.h).
 *
 * While running, every value lives in an arena (vm.arena) and containers,
 * the stack and the memo hold borrowed pointers, so the memo can share a
 * value between places and later mutations (SETITEMS after BINPUT, BUILD)
 * are seen everywhere, as in Python. Arena nodes are freed shallowly. At
 * STOP the reachable graph is copied into an owned tree (convert), under
 * the depth / node / byte budgets of pickle.h.
 *
 * Arena node conventions beyond pickle.h: absent instance slots are NULL;
 * a bytes STR with f >= 0 points into the input (not owned); container
 * nodes (LIST, MAP, OBJECT) use f as the "being converted" mark. */
#include "io/pickle.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/grow.h"

typedef struct vm {
  const unsigned char *p;
  size_t len, pos;
  uint64_t base;
  const gt_pickle_hooks *h;
  gt_err *err;
  gt_value **arena;
  size_t na, arena_cap;
  gt_value **stack;
  size_t sp, stack_cap;
  size_t *marks;
  size_t nm, marks_cap;
  gt_value **memo;      /* memo_cap slots, NULL when unset */
  size_t memo_cap, memo_count;
  size_t op_at;         /* offset of the opcode being run, for messages */
  /* convert budgets */
  size_t nodes, bytes;
} vm;

static int fail(vm *m, const char *fmt, const char *what) {
  return gt_fail(m->err, fmt, (unsigned long long)(m->base + m->op_at), what);
}
#define FAIL(m, what) fail((m), "pickle byte %llu: %s", (what))

static int oom(vm *m) { return FAIL(m, "out of memory"); }

/* ------------------------------------------------------------ arena */

static gt_value *nv(vm *m, gt_vkind kind) {
  if (gt_grow((void **)&m->arena, &m->arena_cap, m->na + 1, sizeof *m->arena)) {
    oom(m);
    return NULL;
  }
  gt_value *v = gt_value_new(kind);
  if (!v) {
    oom(m);
    return NULL;
  }
  if (kind == GT_V_STR) v->f = -1;
  m->arena[m->na++] = v;
  return v;
}

static void shallow_free(gt_value *v) {
  if (!(v->kind == GT_V_STR && v->f >= 0)) free(v->str);
  free(v->items);
  free(v->keys);
  free(v);
}

/* Adopt a tree a hook returned: every node joins the arena. */
static int adopt(vm *m, gt_value *v, int depth) {
  if (depth > GT_PICKLE_MAX_DEPTH) return FAIL(m, "hook value nested too deep");
  if (gt_grow((void **)&m->arena, &m->arena_cap, m->na + 1, sizeof *m->arena)) {
    gt_value_free(v);
    return oom(m);
  }
  m->arena[m->na++] = v;
  if (v->kind == GT_V_STR) v->f = -1;
  for (size_t i = 0; i < v->n; i++) {
    if (v->keys && v->keys[i] && adopt(m, v->keys[i], depth + 1)) return GT_ERR;
    if (v->items && v->items[i] && adopt(m, v->items[i], depth + 1)) return GT_ERR;
  }
  return GT_OK;
}

/* Append child to a LIST/OBJECT node or key/item to a MAP node (no
 * ownership: both are arena nodes). */
static int add_item(vm *m, gt_value *c, gt_value *item) {
  if (gt_grow((void **)&c->items, &c->cap, c->n + 1, sizeof *c->items)) return oom(m);
  c->items[c->n++] = item;
  return GT_OK;
}

static int same_key(const gt_value *a, const gt_value *b) {
  if (a == b) return 1;
  if (a->kind != b->kind) {
    int ai = a->kind == GT_V_INT || a->kind == GT_V_BOOL;
    int bi = b->kind == GT_V_INT || b->kind == GT_V_BOOL;
    return ai && bi && a->i == b->i;
  }
  switch (a->kind) {
  case GT_V_NIL: return 1;
  case GT_V_BOOL:
  case GT_V_INT: return a->i == b->i;
  case GT_V_FLOAT: return a->f == b->f;
  case GT_V_STR:
    return a->i == b->i && a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
  default: return 0;
  }
}

/* dict[key] = item: an existing equal key keeps its place, as in Python. */
static int map_set(vm *m, gt_value *map, gt_value *key, gt_value *item) {
  for (size_t i = 0; i < map->n; i++)
    if (same_key(map->keys[i], key)) {
      map->items[i] = item;
      return GT_OK;
    }
  size_t cap = map->cap;
  if (gt_grow((void **)&map->items, &cap, map->n + 1, sizeof *map->items)) return oom(m);
  size_t kcap = map->cap;
  if (gt_grow((void **)&map->keys, &kcap, map->n + 1, sizeof *map->keys)) return oom(m);
  map->cap = cap < kcap ? cap : kcap;
  map->keys[map->n] = key;
  map->items[map->n++] = item;
  return GT_OK;
}

/* ------------------------------------------------------------ stack */

static int push(vm *m, gt_value *v) {
  if (!v) return GT_ERR;
  if (gt_grow((void **)&m->stack, &m->stack_cap, m->sp + 1, sizeof *m->stack))
    return oom(m);
  m->stack[m->sp++] = v;
  return GT_OK;
}

static size_t floor_of(const vm *m) { return m->nm ? m->marks[m->nm - 1] : 0; }

static gt_value *pop(vm *m) {
  if (m->sp <= floor_of(m)) {
    FAIL(m, "stack underflow");
    return NULL;
  }
  return m->stack[--m->sp];
}

static gt_value *top(vm *m) {
  if (m->sp <= floor_of(m)) {
    FAIL(m, "stack underflow");
    return NULL;
  }
  return m->stack[m->sp - 1];
}

/* Pop to the last mark: *first is where the popped items start. */
static int pop_mark(vm *m, size_t *first) {
  if (!m->nm) return FAIL(m, "no MARK to pop to");
  *first = m->marks[--m->nm];
  return GT_OK;
}

/* ------------------------------------------------------------ input */

static int need(vm *m, uint64_t n) {
  if (n > m->len - m->pos) return FAIL(m, "truncated (the pickle ends inside an opcode)");
  return GT_OK;
}

static uint64_t rdle(const unsigned char *p, int n) {
  uint64_t x = 0;
  for (int i = n - 1; i >= 0; i--) x = x << 8 | p[i];
  return x;
}

static int arg(vm *m, int n, uint64_t *x) {
  if (need(m, (uint64_t)n)) return GT_ERR;
  *x = rdle(m->p + m->pos, n);
  m->pos += (size_t)n;
  return GT_OK;
}

/* A text argument ending with '\n' (not included). */
static int line(vm *m, const char **s, size_t *n) {
  const unsigned char *start = m->p + m->pos;
  const unsigned char *nl = memchr(start, '\n', m->len - m->pos);
  if (!nl) return FAIL(m, "truncated (a text argument has no end of line)");
  *s = (const char *)start;
  *n = (size_t)(nl - start);
  m->pos += *n + 1;
  return GT_OK;
}

static gt_value *text(vm *m, const char *s, size_t n) {
  gt_value *v = nv(m, GT_V_STR);
  if (!v) return NULL;
  if (!(v->str = malloc(n + 1))) {
    oom(m);
    return NULL;
  }
  if (n) memcpy(v->str, s, n);
  v->str[n] = 0;
  v->len = n;
  return v;
}

/* Bytes [pos, pos + n) of the input, not copied. */
static gt_value *in_bytes(vm *m, uint64_t n) {
  if (need(m, n)) return NULL;
  gt_value *v = nv(m, GT_V_STR);
  if (!v) return NULL;
  v->i = 1;
  v->str = (char *)(m->p + m->pos);
  v->len = (size_t)n;
  v->f = (double)(m->base + m->pos);
  m->pos += (size_t)n;
  return v;
}

static gt_value *in_text(vm *m, uint64_t n) {
  if (need(m, n)) return NULL;
  gt_value *v = text(m, (const char *)m->p + m->pos, (size_t)n);
  m->pos += (size_t)n;
  return v;
}

static gt_value *ival(vm *m, int64_t i) {
  gt_value *v = nv(m, GT_V_INT);
  if (v) v->i = i;
  return v;
}

static int parse_i64(const char *s, size_t n, int64_t *x) {
  char buf[32];
  while (n && (s[n - 1] == 'L' || s[n - 1] == ' ' || s[n - 1] == '\r')) n--;
  if (n == 0 || n >= sizeof buf) return GT_ERR;
  memcpy(buf, s, n);
  buf[n] = 0;
  char *end;
  errno = 0;
  long long v = strtoll(buf, &end, 10);
  if (*end || errno) return GT_ERR;
  *x = v;
  return GT_OK;
}

/* LONG1 / LONG4 payload: little-endian two's complement. Values that do not
 * fit in int64 become floats (weights files hold none but torch's legacy
 * magic number, which torch.c checks as raw bytes). */
static gt_value *long_bytes(vm *m, uint64_t n) {
  if (need(m, n)) return NULL;
  const unsigned char *b = m->p + m->pos;
  m->pos += (size_t)n;
  if (n <= 8) {
    uint64_t x = rdle(b, (int)n);
    if (n > 0 && n < 8 && (b[n - 1] & 0x80)) x |= ~(uint64_t)0 << (8 * n);
    return ival(m, n ? (int64_t)x : 0);
  }
  int neg = (b[n - 1] & 0x80) != 0;
  double d = 0;
  for (uint64_t i = n; i-- > 0;) d = d * 256.0 + (neg ? (double)(uint8_t)~b[i] : b[i]);
  gt_value *v = nv(m, GT_V_FLOAT);
  if (v) v->f = neg ? -(d + 1) : d;
  return v;
}

/* ------------------------------------------------------------ strings */

/* Append the UTF-8 of code point c to buf (room for 4 bytes assured). */
static size_t utf8(unsigned char *o, uint32_t c) {
  if (c < 0x80) { o[0] = (unsigned char)c; return 1; }
  if (c < 0x800) { o[0] = (unsigned char)(0xC0 | c >> 6); o[1] = (unsigned char)(0x80 | (c & 63)); return 2; }
  if (c < 0x10000) {
    o[0] = (unsigned char)(0xE0 | c >> 12); o[1] = (unsigned char)(0x80 | ((c >> 6) & 63));
    o[2] = (unsigned char)(0x80 | (c & 63)); return 3;
  }
  o[0] = (unsigned char)(0xF0 | c >> 18); o[1] = (unsigned char)(0x80 | ((c >> 12) & 63));
  o[2] = (unsigned char)(0x80 | ((c >> 6) & 63)); o[3] = (unsigned char)(0x80 | (c & 63));
  return 4;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* UNICODE (protocol 0): raw-unicode-escape, i.e. latin-1 text where
 * \uXXXX and \UXXXXXXXX stand for code points. */
static gt_value *raw_unicode(vm *m, const char *s, size_t n) {
  if (n > SIZE_MAX / 4) return oom(m), NULL;
  unsigned char *o = malloc(n * 4 + 1);
  if (!o) return oom(m), NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t c = (unsigned char)s[i];
    int w = 0;
    if (c == '\\' && i + 1 < n && (s[i + 1] == 'u' || s[i + 1] == 'U'))
      w = s[i + 1] == 'u' ? 4 : 8;
    if (w && i + 2 + (size_t)w <= n) {
      uint32_t x = 0;
      int ok = 1;
      for (int j = 0; j < w; j++) {
        int h = hexval((unsigned char)s[i + 2 + j]);
        if (h < 0) ok = 0;
        x = x << 4 | (uint32_t)(h < 0 ? 0 : h);
      }
      if (ok && x <= 0x10FFFF) {
        c = x;
        i += 1 + (size_t)w;
      }
    }
    k += utf8(o + k, c);
  }
  gt_value *v = text(m, (const char *)o, k);
  free(o);
  return v;
}

/* STRING (protocol 0): a quoted Python 2 string literal with escapes. */
static gt_value *quoted(vm *m, const char *s, size_t n) {
  if (n < 2 || (s[0] != '\'' && s[0] != '"') || s[n - 1] != s[0])
    return FAIL(m, "STRING argument is not quoted"), NULL;
  s++;
  n -= 2;
  char *o = malloc(n + 1);
  if (!o) return oom(m), NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '\\' && i + 1 < n) {
      char e = s[++i];
      if (e == 'n') c = '\n';
      else if (e == 't') c = '\t';
      else if (e == 'r') c = '\r';
      else if (e == '0') c = 0;
      else if (e == 'x' && i + 2 < n + 0 && hexval((unsigned char)s[i + 1]) >= 0 &&
               hexval((unsigned char)s[i + 2]) >= 0) {
        c = (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
        i += 2;
      } else c = e;
    }
    o[k++] = c;
  }
  gt_value *v = text(m, o, k);
  free(o);
  return v;
}

/* Python 2 str (STRING, BINSTRING, SHORT_BINSTRING): text when ASCII,
 * bytes otherwise (what Python 3 gives with encoding='bytes'). */
static gt_value *py2str(gt_value *v) {
  if (!v) return NULL;
  for (size_t i = 0; i < v->len; i++)
    if ((unsigned char)v->str[i] >= 0x80) {
      v->i = 1;
      break;
    }
  return v;
}

/* ------------------------------------------------------------ globals */

static gt_value *global(vm *m, const char *mod, size_t ml, const char *name,
                        size_t nl) {
  if (ml == 11 && memcmp(mod, "__builtin__", 11) == 0) {
    mod = "builtins";
    ml = 8;
  } else if (ml == 8 && memcmp(mod, "copy_reg", 8) == 0) {
    mod = "copyreg";
    ml = 7;
  }
  if (ml == 0 || nl == 0) return FAIL(m, "a global with an empty module or name"), NULL;
  if (ml > 4096 || nl > 4096) return FAIL(m, "a global name longer than 4096 bytes"), NULL;
  gt_value *v = nv(m, GT_V_OBJECT);
  if (!v || !(v->str = malloc(ml + nl + 2))) return v ? oom(m), NULL : NULL;
  memcpy(v->str, mod, ml);
  v->str[ml] = '.';
  memcpy(v->str + ml + 1, name, nl);
  v->str[ml + nl + 1] = 0;
  v->len = ml + nl + 1;
  if (memchr(v->str, 0, v->len)) return FAIL(m, "a global name holds a NUL byte"), NULL;
  return v;
}

int gt_pickle_is_global(const gt_value *v, const char *name) {
  return v && v->kind == GT_V_OBJECT && v->i == 0 && v->str && strcmp(v->str, name) == 0;
}

int gt_pickle_is_instance(const gt_value *v, const char *name) {
  return v && v->kind == GT_V_OBJECT && v->i == 1 && v->str &&
         (!name || strcmp(v->str, name) == 0);
}

const gt_value *gt_pickle_item(const gt_value *v, size_t k) {
  if (!v || v->kind != GT_V_LIST || k >= v->n) return NULL;
  return v->items[k];
}

int gt_pickle_int(const gt_value *v, int64_t *x) {
  if (!v || (v->kind != GT_V_INT && v->kind != GT_V_BOOL)) return GT_ERR;
  *x = v->i;
  return GT_OK;
}

static void drop_children(gt_value *v) {
  /* Children are arena nodes (freed with the arena); the arrays are ours. */
  if (!(v->kind == GT_V_STR && v->f >= 0)) free(v->str);
  free(v->items);
  free(v->keys);
  v->str = NULL;
  v->items = v->keys = NULL;
  v->n = v->cap = v->len = 0;
}

void gt_pickle_become(gt_value *obj, gt_vkind kind, int64_t i, double f) {
  drop_children(obj);
  obj->kind = kind;
  obj->i = i;
  obj->f = f;
}

void gt_pickle_become_copy(gt_value *obj, const gt_value *src) {
  if (obj == src) return;
  gt_value tmp = *src;
  tmp.str = NULL;
  tmp.items = tmp.keys = NULL;
  tmp.cap = tmp.n = 0;
  size_t n = src->n;
  char *str = NULL;
  gt_value **items = NULL, **keys = NULL;
  if (src->str && !(src->kind == GT_V_STR && src->f >= 0)) {
    str = malloc(src->len + 1);
    if (str) {
      memcpy(str, src->str, src->len);
      str[src->len] = 0;
    }
  } else {
    str = src->str;
  }
  if (n) {
    items = malloc(n * sizeof *items);
    keys = src->keys ? malloc(n * sizeof *keys) : NULL;
    if (items) memcpy(items, src->items, n * sizeof *items);
    if (keys) memcpy(keys, src->keys, n * sizeof *keys);
  }
  if ((src->str && !str) || (n && (!items || (src->keys && !keys)))) {
    /* Out of memory: leave an inert nil rather than a half copy. */
    if (str != src->str) free(str);
    free(items);
    free(keys);
    gt_pickle_become(obj, GT_V_NIL, 0, 0);
    return;
  }
  drop_children(obj);
  *obj = tmp;
  obj->str = str;
  obj->items = items;
  obj->keys = keys;
  obj->n = obj->cap = n;
}

/* ------------------------------------------------------------ builtins */

static int args_n(const gt_value *args) {
  return args && args->kind == GT_V_LIST ? (int)args->n : -1;
}

/* Items of a list/tuple of (key, value) pairs into map. */
static int fill_pairs(vm *m, gt_value *map, const gt_value *pairs) {
  for (size_t i = 0; i < pairs->n; i++) {
    const gt_value *kv = pairs->items[i];
    if (!kv || kv->kind != GT_V_LIST || kv->n != 2)
      return FAIL(m, "a dict built from something other than (key, value) pairs");
    if (map_set(m, map, kv->items[0], kv->items[1])) return GT_ERR;
  }
  return GT_OK;
}

/* _codecs.encode(text, 'latin1'): how protocol 2 pickles bytes. Code
 * points above 255 cannot be latin-1: an error, as in Python. */
static int latin1(vm *m, gt_value *obj, const gt_value *s) {
  unsigned char *o = malloc(s->len + 1);
  if (!o) return oom(m);
  size_t k = 0;
  const unsigned char *p = (const unsigned char *)s->str;
  for (size_t i = 0; i < s->len;) {
    uint32_t c = p[i];
    if (c < 0x80) i++;
    else if ((c & 0xE0) == 0xC0 && i + 1 < s->len) {
      c = (c & 0x1F) << 6 | (p[i + 1] & 0x3F);
      i += 2;
    } else {
      free(o);
      return FAIL(m, "_codecs.encode: text is not latin-1");
    }
    if (c > 255) {
      free(o);
      return FAIL(m, "_codecs.encode: text is not latin-1");
    }
    o[k++] = (unsigned char)c;
  }
  o[k] = 0;
  drop_children(obj);
  obj->kind = GT_V_STR;
  obj->i = 1;
  obj->f = -1;
  obj->str = (char *)o;
  obj->len = k;
  return GT_OK;
}

static int is_text(const gt_value *v) { return v && v->kind == GT_V_STR && v->i == 0; }

/* Constructors of plain data, interpreted in place. Returns GT_OK whether or
 * not obj was one of them. */
static int builtin(vm *m, gt_value *obj, int built) {
  const char *g = obj->str;
  const gt_value *args = obj->items[GT_PK_ARGS];
  const gt_value *a0 = gt_pickle_item(args, 0);
  int na = args_n(args);
  if (built) {
    const gt_value *st = obj->items[GT_PK_STATE];
    if (strcmp(g, "argparse.Namespace") == 0 && st && st->kind == GT_V_MAP)
      gt_pickle_become_copy(obj, st);
    return GT_OK;
  }
  int od = strcmp(g, "collections.OrderedDict") == 0;
  if (od || strcmp(g, "builtins.dict") == 0) {
    if (na > 1 || (na == 1 && (!a0 || a0->kind != GT_V_LIST))) return GT_OK;
    gt_value *pairs = na == 1 ? (gt_value *)a0 : NULL;
    gt_pickle_become(obj, GT_V_MAP, od, 0);
    return pairs ? fill_pairs(m, obj, pairs) : GT_OK;
  }
  int fs = strcmp(g, "builtins.frozenset") == 0;
  if (fs || strcmp(g, "builtins.set") == 0) {
    if (na > 1 || (na == 1 && (!a0 || a0->kind != GT_V_LIST))) return GT_OK;
    if (na == 1) gt_pickle_become_copy(obj, a0);
    else gt_pickle_become(obj, GT_V_LIST, 0, 0);
    obj->i = fs ? 3 : 2;
    return GT_OK;
  }
  if (strcmp(g, "_codecs.encode") == 0 || strcmp(g, "builtins.bytes") == 0 ||
      strcmp(g, "builtins.bytearray") == 0) {
    if (na == 0) {
      gt_pickle_become(obj, GT_V_STR, 1, -1);
      return GT_OK;
    }
    if (a0 && a0->kind == GT_V_STR && a0->i == 1 && na == 1) {
      gt_pickle_become_copy(obj, a0);
      return GT_OK;
    }
    const gt_value *enc = gt_pickle_item(args, 1);
    if (na == 2 && is_text(a0) && is_text(enc) &&
        (strcmp(enc->str, "latin1") == 0 || strcmp(enc->str, "latin-1") == 0))
      return latin1(m, obj, a0);
    return GT_OK;
  }
  if (strcmp(g, "torch.Size") == 0 && na == 1 && a0 && a0->kind == GT_V_LIST) {
    gt_pickle_become_copy(obj, a0);
    return GT_OK;
  }
  if (strcmp(g, "torch.device") == 0 && na >= 1 && is_text(a0)) {
    int64_t idx;
    if (na == 2 && gt_pickle_int(gt_pickle_item(args, 1), &idx) == GT_OK) {
      char buf[64];
      int k = snprintf(buf, sizeof buf, "%.40s:%lld", a0->str, (long long)idx);
      gt_value *t = text(m, buf, (size_t)k);
      if (!t) return GT_ERR;
      gt_pickle_become_copy(obj, t);
    } else {
      gt_pickle_become_copy(obj, a0);
    }
    return GT_OK;
  }
  if (strcmp(g, "copyreg._reconstructor") == 0 && na == 3 && a0 &&
      a0->kind == GT_V_OBJECT && a0->i == 0) {
    /* Protocol 0/1 instances: the class is a0; (base, state) are not args. */
    char *name = malloc(a0->len + 1);
    if (!name) return oom(m);
    memcpy(name, a0->str, a0->len + 1);
    free(obj->str);
    obj->str = name;
    obj->len = a0->len;
    obj->items[GT_PK_ARGS] = NULL;
  }
  return GT_OK;
}

/* A call of a global (REDUCE, NEWOBJ, INST, OBJ): an inert instance. */
static gt_value *instance(vm *m, const gt_value *cls, gt_value *args,
                          gt_value *kwargs) {
  if (!cls || cls->kind != GT_V_OBJECT || cls->i != 0)
    return FAIL(m, "only a global can be called (refusing to call the result of a call or a plain value)"), NULL;
  if (args && !(args->kind == GT_V_LIST && args->i == 1))
    return FAIL(m, "call arguments are not a tuple"), NULL;
  gt_value *o = nv(m, GT_V_OBJECT);
  if (!o || !(o->str = malloc(cls->len + 1))) return o ? oom(m), NULL : NULL;
  memcpy(o->str, cls->str, cls->len + 1);
  o->len = cls->len;
  o->i = 1;
  if (!(o->items = calloc(GT_PK_NSLOTS, sizeof *o->items))) return oom(m), NULL;
  o->n = o->cap = GT_PK_NSLOTS;
  o->items[GT_PK_ARGS] = args;
  o->items[GT_PK_KWARGS] = kwargs;
  if (builtin(m, o, 0)) return NULL;
  if (o->kind == GT_V_OBJECT && o->i == 1 && m->h && m->h->object &&
      m->h->object(m->h->ctx, o, 0, m->err))
    return NULL;
  return o;
}

static int build(vm *m) {
  gt_value *state = pop(m), *obj = state ? top(m) : NULL;
  if (!obj) return GT_ERR;
  if (obj->kind == GT_V_OBJECT && obj->i == 1) {
    obj->items[GT_PK_STATE] = state;
    if (builtin(m, obj, 1)) return GT_ERR;
    if (obj->kind == GT_V_OBJECT && obj->i == 1 && m->h && m->h->object)
      return m->h->object(m->h->ctx, obj, 1, m->err);
    return GT_OK;
  }
  /* OrderedDict attributes (a state dict's _metadata), tensor attributes:
   * state that changes no value we keep. */
  if (obj->kind == GT_V_MAP || obj->kind == GT_V_TENSOR) return GT_OK;
  return FAIL(m, "BUILD on a value that is not an object");
}

/* ------------------------------------------------------------ containers */

static gt_value *seq(vm *m, int sub, size_t first) {
  gt_value *t = nv(m, GT_V_LIST);
  if (!t) return NULL;
  t->i = sub;
  size_t n = m->sp - first;
  if (n && !(t->items = malloc(n * sizeof *t->items))) return oom(m), NULL;
  if (n) memcpy(t->items, m->stack + first, n * sizeof *t->items);
  t->n = t->cap = n;
  m->sp = first;
  return t;
}

static int tuple_n(vm *m, size_t n) {
  if (m->sp < floor_of(m) + n) return FAIL(m, "stack underflow");
  return push(m, seq(m, 1, m->sp - n));
}

static int append_to(vm *m, gt_value *target, size_t first) {
  gt_value *list = target;
  if (target->kind == GT_V_OBJECT && target->i == 1) {
    if (!(list = target->items[GT_PK_LISTITEMS])) {
      if (!(list = nv(m, GT_V_LIST))) return GT_ERR;
      target->items[GT_PK_LISTITEMS] = list;
    }
  } else if (!(target->kind == GT_V_LIST && (target->i == 0 || target->i == 2))) {
    return FAIL(m, "APPEND(S)/ADDITEMS on a value that is not a list or set");
  }
  for (size_t i = first; i < m->sp; i++)
    if (add_item(m, list, m->stack[i])) return GT_ERR;
  m->sp = first;
  return GT_OK;
}

static int setitems(vm *m, gt_value *target, size_t first) {
  gt_value *map = target;
  if ((m->sp - first) % 2) return FAIL(m, "SETITEMS with an odd number of items");
  if (target->kind == GT_V_OBJECT && target->i == 1) {
    if (!(map = target->items[GT_PK_DICTITEMS])) {
      if (!(map = nv(m, GT_V_MAP))) return GT_ERR;
      target->items[GT_PK_DICTITEMS] = map;
    }
  } else if (target->kind != GT_V_MAP) {
    return FAIL(m, target->kind == GT_V_LIST ? "SETITEM(S) on a list (only dicts take items)"
                                              : "SETITEM(S) on a value that is not a dict");
  }
  for (size_t i = first; i < m->sp; i += 2)
    if (map_set(m, map, m->stack[i], m->stack[i + 1])) return GT_ERR;
  m->sp = first;
  return GT_OK;
}

/* The value just below the mark `first` (what APPENDS/SETITEMS extend). */
static gt_value *below(vm *m, size_t first) {
  if (first == 0 || first - 1 < floor_of(m)) {
    FAIL(m, "stack underflow");
    return NULL;
  }
  return m->stack[first - 1];
}

/* ------------------------------------------------------------ memo */

static int memo_put(vm *m, uint64_t idx) {
  gt_value *v = top(m);
  if (!v) return GT_ERR;
  if (idx >= m->len || idx >= GT_PICKLE_MAX_MEMO)
    return FAIL(m, "memo index larger than the pickle could use");
  if (idx >= m->memo_cap) {
    size_t old = m->memo_cap;
    if (gt_grow((void **)&m->memo, &m->memo_cap, (size_t)idx + 1, sizeof *m->memo))
      return oom(m);
    memset(m->memo + old, 0, (m->memo_cap - old) * sizeof *m->memo);
  }
  if (!m->memo[idx]) m->memo_count++;
  m->memo[idx] = v;
  return GT_OK;
}

static int memo_get(vm *m, uint64_t idx) {
  if (idx >= m->memo_cap || !m->memo[idx]) {
    char what[80];
    snprintf(what, sizeof what, "memo slot %llu is read before it was set",
             (unsigned long long)idx);
    return FAIL(m, what);
  }
  return push(m, m->memo[idx]);
}

static int text_index(vm *m, uint64_t *idx) {
  const char *s;
  size_t n;
  int64_t x;
  if (line(m, &s, &n)) return GT_ERR;
  if (parse_i64(s, n, &x) || x < 0) return FAIL(m, "bad memo index text");
  *idx = (uint64_t)x;
  return GT_OK;
}

/* ------------------------------------------------------------ opcodes */

static int persid(vm *m, gt_value *pid) {
  if (!pid) return GT_ERR;
  if (!m->h || !m->h->persistent_load)
    return FAIL(m, "persistent id in a pickle that has no storages");
  gt_value *v = m->h->persistent_load(m->h->ctx, pid, m->err);
  if (!v || adopt(m, v, 0)) return GT_ERR;
  return push(m, v);
}

static int op_text_scalar(vm *m, int op) {
  const char *s;
  size_t n;
  if (line(m, &s, &n)) return GT_ERR;
  if (op == 'I' && n == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1')) {
    gt_value *b = nv(m, GT_V_BOOL);
    if (b) b->i = s[1] == '1';
    return push(m, b);
  }
  if (op == 'F') {
    char buf[64];
    if (n == 0 || n >= sizeof buf) return FAIL(m, "bad FLOAT text");
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    double d = strtod(buf, &end);
    if (*end) return FAIL(m, "bad FLOAT text");
    gt_value *v = nv(m, GT_V_FLOAT);
    if (v) v->f = d;
    return push(m, v);
  }
  int64_t x;
  if (parse_i64(s, n, &x)) return FAIL(m, "integer text that is not an int64");
  return push(m, ival(m, x));
}

static int op_global(vm *m) {
  const char *mod, *name;
  size_t ml, nl;
  if (line(m, &mod, &ml) || line(m, &name, &nl)) return GT_ERR;
  return push(m, global(m, mod, ml, name, nl));
}

static int op_stack_global(vm *m) {
  gt_value *name = pop(m), *mod = name ? pop(m) : NULL;
  if (!mod) return GT_ERR;
  if (!is_text(name) || !is_text(mod))
    return FAIL(m, "STACK_GLOBAL needs a module and a name that are strings");
  return push(m, global(m, mod->str, mod->len, name->str, name->len));
}

static int op_inst(vm *m, int op) {
  size_t first = 0;
  gt_value *cls;
  if (op == 'i') {
    if (op_global(m)) return GT_ERR;
    cls = m->stack[--m->sp];
    if (pop_mark(m, &first)) return GT_ERR;
  } else {
    if (pop_mark(m, &first)) return GT_ERR;
    if (m->sp <= first) return FAIL(m, "OBJ without a class");
    cls = m->stack[first++];
  }
  gt_value *args = seq(m, 1, first);
  if (!args) return GT_ERR;
  if (op == 'o') m->sp--; /* the class below the arguments */
  return push(m, instance(m, cls, args, NULL));
}

static int op_call(vm *m, int op) {
  gt_value *kwargs = NULL;
  if (op == 0x92 && !(kwargs = pop(m))) return GT_ERR;
  gt_value *args = pop(m), *cls = args ? pop(m) : NULL;
  if (!cls) return GT_ERR;
  if (kwargs && kwargs->kind != GT_V_MAP) return FAIL(m, "NEWOBJ_EX keyword arguments are not a dict");
  return push(m, instance(m, cls, args, kwargs));
}

static int op_mark_ops(vm *m, int op) {
  size_t first = 0;
  if (pop_mark(m, &first)) return GT_ERR;
  switch (op) {
  case 't': return push(m, seq(m, 1, first));
  case 'l': return push(m, seq(m, 0, first));
  case 0x91: return push(m, seq(m, 3, first));
  case '1': m->sp = first; return GT_OK;
  case 'd': {
    gt_value *d = nv(m, GT_V_MAP);
    if (!d) return GT_ERR;
    if (setitems(m, d, first)) return GT_ERR;
    return push(m, d);
  }
  case 'e':
  case 0x90: {
    gt_value *t = below(m, first);
    return t ? append_to(m, t, first) : GT_ERR;
  }
  case 'u': {
    gt_value *t = below(m, first);
    return t ? setitems(m, t, first) : GT_ERR;
  }
  }
  return FAIL(m, "internal: unknown mark opcode");
}

static int op_sized(vm *m, int op) {
  uint64_t n;
  switch (op) {
  case 'X': if (arg(m, 4, &n)) return GT_ERR; return push(m, in_text(m, n));
  case 0x8C: if (arg(m, 1, &n)) return GT_ERR; return push(m, in_text(m, n));
  case 0x8D: if (arg(m, 8, &n)) return GT_ERR; return push(m, in_text(m, n));
  case 'B': if (arg(m, 4, &n)) return GT_ERR; return push(m, in_bytes(m, n));
  case 'C': if (arg(m, 1, &n)) return GT_ERR; return push(m, in_bytes(m, n));
  case 0x8E:
  case 0x96: if (arg(m, 8, &n)) return GT_ERR; return push(m, in_bytes(m, n));
  case 'T':
    if (arg(m, 4, &n)) return GT_ERR;
    if (n >> 31) return FAIL(m, "BINSTRING with a negative length");
    return push(m, py2str(in_text(m, n)));
  case 'U': if (arg(m, 1, &n)) return GT_ERR; return push(m, py2str(in_text(m, n)));
  case 0x8A: if (arg(m, 1, &n)) return GT_ERR; return push(m, long_bytes(m, n));
  case 0x8B:
    if (arg(m, 4, &n)) return GT_ERR;
    if (n >> 31) return FAIL(m, "LONG4 with a negative length");
    return push(m, long_bytes(m, n));
  }
  return FAIL(m, "internal: unknown sized opcode");
}

static int op_int(vm *m, int op) {
  uint64_t x;
  int64_t v;
  switch (op) {
  case 'J': if (arg(m, 4, &x)) return GT_ERR; v = (int32_t)(uint32_t)x; break;
  case 'K': if (arg(m, 1, &x)) return GT_ERR; v = (int64_t)x; break;
  default: if (arg(m, 2, &x)) return GT_ERR; v = (int64_t)x; break;
  }
  return push(m, ival(m, v));
}

static int op_float(vm *m) {
  if (need(m, 8)) return GT_ERR;
  uint64_t bits = 0;
  for (int i = 0; i < 8; i++) bits = bits << 8 | m->p[m->pos + i];
  m->pos += 8;
  double d;
  memcpy(&d, &bits, 8);
  gt_value *v = nv(m, GT_V_FLOAT);
  if (v) v->f = d;
  return push(m, v);
}

static int op_const(vm *m, int op) {
  gt_value *v;
  switch (op) {
  case 'N': v = nv(m, GT_V_NIL); break;
  case 0x88:
  case 0x89:
    if ((v = nv(m, GT_V_BOOL))) v->i = op == 0x88;
    break;
  case ')': if ((v = nv(m, GT_V_LIST))) v->i = 1; break;
  case ']': v = nv(m, GT_V_LIST); break;
  case '}': v = nv(m, GT_V_MAP); break;
  default: if ((v = nv(m, GT_V_LIST))) v->i = 2; break; /* EMPTY_SET */
  }
  return push(m, v);
}

static int op_memo(vm *m, int op) {
  uint64_t idx;
  switch (op) {
  case 'q': if (arg(m, 1, &idx)) return GT_ERR; return memo_put(m, idx);
  case 'r': if (arg(m, 4, &idx)) return GT_ERR; return memo_put(m, idx);
  case 'p': if (text_index(m, &idx)) return GT_ERR; return memo_put(m, idx);
  case 0x94: return memo_put(m, m->memo_count);
  case 'h': if (arg(m, 1, &idx)) return GT_ERR; return memo_get(m, idx);
  case 'j': if (arg(m, 4, &idx)) return GT_ERR; return memo_get(m, idx);
  default: if (text_index(m, &idx)) return GT_ERR; return memo_get(m, idx);
  }
}

static int op_text(vm *m, int op) {
  const char *s;
  size_t n;
  if (line(m, &s, &n)) return GT_ERR;
  if (op == 'V') return push(m, raw_unicode(m, s, n));
  if (op == 'S') return push(m, py2str(quoted(m, s, n)));
  return persid(m, text(m, s, n)); /* 'P' */
}

/* One opcode; *done is set by STOP. */
static int step(vm *m, int *done) {
  m->op_at = m->pos;
  if (need(m, 1)) return GT_ERR;
  int op = m->p[m->pos++];
  uint64_t x;
  switch (op) {
  case 0x80:
    if (arg(m, 1, &x)) return GT_ERR;
    if (x > 5) return FAIL(m, "pickle protocol above 5");
    return GT_OK;
  case 0x95:
    if (arg(m, 8, &x)) return GT_ERR;
    return x > m->len - m->pos ? FAIL(m, "FRAME longer than the pickle") : GT_OK;
  case '.': *done = 1; return GT_OK;
  case '(':
    if (gt_grow((void **)&m->marks, &m->marks_cap, m->nm + 1, sizeof *m->marks)) return oom(m);
    m->marks[m->nm++] = m->sp;
    return GT_OK;
  case '0':
    if (m->sp > floor_of(m)) m->sp--;
    else if (m->nm) m->nm--;
    else return FAIL(m, "POP on an empty stack");
    return GT_OK;
  case '2': { gt_value *t = top(m); return t ? push(m, t) : GT_ERR; }
  case 'N': case 0x88: case 0x89: case ')': case ']': case '}': case 0x8F:
    return op_const(m, op);
  case 'I': case 'L': case 'F': return op_text_scalar(m, op);
  case 'J': case 'K': case 'M': return op_int(m, op);
  case 'G': return op_float(m);
  case 'X': case 0x8C: case 0x8D: case 'B': case 'C': case 0x8E: case 0x96:
  case 'T': case 'U': case 0x8A: case 0x8B:
    return op_sized(m, op);
  case 'V': case 'S': case 'P': return op_text(m, op);
  case 0x85: return tuple_n(m, 1);
  case 0x86: return tuple_n(m, 2);
  case 0x87: return tuple_n(m, 3);
  case 't': case 'l': case 0x91: case '1': case 'd': case 'e': case 0x90: case 'u':
    return op_mark_ops(m, op);
  case 'a': {
    gt_value *v = pop(m), *t = v ? top(m) : NULL;
    if (!t) return GT_ERR;
    m->stack[m->sp++] = v;
    return append_to(m, t, m->sp - 1);
  }
  case 's': {
    if (m->sp < floor_of(m) + 3) return FAIL(m, "stack underflow");
    return setitems(m, m->stack[m->sp - 3], m->sp - 2);
  }
  case 'c': return op_global(m);
  case 0x93: return op_stack_global(m);
  case 'R': case 0x81: case 0x92: return op_call(m, op);
  case 'i': case 'o': return op_inst(m, op);
  case 'b': return build(m);
  case 'Q': return persid(m, pop(m));
  case 'q': case 'r': case 'p': case 0x94: case 'h': case 'j': case 'g':
    return op_memo(m, op);
  case 0x97: return FAIL(m, "NEXT_BUFFER: out-of-band buffers are not supported");
  case 0x98: return top(m) ? GT_OK : GT_ERR;
  case 0x82: case 0x83: case 0x84:
    return FAIL(m, "EXT1/EXT2/EXT4: the copyreg extension registry is not supported");
  }
  char what[48];
  snprintf(what, sizeof what, "unknown opcode 0x%02x", op);
  return FAIL(m, what);
}

/* ------------------------------------------------------------ result */

static gt_value *convert(vm *m, gt_value *v, int depth);

static int budget(vm *m, size_t bytes) {
  if (++m->nodes > GT_PICKLE_MAX_NODES)
    return gt_fail(m->err, "pickle expands to more than %zu values", GT_PICKLE_MAX_NODES);
  if (bytes > GT_PICKLE_MAX_BYTES - m->bytes)
    return gt_fail(m->err, "pickle expands to more than %zu bytes of strings",
                   GT_PICKLE_MAX_BYTES);
  m->bytes += bytes;
  return GT_OK;
}

static int is_container(const gt_value *v) {
  return v->kind == GT_V_LIST || v->kind == GT_V_MAP || v->kind == GT_V_OBJECT;
}

static gt_value *convert_children(vm *m, gt_value *v, gt_value *o, int depth) {
  for (size_t i = 0; i < v->n; i++) {
    gt_value *it = v->items[i];
    gt_value *c = it ? convert(m, it, depth + 1) : gt_value_new(GT_V_NIL);
    if (!c) {
      gt_value_free(o);
      return NULL;
    }
    int rc;
    if (v->kind == GT_V_MAP) {
      gt_value *k = convert(m, v->keys[i], depth + 1);
      if (!k) {
        gt_value_free(c);
        gt_value_free(o);
        return NULL;
      }
      rc = gt_value_set(o, k, c);
    } else {
      rc = gt_value_push(o, c);
    }
    if (rc) {
      gt_value_free(o);
      gt_fail(m->err, "out of memory");
      return NULL;
    }
  }
  return o;
}

static gt_value *convert(vm *m, gt_value *v, int depth) {
  if (depth > GT_PICKLE_MAX_DEPTH) {
    gt_fail(m->err, "pickle nests values deeper than %d levels", GT_PICKLE_MAX_DEPTH);
    return NULL;
  }
  if (is_container(v) && v->f != 0) /* a value inside itself: cut here */
    return gt_value_new(GT_V_NIL);
  if (budget(m, v->kind == GT_V_STR || v->kind == GT_V_OBJECT ? v->len : 0)) return NULL;
  gt_value *o = gt_value_new(v->kind);
  if (!o) {
    gt_fail(m->err, "out of memory");
    return NULL;
  }
  o->i = v->i;
  o->f = v->kind == GT_V_STR || v->kind == GT_V_FLOAT || v->kind == GT_V_TENSOR ? v->f : 0;
  if (v->kind == GT_V_STR || v->kind == GT_V_OBJECT) {
    if (!(o->str = malloc(v->len + 1))) {
      free(o);
      gt_fail(m->err, "out of memory");
      return NULL;
    }
    if (v->len) memcpy(o->str, v->str, v->len);
    o->str[v->len] = 0;
    o->len = v->len;
  }
  if (!is_container(v)) return o;
  v->f = 1;
  o = convert_children(m, v, o, depth);
  v->f = 0;
  return o;
}

static void vm_free(vm *m) {
  for (size_t i = 0; i < m->na; i++) shallow_free(m->arena[i]);
  free(m->arena);
  free(m->stack);
  free(m->marks);
  free(m->memo);
}

int gt_pickle_load(const unsigned char *p, size_t len, uint64_t base,
                   const gt_pickle_hooks *hooks, gt_value **out, size_t *used,
                   gt_err *err) {
  vm m;
  memset(&m, 0, sizeof m);
  m.p = p;
  m.len = len;
  m.base = base;
  m.h = hooks;
  m.err = err;
  *out = NULL;
  int done = 0, rc = GT_OK;
  while (!done && rc == GT_OK) rc = step(&m, &done);
  gt_value *result = NULL;
  if (rc == GT_OK) {
    m.op_at = m.pos - 1;
    result = pop(&m);
    if (!result) rc = GT_ERR;
  }
  if (rc == GT_OK && !(*out = convert(&m, result, 0))) rc = GT_ERR;
  if (used) *used = m.pos;
  vm_free(&m);
  return rc;
}
