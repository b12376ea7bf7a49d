/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the Connection frame reader (and the pickle decoder
 * behind mp_conn_recv).  Input: one mode byte, then the byte stream a peer
 * sends (mode bits: end of stream or not, which receive call, read-ahead
 * on or off).  The stream goes through a real socket pair, the receiver reads
 * messages until the stream ends or breaks; nothing may crash, hang, leak or
 * allocate beyond the configured maximum (1 MiB here). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mproc.h>

#include "core/fd.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1 || size > (1 << 16))
    return 0;
  uint8_t mode = data[0];
  data++;
  size--;
  int sv[2];
  if (mp__socketpair(SOCK_STREAM, sv))
    return 0;
  int big = 1 << 20;
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  size_t off = 0;
  while (off < size) {
    ssize_t n = send(sv[0], data + off, size - off, MSG_DONTWAIT);
    if (n <= 0)
      break;
    off += (size_t)n;
  }
  if (mode & 1)
    shutdown(sv[0], SHUT_WR); /* else the stream just stops (timeouts) */
  mp_conn *c;
  if (mp_conn_new_fd(&c, sv[1], 1, 1)) {
    close(sv[0]);
    close(sv[1]);
    return 0;
  }
  mp_conn_set_max_recv(c, 1 << 20);
  if (mode & 0x40)
    mp_conn_set_readahead(c, 1);
  for (int i = 0; i < 64; i++) {
    int rc;
    switch ((mode >> 1) % 4) {
    case 0: {
      void *p;
      size_t n;
      rc = mp_conn_recv_bytes(c, &p, &n, (mode & 0x80) ? 300 : 0, 0);
      if (!rc)
        mp_free(p);
      break;
    }
    case 1: {
      uint8_t buf[64];
      size_t n;
      rc = mp_conn_recv_bytes_into(c, buf, sizeof buf, mode >> 4, &n, 0);
      if (rc == MP_ETOOSHORT) {
        void *p;
        rc = mp_conn_recv_bytes(c, &p, &n, 0, 0);
        if (!rc)
          mp_free(p);
      }
      break;
    }
    default: {
      mp_obj *o;
      rc = mp_conn_recv(c, &o, 0);
      if (!rc)
        mp_obj_free(o);
      else if (rc != MP_EEOF && rc != MP_ETIMEDOUT && rc != MP_ESTATE &&
               rc != MP_EMSGSIZE && mp_conn_readable(c))
        rc = 0; /* a bad pickle: the connection goes on */
      break;
    }
    }
    if (rc)
      break;
  }
  mp_conn_free(c);
  close(sv[0]);
  return 0;
}
