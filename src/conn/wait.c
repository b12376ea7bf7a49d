/* SPDX-License-Identifier: MIT */
/* mp_wait: Python's multiprocessing.connection.wait over connections,
 * listeners and raw descriptors, with poll(2). */
#include <poll.h>
#include <stdlib.h>

#include "conn/conn_internal.h"
#include "core/fd.h"

#define MAX_ITEMS 65536

MP_EXTERN int
mp_wait(mp_waitable *items, size_t n, double timeout)
{
  mp__errdetail_clear();
  if ((!items && n) || n > MAX_ITEMS)
    return mp_seterr(MP_EINVAL, "mp_wait: bad item list");
  if (mp__timeout_check(timeout))
    return MP_EINVAL;
  /* A listener polls its socket and its handshakes in progress: reserve
   * room for as many as it has now (a set that grows meanwhile is cut to
   * its reservation, which only delays noticing the newest ones). */
  size_t *resv = malloc((n ? n : 1) * sizeof *resv);
  if (!resv)
    return MP_ENOMEM;
  size_t cap = 0;
  for (size_t i = 0; i < n; i++) {
    resv[i] = items[i].kind == MP_WAIT_LISTENER && items[i].u.listener
                  ? mp__listener_npoll(items[i].u.listener)
                  : 1;
    cap += resv[i];
  }
  struct pollfd *pf = malloc((cap ? cap : 1) * sizeof *pf);
  size_t *owner = malloc((cap ? cap : 1) * sizeof *owner);
  if (!pf || !owner) {
    free(pf);
    free(owner);
    free(resv);
    return MP_ENOMEM;
  }
  int rc = 0;
  size_t npf = 0;
  int ready = 0;
  for (size_t i = 0; i < n; i++) {
    mp_waitable *w = &items[i];
    w->ready = 0;
    switch (w->kind) {
    case MP_WAIT_CONN: {
      mp_conn *c = w->u.conn;
      if (!c) {
        rc = mp_seterr(MP_EINVAL, "mp_wait: item %zu is NULL", i);
        goto out;
      }
      int fd = mp_conn_fileno(c);
      if (fd < 0) {
        rc = mp_seterr(fd, "mp_wait: item %zu is a closed connection", i);
        goto out;
      }
      if (!c->readable) {
        rc = mp_seterr(MP_ESTATE, "mp_wait: item %zu is write-only", i);
        goto out;
      }
      if (mp__conn_pending(c) || atomic_load(&c->recv_broken)) {
        w->ready = 1; /* a receive returns at once */
        ready++;
      }
      pf[npf] = (struct pollfd){ .fd = fd, .events = POLLIN };
      owner[npf++] = i;
      break;
    }
    case MP_WAIT_LISTENER: {
      if (!w->u.listener) {
        rc = mp_seterr(MP_EINVAL, "mp_wait: item %zu is NULL", i);
        goto out;
      }
      size_t room = resv[i];
      int *fds = malloc(room * sizeof *fds);
      if (!fds) {
        rc = MP_ENOMEM;
        goto out;
      }
      size_t k = mp__listener_pollfds(w->u.listener, fds, room);
      if (k == 0) {
        free(fds);
        rc = mp_seterr(MP_ECLOSED, "mp_wait: item %zu is a closed listener",
                       i);
        goto out;
      }
      for (size_t j = 0; j < k; j++) {
        pf[npf] = (struct pollfd){ .fd = fds[j], .events = POLLIN };
        owner[npf++] = i;
      }
      free(fds);
      break;
    }
    case MP_WAIT_FD:
      if (w->u.fd < 0) {
        rc = mp_seterr(MP_EINVAL, "mp_wait: item %zu is a negative fd", i);
        goto out;
      }
      pf[npf] = (struct pollfd){ .fd = w->u.fd, .events = POLLIN };
      owner[npf++] = i;
      break;
    default:
      rc = mp_seterr(MP_EINVAL, "mp_wait: item %zu has an unknown kind", i);
      goto out;
    }
  }
  mp__deadline dl;
  mp__deadline_set(ready ? 0 : timeout, &dl);
  for (;;) {
    int pr = poll(pf, (nfds_t)npf, mp__deadline_poll_ms(dl));
    if (pr < 0) {
      if (errno == EINTR)
        continue;
      rc = mp__errno();
      goto out;
    }
    for (size_t j = 0; j < npf; j++) {
      if (pf[j].revents & POLLNVAL) {
        rc = mp_seterr(MP_EBADF, "mp_wait: item %zu: fd %d is not open",
                       owner[j], pf[j].fd);
        goto out;
      }
      if (pf[j].revents && !items[owner[j]].ready) {
        items[owner[j]].ready = 1;
        ready++;
      }
    }
    if (ready || mp__deadline_passed(dl))
      break;
  }
  rc = ready;
out:
  free(pf);
  free(owner);
  free(resv);
  return rc;
}
