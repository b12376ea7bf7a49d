/* SPDX-License-Identifier: MIT */
/* Deep copy (mp_obj_copy): shared and cyclic structure kept. */
#include <stdlib.h>
#include <string.h>

#include "obj/obj_internal.h"

/* ---- deep copy ------------------------------------------------------------ */

/* The map (mp__ptrmap) old -> new of the containers copied so far, so that
 * a sub-value shared in the original is shared in the copy. */
static mp_obj *copy_rec(const mp_obj *o, mp__ptrmap *m, int depth);

static mp_obj *
copy_opt(const mp_obj *o, mp__ptrmap *m, int depth, int *ok)
{
  if (!o)
    return NULL;
  mp_obj *c = copy_rec(o, m, depth);
  if (!c)
    *ok = 0;
  return c;
}

static mp_obj *
copy_rec(const mp_obj *o, mp__ptrmap *m, int depth)
{
  mp_type t = MP__T(o);
  switch (t) {
  case MP_T_BYTEARRAY:
  case MP_T_TUPLE:
  case MP_T_LIST:
  case MP_T_DICT:
  case MP_T_SET:
  case MP_T_FROZENSET:
    break;
  case MP_T_RECORD:
    if (MP__AS(const mp__record, o)->kind == MP_RECORD_GLOBAL)
      return mp__newref((mp_obj *)o);
    break;
  default:
    return mp__newref((mp_obj *)o); /* immutable leaves and handles */
  }
  uintptr_t seen;
  if (mp__ptrmap_get(m, o, &seen))
    return mp__newref((mp_obj *)seen);
  mp_obj *c = NULL;
  if (depth > MP__MAX_RECURSION) {
    mp_seterr(MP_ELIMIT, "value nested deeper than %d (or a cycle)",
              MP__MAX_RECURSION);
    return NULL;
  }
  switch (t) {
  case MP_T_BYTEARRAY: {
    const mp__bytearray *b = MP__AS(const mp__bytearray, o);
    c = mp_bytearray_new(b->d, b->len);
    break;
  }
  case MP_T_TUPLE: {
    const mp__tuple *s = MP__AS(const mp__tuple, o);
    c = mp__tuple_alloc(s->n);
    if (!c)
      return NULL;
    for (size_t i = 0; i < s->n; i++) {
      mp_obj *x = copy_rec(s->items[i], m, depth + 1);
      if (!x) {
        mp_obj_free(c);
        return NULL;
      }
      MP__AS(mp__tuple, c)->items[i] = x;
    }
    c->depth = o->depth;
    break;
  }
  case MP_T_LIST: {
    const mp__list *s = MP__AS(const mp__list, o);
    c = mp__list_alloc(s->n);
    if (!c)
      return NULL;
    for (size_t i = 0; i < s->n; i++) {
      mp_obj *x = copy_rec(s->items[i], m, depth + 1);
      if (!x) {
        mp_obj_free(c);
        return NULL;
      }
      MP__AS(mp__list, c)->items[MP__AS(mp__list, c)->n++] = x;
    }
    c->depth = o->depth;
    break;
  }
  case MP_T_DICT:
  case MP_T_SET:
  case MP_T_FROZENSET: {
    const mp__table *s = &MP__AS(const mp__dict, o)->t;
    c = mp__dict_alloc(t);
    if (!c)
      return NULL;
    for (size_t i = 0; i < s->n; i++) {
      const mp__entry *e = &s->e[i];
      if (!e->key)
        continue;
      /* Keys are copied too: an object record is mutable and equal only to
       * itself, so a key that is (or holds) one is a new key in the copy,
       * the same one wherever the original is shared.  A key copied to a
       * new object is hashed anew (identity hashes change). */
      mp_obj *k = copy_rec(e->key, m, depth + 1), *v = NULL;
      if (!k || (t == MP_T_DICT && !(v = copy_rec(e->value, m, depth + 1)))) {
        mp_obj_free(k);
        mp_obj_free(c);
        return NULL;
      }
      int rc = k == e->key
                   ? mp__table_insert_hashed(MP__AS(mp__dict, c), k, v,
                                             e->hash, t != MP_T_DICT)
                   : mp__table_set_take(MP__AS(mp__dict, c), k, v,
                                        t != MP_T_DICT);
      if (rc) {
        mp_obj_free(c);
        return NULL;
      }
    }
    c->depth = o->depth;
    break;
  }
  case MP_T_RECORD: {
    /* an object record is copied (a new object, as copy.deepcopy makes):
     * the copy is not mp_obj_equal to it, only mp_obj_equal_content */
    const mp__record *r = MP__AS(const mp__record, o);
    int ok = 1;
    mp_obj *callable = copy_opt(r->callable, m, depth + 1, &ok);
    mp_obj *args = copy_opt(r->args, m, depth + 1, &ok);
    mp_obj *kwargs = copy_opt(r->kwargs, m, depth + 1, &ok);
    mp_obj *state = copy_opt(r->state, m, depth + 1, &ok);
    mp_obj *li = copy_opt(r->listitems, m, depth + 1, &ok);
    mp_obj *di = copy_opt(r->dictitems, m, depth + 1, &ok);
    mp__record *n = ok ? mp__obj_alloc(sizeof *n, MP_T_RECORD) : NULL;
    if (!n) {
      mp_obj_free(callable);
      mp_obj_free(args);
      mp_obj_free(kwargs);
      mp_obj_free(state);
      mp_obj_free(li);
      mp_obj_free(di);
      return NULL;
    }
    n->kind = r->kind;
    n->module = n->name = NULL;
    n->callable = callable;
    n->args = args;
    n->kwargs = kwargs;
    n->state = state;
    n->listitems = li;
    n->dictitems = di;
    n->h.depth = o->depth;
    c = &n->h;
    break;
  }
  default:
    return NULL;
  }
  if (c && mp__ptrmap_put(m, o, (uintptr_t)c)) {
    mp_obj_free(c);
    return NULL;
  }
  return c;
}

mp_obj *
mp_obj_copy(const mp_obj *o)
{
  if (!o) {
    mp_seterr(MP_EINVAL, "NULL value");
    return NULL;
  }
  mp__ptrmap m = {0};
  mp_obj *c = copy_rec(o, &m, 0);
  mp__ptrmap_release(&m);
  return c;
}
