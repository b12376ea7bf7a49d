/* SPDX-License-Identifier: MIT */
/* Linux futex, memfd, pid/tid caches and process-liveness calls (the part
 * of platform.h a port rewrites first). */
#include "platform/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/fd.h"

/* futex(2) without libc's syscall(): a wait or a wake is what a process
 * does right after it is switched in, and libc's wrapper (reached through
 * the PLT) is two more pages of code to fault into a cold TLB.  Returns
 * the result, or -errno. */
static inline long
futex_call(uint32_t *addr, int op, uint32_t val, const struct timespec *tp,
           uint32_t val3)
{
#if defined(__x86_64__)
  register long r10 __asm__("r10") = (long)tp;
  register long r8 __asm__("r8") = 0;
  register long r9 __asm__("r9") = (long)val3;
  long ret;
  __asm__ __volatile__("syscall"
                       : "=a"(ret)
                       : "a"((long)SYS_futex), "D"(addr), "S"((long)op),
                         "d"((long)val), "r"(r10), "r"(r8), "r"(r9)
                       : "rcx", "r11", "memory");
  return ret;
#else
  long r = syscall(SYS_futex, addr, op, val, tp, NULL, val3);
  return r == -1 ? -errno : r;
#endif
}

int
mp__futex_wait(uint32_t *addr, uint32_t val, mp__deadline deadline)
{
  struct timespec abs, *tp = NULL;
  if (deadline != MP__NO_DEADLINE) {
    if (mp__now_ns() >= deadline)
      return MP_ETIMEDOUT;
    abs.tv_sec = deadline / 1000000000;
    abs.tv_nsec = deadline % 1000000000;
    tp = &abs;
  }
  /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time, so a restart
   * after EINTR needs no recomputation. */
  long r = futex_call(addr, FUTEX_WAIT_BITSET, val, tp,
                      FUTEX_BITSET_MATCH_ANY);
  if (r == -ETIMEDOUT)
    return MP_ETIMEDOUT;
  return 0; /* woken, EAGAIN (value changed) or EINTR: caller re-checks */
}

MP__HOT int
mp__futex_wait_rel(uint32_t *addr, uint32_t val, int64_t ns)
{
  struct timespec rel = {ns / 1000000000, ns % 1000000000};
  long r = futex_call(addr, FUTEX_WAIT, val, &rel, 0);
  if (r == -ETIMEDOUT)
    return MP_ETIMEDOUT;
  return 0;
}

MP__HOT int
mp__futex_wake(uint32_t *addr, int n)
{
  long r = futex_call(addr, FUTEX_WAKE, (uint32_t)n, NULL, 0);
  return r < 0 ? 0 : (int)r;
}

static int
memfd_sealed(const char *name, size_t size, int seals)
{
  int fd = (int)syscall(SYS_memfd_create, name,
                        MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return mp__errno();
  fd = mp__fd_off_stdio(fd);
  if (fd < 0)
    return fd;
  if (ftruncate(fd, (off_t)size) < 0
      || fcntl(fd, F_ADD_SEALS, seals) < 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

int
mp__memfd_new(const char *name, size_t size)
{
  return memfd_sealed(name, size, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
}

int
mp__memfd_new_growable(const char *name, size_t size)
{
  return memfd_sealed(name, size, F_SEAL_SHRINK | F_SEAL_SEAL);
}

int
mp__memfd_size_fixed(int fd, uint64_t *size)
{
  struct stat st;
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || !(seals & F_SEAL_SHRINK) || fstat(fd, &st) < 0
      || !S_ISREG(st.st_mode) || st.st_size < 0)
    return 0;
  *size = (uint64_t)st.st_size;
  return 1;
}

__thread uint32_t mp__tl_tid;
MP__HOT_DATA uint32_t mp__g_pid;
static _Atomic uint64_t g_start MP__FORK_DATA;
/* CLOCK_BOOTTIME read just before the last fork, and the length of a clock
 * tick (ns; 0: unusable) -- see mp__plat_after_fork_child. */
static int64_t g_fork_boot_ns, g_tick_ns;

static int64_t
boot_ns(void)
{
  struct timespec ts;
  if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
    return -1;
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
mp__plat_before_fork(void)
{
  if (g_tick_ns == 0) {
    long hz = sysconf(_SC_CLK_TCK);
    g_tick_ns = hz > 0 && 1000000000 % hz == 0 ? 1000000000 / hz : -1;
  }
  g_fork_boot_ns = boot_ns();
}

void
mp__plat_after_fork_child(void)
{
  __atomic_store_n(&mp__g_pid, 0, __ATOMIC_RELAXED);
  /* The kernel stamps a new process's start time (CLOCK_BOOTTIME, shown in
   * /proc/<pid>/stat in whole clock ticks) inside fork, so it lies between
   * the parent's reading just before and this one.  When both fall in the
   * same tick that tick is the start time, exactly: no /proc read (an
   * open, a read and a close, 10-50 us a worker).  Otherwise (about one
   * fork in a hundred) it is read from /proc when first needed. */
  int64_t t0 = g_fork_boot_ns, t1 = boot_ns();
  uint64_t start = 0;
  if (g_tick_ns > 0 && t0 > 0 && t1 >= t0 && t0 / g_tick_ns == t1 / g_tick_ns)
    start = (uint64_t)(t0 / g_tick_ns);
  atomic_store(&g_start, start);
  /* The forking thread keeps its tid only if it is the child's main thread:
   * the kernel gives the child a new tid = the child's pid. */
  mp__tl_tid = 0;
#ifdef MP__HAVE_SOLO
  mp__solo_after_fork_child();
#endif
}

uint32_t
mp__gettid_slow(void)
{
  return mp__tl_tid = (uint32_t)syscall(SYS_gettid);
}

uint32_t
mp__getpid_slow(void)
{
  /* A cached pid needs the reset in fork children in place first. */
  mp__lifecycle_fork_init();
  uint32_t p = (uint32_t)getpid();
  __atomic_store_n(&mp__g_pid, p, __ATOMIC_RELAXED);
  return p;
}

/* Parse /proc/<pid>/stat: state (field 3) and starttime (field 22).
 * Returns 0, or -1 if the process does not exist. */
static int
read_stat(uint32_t pid, char *state, uint64_t *start)
{
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%u/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n;
  do
    n = read(fd, buf, sizeof buf - 1);
  while (n < 0 && errno == EINTR);
  mp__close(fd);
  if (n <= 0)
    return -1;
  buf[n] = '\0';
  char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  if (!p || p[1] != ' ')
    return -1;
  p += 2;
  *state = *p;
  /* skip fields 3..21 (19 fields) to reach field 22 */
  for (int field = 3; field < 22; field++) {
    p = strchr(p, ' ');
    if (!p)
      return -1;
    p++;
  }
  uint64_t v = 0;
  while (*p >= '0' && *p <= '9')
    v = v * 10 + (uint64_t)(*p++ - '0');
  *start = v;
  return 0;
}

uint64_t
mp__proc_starttime(void)
{
  uint64_t s = atomic_load_explicit(&g_start, memory_order_relaxed);
  if (s == 0) {
    char st;
    if (read_stat(mp__getpid(), &st, &s) < 0)
      s = 0;
    atomic_store_explicit(&g_start, s, memory_order_relaxed);
  }
  return s;
}

uint64_t
mp__proc_starttime_known(void)
{
  return atomic_load_explicit(&g_start, memory_order_relaxed);
}

int
mp__proc_alive(uint32_t pid, uint64_t starttime, int cheap)
{
  if (pid == 0)
    return 0;
  if (pid == mp__getpid())
    return 1;
  if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
    return 0;
  if (cheap)
    return 1;
  char st;
  uint64_t s;
  if (read_stat(pid, &st, &s) < 0) /* gone meanwhile, or no /proc here */
    return !(kill((pid_t)pid, 0) < 0 && errno == ESRCH);
  if (st == 'Z' || st == 'X')
    return 0;
  if (starttime && s != starttime)
    return 0;
  return 1;
}
