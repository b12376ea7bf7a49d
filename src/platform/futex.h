/* SPDX-License-Identifier: MIT */
/* Linux-only primitives behind one small file so that a port is a file, not
 * a rewrite: futex wait/wake on process-shared words, memfd creation, and
 * "is this process still alive" checks used for owner-death detection.
 *
 * A port to another system replaces futex.c (e.g. with __ulock_wait on
 * macOS or _umtx_op on FreeBSD) and keeps these signatures. */
#ifndef MPROC_PLATFORM_FUTEX_H
#define MPROC_PLATFORM_FUTEX_H

#include <stdint.h>
#include <sys/types.h>

#include "core/internal.h"

/* Sleep while *addr == val, until woken, until `deadline` (CLOCK_MONOTONIC
 * ns, MP__NO_DEADLINE = forever) or spuriously.  The word is shared between
 * processes (no FUTEX_PRIVATE_FLAG).  Returns 0 (woken, or the word no
 * longer held val, or a signal arrived: callers re-check their condition
 * anyway) or MP_ETIMEDOUT when the deadline has passed. */
int mp__futex_wait(uint32_t *addr, uint32_t val, mp__deadline deadline);

/* The same with a relative timeout of `ns` nanoseconds (no clock read):
 * 0 or MP_ETIMEDOUT when it expired. */
int mp__futex_wait_rel(uint32_t *addr, uint32_t val, int64_t ns);

/* Wake up to n sleepers on addr (n = INT32_MAX: all).  Returns the number
 * woken (>= 0). */
int mp__futex_wake(uint32_t *addr, int n);

/* A new anonymous shared-memory file of `size` bytes (zero filled),
 * close-on-exec, sealed so that its size never changes: no process it is
 * passed to can truncate it under another's mapping (which would make that
 * one's accesses fault).  Returns the fd (>= 3) or -errno. */
int mp__memfd_new(const char *name, size_t size);

/* 1 and its real size in *size if `fd` is a shared-memory file that can
 * never shrink (a memfd sealed with F_SEAL_SHRINK, as mp__memfd_new makes),
 * so a mapping of *size bytes stays valid whatever its other holders do;
 * 0 otherwise (any other kind of fd, or an unsealed one). */
int mp__memfd_size_fixed(int fd, uint64_t *size);

/* This thread's kernel id (gettid), cached per thread; this process's pid,
 * correct after fork (cached and reset by an atfork handler).  Inline: they
 * sit on the lock fast path (the build uses TLS descriptors, which make
 * this a plain load when the library is loaded at startup). */
extern __thread uint32_t mp__tl_tid;
extern uint32_t mp__g_pid; /* accessed atomically */
uint32_t mp__gettid_slow(void);
uint32_t mp__getpid_slow(void);
static inline uint32_t
mp__gettid(void)
{
  uint32_t t = mp__tl_tid;
  return MP__LIKELY(t != 0) ? t : mp__gettid_slow();
}
static inline uint32_t
mp__getpid(void)
{
  uint32_t p = __atomic_load_n(&mp__g_pid, __ATOMIC_RELAXED);
  return MP__LIKELY(p != 0) ? p : mp__getpid_slow();
}
/* The start time of this process (clock ticks after boot, as in field 22 of
 * /proc/self/stat); 0 if unknown.  Together with the pid it names a process
 * uniquely across pid reuse. */
uint64_t mp__proc_starttime(void);

/* Is the process `pid` still running?  `starttime` (0: unknown) guards
 * against pid reuse: a process with that pid but another start time counts
 * as dead, and so does a zombie.  `cheap` only asks kill(pid, 0) (no /proc
 * read, so a zombie or a reused pid reads as alive).  Returns 1 alive, 0
 * dead. */
int mp__proc_alive(uint32_t pid, uint64_t starttime, int cheap);

#endif
