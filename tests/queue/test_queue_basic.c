/* SPDX-License-Identifier: MIT */
/* Queue behaviour in one process: Python's Queue/JoinableQueue semantics,
 * every documented error code, batches, items larger than a segment,
 * growth and reuse of segments, the memory cap, handles and function
 * values inside items. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "queue/queue_internal.h"

static void
test_put_get_bytes_fifo(void **state)
{
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  assert_int_equal(mp_queue_empty(q), 1);
  assert_int_equal(mp_queue_full(q), 0);
  for (int i = 0; i < 100; i++) {
    char b[32];
    int n = snprintf(b, sizeof b, "item %d", i);
    MP_ASSERT_OK(mp_queue_put_bytes(q, b, (size_t)n, 0));
  }
  assert_int_equal(mp_queue_qsize(q), 100);
  assert_int_equal(mp_queue_empty(q), 0);
  for (int i = 0; i < 100; i++) {
    void *p;
    size_t n;
    char b[32];
    MP_ASSERT_OK(mp_queue_get_bytes(q, &p, &n, 0));
    int m = snprintf(b, sizeof b, "item %d", i);
    assert_int_equal(n, (size_t)m);
    assert_memory_equal(p, b, n);
    mp_free(p);
  }
  assert_int_equal(mp_queue_qsize(q), 0);
  void *p;
  size_t n;
  MP_ASSERT_ERR(mp_queue_get_bytes(q, &p, &n, 0), MP_EEMPTY);
  MP_ASSERT_ERR(mp_queue_get_bytes(q, &p, &n, 0.05), MP_EEMPTY);
  MP_ASSERT_ERR(mp_queue_get_bytes(q, &p, &n, -1), MP_EEMPTY);
  /* an empty item */
  MP_ASSERT_OK(mp_queue_put_bytes(q, "", 0, 0));
  MP_ASSERT_OK(mp_queue_get_bytes(q, &p, &n, 0));
  assert_non_null(p);
  assert_int_equal(n, 0);
  mp_free(p);
  mp_queue_free(q);
}

/* Every length from 0 to 80 bytes, through put_bytes, get_bytes_into,
 * get_bytes and the batches: small items are copied inline in pieces that
 * overlap (up to 32 bytes), so each length is its own case.  The bytes
 * around the copy stay untouched. */
static void
test_every_small_length(void **state)
{
  (void)state;
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  unsigned char src[80], dst[96];
  for (size_t len = 0; len <= sizeof src; len++) {
    for (size_t i = 0; i < len; i++)
      src[i] = (unsigned char)(len * 7 + i * 13 + 1);
    MP_ASSERT_OK(mp_queue_put_bytes(q, src, len, 0));
    memset(dst, 0xee, sizeof dst);
    size_t n = 999;
    MP_ASSERT_OK(mp_queue_get_bytes_into(q, dst + 8, len, &n, 0));
    assert_int_equal(n, len);
    assert_memory_equal(dst + 8, src, len);
    for (size_t i = 0; i < 8; i++)
      assert_int_equal(dst[i], 0xee);
    for (size_t i = 8 + len; i < sizeof dst; i++)
      assert_int_equal(dst[i], 0xee);
    /* and in a batch of two, the second of each length */
    mp_queue_buf in[2] = {{src, len}, {src, len}};
    assert_int_equal(mp_queue_put_many_bytes(q, in, 2, 0), 2);
    unsigned char buf[2 * sizeof src + 16];
    memset(buf, 0xee, sizeof buf);
    mp_queue_buf out[2];
    assert_int_equal(mp_queue_get_many_bytes(q, buf, 2 * len, out, 2, 0), 2);
    for (int k = 0; k < 2; k++) {
      assert_int_equal(out[k].len, len);
      assert_memory_equal(out[k].data, src, len);
    }
    for (size_t i = 2 * len; i < sizeof buf; i++)
      assert_int_equal(buf[i], 0xee);
  }
  assert_int_equal(mp_queue_qsize(q), 0);
  mp_queue_free(q);
}

/* get_bytes_into on an empty queue: its one-pass path hands the empty
 * look to the waiting path, which must still time out, or see a put. */
static void
test_get_bytes_into_empty(void **state)
{
  (void)state;
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  char b[8];
  size_t n = 99;
  MP_ASSERT_ERR(mp_queue_get_bytes_into(q, b, sizeof b, &n, 0), MP_EEMPTY);
  assert_int_equal(n, 0);
  MP_ASSERT_ERR(mp_queue_get_bytes_into(q, b, sizeof b, &n, 0.02),
                MP_EEMPTY);
  MP_ASSERT_OK(mp_queue_put_bytes(q, "abc", 3, 0));
  MP_ASSERT_OK(mp_queue_get_bytes_into(q, b, sizeof b, &n, 0));
  assert_int_equal(n, 3);
  assert_memory_equal(b, "abc", 3);
  MP_ASSERT_ERR(mp_queue_get_bytes_into(q, b, sizeof b, &n, 0), MP_EEMPTY);
  mp_queue_free(q);
}

static void
test_put_get_objects_both_ways(void **state)
{
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  mp_obj *item = MP_TUPLE(mp_str_new("hello"), mp_int_new(42),
                          MP_LIST(mp_float_new(1.5), mp_none()));
  MP_ASSERT_OK(mp_queue_put(q, item, 0));
  mp_obj *got;
  MP_ASSERT_OK(mp_queue_get(q, &got, 0));
  assert_true(mp_obj_equal(item, got));
  mp_obj_free(got);
  /* put -> get_bytes gives the pickle */
  MP_ASSERT_OK(mp_queue_put(q, item, 0));
  void *p;
  size_t n;
  MP_ASSERT_OK(mp_queue_get_bytes(q, &p, &n, 0));
  void *pk;
  size_t pn;
  MP_ASSERT_OK(mp_pickle_dumps(item, NULL, &pk, &pn));
  assert_int_equal(n, pn);
  assert_memory_equal(p, pk, n);
  /* put_bytes of a pickle -> get unpickles it */
  MP_ASSERT_OK(mp_queue_put_bytes(q, pk, pn, 0));
  MP_ASSERT_OK(mp_queue_get(q, &got, 0));
  assert_true(mp_obj_equal(item, got));
  mp_obj_free(got);
  /* put_bytes of something else -> get says so, and the item is gone */
  MP_ASSERT_OK(mp_queue_put_bytes(q, "not a pickle", 12, 0));
  MP_ASSERT_ERR(mp_queue_get(q, &got, 0), MP_EMALFORMED);
  assert_int_equal(mp_queue_qsize(q), 0);
  mp_free(p);
  mp_free(pk);
  mp_obj_free(item);
  mp_queue_free(q);
}

static void
test_bounded_queue(void **state)
{
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){.maxsize = 3}));
  assert_int_equal(mp_queue_maxsize(q), 3);
  for (int i = 0; i < 3; i++)
    MP_ASSERT_OK(mp_queue_put_bytes(q, "x", 1, 0));
  assert_int_equal(mp_queue_full(q), 1);
  MP_ASSERT_ERR(mp_queue_put_bytes(q, "x", 1, 0), MP_EFULL);
  MP_ASSERT_ERR(mp_queue_put_bytes(q, "x", 1, 0.05), MP_EFULL);
  mp_obj *o = mp_int_new(1);
  MP_ASSERT_ERR(mp_queue_put(q, o, 0), MP_EFULL);
  mp_obj_free(o);
  /* a batch puts what fits */
  mp_queue_buf b[2] = {{"y", 1}, {"z", 1}};
  MP_ASSERT_ERR(mp_queue_put_many_bytes(q, b, 2, 0), MP_EFULL);
  char c;
  size_t n;
  MP_ASSERT_OK(mp_queue_get_bytes_into(q, &c, 1, &n, 0));
  assert_int_equal(mp_queue_full(q), 0);
  assert_int_equal(mp_queue_put_many_bytes(q, b, 2, 0), 1);
  assert_int_equal(mp_queue_qsize(q), 3);
  mp_queue_free(q);
}

static void
test_errors(void **state)
{
  mp_queue *q;
  void *p;
  size_t n;
  MP_ASSERT_ERR(mp_queue_new(NULL, NULL), MP_EINVAL);
  MP_ASSERT_ERR(mp_queue_new(&q, &(mp_queue_opts){.max_message =
                                                      MP_QUEUE_MAX_MESSAGE + 1}),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_queue_new(&q, &(mp_queue_opts){.memory_cap = 4096}),
                MP_EINVAL);
  MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){.max_message = 10}));
  MP_ASSERT_ERR(mp_queue_put_bytes(q, "0123456789A", 11, 0), MP_EMSGSIZE);
  MP_ASSERT_OK(mp_queue_put_bytes(q, "0123456789", 10, 0));
  MP_ASSERT_ERR(mp_queue_put_bytes(NULL, "x", 1, 0), MP_EINVAL);
  MP_ASSERT_ERR(mp_queue_put_bytes(q, "x", 1, 0.0 / 0.0), MP_EINVAL);
  MP_ASSERT_ERR(mp_queue_get_bytes(q, &p, &n, 0.0 / 0.0), MP_EINVAL);
  /* get_bytes_into too small: the item stays first */
  char small[4];
  MP_ASSERT_ERR(mp_queue_get_bytes_into(q, small, sizeof small, &n, 0),
                MP_EMSGSIZE);
  assert_int_equal(n, 10);
  assert_int_equal(mp_queue_qsize(q), 1);
  MP_ASSERT_OK(mp_queue_get_bytes(q, &p, &n, 0));
  assert_memory_equal(p, "0123456789", 10);
  mp_free(p);
  /* not joinable */
  MP_ASSERT_ERR(mp_queue_task_done(q), MP_ENOTSUP);
  MP_ASSERT_ERR(mp_queue_join(q, 0), MP_ENOTSUP);
  /* join_thread / cancel_join_thread have nothing to do */
  MP_ASSERT_OK(mp_queue_join_thread(q));
  MP_ASSERT_OK(mp_queue_cancel_join_thread(q));
  MP_ASSERT_ERR(mp_queue_join_thread(NULL), MP_EINVAL);
  /* close: this process's put/get fail, a second close is fine */
  MP_ASSERT_OK(mp_queue_put_bytes(q, "a", 1, 0));
  MP_ASSERT_OK(mp_queue_close(q));
  MP_ASSERT_OK(mp_queue_close(q));
  MP_ASSERT_ERR(mp_queue_put_bytes(q, "x", 1, 0), MP_ECLOSED);
  MP_ASSERT_ERR(mp_queue_get_bytes(q, &p, &n, 0), MP_ECLOSED);
  assert_int_equal(mp_queue_qsize(q), 1);
  assert_int_equal(mp_queue_qsize(NULL), MP_EINVAL);
  mp_queue_free(q);
  /* the value API; {Queue} in mp_args_parse */
  mp_queue *q3;
  MP_ASSERT_OK(mp_queue_new(&q3, NULL));
  mp_obj *args = MP_TUPLE(mp_queue_obj(q3));
  mp_queue *parsed = NULL;
  MP_ASSERT_OK(mp_args_parse(args, "{Queue}", &parsed));
  assert_ptr_equal(parsed, q3);
  mp_obj_free(args);
  args = MP_TUPLE(mp_int_new(1));
  MP_ASSERT_ERR(mp_args_parse(args, "{Queue}:f", &parsed), MP_ETYPE);
  mp_obj_free(args);
  mp_queue_free(q3);
  mp_obj *none = mp_none();
  assert_null(mp_queue_from_obj(none));
  mp_obj_free(none);
  assert_null(mp_queue_obj(NULL));
}

static void
test_joinable(void **state)
{
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){.joinable = 1}));
  MP_ASSERT_OK(mp_queue_join(q, 0)); /* nothing put: done at once */
  MP_ASSERT_ERR(mp_queue_task_done(q), MP_ESTATE);
  for (int i = 0; i < 3; i++)
    MP_ASSERT_OK(mp_queue_put_bytes(q, "t", 1, 0));
  MP_ASSERT_ERR(mp_queue_join(q, 0.02), MP_ETIMEDOUT);
  for (int i = 0; i < 3; i++) {
    void *p;
    size_t n;
    MP_ASSERT_OK(mp_queue_get_bytes(q, &p, &n, 0));
    mp_free(p);
    MP_ASSERT_OK(mp_queue_task_done(q));
  }
  MP_ASSERT_OK(mp_queue_join(q, 0));
  MP_ASSERT_ERR(mp_queue_task_done(q), MP_ESTATE);
  mp_queue_free(q);
}

static void
test_batches(void **state)
{
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  enum { N = 1000 };
  mp_queue_buf in[N];
  char data[N][8];
  for (int i = 0; i < N; i++) {
    snprintf(data[i], sizeof data[i], "%07d", i);
    in[i] = (mp_queue_buf){data[i], 7};
  }
  assert_int_equal(mp_queue_put_many_bytes(q, in, N, 0), N);
  assert_int_equal(mp_queue_qsize(q), N);
  char buf[7 * 100];
  mp_queue_buf out[200];
  int next = 0;
  while (next < N) {
    /* the byte budget stops it at 100 items of 7 bytes */
    int k = mp_queue_get_many_bytes(q, buf, sizeof buf, out, 200, 0);
    assert_true(k > 0 && k <= 100);
    for (int i = 0; i < k; i++, next++) {
      assert_int_equal(out[i].len, 7);
      assert_memory_equal(out[i].data, data[next], 7);
    }
  }
  mp_queue_buf one;
  MP_ASSERT_ERR(mp_queue_get_many_bytes(q, buf, sizeof buf, &one, 1, 0),
                MP_EEMPTY);
  /* objects */
  mp_obj *objs[5];
  for (int i = 0; i < 5; i++)
    objs[i] = mp_int_new(i * 10);
  assert_int_equal(mp_queue_put_many(q, (const mp_obj *const *)objs, 5, 0),
                   5);
  mp_obj *got[8];
  assert_int_equal(mp_queue_get_many(q, got, 8, 0), 5);
  for (int i = 0; i < 5; i++) {
    assert_true(mp_obj_equal(objs[i], got[i]));
    mp_obj_free(got[i]);
    mp_obj_free(objs[i]);
  }
  /* a first item larger than the budget stays */
  MP_ASSERT_OK(mp_queue_put_bytes(q, "0123456789", 10, 0));
  MP_ASSERT_ERR(mp_queue_get_many_bytes(q, buf, 5, out, 4, 0), MP_EMSGSIZE);
  assert_int_equal(mp_queue_qsize(q), 1);
  mp_queue_free(q);
}

/* Items cross many segments, some larger than a segment; segments are
 * reused rather than the file growing without end. */
static void
test_segments_grow_and_are_reused(void **state)
{
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){.segment_size = 16384}));
  size_t sizes[] = {1, 100, 5000, 16000, 40000, 200000, 7};
  uint8_t *big = malloc(200000);
  for (size_t i = 0; i < 200000; i++)
    big[i] = (uint8_t)(i * 7 + 3);
  uint64_t file_after_first = 0;
  for (int round = 0; round < 20; round++) {
    for (size_t i = 0; i < MP__ARRAY_LEN(sizes); i++) {
      big[0] = (uint8_t)round;
      MP_ASSERT_OK(mp_queue_put_bytes(q, big, sizes[i], 0));
    }
    for (size_t i = 0; i < MP__ARRAY_LEN(sizes); i++) {
      void *p;
      size_t n;
      MP_ASSERT_OK(mp_queue_get_bytes(q, &p, &n, 0));
      assert_int_equal(n, sizes[i]);
      big[0] = (uint8_t)round;
      assert_memory_equal(p, big, n);
      mp_free(p);
    }
    size_t nfree;
    uint64_t mem, file;
    mp__queue_stats_for_tests(q, &nfree, &mem, &file);
    if (round == 1)
      file_after_first = file;
    if (round > 1)
      assert_int_equal(file, file_after_first); /* reuse, no growth */
  }
  free(big);
  mp_queue_free(q);
}

static void
test_memory_cap(void **state)
{
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){.segment_size = 16384,
                                                 .memory_cap = 1 << 20}));
  char item[1000] = {0};
  int rc = 0, n = 0;
  while ((rc = mp_queue_put_bytes(q, item, sizeof item, 0)) == 0)
    n++;
  assert_int_equal(rc, MP_EFULL);
  assert_non_null(strstr(mp_errdetail(), "memory cap"));
  assert_true(n > 800 && n < 1100);
  /* unbounded: full() stays 0 */
  assert_int_equal(mp_queue_full(q), 0);
  /* draining makes room again */
  for (int i = 0; i < n; i++) {
    size_t len;
    MP_ASSERT_OK(mp_queue_get_bytes_into(q, item, sizeof item, &len, 0));
  }
  MP_ASSERT_OK(mp_queue_put_bytes(q, item, sizeof item, 0));
  mp_queue_free(q);
}

static int
mul(mp_obj *args, mp_obj **out)
{
  int64_t a, b;
  if (mp_int_get(mp_seq_item(args, 0), &a) || mp_int_get(mp_seq_item(args, 1), &b))
    return MP_EINVAL;
  *out = mp_int_new(a * b);
  return 0;
}

/* Handles and function values inside items arrive working. */
static void
test_handles_and_functions_in_items(void **state)
{
  mp_queue *q, *inner;
  mp_lock *l;
  mp_conn *r, *w;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  MP_ASSERT_OK(mp_queue_new(&inner, NULL));
  MP_ASSERT_OK(mp_lock_new(&l));
  mp_test_pipe(&r, &w, 0);
  MP_ASSERT_OK(mp_queue_put_bytes(inner, "inside", 6, 0));
  mp_obj *item = MP_TUPLE(mp_lock_obj(l), mp_conn_obj(w), mp_queue_obj(inner),
                          MP_FUNC(mul));
  assert_non_null(item);
  MP_ASSERT_OK(mp_queue_put(q, item, 0));
  MP_ASSERT_OK(mp_queue_put(q, item, 0));
  mp_obj_free(item);
  /* the first through get_bytes: its descriptors are closed */
  void *p;
  size_t n;
  MP_ASSERT_OK(mp_queue_get_bytes(q, &p, &n, 0));
  mp_free(p);
  mp_obj *got;
  MP_ASSERT_OK(mp_queue_get(q, &got, 0));
  mp_lock *l2 = mp_lock_from_obj(mp_seq_item(got, 0));
  mp_conn *w2 = mp_conn_from_obj(mp_seq_item(got, 1));
  mp_queue *q2 = mp_queue_from_obj(mp_seq_item(got, 2));
  assert_non_null(l2);
  assert_non_null(w2);
  assert_non_null(q2);
  MP_ASSERT_OK(mp_lock_acquire(l2, 0));
  assert_int_equal(mp_lock_locked(l), 1);
  MP_ASSERT_OK(mp_lock_release(l));
  MP_ASSERT_OK(mp_conn_send_bytes(w2, "ping", 4));
  MP_ASSERT_OK(mp_conn_recv_bytes(r, &p, &n, 0, 5));
  assert_memory_equal(p, "ping", 4);
  mp_free(p);
  MP_ASSERT_OK(mp_queue_get_bytes(q2, &p, &n, 0));
  assert_memory_equal(p, "inside", 6);
  mp_free(p);
  assert_int_equal(mp_queue_qsize(inner), 0);
  mp_fn fn = mp_func_get(mp_seq_item(got, 3));
  assert_non_null(fn);
  mp_obj *args = MP_TUPLE(mp_int_new(6), mp_int_new(7)), *res = NULL;
  MP_ASSERT_OK(((int (*)(mp_obj *, mp_obj **))fn)(args, &res));
  int64_t v;
  MP_ASSERT_OK(mp_int_get(res, &v));
  assert_int_equal(v, 42);
  mp_obj_free(res);
  mp_obj_free(args);
  mp_obj_free(got);
  mp_conn_free(r);
  mp_conn_free(w);
  mp_lock_free(l);
  mp_queue_free(inner);
  mp_queue_free(q);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_put_get_bytes_fifo),
    cmocka_unit_test(test_get_bytes_into_empty),
    cmocka_unit_test(test_every_small_length),
    cmocka_unit_test(test_put_get_objects_both_ways),
    cmocka_unit_test(test_bounded_queue),
    cmocka_unit_test(test_errors),
    cmocka_unit_test(test_joinable),
    cmocka_unit_test(test_batches),
    cmocka_unit_test(test_segments_grow_and_are_reused),
    cmocka_unit_test(test_memory_cap),
    cmocka_unit_test(test_handles_and_functions_in_items),
};

MP_TEST_MAIN(tests)
