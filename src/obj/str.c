/* SPDX-License-Identifier: MIT */
/* str, bytes and bytearray values. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obj/obj_internal.h"

/* ---- str, bytes, bytearray ------------------------------------------------ */

mp_obj *
mp__str_new_valid(const char *s, size_t len, size_t ncp, int ascii)
{
  if (len > SIZE_MAX - sizeof(mp__str) - 1) {
    mp_seterr(MP_ENOMEM, "str too large");
    return NULL;
  }
  mp__str *o = mp__obj_alloc(sizeof *o + len + 1, MP_T_STR);
  if (!o)
    return NULL;
  o->hash = 0;
  o->len = len;
  o->ncp = ncp;
  if (ascii)
    o->h.flags |= MP__F_ASCII;
  if (len)
    memcpy(o->s, s, len);
  o->s[len] = '\0';
  return &o->h;
}

mp_obj *
mp_str_new_len(const char *utf8, size_t len)
{
  if (!utf8 && len) {
    mp_seterr(MP_EINVAL, "NULL string");
    return NULL;
  }
  size_t ncp, bad = 0;
  if (mp__utf8_check((const uint8_t *)utf8, len, &ncp, &bad)) {
    mp_seterr(MP_EMALFORMED, "invalid UTF-8 at byte %zu", bad);
    return NULL;
  }
  return mp__str_new_valid(utf8, len, ncp, ncp == len);
}

mp_obj *
mp_str_new(const char *s)
{
  if (!s) {
    mp_seterr(MP_EINVAL, "NULL string");
    return NULL;
  }
  return mp_str_new_len(s, strlen(s));
}

mp_obj *
mp_str_printf(const char *fmt, ...)
{
  char small[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) {
    mp_seterr(MP_EINVAL, "bad format");
    return NULL;
  }
  if ((size_t)n < sizeof small)
    return mp_str_new_len(small, (size_t)n);
  char *big = malloc((size_t)n + 1);
  if (!big) {
    mp_seterr(MP_ENOMEM, "out of memory");
    return NULL;
  }
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  mp_obj *o = mp_str_new_len(big, (size_t)n);
  free(big);
  return o;
}

mp_obj *
mp__bytes_alloc(size_t len, uint8_t **data)
{
  if (len > SIZE_MAX - sizeof(mp__bytes) - 1) {
    mp_seterr(MP_ENOMEM, "bytes too large");
    return NULL;
  }
  mp__bytes *b = mp__obj_alloc(sizeof *b + len + 1, MP_T_BYTES);
  if (!b)
    return NULL;
  b->hash = 0;
  b->len = len;
  b->d[len] = 0;
  *data = b->d;
  return &b->h;
}

mp_obj *
mp_bytes_new(const void *data, size_t len)
{
  if (!data && len) {
    mp_seterr(MP_EINVAL, "NULL data");
    return NULL;
  }
  uint8_t *d;
  mp_obj *b = mp__bytes_alloc(len, &d);
  if (b && len)
    memcpy(d, data, len);
  return b;
}

mp_obj *
mp_bytearray_new(const void *data, size_t len)
{
  if (!data && len) {
    mp_seterr(MP_EINVAL, "NULL data");
    return NULL;
  }
  mp__bytearray *b = mp__obj_alloc(sizeof *b, MP_T_BYTEARRAY);
  if (!b)
    return NULL;
  b->len = b->cap = len;
  b->d = NULL;
  if (len) {
    b->d = malloc(len);
    if (!b->d) {
      mp__obj_dealloc(&b->h);
      mp_seterr(MP_ENOMEM, "out of memory");
      return NULL;
    }
    memcpy(b->d, data, len);
  }
  return &b->h;
}

int
mp_str_get(const mp_obj *o, const char **utf8, size_t *len)
{
  mp__errdetail_clear();
  if (!o)
    return MP_EINVAL;
  if (o->type != MP_T_STR)
    return mp_seterr(MP_ETYPE, "expected str, got %s", mp_type_name(MP__T(o)));
  if (utf8)
    *utf8 = MP__AS(const mp__str, o)->s;
  if (len)
    *len = MP__AS(const mp__str, o)->len;
  return 0;
}

int
mp_bytes_get(const mp_obj *o, const void **data, size_t *len)
{
  mp__errdetail_clear();
  if (!o)
    return MP_EINVAL;
  if (o->type == MP_T_BYTES) {
    if (data)
      *data = MP__AS(const mp__bytes, o)->d;
    if (len)
      *len = MP__AS(const mp__bytes, o)->len;
    return 0;
  }
  if (o->type == MP_T_BYTEARRAY) {
    if (data)
      *data = MP__AS(const mp__bytearray, o)->d;
    if (len)
      *len = MP__AS(const mp__bytearray, o)->len;
    return 0;
  }
  return mp_seterr(MP_ETYPE, "expected bytes or bytearray, got %s",
                   mp_type_name(MP__T(o)));
}

int
mp_bytearray_data(mp_obj *o, void **data, size_t *len)
{
  mp__errdetail_clear();
  if (!o)
    return MP_EINVAL;
  if (o->type != MP_T_BYTEARRAY)
    return mp_seterr(MP_ETYPE, "expected bytearray, got %s",
                     mp_type_name(MP__T(o)));
  if (data)
    *data = MP__AS(mp__bytearray, o)->d;
  if (len)
    *len = MP__AS(mp__bytearray, o)->len;
  return 0;
}

int
mp_bytearray_resize(mp_obj *o, size_t len)
{
  mp__errdetail_clear();
  if (!o)
    return MP_EINVAL;
  if (o->type != MP_T_BYTEARRAY)
    return mp_seterr(MP_ETYPE, "expected bytearray, got %s",
                     mp_type_name(MP__T(o)));
  mp__bytearray *b = MP__AS(mp__bytearray, o);
  if (len > b->cap) {
    uint8_t *d = realloc(b->d, len);
    if (!d)
      return mp_seterr(MP_ENOMEM, "out of memory");
    b->d = d;
    b->cap = len;
  }
  if (len > b->len)
    memset(b->d + b->len, 0, len - b->len); /* as Python: new bytes are 0 */
  b->len = len;
  return 0;
}
