/* SPDX-License-Identifier: MIT */
/* The seeds' remote manager server ("Using a remote manager"):
 *
 *   queue = queue.Queue()
 *   class QueueManager(BaseManager): pass
 *   QueueManager.register('get_queue', callable=lambda: queue)
 *   m = QueueManager(address=('', 50000), authkey=b'abracadabra')
 *   s = m.get_server(); s.serve_forever()
 *
 * Usage: queue_manager_server ADDRESS AUTHKEY.  Prints "serving on ADDRESS"
 * and serves get_queue until killed.  Clients may be queue_manager_client
 * or Python's QueueManager.connect(). */
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
    fprintf(stderr, "queue_manager_server: %s (%s)\n", mp_strerror(rc),
            mp_errdetail());
  mp_manager_free(m);
  return rc ? 1 : 0;
}
