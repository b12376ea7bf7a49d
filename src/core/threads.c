/* SPDX-License-Identifier: MIT */
/* Threads kept for reuse (libuv's threadpool idea, for the library's own
 * long-lived helper threads: a pool's result handler).  A thread made and
 * ended per pool cost a clone, the initialisation of its TLS on a cached
 * stack (copy-on-write faults, as the pool's workers were just forked), and
 * at its end an madvise of its stack and TLB shootdowns; together about a
 * tenth of a pool's start and end.
 *
 * mp__thread_run hands fn to an idle thread, or starts one.  A thread whose
 * fn returned parks, every signal blocked, for mp__thread_idle_ns at most
 * (then it ends, and its thread-local buffers are freed); MAX_IDLE at most
 * park.  While fn runs the thread has the caller's signal mask, as a new
 * thread would.  A fork child has no parked threads (they are not copied):
 * it forgets them. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "core/internal.h"
#include "platform/platform.h"

#define MAX_IDLE 4

int64_t mp__thread_idle_ns = 5000000000LL;

typedef struct spare {
  struct spare *next; /* the idle list (g_mu) */
  pthread_cond_t cv;  /* a job was handed to it (g_mu) */
  void (*fn)(void *);
  void *arg;
  sigset_t mask;
  int has_job;
  pthread_t tid; /* set (under g_mu) before it can park */
} spare;

static pthread_mutex_t g_mu MP__FORK_DATA = PTHREAD_MUTEX_INITIALIZER;
static spare *g_idle;
static int g_nidle;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_ready; /* the fork hook is in place */

/* The parked threads' records of the processes this one was forked from:
 * kept reachable (a leak checker would report them otherwise), never used
 * or freed here.  A list per generation; past the array, dropped. */
static spare *g_forebears_idle[8];

static void
forget_idle(void *arg)
{
  (void)arg;
  /* The parked threads are not in this process: their records are.  They
   * are dropped, not freed -- a free writes the allocator's pages, a
   * copy-on-write fault or two in every fork child (a pool worker's
   * start) -- and not pthread_cond_destroy'ed, which would wait for a
   * parked waiter that is not in this process. */
  for (size_t i = 0; g_idle && i < MP__ARRAY_LEN(g_forebears_idle); i++)
    if (!g_forebears_idle[i]) {
      g_forebears_idle[i] = g_idle;
      break;
    }
  g_idle = NULL;
  g_nidle = 0;
}

static void
install(void)
{
  /* a child finds g_mu unlocked, then the idle list goes */
  g_ready = mp__fork_guard_mutex_reset(&g_mu, forget_idle, NULL) != NULL;
}

static int
cv_init(pthread_cond_t *cv)
{
  pthread_condattr_t a;
  if (pthread_condattr_init(&a) != 0)
    return MP_ENOMEM;
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  int rc = -pthread_cond_init(cv, &a);
  pthread_condattr_destroy(&a);
  return rc;
}

/* Park s (g_mu held) until a job comes (1) or the idle time ends (0). */
static int
park(spare *s)
{
  if (!g_ready || g_nidle >= MAX_IDLE) /* no fork hook: never park */
    return 0;
  s->next = g_idle;
  g_idle = s;
  g_nidle++;
  int64_t idle = __atomic_load_n(&mp__thread_idle_ns, __ATOMIC_RELAXED);
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  int64_t ns = until.tv_nsec + idle % 1000000000;
  until.tv_sec += (time_t)(idle / 1000000000 + ns / 1000000000);
  until.tv_nsec = (long)(ns % 1000000000);
  while (!s->has_job)
    if (pthread_cond_timedwait(&s->cv, &g_mu, &until) == ETIMEDOUT &&
        !s->has_job) {
      spare **pp = &g_idle;
      while (*pp && *pp != s)
        pp = &(*pp)->next;
      if (*pp)
        *pp = s->next;
      g_nidle--;
      return 0;
    }
  return 1; /* the one who handed the job took s off the list */
}

static void *
spare_main(void *arg)
{
  spare *s = arg;
  sigset_t all;
  sigfillset(&all);
  pthread_mutex_lock(&g_mu);
  do {
    void (*fn)(void *) = s->fn;
    void *fnarg = s->arg;
    s->has_job = 0;
    pthread_mutex_unlock(&g_mu);
    pthread_sigmask(SIG_SETMASK, &s->mask, NULL);
    fn(fnarg);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    pthread_mutex_lock(&g_mu);
  } while (park(s));
  pthread_mutex_unlock(&g_mu);
  pthread_cond_destroy(&s->cv);
  free(s);
  return NULL;
}

int
mp__thread_run(void (*fn)(void *), void *arg, pthread_t *tid)
{
  pthread_once(&g_once, install);
  sigset_t mask;
  pthread_sigmask(SIG_SETMASK, NULL, &mask);
  if (g_ready) {
    pthread_mutex_lock(&g_mu);
    spare *s = g_idle;
    if (s) {
      g_idle = s->next;
      g_nidle--;
      s->fn = fn;
      s->arg = arg;
      s->mask = mask;
      s->has_job = 1;
      *tid = s->tid;
      pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&g_mu);
    if (s)
      return 0;
  }
  spare *s = calloc(1, sizeof *s);
  if (!s)
    return MP_ENOMEM;
  int rc = cv_init(&s->cv);
  if (rc) {
    free(s);
    return rc;
  }
  s->fn = fn;
  s->arg = arg;
  s->mask = mask;
  s->has_job = 1;
  /* born with every signal blocked; fn runs with the caller's mask */
  pthread_t t;
  pthread_mutex_lock(&g_mu); /* the id is in place before it parks */
  /* named: a thread is born with its creator's name, and the creator may
   * be the watcher (a pool's handler started for a dead worker) or any
   * thread of the program */
  rc = mp__thread_start(&t, spare_main, s, 1, 0, "mproc-helper");
  if (rc == 0)
    s->tid = t;
  pthread_mutex_unlock(&g_mu);
  if (rc) {
    pthread_cond_destroy(&s->cv);
    free(s);
    return rc;
  }
  *tid = t;
  return 0;
}

int
mp__thread_start(pthread_t *t, void *(*fn)(void *), void *arg, int detached,
                 size_t stack, const char *name)
{
  pthread_attr_t at;
  if (pthread_attr_init(&at) != 0)
    return MP_ENOMEM;
  if (detached)
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  if (stack)
    pthread_attr_setstacksize(&at, stack);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = -pthread_create(t, &at, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&at);
  /* named by its creator, so that it has its name once started */
  if (rc == 0 && name)
    pthread_setname_np(*t, name); /* for ps, top -H */
  return rc;
}

int
mp__thread_idle_count(void)
{
  pthread_mutex_lock(&g_mu);
  int n = g_nidle;
  pthread_mutex_unlock(&g_mu);
  return n;
}
