/* SPDX-License-Identifier: MIT */
/* The seeds' Client example in C:
 *
 *   with Client(address, authkey=b'secret password') as conn:
 *       print(conn.recv())                  # => [2.25, None, 'junk', float]
 *       print(conn.recv_bytes())            # => 'hello'
 *       arr = array('i', [0, 0, 0, 0, 0])
 *       print(conn.recv_bytes_into(arr))    # => 8
 *       print(arr)                          # => array('i', [42, 1729, 0, 0, 0])
 *
 * Usage: conn_client ADDRESS AUTHKEY.  Prints exactly what the Python
 * client prints, against conn_server or Python's Listener. */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

static int
fail(const char *what, int rc)
{
  fprintf(stderr, "conn_client: %s: %s (%s)\n", what, mp_strerror(rc),
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
  mp_conn *conn;
  int rc = mp_client(&conn, argv[1],
                     &(mp_client_opts){ .authkey = argv[2],
                                        .authkey_len = strlen(argv[2]) });
  if (rc)
    return fail("connect", rc);

  mp_obj *v;
  if ((rc = mp_conn_recv(conn, &v, MP_FOREVER)))
    goto out;
  char *r = mp_obj_repr(v);
  printf("%s\n", r ? r : "?");
  mp_free(r);
  mp_obj_free(v);

  void *data;
  size_t len;
  if ((rc = mp_conn_recv_bytes(conn, &data, &len, 0, MP_FOREVER)))
    goto out;
  /* print it as Python's repr of bytes */
  mp_obj *b = mp_bytes_new(data, len);
  r = mp_obj_repr(b);
  printf("%s\n", r ? r : "?");
  mp_free(r);
  mp_obj_free(b);
  mp_free(data);

  int arr[5] = { 0, 0, 0, 0, 0 };
  size_t count;
  if ((rc = mp_conn_recv_bytes_into(conn, arr, sizeof arr, 0, &count,
                                    MP_FOREVER)))
    goto out;
  printf("%zu\n", count);
  printf("array('i', [%d, %d, %d, %d, %d])\n", arr[0], arr[1], arr[2], arr[3],
         arr[4]);
out:
  mp_conn_free(conn);
  return rc ? fail("receive", rc) : 0;
}
