/* SPDX-License-Identifier: MIT */
/* The value allocators.
 *  - Small objects (src/obj/alloc.c): blocks one thread allocates and
 *    another frees are reused, not piled up in the freeing thread while the
 *    allocating one carves new slabs (what a pool's result handler and the
 *    thread releasing the results do on every map).
 *  - Reference counts: plain stores while the process has one thread,
 *    atomic from the moment a second one starts. */
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>

#include "obj/obj_internal.h"
#include "testutil.h"

enum { N = 100000, ROUNDS = 30 };
static mp_obj *objs[N];
static sem_t go, done;

/* One long-lived freeing thread: a thread that exits gives its blocks back
 * anyway, so only a living one shows whether they pile up in it. */
static void *
freer(void *arg)
{
  (void)arg;
  for (int round = 0; round < ROUNDS; round++) {
    while (sem_wait(&go) != 0)
      ;
    for (size_t i = 0; i < N; i++)
      mp_obj_free(objs[i]);
    sem_post(&done);
  }
  return NULL;
}

static void
test_cross_thread_reuse(void **state)
{
  (void)state;
  sem_init(&go, 0, 0);
  sem_init(&done, 0, 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, freer, NULL), 0);
  size_t most = 0;
  for (int round = 0; round < ROUNDS; round++) {
    for (size_t i = 0; i < N; i++)
      assert_non_null(objs[i] = mp_int_new(100000 + (int64_t)i));
    sem_post(&go);
    while (sem_wait(&done) != 0)
      ;
    size_t now = mp__obj_slab_bytes(0);
    most = now > most ? now : most;
  }
  assert_int_equal(pthread_join(t, NULL), 0);
  sem_destroy(&go);
  sem_destroy(&done);
  if (most == 0)
    skip(); /* the pools are off (AddressSanitizer) */
  /* one round is N * 32 bytes (3.2 MB); without reuse each round carves
   * that again, to ~96 MB */
  size_t round_bytes = (size_t)N * 32;
  if (most > 4 * round_bytes)
    fail_msg("%zu bytes of slabs during %d rounds of %zu", most, ROUNDS,
             round_bytes);
}

/* ---- reference counts across the first thread's start ------------------ */

enum { REFS = 1000, PAIRS = 1000000 };
static mp_obj *shared_int;

static void *
ref_churn(void *arg)
{
  (void)arg;
  for (int i = 0; i < PAIRS; i++) {
    mp_obj_ref(shared_int);
    mp_obj_free(shared_int);
  }
  for (int i = 0; i < REFS; i++)
    mp_obj_ref(shared_int);
  return NULL;
}

static uint32_t
rc_of(const mp_obj *o)
{
  return __atomic_load_n(&o->rc, __ATOMIC_ACQUIRE);
}

/* Runs first, while the program has one thread: counts taken with plain
 * stores then, and atomically by two threads after, all add up. */
static void
test_refcount_single_then_threads(void **state)
{
  (void)state;
#if defined(__GLIBC__) && !defined(__SANITIZE_THREAD__)
  assert_true(MP__SINGLE_THREADED()); /* the plain-store path is in use */
#endif
  assert_non_null(shared_int = mp_int_new((int64_t)1 << 40));
  for (int i = 0; i < REFS; i++)
    mp_obj_ref(shared_int);
  assert_int_equal(rc_of(shared_int), 1 + REFS);
  pthread_t t[2];
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&t[i], NULL, ref_churn, NULL), 0);
  assert_false(MP__SINGLE_THREADED());
  ref_churn(NULL); /* this thread too, at the same time */
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_join(t[i], NULL), 0);
  /* a lost update anywhere shows here */
  assert_int_equal(rc_of(shared_int), 1 + 4 * REFS);
  for (int i = 0; i < 4 * REFS; i++)
    mp_obj_free(shared_int);
  assert_int_equal(rc_of(shared_int), 1);
  mp_obj_free(shared_int);
}

static const struct CMUnitTest tests[] = {
    /* first: while the program has one thread */
    cmocka_unit_test(test_refcount_single_then_threads),
    cmocka_unit_test(test_cross_thread_reuse),
};

MP_TEST_MAIN(tests)
