/* SPDX-License-Identifier: MIT */
/* mp_pickle_loads: a stack machine over the opcodes docs/python-wire.md
 * section 5 lists for decoding, and NEWOBJ_EX (which CPython writes at protocol 4+ for objects
 * whose __getnewargs_ex__ returns keyword arguments; multiprocessing's own
 * data never uses it).  Nothing is imported or called: class references
 * become inert records, and only the few calls CPython uses to spell data
 * at protocols 2/3 (_codecs.encode, builtins.bytes/bytearray/set/frozenset)
 * and the copyreg.__newobj_ex__ call mproc writes there for NEWOBJ_EX are
 * recognised and rebuilt as what they stand for.
 *
 * Safety: every length is checked against the bytes that remain before
 * anything is allocated; memo indexes are bounded by the input size; the
 * stack only grows by one slot per opcode; so memory is linear in the
 * input.  Values are refcounted, so a structure that contains itself is
 * refused (MP_ECYCLE) at the moment it would be made (see would_cycle).
 * Nesting is bounded by max_depth however the value was linked (see
 * check_heights). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fd.h"
#include "obj/pickle_int.h"

typedef struct loader {
  const uint8_t *start, *p, *end;
  /* Loading from memory another process may write at any time
   * (mp__pickle_loads_shared): `start` is then a private buffer, filled
   * from `src` as the parse reaches it (`filled` bytes so far), so that
   * every byte is read from `src` once and the parser looks only at its
   * copy.  A large bytes payload goes from `src` straight into its object
   * and is never copied into the buffer.  src NULL: start is the data. */
  const uint8_t *src;
  uint8_t *scratch;
  size_t filled;
  mp_obj **stack;
  size_t sp, scap;
  size_t *marks;
  size_t nmarks, mcap;
  mp_obj **memo;
  size_t memo_cap, memo_len;
  int max_depth;
  int proto; /* from PROTO; 0 when absent */
  /* work left for cycle checks, proportional to the input */
  uint64_t budget;
  /* a container fetched from the memo gained items: heights may be stale */
  int heights_stale;
  /* loads_fds */
  int with_fds;
  int *fds;
  size_t nfds;
  /* the first 64 stack slots and 16 marks: a small pickle mallocs nothing
   * but its values */
  mp_obj *stack_local[64];
  size_t marks_local[16];
} loader;

/* realloc for the stack and marks, which start in the loader itself */
static void *
grow_array(void *p, const void *local, size_t old, size_t ncap, size_t size)
{
  if (p != local)
    return realloc(p, ncap * size);
  void *n = malloc(ncap * size);
  if (n)
    memcpy(n, p, old * size);
  return n;
}

static int
bad(loader *l, const char *what)
{
  return mp_seterr(MP_EMALFORMED, "pickle: %s at offset %zu", what,
                   (size_t)(l->p - l->start));
}

static int
limit(loader *l, const char *what)
{
  return mp_seterr(MP_ELIMIT, "pickle: %s at offset %zu", what,
                   (size_t)(l->p - l->start));
}

static int
nomem(void)
{
  return mp_seterr(MP_ENOMEM, "out of memory");
}

static inline size_t
left(const loader *l)
{
  return (size_t)(l->end - l->p);
}

static inline uint64_t
rd_le(const uint8_t *p, int n)
{
  uint64_t v = 0;
  for (int k = n; k-- > 0;)
    v = (v << 8) | p[k];
  return v;
}

static inline size_t
fence(const loader *l)
{
  return l->nmarks ? l->marks[l->nmarks - 1] : 0;
}

/* push takes the reference (and fails on NULL: a constructor failed) */
static inline int
push(loader *l, mp_obj *o)
{
  if (MP__UNLIKELY(!o))
    return MP_ENOMEM; /* the constructor set the detail */
  if (MP__UNLIKELY(l->sp == l->scap)) {
    size_t ncap = l->scap ? l->scap * 2 : 64;
    mp_obj **n = grow_array(l->stack, l->stack_local, l->scap, ncap, sizeof *n);
    if (!n) {
      mp_obj_free(o);
      return nomem();
    }
    l->stack = n;
    l->scap = ncap;
  }
  l->stack[l->sp++] = o;
  return 0;
}

static int
pop_mark(loader *l, size_t *k)
{
  if (!l->nmarks)
    return bad(l, "no MARK for this opcode");
  *k = l->marks[--l->nmarks];
  return 0;
}

static int
depth_ok(loader *l, const mp_obj *c)
{
  if (c->depth > l->max_depth)
    return limit(l, "nesting deeper than max_depth");
  return 0;
}

static int
is_container(const mp_obj *o)
{
  return o->type >= MP_T_TUPLE && o->type <= MP_T_RECORD;
}

/* ---- cycle checks ----------------------------------------------------------
 * A container X can only come to contain itself when an item is added to X
 * after X was fetched from the memo (the only way a second reference to X
 * reaches the stack).  So items added to a fetched container are searched
 * for X; each search visits a container once, and all searches together are
 * bounded by the budget. */

typedef struct visited {
  const mp_obj **v;
  size_t mask, n;
} visited;

static int
visit(visited *s, const mp_obj *o)
{
  if (!s->v || (s->n + 1) * 2 > s->mask + 1) {
    size_t nsize = s->v ? (s->mask + 1) * 2 : 64;
    const mp_obj **nv = calloc(nsize, sizeof *nv);
    if (!nv)
      return nomem();
    for (size_t i = 0; s->v && i <= s->mask; i++) {
      if (!s->v[i])
        continue;
      size_t j = ((uintptr_t)s->v[i] >> 4) & (nsize - 1);
      while (nv[j])
        j = (j + 1) & (nsize - 1);
      nv[j] = s->v[i];
    }
    free(s->v);
    s->v = nv;
    s->mask = nsize - 1;
  }
  size_t j = ((uintptr_t)o >> 4) & s->mask;
  while (s->v[j]) {
    if (s->v[j] == o)
      return 1;
    j = (j + 1) & s->mask;
  }
  s->v[j] = o;
  s->n++;
  return 0;
}

/* 1 if `o` reaches `x`, 0 if not, or a negative code. */
static int
reaches(loader *l, const mp_obj *o, const mp_obj *x, visited *s, int depth)
{
  if (o == x)
    return 1;
  if (!o || !is_container(o))
    return 0;
  if (depth > l->max_depth + 8)
    return limit(l, "nesting deeper than max_depth");
  if (l->budget == 0)
    return limit(l, "too much shared structure to check for cycles");
  l->budget--;
  int rc = visit(s, o);
  if (rc)
    return rc < 0 ? rc : 0; /* seen already: no path through it */
  mp_obj *const *items = NULL;
  size_t n = 0;
  switch (MP__T(o)) {
  case MP_T_TUPLE:
  case MP_T_LIST:
    mp_seq_items(o, &items, &n);
    for (size_t i = 0; i < n; i++)
      if ((rc = reaches(l, items[i], x, s, depth + 1)))
        return rc;
    return 0;
  case MP_T_DICT:
  case MP_T_SET:
  case MP_T_FROZENSET: {
    const mp__table *t = &MP__AS(const mp__dict, o)->t;
    for (size_t i = 0; i < t->n; i++) {
      if (!t->e[i].key)
        continue;
      if ((rc = reaches(l, t->e[i].key, x, s, depth + 1)) ||
          (rc = reaches(l, t->e[i].value, x, s, depth + 1)))
        return rc;
    }
    return 0;
  }
  case MP_T_RECORD: {
    mp_obj *parts[MP__RECORD_NPARTS];
    mp__record_parts(MP__AS(const mp__record, o), parts);
    for (int i = 0; i < MP__RECORD_NPARTS; i++)
      if ((rc = reaches(l, parts[i], x, s, depth + 1)))
        return rc;
    return 0;
  }
  default:
    return 0;
  }
}

/* Before adding items[0..n) to container x: MP_ECYCLE if one reaches x.
 * Every opcode that adds to an existing container (APPEND(S), SETITEM(S),
 * ADDITEMS, BUILD) comes through here. */
static int
would_cycle(loader *l, const mp_obj *x, mp_obj *const *items, size_t n)
{
  if (!(x->flags & MP__F_FETCHED))
    return 0;
  /* x may already sit in other containers, whose heights this can raise */
  l->heights_stale = 1;
  visited s = {0};
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++)
    rc = reaches(l, items[i], x, &s, 0);
  free(s.v);
  if (rc == 1)
    return mp_seterr(MP_ECYCLE,
                     "pickle: structure contains itself (at offset %zu)",
                     (size_t)(l->p - l->start));
  return rc;
}

/* ---- heights ---------------------------------------------------------------
 * A container's depth field is its height (1 + the tallest of its items),
 * kept up to date as items are added.  That is exact while a container only
 * gains items before anything holds it, which is how the stack builds a
 * value.  A container fetched from the memo may gain items while others
 * hold it already, and their heights do not follow: BINGET + APPEND can link
 * lists into a chain 300,000 deep while every stored height says 2.  So
 * when that happened, the heights of the result are computed afresh before
 * it is returned: one walk that visits each container once and never goes
 * deeper than max_depth, so it is linear and bounded whatever the input. */

typedef struct hframe {
  mp_obj *o;
  size_t i;   /* next child */
  unsigned h; /* height so far */
} hframe;

/* The next item of container o from *i on (a dict's entries count twice:
 * key and value; a record's parts in a fixed order), or NULL at the end. */
static mp_obj *
next_child(const mp_obj *o, size_t *i)
{
  switch (MP__T(o)) {
  case MP_T_TUPLE: {
    const mp__tuple *t = MP__AS(const mp__tuple, o);
    return *i < t->n ? t->items[(*i)++] : NULL;
  }
  case MP_T_LIST: {
    const mp__list *t = MP__AS(const mp__list, o);
    return *i < t->n ? t->items[(*i)++] : NULL;
  }
  case MP_T_DICT:
  case MP_T_SET:
  case MP_T_FROZENSET: {
    const mp__table *t = &MP__AS(const mp__dict, o)->t;
    while (*i < 2 * t->n) {
      const mp__entry *e = &t->e[*i / 2];
      mp_obj *c = *i & 1 ? e->value : e->key;
      (*i)++;
      if (e->key && c)
        return c;
    }
    return NULL;
  }
  case MP_T_RECORD: {
    const mp__record *r = MP__AS(const mp__record, o);
    if (r->kind == MP_RECORD_GLOBAL)
      return NULL;
    mp_obj *parts[MP__RECORD_NPARTS];
    mp__record_parts(r, parts);
    while (*i < MP__RECORD_NPARTS) {
      mp_obj *c = parts[(*i)++];
      if (c)
        return c;
    }
    return NULL;
  }
  default:
    return NULL;
  }
}

/* MP_ELIMIT if `root` nests deeper than max_depth; otherwise the depth field
 * of every container in it is made exact (and marked MP__F_HEIGHT). */
static int
check_heights(loader *l, mp_obj *root)
{
  if (!is_container(root))
    return 0;
  size_t max = (size_t)l->max_depth;
  hframe *st = malloc((max + 1) * sizeof *st);
  if (!st)
    return nomem();
  size_t n = 0;
  int rc = 0;
  st[n++] = (hframe){root, 0, 1};
  while (n && !rc) {
    hframe *f = &st[n - 1];
    mp_obj *c = next_child(f->o, &f->i);
    if (c) {
      if (!is_container(c))
        continue;
      if (c->flags & MP__F_HEIGHT) { /* seen: its height is known */
        if (c->depth + 1u > f->h)
          f->h = c->depth + 1u;
        if (n + c->depth > max) /* its deepest part sits at that level */
          rc = 1;
      } else if (n == max) {
        rc = 1; /* c would be at level max + 1 */
      } else {
        st[n++] = (hframe){c, 0, 1};
      }
      continue;
    }
    f->o->depth = (uint16_t)f->h; /* <= max_depth <= MP__DEPTH_CAP */
    f->o->flags |= MP__F_HEIGHT;
    n--;
    if (n && f->h + 1 > st[n - 1].h)
      st[n - 1].h = f->h + 1;
  }
  free(st);
  return rc ? limit(l, "nesting deeper than max_depth (linked through the "
                       "memo)")
            : 0;
}

/* ---- memo ----------------------------------------------------------------- */

static int
memo_put(loader *l, size_t idx)
{
  if (l->sp <= fence(l))
    return bad(l, "memo store with an empty stack");
  /* A real pickle stores at most one memo entry per input byte. */
  if (idx > (size_t)(l->end - l->start))
    return bad(l, "memo index out of range");
  if (idx >= l->memo_cap) {
    size_t ncap = l->memo_cap ? l->memo_cap * 2 : 64;
    while (ncap <= idx)
      ncap *= 2;
    mp_obj **n = realloc(l->memo, ncap * sizeof *n);
    if (!n)
      return nomem();
    memset(n + l->memo_cap, 0, (ncap - l->memo_cap) * sizeof *n);
    l->memo = n;
    l->memo_cap = ncap;
  }
  mp_obj *o = l->stack[l->sp - 1];
  mp_obj *old = l->memo[idx];
  l->memo[idx] = mp__newref(o);
  if (old)
    mp_obj_free(old);
  else
    l->memo_len++;
  return 0;
}

static int
memo_get(loader *l, size_t idx)
{
  if (idx >= l->memo_cap || !l->memo[idx])
    return bad(l, "memo key not found");
  mp_obj *o = l->memo[idx];
  if (is_container(o) &&
      __atomic_load_n(&o->rc, __ATOMIC_RELAXED) < MP__RC_IMMORTAL)
    o->flags |= MP__F_FETCHED; /* loads owns every object it made */
  return push(l, mp__newref(o));
}

/* ---- building values -------------------------------------------------------- */

static int
make_tuple(loader *l, size_t k)
{
  size_t n = l->sp - k;
  mp_obj *t = mp__tuple_alloc(n);
  if (!t)
    return nomem();
  for (size_t i = 0; i < n; i++) {
    mp_obj *x = l->stack[k + i];
    MP__AS(mp__tuple, t)->items[i] = x;
    mp__set_depth_from(t, x);
  }
  l->sp = k;
  int rc = depth_ok(l, t);
  if (rc) {
    mp_obj_free(t);
    return rc;
  }
  return push(l, t);
}

static int
add_items(loader *l, mp_obj *target, size_t k)
{
  size_t n = l->sp - k;
  mp_obj **items = l->stack + k;
  int rc = would_cycle(l, target, items, n);
  if (rc)
    return rc;
  if (target->type == MP_T_LIST) {
    mp__list *lst = MP__AS(mp__list, target);
    if (n == 0) /* APPENDS of nothing */
      return 0;
    if ((rc = mp__list_reserve(lst, n)))
      return rc;
    memcpy(lst->items + lst->n, items, n * sizeof *items);
    lst->n += n;
    for (size_t i = 0; i < n; i++)
      if (items[i]->depth)
        mp__set_depth_from(target, items[i]);
    l->sp = k;
    return depth_ok(l, target);
  }
  if (target->type == MP_T_RECORD &&
      MP__AS(mp__record, target)->kind != MP_RECORD_GLOBAL) {
    l->sp = k;
    for (size_t i = 0; i < n; i++) {
      if ((rc = mp_record_append_take(target, items[i]))) {
        for (size_t j = i + 1; j < n; j++)
          mp_obj_free(items[j]);
        return rc;
      }
    }
    return depth_ok(l, target);
  }
  return bad(l, "APPEND(S) to something that is not a list");
}

static int
unhashable(loader *l, int rc)
{
  if (rc == MP_EUNHASHABLE)
    return bad(l, "unhashable dict key or set member");
  return rc;
}

static int
set_items(loader *l, mp_obj *target, size_t k)
{
  size_t n = l->sp - k;
  mp_obj **items = l->stack + k;
  if (n % 2)
    return bad(l, "odd number of items for SETITEMS");
  int rc = would_cycle(l, target, items, n);
  if (rc)
    return rc;
  int is_dict = target->type == MP_T_DICT;
  if (!is_dict && !(target->type == MP_T_RECORD &&
                    MP__AS(mp__record, target)->kind != MP_RECORD_GLOBAL))
    return bad(l, "SETITEM(S) on something that is not a dict");
  l->sp = k; /* the items are handed over (or released) one by one */
  for (size_t i = 0; i < n; i += 2) {
    if (is_dict)
      rc = unhashable(l, mp__table_set_take(MP__AS(mp__dict, target),
                                            items[i], items[i + 1], 0));
    else
      rc = mp_record_setitem_take(target, items[i], items[i + 1]);
    if (rc) {
      for (size_t j = i + 2; j < n; j++)
        mp_obj_free(items[j]);
      return rc;
    }
  }
  return depth_ok(l, target);
}

/* Items moved into a (new or existing) set. */
static int
fill_set(loader *l, mp_obj *set, mp_obj **items, size_t n)
{
  int rc = 0;
  size_t i = 0;
  for (; i < n && !rc; i++)
    rc = unhashable(l, mp__table_set_take(MP__AS(mp__dict, set), items[i],
                                          NULL, 1));
  for (; i < n; i++)
    mp_obj_free(items[i]);
  return rc ? rc : depth_ok(l, set);
}

/* ---- REDUCE ------------------------------------------------------------------ */

static int
is_global(const mp_obj *o, const char *module, const char *name)
{
  if (o->type != MP_T_RECORD)
    return 0;
  const mp__record *r = MP__AS(const mp__record, o);
  return r->kind == MP_RECORD_GLOBAL && strcmp(r->module, module) == 0 &&
         strcmp(r->name, name) == 0;
}

static int
str_is(const mp_obj *o, const char *s)
{
  return o->type == MP_T_STR && strcmp(MP__AS(const mp__str, o)->s, s) == 0 &&
         MP__AS(const mp__str, o)->len == strlen(s);
}

/* bytes of a latin-1 str (code points < 256), or NULL if it has others */
static mp_obj *
latin1_bytes(loader *l, const mp_obj *s, mp_type t, int *rc)
{
  const mp__str *str = MP__AS(const mp__str, s);
  uint8_t *buf = malloc(str->ncp + 1);
  if (!buf) {
    *rc = nomem();
    return NULL;
  }
  const uint8_t *p = (const uint8_t *)str->s, *end = p + str->len;
  size_t n = 0;
  while (p < end) {
    uint32_t cp;
    p += mp__utf8_decode(p, &cp);
    if (cp > 0xff) {
      free(buf);
      *rc = 0; /* not latin-1: leave the call inert */
      return NULL;
    }
    buf[n++] = (uint8_t)cp;
  }
  mp_obj *o = t == MP_T_BYTES ? mp_bytes_new(buf, n) : mp_bytearray_new(buf, n);
  free(buf);
  *rc = o ? 0 : nomem();
  (void)l;
  return o;
}

static int
rebuild_handle(loader *l, const mp__tuple *args, mp_obj **out)
{
  /* mproc.handle(type name, state, (fd index, ...)) */
  if (args->n != 3 || args->items[0]->type != MP_T_STR ||
      args->items[2]->type != MP_T_TUPLE)
    return bad(l, "malformed mproc.handle arguments");
  const char *name = MP__AS(const mp__str, args->items[0])->s;
  const mp_handle_type *type = mp_handle_find(name);
  if (!type || !type->rebuild)
    return mp_seterr(MP_ENOTFOUND,
                     "pickle: handle type '%s' is not registered here", name);
  const mp__tuple *ix = MP__AS(const mp__tuple, args->items[2]);
  int local[16];
  int *fds = ix->n <= 16 ? local : malloc(ix->n * sizeof *fds);
  if (!fds)
    return nomem();
  size_t k = 0;
  int rc = 0;
  for (k = 0; k < ix->n; k++) {
    int64_t i;
    if (mp_int_get(ix->items[k], &i) || i < 0 || (uint64_t)i >= l->nfds) {
      rc = bad(l, "handle fd index out of range");
      break;
    }
    /* Every handle gets its own copy: a rebuild may close or keep what it
     * is given (e.g. a slab the receiver has mapped already), and another
     * handle of this message may name the same fd.  The received originals
     * are all closed when the load ends. */
    int fd = mp__dup(l->fds[i]);
    if (fd < 0) {
      rc = fd;
      break;
    }
    fds[k] = fd;
  }
  if (rc) {
    for (size_t j = 0; j < k; j++)
      close(fds[j]);
    if (fds != local)
      free(fds);
    return rc;
  }
  void *ptr = NULL;
  rc = type->rebuild(args->items[1], fds, ix->n, &ptr); /* owns the fds */
  if (fds != local)
    free(fds);
  if (rc)
    return rc;
  *out = mp_handle_new(type, ptr);
  return *out ? 0 : nomem();
}

static int
do_reduce(loader *l, int newobj)
{
  if (l->sp < fence(l) + 2)
    return bad(l, "stack underflow");
  mp_obj *args = l->stack[l->sp - 1];
  mp_obj *callable = l->stack[l->sp - 2];
  if (args->type != MP_T_TUPLE)
    return bad(l, "call arguments are not a tuple");
  if (callable->type != MP_T_RECORD)
    return bad(l, "call of something that is not a class or function");
  const mp__tuple *a = MP__AS(const mp__tuple, args);
  mp_obj *r = NULL;
  int rc = 0;
  if (!newobj && MP__AS(mp__record, callable)->kind == MP_RECORD_GLOBAL) {
    if (is_global(callable, "_codecs", "encode")) {
      if (a->n == 2 && a->items[0]->type == MP_T_STR &&
          (str_is(a->items[1], "latin1") || str_is(a->items[1], "latin-1")))
        r = latin1_bytes(l, a->items[0], MP_T_BYTES, &rc);
    } else if (is_global(callable, "builtins", "bytes")) {
      if (a->n == 0)
        r = mp_bytes_new(NULL, 0);
    } else if (is_global(callable, "builtins", "bytearray")) {
      if (a->n == 0)
        r = mp_bytearray_new(NULL, 0);
      else if (a->n == 1 && a->items[0]->type == MP_T_BYTES)
        r = mp_bytearray_new(MP__AS(mp__bytes, a->items[0])->d,
                             MP__AS(mp__bytes, a->items[0])->len);
      else if (a->n == 2 && a->items[0]->type == MP_T_STR &&
               (str_is(a->items[1], "latin1") ||
                str_is(a->items[1], "latin-1")))
        r = latin1_bytes(l, a->items[0], MP_T_BYTEARRAY, &rc);
    } else if (is_global(callable, "builtins", "set") ||
               is_global(callable, "builtins", "frozenset")) {
      mp_type t = MP__AS(mp__record, callable)->name[0] == 's' ? MP_T_SET
                                                               : MP_T_FROZENSET;
      mp_obj *const *items = NULL;
      size_t n = 0;
      if (a->n == 0 ||
          (a->n == 1 && (a->items[0]->type == MP_T_LIST ||
                         a->items[0]->type == MP_T_TUPLE))) {
        if (a->n)
          mp_seq_items(a->items[0], &items, &n);
        r = mp__dict_alloc(t);
        if (!r)
          return nomem();
        for (size_t i = 0; i < n && !rc; i++)
          rc = unhashable(l, mp__table_set_take(MP__AS(mp__dict, r),
                                                mp__newref(items[i]), NULL, 1));
        if (!rc)
          rc = depth_ok(l, r);
      }
    } else if (is_global(callable, "copyreg", "__newobj_ex__")) {
      /* what mproc writes for NEWOBJ_EX at protocols 2 and 3 */
      if (a->n == 3 && a->items[0]->type == MP_T_RECORD &&
          a->items[1]->type == MP_T_TUPLE && a->items[2]->type == MP_T_DICT) {
        r = mp_record_newobj_ex_take(mp__newref(a->items[0]),
                                     mp__newref(a->items[1]),
                                     mp__newref(a->items[2]));
        rc = r ? depth_ok(l, r) : nomem();
      }
    } else if (mp__proxy_wire_on && mp__proxy_wire_hooks &&
               is_global(callable, "multiprocessing.managers",
                         "RebuildProxy")) {
      rc = mp__proxy_wire_hooks->read(args, &r);
    } else if (l->with_fds && is_global(callable, "mproc", "handle")) {
      rc = rebuild_handle(l, a, &r);
    } else if (is_global(callable, "mproc", "func")) {
      /* resolved strictly (see mp__funcref_decode_code), never loaded */
      if (a->n != 1 || a->items[0]->type != MP_T_BYTES)
        return bad(l, "mproc.func takes one bytes argument");
      r = mp__func_from_ref(MP__AS(mp__bytes, a->items[0])->d,
                            MP__AS(mp__bytes, a->items[0])->len, &rc);
    }
    if (rc) {
      mp_obj_free(r);
      return rc;
    }
  }
  l->sp -= 2;
  if (r) {
    mp_obj_free(args);
    mp_obj_free(callable);
    return push(l, r);
  }
  r = mp_record_take(newobj ? MP_RECORD_NEWOBJ : MP_RECORD_REDUCE, callable,
                     args);
  if (!r)
    return nomem();
  if ((rc = depth_ok(l, r))) {
    mp_obj_free(r);
    return rc;
  }
  return push(l, r);
}

/* cls args kwargs NEWOBJ_EX: cls.__new__(cls, *args, **kwargs) */
static int
do_newobj_ex(loader *l)
{
  if (l->sp < fence(l) + 3)
    return bad(l, "stack underflow");
  mp_obj *kwargs = l->stack[l->sp - 1], *args = l->stack[l->sp - 2],
         *cls = l->stack[l->sp - 3];
  if (cls->type != MP_T_RECORD)
    return bad(l, "NEWOBJ_EX of something that is not a class");
  if (args->type != MP_T_TUPLE)
    return bad(l, "NEWOBJ_EX arguments are not a tuple");
  if (kwargs->type != MP_T_DICT)
    return bad(l, "NEWOBJ_EX keyword arguments are not a dict");
  l->sp -= 3;
  mp_obj *r = mp_record_newobj_ex_take(cls, args, kwargs);
  if (!r)
    return nomem();
  int rc = depth_ok(l, r);
  if (rc) {
    mp_obj_free(r);
    return rc;
  }
  return push(l, r);
}

/* ---- the opcode loop ----------------------------------------------------------- */

/* Read ahead of the parse in shared mode: small enough that a large
 * payload behind a few opcodes is mostly copied once, straight. */
size_t mp__pickle_fill_ahead = 8192;
/* A bytes payload with at least this much not yet in the buffer goes
 * straight from src into its object. */
size_t mp__pickle_direct_min = 4096;

static void
fill_to(loader *l, size_t need)
{
  size_t len = (size_t)(l->end - l->start); /* need <= len */
  size_t ahead = mp__pickle_fill_ahead;
  size_t to = len - need > ahead ? need + ahead : len;
  memcpy(l->scratch + l->filled, l->src + l->filled, to - l->filled);
  l->filled = to;
}

/* The n bytes at p (n <= left(l), checked by the caller) readable. */
static inline void
ensure(loader *l, size_t n)
{
  size_t need = (size_t)(l->p - l->start) + n;
  if (MP__UNLIKELY(l->src != NULL) && need > l->filled)
    fill_to(l, need);
}

#define NEED(n)                                                                \
  do {                                                                         \
    if (MP__UNLIKELY(left(l) < (n)))                                           \
      return bad(l, "truncated");                                              \
    ensure(l, (n));                                                            \
  } while (0)

/* Whether the n payload bytes at p (n <= left(l)) go from src straight
 * into their object: shared mode, with enough of them not read ahead. */
static int
direct(const loader *l, size_t n)
{
  size_t end = (size_t)(l->p - l->start) + n;
  return l->src && end > l->filled && end - l->filled >= mp__pickle_direct_min;
}

/* Those bytes as a bytes object (NULL: out of memory). */
static mp_obj *
bytes_direct(loader *l, size_t n)
{
  size_t at = (size_t)(l->p - l->start);
  uint8_t *d;
  mp_obj *b = mp__bytes_alloc(n, &d);
  if (!b)
    return NULL;
  size_t have = l->filled > at ? l->filled - at : 0; /* read ahead already */
  memcpy(d, l->scratch + at, have);
  memcpy(d + have, l->src + at + have, n - have);
  l->filled = at + n;
  return b;
}

static int
load_sized(loader *l, int width, mp_type t)
{
  NEED((size_t)width);
  uint64_t n = rd_le(l->p, width);
  l->p += width;
  if (n > left(l))
    return bad(l, "length past the end of the data");
  if (t == MP_T_BYTES && direct(l, n)) {
    mp_obj *b = bytes_direct(l, n);
    l->p += n;
    return push(l, b);
  }
  ensure(l, n);
  const uint8_t *d = l->p;
  l->p += n;
  if (t == MP_T_STR) {
    size_t ncp, at = 0;
    if (mp__utf8_check(d, n, &ncp, &at)) {
      l->p = d + at;
      return bad(l, "invalid UTF-8 in str");
    }
    return push(l, mp__str_new_valid((const char *)d, n, ncp, ncp == n));
  }
  if (t == MP_T_BYTES)
    return push(l, mp_bytes_new(d, n));
  return push(l, mp_bytearray_new(d, n));
}

static int
read_line(loader *l, const char **s, size_t *n)
{
  ensure(l, left(l)); /* text opcodes (protocol 0-2): all of it */
  const uint8_t *nl = memchr(l->p, '\n', left(l));
  if (!nl)
    return bad(l, "truncated GLOBAL");
  *s = (const char *)l->p;
  *n = (size_t)(nl - l->p);
  l->p = nl + 1;
  return 0;
}

static int
load_global(loader *l, const char *m, size_t ml, const char *n, size_t nl)
{
  size_t ncp;
  if (memchr(m, 0, ml) || memchr(n, 0, nl) ||
      mp__utf8_check((const uint8_t *)m, ml, &ncp, NULL) ||
      mp__utf8_check((const uint8_t *)n, nl, &ncp, NULL))
    return bad(l, "bad module or name in a class reference");
  char local[256];
  char *buf = ml + nl + 2 <= sizeof local ? local : malloc(ml + nl + 2);
  if (!buf)
    return nomem();
  memcpy(buf, m, ml);
  buf[ml] = 0;
  memcpy(buf + ml + 1, n, nl);
  buf[ml + 1 + nl] = 0;
  const char *module = buf, *name = buf + ml + 1;
  if (l->proto < 3) /* as CPython's fix_imports: Python 2 names */
    mp__compat_name(&module, &name);
  mp_obj *g = mp_global_new(module, name);
  if (buf != local)
    free(buf);
  return push(l, g);
}

static int
run(loader *l, mp_obj **out)
{
  int rc;
  size_t k = 0;
  for (;;) {
    if (MP__UNLIKELY(l->p >= l->end))
      return bad(l, "truncated (no STOP)");
    ensure(l, 1);
    uint8_t opc = *l->p++;
    switch (opc) {
    case OP_BININT1:
      NEED(1);
      rc = push(l, &mp__small_ints[*l->p++ - MP__SMALL_MIN].h);
      break;
    case OP_BININT2:
      NEED(2);
      rc = push(l, mp__int_fast((int64_t)rd_le(l->p, 2)));
      l->p += 2;
      break;
    case OP_BININT:
      NEED(4);
      rc = push(l, mp__int_fast((int32_t)(uint32_t)rd_le(l->p, 4)));
      l->p += 4;
      break;
    case OP_LONG1:
    case OP_LONG4: {
      int w = opc == OP_LONG1 ? 1 : 4;
      NEED((size_t)w);
      uint64_t n = rd_le(l->p, w);
      if (w == 4 && (n & 0x80000000u))
        return bad(l, "negative LONG4 length");
      l->p += w;
      if (n > left(l))
        return bad(l, "length past the end of the data");
      ensure(l, n);
      rc = push(l, mp__int_from_le(l->p, n));
      l->p += n;
      break;
    }
    case OP_BINFLOAT: {
      NEED(8);
      uint64_t bits = 0;
      for (int i = 0; i < 8; i++)
        bits = (bits << 8) | l->p[i];
      l->p += 8;
      double d;
      memcpy(&d, &bits, 8);
      rc = push(l, mp_float_new(d));
      break;
    }
    case OP_SHORT_BINUNICODE:
      rc = load_sized(l, 1, MP_T_STR);
      break;
    case OP_BINUNICODE:
      rc = load_sized(l, 4, MP_T_STR);
      break;
    case OP_BINUNICODE8:
      rc = load_sized(l, 8, MP_T_STR);
      break;
    case OP_SHORT_BINBYTES:
      rc = load_sized(l, 1, MP_T_BYTES);
      break;
    case OP_BINBYTES:
      rc = load_sized(l, 4, MP_T_BYTES);
      break;
    case OP_BINBYTES8:
      rc = load_sized(l, 8, MP_T_BYTES);
      break;
    case OP_BYTEARRAY8:
      rc = load_sized(l, 8, MP_T_BYTEARRAY);
      break;
    case OP_NONE:
      rc = push(l, &mp__none_obj);
      break;
    case OP_NEWTRUE:
      rc = push(l, &mp__true_obj);
      break;
    case OP_NEWFALSE:
      rc = push(l, &mp__false_obj);
      break;
    case OP_EMPTY_TUPLE:
      rc = push(l, mp__tuple_alloc(0));
      break;
    case OP_EMPTY_LIST:
      rc = push(l, mp__list_alloc(0));
      break;
    case OP_EMPTY_DICT:
      rc = push(l, mp__dict_alloc(MP_T_DICT));
      break;
    case OP_EMPTY_SET:
      rc = push(l, mp__dict_alloc(MP_T_SET));
      break;
    case OP_TUPLE1:
    case OP_TUPLE2:
    case OP_TUPLE3: {
      size_t n = (size_t)(opc - OP_TUPLE1 + 1);
      if (l->sp < fence(l) + n)
        return bad(l, "stack underflow");
      rc = make_tuple(l, l->sp - n);
      break;
    }
    case OP_MARK:
      if (l->nmarks == l->mcap) {
        size_t ncap = l->mcap ? l->mcap * 2 : 16;
        size_t *n = grow_array(l->marks, l->marks_local, l->mcap, ncap,
                               sizeof *n);
        if (!n)
          return nomem();
        l->marks = n;
        l->mcap = ncap;
      }
      l->marks[l->nmarks++] = l->sp;
      rc = 0;
      break;
    case OP_TUPLE:
      if ((rc = pop_mark(l, &k)))
        return rc;
      rc = make_tuple(l, k);
      break;
    case OP_APPEND:
      if (l->sp < fence(l) + 2)
        return bad(l, "stack underflow");
      rc = add_items(l, l->stack[l->sp - 2], l->sp - 1);
      break;
    case OP_APPENDS:
      if ((rc = pop_mark(l, &k)))
        return rc;
      if (k == 0 || k - 1 < fence(l))
        return bad(l, "stack underflow");
      rc = add_items(l, l->stack[k - 1], k);
      break;
    case OP_SETITEM:
      if (l->sp < fence(l) + 3)
        return bad(l, "stack underflow");
      rc = set_items(l, l->stack[l->sp - 3], l->sp - 2);
      break;
    case OP_SETITEMS:
      if ((rc = pop_mark(l, &k)))
        return rc;
      if (k == 0 || k - 1 < fence(l))
        return bad(l, "stack underflow");
      rc = set_items(l, l->stack[k - 1], k);
      break;
    case OP_ADDITEMS: {
      if ((rc = pop_mark(l, &k)))
        return rc;
      if (k == 0 || k - 1 < fence(l))
        return bad(l, "stack underflow");
      mp_obj *set = l->stack[k - 1];
      if (set->type != MP_T_SET)
        return bad(l, "ADDITEMS on something that is not a set");
      if ((rc = would_cycle(l, set, l->stack + k, l->sp - k)))
        return rc;
      size_t n = l->sp - k;
      l->sp = k;
      rc = fill_set(l, set, l->stack + k, n);
      break;
    }
    case OP_FROZENSET: {
      if ((rc = pop_mark(l, &k)))
        return rc;
      mp_obj *fs = mp__dict_alloc(MP_T_FROZENSET);
      if (!fs)
        return nomem();
      size_t n = l->sp - k;
      l->sp = k;
      if ((rc = fill_set(l, fs, l->stack + k, n))) {
        mp_obj_free(fs);
        return rc;
      }
      rc = push(l, fs);
      break;
    }
    case OP_POP:
      if (l->nmarks && l->marks[l->nmarks - 1] == l->sp) {
        l->nmarks--; /* POP of a mark on top */
      } else {
        if (l->sp <= fence(l))
          return bad(l, "stack underflow");
        mp_obj_free(l->stack[--l->sp]);
      }
      rc = 0;
      break;
    case OP_POP_MARK:
      if ((rc = pop_mark(l, &k)))
        return rc;
      while (l->sp > k)
        mp_obj_free(l->stack[--l->sp]);
      break;
    case OP_MEMOIZE:
      rc = memo_put(l, l->memo_len);
      break;
    case OP_BINPUT:
      NEED(1);
      rc = memo_put(l, *l->p++);
      break;
    case OP_LONG_BINPUT:
      NEED(4);
      rc = memo_put(l, (size_t)rd_le(l->p, 4));
      l->p += 4;
      break;
    case OP_BINGET:
      NEED(1);
      rc = memo_get(l, *l->p++);
      break;
    case OP_LONG_BINGET:
      NEED(4);
      rc = memo_get(l, (size_t)rd_le(l->p, 4));
      l->p += 4;
      break;
    case OP_GLOBAL: {
      const char *m = NULL, *n = NULL;
      size_t ml = 0, nl = 0;
      if ((rc = read_line(l, &m, &ml)) || (rc = read_line(l, &n, &nl)))
        return rc;
      rc = load_global(l, m, ml, n, nl);
      break;
    }
    case OP_STACK_GLOBAL: {
      if (l->sp < fence(l) + 2)
        return bad(l, "stack underflow");
      mp_obj *m = l->stack[l->sp - 2], *n = l->stack[l->sp - 1];
      if (m->type != MP_T_STR || n->type != MP_T_STR)
        return bad(l, "STACK_GLOBAL needs two str");
      const mp__str *ms = MP__AS(const mp__str, m), *ns = MP__AS(const mp__str, n);
      rc = load_global(l, ms->s, ms->len, ns->s, ns->len);
      if (!rc) {
        mp_obj *g = l->stack[--l->sp];
        l->sp -= 2;
        mp_obj_free(m);
        mp_obj_free(n);
        l->stack[l->sp++] = g;
      }
      break;
    }
    case OP_REDUCE:
      rc = do_reduce(l, 0);
      break;
    case OP_NEWOBJ:
      rc = do_reduce(l, 1);
      break;
    case OP_NEWOBJ_EX:
      rc = do_newobj_ex(l);
      break;
    case OP_BUILD: {
      if (l->sp < fence(l) + 2)
        return bad(l, "stack underflow");
      mp_obj *state = l->stack[l->sp - 1], *obj = l->stack[l->sp - 2];
      if (obj->type != MP_T_RECORD ||
          MP__AS(mp__record, obj)->kind == MP_RECORD_GLOBAL)
        return bad(l, "BUILD on something that is not an object");
      if ((rc = would_cycle(l, obj, &state, 1)))
        return rc;
      l->sp--;
      if ((rc = mp_record_set_state_take(obj, state)))
        return rc;
      rc = depth_ok(l, obj);
      break;
    }
    case OP_PROTO:
      NEED(1);
      if (*l->p > 5)
        return mp_seterr(MP_ENOTSUP, "pickle: unsupported protocol %d",
                         *l->p);
      l->proto = *l->p++;
      rc = 0;
      break;
    case OP_FRAME: {
      NEED(8);
      uint64_t n = rd_le(l->p, 8);
      l->p += 8;
      if (n > left(l))
        return bad(l, "frame past the end of the data");
      rc = 0;
      break;
    }
    case OP_STOP:
      if (l->sp <= fence(l))
        return bad(l, "STOP with an empty stack");
      if (l->p != l->end)
        return bad(l, "bytes after STOP");
      if (l->heights_stale &&
          (rc = check_heights(l, l->stack[l->sp - 1])))
        return rc;
      *out = l->stack[--l->sp];
      return 0;
    default:
      l->p--;
      return mp_seterr(MP_EMALFORMED,
                       "pickle: unsupported opcode 0x%02x at offset %zu", opc,
                       (size_t)(l->p - l->start));
    }
    if (MP__UNLIKELY(rc))
      return rc;
  }
}

/* src: NULL, or the shared memory `data` (a private buffer of len bytes)
 * is to be filled from. */
static int
load(const void *data, size_t len, const void *src,
     const mp_pickle_opts *opts, int with_fds, int *fds, size_t nfds,
     mp_obj **out)
{
  loader l;
  memset(&l, 0, offsetof(loader, stack_local));
  l.start = l.p = data;
  l.end = l.start + len;
  l.src = src;
  l.scratch = src ? (uint8_t *)data : NULL;
  l.max_depth = opts && opts->max_depth > 0 ? opts->max_depth
                                            : MP_PICKLE_DEFAULT_MAX_DEPTH;
  if (l.max_depth > MP__DEPTH_CAP)
    l.max_depth = MP__DEPTH_CAP;
  l.budget = (uint64_t)len * 16 + 100000;
  l.with_fds = with_fds;
  l.fds = fds;
  l.nfds = nfds;
  size_t max_size = opts && opts->max_size ? opts->max_size
                                           : MP_PICKLE_DEFAULT_MAX_SIZE;
  int rc = 0;
  mp_obj *result = NULL;
  /* the stack exists from the start (stack + 0 is then never NULL + 0) */
  l.stack = l.stack_local;
  l.scap = sizeof l.stack_local / sizeof l.stack_local[0];
  l.marks = l.marks_local;
  l.mcap = sizeof l.marks_local / sizeof l.marks_local[0];
  if (len > max_size)
    rc = mp_seterr(MP_ELIMIT, "pickle of %zu bytes is over max_size (%zu)",
                   len, max_size);
  else
    rc = run(&l, &result);
  while (l.sp)
    mp_obj_free(l.stack[--l.sp]);
  for (size_t i = 0; i < l.memo_cap; i++)
    mp_obj_free(l.memo[i]);
  if (l.stack != l.stack_local)
    free(l.stack);
  if (l.marks != l.marks_local)
    free(l.marks);
  free(l.memo);
  /* the received fds: each handle took a copy of what it uses */
  for (size_t i = 0; i < nfds; i++)
    close(fds[i]);
  if (rc) {
    mp_obj_free(result);
    return rc;
  }
  /* the flags only mean something while loading */
  *out = result;
  return 0;
}

int
mp_pickle_loads(const void *data, size_t len, const mp_pickle_opts *opts,
                mp_obj **out)
{
  mp__errdetail_clear();
  if ((!data && len) || !out)
    return mp_seterr(MP_EINVAL, "NULL argument");
  return load(data, len, NULL, opts, 0, NULL, 0, out);
}

int
mp_pickle_loads_fds(const void *data, size_t len, const mp_pickle_opts *opts,
                    int *fds, size_t nfds, mp_obj **out)
{
  mp__errdetail_clear();
  if ((!data && len) || !out || (nfds && !fds)) {
    for (size_t i = 0; fds && i < nfds; i++)
      close(fds[i]);
    return mp_seterr(MP_EINVAL, "NULL argument");
  }
  return load(data, len, NULL, opts, 1, fds, nfds, out);
}

int
mp__pickle_loads_shared(const void *src, size_t len, void *scratch,
                        const mp_pickle_opts *opts, int *fds, size_t nfds,
                        mp_obj **out)
{
  mp__errdetail_clear();
  if ((!src && len) || (!scratch && len) || !out || (nfds && !fds)) {
    for (size_t i = 0; fds && i < nfds; i++)
      close(fds[i]);
    return mp_seterr(MP_EINVAL, "NULL argument");
  }
  return load(scratch, len, len ? src : NULL, opts, 1, fds, nfds, out);
}
