/* SPDX-License-Identifier: MIT */
/* The seeds' first Process example:
 *
 *   def f(name):
 *       print('hello', name)
 *
 *   if __name__ == '__main__':
 *       p = Process(target=f, args=('bob',))
 *       p.start()
 *       p.join()
 *
 * Usage: process_hello [fork|spawn|forkserver|threading]  (default: the
 * default start method) */
#include <stdio.h>

#include <mproc.h>

static int
f(mp_obj *args)
{
  const char *name;
  if (mp_args_parse(args, "s:f", &name))
    return 1;
  printf("hello %s\n", name);
  fflush(stdout); /* a child's stdio is its own: flush before it ends */
  return 0;
}

int
main(int argc, char **argv)
{
  mp_context *ctx = NULL;
  mp_process *p = NULL;
  int rc = argc > 1 ? mp_get_context(argv[1], &ctx) : 0;
  mp_obj *args = MP_TUPLE(mp_str_new("bob"));
  if (!rc)
    rc = mp_process_new(&p, ctx, &(mp_process_opts){.target = f, .args = args});
  mp_obj_free(args);
  if (!rc)
    rc = mp_process_start(p);
  if (!rc)
    rc = mp_process_join(p, MP_FOREVER);
  if (rc)
    fprintf(stderr, "process_hello: %s: %s\n", mp_strerror(rc), mp_errdetail());
  mp_process_free(p);
  return rc ? 1 : 0;
}
