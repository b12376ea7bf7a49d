/* SPDX-License-Identifier: MIT */
/* Lock, RLock, Semaphore, Condition, Event, Barrier: semantics and error
 * codes, between threads and between fork()ed processes.  (The same
 * semantics under every start method are in test_sync_methods.c.) */
#define _GNU_SOURCE
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sync/sync_internal.h"
#include <fcntl.h>

/* (bounded: a child that hangs fails the test instead of the suite) */
#define wait_child(pid) mp_test_wait_child((pid), 60)

/* ---- Lock ---------------------------------------------------------------- */

static void
test_lock_basic(void **state)
{
  mp_lock *l;
  MP_ASSERT_OK(mp_lock_new(&l));
  assert_int_equal(mp_lock_is_recursive(l), 0);
  assert_int_equal(mp_lock_locked(l), 0);
  MP_ASSERT_OK(mp_lock_acquire(l, MP_FOREVER));
  assert_int_equal(mp_lock_locked(l), 1);
  assert_int_equal(mp_lock_is_mine(l), 1);
  /* non-recursive: a second acquire does not succeed */
  MP_ASSERT_ERR(mp_lock_acquire(l, 0), MP_ETIMEDOUT);
  MP_ASSERT_ERR(mp_lock_acquire(l, -5), MP_ETIMEDOUT); /* negative = 0 */
  double t0 = mp_test_now();
  MP_ASSERT_ERR(mp_lock_acquire(l, 0.05), MP_ETIMEDOUT);
  assert_true(mp_test_now() - t0 >= 0.049);
  MP_ASSERT_OK(mp_lock_release(l));
  MP_ASSERT_ERR(mp_lock_release(l), MP_ESTATE); /* Python: ValueError */
  MP_ASSERT_OK(mp_lock_acquire(l, 0));
  MP_ASSERT_OK(mp_lock_release(l));
  MP_ASSERT_ERR(mp_lock_acquire(NULL, 0), MP_EINVAL);
  MP_ASSERT_ERR(mp_lock_release(NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_lock_new(NULL), MP_EINVAL);
  mp_lock_free(l);
  mp_lock_free(NULL);
}

static void *
release_it(void *arg)
{
  return (void *)(intptr_t)mp_lock_release(arg);
}

static void
test_lock_release_by_other_thread(void **state)
{
  mp_lock *l;
  MP_ASSERT_OK(mp_lock_new(&l));
  MP_ASSERT_OK(mp_lock_acquire(l, MP_FOREVER));
  pthread_t t;
  void *rv;
  pthread_create(&t, NULL, release_it, l);
  pthread_join(t, &rv);
  assert_int_equal((intptr_t)rv, 0);
  assert_int_equal(mp_lock_locked(l), 0);
  mp_lock_free(l);
}

static void
test_lock_between_processes(void **state)
{
  mp_lock *l;
  MP_ASSERT_OK(mp_lock_new(&l));
  MP_ASSERT_OK(mp_lock_acquire(l, MP_FOREVER));
  int p[2];
  assert_int_equal(pipe(p), 0);
  pid_t pid = fork();
  if (pid == 0) {
    /* blocked until the parent releases; then released by the child */
    if (mp_lock_acquire(l, 0) != MP_ETIMEDOUT)
      _exit(1);
    if (write(p[1], "x", 1) != 1)
      _exit(2);
    if (mp_lock_acquire(l, 10) != 0)
      _exit(3);
    _exit(mp_lock_release(l) == 0 ? 0 : 4);
  }
  char c;
  assert_int_equal(read(p[0], &c, 1), 1);
  MP_ASSERT_OK(mp_lock_release(l));
  assert_int_equal(wait_child(pid), 0);
  MP_ASSERT_OK(mp_lock_acquire(l, 0));
  MP_ASSERT_OK(mp_lock_release(l));
  close(p[0]);
  close(p[1]);
  mp_lock_free(l);
}

/* ---- RLock --------------------------------------------------------------- */

static void *
rlock_other(void *arg)
{
  mp_rlock *l = arg;
  intptr_t r = 0;
  if (mp_rlock_release(l) != MP_ENOTOWNER)
    r |= 1;
  if (mp_rlock_acquire(l, 0) != MP_ETIMEDOUT)
    r |= 2;
  return (void *)r;
}

static void
test_rlock(void **state)
{
  mp_rlock *l;
  MP_ASSERT_OK(mp_rlock_new(&l));
  assert_int_equal(mp_lock_is_recursive(l), 1);
  MP_ASSERT_ERR(mp_rlock_release(l), MP_ENOTOWNER); /* unlocked */
  MP_ASSERT_OK(mp_rlock_acquire(l, MP_FOREVER));
  MP_ASSERT_OK(mp_rlock_acquire(l, 0));
  MP_ASSERT_OK(mp_rlock_acquire(l, 1));
  pthread_t t;
  void *rv;
  pthread_create(&t, NULL, rlock_other, l);
  pthread_join(t, &rv);
  assert_int_equal((intptr_t)rv, 0);
  /* another process is not the owner either */
  pid_t pid = fork();
  if (pid == 0)
    _exit(mp_rlock_release(l) == MP_ENOTOWNER
                  && mp_rlock_acquire(l, 0) == MP_ETIMEDOUT
              ? 0
              : 1);
  assert_int_equal(wait_child(pid), 0);
  MP_ASSERT_OK(mp_rlock_release(l));
  MP_ASSERT_OK(mp_rlock_release(l));
  assert_int_equal(mp_lock_locked(l), 1);
  MP_ASSERT_OK(mp_rlock_release(l));
  assert_int_equal(mp_lock_locked(l), 0);
  MP_ASSERT_ERR(mp_rlock_release(l), MP_ENOTOWNER);
  mp_rlock_free(l);
}

/* The lock clears the error detail only off its fast path (errors.h): a
 * failure of acquire or release still reports its own text or "", never a
 * stale one. */
static void
stale(void)
{
  mp_seterr(MP_EEOF, "stale text");
}

static void
test_lock_error_detail(void **state)
{
  mp_lock *l;
  mp_rlock *r;
  MP_ASSERT_OK(mp_lock_new(&l));
  MP_ASSERT_OK(mp_rlock_new(&r));
  MP_ASSERT_OK(mp_lock_acquire(l, 0));
  stale();
  MP_ASSERT_ERR(mp_lock_acquire(l, 0), MP_ETIMEDOUT);
  assert_string_equal(mp_errdetail(), "");
  stale();
  MP_ASSERT_ERR(mp_lock_acquire(l, NAN), MP_EINVAL);
  assert_string_not_equal(mp_errdetail(), "stale text");
  stale();
  MP_ASSERT_ERR(mp_lock_acquire(NULL, 0), MP_EINVAL);
  assert_string_equal(mp_errdetail(), "");
  stale();
  MP_ASSERT_ERR(mp_lock_release(NULL), MP_EINVAL);
  assert_string_equal(mp_errdetail(), "");
  MP_ASSERT_OK(mp_lock_release(l));
  stale();
  MP_ASSERT_ERR(mp_lock_release(l), MP_ESTATE);
  assert_string_equal(mp_errdetail(),
                      "semaphore or lock released too many times");
  stale();
  MP_ASSERT_ERR(mp_rlock_release(r), MP_ENOTOWNER);
  assert_string_equal(mp_errdetail(),
                      "cannot release un-acquired lock (not the owner)");
  /* another process holds the RLock: a timed-out acquire has no text */
  MP_ASSERT_OK(mp_rlock_acquire(r, 0));
  pid_t pid = fork();
  if (pid == 0) {
    stale();
    _exit(mp_rlock_acquire(r, 0) == MP_ETIMEDOUT && !mp_errdetail()[0] ? 0
                                                                      : 1);
  }
  assert_int_equal(wait_child(pid), 0);
  MP_ASSERT_OK(mp_rlock_release(r));
  mp_rlock_free(r);
  mp_lock_free(l);
}

/* ---- owner death --------------------------------------------------------- */

#define kill_holder mp_test_kill_holder

static void
test_owner_death_lock(void **state)
{
  for (int rec = 0; rec < 2; rec++) {
    mp_lock *l;
    MP_ASSERT_OK(rec ? mp_rlock_new(&l) : mp_lock_new(&l));
    kill_holder(l);
    /* a non-blocking attempt already sees the dead owner */
    MP_ASSERT_ERR(mp_lock_acquire(l, 0), MP_EOWNERDEAD);
    assert_int_equal(mp_lock_is_mine(l), 1);
    MP_ASSERT_OK(mp_lock_release(l));
    MP_ASSERT_OK(mp_lock_acquire(l, 0));
    MP_ASSERT_OK(mp_lock_release(l));
    mp_lock_free(l);
  }
}

struct waiter_arg {
  mp_lock *l;
  int rc;
  mp_event *started;
};

static void *
blocked_acquirer(void *arg)
{
  struct waiter_arg *w = arg;
  mp_event_set(w->started);
  w->rc = mp_lock_acquire(w->l, 30);
  if (w->rc == 0 || w->rc == MP_EOWNERDEAD)
    mp_lock_release(w->l);
  return NULL;
}

/* A waiter already blocked when the owner dies gets the lock too. */
static void
test_owner_death_wakes_waiter(void **state)
{
  mp_lock *l;
  MP_ASSERT_OK(mp_lock_new(&l));
  int p[2], q[2];
  assert_int_equal(pipe(p), 0);
  assert_int_equal(pipe(q), 0);
  pid_t pid = fork();
  if (pid == 0) {
    if (mp_lock_acquire(l, MP_FOREVER) != 0)
      _exit(1);
    if (write(p[1], "x", 1) != 1)
      _exit(2);
    char c;
    (void)!read(q[0], &c, 1);
    for (;;)
      pause();
  }
  char c;
  assert_int_equal(read(p[0], &c, 1), 1);
  struct waiter_arg w = {.l = l};
  MP_ASSERT_OK(mp_event_new(&w.started));
  pthread_t t;
  pthread_create(&t, NULL, blocked_acquirer, &w);
  MP_ASSERT_OK(mp_event_wait(w.started, MP_FOREVER));
  kill(pid, SIGKILL);
  assert_int_equal(wait_child(pid), 128 + SIGKILL);
  pthread_join(t, NULL);
  MP_ASSERT_ERR(w.rc, MP_EOWNERDEAD);
  MP_ASSERT_OK(mp_lock_acquire(l, 0));
  MP_ASSERT_OK(mp_lock_release(l));
  mp_event_free(w.started);
  mp_lock_free(l);
  for (int i = 0; i < 2; i++) {
    close(p[i]);
    close(q[i]);
  }
}

/* ---- Semaphore ----------------------------------------------------------- */

static void
test_semaphore(void **state)
{
  mp_sem *s;
  MP_ASSERT_ERR(mp_sem_new(&s, -1, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_sem_new(NULL, 1, NULL), MP_EINVAL);
  MP_ASSERT_OK(mp_sem_new(&s, 2, NULL));
  assert_int_equal(mp_sem_get_value(s), 2);
  MP_ASSERT_OK(mp_sem_acquire(s, 0));
  MP_ASSERT_OK(mp_sem_acquire(s, MP_FOREVER));
  MP_ASSERT_ERR(mp_sem_acquire(s, 0), MP_ETIMEDOUT);
  MP_ASSERT_ERR(mp_sem_acquire(s, -1.5), MP_ETIMEDOUT);
  double t0 = mp_test_now();
  MP_ASSERT_ERR(mp_sem_acquire(s, 0.05), MP_ETIMEDOUT);
  assert_true(mp_test_now() - t0 >= 0.049);
  assert_int_equal(mp_sem_get_value(s), 0);
  /* an unbounded semaphore may go above its initial value */
  for (int i = 0; i < 5; i++)
    MP_ASSERT_OK(mp_sem_release(s));
  assert_int_equal(mp_sem_get_value(s), 5);
  mp_sem_free(s);

  MP_ASSERT_OK(mp_sem_new(&s, 1, &(mp_sem_opts){.bounded = 1}));
  MP_ASSERT_ERR(mp_sem_release(s), MP_EOVERFLOW);
  MP_ASSERT_OK(mp_sem_acquire(s, 0));
  MP_ASSERT_OK(mp_sem_release(s));
  MP_ASSERT_ERR(mp_sem_release(s), MP_EOVERFLOW);
  assert_int_equal(mp_sem_get_value(s), 1);
  mp_sem_free(s);

  /* a process blocked in acquire is woken by a release from another */
  MP_ASSERT_OK(mp_sem_new(&s, 0, NULL));
  pid_t pid = fork();
  if (pid == 0)
    _exit(mp_sem_acquire(s, 10) == 0 ? 0 : 1);
  MP_ASSERT_OK(mp_sem_release(s));
  assert_int_equal(wait_child(pid), 0);
  assert_int_equal(mp_sem_get_value(s), 0);
  mp_sem_free(s);
}

/* ---- Event --------------------------------------------------------------- */

static void
test_event(void **state)
{
  mp_event *e;
  MP_ASSERT_OK(mp_event_new(&e));
  assert_int_equal(mp_event_is_set(e), 0);
  MP_ASSERT_ERR(mp_event_wait(e, 0), MP_ETIMEDOUT);
  double t0 = mp_test_now();
  MP_ASSERT_ERR(mp_event_wait(e, 0.05), MP_ETIMEDOUT);
  assert_true(mp_test_now() - t0 >= 0.049);
  MP_ASSERT_OK(mp_event_set(e));
  assert_int_equal(mp_event_is_set(e), 1);
  MP_ASSERT_OK(mp_event_wait(e, 0));
  MP_ASSERT_OK(mp_event_wait(e, MP_FOREVER));
  MP_ASSERT_OK(mp_event_clear(e));
  assert_int_equal(mp_event_is_set(e), 0);
  /* set from another process wakes a waiter here, and vice versa */
  mp_event *back;
  MP_ASSERT_OK(mp_event_new(&back));
  pid_t pid = fork();
  if (pid == 0) {
    if (mp_event_wait(back, 10) != 0)
      _exit(1);
    _exit(mp_event_set(e) == 0 ? 0 : 2);
  }
  MP_ASSERT_OK(mp_event_set(back));
  MP_ASSERT_OK(mp_event_wait(e, 10));
  assert_int_equal(wait_child(pid), 0);
  assert_int_equal(mp_event_is_set(e), 1);
  MP_ASSERT_ERR(mp_event_is_set(NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_event_set(NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_event_clear(NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_event_new(NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_cond_new(NULL, NULL), MP_EINVAL);
  mp_event_free(NULL);
  mp_cond_free(NULL);
  mp_event_free(back);
  mp_event_free(e);
}

/* ---- Condition ----------------------------------------------------------- */

struct cond_arg {
  mp_cond *c;
  int *flag;
  mp_sem *woken;
  int rc;
};

static int
flag_set(void *arg)
{
  return *(int *)arg != 0;
}

static void *
cond_waiter(void *arg)
{
  struct cond_arg *a = arg;
  mp_cond_acquire(a->c, MP_FOREVER);
  a->rc = mp_cond_wait(a->c, 30);
  mp_cond_release(a->c);
  mp_sem_release(a->woken);
  return NULL;
}

static void
test_condition_errors(void **state)
{
  mp_cond *c;
  MP_ASSERT_OK(mp_cond_new(&c, NULL));
  assert_int_equal(mp_lock_is_recursive(mp_cond_lock(c)), 1);
  MP_ASSERT_ERR(mp_cond_wait(c, 0), MP_ENOTOWNER);
  MP_ASSERT_ERR(mp_cond_notify(c, 1), MP_ENOTOWNER);
  MP_ASSERT_ERR(mp_cond_notify_all(c), MP_ENOTOWNER);
  int flag = 0;
  MP_ASSERT_ERR(mp_cond_wait_for(c, flag_set, &flag, 0), MP_ENOTOWNER);
  MP_ASSERT_OK(mp_cond_acquire(c, MP_FOREVER));
  MP_ASSERT_OK(mp_cond_acquire(c, MP_FOREVER)); /* RLock: recursion */
  double t0 = mp_test_now();
  MP_ASSERT_ERR(mp_cond_wait(c, 0.05), MP_ETIMEDOUT);
  assert_true(mp_test_now() - t0 >= 0.049);
  MP_ASSERT_ERR(mp_cond_wait_for(c, flag_set, &flag, 0.02), MP_ETIMEDOUT);
  MP_ASSERT_ERR(mp_cond_wait_for(c, NULL, NULL, 0), MP_EINVAL);
  flag = 1;
  MP_ASSERT_OK(mp_cond_wait_for(c, flag_set, &flag, 0));
  MP_ASSERT_OK(mp_cond_notify(c, 1)); /* nobody waiting: fine */
  /* still held twice after the waits */
  MP_ASSERT_OK(mp_cond_release(c));
  assert_int_equal(mp_lock_is_mine(mp_cond_lock(c)), 1);
  MP_ASSERT_OK(mp_cond_release(c));
  MP_ASSERT_ERR(mp_cond_release(c), MP_ENOTOWNER);
  mp_cond_free(c);

  /* over a given Lock */
  mp_lock *l;
  MP_ASSERT_OK(mp_lock_new(&l));
  MP_ASSERT_OK(mp_cond_new(&c, l));
  mp_lock_free(l); /* the condition keeps its own reference */
  assert_ptr_equal(mp_cond_lock(c), l);
  MP_ASSERT_OK(mp_cond_acquire(c, 0));
  MP_ASSERT_ERR(mp_cond_wait(c, 0.01), MP_ETIMEDOUT);
  assert_int_equal(mp_lock_is_mine(l), 1);
  MP_ASSERT_OK(mp_cond_release(c));
  MP_ASSERT_ERR(mp_cond_release(c), MP_ESTATE);
  mp_cond_free(c);
}

static void
test_condition_notify_counts(void **state)
{
  mp_cond *c;
  MP_ASSERT_OK(mp_cond_new(&c, NULL));
  mp_sem *woken;
  MP_ASSERT_OK(mp_sem_new(&woken, 0, NULL));
  enum { N = 3 };
  struct cond_arg a[N];
  pthread_t t[N];
  for (int i = 0; i < N; i++) {
    a[i] = (struct cond_arg){.c = c, .woken = woken, .rc = 1};
    pthread_create(&t[i], NULL, cond_waiter, &a[i]);
  }
  /* wait until all three are waiting: n_waiting is observable through
   * notify's effect, so poll the lock-protected count via wait_for */
  for (;;) {
    MP_ASSERT_OK(mp_cond_acquire(c, MP_FOREVER));
    int n = mp__cond_nwait_for_tests(c);
    MP_ASSERT_OK(mp_cond_release(c));
    if (n == N)
      break;
    sched_yield();
  }
  MP_ASSERT_OK(mp_cond_acquire(c, MP_FOREVER));
  MP_ASSERT_OK(mp_cond_notify(c, 1));
  MP_ASSERT_OK(mp_cond_release(c));
  MP_ASSERT_OK(mp_sem_acquire(woken, 10));
  /* at most one woke: the others are still waiting */
  MP_ASSERT_ERR(mp_sem_acquire(woken, 0.1), MP_ETIMEDOUT);
  MP_ASSERT_OK(mp_cond_acquire(c, MP_FOREVER));
  assert_int_equal(mp__cond_nwait_for_tests(c), N - 1);
  MP_ASSERT_OK(mp_cond_notify(c, 0)); /* wakes none */
  MP_ASSERT_OK(mp_cond_notify_all(c));
  MP_ASSERT_OK(mp_cond_release(c));
  for (int i = 0; i < N; i++) {
    pthread_join(t[i], NULL);
    MP_ASSERT_OK(a[i].rc);
  }
  assert_int_equal(mp_sem_get_value(woken), N - 1);
  mp_sem_free(woken);
  mp_cond_free(c);
}

/* A process waits with wait_for on a flag in shared memory. */
static void
test_condition_processes(void **state)
{
  mp_cond *c;
  MP_ASSERT_OK(mp_cond_new(&c, NULL));
  int *flag = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(flag != MAP_FAILED);
  pid_t pids[2];
  for (int i = 0; i < 2; i++) {
    pids[i] = fork();
    if (pids[i] == 0) {
      if (mp_cond_acquire(c, MP_FOREVER))
        _exit(1);
      int rc = mp_cond_wait_for(c, flag_set, flag, 20);
      mp_cond_release(c);
      _exit(rc == 0 ? 0 : 2);
    }
  }
  MP_ASSERT_OK(mp_cond_acquire(c, MP_FOREVER));
  *flag = 1;
  MP_ASSERT_OK(mp_cond_notify_all(c));
  MP_ASSERT_OK(mp_cond_release(c));
  for (int i = 0; i < 2; i++)
    assert_int_equal(wait_child(pids[i]), 0);
  munmap(flag, 4096);
  mp_cond_free(c);
}

/* The Condition's lock dies with its holder: the waiter is told. */
static void
test_condition_owner_death(void **state)
{
  mp_cond *c;
  MP_ASSERT_OK(mp_cond_new(&c, NULL));
  kill_holder(mp_cond_lock(c));
  MP_ASSERT_ERR(mp_cond_acquire(c, 1), MP_EOWNERDEAD);
  MP_ASSERT_ERR(mp_cond_wait(c, 0.01), MP_ETIMEDOUT);
  MP_ASSERT_OK(mp_cond_release(c));
  mp_cond_free(c);
}

/* ---- Barrier ------------------------------------------------------------- */

static _Atomic int action_runs;
static int
count_action(void *arg)
{
  (void)arg;
  action_runs++;
  return 0;
}

static int
failing_action(void *arg)
{
  (void)arg;
  return -42;
}

struct bar_arg {
  mp_barrier *b;
  int rc;
  double timeout;
};

static void *
bar_waiter(void *arg)
{
  struct bar_arg *a = arg;
  a->rc = mp_barrier_wait(a->b, a->timeout);
  return NULL;
}

static void
test_barrier_threads(void **state)
{
  mp_barrier *b;
  MP_ASSERT_ERR(mp_barrier_new(&b, 0, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_barrier_new(&b, -3, NULL), MP_EINVAL);
  MP_ASSERT_OK(mp_barrier_new(&b, 3,
                              &(mp_barrier_opts){.action = count_action}));
  assert_int_equal(mp_barrier_parties(b), 3);
  assert_int_equal(mp_barrier_n_waiting(b), 0);
  assert_int_equal(mp_barrier_broken(b), 0);
  action_runs = 0;
  for (int round = 0; round < 3; round++) {
    struct bar_arg a[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
      a[i] = (struct bar_arg){.b = b, .timeout = MP_FOREVER};
      pthread_create(&t[i], NULL, bar_waiter, &a[i]);
    }
    int seen = 0;
    for (int i = 0; i < 3; i++) {
      pthread_join(t[i], NULL);
      assert_true(a[i].rc >= 0 && a[i].rc < 3);
      seen |= 1 << a[i].rc;
    }
    assert_int_equal(seen, 7); /* distinct arrival indices */
    assert_int_equal(action_runs, round + 1);
  }
  mp_barrier_free(b);
}

static void
test_barrier_break_abort_reset(void **state)
{
  mp_barrier *b;
  /* timeout: the waiter that times out and the others get MP_EBROKEN */
  MP_ASSERT_OK(mp_barrier_new(&b, 3, NULL));
  struct bar_arg a = {.b = b, .timeout = MP_FOREVER};
  pthread_t t;
  pthread_create(&t, NULL, bar_waiter, &a);
  while (mp_barrier_n_waiting(b) != 1)
    sched_yield();
  MP_ASSERT_ERR(mp_barrier_wait(b, 0.05), MP_EBROKEN);
  pthread_join(t, NULL);
  MP_ASSERT_ERR(a.rc, MP_EBROKEN);
  assert_int_equal(mp_barrier_broken(b), 1);
  MP_ASSERT_ERR(mp_barrier_wait(b, 0), MP_EBROKEN);
  MP_ASSERT_OK(mp_barrier_reset(b));
  assert_int_equal(mp_barrier_broken(b), 0);
  /* abort wakes a waiter with MP_EBROKEN */
  a.rc = 1;
  pthread_create(&t, NULL, bar_waiter, &a);
  while (mp_barrier_n_waiting(b) != 1)
    sched_yield();
  MP_ASSERT_OK(mp_barrier_abort(b));
  pthread_join(t, NULL);
  MP_ASSERT_ERR(a.rc, MP_EBROKEN);
  /* reset while a waiter waits: it gets MP_EBROKEN, the barrier is usable */
  MP_ASSERT_OK(mp_barrier_reset(b));
  pthread_create(&t, NULL, bar_waiter, &a);
  while (mp_barrier_n_waiting(b) != 1)
    sched_yield();
  MP_ASSERT_OK(mp_barrier_reset(b));
  pthread_join(t, NULL);
  MP_ASSERT_ERR(a.rc, MP_EBROKEN);
  assert_int_equal(mp_barrier_broken(b), 0);
  mp_barrier_free(b);

  /* the default timeout is passed explicitly (Python's wait()) */
  MP_ASSERT_OK(mp_barrier_new(&b, 2, &(mp_barrier_opts){.timeout = 0.03}));
  assert_true(mp_barrier_timeout(b) == 0.03);
  MP_ASSERT_ERR(mp_barrier_wait(b, mp_barrier_timeout(b)), MP_EBROKEN);
  mp_barrier_free(b);
  MP_ASSERT_OK(mp_barrier_new(&b, 1, NULL));
  assert_true(mp_barrier_timeout(b) == MP_FOREVER);
  assert_true(mp_barrier_timeout(NULL) == MP_FOREVER);
  mp_barrier_free(b);
  MP_ASSERT_ERR(mp_barrier_new(&b, 2, &(mp_barrier_opts){.timeout = -1}), MP_EINVAL);
  MP_ASSERT_ERR(mp_barrier_new(&b, 2, &(mp_barrier_opts){.timeout = NAN}), MP_EINVAL);

  /* a failing action: its code for the last arrival, MP_EBROKEN others */
  MP_ASSERT_OK(mp_barrier_new(&b, 2,
                              &(mp_barrier_opts){.action = failing_action}));
  a.b = b;
  a.rc = 1;
  pthread_create(&t, NULL, bar_waiter, &a);
  while (mp_barrier_n_waiting(b) != 1)
    sched_yield();
  assert_int_equal(mp_barrier_wait(b, MP_FOREVER), -42);
  pthread_join(t, NULL);
  MP_ASSERT_ERR(a.rc, MP_EBROKEN);
  assert_int_equal(mp_barrier_broken(b), 1);
  mp_barrier_free(b);

  /* parties = 1 passes at once */
  MP_ASSERT_OK(mp_barrier_new(&b, 1, NULL));
  assert_int_equal(mp_barrier_wait(b, 0), 0);
  mp_barrier_free(b);
}

/* Processes at a barrier; one of them is killed while waiting. */
static void
test_barrier_processes_and_death(void **state)
{
  mp_barrier *b;
  MP_ASSERT_OK(mp_barrier_new(&b, 3, NULL));
  pid_t pids[2];
  for (int i = 0; i < 2; i++) {
    pids[i] = fork();
    if (pids[i] == 0) {
      int r = mp_barrier_wait(b, 20);
      _exit(r >= 0 && r < 3 ? 10 + r : 1);
    }
  }
  int r = mp_barrier_wait(b, 20);
  assert_true(r >= 0 && r < 3);
  int seen = 1 << r;
  for (int i = 0; i < 2; i++) {
    int st = wait_child(pids[i]);
    assert_true(st >= 10 && st < 13);
    seen |= 1 << (st - 10);
  }
  assert_int_equal(seen, 7);

  /* a waiter dies: the others do not wait forever */
  pid_t pid = fork();
  if (pid == 0) {
    mp_barrier_wait(b, MP_FOREVER);
    _exit(1);
  }
  while (mp_barrier_n_waiting(b) != 1)
    sched_yield();
  kill(pid, SIGKILL);
  assert_int_equal(wait_child(pid), 128 + SIGKILL);
  MP_ASSERT_ERR(mp_barrier_wait(b, 20), MP_EBROKEN);
  assert_int_equal(mp_barrier_broken(b), 1);
  MP_ASSERT_OK(mp_barrier_reset(b));
  assert_int_equal(mp_barrier_n_waiting(b), 0);
  mp_barrier_free(b);
}

/* ---- cost ---------------------------------------------------------------- */

static void
test_100k_locks(void **state)
{
  enum { N = 100000 };
  mp__arena_trim(); /* what earlier tests left kept for reuse */
  int fds0 = mp_test_count_fds();
  mp_lock **ls = calloc(N, sizeof *ls);
  for (int i = 0; i < N; i++)
    MP_ASSERT_OK((i & 1) ? mp_rlock_new(&ls[i]) : mp_lock_new(&ls[i]));
  size_t slabs, bytes;
  mp__arena_stats(&slabs, &bytes);
  assert_true(slabs <= 16);
  assert_true(mp_test_count_fds() - fds0 <= 16);
  /* every one is a working, independent lock */
  for (int i = 0; i < N; i++)
    MP_ASSERT_OK(mp_lock_acquire(ls[i], 0));
  MP_ASSERT_ERR(mp_lock_acquire(ls[N / 2], 0), MP_ETIMEDOUT);
  /* a forked child sees them locked */
  pid_t pid = fork();
  if (pid == 0) {
    for (int i = 0; i < N; i += 997)
      if (mp_lock_acquire(ls[i], 0) != MP_ETIMEDOUT)
        _exit(1);
    _exit(0);
  }
  assert_int_equal(wait_child(pid), 0);
  for (int i = 0; i < N; i++) {
    MP_ASSERT_OK(mp_lock_release(ls[i]));
    mp_lock_free(ls[i]);
  }
  free(ls);
  mp__arena_stats(&slabs, &bytes);
  assert_int_equal(slabs, 1); /* one kept for the next objects */
  mp__arena_trim();
  mp__arena_stats(&slabs, &bytes);
  assert_int_equal(slabs, 0);
  assert_int_equal(mp_test_count_fds(), fds0);
}

/* ---- the arena ----------------------------------------------------------- */

/* A fork child's inherited handle holds no shared reference: freeing it
 * there does not recycle the parent's block. */
static void
test_arena_fork_copies(void **state)
{
  mp_lock *l, *n;
  MP_ASSERT_OK(mp_lock_new(&l));
  MP_ASSERT_OK(mp_lock_acquire(l, 0));
  pid_t pid = fork();
  if (pid == 0) {
    mp_lock_free(l);
    _exit(0);
  }
  assert_int_equal(wait_child(pid), 0);
  MP_ASSERT_OK(mp_lock_new(&n));
  assert_ptr_not_equal(n->s, l->s);
  MP_ASSERT_ERR(mp_lock_acquire(l, 0), MP_ETIMEDOUT); /* still ours */
  MP_ASSERT_OK(mp_lock_release(l));
  mp_lock_free(n);
  mp_lock_free(l);
}

/* The last reference dropped in another process returns the block to its
 * owner through the slab's remote-free list. */
static void
test_arena_remote_free(void **state)
{
  mp_lock *keeper, *a, *b;
  MP_ASSERT_OK(mp_lock_new(&keeper));
  MP_ASSERT_OK(mp_lock_new(&a));
  mp__arena_loc loc;
  int fd;
  mp__arena_export(a->h.ref, &loc, &fd);
  int p1[2], p2[2];
  assert_int_equal(pipe(p1), 0);
  assert_int_equal(pipe(p2), 0);
  char c = 'x';
  pid_t pid = fork();
  if (pid == 0) {
    mp__shref r;
    void *ptr;
    size_t sz;
    if (mp__arena_import(&loc, -1, MP__K_LOCK, &r, &ptr, &sz) || ptr != (void *)a->s)
      _exit(1);
    if (write(p2[1], &c, 1) != 1 || read(p1[0], &c, 1) != 1)
      _exit(2);
    mp__arena_unref(r); /* the last reference */
    _exit(write(p2[1], &c, 1) == 1 ? 0 : 3);
  }
  assert_int_equal(read(p2[0], &c, 1), 1);
  mp_lock_free(a); /* not the last: the child holds one */
  assert_int_equal(write(p1[1], &c, 1), 1);
  assert_int_equal(read(p2[0], &c, 1), 1);
  assert_int_equal(wait_child(pid), 0);
  MP_ASSERT_OK(mp_lock_new(&b));
  assert_int_equal(b->h.ref.off, loc.off); /* recycled */
  assert_int_equal(mp_lock_locked(b), 0);
  mp_lock_free(b);
  mp_lock_free(keeper);
  for (int i = 0; i < 2; i++) {
    close(p1[i]);
    close(p2[i]);
  }
}

static void
test_arena_import_errors(void **state)
{
  mp_lock *l;
  MP_ASSERT_OK(mp_lock_new(&l));
  mp__arena_loc loc, bad;
  int fd;
  mp__shref r;
  void *p;
  size_t sz;
  mp__arena_export(l->h.ref, &loc, &fd);
  bad = loc;
  bad.off = 3; /* inside the header */
  MP_ASSERT_ERR(mp__arena_import(&bad, -1, MP__K_LOCK, &r, &p, &sz), MP_EMALFORMED);
  bad = loc;
  bad.off = (uint32_t)loc.slab_size + 16;
  MP_ASSERT_ERR(mp__arena_import(&bad, -1, MP__K_LOCK, &r, &p, &sz), MP_EMALFORMED);
  bad = loc;
  bad.slab_size = 7;
  MP_ASSERT_ERR(mp__arena_import(&bad, -1, MP__K_LOCK, &r, &p, &sz), MP_EMALFORMED);
  bad = loc;
  bad.arena_id ^= 1; /* an unknown slab without its fd */
  MP_ASSERT_ERR(mp__arena_import(&bad, -1, MP__K_LOCK, &r, &p, &sz), MP_EBADF);
  /* an fd that is not that slab */
  int other = open("/dev/zero", O_RDONLY | O_CLOEXEC);
  MP_ASSERT_ERR(mp__arena_import(&bad, other, MP__K_LOCK, &r, &p, &sz), MP_EMALFORMED);
  int memfd = dup(fd);
  bad = loc;
  bad.arena_id ^= 1;
  MP_ASSERT_ERR(mp__arena_import(&bad, memfd, MP__K_LOCK, &r, &p, &sz), MP_EMALFORMED);
  /* the same slab: fine, and the copy of the fd is closed */
  MP_ASSERT_OK(mp__arena_import(&loc, dup(fd), MP__K_LOCK, &r, &p, &sz));
  assert_ptr_equal(p, l->s);
  mp__arena_unref(r);
  /* a freed block cannot be imported */
  mp_lock *keeper;
  MP_ASSERT_OK(mp_lock_new(&keeper));
  mp_lock_free(l);
  MP_ASSERT_ERR(mp__arena_import(&loc, -1, MP__K_LOCK, &r, &p, &sz), MP_ESTATE);
  mp_lock_free(keeper);
}

/* RLock recursion past UINT32_MAX; an unbounded semaphore at its maximum. */
static void
test_overflow_codes(void **state)
{
  mp_rlock *l;
  MP_ASSERT_OK(mp_rlock_new(&l));
  MP_ASSERT_OK(mp_rlock_acquire(l, 0));
  l->s->count = UINT32_MAX;
  MP_ASSERT_ERR(mp_rlock_acquire(l, 0), MP_EOVERFLOW);
  l->s->count = 1;
  MP_ASSERT_OK(mp_rlock_release(l));
  mp_rlock_free(l);
  mp_sem *s;
  MP_ASSERT_OK(mp_sem_new(&s, MP_SEM_VALUE_MAX, NULL));
  MP_ASSERT_ERR(mp_sem_release(s), MP_EOVERFLOW);
  mp_sem_free(s);
}

struct cwait_arg {
  mp_cond *c;
  int rc;
};

static void *
cond_wait_long(void *arg)
{
  struct cwait_arg *a = arg;
  mp_cond_acquire(a->c, MP_FOREVER);
  a->rc = mp_cond_wait(a->c, 0.05);
  mp_cond_release(a->c);
  return NULL;
}

/* A waiter whose lock is taken, while it waits, by a process that then
 * dies: wait re-acquires the lock and says MP_EOWNERDEAD. */
static void
test_condition_wait_owner_death(void **state)
{
  mp_cond *c;
  MP_ASSERT_OK(mp_cond_new(&c, NULL));
  struct cwait_arg a = {.c = c, .rc = 1};
  pthread_t t;
  /* hold the lock so the waiter's wait starts before the child takes it */
  MP_ASSERT_OK(mp_cond_acquire(c, 0));
  pthread_create(&t, NULL, cond_wait_long, &a);
  for (;;) {
    int n = mp__cond_nwait_for_tests(c);
    MP_ASSERT_OK(mp_cond_release(c));
    if (n == 1)
      break;
    sched_yield();
    MP_ASSERT_OK(mp_cond_acquire(c, MP_FOREVER));
  }
  /* the waiter sleeps with the lock released: a child takes it and dies */
  kill_holder(mp_cond_lock(c));
  pthread_join(t, NULL);
  MP_ASSERT_ERR(a.rc, MP_EOWNERDEAD);
  mp_cond_free(c);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_lock_basic),
    cmocka_unit_test(test_lock_release_by_other_thread),
    cmocka_unit_test(test_lock_between_processes),
    cmocka_unit_test(test_rlock),
    cmocka_unit_test(test_lock_error_detail),
    cmocka_unit_test(test_owner_death_lock),
    cmocka_unit_test(test_owner_death_wakes_waiter),
    cmocka_unit_test(test_semaphore),
    cmocka_unit_test(test_event),
    cmocka_unit_test(test_condition_errors),
    cmocka_unit_test(test_condition_notify_counts),
    cmocka_unit_test(test_condition_processes),
    cmocka_unit_test(test_condition_owner_death),
    cmocka_unit_test(test_barrier_threads),
    cmocka_unit_test(test_barrier_break_abort_reset),
    cmocka_unit_test(test_barrier_processes_and_death),
    cmocka_unit_test(test_100k_locks),
    cmocka_unit_test(test_arena_fork_copies),
    cmocka_unit_test(test_arena_remote_free),
    cmocka_unit_test(test_arena_import_errors),
    cmocka_unit_test(test_overflow_codes),
    cmocka_unit_test(test_condition_wait_owner_death),
};

MP_TEST_MAIN(tests)
