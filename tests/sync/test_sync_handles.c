/* SPDX-License-Identifier: MIT */
/* Handle values of every primitive: encoded with their fds and rebuilt (in
 * this process: the rebuilt handle must reach the same shared object), and
 * rebuild refusing malformed states without leaking the fds it was given. */
#define _GNU_SOURCE
#include "testutil.h"
#include "shared/shared_internal.h" /* mp__arena_trim */

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* dumps_fds then loads_fds with copies of the fds (as a receiver gets). */
static mp_obj *
roundtrip(mp_obj *o)
{
  void *data;
  size_t len, nfds;
  int *fds;
  MP_ASSERT_OK(mp_pickle_dumps_fds(o, NULL, &data, &len, &fds, &nfds));
  int copies[16];
  assert_true(nfds <= 16);
  for (size_t i = 0; i < nfds; i++)
    copies[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
  mp_obj *back = NULL;
  MP_ASSERT_OK(mp_pickle_loads_fds(data, len, NULL, copies, nfds, &back));
  mp_free(data);
  mp_free(fds);
  mp_obj_free(o);
  return back;
}

static void
test_roundtrips(void **state)
{
  mp__arena_trim(); /* what earlier tests left kept for reuse */
  int fds0 = mp_test_count_fds();
  mp_lock *l;
  MP_ASSERT_OK(mp_rlock_new(&l));
  mp_obj *o = roundtrip(mp_lock_obj(l));
  mp_lock *l2 = mp_lock_from_obj(o);
  assert_non_null(l2);
  assert_ptr_not_equal(l2, l);
  assert_int_equal(mp_lock_is_recursive(l2), 1);
  MP_ASSERT_OK(mp_lock_acquire(l, 0));
  assert_int_equal(mp_lock_locked(l2), 1);
  assert_int_equal(mp_lock_is_mine(l2), 1); /* same thread, same lock */
  MP_ASSERT_OK(mp_lock_release(l2));
  assert_int_equal(mp_lock_locked(l), 0);
  assert_null(mp_sem_from_obj(o)); /* another handle type */
  mp_obj_free(o);
  mp_lock_free(l);

  mp_sem *s;
  MP_ASSERT_OK(mp_sem_new(&s, 3, NULL));
  o = roundtrip(mp_sem_obj(s));
  MP_ASSERT_OK(mp_sem_acquire(mp_sem_from_obj(o), 0));
  assert_int_equal(mp_sem_get_value(s), 2);
  mp_obj_free(o);
  mp_sem_free(s);

  mp_event *e;
  MP_ASSERT_OK(mp_event_new(&e));
  o = roundtrip(mp_event_obj(e));
  MP_ASSERT_OK(mp_event_set(mp_event_from_obj(o)));
  assert_int_equal(mp_event_is_set(e), 1);
  mp_obj_free(o);
  mp_event_free(e);

  mp_cond *c;
  MP_ASSERT_OK(mp_cond_new(&c, NULL));
  o = roundtrip(mp_cond_obj(c));
  mp_cond *c2 = mp_cond_from_obj(o);
  MP_ASSERT_OK(mp_cond_acquire(c, 0));
  assert_int_equal(mp_lock_locked(mp_cond_lock(c2)), 1);
  MP_ASSERT_ERR(mp_cond_wait(c2, 0.01), MP_ETIMEDOUT); /* we hold it */
  MP_ASSERT_OK(mp_cond_release(c2));
  mp_obj_free(o);
  mp_cond_free(c);

  mp_barrier *b;
  MP_ASSERT_OK(mp_barrier_new(&b, 4, NULL));
  o = roundtrip(mp_barrier_obj(b));
  assert_int_equal(mp_barrier_parties(mp_barrier_from_obj(o)), 4);
  MP_ASSERT_OK(mp_barrier_abort(mp_barrier_from_obj(o)));
  assert_int_equal(mp_barrier_broken(b), 1);
  mp_obj_free(o);
  mp_barrier_free(b);

  mp_value *v;
  MP_ASSERT_OK(mp_value_new(&v, 'h', &(short){-3}, NULL));
  o = roundtrip(mp_value_obj(v));
  int64_t x;
  MP_ASSERT_OK(mp_value_get_int(mp_value_from_obj(o), &x));
  assert_int_equal(x, -3);
  assert_int_equal(mp_value_typecode(mp_value_from_obj(o)), 'h');
  assert_non_null(mp_value_get_lock(mp_value_from_obj(o)));
  mp_obj_free(o);
  mp_value_free(v);

  mp_array *a;
  MP_ASSERT_OK(mp_array_new(&a, 'd', 5, NULL, &(mp_value_opts){.raw = 1}));
  o = roundtrip(mp_array_obj(a));
  mp_array *a2 = mp_array_from_obj(o);
  assert_int_equal(mp_array_len(a2), 5);
  assert_null(mp_array_get_lock(a2));
  MP_ASSERT_OK(mp_array_set_double(a2, 4, 2.5));
  double d;
  MP_ASSERT_OK(mp_array_get_double(a, 4, &d));
  assert_true(d == 2.5);
  assert_null(mp_value_from_obj(o)); /* an Array is not a Value */
  mp_obj_free(o);
  mp_array_free(a);

  mp_shm *m;
  MP_ASSERT_OK(mp_shm_new(&m, NULL, &(mp_shm_opts){.create = 1, .size = 64}));
  o = roundtrip(mp_shm_obj(m));
  mp_shm *m2 = mp_shm_from_obj(o);
  assert_string_equal(mp_shm_name(m2), mp_shm_name(m));
  assert_int_equal(mp_shm_size(m2), 64);
  strcpy(mp_shm_buf(m2), "via handle");
  assert_string_equal(mp_shm_buf(m), "via handle");
  mp_obj_free(o);
  /* a closed SharedMemory cannot be sent */
  MP_ASSERT_OK(mp_shm_close(m));
  mp_obj *closed = mp_shm_obj(m);
  void *data;
  size_t len, nfds;
  int *fds;
  MP_ASSERT_ERR(mp_pickle_dumps_fds(closed, NULL, &data, &len, &fds, &nfds),
                MP_ECLOSED);
  mp_obj_free(closed);
  MP_ASSERT_OK(mp_shm_unlink(m));
  mp_shm_free(m);
  mp_resource_tracker_stop();

  assert_null(mp_lock_obj(NULL));
  mp__arena_trim(); /* the slab kept for reuse */
  assert_int_equal(mp_test_count_fds(), fds0);
}

/* Every type's rebuild refuses garbage with MP_EMALFORMED and closes the
 * fds it was handed. */
static void
test_malformed_states(void **state)
{
  const char *types[] = {"mproc.Lock",  "mproc.Semaphore", "mproc.Event",
                         "mproc.Condition", "mproc.Barrier", "mproc.Value",
                         "mproc.Array", "mproc.SharedMemory"};
  int fds0 = mp_test_count_fds();
  mp_obj *bad[] = {
      mp_none(),
      MP_TUPLE(mp_int_new(1)),
      MP_TUPLE(MP_TUPLE(mp_int_new(1), mp_int_new(2)), mp_none()),
      /* a location with a wild offset and fd index */
      MP_TUPLE(MP_TUPLE(mp_int_new(1), mp_int_new(0), mp_int_new(1 << 20),
                        mp_int_new(3), mp_int_new(9)),
               mp_bool_new(0)),
      MP_TUPLE(MP_TUPLE(mp_int_new(-1), mp_int_new(0), mp_int_new(1 << 20),
                        mp_int_new(128), mp_int_new(0)),
               mp_bool_new(0)),
      MP_TUPLE(mp_str_new("name"), mp_int_new(0)),
  };
  for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
    const mp_handle_type *ht = mp_handle_find(types[t]);
    assert_non_null(ht);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      int fds[1] = {open("/dev/null", O_RDONLY | O_CLOEXEC)};
      void *out = (void *)1;
      int rc = ht->rebuild(bad[i], fds, 1, &out);
      if (rc != MP_EMALFORMED)
        fail_msg("%s state %zu -> %s", types[t], i, mp_err_name(rc));
      assert_int_equal(mp_test_count_fds(), fds0); /* fd consumed */
    }
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    mp_obj_free(bad[i]);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_roundtrips),
    cmocka_unit_test(test_malformed_states),
};

MP_TEST_MAIN(tests)
