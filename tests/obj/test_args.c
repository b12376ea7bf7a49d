/* SPDX-License-Identifier: MIT */
/* mp_args_parse (args.h): every format letter, '|' and ':name', every
 * handle kind of the library and a program's own, and every error with
 * the position and the expected type in its detail (nothing written on
 * failure); str() and print(); mp_dict_get_strn. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static int
add(int a, int b)
{
  return a + b;
}

static void
expect(int rc, int code, const char *detail)
{
  if (rc != code)
    fail_msg("expected %s, got %s: %s", mp_err_name(code), mp_err_name(rc),
             mp_errdetail());
  if (detail && strcmp(mp_errdetail(), detail) != 0)
    fail_msg("detail '%s', expected '%s'", mp_errdetail(), detail);
}

static void
test_scalars(void **state)
{
  (void)state;
  mp_obj *a = MP_TUPLE(mp_int_new(-7), mp_bool_new(1), mp_int_new(INT64_MIN),
                       mp_float_new(2.5), mp_int_new(3), mp_list_new(),
                       mp_str_new("x"));
  int i = 0, b = 0, p1 = -1, p2 = -1;
  int64_t q = 0;
  double d1 = 0, d2 = 0;
  MP_ASSERT_OK(mp_args_parse(a, "iiLddpp", &i, &b, &q, &d1, &d2, &p1, &p2));
  assert_int_equal(i, -7);
  assert_int_equal(b, 1);
  assert_true(q == INT64_MIN);
  assert_true(d1 == 2.5 && d2 == 3.0);
  assert_int_equal(p1, 0); /* [] is false */
  assert_int_equal(p2, 1);
  mp_obj_free(a);

  /* int limits */
  a = MP_TUPLE(mp_int_new((int64_t)INT32_MAX + 1));
  expect(mp_args_parse(a, "i", &i), MP_EOVERFLOW,
         "argument 1: int does not fit a C int");
  MP_ASSERT_OK(mp_args_parse(a, "L", &q));
  assert_true(q == (int64_t)INT32_MAX + 1);
  mp_obj_free(a);
  a = MP_TUPLE(mp_uint_new(UINT64_MAX));
  expect(mp_args_parse(a, "L:f", &q), MP_EOVERFLOW,
         "f() argument 1: int does not fit int64_t");
  mp_obj_free(a);
  static const uint8_t huge[200] = {[199] = 0x40};
  a = MP_TUPLE(mp_int_from_bytes(huge, sizeof huge));
  expect(mp_args_parse(a, "d", &d1), MP_EOVERFLOW,
         "argument 1: int too large for a float");
  mp_obj_free(a);
  /* wrong types */
  a = MP_TUPLE(mp_float_new(1.0), mp_str_new("1"), mp_none());
  expect(mp_args_parse(a, "i:mul", &i), MP_EINDEX, NULL);
  expect(mp_args_parse(a, "iOO:mul", &i, NULL, NULL), MP_ETYPE,
         "mul() argument 1 must be int, not float");
  expect(mp_args_parse(a, "LLO", &q, &q, NULL), MP_ETYPE,
         "argument 1 must be int, not float");
  expect(mp_args_parse(a, "ddO", &d1, &d2, NULL), MP_ETYPE,
         "argument 2 must be float, not str");
  mp_obj_free(a);
}

static void
test_strings_bytes_values(void **state)
{
  (void)state;
  mp_obj *a = MP_TUPLE(mp_str_new("h\xc3\xa9"), mp_str_new_len("a\0b", 3),
                       mp_none(), mp_str_new("zz"), mp_bytes_new("\0\1", 2),
                       mp_bytearray_new("xyz", 3), MP_LIST(mp_int_new(1)),
                       MP_FUNC(add));
  const char *s1 = NULL, *s2 = NULL, *z1 = "unset", *z2 = NULL;
  size_t n2 = 0, nz = 99, nb = 0, nba = 0;
  const void *b1 = NULL, *b2 = NULL;
  const mp_obj *o = NULL;
  mp_fn fn = NULL;
  MP_ASSERT_OK(mp_args_parse(a, "ss#zz#yyOF", &s1, &s2, &n2, &z1, &z2, &nz,
                             &b1, &nb, &b2, &nba, &o, &fn));
  assert_string_equal(s1, "h\xc3\xa9");
  assert_int_equal(n2, 3);
  assert_memory_equal(s2, "a\0b", 3);
  assert_null(z1);
  assert_string_equal(z2, "zz");
  assert_int_equal(nz, 2);
  assert_int_equal(nb, 2);
  assert_memory_equal(b1, "\0\1", 2);
  assert_int_equal(nba, 3);
  assert_memory_equal(b2, "xyz", 3);
  assert_ptr_equal(o, mp_seq_item(a, 6));
  assert_ptr_equal(fn, (mp_fn)add);
  assert_int_equal(((int (*)(int, int))fn)(2, 3), 5);
  /* z# with None: NULL and 0 */
  mp_obj *t = MP_TUPLE(mp_none());
  MP_ASSERT_OK(mp_args_parse(t, "z#", &z1, &nz));
  assert_null(z1);
  assert_int_equal(nz, 0);
  mp_obj_free(t);
  /* errors, in order of the letters */
  expect(mp_args_parse(a, "ss", &s1, &s2), MP_EINDEX, NULL);
  expect(mp_args_parse(a, "s|sOOOOOO:g", &s1, &s2, &o, &o, &o, &o, &o, &o),
         MP_EINVAL, "g() argument 2: embedded null character");
  expect(mp_args_parse(a, "OOs|OOOOO", &o, &o, &s1, &o, &o, &o, &o, &o),
         MP_ETYPE, "argument 3 must be str, not NoneType");
  expect(mp_args_parse(a, "OOOOz#|OOO", &o, &o, &o, &o, &z1, &nz, &o, &o, &o),
         MP_ETYPE, "argument 5 must be str or None, not bytes");
  expect(mp_args_parse(a, "OOOOOOz|O", &o, &o, &o, &o, &o, &o, &z1, &o),
         MP_ETYPE, "argument 7 must be str or None, not list");
  expect(mp_args_parse(a, "yOOOOOOO", &b1, &nb, &o, &o, &o, &o, &o, &o, &o),
         MP_ETYPE, "argument 1 must be bytes, not str");
  expect(mp_args_parse(a, "FOOOOOOO", &fn, &o, &o, &o, &o, &o, &o, &o),
         MP_ETYPE, "argument 1 must be function, not str");
  mp_obj_free(a);
}

static void
test_counts_optional_format(void **state)
{
  (void)state;
  mp_obj *a = MP_TUPLE(mp_int_new(1), mp_int_new(2));
  int x = -1, y = -1, z = -1;
  double w = 9.5;
  /* optional items: absent ones keep their defaults */
  MP_ASSERT_OK(mp_args_parse(a, "i|iid", &x, &y, &z, &w));
  assert_int_equal(x, 1);
  assert_int_equal(y, 2);
  assert_int_equal(z, -1);
  assert_true(w == 9.5);
  MP_ASSERT_OK(mp_args_parse(a, " i | i ", &x, &y)); /* whitespace */
  expect(mp_args_parse(a, "iii:three", &x, &y, &z), MP_EINDEX,
         "three() takes exactly 3 arguments (2 given)");
  expect(mp_args_parse(a, "i", &x), MP_EINDEX,
         "takes exactly 1 argument (2 given)");
  expect(mp_args_parse(a, "iii|i", &x, &y, &z, &z), MP_EINDEX,
         "takes at least 3 arguments (2 given)");
  expect(mp_args_parse(a, "|i:one", &x), MP_EINDEX,
         "one() takes at most 1 argument (2 given)");
  /* nothing is written when a later item fails */
  x = y = -1;
  mp_obj *b = MP_TUPLE(mp_int_new(5), mp_int_new(6), mp_str_new("no"));
  expect(mp_args_parse(b, "iii", &x, &y, &z), MP_ETYPE,
         "argument 3 must be int, not str");
  assert_int_equal(x, -1);
  assert_int_equal(y, -1);
  mp_obj_free(b);
  /* an empty tuple, a list */
  mp_obj *e = mp_tuple_take(0);
  MP_ASSERT_OK(mp_args_parse(e, ""));
  MP_ASSERT_OK(mp_args_parse(e, "|i", &x));
  mp_obj_free(e);
  mp_obj *l = MP_LIST(mp_int_new(8));
  MP_ASSERT_OK(mp_args_parse(l, "i", &x));
  assert_int_equal(x, 8);
  mp_obj_free(l);
  /* bad calls and formats */
  expect(mp_args_parse(NULL, "i", &x), MP_EINVAL, NULL);
  expect(mp_args_parse(a, NULL), MP_EINVAL, NULL);
  mp_obj *d = mp_dict_new();
  expect(mp_args_parse(d, ""), MP_EINVAL,
         "mp_args_parse: args must be a tuple or list, not dict");
  mp_obj_free(d);
  expect(mp_args_parse(a, "iq", &x, &x), MP_EINVAL,
         "mp_args_parse: bad format \"iq\" at offset 1: unknown letter");
  expect(mp_args_parse(a, "i|i|", &x, &y), MP_EINVAL, NULL);
  expect(mp_args_parse(a, "i{Lock", &x, &y), MP_EINVAL, NULL);
  expect(mp_args_parse(a, "i{}", &x, &y), MP_EINVAL, NULL);
  expect(mp_args_parse(a, "i#i", &x, &y), MP_EINVAL, NULL);
  expect(mp_args_parse(a, "ii:", &x, &y), MP_EINVAL, NULL);
  mp_obj_free(a);
}

/* ---- handles ---------------------------------------------------------------- */

/* A program's own handle type, and a kind of it. */
struct toy {
  int flavour;
};

static void
toy_release(void *p)
{
  free(p);
}

static const mp_handle_type toy_type = {"test.Toy", toy_release, NULL, NULL};

static int
is_sweet(const void *p)
{
  return ((const struct toy *)p)->flavour == 1;
}

static const mp_arg_kind sweet_kind = {"SweetToy", "test.Toy", is_sweet};

static void
test_handles(void **state)
{
  (void)state;
  mp_conn *c1, *c2;
  MP_ASSERT_OK(mp_pipe(&c1, &c2, 1));
  mp_lock *lock;
  mp_rlock *rlock;
  MP_ASSERT_OK(mp_lock_new(&lock));
  MP_ASSERT_OK(mp_rlock_new(&rlock));
  mp_sem *sem;
  MP_ASSERT_OK(mp_sem_new(&sem, 2, &(mp_sem_opts){.bounded = 1}));
  mp_cond *cond;
  MP_ASSERT_OK(mp_cond_new(&cond, NULL));
  mp_event *ev;
  MP_ASSERT_OK(mp_event_new(&ev));
  mp_barrier *bar;
  MP_ASSERT_OK(mp_barrier_new(&bar, 2, NULL));
  mp_value *val;
  MP_ASSERT_OK(mp_value_new_int(&val, 'i', 5, NULL));
  mp_array *arr;
  MP_ASSERT_OK(mp_array_new(&arr, 'd', 4, NULL, NULL));
  mp_shm *shm;
  MP_ASSERT_OK(mp_shm_new(&shm, NULL, &(mp_shm_opts){.create = 1, .size = 64}));
  mp_obj *a = MP_TUPLE(mp_conn_obj(c1), mp_lock_obj(lock), mp_lock_obj(rlock),
                       mp_lock_obj(rlock), mp_sem_obj(sem), mp_cond_obj(cond),
                       mp_event_obj(ev), mp_barrier_obj(bar),
                       mp_value_obj(val), mp_array_obj(arr), mp_shm_obj(shm));
  assert_non_null(a);
  mp_conn *gc = NULL;
  mp_lock *gl = NULL, *gl2 = NULL;
  mp_rlock *gr = NULL;
  mp_sem *gs = NULL;
  mp_cond *gco = NULL;
  mp_event *ge = NULL;
  mp_barrier *gb = NULL;
  mp_value *gv = NULL;
  mp_array *ga = NULL;
  mp_shm *gsh = NULL;
  MP_ASSERT_OK(mp_args_parse(
      a, "{Connection}{Lock}{Lock}{RLock}{Semaphore}{Condition}{Event}"
         "{Barrier}{Value}{Array}{SharedMemory}",
      &gc, &gl, &gl2, &gr, &gs, &gco, &ge, &gb, &gv, &ga, &gsh));
  assert_ptr_equal(gc, c1);
  assert_ptr_equal(gl, lock);
  assert_ptr_equal(gl2, rlock); /* {Lock} takes an RLock too */
  assert_ptr_equal(gr, rlock);
  assert_ptr_equal(gs, sem);
  assert_ptr_equal(gco, cond);
  assert_ptr_equal(ge, ev);
  assert_ptr_equal(gb, bar);
  assert_ptr_equal(gv, val);
  assert_ptr_equal(ga, arr);
  assert_ptr_equal(gsh, shm);
  /* the same by explicit type name, and by handle type pointer */
  MP_ASSERT_OK(mp_args_parse(a, "{mproc.Connection}|OOOOOOOOOO", &gc, NULL,
                             NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                             NULL));
  void *gp = NULL;
  MP_ASSERT_OK(mp_args_parse(a, "H|OOOOOOOOOO", mp_conn_handle_type(), &gp,
                             NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                             NULL, NULL));
  assert_ptr_equal(gp, c1);

  /* each kind refuses another: the detail names kind and type */
  expect(mp_args_parse(a, "O{RLock}|OOOOOOOOO", NULL, &gr), MP_ETYPE,
         "argument 2 must be RLock, not mproc.Lock");
  expect(mp_args_parse(a, "{Lock}|OOOOOOOOOO:w", &gl), MP_ETYPE,
         "w() argument 1 must be Lock, not mproc.Connection");
  const char *kinds[] = {"Connection", "Semaphore", "Condition", "Event",
                         "Barrier", "Value", "Array", "SharedMemory"};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    char fmt[64];
    snprintf(fmt, sizeof fmt, "O{%s}|OOOOOOOOO", kinds[k]);
    char want[128];
    snprintf(want, sizeof want, "argument 2 must be %s, not mproc.Lock",
             kinds[k]);
    expect(mp_args_parse(a, fmt, NULL, &gp), MP_ETYPE, want);
  }
  mp_obj *notahandle = MP_TUPLE(mp_int_new(1));
  expect(mp_args_parse(notahandle, "{Event}", &ge), MP_ETYPE,
         "argument 1 must be Event, not int");
  expect(mp_args_parse(notahandle, "H", mp_conn_handle_type(), &gp), MP_ETYPE,
         "argument 1 must be mproc.Connection, not int");
  expect(mp_args_parse(notahandle, "H", NULL, &gp), MP_EINVAL, NULL);
  /* a kind nobody registered (yet): Queue comes with its layer */
  expect(mp_args_parse(notahandle, "{Queue}", &gp), MP_EINVAL,
         "argument 1: no argument kind or handle type named 'Queue' is "
         "registered");
  mp_obj_free(notahandle);

  /* a program's own type and kind, registered at run time */
  struct toy *t1 = malloc(sizeof *t1), *t2 = malloc(sizeof *t2);
  t1->flavour = 1;
  t2->flavour = 2;
  mp_obj *toys = MP_TUPLE(mp_handle_new(&toy_type, t1),
                          mp_handle_new(&toy_type, t2));
  struct toy *g1 = NULL, *g2 = NULL;
  expect(mp_args_parse(toys, "{test.Toy}{test.Toy}", &g1, &g2), MP_EINVAL,
         NULL);
  MP_ASSERT_OK(mp_handle_register(&toy_type));
  MP_ASSERT_OK(mp_args_parse(toys, "{test.Toy}{test.Toy}", &g1, &g2));
  assert_ptr_equal(g1, t1);
  assert_ptr_equal(g2, t2);
  MP_ASSERT_OK(mp_arg_kind_register(&sweet_kind));
  MP_ASSERT_OK(mp_arg_kind_register(&sweet_kind)); /* idempotent */
  static const mp_arg_kind other = {"SweetToy", "test.Toy", NULL};
  expect(mp_arg_kind_register(&other), MP_EEXIST, NULL);
  expect(mp_arg_kind_register(NULL), MP_EINVAL, NULL);
  static const mp_arg_kind noname = {"", "test.Toy", NULL};
  expect(mp_arg_kind_register(&noname), MP_EINVAL, NULL);
  g1 = NULL;
  MP_ASSERT_OK(mp_args_parse(toys, "{SweetToy}|O", &g1, NULL));
  assert_ptr_equal(g1, t1);
  expect(mp_args_parse(toys, "O{SweetToy}", NULL, &g2), MP_ETYPE,
         "argument 2 must be SweetToy, not test.Toy");
  mp_obj_free(toys);

  mp_obj_free(a);
  MP_ASSERT_OK(mp_shm_unlink(shm));
  mp_shm_free(shm);
  mp_array_free(arr);
  mp_value_free(val);
  mp_barrier_free(bar);
  mp_event_free(ev);
  mp_cond_free(cond);
  mp_sem_free(sem);
  mp_rlock_free(rlock);
  mp_lock_free(lock);
  mp_conn_free(c1);
  mp_conn_free(c2);
  mp_resource_tracker_stop(); /* started by mp_shm_new */
}

/* ---- str, print, dict_get_strn -------------------------------------------- */

static char *
printed(const mp_obj *o, int *rc)
{
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  *rc = mp_obj_print(o, f);
  fclose(f);
  return buf;
}

static void
test_str_print(void **state)
{
  (void)state;
  mp_obj *s = mp_str_new("caf\xc3\xa9 'x'");
  char *r = mp_obj_str(s);
  assert_string_equal(r, "caf\xc3\xa9 'x'"); /* the text itself */
  mp_free(r);
  r = mp_obj_repr(s);
  assert_string_equal(r, "\"caf\xc3\xa9 'x'\"");
  mp_free(r);
  mp_obj *v = MP_LIST(mp_int_new(1), mp_str_new("a"), mp_none(),
                      mp_float_new(0.1), MP_FUNC(add));
  r = mp_obj_str(v);
  assert_string_equal(r, "[1, 'a', None, 0.1, <function add>]"); /* repr */
  mp_free(r);
  mp_obj *i = mp_int_new(-42);
  r = mp_obj_str(i);
  assert_string_equal(r, "-42");
  mp_free(r);
  assert_null(mp_obj_str(NULL));
  /* print(x): str(x) and a newline; a str with a NUL is written whole */
  int rc;
  char *out = printed(s, &rc);
  MP_ASSERT_OK(rc);
  assert_string_equal(out, "caf\xc3\xa9 'x'\n");
  free(out);
  out = printed(v, &rc);
  MP_ASSERT_OK(rc);
  assert_string_equal(out, "[1, 'a', None, 0.1, <function add>]\n");
  free(out);
  mp_obj *nul = mp_str_new_len("a\0b", 3);
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  MP_ASSERT_OK(mp_obj_print(nul, f));
  fclose(f);
  assert_int_equal(n, 4);
  assert_memory_equal(buf, "a\0b\n", 4);
  free(buf);
  /* a cycle-free but too deep value fails as repr does */
  mp_obj *deep = mp_list_new();
  for (int k = 0; k < MP_PICKLE_DEFAULT_MAX_DEPTH + 5; k++)
    deep = MP_LIST(deep);
  assert_null(mp_obj_str(deep));
  out = printed(deep, &rc);
  assert_int_equal(rc, MP_ELIMIT);
  free(out);
  mp_obj_free(deep);
  /* a write that fails */
  FILE *ro = fopen("/dev/null", "r");
  assert_non_null(ro);
  rc = mp_obj_print(i, ro);
  assert_int_equal(rc, MP_EBADF);
  fclose(ro);
  MP_ASSERT_ERR(mp_obj_print(NULL, stdout), MP_EINVAL);
  mp_obj_free(nul);
  mp_obj_free(i);
  mp_obj_free(v);
  mp_obj_free(s);
}

static void
test_dict_get_strn(void **state)
{
  (void)state;
  mp_obj *d = MP_DICT(mp_str_new("key"), mp_int_new(1),
                      mp_str_new_len("k\0y", 3), mp_int_new(2),
                      mp_str_new(""), mp_int_new(3));
  int64_t v;
  MP_ASSERT_OK(mp_int_get(mp_dict_get_strn(d, "keyboard", 3), &v));
  assert_int_equal(v, 1);
  MP_ASSERT_OK(mp_int_get(mp_dict_get_strn(d, "k\0y", 3), &v));
  assert_int_equal(v, 2);
  MP_ASSERT_OK(mp_int_get(mp_dict_get_strn(d, "", 0), &v));
  assert_int_equal(v, 3);
  MP_ASSERT_OK(mp_int_get(mp_dict_get_strn(d, NULL, 0), &v));
  assert_int_equal(v, 3);
  assert_null(mp_dict_get_strn(d, "ke", 2));
  assert_null(mp_dict_get_strn(d, NULL, 1));
  assert_null(mp_dict_get_strn(NULL, "key", 3));
  mp_obj *l = mp_list_new();
  assert_null(mp_dict_get_strn(l, "key", 3));
  mp_obj_free(l);
  MP_ASSERT_OK(mp_int_get(mp_dict_get_str(d, "key"), &v));
  assert_int_equal(v, 1);
  mp_obj_free(d);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_scalars),
    cmocka_unit_test(test_strings_bytes_values),
    cmocka_unit_test(test_counts_optional_format),
    cmocka_unit_test(test_handles),
    cmocka_unit_test(test_str_print),
    cmocka_unit_test(test_dict_get_strn),
};

MP_TEST_MAIN(tests)
