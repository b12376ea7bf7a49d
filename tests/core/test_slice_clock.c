/* SPDX-License-Identifier: MIT */
/* The slice clock (core/slice_clock.c): a sleeper nobody wakes is woken
 * within about a slice -- by the clock's thread once it runs, by a timed
 * wait before that and when every slot is taken; an idle clock is woken by
 * the next sleeper; the thread blocks every signal; a fork child has none
 * and starts its own.  Each sleeper here runs on its own thread beside a
 * watchdog: one that is not back within LIMIT seconds is woken by the test
 * (so nothing hangs) and the test fails. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "platform/platform.h"
#include "testutil.h"

#define LIMIT 5.0 /* s: many slices of 20-50 ms */

static void
set_slice_ms(int ms)
{
  __atomic_store_n(&mp__slice_ns, (int64_t)ms * 1000000, __ATOMIC_RELAXED);
}

typedef struct sleeper {
  _Atomic uint32_t word; /* nobody changes it, unless rescuing */
  _Atomic int back;
  pthread_t t;
} sleeper;

static void *
sleep_once(void *arg)
{
  sleeper *s = arg;
  mp__futex_wait_slice((uint32_t *)&s->word, 0);
  atomic_store(&s->back, 1);
  return NULL;
}

static void
sleepers_start(sleeper *s, int n)
{
  for (int i = 0; i < n; i++) {
    atomic_store(&s[i].word, 0);
    atomic_store(&s[i].back, 0);
    assert_int_equal(pthread_create(&s[i].t, NULL, sleep_once, &s[i]), 0);
  }
}

/* Wait for every sleeper; those not back within LIMIT are rescued (the
 * word changed and woken).  Returns how many had to be rescued. */
static int
sleepers_join(sleeper *s, int n)
{
  double end = mp_test_now() + LIMIT;
  int rescued = 0;
  for (int i = 0; i < n; i++) {
    while (!atomic_load(&s[i].back) && mp_test_now() < end)
      usleep(2000);
    if (!atomic_load(&s[i].back)) {
      rescued++;
      atomic_store(&s[i].word, 1);
      while (!atomic_load(&s[i].back))
        mp__futex_wake((uint32_t *)&s[i].word, 1);
    }
    pthread_join(s[i].t, NULL);
  }
  return rescued;
}

/* The clock running now: the next slice wait starts it. */
static void
start_clock(void)
{
  int after = mp__slice_clock_after;
  __atomic_store_n(&mp__slice_clock_after, 0, __ATOMIC_RELAXED);
  uint32_t x = 0;
  mp__futex_wait_slice(&x, 1); /* the word differs: returns at once */
  __atomic_store_n(&mp__slice_clock_after, after, __ATOMIC_RELAXED);
  assert_int_not_equal(mp__slice_clock_state(), 0);
}

static void
test_clock_starts_after_the_first_waits_and_blocks_signals(void **state)
{
  (void)state;
  pid_t pid = fork(); /* a process that has no clock yet */
  if (pid == 0) {
    int bad = mp__slice_clock_state() != 0 ||
              mp_test_threads_named("mproc-slice", NULL) != 0;
    uint32_t x = 0;
    for (int i = 0; i < mp__slice_clock_after && !bad; i++) {
      bad = mp__slice_clock_state() != 0; /* not before its time */
      mp__futex_wait_slice(&x, 1);
    }
    mp__futex_wait_slice(&x, 1); /* the first after them starts it */
    unsigned long long blocked = 0;
    bad = bad || mp__slice_clock_state() == 0 ||
          mp_test_threads_named("mproc-slice", &blocked) != 1;
    int sigs[] = {SIGINT, SIGTERM, SIGCHLD, SIGUSR1, SIGHUP, SIGALRM};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
      bad = bad || !(blocked & (1ULL << (sigs[i] - 1)));
    _exit(bad ? 1 : 0);
  }
  assert_int_equal(mp_test_wait_child(pid, 30), 0);
}

static void
test_a_sleeper_nobody_wakes_is_woken_by_the_clock(void **state)
{
  (void)state;
  set_slice_ms(50);
  start_clock();
  sleeper s[3];
  for (int round = 0; round < 3; round++) {
    uint64_t before = mp__slice_clock_sleeps();
    sleepers_start(s, 1);
    assert_int_equal(sleepers_join(s, 1), 0); /* the tick ended it */
    /* it slept registered with the clock, not in a timed wait */
    assert_int_equal(mp__slice_clock_sleeps(), before + 1);
  }
  set_slice_ms(200);
}

static void
test_a_timed_wait_serves_before_the_clock(void **state)
{
  (void)state;
  pid_t pid = fork(); /* no clock in the child, and none will start */
  if (pid == 0) {
    __atomic_store_n(&mp__slice_clock_after, 1 << 30, __ATOMIC_RELAXED);
    set_slice_ms(30);
    sleeper s[1];
    sleepers_start(s, 1);
    int bad = sleepers_join(s, 1) != 0 || mp__slice_clock_state() != 0;
    _exit(bad ? 1 : 0);
  }
  assert_int_equal(mp_test_wait_child(pid, 30), 0);
}

static void
test_an_idle_clock_is_woken_by_the_next_sleeper(void **state)
{
  (void)state;
  set_slice_ms(20);
  start_clock();
  /* nobody registered for two periods: it goes idle */
  double end = mp_test_now() + LIMIT;
  while (mp__slice_clock_state() != 2 && mp_test_now() < end)
    usleep(5000);
  assert_int_equal(mp__slice_clock_state(), 2);
  sleeper s[1];
  sleepers_start(s, 1);
  assert_int_equal(sleepers_join(s, 1), 0);
  set_slice_ms(200);
}

static void
test_more_sleepers_than_slots_all_wake(void **state)
{
  (void)state;
  set_slice_ms(30);
  start_clock();
  enum { N = 80 }; /* the clock has 64 slots */
  sleeper *s = calloc(N, sizeof *s);
  assert_non_null(s);
  uint64_t before = mp__slice_clock_sleeps();
  sleepers_start(s, N);
  assert_int_equal(sleepers_join(s, N), 0);
  /* some slept registered, the others in timed waits */
  uint64_t reg = mp__slice_clock_sleeps() - before;
  assert_true(reg >= 1 && reg <= N);
  free(s);
  set_slice_ms(200);
}

static void
test_a_fork_child_starts_its_own_clock(void **state)
{
  (void)state;
  set_slice_ms(30);
  start_clock();
  assert_int_equal(mp_test_threads_named("mproc-slice", NULL), 1);
  pid_t pid = fork();
  if (pid == 0) {
    int bad = mp__slice_clock_state() != 0 ||
              mp_test_threads_named("mproc-slice", NULL) != 0;
    __atomic_store_n(&mp__slice_clock_after, 0, __ATOMIC_RELAXED);
    sleeper s[1];
    sleepers_start(s, 1); /* starts the child's clock, which wakes it */
    bad = bad || sleepers_join(s, 1) != 0 ||
          mp_test_threads_named("mproc-slice", NULL) != 1;
    _exit(bad ? 1 : 0);
  }
  assert_int_equal(mp_test_wait_child(pid, 30), 0);
  set_slice_ms(200);
}

static const struct CMUnitTest tests[] = {
  cmocka_unit_test(test_clock_starts_after_the_first_waits_and_blocks_signals),
  cmocka_unit_test(test_a_timed_wait_serves_before_the_clock),
  cmocka_unit_test(test_a_sleeper_nobody_wakes_is_woken_by_the_clock),
  cmocka_unit_test(test_an_idle_clock_is_woken_by_the_next_sleeper),
  cmocka_unit_test(test_more_sleepers_than_slots_all_wake),
  cmocka_unit_test(test_a_fork_child_starts_its_own_clock),
};

MP_TEST_MAIN(tests)
