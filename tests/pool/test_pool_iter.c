/* SPDX-License-Identifier: MIT */
/* imap and imap_unordered over an item callback (mp_pool_imap_iter) under
 * every start method: results in order / as a set, chunks, the window
 * (never more than max_inflight items taken and not handed out; for
 * imap_unordered never more than max_inflight positions past the oldest
 * one not handed out), an error from the callback and from a task, an
 * empty source, releasing early, the pool freed first, bad input. */
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proc/proc_internal.h"

#define MP_ERANGE_TEST (-ERANGE) /* the source's own failure */

static int
square(mp_obj *args, mp_obj **result)
{
  int64_t x;
  int rc = mp_int_get(mp_seq_item(args, 0), &x);
  if (rc)
    return rc;
  if (x == 0) { /* item 0 is slow: imap_unordered's window waits on it */
    struct timespec ts = {0, 100 * 1000000};
    nanosleep(&ts, NULL);
  }
  if (x == -3)
    return mp_seterr(MP_EINVAL, "no negative threes");
  *result = mp_int_new(x * x);
  return 0;
}

/* The source: 0, 1, ..., n-1 (fail_at: that position fails instead). */
typedef struct source {
  int64_t n, taken;
  int64_t fail_at;
  size_t window;
  int ordered;
  unsigned char *handed; /* by the test: positions handed out */
  int64_t over;          /* times the window was exceeded */
  int64_t calls_after_end;
  int ended;
} source;

static int64_t
oldest_unhanded(source *s)
{
  int64_t i = 0;
  while (i < s->taken && s->handed[i])
    i++;
  return i;
}

static int
next_item(void *arg, mp_obj **item)
{
  source *s = arg;
  if (s->ended) {
    s->calls_after_end++;
    return MP_EEOF;
  }
  if (s->taken == s->fail_at) {
    s->ended = 1;
    return mp_seterr(MP_ERANGE_TEST, "the source broke at %lld",
                     (long long)s->taken);
  }
  if (s->taken >= s->n) {
    s->ended = 1;
    return MP_EEOF;
  }
  /* the window: the item about to be taken must fit it */
  int64_t handed = 0;
  for (int64_t i = 0; i < s->taken; i++)
    handed += s->handed[i];
  if (s->ordered ? s->taken - handed >= (int64_t)s->window
                 : s->taken - oldest_unhanded(s) >= (int64_t)s->window)
    s->over++;
  *item = mp_int_new(s->taken++);
  return 0;
}

static source *
source_new(int64_t n, size_t window, int ordered)
{
  source *s = calloc(1, sizeof *s);
  s->n = n;
  s->fail_at = -1;
  s->window = window;
  s->ordered = ordered;
  s->handed = calloc((size_t)n + 2, 1);
  return s;
}

static void
source_free(source *s)
{
  free(s->handed);
  free(s);
}

static mp_pool *
new_pool(void **state, int n)
{
  mp_pool *p = NULL;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = n,
                                   .context = mp_test_context(state)}));
  return p;
}

static void
close_join(mp_pool *p)
{
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
}

/* Drain `it`, marking positions handed out; checks values are squares. */
static void
drain(mp_imap *it, source *s, int ordered, int64_t n)
{
  mp_obj *v;
  int rc;
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++)
    k += s->handed[i];
  while ((rc = mp_imap_next(it, &v, 60)) == 0) {
    int64_t x;
    MP_ASSERT_OK(mp_int_get(v, &x));
    mp_obj_free(v);
    int64_t i = 0;
    while (i * i < x)
      i++;
    assert_true(i * i == x && i < n);
    if (ordered)
      assert_int_equal(i, k);
    assert_false(s->handed[i]);
    s->handed[i] = 1;
    k++;
  }
  assert_int_equal(rc, MP_EEOF);
  assert_int_equal(k, n);
  /* MP_EEOF again, the callback not called again */
  assert_int_equal(mp_imap_next(it, &v, 0), MP_EEOF);
  assert_int_equal(s->calls_after_end, 0);
}

static void
test_ordered(void **state)
{
  mp_pool *p = new_pool(state, 2);
  source *s = source_new(500, 8, 1);
  mp_imap *it;
  MP_ASSERT_OK(mp_pool_imap_iter(p, square, next_item, s,
                                 &(mp_map_opts){.max_inflight = 8}, &it));
  /* nothing consumed yet: exactly the window was taken */
  assert_int_equal(s->taken, 8);
  drain(it, s, 1, 500);
  assert_int_equal(s->over, 0);
  mp_imap_free(it);
  source_free(s);
  /* chunks, the default window (4 x processes x chunksize) */
  s = source_new(3000, 4 * 2 * 50, 1);
  MP_ASSERT_OK(mp_pool_imap_iter(p, square, next_item, s,
                                 &(mp_map_opts){.chunksize = 50}, &it));
  assert_int_equal(s->taken, 400);
  drain(it, s, 1, 3000);
  assert_int_equal(s->over, 0);
  mp_imap_free(it);
  source_free(s);
  close_join(p);
}

static void
test_unordered(void **state)
{
  mp_pool *p = new_pool(state, 2);
  source *s = source_new(200, 6, 0);
  mp_imap *it;
  MP_ASSERT_OK(mp_pool_imap_unordered_iter(
      p, square, next_item, s, &(mp_map_opts){.max_inflight = 6}, &it));
  assert_int_equal(s->taken, 6);
  /* item 0 is slow: until it is handed out, no position past 5 is taken */
  mp_obj *v;
  for (int k = 0; k < 5; k++) {
    MP_ASSERT_OK(mp_imap_next(it, &v, 60));
    int64_t x;
    MP_ASSERT_OK(mp_int_get(v, &x));
    mp_obj_free(v);
    int64_t i = 0;
    while (i * i < x)
      i++;
    s->handed[i] = 1;
    if (!s->handed[0])
      assert_true(s->taken <= 6);
  }
  drain(it, s, 0, 200);
  mp_imap_free(it);
  assert_int_equal(s->over, 0);
  for (int i = 0; i < 200; i++)
    assert_true(s->handed[i]);
  source_free(s);
  close_join(p);
}

static void
test_errors(void **state)
{
  mp_pool *p = new_pool(state, 2);
  /* the source fails at 5: 0..4, its code with its text, then the end */
  source *s = source_new(100, 8, 1);
  s->fail_at = 5;
  mp_imap *it;
  MP_ASSERT_OK(mp_pool_imap_iter(p, square, next_item, s, NULL, &it));
  mp_obj *v;
  for (int k = 0; k < 5; k++) {
    MP_ASSERT_OK(mp_imap_next(it, &v, 60));
    int64_t x;
    MP_ASSERT_OK(mp_int_get(v, &x));
    assert_int_equal(x, k * k);
    mp_obj_free(v);
  }
  assert_int_equal(mp_imap_next(it, &v, 60), MP_ERANGE_TEST);
  assert_non_null(strstr(mp_errdetail(), "the source broke at 5"));
  assert_int_equal(mp_imap_next(it, &v, 60), MP_EEOF);
  assert_int_equal(s->calls_after_end, 0);
  mp_imap_free(it);
  source_free(s);
  close_join(p);
}

/* items -3, ..: a task error at its position, the rest go on */
static int64_t neg_next;
static int
negatives(void *arg, mp_obj **item)
{
  (void)arg;
  if (neg_next < -6)
    return MP_EEOF;
  *item = mp_int_new(neg_next--);
  return 0;
}

static void
test_task_error(void **state)
{
  mp_pool *p = new_pool(state, 2);
  neg_next = -1; /* -1 .. -6 */
  mp_imap *it;
  MP_ASSERT_OK(mp_pool_imap_iter(p, square, negatives, NULL,
                                 &(mp_map_opts){.chunksize = 2}, &it));
  mp_obj *v;
  for (int64_t x = -1; x >= -6; x--) {
    int rc = mp_imap_next(it, &v, 60);
    if (x == -3) {
      assert_int_equal(rc, MP_EINVAL);
      assert_non_null(strstr(mp_errdetail(), "no negative threes"));
      assert_non_null(strstr(mp_errdetail(), "PoolWorker-"));
    } else {
      MP_ASSERT_OK(rc);
      int64_t y;
      MP_ASSERT_OK(mp_int_get(v, &y));
      assert_int_equal(y, x * x);
      mp_obj_free(v);
    }
  }
  assert_int_equal(mp_imap_next(it, &v, 60), MP_EEOF);
  mp_imap_free(it);
  close_join(p);
}

static void
test_empty_and_early_release(void **state)
{
  mp_pool *p = new_pool(state, 2);
  source *s = source_new(0, 4, 1);
  mp_imap *it;
  mp_obj *v;
  MP_ASSERT_OK(mp_pool_imap_iter(p, square, next_item, s, NULL, &it));
  assert_int_equal(mp_imap_next(it, &v, 60), MP_EEOF);
  mp_imap_free(it);
  source_free(s);
  /* released after 3: taken no more; the pool still works and closes */
  s = source_new(1000000, 10, 1);
  MP_ASSERT_OK(mp_pool_imap_iter(p, square, next_item, s,
                                 &(mp_map_opts){.max_inflight = 10}, &it));
  for (int k = 0; k < 3; k++) {
    MP_ASSERT_OK(mp_imap_next(it, &v, 60));
    mp_obj_free(v);
  }
  mp_imap_free(it);
  assert_true(s->taken <= 13);
  int64_t taken = s->taken;
  mp_obj *out;
  mp_obj *seven = MP_TUPLE(mp_int_new(7));
  MP_ASSERT_OK(mp_pool_apply(p, square, seven, &out));
  mp_obj_free(seven);
  mp_obj_free(out);
  close_join(p);
  assert_int_equal(s->taken, taken);
  source_free(s);
}

static void
test_pool_freed_first(void **state)
{
  mp_pool *p = new_pool(state, 2);
  source *s = source_new(1000, 4, 1);
  mp_imap *it;
  MP_ASSERT_OK(mp_pool_imap_iter(p, square, next_item, s,
                                 &(mp_map_opts){.max_inflight = 4}, &it));
  mp_pool_free(p);
  /* what ran is there, the rest MP_ECLOSED, then the end: no hang */
  int rc, closed = 0, n = 0;
  mp_obj *v;
  while ((rc = mp_imap_next(it, &v, 60)) != MP_EEOF) {
    assert_true(rc == 0 || rc == MP_ECLOSED);
    closed += rc == MP_ECLOSED;
    mp_obj_free(v);
    assert_true(++n <= 10);
  }
  assert_true(closed >= 1);
  mp_imap_free(it);
  source_free(s);
}

static void
test_bad_args(void **state)
{
  mp_pool *p = new_pool(state, 1);
  source *s = source_new(10, 4, 1);
  mp_imap *it;
  MP_ASSERT_ERR(mp_pool_imap_iter(p, square, NULL, s, NULL, &it), MP_EINVAL);
  MP_ASSERT_ERR(mp_pool_imap_iter(p, NULL, next_item, s, NULL, &it),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_pool_imap_iter(NULL, square, next_item, s, NULL, &it),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_pool_imap_iter(p, square, next_item, s, NULL, NULL),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_pool_imap_unordered_iter(p, square, next_item, s,
                                            &(mp_map_opts){.progress = 1},
                                            &it),
                MP_ENOTSUP);
  MP_ASSERT_ERR(mp_pool_imap_iter(p, square, next_item, s,
                                  &(mp_map_opts){.chunksize = 8,
                                                 .max_inflight = 4},
                                  &it),
                MP_EINVAL);
  assert_int_equal(s->taken, 0);
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_ERR(mp_pool_imap_iter(p, square, next_item, s, NULL, &it),
                MP_ESTATE);
  assert_int_equal(s->taken, 0);
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
  source_free(s);
}

static const struct CMUnitTest tests[] = {
    MP_TEST_METHODS_THREADING(test_ordered),
    MP_TEST_METHODS_THREADING(test_unordered),
    MP_TEST_METHODS_THREADING(test_errors),
    MP_TEST_METHODS_THREADING(test_task_error),
    MP_TEST_METHODS_THREADING(test_empty_and_early_release),
    MP_TEST_METHODS_THREADING(test_pool_freed_first),
    MP_TEST_METHODS_THREADING(test_bad_args),
};

MP_TEST_MAIN(tests)
