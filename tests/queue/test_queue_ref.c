/* SPDX-License-Identifier: MIT */
/* mp_queue_ref (a second reference keeps the queue usable until the last
 * free) and mp_queue_handle_type (the registered "mproc.Queue" type of the
 * queue's handle values). */
#include <string.h>

#include "testutil.h"

static void
test_ref_and_handle_type(void **state)
{
  (void)state;
  mp_queue *q;
  MP_ASSERT_OK(mp_queue_new(&q, NULL));
  mp_queue *q2 = mp_queue_ref(q);
  assert_ptr_equal(q2, q);
  assert_null(mp_queue_ref(NULL));
  mp_queue_free(q);
  MP_ASSERT_OK(mp_queue_put_bytes(q2, "x", 1, 0));
  char c;
  size_t n;
  MP_ASSERT_OK(mp_queue_get_bytes_into(q2, &c, 1, &n, 0));
  assert_int_equal(n, 1);
  assert_int_equal(c, 'x');

  const mp_handle_type *t = mp_queue_handle_type();
  assert_non_null(t);
  assert_string_equal(t->name, "mproc.Queue");
  assert_ptr_equal(mp_handle_find("mproc.Queue"), t);
  mp_obj *o = mp_queue_obj(q2);
  assert_ptr_equal(mp_handle_type_of(o), t);
  assert_ptr_equal(mp_queue_from_obj(o), q2);
  mp_obj_free(o);
  mp_queue_free(q2);
}

static const struct CMUnitTest tests[] = {
  cmocka_unit_test(test_ref_and_handle_type),
};

MP_TEST_MAIN(tests)
