/* SPDX-License-Identifier: MIT */
/* Another program linked with mproc: used as mp_set_executable() to show a
 * spawn child refusing a target whose build-id it does not have.  (It calls
 * mp_main so that the static library's child bootstrap is linked in.) */
#include <stdio.h>
#include <mproc.h>

int
main(int argc, char **argv)
{
  mp_main(argc, argv);
  printf("helper_other main ran\n");
  return 3;
}
