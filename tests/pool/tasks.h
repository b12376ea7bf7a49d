/* SPDX-License-Identifier: MIT */
/* Task functions and helpers that several pool tests use (static: each
 * test program has its own copy; functions cross to workers by reference,
 * which static functions do). */
#ifndef MPROC_TEST_POOL_TASKS_H
#define MPROC_TEST_POOL_TASKS_H

#include "testutil.h"

#define MP__TASK_UNUSED __attribute__((unused))

/* (x,) -> x * x */
static MP__TASK_UNUSED int
square(mp_obj *args, mp_obj **result)
{
  int64_t x;
  int rc = mp_int_get(mp_seq_item(args, 0), &x);
  if (rc)
    return rc;
  *result = mp_int_new(x * x);
  return 0;
}

/* square after some work (~50-100 us), so that kills often land inside a
 * task */
static MP__TASK_UNUSED int
busy_square(mp_obj *args, mp_obj **result)
{
  volatile uint64_t acc = 0;
  for (int i = 0; i < 50000; i++)
    acc += (uint64_t)i * 2654435761u;
  (void)acc;
  return square(args, result);
}

/* () -> the pid of the worker (a ThreadPool worker's: its thread id) */
static MP__TASK_UNUSED int
worker_pid(mp_obj *args, mp_obj **result)
{
  (void)args;
  *result = mp_int_new(mp_process_pid(mp_current_process()));
  return 0;
}

/* [0, 1, ..., n - 1] */
static MP__TASK_UNUSED mp_obj *
int_list(int n)
{
  mp_obj *l = mp_list_new();
  for (int i = 0; i < n; i++)
    assert_int_equal(mp_list_append_take(l, mp_int_new(i)), 0);
  return l;
}

/* out is [0, 1, 4, ..., (n - 1)^2] */
static MP__TASK_UNUSED void
check_squares(mp_obj *out, int n)
{
  size_t len = 0;
  MP_ASSERT_OK(mp_obj_len(out, &len));
  assert_int_equal(len, (size_t)n);
  for (int i = 0; i < n; i++) {
    int64_t v;
    MP_ASSERT_OK(mp_int_get(mp_seq_item(out, i), &v));
    assert_int_equal(v, (int64_t)i * i);
  }
}

/* close, join and free p, each asserted */
static MP__TASK_UNUSED void
pool_end(mp_pool *p)
{
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
}

/* fn(*args) in p, whose value must be the int `want` */
static MP__TASK_UNUSED void
apply_expect_int(mp_pool *p, mp_task_fn fn, mp_obj *args, int64_t want)
{
  mp_obj *v = NULL;
  int64_t x;
  MP_ASSERT_OK(mp_pool_apply(p, fn, args, &v));
  MP_ASSERT_OK(mp_int_get(v, &x));
  assert_int_equal(x, want);
  mp_obj_free(v);
}

#endif
