/* SPDX-License-Identifier: MIT */
/* The value model: constructors, accessors, ownership, equality and
 * hashing, copy, repr; records and handles; every error code of the layer.
 * (The codec has its own file, test_pickle.c.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define REPR_IS(v, want)                                                     \
  do {                                                                       \
    char *r_ = mp_obj_repr(v);                                               \
    if (!r_)                                                                 \
      fail_msg("repr failed: %s", mp_errdetail());                           \
    assert_string_equal(r_, want);                                           \
    mp_free(r_);                                                             \
  } while (0)

/* repr of a value the test builds and releases */
#define REPR_TAKE(v, want)                                                   \
  do {                                                                       \
    mp_obj *t_ = (v);                                                        \
    assert_non_null(t_);                                                     \
    REPR_IS(t_, want);                                                       \
    mp_obj_free(t_);                                                         \
  } while (0)

static void
test_scalars(void **state)
{
  int64_t i;
  uint64_t u;
  double d;
  int b;
  assert_int_equal(mp_obj_type(mp_none()), MP_T_NONE);
  assert_ptr_equal(mp_none(), mp_none());
  assert_ptr_equal(mp_bool_new(5), mp_bool_new(1));
  MP_ASSERT_OK(mp_bool_get(mp_bool_new(0), &b));
  assert_int_equal(b, 0);
  MP_ASSERT_ERR(mp_bool_get(mp_none(), &b), MP_ETYPE);
  /* bool is an int, as in Python */
  MP_ASSERT_OK(mp_int_get(mp_bool_new(1), &i));
  assert_int_equal(i, 1);

  /* small ints are immortal and shared; freeing them is harmless */
  mp_obj *a = mp_int_new(7), *a2 = mp_int_new(7);
  assert_ptr_equal(a, a2);
  mp_obj_free(a);
  mp_obj_free(a);
  MP_ASSERT_OK(mp_int_get(a2, &i));
  assert_int_equal(i, 7);

  mp_obj *m = mp_int_new(INT64_MIN);
  MP_ASSERT_OK(mp_int_get(m, &i));
  assert_true(i == INT64_MIN);
  MP_ASSERT_ERR(mp_uint_get(m, &u), MP_EOVERFLOW);
  MP_ASSERT_ERR(mp_int_get(mp_none(), &i), MP_ETYPE);
  MP_ASSERT_ERR(mp_int_get(NULL, &i), MP_EINVAL);
  mp_obj_free(m);

  mp_obj *big = mp_uint_new(UINT64_MAX);
  assert_int_equal(mp_obj_type(big), MP_T_INT);
  MP_ASSERT_ERR(mp_int_get(big, &i), MP_EOVERFLOW); /* never truncated */
  MP_ASSERT_OK(mp_uint_get(big, &u));
  assert_true(u == UINT64_MAX);
  REPR_IS(big, "18446744073709551615");
  uint8_t scratch[16];
  const uint8_t *le;
  size_t n;
  MP_ASSERT_OK(mp_int_bytes(big, scratch, &le, &n));
  assert_int_equal(n, 9);
  assert_int_equal(le[8], 0);
  MP_ASSERT_OK(mp_float_get(big, &d));
  assert_true(d == 18446744073709551615.0);
  mp_obj_free(big);

  /* minimal two's complement, normalised: these fit int64 */
  static const uint8_t m1[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                               0xff, 0xff};
  mp_obj *x = mp_int_from_bytes(m1, sizeof m1);
  MP_ASSERT_OK(mp_int_get(x, &i));
  assert_int_equal(i, -1);
  mp_obj_free(x);
  x = mp_int_from_bytes(NULL, 0);
  MP_ASSERT_OK(mp_int_get(x, &i));
  assert_int_equal(i, 0);
  MP_ASSERT_OK(mp_int_bytes(x, scratch, &le, &n));
  assert_int_equal(n, 0);
  mp_obj_free(x);
  x = mp_int_new(128);
  MP_ASSERT_OK(mp_int_bytes(x, scratch, &le, &n));
  assert_int_equal(n, 2); /* 80 00: the sign byte stays */
  mp_obj_free(x);
  x = mp_int_new(-128);
  MP_ASSERT_OK(mp_int_bytes(x, scratch, &le, &n));
  assert_int_equal(n, 1);
  mp_obj_free(x);

  /* -(2**1000): decimal repr and float conversion overflow */
  uint8_t huge[127];
  memset(huge, 0, sizeof huge);
  huge[125] = 0x01; /* 2**1000 */
  mp_obj *h = mp_int_from_bytes(huge, sizeof huge);
  MP_ASSERT_OK(mp_float_get(h, &d));
  assert_true(d == ldexp(1.0, 1000));
  mp_obj_free(h);
  uint8_t huger[130];
  memset(huger, 0, sizeof huger);
  huger[128] = 0x01; /* 2**1024: past the largest double */
  h = mp_int_from_bytes(huger, sizeof huger);
  MP_ASSERT_ERR(mp_float_get(h, &d), MP_EOVERFLOW);
  mp_obj_free(h);

  mp_obj *f = mp_float_new(2.5);
  MP_ASSERT_OK(mp_float_get(f, &d));
  assert_true(d == 2.5);
  MP_ASSERT_ERR(mp_int_get(f, &i), MP_ETYPE);
  MP_ASSERT_ERR(mp_float_get(mp_none(), &d), MP_ETYPE);
  mp_obj_free(f);

  assert_false(mp_obj_truthy(mp_none()));
  assert_false(mp_obj_truthy(mp_int_new(0)));
  assert_true(mp_obj_truthy(mp_int_new(-1)));
  mp_obj *z = mp_float_new(-0.0), *e = mp_list_new(), *s = mp_str_new("");
  assert_false(mp_obj_truthy(z));
  assert_false(mp_obj_truthy(e));
  assert_false(mp_obj_truthy(s));
  mp_obj_free(z);
  mp_obj_free(e);
  mp_obj_free(s);
  assert_string_equal(mp_type_name(MP_T_NONE), "NoneType");
  assert_string_equal(mp_type_name(MP_T_FROZENSET), "frozenset");
}

static void
test_str_and_bytes(void **state)
{
  const char *p;
  size_t n;
  mp_obj *s = mp_str_new("h\xc3\xa9\xf0\x9f\x90\x8d");
  assert_non_null(s);
  MP_ASSERT_OK(mp_obj_len(s, &n));
  assert_int_equal(n, 3); /* code points */
  MP_ASSERT_OK(mp_str_get(s, &p, &n));
  assert_int_equal(n, 7);
  assert_string_equal(p, "h\xc3\xa9\xf0\x9f\x90\x8d");
  mp_obj_free(s);

  /* a lone surrogate (surrogatepass) is a valid Python str */
  s = mp_str_new("\xed\xa0\x80");
  assert_non_null(s);
  REPR_IS(s, "'\\ud800'");
  mp_obj_free(s);
  /* overlong, not UTF-8, above U+10FFFF, truncated: refused */
  const char *badones[] = {"\xc0\xaf", "\xff", "\xf4\x90\x80\x80", "\xe2\x82",
                           "a\x80"};
  for (size_t i = 0; i < sizeof badones / sizeof badones[0]; i++) {
    mp_seterr(0, NULL);
    assert_null(mp_str_new(badones[i]));
    assert_non_null(strstr(mp_errdetail(), "UTF-8"));
  }
  assert_null(mp_str_new(NULL));
  /* embedded NUL */
  s = mp_str_new_len("a\0b", 3);
  MP_ASSERT_OK(mp_obj_len(s, &n));
  assert_int_equal(n, 3);
  REPR_IS(s, "'a\\x00b'");
  mp_obj_free(s);
  s = mp_str_printf("%d-%s", 42, "x");
  REPR_IS(s, "'42-x'");
  MP_ASSERT_ERR(mp_bytes_get(s, NULL, NULL), MP_ETYPE);
  MP_ASSERT_ERR(mp_obj_len(mp_none(), &n), MP_ETYPE);
  mp_obj_free(s);

  mp_obj *b = mp_bytes_new("ab\0", 3);
  const void *d;
  MP_ASSERT_OK(mp_bytes_get(b, &d, &n));
  assert_int_equal(n, 3);
  assert_memory_equal(d, "ab\0", 3);
  MP_ASSERT_ERR(mp_str_get(b, &p, &n), MP_ETYPE);
  void *w;
  MP_ASSERT_ERR(mp_bytearray_data(b, &w, &n), MP_ETYPE);
  MP_ASSERT_ERR(mp_bytearray_resize(b, 1), MP_ETYPE);
  mp_obj *ba = mp_bytearray_new("xy", 2);
  assert_true(mp_obj_equal(b, b));
  MP_ASSERT_OK(mp_bytearray_data(ba, &w, &n));
  ((char *)w)[0] = 'a';
  ((char *)w)[1] = 'b';
  MP_ASSERT_OK(mp_bytearray_resize(ba, 3)); /* new bytes are zero */
  assert_true(mp_obj_equal(b, ba));         /* bytes == bytearray */
  REPR_IS(ba, "bytearray(b'ab\\x00')");
  MP_ASSERT_OK(mp_bytearray_resize(ba, 0));
  REPR_IS(ba, "bytearray(b'')");
  uint64_t hsh;
  MP_ASSERT_ERR(mp_obj_hash(ba, &hsh), MP_EUNHASHABLE);
  mp_obj_free(b);
  mp_obj_free(ba);
}

static void
test_tuple_list(void **state)
{
  mp_obj *t = MP_TUPLE(mp_int_new(1), mp_str_new("a"), mp_none());
  size_t n;
  MP_ASSERT_OK(mp_obj_len(t, &n));
  assert_int_equal(n, 3);
  assert_ptr_equal(mp_seq_item(t, -1), mp_none());
  assert_null(mp_seq_item(t, 3));
  assert_null(mp_seq_item(t, -4));
  assert_null(mp_seq_item(mp_none(), 0));
  /* a miss leaves its own text, never an earlier call's (a hit writes no
   * thread-local: the detail is not its business) */
  const mp_obj *misses[][1] = {{t}, {t}, {NULL}, {mp_none()}};
  int64_t at[] = {3, -4, 0, 0};
  const char *says[] = {"index out of range", "index out of range", "NULL",
                        "expected tuple or list"};
  for (int k = 0; k < 4; k++) {
    mp_seterr(MP_EINVAL, "an earlier call's text");
    assert_null(mp_seq_item(misses[k][0], at[k]));
    assert_non_null(strstr(mp_errdetail(), says[k]));
  }
  assert_ptr_equal(mp_seq_item(t, 0), mp_seq_item(t, -3));

  /* a NULL item makes the whole expression NULL, and the others are
   * released (ASan would report a leak) */
  assert_null(MP_TUPLE(mp_str_new("x"), NULL, mp_float_new(1)));
  assert_null(MP_LIST(mp_str_new("x"), mp_str_new("\xff")));
  assert_null(MP_DICT(mp_str_new("k"), NULL));
  assert_null(MP_SET(mp_list_new())); /* unhashable */

  mp_obj *l = mp_list_from(3, (mp_obj *const[]){mp_int_new(1), t, t});
  mp_obj_free(t); /* the list holds two references */
  assert_ptr_equal(mp_seq_item(l, 1), mp_seq_item(l, 2));
  MP_ASSERT_ERR(mp_list_append(l, l), MP_ECYCLE);
  MP_ASSERT_ERR(mp_list_append_take(l, l), MP_ECYCLE);
  MP_ASSERT_ERR(mp_list_set(l, 0, l), MP_ECYCLE);
  MP_ASSERT_ERR(mp_list_append(t, mp_none()), MP_ETYPE);
  MP_ASSERT_ERR(mp_list_append_take(t, mp_float_new(1)), MP_ETYPE);
  MP_ASSERT_OK(mp_list_append_take(l, mp_float_new(0.5)));
  MP_ASSERT_OK(mp_list_set(l, -1, mp_int_new(9)));
  MP_ASSERT_ERR(mp_list_set(l, 4, mp_int_new(9)), MP_EINDEX);
  MP_ASSERT_ERR(mp_list_set(l, -5, mp_int_new(9)), MP_EINDEX);
  REPR_IS(l, "[1, (1, 'a', None), (1, 'a', None), 9]");
  mp_obj *out;
  MP_ASSERT_OK(mp_list_pop(l, 1, &out));
  REPR_IS(out, "(1, 'a', None)");
  mp_obj_free(out);
  MP_ASSERT_OK(mp_list_pop(l, -1, NULL));
  REPR_IS(l, "[1, (1, 'a', None)]");
  MP_ASSERT_ERR(mp_list_pop(l, 2, NULL), MP_EINDEX);
  mp_obj *const *items;
  MP_ASSERT_OK(mp_seq_items(l, &items, &n));
  assert_int_equal(n, 2);
  MP_ASSERT_ERR(mp_seq_items(mp_none(), &items, &n), MP_ETYPE);
  mp_obj *e = mp_list_new();
  MP_ASSERT_ERR(mp_list_pop(e, 0, NULL), MP_EINDEX);
  mp_obj_free(e);
  mp_obj_free(l);

  REPR_TAKE(mp_tuple_take(0), "()");
  REPR_TAKE(MP_TUPLE(mp_int_new(1)), "(1,)");
  REPR_TAKE(mp_list_new(), "[]");
  REPR_TAKE(MP_LIST(mp_int_new(9), mp_int_new(8), mp_int_new(7)), "[9, 8, 7]");
}

static void
test_dict(void **state)
{
  mp_obj *d = mp_dict_new();
  MP_ASSERT_OK(mp_dict_set_take(d, mp_float_new(0.25), mp_none()));
  MP_ASSERT_OK(mp_dict_set_take(d, mp_int_new(1), mp_str_new("1")));
  MP_ASSERT_OK(mp_dict_set_take(d, mp_str_new("2"), mp_int_new(2)));
  REPR_IS(d, "{0.25: None, 1: '1', '2': 2}");
  /* 1 == 1.0 == True: the same key; the first key object stays */
  MP_ASSERT_OK(mp_dict_set_take(d, mp_float_new(1.0), mp_str_new("f")));
  MP_ASSERT_OK(mp_dict_set_take(d, mp_bool_new(1), mp_str_new("b")));
  REPR_IS(d, "{0.25: None, 1: 'b', '2': 2}");
  REPR_IS(mp_dict_get_str(d, "2"), "2");
  assert_null(mp_dict_get_str(d, "3"));
  mp_obj *k = mp_float_new(1.0);
  REPR_IS(mp_dict_get(d, k), "'b'");
  mp_obj_free(k);
  /* tuples are keys; lists are not */
  MP_ASSERT_OK(mp_dict_set_take(d, MP_TUPLE(mp_int_new(1), mp_int_new(2)),
                                mp_list_new()));
  MP_ASSERT_ERR(mp_dict_set_take(d, mp_list_new(), mp_none()), MP_EUNHASHABLE);
  MP_ASSERT_ERR(mp_dict_set_take(d, MP_TUPLE(mp_list_new()), mp_none()),
                MP_EUNHASHABLE);
  MP_ASSERT_ERR(mp_dict_set(d, mp_none(), d), MP_ECYCLE);
  MP_ASSERT_ERR(mp_dict_set_take(d, mp_none(), d), MP_ECYCLE);
  MP_ASSERT_ERR(mp_dict_set(mp_none(), mp_none(), mp_none()), MP_ETYPE);
  MP_ASSERT_ERR(mp_dict_set_take(mp_none(), mp_int_new(1000000), mp_none()),
                MP_ETYPE);
  mp_obj *key = mp_float_new(0.25);
  MP_ASSERT_OK(mp_dict_del(d, key));
  MP_ASSERT_ERR(mp_dict_del(d, key), MP_ENOTFOUND);
  mp_obj *lk = mp_list_new();
  MP_ASSERT_ERR(mp_dict_del(d, lk), MP_EUNHASHABLE);
  assert_null(mp_dict_get(d, lk));
  MP_ASSERT_ERR(mp_dict_del(lk, key), MP_ETYPE);
  mp_obj_free(lk);
  mp_obj_free(key);
  REPR_IS(d, "{1: 'b', '2': 2, (1, 2): []}");
  mp_obj_free(d);

  /* many keys, deletions, re-insertion: insertion order is kept */
  d = mp_dict_new();
  for (int i = 0; i < 20000; i++)
    MP_ASSERT_OK(mp_dict_set_take(d, mp_int_new(i), mp_int_new(i * 2)));
  for (int i = 0; i < 20000; i += 2) {
    mp_obj *ki = mp_int_new(i);
    MP_ASSERT_OK(mp_dict_del(d, ki));
    mp_obj_free(ki);
  }
  MP_ASSERT_OK(mp_dict_set_take(d, mp_int_new(0), mp_none()));
  size_t n, pos = 0;
  MP_ASSERT_OK(mp_obj_len(d, &n));
  assert_int_equal(n, 10001);
  mp_obj *kk, *vv;
  int64_t prev = -1, iv;
  size_t seen = 0;
  while (mp_dict_next(d, &pos, &kk, &vv)) {
    MP_ASSERT_OK(mp_int_get(kk, &iv));
    if (seen < 10000) {
      assert_true(iv == prev + 2 || (prev == -1 && iv == 1));
      prev = iv;
    } else {
      assert_int_equal(iv, 0); /* re-inserted key goes last */
    }
    seen++;
  }
  assert_int_equal(seen, 10001);
  mp_obj *q = mp_int_new(19999);
  REPR_IS(mp_dict_get(d, q), "39998");
  mp_obj_free(q);
  mp_obj_free(d);

  /* 2**70 == 2.0**70: one key */
  uint8_t p70[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0x40};
  d = MP_DICT(mp_int_from_bytes(p70, 9), mp_str_new("int"),
              mp_float_new(1180591620717411303424.0), mp_str_new("float"));
  REPR_IS(d, "{1180591620717411303424: 'float'}");
  mp_obj_free(d);
  REPR_TAKE(mp_dict_new(), "{}");
}

static void
test_set(void **state)
{
  mp_obj *s = MP_SET(mp_int_new(1), mp_float_new(1.0), mp_str_new("a"));
  size_t n;
  MP_ASSERT_OK(mp_obj_len(s, &n));
  assert_int_equal(n, 2); /* 1 and 1.0 collapse */
  REPR_IS(s, "{1, 'a'}");
  mp_obj *a = mp_str_new("a");
  assert_int_equal(mp_set_contains(s, a), 1);
  MP_ASSERT_OK(mp_set_discard(s, a));
  assert_int_equal(mp_set_contains(s, a), 0);
  MP_ASSERT_ERR(mp_set_discard(s, a), MP_ENOTFOUND);
  mp_obj *l = mp_list_new();
  MP_ASSERT_ERR(mp_set_add(s, l), MP_EUNHASHABLE);
  MP_ASSERT_ERR(mp_set_contains(s, l), MP_EUNHASHABLE);
  MP_ASSERT_ERR(mp_set_add(l, a), MP_ETYPE);
  MP_ASSERT_ERR(mp_set_add(s, s), MP_ECYCLE);
  mp_obj_free(l);
  MP_ASSERT_OK(mp_set_add(s, a));
  mp_obj_free(a);
  uint64_t h;
  MP_ASSERT_ERR(mp_obj_hash(s, &h), MP_EUNHASHABLE);

  /* a frozenset equals a set with the same members, and hashes by content
   * whatever the insertion order */
  mp_obj *f1 = MP_FROZENSET(mp_int_new(1), mp_str_new("a"));
  mp_obj *f2 = MP_FROZENSET(mp_str_new("a"), mp_bool_new(1));
  assert_true(mp_obj_equal(s, f1));
  assert_true(mp_obj_equal(f1, f2));
  uint64_t h1, h2;
  MP_ASSERT_OK(mp_obj_hash(f1, &h1));
  MP_ASSERT_OK(mp_obj_hash(f2, &h2));
  assert_true(h1 == h2);
  REPR_IS(f1, "frozenset({1, 'a'})");
  /* once shared, a frozenset is immutable */
  mp_obj *ref = mp_obj_ref(f1);
  MP_ASSERT_ERR(mp_set_add_take(f1, mp_int_new(5)), MP_ETYPE);
  mp_obj_free(ref);
  MP_ASSERT_OK(mp_set_add_take(f1, mp_int_new(5)));
  size_t pos = 0;
  mp_obj *x;
  n = 0;
  while (mp_set_next(f1, &pos, &x))
    n++;
  assert_int_equal(n, 3);
  mp_obj_free(f1);
  mp_obj_free(f2);
  mp_obj_free(s);
  REPR_TAKE(mp_set_new(), "set()");
  REPR_TAKE(mp_frozenset_new(), "frozenset()");
  REPR_TAKE(MP_FROZENSET(mp_int_new(1)), "frozenset({1})");
}

static void
test_equal_hash(void **state)
{
  uint8_t p70[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0x40};
  mp_obj *vals[] = {mp_int_new(1), mp_float_new(1.0), mp_bool_new(1),
                    mp_int_from_bytes(p70, 9),
                    mp_float_new(1180591620717411303424.0),
                    mp_float_new(-0.0), mp_int_new(0), mp_bool_new(0),
                    MP_TUPLE(mp_int_new(1), mp_str_new("x")),
                    MP_TUPLE(mp_float_new(1.0), mp_str_new("x"))};
  size_t nv = sizeof vals / sizeof vals[0];
  for (size_t i = 0; i < nv; i++)
    for (size_t j = 0; j < nv; j++) {
      if (!mp_obj_equal(vals[i], vals[j]))
        continue;
      uint64_t hi, hj;
      MP_ASSERT_OK(mp_obj_hash(vals[i], &hi));
      MP_ASSERT_OK(mp_obj_hash(vals[j], &hj));
      assert_true(hi == hj); /* equal values, equal hashes */
    }
  assert_true(mp_obj_equal(vals[0], vals[1]));
  assert_true(mp_obj_equal(vals[3], vals[4]));
  assert_true(mp_obj_equal(vals[5], vals[7]));
  assert_true(mp_obj_equal(vals[8], vals[9]));
  assert_false(mp_obj_equal(vals[0], vals[3]));
  for (size_t i = 0; i < nv; i++)
    mp_obj_free(vals[i]);

  /* nan != nan, but a container holding the same nan equals itself */
  mp_obj *nan = mp_float_new(NAN);
  assert_false(mp_obj_equal(nan, nan));
  mp_obj *l = MP_LIST(mp_obj_ref(nan));
  assert_true(mp_obj_equal(l, l));
  mp_obj *l2 = MP_LIST(mp_float_new(NAN));
  assert_false(mp_obj_equal(l, l2));
  mp_obj_free(l);
  mp_obj_free(l2);
  mp_obj_free(nan);

  /* different types are unequal; str vs bytes */
  mp_obj *s = mp_str_new("a"), *b = mp_bytes_new("a", 1);
  assert_false(mp_obj_equal(s, b));
  assert_false(mp_obj_equal(NULL, s));
  uint64_t h;
  MP_ASSERT_ERR(mp_obj_hash(NULL, &h), MP_EINVAL);
  mp_obj_free(s);
  mp_obj_free(b);
  /* dicts compare by content, whatever the order */
  mp_obj *d1 = MP_DICT(mp_int_new(1), mp_int_new(2), mp_int_new(3), mp_int_new(4));
  mp_obj *d2 = MP_DICT(mp_int_new(3), mp_int_new(4), mp_int_new(1), mp_float_new(2));
  assert_true(mp_obj_equal(d1, d2));
  MP_ASSERT_ERR(mp_obj_hash(d1, &h), MP_EUNHASHABLE);
  mp_obj_free(d1);
  mp_obj_free(d2);
}

static void
test_copy(void **state)
{
  mp_obj *shared = MP_LIST(mp_int_new(1));
  mp_obj *v = MP_DICT(mp_str_new("a"),
                      MP_LIST(mp_obj_ref(shared), mp_obj_ref(shared),
                              mp_bytearray_new("x", 1)),
                      mp_str_new("s"), MP_SET(mp_int_new(2)));
  mp_obj *c = mp_obj_copy(v);
  assert_non_null(c);
  assert_true(mp_obj_equal(v, c));
  mp_obj *cl = mp_dict_get_str(c, "a");
  assert_ptr_not_equal(cl, mp_dict_get_str(v, "a"));
  /* shared stays shared, but is a new list */
  assert_ptr_equal(mp_seq_item(cl, 0), mp_seq_item(cl, 1));
  assert_ptr_not_equal(mp_seq_item(cl, 0), shared);
  MP_ASSERT_OK(mp_list_append_take(mp_seq_item(cl, 0), mp_int_new(2)));
  REPR_IS(v, "{'a': [[1], [1], bytearray(b'x')], 's': {2}}");
  REPR_IS(c, "{'a': [[1, 2], [1, 2], bytearray(b'x')], 's': {2}}");
  mp_obj_free(c);
  mp_obj_free(v);
  mp_obj_free(shared);
  assert_null(mp_obj_copy(NULL));
}

static void
test_repr(void **state)
{
  REPR_TAKE(MP_TUPLE(mp_float_new(1.875), mp_float_new(-6.25)),
            "(1.875, -6.25)");
  REPR_TAKE(mp_bytes_new("thank you", 9), "b'thank you'");
  REPR_TAKE(MP_LIST(mp_float_new(2.25), mp_none(), mp_str_new("junk"),
                    mp_global_new("builtins", "float")),
            "[2.25, None, 'junk', <class 'float'>]");
  /* quoting */
  REPR_TAKE(mp_str_new("it's"), "\"it's\"");
  REPR_TAKE(mp_str_new("say \"hi\""), "'say \"hi\"'");
  REPR_TAKE(mp_str_new("it's \"x\""), "'it\\'s \"x\"'");
  REPR_TAKE(mp_str_new("a\\b\t\n\r\x01\x7f"), "'a\\\\b\\t\\n\\r\\x01\\x7f'");
  REPR_TAKE(mp_str_new("\xc2\xa0\xc2\xad\xc3\xa9\xe2\x80\xa8\xe2\x82\xac"
                       "\xf0\x9f\x90\x8d\xf3\xa0\x80\x81\xf4\x8f\xbf\xbf"),
            "'\\xa0\\xad\xc3\xa9\\u2028\xe2\x82\xac\xf0\x9f\x90\x8d"
            "\\U000e0001\\U0010ffff'");
  REPR_TAKE(mp_bytes_new("it's", 4), "b\"it's\"");
  REPR_TAKE(mp_bytes_new("'\"\\\x00\x80\xff", 6), "b'\\'\"\\\\\\x00\\x80\\xff'");
  REPR_TAKE(mp_bytearray_new("'", 1), "bytearray(b\"\\'\")");
  /* floats: shortest round trip, Python's formatting */
  static const struct {
    double v;
    const char *r;
  } floats[] = {{1e16, "1e+16"},       {1e15, "1000000000000000.0"},
                {1e-5, "1e-05"},       {1e-4, "0.0001"},
                {-0.0, "-0.0"},        {0.1, "0.1"},
                {1.0 / 3, "0.3333333333333333"},
                {5e-324, "5e-324"},    {1.7976931348623157e308, "1.7976931348623157e+308"},
                {123456789.125, "123456789.125"}, {2.5e-7, "2.5e-07"},
                {1e22, "1e+22"},       {-1.5e16, "-1.5e+16"}};
  for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
    REPR_TAKE(mp_float_new(floats[i].v), floats[i].r);
  REPR_TAKE(mp_float_new(INFINITY), "inf");
  REPR_TAKE(mp_float_new(-INFINITY), "-inf");
  REPR_TAKE(mp_float_new(NAN), "nan");
  REPR_TAKE(MP_LIST(mp_bool_new(1), mp_bool_new(0), mp_none()),
            "[True, False, None]");
  REPR_TAKE(mp_int_new(INT64_MIN), "-9223372036854775808");
  /* 10**30 */
  static const uint8_t t30[] = {0x00, 0x00, 0x00, 0x40, 0xea, 0xed, 0x74,
                                0x46, 0xd0, 0x9c, 0x2c, 0x9f, 0x0c};
  REPR_TAKE(mp_int_from_bytes(t30, sizeof t30),
            "1000000000000000000000000000000");
  static const uint8_t mt30[] = {0x00, 0x00, 0x00, 0xc0, 0x15, 0x12, 0x8b,
                                 0xb9, 0x2f, 0x63, 0xd3, 0x60, 0xf3};
  REPR_TAKE(mp_int_from_bytes(mt30, sizeof mt30),
            "-1000000000000000000000000000000");

  /* repr_buf: full length returned, output truncated and terminated */
  mp_obj *v = MP_LIST(mp_int_new(9), mp_int_new(8), mp_int_new(7));
  char buf[5];
  assert_int_equal(mp_obj_repr_buf(v, buf, sizeof buf), 9);
  assert_string_equal(buf, "[9, ");
  assert_int_equal(mp_obj_repr_buf(v, NULL, 0), 9);
  mp_obj_free(v);
  assert_int_equal(mp_obj_repr_buf(NULL, buf, sizeof buf), MP_EINVAL);
  assert_null(mp_obj_repr(NULL));

  /* deeper than the limit: refused, not a stack overflow */
  mp_obj *deep = mp_list_new();
  for (int i = 0; i < 5000; i++)
    deep = MP_LIST(deep);
  mp_seterr(0, NULL);
  assert_null(mp_obj_repr(deep));
  assert_non_null(strstr(mp_errdetail(), "deeper"));
  mp_obj_free(deep); /* and releasing it does not recurse */

  /* an indirect cycle made through the API: refused with a clear reason */
  mp_obj *a = mp_list_new(), *b = MP_LIST(mp_obj_ref(a));
  MP_ASSERT_OK(mp_list_append(a, b));
  assert_null(mp_obj_repr(a));
  assert_non_null(strstr(mp_errdetail(), "itself"));
  void *p;
  size_t n;
  MP_ASSERT_ERR(mp_pickle_dumps(a, NULL, &p, &n), MP_ECYCLE);
  MP_ASSERT_OK(mp_list_pop(a, 0, NULL)); /* break it to free */
  mp_obj_free(a);
  mp_obj_free(b);
}

static void
test_records(void **state)
{
  mp_obj *g = mp_global_new("__builtin__", "set");
  const char *m, *n;
  MP_ASSERT_OK(mp_global_get(g, &m, &n));
  assert_string_equal(m, "builtins");
  assert_string_equal(n, "set");
  REPR_IS(g, "<class 'set'>");
  mp_record_kind k;
  MP_ASSERT_OK(mp_record_kind_of(g, &k));
  assert_int_equal(k, MP_RECORD_GLOBAL);
  MP_ASSERT_ERR(mp_record_get(g, NULL, NULL, NULL, NULL, NULL), MP_ETYPE);
  MP_ASSERT_ERR(mp_record_set_state_take(g, mp_none()), MP_ETYPE);
  MP_ASSERT_ERR(mp_record_kind_of(mp_none(), &k), MP_ETYPE);
  MP_ASSERT_ERR(mp_global_get(mp_none(), &m, &n), MP_ETYPE);
  mp_obj_free(g);
  REPR_TAKE(mp_global_new("collections", "OrderedDict"),
            "<class 'collections.OrderedDict'>");
  assert_null(mp_global_new(NULL, "x"));
  assert_null(mp_global_new("m", "\xff"));

  /* args must be a tuple; the parts are released on failure */
  mp_seterr(0, NULL);
  assert_null(mp_record_take(MP_RECORD_REDUCE, mp_global_new("a", "b"),
                             mp_list_new()));
  assert_null(mp_record_take(MP_RECORD_GLOBAL, mp_global_new("a", "b"),
                             mp_tuple_take(0)));

  mp_obj *e = mp_record_take(MP_RECORD_REDUCE,
                             mp_global_new("builtins", "KeyError"),
                             MP_TUPLE(mp_str_new("missing")));
  REPR_IS(e, "KeyError('missing')");
  mp_obj *c, *a, *s, *li, *di;
  MP_ASSERT_OK(mp_record_get(e, &c, &a, &s, &li, &di));
  assert_null(s);
  assert_null(li);
  assert_null(di);
  MP_ASSERT_ERR(mp_global_get(e, &m, &n), MP_ETYPE);
  MP_ASSERT_ERR(mp_record_set_state_take(e, e), MP_ECYCLE);
  MP_ASSERT_OK(mp_record_set_state_take(e, mp_dict_new()));
  REPR_IS(e, "KeyError('missing')"); /* {} state: still reads right */
  MP_ASSERT_OK(mp_record_set_state_take(
      e, MP_DICT(mp_str_new("__notes__"), MP_LIST(mp_str_new("n")))));
  MP_ASSERT_OK(mp_record_append_take(e, mp_int_new(1)));
  MP_ASSERT_OK(mp_record_setitem_take(e, mp_str_new("k"), mp_int_new(2)));
  REPR_IS(e, "<KeyError object: args=('missing',), state={'__notes__': "
             "['n']}, listitems=[1], dictitems=[('k', 2)]>");
  /* it re-encodes with the same meaning at every protocol */
  for (int proto = 2; proto <= 5; proto++) {
    void *p;
    size_t len;
    MP_ASSERT_OK(mp_pickle_dumps(e, &(mp_pickle_opts){.protocol = proto}, &p,
                                 &len));
    mp_obj *back;
    MP_ASSERT_OK(mp_pickle_loads(p, len, NULL, &back));
    /* a new object with the same parts: equal by content, not by == */
    assert_true(mp_obj_equal_content(e, back));
    assert_false(mp_obj_equal(e, back));
    mp_obj_free(back);
    mp_free(p);
  }
  mp_obj_free(e);
  mp_obj *nw = mp_record_take(MP_RECORD_NEWOBJ,
                              mp_global_new("multiprocessing.managers", "Token"),
                              mp_tuple_take(0));
  MP_ASSERT_OK(mp_record_set_state_take(
      nw, MP_TUPLE(mp_str_new("dict"), mp_str_new("/tmp/x"), mp_str_new("7f"))));
  REPR_IS(nw, "<multiprocessing.managers.Token object: args=(), "
              "state=('dict', '/tmp/x', '7f')>");
  uint64_t h;
  MP_ASSERT_OK(mp_obj_hash(nw, &h));
  mp_obj_free(nw);
}

/* ---- handles ---------------------------------------------------------------
 * A toy handle type: a pipe's write end, in a refcounted box. */

typedef struct box {
  int fd;
  int refs;
} box;

static int released;

static void
box_release(void *p)
{
  box *b = p;
  if (--b->refs == 0) {
    close(b->fd);
    free(b);
  }
  released++;
}

static int
box_reduce(void *p, mp_obj **state, int (*add_fd)(void *, int), void *ctx)
{
  box *b = p;
  *state = MP_TUPLE(mp_str_new("pipe-writer"), mp_int_new(b->refs));
  return add_fd(ctx, b->fd);
}

static int rebuild_fail;

static int
box_rebuild(const mp_obj *state, int *fds, size_t nfds, void **out)
{
  if (rebuild_fail || nfds != 1) {
    for (size_t i = 0; i < nfds; i++)
      close(fds[i]);
    return mp_seterr(MP_EINVAL, "box wants one fd");
  }
  box *b = malloc(sizeof *b);
  b->fd = fds[0];
  b->refs = 1;
  *out = b;
  return 0;
}

static const mp_handle_type box_type = {"test.Box", box_release, box_reduce,
                                        box_rebuild};
static const mp_handle_type box_clone = {"test.Box", box_release, box_reduce,
                                         box_rebuild};
static const mp_handle_type ghost_type = {"test.Ghost", box_release,
                                          box_reduce, box_rebuild};

static mp_obj *
new_box(int fd)
{
  box *b = malloc(sizeof *b);
  b->fd = fd;
  b->refs = 1;
  return mp_handle_new(&box_type, b);
}

/* dup each fd (loads_fds takes ownership of the fds it is given; the
 * array stays the caller's: a static one here, used right away) */
static int *
dup_fds(const int *fds, size_t n)
{
  static int d[8];
  assert_true(n <= 8);
  for (size_t i = 0; i < n; i++)
    d[i] = dup(fds[i]);
  return d;
}

static void
test_handles(void **state)
{
  int fds0 = mp_test_count_fds();
  MP_ASSERT_OK(mp_handle_register(&box_type));
  MP_ASSERT_OK(mp_handle_register(&box_type)); /* idempotent */
  MP_ASSERT_ERR(mp_handle_register(&box_clone), MP_EEXIST);
  MP_ASSERT_ERR(mp_handle_register(NULL), MP_EINVAL);
  assert_ptr_equal(mp_handle_find("test.Box"), &box_type);
  assert_null(mp_handle_find("test.Nope"));

  int p[2];
  assert_int_equal(pipe(p), 0);
  mp_obj *h = new_box(p[1]);
  assert_int_equal(mp_obj_type(h), MP_T_HANDLE);
  assert_ptr_equal(mp_handle_type_of(h), &box_type);
  assert_non_null(mp_handle_get(h, &box_type));
  assert_null(mp_handle_get(h, &ghost_type));
  assert_null(mp_handle_get(mp_none(), NULL));
  mp_obj *v = MP_LIST(mp_str_new("x"), mp_obj_ref(h), mp_obj_ref(h));

  /* plain dumps: a handle needs a channel that carries fds */
  void *pk;
  size_t len;
  MP_ASSERT_ERR(mp_pickle_dumps(v, NULL, &pk, &len), MP_ENOTSUP);

  int *fds;
  size_t nfds;
  MP_ASSERT_OK(mp_pickle_dumps_fds(v, NULL, &pk, &len, &fds, &nfds));
  assert_int_equal(nfds, 1); /* the same fd once */
  assert_int_equal(fds[0], p[1]);

  /* plain loads leaves the handle inert */
  mp_obj *inert;
  MP_ASSERT_OK(mp_pickle_loads(pk, len, NULL, &inert));
  assert_int_equal(mp_obj_type(mp_seq_item(inert, 1)), MP_T_RECORD);
  mp_obj_free(inert);

  /* loads_fds rebuilds two working boxes (the second on its own copy) */
  mp_obj *back;
  MP_ASSERT_OK(mp_pickle_loads_fds(pk, len, NULL, dup_fds(fds, nfds), nfds,
                                   &back));
  box *b1 = mp_handle_get(mp_seq_item(back, 1), &box_type);
  box *b2 = mp_handle_get(mp_seq_item(back, 2), &box_type);
  assert_non_null(b1);
  assert_non_null(b2);
  assert_int_not_equal(b1->fd, b2->fd);
  assert_int_equal(write(b1->fd, "ok", 2), 2);
  char buf[2];
  assert_int_equal(read(p[0], buf, 2), 2);
  assert_memory_equal(buf, "ok", 2);
  released = 0;
  mp_obj_free(back);
  assert_int_equal(released, 2);

  /* failures close every fd exactly once (the fd count checks it) */
  int base = mp_test_count_fds();
  int *two = dup_fds((int[]){p[1], p[1]}, 2);
  /* extra fds nobody uses are closed, also on success */
  MP_ASSERT_OK(mp_pickle_loads_fds(pk, len, NULL, two, 2, &back));
  mp_obj_free(back);
  assert_int_equal(mp_test_count_fds(), base);

  rebuild_fail = 1;
  MP_ASSERT_ERR(mp_pickle_loads_fds(pk, len, NULL, dup_fds(fds, 1), 1, &back),
                MP_EINVAL);
  rebuild_fail = 0;
  assert_int_equal(mp_test_count_fds(), base);
  /* no fd for the index */
  MP_ASSERT_ERR(mp_pickle_loads_fds(pk, len, NULL, NULL, 0, &back),
                MP_EMALFORMED);
  assert_non_null(strstr(mp_errdetail(), "index"));
  mp_free(pk);
  mp_free(fds);

  /* a type the receiver does not know */
  box *gb = malloc(sizeof *gb);
  gb->fd = dup(p[1]);
  gb->refs = 1;
  mp_obj *g = mp_handle_new(&ghost_type, gb);
  MP_ASSERT_OK(mp_pickle_dumps_fds(g, NULL, &pk, &len, &fds, &nfds));
  MP_ASSERT_ERR(mp_pickle_loads_fds(pk, len, NULL, dup_fds(fds, nfds), nfds,
                                    &back),
                MP_ENOTFOUND);
  assert_int_equal(mp_test_count_fds(), base + 1); /* gb's own fd */
  mp_free(pk);
  mp_free(fds);
  mp_obj_free(g);

  mp_obj_free(v);
  mp_obj_free(h);
  close(p[0]);
  assert_int_equal(mp_test_count_fds(), fds0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_scalars),    cmocka_unit_test(test_str_and_bytes),
    cmocka_unit_test(test_tuple_list), cmocka_unit_test(test_dict),
    cmocka_unit_test(test_set),        cmocka_unit_test(test_equal_hash),
    cmocka_unit_test(test_copy),       cmocka_unit_test(test_repr),
    cmocka_unit_test(test_records),    cmocka_unit_test(test_handles),
};

MP_TEST_MAIN(tests)
