/* SPDX-License-Identifier: MIT */
/* SIGKILL at random instants, in a bounded loop: a child hammers a Lock
 * (the fast path and its owner bookkeeping) and a synchronized Value's
 * atomic add, and is killed wherever it happens to be.  Afterwards the
 * survivor always gets the lock within a bounded time (0 or
 * MP_EOWNERDEAD, never a hang), the Value's count is whole (every add
 * either happened or did not), and the child's exit reads as -SIGKILL. */
#define _GNU_SOURCE
#include "testutil.h"

#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "proc/proc_internal.h"

#define ROUNDS 12

static int
hammer(mp_obj *args)
{
  mp_lock *l = mp_lock_from_obj(mp_seq_item(args, 0));
  mp_value *v = mp_value_from_obj(mp_seq_item(args, 1));
  mp_conn *ready = mp_conn_from_obj(mp_seq_item(args, 2));
  if (!l || !v || !ready || mp_conn_send_bytes(ready, "r", 1) != 0)
    return 1;
  for (;;) {
    if (!mp_acquired(mp_lock_acquire(l, MP_FOREVER)))
      return 2;
    mp_lock_release(l);
    int64_t now;
    int rc = mp_value_add(v, 1, &now);
    if (rc != 0 && rc != MP_EOWNERDEAD)
      return 3;
  }
}

static void
test_kill_at_random_instants(void **state)
{
  srand((unsigned)time(NULL) ^ (unsigned)getpid());
  mp_context *ctx = mp_test_context(state);
  mp_lock *l;
  mp_value *v;
  MP_ASSERT_OK(mp_lock_new(&l));
  MP_ASSERT_OK(mp_value_new_int(&v, 'q', 0, NULL));
  for (int round = 0; round < ROUNDS; round++) {
    mp_conn *r, *w;
    mp_test_pipe(&r, &w, 0);
    mp_obj *args = MP_TUPLE(mp_lock_obj(l), mp_value_obj(v), mp_conn_obj(w));
    assert_non_null(args);
    mp_process *p;
    MP_ASSERT_OK(mp_process_new(&p, ctx, &(mp_process_opts){.target = hammer,
                                                             .args = args}));
    mp_obj_free(args);
    MP_ASSERT_OK(mp_process_start(p));
    mp_conn_free(w);
    void *buf;
    size_t n;
    MP_ASSERT_OK(mp_conn_recv_bytes(r, &buf, &n, 0, 30));
    mp_free(buf);
    mp_conn_free(r);
    /* let it run 0-3 ms, then kill it wherever it is */
    struct timespec ts = {0, (rand() % 3000) * 1000L};
    nanosleep(&ts, NULL);
    MP_ASSERT_OK(mp_process_kill(p));
    MP_ASSERT_OK(mp_process_join(p, 30));
    int code = 0;
    MP_ASSERT_OK(mp_process_exitcode(p, &code));
    assert_int_equal(code, -SIGKILL);
    mp_process_free(p);
    /* the survivor gets the lock (bounded: owner checks every <= 200 ms) */
    int rc = mp_lock_acquire(l, 10);
    if (!mp_acquired(rc))
      fail_msg("round %d: lock after the kill -> %s", round, mp_err_name(rc));
    MP_ASSERT_OK(mp_lock_release(l));
    /* the Value: its own lock may have died held too; an add still works
     * and the count moves by exactly one */
    int64_t before, after;
    rc = mp_value_get_int(v, &before);
    assert_true(mp_acquired(rc));
    rc = mp_value_add(v, 1, &after);
    assert_true(mp_acquired(rc));
    assert_int_equal(after, before + 1);
  }
  mp_value_free(v);
  mp_lock_free(l);
}

static const struct CMUnitTest tests[] = {
    MP_TEST_METHODS(test_kill_at_random_instants),
};

MP_TEST_MAIN(tests)
