/* SPDX-License-Identifier: MIT */
/* mp_obj: reference counting, scalars, str/bytes/bytearray, tuple/list,
 * equality and deep copy.  dict.c has the hash tables, int.c big ints,
 * record.c records and handles, repr.c repr. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
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
} worklist;

static int
unref_to_zero(mp_obj *c)
{
  if (!c)
    return 0;
  uint32_t rc = __atomic_load_n(&c->rc, __ATOMIC_ACQUIRE);
  if (rc >= MP__RC_IMMORTAL)
    return 0;
  /* The common decode-then-free case: we hold the only reference, nobody
   * else can take one, so no atomic read-modify-write is needed. */
  if (rc == 1)
    return 1;
  return __atomic_sub_fetch(&c->rc, 1, __ATOMIC_ACQ_REL) == 0;
}

static void
wl_drop(worklist *w, mp_obj *c)
{
  if (!unref_to_zero(c))
    return;
  /* leaves (no children) go at once: a list of a million ints must not
   * grow the work list to a million entries */
  if (c->type < MP_T_TUPLE) {
    if (c->type == MP_T_BYTEARRAY)
      free(MP__AS(mp__bytearray, c)->d);
    mp__obj_dealloc(c);
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
    free(l->items);
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
  destroy_one(o, &w);
  while (w.n)
    destroy_one(w.v[--w.n], &w);
  if (w.v != w.local)
    free(w.v);
}

void
mp_obj_free(mp_obj *o)
{
  if (unref_to_zero(o))
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

/* ---- UTF-8 ---------------------------------------------------------------- */

int
mp__utf8_check(const uint8_t *s, size_t len, size_t *ncp, size_t *bad)
{
  size_t i = 0, n = 0;
  while (i < len) {
    /* ASCII runs, 8 bytes at a time */
    while (i + 8 <= len) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (w & 0x8080808080808080ull)
        break;
      i += 8;
      n += 8;
    }
    if (i >= len)
      break;
    uint8_t c = s[i];
    if (c < 0x80) {
      i++;
      n++;
      continue;
    }
    size_t need;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
      need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c == 0xe0)
        lo = 0xa0; /* no overlong forms; surrogates (ED A0..BF) allowed */
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c == 0xf0)
        lo = 0x90;
      else if (c == 0xf4)
        hi = 0x8f; /* nothing above U+10FFFF */
    } else
      goto fail;
    if (len - i - 1 < need)
      goto fail;
    if (s[i + 1] < lo || s[i + 1] > hi)
      goto fail;
    for (size_t k = 2; k <= need; k++)
      if ((s[i + k] & 0xc0) != 0x80)
        goto fail;
    i += need + 1;
    n++;
  }
  *ncp = n;
  return 0;
fail:
  if (bad)
    *bad = i;
  return MP_EMALFORMED;
}

size_t
mp__utf8_decode(const uint8_t *s, uint32_t *cp)
{
  uint8_t c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  if (c < 0xe0) {
    *cp = ((uint32_t)(c & 0x1f) << 6) | (s[1] & 0x3f);
    return 2;
  }
  if (c < 0xf0) {
    *cp = ((uint32_t)(c & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) |
          (s[2] & 0x3f);
    return 3;
  }
  *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3f) << 12) |
        ((uint32_t)(s[2] & 0x3f) << 6) | (s[3] & 0x3f);
  return 4;
}

/* ---- str, bytes, bytearray ------------------------------------------------ */

mp_obj *
mp__str_new_valid(const char *s, size_t len, size_t ncp, int ascii)
{
  if (len > SIZE_MAX - sizeof(mp__str) - 1) {
    mp_seterr(MP_ENOMEM, "str too large");
    return NULL;
  }
  mp__str *o = mp__obj_alloc(sizeof *o + len + 1, MP_T_STR);
  if (!o)
    return NULL;
  o->hash = 0;
  o->len = len;
  o->ncp = ncp;
  if (ascii)
    o->h.flags |= MP__F_ASCII;
  if (len)
    memcpy(o->s, s, len);
  o->s[len] = '\0';
  return &o->h;
}

mp_obj *
mp_str_new_len(const char *utf8, size_t len)
{
  if (!utf8 && len) {
    mp_seterr(MP_EINVAL, "NULL string");
    return NULL;
  }
  size_t ncp, bad = 0;
  if (mp__utf8_check((const uint8_t *)utf8, len, &ncp, &bad)) {
    mp_seterr(MP_EMALFORMED, "invalid UTF-8 at byte %zu", bad);
    return NULL;
  }
  return mp__str_new_valid(utf8, len, ncp, ncp == len);
}

mp_obj *
mp_str_new(const char *s)
{
  if (!s) {
    mp_seterr(MP_EINVAL, "NULL string");
    return NULL;
  }
  return mp_str_new_len(s, strlen(s));
}

mp_obj *
mp_str_printf(const char *fmt, ...)
{
  char small[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) {
    mp_seterr(MP_EINVAL, "bad format");
    return NULL;
  }
  if ((size_t)n < sizeof small)
    return mp_str_new_len(small, (size_t)n);
  char *big = malloc((size_t)n + 1);
  if (!big) {
    mp_seterr(MP_ENOMEM, "out of memory");
    return NULL;
  }
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  mp_obj *o = mp_str_new_len(big, (size_t)n);
  free(big);
  return o;
}

mp_obj *
mp_bytes_new(const void *data, size_t len)
{
  if (!data && len) {
    mp_seterr(MP_EINVAL, "NULL data");
    return NULL;
  }
  if (len > SIZE_MAX - sizeof(mp__bytes) - 1) {
    mp_seterr(MP_ENOMEM, "bytes too large");
    return NULL;
  }
  mp__bytes *b = mp__obj_alloc(sizeof *b + len + 1, MP_T_BYTES);
  if (!b)
    return NULL;
  b->hash = 0;
  b->len = len;
  if (len)
    memcpy(b->d, data, len);
  b->d[len] = 0;
  return &b->h;
}

mp_obj *
mp_bytearray_new(const void *data, size_t len)
{
  if (!data && len) {
    mp_seterr(MP_EINVAL, "NULL data");
    return NULL;
  }
  mp__bytearray *b = mp__obj_alloc(sizeof *b, MP_T_BYTEARRAY);
  if (!b)
    return NULL;
  b->len = b->cap = len;
  b->d = NULL;
  if (len) {
    b->d = malloc(len);
    if (!b->d) {
      mp__obj_dealloc(&b->h);
      mp_seterr(MP_ENOMEM, "out of memory");
      return NULL;
    }
    memcpy(b->d, data, len);
  }
  return &b->h;
}

int
mp_str_get(const mp_obj *o, const char **utf8, size_t *len)
{
  mp__errdetail_clear();
  if (!o)
    return MP_EINVAL;
  if (o->type != MP_T_STR)
    return mp_seterr(MP_ETYPE, "expected str, got %s", mp_type_name(MP__T(o)));
  if (utf8)
    *utf8 = MP__AS(const mp__str, o)->s;
  if (len)
    *len = MP__AS(const mp__str, o)->len;
  return 0;
}

int
mp_bytes_get(const mp_obj *o, const void **data, size_t *len)
{
  mp__errdetail_clear();
  if (!o)
    return MP_EINVAL;
  if (o->type == MP_T_BYTES) {
    if (data)
      *data = MP__AS(const mp__bytes, o)->d;
    if (len)
      *len = MP__AS(const mp__bytes, o)->len;
    return 0;
  }
  if (o->type == MP_T_BYTEARRAY) {
    if (data)
      *data = MP__AS(const mp__bytearray, o)->d;
    if (len)
      *len = MP__AS(const mp__bytearray, o)->len;
    return 0;
  }
  return mp_seterr(MP_ETYPE, "expected bytes or bytearray, got %s",
                   mp_type_name(MP__T(o)));
}

int
mp_bytearray_data(mp_obj *o, void **data, size_t *len)
{
  mp__errdetail_clear();
  if (!o)
    return MP_EINVAL;
  if (o->type != MP_T_BYTEARRAY)
    return mp_seterr(MP_ETYPE, "expected bytearray, got %s",
                     mp_type_name(MP__T(o)));
  if (data)
    *data = MP__AS(mp__bytearray, o)->d;
  if (len)
    *len = MP__AS(mp__bytearray, o)->len;
  return 0;
}

int
mp_bytearray_resize(mp_obj *o, size_t len)
{
  mp__errdetail_clear();
  if (!o)
    return MP_EINVAL;
  if (o->type != MP_T_BYTEARRAY)
    return mp_seterr(MP_ETYPE, "expected bytearray, got %s",
                     mp_type_name(MP__T(o)));
  mp__bytearray *b = MP__AS(mp__bytearray, o);
  if (len > b->cap) {
    uint8_t *d = realloc(b->d, len);
    if (!d)
      return mp_seterr(MP_ENOMEM, "out of memory");
    b->d = d;
    b->cap = len;
  }
  if (len > b->len)
    memset(b->d + b->len, 0, len - b->len); /* as Python: new bytes are 0 */
  b->len = len;
  return 0;
}

/* ---- tuple and list ------------------------------------------------------- */

void
mp__set_depth_from(mp_obj *c, const mp_obj *item)
{
  unsigned d = item->depth;
  if (item->type >= MP_T_TUPLE && item->type <= MP_T_RECORD && d == 0)
    d = 1; /* an empty container still nests */
  if (d + 1 > c->depth)
    c->depth = d + 1 > 0xffff ? 0xffff : (uint16_t)(d + 1);
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
        !(l->items = malloc(cap * sizeof(mp_obj *)))) {
      mp__obj_dealloc(&l->h);
      mp_seterr(MP_ENOMEM, "out of memory");
      return NULL;
    }
  }
  return &l->h;
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
  mp_obj **items = realloc(l->items, cap * sizeof *items);
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

mp_obj *
mp_seq_item(const mp_obj *seq, int64_t i)
{
  mp_obj *const *items;
  size_t n = 0, k = 0;
  if (mp_seq_items(seq, &items, &n))
    return NULL;
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

/* ---- equality ------------------------------------------------------------- */

enum { NUM_NO, NUM_I64, NUM_BIG, NUM_FLOAT };

static int
num_kind(const mp_obj *o, int64_t *i, double *d)
{
  switch (MP__T(o)) {
  case MP_T_BOOL:
    *i = o == &mp__true_obj;
    return NUM_I64;
  case MP_T_INT:
    if (o->flags & MP__F_BIG)
      return NUM_BIG;
    *i = MP__AS(const mp__int, o)->v;
    return NUM_I64;
  case MP_T_FLOAT:
    *d = MP__AS(const mp__float, o)->v;
    return NUM_FLOAT;
  default:
    return NUM_NO;
  }
}

/* 1 if the double is an integer inside int64's range, with it in *out. */
static int
double_as_i64(double d, int64_t *out)
{
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
    return 0;
  if (!mp__dbl_is_int(d))
    return 0;
  *out = (int64_t)d;
  return 1;
}

static int
num_equal(const mp_obj *a, const mp_obj *b)
{
  int64_t ia = 0, ib = 0;
  double da = 0, db = 0;
  int ka = num_kind(a, &ia, &da), kb = num_kind(b, &ib, &db);
  if (ka > kb) { /* order: I64 < BIG < FLOAT */
    const mp_obj *t = a;
    a = b;
    b = t;
    int64_t ti = ia;
    ia = ib;
    ib = ti;
    double td = da;
    da = db;
    db = td;
    int tk = ka;
    ka = kb;
    kb = tk;
  }
  if (ka == NUM_I64 && kb == NUM_I64)
    return ia == ib;
  if (ka == NUM_FLOAT)
    return da == db;
  if (ka == NUM_BIG && kb == NUM_BIG) {
    const mp__bigint *x = MP__AS(const mp__bigint, a),
                     *y = MP__AS(const mp__bigint, b);
    return x->n == y->n && memcmp(x->le, y->le, x->n) == 0;
  }
  if (ka == NUM_I64 && kb == NUM_BIG)
    return 0; /* normalised: a big int never fits int64 */
  if (ka == NUM_I64) { /* vs float */
    int64_t v;
    return double_as_i64(db, &v) && v == ia;
  }
  /* big vs float */
  int64_t v;
  if (!mp__dbl_is_int(db) || double_as_i64(db, &v))
    return 0;
  uint8_t buf[160];
  size_t n = mp__double_to_le(db, buf);
  const mp__bigint *x = MP__AS(const mp__bigint, a);
  return x->n == n && memcmp(x->le, buf, n) == 0;
}

static int equal_rec(const mp_obj *a, const mp_obj *b, int ident, int depth,
                     int content);

/* The entries of a table in insertion order, skipping deleted ones. */
static const mp__entry *
live_next(const mp__table *t, size_t *i)
{
  while (*i < t->n) {
    const mp__entry *e = &t->e[(*i)++];
    if (e->key)
      return e;
  }
  return NULL;
}

/* Is there an entry of `t` whose key (and value) equal e's by content?  A
 * linear scan: keys holding object records hash by identity, so another
 * table's equal-content key cannot be found by hashing. */
static int
scan_content(const mp__table *t, const mp__entry *e, int is_set, int depth)
{
  size_t i = 0;
  const mp__entry *f;
  while ((f = live_next(t, &i)))
    if (equal_rec(e->key, f->key, 1, depth + 1, 1) &&
        (is_set || equal_rec(e->value, f->value, 1, depth + 1, 1)))
      return 1;
  return 0;
}

static int
table_equal(const mp_obj *a, const mp_obj *b, int is_set, int depth,
            int content)
{
  const mp__table *ta = &MP__AS(const mp__dict, a)->t;
  const mp__table *tb = &MP__AS(const mp__dict, b)->t;
  if (ta->used != tb->used)
    return 0;
  if (content) {
    /* the usual case (a round trip keeps the order): entry by entry */
    size_t i = 0, j = 0;
    const mp__entry *e, *f;
    while ((e = live_next(ta, &i)) && (f = live_next(tb, &j)))
      if (!equal_rec(e->key, f->key, 1, depth + 1, 1) ||
          (!is_set && !equal_rec(e->value, f->value, 1, depth + 1, 1)))
        break;
    if (!e)
      return 1;
  }
  for (size_t i = 0; i < ta->n; i++) {
    const mp__entry *e = &ta->e[i];
    if (!e->key)
      continue;
    int rc;
    mp__entry *f = mp__table_find(MP__AS(const mp__dict, b), e->key, &rc);
    if (f && (is_set || equal_rec(e->value, f->value, 1, depth + 1, content)))
      continue;
    if (!content || !scan_content(tb, e, is_set, depth))
      return 0;
  }
  return 1;
}

static int
opt_equal(const mp_obj *a, const mp_obj *b, int depth, int content)
{
  if (!a || !b)
    return a == b;
  return equal_rec(a, b, 1, depth, content);
}

/* Python's == (content: object records compare by their parts, for
 * mp_obj_equal_content). */
static int
equal_rec(const mp_obj *a, const mp_obj *b, int ident, int depth, int content)
{
  if (!a || !b)
    return 0;
  if (a == b && ident)
    return 1;
  if (depth > MP__MAX_RECURSION)
    return 0;
  mp_type ta = MP__T(a), tb = MP__T(b);
  if (ta <= MP_T_FLOAT && tb <= MP_T_FLOAT && ta >= MP_T_BOOL &&
      tb >= MP_T_BOOL)
    return num_equal(a, b);
  if ((ta == MP_T_BYTES || ta == MP_T_BYTEARRAY) &&
      (tb == MP_T_BYTES || tb == MP_T_BYTEARRAY)) {
    const void *pa, *pb;
    size_t na, nb;
    mp_bytes_get(a, &pa, &na);
    mp_bytes_get(b, &pb, &nb);
    return na == nb && (na == 0 || memcmp(pa, pb, na) == 0);
  }
  if ((ta == MP_T_SET || ta == MP_T_FROZENSET) &&
      (tb == MP_T_SET || tb == MP_T_FROZENSET))
    return table_equal(a, b, 1, depth, content);
  if (ta != tb)
    return 0;
  switch (ta) {
  case MP_T_NONE:
    return 1;
  case MP_T_STR: {
    const mp__str *x = MP__AS(const mp__str, a), *y = MP__AS(const mp__str, b);
    return x->len == y->len && memcmp(x->s, y->s, x->len) == 0;
  }
  case MP_T_TUPLE:
  case MP_T_LIST: {
    mp_obj *const *ia, *const *ib;
    size_t na, nb;
    mp_seq_items(a, &ia, &na);
    mp_seq_items(b, &ib, &nb);
    if (na != nb)
      return 0;
    for (size_t i = 0; i < na; i++)
      if (!equal_rec(ia[i], ib[i], 1, depth + 1, content))
        return 0;
    return 1;
  }
  case MP_T_DICT:
    return table_equal(a, b, 0, depth, content);
  case MP_T_RECORD: {
    const mp__record *x = MP__AS(const mp__record, a),
                     *y = MP__AS(const mp__record, b);
    if (x->kind == MP_RECORD_GLOBAL || y->kind == MP_RECORD_GLOBAL)
      return x->kind == y->kind && strcmp(x->module, y->module) == 0 &&
             strcmp(x->name, y->name) == 0;
    /* an object is equal to itself only (Python's default __eq__) */
    if (!content)
      return a == b;
    if (x->kind != y->kind)
      return 0;
    mp_obj *px[MP__RECORD_NPARTS], *py[MP__RECORD_NPARTS];
    mp__record_parts(x, px);
    mp__record_parts(y, py);
    for (int i = 0; i < MP__RECORD_NPARTS; i++)
      if (!opt_equal(px[i], py[i], depth + 1, 1))
        return 0;
    return 1;
  }
  case MP_T_HANDLE:
    return MP__AS(const mp__handle, a)->type ==
               MP__AS(const mp__handle, b)->type &&
           MP__AS(const mp__handle, a)->ptr == MP__AS(const mp__handle, b)->ptr;
  case MP_T_FUNC:
    return mp_func_get(a) == mp_func_get(b);
  default:
    return 0;
  }
}

int
mp__equal(const mp_obj *a, const mp_obj *b, int ident, int depth)
{
  return equal_rec(a, b, ident, depth, 0);
}

int
mp_obj_equal(const mp_obj *a, const mp_obj *b)
{
  mp__errdetail_clear();
  return equal_rec(a, b, 0, 0, 0);
}

int
mp_obj_equal_content(const mp_obj *a, const mp_obj *b)
{
  mp__errdetail_clear();
  return equal_rec(a, b, 0, 0, 1);
}

/* ---- deep copy ------------------------------------------------------------ */

/* old -> new map of the containers copied so far, so that a sub-value shared
 * in the original is shared in the copy. */
typedef struct copymap {
  const mp_obj **from;
  mp_obj **to;
  size_t n, mask;
} copymap;

static size_t
ptr_slot(const void *p, size_t mask)
{
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return (size_t)x & mask;
}

static mp_obj *
copymap_get(copymap *m, const mp_obj *o)
{
  if (!m->from)
    return NULL;
  for (size_t i = ptr_slot(o, m->mask);; i = (i + 1) & m->mask) {
    if (!m->from[i])
      return NULL;
    if (m->from[i] == o)
      return m->to[i];
  }
}

static int
copymap_put(copymap *m, const mp_obj *o, mp_obj *c)
{
  if (!m->from || (m->n + 1) * 2 > m->mask + 1) {
    size_t nsize = m->from ? (m->mask + 1) * 2 : 16;
    const mp_obj **nf = calloc(nsize, sizeof *nf);
    mp_obj **nt = calloc(nsize, sizeof *nt);
    if (!nf || !nt) {
      free(nf);
      free(nt);
      return mp_seterr(MP_ENOMEM, "out of memory");
    }
    for (size_t i = 0; m->from && i <= m->mask; i++) {
      if (!m->from[i])
        continue;
      size_t j = ptr_slot(m->from[i], nsize - 1);
      while (nf[j])
        j = (j + 1) & (nsize - 1);
      nf[j] = m->from[i];
      nt[j] = m->to[i];
    }
    free(m->from);
    free(m->to);
    m->from = nf;
    m->to = nt;
    m->mask = nsize - 1;
  }
  size_t i = ptr_slot(o, m->mask);
  while (m->from[i])
    i = (i + 1) & m->mask;
  m->from[i] = o;
  m->to[i] = c;
  m->n++;
  return 0;
}

static mp_obj *copy_rec(const mp_obj *o, copymap *m, int depth);

static mp_obj *
copy_opt(const mp_obj *o, copymap *m, int depth, int *ok)
{
  if (!o)
    return NULL;
  mp_obj *c = copy_rec(o, m, depth);
  if (!c)
    *ok = 0;
  return c;
}

static mp_obj *
copy_rec(const mp_obj *o, copymap *m, int depth)
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
  mp_obj *c = copymap_get(m, o);
  if (c)
    return mp__newref(c);
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
  if (c && copymap_put(m, o, c)) {
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
  copymap m = {0};
  mp_obj *c = copy_rec(o, &m, 0);
  free(m.from);
  free(m.to);
  return c;
}
