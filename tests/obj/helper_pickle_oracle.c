/* SPDX-License-Identifier: MIT */
/* Stream helper for tests/obj/test_pickle_oracle.py: one process serves
 * thousands of values.  All lengths are u32 little-endian.
 *
 *   helper_pickle_oracle decode
 *     in:  repeated [len][pickle]
 *     out: per pickle, [status u8] then
 *          status 0: [len][repr] [len][canonical repr] and 5 re-encodings
 *                    [len][pickle] at protocols default, 2, 3, 4, 5
 *          status 1: [len][error text]
 *   helper_pickle_oracle generate SEED COUNT
 *     out: COUNT times: [len][repr] [len][canonical repr] and the same 5
 *          encodings of a random value built in C.
 *
 * The canonical repr is the repr with the members of every set and
 * frozenset sorted by their own canonical repr, so that it can be compared
 * with Python's (whose set order follows its salted hashing). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

static void
put_bytes(const void *p, size_t n)
{
  unsigned char h[4] = {(unsigned char)n, (unsigned char)(n >> 8),
                        (unsigned char)(n >> 16), (unsigned char)(n >> 24)};
  fwrite(h, 1, 4, stdout);
  fwrite(p, 1, n, stdout);
}

/* ---- canonical repr ---------------------------------------------------- */

typedef struct sbuf {
  char *p;
  size_t n, cap;
} sbuf;

static void
sb_add(sbuf *b, const char *s, size_t n)
{
  if (b->n + n + 1 > b->cap) {
    b->cap = (b->n + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    if (!b->p)
      abort();
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void
sb_puts(sbuf *b, const char *s)
{
  sb_add(b, s, strlen(s));
}

static int
cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int canon(const mp_obj *o, sbuf *b);

static int
canon_items(mp_obj *const *items, size_t n, sbuf *b)
{
  for (size_t i = 0; i < n; i++) {
    if (i)
      sb_puts(b, ", ");
    if (canon(items[i], b))
      return -1;
  }
  return 0;
}

static int
canon(const mp_obj *o, sbuf *b)
{
  mp_obj *const *items;
  size_t n;
  switch (mp_obj_type(o)) {
  case MP_T_TUPLE:
    mp_seq_items(o, &items, &n);
    sb_puts(b, "(");
    if (canon_items(items, n, b))
      return -1;
    sb_puts(b, n == 1 ? ",)" : ")");
    return 0;
  case MP_T_LIST:
    mp_seq_items(o, &items, &n);
    sb_puts(b, "[");
    if (canon_items(items, n, b))
      return -1;
    sb_puts(b, "]");
    return 0;
  case MP_T_DICT: {
    size_t pos = 0;
    mp_obj *k, *v;
    int first = 1;
    sb_puts(b, "{");
    while (mp_dict_next(o, &pos, &k, &v)) {
      if (!first)
        sb_puts(b, ", ");
      first = 0;
      if (canon(k, b))
        return -1;
      sb_puts(b, ": ");
      if (canon(v, b))
        return -1;
    }
    sb_puts(b, "}");
    return 0;
  }
  case MP_T_SET:
  case MP_T_FROZENSET: {
    int frozen = mp_obj_type(o) == MP_T_FROZENSET;
    mp_obj_len(o, &n);
    if (n == 0) {
      sb_puts(b, frozen ? "frozenset()" : "set()");
      return 0;
    }
    char **parts = calloc(n, sizeof *parts);
    size_t pos = 0, i = 0;
    mp_obj *x;
    while (mp_set_next(o, &pos, &x)) {
      sbuf e = {0};
      if (canon(x, &e))
        return -1;
      parts[i++] = e.p;
    }
    qsort(parts, n, sizeof *parts, cmp_str);
    sb_puts(b, frozen ? "frozenset({" : "{");
    for (i = 0; i < n; i++) {
      if (i)
        sb_puts(b, ", ");
      sb_puts(b, parts[i]);
      free(parts[i]);
    }
    free(parts);
    sb_puts(b, frozen ? "})" : "}");
    return 0;
  }
  default: {
    char *r = mp_obj_repr(o);
    if (!r)
      return -1;
    sb_puts(b, r);
    mp_free(r);
    return 0;
  }
  }
}

static int
emit(const mp_obj *v)
{
  char *r = mp_obj_repr(v);
  sbuf c = {0};
  if (!r || canon(v, &c)) {
    mp_free(r);
    free(c.p);
    return -1;
  }
  put_bytes(r, strlen(r));
  put_bytes(c.p, c.n);
  mp_free(r);
  free(c.p);
  static const int protos[] = {0, 2, 3, 4, 5};
  for (int i = 0; i < 5; i++) {
    void *p;
    size_t n;
    int rc = mp_pickle_dumps(v, &(mp_pickle_opts){.protocol = protos[i]}, &p,
                             &n);
    if (rc) {
      fprintf(stderr, "dumps at %d: %s: %s\n", protos[i], mp_err_name(rc),
              mp_errdetail());
      return -1;
    }
    put_bytes(p, n);
    mp_free(p);
  }
  return 0;
}

static int
decode_loop(void)
{
  unsigned char h[4];
  while (fread(h, 1, 4, stdin) == 4) {
    size_t n = h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 |
               (size_t)h[3] << 24;
    unsigned char *p = malloc(n ? n : 1);
    if (!p || fread(p, 1, n, stdin) != n)
      return 1;
    mp_obj *v;
    int rc = mp_pickle_loads(p, n, NULL, &v);
    free(p);
    if (rc) {
      char msg[600];
      snprintf(msg, sizeof msg, "%s: %s", mp_err_name(rc), mp_errdetail());
      fputc(1, stdout);
      put_bytes(msg, strlen(msg));
    } else {
      fputc(0, stdout);
      if (emit(v))
        return 1;
      mp_obj_free(v);
    }
    fflush(stdout);
  }
  return 0;
}

/* ---- random values in C ------------------------------------------------- */

static uint64_t rng;

static uint64_t
rnd(void)
{
  /* splitmix64 */
  uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static unsigned
rn(unsigned n)
{
  return (unsigned)(rnd() % n);
}

/* code points whose printability has been stable across Unicode versions */
static uint32_t
rand_cp(void)
{
  static const uint32_t ranges[][2] = {
      {0x20, 0x7e},     {0x0, 0x1f},       {0x7f, 0xa0},     {0xa1, 0xff},
      {0x391, 0x3a1},   {0x410, 0x44f},    {0x4e00, 0x4fff}, {0x2028, 0x2029},
      {0x200b, 0x200f}, {0xd800, 0xdfff},  {0xe000, 0xe0ff}, {0x1f600, 0x1f64f},
      {0x1d400, 0x1d454}, {0xfeff, 0xfeff}, {0x10fffe, 0x10ffff},
      {0xe0001, 0xe0001}, {0x3000, 0x3000}, {0x20ac, 0x20ac}};
  unsigned k = rn(sizeof ranges / sizeof ranges[0]);
  if (rn(2))
    k = 0; /* mostly ASCII */
  return ranges[k][0] + rn(ranges[k][1] - ranges[k][0] + 1);
}

static size_t
utf8_put(uint32_t cp, char *o)
{
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xc0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

static mp_obj *
rand_str(void)
{
  char buf[4 * 300];
  size_t n = 0, len = rn(4) ? rn(12) : rn(300);
  for (size_t i = 0; i < len; i++) {
    uint32_t cp = rand_cp();
    n += utf8_put(cp, buf + n);
  }
  return mp_str_new_len(buf, n);
}

static mp_obj *
rand_int(void)
{
  static const int64_t edges[] = {0,        1,         -1,       255,
                                  256,      65535,     65536,    -5,
                                  1024,     1025,      -6,       2147483647,
                                  -2147483648LL, 2147483648LL, INT64_MAX,
                                  INT64_MIN, INT64_MIN + 1};
  switch (rn(4)) {
  case 0:
    return mp_int_new(edges[rn(sizeof edges / sizeof edges[0])]);
  case 1:
    return mp_int_new((int64_t)rnd() >> rn(64));
  case 2: {
    uint8_t b[40];
    size_t n = 1 + rn(sizeof b);
    for (size_t i = 0; i < n; i++)
      b[i] = (uint8_t)rnd();
    return mp_int_from_bytes(b, n);
  }
  default:
    return rn(2) ? mp_uint_new(rnd()) : mp_int_new((int64_t)rn(2000) - 500);
  }
}

static mp_obj *
rand_float(void)
{
  static const double edges[] = {0.0,   -0.0,  1.0,     -1.5,  0.1,  1e16,
                                 1e15,  1e-5,  1e-4,    1e308, 5e-324, 2.5e-310,
                                 1e22,  1e300 * 1e10,   -1e300 * 1e10,
                                 123456789.125, 9007199254740993.0};
  if (rn(8) == 0)
    return mp_float_new(__builtin_nan(""));
  if (rn(2)) {
    uint64_t bits = rnd();
    double d;
    memcpy(&d, &bits, 8);
    if (d != d)
      d = 0.5;
    return mp_float_new(d);
  }
  return mp_float_new(edges[rn(sizeof edges / sizeof edges[0])]);
}

static mp_obj *rand_value(int depth);

static mp_obj *
rand_hashable(int depth)
{
  switch (rn(depth > 2 ? 5 : 7)) {
  case 0:
    return rand_int();
  case 1:
    return rand_float();
  case 2:
    return rand_str();
  case 3: {
    char b[8];
    for (int i = 0; i < 8; i++)
      b[i] = (char)rnd();
    return mp_bytes_new(b, rn(9));
  }
  case 4:
    return rn(3) ? mp_bool_new((int)rn(2)) : mp_none();
  case 5: {
    size_t n = rn(4);
    mp_obj *items[4] = {0};
    for (size_t i = 0; i < n; i++)
      items[i] = rand_hashable(depth + 1);
    mp_obj *t = mp_tuple_from(n, items);
    for (size_t i = 0; i < n; i++)
      mp_obj_free(items[i]);
    return t;
  }
  default: {
    mp_obj *s = mp_frozenset_new();
    for (unsigned i = rn(4); i > 0; i--)
      mp_set_add_take(s, rand_hashable(depth + 1));
    return s;
  }
  }
}

static mp_obj *
rand_record(void)
{
  static const char *const exc[] = {"KeyError", "ValueError", "RuntimeError",
                                    "IndexError"};
  static const char *const cls[] = {"float", "int", "str", "KeyError", "dict"};
  if (rn(2))
    return mp_global_new("builtins", cls[rn(5)]);
  return mp_record_take(MP_RECORD_REDUCE, mp_global_new("builtins", exc[rn(4)]),
                        rn(3) ? MP_TUPLE(rand_str()) : mp_tuple_take(0));
}

static mp_obj *
rand_value(int depth)
{
  unsigned k = rn(depth > 3 ? 6 : 13);
  switch (k) {
  case 0:
  case 1:
  case 2:
  case 3:
  case 4:
    return rand_hashable(depth);
  case 5: {
    char b[3000];
    size_t n = rn(10) ? rn(20) : rn(sizeof b);
    for (size_t i = 0; i < n; i++)
      b[i] = (char)rnd();
    return rn(4) ? mp_bytes_new(b, n) : mp_bytearray_new(b, n);
  }
  case 6:
  case 7: {
    mp_obj *l = mp_list_new();
    /* big ones (batches of 1000) only at the top, of scalars */
    int big = depth == 0 && rn(20) == 0;
    size_t n = big ? rn(2500) : rn(6);
    for (size_t i = 0; i < n; i++)
      mp_list_append_take(l, big ? rand_hashable(3) : rand_value(depth + 1));
    return l;
  }
  case 8: {
    size_t n = rn(5);
    mp_obj *items[5] = {0};
    for (size_t i = 0; i < n; i++)
      items[i] = rand_value(depth + 1);
    mp_obj *t = mp_tuple_from(n, items);
    for (size_t i = 0; i < n; i++)
      mp_obj_free(items[i]);
    return t;
  }
  case 9:
  case 10: {
    mp_obj *d = mp_dict_new();
    int big = depth == 0 && rn(20) == 0;
    size_t n = big ? rn(2500) : rn(6);
    for (size_t i = 0; i < n; i++)
      mp_dict_set_take(d, rand_hashable(depth + 1),
                       big ? rand_hashable(3) : rand_value(depth + 1));
    return d;
  }
  case 11: {
    mp_obj *s = rn(3) ? mp_set_new() : mp_frozenset_new();
    size_t n = depth == 0 && rn(20) == 0 ? rn(2500) : rn(6);
    for (size_t i = 0; i < n; i++)
      mp_set_add_take(s, rand_hashable(depth + 1));
    return s;
  }
  default:
    return rand_record();
  }
}

static int
generate(uint64_t seed, long count)
{
  rng = seed;
  mp_obj *shared = NULL;
  for (long i = 0; i < count; i++) {
    mp_obj *v = rand_value(0);
    if (!v) {
      fprintf(stderr, "building a value failed: %s\n", mp_errdetail());
      return 1;
    }
    /* now and then, a value that holds the same sub-value twice (only
     * fresh values are kept for sharing, so nothing compounds) */
    mp_obj *fresh = v;
    if (shared && rn(4) == 0)
      v = MP_LIST(mp_obj_ref(fresh), mp_obj_ref(shared), mp_obj_ref(shared));
    if (rn(3) == 0) {
      mp_obj_free(shared);
      shared = mp_obj_ref(fresh);
    }
    if (v != fresh)
      mp_obj_free(fresh);
    if (emit(v)) {
      fprintf(stderr, "value %ld: %s\n", i, mp_errdetail());
      return 1;
    }
    mp_obj_free(v);
  }
  mp_obj_free(shared);
  fflush(stdout);
  return 0;
}

int
main(int argc, char **argv)
{
  if (argc == 2 && strcmp(argv[1], "decode") == 0)
    return decode_loop();
  if (argc == 4 && strcmp(argv[1], "generate") == 0)
    return generate(strtoull(argv[2], NULL, 0), atol(argv[3]));
  fprintf(stderr, "usage: %s decode | generate SEED COUNT\n", argv[0]);
  return 2;
}
