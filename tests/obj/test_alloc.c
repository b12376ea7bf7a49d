/* SPDX-License-Identifier: MIT */
/* The small-object allocator (src/obj/alloc.c): blocks one thread
 * allocates and another frees are reused, not piled up in the freeing
 * thread while the allocating one carves new slabs (what a pool's result
 * handler and the thread releasing the results do on every map). */
#include <pthread.h>
#include <stdlib.h>

#include "obj/obj_internal.h"
#include "testutil.h"

enum { N = 100000, ROUNDS = 30 };
static mp_obj *objs[N];

static void *
free_all(void *arg)
{
  (void)arg;
  for (size_t i = 0; i < N; i++)
    mp_obj_free(objs[i]);
  return NULL;
}

static void
test_cross_thread_reuse(void **state)
{
  (void)state;
  for (int round = 0; round < ROUNDS; round++) {
    for (size_t i = 0; i < N; i++)
      assert_non_null(objs[i] = mp_int_new(100000 + (int64_t)i));
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, free_all, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
  }
  size_t slabs = mp__obj_slab_bytes(0);
  if (slabs == 0)
    skip(); /* the pools are off (AddressSanitizer) */
  /* one round is N * 32 bytes (3.2 MB); without reuse each round carves
   * that again, to ~96 MB */
  size_t round_bytes = (size_t)N * 32;
  if (slabs > 4 * round_bytes)
    fail_msg("%zu bytes of slabs after %d rounds of %zu", slabs, ROUNDS,
             round_bytes);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_cross_thread_reuse),
};

MP_TEST_MAIN(tests)
