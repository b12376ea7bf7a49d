/* SPDX-License-Identifier: MIT */
/* A long array map with mpire's extras: mp_pool_map_array runs a C
 * function over a C array of doubles (no pickling), with a progress bar on
 * stderr while it runs (tqdm's format; redrawn in place on a terminal),
 * then the insights summary -- how long the workers took to start, waited,
 * worked, and the slowest chunks.  The work: for each x, sum_{k=1..m} 1/k
 * with m = 5000 + 10 * (x % 1000), an uneven cost per element.
 *
 *   pool_progress [METHOD [N]]   (default: the platform default, 20000)
 *
 * Prints the checksum (the same whatever the method) and the table. */
#include <stdio.h>
#include <stdlib.h>

#include <mproc.h>

/* An element: in a double x, out the sum. */
static int
work(const void *in, void *out, const mp_obj *shared)
{
  (void)shared;
  int64_t x = (int64_t)*(const double *)in;
  double s = 0;
  for (int64_t k = 1; k <= 5000 + 10 * (x % 1000); k++)
    s += 1.0 / (double)k;
  *(double *)out = s;
  return 0;
}

static int
fail(const char *what, int rc)
{
  fprintf(stderr, "pool_progress: %s: %s: %s\n", what, mp_strerror(rc),
          mp_errdetail());
  return 1;
}

int
main(int argc, char **argv)
{
  mp_context *ctx = NULL;
  int rc;
  if (argc > 1 && (rc = mp_get_context(argv[1], &ctx)) != 0)
    return fail("context", rc);
  long n = argc > 2 ? atol(argv[2]) : 20000;
  if (n < 0)
    return fail("N", MP_EINVAL);
  mp_pool *pool;
  if ((rc = mp_pool_new(&pool, &(mp_pool_opts){.processes = 2,
                                                .context = ctx,
                                                .insights = 1})) != 0)
    return fail("Pool", rc);
  double *xs = malloc((size_t)(n ? n : 1) * sizeof *xs);
  double *sums = malloc((size_t)(n ? n : 1) * sizeof *sums);
  if (!xs || !sums)
    return fail("malloc", MP_ENOMEM);
  for (long i = 0; i < n; i++)
    xs[i] = (double)i;
  if ((rc = mp_pool_map_array(pool, work, xs, sizeof *xs, sums, sizeof *sums,
                              (size_t)n, NULL,
                              &(mp_map_opts){.chunksize = 50,
                                             .progress = 1})) != 0)
    return fail("map_array", rc);
  double sum = 0;
  for (long i = 0; i < n; i++)
    sum += sums[i];
  printf("%ld results, checksum %.6e\n", n, sum);
  free(xs);
  free(sums);
  if ((rc = mp_pool_close(pool)) != 0 || (rc = mp_pool_join(pool)) != 0)
    return fail("close/join", rc);
  if ((rc = mp_pool_insights_print(pool, stdout)) != 0)
    return fail("insights", rc);
  mp_pool_free(pool);
  return 0;
}
