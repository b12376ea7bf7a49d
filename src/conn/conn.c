/* SPDX-License-Identifier: MIT */
/* Connection: CPython-compatible message framing over a stream descriptor.
 *
 * Wire format (docs/python-wire.md section 1): a signed 32-bit big-endian
 * length, or -1 followed by an unsigned 64-bit big-endian length for
 * messages above 0x7FFFFFFF bytes; then the payload.
 *
 * Sends write header and payload with one sendmsg (writev for pipes).
 * Receives read exactly the header, then exactly the payload: never past
 * the end of the message, so several readers of one socket (under a lock,
 * in several processes) stay in step, and descriptors passed with a message
 * arrive while that message is read (the kernel attaches them to its first
 * byte and ends a read right after them).  The receiving side is in
 * conn_recv.c; this file has the lifetime, sending and poll. */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "conn/conn_internal.h"
#include "core/fd.h"


/* ---- lifetime ------------------------------------------------------------ */

static int
is_unix_socket(int fd, int *is_socket)
{
  struct stat st;
  *is_socket = 0;
  if (fstat(fd, &st) < 0)
    return mp__errno();
  if (!S_ISSOCK(st.st_mode))
    return 0;
  *is_socket = 1;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
    return 0;
  return ss.ss_family == AF_UNIX;
}

int
mp__conn_wrap(mp_conn **out, int fd, int readable, int writable)
{
  mp_conn *c = calloc(1, sizeof *c);
  if (!c)
    return MP_ENOMEM;
  atomic_init(&c->refs, 1);
  atomic_init(&c->fd, fd);
  atomic_init(&c->closed, 0);
  atomic_init(&c->busy, 0);
  atomic_init(&c->send_broken, 0);
  atomic_init(&c->recv_broken, 0);
  atomic_init(&c->max_recv, MP_CONN_DEFAULT_MAX_RECV);
  c->readable = !!readable;
  c->writable = !!writable;
  int sock;
  c->is_unix = is_unix_socket(fd, &sock) > 0;
  c->is_socket = sock;
  c->send_timeout = MP_FOREVER;
  mp__pmutex_init(&c->send_mu);
  mp__pmutex_init(&c->recv_mu);
  if (!c->is_socket && c->writable)
    mp__ignore_sigpipe(); /* pipes have no MSG_NOSIGNAL */
  *out = c;
  return 0;
}

MP_EXTERN int
mp_conn_new_fd(mp_conn **out, int fd, int readable, int writable)
{
  mp__errdetail_clear();
  if (!out || fd < 0 || (!readable && !writable))
    return mp_seterr(MP_EINVAL, "mp_conn_new_fd: bad arguments");
  if (!mp__fd_is_open(fd))
    return mp_seterr(MP_EBADF, "mp_conn_new_fd: fd %d is not open", fd);
  int rc = mp__fd_set_cloexec(fd, 1);
  if (rc)
    return rc;
  return mp__conn_wrap(out, fd, readable, writable);
}

MP_EXTERN int
mp_pipe(mp_conn **c1, mp_conn **c2, int duplex)
{
  mp__errdetail_clear();
  if (!c1 || !c2)
    return mp_seterr(MP_EINVAL, "mp_pipe: NULL argument");
  int sv[2];
  int rc = mp__socketpair(SOCK_STREAM, sv);
  if (rc)
    return rc;
  if (!duplex) {
    /* c1 receives, c2 sends: shut the unused directions so a mistaken
     * write on c1 / read on c2 can never mix with the real traffic. */
    shutdown(sv[0], SHUT_WR);
    shutdown(sv[1], SHUT_RD);
  }
  mp_conn *a = NULL, *b = NULL;
  rc = mp__conn_wrap(&a, sv[0], 1, duplex);
  if (!rc)
    rc = mp__conn_wrap(&b, sv[1], duplex, 1);
  if (rc) {
    if (a)
      mp_conn_free(a);
    else
      mp__close(sv[0]);
    mp__close(sv[1]);
    return rc;
  }
  *c1 = a;
  *c2 = b;
  return 0;
}

MP_EXTERN mp_conn *
mp_conn_ref(mp_conn *c)
{
  if (c)
    atomic_fetch_add(&c->refs, 1);
  return c;
}

static void
close_fd_now(mp_conn *c)
{
  int fd = atomic_exchange(&c->fd, -1);
  if (fd >= 0)
    mp__close(fd);
}

void
mp__conn_drop_fds(mp_conn *c)
{
  for (size_t i = 0; i < c->nfds; i++)
    mp__close(c->fds[i]);
  c->nfds = 0;
}

MP_EXTERN void
mp_conn_free(mp_conn *c)
{
  if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
    return;
  close_fd_now(c);
  mp__conn_drop_fds(c);
  free(c->fds);
  while (c->batches) {
    mp__fdbatch *b = c->batches;
    c->batches = b->next;
    for (size_t i = 0; i < b->n; i++)
      mp__close(b->fds[i]);
    free(b);
  }
  free(c->rbuf);
  mp__buf_release(&c->partial);
  mp__pmutex_destroy(&c->send_mu);
  mp__pmutex_destroy(&c->recv_mu);
  free(c);
}

int
mp__conn_enter(mp_conn *c)
{
  atomic_fetch_add(&c->busy, 1);
  if (atomic_load(&c->closed)) {
    mp__conn_leave(c);
    return mp_seterr(MP_ECLOSED, "connection is closed");
  }
  return 0;
}

void
mp__conn_leave(mp_conn *c)
{
  if (atomic_fetch_sub(&c->busy, 1) == 1 && atomic_load(&c->closed))
    close_fd_now(c);
}

MP_EXTERN int
mp_conn_close(mp_conn *c)
{
  mp__errdetail_clear();
  if (!c)
    return MP_EINVAL;
  if (atomic_exchange(&c->closed, 1))
    return MP_ECLOSED;
  if (atomic_load(&c->busy) == 0)
    close_fd_now(c);
  return 0;
}

MP_EXTERN int
mp_conn_fileno(const mp_conn *c)
{
  mp__errdetail_clear();
  if (!c)
    return MP_EINVAL;
  int fd = atomic_load(&((mp_conn *)c)->fd);
  if (atomic_load(&((mp_conn *)c)->closed) || fd < 0)
    return MP_ECLOSED;
  return fd;
}

MP_EXTERN int
mp_conn_readable(const mp_conn *c)
{
  mp__errdetail_clear();
  return c && c->readable && !mp_conn_closed(c) &&
         !atomic_load(&((mp_conn *)c)->recv_broken);
}

MP_EXTERN int
mp_conn_writable(const mp_conn *c)
{
  mp__errdetail_clear();
  return c && c->writable && !mp_conn_closed(c) &&
         !atomic_load(&((mp_conn *)c)->send_broken);
}

MP_EXTERN int
mp_conn_closed(const mp_conn *c)
{
  mp__errdetail_clear();
  return c && atomic_load(&((mp_conn *)c)->closed);
}

MP_EXTERN int
mp_conn_set_max_recv(mp_conn *c, uint64_t max_bytes)
{
  mp__errdetail_clear();
  if (!c)
    return MP_EINVAL;
  atomic_store(&c->max_recv, max_bytes ? max_bytes : MP_CONN_DEFAULT_MAX_RECV);
  return 0;
}

MP_EXTERN uint64_t
mp_conn_max_recv(const mp_conn *c)
{
  return c ? atomic_load(&((mp_conn *)c)->max_recv) : 0;
}

MP_EXTERN int
mp_conn_set_send_timeout(mp_conn *c, double timeout)
{
  mp__errdetail_clear();
  if (!c)
    return MP_EINVAL;
  int rc = mp__timeout_check(timeout);
  if (rc)
    return rc;
  mp__pmutex_lock(&c->send_mu);
  c->send_timeout = timeout;
  mp__pmutex_unlock(&c->send_mu);
  return 0;
}

/* ---- sending ------------------------------------------------------------- */

/* Messages up to this many bytes are copied behind their header and sent
 * with one plain send()/write(). */
#define SMALL_SEND 512

static size_t
put_header(uint8_t *h, uint64_t n)
{
  if (n <= 0x7FFFFFFF) {
    for (int i = 0; i < 4; i++)
      h[i] = (uint8_t)(n >> (24 - 8 * i));
    return 4;
  }
  memset(h, 0xFF, 4); /* MP__HDR_ESCAPE */
  for (int i = 0; i < 8; i++)
    h[4 + i] = (uint8_t)(n >> (56 - 8 * i));
  return 12;
}

/* Write every byte of iov (modified as it advances), attaching `fds` to the
 * first byte.  *sent counts what went out, so a caller can tell a clean
 * failure (nothing written) from a torn message. */
static int
write_iov(mp_conn *c, int fd, struct iovec *iov, int iovcnt, const int *fds,
          size_t nfds, mp__deadline dl, uint64_t *sent)
{
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int) * MP__MAX_FDS_PER_MSG)];
  } cm;
  int forever = dl == MP__NO_DEADLINE;
  mp__iov_advance(&iov, &iovcnt, 0);
  while (iovcnt > 0) {
    ssize_t n;
    int flags = MSG_NOSIGNAL | (forever ? 0 : MSG_DONTWAIT);
    if (c->is_socket && iovcnt == 1 && !(nfds && *sent == 0)) {
      n = send(fd, iov->iov_base, iov->iov_len, flags);
    } else if (c->is_socket) {
      struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
      if (nfds && *sent == 0) {
        memset(&cm, 0, sizeof cm);
        m.msg_control = cm.buf;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(h), fds, sizeof(int) * nfds);
      }
      n = sendmsg(fd, &m, flags);
    } else {
      if (!forever) {
        int r = mp__poll_fd(fd, POLLOUT, dl);
        if (r < 0)
          return r;
      }
      n = iovcnt == 1 ? write(fd, iov->iov_base, iov->iov_len)
                      : writev(fd, iov, iovcnt);
    }
    if (n < 0) {
      int r = mp__io_retry(fd, POLLOUT, dl);
      if (r)
        return r;
      continue;
    }
    *sent += (uint64_t)n;
    mp__iov_advance(&iov, &iovcnt, (size_t)n);
  }
  return 0;
}


/* The deadline of a send that starts now (under send_mu). */
static mp__deadline
send_deadline(const mp_conn *c)
{
  mp__deadline dl;
  mp__deadline_set(c->send_timeout, &dl);
  return dl;
}

int
mp__conn_send_msg(mp_conn *c, const void *buf, size_t len, const int *fds,
                  size_t nfds)
{
  if (!c || (!buf && len))
    return mp_seterr(MP_EINVAL, "send: NULL argument");
  int rc = mp__conn_enter(c);
  if (rc)
    return rc;
  if (!c->writable)
    rc = mp_seterr(MP_ESTATE, "connection is read-only");
  else if (nfds && !c->is_unix)
    rc = mp_seterr(MP_ENOTSUP, "only AF_UNIX connections carry handles");
  else if (nfds > MP__MAX_FDS_PER_MSG)
    rc = mp_seterr(MP_ELIMIT, "%zu descriptors in one message (max %d)",
                   nfds, MP__MAX_FDS_PER_MSG);
  if (rc) {
    mp__conn_leave(c);
    return rc;
  }
  mp__pmutex_lock(&c->send_mu);
  if (atomic_load(&c->send_broken)) {
    rc = mp_seterr(MP_ESTATE,
                   "connection is not writable: an earlier send timed out "
                   "in the middle of a message");
  } else {
    /* A small message goes out contiguous, header and payload copied
     * together: one send() or write() costs the kernel less than an
     * iovec's sendmsg() or writev(). */
    uint8_t hdr[12 + SMALL_SEND];
    size_t hlen = put_header(hdr, len);
    struct iovec iov[2] = {
      { .iov_base = hdr, .iov_len = hlen },
      { .iov_base = (void *)buf, .iov_len = len },
    };
    int iovcnt = 2;
    if (len <= SMALL_SEND) {
      if (len)
        memcpy(hdr + hlen, buf, len);
      iov[0].iov_len = hlen + len;
      iovcnt = 1;
    }
    uint64_t sent = 0;
    rc = write_iov(c, atomic_load(&c->fd), iov, iovcnt, fds, nfds,
                   send_deadline(c), &sent);
    if (rc && sent > 0)
      atomic_store(&c->send_broken, 1);
  }
  mp__pmutex_unlock(&c->send_mu);
  mp__conn_leave(c);
  return rc;
}

MP_EXTERN int
mp_conn_send_bytes(mp_conn *c, const void *buf, size_t len)
{
  mp__errdetail_clear();
  return mp__conn_send_msg(c, buf, len, NULL, 0);
}

MP_EXTERN int
mp_conn_send_bytes_at(mp_conn *c, const void *buf, size_t len, size_t offset,
                      size_t size)
{
  mp__errdetail_clear();
  if (offset > len)
    return mp_seterr(MP_EINVAL, "buffer length < offset");
  if (size == MP_CONN_REST)
    size = len - offset;
  else if (size > len - offset)
    return mp_seterr(MP_EINVAL, "buffer length < offset + size");
  return mp__conn_send_msg(c, buf ? (const uint8_t *)buf + offset : NULL,
                           size, NULL, 0);
}

/* ---- poll ---------------------------------------------------------------- */

MP_EXTERN int
mp_conn_poll(mp_conn *c, double timeout)
{
  mp__errdetail_clear();
  if (!c)
    return MP_EINVAL;
  int rc = mp__timeout_check(timeout);
  if (rc)
    return rc;
  rc = mp__conn_enter(c);
  if (rc)
    return rc;
  if (!c->readable) {
    mp__conn_leave(c);
    return mp_seterr(MP_ESTATE, "connection is write-only");
  }
  if (atomic_load(&c->recv_broken)) {
    mp__conn_leave(c);
    return mp_seterr(MP_ESTATE, "connection is no longer readable");
  }
  if (mp__conn_pending(c)) {
    mp__conn_leave(c);
    return 1;
  }
  mp__deadline dl;
  mp__deadline_set(timeout, &dl);
  rc = mp__poll_fd(atomic_load(&c->fd), POLLIN, dl);
  mp__conn_leave(c);
  if (rc == MP_ETIMEDOUT)
    return 0;
  return rc < 0 ? rc : 1;
}
