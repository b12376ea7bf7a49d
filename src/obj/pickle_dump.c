/* SPDX-License-Identifier: MIT */
/* mp_pickle_dumps: the encoder docs/python-wire.md section 5 recommends.
 * PROTO 4 (5 when a bytearray needs BYTEARRAY8), smallest int opcodes,
 * batches of 1000 items, no FRAME, a memo only for shared object records.
 * Protocols 2 and 3 write bytes, bytearray, set and frozenset the way
 * CPython does at those protocols. */
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "obj/pickle_int.h"

typedef struct dumper {
  mp__buf b;
  int proto;
  int auto_proto; /* protocol not chosen: upgrade to 5 for a bytearray */
  int max_depth;
  size_t max_size;
  int with_fds;
  int *fds;
  size_t nfds, capfds;
  const mp_obj **path; /* the containers above the one being saved */
  size_t pathcap;
  mp__ptrmap memo; /* object record -> memo index, for records held more
                    * than once */
  uint32_t memo_next; /* memo entries written */
  int in_place;          /* big payloads left where they are (segs) */
  mp__pickle_seg *segs;
  size_t nsegs, capsegs, seg_bytes;
  /* Most pickles are small and shallow: they are written here and in
   * path_local, and only one malloc of the exact size is left at the end
   * (a queue put or a manager call pays for no 4 KiB buffer and no
   * max-depth path array per value). */
  const mp_obj *path_local[64];
  uint8_t local[512];
} dumper;

static int save(dumper *d, const mp_obj *o, int depth);

const mp__proxy_wire *mp__proxy_wire_hooks;
_Thread_local int mp__proxy_wire_on;

void
mp__pickle_set_proxy_wire(const mp__proxy_wire *w)
{
  mp__proxy_wire_hooks = w;
}

static inline int
room(dumper *d, size_t n)
{
  if (MP__LIKELY(d->b.cap - d->b.len >= n && d->b.len + n <= d->max_size))
    return 0;
  if (n > d->max_size || d->b.len > d->max_size - n)
    return mp_seterr(MP_ELIMIT, "pickle larger than max_size (%zu bytes)",
                     d->max_size + d->seg_bytes);
  if (d->b.data == d->local) { /* leave the local buffer for the heap */
    size_t cap = sizeof d->local * 8;
    while (cap - d->b.len < n)
      cap *= 2;
    uint8_t *p = malloc(cap);
    if (!p)
      return mp_seterr(MP_ENOMEM, "out of memory");
    memcpy(p, d->local, d->b.len);
    d->b.data = p;
    d->b.cap = cap;
    return 0;
  }
  if (mp__buf_reserve(&d->b, n < 4096 ? 4096 : n))
    return mp_seterr(MP_ENOMEM, "out of memory");
  return 0;
}

/* Make room for path[depth]: the local array, then the heap. */
static int
grow_path(dumper *d, size_t depth)
{
  size_t cap = (size_t)d->max_depth + 2;
  if (depth < d->pathcap)
    return 0;
  const mp_obj **p = malloc(cap * sizeof *p);
  if (!p)
    return mp_seterr(MP_ENOMEM, "out of memory");
  memcpy(p, d->path, d->pathcap * sizeof *p);
  d->path = p;
  d->pathcap = cap;
  return 0;
}

static inline void
put1(dumper *d, uint8_t c)
{
  d->b.data[d->b.len++] = c;
}

static inline void
put_le(dumper *d, uint64_t v, int n)
{
  for (int k = 0; k < n; k++)
    d->b.data[d->b.len++] = (uint8_t)(v >> (8 * k));
}

static inline int
op(dumper *d, uint8_t c)
{
  int rc = room(d, 1);
  if (!rc)
    put1(d, c);
  return rc;
}

/* Note a payload left in place at the end of the buffer so far. */
static int
seg_add(dumper *d, const void *data, size_t len)
{
  if (d->nsegs == d->capsegs) {
    size_t cap = d->capsegs ? 2 * d->capsegs : 8;
    mp__pickle_seg *v = realloc(d->segs, cap * sizeof *v);
    if (!v)
      return mp_seterr(MP_ENOMEM, "out of memory");
    d->segs = v;
    d->capsegs = cap;
  }
  d->segs[d->nsegs++] = (mp__pickle_seg){d->b.len, data, len};
  d->seg_bytes += len;
  d->max_size -= len; /* room() goes on checking the whole pickle */
  return 0;
}

static int
write_sized(dumper *d, uint8_t op1, uint8_t op4, uint8_t op8,
            const void *data, size_t len)
{
  int in_place = d->in_place && len >= MP__PICKLE_INPLACE_MIN;
  int rc = room(d, in_place ? 9 : len + 9);
  if (rc)
    return rc;
  if (in_place && (len > d->max_size || d->b.len + 9 > d->max_size - len))
    return mp_seterr(MP_ELIMIT, "pickle larger than max_size (%zu bytes)",
                     d->max_size + d->seg_bytes);
  if (op1 && len < 256) {
    put1(d, op1);
    put1(d, (uint8_t)len);
  } else if (len <= 0xffffffffu) {
    put1(d, op4);
    put_le(d, len, 4);
  } else if (op8) {
    put1(d, op8);
    put_le(d, len, 8);
  } else {
    return mp_seterr(MP_ELIMIT,
                     "an object over 4 GiB needs protocol 4 or higher");
  }
  if (in_place)
    return seg_add(d, data, len);
  if (len)
    memcpy(d->b.data + d->b.len, data, len);
  d->b.len += len;
  return 0;
}

static int
save_str(dumper *d, const char *s, size_t len)
{
  if (d->proto >= 4)
    return write_sized(d, OP_SHORT_BINUNICODE, OP_BINUNICODE, OP_BINUNICODE8,
                       s, len);
  return write_sized(d, 0, OP_BINUNICODE, 0, s, len);
}

/* An int64 into room the caller reserved (10 bytes). */
static inline void
put_i64(dumper *d, int64_t v)
{
  if (v >= 0 && v <= 0xff) {
    put1(d, OP_BININT1);
    put1(d, (uint8_t)v);
  } else if (v >= 0 && v <= 0xffff) {
    put1(d, OP_BININT2);
    put_le(d, (uint64_t)v, 2);
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    put1(d, OP_BININT);
    put_le(d, (uint64_t)v, 4);
  } else {
    uint8_t le[8];
    size_t n = mp__i64_to_le(v, le);
    put1(d, OP_LONG1);
    put1(d, (uint8_t)n);
    memcpy(d->b.data + d->b.len, le, n);
    d->b.len += n;
  }
}

static inline int
save_i64(dumper *d, int64_t v)
{
  int rc = room(d, 10);
  if (rc)
    return rc;
  put_i64(d, v);
  return 0;
}

static int
save_global(dumper *d, const char *module, const char *name)
{
  int rc;
  if (d->proto >= 4) {
    if ((rc = save_str(d, module, strlen(module))) ||
        (rc = save_str(d, name, strlen(name))))
      return rc;
    return op(d, OP_STACK_GLOBAL);
  }
  if (d->proto == 2 && strcmp(module, "builtins") == 0)
    module = "__builtin__"; /* what CPython writes at protocol 2 */
  if (strchr(module, '\n') || strchr(name, '\n'))
    return mp_seterr(MP_EINVAL,
                     "a name with a newline cannot be written at protocol %d",
                     d->proto);
  size_t lm = strlen(module), ln = strlen(name);
  if ((rc = room(d, lm + ln + 3)))
    return rc;
  put1(d, OP_GLOBAL);
  memcpy(d->b.data + d->b.len, module, lm);
  d->b.len += lm;
  put1(d, '\n');
  memcpy(d->b.data + d->b.len, name, ln);
  d->b.len += ln;
  put1(d, '\n');
  return 0;
}

/* bytes at protocol 2: _codecs.encode(latin-1 text, 'latin1') */
static int
save_bytes_p2(dumper *d, const uint8_t *p, size_t len)
{
  int rc;
  if (len == 0) {
    if ((rc = save_global(d, "builtins", "bytes")) || (rc = op(d, OP_EMPTY_TUPLE)))
      return rc;
    return op(d, OP_REDUCE);
  }
  if ((rc = save_global(d, "_codecs", "encode")))
    return rc;
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    n += p[i] < 0x80 ? 1 : 2;
  if (n > 0xffffffffu)
    return mp_seterr(MP_ELIMIT, "bytes too large for protocol 2");
  if ((rc = room(d, n + 5)))
    return rc;
  put1(d, OP_BINUNICODE);
  put_le(d, n, 4);
  uint8_t *o = d->b.data + d->b.len;
  for (size_t i = 0; i < len; i++) {
    if (p[i] < 0x80) {
      *o++ = p[i];
    } else {
      *o++ = (uint8_t)(0xc0 | (p[i] >> 6));
      *o++ = (uint8_t)(0x80 | (p[i] & 0x3f));
    }
  }
  d->b.len += n;
  if ((rc = save_str(d, "latin1", 6)) || (rc = op(d, OP_TUPLE2)))
    return rc;
  return op(d, OP_REDUCE);
}

static int
save_bytes(dumper *d, const uint8_t *p, size_t len)
{
  if (d->proto == 2)
    return save_bytes_p2(d, p, len);
  return write_sized(d, OP_SHORT_BINBYTES, OP_BINBYTES,
                     d->proto >= 4 ? OP_BINBYTES8 : 0, p, len);
}

static int
save_bytearray(dumper *d, const uint8_t *p, size_t len)
{
  int rc;
  if (d->auto_proto && d->proto == 4) {
    d->proto = 5; /* PROTO is the second byte written */
    d->b.data[1] = 5;
  }
  if (d->proto >= 5) {
    if ((rc = room(d, len + 9)))
      return rc;
    put1(d, OP_BYTEARRAY8);
    put_le(d, len, 8);
    if (len)
      memcpy(d->b.data + d->b.len, p, len);
    d->b.len += len;
    return 0;
  }
  if ((rc = save_global(d, "builtins", "bytearray")))
    return rc;
  if (len == 0)
    rc = op(d, OP_EMPTY_TUPLE);
  else if (!(rc = save_bytes(d, p, len)))
    rc = op(d, OP_TUPLE1);
  return rc ? rc : op(d, OP_REDUCE);
}

/* items[0..n) in batches: MARK ... op_many, or item op_one for a batch of
 * one (as CPython) unless op_one is 0. */
static int
save_batches(dumper *d, mp_obj *const *items, size_t n, uint8_t op_one,
             uint8_t op_many, int depth)
{
  int rc;
  for (size_t i = 0; i < n; i += MP__PICKLE_BATCH) {
    size_t k = n - i < MP__PICKLE_BATCH ? n - i : MP__PICKLE_BATCH;
    if (k == 1 && op_one) {
      if ((rc = save(d, items[i], depth + 1)) || (rc = op(d, op_one)))
        return rc;
      continue;
    }
    if ((rc = op(d, OP_MARK)))
      return rc;
    /* the commonest item, an int64, is written inline into room reserved
     * for the whole batch (made again after any other item) */
    size_t reserved = 0;
    for (size_t j = 0; j < k; j++) {
      const mp_obj *x = items[i + j];
      if (x->type == MP_T_INT && !(x->flags & MP__F_BIG)) {
        if (!reserved) {
          if ((rc = room(d, (k - j) * 10)))
            return rc;
          reserved = k - j;
        }
        put_i64(d, MP__AS(const mp__int, x)->v);
        reserved--;
      } else {
        if ((rc = save(d, x, depth + 1)))
          return rc;
        reserved = 0;
      }
    }
    if ((rc = op(d, op_many)))
      return rc;
  }
  return 0;
}

static int
save_setitems(dumper *d, const mp__table *t, int depth)
{
  int rc;
  size_t i = 0;
  size_t left = t->used;
  while (left) {
    size_t k = left < MP__PICKLE_BATCH ? left : MP__PICKLE_BATCH;
    if (k > 1 && (rc = op(d, OP_MARK)))
      return rc;
    for (size_t j = 0; j < k; i++) {
      const mp__entry *e = &t->e[i];
      if (!e->key)
        continue;
      if ((rc = save(d, e->key, depth + 1)) ||
          (rc = save(d, e->value, depth + 1)))
        return rc;
      j++;
    }
    if ((rc = op(d, k > 1 ? OP_SETITEMS : OP_SETITEM)))
      return rc;
    left -= k;
  }
  return 0;
}

/* set members, into the mark-delimited batches of ADDITEMS / FROZENSET */
static int
save_members(dumper *d, const mp__table *t, size_t *i, size_t k, int depth)
{
  int rc;
  for (size_t j = 0; j < k; (*i)++) {
    const mp__entry *e = &t->e[*i];
    if (!e->key)
      continue;
    if ((rc = save(d, e->key, depth + 1)))
      return rc;
    j++;
  }
  return 0;
}

static int
save_set(dumper *d, const mp_obj *o, int depth)
{
  const mp__table *t = &MP__AS(const mp__dict, o)->t;
  int frozen = o->type == MP_T_FROZENSET;
  int rc;
  size_t i = 0;
  if (d->proto < 4) {
    /* builtins.set([items]) / builtins.frozenset([items]) */
    if ((rc = save_global(d, "builtins", frozen ? "frozenset" : "set")) ||
        (rc = op(d, OP_EMPTY_LIST)))
      return rc;
    size_t left = t->used;
    while (left) {
      size_t k = left < MP__PICKLE_BATCH ? left : MP__PICKLE_BATCH;
      if (k > 1 && (rc = op(d, OP_MARK)))
        return rc;
      if ((rc = save_members(d, t, &i, k, depth)) ||
          (rc = op(d, k > 1 ? OP_APPENDS : OP_APPEND)))
        return rc;
      left -= k;
    }
    if ((rc = op(d, OP_TUPLE1)))
      return rc;
    return op(d, OP_REDUCE);
  }
  if (frozen) {
    if ((rc = op(d, OP_MARK)) || (rc = save_members(d, t, &i, t->used, depth)))
      return rc;
    return op(d, OP_FROZENSET);
  }
  if ((rc = op(d, OP_EMPTY_SET)))
    return rc;
  size_t left = t->used;
  while (left) {
    size_t k = left < MP__PICKLE_BATCH ? left : MP__PICKLE_BATCH;
    if ((rc = op(d, OP_MARK)) || (rc = save_members(d, t, &i, k, depth)) ||
        (rc = op(d, OP_ADDITEMS)))
      return rc;
    left -= k;
  }
  return 0;
}

/* ---- the memo of shared object records --------------------------------------
 * An object record equals only itself, so a record the value holds twice
 * must load as one object again (in CPython and in mproc): its second use is
 * written as a memo fetch.  Only a record whose reference count says it may
 * be held more than once is memoized, so values without shared records are
 * written without a memo.  A record goes into the memo once it is written
 * whole (after its BUILD), so one that contains itself still recurses until
 * the depth check calls it a cycle. */

/* The object on top of the stack into the memo (MEMOIZE, or BINPUT at
 * protocols 2 and 3). */
static int
memo_put(dumper *d, const mp_obj *o)
{
  if (d->memo_next == UINT32_MAX)
    return mp_seterr(MP_ELIMIT, "too many shared records");
  uint32_t ix = d->memo_next++;
  int rc = room(d, 5);
  if (rc)
    return rc;
  if (d->proto >= 4) {
    put1(d, OP_MEMOIZE);
  } else if (ix < 256) {
    put1(d, OP_BINPUT);
    put1(d, (uint8_t)ix);
  } else {
    put1(d, OP_LONG_BINPUT);
    put_le(d, ix, 4);
  }
  return mp__ptrmap_put(&d->memo, o, ix);
}

static int
memo_get(dumper *d, uint32_t ix)
{
  int rc = room(d, 5);
  if (rc)
    return rc;
  if (ix < 256) {
    put1(d, OP_BINGET);
    put1(d, (uint8_t)ix);
  } else {
    put1(d, OP_LONG_BINGET);
    put_le(d, ix, 4);
  }
  return 0;
}

/* cls.__new__(cls, *args, **kwargs): NEWOBJ_EX from protocol 4; before,
 * copyreg.__newobj_ex__(cls, args, kwargs), which means the same. */
static int
save_newobj_ex(dumper *d, const mp__record *r, int depth)
{
  int rc;
  if (d->proto < 4 && (rc = save_global(d, "copyreg", "__newobj_ex__")))
    return rc;
  if ((rc = save(d, r->callable, depth + 1)) ||
      (rc = save(d, r->args, depth + 1)) ||
      (rc = save(d, r->kwargs, depth + 1)))
    return rc;
  if (d->proto >= 4)
    return op(d, OP_NEWOBJ_EX);
  if ((rc = op(d, OP_TUPLE3)))
    return rc;
  return op(d, OP_REDUCE);
}

static int
save_record(dumper *d, const mp__record *r, int depth)
{
  int rc;
  if (r->kind == MP_RECORD_GLOBAL)
    return save_global(d, r->module, r->name);
  int shared = __atomic_load_n(&r->h.rc, __ATOMIC_RELAXED) > 1;
  uintptr_t ix;
  if (shared && mp__ptrmap_get(&d->memo, &r->h, &ix))
    return memo_get(d, (uint32_t)ix);
  if (r->kind == MP_RECORD_NEWOBJ_EX)
    rc = save_newobj_ex(d, r, depth);
  else if (!(rc = save(d, r->callable, depth + 1)) &&
           !(rc = save(d, r->args, depth + 1)))
    rc = op(d, r->kind == MP_RECORD_NEWOBJ ? OP_NEWOBJ : OP_REDUCE);
  if (rc)
    return rc;
  if (r->listitems) {
    const mp__list *l = MP__AS(const mp__list, r->listitems);
    if ((rc = save_batches(d, l->items, l->n, OP_APPEND, OP_APPENDS, depth)))
      return rc;
  }
  if (r->dictitems) {
    const mp__list *l = MP__AS(const mp__list, r->dictitems);
    for (size_t i = 0; i < l->n; i += MP__PICKLE_BATCH) {
      size_t k = l->n - i < MP__PICKLE_BATCH ? l->n - i : MP__PICKLE_BATCH;
      if (k > 1 && (rc = op(d, OP_MARK)))
        return rc;
      for (size_t j = 0; j < k; j++) {
        const mp__tuple *kv = MP__AS(const mp__tuple, l->items[i + j]);
        if ((rc = save(d, kv->items[0], depth + 1)) ||
            (rc = save(d, kv->items[1], depth + 1)))
          return rc;
      }
      if ((rc = op(d, k > 1 ? OP_SETITEMS : OP_SETITEM)))
        return rc;
    }
  }
  if (r->state) {
    if ((rc = save(d, r->state, depth + 1)) || (rc = op(d, OP_BUILD)))
      return rc;
  }
  return shared ? memo_put(d, &r->h) : 0;
}

/* ---- handles -------------------------------------------------------------- */

typedef struct fdctx {
  dumper *d;
  int idx[64]; /* indexes of this handle's fds in d->fds */
  size_t n;
} fdctx;

static int
add_fd(void *ctx, int fd)
{
  fdctx *c = ctx;
  dumper *d = c->d;
  if (fd < 0)
    return mp_seterr(MP_EBADF, "bad fd %d", fd);
  if (c->n == sizeof c->idx / sizeof c->idx[0])
    return mp_seterr(MP_ELIMIT, "a handle may carry at most 64 fds");
  size_t i;
  for (i = 0; i < d->nfds; i++) /* each fd once */
    if (d->fds[i] == fd)
      break;
  if (i == d->nfds) {
    if (d->nfds == d->capfds) {
      size_t ncap = d->capfds ? d->capfds * 2 : 8;
      int *n = realloc(d->fds, ncap * sizeof *n);
      if (!n)
        return mp_seterr(MP_ENOMEM, "out of memory");
      d->fds = n;
      d->capfds = ncap;
    }
    d->fds[d->nfds++] = fd;
  }
  c->idx[c->n++] = (int)i;
  return 0;
}

static int
save_handle(dumper *d, const mp__handle *h, int depth)
{
  if (!d->with_fds)
    return mp_seterr(MP_ENOTSUP,
                     "a %s handle can only be sent over a channel that "
                     "passes file descriptors",
                     h->type->name);
  if (!h->type->reduce)
    return mp_seterr(MP_ENOTSUP, "handle type %s cannot be sent",
                     h->type->name);
  fdctx c;
  c.d = d;
  c.n = 0;
  mp_obj *state = NULL;
  int rc = h->type->reduce(h->ptr, &state, add_fd, &c);
  if (rc) {
    mp_obj_free(state);
    return rc;
  }
  if (!state)
    state = mp_none();
  /* mproc.handle(type name, state, (fd indexes...)) */
  if ((rc = save_global(d, "mproc", "handle")) ||
      (rc = save_str(d, h->type->name, strlen(h->type->name))) ||
      (rc = save(d, state, depth + 1)) || (rc = op(d, OP_MARK)))
    goto out;
  for (size_t i = 0; i < c.n; i++)
    if ((rc = save_i64(d, c.idx[i])))
      goto out;
  if ((rc = op(d, OP_TUPLE)) || (rc = op(d, OP_TUPLE3)) ||
      (rc = op(d, OP_REDUCE)))
    goto out;
out:
  mp_obj_free(state);
  return rc;
}

/* ---- function values: mproc.func(reference) ----------------------------------
 * The bytes are core's function reference (docs/function-values.md); a
 * CPython peer that maps mproc.func to a stand-in loads and re-pickles it
 * unchanged. */

static int
save_func(dumper *d, const mp_obj *o)
{
  mp__buf ref = {0};
  int rc = mp__func_ref(o, &ref);
  if (!rc && !(rc = save_global(d, "mproc", "func")) &&
      !(rc = save_bytes(d, ref.data, ref.len)) && !(rc = op(d, OP_TUPLE1)))
    rc = op(d, OP_REDUCE);
  mp__buf_release(&ref);
  return rc;
}

/* ---- the value walker --------------------------------------------------------- */

static int
save(dumper *d, const mp_obj *o, int depth)
{
  int rc;
  switch (MP__T(o)) {
  case MP_T_NONE:
    return op(d, OP_NONE);
  case MP_T_BOOL:
    return op(d, o == &mp__true_obj ? OP_NEWTRUE : OP_NEWFALSE);
  case MP_T_INT:
    if (o->flags & MP__F_BIG) {
      const mp__bigint *b = MP__AS(const mp__bigint, o);
      if (b->n < 256) {
        if ((rc = room(d, b->n + 2)))
          return rc;
        put1(d, OP_LONG1);
        put1(d, (uint8_t)b->n);
      } else {
        if (b->n > 0x7fffffff)
          return mp_seterr(MP_ELIMIT, "int too large to pickle");
        if ((rc = room(d, b->n + 5)))
          return rc;
        put1(d, OP_LONG4);
        put_le(d, b->n, 4);
      }
      memcpy(d->b.data + d->b.len, b->le, b->n);
      d->b.len += b->n;
      return 0;
    }
    return save_i64(d, MP__AS(const mp__int, o)->v);
  case MP_T_FLOAT: {
    if ((rc = room(d, 9)))
      return rc;
    uint64_t bits;
    memcpy(&bits, &MP__AS(const mp__float, o)->v, 8);
    put1(d, OP_BINFLOAT);
    for (int k = 7; k >= 0; k--)
      put1(d, (uint8_t)(bits >> (8 * k)));
    return 0;
  }
  case MP_T_STR:
    return save_str(d, MP__AS(const mp__str, o)->s, MP__AS(const mp__str, o)->len);
  case MP_T_BYTES:
    return save_bytes(d, MP__AS(const mp__bytes, o)->d,
                      MP__AS(const mp__bytes, o)->len);
  case MP_T_BYTEARRAY:
    return save_bytearray(d, MP__AS(const mp__bytearray, o)->d,
                          MP__AS(const mp__bytearray, o)->len);
  case MP_T_HANDLE: {
    const mp__handle *h = MP__AS(const mp__handle, o);
    if (mp__proxy_wire_on && mp__proxy_wire_hooks &&
        h->type == mp__proxy_wire_hooks->type) {
      mp_obj *v = NULL;
      if ((rc = mp__proxy_wire_hooks->write(h->ptr, &v)) == 0)
        rc = save(d, v, depth);
      mp_obj_free(v);
      return rc;
    }
    return save_handle(d, h, depth);
  }
  case MP_T_FUNC:
    return save_func(d, o);
  default:
    break;
  }
  if (MP__UNLIKELY((size_t)depth >= d->pathcap) &&
      (rc = grow_path(d, (size_t)depth)))
    return rc;
  d->path[depth] = o;
  if (depth >= d->max_depth)
    return mp__depth_error(d->path, depth + 1, d->max_depth);
  switch (MP__T(o)) {
  case MP_T_TUPLE: {
    const mp__tuple *t = MP__AS(const mp__tuple, o);
    if (t->n == 0)
      return op(d, OP_EMPTY_TUPLE);
    if (t->n > 3 && (rc = op(d, OP_MARK)))
      return rc;
    for (size_t i = 0; i < t->n; i++)
      if ((rc = save(d, t->items[i], depth + 1)))
        return rc;
    return op(d, t->n > 3 ? OP_TUPLE : (uint8_t)(OP_TUPLE1 + t->n - 1));
  }
  case MP_T_LIST: {
    const mp__list *l = MP__AS(const mp__list, o);
    if ((rc = op(d, OP_EMPTY_LIST)))
      return rc;
    return save_batches(d, l->items, l->n, OP_APPEND, OP_APPENDS, depth);
  }
  case MP_T_DICT:
    if ((rc = op(d, OP_EMPTY_DICT)))
      return rc;
    return save_setitems(d, &MP__AS(const mp__dict, o)->t, depth);
  case MP_T_SET:
  case MP_T_FROZENSET:
    return save_set(d, o, depth);
  case MP_T_RECORD:
    return save_record(d, MP__AS(const mp__record, o), depth);
  default:
    return mp_seterr(MP_EINVAL, "bad value");
  }
}

/* A thread's scratch buffer for pickles that live only until they are
 * sent (mp__pickle_dumps_tmp).  A MiB-sized item would otherwise take a
 * fresh block from malloc per send -- glibc maps such blocks anew, so every
 * send faulted its pages in.  Kept up to SCRATCH_KEEP bytes; freed when
 * its thread exits. */
#define SCRATCH_KEEP ((size_t)16 << 20)
static _Thread_local struct {
  uint8_t *data;
  size_t cap;
  int busy; /* handed out and not yet released */
} scratch;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void
scratch_exit(void *arg)
{
  (void)arg;
  free(scratch.data);
  scratch.data = NULL;
  scratch.cap = 0;
}

static void
scratch_init(void)
{
  pthread_key_create(&scratch_key, scratch_exit);
}

static int
dump(const mp_obj *o, const mp_pickle_opts *opts, void **out, size_t *len,
     int **fds, size_t *nfds, int use_scratch, mp__pickled *segs_out)
{
  if (!o || !out || !len)
    return mp_seterr(MP_EINVAL, "NULL argument");
  dumper d;
  memset(&d, 0, offsetof(dumper, path_local));
  d.proto = opts && opts->protocol ? opts->protocol : 4;
  d.auto_proto = !(opts && opts->protocol);
  if (d.proto < 2 || d.proto > 5)
    return mp_seterr(MP_EINVAL, "pickle protocol %d not supported (2..5)",
                     d.proto);
  d.max_depth = opts && opts->max_depth > 0 ? opts->max_depth
                                            : MP_PICKLE_DEFAULT_MAX_DEPTH;
  if (d.max_depth > MP__DEPTH_CAP)
    d.max_depth = MP__DEPTH_CAP;
  d.max_size = opts && opts->max_size ? opts->max_size
                                      : MP_PICKLE_DEFAULT_MAX_SIZE;
  d.with_fds = fds != NULL;
  d.in_place = segs_out != NULL;
  d.path = d.path_local;
  d.pathcap = sizeof d.path_local / sizeof d.path_local[0];
  d.b.data = d.local;
  d.b.cap = sizeof d.local;
  if (use_scratch && scratch.data) {
    d.b.data = scratch.data;
    d.b.cap = scratch.cap;
  }
  int rc = room(&d, 3);
  if (!rc) {
    put1(&d, OP_PROTO);
    put1(&d, (uint8_t)d.proto);
    rc = save(&d, o, 0);
  }
  if (!rc)
    rc = op(&d, OP_STOP);
  if (d.path != d.path_local)
    free(d.path);
  mp__ptrmap_release(&d.memo);
  if (use_scratch && d.b.data != d.local) { /* it may have grown */
    if (!scratch.data) {
      pthread_once(&scratch_once, scratch_init);
      pthread_setspecific(scratch_key, (void *)1);
    }
    scratch.data = d.b.data;
    scratch.cap = d.b.cap;
    if (rc) /* the scratch stays; nothing is handed out */
      d.b.data = d.local;
  }
  if (!rc && d.b.data == d.local) {
    uint8_t *p = malloc(d.b.len);
    if (p)
      memcpy(p, d.local, d.b.len);
    else
      rc = MP_ENOMEM;
    d.b.data = p;
  }
  if (rc) {
    if (rc == MP_ENOMEM)
      mp_seterr(MP_ENOMEM, "out of memory");
    if (d.b.data != d.local)
      mp__buf_release(&d.b);
    free(d.fds);
    free(d.segs);
    return rc;
  }
  *out = d.b.data;
  *len = d.b.len;
  if (segs_out) {
    segs_out->segs = d.segs;
    segs_out->nsegs = d.nsegs;
    segs_out->total = d.b.len + d.seg_bytes;
  }
  if (fds) {
    *fds = d.fds;
    *nfds = d.nfds;
  }
  return 0;
}

int
mp_pickle_dumps(const mp_obj *o, const mp_pickle_opts *opts, void **out,
                size_t *len)
{
  mp__errdetail_clear();
  return dump(o, opts, out, len, NULL, NULL, 0, NULL);
}

int
mp_pickle_dumps_fds(const mp_obj *o, const mp_pickle_opts *opts, void **out,
                    size_t *len, int **fds, size_t *nfds)
{
  mp__errdetail_clear();
  if (!fds || !nfds)
    return mp_seterr(MP_EINVAL, "NULL argument");
  *fds = NULL;
  *nfds = 0;
  return dump(o, opts, out, len, fds, nfds, 0, NULL);
}

int
mp__pickle_dumps_tmp(const mp_obj *o, int with_fds, int in_place,
                     mp__pickled *out)
{
  *out = (mp__pickled){0};
  int use = !scratch.busy;
  void *data = NULL;
  int rc = dump(o, NULL, &data, &out->len, with_fds ? &out->fds : NULL,
                with_fds ? &out->nfds : NULL, use, in_place ? out : NULL);
  if (rc)
    return rc;
  if (!in_place)
    out->total = out->len;
  out->data = data;
  out->scratch = use && data == scratch.data;
  if (out->scratch)
    scratch.busy = 1;
  return 0;
}

void
mp__pickled_copy(const mp__pickled *p, void *dst)
{
  uint8_t *w = dst;
  const uint8_t *r = p->data;
  size_t at = 0;
  for (size_t i = 0; i < p->nsegs; i++) {
    memcpy(w, r + at, p->segs[i].at - at);
    w += p->segs[i].at - at;
    memcpy(w, p->segs[i].ptr, p->segs[i].len);
    w += p->segs[i].len;
    at = p->segs[i].at;
  }
  if (p->len > at)
    memcpy(w, r + at, p->len - at);
}

void
mp__pickled_release(mp__pickled *p)
{
  if (p->scratch) {
    scratch.busy = 0;
    if (scratch.cap > SCRATCH_KEEP) { /* one huge item: not kept */
      free(scratch.data);
      scratch.data = NULL;
      scratch.cap = 0;
    }
  } else {
    free((void *)p->data);
  }
  free(p->fds);
  free(p->segs);
  *p = (mp__pickled){0};
}
