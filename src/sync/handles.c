/* Handle types of the sync primitives: how they cross to other processes.
 *
 * A primitive is reduced to the location of its block in the arena plus
 * the fd of its slab; the receiver maps the slab (once per process) and
 * makes a new handle to the same shared block.
 *
 * Every part of a received state, and of the memory it points at, comes
 * from a peer that may be hostile: import checks that the fd is a sealed
 * slab and the block lies inside it and is of the expected kind, and each
 * type's adopt function checks its own header against the block's size. */
#include <dlfcn.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fd.h"
#include "mproc/args.h"
#include "mproc/sync.h"
#include "sync/sync_internal.h"

/* ---- locations -------------------------------------------------------- */

static int
red_fd(mp__redctx *c, int fd)
{
  for (int i = 0; i < c->n; i++)
    if (c->fds[i] == fd)
      return i;
  if (c->n == (int)(sizeof c->fds / sizeof c->fds[0]))
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
      || (size_t)idx >= c->nfds || idx >= 16 || index > UINT32_MAX
      || off > UINT32_MAX)
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
    if (i >= 16 || !c->used[i])
      mp__close(c->fds[i]);
}

/* ---- Lock / RLock ------------------------------------------------------- */

mp_obj *
mp__lock_reduce_state(mp__redctx *c, mp_lock *l)
{
  return MP_TUPLE(mp__loc_reduce(c, l->h.ref),
                  mp_bool_new(l->h.kind == MP__K_RLOCK));
}

int
mp__lock_rebuild_state(mp__rebctx *c, const mp_obj *st, mp_lock **out)
{
  mp_obj *const *it;
  size_t n;
  int rec;
  if (mp_seq_items(st, &it, &n) || n != 2 || mp_bool_get(it[1], &rec))
    return mp_seterr(MP_EMALFORMED, "bad lock state");
  mp__shref ref;
  void *p;
  size_t size;
  int rc = mp__loc_rebuild(c, it[0], rec ? MP__K_RLOCK : MP__K_LOCK, &ref, &p,
                           &size);
  if (!rc && (rc = mp__lock_adopt(ref, size, rec, out)) != 0)
    mp__arena_unref(ref);
  return rc;
}

#define REDUCE_PROLOGUE                                                      \
  mp__redctx c = {.add_fd = add_fd, .fdctx = fdctx};                         \
  (void)c;

static void
lock_release_h(void *p)
{
  mp_lock_free(p);
}

static int
lock_reduce(void *ptr, mp_obj **state, int (*add_fd)(void *, int),
            void *fdctx)
{
  REDUCE_PROLOGUE
  *state = mp__lock_reduce_state(&c, ptr);
  return *state ? 0 : MP_ENOMEM;
}

static int
lock_rebuild(const mp_obj *state, int *fds, size_t nfds, void **out)
{
  mp__rebctx c = {.fds = fds, .nfds = nfds};
  mp_lock *l = NULL;
  int rc = mp__lock_rebuild_state(&c, state, &l);
  mp__rebctx_done(&c);
  *out = l;
  return rc;
}

static const mp_handle_type lock_type = {
    "mproc.Lock", lock_release_h, lock_reduce, lock_rebuild};

/* ---- Semaphore, Event: a location only -------------------------------- */

struct mp__shobj_any {
  struct mp__shobj h;
};

static void
sem_release_h(void *p)
{
  mp_sem_free(p);
}

static void
event_release_h(void *p)
{
  mp_event_free(p);
}

static int
loc_only_reduce(void *ptr, mp_obj **state, int (*add_fd)(void *, int),
                void *fdctx)
{
  REDUCE_PROLOGUE
  *state = MP_TUPLE(mp__loc_reduce(&c, ((struct mp__shobj_any *)ptr)->h.ref));
  return *state ? 0 : MP_ENOMEM;
}

static int
loc_only_rebuild(const mp_obj *state, int *fds, size_t nfds, unsigned tag,
                 mp__shref *ref, size_t *size)
{
  mp__rebctx c = {.fds = fds, .nfds = nfds};
  void *p;
  mp_obj *loc = mp_seq_item(state, 0);
  int rc = loc ? mp__loc_rebuild(&c, loc, tag, ref, &p, size)
               : mp_seterr(MP_EMALFORMED, "bad state");
  mp__rebctx_done(&c);
  return rc;
}

static int
sem_rebuild(const mp_obj *state, int *fds, size_t nfds, void **out)
{
  mp__shref ref;
  size_t size;
  mp_sem *m = NULL;
  int rc = loc_only_rebuild(state, fds, nfds, MP__K_SEM, &ref, &size);
  if (!rc && (rc = mp__sem_adopt(ref, size, &m)) != 0)
    mp__arena_unref(ref);
  *out = m;
  return rc;
}

static int
event_rebuild(const mp_obj *state, int *fds, size_t nfds, void **out)
{
  mp__shref ref;
  size_t size;
  mp_event *e = NULL;
  int rc = loc_only_rebuild(state, fds, nfds, MP__K_EVENT, &ref, &size);
  if (!rc && (rc = mp__event_adopt(ref, size, &e)) != 0)
    mp__arena_unref(ref);
  *out = e;
  return rc;
}

static const mp_handle_type sem_type = {
    "mproc.Semaphore", sem_release_h, loc_only_reduce, sem_rebuild};
static const mp_handle_type event_type = {
    "mproc.Event", event_release_h, loc_only_reduce, event_rebuild};

/* ---- Condition: its block and its lock ---------------------------------- */

static void
cond_release_h(void *p)
{
  mp_cond_free(p);
}

static int
cond_reduce(void *ptr, mp_obj **state, int (*add_fd)(void *, int),
            void *fdctx)
{
  REDUCE_PROLOGUE
  struct mp__shobj_any *o = ptr;
  *state = MP_TUPLE(mp__loc_reduce(&c, o->h.ref),
                    mp__lock_reduce_state(&c, mp__cond_lock(ptr)));
  return *state ? 0 : MP_ENOMEM;
}

static int
cond_rebuild(const mp_obj *state, int *fds, size_t nfds, void **out)
{
  mp__rebctx c = {.fds = fds, .nfds = nfds};
  mp_obj *loc = mp_seq_item(state, 0), *lst = mp_seq_item(state, 1);
  mp_lock *l = NULL;
  mp__shref ref;
  void *p;
  size_t size;
  int rc = !loc || !lst ? mp_seterr(MP_EMALFORMED, "bad condition state")
                        : mp__lock_rebuild_state(&c, lst, &l);
  if (!rc && (rc = mp__loc_rebuild(&c, loc, MP__K_COND, &ref, &p, &size)) != 0)
    mp_lock_free(l);
  mp__rebctx_done(&c);
  mp_cond *cv = NULL;
  if (!rc && (rc = mp__cond_adopt(ref, size, l, &cv)) != 0) {
    mp__arena_unref(ref);
    mp_lock_free(l);
  }
  *out = cv;
  return rc;
}

static const mp_handle_type cond_type = {
    "mproc.Condition", cond_release_h, cond_reduce, cond_rebuild};

/* ---- Barrier: its block and its action ---------------------------------
 * The action crosses as a function reference of core (object
 * file, offset, build-id), resolved in the receiver against its own load
 * base; one that cannot be resolved leaves the receiver's handle without
 * an action.  Its argument pointer only makes sense in the creating process
 * and fork children: other receivers call the action with NULL. */


static void
barrier_release_h(void *p)
{
  mp_barrier_free(p);
}

static mp_obj *
fn_reduce(int (*fn)(void *))
{
  if (!fn)
    return mp_none();
  mp__buf b = {0};
  mp_obj *o;
  if (mp__funcref_encode((const void *)fn, 1, &b) == 0)
    o = mp_bytes_new(b.data, b.len);
  else
    o = mp_none();
  mp__buf_release(&b);
  return o;
}

static int (*fn_rebuild(const mp_obj *o))(void *)
{
  const void *data;
  size_t len;
  if (mp_obj_type(o) != MP_T_BYTES || mp_bytes_get(o, &data, &len))
    return NULL;
  const uint8_t *p = data;
  void *addr = NULL;
  char err[256];
  if (mp__funcref_decode_code(&p, p + len, &addr, err, sizeof err) != 0) {
    mp_log_warning("barrier action not available here: %s", err);
    return NULL;
  }
  return (int (*)(void *))addr;
}

static int
barrier_reduce(void *ptr, mp_obj **state, int (*add_fd)(void *, int),
               void *fdctx)
{
  REDUCE_PROLOGUE
  int (*action)(void *);
  void *arg;
  mp__barrier_action(ptr, &action, &arg);
  *state = MP_TUPLE(mp__loc_reduce(&c, ((struct mp__shobj_any *)ptr)->h.ref),
                    fn_reduce(action));
  return *state ? 0 : MP_ENOMEM;
}

static int
barrier_rebuild(const mp_obj *state, int *fds, size_t nfds, void **out)
{
  mp__shref ref;
  size_t size;
  int rc = loc_only_rebuild(state, fds, nfds, MP__K_BARRIER, &ref, &size);
  if (rc)
    return rc;
  int (*action)(void *) = fn_rebuild(mp_seq_item(state, 1));
  mp_barrier *b = NULL;
  if ((rc = mp__barrier_adopt(ref, size, action, NULL, &b)) != 0)
    mp__arena_unref(ref);
  *out = b;
  return rc;
}

static const mp_handle_type barrier_type = {
    "mproc.Barrier", barrier_release_h, barrier_reduce, barrier_rebuild};

/* {RLock} in mp_args_parse: a kind of mproc.Lock (one handle type serves
 * both kinds of lock). */
static int
is_rlock(const void *ptr)
{
  return mp_lock_is_recursive(ptr);
}

static const mp_arg_kind rlock_kind = {"RLock", "mproc.Lock", is_rlock};

/* ---- public wrappers ------------------------------------------------------ */

__attribute__((constructor)) static void
register_types(void)
{
  mp_arg_kind_register(&rlock_kind);
  mp_handle_register(&lock_type);
  mp_handle_register(&sem_type);
  mp_handle_register(&event_type);
  mp_handle_register(&cond_type);
  mp_handle_register(&barrier_type);
}

static void *
shobj_ref(void *p)
{
  atomic_fetch_add(&((struct mp__shobj *)p)->refs, 1);
  return p;
}

#define OBJ_FUNCS(pfx, T, type)                                              \
  mp_obj *pfx##_obj(T *x)                                                    \
  {                                                                          \
    if (!x) {                                                                \
      mp_seterr(MP_EINVAL, "NULL");                                          \
      return NULL;                                                           \
    }                                                                        \
    return mp_handle_new(&type, shobj_ref(x));                               \
  }                                                                          \
  T *pfx##_from_obj(const mp_obj *o)                                         \
  {                                                                          \
    return mp_handle_get(o, &type);                                          \
  }

OBJ_FUNCS(mp_lock, mp_lock, lock_type)
OBJ_FUNCS(mp_sem, mp_sem, sem_type)
OBJ_FUNCS(mp_event, mp_event, event_type)
OBJ_FUNCS(mp_cond, mp_cond, cond_type)
OBJ_FUNCS(mp_barrier, mp_barrier, barrier_type)
