/* SPDX-License-Identifier: MIT */
/* What a pool's workers do, for trace.sh: pools of 2 started, given a map,
 * an apply, an imap_unordered and a map_array, closed and joined, under
 * the start method of argv[1].  The first two pools run no task: their
 * workers' traces are the start path (trace.sh orders by them). */
#include <stdio.h>

#include <mproc.h>

static int
identity(mp_obj *args, mp_obj **result)
{
  *result = mp_obj_ref(mp_seq_item(args, 0));
  return 0;
}

static int
twice(const void *in, void *out, const mp_obj *shared)
{
  (void)shared;
  *(double *)out = *(const double *)in * 2;
  return 0;
}

static int
pool_round(mp_context *ctx, int work)
{
  static double in[10000], out[10000];
  mp_pool *p;
  if (mp_pool_new(&p, &(mp_pool_opts){.processes = 2, .context = ctx}))
    return 1;
  int rc = 0;
  if (work) {
    mp_obj *items = mp_list_new(), *res = NULL;
    for (int i = 0; i < 1000; i++)
      mp_list_append_take(items, mp_int_new(i));
    mp_obj *args = MP_TUPLE(mp_int_new(5));
    mp_imap *it = NULL;
    rc = mp_pool_map(p, identity, items, NULL, &res);
    mp_obj_free(res);
    res = NULL;
    if (!rc)
      rc = mp_pool_apply(p, identity, args, &res);
    mp_obj_free(res);
    if (!rc)
      rc = mp_pool_imap_unordered(p, identity, items, NULL, &it);
    while (!rc && mp_imap_next(it, &res, 30) == 0)
      mp_obj_free(res);
    mp_imap_free(it);
    if (!rc)
      rc = mp_pool_map_array(p, twice, in, sizeof *in, out, sizeof *out,
                             10000, NULL, NULL);
    mp_obj_free(args);
    mp_obj_free(items);
  }
  mp_pool_close(p);
  mp_pool_join(p);
  mp_pool_free(p);
  return rc;
}

int
main(int argc, char **argv)
{
  mp_context *ctx;
  if (argc < 2 || mp_get_context(argv[1], &ctx))
    return 2;
  for (int i = 0; i < 4; i++)
    if (pool_round(ctx, i > 1)) {
      fprintf(stderr, "workload: %s\n", mp_errdetail());
      return 1;
    }
  return 0;
}
