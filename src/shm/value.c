/* SPDX-License-Identifier: MIT */
/* Value and Array: typed blocks in the shared arena with an optional lock
 * (Python's sharedctypes). */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "mproc/shm.h"
#include "shm/shm_internal.h"
#include "sync/sync_internal.h"

enum { K_SIGNED, K_UNSIGNED, K_FLOAT, K_CHAR, K_STRUCT };

struct tinfo {
  char tc;
  unsigned char size, kind;
};

static const struct tinfo types[] = {
    {'c', sizeof(char), K_CHAR},
    {'b', sizeof(signed char), K_SIGNED},
    {'B', sizeof(unsigned char), K_UNSIGNED},
    {'h', sizeof(short), K_SIGNED},
    {'H', sizeof(unsigned short), K_UNSIGNED},
    {'i', sizeof(int), K_SIGNED},
    {'I', sizeof(unsigned int), K_UNSIGNED},
    {'l', sizeof(long), K_SIGNED},
    {'L', sizeof(unsigned long), K_UNSIGNED},
    {'q', sizeof(long long), K_SIGNED},
    {'Q', sizeof(unsigned long long), K_UNSIGNED},
    {'f', sizeof(float), K_FLOAT},
    {'d', sizeof(double), K_FLOAT},
};

static const struct tinfo *
tinfo_of(char tc)
{
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    if (types[i].tc == tc && tc)
      return &types[i];
  return NULL;
}

static unsigned
kind_of(char tc)
{
  const struct tinfo *t = tinfo_of(tc);
  return t ? t->kind : K_STRUCT;
}

/* ---- construction --------------------------------------------------------- */

static int
value_adopt(struct mp__shobj *h, size_t size, const mp__shmore *more)
{
  int is_array = h->kind == MP__K_ARRAY;
  uint8_t *p = mp__arena_ptr(h->ref);
  struct mp__sval sv, *sh = (struct mp__sval *)p;
  sv.typecode = MP__SHARED_LOAD(&sh->typecode);
  sv.elsize = MP__SHARED_LOAD(&sh->elsize);
  sv.n = MP__SHARED_LOAD(&sh->n);
  sv.hdr = MP__SHARED_LOAD(&sh->hdr);
  const struct tinfo *t = tinfo_of((char)sv.typecode);
  /* a known typecode with its own size, or a struct (0); data aligned as
   * make() places it, and every element inside the block */
  if ((sv.typecode && (!t || t->size != sv.elsize)) || sv.elsize == 0
      || sv.hdr < sizeof sv || sv.hdr % 16 || sv.hdr > size
      || sv.n > (size - sv.hdr) / sv.elsize || (!is_array && sv.n != 1))
    return mp_seterr(MP_EMALFORMED, "shared %s header does not fit its "
                     "block (typecode %u, %u-byte elements, %llu of them, "
                     "header %u, block %zu bytes)",
                     is_array ? "array" : "value", (unsigned)sv.typecode,
                     (unsigned)sv.elsize, (unsigned long long)sv.n,
                     (unsigned)sv.hdr, size);
  mp_value *v = (mp_value *)h;
  v->data = p + sv.hdr;
  v->tc = (char)sv.typecode;
  v->kind = (unsigned char)kind_of(v->tc);
  v->elsize = sv.elsize;
  v->n = (size_t)sv.n;
  return 0;
}

/* state: (location, the state of its lock or None) */
#define VALUE_TYPE                                                           \
  .size = sizeof(mp_value), .block = sizeof(struct mp__sval),                \
  .adopt = value_adopt, .sub = offsetof(mp_value, lock),                     \
  .sub_type = &mp__lock_type, .sub_optional = 1
MP__SHTYPE(mp__value_type, "mproc.Value", .kind = MP__K_VALUE, VALUE_TYPE);
MP__SHTYPE(mp__array_type, "mproc.Array", .kind = MP__K_ARRAY, VALUE_TYPE);

static int
make(mp_value **out, char tc, size_t elsize, size_t align, size_t n,
     const void *init, const mp_value_opts *opts, int is_array)
{
  if (!out)
    return MP_EINVAL;
  *out = NULL;
  if (elsize == 0 || align == 0 || align > 64 || (align & (align - 1)))
    return mp_seterr(MP_EINVAL, "bad size or alignment");
  if (n > ((size_t)1 << 40) / elsize || elsize > UINT32_MAX)
    return mp_seterr(MP_ENOMEM, "array too large");
  size_t hdr = sizeof(struct mp__sval);
  size_t a = align < 16 ? 16 : align;
  hdr = (hdr + a - 1) & ~(a - 1);
  mp_lock *lock = NULL;
  int rc;
  if (opts && opts->lock)
    lock = mp__shobj_ref(opts->lock);
  else if (!(opts && opts->raw) && (rc = mp_rlock_new(&lock)) != 0)
    return rc;
  struct mp__sval sv = {.typecode = (uint8_t)tc,
                        .elsize = (uint32_t)elsize,
                        .n = n,
                        .hdr = (uint32_t)hdr};
  rc = mp__shobj_new(is_array ? &mp__array_type : &mp__value_type,
                     &(mp__shmore){.sub = lock}, hdr + n * elsize, a, &sv,
                     sizeof sv, out);
  if (!rc && init) /* the block is this process's alone still */
    memcpy((*out)->data, init, n * elsize);
  return rc;
}

int
mp_value_new(mp_value **out, char typecode, const void *init,
             const mp_value_opts *opts)
{
  mp__errdetail_clear();
  const struct tinfo *t = tinfo_of(typecode);
  if (!t) {
    if (out)
      *out = NULL;
    return mp_seterr(MP_EINVAL, "bad typecode '%c' (must be one of "
                                "cbBhHiIlLqQfd)", typecode ? typecode : '?');
  }
  return make(out, typecode, t->size, t->size, 1, init, opts, 0);
}

int
mp_value_new_struct(mp_value **out, size_t size, size_t align,
                    const void *init, const mp_value_opts *opts)
{
  mp__errdetail_clear();
  return make(out, 0, size, align, 1, init, opts, 0);
}

int
mp_array_new(mp_array **out, char typecode, size_t n, const void *init,
             const mp_value_opts *opts)
{
  mp__errdetail_clear();
  const struct tinfo *t = tinfo_of(typecode);
  if (!t) {
    if (out)
      *out = NULL;
    return mp_seterr(MP_EINVAL, "bad typecode '%c' (must be one of "
                                "cbBhHiIlLqQfd)", typecode ? typecode : '?');
  }
  return make((mp_value **)out, typecode, t->size, t->size, n, init, opts,
              1);
}

int
mp_array_new_struct(mp_array **out, size_t elsize, size_t align, size_t n,
                    const void *init, const mp_value_opts *opts)
{
  mp__errdetail_clear();
  return make((mp_value **)out, 0, elsize, align, n, init, opts, 1);
}

/* ---- introspection ------------------------------------------------------ */

char
mp_value_typecode(const mp_value *v)
{
  return v ? v->tc : 0;
}

size_t
mp_value_size(const mp_value *v)
{
  return v ? v->elsize : 0;
}

void *
mp_value_ptr(mp_value *v)
{
  return v ? v->data : NULL;
}

mp_lock *
mp_value_get_lock(mp_value *v)
{
  return v ? v->lock : NULL;
}

char
mp_array_typecode(const mp_array *a)
{
  return mp_value_typecode((const mp_value *)a);
}

size_t
mp_array_len(const mp_array *a)
{
  return a ? ((const mp_value *)a)->n : 0;
}

size_t
mp_array_elsize(const mp_array *a)
{
  return mp_value_size((const mp_value *)a);
}

void *
mp_array_ptr(mp_array *a)
{
  return mp_value_ptr((mp_value *)a);
}

mp_lock *
mp_array_get_lock(mp_array *a)
{
  return mp_value_get_lock((mp_value *)a);
}

/* ---- element access ------------------------------------------------------ */

static int
lk(mp_value *v)
{
  if (!v->lock)
    return 0;
  int rc = mp_lock_acquire(v->lock, MP_FOREVER);
  return rc == MP_EOWNERDEAD ? 1 : rc;
}

static int
unlk(mp_value *v, int dead, int rc)
{
  if (v->lock)
    mp_lock_release(v->lock);
  return rc ? rc : dead ? MP_EOWNERDEAD : 0;
}

static int
index_of(mp_value *v, int64_t i, size_t *out)
{
  int64_t n = (int64_t)v->n;
  if (i < 0)
    i += n;
  if (i < 0 || i >= n)
    return mp_seterr(MP_EINDEX, "index out of range");
  *out = (size_t)i;
  return 0;
}

/* Load element p of an integer kind as 128-bit-ish pair. */
static void
load_int(char tc, const uint8_t *p, int64_t *s, uint64_t *u, int *neg)
{
  *neg = 0;
  switch (tc) {
  case 'c': *u = *(const unsigned char *)p; break;
  case 'b': *s = *(const signed char *)p; goto sgn;
  case 'B': *u = *(const unsigned char *)p; break;
  case 'h': *s = *(const short *)p; goto sgn;
  case 'H': *u = *(const unsigned short *)p; break;
  case 'i': *s = *(const int *)p; goto sgn;
  case 'I': *u = *(const unsigned int *)p; break;
  case 'l': *s = *(const long *)p; goto sgn;
  case 'L': *u = *(const unsigned long *)p; break;
  case 'q': *s = *(const long long *)p; goto sgn;
  case 'Q': *u = *(const unsigned long long *)p; break;
  }
  *s = (int64_t)*u;
  return;
sgn:
  *neg = *s < 0;
  *u = (uint64_t)*s;
}

/* Store (neg ? s : u) into an integer element: MP_EOVERFLOW if it does not
 * fit. */
static int
store_int(char tc, uint8_t *p, int neg, int64_t s, uint64_t u)
{
#define SIGNED_CASE(T, MIN, MAX)                                             \
  if (neg ? s < (MIN) : u > (uint64_t)(MAX))                                 \
    goto ovf;                                                                \
  *(T *)p = neg ? (T)s : (T)u;                                               \
  return 0;
#define UNSIGNED_CASE(T, MAX)                                                \
  if (neg || u > (MAX))                                                      \
    goto ovf;                                                                \
  *(T *)p = (T)u;                                                            \
  return 0;
  switch (tc) {
  case 'c': UNSIGNED_CASE(unsigned char, UCHAR_MAX)
  case 'b': SIGNED_CASE(signed char, SCHAR_MIN, SCHAR_MAX)
  case 'B': UNSIGNED_CASE(unsigned char, UCHAR_MAX)
  case 'h': SIGNED_CASE(short, SHRT_MIN, SHRT_MAX)
  case 'H': UNSIGNED_CASE(unsigned short, USHRT_MAX)
  case 'i': SIGNED_CASE(int, INT_MIN, INT_MAX)
  case 'I': UNSIGNED_CASE(unsigned int, UINT_MAX)
  case 'l': SIGNED_CASE(long, LONG_MIN, LONG_MAX)
  case 'L': UNSIGNED_CASE(unsigned long, ULONG_MAX)
  case 'q': SIGNED_CASE(long long, LLONG_MIN, LLONG_MAX)
  case 'Q': UNSIGNED_CASE(unsigned long long, ULLONG_MAX)
  }
#undef SIGNED_CASE
#undef UNSIGNED_CASE
ovf:
  return mp_seterr(MP_EOVERFLOW, "integer out of range for typecode '%c'",
                   tc);
}

static int
is_int_kind(const mp_value *v)
{
  return v->kind == K_SIGNED || v->kind == K_UNSIGNED || v->kind == K_CHAR;
}

static int
get_int_at(mp_value *v, size_t i, int64_t *out, uint64_t *uout)
{
  if (!is_int_kind(v))
    return mp_seterr(MP_ETYPE, "not an integer type");
  int dead = lk(v);
  if (dead < 0)
    return dead;
  int64_t s;
  uint64_t u;
  int neg, rc = 0;
  load_int(v->tc, v->data + i * v->elsize, &s, &u, &neg);
  if (out) {
    if (!neg && u > INT64_MAX)
      rc = mp_seterr(MP_EOVERFLOW, "value above INT64_MAX: use _get_uint");
    else
      *out = neg ? s : (int64_t)u;
  } else {
    if (neg)
      rc = mp_seterr(MP_EOVERFLOW, "negative value: use _get_int");
    else
      *uout = u;
  }
  return unlk(v, dead, rc);
}

static int
set_int_at(mp_value *v, size_t i, int neg, int64_t s, uint64_t u)
{
  if (!is_int_kind(v))
    return mp_seterr(MP_ETYPE, "not an integer type");
  int dead = lk(v);
  if (dead < 0)
    return dead;
  int rc = store_int(v->tc, v->data + i * v->elsize, neg, s, u);
  return unlk(v, dead, rc);
}

static int
get_double_at(mp_value *v, size_t i, double *out)
{
  if (v->kind != K_FLOAT)
    return mp_seterr(MP_ETYPE, "not a float type");
  int dead = lk(v);
  if (dead < 0)
    return dead;
  uint8_t *p = v->data + i * v->elsize;
  *out = v->tc == 'f' ? (double)*(float *)p : *(double *)p;
  return unlk(v, dead, 0);
}

static int
set_double_at(mp_value *v, size_t i, double x)
{
  if (v->kind != K_FLOAT)
    return mp_seterr(MP_ETYPE, "not a float type");
  if (v->tc == 'f' && isfinite(x) && isinf((float)x))
    return mp_seterr(MP_EOVERFLOW, "float too large for 'f'");
  int dead = lk(v);
  if (dead < 0)
    return dead;
  uint8_t *p = v->data + i * v->elsize;
  if (v->tc == 'f')
    *(float *)p = (float)x;
  else
    *(double *)p = x;
  return unlk(v, dead, 0);
}

int
mp_value_get_int(mp_value *v, int64_t *out)
{
  mp__errdetail_clear();
  return v && out ? get_int_at(v, 0, out, NULL) : MP_EINVAL;
}

int
mp_value_set_int(mp_value *v, int64_t x)
{
  mp__errdetail_clear();
  return v ? set_int_at(v, 0, x < 0, x, (uint64_t)x) : MP_EINVAL;
}

int
mp_value_get_uint(mp_value *v, uint64_t *out)
{
  mp__errdetail_clear();
  return v && out ? get_int_at(v, 0, NULL, out) : MP_EINVAL;
}

int
mp_value_set_uint(mp_value *v, uint64_t x)
{
  mp__errdetail_clear();
  return v ? set_int_at(v, 0, 0, 0, x) : MP_EINVAL;
}

int
mp_value_get_double(mp_value *v, double *out)
{
  mp__errdetail_clear();
  return v && out ? get_double_at(v, 0, out) : MP_EINVAL;
}

int
mp_value_set_double(mp_value *v, double x)
{
  mp__errdetail_clear();
  return v ? set_double_at(v, 0, x) : MP_EINVAL;
}

int
mp_value_read(mp_value *v, void *dst)
{
  mp__errdetail_clear();
  if (!v || !dst)
    return MP_EINVAL;
  int dead = lk(v);
  if (dead < 0)
    return dead;
  memcpy(dst, v->data, v->elsize * v->n);
  return unlk(v, dead, 0);
}

int
mp_value_write(mp_value *v, const void *src)
{
  mp__errdetail_clear();
  if (!v || !src)
    return MP_EINVAL;
  int dead = lk(v);
  if (dead < 0)
    return dead;
  memcpy(v->data, src, v->elsize * v->n);
  return unlk(v, dead, 0);
}

#define ARR(a) ((mp_value *)(a))

int
mp_array_get_int(mp_array *a, int64_t i, int64_t *out)
{
  mp__errdetail_clear();
  size_t k = 0;
  int rc = !a || !out ? MP_EINVAL : index_of(ARR(a), i, &k);
  return rc ? rc : get_int_at(ARR(a), k, out, NULL);
}

int
mp_array_set_int(mp_array *a, int64_t i, int64_t x)
{
  mp__errdetail_clear();
  size_t k = 0;
  int rc = !a ? MP_EINVAL : index_of(ARR(a), i, &k);
  return rc ? rc : set_int_at(ARR(a), k, x < 0, x, (uint64_t)x);
}

int
mp_array_get_uint(mp_array *a, int64_t i, uint64_t *out)
{
  mp__errdetail_clear();
  size_t k = 0;
  int rc = !a || !out ? MP_EINVAL : index_of(ARR(a), i, &k);
  return rc ? rc : get_int_at(ARR(a), k, NULL, out);
}

int
mp_array_set_uint(mp_array *a, int64_t i, uint64_t x)
{
  mp__errdetail_clear();
  size_t k = 0;
  int rc = !a ? MP_EINVAL : index_of(ARR(a), i, &k);
  return rc ? rc : set_int_at(ARR(a), k, 0, 0, x);
}

int
mp_array_get_double(mp_array *a, int64_t i, double *out)
{
  mp__errdetail_clear();
  size_t k = 0;
  int rc = !a || !out ? MP_EINVAL : index_of(ARR(a), i, &k);
  return rc ? rc : get_double_at(ARR(a), k, out);
}

int
mp_array_set_double(mp_array *a, int64_t i, double x)
{
  mp__errdetail_clear();
  size_t k = 0;
  int rc = !a ? MP_EINVAL : index_of(ARR(a), i, &k);
  return rc ? rc : set_double_at(ARR(a), k, x);
}

int
mp_array_read(mp_array *a, size_t start, size_t count, void *dst)
{
  mp__errdetail_clear();
  mp_value *v = ARR(a);
  if (!v || (!dst && count))
    return MP_EINVAL;
  if (start > v->n || count > v->n - start)
    return mp_seterr(MP_EINDEX, "slice out of range");
  int dead = lk(v);
  if (dead < 0)
    return dead;
  memcpy(dst, v->data + start * v->elsize, count * v->elsize);
  return unlk(v, dead, 0);
}

int
mp_array_write(mp_array *a, size_t start, size_t count, const void *src)
{
  mp__errdetail_clear();
  mp_value *v = ARR(a);
  if (!v || (!src && count))
    return MP_EINVAL;
  if (start > v->n || count > v->n - start)
    return mp_seterr(MP_EINDEX, "slice out of range");
  int dead = lk(v);
  if (dead < 0)
    return dead;
  memmove(v->data + start * v->elsize, src, count * v->elsize);
  return unlk(v, dead, 0);
}

int64_t
mp_array_get_bytes(mp_array *a, char *buf, size_t cap)
{
  mp__errdetail_clear();
  mp_value *v = ARR(a);
  if (!v || (!buf && cap))
    return MP_EINVAL;
  if (v->tc != 'c')
    return mp_seterr(MP_ETYPE, ".value needs a 'c' array");
  int dead = lk(v);
  if (dead < 0)
    return dead;
  size_t len = strnlen((const char *)v->data, v->n);
  if (cap) {
    size_t k = len < cap - 1 ? len : cap - 1;
    memcpy(buf, v->data, k);
    buf[k] = '\0';
  }
  /* the result is the length: a dead previous owner of the lock (the copy
   * was made all the same) cannot be told as well */
  unlk(v, dead, 0);
  return (int64_t)len;
}

int
mp_array_set_bytes(mp_array *a, const void *data, size_t len)
{
  mp__errdetail_clear();
  mp_value *v = ARR(a);
  if (!v || (!data && len))
    return MP_EINVAL;
  if (v->tc != 'c')
    return mp_seterr(MP_ETYPE, ".value needs a 'c' array");
  if (len > v->n)
    return mp_seterr(MP_EOVERFLOW, "byte string too long");
  int dead = lk(v);
  if (dead < 0)
    return dead;
  memcpy(v->data, data, len);
  if (len < v->n)
    v->data[len] = '\0';
  return unlk(v, dead, 0);
}

/* ---- as values ------------------------------------------------------------ */

static mp_obj *
elem_obj(mp_value *v, const uint8_t *p)
{
  switch (v->kind) {
  case K_FLOAT:
    return mp_float_new(v->tc == 'f' ? (double)*(const float *)p
                                     : *(const double *)p);
  case K_CHAR:
    return mp_bytes_new(p, 1);
  case K_STRUCT:
    return mp_bytes_new(p, v->elsize);
  default: {
    int64_t s;
    uint64_t u;
    int neg;
    load_int(v->tc, p, &s, &u, &neg);
    return neg ? mp_int_new(s) : mp_uint_new(u);
  }
  }
}

mp_obj *
mp_value_to_obj(mp_value *v)
{
  if (!v)
    return NULL;
  int dead = lk(v);
  if (dead < 0)
    return NULL;
  mp_obj *o = elem_obj(v, v->data);
  unlk(v, dead, 0);
  return o;
}

mp_obj *
mp_array_to_obj(mp_array *a)
{
  mp_value *v = ARR(a);
  if (!v)
    return NULL;
  int dead = lk(v);
  if (dead < 0)
    return NULL;
  mp_obj *o;
  if (v->tc == 'c') {
    o = mp_bytes_new(v->data, v->n);
  } else {
    o = mp_list_new();
    for (size_t i = 0; o && i < v->n; i++)
      if (mp_list_append_take(o, elem_obj(v, v->data + i * v->elsize))) {
        mp_obj_free(o);
        o = NULL;
      }
  }
  unlk(v, dead, 0);
  return o;
}
