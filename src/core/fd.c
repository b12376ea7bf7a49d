/* SPDX-License-Identifier: MIT */
/* File-descriptor helpers (see fd.h). */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fd.h"

void
mp__close(int fd)
{
  if (fd < 0)
    return;
  int saved = errno;
  close(fd); /* on Linux the fd is released even when close reports EINTR */
  if (errno != saved) /* a write would copy errno's page in a fork child */
    errno = saved;
}

int
mp__fd_set_cloexec(int fd, int on)
{
  int fl = fcntl(fd, F_GETFD);
  if (fl < 0)
    return -errno;
  int nfl = on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC);
  if (nfl != fl && fcntl(fd, F_SETFD, nfl) < 0)
    return -errno;
  return 0;
}

int
mp__fd_set_nonblock(int fd, int on)
{
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0)
    return -errno;
  int nfl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
  if (nfl != fl && fcntl(fd, F_SETFL, nfl) < 0)
    return -errno;
  return 0;
}

int
mp__fd_is_open(int fd)
{
  return fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}

int
mp__fd_off_stdio(int fd)
{
  if (fd > 2)
    return fd;
  int n = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int err = errno;
  close(fd);
  return n < 0 ? -err : n;
}

/* Both ends of a new pair off 0..2, or neither (on failure both closed). */
static int
pair_off_stdio(const int in[2], int out[2])
{
  int a = mp__fd_off_stdio(in[0]);
  int b = mp__fd_off_stdio(in[1]);
  if (a < 0 || b < 0) {
    mp__close(a);
    mp__close(b);
    return a < 0 ? a : b;
  }
  out[0] = a;
  out[1] = b;
  return 0;
}

int
mp__pipe(int fds[2])
{
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0)
    return -errno;
  return pair_off_stdio(p, fds);
}

int
mp__socketpair(int type, int sv[2])
{
  int p[2];
  if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, p) < 0)
    return -errno;
  return pair_off_stdio(p, sv);
}

int
mp__dup(int fd)
{
  int n = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  return n < 0 ? -errno : n;
}

static int
is_socket(int fd)
{
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

int
mp__write_all(int fd, const void *buf, size_t len)
{
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  return mp__writev_all(fd, &iov, 1);
}

int
mp__io_retry(int fd, short events, mp__deadline deadline)
{
  int err = errno;
  if (err == EINTR)
    return 0;
  if (err == EAGAIN || err == EWOULDBLOCK) {
    /* a nonblocking fd: wait for it rather than fail */
    int r = mp__poll_fd(fd, events, deadline);
    return r < 0 ? r : 0;
  }
  return err ? -err : MP_EINVAL;
}

void
mp__iov_advance(struct iovec **iov, int *iovcnt, size_t n)
{
  struct iovec *v = *iov;
  int cnt = *iovcnt;
  while (cnt > 0 && n >= v->iov_len) {
    n -= v->iov_len;
    v++;
    cnt--;
  }
  if (cnt > 0) {
    v->iov_base = (char *)v->iov_base + n;
    v->iov_len -= n;
  }
  *iov = v;
  *iovcnt = cnt;
}

int
mp__writev_all(int fd, struct iovec *iov, int iovcnt)
{
  int sock = -1; /* decided on first use: sockets get MSG_NOSIGNAL */
  mp__iov_advance(&iov, &iovcnt, 0);
  while (iovcnt > 0) {
    ssize_t n;
    if (sock < 0)
      sock = is_socket(fd);
    if (sock) {
      struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
      n = sendmsg(fd, &mh, MSG_NOSIGNAL);
    } else {
      n = writev(fd, iov, iovcnt > IOV_MAX ? IOV_MAX : iovcnt);
    }
    if (n < 0) {
      int r = mp__io_retry(fd, POLLOUT, MP__NO_DEADLINE);
      if (r)
        return r;
      continue;
    }
    mp__iov_advance(&iov, &iovcnt, (size_t)n);
  }
  return 0;
}

int
mp__read_full(int fd, void *buf, size_t len, size_t *got)
{
  size_t off = 0;
  while (off < len) {
    ssize_t n = read(fd, (char *)buf + off, len - off);
    if (n < 0) {
      int r = mp__io_retry(fd, POLLIN, MP__NO_DEADLINE);
      if (r == 0)
        continue;
      if (got)
        *got = off;
      return r;
    }
    if (n == 0) {
      if (got)
        *got = off;
      return MP_EEOF;
    }
    off += (size_t)n;
  }
  if (got)
    *got = off;
  return 0;
}

int
mp__poll_fd(int fd, short events, mp__deadline deadline)
{
  for (;;) {
    struct pollfd p = {.fd = fd, .events = events};
    int r = poll(&p, 1, mp__deadline_poll_ms(deadline));
    if (r > 0) {
      if (p.revents & POLLNVAL)
        return MP_EBADF;
      return p.revents;
    }
    if (r == 0) {
      if (mp__deadline_passed(deadline))
        return MP_ETIMEDOUT;
      continue; /* woke a little early: poll rounds to milliseconds */
    }
    if (errno != EINTR)
      return -errno;
  }
}

int
mp__send_fds(int sock, const void *buf, size_t len, const int *fds,
             size_t nfds)
{
  if (len == 0)
    return MP_EINVAL;
  if (nfds > MP__MAX_FDS_PER_MSG)
    return mp_seterr(MP_ELIMIT, "%zu descriptors in one message (max %d)",
                     nfds, MP__MAX_FDS_PER_MSG);
  if (nfds == 0)
    return mp__write_all(sock, buf, len);
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE(sizeof(int) * MP__MAX_FDS_PER_MSG)];
  } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
                      .msg_control = ctl.space,
                      .msg_controllen = CMSG_SPACE(sizeof(int) * nfds)};
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
  memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  ssize_t n;
  while ((n = sendmsg(sock, &mh, MSG_NOSIGNAL)) < 0) {
    int r = mp__io_retry(sock, POLLOUT, MP__NO_DEADLINE);
    if (r)
      return r;
  }
  /* The descriptors went with the first byte; the rest is plain data. */
  if ((size_t)n < len)
    return mp__write_all(sock, (const char *)buf + n, len - (size_t)n);
  return 0;
}

int
mp__recv_fds(int sock, void *buf, size_t len, size_t *got, int *fds,
             size_t maxfds, size_t *nfds)
{
  return mp__recv_fds_until(sock, buf, len, got, fds, maxfds, nfds,
                            MP__NO_DEADLINE);
}

int
mp__recv_fds_until(int sock, void *buf, size_t len, size_t *got, int *fds,
                   size_t maxfds, size_t *nfds, mp__deadline deadline)
{
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE(sizeof(int) * MP__MAX_FDS_PER_MSG)];
  } ctl;
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
                      .msg_control = ctl.space,
                      .msg_controllen = sizeof ctl.space};
  ssize_t n;
  *nfds = 0;
  *got = 0;
  while ((n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0) {
    int r = mp__io_retry(sock, POLLIN, deadline);
    if (r)
      return r;
  }
  size_t count = 0;
  int overflow = (mh.msg_flags & MSG_CTRUNC) != 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
      continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *in = (int *)CMSG_DATA(c);
    for (size_t i = 0; i < k; i++) {
      int fd;
      memcpy(&fd, in + i, sizeof fd);
      if (count < maxfds && !overflow)
        fds[count++] = fd;
      else {
        overflow = 1;
        mp__close(fd);
      }
    }
  }
  if (overflow) {
    for (size_t i = 0; i < count; i++)
      mp__close(fds[i]);
    return mp_seterr(MP_ELIMIT, "peer sent more descriptors than expected");
  }
  *got = (size_t)n;
  *nfds = count;
  return 0;
}

static pthread_once_t sigpipe_once = PTHREAD_ONCE_INIT;

static void
ignore_sigpipe_now(void)
{
  struct sigaction old;
  if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
    struct sigaction sa = {.sa_handler = SIG_IGN};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
  }
}

void
mp__ignore_sigpipe(void)
{
  pthread_once(&sigpipe_once, ignore_sigpipe_now);
}
