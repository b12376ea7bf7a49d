/* SPDX-License-Identifier: MIT */
/* The insertion-ordered hash table behind dict, set and frozenset (the
 * hashes are compare.c's). */
#include <stdlib.h>
#include <string.h>

#include "obj/obj_internal.h"

/* ---- table ---------------------------------------------------------------- */

mp_obj *
mp__dict_alloc(mp_type t)
{
  mp__dict *d = mp__obj_alloc(sizeof *d, t);
  if (!d)
    return NULL;
  memset(&d->t, 0, sizeof d->t);
  d->h.depth = 1;
  return &d->h;
}

static mp__entry *
lookup(const mp__table *t, const mp_obj *key, uint64_t hash)
{
  if (!t->index)
    return NULL;
  uint32_t tag = (uint32_t)MP__IX_TAG(hash);
  for (size_t i = hash & t->mask;; i = (i + 1) & t->mask) {
    uint64_t slot = t->index[i];
    uint32_t ix = MP__IX(slot);
    if (ix == MP__IX_EMPTY)
      return NULL;
    if (ix != MP__IX_DUMMY && (uint32_t)(slot >> 32) == tag) {
      mp__entry *e = &t->e[ix];
      if (e->key == key ||
          (e->hash == hash && mp__equal(e->key, key, 1, 0)))
        return e;
    }
  }
}

static int
table_resize(mp__table *t, size_t mincap)
{
  size_t cap = t->used * 2;
  if (cap < mincap)
    cap = mincap;
  if (cap < 8)
    cap = 8;
  if (cap >= 0xfffffff0u / 2)
    return mp_seterr(MP_ENOMEM, "hash table too large");
  size_t isize = 8;
  while (isize < cap * 2) /* load at most 1/2: short probes */
    isize *= 2;
  uint64_t *index = malloc(isize * sizeof *index);
  mp__entry *e = malloc(cap * sizeof *e);
  if (!index || !e) {
    free(index);
    free(e);
    return mp_seterr(MP_ENOMEM, "out of memory");
  }
  memset(index, 0xff, isize * sizeof *index);
  size_t n = 0;
  for (size_t k = 0; k < t->n; k++) {
    if (!t->e[k].key)
      continue;
    e[n] = t->e[k];
    size_t i = e[n].hash & (isize - 1);
    while (MP__IX(index[i]) != MP__IX_EMPTY)
      i = (i + 1) & (isize - 1);
    index[i] = MP__IX_SLOT(n, e[n].hash);
    n++;
  }
  free(t->index);
  free(t->e);
  t->index = index;
  t->e = e;
  t->n = n;
  t->cap = cap;
  t->mask = isize - 1;
  return 0;
}

/* Add a new entry for a key known to be absent. */
static int
table_add(mp__table *t, mp_obj *key, mp_obj *value, uint64_t hash)
{
  if (t->n == t->cap) {
    int rc = table_resize(t, t->used + 1);
    if (rc)
      return rc;
  }
  size_t i = hash & t->mask;
  while (MP__IX(t->index[i]) != MP__IX_EMPTY)
    i = (i + 1) & t->mask;
  t->index[i] = MP__IX_SLOT(t->n, hash);
  t->e[t->n].hash = hash;
  t->e[t->n].key = key;
  t->e[t->n].value = value;
  t->n++;
  t->used++;
  return 0;
}

int
mp__table_insert_hashed(mp__dict *d, mp_obj *key, mp_obj *value,
                        uint64_t hash, int is_set)
{
  mp__entry *e = lookup(&d->t, key, hash);
  if (e) {
    if (is_set) {
      mp_obj_free(key);
    } else {
      /* Python keeps the first key object, replaces the value */
      mp_obj *old = e->value;
      e->value = value;
      mp__set_depth_from(&d->h, value);
      mp_obj_free(old);
      mp_obj_free(key);
    }
    return 0;
  }
  int rc = table_add(&d->t, key, value, hash);
  if (rc) {
    mp_obj_free(key);
    mp_obj_free(value);
    return rc;
  }
  mp__set_depth_from(&d->h, key);
  if (value)
    mp__set_depth_from(&d->h, value);
  return 0;
}

int
mp__table_set_take(mp__dict *d, mp_obj *key, mp_obj *value, int is_set)
{
  uint64_t h;
  int rc = mp__hash(key, &h, 0);
  if (rc) {
    mp_obj_free(key);
    mp_obj_free(value);
    return rc;
  }
  return mp__table_insert_hashed(d, key, value, h, is_set);
}

mp__entry *
mp__table_find(const mp__dict *d, const mp_obj *key, int *rc)
{
  uint64_t h;
  *rc = mp__hash(key, &h, 0);
  if (*rc)
    return NULL;
  return lookup(&d->t, key, h);
}

static int
table_del(mp__dict *d, const mp_obj *key)
{
  uint64_t h;
  int rc = mp__hash(key, &h, 0);
  if (rc)
    return rc;
  mp__table *t = &d->t;
  if (!t->index)
    return mp_seterr(MP_ENOTFOUND, "key not found");
  for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
    uint32_t ix = MP__IX(t->index[i]);
    if (ix == MP__IX_EMPTY)
      return mp_seterr(MP_ENOTFOUND, "key not found");
    if (ix == MP__IX_DUMMY)
      continue;
    mp__entry *e = &t->e[ix];
    if (e->key == key || (e->hash == h && mp__equal(e->key, key, 1, 0))) {
      mp_obj *k = e->key, *v = e->value;
      e->key = e->value = NULL;
      t->index[i] = MP__IX_SLOT(MP__IX_DUMMY, 0);
      t->used--;
      mp_obj_free(k);
      mp_obj_free(v);
      return 0;
    }
  }
}

static int
table_next(const mp__table *t, size_t *pos, mp_obj **key, mp_obj **value)
{
  while (*pos < t->n) {
    const mp__entry *e = &t->e[(*pos)++];
    if (e->key) {
      if (key)
        *key = e->key;
      if (value)
        *value = e->value;
      return 1;
    }
  }
  return 0;
}

/* ---- dict API --------------------------------------------------------------- */

static int
dict_check(const mp_obj *d)
{
  if (!d)
    return mp_seterr(MP_EINVAL, "NULL dict");
  if (d->type != MP_T_DICT)
    return mp_seterr(MP_ETYPE, "expected dict, got %s", mp_type_name(MP__T(d)));
  return 0;
}

mp_obj *
mp_dict_new(void)
{
  return mp__dict_alloc(MP_T_DICT);
}

int
mp_dict_set_take(mp_obj *d, mp_obj *key, mp_obj *value)
{
  mp__errdetail_clear();
  int rc = dict_check(d);
  if (!rc && (!key || !value))
    rc = mp_seterr(MP_EINVAL, "NULL key or value");
  if (!rc && value == d)
    rc = mp_seterr(MP_ECYCLE, "a dict cannot contain itself");
  if (rc) {
    if (key != d)
      mp_obj_free(key);
    if (value != d)
      mp_obj_free(value);
    return rc;
  }
  return mp__table_set_take(MP__AS(mp__dict, d), key, value, 0);
}

int
mp_dict_set(mp_obj *d, mp_obj *key, mp_obj *value)
{
  mp__errdetail_clear();
  int rc = dict_check(d);
  if (rc)
    return rc;
  if (!key || !value)
    return mp_seterr(MP_EINVAL, "NULL key or value");
  if (value == d)
    return mp_seterr(MP_ECYCLE, "a dict cannot contain itself");
  return mp__table_set_take(MP__AS(mp__dict, d), mp__newref(key),
                            mp__newref(value), 0);
}

mp_obj *
mp_dict_take(size_t npairs, ...)
{
  va_list ap;
  va_start(ap, npairs);
  mp_obj *d = mp_dict_new();
  int rc = d ? 0 : MP_ENOMEM;
  for (size_t i = 0; i < npairs; i++) {
    mp_obj *k = va_arg(ap, mp_obj *);
    mp_obj *v = va_arg(ap, mp_obj *);
    if (rc || !k || !v) {
      if (!rc) /* (a constructor inside failed, or NULL was passed) */
        rc = mp_seterr(MP_EINVAL, "dict %s of pair %zu of %zu is NULL",
                       k ? "value" : "key", i, npairs);
      mp_obj_free(k);
      mp_obj_free(v);
      continue;
    }
    rc = mp__table_set_take(MP__AS(mp__dict, d), k, v, 0);
  }
  va_end(ap);
  if (rc) {
    mp_obj_free(d);
    return NULL;
  }
  return d;
}

mp_obj *
mp_dict_get(const mp_obj *d, const mp_obj *key)
{
  if (!d || !key || d->type != MP_T_DICT)
    return NULL;
  int rc;
  mp__entry *e = mp__table_find(MP__AS(const mp__dict, d), key, &rc);
  return e ? e->value : NULL;
}

mp_obj *
mp_dict_get_str(const mp_obj *d, const char *key)
{
  return key ? mp_dict_get_strn(d, key, strlen(key)) : NULL;
}

mp_obj *
mp_dict_get_strn(const mp_obj *d, const char *key, size_t len)
{
  if (!d || (!key && len) || d->type != MP_T_DICT)
    return NULL;
  const mp__table *t = &MP__AS(const mp__dict, d)->t;
  if (!t->index)
    return NULL;
  if (!key)
    key = "";
  uint64_t h = mp__siphash(key, len, MP__HASH_STR);
  if (!h)
    h = 1;
  for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
    uint32_t ix = MP__IX(t->index[i]);
    if (ix == MP__IX_EMPTY)
      return NULL;
    if (ix == MP__IX_DUMMY)
      continue;
    const mp__entry *e = &t->e[ix];
    if (e->hash == h && e->key->type == MP_T_STR &&
        MP__AS(const mp__str, e->key)->len == len &&
        memcmp(MP__AS(const mp__str, e->key)->s, key, len) == 0)
      return e->value;
  }
}

int
mp_dict_del(mp_obj *d, const mp_obj *key)
{
  mp__errdetail_clear();
  int rc = dict_check(d);
  if (rc)
    return rc;
  if (!key)
    return mp_seterr(MP_EINVAL, "NULL key");
  return table_del(MP__AS(mp__dict, d), key);
}

int
mp_dict_next(const mp_obj *d, size_t *pos, mp_obj **key, mp_obj **value)
{
  mp__errdetail_clear();
  if (!d || !pos || d->type != MP_T_DICT)
    return 0;
  return table_next(&MP__AS(const mp__dict, d)->t, pos, key, value);
}

/* ---- set API ------------------------------------------------------------------ */

static int
set_check(const mp_obj *s)
{
  if (!s)
    return mp_seterr(MP_EINVAL, "NULL set");
  if (s->type != MP_T_SET && s->type != MP_T_FROZENSET)
    return mp_seterr(MP_ETYPE, "expected set or frozenset, got %s",
                     mp_type_name(MP__T(s)));
  return 0;
}

mp_obj *
mp_set_new(void)
{
  return mp__dict_alloc(MP_T_SET);
}

mp_obj *
mp_frozenset_new(void)
{
  return mp__dict_alloc(MP_T_FROZENSET);
}

int
mp_set_add_take(mp_obj *set, mp_obj *item)
{
  mp__errdetail_clear();
  int rc = set_check(set);
  if (!rc && !item)
    rc = mp_seterr(MP_EINVAL, "NULL item");
  if (!rc && set->type == MP_T_FROZENSET &&
      __atomic_load_n(&set->rc, __ATOMIC_RELAXED) != 1)
    rc = mp_seterr(MP_ETYPE, "frozenset is immutable once shared");
  if (!rc && item == set)
    rc = mp_seterr(MP_ECYCLE, "a set cannot contain itself");
  if (rc) {
    if (item != set)
      mp_obj_free(item);
    return rc;
  }
  return mp__table_set_take(MP__AS(mp__dict, set), item, NULL, 1);
}

int
mp_set_add(mp_obj *set, mp_obj *item)
{
  mp__errdetail_clear();
  if (!item)
    return mp_seterr(MP_EINVAL, "NULL item");
  if (set == item)
    return mp_seterr(MP_ECYCLE, "a set cannot contain itself");
  return mp_set_add_take(set, mp__newref(item));
}

static mp_obj *
set_take_va(mp_type t, size_t n, va_list ap)
{
  mp_obj *s = mp__dict_alloc(t);
  int rc = s ? 0 : MP_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    mp_obj *x = va_arg(ap, mp_obj *);
    if (rc || !x) {
      if (!rc)
        rc = mp_seterr(MP_EINVAL, "NULL item");
      mp_obj_free(x);
      continue;
    }
    rc = mp__table_set_take(MP__AS(mp__dict, s), x, NULL, 1);
  }
  if (rc) {
    mp_obj_free(s);
    return NULL;
  }
  return s;
}

mp_obj *
mp_set_take(size_t n, ...)
{
  va_list ap;
  va_start(ap, n);
  mp_obj *s = set_take_va(MP_T_SET, n, ap);
  va_end(ap);
  return s;
}

mp_obj *
mp_frozenset_take(size_t n, ...)
{
  va_list ap;
  va_start(ap, n);
  mp_obj *s = set_take_va(MP_T_FROZENSET, n, ap);
  va_end(ap);
  return s;
}

int
mp_set_contains(const mp_obj *set, const mp_obj *item)
{
  mp__errdetail_clear();
  int rc = set_check(set);
  if (rc)
    return rc;
  if (!item)
    return mp_seterr(MP_EINVAL, "NULL item");
  mp__entry *e = mp__table_find(MP__AS(const mp__dict, set), item, &rc);
  if (rc)
    return rc;
  return e != NULL;
}

int
mp_set_discard(mp_obj *set, const mp_obj *item)
{
  mp__errdetail_clear();
  int rc = set_check(set);
  if (rc)
    return rc;
  if (!item)
    return mp_seterr(MP_EINVAL, "NULL item");
  if (set->type == MP_T_FROZENSET &&
      __atomic_load_n(&set->rc, __ATOMIC_RELAXED) != 1)
    return mp_seterr(MP_ETYPE, "frozenset is immutable once shared");
  return table_del(MP__AS(mp__dict, set), item);
}

int
mp_set_next(const mp_obj *set, size_t *pos, mp_obj **item)
{
  mp__errdetail_clear();
  if (!set || !pos || (set->type != MP_T_SET && set->type != MP_T_FROZENSET))
    return 0;
  return table_next(&MP__AS(const mp__dict, set)->t, pos, item, NULL);
}
