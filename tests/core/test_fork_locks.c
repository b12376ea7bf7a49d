/* SPDX-License-Identifier: MIT */
/* Forking while other threads hold the library's process-wide locks.
 *
 * A fork copies only the forking thread; a mutex another thread held at
 * that instant stays locked in the child forever, and the child's first
 * call that takes it hangs.  A pool forks replacement workers from its
 * result-handling thread while the caller's threads pickle and parse
 * handles, log or register resources, so every process-wide lock a child
 * may take must be made consistent around fork (the lifecycle registry's
 * fork hooks).  Here threads hammer those locks -- the handle-type registry
 * (mp_handle_find), the argument kinds ({Lock} in mp_args_parse), the log
 * handler and the resource tracker -- while the main thread forks children
 * that take each of them once.  Every child must exit within its timeout;
 * before the hooks, one of the first few dozen hung. */
#include <signal.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define FORKS 150
#define HAMMERS 4

static _Atomic int stop;
static mp_obj *lock_args; /* ({Lock},) for mp_args_parse */

static void
quiet_handler(int level, const char *process, const char *msg, void *ud)
{
  (void)level, (void)process, (void)msg, (void)ud;
}

static void
take_each_lock(void)
{
  mp_lock *l;
  (void)mp_handle_find("mproc.Lock");
  (void)mp_args_parse(lock_args, "{Lock}:t", &l);
  mp_log_set_handler(quiet_handler, NULL);
  mp_log(MP_LOG_ERROR, "fork-locks %d", 1);
  (void)mp_resource_register("shared_memory", "/mproc-test-fork-locks");
  (void)mp_resource_unregister("shared_memory", "/mproc-test-fork-locks");
}

static void *
hammer(void *arg)
{
  (void)arg;
  while (!atomic_load(&stop))
    take_each_lock();
  return NULL;
}

static int
child(mp_obj *args)
{
  (void)args;
  take_each_lock();
  return 7;
}

static void
test_fork_while_threads_hold_locks(void **state)
{
  (void)state;
  mp_context *fork_ctx;
  MP_ASSERT_OK(mp_get_context("fork", &fork_ctx));
  mp_lock *lock;
  MP_ASSERT_OK(mp_lock_new(&lock));
  lock_args = MP_TUPLE(mp_lock_obj(lock));
  assert_non_null(lock_args);
  pthread_t t[HAMMERS];
  atomic_store(&stop, 0);
  for (int i = 0; i < HAMMERS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, hammer, NULL), 0);
  int hung = 0;
  for (int i = 0; i < FORKS && !hung; i++) {
    mp_process *p;
    MP_ASSERT_OK(mp_process_new(&p, fork_ctx,
                                &(mp_process_opts){.target = child}));
    MP_ASSERT_OK(mp_process_start(p));
    int rc = mp_process_join(p, 10.0);
    if (rc == MP_ETIMEDOUT) {
      hung = i + 1;
      mp_process_kill(p);
      MP_ASSERT_OK(mp_process_join(p, MP_FOREVER));
    } else {
      MP_ASSERT_OK(rc);
      int code;
      MP_ASSERT_OK(mp_process_exitcode(p, &code));
      assert_int_equal(code, 7);
    }
    mp_process_free(p);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < HAMMERS; i++)
    pthread_join(t[i], NULL);
  mp_log_set_handler(NULL, NULL);
  mp_obj_free(lock_args);
  mp_lock_free(lock);
  if (hung)
    fail_msg("fork child %d of %d hung on a lock a thread held at fork", hung,
             FORKS);
}

/* A Connection a parent thread is receiving on (holding its receive lock,
 * blocked in recv) when the program forks: the child's copy of the object
 * must be usable -- its own receive takes the lock and gets a message.
 * Before the per-object locks were made fork-aware the child waited on a
 * lock held by a thread it does not have, for ever (past any timeout). */
static mp_conn *blocked_end;

static void *
blocked_receiver(void *arg)
{
  (void)arg;
  mp_obj *o = NULL;
  int rc = mp_conn_recv(blocked_end, &o, 30.0);
  mp_obj_free(o);
  return (void *)(intptr_t)rc;
}

static void
test_fork_while_a_thread_receives(void **state)
{
  (void)state;
  mp_conn *a, *b;
  MP_ASSERT_OK(mp_pipe(&a, &b, 1));
  blocked_end = a;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, blocked_receiver, NULL), 0);
  /* wait until the thread is inside the receive (it holds the lock) */
  for (int i = 0; i < 100; i++) {
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
  /* The child reads only once the thread has its message: two readers of
   * one stream at once may split a message between them (as in Python). */
  int go[2];
  assert_int_equal(pipe(go), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    char g;
    if (read(go[0], &g, 1) != 1)
      _exit(4);
    mp_obj *o = NULL;
    int rc = mp_conn_recv(a, &o, 10.0);
    int64_t v = -1;
    if (!rc)
      mp_int_get(o, &v);
    mp_obj_free(o);
    _exit(rc == 0 && v == 2 ? 0 : 3);
  }
  /* one message for the thread; then the child may take the lock it
   * inherited held, and gets the other */
  mp_obj *one = mp_int_new(1), *two = mp_int_new(2);
  MP_ASSERT_OK(mp_conn_send(b, one));
  void *trc;
  pthread_join(t, &trc);
  assert_int_equal((intptr_t)trc, 0);
  assert_int_equal(write(go[1], "g", 1), 1);
  MP_ASSERT_OK(mp_conn_send(b, two));
  mp_obj_free(one);
  mp_obj_free(two);
  int code = mp_test_wait_child(pid, 20);
  close(go[0]);
  close(go[1]);
  if (code != 0)
    fail_msg("the fork child's receive on an inherited Connection: exit %d "
             "(a hang is a kill after 20 s)", code);
  mp_conn_free(a);
  mp_conn_free(b);
}

/* The same for a Listener a parent thread is accepting on: a prefork
 * server's child accepts on the inherited listener. */
static mp_listener *blocked_listener;

static void *
blocked_acceptor(void *arg)
{
  (void)arg;
  mp_conn *c = NULL;
  int rc = mp_listener_accept(blocked_listener, &c, 30.0);
  mp_conn_free(c);
  return (void *)(intptr_t)rc;
}

static void
test_fork_while_a_thread_accepts(void **state)
{
  (void)state;
  mp_listener *l;
  MP_ASSERT_OK(mp_listener_new(&l, "localhost:0", NULL));
  blocked_listener = l;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, blocked_acceptor, NULL), 0);
  struct timespec ts = {0, 200000000};
  nanosleep(&ts, NULL); /* the thread is inside accept */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    mp_conn *c = NULL;
    int rc = mp_listener_accept(l, &c, 10.0);
    mp_conn_free(c);
    _exit(rc == 0 ? 0 : 3);
  }
  mp_conn *c1, *c2;
  MP_ASSERT_OK(mp_client(&c1, mp_listener_address(l), NULL));
  MP_ASSERT_OK(mp_client(&c2, mp_listener_address(l), NULL));
  int code = mp_test_wait_child(pid, 20);
  void *trc;
  pthread_join(t, &trc);
  assert_int_equal((intptr_t)trc, 0);
  if (code != 0)
    fail_msg("the fork child's accept on an inherited Listener: exit %d "
             "(a hang is a kill after 20 s)", code);
  mp_conn_free(c1);
  mp_conn_free(c2);
  mp_listener_free(l);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fork_while_threads_hold_locks),
      cmocka_unit_test(test_fork_while_a_thread_receives),
      cmocka_unit_test(test_fork_while_a_thread_accepts),
  };
  return mp_test_run("fork_locks", tests, sizeof tests / sizeof tests[0]);
}
