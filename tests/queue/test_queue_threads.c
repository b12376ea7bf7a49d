/* SPDX-License-Identifier: MIT */
/* Several threads of one process put and get on one queue at once
 * (put_bytes, put_many_bytes, get_bytes, get_many_bytes), while a fork
 * child -- forked with the threads running -- puts too: every item arrives
 * once, each producer's items reach each consumer thread in order, and the
 * totals add up.  Run again under ThreadSanitizer (tests/tsan-tests.txt). */
#define _GNU_SOURCE
#include "testutil.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "queue/queue_internal.h"

#define NPROD 3
#define NCONS 3
#define PER 20000
#define CHILD_ID NPROD
#define CHILD_N 5000

typedef struct shared {
  mp_queue *q;
  _Atomic uint64_t got;
  _Atomic uint64_t sum;
  _Atomic int err;
  _Atomic uint32_t seen[NPROD + 1];
} shared;

typedef struct targ {
  shared *s;
  int id;
} targ;

static void
put_items(mp_queue *q, int id, uint32_t n, _Atomic int *err)
{
  uint32_t seq = 0;
  while (seq < n) {
    if (seq % 7 == 3) {
      uint32_t b[8][2];
      mp_queue_buf bufs[8];
      uint32_t k = n - seq < 8 ? n - seq : 8;
      for (uint32_t i = 0; i < k; i++) {
        b[i][0] = (uint32_t)id;
        b[i][1] = seq + i;
        bufs[i] = (mp_queue_buf){b[i], sizeof b[i]};
      }
      int rc = mp_queue_put_many_bytes(q, bufs, k, 10);
      if (rc <= 0) {
        atomic_store(err, 1);
        return;
      }
      seq += (uint32_t)rc;
    } else {
      uint32_t b[2] = {(uint32_t)id, seq};
      if (mp_queue_put_bytes(q, b, sizeof b, 10)) {
        atomic_store(err, 2);
        return;
      }
      seq++;
    }
  }
}

static void *
producer(void *a)
{
  targ *t = a;
  put_items(t->s->q, t->id, PER, &t->s->err);
  return NULL;
}

static const uint64_t total = (uint64_t)NPROD * PER + CHILD_N;

static void
consume(shared *s, int32_t *last, const uint32_t *b)
{
  if (b[0] > NPROD || (int32_t)b[1] <= last[b[0]]) {
    atomic_store(&s->err, 3);
    return;
  }
  last[b[0]] = (int32_t)b[1];
  atomic_fetch_add(&s->seen[b[0]], 1);
  atomic_fetch_add(&s->sum, b[1]);
  atomic_fetch_add(&s->got, 1);
}

static void *
consumer(void *a)
{
  targ *t = a;
  shared *s = t->s;
  int32_t last[NPROD + 1];
  for (int i = 0; i <= NPROD; i++)
    last[i] = -1;
  uint8_t buf[8 * 8];
  while (atomic_load(&s->got) < total && !atomic_load(&s->err)) {
    if (t->id & 1) {
      mp_queue_buf items[8];
      int rc = mp_queue_get_many_bytes(s->q, buf, sizeof buf, items, 8, 0.05);
      if (rc == MP_EEMPTY)
        continue;
      if (rc < 0) {
        atomic_store(&s->err, 4);
        break;
      }
      for (int i = 0; i < rc; i++) {
        uint32_t b[2];
        if (items[i].len != sizeof b) {
          atomic_store(&s->err, 5);
          break;
        }
        memcpy(b, items[i].data, sizeof b);
        consume(s, last, b);
      }
    } else {
      uint32_t b[2];
      size_t len;
      int rc = mp_queue_get_bytes_into(s->q, b, sizeof b, &len, 0.05);
      if (rc == MP_EEMPTY)
        continue;
      if (rc < 0 || len != sizeof b) {
        atomic_store(&s->err, 6);
        break;
      }
      consume(s, last, b);
    }
  }
  return NULL;
}

static void
test_threads_and_a_fork_child(void **state)
{
  shared s = {0};
  MP_ASSERT_OK(mp_queue_new(&s.q, &(mp_queue_opts){.segment_size = 16384}));
  pthread_t pt[NPROD], ct[NCONS];
  targ pa[NPROD], ca[NCONS];
  /* ThreadSanitizer cannot see synchronisation made in another process (a
   * segment the child recycles under the put lock, then reused by a thread
   * here, reads as a race): under it the child puts before the threads
   * start instead of among them. */
  const char *san = getenv("MPROC_SANITIZE");
  int child_first = san && strstr(san, "thread");
  pid_t pid = -1;
  for (int phase = 0; phase < 2; phase++) {
    if (phase == (child_first ? 0 : 1)) {
      pid = fork();
      assert_true(pid >= 0);
      if (pid == 0) {
        /* the child inherits the queue, other threads mid-call: its own
         * puts work (the locks are robust and shared, not per thread) */
        _Atomic int err = 0;
        put_items(s.q, CHILD_ID, CHILD_N, &err);
        syscall(SYS_exit_group, atomic_load(&err) ? 1 : 0);
      }
      if (child_first)
        assert_int_equal(mp_test_wait_child(pid, 60), 0);
    } else {
      for (int i = 0; i < NCONS; i++) {
        ca[i] = (targ){&s, i};
        assert_int_equal(pthread_create(&ct[i], NULL, consumer, &ca[i]), 0);
      }
      for (int i = 0; i < NPROD; i++) {
        pa[i] = (targ){&s, i};
        assert_int_equal(pthread_create(&pt[i], NULL, producer, &pa[i]), 0);
      }
    }
  }
  for (int i = 0; i < NPROD; i++)
    pthread_join(pt[i], NULL);
  if (!child_first)
    assert_int_equal(mp_test_wait_child(pid, 60), 0);
  for (int i = 0; i < NCONS; i++)
    pthread_join(ct[i], NULL);
  assert_int_equal(atomic_load(&s.err), 0);
  assert_int_equal(atomic_load(&s.got), total);
  for (int i = 0; i < NPROD; i++)
    assert_int_equal(atomic_load(&s.seen[i]), PER);
  assert_int_equal(atomic_load(&s.seen[CHILD_ID]), CHILD_N);
  uint64_t want = (uint64_t)NPROD * PER * (PER - 1) / 2
                  + (uint64_t)CHILD_N * (CHILD_N - 1) / 2;
  assert_int_equal(atomic_load(&s.sum), want);
  assert_int_equal(mp_queue_qsize(s.q), 0);
  mp_queue_free(s.q);
}

/* A bounded queue: producers and consumers threads block on each other. */
static void
test_threads_bounded(void **state)
{
  shared s = {0};
  MP_ASSERT_OK(mp_queue_new(&s.q, &(mp_queue_opts){.maxsize = 16}));
  pthread_t pt[NPROD], ct[NCONS];
  targ pa[NPROD], ca[NCONS];
  for (int i = 0; i < NCONS; i++) {
    ca[i] = (targ){&s, i};
    assert_int_equal(pthread_create(&ct[i], NULL, consumer, &ca[i]), 0);
  }
  for (int i = 0; i < NPROD; i++) {
    pa[i] = (targ){&s, i};
    assert_int_equal(pthread_create(&pt[i], NULL, producer, &pa[i]), 0);
  }
  _Atomic int err = 0;
  put_items(s.q, CHILD_ID, CHILD_N, &err); /* the main thread too */
  for (int i = 0; i < NPROD; i++)
    pthread_join(pt[i], NULL);
  for (int i = 0; i < NCONS; i++)
    pthread_join(ct[i], NULL);
  assert_int_equal(atomic_load(&err), 0);
  assert_int_equal(atomic_load(&s.err), 0);
  assert_int_equal(atomic_load(&s.got), total);
  assert_int_equal(mp_queue_qsize(s.q), 0);
  mp_queue_free(s.q);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_threads_and_a_fork_child),
    cmocka_unit_test(test_threads_bounded),
};

MP_TEST_MAIN(tests)
