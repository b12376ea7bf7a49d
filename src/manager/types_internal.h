/* SPDX-License-Identifier: MIT */
/* What the built-in types share (types_data.c, types_sync.c). */
#ifndef MPROC_MANAGER_TYPES_INTERNAL_H
#define MPROC_MANAGER_TYPES_INTERNAL_H

#include <stdarg.h>

#include "manager/manager_internal.h"

/* Every built-in object starts with this: its reference count, so a shared
 * typeid can hand one object to several entries. */
typedef struct mgr_bhdr {
  atomic_long refs;
} mgr_bhdr;

/* A data object: a value under a mutex. */
typedef struct mgr_data {
  mgr_bhdr hdr;
  pthread_mutex_t mu;
  mp_obj *v;
  size_t pos;        /* Iterator: next item */
  char typecode[8];  /* Value, Array */
} mgr_data;

/* types_pool.c: the handle value of an mp_imap that Pool.imap gives to
 * the Iterator type (types_data.c), which then draws from it. */
extern const mp_handle_type mp__mgr_imap_handle;

/* MP_ETYPE unless kwds is empty. */
int mp__mgr_nokw(mp_obj *kwds, const char *fn);
/* mp_args_parse, with a wrong count as MP_ETYPE (Python's TypeError). */
int mp__mgr_parse(mp_obj *args, const char *fmt, ...);
/* An exception object module.name(*args) (args: a tuple, one value or
 * NULL), taken. */
mp_obj *mp__mgr_exc(const char *module, const char *name, mp_obj *args);

#endif
