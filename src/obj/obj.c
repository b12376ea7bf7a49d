/* SPDX-License-Identifier: MIT */
/* mp_obj: immortal values, reference counting and destruction, scalars.
 * utf8.c has UTF-8 validation, str.c str/bytes/bytearray, seq.c
 * tuple/list, compare.c equality and hashing, copy.c deep copy, dict.c the
 * hash tables, int.c big ints, record.c records and handles, repr.c repr. */
#include <stdlib.h>
#include <string.h>

#include "obj/obj_internal.h"

/* ---- immortal values ------------------------------------------------------ */

mp_obj mp__none_obj = {MP__RC_IMMORTAL, MP_T_NONE, 0, 0};
mp_obj mp__true_obj = {MP__RC_IMMORTAL, MP_T_BOOL, 0, 0};
mp_obj mp__false_obj = {MP__RC_IMMORTAL, MP_T_BOOL, 0, 0};

/* -5..1024, filled in at load time (C has no loop initialisers). */
mp__int mp__small_ints[MP__SMALL_MAX - MP__SMALL_MIN + 1];

__attribute__((constructor)) static void
small_ints_init(void)
{
  for (int64_t v = MP__SMALL_MIN; v <= MP__SMALL_MAX; v++) {
    mp__int *i = &mp__small_ints[v - MP__SMALL_MIN];
    i->h.rc = MP__RC_IMMORTAL;
    i->h.type = MP_T_INT;
    i->v = v;
  }
}

/* ---- generic ---------------------------------------------------------------- */

mp_type
mp_obj_type(const mp_obj *o)
{
  return o ? MP__T(o) : MP_T_NONE;
}

const char *
mp_type_name(mp_type t)
{
  static const char *const names[] = {
      "NoneType", "bool", "int",  "float",     "str",    "bytes",  "bytearray",
      "tuple",    "list", "dict", "set",       "frozenset", "record", "handle",
      "function"};
  if ((unsigned)t < sizeof names / sizeof names[0])
    return names[t];
  return "?";
}

mp_obj *
mp_obj_ref(mp_obj *o)
{
  return o ? mp__newref(o) : NULL;
}

/* Releasing is iterative: a deep value (a long chain of nested lists) must
 * not overflow the C stack.  Children whose count drops to zero go on a
 * work list. */
typedef struct worklist {
  mp_obj **v;
  size_t n, cap;
  mp_obj *local[32];
  /* leaves waiting to be freed, a run at a time (mp__obj_dealloc_many) */
  size_t nleaves;
  mp_obj *leaves[64];
} worklist;

static void
wl_drop(worklist *w, mp_obj *c)
{
  if (!mp__unref_to_zero(c))
    return;
  /* leaves (no children) go at once: a list of a million ints must not
   * grow the work list to a million entries */
  if (c->type < MP_T_TUPLE) {
    if (c->type == MP_T_BYTEARRAY)
      free(MP__AS(mp__bytearray, c)->d);
    w->leaves[w->nleaves++] = c;
    if (w->nleaves == sizeof w->leaves / sizeof w->leaves[0]) {
      mp__obj_dealloc_many(w->leaves, w->nleaves);
      w->nleaves = 0;
    }
    return;
  }
  if (w->n == w->cap) {
    size_t ncap = w->cap * 2;
    mp_obj **nv = malloc(ncap * sizeof *nv);
    if (!nv) {
      mp__obj_destroy(c); /* no memory: fall back to recursion */
      return;
    }
    memcpy(nv, w->v, w->n * sizeof *nv);
    if (w->v != w->local)
      free(w->v);
    w->v = nv;
    w->cap = ncap;
  }
  w->v[w->n++] = c;
}

static void
destroy_one(mp_obj *o, worklist *w)
{
  switch (MP__T(o)) {
  case MP_T_BYTEARRAY:
    free(MP__AS(mp__bytearray, o)->d);
    break;
  case MP_T_TUPLE: {
    mp__tuple *t = MP__AS(mp__tuple, o);
    for (size_t i = 0; i < t->n; i++)
      wl_drop(w, t->items[i]);
    break;
  }
  case MP_T_LIST: {
    mp__list *l = MP__AS(mp__list, o);
    for (size_t i = 0; i < l->n; i++)
      wl_drop(w, l->items[i]);
    mp__big_free(l->items);
    break;
  }
  case MP_T_DICT:
  case MP_T_SET:
  case MP_T_FROZENSET: {
    mp__table *t = &MP__AS(mp__dict, o)->t;
    for (size_t i = 0; i < t->n; i++) {
      if (t->e[i].key) {
        wl_drop(w, t->e[i].key);
        wl_drop(w, t->e[i].value);
      }
    }
    free(t->e);
    free(t->index);
    break;
  }
  case MP_T_RECORD: {
    mp__record *r = MP__AS(mp__record, o);
    free(r->module); /* name shares the allocation */
    wl_drop(w, r->callable);
    wl_drop(w, r->args);
    wl_drop(w, r->state);
    wl_drop(w, r->listitems);
    wl_drop(w, r->dictitems);
    wl_drop(w, r->kwargs);
    break;
  }
  case MP_T_HANDLE: {
    mp__handle *h = MP__AS(mp__handle, o);
    if (h->type && h->type->release)
      h->type->release(h->ptr);
    break;
  }
  default:
    break;
  }
  mp__obj_dealloc(o);
}

void
mp__obj_destroy(mp_obj *o)
{
  worklist w;
  w.v = w.local;
  w.n = 0;
  w.cap = sizeof w.local / sizeof w.local[0];
  w.nleaves = 0;
  destroy_one(o, &w);
  while (w.n)
    destroy_one(w.v[--w.n], &w);
  mp__obj_dealloc_many(w.leaves, w.nleaves);
  if (w.v != w.local)
    free(w.v);
}

void
mp_obj_free(mp_obj *o)
{
  if (mp__unref_to_zero(o))
    mp__obj_destroy(o);
}

/* ---- scalars -------------------------------------------------------------- */

mp_obj *
mp_none(void)
{
  return &mp__none_obj;
}

mp_obj *
mp_bool_new(int v)
{
  return v ? &mp__true_obj : &mp__false_obj;
}

mp_obj *
mp_int_new(int64_t v)
{
  if (v >= MP__SMALL_MIN && v <= MP__SMALL_MAX)
    return &mp__small_ints[v - MP__SMALL_MIN].h;
  mp__int *i = mp__obj_alloc(sizeof *i, MP_T_INT);
  if (i)
    i->v = v;
  return &i->h;
}

mp_obj *
mp_uint_new(uint64_t v)
{
  if (v <= INT64_MAX)
    return mp_int_new((int64_t)v);
  uint8_t le[9];
  for (int k = 0; k < 8; k++)
    le[k] = (uint8_t)(v >> (8 * k));
  le[8] = 0;
  return mp__int_from_le(le, 9);
}

mp_obj *
mp_int_from_bytes(const void *le, size_t n)
{
  if (n && !le) {
    mp_seterr(MP_EINVAL, "NULL data");
    return NULL;
  }
  return mp__int_from_le(le, n);
}

mp_obj *
mp_float_new(double v)
{
  mp__float *f = mp__obj_alloc(sizeof *f, MP_T_FLOAT);
  if (f)
    f->v = v;
  return &f->h;
}

int
mp_int_get(const mp_obj *o, int64_t *out)
{
  mp__errdetail_clear();
  if (!o || !out)
    return MP_EINVAL;
  if (o->type == MP_T_BOOL) {
    *out = o == &mp__true_obj;
    return 0;
  }
  if (o->type != MP_T_INT)
    return mp_seterr(MP_ETYPE, "expected int, got %s", mp_type_name(MP__T(o)));
  if (o->flags & MP__F_BIG)
    return mp_seterr(MP_EOVERFLOW, "int does not fit in 64 bits");
  *out = MP__AS(mp__int, o)->v;
  return 0;
}

int
mp_uint_get(const mp_obj *o, uint64_t *out)
{
  mp__errdetail_clear();
  if (!o || !out)
    return MP_EINVAL;
  if (o->type == MP_T_INT && (o->flags & MP__F_BIG)) {
    const mp__bigint *b = MP__AS(const mp__bigint, o);
    /* 2**63 .. 2**64-1 are 9 bytes with a zero top byte */
    if (b->n == 9 && b->le[8] == 0) {
      uint64_t v = 0;
      for (int k = 7; k >= 0; k--)
        v = (v << 8) | b->le[k];
      *out = v;
      return 0;
    }
    return mp_seterr(MP_EOVERFLOW, "int does not fit in an unsigned 64-bit");
  }
  int64_t v;
  int rc = mp_int_get(o, &v);
  if (rc)
    return rc;
  if (v < 0)
    return mp_seterr(MP_EOVERFLOW, "negative int for an unsigned 64-bit");
  *out = (uint64_t)v;
  return 0;
}

int
mp_int_bytes(const mp_obj *o, uint8_t scratch[16], const uint8_t **le,
             size_t *n)
{
  mp__errdetail_clear();
  if (!o || !scratch || !le || !n)
    return MP_EINVAL;
  if (o->type == MP_T_INT && (o->flags & MP__F_BIG)) {
    *le = MP__AS(const mp__bigint, o)->le;
    *n = MP__AS(const mp__bigint, o)->n;
    return 0;
  }
  int64_t v;
  int rc = mp_int_get(o, &v);
  if (rc)
    return rc;
  *n = mp__i64_to_le(v, scratch);
  *le = scratch;
  return 0;
}

int
mp_float_get(const mp_obj *o, double *out)
{
  mp__errdetail_clear();
  if (!o || !out)
    return MP_EINVAL;
  switch (MP__T(o)) {
  case MP_T_FLOAT:
    *out = MP__AS(const mp__float, o)->v;
    return 0;
  case MP_T_BOOL:
    *out = o == &mp__true_obj;
    return 0;
  case MP_T_INT:
    if (o->flags & MP__F_BIG)
      return mp__bigint_to_double(MP__AS(const mp__bigint, o), out);
    *out = (double)MP__AS(const mp__int, o)->v;
    return 0;
  default:
    return mp_seterr(MP_ETYPE, "expected float or int, got %s",
                     mp_type_name(MP__T(o)));
  }
}

int
mp_bool_get(const mp_obj *o, int *out)
{
  mp__errdetail_clear();
  if (!o || !out)
    return MP_EINVAL;
  if (o->type != MP_T_BOOL)
    return mp_seterr(MP_ETYPE, "expected bool, got %s",
                     mp_type_name(MP__T(o)));
  *out = o == &mp__true_obj;
  return 0;
}

int
mp_obj_truthy(const mp_obj *o)
{
  mp__errdetail_clear();
  if (!o)
    return 0;
  switch (MP__T(o)) {
  case MP_T_NONE:
    return 0;
  case MP_T_BOOL:
    return o == &mp__true_obj;
  case MP_T_INT:
    return (o->flags & MP__F_BIG) || MP__AS(const mp__int, o)->v != 0;
  case MP_T_FLOAT:
    return MP__AS(const mp__float, o)->v != 0.0;
  default: {
    size_t n;
    if (mp_obj_len(o, &n) == 0)
      return n != 0;
    return 1;
  }
  }
}
