/* Handle types of Value, Array and SharedMemory.  A received state and
 * the memory it names come from a peer that may be hostile: see
 * sync/handles.c; a SharedMemory fd must be a shared-memory file at least
 * as large as the state says. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fd.h"
#include "shm/shm_internal.h"

/* ---- Value / Array: (location, lock state or None) ---------------------- */

static void
value_release_h(void *p)
{
  mp_value_free(p);
}

static int
value_reduce(void *ptr, mp_obj **state, int (*add_fd)(void *, int),
             void *fdctx)
{
  mp__redctx c = {.add_fd = add_fd, .fdctx = fdctx};
  mp_value *v = ptr;
  *state = MP_TUPLE(mp__loc_reduce(&c, v->h.ref),
                    v->lock ? mp__lock_reduce_state(&c, v->lock) : mp_none());
  return *state ? 0 : MP_ENOMEM;
}

static int
value_rebuild_kind(const mp_obj *state, int *fds, size_t nfds, void **out,
                   int is_array)
{
  mp__rebctx c = {.fds = fds, .nfds = nfds};
  mp_obj *loc = mp_seq_item(state, 0), *lst = mp_seq_item(state, 1);
  mp_lock *l = NULL;
  mp__shref ref;
  void *p;
  size_t size;
  int rc = !loc || !lst ? mp_seterr(MP_EMALFORMED, "bad value state") : 0;
  if (!rc && mp_obj_type(lst) != MP_T_NONE)
    rc = mp__lock_rebuild_state(&c, lst, &l);
  if (!rc
      && (rc = mp__loc_rebuild(&c, loc, is_array ? MP__K_ARRAY : MP__K_VALUE,
                               &ref, &p, &size)) != 0)
    mp_lock_free(l);
  mp__rebctx_done(&c);
  mp_value *v = NULL;
  if (!rc && (rc = mp__value_adopt(ref, size, l, is_array, &v)) != 0) {
    mp__arena_unref(ref);
    mp_lock_free(l);
  }
  *out = v;
  return rc;
}

static int
value_rebuild(const mp_obj *state, int *fds, size_t nfds, void **out)
{
  return value_rebuild_kind(state, fds, nfds, out, 0);
}

static int
array_rebuild(const mp_obj *state, int *fds, size_t nfds, void **out)
{
  return value_rebuild_kind(state, fds, nfds, out, 1);
}

static const mp_handle_type value_type = {
    "mproc.Value", value_release_h, value_reduce, value_rebuild};
static const mp_handle_type array_type = {
    "mproc.Array", value_release_h, value_reduce, array_rebuild};

/* ---- SharedMemory: (name, size) + its fd --------------------------------- */

mp_shm *mp__shm_ref(mp_shm *m);
mp_shm *mp__shm_wrap(const char *name, int fd, size_t size, int *err);
int mp__shm_fd(mp_shm *m);

static void
shm_release_h(void *p)
{
  mp_shm_free(p);
}

static int
shm_reduce(void *ptr, mp_obj **state, int (*add_fd)(void *, int),
           void *fdctx)
{
  mp_shm *m = ptr;
  int fd = mp__shm_fd(m);
  if (fd < 0)
    return mp_seterr(MP_ECLOSED, "SharedMemory is closed");
  int rc = add_fd(fdctx, fd);
  if (rc < 0)
    return rc;
  *state = MP_TUPLE(mp_str_new(mp_shm_name(m)), mp_uint_new(mp_shm_size(m)));
  return *state ? 0 : MP_ENOMEM;
}

static int
shm_rebuild(const mp_obj *state, int *fds, size_t nfds, void **out)
{
  const char *name;
  size_t len;
  uint64_t size;
  char nm[256];
  int rc = 0;
  mp_obj *const *it;
  size_t n;
  if (nfds != 1 || mp_seq_items(state, &it, &n) || n != 2
      || mp_str_get(it[0], &name, &len) || mp_uint_get(it[1], &size)
      || size == 0
      || size > SIZE_MAX / 2 || strlen(name) != len
      || mp__shm_check_name(name, nm))
    rc = mp_seterr(MP_EMALFORMED, "bad SharedMemory state");
  struct stat st;
  if (!rc && (fstat(fds[0], &st) < 0 || !S_ISREG(st.st_mode)
              || (uint64_t)st.st_size < size))
    rc = mp_seterr(MP_EMALFORMED, "SharedMemory fd is not a shared-memory "
                                  "file of the described size");
  if (rc) {
    for (size_t i = 0; i < nfds; i++)
      mp__close(fds[i]);
    return rc;
  }
  int err = 0;
  mp_shm *m = mp__shm_wrap(nm, fds[0], (size_t)size, &err);
  if (!m)
    return err;
  *out = m;
  return 0;
}

static const mp_handle_type shm_type = {
    "mproc.SharedMemory", shm_release_h, shm_reduce, shm_rebuild};

__attribute__((constructor)) static void
register_types(void)
{
  mp_handle_register(&value_type);
  mp_handle_register(&array_type);
  mp_handle_register(&shm_type);
}

mp_obj *
mp_value_obj(mp_value *v)
{
  return v ? mp_handle_new(&value_type, mp__value_ref(v)) : NULL;
}

mp_value *
mp_value_from_obj(const mp_obj *o)
{
  return mp_handle_get(o, &value_type);
}

mp_obj *
mp_array_obj(mp_array *a)
{
  return a ? mp_handle_new(&array_type, mp__value_ref((mp_value *)a)) : NULL;
}

mp_array *
mp_array_from_obj(const mp_obj *o)
{
  return mp_handle_get(o, &array_type);
}

mp_obj *
mp_shm_obj(mp_shm *m)
{
  return m ? mp_handle_new(&shm_type, mp__shm_ref(m)) : NULL;
}

mp_shm *
mp_shm_from_obj(const mp_obj *o)
{
  return mp_handle_get(o, &shm_type);
}
