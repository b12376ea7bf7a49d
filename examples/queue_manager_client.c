/* SPDX-License-Identifier: MIT */
/* The seeds' remote manager clients:
 *
 *   QueueManager.register('get_queue')
 *   m = QueueManager(address=('foo.bar.org', 50000), authkey=b'abracadabra')
 *   m.connect()
 *   queue = m.get_queue()
 *   queue.put('hello')          # or: queue.get()
 *
 * Usage: queue_manager_client ADDRESS AUTHKEY put ITEM
 *        queue_manager_client ADDRESS AUTHKEY get      (prints repr(item))
 * The server may be queue_manager_server or a CPython QueueManager. */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

int
main(int argc, char **argv)
{
  if (argc < 4 || (strcmp(argv[3], "get") && (strcmp(argv[3], "put") || argc != 5))) {
    fprintf(stderr, "usage: %s ADDRESS AUTHKEY put ITEM | get\n", argv[0]);
    return 2;
  }
  mp_manager *m;
  mp_proxy *q = NULL;
  int rc = mp_manager_new(&m, &(mp_manager_opts){
                                  .address = argv[1],
                                  .authkey = argv[2],
                                  .authkey_len = strlen(argv[2]) });
  if (!rc)
    rc = mp_manager_connect(m);
  if (!rc)
    rc = mp_manager_create(m, "get_queue", NULL, NULL, &q);
  if (!rc && !strcmp(argv[3], "put")) {
    mp_obj *item = mp_str_new(argv[4]);
    rc = mp_proxy_queue_put(q, item, MP_FOREVER);
    mp_obj_free(item);
  } else if (!rc) {
    mp_obj *item = NULL;
    rc = mp_proxy_queue_get(q, &item, MP_FOREVER);
    if (!rc) {
      char *r = mp_obj_repr(item);
      printf("%s\n", r ? r : "?");
      mp_free(r);
    }
    mp_obj_free(item);
  }
  if (rc)
    fprintf(stderr, "queue_manager_client: %s (%s)\n", mp_strerror(rc),
            mp_errdetail());
  mp_proxy_free(q);
  mp_manager_free(m);
  return rc ? 1 : 0;
}
