/* SPDX-License-Identifier: MIT */
/* repr(float) on values whose Python repr is known (issue 8, item 7): the
 * shortest digits that read back, the nearest of them, ties to even, and
 * Python's layout.  The million-value comparison with CPython itself is
 * test_float_repr_oracle.py; these run without Python and under every
 * sanitizer. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "testutil.h"

static void
check(double v, const char *want)
{
  mp_obj *o = mp_float_new(v);
  assert_non_null(o);
  char *r = mp_obj_repr(o);
  if (!r)
    fail_msg("repr failed: %s", mp_errdetail());
  if (strcmp(r, want))
    fail_msg("repr(%a) = %s, Python prints %s", v, r, want);
  mp_free(r);
  mp_obj_free(o);
}

static double
from_bits(uint64_t u)
{
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

/* Powers of two whose correctly rounded 16-digit form does not read back
 * (the lower neighbour is twice as close) while the other 16-digit
 * neighbour does: the old "first %.*e that round-trips" printed 17. */
static void
test_shortest_is_not_first_rounded(void **state)
{
  check(ldexp(1, -24), "5.960464477539063e-08");
  check(ldexp(1, -44), "5.684341886080802e-14");
  check(ldexp(1, 89), "6.189700196426902e+26");
  check(-ldexp(1, -24), "-5.960464477539063e-08");
}

/* Exactly halfway between the two shortest candidates: to even. */
static void
test_ties_to_even(void **state)
{
  check(1125899906842624.25, "1125899906842624.2");
  check(1125899906842624.75, "1125899906842624.8");
  check(1125899906842625.25, "1125899906842625.2");
  check(1125899906842625.75, "1125899906842625.8");
}

static void
test_layout(void **state)
{
  check(0.0, "0.0");
  check(-0.0, "-0.0");
  check(1.0, "1.0");
  check(0.1, "0.1");
  check(0.1 + 0.2, "0.30000000000000004");
  check(1.0 / 3, "0.3333333333333333");
  check(123456789.0, "123456789.0");
  check(1e-4, "0.0001");
  check(0.00012345, "0.00012345");
  check(1e-5, "1e-05");
  check(1.2345e-5, "1.2345e-05");
  check(9999999999999998.0, "9999999999999998.0");
  check(1e16, "1e+16");
  check(1.5e16, "1.5e+16");
  check(1e22, "1e+22");
  check(1e23, "1e+23");
  check(1180591620717411303424.0, "1.1805916207174113e+21");
  check(5e-324, "5e-324");
  check(2.2250738585072014e-308, "2.2250738585072014e-308");
  check(2.225073858507201e-308, "2.225073858507201e-308");
  check(1.7976931348623157e308, "1.7976931348623157e+308");
  check(-1.7976931348623157e308, "-1.7976931348623157e+308");
  check(INFINITY, "inf");
  check(-INFINITY, "-inf");
  check(NAN, "nan");
  check(from_bits(UINT64_C(0xfff8000000000001)), "nan"); /* negative NaN */
  check(from_bits(UINT64_C(0x7ff0000000000001)), "nan"); /* signalling */
}

/* The call site: floats inside containers print the same. */
static void
test_in_containers(void **state)
{
  mp_obj *l = MP_LIST(mp_float_new(ldexp(1, -24)), mp_float_new(-0.0),
                      mp_float_new(1e16), mp_float_new(2.5));
  assert_non_null(l);
  char *r = mp_obj_repr(l);
  assert_non_null(r);
  assert_string_equal(r, "[5.960464477539063e-08, -0.0, 1e+16, 2.5]");
  mp_free(r);
  mp_obj_free(l);
}

static const struct CMUnitTest tests[] = {
  cmocka_unit_test(test_shortest_is_not_first_rounded),
  cmocka_unit_test(test_ties_to_even),
  cmocka_unit_test(test_layout),
  cmocka_unit_test(test_in_containers),
};

MP_TEST_MAIN(tests)
