/* SPDX-License-Identifier: MIT */
/* The MPI pool beside the local pool, under `mpirun -n N`:
 *   map of a trivial task over 100,000 items (default chunksize)
 *   map_array doubling 10,000,000 doubles
 * The local pool has N - 1 fork workers, as the MPI pool has N - 1 ranks.
 * bench/mpi/bench_mpi4py.py does the map with mpi4py.futures under the
 * same mpirun.  Prints a markdown table (the report's long shape, see
 * tools/bench_report.py): one row per case, items per second of the best of
 * REPEAT runs; tools/run-bench.sh appends bench_mpi4py.py's rows to it. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mproc/mpi.h"

#define REPEAT 3

static double
now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
ident(mp_obj *args, mp_obj **out)
{
  *out = mp_obj_ref(mp_seq_item(args, 0));
  return 0;
}

static int
twice(const void *in, void *out, const mp_obj *shared)
{
  (void)shared;
  *(double *)out = 2 * *(const double *)in;
  return 0;
}

static void
run(const char *label, mp_pool *p)
{
  char impl[64];
  size_t nitems = 100000, n = 10000000;
  mp_obj *items = mp_list_new();
  for (size_t i = 0; i < nitems; i++)
    mp_list_append_take(items, mp_int_new((int64_t)i));
  double best = 1e9;
  for (int r = 0; r < REPEAT; r++) {
    mp_obj *out = NULL;
    double t0 = now();
    if (mp_pool_map(p, ident, items, NULL, &out) != 0) {
      fprintf(stderr, "%s map: %s\n", label, mp_errdetail());
      exit(1);
    }
    double t = now() - t0;
    best = t < best ? t : best;
    mp_obj_free(out);
  }
  snprintf(impl, sizeof impl, "mproc %s", label);
  printf("| %-22s | %-42s | %12.0f | %-10s |\n", "map 100000 ints", impl,
         (double)nitems / best, "items/s");
  mp_obj_free(items);
  double *in = malloc(n * sizeof *in), *res = malloc(n * sizeof *res);
  for (size_t i = 0; i < n; i++)
    in[i] = (double)i;
  best = 1e9;
  for (int r = 0; r < REPEAT; r++) {
    double t0 = now();
    if (mp_pool_map_array(p, twice, in, 8, res, 8, n, NULL, NULL) != 0) {
      fprintf(stderr, "%s map_array: %s\n", label, mp_errdetail());
      exit(1);
    }
    double t = now() - t0;
    best = t < best ? t : best;
  }
  if (res[n - 1] != 2.0 * (double)(n - 1))
    fprintf(stderr, "%s map_array: wrong result\n", label);
  printf("| %-22s | %-42s | %12.0f | %-10s |\n", "map_array 10M doubles",
         impl, (double)n / best, "elements/s");
  fflush(stdout);
  free(in);
  free(res);
}

int
main(void)
{
  int size = mp_mpi_size();
  mp_pool *p = NULL;
  if (mp_mpi_pool_new(&p, NULL, NULL) != 0) {
    fprintf(stderr, "bench_mpi_pool: %s\n", mp_errdetail());
    return 1;
  }
  printf("bench_mpi_pool: %d ranks (%d workers), best of %d\n\n", size,
         size - 1, REPEAT);
  printf("| %-22s | %-42s | %12s | %-10s |\n", "job", "implementation",
         "result", "unit");
  printf("|------------------------|--------------------------------------------"
         "|--------------|------------|\n");
  char label[64];
  snprintf(label, sizeof label, "MPI pool, %d ranks", size - 1);
  run(label, p);
  mp_pool_close(p);
  mp_pool_join(p);
  mp_pool_free(p);
  mp_context *ctx = NULL;
  mp_get_context("fork", &ctx);
  if (mp_pool_new(&p, &(mp_pool_opts){.processes = size - 1, .context = ctx})
      != 0) {
    fprintf(stderr, "bench_mpi_pool: local pool: %s\n", mp_errdetail());
    return 1;
  }
  snprintf(label, sizeof label, "local pool, %d fork workers", size - 1);
  run(label, p);
  mp_pool_close(p);
  mp_pool_join(p);
  mp_pool_free(p);
  return 0;
}
