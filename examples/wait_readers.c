/* SPDX-License-Identifier: MIT */
/* The seeds' connection.wait() example: four processes each send ten
 * messages down their own pipe; the parent waits on all the read ends at
 * once and prints every message until each pipe reports EOF.
 *
 *   def foo(w):
 *       for i in range(10):
 *           w.send((i, current_process().name))
 *       w.close()
 *
 *   if __name__ == '__main__':
 *       readers = []
 *       for i in range(4):
 *           r, w = Pipe(duplex=False)
 *           readers.append(r)
 *           p = Process(target=foo, args=(w,))
 *           p.start()
 *           w.close()      # p is now the only holder of the write end
 *       while readers:
 *           for r in wait(readers):
 *               try:
 *                   msg = r.recv()
 *               except EOFError:
 *                   readers.remove(r)
 *               else:
 *                   print(msg)
 *
 * Usage: wait_readers [fork|spawn|forkserver|threading] */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

#define NPROC 4

static int
foo(mp_obj *args)
{
  mp_conn *w;
  if (mp_args_parse(args, "{Connection}:foo", &w))
    return 1;
  const char *name = mp_process_name(mp_current_process());
  int rc = 0;
  for (int i = 0; i < 10 && !rc; i++) {
    mp_obj *msg = MP_TUPLE(mp_int_new(i), mp_str_new(name));
    rc = mp_conn_send(w, msg);
    mp_obj_free(msg);
  }
  mp_conn_close(w);
  return rc ? 1 : 0;
}

int
main(int argc, char **argv)
{
  mp_context *ctx = NULL;
  mp_conn *readers[NPROC] = {0};
  mp_process *procs[NPROC] = {0};
  int rc = argc > 1 ? mp_get_context(argv[1], &ctx) : 0;
  for (int i = 0; i < NPROC && !rc; i++) {
    mp_conn *w;
    if ((rc = mp_pipe(&readers[i], &w, 0)) != 0)
      break;
    mp_obj *args = MP_TUPLE(mp_conn_obj(w));
    rc = mp_process_new(&procs[i], ctx,
                        &(mp_process_opts){.target = foo, .args = args});
    mp_obj_free(args);
    if (!rc)
      rc = mp_process_start(procs[i]);
    /* the child is now the only holder of the write end (a threading
     * child shares it: it closes it itself) */
    if (!rc && strcmp(mp_context_method(mp_process_context(procs[i])),
                      "threading") != 0)
      mp_conn_close(w);
    mp_conn_free(w);
  }
  size_t open = rc ? 0 : NPROC;
  while (open) {
    mp_waitable items[NPROC];
    size_t n = 0;
    mp_conn *which[NPROC];
    for (int i = 0; i < NPROC; i++)
      if (readers[i]) {
        items[n] = MP_WAITABLE_CONN(readers[i]);
        which[n++] = readers[i];
      }
    if ((rc = mp_wait(items, n, MP_FOREVER)) < 0)
      break;
    rc = 0;
    for (size_t k = 0; k < n; k++) {
      if (!items[k].ready)
        continue;
      mp_obj *msg;
      int r = mp_conn_recv(which[k], &msg, MP_FOREVER);
      if (r == MP_EEOF) { /* readers.remove(r) */
        for (int i = 0; i < NPROC; i++)
          if (readers[i] == which[k]) {
            mp_conn_free(readers[i]);
            readers[i] = NULL;
          }
        open--;
      } else if (r) {
        rc = r;
        open = 0;
        break;
      } else {
        mp_obj_print(msg, stdout);
        mp_obj_free(msg);
      }
    }
  }
  for (int i = 0; i < NPROC; i++) {
    if (procs[i] && !rc)
      rc = mp_process_join(procs[i], MP_FOREVER);
    mp_process_free(procs[i]);
    mp_conn_free(readers[i]);
  }
  if (rc)
    fprintf(stderr, "wait_readers: %s: %s\n", mp_strerror(rc), mp_errdetail());
  return rc ? 1 : 0;
}
