/* SPDX-License-Identifier: MIT */
/* A C manager client against any server (test_interop.py runs it against
 * CPython's and against ours): helper_mgr_client ADDRESS AUTHKEY.
 * get_queue put/get, a dict's set/get, the #ERROR KeyError and #TRACEBACK
 * replies, __iter__'s #PROXY and its exhaustion, get_methods with a
 * C-encoded Token, nested proxies (a dict's proxy in a list, and back),
 * every SyncManager type's exposed methods with the answers CPython's
 * server gives, and the counts back to 0.  Prints one line per check;
 * exits 0 if all pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

#include "manager/manager_internal.h"

static int failures;

static void
check(int ok, const char *what)
{
  printf("%s %s%s%s\n", ok ? "ok" : "FAIL", what, ok ? "" : ": ",
         ok ? "" : mp_errdetail());
  failures += !ok;
}

static int
same_repr(mp_obj *o, const char *want)
{
  char *r = mp_obj_repr(o);
  int ok = r && !strcmp(r, want);
  if (!ok)
    fprintf(stderr, "got %s, want %s\n", r ? r : "NULL", want);
  mp_free(r);
  return ok;
}

/* p.method(*args) (args taken): its repr must be `want`, or the call must
 * fail with `code` (want NULL: any value) */
static void
call(mp_proxy *p, const char *method, mp_obj *args, const char *want,
     int code, const char *what)
{
  mp_obj *v = NULL;
  int rc = p ? mp_proxy_call(p, method, args, NULL, &v) : MP_EINVAL;
  mp_obj_free(args);
  char *r = rc == 0 && v ? mp_obj_repr(v) : NULL;
  int ok = code ? rc == code
                : rc == 0 && (!want || (r ? !strcmp(r, want)
                                          : !strcmp(want, "None")));
  if (!ok)
    fprintf(stderr, "%s: %s -> %s, %s (want %s %s)\n", what, method,
            mp_err_name(rc), r ? r : "None", code ? mp_err_name(code) : "",
            want ? want : "");
  char line[160];
  snprintf(line, sizeof line, "%s: %s", what, method);
  check(ok, line);
  mp_free(r);
  mp_obj_free(v);
}

#define I(v) mp_int_new(v)
#define S(v) mp_str_new(v)
#define NOARGS mp_tuple_take(0)

/* Every SyncManager type's exposed methods against the server (CPython's,
 * as test_interop.py runs it), with the values CPython's server returns. */
static void
every_type(mp_manager *m)
{
  mp_proxy *p = NULL;
  /* dict */
  check(mp_manager_dict(m, &p) == 0, "dict");
  call(p, "__setitem__", MP_TUPLE(S("a"), I(1)), "None", 0, "dict");
  call(p, "update", MP_TUPLE(MP_LIST(MP_TUPLE(S("b"), I(2)))), "None", 0,
       "dict");
  call(p, "__contains__", MP_TUPLE(S("a")), "True", 0, "dict");
  call(p, "__len__", NOARGS, "2", 0, "dict");
  call(p, "get", MP_TUPLE(S("z"), I(9)), "9", 0, "dict");
  call(p, "keys", NOARGS, NULL, 0, "dict");
  call(p, "values", NOARGS, NULL, 0, "dict");
  call(p, "items", NOARGS, NULL, 0, "dict");
  call(p, "copy", NOARGS, "{'a': 1, 'b': 2}", 0, "dict");
  call(p, "setdefault", MP_TUPLE(S("c"), I(3)), "3", 0, "dict");
  call(p, "pop", MP_TUPLE(S("c")), "3", 0, "dict");
  call(p, "pop", MP_TUPLE(S("c")), NULL, MP_ENOTFOUND, "dict");
  call(p, "popitem", NOARGS, "('b', 2)", 0, "dict");
  call(p, "__delitem__", MP_TUPLE(S("a")), "None", 0, "dict");
  call(p, "__delitem__", MP_TUPLE(S("a")), NULL, MP_ENOTFOUND, "dict");
  call(p, "__setitem__", MP_TUPLE(S("x"), I(1)), "None", 0, "dict");
  call(p, "clear", NOARGS, "None", 0, "dict");
  call(p, "__len__", NOARGS, "0", 0, "dict");
  mp_proxy_free(p);
  /* list */
  p = NULL;
  mp_obj *init = MP_LIST(I(3), I(1), I(2));
  check(mp_manager_list(m, init, &p) == 0, "list");
  mp_obj_free(init);
  call(p, "append", MP_TUPLE(I(5)), "None", 0, "list");
  call(p, "extend", MP_TUPLE(MP_LIST(I(4))), "None", 0, "list");
  call(p, "insert", MP_TUPLE(I(0), I(0)), "None", 0, "list");
  call(p, "__getitem__", MP_TUPLE(I(-1)), "4", 0, "list");
  call(p, "__setitem__", MP_TUPLE(I(0), I(9)), "None", 0, "list");
  call(p, "__contains__", MP_TUPLE(I(9)), "True", 0, "list");
  call(p, "count", MP_TUPLE(I(9)), "1", 0, "list");
  call(p, "index", MP_TUPLE(I(1)), "2", 0, "list");
  call(p, "index", MP_TUPLE(I(77)), NULL, MP_EINVAL, "list");
  call(p, "remove", MP_TUPLE(I(9)), "None", 0, "list");
  call(p, "sort", NOARGS, "None", 0, "list");
  call(p, "reverse", NOARGS, "None", 0, "list");
  call(p, "pop", NOARGS, "1", 0, "list");
  call(p, "__delitem__", MP_TUPLE(I(0)), "None", 0, "list");
  call(p, "__len__", NOARGS, "3", 0, "list");
  call(p, "__add__", MP_TUPLE(MP_LIST(I(7))), "[4, 3, 2, 7]", 0, "list");
  call(p, "__mul__", MP_TUPLE(I(2)), "[4, 3, 2, 4, 3, 2]", 0, "list");
  call(p, "__rmul__", MP_TUPLE(I(1)), "[4, 3, 2]", 0, "list");
  call(p, "__imul__", MP_TUPLE(I(2)), NULL, 0, "list");
  call(p, "__len__", NOARGS, "6", 0, "list");
  call(p, "__getitem__", MP_TUPLE(I(99)), NULL, MP_EINDEX, "list");
  mp_proxy_free(p);
  /* Namespace */
  p = NULL;
  check(mp_manager_namespace(m, &p) == 0, "Namespace");
  call(p, "__setattr__", MP_TUPLE(S("x"), I(10)), "None", 0, "Namespace");
  call(p, "__getattribute__", MP_TUPLE(S("x")), "10", 0, "Namespace");
  call(p, "__delattr__", MP_TUPLE(S("x")), "None", 0, "Namespace");
  call(p, "__getattribute__", MP_TUPLE(S("x")), NULL, MP_ENOTFOUND,
       "Namespace");
  mp_proxy_free(p);
  /* Value, Array */
  p = NULL;
  check(mp_manager_value(m, "i", I(7), &p) == 0, "Value");
  call(p, "set", MP_TUPLE(I(8)), "None", 0, "Value");
  call(p, "get", NOARGS, "8", 0, "Value");
  mp_proxy_free(p);
  p = NULL;
  mp_obj *cargs = MP_TUPLE(S("i"), MP_LIST(I(1), I(2)));
  check(mp_manager_create(m, "Array", cargs, NULL, &p) == 0, "Array");
  mp_obj_free(cargs); /* create borrows its args */
  call(p, "__setitem__", MP_TUPLE(I(0), I(5)), "None", 0, "Array");
  call(p, "__getitem__", MP_TUPLE(I(0)), "5", 0, "Array");
  call(p, "__len__", NOARGS, "2", 0, "Array");
  mp_proxy_free(p);
  /* the locks */
  const char *locks[] = {"Lock", "RLock", "Semaphore", "BoundedSemaphore"};
  for (int i = 0; i < 4; i++) {
    p = NULL;
    check(mp_manager_create(m, locks[i], NULL, NULL, &p) == 0, locks[i]);
    call(p, "acquire", NOARGS, "True", 0, locks[i]);
    call(p, "release", NOARGS, "None", 0, locks[i]);
    call(p, "acquire", MP_TUPLE(mp_bool_new(0)), "True", 0, locks[i]);
    call(p, "release", NOARGS, "None", 0, locks[i]);
    mp_proxy_free(p);
  }
  p = NULL;
  check(mp_manager_create(m, "BoundedSemaphore", NULL, NULL, &p) == 0,
        "BoundedSemaphore");
  call(p, "release", NOARGS, NULL, MP_EINVAL, "BoundedSemaphore");
  mp_proxy_free(p);
  /* Condition, Event, Barrier */
  p = NULL;
  check(mp_manager_create(m, "Condition", NULL, NULL, &p) == 0, "Condition");
  call(p, "acquire", NOARGS, "True", 0, "Condition");
  call(p, "wait", MP_TUPLE(mp_float_new(0.01)), "False", 0, "Condition");
  call(p, "notify", NOARGS, "None", 0, "Condition");
  call(p, "notify_all", NOARGS, "None", 0, "Condition");
  call(p, "release", NOARGS, "None", 0, "Condition");
  mp_proxy_free(p);
  p = NULL;
  check(mp_manager_event(m, &p) == 0, "Event");
  call(p, "is_set", NOARGS, "False", 0, "Event");
  call(p, "wait", MP_TUPLE(mp_float_new(0.01)), "False", 0, "Event");
  call(p, "set", NOARGS, "None", 0, "Event");
  call(p, "wait", NOARGS, "True", 0, "Event");
  call(p, "clear", NOARGS, "None", 0, "Event");
  mp_proxy_free(p);
  p = NULL;
  cargs = MP_TUPLE(I(1));
  check(mp_manager_create(m, "Barrier", cargs, NULL, &p) == 0, "Barrier");
  mp_obj_free(cargs);
  call(p, "__getattribute__", MP_TUPLE(S("parties")), "1", 0, "Barrier");
  call(p, "wait", NOARGS, "0", 0, "Barrier");
  call(p, "reset", NOARGS, "None", 0, "Barrier");
  call(p, "abort", NOARGS, "None", 0, "Barrier");
  call(p, "__getattribute__", MP_TUPLE(S("broken")), "True", 0, "Barrier");
  mp_proxy_free(p);
  /* Queue, JoinableQueue */
  p = NULL;
  check(mp_manager_create(m, "JoinableQueue", NULL, NULL, &p) == 0,
        "JoinableQueue");
  call(p, "put", MP_TUPLE(I(1)), "None", 0, "JoinableQueue");
  call(p, "put_nowait", MP_TUPLE(I(2)), "None", 0, "JoinableQueue");
  call(p, "qsize", NOARGS, "2", 0, "JoinableQueue");
  call(p, "full", NOARGS, "False", 0, "JoinableQueue");
  call(p, "get", NOARGS, "1", 0, "JoinableQueue");
  call(p, "get_nowait", NOARGS, "2", 0, "JoinableQueue");
  call(p, "empty", NOARGS, "True", 0, "JoinableQueue");
  call(p, "get_nowait", NOARGS, NULL, MP_EEMPTY, "JoinableQueue");
  call(p, "task_done", NOARGS, "None", 0, "JoinableQueue");
  call(p, "task_done", NOARGS, "None", 0, "JoinableQueue");
  call(p, "join", NOARGS, "None", 0, "JoinableQueue");
  mp_proxy_free(p);
}

int
main(int argc, char **argv)
{
  if (argc != 3)
    return 2;
  mp_manager *m;
  mp_manager_new(&m, &(mp_manager_opts){ .address = argv[1],
                                          .authkey = argv[2],
                                          .authkey_len = strlen(argv[2]) });
  check(mp_manager_connect(m) == 0, "connect");
  int64_t n = -1;
  check(mp_manager_number_of_objects(m, &n) == 0 && n == 0, "no objects");

  mp_proxy *q = NULL;
  check(mp_manager_create(m, "get_queue", NULL, NULL, &q) == 0, "get_queue");
  mp_obj *hello = mp_str_new("hello"), *got = NULL;
  check(q && mp_proxy_queue_put(q, hello, MP_FOREVER) == 0, "put");
  check(q && mp_proxy_queue_get(q, &got, MP_FOREVER) == 0 &&
            mp_obj_equal(got, hello), "get");
  mp_obj_free(got);
  got = NULL;
  check(q && mp_proxy_queue_get(q, &got, 0) == MP_EEMPTY, "get_nowait Empty");

  mp_proxy *d = NULL;
  check(mp_manager_dict(m, &d) == 0, "dict");
  uint8_t big[9] = { 0, 0, 0, 0, 0, 0, 0, 0, 0x40 }; /* 2**70 */
  mp_obj *key = mp_str_new("k");
  mp_obj *val = MP_LIST(mp_int_new(1), mp_int_from_bytes(big, 9),
                        mp_bytes_new("x", 1), mp_bytearray_new("y", 1),
                        MP_SET(mp_int_new(1)), mp_float_new(1.5), mp_none());
  check(d && mp_proxy_setitem(d, key, val) == 0, "__setitem__");
  got = NULL;
  check(d && mp_proxy_getitem(d, key, &got) == 0 && mp_obj_equal(got, val),
        "__getitem__ round trip");
  mp_obj_free(got);
  mp_obj *missing = mp_str_new("missing");
  int rc = d ? mp_proxy_getitem(d, missing, &got) : 0;
  check(rc == MP_ENOTFOUND && strstr(mp_errdetail(), "KeyError('missing')"),
        "#ERROR KeyError");
  rc = d ? mp_proxy_call(d, "nosuch", NULL, NULL, &got) : 0;
  check(rc == MP_EREMOTE && strstr(mp_errdetail(), "nosuch"),
        "#TRACEBACK for an unexposed method");
  int64_t len = 0;
  check(d && mp_proxy_len(d, &len) == 0 && len == 1, "__len__");
  char *r = NULL;
  check(d && mp_proxy_repr(d, &r) == 0 && strstr(r, "'k': [1, "), "__repr__");
  mp_free(r);

  /* __iter__ -> #PROXY of an Iterator; exhaustion is StopIteration */
  mp_obj *it = NULL;
  check(d && mp_proxy_call(d, "__iter__", NULL, NULL, &it) == 0 &&
            mp_proxy_from_obj(it), "__iter__ #PROXY");
  mp_proxy *ip = mp_proxy_from_obj(it);
  got = NULL;
  check(ip && !strcmp(mp_proxy_typeid(ip), "Iterator") &&
            mp_proxy_call(ip, "__next__", NULL, NULL, &got) == 0 &&
            mp_obj_equal(got, key), "__next__");
  mp_obj_free(got);
  check(ip && mp_proxy_call(ip, "__next__", NULL, NULL, &got) == MP_EEOF,
        "StopIteration");
  mp_obj_free(it);

  /* get_methods with a Token we encode */
  mp_obj *tok = mp__mgr_token_new("dict", argv[1], mp_proxy_ident(d));
  mp_obj *targs = MP_TUPLE(tok);
  mp_obj *methods = NULL;
  check(mp__mgr_call_server(argv[1], argv[2], strlen(argv[2]), "get_methods",
                            targs, NULL, &methods) == 0 &&
            mp_obj_len(methods, (size_t *)&len) == 0 && len >= 16,
        "get_methods");
  mp_obj_free(methods);
  mp_obj_free(targs);

  /* a list with Python's range spelled by us, Value */
  mp_proxy *l = NULL;
  mp_obj *ten = mp_list_new();
  for (int i = 0; i < 10; i++)
    mp_list_append_take(ten, mp_int_new(i));
  check(mp_manager_list(m, ten, &l) == 0 && mp_proxy_list_reverse(l) == 0 &&
            mp_proxy_getvalue(l, &got) == 0 &&
            same_repr(got, "[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]"),
        "list reverse");
  mp_obj_free(got);
  mp_obj_free(ten);
  mp_proxy *v = NULL;
  mp_obj *seven = mp_int_new(7);
  got = NULL;
  check(mp_manager_value(m, "i", seven, &v) == 0 &&
            mp_proxy_value_get(v, &got) == 0 && mp_obj_equal(got, seven),
        "Value get");
  mp_obj_free(got);
  mp_obj_free(seven);
  mp_proxy *lk = NULL;
  check(mp_manager_lock(m, &lk) == 0 && mp_proxy_acquire(lk, 1) == 0 &&
            mp_proxy_acquire(lk, 0) == MP_ETIMEDOUT &&
            mp_proxy_release(lk) == 0 && mp_proxy_release(lk) == MP_ESTATE,
        "Lock");

  mp_proxy_free(q);
  mp_proxy_free(d);
  mp_proxy_free(l);
  mp_proxy_free(v);
  mp_proxy_free(lk);
  check(mp_manager_number_of_objects(m, &n) == 0 && n == 0,
        "number_of_objects back to 0");
  /* nested proxies: ours travels as CPython's RebuildProxy (the server
   * stores it as its own proxy), and the one it sends back is an mp_proxy
   * of the same dict */
  mp_proxy *nl = NULL, *nd = NULL;
  mp_obj *one = mp_int_new(1);
  check(mp_manager_list(m, NULL, &nl) == 0 && mp_manager_dict(m, &nd) == 0 &&
            mp_proxy_setitem(nd, key, one) == 0,
        "nested: a list and a dict");
  mp_obj *ndo = nd ? mp_proxy_obj(nd) : NULL;
  check(nl && ndo && mp_proxy_list_append(nl, ndo) == 0,
        "nested: append the dict's proxy to the list");
  mp_obj_free(ndo);
  mp_proxy_free(nd);
  got = NULL;
  mp_proxy *gp = NULL;
  check(nl && mp_proxy_list_getitem(nl, 0, &got) == 0 &&
            (gp = mp_proxy_from_obj(got)) &&
            !strcmp(mp_proxy_typeid(gp), "dict"),
        "nested: l[0] is a dict proxy");
  mp_obj *v1 = NULL;
  check(gp && mp_proxy_getitem(gp, key, &v1) == 0 && mp_obj_equal(v1, one),
        "nested: it reads the dict");
  mp_obj_free(v1);
  mp_obj_free(got);
  mp_obj_free(one);
  mp_proxy_free(nl);
  check(mp_manager_number_of_objects(m, &n) == 0 && n == 0,
        "nested: number_of_objects back to 0");

  char *info = NULL;
  mp_proxy *held = NULL;
  check(mp_manager_dict(m, &held) == 0 && mp_manager_debug_info(m, &info) == 0 &&
            strstr(info, "refcount=") != NULL,
        "debug_info");
  mp_free(info);
  mp_proxy_free(held);
  every_type(m);
  check(mp_manager_number_of_objects(m, &n) == 0 && n == 0,
        "every type: number_of_objects back to 0");

  mp_obj *all[] = { hello, key, val, missing };
  for (int i = 0; i < 4; i++)
    mp_obj_free(all[i]);
  if (getenv("HELPER_SHUTDOWN"))
    check(mp_manager_shutdown(m) == 0, "shutdown");
  mp_manager_free(m);
  return failures ? 1 : 0;
}
