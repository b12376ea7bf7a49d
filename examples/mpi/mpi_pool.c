/* SPDX-License-Identifier: MIT */
/* The Pool on MPI: run as `mpirun -n 3 ./mpi_pool`.  Rank 0 runs main;
 * ranks 1 and 2 are the pool's workers (docs/mpi.md).  Prints
 *   map: 333833500
 *   map_array: 999999000000.0
 *   ranks: 1 2 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include "mproc/mpi.h"

static int
square(mp_obj *args, mp_obj **out)
{
  int64_t x = 0;
  mp_int_get(mp_seq_item(args, 0), &x);
  *out = mp_int_new(x * x);
  return 0;
}

static int
which_rank(mp_obj *args, mp_obj **out)
{
  (void)args;
  *out = mp_int_new(mp_mpi_rank());
  return 0;
}

static int
twice(const void *in, void *out, const mp_obj *shared)
{
  (void)shared;
  *(double *)out = 2 * *(const double *)in;
  return 0;
}

int
main(void)
{
  mp_pool *pool;
  if (mp_mpi_pool_new(&pool, NULL, NULL) != 0) {
    fprintf(stderr, "mpi_pool: %s\n", mp_errdetail());
    return 1;
  }
  /* map: the sum of x*x for x = 1..1000 */
  mp_obj *items = mp_list_new(), *out = NULL;
  for (int x = 1; x <= 1000; x++)
    mp_list_append_take(items, mp_int_new(x));
  if (mp_pool_map(pool, square, items, NULL, &out) != 0) {
    fprintf(stderr, "map: %s\n", mp_errdetail());
    return 1;
  }
  int64_t sum = 0, v;
  for (int i = 0; i < 1000; i++)
    if (mp_int_get(mp_seq_item(out, i), &v) == 0)
      sum += v;
  printf("map: %lld\n", (long long)sum);
  mp_obj_free(out);
  mp_obj_free(items);

  /* map_array: double each of 0, 1, ..., 999999 */
  size_t n = 1000000;
  double *in = malloc(n * sizeof *in), *res = malloc(n * sizeof *res);
  for (size_t i = 0; i < n; i++)
    in[i] = (double)i;
  if (mp_pool_map_array(pool, twice, in, sizeof *in, res, sizeof *res, n, NULL,
                        NULL) != 0) {
    fprintf(stderr, "map_array: %s\n", mp_errdetail());
    return 1;
  }
  double s = 0;
  for (size_t i = 0; i < n; i++)
    s += res[i];
  printf("map_array: %.1f\n", s);
  free(in);
  free(res);

  /* ranks: which ranks ran tasks (one small task per item) */
  int size = mp_mpi_size(), seen[256] = {0};
  items = mp_list_new();
  for (int i = 0; i < 64 * size; i++)
    mp_list_append_take(items, mp_int_new(i));
  if (mp_pool_map(pool, which_rank, items, &(mp_map_opts){.chunksize = 1},
                  &out) != 0) {
    fprintf(stderr, "map: %s\n", mp_errdetail());
    return 1;
  }
  size_t len = 0;
  mp_obj_len(out, &len);
  for (size_t i = 0; i < len; i++)
    if (mp_int_get(mp_seq_item(out, (int64_t)i), &v) == 0 && v >= 0 && v < 256)
      seen[v] = 1;
  printf("ranks:");
  for (int r = 0; r < 256; r++)
    if (seen[r])
      printf(" %d", r);
  printf("\n");
  mp_obj_free(out);
  mp_obj_free(items);
  mp_pool_close(pool);
  mp_pool_join(pool);
  mp_pool_free(pool);
  return 0;
}
