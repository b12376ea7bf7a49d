/* SPDX-License-Identifier: MIT */
/* Value and Array (shared ctypes): typecodes, initializers, locks, checked
 * conversions and every error code; 100,000 values in one program. */
#define _GNU_SOURCE
#include "testutil.h"

#include <float.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shared/shared_internal.h"

/* (bounded: a child that hangs fails the test instead of the suite) */
#define wait_child(pid) mp_test_wait_child((pid), 60)

static void
test_value_typecodes(void **state)
{
  const char *codes = "cbBhHiIlLqQ";
  for (const char *c = codes; *c; c++) {
    mp_value *v;
    MP_ASSERT_OK(mp_value_new(&v, *c, NULL, NULL));
    assert_int_equal(mp_value_typecode(v), *c);
    int64_t x = -1;
    MP_ASSERT_OK(mp_value_get_int(v, &x));
    assert_int_equal(x, 0); /* zeroed */
    MP_ASSERT_OK(mp_value_set_int(v, 100));
    MP_ASSERT_OK(mp_value_get_int(v, &x));
    assert_int_equal(x, 100);
    double d;
    MP_ASSERT_ERR(mp_value_get_double(v, &d), MP_ETYPE);
    MP_ASSERT_ERR(mp_value_set_double(v, 1.5), MP_ETYPE);
    mp_value_free(v);
  }
  struct {
    char c;
    size_t size;
    int64_t lo, hi; /* signed range (hi < 0: unsigned up to UINT64_MAX) */
  } r[] = {
      {'b', 1, SCHAR_MIN, SCHAR_MAX}, {'B', 1, 0, UCHAR_MAX},
      {'h', sizeof(short), SHRT_MIN, SHRT_MAX}, {'H', 2, 0, USHRT_MAX},
      {'i', 4, INT_MIN, INT_MAX}, {'I', 4, 0, UINT_MAX},
      {'l', sizeof(long), LONG_MIN, LONG_MAX}, {'q', 8, LLONG_MIN, LLONG_MAX},
      {'c', 1, 0, 255},
  };
  for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
    mp_value *v;
    MP_ASSERT_OK(mp_value_new(&v, r[i].c, NULL, NULL));
    assert_int_equal(mp_value_size(v), r[i].size);
    MP_ASSERT_OK(mp_value_set_int(v, r[i].lo));
    MP_ASSERT_OK(mp_value_set_int(v, r[i].hi));
    int64_t x;
    MP_ASSERT_OK(mp_value_get_int(v, &x));
    assert_int_equal(x, r[i].hi);
    if (r[i].lo > INT64_MIN)
      MP_ASSERT_ERR(mp_value_set_int(v, r[i].lo - 1), MP_EOVERFLOW);
    if (r[i].hi < INT64_MAX)
      MP_ASSERT_ERR(mp_value_set_int(v, r[i].hi + 1), MP_EOVERFLOW);
    MP_ASSERT_OK(mp_value_get_int(v, &x));
    assert_int_equal(x, r[i].hi); /* unchanged by the refused stores */
    mp_value_free(v);
  }
  /* 64-bit unsigned: beyond INT64_MAX through the _uint accessors */
  mp_value *q;
  unsigned long long big = ULLONG_MAX;
  MP_ASSERT_OK(mp_value_new(&q, 'Q', &big, NULL));
  uint64_t u;
  MP_ASSERT_OK(mp_value_get_uint(q, &u));
  assert_true(u == UINT64_MAX);
  int64_t s;
  MP_ASSERT_ERR(mp_value_get_int(q, &s), MP_EOVERFLOW);
  MP_ASSERT_ERR(mp_value_set_int(q, -1), MP_EOVERFLOW);
  MP_ASSERT_OK(mp_value_set_uint(q, 5));
  MP_ASSERT_OK(mp_value_get_int(q, &s));
  assert_int_equal(s, 5);
  mp_value_free(q);
  MP_ASSERT_OK(mp_value_new(&q, 'q', NULL, NULL));
  MP_ASSERT_OK(mp_value_set_int(q, -7));
  MP_ASSERT_ERR(mp_value_get_uint(q, &u), MP_EOVERFLOW);
  MP_ASSERT_ERR(mp_value_set_uint(q, UINT64_MAX), MP_EOVERFLOW);
  mp_value_free(q);

  /* floats */
  mp_value *f, *d;
  double pi = 3.1415927;
  float ff = 0.5f;
  MP_ASSERT_OK(mp_value_new(&d, 'd', &pi, NULL));
  MP_ASSERT_OK(mp_value_new(&f, 'f', &ff, NULL));
  double x;
  MP_ASSERT_OK(mp_value_get_double(d, &x));
  assert_true(x == 3.1415927);
  MP_ASSERT_OK(mp_value_get_double(f, &x));
  assert_true(x == 0.5);
  MP_ASSERT_ERR(mp_value_set_double(f, 1e300), MP_EOVERFLOW);
  MP_ASSERT_OK(mp_value_set_double(f, 1.0 / 3));
  MP_ASSERT_OK(mp_value_get_double(f, &x));
  assert_true(x == (double)(float)(1.0 / 3));
  MP_ASSERT_ERR(mp_value_get_int(d, &s), MP_ETYPE);
  MP_ASSERT_ERR(mp_value_set_int(d, 1), MP_ETYPE);
  mp_obj *o = mp_value_to_obj(d);
  char *rep = mp_obj_repr(o);
  assert_string_equal(rep, "3.1415927");
  mp_free(rep);
  mp_obj_free(o);
  mp_value_free(d);
  mp_value_free(f);

  /* bad arguments */
  mp_value *v;
  MP_ASSERT_ERR(mp_value_new(&v, 'x', NULL, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_value_new(&v, 'u', NULL, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_value_new(&v, 0, NULL, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_value_new(NULL, 'i', NULL, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_value_new_struct(&v, 8, 3, NULL, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_value_new_struct(&v, 8, 128, NULL, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_value_new_struct(&v, 0, 8, NULL, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_value_get_int(NULL, &s), MP_EINVAL);
}

static void
test_value_locks(void **state)
{
  mp_value *v;
  /* default: a new RLock, held around each access (recursion works) */
  MP_ASSERT_OK(mp_value_new(&v, 'i', &(int){7}, NULL));
  mp_lock *l = mp_value_get_lock(v);
  assert_non_null(l);
  assert_int_equal(mp_lock_is_recursive(l), 1);
  MP_ASSERT_OK(mp_lock_acquire(l, 0));
  int64_t x;
  MP_ASSERT_OK(mp_value_get_int(v, &x));
  MP_ASSERT_OK(mp_value_set_int(v, x * x));
  MP_ASSERT_OK(mp_lock_release(l));
  MP_ASSERT_OK(mp_value_get_int(v, &x));
  assert_int_equal(x, 49);
  assert_int_equal(*(int *)mp_value_ptr(v), 49);
  /* held by another process: the accessor waits for it */
  MP_ASSERT_OK(mp_lock_acquire(l, 0));
  pid_t pid = fork();
  if (pid == 0)
    _exit(mp_lock_acquire(l, 0) == MP_ETIMEDOUT ? 0 : 1);
  assert_int_equal(wait_child(pid), 0);
  MP_ASSERT_OK(mp_lock_release(l));
  mp_value_free(v);

  /* raw */
  MP_ASSERT_OK(mp_value_new(&v, 'd', NULL, &(mp_value_opts){.raw = 1}));
  assert_null(mp_value_get_lock(v));
  MP_ASSERT_OK(mp_value_set_double(v, 2.5));
  mp_value_free(v);

  /* a given Lock, shared by two values */
  mp_lock *given;
  MP_ASSERT_OK(mp_lock_new(&given));
  mp_value *a, *b;
  MP_ASSERT_OK(mp_value_new(&a, 'i', NULL, &(mp_value_opts){.lock = given}));
  MP_ASSERT_OK(mp_value_new(&b, 'i', NULL, &(mp_value_opts){.lock = given}));
  mp_lock_free(given); /* the values keep it */
  assert_ptr_equal(mp_value_get_lock(a), given);
  assert_ptr_equal(mp_value_get_lock(b), given);
  assert_int_equal(mp_lock_is_recursive(given), 0);
  MP_ASSERT_OK(mp_value_set_int(a, 3));
  assert_int_equal(mp_lock_locked(given), 0); /* released after access */
  mp_value_free(a);
  mp_value_free(b);

  /* the lock's owner died: the accessor does its job and says so */
  MP_ASSERT_OK(mp_value_new(&v, 'i', &(int){5}, NULL));
  int p[2];
  assert_int_equal(pipe(p), 0);
  pid = fork();
  if (pid == 0) {
    mp_lock_acquire(mp_value_get_lock(v), MP_FOREVER);
    mp_value_set_int(v, 6);
    if (write(p[1], "x", 1) != 1)
      _exit(1);
    for (;;)
      pause();
  }
  char c;
  assert_int_equal(read(p[0], &c, 1), 1);
  kill(pid, SIGKILL);
  assert_int_equal(wait_child(pid), 128 + SIGKILL);
  MP_ASSERT_ERR(mp_value_get_int(v, &x), MP_EOWNERDEAD);
  assert_int_equal(x, 6);
  MP_ASSERT_OK(mp_value_get_int(v, &x));
  close(p[0]);
  close(p[1]);
  mp_value_free(v);
}

static void
test_array(void **state)
{
  mp_array *a;
  int init[10];
  for (int i = 0; i < 10; i++)
    init[i] = i;
  MP_ASSERT_OK(mp_array_new(&a, 'i', 10, init, NULL));
  assert_int_equal(mp_array_len(a), 10);
  assert_int_equal(mp_array_elsize(a), sizeof(int));
  for (int i = 0; i < 10; i++) {
    int64_t x;
    MP_ASSERT_OK(mp_array_get_int(a, i, &x));
    MP_ASSERT_OK(mp_array_set_int(a, i, -x));
  }
  int64_t x;
  MP_ASSERT_OK(mp_array_get_int(a, -1, &x)); /* from the end */
  assert_int_equal(x, -9);
  MP_ASSERT_ERR(mp_array_get_int(a, 10, &x), MP_EINDEX);
  MP_ASSERT_ERR(mp_array_get_int(a, -11, &x), MP_EINDEX);
  MP_ASSERT_ERR(mp_array_set_int(a, 10, 1), MP_EINDEX);
  MP_ASSERT_ERR(mp_array_set_int(a, 0, (int64_t)INT_MAX + 1), MP_EOVERFLOW);
  mp_obj *o = mp_array_to_obj(a);
  char *rep = mp_obj_repr(o);
  assert_string_equal(rep, "[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]");
  mp_free(rep);
  mp_obj_free(o);
  int out[3];
  MP_ASSERT_OK(mp_array_read(a, 7, 3, out));
  assert_int_equal(out[2], -9);
  MP_ASSERT_ERR(mp_array_read(a, 8, 3, out), MP_EINDEX);
  MP_ASSERT_ERR(mp_array_write(a, 11, 0, out), MP_EINDEX);
  MP_ASSERT_OK(mp_array_write(a, 0, 3, out));
  MP_ASSERT_OK(mp_array_get_int(a, 0, &x));
  assert_int_equal(x, -7);
  MP_ASSERT_ERR(mp_array_get_bytes(a, NULL, 0), MP_ETYPE);
  MP_ASSERT_ERR(mp_array_set_bytes(a, "x", 1), MP_ETYPE);
  double d;
  MP_ASSERT_ERR(mp_array_get_double(a, 0, &d), MP_ETYPE);
  mp_array_free(a);

  /* zero-size, zeroed */
  MP_ASSERT_OK(mp_array_new(&a, 'h', 7, NULL, NULL));
  MP_ASSERT_OK(mp_array_get_int(a, 6, &x));
  assert_int_equal(x, 0);
  mp_array_free(a);
  MP_ASSERT_ERR(mp_array_new(&a, 'z', 3, NULL, NULL), MP_EINVAL);

  /* 'c': .value and .raw */
  MP_ASSERT_OK(mp_array_new(&a, 'c', 11, "hello world", NULL));
  char buf[32];
  assert_int_equal(mp_array_get_bytes(a, buf, sizeof buf), 11);
  assert_string_equal(buf, "hello world");
  MP_ASSERT_OK(mp_array_set_bytes(a, "HELLO", 5));
  assert_int_equal(mp_array_get_bytes(a, buf, sizeof buf), 5);
  assert_string_equal(buf, "HELLO");
  assert_int_equal(mp_array_get_bytes(a, buf, 3), 5); /* truncated copy */
  assert_string_equal(buf, "HE");
  MP_ASSERT_ERR(mp_array_set_bytes(a, "this is far too long", 20),
                MP_EOVERFLOW);
  o = mp_array_to_obj(a);
  rep = mp_obj_repr(o);
  assert_string_equal(rep, "b'HELLO\\x00world'");
  mp_free(rep);
  mp_obj_free(o);
  mp_array_free(a);

  /* doubles and floats */
  double dinit[3] = {0.25, -1, 1e10};
  MP_ASSERT_OK(mp_array_new(&a, 'd', 3, dinit, &(mp_value_opts){.raw = 1}));
  assert_null(mp_array_get_lock(a));
  MP_ASSERT_OK(mp_array_set_double(a, 1, 0.1));
  o = mp_array_to_obj(a);
  rep = mp_obj_repr(o);
  assert_string_equal(rep, "[0.25, 0.1, 10000000000.0]");
  mp_free(rep);
  mp_obj_free(o);
  MP_ASSERT_ERR(mp_array_get_int(a, 0, &x), MP_ETYPE);
  mp_array_free(a);
}

struct point {
  double x, y;
};

static void
test_struct_array(void **state)
{
  struct point pts[3] = {{1.875, -6.25}, {-5.75, 2.0}, {2.375, 9.5}};
  mp_lock *l;
  MP_ASSERT_OK(mp_lock_new(&l));
  mp_array *a;
  MP_ASSERT_OK(mp_array_new_struct(&a, sizeof(struct point),
                                   _Alignof(struct point), 3, pts,
                                   &(mp_value_opts){.lock = l}));
  assert_int_equal(mp_array_typecode(a), 0);
  assert_int_equal(((uintptr_t)mp_array_ptr(a)) % _Alignof(struct point), 0);
  pid_t pid = fork();
  if (pid == 0) {
    mp_lock_acquire(l, MP_FOREVER);
    struct point *p = mp_array_ptr(a);
    for (int i = 0; i < 3; i++) {
      p[i].x *= p[i].x;
      p[i].y *= p[i].y;
    }
    mp_lock_release(l);
    _exit(0);
  }
  assert_int_equal(wait_child(pid), 0);
  struct point out[3];
  MP_ASSERT_OK(mp_array_read(a, 0, 3, out));
  assert_true(out[0].x == 3.515625 && out[0].y == 39.0625);
  assert_true(out[1].x == 33.0625 && out[1].y == 4.0);
  assert_true(out[2].x == 5.640625 && out[2].y == 90.25);
  int64_t x;
  MP_ASSERT_ERR(mp_array_get_int(a, 0, &x), MP_ETYPE);
  mp_array_free(a);
  mp_lock_free(l);

  /* a struct Value with 64-byte alignment */
  mp_value *v;
  char blob[64] = "aligned";
  MP_ASSERT_OK(mp_value_new_struct(&v, sizeof blob, 64, blob, NULL));
  assert_int_equal(((uintptr_t)mp_value_ptr(v)) % 64, 0);
  char back[64];
  MP_ASSERT_OK(mp_value_read(v, back));
  assert_string_equal(back, "aligned");
  char again[64] = "rewritten";
  MP_ASSERT_OK(mp_value_write(v, again));
  assert_string_equal(mp_value_ptr(v), "rewritten");
  mp_value_free(v);
}

/* Big arrays get a slab of their own; freed, it goes away. */
static void
test_big_array(void **state)
{
  size_t slabs0;
  mp__arena_stats(&slabs0, NULL);
  mp_array *a;
  MP_ASSERT_OK(mp_array_new(&a, 'd', 1000000, NULL,
                            &(mp_value_opts){.raw = 1}));
  double *p = mp_array_ptr(a);
  p[999999] = 1.5;
  pid_t pid = fork();
  if (pid == 0) {
    p[0] = 2.5;
    _exit(p[999999] == 1.5 ? 0 : 1);
  }
  assert_int_equal(wait_child(pid), 0);
  assert_true(p[0] == 2.5);
  mp_array_free(a);
  size_t slabs1;
  mp__arena_stats(&slabs1, NULL);
  assert_int_equal(slabs1, slabs0);
}

static void
test_100k_values(void **state)
{
  enum { N = 100000 };
  int fds0 = mp_test_count_fds();
  mp_value **vs = calloc(N, sizeof *vs);
  for (int i = 0; i < N; i++)
    MP_ASSERT_OK(mp_value_new(&vs[i], 'q', NULL, NULL)); /* + an RLock */
  assert_true(mp_test_count_fds() - fds0 <= 32);
  size_t slabs;
  mp__arena_stats(&slabs, NULL);
  assert_true(slabs <= 32);
  for (int i = 0; i < N; i++)
    MP_ASSERT_OK(mp_value_set_int(vs[i], i));
  for (int i = 0; i < N; i += 1009) {
    int64_t x;
    MP_ASSERT_OK(mp_value_get_int(vs[i], &x));
    assert_int_equal(x, i);
  }
  for (int i = 0; i < N; i++)
    mp_value_free(vs[i]);
  free(vs);
  assert_int_equal(mp_test_count_fds(), fds0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_value_typecodes),
    cmocka_unit_test(test_value_locks),
    cmocka_unit_test(test_array),
    cmocka_unit_test(test_struct_array),
    cmocka_unit_test(test_big_array),
    cmocka_unit_test(test_100k_values),
};

MP_TEST_MAIN(tests)
