/* SPDX-License-Identifier: MIT */
/* Items holding big bytes and str payloads: a put pickles them in place
 * (MP__PICKLE_INPLACE_MIN and up are copied once, from the object into the
 * ring).  What lands in the ring must be byte for byte the pickle
 * mp_pickle_dumps writes, for payloads on both sides of the threshold, in
 * any position, shared, nested, one put or a batch; the limits still count
 * the whole pickle; and a producer SIGKILLed at random instants inside such
 * puts (every start method, a bounded loop) leaves only whole items. */
#include "testutil.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* Take the next item's stored bytes and compare them with item's pickle. */
static void
get_expect_pickle(mp_queue *q, const mp_obj *item)
{
  void *got;
  size_t len;
  MP_ASSERT_OK(mp_queue_get_bytes(q, &got, &len, 0));
  expect_same_pickle(got, len, item);
  mp_free(got);
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
    get_expect_pickle(q, item);
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
    get_expect_pickle(q, items[k]);
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

/* ---- a producer SIGKILLed at random instants inside such puts ---------- */

enum { KILL_ROUNDS = 30 };

/* Item seq: (seq, bytes of 64..128 KiB derived from seq). */
static size_t
kill_len(int64_t seq)
{
  return MP__PICKLE_INPLACE_MIN + (size_t)(seq * 7919) % (64 * 1024);
}

static void
kill_fill(uint8_t *b, size_t len, int64_t seq)
{
  for (size_t i = 0; i < len; i++)
    b[i] = (uint8_t)(i * 31 + (size_t)seq * 17 + (i >> 12));
}

/* args: (queue, first seq); puts until killed */
static int
big_producer(mp_obj *args)
{
  mp_queue *q = mp_queue_from_obj(mp_seq_item(args, 0));
  int64_t seq;
  if (!q || mp_int_get(mp_seq_item(args, 1), &seq))
    return 10;
  uint8_t *b = malloc(MP__PICKLE_INPLACE_MIN + 64 * 1024);
  if (!b)
    return 11;
  for (;; seq++) {
    size_t len = kill_len(seq);
    kill_fill(b, len, seq);
    mp_obj *item = MP_TUPLE(mp_int_new(seq), mp_bytes_new(b, len),
                            mp_str_new("tail"));
    if (!item)
      return 12;
    int rc = mp_queue_put(q, item, 5);
    mp_obj_free(item);
    if (rc != 0)
      return 13;
  }
}

/* 0 if o is a whole item; its seq in *seq. */
static int
kill_check(const mp_obj *o, int64_t *seq, uint8_t *want)
{
  const void *d;
  size_t len;
  const char *tail;
  size_t tl;
  if (mp_int_get(mp_seq_item(o, 0), seq) ||
      mp_bytes_get(mp_seq_item(o, 1), &d, &len) ||
      mp_str_get(mp_seq_item(o, 2), &tail, &tl) || strcmp(tail, "tail") ||
      len != kill_len(*seq))
    return 1;
  kill_fill(want, len, *seq);
  return memcmp(d, want, len) != 0;
}

static void
test_kill_producer_inside_big_puts(void **state)
{
  (void)state;
  uint8_t *want = malloc(MP__PICKLE_INPLACE_MIN + 64 * 1024);
  assert_non_null(want);
  unsigned seed = (unsigned)time(NULL);
  print_message("seed %u\n", seed);
  srand(seed);
  for (const char *const *m = mp_test_start_methods; *m; m++) {
    mp_context *ctx;
    MP_ASSERT_OK(mp_get_context(*m, &ctx));
    mp_queue *q; /* bounded: the producer keeps putting while we take */
    MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){.maxsize = 4}));
    int64_t next = 0; /* the seq the next whole item must carry, per round */
    long got = 0;
    int mid_copy = 0;
    for (int round = 0; round < KILL_ROUNDS; round++) {
      int64_t first = (int64_t)round * 1000000;
      mp_obj *args = MP_TUPLE(mp_queue_obj(q), mp_int_new(first));
      mp_process *p;
      MP_ASSERT_OK(mp_process_new(
          &p, ctx, &(mp_process_opts){.target = big_producer, .args = args}));
      mp_obj_free(args);
      MP_ASSERT_OK(mp_process_start(p));
      next = first;
      /* take a random number of items, then kill it mid-stream */
      int take = 1 + rand() % 40;
      for (int i = 0; i < take; i++) {
        mp_obj *o;
        MP_ASSERT_OK(mp_queue_get(q, &o, 30));
        int64_t seq;
        if (kill_check(o, &seq, want) || seq != next)
          fail_msg("%s round %d: item %d torn or out of order (seq %lld, "
                   "expected %lld)", *m, round, i, (long long)seq,
                   (long long)next);
        next++;
        got++;
        mp_obj_free(o);
      }
      /* the get just made room: the producer is inside its next put (a
       * 64..128 KiB copy takes tens of microseconds) */
      struct timespec ts = {0, (long)(rand() % 60) * 1000};
      nanosleep(&ts, NULL);
      MP_ASSERT_OK(mp_process_kill(p));
      MP_ASSERT_OK(mp_process_join(p, 30));
      int code = 0;
      MP_ASSERT_OK(mp_process_exitcode(p, &code));
      if (code != -SIGKILL)
        fail_msg("%s: the producer ended with %d before the kill", *m, code);
      mp_process_free(p);
      /* what it left: whole items in order, the one being put whole or
       * absent, and the queue still working */
      mp_obj *o;
      int rc;
      while ((rc = mp_queue_get(q, &o, 0)) == 0) {
        int64_t seq;
        if (kill_check(o, &seq, want) || seq != next)
          fail_msg("%s round %d: a leftover is torn or out of order", *m,
                   round);
        next++;
        mp_obj_free(o);
      }
      MP_ASSERT_ERR(rc, MP_EEMPTY);
      if (mp_queue_qsize(q) != 0) {
        /* killed inside the copy: its claim counts until a waiting get
         * finds the owner dead (a liveness slice) and pads the record */
        assert_int_equal(mp_queue_qsize(q), 1);
        MP_ASSERT_ERR(mp_queue_get(q, &o, 1.0), MP_EEMPTY);
        mid_copy++;
      }
      assert_int_equal(mp_queue_qsize(q), 0);
    }
    print_message("%s: %d of %d kills landed inside a put's copy\n", *m,
                  mid_copy, KILL_ROUNDS);
    assert_true(got >= KILL_ROUNDS);
    mp_queue_free(q);
  }
  free(want);
}

/* The get side: a big item's pickle is copied out of the ring into a block
 * of the big-block cache, not a fresh malloc (a fresh mapping of a
 * megabyte, faulted in page by page, at every get): after a get and a
 * free, the cache holds both the copy and the decoded payload's block, and
 * the next get of the same size takes them back. */
static void
test_get_copies_big_items_into_cached_blocks(void **state)
{
  (void)state;
  enum { LEN = 1 << 20 };
  if (!mp_test_big_cache_on())
    skip(); /* every block is malloc's (AddressSanitizer) */
  assert_int_equal(mp__big_cached_bytes(), 0);
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  mp_obj *item = big_bytes(LEN, 7), *got = NULL;
  MP_ASSERT_OK(mp_queue_put(q, item, MP_FOREVER));
  MP_ASSERT_OK(mp_queue_get(q, &got, MP_FOREVER));
  assert_true(mp_obj_equal(item, got) == 1);
  mp_obj_free(got);
  size_t cached = mp__big_cached_bytes();
  assert_true(cached >= 2 * (size_t)LEN);
  MP_ASSERT_OK(mp_queue_put(q, item, MP_FOREVER));
  MP_ASSERT_OK(mp_queue_get(q, &got, MP_FOREVER));
  assert_true(mp_obj_equal(item, got) == 1);
  /* the copy went back, the payload's block is the object's */
  assert_true(mp__big_cached_bytes() < cached);
  mp_obj_free(got);
  assert_int_equal(mp__big_cached_bytes(), cached);
  mp_obj_free(item);
  mp_queue_free(q);
  mp__big_trim();
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_put_writes_the_same_pickle),
    cmocka_unit_test(test_put_many_writes_the_same_pickles),
    cmocka_unit_test(test_limit_counts_the_whole_pickle),
    cmocka_unit_test(test_kill_producer_inside_big_puts),
    cmocka_unit_test(test_get_copies_big_items_into_cached_blocks),
};

MP_TEST_MAIN(tests)
