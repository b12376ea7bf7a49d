/* SPDX-License-Identifier: MIT */
/* The seed's lock example: ten processes print under one Lock, so lines
 * never interleave.
 *
 *     def f(l, i):
 *         l.acquire()
 *         try:
 *             print('hello world', i)
 *         finally:
 *             l.release()
 *
 *     lock = Lock()
 *     for num in range(10):
 *         Process(target=f, args=(lock, num)).start()
 *
 * Usage: lock_print [fork|spawn|forkserver|threading] */
#include <stdio.h>

#include <mproc.h>

static int
f(mp_obj *args)
{
  mp_lock *l = mp_lock_from_obj(mp_seq_item(args, 0));
  int64_t i = 0;
  mp_int_get(mp_seq_item(args, 1), &i);
  mp_lock_acquire(l, MP_FOREVER);
  printf("hello world %lld\n", (long long)i);
  fflush(stdout);
  mp_lock_release(l);
  return 0;
}

int
main(int argc, char **argv)
{
  mp_context *ctx;
  int rc = mp_get_context(argc > 1 ? argv[1] : NULL, &ctx);
  if (rc) {
    fprintf(stderr, "usage: %s [fork|spawn|forkserver|threading]\n", argv[0]);
    return 2;
  }
  mp_lock *lock;
  if ((rc = mp_lock_new(&lock)) != 0) {
    fprintf(stderr, "Lock: %s\n", mp_strerror(rc));
    return 1;
  }
  mp_process *ps[10];
  for (int num = 0; num < 10; num++) {
    mp_obj *args = MP_TUPLE(mp_lock_obj(lock), mp_int_new(num));
    rc = mp_process_new(&ps[num], ctx,
                        &(mp_process_opts){.target = f, .args = args});
    mp_obj_free(args);
    if (rc || (rc = mp_process_start(ps[num])) != 0) {
      fprintf(stderr, "Process: %s (%s)\n", mp_strerror(rc), mp_errdetail());
      return 1;
    }
  }
  for (int num = 0; num < 10; num++) {
    mp_process_join(ps[num], MP_FOREVER);
    mp_process_free(ps[num]);
  }
  mp_lock_free(lock);
  return 0;
}
