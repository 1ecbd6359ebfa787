/* pickle_emit.h: writing a protocol-2 pickle the way CPython's pickler does.
 *
 * Only what a torch.save data.pkl needs (docs/formats/torch.md#pickled-object, docs/formats/torch.md#pickle-opcodes): the opcodes
 * PROTO, GLOBAL, BINPUT/LONG_BINPUT, BINGET/LONG_BINGET, MARK, TUPLE,
 * TUPLE1-3, EMPTY_TUPLE, EMPTY_DICT, EMPTY_LIST, SETITEM(S), APPEND(S),
 * BININT1/BININT2/BININT/LONG1, BINFLOAT, BINUNICODE, NEWTRUE/NEWFALSE,
 * NONE, REDUCE, BINPERSID, STOP. The caller drives the structure; this
 * file encodes opcodes and numbers the memo. Memo slots are assigned in
 * order (0, 1, ...) as CPython does; a memoised GLOBAL is emitted once and
 * fetched with BINGET afterwards. Bytes gather in a growable buffer (the
 * pickle of a weights file is small: tensor data never passes through it). */
#ifndef GT_PICKLE_EMIT_H
#define GT_PICKLE_EMIT_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/error.h"

/* CPython's pickler splits SETITEMS and APPENDS into batches of this many
 * items (pickle._BATCHSIZE). */
#define GT_PE_BATCH 1000

typedef struct gt_pe_glob {
  char *module, *name;
  uint32_t memo;
} gt_pe_glob;

typedef struct gt_pe {
  unsigned char *buf;
  size_t len, cap;
  uint32_t memo;            /* next memo slot */
  gt_pe_glob *globals;    /* memoised globals */
  size_t nglobals, gcap;
  int failed;               /* out of memory or too big: every call fails */
} gt_pe;

void gt_pe_init(gt_pe *p);
void gt_pe_free(gt_pe *p);

/* Each returns GT_OK or GT_ERR (out of memory, memo exhausted). */
int gt_pe_proto(gt_pe *p, gt_err *err);           /* PROTO 2 */
int gt_pe_stop(gt_pe *p, gt_err *err);
int gt_pe_op(gt_pe *p, unsigned char op, gt_err *err); /* argument-less op */
/* Memoise the top of the stack; *slot (may be NULL) gets its memo index. */
int gt_pe_put(gt_pe *p, uint32_t *slot, gt_err *err);
int gt_pe_get(gt_pe *p, uint32_t slot, gt_err *err);
/* GLOBAL module name, memoised: the first use emits it and BINPUT, later
 * uses BINGET the same slot. */
int gt_pe_global(gt_pe *p, const char *module, const char *name, gt_err *err);
/* BINUNICODE (s must be UTF-8), memoised (a new slot every call). */
int gt_pe_str(gt_pe *p, const char *s, size_t n, gt_err *err);
/* Python int: BININT1, BININT2, BININT or LONG1, as save_long picks. */
int gt_pe_int(gt_pe *p, int64_t v, gt_err *err);
int gt_pe_float(gt_pe *p, double v, gt_err *err); /* BINFLOAT */
int gt_pe_bool(gt_pe *p, int v, gt_err *err);     /* NEWTRUE / NEWFALSE */
/* A tuple of n ints, as save_tuple writes it: EMPTY_TUPLE for n == 0,
 * TUPLE1-3 for n <= 3, MARK ... TUPLE beyond; memoised unless empty. */
int gt_pe_int_tuple(gt_pe *p, const int64_t *v, int n, gt_err *err);

/* Opcode bytes used by callers with gt_pe_op. */
enum {
  GT_PE_MARK = '(', GT_PE_TUPLE = 't', GT_PE_EMPTY_TUPLE = ')',
  GT_PE_EMPTY_DICT = '}', GT_PE_EMPTY_LIST = ']', GT_PE_SETITEM = 's',
  GT_PE_SETITEMS = 'u', GT_PE_APPEND = 'a', GT_PE_APPENDS = 'e',
  GT_PE_REDUCE = 'R', GT_PE_BINPERSID = 'Q', GT_PE_NONE = 'N',
  GT_PE_TUPLE1 = 0x85, GT_PE_TUPLE2 = 0x86, GT_PE_TUPLE3 = 0x87
};

/* Whether s[0, n) is valid UTF-8 (what Python's decoder accepts: no
 * surrogates, no overlong forms, at most U+10FFFF). */
int gt_pe_utf8_ok(const char *s, size_t n);

#endif
