/* SPDX-License-Identifier: MIT */
/* The seeds' first example, data parallelism with a Pool:
 *
 *   def f(x):
 *       return x*x
 *
 *   if __name__ == '__main__':
 *       with Pool(5) as p:
 *           print(p.map(f, [1, 2, 3]))
 *
 * prints [1, 4, 9].
 *
 * Usage: pool_intro [fork|spawn|forkserver|threading] */
#include <stdio.h>

#include <mproc.h>

static int
f(mp_obj *args, mp_obj **result)
{
  int64_t x;
  if (mp_args_parse(args, "L:f", &x))
    return MP_EINVAL;
  *result = mp_int_new(x * x);
  return 0;
}

int
main(int argc, char **argv)
{
  mp_context *ctx = NULL;
  mp_pool *p = NULL;
  mp_obj *out = NULL;
  int rc = argc > 1 ? mp_get_context(argv[1], &ctx) : 0;
  if (!rc)
    rc = mp_pool_new(&p, &(mp_pool_opts){.processes = 5, .context = ctx});
  if (!rc) {
    mp_obj *items = MP_LIST(mp_int_new(1), mp_int_new(2), mp_int_new(3));
    rc = mp_pool_map(p, f, items, NULL, &out);
    mp_obj_free(items);
  }
  if (!rc) {
    mp_obj_print(out, stdout);
    mp_obj_free(out);
  }
  if (rc)
    fprintf(stderr, "pool_intro: %s: %s\n", mp_strerror(rc), mp_errdetail());
  mp_pool_free(p); /* the end of the with block: terminate */
  return rc ? 1 : 0;
}
