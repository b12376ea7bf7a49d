/* SPDX-License-Identifier: MIT */
/* Handle types of Value, Array and SharedMemory.  A received state and
 * the memory it names come from a peer that may be hostile: see
 * shared/shobj.c; a SharedMemory fd must be a shared-memory file at least
 * as large as the state says. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fd.h"
#include "shm/shm_internal.h"

/* ---- SharedMemory: (name, size) + its fd --------------------------------- */

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
  mp_handle_register(&mp__value_type.handle);
  mp_handle_register(&mp__array_type.handle);
  mp_handle_register(&shm_type);
}

MP__SHOBJ_PUBLIC(mp_value, mp_value, mp__value_type)
MP__SHOBJ_PUBLIC(mp_array, mp_array, mp__array_type)

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
