/* SPDX-License-Identifier: MIT */
/* Connection, the receiving side: exact reads of header and payload,
 * descriptors attributed to the message they came with, and the opt-in
 * read-ahead (one recv per small message for an end one reader owns).
 * The framing itself is described in conn.c. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "conn/conn_internal.h"
#include "core/fd.h"
#include "platform/platform.h"

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
      int r = mp__io_retry(fd, POLLIN, dl);
      if (r)
        return r;
      continue;
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
  mp__conn_drop_fds(c);
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
      if (v != MP__HDR_ESCAPE) {
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
        mp__conn_drop_fds(c);
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

/* Grow c->partial toward msg_len: up front up to MP__PREALLOC_MAX, then by
 * doubling as bytes arrive. */
static int
reserve_payload(mp_conn *c)
{
  mp__buf *b = &c->partial;
  if (b->cap > b->len || b->len >= c->msg_len)
    return 0;
  uint64_t cap = b->cap ? (uint64_t)b->cap * 2 : MP__PREALLOC_MAX;
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
    mp__conn_drop_fds(c);
  }
}

/* The start of every receive: the deadline of `timeout` (the one rule),
 * then the call registered and recv_mu held (0), or the code. */
static int
begin_recv(mp_conn *c, double timeout, mp__deadline *dl)
{
  int rc = mp__deadline_set(timeout, dl); /* NaN: MP_EINVAL */
  if (rc)
    return rc;
  rc = mp__conn_enter(c);
  if (rc)
    return rc;
  if (!c->readable) {
    mp__conn_leave(c);
    return mp_seterr(MP_ESTATE, "connection is write-only");
  }
  mp__pmutex_lock(&c->recv_mu);
  if (atomic_load(&c->recv_broken)) {
    mp__pmutex_unlock(&c->recv_mu);
    mp__conn_leave(c);
    return mp_seterr(MP_ESTATE, "connection is no longer readable (an "
                                "earlier message was too long or malformed)");
  }
  if (c->eof && !c->have_len && c->hdr_have == 0) {
    mp__pmutex_unlock(&c->recv_mu);
    mp__conn_leave(c);
    return mp_seterr(MP_EEOF, "end of file");
  }
  return 0;
}

static void
end_recv(mp_conn *c)
{
  mp__pmutex_unlock(&c->recv_mu);
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
  mp__deadline dl;
  int rc = begin_recv(c, timeout, &dl);
  if (rc)
    return rc;
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
  mp__errdetail_clear();
  return mp__conn_recv_msg(c, out, len, maxlength, NULL, NULL, timeout);
}

MP_EXTERN int
mp_conn_recv_bytes_into(mp_conn *c, void *buf, size_t size, size_t offset,
                        size_t *nbytes, double timeout)
{
  mp__errdetail_clear();
  if (!c || (!buf && size) || !nbytes)
    return mp_seterr(MP_EINVAL, "recv_bytes_into: NULL argument");
  if (offset > size)
    return mp_seterr(MP_EINVAL, "offset %zu beyond a buffer of %zu bytes",
                     offset, size);
  mp__deadline dl;
  int rc = begin_recv(c, timeout, &dl);
  if (rc)
    return rc;
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

/* ---- read-ahead state ------------------------------------------------------ */

int
mp__conn_pending(mp_conn *c)
{
  return atomic_load(&c->eof) || atomic_load(&c->buffered);
}

MP_EXTERN int
mp_conn_set_readahead(mp_conn *c, int on)
{
  mp__errdetail_clear();
  if (!c)
    return MP_EINVAL;
  int rc = mp__conn_enter(c);
  if (rc)
    return rc;
  mp__pmutex_lock(&c->recv_mu);
  if (!on && c->rlen > c->rpos)
    rc = mp_seterr(MP_EBUSY, "bytes read ahead are still buffered");
  else if (c->hdr_have || c->have_len)
    rc = mp_seterr(MP_EBUSY, "a message is half received");
  else
    c->readahead = !!on;
  mp__pmutex_unlock(&c->recv_mu);
  mp__conn_leave(c);
  return rc;
}

int
mp__conn_has_buffered(mp_conn *c)
{
  return atomic_load(&c->buffered);
}

int
mp__conn_spin_readable(mp_conn *c, int64_t max_ns)
{
  if (mp__conn_has_buffered(c))
    return 1;
  int fd = atomic_load(&c->fd);
  int64_t est = atomic_load_explicit(&c->wait_est, memory_order_relaxed);
  if (fd < 0 || est > max_ns || !mp__plat_spin_useful())
    return 0;
  int64_t spin = 2 * est + 5000; /* 0 before any reply: max_ns */
  if (!est || spin > max_ns)
    spin = max_ns;
  int64_t until = mp__now_ns() + spin;
  struct pollfd p = {.fd = fd, .events = POLLIN};
  do {
    if (poll(&p, 1, 0) != 0)
      return 1;
    MP__CPU_RELAX();
  } while (mp__now_ns() < until);
  return 0;
}

void
mp__conn_note_wait(mp_conn *c, int64_t ns)
{
  int64_t est = atomic_load_explicit(&c->wait_est, memory_order_relaxed);
  est = est ? est + (ns - est) / 4 : ns;
  atomic_store_explicit(&c->wait_est, est > 0 ? est : 1, memory_order_relaxed);
}
