/* SPDX-License-Identifier: MIT */
/* Values over connections (send/recv as pickles) and the Connection handle
 * type that lets a connection travel inside a value. */
#include <stdlib.h>

#include "conn/conn_internal.h"
#include "core/fd.h"
#include "obj/obj_internal.h"

/* ---- the handle type "mproc.Connection" ---------------------------------
 * state: (readable, writable); one descriptor.  The receiving process gets
 * its own descriptor for the same socket (SCM_RIGHTS, inheritance or spawn
 * placement), exactly as Python's rebuild_connection does with DupFd. */

static void
conn_release(void *ptr)
{
  mp_conn_free(ptr);
}

static int
conn_reduce(void *ptr, mp_obj **state, int (*add_fd)(void *, int),
            void *fdctx)
{
  mp_conn *c = ptr;
  int fd = mp_conn_fileno(c);
  if (fd < 0)
    return mp_seterr(MP_ECLOSED, "cannot send a closed connection");
  if (mp__conn_has_buffered(c))
    return mp_seterr(MP_EBUSY, "the connection has read ahead: the bytes it "
                               "holds would not travel with it");
  *state = MP_TUPLE(mp_bool_new(c->readable), mp_bool_new(c->writable));
  if (!*state)
    return MP_ENOMEM;
  return add_fd(fdctx, fd);
}

static int
conn_rebuild(const mp_obj *state, int *fds, size_t nfds, void **out)
{
  int r = 0, w = 0, rc = 0;
  mp_obj *const *items;
  size_t n;
  if (nfds != 1 || mp_seq_items(state, &items, &n) || n != 2 ||
      mp_bool_get(items[0], &r) || mp_bool_get(items[1], &w) || (!r && !w))
    rc = mp_seterr(MP_EMALFORMED, "malformed mproc.Connection state");
  mp_conn *c = NULL;
  if (!rc)
    rc = mp__conn_wrap(&c, fds[0], r, w);
  if (rc) {
    for (size_t i = 0; i < nfds; i++)
      mp__close(fds[i]);
    return rc;
  }
  *out = c;
  return 0;
}

static const mp_handle_type conn_type = {
  .name = "mproc.Connection",
  .release = conn_release,
  .reduce = conn_reduce,
  .rebuild = conn_rebuild,
};

__attribute__((constructor)) static void
register_conn_type(void)
{
  mp_handle_register(&conn_type);
}

MP_EXTERN const mp_handle_type *
mp_conn_handle_type(void)
{
  return &conn_type;
}

MP_EXTERN mp_obj *
mp_conn_obj(mp_conn *c)
{
  if (!c)
    return NULL;
  return mp_handle_new(&conn_type, mp_conn_ref(c));
}

MP_EXTERN mp_conn *
mp_conn_from_obj(const mp_obj *o)
{
  return mp_handle_get(o, &conn_type);
}

/* ---- send / recv ---------------------------------------------------------- */

MP_EXTERN int
mp_conn_send(mp_conn *c, const mp_obj *o)
{
  mp__errdetail_clear();
  if (!c || !o)
    return mp_seterr(MP_EINVAL, "mp_conn_send: NULL argument");
  mp__pickled pk;
  int rc = mp__pickle_dumps_tmp(o, 1, 0, &pk);
  if (rc)
    return rc;
  rc = mp__conn_send_msg(c, pk.data, pk.len, pk.fds, pk.nfds);
  mp__pickled_release(&pk);
  return rc;
}

MP_EXTERN int
mp_conn_recv(mp_conn *c, mp_obj **out, double timeout)
{
  mp__errdetail_clear();
  if (!c || !out)
    return mp_seterr(MP_EINVAL, "mp_conn_recv: NULL argument");
  void *data = NULL;
  size_t len = 0, nfds = 0;
  int *fds = NULL;
  int rc = mp__conn_recv_msg(c, &data, &len, 0, &fds, &nfds, timeout);
  if (rc)
    return rc;
  mp_pickle_opts po = { .max_size = len ? len : 1 };
  rc = mp_pickle_loads_fds(data, len, &po, fds, nfds, out); /* owns fds */
  free(fds);
  mp_free(data);
  return rc;
}
