/* SPDX-License-Identifier: MIT */
/* A long map with mpire's extras: a progress bar on stderr while it runs
 * (tqdm's format; redrawn in place on a terminal), then the insights
 * summary -- how long the workers took to start, waited, worked, and the
 * slowest tasks.  The work: for each x, sum_{k=1..m} 1/k with
 * m = 5000 + 10 * (x % 1000), an uneven cost per item.
 *
 *   pool_progress [METHOD [N]]   (default: the platform default, 20000)
 *
 * Prints the checksum (the same whatever the method) and the table. */
/* TODO(map_array): once mp_pool_map_array lands, map a C function over a
 * double array instead (no pickling), with the same opts.progress; the
 * insights come out the same way. */
#include <stdio.h>
#include <stdlib.h>

#include <mproc.h>

static int
work(mp_obj *args, mp_obj **result)
{
  int64_t x;
  int rc = mp_args_parse(args, "L:work", &x);
  if (rc)
    return rc;
  double s = 0;
  for (int64_t k = 1; k <= 5000 + 10 * (x % 1000); k++)
    s += 1.0 / (double)k;
  *result = mp_float_new(s);
  return *result ? 0 : MP_ENOMEM;
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
  mp_obj *items = mp_list_new();
  for (long i = 0; i < n; i++)
    mp_list_append_take(items, mp_int_new(i));
  mp_obj *out;
  if ((rc = mp_pool_map(pool, work, items,
                        &(mp_map_opts){.chunksize = 50, .progress = 1},
                        &out)) != 0)
    return fail("map", rc);
  mp_obj *const *v;
  size_t len;
  mp_seq_items(out, &v, &len);
  double sum = 0;
  for (size_t i = 0; i < len; i++) {
    double d;
    mp_float_get(v[i], &d);
    sum += d;
  }
  printf("%zu results, checksum %.6e\n", len, sum);
  mp_obj_free(out);
  mp_obj_free(items);
  if ((rc = mp_pool_close(pool)) != 0 || (rc = mp_pool_join(pool)) != 0)
    return fail("close/join", rc);
  if ((rc = mp_pool_insights_print(pool, stdout)) != 0)
    return fail("insights", rc);
  mp_pool_free(pool);
  return 0;
}
