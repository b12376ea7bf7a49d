/* SPDX-License-Identifier: MIT */
/* The seeds' get_context example, with a Queue carrying 'hello':
 *
 *   def foo(q):
 *       q.put('hello')
 *
 *   if __name__ == '__main__':
 *       ctx = mp.get_context('spawn')
 *       q = ctx.Queue()
 *       p = ctx.Process(target=foo, args=(q,))
 *       p.start()
 *       print(q.get())
 *       p.join()
 *
 * A queue is not tied to a context: the same mp_queue works with children
 * of every start method.
 *
 * Usage: contexts [fork|spawn|forkserver|threading]  (default: spawn) */
#include <stdio.h>

#include <mproc.h>

static int
foo(mp_obj *args)
{
  mp_queue *q;
  if (mp_args_parse(args, "{Queue}:foo", &q))
    return 1;
  mp_obj *hello = mp_str_new("hello");
  int rc = mp_queue_put(q, hello, MP_FOREVER);
  mp_obj_free(hello);
  return rc ? 1 : 0;
}

int
main(int argc, char **argv)
{
  mp_context *ctx;
  mp_queue *q;
  mp_process *p = NULL;
  mp_obj *msg = NULL;
  int rc = mp_get_context(argc > 1 ? argv[1] : "spawn", &ctx);
  if (rc) {
    fprintf(stderr, "contexts: %s\n", mp_errdetail());
    return 2;
  }
  if ((rc = mp_queue_new(&q, NULL)) != 0) {
    fprintf(stderr, "contexts: %s: %s\n", mp_strerror(rc), mp_errdetail());
    return 1;
  }
  mp_obj *args = MP_TUPLE(mp_queue_obj(q));
  rc = mp_process_new(&p, ctx, &(mp_process_opts){.target = foo,
                                                   .args = args});
  mp_obj_free(args);
  if (!rc)
    rc = mp_process_start(p);
  if (!rc)
    rc = mp_queue_get(q, &msg, MP_FOREVER);
  if (!rc) {
    const char *s;
    size_t len;
    if (mp_str_get(msg, &s, &len) == 0)
      printf("%s\n", s);
    mp_obj_free(msg);
    rc = mp_process_join(p, MP_FOREVER);
  }
  if (rc)
    fprintf(stderr, "contexts: %s: %s\n", mp_strerror(rc), mp_errdetail());
  mp_process_free(p);
  mp_queue_free(q);
  return rc ? 1 : 0;
}
