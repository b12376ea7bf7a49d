/* SPDX-License-Identifier: MIT */
/* The manager protocol's messages as mp_obj values (docs/python-wire.md
 * section 4): requests, replies, Token, exceptions in #ERROR, and the
 * mapping between mproc's codes and Python's builtins exceptions. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager/manager_internal.h"

mp_obj *
mp__mgr_fmt(const char *fmt, ...)
{
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0)
    return NULL;
  if ((size_t)n >= sizeof buf)
    n = sizeof buf - 1;
  /* a cut may split a UTF-8 sequence: back up to a boundary */
  while (n > 0 && ((unsigned char)buf[n] & 0xC0) == 0x80)
    n--;
  return mp_str_new_len(buf, (size_t)n);
}

mp_obj *
mp__mgr_request(const char *ident, const char *method, mp_obj *args,
                mp_obj *kwds)
{
  return MP_TUPLE(ident ? mp_str_new(ident) : mp_none(), mp_str_new(method),
                  args ? mp_obj_ref(args) : mp_tuple_take(0),
                  kwds ? mp_obj_ref(kwds) : mp_dict_new());
}

int
mp__mgr_request_parts(const mp_obj *req, const char **ident,
                      const char **method, mp_obj **args, mp_obj **kwds)
{
  mp_obj *const *it;
  size_t n;
  size_t len;
  if (mp_obj_type(req) != MP_T_TUPLE || mp_seq_items(req, &it, &n) || n != 4)
    return mp_seterr(MP_EMALFORMED,
                     "a request is a 4-tuple (ident, method, args, kwds)");
  if (mp_obj_type(it[0]) == MP_T_NONE)
    *ident = NULL;
  else if (mp_str_get(it[0], ident, &len))
    return mp_seterr(MP_EMALFORMED, "request ident must be str or None");
  if (mp_str_get(it[1], method, &len))
    return mp_seterr(MP_EMALFORMED, "request method name must be str");
  if (mp_obj_type(it[2]) != MP_T_TUPLE && mp_obj_type(it[2]) != MP_T_LIST)
    return mp_seterr(MP_EMALFORMED, "request args must be a tuple");
  if (mp_obj_type(it[3]) != MP_T_DICT)
    return mp_seterr(MP_EMALFORMED, "request kwds must be a dict");
  *args = it[2];
  *kwds = it[3];
  return 0;
}

mp_obj *
mp__mgr_reply_take(const char *kind, mp_obj *value)
{
  return MP_TUPLE(mp_str_new(kind), value ? value : mp_none());
}

mp_obj *
mp__mgr_traceback(const char *exc, const char *fmt, ...)
{
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return mp__mgr_reply_take(
      "#TRACEBACK",
      mp__mgr_fmt("Traceback (most recent call last):\n"
                  "  File \"<mproc manager server>\"\n%s: %s\n",
                  exc, msg));
}

/* mproc's codes and the exception classes that stand for them, both ways.
 * The first entry of a code is what a server sends. */
static const struct {
  int code;
  const char *module, *name;
} exc_map[] = {
    { MP_ENOTFOUND, "builtins", "KeyError" },
    { MP_EINDEX, "builtins", "IndexError" },
    { MP_EINVAL, "builtins", "ValueError" },
    { MP_ETYPE, "builtins", "TypeError" },
    { MP_EUNHASHABLE, "builtins", "TypeError" },
    { MP_EEOF, "builtins", "StopIteration" },
    { MP_EEMPTY, "_queue", "Empty" },
    { MP_EFULL, "queue", "Full" },
    { MP_ESTATE, "builtins", "RuntimeError" },
    { MP_ETIMEDOUT, "builtins", "TimeoutError" },
    { MP_EBROKEN, "threading", "BrokenBarrierError" },
    { MP_EOVERFLOW, "builtins", "OverflowError" },
    { MP_ENOMEM, "builtins", "MemoryError" },
    { MP_ELIMIT, "builtins", "MemoryError" },
    { MP_ENOTFOUND, "builtins", "AttributeError" },
    { MP_EEMPTY, "queue", "Empty" },
    { MP_ENOTSUP, "builtins", "NotImplementedError" },
    { MP_EINDEX, "builtins", "LookupError" },
};

mp_obj *
mp__mgr_error_reply(int code, const char *detail, mp_obj *exc_args)
{
  /* an exception object the method made itself (AttributeError...) */
  mp_record_kind kind;
  mp_obj *callable = NULL;
  const char *mod, *nm;
  if (exc_args && !mp_record_kind_of(exc_args, &kind) &&
      kind == MP_RECORD_REDUCE &&
      !mp_record_get(exc_args, &callable, NULL, NULL, NULL, NULL) &&
      callable && !mp_global_get(callable, &mod, &nm))
    return mp__mgr_reply_take("#ERROR", exc_args);
  for (size_t i = 0; i < MP__ARRAY_LEN(exc_map); i++) {
    if (exc_map[i].code != code)
      continue;
    mp_obj *args = exc_args;
    if (!args)
      args = detail && *detail ? MP_TUPLE(mp__mgr_fmt("%s", detail))
                               : mp_tuple_take(0);
    else if (mp_obj_type(args) != MP_T_TUPLE)
      args = MP_TUPLE(args);
    mp_obj *exc = mp_record_take(
        MP_RECORD_REDUCE, mp_global_new(exc_map[i].module, exc_map[i].name),
        args);
    return mp__mgr_reply_take("#ERROR", exc);
  }
  mp_obj_free(exc_args);
  return mp__mgr_traceback("mproc.RemoteError", "%s: %s", mp_err_name(code),
                           detail && *detail ? detail : mp_strerror(code));
}

static int
exception_code(const mp_obj *exc, char *name, size_t cap)
{
  mp_obj *callable = NULL;
  const char *mod = "", *nm = "?";
  if (!mp_record_get(exc, &callable, NULL, NULL, NULL, NULL) && callable)
    mp_global_get(callable, &mod, &nm);
  snprintf(name, cap, "%s.%s", mod, nm);
  for (size_t i = 0; i < MP__ARRAY_LEN(exc_map); i++)
    if (!strcmp(exc_map[i].module, mod) && !strcmp(exc_map[i].name, nm))
      return exc_map[i].code;
  return MP_EREMOTE;
}

int
mp__mgr_reply_read(const mp_obj *reply, mp_obj **value)
{
  mp_obj *const *it;
  size_t n, len;
  const char *kind;
  *value = NULL;
  if (mp_obj_type(reply) != MP_T_TUPLE || mp_seq_items(reply, &it, &n) ||
      n != 2 || mp_str_get(it[0], &kind, &len))
    return mp_seterr(MP_EMALFORMED, "a reply is a pair (kind, value)");
  if (!strcmp(kind, "#RETURN")) {
    *value = mp_obj_ref(it[1]);
    return 0;
  }
  if (!strcmp(kind, "#PROXY")) {
    mp_obj *const *pp;
    size_t np;
    if (mp_obj_type(it[1]) != MP_T_TUPLE || mp_seq_items(it[1], &pp, &np) ||
        np != 2)
      return mp_seterr(MP_EMALFORMED, "#PROXY value is (exposed, token)");
    *value = mp_obj_ref(it[1]);
    return 1;
  }
  if (!strcmp(kind, "#ERROR")) {
    char name[128];
    int code = exception_code(it[1], name, sizeof name);
    char *r = mp_obj_repr(it[1]);
    mp_seterr(code, "%s", r ? r : name);
    mp_free(r);
    return code;
  }
  if (!strcmp(kind, "#TRACEBACK") || !strcmp(kind, "#UNSERIALIZABLE")) {
    const char *text = "";
    mp_str_get(it[1], &text, &len);
    return mp_seterr(MP_EREMOTE, "%s%s",
                     kind[1] == 'U' ? "Unserializable message: " : "", text);
  }
  return mp_seterr(MP_EMALFORMED, "unknown reply kind %.40s", kind);
}

mp_obj *
mp__mgr_address_obj(const char *address)
{
  if (!address)
    return mp_none();
  if (address[0] == '@') {
    size_t n = strlen(address);
    char *b = malloc(n);
    if (!b)
      return NULL;
    b[0] = 0;
    memcpy(b + 1, address + 1, n - 1);
    mp_obj *o = mp_bytes_new(b, n);
    free(b);
    return o;
  }
  if (strchr(address, '/') || address[0] == '[' || !strrchr(address, ':'))
    return mp_str_new(address);
  const char *colon = strrchr(address, ':');
  return MP_TUPLE(mp_str_new_len(address, (size_t)(colon - address)),
                  mp_int_new(strtol(colon + 1, NULL, 10)));
}

int
mp__mgr_address_str(const mp_obj *a, char *buf, size_t cap)
{
  const char *s;
  const void *b;
  size_t n;
  if (mp_str_get(a, &s, &n) == 0)
    return (size_t)snprintf(buf, cap, "%s", s) < cap ? 0 : MP_EINVAL;
  if (mp_bytes_get(a, &b, &n) == 0 && n > 1 && ((const char *)b)[0] == 0 &&
      !memchr((const char *)b + 1, 0, n - 1))
    return (size_t)snprintf(buf, cap, "@%.*s", (int)(n - 1),
                            (const char *)b + 1) < cap ? 0 : MP_EINVAL;
  mp_obj *const *it;
  int64_t port;
  if (mp_obj_type(a) == MP_T_TUPLE && !mp_seq_items(a, &it, &n) && n == 2 &&
      !mp_str_get(it[0], &s, &n) && !mp_int_get(it[1], &port) && port >= 0 &&
      port <= 65535) {
    const char *fmt = strchr(s, ':') ? "[%s]:%lld" : "%s:%lld";
    return (size_t)snprintf(buf, cap, fmt, s, (long long)port) < cap
               ? 0 : MP_EINVAL;
  }
  return MP_EINVAL;
}

mp_obj *
mp__mgr_token_new(const char *typeid, const char *address, const char *ident)
{
  mp_obj *tok = mp_record_take(
      MP_RECORD_NEWOBJ, mp_global_new("multiprocessing.managers", "Token"),
      mp_tuple_take(0));
  if (!tok)
    return NULL;
  if (mp_record_set_state_take(tok, MP_TUPLE(mp_str_new(typeid),
                                             mp__mgr_address_obj(address),
                                             mp_str_new(ident)))) {
    mp_obj_free(tok);
    return NULL;
  }
  return tok;
}

int
mp__mgr_token_parts(const mp_obj *tok, const char **typeid,
                    const char **ident)
{
  mp_obj *callable = NULL, *state = NULL;
  const char *mod, *name;
  mp_obj *const *it;
  size_t n, len;
  if (mp_record_get(tok, &callable, NULL, &state, NULL, NULL) || !callable ||
      mp_global_get(callable, &mod, &name) ||
      strcmp(mod, "multiprocessing.managers") || strcmp(name, "Token"))
    return mp_seterr(MP_EMALFORMED, "not a Token");
  if (mp_obj_type(state) != MP_T_TUPLE || mp_seq_items(state, &it, &n) ||
      n != 3 || mp_str_get(it[0], typeid, &len) ||
      mp_str_get(it[2], ident, &len))
    return mp_seterr(MP_EMALFORMED, "Token state is (typeid, address, id)");
  return 0;
}

mp_obj *
mp__mgr_exposed(const mp_manager_type *t)
{
  mp_obj *tup = mp_tuple_take(0);
  if (!t->nmethods)
    return tup;
  mp_obj_free(tup);
  mp_obj *list = mp_list_new();
  for (size_t i = 0; list && i < t->nmethods; i++)
    if (mp_list_append_take(list, mp_str_new(t->methods[i].name))) {
      mp_obj_free(list);
      return NULL;
    }
  if (!list)
    return NULL;
  mp_obj *const *items;
  size_t n;
  mp_seq_items(list, &items, &n);
  mp_obj *r = mp_tuple_from(n, items);
  mp_obj_free(list);
  return r;
}

int
mp__mgr_iter_list(const mp_obj *o, mp_obj **out)
{
  mp_obj *const *items;
  size_t n, pos = 0;
  mp_obj *k;
  mp_type t = mp_obj_type(o);
  if (t == MP_T_TUPLE || t == MP_T_LIST) {
    mp_seq_items(o, &items, &n);
    *out = mp_list_from(n, items);
    return *out ? 0 : MP_ENOMEM;
  }
  if (t == MP_T_DICT || t == MP_T_SET || t == MP_T_FROZENSET) {
    mp_obj *l = mp_list_new();
    while (l && (t == MP_T_DICT ? mp_dict_next(o, &pos, &k, NULL)
                                : mp_set_next(o, &pos, &k)))
      if (mp_list_append(l, k)) {
        mp_obj_free(l);
        l = NULL;
      }
    *out = l;
    return l ? 0 : MP_ENOMEM;
  }
  if (t == MP_T_STR || t == MP_T_BYTES || t == MP_T_BYTEARRAY) {
    const void *data;
    size_t len;
    mp_obj *l = mp_list_new();
    if (t == MP_T_STR) {
      const char *s;
      mp_str_get(o, &s, &len);
      for (size_t i = 0; l && i < len;) {
        size_t k2 = 1;
        while (i + k2 < len && ((unsigned char)s[i + k2] & 0xC0) == 0x80)
          k2++;
        if (mp_list_append_take(l, mp_str_new_len(s + i, k2))) {
          mp_obj_free(l);
          l = NULL;
        }
        i += k2;
      }
    } else {
      mp_bytes_get(o, &data, &len);
      for (size_t i = 0; l && i < len; i++)
        if (mp_list_append_take(l, mp_int_new(((const uint8_t *)data)[i]))) {
          mp_obj_free(l);
          l = NULL;
        }
    }
    *out = l;
    return l ? 0 : MP_ENOMEM;
  }
  /* range(start, stop, step), as Python pickles it */
  mp_obj *callable = NULL, *args = NULL;
  const char *mod, *name;
  int64_t a[3];
  if (t == MP_T_RECORD &&
      !mp_record_get(o, &callable, &args, NULL, NULL, NULL) && callable &&
      !mp_global_get(callable, &mod, &name) && !strcmp(mod, "builtins") &&
      !strcmp(name, "range") && !mp_seq_items(args, &items, &n) && n == 3 &&
      !mp_int_get(items[0], &a[0]) && !mp_int_get(items[1], &a[1]) &&
      !mp_int_get(items[2], &a[2]) && a[2] != 0) {
    int64_t count = a[2] > 0 ? (a[1] > a[0] ? (a[1] - a[0] + a[2] - 1) / a[2] : 0)
                             : (a[0] > a[1] ? (a[0] - a[1] - a[2] - 1) / -a[2] : 0);
    if (count > 10000000)
      return mp_seterr(MP_ELIMIT, "range of %lld items", (long long)count);
    mp_obj *l = mp_list_new();
    for (int64_t i = 0; l && i < count; i++)
      if (mp_list_append_take(l, mp_int_new(a[0] + i * a[2]))) {
        mp_obj_free(l);
        l = NULL;
      }
    *out = l;
    return l ? 0 : MP_ENOMEM;
  }
  return mp_seterr(MP_ETYPE, "'%s' object is not iterable",
                   mp_type_name(t));
}

int
mp__mgr_timeout_arg(const mp_obj *o, double *out)
{
  if (!o || mp_obj_type(o) == MP_T_NONE) {
    *out = MP_FOREVER;
    return 0;
  }
  if (mp_float_get(o, out))
    return mp_seterr(MP_ETYPE, "timeout must be a number or None");
  if (*out != *out)
    return mp_seterr(MP_EINVAL, "timeout is NaN");
  return 0;
}
