/* SPDX-License-Identifier: MIT */
/* Pool and ThreadPool under every start method: apply, apply_async with
 * get timeouts, map (the seeds' f(x) = x*x over 1000 ints), starmap, imap in
 * order, imap_unordered as a set, task errors with their text and the
 * worker's name, callbacks, close + join, terminate, use after close, and
 * freeing a live pool. */
#define _GNU_SOURCE
#include "testutil.h"
#include "tasks.h"

#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"
#include "proc/proc_internal.h"

static int
mul(mp_obj *args, mp_obj **result)
{
  int64_t a, b;
  if (mp_int_get(mp_seq_item(args, 0), &a) ||
      mp_int_get(mp_seq_item(args, 1), &b))
    return mp_seterr(MP_ETYPE, "mul takes two ints");
  *result = mp_int_new(a * b);
  return 0;
}

/* 1/(x - 5): the seeds' f, failing at 5 as ZeroDivisionError does. */
static int
inverse(mp_obj *args, mp_obj **result)
{
  int64_t x;
  if (mp_int_get(mp_seq_item(args, 0), &x))
    return MP_ETYPE;
  if (x == 5)
    return mp_seterr(MP_EINVAL, "float division by zero (x = %d)", (int)x);
  *result = mp_float_new(1.0 / (double)(x - 5));
  return 0;
}

/* Waits for the event in args[0], then returns args[1]. */
static int
wait_then(mp_obj *args, mp_obj **result)
{
  mp_event *ev = mp_event_from_obj(mp_seq_item(args, 0));
  if (!ev)
    return mp_seterr(MP_ETYPE, "not an event");
  int rc = mp_event_wait(ev, MP_FOREVER);
  if (rc)
    return rc;
  *result = mp_obj_ref(mp_seq_item(args, 1));
  return 0;
}

static int
my_name(mp_obj *args, mp_obj **result)
{
  (void)args;
  *result = mp_str_new(mp_process_name(mp_current_process()));
  return 0;
}

/* Thread: set the event (arg) 300 ms from now. */
static void *
set_later(void *arg)
{
  struct timespec ts = {0, 300 * 1000 * 1000};
  nanosleep(&ts, NULL);
  mp_event_set(arg);
  return NULL;
}

/* wait_then((ev, value)) submitted: a task that returns value once ev is
 * set. */
static mp_result *
apply_waiting(mp_pool *p, mp_event *ev, int64_t value)
{
  mp_obj *args = MP_TUPLE(mp_event_obj(ev), mp_int_new(value));
  mp_result *r = NULL;
  MP_ASSERT_OK(mp_pool_apply_async(p, wait_then, args, NULL, &r));
  mp_obj_free(args);
  return r;
}

static int
returns_none(mp_obj *args, mp_obj **result)
{
  (void)args;
  (void)result;
  return 0;
}

/* (x,) argument tuples, released by scratch_free() at the end of a test
 * (apply borrows its args). */
static mp_obj *scratch[256];
static size_t nscratch;

static mp_obj *
arg1(int64_t x)
{
  assert_true(nscratch < 256);
  return scratch[nscratch++] = MP_TUPLE(mp_int_new(x));
}

static void
scratch_free(void)
{
  while (nscratch)
    mp_obj_free(scratch[--nscratch]);
}

static mp_pool *
new_pool(void **state, int n)
{
  mp_pool *p = NULL;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = n,
                                   .context = mp_test_context(state)}));
  return p;
}

static void
close_join(mp_pool *p)
{
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
  scratch_free();
}

static void
test_apply(void **state)
{
  mp_pool *p = new_pool(state, 2);
  mp_obj *out = NULL;
  MP_ASSERT_OK(mp_pool_apply(p, square, arg1(20), &out));
  int64_t v;
  MP_ASSERT_OK(mp_int_get(out, &v));
  assert_int_equal(v, 400);
  mp_obj_free(out);
  /* None comes back as NULL */
  out = mp_int_new(1);
  MP_ASSERT_OK(mp_pool_apply(p, returns_none, NULL, &out));
  assert_null(out);
  /* the worker's name, as Python's */
  MP_ASSERT_OK(mp_pool_apply(p, my_name, NULL, &out));
  const char *name;
  size_t len;
  MP_ASSERT_OK(mp_str_get(out, &name, &len));
  const char *m = mp_test_method(state);
  const char *want = !strcmp(m, "fork")         ? "ForkPoolWorker-"
                     : !strcmp(m, "spawn")      ? "SpawnPoolWorker-"
                     : !strcmp(m, "forkserver") ? "ForkServerPoolWorker-"
                                                : "ThreadPoolWorker-";
  if (strncmp(name, want, strlen(want)) != 0)
    fail_msg("worker name %s, expected %s*", name, want);
  mp_obj_free(out);
  MP_ASSERT_ERR(mp_pool_apply(p, square, mp_int_new(3), &out), MP_EINVAL);
  MP_ASSERT_ERR(mp_pool_apply(p, NULL, NULL, &out), MP_EINVAL);
  close_join(p);
}

static void
test_apply_async_timeout(void **state)
{
  mp_pool *p = new_pool(state, 2);
  mp_event *ev;
  MP_ASSERT_OK(mp_event_new(&ev));
  mp_result *r = apply_waiting(p, ev, 42);
  mp_obj *out = NULL;
  MP_ASSERT_ERR(mp_result_get(r, &out, 0.05), MP_ETIMEDOUT);
  MP_ASSERT_ERR(mp_result_get(r, &out, 0), MP_ETIMEDOUT);
  MP_ASSERT_ERR(mp_result_wait(r, 0.01), MP_ETIMEDOUT);
  assert_int_equal(mp_result_ready(r), 0);
  MP_ASSERT_ERR(mp_result_successful(r), MP_ESTATE);
  MP_ASSERT_ERR(mp_result_get(r, &out, 0.0 / 0.0), MP_EINVAL);
  MP_ASSERT_OK(mp_event_set(ev));
  MP_ASSERT_OK(mp_result_get(r, &out, MP_FOREVER));
  int64_t v;
  MP_ASSERT_OK(mp_int_get(out, &v));
  assert_int_equal(v, 42);
  mp_obj_free(out);
  /* gettable again */
  MP_ASSERT_OK(mp_result_get(r, &out, 0));
  mp_obj_free(out);
  assert_int_equal(mp_result_ready(r), 1);
  assert_int_equal(mp_result_successful(r), 1);
  mp_result_free(r);
  mp_event_free(ev);
  close_join(p);
}

/* CPU time of the calling thread, in seconds. */
static double
thread_cpu(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A caller polls a result briefly before it sleeps, while results have
 * been coming back within microseconds (result.c): after a run of quick
 * round trips that made the poll as long as it gets, a caller waiting on
 * a task that takes 300 ms still sleeps through it -- with and without a
 * timeout -- and spends a small part of that time on the CPU. */
static void
test_waiting_caller_sleeps(void **state)
{
  mp_pool *p = new_pool(state, 2);
  mp_obj *three = arg1(3);
  for (int i = 0; i < 200; i++) { /* quick trips: the longest poll */
    mp_obj *out = NULL;
    MP_ASSERT_OK(mp_pool_apply(p, square, three, &out));
    mp_obj_free(out);
  }
  mp_event *ev;
  MP_ASSERT_OK(mp_event_new(&ev));
  mp_result *r = apply_waiting(p, ev, 7);
  mp_obj *out = NULL;
  double t0 = mp_test_now(), c0 = thread_cpu();
  MP_ASSERT_ERR(mp_result_get(r, &out, 0.3), MP_ETIMEDOUT);
  double wall = mp_test_now() - t0, cpu = thread_cpu() - c0;
  assert_true(wall >= 0.29);
  if (cpu > wall / 4)
    fail_msg("a timed get spent %.3f s of CPU in %.3f s", cpu, wall);
  /* untimed: the event is set 300 ms later by another thread */
  pthread_t setter;
  assert_int_equal(pthread_create(&setter, NULL, set_later, ev), 0);
  t0 = mp_test_now();
  c0 = thread_cpu();
  MP_ASSERT_OK(mp_result_get(r, &out, MP_FOREVER));
  wall = mp_test_now() - t0;
  cpu = thread_cpu() - c0;
  assert_int_equal(pthread_join(setter, NULL), 0);
  int64_t v;
  MP_ASSERT_OK(mp_int_get(out, &v));
  assert_int_equal(v, 7);
  mp_obj_free(out);
  assert_true(wall >= 0.29);
  if (cpu > wall / 4)
    fail_msg("an untimed get spent %.3f s of CPU in %.3f s", cpu, wall);
  mp_result_free(r);
  mp_event_free(ev);
  close_join(p);
}

static void
test_map_squares(void **state)
{
  mp_pool *p = new_pool(state, 4);
  mp_obj *items = int_list(1000), *out = NULL;
  MP_ASSERT_OK(mp_pool_map(p, square, items, NULL, &out));
  size_t n;
  MP_ASSERT_OK(mp_obj_len(out, &n));
  assert_int_equal(n, 1000);
  for (int i = 0; i < 1000; i++) {
    int64_t v;
    MP_ASSERT_OK(mp_int_get(mp_seq_item(out, i), &v));
    assert_int_equal(v, (int64_t)i * i);
  }
  mp_obj_free(out);
  /* explicit chunks, a tuple of items, an empty list */
  MP_ASSERT_OK(mp_pool_map(p, square, items, &(mp_map_opts){.chunksize = 7},
                           &out));
  assert_int_equal(mp_obj_equal(out, mp_seq_item(out, 0)) , 0);
  int64_t v;
  MP_ASSERT_OK(mp_int_get(mp_seq_item(out, 999), &v));
  assert_int_equal(v, 999 * 999);
  mp_obj_free(out);
  mp_obj *empty = mp_list_new();
  MP_ASSERT_OK(mp_pool_map(p, square, empty, NULL, &out));
  MP_ASSERT_OK(mp_obj_len(out, &n));
  assert_int_equal(n, 0);
  mp_obj_free(out);
  mp_obj_free(empty);
  MP_ASSERT_ERR(mp_pool_map(p, square, mp_int_new(3), NULL, &out), MP_EINVAL);
  mp_obj_free(items);
  close_join(p);
}

static void
test_starmap(void **state)
{
  mp_pool *p = new_pool(state, 2);
  mp_obj *items = mp_list_new();
  for (int i = 0; i < 50; i++)
    mp_list_append_take(items, MP_TUPLE(mp_int_new(i), mp_int_new(7)));
  mp_obj *out = NULL;
  MP_ASSERT_OK(mp_pool_starmap(p, mul, items, NULL, &out));
  for (int i = 0; i < 50; i++) {
    int64_t v;
    MP_ASSERT_OK(mp_int_get(mp_seq_item(out, i), &v));
    assert_int_equal(v, i * 7);
  }
  mp_obj_free(out);
  /* an item that is not a tuple or list fails with MP_ETYPE */
  mp_list_append_take(items, mp_int_new(3));
  MP_ASSERT_ERR(mp_pool_starmap(p, mul, items, NULL, &out), MP_ETYPE);
  assert_non_null(strstr(mp_errdetail(), "not a tuple"));
  mp_obj_free(items);
  close_join(p);
}

static void
test_imap_order(void **state)
{
  mp_pool *p = new_pool(state, 3);
  mp_obj *items = int_list(200);
  for (int cs = 1; cs <= 8; cs += 7) {
    mp_imap *it;
    MP_ASSERT_OK(mp_pool_imap(p, square, items,
                              &(mp_map_opts){.chunksize = (size_t)cs}, &it));
    for (int i = 0; i < 200; i++) {
      mp_obj *o;
      MP_ASSERT_OK(mp_imap_next(it, &o, MP_FOREVER));
      int64_t v;
      MP_ASSERT_OK(mp_int_get(o, &v));
      assert_int_equal(v, (int64_t)i * i);
      mp_obj_free(o);
    }
    mp_obj *o;
    MP_ASSERT_ERR(mp_imap_next(it, &o, MP_FOREVER), MP_EEOF);
    MP_ASSERT_ERR(mp_imap_next(it, &o, 0), MP_EEOF);
    mp_imap_free(it);
  }
  mp_obj_free(items);
  close_join(p);
}

static void
test_imap_unordered(void **state)
{
  mp_pool *p = new_pool(state, 3);
  mp_obj *items = int_list(300);
  mp_imap *it;
  MP_ASSERT_OK(mp_pool_imap_unordered(p, square, items, NULL, &it));
  char seen[300] = {0};
  for (int i = 0; i < 300; i++) {
    mp_obj *o;
    MP_ASSERT_OK(mp_imap_next(it, &o, MP_FOREVER));
    int64_t v;
    MP_ASSERT_OK(mp_int_get(o, &v));
    int64_t r = 0;
    while (r * r < v)
      r++;
    assert_true(r < 300 && r * r == v && !seen[r]);
    seen[r] = 1;
    mp_obj_free(o);
  }
  mp_obj *o;
  MP_ASSERT_ERR(mp_imap_next(it, &o, 1.0), MP_EEOF);
  mp_imap_free(it);
  mp_obj_free(items);
  close_join(p);
}

static void
test_errors(void **state)
{
  mp_pool *p = new_pool(state, 2);
  mp_obj *out = NULL;
  MP_ASSERT_ERR(mp_pool_apply(p, inverse, arg1(5), &out),
                MP_EINVAL);
  assert_null(out);
  assert_non_null(strstr(mp_errdetail(), "PoolWorker-"));
  assert_non_null(strstr(mp_errdetail(), ": float division by zero (x = 5)"));
  /* map: the failing item's code; the others still ran (no fail-fast) */
  mp_obj *items = int_list(10);
  MP_ASSERT_ERR(mp_pool_map(p, inverse, items, NULL, &out), MP_EINVAL);
  assert_non_null(strstr(mp_errdetail(), "x = 5"));
  /* imap yields it at its position and goes on */
  mp_imap *it;
  MP_ASSERT_OK(mp_pool_imap(p, inverse, items, NULL, &it));
  for (int i = 0; i < 10; i++) {
    mp_obj *o = NULL;
    int rc = mp_imap_next(it, &o, MP_FOREVER);
    if (i == 5) {
      MP_ASSERT_ERR(rc, MP_EINVAL);
      assert_non_null(strstr(mp_errdetail(), "x = 5"));
      assert_null(o);
    } else {
      MP_ASSERT_OK(rc);
      double d;
      MP_ASSERT_OK(mp_float_get(o, &d));
      assert_true(d == 1.0 / (i - 5));
      mp_obj_free(o);
    }
  }
  mp_imap_free(it);
  mp_result *r;
  MP_ASSERT_OK(mp_pool_apply_async(p, inverse, arg1(5), NULL,
                                   &r));
  MP_ASSERT_OK(mp_result_wait(r, MP_FOREVER));
  assert_int_equal(mp_result_successful(r), 0);
  MP_ASSERT_ERR(mp_result_get(r, &out, 0), MP_EINVAL);
  mp_result_free(r);
  /* a positive return is MP_EINVAL too */
  mp_obj_free(items);
  close_join(p);
}

/* ---- callbacks ------------------------------------------------------------ */

typedef struct cb_state {
  pthread_mutex_t mu;
  int ok, err, last_code;
  int64_t sum;
  char detail[256];
} cb_state;

static void
on_value(mp_obj *value, void *arg)
{
  cb_state *s = arg;
  pthread_mutex_lock(&s->mu);
  s->ok++;
  int64_t v;
  if (mp_obj_type(value) == MP_T_LIST) {
    for (int64_t i = 0; mp_seq_item(value, i); i++)
      if (!mp_int_get(mp_seq_item(value, i), &v))
        s->sum += v;
  } else if (!mp_int_get(value, &v)) {
    s->sum += v;
  }
  pthread_mutex_unlock(&s->mu);
}

static void
on_error(int code, const char *detail, void *arg)
{
  cb_state *s = arg;
  pthread_mutex_lock(&s->mu);
  s->err++;
  s->last_code = code;
  snprintf(s->detail, sizeof s->detail, "%s", detail);
  pthread_mutex_unlock(&s->mu);
}

static void
test_callbacks(void **state)
{
  mp_pool *p = new_pool(state, 2);
  cb_state s = {.mu = PTHREAD_MUTEX_INITIALIZER};
  mp_result *rs[20];
  for (int i = 0; i < 20; i++)
    MP_ASSERT_OK(mp_pool_apply_async(
        p, inverse, arg1(i),
        &(mp_apply_opts){.callback = on_value, .error_callback = on_error,
                         .arg = &s},
        &rs[i]));
  for (int i = 0; i < 20; i++) {
    MP_ASSERT_OK(mp_result_wait(rs[i], MP_FOREVER));
    mp_result_free(rs[i]);
  }
  /* a callback runs before its result is ready */
  pthread_mutex_lock(&s.mu);
  assert_int_equal(s.ok, 19);
  assert_int_equal(s.err, 1);
  assert_int_equal(s.last_code, MP_EINVAL);
  assert_non_null(strstr(s.detail, "x = 5"));
  pthread_mutex_unlock(&s.mu);
  /* map_async: one callback with the list */
  mp_obj *items = int_list(100);
  mp_result *r;
  s.ok = 0;
  s.sum = 0;
  MP_ASSERT_OK(mp_pool_map_async(
      p, square, items,
      &(mp_map_opts){.callback = on_value, .error_callback = on_error,
                     .arg = &s},
      &r));
  MP_ASSERT_OK(mp_result_wait(r, MP_FOREVER));
  pthread_mutex_lock(&s.mu);
  assert_int_equal(s.ok, 1);
  assert_int_equal(s.sum, 328350);
  pthread_mutex_unlock(&s.mu);
  mp_result_free(r);
  mp_obj_free(items);
  close_join(p);
}

/* ---- life ------------------------------------------------------------------ */

static void
test_close_join(void **state)
{
  mp_pool *p = new_pool(state, 2);
  mp_result *rs[30];
  for (int i = 0; i < 30; i++)
    MP_ASSERT_OK(
        mp_pool_apply_async(p, square, arg1(i), NULL, &rs[i]));
  MP_ASSERT_ERR(mp_pool_join(p), MP_ESTATE);
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_close(p));
  mp_result *r;
  MP_ASSERT_ERR(mp_pool_apply_async(p, square, arg1(1), NULL,
                                    &r),
                MP_ESTATE);
  mp_obj *items = int_list(3), *out;
  MP_ASSERT_ERR(mp_pool_map(p, square, items, NULL, &out), MP_ESTATE);
  mp_obj_free(items);
  MP_ASSERT_OK(mp_pool_join(p));
  MP_ASSERT_OK(mp_pool_join(p));
  for (int i = 0; i < 30; i++) {
    assert_int_equal(mp_result_ready(rs[i]), 1);
    MP_ASSERT_OK(mp_result_get(rs[i], &out, 0));
    int64_t v;
    MP_ASSERT_OK(mp_int_get(out, &v));
    assert_int_equal(v, (int64_t)i * i);
    mp_obj_free(out);
    mp_result_free(rs[i]);
  }
  mp_pool_free(p);
  scratch_free();
}

static void
test_terminate(void **state)
{
  mp_pool *p = new_pool(state, 2);
  mp_event *ev;
  MP_ASSERT_OK(mp_event_new(&ev));
  mp_result *rs[6];
  for (int i = 0; i < 6; i++)
    rs[i] = apply_waiting(p, ev, i);
  if (!strcmp(mp_test_method(state), "threading"))
    MP_ASSERT_OK(mp_event_set(ev)); /* a thread cannot be stopped */
  MP_ASSERT_OK(mp_pool_terminate(p));
  for (int i = 0; i < 6; i++) {
    assert_int_equal(mp_result_ready(rs[i]), 1);
    mp_obj *out = NULL;
    int rc = mp_result_get(rs[i], &out, 0);
    if (strcmp(mp_test_method(state), "threading") != 0)
      MP_ASSERT_ERR(rc, MP_ECLOSED);
    else
      assert_true(rc == 0 || rc == MP_ECLOSED);
    mp_obj_free(out);
    mp_result_free(rs[i]);
  }
  MP_ASSERT_OK(mp_pool_join(p));
  MP_ASSERT_OK(mp_pool_terminate(p));
  mp_result *r;
  MP_ASSERT_ERR(mp_pool_apply_async(p, square, arg1(1), NULL,
                                    &r),
                MP_ESTATE);
  mp_pool_free(p);
  mp_event_free(ev);
  scratch_free();
}

/* Freeing a pool with work in flight terminates it (Python's with block);
 * a result outlives its pool. */
static void
test_free_live_pool(void **state)
{
  mp_pool *p = new_pool(state, 2);
  mp_event *ev;
  MP_ASSERT_OK(mp_event_new(&ev));
  mp_result *r = apply_waiting(p, ev, 1);
  if (!strcmp(mp_test_method(state), "threading"))
    MP_ASSERT_OK(mp_event_set(ev));
  mp_pool_free(p);
  assert_int_equal(mp_result_ready(r), 1);
  mp_result_free(r);
  /* and a pool that was never used */
  mp_pool_free(new_pool(state, 3));
  mp_event_free(ev);
}

/* ---- initializer, maxtasksperchild ------------------------------------------ */

/* set by the initializer in each worker (per thread: ThreadPool workers
 * are threads of one process) */
static _Thread_local int64_t init_value;

static int
init_store(mp_obj *initargs)
{
  return mp_int_get(mp_seq_item(initargs, 0), &init_value);
}

static int
init_fails(mp_obj *initargs)
{
  (void)initargs;
  return mp_seterr(MP_EPERM, "no database connection");
}

static int
get_init_value(mp_obj *args, mp_obj **result)
{
  (void)args;
  *result = mp_int_new(init_value);
  return 0;
}

static void
test_initializer(void **state)
{
  mp_pool *p;
  mp_obj *initargs = MP_TUPLE(mp_int_new(4242));
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = 2,
                                   .context = mp_test_context(state),
                                   .initializer = init_store,
                                   .initargs = initargs,
                                   .maxtasksperchild = 3}));
  mp_obj_free(initargs);
  /* replacements (every 3 tasks) run it too */
  for (int i = 0; i < 20; i++) {
    mp_obj *out;
    MP_ASSERT_OK(mp_pool_apply(p, get_init_value, NULL, &out));
    int64_t v;
    MP_ASSERT_OK(mp_int_get(out, &v));
    assert_int_equal(v, 4242);
    mp_obj_free(out);
  }
  close_join(p);
}

static void
test_initializer_fails(void **state)
{
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = 2,
                                   .context = mp_test_context(state),
                                   .initializer = init_fails}));
  mp_obj *out = NULL;
  MP_ASSERT_ERR(mp_pool_apply(p, square, arg1(2), &out),
                MP_EPERM);
  if (!strstr(mp_errdetail(), "initializer failed") ||
      !strstr(mp_errdetail(), "no database connection"))
    fail_msg("detail: %s", mp_errdetail());
  mp_obj *items = int_list(20);
  MP_ASSERT_ERR(mp_pool_map(p, square, items, NULL, &out), MP_EPERM);
  mp_obj_free(items);
  close_join(p); /* and join does not wait for workers that never come */
}

static void
test_maxtasksperchild(void **state)
{
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = 2,
                                   .context = mp_test_context(state),
                                   .maxtasksperchild = 1}));
  enum { N = 40 };
  mp_result *rs[N];
  for (int i = 0; i < N; i++)
    MP_ASSERT_OK(mp_pool_apply_async(p, worker_pid, NULL, NULL, &rs[i]));
  int64_t pids[N];
  for (int i = 0; i < N; i++) {
    mp_obj *out;
    MP_ASSERT_OK(mp_result_get(rs[i], &out, 60.0));
    MP_ASSERT_OK(mp_int_get(out, &pids[i]));
    mp_obj_free(out);
    mp_result_free(rs[i]);
    /* one task per worker: a new worker each time */
    for (int k = 0; k < i && strcmp(mp_test_method(state), "threading"); k++)
      assert_true(pids[k] != pids[i]);
  }
  close_join(p);
}

static void
test_bad_args(void **state)
{
  (void)state;
  mp_pool *p;
  MP_ASSERT_ERR(mp_pool_new(NULL, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_pool_new(&p, &(mp_pool_opts){.processes = -1}), MP_EINVAL);
  MP_ASSERT_ERR(mp_pool_new(&p, &(mp_pool_opts){.maxtasksperchild = -1}),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_pool_close(NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_pool_join(NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_pool_terminate(NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_result_successful(NULL), MP_EINVAL);
  mp_pool_free(NULL);
  mp_result_free(NULL);
  mp_imap_free(NULL);
}

/* (threads named mproc-slice, the slice clock's state) in the calling
 * process. */
static int
slice_clock_here(mp_obj *args, mp_obj **result)
{
  (void)args;
  DIR *d = opendir("/proc/self/task");
  if (!d)
    return mp_seterr(MP_ENOENT, "no /proc/self/task");
  int64_t n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    char path[300], comm[32] = "";
    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
    FILE *f = fopen(path, "r");
    if (f) {
      if (!fgets(comm, sizeof comm, f))
        comm[0] = 0;
      fclose(f);
    }
    n += strncmp(comm, "mproc-slice", 11) == 0;
  }
  closedir(d);
  *result = MP_TUPLE(mp_int_new(n), mp_int_new(mp__slice_clock_state()));
  return 0;
}

/* A worker process that has slept on its task queue many times has not
 * started the slice clock: its thread would make every reference count
 * change in the worker atomic, 2.4x a map's per-item cost.  (Counted by
 * name: a sanitizer's runtime may add threads of its own.)  A ThreadPool's
 * workers are threads of this process, which keeps its clock. */
static void
test_worker_stays_single_threaded(void **state)
{
  mp_pool *p = new_pool(state, 1);
  mp_obj *out = NULL;
  /* each apply leaves the worker waiting 2 ms: a sleep on its queue */
  for (int i = 0; i < 3 * mp__slice_clock_after; i++) {
    MP_ASSERT_OK(mp_pool_apply(p, slice_clock_here, NULL, &out));
    mp_obj_free(out);
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  MP_ASSERT_OK(mp_pool_apply(p, slice_clock_here, NULL, &out));
  int64_t threads = -1, clock = -1;
  MP_ASSERT_OK(mp_int_get(mp_seq_item(out, 0), &threads));
  MP_ASSERT_OK(mp_int_get(mp_seq_item(out, 1), &clock));
  mp_obj_free(out);
  if (strcmp(mp_test_method(state), "threading") != 0) {
    assert_int_equal(threads, 0);
    assert_int_equal(clock, 0);
  } else {
    /* this process still starts its clock on its slice waits */
    uint32_t word = 0;
    for (int i = 0; i <= mp__slice_clock_after; i++)
      mp__futex_wait_slice(&word, 1); /* returns at once: word != 1 */
    assert_int_not_equal(mp__slice_clock_state(), 0);
  }
  close_join(p);
}

static const struct CMUnitTest tests[] = {
    MP_TEST_METHODS_THREADING(test_apply),
    MP_TEST_METHODS_THREADING(test_apply_async_timeout),
    MP_TEST_METHODS_THREADING(test_waiting_caller_sleeps),
    MP_TEST_METHODS_THREADING(test_map_squares),
    MP_TEST_METHODS_THREADING(test_starmap),
    MP_TEST_METHODS_THREADING(test_imap_order),
    MP_TEST_METHODS_THREADING(test_imap_unordered),
    MP_TEST_METHODS_THREADING(test_errors),
    MP_TEST_METHODS_THREADING(test_callbacks),
    MP_TEST_METHODS_THREADING(test_close_join),
    MP_TEST_METHODS_THREADING(test_terminate),
    MP_TEST_METHODS_THREADING(test_free_live_pool),
    MP_TEST_METHODS_THREADING(test_initializer),
    MP_TEST_METHODS_THREADING(test_initializer_fails),
    MP_TEST_METHODS_THREADING(test_maxtasksperchild),
    MP_TEST_METHODS_THREADING(test_worker_stays_single_threaded),
    cmocka_unit_test(test_bad_args),
};

MP_TEST_MAIN(tests)
