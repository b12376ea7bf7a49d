/* SPDX-License-Identifier: MIT */
/* The seeds' Pipe example:
 *
 *   def f(conn):
 *       conn.send([42, None, 'hello'])
 *       conn.close()
 *
 *   if __name__ == '__main__':
 *       parent_conn, child_conn = Pipe()
 *       p = Process(target=f, args=(child_conn,))
 *       p.start()
 *       print(parent_conn.recv())   # prints "[42, None, 'hello']"
 *       p.join()
 *
 * Usage: pipe_basic [fork|spawn|forkserver|threading] */
#include <stdio.h>

#include <mproc.h>

static int
f(mp_obj *args)
{
  mp_conn *conn;
  if (mp_args_parse(args, "{Connection}:f", &conn))
    return 1;
  mp_obj *msg = MP_LIST(mp_int_new(42), mp_none(), mp_str_new("hello"));
  int rc = mp_conn_send(conn, msg);
  mp_obj_free(msg);
  mp_conn_close(conn);
  return rc ? 1 : 0;
}

int
main(int argc, char **argv)
{
  mp_context *ctx = NULL;
  mp_conn *parent_conn = NULL, *child_conn = NULL;
  mp_process *p = NULL;
  mp_obj *got = NULL;
  int rc = argc > 1 ? mp_get_context(argv[1], &ctx) : 0;
  if (!rc)
    rc = mp_pipe(&parent_conn, &child_conn, 1);
  if (!rc) {
    mp_obj *args = MP_TUPLE(mp_conn_obj(child_conn));
    rc = mp_process_new(&p, ctx, &(mp_process_opts){.target = f, .args = args});
    mp_obj_free(args);
  }
  if (!rc)
    rc = mp_process_start(p);
  if (!rc)
    rc = mp_conn_recv(parent_conn, &got, MP_FOREVER);
  if (!rc) {
    mp_obj_print(got, stdout);
    mp_obj_free(got);
    rc = mp_process_join(p, MP_FOREVER);
  }
  if (rc)
    fprintf(stderr, "pipe_basic: %s: %s\n", mp_strerror(rc), mp_errdetail());
  mp_process_free(p);
  mp_conn_free(parent_conn);
  mp_conn_free(child_conn);
  return rc ? 1 : 0;
}
