/* SPDX-License-Identifier: MIT */
/* The shared-object base (see shared_internal.h): what every process-shared
 * type does alike -- its handles' life, and how they cross processes.
 *
 * Every part of a received state, and of the memory it points at, comes
 * from a peer that may be hostile: import checks that the fd is a sealed
 * slab and the block lies inside it and is of the expected kind, and each
 * type's adopt checks its own header against the block's size. */
#include <stdlib.h>
#include <string.h>

#include "core/fd.h"
#include "shared/shared_internal.h"

/* ---- locations ------------------------------------------------------------ */

static int
red_fd(mp__redctx *c, int fd)
{
  for (int i = 0; i < c->n; i++)
    if (c->fds[i] == fd)
      return i;
  if (c->n == (int)MP__ARRAY_LEN(c->fds))
    return mp_seterr(MP_ELIMIT, "too many fds in one handle");
  int rc = c->add_fd(c->fdctx, fd);
  if (rc < 0)
    return rc;
  c->fds[c->n] = fd;
  return c->n++;
}

mp_obj *
mp__loc_reduce(mp__redctx *c, mp__shref ref)
{
  mp__arena_loc loc;
  int fd;
  mp__arena_export(ref, &loc, &fd);
  int idx = red_fd(c, fd);
  if (idx < 0)
    return NULL;
  return MP_TUPLE(mp_uint_new(loc.arena_id), mp_uint_new(loc.slab_index),
                  mp_uint_new(loc.slab_size), mp_uint_new(loc.off),
                  mp_int_new(idx));
}

int
mp__loc_rebuild(mp__rebctx *c, const mp_obj *t, unsigned tag,
                mp__shref *ref, void **ptr, size_t *size)
{
  mp_obj *const *it;
  size_t n;
  uint64_t id, index, slab_size, off;
  int64_t idx;
  if (mp_seq_items(t, &it, &n) || n != 5 || mp_uint_get(it[0], &id)
      || mp_uint_get(it[1], &index) || mp_uint_get(it[2], &slab_size)
      || mp_uint_get(it[3], &off) || mp_int_get(it[4], &idx) || idx < 0
      || (size_t)idx >= c->nfds || idx >= (int64_t)MP__ARRAY_LEN(c->used)
      || index > UINT32_MAX || off > UINT32_MAX)
    return mp_seterr(MP_EMALFORMED, "bad shared object location");
  mp__arena_loc loc = {.arena_id = id,
                       .slab_index = (uint32_t)index,
                       .slab_size = slab_size,
                       .off = (uint32_t)off};
  int fd = -1, reused = c->used[idx];
  if (!reused) {
    fd = c->fds[idx];
    c->used[idx] = 1;
  }
  /* a second use of the same fd finds the slab already mapped */
  int rc = mp__arena_import(&loc, fd, tag, ref, ptr, size);
  if (rc == MP_EBADF && reused)
    rc = mp_seterr(MP_EMALFORMED, "two slabs described with one fd");
  return rc;
}

void
mp__rebctx_done(mp__rebctx *c)
{
  for (size_t i = 0; i < c->nfds; i++)
    if (i >= MP__ARRAY_LEN(c->used) || !c->used[i])
      mp__close(c->fds[i]);
}

/* ---- handles ---------------------------------------------------------------- */

static void
set_out(void *out, void *h)
{
  memcpy(out, &h, sizeof h); /* out is an mp_sem ** or the like */
}

/* The object h holds (type->sub), kept as a pointer of its own type. */
static void *
get_sub(const struct mp__shobj *h)
{
  void *sub;
  memcpy(&sub, (const char *)h + h->type->sub, sizeof sub);
  return sub;
}

/* The handle of block `ref` holding `size` bytes; on failure the block's
 * reference and more->sub are dropped. */
static void *
adopt(const mp__shtype *t, mp__shref ref, size_t size, const mp__shmore *more,
      int *err)
{
  static const mp__shmore none;
  if (!more)
    more = &none;
  struct mp__shobj *h = NULL;
  if (size < t->block)
    *err = mp_seterr(MP_EMALFORMED, "shared block too small for a %s (%zu "
                     "bytes)", t->handle.name, size);
  else if (!(h = calloc(1, t->size)))
    *err = MP_ENOMEM;
  if (h) {
    atomic_init(&h->refs, 1);
    h->kind = more->kind ? more->kind : t->kind;
    h->ref = ref;
    h->type = t;
    if (t->data) {
      void *p = mp__arena_ptr(ref);
      memcpy((char *)h + t->data, &p, sizeof p);
    }
    if ((*err = t->adopt ? t->adopt(h, size, more) : 0) == 0) {
      if (t->sub_type)
        memcpy((char *)h + t->sub, &more->sub, sizeof more->sub);
      return h;
    }
    free(h);
  }
  mp__arena_unref(ref);
  mp__shobj_free(more->sub);
  return NULL;
}

int
mp__shobj_new(const mp__shtype *t, const mp__shmore *more, size_t size,
              size_t align, const void *init, size_t initlen, void *out)
{
  int err = MP_EINVAL;
  void *p = NULL;
  mp__shref ref;
  if (out) {
    set_out(out, NULL);
    int kind = more && more->kind ? more->kind : t->kind;
    p = mp__arena_alloc(size, align, (unsigned)kind, &ref, &err);
  }
  if (!p) {
    if (more)
      mp__shobj_free(more->sub);
    return err;
  }
  if (initlen)
    memcpy(p, init, initlen);
  set_out(out, adopt(t, ref, size, more, &err));
  return err;
}

void *
mp__shobj_ref(void *obj)
{
  struct mp__shobj *h = obj;
  atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
  return obj;
}

void
mp__shobj_free(void *obj)
{
  struct mp__shobj *h = obj;
  if (!h || atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) != 1)
    return;
  if (h->type->sub_type)
    mp__shobj_free(get_sub(h));
  mp__arena_unref(h->ref);
  free(h);
}

mp_obj *
mp__shobj_obj(const mp__shtype *t, void *obj)
{
  if (!obj) {
    mp_seterr(MP_EINVAL, "NULL");
    return NULL;
  }
  return mp_handle_new(&t->handle, mp__shobj_ref(obj));
}

/* ---- crossing processes ---------------------------------------------------- */

static mp_obj *
reduce_state(mp__redctx *c, const struct mp__shobj *h)
{
  const mp__shtype *t = h->type;
  mp_obj *loc = mp__loc_reduce(c, h->ref);
  if (t->reduce_more)
    return MP_TUPLE(loc, t->reduce_more(c, h));
  if (!t->sub_type)
    return MP_TUPLE(loc);
  void *sub = get_sub(h);
  return MP_TUPLE(loc, sub ? reduce_state(c, sub) : mp_none());
}

int
mp__shobj_reduce(void *obj, mp_obj **state,
                 int (*add_fd)(void *fdctx, int fd), void *fdctx)
{
  mp__redctx c = {.add_fd = add_fd, .fdctx = fdctx};
  *state = reduce_state(&c, obj);
  return *state ? 0 : MP_ENOMEM;
}

static int
rebuild_state(mp__rebctx *c, const mp__shtype *t, const mp_obj *state,
              void *out)
{
  set_out(out, NULL);
  mp_obj *const *it;
  size_t n;
  int more_items = t->reduce_more || t->sub_type;
  if (mp_seq_items(state, &it, &n) || n != (more_items ? 2u : 1u))
    return mp_seterr(MP_EMALFORMED, "bad %s state", t->handle.name);
  mp__shmore more = {0};
  int rc = 0;
  if (t->rebuild_more)
    rc = t->rebuild_more(c, it[1], &more);
  else if (t->sub_type
           && !(t->sub_optional && mp_obj_type(it[1]) == MP_T_NONE))
    rc = rebuild_state(c, t->sub_type, it[1], &more.sub);
  if (rc)
    return rc;
  mp__shref ref;
  void *p;
  size_t size;
  if ((rc = mp__loc_rebuild(c, it[0], more.kind ? more.kind : t->kind, &ref,
                            &p, &size)) != 0) {
    mp__shobj_free(more.sub);
    return rc;
  }
  set_out(out, adopt(t, ref, size, &more, &rc));
  return rc;
}

int
mp__shobj_rebuild(const mp__shtype *t, const mp_obj *state, int *fds,
                  size_t nfds, void **out)
{
  mp__rebctx c = {.fds = fds, .nfds = nfds};
  int rc = rebuild_state(&c, t, state, out);
  mp__rebctx_done(&c);
  return rc;
}
