/* SPDX-License-Identifier: MIT */
/* Another build of an mproc program, for tests/proc/test_func_methods.c:
 *
 *   helper_funcpeer ADDRESS
 *
 * connects to ADDRESS (authkey "funcs"), receives one value and replies
 * (error name of the decode, its detail), then sends a function of its
 * own -- which the other program cannot resolve -- and the str "done". */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

static int
peer_only(int a, int b)
{
  return a - b;
}

int
main(int argc, char **argv)
{
  if (argc != 2)
    return 2;
  mp_conn *c;
  int rc = mp_client(&c, argv[1],
                     &(mp_client_opts){.authkey = "funcs", .authkey_len = 5,
                                       .timeout = 60});
  if (rc) {
    fprintf(stderr, "helper_funcpeer: connect: %s\n", mp_errdetail());
    return 3;
  }
  mp_obj *v = NULL;
  rc = mp_conn_recv(c, &v, 60);
  mp_obj_free(v);
  mp_obj *reply = MP_TUPLE(mp_str_new(mp_err_name(rc)),
                           mp_str_new(rc ? mp_errdetail() : ""));
  mp_obj *mine = MP_FUNC(peer_only);
  mp_obj *done = mp_str_new("done");
  int bad = mp_conn_send(c, reply) || mp_conn_send(c, mine) ||
            mp_conn_send(c, done);
  mp_obj_free(reply);
  mp_obj_free(mine);
  mp_obj_free(done);
  mp_conn_free(c);
  return bad ? 4 : 0;
}
