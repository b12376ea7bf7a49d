/* SPDX-License-Identifier: MIT */
/* Error codes: names, texts, and the per-thread detail string. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"

const char *
mp_strerror(int code)
{
  if (code == 0)
    return "success";
  switch (code) {
#define MP__XX(name, value, text) \
  case MP_##name:                 \
    return text;
    MP_ERRORS(MP__XX)
#undef MP__XX
  default:
    break;
  }
  if (code < 0 && code > INT_MIN) {
    /* strerror() is not thread-safe; strerrordesc_np (glibc 2.32) is; both
     * know every errno and give NULL for anything else. */
    const char *s = strerrordesc_np(-code);
    if (s)
      return s;
  }
  return "unknown error";
}

const char *
mp_err_name(int code)
{
  if (code == 0)
    return "MP_OK";
  switch (code) {
#define MP__XX(name, value, text) \
  case MP_##name:                 \
    return "MP_" #name;
    MP_ERRORS(MP__XX)
#undef MP__XX
  default:
    break;
  }
  if (code < 0 && code > INT_MIN) {
    const char *s = strerrorname_np(-code);
    if (s)
      return s;
  }
  return "MP_EUNKNOWN";
}

_Thread_local char mp__errdetail_buf[MP__ERRDETAIL_CAP];
#define errdetail mp__errdetail_buf

const char *
mp_errdetail(void)
{
  return errdetail;
}

int
mp_seterr(int code, const char *fmt, ...)
{
  int saved = errno;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errdetail, sizeof errdetail, fmt, ap);
    va_end(ap);
  } else {
    errdetail[0] = '\0';
  }
  errno = saved;
  return code;
}
