/* SPDX-License-Identifier: MIT */
/* A shared object the process tests dlopen: its functions are targets of
 * spawn/forkserver children (resolved by build-id, loaded in the child). */
#include "plugin_proctarget.h"

static int counter = 40;

/* Returns 42 from a static variable of the library: proves the code ran in
 * the library (loaded and relocated in the child). */
__attribute__((visibility("default"))) int
plugin_target(mp_obj *args)
{
  (void)args;
  return counter + 2;
}

__attribute__((visibility("default"))) int
plugin_marker(void)
{
  return 7;
}
