/* SPDX-License-Identifier: MIT */
/* tuple and list values, and the length and items of any sequence. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obj/obj_internal.h"

/* ---- tuple and list ------------------------------------------------------- */

void
mp__set_depth_from(mp_obj *c, const mp_obj *item)
{
  uint16_t d = mp__depth_above(item);
  if (d > c->depth)
    c->depth = d;
}

uint16_t
mp__depth_above(const mp_obj *item)
{
  unsigned d = item->depth;
  if (item->type >= MP_T_TUPLE && item->type <= MP_T_RECORD && d == 0)
    d = 1; /* an empty container still nests */
  return d + 1 > 0xffff ? 0xffff : (uint16_t)(d + 1);
}

mp_obj *
mp__tuple_alloc(size_t n)
{
  if (n > (SIZE_MAX - sizeof(mp__tuple)) / sizeof(mp_obj *)) {
    mp_seterr(MP_ENOMEM, "tuple too large");
    return NULL;
  }
  mp__tuple *t = mp__obj_alloc(sizeof *t + n * sizeof(mp_obj *), MP_T_TUPLE);
  if (!t)
    return NULL;
  t->n = n;
  t->h.depth = 1;
  memset(t->items, 0, n * sizeof(mp_obj *));
  return &t->h;
}

static mp_obj *
seq_take_va(mp_type type, size_t n, va_list ap)
{
  mp_obj *local[32];
  mp_obj **items = n <= 32 ? local : malloc(n * sizeof *items);
  size_t first_null = n;
  for (size_t i = 0; i < n; i++) {
    mp_obj *x = va_arg(ap, mp_obj *);
    if (items)
      items[i] = x;
    else
      mp_obj_free(x);
    if (!x && first_null == n)
      first_null = i;
  }
  if (!items) {
    mp_seterr(MP_ENOMEM, "out of memory");
    return NULL;
  }
  mp_obj *r = NULL;
  if (first_null < n) /* (a constructor inside failed, or NULL was passed) */
    mp_seterr(MP_EINVAL, "%s item %zu of %zu is NULL", mp_type_name(type),
              first_null, n);
  else
    r = type == MP_T_TUPLE ? mp__tuple_alloc(n) : mp__list_alloc(n);
  if (!r) {
    for (size_t i = 0; i < n; i++)
      mp_obj_free(items[i]);
  } else {
    r->depth = 1;
    for (size_t i = 0; i < n; i++)
      mp__set_depth_from(r, items[i]);
    if (type == MP_T_TUPLE) {
      memcpy(MP__AS(mp__tuple, r)->items, items, n * sizeof *items);
    } else {
      memcpy(MP__AS(mp__list, r)->items, items, n * sizeof *items);
      MP__AS(mp__list, r)->n = n;
    }
  }
  if (items != local)
    free(items);
  return r;
}

mp_obj *
mp_tuple_take(size_t n, ...)
{
  va_list ap;
  va_start(ap, n);
  mp_obj *r = seq_take_va(MP_T_TUPLE, n, ap);
  va_end(ap);
  return r;
}

mp_obj *
mp_list_take(size_t n, ...)
{
  va_list ap;
  va_start(ap, n);
  mp_obj *r = seq_take_va(MP_T_LIST, n, ap);
  va_end(ap);
  return r;
}

mp_obj *
mp_tuple_from(size_t n, mp_obj *const *items)
{
  if (n && !items) {
    mp_seterr(MP_EINVAL, "NULL items");
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    if (!items[i]) {
      mp_seterr(MP_EINVAL, "NULL item %zu", i);
      return NULL;
    }
  mp_obj *t = mp__tuple_alloc(n);
  if (!t)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    MP__AS(mp__tuple, t)->items[i] = mp__newref(items[i]);
    mp__set_depth_from(t, items[i]);
  }
  return t;
}

mp_obj *
mp__list_alloc(size_t cap)
{
  mp__list *l = mp__obj_alloc(sizeof *l, MP_T_LIST);
  if (!l)
    return NULL;
  l->n = 0;
  l->cap = cap;
  l->items = NULL;
  l->h.depth = 1;
  if (cap) {
    if (cap > SIZE_MAX / sizeof(mp_obj *) ||
        !(l->items = mp__big_alloc(cap * sizeof(mp_obj *), 0))) {
      mp__obj_dealloc(&l->h);
      mp_seterr(MP_ENOMEM, "out of memory");
      return NULL;
    }
  }
  return &l->h;
}

mp_obj *
mp__list_adopt(mp_obj **items, size_t n, uint16_t depth)
{
  mp_obj *l = mp__list_alloc(0);
  if (!l)
    return NULL;
  mp__list *ls = MP__AS(mp__list, l);
  if (depth > l->depth)
    l->depth = depth;
  for (size_t i = 0; depth == 0 && i < n; i++) {
    if (!items[i])
      items[i] = mp_none();
    mp__set_depth_from(l, items[i]);
  }
  ls->items = items;
  ls->n = ls->cap = n;
  return l;
}

mp_obj *
mp_list_new(void)
{
  return mp__list_alloc(0);
}

mp_obj *
mp_list_from(size_t n, mp_obj *const *items)
{
  if (n && !items) {
    mp_seterr(MP_EINVAL, "NULL items");
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    if (!items[i]) {
      mp_seterr(MP_EINVAL, "NULL item %zu", i);
      return NULL;
    }
  mp_obj *l = mp__list_alloc(n);
  if (!l)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    MP__AS(mp__list, l)->items[i] = mp__newref(items[i]);
    mp__set_depth_from(l, items[i]);
  }
  MP__AS(mp__list, l)->n = n;
  return l;
}

int
mp__list_reserve(mp__list *l, size_t extra)
{
  if (extra <= l->cap - l->n)
    return 0;
  if (extra > SIZE_MAX / sizeof(mp_obj *) / 2 - l->n)
    return mp_seterr(MP_ENOMEM, "list too large");
  size_t need = l->n + extra;
  size_t cap = l->cap < 4 ? 4 : l->cap + l->cap / 2;
  if (cap < need)
    cap = need;
  mp_obj **items = mp__big_realloc(l->items, cap * sizeof *items);
  if (!items)
    return mp_seterr(MP_ENOMEM, "out of memory");
  l->items = items;
  l->cap = cap;
  return 0;
}

int
mp__list_push(mp__list *l, mp_obj *item)
{
  if (l->n == l->cap) {
    int rc = mp__list_reserve(l, 1);
    if (rc) {
      mp_obj_free(item);
      return rc;
    }
  }
  l->items[l->n++] = item;
  mp__set_depth_from(&l->h, item);
  return 0;
}

static int
list_check(const mp_obj *list)
{
  if (!list)
    return mp_seterr(MP_EINVAL, "NULL list");
  if (list->type != MP_T_LIST)
    return mp_seterr(MP_ETYPE, "expected list, got %s",
                     mp_type_name(MP__T(list)));
  return 0;
}

int
mp_list_append_take(mp_obj *list, mp_obj *item)
{
  mp__errdetail_clear();
  int rc = list_check(list);
  if (!rc && !item)
    rc = mp_seterr(MP_EINVAL, "NULL item");
  if (!rc && item == list)
    rc = mp_seterr(MP_ECYCLE, "a list cannot contain itself");
  if (rc) {
    if (item != list)
      mp_obj_free(item);
    return rc;
  }
  return mp__list_push(MP__AS(mp__list, list), item);
}

int
mp_list_append(mp_obj *list, mp_obj *item)
{
  mp__errdetail_clear();
  int rc = list_check(list);
  if (rc)
    return rc;
  if (!item)
    return mp_seterr(MP_EINVAL, "NULL item");
  if (item == list)
    return mp_seterr(MP_ECYCLE, "a list cannot contain itself");
  return mp__list_push(MP__AS(mp__list, list), mp__newref(item));
}

static int
seq_index(int64_t i, size_t n, size_t *out)
{
  if (i < 0)
    i += (int64_t)n;
  if (i < 0 || (uint64_t)i >= n)
    return mp_seterr(MP_EINDEX, "index out of range (length %zu)", n);
  *out = (size_t)i;
  return 0;
}

int
mp_list_set(mp_obj *list, int64_t i, mp_obj *item)
{
  mp__errdetail_clear();
  int rc = list_check(list);
  if (rc)
    return rc;
  if (!item)
    return mp_seterr(MP_EINVAL, "NULL item");
  if (item == list)
    return mp_seterr(MP_ECYCLE, "a list cannot contain itself");
  mp__list *l = MP__AS(mp__list, list);
  size_t k = 0;
  if ((rc = seq_index(i, l->n, &k)))
    return rc;
  mp_obj *old = l->items[k];
  l->items[k] = mp__newref(item);
  mp__set_depth_from(list, item);
  mp_obj_free(old);
  return 0;
}

int
mp_list_pop(mp_obj *list, int64_t i, mp_obj **out)
{
  mp__errdetail_clear();
  int rc = list_check(list);
  if (rc)
    return rc;
  mp__list *l = MP__AS(mp__list, list);
  size_t k = 0;
  if ((rc = seq_index(i, l->n, &k)))
    return rc;
  mp_obj *item = l->items[k];
  memmove(l->items + k, l->items + k + 1, (l->n - k - 1) * sizeof(mp_obj *));
  l->n--;
  if (out)
    *out = item;
  else
    mp_obj_free(item);
  return 0;
}

/* Every task of a pool reads its arguments through this: the hit path
 * touches no thread-local (the detail is only written on a miss; the call
 * returns no code, so it owes no reset otherwise). */
mp_obj *
mp_seq_item(const mp_obj *seq, int64_t i)
{
  mp_obj *const *items;
  size_t n;
  if (seq && seq->type == MP_T_TUPLE) {
    items = MP__AS(const mp__tuple, seq)->items;
    n = MP__AS(const mp__tuple, seq)->n;
  } else if (seq && seq->type == MP_T_LIST) {
    items = MP__AS(const mp__list, seq)->items;
    n = MP__AS(const mp__list, seq)->n;
  } else {
    if (!seq)
      mp_seterr(MP_EINVAL, "NULL sequence");
    else
      mp_seq_items(seq, NULL, NULL); /* the type error's text */
    return NULL;
  }
  size_t k = 0;
  if (i >= 0 && (uint64_t)i < n)
    return items[i];
  if (seq_index(i, n, &k))
    return NULL;
  return items[k];
}

int
mp_seq_items(const mp_obj *seq, mp_obj *const **items, size_t *n)
{
  mp__errdetail_clear();
  if (!seq)
    return MP_EINVAL;
  if (seq->type == MP_T_TUPLE) {
    if (items)
      *items = MP__AS(const mp__tuple, seq)->items;
    if (n)
      *n = MP__AS(const mp__tuple, seq)->n;
    return 0;
  }
  if (seq->type == MP_T_LIST) {
    if (items)
      *items = MP__AS(const mp__list, seq)->items;
    if (n)
      *n = MP__AS(const mp__list, seq)->n;
    return 0;
  }
  return mp_seterr(MP_ETYPE, "expected tuple or list, got %s",
                   mp_type_name(MP__T(seq)));
}

int
mp_obj_len(const mp_obj *o, size_t *out)
{
  mp__errdetail_clear();
  if (!o || !out)
    return MP_EINVAL;
  switch (MP__T(o)) {
  case MP_T_STR:
    *out = MP__AS(const mp__str, o)->ncp;
    return 0;
  case MP_T_BYTES:
    *out = MP__AS(const mp__bytes, o)->len;
    return 0;
  case MP_T_BYTEARRAY:
    *out = MP__AS(const mp__bytearray, o)->len;
    return 0;
  case MP_T_TUPLE:
    *out = MP__AS(const mp__tuple, o)->n;
    return 0;
  case MP_T_LIST:
    *out = MP__AS(const mp__list, o)->n;
    return 0;
  case MP_T_DICT:
  case MP_T_SET:
  case MP_T_FROZENSET:
    *out = MP__AS(const mp__dict, o)->t.used;
    return 0;
  default:
    return mp_seterr(MP_ETYPE, "%s has no length", mp_type_name(MP__T(o)));
  }
}

int
mp__list_take_items(mp_obj *list, mp_obj ***items, size_t *n)
{
  if (mp_obj_type(list) != MP_T_LIST)
    return MP_ETYPE;
  if (__atomic_load_n(&list->rc, __ATOMIC_ACQUIRE) != 1)
    return MP_EBUSY;
  mp__list *l = MP__AS(mp__list, list);
  *items = l->items;
  *n = l->n;
  l->items = NULL;
  l->n = l->cap = 0;
  return 0;
}
