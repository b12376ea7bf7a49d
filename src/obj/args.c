/* SPDX-License-Identifier: MIT */
/* mp_args_parse: PyArg_ParseTuple for mp_obj tuples (include/mproc/args.h).
 *
 * The layer question: the parser checks handles of conn, sync and shm,
 * which sit above obj.  It knows none of them: {Kind} is looked up at run
 * time among the registered handle types (by name, "mproc.Kind") and the
 * kinds registered here, so a layer above -- sync's RLock, a later Queue --
 * adds what it needs without an edit to this file.
 *
 * The format is read once to check it and count the items; then the items
 * are checked against it without writing anything, and only then read a
 * second time into the caller's variables, so a failing call leaves every
 * variable as it was. */
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mproc/args.h"
#include "obj/obj_internal.h"
#include "platform/platform.h"

/* ---- kinds --------------------------------------------------------------- */

static pthread_mutex_t kinds_lock MP__FORK_DATA = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t kinds_lock_once = PTHREAD_ONCE_INIT;

/* Fork children take this lock too (a pool forks workers while other threads parse args): held across every fork
 * (mp__fork_guard_mutex), registered at its first use. */
static void
kinds_lock_guard(void)
{
  mp__fork_guard_mutex(&kinds_lock);
}

static void
lock_kinds(void)
{
  pthread_once(&kinds_lock_once, kinds_lock_guard);
  pthread_mutex_lock(&kinds_lock);
}

static const mp_arg_kind **kinds;
static size_t nkinds, capkinds;

int
mp_arg_kind_register(const mp_arg_kind *kind)
{
  mp__errdetail_clear();
  if (!kind || !kind->name || !kind->name[0] || !kind->handle_type ||
      !kind->handle_type[0])
    return mp_seterr(MP_EINVAL, "an argument kind needs a name and a handle "
                                "type");
  int rc = 0;
  lock_kinds();
  for (size_t i = 0; i < nkinds; i++) {
    if (strcmp(kinds[i]->name, kind->name) == 0) {
      if (kinds[i] != kind)
        rc = mp_seterr(MP_EEXIST, "another argument kind is named '%s'",
                       kind->name);
      pthread_mutex_unlock(&kinds_lock);
      return rc;
    }
  }
  if (nkinds == capkinds) {
    size_t ncap = capkinds ? capkinds * 2 : 8;
    const mp_arg_kind **n = realloc(kinds, ncap * sizeof *n);
    if (!n) {
      pthread_mutex_unlock(&kinds_lock);
      return mp_seterr(MP_ENOMEM, "out of memory");
    }
    kinds = n;
    capkinds = ncap;
  }
  kinds[nkinds++] = kind;
  pthread_mutex_unlock(&kinds_lock);
  return 0;
}

static const mp_arg_kind *
kind_find(const char *name)
{
  const mp_arg_kind *k = NULL;
  lock_kinds();
  for (size_t i = 0; i < nkinds && !k; i++)
    if (strcmp(kinds[i]->name, name) == 0)
      k = kinds[i];
  pthread_mutex_unlock(&kinds_lock);
  return k;
}

/* ---- the format ------------------------------------------------------------ */

#define MAX_KIND 128

typedef struct parse {
  const char *fname; /* after ':', or NULL */
  size_t nreq, nmax; /* items before '|', and in all */
  const mp_obj *const *items;
  size_t n;
} parse;

static int
bad_format(const char *fmt, const char *at, const char *why)
{
  return mp_seterr(MP_EINVAL, "mp_args_parse: bad format \"%s\" at offset "
                              "%zu: %s", fmt, (size_t)(at - fmt), why);
}

static int
scan(const char *fmt, parse *p)
{
  int optional = 0;
  for (const char *f = fmt; *f; f++) {
    switch (*f) {
    case ' ': case '\t': case '\n':
      continue;
    case ':':
      if (!f[1])
        return bad_format(fmt, f, "':' without a name");
      p->fname = f + 1;
      return 0;
    case '|':
      if (optional)
        return bad_format(fmt, f, "a second '|'");
      optional = 1;
      continue;
    case 's': case 'z':
      if (f[1] == '#')
        f++;
      break;
    case 'i': case 'L': case 'd': case 'p': case 'y': case 'O': case 'F':
    case 'H':
      break;
    case '{': {
      const char *end = strchr(f, '}');
      if (!end)
        return bad_format(fmt, f, "'{' without '}'");
      if (end == f + 1 || end - f - 1 >= MAX_KIND)
        return bad_format(fmt, f, "an empty or overlong kind");
      f = end;
      break;
    }
    case '#':
      return bad_format(fmt, f, "'#' after a letter other than s or z");
    default:
      return bad_format(fmt, f, "unknown letter");
    }
    p->nmax++;
    if (!optional)
      p->nreq++;
  }
  return 0;
}

/* "name() argument 3" or "argument 3" */
static int
where(const parse *p, size_t pos, char *buf, size_t cap)
{
  if (p->fname)
    return snprintf(buf, cap, "%s() argument %zu", p->fname, pos);
  return snprintf(buf, cap, "argument %zu", pos);
}

static const char *
type_of(const mp_obj *o)
{
  const mp_handle_type *t = mp_handle_type_of(o);
  return t ? t->name : mp_type_name(mp_obj_type(o));
}

static int
type_err(const parse *p, size_t pos, const char *expected, const mp_obj *got)
{
  char w[160];
  where(p, pos, w, sizeof w);
  return mp_seterr(MP_ETYPE, "%s must be %s, not %s", w, expected,
                   type_of(got));
}

static int
value_err(const parse *p, size_t pos, int code, const char *what)
{
  char w[160];
  where(p, pos, w, sizeof w);
  return mp_seterr(code, "%s: %s", w, what);
}

/* The handle type and kind {name} stands for. */
static int
resolve_kind(const parse *p, size_t pos, const char *name,
             const mp_handle_type **type, const mp_arg_kind **kind)
{
  *kind = kind_find(name);
  char tname[MAX_KIND + 8];
  if (*kind)
    snprintf(tname, sizeof tname, "%s", (*kind)->handle_type);
  else
    snprintf(tname, sizeof tname, "%s%s", strchr(name, '.') ? "" : "mproc.",
             name);
  *type = mp_handle_find(tname);
  if (!*type) {
    char w[160];
    where(p, pos, w, sizeof w);
    return mp_seterr(MP_EINVAL, "%s: no argument kind or handle type named "
                                "'%s' is registered", w, name);
  }
  return 0;
}

/* Check the items against the format (write 0) or store them (write 1). */
static int
run(const parse *p, const char *fmt, va_list *ap, int write)
{
  size_t pos = 0;
  for (const char *f = fmt; *f && *f != ':'; f++) {
    char c = *f;
    if (c == ' ' || c == '\t' || c == '\n' || c == '|')
      continue;
    if (pos == p->n)
      return 0; /* the optional rest is absent */
    const mp_obj *o = p->items[pos++];
    mp_type t = mp_obj_type(o);
    int rc;
    switch (c) {
    case 'i':
    case 'L': {
      if (t != MP_T_INT && t != MP_T_BOOL)
        return type_err(p, pos, "int", o);
      int64_t v;
      if (mp_int_get(o, &v) != 0 || (c == 'i' && (v < INT_MIN || v > INT_MAX)))
        return value_err(p, pos, MP_EOVERFLOW,
                         c == 'i' ? "int does not fit a C int"
                                  : "int does not fit int64_t");
      if (c == 'i') {
        int *out = va_arg(*ap, int *);
        if (write && out)
          *out = (int)v;
      } else {
        int64_t *out = va_arg(*ap, int64_t *);
        if (write && out)
          *out = v;
      }
      break;
    }
    case 'd': {
      if (t != MP_T_INT && t != MP_T_BOOL && t != MP_T_FLOAT)
        return type_err(p, pos, "float", o);
      double v;
      if (mp_float_get(o, &v) != 0)
        return value_err(p, pos, MP_EOVERFLOW, "int too large for a float");
      double *out = va_arg(*ap, double *);
      if (write && out)
        *out = v;
      break;
    }
    case 'p': {
      int *out = va_arg(*ap, int *);
      if (write && out)
        *out = mp_obj_truthy(o) ? 1 : 0;
      break;
    }
    case 's':
    case 'z': {
      int with_len = f[1] == '#';
      if (with_len)
        f++;
      const char *s = NULL;
      size_t len = 0;
      if (!(c == 'z' && t == MP_T_NONE)) {
        if (t != MP_T_STR)
          return type_err(p, pos, c == 'z' ? "str or None" : "str", o);
        mp_str_get(o, &s, &len);
        if (!with_len && memchr(s, '\0', len))
          return value_err(p, pos, MP_EINVAL, "embedded null character");
      }
      const char **out = va_arg(*ap, const char **);
      size_t *outlen = with_len ? va_arg(*ap, size_t *) : NULL;
      if (write && out)
        *out = s;
      if (write && outlen)
        *outlen = len;
      break;
    }
    case 'y': {
      if (t != MP_T_BYTES && t != MP_T_BYTEARRAY)
        return type_err(p, pos, "bytes", o);
      const void *d;
      size_t len;
      mp_bytes_get(o, &d, &len);
      const void **out = va_arg(*ap, const void **);
      size_t *outlen = va_arg(*ap, size_t *);
      if (write && out)
        *out = d;
      if (write && outlen)
        *outlen = len;
      break;
    }
    case 'O': {
      const mp_obj **out = va_arg(*ap, const mp_obj **);
      if (write && out)
        *out = o;
      break;
    }
    case 'F': {
      mp_fn fn = mp_func_get(o);
      if (!fn)
        return type_err(p, pos, "function", o);
      mp_fn *out = va_arg(*ap, mp_fn *);
      if (write && out)
        *out = fn;
      break;
    }
    case 'H': {
      const mp_handle_type *ht = va_arg(*ap, const mp_handle_type *);
      void **out = va_arg(*ap, void **);
      if (!ht)
        return value_err(p, pos, MP_EINVAL, "NULL handle type for 'H'");
      if (mp_handle_type_of(o) != ht)
        return type_err(p, pos, ht->name, o);
      if (write && out)
        *out = mp_handle_get(o, ht);
      break;
    }
    case '{': {
      const char *end = strchr(f, '}');
      char name[MAX_KIND];
      memcpy(name, f + 1, (size_t)(end - f - 1));
      name[end - f - 1] = '\0';
      f = end;
      const mp_handle_type *ht;
      const mp_arg_kind *k;
      if ((rc = resolve_kind(p, pos, name, &ht, &k)) != 0)
        return rc;
      void *ptr = mp_handle_type_of(o) == ht ? mp_handle_get(o, ht) : NULL;
      if (!ptr || (k && k->check && !k->check(ptr)))
        return type_err(p, pos, name, o);
      void **out = va_arg(*ap, void **);
      if (write && out)
        *out = ptr;
      break;
    }
    default:
      return bad_format(fmt, f, "unknown letter"); /* scan() caught it */
    }
  }
  return 0;
}

int
mp_args_vparse(const mp_obj *args, const char *format, va_list ap)
{
  mp__errdetail_clear();
  if (!args || !format)
    return mp_seterr(MP_EINVAL, "mp_args_parse: NULL argument");
  parse p;
  memset(&p, 0, sizeof p);
  mp_obj *const *items;
  if (mp_seq_items(args, &items, &p.n) != 0)
    return mp_seterr(MP_EINVAL, "mp_args_parse: args must be a tuple or "
                                "list, not %s", type_of(args));
  p.items = (const mp_obj *const *)items;
  int rc = scan(format, &p);
  if (rc)
    return rc;
  if (p.n < p.nreq || p.n > p.nmax) {
    char name[160] = "";
    if (p.fname)
      snprintf(name, sizeof name, "%s() ", p.fname);
    const char *how = p.nreq == p.nmax ? "exactly"
                      : p.n < p.nreq   ? "at least"
                                       : "at most";
    size_t want = p.n < p.nreq ? p.nreq : p.nmax;
    return mp_seterr(MP_EINDEX, "%stakes %s %zu argument%s (%zu given)",
                     name, how, want, want == 1 ? "" : "s", p.n);
  }
  va_list check;
  va_copy(check, ap);
  rc = run(&p, format, &check, 0);
  va_end(check);
  if (rc)
    return rc;
  va_list store;
  va_copy(store, ap);
  rc = run(&p, format, &store, 1);
  va_end(store);
  return rc;
}

int
mp_args_parse(const mp_obj *args, const char *format, ...)
{
  mp__errdetail_clear();
  va_list ap;
  va_start(ap, format);
  int rc = mp_args_vparse(args, format, ap);
  va_end(ap);
  return rc;
}
