/* SPDX-License-Identifier: MIT */
/* Every primitive passed in Process args and used by the child under each
 * start method (fork, spawn, forkserver, threading): the child works on the
 * same shared objects as the parent.  Owner death with real SIGKILLs under
 * the OS methods. */
#define _GNU_SOURCE
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc/proc_internal.h"
#include "sync/sync_internal.h"

static const char *const methods[] = {"fork", "spawn", "forkserver",
                                      "threading", NULL};
static const char *const os_methods[] = {"fork", "spawn", "forkserver",
                                         NULL};

static mp_process *
start(const char *method, mp_target_fn fn, mp_obj *args)
{
  mp_context *ctx;
  MP_ASSERT_OK(mp_get_context(method, &ctx));
  mp_process *p = NULL;
  assert_non_null(args);
  MP_ASSERT_OK(mp_process_new(&p, ctx,
                              &(mp_process_opts){.target = fn, .args = args}));
  mp_obj_free(args);
  MP_ASSERT_OK(mp_process_start(p));
  return p;
}

static int
finish(mp_process *p)
{
  MP_ASSERT_OK(mp_process_join(p, 60));
  int code = -1000;
  MP_ASSERT_OK(mp_process_exitcode(p, &code));
  MP_ASSERT_OK(mp_process_close(p));
  mp_process_free(p);
  return code;
}

/* The barrier action counts its runs in a shared Value that each process
 * publishes here before waiting (a global: visible to the action in the
 * process that runs it, whatever the start method). */
static _Thread_local mp_value *action_counter;
static int
count_action(void *arg)
{
  (void)arg;
  mp_lock_acquire(mp_value_get_lock(action_counter), MP_FOREVER);
  int64_t n = 0;
  mp_value_get_int(action_counter, &n);
  mp_value_set_int(action_counter, n + 1);
  mp_lock_release(mp_value_get_lock(action_counter));
  return 0;
}

static int
value_is_42(void *arg)
{
  int64_t x = 0;
  mp_value_get_int(arg, &x);
  return x == 42;
}

/* args: (lock, rlock, sem, event, cond, barrier, value, array, shm, counter) */
static int
t_all(mp_obj *args)
{
  mp_lock *lock = mp_lock_from_obj(mp_seq_item(args, 0));
  mp_rlock *rlock = mp_lock_from_obj(mp_seq_item(args, 1));
  mp_sem *sem = mp_sem_from_obj(mp_seq_item(args, 2));
  mp_event *ev = mp_event_from_obj(mp_seq_item(args, 3));
  mp_cond *cond = mp_cond_from_obj(mp_seq_item(args, 4));
  mp_barrier *bar = mp_barrier_from_obj(mp_seq_item(args, 5));
  mp_value *val = mp_value_from_obj(mp_seq_item(args, 6));
  mp_array *arr = mp_array_from_obj(mp_seq_item(args, 7));
  mp_shm *shm = mp_shm_from_obj(mp_seq_item(args, 8));
  action_counter = mp_value_from_obj(mp_seq_item(args, 9));
  if (!lock || !rlock || !sem || !ev || !cond || !bar || !val || !arr || !shm
      || !action_counter)
    return 1;
  /* the parent holds lock and rlock */
  if (mp_lock_acquire(lock, 0) != MP_ETIMEDOUT)
    return 2;
  if (mp_rlock_release(rlock) != MP_ENOTOWNER)
    return 3;
  if (mp_rlock_acquire(rlock, 0.01) != MP_ETIMEDOUT)
    return 4;
  if (mp_sem_release(sem) != 0) /* the parent waits for this */
    return 5;
  if (mp_event_wait(ev, 30) != 0)
    return 6;
  /* the parent has released the lock before setting the event */
  if (mp_lock_acquire(lock, 30) != 0 || mp_lock_release(lock) != 0)
    return 7;
  int idx = mp_barrier_wait(bar, 30);
  if (idx < 0 || idx > 1)
    return 8;
  for (size_t i = 0; i < mp_array_len(arr); i++) {
    double d;
    if (mp_array_get_double(arr, (int64_t)i, &d)
        || mp_array_set_double(arr, (int64_t)i, -d))
      return 9;
  }
  memcpy(mp_shm_buf(shm), "hello from the child", 21);
  if (mp_cond_acquire(cond, 30) || mp_value_set_int(val, 42)
      || mp_cond_notify_all(cond) || mp_cond_release(cond))
    return 10;
  /* second barrier round: the parent has checked everything */
  if (mp_barrier_wait(bar, 30) < 0)
    return 11;
  return 0;
}

static void
test_all_primitives_in_args(void **state)
{
  for (int m = 0; methods[m]; m++) {
    mp_lock *lock;
    mp_rlock *rlock;
    mp_sem *sem;
    mp_event *ev;
    mp_cond *cond;
    mp_barrier *bar;
    mp_value *val, *counter;
    mp_array *arr;
    mp_shm *shm;
    MP_ASSERT_OK(mp_lock_new(&lock));
    MP_ASSERT_OK(mp_rlock_new(&rlock));
    MP_ASSERT_OK(mp_sem_new(&sem, 0, NULL));
    MP_ASSERT_OK(mp_event_new(&ev));
    MP_ASSERT_OK(mp_value_new(&val, 'i', NULL, NULL));
    MP_ASSERT_OK(mp_cond_new(&cond, mp_value_get_lock(val)));
    MP_ASSERT_OK(mp_barrier_new(&bar, 2,
                                &(mp_barrier_opts){.action = count_action}));
    double init[4] = {1.5, -2, 3.25, 0};
    MP_ASSERT_OK(mp_array_new(&arr, 'd', 4, init, NULL));
    MP_ASSERT_OK(mp_shm_new(&shm, NULL,
                            &(mp_shm_opts){.create = 1, .size = 4096}));
    MP_ASSERT_OK(mp_value_new(&counter, 'q', NULL, NULL));
    action_counter = counter;

    MP_ASSERT_OK(mp_lock_acquire(lock, 0));
    MP_ASSERT_OK(mp_rlock_acquire(rlock, 0));
    mp_process *p = start(
        methods[m], t_all,
        MP_TUPLE(mp_lock_obj(lock), mp_lock_obj(rlock), mp_sem_obj(sem),
                 mp_event_obj(ev), mp_cond_obj(cond), mp_barrier_obj(bar),
                 mp_value_obj(val), mp_array_obj(arr), mp_shm_obj(shm),
                 mp_value_obj(counter)));
    MP_ASSERT_OK(mp_sem_acquire(sem, 30));
    MP_ASSERT_OK(mp_lock_release(lock));
    MP_ASSERT_OK(mp_event_set(ev));
    int idx = mp_barrier_wait(bar, 30);
    assert_true(idx == 0 || idx == 1);
    MP_ASSERT_OK(mp_cond_acquire(cond, 30));
    MP_ASSERT_OK(mp_cond_wait_for(cond, value_is_42, val, 30));
    MP_ASSERT_OK(mp_cond_release(cond));
    double out[4];
    MP_ASSERT_OK(mp_array_read(arr, 0, 4, out));
    for (int i = 0; i < 4; i++)
      assert_true(out[i] == -init[i]);
    assert_string_equal(mp_shm_buf(shm), "hello from the child");
    int64_t runs = 0;
    MP_ASSERT_OK(mp_value_get_int(counter, &runs));
    assert_int_equal(runs, 1); /* one round, one action run */
    assert_true(mp_barrier_wait(bar, 30) >= 0);
    if (finish(p) != 0)
      fail_msg("child under %s failed", methods[m]);
    MP_ASSERT_OK(mp_value_get_int(counter, &runs));
    assert_int_equal(runs, 2);
    MP_ASSERT_OK(mp_rlock_release(rlock));
    MP_ASSERT_OK(mp_shm_unlink(shm));
    mp_shm_free(shm);
    mp_lock_free(lock);
    mp_rlock_free(rlock);
    mp_sem_free(sem);
    mp_event_free(ev);
    mp_cond_free(cond);
    mp_barrier_free(bar);
    mp_value_free(val);
    mp_value_free(counter);
    mp_array_free(arr);
  }
}

/* ---- more semantics across processes, under each method ------------------ */

/* args: (cond, sem "woken", barrier of 3, bounded sem at its initial 1) */
static int
t_waiter(mp_obj *args)
{
  mp_cond *c = mp_cond_from_obj(mp_seq_item(args, 0));
  mp_sem *woken = mp_sem_from_obj(mp_seq_item(args, 1));
  mp_barrier *b = mp_barrier_from_obj(mp_seq_item(args, 2));
  mp_sem *bounded = mp_sem_from_obj(mp_seq_item(args, 3));
  if (!c || !woken || !b || !bounded)
    return 1;
  /* a bounded semaphore at its initial value refuses a release */
  if (mp_sem_release(bounded) != MP_EOVERFLOW)
    return 2;
  if (mp_cond_acquire(c, 30))
    return 3;
  int rc = mp_cond_wait(c, 30);
  mp_cond_release(c);
  if (rc)
    return 4;
  mp_sem_release(woken);
  /* the parent aborts the barrier while we wait */
  if (mp_barrier_wait(b, 30) != MP_EBROKEN)
    return 5;
  return 0;
}

static void
test_semantics_each_method(void **state)
{
  for (int m = 0; methods[m]; m++) {
    mp_cond *c;
    mp_sem *woken, *bounded;
    mp_barrier *b;
    MP_ASSERT_OK(mp_cond_new(&c, NULL));
    MP_ASSERT_OK(mp_sem_new(&woken, 0, NULL));
    MP_ASSERT_OK(mp_sem_new(&bounded, 1, &(mp_sem_opts){.bounded = 1}));
    MP_ASSERT_OK(mp_barrier_new(&b, 3, NULL));
    mp_process *p[2];
    for (int i = 0; i < 2; i++)
      p[i] = start(methods[m], t_waiter,
                   MP_TUPLE(mp_cond_obj(c), mp_sem_obj(woken),
                            mp_barrier_obj(b), mp_sem_obj(bounded)));
    /* both children waiting on the condition */
    for (;;) {
      MP_ASSERT_OK(mp_cond_acquire(c, 30));
      int n = mp__cond_nwait_for_tests(c);
      if (n == 2)
        break;
      MP_ASSERT_OK(mp_cond_release(c));
      sched_yield();
    }
    MP_ASSERT_OK(mp_cond_notify(c, 1));
    MP_ASSERT_OK(mp_cond_release(c));
    MP_ASSERT_OK(mp_sem_acquire(woken, 30));
    /* notify(1) woke one process: the other still waits */
    MP_ASSERT_ERR(mp_sem_acquire(woken, 0.1), MP_ETIMEDOUT);
    MP_ASSERT_OK(mp_cond_acquire(c, 30));
    MP_ASSERT_OK(mp_cond_notify_all(c));
    MP_ASSERT_OK(mp_cond_release(c));
    MP_ASSERT_OK(mp_sem_acquire(woken, 30));
    /* both at the barrier of 3: abort breaks it for them */
    while (mp_barrier_n_waiting(b) != 2)
      sched_yield();
    MP_ASSERT_OK(mp_barrier_abort(b));
    for (int i = 0; i < 2; i++)
      if (finish(p[i]) != 0)
        fail_msg("child under %s failed", methods[m]);
    assert_int_equal(mp_barrier_broken(b), 1);
    MP_ASSERT_OK(mp_barrier_reset(b));
    assert_int_equal(mp_barrier_broken(b), 0);
    assert_int_equal(mp_sem_get_value(bounded), 1);
    mp_cond_free(c);
    mp_sem_free(woken);
    mp_sem_free(bounded);
    mp_barrier_free(b);
  }
}

/* ---- handles sent through a Connection after the child started ---------- */

/* args: (conn,) -- receives (lock, value) in one message, then (lock,)
 * again, and answers "ok".  Both handles of the first message live in one
 * slab (one fd), which the receiver may already have mapped (a threading
 * child, or a fork child): every handle must still be rebuilt. */
static int
t_receiver(mp_obj *args)
{
  mp_conn *c = mp_conn_from_obj(mp_seq_item(args, 0));
  mp_obj *msg = NULL;
  mp_obj *msg2 = NULL;
  if (!c || mp_conn_recv(c, &msg, 30) || mp_conn_recv(c, &msg2, 30))
    return 1;
  mp_lock *l = mp_lock_from_obj(mp_seq_item(msg, 0));
  mp_value *v = mp_value_from_obj(mp_seq_item(msg, 1));
  mp_lock *l2 = mp_lock_from_obj(mp_seq_item(msg2, 0));
  int rc = 0;
  if (!l || !v || !l2 || mp_lock_acquire(l, 0) != MP_ETIMEDOUT ||
      mp_lock_acquire(l2, 0) != MP_ETIMEDOUT)
    rc = 2;
  else if (mp_value_set_int(v, 7))
    rc = 3;
  mp_obj *ok = mp_str_new("ok");
  if (mp_conn_send(c, ok))
    rc = 4;
  mp_obj_free(ok);
  mp_obj_free(msg);
  mp_obj_free(msg2);
  return rc;
}

static void
test_send_over_connection(void **state)
{
  for (int m = 0; methods[m]; m++) {
    mp_conn *a, *b;
    MP_ASSERT_OK(mp_pipe(&a, &b, 1));
    mp_process *p = start(methods[m], t_receiver, MP_TUPLE(mp_conn_obj(b)));
    mp_lock *l;
    mp_value *v;
    MP_ASSERT_OK(mp_lock_new(&l));
    MP_ASSERT_OK(mp_value_new(&v, 'i', NULL, NULL));
    MP_ASSERT_OK(mp_lock_acquire(l, 0));
    mp_obj *msg = MP_TUPLE(mp_lock_obj(l), mp_value_obj(v));
    MP_ASSERT_OK(mp_conn_send(a, msg));
    mp_obj_free(msg);
    msg = MP_TUPLE(mp_lock_obj(l));
    MP_ASSERT_OK(mp_conn_send(a, msg));
    mp_obj_free(msg);
    mp_obj *ok = NULL;
    MP_ASSERT_OK(mp_conn_recv(a, &ok, 30));
    mp_obj_free(ok);
    if (finish(p) != 0)
      fail_msg("receiver under %s failed", methods[m]);
    int64_t x;
    MP_ASSERT_OK(mp_value_get_int(v, &x));
    assert_int_equal(x, 7);
    MP_ASSERT_OK(mp_lock_release(l));
    mp_lock_free(l);
    mp_value_free(v);
    mp_conn_free(a);
    mp_conn_free(b); /* after join: a threading child uses this very one */
  }
}

/* ---- owner death under the OS methods --------------------------------- */

/* args: (lock or rlock, event "holding", barrier or None) */
static int
t_hold_forever(mp_obj *args)
{
  mp_lock *l = mp_lock_from_obj(mp_seq_item(args, 0));
  mp_event *held = mp_event_from_obj(mp_seq_item(args, 1));
  mp_barrier *b = mp_barrier_from_obj(mp_seq_item(args, 2));
  if (l && mp_lock_acquire(l, 30) != 0)
    return 1;
  mp_event_set(held);
  if (b)
    mp_barrier_wait(b, MP_FOREVER);
  for (;;)
    pause();
}

static void
test_owner_death_methods(void **state)
{
  for (int m = 0; os_methods[m]; m++) {
    for (int kind = 0; kind < 3; kind++) {
      mp_lock *l = NULL;
      mp_cond *c = NULL;
      if (kind == 0)
        MP_ASSERT_OK(mp_lock_new(&l));
      else if (kind == 1)
        MP_ASSERT_OK(mp_rlock_new(&l));
      else {
        MP_ASSERT_OK(mp_cond_new(&c, NULL));
        l = mp_cond_lock(c);
      }
      mp_event *held;
      MP_ASSERT_OK(mp_event_new(&held));
      mp_process *p = start(os_methods[m], t_hold_forever,
                            MP_TUPLE(mp_lock_obj(l), mp_event_obj(held),
                                     mp_none()));
      MP_ASSERT_OK(mp_event_wait(held, 30));
      MP_ASSERT_ERR(mp_lock_acquire(l, 0.02), MP_ETIMEDOUT); /* alive */
      MP_ASSERT_OK(mp_process_kill(p));
      assert_int_equal(finish(p), -9);
      if (c) {
        MP_ASSERT_ERR(mp_cond_acquire(c, 30), MP_EOWNERDEAD);
        MP_ASSERT_OK(mp_cond_notify_all(c));
        MP_ASSERT_OK(mp_cond_release(c));
        mp_cond_free(c);
      } else {
        MP_ASSERT_ERR(mp_lock_acquire(l, 30), MP_EOWNERDEAD);
        MP_ASSERT_OK(mp_lock_release(l));
        MP_ASSERT_OK(mp_lock_acquire(l, 0));
        MP_ASSERT_OK(mp_lock_release(l));
        mp_lock_free(l);
      }
      mp_event_free(held);
    }
    /* a process killed while waiting at a barrier breaks it */
    mp_barrier *b;
    mp_event *held;
    MP_ASSERT_OK(mp_barrier_new(&b, 2, NULL));
    MP_ASSERT_OK(mp_event_new(&held));
    mp_process *p = start(os_methods[m], t_hold_forever,
                          MP_TUPLE(mp_none(), mp_event_obj(held),
                                   mp_barrier_obj(b)));
    MP_ASSERT_OK(mp_event_wait(held, 30));
    while (mp_barrier_n_waiting(b) != 1)
      sched_yield();
    MP_ASSERT_OK(mp_process_kill(p));
    assert_int_equal(finish(p), -9);
    MP_ASSERT_ERR(mp_barrier_wait(b, 30), MP_EBROKEN);
    assert_int_equal(mp_barrier_broken(b), 1);
    mp_barrier_free(b);
    mp_event_free(held);
  }
}

/* ---- the library's own acquires after an owner's death ------------------
 * MP_EOWNERDEAD means "acquired": every path of the library that takes a
 * lock internally must go on (and release) when a child died holding it. */

/* A child under `method` takes `l` and is SIGKILLed holding it. */
static void
kill_holder_under(const char *method, mp_lock *l)
{
  mp_event *held;
  MP_ASSERT_OK(mp_event_new(&held));
  mp_process *p = start(method, t_hold_forever,
                        MP_TUPLE(mp_lock_obj(l), mp_event_obj(held),
                                 mp_none()));
  MP_ASSERT_OK(mp_event_wait(held, 30));
  MP_ASSERT_ERR(mp_lock_acquire(l, 0.02), MP_ETIMEDOUT); /* alive */
  MP_ASSERT_OK(mp_process_kill(p));
  assert_int_equal(finish(p), -9);
  assert_int_equal(mp_lock_locked(l), 1); /* still the dead child's */
  mp_event_free(held);
}

/* args: (cond, event "notified", raw Value flag): take the condition's
 * lock, set the flag, notify, and die holding the lock. */
static int
t_notify_and_hold(mp_obj *args)
{
  mp_cond *c = mp_cond_from_obj(mp_seq_item(args, 0));
  mp_event *held = mp_event_from_obj(mp_seq_item(args, 1));
  mp_value *flag = mp_value_from_obj(mp_seq_item(args, 2));
  if (!c || !held || !flag || !mp_acquired(mp_cond_acquire(c, 30)))
    return 1;
  if (mp_value_set_int(flag, 1) || mp_cond_notify_all(c)
      || mp_event_set(held))
    return 2;
  for (;;)
    pause();
}

static int
flag_is_set(void *arg)
{
  int64_t x = 0;
  mp_value_get_int(arg, &x);
  return x == 1;
}

struct cond_waiter {
  mp_cond *c;
  mp_value *flag;
  int use_wait_for;
  int rc;
  int held_after; /* the waiter held the lock when the wait returned */
};

static void *
cond_waiter(void *arg)
{
  struct cond_waiter *w = arg;
  if ((w->rc = mp_cond_acquire(w->c, 30)) != 0)
    return NULL;
  w->rc = w->use_wait_for
              ? mp_cond_wait_for(w->c, flag_is_set, w->flag, 60)
              : mp_cond_wait(w->c, 60);
  w->held_after = mp_lock_is_mine(mp_cond_lock(w->c));
  if (w->held_after)
    mp_cond_release(w->c);
  return NULL;
}

/* The barrier action blocks forever in the child that runs it (set there
 * before it waits), holding the barrier's internal lock; elsewhere it does
 * nothing. */
static mp_event *action_blocks;
static int
blocking_action(void *arg)
{
  (void)arg;
  if (action_blocks) {
    mp_event_set(action_blocks);
    for (;;)
      pause();
  }
  return 0;
}

/* args: (barrier, event "in the action") */
static int
t_last_at_barrier(mp_obj *args)
{
  mp_barrier *b = mp_barrier_from_obj(mp_seq_item(args, 0));
  action_blocks = mp_event_from_obj(mp_seq_item(args, 1));
  if (!b || !action_blocks)
    return 1;
  mp_barrier_wait(b, 30); /* the last to arrive: runs the action */
  return 2;
}

static void *
bar_wait_thread(void *arg)
{
  mp_barrier *b = arg;
  return (void *)(intptr_t)mp_barrier_wait(b, 60);
}

static void
test_owner_death_internal_acquires(void **state)
{
  for (int m = 0; os_methods[m]; m++) {
    const char *method = os_methods[m];

    /* a Value's accessor takes the lock, does its job, releases it */
    mp_value *v;
    MP_ASSERT_OK(mp_value_new(&v, 'i', NULL, NULL));
    kill_holder_under(method, mp_value_get_lock(v));
    MP_ASSERT_ERR(mp_value_set_int(v, 5), MP_EOWNERDEAD);
    assert_int_equal(mp_lock_locked(mp_value_get_lock(v)), 0);
    int64_t x = 0;
    MP_ASSERT_OK(mp_value_get_int(v, &x));
    assert_int_equal(x, 5);
    mp_value_free(v);

    /* an Array's .value: the length, not the code (the copy was made) */
    mp_array *a;
    static const char hello[16] = "hello";
    MP_ASSERT_OK(mp_array_new(&a, 'c', sizeof hello, hello, NULL));
    kill_holder_under(method, mp_array_get_lock(a));
    char buf[32] = "";
    assert_int_equal(mp_array_get_bytes(a, buf, sizeof buf), 5);
    assert_string_equal(buf, "hello");
    assert_int_equal(mp_lock_locked(mp_array_get_lock(a)), 0);
    assert_int_equal(mp_array_get_bytes(a, buf, sizeof buf), 5);
    mp_obj *o = mp_array_to_obj(a);
    assert_non_null(o);
    mp_obj_free(o);
    assert_int_equal(mp_lock_locked(mp_array_get_lock(a)), 0);
    mp_array_free(a);

    /* a Condition waiter re-acquires the lock from a child that notified
     * and died holding it: wait and wait_for both return holding it */
    for (int use_for = 0; use_for < 2; use_for++) {
      mp_cond *c;
      mp_value *flag;
      mp_event *held;
      MP_ASSERT_OK(mp_cond_new(&c, NULL));
      MP_ASSERT_OK(mp_value_new(&flag, 'i', NULL, &(mp_value_opts){.raw = 1}));
      MP_ASSERT_OK(mp_event_new(&held));
      struct cond_waiter w = {.c = c, .flag = flag, .use_wait_for = use_for,
                              .rc = 1};
      pthread_t t;
      pthread_create(&t, NULL, cond_waiter, &w);
      /* the waiter sleeps in its wait (lock released) before the child
       * takes the lock */
      for (;;) {
        MP_ASSERT_OK(mp_cond_acquire(c, MP_FOREVER));
        int n = mp__cond_nwait_for_tests(c);
        MP_ASSERT_OK(mp_cond_release(c));
        if (n == 1)
          break;
        sched_yield();
      }
      mp_process *p = start(method, t_notify_and_hold,
                            MP_TUPLE(mp_cond_obj(c), mp_event_obj(held),
                                     mp_value_obj(flag)));
      MP_ASSERT_OK(mp_event_wait(held, 30));
      MP_ASSERT_OK(mp_process_kill(p));
      assert_int_equal(finish(p), -9);
      pthread_join(t, NULL);
      if (w.rc != MP_EOWNERDEAD || !w.held_after)
        fail_msg("%s under %s -> %s, lock held after: %d",
                 use_for ? "wait_for" : "wait", method, mp_err_name(w.rc),
                 w.held_after);
      MP_ASSERT_OK(mp_cond_acquire(c, 0)); /* released by the waiter */
      MP_ASSERT_OK(mp_cond_release(c));
      mp_event_free(held);
      mp_value_free(flag);
      mp_cond_free(c);
    }

    /* a child dies holding a Barrier's internal lock (in the action): the
     * waiter is released with MP_EBROKEN and the barrier works after a
     * reset */
    mp_barrier *b;
    mp_event *in_action;
    MP_ASSERT_OK(mp_barrier_new(&b, 2,
                                &(mp_barrier_opts){.action = blocking_action}));
    MP_ASSERT_OK(mp_event_new(&in_action));
    pthread_t t[2];
    pthread_create(&t[0], NULL, bar_wait_thread, b);
    while (mp_barrier_n_waiting(b) != 1)
      sched_yield();
    mp_process *p = start(method, t_last_at_barrier,
                          MP_TUPLE(mp_barrier_obj(b), mp_event_obj(in_action)));
    MP_ASSERT_OK(mp_event_wait(in_action, 30));
    MP_ASSERT_OK(mp_process_kill(p));
    assert_int_equal(finish(p), -9);
    void *r;
    pthread_join(t[0], &r);
    MP_ASSERT_ERR((int)(intptr_t)r, MP_EBROKEN);
    assert_int_equal(mp_barrier_broken(b), 1);
    MP_ASSERT_OK(mp_barrier_reset(b));
    for (int i = 0; i < 2; i++)
      pthread_create(&t[i], NULL, bar_wait_thread, b);
    int seen = 0;
    for (int i = 0; i < 2; i++) {
      pthread_join(t[i], &r);
      int idx = (int)(intptr_t)r;
      assert_true(idx == 0 || idx == 1);
      seen |= 1 << idx;
    }
    assert_int_equal(seen, 3);
    mp_event_free(in_action);
    mp_barrier_free(b);
  }
}

/* ---- 2 processes x 2 threads hammering one primitive --------------------- */

enum { P_LOCK, P_RLOCK, P_SEM, P_COND };
#define ITERS 400000

struct shared_counts {
  uint32_t holder; /* who is inside the critical section */
  uint32_t violations;
  uint64_t counter;
};

struct worker {
  int prim;
  mp_lock *l;
  mp_sem *s;
  mp_cond *c;
  struct shared_counts *sc;
  uint32_t id;
  int err;
};

static void
enter(struct worker *w)
{
  int rc = 0;
  switch (w->prim) {
  case P_LOCK:
    rc = mp_lock_acquire(w->l, 30);
    break;
  case P_RLOCK:
    rc = mp_rlock_acquire(w->l, 30);
    if (!rc)
      rc = mp_rlock_acquire(w->l, 0); /* recursion inside */
    break;
  case P_SEM:
    rc = mp_sem_acquire(w->s, 30);
    break;
  case P_COND:
    rc = mp_cond_acquire(w->c, 30);
    break;
  }
  if (rc)
    w->err = rc;
  if (__atomic_exchange_n(&w->sc->holder, w->id, __ATOMIC_RELAXED) != 0)
    __atomic_fetch_add(&w->sc->violations, 1, __ATOMIC_RELAXED);
}

static void
leave(struct worker *w)
{
  if (__atomic_exchange_n(&w->sc->holder, 0, __ATOMIC_RELAXED) != w->id)
    __atomic_fetch_add(&w->sc->violations, 1, __ATOMIC_RELAXED);
  int rc = 0;
  switch (w->prim) {
  case P_LOCK:
    rc = mp_lock_release(w->l);
    break;
  case P_RLOCK:
    rc = mp_rlock_release(w->l);
    if (!rc)
      rc = mp_rlock_release(w->l);
    break;
  case P_SEM:
    rc = mp_sem_release(w->s);
    break;
  case P_COND:
    rc = mp_cond_notify(w->c, 1);
    if (!rc)
      rc = mp_cond_release(w->c);
    break;
  }
  if (rc)
    w->err = rc;
}

static void *
hammer(void *arg)
{
  struct worker *w = arg;
  for (int i = 0; i < ITERS; i++) {
    enter(w);
    /* a non-atomic read-modify-write: lost updates show up in the total */
    uint64_t v = __atomic_load_n(&w->sc->counter, __ATOMIC_RELAXED);
    if (w->prim == P_COND && (i & 63) == 0) {
      /* waits inside the loop: exercise wait/notify under contention (the
       * lock is released while waiting) */
      if (__atomic_exchange_n(&w->sc->holder, 0, __ATOMIC_RELAXED) != w->id)
        __atomic_fetch_add(&w->sc->violations, 1, __ATOMIC_RELAXED);
      int rc = mp_cond_wait(w->c, 0.001);
      if (rc != 0 && rc != MP_ETIMEDOUT)
        w->err = rc;
      if (__atomic_exchange_n(&w->sc->holder, w->id, __ATOMIC_RELAXED) != 0)
        __atomic_fetch_add(&w->sc->violations, 1, __ATOMIC_RELAXED);
      v = __atomic_load_n(&w->sc->counter, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&w->sc->counter, v + 1, __ATOMIC_RELAXED);
    leave(w);
  }
  return NULL;
}

/* The process body: two threads.  args: (prim, handle, raw array, base id) */
static int
run_two_threads(int prim, mp_obj *h, struct shared_counts *sc, uint32_t base)
{
  struct worker w[2];
  pthread_t t[2];
  for (int i = 0; i < 2; i++) {
    w[i] = (struct worker){.prim = prim, .sc = sc, .id = base + i};
    if (prim == P_SEM)
      w[i].s = mp_sem_from_obj(h);
    else if (prim == P_COND)
      w[i].c = mp_cond_from_obj(h);
    else
      w[i].l = mp_lock_from_obj(h);
    pthread_create(&t[i], NULL, hammer, &w[i]);
  }
  int err = 0;
  for (int i = 0; i < 2; i++) {
    pthread_join(t[i], NULL);
    if (w[i].err)
      err = 1;
  }
  return err;
}

static int
t_hammer(mp_obj *args)
{
  int64_t prim;
  mp_int_get(mp_seq_item(args, 0), &prim);
  mp_array *a = mp_array_from_obj(mp_seq_item(args, 2));
  if (!a)
    return 2;
  return run_two_threads((int)prim, mp_seq_item(args, 1), mp_array_ptr(a),
                         100);
}

static void
test_stress(void **state)
{
  const char *use[] = {"fork", "spawn"};
  for (int prim = P_LOCK; prim <= P_COND; prim++) {
    const char *method = use[prim & 1];
    mp_array *a;
    MP_ASSERT_OK(mp_array_new_struct(&a, sizeof(struct shared_counts), 8, 1,
                                     NULL, &(mp_value_opts){.raw = 1}));
    struct shared_counts *sc = mp_array_ptr(a);
    mp_obj *h = NULL;
    mp_lock *l = NULL;
    mp_sem *s = NULL;
    mp_cond *c = NULL;
    if (prim == P_LOCK)
      MP_ASSERT_OK(mp_lock_new(&l));
    else if (prim == P_RLOCK)
      MP_ASSERT_OK(mp_rlock_new(&l));
    if (l)
      h = mp_lock_obj(l);
    if (prim == P_SEM) {
      MP_ASSERT_OK(mp_sem_new(&s, 1, &(mp_sem_opts){.bounded = 1}));
      h = mp_sem_obj(s);
    }
    if (prim == P_COND) {
      MP_ASSERT_OK(mp_cond_new(&c, NULL));
      h = mp_cond_obj(c);
    }
    mp_process *p = start(method, t_hammer,
                          MP_TUPLE(mp_int_new(prim), mp_obj_ref(h),
                                   mp_array_obj(a)));
    assert_int_equal(run_two_threads(prim, h, sc, 200), 0);
    assert_int_equal(finish(p), 0);
    if (sc->violations)
      fail_msg("primitive %d: %u violations", prim, sc->violations);
    assert_int_equal(sc->counter, 4 * ITERS);
    if (s)
      assert_int_equal(mp_sem_get_value(s), 1);
    mp_obj_free(h);
    mp_lock_free(l);
    mp_sem_free(s);
    mp_cond_free(c);
    mp_array_free(a);
  }
}

static void
test_teardown_servers(void **state)
{
  mp__forkserver_stop();
  mp_resource_tracker_stop();
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_all_primitives_in_args),
    cmocka_unit_test(test_semantics_each_method),
    cmocka_unit_test(test_send_over_connection),
    cmocka_unit_test(test_owner_death_methods),
    cmocka_unit_test(test_owner_death_internal_acquires),
    cmocka_unit_test(test_stress),
    cmocka_unit_test(test_teardown_servers),
};

MP_TEST_MAIN(tests)
