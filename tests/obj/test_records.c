/* SPDX-License-Identifier: MIT */
/* Records as values: objects (REDUCE / NEWOBJ / NEWOBJ_EX records) are
 * equal only to themselves and hash by identity, so dicts and sets keyed by
 * class instances keep every entry; class references compare by module and
 * name; the memo keeps one Python object one record, in both directions;
 * NEWOBJ_EX decodes and re-encodes; a _take given a NULL item reports that
 * itself.  CPython pickles below: record_pickles.h, made by CPython 3.11
 * (gen_record_pickles.py; test_pickle_records.py runs them live under every
 * CPython 3.11+ found). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "record_pickles.h"

static mp_obj *
loads_ok(const void *p, size_t n)
{
  mp_obj *v = NULL;
  MP_ASSERT_OK(mp_pickle_loads(p, n, NULL, &v));
  return v;
}

static size_t
len_of(const mp_obj *o)
{
  size_t n = 0;
  MP_ASSERT_OK(mp_obj_len(o, &n));
  return n;
}

static mp_obj *
obj_of(const char *cls)
{
  return mp_record_take(MP_RECORD_NEWOBJ, mp_global_new("__main__", cls),
                        mp_tuple_take(0));
}

static int
is_global(const mp_obj *o, const char *module, const char *name)
{
  const char *m, *n;
  return mp_global_get(o, &m, &n) == 0 && strcmp(m, module) == 0 &&
         strcmp(n, name) == 0;
}

/* an object record of class __main__.cls, its kind in *kind */
static int
is_instance(const mp_obj *o, const char *cls, mp_record_kind kind)
{
  mp_record_kind k;
  mp_obj *c;
  return mp_record_kind_of(o, &k) == 0 && k == kind &&
         mp_record_get(o, &c, NULL, NULL, NULL, NULL) == 0 &&
         is_global(c, "__main__", cls);
}

/* Items of a dict (keys) or set, in order, into out[]. */
static size_t
keys_of(const mp_obj *o, mp_obj **out, size_t cap)
{
  size_t pos = 0, n = 0;
  mp_obj *k;
  while (n < cap && (mp_obj_type(o) == MP_T_DICT ? mp_dict_next(o, &pos, &k, NULL)
                                                  : mp_set_next(o, &pos, &k)))
    out[n++] = k;
  return n;
}

/* What each CPython pickle must decode to. */
static void
check_decoded(const char *name, int proto, const mp_obj *v)
{
  mp_obj *k[4];
  int64_t i;
  if (!strcmp(name, "dict_keys")) {
    /* {C(): 1, C(): 2}: two entries, not one */
    assert_int_equal(mp_obj_type(v), MP_T_DICT);
    assert_int_equal(len_of(v), 2);
    assert_int_equal(keys_of(v, k, 4), 2);
    assert_true(is_instance(k[0], "C", MP_RECORD_NEWOBJ));
    assert_true(is_instance(k[1], "C", MP_RECORD_NEWOBJ));
    assert_false(mp_obj_equal(k[0], k[1]));
    assert_true(mp_obj_equal_content(k[0], k[1]));
    MP_ASSERT_OK(mp_int_get(mp_dict_get(v, k[0]), &i));
    assert_int_equal(i, 1);
    MP_ASSERT_OK(mp_int_get(mp_dict_get(v, k[1]), &i));
    assert_int_equal(i, 2);
  } else if (!strcmp(name, "set") || !strcmp(name, "frozenset")) {
    assert_int_equal(mp_obj_type(v),
                     name[0] == 's' ? MP_T_SET : MP_T_FROZENSET);
    assert_int_equal(len_of(v), 2);
    assert_int_equal(keys_of(v, k, 4), 2);
    assert_ptr_not_equal(k[0], k[1]);
    assert_int_equal(mp_set_contains(v, k[0]), 1);
    assert_int_equal(mp_set_contains(v, k[1]), 1);
  } else if (!strcmp(name, "plain_key")) {
    /* {Plain(): 1}: an instance with a __dict__ is a key like any other */
    assert_int_equal(len_of(v), 1);
    assert_int_equal(keys_of(v, k, 4), 1);
    assert_true(is_instance(k[0], "Plain", MP_RECORD_NEWOBJ));
    mp_obj *st;
    MP_ASSERT_OK(mp_record_get(k[0], NULL, NULL, &st, NULL, NULL));
    assert_int_equal(mp_obj_type(st), MP_T_DICT);
    assert_int_equal(mp_obj_type(mp_dict_get_str(st, "a")), MP_T_LIST);
    MP_ASSERT_OK(mp_int_get(mp_dict_get(v, k[0]), &i));
    assert_int_equal(i, 1);
    uint64_t h;
    MP_ASSERT_OK(mp_obj_hash(k[0], &h));
  } else if (!strcmp(name, "shared")) {
    /* c = C(); [c, c, {c: 'v'}]: one object, three uses */
    mp_obj *c = mp_seq_item(v, 0);
    assert_true(is_instance(c, "C", MP_RECORD_NEWOBJ));
    assert_ptr_equal(mp_seq_item(v, 1), c);
    const char *s;
    MP_ASSERT_OK(mp_str_get(mp_dict_get(mp_seq_item(v, 2), c), &s, NULL));
    assert_string_equal(s, "v");
  } else if (!strcmp(name, "newobj_ex")) {
    if (proto >= 4) {
      /* K.__new__(K, 1, b=2), then BUILD {'x': 1, 'b': 2} */
      assert_true(is_instance(v, "K", MP_RECORD_NEWOBJ_EX));
      mp_obj *args, *kw, *st;
      MP_ASSERT_OK(mp_record_get(v, NULL, &args, &st, NULL, NULL));
      MP_ASSERT_OK(mp_record_kwargs(v, &kw));
      mp_obj *want_args = MP_TUPLE(mp_int_new(1));
      mp_obj *want_kw = MP_DICT(mp_str_new("b"), mp_int_new(2));
      mp_obj *want_st = MP_DICT(mp_str_new("x"), mp_int_new(1), mp_str_new("b"),
                                mp_int_new(2));
      assert_true(mp_obj_equal(args, want_args));
      assert_true(mp_obj_equal(kw, want_kw));
      assert_true(mp_obj_equal(st, want_st));
      mp_obj_free(want_args);
      mp_obj_free(want_kw);
      mp_obj_free(want_st);
    } else {
      /* functools.partial(K.__new__, K, 1, b=2)() at protocols 2 and 3:
       * inert calls */
      mp_record_kind kind;
      MP_ASSERT_OK(mp_record_kind_of(v, &kind));
      assert_int_equal(kind, MP_RECORD_REDUCE);
    }
  } else {
    fail_msg("unknown pickle %s", name);
  }
}

static void
test_cpython_instances_as_keys(void **state)
{
  for (size_t t = 0; t < sizeof record_pickles / sizeof record_pickles[0];
       t++) {
    const struct record_pickle *rp = &record_pickles[t];
    mp_obj *v = loads_ok(rp->data, rp->len);
    check_decoded(rp->name, rp->proto, v);
    /* mproc's own encodings keep every entry, the sharing, the kinds */
    for (int proto = 2; proto <= 5; proto++) {
      void *p;
      size_t n;
      MP_ASSERT_OK(mp_pickle_dumps(v, &(mp_pickle_opts){.protocol = proto},
                                   &p, &n));
      mp_obj *w = loads_ok(p, n);
      check_decoded(rp->name, rp->proto, w);
      assert_true(mp_obj_equal_content(v, w));
      mp_obj_free(w);
      mp_free(p);
    }
    mp_obj_free(v);
  }
}

static void
test_c_records_are_distinct_keys(void **state)
{
  /* two records with equal content are two keys */
  mp_obj *a = obj_of("C"), *b = obj_of("C");
  assert_true(mp_obj_equal(a, a));
  assert_false(mp_obj_equal(a, b));
  assert_true(mp_obj_equal_content(a, b));
  uint64_t ha, hb, ha2;
  MP_ASSERT_OK(mp_obj_hash(a, &ha));
  MP_ASSERT_OK(mp_obj_hash(a, &ha2));
  MP_ASSERT_OK(mp_obj_hash(b, &hb));
  assert_true(ha == ha2);
  mp_obj *d = MP_DICT(mp_obj_ref(a), mp_int_new(1), mp_obj_ref(b),
                      mp_int_new(2));
  assert_non_null(d);
  assert_int_equal(len_of(d), 2);
  mp_obj *s = MP_SET(mp_obj_ref(a), mp_obj_ref(b), mp_obj_ref(a));
  assert_int_equal(len_of(s), 2);
  mp_obj *fs = MP_FROZENSET(mp_obj_ref(a), mp_obj_ref(b));
  assert_int_equal(len_of(fs), 2);
  /* tuples holding them differ too; the same record is the same key */
  mp_obj *ta = MP_TUPLE(mp_obj_ref(a)), *tb = MP_TUPLE(mp_obj_ref(b));
  assert_false(mp_obj_equal(ta, tb));
  MP_ASSERT_OK(mp_dict_set_take(d, mp_obj_ref(ta), mp_int_new(3)));
  MP_ASSERT_OK(mp_dict_set_take(d, mp_obj_ref(tb), mp_int_new(4)));
  MP_ASSERT_OK(mp_dict_set_take(d, MP_TUPLE(mp_obj_ref(a)), mp_int_new(5)));
  assert_int_equal(len_of(d), 4);
  int64_t i;
  MP_ASSERT_OK(mp_int_get(mp_dict_get(d, ta), &i));
  assert_int_equal(i, 5);

  /* a record's state does not make it unhashable, and mutating it does not
   * move it in a table */
  MP_ASSERT_OK(mp_record_set_state_take(
      a, MP_DICT(mp_str_new("l"), MP_LIST(mp_int_new(1)))));
  MP_ASSERT_OK(mp_obj_hash(a, &ha2));
  assert_true(ha == ha2);
  MP_ASSERT_OK(mp_int_get(mp_dict_get(d, a), &i));
  assert_int_equal(i, 1);
  assert_int_equal(mp_set_contains(s, a), 1);
  assert_false(mp_obj_equal_content(a, b)); /* now they differ */
  MP_ASSERT_OK(mp_dict_del(d, b));
  assert_null(mp_dict_get(d, b));
  assert_non_null(mp_dict_get(d, a));

  /* class references are singletons: equal by module and name */
  mp_obj *g1 = mp_global_new("__main__", "C"),
         *g2 = mp_global_new("__main__", "C"),
         *g3 = mp_global_new("__main__", "D");
  assert_true(mp_obj_equal(g1, g2));
  assert_false(mp_obj_equal(g1, g3));
  uint64_t h1, h2;
  MP_ASSERT_OK(mp_obj_hash(g1, &h1));
  MP_ASSERT_OK(mp_obj_hash(g2, &h2));
  assert_true(h1 == h2);
  assert_false(mp_obj_equal(a, g1)); /* an instance is not its class */
  mp_obj *gs = MP_SET(g1, g2, g3);   /* (g2 collapses into g1) */
  assert_int_equal(len_of(gs), 2);

  mp_obj_free(gs);
  mp_obj_free(ta);
  mp_obj_free(tb);
  mp_obj_free(fs);
  mp_obj_free(s);
  mp_obj_free(d);
  mp_obj_free(a);
  mp_obj_free(b);
}

static void
test_copy_and_content_equality(void **state)
{
  /* v = [r, r, {r: 'v'}, {r}, float]: a copy is a new object, used where the
   * original was (the dict and set find it) */
  mp_obj *r = obj_of("C");
  MP_ASSERT_OK(mp_record_set_state_take(
      r, MP_DICT(mp_str_new("x"), MP_LIST(mp_int_new(1)))));
  mp_obj *v = MP_LIST(mp_obj_ref(r), mp_obj_ref(r),
                      MP_DICT(mp_obj_ref(r), mp_str_new("v")),
                      MP_SET(mp_obj_ref(r)), mp_global_new("builtins", "float"));
  mp_obj *c = mp_obj_copy(v);
  assert_non_null(c);
  mp_obj *rc = mp_seq_item(c, 0);
  assert_ptr_not_equal(rc, r);
  assert_ptr_equal(mp_seq_item(c, 1), rc);
  assert_non_null(mp_dict_get(mp_seq_item(c, 2), rc));
  assert_null(mp_dict_get(mp_seq_item(c, 2), r));
  assert_int_equal(mp_set_contains(mp_seq_item(c, 3), rc), 1);
  assert_int_equal(mp_set_contains(mp_seq_item(c, 3), r), 0);
  /* the state was copied too (a list is mutable) */
  mp_obj *st, *stc;
  MP_ASSERT_OK(mp_record_get(r, NULL, NULL, &st, NULL, NULL));
  MP_ASSERT_OK(mp_record_get(rc, NULL, NULL, &stc, NULL, NULL));
  assert_ptr_not_equal(st, stc);
  assert_ptr_equal(mp_seq_item(c, 4), mp_seq_item(v, 4)); /* a class: shared */
  /* as copy.deepcopy in Python: not ==, but equal by content */
  assert_false(mp_obj_equal(v, c));
  assert_true(mp_obj_equal_content(v, c));
  assert_true(mp_obj_equal(v, v));
  /* content equality still sees differences */
  MP_ASSERT_OK(mp_record_append_take(rc, mp_int_new(7)));
  assert_false(mp_obj_equal_content(v, c));
  mp_obj_free(c);

  /* dicts keyed by records in another order: matched by content */
  mp_obj *k1 = obj_of("A"), *k2 = obj_of("B");
  mp_obj *d1 = MP_DICT(mp_obj_ref(k1), mp_int_new(1), mp_obj_ref(k2),
                       mp_int_new(2));
  mp_obj *d2 = MP_DICT(obj_of("B"), mp_int_new(2), obj_of("A"), mp_int_new(1));
  mp_obj *d3 = MP_DICT(obj_of("B"), mp_int_new(1), obj_of("A"), mp_int_new(2));
  assert_false(mp_obj_equal(d1, d2));
  assert_true(mp_obj_equal_content(d1, d2));
  assert_false(mp_obj_equal_content(d1, d3));
  /* plain values: mp_obj_equal_content is mp_obj_equal */
  mp_obj *p1 = MP_DICT(mp_int_new(1), mp_str_new("a"), mp_int_new(2),
                       MP_LIST(mp_float_new(0.5)));
  mp_obj *p2 = MP_DICT(mp_float_new(2.0), MP_LIST(mp_float_new(0.5)),
                       mp_bool_new(1), mp_str_new("a"));
  assert_true(mp_obj_equal(p1, p2));
  assert_true(mp_obj_equal_content(p1, p2));
  mp_obj *nan = mp_float_new(__builtin_nan(""));
  assert_false(mp_obj_equal_content(nan, nan));
  mp_obj *ln = MP_LIST(mp_obj_ref(nan));
  assert_true(mp_obj_equal_content(ln, ln));
  assert_false(mp_obj_equal_content(NULL, ln));
  mp_obj_free(ln);
  mp_obj_free(nan);
  mp_obj_free(p1);
  mp_obj_free(p2);
  mp_obj_free(d1);
  mp_obj_free(d2);
  mp_obj_free(d3);
  mp_obj_free(k1);
  mp_obj_free(k2);
  mp_obj_free(v);
  mp_obj_free(r);
}

static void
test_dumps_keeps_identity(void **state)
{
  /* a record held twice is written once, then fetched from the memo */
  mp_obj *r = obj_of("C");
  mp_obj *v = MP_LIST(mp_obj_ref(r), MP_DICT(mp_obj_ref(r), mp_none()));
  mp_obj_free(r);
  static const char want4[] =
      "\x80\x04](\x8c\x08__main__\x8c\x01" "C\x93)\x81\x94}h\x00Nse.";
  static const char want2[] =
      "\x80\x02](c__main__\nC\n)\x81q\x00}h\x00Nse.";
  for (int proto = 2; proto <= 5; proto++) {
    void *p;
    size_t n;
    MP_ASSERT_OK(mp_pickle_dumps(v, &(mp_pickle_opts){.protocol = proto}, &p,
                                 &n));
    if (proto == 4) {
      assert_int_equal(n, sizeof want4 - 1);
      assert_memory_equal(p, want4, n);
    }
    if (proto == 2) {
      assert_int_equal(n, sizeof want2 - 1);
      assert_memory_equal(p, want2, n);
    }
    mp_obj *w = loads_ok(p, n);
    mp_obj *wr = mp_seq_item(w, 0);
    assert_non_null(mp_dict_get(mp_seq_item(w, 1), wr));
    assert_true(mp_obj_equal_content(v, w));
    mp_obj_free(w);
    mp_free(p);
  }
  mp_obj_free(v);
  /* a record held once is written without a memo */
  v = MP_LIST(obj_of("C"));
  void *p;
  size_t n;
  MP_ASSERT_OK(mp_pickle_dumps(v, NULL, &p, &n));
  assert_null(memchr(p, 0x94, n));
  mp_free(p);
  mp_obj_free(v);

  /* past 256 shared records, protocol 2 uses LONG_BINPUT / LONG_BINGET */
  mp_obj *recs[300];
  v = mp_list_new();
  for (int i = 0; i < 300; i++) {
    recs[i] = obj_of("C");
    MP_ASSERT_OK(mp_list_append(v, recs[i]));
  }
  for (int i = 0; i < 300; i++)
    MP_ASSERT_OK(mp_list_append_take(v, recs[i]));
  for (int proto = 2; proto <= 4; proto += 2) {
    MP_ASSERT_OK(mp_pickle_dumps(v, &(mp_pickle_opts){.protocol = proto}, &p,
                                 &n));
    mp_obj *w = loads_ok(p, n);
    assert_int_equal(len_of(w), 600);
    for (int i = 0; i < 300; i++)
      assert_ptr_equal(mp_seq_item(w, i), mp_seq_item(w, 300 + i));
    assert_ptr_not_equal(mp_seq_item(w, 0), mp_seq_item(w, 1));
    mp_obj_free(w);
    mp_free(p);
  }
  mp_obj_free(v);

  /* a record that contains itself is still a cycle */
  r = obj_of("C");
  MP_ASSERT_OK(mp_record_set_state_take(r, MP_LIST(mp_obj_ref(r))));
  MP_ASSERT_ERR(mp_pickle_dumps(r, NULL, &p, &n), MP_ECYCLE);
  MP_ASSERT_OK(mp_record_set_state_take(r, mp_none())); /* break it */
  mp_obj_free(r);
}

static void
test_newobj_ex(void **state)
{
  /* CPython's pickletester: int.__new__(int, *(), **{}) */
  static const char pt[] = "cbuiltins\nint\n)}\x92.";
  mp_obj *v = loads_ok(pt, sizeof pt - 1);
  mp_record_kind kind;
  MP_ASSERT_OK(mp_record_kind_of(v, &kind));
  assert_int_equal(kind, MP_RECORD_NEWOBJ_EX);
  mp_obj *c, *a, *kw;
  MP_ASSERT_OK(mp_record_get(v, &c, &a, NULL, NULL, NULL));
  MP_ASSERT_OK(mp_record_kwargs(v, &kw));
  assert_true(is_global(c, "builtins", "int"));
  assert_int_equal(len_of(a), 0);
  assert_int_equal(mp_obj_type(kw), MP_T_DICT);
  assert_int_equal(len_of(kw), 0);
  char *rep = mp_obj_repr(v);
  assert_string_equal(rep, "int()");
  mp_free(rep);
  mp_obj_free(v);

  /* built in C; re-encoded as NEWOBJ_EX from protocol 4, as
   * copyreg.__newobj_ex__(cls, args, kwargs) before; both load back as
   * NEWOBJ_EX */
  v = mp_record_newobj_ex_take(mp_global_new("m", "K"),
                               MP_TUPLE(mp_int_new(1)),
                               MP_DICT(mp_str_new("b"), mp_int_new(2)));
  assert_non_null(v);
  rep = mp_obj_repr(v);
  assert_string_equal(rep, "<m.K object: args=(1,), kwargs={'b': 2}>");
  mp_free(rep);
  static const char want4[] =
      "\x80\x04\x8c\x01m\x8c\x01K\x93K\x01\x85}\x8c\x01" "bK\x02s\x92.";
  static const char want2[] = "\x80\x02" "ccopyreg\n__newobj_ex__\n"
                              "cm\nK\nK\x01\x85}X\x01\x00\x00\x00" "bK\x02s\x87R.";
  for (int proto = 2; proto <= 5; proto++) {
    void *p;
    size_t n;
    MP_ASSERT_OK(mp_pickle_dumps(v, &(mp_pickle_opts){.protocol = proto}, &p,
                                 &n));
    if (proto == 4) {
      assert_int_equal(n, sizeof want4 - 1);
      assert_memory_equal(p, want4, n);
    }
    if (proto == 2) {
      assert_int_equal(n, sizeof want2 - 1);
      assert_memory_equal(p, want2, n);
    }
    mp_obj *w = loads_ok(p, n);
    MP_ASSERT_OK(mp_record_kind_of(w, &kind));
    assert_int_equal(kind, MP_RECORD_NEWOBJ_EX);
    assert_true(mp_obj_equal_content(v, w));
    assert_false(mp_obj_equal(v, w));
    mp_obj_free(w);
    mp_free(p);
  }
  /* copy, hash, state */
  mp_obj *cp = mp_obj_copy(v);
  assert_true(mp_obj_equal_content(v, cp));
  MP_ASSERT_OK(mp_record_kwargs(cp, &kw));
  assert_int_equal(len_of(kw), 1);
  mp_obj_free(cp);
  uint64_t h;
  MP_ASSERT_OK(mp_obj_hash(v, &h));
  MP_ASSERT_OK(mp_record_set_state_take(v, MP_DICT(mp_str_new("x"),
                                                   mp_int_new(1))));
  rep = mp_obj_repr(v);
  assert_string_equal(rep,
                      "<m.K object: args=(1,), kwargs={'b': 2}, state={'x': 1}>");
  mp_free(rep);
  mp_obj_free(v);

  /* the other kinds have no kwargs; a class reference has no parts */
  v = obj_of("C");
  kw = v;
  MP_ASSERT_OK(mp_record_kwargs(v, &kw));
  assert_null(kw);
  mp_obj_free(v);
  v = mp_global_new("m", "K");
  MP_ASSERT_ERR(mp_record_kwargs(v, &kw), MP_ETYPE);
  MP_ASSERT_ERR(mp_record_kwargs(mp_none(), &kw), MP_ETYPE);
  MP_ASSERT_ERR(mp_record_kwargs(NULL, &kw), MP_EINVAL);

  /* bad parts: NULL, and the parts are released (ASan) */
  assert_null(mp_record_newobj_ex_take(mp_obj_ref(v), mp_list_new(),
                                       mp_dict_new()));
  assert_non_null(strstr(mp_errdetail(), "tuple"));
  assert_null(mp_record_newobj_ex_take(mp_obj_ref(v), mp_tuple_take(0),
                                       mp_list_new()));
  assert_non_null(strstr(mp_errdetail(), "dict"));
  assert_null(mp_record_newobj_ex_take(mp_obj_ref(v), mp_tuple_take(0), NULL));
  assert_null(mp_record_newobj_ex_take(NULL, mp_tuple_take(0), mp_dict_new()));
  assert_null(mp_record_take(MP_RECORD_NEWOBJ_EX, mp_obj_ref(v),
                             mp_tuple_take(0)));
  mp_obj_free(v);

  /* malformed NEWOBJ_EX pickles */
  static const char *const bad[] = {
      "\x80\x04)}\x92.",                       /* underflow */
      "\x80\x04" "cm\nK\n)(}\x92.",             /* underflow past a MARK */
      "\x80\x04" "cm\nK\n]}\x92.",             /* args not a tuple */
      "\x80\x04" "cm\nK\n)]\x92.",             /* kwargs not a dict */
      "\x80\x04K\x01)}\x92.",                  /* not a class */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mp_obj *w = NULL;
    MP_ASSERT_ERR(mp_pickle_loads(bad[i], strlen(bad[i]), NULL, &w),
                  MP_EMALFORMED);
    assert_null(w);
    assert_non_null(strstr(mp_errdetail(), "offset"));
  }
  /* copyreg.__newobj_ex__ with other arguments stays an inert call */
  static const char odd[] = "\x80\x02" "ccopyreg\n__newobj_ex__\nK\x01\x85R.";
  v = loads_ok(odd, sizeof odd - 1);
  MP_ASSERT_OK(mp_record_kind_of(v, &kind));
  assert_int_equal(kind, MP_RECORD_REDUCE);
  mp_obj_free(v);
}

/* ---- a _take given a NULL item says so, whatever the detail held before */

static void
check_null_item_details(void)
{
  mp_seterr(MP_EINVAL, "stale text of an earlier failure");
  assert_null(MP_LIST(mp_int_new(1), NULL));
  assert_non_null(strstr(mp_errdetail(), "list item 1 of 2 is NULL"));
  mp_seterr(MP_EINVAL, "stale text of an earlier failure");
  assert_null(MP_TUPLE(NULL));
  assert_non_null(strstr(mp_errdetail(), "tuple item 0 of 1 is NULL"));
  mp_seterr(MP_EINVAL, "stale text of an earlier failure");
  assert_null(MP_DICT(mp_str_new("k"), NULL));
  assert_non_null(strstr(mp_errdetail(), "dict value of pair 0 of 1 is NULL"));
  mp_seterr(MP_EINVAL, "stale text of an earlier failure");
  assert_null(MP_DICT(mp_str_new("k"), mp_none(), NULL, mp_none()));
  assert_non_null(strstr(mp_errdetail(), "dict key of pair 1 of 2 is NULL"));
  /* a constructor that fails inside: the outer call names the item */
  assert_null(MP_LIST(mp_str_new("ok"), mp_str_new("\xff")));
  assert_non_null(strstr(mp_errdetail(), "list item 1 of 2 is NULL"));
  assert_null(MP_SET(NULL));
  assert_non_null(strstr(mp_errdetail(), "NULL"));
}

static void *
fresh_thread(void *arg)
{
  (void)arg;
  check_null_item_details();
  return NULL;
}

static void
test_null_item_detail(void **state)
{
  check_null_item_details();
  /* in a thread whose detail starts empty */
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, fresh_thread, NULL), 0);
  pthread_join(t, NULL);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_cpython_instances_as_keys),
    cmocka_unit_test(test_c_records_are_distinct_keys),
    cmocka_unit_test(test_copy_and_content_equality),
    cmocka_unit_test(test_dumps_keeps_identity),
    cmocka_unit_test(test_newobj_ex),
    cmocka_unit_test(test_null_item_detail),
};

MP_TEST_MAIN(tests)
