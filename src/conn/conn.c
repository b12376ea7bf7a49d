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
 * byte and ends a read right after them). */
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

#define HDR_ESCAPE 0xFFFFFFFFu
/* Payload buffers are reserved up front only up to this size; beyond it they
 * grow as bytes arrive, so a length field alone never reserves memory. */
#define PREALLOC_MAX ((uint64_t)64 << 20)

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
  pthread_mutex_init(&c->send_mu, NULL);
  pthread_mutex_init(&c->recv_mu, NULL);
  if (!c->is_socket && c->writable)
    mp__ignore_sigpipe(); /* pipes have no MSG_NOSIGNAL */
  *out = c;
  return 0;
}

MP_EXTERN int
mp_conn_new_fd(mp_conn **out, int fd, int readable, int writable)
{
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

static void
drop_fds(mp_conn *c)
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
  drop_fds(c);
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
  pthread_mutex_destroy(&c->send_mu);
  pthread_mutex_destroy(&c->recv_mu);
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
  return c && c->readable && !mp_conn_closed(c) &&
         !atomic_load(&((mp_conn *)c)->recv_broken);
}

MP_EXTERN int
mp_conn_writable(const mp_conn *c)
{
  return c && c->writable && !mp_conn_closed(c) &&
         !atomic_load(&((mp_conn *)c)->send_broken);
}

MP_EXTERN int
mp_conn_closed(const mp_conn *c)
{
  return c && atomic_load(&((mp_conn *)c)->closed);
}

MP_EXTERN int
mp_conn_set_max_recv(mp_conn *c, uint64_t max_bytes)
{
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
  if (!c)
    return MP_EINVAL;
  int rc = mp__timeout_check(timeout);
  if (rc)
    return rc;
  pthread_mutex_lock(&c->send_mu);
  c->send_timeout = timeout;
  pthread_mutex_unlock(&c->send_mu);
  return 0;
}

/* ---- sending ------------------------------------------------------------- */

static size_t
put_header(uint8_t *h, uint64_t n)
{
  if (n <= 0x7FFFFFFF) {
    for (int i = 0; i < 4; i++)
      h[i] = (uint8_t)(n >> (24 - 8 * i));
    return 4;
  }
  memset(h, 0xFF, 4);
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
  while (iovcnt > 0) {
    if (iov->iov_len == 0) {
      iov++;
      iovcnt--;
      continue;
    }
    ssize_t n;
    if (c->is_socket) {
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
      n = sendmsg(fd, &m, MSG_NOSIGNAL | (forever ? 0 : MSG_DONTWAIT));
    } else {
      if (!forever) {
        int r = mp__poll_fd(fd, POLLOUT, dl);
        if (r < 0)
          return r;
      }
      n = writev(fd, iov, iovcnt);
    }
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        int r = mp__poll_fd(fd, POLLOUT, dl);
        if (r < 0)
          return r;
        continue;
      }
      return mp__errno();
    }
    *sent += (uint64_t)n;
    size_t left = (size_t)n;
    while (iovcnt > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      iov++;
      iovcnt--;
    }
    if (iovcnt > 0) {
      iov->iov_base = (char *)iov->iov_base + left;
      iov->iov_len -= left;
    }
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
  pthread_mutex_lock(&c->send_mu);
  if (atomic_load(&c->send_broken)) {
    rc = mp_seterr(MP_ESTATE,
                   "connection is not writable: an earlier send timed out "
                   "in the middle of a message");
  } else {
    uint8_t hdr[12];
    struct iovec iov[2] = {
      { .iov_base = hdr, .iov_len = put_header(hdr, len) },
      { .iov_base = (void *)buf, .iov_len = len },
    };
    uint64_t sent = 0;
    rc = write_iov(c, atomic_load(&c->fd), iov, 2, fds, nfds,
                   send_deadline(c), &sent);
    if (rc && sent > 0)
      atomic_store(&c->send_broken, 1);
  }
  pthread_mutex_unlock(&c->send_mu);
  mp__conn_leave(c);
  return rc;
}

MP_EXTERN int
mp_conn_send_bytes(mp_conn *c, const void *buf, size_t len)
{
  return mp__conn_send_msg(c, buf, len, NULL, 0);
}

MP_EXTERN int
mp_conn_send_bytes_at(mp_conn *c, const void *buf, size_t len, size_t offset,
                      size_t size)
{
  if (offset > len)
    return mp_seterr(MP_EINVAL, "buffer length < offset");
  if (size == MP_CONN_REST)
    size = len - offset;
  else if (size > len - offset)
    return mp_seterr(MP_EINVAL, "buffer length < offset + size");
  return mp__conn_send_msg(c, buf ? (const uint8_t *)buf + offset : NULL,
                           size, NULL, 0);
}

/* ---- receiving ----------------------------------------------------------- */

static int
keep_fds(mp_conn *c, const int *fds, size_t n)
{
  if (c->nfds + n > c->fdcap) {
    size_t cap = c->fdcap ? c->fdcap * 2 : 8;
    while (cap < c->nfds + n)
      cap *= 2;
    int *p = realloc(c->fds, cap * sizeof *p);
    if (!p) {
      for (size_t i = 0; i < n; i++)
        mp__close(fds[i]);
      return MP_ENOMEM;
    }
    c->fds = p;
    c->fdcap = cap;
  }
  memcpy(c->fds + c->nfds, fds, n * sizeof *fds);
  c->nfds += n;
  return 0;
}

static int
keep_batch(mp_conn *c, const int *fds, size_t n, uint64_t last)
{
  mp__fdbatch *b = malloc(sizeof *b + n * sizeof(int));
  if (!b) {
    for (size_t i = 0; i < n; i++)
      mp__close(fds[i]);
    return MP_ENOMEM;
  }
  b->next = NULL;
  b->last = last;
  b->n = n;
  memcpy(b->fds, fds, n * sizeof(int));
  mp__fdbatch **t = &c->batches;
  while (*t)
    t = &(*t)->next;
  *t = b;
  return 0;
}

/* Read-ahead: move the descriptors of the message [msg_start, end) from
 * the batches to c->fds; close older ones nobody claimed. */
static int
claim_batches(mp_conn *c, uint64_t end)
{
  int rc = 0;
  mp__fdbatch **pp = &c->batches;
  while (*pp) {
    mp__fdbatch *b = *pp;
    if (b->last >= end) {
      pp = &b->next;
      continue;
    }
    *pp = b->next;
    if (b->last >= c->msg_start && !rc)
      rc = keep_fds(c, b->fds, b->n);
    else
      for (size_t i = 0; i < b->n; i++)
        mp__close(b->fds[i]);
    free(b);
  }
  return rc;
}

/* One read of up to len bytes: > 0 bytes, 0 at end of file, or a code.
 * Descriptors that come along are kept for the current message.  They are
 * attached to a message's first byte, which is in its header: payload reads
 * (with_fds 0) skip the control buffer (any descriptors a hostile peer put
 * in the middle of a message are then closed by the kernel). */
static ssize_t
read_some(mp_conn *c, int fd, void *dst, size_t len, mp__deadline dl,
          int with_fds)
{
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int) * MP__MAX_FDS_PER_MSG)];
  } cm;
  int forever = dl == MP__NO_DEADLINE;
  for (;;) {
    ssize_t n;
    struct msghdr m;
    if (c->is_socket) {
      struct iovec iov = { .iov_base = dst, .iov_len = len };
      memset(&m, 0, sizeof m);
      m.msg_iov = &iov;
      m.msg_iovlen = 1;
      if (c->is_unix && with_fds) {
        m.msg_control = cm.buf;
        m.msg_controllen = sizeof cm.buf;
        n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC | (forever ? 0 : MSG_DONTWAIT));
      } else {
        n = recv(fd, dst, len, forever ? 0 : MSG_DONTWAIT);
      }
    } else {
      if (!forever) {
        int r = mp__poll_fd(fd, POLLIN, dl);
        if (r < 0)
          return r;
      }
      n = read(fd, dst, len);
    }
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        int r = mp__poll_fd(fd, POLLIN, dl);
        if (r < 0)
          return r;
        continue;
      }
      return mp__errno();
    }
    if (c->is_socket && c->is_unix && with_fds && m.msg_controllen > 0) {
      int rc = 0;
      for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
          continue;
        size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int tmp[MP__MAX_FDS_PER_MSG];
        memcpy(tmp, CMSG_DATA(h), k * sizeof(int));
        if (!rc && c->readahead)
          rc = keep_batch(c, tmp, k, c->spos + (uint64_t)n - 1);
        else if (!rc)
          rc = keep_fds(c, tmp, k);
        else
          for (size_t i = 0; i < k; i++)
            mp__close(tmp[i]);
      }
      if (rc)
        return rc;
    }
    c->spos += (uint64_t)n;
    return n;
  }
}

#define RA_CAP (64 * 1024)

static void
set_buffered(mp_conn *c)
{
  atomic_store(&c->buffered, c->rlen > c->rpos);
}

/* Bytes of the stream into dst: from the read-ahead buffer when it has
 * some; else one read -- into the buffer (read-ahead) for small wants, or
 * straight into dst, never past `len` (exact mode, and large payloads).
 * `hdr`: a header read (where descriptors may come, in exact mode). */
static ssize_t
get_bytes(mp_conn *c, int fd, void *dst, size_t len, mp__deadline dl, int hdr)
{
  if (!c->readahead)
    return read_some(c, fd, dst, len, dl, hdr);
  if (c->rlen == c->rpos) {
    c->rpos = c->rlen = 0;
    if (len >= RA_CAP / 2)
      return read_some(c, fd, dst, len, dl, 0); /* inside one message */
    if (!c->rbuf && !(c->rbuf = malloc(RA_CAP)))
      return MP_ENOMEM;
    ssize_t n = read_some(c, fd, c->rbuf, RA_CAP, dl, 1);
    if (n <= 0)
      return n;
    c->rlen = (size_t)n;
  }
  size_t k = c->rlen - c->rpos;
  if (k > len)
    k = len;
  memcpy(dst, c->rbuf + c->rpos, k);
  c->rpos += k;
  set_buffered(c);
  return (ssize_t)k;
}

static void
reset_msg(mp_conn *c)
{
  c->hdr_have = 0;
  c->have_len = 0;
  c->msg_len = 0;
  c->partial.len = 0;
  drop_fds(c);
}

/* The peer closed inside a message: the stream cannot be resynchronised. */
static int
torn(mp_conn *c, const char *where)
{
  uint64_t got = c->partial.len;
  uint64_t want = c->msg_len;
  int hdr = !c->have_len;
  reset_msg(c);
  mp__buf_release(&c->partial);
  c->eof = 1;
  if (hdr)
    return mp_seterr(MP_EMALFORMED, "end of file inside a message header");
  return mp_seterr(MP_EMALFORMED,
                   "end of file inside a message (%llu of %llu bytes, %s)",
                   (unsigned long long)got, (unsigned long long)want, where);
}

/* Read the header if not read yet. */
static int
read_header(mp_conn *c, int fd, mp__deadline dl)
{
  if (!c->have_len && c->hdr_have == 0)
    c->msg_start = c->spos - (c->rlen - c->rpos);
  while (!c->have_len) {
    unsigned want = c->hdr_have < 4 ? 4 : 12;
    if (c->hdr_have == 4) {
      uint32_t v = ((uint32_t)c->hdr[0] << 24) | ((uint32_t)c->hdr[1] << 16) |
                   ((uint32_t)c->hdr[2] << 8) | c->hdr[3];
      if (v != HDR_ESCAPE) {
        if (v & 0x80000000u) {
          atomic_store(&c->recv_broken, 1);
          reset_msg(c);
          return mp_seterr(MP_EMALFORMED,
                           "negative message length %d in the header",
                           (int32_t)v);
        }
        c->msg_len = v;
        c->have_len = 1;
        break;
      }
    }
    if (c->hdr_have == 12) {
      uint64_t v = 0;
      for (int i = 4; i < 12; i++)
        v = (v << 8) | c->hdr[i];
      c->msg_len = v;
      c->have_len = 1;
      break;
    }
    ssize_t n =
        get_bytes(c, fd, c->hdr + c->hdr_have, want - c->hdr_have, dl, 1);
    if (n < 0)
      return (int)n;
    if (n == 0) {
      if (c->hdr_have == 0) {
        drop_fds(c);
        c->eof = 1;
        return mp_seterr(MP_EEOF, "end of file");
      }
      return torn(c, "header");
    }
    c->hdr_have += (unsigned)n;
  }
  return 0;
}

/* Check the known length against the limits. */
static int
check_len(mp_conn *c, size_t maxlength)
{
  uint64_t maxr = atomic_load(&c->max_recv);
  if ((maxlength && c->msg_len > maxlength) || c->msg_len > maxr ||
      c->msg_len > SIZE_MAX / 2) {
    uint64_t lim = maxlength && maxlength < maxr ? maxlength : maxr;
    atomic_store(&c->recv_broken, 1);
    uint64_t n = c->msg_len;
    reset_msg(c);
    return mp_seterr(MP_EMSGSIZE,
                     "bad message length: %llu bytes (limit %llu); the "
                     "connection is no longer readable",
                     (unsigned long long)n, (unsigned long long)lim);
  }
  return 0;
}

/* Grow c->partial toward msg_len: up front up to PREALLOC_MAX, then by
 * doubling as bytes arrive. */
static int
reserve_payload(mp_conn *c)
{
  mp__buf *b = &c->partial;
  if (b->cap > b->len || b->len >= c->msg_len)
    return 0;
  uint64_t cap = b->cap ? (uint64_t)b->cap * 2 : PREALLOC_MAX;
  if (cap > c->msg_len)
    cap = c->msg_len;
  uint8_t *p = realloc(b->data, (size_t)cap);
  if (!p)
    return mp_seterr(MP_ENOMEM, "no memory for a message of %llu bytes",
                     (unsigned long long)c->msg_len);
  b->data = p;
  b->cap = (size_t)cap;
  return 0;
}

/* Read the rest of the payload into c->partial. */
static int
read_payload_buf(mp_conn *c, int fd, mp__deadline dl)
{
  while (c->partial.len < c->msg_len) {
    int rc = reserve_payload(c);
    if (rc)
      return rc;
    size_t room = c->partial.cap - c->partial.len;
    uint64_t left = c->msg_len - c->partial.len;
    ssize_t n = get_bytes(c, fd, c->partial.data + c->partial.len,
                          left < room ? (size_t)left : room, dl, 0);
    if (n < 0)
      return (int)n;
    if (n == 0)
      return torn(c, "payload");
    c->partial.len += (size_t)n;
  }
  return 0;
}

static void
give_fds(mp_conn *c, int **fds, size_t *nfds)
{
  if (fds && c->nfds) {
    *fds = c->fds;
    *nfds = c->nfds;
    c->fds = NULL;
    c->nfds = c->fdcap = 0;
  } else {
    drop_fds(c);
  }
}

static int
begin_recv(mp_conn *c)
{
  int rc = mp__conn_enter(c);
  if (rc)
    return rc;
  if (!c->readable) {
    mp__conn_leave(c);
    return mp_seterr(MP_ESTATE, "connection is write-only");
  }
  pthread_mutex_lock(&c->recv_mu);
  if (atomic_load(&c->recv_broken)) {
    pthread_mutex_unlock(&c->recv_mu);
    mp__conn_leave(c);
    return mp_seterr(MP_ESTATE, "connection is no longer readable (an "
                                "earlier message was too long or malformed)");
  }
  if (c->eof && !c->have_len && c->hdr_have == 0) {
    pthread_mutex_unlock(&c->recv_mu);
    mp__conn_leave(c);
    return mp_seterr(MP_EEOF, "end of file");
  }
  return 0;
}

static void
end_recv(mp_conn *c)
{
  pthread_mutex_unlock(&c->recv_mu);
  mp__conn_leave(c);
}

int
mp__conn_recv_msg(mp_conn *c, void **out, size_t *len, size_t maxlength,
                  int **fds, size_t *nfds, double timeout)
{
  if (!c || !out || !len)
    return mp_seterr(MP_EINVAL, "recv_bytes: NULL argument");
  if (fds) {
    *fds = NULL;
    *nfds = 0;
  }
  int rc = mp__timeout_check(timeout);
  if (rc)
    return rc;
  rc = begin_recv(c);
  if (rc)
    return rc;
  mp__deadline dl;
  mp__deadline_set(timeout, &dl);
  int fd = atomic_load(&c->fd);
  rc = read_header(c, fd, dl);
  if (!rc)
    rc = check_len(c, maxlength);
  if (!rc)
    rc = read_payload_buf(c, fd, dl);
  if (!rc && c->readahead)
    rc = claim_batches(c, c->msg_start + c->hdr_have + c->msg_len);
  if (!rc) {
    uint8_t *data = c->partial.data;
    if (!data && !(data = malloc(1)))
      rc = MP_ENOMEM;
    if (!rc) {
      *out = data;
      *len = c->partial.len;
      c->partial.data = NULL;
      c->partial.cap = 0;
      give_fds(c, fds, nfds);
      reset_msg(c);
    }
  }
  end_recv(c);
  return rc;
}

MP_EXTERN int
mp_conn_recv_bytes(mp_conn *c, void **out, size_t *len, size_t maxlength,
                   double timeout)
{
  return mp__conn_recv_msg(c, out, len, maxlength, NULL, NULL, timeout);
}

MP_EXTERN int
mp_conn_recv_bytes_into(mp_conn *c, void *buf, size_t size, size_t offset,
                        size_t *nbytes, double timeout)
{
  if (!c || (!buf && size) || !nbytes)
    return mp_seterr(MP_EINVAL, "recv_bytes_into: NULL argument");
  if (offset > size)
    return mp_seterr(MP_EINVAL, "offset %zu beyond a buffer of %zu bytes",
                     offset, size);
  int rc = mp__timeout_check(timeout);
  if (rc)
    return rc;
  rc = begin_recv(c);
  if (rc)
    return rc;
  mp__deadline dl;
  mp__deadline_set(timeout, &dl);
  int fd = atomic_load(&c->fd);
  rc = read_header(c, fd, dl);
  if (!rc)
    rc = check_len(c, 0);
  if (rc)
    goto out;
  *nbytes = (size_t)c->msg_len;
  if (c->msg_len > size - offset) {
    rc = mp_seterr(MP_ETOOSHORT,
                   "message of %llu bytes does not fit in %zu bytes; it "
                   "stays queued for the next receive",
                   (unsigned long long)c->msg_len, size - offset);
    goto out;
  }
  uint8_t *dst = (uint8_t *)buf + offset;
  if (c->partial.len > 0) {
    /* A previous receive timed out part-way: finish it in its buffer. */
    rc = read_payload_buf(c, fd, dl);
    if (!rc)
      memcpy(dst, c->partial.data, c->partial.len);
  } else {
    size_t got = 0;
    while (got < c->msg_len) {
      ssize_t n =
          get_bytes(c, fd, dst + got, (size_t)c->msg_len - got, dl, 0);
      if (n <= 0) {
        if (n == 0) {
          rc = torn(c, "payload");
        } else {
          rc = (int)n;
          /* Keep what arrived so the message survives the timeout. */
          if (got && mp__buf_append(&c->partial, dst, got)) {
            atomic_store(&c->recv_broken, 1);
            reset_msg(c);
          }
        }
        break;
      }
      got += (size_t)n;
    }
  }
  if (!rc && c->readahead)
    claim_batches(c, c->msg_start + c->hdr_have + c->msg_len);
  if (!rc)
    reset_msg(c); /* bytes only: descriptors that came along are closed */
out:
  end_recv(c);
  return rc;
}

/* ---- poll ---------------------------------------------------------------- */

int
mp__conn_pending(mp_conn *c)
{
  return atomic_load(&c->eof) || atomic_load(&c->buffered);
}

MP_EXTERN int
mp_conn_set_readahead(mp_conn *c, int on)
{
  if (!c)
    return MP_EINVAL;
  int rc = mp__conn_enter(c);
  if (rc)
    return rc;
  pthread_mutex_lock(&c->recv_mu);
  if (!on && c->rlen > c->rpos)
    rc = mp_seterr(MP_EBUSY, "bytes read ahead are still buffered");
  else if (c->hdr_have || c->have_len)
    rc = mp_seterr(MP_EBUSY, "a message is half received");
  else
    c->readahead = !!on;
  pthread_mutex_unlock(&c->recv_mu);
  mp__conn_leave(c);
  return rc;
}

int
mp__conn_has_buffered(mp_conn *c)
{
  return atomic_load(&c->buffered);
}

MP_EXTERN int
mp_conn_poll(mp_conn *c, double timeout)
{
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
