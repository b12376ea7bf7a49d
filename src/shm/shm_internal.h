/* Internals of the shm layer. */
#ifndef MPROC_SHM_INTERNAL_H
#define MPROC_SHM_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "mproc/shm.h"
#include "sync/sync_internal.h"

/* The shared header of a Value / Array block; data follows at `hdr`. */
struct mp__sval {
  uint8_t typecode; /* 0 for structs */
  uint8_t pad[3];
  uint32_t elsize;
  uint64_t n;
  uint32_t hdr;
  uint32_t pad2;
};

struct mp_value {
  struct mp__shobj h;
  struct mp__sval *s;
  uint8_t *data;
  mp_lock *lock; /* NULL: raw */
  char tc;
  unsigned char kind; /* value.c's K_*: cached, the accessors test it */
  size_t elsize, n;
};

mp_value *mp__value_wrap(mp__shref ref, mp_lock *lock, int is_array);
mp_value *mp__value_ref(mp_value *v);

/* The resource tracker (tracker.c). */
int mp__tracker_register(const char *type, const char *name);
int mp__tracker_unregister(const char *type, const char *name);

#endif
