/* SPDX-License-Identifier: MIT */
/* "One thread" in a fork child of a multi-threaded process (platform/solo.c).
 *
 * glibc never tells a fork child that it has one thread again, so the
 * library keeps its own flag, set in the child and cleared before any
 * thread starts.  Wrong one way, it costs speed (every reference count a
 * locked add); wrong the other way, two threads count one object's
 * references with plain stores and lose some.  Here: the child says
 * "one thread", each way of starting a thread ends that before the thread
 * exists, and references counted on one object by the child's thread and
 * a thread it started stay exact. */
#include <fcntl.h>
#include <mqueue.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <threads.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "obj/obj_internal.h"
#include "platform/platform.h"
#include "testutil.h"

static void *
nothing(void *arg)
{
  return arg;
}

static int
nothing_c11(void *arg)
{
  (void)arg;
  return 0;
}

/* This process has had a second thread (glibc's flag is off for good),
 * and the fork handlers are installed, as in any program past its first
 * pool. */
static int
setup(void)
{
  pthread_t t;
  if (pthread_create(&t, NULL, nothing, NULL) != 0 || pthread_join(t, NULL))
    return 1;
  mp__lifecycle_fork_init();
  return MP__SINGLE_THREADED() ? 1 : 0;
}

/* Run `body` in a fork child; its return is the child's exit code. */
static int
in_child(int (*body)(void))
{
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(body());
  return mp_test_wait_child(pid, 30);
}

static int
child_is_single(void)
{
  return MP__SINGLE_THREADED() ? 0 : 1;
}

/* Whether this build can say so: every test program can, but one built
 * with a sanitizer (whose runtime's interceptors of the thread-start calls
 * come first) cannot, and there the fork child keeps glibc's "no". */
static void
need_solo(void)
{
  const char *san = getenv("MPROC_SANITIZE");
  if (san && *san) {
    assert_int_equal(mp__solo_available(), 0);
    skip();
  }
  assert_int_equal(mp__solo_available(), 1);
}

static void
test_fork_child_has_one_thread(void **state)
{
  (void)state;
  need_solo();
  assert_int_equal(in_child(child_is_single), 0);
  /* and the parent, which still may have threads, is not told so */
  assert_false(MP__SINGLE_THREADED());
}

/* Exit codes: 1 "not single" at the start, 2 the start failed, 3 still
 * "single" after it, 4 "single" ended by something that starts none. */
static int
by_pthread_create(void)
{
  if (!MP__SINGLE_THREADED())
    return 1;
  pthread_t t;
  if (pthread_create(&t, NULL, nothing, NULL) != 0)
    return 2;
  int single = MP__SINGLE_THREADED();
  pthread_join(t, NULL);
  return single ? 3 : 0;
}

static int
by_thrd_create(void)
{
  if (!MP__SINGLE_THREADED())
    return 1;
  thrd_t t;
  if (thrd_create(&t, nothing_c11, NULL) != thrd_success)
    return 2;
  int single = MP__SINGLE_THREADED();
  thrd_join(t, NULL);
  return single ? 3 : 0;
}

static void
on_timer(union sigval v)
{
  (void)v;
}

static int
by_timer_create(void)
{
  if (!MP__SINGLE_THREADED())
    return 1;
  /* a timer that signals starts no thread: still one */
  struct sigevent none = {.sigev_notify = SIGEV_NONE};
  timer_t quiet;
  if (timer_create(CLOCK_MONOTONIC, &none, &quiet) != 0)
    return 2;
  timer_delete(quiet);
  if (!MP__SINGLE_THREADED())
    return 4;
  struct sigevent ev = {.sigev_notify = SIGEV_THREAD,
                        .sigev_notify_function = on_timer};
  timer_t id;
  if (timer_create(CLOCK_MONOTONIC, &ev, &id) != 0)
    return 2;
  int single = MP__SINGLE_THREADED();
  timer_delete(id);
  return single ? 3 : 0;
}

static int
by_mq_notify(void)
{
  if (!MP__SINGLE_THREADED())
    return 1;
  char name[64];
  snprintf(name, sizeof name, "/mproc-test-solo-%d", (int)getpid());
  struct mq_attr attr = {.mq_maxmsg = 1, .mq_msgsize = 8};
  mqd_t q = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
  if (q == (mqd_t)-1)
    return 2;
  mq_unlink(name);
  struct sigevent ev = {.sigev_notify = SIGEV_THREAD,
                        .sigev_notify_function = on_timer};
  int rc = mq_notify(q, &ev);
  int single = MP__SINGLE_THREADED();
  mq_close(q);
  return rc != 0 ? 2 : single ? 3 : 0;
}

static void
test_each_thread_start_ends_one_thread(void **state)
{
  (void)state;
  need_solo();
  assert_int_equal(in_child(by_pthread_create), 0);
  assert_int_equal(in_child(by_thrd_create), 0);
  assert_int_equal(in_child(by_timer_create), 0);
  assert_int_equal(in_child(by_mq_notify), 0);
}

/* Both threads take and drop references to one object as fast as they
 * can; a count with plain stores on both sides loses some. */
#define TURNS 2000000
static mp_obj *g_shared;

static void *
count_refs(void *arg)
{
  for (int i = 0; i < TURNS; i++)
    mp_obj_ref(g_shared);
  for (int i = 0; i < TURNS; i++)
    mp_obj_free(g_shared);
  return arg;
}

static int
refcounts_with_a_second_thread(void)
{
  if (!MP__SINGLE_THREADED())
    return 1;
  g_shared = mp_list_new();
  if (!g_shared)
    return 2;
  pthread_t t;
  if (pthread_create(&t, NULL, count_refs, NULL) != 0)
    return 2;
  count_refs(NULL);
  pthread_join(t, NULL);
  uint32_t rc = __atomic_load_n(&g_shared->rc, __ATOMIC_ACQUIRE);
  mp_obj_free(g_shared);
  return rc == 1 ? 0 : 3;
}

static void
test_refcounts_stay_exact_when_the_child_starts_a_thread(void **state)
{
  (void)state;
  need_solo();
  assert_int_equal(in_child(refcounts_with_a_second_thread), 0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_fork_child_has_one_thread),
    cmocka_unit_test(test_each_thread_start_ends_one_thread),
    cmocka_unit_test(test_refcounts_stay_exact_when_the_child_starts_a_thread),
};

MP_TEST_MAIN_WITH(tests, setup)
