/* SPDX-License-Identifier: MIT */
/* Listener and Client: addresses, sockets, and the authenticated accept.
 *
 * accept() runs the handshakes of several clients at once, each a
 * non-blocking state machine (handshake.h) with its own deadline, so a
 * client that connects and never speaks costs a slot until handshake_timeout
 * (or until a newer client needs the slot) but never blocks the clients
 * behind it. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>


#include "conn/conn_internal.h"
#include "conn/handshake.h"
#include "core/fd.h"
#include "core/hmac.h"

#define DEFAULT_BACKLOG 128
#define DEFAULT_HS_TIMEOUT 10.0
#define DEFAULT_MAX_PENDING 64
#define MAX_PENDING_LIMIT 4096

/* ---- listener ------------------------------------------------------------ */

typedef struct pending {
  int fd;
  mp__deadline dl;
  char *peer;
  mp__hs hs;
} pending;

/* `mu` serialises accept (and guards pend/last); close must not race an
 * accept (documented). */
struct mp_listener {
  int fd;
  int family;
  char *address;
  char *unlink_path;
  char *tmpdir;
  char *last;
  uint8_t *key;
  size_t keylen;
  int has_key;
  double hs_timeout;
  int max_pending;
  int refuse_md5;
  uint64_t max_recv;
  mp__pmutex mu; /* a fork child finds it unlocked */
  pending *pend;
  int npend;
};

static int
make_tmpdir(char **dir, char **path)
{
  const char *base = getenv("TMPDIR");
  if (!base || !*base)
    base = "/tmp";
  char tmpl[200];
  if ((size_t)snprintf(tmpl, sizeof tmpl, "%s/mproc-XXXXXX", base) >=
      sizeof tmpl)
    return mp_seterr(MP_EINVAL, "TMPDIR too long");
  if (!mkdtemp(tmpl))
    return mp__errno();
  uint8_t rnd[4];
  if (mp__random_bytes(rnd, sizeof rnd))
    memset(rnd, 0, sizeof rnd);
  char p[256];
  snprintf(p, sizeof p, "%s/listener-%02x%02x%02x%02x", tmpl, rnd[0], rnd[1],
           rnd[2], rnd[3]);
  *dir = strdup(tmpl);
  *path = strdup(p);
  if (!*dir || !*path) {
    rmdir(tmpl);
    free(*dir);
    free(*path);
    return MP_ENOMEM;
  }
  return 0;
}

MP_EXTERN int
mp_listener_new(mp_listener **out, const char *address,
                const mp_listener_opts *opts)
{
  mp__errdetail_clear();
  if (!out)
    return mp_seterr(MP_EINVAL, "mp_listener_new: NULL out");
  static const mp_listener_opts defaults;
  if (!opts)
    opts = &defaults;
  if ((opts->authkey == NULL && opts->authkey_len) || opts->backlog < 0 ||
      opts->max_pending < 0 || opts->max_pending > MAX_PENDING_LIMIT)
    return mp_seterr(MP_EINVAL, "mp_listener_new: bad options");
  if (mp__timeout_field_check(opts->handshake_timeout, "mp_listener_new"))
    return MP_EINVAL;
  mp_listener *l = calloc(1, sizeof *l);
  if (!l)
    return MP_ENOMEM;
  l->fd = -1;
  mp__pmutex_init(&l->mu);
  int rc = 0;
  const char *path_for_default = NULL;
  if (!address || !*address) {
    char *path = NULL;
    rc = make_tmpdir(&l->tmpdir, &path);
    if (rc)
      goto fail;
    l->unlink_path = path;
    path_for_default = path;
  }
  mp__addr a;
  rc = mp__addr_parse(path_for_default ? path_for_default : address, 1, &a);
  if (rc)
    goto fail;
  l->family = a.family;
  l->fd = socket(a.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (l->fd < 0) {
    rc = mp__errno();
    goto fail;
  }
  if (a.family != AF_UNIX) {
    int one = 1;
    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  }
  if (bind(l->fd, (struct sockaddr *)&a.ss, a.len) < 0) {
    rc = mp_seterr(mp__errno(), "bind to '%s' failed",
                   path_for_default ? path_for_default : address);
    goto fail;
  }
  if (a.family == AF_UNIX && !a.abstract && !l->unlink_path) {
    l->unlink_path = strdup(((struct sockaddr_un *)&a.ss)->sun_path);
    if (!l->unlink_path) {
      unlink(((struct sockaddr_un *)&a.ss)->sun_path);
      rc = MP_ENOMEM;
      goto fail;
    }
  }
  if (listen(l->fd, opts->backlog ? opts->backlog : DEFAULT_BACKLOG) < 0) {
    rc = mp__errno();
    goto fail;
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(l->fd, (struct sockaddr *)&ss, &sl) < 0) {
    rc = mp__errno();
    goto fail;
  }
  l->address = mp__addr_format((struct sockaddr *)&ss, sl);
  if (!l->address) {
    rc = MP_ENOMEM;
    goto fail;
  }
  if (opts->authkey) {
    l->has_key = 1;
    l->keylen = opts->authkey_len;
    l->key = malloc(l->keylen ? l->keylen : 1);
    if (!l->key) {
      rc = MP_ENOMEM;
      goto fail;
    }
    memcpy(l->key, opts->authkey, l->keylen);
  }
  l->hs_timeout = opts->handshake_timeout > 0 ? opts->handshake_timeout
                                              : DEFAULT_HS_TIMEOUT;
  l->max_pending = opts->max_pending ? opts->max_pending : DEFAULT_MAX_PENDING;
  l->refuse_md5 = opts->refuse_legacy_md5;
  l->max_recv = opts->max_recv;
  l->pend = calloc((size_t)l->max_pending, sizeof *l->pend);
  if (!l->pend) {
    rc = MP_ENOMEM;
    goto fail;
  }
  *out = l;
  return 0;
fail:
  mp_listener_free(l);
  return rc;
}

static void
drop_pending(mp_listener *l, int i)
{
  mp__close(l->pend[i].fd);
  free(l->pend[i].peer);
  l->pend[i] = l->pend[l->npend - 1];
  l->npend--;
}

/* Hand over a socket whose handshake is done as a connection. */
static int
finish(mp_listener *l, int fd, char *peer, mp_conn **out)
{
  mp__fd_set_nonblock(fd, 0);
  if (l->family != AF_UNIX) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  mp_conn *c;
  int rc = mp__conn_wrap(&c, fd, 1, 1);
  if (rc) {
    mp__close(fd);
    free(peer);
    return rc;
  }
  if (l->max_recv)
    mp_conn_set_max_recv(c, l->max_recv);
  free(l->last);
  l->last = peer;
  *out = c;
  return 0;
}

MP_EXTERN int
mp_listener_accept(mp_listener *l, mp_conn **out, double timeout)
{
  mp__errdetail_clear();
  if (!l || !out)
    return mp_seterr(MP_EINVAL, "mp_listener_accept: NULL argument");
  if (mp__timeout_check(timeout))
    return MP_EINVAL;
  mp__pmutex_lock(&l->mu);
  int rc;
  if (l->fd < 0) {
    rc = mp_seterr(MP_ECLOSED, "listener is closed");
    goto out;
  }
  mp__deadline dl;
  mp__deadline_set(timeout, &dl);
  for (;;) {
    /* 1. Take every client waiting in the backlog.  When every slot is
     * taken, the oldest handshake makes room: a real client finishes its
     * handshake within a round trip or two, so only a flood faster than
     * that can push it out (the SYN-cache policy of TCP stacks). */
    for (;;) {
      struct sockaddr_storage ss;
      socklen_t sl = sizeof ss;
      int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl,
                       SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED)
          continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
          break;
        rc = mp__errno();
        goto out;
      }
      char *peer = mp__addr_format((struct sockaddr *)&ss, sl);
      if (!peer) {
        mp__close(fd);
        rc = MP_ENOMEM;
        goto out;
      }
      if (!l->has_key) {
        rc = finish(l, fd, peer, out);
        goto out;
      }
      if (l->npend == l->max_pending) {
        int oldest = 0;
        for (int i = 1; i < l->npend; i++)
          if (l->pend[i].dl < l->pend[oldest].dl)
            oldest = i;
        if (mp_log_enabled(MP_LOG_DEBUG))
          mp_log(MP_LOG_DEBUG, "listener %s: %d handshakes pending, dropped "
                 "the oldest (%s)", l->address, l->npend,
                 l->pend[oldest].peer);
        drop_pending(l, oldest);
      }
      pending *p = &l->pend[l->npend];
      p->fd = fd;
      p->peer = peer;
      mp__deadline_set(l->hs_timeout, &p->dl);
      mp__hs_init(&p->hs, MP__HS_LISTENER, l->key, l->keylen, l->refuse_md5);
      l->npend++;
    }
    /* 2. Move every handshake on as far as it goes without blocking. */
    for (int i = 0; i < l->npend;) {
      pending *p = &l->pend[i];
      int r = mp__hs_pump(&p->hs, p->fd);
      if (r == 1) {
        int fd = p->fd;
        char *peer = p->peer;
        l->pend[i] = l->pend[--l->npend];
        rc = finish(l, fd, peer, out);
        goto out;
      }
      if (r == MP_EAUTH) {
        rc = mp_seterr(MP_EAUTH, "client %s failed authentication: %s",
                       *p->peer ? p->peer : "(unnamed)", p->hs.why);
        drop_pending(l, i);
        goto out;
      }
      if (r < 0 || mp__deadline_passed(p->dl)) {
        if (mp_log_enabled(MP_LOG_DEBUG))
          mp_log(MP_LOG_DEBUG, "listener %s: dropped client %s during the "
                 "handshake (%s)", l->address, p->peer,
                 r < 0 ? mp_strerror(r) : "handshake timed out");
        drop_pending(l, i);
        continue;
      }
      i++;
    }
    /* 3. Sleep until something moves, a handshake expires, or time is up. */
    if (mp__deadline_passed(dl)) {
      rc = mp_seterr(MP_ETIMEDOUT, "accept timed out");
      goto out;
    }
    struct pollfd pf[1 + l->npend];
    int n = 0;
    mp__deadline wake = dl;
    pf[n++] = (struct pollfd){ .fd = l->fd, .events = POLLIN };
    for (int i = 0; i < l->npend; i++) {
      pending *p = &l->pend[i];
      pf[n++] = (struct pollfd){
        .fd = p->fd,
        .events = mp__hs_pending_out(&p->hs) ? POLLOUT : POLLIN
      };
      if (p->dl < wake)
        wake = p->dl;
    }
    int pr = poll(pf, (nfds_t)n, mp__deadline_poll_ms(wake));
    if (pr < 0 && errno != EINTR) {
      rc = mp__errno();
      goto out;
    }
  }
out:
  mp__pmutex_unlock(&l->mu);
  return rc;
}

size_t
mp__listener_npoll(mp_listener *l)
{
  mp__pmutex_lock(&l->mu);
  size_t n = 1 + (size_t)l->npend;
  mp__pmutex_unlock(&l->mu);
  return n;
}

size_t
mp__listener_pollfds(mp_listener *l, int *fds, size_t max)
{
  size_t n = 0;
  mp__pmutex_lock(&l->mu);
  if (l->fd >= 0 && n < max)
    fds[n++] = l->fd;
  for (int i = 0; i < l->npend && n < max; i++)
    fds[n++] = l->pend[i].fd;
  mp__pmutex_unlock(&l->mu);
  return n;
}

MP_EXTERN const char *
mp_listener_address(const mp_listener *l)
{
  return l && l->fd >= 0 ? l->address : NULL;
}

MP_EXTERN const char *
mp_listener_last_accepted(const mp_listener *l)
{
  return l ? l->last : NULL;
}

MP_EXTERN int
mp_listener_fileno(const mp_listener *l)
{
  mp__errdetail_clear();
  if (!l)
    return MP_EINVAL;
  return l->fd >= 0 ? l->fd : MP_ECLOSED;
}

MP_EXTERN int
mp_listener_close(mp_listener *l)
{
  mp__errdetail_clear();
  if (!l)
    return MP_EINVAL;
  mp__pmutex_lock(&l->mu);
  if (l->fd < 0) {
    mp__pmutex_unlock(&l->mu);
    return MP_ECLOSED;
  }
  mp__close(l->fd);
  l->fd = -1;
  while (l->npend)
    drop_pending(l, l->npend - 1);
  if (l->unlink_path) {
    unlink(l->unlink_path);
    free(l->unlink_path);
    l->unlink_path = NULL;
  }
  if (l->tmpdir) {
    rmdir(l->tmpdir);
    free(l->tmpdir);
    l->tmpdir = NULL;
  }
  mp__pmutex_unlock(&l->mu);
  return 0;
}

MP_EXTERN void
mp_listener_free(mp_listener *l)
{
  if (!l)
    return;
  if (l->fd >= 0)
    mp_listener_close(l);
  if (l->unlink_path) /* a failed mp_listener_new */
    unlink(l->unlink_path);
  if (l->tmpdir)
    rmdir(l->tmpdir);
  free(l->unlink_path);
  free(l->tmpdir);
  free(l->address);
  free(l->last);
  if (l->key) {
    explicit_bzero(l->key, l->keylen);
    free(l->key);
  }
  free(l->pend);
  mp__pmutex_destroy(&l->mu);
  free(l);
}

/* ---- client -------------------------------------------------------------- */

static int
connect_unix(int fd, const mp__addr *a, mp__deadline dl)
{
  /* A blocking AF_UNIX connect waits while the listener's backlog is full
   * (as Python's does); SO_SNDTIMEO bounds that wait. */
  if (dl != MP__NO_DEADLINE) {
    int ms = mp__deadline_poll_ms(dl);
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    if (ms == 0)
      tv.tv_usec = 1;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  int rc = 0;
  while (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
    if (errno == EINTR && !mp__deadline_passed(dl))
      continue;
    rc = (errno == EAGAIN || errno == EINPROGRESS || errno == EINTR)
             ? mp_seterr(MP_ETIMEDOUT, "connect timed out")
             : mp__errno();
    break;
  }
  struct timeval zero = { 0, 0 };
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof zero);
  return rc;
}

static int
connect_inet(int fd, const mp__addr *a, mp__deadline dl)
{
  int rc = mp__fd_set_nonblock(fd, 1);
  if (rc)
    return rc;
  if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
    if (errno != EINPROGRESS && errno != EINTR)
      return mp__errno();
    rc = mp__poll_fd(fd, POLLOUT, dl);
    if (rc < 0)
      return rc == MP_ETIMEDOUT ? mp_seterr(rc, "connect timed out") : rc;
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
      return mp__errno();
    if (err)
      return -err;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return mp__fd_set_nonblock(fd, 0);
}

MP_EXTERN int
mp_client(mp_conn **out, const char *address, const mp_client_opts *opts)
{
  mp__errdetail_clear();
  if (!out || !address)
    return mp_seterr(MP_EINVAL, "mp_client: NULL argument");
  static const mp_client_opts defaults;
  if (!opts)
    opts = &defaults;
  if (!opts->authkey && opts->authkey_len)
    return mp_seterr(MP_EINVAL, "mp_client: bad options");
  if (mp__timeout_field_check(opts->timeout, "mp_client"))
    return MP_EINVAL;
  mp__deadline dl = MP__NO_DEADLINE; /* 0: the default, no limit */
  if (opts->timeout > 0)
    mp__deadline_set(opts->timeout, &dl);
  mp__addr a;
  int rc = mp__addr_parse(address, 0, &a);
  if (rc)
    return rc;
  int fd = socket(a.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return mp__errno();
  rc = a.family == AF_UNIX ? connect_unix(fd, &a, dl)
                           : connect_inet(fd, &a, dl);
  if (rc) {
    if (rc != MP_ETIMEDOUT)
      mp_seterr(rc, "cannot connect to '%s': %s", address, mp_strerror(rc));
    mp__close(fd);
    return rc;
  }
  if (opts->authkey) {
    rc = mp__hs_drive(fd, MP__HS_CLIENT, opts->authkey, opts->authkey_len,
                      opts->refuse_legacy_md5, dl);
    if (rc) {
      mp__close(fd);
      return rc;
    }
  }
  mp_conn *c;
  rc = mp__conn_wrap(&c, fd, 1, 1);
  if (rc) {
    mp__close(fd);
    return rc;
  }
  if (opts->max_recv)
    mp_conn_set_max_recv(c, opts->max_recv);
  *out = c;
  return 0;
}

/* ---- handshake on a connection ------------------------------------------- */

static int
conn_handshake(mp_conn *c, int role, const void *key, size_t keylen,
               double timeout)
{
  if (!c || (!key && keylen))
    return mp_seterr(MP_EINVAL, "handshake: bad arguments");
  int rc = mp__conn_enter(c);
  if (rc)
    return rc;
  if (!c->readable || !c->writable || !c->is_socket) {
    mp__conn_leave(c);
    return mp_seterr(MP_ESTATE, "the handshake needs a duplex socket");
  }
  /* The one place both locks are held: send_mu first, then recv_mu. */
  mp__pmutex_lock(&c->send_mu);
  mp__pmutex_lock(&c->recv_mu);
  mp__deadline dl;
  if (c->hdr_have || c->have_len)
    rc = mp_seterr(MP_ESTATE, "a message is half received");
  else if ((rc = mp__deadline_set(timeout, &dl)) == 0)
    rc = mp__hs_drive(atomic_load(&c->fd), role, key ? key : "", keylen, 0,
                      dl);
  mp__pmutex_unlock(&c->recv_mu);
  mp__pmutex_unlock(&c->send_mu);
  mp__conn_leave(c);
  return rc;
}

MP_EXTERN int
mp_conn_deliver_challenge(mp_conn *c, const void *authkey, size_t authkey_len,
                          double timeout)
{
  mp__errdetail_clear();
  return conn_handshake(c, MP__HS_DELIVER, authkey, authkey_len, timeout);
}

MP_EXTERN int
mp_conn_answer_challenge(mp_conn *c, const void *authkey, size_t authkey_len,
                         double timeout)
{
  mp__errdetail_clear();
  return conn_handshake(c, MP__HS_ANSWER, authkey, authkey_len, timeout);
}
