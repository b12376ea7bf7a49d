/* SPDX-License-Identifier: MIT */
/* The lifecycle registry: what must happen around fork(2) and at exit.
 *
 * Python's multiprocessing has util.register_after_fork (callbacks run in a
 * forked child) and util.Finalize (callbacks run once, at exit in priority
 * order or earlier on demand).  Every mproc layer that keeps process-wide
 * state registers here instead of calling pthread_atfork(3) or atexit(3)
 * itself, so the order of those steps is decided in one place:
 *
 *   fork:  prepare hooks in reverse registration order, then fork, then in
 *          the parent the parent hooks and in the child the child hooks,
 *          both in registration order (pthread_atfork's own order, so a
 *          layer registered later -- one that uses an earlier one -- is
 *          quiesced first and restored last).  In the child the
 *          platform's pid/tid caches are reset before the first hook, so
 *          every hook sees the child's own pid whenever it registered.
 *   exit:  finalizers of this process, highest priority first, and among
 *          equal priorities the most recently registered first (Python's
 *          _run_finalizers order).  Each runs at most once, whether at exit,
 *          by mp__finalizer_run, or by mp__lifecycle_shutdown.
 *
 * A fork child inherits no finalizers: those its parent registered belong
 * to the parent (Python's Finalize ignores a finalizer from another pid).
 *
 * Hooks run for every fork of the program, also a fork(2) the user calls
 * directly: a lock the forking thread did not hold may be held by a thread
 * that does not exist in the child, and only the hooks can know. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/internal.h"
#include "platform/platform.h"

/* ---- fork hooks ------------------------------------------------------------ */

struct mp__fork_hook {
  void (*prepare)(void *arg);
  void (*parent)(void *arg);
  void (*child)(void *arg);
  void *arg;
  struct mp__fork_hook *next, *prev;
};

/* The list is only changed under g_fork_mu.  The prepare handler takes it
 * and the parent/child handlers release it, so the list cannot change
 * while a fork is in flight and the child sees it consistent. */
static pthread_mutex_t g_fork_mu MP__FORK_DATA = PTHREAD_MUTEX_INITIALIZER;
static struct mp__fork_hook *g_first, *g_last;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

static pthread_mutex_t g_fin_mu MP__FORK_DATA =
    PTHREAD_MUTEX_INITIALIZER; /* finalizers */
static void finalizers_after_fork_child(void);

static void
run_prepare(void)
{
  pthread_mutex_lock(&g_fork_mu);
  for (struct mp__fork_hook *h = g_last; h; h = h->prev)
    if (h->prepare)
      h->prepare(h->arg);
  pthread_mutex_lock(&g_fin_mu);
  mp__plat_before_fork();
}

static void
run_parent(void)
{
  pthread_mutex_unlock(&g_fin_mu);
  for (struct mp__fork_hook *h = g_first; h; h = h->next)
    if (h->parent)
      h->parent(h->arg);
  pthread_mutex_unlock(&g_fork_mu);
}

static void
run_child(void)
{
  /* The forking thread holds both locks and is the child's only thread:
   * unlock rather than re-initialise, so lock tracking (TSan's too) sees
   * them released. */
  mp__plat_after_fork_child();
  finalizers_after_fork_child();
  pthread_mutex_unlock(&g_fin_mu);
  for (struct mp__fork_hook *h = g_first; h; h = h->next)
    if (h->child)
      h->child(h->arg);
  pthread_mutex_unlock(&g_fork_mu);
}

static void
install_atfork(void)
{
#ifdef MP__HAVE_SOLO
  mp__solo_init();
#endif
  pthread_atfork(run_prepare, run_parent, run_child);
}

void
mp__lifecycle_fork_init(void)
{
  pthread_once(&g_atfork_once, install_atfork);
}

mp__fork_hook *
mp__fork_hook_add(void (*prepare)(void *), void (*parent)(void *),
                  void (*child)(void *), void *arg)
{
  mp__fork_hook *h = calloc(1, sizeof *h);
  if (!h)
    return NULL;
  h->prepare = prepare;
  h->parent = parent;
  h->child = child;
  h->arg = arg;
  pthread_once(&g_atfork_once, install_atfork);
  pthread_mutex_lock(&g_fork_mu);
  h->prev = g_last;
  if (g_last)
    g_last->next = h;
  else
    g_first = h;
  g_last = h;
  pthread_mutex_unlock(&g_fork_mu);
  return h;
}

static void
guard_lock(void *m)
{
  pthread_mutex_lock(m);
}

static void
guard_unlock(void *m)
{
  pthread_mutex_unlock(m);
}

mp__fork_hook *
mp__fork_guard_mutex(pthread_mutex_t *m)
{
  return mp__fork_hook_add(guard_lock, guard_unlock, guard_unlock, m);
}

typedef struct guard_reset {
  pthread_mutex_t *m;
  void (*reset)(void *);
  void *arg;
} guard_reset;

static void
guard_reset_lock(void *g)
{
  pthread_mutex_lock(((guard_reset *)g)->m);
}

static void
guard_reset_parent(void *g)
{
  pthread_mutex_unlock(((guard_reset *)g)->m);
}

static void
guard_reset_child(void *g_)
{
  guard_reset *g = g_;
  pthread_mutex_unlock(g->m);
  g->reset(g->arg);
}

mp__fork_hook *
mp__fork_guard_mutex_reset(pthread_mutex_t *m, void (*reset)(void *arg),
                           void *arg)
{
  guard_reset *g = malloc(sizeof *g); /* lives as long as the hook: always */
  if (!g)
    return NULL;
  *g = (guard_reset){m, reset, arg};
  mp__fork_hook *h = mp__fork_hook_add(guard_reset_lock, guard_reset_parent,
                                       guard_reset_child, g);
  if (!h)
    free(g);
  return h;
}

void
mp__fork_hook_remove(mp__fork_hook *h)
{
  if (!h)
    return;
  pthread_mutex_lock(&g_fork_mu);
  if (h->prev)
    h->prev->next = h->next;
  else
    g_first = h->next;
  if (h->next)
    h->next->prev = h->prev;
  else
    g_last = h->prev;
  pthread_mutex_unlock(&g_fork_mu);
  free(h);
}

/* ---- per-object mutexes across fork ------------------------------------------ */

static pthread_mutex_t g_pmutex_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_pmutex_once = PTHREAD_ONCE_INIT;

static void
pmutex_setup(void)
{
  mp__lifecycle_fork_init(); /* the pid cache follows forks */
  mp__fork_guard_mutex(&g_pmutex_mu);
}

void
mp__pmutex_init(mp__pmutex *pm)
{
  pthread_once(&g_pmutex_once, pmutex_setup);
  pthread_mutex_init(&pm->m, NULL);
  atomic_store_explicit(&pm->pid, mp__getpid(), memory_order_release);
}

void
mp__pmutex_destroy(mp__pmutex *pm)
{
  pthread_mutex_destroy(&pm->m);
}

void
mp__pmutex_lock(mp__pmutex *pm)
{
  uint32_t me = mp__getpid();
  if (MP__UNLIKELY(atomic_load_explicit(&pm->pid, memory_order_acquire) !=
                   me)) {
    /* the first use in this fork child: whoever held it is not here */
    pthread_mutex_lock(&g_pmutex_mu);
    if (atomic_load_explicit(&pm->pid, memory_order_relaxed) != me) {
      pthread_mutex_init(&pm->m, NULL);
      atomic_store_explicit(&pm->pid, me, memory_order_release);
    }
    pthread_mutex_unlock(&g_pmutex_mu);
  }
  pthread_mutex_lock(&pm->m);
}

void
mp__pmutex_unlock(mp__pmutex *pm)
{
  pthread_mutex_unlock(&pm->m);
}

/* ---- finalizers ------------------------------------------------------------ */

struct mp__finalizer {
  void (*fn)(void *arg);
  void *arg;
  int priority;
  uint64_t seq;   /* registration order, for ties */
  pid_t owner;    /* the process that registered it */
  int done;       /* ran or was cancelled (under g_fin_mu) */
  struct mp__finalizer *next;
};

/* sorted: runs first at the head */
static struct mp__finalizer *g_fins MP__FORK_DATA;
static uint64_t g_fin_seq;
static pthread_once_t g_atexit_once = PTHREAD_ONCE_INIT;

static void
run_at_exit(void)
{
  mp__lifecycle_shutdown();
}

static void
install_atexit(void)
{
  atexit(run_at_exit);
  /* fork hooks must be in place too: the child drops the parent's list */
  pthread_once(&g_atfork_once, install_atfork);
}

void
mp__lifecycle_exit_first(void)
{
  pthread_once(&g_atexit_once, install_atexit);
  /* a second registration, later than that library's: the shutdown it
   * runs first leaves the earlier one nothing to do */
  atexit(run_at_exit);
}

/* Runs before a finalizer a's successor b? */
static int
runs_before(const struct mp__finalizer *a, const struct mp__finalizer *b)
{
  if (a->priority != b->priority)
    return a->priority > b->priority;
  return a->seq > b->seq;
}

mp__finalizer *
mp__finalizer_add(int priority, void (*fn)(void *), void *arg)
{
  if (!fn)
    return NULL;
  mp__finalizer *f = calloc(1, sizeof *f);
  if (!f)
    return NULL;
  f->fn = fn;
  f->arg = arg;
  f->priority = priority;
  f->owner = getpid();
  pthread_once(&g_atexit_once, install_atexit);
  pthread_mutex_lock(&g_fin_mu);
  f->seq = ++g_fin_seq;
  mp__finalizer **pp = &g_fins;
  while (*pp && runs_before(*pp, f))
    pp = &(*pp)->next;
  f->next = *pp;
  *pp = f;
  pthread_mutex_unlock(&g_fin_mu);
  return f;
}

/* Unlink f (under g_fin_mu); returns whether it was still pending. */
static int
take_locked(mp__finalizer *f)
{
  for (mp__finalizer **pp = &g_fins; *pp; pp = &(*pp)->next)
    if (*pp == f) {
      *pp = f->next;
      return 1;
    }
  return 0;
}

int
mp__finalizer_run(mp__finalizer *f)
{
  if (!f)
    return 0;
  pthread_mutex_lock(&g_fin_mu);
  int pending = take_locked(f);
  pthread_mutex_unlock(&g_fin_mu);
  if (!pending)
    return 0;
  if (f->owner == getpid())
    f->fn(f->arg);
  free(f);
  return 1;
}

void
mp__finalizer_cancel(mp__finalizer *f)
{
  if (!f)
    return;
  pthread_mutex_lock(&g_fin_mu);
  int pending = take_locked(f);
  pthread_mutex_unlock(&g_fin_mu);
  if (pending)
    free(f);
}

void
mp__lifecycle_shutdown(void)
{
  /* Python's util._exit_function says so first, once per process */
  static _Atomic pid_t said;
  pid_t me = getpid();
  if (atomic_exchange(&said, me) != me)
    mp_log_info("process shutting down");
  /* One at a time from the head, unlocked while it runs: a finalizer may
   * register or cancel others (a pool's finalizer cancels its queues'). */
  for (;;) {
    pthread_mutex_lock(&g_fin_mu);
    mp__finalizer *f = g_fins;
    if (f)
      g_fins = f->next;
    pthread_mutex_unlock(&g_fin_mu);
    if (!f)
      return;
    if (f->owner == getpid())
      f->fn(f->arg);
    free(f);
  }
}

/* In a fork child (one thread, g_fin_mu held): the parent's finalizers are
 * not ours.  Their nodes are dropped, not freed: a handle to one that the
 * parent's code still holds in the child's copy of memory must not dangle
 * into reused memory; mp__finalizer_run and _cancel then find it not
 * pending and do nothing. */
static void
finalizers_after_fork_child(void)
{
  g_fins = NULL;
}
