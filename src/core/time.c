/* SPDX-License-Identifier: MIT */
/* Monotonic time and deadlines. */
#include <math.h>

#include "core/internal.h"
#include "platform/platform.h"

int64_t
mp__now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

MP__HOT int
mp__deadline_set(double timeout, mp__deadline *d)
{
  if (MP__LIKELY(timeout > 0)) {
    if (timeout > 1e9) /* +inf (MP_FOREVER), or ~31 years: no limit */
      *d = MP__NO_DEADLINE;
    else
      *d = mp__now_ns() + (int64_t)(timeout * 1e9);
    return 0;
  }
  if (MP__UNLIKELY(isnan(timeout))) {
    *d = 0;
    return mp_seterr(MP_EINVAL, "timeout is NaN");
  }
  *d = 0; /* zero or negative: do not block (an instant long passed) */
  return 0;
}

int
mp__timeout_nan(void)
{
  return mp_seterr(MP_EINVAL, "timeout is NaN");
}

int
mp__timeout_field_check(double timeout, const char *what)
{
  if (isnan(timeout) || timeout < 0)
    return mp_seterr(MP_EINVAL, "%s: a timeout field is 0 (the default), > 0 "
                     "seconds or MP_FOREVER, not %g", what, timeout);
  return 0;
}

int
mp__deadline_passed(mp__deadline d)
{
  return d != MP__NO_DEADLINE && mp__now_ns() >= d;
}

int
mp__deadline_poll_ms(mp__deadline d)
{
  if (d == MP__NO_DEADLINE)
    return -1;
  int64_t left = d - mp__now_ns();
  if (left <= 0)
    return 0;
  int64_t ms = (left + 999999) / 1000000;
  return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

int
mp__deadline_timespec(mp__deadline d, struct timespec *rel, int *forever)
{
  if (d == MP__NO_DEADLINE) {
    *forever = 1;
    return 0;
  }
  *forever = 0;
  int64_t left = d - mp__now_ns();
  if (left <= 0) {
    rel->tv_sec = 0;
    rel->tv_nsec = 0;
    return MP_ETIMEDOUT;
  }
  rel->tv_sec = left / 1000000000;
  rel->tv_nsec = left % 1000000000;
  return 0;
}
