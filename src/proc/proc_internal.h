/* SPDX-License-Identifier: MIT */
/* Internals of the process layer shared by its files.  (Function
 * references are core's: core/internal.h.)
 *
 *   context.c     contexts, start-method selection, the layer's set-up
 *   process.c     the process object, this process, the child's common life
 *   children.c    the registry of children: reaping, active children, exit
 *   fork.c spawn.c forkserver.c thread.c
 *                 the start methods, one file each, behind mp__start_ops
 *   boot.c        instructions for spawn and forkserver children, takeover
 *   exitcode.c    a child's own report of its exit code */
#ifndef MPROC_PROC_INTERNAL_H
#define MPROC_PROC_INTERNAL_H

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "core/internal.h"

/* Start methods by index (the order of mp_get_all_start_methods; the index
 * travels in a child's instructions). */
enum { MP__M_FORK = 0, MP__M_SPAWN, MP__M_FORKSERVER, MP__M_THREADING,
       MP__M_COUNT };

typedef struct mp__start_ops mp__start_ops;

struct mp_context {
  int method;                /* MP__M_*, or -1 for the default context */
  const mp__start_ops *ops;  /* NULL for the default context */
};

enum { MP__P_CHILD = 0, MP__P_CURRENT, MP__P_PARENT };
enum { MP__S_INITIAL = 0, MP__S_STARTED, MP__S_DONE };

/* Lock order: a process's `lock` may be held while taking the registry lock
 * (registering); the registry lock is never held while taking a process's
 * lock. */
struct mp_process {
  atomic_int refs;
  pthread_mutex_t lock;
  int kind;          /* MP__P_* */
  mp_context *ctx;   /* NULL: the default context */
  int method;        /* resolved at start (MP__M_*) */
  mp_target_fn target;
  mp_obj *args;      /* a tuple */
  char *name;
  char *identity;    /* "1:2" -- the Nk path naming children */
  atomic_uint nchildren; /* children made while this is current */
  int daemon;
  uint8_t *authkey;
  size_t authkey_len;
  pid_t creator_pid; /* the process that made this object */
  mp_process *creator; /* creator's current process (a reference) */
  int state;         /* MP__S_* */
  int closed;
  atomic_int pid;
  int pidfd;         /* signals (fork, spawn, forkserver); -1 */
  int sentinel;      /* readable when it ends; -1 */
  int status_fd;     /* forkserver: the status pipe (== sentinel); -1 once
                      * the server is gone (the sentinel is then a pidfd) */
  int exitcode;
  int exit_unknown;  /* ended, and its exit status is lost (MP_ECHILD) */
  /* The child's own report of its exit code (exitcode.c): the parent's slot
   * (table MP__XT_*, index, the tag of this start); in the child, the word
   * it stores its code in before it exits (fork: the parent's pointer). */
  int exit_table;
  uint32_t exit_index, exit_tag;
  uint64_t *exit_word;
  /* threading */
  pthread_t thread;
  atomic_int thread_done;
  int thread_wfd;
  /* the registry of started, unreaped children */
  mp_process *reg_prev, *reg_next;
  int registered;
};

/* ---- the start-method interface -------------------------------------------
 * One table per method, in the file of that method (nng's transport ops,
 * libuv's file per backend).  The process object and the registry call a
 * child's method only through its table, and know no method by name. */
#define MP__OPS_THREAD 1u /* the child is a thread of this process: it
                           * shares its memory and stdio, may be started by
                           * a daemon, keeps its args until it ends */
struct mp__start_ops {
  const char *name;   /* "fork": the method's and its context's name */
  const char *cls;    /* Python's class name: "ForkProcess" */
  unsigned flags;     /* MP__OPS_* */
  /* Parent, with p->lock held and p registered as started (p->method set):
   * make the child and set p->pid and p->sentinel (and the method's own
   * fields).  0, or a code with nothing left behind. */
  int (*start)(mp_process *p);
  /* Parent, p->lock held, p started: has the child ended?  Never blocks.
   * 1: ended, p->exitcode set; -1: ended, its exit status is lost; 0: not
   * yet.  The registry does the rest (children.c, mp__proc_reap). */
  int (*reap)(mp_process *p);
  /* Parent, p->lock held, p running: send `sig`.  NULL: a child of this
   * method cannot be signalled (MP_ENOTSUP). */
  int (*signal)(mp_process *p, int sig);
  /* In every fork child of a process that used the layer (a lifecycle fork
   * hook): forget the method's state of the parent.  NULL: none. */
  void (*after_fork_child)(void);
  /* Child side: end the current child, `self`, with `code` (mp_exit, the
   * target's return). */
  void (*child_exit)(mp_process *self, int code) __attribute__((noreturn));
  /* Why a lost exit status is lost (MP_ECHILD's detail). */
  const char *lost_why;
};

extern const mp__start_ops mp__fork_ops, mp__spawn_ops, mp__forkserver_ops,
    mp__thread_ops;

/* ---- context.c ------------------------------------------------------------ */
extern mp_context mp__contexts[MP__M_COUNT];
extern mp_context mp__default_context;
/* The methods of a started process, or of the current process. */
static inline const mp__start_ops *
mp__proc_ops(const mp_process *p)
{
  return mp__contexts[p->method].ops;
}
/* Register the layer's fork hooks with the lifecycle registry, once per
 * program: called by every entry point that makes state a fork child must
 * forget (a process object, the start method, the forkserver's
 * settings). */
void mp__proc_init(void);
/* The method p would start with now: its context's, else the default. */
int mp__proc_resolve_method(const mp_process *p);
/* Method of the default context (fixing it). */
int mp__proc_default_method(void);
/* The default method as it is (-1: not fixed), and setting it (a spawn or
 * forkserver child takes its parent's, as a fork child inherits it). */
int mp__proc_default_method_now(void);
void mp__proc_set_default_method(int method);
/* The spawning context while args are encoded (mp_spawning_context). */
void mp__proc_set_spawning(mp_context *ctx);

/* ---- process.c ------------------------------------------------------------ */
mp_process *mp__proc_alloc(int kind);
/* In a fork child: make `m` usable again if it was not left unlocked. */
void mp__mutex_reset(pthread_mutex_t *m);
/* A new pidfd of this process (the caller closes it), or -errno. */
int mp__proc_self_pidfd(void);
/* The sentinel of a process known to have ended: the read end of a pipe
 * at end of file (ready, as its pidfd would be), or -errno. */
int mp__proc_ended_sentinel(void);
/* Is this thread the main thread of its process? */
int mp__proc_on_main_thread(void);
/* Checks for operations only the creator may do; p->lock held. */
int mp__proc_check_owner(mp_process *p, const char *what);
/* How a new process child watches for its parent's death (daemons die
 * with it): */
enum {
  MP__PDEATH_WATCH = 0, /* a thread on the parent's sentinel */
  MP__PDEATH_SIGNAL,    /* PR_SET_PDEATHSIG, set now (parent: pdeath_ppid) */
  MP__PDEATH_ARMED      /* PR_SET_PDEATHSIG already set */
};
/* Set up this (new) process as the child described, with `parent_sentinel`
 * (owned) watching the creator, then run target(args) and exit.  Used by
 * every OS start method in the child.  A fork child of a main thread,
 * whose parent is its creator, passes MP__SENTINEL_LAZY: it opens the
 * parent's pidfd itself, when it first needs one. */
#define MP__SENTINEL_LAZY (-2)
void mp__proc_child_main(mp_process *self, pid_t parent_pid,
                         const char *parent_name, int parent_sentinel,
                         int pdeath, pid_t pdeath_ppid)
    __attribute__((noreturn));
/* The end of a child process: Python's util._exit_function (the lifecycle
 * finalizers: children joined, daemons terminated ...), stdio flushed, the
 * code reported, _exit(code).  Every OS method's child_exit. */
void mp__proc_child_exit(mp_process *self, int code)
    __attribute__((noreturn));

/* ---- children.c: the registry of started, unreaped children --------------- */
/* Register the registry's fork hook (from mp__proc_init). */
void mp__proc_children_init(void);
void mp__proc_reg_add(mp_process *p);
void mp__proc_reg_remove(mp_process *p);
/* Has p ended (p->lock held, p started)?  Asks its method, then records
 * the end once (state DONE, exit word freed).  1 or 0; never blocks. */
int mp__proc_reap(mp_process *p);
/* Reap every finished child (Python's _cleanup). */
void mp__proc_cleanup_children(void);
/* After a successful start: the exit handling is registered (once per
 * process, with the lifecycle registry). */
void mp__proc_children_started(void);
/* The reap of a child of this process with a pidfd (fork, spawn). */
int mp__proc_reap_pidfd(mp_process *p);
/* An exit status waitpid cannot give (someone else reaped the child; or
 * a forkserver child whose server is gone, `orphan`: its reaper is a
 * stranger that may take any time): 1 and *st, 0 while it has not ended,
 * -1 if it ended and nobody can tell how. */
int mp__proc_lost_status(mp_process *p, int orphan, int *st);
/* waitpid's status as an exit code: N, or -N for signal N. */
int mp__proc_status_code(int st);
/* Signal a process child through its pidfd (fork, spawn, forkserver). */
int mp__proc_signal_pidfd(mp_process *p, int sig);

/* Tests: ignore the kernel's record of exit statuses (pidfds, Linux 6.15),
 * as on older kernels, so that what the library falls back on is seen. */
void mp__proc_test_ignore_pidfd_exit(int on);

/* ---- fork.c --------------------------------------------------------------- */
/* Resolve the lazily bound functions children call, once, before forking
 * (else every child looks them up again and copies a GOT page). */
void mp__proc_prebind(void);

/* ---- thread.c ------------------------------------------------------------- */
/* The process object of the calling thread if it is a threading child. */
mp_process *mp__thread_current(void);

/* ---- exitcode.c: a child's own report of its exit code ------------------ */
enum { MP__XT_NONE = 0, MP__XT_FORK, MP__XT_EXEC };
/* Parent, starting p (p->lock held, p->creator_pid is this process): a word
 * for the child to report its exit code in -- MP__XT_FORK for a fork child
 * (shared memory it inherits: p->exit_word), MP__XT_EXEC for a spawn child
 * (a page of mp__exit_slot_fd()).  Returns 0 or a negative code. */
int mp__exit_slot_get(mp_process *p, int table);
/* The descriptor of p's MP__XT_EXEC word, to send to the child. */
int mp__exit_slot_fd(const mp_process *p);
/* Parent: the code the ended child reported (1, *code) or 0 (none). */
int mp__exit_slot_read(const mp_process *p, int *code);
/* Parent: p's child has ended (or never ran): free its word. */
void mp__exit_slot_put(mp_process *p);
/* Child (spawn): map the word `index` of the table `fd` (taken) as
 * self->exit_word.  Failure only leaves the child without a report. */
void mp__exit_slot_attach(mp_process *self, int fd, uint32_t index,
                          uint32_t tag);
/* Child, just before it exits with `code`: store it for the parent (only
 * in the process the word was made for, not in a process it forked). */
void mp__exit_report(mp_process *self, int code);
/* In a fork child: the parent's tables are not ours. */
void mp__exit_after_fork_child(void);

/* ---- boot.c: instructions for spawn and forkserver children ------------- */
/* A spawned child finds its boot socket at fd MP__BOOT_FD, named by this
 * environment variable. */
#define MP__BOOT_ENV "__MPROC_BOOT"
#define MP__BOOT_FD 3
/* Handle-type collection of a value (for children that rebuild handles). */
int mp__proc_collect_handle_types(const mp_obj *o,
                                  const mp_handle_type **types, size_t max,
                                  size_t *n);
/* The instructions of `p` (args pickled with their descriptors, the target
 * as a reference ...), encoded before any process exists: one message, a
 * header and the payload. */
#define MP__MAX_INHERIT 4
typedef struct mp__boot_msg {
  mp__buf msg;
  int *argfds; /* owned by the handles in p's args */
  size_t nargfds;
  int inhfds[MP__MAX_INHERIT]; /* owned: see mp__proc_inherit */
  size_t ninh;
  int exitfd;  /* the table of p's exit word (borrowed), or -1 */
} mp__boot_msg;
int mp__boot_encode_process(mp_process *p, int use_pdeathsig, mp__boot_msg *m);
void mp__boot_msg_release(mp__boot_msg *m);
/* spawn: send them over `sock`, the child's boot socket, with this
 * process's pidfd (the child's parent sentinel) and the exit word's
 * table. */
int mp__boot_send_msg(int sock, mp__boot_msg *m);
/* forkserver: send them as one request packet on the server's control
 * socket `ctl`, for the spare `dest`; a payload over MP__BOOT_INLINE_MAX
 * (or over what the socket takes) rides in a memfd instead. */
#define MP__BOOT_INLINE_MAX (64 * 1024)
int mp__boot_send_request(int ctl, pid_t dest, mp__boot_msg *m);
/* The spare a received request is for, or -1 if it is no request. */
pid_t mp__boot_request_dest(const uint8_t *msg, size_t len);
/* Child side of spawn: read instructions from `sock` and become the child,
 * or the forkserver (never returns). */
void mp__boot_run(int sock) __attribute__((noreturn));
/* Child side of forkserver: become the child of the request `msg` (`len`
 * bytes as received), with its descriptors (`fds`, owned) and
 * `parent_sentinel` (owned) watching the program. */
void mp__boot_forkserver_child(const uint8_t *msg, size_t len, int *fds,
                               size_t nfds, int parent_sentinel)
    __attribute__((noreturn));
/* posix_spawn this program (or mp_set_executable's) with boot socket
 * `child_sock` at fd 3; returns the pid or -errno (spawn.c). */
int mp__boot_spawn_exe(int child_sock, pid_t *pid);
/* Send the forkserver's instructions: control socket `ctl` and preloads. */
int mp__boot_send_server(int sock, int ctl, char *const *preload, size_t n);
/* Descriptors of a later layer that every process of the program holds
 * (the resource tracker's pipe): fork children inherit them, spawn and
 * forkserver children get them with their instructions.  At each such start
 * `give` sets *fd to a new descriptor (the message owns it) or -1 when it
 * has none now, and *word to a value of its own; it returns 0 or a code
 * (failing the start).  In the child `take` receives its copy (owned) and
 * the word before the args are rebuilt; it registers the hook again so that
 * grandchildren get it too.  The hook travels as a data reference: the
 * child needs no registration of its own.  Idempotent for the same hook;
 * MP_ELIMIT past MP__MAX_INHERIT hooks. */
typedef struct mp__inherit {
  int (*give)(int *fd, uint64_t *word);
  void (*take)(int fd, uint64_t word);
} mp__inherit;
int mp__proc_inherit(const mp__inherit *h);

/* ---- forkserver.c ------------------------------------------------------- */
/* Stop the server (if running) and reap it.  For tests and exit. */
void mp__forkserver_stop(void);
/* The server's pid (0 if not running). */
pid_t mp__forkserver_pid(void);
/* Server side: run the server on its control socket (never returns). */
void mp__forkserver_main(int ctl, int client_pidfd, char **preload,
                         size_t npreload) __attribute__((noreturn));

#endif
