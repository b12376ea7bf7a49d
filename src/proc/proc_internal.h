/* Internals of the process layer shared by its files: the process object,
 * the child bootstrap (spawn and forkserver children) and the forkserver
 * client.  (Function references are core's: core/internal.h.) */
#ifndef MPROC_PROC_INTERNAL_H
#define MPROC_PROC_INTERNAL_H

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "core/internal.h"

enum { MP__M_FORK = 0, MP__M_SPAWN, MP__M_FORKSERVER, MP__M_THREADING,
       MP__M_COUNT };

struct mp_context {
  int method;       /* MP__M_*, or -1 for the default context */
  const char *name; /* "fork" ... */
  const char *cls;  /* Python's class name: "ForkProcess" ... */
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

/* ---- process.c ---------------------------------------------------------- */
mp_process *mp__proc_alloc(int kind);
/* Resolve the lazily bound functions children call, once, before forking
 * (else every child looks them up again and copies a GOT page). */
void mp__proc_prebind(void);
/* In a fork child: make `m` usable again if it was not left unlocked. */
void mp__mutex_reset(pthread_mutex_t *m);
void mp__proc_set_spawning(mp_context *ctx);
/* A new pidfd of this process (the caller closes it), or -errno. */
int mp__proc_self_pidfd(void);
/* Is this thread the main thread of its process? */
int mp__proc_on_main_thread(void);
/* Set up this (new) process as the child described, with `parent_sentinel`
 * (owned) watching the creator, then run target(args) and exit.  Used by
 * every OS start method in the child. */
void mp__proc_child_main(mp_process *self, pid_t parent_pid,
                         const char *parent_name, int parent_sentinel,
                         int use_pdeathsig, pid_t pdeath_ppid)
    __attribute__((noreturn));
/* Python's util._exit_function then _exit(code). */
void mp__proc_child_exit(int code) __attribute__((noreturn));
/* Method of the default context (fixing it). */
int mp__proc_default_method(void);
/* The default method as it is (-1: not fixed), and setting it (a spawn or
 * forkserver child takes its parent's, as a fork child inherits it). */
int mp__proc_default_method_now(void);
void mp__proc_set_default_method(int method);
extern mp_context mp__contexts[MP__M_COUNT];
/* Handle-type collection of a value (for children that rebuild handles). */
int mp__proc_collect_handle_types(const mp_obj *o,
                                  const mp_handle_type **types, size_t max,
                                  size_t *n);

/* Tests: ignore the kernel's record of exit statuses (pidfds, Linux 6.15),
 * as on older kernels, so that what the library falls back on is seen. */
void mp__proc_test_ignore_pidfd_exit(int on);

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
/* Start p by spawn (pid, pidfd, sentinel set on success). */
int mp__spawn_start(mp_process *p);
/* The instructions of `p` (args pickled with their descriptors, the target
 * as a reference ...), encoded; then sent over `sock`, the child's boot
 * socket, with this process's pidfd (the child's parent sentinel). */
#define MP__MAX_INHERIT 4
typedef struct mp__boot_msg {
  mp__buf payload;
  int *argfds; /* owned by the handles in p's args */
  size_t nargfds;
  int inhfds[MP__MAX_INHERIT]; /* owned: see mp__proc_inherit */
  size_t ninh;
  int exitfd;  /* the table of p's exit word (borrowed), or -1 */
} mp__boot_msg;
int mp__boot_encode_process(mp_process *p, int use_pdeathsig, mp__boot_msg *m);
int mp__boot_send_msg(int sock, const mp__boot_msg *m);
void mp__boot_msg_release(mp__boot_msg *m);
/* Child side: read instructions from `sock` and become the child (never
 * returns).  `forkserver_child`: this process was forked by the server. */
void mp__boot_run(int sock, int forkserver_child) __attribute__((noreturn));
/* posix_spawn this program (or mp_set_executable's) with boot socket
 * `child_sock` at fd 3; returns the pid or -errno. */
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
int mp__forkserver_start(mp_process *p);
void mp__forkserver_after_fork_child(void);
/* Stop the server (if running) and reap it.  For tests and exit. */
void mp__forkserver_stop(void);
/* The server's pid (0 if not running). */
pid_t mp__forkserver_pid(void);
/* Server side: run the server on its control socket (never returns). */
void mp__forkserver_main(int ctl, int client_pidfd, char **preload,
                         size_t npreload) __attribute__((noreturn));

#endif
