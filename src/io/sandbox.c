/* sandbox.c: see sandbox.h. */
#include "io/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#if defined(__SANITIZE_ADDRESS__)
#define GT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define GT_SANITIZED 1
#endif
#endif

static int test_fault;

void gt_sandbox_test_fault(int kind) { test_fault = kind; }

/* The child's last note, in a page shared with the parent (made on first
 * use, before any fork); in_child is set only in children. */
enum { NOTE_MAX = 256 };
static char *note_page;
static int in_child;

int gt_sandbox_in_child(void) { return in_child; }

void gt_sandbox_note(const char *fmt, ...) {
  if (!in_child || !note_page) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(note_page, NOTE_MAX, fmt, ap);
  va_end(ap);
}

static void note_setup(void) {
  if (!note_page) {
    void *p = mmap(NULL, NOTE_MAX, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) note_page = p;
  }
  if (note_page) note_page[0] = 0;
}

/* Append " while <note>" to err's message when the child left a note. */
static int with_note(gt_err *err) {
  if (err && note_page && note_page[0]) {
    size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n, " while %.*s", NOTE_MAX - 1,
             note_page);
  }
  return GT_ERR;
}

int gt_sbuf_put(gt_sbuf *b, const void *p, size_t n, gt_err *err) {
  if (n == 0) return GT_OK;
  if (b->n + n < b->n) return gt_fail(err, "result too large");
  if (gt_grow((void **)&b->p, &b->cap, b->n + n, 1) != GT_OK)
    return gt_fail(err, "out of memory (%zu bytes of result)", b->n + n);
  memcpy(b->p + b->n, p, n);
  b->n += n;
  return GT_OK;
}

void gt_sbuf_free(gt_sbuf *b) {
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}

/* ------------------------------------------------------------ the child */

#if defined(__x86_64__)
#define GT_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define GT_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

/* Syscalls the child may make: memory, I/O on descriptors it already has,
 * time, signals to itself, exit. Everything else fails with EPERM. */
static const int allowed[] = {
  SYS_read, SYS_write, SYS_pread64, SYS_pwrite64, SYS_readv, SYS_writev,
  SYS_close, SYS_lseek, SYS_fstat, SYS_newfstatat, SYS_brk, SYS_mmap,
  SYS_munmap, SYS_mremap, SYS_mprotect, SYS_madvise, SYS_futex,
  SYS_clock_gettime, SYS_gettimeofday, SYS_getpid, SYS_gettid,
  SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_sigaltstack,
  SYS_tgkill, SYS_exit, SYS_exit_group, SYS_sched_yield, SYS_getrlimit,
  SYS_prlimit64, SYS_sched_getaffinity, SYS_getrandom, SYS_getcwd,
#ifdef SYS_arch_prctl
  SYS_arch_prctl,
#endif
#ifdef SYS_rseq
  SYS_rseq,
#endif
};

static void confine(void) {
#ifdef GT_AUDIT_ARCH
  enum { N = sizeof allowed / sizeof allowed[0] };
  struct sock_filter f[4 + 2 * N + 1];
  int k = 0;
  f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                        offsetof(struct seccomp_data, arch));
  f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
                                        GT_AUDIT_ARCH, 1, 0);
  f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                        offsetof(struct seccomp_data, nr));
  for (int i = 0; i < N; i++) {
    f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
                                          (unsigned)allowed[i], 0, 1);
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  }
  f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
                                        SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA));
  struct sock_fprog prog = {(unsigned short)k, f};
  /* Both may fail on old kernels or inside some containers: the rlimits
   * and the process boundary still hold. */
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0)
    (void)prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
#endif
}

static void write_all(int fd, const void *p, size_t n) {
  const unsigned char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) _exit(3);
    c += w;
    n -= (size_t)w;
  }
}

/* Result on the pipe: one status byte ('O' ok, 'E' error), the length of
 * what follows (u64, little-endian), then the result or the error message.
 * The child closes the pipe as soon as it is written: a complete message
 * is the child's answer whatever happens to it afterwards, so the parent
 * need not wait for its address space to be torn down. */
static void write_msg(int fd, char status, const void *p, size_t n) {
  unsigned char h[9];
  h[0] = (unsigned char)status;
  for (int i = 0; i < 8; i++) h[1 + i] = (unsigned char)((uint64_t)n >> (8 * i));
  write_all(fd, h, sizeof h);
  write_all(fd, p, n);
  close(fd);
}

static void child(int fd, gt_sandbox_fn fn, void *ctx,
                  const gt_sandbox_limits *lim) {
  in_child = 1;
  /* A fault kills the child with its signal, whatever handler the parent
   * had (a sanitizer's turns SIGSEGV into exit(1)): the parent names it. */
  signal(SIGSEGV, SIG_DFL);
  signal(SIGBUS, SIG_DFL);
  signal(SIGFPE, SIG_DFL);
  signal(SIGILL, SIG_DFL);
  /* What a dying library prints (glibc's "free(): invalid pointer") is not
   * the user's business: the parent reports the death itself. */
  int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (nul >= 0) {
    dup2(nul, 2);
    close(nul);
  }
  struct rlimit core = {0, 0};
  setrlimit(RLIMIT_CORE, &core);
  unsigned secs = lim->timeout_ms / 1000 + 2;
  struct rlimit cpu = {secs, secs + 1};
  setrlimit(RLIMIT_CPU, &cpu);
#ifndef GT_SANITIZED
  /* The child inherits the parent's mappings (a mapped model file can be
   * large): the limit is what it may add to them. */
  unsigned long long pages = 0;
  FILE *f = fopen("/proc/self/statm", "re");
  if (f) {
    if (fscanf(f, "%llu", &pages) != 1) pages = 0;
    fclose(f);
  }
  unsigned long long have = pages * (unsigned long long)sysconf(_SC_PAGESIZE);
  rlim_t cap = (rlim_t)(have + lim->max_mem);
  struct rlimit as = {cap, cap};
  setrlimit(RLIMIT_AS, &as);
#endif
  confine();
  if (test_fault == 1) raise(SIGSEGV);
  if (test_fault == 2)
    for (;;) pause();
  if (test_fault == 3)
    for (;;) {
      volatile char *p = malloc(1 << 20);
      if (!p) abort();
      memset((char *)p, 1, 1 << 20);
    }
  gt_sbuf out = {0};
  gt_err e;
  e.msg[0] = 0;
  if (fn(ctx, &out, &e) == GT_OK) write_msg(fd, 'O', out.p, out.n);
  else write_msg(fd, 'E', e.msg, strlen(e.msg));
  _exit(0);
}

/* ----------------------------------------------------------- the parent */

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *signame(int sig) {
  switch (sig) {
  case SIGSEGV: return "SIGSEGV";
  case SIGBUS: return "SIGBUS";
  case SIGABRT: return "SIGABRT";
  case SIGFPE: return "SIGFPE";
  case SIGILL: return "SIGILL";
  case SIGKILL: return "SIGKILL";
  case SIGXCPU: return "SIGXCPU";
  case SIGSYS: return "SIGSYS";
  default: return "a signal";
  }
}

/* Read the child's result until EOF, the deadline or the cap. Returns 0 on
 * EOF, 1 on timeout, 2 over the cap, -1 on a read or memory error. */
static int collect(int fd, const gt_sandbox_limits *lim, gt_sbuf *b) {
  long long deadline = now_ms() + lim->timeout_ms;
  unsigned char chunk[65536];
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0) return 1;
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, (int)(left > 1000000 ? 1000000 : left));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) return 1;
    ssize_t got = read(fd, chunk, sizeof chunk);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return -1;
    if (got == 0) return 0;
    if ((uint64_t)b->n + (uint64_t)got > lim->max_out + 9) return 2;
    if (gt_sbuf_put(b, chunk, (size_t)got, NULL) != GT_OK) return -1;
  }
}

/* Children whose answer was complete but that had not exited yet when it
 * arrived: reaped (without blocking) by later calls. */
enum { MAX_PENDING = 64 };
static pid_t pending[MAX_PENDING];
static int npending;

static void reap_pending(void) {
  int k = 0;
  for (int i = 0; i < npending; i++) {
    pid_t r = waitpid(pending[i], NULL, WNOHANG);
    if (r == 0) pending[k++] = pending[i];  /* still exiting */
  }
  npending = k;
}

/* The message's length field says it is all there. */
static int complete(const gt_sbuf *b) {
  if (b->n < 9) return 0;
  uint64_t len = 0;
  for (int i = 0; i < 8; i++) len |= (uint64_t)b->p[1 + i] << (8 * i);
  return len == b->n - 9;
}

int gt_sandbox_run(gt_sandbox_fn fn, void *ctx, const gt_sandbox_limits *limits,
                   unsigned char **out, size_t *out_len, gt_err *err) {
  gt_sandbox_limits lim = limits ? *limits : (gt_sandbox_limits){0, 0, 0};
  if (!lim.timeout_ms) lim.timeout_ms = 30000;
  if (!lim.max_mem) lim.max_mem = (uint64_t)4 << 30;
  if (!lim.max_out) lim.max_out = (uint64_t)1 << 30;
  *out = NULL;
  *out_len = 0;
  note_setup();
  reap_pending();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    return gt_fail(err, "cannot start the sandbox: pipe: %s", strerror(errno));
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(fds[0]);
    close(fds[1]);
    return gt_fail(err, "cannot start the sandbox: fork: %s", strerror(e));
  }
  if (pid == 0) {
    close(fds[0]);
    child(fds[1], fn, ctx, &lim);
  }
  close(fds[1]);
  gt_sbuf b = {0};
  int how = collect(fds[0], &lim, &b);
  close(fds[0]);
  if (how != 0) kill(pid, SIGKILL);
  int st = 0;
  pid_t done = 0;
  if (how == 0 && complete(&b)) {
    /* The answer is whole: reap the child if it is gone, else later. */
    while ((done = waitpid(pid, &st, WNOHANG)) < 0 && errno == EINTR) {
    }
    if (done == 0 && npending < MAX_PENDING) pending[npending++] = pid;
    else if (done == 0) waitpid(pid, &st, 0);
    st = 0;
  } else {
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
  }
  int rc = GT_SANDBOX_FAULT;
  if (how == 1) {
    gt_fail(err, "did not finish within %u ms (killed)", lim.timeout_ms);
  } else if (how == 2) {
    gt_fail(err, "produced more than %llu bytes (killed)",
            (unsigned long long)lim.max_out);
  } else if (how < 0) {
    gt_fail(err, "lost the sandbox's result (out of memory or a read error)");
  } else if (WIFSIGNALED(st)) {
    int sig = WTERMSIG(st);
    gt_fail(err, "crashed (signal %d, %s)", sig, signame(sig));
  } else if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
    gt_fail(err, "failed (exit status %d, e.g. out of memory past its %llu MiB "
            "budget)", WEXITSTATUS(st), (unsigned long long)(lim.max_mem >> 20));
  } else if (!complete(&b)) {
    gt_fail(err, b.n ? "sent a truncated result" : "ended without a result");
  } else if (b.p[0] == 'E') {
    rc = GT_ERR;
    size_t n = b.n - 9 < sizeof err->msg - 1 ? b.n - 9 : sizeof err->msg - 1;
    if (err) {
      memcpy(err->msg, b.p + 9, n);
      err->msg[n] = 0;
    }
  } else if (b.p[0] == 'O') {
    memmove(b.p, b.p + 9, b.n - 9);
    *out = b.p;
    *out_len = b.n - 9;
    return GT_OK;
  } else {
    gt_fail(err, "sent a malformed result");
  }
  if (how != 0 || WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0))
    with_note(err);
  gt_sbuf_free(&b);
  return rc;
}
