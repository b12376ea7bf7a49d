/* The thread-start calls that end "one thread" (see solo.c): in libmproc.so
 * only, not in libmproc.a.  A program links the static library with its
 * own runtime, and a sanitizer's runtime linked statically (clang's) has
 * weak interceptors of these names: a strong definition here would replace
 * them, and the sanitizer would never see a thread start.  In the shared
 * library the dynamic linker puts the program's interceptors first, and
 * their "next" is us.  The tests link this file into their programs when
 * they are not sanitized (tests/CMakeLists.txt). */

#include "mproc/version.h" /* MP_EXTERN: exported from libmproc.so */
#include "platform/platform.h"

#ifdef MP__HAVE_SOLO

#include <dlfcn.h>
#include <errno.h>
#include <mqueue.h>
#include <pthread.h>
#include <signal.h>
#include <threads.h>
#include <time.h>

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

int
mp__solo_real_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                             void *(*fn)(void *), void *arg)
{
  static void *real;
  int (*f)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
  *(void **)&f = next_definition(&real, "pthread_create");
  return f ? f(t, attr, fn, arg) : EAGAIN;
}

MP_EXTERN int
pthread_create(pthread_t *restrict t, const pthread_attr_t *restrict attr,
               void *(*fn)(void *), void *restrict arg)
{
  solo_end();
  return mp__solo_real_pthread_create(t, attr, fn, arg);
}

/* glibc's thrd_create starts its thread without going through the public
 * pthread_create. */
MP_EXTERN int
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
MP_EXTERN int
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

MP_EXTERN int
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

#endif /* MP__HAVE_SOLO */
