/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the manager server's request decoder and dispatcher
 * (src/manager/server.c), as a client on the network reaches them.  Input:
 * a run of requests, each a 2-byte little-endian length and that many bytes
 * of pickle, dispatched in turn on one server -- a request whose ident is
 * None as a server method (a one-shot connection's), one with a str ident
 * as a serve-loop object call -- so creates, calls on what was created,
 * increfs/decrefs and every type's methods meet hostile arguments.  Nothing
 * may crash, hang (waits time out at once here), leak or grow without
 * bound; the objects are dropped after each input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

#include "fuzz.h"
#include "manager/manager_internal.h"

static mp__mgr_server *srv;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!srv) {
    mp__mgr_limits lim = { .max_objects = 64 };
    if (mp__mgr_server_new(&srv, NULL, "k", 1, NULL, 0, NULL, 0, &lim))
      abort();
    mp__mgr_nowait(1);
  }
  while (size >= 2) {
    size_t n = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2;
    size -= 2;
    if (n > size)
      n = size;
    void *reply = NULL;
    size_t rlen = 0;
    if (mp__mgr_server_dispatch_bytes(srv, data, n, &reply, &rlen) == 0) {
      /* every reply is a well-formed (kind, value) pair */
      mp_obj *r = NULL;
      if (mp_pickle_loads(reply, rlen, NULL, &r))
        abort();
      mp_obj *v = NULL;
      mp__mgr_reply_read(r, &v);
      mp_obj_free(v);
      mp_obj_free(r);
    }
    mp_free(reply);
    data += n;
    size -= n;
  }
  mp__mgr_server_reset(srv);
  return 0;
}
