/* SPDX-License-Identifier: MIT */
/* Logs one DEBUG and one SUBDEBUG record without enabling logging in code:
 * what it prints depends on MPROC_LOG alone. */
#include <mproc.h>

int
main(void)
{
  mp_log_debug("debug via env");
  mp_log(MP_LOG_SUBDEBUG, "below debug");
  return 0;
}
