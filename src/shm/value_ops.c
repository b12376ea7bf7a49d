/* SPDX-License-Identifier: MIT */
/* Value conveniences: typed constructors and an atomic add (shm.h). */
#include <string.h>

#include "mproc/shm.h"
#include "shm/shm_internal.h"

int
mp_value_new_int(mp_value **out, char typecode, int64_t init,
                 const mp_value_opts *opts)
{
  mp__errdetail_clear();
  int rc = mp_value_new(out, typecode, NULL, opts);
  if (rc)
    return rc;
  if (typecode == 'f' || typecode == 'd') /* Value('d', 3), as Python */
    rc = mp_value_set_double(*out, (double)init);
  else
    rc = mp_value_set_int(*out, init);
  if (rc && rc != MP_EOWNERDEAD) { /* (a fresh lock has no dead owner) */
    mp_value_free(*out);
    *out = NULL;
    return rc;
  }
  return 0;
}

int
mp_value_new_uint(mp_value **out, char typecode, uint64_t init,
                  const mp_value_opts *opts)
{
  mp__errdetail_clear();
  int rc = mp_value_new(out, typecode, NULL, opts);
  if (rc)
    return rc;
  if (typecode == 'f' || typecode == 'd')
    rc = mp_value_set_double(*out, (double)init);
  else
    rc = mp_value_set_uint(*out, init);
  if (rc && rc != MP_EOWNERDEAD) {
    mp_value_free(*out);
    *out = NULL;
    return rc;
  }
  return 0;
}

int
mp_value_new_double(mp_value **out, char typecode, double init,
                    const mp_value_opts *opts)
{
  mp__errdetail_clear();
  if (typecode != 'f' && typecode != 'd') {
    if (out)
      *out = NULL;
    if (strchr("cbBhHiIlLqQ", typecode) && typecode)
      return mp_seterr(MP_ETYPE, "Value('%c', float): a float for an "
                                 "integer typecode", typecode);
    return mp_seterr(MP_EINVAL, "bad typecode '%c' for a float Value",
                     typecode ? typecode : '?');
  }
  int rc = mp_value_new(out, typecode, NULL, opts);
  if (rc)
    return rc;
  rc = mp_value_set_double(*out, init);
  if (rc && rc != MP_EOWNERDEAD) {
    mp_value_free(*out);
    *out = NULL;
    return rc;
  }
  return 0;
}

/* ---- atomic add ------------------------------------------------------------
 * One compare-and-swap loop on the shared word, whatever the process, so
 * that concurrent adds never lose an update; the range check is done on
 * the value read, and a result out of range stores nothing. */

typedef __int128 wide;

static int
range_of(char tc, wide *lo, wide *hi)
{
  switch (tc) {
  case 'b': *lo = -128; *hi = 127; return 0;
  case 'c': case 'B': *lo = 0; *hi = 255; return 0;
  case 'h': *lo = -32768; *hi = 32767; return 0;
  case 'H': *lo = 0; *hi = 65535; return 0;
  case 'i': *lo = INT32_MIN; *hi = INT32_MAX; return 0;
  case 'I': *lo = 0; *hi = UINT32_MAX; return 0;
  case 'l': case 'q': *lo = INT64_MIN; *hi = INT64_MAX; return 0;
  case 'L': case 'Q': *lo = 0; *hi = (wide)UINT64_MAX; return 0;
  default: return -1;
  }
}

#define CAS_ADD(UT, ST, is_signed)                                           \
  do {                                                                       \
    UT *p = (UT *)v->data;                                                   \
    UT old = __atomic_load_n(p, __ATOMIC_RELAXED);                           \
    for (;;) {                                                               \
      wide cur = (is_signed) ? (wide)(ST)old : (wide)old;                    \
      r = cur + delta;                                                       \
      if (r < lo || r > hi)                                                  \
        return 1;                                                            \
      if (__atomic_compare_exchange_n(p, &old, (UT)r, 1, __ATOMIC_SEQ_CST,   \
                                      __ATOMIC_RELAXED))                     \
        break;                                                               \
    }                                                                        \
  } while (0)

/* 0 and the new value in *res, or 1 if it would not fit the type or
 * int64_t (nothing stored). */
static int
add_word(mp_value *v, int64_t delta, int64_t *res)
{
  wide lo, hi, r = 0;
  range_of(v->tc, &lo, &hi);
  if (hi > INT64_MAX)
    hi = INT64_MAX; /* the result is returned as an int64_t */
  int is_signed = lo < 0;
  switch (v->elsize) {
  case 1: CAS_ADD(uint8_t, int8_t, is_signed); break;
  case 2: CAS_ADD(uint16_t, int16_t, is_signed); break;
  case 4: CAS_ADD(uint32_t, int32_t, is_signed); break;
  case 8: CAS_ADD(uint64_t, int64_t, is_signed); break;
  default: return 1;
  }
  *res = (int64_t)r;
  return 0;
}

int
mp_value_add(mp_value *v, int64_t delta, int64_t *result)
{
  mp__errdetail_clear();
  wide lo, hi;
  if (!v)
    return mp_seterr(MP_EINVAL, "mp_value_add: NULL value");
  if (v->h.kind != MP__K_VALUE || range_of(v->tc, &lo, &hi) != 0)
    return mp_seterr(MP_ETYPE, "mp_value_add: not an integer Value "
                               "(typecode '%c')", v->tc ? v->tc : '?');
  int dead = 0;
  if (v->lock) {
    int rc = mp_lock_acquire(v->lock, MP_FOREVER);
    if (rc == MP_EOWNERDEAD)
      dead = 1;
    else if (rc)
      return rc;
  }
  int64_t r = 0;
  int ovf = add_word(v, delta, &r);
  if (v->lock)
    mp_lock_release(v->lock);
  if (ovf)
    return mp_seterr(MP_EOVERFLOW, "mp_value_add: the result does not fit "
                                   "typecode '%c' (or int64_t)", v->tc);
  if (result)
    *result = r;
  return dead ? MP_EOWNERDEAD : 0;
}
