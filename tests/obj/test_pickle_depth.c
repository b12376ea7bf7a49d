/* SPDX-License-Identifier: MIT */
/* max_depth holds for what loads returns, however the pickle linked it.
 *
 * The pickles here make N containers first, each put in the memo, and then
 * link container i into container i-1 through LONG_BINGET and an opcode
 * that adds to an existing container (APPEND, SETITEM, ADDITEMS, BUILD,
 * APPENDS on an object), last to first or first to last.  First to last is
 * the hostile order: each link is made when the parent already sits in its
 * own parent, so the heights stored as links are made never see the whole
 * chain.  Whatever the order, a value nested deeper than max_depth is
 * MP_ELIMIT, and one at the limit loads and can be dumped, copied, printed
 * and compared. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

typedef struct pbuf {
  unsigned char *p;
  size_t n, cap;
} pbuf;

static void
put(pbuf *b, const void *s, size_t n)
{
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2;
    b->p = realloc(b->p, b->cap);
    assert_non_null(b->p);
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
}

static void
put1(pbuf *b, unsigned char c)
{
  put(b, &c, 1);
}

static void
get(pbuf *b, size_t i)
{
  unsigned char op[5] = {'j', (unsigned char)i, (unsigned char)(i >> 8),
                         (unsigned char)(i >> 16), (unsigned char)(i >> 24)};
  put(b, op, 5);
}

/* what the chain is made of */
enum kind { LISTS, DICTS, STATES, OBJ_ITEMS, MIXED };
static const char *const kind_names[] = {"lists (APPEND)", "dicts (SETITEM)",
                                         "objects (BUILD)",
                                         "objects (APPENDS)",
                                         "list/dict/set/object (mixed)"};

/* the type of container i of a chain */
static int
node_type(enum kind k, size_t i)
{
  static const int of[] = {MP_T_LIST, MP_T_DICT, MP_T_RECORD, MP_T_RECORD};
  if (k == MIXED) {
    static const int mixed[] = {MP_T_LIST, MP_T_DICT, MP_T_SET, MP_T_RECORD};
    return mixed[i % 4];
  }
  return of[k];
}

/* PROTO 4; N containers, each memoized and popped; the links; the first
 * container; STOP. */
static void
chain_pickle(pbuf *b, enum kind k, size_t n, int forward)
{
  b->n = 0;
  put(b, "\x80\x04", 2);
  for (size_t i = 0; i < n; i++) {
    switch (node_type(k, i)) {
    case MP_T_LIST:
      put1(b, ']');
      break;
    case MP_T_DICT:
      put1(b, '}');
      break;
    case MP_T_SET:
      put1(b, 0x8f);
      break;
    default:
      put(b, "cm\nC\n)\x81", 7); /* m.C.__new__(m.C) */
      break;
    }
    put(b, "\x94" "0", 2); /* MEMOIZE POP */
  }
  for (size_t s = 1; s < n; s++) {
    size_t i = forward ? s : n - s; /* link i into i - 1 */
    get(b, i - 1);
    switch (node_type(k, i - 1)) {
    case MP_T_LIST:
      get(b, i);
      put1(b, 'a'); /* APPEND */
      break;
    case MP_T_DICT:
      put(b, "K\x00", 2);
      get(b, i);
      put1(b, 's'); /* SETITEM */
      break;
    case MP_T_SET:
      put1(b, '(');
      get(b, i);
      put1(b, 0x90); /* ADDITEMS (i is an object: hashable) */
      break;
    default:
      if (k == OBJ_ITEMS) {
        put1(b, '(');
        get(b, i);
        put1(b, 'e'); /* APPENDS to the object */
      } else {
        get(b, i);
        put1(b, 'b'); /* BUILD: its state */
      }
      break;
    }
    put1(b, '0'); /* POP the parent */
  }
  get(b, 0);
  put1(b, '.');
}

/* The nesting of a value as loads counts it: a container is 1 + its
 * tallest item (a class reference and an empty container are 1). */
static int
height(const mp_obj *o)
{
  mp_obj *const *items;
  size_t n, pos = 0;
  mp_obj *k, *v;
  int h = 0, c;
  switch (mp_obj_type(o)) {
  case MP_T_TUPLE:
  case MP_T_LIST:
    mp_seq_items(o, &items, &n);
    for (size_t i = 0; i < n; i++)
      if ((c = height(items[i])) > h)
        h = c;
    return h + 1;
  case MP_T_DICT:
    while (mp_dict_next(o, &pos, &k, &v)) {
      if ((c = height(k)) > h)
        h = c;
      if ((c = height(v)) > h)
        h = c;
    }
    return h + 1;
  case MP_T_SET:
  case MP_T_FROZENSET:
    while (mp_set_next(o, &pos, &k))
      if ((c = height(k)) > h)
        h = c;
    return h + 1;
  case MP_T_RECORD: {
    mp_obj *p[6] = {0};
    if (mp_record_get(o, &p[0], &p[1], &p[2], &p[3], &p[4]) == 0)
      mp_record_kwargs(o, &p[5]);
    for (int i = 0; i < 6; i++)
      if (p[i] && (c = height(p[i])) > h)
        h = c;
    return h + 1;
  }
  default:
    return 0;
  }
}

static int
load(const pbuf *b, int max_depth, mp_obj **out)
{
  *out = NULL;
  return mp_pickle_loads(b->p, b->n, &(mp_pickle_opts){.max_depth = max_depth},
                         out);
}

static void
test_limit_is_exact_both_orders(void **state)
{
  pbuf b = {0};
  for (int k = LISTS; k <= MIXED; k++) {
    for (size_t n = 2; n <= 700; n = n * 3 + 1) {
      int h = -1;
      /* (last to first, each link is searched for a cycle through the
       * whole chain below it: a long one exceeds the cycle-check budget) */
      for (int forward = n > 250; forward <= 1; forward++) {
        chain_pickle(&b, (enum kind)k, n, forward);
        mp_obj *v;
        MP_ASSERT_OK(load(&b, 20000, &v));
        if (h < 0)
          h = height(v);
        assert_int_equal(height(v), h); /* the same value either way */
        mp_obj_free(v);
        /* exactly max_depth deep loads, one more is refused */
        MP_ASSERT_OK(load(&b, h, &v));
        mp_obj *w;
        MP_ASSERT_ERR(load(&b, h - 1, &w), MP_ELIMIT);
        assert_null(w);
        assert_non_null(strstr(mp_errdetail(), "max_depth"));
        /* what loads returns, the rest of the library takes */
        void *p;
        size_t plen;
        MP_ASSERT_OK(mp_pickle_dumps(v, &(mp_pickle_opts){.max_depth = h}, &p,
                                     &plen));
        MP_ASSERT_OK(mp_pickle_loads(p, plen,
                                     &(mp_pickle_opts){.max_depth = h}, &w));
        mp_free(p);
        if (h <= 1000) { /* the default limit of the recursive operations */
          assert_true(mp_obj_equal_content(v, w));
          if (k == LISTS || k == DICTS)
            assert_true(mp_obj_equal(v, w));
          mp_obj *c = mp_obj_copy(v);
          assert_non_null(c);
          assert_true(mp_obj_equal_content(v, c));
          mp_obj_free(c);
          char *r = mp_obj_repr(v);
          assert_non_null(r);
          mp_free(r);
        }
        mp_obj_free(w);
        mp_obj_free(v);
      }
    }
  }
  free(b.p);
}

static void
test_memo_chain_refused_at_default(void **state)
{
  pbuf b = {0};
  /* the pickle: 5,000 lists, each appended to the previous one
   * through BINGET, first to last */
  for (int k = LISTS; k <= MIXED; k++) {
    for (int forward = 0; forward <= 1; forward++) {
      chain_pickle(&b, (enum kind)k, 5000, forward);
      mp_obj *v;
      MP_ASSERT_ERR(load(&b, 0, &v), MP_ELIMIT);
      assert_null(v);
    }
    /* at the default limit exactly: the longest chain that is at most 1000
     * deep loads (objects nest more than one level per link), one link
     * more does not */
    size_t lo = 1, hi = 1000; /* h(lo) <= 1000 < h(hi + 1) */
    mp_obj *v;
    while (lo < hi) {
      size_t mid = (lo + hi + 1) / 2;
      chain_pickle(&b, (enum kind)k, mid, 1);
      MP_ASSERT_OK(load(&b, 20000, &v));
      if (height(v) <= 1000)
        lo = mid;
      else
        hi = mid - 1;
      mp_obj_free(v);
    }
    size_t n = lo;
    chain_pickle(&b, (enum kind)k, n, 1);
    MP_ASSERT_OK(load(&b, 20000, &v));
    int h = height(v);
    mp_obj_free(v);
    if (h == 1000) {
      MP_ASSERT_OK(load(&b, 0, &v));
      /* everything the issue saw refuse it works */
      void *p;
      size_t plen;
      MP_ASSERT_OK(mp_pickle_dumps(v, NULL, &p, &plen));
      mp_obj *w;
      MP_ASSERT_OK(mp_pickle_loads(p, plen, NULL, &w));
      mp_free(p);
      assert_true(mp_obj_equal_content(v, w));
      mp_obj_free(w);
      char *r = mp_obj_repr(v);
      assert_non_null(r);
      mp_free(r);
      mp_obj *c = mp_obj_copy(v);
      assert_non_null(c);
      mp_obj_free(c);
      mp_obj_free(v);
    }
    chain_pickle(&b, (enum kind)k, n + 1, 1);
    MP_ASSERT_ERR(load(&b, 0, &v), MP_ELIMIT);
  }
  free(b.p);
}

static void
test_long_memo_chain_is_linear(void **state)
{
  /* 300,000 links: refused at any limit, in time linear in the input (a
   * quadratic check would take hours here) */
  pbuf b = {0};
  for (int k = LISTS; k <= MIXED; k += MIXED - LISTS) {
    chain_pickle(&b, (enum kind)k, 300000, 1);
    double t0 = mp_test_now();
    mp_obj *v;
    MP_ASSERT_ERR(load(&b, 0, &v), MP_ELIMIT);
    MP_ASSERT_ERR(load(&b, 20000, &v), MP_ELIMIT);
    printf("  300,000-link chain of %s (%zu bytes): refused in %.3f s\n",
           kind_names[k], b.n, mp_test_now() - t0);
  }
  /* and shared structure is walked once: a ladder of 20,000 lists where
   * list i holds list i+1 twice (a DAG of 2**20000 paths) */
  b.n = 0;
  put(&b, "\x80\x04", 2);
  for (size_t i = 0; i < 20000; i++)
    put(&b, "]\x94" "0", 3);
  for (size_t i = 1; i < 20000; i++) {
    get(&b, i - 1);
    put1(&b, '(');
    get(&b, i);
    get(&b, i);
    put(&b, "e0", 2);
  }
  get(&b, 0);
  put1(&b, '.');
  double t0 = mp_test_now();
  mp_obj *v;
  MP_ASSERT_ERR(load(&b, 0, &v), MP_ELIMIT);
  /* 500 rungs fit: loads, and is 500 deep */
  b.n = 0;
  put(&b, "\x80\x04", 2);
  for (size_t i = 0; i < 500; i++)
    put(&b, "]\x94" "0", 3);
  for (size_t i = 1; i < 500; i++) {
    get(&b, i - 1);
    put1(&b, '(');
    get(&b, i);
    get(&b, i);
    put(&b, "e0", 2);
  }
  get(&b, 0);
  put1(&b, '.');
  MP_ASSERT_OK(load(&b, 500, &v));
  mp_obj *w;
  MP_ASSERT_ERR(load(&b, 499, &w), MP_ELIMIT);
  mp_obj_free(v);
  printf("  ladders of shared lists: %.3f s\n", mp_test_now() - t0);
  free(b.p);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_limit_is_exact_both_orders),
    cmocka_unit_test(test_memo_chain_refused_at_default),
    cmocka_unit_test(test_long_memo_chain_is_linear),
};

MP_TEST_MAIN(tests)
