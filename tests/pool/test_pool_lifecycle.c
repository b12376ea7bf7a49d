/* SPDX-License-Identifier: MIT */
/* Pools at scale and at their edges: many pools created and freed leave
 * nothing behind (MP_TEST_MAIN checks fds, children, segments);
 * maxtasksperchild = 1 over many tasks; and a parent killed with SIGKILL
 * leaves no worker running (workers are daemons that die with it). */
#define _GNU_SOURCE
#include "testutil.h"
#include "tasks.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdio.h>

#include "platform/platform.h"
#include "pool/pool_internal.h"
#include "proc/proc_internal.h"

static size_t
len_of(const mp_obj *o)
{
  size_t n = 0;
  MP_ASSERT_OK(mp_obj_len(o, &n));
  return n;
}

/* The counts; a sanitizer build (MPROC_SANITIZE set by CTest)
 * starts processes ~10x slower, so it runs a tenth of them. */
static int
count(int n)
{
  const char *san = getenv("MPROC_SANITIZE");
  return san && san[0] ? n / 10 : n;
}

static void
test_many_pools(void **state)
{
  int n = count(1000); /* every method (~2-8 s each) */
  mp_obj *items = int_list(4);
  for (int i = 0; i < n; i++) {
    mp_pool *p;
    MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                     .processes = 1,
                                     .context = mp_test_context(state)}));
    if (i % 4 == 0) { /* some of them do work before they go */
      mp_obj *out;
      MP_ASSERT_OK(mp_pool_map(p, square, items, NULL, &out));
      assert_int_equal(len_of(out), 4);
      mp_obj_free(out);
    }
    if (i % 2) {
      MP_ASSERT_OK(mp_pool_close(p));
      MP_ASSERT_OK(mp_pool_join(p));
    }
    mp_pool_free(p);
  }
  mp_obj_free(items);
}

static void
test_maxtasksperchild_one_over_many_tasks(void **state)
{
  /* a worker at its limit is replaced as soon as it exits (the pool's
   * watcher wakes the handler): about a process start per task, ~1.1 ms
   * for fork and forkserver, ~2.6 ms for spawn (an exec each) with 2
   * workers on 2 CPUs.  The 10,000 for spawn would cost ~26 s
   * alone, so spawn runs 3,000.  Through the 50 ms liveness poll alone
   * this took minutes. */
  int n = count(strcmp(mp_test_method(state), "spawn") == 0 ? 3000 : 10000);
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = 2,
                                   .maxtasksperchild = 1,
                                   .context = mp_test_context(state)}));
  mp_obj *items = int_list(n), *out;
  MP_ASSERT_OK(mp_pool_map(p, square, items,
                           &(mp_map_opts){.chunksize = 1}, &out));
  assert_int_equal(len_of(out), (size_t)n);
  for (int i = 0; i < n; i += 997) {
    int64_t v;
    MP_ASSERT_OK(mp_int_get(mp_seq_item(out, i), &v));
    assert_int_equal(v, (int64_t)i * i);
  }
  mp_obj_free(out);
  mp_obj_free(items);
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
}

/* A child makes a pool, reports its workers' pids and is SIGKILLed; the
 * workers must be gone within a bounded time. */
static void
test_killed_parent_leaves_no_worker(void **state)
{
  const char *m = mp_test_method(state);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    mp_context *ctx;
    mp_pool *p;
    if (mp_get_context(m, &ctx) || mp_pool_new(&p, &(mp_pool_opts){
                                                       .processes = 2,
                                                       .context = ctx}))
      _exit(2);
    for (int i = 0; i < 8; i++) { /* both workers, most likely */
      mp_obj *args = mp_tuple_take(0), *v;
      if (mp_pool_apply(p, worker_pid, args, &v))
        _exit(3);
      int64_t w;
      mp_int_get(v, &w);
      int32_t w32 = (int32_t)w;
      if (write(fds[1], &w32, sizeof w32) != sizeof w32)
        _exit(4);
      mp_obj_free(v);
      mp_obj_free(args);
    }
    close(fds[1]);
    pause(); /* killed here */
    _exit(5);
  }
  close(fds[1]);
  int32_t pids[8];
  size_t got = 0;
  while (got < sizeof pids) {
    ssize_t r = read(fds[0], (char *)pids + got, sizeof pids - got);
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  close(fds[0]);
  assert_int_equal(got, sizeof pids);
  assert_int_equal(kill(pid, SIGKILL), 0);
  assert_int_equal(mp_test_wait_child(pid, 30), 128 + SIGKILL);
  /* the workers were the killed child's children: reparented, they must
   * end on their own (parent-death signal), within 10 s */
  for (int i = 0; i < 8; i++) {
    int alive = 1;
    for (int t = 0; t < 1000 && alive; t++) {
      alive = kill(pids[i], 0) == 0;
      if (alive) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
      }
    }
    if (alive)
      fail_msg("worker %d still runs 10 s after its parent was killed",
               (int)pids[i]);
  }
}

static mp_pool *
pool_of(mp_context *ctx, int nproc)
{
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = nproc,
                                               .context = ctx}));
  return p;
}

/* One death-watcher thread serves every pool of the process: the first pool
 * starts it, it stays between pools (idle, with every signal blocked, so a
 * process-directed signal goes to the program's threads), and
 * mp__watch_shutdown ends it. */
static void
test_one_watcher_thread_for_all_pools(void **state)
{
  mp_context *ctx = mp_test_context(state);
  mp__watch_shutdown();
  assert_int_equal(mp_test_threads_named("mproc-watch", NULL), 0);
  mp_pool *a = pool_of(ctx, 2), *b = pool_of(ctx, 1);
  assert_int_equal(mp_test_threads_named("mproc-watch", NULL), 1);
  /* a killed worker of either is still found and replaced */
  mp_obj *none = mp_tuple_take(0), *v;
  MP_ASSERT_OK(mp_pool_apply(b, worker_pid, none, &v));
  int64_t w;
  MP_ASSERT_OK(mp_int_get(v, &w));
  mp_obj_free(v);
  assert_int_equal(kill((pid_t)w, SIGKILL), 0);
  int64_t w2 = w;
  for (int i = 0; i < 3000 && w2 == w; i++) { /* at most ~30 s */
    MP_ASSERT_OK(mp_pool_apply(b, worker_pid, none, &v));
    MP_ASSERT_OK(mp_int_get(v, &w2));
    mp_obj_free(v);
  }
  assert_int_not_equal(w2, w);
  mp_pool_free(a);
  mp_pool_free(b);
  unsigned long long blocked = 0;
  assert_int_equal(mp_test_threads_named("mproc-watch", &blocked), 1);
  int sigs[] = {SIGINT, SIGTERM, SIGCHLD, SIGUSR1, SIGHUP, SIGALRM};
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
    if (!(blocked & (1ULL << (sigs[i] - 1))))
      fail_msg("the watcher does not block signal %d (SigBlk %llx)",
               sigs[i], blocked);
  mp__watch_shutdown();
  assert_int_equal(mp_test_threads_named("mproc-watch", NULL), 0);
  a = pool_of(ctx, 1); /* started again */
  assert_int_equal(mp_test_threads_named("mproc-watch", NULL), 1);
  mp_pool_free(a);
  mp_obj_free(none);
}

/* The result handler starts with the first submission, or when a worker
 * ends before one: a worker of a pool that never had work, SIGKILLed, is
 * replaced all the same (its death starts the handler), and the pool
 * then works. */
static void
test_idle_pool_replaces_a_dead_worker(void **state)
{
  mp_pool *p = pool_of(mp_test_context(state), 2);
  mp_process **kids;
  size_t nk;
  MP_ASSERT_OK(mp_active_children(&kids, &nk));
  assert_int_equal(nk, 2);
  int victim = mp_process_pid(kids[0]), other = mp_process_pid(kids[1]);
  mp_process_list_free(kids, nk);
  assert_int_equal(kill(victim, SIGKILL), 0);
  int replaced = 0;
  for (int i = 0; i < 1000 && !replaced; i++) { /* at most ~10 s */
    MP_ASSERT_OK(mp_active_children(&kids, &nk));
    for (size_t k = 0; k < nk; k++) {
      int pid = mp_process_pid(kids[k]);
      replaced |= pid != victim && pid != other;
    }
    mp_process_list_free(kids, nk);
    if (!replaced)
      usleep(10000);
  }
  if (!replaced)
    fail_msg("the killed worker %d of an idle pool was not replaced", victim);
  mp_obj *args = MP_TUPLE(mp_int_new(7));
  apply_expect_int(p, square, args, 49);
  mp_obj_free(args);
  /* The handler was started on the watcher's thread, and a thread is born
   * with its creator's name: it must still be named as a helper (and
   * there is still one watcher). */
  assert_true(mp_test_threads_named("mproc-helper", NULL) >= 1);
  assert_int_equal(mp_test_threads_named("mproc-watch", NULL), 1);
  pool_end(p);
}

/* A fork child of a process whose watcher runs has no watcher (threads do
 * not cross fork) and none of the parent's watched descriptors; its first
 * pool starts its own, which finds that pool's dead workers. */
static void
test_fork_child_starts_its_own_watcher(void **state)
{
  mp_context *ctx = mp_test_context(state);
  mp_pool *p = pool_of(ctx, 1);
  assert_int_equal(mp_test_threads_named("mproc-watch", NULL), 1);
  pid_t pid = fork();
  if (pid == 0) {
    if (mp_test_threads_named("mproc-watch", NULL) != 0)
      _exit(2);
    mp_pool *q;
    if (mp_pool_new(&q, &(mp_pool_opts){.processes = 1, .context = ctx}))
      _exit(3);
    if (mp_test_threads_named("mproc-watch", NULL) != 1)
      _exit(4);
    mp_obj *none = mp_tuple_take(0), *v;
    int64_t w = 0, w2 = 0;
    if (mp_pool_apply(q, worker_pid, none, &v) || mp_int_get(v, &w))
      _exit(5);
    mp_obj_free(v);
    if (kill((pid_t)w, SIGKILL))
      _exit(6);
    for (int i = 0; i < 3000 && (w2 == 0 || w2 == w); i++) {
      if (mp_pool_apply(q, worker_pid, none, &v) || mp_int_get(v, &w2))
        _exit(7);
      mp_obj_free(v);
    }
    mp_obj_free(none);
    mp_pool_free(q);
    _exit(w2 != w ? 0 : 8);
  }
  assert_true(pid > 0);
  assert_int_equal(mp_test_wait_child(pid, 60), 0);
  /* the parent's watcher was not disturbed */
  assert_int_equal(mp_test_threads_named("mproc-watch", NULL), 1);
  mp_obj *items = int_list(8), *out;
  MP_ASSERT_OK(mp_pool_map(p, square, items, NULL, &out));
  check_squares(out, 8);
  mp_obj_free(out);
  mp_obj_free(items);
  mp_pool_free(p);
}

/* () -> 1 when the worker has one thread, as the value layer sees it
 * (reference counts with plain stores), else 0 */
static int
one_thread(mp_obj *args, mp_obj **result)
{
  (void)args;
  *result = mp_int_new(MP__SINGLE_THREADED() ? 1 : 0);
  return 0;
}

static void
expect_one_thread_in_each_worker(mp_pool *p, const char *which)
{
  mp_obj *items = int_list(16), *out;
  MP_ASSERT_OK(mp_pool_map(p, one_thread, items,
                           &(mp_map_opts){.chunksize = 1}, &out));
  for (int i = 0; i < 16; i++) {
    int64_t v;
    MP_ASSERT_OK(mp_int_get(mp_seq_item(out, i), &v));
    if (v != 1)
      fail_msg("a worker of %s has more than one thread (item %d)", which, i);
  }
  mp_obj_free(out);
  mp_obj_free(items);
}

/* A worker has one thread, whatever its parent has: in a later pool (the
 * parent has the watcher and helpers by then, and glibc never says "one
 * thread" again in a fork child of such a process) and when it replaces
 * a dead worker (it is forked from a helper thread).  Where the value
 * layer thought otherwise, every reference count in a worker was a locked
 * add: a map of ints took twice the workers' CPU from the second pool on. */
static void
test_workers_of_later_pools_have_one_thread(void **state)
{
  mp_context *ctx = mp_test_context(state);
  if (!mp__solo_available())
    skip(); /* a sanitized build: glibc's "no" stands (test_solo) */
  mp_pool *first = pool_of(ctx, 2);
  expect_one_thread_in_each_worker(first, "the first pool");
  pool_end(first);
  mp_pool *p = pool_of(ctx, 2);
  expect_one_thread_in_each_worker(p, "a later pool");
  mp_obj *none = mp_tuple_take(0), *v;
  MP_ASSERT_OK(mp_pool_apply(p, worker_pid, none, &v));
  int64_t w, w2;
  MP_ASSERT_OK(mp_int_get(v, &w));
  mp_obj_free(v);
  assert_int_equal(kill((pid_t)w, SIGKILL), 0);
  w2 = w;
  for (int i = 0; i < 3000 && w2 == w; i++) { /* at most ~30 s */
    MP_ASSERT_OK(mp_pool_apply(p, worker_pid, none, &v));
    MP_ASSERT_OK(mp_int_get(v, &w2));
    mp_obj_free(v);
  }
  assert_int_not_equal(w2, w);
  expect_one_thread_in_each_worker(p, "a pool with a replaced worker");
  mp_obj_free(none);
  pool_end(p);
}

static const struct CMUnitTest tests[] = {
    MP_TEST_METHODS_THREADING(test_many_pools),
    MP_TEST_METHODS(test_maxtasksperchild_one_over_many_tasks),
    MP_TEST_METHODS(test_killed_parent_leaves_no_worker),
    MP_TEST_METHODS(test_one_watcher_thread_for_all_pools),
    MP_TEST_METHODS(test_idle_pool_replaces_a_dead_worker),
    MP_TEST_METHODS(test_fork_child_starts_its_own_watcher),
    MP_TEST_METHODS(test_workers_of_later_pools_have_one_thread),
};

MP_TEST_MAIN(tests)
