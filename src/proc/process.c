/* SPDX-License-Identifier: MIT */
/* The process object (new, start, join, is_alive, terminate, close, its
 * attributes, repr); this process and its parent; the common life of a
 * child process (child_main, child_exit, mp_exit).  A process's start
 * method is called only through its mp__start_ops (context.c); the
 * registry of children is children.c. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fd.h"
#include "core/hmac.h"
#include "platform/platform.h"
#include "proc/proc_internal.h"

static mp_process *g_current MP__FORK_DATA; /* this OS process */
static mp_process *g_parent MP__FORK_DATA;  /* NULL in the main process */
static pthread_once_t main_once = PTHREAD_ONCE_INIT;

mp_process *
mp__proc_alloc(int kind)
{
  mp_process *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  atomic_init(&p->refs, 1);
  pthread_mutex_init(&p->lock, NULL);
  p->kind = kind;
  p->pidfd = p->sentinel = p->status_fd = p->thread_wfd = -1;
  return p;
}

static void
init_main(void)
{
  if (g_current)
    return; /* a child: it was told who it is */
  mp_process *m = mp__proc_alloc(MP__P_CURRENT);
  if (!m)
    abort(); /* at the first call: nothing sensible to return */
  m->name = strdup("MainProcess");
  m->identity = strdup("");
  m->authkey = malloc(32);
  m->authkey_len = 32;
  if (!m->name || !m->identity || !m->authkey)
    abort();
  if (mp__random_bytes(m->authkey, 32))
    abort();
  m->state = MP__S_STARTED;
  m->pid = getpid();
  m->creator_pid = 0;
  g_current = m;
}

mp_process *
mp_current_process(void)
{
  mp_process *t = mp__thread_current();
  if (t)
    return t;
  pthread_once(&main_once, init_main);
  return g_current;
}

mp_process *
mp_parent_process(void)
{
  mp_process *t = mp__thread_current();
  if (t)
    return t->creator;
  pthread_once(&main_once, init_main);
  return g_parent;
}

int
mp__proc_on_main_thread(void)
{
  return mp__gettid() == mp__getpid();
}

int
mp__proc_ended_sentinel(void)
{
  int fds[2], rc = mp__pipe(fds);
  if (rc)
    return rc;
  mp__close(fds[1]);
  return fds[0];
}

int
mp__proc_self_pidfd(void)
{
  /* A new descriptor each time (the caller closes it): a cached one would
   * sit open for the life of the program. */
  return mp__plat_pidfd_open((pid_t)mp__getpid());
}

/* ---- process objects ---------------------------------------------------- */

int
mp_process_new(mp_process **out, mp_context *ctx, const mp_process_opts *opts)
{
  mp__errdetail_clear();
  static const mp_process_opts defaults;
  if (!out)
    return MP_EINVAL;
  if (!opts)
    opts = &defaults;
  if (opts->args && mp_obj_type(opts->args) != MP_T_TUPLE)
    return mp_seterr(MP_ETYPE, "args must be a tuple, not %s",
                     mp_type_name(mp_obj_type(opts->args)));
  if (opts->authkey && (opts->authkey_len == 0 || opts->authkey_len > 4096))
    return mp_seterr(MP_EINVAL, "authkey must be 1 to 4096 bytes");
  if (opts->daemon < -1 || opts->daemon > 1)
    return MP_EINVAL;
  if (ctx && ctx != &mp__default_context &&
      (ctx < mp__contexts || ctx >= mp__contexts + MP__M_COUNT))
    return mp_seterr(MP_EINVAL, "not a context of mp_get_context");
  mp__proc_init();
  mp_process *cur = mp_current_process();
  mp_process *p = mp__proc_alloc(MP__P_CHILD);
  if (!p)
    return MP_ENOMEM;
  p->ctx = ctx && ctx->method >= 0 ? ctx : NULL;
  p->target = opts->target;
  p->args = opts->args ? mp_obj_ref(opts->args) : mp_tuple_take(0);
  /* Nk: the k-th child of the current process (per process object, so a
   * threading child numbers its own children too). */
  unsigned n = atomic_fetch_add(&cur->nchildren, 1) + 1;
  char ident[512];
  pthread_mutex_lock(&cur->lock);
  snprintf(ident, sizeof ident, "%s%s%u", cur->identity,
           cur->identity[0] ? ":" : "", n);
  p->daemon = opts->daemon == MP_DAEMON_INHERIT ? cur->daemon
                                                 : opts->daemon == MP_DAEMON_YES;
  const void *key = opts->authkey ? opts->authkey : cur->authkey;
  size_t keylen = opts->authkey ? opts->authkey_len : cur->authkey_len;
  p->authkey = malloc(keylen);
  if (p->authkey)
    memcpy(p->authkey, key, keylen);
  pthread_mutex_unlock(&cur->lock);
  p->authkey_len = keylen;
  p->identity = strdup(ident);
  if (opts->name) {
    p->name = strdup(opts->name);
  } else {
    size_t len = strlen(ident) + 9;
    p->name = malloc(len);
    if (p->name)
      snprintf(p->name, len, "Process-%s", ident);
  }
  p->creator_pid = (pid_t)mp__getpid();
  p->creator = mp_process_ref(cur);
  if (!p->args || !p->identity || !p->name || !p->authkey) {
    mp_process_free(p);
    return MP_ENOMEM;
  }
  *out = p;
  return 0;
}

mp_process *
mp_process_ref(mp_process *p)
{
  if (p)
    atomic_fetch_add(&p->refs, 1);
  return p;
}

static void
close_fds(mp_process *p)
{
  if (p->sentinel >= 0 && p->sentinel != p->pidfd)
    mp__close(p->sentinel);
  mp__close(p->pidfd);
  p->sentinel = p->pidfd = p->status_fd = -1;
}

void
mp_process_free(mp_process *p)
{
  if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
    return;
  if (p == g_current || p == g_parent)
    return; /* static for the life of the process */
  close_fds(p);
  mp__close(p->thread_wfd);
  mp_obj_free(p->args);
  free(p->name);
  free(p->identity);
  if (p->authkey)
    memset(p->authkey, 0, p->authkey_len);
  free(p->authkey);
  if (p->creator)
    mp_process_free(p->creator);
  pthread_mutex_destroy(&p->lock);
  free(p);
}

void
mp_process_list_free(mp_process **list, size_t n)
{
  for (size_t i = 0; i < n && list; i++)
    mp_process_free(list[i]);
  free(list);
}

/* ---- checks shared by the methods --------------------------------------- */

int
mp__proc_check_owner(mp_process *p, const char *what)
{
  if (p->closed)
    return mp_seterr(MP_ECLOSED, "process object is closed");
  if (p->kind != MP__P_CHILD || p->creator_pid != (pid_t)mp__getpid())
    return mp_seterr(MP_ENOTOWNER, "can only %s a child process", what);
  return 0;
}

void
mp__mutex_reset(pthread_mutex_t *m)
{
  /* An unlocked default mutex is all zero bytes (PTHREAD_MUTEX_INITIALIZER).
   * A plain loop: no library code page for the child to fault in. */
  const volatile unsigned char *b = (const volatile unsigned char *)m;
  for (size_t i = 0; i < sizeof *m; i++)
    if (b[i]) {
      pthread_mutex_init(m, NULL);
      return;
    }
}

/* ---- lifecycle -------------------------------------------------------------- */

int
mp_process_start(mp_process *p)
{
  mp__errdetail_clear();
  if (!p)
    return MP_EINVAL;
  pthread_mutex_lock(&p->lock);
  int rc = mp__proc_check_owner(p, "start");
  if (rc == MP_ENOTOWNER)
    rc = mp_seterr(MP_ENOTOWNER, "can only start a process object created "
                                 "by the current process");
  if (!rc && p->state != MP__S_INITIAL)
    rc = mp_seterr(MP_ESTATE, "cannot start a process twice");
  int method = rc ? 0 : mp__proc_resolve_method(p);
  const mp__start_ops *ops = mp__contexts[method].ops;
  int thread = (ops->flags & MP__OPS_THREAD) != 0;
  if (!rc && !thread && mp_current_process()->daemon)
    rc = mp_seterr(MP_EPERM, "daemonic processes are not allowed to have "
                             "children");
  if (rc) {
    pthread_mutex_unlock(&p->lock);
    return rc;
  }
  mp__proc_cleanup_children();
  p->method = method;
  /* Registered before it exists (see fork.c); p->lock keeps others from
   * looking at it until it is started or given up. */
  p->state = MP__S_STARTED;
  mp__proc_reg_add(p);
  if (!thread) {
    /* Python's Popen does the same: output written before start is not
     * duplicated by, or printed after, the child's. */
    if (__fpending(stdout))
      fflush(stdout);
    if (__fpending(stderr))
      fflush(stderr);
  }
  rc = ops->start(p);
  mp_obj *args = NULL;
  if (rc) {
    mp__exit_slot_put(p);
    p->state = MP__S_INITIAL;
    atomic_store(&p->pid, 0);
  } else if (!thread) {
    /* As Python's start(): the child has its own copy of the args now (by
     * fork, or in flight with its instructions: the kernel holds their
     * descriptors), so this process's reference goes, and with it the
     * descriptors their handles hold (a Connection end the caller freed is
     * closed here).  A threading child drops them itself when it ends. */
    args = p->args;
    p->args = NULL;
  }
  pthread_mutex_unlock(&p->lock);
  mp_obj_free(args);
  if (rc) {
    mp__proc_reg_remove(p);
    return rc;
  }
  mp__proc_children_started();
  mp_log_debug("started %s %s", ops->name, p->name);
  return 0;
}

/* A fork child's sentinel of its parent (pid ppid), or -errno: a pidfd of
 * it, or, if it has ended already, mp__proc_ended_sentinel.  The pidfd is
 * of the parent only if the child still has that parent once it is open:
 * a parent that had ended (its pid perhaps reused) is no longer
 * getppid(). */
static int
parent_sentinel_open(pid_t ppid)
{
  int fd = mp__plat_pidfd_open(ppid);
  if (fd >= 0 && getppid() == ppid)
    return fd;
  if (fd >= 0)
    mp__close(fd);
  else if (fd != -ESRCH)
    return fd;
  return mp__proc_ended_sentinel();
}

/* Open p's sentinel now if it is a fork child's lazy one (p->lock held):
 * 0, or an error code with its detail set. */
static int
sentinel_resolve(mp_process *p)
{
  if (p->sentinel != MP__SENTINEL_LAZY)
    return 0;
  int fd = parent_sentinel_open(p->pid);
  if (fd < 0)
    return mp_seterr(fd, "cannot watch the parent process (pid %d)",
                     (int)p->pid);
  p->sentinel = fd;
  return 0;
}

static int
parent_alive(mp_process *p)
{
  if (p->sentinel == MP__SENTINEL_LAZY) /* no pidfd needed to tell */
    return getppid() == p->pid;
  if (p->sentinel < 0)
    return 1;
  struct pollfd pfd = {p->sentinel, POLLIN, 0};
  return poll(&pfd, 1, 0) == 0;
}

int
mp_process_join(mp_process *p, double timeout)
{
  mp__errdetail_clear();
  if (!p)
    return MP_EINVAL;
  mp__deadline dl;
  if (mp__deadline_set(timeout, &dl))
    return MP_EINVAL;
  pthread_mutex_lock(&p->lock);
  int rc = 0;
  if (p->closed)
    rc = mp_seterr(MP_ECLOSED, "process object is closed");
  else if (p == mp_current_process())
    rc = mp_seterr(MP_EDEADLK, "cannot join current process");
  else if (p->kind == MP__P_PARENT) {
    rc = sentinel_resolve(p);
    int fd = p->sentinel;
    pthread_mutex_unlock(&p->lock);
    if (rc)
      return rc;
    if (fd < 0)
      return mp_seterr(MP_ENOTSUP, "the parent's death cannot be observed");
    rc = mp__poll_fd(fd, POLLIN, dl);
    return rc < 0 ? rc : 0;
  } else if ((rc = mp__proc_check_owner(p, "join")) == 0 &&
             p->state == MP__S_INITIAL)
    rc = mp_seterr(MP_ESTATE, "can only join a started process");
  if (rc || p->state == MP__S_DONE) {
    pthread_mutex_unlock(&p->lock);
    if (!rc)
      mp__proc_reg_remove(p);
    return rc;
  }
  /* The sentinel first: it is ready once the child ended (a reap before
   * it would cost a system call for a child that runs). */
  int fd = p->sentinel;
  pthread_mutex_unlock(&p->lock);
  for (;;) {
    rc = mp__poll_fd(fd, POLLIN, dl);
    if (rc < 0)
      return rc;
    pthread_mutex_lock(&p->lock);
    int done = mp__proc_reap(p);
    pthread_mutex_unlock(&p->lock);
    if (done) {
      mp__proc_reg_remove(p);
      return 0;
    }
    /* The sentinel is ready only once the child ended; a zombie not yet
     * visible to waitpid is a matter of microseconds. */
    if (mp__deadline_passed(dl))
      return MP_ETIMEDOUT;
    sched_yield();
  }
}

int
mp_process_is_alive(mp_process *p)
{
  mp__errdetail_clear();
  if (!p)
    return MP_EINVAL;
  if (p == mp_current_process())
    return 1;
  pthread_mutex_lock(&p->lock);
  int rc;
  if (p->closed)
    rc = mp_seterr(MP_ECLOSED, "process object is closed");
  else if (p->kind == MP__P_PARENT)
    rc = parent_alive(p);
  else if ((rc = mp__proc_check_owner(p, "check")) == 0)
    rc = p->state == MP__S_STARTED && !mp__proc_reap(p);
  int done = p->kind == MP__P_CHILD && p->state == MP__S_DONE;
  pthread_mutex_unlock(&p->lock);
  if (done)
    mp__proc_reg_remove(p);
  return rc;
}

static int
send_signal(mp_process *p, int sig)
{
  if (!p)
    return MP_EINVAL;
  pthread_mutex_lock(&p->lock);
  int rc = mp__proc_check_owner(p, sig == SIGTERM ? "terminate" : "kill");
  const mp__start_ops *ops =
      mp__contexts[p->state == MP__S_INITIAL ? mp__proc_resolve_method(p)
                                             : p->method].ops;
  if (!rc && !ops->signal)
    rc = mp_seterr(MP_ENOTSUP, "a %s process cannot be %s", ops->name,
                   sig == SIGTERM ? "terminated" : "killed");
  if (!rc && p->state == MP__S_INITIAL)
    rc = mp_seterr(MP_ESTATE, "process not started");
  if (!rc && !mp__proc_reap(p))
    rc = ops->signal(p, sig);
  pthread_mutex_unlock(&p->lock);
  return rc;
}

int
mp_process_terminate(mp_process *p)
{
  mp__errdetail_clear();
  return send_signal(p, SIGTERM);
}

int
mp_process_kill(mp_process *p)
{
  mp__errdetail_clear();
  return send_signal(p, SIGKILL);
}

int
mp_process_close(mp_process *p)
{
  mp__errdetail_clear();
  if (!p)
    return MP_EINVAL;
  pthread_mutex_lock(&p->lock);
  int rc = 0;
  if (p->closed) {
    pthread_mutex_unlock(&p->lock);
    return 0;
  }
  if (p->kind != MP__P_CHILD)
    rc = mp_seterr(MP_ENOTOWNER, "cannot close the current or parent "
                                 "process");
  else if (p->state == MP__S_STARTED && !mp__proc_reap(p))
    rc = mp_seterr(MP_EBUSY, "cannot close a process while it is still "
                             "running; join or terminate it first");
  if (!rc) {
    close_fds(p);
    p->closed = 1;
  }
  pthread_mutex_unlock(&p->lock);
  if (!rc)
    mp__proc_reg_remove(p);
  return rc;
}

int
mp_process_pid(mp_process *p)
{
  mp__errdetail_clear();
  if (!p)
    return MP_EINVAL;
  for (;;) {
    pthread_mutex_lock(&p->lock);
    int closed = p->closed, kind = p->kind, method = p->method;
    int state = p->state;
    pthread_mutex_unlock(&p->lock);
    if (closed)
      return mp_seterr(MP_ECLOSED, "process object is closed");
    int thread = (mp__contexts[method].ops->flags & MP__OPS_THREAD) != 0;
    if (kind == MP__P_CURRENT && !thread)
      return (int)mp__getpid();
    int pid = atomic_load(&p->pid);
    if (pid || !thread || state == MP__S_INITIAL)
      return pid;
    sched_yield(); /* the new thread is publishing its id */
  }
}

int
mp_process_exitcode(mp_process *p, int *code)
{
  mp__errdetail_clear();
  if (!p || !code)
    return MP_EINVAL;
  pthread_mutex_lock(&p->lock);
  int rc = mp__proc_check_owner(p, "get the exit code of");
  int done = 0;
  if (!rc && !(done = mp__proc_reap(p)))
    rc = mp_seterr(MP_ESTATE, p->state == MP__S_INITIAL
                                  ? "process not started"
                                  : "process still running");
  if (!rc && p->exit_unknown)
    rc = mp_seterr(MP_ECHILD, "the exit status of process %d is lost: %s",
                   (int)p->pid, mp__proc_ops(p)->lost_why);
  if (!rc)
    *code = p->exitcode;
  pthread_mutex_unlock(&p->lock);
  if (done)
    mp__proc_reg_remove(p);
  return rc;
}

const char *
mp_process_name(mp_process *p)
{
  return p ? p->name : NULL;
}

int
mp_process_set_name(mp_process *p, const char *name)
{
  mp__errdetail_clear();
  if (!p || !name)
    return MP_EINVAL;
  if (p->kind == MP__P_PARENT)
    return mp_seterr(MP_ENOTOWNER, "cannot rename the parent process");
  char *n = strdup(name);
  if (!n)
    return MP_ENOMEM;
  pthread_mutex_lock(&p->lock);
  char *old = p->name;
  p->name = n;
  pthread_mutex_unlock(&p->lock);
  /* Readers may hold the old pointer (documented as borrowed until set):
   * keep the contract simple by freeing it. */
  free(old);
  if (p == mp_current_process() && !mp__thread_current())
    mp__log_set_process_name(n);
  return 0;
}

int
mp_process_daemon(mp_process *p)
{
  mp__errdetail_clear();
  return p ? p->daemon : MP_EINVAL;
}

int
mp_process_set_daemon(mp_process *p, int daemon)
{
  mp__errdetail_clear();
  if (!p)
    return MP_EINVAL;
  pthread_mutex_lock(&p->lock);
  int rc = 0;
  if (p->closed)
    rc = mp_seterr(MP_ECLOSED, "process object is closed");
  else if (p->kind != MP__P_CHILD || p->state != MP__S_INITIAL)
    rc = mp_seterr(MP_ESTATE, "process has already started");
  else
    p->daemon = daemon != 0;
  pthread_mutex_unlock(&p->lock);
  return rc;
}

int
mp_process_sentinel(mp_process *p)
{
  mp__errdetail_clear();
  if (!p)
    return MP_EINVAL;
  pthread_mutex_lock(&p->lock);
  int rc;
  if (p->closed)
    rc = mp_seterr(MP_ECLOSED, "process object is closed");
  else if ((rc = sentinel_resolve(p)) != 0)
    ; /* could not open it */
  else if (p->sentinel < 0)
    rc = mp_seterr(MP_ESTATE, "process not started");
  else
    rc = p->sentinel;
  pthread_mutex_unlock(&p->lock);
  return rc;
}

int
mp_process_authkey(mp_process *p, const uint8_t **key, size_t *len)
{
  mp__errdetail_clear();
  if (!p || !key || !len)
    return MP_EINVAL;
  if (p->closed)
    return mp_seterr(MP_ECLOSED, "process object is closed");
  pthread_mutex_lock(&p->lock);
  *key = p->authkey;
  *len = p->authkey_len;
  pthread_mutex_unlock(&p->lock);
  return 0;
}

int
mp_process_set_authkey(mp_process *p, const void *key, size_t len)
{
  mp__errdetail_clear();
  if (!p || !key || len == 0 || len > 4096)
    return mp_seterr(MP_EINVAL, "authkey must be 1 to 4096 bytes");
  uint8_t *k = malloc(len);
  if (!k)
    return MP_ENOMEM;
  memcpy(k, key, len);
  pthread_mutex_lock(&p->lock);
  int rc = 0;
  if (p->closed)
    rc = mp_seterr(MP_ECLOSED, "process object is closed");
  else if (p->kind == MP__P_PARENT ||
           (p->kind == MP__P_CHILD && p->state != MP__S_INITIAL))
    rc = mp_seterr(MP_ESTATE, "authkey can only be set before start");
  if (!rc) {
    uint8_t *old = p->authkey;
    size_t oldlen = p->authkey_len;
    p->authkey = k;
    p->authkey_len = len;
    k = old;
    len = oldlen;
  }
  pthread_mutex_unlock(&p->lock);
  if (k)
    memset(k, 0, len);
  free(k);
  return rc;
}

mp_context *
mp_process_context(mp_process *p)
{
  if (!p)
    return NULL;
  pthread_mutex_lock(&p->lock);
  mp_context *c = p->ctx;
  /* Of the default context: once started, the context of the method that
   * started it -- in the parent and in the child itself. */
  if (!c && p->state != MP__S_INITIAL && p->kind != MP__P_PARENT &&
      !(p->kind == MP__P_CURRENT && p->creator_pid == 0))
    c = &mp__contexts[p->method];
  pthread_mutex_unlock(&p->lock);
  return c;
}

int
mp_process_repr(mp_process *p, char *buf, size_t cap)
{
  mp__errdetail_clear();
  if (!p)
    return MP_EINVAL;
  const char *status;
  int show_exit = 0, code = 0;
  pthread_mutex_lock(&p->lock);
  if (p == mp_current_process())
    status = "started";
  else if (p->closed)
    status = "closed";
  else if (p->kind != MP__P_CHILD || p->creator_pid != (pid_t)mp__getpid())
    status = "unknown";
  else if (p->state == MP__S_INITIAL)
    status = "initial";
  else if (mp__proc_reap(p)) {
    status = "stopped";
    show_exit = !p->exit_unknown;
    code = p->exitcode;
  } else
    status = "started";
  const char *cls = p->kind == MP__P_CURRENT && p->creator_pid == 0
                        ? "_MainProcess"
                        : p->kind == MP__P_PARENT ? "_ParentProcess"
                        : p->ctx ? p->ctx->ops->cls : "Process";
  char pidpart[32] = "", exitpart[48] = "";
  int pid = atomic_load(&p->pid);
  if (pid > 0 && !(p->kind == MP__P_CURRENT && p->creator_pid == 0))
    snprintf(pidpart, sizeof pidpart, " pid=%d", pid);
  if (show_exit) {
    const char *sig = code < 0 ? sigabbrev_np(-code) : NULL;
    if (sig)
      snprintf(exitpart, sizeof exitpart, " exitcode=-SIG%s", sig);
    else
      snprintf(exitpart, sizeof exitpart, " exitcode=%d", code);
  }
  char parentpart[32] = "";
  if (p->kind == MP__P_CHILD)
    snprintf(parentpart, sizeof parentpart, " parent=%d", (int)p->creator_pid);
  int n = snprintf(buf, cap, "<%s name='%s'%s%s %s%s%s>", cls, p->name,
                   pidpart, parentpart, status, exitpart,
                   p->daemon ? " daemon" : "");
  pthread_mutex_unlock(&p->lock);
  return n;
}

/* ---- children: the common bootstrap ------------------------------------ */

static void *
parent_watch(void *arg)
{
  struct pollfd pfd = {(int)(intptr_t)arg, POLLIN, 0};
  while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
    ;
  kill(getpid(), SIGKILL);
  return NULL;
}

void
mp__proc_child_main(mp_process *self, pid_t parent_pid,
                    const char *parent_name, int parent_sentinel,
                    int pdeath, pid_t pdeath_ppid)
{
  /* Static storage and borrowed strings: a forked child should touch (and
   * so copy) as few pages as it can. */
  static mp_process parent_storage MP__FORK_DATA;
  mp_process *par = &parent_storage;
  pthread_mutex_init(&par->lock, NULL);
  atomic_init(&par->refs, 1 << 20);
  par->kind = MP__P_PARENT;
  par->name = (char *)(parent_name ? parent_name : "");
  par->identity = (char *)"";
  par->pid = parent_pid;
  par->pidfd = par->status_fd = par->thread_wfd = -1;
  par->sentinel = parent_sentinel;
  par->state = MP__S_STARTED;
  g_parent = par;
  pthread_mutex_init(&self->lock, NULL);
  self->kind = MP__P_CURRENT;
  self->state = MP__S_STARTED;
  self->pid = (pid_t)mp__getpid();
  self->pidfd = self->sentinel = self->status_fd = -1;
  self->registered = 0;
  self->reg_prev = self->reg_next = NULL;
  atomic_store(&self->refs, 1 << 20);
  atomic_store(&self->nchildren, 0);
  g_current = self;
  /* Settle the once-flag without making a main-process object (that would
   * cost a random authkey per child). */
  pthread_once(&main_once, init_main);
  mp__log_set_process_name(self->name);
  if (self->daemon && pdeath != MP__PDEATH_ARMED) {
    /* Die with the parent.  PR_SET_PDEATHSIG fires when the parent *thread*
     * that made us exits, so it serves only children made by a main thread;
     * others watch the parent's pidfd from a thread of their own. */
    int rc = pdeath == MP__PDEATH_SIGNAL
                 ? mp__plat_set_pdeathsig(SIGKILL, pdeath_ppid)
                 : -ENOSYS;
    if (rc == -ESRCH)
      _exit(255 & -SIGKILL);
    if (rc && parent_sentinel == MP__SENTINEL_LAZY) {
      parent_sentinel = parent_sentinel_open(parent_pid);
      if (parent_sentinel >= 0)
        par->sentinel = parent_sentinel;
    }
    if (rc && parent_sentinel >= 0) {
      pthread_t t;
      pthread_attr_t a;
      pthread_attr_init(&a);
      pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
      pthread_attr_setstacksize(&a, 64 * 1024);
      /* it touches no value: the child stays "one thread" for them */
      mp__thread_start_valueless(&t, &a, parent_watch,
                                 (void *)(intptr_t)parent_sentinel);
      pthread_attr_destroy(&a);
    }
  }
  mp_log_info("child process calling self.run()");
  int code = 0;
  if (self->target)
    code = self->target(self->args);
  mp__proc_ops(self)->child_exit(self, code);
}

void
mp__proc_child_exit(mp_process *self, int code)
{
  /* Python's util._exit_function: the finalizers of priority >= 0, the
   * children (joined; daemons terminated), then the rest (the forkserver,
   * the tracker link ...). */
  mp__lifecycle_shutdown();
  mp_log_info("process exiting with exitcode %d", code); /* as CPython's */
  if (__fpending(stdout))
    fflush(stdout);
  if (__fpending(stderr))
    fflush(stderr);
  mp__exit_report(self, code);
  mp__plat_exit_now(code);
}

void
mp_exit(int code)
{
  mp_process *t = mp__thread_current();
  if (t)
    mp__proc_ops(t)->child_exit(t, code);
  pthread_once(&main_once, init_main);
  if (g_parent)
    mp__proc_ops(g_current)->child_exit(g_current, code);
  exit(code);
}

int
mp_main(int argc, char **argv)
{
  mp__errdetail_clear();
  (void)argc;
  (void)argv;
  return 0; /* children are taken over before main (boot.c) */
}

/* ---- cpu count and handle types ---------------------------------------- */

int
mp_cpu_count(void)
{
  mp__errdetail_clear();
  int n = mp__plat_cpu_count();
  return n > 0 ? n : mp_seterr(MP_ENOTSUP, "cannot determine number of cpus");
}

int
mp_cpu_count_usable(void)
{
  mp__errdetail_clear();
  int n = mp__plat_cpu_usable();
  return n > 0 ? n : mp_seterr(MP_ENOTSUP, "cannot determine number of cpus");
}
