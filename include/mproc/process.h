/* SPDX-License-Identifier: MIT */
/* Processes, contexts and start methods: multiprocessing.Process,
 * get_context, set_start_method, current_process ... for C.
 *
 * A process runs a target -- a plain C function -- with an argument tuple in
 * a child started by one of four methods:
 *
 *   "fork"        fork(2); the child runs the target directly on a copy of
 *                 the parent's memory.  Fast.  Forking a parent that runs
 *                 other threads is hazardous: only the forking thread exists
 *                 in the child, so a lock another thread held at that moment
 *                 (malloc's, stdio's, the program's own) stays locked there
 *                 forever.  Prefer "spawn" or "forkserver" in threaded
 *                 programs.  The default start method, as in Python on Linux.
 *   "spawn"       posix_spawn(3) of this program (or mp_set_executable's).
 *                 The child is taken over by the library after every
 *                 constructor of the program has run and before main(), so
 *                 main() never runs in it (unlike Python's spawn, which
 *                 re-imports the main module).  It keeps the environment and
 *                 the working directory and holds exactly the descriptors it
 *                 was given (the handles in its args) plus stdio.  Globals
 *                 hold their initial values: a global assigned in main() is
 *                 NOT visible in the child (as with Python's spawn; constants
 *                 are fine).
 *   "forkserver"  a single-threaded server, started with spawn on first use,
 *                 forks each child on request (from any thread, at the same
 *                 time).  It keeps one child forked ahead of time, so a
 *                 start costs the program one message and no wait.
 *                 Children inherit the server's state: shared objects
 *                 named with mp_set_forkserver_preload are already loaded.
 *                 A child's getppid() is the server; mp_parent_process() is
 *                 still the process that started it.  Children get the
 *                 environment and working directory the program had when
 *                 the server started (as in Python), and likewise its
 *                 ignored signals and the signal mask of the thread that
 *                 started the server (as spawn children get the program's
 *                 at their start).  The server itself sets its own signal
 *                 dispositions: nothing the program does to its signals
 *                 changes how the server works.
 *   "threading"   a thread of this process behind the same API (mpire's
 *                 "threading"), for I/O-bound work and thread pools.
 *                 terminate/kill return MP_ENOTSUP; mp_exit() ends the
 *                 thread; the "pid" is the thread's kernel id (gettid).
 *
 * The target receives its args tuple and returns the exit code: 0 on a
 * normal return, N for return N or mp_exit(N) (a real process keeps N & 255,
 * like any exit status; a threading child keeps the whole int), -N when a
 * signal N killed the process.  A child process then flushes stdio, joins
 * its own children (terminating its daemons) and ends with _exit: the
 * program's atexit handlers do not run in it (Python's children end with
 * os._exit too).
 *
 * Targets across exec (spawn, forkserver): the function pointer is sent as
 * (object file, offset from its load base, build-id) and resolved in the
 * child against its own load base; a shared object the child has not loaded
 * is dlopen'ed first.  Static functions, functions of the main program and
 * functions of dlopen'ed libraries all work without registration.  If the
 * file in the child is not the same build (another build-id) the child
 * prints why on stderr and exits with MP_EXIT_BADREF; it never jumps to a
 * wrong address.
 *
 * Args: a tuple (or NULL for ()).  fork and threading children see the very
 * values (fork: a copy of the parent's memory; threading: shared, so do not
 * mutate them while the thread runs).  spawn and forkserver children get
 * them pickled; handles in them (Connections, locks, ...) cross as file
 * descriptors and are rebuilt in the child.  Under fork, values holding
 * handles are also checked (encoded once) so that an object that cannot
 * serve that kind of child fails mp_process_start with its error
 * (MP_ECONTEXT) instead of misbehaving later; see mp_spawning_context().
 * As Python's start(), a started process drops its reference to the args
 * once the child has its own copy: when mp_process_start returns (fork: the
 * child has the memory; spawn, forkserver: the args' descriptors are on
 * their way with its instructions), and for threading when the thread ends.
 * So a handle whose other references were freed is released then: a
 * Connection end passed in args and mp_conn_free'd by the caller is closed
 * in the parent, and the child's copy is the only one left.  A start that
 * fails keeps the args.
 *
 * A child knows how it was started: mp_process_context(mp_current_process())
 * is the context of its start method, and its default start method
 * (mp_get_start_method, the default context) is its parent's as it was at
 * start -- so a child of the default context reports the method that
 * started it, as Python's do.
 *
 * Lifetime (as Python): when the program exits normally (exit(), return from
 * main), its daemon children are terminated and then every other child is
 * joined -- after the library's own exit work of higher priority (a pool's,
 * a manager's, as Python's util._exit_function), and likewise when a child
 * process ends.  Daemon children also die (SIGKILL) when their parent process dies
 * any other way, e.g. SIGKILLed (PR_SET_PDEATHSIG for children started by a
 * main thread or by the forkserver; a watcher thread on the parent's pidfd
 * for children started by other threads, since that signal follows the
 * starting *thread*); every child can see its parent's death through
 * mp_parent_process(), and a child still waiting for its instructions when
 * the parent dies exits (MP_EXIT_BOOTFAIL).  The forkserver exits when the
 * program that started it exits, however it ends.  A daemon process may not start children.
 * Finished children are reaped by mp_process_is_alive, mp_active_children
 * and every new start: no zombies pile up.
 *
 * SIGCHLD is the program's: it may ignore it, set SA_NOCLDWAIT, or reap
 * children itself (a handler looping on waitpid(-1, ..., WNOHANG)).  The
 * library then still sees every child end (join, is_alive) and never
 * invents an exit code: a child that ends through the library (its target
 * returns, mp_exit) reports its code itself, forkserver children are
 * reaped by the server, and on Linux 6.15 and later the kernel keeps every
 * status for the library (pidfd) whoever reaped the child.  A status that
 * is truly lost reads as MP_ECHILD (see mp_process_exitcode).
 *
 * Ownership: mp_process objects are reference counted.  mp_process_new
 * returns one reference, mp_process_free releases one; the library keeps its
 * own while a child runs (so freeing a running process is allowed: it keeps
 * running, is reaped later and joined at exit, as a Python Process object
 * that went out of scope).  Only the process that created a process object
 * may start, join, terminate, kill or read the exit code of it
 * (MP_ENOTOWNER otherwise).  Every function is thread-safe. */
#ifndef MPROC_PROCESS_H
#define MPROC_PROCESS_H

#include <stddef.h>
#include <stdint.h>

#include "mproc/version.h"
#include "obj.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_context mp_context;
typedef struct mp_process mp_process;

/* A process's work: called with the args tuple (borrowed; never NULL, an
 * empty tuple when none were given); returns the exit code. */
typedef int (*mp_target_fn)(mp_obj *args);

/* Exit codes of spawn/forkserver children that never reached their target:
 * the target's object file differs from the parent's (another build-id) or
 * cannot be found or loaded; the child's instructions could not be read or
 * its args rebuilt (e.g. the parent died while starting it).  The reason is
 * printed on stderr. */
#define MP_EXIT_BADREF 121
#define MP_EXIT_BOOTFAIL 120

/* ---- contexts and start methods ---------------------------------------- */

/* The context of a start method: "fork", "spawn", "forkserver",
 * "threading"; NULL for the default context (the method fixed by
 * mp_set_start_method, else "fork"; a process made with it uses the default
 * method as it is when the process starts).  Contexts are static: never
 * freed.  Returns 0, or MP_EINVAL for an unknown name. */
MP_EXTERN int mp_get_context(const char *method, mp_context **out);

/* The method name of a context ("fork", ...).  For the default context: the
 * current default method (fixing it, as mp_get_start_method(0)). */
MP_EXTERN const char *mp_context_method(const mp_context *ctx);

/* Fix the default start method.  Returns MP_ESTATE if it is already fixed
 * and `force` is 0 (Python's RuntimeError), MP_EINVAL for an unknown name.
 * With force, NULL unfixes it; without force, NULL is a no-op. */
MP_EXTERN int mp_set_start_method(const char *method, int force);

/* The name of the default start method.  If none is fixed: NULL when
 * allow_none, else the platform default ("fork"), which becomes fixed.  A
 * child starts with its parent's (fixed or not), under every method. */
MP_EXTERN const char *mp_get_start_method(int allow_none);

/* The supported methods, the default first, NULL-terminated (static). */
MP_EXTERN const char *const *mp_get_all_start_methods(void);

/* The program that spawn and the forkserver execute (NULL: this program,
 * /proc/self/exe).  It must be a build of the same program (see the build-id
 * check above).  Returns 0, MP_ENOMEM, or MP_ENOENT if `path` does not
 * exist. */
MP_EXTERN int mp_set_executable(const char *path);

/* Shared objects (dlopen names or paths) the forkserver loads before forking
 * children, so they inherit them loaded.  A name that fails to load is
 * skipped (logged at debug).  Takes effect when the server starts: call it
 * before the first forkserver child.  Copies the names. */
MP_EXTERN int mp_set_forkserver_preload(const char *const *names, size_t n);

/* While a thread encodes the args of a process it is starting: that
 * process's context, so a handle type's `reduce` can refuse a child it
 * cannot serve (return MP_ECONTEXT with mp_seterr).  NULL otherwise (Python's
 * get_spawning_popen). */
MP_EXTERN mp_context *mp_spawning_context(void);

/* ---- Process -------------------------------------------------------------- */

enum {
  MP_DAEMON_INHERIT = 0, /* the creating process's flag (the default) */
  MP_DAEMON_YES = 1,
  MP_DAEMON_NO = -1
};

typedef struct mp_process_opts {
  mp_target_fn target; /* NULL: a child that does nothing (exit code 0) */
  /* A tuple; the process takes a new reference (NULL: empty tuple) and
   * drops it once the child has its own copy (see Args above).  MP_ETYPE if
   * it is not a tuple. */
  mp_obj *args;
  /* NULL: "Process-N1:N2:...:Nk" (Nk-th child of its parent). Copied. */
  const char *name;
  int daemon; /* MP_DAEMON_INHERIT / _YES / _NO */
  /* NULL: inherit the current process's authkey (copied). */
  const void *authkey;
  size_t authkey_len;
} mp_process_opts;

/* Make a process object (not started) for context `ctx` (NULL: the default
 * context).  opts NULL: all defaults.  Returns 0, MP_EINVAL, MP_ETYPE,
 * MP_ENOMEM. */
MP_EXTERN int mp_process_new(mp_process **out, mp_context *ctx,
                             const mp_process_opts *opts);

/* Take another reference / release one (NULL ignored).  The last release of
 * a process that was never started or is finished frees it; a running child
 * keeps running (see Ownership above). */
MP_EXTERN mp_process *mp_process_ref(mp_process *p);
MP_EXTERN void mp_process_free(mp_process *p);

/* Start the child.  At most once: MP_ESTATE afterwards.  MP_ENOTOWNER if
 * this process did not create `p`; MP_EPERM from a daemon process (daemons
 * may not have children, except threading ones); MP_ECLOSED after close;
 * MP_ECONTEXT (or another code) if an arg cannot be sent to this kind of
 * child; -errno when the system refuses (EAGAIN: too many processes).
 * Reaps finished children first.  Flushes stdout/stderr before forking.
 * Safe from any thread (fork's caveat above). */
MP_EXTERN int mp_process_start(mp_process *p);

/* Wait for the child to end, at most `timeout` seconds (the one rule:
 * MP_FOREVER: no limit; <= 0: just check; NaN: MP_EINVAL).  Returns 0 when
 * it has ended (and is reaped, by the library or by whoever took its
 * status: see SIGCHLD above),
 * MP_ETIMEDOUT, MP_ESTATE before start, MP_EDEADLK for a process joining
 * itself, MP_ENOTOWNER, MP_ECLOSED.  Any number of times, from any thread. */
MP_EXTERN int mp_process_join(mp_process *p, double timeout);

/* 1 while running (from start until the child ends), 0 otherwise (also
 * before start); reaps a finished child.  The current process is alive;
 * the parent process is alive until it dies.  MP_ECLOSED after close. */
MP_EXTERN int mp_process_is_alive(mp_process *p);

/* Send SIGTERM / SIGKILL (exit code then -15 / -9).  A no-op once the child
 * has ended.  MP_ESTATE before start, MP_ENOTSUP for threading, MP_ENOTOWNER,
 * MP_ECLOSED.  Never signals a recycled pid (pidfd). */
MP_EXTERN int mp_process_terminate(mp_process *p);
MP_EXTERN int mp_process_kill(mp_process *p);

/* Release the OS resources (sentinel ...).  MP_EBUSY while the child runs;
 * afterwards every call but mp_process_free, _name, _daemon and _repr
 * returns MP_ECLOSED.  Closing twice is fine. */
MP_EXTERN int mp_process_close(mp_process *p);

/* The pid: > 0 once started (threading: the thread's kernel id), 0 before
 * (Python's None), MP_ECLOSED after close.  The current process's pid for
 * mp_current_process(). */
MP_EXTERN int mp_process_pid(mp_process *p);

/* The exit code once the child has ended: 0, N, or -N (signal N).  Returns
 * 0 and sets *code; MP_ESTATE while not started or still running (Python's
 * None); MP_ENOTOWNER; MP_ECLOSED.  Does not block; reaps.
 *
 * MP_ECHILD (*code untouched) when the child has ended but its exit status
 * is lost: someone else reaped it (SIGCHLD ignored, SA_NOCLDWAIT, the
 * program's own waitpid) and it did not end through the library -- a
 * signal killed it, or it called _exit() or exit() itself -- on a kernel
 * that keeps no status for pidfds (before Linux 6.15), or a fork child
 * that did so within microseconds of its start (before the library could
 * open a pidfd of it).  Also a forkserver child that was still running
 * when the forkserver was killed: its status went to whoever adopted it,
 * and the library has it only if the kernel does (6.15, once the adopter
 * reaped it).  join succeeds and is_alive is 0 in every such case. */
MP_EXTERN int mp_process_exitcode(mp_process *p, int *code);

/* The name (borrowed: valid until the name is set again or p is freed) and
 * setting it (copied; any time, as Python -- a running child keeps the name
 * it started with).  MP_EINVAL for NULL. */
MP_EXTERN const char *mp_process_name(mp_process *p);
MP_EXTERN int mp_process_set_name(mp_process *p, const char *name);

/* The daemon flag (0 or 1), and setting it: before start only (MP_ESTATE
 * after). */
MP_EXTERN int mp_process_daemon(mp_process *p);
MP_EXTERN int mp_process_set_daemon(mp_process *p, int daemon);

/* A descriptor that becomes readable when the process ends, for poll(2) and
 * mp_wait (owned by p; do not close it).  MP_ESTATE before start,
 * MP_ECLOSED after close. */
MP_EXTERN int mp_process_sentinel(mp_process *p);

/* The authentication key: *key borrowed (valid until it is set again or p
 * is freed).  The main process gets 32 random bytes; children inherit their
 * creator's unless given one.  Setting: any time for mp_current_process()
 * (affects children made afterwards), before start for others (MP_ESTATE
 * after); 1 to 4096 bytes (MP_EINVAL otherwise). */
MP_EXTERN int mp_process_authkey(mp_process *p, const uint8_t **key,
                                 size_t *len);
MP_EXTERN int mp_process_set_authkey(mp_process *p, const void *key,
                                     size_t len);

/* The context the process was made with; for a process made with the
 * default context, NULL until it starts and then the context of the method
 * that started it.  In a child, mp_process_context(mp_current_process()) is
 * the context it was started with (never NULL); NULL for the main process
 * and for mp_parent_process(). */
MP_EXTERN mp_context *mp_process_context(mp_process *p);

/* Python's repr, e.g. "<SpawnProcess name='Process-1' pid=42 parent=41
 * stopped exitcode=-SIGTERM daemon>"; the class is "Process" for the default
 * context, else ForkProcess, SpawnProcess, ForkServerProcess, ThreadProcess.
 * Writes at most cap bytes (NUL-terminated when cap > 0) and returns the full
 * length. */
MP_EXTERN int mp_process_repr(mp_process *p, char *buf, size_t cap);

/* ---- this process ---------------------------------------------------------- */

/* The process object of the running code (borrowed, never NULL): the main
 * process ("MainProcess"), or in a child its own object.  In a threading
 * child: the thread's process object. */
MP_EXTERN mp_process *mp_current_process(void);

/* The process that started this one (borrowed), NULL in the main process.
 * Supports mp_process_pid, _name, _is_alive, _join and _sentinel (which
 * become ready when that process dies), and _authkey. */
MP_EXTERN mp_process *mp_parent_process(void);

/* The live children of this process (as Python, joining finished ones as a
 * side effect).  *list is an array of *n new references: release each with
 * mp_process_free and the array with mp_free (or mp_process_list_free).
 * Returns 0 or MP_ENOMEM. */
MP_EXTERN int mp_active_children(mp_process ***list, size_t *n);
MP_EXTERN void mp_process_list_free(mp_process **list, size_t n);

/* CPUs in the system (online).  > 0, or MP_ENOTSUP if unknown. */
MP_EXTERN int mp_cpu_count(void);
/* CPUs this process may actually use: its affinity mask, capped by a cgroup
 * v2 cpu.max quota (rounded up).  > 0, or MP_ENOTSUP. */
MP_EXTERN int mp_cpu_count_usable(void);

/* End the current process with exit code `code` (Python's sys.exit(code) in
 * a child): flushes stdio, terminates daemon children and joins the others,
 * and exits without running the parent's atexit handlers (a child) or with
 * exit() (the main process).  In a threading child it ends the thread only,
 * with that exit code. */
MP_EXTERN void mp_exit(int code) __attribute__((noreturn));

/* For programs that start children with "spawn" and want to choose the
 * moment the child is taken over: call it first in main().  If this process
 * is an mproc child that was not taken over yet, it runs the child and never
 * returns; otherwise it returns 0.  Not needed on glibc, where children are
 * taken over before main (Python's freeze_support). */
MP_EXTERN int mp_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
