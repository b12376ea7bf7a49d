/* SPDX-License-Identifier: MIT */
/* The platform contract: the few process-level calls mproc needs that POSIX
 * does not provide.  linux.c (processes, descriptors, loaded objects, the
 * takeover) and futex.c (futex, memfd, pid/tid caches, liveness) implement
 * it; a port to another system is new files behind these same declarations
 * (e.g. __ulock_wait on macOS or _umtx_op on FreeBSD for the futex calls).
 * Every function returns 0 (or a documented value) or -errno; -ENOSYS where
 * the platform has no equivalent (callers then fall back or report
 * MP_ENOTSUP). */
#ifndef MPROC_PLATFORM_H
#define MPROC_PLATFORM_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/internal.h"

/* A descriptor (CLOEXEC) that refers to process `pid` and becomes readable
 * when it exits; never confused with a later process of the same pid. */
int mp__plat_pidfd_open(pid_t pid);
/* Send `sig` to the process of `pidfd` (-ESRCH once it has exited). */
int mp__plat_pidfd_signal(int pidfd, int sig);
/* Reap the child of `pidfd` if it has ended, without blocking: its pid
 * (> 0) with *status as waitpid's, 0 while it runs, -ECHILD if it is not a
 * child of ours or someone else reaped it.  `pid` is its pid, for kernels
 * that cannot wait on a pidfd (then waitpid(pid)). */
pid_t mp__plat_pidfd_reap(int pidfd, pid_t pid, int *status);
/* The exit status (as waitpid's) of the process of `pidfd` once it has
 * ended and been reaped, whoever reaped it: 1 and *status; 0 while the
 * process is not released yet (running, or a zombie no one reaped);
 * -ENOSYS where pidfds keep no exit status (Linux before 6.15). */
int mp__plat_pidfd_exit_status(int pidfd, int *status);

/* Ask for `sig` when the parent dies.  Linux ties this to the parent
 * *thread* that created us: callers use it only for children started by a
 * parent's main thread (or by the single-threaded forkserver).  Returns
 * -ESRCH if the parent `expected_ppid` is already gone.  sig 0 clears the
 * request (expected_ppid is then not checked). */
int mp__plat_set_pdeathsig(int sig, pid_t expected_ppid);

/* Close every descriptor >= lowfd. */
void mp__plat_close_from(int lowfd);

/* n random bytes from the kernel's CSPRNG (getrandom; /dev/urandom where
 * the call is missing).  0 or -errno.  Hash keys, segment names, ids;
 * secrets go through mp__random_bytes (core/hmac.h). */
int mp__plat_random(void *buf, size_t n);

/* End the process now with `code` (exit_group): no atexit handlers, no
 * stdio flush, every thread.  A direct system call, so that a fork child
 * does not bind _exit lazily on its way out. */
_Noreturn void mp__plat_exit_now(int code);

/* Run `fn` after every constructor of the main program, before main():
 * replaces the last entry of its DT_INIT_ARRAY by one that calls that entry
 * and then fn (the loader reads the array as it walks it).  `self` is the
 * caller's own constructor: if it is that last entry nothing runs after it.
 * Returns 1 when fn is deferred so, 0 when it cannot be (no init array, or
 * self is last): the caller then runs fn itself, at once.  Call it from a
 * constructor, once. */
typedef void (*mp__plat_init_fn)(int argc, char **argv, char **envp);
int mp__plat_run_after_ctors(mp__plat_init_fn self, mp__plat_init_fn fn);

/* Online CPUs; CPUs usable by this process (affinity, cgroup v2 cpu.max
 * quota rounded up).  > 0 or -ENOSYS. */
int mp__plat_cpu_count(void);
int mp__plat_cpu_usable(void);
/* Whether polling for a peer before sleeping can pay: only when the peer
 * can run meanwhile, on more than one usable CPU.  The affinity is looked
 * at again every 256 calls, as a program may pin itself (or be pinned
 * with taskset) after its first wait: a spin on one CPU only delays the
 * peer, and no spin on two leaves every wake-up to the scheduler (a
 * cross-CPU wake costs tens of microseconds on a VM).  The cgroup quota,
 * which takes files to read, is looked at again at most once a second.
 * The answer is kept across fork: a process that makes a queue or a pool
 * asks once, so that its children start with it. */
int mp__plat_spin_useful(void);

/* A pause between polls of something another CPU is about to change. */
#if defined(__x86_64__) || defined(__i386__)
#define MP__CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define MP__CPU_RELAX() __asm__ __volatile__("yield")
#else
#define MP__CPU_RELAX() ((void)0)
#endif

/* Whether this thread is the process's only one, read without a call.
 * glibc's __libc_single_threaded (2.32 and later) is cleared before a
 * second thread starts and never set again on its own: right in a process
 * started by spawn or forkserver, but a fork child of a process that ever
 * had a thread keeps "no".  mp__solo (solo.c) says "one thread" for such a
 * child, and is cleared before any thread starts.  Where this is true
 * nothing can race this thread for process-local memory, so the value
 * layer counts references with plain stores (libstdc++'s shared_ptr does
 * the same).  Elsewhere: always "no". */
#if defined(__GLIBC__) && defined(__has_include)
#if __has_include(<sys/single_threaded.h>)
#include <pthread.h>
#include <sys/single_threaded.h>
#define MP__HAVE_SOLO 1
extern int mp__solo; /* accessed atomically */
#define MP__SINGLE_THREADED()                                                  \
  (__libc_single_threaded != 0 || __atomic_load_n(&mp__solo, __ATOMIC_RELAXED))
/* Settle whether solo.c's thread-start calls interpose (before any fork),
 * and set mp__solo in a fork child where they do. */
void mp__solo_init(void);
void mp__solo_after_fork_child(void);
/* Whether this process can say "one thread" where glibc cannot: 1 where
 * the thread-start calls of solo_interpose.c take the global scope's
 * calls (libmproc.so first in it; a test program), else 0. */
int mp__solo_available(void);
/* solo_interpose.c: the C library's pthread_create (the next definition
 * after its own), for threads that leave the flag as it is. */
int mp__solo_real_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                                 void *(*fn)(void *), void *arg);
#endif
#endif
/* pthread_create for a thread that never touches a value (nor calls
 * anything that does): it leaves MP__SINGLE_THREADED() as it was.  A
 * child's watch on its parent is one; with it, a worker forked or spawned
 * from a thread of the parent counts references without locks too. */
#include <pthread.h>
#ifdef MP__HAVE_SOLO
int mp__thread_start_valueless(pthread_t *t, const pthread_attr_t *attr,
                               void *(*fn)(void *), void *arg);
#else
#define mp__thread_start_valueless pthread_create
#endif
#ifndef MP__SINGLE_THREADED
#define MP__SINGLE_THREADED() 0
#endif

/* On a function of a path taken again and again between two context
 * switches (a queue's put and get, the futex calls under them): the
 * compiler puts these together in .text.hot, so that such a trip runs in
 * a few pages of code.  After a switch a process starts with a cold TLB
 * (always, on a CPU or VM without PCID), and each page of code it touches
 * costs a page walk -- on a VM, a nested one. */
#if defined(__GNUC__)
#define MP__HOT __attribute__((hot))
#else
#define MP__HOT
#endif
/* The same for the few variables such a path reads or writes (the cached
 * pid, the owner words of this process): one section of their own, which
 * the linker makes one, so they share a page. */
#if defined(__GNUC__) && defined(__ELF__)
#define MP__HOT_DATA __attribute__((section("mp_hot_data")))
#else
#define MP__HOT_DATA
#endif
/* The same section for what the fork hooks write, in the parent (the
 * fork-guarded mutexes they unlock) and in the child (the state each layer
 * resets): after a fork each page of it either side writes is a
 * copy-on-write fault, in the parent once per fork and in every worker of
 * every pool.  Spread over the library's .data and .bss they were five
 * pages a worker; together, one. */
#define MP__FORK_DATA MP__HOT_DATA
/* Fill in the page tables of [addr, addr + len) of a mapping now, for
 * reading or writing (one call instead of a fault per page); a hint: does
 * nothing where the kernel cannot (before Linux 5.14). */
void mp__plat_prefault(void *addr, size_t len, int write);

/* For a process the library runs for its own work (a pool worker): keep
 * up to `keep` bytes of freed heap for reuse, and serve blocks of up to
 * 32 MiB from the heap.  glibc otherwise maps each block of a few MiB
 * fresh and trims the heap top after it is freed, so a worker that decodes
 * and encodes a MiB-sized chunk per job faults ~700 pages per job.  Does
 * nothing where the user set malloc's own tunables (GLIBC_TUNABLES,
 * MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_) or the C library is not
 * glibc. */
void mp__plat_heap_keep(size_t keep);

/* The path of the running executable into buf (NUL-terminated). */
int mp__plat_exe_path(char *buf, size_t cap);

/* Identify the loaded object containing address `addr`: its name as the
 * loader knows it ("" for the main program), its load base, and its
 * build-id (NT_GNU_BUILD_ID note; *idlen 0 if it has none; at most 64
 * bytes).  Returns 0 or -ENOENT. */
typedef struct mp__plat_object {
  char name[4096];
  uintptr_t base;
  uint8_t id[64];
  size_t idlen;
  int is_main;
} mp__plat_object;
int mp__plat_object_of(const void *addr, mp__plat_object *out);
/* Find a loaded object by build-id (or, when idlen == 0, the main program
 * if want_main, else by name).  On success sets *base and returns 0; checks
 * that [base+off, base+off+1) lies inside one of its loaded segments, with
 * PF_X when `exec` (else -EFAULT).  -ENOENT if no such object is loaded. */
int mp__plat_object_find(const uint8_t *id, size_t idlen, int want_main,
                         const char *name, uint64_t off, int exec,
                         uintptr_t *base);
/* A number that changes whenever an object is loaded or unloaded (the
 * loader's counts of both), so that what was found out about the loaded
 * objects can be kept until then (the sum of the loader's counts, which
 * only grow).  0 when the loader does not count. */
uint64_t mp__plat_objects_gen(void);
/* The build-id of the object loaded from `name` (dlopen handle's map);
 * -ENOENT if not loaded. */
int mp__plat_object_id_by_name(const char *name, uint8_t *id, size_t *idlen,
                               int *found_main);

/* What the loaded object holding `addr` in an executable segment says of
 * it: MP__PLAT_FN_START (a function starts there; *name, when name is not
 * NULL, gets its symbol name or NULL if none is known -- valid while the
 * object stays loaded), MP__PLAT_FN_INSIDE (the object lists its functions,
 * by symbol table or unwind index, and none starts there), or
 * MP__PLAT_FN_UNKNOWN (it lists none: no .symtab we can believe, no unwind
 * index, no dynamic symbol there); -ENOENT if addr is in no executable
 * segment of a loaded object. */
enum { MP__PLAT_FN_UNKNOWN = 0, MP__PLAT_FN_START = 1, MP__PLAT_FN_INSIDE = 2 };
int mp__plat_func_info(const void *addr, const char **name);

/* ---- futex, memfd, pid/tid, liveness (futex.c) ---------------------- */

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
/* The same, but it may grow (ftruncate to a larger size) -- never shrink:
 * for memory that grows inside a mapping reserved beforehand (queues). */
int mp__memfd_new_growable(const char *name, size_t size);

/* 1 and its real size in *size if `fd` is a shared-memory file that can
 * never shrink (a memfd sealed with F_SEAL_SHRINK, as mp__memfd_new makes),
 * so a mapping of *size bytes stays valid whatever its other holders do;
 * 0 otherwise (any other kind of fd, or an unsealed one). */
int mp__memfd_size_fixed(int fd, uint64_t *size);

/* This thread's kernel id (gettid), cached per thread; this process's pid,
 * correct after fork (cached; the lifecycle registry's fork child handler
 * calls mp__plat_after_fork_child before any hook).  Inline: they sit on
 * the lock fast path (the build uses TLS descriptors, which make this a
 * plain load when the library is loaded at startup). */
extern __thread uint32_t mp__tl_tid;
extern uint32_t mp__g_pid; /* accessed atomically */
uint32_t mp__gettid_slow(void);
uint32_t mp__getpid_slow(void);
/* In a fork child, before anything else of mproc runs: forget the cached
 * pid, tid and start time (they are the parent's). */
void mp__plat_after_fork_child(void);
/* In the parent, the last step before fork (the lifecycle registry's
 * prepare handler): it lets the child know its start time without /proc. */
void mp__plat_before_fork(void);
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
/* The start time if this process knows it already, else 0 (reads nothing;
 * for tests). */
uint64_t mp__proc_starttime_known(void);

/* Is the process `pid` still running?  `starttime` (0: unknown) guards
 * against pid reuse: a process with that pid but another start time counts
 * as dead, and so does a zombie.  `cheap` only asks kill(pid, 0) (no /proc
 * read, so a zombie or a reused pid reads as alive).  Returns 1 alive, 0
 * dead. */
int mp__proc_alive(uint32_t pid, uint64_t starttime, int cheap);

#endif
