/* SPDX-License-Identifier: MIT */
/* Internals shared by the files of the conn layer. */
#ifndef MPROC_CONN_INTERNAL_H
#define MPROC_CONN_INTERNAL_H

#include <pthread.h>
#include <sys/socket.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/internal.h"
#include "mproc/conn.h"

/* Lock rules: `send_mu` is held for a whole outgoing message, `recv_mu` for
 * a whole receive (and guards every field below it).  The two are never held
 * together.  `fd`, `closed` and `busy` are atomics: a call registers in
 * `busy` before it touches `fd`, and close() leaves the actual close(2) to
 * the last call to leave, so no call ever uses a descriptor number that was
 * closed (and perhaps reused) under it. */
struct mp_conn {
  atomic_int refs;
  atomic_int fd;
  atomic_int closed;
  atomic_int busy;
  unsigned readable : 1;
  unsigned writable : 1;
  unsigned is_socket : 1;
  unsigned is_unix : 1;
  atomic_int send_broken;   /* a timed-out send tore a message */
  atomic_int recv_broken;   /* an oversized message made it unreadable */
  double send_timeout;

  /* a fork child finds them unlocked (core/internal.h) */
  mp__pmutex send_mu;
  mp__pmutex recv_mu;
  /* --- guarded by recv_mu --- */
  atomic_uint_least64_t max_recv;
  /* The message being received, kept across timeouts.  Reads never go past
   * the end of the current message, so a socket shared with other readers
   * (another process holding the same end, under a lock) stays in step, and
   * descriptors passed with a message arrive while that message is read. */
  uint8_t hdr[12];
  unsigned hdr_have;   /* header bytes read */
  int have_len;        /* msg_len is known */
  uint64_t msg_len;
  mp__buf partial;     /* payload bytes received so far */
  int *fds;            /* descriptors received with this message */
  size_t nfds, fdcap;
  atomic_int eof;      /* the peer closed */
  uint64_t spos;       /* bytes read from the descriptor so far */
  uint64_t msg_start;  /* stream offset of the current message's header */
  /* Read-ahead (mp_conn_set_readahead): bytes read past the current
   * message wait in rbuf[rpos .. rlen).  Descriptors that arrive with a
   * read are kept in `batches`, tagged with the stream offset of the last
   * byte that read returned: the kernel ends a read right after the buffer
   * that carried descriptors, and attaches them to a message's first byte,
   * so they belong to the message containing that last byte. */
  int readahead;
  atomic_int_least64_t wait_est; /* replies' usual wait, ns (EWMA) */
  uint8_t *rbuf;
  size_t rpos, rlen;
  atomic_int buffered; /* rlen > rpos, for poll/wait without the lock */
  struct mp__fdbatch *batches;
};

typedef struct mp__fdbatch {
  struct mp__fdbatch *next;
  uint64_t last; /* stream offset of the last byte of the read */
  size_t n;
  int fds[];
} mp__fdbatch;

/* The frame header: a big-endian int32 length, or this escape and then a
 * big-endian uint64 for messages above 0x7FFFFFFF bytes. */
#define MP__HDR_ESCAPE 0xFFFFFFFFu
/* Payload buffers are reserved up front only up to this size; beyond it they
 * grow as bytes arrive, so a length field alone never reserves memory. */
#define MP__PREALLOC_MAX ((uint64_t)64 << 20)

/* Register a call (0) or MP_ECLOSED. */
int mp__conn_enter(mp_conn *c);
void mp__conn_leave(mp_conn *c);

/* The whole framed send, with optional descriptors (on AF_UNIX only). */
int mp__conn_send_msg(mp_conn *c, const void *buf, size_t len,
                      const int *fds, size_t nfds);
/* The whole receive; fds and nfds get the descriptors that came with the
 * message (a malloc'd array, NULL when none) if fds is not NULL, else they
 * are closed. */
int mp__conn_recv_msg(mp_conn *c, void **out, size_t *len, size_t maxlength,
                      int **fds, size_t *nfds, double timeout);
/* 1 if a receive would not block for long: the peer's end of file was
 * seen, or a timed-out receive left part of a message.  A hint. */
int mp__conn_pending(mp_conn *c);

/* 1 if read-ahead holds bytes of the stream (the object cannot be sent
 * away without losing them). */
int mp__conn_has_buffered(mp_conn *c);
/* Poll (no sleep) for the next message to start arriving, for a caller
 * that expects a reply within microseconds (a manager call): a receive
 * that finds it there costs no sleep, and its sender no cross-CPU wake-up.
 * The poll lasts about twice the replies' usual wait (mp__conn_note_wait)
 * and at most `max_ns`; not at all when they usually take longer, or on
 * one usable CPU.  1 when there is something to receive (or an error to
 * report), else 0. */
int mp__conn_spin_readable(mp_conn *c, int64_t max_ns);
/* How long the caller waited for this reply (from its request's send):
 * feeds the estimate above. */
void mp__conn_note_wait(mp_conn *c, int64_t ns);

/* Close the descriptors that came with the message being received. */
void mp__conn_drop_fds(mp_conn *c);

/* Build a connection around fd (taken on success). */
int mp__conn_wrap(mp_conn **out, int fd, int readable, int writable);

/* ---- address.c: the address syntax of conn.h ---------------------------- */
typedef struct mp__addr {
  struct sockaddr_storage ss;
  socklen_t len;
  int family;
  int abstract;
} mp__addr;
/* Parse `s` (passive: for a listener, which may bind a wildcard); 0 or
 * MP_EINVAL with a detail saying what is wrong. */
int mp__addr_parse(const char *s, int passive, mp__addr *a);
/* A socket address in the string syntax (malloc'd), or NULL on ENOMEM. */
char *mp__addr_format(const struct sockaddr *sa, socklen_t len);

/* Listener internals for wait.c: how many descriptors it has to poll (its
 * socket and its handshakes in progress), and which. */
size_t mp__listener_npoll(mp_listener *l);
size_t mp__listener_pollfds(mp_listener *l, int *fds, size_t max);

#endif
