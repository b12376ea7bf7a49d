/* SPDX-License-Identifier: MIT */
/* The MPI pool's behaviour, run by tests/mpi/test_mpi.sh under
 * `mpirun -n 3` and `-n 2` (rank 0 runs main; the other ranks serve).
 *   mpi_test_pool             every Pool behaviour that applies
 *   mpi_test_pool --badref    rank 1 runs mpi_test_pool_other (another
 *                             build): a task is MP_EBADREF
 *   mpi_test_pool --die       a task kills its rank: mpirun aborts the job
 * Exit 0 when every check passed; each failed check prints a line. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "mproc/mpi.h"
#include "mproc/queue.h"

#ifdef MPI_TEST_OTHER_BUILD
/* only here so that this build's build-id differs */
const char mpi_test_other_build[] = "another build";
#endif

static int failures;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s (detail: %s)\n", __FILE__,     \
              __LINE__, #cond, mp_errdetail());                                \
      failures++;                                                              \
    }                                                                          \
  } while (0)

static double
now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t
int_arg(mp_obj *args, int i)
{
  int64_t v = 0;
  mp_int_get(mp_seq_item(args, i), &v);
  return v;
}

/* an int result's value (released) */
static int64_t
int_of(mp_obj *o)
{
  int64_t v = -1;
  mp_int_get(o, &v);
  mp_obj_free(o);
  return v;
}

static int
square(mp_obj *args, mp_obj **out)
{
  int64_t x = int_arg(args, 0);
  if (x == 13)
    return mp_seterr(MP_EINVAL, "bad item %lld", (long long)x);
  *out = mp_int_new(x * x);
  return 0;
}

static int
add(mp_obj *args, mp_obj **out)
{
  *out = mp_int_new(int_arg(args, 0) + int_arg(args, 1));
  return 0;
}

static int
my_rank(mp_obj *args, mp_obj **out)
{
  (void)args;
  *out = mp_int_new(mp_mpi_rank());
  return 0;
}

static int
nap(mp_obj *args, mp_obj **out)
{
  double s = 0;
  mp_float_get(mp_seq_item(args, 0), &s);
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
  *out = mp_int_new(mp_mpi_rank());
  return 0;
}

static int
give_handle(mp_obj *args, mp_obj **out)
{
  (void)args;
  mp_queue *q = NULL;
  int rc = mp_queue_new(&q, NULL);
  if (rc)
    return rc;
  *out = mp_queue_obj(q);
  mp_queue_free(q);
  return 0;
}

static int
die(mp_obj *args, mp_obj **out)
{
  (void)args;
  (void)out;
  raise(SIGKILL);
  return 0;
}

static int
twice(const void *in, void *out, const mp_obj *shared)
{
  double x = *(const double *)in;
  double k = 2;
  if (shared)
    mp_float_get(shared, &k);
  if (x == 5000.0 && shared)
    return mp_seterr(MP_EOVERFLOW, "element %.0f refused", x);
  *(double *)out = x * k;
  return 0;
}

static int64_t
sum_list(mp_obj *list)
{
  int64_t s = 0;
  size_t n = 0;
  mp_obj_len(list, &n);
  for (size_t i = 0; i < n; i++)
    s += int_arg(list, (int)i);
  return s;
}

static mp_obj *
range_list(int64_t lo, int64_t hi)
{
  mp_obj *l = mp_list_new();
  for (int64_t i = lo; i < hi; i++)
    mp_list_append_take(l, mp_int_new(i));
  return l;
}

static int cb_calls, ecb_calls, ecb_code;
static char ecb_text[512];
static void
on_result(mp_obj *v, void *arg)
{
  (void)arg;
  if (mp_obj_type(v) == MP_T_LIST)
    cb_calls++;
}
static void
on_error(int code, const char *detail, void *arg)
{
  (void)arg;
  ecb_calls++;
  ecb_code = code;
  snprintf(ecb_text, sizeof ecb_text, "%s", detail);
}

static int64_t next_i;
static int
next_item(void *arg, mp_obj **item)
{
  (void)arg;
  if (next_i >= 200)
    return MP_EEOF;
  *item = mp_int_new(next_i++);
  return 0;
}

static void
test_basics(mp_pool *p, int size)
{
  mp_obj *out = NULL;
  /* apply */
  CHECK(mp_pool_apply(p, square, MP_TUPLE(mp_int_new(7)), &out) == 0);
  CHECK(int_of(out) == 49);
  /* map, default chunksize and 7 */
  mp_obj *items = range_list(1, 1001);
  out = NULL;
  for (size_t cs = 0; cs < 8; cs += 7) {
    mp_obj *items2 = range_list(14, 1001); /* no 13 */
    CHECK(mp_pool_map(p, square, items2, &(mp_map_opts){.chunksize = cs},
                      &out) == 0);
    int64_t expect = 0;
    for (int64_t i = 14; i <= 1000; i++)
      expect += i * i;
    CHECK(sum_list(out) == expect);
    CHECK(int_arg(out, 0) == 14 * 14);
    mp_obj_free(out);
    mp_obj_free(items2);
  }
  /* a task error with its text: the lowest failing index */
  CHECK(mp_pool_map(p, square, items, NULL, &out) == MP_EINVAL);
  CHECK(strstr(mp_errdetail(), "bad item 13") != NULL);
  CHECK(strstr(mp_errdetail(), "MPIPoolWorker-") != NULL);
  /* starmap */
  mp_obj *pairs = mp_list_new();
  for (int i = 0; i < 100; i++)
    mp_list_append_take(pairs, MP_TUPLE(mp_int_new(i), mp_int_new(1000)));
  out = NULL;
  CHECK(mp_pool_starmap(p, add, pairs, NULL, &out) == 0);
  CHECK(sum_list(out) == 4950 + 100000);
  mp_obj_free(out);
  mp_obj_free(pairs);
  /* starmap of an item that is not a tuple: MP_ETYPE */
  mp_obj *bad = MP_LIST(mp_int_new(1));
  CHECK(mp_pool_starmap(p, add, bad, NULL, &out) == MP_ETYPE);
  mp_obj_free(bad);
  /* imap in order, imap_unordered: every result, item 13 fails in place */
  mp_imap *it = NULL;
  CHECK(mp_pool_imap(p, square, items, &(mp_map_opts){.chunksize = 3}, &it)
        == 0);
  int64_t i = 1, s = 0;
  int rc;
  mp_obj *v;
  while ((rc = mp_imap_next(it, &v, MP_FOREVER)) != MP_EEOF) {
    if (i == 13)
      CHECK(rc == MP_EINVAL && strstr(mp_errdetail(), "bad item 13"));
    else {
      CHECK(rc == 0 && int_of(v) == i * i);
    }
    i++;
  }
  CHECK(i == 1001);
  mp_imap_free(it);
  CHECK(mp_pool_imap_unordered(p, square, items, NULL, &it) == 0);
  int n = 0, errs = 0;
  while ((rc = mp_imap_next(it, &v, MP_FOREVER)) != MP_EEOF) {
    if (rc == 0) {
      int64_t x = 0;
      mp_int_get(v, &x);
      s += x;
      mp_obj_free(v);
    } else {
      errs++;
    }
    n++;
  }
  CHECK(n == 1000 && errs == 1 && s == 333833500 - 169);
  mp_imap_free(it);
  /* the iterator-fed imap */
  next_i = 0;
  CHECK(mp_pool_imap_iter(p, square, next_item, NULL,
                          &(mp_map_opts){.chunksize = 4}, &it) == 0);
  n = 0;
  while ((rc = mp_imap_next(it, &v, MP_FOREVER)) != MP_EEOF) {
    CHECK(n == 13 ? rc == MP_EINVAL : rc == 0);
    mp_obj_free(v);
    n++;
  }
  CHECK(n == 200);
  mp_imap_free(it);
  /* map_async with its callback; apply_async with its error callback */
  mp_result *r = NULL;
  mp_obj *items3 = range_list(20, 120);
  CHECK(mp_pool_map_async(p, square, items3,
                          &(mp_map_opts){.callback = on_result}, &r) == 0);
  CHECK(mp_result_get(r, &out, MP_FOREVER) == 0 && cb_calls == 1);
  mp_obj_free(out);
  mp_result_free(r);
  mp_obj_free(items3);
  CHECK(mp_pool_apply_async(p, square, MP_TUPLE(mp_int_new(13)),
                            &(mp_apply_opts){.error_callback = on_error},
                            &r) == 0);
  CHECK(mp_result_get(r, &out, MP_FOREVER) == MP_EINVAL);
  CHECK(mp_result_successful(r) == 0);
  CHECK(ecb_calls == 1 && ecb_code == MP_EINVAL &&
        strstr(ecb_text, "bad item 13"));
  mp_result_free(r);
  /* get with a timeout: not ready yet, then ready */
  CHECK(mp_pool_apply_async(p, nap, MP_TUPLE(mp_float_new(0.5)), NULL, &r)
        == 0);
  CHECK(mp_result_get(r, &out, 0.05) == MP_ETIMEDOUT);
  CHECK(mp_result_ready(r) == 0);
  CHECK(mp_result_get(r, &out, MP_FOREVER) == 0);
  mp_obj_free(out);
  mp_result_free(r);
  /* the ranks that ran tasks: every one but 0 */
  mp_obj *many = mp_list_new();
  for (int k = 0; k < 4 * size; k++)
    mp_list_append_take(many, MP_TUPLE(mp_float_new(0.02)));
  CHECK(mp_pool_starmap(p, nap, many, &(mp_map_opts){.chunksize = 1}, &out)
        == 0);
  int seen[64] = {0};
  size_t ln = 0;
  mp_obj_len(out, &ln);
  for (size_t k = 0; k < ln; k++) {
    int64_t rk = int_arg(out, (int)k);
    CHECK(rk >= 1 && rk < size);
    if (rk >= 0 && rk < 64)
      seen[rk] = 1;
  }
  for (int k = 1; k < size; k++)
    CHECK(seen[k]);
  mp_obj_free(out);
  mp_obj_free(many);
  CHECK(mp_pool_apply(p, my_rank, NULL, &out) == 0);
  mp_obj_free(out);
  /* a handle in the arguments: MP_ENOTSUP with a clear detail */
  mp_queue *q = NULL;
  CHECK(mp_queue_new(&q, NULL) == 0);
  CHECK(mp_pool_apply(p, square, MP_TUPLE(mp_queue_obj(q)), &out) ==
        MP_ENOTSUP);
  CHECK(strstr(mp_errdetail(), "handle") != NULL);
  mp_queue_free(q);
  /* a handle in a result: MP_ENOTSUP, and the rank goes on serving */
  CHECK(mp_pool_apply(p, give_handle, NULL, &out) == MP_ENOTSUP);
  CHECK(strstr(mp_errdetail(), "handle") != NULL);
  CHECK(mp_pool_apply(p, square, MP_TUPLE(mp_int_new(4)), &out) == 0);
  CHECK(int_of(out) == 16);
  /* progress (a bar on stderr) */
  CHECK(mp_pool_map(p, square, MP_LIST(mp_int_new(2), mp_int_new(3)),
                    &(mp_map_opts){.progress = 1}, &out) == 0);
  CHECK(sum_list(out) == 13);
  mp_obj_free(out);
  mp_obj_free(items);
}

static void
test_timeout(mp_pool *p)
{
  /* past its task_timeout: MP_ETIMEDOUT soon, the pool goes on */
  mp_result *r = NULL;
  mp_obj *out = NULL;
  double t0 = now();
  CHECK(mp_pool_apply_async(p, nap, MP_TUPLE(mp_float_new(1.5)),
                            &(mp_apply_opts){.task_timeout = 0.2}, &r) == 0);
  CHECK(mp_result_get(r, &out, MP_FOREVER) == MP_ETIMEDOUT);
  CHECK(now() - t0 < 1.2);
  CHECK(strstr(mp_errdetail(), "task_timeout") != NULL);
  mp_result_free(r);
  CHECK(mp_pool_apply(p, square, MP_TUPLE(mp_int_new(3)), &out) == 0);
  mp_obj_free(out);
  /* a map's chunk past it: its items MP_ETIMEDOUT */
  mp_obj *items = MP_LIST(MP_TUPLE(mp_float_new(1.0)));
  CHECK(mp_pool_starmap(p, nap, items,
                        &(mp_map_opts){.task_timeout = 0.1}, &out) ==
        MP_ETIMEDOUT);
  mp_obj_free(items);
  /* bad values as on any pool */
  CHECK(mp_pool_apply_async(p, nap, NULL,
                            &(mp_apply_opts){.task_timeout = -1}, &r) ==
        MP_EINVAL);
}

static void
test_array(mp_pool *p)
{
  size_t n = 1000000;
  double *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
  for (size_t i = 0; i < n; i++)
    in[i] = (double)i;
  CHECK(mp_pool_map_array(p, twice, in, sizeof *in, out, sizeof *out, n,
                          NULL, NULL) == 0);
  double s = 0;
  for (size_t i = 0; i < n; i++)
    s += out[i];
  CHECK(s == 999999000000.0);
  CHECK(out[12345] == 24690.0);
  /* shared, and a failing element: its index and text */
  mp_obj *k = mp_float_new(3);
  CHECK(mp_pool_map_array(p, twice, in, sizeof *in, out, sizeof *out, 10000,
                          k, &(mp_map_opts){.chunksize = 100}) ==
        MP_EOVERFLOW);
  CHECK(strstr(mp_errdetail(), "element 5000") != NULL);
  CHECK(strstr(mp_errdetail(), "refused") != NULL);
  CHECK(out[4999] == 4999.0 * 3 && out[5001] == 5001.0 * 3);
  mp_obj_free(k);
  free(in);
  free(out);
}

/* terminate: the running jobs finish on their ranks, the rest are
 * MP_ECLOSED; a new pool works after it */
static void
test_terminate(void)
{
  mp_pool *p = NULL;
  CHECK(mp_mpi_pool_new(&p, NULL, NULL) == 0);
  mp_obj *items = mp_list_new(), *out = NULL;
  for (int i = 0; i < 40; i++)
    mp_list_append_take(items, MP_TUPLE(mp_float_new(0.05)));
  mp_result *r = NULL;
  CHECK(mp_pool_starmap_async(p, nap, items, &(mp_map_opts){.chunksize = 1},
                              &r) == 0);
  double t0 = now();
  CHECK(mp_pool_terminate(p) == 0);
  CHECK(now() - t0 < 1.5);
  CHECK(mp_result_get(r, &out, MP_FOREVER) == MP_ECLOSED);
  mp_result_free(r);
  CHECK(mp_pool_apply(p, square, MP_TUPLE(mp_int_new(2)), &out) ==
        MP_ESTATE);
  CHECK(mp_pool_join(p) == 0);
  mp_pool_free(p);
  mp_obj_free(items);
}

/* Every rank busy with a task far longer than terminate may take: terminate
 * returns without waiting for them (the ranks finish their tasks, and the
 * replies are drained at exit). */
static void
test_terminate_busy_ranks(int size)
{
  mp_pool *p = NULL;
  CHECK(mp_mpi_pool_new(&p, NULL, NULL) == 0);
  int n = 2 * (size - 1); /* every thread of the pool has one in flight */
  mp_result *r[64];
  mp_obj *args = MP_TUPLE(mp_float_new(4.0));
  for (int i = 0; i < n && i < 64; i++)
    CHECK(mp_pool_apply_async(p, nap, args, NULL, &r[i]) == 0);
  mp_obj_free(args);
  struct timespec ts = {0, 300 * 1000 * 1000};
  nanosleep(&ts, NULL); /* the first jobs are running on the ranks */
  double t0 = now();
  CHECK(mp_pool_terminate(p) == 0);
  double took = now() - t0;
  CHECK(took < 2.0); /* not the 3.7 s the tasks still need */
  for (int i = 0; i < n && i < 64; i++) {
    mp_obj *out = NULL;
    CHECK(mp_result_get(r[i], &out, 0) == MP_ECLOSED);
    mp_result_free(r[i]);
  }
  mp_pool_free(p);
}

/* The program's own MPI calls on rank 0 under mp_mpi_lock while the pool's
 * threads use MPI (MPI_THREAD_SERIALIZED): a map runs meanwhile. */
static void
test_own_mpi_calls(int size)
{
  mp_pool *p = NULL;
  CHECK(mp_mpi_pool_new(&p, NULL, NULL) == 0);
  mp_obj *items = range_list(14, 20014), *out = NULL; /* square fails 13 */
  mp_result *r = NULL;
  CHECK(mp_pool_map_async(p, square, items, NULL, &r) == 0);
  for (int i = 0; i < 1000; i++) {
    int n = 0, rank = -1;
    mp_mpi_lock();
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    mp_mpi_unlock();
    if (n != size || rank != 0) {
      CHECK(n == size && rank == 0);
      break;
    }
  }
  CHECK(mp_result_get(r, &out, 60) == 0);
  size_t len = 0;
  CHECK(mp_obj_len(out, &len) == 0 && len == 20000);
  mp_obj_free(out);
  mp_result_free(r);
  mp_obj_free(items);
  mp_pool_close(p);
  CHECK(mp_pool_join(p) == 0);
  mp_pool_free(p);
}

static void
test_insights(int size)
{
  mp_pool *p = NULL;
  CHECK(mp_mpi_pool_new(&p, &(mp_pool_opts){.insights = 1}, NULL) == 0);
  mp_obj *items = range_list(14, 514), *out = NULL;
  CHECK(mp_pool_map(p, square, items, NULL, &out) == 0);
  mp_obj_free(out);
  mp_obj_free(items);
  mp_pool_insights in;
  CHECK(mp_pool_insights_get(p, &in) == 0);
  long long tasks = 0;
  for (int i = 0; i < in.nworkers; i++)
    tasks += in.workers[i].tasks;
  CHECK(tasks == 500);
  CHECK(in.nworkers == 2 * (size - 1));
  mp_pool_insights_release(&in);
  mp_pool_close(p);
  CHECK(mp_pool_join(p) == 0);
  mp_pool_free(p);
}

int
main(int argc, char **argv)
{
  int size = mp_mpi_size();
  CHECK(mp_mpi_rank() == 0);
  mp_pool *p = NULL;
  if (size < 2) {
    CHECK(mp_mpi_pool_new(&p, NULL, NULL) == MP_ESTATE);
    fprintf(stderr, "not under mpirun: run by tests/mpi/test_mpi.sh\n");
    return failures ? 1 : 77;
  }
  CHECK(mp_mpi_pool_new(&p, NULL, NULL) == 0);
  if (argc > 1 && !strcmp(argv[1], "--badref")) {
    mp_obj *out = NULL;
    CHECK(mp_pool_apply(p, square, MP_TUPLE(mp_int_new(7)), &out) ==
          MP_EBADREF);
    CHECK(strstr(mp_errdetail(), "build") != NULL);
    fprintf(stderr, "badref: %s\n", mp_errdetail());
  } else if (argc > 1 && !strcmp(argv[1], "--kill0")) {
    /* rank 0 killed holding its map_array segments: the resource tracker
     * unlinks them (test_mpi.sh looks at /dev/shm afterwards) */
    static double in[100000], res[100000];
    CHECK(mp_pool_map_array(p, twice, in, 8, res, 8, 100000, NULL, NULL) ==
          0);
    fprintf(stderr, "kill0: mapped, now SIGKILL\n");
    raise(SIGKILL);
  } else if (argc > 1 && !strcmp(argv[1], "--die")) {
    mp_obj *out = NULL;
    mp_pool_apply(p, die, NULL, &out);
    fprintf(stderr, "not reached: the job should have been aborted\n");
    return 3;
  } else {
    test_basics(p, size);
    test_timeout(p);
    test_array(p);
    mp_pool *q = NULL;
    CHECK(mp_mpi_pool_new(&q, &(mp_pool_opts){.maxtasksperchild = 1}, NULL)
          == MP_ENOTSUP);
    CHECK(mp_mpi_pool_new(&q, &(mp_pool_opts){.processes = size}, NULL) ==
          MP_EINVAL);
    test_insights(size);
    test_own_mpi_calls(size);
    test_terminate();
    test_terminate_busy_ranks(size);
  }
  mp_pool_close(p);
  CHECK(mp_pool_join(p) == 0);
  mp_pool_free(p);
  if (failures)
    fprintf(stderr, "%d checks failed\n", failures);
  else
    fprintf(stderr, "mpi_test_pool %s: all checks passed (%d ranks)\n",
            argc > 1 ? argv[1] : "", size);
  return failures ? 1 : 0;
}
