/* SPDX-License-Identifier: MIT */
/* A producer that puts and exits at once loses nothing, even while a
 * consumer polling with get_nowait keeps finding its records half-written
 * and asks whether it is alive (the race itself is pinned down
 * deterministically in test_queue_dead_writer). */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc/proc_internal.h"

#define K 5
#define ITEM (1u << 20)

static int
producer(mp_obj *args)
{
  mp_queue *q = mp_queue_from_obj(mp_seq_item(args, 0));
  unsigned char *item = calloc(1, ITEM);
  if (!q || !item)
    return 2;
  for (uint64_t i = 0; i < K; i++) {
    memcpy(item, &i, 8);
    if (mp_queue_put_bytes(q, item, ITEM, MP_FOREVER))
      return 3;
  }
  /* every put returned 0: exit at once, so that the consumer's liveness
   * check of the last record races with the exit */
  _exit(0);
}

static void
test_put_and_exit_while_polled(void **state)
{
  const char *m = mp_test_method(state);
  int rounds = strcmp(m, "fork") == 0 ? 100 : 10;
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  unsigned char *buf = malloc(ITEM);
  for (int r = 0; r < rounds; r++) {
    mp_obj *args = MP_TUPLE(mp_queue_obj(q));
    mp_process *p;
    MP_ASSERT_OK(mp_process_new(&p, mp_test_context(state),
                                &(mp_process_opts){.target = producer,
                                                   .args = args}));
    mp_obj_free(args);
    MP_ASSERT_OK(mp_process_start(p));
    uint64_t expect = 0;
    int got = 0, ended = 0;
    int64_t t0 = mp__now_ns();
    for (;;) {
      size_t len;
      int rc = mp_queue_get_bytes_into(q, buf, ITEM, &len, 0);
      if (rc == 0) {
        uint64_t v;
        memcpy(&v, buf, 8);
        assert_int_equal(v, expect);
        expect++;
        got++;
        continue;
      }
      assert_int_equal(rc, MP_EEMPTY);
      if (ended && mp_queue_qsize(q) == 0)
        break;
      if (!ended && mp_process_join(p, 0) == 0)
        ended = 1;
      if (mp__now_ns() - t0 > 60 * 1000000000LL)
        fail_msg("round %d: no progress for 60 s", r);
    }
    int code = -1;
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    assert_int_equal(code, 0);
    mp_process_free(p);
    if (got != K)
      fail_msg("round %d: %d items put (each put returned 0), %d arrived", r,
               K, got);
  }
  free(buf);
  mp_queue_free(q);
}

static const struct CMUnitTest tests[] = {
    MP_TEST_METHODS(test_put_and_exit_while_polled),
};

MP_TEST_MAIN(tests)
