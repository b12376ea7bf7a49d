/* SPDX-License-Identifier: MIT */
/* The seeds' "Server process" example:
 *
 *   def f(d, l):
 *       d[1] = '1'
 *       d['2'] = 2
 *       d[0.25] = None
 *       l.reverse()
 *
 *   if __name__ == '__main__':
 *       with Manager() as manager:
 *           d = manager.dict()
 *           l = manager.list(range(10))
 *           p = Process(target=f, args=(d, l))
 *           p.start()
 *           p.join()
 *           print(d)
 *           print(l)
 *
 * Usage: manager_dict_list [METHOD] (fork, spawn, forkserver, threading;
 * the manager's server and the child both use it).  Prints
 * {1: '1', '2': 2, 0.25: None} and [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]. */
#include <stdio.h>

#include <mproc.h>

static int
f(mp_obj *args)
{
  mp_proxy *d = mp_proxy_from_obj(mp_seq_item(args, 0));
  mp_proxy *l = mp_proxy_from_obj(mp_seq_item(args, 1));
  mp_obj *k1 = mp_int_new(1), *v1 = mp_str_new("1");
  mp_obj *k2 = mp_str_new("2"), *v2 = mp_int_new(2);
  mp_obj *k3 = mp_float_new(0.25), *v3 = mp_none();
  int rc = mp_proxy_setitem(d, k1, v1) || mp_proxy_setitem(d, k2, v2) ||
           mp_proxy_setitem(d, k3, v3) || mp_proxy_list_reverse(l);
  mp_obj *all[] = { k1, v1, k2, v2, k3, v3 };
  for (int i = 0; i < 6; i++)
    mp_obj_free(all[i]);
  return rc ? 1 : 0;
}

static int
print_repr(mp_proxy *p)
{
  char *r = NULL;
  int rc = mp_proxy_repr(p, &r); /* print(d) shows the referent's repr */
  if (!rc)
    printf("%s\n", r);
  mp_free(r);
  return rc;
}

int
main(int argc, char **argv)
{
  mp_context *ctx = NULL;
  if (argc > 1 && mp_get_context(argv[1], &ctx)) {
    fprintf(stderr, "unknown start method %s\n", argv[1]);
    return 2;
  }
  mp_manager *manager;
  mp_proxy *d = NULL, *l = NULL;
  mp_process *p = NULL;
  int rc = mp_manager_new(&manager, &(mp_manager_opts){ .ctx = ctx });
  if (!rc)
    rc = mp_manager_start(manager);
  if (!rc)
    rc = mp_manager_dict(manager, &d);
  mp_obj *range = mp_list_new();
  for (int i = 0; range && i < 10; i++)
    mp_list_append_take(range, mp_int_new(i));
  if (!rc)
    rc = mp_manager_list(manager, range, &l);
  mp_obj_free(range);
  if (!rc) {
    mp_obj *args = MP_TUPLE(mp_proxy_obj(d), mp_proxy_obj(l));
    rc = mp_process_new(&p, ctx, &(mp_process_opts){ .target = f,
                                                     .args = args });
    mp_obj_free(args);
  }
  if (!rc)
    rc = mp_process_start(p);
  if (!rc)
    rc = mp_process_join(p, MP_FOREVER);
  if (!rc)
    rc = print_repr(d);
  if (!rc)
    rc = print_repr(l);
  if (rc)
    fprintf(stderr, "manager_dict_list: %s (%s)\n", mp_strerror(rc),
            mp_errdetail());
  mp_process_free(p);
  mp_proxy_free(d);
  mp_proxy_free(l);
  mp_manager_free(manager);
  return rc ? 1 : 0;
}
