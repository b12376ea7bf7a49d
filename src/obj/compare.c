/* SPDX-License-Identifier: MIT */
/* Equality (Python ==) and hashing, side by side: values that compare
 * equal hash equal.
 *
 * Hashes are keyed per process (16 bytes from mp__plat_random at load time):
 * str/bytes and big ints go through SipHash-1-3, int64 values through a
 * keyed bijective mixer, so an attacker who does not know the key cannot
 * choose keys that collide.  Numbers that compare equal hash equal whatever
 * their type (1 == 1.0 == True, 2**70 == 2.0**70), as in Python. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "obj/obj_internal.h"
#include "platform/platform.h"

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

/* ---- hashing -------------------------------------------------------------- */

static uint64_t key0, key1;

__attribute__((constructor)) static void
hash_key_init(void)
{
  uint64_t k[2];
  if (mp__plat_random(k, sizeof k)) {
    /* No entropy source: still per process, just not secret. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    k[1] = (uint64_t)ts.tv_sec * 0xc2b2ae3d27d4eb4full ^ (uint64_t)(uintptr_t)&k;
  }
  key0 = k[0];
  key1 = k[1];
}

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                              \
  do {                                                                        \
    v0 += v1;                                                                 \
    v1 = ROTL(v1, 13);                                                        \
    v1 ^= v0;                                                                 \
    v0 = ROTL(v0, 32);                                                        \
    v2 += v3;                                                                 \
    v3 = ROTL(v3, 16);                                                        \
    v3 ^= v2;                                                                 \
    v0 += v3;                                                                 \
    v3 = ROTL(v3, 21);                                                        \
    v3 ^= v0;                                                                 \
    v2 += v1;                                                                 \
    v1 = ROTL(v1, 17);                                                        \
    v1 ^= v2;                                                                 \
    v2 = ROTL(v2, 32);                                                        \
  } while (0)

/* SipHash-1-3 keyed with the process key; `tag` separates the domains. */
uint64_t
mp__siphash(const void *data, size_t len, uint64_t tag)
{
  const uint8_t *p = data;
  uint64_t k0 = key0, k1 = key1 ^ tag;
  uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
  size_t left = len;
  while (left >= 8) {
    uint64_t m;
    memcpy(&m, p, 8); /* little-endian hosts; the value is process-local */
    v3 ^= m;
    SIPROUND;
    v0 ^= m;
    p += 8;
    left -= 8;
  }
  uint64_t b = (uint64_t)len << 56;
  switch (left) {
  case 7: b |= (uint64_t)p[6] << 48; /* fall through */
  case 6: b |= (uint64_t)p[5] << 40; /* fall through */
  case 5: b |= (uint64_t)p[4] << 32; /* fall through */
  case 4: b |= (uint64_t)p[3] << 24; /* fall through */
  case 3: b |= (uint64_t)p[2] << 16; /* fall through */
  case 2: b |= (uint64_t)p[1] << 8;  /* fall through */
  case 1: b |= (uint64_t)p[0]; break;
  default: break;
  }
  v3 ^= b;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t
mp__hash_i64(int64_t v)
{
  /* keyed, bijective: distinct ints never collide fully */
  uint64_t x = (uint64_t)v ^ key0;
  x ^= x >> 32;
  x *= 0xd6e8feb86659fd93ull;
  x ^= x >> 32;
  x *= 0xd6e8feb86659fd93ull;
  x ^= x >> 32;
  return x ^ key1;
}

static uint64_t
mix_ptr(const void *p)
{
  return mp__hash_i64((int64_t)(uintptr_t)p ^ 0x5bd1e995);
}

static uint64_t
cached(uint64_t *slot, const void *d, size_t n, uint64_t tag)
{
  uint64_t h = __atomic_load_n(slot, __ATOMIC_RELAXED);
  if (h)
    return h;
  h = mp__siphash(d, n, tag);
  if (!h)
    h = 1;
  __atomic_store_n(slot, h, __ATOMIC_RELAXED);
  return h;
}

static uint64_t
hash_double(double d)
{
  int64_t i;
  if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
      mp__dbl_is_int(d)) {
    i = (int64_t)d;
    return mp__hash_i64(i);
  }
  if (mp__dbl_is_int(d)) {
    uint8_t buf[160];
    size_t n = mp__double_to_le(d, buf);
    return mp__siphash(buf, n, MP__HASH_INT);
  }
  uint64_t bits;
  memcpy(&bits, &d, 8);
  return mp__hash_i64((int64_t)(bits ^ 0x2545f4914f6cdd1dull)) ^ 0x9e37;
}

static uint64_t
combine(uint64_t acc, uint64_t h)
{
  acc += h * 0xc2b2ae3d27d4eb4full;
  acc = ROTL(acc, 31);
  acc *= 0x9e3779b185ebca87ull;
  return acc;
}

int
mp__hash(const mp_obj *o, uint64_t *out, int depth)
{
  if (depth > MP__MAX_RECURSION)
    return mp_seterr(MP_ELIMIT, "value nested too deeply to hash");
  switch (MP__T(o)) {
  case MP_T_NONE:
    *out = mp__hash_i64(0x4e6f6e65);
    return 0;
  case MP_T_BOOL:
    *out = mp__hash_i64(o == &mp__true_obj);
    return 0;
  case MP_T_INT:
    if (o->flags & MP__F_BIG) {
      const mp__bigint *b = MP__AS(const mp__bigint, o);
      *out = mp__siphash(b->le, b->n, MP__HASH_INT);
    } else {
      *out = mp__hash_i64(MP__AS(const mp__int, o)->v);
    }
    return 0;
  case MP_T_FLOAT: {
    double d = MP__AS(const mp__float, o)->v;
    /* nan equals nothing but itself (by identity): hash by address */
    *out = isnan(d) ? mix_ptr(o) : hash_double(d);
    return 0;
  }
  case MP_T_STR: {
    mp__str *s = MP__AS(mp__str, (mp_obj *)o);
    *out = cached(&s->hash, s->s, s->len, MP__HASH_STR);
    return 0;
  }
  case MP_T_BYTES: {
    mp__bytes *b = MP__AS(mp__bytes, (mp_obj *)o);
    *out = cached(&b->hash, b->d, b->len, MP__HASH_BYTES);
    return 0;
  }
  case MP_T_TUPLE: {
    const mp__tuple *t = MP__AS(const mp__tuple, o);
    uint64_t acc = 0x27d4eb2f165667c5ull;
    for (size_t i = 0; i < t->n; i++) {
      uint64_t h;
      int rc = mp__hash(t->items[i], &h, depth + 1);
      if (rc)
        return rc;
      acc = combine(acc, h);
    }
    *out = acc + (t->n ^ 0x27d4eb2f165667c5ull);
    return 0;
  }
  case MP_T_FROZENSET: {
    /* order-independent: a sum of remixed member hashes */
    const mp__table *t = &MP__AS(const mp__dict, o)->t;
    uint64_t acc = 0;
    for (size_t i = 0; i < t->n; i++)
      if (t->e[i].key)
        acc += mp__hash_i64((int64_t)t->e[i].hash);
    *out = mp__hash_i64((int64_t)(acc ^ (t->used * 0x9e3779b97f4a7c15ull)));
    return 0;
  }
  case MP_T_RECORD: {
    const mp__record *r = MP__AS(const mp__record, o);
    if (r->kind == MP_RECORD_GLOBAL) {
      *out = mp__siphash(r->module, strlen(r->module), MP__HASH_GLOBAL) ^
             ROTL(mp__siphash(r->name, strlen(r->name), MP__HASH_GLOBAL), 17);
      return 0;
    }
    /* an object: equal only to itself (Python's default __hash__), so
     * every record is its own key whatever its content */
    *out = mix_ptr(o) ^ MP__HASH_GLOBAL;
    return 0;
  }
  case MP_T_HANDLE:
    *out = mix_ptr(MP__AS(const mp__handle, o)->ptr) ^
           ROTL(mix_ptr(MP__AS(const mp__handle, o)->type), 7);
    return 0;
  case MP_T_FUNC:
    *out = ROTL(mix_ptr((const void *)mp_func_get(o)), 11);
    return 0;
  default:
    return mp_seterr(MP_EUNHASHABLE, "unhashable type: '%s'",
                     mp_type_name(MP__T(o)));
  }
}

int
mp_obj_hash(const mp_obj *o, uint64_t *out)
{
  mp__errdetail_clear();
  if (!o || !out)
    return mp_seterr(MP_EINVAL, "NULL argument");
  return mp__hash(o, out, 0);
}
