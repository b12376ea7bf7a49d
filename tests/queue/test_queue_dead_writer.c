/* SPDX-License-Identifier: MIT */
/* A record whose writer died while copying is skipped whole, and a record
 * whose writer committed at the instant it was judged dead (and then
 * exited) is delivered: padding is a compare-and-swap from the very WRITING
 * word judged, never a store (an unconditional store lost ~1 item in 4
 * rounds of put-and-exit under load).  A writer killed after its publish
 * and before its wake-up leaves no consumer asleep: the slice (a timed
 * wait, or the process's slice clock) ends the sleep. */
#include "testutil.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "queue/queue_internal.h"

/* A pid that is certainly dead now: a child that exited and was reaped. */
static uint32_t
dead_pid(void)
{
  pid_t pid = fork();
  if (pid == 0)
    _exit(0);
  assert_int_equal(mp_test_wait_child(pid, 10), 0);
  return (uint32_t)pid;
}

/* Claim a record of `len` bytes as a dead producer would leave it: the
 * payload written, the word WRITING with the dead pid. */
static struct mp__qrec *
claim_as_dead(mp_queue *q, const char *payload, uint32_t len, uint32_t pid)
{
  mp__qclaim c;
  MP_ASSERT_OK(mp__q_put_lock(q, MP__NO_DEADLINE));
  MP_ASSERT_OK(mp__q_claim(q, len, 0, &c));
  mp__q_put_unlock(q);
  memcpy(c.payload, payload, len);
  atomic_store(&c.rec->w, MP__QW_MAKE(MP__QR_WRITING, 0, pid, len));
  atomic_store(&c.rec->aux, (uint64_t)pid << 40);
  return c.rec;
}

static void
test_dead_writer_is_skipped(void **state)
{
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, &(mp_queue_opts){.joinable = 1}));
  claim_as_dead(q, "lost", 4, dead_pid());
  MP_ASSERT_OK(mp_queue_put_bytes(q, "kept", 4, 0));
  assert_int_equal(mp_queue_qsize(q), 2); /* the claim counts until seen */
  void *p;
  size_t n;
  /* within a liveness slice the dead writer is seen, its record skipped */
  MP_ASSERT_OK(mp_queue_get_bytes(q, &p, &n, 5));
  assert_int_equal(n, 4);
  assert_memory_equal(p, "kept", 4);
  mp_free(p);
  assert_int_equal(mp_queue_qsize(q), 0);
  /* the skipped item is not unfinished: one task_done finishes the queue */
  MP_ASSERT_OK(mp_queue_task_done(q));
  MP_ASSERT_OK(mp_queue_join(q, 0));
  MP_ASSERT_ERR(mp_queue_task_done(q), MP_ESTATE);
  mp_queue_free(q);
}

/* The writer commits between the verdict and the padding. */
static void
commit_now(struct mp__qrec *rec)
{
  uint64_t w = atomic_load(&rec->w);
  if (MP__QW_STATE(w) == MP__QR_WRITING)
    atomic_store(&rec->w, MP__QW_MAKE(MP__QR_READY, 0, 0, MP__QW_LEN(w)));
}

static void
test_writer_committing_at_the_verdict_keeps_its_item(void **state)
{
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  claim_as_dead(q, "mine", 4, dead_pid());
  mp__q_pad_hook_for_tests = commit_now;
  void *p = NULL;
  size_t n = 0;
  int rc = mp_queue_get_bytes(q, &p, &n, 5);
  mp__q_pad_hook_for_tests = NULL;
  MP_ASSERT_OK(rc);
  assert_int_equal(n, 4);
  assert_memory_equal(p, "mine", 4);
  mp_free(p);
  assert_int_equal(mp_queue_qsize(q), 0);
  mp_queue_free(q);
}

/* A producer killed after any prefix of its journals' stores -- a claim in
 * the same segment, a claim that opens a segment, a recycling -- leaves a
 * queue a consumer reads as empty (never as corrupt), and the next producer
 * completes it: its item arrives and the dead one's never-committed item
 * does not.  Each cut is taken in a real child that exits there. */
static void
test_producer_killed_inside_a_journal(void **state)
{
  static const size_t sizes[] = {100, 1u << 20}; /* same segment, new one */
  char *item = calloc(1, 1u << 20), *got = malloc(1u << 20);
  assert_non_null(item);
  assert_non_null(got);
  for (size_t si = 0; si < 2; si++) {
    size_t len = sizes[si];
    mp_queue *q;
    MP_ASSERT_OK(mp_queue_new(&q, NULL));
    int cuts = 0;
    for (int k = 1; k <= 40; k++) {
      /* the consumer waits at the end of what was put so far */
      memset(item, 'a', len);
      MP_ASSERT_OK(mp_queue_put_bytes(q, item, len, 0));
      size_t n;
      MP_ASSERT_OK(mp_queue_get_bytes_into(q, got, len, &n, 0));
      pid_t pid = fork();
      assert_true(pid >= 0);
      if (pid == 0) {
        mp__q_die_in_journal_for_tests = k;
        memset(item, 'b', len);
        _exit(mp_queue_put_bytes(q, item, len, 0) == 0 ? 3 : 4);
      }
      int code = mp_test_wait_child(pid, 30);
      assert_true(code == 0 || code == 3);
      cuts += code == 0;
      /* nothing committed to read, whatever the cut: empty, not corrupt */
      if (code == 0) {
        MP_ASSERT_ERR(mp_queue_get_bytes_into(q, got, len, &n, 0), MP_EEMPTY);
        MP_ASSERT_ERR(mp_queue_get_bytes_into(q, got, len, &n, 0.05),
                      MP_EEMPTY);
      }
      memset(item, 'c', len);
      MP_ASSERT_OK(mp_queue_put_bytes(q, item, len, 0));
      if (code == 3) { /* the child's put completed: its item first */
        MP_ASSERT_OK(mp_queue_get_bytes_into(q, got, len, &n, 5));
        assert_int_equal(n, len);
        assert_int_equal(got[0], 'b');
      }
      MP_ASSERT_OK(mp_queue_get_bytes_into(q, got, len, &n, 5));
      assert_int_equal(n, len);
      assert_int_equal(got[0], 'c');
      assert_int_equal(got[len - 1], 'c');
      assert_int_equal(mp_queue_qsize(q), 0);
    }
    /* every store of the claim journals was a cut point */
    assert_true(cuts >= 6);
    mp_queue_free(q);
  }
  free(item);
  free(got);
}

/* A consumer killed after any prefix of its take journal: the next
 * consumer finishes the take (the item is the dead one's, lost) or finds
 * it untaken; the items behind it arrive, and the counts agree. */
static void
test_consumer_killed_inside_a_journal(void **state)
{
  static const size_t sizes[] = {100, 1u << 20};
  char *item = calloc(1, 1u << 20), *got = malloc(1u << 20);
  assert_non_null(item);
  assert_non_null(got);
  for (size_t si = 0; si < 2; si++) {
    size_t len = sizes[si], n;
    mp_queue *q;
    MP_ASSERT_OK(mp_queue_new(&q, NULL));
    int cuts = 0;
    for (int k = 1; k <= 20; k++) {
      memset(item, 'a', len);
      MP_ASSERT_OK(mp_queue_put_bytes(q, item, len, 0));
      memset(item, 'b', len);
      MP_ASSERT_OK(mp_queue_put_bytes(q, item, len, 0));
      pid_t pid = fork();
      assert_true(pid >= 0);
      if (pid == 0) {
        mp__q_die_in_journal_for_tests = k;
        _exit(mp_queue_get_bytes_into(q, got, len, &n, 0) == 0 ? 3 : 4);
      }
      int code = mp_test_wait_child(pid, 30);
      assert_true(code == 0 || code == 3);
      cuts += code == 0;
      MP_ASSERT_OK(mp_queue_get_bytes_into(q, got, len, &n, 5));
      assert_int_equal(n, len);
      if (got[0] == 'a') { /* the cut came before the take was published */
        assert_int_equal(code, 0);
        MP_ASSERT_OK(mp_queue_get_bytes_into(q, got, len, &n, 5));
      }
      assert_int_equal(got[0], 'b');
      assert_int_equal(got[len - 1], 'b');
      MP_ASSERT_ERR(mp_queue_get_bytes_into(q, got, len, &n, 0), MP_EEMPTY);
      assert_int_equal(mp_queue_qsize(q), 0);
    }
    assert_true(cuts >= 3);
    mp_queue_free(q);
  }
  free(item);
  free(got);
}

/* ---- a producer killed between its publish and its wake-up ---------------- */

typedef struct getter {
  mp_queue *q;
  _Atomic int back;
  int rc;
  char buf[16];
  size_t n;
} getter;

static void *
get_forever(void *arg)
{
  getter *g = arg;
  g->rc = mp_queue_get_bytes_into(g->q, g->buf, sizeof g->buf, &g->n,
                                  MP_FOREVER);
  atomic_store(&g->back, 1);
  return NULL;
}

/* A consumer asleep in get(MP_FOREVER) on an empty queue; a producer
 * process publishes an item and dies before waking anyone.  The consumer
 * must still get it, within about a slice (here: 10 s at most; then the
 * test wakes it with a put and fails). */
static int
lost_wake_round(void)
{
  mp_queue *q;
  if (mp_queue_new(&q, NULL))
    return 1;
  getter g = {.q = q};
  pthread_t t;
  if (pthread_create(&t, NULL, get_forever, &g))
    return 2;
  while (atomic_load(&q->h->get_waiters) == 0)
    usleep(1000);
  usleep(20000); /* past its last look, asleep */
  pid_t pid = fork();
  if (pid == 0) {
    mp__qclaim c;
    if (mp__q_put_lock(q, MP__NO_DEADLINE) || mp__q_claim(q, 4, 0, &c))
      _exit(1);
    mp__q_put_unlock(q);
    memcpy(c.payload, "item", 4);
    _exit(mp__q_commit_quiet(&c) ? 2 : 0); /* and no mp__q_wake_consumer */
  }
  int bad = mp_test_wait_child(pid, 30) != 0 ? 3 : 0;
  double end = mp_test_now() + 10;
  while (!atomic_load(&g.back) && mp_test_now() < end)
    usleep(2000);
  if (!atomic_load(&g.back)) {
    bad = 4; /* asleep for ever: wake it to end the test */
    mp_queue_put_bytes(q, "rescue", 6, 0);
  }
  pthread_join(t, NULL);
  if (!bad && (g.rc != 0 || g.n != 4 || memcmp(g.buf, "item", 4) != 0))
    bad = 5;
  mp_queue_free(q);
  return bad;
}

static void
test_producer_killed_between_publish_and_wake(void **state)
{
  (void)state;
  /* before a process's slice clock runs: timed slices */
  pid_t pid = fork();
  if (pid == 0) {
    __atomic_store_n(&mp__slice_clock_after, 1 << 30, __ATOMIC_RELAXED);
    int rc = lost_wake_round();
    _exit(rc ? rc : mp__slice_clock_state() != 0 ? 6 : 0);
  }
  assert_int_equal(mp_test_wait_child(pid, 60), 0);
  /* and with it: untimed sleeps the clock's tick ends */
  int after = mp__slice_clock_after;
  __atomic_store_n(&mp__slice_clock_after, 0, __ATOMIC_RELAXED);
  assert_int_equal(lost_wake_round(), 0);
  assert_int_not_equal(mp__slice_clock_state(), 0);
  __atomic_store_n(&mp__slice_clock_after, after, __ATOMIC_RELAXED);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_dead_writer_is_skipped),
    cmocka_unit_test(test_writer_committing_at_the_verdict_keeps_its_item),
    cmocka_unit_test(test_producer_killed_inside_a_journal),
    cmocka_unit_test(test_consumer_killed_inside_a_journal),
    cmocka_unit_test(test_producer_killed_between_publish_and_wake),
};

MP_TEST_MAIN(tests)
