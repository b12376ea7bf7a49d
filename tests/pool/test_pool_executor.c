/* SPDX-License-Identifier: MIT */
/* The remote-executor seam (mp_pool_opts.executor): a loopback executor
 * that runs each job in the calling worker thread, as a transport would on
 * the far side, and counts what it was given.  Every pool call goes
 * through it -- apply, map, starmap, imap, callbacks, progress, insights,
 * map_array through run_array -- task_timeout reaches it, and its
 * job-level failures and malformed answers fail the job's items. */
#define _GNU_SOURCE
#include "testutil.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"

typedef struct loop_ctx {
  int jobs, arrays;          /* atomic */
  int64_t last_timeout_ms;
  int fail_all;              /* run returns MP_EREMOTE for every job */
  int bad_values;            /* run returns a short values list */
  int workers_seen;          /* bitmask of worker places */
} loop_ctx;

static int
run(void *vc, int worker, mp_task_fn fn, int kind, mp_obj *payload,
    double timeout, mp_obj **values, mp_obj **errors)
{
  loop_ctx *c = vc;
  __atomic_add_fetch(&c->jobs, 1, __ATOMIC_RELAXED);
  __atomic_or_fetch(&c->workers_seen, 1 << worker, __ATOMIC_RELAXED);
  __atomic_store_n(&c->last_timeout_ms, (int64_t)(timeout * 1000),
                   __ATOMIC_RELAXED);
  if (__atomic_load_n(&c->fail_all, __ATOMIC_RELAXED))
    return mp_seterr(MP_EREMOTE, "Loopback-%d: the link is down", worker);
  mp_obj *const *items = NULL;
  size_t n = 1;
  if (kind != MP_POOL_JOB_APPLY)
    mp_seq_items(payload, &items, &n);
  *values = mp_list_new();
  *errors = NULL;
  for (size_t i = 0; i < n; i++) {
    mp_obj *args = NULL, *res = NULL;
    int rc = mp_pool_job_args(kind, payload, i, &args);
    if (!rc) {
      rc = fn(args, &res);
      mp_obj_free(args);
    }
    if (rc) {
      char text[300];
      snprintf(text, sizeof text, "Loopback-%d: %s", worker, mp_errdetail());
      if (!*errors)
        *errors = mp_list_new();
      mp_list_append_take(*errors, MP_TUPLE(mp_int_new((int64_t)i),
                                            mp_int_new(rc), mp_str_new(text)));
    }
    mp_list_append_take(*values, res ? res : mp_none());
  }
  if (__atomic_load_n(&c->bad_values, __ATOMIC_RELAXED))
    mp_list_append_take(*values, mp_none());
  return 0;
}

static int
run_array(void *vc, int worker, mp_elem_fn fn, const mp_obj *shared,
          const void *in, size_t in_size, void *out, size_t out_size,
          size_t n, size_t *bad)
{
  loop_ctx *c = vc;
  (void)worker;
  __atomic_add_fetch(&c->arrays, 1, __ATOMIC_RELAXED);
  /* a copy each way, as the bytes of a message */
  unsigned char *ib = malloc(n * in_size + 1), *ob = malloc(n * out_size + 1);
  memcpy(ib, in, n * in_size);
  int first = 0;
  for (size_t i = 0; i < n; i++) {
    int rc = fn(ib + i * in_size, ob + i * out_size, shared);
    if (rc && !first) {
      first = rc;
      *bad = i;
      char text[300];
      snprintf(text, sizeof text, "%s", mp_errdetail());
      mp_seterr(rc, "Loopback: %s", text);
    }
  }
  memcpy(out, ob, n * out_size);
  free(ib);
  free(ob);
  return first;
}

static int
square(mp_obj *args, mp_obj **out)
{
  int64_t x;
  mp_int_get(mp_seq_item(args, 0), &x);
  if (x == 13)
    return mp_seterr(MP_EINVAL, "thirteen");
  *out = mp_int_new(x * x);
  return 0;
}

static int
add(mp_obj *args, mp_obj **out)
{
  int64_t a, b;
  mp_int_get(mp_seq_item(args, 0), &a);
  mp_int_get(mp_seq_item(args, 1), &b);
  *out = mp_int_new(a + b);
  return 0;
}

static int
neg(const void *in, void *out, const mp_obj *shared)
{
  (void)shared;
  int64_t x = *(const int64_t *)in;
  if (x == 777)
    return mp_seterr(MP_EOVERFLOW, "no 777");
  *(int64_t *)out = -x;
  return 0;
}

static mp_obj *
range(int64_t lo, int64_t hi)
{
  mp_obj *l = mp_list_new();
  for (int64_t i = lo; i < hi; i++)
    mp_list_append_take(l, mp_int_new(i));
  return l;
}

static mp_pool *
new_pool(loop_ctx *c, int insights)
{
  mp_pool_executor ex = {.run = run, .run_array = run_array, .ctx = c};
  mp_pool *p = NULL;
  assert_int_equal(mp_pool_new(&p, &(mp_pool_opts){.processes = 3,
                                                   .insights = insights,
                                                   .executor = &ex}),
                   0);
  return p;
}

static void
test_calls(void **state)
{
  (void)state;
  loop_ctx c = {0};
  mp_pool *p = new_pool(&c, 1);
  mp_obj *out = NULL, *args = MP_TUPLE(mp_int_new(9));
  assert_int_equal(mp_pool_apply(p, square, args, &out), 0);
  int64_t v;
  assert_int_equal(mp_int_get(out, &v), 0);
  assert_int_equal(v, 81);
  mp_obj_free(out);
  mp_obj_free(args);
  mp_obj *items = range(0, 300);
  assert_int_equal(mp_pool_map(p, square, items,
                               &(mp_map_opts){.chunksize = 7}, &out),
                   MP_EINVAL);
  assert_non_null(strstr(mp_errdetail(), "Loopback-"));
  assert_non_null(strstr(mp_errdetail(), "thirteen"));
  mp_obj *items2 = range(14, 300);
  assert_int_equal(mp_pool_map(p, square, items2, NULL, &out), 0);
  assert_int_equal(mp_int_get(mp_seq_item(out, 2), &v), 0);
  assert_int_equal(v, 16 * 16);
  mp_obj_free(out);
  mp_obj *pairs = MP_LIST(MP_TUPLE(mp_int_new(1), mp_int_new(2)),
                          MP_TUPLE(mp_int_new(3), mp_int_new(4)));
  assert_int_equal(mp_pool_starmap(p, add, pairs, NULL, &out), 0);
  assert_int_equal(mp_int_get(mp_seq_item(out, 1), &v), 0);
  assert_int_equal(v, 7);
  mp_obj_free(out);
  mp_obj_free(pairs);
  mp_imap *it = NULL;
  assert_int_equal(mp_pool_imap(p, square, items, NULL, &it), 0);
  int n = 0, rc;
  mp_obj *x;
  while ((rc = mp_imap_next(it, &x, MP_FOREVER)) != MP_EEOF) {
    assert_int_equal(rc, n == 13 ? MP_EINVAL : 0);
    mp_obj_free(x);
    n++;
  }
  assert_int_equal(n, 300);
  mp_imap_free(it);
  /* task_timeout reaches the executor (a ThreadPool's would be ENOTSUP) */
  mp_result *r = NULL;
  args = MP_TUPLE(mp_int_new(2));
  assert_int_equal(mp_pool_apply_async(p, square, args,
                                       &(mp_apply_opts){.task_timeout = 2.5},
                                       &r),
                   0);
  assert_int_equal(mp_result_get(r, &out, MP_FOREVER), 0);
  mp_obj_free(out);
  mp_result_free(r);
  mp_obj_free(args);
  assert_int_equal(__atomic_load_n(&c.last_timeout_ms, __ATOMIC_RELAXED),
                   2500);
  /* insights count the executor's items */
  mp_pool_insights in;
  assert_int_equal(mp_pool_insights_get(p, &in), 0);
  long long tasks = 0;
  for (int i = 0; i < in.nworkers; i++)
    tasks += in.workers[i].tasks;
  assert_true(tasks >= 300 + 286 + 2 + 300);
  mp_pool_insights_release(&in);
  assert_true(__atomic_load_n(&c.jobs, __ATOMIC_RELAXED) > 3);
  mp_pool_close(p);
  assert_int_equal(mp_pool_join(p), 0);
  mp_pool_free(p);
  mp_obj_free(items);
  mp_obj_free(items2);
}

static void
test_failures(void **state)
{
  (void)state;
  loop_ctx c = {.fail_all = 1};
  mp_pool *p = new_pool(&c, 0);
  mp_obj *out = NULL, *items = range(0, 20);
  assert_int_equal(mp_pool_map(p, square, items, NULL, &out), MP_EREMOTE);
  assert_non_null(strstr(mp_errdetail(), "the link is down"));
  __atomic_store_n(&c.fail_all, 0, __ATOMIC_SEQ_CST);
  __atomic_store_n(&c.bad_values, 1, __ATOMIC_SEQ_CST);
  assert_int_equal(mp_pool_map(p, square, items, NULL, &out), MP_EMALFORMED);
  mp_obj_free(items);
  mp_pool_free(p);
}

static void
test_array(void **state)
{
  (void)state;
  loop_ctx c = {0};
  mp_pool *p = new_pool(&c, 0);
  size_t n = 100000;
  int64_t *in = malloc(n * 8), *out = malloc(n * 8);
  for (size_t i = 0; i < n; i++)
    in[i] = (int64_t)i + 1000;
  assert_int_equal(mp_pool_map_array(p, neg, in, 8, out, 8, n, NULL, NULL), 0);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(out[i], -((int64_t)i + 1000));
  assert_true(__atomic_load_n(&c.arrays, __ATOMIC_RELAXED) > 1);
  in[5] = 777;
  assert_int_equal(mp_pool_map_array(p, neg, in, 8, out, 8, n, NULL, NULL),
                   MP_EOVERFLOW);
  assert_non_null(strstr(mp_errdetail(), "element 5: Loopback: no 777"));
  assert_int_equal(out[6], -1006);
  free(in);
  free(out);
  /* no run_array: map_array is MP_ENOTSUP */
  mp_pool_free(p);
  mp_pool_executor ex = {.run = run, .ctx = &c};
  assert_int_equal(mp_pool_new(&p, &(mp_pool_opts){.processes = 1,
                                                   .executor = &ex}),
                   0);
  int64_t a = 1, b;
  assert_int_equal(mp_pool_map_array(p, neg, &a, 8, &b, 8, 1, NULL, NULL),
                   MP_ENOTSUP);
  mp_pool_free(p);
}

/* An executor whose job never ends by itself (a remote worker stuck in a
 * task): mp_pool_terminate calls its terminate hook, the job gives up, and
 * terminate returns -- without the hook it would wait for ever (the job
 * here gives up after 60 s and says so). */
typedef struct stuck_ctx {
  int entered, released, terminates; /* atomic */
} stuck_ctx;

static int
stuck_run(void *vc, int worker, mp_task_fn fn, int kind, mp_obj *payload,
          double timeout, mp_obj **values, mp_obj **errors)
{
  (void)worker, (void)fn, (void)kind, (void)payload, (void)timeout;
  (void)values, (void)errors;
  stuck_ctx *c = vc;
  __atomic_add_fetch(&c->entered, 1, __ATOMIC_SEQ_CST);
  int64_t t0 = mp__now_ns();
  while (!__atomic_load_n(&c->released, __ATOMIC_SEQ_CST)) {
    if (mp__now_ns() - t0 > 60 * 1000000000LL)
      return mp_seterr(MP_ETIMEDOUT, "never released");
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  return mp_seterr(MP_ECLOSED, "Stuck: terminated");
}

static void
stuck_terminate(void *vc)
{
  stuck_ctx *c = vc;
  __atomic_add_fetch(&c->terminates, 1, __ATOMIC_SEQ_CST);
  __atomic_store_n(&c->released, 1, __ATOMIC_SEQ_CST);
}

static void
test_terminate_abandons_jobs_in_flight(void **state)
{
  (void)state;
  stuck_ctx c = {0};
  mp_pool_executor ex = {.run = stuck_run, .terminate = stuck_terminate,
                         .ctx = &c};
  mp_pool *p = NULL;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 2,
                                               .executor = &ex}));
  mp_result *r[2];
  for (int i = 0; i < 2; i++) {
    mp_obj *args = MP_TUPLE(mp_int_new(i));
    MP_ASSERT_OK(mp_pool_apply_async(p, square, args, NULL, &r[i]));
    mp_obj_free(args);
  }
  while (__atomic_load_n(&c.entered, __ATOMIC_SEQ_CST) < 2) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  MP_ASSERT_OK(mp_pool_terminate(p));
  assert_int_equal(__atomic_load_n(&c.terminates, __ATOMIC_SEQ_CST), 1);
  for (int i = 0; i < 2; i++) {
    mp_obj *v = NULL;
    int rc = mp_result_get(r[i], &v, 0);
    assert_true(rc < 0);
    mp_result_free(r[i]);
  }
  mp_pool_free(p);
  assert_int_equal(__atomic_load_n(&c.terminates, __ATOMIC_SEQ_CST), 1);
}

/* The args an executor builds for each item, and each code it returns. */
static void
test_job_args(void **state)
{
  (void)state;
  mp_obj *args = NULL, *one = MP_TUPLE(mp_int_new(5));
  MP_ASSERT_OK(mp_pool_job_args(MP_POOL_JOB_APPLY, one, 0, &args));
  assert_ptr_equal(args, one); /* the payload itself */
  mp_obj_free(args);
  MP_ASSERT_ERR(mp_pool_job_args(MP_POOL_JOB_APPLY, one, 1, &args),
                MP_EINDEX);
  mp_obj *items = mp_list_new();
  mp_list_append_take(items, mp_int_new(3));
  mp_list_append_take(items, MP_TUPLE(mp_int_new(1), mp_int_new(2)));
  mp_obj *l = mp_list_new();
  mp_list_append_take(l, mp_int_new(8));
  mp_list_append_take(items, l);
  MP_ASSERT_OK(mp_pool_job_args(MP_POOL_JOB_MAP, items, 0, &args));
  char *r = mp_obj_repr(args);
  assert_string_equal(r, "(3,)");
  mp_free(r);
  mp_obj_free(args);
  MP_ASSERT_OK(mp_pool_job_args(MP_POOL_JOB_STARMAP, items, 1, &args));
  r = mp_obj_repr(args);
  assert_string_equal(r, "(1, 2)");
  mp_free(r);
  mp_obj_free(args);
  MP_ASSERT_OK(mp_pool_job_args(MP_POOL_JOB_STARMAP, items, 2, &args));
  r = mp_obj_repr(args);
  assert_string_equal(r, "(8,)"); /* a list item becomes a tuple */
  mp_free(r);
  mp_obj_free(args);
  MP_ASSERT_ERR(mp_pool_job_args(MP_POOL_JOB_STARMAP, items, 0, &args),
                MP_ETYPE);
  assert_null(args);
  MP_ASSERT_ERR(mp_pool_job_args(MP_POOL_JOB_MAP, items, 3, &args),
                MP_EINDEX);
  MP_ASSERT_ERR(mp_pool_job_args(7, items, 0, &args), MP_EINVAL);
  mp_obj *num = mp_int_new(1);
  MP_ASSERT_ERR(mp_pool_job_args(MP_POOL_JOB_MAP, num, 0, &args), MP_EINVAL);
  MP_ASSERT_ERR(mp_pool_job_args(MP_POOL_JOB_MAP, items, 0, NULL), MP_EINVAL);
  mp_obj_free(num);
  mp_obj_free(items);
  mp_obj_free(one);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_calls),
    cmocka_unit_test(test_failures),
    cmocka_unit_test(test_array),
    cmocka_unit_test(test_terminate_abandons_jobs_in_flight),
    cmocka_unit_test(test_job_args),
};

MP_TEST_MAIN(tests)
