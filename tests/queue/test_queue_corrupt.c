/* SPDX-License-Identifier: MIT */
/* Corrupt shared memory gives a code, never a hang (issue 10 §3): a record
 * whose word claims descriptors that never went on the queue's socket (a
 * scribbling process set the flag) makes get with timeout 0 return
 * MP_EMALFORMED at once.  The get runs in a forked child so that a hang
 * fails this test instead of blocking the program. */
#define _GNU_SOURCE
#include "testutil.h"

#include <string.h>
#include <unistd.h>

#include "queue/queue_internal.h"

static void
test_fds_flag_without_message(void **state)
{
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  /* an item whose payload looks like a descriptor prefix (seq 1, 1 fd) */
  struct mp__qfds_prefix p = {1, 1, MP__Q_FDS_MAGIC};
  uint8_t item[64] = {0};
  memcpy(item, &p, sizeof p);
  MP_ASSERT_OK(mp_queue_put_bytes(q, item, sizeof item, 0));
  uint8_t *base;
  size_t len;
  mp__queue_mem_for_tests(q, &base, &len);
  uint64_t head = atomic_load(&q->h->head);
  assert_true(head + MP__Q_RECHDR <= len);
  struct mp__qrec *rec = (struct mp__qrec *)(void *)(base + head);
  uint64_t w = atomic_load(&rec->w);
  assert_int_equal(MP__QW_STATE(w), MP__QR_READY);
  /* the scribble: set the descriptor flag */
  atomic_store(&rec->w, w | (uint64_t)MP__QR_FDS << 57);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    void *out;
    size_t n;
    int rc = mp_queue_get_bytes(q, &out, &n, 0);
    _exit(rc == MP_EMALFORMED ? 0 : 1);
  }
  /* a get with timeout 0 answers at once; 10 s is a hang */
  assert_int_equal(mp_test_wait_child(pid, 10), 0);
  mp_queue_free(q);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_fds_flag_without_message),
};

MP_TEST_MAIN(tests)
