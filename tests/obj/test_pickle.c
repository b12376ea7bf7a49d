/* SPDX-License-Identifier: MIT */
/* The pickle codec: exact encodings, protocol choice, CPython's pickles
 * (bytes below were written by CPython 3.11), the memo, and hostile input:
 * truncation at every byte, absurd lengths, deep nesting, memo abuse,
 * cycles, protocol 6, unknown opcodes, limits. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void run_threads(mp_obj *v);

static mp_obj *
loads_ok(const void *p, size_t n)
{
  mp_obj *v = NULL;
  MP_ASSERT_OK(mp_pickle_loads(p, n, NULL, &v));
  return v;
}

#define LOADS_ERR(bytes, code)                                               \
  do {                                                                       \
    mp_obj *v_ = NULL;                                                       \
    MP_ASSERT_ERR(mp_pickle_loads(bytes, sizeof(bytes) - 1, NULL, &v_), code); \
    assert_null(v_);                                                         \
  } while (0)

static void
expect_repr(const void *p, size_t n, const char *want)
{
  mp_obj *v = loads_ok(p, n);
  char *r = mp_obj_repr(v);
  assert_string_equal(r, want);
  mp_free(r);
  mp_obj_free(v);
}

static void
expect_dump(mp_obj *v, int proto, const char *want, size_t wlen)
{
  void *p;
  size_t n;
  MP_ASSERT_OK(mp_pickle_dumps(v, &(mp_pickle_opts){.protocol = proto}, &p, &n));
  if (n != wlen || memcmp(p, want, n) != 0) {
    fprintf(stderr, "got:");
    for (size_t i = 0; i < n; i++)
      fprintf(stderr, " %02x", ((unsigned char *)p)[i]);
    fprintf(stderr, "\n");
    fail_msg("encoding differs");
  }
  mp_free(p);
  mp_obj_free(v);
}

#define DUMP_IS(v, proto, lit) expect_dump((v), (proto), lit, sizeof(lit) - 1)

static void
test_encodings(void **state)
{
  /* smallest int opcodes, as CPython */
  DUMP_IS(mp_int_new(5), 0, "\x80\x04K\x05.");
  DUMP_IS(mp_int_new(256), 0, "\x80\x04M\x00\x01.");
  DUMP_IS(mp_int_new(-1), 0, "\x80\x04J\xff\xff\xff\xff.");
  DUMP_IS(mp_int_new(2147483648LL), 0, "\x80\x04\x8a\x05\x00\x00\x00\x80\x00.");
  DUMP_IS(mp_uint_new(UINT64_MAX), 0,
          "\x80\x04\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\x00.");
  DUMP_IS(mp_float_new(1.5), 0, "\x80\x04G?\xf8\x00\x00\x00\x00\x00\x00.");
  DUMP_IS(mp_str_new("ab"), 0, "\x80\x04\x8c\x02" "ab.");
  DUMP_IS(mp_str_new("ab"), 2, "\x80\x02X\x02\x00\x00\x00" "ab.");
  DUMP_IS(mp_bytes_new("ab", 2), 3, "\x80\x03" "C\x02" "ab.");
  /* protocol 2 spells bytes as CPython does */
  DUMP_IS(mp_bytes_new("a\xff", 2), 2,
          "\x80\x02" "c_codecs\nencode\nX\x03\x00\x00\x00" "a\xc3\xbf"
          "X\x06\x00\x00\x00latin1\x86R.");
  DUMP_IS(mp_bytes_new("", 0), 2, "\x80\x02" "c__builtin__\nbytes\n)R.");
  /* a bytearray makes the default protocol 5 */
  DUMP_IS(MP_LIST(mp_bytearray_new("a", 1)), 0,
          "\x80\x05]\x96\x01\x00\x00\x00\x00\x00\x00\x00" "aa.");
  DUMP_IS(mp_bytearray_new("a", 1), 4,
          "\x80\x04\x8c\x08" "builtins\x8c\x09" "bytearray\x93" "C\x01" "a\x85R.");
  DUMP_IS(mp_tuple_take(0), 0, "\x80\x04).");
  DUMP_IS(MP_TUPLE(mp_none(), mp_bool_new(1), mp_bool_new(0), mp_none()), 0,
          "\x80\x04(N\x88\x89Nt.");
  DUMP_IS(MP_SET(mp_int_new(1)), 0, "\x80\x04\x8f(K\x01\x90.");
  DUMP_IS(MP_SET(mp_int_new(1)), 3,
          "\x80\x03" "cbuiltins\nset\n]K\x01" "a\x85R.");
  DUMP_IS(MP_FROZENSET(mp_int_new(1)), 0, "\x80\x04(K\x01\x91.");
  DUMP_IS(MP_DICT(mp_int_new(1), mp_int_new(2)), 0, "\x80\x04}K\x01K\x02s.");
  DUMP_IS(mp_global_new("builtins", "KeyError"), 2,
          "\x80\x02" "c__builtin__\nKeyError\n.");

  /* batches of 1000 */
  mp_obj *l = mp_list_new();
  for (int i = 0; i < 2001; i++)
    MP_ASSERT_OK(mp_list_append_take(l, mp_none()));
  void *p;
  size_t n;
  MP_ASSERT_OK(mp_pickle_dumps(l, NULL, &p, &n));
  /* PROTO ] (N*1000 e (N*1000 e N a . */
  assert_int_equal(n, 2 + 1 + 2 * 1002 + 2 + 1);
  assert_int_equal(((unsigned char *)p)[n - 2], 'a');
  MP_ASSERT_ERR(mp_pickle_dumps(l, &(mp_pickle_opts){.max_size = 100}, &p, &n),
                MP_ELIMIT);
  mp_free(p);
  mp_obj_free(l);

  /* bad arguments */
  mp_obj *x = mp_none();
  MP_ASSERT_ERR(mp_pickle_dumps(x, &(mp_pickle_opts){.protocol = 1}, &p, &n),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_pickle_dumps(x, &(mp_pickle_opts){.protocol = 6}, &p, &n),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_pickle_dumps(NULL, NULL, &p, &n), MP_EINVAL);
  MP_ASSERT_ERR(mp_pickle_loads(NULL, 1, NULL, &x), MP_EINVAL);
  mp_obj *g = mp_global_new("a\nb", "c");
  MP_ASSERT_ERR(mp_pickle_dumps(g, &(mp_pickle_opts){.protocol = 2}, &p, &n),
                MP_EINVAL);
  mp_obj_free(g);

  /* depth: past max_depth is MP_ELIMIT */
  mp_obj *deep = mp_list_new();
  for (int i = 0; i < 50; i++)
    deep = MP_LIST(deep);
  MP_ASSERT_ERR(mp_pickle_dumps(deep, &(mp_pickle_opts){.max_depth = 10}, &p,
                                &n),
                MP_ELIMIT);
  MP_ASSERT_OK(mp_pickle_dumps(deep, NULL, &p, &n));
  /* and loads applies the same limit */
  mp_obj *back;
  MP_ASSERT_ERR(mp_pickle_loads(p, n, &(mp_pickle_opts){.max_depth = 10},
                                &back),
                MP_ELIMIT);
  MP_ASSERT_OK(mp_pickle_loads(p, n, NULL, &back));
  assert_true(mp_obj_equal(deep, back));
  mp_obj_free(back);
  mp_free(p);
  mp_obj_free(deep);
}

static void
test_cpython_pickles(void **state)
{
  /* pickle.dumps([2.25, None, 'junk', float], 4) (with FRAME and memo) */
  static const char l4[] = "\x80\x04\x95\x2b\x00\x00\x00\x00\x00\x00\x00\x5d\x94\x28\x47\x40\x02\x00\x00\x00\x00\x00\x00\x4e\x8c\x04\x6a\x75\x6e\x6b\x94\x8c\x08\x62\x75\x69\x6c\x74\x69\x6e\x73\x94\x8c\x05\x66\x6c\x6f\x61\x74\x94\x93\x94\x65\x2e";
  expect_repr(l4, sizeof l4 - 1, "[2.25, None, 'junk', <class 'float'>]");
  /* pickle.dumps({0.25: None, 1: '1', '2': 2}, 2) */
  static const char d2[] = "\x80\x02\x7d\x71\x00\x28\x47\x3f\xd0\x00\x00\x00\x00\x00\x00\x4e\x4b\x01\x58\x01\x00\x00\x00\x31\x71\x01\x58\x01\x00\x00\x00\x32\x71\x02\x4b\x02\x75\x2e";
  expect_repr(d2, sizeof d2 - 1, "{0.25: None, 1: '1', '2': 2}");
  /* pickle.dumps(b'thank you', 2): _codecs.encode */
  static const char b2[] = "\x80\x02\x63\x5f\x63\x6f\x64\x65\x63\x73\x0a\x65\x6e\x63\x6f\x64\x65\x0a\x71\x00\x58\x09\x00\x00\x00\x74\x68\x61\x6e\x6b\x20\x79\x6f\x75\x71\x01\x58\x06\x00\x00\x00\x6c\x61\x74\x69\x6e\x31\x71\x02\x86\x71\x03\x52\x71\x04\x2e";
  expect_repr(b2, sizeof b2 - 1, "b'thank you'");
  /* pickle.dumps(set([1]), 2), frozenset(), bytearray(b'ab') at 3 */
  static const char s2[] = "\x80\x02\x63\x5f\x5f\x62\x75\x69\x6c\x74\x69\x6e\x5f\x5f\x0a\x73\x65\x74\x0a\x71\x00\x5d\x71\x01\x4b\x01\x61\x85\x71\x02\x52\x71\x03\x2e";
  expect_repr(s2, sizeof s2 - 1, "{1}");
  static const char f2[] = "\x80\x02\x63\x5f\x5f\x62\x75\x69\x6c\x74\x69\x6e\x5f\x5f\x0a\x66\x72\x6f\x7a\x65\x6e\x73\x65\x74\x0a\x71\x00\x5d\x71\x01\x85\x71\x02\x52\x71\x03\x2e";
  expect_repr(f2, sizeof f2 - 1, "frozenset()");
  static const char ba3[] = "\x80\x03\x63\x62\x75\x69\x6c\x74\x69\x6e\x73\x0a\x62\x79\x74\x65\x61\x72\x72\x61\x79\x0a\x71\x00\x43\x02\x61\x62\x71\x01\x85\x71\x02\x52\x71\x03\x2e";
  expect_repr(ba3, sizeof ba3 - 1, "bytearray(b'ab')");
  /* int at protocol 2 is __builtin__.long (fix_imports) */
  static const char long2[] = "\x80\x02" "c__builtin__\nlong\nq\x00.";
  expect_repr(long2, sizeof long2 - 1, "<class 'int'>");
  /* KeyError('missing') at 4 */
  static const char ke[] = "\x80\x04\x95\x27\x00\x00\x00\x00\x00\x00\x00\x8c\x08\x62\x75\x69\x6c\x74\x69\x6e\x73\x94\x8c\x08\x4b\x65\x79\x45\x72\x72\x6f\x72\x94\x93\x94\x8c\x07\x6d\x69\x73\x73\x69\x6e\x67\x94\x85\x94\x52\x94\x2e";
  expect_repr(ke, sizeof ke - 1, "KeyError('missing')");

  /* shared sub-values come back shared: s = [1]; [s, s] */
  static const char sh[] = "\x80\x04\x95\x0c\x00\x00\x00\x00\x00\x00\x00\x5d\x94\x28\x5d\x94\x4b\x01\x61\x68\x01\x65\x2e";
  mp_obj *v = loads_ok(sh, sizeof sh - 1);
  assert_ptr_equal(mp_seq_item(v, 0), mp_seq_item(v, 1));
  mp_obj_free(v);
  /* without a PROTO opcode, and POP / POP_MARK */
  static const char pops[] = "(K\x01K\x02" "1K\x03K\x04" "0N0\x85.";
  expect_repr(pops, sizeof pops - 1, "(3,)");
}

static void
test_truncated_everywhere(void **state)
{
  mp_obj *v = MP_LIST(
      mp_int_new(1), mp_str_new("h\xc3\xa9"), mp_bytes_new("xy", 2),
      mp_bytearray_new("z", 1), MP_TUPLE(mp_float_new(2.5), mp_none()),
      MP_DICT(mp_str_new("k"), MP_SET(mp_int_new(300))),
      MP_FROZENSET(mp_int_new(-70000)), mp_uint_new(UINT64_MAX),
      mp_record_take(MP_RECORD_REDUCE, mp_global_new("builtins", "KeyError"),
                     MP_TUPLE(mp_str_new("m"))));
  for (int proto = 2; proto <= 5; proto++) {
    void *p;
    size_t n;
    MP_ASSERT_OK(mp_pickle_dumps(v, &(mp_pickle_opts){.protocol = proto}, &p,
                                 &n));
    for (size_t cut = 0; cut < n; cut++) {
      mp_obj *w = NULL;
      MP_ASSERT_ERR(mp_pickle_loads(p, cut, NULL, &w), MP_EMALFORMED);
      assert_null(w);
      assert_non_null(strstr(mp_errdetail(), "offset"));
    }
    /* one byte too many */
    unsigned char *q = malloc(n + 1);
    memcpy(q, p, n);
    q[n] = '.';
    mp_obj *w = NULL;
    MP_ASSERT_ERR(mp_pickle_loads(q, n + 1, NULL, &w), MP_EMALFORMED);
    free(q);
    mp_obj *back = loads_ok(p, n);
    assert_true(mp_obj_equal_content(v, back)); /* (it holds a record) */
    mp_obj_free(back);
    /* max_size */
    MP_ASSERT_ERR(mp_pickle_loads(p, n, &(mp_pickle_opts){.max_size = n - 1},
                                  &w),
                  MP_ELIMIT);
    mp_free(p);
  }
  mp_obj_free(v);
}

static void
test_hostile(void **state)
{
  /* absurd lengths: never trusted, never allocated */
  LOADS_ERR("\x80\x04X\xff\xff\xff\xff" "abc.", MP_EMALFORMED);
  LOADS_ERR("\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xff.", MP_EMALFORMED);
  LOADS_ERR("\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x80.", MP_EMALFORMED);
  LOADS_ERR("\x80\x05\x96\x00\x00\x00\x00\x00\x01\x00\x00.", MP_EMALFORMED);
  LOADS_ERR("\x80\x04\x8b\xff\xff\xff\xff.", MP_EMALFORMED); /* LONG4 < 0 */
  LOADS_ERR("\x80\x04\x8b\x00\x00\x00\x7f.", MP_EMALFORMED);
  LOADS_ERR("\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7fN.", MP_EMALFORMED);
  /* protocol 6, unknown and unsupported opcodes */
  LOADS_ERR("\x80\x06N.", MP_ENOTSUP);
  LOADS_ERR("\x80\x04\xffN.", MP_EMALFORMED);
  LOADS_ERR("\x80\x04P0\n.", MP_EMALFORMED);          /* PERSID */
  LOADS_ERR("\x80\x04(i__main__\nX\n.", MP_EMALFORMED); /* INST */
  LOADS_ERR("\x80\x04\x82\x01.", MP_EMALFORMED);       /* EXT1 */
  /* bad UTF-8 in a str */
  LOADS_ERR("\x80\x04\x8c\x02\xc0\xaf.", MP_EMALFORMED);
  /* stack abuse */
  LOADS_ERR("\x80\x04.", MP_EMALFORMED);
  LOADS_ERR("\x80\x04\x85.", MP_EMALFORMED);
  LOADS_ERR("\x80\x04t.", MP_EMALFORMED);
  LOADS_ERR("\x80\x04(\x85.", MP_EMALFORMED); /* item under the mark */
  LOADS_ERR("\x80\x04K\x01K\x02" "a.", MP_EMALFORMED); /* append to an int */
  LOADS_ERR("\x80\x04}K\x01s.", MP_EMALFORMED);
  LOADS_ERR("\x80\x04}(K\x01u.", MP_EMALFORMED); /* odd SETITEMS */
  LOADS_ERR("\x80\x04}]K\x01s.", MP_EMALFORMED);  /* unhashable key */
  LOADS_ERR("\x80\x04(]\x91.", MP_EMALFORMED);   /* unhashable member */
  LOADS_ERR("\x80\x04]N\x90.", MP_EMALFORMED);    /* ADDITEMS, no mark */
  LOADS_ERR("\x80\x04K\x01N\x85R.", MP_EMALFORMED); /* call of an int */
  LOADS_ERR("\x80\x04\x8c\x01" "a\x8c\x01" "b\x93K\x01R.", MP_EMALFORMED);
  LOADS_ERR("\x80\x04]N" "b.", MP_EMALFORMED);    /* BUILD on a list */
  LOADS_ERR("\x80\x04K\x01\x8c\x01" "b\x93.", MP_EMALFORMED);
  LOADS_ERR("\x80\x04" "cmod\n", MP_EMALFORMED);  /* GLOBAL cut */
  /* memo abuse */
  LOADS_ERR("\x80\x04h\x00.", MP_EMALFORMED);
  LOADS_ERR("\x80\x04Nj\x05\x00\x00\x00.", MP_EMALFORMED);
  LOADS_ERR("\x80\x04Nr\xff\xff\xff\xff.", MP_EMALFORMED); /* huge index */
  LOADS_ERR("\x80\x04\x94.", MP_EMALFORMED);

  /* cycles, as CPython writes them: a = []; a.append(a) */
  LOADS_ERR("\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00\x5d\x94\x68\x00\x61\x2e", MP_ECYCLE);
  /* t = ([],); t[0].append(t): the POP pattern, protocols 4 and 2 */
  LOADS_ERR("\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00\x5d\x94\x68\x00\x85\x94\x61\x30\x68\x01\x2e", MP_ECYCLE);
  LOADS_ERR("\x80\x02\x5d\x71\x00\x68\x00\x85\x71\x01\x61\x30\x68\x01\x2e", MP_ECYCLE);
  /* d = {}; d['s'] = [d] */
  LOADS_ERR("\x80\x04\x95\x0d\x00\x00\x00\x00\x00\x00\x00\x7d\x94\x8c\x01\x73\x94\x5d\x94\x68\x00\x61\x73\x2e", MP_ECYCLE);
  /* an object whose state holds itself */
  LOADS_ERR("\x80\x04\x8c\x01m\x8c\x01" "c\x93)R\x94h\x00" "b.", MP_ECYCLE);

  /* deep nesting past the limit: MP_ELIMIT, no recursion */
  size_t depth = 100000;
  unsigned char *p = malloc(depth * 2 + 4);
  size_t n = 0;
  p[n++] = 0x80;
  p[n++] = 4;
  for (size_t i = 0; i < depth; i++)
    p[n++] = ']';
  for (size_t i = 0; i < depth - 1; i++)
    p[n++] = 'a';
  p[n++] = '.';
  mp_obj *v = NULL;
  MP_ASSERT_ERR(mp_pickle_loads(p, n, NULL, &v), MP_ELIMIT);
  /* same with tuples and marks */
  n = 2;
  for (size_t i = 0; i < depth; i++)
    p[n++] = '(';
  for (size_t i = 0; i < depth; i++)
    p[n++] = 't';
  p[n++] = '.';
  MP_ASSERT_ERR(mp_pickle_loads(p, n, NULL, &v), MP_ELIMIT);
  free(p);

  /* a DAG of shared tuples doubling at each level stays linear to load */
  unsigned char q[4 + 6 * 64];
  n = 0;
  q[n++] = 0x80;
  q[n++] = 4;
  q[n++] = ')';
  for (int i = 0; i < 60; i++) {
    q[n++] = 0x94; /* MEMOIZE */
    q[n++] = 'h';
    q[n++] = (unsigned char)i;
    q[n++] = 0x86; /* (x, x) */
  }
  q[n++] = '.';
  v = NULL;
  MP_ASSERT_OK(mp_pickle_loads(q, n, &(mp_pickle_opts){.max_depth = 100}, &v));
  mp_obj_free(v);
}

static void
test_threads_share_values(void **state)
{
  /* values nobody mutates may be shared and released by several threads:
   * exercised under ThreadSanitizer (tests/tsan-tests.txt) */
  mp_obj *rec = mp_record_take(MP_RECORD_NEWOBJ, mp_global_new("m", "C"),
                               mp_tuple_take(0));
  /* a record held twice is written through the memo (its reference count
   * decides, read while other threads take and drop references) */
  mp_obj *v = MP_LIST(mp_str_new("shared"), mp_int_new(123456789),
                      MP_DICT(mp_str_new("k"), mp_float_new(1.5)),
                      mp_obj_ref(rec), rec);
  run_threads(v);
  mp_obj_free(v);
}



static void *
worker(void *arg)
{
  mp_obj *v = arg;
  for (int i = 0; i < 2000; i++) {
    mp_obj *r = mp_obj_ref(v);
    void *p;
    size_t n;
    if (mp_pickle_dumps(r, NULL, &p, &n))
      return (void *)1;
    mp_obj *w;
    if (mp_pickle_loads(p, n, NULL, &w))
      return (void *)1;
    uint64_t h;
    mp_obj_hash(mp_seq_item(w, 0), &h);
    if (!mp_obj_equal_content(w, r) ||
        mp_seq_item(w, 3) != mp_seq_item(w, 4)) /* one object, as it was */
      return (void *)1;
    mp_obj_free(w);
    mp_free(p);
    mp_obj_free(r);
  }
  return NULL;
}

static void
run_threads(mp_obj *v)
{
  pthread_t t[4];
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&t[i], NULL, worker, v), 0);
  for (int i = 0; i < 4; i++) {
    void *r;
    pthread_join(t[i], &r);
    assert_null(r);
  }
}

/* dumps keeps the first 64 levels of its path and its first 512 bytes in
 * the dumper, loads its first 64 stack slots and 16 marks in the loader:
 * values past each of those sizes round-trip, and the depth and cycle
 * checks still see the whole path. */
static void
test_past_the_local_buffers(void **state)
{
  (void)state;
  /* 300 nested 4-tuples: 300 marks, a path 300 deep, ~6 KiB of pickle */
  mp_obj *deep = mp_none();
  for (int i = 0; i < 300; i++)
    deep = MP_TUPLE(mp_int_new(i), mp_str_new("abcdefgh"), mp_float_new(0.5),
                    deep);
  void *p;
  size_t n;
  MP_ASSERT_OK(mp_pickle_dumps(deep, NULL, &p, &n));
  assert_true(n > 512);
  mp_obj *back;
  MP_ASSERT_OK(mp_pickle_loads(p, n, NULL, &back));
  assert_true(mp_obj_equal(deep, back));
  mp_obj_free(back);
  MP_ASSERT_ERR(mp_pickle_loads(p, n, &(mp_pickle_opts){.max_depth = 299},
                                &back),
                MP_ELIMIT);
  mp_free(p);
  MP_ASSERT_ERR(mp_pickle_dumps(deep, &(mp_pickle_opts){.max_depth = 299}, &p,
                                &n),
                MP_ELIMIT);
  mp_obj_free(deep);

  /* a list 100 deep whose innermost list holds the outermost: a cycle, found
   * past the first 64 levels of the path */
  mp_obj *outer = mp_list_new(), *inner = outer;
  for (int i = 0; i < 100; i++) {
    mp_obj *next = mp_list_new();
    MP_ASSERT_OK(mp_list_append(inner, next));
    mp_obj_free(next); /* the list holds it */
    inner = next;
  }
  MP_ASSERT_OK(mp_list_append(inner, outer));
  MP_ASSERT_ERR(mp_pickle_dumps(outer, NULL, &p, &n), MP_ECYCLE);
  mp_obj *popped;
  MP_ASSERT_OK(mp_list_pop(inner, -1, &popped)); /* break the cycle */
  mp_obj_free(popped);
  mp_obj_free(outer);

  /* one flat tuple of 1000 items: the stack grows past 64 slots */
  mp_obj *flat = mp_list_new();
  for (int i = 0; i < 1000; i++)
    MP_ASSERT_OK(mp_list_append_take(flat, mp_int_new(i * 1000003)));
  mp_obj *const *items;
  size_t count;
  MP_ASSERT_OK(mp_seq_items(flat, &items, &count));
  mp_obj *t = mp_tuple_from(count, items);
  assert_non_null(t);
  MP_ASSERT_OK(mp_pickle_dumps(t, NULL, &p, &n));
  MP_ASSERT_OK(mp_pickle_loads(p, n, NULL, &back));
  assert_true(mp_obj_equal(t, back));
  mp_obj_free(back);
  mp_free(p);
  mp_obj_free(t);
  mp_obj_free(flat);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_encodings),
    cmocka_unit_test(test_cpython_pickles),
    cmocka_unit_test(test_truncated_everywhere),
    cmocka_unit_test(test_hostile),
    cmocka_unit_test(test_past_the_local_buffers),
    cmocka_unit_test(test_threads_share_values),
};

MP_TEST_MAIN(tests)
