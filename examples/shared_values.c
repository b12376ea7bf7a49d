/* SPDX-License-Identifier: MIT */
/* The seed's shared-memory example: a Value and an Array changed by a
 * child, read by the parent.
 *
 *     def f(n, a):
 *         n.value = 3.1415927
 *         for i in range(len(a)):
 *             a[i] = -a[i]
 *
 *     num = Value('d', 0.0)
 *     arr = Array('i', range(10))
 *     p = Process(target=f, args=(num, arr))
 *     p.start(); p.join()
 *     print(num.value)
 *     print(arr[:])
 *
 * prints 3.1415927 and [0, -1, -2, -3, -4, -5, -6, -7, -8, -9].
 * Usage: shared_values [fork|spawn|forkserver|threading] */
#include <stdio.h>

#include <mproc.h>

static int
f(mp_obj *args)
{
  mp_value *n = mp_value_from_obj(mp_seq_item(args, 0));
  mp_array *a = mp_array_from_obj(mp_seq_item(args, 1));
  mp_value_set_double(n, 3.1415927);
  for (size_t i = 0; i < mp_array_len(a); i++) {
    int64_t x;
    mp_array_get_int(a, (int64_t)i, &x);
    mp_array_set_int(a, (int64_t)i, -x);
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
  mp_value *num;
  mp_array *arr;
  int range[10];
  for (int i = 0; i < 10; i++)
    range[i] = i;
  if (mp_value_new(&num, 'd', &(double){0.0}, NULL)
      || mp_array_new(&arr, 'i', 10, range, NULL))
    return 1;
  mp_process *p;
  mp_obj *args = MP_TUPLE(mp_value_obj(num), mp_array_obj(arr));
  int rc = mp_process_new(&p, ctx, &(mp_process_opts){.target = f,
                                                      .args = args});
  mp_obj_free(args);
  if (rc || (rc = mp_process_start(p)) != 0) {
    fprintf(stderr, "Process: %s (%s)\n", mp_strerror(rc), mp_errdetail());
    return 1;
  }
  mp_process_join(p, MP_FOREVER);
  mp_process_free(p);
  print_obj(mp_value_to_obj(num));
  print_obj(mp_array_to_obj(arr));
  mp_value_free(num);
  mp_array_free(arr);
  return 0;
}
