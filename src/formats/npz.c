/* npz.c: NumPy .npz, read and write (see npz.h, docs/formats/numpy.md#npz).
 *
 * Reading indexes the archive with zipmap, parses each .npy member's
 * header (a deflated member's by inflating only its first bytes) and gives
 * its array a lazy zipmember storage. Writing plans every member with the
 * .npy encoding (npy.h) and has libzip build the archive, its output going
 * to a write source that ends in gt_out's temporary file (fsync, rename). */
#include "formats/npz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

#include "io/fileout.h"
#include "io/utf8.h"
#include "io/zipmap.h"
#include "io/zipmember.h"

/* ------------------------------------------------------------------ */
/* Reading                                                              */
/* ------------------------------------------------------------------ */

static int cmp_member(const void *a, const void *b) {
  const gt_zip_member *x = *(gt_zip_member *const *)a;
  const gt_zip_member *y = *(gt_zip_member *const *)b;
  size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
  int c = memcmp(x->name, y->name, n);
  return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

static int check_duplicates(const gt_zip_dir *d, gt_err *err) {
  if (d->n < 2) return GT_OK;
  const gt_zip_member **v = malloc(d->n * sizeof *v);
  if (!v) return gt_fail(err, "out of memory");
  for (size_t i = 0; i < d->n; i++) v[i] = &d->m[i];
  qsort(v, d->n, sizeof *v, cmp_member);
  int rc = GT_OK;
  for (size_t i = 1; i < d->n && rc == GT_OK; i++)
    if (cmp_member(&v[i - 1], &v[i]) == 0)
      rc = gt_fail(err, "member \"%.200s\" appears twice", v[i]->name);
  free(v);
  return rc;
}

static int is_npy_member(const gt_zip_member *mm) {
  return mm->name_len >= 4 && memcmp(mm->name + mm->name_len - 4, ".npy", 4) == 0;
}

/* Header of deflated member mm, read by inflating only its first bytes. */
static int deflated_header(const gt_storage *file, const gt_zip_member *mm,
                           gt_npy_header *h, gt_err *err) {
  uint64_t got = mm->size < 4096 ? mm->size : 4096, need;
  unsigned char *buf = malloc(4096);
  if (!buf) return gt_fail(err, "out of memory");
  int rc = gt_zip_inflate_prefix(file->data, mm, buf, got, err);
  if (rc == GT_OK) rc = gt_npy_header_need(buf, got, &need, err);
  if (rc == GT_OK && need > got && need <= mm->size) {
    unsigned char *big = realloc(buf, (size_t)need);
    if (!big) rc = gt_fail(err, "out of memory");
    else buf = big;
    if (rc == GT_OK) rc = gt_zip_inflate_prefix(file->data, mm, buf, need, err);
    if (rc == GT_OK) got = need;
  }
  if (rc == GT_OK) rc = gt_npy_parse_header(buf, got, h, err);
  free(buf);
  return rc;
}

typedef struct npz_state {
  gt_storage *file;
  gt_value *arrays, *others;
} npz_state;

static int member_meta(npz_state *st, const gt_zip_member *mm,
                       const gt_npy_header *h, gt_err *err) {
  const char *comp = mm->method == 0 ? "stored" : "deflated";
  gt_value *d = gt_npy_header_meta(h);
  if (!d) return gt_fail(err, "out of memory");
  int bad = gt_value_setk(d, "member", gt_value_str(mm->name, mm->name_len));
  bad |= gt_value_setk(d, "compression", gt_value_str(comp, strlen(comp)));
  if (bad) {
    gt_value_free(d);
    return gt_fail(err, "out of memory");
  }
  if (gt_value_set(st->arrays, gt_value_str(mm->name, mm->name_len - 4), d))
    return gt_fail(err, "out of memory");
  return GT_OK;
}

/* The member's array bytes: a stored member's CRC-32 is checked on first
 * use, then its array bytes are used in place when aligned, else copied; a
 * deflated member is inflated on first use, its array bytes kept. */
static int read_member(npz_state *st, gt_model *m, const gt_zip_member *mm,
                       gt_err *err) {
  gt_npy_header h;
  if (gt_zip_member_check(mm, err) != GT_OK) return GT_ERR;
  if (mm->method == 0) {
    if (gt_npy_parse_header(st->file->data + mm->data_offset, mm->size, &h,
                            err) != GT_OK)
      return GT_ERR;
  } else if (deflated_header(st->file, mm, &h, err) != GT_OK) {
    return GT_ERR;
  }
  if (gt_npy_check_data(&h, mm->size - h.data_offset, err) != GT_OK) return GT_ERR;
  gt_storage *raw = gt_zip_member_storage(
      st->file, mm, h.data_offset, h.nbytes, gt_npy_align(&h),
      gt_npy_label(st->file, "member", mm->name, mm->name_len), err);
  if (!raw) return GT_ERR;
  int rc = gt_npy_add_array(m, mm->name, mm->name_len - 4, &h, raw, 0, err);
  gt_storage_release(raw);
  if (rc != GT_OK) return GT_ERR;
  return member_meta(st, mm, &h, err);
}

static int npz_members(npz_state *st, const gt_zip_dir *d, gt_model *m,
                       gt_err *err) {
  for (size_t i = 0; i < d->n; i++) {
    const gt_zip_member *mm = &d->m[i];
    if (!is_npy_member(mm)) {
      if (gt_value_push(st->others, gt_value_str(mm->name, mm->name_len)))
        return gt_fail(err, "out of memory");
      continue;
    }
    if (read_member(st, m, mm, err) != GT_OK)
      return gt_wrap(err, "member \"%.200s\"", mm->name);
  }
  return GT_OK;
}

int gt_npz_read(gt_storage *file, const char *path, gt_model *m, gt_err *err) {
  (void)path; /* the mapping is read */
  gt_zip_dir d;
  if (gt_zip_dir_read_file(file, &d, err) != GT_OK) return GT_ERR;
  npz_state st = {file, gt_value_new(GT_V_MAP), gt_value_new(GT_V_LIST)};
  int rc = check_duplicates(&d, err);
  if (rc == GT_OK && (!st.arrays || !st.others))
    rc = gt_fail(err, "out of memory");
  if (rc == GT_OK) rc = npz_members(&st, &d, m, err);
  gt_zip_dir_free(&d);
  gt_value *meta = rc == GT_OK ? gt_value_new(GT_V_MAP) : NULL;
  if (!meta) {
    gt_value_free(st.arrays);
    gt_value_free(st.others);
    return rc == GT_OK ? gt_fail(err, "out of memory") : GT_ERR;
  }
  int bad = gt_value_setk(meta, "arrays", st.arrays) != GT_OK;
  if (st.others->n) bad |= gt_value_setk(meta, "other_members", st.others);
  else gt_value_free(st.others);
  if (bad) {
    gt_value_free(meta);
    return gt_fail(err, "out of memory");
  }
  m->format = "npz";
  gt_value_free(m->meta);
  m->meta = meta;
  return GT_OK;
}

/* ------------------------------------------------------------------ */
/* Writing                                                              */
/* ------------------------------------------------------------------ */

/* .npz: libzip builds the archive; its output goes to a write source of
 * ours that gathers bytes in `buf` (file bytes [bstart, bstart + blen)) in
 * front of gt_out's temporary file. libzip seeks back only to rewrite a
 * local header it wrote earlier, which lands either in buf or in the file
 * (pwrite); gt_out_commit then fsyncs and renames. */
typedef struct npz_writer {
  const char *path;
  gt_out o;
  int open;
  unsigned char *buf;
  size_t blen, bcap;
  uint64_t bstart, wpos;
  zip_error_t zerr;
  gt_err err;
  int failed;
  const gt_save *s;
  uint64_t done, total;
} npz_writer;

static void w_error(npz_writer *w, const gt_err *e, int zip_code) {
  if (!w->failed) {
    w->failed = 1;
    w->err = *e;
  }
  zip_error_set(&w->zerr, zip_code, 0);
}

static int pwrite_all(int fd, const unsigned char *p, size_t n, uint64_t at,
                      gt_err *err) {
  while (n > 0) {
    ssize_t r = pwrite(fd, p, n, (off_t)at);
    if (r < 0) {
      if (errno == EINTR) continue;
      return gt_fail(err, "cannot write: %s", strerror(errno));
    }
    p += r;
    at += (uint64_t)r;
    n -= (size_t)r;
  }
  return GT_OK;
}

static int w_flush(npz_writer *w, gt_err *err) {
  if (pwrite_all(w->o.fd, w->buf, w->blen, w->bstart, err) != GT_OK)
    return GT_ERR;
  w->bstart += w->blen;
  w->blen = 0;
  return GT_OK;
}

static int w_write(npz_writer *w, const unsigned char *p, size_t n,
                   gt_err *err) {
  while (n > 0) {
    uint64_t end = w->bstart + w->blen;
    size_t k;
    if (w->wpos < w->bstart) {
      k = w->bstart - w->wpos < n ? (size_t)(w->bstart - w->wpos) : n;
      if (pwrite_all(w->o.fd, p, k, w->wpos, err) != GT_OK) return GT_ERR;
    } else if (w->wpos < end) {
      k = end - w->wpos < n ? (size_t)(end - w->wpos) : n;
      memcpy(w->buf + (w->wpos - w->bstart), p, k);
    } else if (n <= w->bcap - w->blen) {
      k = n;
      memcpy(w->buf + w->blen, p, k);
      w->blen += k;
    } else {
      if (w_flush(w, err) != GT_OK) return GT_ERR;
      if (n < w->bcap) continue;
      k = n;
      if (pwrite_all(w->o.fd, p, k, w->bstart, err) != GT_OK) return GT_ERR;
      w->bstart += k;
    }
    w->wpos += k;
    p += k;
    n -= k;
  }
  return GT_OK;
}

static void w_abort(npz_writer *w) {
  if (w->open) gt_out_abort(&w->o);
  w->open = 0;
  free(w->buf);
  w->buf = NULL;
}

static zip_int64_t w_begin(npz_writer *w) {
  gt_err e;
  w->bcap = GT_NPY_STAGE_BYTES;
  w->blen = 0;
  w->bstart = w->wpos = 0;
  if (!(w->buf = malloc(w->bcap))) {
    gt_fail(&e, "out of memory");
    w_error(w, &e, ZIP_ER_MEMORY);
    return -1;
  }
  if (gt_out_open(&w->o, w->path, NULL, &e) != GT_OK) {
    w_error(w, &e, ZIP_ER_TMPOPEN);
    return -1;
  }
  w->open = 1;
  return 0;
}

static zip_int64_t w_commit(npz_writer *w) {
  gt_err e;
  if (w_flush(w, &e) != GT_OK) {
    w_error(w, &e, ZIP_ER_WRITE);
    return -1;
  }
  w->open = 0;
  if (gt_out_commit(&w->o, &e) != GT_OK) {
    w_error(w, &e, ZIP_ER_WRITE);
    return -1;
  }
  return 0;
}

static zip_int64_t writer_cb(void *ud, void *data, zip_uint64_t len,
                             zip_source_cmd_t cmd) {
  npz_writer *w = ud;
  gt_err e;
  switch (cmd) {
  case ZIP_SOURCE_SUPPORTS:
    return ZIP_SOURCE_SUPPORTS_WRITABLE;
  case ZIP_SOURCE_STAT:
    /* The old target is never read: report it absent, so libzip starts a
     * new archive (gt_out replaces the target on commit). */
    zip_error_set(&w->zerr, ZIP_ER_READ, ENOENT);
    return -1;
  case ZIP_SOURCE_ERROR:
    return zip_error_to_data(&w->zerr, data, len);
  case ZIP_SOURCE_BEGIN_WRITE:
    return w_begin(w);
  case ZIP_SOURCE_WRITE:
    if (!w->open || w_write(w, data, (size_t)len, &e) != GT_OK) {
      if (!w->open) gt_fail(&e, "output is not open");
      w_error(w, &e, ZIP_ER_WRITE);
      return -1;
    }
    return (zip_int64_t)len;
  case ZIP_SOURCE_SEEK_WRITE: {
    zip_int64_t at = zip_source_seek_compute_offset(
        w->wpos, w->bstart + w->blen, data, len, &w->zerr);
    if (at < 0) return -1;
    w->wpos = (uint64_t)at;
    return 0;
  }
  case ZIP_SOURCE_TELL_WRITE:
    return (zip_int64_t)w->wpos;
  case ZIP_SOURCE_COMMIT_WRITE:
    return w_commit(w);
  case ZIP_SOURCE_ROLLBACK_WRITE:
  case ZIP_SOURCE_FREE:
    w_abort(w);
    return 0;
  case ZIP_SOURCE_REMOVE:
    return 0;
  default:
    zip_error_set(&w->zerr, ZIP_ER_OPNOTSUPP, 0);
    return -1;
  }
}

/* One member's bytes: the header, then the producer's pieces. */
typedef struct member_src {
  npz_writer *w;
  const gt_entry *e;
  gt_npy_plan p;
  gt_npy_producer *pr;
  const unsigned char *piece;   /* the producer's current piece */
  int opened;
  size_t hpos, plen, ppos;
  uint64_t sent;
  zip_error_t zerr;
} member_src;

static zip_int64_t member_fail(member_src *m, gt_err *e) {
  gt_wrap(e, "tensor \"%.200s\"", m->e->name);
  w_error(m->w, e, ZIP_ER_READ);
  zip_error_set(&m->zerr, ZIP_ER_READ, 0);
  return -1;
}

static zip_int64_t member_read(member_src *m, unsigned char *out, size_t len) {
  gt_err e;
  size_t done = 0;
  while (done < len) {
    size_t k;
    if (m->hpos < m->p.hlen) {
      k = m->p.hlen - m->hpos < len - done ? m->p.hlen - m->hpos : len - done;
      memcpy(out + done, m->p.header + m->hpos, k);
      m->hpos += k;
    } else if (m->ppos < m->plen) {
      k = m->plen - m->ppos < len - done ? m->plen - m->ppos : len - done;
      memcpy(out + done, m->piece + m->ppos, k);
      m->ppos += k;
    } else {
      if (gt_npy_producer_next(m->pr, &m->piece, &m->plen, &e) != GT_OK)
        return member_fail(m, &e);
      m->ppos = 0;
      if (m->plen == 0) break;
      m->w->done += m->plen;
      if (m->w->s->progress)
        m->w->s->progress(m->w->s->progress_ctx, m->w->done, m->w->total);
      continue;
    }
    done += k;
  }
  m->sent += done;
  if (done < len && m->sent != m->p.total) {
    gt_fail(&e, "produced %llu bytes, expected %llu",
            (unsigned long long)m->sent, (unsigned long long)m->p.total);
    return member_fail(m, &e);
  }
  return (zip_int64_t)done;
}

static zip_int64_t member_cb(void *ud, void *data, zip_uint64_t len,
                             zip_source_cmd_t cmd) {
  member_src *m = ud;
  gt_err e;
  switch (cmd) {
  case ZIP_SOURCE_SUPPORTS:
    return zip_source_make_command_bitmap(ZIP_SOURCE_OPEN, ZIP_SOURCE_READ,
                                          ZIP_SOURCE_CLOSE, ZIP_SOURCE_STAT,
                                          ZIP_SOURCE_ERROR, ZIP_SOURCE_FREE,
                                          -1);
  case ZIP_SOURCE_STAT: {
    zip_stat_t *st = ZIP_SOURCE_GET_ARGS(zip_stat_t, data, len, &m->zerr);
    if (!st) return -1;
    zip_stat_init(st);
    st->size = m->p.total;
    st->valid |= ZIP_STAT_SIZE;
    return sizeof *st;
  }
  case ZIP_SOURCE_OPEN:
    gt_npy_producer_free(m->pr);
    m->hpos = m->plen = m->ppos = 0;
    m->sent = 0;
    if (!(m->pr = gt_npy_producer_new(&m->e->t, &m->p, &e)))
      return member_fail(m, &e);
    return 0;
  case ZIP_SOURCE_READ:
    return member_read(m, data, (size_t)len);
  case ZIP_SOURCE_CLOSE:
    gt_npy_producer_free(m->pr);
    m->pr = NULL;
    return 0;
  case ZIP_SOURCE_ERROR:
    return zip_error_to_data(&m->zerr, data, len);
  case ZIP_SOURCE_FREE:
    gt_npy_producer_free(m->pr);
    free(m);
    return 0;
  default:
    zip_error_set(&m->zerr, ZIP_ER_OPNOTSUPP, 0);
    return -1;
  }
}

/* Queue entry e as member "<name>.npy". */
static int add_member(zip_t *za, npz_writer *w, const gt_entry *e,
                      int compress, gt_err *err) {
  member_src *m = calloc(1, sizeof *m);
  size_t n = strlen(e->name);
  char *name = malloc(n + 5);
  if (!m || !name) {
    free(m);
    free(name);
    return gt_fail(err, "out of memory");
  }
  memcpy(name, e->name, n);
  memcpy(name + n, ".npy", 5);
  m->w = w;
  m->e = e;
  int rc = gt_npy_plan_tensor(&e->t, &m->p, err);
  if (rc != GT_OK) gt_wrap(err, "tensor \"%.200s\"", e->name);
  w->total += m->p.nbytes;
  zip_error_t ze;
  zip_error_init(&ze);
  zip_source_t *src = rc == GT_OK ? zip_source_function_create(member_cb, m, &ze)
                                  : NULL;
  zip_int64_t idx = -1;
  if (rc == GT_OK && !src) rc = gt_fail(err, "%s", zip_error_strerror(&ze));
  if (rc != GT_OK) free(m);
  else if ((idx = zip_file_add(za, name, src, gt_utf8_valid((const unsigned char *)name, strlen(name))
                                                  ? ZIP_FL_ENC_UTF_8
                                                  : ZIP_FL_ENC_GUESS)) < 0) {
    rc = zip_error_code_zip(zip_get_error(za)) == ZIP_ER_EXISTS
             ? gt_fail(err, "tensor name \"%.200s\" appears twice", e->name)
             : gt_fail(err, "cannot add \"%.200s\": %s", name, zip_strerror(za));
    zip_source_free(src);
  } else if (zip_set_file_compression(za, (zip_uint64_t)idx,
                                      compress ? ZIP_CM_DEFLATE : ZIP_CM_STORE,
                                      0) != 0) {
    rc = gt_fail(err, "cannot set compression: %s", zip_strerror(za));
  }
  zip_error_fini(&ze);
  free(name);
  return rc;
}

/* An archive without members is just an end of central directory record,
 * as Python's zipfile writes it for np.savez() with no arrays. */
static int write_empty_zip(const char *path, const gt_save *s, gt_err *err) {
  static const unsigned char eocd[22] = {'P', 'K', 5, 6};
  gt_out o;
  if (gt_out_open(&o, path, s, err) != GT_OK) return GT_ERR;
  if (gt_out_write(&o, eocd, sizeof eocd, err) != GT_OK) {
    gt_out_abort(&o);
    return GT_ERR;
  }
  return gt_out_commit(&o, err);
}

int gt_npz_write(const char *path, const gt_save *s, int compress,
                 gt_err *err) {
  if (gt_out_check_inputs(path, s->entries, s->n, err) != GT_OK) return GT_ERR;
  if (s->n == 0) return write_empty_zip(path, s, err);
  npz_writer w;
  memset(&w, 0, sizeof w);
  w.path = path;
  w.s = s;
  zip_error_init(&w.zerr);
  zip_error_t ze;
  zip_error_init(&ze);
  zip_source_t *src = zip_source_function_create(writer_cb, &w, &ze);
  zip_t *za = src ? zip_open_from_source(src, ZIP_CREATE | ZIP_TRUNCATE, &ze)
                  : NULL;
  if (!za) {
    gt_fail(err, "cannot start the archive: %s", zip_error_strerror(&ze));
    if (src) zip_source_free(src);
    zip_error_fini(&ze);
    zip_error_fini(&w.zerr);
    return GT_ERR;
  }
  zip_error_fini(&ze);
  int rc = GT_OK;
  for (size_t i = 0; i < s->n && rc == GT_OK; i++)
    rc = add_member(za, &w, &s->entries[i], compress, err);
  if (rc != GT_OK) {
    zip_discard(za);
  } else if (zip_close(za) != 0) {
    if (w.failed) *err = w.err;
    else gt_fail(err, "cannot write the archive: %s", zip_strerror(za));
    zip_discard(za);
    rc = GT_ERR;
  }
  w_abort(&w);
  zip_error_fini(&w.zerr);
  return rc;
}
