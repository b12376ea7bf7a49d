/* SPDX-License-Identifier: MIT */
/* mp_errdetail() after a failure is that failure's own text or "", never
 * an earlier call's (issue: a timed-out lock printed "semaphore or lock
 * released too many times"; mp_shm_new's detail depended on what failed
 * before it). */
#define _GNU_SOURCE
#include "testutil.h"

#include <stdio.h>
#include <string.h>

/* Leave an unrelated detail behind, then a successful call. */
static void
dirty(void)
{
  mp_lock *l;
  MP_ASSERT_OK(mp_lock_new(&l));
  MP_ASSERT_ERR(mp_lock_release(l), MP_ESTATE);
  assert_true(strstr(mp_errdetail(), "released too many times") != NULL);
  mp_lock_free(l);
  mp_obj *v = mp_int_new(1);
  mp_obj_free(v);
}

static void
assert_fresh(const char *what)
{
  const char *d = mp_errdetail();
  if (strstr(d, "released too many times") || strstr(d, "bad shared memory name"))
    fail_msg("%s: stale detail \"%s\"", what, d);
}

static void
test_lock_timeout_has_no_stale_detail(void **state)
{
  mp_lock *l;
  MP_ASSERT_OK(mp_lock_new(&l));
  MP_ASSERT_OK(mp_lock_acquire(l, 0));
  dirty();
  MP_ASSERT_ERR(mp_lock_acquire(l, 0.01), MP_ETIMEDOUT);
  assert_fresh("mp_lock_acquire");
  dirty();
  MP_ASSERT_ERR(mp_lock_acquire(l, 0), MP_ETIMEDOUT);
  assert_fresh("mp_lock_acquire(0)");
  MP_ASSERT_OK(mp_lock_release(l));
  mp_lock_free(l);
  mp_sem *s;
  MP_ASSERT_OK(mp_sem_new(&s, 0, NULL));
  dirty();
  MP_ASSERT_ERR(mp_sem_acquire(s, 0), MP_ETIMEDOUT);
  assert_fresh("mp_sem_acquire");
  mp_sem_free(s);
}

static void
test_conn_timeout_has_no_stale_detail(void **state)
{
  mp_conn *r, *w;
  mp_test_pipe(&r, &w, 0);
  mp_obj *v = NULL;
  dirty();
  MP_ASSERT_ERR(mp_conn_recv(r, &v, 0.01), MP_ETIMEDOUT);
  assert_fresh("mp_conn_recv");
  dirty();
  assert_int_equal(mp_conn_poll(r, 0), 0);
  mp_conn_free(r);
  mp_conn_free(w);
}

static void
test_shm_detail_does_not_depend_on_history(void **state)
{
  mp_shm *m = NULL;
  /* in a clean thread state */
  int rc1 = mp_shm_new(&m, NULL, &(mp_shm_opts){.create = 1, .size = (size_t)1 << 62});
  assert_true(rc1 < 0);
  char first[512];
  snprintf(first, sizeof first, "%s", mp_errdetail());
  /* after an unrelated bad name */
  MP_ASSERT_ERR(mp_shm_new(&m, "a/b", &(mp_shm_opts){.create = 1, .size = 1}), MP_EINVAL);
  assert_true(mp_errdetail()[0] != '\0');
  int rc2 = mp_shm_new(&m, NULL, &(mp_shm_opts){.create = 1, .size = (size_t)1 << 62});
  assert_int_equal(rc2, rc1);
  assert_string_equal(mp_errdetail(), first);
  assert_fresh("mp_shm_new");
}

static void
test_process_join_timeout_has_no_stale_detail(void **state)
{
  mp_process *p;
  MP_ASSERT_OK(mp_process_new(&p, NULL, NULL));
  dirty();
  MP_ASSERT_ERR(mp_process_join(p, 0), MP_ESTATE); /* not started */
  assert_true(strstr(mp_errdetail(), "released too many times") == NULL);
  mp_process_free(p);
}

/* A failing call that has a detail to give gives it. */
static void
test_failures_keep_their_own_detail(void **state)
{
  dirty();
  mp_obj *v = NULL;
  MP_ASSERT_ERR(mp_pickle_loads("\x80\x04K", 3, NULL, &v), MP_EMALFORMED);
  assert_true(mp_errdetail()[0] != '\0');
  assert_fresh("mp_pickle_loads");
  dirty();
  mp_listener *l = NULL;
  MP_ASSERT_ERR(mp_listener_new(&l, "localhost:-1", NULL), MP_EINVAL);
  assert_true(strstr(mp_errdetail(), "port") != NULL);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_lock_timeout_has_no_stale_detail),
    cmocka_unit_test(test_conn_timeout_has_no_stale_detail),
    cmocka_unit_test(test_shm_detail_does_not_depend_on_history),
    cmocka_unit_test(test_process_join_timeout_has_no_stale_detail),
    cmocka_unit_test(test_failures_keep_their_own_detail),
};

MP_TEST_MAIN(tests)
