/* SPDX-License-Identifier: MIT */
/* The seeds' "customized managers and proxies" example, with C types
 * registered on a BaseManager (mp_manager_register):
 *
 *   MyManager.register('Foo1', Foo)                          # f, g
 *   MyManager.register('Foo2', Foo, exposed=('g', '_h'))
 *   MyManager.register('baz', baz, proxytype=GeneratorProxy) # a generator
 *   MyManager.register('operator', get_operator_module)
 *
 * The Foo methods print in the server process, as in Python.  `baz` is a
 * generator object on the server whose __next__ ends with StopIteration
 * (MP_EEOF); `operator` exposes the operator module's public names
 * (add and pow work on ints of any size; a few others are implemented).
 * Usage: manager_custom [METHOD]; prints what CPython prints for the seed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

/* ---- Foo ---------------------------------------------------------------- */

static int
foo_create(mp_obj *args, mp_obj *kwds, void **out)
{
  *out = malloc(1);
  return *out ? 0 : MP_ENOMEM;
}

static void
foo_destroy(void *p)
{
  free(p);
}

static int
say(const char *what)
{
  printf("you called Foo.%s()\n", what);
  fflush(stdout); /* the server's output joins the client's in order */
  return 0;
}

static int foo_f(void *o, mp_obj *a, mp_obj *k, mp_obj **r) { return say("f"); }
static int foo_g(void *o, mp_obj *a, mp_obj *k, mp_obj **r) { return say("g"); }
static int foo_h(void *o, mp_obj *a, mp_obj *k, mp_obj **r) { return say("_h"); }

static const mp_manager_method foo1_methods[] = { { "f", foo_f, NULL },
                                                  { "g", foo_g, NULL } };
static const mp_manager_method foo2_methods[] = { { "g", foo_g, NULL },
                                                  { "_h", foo_h, NULL } };
static const mp_manager_type foo1 = { .typeid = "Foo1", .create = foo_create,
                                      .destroy = foo_destroy,
                                      .methods = foo1_methods, .nmethods = 2 };
static const mp_manager_type foo2 = { .typeid = "Foo2", .create = foo_create,
                                      .destroy = foo_destroy,
                                      .methods = foo2_methods, .nmethods = 2 };

/* ---- baz: for i in range(10): yield i*i ------------------------------------ */

static int
baz_create(mp_obj *args, mp_obj *kwds, void **out)
{
  int *i = calloc(1, sizeof *i);
  *out = i;
  return i ? 0 : MP_ENOMEM;
}

static int
baz_next(void *o, mp_obj *a, mp_obj *k, mp_obj **r)
{
  int *i = o;
  if (*i >= 10)
    return MP_EEOF; /* StopIteration */
  *r = mp_int_new((int64_t)*i * *i);
  (*i)++;
  return 0;
}

static const mp_manager_method baz_methods[] = { { "__next__", baz_next, NULL } };
static const mp_manager_type baz = { .typeid = "baz", .create = baz_create,
                                     .destroy = foo_destroy,
                                     .methods = baz_methods, .nmethods = 1 };

/* ---- operator -------------------------------------------------------------- */

/* Non-negative ints as little-endian 32-bit limbs. */
typedef struct big {
  uint32_t *w;
  size_t n;
} big;

static int
big_of(const mp_obj *o, big *b)
{
  uint8_t scratch[16];
  const uint8_t *le;
  size_t n;
  if (mp_int_bytes(o, scratch, &le, &n))
    return MP_ETYPE;
  if (n && (le[n - 1] & 0x80))
    return mp_seterr(MP_ENOTSUP, "negative operands are not handled here");
  b->n = (n + 3) / 4 + 1;
  b->w = calloc(b->n, 4);
  if (!b->w)
    return MP_ENOMEM;
  for (size_t i = 0; i < n; i++)
    b->w[i / 4] |= (uint32_t)le[i] << (8 * (i % 4));
  return 0;
}

static mp_obj *
big_obj(const big *b)
{
  uint8_t *le = calloc(b->n * 4 + 1, 1);
  if (!le)
    return NULL;
  for (size_t i = 0; i < b->n * 4; i++)
    le[i] = (uint8_t)(b->w[i / 4] >> (8 * (i % 4)));
  mp_obj *o = mp_int_from_bytes(le, b->n * 4 + 1); /* a 0 top byte: >= 0 */
  free(le);
  return o;
}

static int
big_mul(const big *a, const big *b, big *out)
{
  out->n = a->n + b->n;
  out->w = calloc(out->n, 4);
  if (!out->w)
    return MP_ENOMEM;
  for (size_t i = 0; i < a->n; i++) {
    uint64_t carry = 0;
    for (size_t j = 0; j < b->n; j++) {
      uint64_t t = (uint64_t)a->w[i] * b->w[j] + out->w[i + j] + carry;
      out->w[i + j] = (uint32_t)t;
      carry = t >> 32;
    }
    for (size_t k = i + b->n; carry && k < out->n; k++) {
      uint64_t t = (uint64_t)out->w[k] + carry;
      out->w[k] = (uint32_t)t;
      carry = t >> 32;
    }
  }
  return 0;
}

static int
op_add(void *o, mp_obj *args, mp_obj *k, mp_obj **r)
{
  mp_obj *x, *y;
  int rc = mp_args_parse(args, "OO:add", &x, &y);
  if (rc)
    return rc;
  int64_t a, b, s;
  if (!mp_int_get(x, &a) && !mp_int_get(y, &b) &&
      !__builtin_add_overflow(a, b, &s)) {
    *r = mp_int_new(s);
    return 0;
  }
  double fa, fb;
  if (mp_float_get(x, &fa) || mp_float_get(y, &fb))
    return mp_seterr(MP_ETYPE, "unsupported operand types for +");
  *r = mp_float_new(fa + fb);
  return 0;
}

static int
op_pow(void *o, mp_obj *args, mp_obj *k, mp_obj **r)
{
  mp_obj *x;
  int64_t e;
  int rc = mp_args_parse(args, "OL:pow", &x, &e);
  if (rc)
    return rc;
  if (e < 0 || e > 100000)
    return mp_seterr(MP_ENOTSUP, "exponent out of this example's range");
  big acc = { 0 }, base = { 0 };
  if ((rc = big_of(x, &base)))
    return rc;
  acc.n = 1;
  acc.w = calloc(1, 4);
  if (!acc.w) {
    free(base.w);
    return MP_ENOMEM;
  }
  acc.w[0] = 1;
  for (; !rc && e; e >>= 1) {
    big t;
    if (e & 1) {
      if (!(rc = big_mul(&acc, &base, &t))) {
        free(acc.w);
        acc = t;
      }
    }
    if (!rc && e > 1 && !(rc = big_mul(&base, &base, &t))) {
      free(base.w);
      base = t;
    }
  }
  if (!rc)
    *r = big_obj(&acc);
  free(acc.w);
  free(base.w);
  return rc ? rc : *r ? 0 : MP_ENOMEM;
}

static int
op_mul(void *o, mp_obj *args, mp_obj *k, mp_obj **r)
{
  mp_obj *x, *y;
  int rc = mp_args_parse(args, "OO:mul", &x, &y);
  if (rc)
    return rc;
  int64_t a, b, p;
  if (!mp_int_get(x, &a) && !mp_int_get(y, &b) &&
      !__builtin_mul_overflow(a, b, &p)) {
    *r = mp_int_new(p);
    return 0;
  }
  return mp_seterr(MP_ENOTSUP, "mul beyond 64 bits is not handled here");
}

static int
op_eq(void *o, mp_obj *args, mp_obj *k, mp_obj **r)
{
  mp_obj *x, *y;
  int rc = mp_args_parse(args, "OO:eq", &x, &y);
  if (!rc)
    *r = mp_bool_new(mp_obj_equal(x, y));
  return rc;
}

static int
op_truth(void *o, mp_obj *args, mp_obj *k, mp_obj **r)
{
  mp_obj *x;
  int rc = mp_args_parse(args, "O:truth", &x);
  if (!rc)
    *r = mp_bool_new(mp_obj_truthy(x));
  return rc;
}

static int
op_other(void *o, mp_obj *args, mp_obj *k, mp_obj **r)
{
  return mp_seterr(MP_ENOTSUP, "not implemented in this example");
}

#define OTHER(n) { n, op_other, NULL }
static const mp_manager_method op_methods[] = {
  OTHER("abs"), { "add", op_add, NULL }, OTHER("and_"), OTHER("attrgetter"),
  OTHER("call"), OTHER("concat"), OTHER("contains"), OTHER("countOf"),
  OTHER("delitem"), { "eq", op_eq, NULL }, OTHER("floordiv"), OTHER("ge"),
  OTHER("getitem"), OTHER("gt"), OTHER("iadd"), OTHER("iand"),
  OTHER("iconcat"), OTHER("ifloordiv"), OTHER("ilshift"), OTHER("imatmul"),
  OTHER("imod"), OTHER("imul"), OTHER("index"), OTHER("indexOf"),
  OTHER("inv"), OTHER("invert"), OTHER("ior"), OTHER("ipow"),
  OTHER("irshift"), OTHER("is_"), OTHER("is_not"), OTHER("isub"),
  OTHER("itemgetter"), OTHER("itruediv"), OTHER("ixor"), OTHER("le"),
  OTHER("length_hint"), OTHER("lshift"), OTHER("lt"), OTHER("matmul"),
  OTHER("methodcaller"), OTHER("mod"), { "mul", op_mul, NULL }, OTHER("ne"),
  OTHER("neg"), OTHER("not_"), OTHER("or_"), OTHER("pos"),
  { "pow", op_pow, NULL }, OTHER("rshift"), OTHER("setitem"), OTHER("sub"),
  OTHER("truediv"), { "truth", op_truth, NULL }, OTHER("xor"),
};

static const mp_manager_type operator_type = {
  .typeid = "operator", .create = foo_create, .destroy = foo_destroy,
  .methods = op_methods, .nmethods = sizeof op_methods / sizeof op_methods[0],
  .flags = MP_MANAGER_CONCURRENT, /* stateless */
};

/* ---- the seed's test() -------------------------------------------------------- */

static void
line(void)
{
  printf("--------------------\n");
  fflush(stdout);
}

static int
call(mp_proxy *p, const char *m, mp_obj *args, mp_obj **out)
{
  int rc = mp_proxy_call(p, m, args, NULL, out);
  if (rc && rc != MP_EEOF)
    fprintf(stderr, "%s: %s (%s)\n", m, mp_strerror(rc), mp_errdetail());
  return rc;
}

static void
print_value(const char *label, mp_obj *v)
{
  char *s = mp_obj_repr(v);
  printf("%s %s\n", label, s ? s : "?");
  mp_free(s);
}

int
main(int argc, char **argv)
{
  mp_context *ctx = NULL;
  if (argc > 1 && mp_get_context(argv[1], &ctx))
    return 2;
  mp_manager *manager;
  int rc = mp_manager_new(&manager, &(mp_manager_opts){ .ctx = ctx });
  const mp_manager_type *types[] = { &foo1, &foo2, &baz, &operator_type };
  for (int i = 0; !rc && i < 4; i++)
    rc = mp_manager_register(manager, types[i]);
  if (!rc)
    rc = mp_manager_start(manager);
  if (rc) {
    fprintf(stderr, "start: %s (%s)\n", mp_strerror(rc), mp_errdetail());
    return 1;
  }
  line();
  mp_proxy *f1 = NULL, *f2 = NULL, *it = NULL, *op = NULL;
  int bad = 0;
  bad |= mp_manager_create(manager, "Foo1", NULL, NULL, &f1);
  bad |= call(f1, "f", NULL, NULL) | call(f1, "g", NULL, NULL);
  /* not exposed: Python's hasattr(f1, '_h') is False; here a #TRACEBACK */
  bad |= mp_proxy_call(f1, "_h", NULL, NULL, NULL) != MP_EREMOTE;
  line();
  bad |= mp_manager_create(manager, "Foo2", NULL, NULL, &f2);
  bad |= call(f2, "g", NULL, NULL) | call(f2, "_h", NULL, NULL);
  bad |= mp_proxy_call(f2, "f", NULL, NULL, NULL) != MP_EREMOTE;
  line();
  bad |= mp_manager_create(manager, "baz", NULL, NULL, &it);
  mp_obj *v;
  while ((rc = call(it, "__next__", NULL, &v)) == 0) {
    int64_t i = 0;
    mp_int_get(v, &i);
    printf("< %lld ", (long long)i);
    mp_obj_free(v);
  }
  bad |= rc != MP_EEOF;
  printf("\n");
  line();
  bad |= mp_manager_create(manager, "operator", NULL, NULL, &op);
  mp_obj *a = MP_TUPLE(mp_int_new(23), mp_int_new(45));
  if (!call(op, "add", a, &v)) {
    print_value("op.add(23, 45) =", v);
    mp_obj_free(v);
  }
  mp_obj_free(a);
  a = MP_TUPLE(mp_int_new(2), mp_int_new(94));
  if (!call(op, "pow", a, &v)) {
    print_value("op.pow(2, 94) =", v);
    mp_obj_free(v);
  }
  mp_obj_free(a);
  print_value("op._exposed_ =", mp_proxy_exposed(op));
  mp_proxy_free(f1);
  mp_proxy_free(f2);
  mp_proxy_free(it);
  mp_proxy_free(op);
  mp_manager_free(manager);
  return bad ? 1 : 0;
}
