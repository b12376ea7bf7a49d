/* SPDX-License-Identifier: MIT */
/* Typed Value constructors (mp_value_new_int/_uint/_double) and the atomic
 * add (mp_value_add): ranges, conversions and codes, and 2 processes x N
 * increments with no lock taken by the caller giving the exact total, for
 * raw and synchronized Values, under every start method. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "proc/proc_internal.h"

static int
sanitized(void)
{
  const char *s = getenv("MPROC_SANITIZE");
  return s && *s;
}

static void
check_int(mp_value *v, int64_t want)
{
  int64_t got;
  MP_ASSERT_OK(mp_value_get_int(v, &got));
  assert_true(got == want);
}

static void
test_typed_constructors(void **state)
{
  (void)state;
  static const struct {
    char tc;
    int64_t lo, hi;
  } ints[] = {{'b', SCHAR_MIN, SCHAR_MAX}, {'B', 0, UCHAR_MAX},
              {'c', 0, UCHAR_MAX},         {'h', SHRT_MIN, SHRT_MAX},
              {'H', 0, USHRT_MAX},         {'i', INT_MIN, INT_MAX},
              {'I', 0, UINT_MAX},          {'l', LONG_MIN, LONG_MAX},
              {'q', LLONG_MIN, LLONG_MAX}};
  for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
    mp_value *v;
    MP_ASSERT_OK(mp_value_new_int(&v, ints[k].tc, ints[k].lo, NULL));
    assert_int_equal(mp_value_typecode(v), ints[k].tc);
    check_int(v, ints[k].lo);
    mp_value_free(v);
    MP_ASSERT_OK(mp_value_new_int(&v, ints[k].tc, ints[k].hi,
                                  &(mp_value_opts){.raw = 1}));
    assert_null(mp_value_get_lock(v));
    check_int(v, ints[k].hi);
    mp_value_free(v);
    if (ints[k].hi < INT64_MAX) {
      v = (mp_value *)1;
      MP_ASSERT_ERR(mp_value_new_int(&v, ints[k].tc, ints[k].hi + 1, NULL),
                    MP_EOVERFLOW);
      assert_null(v);
      MP_ASSERT_ERR(mp_value_new_int(&v, ints[k].tc, ints[k].lo - 1, NULL),
                    MP_EOVERFLOW);
    }
  }
  mp_value *v;
  /* unsigned 64-bit */
  MP_ASSERT_OK(mp_value_new_uint(&v, 'Q', UINT64_MAX, NULL));
  uint64_t u;
  MP_ASSERT_OK(mp_value_get_uint(v, &u));
  assert_true(u == UINT64_MAX);
  mp_value_free(v);
  MP_ASSERT_OK(mp_value_new_uint(&v, 'L', 7, NULL));
  check_int(v, 7);
  mp_value_free(v);
  MP_ASSERT_ERR(mp_value_new_uint(&v, 'H', 65536, NULL), MP_EOVERFLOW);
  MP_ASSERT_ERR(mp_value_new_int(&v, 'Q', -1, NULL), MP_EOVERFLOW);
  /* floats: an int converted, a double, out of float range */
  double d;
  MP_ASSERT_OK(mp_value_new_int(&v, 'd', 3, NULL));
  MP_ASSERT_OK(mp_value_get_double(v, &d));
  assert_true(d == 3.0);
  mp_value_free(v);
  MP_ASSERT_OK(mp_value_new_uint(&v, 'f', 5, NULL));
  MP_ASSERT_OK(mp_value_get_double(v, &d));
  assert_true(d == 5.0);
  mp_value_free(v);
  MP_ASSERT_OK(mp_value_new_double(&v, 'd', 1.25, NULL));
  MP_ASSERT_OK(mp_value_get_double(v, &d));
  assert_true(d == 1.25);
  mp_value_free(v);
  MP_ASSERT_OK(mp_value_new_double(&v, 'f', 0.5, &(mp_value_opts){.raw = 1}));
  MP_ASSERT_OK(mp_value_get_double(v, &d));
  assert_true(d == 0.5);
  mp_value_free(v);
  MP_ASSERT_ERR(mp_value_new_double(&v, 'f', 1e39, NULL), MP_EOVERFLOW);
  assert_null(v);
  MP_ASSERT_ERR(mp_value_new_double(&v, 'i', 1.0, NULL), MP_ETYPE);
  assert_null(v);
  /* bad typecodes */
  MP_ASSERT_ERR(mp_value_new_int(&v, 'x', 1, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_value_new_uint(&v, 0, 1, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_value_new_double(&v, 'x', 1, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_value_new_double(&v, 0, 1, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_value_new_int(NULL, 'i', 1, NULL), MP_EINVAL);
  /* a given lock */
  mp_lock *l;
  MP_ASSERT_OK(mp_lock_new(&l));
  MP_ASSERT_OK(mp_value_new_int(&v, 'i', 9, &(mp_value_opts){.lock = l}));
  assert_ptr_equal(mp_value_get_lock(v), l);
  check_int(v, 9);
  mp_value_free(v);
  mp_lock_free(l);
}

static void
test_add(void **state)
{
  (void)state;
  mp_value *v;
  int64_t r = 0;
  MP_ASSERT_OK(mp_value_new_int(&v, 'i', 5, NULL));
  MP_ASSERT_OK(mp_value_add(v, 3, &r));
  assert_int_equal(r, 8);
  MP_ASSERT_OK(mp_value_add(v, -10, &r));
  assert_int_equal(r, -2);
  MP_ASSERT_OK(mp_value_add(v, 0, NULL));
  check_int(v, -2);
  /* with the (recursive) lock held by the caller */
  MP_ASSERT_OK(mp_rlock_acquire(mp_value_get_lock(v), 1));
  MP_ASSERT_OK(mp_value_add(v, 2, &r));
  assert_int_equal(r, 0);
  MP_ASSERT_OK(mp_rlock_release(mp_value_get_lock(v)));
  MP_ASSERT_ERR(mp_value_add(v, (int64_t)INT_MAX + 1, &r), MP_EOVERFLOW);
  check_int(v, 0);
  mp_value_free(v);

  /* the edges of each width; nothing stored past them */
  static const struct {
    char tc;
    int64_t hi, lo;
  } edges[] = {{'b', 127, -128}, {'B', 255, 0},   {'c', 255, 0},
               {'h', 32767, -32768}, {'H', 65535, 0},
               {'I', UINT_MAX, 0}, {'l', INT64_MAX, INT64_MIN},
               {'q', INT64_MAX, INT64_MIN}};
  for (size_t k = 0; k < sizeof edges / sizeof edges[0]; k++) {
    for (int raw = 0; raw < 2; raw++) {
      mp_value_opts o = {.raw = raw};
      MP_ASSERT_OK(mp_value_new_int(&v, edges[k].tc, edges[k].hi - 1, &o));
      MP_ASSERT_OK(mp_value_add(v, 1, &r));
      assert_true(r == edges[k].hi);
      MP_ASSERT_ERR(mp_value_add(v, 1, &r), MP_EOVERFLOW);
      check_int(v, edges[k].hi);
      MP_ASSERT_OK(mp_value_set_int(v, edges[k].lo));
      MP_ASSERT_ERR(mp_value_add(v, -1, &r), MP_EOVERFLOW);
      check_int(v, edges[k].lo);
      MP_ASSERT_OK(mp_value_add(v, 1, &r));
      assert_true(r == edges[k].lo + 1);
      mp_value_free(v);
    }
  }
  /* 'Q'/'L' above INT64_MAX: the result would not fit int64_t */
  MP_ASSERT_OK(mp_value_new_uint(&v, 'Q', (uint64_t)INT64_MAX, NULL));
  MP_ASSERT_ERR(mp_value_add(v, 1, &r), MP_EOVERFLOW);
  MP_ASSERT_OK(mp_value_add(v, -1, &r));
  assert_true(r == INT64_MAX - 1);
  mp_value_free(v);
  /* not an integer Value */
  MP_ASSERT_OK(mp_value_new_double(&v, 'd', 1, NULL));
  MP_ASSERT_ERR(mp_value_add(v, 1, &r), MP_ETYPE);
  mp_value_free(v);
  MP_ASSERT_OK(mp_value_new_struct(&v, 8, 8, NULL, NULL));
  MP_ASSERT_ERR(mp_value_add(v, 1, &r), MP_ETYPE);
  mp_value_free(v);
  mp_array *a;
  MP_ASSERT_OK(mp_array_new(&a, 'i', 2, NULL, NULL));
  MP_ASSERT_ERR(mp_value_add((mp_value *)a, 1, &r), MP_ETYPE);
  mp_array_free(a);
  MP_ASSERT_ERR(mp_value_add(NULL, 1, &r), MP_EINVAL);
}

/* ---- 2 processes x N increments ------------------------------------------- */

static int
nincr(void)
{
  return sanitized() ? 20000 : 200000;
}

/* args: (value, delta, barrier): both children start adding together */
static int
t_incr(mp_obj *args)
{
  mp_value *v = mp_value_from_obj(mp_seq_item(args, 0));
  mp_barrier *b = mp_barrier_from_obj(mp_seq_item(args, 2));
  int64_t delta;
  if (!v || !b || mp_int_get(mp_seq_item(args, 1), &delta))
    return 2;
  if (mp_barrier_wait(b, 60) < 0)
    return 4;
  int n = nincr();
  for (int i = 0; i < n; i++)
    if (mp_value_add(v, delta, NULL) != 0)
      return 3;
  return 0;
}

static void
test_add_processes(void **state)
{
  const char *method = *state;
  mp_context *ctx;
  MP_ASSERT_OK(mp_get_context(method, &ctx));
  for (int raw = 0; raw < 2; raw++) {
    for (int w = 0; w < 2; w++) {
      char tc = w ? 'q' : 'i';
      int64_t delta = w ? 3 : 1;
      mp_value *v;
      MP_ASSERT_OK(mp_value_new_int(&v, tc, 0, &(mp_value_opts){.raw = raw}));
      mp_barrier *b;
      MP_ASSERT_OK(mp_barrier_new(&b, 2, NULL));
      mp_process *p[2];
      for (int k = 0; k < 2; k++) {
        mp_obj *args = MP_TUPLE(mp_value_obj(v), mp_int_new(delta),
                                mp_barrier_obj(b));
        MP_ASSERT_OK(mp_process_new(&p[k], ctx,
                                    &(mp_process_opts){.target = t_incr,
                                                       .args = args}));
        mp_obj_free(args);
      }
      for (int k = 0; k < 2; k++)
        MP_ASSERT_OK(mp_process_start(p[k]));
      for (int k = 0; k < 2; k++) {
        MP_ASSERT_OK(mp_process_join(p[k], MP_FOREVER));
        int code;
        MP_ASSERT_OK(mp_process_exitcode(p[k], &code));
        assert_int_equal(code, 0);
        mp_process_free(p[k]);
      }
      check_int(v, 2 * (int64_t)nincr() * delta);
      mp_barrier_free(b);
      mp_value_free(v);
    }
  }
}

static void
test_zz_stop_forkserver(void **state)
{
  (void)state;
  mp__forkserver_stop();
}

#define PER_METHOD(fn)                                                       \
  {#fn "/fork", fn, NULL, NULL, (void *)"fork"},                             \
      {#fn "/spawn", fn, NULL, NULL, (void *)"spawn"},                       \
      {#fn "/forkserver", fn, NULL, NULL, (void *)"forkserver"},             \
      {#fn "/threading", fn, NULL, NULL, (void *)"threading"}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_typed_constructors),
    cmocka_unit_test(test_add),
    PER_METHOD(test_add_processes),
    cmocka_unit_test(test_zz_stop_forkserver),
};

MP_TEST_MAIN(tests)
