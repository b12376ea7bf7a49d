/* SPDX-License-Identifier: MIT */
/* Workers that die: SIGKILLed inside a task, exit() or a segfault in a
 * task, SIGKILLs at random instants during an imap and an imap_unordered,
 * and from a killer thread during map, apply_async and map_array.  The task the dead
 * worker was running fails with MP_EWORKERDIED (its detail names the
 * worker, the pid and the signal or exit status), every other task
 * completes with its right value, the worker is replaced, nothing hangs and
 * nothing leaks (MP_TEST_MAIN checks processes, fds and segments). */
#define _GNU_SOURCE
#include "testutil.h"
#include "tasks.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pool/pool_internal.h"
#include "proc/proc_internal.h"

#define ROUNDS 8
#define NPROC 3

/* Publishes its pid in args[0] (a Value 'q'), sets args[1] (an Event) and
 * waits for args[2], an Event nobody sets: it is killed first. */
static int
victim(mp_obj *args, mp_obj **result)
{
  (void)result;
  mp_value *pid = mp_value_from_obj(mp_seq_item(args, 0));
  mp_event *started = mp_event_from_obj(mp_seq_item(args, 1));
  mp_event *never = mp_event_from_obj(mp_seq_item(args, 2));
  if (!pid || !started || !never)
    return mp_seterr(MP_ETYPE, "victim args");
  mp_value_set_int(pid, getpid());
  mp_event_set(started);
  mp_event_wait(never, MP_FOREVER);
  return 0;
}

static int
exits_3(mp_obj *args, mp_obj **result)
{
  (void)args;
  (void)result;
  _exit(3);
}

static int
segfaults(mp_obj *args, mp_obj **result)
{
  (void)args;
  (void)result;
  signal(SIGSEGV, SIG_DFL); /* a fork child inherits cmocka's handler */
  raise(SIGSEGV);
  return 0;
}

/* A worker SIGKILLed inside a task, while a map runs beside it. */
static void
test_kill_running_task(void **state)
{
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = NPROC,
                                   .context = mp_test_context(state)}));
  mp_obj *items = int_list(500);
  for (int round = 0; round < ROUNDS; round++) {
    mp_value *pid;
    mp_event *started, *never;
    MP_ASSERT_OK(mp_value_new_int(&pid, 'q', 0, NULL));
    MP_ASSERT_OK(mp_event_new(&started));
    MP_ASSERT_OK(mp_event_new(&never));
    mp_obj *args = MP_TUPLE(mp_value_obj(pid), mp_event_obj(started),
                            mp_event_obj(never));
    mp_result *vr, *mr;
    MP_ASSERT_OK(mp_pool_apply_async(p, victim, args, NULL, &vr));
    mp_obj_free(args);
    MP_ASSERT_OK(mp_pool_map_async(p, square, items,
                                   &(mp_map_opts){.chunksize = 5}, &mr));
    MP_ASSERT_OK(mp_event_wait(started, 30.0));
    int64_t v;
    MP_ASSERT_OK(mp_value_get_int(pid, &v));
    assert_true(v > 0);
    assert_int_equal(kill((pid_t)v, SIGKILL), 0);
    mp_obj *out = NULL;
    MP_ASSERT_ERR(mp_result_get(vr, &out, 30.0), MP_EWORKERDIED);
    char want[64];
    snprintf(want, sizeof want, "(pid %d) was killed by signal 9", (int)v);
    if (!strstr(mp_errdetail(), want) || !strstr(mp_errdetail(), "PoolWorker-"))
      fail_msg("detail '%s' lacks '%s'", mp_errdetail(), want);
    MP_ASSERT_OK(mp_result_get(mr, &out, 30.0));
    check_squares(out, 500);
    mp_obj_free(out);
    mp_result_free(vr);
    mp_result_free(mr);
    mp_value_free(pid);
    mp_event_free(started);
    mp_event_free(never);
  }
  /* the pool still has its workers and works */
  mp_obj *out = NULL;
  MP_ASSERT_OK(mp_pool_map(p, square, items, NULL, &out));
  check_squares(out, 500);
  mp_obj_free(out);
  mp_obj_free(items);
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
}

/* exit(3) and a segfault inside a task. */
static void
test_task_exits_or_crashes(void **state)
{
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = 2,
                                   .context = mp_test_context(state)}));
  mp_obj *out = NULL;
  MP_ASSERT_ERR(mp_pool_apply(p, exits_3, NULL, &out), MP_EWORKERDIED);
  assert_non_null(strstr(mp_errdetail(), "exited with code 3"));
  MP_ASSERT_ERR(mp_pool_apply(p, segfaults, NULL, &out), MP_EWORKERDIED);
  if (!strstr(mp_errdetail(), "killed by signal 11"))
    fail_msg("detail: %s", mp_errdetail());
  /* in a map: that chunk's items fail, the others are right */
  mp_obj *items = int_list(40);
  mp_imap *it;
  MP_ASSERT_OK(mp_pool_imap(p, square, items, NULL, &it));
  mp_result *r;
  MP_ASSERT_OK(mp_pool_apply_async(p, exits_3, NULL, NULL, &r));
  for (int i = 0; i < 40; i++) {
    mp_obj *o;
    MP_ASSERT_OK(mp_imap_next(it, &o, 30.0));
    int64_t v;
    MP_ASSERT_OK(mp_int_get(o, &v));
    assert_int_equal(v, (int64_t)i * i);
    mp_obj_free(o);
  }
  MP_ASSERT_ERR(mp_result_get(r, &out, 30.0), MP_EWORKERDIED);
  mp_result_free(r);
  mp_imap_free(it);
  mp_obj_free(items);
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
}

/* How many times each item ran (an Array of int64, the initializer's). */
static int64_t *g_runs;

static int
keep_runs(mp_obj *initargs)
{
  mp_array *a = mp_array_from_obj(mp_seq_item(initargs, 0));
  g_runs = a ? mp_array_ptr(a) : NULL;
  return a ? 0 : mp_seterr(MP_ETYPE, "an Array");
}

/* Square, counting its runs, but item 700 ends its worker (exit code 3). */
static int
square_but_700_exits(mp_obj *args, mp_obj **result)
{
  int64_t v;
  if (mp_int_get(mp_seq_item(args, 0), &v) != 0)
    return mp_seterr(MP_ETYPE, "an int");
  __atomic_add_fetch(&g_runs[v], 1, __ATOMIC_SEQ_CST);
  if (v == 700)
    _exit(3);
  return square(args, result);
}

/* Small quick tasks go to a worker in batches of jobs (one task message
 * for many): a worker that dies inside one fails that job only; the jobs
 * of its batch before it were answered, those after it run elsewhere, and
 * each job runs once. */
static void
test_death_inside_a_batch(void **state)
{
  enum { N = 3000 };
  mp_array *runs;
  MP_ASSERT_OK(mp_array_new(&runs, 'q', N, NULL, NULL));
  mp_obj *initargs = MP_TUPLE(mp_array_obj(runs));
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = 2,
                                   .context = mp_test_context(state),
                                   .initializer = keep_runs,
                                   .initargs = initargs}));
  int64_t *counts = mp_array_ptr(runs);
  mp_obj *items = int_list(N);
  for (int unordered = 0; unordered < 2; unordered++) {
    memset(counts, 0, N * sizeof *counts);
    uint64_t batches = mp__pool_batches(p);
    mp_imap *it;
    MP_ASSERT_OK((unordered ? mp_pool_imap_unordered : mp_pool_imap)(
        p, square_but_700_exits, items, NULL, &it));
    char *seen = calloc(N, 1);
    int died = 0;
    for (int got = 0; got < N; got++) {
      mp_obj *o = NULL;
      int rc = mp_imap_next(it, &o, 30.0);
      if (rc == MP_EWORKERDIED) {
        if (!strstr(mp_errdetail(), "exited with code 3"))
          fail_msg("detail: %s", mp_errdetail());
        if (!unordered)
          assert_int_equal(got, 700);
        died++;
        continue;
      }
      MP_ASSERT_OK(rc);
      int64_t v, r = 0;
      MP_ASSERT_OK(mp_int_get(o, &v));
      mp_obj_free(o);
      while (r * r < v)
        r++;
      assert_true(r < N && r != 700 && r * r == v && !seen[r]);
      if (!unordered)
        assert_int_equal(r, got);
      seen[r] = 1;
    }
    mp_obj *o;
    MP_ASSERT_ERR(mp_imap_next(it, &o, 30.0), MP_EEOF);
    assert_int_equal(died, 1);
    for (int i = 0; i < N; i++)
      if (counts[i] != 1)
        fail_msg("item %d ran %d times", i, (int)counts[i]);
    /* the path under test was taken */
    assert_true(mp__pool_batches(p) > batches);
    mp_imap_free(it);
    free(seen);
  }
  mp_obj_free(initargs);
  mp_obj_free(items);
  pool_end(p);
  mp_array_free(runs);
}

/* SIGKILL a random worker at random instants while an imap_unordered of
 * small tasks (chunksize 1) runs: every item arrives once, right or
 * MP_EWORKERDIED, and at most one item fails per kill. */
static void
kill_random_instants(void **state, int unordered)
{
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = NPROC,
                                   .context = mp_test_context(state)}));
  enum { N = 3000 };
  mp_obj *items = int_list(N);
  srand((unsigned)time(NULL) ^ (unsigned)getpid());
  for (int round = 0; round < 3; round++) {
    mp_imap *it;
    MP_ASSERT_OK((unordered ? mp_pool_imap_unordered : mp_pool_imap)(
        p, busy_square, items, NULL, &it));
    int kills = 0, died = 0, got = 0;
    char *seen = calloc(N, 1);
    while (got < N) {
      if (kills < 5 && rand() % 300 == 0) {
        mp_process **kids;
        size_t nk;
        MP_ASSERT_OK(mp_active_children(&kids, &nk));
        if (nk > 0) {
          int pid = mp_process_pid(kids[(size_t)rand() % nk]);
          if (pid > 0 && kill(pid, SIGKILL) == 0)
            kills++;
        }
        mp_process_list_free(kids, nk);
      }
      mp_obj *o = NULL;
      int rc = mp_imap_next(it, &o, 30.0);
      if (rc == MP_EWORKERDIED) {
        died++;
      } else {
        MP_ASSERT_OK(rc);
        int64_t v;
        MP_ASSERT_OK(mp_int_get(o, &v));
        int64_t r = 0;
        while (r * r < v)
          r++;
        assert_true(r < N && r * r == v && !seen[r]);
        seen[r] = 1;
        mp_obj_free(o);
      }
      got++;
    }
    mp_obj *o;
    MP_ASSERT_ERR(mp_imap_next(it, &o, 30.0), MP_EEOF);
    print_message("round %d: %d kills, %d items failed with MP_EWORKERDIED\n",
                  round, kills, died);
    if (died > kills)
      fail_msg("%d items failed for %d kills", died, kills);
    mp_imap_free(it);
    free(seen);
  }
  mp_obj_free(items);
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
}

static void
test_kill_random_instants(void **state)
{
  kill_random_instants(state, 0);
}

static void
test_kill_random_instants_unordered(void **state)
{
  kill_random_instants(state, 1);
}

/* ---- a killer thread: SIGKILLs random workers while a blocking call runs */

typedef struct killer {
  pthread_t thread;
  int want, done, stop; /* stop: atomic */
  unsigned seed;
} killer;

static void *
killer_main(void *arg)
{
  killer *k = arg;
  while (k->done < k->want && !__atomic_load_n(&k->stop, __ATOMIC_ACQUIRE)) {
    /* pacing only (random instants), nothing waits on it */
    struct timespec ts = {0, (long)(1 + rand_r(&k->seed) % 15) * 1000000L};
    nanosleep(&ts, NULL);
    mp_process **kids;
    size_t nk;
    if (mp_active_children(&kids, &nk) != 0)
      continue;
    if (nk > 0) {
      int pid = mp_process_pid(kids[(size_t)rand_r(&k->seed) % nk]);
      if (pid > 0 && kill(pid, SIGKILL) == 0)
        k->done++;
    }
    mp_process_list_free(kids, nk);
  }
  return NULL;
}

static void
killer_start(killer *k, int want)
{
  *k = (killer){.want = want,
                .seed = (unsigned)time(NULL) ^ (unsigned)getpid()};
  assert_int_equal(pthread_create(&k->thread, NULL, killer_main, k), 0);
}

static int
killer_stop(killer *k)
{
  __atomic_store_n(&k->stop, 1, __ATOMIC_RELEASE);
  pthread_join(k->thread, NULL);
  return k->done;
}

static void
check_died_detail(void)
{
  if (!strstr(mp_errdetail(), "killed by signal 9") ||
      !strstr(mp_errdetail(), "PoolWorker-"))
    fail_msg("detail: %s", mp_errdetail());
}

/* map while workers are killed: MP_EWORKERDIED naming the signal, or every
 * value right; the pool goes on. */
static void
test_kill_during_map(void **state)
{
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = NPROC,
                                   .context = mp_test_context(state)}));
  mp_obj *items = int_list(2000);
  int failed = 0, kills = 0;
  for (int round = 0; round < ROUNDS; round++) {
    killer k;
    killer_start(&k, 2);
    mp_obj *out = NULL;
    int rc = mp_pool_map(p, busy_square, items,
                         &(mp_map_opts){.chunksize = 20}, &out);
    int nk = killer_stop(&k);
    kills += nk;
    if (rc == MP_EWORKERDIED) {
      check_died_detail();
      failed++;
      assert_true(nk > 0);
    } else {
      MP_ASSERT_OK(rc);
      check_squares(out, 2000);
    }
    mp_obj_free(out);
  }
  print_message("map: %d kills, %d of %d rounds lost a chunk\n", kills,
                failed, ROUNDS);
  mp_obj *out = NULL;
  MP_ASSERT_OK(mp_pool_map(p, square, items, NULL, &out));
  check_squares(out, 2000);
  mp_obj_free(out);
  mp_obj_free(items);
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
}

/* apply_async, many at once, while workers are killed: each result right
 * or MP_EWORKERDIED, at most one per kill. */
static void
test_kill_during_apply_async(void **state)
{
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = NPROC,
                                   .context = mp_test_context(state)}));
  enum { N = 400 };
  for (int round = 0; round < 3; round++) {
    mp_result *rs[N];
    killer k;
    killer_start(&k, 4);
    for (int i = 0; i < N; i++) {
      mp_obj *args = MP_TUPLE(mp_int_new(i));
      MP_ASSERT_OK(mp_pool_apply_async(p, busy_square, args, NULL, &rs[i]));
      mp_obj_free(args);
    }
    int died = 0;
    for (int i = 0; i < N; i++) {
      mp_obj *o = NULL;
      int rc = mp_result_get(rs[i], &o, 60.0);
      if (rc == MP_EWORKERDIED) {
        check_died_detail();
        died++;
      } else {
        MP_ASSERT_OK(rc);
        int64_t v;
        MP_ASSERT_OK(mp_int_get(o, &v));
        assert_int_equal(v, (int64_t)i * i);
      }
      mp_obj_free(o);
      mp_result_free(rs[i]);
    }
    int kills = killer_stop(&k);
    print_message("apply_async round %d: %d kills, %d failed\n", round,
                  kills, died);
    if (died > kills)
      fail_msg("%d results failed for %d kills", died, kills);
  }
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
}

static int
busy_triple(const void *in, void *out, const mp_obj *shared)
{
  (void)shared;
  volatile uint64_t acc = 0;
  for (int i = 0; i < 2000; i++)
    acc += (uint64_t)i;
  (void)acc;
  *(int64_t *)out = 3 * *(const int64_t *)in;
  return 0;
}

/* map_array while workers are killed: a dead worker's chunk runs again, so
 * the call succeeds with every element right -- unless a chunk's worker
 * was killed twice (MP_EWORKERDIED). */
static void
test_kill_during_map_array(void **state)
{
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = NPROC,
                                   .context = mp_test_context(state)}));
  size_t n = 100000;
  int64_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
  for (size_t i = 0; i < n; i++)
    in[i] = (int64_t)i;
  int failed = 0, total = 0;
  for (int round = 0; round < ROUNDS; round++) {
    memset(out, 0, n * sizeof *out);
    killer k;
    killer_start(&k, 2);
    int rc = mp_pool_map_array(p, busy_triple, in, sizeof *in, out,
                               sizeof *out, n, NULL, NULL);
    total += killer_stop(&k);
    if (rc == MP_EWORKERDIED) {
      check_died_detail();
      failed++;
    } else {
      MP_ASSERT_OK(rc);
      for (size_t i = 0; i < n; i++)
        if (out[i] != 3 * in[i])
          fail_msg("round %d: out[%zu] = %lld", round, i, (long long)out[i]);
    }
  }
  print_message("map_array: %d kills, %d of %d rounds failed\n", total,
                failed, ROUNDS);
  free(in);
  free(out);
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
}

static int
waits_forever(mp_obj *args, mp_obj **result)
{
  (void)result;
  mp_event *never = mp_event_from_obj(mp_seq_item(args, 0));
  if (!never)
    return MP_ETYPE;
  mp_event_wait(never, MP_FOREVER);
  return 0;
}

/* task_timeout: a task past it is stopped (worker killed and replaced)
 * and is MP_ETIMEDOUT; the others complete. */
static void
test_task_timeout(void **state)
{
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = 2,
                                   .context = mp_test_context(state)}));
  mp_event *never;
  MP_ASSERT_OK(mp_event_new(&never));
  mp_obj *args = MP_TUPLE(mp_event_obj(never));
  mp_obj *items = int_list(300), *out = NULL;
  for (int round = 0; round < 3; round++) {
    mp_result *r, *mr;
    MP_ASSERT_OK(mp_pool_apply_async(p, waits_forever, args,
                                     &(mp_apply_opts){.task_timeout = 0.2},
                                     &r));
    MP_ASSERT_OK(mp_pool_map_async(
        p, square, items, &(mp_map_opts){.task_timeout = 30.0}, &mr));
    MP_ASSERT_ERR(mp_result_get(r, &out, 30.0), MP_ETIMEDOUT);
    assert_int_equal(mp_result_ready(r), 1);
    if (!strstr(mp_errdetail(), "task_timeout of 0.200 s") ||
        !strstr(mp_errdetail(), "killed by signal 9"))
      fail_msg("detail: %s", mp_errdetail());
    MP_ASSERT_OK(mp_result_get(mr, &out, 30.0));
    check_squares(out, 300);
    mp_obj_free(out);
    mp_result_free(r);
    mp_result_free(mr);
  }
  mp_result *r;
  MP_ASSERT_ERR(mp_pool_apply_async(p, square, args,
                                    &(mp_apply_opts){.task_timeout = -1},
                                    &r),
                MP_EINVAL);
  mp_obj_free(args);
  mp_obj_free(items);
  mp_event_free(never);
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
}

static int
init_exits(mp_obj *initargs)
{
  (void)initargs;
  _exit(7);
}

/* Workers that crash at start (here: an initializer calling _exit) are
 * not restarted forever: after three in a row the pool fails its tasks
 * with MP_EWORKERDIED, and close + join return. */
static void
test_crash_at_start(void **state)
{
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){
                                   .processes = 2,
                                   .context = mp_test_context(state),
                                   .initializer = init_exits}));
  mp_obj *out = NULL;
  mp_obj *items = int_list(10);
  MP_ASSERT_ERR(mp_pool_map(p, square, items, NULL, &out), MP_EWORKERDIED);
  if (!strstr(mp_errdetail(), "keep dying before their first task") ||
      !strstr(mp_errdetail(), "exited with code 7"))
    fail_msg("detail: %s", mp_errdetail());
  mp_obj_free(items);
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
}

static void
test_task_timeout_threads(void **state)
{
  (void)state;
  mp_context *ctx;
  MP_ASSERT_OK(mp_get_context("threading", &ctx));
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 1,
                                               .context = ctx}));
  mp_result *r;
  MP_ASSERT_ERR(mp_pool_apply_async(p, square, NULL,
                                    &(mp_apply_opts){.task_timeout = 1},
                                    &r),
                MP_ENOTSUP);
  mp_pool_free(p);
}

static const struct CMUnitTest tests[] = {
    MP_TEST_METHODS(test_kill_running_task),
    MP_TEST_METHODS(test_task_exits_or_crashes),
    MP_TEST_METHODS(test_death_inside_a_batch),
    MP_TEST_METHODS(test_kill_random_instants),
    MP_TEST_METHODS(test_kill_random_instants_unordered),
    MP_TEST_METHODS(test_kill_during_map),
    MP_TEST_METHODS(test_kill_during_apply_async),
    MP_TEST_METHODS(test_kill_during_map_array),
    MP_TEST_METHODS(test_task_timeout),
    MP_TEST_METHODS(test_crash_at_start),
    cmocka_unit_test(test_task_timeout_threads),
};

MP_TEST_MAIN(tests)
