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

int
main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fork_while_threads_hold_locks),
  };
  return mp_test_run("fork_locks", tests, sizeof tests / sizeof tests[0]);
}
