/* SPDX-License-Identifier: MIT */
/* The Queue between processes, under every start method (and threading,
 * where the child shares the process): items put by a child that exits at
 * once all arrive (no feeder thread to flush); the queue travels in
 * Process args, through a Connection and inside another queue's item; a
 * consumer blocked in get(MP_FOREVER) wakes on a put from another process;
 * a producer blocked on a full bounded queue wakes when another process
 * gets; JoinableQueue join waits for task_done in other processes; function
 * values in items are called in the child; close in one process leaves
 * another's queue working. */
#define _GNU_SOURCE
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proc/proc_internal.h"
#include "queue/queue_internal.h"

#define NITEMS 2000

static mp_process *
run(void **state, mp_target_fn f, mp_obj *args)
{
  assert_non_null(args);
  mp_process *p;
  MP_ASSERT_OK(mp_process_new(&p, mp_test_context(state),
                              &(mp_process_opts){.target = f, .args = args}));
  mp_obj_free(args);
  MP_ASSERT_OK(mp_process_start(p));
  return p;
}

static void
finish(mp_process *p)
{
  MP_ASSERT_OK(mp_process_join(p, 60));
  int code = -1;
  MP_ASSERT_OK(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
}

/* Poll (bounded) until *word is at least `min` and (q non-NULL) q holds
 * `n` items: the other side is asleep. */
static void
wait_word(_Atomic uint32_t *word, uint32_t min, mp_queue *q, int n)
{
  struct timespec t0, now, tick = {0, 500 * 1000};
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (atomic_load(word) < min || (q && mp_queue_qsize(q) != n)) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - t0.tv_sec > 30)
      fail_msg("the other process never went to sleep");
    nanosleep(&tick, NULL);
  }
}

static int
put_and_exit(mp_obj *args)
{
  mp_queue *q = mp_queue_from_obj(mp_seq_item(args, 0));
  if (!q)
    return 1;
  for (int i = 0; i < NITEMS; i++) {
    char b[64];
    int n = snprintf(b, sizeof b, "item %d", i);
    if (i % 3 == 2) {
      mp_obj *o = MP_TUPLE(mp_int_new(i), mp_str_new(b));
      int rc = mp_queue_put(q, o, 5);
      mp_obj_free(o);
      if (rc)
        return 2;
    } else if (mp_queue_put_bytes(q, b, (size_t)n, 5)) {
      return 3;
    }
  }
  return 0; /* at once: nothing left to flush */
}

static void
get_all_from(mp_queue *q)
{
  for (int i = 0; i < NITEMS; i++) {
    char b[64];
    int n = snprintf(b, sizeof b, "item %d", i);
    if (i % 3 == 2) {
      mp_obj *o;
      MP_ASSERT_OK(mp_queue_get(q, &o, 5));
      int64_t v;
      const char *s;
      size_t sl;
      MP_ASSERT_OK(mp_int_get(mp_seq_item(o, 0), &v));
      MP_ASSERT_OK(mp_str_get(mp_seq_item(o, 1), &s, &sl));
      assert_int_equal(v, i);
      assert_int_equal(sl, (size_t)n);
      assert_memory_equal(s, b, sl);
      mp_obj_free(o);
    } else {
      void *p;
      size_t len;
      MP_ASSERT_OK(mp_queue_get_bytes(q, &p, &len, 5));
      assert_int_equal(len, (size_t)n);
      assert_memory_equal(p, b, len);
      mp_free(p);
    }
  }
  assert_int_equal(mp_queue_qsize(q), 0);
}

/* Process args; the child has exited before the first get. */
static void
test_child_puts_and_exits(void **state)
{
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  finish(run(state, put_and_exit, MP_TUPLE(mp_queue_obj(q))));
  assert_int_equal(mp_queue_qsize(q), NITEMS);
  get_all_from(q);
  mp_queue_free(q);
}

static int
queue_from_conn(mp_obj *args)
{
  mp_conn *c = mp_conn_from_obj(mp_seq_item(args, 0));
  mp_obj *o;
  if (!c || mp_conn_recv(c, &o, 30))
    return 1;
  mp_queue *q = mp_queue_from_obj(o);
  mp_obj *t = MP_TUPLE(mp_obj_ref(o));
  int rc = q ? put_and_exit(t) : 2;
  mp_obj_free(t);
  mp_obj_free(o);
  return rc;
}

static void
test_queue_through_connection(void **state)
{
  mp_queue *q;
  mp_conn *a, *b;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  mp_test_pipe(&a, &b, 1);
  mp_process *p = run(state, queue_from_conn, MP_TUPLE(mp_conn_obj(b)));
  mp_obj *qo = mp_queue_obj(q);
  MP_ASSERT_OK(mp_conn_send(a, qo));
  mp_obj_free(qo);
  finish(p);
  get_all_from(q);
  mp_conn_free(a);
  mp_conn_free(b);
  mp_queue_free(q);
}

static int
queue_from_item(mp_obj *args)
{
  mp_queue *outer = mp_queue_from_obj(mp_seq_item(args, 0));
  mp_obj *o;
  if (!outer || mp_queue_get(outer, &o, 30))
    return 1;
  mp_queue *inner = mp_queue_from_obj(mp_seq_item(o, 1));
  const char *s;
  size_t n;
  if (!inner || mp_str_get(mp_seq_item(o, 0), &s, &n) || n != 5
      || memcmp(s, "inner", 5))
    return 2;
  mp_obj *t = MP_TUPLE(mp_obj_ref(mp_seq_item(o, 1)));
  int rc = put_and_exit(t);
  mp_obj_free(t);
  mp_obj_free(o);
  return rc;
}

static void
test_queue_inside_an_item(void **state)
{
  mp_queue *outer, *inner;
  MP_ASSERT_OK(mp_queue_new(&outer, NULL));
  MP_ASSERT_OK(mp_queue_new(&inner, &(mp_queue_opts){.segment_size = 16384}));
  mp_process *p = run(state, queue_from_item, MP_TUPLE(mp_queue_obj(outer)));
  mp_obj *item = MP_TUPLE(mp_str_new("inner"), mp_queue_obj(inner));
  MP_ASSERT_OK(mp_queue_put(outer, item, 0));
  mp_obj_free(item);
  finish(p);
  get_all_from(inner);
  assert_int_equal(mp_queue_qsize(outer), 0);
  mp_queue_free(inner);
  mp_queue_free(outer);
}

/* args: (in, out): get forever, send back what came, n times. */
static int
echo_forever(mp_obj *args)
{
  mp_queue *in = mp_queue_from_obj(mp_seq_item(args, 0));
  mp_queue *out = mp_queue_from_obj(mp_seq_item(args, 1));
  int64_t n;
  if (!in || !out || mp_int_get(mp_seq_item(args, 2), &n))
    return 1;
  for (int64_t i = 0; i < n; i++) {
    void *p;
    size_t len;
    if (mp_queue_get_bytes(in, &p, &len, MP_FOREVER))
      return 2;
    int rc = mp_queue_put_bytes(out, p, len, 5);
    mp_free(p);
    if (rc)
      return 3;
  }
  return 0;
}

static void
test_blocked_get_woken_by_put(void **state)
{
  mp_queue *in, *out;
  MP_ASSERT_OK(mp_queue_new(&in, NULL));
  MP_ASSERT_OK(mp_queue_new(&out, NULL));
  enum { ROUNDS = 20 };
  mp_process *p = run(state, echo_forever,
                      MP_TUPLE(mp_queue_obj(in), mp_queue_obj(out),
                               mp_int_new(ROUNDS)));
  for (int i = 0; i < ROUNDS; i++) {
    /* the child is asleep in get before the put */
    wait_word(&in->h->get_waiters, 1, NULL, 0);
    char b[16];
    int n = snprintf(b, sizeof b, "ping %d", i);
    MP_ASSERT_OK(mp_queue_put_bytes(in, b, (size_t)n, 0));
    void *r;
    size_t len;
    MP_ASSERT_OK(mp_queue_get_bytes(out, &r, &len, 10));
    assert_int_equal(len, (size_t)n);
    assert_memory_equal(r, b, len);
    mp_free(r);
  }
  finish(p);
  mp_queue_free(in);
  mp_queue_free(out);
}

static int
put_forever(mp_obj *args)
{
  mp_queue *q = mp_queue_from_obj(mp_seq_item(args, 0));
  if (!q)
    return 1;
  for (int i = 0; i < 50; i++)
    if (mp_queue_put_bytes(q, &i, sizeof i, MP_FOREVER))
      return 2;
  return 0;
}

static void
test_bounded_put_waits_for_room(void **state)
{
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){.maxsize = 2}));
  mp_process *p = run(state, put_forever, MP_TUPLE(mp_queue_obj(q)));
  for (int i = 0; i < 50; i++) {
    if (i % 10 == 0) {
      /* the producer sleeps on a full queue */
      wait_word(&q->h->put_waiters, 1, q, 2);
      assert_int_equal(mp_queue_qsize(q), 2);
      assert_int_equal(mp_queue_full(q), 1);
    }
    int v;
    size_t len;
    MP_ASSERT_OK(mp_queue_get_bytes_into(q, &v, sizeof v, &len, 10));
    assert_int_equal(len, sizeof v);
    assert_int_equal(v, i);
  }
  finish(p);
  assert_int_equal(mp_queue_qsize(q), 0);
  mp_queue_free(q);
}

/* args: (tasks): take until "STOP", task_done each. */
static int
worker(mp_obj *args)
{
  mp_queue *q = mp_queue_from_obj(mp_seq_item(args, 0));
  if (!q)
    return 1;
  for (;;) {
    void *p;
    size_t n;
    if (mp_queue_get_bytes(q, &p, &n, 30))
      return 2;
    int stop = n == 4 && memcmp(p, "STOP", 4) == 0;
    mp_free(p);
    if (mp_queue_task_done(q))
      return 3;
    if (stop)
      return 0;
  }
}

static void
test_joinable_join_waits_for_workers(void **state)
{
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){.joinable = 1}));
  enum { W = 3, N = 300 };
  mp_process *p[W];
  for (int i = 0; i < W; i++)
    p[i] = run(state, worker, MP_TUPLE(mp_queue_obj(q)));
  for (int i = 0; i < N; i++)
    MP_ASSERT_OK(mp_queue_put_bytes(q, &i, sizeof i, 0));
  MP_ASSERT_OK(mp_queue_join(q, 30));
  assert_int_equal(mp_queue_qsize(q), 0);
  assert_int_equal(mp__q_unfinished(q), 0);
  for (int i = 0; i < W; i++)
    MP_ASSERT_OK(mp_queue_put_bytes(q, "STOP", 4, 0));
  MP_ASSERT_OK(mp_queue_join(q, 30));
  for (int i = 0; i < W; i++)
    finish(p[i]);
  MP_ASSERT_ERR(mp_queue_task_done(q), MP_ESTATE);
  mp_queue_free(q);
}

static int
mul(mp_obj *args, mp_obj **out)
{
  int64_t a, b;
  if (mp_int_get(mp_seq_item(args, 0), &a) || mp_int_get(mp_seq_item(args, 1), &b))
    return MP_EINVAL;
  *out = mp_int_new(a * b);
  return 0;
}

static int
plus(mp_obj *args, mp_obj **out)
{
  int64_t a, b;
  if (mp_int_get(mp_seq_item(args, 0), &a) || mp_int_get(mp_seq_item(args, 1), &b))
    return MP_EINVAL;
  *out = mp_int_new(a + b);
  return 0;
}

/* args: (tasks, done): (func, args) tasks until None. */
static int
calculate(mp_obj *args)
{
  mp_queue *tasks = mp_queue_from_obj(mp_seq_item(args, 0));
  mp_queue *done = mp_queue_from_obj(mp_seq_item(args, 1));
  if (!tasks || !done)
    return 1;
  for (;;) {
    mp_obj *t;
    if (mp_queue_get(tasks, &t, 30))
      return 2;
    if (mp_obj_type(t) == MP_T_NONE) {
      mp_obj_free(t);
      return 0;
    }
    int (*f)(mp_obj *, mp_obj **) =
        (int (*)(mp_obj *, mp_obj **))mp_func_get(mp_seq_item(t, 0));
    mp_obj *r = NULL;
    if (!f || f(mp_seq_item(t, 1), &r))
      return 3;
    mp_obj *res = MP_TUPLE(mp_obj_ref(mp_seq_item(t, 2)), r);
    int rc = mp_queue_put(done, res, 5);
    mp_obj_free(res);
    mp_obj_free(t);
    if (rc)
      return 4;
  }
}

static void
test_function_values_in_items(void **state)
{
  mp_queue *tasks, *done;
  MP_ASSERT_OK(mp_queue_new(&tasks, NULL));
  MP_ASSERT_OK(mp_queue_new(&done, NULL));
  enum { W = 2, N = 30 };
  mp_process *p[W];
  for (int i = 0; i < W; i++)
    p[i] = run(state, calculate, MP_TUPLE(mp_queue_obj(tasks), mp_queue_obj(done)));
  for (int i = 0; i < N; i++) {
    mp_obj *t = MP_TUPLE(i < 20 ? MP_FUNC(mul) : MP_FUNC(plus),
                         MP_TUPLE(mp_int_new(i), mp_int_new(7)), mp_int_new(i));
    MP_ASSERT_OK(mp_queue_put(tasks, t, 0));
    mp_obj_free(t);
  }
  for (int i = 0; i < W; i++) {
    mp_obj *none = mp_none();
    MP_ASSERT_OK(mp_queue_put(tasks, none, 0));
    mp_obj_free(none);
  }
  int seen[N] = {0};
  for (int k = 0; k < N; k++) {
    mp_obj *r;
    MP_ASSERT_OK(mp_queue_get(done, &r, 30));
    int64_t i, v;
    MP_ASSERT_OK(mp_int_get(mp_seq_item(r, 0), &i));
    MP_ASSERT_OK(mp_int_get(mp_seq_item(r, 1), &v));
    assert_true(i >= 0 && i < N && !seen[i]);
    seen[i] = 1;
    assert_int_equal(v, i < 20 ? i * 7 : i + 7);
    mp_obj_free(r);
  }
  for (int i = 0; i < W; i++)
    finish(p[i]);
  mp_queue_free(tasks);
  mp_queue_free(done);
}

static int
close_here(mp_obj *args)
{
  mp_queue *q = mp_queue_from_obj(mp_seq_item(args, 0));
  if (!q || mp_queue_put_bytes(q, "before", 6, 5))
    return 1;
  if (mp_queue_close(q))
    return 2;
  void *p;
  size_t n;
  if (mp_queue_put_bytes(q, "x", 1, 0) != MP_ECLOSED
      || mp_queue_get_bytes(q, &p, &n, 0) != MP_ECLOSED)
    return 3;
  return 0;
}

/* Processes only: a threading child shares this process's handle. */
static void
test_close_is_per_process(void **state)
{
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  finish(run(state, close_here, MP_TUPLE(mp_queue_obj(q))));
  MP_ASSERT_OK(mp_queue_put_bytes(q, "after", 5, 0));
  void *p;
  size_t n;
  MP_ASSERT_OK(mp_queue_get_bytes(q, &p, &n, 0));
  assert_int_equal(n, 6);
  assert_memory_equal(p, "before", 6);
  mp_free(p);
  MP_ASSERT_OK(mp_queue_get_bytes(q, &p, &n, 0));
  assert_int_equal(n, 5);
  mp_free(p);
  mp_queue_free(q);
}

static const struct CMUnitTest tests[] = {
    MP_TEST_METHODS_THREADING(test_child_puts_and_exits),
    MP_TEST_METHODS_THREADING(test_queue_through_connection),
    MP_TEST_METHODS_THREADING(test_queue_inside_an_item),
    MP_TEST_METHODS_THREADING(test_blocked_get_woken_by_put),
    MP_TEST_METHODS_THREADING(test_bounded_put_waits_for_room),
    MP_TEST_METHODS_THREADING(test_joinable_join_waits_for_workers),
    MP_TEST_METHODS_THREADING(test_function_values_in_items),
    MP_TEST_METHODS(test_close_is_per_process),
};

MP_TEST_MAIN(tests)
