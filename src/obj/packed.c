/* SPDX-License-Identifier: MIT */
/* Packed ints: the pool's fast lane for a chunk of plain ints.
 *
 * A map over a list of ints spends most of its time pickling: an opcode
 * and an object per item, both ways.  When every item of a chunk (or every
 * result of a job) is a plain int -- the int type itself, not bool, and
 * not beyond int64 -- the pool sends the chunk as one bytes object of
 * native int64s instead (parent and workers share a machine, so native
 * order is the order), and builds objects only where the caller sees them.
 * The helpers here are the only code that looks inside the objects for
 * this. */
#include <string.h>

#include "obj/obj_internal.h"

mp_obj *
mp__ints_pack(mp_obj *const *items, size_t n)
{
  int64_t v;
  if (n == 0 || !mp__int_plain(items[0], &v)) /* most lists that are not ints */
    return NULL;                          /* say so at their first item */
  uint8_t *d;
  mp_obj *b = mp__bytes_alloc(n * sizeof v, &d);
  if (!b)
    return NULL;
  /* one pass: a million objects are read once, not twice */
  for (size_t i = 0; i < n; i++) {
    if (!mp__int_plain(items[i], &v)) {
      mp_obj_free(b);
      return NULL;
    }
    memcpy(d + i * sizeof v, &v, sizeof v);
  }
  return b;
}

/* Whether only the caller can see `o` (its one reference, not immortal). */
static inline int
sole(const mp_obj *o)
{
  return __atomic_load_n(&o->rc, __ATOMIC_ACQUIRE) == 1;
}

mp_obj *
mp__args1_int_other(mp_obj *reuse, int64_t v)
{
  if (reuse && MP__T(reuse) == MP_T_TUPLE &&
      MP__AS(mp__tuple, reuse)->n == 1 && sole(reuse)) {
    /* the tuple is ours; its item is a small int now, or a new one */
    mp_obj **slot = &MP__AS(mp__tuple, reuse)->items[0];
    mp_obj *old = *slot;
    if (v >= MP__SMALL_MIN && v <= MP__SMALL_MAX) {
      *slot = mp__int_fast(v);
      mp_obj_free(old);
      return reuse;
    }
    mp_obj *item = mp_int_new(v);
    if (!item) {
      mp_obj_free(reuse);
      return NULL;
    }
    *slot = item;
    mp_obj_free(old);
    return reuse;
  }
  mp_obj_free(reuse);
  return mp_tuple_take(1, mp__int_fast(v));
}

uint8_t *
mp__bytes_writable(mp_obj *b)
{
  if (!b || MP__T(b) != MP_T_BYTES || !sole(b))
    return NULL;
  mp__bytes *o = MP__AS(mp__bytes, b);
  o->hash = 0; /* its contents change: a hash taken before is stale */
  return o->d;
}

size_t
mp__ints_unpack(const uint8_t *packed, size_t n, mp_obj **out)
{
  enum { RUN = 256 };
  mp_obj *fresh[RUN];
  size_t have = 0, used = 0, k = 0;
  for (; k < n; k++) {
    int64_t v;
    memcpy(&v, packed + k * sizeof v, sizeof v);
    if (v >= MP__SMALL_MIN && v <= MP__SMALL_MAX) {
      out[k] = mp__int_fast(v);
      continue;
    }
    if (used == have) {
      size_t want = n - k < RUN ? n - k : RUN;
      have = mp__obj_alloc_many(sizeof(mp__int), MP_T_INT, want, fresh);
      used = 0;
      if (have == 0)
        break;
    }
    mp__int *i = MP__AS(mp__int, fresh[used++]);
    i->v = v;
    out[k] = &i->h;
  }
  while (used < have) /* small ints after the last run began */
    mp__obj_dealloc(fresh[used++]);
  return k;
}
