/* SPDX-License-Identifier: MIT */
/* Records (inert references and objects a pickle names) and handles (live
 * objects of later layers) with their type registry. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "obj/obj_internal.h"
#include "platform/platform.h"

/* ---- records -------------------------------------------------------------- */

static int
valid_name(const char *s, size_t *len)
{
  size_t n = strlen(s), ncp;
  *len = n;
  return mp__utf8_check((const uint8_t *)s, n, &ncp, NULL) == 0;
}

mp_obj *
mp_global_new(const char *module, const char *name)
{
  if (!module || !name) {
    mp_seterr(MP_EINVAL, "NULL module or name");
    return NULL;
  }
  /* Python 2 spellings (protocol 2 pickles) of the builtins module */
  if (strcmp(module, "__builtin__") == 0 || strcmp(module, "exceptions") == 0)
    module = "builtins";
  size_t lm, ln;
  if (!valid_name(module, &lm) || !valid_name(name, &ln)) {
    mp_seterr(MP_EMALFORMED, "module or name is not valid UTF-8");
    return NULL;
  }
  mp__record *r = mp__obj_alloc(sizeof *r, MP_T_RECORD);
  if (!r)
    return NULL;
  memset((char *)r + sizeof r->h, 0, sizeof *r - sizeof r->h);
  r->kind = MP_RECORD_GLOBAL;
  r->module = malloc(lm + ln + 2);
  if (!r->module) {
    mp__obj_dealloc(&r->h);
    mp_seterr(MP_ENOMEM, "out of memory");
    return NULL;
  }
  memcpy(r->module, module, lm + 1);
  r->name = r->module + lm + 1;
  memcpy(r->name, name, ln + 1);
  return &r->h;
}

mp_obj *
mp_record_take(mp_record_kind kind, mp_obj *callable, mp_obj *args)
{
  int rc = 0;
  if (kind != MP_RECORD_REDUCE && kind != MP_RECORD_NEWOBJ)
    rc = mp_seterr(MP_EINVAL, "record kind must be REDUCE or NEWOBJ "
                              "(NEWOBJ_EX: mp_record_newobj_ex_take)");
  else if (!callable || !args)
    rc = mp_seterr(MP_EINVAL, "NULL callable or args");
  else if (args->type != MP_T_TUPLE)
    rc = mp_seterr(MP_ETYPE, "record args must be a tuple, not %s",
                   mp_type_name(MP__T(args)));
  mp__record *r = rc ? NULL : mp__obj_alloc(sizeof *r, MP_T_RECORD);
  if (!r) {
    mp_obj_free(callable);
    mp_obj_free(args);
    return NULL;
  }
  memset((char *)r + sizeof r->h, 0, sizeof *r - sizeof r->h);
  r->kind = (uint8_t)kind;
  r->callable = callable;
  r->args = args;
  r->h.depth = 1;
  mp__set_depth_from(&r->h, callable);
  mp__set_depth_from(&r->h, args);
  return &r->h;
}

mp_obj *
mp_record_newobj_ex_take(mp_obj *cls, mp_obj *args, mp_obj *kwargs)
{
  int rc = 0;
  if (!cls || !args || !kwargs)
    rc = mp_seterr(MP_EINVAL, "NULL class, args or kwargs");
  else if (args->type != MP_T_TUPLE)
    rc = mp_seterr(MP_ETYPE, "record args must be a tuple, not %s",
                   mp_type_name(MP__T(args)));
  else if (kwargs->type != MP_T_DICT)
    rc = mp_seterr(MP_ETYPE, "record kwargs must be a dict, not %s",
                   mp_type_name(MP__T(kwargs)));
  mp_obj *r = rc ? NULL : mp_record_take(MP_RECORD_NEWOBJ, cls, args);
  if (!r) {
    if (rc) {
      mp_obj_free(cls);
      mp_obj_free(args);
    }
    mp_obj_free(kwargs);
    return NULL;
  }
  MP__AS(mp__record, r)->kind = MP_RECORD_NEWOBJ_EX;
  MP__AS(mp__record, r)->kwargs = kwargs;
  mp__set_depth_from(r, kwargs);
  return r;
}

static int
record_check(const mp_obj *o)
{
  if (!o)
    return mp_seterr(MP_EINVAL, "NULL record");
  if (o->type != MP_T_RECORD)
    return mp_seterr(MP_ETYPE, "expected record, got %s",
                     mp_type_name(MP__T(o)));
  return 0;
}

int
mp_record_kind_of(const mp_obj *o, mp_record_kind *out)
{
  mp__errdetail_clear();
  int rc = record_check(o);
  if (rc)
    return rc;
  if (out)
    *out = (mp_record_kind)MP__AS(const mp__record, o)->kind;
  return 0;
}

int
mp_global_get(const mp_obj *o, const char **module, const char **name)
{
  mp__errdetail_clear();
  int rc = record_check(o);
  if (rc)
    return rc;
  const mp__record *r = MP__AS(const mp__record, o);
  if (r->kind != MP_RECORD_GLOBAL)
    return mp_seterr(MP_ETYPE, "record is not a class reference");
  if (module)
    *module = r->module;
  if (name)
    *name = r->name;
  return 0;
}

int
mp_record_get(const mp_obj *o, mp_obj **callable, mp_obj **args,
              mp_obj **state, mp_obj **listitems, mp_obj **dictitems)
{
  mp__errdetail_clear();
  int rc = record_check(o);
  if (rc)
    return rc;
  const mp__record *r = MP__AS(const mp__record, o);
  if (r->kind == MP_RECORD_GLOBAL)
    return mp_seterr(MP_ETYPE, "record is a class reference, not an object");
  if (callable)
    *callable = r->callable;
  if (args)
    *args = r->args;
  if (state)
    *state = r->state;
  if (listitems)
    *listitems = r->listitems;
  if (dictitems)
    *dictitems = r->dictitems;
  return 0;
}

int
mp_record_kwargs(const mp_obj *o, mp_obj **kwargs)
{
  mp__errdetail_clear();
  int rc = record_check(o);
  if (rc)
    return rc;
  const mp__record *r = MP__AS(const mp__record, o);
  if (r->kind == MP_RECORD_GLOBAL)
    return mp_seterr(MP_ETYPE, "record is a class reference, not an object");
  if (kwargs)
    *kwargs = r->kwargs;
  return 0;
}

static int
object_record(mp_obj *o)
{
  int rc = record_check(o);
  if (rc)
    return rc;
  if (MP__AS(mp__record, o)->kind == MP_RECORD_GLOBAL)
    return mp_seterr(MP_ETYPE, "a class reference has no state or items");
  return 0;
}

int
mp_record_set_state_take(mp_obj *o, mp_obj *state)
{
  mp__errdetail_clear();
  int rc = object_record(o);
  if (!rc && !state)
    rc = mp_seterr(MP_EINVAL, "NULL state");
  if (!rc && state == o)
    rc = mp_seterr(MP_ECYCLE, "a record cannot contain itself");
  if (rc) {
    if (state != o)
      mp_obj_free(state);
    return rc;
  }
  mp__record *r = MP__AS(mp__record, o);
  mp_obj *old = r->state;
  r->state = state;
  mp__set_depth_from(o, state);
  mp_obj_free(old);
  return 0;
}

int
mp_record_append_take(mp_obj *o, mp_obj *item)
{
  mp__errdetail_clear();
  int rc = object_record(o);
  if (!rc && !item)
    rc = mp_seterr(MP_EINVAL, "NULL item");
  if (!rc && item == o)
    rc = mp_seterr(MP_ECYCLE, "a record cannot contain itself");
  mp__record *r = MP__AS(mp__record, o);
  if (!rc && !r->listitems && !(r->listitems = mp_list_new()))
    rc = MP_ENOMEM;
  if (rc) {
    if (item != o)
      mp_obj_free(item);
    return rc;
  }
  rc = mp__list_push(MP__AS(mp__list, r->listitems), item);
  if (!rc)
    mp__set_depth_from(o, r->listitems);
  return rc;
}

int
mp_record_setitem_take(mp_obj *o, mp_obj *key, mp_obj *value)
{
  mp__errdetail_clear();
  int rc = object_record(o);
  if (!rc && (!key || !value))
    rc = mp_seterr(MP_EINVAL, "NULL key or value");
  if (!rc && (key == o || value == o))
    rc = mp_seterr(MP_ECYCLE, "a record cannot contain itself");
  mp__record *r = MP__AS(mp__record, o);
  if (!rc && !r->dictitems && !(r->dictitems = mp_list_new()))
    rc = MP_ENOMEM;
  if (rc) {
    if (key != o)
      mp_obj_free(key);
    if (value != o)
      mp_obj_free(value);
    return rc;
  }
  mp_obj *pair = mp_tuple_take(2, key, value);
  if (!pair)
    return MP_ENOMEM;
  rc = mp__list_push(MP__AS(mp__list, r->dictitems), pair);
  if (!rc)
    mp__set_depth_from(o, r->dictitems);
  return rc;
}

/* ---- handles -------------------------------------------------------------- */

static pthread_mutex_t reg_lock MP__FORK_DATA = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t reg_lock_once = PTHREAD_ONCE_INIT;

/* Fork children take this lock too (a pool forks workers while other threads pickle handles): held across every fork
 * (mp__fork_guard_mutex), registered at its first use. */
static void
reg_lock_guard(void)
{
  mp__fork_guard_mutex(&reg_lock);
}

static void
lock_registry(void)
{
  pthread_once(&reg_lock_once, reg_lock_guard);
  pthread_mutex_lock(&reg_lock);
}

static const mp_handle_type **reg;
static size_t nreg, capreg;

int
mp_handle_register(const mp_handle_type *type)
{
  mp__errdetail_clear();
  if (!type || !type->name || !type->name[0])
    return mp_seterr(MP_EINVAL, "handle type needs a name");
  int rc = 0;
  lock_registry();
  for (size_t i = 0; i < nreg; i++) {
    if (strcmp(reg[i]->name, type->name) == 0) {
      if (reg[i] != type)
        rc = mp_seterr(MP_EEXIST, "another handle type is named '%s'",
                       type->name);
      pthread_mutex_unlock(&reg_lock);
      return rc;
    }
  }
  if (nreg == capreg) {
    size_t ncap = capreg ? capreg * 2 : 16;
    const mp_handle_type **n = realloc(reg, ncap * sizeof *n);
    if (!n) {
      pthread_mutex_unlock(&reg_lock);
      return mp_seterr(MP_ENOMEM, "out of memory");
    }
    reg = n;
    capreg = ncap;
  }
  reg[nreg++] = type;
  pthread_mutex_unlock(&reg_lock);
  return 0;
}

const mp_handle_type *
mp_handle_find(const char *name)
{
  if (!name)
    return NULL;
  const mp_handle_type *t = NULL;
  lock_registry();
  for (size_t i = 0; i < nreg && !t; i++)
    if (strcmp(reg[i]->name, name) == 0)
      t = reg[i];
  pthread_mutex_unlock(&reg_lock);
  return t;
}

mp_obj *
mp_handle_new(const mp_handle_type *type, void *ptr)
{
  if (!type) {
    mp_seterr(MP_EINVAL, "NULL handle type");
    return NULL;
  }
  mp__handle *h = mp__obj_alloc(sizeof *h, MP_T_HANDLE);
  if (!h) {
    if (type->release)
      type->release(ptr);
    return NULL;
  }
  h->type = type;
  h->ptr = ptr;
  return &h->h;
}

void *
mp_handle_get(const mp_obj *o, const mp_handle_type *type)
{
  if (!o || o->type != MP_T_HANDLE)
    return NULL;
  const mp__handle *h = MP__AS(const mp__handle, o);
  if (type && h->type != type)
    return NULL;
  return h->ptr;
}

const mp_handle_type *
mp_handle_type_of(const mp_obj *o)
{
  if (!o || o->type != MP_T_HANDLE)
    return NULL;
  return MP__AS(const mp__handle, o)->type;
}
