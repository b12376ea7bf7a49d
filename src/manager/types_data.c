/* SPDX-License-Identifier: MIT */
/* SyncManager's data types: dict, list, Iterator, Namespace, Value, Array,
 * with the exposed names CPython's DictProxy, ListProxy, IteratorProxy,
 * NamespaceProxy, ValueProxy and ArrayProxy call (docs/python-wire.md
 * section 4) and CPython's semantics.
 *
 * Each object has its own mutex (they are MP_MANAGER_CONCURRENT: a shared
 * typeid may reach one object through several entries) and a reference
 * count (mp__mgr_builtin_ref).  A container handed out whole (copy,
 * #GETVALUE, keys...) is a shallow copy made under the mutex; items are
 * shared, which is safe because no method mutates an item in place. */
#include <stdlib.h>
#include <string.h>

#include "manager/manager_internal.h"
#include "manager/types_internal.h"

/* ---- shared helpers ----------------------------------------------------- */

int
mp__mgr_nokw(mp_obj *kwds, const char *fn)
{
  size_t n = 0;
  if (kwds && !mp_obj_len(kwds, &n) && n)
    return mp_seterr(MP_ETYPE, "%s() takes no keyword arguments", fn);
  return 0;
}

int
mp__mgr_parse(mp_obj *args, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int rc = mp_args_vparse(args, fmt, ap);
  va_end(ap);
  return rc == MP_EINDEX ? MP_ETYPE : rc;
}

mp_obj *
mp__mgr_exc(const char *module, const char *name, mp_obj *args)
{
  if (args && mp_obj_type(args) != MP_T_TUPLE)
    args = MP_TUPLE(args);
  return mp_record_take(MP_RECORD_REDUCE, mp_global_new(module, name),
                        args ? args : mp_tuple_take(0));
}

static mgr_data *
data_new(mp_obj *v)
{
  mgr_data *d = calloc(1, sizeof *d);
  if (!d || !v) {
    free(d);
    mp_obj_free(v);
    return NULL;
  }
  atomic_init(&d->hdr.refs, 1);
  pthread_mutex_init(&d->mu, NULL);
  d->v = v;
  return d;
}

static void
data_destroy(void *p)
{
  mgr_data *d = p;
  if (!d || atomic_fetch_sub(&d->hdr.refs, 1) != 1)
    return;
  mp_obj_free(d->v);
  pthread_mutex_destroy(&d->mu);
  free(d);
}

#define LOCK(d) pthread_mutex_lock(&(d)->mu)
#define UNLOCK(d) pthread_mutex_unlock(&(d)->mu)

static mp_obj *
shallow_copy(const mp_obj *o)
{
  mp_obj *const *items;
  size_t n, pos = 0;
  mp_obj *k, *v;
  switch (mp_obj_type(o)) {
  case MP_T_LIST:
    mp_seq_items(o, &items, &n);
    return mp_list_from(n, items);
  case MP_T_DICT: {
    mp_obj *c = mp_dict_new();
    while (c && mp_dict_next(o, &pos, &k, &v))
      if (mp_dict_set(c, k, v)) {
        mp_obj_free(c);
        c = NULL;
      }
    return c;
  }
  default:
    return mp_obj_ref((mp_obj *)o);
  }
}

static int
getvalue(void *p, mp_obj **out)
{
  mgr_data *d = p;
  LOCK(d);
  *out = shallow_copy(d->v);
  UNLOCK(d);
  return *out ? 0 : MP_ENOMEM;
}

static int
repr_value(void *p, mp_obj **out)
{
  mgr_data *d = p;
  LOCK(d);
  char *r = mp_obj_repr(d->v);
  UNLOCK(d);
  if (!r)
    return MP_ENOMEM;
  *out = mp_str_new(r);
  mp_free(r);
  return *out ? 0 : MP_ENOMEM;
}

static int
key_error(mp_obj *key, mp_obj **res)
{
  *res = MP_TUPLE(mp_obj_ref(key));
  char *r = mp_obj_repr(key);
  mp_seterr(MP_ENOTFOUND, "%s", r ? r : "key");
  mp_free(r);
  return MP_ENOTFOUND;
}

/* ---- dict --------------------------------------------------------------------- */

static int
dict_create(mp_obj *args, mp_obj *kwds, void **out)
{
  mp_obj *init = NULL;
  int rc = mp__mgr_parse(args, "|O:dict", &init);
  if (rc)
    return rc;
  mp_obj *v = mp_dict_new();
  if (v && init) {
    mp_obj *const *items;
    size_t n, pos = 0;
    mp_obj *k, *val;
    if (mp_obj_type(init) == MP_T_DICT) {
      while (!rc && mp_dict_next(init, &pos, &k, &val))
        rc = mp_dict_set(v, k, val);
    } else if (!mp_seq_items(init, &items, &n)) {
      for (size_t i = 0; !rc && i < n; i++) {
        mp_obj *const *kv;
        size_t m;
        if (mp_seq_items(items[i], &kv, &m) || m != 2)
          rc = mp_seterr(MP_EINVAL, "dictionary update sequence element "
                                    "#%zu has the wrong length", i);
        else
          rc = mp_dict_set(v, kv[0], kv[1]);
      }
    } else {
      rc = mp_seterr(MP_ETYPE, "dict() argument is not a mapping");
    }
  }
  mp_obj *k;
  mp_obj *val;
  size_t pos = 0;
  while (v && !rc && mp_dict_next(kwds, &pos, &k, &val))
    rc = mp_dict_set(v, k, val);
  if (rc) {
    mp_obj_free(v);
    return rc;
  }
  *out = data_new(v);
  return *out ? 0 : MP_ENOMEM;
}

#define DATA(p) mgr_data *d = (mgr_data *)(p)

static int
dict_contains(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *key;
  int rc = mp__mgr_parse(args, "O:__contains__", &key);
  if (rc)
    return rc;
  uint64_t h;
  if ((rc = mp_obj_hash(key, &h)))
    return mp_seterr(rc, "unhashable type: '%s'",
                     mp_type_name(mp_obj_type(key)));
  LOCK(d);
  int in = mp_dict_get(d->v, key) != NULL;
  UNLOCK(d);
  *res = mp_bool_new(in);
  return 0;
}

static int
dict_getitem(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *key;
  int rc = mp__mgr_parse(args, "O:__getitem__", &key);
  if (rc)
    return rc;
  uint64_t h;
  if ((rc = mp_obj_hash(key, &h)))
    return mp_seterr(rc, "unhashable type: '%s'",
                     mp_type_name(mp_obj_type(key)));
  LOCK(d);
  mp_obj *v = mp_obj_ref(mp_dict_get(d->v, key));
  UNLOCK(d);
  if (!v)
    return key_error(key, res);
  *res = v;
  return 0;
}

static int
dict_get(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *key, *dflt = NULL;
  int rc = mp__mgr_parse(args, "O|O:get", &key, &dflt);
  if (rc)
    return rc;
  uint64_t h;
  if ((rc = mp_obj_hash(key, &h)))
    return mp_seterr(rc, "unhashable type: '%s'",
                     mp_type_name(mp_obj_type(key)));
  LOCK(d);
  mp_obj *v = mp_obj_ref(mp_dict_get(d->v, key));
  UNLOCK(d);
  *res = v ? v : mp_obj_ref(dflt);
  return 0;
}

static int
dict_setitem(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *key, *val;
  int rc = mp__mgr_parse(args, "OO:__setitem__", &key, &val);
  if (rc)
    return rc;
  LOCK(d);
  rc = mp_dict_set(d->v, key, val);
  UNLOCK(d);
  if (rc == MP_EUNHASHABLE)
    return mp_seterr(rc, "unhashable type: '%s'",
                     mp_type_name(mp_obj_type(key)));
  return rc;
}

static int
dict_delitem(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *key;
  int rc = mp__mgr_parse(args, "O:__delitem__", &key);
  if (rc)
    return rc;
  LOCK(d);
  rc = mp_dict_del(d->v, key);
  UNLOCK(d);
  if (rc == MP_ENOTFOUND)
    return key_error(key, res);
  return rc;
}

static int
dict_pop(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *key, *dflt = NULL;
  int rc = mp__mgr_parse(args, "O|O:pop", &key, &dflt);
  if (rc)
    return rc;
  LOCK(d);
  mp_obj *v = mp_obj_ref(mp_dict_get(d->v, key));
  if (v)
    mp_dict_del(d->v, key);
  UNLOCK(d);
  if (v) {
    *res = v;
    return 0;
  }
  if (dflt) {
    *res = mp_obj_ref(dflt);
    return 0;
  }
  return key_error(key, res);
}

static int
dict_popitem(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  int rc = mp__mgr_parse(args, ":popitem");
  if (rc)
    return rc;
  mp_obj *k = NULL, *v = NULL, *lk, *lv;
  size_t pos = 0;
  LOCK(d);
  while (mp_dict_next(d->v, &pos, &lk, &lv)) {
    k = lk;
    v = lv;
  }
  if (k) {
    *res = MP_TUPLE(mp_obj_ref(k), mp_obj_ref(v));
    mp_dict_del(d->v, mp_seq_item(*res, 0));
  }
  UNLOCK(d);
  if (!k) {
    *res = MP_TUPLE(mp_str_new("popitem(): dictionary is empty"));
    return mp_seterr(MP_ENOTFOUND, "popitem(): dictionary is empty");
  }
  return *res ? 0 : MP_ENOMEM;
}

static int
dict_setdefault(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *key, *dflt = NULL;
  int rc = mp__mgr_parse(args, "O|O:setdefault", &key, &dflt);
  if (rc)
    return rc;
  if (!dflt)
    dflt = mp_none();
  LOCK(d);
  mp_obj *v = mp_dict_get(d->v, key);
  if (!v) {
    rc = mp_dict_set(d->v, key, dflt);
    v = dflt;
  }
  *res = mp_obj_ref(v);
  UNLOCK(d);
  return rc;
}

static int
dict_update(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *other = NULL;
  int rc = mp__mgr_parse(args, "|O:update", &other);
  if (rc)
    return rc;
  mp_obj *tmp;
  mp_obj *a1 = other ? MP_TUPLE(mp_obj_ref(other)) : mp_tuple_take(0);
  mgr_data *src = NULL;
  rc = a1 ? dict_create(a1, kwds, (void **)&src) : MP_ENOMEM;
  mp_obj_free(a1);
  if (rc)
    return rc;
  mp_obj *k;
  size_t pos = 0;
  LOCK(d);
  while (!rc && mp_dict_next(src->v, &pos, &k, &tmp))
    rc = mp_dict_set(d->v, k, tmp);
  UNLOCK(d);
  data_destroy(src);
  return rc;
}

static int
dict_len(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  int rc = mp__mgr_parse(args, ":__len__");
  if (rc)
    return rc;
  size_t n = 0;
  LOCK(d);
  mp_obj_len(d->v, &n);
  UNLOCK(d);
  *res = mp_int_new((int64_t)n);
  return 0;
}

static int
dict_clear(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  int rc = mp__mgr_parse(args, ":clear");
  if (rc)
    return rc;
  mp_obj *e = mp_dict_new();
  if (!e)
    return MP_ENOMEM;
  LOCK(d);
  mp_obj *old = d->v;
  d->v = e;
  UNLOCK(d);
  mp_obj_free(old);
  return 0;
}

static int
dict_copy(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  int rc = mp__mgr_parse(args, ":copy");
  return rc ? rc : getvalue(p, res);
}

/* keys/values/items/__iter__ as lists (CPython's views do not pickle) */
static int
dict_view(mgr_data *d, int what, mp_obj **res)
{
  mp_obj *l = mp_list_new(), *k, *v;
  size_t pos = 0;
  int rc = l ? 0 : MP_ENOMEM;
  LOCK(d);
  while (!rc && mp_dict_next(d->v, &pos, &k, &v))
    rc = what == 0   ? mp_list_append(l, k)
         : what == 1 ? mp_list_append(l, v)
                     : mp_list_append_take(l, MP_TUPLE(mp_obj_ref(k),
                                                       mp_obj_ref(v)));
  UNLOCK(d);
  if (rc) {
    mp_obj_free(l);
    return rc;
  }
  *res = l;
  return 0;
}

static int
dict_keys(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  int rc = mp__mgr_parse(args, ":keys");
  return rc ? rc : dict_view(p, 0, res);
}
static int
dict_values(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  int rc = mp__mgr_parse(args, ":values");
  return rc ? rc : dict_view(p, 1, res);
}
static int
dict_items(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  int rc = mp__mgr_parse(args, ":items");
  return rc ? rc : dict_view(p, 2, res);
}
static int
dict_iter(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  int rc = mp__mgr_parse(args, ":__iter__");
  return rc ? rc : dict_view(p, 0, res);
}

static const mp_manager_method dict_methods[] = {
  { "__contains__", dict_contains, NULL },
  { "__delitem__", dict_delitem, NULL },
  { "__getitem__", dict_getitem, NULL },
  { "__iter__", dict_iter, "Iterator" },
  { "__len__", dict_len, NULL },
  { "__setitem__", dict_setitem, NULL },
  { "clear", dict_clear, NULL },
  { "copy", dict_copy, NULL },
  { "get", dict_get, NULL },
  { "items", dict_items, NULL },
  { "keys", dict_keys, NULL },
  { "pop", dict_pop, NULL },
  { "popitem", dict_popitem, NULL },
  { "setdefault", dict_setdefault, NULL },
  { "update", dict_update, NULL },
  { "values", dict_values, NULL },
};

const mp_manager_type mp__mgr_dict_type = {
  .typeid = "dict",
  .create = dict_create,
  .destroy = data_destroy,
  .methods = dict_methods,
  .nmethods = MP__ARRAY_LEN(dict_methods),
  .repr = repr_value,
  .getvalue = getvalue,
  .flags = MP_MANAGER_CONCURRENT,
};

/* ---- ordering (list.sort, index) --------------------------------------- */

static int
obj_cmp(const mp_obj *a, const mp_obj *b, int *out)
{
  mp_type ta = mp_obj_type(a), tb = mp_obj_type(b);
  int num_a = ta == MP_T_INT || ta == MP_T_BOOL || ta == MP_T_FLOAT;
  int num_b = tb == MP_T_INT || tb == MP_T_BOOL || tb == MP_T_FLOAT;
  if (num_a && num_b) {
    int64_t x, y;
    if (ta != MP_T_FLOAT && tb != MP_T_FLOAT && !mp_int_get(a, &x) &&
        !mp_int_get(b, &y)) {
      *out = (x > y) - (x < y);
      return 0;
    }
    double fx, fy;
    if (mp_float_get(a, &fx) || mp_float_get(b, &fy))
      return mp_seterr(MP_EOVERFLOW, "int too large to compare");
    *out = (fx > fy) - (fx < fy);
    return 0;
  }
  if (ta == tb && (ta == MP_T_STR || ta == MP_T_BYTES)) {
    const void *x, *y;
    size_t nx, ny;
    if (ta == MP_T_STR) {
      mp_str_get(a, (const char **)&x, &nx);
      mp_str_get(b, (const char **)&y, &ny);
    } else {
      mp_bytes_get(a, &x, &nx);
      mp_bytes_get(b, &y, &ny);
    }
    int c = memcmp(x, y, nx < ny ? nx : ny);
    *out = c ? (c > 0) - (c < 0) : (nx > ny) - (nx < ny);
    return 0;
  }
  if (ta == tb && (ta == MP_T_TUPLE || ta == MP_T_LIST)) {
    mp_obj *const *x, *const *y;
    size_t nx, ny;
    mp_seq_items(a, &x, &nx);
    mp_seq_items(b, &y, &ny);
    for (size_t i = 0; i < nx && i < ny; i++) {
      if (mp_obj_equal(x[i], y[i]))
        continue;
      return obj_cmp(x[i], y[i], out);
    }
    *out = (nx > ny) - (nx < ny);
    return 0;
  }
  return mp_seterr(MP_ETYPE, "'<' not supported between instances of '%s' "
                             "and '%s'", mp_type_name(ta), mp_type_name(tb));
}

/* ---- list ------------------------------------------------------------------ */

static int
list_create(mp_obj *args, mp_obj *kwds, void **out)
{
  mp_obj *init = NULL;
  int rc = mp__mgr_parse(args, "|O:list", &init);
  if (!rc)
    rc = mp__mgr_nokw(kwds, "list");
  if (rc)
    return rc;
  mp_obj *v = NULL;
  if (init) {
    if ((rc = mp__mgr_iter_list(init, &v)))
      return rc;
  } else {
    v = mp_list_new();
  }
  *out = data_new(v);
  return *out ? 0 : MP_ENOMEM;
}

/* Python's index normalisation: 0 and *out in [0, n), else IndexError. */
static int
norm_index(const mp_obj *o, size_t n, size_t *out, const char *what)
{
  int64_t i;
  if (mp_obj_type(o) != MP_T_INT && mp_obj_type(o) != MP_T_BOOL)
    return mp_seterr(MP_ETYPE, "list indices must be integers or slices, "
                               "not %s", mp_type_name(mp_obj_type(o)));
  if (mp_int_get(o, &i))
    return mp_seterr(MP_EINDEX, "cannot fit 'int' into an index-sized integer");
  if (i < 0)
    i += (int64_t)n;
  if (i < 0 || (uint64_t)i >= n)
    return mp_seterr(MP_EINDEX, "%s index out of range", what);
  *out = (size_t)i;
  return 0;
}

/* slice(start, stop, step) as Python pickles it: 1 and the range, 0 if
 * `o` is not a slice, or a code. */
static int
slice_of(const mp_obj *o, size_t n, int64_t *start, int64_t *stop,
         int64_t *step, size_t *count)
{
  mp_obj *callable = NULL, *sargs = NULL;
  const char *mod, *name;
  mp_obj *const *it;
  size_t k;
  if (mp_obj_type(o) != MP_T_RECORD ||
      mp_record_get(o, &callable, &sargs, NULL, NULL, NULL) || !callable ||
      mp_global_get(callable, &mod, &name) || strcmp(mod, "builtins") ||
      strcmp(name, "slice") || mp_seq_items(sargs, &it, &k) || k != 3)
    return 0;
  int64_t v[3];
  int64_t len = (int64_t)n;
  for (int j = 0; j < 3; j++) {
    if (mp_obj_type(it[j]) == MP_T_NONE)
      v[j] = j == 2 ? 1 : INT64_MIN;
    else if (mp_int_get(it[j], &v[j]))
      return mp_seterr(MP_ETYPE, "slice indices must be integers or None");
  }
  if (v[2] == 0)
    return mp_seterr(MP_EINVAL, "slice step cannot be zero");
  int64_t st = v[2];
  int64_t lo = st > 0 ? 0 : -1, hi = st > 0 ? len : len - 1;
  int64_t a = v[0] == INT64_MIN ? (st > 0 ? lo : hi) : v[0];
  int64_t b = v[1] == INT64_MIN ? (st > 0 ? hi : lo) : v[1];
  if (v[0] != INT64_MIN) {
    if (a < 0)
      a += len;
    a = a < lo ? lo : a > hi ? hi : a;
  }
  if (v[1] != INT64_MIN) {
    if (b < 0)
      b += len;
    b = b < lo ? lo : b > hi ? hi : b;
  }
  *start = a;
  *stop = b;
  *step = st;
  *count = st > 0 ? (b > a ? (size_t)((b - a + st - 1) / st) : 0)
                  : (a > b ? (size_t)((a - b - st - 1) / -st) : 0);
  return 1;
}

static int
list_getitem(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *idx;
  int rc = mp__mgr_parse(args, "O:__getitem__", &idx);
  if (rc)
    return rc;
  mp_obj *const *items;
  size_t n, i, cnt;
  int64_t a, b, st;
  LOCK(d);
  mp_seq_items(d->v, &items, &n);
  int sl = slice_of(idx, n, &a, &b, &st, &cnt);
  if (sl == 1) {
    mp_obj *l = mp_list_new();
    for (size_t j = 0; l && j < cnt; j++)
      if (mp_list_append(l, items[a + (int64_t)j * st])) {
        mp_obj_free(l);
        l = NULL;
      }
    rc = l ? 0 : MP_ENOMEM;
    *res = l;
  } else if (sl < 0) {
    rc = sl;
  } else if (!(rc = norm_index(idx, n, &i, "list"))) {
    *res = mp_obj_ref(items[i]);
  }
  UNLOCK(d);
  return rc;
}

static int
list_setitem(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *idx, *val;
  int rc = mp__mgr_parse(args, "OO:__setitem__", &idx, &val);
  if (rc)
    return rc;
  size_t n, i;
  LOCK(d);
  mp_obj_len(d->v, &n);
  if (!(rc = norm_index(idx, n, &i, "list assignment")))
    rc = mp_list_set(d->v, (int64_t)i, val);
  UNLOCK(d);
  return rc;
}

/* Replace the list by items[0..n) with [from, to) removed and `ins`
 * (n_ins items) inserted at `from`; under the lock. */
static int
list_splice(mgr_data *d, size_t from, size_t to, mp_obj *const *ins,
            size_t n_ins)
{
  mp_obj *const *items;
  size_t n;
  mp_seq_items(d->v, &items, &n);
  mp_obj *l = mp_list_new();
  int rc = l ? 0 : MP_ENOMEM;
  for (size_t i = 0; !rc && i < from; i++)
    rc = mp_list_append(l, items[i]);
  for (size_t i = 0; !rc && i < n_ins; i++)
    rc = mp_list_append(l, ins[i]);
  for (size_t i = to; !rc && i < n; i++)
    rc = mp_list_append(l, items[i]);
  if (rc) {
    mp_obj_free(l);
    return rc;
  }
  mp_obj_free(d->v);
  d->v = l;
  return 0;
}

static int
list_delitem(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *idx;
  int rc = mp__mgr_parse(args, "O:__delitem__", &idx);
  if (rc)
    return rc;
  size_t n, i, cnt;
  int64_t a, b, st;
  LOCK(d);
  mp_obj_len(d->v, &n);
  int sl = slice_of(idx, n, &a, &b, &st, &cnt);
  if (sl == 1 && st == 1)
    rc = list_splice(d, (size_t)a, (size_t)a + cnt, NULL, 0);
  else if (sl == 1)
    rc = mp_seterr(MP_ENOTSUP, "extended slice deletion");
  else if (sl < 0)
    rc = sl;
  else if (!(rc = norm_index(idx, n, &i, "list assignment")))
    rc = mp_list_pop(d->v, (int64_t)i, NULL);
  UNLOCK(d);
  return rc;
}

static int
list_len(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  return dict_len(p, args, kwds, res);
}

static int
list_contains(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *x;
  int rc = mp__mgr_parse(args, "O:__contains__", &x);
  if (rc)
    return rc;
  mp_obj *const *items;
  size_t n;
  int in = 0;
  LOCK(d);
  mp_seq_items(d->v, &items, &n);
  for (size_t i = 0; !in && i < n; i++)
    in = mp_obj_equal(items[i], x);
  UNLOCK(d);
  *res = mp_bool_new(in);
  return 0;
}

static int
list_count(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *x;
  int rc = mp__mgr_parse(args, "O:count", &x);
  if (rc)
    return rc;
  mp_obj *const *items;
  size_t n, c = 0;
  LOCK(d);
  mp_seq_items(d->v, &items, &n);
  for (size_t i = 0; i < n; i++)
    c += mp_obj_equal(items[i], x) != 0;
  UNLOCK(d);
  *res = mp_int_new((int64_t)c);
  return 0;
}

static int
list_index(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *x;
  int64_t start = 0, stop = INT64_MAX;
  int rc = mp__mgr_parse(args, "O|LL:index", &x, &start, &stop);
  if (rc)
    return rc;
  mp_obj *const *items;
  size_t n;
  int64_t found = -1;
  LOCK(d);
  mp_seq_items(d->v, &items, &n);
  if (start < 0)
    start = start + (int64_t)n < 0 ? 0 : start + (int64_t)n;
  if (stop < 0)
    stop = stop + (int64_t)n < 0 ? 0 : stop + (int64_t)n;
  for (int64_t i = start; found < 0 && i < stop && (size_t)i < n; i++)
    if (mp_obj_equal(items[i], x))
      found = i;
  UNLOCK(d);
  if (found < 0) {
    char *r = mp_obj_repr(x);
    mp_seterr(MP_EINVAL, "%s is not in list", r ? r : "value");
    mp_free(r);
    return MP_EINVAL;
  }
  *res = mp_int_new(found);
  return 0;
}

static int
list_append(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *x;
  int rc = mp__mgr_parse(args, "O:append", &x);
  if (rc)
    return rc;
  LOCK(d);
  rc = mp_list_append(d->v, x);
  UNLOCK(d);
  return rc;
}

static int
list_extend(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *x, *l;
  int rc = mp__mgr_parse(args, "O:extend", &x);
  if (rc || (rc = mp__mgr_iter_list(x, &l)))
    return rc;
  mp_obj *const *items;
  size_t n;
  mp_seq_items(l, &items, &n);
  LOCK(d);
  for (size_t i = 0; !rc && i < n; i++)
    rc = mp_list_append(d->v, items[i]);
  UNLOCK(d);
  mp_obj_free(l);
  return rc;
}

static int
list_insert(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *x;
  int64_t i;
  int rc = mp__mgr_parse(args, "LO:insert", &i, &x);
  if (rc)
    return rc;
  size_t n;
  LOCK(d);
  mp_obj_len(d->v, &n);
  if (i < 0)
    i = i + (int64_t)n < 0 ? 0 : i + (int64_t)n;
  if ((size_t)i > n)
    i = (int64_t)n;
  rc = list_splice(d, (size_t)i, (size_t)i, &x, 1);
  UNLOCK(d);
  return rc;
}

static int
list_pop(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  int64_t i = -1;
  int rc = mp__mgr_parse(args, "|L:pop", &i);
  if (rc)
    return rc;
  size_t n;
  LOCK(d);
  mp_obj_len(d->v, &n);
  if (!n)
    rc = mp_seterr(MP_EINDEX, "pop from empty list");
  else if ((rc = mp_list_pop(d->v, i, res)))
    rc = mp_seterr(MP_EINDEX, "pop index out of range");
  UNLOCK(d);
  return rc;
}

static int
list_remove(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *x;
  int rc = mp__mgr_parse(args, "O:remove", &x);
  if (rc)
    return rc;
  mp_obj *const *items;
  size_t n;
  LOCK(d);
  mp_seq_items(d->v, &items, &n);
  size_t i = 0;
  while (i < n && !mp_obj_equal(items[i], x))
    i++;
  if (i == n)
    rc = mp_seterr(MP_EINVAL, "list.remove(x): x not in list");
  else
    rc = mp_list_pop(d->v, (int64_t)i, NULL);
  UNLOCK(d);
  return rc;
}

static int
list_reverse(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  int rc = mp__mgr_parse(args, ":reverse");
  if (rc)
    return rc;
  mp_obj *const *items;
  size_t n;
  LOCK(d);
  mp_seq_items(d->v, &items, &n);
  for (size_t i = 0; i < n / 2; i++) {
    mp_obj *a = mp_obj_ref(items[i]), *b = mp_obj_ref(items[n - 1 - i]);
    mp_list_set(d->v, (int64_t)i, b);
    mp_list_set(d->v, (int64_t)(n - 1 - i), a);
    mp_obj_free(a);
    mp_obj_free(b);
    mp_seq_items(d->v, &items, &n);
  }
  UNLOCK(d);
  return 0;
}

static _Thread_local int sort_err;
static int
sort_cmp(const void *a, const void *b)
{
  int c = 0;
  if (!sort_err && (sort_err = obj_cmp(*(mp_obj *const *)a,
                                       *(mp_obj *const *)b, &c)))
    return 0;
  return c;
}

static int
list_sort(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  int rc = mp__mgr_parse(args, ":sort");
  if (rc)
    return rc;
  mp_obj *key = mp_dict_get_str(kwds, "key");
  mp_obj *rev = mp_dict_get_str(kwds, "reverse");
  if (key && mp_obj_type(key) != MP_T_NONE)
    return mp_seterr(MP_ETYPE, "sort(key=...) cannot cross to the server");
  int reverse = rev && mp_obj_truthy(rev);
  mp_obj *const *items;
  size_t n;
  LOCK(d);
  mp_seq_items(d->v, &items, &n);
  mp_obj **tmp = malloc((n ? n : 1) * sizeof *tmp);
  if (!tmp) {
    UNLOCK(d);
    return MP_ENOMEM;
  }
  memcpy(tmp, items, n * sizeof *tmp);
  sort_err = 0;
  /* qsort is not stable; Python's sort is: sort (item, position) pairs */
  qsort(tmp, n, sizeof *tmp, sort_cmp);
  rc = sort_err;
  if (!rc) {
    if (reverse)
      for (size_t i = 0; i < n / 2; i++) {
        mp_obj *t = tmp[i];
        tmp[i] = tmp[n - 1 - i];
        tmp[n - 1 - i] = t;
      }
    mp_obj *l = mp_list_from(n, tmp);
    if (l) {
      mp_obj_free(d->v);
      d->v = l;
    } else {
      rc = MP_ENOMEM;
    }
  }
  free(tmp);
  UNLOCK(d);
  return rc;
}

static int
list_binop(mgr_data *d, mp_obj *other, int64_t times, mp_obj **res)
{
  mp_obj *const *items, *const *oitems = NULL;
  size_t n, on = 0;
  if (other && (mp_obj_type(other) != MP_T_LIST ||
                mp_seq_items(other, &oitems, &on)))
    return mp_seterr(MP_ETYPE, "can only concatenate list (not \"%s\") to "
                               "list", mp_type_name(mp_obj_type(other)));
  mp_obj *l = mp_list_new();
  int rc = l ? 0 : MP_ENOMEM;
  LOCK(d);
  mp_seq_items(d->v, &items, &n);
  if (times > 0 && n && (uint64_t)times * n > 100000000u)
    rc = mp_seterr(MP_ENOMEM, "list too large");
  for (int64_t t = 0; !rc && t < times; t++)
    for (size_t i = 0; !rc && i < n; i++)
      rc = mp_list_append(l, items[i]);
  UNLOCK(d);
  for (size_t i = 0; !rc && i < on; i++)
    rc = mp_list_append(l, oitems[i]);
  if (rc) {
    mp_obj_free(l);
    return rc;
  }
  *res = l;
  return 0;
}

static int
list_add(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  mp_obj *o;
  int rc = mp__mgr_parse(args, "O:__add__", &o);
  return rc ? rc : list_binop(p, o, 1, res);
}

static int
list_mul(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  int64_t k;
  int rc = mp__mgr_parse(args, "L:__mul__", &k);
  return rc ? rc : list_binop(p, NULL, k, res);
}

static int
list_imul(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *l = NULL;
  int rc = list_mul(p, args, kwds, &l);
  if (rc)
    return rc;
  LOCK(d);
  mp_obj *old = d->v;
  d->v = l;
  UNLOCK(d);
  mp_obj_free(old);
  return 0;
}

static int
list_reversed(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  int rc = mp__mgr_parse(args, ":__reversed__");
  if (rc || (rc = getvalue(p, res)))
    return rc;
  mp_obj *const *items;
  size_t n;
  mp_seq_items(*res, &items, &n);
  for (size_t i = 0; i < n / 2; i++) {
    mp_obj *a = mp_obj_ref(items[i]), *b = mp_obj_ref(items[n - 1 - i]);
    mp_list_set(*res, (int64_t)i, b);
    mp_list_set(*res, (int64_t)(n - 1 - i), a);
    mp_obj_free(a);
    mp_obj_free(b);
    mp_seq_items(*res, &items, &n);
  }
  return 0;
}

static const mp_manager_method list_methods[] = {
  { "__add__", list_add, NULL },
  { "__contains__", list_contains, NULL },
  { "__delitem__", list_delitem, NULL },
  { "__getitem__", list_getitem, NULL },
  { "__len__", list_len, NULL },
  { "__mul__", list_mul, NULL },
  { "__reversed__", list_reversed, NULL },
  { "__rmul__", list_mul, NULL },
  { "__setitem__", list_setitem, NULL },
  { "append", list_append, NULL },
  { "count", list_count, NULL },
  { "extend", list_extend, NULL },
  { "index", list_index, NULL },
  { "insert", list_insert, NULL },
  { "pop", list_pop, NULL },
  { "remove", list_remove, NULL },
  { "reverse", list_reverse, NULL },
  { "sort", list_sort, NULL },
  { "__imul__", list_imul, NULL },
};

const mp_manager_type mp__mgr_list_type = {
  .typeid = "list",
  .create = list_create,
  .destroy = data_destroy,
  .methods = list_methods,
  .nmethods = MP__ARRAY_LEN(list_methods),
  .repr = repr_value,
  .getvalue = getvalue,
  .flags = MP_MANAGER_CONCURRENT,
};

/* ---- Iterator (the #PROXY result of dict.__iter__) ---------------------- */

static int
iter_create(mp_obj *args, mp_obj *kwds, void **out)
{
  mp_obj *src, *l;
  int rc = mp__mgr_parse(args, "O:Iterator", &src);
  if (rc)
    return rc;
  if (mp_handle_get(src, &mp__mgr_imap_handle))
    l = mp_obj_ref(src); /* Pool.imap: drawn from as the client asks */
  else if ((rc = mp__mgr_iter_list(src, &l)))
    return rc;
  mgr_data *d = data_new(l);
  if (!d)
    return MP_ENOMEM;
  *out = d;
  return 0;
}

static int
iter_next(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *const *items;
  size_t n;
  int rc = 0;
  mp_imap *it = mp_handle_get(d->v, &mp__mgr_imap_handle);
  if (it) {
    /* the pool's own iterator (its own lock), waiting for the next result
     * (the type is concurrent: this blocks only this client) */
    LOCK(d);
    int done = d->pos == SIZE_MAX;
    UNLOCK(d);
    rc = done ? MP_EEOF : mp_imap_next(it, res, MP_FOREVER);
    if (rc == MP_EEOF)
      *res = mp_tuple_take(0);
    return rc;
  }
  LOCK(d);
  mp_seq_items(d->v, &items, &n);
  if (d->pos < n)
    *res = mp_obj_ref(items[d->pos++]);
  else
    rc = MP_EEOF;
  UNLOCK(d);
  if (rc) {
    *res = mp_tuple_take(0);
    return rc;
  }
  return 0;
}

static int
iter_throw(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  LOCK(d);
  d->pos = SIZE_MAX;
  UNLOCK(d);
  mp_obj *e = mp_seq_item(args, 0);
  *res = e && mp_obj_type(e) == MP_T_RECORD ? mp_obj_ref(e) : NULL;
  return mp_seterr(MP_EREMOTE, "exception thrown into the iterator");
}

static int
iter_close(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  LOCK(d);
  d->pos = SIZE_MAX;
  UNLOCK(d);
  return 0;
}

static const mp_manager_method iter_methods[] = {
  { "__next__", iter_next, NULL },
  { "send", iter_next, NULL },
  { "throw", iter_throw, NULL },
  { "close", iter_close, NULL },
};

const mp_manager_type mp__mgr_iterator_type = {
  .typeid = "Iterator",
  .create = iter_create,
  .destroy = data_destroy,
  .methods = iter_methods,
  .nmethods = MP__ARRAY_LEN(iter_methods),
  .flags = MP_MANAGER_CONCURRENT,
};

/* ---- Namespace ----------------------------------------------------------- */

static int
ns_create(mp_obj *args, mp_obj *kwds, void **out)
{
  int rc = mp__mgr_parse(args, ":Namespace");
  if (rc)
    return rc;
  mp_obj *noargs = mp_tuple_take(0);
  rc = noargs ? dict_create(noargs, kwds, out) : MP_ENOMEM;
  mp_obj_free(noargs);
  return rc;
}

static int
attr_error(const char *name, mp_obj **res)
{
  mp_seterr(MP_ENOTFOUND, "'Namespace' object has no attribute '%s'", name);
  *res = mp__mgr_exc("builtins", "AttributeError",
                     mp__mgr_fmt("'Namespace' object has no attribute '%s'",
                                 name));
  return MP_ENOTFOUND;
}

static int
ns_getattr(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  const char *name;
  int rc = mp__mgr_parse(args, "s:__getattribute__", &name);
  if (rc)
    return rc;
  LOCK(d);
  mp_obj *v = mp_obj_ref(mp_dict_get_str(d->v, name));
  UNLOCK(d);
  if (!v)
    return attr_error(name, res);
  *res = v;
  return 0;
}

static int
ns_setattr(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *name, *val;
  const char *s;
  size_t len;
  int rc = mp__mgr_parse(args, "OO:__setattr__", &name, &val);
  if (rc)
    return rc;
  if (mp_str_get(name, &s, &len))
    return mp_seterr(MP_ETYPE, "attribute name must be string");
  LOCK(d);
  rc = mp_dict_set(d->v, name, val);
  UNLOCK(d);
  return rc;
}

static int
ns_delattr(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *name;
  const char *s;
  size_t len;
  int rc = mp__mgr_parse(args, "O:__delattr__", &name);
  if (rc)
    return rc;
  if (mp_str_get(name, &s, &len))
    return mp_seterr(MP_ETYPE, "attribute name must be string");
  LOCK(d);
  rc = mp_dict_del(d->v, name);
  UNLOCK(d);
  return rc == MP_ENOTFOUND ? attr_error(s, res) : rc;
}

static int
cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
ns_repr(void *p, mp_obj **out)
{
  DATA(p);
  mp__buf b = { 0 };
  mp_obj *k, *v;
  size_t pos = 0, n = 0, cnt = 0;
  LOCK(d);
  mp_obj_len(d->v, &cnt);
  char **parts = calloc(cnt ? cnt : 1, sizeof *parts);
  while (parts && mp_dict_next(d->v, &pos, &k, &v)) {
    const char *s;
    size_t len;
    if (mp_str_get(k, &s, &len) || s[0] == '_')
      continue;
    char *r = mp_obj_repr(v);
    size_t need = len + (r ? strlen(r) : 0) + 2;
    parts[n] = malloc(need);
    if (parts[n])
      snprintf(parts[n++], need, "%s=%s", s, r ? r : "?");
    mp_free(r);
  }
  UNLOCK(d);
  if (!parts)
    return MP_ENOMEM;
  qsort(parts, n, sizeof *parts, cmp_str);
  mp__buf_append(&b, "Namespace(", 10);
  for (size_t i = 0; i < n; i++) {
    if (i)
      mp__buf_append(&b, ", ", 2);
    mp__buf_append(&b, parts[i], strlen(parts[i]));
    free(parts[i]);
  }
  free(parts);
  mp__buf_append(&b, ")", 1);
  *out = mp_str_new_len((char *)b.data, b.len);
  mp__buf_release(&b);
  return *out ? 0 : MP_ENOMEM;
}

static const mp_manager_method ns_methods[] = {
  { "__getattribute__", ns_getattr, NULL },
  { "__setattr__", ns_setattr, NULL },
  { "__delattr__", ns_delattr, NULL },
};

const mp_manager_type mp__mgr_namespace_type = {
  .typeid = "Namespace",
  .create = ns_create,
  .destroy = data_destroy,
  .methods = ns_methods,
  .nmethods = MP__ARRAY_LEN(ns_methods),
  .repr = ns_repr,
  .getvalue = getvalue,
  .flags = MP_MANAGER_CONCURRENT,
};

/* ---- Value and Array ----------------------------------------------------------- */

static int
value_create(mp_obj *args, mp_obj *kwds, void **out)
{
  const char *tc;
  mp_obj *v;
  int lock = 1;
  int rc = mp__mgr_parse(args, "sO|p:Value", &tc, &v, &lock);
  if (rc)
    return rc;
  if (strlen(tc) >= sizeof(((mgr_data *)0)->typecode))
    return mp_seterr(MP_EINVAL, "bad typecode");
  mgr_data *d = data_new(mp_obj_ref(v));
  if (!d)
    return MP_ENOMEM;
  strcpy(d->typecode, tc);
  *out = d;
  return 0;
}

static int
value_get(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  int rc = mp__mgr_parse(args, ":get");
  if (rc)
    return rc;
  LOCK(d);
  *res = mp_obj_ref(d->v);
  UNLOCK(d);
  return 0;
}

static int
value_set(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *v;
  int rc = mp__mgr_parse(args, "O:set", &v);
  if (rc)
    return rc;
  mp_obj_ref(v);
  LOCK(d);
  mp_obj *old = d->v;
  d->v = v;
  UNLOCK(d);
  mp_obj_free(old);
  return 0;
}

static int
value_repr(void *p, mp_obj **out)
{
  DATA(p);
  LOCK(d);
  char *r = mp_obj_repr(d->v);
  UNLOCK(d);
  *out = mp__mgr_fmt("Value('%s', %s)", d->typecode, r ? r : "?");
  mp_free(r);
  return *out ? 0 : MP_ENOMEM;
}

static const mp_manager_method value_methods[] = {
  { "get", value_get, NULL },
  { "set", value_set, NULL },
};

const mp_manager_type mp__mgr_value_type = {
  .typeid = "Value",
  .create = value_create,
  .destroy = data_destroy,
  .methods = value_methods,
  .nmethods = MP__ARRAY_LEN(value_methods),
  .repr = value_repr,
  .getvalue = getvalue,
  .flags = MP_MANAGER_CONCURRENT,
};

/* array.array typecodes: integer kinds or float kinds */
static int
array_item_ok(const char *tc, mp_obj *v, mp_obj **conv)
{
  if (strchr("bBhHiIlLqQ", tc[0]) && tc[0]) {
    if (mp_obj_type(v) != MP_T_INT && mp_obj_type(v) != MP_T_BOOL)
      return mp_seterr(MP_ETYPE, "an integer is required");
    *conv = mp_obj_ref(v);
    return 0;
  }
  if (tc[0] && strchr("fd", tc[0])) {
    double x;
    if (mp_float_get(v, &x))
      return mp_seterr(MP_ETYPE, "must be real number, not %s",
                       mp_type_name(mp_obj_type(v)));
    *conv = mp_float_new(x);
    return *conv ? 0 : MP_ENOMEM;
  }
  if (tc[0] == 'u') {
    const char *s;
    size_t len;
    if (mp_str_get(v, &s, &len))
      return mp_seterr(MP_ETYPE, "array item must be unicode character");
    *conv = mp_obj_ref(v);
    return 0;
  }
  return mp_seterr(MP_EINVAL, "bad typecode (must be b, B, u, h, H, i, I, "
                              "l, L, q, Q, f or d)");
}

static int
array_create(mp_obj *args, mp_obj *kwds, void **out)
{
  const char *tc;
  mp_obj *seq, *l;
  int lock = 1;
  int rc = mp__mgr_parse(args, "sO|p:Array", &tc, &seq, &lock);
  if (rc)
    return rc;
  if (strlen(tc) != 1)
    return mp_seterr(MP_ETYPE, "array() argument 1 must be a unicode "
                               "character");
  int64_t size;
  if (!mp_int_get(seq, &size)) { /* Array('i', 10): ten zeros */
    if (size < 0 || size > 100000000)
      return mp_seterr(MP_EINVAL, "bad array size");
    l = mp_list_new();
    for (int64_t i = 0; l && i < size; i++)
      if (mp_list_append_take(l, strchr("fd", tc[0]) ? mp_float_new(0)
                                                     : mp_int_new(0))) {
        mp_obj_free(l);
        l = NULL;
      }
    if (!l)
      return MP_ENOMEM;
  } else if ((rc = mp__mgr_iter_list(seq, &l))) {
    return rc;
  }
  mp_obj *const *items;
  size_t n;
  mp_seq_items(l, &items, &n);
  for (size_t i = 0; !rc && i < n; i++) {
    mp_obj *c = NULL;
    if (!(rc = array_item_ok(tc, items[i], &c)))
      rc = mp_list_set(l, (int64_t)i, c);
    mp_obj_free(c);
    mp_seq_items(l, &items, &n);
  }
  if (!rc && !strchr("bBhHiIlLqQfdu", tc[0]))
    rc = mp_seterr(MP_EINVAL, "bad typecode (must be b, B, u, h, H, i, I, "
                              "l, L, q, Q, f or d)");
  if (rc) {
    mp_obj_free(l);
    return rc;
  }
  mgr_data *d = data_new(l);
  if (!d)
    return MP_ENOMEM;
  strcpy(d->typecode, tc);
  *out = d;
  return 0;
}

static int
array_setitem(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *idx, *val, *c = NULL;
  int rc = mp__mgr_parse(args, "OO:__setitem__", &idx, &val);
  if (rc || (rc = array_item_ok(d->typecode, val, &c)))
    return rc;
  size_t n, i;
  LOCK(d);
  mp_obj_len(d->v, &n);
  if (!(rc = norm_index(idx, n, &i, "array assignment")))
    rc = mp_list_set(d->v, (int64_t)i, c);
  UNLOCK(d);
  mp_obj_free(c);
  return rc;
}

static int
array_getitem(void *p, mp_obj *args, mp_obj *kwds, mp_obj **res)
{
  DATA(p);
  mp_obj *idx;
  int rc = mp__mgr_parse(args, "O:__getitem__", &idx);
  if (rc)
    return rc;
  mp_obj *const *items;
  size_t n, i;
  LOCK(d);
  mp_seq_items(d->v, &items, &n);
  if (!(rc = norm_index(idx, n, &i, "array")))
    *res = mp_obj_ref(items[i]);
  UNLOCK(d);
  return rc;
}

static int
array_repr(void *p, mp_obj **out)
{
  DATA(p);
  LOCK(d);
  size_t n = 0;
  mp_obj_len(d->v, &n);
  char *r = n ? mp_obj_repr(d->v) : NULL;
  UNLOCK(d);
  *out = n ? mp__mgr_fmt("array('%s', %s)", d->typecode, r ? r : "?")
           : mp__mgr_fmt("array('%s')", d->typecode);
  mp_free(r);
  return *out ? 0 : MP_ENOMEM;
}

static const mp_manager_method array_methods[] = {
  { "__len__", list_len, NULL },
  { "__getitem__", array_getitem, NULL },
  { "__setitem__", array_setitem, NULL },
};

const mp_manager_type mp__mgr_array_type = {
  .typeid = "Array",
  .create = array_create,
  .destroy = data_destroy,
  .methods = array_methods,
  .nmethods = MP__ARRAY_LEN(array_methods),
  .repr = array_repr,
  .getvalue = getvalue,
  .flags = MP_MANAGER_CONCURRENT,
};
