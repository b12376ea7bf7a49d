/* SPDX-License-Identifier: MIT */
/* Pool benchmark (issue 11): mproc's Pool beside CPython's Pool doing the
 * same job with the same start method (bench_pool.py, run as a python3
 * subprocess) and beside the raw floor -- a hand-written C program that
 * forks N workers over a static split of the same array into MAP_SHARED
 * memory.
 *
 *   map of a trivial task over 1,000,000 ints, default chunks (fork)
 *        s          goal >= 10x CPython; beside the codec's own floor
 *                   (pickling the items and the results both ways, here)
 *   map_array, trivial element function, 10,000,000 doubles
 *        M elem/s   goal >= 100, >= 0.8x the raw floor
 *   map_array, ~1 us per element, 2 workers
 *        x serial   goal >= 1.8x a serial loop in the parent
 *   apply_async + get, one at a time     us/trip   goal <= 100, >= 3x CPython
 *   imap_unordered, chunksize 1, 100,000 items   items/s  goal >= 10x CPython
 *   pool start (2 workers) + close + join, per method   ms  goal >= 10x
 *        (fork: beside two raw fork + _exit + waitpid of this process)
 *   SIGKILL of a worker to its task failing, and to the worker replaced  ms
 *
 * Every number is the best of 3 rounds.  A wrong result marks the row
 * FAILED and the exit code 1.
 *
 * Usage: bench_pool [quick] [JOB...]   JOBs: map array compute apply imapu
 *   start kill (default: all); quick (or MPROC_BENCH_SCALE=<f>) scales the
 *   counts (quick = 0.1). */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <mproc.h>

#include "bench_util.h"

#define NPROC 2

static double scale = 1.0;
static int failed;
static char pyscript[1024];

static long
N(long n)
{
  long v = (long)(n * scale);
  return v < 1 ? 1 : v;
}

static double
python(const char *job, const char *method, long n)
{
  char args[256];
  snprintf(args, sizeof args, "%s %s %ld", job, method, n);
  return bench_python(pyscript, args, -1);
}

static void
header(void)
{
  printf("| %-44s | %-30s | %10s | %-9s | %s\n", "job", "implementation",
         "result", "unit", "ratio");
  printf("|----------------------------------------------|------------------"
         "--------------|------------|-----------|------\n");
}

/* `better` is how many times better v is than ref (> 1: v is better) */
static void
row(const char *job, const char *what, double v, const char *unit,
    const char *ratio)
{
  if (v < -1e98) {
    printf("| %-44s | %-30s | %10s | %-9s |\n", job, what, "FAILED", unit);
    failed = 1;
  } else if (v < 0) {
    printf("| %-44s | %-30s | %10s | %-9s |\n", job, what, "n/a", unit);
  } else {
    printf("| %-44s | %-30s | %10.3f | %-9s | %s\n", job, what, v, unit,
           ratio ? ratio : "");
  }
  fflush(stdout);
}

static const char *
ratio(char *buf, size_t cap, double better, const char *than)
{
  if (!(better > 0))
    return "";
  snprintf(buf, cap, "%.3gx %s", better, than);
  return buf;
}

static mp_pool *
pool_new(const char *method)
{
  mp_context *ctx;
  mp_pool *p;
  if (mp_get_context(method, &ctx) ||
      mp_pool_new(&p, &(mp_pool_opts){.processes = NPROC, .context = ctx})) {
    fprintf(stderr, "bench_pool: pool: %s\n", mp_errdetail());
    exit(1);
  }
  return p;
}

static void
pool_end(mp_pool *p)
{
  mp_pool_close(p);
  mp_pool_join(p);
  mp_pool_free(p);
}

static int
identity(mp_obj *args, mp_obj **result)
{
  *result = mp_obj_ref(mp_seq_item(args, 0));
  return 0;
}

/* ---- map of 1M ints --------------------------------------------------------- */

static void
job_map(long n)
{
  mp_obj *items = mp_list_new();
  for (long i = 0; i < n; i++)
    mp_list_append_take(items, mp_int_new(i));
  mp_pool *p = pool_new("fork");
  mp_obj *warm;
  mp_obj *few = mp_list_new();
  mp_list_append_take(few, mp_int_new(1));
  mp_pool_map(p, identity, few, NULL, &warm);
  mp_obj_free(warm);
  mp_obj_free(few);
  double best = 1e99;
  for (int r = 0; r < 3; r++) {
    mp_obj *out = NULL;
    double t = now();
    int rc = mp_pool_map(p, identity, items, NULL, &out);
    double dt = now() - t;
    size_t len = 0;
    int64_t last = -1;
    if (rc || mp_obj_len(out, &len) || len != (size_t)n ||
        mp_int_get(mp_seq_item(out, n - 1), &last) || last != n - 1)
      best = -1e99;
    else if (best > -1e98 && dt < best)
      best = dt;
    mp_obj_free(out);
  }
  pool_end(p);
  /* the codec's floor: the items pickled and unpickled, and the results
   * likewise (what crosses both ways), in one thread */
  double codec = 1e99;
  for (int r = 0; r < 3; r++) {
    double t = now();
    for (int way = 0; way < 2; way++) {
      void *buf;
      size_t len;
      mp_obj *back = NULL;
      if (mp_pickle_dumps(items, NULL, &buf, &len) ||
          mp_pickle_loads(buf, len, NULL, &back))
        codec = -1;
      mp_free(buf);
      mp_obj_free(back);
    }
    double dt = now() - t;
    if (codec > 0 && dt < codec)
      codec = dt;
  }
  mp_obj_free(items);
  double py = python("map", "fork", n);
  char b[128];
  char job[64];
  snprintf(job, sizeof job, "map, trivial task, %ld ints (fork)", n);
  row(job, "CPython Pool.map", py, "s", NULL);
  row(job, "codec floor (1 thread)", codec, "s", NULL);
  row(job, "mproc mp_pool_map", best, "s", ratio(b, sizeof b, py / best,
                                                 "CPython"));
  if (codec > 0 && best > 0)
    printf("|   (mproc takes %.2fx the single-thread codec floor)\n",
           best / codec);
}

/* ---- map_array ------------------------------------------------------------- */

static int
twice(const void *in, void *out, const mp_obj *shared)
{
  (void)shared;
  *(double *)out = 2.0 * *(const double *)in;
  return 0;
}

/* ~1 us of floating point per element */
static double
heavy(double x)
{
  double acc = x;
  for (int i = 0; i < 250; i++)
    acc = acc * 0.999999 + 1e-9 * i;
  return acc;
}

static int
heavy_elem(const void *in, void *out, const mp_obj *shared)
{
  (void)shared;
  *(double *)out = heavy(*(const double *)in);
  return 0;
}

/* the raw floor: fork NPROC children over a static split, out in
 * MAP_SHARED memory, wait for them */
static double
raw_floor(const double *in, double *out, size_t n, int heavy_fn)
{
  double t = now();
  pid_t pids[NPROC];
  for (int k = 0; k < NPROC; k++) {
    size_t lo = n * (size_t)k / NPROC, hi = n * (size_t)(k + 1) / NPROC;
    if ((pids[k] = fork()) == 0) {
      for (size_t i = lo; i < hi; i++)
        out[i] = heavy_fn ? heavy(in[i]) : 2.0 * in[i];
      _exit(0);
    }
  }
  int bad = 0;
  for (int k = 0; k < NPROC; k++) {
    int st;
    while (waitpid(pids[k], &st, 0) < 0 && errno == EINTR)
      ;
    bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
  }
  return bad ? -1 : now() - t;
}

static void
job_array(long n, int heavy_fn)
{
  double *in = malloc((size_t)n * sizeof *in);
  double *out = malloc((size_t)n * sizeof *out);
  double *sout = shared((size_t)n * sizeof *sout);
  for (long i = 0; i < n; i++)
    in[i] = (double)i;
  mp_pool *p = pool_new("fork");
  double best = 1e99, raw = 1e99, serial = 1e99;
  mp_elem_fn fn = heavy_fn ? heavy_elem : twice;
  for (int r = 0; r < 3; r++) {
    memset(out, 0, (size_t)n * sizeof *out);
    double t = now();
    int rc = mp_pool_map_array(p, fn, in, sizeof *in, out, sizeof *out,
                               (size_t)n, NULL, NULL);
    double dt = now() - t;
    int ok = rc == 0;
    for (long i = 0; ok && i < n; i += 9973)
      ok = out[i] == (heavy_fn ? heavy(in[i]) : 2.0 * in[i]);
    if (!ok)
      best = -1e99;
    else if (best > -1e98 && dt < best)
      best = dt;
    double rt = raw_floor(in, sout, (size_t)n, heavy_fn);
    if (rt > 0 && rt < raw)
      raw = rt;
    if (heavy_fn) {
      t = now();
      for (long i = 0; i < n; i++)
        out[i] = heavy(in[i]);
      dt = now() - t;
      if (dt < serial)
        serial = dt;
    }
  }
  pool_end(p);
  char job[80], b[128];
  if (!heavy_fn) {
    snprintf(job, sizeof job, "map_array, trivial, %ld doubles (fork)", n);
    row(job, "raw floor (fork, static split)", n / raw / 1e6, "M elem/s",
        NULL);
    row(job, "mproc mp_pool_map_array", best > 0 ? n / best / 1e6 : best,
        "M elem/s", ratio(b, sizeof b, raw / best, "raw floor"));
  } else {
    snprintf(job, sizeof job, "map_array, ~1 us/elem, %ld, 2 workers", n);
    row(job, "serial loop in the parent", serial, "s", NULL);
    row(job, "raw floor (fork, static split)", raw, "s",
        ratio(b, sizeof b, serial / raw, "serial"));
    char b2[128];
    row(job, "mproc mp_pool_map_array", best,
        "s", ratio(b2, sizeof b2, serial / best, "serial"));
  }
  munmap(sout, (size_t)n * sizeof *sout);
  free(in);
  free(out);
}

/* ---- apply round trip, imap_unordered --------------------------------------- */

static void
job_apply(long n)
{
  mp_pool *p = pool_new("fork");
  mp_obj *args = MP_TUPLE(mp_int_new(1));
  double best = 1e99;
  for (int r = 0; r < 3; r++) {
    double t = now();
    for (long i = 0; i < n; i++) {
      mp_result *res;
      mp_obj *v = NULL;
      if (mp_pool_apply_async(p, identity, args, NULL, &res) ||
          mp_result_get(res, &v, MP_FOREVER)) {
        best = -1e99;
        break;
      }
      mp_obj_free(v);
      mp_result_free(res);
    }
    double dt = (now() - t) / n * 1e6;
    if (best > -1e98 && dt < best)
      best = dt;
  }
  mp_obj_free(args);
  pool_end(p);
  double py = python("apply", "fork", n);
  char b[128];
  row("apply_async + get, one at a time (fork)", "CPython Pool", py, "us/trip",
      NULL);
  row("apply_async + get, one at a time (fork)", "mproc", best, "us/trip",
      ratio(b, sizeof b, py / best, "CPython"));
}

static void
job_imapu(long n)
{
  mp_obj *items = mp_list_new();
  for (long i = 0; i < n; i++)
    mp_list_append_take(items, mp_int_new(i));
  mp_pool *p = pool_new("fork");
  double best = -1;
  for (int r = 0; r < 3; r++) {
    mp_imap *it;
    double t = now();
    int64_t sum = 0, v;
    int ok = mp_pool_imap_unordered(p, identity, items,
                                    &(mp_map_opts){.chunksize = 1}, &it) == 0;
    for (long i = 0; ok && i < n; i++) {
      mp_obj *o = NULL;
      ok = mp_imap_next(it, &o, MP_FOREVER) == 0 && !mp_int_get(o, &v);
      sum += v;
      mp_obj_free(o);
    }
    double rate = n / (now() - t);
    if (ok)
      mp_imap_free(it);
    if (!ok || sum != (int64_t)n * (n - 1) / 2)
      best = -1e99;
    else if (best > -1e98 && rate > best)
      best = rate;
  }
  pool_end(p);
  mp_obj_free(items);
  double py = python("imapu", "fork", n);
  char b[128], job[80];
  snprintf(job, sizeof job, "imap_unordered, chunksize 1, %ld (fork)", n);
  row(job, "CPython Pool", py, "items/s", NULL);
  row(job, "mproc", best, "items/s", ratio(b, sizeof b, best / py, "CPython"));
}

/* ---- pool start + close + join ------------------------------------------------ */

/* The fork start's floor: what a pool of 2 fork workers cannot do without,
 * two fork()s of this process, each child _exit()ing at once, both
 * waited for.  ms per pair, best of 3. */
static double
raw_two_forks(long n)
{
  double best = 1e99;
  for (int r = 0; r < 3; r++) {
    double t = now();
    for (long i = 0; i < n; i++) {
      pid_t a = fork();
      if (a == 0)
        _exit(0);
      pid_t b = fork();
      if (b == 0)
        _exit(0);
      if (a < 0 || b < 0 || waitpid(a, NULL, 0) != a || waitpid(b, NULL, 0) != b)
        return -1;
    }
    double dt = (now() - t) / n * 1e3;
    if (dt < best)
      best = dt;
  }
  return best;
}

static void
job_start(long n)
{
  const char *methods[] = {"fork", "spawn", "forkserver"};
  for (int m = 0; m < 3; m++) {
    double best = 1e99;
    for (int r = 0; r < 3; r++) {
      double t = now();
      for (long i = 0; i < n; i++)
        pool_end(pool_new(methods[m]));
      double dt = (now() - t) / n * 1e3;
      if (dt < best)
        best = dt;
    }
    double py = python("start", methods[m], n);
    char b[128], job[80];
    snprintf(job, sizeof job, "pool start (2) + close + join (%s)",
             methods[m]);
    row(job, "CPython Pool", py, "ms", NULL);
    if (m == 0) {
      /* after the pools: the process has the library's threads then, as a
       * pool's parent does */
      double raw = raw_two_forks(n);
      char rb[128];
      row(job, "raw floor (2 fork+_exit+wait)", raw, "ms",
          raw > 0 ? ratio(rb, sizeof rb, py / raw, "CPython") : NULL);
    }
    row(job, "mproc", best, "ms", ratio(b, sizeof b, py / best, "CPython"));
  }
}

/* ---- SIGKILL to failure and replacement ---------------------------------------- */

static int
victim(mp_obj *args, mp_obj **result)
{
  (void)result;
  mp_value *pid = mp_value_from_obj(mp_seq_item(args, 0));
  mp_event *started = mp_event_from_obj(mp_seq_item(args, 1));
  mp_event *never = mp_event_from_obj(mp_seq_item(args, 2));
  if (!pid || !started || !never)
    return MP_ETYPE;
  mp_value_set_int(pid, getpid());
  mp_event_set(started);
  mp_event_wait(never, MP_FOREVER);
  return 0;
}

static void
job_kill(long n)
{
  mp_pool *p;
  mp_context *ctx;
  mp_get_context("fork", &ctx);
  /* one worker: the replacement is the only one that can answer next */
  if (mp_pool_new(&p, &(mp_pool_opts){.processes = 1, .context = ctx}))
    exit(1);
  double fail_best = 1e99, repl_best = 1e99;
  mp_obj *one = MP_TUPLE(mp_int_new(1));
  for (long i = 0; i < n; i++) {
    mp_value *pid;
    mp_event *started, *never;
    mp_value_new_int(&pid, 'q', 0, NULL);
    mp_event_new(&started);
    mp_event_new(&never);
    mp_obj *args = MP_TUPLE(mp_value_obj(pid), mp_event_obj(started),
                            mp_event_obj(never));
    mp_result *r;
    int64_t v = 0;
    mp_obj *out = NULL;
    int ok = mp_pool_apply_async(p, victim, args, NULL, &r) == 0 &&
             mp_event_wait(started, 30) == 0 &&
             mp_value_get_int(pid, &v) == 0 && v > 0;
    double t = now();
    ok = ok && kill((pid_t)v, SIGKILL) == 0 &&
         mp_result_get(r, &out, 30) == MP_EWORKERDIED;
    double t1 = now();
    ok = ok && mp_pool_apply(p, identity, one, &out) == 0;
    double t2 = now();
    mp_obj_free(out);
    if (!ok) {
      fail_best = -1e99;
    } else if (fail_best > -1e98) {
      if (t1 - t < fail_best)
        fail_best = t1 - t;
      if (t2 - t < repl_best)
        repl_best = t2 - t;
    }
    mp_result_free(r);
    mp_obj_free(args);
    mp_value_free(pid);
    mp_event_free(started);
    mp_event_free(never);
  }
  mp_obj_free(one);
  pool_end(p);
  row("SIGKILL -> task fails MP_EWORKERDIED (fork)", "mproc",
      fail_best > 0 ? fail_best * 1e3 : fail_best, "ms", "CPython: never");
  row("SIGKILL -> replaced worker answers (fork)", "mproc",
      repl_best > 0 ? repl_best * 1e3 : repl_best, "ms", "CPython: never");
}

int
main(int argc, char **argv)
{
  scale = bench_scale(argc, argv, scale);
  bench_script(pyscript, sizeof pyscript, __FILE__, "bench_pool.py");
  header();
  /* pool starts and kills first, while this process is as small as
   * CPython's (a fork costs with the memory the later jobs leave mapped) */
  if (bench_want(argc, argv, "start"))
    job_start(N(50) < 3 ? 3 : N(50));
  if (bench_want(argc, argv, "kill"))
    job_kill(N(50) < 3 ? 3 : N(50));
  if (bench_want(argc, argv, "map"))
    job_map(N(1000000));
  if (bench_want(argc, argv, "array"))
    job_array(N(10000000), 0);
  if (bench_want(argc, argv, "compute"))
    job_array(N(500000), 1);
  if (bench_want(argc, argv, "apply"))
    job_apply(N(5000));
  if (bench_want(argc, argv, "imapu"))
    job_imapu(N(100000));
  return failed;
}
