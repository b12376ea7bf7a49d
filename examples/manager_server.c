/* SPDX-License-Identifier: MIT */
/* A C SyncManager server for any client, CPython's included:
 *
 *   from multiprocessing.managers import SyncManager
 *   m = SyncManager(address=('127.0.0.1', 6000), authkey=b'k'); m.connect()
 *   d = m.dict(); l = m.list(range(10)); q = m.Queue(); ...
 *
 * Every SyncManager typeid is served, plus "get_queue" (one shared Queue,
 * as the seeds' remote-manager example registers).  Usage: manager_server
 * ADDRESS AUTHKEY (ADDRESS "host:port" -- port 0 picks one -- or a path;
 * AUTHKEY the key's bytes as text).  Prints "serving on ADDRESS" once it
 * listens and serves until a client sends shutdown (or it is killed). */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

static void
ready(mp_manager *m, void *arg)
{
  printf("serving on %s\n", mp_manager_address(m));
  fflush(stdout);
}

int
main(int argc, char **argv)
{
  if (argc != 3) {
    fprintf(stderr, "usage: %s ADDRESS AUTHKEY\n", argv[0]);
    return 2;
  }
  mp_manager *m;
  int rc = mp_manager_new(&m, &(mp_manager_opts){
                                  .address = argv[1],
                                  .authkey = argv[2],
                                  .authkey_len = strlen(argv[2]) });
  if (!rc)
    rc = mp_manager_register_shared(m, "get_queue", "Queue");
  if (!rc)
    rc = mp_manager_serve_forever(m, ready, NULL);
  if (rc)
    fprintf(stderr, "manager_server: %s (%s)\n", mp_strerror(rc),
            mp_errdetail());
  mp_manager_free(m);
  return rc ? 1 : 0;
}
