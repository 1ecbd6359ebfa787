/* sandbox.h: run untrusted-input code in a child process.
 *
 * Some parsers are not ours and cannot be made safe on hostile bytes
 * (libhdf5 segfaults or loops on corrupt metadata). gt_sandbox_run forks,
 * runs the function in the child under limits, and hands the parent the
 * bytes the child produced. Whatever the child does (a crash, an abort, a
 * hang, a runaway allocation), the parent gets a status and an error
 * message, never a signal.
 *
 * The child:
 *   - inherits the parent's memory (so a mapped file image needs no reopen);
 *   - gets RLIMIT_AS = limits->max_mem (left unset in sanitizer builds,
 *     whose shadow memory needs terabytes of address space), RLIMIT_CPU and
 *     RLIMIT_CORE = 0;
 *   - is confined by a seccomp filter (where the kernel has it) that lets
 *     through only memory management, reading and writing already open
 *     descriptors, time and exit: opening files, sockets, exec and the like
 *     fail with EPERM;
 *   - must produce its result within limits->timeout_ms of wall time,
 *     else it is killed.
 * Invariant: the parent's state is never touched by the child; the result
 * is copied through a pipe, capped at limits->max_out bytes.
 * gt_sandbox_call (below) does the same work in a persistent worker. */
#ifndef GT_SANDBOX_H
#define GT_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include "io/grow.h"
#include "tensor/error.h"

typedef struct gt_sandbox_limits {
  unsigned timeout_ms;  /* wall time for the child, 0: 30 s */
  uint64_t max_mem;     /* address space the child may add to what it
                         * inherits, 0: 4 GiB */
  uint64_t max_out;     /* bytes of result, 0: 1 GiB */
} gt_sandbox_limits;

/* A growable result buffer the child fills. */
typedef struct gt_sbuf {
  unsigned char *p;
  size_t n, cap;
} gt_sbuf;

int gt_sbuf_put(gt_sbuf *b, const void *p, size_t n, gt_err *err);
void gt_sbuf_free(gt_sbuf *b);

/* The child's work: append the result to out and return GT_OK, or fill err
 * and return GT_ERR (the message reaches the parent's err). */
typedef int (*gt_sandbox_fn)(void *ctx, gt_sbuf *out, gt_err *err);

/* gt_sandbox_run's status when the child itself failed (a crash, a
 * timeout, a limit), as opposed to GT_ERR, the child's own error. */
enum { GT_SANDBOX_FAULT = -2 };

/* Run fn(ctx) in a child. On GT_OK, *out (malloc'd, caller frees) holds
 * the child's result. On failure err says what happened: the child's own
 * error, or "crashed (signal 11, SIGSEGV)", "did not finish within N ms",
 * "failed (... out of memory ...)", "produced more than N bytes", each
 * followed by " while <the child's last note>" when it left one. */
int gt_sandbox_run(gt_sandbox_fn fn, void *ctx, const gt_sandbox_limits *lim,
                   unsigned char **out, size_t *out_len, gt_err *err);

/* The persistent worker. Forking a child per call costs the child a page
 * fault for every page of heap it writes (copy-on-write or fresh), which
 * for libhdf5's walk of a big file is some 1,500 faults, plus the fork and
 * the confinement. Work on a file that is mapped from disk goes instead to
 * one long-lived child (forked on first use, confined the same way, its
 * heap warm from earlier calls) that gets the file's descriptor over a
 * socket and maps [off, off + len) itself. The worker's errors, crashes,
 * hangs and limits are reported exactly as gt_sandbox_run's. It is
 * replaced after any failure (state a corrupt file left behind never
 * serves another file), and when a worker that had served earlier calls
 * crashes, the call is retried once in a fresh one so that a crash is
 * only ever blamed on the file that caused it. The worker exits when the
 * parent's end of the socket closes (the parent exited).
 *
 * fn runs in the worker with req (the caller's bytes, copied) and the
 * mapped bytes, and appends its result to out. It must be a function of
 * this program (the worker is a fork: the same code at the same place). */
typedef int (*gt_sandbox_serve_fn)(const unsigned char *req, size_t req_len,
                                   const unsigned char *file, size_t file_len,
                                   gt_sbuf *out, gt_err *err);

int gt_sandbox_call(gt_sandbox_serve_fn fn, const void *req, size_t req_len,
                    int fd, uint64_t off, uint64_t len,
                    const gt_sandbox_limits *lim, unsigned char **out,
                    size_t *out_len, gt_err *err);

/* In a child (one-shot or the worker): run done(p) once the answer is on
 * its way (the worker's clean-up, off the parent's critical path; a
 * one-shot child just exits, leaving p reachable). Outside a child: now.
 * Falls back to now when the list is full. */
void gt_sandbox_defer(void (*done)(void *), void *p);

/* Whether callers should use the worker where they can: yes while one is
 * running; to start one, only while the parent holds at most
 * GT_WORKER_MAX_PARENT bytes of anonymous memory. The worker shares the
 * parent's pages of the moment it was forked, and keeps those the parent
 * later frees or writes alive for as long as it runs: forking it from a
 * small parent bounds that (a big one forks a short-lived child per call
 * instead). Tests turn the worker off (gt_sandbox_test_worker(0)) to
 * exercise a child per call. */
#define GT_WORKER_MAX_PARENT ((unsigned long long)256 << 20)
int gt_sandbox_use_worker(void);
void gt_sandbox_test_worker(int on);
/* Testing: the running worker's pid, 0 when there is none. */
int gt_sandbox_worker_pid(void);

/* In the child: say what it is doing now ("reading attribute \"x\" of
 * \"g\""), so that if it dies there the parent's error can say where. The
 * note lives in a page shared with the parent; outside a child it is a
 * no-op. printf-style, truncated at 255 bytes. */
void gt_sandbox_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Whether this process is a sandbox child (work that only keeps the
 * parent's memory small, such as dropping pages, is pointless there). */
int gt_sandbox_in_child(void);

/* Testing: make the next children crash (1), hang (2) or allocate without
 * bound (3) before running fn, or (4) a worker that has served an earlier
 * call crash; 0 turns it off. */
void gt_sandbox_test_fault(int kind);

#endif
