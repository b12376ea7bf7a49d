/* SPDX-License-Identifier: MIT */
/* Threads kept for reuse (core/threads.c): a run goes to a parked thread,
 * with the caller's signal mask; a parked thread blocks every signal, ends
 * after the idle time, and at most a few park; a fork child forgets the
 * parent's parked threads (handing them a job would wait for ever). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "testutil.h"

typedef struct job {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  pid_t tid;
  sigset_t mask;  /* the mask fn ran with */
  int hold;       /* fn waits while set */
} job;

static void
job_init(job *j)
{
  memset(j, 0, sizeof *j);
  pthread_mutex_init(&j->mu, NULL);
  pthread_cond_init(&j->cv, NULL);
}

static void
job_fn(void *arg)
{
  job *j = arg;
  pthread_mutex_lock(&j->mu);
  j->tid = (pid_t)syscall(SYS_gettid);
  pthread_sigmask(SIG_SETMASK, NULL, &j->mask);
  while (j->hold)
    pthread_cond_wait(&j->cv, &j->mu);
  j->done = 1;
  pthread_cond_broadcast(&j->cv);
  pthread_mutex_unlock(&j->mu);
}

/* Wait (at most ~10 s) for the job's end; 1 if it ended. */
static int
job_wait(job *j)
{
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 10;
  pthread_mutex_lock(&j->mu);
  while (!j->done)
    if (pthread_cond_timedwait(&j->cv, &j->mu, &until) != 0)
      break;
  int done = j->done;
  pthread_mutex_unlock(&j->mu);
  return done;
}

static void
job_release(job *j)
{
  pthread_mutex_lock(&j->mu);
  j->hold = 0;
  pthread_cond_broadcast(&j->cv);
  pthread_mutex_unlock(&j->mu);
}

/* Wait (at most ~10 s) until `n` threads are parked; 1 if they are. */
static int
wait_idle(int n)
{
  for (int i = 0; i < 10000; i++) {
    if (mp__thread_idle_count() == n)
      return 1;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  return 0;
}

/* The SigBlk mask of thread `tid` of this process; 0 if it is gone. */
static unsigned long long
blocked_of(pid_t tid, int *exists)
{
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
  FILE *f = fopen(path, "r");
  unsigned long long m = 0;
  *exists = f != NULL;
  if (f) {
    while (fgets(line, sizeof line, f))
      if (sscanf(line, "SigBlk: %llx", &m) == 1)
        break;
    fclose(f);
  }
  return m;
}

static void
test_a_parked_thread_runs_the_next_job(void **state)
{
  (void)state;
  job a, b;
  job_init(&a);
  job_init(&b);
  /* the first run: this thread's mask, SIGUSR1 blocked */
  sigset_t m, old;
  sigemptyset(&m);
  sigaddset(&m, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &m, &old);
  pthread_t t1, t2;
  int idle0 = mp__thread_idle_count();
  MP_ASSERT_OK(mp__thread_run(job_fn, &a, &t1));
  assert_true(job_wait(&a));
  assert_true(sigismember(&a.mask, SIGUSR1));
  assert_false(sigismember(&a.mask, SIGUSR2));
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  assert_true(wait_idle(idle0 + 1));
  /* parked: every signal blocked */
  int exists;
  unsigned long long blk = blocked_of(a.tid, &exists);
  assert_true(exists);
  int sigs[] = {SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGCHLD, SIGALRM};
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
    if (!(blk & (1ULL << (sigs[i] - 1))))
      fail_msg("a parked thread does not block signal %d", sigs[i]);
  /* the second run: the same thread, with this thread's mask now */
  sigemptyset(&m);
  sigaddset(&m, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &m, &old);
  MP_ASSERT_OK(mp__thread_run(job_fn, &b, &t2));
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  assert_true(job_wait(&b));
  assert_int_equal(b.tid, a.tid);
  assert_true(pthread_equal(t1, t2));
  assert_false(sigismember(&b.mask, SIGUSR1));
  assert_true(sigismember(&b.mask, SIGUSR2));
  assert_true(wait_idle(idle0 + 1));
}

static void
test_parked_threads_end_after_the_idle_time(void **state)
{
  (void)state;
  int64_t keep = __atomic_load_n(&mp__thread_idle_ns, __ATOMIC_RELAXED);
  job j[6];
  pthread_t t;
  /* six at once: at most four park afterwards */
  for (int i = 0; i < 6; i++) {
    job_init(&j[i]);
    j[i].hold = 1;
  }
  for (int i = 0; i < 6; i++)
    MP_ASSERT_OK(mp__thread_run(job_fn, &j[i], &t));
  assert_true(wait_idle(0)); /* every parked one took a job */
  for (int i = 0; i < 6; i++)
    job_release(&j[i]);
  for (int i = 0; i < 6; i++)
    assert_true(job_wait(&j[i]));
  assert_true(wait_idle(4));
  for (int i = 0; i < 50; i++) { /* and stays at four */
    assert_true(mp__thread_idle_count() <= 4);
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  /* a short idle time: the next to park ends soon, and its thread is gone */
  __atomic_store_n(&mp__thread_idle_ns, 50 * 1000 * 1000, __ATOMIC_RELAXED);
  for (int i = 0; i < 4; i++) { /* the long-parked ones take a job each */
    job_init(&j[i]);
    MP_ASSERT_OK(mp__thread_run(job_fn, &j[i], &t));
  }
  for (int i = 0; i < 4; i++)
    assert_true(job_wait(&j[i]));
  assert_true(wait_idle(0));
  int exists = 1;
  for (int i = 0; i < 1000 && exists; i++) {
    blocked_of(j[0].tid, &exists);
    if (exists) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
  }
  assert_false(exists);
  __atomic_store_n(&mp__thread_idle_ns, keep, __ATOMIC_RELAXED);
}

/* A fork child has none of the parked threads: its run starts a thread of
 * its own (handing the job to a parent's parked one would never run it). */
static void
test_fork_child_forgets_parked_threads(void **state)
{
  (void)state;
  job a;
  job_init(&a);
  pthread_t t;
  int idle0 = mp__thread_idle_count();
  MP_ASSERT_OK(mp__thread_run(job_fn, &a, &t));
  assert_true(job_wait(&a));
  assert_true(wait_idle(idle0 + 1));
  pid_t pid = fork();
  if (pid == 0) {
    if (mp__thread_idle_count() != 0)
      _exit(2);
    job c;
    job_init(&c);
    if (mp__thread_run(job_fn, &c, &t) != 0)
      _exit(3);
    _exit(job_wait(&c) ? 0 : 4);
  }
  assert_true(pid > 0);
  assert_int_equal(mp_test_wait_child(pid, 30), 0);
  assert_int_equal(mp__thread_idle_count(), idle0 + 1);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_a_parked_thread_runs_the_next_job),
    cmocka_unit_test(test_parked_threads_end_after_the_idle_time),
    cmocka_unit_test(test_fork_child_forgets_parked_threads),
};

MP_TEST_MAIN(tests)
