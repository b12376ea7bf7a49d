/* The mproc demo (`make demo`): a short tour of the library.
 *
 * Section 1, the value model: values Python's multiprocessing would pickle,
 * built in C in one expression, pickled the way CPython pickles them, and
 * printed back (after a round trip) exactly as Python's repr prints them.
 * Later layers add their sections below. */
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void
show(const char *what, mp_obj *v)
{
  if (!v) {
    printf("  %-28s (could not build: %s)\n", what, mp_errdetail());
    failures++;
    return;
  }
  void *p;
  size_t n;
  int rc = mp_pickle_dumps(v, NULL, &p, &n);
  if (rc) {
    printf("  %-28s dumps failed: %s\n", what, mp_errdetail());
    failures++;
    mp_obj_free(v);
    return;
  }
  mp_obj *back = NULL;
  rc = mp_pickle_loads(p, n, NULL, &back);
  char *r = rc ? NULL : mp_obj_repr(back);
  char hex[3 * 12 + 1] = "";
  for (size_t i = 0; i < n && i < 12; i++)
    snprintf(hex + 3 * i, 4, "%02x ", ((unsigned char *)p)[i]);
  printf("  %-28s %4zu bytes  %-37s -> %s%s\n", what, n, hex,
         r ? r : mp_errdetail(), back && mp_obj_equal(v, back) ? "" : "  (!)");
  if (!r || !mp_obj_equal(v, back))
    failures++;
  mp_free(r);
  mp_free(p);
  mp_obj_free(back);
  mp_obj_free(v);
}

static void
section_values(void)
{
  printf("1. Values and pickles (CPython's protocol 4; repr as Python "
         "prints it)\n");
  show("a list", MP_LIST(mp_float_new(2.25), mp_none(), mp_str_new("junk"),
                         mp_global_new("builtins", "float")));
  show("a dict", MP_DICT(mp_float_new(0.25), mp_none(), mp_int_new(1),
                         mp_str_new("1"), mp_str_new("2"), mp_int_new(2)));
  show("bytes", mp_bytes_new("thank you", 9));
  show("a tuple", MP_TUPLE(mp_float_new(1.875), mp_float_new(-6.25)));
  show("quotes", MP_LIST(mp_str_new("it's"), mp_str_new("say \"hi\"")));
  show("text", mp_str_new("na\xc3\xafve \xe2\x82\xac \xf0\x9f\x90\x8d\t"));
  static const unsigned char two_70[] = {0, 0, 0, 0, 0, 0, 0, 0, 0x40};
  show("big ints and floats",
       MP_TUPLE(mp_int_from_bytes(two_70, sizeof two_70),
                mp_uint_new(UINT64_MAX), mp_float_new(1e16),
                mp_float_new(1e-5), mp_float_new(-0.0)));
  show("sets", MP_LIST(MP_SET(mp_int_new(3)), MP_FROZENSET(mp_str_new("a")),
                       mp_set_new()));
  show("an exception (record)",
       mp_record_take(MP_RECORD_REDUCE, mp_global_new("builtins", "KeyError"),
                      MP_TUPLE(mp_str_new("missing"))));
  show("a bytearray (protocol 5)", mp_bytearray_new("ab", 2));

  /* 1 == 1.0 == True as dict keys, as in Python */
  mp_obj *d = MP_DICT(mp_int_new(1), mp_str_new("int"));
  mp_dict_set_take(d, mp_float_new(1.0), mp_str_new("float"));
  mp_dict_set_take(d, mp_bool_new(1), mp_str_new("bool"));
  show("{1: .., 1.0: .., True: ..}", d);

  /* Hostile input is refused, never trusted */
  static const unsigned char evil[] = {0x80, 4, 0x8e, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0x7f, '.'};
  mp_obj *v = NULL;
  int rc = mp_pickle_loads(evil, sizeof evil, NULL, &v);
  printf("  %-28s -> %s: %s\n", "a 9-EiB BINBYTES8 claim", mp_err_name(rc),
         mp_errdetail());
  if (rc != MP_EMALFORMED)
    failures++;
  mp_obj_free(v);
}

int
main(void)
{
  printf("mproc %s demo\n\n", MPROC_VERSION_STRING);
  section_values();
  printf("\n%s\n", failures ? "demo: something went wrong" : "demo: ok");
  return failures ? 1 : 0;
}
