/* SPDX-License-Identifier: MIT */
/* The seeds' Queue example:
 *
 *   def f(q):
 *       q.put([42, None, 'hello'])
 *
 *   if __name__ == '__main__':
 *       q = Queue()
 *       p = Process(target=f, args=(q,))
 *       p.start()
 *       print(q.get())    # prints "[42, None, 'hello']"
 *       p.join()
 *
 * Usage: queue_basic [fork|spawn|forkserver|threading] */
#include <stdio.h>

#include <mproc.h>

static int
f(mp_obj *args)
{
  mp_queue *q;
  if (mp_args_parse(args, "{Queue}:f", &q))
    return 1;
  mp_obj *item = MP_LIST(mp_int_new(42), mp_none(), mp_str_new("hello"));
  int rc = mp_queue_put(q, item, MP_FOREVER);
  mp_obj_free(item);
  return rc ? 1 : 0;
}

int
main(int argc, char **argv)
{
  mp_context *ctx = NULL;
  mp_queue *q = NULL;
  mp_process *p = NULL;
  mp_obj *got = NULL;
  int rc = argc > 1 ? mp_get_context(argv[1], &ctx) : 0;
  if (!rc)
    rc = mp_queue_new(&q, NULL);
  if (!rc) {
    mp_obj *args = MP_TUPLE(mp_queue_obj(q));
    rc = mp_process_new(&p, ctx, &(mp_process_opts){.target = f, .args = args});
    mp_obj_free(args);
  }
  if (!rc)
    rc = mp_process_start(p);
  if (!rc)
    rc = mp_queue_get(q, &got, MP_FOREVER);
  if (!rc) {
    mp_obj_print(got, stdout); /* print(): the repr and a newline */
    mp_obj_free(got);
    rc = mp_process_join(p, MP_FOREVER);
  }
  if (rc)
    fprintf(stderr, "queue_basic: %s: %s\n", mp_strerror(rc), mp_errdetail());
  mp_process_free(p);
  mp_queue_free(q);
  return rc ? 1 : 0;
}
