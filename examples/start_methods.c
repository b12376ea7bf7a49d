/* SPDX-License-Identifier: MIT */
/* The start-method tutorial's program: the supported start methods (the
 * default first) and the default.
 *
 *   print(multiprocessing.get_all_start_methods())
 *   print(multiprocessing.get_start_method())
 */
#include <stdio.h>

#include <mproc.h>

int
main(void)
{
  const char *const *m = mp_get_all_start_methods();
  printf("[");
  for (int i = 0; m[i]; i++)
    printf("%s'%s'", i ? ", " : "", m[i]);
  printf("]\n");
  printf("%s\n", mp_get_start_method(0));
  return 0;
}
