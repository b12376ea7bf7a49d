/* SPDX-License-Identifier: MIT */
/* mpire's extras under every start method: the worker's id (stable across
 * replacement), its state (kept between its tasks, fresh for a
 * replacement), the exit hook and its results, shared data (the parent's
 * own object under fork and threads, a copy otherwise), CPU pinning and
 * its bad input, insights (figures, slowest tasks, the summary table) and
 * the progress bars' limit. */
#define _GNU_SOURCE
#include "testutil.h"

#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pool/pool_internal.h"
#include "proc/proc_internal.h"

static int
is_threading(void **state)
{
  return strcmp(mp_test_method(state), "threading") == 0;
}

static void
sleep_ms(int64_t ms)
{
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

/* (worker id, pid, state["count"] after adding 1) */
static int
whoami(mp_obj *args, mp_obj **result)
{
  (void)args;
  mp_obj *st = mp_pool_worker_state();
  if (!st)
    return mp_seterr(MP_ESTATE, "no worker state");
  int64_t count = 0;
  mp_obj *c = mp_dict_get_str(st, "count");
  if (c && mp_int_get(c, &count))
    return MP_ETYPE;
  int rc = mp_dict_set_take(st, mp_str_new("count"), mp_int_new(count + 1));
  if (rc)
    return rc;
  *result = MP_TUPLE(mp_int_new(mp_pool_worker_id()), mp_int_new(getpid()),
                     mp_int_new(count + 1));
  return *result ? 0 : MP_ENOMEM;
}

static void
get3(mp_obj *t, int64_t *a, int64_t *b, int64_t *c)
{
  MP_ASSERT_OK(mp_int_get(mp_seq_item(t, 0), a));
  MP_ASSERT_OK(mp_int_get(mp_seq_item(t, 1), b));
  MP_ASSERT_OK(mp_int_get(mp_seq_item(t, 2), c));
}

static void
close_join(mp_pool *p)
{
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_free(p);
}

static mp_obj *
int_list(int n)
{
  mp_obj *l = mp_list_new();
  for (int i = 0; i < n; i++)
    assert_int_equal(mp_list_append_take(l, mp_int_new(i)), 0);
  return l;
}

/* ids in 0..n-1; state kept by one worker across its tasks, starting from
 * worker_state; outside a worker: -1 and NULL */
static void
test_worker_id_and_state(void **state)
{
  assert_int_equal(mp_pool_worker_id(), -1);
  assert_null(mp_pool_worker_state());
  assert_null(mp_pool_shared());
  mp_obj *init = MP_DICT(mp_str_new("count"), mp_int_new(100));
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 2,
                                                .context = mp_test_context(state),
                                                .worker_state = init}));
  mp_obj *items = int_list(40), *out;
  MP_ASSERT_OK(mp_pool_map(p, whoami, items, &(mp_map_opts){.chunksize = 1},
                           &out));
  /* per worker id, the counts are 101, 102, ... in some order: their sum
   * and count tell */
  int64_t seen[2] = {0, 0}, sum[2] = {0, 0};
  for (size_t i = 0; i < 40; i++) {
    int64_t id, pid, count;
    get3(mp_seq_item(out, i), &id, &pid, &count);
    assert_true(id == 0 || id == 1);
    seen[id]++;
    sum[id] += count;
  }
  for (int k = 0; k < 2; k++)
    assert_int_equal(sum[k], seen[k] * 100 + seen[k] * (seen[k] + 1) / 2);
  mp_obj_free(out);
  /* the parent's dict is untouched */
  int64_t c;
  MP_ASSERT_OK(mp_int_get(mp_dict_get_str(init, "count"), &c));
  assert_int_equal(c, 100);
  mp_obj_free(items);
  mp_obj_free(init);
  close_join(p);
  /* not a dict */
  mp_obj *bad = mp_list_new();
  MP_ASSERT_ERR(mp_pool_new(&p, &(mp_pool_opts){.worker_state = bad}),
                MP_EINVAL);
  mp_obj_free(bad);
}

/* a replacement keeps its place's id and starts from a fresh state */
static void
test_id_stable_across_replacement(void **state)
{
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 1,
                                                .context = mp_test_context(state),
                                                .maxtasksperchild = 2}));
  int64_t pids[6];
  for (int i = 0; i < 6; i++) {
    mp_obj *out;
    MP_ASSERT_OK(mp_pool_apply(p, whoami, NULL, &out));
    int64_t id, count;
    get3(out, &id, &pids[i], &count);
    mp_obj_free(out);
    assert_int_equal(id, 0);
    assert_int_equal(count, i % 2 + 1); /* 1, 2, then a new worker */
  }
  if (!is_threading(state)) {
    assert_true(pids[0] == pids[1] && pids[1] != pids[2]);
    assert_true(pids[2] == pids[3] && pids[3] != pids[4]);
  }
  close_join(p);
}

/* the exit hook returns (id, tasks it ran) */
static int
exit_hook(mp_obj **result)
{
  mp_obj *c = mp_dict_get_str(mp_pool_worker_state(), "count");
  *result = MP_TUPLE(mp_int_new(mp_pool_worker_id()),
                     c ? mp_obj_ref(c) : mp_int_new(0));
  return *result ? 0 : MP_ENOMEM;
}

static int
exit_hook_fails(mp_obj **result)
{
  (void)result;
  return mp_seterr(MP_EINVAL, "this exit hook always fails");
}

static void
test_exit_hook(void **state)
{
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 2,
                                                .context = mp_test_context(state),
                                                .worker_exit = exit_hook}));
  mp_obj *items = int_list(30), *out;
  MP_ASSERT_OK(mp_pool_map(p, whoami, items, &(mp_map_opts){.chunksize = 1},
                           &out));
  mp_obj_free(out);
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  MP_ASSERT_OK(mp_pool_exit_results(p, &out));
  size_t n;
  MP_ASSERT_OK(mp_obj_len(out, &n));
  assert_int_equal(n, 2); /* one per worker that ended cleanly */
  int64_t total = 0, ids = 0;
  for (size_t i = 0; i < n; i++) {
    int64_t id, count;
    MP_ASSERT_OK(mp_int_get(mp_seq_item(mp_seq_item(out, i), 0), &id));
    MP_ASSERT_OK(mp_int_get(mp_seq_item(mp_seq_item(out, i), 1), &count));
    ids |= (int64_t)1 << id;
    total += count;
  }
  assert_int_equal(ids, 3);
  assert_int_equal(total, 30);
  mp_obj_free(out);
  mp_pool_free(p);

  /* replaced workers (maxtasksperchild) report too */
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 1,
                                                .context = mp_test_context(state),
                                                .maxtasksperchild = 1,
                                                .worker_exit = exit_hook}));
  for (int i = 0; i < 3; i++) {
    MP_ASSERT_OK(mp_pool_apply(p, whoami, NULL, &out));
    mp_obj_free(out);
  }
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  MP_ASSERT_OK(mp_pool_exit_results(p, &out));
  MP_ASSERT_OK(mp_obj_len(out, &n));
  assert_true(n == 3 || n == 4); /* 3 replaced; the last one's successor,
                                    if started, ran nothing */
  for (size_t i = 0; i < 3; i++) {
    int64_t count;
    MP_ASSERT_OK(mp_int_get(mp_seq_item(mp_seq_item(out, i), 1), &count));
    assert_int_equal(count, 1);
  }
  mp_obj_free(out);
  mp_pool_free(p);

  /* terminated workers do not run it; a failing hook is logged, nothing
   * collected */
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 2,
                                                .context = mp_test_context(state),
                                                .worker_exit = exit_hook}));
  MP_ASSERT_OK(mp_pool_terminate(p));
  MP_ASSERT_OK(mp_pool_exit_results(p, &out));
  MP_ASSERT_OK(mp_obj_len(out, &n));
  assert_int_equal(n, 0);
  mp_obj_free(out);
  mp_pool_free(p);
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 2,
                                                .context = mp_test_context(state),
                                                .worker_exit = exit_hook_fails}));
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  MP_ASSERT_OK(mp_pool_exit_results(p, &out));
  MP_ASSERT_OK(mp_obj_len(out, &n));
  assert_int_equal(n, 0);
  mp_obj_free(out);
  mp_pool_free(p);
  mp_obj_free(items);
  MP_ASSERT_ERR(mp_pool_exit_results(NULL, &out), MP_EINVAL);
}

/* (address of the shared object, its length, the sum of its items) */
static int
read_shared(mp_obj *args, mp_obj **result)
{
  (void)args;
  const mp_obj *sh = mp_pool_shared();
  if (!sh) {
    *result = NULL;
    return 0;
  }
  mp_obj *const *v;
  size_t n;
  int rc = mp_seq_items(sh, &v, &n);
  if (rc)
    return rc;
  int64_t sum = 0;
  for (size_t i = 0; i < n; i++) {
    int64_t x;
    if (mp_int_get(v[i], &x) == 0)
      sum += x;
  }
  *result = MP_TUPLE(mp_uint_new((uint64_t)(uintptr_t)sh),
                     mp_int_new((int64_t)n), mp_int_new(sum));
  return *result ? 0 : MP_ENOMEM;
}

static void
test_shared(void **state)
{
  enum { N = 100000 };
  mp_obj *big = int_list(N);
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 2,
                                                .context = mp_test_context(state),
                                                .shared = big,
                                                .maxtasksperchild = 3}));
  mp_obj *items = int_list(12), *out;
  MP_ASSERT_OK(mp_pool_map(p, read_shared, items,
                           &(mp_map_opts){.chunksize = 1}, &out));
  const char *m = mp_test_method(state);
  int same_object = !strcmp(m, "fork") || !strcmp(m, "threading");
  for (size_t i = 0; i < 12; i++) {
    int64_t len, sum;
    uint64_t addr;
    mp_obj *t = mp_seq_item(out, i);
    MP_ASSERT_OK(mp_uint_get(mp_seq_item(t, 0), &addr));
    MP_ASSERT_OK(mp_int_get(mp_seq_item(t, 1), &len));
    MP_ASSERT_OK(mp_int_get(mp_seq_item(t, 2), &sum));
    assert_int_equal(len, N);
    assert_int_equal(sum, (int64_t)N * (N - 1) / 2);
    /* fork: the parent's object itself, inherited (never pickled) */
    if (same_object)
      assert_true(addr == (uint64_t)(uintptr_t)big);
  }
  mp_obj_free(out);
  mp_obj_free(items);
  close_join(p);
  mp_obj_free(big);
  /* none given: NULL */
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 1,
                                                .context = mp_test_context(state)}));
  MP_ASSERT_OK(mp_pool_apply(p, read_shared, NULL, &out));
  assert_null(out);
  close_join(p);
}

/* (worker id, the CPUs it may run on as a list) */
static int
my_cpus(mp_obj *args, mp_obj **result)
{
  (void)args;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0)
    return -errno;
  mp_obj *l = mp_list_new();
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &set))
      mp_list_append_take(l, mp_int_new(c));
  *result = MP_TUPLE(mp_int_new(mp_pool_worker_id()), l);
  return *result ? 0 : MP_ENOMEM;
}

/* The first two CPUs this process may use (-1 when there is one only). */
static void
two_cpus(int *a, int *b)
{
  cpu_set_t set;
  CPU_ZERO(&set);
  assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
  *a = *b = -1;
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &set)) {
      if (*a < 0)
        *a = c;
      else if (*b < 0)
        *b = c;
    }
}

static mp_obj *
cpus_of(mp_pool *p)
{
  mp_obj *items = int_list(8), *out;
  MP_ASSERT_OK(mp_pool_map(p, my_cpus, items, &(mp_map_opts){.chunksize = 1},
                           &out));
  mp_obj_free(items);
  return out;
}

static void
test_cpu_ids(void **state)
{
  int a, b;
  two_cpus(&a, &b);
  mp_pool *p;
  /* one entry: every worker on CPU a */
  mp_obj *ids = MP_LIST(mp_int_new(a));
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 2,
                                                .context = mp_test_context(state),
                                                .cpu_ids = ids}));
  mp_obj_free(ids);
  mp_obj *out = cpus_of(p), *want = MP_LIST(mp_int_new(a));
  for (size_t i = 0; i < 8; i++)
    assert_true(mp_obj_equal(mp_seq_item(mp_seq_item(out, i), 1), want));
  mp_obj_free(want);
  mp_obj_free(out);
  close_join(p);
  if (b >= 0) {
    /* one per worker: worker k on its own CPU; and a list entry */
    ids = MP_LIST(mp_int_new(b), MP_LIST(mp_int_new(a), mp_int_new(b)));
    MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 2,
                                                  .context = mp_test_context(state),
                                                  .cpu_ids = ids}));
    mp_obj_free(ids);
    out = cpus_of(p);
    mp_obj *w0 = MP_LIST(mp_int_new(b)),
           *w1 = MP_LIST(mp_int_new(a), mp_int_new(b));
    for (size_t i = 0; i < 8; i++) {
      int64_t id;
      MP_ASSERT_OK(mp_int_get(mp_seq_item(mp_seq_item(out, i), 0), &id));
      assert_true(mp_obj_equal(mp_seq_item(mp_seq_item(out, i), 1),
                               id == 0 ? w0 : w1));
    }
    mp_obj_free(w0);
    mp_obj_free(w1);
    mp_obj_free(out);
    close_join(p);
  }
  /* the parent is not pinned by it */
  int a2, b2;
  two_cpus(&a2, &b2);
  assert_int_equal(a2, a);
  assert_int_equal(b2, b);
  /* bad input */
  mp_obj *bad[] = {
      MP_LIST(mp_int_new(CPU_SETSIZE + 5)),
      MP_LIST(mp_int_new(-1)),
      MP_LIST(mp_str_new("0")),
      MP_LIST(mp_int_new(a), mp_int_new(a), mp_int_new(a)),
      mp_list_new(),
      mp_int_new(0),
      MP_LIST(mp_list_new()),
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    p = NULL;
    MP_ASSERT_ERR(mp_pool_new(&p, &(mp_pool_opts){.processes = 2,
                                                  .context = mp_test_context(state),
                                                  .cpu_ids = bad[i]}),
                  MP_EINVAL);
    assert_null(p);
    assert_true(strstr(mp_errdetail(), "cpu_ids") != NULL);
    mp_obj_free(bad[i]);
  }
}

static int
init_sleep(mp_obj *initargs)
{
  (void)initargs;
  sleep_ms(30);
  return 0;
}

/* item i sleeps 1 ms, item 17 60 ms, item 5 40 ms */
static int
uneven(mp_obj *args, mp_obj **result)
{
  int64_t x;
  int rc = mp_int_get(mp_seq_item(args, 0), &x);
  if (rc)
    return rc;
  sleep_ms(x == 17 ? 60 : x == 5 ? 40 : 1);
  *result = mp_int_new(x);
  return 0;
}

static void
test_insights(void **state)
{
  mp_pool *p;
  mp_pool_insights in;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 2,
                                                .context = mp_test_context(state),
                                                .insights = 1,
                                                .initializer = init_sleep}));
  mp_obj *items = int_list(40), *out;
  MP_ASSERT_OK(mp_pool_map(p, uneven, items, &(mp_map_opts){.chunksize = 4},
                           &out));
  mp_obj_free(out);
  MP_ASSERT_OK(mp_pool_insights_get(p, &in));
  assert_int_equal(in.nworkers, 2);
  long long tasks = 0, jobs = 0;
  double working = 0;
  for (int k = 0; k < 2; k++) {
    mp_pool_worker_insights *w = &in.workers[k];
    assert_int_equal(w->id, k);
    assert_int_equal(w->starts, 1);
    assert_true(w->startup > 0 && w->startup < 60);
    assert_true(w->init >= 0.029);
    assert_true(w->waiting >= 0);
    tasks += w->tasks;
    jobs += w->jobs;
    working += w->working;
  }
  assert_int_equal(tasks, 40);
  assert_int_equal(jobs, 10);
  /* 38 ms + 60 + 40 of sleeping at least */
  assert_true(working >= 0.138);
  assert_true(in.nslowest == 5);
  /* 17 and 5 are among the slowest, with at least their sleep (which of
   * them comes first is up to the machine's load: no order asserted
   * between them), the list sorted */
  int seen17 = 0, seen5 = 0;
  for (int i = 0; i < 5; i++) {
    if (in.slowest[i].index == 17) {
      seen17 = 1;
      assert_string_equal(in.slowest[i].args, "(17,)");
      assert_true(in.slowest[i].seconds >= 0.06);
    } else if (in.slowest[i].index == 5) {
      seen5 = 1;
      assert_string_equal(in.slowest[i].args, "(5,)");
      assert_true(in.slowest[i].seconds >= 0.04);
    }
    if (i > 0)
      assert_true(in.slowest[i].seconds <= in.slowest[i - 1].seconds);
  }
  assert_true(seen17 && seen5);
  mp_pool_insights_release(&in);
  /* the summary table */
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  MP_ASSERT_OK(mp_pool_insights_print(p, f));
  fclose(f);
  assert_non_null(strstr(buf, "Pool insights (2 workers)"));
  assert_non_null(strstr(buf, "total"));
  assert_non_null(strstr(buf, "item 17  args (17,)"));
  assert_non_null(strstr(buf, "item 5  args (5,)"));
  free(buf);
  /* readable after join */
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  MP_ASSERT_OK(mp_pool_insights_get(p, &in));
  assert_int_equal(in.workers[0].tasks + in.workers[1].tasks, 40);
  mp_pool_insights_release(&in);
  mp_pool_free(p);
  mp_obj_free(items);
  /* off: MP_ESTATE */
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 1,
                                                .context = mp_test_context(state)}));
  MP_ASSERT_ERR(mp_pool_insights_get(p, &in), MP_ESTATE);
  MP_ASSERT_ERR(mp_pool_insights_print(p, NULL), MP_ESTATE);
  MP_ASSERT_ERR(mp_pool_insights_get(NULL, &in), MP_EINVAL);
  close_join(p);
}

/* replacements add up in their place */
static void
test_insights_replacement(void **state)
{
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 1,
                                                .context = mp_test_context(state),
                                                .insights = 1,
                                                .maxtasksperchild = 2}));
  for (int i = 0; i < 6; i++) {
    mp_obj *out;
    MP_ASSERT_OK(mp_pool_apply(p, whoami, NULL, &out));
    mp_obj_free(out);
  }
  MP_ASSERT_OK(mp_pool_close(p));
  MP_ASSERT_OK(mp_pool_join(p));
  mp_pool_insights in;
  MP_ASSERT_OK(mp_pool_insights_get(p, &in));
  assert_true(in.workers[0].starts >= 3);
  assert_int_equal(in.workers[0].tasks, 6);
  assert_int_equal(in.workers[0].jobs, 6);
  mp_pool_insights_release(&in);
  mp_pool_free(p);
}

/* What an array map's worker does (pool_internal.h): one batch of 1000
 * elements fed to the insights with mp__wx_batch, 30 ms long. */
static int
batch_task(mp_obj *args, mp_obj **result)
{
  (void)args;
  (void)result;
  mp__wctx *wx = mp__wx_cur();
  if (!wx)
    return mp_seterr(MP_ESTATE, "no worker context");
  int64_t t0 = mp__now_ns();
  sleep_ms(30);
  mp__wx_batch(wx, 0, 1000, t0, 0, 5000, "elements 5000-5999");
  return 0;
}

static void
test_batch_feed(void **state)
{
  assert_null(mp__wx_cur());
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 1,
                                                .context = mp_test_context(state),
                                                .insights = 1}));
  mp_obj *out = NULL;
  MP_ASSERT_OK(mp_pool_apply(p, batch_task, NULL, &out));
  mp_pool_insights in;
  MP_ASSERT_OK(mp_pool_insights_get(p, &in));
  /* the batch's 1000 and the apply itself */
  assert_int_equal(in.workers[0].tasks, 1001);
  assert_int_equal(in.workers[0].jobs, 1);
  /* the batch, and the apply around it (args ()) */
  assert_int_equal(in.nslowest, 2);
  int b = strcmp(in.slowest[0].args, "()") == 0 ? 1 : 0;
  assert_string_equal(in.slowest[b].args, "elements 5000-5999");
  assert_string_equal(in.slowest[1 - b].args, "()");
  assert_int_equal(in.slowest[b].index, 5000);
  assert_true(in.slowest[b].seconds >= 0.03);
  mp_pool_insights_release(&in);
  close_join(p);
}

static int
wait_event(mp_obj *args, mp_obj **result)
{
  (void)result;
  mp_event *ev = mp_event_from_obj(mp_seq_item(args, 0));
  return ev ? mp_event_wait(ev, MP_FOREVER) : MP_ETYPE;
}

/* 31 bars at once; the 32nd is MP_EBUSY; a slot ends with its map */
static void
test_progress_limit(void **state)
{
  int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
  assert_true(saved >= 0 && devnull >= 0);
  dup2(devnull, 2);
  close(devnull);
  mp_pool *p;
  MP_ASSERT_OK(mp_pool_new(&p, &(mp_pool_opts){.processes = 1,
                                                .context = mp_test_context(state)}));
  mp_event *ev;
  MP_ASSERT_OK(mp_event_new(&ev));
  mp_obj *items = MP_LIST(MP_TUPLE(mp_event_obj(ev)));
  mp_result *r[32];
  for (int i = 0; i < 31; i++)
    MP_ASSERT_OK(mp_pool_starmap_async(p, wait_event, items,
                                       &(mp_map_opts){.progress = 1}, &r[i]));
  MP_ASSERT_ERR(mp_pool_starmap_async(p, wait_event, items,
                                      &(mp_map_opts){.progress = 1}, &r[31]),
                MP_EBUSY);
  MP_ASSERT_OK(mp_event_set(ev));
  for (int i = 0; i < 31; i++) {
    mp_obj *out;
    MP_ASSERT_OK(mp_result_get(r[i], &out, 60));
    mp_obj_free(out);
    mp_result_free(r[i]);
  }
  /* the slots are free again */
  MP_ASSERT_OK(mp_pool_starmap_async(p, wait_event, items,
                                     &(mp_map_opts){.progress = 1}, &r[0]));
  mp_obj *out;
  MP_ASSERT_OK(mp_result_get(r[0], &out, 60));
  mp_obj_free(out);
  mp_result_free(r[0]);
  mp_obj_free(items);
  close_join(p);
  mp_event_free(ev);
  dup2(saved, 2);
  close(saved);
}

/* tqdm's format, exactly; integer percentages (29/100 is 29%) */
static void
test_bar_format(void **state)
{
  (void)state;
  char b[256];
  mp__bar_format(b, sizeof b, 450, 1000, 2.5);
  assert_string_equal(b, " 45%|████▌     | 450/1000 [00:02<00:03, 180.0it/s]");
  mp__bar_format(b, sizeof b, 0, 1000, 0);
  assert_string_equal(b, "  0%|          | 0/1000 [00:00<?, ?it/s]");
  mp__bar_format(b, sizeof b, 29, 100, 1.0);
  assert_string_equal(b, " 29%|██▉       | 29/100 [00:01<00:02, 29.0it/s]");
  mp__bar_format(b, sizeof b, 1000, 1000, 4000.0);
  assert_string_equal(b, "100%|██████████| 1000/1000 [1:06:40<00:00, 4.0s/it]");
  mp__bar_format(b, sizeof b, 1, 3, 60.0);
  assert_string_equal(b, " 33%|███▎      | 1/3 [01:00<02:00, 60.0s/it]");
}

static const struct CMUnitTest tests[] = {
    MP_TEST_METHODS_THREADING(test_worker_id_and_state),
    MP_TEST_METHODS_THREADING(test_id_stable_across_replacement),
    MP_TEST_METHODS_THREADING(test_exit_hook),
    MP_TEST_METHODS_THREADING(test_shared),
    MP_TEST_METHODS_THREADING(test_cpu_ids),
    MP_TEST_METHODS_THREADING(test_insights),
    MP_TEST_METHODS_THREADING(test_insights_replacement),
    MP_TEST_METHODS_THREADING(test_progress_limit),
    MP_TEST_METHODS_THREADING(test_batch_feed),
    cmocka_unit_test(test_bar_format),
};

MP_TEST_MAIN(tests)
