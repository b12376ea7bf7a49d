/* SPDX-License-Identifier: MIT */
/* The pool's fast lane for ints (src/obj/packed.c): a chunk whose items are
 * all plain ints travels as packed int64s, a job whose results are all
 * plain ints comes back so, and the worker rewrites the (item,) tuple in
 * place when the last call kept no reference.  None of it may show: every
 * value and type as the list path gives them, bools stay bools, big ints
 * stay big, a task that keeps its arguments keeps them unchanged, failures
 * land at their positions.  And a map's jobs are handed out while later
 * ones are still being built: a close or terminate meanwhile neither loses
 * nor hangs any item. */
#define _GNU_SOURCE
#include "testutil.h"
#include "tasks.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int
identity(mp_obj *args, mp_obj **result)
{
  *result = mp_obj_ref(mp_seq_item(args, 0));
  return 0;
}

/* (x,) -> the args tuple itself */
static int
whole_args(mp_obj *args, mp_obj **result)
{
  *result = mp_obj_ref(args);
  return 0;
}

/* Keep a reference to the args tuple, or to its item, until the next call
 * (per thread: a ThreadPool's workers share this process), and fail if
 * what was kept changed meanwhile: a tuple or an int rewritten while held.
 * Holding only the item is what reaches the in-place int rewrite (a held
 * tuple is never reused at all). */
static _Thread_local mp_obj *held;
static _Thread_local int held_is_tuple;
static _Thread_local int64_t held_value;
static pthread_key_t held_key; /* drops a worker thread's ref as it ends */
static pthread_once_t held_once = PTHREAD_ONCE_INIT;

static void
held_drop(void *arg)
{
  (void)arg;
  mp_obj_free(held);
  held = NULL;
}

static void
held_init(void)
{
  pthread_key_create(&held_key, held_drop);
}

static int
hold(mp_obj *args, mp_obj **result, int tuple)
{
  pthread_once(&held_once, held_init);
  pthread_setspecific(held_key, (void *)1);
  if (held) {
    int64_t v;
    if (mp_int_get(held_is_tuple ? mp_seq_item(held, 0) : held, &v) ||
        v != held_value)
      return mp_seterr(MP_EINVAL, "a held %s changed from %lld",
                       held_is_tuple ? "args tuple" : "item",
                       (long long)held_value);
    mp_obj_free(held);
  }
  held = mp_obj_ref(tuple ? args : mp_seq_item(args, 0));
  held_is_tuple = tuple;
  if (mp_int_get(mp_seq_item(args, 0), &held_value))
    return MP_ETYPE;
  *result = mp_int_new(held_value);
  return 0;
}

static int
hold_item(mp_obj *args, mp_obj **result)
{
  return hold(args, result, 0);
}

static int
hold_tuple(mp_obj *args, mp_obj **result)
{
  return hold(args, result, 1);
}

/* x -> x for even x, str(x) for odd x, None for x % 10 == 5 */
static int
mixed(mp_obj *args, mp_obj **result)
{
  int64_t x;
  if (mp_int_get(mp_seq_item(args, 0), &x))
    return MP_ETYPE;
  char buf[32];
  snprintf(buf, sizeof buf, "%lld", (long long)x);
  *result = x % 10 == 5 ? NULL : x % 2 ? mp_str_new(buf) : mp_int_new(x);
  return 0;
}

/* x -> bool(x % 2) */
static int
parity(mp_obj *args, mp_obj **result)
{
  int64_t x;
  if (mp_int_get(mp_seq_item(args, 0), &x))
    return MP_ETYPE;
  *result = mp_bool_new((int)(x % 2));
  return 0;
}

/* x -> x, failing for x % 7 == 3 */
static int
fails_some(mp_obj *args, mp_obj **result)
{
  int64_t x;
  if (mp_int_get(mp_seq_item(args, 0), &x))
    return MP_ETYPE;
  if (x % 7 == 3)
    return mp_seterr(MP_EOVERFLOW, "no %lld", (long long)x);
  *result = mp_int_new(x);
  return 0;
}

static mp_pool *
new_pool(void **state)
{
  mp_pool *p = NULL;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = 2,
                                   .context = mp_test_context(state)}));
  return p;
}

static void
close_join(mp_pool *p)
{
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
}

/* out[i] is an int equal to want[i] */
static void
check_ints(mp_obj *out, const int64_t *want, size_t n)
{
  size_t len = 0;
  MP_ASSERT_OK(mp_obj_len(out, &len));
  assert_int_equal(len, n);
  for (size_t i = 0; i < n; i++) {
    int64_t v;
    mp_obj *o = mp_seq_item(out, i);
    assert_int_equal(mp_obj_type(o), MP_T_INT);
    MP_ASSERT_OK(mp_int_get(o, &v));
    if (v != want[i])
      fail_msg("item %zu: %lld, expected %lld", i, (long long)v,
               (long long)want[i]);
  }
}

/* Every int64 edge and the small-int cache's edges round-trip, in chunks
 * below, at and above the packing threshold. */
static void
test_packed_values(void **state)
{
  enum { N = 3000 };
  static int64_t want[N];
  mp_obj *items = mp_list_new();
  const int64_t edges[] = {INT64_MIN, INT64_MIN + 1, -6, -5, -1, 0, 1,
                           1024, 1025, INT32_MAX, (int64_t)INT32_MAX + 1,
                           INT64_MAX - 1, INT64_MAX};
  size_t ne = sizeof edges / sizeof edges[0];
  for (size_t i = 0; i < N; i++) {
    want[i] = i < ne ? edges[i] : (int64_t)(i * 2654435761u) - (1 << 30);
    assert_int_equal(mp_list_append_take(items, mp_int_new(want[i])), 0);
  }
  mp_pool *p = new_pool(state);
  const size_t sizes[] = {0, 1, 7, 8, 9, 1000, N};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    mp_map_opts o = {.chunksize = sizes[k]};
    mp_obj *out = NULL;
    MP_ASSERT_OK(mp_pool_map(p, identity, items, &o, &out));
    check_ints(out, want, N);
    mp_obj_free(out);
  }
  /* imap over packed chunks: the same values in order */
  mp_imap *it = NULL;
  MP_ASSERT_OK(mp_pool_imap(p, identity, items, &(mp_map_opts){.chunksize = 64},
                            &it));
  for (size_t i = 0; i < N; i++) {
    mp_obj *v = NULL;
    int64_t x;
    MP_ASSERT_OK(mp_imap_next(it, &v, 10.0));
    MP_ASSERT_OK(mp_int_get(v, &x));
    assert_int_equal(x, want[i]);
    mp_obj_free(v);
  }
  mp_obj *end = NULL;
  MP_ASSERT_ERR(mp_imap_next(it, &end, 10.0), MP_EEOF);
  mp_imap_free(it);
  close_join(p);
  mp_obj_free(items);
}

/* A chunk with one item that is not a plain int goes as a list: a bool, an
 * int beyond int64, a float, a str -- first, in the middle, last. */
static void
test_not_packed(void **state)
{
  mp_pool *p = new_pool(state);
  uint8_t big_le[10] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1}; /* 2**72 */
  for (int where = 0; where < 3; where++) {
    for (int kind = 0; kind < 4; kind++) {
      mp_obj *items = mp_list_new();
      size_t pos = where == 0 ? 0 : where == 1 ? 10 : 19;
      for (size_t i = 0; i < 20; i++) {
        mp_obj *o = mp_int_new((int64_t)i);
        if (i == pos) {
          mp_obj_free(o);
          o = kind == 0   ? mp_bool_new(1)
              : kind == 1 ? mp_int_from_bytes(big_le, sizeof big_le)
              : kind == 2 ? mp_float_new(2.5)
                          : mp_str_new("x");
        }
        assert_int_equal(mp_list_append_take(items, o), 0);
      }
      mp_obj *out = NULL;
      MP_ASSERT_OK(mp_pool_map(p, identity, items,
                               &(mp_map_opts){.chunksize = 20}, &out));
      for (size_t i = 0; i < 20; i++) {
        mp_obj *a = mp_seq_item(items, i), *b = mp_seq_item(out, i);
        assert_int_equal(mp_obj_type(a), mp_obj_type(b));
        assert_int_equal(mp_obj_equal(a, b), 1);
      }
      mp_obj_free(out);
      mp_obj_free(items);
    }
  }
  close_join(p);
}

/* Results that stop being ints part-way through a job, None among them. */
static void
test_results_mixed(void **state)
{
  mp_pool *p = new_pool(state);
  mp_obj *items = int_list(500);
  mp_obj *out = NULL;
  MP_ASSERT_OK(mp_pool_map(p, mixed, items, &(mp_map_opts){.chunksize = 100},
                           &out));
  for (int64_t i = 0; i < 500; i++) {
    mp_obj *o = mp_seq_item(out, (size_t)i);
    if (i % 10 == 5) {
      assert_int_equal(mp_obj_type(o), MP_T_NONE);
    } else if (i % 2) {
      const char *s;
      size_t len;
      char buf[32];
      snprintf(buf, sizeof buf, "%lld", (long long)i);
      MP_ASSERT_OK(mp_str_get(o, &s, &len));
      assert_string_equal(s, buf);
    } else {
      int64_t v;
      assert_int_equal(mp_obj_type(o), MP_T_INT);
      MP_ASSERT_OK(mp_int_get(o, &v));
      assert_int_equal(v, i);
    }
  }
  mp_obj_free(out);
  /* bools are ints to Python, not to the packing: they come back bools */
  MP_ASSERT_OK(mp_pool_map(p, parity, items, &(mp_map_opts){.chunksize = 100},
                           &out));
  for (int64_t i = 0; i < 500; i++) {
    int b = -1;
    MP_ASSERT_OK(mp_bool_get(mp_seq_item(out, (size_t)i), &b));
    assert_int_equal(b, (int)(i % 2));
  }
  mp_obj_free(out);
  mp_obj_free(items);
  close_join(p);
}

/* The rewritten (item,) tuple never changes under a task that holds it,
 * and a task returning its args tuple gets a tuple of its own each time. */
static void
test_args_kept(void **state)
{
  mp_pool *p = new_pool(state);
  enum { N = 4000 };
  mp_obj *items = mp_list_new();
  for (int i = 0; i < N; i++) /* beyond the small-int cache too */
    assert_int_equal(mp_list_append_take(items, mp_int_new(i * 3 + 1000)), 0);
  static int64_t want[N];
  for (int i = 0; i < N; i++)
    want[i] = i * 3 + 1000;
  mp_task_fn holders[] = {hold_item, hold_tuple};
  mp_obj *out = NULL;
  for (int k = 0; k < 2; k++) {
    MP_ASSERT_OK(mp_pool_map(p, holders[k], items,
                             &(mp_map_opts){.chunksize = 500}, &out));
    check_ints(out, want, N);
    mp_obj_free(out);
  }
  MP_ASSERT_OK(mp_pool_map(p, whole_args, items,
                           &(mp_map_opts){.chunksize = 500}, &out));
  for (int i = 0; i < N; i++) {
    mp_obj *t = mp_seq_item(out, (size_t)i);
    int64_t v;
    assert_int_equal(mp_obj_type(t), MP_T_TUPLE);
    MP_ASSERT_OK(mp_int_get(mp_seq_item(t, 0), &v));
    assert_int_equal(v, want[i]);
  }
  mp_obj_free(out);
  mp_obj_free(items);
  close_join(p);
}

/* Failures inside packed jobs: map reports the first; imap yields each at
 * its position, the values around it intact. */
static void
test_failures_in_packed(void **state)
{
  mp_pool *p = new_pool(state);
  mp_obj *items = int_list(300);
  mp_obj *out = NULL;
  MP_ASSERT_ERR(mp_pool_map(p, fails_some, items,
                            &(mp_map_opts){.chunksize = 50}, &out),
                MP_EOVERFLOW);
  assert_null(out);
  assert_non_null(strstr(mp_errdetail(), "no 3"));
  mp_imap *it = NULL;
  MP_ASSERT_OK(mp_pool_imap(p, fails_some, items,
                            &(mp_map_opts){.chunksize = 50}, &it));
  for (int64_t i = 0; i < 300; i++) {
    mp_obj *v = NULL;
    if (i % 7 == 3) {
      MP_ASSERT_ERR(mp_imap_next(it, &v, 10.0), MP_EOVERFLOW);
      continue;
    }
    int64_t x;
    MP_ASSERT_OK(mp_imap_next(it, &v, 10.0));
    MP_ASSERT_OK(mp_int_get(v, &x));
    assert_int_equal(x, i);
    mp_obj_free(v);
  }
  mp_imap_free(it);
  mp_obj_free(items);
  close_join(p);
}

/* ---- close and terminate while a map is still handing out its jobs ---- */

typedef struct racer {
  mp_pool *p;
  int terminate;
  long delay_us;
} racer;

static void *
race_main(void *arg)
{
  racer *r = arg;
  struct timespec ts = {0, r->delay_us * 1000};
  nanosleep(&ts, NULL);
  if (r->terminate)
    mp_pool_terminate(r->p);
  else
    mp_pool_close(r->p);
  return NULL;
}

static void
feed_race(void **state, int terminate)
{
  enum { N = 20000, ROUNDS = 12 };
  mp_obj *items = int_list(N);
  unsigned seed = (unsigned)time(NULL);
  print_message("seed %u\n", seed);
  srand(seed);
  for (int round = 0; round < ROUNDS; round++) {
    mp_pool *p = new_pool(state);
    racer r = {p, terminate, rand() % 3000};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, race_main, &r), 0);
    mp_result *res = NULL;
    /* chunksize 1: 20000 jobs, handed out in batches of up to 1024 */
    int rc = mp_pool_map_async(p, square, items,
                               &(mp_map_opts){.chunksize = 1}, &res);
    if (rc != 0) { /* the close or terminate came first */
      assert_int_equal(rc, MP_ESTATE);
    } else {
      mp_obj *out = NULL;
      rc = mp_result_get(res, &out, 60.0);
      if (terminate && rc != 0) {
        assert_int_equal(rc, MP_ECLOSED);
      } else {
        MP_ASSERT_OK(rc);
        check_squares(out, N);
      }
      mp_obj_free(out);
      mp_result_free(res);
    }
    assert_int_equal(pthread_join(t, NULL), 0);
    if (!terminate)
      MP_ASSERT_OK(mp_pool_join(p));
    mp_pool_free(p);
  }
  mp_obj_free(items);
}

static void
test_close_while_feeding(void **state)
{
  feed_race(state, 0);
}

static void
test_terminate_while_feeding(void **state)
{
  feed_race(state, 1);
}

static const struct CMUnitTest tests[] = {
    MP_TEST_METHODS_THREADING(test_packed_values),
    MP_TEST_METHODS_THREADING(test_not_packed),
    MP_TEST_METHODS_THREADING(test_results_mixed),
    MP_TEST_METHODS_THREADING(test_args_kept),
    MP_TEST_METHODS_THREADING(test_failures_in_packed),
    MP_TEST_METHODS_THREADING(test_close_while_feeding),
    MP_TEST_METHODS_THREADING(test_terminate_while_feeding),
};

MP_TEST_MAIN(tests)
