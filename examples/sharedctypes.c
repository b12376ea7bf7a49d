/* SPDX-License-Identifier: MIT */
/* The seed's sharedctypes example: a Value, a raw Value, a 'c' Array and an
 * Array of a user-defined struct (a ctypes.Structure) changed by a child.
 *
 *     class Point(Structure):
 *         _fields_ = [('x', c_double), ('y', c_double)]
 *
 *     def modify(n, x, s, A):
 *         n.value **= 2
 *         x.value **= 2
 *         s.value = s.value.upper()
 *         for a in A:
 *             a.x **= 2
 *             a.y **= 2
 *
 *     lock = Lock()
 *     n = Value('i', 7)
 *     x = Value(c_double, 1.0/3.0, lock=False)
 *     s = Array('c', b'hello world', lock=lock)
 *     A = Array(Point, [(1.875, -6.25), (-5.75, 2.0), (2.375, 9.5)], lock=lock)
 *     p = Process(target=modify, args=(n, x, s, A)); p.start(); p.join()
 *     print(n.value); print(x.value); print(s.value)
 *     print([(a.x, a.y) for a in A])
 *
 * Usage: sharedctypes [fork|spawn|forkserver|threading] */
#include <ctype.h>
#include <stdio.h>

#include <mproc.h>

struct point {
  double x, y;
};

static int
modify(mp_obj *args)
{
  mp_value *n = mp_value_from_obj(mp_seq_item(args, 0));
  mp_value *x = mp_value_from_obj(mp_seq_item(args, 1));
  mp_array *s = mp_array_from_obj(mp_seq_item(args, 2));
  mp_array *A = mp_array_from_obj(mp_seq_item(args, 3));
  int64_t nv;
  double xv;
  mp_value_get_int(n, &nv);
  mp_value_set_int(n, nv * nv);
  mp_value_get_double(x, &xv);
  mp_value_set_double(x, xv * xv);
  char buf[64];
  int64_t len = mp_array_get_bytes(s, buf, sizeof buf);
  for (int64_t i = 0; i < len; i++)
    buf[i] = (char)toupper((unsigned char)buf[i]);
  mp_array_set_bytes(s, buf, (size_t)len);
  /* the struct array: each field access under the array's lock */
  mp_lock *l = mp_array_get_lock(A);
  struct point *pts = mp_array_ptr(A);
  for (size_t i = 0; i < mp_array_len(A); i++) {
    mp_lock_acquire(l, MP_FOREVER);
    pts[i].x *= pts[i].x;
    pts[i].y *= pts[i].y;
    mp_lock_release(l);
  }
  return 0;
}

static void
print_obj(mp_obj *o)
{
  char *s = mp_obj_repr(o);
  printf("%s\n", s ? s : "?");
  mp_free(s);
  mp_obj_free(o);
}

int
main(int argc, char **argv)
{
  mp_context *ctx;
  if (mp_get_context(argc > 1 ? argv[1] : NULL, &ctx)) {
    fprintf(stderr, "usage: %s [fork|spawn|forkserver|threading]\n", argv[0]);
    return 2;
  }
  mp_lock *lock;
  mp_value *n, *x;
  mp_array *s, *A;
  struct point init[3] = {{1.875, -6.25}, {-5.75, 2.0}, {2.375, 9.5}};
  if (mp_lock_new(&lock) || mp_value_new(&n, 'i', &(int){7}, NULL)
      || mp_value_new(&x, 'd', &(double){1.0 / 3.0},
                      &(mp_value_opts){.raw = 1})
      || mp_array_new(&s, 'c', 11, "hello world",
                      &(mp_value_opts){.lock = lock})
      || mp_array_new_struct(&A, sizeof(struct point),
                             _Alignof(struct point), 3, init,
                             &(mp_value_opts){.lock = lock}))
    return 1;
  mp_process *p;
  mp_obj *args = MP_TUPLE(mp_value_obj(n), mp_value_obj(x), mp_array_obj(s),
                          mp_array_obj(A));
  int rc = mp_process_new(&p, ctx, &(mp_process_opts){.target = modify,
                                                      .args = args});
  mp_obj_free(args);
  if (rc || (rc = mp_process_start(p)) != 0) {
    fprintf(stderr, "Process: %s (%s)\n", mp_strerror(rc), mp_errdetail());
    return 1;
  }
  mp_process_join(p, MP_FOREVER);
  mp_process_free(p);

  print_obj(mp_value_to_obj(n));
  print_obj(mp_value_to_obj(x));
  char buf[64];
  mp_array_get_bytes(s, buf, sizeof buf);
  printf("%s\n", buf);
  struct point out[3];
  mp_array_read(A, 0, 3, out);
  mp_obj *list = mp_list_new();
  for (int i = 0; i < 3; i++)
    mp_list_append_take(list, MP_TUPLE(mp_float_new(out[i].x),
                                       mp_float_new(out[i].y)));
  print_obj(list);
  mp_value_free(n);
  mp_value_free(x);
  mp_array_free(s);
  mp_array_free(A);
  mp_lock_free(lock);
  return 0;
}
