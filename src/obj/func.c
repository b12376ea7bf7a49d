/* SPDX-License-Identifier: MIT */
/* Function values: a C function pointer as an mp_obj (obj.h).
 *
 * In memory the value is just the pointer.  In a pickle it is
 * mproc.func(ref), `ref` the bytes of a function reference (core's funcref:
 * object file, offset, build-id; docs/function-values.md), so a process
 * running the same build -- a spawn or forkserver child, an mproc peer over
 * a Connection -- gets the same function at its own load address, and any
 * other receiver gets MP_EBADREF from the decode. */
#include <stdio.h>

#include "obj/obj_internal.h"

typedef struct mp__func {
  mp_obj h;
  mp_fn fn;
} mp__func;

mp_obj *
mp_func_new(mp_fn fn)
{
  if (!fn) {
    mp_seterr(MP_EINVAL, "mp_func_new: NULL function");
    return NULL;
  }
  mp__func *f = mp__obj_alloc(sizeof *f, MP_T_FUNC);
  if (f)
    f->fn = fn;
  return f ? &f->h : NULL;
}

mp_fn
mp_func_get(const mp_obj *o)
{
  if (!o || o->type != MP_T_FUNC)
    return NULL;
  return MP__AS(const mp__func, o)->fn;
}

int
mp__func_repr(const mp_obj *o, mp__buf *b)
{
  if (mp__buf_append(b, "<function ", 10))
    return MP_ENOMEM;
  int rc = mp__funcref_describe((const void *)MP__AS(const mp__func, o)->fn, b);
  if (rc)
    return rc;
  return mp__buf_putc(b, '>') ? MP_ENOMEM : 0;
}

int
mp__func_ref(const mp_obj *o, mp__buf *b)
{
  const void *fn = (const void *)MP__AS(const mp__func, o)->fn;
  int rc = mp__funcref_encode(fn, 1, b);
  if (rc == MP_EBADREF)
    mp_seterr(MP_EBADREF, "function value %p is not in a loaded object: it "
                          "cannot be named to another process", fn);
  return rc;
}

mp_obj *
mp__func_from_ref(const void *data, size_t len, int *rc)
{
  const uint8_t *p = data, *end = p + len;
  void *addr = NULL;
  char err[1200];
  *rc = mp__funcref_decode_code(&p, end, &addr, err, sizeof err);
  if (!*rc && p != end) {
    *rc = MP_EMALFORMED;
    snprintf(err, sizeof err, "bytes after the function reference");
  }
  if (*rc) {
    mp_seterr(*rc, "pickle: mproc.func: %s", err);
    return NULL;
  }
  mp_obj *f = mp_func_new((mp_fn)addr);
  if (!f)
    *rc = MP_ENOMEM;
  return f;
}
