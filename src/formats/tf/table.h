/* tftable.h: the LevelDB-style sorted string table of TensorFlow `.index`
 * files and V1 checkpoints (docs/formats/tf.md#sstable).
 *
 * File: data blocks, an (empty) metaindex block, the index block, each
 * followed by a 5-byte trailer (type 0 raw / 1 snappy, masked crc32c of the
 * stored bytes and the type byte), then a 48-byte footer: two block handles
 * (varint64 offset, size) padded to 40 bytes and the magic
 * 0xDB4775248B80FB57 (LE). A block is prefix-compressed entries (varint32
 * shared, non_shared, value_length, key delta, value), then u32 restart
 * offsets and their u32 count.
 *
 * The reader verifies every trailer CRC, decompresses snappy blocks, checks
 * restart points, block handles, index separators and that keys strictly
 * increase across the file, and returns every entry in order. Values point
 * into the mapped file (raw blocks) or into decompressed copies the table
 * owns; keys into a buffer the table owns. */
#ifndef GT_TFTABLE_H
#define GT_TFTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/storage.h"

#define GT_TFTABLE_MAGIC 0xDB4775248B80FB57ull
#define GT_TFTABLE_FOOTER 48
/* TensorFlow's table options for bundles. */
#define GT_TFTABLE_BLOCK_SIZE ((size_t)256 << 10)
#define GT_TFTABLE_RESTART_INTERVAL 16

typedef struct gt_tfkv {
  const unsigned char *key;
  size_t klen;
  const unsigned char *val;
  size_t vlen;
} gt_tfkv;

typedef struct gt_tftable {
  gt_tfkv *kv;            /* every entry, in file (= key) order */
  size_t n;
  int snappy_blocks;      /* how many data/index blocks were snappy */
  size_t data_blocks;
  /* owned: */
  gt_storage *file;       /* retained mapping */
  unsigned char *keys;
  unsigned char **bufs;   /* decompressed blocks */
  size_t nbufs;
} gt_tftable;

/* Parse the whole table in `file` (retained until close). Errors read
 * "block at offset N: ..." / "footer: ..." / "key \"k\": ..."; the caller
 * prefixes the file name. On failure t is left closed. */
int gt_tftable_open(gt_tftable *t, gt_storage *file, gt_err *err);
void gt_tftable_close(gt_tftable *t);
/* Whether the last 8 bytes of p[0, n) are the table magic. */
int gt_tftable_has_magic(const unsigned char *p, size_t n);

/* A growable byte buffer. */
typedef struct gt_tfbuf {
  unsigned char *p;
  size_t n, cap;
} gt_tfbuf;
int gt_tfbuf_put(gt_tfbuf *b, const void *p, size_t n, gt_err *err);
int gt_tfbuf_varint(gt_tfbuf *b, uint64_t v, gt_err *err);
void gt_tfbuf_free(gt_tfbuf *b);

/* Decode a varint64 at p[*i, n); -1 when truncated or longer than 10
 * bytes. */
int gt_tf_varint(const unsigned char *p, size_t n, size_t *i, uint64_t *v);

/* The table's key order: bytewise, a proper prefix first (<0, 0, >0). */
int gt_tftable_cmp(const unsigned char *a, size_t an, const unsigned char *b,
                   size_t bn);

typedef struct gt_tftable_opts {
  size_t block_size;       /* flush a data block once its estimate reaches this */
  int restart_interval;    /* data blocks; the index block always uses 1 */
  int snappy;              /* compress blocks when it saves >= 1/8 (as TF) */
} gt_tftable_opts;

/* Append the table of kv[0, n) (keys strictly increasing, else an error
 * naming the key) to out, exactly as TensorFlow's TableBuilder lays it out:
 * a data block is flushed when its size estimate reaches block_size, or
 * before an entry of >= 2 x block_size; index keys are TF's shortest
 * separators and, for the last block, the short successor. opts NULL means
 * TF's bundle options (256 KiB, 16, no compression). */
int gt_tftable_build(const gt_tfkv *kv, size_t n, const gt_tftable_opts *opts,
                     gt_tfbuf *out, gt_err *err);

#endif
