/* SPDX-License-Identifier: MIT */
/* Queues kept for reuse (queue.c): a queue freed with
 * mp__queue_free_private (its owner vouches no other process holds it: a
 * pool's own queues) keeps its file and mapping for the next queue of the
 * same shape, which starts as a new queue does -- empty, its own options,
 * nothing of the old contents readable; a queue freed with mp_queue_free,
 * or one that grew, is never kept; a fork child drops what it inherited. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "queue/queue_internal.h"

static void
put_pattern(mp_queue *q, int n)
{
  uint8_t buf[3000];
  memset(buf, 0xab, sizeof buf);
  for (int i = 0; i < n; i++)
    MP_ASSERT_OK(mp_queue_put_bytes(q, buf, sizeof buf, 0));
}

static int
count_byte(const uint8_t *p, size_t n, uint8_t v)
{
  int c = 0;
  for (size_t i = 0; i < n; i++)
    c += p[i] == v;
  return c;
}

/* Put w's handle through q, take it out and write through what came out:
 * it must reach r, w's reader. */
static void
assert_conn_travels(mp_queue *q, mp_conn *w, mp_conn *r)
{
  mp_obj *item = mp_conn_obj(w);
  assert_non_null(item);
  MP_ASSERT_OK(mp_queue_put(q, item, 0));
  mp_obj_free(item);
  mp_obj *o;
  MP_ASSERT_OK(mp_queue_get(q, &o, 0));
  mp_conn *got = mp_conn_from_obj(o);
  assert_non_null(got);
  MP_ASSERT_OK(mp_conn_send_bytes(got, "ping", 4));
  mp_test_recv_expect(r, "ping", 4, 5);
  mp_obj_free(o);
}

static void
test_kept_queue_starts_new(void **state)
{
  (void)state;
  mp__queue_cache_trim();
  mp_queue *a;
  MP_ASSERT_OK(mp_queue_new(&a, NULL));
  put_pattern(a, 50); /* left in it */
  void *out;
  size_t len;
  MP_ASSERT_OK(mp_queue_get_bytes(a, &out, &len, 0));
  mp_free(out);
  uint8_t *base_a, *base_b;
  size_t len_a, len_b;
  mp__queue_mem_for_tests(a, &base_a, &len_a);
  assert_true(count_byte(base_a, len_a, 0xab) > 100000);
  mp__queue_free_private(a);
  assert_int_equal(mp__queue_cache_count(), 1);

  /* the next queue of that shape is it, with its own options */
  mp_queue *b;
  MP_ASSERT_OK(mp_queue_new(&b, &(mp_queue_opts){.maxsize = 2,
                                                  .joinable = 1}));
  assert_int_equal(mp__queue_cache_count(), 0);
  mp__queue_mem_for_tests(b, &base_b, &len_b);
  assert_ptr_equal(base_b, base_a);
  /* nothing of the old contents shows through */
  assert_int_equal(count_byte(base_b, len_b, 0xab), 0);
  assert_int_equal(mp_queue_qsize(b), 0);
  MP_ASSERT_ERR(mp_queue_get_bytes(b, &out, &len, 0), MP_EEMPTY);
  MP_ASSERT_ERR(mp_queue_task_done(b), MP_ESTATE);
  MP_ASSERT_OK(mp_queue_put_bytes(b, "x", 1, 0));
  MP_ASSERT_OK(mp_queue_put_bytes(b, "yz", 2, 0));
  MP_ASSERT_ERR(mp_queue_put_bytes(b, "w", 1, 0), MP_EFULL);
  MP_ASSERT_OK(mp_queue_get_bytes(b, &out, &len, 0));
  assert_int_equal(len, 1);
  assert_memory_equal(out, "x", 1);
  mp_free(out);
  MP_ASSERT_OK(mp_queue_task_done(b));
  MP_ASSERT_ERR(mp_queue_join(b, 0), MP_ETIMEDOUT);
  MP_ASSERT_OK(mp_queue_get_bytes(b, &out, &len, 0));
  assert_int_equal(len, 2);
  mp_free(out);
  MP_ASSERT_OK(mp_queue_task_done(b));
  MP_ASSERT_OK(mp_queue_join(b, 0));
  /* items carrying descriptors still travel (new sockets) */
  mp_conn *r, *w;
  mp_test_pipe(&r, &w, 0);
  assert_conn_travels(b, w, r);
  mp_conn_free(r);
  mp_conn_free(w);
  mp_queue_free(b);
  assert_int_equal(mp__queue_cache_count(), 0);
}

/* Pages of the mapping [base, base + len) in memory. */
static size_t
resident_pages(uint8_t *base, size_t len)
{
  size_t page = (size_t)sysconf(_SC_PAGESIZE), n = (len + page - 1) / page;
  unsigned char *v = malloc(n);
  assert_non_null(v);
  assert_int_equal(mincore(base, len, v), 0);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    k += v[i] & 1;
  free(v);
  return k;
}

/* A queue that carried little (a pool's sentinels) keeps its few pages and
 * has them zeroed, rather than the file punched back to a hole (a TLB
 * flush on every CPU): the next queue still reads all zero. */
static void
test_lightly_used_kept_queue_reads_zero(void **state)
{
  (void)state;
  mp__queue_cache_trim();
  mp_queue *a;
  MP_ASSERT_OK(mp_queue_new(&a, NULL));
  uint8_t item[200];
  memset(item, 0xab, sizeof item);
  for (int i = 0; i < 5; i++)
    MP_ASSERT_OK(mp_queue_put_bytes(a, item, sizeof item, 0));
  void *out;
  size_t len;
  MP_ASSERT_OK(mp_queue_get_bytes(a, &out, &len, 0)); /* 4 left in it */
  mp_free(out);
  uint8_t *base_a, *base_b;
  size_t len_a, len_b;
  mp__queue_mem_for_tests(a, &base_a, &len_a);
  /* (only where the items are: reading a page of the file makes it data) */
  size_t used = 2 * MP__Q_PAGE;
  assert_int_equal(resident_pages(base_a, len_a), 2);
  assert_true(count_byte(base_a, used, 0xab) >= 4 * (int)sizeof item);
  mp__queue_free_private(a);
  assert_int_equal(mp__queue_cache_count(), 1);
  /* kept, still mapped: its two pages stay in memory, all zero now */
  assert_int_equal(resident_pages(base_a, len_a), 2);
  assert_int_equal(count_byte(base_a, used, 0), (int)used);
  mp_queue *b;
  MP_ASSERT_OK(mp_queue_new(&b, NULL));
  mp__queue_mem_for_tests(b, &base_b, &len_b);
  assert_ptr_equal(base_b, base_a);
  /* it reads as a new queue does: the bytes its header set, zero
   * elsewhere */
  assert_int_equal(count_byte(base_b, len_b, 0xab), 0);
  /* the ring, after the header page, is byte for byte a new queue's */
  mp_queue *fresh;
  MP_ASSERT_OK(mp_queue_new(&fresh, NULL)); /* none kept: a new file */
  uint8_t *base_f;
  size_t len_f;
  mp__queue_mem_for_tests(fresh, &base_f, &len_f);
  assert_int_equal(len_f, len_b);
  assert_memory_equal(base_b + MP__Q_PAGE, base_f + MP__Q_PAGE,
                      len_b - MP__Q_PAGE);
  mp_queue_free(fresh);
  assert_int_equal(mp_queue_qsize(b), 0);
  MP_ASSERT_ERR(mp_queue_get_bytes(b, &out, &len, 0), MP_EEMPTY);
  MP_ASSERT_OK(mp_queue_put_bytes(b, "x", 1, 0));
  MP_ASSERT_OK(mp_queue_get_bytes(b, &out, &len, 0));
  assert_int_equal(len, 1);
  assert_memory_equal(out, "x", 1);
  mp_free(out);
  mp_queue_free(b);
}

/* An item carrying a descriptor that nobody took: its message waits in
 * the queue's socket, so the sockets are made again, and the next queue's
 * first descriptor is its own item's, not the old one. */
static void
test_old_descriptors_never_reach_a_kept_queue(void **state)
{
  (void)state;
  mp__queue_cache_trim();
  mp_conn *r1, *w1, *r2, *w2;
  mp_test_pipe(&r1, &w1, 0);
  mp_test_pipe(&r2, &w2, 0);
  mp_queue *a, *b;
  MP_ASSERT_OK(mp_queue_new(&a, NULL));
  mp_obj *item = mp_conn_obj(w1);
  MP_ASSERT_OK(mp_queue_put(a, item, 0));
  mp_obj_free(item);
  mp__queue_free_private(a); /* the item was never taken */
  assert_int_equal(mp__queue_cache_count(), 1);
  MP_ASSERT_OK(mp_queue_new(&b, NULL));
  assert_int_equal(mp__queue_cache_count(), 0);
  assert_conn_travels(b, w2, r2); /* w2's, not the old w1 */
  assert_int_equal(mp_conn_poll(r1, 0), 0); /* nothing went to w1's */
  mp_queue_free(b);
  mp_conn_free(r1);
  mp_conn_free(w1);
  mp_conn_free(r2);
  mp_conn_free(w2);
}

static void
test_public_free_and_grown_queues_are_not_kept(void **state)
{
  (void)state;
  mp__queue_cache_trim();
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  mp_queue_free(q); /* another process may hold it */
  assert_int_equal(mp__queue_cache_count(), 0);
  /* a queue whose file grew past its first segment */
  MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){.segment_size = 65536}));
  put_pattern(q, 100);
  mp__queue_free_private(q);
  assert_int_equal(mp__queue_cache_count(), 0);
  /* a reference still held keeps it alive, unkept */
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  mp_queue_ref(q);
  mp__queue_free_private(q);
  assert_int_equal(mp__queue_cache_count(), 0);
  MP_ASSERT_OK(mp_queue_put_bytes(q, "a", 1, 0));
  mp__queue_free_private(q);
  assert_int_equal(mp__queue_cache_count(), 1);
  /* another shape does not take it */
  MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){.segment_size = 65536}));
  assert_int_equal(mp__queue_cache_count(), 1);
  mp_queue_free(q);
  mp__queue_cache_trim();
  assert_int_equal(mp__queue_cache_count(), 0);
}

static void
test_fork_child_drops_kept_queues(void **state)
{
  (void)state;
  mp__queue_cache_trim();
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  mp__queue_free_private(q);
  assert_int_equal(mp__queue_cache_count(), 1);
  pid_t pid = fork();
  if (pid == 0) {
    if (mp__queue_cache_count() != 0)
      _exit(2);
    mp_queue *c; /* a queue of its own, new */
    if (mp_queue_new(&c, NULL) || mp_queue_put_bytes(c, "z", 1, 0))
      _exit(3);
    mp_queue_free(c);
    _exit(0);
  }
  assert_true(pid > 0);
  assert_int_equal(mp_test_wait_child(pid, 30), 0);
  assert_int_equal(mp__queue_cache_count(), 1);
  mp__queue_cache_trim();
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_kept_queue_starts_new),
    cmocka_unit_test(test_lightly_used_kept_queue_reads_zero),
    cmocka_unit_test(test_old_descriptors_never_reach_a_kept_queue),
    cmocka_unit_test(test_public_free_and_grown_queues_are_not_kept),
    cmocka_unit_test(test_fork_child_drops_kept_queues),
};

MP_TEST_MAIN(tests)
