/* SPDX-License-Identifier: MIT */
/* The one timeout rule, at every blocking call: > 0 waits that long (never
 * less), <= 0 -- zero, any negative value, -infinity -- does not block,
 * MP_FOREVER waits without limit, NaN is MP_EINVAL. */
#define _GNU_SOURCE
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"

typedef struct blocker {
  const char *name;
  void (*setup)(struct blocker *b);
  int (*op)(struct blocker *b, double timeout);
  void (*ready)(struct blocker *b); /* from another thread */
  void (*teardown)(struct blocker *b);
  int timed_out;                    /* what op returns when it waited in vain */
  int ok;                           /* what it returns once ready (or -1: any >= 0) */
  /* state */
  mp_lock *lock;
  mp_sem *sem;
  mp_event *event;
  mp_cond *cond;
  int flag;
  mp_barrier *barrier;
  mp_conn *r, *w;
  mp_listener *listener;
  char address[108];
  mp_process *proc;
} blocker;

/* ---- the objects ----------------------------------------------------------- */

static void
lock_setup(blocker *b)
{
  MP_ASSERT_OK(mp_lock_new(&b->lock));
  MP_ASSERT_OK(mp_lock_acquire(b->lock, 0));
}
static int
lock_op(blocker *b, double t)
{
  return mp_lock_acquire(b->lock, t);
}
static void
lock_ready(blocker *b)
{
  MP_ASSERT_OK(mp_lock_release(b->lock));
}
static void
lock_teardown(blocker *b)
{
  mp_lock_free(b->lock);
}

static void
sem_setup(blocker *b)
{
  MP_ASSERT_OK(mp_sem_new(&b->sem, 0, NULL));
}
static int
sem_op(blocker *b, double t)
{
  return mp_sem_acquire(b->sem, t);
}
static void
sem_ready(blocker *b)
{
  MP_ASSERT_OK(mp_sem_release(b->sem));
}
static void
sem_teardown(blocker *b)
{
  mp_sem_free(b->sem);
}

static void
event_setup(blocker *b)
{
  MP_ASSERT_OK(mp_event_new(&b->event));
}
static int
event_op(blocker *b, double t)
{
  return mp_event_wait(b->event, t);
}
static void
event_ready(blocker *b)
{
  MP_ASSERT_OK(mp_event_set(b->event));
}
static void
event_teardown(blocker *b)
{
  mp_event_free(b->event);
}

static void
cond_setup(blocker *b)
{
  MP_ASSERT_OK(mp_cond_new(&b->cond, NULL));
  b->flag = 0;
}
static int
flag_set(void *arg)
{
  return __atomic_load_n((int *)arg, __ATOMIC_ACQUIRE);
}
static int
cond_op(blocker *b, double t)
{
  if (!mp_acquired(mp_cond_acquire(b->cond, MP_FOREVER)))
    return MP_ESTATE;
  int rc = mp_cond_wait_for(b->cond, flag_set, &b->flag, t);
  mp_cond_release(b->cond);
  return rc;
}
static void
cond_ready(blocker *b)
{
  assert_true(mp_acquired(mp_cond_acquire(b->cond, MP_FOREVER)));
  __atomic_store_n(&b->flag, 1, __ATOMIC_RELEASE);
  MP_ASSERT_OK(mp_cond_notify_all(b->cond));
  MP_ASSERT_OK(mp_cond_release(b->cond));
}
static void
cond_teardown(blocker *b)
{
  mp_cond_free(b->cond);
}

static void
barrier_setup(blocker *b)
{
  MP_ASSERT_OK(mp_barrier_new(&b->barrier, 2, NULL));
}
static int
barrier_op(blocker *b, double t)
{
  int rc = mp_barrier_wait(b->barrier, t);
  if (rc == MP_EBROKEN)
    MP_ASSERT_OK(mp_barrier_reset(b->barrier));
  return rc;
}
static void
barrier_ready(blocker *b)
{
  /* the second party; waits until the first has arrived */
  while (mp_barrier_n_waiting(b->barrier) < 1)
    sched_yield();
  assert_true(mp_barrier_wait(b->barrier, MP_FOREVER) >= 0);
}
static void
barrier_teardown(blocker *b)
{
  mp_barrier_free(b->barrier);
}

static void
pipe_setup(blocker *b)
{
  mp_test_pipe(&b->r, &b->w, 0);
}
static void
pipe_ready(blocker *b)
{
  MP_ASSERT_OK(mp_conn_send_bytes(b->w, "x", 1));
}
static void
pipe_teardown(blocker *b)
{
  mp_conn_free(b->r);
  mp_conn_free(b->w);
}
static int
recv_op(blocker *b, double t)
{
  void *p = NULL;
  size_t n;
  int rc = mp_conn_recv_bytes(b->r, &p, &n, 0, t);
  mp_free(p);
  return rc;
}
static int
recv_into_op(blocker *b, double t)
{
  char buf[8];
  size_t n;
  int rc = mp_conn_recv_bytes_into(b->r, buf, sizeof buf, 0, &n, t);
  return rc;
}
static int
poll_op(blocker *b, double t)
{
  int rc = mp_conn_poll(b->r, t);
  if (rc == 1) { /* take the message, so the next round blocks again */
    void *p;
    size_t n;
    MP_ASSERT_OK(mp_conn_recv_bytes(b->r, &p, &n, 0, 0));
    mp_free(p);
  }
  return rc;
}
static int
wait_op(blocker *b, double t)
{
  mp_waitable w = {.kind = MP_WAIT_CONN, .u.conn = b->r};
  int rc = mp_wait(&w, 1, t);
  if (rc == 1) {
    void *p;
    size_t n;
    MP_ASSERT_OK(mp_conn_recv_bytes(b->r, &p, &n, 0, 0));
    mp_free(p);
  }
  return rc;
}

static void
listener_setup(blocker *b)
{
  snprintf(b->address, sizeof b->address, "@mproc-timeout-rule-%d",
           (int)getpid());
  MP_ASSERT_OK(mp_listener_new(&b->listener, b->address, NULL));
}
static int
accept_op(blocker *b, double t)
{
  mp_conn *c = NULL;
  int rc = mp_listener_accept(b->listener, &c, t);
  mp_conn_free(c);
  return rc;
}
static void
listener_ready(blocker *b)
{
  mp_conn *c = NULL;
  MP_ASSERT_OK(mp_client(&c, b->address, NULL));
  mp_conn_free(c);
}
static void
listener_teardown(blocker *b)
{
  mp_listener_free(b->listener);
}

/* A child that ends once it reads a byte from its pipe. */
static int
child_waits_for_byte(mp_obj *args)
{
  mp_conn *r = mp_conn_from_obj(mp_seq_item(args, 0));
  void *p = NULL;
  size_t n;
  int rc = mp_conn_recv_bytes(r, &p, &n, 0, MP_FOREVER);
  mp_free(p);
  return rc == 0 ? 0 : 1;
}
static void
start_child(blocker *b)
{
  mp_obj *args = MP_TUPLE(mp_conn_obj(b->r));
  assert_non_null(args);
  MP_ASSERT_OK(mp_process_new(
      &b->proc, NULL,
      &(mp_process_opts){.target = child_waits_for_byte, .args = args}));
  mp_obj_free(args);
  MP_ASSERT_OK(mp_process_start(b->proc));
}
static void
proc_setup(blocker *b)
{
  mp_test_pipe(&b->r, &b->w, 0);
  start_child(b);
}
static int
join_op(blocker *b, double t)
{
  int rc = mp_process_join(b->proc, t);
  if (rc == 0) { /* ended: a new child for the next round */
    int code = -1;
    MP_ASSERT_OK(mp_process_exitcode(b->proc, &code));
    assert_int_equal(code, 0);
    mp_process_free(b->proc);
    b->proc = NULL;
    start_child(b);
  }
  return rc;
}
static void
proc_teardown(blocker *b)
{
  MP_ASSERT_OK(mp_conn_send_bytes(b->w, "x", 1));
  MP_ASSERT_OK(mp_process_join(b->proc, MP_FOREVER));
  mp_process_free(b->proc);
  pipe_teardown(b);
}

static blocker blockers[] = {
    {"lock", lock_setup, lock_op, lock_ready, lock_teardown, MP_ETIMEDOUT, 0},
    {"sem", sem_setup, sem_op, sem_ready, sem_teardown, MP_ETIMEDOUT, 0},
    {"event", event_setup, event_op, event_ready, event_teardown, MP_ETIMEDOUT, 0},
    {"cond", cond_setup, cond_op, cond_ready, cond_teardown, MP_ETIMEDOUT, 0},
    {"barrier", barrier_setup, barrier_op, barrier_ready, barrier_teardown, MP_EBROKEN, -1},
    {"recv_bytes", pipe_setup, recv_op, pipe_ready, pipe_teardown, MP_ETIMEDOUT, 0},
    {"recv_bytes_into", pipe_setup, recv_into_op, pipe_ready, pipe_teardown, MP_ETIMEDOUT, 0},
    {"poll", pipe_setup, poll_op, pipe_ready, pipe_teardown, 0, 1},
    {"wait", pipe_setup, wait_op, pipe_ready, pipe_teardown, 0, 1},
    {"accept", listener_setup, accept_op, listener_ready, listener_teardown, MP_ETIMEDOUT, 0},
    {"join", proc_setup, join_op, pipe_ready, proc_teardown, MP_ETIMEDOUT, 0},
};

/* ---- the rule ---------------------------------------------------------------- */

static void *
ready_later(void *arg)
{
  blocker *b = arg;
  struct timespec ts = {0, 50 * 1000000};
  nanosleep(&ts, NULL);
  b->ready(b);
  return NULL;
}

/* "Does not block" is checked against a bound far above any wait a loaded
 * machine adds, but far below the MP_FOREVER a broken rule would mean. */
#define NO_BLOCK_BOUND 5.0

static void
check_rule(blocker *b)
{
  const double no_block[] = {0.0, -0.0, -1.0, -1e-9, -HUGE_VAL};
  b->setup(b);
  for (size_t i = 0; i < sizeof no_block / sizeof no_block[0]; i++) {
    double t0 = mp_test_now();
    int rc = b->op(b, no_block[i]);
    if (rc != b->timed_out)
      fail_msg("%s(timeout %g) -> %s, expected %s", b->name, no_block[i],
               mp_err_name(rc), mp_err_name(b->timed_out));
    assert_true(mp_test_now() - t0 < NO_BLOCK_BOUND);
  }
  /* a small positive timeout waits that long, never less */
  double t0 = mp_test_now();
  int rc = b->op(b, 0.05);
  if (rc != b->timed_out)
    fail_msg("%s(0.05) -> %s", b->name, mp_err_name(rc));
  assert_true(mp_test_now() - t0 >= 0.05);
  /* NaN is an error, whatever the object's state */
  MP_ASSERT_ERR(b->op(b, NAN), MP_EINVAL);
  /* MP_FOREVER waits for the other thread */
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, ready_later, b), 0);
  rc = b->op(b, MP_FOREVER);
  pthread_join(th, NULL);
  if (b->ok == -1 ? rc < 0 : rc != b->ok)
    fail_msg("%s(MP_FOREVER) -> %s (%d)", b->name, mp_err_name(rc), rc);
  /* once ready, a positive timeout that has not passed succeeds too, and
   * so does a non-blocking call (only where a round leaves it ready) */
  b->teardown(b);
}

static void
test_timeout_rule_everywhere(void **state)
{
  for (size_t i = 0; i < sizeof blockers / sizeof blockers[0]; i++)
    check_rule(&blockers[i]);
}

/* A ready object: a non-blocking call succeeds, whatever <= 0 value. */
static void
test_ready_objects_succeed_without_blocking(void **state)
{
  mp_sem *s;
  MP_ASSERT_OK(mp_sem_new(&s, 3, NULL));
  MP_ASSERT_OK(mp_sem_acquire(s, 0));
  MP_ASSERT_OK(mp_sem_acquire(s, -1));
  MP_ASSERT_OK(mp_sem_acquire(s, -HUGE_VAL));
  mp_sem_free(s);
  mp_lock *l;
  MP_ASSERT_OK(mp_lock_new(&l));
  MP_ASSERT_OK(mp_lock_acquire(l, -5));
  MP_ASSERT_ERR(mp_lock_acquire(l, NAN), MP_EINVAL); /* even uncontended */
  MP_ASSERT_OK(mp_lock_release(l));
  MP_ASSERT_ERR(mp_lock_acquire(l, NAN), MP_EINVAL);
  assert_int_equal(mp_lock_locked(l), 0); /* NaN took nothing */
  mp_lock_free(l);
  mp_conn *r, *w;
  mp_test_pipe(&r, &w, 0);
  MP_ASSERT_OK(mp_conn_send_bytes(w, "ab", 2));
  assert_int_equal(mp_conn_poll(r, -3), 1);
  MP_ASSERT_ERR(mp_conn_poll(r, NAN), MP_EINVAL);
  void *p;
  size_t n;
  MP_ASSERT_ERR(mp_conn_recv_bytes(r, &p, &n, 0, NAN), MP_EINVAL);
  MP_ASSERT_OK(mp_conn_recv_bytes(r, &p, &n, 0, -1)); /* still there */
  assert_int_equal(n, 2);
  mp_free(p);
  MP_ASSERT_ERR(mp_conn_set_send_timeout(w, NAN), MP_EINVAL);
  MP_ASSERT_OK(mp_conn_set_send_timeout(w, -1)); /* sends do not block */
  mp_conn_free(r);
  mp_conn_free(w);
}

/* Options-struct timeout fields: 0 is the default; negative or NaN is
 * MP_EINVAL. */
static void
test_timeout_fields(void **state)
{
  mp_listener *l = NULL;
  MP_ASSERT_ERR(mp_listener_new(&l, "@mproc-timeout-field",
                                &(mp_listener_opts){.handshake_timeout = -1}),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_listener_new(&l, "@mproc-timeout-field",
                                &(mp_listener_opts){.handshake_timeout = NAN}),
                MP_EINVAL);
  MP_ASSERT_OK(mp_listener_new(&l, "@mproc-timeout-field",
                               &(mp_listener_opts){.handshake_timeout = MP_FOREVER}));
  mp_listener_free(l);
  mp_conn *c = NULL;
  MP_ASSERT_ERR(mp_client(&c, "@mproc-timeout-field-none",
                          &(mp_client_opts){.timeout = -1}),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_client(&c, "@mproc-timeout-field-none",
                          &(mp_client_opts){.timeout = NAN}),
                MP_EINVAL);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_timeout_rule_everywhere),
    cmocka_unit_test(test_ready_objects_succeed_without_blocking),
    cmocka_unit_test(test_timeout_fields),
};

MP_TEST_MAIN(tests)
