/* SPDX-License-Identifier: MIT */
/* The platform contract: the few process-level calls mproc needs that POSIX
 * does not provide.  linux.c implements it; a port to another system is a
 * new file behind these same declarations.  Every function returns 0 (or a
 * documented value) or -errno; -ENOSYS where the platform has no equivalent
 * (callers then fall back or report MP_ENOTSUP). */
#ifndef MPROC_PLATFORM_H
#define MPROC_PLATFORM_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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

/* The calling thread's kernel id. */
pid_t mp__plat_gettid(void);

/* Ask for `sig` when the parent dies.  Linux ties this to the parent
 * *thread* that created us: callers use it only for children started by a
 * parent's main thread (or by the single-threaded forkserver).  Returns
 * -ESRCH if the parent `expected_ppid` is already gone.  sig 0 clears the
 * request (expected_ppid is then not checked). */
int mp__plat_set_pdeathsig(int sig, pid_t expected_ppid);

/* Close every descriptor >= lowfd. */
void mp__plat_close_from(int lowfd);

/* Online CPUs; CPUs usable by this process (affinity, cgroup v2 cpu.max
 * quota rounded up).  > 0 or -ENOSYS. */
int mp__plat_cpu_count(void);
int mp__plat_cpu_usable(void);

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

#endif
