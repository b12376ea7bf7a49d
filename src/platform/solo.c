/* Whether the process has one thread, where glibc cannot say.
 *
 * glibc's __libc_single_threaded is cleared at a process's first
 * pthread_create and never set again, not even in a fork child, which has
 * one thread whatever its parent had.  So every worker a pool forks after
 * the library's own threads exist (the death watcher, parked helpers:
 * from a process's second pool on) counted references with locked adds:
 * a map of ints took twice the workers' CPU of the first pool.
 *
 * mp__solo says "one thread" for such a child.  A fork child sets it (its
 * only thread runs the handler), and this file clears it before any thread
 * can start: it defines the calls that start threads -- pthread_create,
 * thrd_create, and timer_create and mq_notify with SIGEV_THREAD -- and each
 * clears the flag, then calls the C library's own.  Those definitions
 * interpose on every call made through the global symbol scope: the
 * program's, and every library's.  Where they do not (mproc loaded with
 * dlopen after the C library, a sanitizer's interceptor first in the
 * scope) the child never sets the flag and glibc's answer stands.
 *
 * What no definition here sees: a thread started inside the C library
 * (the SIGEV_THREAD notices of aio, lio_listio and getaddrinfo_a) or by a
 * raw clone.  A fork child of a multi-threaded process that touches mproc
 * values from such a thread must not rely on this; docs/architecture.md
 * says so. */

#include "platform/platform.h"

#ifdef MP__HAVE_SOLO

#include <dlfcn.h>
#include <errno.h>
#include <mqueue.h>
#include <pthread.h>
#include <signal.h>
#include <threads.h>
#include <time.h>

MP__HOT_DATA int mp__solo;

#define MP__PUBLIC __attribute__((visibility("default")))

/* Whether a call through the global scope reaches the definitions here:
 * settled once (mp__solo_init), before any fork. */
static int g_interposed;
static pthread_once_t g_interposed_once = PTHREAD_ONCE_INIT;

/* The next definition of `name` after ours (the C library's, or a
 * sanitizer's), looked up once; idempotent, so racing first calls agree. */
static void *
next_definition(void **cache, const char *name)
{
  void *f = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
  if (!f) {
    f = dlsym(RTLD_NEXT, name);
    __atomic_store_n(cache, f, __ATOMIC_RELEASE);
  }
  return f;
}

static void
solo_end(void)
{
  /* Before the thread exists: pthread_create orders this store before
   * everything the new thread does. */
  __atomic_store_n(&mp__solo, 0, __ATOMIC_SEQ_CST);
}

MP__PUBLIC int
pthread_create(pthread_t *restrict t, const pthread_attr_t *restrict attr,
               void *(*fn)(void *), void *restrict arg)
{
  static void *real;
  int (*f)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
  *(void **)&f = next_definition(&real, "pthread_create");
  if (!f)
    return EAGAIN;
  solo_end();
  return f(t, attr, fn, arg);
}

/* glibc's thrd_create starts its thread without going through the public
 * pthread_create. */
MP__PUBLIC int
thrd_create(thrd_t *t, thrd_start_t fn, void *arg)
{
  static void *real;
  int (*f)(thrd_t *, thrd_start_t, void *);
  *(void **)&f = next_definition(&real, "thrd_create");
  if (!f)
    return thrd_error;
  solo_end();
  return f(t, fn, arg);
}

/* SIGEV_THREAD: the C library starts a helper thread, and a thread per
 * notice, inside. */
MP__PUBLIC int
timer_create(clockid_t clock, struct sigevent *restrict ev,
             timer_t *restrict id)
{
  static void *real;
  int (*f)(clockid_t, struct sigevent *, timer_t *);
  *(void **)&f = next_definition(&real, "timer_create");
  if (!f) {
    errno = ENOSYS;
    return -1;
  }
  if (ev && ev->sigev_notify == SIGEV_THREAD)
    solo_end();
  return f(clock, ev, id);
}

MP__PUBLIC int
mq_notify(mqd_t q, const struct sigevent *ev)
{
  static void *real;
  int (*f)(mqd_t, const struct sigevent *);
  *(void **)&f = next_definition(&real, "mq_notify");
  if (!f) {
    errno = ENOSYS;
    return -1;
  }
  if (ev && ev->sigev_notify == SIGEV_THREAD)
    solo_end();
  return f(q, ev);
}

static void
settle_interposed(void)
{
  /* The object that the global lookup of pthread_create lands in is the
   * one this function is in: libmproc, or the program it is linked into. */
  Dl_info global, ours;
  void *f = dlsym(RTLD_DEFAULT, "pthread_create");
  g_interposed = f && dladdr(f, &global)
                 && dladdr((void *)settle_interposed, &ours)
                 && global.dli_fbase == ours.dli_fbase;
}

void
mp__solo_init(void)
{
  pthread_once(&g_interposed_once, settle_interposed);
}

int
mp__thread_start_valueless(pthread_t *t, const pthread_attr_t *attr,
                           void *(*fn)(void *), void *arg)
{
  static void *real;
  int (*f)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
  *(void **)&f = next_definition(&real, "pthread_create");
  if (!f)
    return EAGAIN;
  mp__solo_init();
  int single = MP__SINGLE_THREADED() && g_interposed;
  int rc = f(t, attr, fn, arg);
  /* glibc's flag is off now (where it was on): say "one thread" again.
   * A thread started after this one clears it as any other. */
  if (rc == 0 && single)
    __atomic_store_n(&mp__solo, 1, __ATOMIC_RELAXED);
  return rc;
}

void
mp__solo_after_fork_child(void)
{
  /* Only where glibc says "not single": where it says "single" it is
   * right, for it sees every thread start from there on. */
  if (!__libc_single_threaded && g_interposed)
    __atomic_store_n(&mp__solo, 1, __ATOMIC_RELAXED);
}

#endif /* MP__HAVE_SOLO */
