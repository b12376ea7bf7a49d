/* SPDX-License-Identifier: MIT */
/* Managers C with C: a server started under every start method (and
 * threading), SyncManager's types through the typed calls and
 * mp_proxy_call, the error replies (#ERROR codes, #TRACEBACK for an
 * unexposed method), #GETVALUE and __repr__, #PROXY results, proxies passed
 * to children under every start method (they reconnect there), nested
 * proxies keeping their referent alive, refcounts back to 0, registered C
 * types, shutdown and serve_forever. */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc/proc_internal.h"

static mp_manager *
started(void **state)
{
  mp_manager *m;
  MP_ASSERT_OK(mp_manager_new(&m, &(mp_manager_opts){
                                      .ctx = mp_test_context(state),
                                      .authkey = "secret",
                                      .authkey_len = 6 }));
  MP_ASSERT_OK(mp_manager_start(m));
  assert_non_null(mp_manager_address(m));
  return m;
}

static void
assert_objects(mp_manager *m, int64_t want)
{
  int64_t n = -1;
  MP_ASSERT_OK(mp_manager_number_of_objects(m, &n));
  assert_int_equal(n, want);
}

static void
test_types(void **state)
{
  mp_manager *m = started(state);
  assert_objects(m, 0);

  /* dict */
  mp_proxy *d;
  MP_ASSERT_OK(mp_manager_dict(m, &d));
  assert_string_equal(mp_proxy_typeid(d), "dict");
  mp_obj *k1 = mp_int_new(1), *k2 = mp_str_new("2"), *k3 = mp_float_new(0.25);
  mp_obj *v1 = mp_str_new("1"), *v2 = mp_int_new(2), *none = mp_none();
  MP_ASSERT_OK(mp_proxy_setitem(d, k1, v1));
  MP_ASSERT_OK(mp_proxy_setitem(d, k2, v2));
  MP_ASSERT_OK(mp_proxy_setitem(d, k3, none));
  mp_obj *got = NULL;
  MP_ASSERT_OK(mp_proxy_getitem(d, k2, &got));
  assert_true(mp_obj_equal(got, v2));
  mp_obj_free(got);
  int64_t n = 0;
  MP_ASSERT_OK(mp_proxy_len(d, &n));
  assert_int_equal(n, 3);
  assert_int_equal(mp_proxy_contains(d, k3), 1);
  mp_obj *missing = mp_str_new("missing");
  MP_ASSERT_ERR(mp_proxy_getitem(d, missing, &got), MP_ENOTFOUND);
  assert_non_null(strstr(mp_errdetail(), "KeyError('missing')"));
  MP_ASSERT_ERR(mp_proxy_delitem(d, missing), MP_ENOTFOUND);
  MP_ASSERT_OK(mp_proxy_getvalue(d, &got));
  mp_test_assert_repr(got, "{1: '1', '2': 2, 0.25: None}");
  mp_obj_free(got);
  char *r = NULL;
  MP_ASSERT_OK(mp_proxy_repr(d, &r));
  assert_string_equal(r, "{1: '1', '2': 2, 0.25: None}");
  mp_free(r);
  MP_ASSERT_OK(mp_proxy_dict_items(d, &got));
  mp_test_assert_repr(got, "[(1, '1'), ('2', 2), (0.25, None)]");
  mp_obj_free(got);
  /* an unexposed method: #TRACEBACK */
  MP_ASSERT_ERR(mp_proxy_call(d, "nosuch", NULL, NULL, &got), MP_EREMOTE);
  assert_non_null(strstr(mp_errdetail(), "not in exposed"));
  /* wrong arity: TypeError */
  MP_ASSERT_ERR(mp_proxy_call(d, "__getitem__", NULL, NULL, &got), MP_ETYPE);
  /* unhashable key: TypeError */
  mp_obj *lkey = mp_list_new();
  MP_ASSERT_ERR(mp_proxy_setitem(d, lkey, none), MP_ETYPE);
  mp_obj_free(lkey);
  /* __iter__ gives an Iterator proxy (#PROXY) */
  mp_obj *it = NULL;
  MP_ASSERT_OK(mp_proxy_call(d, "__iter__", NULL, NULL, &it));
  mp_proxy *ip = mp_proxy_from_obj(it);
  assert_non_null(ip);
  assert_string_equal(mp_proxy_typeid(ip), "Iterator");
  assert_objects(m, 2);
  int count = 0;
  while (mp_proxy_call(ip, "__next__", NULL, NULL, &got) == 0) {
    mp_obj_free(got);
    count++;
  }
  assert_int_equal(count, 3);
  MP_ASSERT_ERR(mp_proxy_call(ip, "__next__", NULL, NULL, &got), MP_EEOF);
  mp_obj_free(it);
  assert_objects(m, 1);

  /* list */
  mp_proxy *l;
  mp_obj *init = MP_LIST(mp_int_new(0), mp_int_new(1), mp_int_new(2));
  MP_ASSERT_OK(mp_manager_list(m, init, &l));
  mp_obj_free(init);
  MP_ASSERT_OK(mp_proxy_list_append(l, v1));
  MP_ASSERT_OK(mp_proxy_list_reverse(l));
  MP_ASSERT_OK(mp_proxy_list_getitem(l, 0, &got));
  assert_true(mp_obj_equal(got, v1));
  mp_obj_free(got);
  MP_ASSERT_ERR(mp_proxy_list_getitem(l, 10, &got), MP_EINDEX);
  MP_ASSERT_OK(mp_proxy_list_setitem(l, -1, v2));
  mp_obj *more = MP_TUPLE(mp_int_new(7), mp_int_new(8));
  MP_ASSERT_OK(mp_proxy_list_extend(l, more));
  mp_obj_free(more);
  MP_ASSERT_OK(mp_proxy_getvalue(l, &got));
  mp_test_assert_repr(got, "['1', 2, 1, 2, 7, 8]");
  mp_obj_free(got);
  MP_ASSERT_ERR(mp_proxy_call_take(l, "remove", MP_TUPLE(mp_int_new(99)),
                                   NULL), MP_EINVAL);

  /* Namespace */
  mp_proxy *ns;
  MP_ASSERT_OK(mp_manager_namespace(m, &ns));
  MP_ASSERT_OK(mp_proxy_ns_set(ns, "x", v2));
  MP_ASSERT_OK(mp_proxy_ns_set(ns, "a", v1));
  MP_ASSERT_OK(mp_proxy_ns_get(ns, "x", &got));
  assert_true(mp_obj_equal(got, v2));
  mp_obj_free(got);
  MP_ASSERT_ERR(mp_proxy_ns_get(ns, "nope", &got), MP_ENOTFOUND);
  assert_non_null(strstr(mp_errdetail(), "AttributeError"));
  MP_ASSERT_OK(mp_proxy_repr(ns, &r));
  assert_string_equal(r, "Namespace(a='1', x=2)");
  mp_free(r);
  MP_ASSERT_OK(mp_proxy_ns_del(ns, "x"));
  MP_ASSERT_ERR(mp_proxy_ns_del(ns, "x"), MP_ENOTFOUND);

  /* Value */
  mp_proxy *v;
  mp_obj *seven = mp_int_new(7);
  MP_ASSERT_OK(mp_manager_value(m, "i", seven, &v));
  MP_ASSERT_OK(mp_proxy_value_get(v, &got));
  assert_true(mp_obj_equal(got, seven));
  mp_obj_free(got);
  MP_ASSERT_OK(mp_proxy_value_set(v, v2));
  MP_ASSERT_OK(mp_proxy_repr(v, &r));
  assert_string_equal(r, "Value('i', 2)");
  mp_free(r);

  /* Queue */
  mp_proxy *q;
  MP_ASSERT_OK(mp_manager_queue(m, 1, &q));
  MP_ASSERT_ERR(mp_proxy_queue_get(q, &got, 0), MP_EEMPTY);
  MP_ASSERT_ERR(mp_proxy_queue_get(q, &got, 0.05), MP_EEMPTY);
  MP_ASSERT_OK(mp_proxy_queue_put(q, v1, MP_FOREVER));
  MP_ASSERT_ERR(mp_proxy_queue_put(q, v1, 0), MP_EFULL);
  MP_ASSERT_OK(mp_proxy_queue_qsize(q, &n));
  assert_int_equal(n, 1);
  MP_ASSERT_OK(mp_proxy_queue_get(q, &got, MP_FOREVER));
  assert_true(mp_obj_equal(got, v1));
  mp_obj_free(got);

  /* Lock, RLock, Semaphore, Event */
  mp_proxy *lk, *rl, *sem, *ev;
  MP_ASSERT_OK(mp_manager_lock(m, &lk));
  MP_ASSERT_OK(mp_proxy_acquire(lk, MP_FOREVER));
  MP_ASSERT_ERR(mp_proxy_acquire(lk, 0), MP_ETIMEDOUT);
  MP_ASSERT_ERR(mp_proxy_acquire(lk, 0.05), MP_ETIMEDOUT);
  MP_ASSERT_OK(mp_proxy_release(lk));
  MP_ASSERT_ERR(mp_proxy_release(lk), MP_ESTATE);
  MP_ASSERT_OK(mp_manager_rlock(m, &rl));
  MP_ASSERT_OK(mp_proxy_acquire(rl, MP_FOREVER));
  MP_ASSERT_OK(mp_proxy_acquire(rl, 0));
  MP_ASSERT_OK(mp_proxy_release(rl));
  MP_ASSERT_OK(mp_proxy_release(rl));
  MP_ASSERT_ERR(mp_proxy_release(rl), MP_ESTATE);
  MP_ASSERT_OK(mp_manager_semaphore(m, 2, &sem));
  MP_ASSERT_OK(mp_proxy_acquire(sem, 0));
  MP_ASSERT_OK(mp_proxy_acquire(sem, 0));
  MP_ASSERT_ERR(mp_proxy_acquire(sem, 0), MP_ETIMEDOUT);
  MP_ASSERT_OK(mp_proxy_release(sem));
  MP_ASSERT_OK(mp_manager_event(m, &ev));
  assert_int_equal(mp_proxy_event_is_set(ev), 0);
  MP_ASSERT_ERR(mp_proxy_event_wait(ev, 0.01), MP_ETIMEDOUT);
  MP_ASSERT_OK(mp_proxy_event_set(ev));
  MP_ASSERT_OK(mp_proxy_event_wait(ev, MP_FOREVER));
  assert_int_equal(mp_proxy_event_is_set(ev), 1);

  /* an unknown typeid: the server's #TRACEBACK */
  mp_proxy *bad = NULL;
  MP_ASSERT_ERR(mp_manager_create(m, "NoSuchType", NULL, NULL, &bad),
                MP_EREMOTE);

  char *info = NULL;
  MP_ASSERT_OK(mp_manager_debug_info(m, &info));
  assert_non_null(strstr(info, "refcount=1"));
  mp_free(info);

  assert_objects(m, 9);
  mp_proxy *all[] = { d, l, ns, v, q, lk, rl, sem, ev };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    mp_proxy_free(all[i]);
  assert_objects(m, 0);
  mp_obj *vals[] = { k1, k2, k3, v1, v2, none, missing, seven };
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
    mp_obj_free(vals[i]);
  MP_ASSERT_OK(mp_manager_shutdown(m));
  MP_ASSERT_ERR(mp_manager_shutdown(m), MP_ESTATE);
  mp_manager_free(m);
}

/* ---- proxies in children ------------------------------------------------ */

/* The seeds' Server-process example: d[1] = '1', d['2'] = 2, d[0.25] =
 * None and l.reverse(), through proxies the child received. */
static int
child_fills(mp_obj *args)
{
  mp_proxy *d = mp_proxy_from_obj(mp_seq_item(args, 0));
  mp_proxy *l = mp_proxy_from_obj(mp_seq_item(args, 1));
  if (!d || !l)
    return 1;

  mp_obj *k1 = mp_int_new(1), *v1 = mp_str_new("1");
  mp_obj *k2 = mp_str_new("2"), *v2 = mp_int_new(2);
  mp_obj *k3 = mp_float_new(0.25), *v3 = mp_none();
  int rc = mp_proxy_setitem(d, k1, v1) || mp_proxy_setitem(d, k2, v2) ||
           mp_proxy_setitem(d, k3, v3) || mp_proxy_list_reverse(l);
  if (rc)
    fprintf(stderr, "child: %s\n", mp_errdetail());
  mp_obj *pid = mp_int_new(getpid());
  mp_obj *key = mp_str_new("pid");
  rc = rc || mp_proxy_setitem(d, key, pid);
  mp_obj *vals[] = { k1, v1, k2, v2, k3, v3, pid, key };
  for (size_t i = 0; i < 8; i++)
    mp_obj_free(vals[i]);
  return rc ? 2 : 0;
}

static void
test_proxies_in_children(void **state)
{
  mp_manager *m = started(state);
  mp_proxy *d, *l;
  MP_ASSERT_OK(mp_manager_dict(m, &d));
  mp_obj *init = mp_list_new();
  for (int i = 0; i < 10; i++)
    MP_ASSERT_OK(mp_list_append_take(init, mp_int_new(i)));
  MP_ASSERT_OK(mp_manager_list(m, init, &l));
  mp_obj_free(init);
  mp_process *p;
  mp_obj *args = MP_TUPLE(mp_proxy_obj(d), mp_proxy_obj(l));
  MP_ASSERT_OK(mp_process_new(&p, mp_test_context(state),
                              &(mp_process_opts){ .target = child_fills,
                                                  .args = args }));
  mp_obj_free(args);
  MP_ASSERT_OK(mp_process_start(p));
  MP_ASSERT_OK(mp_process_join(p, 60));
  int code = -1;
  MP_ASSERT_OK(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
  mp_obj *got = NULL;
  mp_obj *key = mp_str_new("pid");
  MP_ASSERT_OK(mp_proxy_call_take(d, "pop", MP_TUPLE(mp_obj_ref(key)), &got));
  int64_t pid = 0;
  MP_ASSERT_OK(mp_int_get(got, &pid));
  const char *method = mp_context_method(mp_test_context(state));
  if (!strcmp(method, "threading"))
    assert_int_equal(pid, getpid());
  else
    assert_int_not_equal(pid, getpid());
  mp_obj_free(got);
  mp_obj_free(key);
  MP_ASSERT_OK(mp_proxy_getvalue(d, &got));
  mp_test_assert_repr(got, "{1: '1', '2': 2, 0.25: None}");
  mp_obj_free(got);
  MP_ASSERT_OK(mp_proxy_getvalue(l, &got));
  mp_test_assert_repr(got, "[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]");
  mp_obj_free(got);
  mp_proxy_free(d);
  mp_proxy_free(l);
  assert_objects(m, 0);
  mp_manager_free(m);
}

/* A proxy received through a Connection (not in the args): rebuilt in
 * the child with its own reference, keyed by the process's authkey (the
 * manager uses the default one, which children inherit). */
static int
child_via_conn(mp_obj *args)
{
  mp_conn *c = mp_conn_from_obj(mp_seq_item(args, 0));
  mp_obj *msg = NULL;
  if (!c || mp_conn_recv(c, &msg, 60))
    return 1;
  mp_proxy *q = mp_proxy_from_obj(mp_seq_item(msg, 0));
  mp_obj *hello = mp_str_new("from the child");
  int rc = q ? mp_proxy_queue_put(q, hello, MP_FOREVER) : 2;
  mp_obj_free(hello);
  mp_obj *done = mp_int_new(1);
  if (!rc)
    rc = mp_conn_send(c, done); /* our proxy is about to go: the parent
                                   may drop its own now */
  mp_obj_free(done);
  mp_obj_free(msg);
  return rc ? 3 : 0;
}

static void
test_proxy_through_connection(void **state)
{
  mp_manager *m;
  MP_ASSERT_OK(mp_manager_new(&m, &(mp_manager_opts){
                                      .ctx = mp_test_context(state) }));
  MP_ASSERT_OK(mp_manager_start(m));
  mp_proxy *q;
  MP_ASSERT_OK(mp_manager_queue(m, 0, &q));
  mp_conn *a, *b;
  MP_ASSERT_OK(mp_pipe(&a, &b, 1));
  mp_process *p;
  mp_obj *args = MP_TUPLE(mp_conn_obj(b));
  mp_conn_free(b);
  MP_ASSERT_OK(mp_process_new(&p, mp_test_context(state),
                              &(mp_process_opts){ .target = child_via_conn,
                                                  .args = args }));
  mp_obj_free(args);
  MP_ASSERT_OK(mp_process_start(p));
  mp_obj *msg = MP_TUPLE(mp_proxy_obj(q));
  MP_ASSERT_OK(mp_conn_send(a, msg));
  mp_obj_free(msg);
  mp_obj *got = NULL;
  MP_ASSERT_OK(mp_proxy_queue_get(q, &got, 60));
  mp_test_assert_repr(got, "'from the child'");
  mp_obj_free(got);
  MP_ASSERT_OK(mp_conn_recv(a, &got, 60));
  mp_obj_free(got);
  MP_ASSERT_OK(mp_process_join(p, 60));
  int code = -1;
  MP_ASSERT_OK(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
  mp_conn_free(a);
  mp_proxy_free(q);
  assert_objects(m, 0);
  mp_manager_free(m);
}

/* Through a Queue: the item's proxy is rebuilt by the getter, with its
 * own reference. */
static void
test_proxy_through_queue(void **state)
{
  mp_manager *m = started(state);
  mp_proxy *d;
  MP_ASSERT_OK(mp_manager_dict(m, &d));
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  mp_obj *item = MP_TUPLE(mp_proxy_obj(d), mp_str_new("tag"));
  MP_ASSERT_OK(mp_queue_put(q, item, MP_FOREVER));
  mp_obj_free(item);
  mp_obj *got = NULL;
  MP_ASSERT_OK(mp_queue_get(q, &got, 60));
  mp_proxy *d2 = mp_proxy_from_obj(mp_seq_item(got, 0));
  assert_non_null(d2);
  assert_ptr_not_equal(d2, d);
  assert_string_equal(mp_proxy_ident(d2), mp_proxy_ident(d));
  mp_proxy_free(d); /* the rebuilt one holds its own reference */
  mp_obj *k = mp_int_new(3);
  MP_ASSERT_OK(mp_proxy_setitem(d2, k, k));
  mp_obj_free(k);
  assert_objects(m, 1);
  mp_obj_free(got);
  assert_objects(m, 0);
  mp_queue_free(q);
  mp_manager_free(m);
}

/* ---- nested proxies ------------------------------------------------------ */

/* A proxy stored in a managed container keeps its referent; it comes back
 * as a proxy of the same object; a reply that carries the only remaining
 * reference (l.pop()) still hands over a live object. */
static void
nested_proxies(mp_manager *m)
{
  mp_proxy *outer, *inner;
  MP_ASSERT_OK(mp_manager_list(m, NULL, &outer));
  MP_ASSERT_OK(mp_manager_dict(m, &inner));
  mp_obj *k = mp_str_new("k"), *v = mp_int_new(5);
  MP_ASSERT_OK(mp_proxy_setitem(inner, k, v));
  mp_obj *h = mp_proxy_obj(inner);
  MP_ASSERT_OK(mp_proxy_list_append(outer, h));
  mp_obj_free(h);
  mp_proxy_free(inner);
  /* the list's item keeps the dict alive */
  assert_objects(m, 2);
  mp_obj *got = NULL;
  MP_ASSERT_OK(mp_proxy_list_getitem(outer, 0, &got));
  mp_proxy *again = mp_proxy_from_obj(got);
  assert_non_null(again);
  mp_obj *val = NULL;
  MP_ASSERT_OK(mp_proxy_getitem(again, k, &val));
  assert_true(mp_obj_equal(val, v));
  mp_obj_free(val);
  mp_obj_free(got);
  assert_objects(m, 2);
  /* removing the item releases the dict */
  MP_ASSERT_OK(mp_proxy_call_take(outer, "pop", mp_tuple_take(0), NULL));
  assert_objects(m, 1);
  /* pop() returning the list's only reference to a dict: the server holds
   * it until this client has its own */
  MP_ASSERT_OK(mp_manager_dict(m, &inner));
  MP_ASSERT_OK(mp_proxy_setitem(inner, k, v));
  h = mp_proxy_obj(inner);
  MP_ASSERT_OK(mp_proxy_list_append(outer, h));
  mp_obj_free(h);
  mp_proxy_free(inner);
  MP_ASSERT_OK(mp_proxy_call_take(outer, "pop", mp_tuple_take(0), &got));
  again = mp_proxy_from_obj(got);
  assert_non_null(again);
  MP_ASSERT_OK(mp_proxy_getitem(again, k, &val));
  assert_true(mp_obj_equal(val, v));
  mp_obj_free(val);
  assert_objects(m, 2);
  mp_obj_free(got);
  assert_objects(m, 1);
  mp_proxy_free(outer);
  assert_objects(m, 0);
  mp_obj_free(k);
  mp_obj_free(v);
}

static void
test_nested_proxies(void **state)
{
  mp_manager *m = started(state);
  nested_proxies(m);
  mp_manager_free(m);
}

/* Over TCP, where no descriptor can travel: proxies are plain values
 * (CPython's RebuildProxy) there too. */
static void
test_nested_proxies_tcp(void **state)
{
  mp_manager *m;
  MP_ASSERT_OK(mp_manager_new(&m, &(mp_manager_opts){
                                      .ctx = mp_test_context(state),
                                      .address = "127.0.0.1:0",
                                      .authkey = "secret",
                                      .authkey_len = 6 }));
  MP_ASSERT_OK(mp_manager_start(m));
  nested_proxies(m);
  mp_manager_free(m);
}

/* ---- registered C types ---------------------------------------------------- */

typedef struct counter {
  long n;
} counter;

static int
counter_create(mp_obj *args, mp_obj *kwds, void **out)
{
  int64_t start = 0;
  int rc = mp_args_parse(args, "|L:Counter", &start);
  if (rc)
    return rc;
  counter *c = malloc(sizeof *c);
  if (!c)
    return MP_ENOMEM;
  c->n = (long)start;
  *out = c;
  return 0;
}

static void
counter_destroy(void *p)
{
  free(p);
}

static int
counter_add(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  counter *c = p;
  int64_t k = 1;
  int rc = mp_args_parse(args, "|L:add", &k);
  if (rc)
    return rc;
  if (k < 0)
    return mp_seterr(MP_EINVAL, "negative step %lld", (long long)k);
  c->n += (long)k;
  *res = mp_int_new(c->n);
  return 0;
}

static int
counter_upto(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  counter *c = p;
  mp_obj *l = mp_list_new();
  for (long i = 0; l && i < c->n; i++)
    if (mp_list_append_take(l, mp_int_new(i * i))) {
      mp_obj_free(l);
      l = NULL;
    }
  *res = l;
  return l ? 0 : MP_ENOMEM;
}

static const mp_manager_method counter_methods[] = {
  { "add", counter_add, NULL },
  { "squares", counter_upto, "Iterator" },
};

static const mp_manager_type counter_type = {
  .typeid = "Counter",
  .create = counter_create,
  .destroy = counter_destroy,
  .methods = counter_methods,
  .nmethods = 2,
};

static void
test_registered_type(void **state)
{
  mp_manager *m;
  MP_ASSERT_OK(mp_manager_new(&m, &(mp_manager_opts){
                                      .ctx = mp_test_context(state) }));
  MP_ASSERT_OK(mp_manager_register(m, &counter_type));
  static mp_manager_type heap_check; /* static: accepted */
  (void)heap_check;
  mp_manager_type *onheap = calloc(1, sizeof *onheap);
  onheap->typeid = "Heap";
  MP_ASSERT_ERR(mp_manager_register(m, onheap), MP_EINVAL);
  free(onheap);
  MP_ASSERT_OK(mp_manager_start(m));
  MP_ASSERT_ERR(mp_manager_register(m, &counter_type), MP_ESTATE);
  mp_proxy *c;
  mp_obj *a = MP_TUPLE(mp_int_new(3));
  MP_ASSERT_OK(mp_manager_create(m, "Counter", a, NULL, &c));
  mp_obj_free(a);
  mp_obj *got = NULL;
  MP_ASSERT_OK(mp_proxy_call_take(c, "add", MP_TUPLE(mp_int_new(2)), &got));
  mp_test_assert_repr(got, "5");
  mp_obj_free(got);
  MP_ASSERT_ERR(mp_proxy_call_take(c, "add", MP_TUPLE(mp_int_new(-1)), &got),
                MP_EINVAL);
  assert_non_null(strstr(mp_errdetail(), "negative step -1"));
  MP_ASSERT_OK(mp_proxy_call(c, "squares", NULL, NULL, &got));
  mp_proxy *it = mp_proxy_from_obj(got);
  assert_non_null(it);
  mp_obj *sq = mp_list_new(), *x;
  while (mp_proxy_call(it, "__next__", NULL, NULL, &x) == 0)
    mp_list_append_take(sq, x);
  mp_test_assert_repr(sq, "[0, 1, 4, 9, 16]");
  mp_obj_free(sq);
  mp_obj_free(got);
  mp_proxy_free(c);
  assert_objects(m, 0);
  mp_manager_free(m);
}

/* ---- waits across clients: Barrier, Condition, Event, Lock ---------------- */

typedef struct waiter_arg {
  mp_proxy *barrier, *cond, *ev, *lock;
  int64_t index;
  int rc;
} waiter_arg;

static void *
barrier_waiter(void *arg)
{
  waiter_arg *w = arg;
  mp_obj *v = NULL;
  w->rc = mp_proxy_call(w->barrier, "wait", NULL, NULL, &v);
  if (!w->rc)
    w->rc = mp_int_get(v, &w->index);
  mp_obj_free(v);
  return NULL;
}

static void *
cond_waiter(void *arg)
{
  waiter_arg *w = arg;
  mp_obj *v = NULL;
  w->rc = mp_proxy_acquire(w->cond, MP_FOREVER);
  if (!w->rc)
    w->rc = mp_proxy_event_set(w->ev); /* "I hold it and will wait" */
  if (!w->rc)
    w->rc = mp_proxy_call_take(w->cond, "wait", MP_TUPLE(mp_none()), &v);
  if (!w->rc && !mp_obj_truthy(v))
    w->rc = MP_ETIMEDOUT;
  mp_obj_free(v);
  if (!w->rc)
    w->rc = mp_proxy_release(w->cond);
  return NULL;
}

static void *
lock_waiter(void *arg)
{
  waiter_arg *w = arg;
  w->rc = mp_proxy_acquire(w->lock, MP_FOREVER);
  if (!w->rc)
    w->rc = mp_proxy_release(w->lock);
  return NULL;
}

static void
test_waits_across_clients(void **state)
{
  mp_manager *m = started(state);
  waiter_arg w[3] = { 0 };
  mp_proxy *barrier, *cond, *ev, *lock;
  mp_obj *three = MP_TUPLE(mp_int_new(3));
  MP_ASSERT_OK(mp_manager_create(m, "Barrier", three, NULL, &barrier));
  mp_obj_free(three);
  MP_ASSERT_OK(mp_manager_create(m, "Condition", NULL, NULL, &cond));
  MP_ASSERT_OK(mp_manager_event(m, &ev));
  MP_ASSERT_OK(mp_manager_lock(m, &lock));
  /* three threads (three connections) meet at the barrier */
  pthread_t th[3];
  for (int i = 0; i < 3; i++) {
    w[i].barrier = barrier;
    assert_int_equal(pthread_create(&th[i], NULL, barrier_waiter, &w[i]), 0);
  }
  int seen = 0;
  for (int i = 0; i < 3; i++) {
    pthread_join(th[i], NULL);
    MP_ASSERT_OK(w[i].rc);
    seen |= 1 << w[i].index;
  }
  assert_int_equal(seen, 7);
  mp_obj *v = NULL;
  MP_ASSERT_OK(mp_proxy_call_take(barrier, "__getattribute__",
                                  MP_TUPLE(mp_str_new("n_waiting")), &v));
  mp_test_assert_repr(v, "0");
  mp_obj_free(v);
  /* a timed-out wait breaks it */
  MP_ASSERT_ERR(mp_proxy_call_take(barrier, "wait", MP_TUPLE(mp_float_new(0.01)),
                                   &v), MP_EBROKEN);
  MP_ASSERT_ERR(mp_proxy_call(barrier, "wait", NULL, NULL, &v), MP_EBROKEN);
  MP_ASSERT_OK(mp_proxy_call(barrier, "reset", NULL, NULL, NULL));
  /* a condition waiter is woken by notify from another connection */
  w[0].cond = cond;
  w[0].ev = ev;
  assert_int_equal(pthread_create(&th[0], NULL, cond_waiter, &w[0]), 0);
  MP_ASSERT_OK(mp_proxy_event_wait(ev, 60));
  /* the waiter released the lock inside wait: we can take it */
  MP_ASSERT_OK(mp_proxy_acquire(cond, 60));
  MP_ASSERT_OK(mp_proxy_call(cond, "notify", NULL, NULL, NULL));
  MP_ASSERT_OK(mp_proxy_release(cond));
  pthread_join(th[0], NULL);
  MP_ASSERT_OK(w[0].rc);
  /* notify without holding the lock: RuntimeError */
  MP_ASSERT_ERR(mp_proxy_call(cond, "notify", NULL, NULL, NULL), MP_ESTATE);
  /* a Lock held here blocks another connection until released */
  MP_ASSERT_OK(mp_proxy_acquire(lock, MP_FOREVER));
  w[1].lock = lock;
  assert_int_equal(pthread_create(&th[1], NULL, lock_waiter, &w[1]), 0);
  MP_ASSERT_OK(mp_proxy_release(lock));
  pthread_join(th[1], NULL);
  MP_ASSERT_OK(w[1].rc);
  /* Condition(lock): the condition's lock is that Lock */
  mp_proxy *c2;
  mp_obj *la = MP_TUPLE(mp_proxy_obj(lock));
  MP_ASSERT_OK(mp_manager_create(m, "Condition", la, NULL, &c2));
  mp_obj_free(la);
  MP_ASSERT_OK(mp_proxy_acquire(c2, 0));
  MP_ASSERT_ERR(mp_proxy_acquire(lock, 0), MP_ETIMEDOUT);
  MP_ASSERT_OK(mp_proxy_release(c2));
  MP_ASSERT_OK(mp_proxy_acquire(lock, 0));
  MP_ASSERT_OK(mp_proxy_release(lock));
  mp_proxy_free(c2);
  mp_proxy_free(barrier);
  mp_proxy_free(cond);
  mp_proxy_free(ev);
  mp_proxy_free(lock);
  assert_objects(m, 0);
  mp_manager_free(m);
}

/* ---- short-lived threads ----------------------------------------------- */

static void *
one_call(void *arg)
{
  mp_obj *k = mp_int_new(1);
  int rc = mp_proxy_setitem(arg, k, k);
  mp_obj_free(k);
  return (void *)(intptr_t)rc;
}

/* Each thread has its own connection; those of threads that ended are
 * closed when another thread opens one, so fds do not pile up. */
static void
test_threads_connections_reclaimed(void **state)
{
  mp_manager *m = started(state);
  mp_proxy *d;
  MP_ASSERT_OK(mp_manager_dict(m, &d));
  int before = mp_test_count_fds();
  for (int i = 0; i < 40; i++) {
    pthread_t th;
    void *rc;
    assert_int_equal(pthread_create(&th, NULL, one_call, d), 0);
    pthread_join(th, &rc);
    assert_int_equal((intptr_t)rc, 0);
  }
  /* at most the last thread's connection is left */
  assert_true(mp_test_count_fds() <= before + 1);
  mp_proxy_free(d);
  mp_manager_free(m);
}

/* ---- serve_forever in this process ----------------------------------------- */

typedef struct serve_arg {
  mp_manager *m;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int ready;
  int rc;
} serve_arg;

static void
on_ready(mp_manager *m, void *arg)
{
  serve_arg *s = arg;
  pthread_mutex_lock(&s->mu);
  s->ready = 1;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void *
serve_thread(void *arg)
{
  serve_arg *s = arg;
  s->rc = mp_manager_serve_forever(s->m, on_ready, s);
  return NULL;
}

static void
test_serve_forever(void **state)
{
  serve_arg s = { .mu = PTHREAD_MUTEX_INITIALIZER,
                  .cv = PTHREAD_COND_INITIALIZER };
  MP_ASSERT_OK(mp_manager_new(&s.m, &(mp_manager_opts){
                                        .address = "127.0.0.1:0",
                                        .authkey = "k", .authkey_len = 1 }));
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, serve_thread, &s), 0);
  pthread_mutex_lock(&s.mu);
  while (!s.ready)
    pthread_cond_wait(&s.cv, &s.mu);
  pthread_mutex_unlock(&s.mu);
  const char *addr = mp_manager_address(s.m);
  assert_non_null(strstr(addr, "127.0.0.1:"));
  /* a second manager object connects to it, as a remote client would */
  mp_manager *c;
  MP_ASSERT_OK(mp_manager_new(&c, &(mp_manager_opts){
                                      .address = addr, .authkey = "k",
                                      .authkey_len = 1 }));
  MP_ASSERT_OK(mp_manager_connect(c));
  mp_manager *wrong;
  MP_ASSERT_OK(mp_manager_new(&wrong, &(mp_manager_opts){
                                          .address = addr, .authkey = "x",
                                          .authkey_len = 1 }));
  MP_ASSERT_ERR(mp_manager_connect(wrong), MP_EAUTH);
  mp_manager_free(wrong);
  mp_proxy *q;
  MP_ASSERT_OK(mp_manager_queue(c, 0, &q));
  mp_obj *item = MP_DICT(mp_str_new("a"), MP_TUPLE(mp_int_new(1)));
  MP_ASSERT_OK(mp_proxy_queue_put(q, item, MP_FOREVER));
  mp_obj *got = NULL;
  MP_ASSERT_OK(mp_proxy_queue_get(q, &got, MP_FOREVER));
  assert_true(mp_obj_equal(got, item));
  mp_obj_free(got);
  mp_obj_free(item);
  mp_proxy_free(q);
  assert_objects(c, 0);
  MP_ASSERT_OK(mp_manager_shutdown(c)); /* the remote shutdown */
  pthread_join(th, NULL);
  assert_int_equal(s.rc, 0);
  mp_manager_free(c);
  mp_manager_free(s.m);
}

/* mp_manager_shutdown stops a started server through its stop channel, not
 * a connection: with its one connection slot taken it still stops cleanly
 * (its socket file removed, where a terminated server leaves it), and the
 * held connection sees the server gone. */
static void
test_shutdown_when_full(void **state)
{
  mp_manager *m;
  MP_ASSERT_OK(mp_manager_new(&m, &(mp_manager_opts){
                                      .ctx = mp_test_context(state),
                                      .authkey = "secret",
                                      .authkey_len = 6,
                                      .max_connections = 1 }));
  MP_ASSERT_OK(mp_manager_start(m));
  char *path = strdup(mp_manager_address(m));
  assert_non_null(path);
  assert_int_equal(access(path, F_OK), 0);
  /* the server counts a connection before it runs the handshake: once
   * this one is authenticated it holds the only slot */
  mp_conn *c;
  MP_ASSERT_OK(mp_client(&c, path, &(mp_client_opts){ .authkey = "secret",
                                                      .authkey_len = 6 }));
  MP_ASSERT_OK(mp_manager_shutdown(m));
  assert_int_equal(access(path, F_OK), -1);
  assert_int_equal(errno, ENOENT);
  mp_obj *o = NULL;
  assert_true(mp_conn_recv(c, &o, MP_FOREVER) < 0);
  mp_conn_free(c);
  mp_manager_free(m);
  free(path);
}

/* Started servers' default addresses are sockets in one directory of this
 * process (CPython's get_temp_dir()), each removed when its server stops. */
static void
test_default_address(void **state)
{
  mp_manager *m1 = started(state), *m2 = started(state);
  char *a1 = strdup(mp_manager_address(m1)), *a2 = strdup(mp_manager_address(m2));
  assert_non_null(a1);
  assert_non_null(a2);
  assert_string_not_equal(a1, a2);
  char *s1 = strrchr(a1, '/'), *s2 = strrchr(a2, '/');
  assert_non_null(s1);
  assert_non_null(s2);
  assert_int_equal(s1 - a1, s2 - a2);
  assert_memory_equal(a1, a2, (size_t)(s1 - a1));
  mp_manager_free(m1);
  assert_int_equal(access(a1, F_OK), -1);
  assert_int_equal(access(a2, F_OK), 0);
  mp_manager_free(m2);
  assert_int_equal(access(a2, F_OK), -1);
  free(a1);
  free(a2);
}

/* The server is not a daemon, so a registered type may start processes in
 * it (what a Pool typeid needs): "Starter".run() starts a child with the
 * server's own start method, joins it and returns its exit code. */
static int
starter_child(mp_obj *args)
{
  (void)args;
  return 7;
}

static int
starter_create(mp_obj *args, mp_obj *kwds, void **out)
{
  (void)args;
  (void)kwds;
  static int token;
  *out = &token;
  return 0;
}

static int
starter_run(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  (void)p;
  (void)args;
  (void)kwds;
  mp_process *c;
  int rc = mp_process_new(&c, NULL, &(mp_process_opts){ .target = starter_child });
  if (!rc && !(rc = mp_process_start(c)) && !(rc = mp_process_join(c, 60.0))) {
    int code = 0;
    rc = mp_process_exitcode(c, &code);
    if (!rc)
      *res = mp_int_new(code);
  }
  mp_process_free(c);
  return rc;
}

static const mp_manager_method starter_methods[] = {
  { "run", starter_run, NULL },
};

static const mp_manager_type starter_type = {
  .typeid = "Starter",
  .create = starter_create,
  .methods = starter_methods,
  .nmethods = 1,
};

static void
test_server_children(void **state)
{
  mp_manager *m;
  MP_ASSERT_OK(mp_manager_new(&m, &(mp_manager_opts){
                                      .ctx = mp_test_context(state),
                                      .authkey = "secret",
                                      .authkey_len = 6 }));
  MP_ASSERT_OK(mp_manager_register(m, &starter_type));
  MP_ASSERT_OK(mp_manager_start(m));
  mp_proxy *st;
  MP_ASSERT_OK(mp_manager_create(m, "Starter", NULL, NULL, &st));
  mp_obj *code = NULL;
  MP_ASSERT_OK(mp_proxy_call(st, "run", NULL, NULL, &code));
  int64_t v = -1;
  MP_ASSERT_OK(mp_int_get(code, &v));
  assert_int_equal(v, 7);
  mp_obj_free(code);
  mp_proxy_free(st);
  assert_objects(m, 0);
  mp_manager_free(m);
}

static const struct CMUnitTest tests[] = {
  MP_TEST_METHODS_THREADING(test_types),
  MP_TEST_METHODS_THREADING(test_proxies_in_children),
  MP_TEST_METHODS_THREADING(test_proxy_through_connection),
  MP_TEST_METHODS(test_nested_proxies),
  MP_TEST_METHODS(test_nested_proxies_tcp),
  cmocka_unit_test(test_proxy_through_queue),
  MP_TEST_METHODS(test_registered_type),
  cmocka_unit_test(test_waits_across_clients),
  cmocka_unit_test(test_threads_connections_reclaimed),
  cmocka_unit_test(test_serve_forever),
  MP_TEST_METHODS_THREADING(test_shutdown_when_full),
  MP_TEST_METHODS_THREADING(test_default_address),
  MP_TEST_METHODS(test_server_children),
};

MP_TEST_MAIN(tests)
