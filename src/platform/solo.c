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
 * only thread runs the handler), and it is cleared before any thread can
 * start: solo_interpose.c defines the calls that start threads --
 * pthread_create, thrd_create, and timer_create and mq_notify with
 * SIGEV_THREAD -- and each clears the flag, then calls the C library's
 * own.  Those definitions
 * interpose on every call made through the global symbol scope: the
 * program's, and every library's.  Where they do not (libmproc.a, which
 * has no such definitions; mproc loaded with dlopen after the C library; a
 * sanitizer's interceptor first in the scope) the child never sets the
 * flag and glibc's answer stands.
 *
 * What no definition here sees: a thread started inside the C library
 * (the SIGEV_THREAD notices of aio, lio_listio and getaddrinfo_a) or by a
 * raw clone.  A fork child of a multi-threaded process that touches mproc
 * values from such a thread must not rely on this; docs/architecture.md
 * says so. */

#include "platform/platform.h"

#ifdef MP__HAVE_SOLO

#include <dlfcn.h>
#include <pthread.h>

MP__HOT_DATA int mp__solo;

/* Absent (NULL) where solo_interpose.c is not linked in. */
#pragma weak mp__solo_real_pthread_create

/* Whether a call through the global scope reaches solo_interpose.c:
 * settled once (mp__solo_init), before any fork. */
static int g_interposed;
static pthread_once_t g_interposed_once = PTHREAD_ONCE_INIT;

static void
settle_interposed(void)
{
  /* The object that the global lookup of pthread_create lands in is the
   * one solo_interpose.c is in: libmproc.so, or a test program. */
  Dl_info global, ours;
  void *f = dlsym(RTLD_DEFAULT, "pthread_create");
  g_interposed = mp__solo_real_pthread_create && f && dladdr(f, &global) &&
                 dladdr((void *)mp__solo_real_pthread_create, &ours) &&
                 global.dli_fbase == ours.dli_fbase;
}

void
mp__solo_init(void)
{
  pthread_once(&g_interposed_once, settle_interposed);
}

int
mp__solo_available(void)
{
  mp__solo_init();
  return g_interposed;
}

int
mp__thread_start_valueless(pthread_t *t, const pthread_attr_t *attr,
                           void *(*fn)(void *), void *arg)
{
  mp__solo_init();
  if (!g_interposed)
    return pthread_create(t, attr, fn, arg);
  int single = MP__SINGLE_THREADED();
  int rc = mp__solo_real_pthread_create(t, attr, fn, arg);
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
