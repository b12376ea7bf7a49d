/* SPDX-License-Identifier: MIT */
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
  mp_lock *lock; /* NULL: raw (mp__shtype.sub) */
  char tc;
  unsigned char kind; /* value.c's K_*: cached, the accessors test it */
  size_t elsize, n;
};

/* Value and Array are shared objects of two types (value.c) with one
 * handle struct. */
extern const mp__shtype mp__value_type, mp__array_type;

/* ---- SharedMemory (shm.c) -------------------------------------------------- */

/* Check a SharedMemory name as mp_shm_new does and copy it (without a
 * leading '/') to out (MAX 200 bytes + NUL): 0 or MP_EINVAL. */
int mp__shm_check_name(const char *name, char *out);
/* A SharedMemory over `fd` (consumed) mapping `size` bytes, or NULL with
 * the code in *err. */
mp_shm *mp__shm_wrap(const char *name, int fd, size_t size, int *err);
mp_shm *mp__shm_ref(mp_shm *m);
/* Its fd (-1 once closed), still its own. */
int mp__shm_fd(mp_shm *m);
/* The mapped segment of this process that holds [p, p + len): a new
 * reference and *off, p's offset in it; NULL if none does. */
mp_shm *mp__shm_find(const void *p, size_t len, size_t *off);
/* A segment of `size` bytes in an anonymous memfd (nothing in /dev/shm,
 * nothing for the tracker): it crosses processes as a SharedMemory does.
 * 0, or -errno. */
int mp__shm_anon(mp_shm **out, size_t size);

#endif
