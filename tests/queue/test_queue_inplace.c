/* SPDX-License-Identifier: MIT */
/* Items holding big bytes and str payloads: a put pickles them in place
 * (MP__PICKLE_INPLACE_MIN and up are copied once, from the object into the
 * ring).  What lands in the ring must be byte for byte the pickle
 * mp_pickle_dumps writes, for payloads on both sides of the threshold, in
 * any position, shared, nested, one put or a batch; and the limits still
 * count the whole pickle. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "obj/obj_internal.h"

static mp_obj *
big_bytes(size_t n, unsigned seed)
{
  uint8_t *b = malloc(n ? n : 1);
  assert_non_null(b);
  for (size_t i = 0; i < n; i++)
    b[i] = (uint8_t)(i * 131 + seed);
  mp_obj *o = mp_bytes_new(b, n);
  free(b);
  assert_non_null(o);
  return o;
}

static mp_obj *
big_str(size_t n)
{
  /* ASCII with a two-byte character every 1000 bytes */
  char *s = malloc(n + 1);
  assert_non_null(s);
  size_t i = 0;
  while (i < n) {
    if (i % 1000 == 999 && i + 2 <= n) {
      s[i++] = (char)0xc3;
      s[i++] = (char)0xa9; /* é */
    } else {
      s[i] = (char)('a' + i % 26);
      i++;
    }
  }
  s[n] = '\0';
  mp_obj *o = mp_str_new(s);
  free(s);
  assert_non_null(o);
  return o;
}

/* One item with payloads of about `n` bytes in several places. */
static mp_obj *
item_of(size_t n, unsigned seed)
{
  mp_obj *shared = big_bytes(n, seed);
  mp_obj *o = MP_TUPLE(mp_int_new(seed), mp_obj_ref(shared), mp_str_new("x"),
                       big_str(n + 1), mp_obj_ref(shared),
                       MP_LIST(big_bytes(n + 7, seed + 1), mp_none()),
                       mp_str_new("end"));
  mp_obj_free(shared);
  assert_non_null(o);
  return o;
}

static void
expect_same_pickle(const void *got, size_t got_len, const mp_obj *item)
{
  void *want;
  size_t want_len;
  MP_ASSERT_OK(mp_pickle_dumps(item, NULL, &want, &want_len));
  assert_int_equal(got_len, want_len);
  assert_memory_equal(got, want, want_len);
  mp_free(want);
}

static const size_t sizes[] = {
    1000, MP__PICKLE_INPLACE_MIN - 1, MP__PICKLE_INPLACE_MIN,
    MP__PICKLE_INPLACE_MIN + 1, 3 * MP__PICKLE_INPLACE_MIN + 5,
    (size_t)1 << 20};

static void
test_put_writes_the_same_pickle(void **state)
{
  (void)state;
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    mp_obj *item = item_of(sizes[k], (unsigned)k);
    MP_ASSERT_OK(mp_queue_put(q, item, 0));
    void *got;
    size_t len;
    MP_ASSERT_OK(mp_queue_get_bytes(q, &got, &len, 0));
    expect_same_pickle(got, len, item);
    mp_free(got);
    /* and it decodes to the item */
    MP_ASSERT_OK(mp_queue_put(q, item, 0));
    mp_obj *back;
    MP_ASSERT_OK(mp_queue_get(q, &back, 0));
    assert_true(mp_obj_equal(back, item));
    mp_obj_free(back);
    mp_obj_free(item);
  }
  mp_queue_free(q);
}

static void
test_put_many_writes_the_same_pickles(void **state)
{
  (void)state;
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  enum { N = sizeof sizes / sizeof *sizes };
  mp_obj *items[N];
  for (size_t k = 0; k < N; k++)
    items[k] = item_of(sizes[N - 1 - k], (unsigned)(k + 50));
  assert_int_equal(mp_queue_put_many(q, (const mp_obj *const *)items, N, 0),
                   N);
  for (size_t k = 0; k < N; k++) {
    void *got;
    size_t len;
    MP_ASSERT_OK(mp_queue_get_bytes(q, &got, &len, 0));
    expect_same_pickle(got, len, items[k]);
    mp_free(got);
    mp_obj_free(items[k]);
  }
  mp_queue_free(q);
}

/* max_message counts the payloads left in place too */
static void
test_limit_counts_the_whole_pickle(void **state)
{
  (void)state;
  mp_queue *q;
  size_t max = 3 * MP__PICKLE_INPLACE_MIN;
  MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){.max_message = max}));
  /* each payload alone fits; together they do not */
  mp_obj *a = big_bytes(MP__PICKLE_INPLACE_MIN * 2, 1);
  mp_obj *two = MP_TUPLE(mp_obj_ref(a), mp_obj_ref(a));
  MP_ASSERT_ERR(mp_queue_put(q, two, 0), MP_EMSGSIZE);
  assert_int_equal(mp_queue_qsize(q), 0);
  mp_obj *one = MP_TUPLE(mp_obj_ref(a));
  MP_ASSERT_OK(mp_queue_put(q, one, 0));
  mp_obj *back;
  MP_ASSERT_OK(mp_queue_get(q, &back, 0));
  assert_true(mp_obj_equal(back, one));
  mp_obj_free(back);
  mp_obj_free(one);
  mp_obj_free(two);
  mp_obj_free(a);
  mp_queue_free(q);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_put_writes_the_same_pickle),
    cmocka_unit_test(test_put_many_writes_the_same_pickles),
    cmocka_unit_test(test_limit_counts_the_whole_pickle),
};

MP_TEST_MAIN(tests)
