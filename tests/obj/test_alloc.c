/* SPDX-License-Identifier: MIT */
/* The value allocators.
 *  - Small objects (src/obj/alloc.c): blocks one thread allocates and
 *    another frees are reused, not piled up in the freeing thread while the
 *    allocating one carves new slabs (what a pool's result handler and the
 *    thread releasing the results do on every map).
 *  - Large blocks (src/obj/alloc_big.c): a freed one is kept, pages in, for
 *    the next of about its size; bounded; empty in a fork child.
 *  - Reference counts: plain stores while the process has one thread,
 *    atomic from the moment a second one starts. */
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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
    size_t now = mp__obj_slab_bytes(sizeof(mp__int));
    most = now > most ? now : most;
  }
  assert_int_equal(pthread_join(t, NULL), 0);
  sem_destroy(&go);
  sem_destroy(&done);
  if (most == 0)
    skip(); /* the pools are off (AddressSanitizer) */
  /* one round is N * 16 bytes (1.6 MB); without reuse each round carves
   * that again, to ~48 MB */
  size_t round_bytes = (size_t)N * sizeof(mp__int);
  if (most > 4 * round_bytes)
    fail_msg("%zu bytes of slabs during %d rounds of %zu", most, ROUNDS,
             round_bytes);
}

/* Runs of objects taken at once (mp__obj_alloc_many, the decoder's path):
 * across refills, every object distinct, initialised, and reused after it
 * is freed. */
static int
cmp_ptr(const void *a, const void *b)
{
  uintptr_t x = (uintptr_t) * (mp_obj *const *)a,
            y = (uintptr_t) * (mp_obj *const *)b;
  return x < y ? -1 : x > y;
}

static void
test_alloc_many_runs(void **state)
{
  (void)state;
  enum { RUN = 3 * 4096 + 7, RUNS = 4 }; /* a slab is 4096 ints */
  static mp_obj *got[RUN * RUNS];
  size_t before = 0;
  for (int pass = 0; pass < 2; pass++) {
    for (int r = 0; r < RUNS; r++) {
      size_t k = mp__obj_alloc_many(sizeof(mp__int), MP_T_INT, RUN,
                                    got + (size_t)r * RUN);
      assert_int_equal(k, RUN);
    }
    for (size_t i = 0; i < (size_t)RUN * RUNS; i++) {
      assert_int_equal(__atomic_load_n(&got[i]->rc, __ATOMIC_RELAXED), 1);
      assert_int_equal(mp_obj_type(got[i]), MP_T_INT);
      MP__AS(mp__int, got[i])->v = (int64_t)i;
    }
    qsort(got, (size_t)RUN * RUNS, sizeof *got, cmp_ptr);
    for (size_t i = 1; i < (size_t)RUN * RUNS; i++)
      if (got[i] == got[i - 1])
        fail_msg("one block handed out twice");
    size_t slabs = mp__obj_slab_bytes(sizeof(mp__int));
    if (pass == 1 && slabs > before)
      fail_msg("slabs grew from %zu to %zu bytes: freed blocks not reused",
               before, slabs);
    before = slabs;
    for (size_t i = 0; i < (size_t)RUN * RUNS; i++)
      mp_obj_free(got[i]);
  }
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

/* ---- large blocks ------------------------------------------------------- */

static long
minor_faults(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

static void
test_big_block_kept(void **state)
{
  (void)state;
  if (!mp_test_big_cache_on())
    skip();
  size_t n = (size_t)8 << 20;
  uint8_t *p = mp__big_alloc(n, 0);
  assert_non_null(p);
  memset(p, 0xab, n);
  mp__big_free(p);
  assert_true(mp__big_cached_bytes() >= n);
  long f0 = minor_faults();
  uint8_t *q = mp__big_alloc(n - 4096, 0); /* about the same size */
  assert_ptr_equal(q, p);
  for (size_t i = 0; i < n - 4096; i += 4096)
    q[i] = 1;
  /* 2048 pages: each would fault again in a fresh mapping */
  assert_true(minor_faults() - f0 < 64);
  assert_int_equal(q[4096 + 1], 0xab); /* not cleared: not asked to */
  mp__big_free(q);
  mp__big_trim();
  assert_int_equal(mp__big_cached_bytes(), 0);
}

static void
test_big_zeroed_on_reuse(void **state)
{
  (void)state;
  size_t n = (size_t)1 << 20;
  uint8_t *p = mp__big_alloc(n, 0);
  assert_non_null(p);
  memset(p, 0xff, n);
  mp__big_free(p);
  uint8_t *q = mp__big_alloc(n, 1);
  assert_non_null(q);
  for (size_t i = 0; i < n; i++)
    if (q[i] != 0)
      fail_msg("byte %zu of a zeroed block is %u", i, q[i]);
  mp__big_free(q);
  mp__big_trim();
}

static void
test_big_realloc_keeps_contents(void **state)
{
  (void)state;
  /* from malloc's sizes into a mapping, then a mapping grown 8 times */
  size_t sizes[] = {64, 4096, MP__BIG_MIN - 64, MP__BIG_MIN * 2,
                    MP__BIG_MIN * 16, 100, MP__BIG_MIN * 3};
  uint32_t *p = NULL;
  size_t have = 0; /* words holding the pattern */
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    size_t words = sizes[k] / sizeof *p;
    p = mp__big_realloc(p, sizes[k]);
    assert_non_null(p);
    size_t keep = have < words ? have : words;
    for (size_t i = 0; i < keep; i++)
      if (p[i] != (uint32_t)(i * 2654435761u))
        fail_msg("word %zu lost growing to %zu bytes", i, sizes[k]);
    for (size_t i = keep; i < words; i++)
      p[i] = (uint32_t)(i * 2654435761u);
    have = words;
  }
  mp__big_free(p);
  mp__big_trim();
}

static void
test_big_cache_bounded(void **state)
{
  (void)state;
  if (!mp_test_big_cache_on())
    skip();
  enum { N = MP__BIG_CACHE_N + 16 };
  void *v[N];
  /* blocks small enough that the count binds before the bytes do */
  size_t each = MP__BIG_CACHE_BYTES / MP__BIG_CACHE_N / 2;
  for (int i = 0; i < N; i++)
    assert_non_null(v[i] = mp__big_alloc(each, 0));
  for (int i = 0; i < N; i++)
    mp__big_free(v[i]);
  /* at most MP__BIG_CACHE_N blocks kept, and that many */
  assert_int_equal(mp__big_cached_bytes(),
                   MP__BIG_CACHE_N * ((each + 16 + 4095) & ~(size_t)4095));
  mp__big_trim();
  /* nor more than 64 MiB: a block beyond that goes back at once */
  void *huge = mp__big_alloc((size_t)80 << 20, 0);
  assert_non_null(huge);
  mp__big_free(huge);
  assert_int_equal(mp__big_cached_bytes(), 0);
  for (int i = 0; i < 5; i++)
    assert_non_null(v[i] = mp__big_alloc((size_t)20 << 20, 0));
  for (int i = 0; i < 5; i++)
    mp__big_free(v[i]);
  assert_true(mp__big_cached_bytes() <= MP__BIG_CACHE_BYTES);
  mp__big_trim();
}

static void
test_big_fork_child_starts_empty(void **state)
{
  (void)state;
  if (!mp_test_big_cache_on())
    skip();
  void *p = mp__big_alloc((size_t)2 << 20, 0);
  assert_non_null(p);
  mp__big_free(p);
  assert_true(mp__big_cached_bytes() > 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(mp__big_cached_bytes() == 0 ? 0 : 1);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  mp__big_trim();
}

/* A block left unused past the decay time is given back at the next use
 * of the cache, not kept for ever. */
static void
test_big_unused_block_decays(void **state)
{
  (void)state;
  if (!mp_test_big_cache_on())
    skip();
  int64_t saved = mp__big_decay_ns;
  mp__big_decay_ns = 50 * 1000000; /* 50 ms */
  void *p = mp__big_alloc((size_t)4 << 20, 0);
  assert_non_null(p);
  mp__big_free(p);
  assert_true(mp__big_cached_bytes() >= (size_t)4 << 20);
  /* within the decay time another block's free keeps it */
  void *q = mp__big_alloc((size_t)1 << 20, 0); /* too small to take it */
  assert_non_null(q);
  mp__big_free(q);
  assert_true(mp__big_cached_bytes() >= (size_t)5 << 20);
  /* CLOCK_MONOTONIC_COARSE ticks every few ms: wait well past it */
  struct timespec ts = {0, 200 * 1000000};
  while (nanosleep(&ts, &ts) != 0)
    ;
  void *r = mp__big_alloc((size_t)16 << 20, 0); /* takes neither */
  assert_non_null(r);
  assert_int_equal(mp__big_cached_bytes(), 0);
  mp__big_free(r);
  mp__big_decay_ns = saved;
  mp__big_trim();
}

/* Values and lists of that size use such blocks, and come back intact. */
static void
test_big_values(void **state)
{
  (void)state;
  size_t n = (size_t)1 << 20;
  uint8_t *raw = malloc(n);
  assert_non_null(raw);
  for (size_t i = 0; i < n; i++)
    raw[i] = (uint8_t)(i * 7);
  mp_obj *list = mp_list_new();
  assert_non_null(list);
  for (int round = 0; round < 3; round++) {
    mp_obj *b = mp_bytes_new(raw, n);
    assert_non_null(b);
    assert_true((b->flags & MP__F_BIGMEM) || !mp_test_big_cache_on());
    MP_ASSERT_OK(mp_list_append_take(list, b));
  }
  for (int i = 0; i < 100000; i++) /* storage past MP__BIG_MIN, grown */
    MP_ASSERT_OK(mp_list_append_take(list, mp_int_new(i)));
  void *pk;
  size_t len;
  MP_ASSERT_OK(mp_pickle_dumps(list, NULL, &pk, &len));
  mp_obj *back = NULL;
  MP_ASSERT_OK(mp_pickle_loads(pk, len, NULL, &back));
  mp_free(pk);
  assert_true(mp_obj_equal(list, back));
  const void *d;
  size_t dl;
  MP_ASSERT_OK(mp_bytes_get(mp_seq_item(back, 2), &d, &dl));
  assert_int_equal(dl, n);
  assert_memory_equal(d, raw, n);
  mp_obj_free(back);
  mp_obj_free(list);
  free(raw);
  mp__big_trim();
}

static const struct CMUnitTest tests[] = {
    /* first: while the program has one thread */
    cmocka_unit_test(test_refcount_single_then_threads),
    cmocka_unit_test(test_cross_thread_reuse),
    cmocka_unit_test(test_alloc_many_runs),
    cmocka_unit_test(test_big_block_kept),
    cmocka_unit_test(test_big_zeroed_on_reuse),
    cmocka_unit_test(test_big_realloc_keeps_contents),
    cmocka_unit_test(test_big_cache_bounded),
    cmocka_unit_test(test_big_fork_child_starts_empty),
    cmocka_unit_test(test_big_unused_block_decays),
    cmocka_unit_test(test_big_values),
};

MP_TEST_MAIN(tests)
