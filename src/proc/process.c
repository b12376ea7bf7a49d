/* Process objects, contexts and the fork and threading start methods; the
 * registry of children, reaping, exit handling, current/parent process.
 * spawn lives in boot.c, forkserver in forkserver.c. */
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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "core/fd.h"
#include "platform/platform.h"
#include "proc/proc_internal.h"

mp_context mp__contexts[MP__M_COUNT] = {
    {MP__M_FORK, "fork", "ForkProcess"},
    {MP__M_SPAWN, "spawn", "SpawnProcess"},
    {MP__M_FORKSERVER, "forkserver", "ForkServerProcess"},
    {MP__M_THREADING, "threading", "ThreadProcess"},
};
static mp_context default_context = {-1, NULL, "Process"};
static const char *const all_methods[] = {"fork", "spawn", "forkserver",
                                          "threading", NULL};

/* ---- global state (reset in fork children: see after_fork_child) -------- */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; /* the registry */
static mp_process *reg_first;
static int g_default_method = -1; /* unfixed */
static pthread_mutex_t method_lock = PTHREAD_MUTEX_INITIALIZER;
static mp_process *g_current;     /* this OS process */
static mp_process *g_parent;      /* NULL in the main process */
static _Thread_local mp_process *tls_current; /* threading children */
static _Thread_local jmp_buf *tls_exit_jmp;
static _Thread_local int tls_exit_code;
static _Thread_local mp_context *tls_spawning;
static pthread_once_t main_once = PTHREAD_ONCE_INIT;

static void exit_function(void);

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
  if (RAND_bytes(m->authkey, 32) != 1) {
    FILE *f = fopen("/dev/urandom", "re");
    if (!f || fread(m->authkey, 1, 32, f) != 32)
      abort();
    fclose(f);
  }
  m->state = MP__S_STARTED;
  m->pid = getpid();
  m->creator_pid = 0;
  g_current = m;
}

mp_process *
mp_current_process(void)
{
  if (tls_current)
    return tls_current;
  pthread_once(&main_once, init_main);
  return g_current;
}

mp_process *
mp_parent_process(void)
{
  if (tls_current)
    return tls_current->creator;
  pthread_once(&main_once, init_main);
  return g_parent;
}

int
mp__proc_on_main_thread(void)
{
  return mp__plat_gettid() == getpid();
}

int
mp__proc_self_pidfd(void)
{
  /* A new descriptor each time (the caller closes it): a cached one would
   * sit open for the life of the program. */
  return mp__plat_pidfd_open(getpid());
}

/* ---- contexts --------------------------------------------------------- */

static int
method_index(const char *name)
{
  for (int i = 0; i < MP__M_COUNT; i++)
    if (strcmp(name, mp__contexts[i].name) == 0)
      return i;
  return -1;
}

int
mp_get_context(const char *method, mp_context **out)
{
  if (!out)
    return MP_EINVAL;
  if (!method) {
    *out = &default_context;
    return 0;
  }
  int i = method_index(method);
  if (i < 0)
    return mp_seterr(MP_EINVAL, "cannot find context for '%s'", method);
  *out = &mp__contexts[i];
  return 0;
}

int
mp__proc_default_method(void)
{
  pthread_mutex_lock(&method_lock);
  if (g_default_method < 0)
    g_default_method = MP__M_FORK;
  int m = g_default_method;
  pthread_mutex_unlock(&method_lock);
  return m;
}

int
mp__proc_default_method_now(void)
{
  pthread_mutex_lock(&method_lock);
  int m = g_default_method;
  pthread_mutex_unlock(&method_lock);
  return m;
}

void
mp__proc_set_default_method(int method)
{
  pthread_mutex_lock(&method_lock);
  g_default_method = method >= 0 && method < MP__M_COUNT ? method : -1;
  pthread_mutex_unlock(&method_lock);
}

const char *
mp_context_method(const mp_context *ctx)
{
  if (!ctx || ctx->method < 0)
    return mp__contexts[mp__proc_default_method()].name;
  return ctx->name;
}

int
mp_set_start_method(const char *method, int force)
{
  int i = -1;
  if (method && (i = method_index(method)) < 0)
    return mp_seterr(MP_EINVAL, "cannot find context for '%s'", method);
  pthread_mutex_lock(&method_lock);
  int rc = 0;
  if (g_default_method >= 0 && !force)
    rc = mp_seterr(MP_ESTATE, "context has already been set");
  else if (method || force)
    g_default_method = i;
  pthread_mutex_unlock(&method_lock);
  return rc;
}

const char *
mp_get_start_method(int allow_none)
{
  pthread_mutex_lock(&method_lock);
  int m = g_default_method;
  pthread_mutex_unlock(&method_lock);
  if (m < 0) {
    if (allow_none)
      return NULL;
    m = mp__proc_default_method();
  }
  return mp__contexts[m].name;
}

const char *const *
mp_get_all_start_methods(void)
{
  return all_methods;
}

mp_context *
mp_spawning_context(void)
{
  return tls_spawning;
}

/* ---- process objects ---------------------------------------------------- */

int
mp_process_new(mp_process **out, mp_context *ctx, const mp_process_opts *opts)
{
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
  if (ctx && ctx != &default_context && (ctx < mp__contexts ||
                                         ctx >= mp__contexts + MP__M_COUNT))
    return mp_seterr(MP_EINVAL, "not a context of mp_get_context");
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
  p->creator_pid = getpid();
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

/* ---- the registry ------------------------------------------------------- */

static void
reg_add(mp_process *p)
{
  pthread_mutex_lock(&g_lock);
  mp_process_ref(p);
  p->reg_prev = NULL;
  p->reg_next = reg_first;
  if (reg_first)
    reg_first->reg_prev = p;
  __atomic_store_n(&reg_first, p, __ATOMIC_RELEASE);
  p->registered = 1;
  pthread_mutex_unlock(&g_lock);
}

static void
reg_remove(mp_process *p)
{
  pthread_mutex_lock(&g_lock);
  int was = p->registered;
  if (was) {
    if (p->reg_prev)
      p->reg_prev->reg_next = p->reg_next;
    else
      __atomic_store_n(&reg_first, p->reg_next, __ATOMIC_RELEASE);
    if (p->reg_next)
      p->reg_next->reg_prev = p->reg_prev;
    p->reg_prev = p->reg_next = NULL;
    p->registered = 0;
  }
  pthread_mutex_unlock(&g_lock);
  if (was)
    mp_process_free(p);
}

/* References to every registered child (the caller frees them). */
static int
reg_snapshot(mp_process ***out, size_t *n)
{
  pthread_mutex_lock(&g_lock);
  size_t count = 0;
  for (mp_process *q = reg_first; q; q = q->reg_next)
    count++;
  mp_process **list = malloc((count ? count : 1) * sizeof *list);
  if (!list) {
    pthread_mutex_unlock(&g_lock);
    return MP_ENOMEM;
  }
  size_t i = 0;
  for (mp_process *q = reg_first; q; q = q->reg_next)
    list[i++] = mp_process_ref(q);
  pthread_mutex_unlock(&g_lock);
  *out = list;
  *n = count;
  return 0;
}

/* ---- reaping -------------------------------------------------------------
 * reap_locked: with p->lock held and p started; returns 1 (and sets DONE)
 * if the child has ended, without blocking. */

static int
status_to_code(int st)
{
  if (WIFEXITED(st))
    return WEXITSTATUS(st);
  return -WTERMSIG(st); /* WIFSIGNALED: nothing else is waited for */
}

static atomic_int ignore_pidfd_exit;

void
mp__proc_test_ignore_pidfd_exit(int on)
{
  atomic_store(&ignore_pidfd_exit, on);
}

/* The status of a child that waitpid cannot give (someone else reaped it:
 * SIGCHLD ignored, SA_NOCLDWAIT, a waitpid(-1) of the program's; or a
 * forkserver child whose server is gone): 1 and *st, 0 while it has not
 * ended, -1 if it ended and nobody can tell how. */
static int
lost_status(mp_process *p, int *st)
{
  if (p->pidfd >= 0) {
    struct pollfd pfd = {p->pidfd, POLLIN, 0};
    if (poll(&pfd, 1, 0) <= 0)
      return 0;
    /* The kernel keeps the status for pidfds once the process is released
     * (Linux 6.15).  Not released yet: a child of ours that waitpid no
     * longer finds is being reaped by someone, a matter of microseconds;
     * an orphaned forkserver child may wait for its reaper indefinitely,
     * so it is not waited for. */
    int rc = atomic_load(&ignore_pidfd_exit)
                 ? -ENOSYS
                 : mp__plat_pidfd_exit_status(p->pidfd, st);
    if (rc == 1 || (rc == 0 && p->method != MP__M_FORKSERVER))
      return rc;
  } /* else it had ended before a pidfd could be opened (fork_start) */
  int code;
  if (mp__exit_slot_read(p, &code)) {
    *st = W_EXITCODE(code, 0);
    return 1;
  }
  return -1;
}

/* The forkserver died before it reported the exit of p's child (it was
 * killed, or stopped with children running): the child is an orphan now
 * and may still run.  Its pidfd takes over as the sentinel, under the same
 * number, so a descriptor already handed out stays good. */
static void
forkserver_lost(mp_process *p)
{
  mp_log_debug("the forkserver is gone: watching process %d itself",
               (int)p->pid);
  if (p->pidfd >= 0 && dup3(p->pidfd, p->status_fd, O_CLOEXEC) >= 0) {
    p->status_fd = -1;
    return;
  }
  mp__close(p->pidfd); /* nothing to watch it with */
  p->pidfd = -1;
  p->status_fd = -1;
}

static int
reap_locked(mp_process *p)
{
  if (p->state == MP__S_DONE)
    return 1;
  if (p->state != MP__S_STARTED)
    return 0;
  int st, known = 1;
  switch (p->method) {
  case MP__M_THREADING:
    if (!atomic_load_explicit(&p->thread_done, memory_order_acquire))
      return 0;
    pthread_join(p->thread, NULL);
    break;
  case MP__M_FORKSERVER:
    if (p->status_fd >= 0) {
      struct pollfd pfd = {p->status_fd, POLLIN, 0};
      if (poll(&pfd, 1, 0) <= 0)
        return 0;
      int32_t code;
      if (mp__read_full(p->status_fd, &code, sizeof code, NULL) == 0) {
        p->exitcode = code;
        break;
      }
      forkserver_lost(p);
    }
    if ((known = lost_status(p, &st)) == 0)
      return 0;
    if (known > 0)
      p->exitcode = status_to_code(st);
    break;
  default: {
    pid_t r = p->pidfd >= 0 ? mp__plat_pidfd_reap(p->pidfd, p->pid, &st)
                            : -ECHILD;
    if (r == 0)
      return 0;
    if (r < 0) {
      if ((known = lost_status(p, &st)) == 0)
        return 0;
      mp_log_debug("process %d was reaped by someone else", (int)p->pid);
    }
    if (known > 0)
      p->exitcode = status_to_code(st);
    break;
  }
  }
  p->exit_unknown = known < 0;
  mp__exit_slot_put(p);
  p->state = MP__S_DONE;
  if (p->exit_unknown)
    mp_log_debug("process %s (pid %d) ended; its exit status is lost",
                 p->name, (int)p->pid);
  else
    mp_log_debug("process %s (pid %d) ended with exit code %d", p->name,
                 (int)p->pid, p->exitcode);
  return 1;
}

/* Reap every finished child (Python's _cleanup). */
static void
cleanup_children(void)
{
  mp_process **list;
  size_t n;
  if (reg_snapshot(&list, &n) != 0)
    return;
  for (size_t i = 0; i < n; i++) {
    mp_process *q = list[i];
    pthread_mutex_lock(&q->lock);
    int done = reap_locked(q);
    pthread_mutex_unlock(&q->lock);
    if (done)
      reg_remove(q);
  }
  mp_process_list_free(list, n);
}

int
mp_active_children(mp_process ***out, size_t *n)
{
  if (!out || !n)
    return MP_EINVAL;
  cleanup_children();
  int rc = reg_snapshot(out, n);
  if (rc)
    return rc;
  /* Drop those that ended between the cleanup and the snapshot. */
  size_t k = 0;
  for (size_t i = 0; i < *n; i++) {
    mp_process *q = (*out)[i];
    pthread_mutex_lock(&q->lock);
    int done = reap_locked(q);
    pthread_mutex_unlock(&q->lock);
    if (done) {
      reg_remove(q);
      mp_process_free(q);
    } else {
      (*out)[k++] = q;
    }
  }
  *n = k;
  return 0;
}

/* ---- checks shared by the methods --------------------------------------- */

static int
resolve_method(mp_process *p)
{
  return p->ctx ? p->ctx->method : mp__proc_default_method();
}

/* Checks for operations only the creator may do; p->lock held. */
static int
check_owner(mp_process *p, const char *what)
{
  if (p->closed)
    return mp_seterr(MP_ECLOSED, "process object is closed");
  if (p->kind != MP__P_CHILD || p->creator_pid != getpid())
    return mp_seterr(MP_ENOTOWNER, "can only %s a child process", what);
  return 0;
}

/* ---- fork ---------------------------------------------------------------- */

static void
after_fork_child(mp_process *self)
{
  /* Only this thread exists now: every lock another thread held is
   * re-made, and the parent's children are not ours.  (Each write here
   * copies a page: only what is not already as it should be.) */
  mp__mutex_reset(&g_lock);
  mp__mutex_reset(&method_lock);
  if (reg_first)
    reg_first = NULL;
  if (tls_current)
    tls_current = NULL;
  if (tls_spawning)
    tls_spawning = NULL;
  mp__forkserver_after_fork_child();
  mp__exit_after_fork_child();
  (void)self;
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

/* Resolve, in the parent, the lazily bound functions a fork child calls, so
 * that every child does not look them up again (and copy the GOT page). */
static void
prebind_nothing(void)
{
}

static void
prebind_once(void)
{
  char buf[16];
  static char src[16];
  volatile size_t n = sizeof buf; /* real calls, not inlined builtins */
  pthread_mutex_t m;
  pthread_once_t once = PTHREAD_ONCE_INIT;
  snprintf(buf, sizeof buf, "%s", "");
  memset(buf, 0, n);
  memcpy(buf, src, n);
  static volatile int sink __attribute__((unused));
  sink = memcmp(buf, src, n);
  pthread_mutex_init(&m, NULL);
  pthread_mutex_destroy(&m);
  pthread_once(&once, prebind_nothing);
  (void)__fpending(stdout);
  (void)getppid();
  (void)getpid();
  mp__log_set_process_name(mp__log_process_name());
}

void
mp__proc_prebind(void)
{
  static pthread_once_t prebound = PTHREAD_ONCE_INIT;
  pthread_once(&prebound, prebind_once);
}

static int
has_handles(const mp_obj *o)
{
  const mp_handle_type *t;
  size_t n = 0;
  return mp__proc_collect_handle_types(o, &t, 1, &n) != 0 || n > 0;
}

static int
fork_start(mp_process *p)
{
  /* Values holding handles are encoded once so that a handle that cannot
   * serve a fork child says so now (see mp_spawning_context). */
  if (has_handles(p->args)) {
    void *data;
    size_t len, nfds;
    int *fds;
    tls_spawning = &mp__contexts[MP__M_FORK];
    int rc = mp_pickle_dumps_fds(p->args, NULL, &data, &len, &fds, &nfds);
    tls_spawning = NULL;
    if (rc)
      return rc;
    mp_free(data);
    mp_free(fds);
  }
  mp__proc_prebind();
  int rc = mp__exit_slot_get(p, MP__XT_FORK);
  if (rc)
    return rc;
  int parent_sentinel = mp__proc_self_pidfd();
  if (parent_sentinel < 0)
    return parent_sentinel;
  mp_process *cur = mp_current_process();
  int main_thread = mp__proc_on_main_thread();
  pid_t ppid = getpid();
  /* Every page either side writes while the child lives costs a
   * copy-on-write fault: the bookkeeping is done before fork, and the
   * parent's name is read, not copied, by the child. */
  pid_t pid = fork();
  if (pid == 0) {
    after_fork_child(p);
    /* The inherited self-pidfd refers to the parent: it becomes the
     * parent's sentinel here. */
    mp__proc_child_main(p, ppid, cur->name, parent_sentinel, main_thread,
                        ppid);
  }
  int err = errno;
  /* At once: with SIGCHLD ignored a child that ends takes its pid along. */
  int pidfd = pid > 0 ? mp__plat_pidfd_open(pid) : -1;
  mp__close(parent_sentinel);
  if (pid < 0)
    return -err;
  if (pidfd == -ESRCH) {
    /* It ran, ended and was reaped by someone else already.  Its sentinel
     * is a pipe at end of file; reap_locked reads its exit word. */
    int fds[2];
    if ((rc = mp__pipe(fds)) != 0)
      return rc;
    mp__close(fds[1]);
    p->pid = pid;
    p->sentinel = fds[0];
    return 0;
  }
  if (pidfd < 0) {
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
    return pidfd;
  }
  p->pid = pid;
  p->pidfd = p->sentinel = pidfd;
  return 0;
}

/* ---- threading ------------------------------------------------------------- */

static void *
thread_main(void *arg)
{
  mp_process *p = arg;
  atomic_store(&p->pid, mp__plat_gettid());
  tls_current = p;
  jmp_buf jb;
  int code;
  tls_exit_jmp = &jb;
  if (setjmp(jb) == 0)
    code = p->target ? p->target(p->args) : 0;
  else
    code = tls_exit_code;
  tls_exit_jmp = NULL;
  tls_current = NULL;
  /* The args are no longer needed: drop them (and the descriptors their
   * handles hold) before the thread is seen to end. */
  pthread_mutex_lock(&p->lock);
  mp_obj *args = p->args;
  p->args = NULL;
  pthread_mutex_unlock(&p->lock);
  mp_obj_free(args);
  p->exitcode = code;
  atomic_store_explicit(&p->thread_done, 1, memory_order_release);
  int wfd = p->thread_wfd;
  p->thread_wfd = -1;
  mp__close(wfd); /* wakes the sentinel */
  mp_process_free(p);
  return NULL;
}

static int
thread_start(mp_process *p)
{
  int fds[2];
  int rc = mp__pipe(fds);
  if (rc)
    return rc;
  p->sentinel = fds[0];
  p->thread_wfd = fds[1];
  mp_process_ref(p);
  rc = -pthread_create(&p->thread, NULL, thread_main, p);
  if (rc) {
    mp_process_free(p);
    mp__close(fds[0]);
    mp__close(fds[1]);
    p->sentinel = p->thread_wfd = -1;
    return rc;
  }
  return 0;
}

/* ---- lifecycle -------------------------------------------------------------- */

int
mp_process_start(mp_process *p)
{
  if (!p)
    return MP_EINVAL;
  pthread_mutex_lock(&p->lock);
  int rc = check_owner(p, "start");
  if (rc == MP_ENOTOWNER)
    rc = mp_seterr(MP_ENOTOWNER, "can only start a process object created "
                                 "by the current process");
  if (!rc && p->state != MP__S_INITIAL)
    rc = mp_seterr(MP_ESTATE, "cannot start a process twice");
  int method = rc ? 0 : resolve_method(p);
  if (!rc && method != MP__M_THREADING && mp_current_process()->daemon)
    rc = mp_seterr(MP_EPERM, "daemonic processes are not allowed to have "
                             "children");
  if (rc) {
    pthread_mutex_unlock(&p->lock);
    return rc;
  }
  cleanup_children();
  p->method = method;
  /* Registered before it exists (see fork_start); p->lock keeps others
   * from looking at it until it is started or given up. */
  p->state = MP__S_STARTED;
  reg_add(p);
  if (method != MP__M_THREADING) {
    /* Python's Popen does the same: output written before start is not
     * duplicated by, or printed after, the child's. */
    if (__fpending(stdout))
      fflush(stdout);
    if (__fpending(stderr))
      fflush(stderr);
  }
  switch (method) {
  case MP__M_FORK:
    rc = fork_start(p);
    break;
  case MP__M_SPAWN:
    rc = mp__spawn_start(p);
    break;
  case MP__M_FORKSERVER:
    rc = mp__forkserver_start(p);
    break;
  default:
    rc = thread_start(p);
    break;
  }
  mp_obj *args = NULL;
  if (rc) {
    mp__exit_slot_put(p);
    p->state = MP__S_INITIAL;
    atomic_store(&p->pid, 0);
  } else if (method != MP__M_THREADING) {
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
  if (rc)
    reg_remove(p);
  if (rc == 0) {
    static atomic_int registered;
    if (!atomic_load(&registered) && !atomic_exchange(&registered, 1))
      atexit(exit_function);
    mp_log_info("started %s %s", mp__contexts[method].name, p->name);
  }
  return rc;
}

static int
parent_alive(mp_process *p)
{
  if (p->sentinel < 0)
    return 1;
  struct pollfd pfd = {p->sentinel, POLLIN, 0};
  return poll(&pfd, 1, 0) == 0;
}

int
mp_process_join(mp_process *p, double timeout)
{
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
    int fd = p->sentinel;
    pthread_mutex_unlock(&p->lock);
    if (fd < 0)
      return mp_seterr(MP_ENOTSUP, "the parent's death cannot be observed");
    rc = mp__poll_fd(fd, POLLIN, dl);
    return rc < 0 ? rc : 0;
  } else if ((rc = check_owner(p, "join")) == 0 && p->state == MP__S_INITIAL)
    rc = mp_seterr(MP_ESTATE, "can only join a started process");
  if (rc || reap_locked(p)) {
    pthread_mutex_unlock(&p->lock);
    if (!rc)
      reg_remove(p);
    return rc;
  }
  int fd = p->sentinel;
  pthread_mutex_unlock(&p->lock);
  for (;;) {
    rc = mp__poll_fd(fd, POLLIN, dl);
    if (rc < 0)
      return rc;
    pthread_mutex_lock(&p->lock);
    int done = reap_locked(p);
    pthread_mutex_unlock(&p->lock);
    if (done) {
      reg_remove(p);
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
  else if ((rc = check_owner(p, "check")) == 0)
    rc = p->state == MP__S_STARTED && !reap_locked(p);
  int done = p->kind == MP__P_CHILD && p->state == MP__S_DONE;
  pthread_mutex_unlock(&p->lock);
  if (done)
    reg_remove(p);
  return rc;
}

static int
send_signal(mp_process *p, int sig)
{
  if (!p)
    return MP_EINVAL;
  pthread_mutex_lock(&p->lock);
  int rc = check_owner(p, sig == SIGTERM ? "terminate" : "kill");
  int method = p->state == MP__S_INITIAL ? resolve_method(p) : p->method;
  if (!rc && method == MP__M_THREADING)
    rc = mp_seterr(MP_ENOTSUP, "a threading process cannot be %s",
                   sig == SIGTERM ? "terminated" : "killed");
  if (!rc && p->state == MP__S_INITIAL)
    rc = mp_seterr(MP_ESTATE, "process not started");
  if (!rc && !reap_locked(p)) {
    rc = mp__plat_pidfd_signal(p->pidfd, sig);
    if (rc == -ESRCH)
      rc = 0; /* it ended meanwhile */
  }
  pthread_mutex_unlock(&p->lock);
  return rc;
}

int
mp_process_terminate(mp_process *p)
{
  return send_signal(p, SIGTERM);
}

int
mp_process_kill(mp_process *p)
{
  return send_signal(p, SIGKILL);
}

int
mp_process_close(mp_process *p)
{
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
  else if (p->state == MP__S_STARTED && !reap_locked(p))
    rc = mp_seterr(MP_EBUSY, "cannot close a process while it is still "
                             "running; join or terminate it first");
  if (!rc) {
    close_fds(p);
    p->closed = 1;
  }
  pthread_mutex_unlock(&p->lock);
  if (!rc)
    reg_remove(p);
  return rc;
}

int
mp_process_pid(mp_process *p)
{
  if (!p)
    return MP_EINVAL;
  for (;;) {
    pthread_mutex_lock(&p->lock);
    int closed = p->closed, kind = p->kind, method = p->method;
    int state = p->state;
    pthread_mutex_unlock(&p->lock);
    if (closed)
      return mp_seterr(MP_ECLOSED, "process object is closed");
    if (kind == MP__P_CURRENT && method != MP__M_THREADING)
      return getpid();
    int pid = atomic_load(&p->pid);
    if (pid || method != MP__M_THREADING || state == MP__S_INITIAL)
      return pid;
    sched_yield(); /* the new thread is publishing its id */
  }
}

int
mp_process_exitcode(mp_process *p, int *code)
{
  if (!p || !code)
    return MP_EINVAL;
  pthread_mutex_lock(&p->lock);
  int rc = check_owner(p, "get the exit code of");
  int done = 0;
  if (!rc && !(done = reap_locked(p)))
    rc = mp_seterr(MP_ESTATE, p->state == MP__S_INITIAL
                                  ? "process not started"
                                  : "process still running");
  if (!rc && p->exit_unknown)
    rc = mp_seterr(MP_ECHILD, p->method == MP__M_FORKSERVER
                                  ? "the forkserver died before process %d "
                                    "ended: its exit status is lost"
                                  : "the exit status of process %d was "
                                    "taken by someone else (SIGCHLD ignored "
                                    "or reaped elsewhere)",
                   (int)p->pid);
  if (!rc)
    *code = p->exitcode;
  pthread_mutex_unlock(&p->lock);
  if (done)
    reg_remove(p);
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
  if (p == mp_current_process() && !tls_current)
    mp__log_set_process_name(n);
  return 0;
}

int
mp_process_daemon(mp_process *p)
{
  return p ? p->daemon : MP_EINVAL;
}

int
mp_process_set_daemon(mp_process *p, int daemon)
{
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
  if (!p)
    return MP_EINVAL;
  pthread_mutex_lock(&p->lock);
  int rc;
  if (p->closed)
    rc = mp_seterr(MP_ECLOSED, "process object is closed");
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
  if (!p)
    return MP_EINVAL;
  const char *status;
  int show_exit = 0, code = 0;
  pthread_mutex_lock(&p->lock);
  if (p == mp_current_process())
    status = "started";
  else if (p->closed)
    status = "closed";
  else if (p->kind != MP__P_CHILD || p->creator_pid != getpid())
    status = "unknown";
  else if (p->state == MP__S_INITIAL)
    status = "initial";
  else if (reap_locked(p)) {
    status = "stopped";
    show_exit = !p->exit_unknown;
    code = p->exitcode;
  } else
    status = "started";
  const char *cls = p->kind == MP__P_CURRENT && p->creator_pid == 0
                        ? "_MainProcess"
                        : p->kind == MP__P_PARENT ? "_ParentProcess"
                        : p->ctx ? p->ctx->cls : "Process";
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
                    int use_pdeathsig, pid_t pdeath_ppid)
{
  /* Static storage and borrowed strings: a forked child should touch (and
   * so copy) as few pages as it can. */
  static mp_process parent_storage;
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
  self->pid = getpid();
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
  if (self->daemon) {
    /* Die with the parent.  PR_SET_PDEATHSIG fires when the parent *thread*
     * that made us exits, so it serves only children made by a main thread;
     * others watch the parent's pidfd from a thread of their own. */
    int rc = use_pdeathsig ? mp__plat_set_pdeathsig(SIGKILL, pdeath_ppid)
                           : -ENOSYS;
    if (rc == -ESRCH)
      _exit(255 & -SIGKILL);
    if (rc && parent_sentinel >= 0) {
      pthread_t t;
      pthread_attr_t a;
      pthread_attr_init(&a);
      pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
      pthread_attr_setstacksize(&a, 64 * 1024);
      pthread_create(&t, &a, parent_watch, (void *)(intptr_t)parent_sentinel);
      pthread_attr_destroy(&a);
    }
  }
  mp_log_info("child process calling self.run()");
  int code = 0;
  if (self->target)
    code = self->target(self->args);
  mp_log_info("process exiting with exitcode %d", code);
  mp__proc_child_exit(code);
}

void
mp__proc_child_exit(int code)
{
  exit_function();
  if (__fpending(stdout))
    fflush(stdout);
  if (__fpending(stderr))
    fflush(stderr);
  mp__exit_report(g_current, code);
  /* exit_group directly: _exit would be bound lazily in every child. */
  syscall(SYS_exit_group, code);
  _exit(code);
}

void
mp_exit(int code)
{
  if (tls_current && tls_exit_jmp) {
    tls_exit_code = code;
    longjmp(*tls_exit_jmp, 1);
  }
  pthread_once(&main_once, init_main);
  if (g_parent)
    mp__proc_child_exit(code);
  exit(code);
}

int
mp_main(int argc, char **argv)
{
  (void)argc;
  (void)argv;
  return 0; /* children are taken over before main (boot.c) */
}

/* Python's util._exit_function: terminate daemonic children, join all. */
static void
exit_function(void)
{
  mp_process **list;
  size_t n;
  if (!__atomic_load_n(&reg_first, __ATOMIC_ACQUIRE)) {
    mp__forkserver_stop();
    return; /* no children: the common case of a child exiting */
  }
  if (mp_active_children(&list, &n) != 0)
    return;
  for (size_t i = 0; i < n; i++)
    if (list[i]->daemon && list[i]->method != MP__M_THREADING) {
      mp_log_info("calling terminate() for daemon %s", list[i]->name);
      mp_process_terminate(list[i]);
    }
  for (size_t i = 0; i < n; i++)
    if (!(list[i]->daemon && list[i]->method == MP__M_THREADING)) {
      mp_log_info("calling join() for process %s", list[i]->name);
      mp_process_join(list[i], MP_FOREVER);
    }
  mp_process_list_free(list, n);
  mp__forkserver_stop();
}

/* ---- cpu count and handle types ---------------------------------------- */

int
mp_cpu_count(void)
{
  int n = mp__plat_cpu_count();
  return n > 0 ? n : mp_seterr(MP_ENOTSUP, "cannot determine number of cpus");
}

int
mp_cpu_count_usable(void)
{
  int n = mp__plat_cpu_usable();
  return n > 0 ? n : mp_seterr(MP_ENOTSUP, "cannot determine number of cpus");
}

static int
collect(const mp_obj *o, const mp_handle_type **types, size_t max, size_t *n,
        int depth)
{
  if (depth > MP_PICKLE_DEFAULT_MAX_DEPTH)
    return MP_ELIMIT;
  switch (mp_obj_type(o)) {
  case MP_T_HANDLE: {
    const mp_handle_type *t = mp_handle_type_of(o);
    for (size_t i = 0; i < *n; i++)
      if (types[i] == t)
        return 0;
    if (*n >= max)
      return MP_ELIMIT;
    types[(*n)++] = t;
    return 0;
  }
  case MP_T_TUPLE:
  case MP_T_LIST: {
    mp_obj *const *items;
    size_t len;
    if (mp_seq_items(o, &items, &len))
      return 0;
    for (size_t i = 0; i < len; i++) {
      int rc = collect(items[i], types, max, n, depth + 1);
      if (rc)
        return rc;
    }
    return 0;
  }
  case MP_T_DICT: {
    size_t pos = 0;
    mp_obj *k, *v;
    while (mp_dict_next(o, &pos, &k, &v)) {
      int rc = collect(k, types, max, n, depth + 1);
      if (!rc)
        rc = collect(v, types, max, n, depth + 1);
      if (rc)
        return rc;
    }
    return 0;
  }
  case MP_T_SET:
  case MP_T_FROZENSET: {
    size_t pos = 0;
    mp_obj *k;
    while (mp_set_next(o, &pos, &k)) {
      int rc = collect(k, types, max, n, depth + 1);
      if (rc)
        return rc;
    }
    return 0;
  }
  case MP_T_RECORD: {
    mp_obj *parts[5] = {0};
    if (mp_record_get(o, &parts[0], &parts[1], &parts[2], &parts[3],
                      &parts[4]))
      return 0;
    for (int i = 0; i < 5; i++) {
      int rc = parts[i] ? collect(parts[i], types, max, n, depth + 1) : 0;
      if (rc)
        return rc;
    }
    return 0;
  }
  default:
    return 0;
  }
}

int
mp__proc_collect_handle_types(const mp_obj *o, const mp_handle_type **types,
                              size_t max, size_t *n)
{
  *n = 0;
  return collect(o, types, max, n, 0);
}

/* Internal: the spawning context while args are encoded (boot.c). */
void mp__proc_set_spawning(mp_context *ctx);
void
mp__proc_set_spawning(mp_context *ctx)
{
  tls_spawning = ctx;
}
