/* SPDX-License-Identifier: MIT */
/* The seeds' get_context example, with a Pipe carrying 'hello':
 *
 *   def foo(conn):
 *       conn.send('hello')
 *
 *   if __name__ == '__main__':
 *       ctx = mp.get_context('spawn')
 *       parent_conn, child_conn = ctx.Pipe()
 *       p = ctx.Process(target=foo, args=(child_conn,))
 *       p.start()
 *       print(parent_conn.recv())
 *       p.join()
 *
 * Usage: contexts [fork|spawn|forkserver|threading]  (default: spawn) */
#include <stdio.h>

#include <mproc.h>

static int
foo(mp_obj *args)
{
  mp_conn *c = mp_conn_from_obj(mp_seq_item(args, 0));
  mp_obj *hello = mp_str_new("hello");
  int rc = c ? mp_conn_send(c, hello) : MP_EINVAL;
  mp_obj_free(hello);
  return rc ? 1 : 0;
}

int
main(int argc, char **argv)
{
  mp_context *ctx;
  mp_conn *parent_conn, *child_conn;
  mp_process *p;
  mp_obj *msg = NULL;
  int rc = mp_get_context(argc > 1 ? argv[1] : "spawn", &ctx);
  if (rc) {
    fprintf(stderr, "contexts: %s\n", mp_errdetail());
    return 2;
  }
  if ((rc = mp_pipe(&parent_conn, &child_conn, 1)) != 0)
    return 1;
  mp_obj *args = MP_TUPLE(mp_conn_obj(child_conn));
  rc = mp_process_new(&p, ctx, &(mp_process_opts){.target = foo,
                                                   .args = args});
  mp_obj_free(args);
  if (!rc)
    rc = mp_process_start(p);
  if (!rc)
    rc = mp_conn_recv(parent_conn, &msg, MP_FOREVER);
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
  mp_conn_free(parent_conn);
  mp_conn_free(child_conn);
  return rc ? 1 : 0;
}
