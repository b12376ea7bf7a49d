/* SPDX-License-Identifier: MIT */
/* mp_pool_map_array under every start method and threading: results right
 * for every element (copied arrays and arrays already in a SharedMemory),
 * `shared` reaching fn, uneven element costs, element errors (the lowest
 * index is reported with its text, the others still computed), every
 * documented error code, and workers that die inside an element: their
 * unfinished chunk runs once more elsewhere (the call succeeds), and an
 * element that kills every worker running it is MP_EWORKERDIED. */
#define _GNU_SOURCE
#include "testutil.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc/proc_internal.h"

#define NPROC 2

static int
twice(const void *in, void *out, const mp_obj *shared)
{
  (void)shared;
  *(double *)out = 2.0 * *(const double *)in;
  return 0;
}

/* out = in * shared (a float) */
static int
scale(const void *in, void *out, const mp_obj *shared)
{
  double k;
  int rc = mp_float_get(shared, &k);
  if (rc)
    return rc;
  *(double *)out = k * *(const double *)in;
  return 0;
}

/* Costs grow with the element (up to ~100 us): dynamic chunks balance. */
static int
uneven(const void *in, void *out, const mp_obj *shared)
{
  (void)shared;
  int64_t x = *(const int64_t *)in;
  volatile uint64_t acc = 0;
  for (int64_t i = 0; i < (x % 100) * 200; i++)
    acc += (uint64_t)i;
  (void)acc;
  *(int64_t *)out = x * x;
  return 0;
}

/* Fails on multiples of 7 from 5 on (5, 12, 19, ...). */
static int
picky(const void *in, void *out, const mp_obj *shared)
{
  (void)shared;
  int32_t x = *(const int32_t *)in;
  if (x >= 5 && (x - 5) % 7 == 0)
    return mp_seterr(MP_EINDEX, "no %d", (int)x);
  *(int32_t *)out = x + 1;
  return 0;
}

static int
positive(const void *in, void *out, const mp_obj *shared)
{
  (void)in, (void)out, (void)shared;
  return 3;
}

/* No input (in_size 0): writes the element's address offset marker. */
static int
fill(const void *in, void *out, const mp_obj *shared)
{
  (void)shared;
  if (in != NULL)
    return mp_seterr(MP_EINVAL, "in should be NULL");
  *(uint8_t *)out = 0xAB;
  return 0;
}

/* Reads the old *out: in a SharedMemory it is the caller's, not a copy. */
static int
accumulate(const void *in, void *out, const mp_obj *shared)
{
  (void)shared;
  *(double *)out += *(const double *)in;
  return 0;
}

/* shared = (flags segment, victim element, kills allowed): the element
 * `victim` SIGKILLs the worker running it while the count of kills in the
 * segment is below the allowed number. */
static int
killer(const void *in, void *out, const mp_obj *shared)
{
  int64_t x = *(const int64_t *)in, victim, allowed;
  mp_shm *seg = mp_shm_from_obj(mp_seq_item(shared, 0));
  if (!seg || mp_int_get(mp_seq_item(shared, 1), &victim) ||
      mp_int_get(mp_seq_item(shared, 2), &allowed))
    return mp_seterr(MP_ETYPE, "killer's shared");
  if (x == victim) {
    int64_t *kills = mp_shm_buf(seg);
    if (__atomic_fetch_add(kills, 1, __ATOMIC_SEQ_CST) < allowed)
      kill(getpid(), SIGKILL);
  }
  *(int64_t *)out = 3 * x;
  return 0;
}

static void
ignore_error(int code, const char *detail, void *arg)
{
  (void)code, (void)detail, (void)arg;
}

static mp_pool *
new_pool(void **state)
{
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = NPROC,
                                   .context = mp_test_context(state)}));
  return p;
}

static void
end_pool(mp_pool *p)
{
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
}

static void
test_map_array_doubles(void **state)
{
  mp_pool *p = new_pool(state);
  size_t sizes[] = {1, 2, 3, 127, 1000, 100003};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    size_t n = sizes[s];
    double *in = malloc(n * sizeof *in), *out = calloc(n, sizeof *out);
    for (size_t i = 0; i < n; i++)
      in[i] = (double)i + 0.5;
    MP_ASSERT_OK(mp_pool_map_array(p, twice, in, sizeof *in, out,
                                   sizeof *out, n, NULL, NULL));
    for (size_t i = 0; i < n; i++)
      if (out[i] != 2.0 * in[i])
        fail_msg("n=%zu: out[%zu] = %g, not %g", n, i, out[i], 2.0 * in[i]);
    /* explicit chunk sizes, one of them larger than the array */
    size_t chunks[] = {1, 7, n + 5};
    for (size_t c = 0; c < 3 && n <= 1000; c++) {
      memset(out, 0, n * sizeof *out);
      MP_ASSERT_OK(mp_pool_map_array(p, twice, in, sizeof *in, out,
                                     sizeof *out, n, NULL,
                                     &(mp_map_opts){.chunksize = chunks[c]}));
      for (size_t i = 0; i < n; i++)
        assert_true(out[i] == 2.0 * in[i]);
    }
    free(in);
    free(out);
  }
  end_pool(p);
}

static void
test_map_array_shared_and_sizes(void **state)
{
  mp_pool *p = new_pool(state);
  size_t n = 5000;
  double *in = malloc(n * sizeof *in), *out = calloc(n, sizeof *out);
  for (size_t i = 0; i < n; i++)
    in[i] = (double)i;
  mp_obj *k = mp_float_new(-1.5);
  MP_ASSERT_OK(mp_pool_map_array(p, scale, in, sizeof *in, out, sizeof *out,
                                 n, k, NULL));
  for (size_t i = 0; i < n; i++)
    assert_true(out[i] == -1.5 * in[i]);
  mp_obj_free(k);
  /* no input: fn gets NULL for in */
  uint8_t *bytes = calloc(n, 1);
  MP_ASSERT_OK(mp_pool_map_array(p, fill, NULL, 0, bytes, 1, n, NULL, NULL));
  for (size_t i = 0; i < n; i++)
    assert_int_equal(bytes[i], 0xAB);
  free(bytes);
  /* n = 0: nothing runs */
  MP_ASSERT_OK(mp_pool_map_array(p, twice, NULL, 8, NULL, 8, 0, NULL, NULL));
  free(in);
  free(out);
  end_pool(p);
}

static void
test_map_array_uneven(void **state)
{
  mp_pool *p = new_pool(state);
  size_t n = 4000;
  int64_t *in = malloc(n * sizeof *in), *out = calloc(n, sizeof *out);
  for (size_t i = 0; i < n; i++)
    in[i] = (int64_t)(i * 37 % n);
  MP_ASSERT_OK(mp_pool_map_array(p, uneven, in, sizeof *in, out, sizeof *out,
                                 n, NULL, NULL));
  for (size_t i = 0; i < n; i++)
    assert_int_equal(out[i], in[i] * in[i]);
  free(in);
  free(out);
  end_pool(p);
}

/* in and out in SharedMemory segments (at offsets): the workers use them
 * directly, so fn sees the caller's prior *out (a copy would start at 0). */
static void
test_map_array_in_shared_memory(void **state)
{
  mp_pool *p = new_pool(state);
  size_t n = 3000;
  mp_shm *a, *b;
  MP_ASSERT_OK(mp_shm_new(&a, NULL, &(mp_shm_opts){
                                        .create = 1,
                                        .size = (n + 3) * sizeof(double)}));
  MP_ASSERT_OK(mp_shm_new(&b, NULL, &(mp_shm_opts){
                                        .create = 1,
                                        .size = (n + 1) * sizeof(double)}));
  double *in = (double *)mp_shm_buf(a) + 3, *out = (double *)mp_shm_buf(b) + 1;
  for (size_t i = 0; i < n; i++) {
    in[i] = (double)i;
    out[i] = 1000.0;
  }
  MP_ASSERT_OK(mp_pool_map_array(p, accumulate, in, sizeof *in, out,
                                 sizeof *out, n, NULL, NULL));
  for (size_t i = 0; i < n; i++)
    if (out[i] != 1000.0 + (double)i)
      fail_msg("out[%zu] = %g: not computed in place", i, out[i]);
  /* in place: in == out */
  MP_ASSERT_OK(mp_pool_map_array(p, twice, out, sizeof *out, out,
                                 sizeof *out, n, NULL, NULL));
  for (size_t i = 0; i < n; i++)
    assert_true(out[i] == 2.0 * (1000.0 + (double)i));
  MP_ASSERT_OK(mp_shm_unlink(a));
  MP_ASSERT_OK(mp_shm_unlink(b));
  mp_shm_free(a);
  mp_shm_free(b);
  end_pool(p);
}

static void
test_map_array_element_errors(void **state)
{
  mp_pool *p = new_pool(state);
  size_t n = 200;
  int32_t *in = malloc(n * sizeof *in), *out = calloc(n, sizeof *out);
  for (size_t i = 0; i < n; i++)
    in[i] = (int32_t)i;
  MP_ASSERT_ERR(mp_pool_map_array(p, picky, in, sizeof *in, out, sizeof *out,
                                  n, NULL, &(mp_map_opts){.chunksize = 3}),
                MP_EINDEX);
  /* the lowest failing index, its text, the worker's name */
  const char *d = mp_errdetail();
  if (!strstr(d, "element 5:") || !strstr(d, "no 5") ||
      !strstr(d, "PoolWorker-"))
    fail_msg("detail: %s", d);
  for (size_t i = 0; i < n; i++)
    if (!(i >= 5 && (i - 5) % 7 == 0))
      assert_int_equal(out[i], (int32_t)i + 1);
  MP_ASSERT_ERR(mp_pool_map_array(p, positive, in, sizeof *in, out,
                                  sizeof *out, n, NULL, NULL),
                MP_EINVAL);
  assert_non_null(strstr(mp_errdetail(), "element 0:"));
  free(in);
  free(out);
  end_pool(p);
}

static void
test_map_array_bad_input(void **state)
{
  mp_pool *p = new_pool(state);
  double x[4] = {1, 2, 3, 4}, y[4];
  MP_ASSERT_ERR(mp_pool_map_array(NULL, twice, x, 8, y, 8, 4, NULL, NULL),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_pool_map_array(p, NULL, x, 8, y, 8, 4, NULL, NULL),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_pool_map_array(p, twice, NULL, 8, y, 8, 4, NULL, NULL),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_pool_map_array(p, twice, x, 8, NULL, 8, 4, NULL, NULL),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_pool_map_array(p, twice, x, 8, y, 8, SIZE_MAX / 4, NULL,
                                  NULL),
                MP_EOVERFLOW);
  MP_ASSERT_ERR(mp_pool_map_array(p, twice, x, 8, y, 8, 4, NULL,
                                  &(mp_map_opts){.task_timeout = 1}),
                MP_ENOTSUP);
  MP_ASSERT_ERR(mp_pool_map_array(p, twice, x, 8, y, 8, 4, NULL,
                                  &(mp_map_opts){.task_timeout = NAN}),
                MP_EINVAL);
  MP_ASSERT_ERR(mp_pool_map_array(p, twice, x, 8, y, 8, 4, NULL,
                                  &(mp_map_opts){.error_callback =
                                                     ignore_error}),
                MP_EINVAL);
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_ERR(mp_pool_map_array(p, twice, x, 8, y, 8, 4, NULL, NULL),
                MP_ESTATE);
  MP_ASSERT_ERR(mp_pool_map_array(p, twice, x, 8, y, 8, 0, NULL, NULL),
                MP_ESTATE);
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
}

/* An element SIGKILLs its worker once (rounds at different elements): the
 * dead worker's chunk runs again elsewhere and the map succeeds; allowed
 * to kill twice, the element fails the call with MP_EWORKERDIED. */
static void
test_map_array_worker_killed(void **state)
{
  if (strcmp(mp_test_method(state), "threading") == 0)
    skip(); /* a thread cannot be killed alone */
  mp_pool *p = new_pool(state);
  size_t n = 2000;
  int64_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
  for (size_t i = 0; i < n; i++)
    in[i] = (int64_t)i;
  mp_shm *seg;
  MP_ASSERT_OK(mp_shm_new(&seg, NULL, &(mp_shm_opts){.create = 1,
                                                     .size = 64}));
  unsigned seed = (unsigned)getpid();
  for (int round = 0; round < 6; round++) {
    int64_t victim = (int64_t)(rand_r(&seed) % (int)n);
    int allowed = round % 3 == 2 ? 2 : 1;
    *(int64_t *)mp_shm_buf(seg) = 0;
    memset(out, 0, n * sizeof *out);
    mp_obj *shared = MP_TUPLE(mp_shm_obj(seg), mp_int_new(victim),
                              mp_int_new(allowed));
    int rc = mp_pool_map_array(p, killer, in, sizeof *in, out, sizeof *out,
                               n, shared, &(mp_map_opts){.chunksize = 50});
    mp_obj_free(shared);
    size_t lo = (size_t)victim / 50 * 50;
    if (allowed == 1) {
      if (rc != 0)
        fail_msg("round %d: %s: %s", round, mp_err_name(rc), mp_errdetail());
      for (size_t i = 0; i < n; i++)
        assert_int_equal(out[i], 3 * in[i]);
    } else {
      assert_int_equal(rc, MP_EWORKERDIED);
      char want[64];
      snprintf(want, sizeof want, "elements %zu to %zu", lo, lo + 49);
      if (!strstr(mp_errdetail(), want) || !strstr(mp_errdetail(), "signal 9"))
        fail_msg("detail: %s", mp_errdetail());
      for (size_t i = 0; i < n; i++)
        if (i < lo || i >= lo + 50 || (int64_t)i < victim)
          assert_int_equal(out[i], 3 * in[i]);
    }
    assert_int_equal(*(int64_t *)mp_shm_buf(seg), allowed + (allowed == 1));
  }
  MP_ASSERT_OK(mp_shm_unlink(seg));
  mp_shm_free(seg);
  free(in);
  free(out);
  end_pool(p);
}

static void
test_teardown(void **state)
{
  (void)state;
  mp__forkserver_stop();
  mp_resource_tracker_stop();
}

static const struct CMUnitTest tests[] = {
    MP_TEST_METHODS_THREADING(test_map_array_doubles),
    MP_TEST_METHODS_THREADING(test_map_array_shared_and_sizes),
    MP_TEST_METHODS_THREADING(test_map_array_uneven),
    MP_TEST_METHODS_THREADING(test_map_array_in_shared_memory),
    MP_TEST_METHODS_THREADING(test_map_array_element_errors),
    MP_TEST_METHODS_THREADING(test_map_array_bad_input),
    MP_TEST_METHODS_THREADING(test_map_array_worker_killed),
    cmocka_unit_test(test_teardown),
};

MP_TEST_MAIN(tests)
