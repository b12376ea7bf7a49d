/* SPDX-License-Identifier: MIT */
/* SyncManager's Pool typeid on a C server, under every start method: the
 * PoolProxy names with C function values -- map, starmap, apply, the
 * async forms' AsyncResult proxies (get with and without a timeout, wait,
 * ready, successful), imap and imap_unordered as Iterator proxies --, a
 * task's error code coming back with its text, the TypeErrors for what a
 * C server cannot run (no function value, callbacks, a task keyword),
 * close/join, and the counts back to 0 (a pool freed while open is
 * terminated by the server). */
#include <string.h>
#include <unistd.h>

#include "proc/proc_internal.h"
#include "../pool/tasks.h" /* square */
#include "testutil.h"

static int
add(mp_obj *args, mp_obj **result)
{
  int64_t a, b;
  int rc = mp_args_parse(args, "LL:add", &a, &b);
  if (rc)
    return rc;
  *result = mp_int_new(a + b);
  return 0;
}

static int
bad(mp_obj *args, mp_obj **result)
{
  (void)args;
  (void)result;
  return mp_seterr(MP_EINVAL, "bad item");
}

static int
slow(mp_obj *args, mp_obj **result)
{
  (void)args;
  usleep(300000);
  *result = mp_int_new(1);
  return 0;
}

static mp_obj *
ints(int n)
{
  mp_obj *l = mp_list_new();
  for (int i = 0; i < n; i++)
    mp_list_append_take(l, mp_int_new(i));
  return l;
}

/* method(args) on p; the value's repr must be `want` */
static void
call_is(mp_proxy *p, const char *method, mp_obj *args, mp_obj *kwds,
        const char *want)
{
  mp_obj *v = NULL;
  MP_ASSERT_OK(mp_proxy_call(p, method, args, kwds, &v));
  mp_test_assert_repr(v, want);
  mp_obj_free(v);
  mp_obj_free(args);
  mp_obj_free(kwds);
}

static void
test_pool_typeid(void **state)
{
  mp_manager *m;
  MP_ASSERT_OK(mp_manager_new(&m, &(mp_manager_opts){
                                      .ctx = mp_test_context(state),
                                      .authkey = "secret",
                                      .authkey_len = 6 }));
  MP_ASSERT_OK(mp_manager_start(m));
  mp_proxy *pool;
  MP_ASSERT_OK(mp_manager_pool(m, 2, &pool));
  assert_string_equal(mp_proxy_typeid(pool), "Pool");

  call_is(pool, "map", MP_TUPLE(MP_FUNC(square), ints(10)), NULL,
          "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]");
  mp_obj *kw = mp_dict_new();
  mp_dict_set_take(kw, mp_str_new("chunksize"), mp_int_new(3));
  call_is(pool, "map", MP_TUPLE(MP_FUNC(square), ints(5)), kw,
          "[0, 1, 4, 9, 16]");
  call_is(pool, "starmap",
          MP_TUPLE(MP_FUNC(add),
                   MP_LIST(MP_TUPLE(mp_int_new(1), mp_int_new(2)),
                           MP_TUPLE(mp_int_new(3), mp_int_new(4)))),
          NULL, "[3, 7]");
  call_is(pool, "apply",
          MP_TUPLE(MP_FUNC(add), MP_TUPLE(mp_int_new(2), mp_int_new(3))),
          NULL, "5");

  /* apply_async: an AsyncResult proxy */
  mp_obj *h = NULL;
  mp_obj *a = MP_TUPLE(MP_FUNC(add), MP_TUPLE(mp_int_new(2), mp_int_new(3)));
  MP_ASSERT_OK(mp_proxy_call(pool, "apply_async", a, NULL, &h));
  mp_obj_free(a);
  mp_proxy *r = mp_proxy_from_obj(h);
  assert_non_null(r);
  assert_string_equal(mp_proxy_typeid(r), "AsyncResult");
  call_is(r, "get", mp_tuple_take(0), NULL, "5");
  call_is(r, "ready", mp_tuple_take(0), NULL, "True");
  call_is(r, "successful", mp_tuple_take(0), NULL, "True");
  call_is(r, "wait", MP_TUPLE(mp_float_new(1.0)), NULL, "None");
  mp_obj_free(h);

  /* a slow one: get(timeout) times out, successful() is not ready yet */
  a = MP_TUPLE(MP_FUNC(slow));
  MP_ASSERT_OK(mp_proxy_call(pool, "apply_async", a, NULL, &h));
  mp_obj_free(a);
  r = mp_proxy_from_obj(h);
  mp_obj *v = NULL;
  MP_ASSERT_ERR(mp_proxy_call_take(r, "get", MP_TUPLE(mp_float_new(0.01)),
                                   &v),
                MP_ETIMEDOUT);
  MP_ASSERT_ERR(mp_proxy_call(r, "successful", NULL, NULL, &v), MP_EINVAL);
  call_is(r, "ready", mp_tuple_take(0), NULL, "False");
  call_is(r, "get", mp_tuple_take(0), NULL, "1");
  mp_obj_free(h);

  /* map_async */
  a = MP_TUPLE(MP_FUNC(square), ints(4));
  MP_ASSERT_OK(mp_proxy_call(pool, "map_async", a, NULL, &h));
  mp_obj_free(a);
  call_is(mp_proxy_from_obj(h), "get", mp_tuple_take(0), NULL,
          "[0, 1, 4, 9]");
  mp_obj_free(h);

  /* imap: an Iterator proxy, drawn from as asked; then StopIteration */
  a = MP_TUPLE(MP_FUNC(square), ints(4));
  MP_ASSERT_OK(mp_proxy_call(pool, "imap", a, NULL, &h));
  mp_obj_free(a);
  mp_proxy *it = mp_proxy_from_obj(h);
  assert_string_equal(mp_proxy_typeid(it), "Iterator");
  for (int i = 0; i < 4; i++) {
    char want[8];
    snprintf(want, sizeof want, "%d", i * i);
    call_is(it, "__next__", mp_tuple_take(0), NULL, want);
  }
  MP_ASSERT_ERR(mp_proxy_call(it, "__next__", NULL, NULL, &v), MP_EEOF);
  mp_obj_free(h);
  a = MP_TUPLE(MP_FUNC(square), ints(4));
  MP_ASSERT_OK(mp_proxy_call(pool, "imap_unordered", a, NULL, &h));
  mp_obj_free(a);
  int64_t sum = 0;
  for (int i = 0; i < 4; i++) {
    int64_t x;
    MP_ASSERT_OK(mp_proxy_call(mp_proxy_from_obj(h), "__next__", NULL, NULL,
                               &v));
    MP_ASSERT_OK(mp_int_get(v, &x));
    sum += x;
    mp_obj_free(v);
  }
  assert_int_equal(sum, 0 + 1 + 4 + 9);
  mp_obj_free(h);

  /* a task's code comes back with its text */
  a = MP_TUPLE(MP_FUNC(bad), ints(3));
  MP_ASSERT_ERR(mp_proxy_call(pool, "map", a, NULL, &v), MP_EINVAL);
  assert_non_null(strstr(mp_errdetail(), "bad item"));
  mp_obj_free(a);
  /* what a C server cannot run: TypeError */
  a = MP_TUPLE(mp_int_new(5), ints(3));
  MP_ASSERT_ERR(mp_proxy_call(pool, "map", a, NULL, &v), MP_ETYPE);
  assert_non_null(strstr(mp_errdetail(), "function value"));
  mp_obj_free(a);
  a = MP_TUPLE(MP_FUNC(square), ints(3), mp_none(), MP_FUNC(square));
  MP_ASSERT_ERR(mp_proxy_call(pool, "map_async", a, NULL, &v), MP_ETYPE);
  mp_obj_free(a);
  kw = mp_dict_new();
  mp_dict_set_take(kw, mp_str_new("nosuch"), mp_int_new(1));
  a = MP_TUPLE(MP_FUNC(square), ints(3));
  MP_ASSERT_ERR(mp_proxy_call(pool, "map", a, kw, &v), MP_ETYPE);
  mp_obj_free(a);
  mp_obj_free(kw);

  MP_ASSERT_OK(mp_proxy_call(pool, "close", NULL, NULL, NULL));
  MP_ASSERT_OK(mp_proxy_call(pool, "join", NULL, NULL, NULL));
  a = MP_TUPLE(MP_FUNC(square), ints(3));
  assert_int_not_equal(mp_proxy_call(pool, "map", a, NULL, &v), 0);
  mp_obj_free(a);
  mp_proxy_free(pool);

  /* one freed while open: the server terminates it */
  MP_ASSERT_OK(mp_manager_pool(m, 0, &pool));
  call_is(pool, "map", MP_TUPLE(MP_FUNC(square), ints(3)), NULL, "[0, 1, 4]");
  mp_proxy_free(pool);
  int64_t n = -1;
  MP_ASSERT_OK(mp_manager_number_of_objects(m, &n));
  assert_int_equal(n, 0);
  MP_ASSERT_ERR(mp_manager_pool(m, -1, &pool), MP_EINVAL);
  mp_manager_free(m);
}

static const struct CMUnitTest tests[] = {
  MP_TEST_METHODS(test_pool_typeid),
};

MP_TEST_MAIN(tests)
