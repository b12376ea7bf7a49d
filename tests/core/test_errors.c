/* SPDX-License-Identifier: MIT */
/* Error codes: every code has a distinct name and text; system errors pass
 * through as -errno; the per-thread detail text. */
#include <pthread.h>
#include <string.h>

#include "testutil.h"

static const int own_codes[] = {
#define XX(name, value, text) MP_##name,
    MP_ERRORS(XX)
#undef XX
};

static void
test_every_own_code_is_named_and_distinct(void **state)
{
  size_t n = sizeof own_codes / sizeof own_codes[0];
  for (size_t i = 0; i < n; i++) {
    assert_true(own_codes[i] < 0);
    assert_string_not_equal(mp_strerror(own_codes[i]), "unknown error");
    assert_string_not_equal(mp_err_name(own_codes[i]), "MP_EUNKNOWN");
    assert_true(strncmp(mp_err_name(own_codes[i]), "MP_E", 4) == 0);
    for (size_t j = i + 1; j < n; j++) {
      assert_int_not_equal(own_codes[i], own_codes[j]);
      assert_string_not_equal(mp_strerror(own_codes[i]),
                              mp_strerror(own_codes[j]));
    }
  }
  assert_string_equal(mp_err_name(MP_EEOF), "MP_EEOF");
  assert_string_equal(mp_strerror(MP_ETIMEDOUT), "timed out");
}

/* Where POSIX names the condition, the code is that -errno: a caller never
 * meets two codes for one condition (a futex's ETIMEDOUT is MP_ETIMEDOUT). */
static void
test_posix_named_conditions_are_errno(void **state)
{
  assert_int_equal(MP_ETIMEDOUT, -ETIMEDOUT);
  assert_int_equal(MP_EMSGSIZE, -EMSGSIZE);
  assert_int_equal(MP_EOVERFLOW, -EOVERFLOW);
  assert_int_equal(MP_ENOTSUP, -ENOTSUP);
  assert_int_equal(MP_EOWNERDEAD, -EOWNERDEAD);
  assert_int_equal(MP_EMFILE, -EMFILE);
  assert_string_equal(mp_err_name(-ETIMEDOUT), "MP_ETIMEDOUT");
  assert_string_equal(mp_err_name(-EOWNERDEAD), "MP_EOWNERDEAD");
  assert_string_equal(mp_strerror(-EMSGSIZE), "message too big");
  /* the retired own values are unknown now, never another condition */
  const int retired[] = {-4001, -4010, -4014, -4016, -4017};
  for (size_t i = 0; i < sizeof retired / sizeof retired[0]; i++) {
    assert_string_equal(mp_err_name(retired[i]), "MP_EUNKNOWN");
    assert_string_equal(mp_strerror(retired[i]), "unknown error");
  }
  /* mproc's own conditions are outside errno's range */
  assert_true(MP_EEMPTY < -4000 && MP_ECONTEXT < -4000);
}

static void
test_system_errors_pass_through(void **state)
{
  assert_int_equal(MP_ENOMEM, -ENOMEM);
  assert_int_equal(MP_EINVAL, -EINVAL);
  assert_string_equal(mp_err_name(MP_ENOMEM), "MP_ENOMEM");
  /* an errno mproc does not name still has its system text and name */
  assert_string_equal(mp_strerror(-EHOSTDOWN), "Host is down");
  assert_string_equal(mp_err_name(-EHOSTDOWN), "EHOSTDOWN");
  assert_string_equal(mp_strerror(0), "success");
  assert_string_equal(mp_err_name(0), "MP_OK");
  assert_string_equal(mp_strerror(-3999999), "unknown error");
  assert_string_equal(mp_err_name(12345), "MP_EUNKNOWN");
}

static void *
detail_in_thread(void *arg)
{
  (void)arg;
  /* another thread's detail is its own */
  if (mp_errdetail()[0] != '\0')
    return (void *)1;
  mp_seterr(MP_EEOF, "thread %d", 2);
  return strcmp(mp_errdetail(), "thread 2") == 0 ? NULL : (void *)1;
}

static void
test_errdetail_is_per_thread(void **state)
{
  assert_int_equal(mp_seterr(MP_EMALFORMED, "bad byte at %d", 7),
                   MP_EMALFORMED);
  assert_string_equal(mp_errdetail(), "bad byte at 7");
  pthread_t t;
  void *res;
  assert_int_equal(pthread_create(&t, NULL, detail_in_thread, NULL), 0);
  assert_int_equal(pthread_join(t, &res), 0);
  assert_null(res);
  assert_string_equal(mp_errdetail(), "bad byte at 7");
  errno = 42;
  mp_seterr(MP_EEOF, NULL);
  assert_int_equal(errno, 42); /* never disturbs errno */
  assert_string_equal(mp_errdetail(), "");
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_every_own_code_is_named_and_distinct),
    cmocka_unit_test(test_system_errors_pass_through),
    cmocka_unit_test(test_posix_named_conditions_are_errno),
    cmocka_unit_test(test_errdetail_is_per_thread),
};

MP_TEST_MAIN(tests)
