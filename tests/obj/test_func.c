/* SPDX-License-Identifier: MIT */
/* Function values (obj.h): identity, equality, hashing, repr, copy, the
 * pickle form mproc.func(ref) at every protocol, and the strict decode: a
 * forged reference (another build-id, an offset where no function starts,
 * outside the code, a data reference, a library that is not loaded,
 * malformed bytes) is refused, never resolved to a wrong address, and never
 * loads anything. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/internal.h"

int mul(int a, int b);
int
mul(int a, int b)
{
  return a * b;
}

static int
add_static(int a, int b)
{
  return a + b;
}

static void
test_basic(void **state)
{
  (void)state;
  mp_obj *f = MP_FUNC(mul);
  assert_non_null(f);
  assert_int_equal(mp_obj_type(f), MP_T_FUNC);
  assert_string_equal(mp_type_name(MP_T_FUNC), "function");
  assert_ptr_equal(mp_func_get(f), (mp_fn)mul);
  int (*g)(int, int) = (int (*)(int, int))mp_func_get(f);
  assert_int_equal(g(6, 7), 42);
  assert_true(mp_obj_truthy(f));
  size_t n;
  MP_ASSERT_ERR(mp_obj_len(f, &n), MP_ETYPE);
  mp_obj_free(f);

  assert_null(mp_func_new(NULL));
  assert_non_null(strstr(mp_errdetail(), "NULL"));
  mp_obj *i = mp_int_new(3);
  assert_null(mp_func_get(i));
  assert_null(mp_func_get(NULL));
  mp_obj_free(i);

  /* the seeds' worker task */
  mp_obj *task = MP_TUPLE(MP_FUNC(mul), MP_TUPLE(mp_int_new(6), mp_int_new(7)));
  assert_non_null(task);
  mp_obj *args = mp_seq_item(task, 1);
  int64_t a, b;
  MP_ASSERT_OK(mp_int_get(mp_seq_item(args, 0), &a));
  MP_ASSERT_OK(mp_int_get(mp_seq_item(args, 1), &b));
  g = (int (*)(int, int))mp_func_get(mp_seq_item(task, 0));
  assert_int_equal(g((int)a, (int)b), 42);
  mp_obj_free(task);
}

static void
test_equal_hash_copy(void **state)
{
  (void)state;
  mp_obj *f1 = MP_FUNC(mul), *f2 = MP_FUNC(mul), *g = MP_FUNC(add_static);
  mp_obj *i = mp_int_new((int64_t)(uintptr_t)mul);
  assert_true(mp_obj_equal(f1, f2));
  assert_false(mp_obj_equal(f1, g));
  assert_false(mp_obj_equal(f1, i)); /* not the int of its address */
  uint64_t h1, h2, hg;
  MP_ASSERT_OK(mp_obj_hash(f1, &h1));
  MP_ASSERT_OK(mp_obj_hash(f2, &h2));
  MP_ASSERT_OK(mp_obj_hash(g, &hg));
  assert_true(h1 == h2);
  assert_true(h1 != hg);
  /* keys of a dict and members of a set, by address */
  mp_obj *d = MP_DICT(mp_obj_ref(f1), mp_str_new("mul"), mp_obj_ref(g),
                      mp_str_new("add"));
  const char *s;
  size_t n;
  MP_ASSERT_OK(mp_str_get(mp_dict_get(d, f2), &s, &n));
  assert_string_equal(s, "mul");
  mp_obj *set = MP_SET(mp_obj_ref(f1), mp_obj_ref(f2), mp_obj_ref(g));
  MP_ASSERT_OK(mp_obj_len(set, &n));
  assert_int_equal(n, 2);
  /* a copy shares the (immutable) function value */
  mp_obj *t = MP_TUPLE(mp_obj_ref(f1), MP_LIST(mp_obj_ref(g)));
  mp_obj *c = mp_obj_copy(t);
  assert_non_null(c);
  assert_true(mp_obj_equal(t, c));
  assert_ptr_equal(mp_seq_item(c, 0), f1);
  assert_ptr_not_equal(mp_seq_item(c, 1), mp_seq_item(t, 1));
  assert_ptr_equal(mp_func_get(mp_seq_item(mp_seq_item(c, 1), 0)),
                   (mp_fn)add_static);
  mp_obj *cf = mp_obj_copy(f1);
  assert_ptr_equal(cf, f1);
  mp_obj_free(cf);
  mp_obj_free(c);
  mp_obj_free(t);
  mp_obj_free(set);
  mp_obj_free(d);
  mp_obj_free(i);
  mp_obj_free(g);
  mp_obj_free(f2);
  mp_obj_free(f1);
}

static void
test_repr(void **state)
{
  (void)state;
  mp_obj *t = MP_TUPLE(MP_FUNC(mul), MP_TUPLE(mp_int_new(3), mp_int_new(7)));
  char *r = mp_obj_repr(t);
  assert_string_equal(r, "(<function mul>, (3, 7))");
  mp_free(r);
  mp_obj_free(t);
  /* a static function: named from the file's symbol table */
  mp_obj *f = MP_FUNC(add_static);
  r = mp_obj_repr(f);
  assert_string_equal(r, "<function add_static>");
  mp_free(r);
  mp_obj_free(f);
  /* a function of a (stripped) library: its dynamic symbol (under a
   * sanitizer, the interceptor's) */
  f = MP_FUNC(qsort);
  r = mp_obj_repr(f);
  Dl_info di;
  assert_true(dladdr((void *)mp_func_get(f), &di) && di.dli_sname);
  char want[256];
  snprintf(want, sizeof want, "<function %s>", di.dli_sname);
  assert_string_equal(r, want);
  assert_non_null(strstr(r, "qsort"));
  mp_free(r);
  mp_obj_free(f);
  /* an address no symbol starts at: FILE+0xOFF */
  f = mp_func_new((mp_fn)((uintptr_t)mul + 1));
  r = mp_obj_repr(f);
  assert_true(strncmp(r, "<function at test_func+0x", 25) == 0);
  mp_free(r);
  char buf[16];
  int64_t len = mp_obj_repr_buf(f, buf, sizeof buf);
  assert_true(len > 25);
  assert_int_equal(strlen(buf), sizeof buf - 1);
  mp_obj_free(f);
}

/* ---- pickles ------------------------------------------------------------ */

static void
dumps(const mp_obj *o, int proto, mp__buf *out)
{
  void *p;
  size_t n;
  MP_ASSERT_OK(mp_pickle_dumps(o, &(mp_pickle_opts){.protocol = proto}, &p,
                               &n));
  out->len = 0;
  MP_ASSERT_OK(mp__buf_append(out, p, n));
  mp_free(p);
}

static void
test_pickle_roundtrip(void **state)
{
  (void)state;
  for (int proto = 2; proto <= 5; proto++) {
    mp_obj *v = MP_LIST(MP_TUPLE(MP_FUNC(mul), MP_TUPLE(mp_int_new(1),
                                                        mp_int_new(7))),
                        MP_DICT(mp_str_new("f"), MP_FUNC(add_static)),
                        MP_FROZENSET(MP_FUNC(mul)));
    mp__buf b = {0};
    dumps(v, proto, &b);
    assert_non_null(memmem(b.data, b.len, "mproc", 5));
    assert_non_null(memmem(b.data, b.len, "func", 4));
    mp_obj *w;
    MP_ASSERT_OK(mp_pickle_loads(b.data, b.len, NULL, &w));
    assert_true(mp_obj_equal(v, w));
    mp_obj *f = mp_seq_item(mp_seq_item(w, 0), 0);
    assert_ptr_equal(mp_func_get(f), (mp_fn)mul);
    int (*g)(int, int) =
        (int (*)(int, int))mp_func_get(mp_dict_get_str(mp_seq_item(w, 1), "f"));
    assert_int_equal(g(40, 2), 42);
    /* and with descriptors (what Connections use) */
    void *p;
    size_t n, nfds;
    int *fds;
    MP_ASSERT_OK(mp_pickle_dumps_fds(v, NULL, &p, &n, &fds, &nfds));
    assert_int_equal(nfds, 0);
    mp_obj *x;
    MP_ASSERT_OK(mp_pickle_loads_fds(p, n, NULL, NULL, 0, &x));
    assert_true(mp_obj_equal(v, x));
    mp_free(p);
    mp_free(fds);
    mp_obj_free(x);
    mp_obj_free(w);
    mp_obj_free(v);
    mp__buf_release(&b);
  }
  /* a pointer into no loaded object cannot be named to another process */
  mp_obj *bad = mp_func_new((mp_fn)(uintptr_t)0x10);
  void *p;
  size_t n;
  MP_ASSERT_ERR(mp_pickle_dumps(bad, NULL, &p, &n), MP_EBADREF);
  mp_obj_free(bad);
}

/* The reference inside a protocol-4 pickle of one function value:
 * 0x80 4, 'mproc' 'func' STACK_GLOBAL, SHORT_BINBYTES n ref, TUPLE1 REDUCE
 * STOP.  Fields: u32 is_main, blob name, u64 off, blob id, u32 has_id,
 * u32 exec. */
typedef struct ref {
  uint32_t is_main;
  char name[4096];
  uint64_t off;
  uint8_t id[64];
  uint32_t idlen, has_id, exec;
} ref;

static void
ref_of(mp_fn fn, ref *r)
{
  mp__buf b = {0};
  MP_ASSERT_OK(mp__funcref_encode((const void *)fn, 1, &b));
  const uint8_t *p = b.data, *end = b.data + b.len;
  const uint8_t *s = NULL;
  uint32_t n = 0;
  assert_int_equal(mp__get_u32(&p, end, &r->is_main), 0);
  assert_int_equal(mp__get_blob(&p, end, &s, &n), 0);
  memcpy(r->name, s, n);
  r->name[n] = 0;
  assert_int_equal(mp__get_u64(&p, end, &r->off), 0);
  assert_int_equal(mp__get_blob(&p, end, &s, &r->idlen), 0);
  memcpy(r->id, s, r->idlen);
  assert_int_equal(mp__get_u32(&p, end, &r->has_id), 0);
  assert_int_equal(mp__get_u32(&p, end, &r->exec), 0);
  assert_ptr_equal(p, end);
  mp__buf_release(&b);
}

/* A pickle mproc.func(<the reference r, then `extra` bytes>) */
static void
forge(const ref *r, const void *extra, size_t nextra, mp__buf *out)
{
  mp__buf b = {0};
  mp__put_u32(&b, r->is_main);
  mp__put_blob(&b, r->name, strlen(r->name));
  mp__put_u64(&b, r->off);
  mp__put_blob(&b, r->id, r->idlen);
  mp__put_u32(&b, r->has_id);
  mp__put_u32(&b, r->exec);
  if (nextra)
    mp__buf_append(&b, extra, nextra);
  mp_obj *v = mp_record_take(MP_RECORD_REDUCE, mp_global_new("mproc", "func"),
                             MP_TUPLE(mp_bytes_new(b.data, b.len)));
  dumps(v, 0, out);
  mp_obj_free(v);
  mp__buf_release(&b);
}

static int
loads_code(const mp__buf *b, mp_obj **out)
{
  *out = NULL;
  return mp_pickle_loads(b->data, b->len, NULL, out);
}

static void
expect_refused(const ref *r, int code, const char *detail)
{
  mp__buf b = {0};
  forge(r, NULL, 0, &b);
  mp_obj *v;
  int rc = loads_code(&b, &v);
  if (rc != code)
    fail_msg("expected %s, got %s: %s", mp_err_name(code), mp_err_name(rc),
             mp_errdetail());
  assert_null(v);
  if (detail && !strstr(mp_errdetail(), detail))
    fail_msg("detail '%s' does not say '%s'", mp_errdetail(), detail);
  mp__buf_release(&b);
}

static void
test_forged(void **state)
{
  (void)state;
  int rc_unloaded;
  ref good, r;
  ref_of((mp_fn)mul, &good);
  assert_int_equal(good.is_main, 1);
  assert_int_equal(good.exec, 1);
  assert_true(good.has_id && good.idlen >= 16);
  /* the forger's own rebuild of a good reference loads */
  mp__buf b = {0};
  forge(&good, NULL, 0, &b);
  mp_obj *v;
  MP_ASSERT_OK(loads_code(&b, &v));
  assert_ptr_equal(mp_func_get(v), (mp_fn)mul);
  mp_obj_free(v);
  mp__buf_release(&b);

  /* another build: a build-id this process has not loaded */
  r = good;
  r.id[0] ^= 0xff;
  expect_refused(&r, MP_EBADREF, "not the same build");
  /* the right build, an offset where no function starts */
  r = good;
  r.off += 1;
  expect_refused(&r, MP_EBADREF, "no function starts");
  /* ... outside the code */
  r = good;
  r.off = (uint64_t)1 << 40;
  expect_refused(&r, MP_EBADREF, "outside");
  r.off = 0; /* the ELF header: loaded, not code */
  expect_refused(&r, MP_EBADREF, "outside");
  /* a data reference where a function is expected */
  r = good;
  r.exec = 0;
  expect_refused(&r, MP_EBADREF, "data reference");
  /* flags that are not flags */
  r = good;
  r.exec = 7;
  expect_refused(&r, MP_EMALFORMED, NULL);
  r = good;
  r.is_main = 2;
  expect_refused(&r, MP_EMALFORMED, NULL);
  r = good;
  snprintf(r.name, sizeof r.name, "x"); /* the main program has no name */
  expect_refused(&r, MP_EMALFORMED, NULL);
  /* no build-id: the file identity is compared instead */
  r = good;
  r.has_id = 0;
  expect_refused(&r, MP_EBADREF, "not the same file");

  /* a library that is not loaded is not loaded by a decode (its
   * constructors would run) */
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/libplugin_proctarget.so",
           mp_test_build_dir());
  assert_null(dlopen(path, RTLD_NOW | RTLD_NOLOAD));
  r = good;
  r.is_main = 0;
  snprintf(r.name, sizeof r.name, "%s", path);
  expect_refused(&r, MP_EBADREF, "never loads");
  assert_null(dlopen(path, RTLD_NOW | RTLD_NOLOAD));
  r.has_id = 0;
  expect_refused(&r, MP_EBADREF, "never loads");
  assert_null(dlopen(path, RTLD_NOW | RTLD_NOLOAD));
  /* ... and once loaded, its functions resolve */
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  assert_non_null(h);
  mp_fn pf = (mp_fn)dlsym(h, "plugin_marker");
  assert_non_null(pf);
  mp_obj *fv = mp_func_new(pf);
  mp__buf pb = {0};
  dumps(fv, 0, &pb);
  MP_ASSERT_OK(loads_code(&pb, &v));
  assert_ptr_equal(mp_func_get(v), pf);
  assert_int_equal(((int (*)(void))mp_func_get(v))(), 7);
  mp_obj_free(v);
  ref pr;
  ref_of(pf, &pr);
  assert_int_equal(pr.is_main, 0);
  pr.off += 2;
  expect_refused(&pr, MP_EBADREF, "no function starts");
  mp_obj_free(fv);
  /* a decode is remembered per thread (funcref.c): the same bytes again
   * give the same function, and the memory of a refusal is none */
  for (int i = 0; i < 3; i++) {
    MP_ASSERT_OK(loads_code(&pb, &v));
    assert_ptr_equal(mp_func_get(v), pf);
    mp_obj_free(v);
    expect_refused(&pr, MP_EBADREF, "no function starts");
  }
  /* ... until the object is unloaded: then those bytes name nothing
   * loaded, and a peer's reference never loads it back */
  dlclose(h);
  assert_null(dlopen(path, RTLD_NOW | RTLD_NOLOAD));
  v = NULL;
  rc_unloaded = loads_code(&pb, &v);
  if (rc_unloaded != MP_EBADREF)
    fail_msg("a reference into an unloaded object decoded: %s",
             mp_err_name(rc_unloaded));
  assert_null(v);
  assert_non_null(strstr(mp_errdetail(), "never loads"));
  mp__buf_release(&pb);

  /* malformed bytes: truncated, trailing, not bytes, wrong arity */
  forge(&good, "x", 1, &b);
  MP_ASSERT_ERR(loads_code(&b, &v), MP_EMALFORMED);
  mp__buf_release(&b);
  mp__buf e = {0};
  mp__put_u32(&e, 1);
  mp__put_u32(&e, 0);
  mp_obj *bad = mp_record_take(MP_RECORD_REDUCE, mp_global_new("mproc", "func"),
                               MP_TUPLE(mp_bytes_new(e.data, e.len)));
  dumps(bad, 0, &b);
  MP_ASSERT_ERR(loads_code(&b, &v), MP_EMALFORMED);
  mp_obj_free(bad);
  mp__buf_release(&b);
  mp__buf_release(&e);
  bad = mp_record_take(MP_RECORD_REDUCE, mp_global_new("mproc", "func"),
                       MP_TUPLE(mp_str_new("mul")));
  dumps(bad, 0, &b);
  MP_ASSERT_ERR(loads_code(&b, &v), MP_EMALFORMED);
  mp_obj_free(bad);
  mp__buf_release(&b);
  bad = mp_record_take(MP_RECORD_REDUCE, mp_global_new("mproc", "func"),
                       mp_tuple_take(0));
  dumps(bad, 0, &b);
  MP_ASSERT_ERR(loads_code(&b, &v), MP_EMALFORMED);
  mp_obj_free(bad);
  mp__buf_release(&b);
  /* NEWOBJ of mproc.func is not a function value: an inert record */
  bad = mp_record_take(MP_RECORD_NEWOBJ, mp_global_new("mproc", "func"),
                       mp_tuple_take(0));
  dumps(bad, 0, &b);
  MP_ASSERT_OK(loads_code(&b, &v));
  assert_int_equal(mp_obj_type(v), MP_T_RECORD);
  mp_obj_free(v);
  mp_obj_free(bad);
  mp__buf_release(&b);
}

/* Every offset of the function's first bytes but its start is refused; no
 * decode ever yields a pointer that is not a function start. */
static void
test_offsets_sweep(void **state)
{
  (void)state;
  ref good, r;
  ref_of((mp_fn)add_static, &good);
  for (int d = -64; d <= 64; d++) {
    r = good;
    r.off = good.off + (uint64_t)(int64_t)d;
    mp__buf b = {0};
    forge(&r, NULL, 0, &b);
    mp_obj *v;
    int rc = loads_code(&b, &v);
    if (d == 0) {
      MP_ASSERT_OK(rc);
      assert_ptr_equal(mp_func_get(v), (mp_fn)add_static);
    } else if (rc == 0) {
      /* a neighbouring function may start there: it must be a named one */
      char *repr = mp_obj_repr(v);
      assert_non_null(repr);
      assert_null(strstr(repr, "<function at "));
      mp_free(repr);
    } else {
      assert_int_equal(rc, MP_EBADREF);
    }
    mp_obj_free(v);
    mp__buf_release(&b);
  }
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_basic),
    cmocka_unit_test(test_equal_hash_copy),
    cmocka_unit_test(test_repr),
    cmocka_unit_test(test_pickle_roundtrip),
    cmocka_unit_test(test_forged),
    cmocka_unit_test(test_offsets_sweep),
};

MP_TEST_MAIN(tests)
