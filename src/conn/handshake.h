/* SPDX-License-Identifier: MIT */
/* The authentication handshake of multiprocessing.connection, as a pure
 * state machine (docs/python-wire.md section 2).
 *
 * The machine does no I/O: a driver writes what it has to say (out[outpos ..
 * outlen)) and feeds it exactly the bytes it asks for (mp__hs_want), so it
 * never consumes a byte past its last frame -- the peer's first application
 * message may follow at once.  The same machine drives a blocking client, the
 * listener's concurrent accepts, and the fuzzer. */
#ifndef MPROC_CONN_HANDSHAKE_H
#define MPROC_CONN_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"

enum mp__hs_role {
  MP__HS_LISTENER = 1, /* deliver, then answer (Listener.accept) */
  MP__HS_CLIENT,       /* answer, then deliver (Client) */
  MP__HS_DELIVER,      /* deliver_challenge only */
  MP__HS_ANSWER        /* answer_challenge only */
};

/* Largest frame payload either side accepts (CPython: recv_bytes(256)). */
#define MP__HS_MAX_FRAME 256

typedef struct mp__hs {
  const uint8_t *steps; /* the role's step sequence */
  int step;
  int status;           /* 0 running, 1 done, < 0 failed (a code) */
  int fail_after_send;  /* #FAILURE# queued: fail once it is written */
  const uint8_t *key;
  size_t keylen;
  int refuse_md5;
  uint8_t m[64];        /* the challenge we sent */
  size_t mlen;
  uint8_t in[12 + MP__HS_MAX_FRAME];
  size_t inhave;        /* bytes of the current frame received */
  size_t inhdr;         /* its header length (4 or 12) once known */
  size_t inlen;         /* its payload length once known */
  uint8_t out[12 + MP__HS_MAX_FRAME];
  size_t outpos, outlen;
  char why[160];        /* reason of a failure */
} mp__hs;

/* Start a handshake.  `key` must stay valid while the machine runs.  The
 * random challenge (if this role delivers first) is queued in out. */
int mp__hs_init(mp__hs *h, int role, const void *key, size_t keylen,
                int refuse_md5);
/* Bytes the machine wants to read next (0 while output is pending or when
 * finished). */
size_t mp__hs_want(const mp__hs *h);
/* Feed n <= mp__hs_want() bytes.  Returns h->status. */
int mp__hs_feed(mp__hs *h, const uint8_t *p, size_t n);
/* n bytes of out were written.  Returns h->status. */
int mp__hs_wrote(mp__hs *h, size_t n);
/* Bytes waiting to be written. */
static inline size_t
mp__hs_pending_out(const mp__hs *h)
{
  return h->outlen - h->outpos;
}

/* Run a whole handshake on a blocking or non-blocking socket within the
 * deadline.  0, MP_EAUTH (detail set), MP_EEOF (the peer hung up),
 * MP_ETIMEDOUT, -errno. */
int mp__hs_drive(int fd, int role, const void *key, size_t keylen,
                 int refuse_md5, mp__deadline dl);

/* One non-blocking step of I/O on a non-blocking socket: write what is
 * pending, read what is wanted, until it would block.  Returns h->status
 * (0: still running), MP_EEOF, or -errno. */
int mp__hs_pump(mp__hs *h, int fd);

#endif
