/* SPDX-License-Identifier: MIT */
/* str() and print() of a value (obj.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obj/obj_internal.h"

/* str(o) into b, NUL-terminated (the NUL not counted in b->len). */
static int
str_into(const mp_obj *o, mp__buf *b)
{
  if (!o)
    return mp_seterr(MP_EINVAL, "NULL value");
  if (o->type == MP_T_STR) {
    const mp__str *s = MP__AS(const mp__str, o);
    if (mp__buf_append(b, s->s, s->len + 1)) /* with its NUL */
      return mp_seterr(MP_ENOMEM, "out of memory");
    b->len--;
    return 0;
  }
  const mp_obj *path[MP__MAX_RECURSION + 2];
  int rc = mp__repr(o, b, 0, MP__MAX_RECURSION, path);
  if (!rc && mp__buf_putc(b, '\0'))
    rc = MP_ENOMEM;
  if (rc == MP_ENOMEM)
    mp_seterr(MP_ENOMEM, "out of memory");
  if (rc)
    return rc;
  b->len--;
  return 0;
}

char *
mp_obj_str(const mp_obj *o)
{
  mp__buf b = {0};
  if (str_into(o, &b)) {
    mp__buf_release(&b);
    return NULL;
  }
  return (char *)b.data;
}

int
mp_obj_print(const mp_obj *o, FILE *f)
{
  mp__errdetail_clear();
  if (!f)
    f = stdout;
  mp__buf b = {0};
  int rc = str_into(o, &b);
  if (!rc) {
    b.data[b.len++] = '\n'; /* over the NUL: the buffer has room */
    if (fwrite(b.data, 1, b.len, f) != b.len) {
      int e = errno ? errno : EIO;
      rc = mp_seterr(-e, "print: %s", mp_strerror(-e));
    }
  }
  mp__buf_release(&b);
  return rc;
}
