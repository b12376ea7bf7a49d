/* SPDX-License-Identifier: MIT */
/* What libplugin_proctarget.so exports (the tests reach it by dlsym). */
#ifndef MPROC_TEST_PLUGIN_PROCTARGET_H
#define MPROC_TEST_PLUGIN_PROCTARGET_H

#include <mproc.h>

/* A process target: returns 42 (40 from a static variable of the library
 * plus 2). */
__attribute__((visibility("default"))) int plugin_target(mp_obj *args);
/* A plain function of the library, for function values: returns 7. */
__attribute__((visibility("default"))) int plugin_marker(void);

#endif
