/* libFuzzer target: mp_pickle_loads on arbitrary bytes.  When a value
 * loads, it must print, re-encode, load again and print the same (repr
 * compares nan, -0.0 and types exactly).  Seeds: fuzz/corpus/
 * fuzz_pickle_loads/, real CPython pickles made by tools/gen_fuzz_corpus.py. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

/* Nodes of the value seen as a tree (a DAG of shared sub-values can be
 * exponentially larger than its pickle); stops counting at `cap`. */
static size_t
tree_size(const mp_obj *o, size_t cap)
{
  size_t n = 1;
  mp_obj *const *items;
  size_t len, pos = 0;
  mp_obj *k, *v, *c, *a, *s, *li, *di;
  switch (mp_obj_type(o)) {
  case MP_T_TUPLE:
  case MP_T_LIST:
    mp_seq_items(o, &items, &len);
    for (size_t i = 0; i < len && n < cap; i++)
      n += tree_size(items[i], cap - n);
    break;
  case MP_T_DICT:
    while (n < cap && mp_dict_next(o, &pos, &k, &v))
      n += tree_size(k, cap - n) + tree_size(v, cap - n);
    break;
  case MP_T_SET:
  case MP_T_FROZENSET:
    while (n < cap && mp_set_next(o, &pos, &k))
      n += tree_size(k, cap - n);
    break;
  case MP_T_RECORD:
    if (mp_record_get(o, &c, &a, &s, &li, &di) == 0) {
      const mp_obj *parts[5] = {c, a, s, li, di};
      for (int i = 0; i < 5 && n < cap; i++)
        if (parts[i])
          n += tree_size(parts[i], cap - n);
    }
    break;
  default:
    break;
  }
  return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  mp_obj *v = NULL;
  if (mp_pickle_loads(data, size, NULL, &v) != 0)
    return 0;
  if (tree_size(v, 200000) >= 200000) {
    mp_obj_free(v);
    return 0;
  }
  char *r = mp_obj_repr(v);
  void *p = NULL;
  size_t n = 0;
  int rc = mp_pickle_dumps(v, NULL, &p, &n);
  if (rc != 0 && rc != MP_ELIMIT) {
    fprintf(stderr, "dumps failed: %s: %s\n", mp_err_name(rc), mp_errdetail());
    abort();
  }
  if (rc == 0) {
    mp_obj *w = NULL;
    rc = mp_pickle_loads(p, n, NULL, &w);
    if (rc != 0) {
      fprintf(stderr, "own pickle refused: %s: %s\n", mp_err_name(rc),
              mp_errdetail());
      abort();
    }
    char *r2 = mp_obj_repr(w);
    if ((r == NULL) != (r2 == NULL) || (r && strcmp(r, r2) != 0)) {
      fprintf(stderr, "round trip differs:\n%s\n%s\n", r ? r : "(null)",
              r2 ? r2 : "(null)");
      abort();
    }
    mp_free(r2);
    mp_obj_free(w);
    mp_free(p);
  }
  mp_free(r);
  mp_obj_free(v);
  return 0;
}
