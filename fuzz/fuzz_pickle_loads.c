/* SPDX-License-Identifier: MIT */
/* libFuzzer target: mp_pickle_loads on arbitrary bytes.  When a value
 * loads, it must nest no deeper than max_depth (however the pickle linked
 * it), print, re-encode, load again, print the same (repr compares nan,
 * -0.0 and types exactly) and be equal by content.  Seeds: fuzz/corpus/
 * fuzz_pickle_loads/, real CPython pickles and memo-linked chains made by
 * tools/gen_fuzz_corpus.py.
 *
 * Function values: a function this process did not have before the load
 * must never appear -- every function value decoded must be a function
 * start of a loaded object.  So that mutations reach the checks behind
 * the build-id, the seeds' placeholders are filled in before loading: the
 * 20 bytes "MPROC-FUZZ-BUILD-ID!" become this program's build-id, and
 * "FZOF:" plus a 24-bit signed delta becomes the offset of a function of
 * this program plus the delta. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

#include "fuzz.h"
#include "obj/obj_internal.h"
#include "platform/platform.h"

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

/* Containers check_funcs has seen in this input: a loaded value may share
 * sub-values through the memo (a structure that doubles at each level), so
 * each container is walked once.  Slots carry the input's generation, so
 * nothing is cleared between inputs. */
#define SEEN_SLOTS (1u << 16)
static struct {
  const mp_obj *o;
  unsigned gen;
} g_seen[SEEN_SLOTS];
static unsigned g_gen;

/* 1 if o was seen already (or the table is full: stop walking), else marks
 * it and returns 0. */
static int
seen(const mp_obj *o)
{
  size_t h = ((uintptr_t)o >> 4) * 0x9E3779B97F4A7C15ull >> 48;
  for (size_t i = 0; i < SEEN_SLOTS; i++) {
    size_t j = (h + i) & (SEEN_SLOTS - 1);
    if (g_seen[j].gen != g_gen) {
      g_seen[j].o = o;
      g_seen[j].gen = g_gen;
      return 0;
    }
    if (g_seen[j].o == o)
      return 1;
  }
  return 1;
}

/* Every function value inside o is a function start. */
static void
check_funcs(const mp_obj *o, int depth)
{
  mp_obj *const *items;
  size_t len, pos = 0;
  mp_obj *k, *v, *p[6] = {0};
  if (depth > 2000)
    return;
  mp_type t = mp_obj_type(o);
  if (t == MP_T_FUNC) {
    if (mp__plat_func_info((const void *)mp_func_get(o), NULL) !=
        MP__PLAT_FN_START) {
      fprintf(stderr, "decoded a function value %p that is no function "
              "start\n", (void *)mp_func_get(o));
      abort();
    }
    return;
  }
  if ((t == MP_T_TUPLE || t == MP_T_LIST || t == MP_T_DICT || t == MP_T_SET ||
       t == MP_T_FROZENSET || t == MP_T_RECORD) && seen(o))
    return;
  switch (t) {
  case MP_T_TUPLE:
  case MP_T_LIST:
    mp_seq_items(o, &items, &len);
    for (size_t i = 0; i < len; i++)
      check_funcs(items[i], depth + 1);
    break;
  case MP_T_DICT:
    while (mp_dict_next(o, &pos, &k, &v)) {
      check_funcs(k, depth + 1);
      check_funcs(v, depth + 1);
    }
    break;
  case MP_T_SET:
  case MP_T_FROZENSET:
    while (mp_set_next(o, &pos, &k))
      check_funcs(k, depth + 1);
    break;
  case MP_T_RECORD:
    if (mp_record_get(o, &p[0], &p[1], &p[2], &p[3], &p[4]) == 0)
      mp_record_kwargs(o, &p[5]);
    for (int i = 0; i < 6; i++)
      if (p[i])
        check_funcs(p[i], depth + 1);
    break;
  default:
    break;
  }
}

/* The placeholders of the function-value seeds, filled in (see above);
 * NULL when there are none. */
static uint8_t *
fill_placeholders(const uint8_t *data, size_t size)
{
  static mp__plat_object self;
  static int have = -1;
  if (have < 0)
    have = mp__plat_object_of((const void *)check_funcs, &self) ==
               0 && self.idlen == 20;
  if (!have)
    return NULL;
  uint8_t *copy = NULL;
  for (size_t i = 0; i + 8 <= size; i++) {
    int id = i + 20 <= size && memcmp(data + i, "MPROC-FUZZ-BUILD-ID!", 20) == 0;
    int off = memcmp(data + i, "FZOF:", 5) == 0;
    if (!id && !off)
      continue;
    if (!copy) {
      if (!(copy = malloc(size)))
        return NULL;
      memcpy(copy, data, size);
    }
    if (id) {
      memcpy(copy + i, self.id, 20);
    } else {
      int32_t d = (int32_t)((uint32_t)data[i + 5] | (uint32_t)data[i + 6] << 8 |
                            (uint32_t)data[i + 7] << 16);
      if (d & 0x800000)
        d -= 0x1000000;
      uint64_t o = (uint64_t)((uintptr_t)check_funcs - self.base) +
                   (uint64_t)(int64_t)d;
      memcpy(copy + i, &o, 8);
    }
  }
  return copy;
}

/* A queue's decoding straight out of its ring (mp__pickle_loads_shared)
 * decides as the plain decoding does, and makes the same value.  Its
 * read-ahead and direct-copy sizes are made small here, so that inputs of
 * a few bytes take every path (a payload partly read ahead, then copied
 * straight) and not only the all-read-ahead one. */
static void
shared_agrees(const uint8_t *in, size_t size)
{
  mp__pickle_fill_ahead = 1 + (size & 15);
  mp__pickle_direct_min = 1 + (size >> 4 & 7);
  mp_obj *a = NULL, *b = NULL;
  uint8_t *scratch = malloc(size ? size : 1);
  if (!scratch)
    return;
  int ra = mp_pickle_loads_fds(in, size, NULL, NULL, 0, &a);
  int rb = mp__pickle_loads_shared(in, size, scratch, NULL, NULL, 0, &b);
  free(scratch);
  if (ra != rb) {
    fprintf(stderr, "loads_shared returned %s, loads_fds %s\n",
            mp_err_name(rb), mp_err_name(ra));
    abort();
  }
  if (ra == 0 && tree_size(a, 200000) < 200000) { /* repr is exponential
                                                   * in a memo-linked DAG */
    char *x = mp_obj_repr(a), *y = mp_obj_repr(b);
    if ((x == NULL) != (y == NULL) || (x && strcmp(x, y) != 0)) {
      fprintf(stderr, "loads_shared made another value:\n%s\n%s\n",
              x ? x : "(null)", y ? y : "(null)");
      abort();
    }
    mp_free(x);
    mp_free(y);
  }
  mp_obj_free(a);
  mp_obj_free(b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  mp_obj *v = NULL;
  uint8_t *filled = fill_placeholders(data, size);
  const uint8_t *in = filled ? filled : data;
  int rc0 = mp_pickle_loads(in, size, NULL, &v);
  shared_agrees(in, size);
  free(filled);
  if (rc0 != 0)
    return 0;
  g_gen++;
  check_funcs(v, 0);
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
