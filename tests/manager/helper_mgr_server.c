/* SPDX-License-Identifier: MIT */
/* A C manager server with a registered C type, for test_interop.py's
 * CPython client: helper_mgr_server ADDRESS AUTHKEY.  Type "Counter"
 * (created with an optional start): add(k) -> the new value (k < 0:
 * MP_EINVAL, ValueError), item(i) (MP_EINDEX, IndexError), key(k)
 * (MP_ENOTFOUND with the key, KeyError('k')), kind(x) (MP_ETYPE,
 * TypeError), fail() (MP_EBADF: no builtins match, a #TRACEBACK), squares()
 * -> an Iterator (#PROXY, method_to_typeid).  Prints "serving on ADDRESS". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

static int
c_create(mp_obj *args, mp_obj *kwds, void **out)
{
  int64_t start = 0;
  int rc = mp_args_parse(args, "|L:Counter", &start);
  if (rc)
    return rc;
  int64_t *c = malloc(sizeof *c);
  if (!c)
    return MP_ENOMEM;
  *c = start;
  *out = c;
  return 0;
}

static void
c_destroy(void *p)
{
  free(p);
}

static int
c_add(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  int64_t *c = p, k = 1;
  int rc = mp_args_parse(args, "|L:add", &k);
  if (rc)
    return rc;
  if (k < 0)
    return mp_seterr(MP_EINVAL, "negative step %lld", (long long)k);
  *c += k;
  *res = mp_int_new(*c);
  return 0;
}

static int
c_item(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  return mp_seterr(MP_EINDEX, "counter index out of range");
}

static int
c_key(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  *res = mp_obj_ref(mp_seq_item(args, 0)); /* KeyError(key) */
  return MP_ENOTFOUND;
}

static int
c_kind(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  return mp_seterr(MP_ETYPE, "a counter wants an int");
}

static int
c_fail(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  return mp_seterr(MP_EBADF, "no exception fits this");
}

static int
c_squares(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  int64_t *c = p;
  mp_obj *l = mp_list_new();
  for (int64_t i = 0; l && i < *c; i++)
    mp_list_append_take(l, mp_int_new(i * i));
  *res = l;
  return l ? 0 : MP_ENOMEM;
}

static const mp_manager_method methods[] = {
  { "add", c_add, NULL },     { "item", c_item, NULL },
  { "key", c_key, NULL },     { "kind", c_kind, NULL },
  { "fail", c_fail, NULL },   { "squares", c_squares, "Iterator" },
};

static const mp_manager_type counter = {
  .typeid = "Counter", .create = c_create, .destroy = c_destroy,
  .methods = methods, .nmethods = sizeof methods / sizeof methods[0],
};

static void
ready(mp_manager *m, void *arg)
{
  printf("serving on %s\n", mp_manager_address(m));
  fflush(stdout);
}

int
main(int argc, char **argv)
{
  if (argc != 3)
    return 2;
  mp_manager *m;
  int rc = mp_manager_new(&m, &(mp_manager_opts){
                                  .address = argv[1], .authkey = argv[2],
                                  .authkey_len = strlen(argv[2]) });
  if (!rc)
    rc = mp_manager_register(m, &counter);
  if (!rc)
    rc = mp_manager_serve_forever(m, ready, NULL);
  if (rc)
    fprintf(stderr, "helper_mgr_server: %s (%s)\n", mp_strerror(rc),
            mp_errdetail());
  mp_manager_free(m);
  return rc ? 1 : 0;
}
