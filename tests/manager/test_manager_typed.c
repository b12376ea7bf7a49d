/* SPDX-License-Identifier: MIT */
/* The typed proxy calls test_manager_basic does not reach, against a C
 * server under every start method: dict get (present key, default, a
 * missing key with no default: None), keys and values in insertion order,
 * Event clear, and a proxy's extra reference (mp_proxy_ref: the object
 * lives until the last reference is freed). */
#include <string.h>

#include "proc/proc_internal.h"
#include "testutil.h"

static void
test_typed_calls(void **state)
{
  mp_manager *m;
  MP_ASSERT_OK(mp_manager_new(&m, &(mp_manager_opts){
                                      .ctx = mp_test_context(state),
                                      .authkey = "secret",
                                      .authkey_len = 6 }));
  MP_ASSERT_OK(mp_manager_start(m));

  mp_proxy *d;
  MP_ASSERT_OK(mp_manager_dict(m, &d));
  mp_obj *a = mp_str_new("a"), *b = mp_str_new("b"), *z = mp_str_new("z");
  mp_obj *one = mp_int_new(1), *two = mp_int_new(2), *dflt = mp_int_new(-1);
  MP_ASSERT_OK(mp_proxy_setitem(d, a, one));
  MP_ASSERT_OK(mp_proxy_setitem(d, b, two));
  mp_obj *v;
  MP_ASSERT_OK(mp_proxy_dict_get(d, b, dflt, &v));
  mp_test_assert_repr(v, "2");
  mp_obj_free(v);
  MP_ASSERT_OK(mp_proxy_dict_get(d, z, dflt, &v));
  mp_test_assert_repr(v, "-1");
  mp_obj_free(v);
  v = (mp_obj *)1;
  MP_ASSERT_OK(mp_proxy_dict_get(d, z, NULL, &v));
  assert_true(v == NULL || mp_obj_type(v) == MP_T_NONE);
  mp_obj_free(v);
  MP_ASSERT_OK(mp_proxy_dict_keys(d, &v));
  mp_test_assert_repr(v, "['a', 'b']");
  mp_obj_free(v);
  MP_ASSERT_OK(mp_proxy_dict_values(d, &v));
  mp_test_assert_repr(v, "[1, 2]");
  mp_obj_free(v);

  /* a second reference keeps the object on the server */
  mp_proxy *d2 = mp_proxy_ref(d);
  assert_ptr_equal(d2, d);
  mp_proxy_free(d);
  MP_ASSERT_OK(mp_proxy_dict_keys(d2, &v));
  mp_test_assert_repr(v, "['a', 'b']");
  mp_obj_free(v);
  mp_proxy_free(d2);
  assert_null(mp_proxy_ref(NULL));

  mp_proxy *ev;
  MP_ASSERT_OK(mp_manager_event(m, &ev));
  MP_ASSERT_OK(mp_proxy_event_set(ev));
  assert_int_equal(mp_proxy_event_is_set(ev), 1);
  MP_ASSERT_OK(mp_proxy_event_clear(ev));
  assert_int_equal(mp_proxy_event_is_set(ev), 0);
  MP_ASSERT_ERR(mp_proxy_event_wait(ev, 0.01), MP_ETIMEDOUT);
  mp_proxy_free(ev);

  int64_t n = -1;
  MP_ASSERT_OK(mp_manager_number_of_objects(m, &n));
  assert_int_equal(n, 0);
  mp_obj_free(a), mp_obj_free(b), mp_obj_free(z);
  mp_obj_free(one), mp_obj_free(two), mp_obj_free(dflt);
  mp_manager_free(m);
}

static const struct CMUnitTest tests[] = {
  MP_TEST_METHODS_THREADING(test_typed_calls),
};

MP_TEST_MAIN(tests)
