/* SPDX-License-Identifier: MIT */
/* A record whose writer died while copying is skipped whole, and a record
 * whose writer committed at the instant it was judged dead (and then
 * exited) is delivered: padding is a compare-and-swap from the very WRITING
 * word judged, never a store (an unconditional store lost ~1 item in 4
 * rounds of put-and-exit under load). */
#include "testutil.h"

#include <string.h>
#include <sys/wait.h>
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

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_dead_writer_is_skipped),
    cmocka_unit_test(test_writer_committing_at_the_verdict_keeps_its_item),
};

MP_TEST_MAIN(tests)
