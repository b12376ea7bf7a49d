/* SPDX-License-Identifier: MIT */
/* The seeds' Listener example in C:
 *
 *   with Listener(address, authkey=b'secret password') as listener:
 *       with listener.accept() as conn:
 *           print('connection accepted from', listener.last_accepted)
 *           conn.send([2.25, None, 'junk', float])
 *           conn.send_bytes(b'hello')
 *           conn.send_bytes(array('i', [42, 1729]))
 *
 * Usage: conn_server ADDRESS AUTHKEY   (e.g. localhost:6000 'secret password';
 * "localhost:0" picks a free port).  Prints "listening on ADDRESS" first, so
 * a client can find a port chosen by the system.  Any peer works: the C
 * conn_client or Python's multiprocessing.connection.Client. */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

static int
fail(const char *what, int rc)
{
  fprintf(stderr, "conn_server: %s: %s (%s)\n", what, mp_strerror(rc),
          mp_errdetail());
  return 1;
}

int
main(int argc, char **argv)
{
  if (argc != 3) {
    fprintf(stderr, "usage: %s ADDRESS AUTHKEY\n", argv[0]);
    return 2;
  }
  mp_listener *listener;
  int rc = mp_listener_new(&listener, argv[1],
                           &(mp_listener_opts){ .authkey = argv[2],
                                                .authkey_len = strlen(argv[2]) });
  if (rc)
    return fail("listen", rc);
  printf("listening on %s\n", mp_listener_address(listener));
  fflush(stdout);

  mp_conn *conn;
  if ((rc = mp_listener_accept(listener, &conn, MP_FOREVER))) {
    mp_listener_free(listener);
    return fail("accept", rc);
  }
  printf("connection accepted from %s\n", mp_listener_last_accepted(listener));
  fflush(stdout);

  /* [2.25, None, 'junk', float]: the class `float` is a reference record */
  mp_obj *v = MP_LIST(mp_float_new(2.25), mp_none(), mp_str_new("junk"),
                      mp_global_new("builtins", "float"));
  rc = v ? mp_conn_send(conn, v) : MP_ENOMEM;
  mp_obj_free(v);
  if (!rc)
    rc = mp_conn_send_bytes(conn, "hello", 5);
  /* array('i', [42, 1729]) is sent as the raw bytes of C ints */
  int arr[] = { 42, 1729 };
  if (!rc)
    rc = mp_conn_send_bytes(conn, arr, sizeof arr);
  /* wait for the client to hang up, so nothing is cut short */
  if (!rc) {
    void *p;
    size_t n;
    if (mp_conn_recv_bytes(conn, &p, &n, 0, 30.0) == 0)
      mp_free(p);
  }
  mp_conn_free(conn);
  mp_listener_free(listener);
  return rc ? fail("send", rc) : 0;
}
