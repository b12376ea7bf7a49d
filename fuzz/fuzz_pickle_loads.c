/* libFuzzer target: mp_pickle_loads on arbitrary bytes.  When a value
 * loads, it must nest no deeper than max_depth (however the pickle linked
 * it), print, re-encode, load again, print the same (repr compares nan,
 * -0.0 and types exactly) and be equal by content.  Seeds: fuzz/corpus/
 * fuzz_pickle_loads/, real CPython pickles and memo-linked chains made by
 * tools/gen_fuzz_corpus.py. */
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
      mp_obj *kw = NULL;
      mp_record_kwargs(o, &kw);
      const mp_obj *parts[6] = {c, a, s, li, di, kw};
      for (int i = 0; i < 6 && n < cap; i++)
        if (parts[i])
          n += tree_size(parts[i], cap - n);
    }
    break;
  default:
    break;
  }
  return n;
}

/* Nesting as loads counts it (a container is one deeper than its deepest
 * item); only called on values whose tree is small. */
static int
height(const mp_obj *o)
{
  int h = 0, x;
  mp_obj *const *items;
  size_t len, pos = 0;
  mp_obj *k, *v, *p[6] = {0};
  switch (mp_obj_type(o)) {
  case MP_T_TUPLE:
  case MP_T_LIST:
    mp_seq_items(o, &items, &len);
    for (size_t i = 0; i < len; i++)
      if ((x = height(items[i])) > h)
        h = x;
    return h + 1;
  case MP_T_DICT:
    while (mp_dict_next(o, &pos, &k, &v)) {
      if ((x = height(k)) > h)
        h = x;
      if ((x = height(v)) > h)
        h = x;
    }
    return h + 1;
  case MP_T_SET:
  case MP_T_FROZENSET:
    while (mp_set_next(o, &pos, &k))
      if ((x = height(k)) > h)
        h = x;
    return h + 1;
  case MP_T_RECORD:
    if (mp_record_get(o, &p[0], &p[1], &p[2], &p[3], &p[4]) == 0)
      mp_record_kwargs(o, &p[5]);
    for (int i = 0; i < 6; i++)
      if (p[i] && (x = height(p[i])) > h)
        h = x;
    return h + 1;
  default:
    return 0;
  }
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
  int h = height(v);
  if (h > MP_PICKLE_DEFAULT_MAX_DEPTH) {
    fprintf(stderr, "loads returned a value %d deep (max_depth %d)\n", h,
            MP_PICKLE_DEFAULT_MAX_DEPTH);
    abort();
  }
  char *r = mp_obj_repr(v);
  void *p = NULL;
  size_t n = 0;
  /* what loads accepted, dumps writes (no depth or size limit is near) */
  int rc = mp_pickle_dumps(v, NULL, &p, &n);
  if (rc != 0) {
    fprintf(stderr, "dumps failed: %s: %s\n", mp_err_name(rc), mp_errdetail());
    abort();
  }
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
  /* (nan is unequal to a copy of itself) */
  if (r && !strstr(r, "nan") && !mp_obj_equal_content(v, w)) {
    fprintf(stderr, "round trip is not equal by content:\n%s\n", r);
    abort();
  }
  mp_free(r2);
  mp_obj_free(w);
  mp_free(p);
  mp_free(r);
  mp_obj_free(v);
  return 0;
}
