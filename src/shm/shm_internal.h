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

/* The shared header is read once, when the handle is made, and checked
 * against the block's size: the accessors use these copies only, so
 * nothing written into the header later takes them outside the block. */
struct mp_value {
  struct mp__shobj h;
  uint8_t *data;
  mp_lock *lock; /* NULL: raw */
  char tc;
  unsigned char kind; /* value.c's K_*: cached, the accessors test it */
  size_t elsize, n;
};

/* The handle of a new or imported Value/Array block whose data holds
 * `size` bytes (see mp__lock_adopt): 0 (it takes over ref and lock),
 * MP_EMALFORMED when the header does not describe a value of a known type
 * lying inside the block, MP_ENOMEM. */
int mp__value_adopt(mp__shref ref, size_t size, mp_lock *lock, int is_array,
                    mp_value **out);
mp_value *mp__value_ref(mp_value *v);

/* Check a SharedMemory name as mp_shm_new does and copy it (without a
 * leading '/') to out (MAX 200 bytes + NUL): 0 or MP_EINVAL. */
int mp__shm_check_name(const char *name, char *out);

/* The resource tracker (tracker.c). */
int mp__tracker_register(const char *type, const char *name);
int mp__tracker_unregister(const char *type, const char *name);

#endif
