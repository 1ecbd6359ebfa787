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
#include <sys/socket.h>
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
static int use_worker = 1;

void gt_sandbox_test_fault(int kind) { test_fault = kind; }
void gt_sandbox_test_worker(int on) { use_worker = on; }

/* The child's last note, in a page shared with the parent (made on first
 * use, before any fork); in_child is set only in children. */
enum { NOTE_MAX = 256 };
static char *note_page;
static int in_child;

int gt_sandbox_in_child(void) { return in_child; }

/* Clean-ups a child runs after answering (gt_sandbox_defer). */
enum { MAX_DEFER = 64 };
static struct deferred {
  void (*done)(void *);
  void *p;
} deferred[MAX_DEFER];
static int ndeferred;

void gt_sandbox_defer(void (*done)(void *), void *p) {
  if (in_child && ndeferred < MAX_DEFER) deferred[ndeferred++] = (struct deferred){done, p};
  else done(p);
}

static void run_deferred(void) {
  while (ndeferred > 0) {
    struct deferred d = deferred[--ndeferred];
    d.done(d.p);
  }
}

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
  SYS_recvmsg, SYS_getrusage,
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
static void send_msg(int fd, char status, const void *p, size_t n) {
  unsigned char h[9];
  h[0] = (unsigned char)status;
  for (int i = 0; i < 8; i++) h[1 + i] = (unsigned char)((uint64_t)n >> (8 * i));
  write_all(fd, h, sizeof h);
  write_all(fd, p, n);
}

static void write_msg(int fd, char status, const void *p, size_t n) {
  send_msg(fd, status, p, n);
  close(fd);
}

/* What a test asked the next children to do instead of their work. */
static void fault_now(int kind) {
  if (kind == 1) raise(SIGSEGV);
  if (kind == 2)
    for (;;) pause();
  if (kind == 3)
    for (;;) {
      volatile char *p = malloc(1 << 20);
      if (!p) abort();
      memset((char *)p, 1, 1 << 20);
    }
}

/* Address space the process has now (0 if unknown). */
static unsigned long long vm_size(void) {
  unsigned long long pages = 0;
  FILE *f = fopen("/proc/self/statm", "re");
  if (f) {
    if (fscanf(f, "%llu", &pages) != 1) pages = 0;
    fclose(f);
  }
  return pages * (unsigned long long)sysconf(_SC_PAGESIZE);
}

/* A child's signals and stderr: a fault kills it with its signal, whatever
 * handler the parent had (a sanitizer's turns SIGSEGV into exit(1)), so
 * the parent can name it; what a dying library prints (glibc's "free():
 * invalid pointer") is not the user's business. */
static void child_basics(void) {
  in_child = 1;
  signal(SIGSEGV, SIG_DFL);
  signal(SIGBUS, SIG_DFL);
  signal(SIGFPE, SIG_DFL);
  signal(SIGILL, SIG_DFL);
  signal(SIGPIPE, SIG_DFL);
  int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (nul >= 0) {
    dup2(nul, 2);
    close(nul);
  }
  struct rlimit core = {0, 0};
  setrlimit(RLIMIT_CORE, &core);
}

static int worker_sock = -1;  /* the parent's end, see below */

static void child(int fd, gt_sandbox_fn fn, void *ctx,
                  const gt_sandbox_limits *lim) {
  child_basics();
  if (worker_sock >= 0) close(worker_sock);  /* the worker's, not ours */
  unsigned secs = lim->timeout_ms / 1000 + 2;
  struct rlimit cpu = {secs, secs + 1};
  setrlimit(RLIMIT_CPU, &cpu);
#ifndef GT_SANITIZED
  /* The child inherits the parent's mappings (a mapped model file can be
   * large): the limit is what it may add to them. */
  rlim_t cap = (rlim_t)(vm_size() + lim->max_mem);
  struct rlimit as = {cap, cap};
  setrlimit(RLIMIT_AS, &as);
#endif
  confine();
  fault_now(test_fault);
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

/* The message's length field says it is all there. */
static int complete(const gt_sbuf *b) {
  if (b->n < 9) return 0;
  uint64_t len = 0;
  for (int i = 0; i < 8; i++) len |= (uint64_t)b->p[1 + i] << (8 * i);
  return len == b->n - 9;
}

/* Read the child's result until it is complete (the worker then waits for
 * the next request; a one-shot child has closed its end), EOF, the
 * deadline or the cap. Returns 0 on a complete message or EOF, 1 on
 * timeout, 2 over the cap, -1 on a read or memory error. */
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
    if (got < 0) return errno == ECONNRESET ? 0 : -1;
    if (got == 0) return 0;
    if ((uint64_t)b->n + (uint64_t)got > lim->max_out + 9) return 2;
    if (gt_sbuf_put(b, chunk, (size_t)got, NULL) != GT_OK) return -1;
    if (complete(b)) return 0;
  }
}

/* Children whose answer was complete but that had not exited yet when it
 * arrived, and retired workers: reaped (without blocking) by later calls. */
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

/* Reap pid later if it has not exited yet (blocking only when the list of
 * pending children is full). */
static void reap_later(pid_t pid) {
  pid_t done;
  while ((done = waitpid(pid, NULL, WNOHANG)) < 0 && errno == EINTR) {
  }
  if (done == 0 && npending < MAX_PENDING) pending[npending++] = pid;
  else if (done == 0) waitpid(pid, NULL, 0);
}

static gt_sandbox_limits with_defaults(const gt_sandbox_limits *limits) {
  gt_sandbox_limits lim = limits ? *limits : (gt_sandbox_limits){0, 0, 0};
  if (!lim.timeout_ms) lim.timeout_ms = 30000;
  if (!lim.max_mem) lim.max_mem = (uint64_t)4 << 30;
  if (!lim.max_out) lim.max_out = (uint64_t)1 << 30;
  return lim;
}

/* The child's answer b (collect's `how`, and its wait status st when it
 * ended) as gt_sandbox_run's result. Takes b. */
static int verdict(int how, int st, gt_sbuf *b, const gt_sandbox_limits *lim,
                   unsigned char **out, size_t *out_len, gt_err *err) {
  int rc = GT_SANDBOX_FAULT;
  if (how == 1) {
    gt_fail(err, "did not finish within %u ms (killed)", lim->timeout_ms);
  } else if (how == 2) {
    gt_fail(err, "produced more than %llu bytes (killed)",
            (unsigned long long)lim->max_out);
  } else if (how < 0) {
    gt_fail(err, "lost the sandbox's result (out of memory or a read error)");
  } else if (WIFSIGNALED(st)) {
    int sig = WTERMSIG(st);
    gt_fail(err, "crashed (signal %d, %s)", sig, signame(sig));
  } else if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
    gt_fail(err, "failed (exit status %d, e.g. out of memory past its %llu MiB "
            "budget)", WEXITSTATUS(st), (unsigned long long)(lim->max_mem >> 20));
  } else if (!complete(b)) {
    gt_fail(err, b->n ? "sent a truncated result" : "ended without a result");
  } else if (b->p[0] == 'E') {
    rc = GT_ERR;
    size_t n = b->n - 9 < sizeof err->msg - 1 ? b->n - 9 : sizeof err->msg - 1;
    if (err) {
      memcpy(err->msg, b->p + 9, n);
      err->msg[n] = 0;
    }
  } else if (b->p[0] == 'O') {
    memmove(b->p, b->p + 9, b->n - 9);
    *out = b->p;
    *out_len = b->n - 9;
    return GT_OK;
  } else {
    gt_fail(err, "sent a malformed result");
  }
  if (how != 0 || WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0))
    with_note(err);
  gt_sbuf_free(b);
  return rc;
}

int gt_sandbox_run(gt_sandbox_fn fn, void *ctx, const gt_sandbox_limits *limits,
                   unsigned char **out, size_t *out_len, gt_err *err) {
  gt_sandbox_limits lim = with_defaults(limits);
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
  if (how == 0 && complete(&b)) {
    /* The answer is whole: reap the child if it is gone, else later. */
    reap_later(pid);
  } else {
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
  }
  return verdict(how, st, &b, &lim, out, out_len, err);
}

/* ----------------------------------------------------------- the worker */

/* A request, parent to worker, on a stream socket: this header (the file's
 * descriptor rides on its first byte as SCM_RIGHTS), then req_len bytes. */
typedef struct wreq {
  uint64_t magic;
  gt_sandbox_serve_fn fn;
  uint64_t req_len, off, len, max_mem;
  uint32_t timeout_s;
  int32_t fault;
} wreq;

#define WREQ_MAGIC 0x6772616674777271ull /* "graftwrq" */
#define WREQ_MAX ((uint64_t)1 << 20)     /* request bytes (a dataset path) */

static pid_t worker_pid;    /* 0: none */
static pid_t worker_owner;  /* the process that started it */
static unsigned worker_uses;
/* worker_sock (declared above, before child()) is the parent's end. */

static int read_full(int fd, void *p, size_t n) {
  unsigned char *c = p;
  while (n > 0) {
    ssize_t r = read(fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    c += r;
    n -= (size_t)r;
  }
  return 0;
}

/* Close every descriptor from 3 up but keep. */
static void close_others(int keep) {
#ifdef SYS_close_range
  if ((keep <= 3 || syscall(SYS_close_range, 3u, (unsigned)keep - 1, 0u) == 0) &&
      syscall(SYS_close_range, (unsigned)keep + 1, ~0u, 0u) == 0)
    return;
#endif
  struct rlimit r;
  int top = getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < 65536 ? (int)r.rlim_cur
                                                                     : 65536;
  for (int fd = 3; fd < top; fd++)
    if (fd != keep) (void)close(fd);
}

/* Lower a soft limit to want (never above the hard one, which stays). */
static void soft_limit(int what, rlim_t want) {
  struct rlimit r;
  if (getrlimit(what, &r) != 0) return;
  r.rlim_cur = r.rlim_max != RLIM_INFINITY && want > r.rlim_max ? r.rlim_max : want;
  setrlimit(what, &r);
}

/* One request in the worker: receive it, map the file, run fn, answer,
 * clean up. Returns -1 when the parent is gone. */
static int serve_one(int sock, unsigned long long base) {
  wreq q;
  int fd = -1;
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct iovec iov = {&q, sizeof q};
  struct msghdr mh = {0};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = u.buf;
  mh.msg_controllen = sizeof u.buf;
  ssize_t got;
  while ((got = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  if (got <= 0) return -1;
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
  if ((size_t)got < sizeof q &&
      read_full(sock, (unsigned char *)&q + got, sizeof q - (size_t)got) != 0)
    return -1;
  if (q.magic != WREQ_MAGIC || q.req_len > WREQ_MAX || fd < 0) return -1;
  unsigned char *req = malloc(q.req_len + 1);
  if (!req || read_full(sock, req, q.req_len) != 0) return -1;
  req[q.req_len] = 0;
  /* This request's CPU time and memory: the worker's limits move with it. */
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    rlim_t used = (rlim_t)ru.ru_utime.tv_sec + (rlim_t)ru.ru_stime.tv_sec;
    soft_limit(RLIMIT_CPU, used + q.timeout_s + 2);
  }
  uint64_t skew = q.off % (uint64_t)sysconf(_SC_PAGESIZE);
  size_t maplen = (size_t)(q.len + skew);
#ifndef GT_SANITIZED
  if (base) soft_limit(RLIMIT_AS, (rlim_t)(base + maplen + q.max_mem));
#else
  (void)base;
#endif
  unsigned char *map = NULL;
  if (maplen > 0) {
    void *m = mmap(NULL, maplen, PROT_READ, MAP_PRIVATE, fd, (off_t)(q.off - skew));
    if (m != MAP_FAILED) map = m;
  }
  close(fd);
  note_page[0] = 0;
  /* Test fault 4: a worker that has served before crashes (as one that an
   * earlier file left broken might); a fresh one works. */
  static unsigned served;
  fault_now(q.fault == 4 ? (served ? 1 : 0) : q.fault);
  served++;
  gt_sbuf out = {0};
  gt_err e;
  e.msg[0] = 0;
  int rc;
  if (maplen > 0 && !map) rc = gt_fail(&e, "cannot map the file: %s", strerror(errno));
  else rc = q.fn(req, q.req_len, map ? map + skew : NULL, (size_t)q.len, &out, &e);
  if (rc == GT_OK) send_msg(sock, 'O', out.p, out.n);
  else send_msg(sock, 'E', e.msg, strlen(e.msg));
  run_deferred();
  gt_sbuf_free(&out);
  free(req);
  if (map) munmap(map, maplen);
  return 0;
}

static _Noreturn void worker_main(int sock) {
  child_basics();
  /* Only the socket: no descriptor of the parent's (its output, the pipe a
   * caller reads it through) outlives the parent in the worker. */
  int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (nul >= 0) {
    dup2(nul, 0);
    dup2(nul, 1);
    close(nul);
  }
  close_others(sock);
  unsigned long long base = vm_size();
  confine();
  while (serve_one(sock, base) == 0) {
  }
  _exit(0);
}

static void worker_retire(void) {
  if (worker_pid > 0 && worker_owner == getpid()) {
    close(worker_sock);
    kill(worker_pid, SIGKILL);
    reap_later(worker_pid);
  } else if (worker_sock >= 0) {
    close(worker_sock);  /* a copy inherited from the process that forked us */
  }
  worker_pid = 0;
  worker_sock = -1;
  worker_uses = 0;
}

static int worker_start(gt_err *err) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return gt_fail(err, "cannot start the sandbox: socketpair: %s", strerror(errno));
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(sv[0]);
    close(sv[1]);
    return gt_fail(err, "cannot start the sandbox: fork: %s", strerror(e));
  }
  if (pid == 0) {
    close(sv[0]);
    worker_main(sv[1]);
  }
  close(sv[1]);
  worker_pid = pid;
  worker_owner = getpid();
  worker_sock = sv[0];
  worker_uses = 0;
  return GT_OK;
}

static int send_req(const wreq *q, const void *req, int fd) {
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct iovec iov = {(void *)q, sizeof *q};
  struct msghdr mh = {0};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = u.buf;
  mh.msg_controllen = sizeof u.buf;
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ssize_t w;
  while ((w = sendmsg(worker_sock, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  if (w < 0) return -1;
  const unsigned char *rest = (const unsigned char *)q + w;
  size_t left = sizeof *q - (size_t)w;
  for (int part = 0; part < 2; part++) {
    while (left > 0) {
      ssize_t k = send(worker_sock, rest, left, MSG_NOSIGNAL);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) return -1;
      rest += k;
      left -= (size_t)k;
    }
    rest = req;
    left = (size_t)q->req_len;
  }
  return 0;
}

/* One attempt: 1 when the worker faulted after serving earlier calls (the
 * caller retries in a fresh one), else gt_sandbox_run's statuses. */
static int worker_try(const wreq *q, const void *req, int fd,
                      const gt_sandbox_limits *lim, unsigned char **out,
                      size_t *out_len, gt_err *err) {
  if ((worker_pid > 0 && worker_owner != getpid()) || worker_pid == 0) {
    worker_retire();
    if (worker_start(err) != GT_OK) return GT_ERR;
  }
  unsigned served = worker_uses++;
  note_page[0] = 0;
  gt_sbuf b = {0};
  int how = send_req(q, req, fd) == 0 ? collect(worker_sock, lim, &b) : 0;
  if (how == 0 && complete(&b) && b.p[0] == 'O') {
    if (worker_uses >= 256) worker_retire();  /* bounded drift */
    return verdict(0, 0, &b, lim, out, out_len, err);
  }
  /* Anything else retires the worker: its own error (a corrupt file may
   * have left libhdf5's state odd), a crash, a hang, an overrun. */
  int st = 0;
  pid_t pid = worker_pid;
  close(worker_sock);
  worker_sock = -1;
  worker_pid = 0;
  if (how == 0 && complete(&b)) {
    kill(pid, SIGKILL);
    reap_later(pid);
  } else {
    /* Killing one that is already dying leaves its status as it was. */
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    /* A crash of a worker that had served others might be theirs. */
    if (served > 0 && how == 0) {
      gt_sbuf_free(&b);
      return 1;
    }
  }
  return verdict(how, st, &b, lim, out, out_len, err);
}

/* The parent's anonymous resident memory (resident minus file-backed
 * pages, /proc/self/statm), in bytes; 0 if unknown. */
static unsigned long long anon_resident(void) {
  unsigned long long size = 0, res = 0, shared = 0;
  FILE *f = fopen("/proc/self/statm", "re");
  if (f) {
    if (fscanf(f, "%llu %llu %llu", &size, &res, &shared) != 3) res = shared = 0;
    fclose(f);
  }
  return (res > shared ? res - shared : 0) * (unsigned long long)sysconf(_SC_PAGESIZE);
}

int gt_sandbox_worker_pid(void) {
  return worker_pid > 0 && worker_owner == getpid() ? (int)worker_pid : 0;
}

int gt_sandbox_use_worker(void) {
  if (!use_worker) return 0;
  if (worker_pid > 0 && worker_owner == getpid()) return 1;
  return anon_resident() <= GT_WORKER_MAX_PARENT;
}

int gt_sandbox_call(gt_sandbox_serve_fn fn, const void *req, size_t req_len,
                    int fd, uint64_t off, uint64_t len,
                    const gt_sandbox_limits *limits, unsigned char **out,
                    size_t *out_len, gt_err *err) {
  gt_sandbox_limits lim = with_defaults(limits);
  *out = NULL;
  *out_len = 0;
  if (req_len > WREQ_MAX || len > SIZE_MAX - 65536)
    return gt_fail(err, "sandbox request too large");
  note_setup();
  reap_pending();
  wreq q = {WREQ_MAGIC, fn, req_len, off, len, lim.max_mem,
            lim.timeout_ms / 1000 + 1, test_fault};
  int rc = worker_try(&q, req, fd, &lim, out, out_len, err);
  if (rc == 1) rc = worker_try(&q, req, fd, &lim, out, out_len, err);
  return rc;
}

