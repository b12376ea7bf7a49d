/* SPDX-License-Identifier: MIT */
/* repr(): exactly what Python prints for the same value.
 *
 * Records print as Python would print the object when that is knowable:
 *   a class/function reference   <class 'float'>, <class 'mod.Name'>
 *   an object built by a call    Name(arg, ...)      (exceptions read right)
 *   ... that also has state (other than None or {}) or items (BUILD,
 *   APPEND(S), SETITEM(S)):
 *       <mod.Name object: args=(...), state=..., listitems=[...],
 *        dictitems=[(k, v), ...]>   (only the parts present)
 * Handles print as <TypeName object at 0x...>. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obj/obj_internal.h"

#define PUTS(b, s) mp__buf_append((b), (s), strlen(s))

static int
put_hex_escape(mp__buf *b, char kind, uint32_t cp, int width)
{
  char tmp[16];
  int n = snprintf(tmp, sizeof tmp, "\\%c%0*x", kind, width, cp);
  return mp__buf_append(b, tmp, (size_t)n);
}

static int
repr_str(const mp__str *s, mp__buf *b)
{
  const uint8_t *p = (const uint8_t *)s->s, *end = p + s->len;
  /* Python: single quotes unless the text has ' and no " */
  char q = '\'';
  if (memchr(p, '\'', s->len) && !memchr(p, '"', s->len))
    q = '"';
  if (mp__buf_reserve(b, s->len + 2))
    return MP_ENOMEM;
  int rc = mp__buf_putc(b, (uint8_t)q);
  while (!rc && p < end) {
    uint8_t c = *p;
    if (c < 0x80) {
      p++;
      if (c == (uint8_t)q || c == '\\') {
        char e[2] = {'\\', (char)c};
        rc = mp__buf_append(b, e, 2);
      } else if (c == '\t') {
        rc = mp__buf_append(b, "\\t", 2);
      } else if (c == '\n') {
        rc = mp__buf_append(b, "\\n", 2);
      } else if (c == '\r') {
        rc = mp__buf_append(b, "\\r", 2);
      } else if (c < 0x20 || c == 0x7f) {
        rc = put_hex_escape(b, 'x', c, 2);
      } else {
        rc = mp__buf_putc(b, c);
      }
      continue;
    }
    uint32_t cp;
    size_t n = mp__utf8_decode(p, &cp);
    if (mp__unicode_printable(cp))
      rc = mp__buf_append(b, p, n);
    else if (cp <= 0xff)
      rc = put_hex_escape(b, 'x', cp, 2);
    else if (cp <= 0xffff)
      rc = put_hex_escape(b, 'u', cp, 4);
    else
      rc = put_hex_escape(b, 'U', cp, 8);
    p += n;
  }
  if (!rc)
    rc = mp__buf_putc(b, (uint8_t)q);
  return rc ? MP_ENOMEM : 0;
}

/* bytearray's repr escapes ' even inside double quotes (CPython's
 * bytearray_repr does; bytes_repr does not). */
static int
repr_bytes(const uint8_t *p, size_t len, mp__buf *b, int bytearray)
{
  char q = '\'';
  if (len && memchr(p, '\'', len) && !memchr(p, '"', len))
    q = '"';
  if (mp__buf_reserve(b, len + 3))
    return MP_ENOMEM;
  int rc = mp__buf_append(b, "b", 1);
  rc = rc ? rc : mp__buf_putc(b, (uint8_t)q);
  for (size_t i = 0; !rc && i < len; i++) {
    uint8_t c = p[i];
    if (c == (uint8_t)q || c == '\\' || (bytearray && c == '\'')) {
      char e[2] = {'\\', (char)c};
      rc = mp__buf_append(b, e, 2);
    } else if (c == '\t') {
      rc = mp__buf_append(b, "\\t", 2);
    } else if (c == '\n') {
      rc = mp__buf_append(b, "\\n", 2);
    } else if (c == '\r') {
      rc = mp__buf_append(b, "\\r", 2);
    } else if (c < 0x20 || c >= 0x7f) {
      rc = put_hex_escape(b, 'x', c, 2);
    } else {
      rc = mp__buf_putc(b, c);
    }
  }
  if (!rc)
    rc = mp__buf_putc(b, (uint8_t)q);
  return rc ? MP_ENOMEM : 0;
}

static int
repr_items(mp_obj *const *items, size_t n, mp__buf *b, int depth,
           int max_depth, const mp_obj **path)
{
  for (size_t i = 0; i < n; i++) {
    if (i && mp__buf_append(b, ", ", 2))
      return MP_ENOMEM;
    int rc = mp__repr(items[i], b, depth + 1, max_depth, path);
    if (rc)
      return rc;
  }
  return 0;
}

static int
repr_table(const mp_obj *o, mp__buf *b, int depth, int max_depth,
           const mp_obj **path)
{
  const mp__table *t = &MP__AS(const mp__dict, o)->t;
  int is_dict = o->type == MP_T_DICT;
  int first = 1;
  if (mp__buf_putc(b, '{'))
    return MP_ENOMEM;
  for (size_t i = 0; i < t->n; i++) {
    const mp__entry *e = &t->e[i];
    if (!e->key)
      continue;
    if (!first && mp__buf_append(b, ", ", 2))
      return MP_ENOMEM;
    first = 0;
    int rc = mp__repr(e->key, b, depth + 1, max_depth, path);
    if (!rc && is_dict) {
      rc = mp__buf_append(b, ": ", 2) ? MP_ENOMEM : 0;
      if (!rc)
        rc = mp__repr(e->value, b, depth + 1, max_depth, path);
    }
    if (rc)
      return rc;
  }
  return mp__buf_putc(b, '}') ? MP_ENOMEM : 0;
}

/* The name a record's callable is known by: "KeyError", or its repr. */
static int
repr_callable_name(const mp_obj *c, mp__buf *b, int qualified, int depth,
                   int max_depth, const mp_obj **path)
{
  if (c && c->type == MP_T_RECORD &&
      MP__AS(const mp__record, c)->kind == MP_RECORD_GLOBAL) {
    const mp__record *g = MP__AS(const mp__record, c);
    if (qualified && strcmp(g->module, "builtins") != 0) {
      if (PUTS(b, g->module) || mp__buf_putc(b, '.'))
        return MP_ENOMEM;
    }
    return PUTS(b, g->name) ? MP_ENOMEM : 0;
  }
  return mp__repr(c, b, depth + 1, max_depth, path);
}

static int
repr_record(const mp__record *r, mp__buf *b, int depth, int max_depth,
            const mp_obj **path)
{
  int rc;
  if (r->kind == MP_RECORD_GLOBAL) {
    if (PUTS(b, "<class '"))
      return MP_ENOMEM;
    if (strcmp(r->module, "builtins") != 0 &&
        (PUTS(b, r->module) || mp__buf_putc(b, '.')))
      return MP_ENOMEM;
    if (PUTS(b, r->name) || PUTS(b, "'>"))
      return MP_ENOMEM;
    return 0;
  }
  const mp__tuple *args = MP__AS(const mp__tuple, r->args);
  /* None or {} as state is no state (CPython pickles an exception whose
   * __dict__ exists but is empty with state {}) */
  const mp_obj *st = r->state;
  if (st && (st->type == MP_T_NONE ||
             (st->type == MP_T_DICT && MP__AS(const mp__dict, st)->t.used == 0)))
    st = NULL;
  /* NEWOBJ_EX keyword arguments ({} counts as none) */
  const mp_obj *kw = r->kwargs;
  if (kw && MP__AS(const mp__dict, kw)->t.used == 0)
    kw = NULL;
  if (!st && !kw && !r->listitems && !r->dictitems) {
    if ((rc = repr_callable_name(r->callable, b, 0, depth, max_depth, path)))
      return rc;
    if (mp__buf_putc(b, '('))
      return MP_ENOMEM;
    if ((rc = repr_items(args->items, args->n, b, depth, max_depth, path)))
      return rc;
    return mp__buf_putc(b, ')') ? MP_ENOMEM : 0;
  }
  if (mp__buf_putc(b, '<'))
    return MP_ENOMEM;
  if ((rc = repr_callable_name(r->callable, b, 1, depth, max_depth, path)))
    return rc;
  if (PUTS(b, " object: args="))
    return MP_ENOMEM;
  if ((rc = mp__repr(r->args, b, depth + 1, max_depth, path)))
    return rc;
  const char *labels[4] = {", kwargs=", ", state=", ", listitems=",
                           ", dictitems="};
  const mp_obj *parts[4] = {kw, st, r->listitems, r->dictitems};
  for (int i = 0; i < 4; i++) {
    if (!parts[i])
      continue;
    if (PUTS(b, labels[i]))
      return MP_ENOMEM;
    if ((rc = mp__repr(parts[i], b, depth + 1, max_depth, path)))
      return rc;
  }
  return mp__buf_putc(b, '>') ? MP_ENOMEM : 0;
}

int
mp__depth_error(const mp_obj *const *path, int n, int max_depth)
{
  /* a repeated container on the path is a cycle, otherwise just deep */
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (path[i] == path[j])
        return mp_seterr(MP_ECYCLE, "value contains itself");
  return mp_seterr(MP_ELIMIT, "value nested deeper than %d", max_depth);
}

int
mp__repr(const mp_obj *o, mp__buf *b, int depth, int max_depth,
         const mp_obj **path)
{
  char tmp[40];
  int n, rc;
  switch (MP__T(o)) {
  case MP_T_NONE:
    return PUTS(b, "None") ? MP_ENOMEM : 0;
  case MP_T_BOOL:
    return PUTS(b, o == &mp__true_obj ? "True" : "False") ? MP_ENOMEM : 0;
  case MP_T_INT:
    if (o->flags & MP__F_BIG)
      return mp__bigint_decimal(MP__AS(const mp__bigint, o), b);
    n = snprintf(tmp, sizeof tmp, "%lld", (long long)MP__AS(const mp__int, o)->v);
    return mp__buf_append(b, tmp, (size_t)n) ? MP_ENOMEM : 0;
  case MP_T_FLOAT:
    n = mp__float_repr(MP__AS(const mp__float, o)->v, tmp);
    return mp__buf_append(b, tmp, (size_t)n) ? MP_ENOMEM : 0;
  case MP_T_STR:
    return repr_str(MP__AS(const mp__str, o), b);
  case MP_T_BYTES:
    return repr_bytes(MP__AS(const mp__bytes, o)->d,
                      MP__AS(const mp__bytes, o)->len, b, 0);
  case MP_T_BYTEARRAY:
    if (PUTS(b, "bytearray("))
      return MP_ENOMEM;
    if ((rc = repr_bytes(MP__AS(const mp__bytearray, o)->d,
                         MP__AS(const mp__bytearray, o)->len, b, 1)))
      return rc;
    return mp__buf_putc(b, ')') ? MP_ENOMEM : 0;
  case MP_T_FUNC:
    return mp__func_repr(o, b);
  case MP_T_HANDLE: {
    const mp__handle *h = MP__AS(const mp__handle, o);
    n = snprintf(tmp, sizeof tmp, " object at %p>", h->ptr);
    if (mp__buf_putc(b, '<') || PUTS(b, h->type->name))
      return MP_ENOMEM;
    return mp__buf_append(b, tmp, (size_t)n) ? MP_ENOMEM : 0;
  }
  default:
    break;
  }
  /* containers */
  path[depth] = o;
  if (depth >= max_depth)
    return mp__depth_error(path, depth + 1, max_depth);
  switch (MP__T(o)) {
  case MP_T_TUPLE: {
    const mp__tuple *t = MP__AS(const mp__tuple, o);
    if (mp__buf_putc(b, '('))
      return MP_ENOMEM;
    if ((rc = repr_items(t->items, t->n, b, depth, max_depth, path)))
      return rc;
    if (t->n == 1 && mp__buf_putc(b, ','))
      return MP_ENOMEM;
    return mp__buf_putc(b, ')') ? MP_ENOMEM : 0;
  }
  case MP_T_LIST: {
    const mp__list *l = MP__AS(const mp__list, o);
    if (mp__buf_putc(b, '['))
      return MP_ENOMEM;
    if ((rc = repr_items(l->items, l->n, b, depth, max_depth, path)))
      return rc;
    return mp__buf_putc(b, ']') ? MP_ENOMEM : 0;
  }
  case MP_T_DICT:
    return repr_table(o, b, depth, max_depth, path);
  case MP_T_SET:
    if (MP__AS(const mp__dict, o)->t.used == 0)
      return PUTS(b, "set()") ? MP_ENOMEM : 0;
    return repr_table(o, b, depth, max_depth, path);
  case MP_T_FROZENSET:
    if (MP__AS(const mp__dict, o)->t.used == 0)
      return PUTS(b, "frozenset()") ? MP_ENOMEM : 0;
    if (PUTS(b, "frozenset("))
      return MP_ENOMEM;
    if ((rc = repr_table(o, b, depth, max_depth, path)))
      return rc;
    return mp__buf_putc(b, ')') ? MP_ENOMEM : 0;
  case MP_T_RECORD:
    return repr_record(MP__AS(const mp__record, o), b, depth, max_depth, path);
  default:
    return mp_seterr(MP_EINVAL, "bad value");
  }
}

static int
repr_to_buf(const mp_obj *o, mp__buf *b)
{
  if (!o)
    return mp_seterr(MP_EINVAL, "NULL value");
  const mp_obj *path[MP__MAX_RECURSION + 2];
  int rc = mp__repr(o, b, 0, MP__MAX_RECURSION, path);
  if (rc == MP_ENOMEM)
    mp_seterr(MP_ENOMEM, "out of memory");
  if (!rc && mp__buf_putc(b, '\0'))
    rc = mp_seterr(MP_ENOMEM, "out of memory");
  return rc;
}

char *
mp_obj_repr(const mp_obj *o)
{
  mp__buf b = {0};
  if (repr_to_buf(o, &b)) {
    mp__buf_release(&b);
    return NULL;
  }
  return (char *)b.data;
}

int64_t
mp_obj_repr_buf(const mp_obj *o, char *buf, size_t cap)
{
  mp__errdetail_clear();
  mp__buf b = {0};
  int rc = repr_to_buf(o, &b);
  if (rc) {
    mp__buf_release(&b);
    if (buf && cap)
      buf[0] = '\0';
    return rc;
  }
  size_t len = b.len - 1;
  if (buf && cap) {
    size_t n = len < cap - 1 ? len : cap - 1;
    memcpy(buf, b.data, n);
    buf[n] = '\0';
  }
  mp__buf_release(&b);
  return (int64_t)len;
}
